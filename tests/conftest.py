"""Shared pytest fixtures: the read-only Kraken captures, located through one setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.testing import FIXTURES_ENV, fixtures_dir


@pytest.fixture(scope="session")
def kraken_fixtures() -> Path:
    """Root of the shared Kraken fixtures; skips the test with a reason when they are absent."""
    root = fixtures_dir()
    if not root.is_dir():
        pytest.skip(f"Kraken fixtures not found at {root} (set {FIXTURES_ENV} to their folder)")
    return root


@pytest.fixture(scope="session")
def fixture_file(kraken_fixtures: Path):
    """Return a function mapping a path relative to the fixtures root to a file, or skip."""

    def locate(relative: str) -> Path:
        path = kraken_fixtures / relative
        if not path.is_file():
            pytest.skip(f"fixture {relative} not found under {kraken_fixtures}")
        return path

    return locate
