"""Kraken market-data recorder: capture, archive, query and audit Kraken's books exactly.

The researcher's entry point is :class:`Archive` (:mod:`recorder.query.api`, loaded on first
use so that ``import recorder`` stays light: DuckDB and Polars are imported only then); every
exception the recorder raises on purpose derives from :class:`RecorderError`.

    >>> import recorder
    >>> "Archive" in dir(recorder) and "RecorderError" in dir(recorder)
    True
    >>> recorder.Archive.__module__
    'recorder.query.api'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recorder.errors import RecorderError

if TYPE_CHECKING:
    from recorder.query.api import Archive

__version__ = "0.1.0"
__all__ = ["Archive", "RecorderError", "__version__"]


def __getattr__(name: str) -> type[Archive]:
    """Lazy exports: ``recorder.Archive`` loads the query layer (DuckDB, Polars) on first use."""
    if name == "Archive":
        from recorder.query.api import Archive

        return Archive
    raise AttributeError(f"module 'recorder' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, the lazy :class:`Archive` included."""
    return sorted(({*globals()} - {"TYPE_CHECKING", "annotations"}) | {"Archive"})
