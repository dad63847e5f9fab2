"""Query layer: DuckDB views/macros over the archive (``queries/*.sql``), exact book rebuilds
at any time, and the ``recorder query`` / ``recorder book`` commands.

Import :class:`Archive` from here or from :mod:`recorder` (loaded lazily there).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Archive", "BookAt"]


def __getattr__(name: str) -> Any:
    if name == "Archive":
        from recorder.query.api import Archive

        return Archive
    if name == "BookAt":
        from recorder.query.books import BookAt

        return BookAt
    raise AttributeError(name)
