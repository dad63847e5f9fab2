"""Kraken market-data recorder: capture, archive, query and audit Kraken's books exactly."""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """Lazy exports: ``recorder.Archive`` loads the query layer (DuckDB, Polars) on first use."""
    if name == "Archive":
        from recorder.query.api import Archive

        return Archive
    raise AttributeError(f"module 'recorder' has no attribute {name!r}")
