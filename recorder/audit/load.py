"""The audit's I/O shell: the archive's live Parquet files -> DuckDB views -> plain rows.

Only files the manifest lists are read (never crash orphans), pruned by the manifest's
per-file time bounds. The SQL lives in ``queries/audit/*.sql`` (one statement per file, named
parameters ``$lo``/``$hi``); this module only binds views and parameters and converts results
to Python values. A dataset without files is bound to an empty table of its schema, so every
query runs on any archive.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, Final

import duckdb

from recorder.archive.store import Archive

__all__ = ["QUIET_NS", "QUERY_DIR", "AuditError", "query_text", "AuditSource", "open_source"]


class AuditError(Exception):
    """The path cannot be audited (no committed archive there)."""

#: A key is quiet where it delivered no data for at least this long (queries/audit/activity.sql).
QUIET_NS: Final = 10_000_000_000
QUERY_DIR: Final = Path(__file__).resolve().parent.parent.parent / "queries" / "audit"
#: Datasets the audit reads: (lookback, lookahead) ns around ``[lo, hi)`` within which a file
#: may still matter (liveness/epochs/gaps describe time after their time column; an unhealed
#: gap ends at the key's next epoch, which can lie past ``hi``).
_DATASETS: Final = {
    "liveness": (86_400_000_000_000, 0),
    "gaps": (8 * 86_400_000_000_000, 0),
    "epochs": (8 * 86_400_000_000_000, 86_400_000_000_000),
    "trades": (0, 0),
    "ohlc": (3_600_000_000_000, 0),
}


@cache
def query_text(name: str) -> str:
    """The SQL text of ``queries/audit/<name>.sql``."""
    return (QUERY_DIR / f"{name}.sql").read_text(encoding="utf-8")


class AuditSource:
    """A DuckDB connection with one view per audited dataset, restricted to ``[lo, hi)``."""

    def __init__(self, archive: Archive, lo: int, hi: int, *, threads: int | None = None,
                 quiet_ns: int = QUIET_NS) -> None:
        self.archive = archive
        self.quiet_ns = quiet_ns
        self.lo = lo
        self.hi = hi
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET enable_progress_bar = false")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        for dataset, (lookback, lookahead) in _DATASETS.items():
            files = [str(archive.root / f.file) for f in archive.state.files
                     if f.dataset == dataset
                     and (f.max_time is None or f.max_time >= lo - lookback)
                     and (f.min_time is None or f.min_time < hi + lookahead)]
            if files:
                rel = self.con.read_parquet(files, union_by_name=True)
            else:
                rel = self.con.from_arrow(archive.schemas[dataset].arrow().empty_table())
            rel.create_view(dataset)

    def rows(self, name: str) -> list[dict[str, Any]]:
        """Run ``queries/audit/<name>.sql`` and return its rows as dicts."""
        text = query_text(name)
        params = {k: v for k, v in (("lo", self.lo), ("hi", self.hi),
                                    ("quiet_ns", self.quiet_ns)) if f"${k}" in text}
        cur = self.con.execute(text, params)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def close(self) -> None:
        self.con.close()


@contextmanager
def open_source(root: Path, lo: int | None = None, hi: int | None = None,
                *, threads: int | None = None) -> Iterator[AuditSource]:
    """Open ``root`` for auditing; ``lo``/``hi`` default to the first/last receive time in
    ``liveness`` (``queries/audit/bounds.sql``)."""
    if not (Path(root) / "_manifest" / "current.json").is_file():
        raise AuditError(f"{root} is not an archive with committed data "
                         "(no _manifest/current.json)")
    archive = Archive(root)
    if lo is None or hi is None:
        probe = AuditSource(archive, -(2**62), 2**62, threads=threads)
        try:
            b = probe.rows("bounds")[0]
        finally:
            probe.close()
        if lo is None:
            lo = b["lo"] if b["lo"] is not None else 0
        if hi is None:
            hi = b["hi"] if b["hi"] is not None else lo
    src = AuditSource(archive, lo, hi, threads=threads)
    try:
        yield src
    finally:
        src.close()
