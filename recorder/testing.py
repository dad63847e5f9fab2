"""Where the shared, read-only Kraken fixtures live (one configurable path).

Tests and benchmarks read real captured Kraken messages in place; they are never copied into
the project. Set ``KRAKEN_FIXTURES`` to point elsewhere; the default is
``../shared/fixtures/kraken`` relative to the repository root.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["FIXTURES_ENV", "fixtures_dir"]

FIXTURES_ENV = "KRAKEN_FIXTURES"
_REPO_ROOT = Path(__file__).resolve().parent.parent


def fixtures_dir() -> Path:
    """The fixtures folder (may not exist: callers skip with a clear reason)."""
    configured = os.environ.get(FIXTURES_ENV)
    if configured:
        return Path(configured)
    return (_REPO_ROOT.parent / "shared" / "fixtures" / "kraken").resolve()
