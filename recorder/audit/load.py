"""The audit's I/O shell: the archive's live Parquet files -> DuckDB views -> plain rows.

An audit reads one or more archive **roots** (capture writes one per worker process; the user
gives a root, a parent of roots or several paths, resolved by :func:`recorder.roots.archive_roots`).
Each dataset's view is the union of every root's rows, and every row carries a constant
``root`` column (the root's path as text, added per root through DuckDB's relation API, never
formatted into SQL) because connection ids are only unique within one root: every query that
groups by ``conn_id`` also groups by ``root``. Epoch ids are unique across roots.

Only files a root's manifest lists are read (never crash orphans), pruned by the manifest's
per-file time bounds. A listed file that cannot be read (missing, truncated, corrupt; see
:mod:`recorder.archive.health`) is left out with a warning naming it and the repair command,
and its time range becomes ``gaps`` rows with cause ``unreadable_file`` (see
:func:`unreadable_gap_rows`): the audit reports that time as missing, never as covered.

The SQL lives in ``queries/audit/*.sql`` (one statement per file, named parameters
``$lo``/``$hi``); this module only binds views and parameters and converts results to Python
values. A dataset without files is bound to an empty table of its schema, so every
query runs on any archive.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow as pa

from recorder.archive.health import UNREADABLE_CAUSE, FileHealth, FileProblem
from recorder.archive.layout import DAY_NS
from recorder.archive.store import ArchiveStore
from recorder.errors import RecorderError
from recorder.resources import queries_dir
from recorder.roots import PathSpec, archive_roots, child_roots

__all__ = ["QUIET_NS", "QUERY_DIR", "ROOT_COLUMN", "AuditError", "query_text", "AuditSource",
           "open_source", "committed_roots", "sibling_roots", "sibling_keys",
           "unreadable_gap_rows", "unreadable_extent"]


class AuditError(RecorderError):
    """The path cannot be audited (no committed archive there)."""

#: The constant column naming each row's archive root in every audit view.
ROOT_COLUMN: Final = "root"

#: A key is quiet where it delivered no data for at least this long (queries/audit/activity.sql).
QUIET_NS: Final = 10_000_000_000
#: The audit's SQL, shipped inside the package (see :mod:`recorder.resources`).
QUERY_DIR: Final = queries_dir("audit")
#: Datasets the audit reads: (lookback, lookahead) ns around ``[lo, hi)`` within which a file
#: may still matter (liveness/epochs/gaps describe time after their time column; an unhealed
#: gap ends at the key's next epoch, which can lie past ``hi``, and so can the REST backfill of
#: a trade_id jump near ``hi``; ``instruments`` is a slowly
#: changing dimension: the row valid at ``lo`` can be of any age).
_DATASETS: Final = {
    "liveness": (86_400_000_000_000, 86_400_000_000_000),
    "gaps": (8 * 86_400_000_000_000, 0),
    "epochs": (8 * 86_400_000_000_000, 86_400_000_000_000),
    "trades": (3_600_000_000_000, 3_600_000_000_000),
    "ohlc": (3_600_000_000_000, 0),
    "instruments": (2**62, 0),
    "rejects": (0, 0),
}


#: The gap rows an unreadable file of each dataset stands for: (stream, channel) pairs, ``*``
#: for all. A file of a channel's data removes that channel's coverage (per symbol the
#: manifest lists for the file, else all); a file of the audit's own evidence (liveness, gaps,
#: epochs) removes every key's. Any other dataset (checkpoints, instruments, rejects,
#: rest_snapshots) gets a row under its own name, which no key matches: it is listed in the
#: report's gaps but takes no coverage (its loss does not lose market data).
_UNREADABLE_SCOPE: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "level3": (("l3", "level3"),),
    "book": (("spot", "book"),),
    "trades": (("spot", "trade"),),
    "ohlc": (("spot", "ohlc"),),
    "ticker": (("spot", "ticker"),),
    "futures_book": (("futures", "futures_book"),),
    "futures_trades": (("futures", "futures_trade"),),
    "futures_ticker": (("futures", "futures_ticker"),),
    "liveness": (("*", "*"),),
    "gaps": (("*", "*"),),
    "epochs": (("*", "*"),),
}
#: A liveness row describes the minute that starts at its time.
_LIVENESS_SPAN_NS: Final = 60_000_000_000
_SYMBOL_LIMIT: Final = 1000  # the manifest lists at most this many symbols per file


def unreadable_gap_rows(problem: FileProblem) -> list[dict[str, Any]]:
    """``gaps`` rows (cause :data:`~recorder.archive.health.UNREADABLE_CAUSE`, connection 0,
    unhealed) covering an unreadable file's time range: ``[min_time, max_time]`` of its
    manifest row (a liveness minute to its end), or its whole UTC day when the manifest has no
    time bounds. Pure; see :data:`_UNREADABLE_SCOPE` for the channels and symbols."""
    start, end = unreadable_extent(problem)
    scope = _UNREADABLE_SCOPE.get(problem.dataset, (("*", problem.dataset),))
    detail = f"{problem.path}: {problem.reason}; repair: {problem.fix}"
    rows = []
    for stream, channel in scope:
        symbols = ["*"]
        if channel != "*" and problem.dataset in _UNREADABLE_SCOPE:
            symbols = problem_symbols(problem) or ["*"]
        for symbol in symbols:
            rows.append({"start_ns": start, "end_ns": end, "stream": stream, "channel": channel,
                         "symbol": symbol, "conn_id": 0, "cause": UNREADABLE_CAUSE,
                         "missing": f"{problem.rows} {problem.dataset} rows",
                         "missing_count": problem.rows, "healed_by": "none",
                         "detail": detail})
    return rows


def unreadable_extent(problem: FileProblem) -> tuple[int, int]:
    """``[start, end)`` of an unreadable file's rows: its manifest time bounds (a liveness
    minute to its end), else its whole UTC day."""
    if problem.min_time is not None and problem.max_time is not None:
        return problem.min_time, problem.max_time + (
            _LIVENESS_SPAN_NS if problem.dataset == "liveness" else 1)
    start = int(datetime.strptime(problem.date, "%Y-%m-%d")
                .replace(tzinfo=timezone.utc).timestamp()) * 1_000_000_000
    return start, start + DAY_NS


def problem_symbols(problem: FileProblem) -> list[str]:
    """The symbols the manifest lists for the file ([] when unknown or truncated)."""
    return list(problem.symbols) if 0 < len(problem.symbols) < _SYMBOL_LIMIT else []


@cache
def query_text(name: str) -> str:
    """The SQL text of ``queries/audit/<name>.sql``."""
    return (QUERY_DIR / f"{name}.sql").read_text(encoding="utf-8")


class AuditSource:
    """A DuckDB connection with one view per audited dataset, restricted to ``[lo, hi)``: the
    union of the rows of every archive in ``archives``, each with its :data:`ROOT_COLUMN`."""

    def __init__(self, archives: ArchiveStore | Sequence[ArchiveStore], lo: int, hi: int, *,
                 threads: int | None = None, quiet_ns: int = QUIET_NS,
                 health: FileHealth | None = None) -> None:
        self.archives = [archives] if isinstance(archives, ArchiveStore) else list(archives)
        #: readability verdicts (shared with other sources of the same audit: one warning
        #: per damaged file)
        self.health = health if health is not None else FileHealth()
        if not self.archives:
            raise AuditError("no archive root to audit")
        #: The roots read, in discovery order (the :data:`ROOT_COLUMN` values are ``str`` of these).
        self.roots = [a.root for a in self.archives]
        self.quiet_ns = quiet_ns
        self.lo = lo
        self.hi = hi
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET enable_progress_bar = false")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        #: unreadable files whose time range touches ``[lo, hi)``, per root (see
        #: :func:`unreadable_gap_rows`); filled by :meth:`_create_views`
        self.unreadable: list[FileProblem] = []
        self._create_views()

    def _create_views(self) -> None:
        """(Re)create every dataset's view over the files that read."""
        lo, hi = self.lo, self.hi
        self.unreadable = []
        for archive in self.archives:
            near = [f for f in archive.state.files
                    if (f.max_time is None or f.max_time + _LIVENESS_SPAN_NS >= lo)
                    and (f.min_time is None or f.min_time < hi)]
            for problem in self.health.problems(archive.root, near):
                start, end = unreadable_extent(problem)
                if start < hi and end > lo:
                    self.unreadable.append(problem)
        for dataset, (lookback, lookahead) in _DATASETS.items():
            union: duckdb.DuckDBPyRelation | None = None
            for archive in self.archives:
                part = self._root_relation(archive, dataset, max(lo - lookback, -(2**62)),
                                           hi + lookahead)
                union = part if union is None else union.union(part)  # UNION ALL
            assert union is not None
            union.create_view(dataset)

    def _recheck(self) -> bool:
        """Decode in full every file the views read that was not decoded yet; True (views
        re-created without them) when that found an unreadable one."""
        found = False
        for archive in self.archives:
            for f in archive.state.files:
                if f.dataset not in _DATASETS or self.health.deep_checked(archive.root, f):
                    continue
                if self.health.check(archive.root, f, deep=True) is not None:
                    found = True
        if found:
            self._create_views()
        return found

    def _root_relation(self, archive: ArchiveStore, dataset: str, lo: int,
                       hi: int) -> duckdb.DuckDBPyRelation:
        """One root's rows of ``dataset`` (its live files that may touch ``[lo, hi)``), cast to
        the dataset's schema column by column (a column absent from every file is NULL), plus
        the constant :data:`ROOT_COLUMN`; so the roots' relations line up for ``UNION ALL``."""
        schema = archive.schemas[dataset].arrow()
        empty = self.con.from_arrow(schema.empty_table())
        files = [str(archive.root / f.file) for f in archive.state.files
                 if f.dataset == dataset
                 and (f.max_time is None or f.max_time >= lo)
                 and (f.min_time is None or f.min_time < hi)
                 and self.health.check(archive.root, f) is None]
        rel = self._conform(
            self.con.read_parquet(files, union_by_name=True) if files else empty, empty)
        if dataset == "gaps":
            rows = [r for p in self.unreadable if p.root == str(archive.root)
                    for r in unreadable_gap_rows(p)]
            if rows:
                plain = pa.schema([pa.field(f.name, f.type.value_type
                                            if pa.types.is_dictionary(f.type) else f.type)
                                   for f in schema])
                synthetic = self.con.from_arrow(pa.Table.from_pylist(rows, schema=plain))
                rel = rel.union(self._conform(synthetic, empty))  # UNION ALL, same columns
        return rel.select(*[duckdb.ColumnExpression(c) for c in empty.columns],
                          duckdb.ConstantExpression(str(archive.root)).alias(ROOT_COLUMN))

    @staticmethod
    def _conform(rel: duckdb.DuckDBPyRelation,
                 empty: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
        """``rel`` with exactly ``empty``'s columns, in its order and types (a column ``rel``
        lacks is NULL)."""
        present = set(rel.columns)
        return rel.select(*[(duckdb.ColumnExpression(name) if name in present
                             else duckdb.ConstantExpression(None)).cast(typ).alias(name)
                            for name, typ in zip(empty.columns, empty.types)])

    def rows(self, name: str) -> list[dict[str, Any]]:
        """Run ``queries/audit/<name>.sql`` and return its rows as dicts."""
        text = query_text(name)
        params = {k: v for k, v in (("lo", self.lo), ("hi", self.hi),
                                    ("quiet_ns", self.quiet_ns)) if f"${k}" in text}
        while True:
            try:
                cur = self.con.execute(text, params)
                cols = [d[0] for d in cur.description]
                return [dict(zip(cols, r)) for r in cur.fetchall()]
            except duckdb.Error:  # a file damaged inside a data page: leave it out, again
                if not self._recheck():
                    raise

    def last_proofs(self, wanted: Iterable[tuple[str, int, int]]) -> dict[tuple[str, int, int], int]:
        """``queries/audit/last_proof.sql`` for every ``(root, conn_id, t_ns)`` in ``wanted``:
        the last proof of listening on that connection at or before ``t_ns`` (absent: none)."""
        rows = sorted(set(wanted))
        if not rows:
            return {}
        table = pa.table({"root": [r for r, _, _ in rows],
                          "conn_id": pa.array([c for _, c, _ in rows], pa.uint64()),
                          "t_ns": pa.array([t for _, _, t in rows], pa.int64())})
        self.con.register("wanted", table)
        try:
            cur = self.con.execute(query_text("last_proof"))
            return {(r, int(c), int(t)): int(p) for r, c, t, p in cur.fetchall()
                    if p is not None}
        finally:
            self.con.unregister("wanted")

    def close(self) -> None:
        self.con.close()


def sibling_roots(roots: Sequence[Path]) -> list[Path]:
    """Roots with committed data next to the audited ``roots`` (in the same parent directory:
    the other workers of a capture, ``<archive_root>/<host>-w<k>/``) that are not audited
    themselves. A key one of them records is that worker's, not a missing key of ours."""
    audited = {r.resolve() for r in roots}
    out: list[Path] = []
    seen: set[Path] = set()
    for r in roots:
        for c in child_roots(r.resolve().parent):
            key = c.resolve()
            if key in audited or key in seen:
                continue
            seen.add(key)
            if (c / "_manifest" / "current.json").is_file():
                out.append(c)
    return out


def sibling_keys(src: AuditSource) -> set[tuple[str, str]]:
    """The ``(channel, symbol)`` keys that the :func:`sibling_roots` of ``src``'s roots record
    around its range (``queries/audit/keys.sql``): other workers' keys."""
    siblings = sibling_roots(src.roots)
    if not siblings:
        return set()
    other = AuditSource([ArchiveStore(r) for r in siblings], src.lo, src.hi)
    try:
        return {(r["channel"], r["symbol"]) for r in other.rows("keys")}
    finally:
        other.close()


def committed_roots(path: PathSpec) -> list[Path]:
    """The archive roots ``path`` designates (see :func:`recorder.roots.archive_roots`) that
    hold committed data (``_manifest/current.json``). A root whose writer has not committed yet
    has nothing to audit and is left out. Raises :class:`recorder.roots.ArchiveRootError` for a
    path that leads to no root and :class:`AuditError` when no root has committed data."""
    roots = archive_roots(path)
    done = [r for r in roots if (r / "_manifest" / "current.json").is_file()]
    if not done:
        where = ", ".join(str(r) for r in roots)
        raise AuditError(f"{where}: no archive with committed data "
                         "(no _manifest/current.json)")
    return done


@contextmanager
def open_source(path: PathSpec, lo: int | None = None, hi: int | None = None,
                *, threads: int | None = None) -> Iterator[AuditSource]:
    """Open the roots ``path`` designates (:func:`committed_roots`: a root, a parent of roots
    or several paths) for auditing as one archive; ``lo``/``hi`` default to the first/last
    receive time in ``liveness`` over all roots (``queries/audit/bounds.sql``)."""
    archives = [ArchiveStore(r) for r in committed_roots(path)]
    health = FileHealth()
    if lo is None or hi is None:
        probe = AuditSource(archives, -(2**62), 2**62, threads=threads, health=health)
        try:
            b = probe.rows("bounds")[0]
        finally:
            probe.close()
        if lo is None:
            lo = b["lo"] if b["lo"] is not None else 0
        if hi is None:
            hi = b["hi"] if b["hi"] is not None else lo
    src = AuditSource(archives, lo, hi, threads=threads, health=health)
    try:
        yield src
    finally:
        src.close()
