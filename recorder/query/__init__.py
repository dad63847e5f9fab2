"""Query layer: DuckDB views/macros over the archive (``queries/*.sql``), exact book rebuilds
at any time, and the ``recorder query`` / ``recorder book`` commands.

Import :class:`Archive` from :mod:`recorder` (or from here); both load lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recorder.query.api import Archive
    from recorder.query.books import BookAt

__all__ = ["Archive", "BookAt"]


def __getattr__(name: str) -> type[Archive] | type[BookAt]:
    if name == "Archive":
        from recorder.query.api import Archive

        return Archive
    if name == "BookAt":
        from recorder.query.books import BookAt

        return BookAt
    raise AttributeError(f"module 'recorder.query' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(({*globals()} - {"TYPE_CHECKING", "annotations"}) | {*__all__})
