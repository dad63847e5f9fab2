"""ArchiveStore maintenance: compaction of a day's rolling files, and retention by age/size.

Both are ordinary archive commits, so they share the writer's guarantees:

* **atomic**: new files are written under temp names, fsynced and renamed; then one manifest
  commit swaps the new files in and the old ones out; only *after* that commit are the old
  files deleted. Readers that go through the manifest never see both or neither;
* **crash-safe**: a kill at any moment leaves either the old manifest (the new files are
  orphans that :meth:`~recorder.archive.store.ArchiveStore.recover` deletes) or the new one (the
  old files are orphans, deleted the same way). Every listed file always exists and opens;
* **exclusive**: both take the archive's writer lock (:meth:`ArchiveStore.lock`); when the capture
  service runs in the same process, pass its live ``ArchiveStore`` object
  (``session.deriver.archive``) from the writing thread between writes instead of a path.

Scheduler entry points: :func:`compact_archive` and :func:`apply_retention`. CLI:
``recorder compact --archive DIR [--date D]`` and ``recorder retention --archive DIR ...``.
"""

from __future__ import annotations

import calendar
import logging
import os
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Final

import click
import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.archive.health import repair_hint
from recorder.archive.journal import list_segments
from recorder.archive.layout import DAY_NS, partition_dir
from recorder.archive.store import ArchiveStore, FileEntry, file_entry, write_parquet_atomic
from recorder.progress import ProgressBar, progress_bar

__all__ = [
    "CompactionReport",
    "RetentionPolicy",
    "RetentionReport",
    "compact_archive",
    "apply_retention",
    "compact_command",
    "retention_command",
]

#: Rows per row group of compacted files (~1M rows: big enough for zstd and statistics,
#: small enough that a symbol + time-window query reads a fraction of a day).
COMPACT_ROW_GROUP: Final = 1 << 20
#: Rows per compacted file; a day with more rows gets several files.
COMPACT_FILE_ROWS: Final = 16 << 20
#: zstd level of compacted files (written once, read for years). Sim stream, measured
#: encodings: level3/book/trades 16.8/11.2/11.3 B/row at 9, 16.7/11.0/11.0 at 15 (~2.5x the
#: write time of 9); 19 and 22 gain nothing more (level3 grows) at ~10x.
COMPACT_LEVEL: Final = 15
_SYMBOL_COLUMNS: Final = ("symbol", "product_id")
log = logging.getLogger("recorder.archive.maintenance")


class CompactionReport(msgspec.Struct, kw_only=True):
    """What :func:`compact_archive` did."""

    partitions: int = 0
    files_before: int = 0
    files_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    rows: int = 0
    #: partitions left as they are because one of their files cannot be read (each logged
    #: with the ``recorder repair`` command that re-derives it)
    skipped_damaged: int = 0


class RetentionPolicy(msgspec.Struct, kw_only=True, frozen=True):
    """Retention limits; ``None`` = unlimited. Journal and Parquet are independent.

    Ages are in days of UTC date (a partition or segment of date D is older than N days when
    ``D < today - N``); sizes are totals in bytes, enforced by deleting the oldest first.
    """

    journal_max_age_days: float | None = None
    journal_max_bytes: int | None = None
    parquet_max_age_days: float | None = None
    parquet_max_bytes: int | None = None


class RetentionReport(msgspec.Struct, kw_only=True):
    """What :func:`apply_retention` deleted."""

    parquet_files: int = 0
    parquet_bytes: int = 0
    journal_segments: int = 0
    journal_bytes: int = 0


def _open(root: str | os.PathLike[str] | ArchiveStore) -> tuple[ArchiveStore, bool]:
    if isinstance(root, ArchiveStore):
        return root, False
    archive = ArchiveStore(root)
    archive.lock()
    archive.recover()
    return archive, True


def _delete(archive: ArchiveStore, rels: list[str]) -> None:
    for rel in rels:
        try:
            (archive.root / rel).unlink()
        except FileNotFoundError:
            pass


def _sort_indices(table: pa.Table, keys: list[str]) -> pa.Array:
    """Stable sort by ``keys`` (dictionary columns compared as text, ties in file order)."""
    cols: dict[str, pa.Array] = {}
    for k in keys:
        col = table.column(k)
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        cols[k] = col
    cols["__row"] = pa.array(range(table.num_rows), pa.int64())
    return pc.sort_indices(pa.table(cols),
                           sort_keys=[(k, "ascending") for k in [*keys, "__row"]])


def compact_archive(
    root: str | os.PathLike[str] | ArchiveStore,
    *,
    date: str | None = None,
    datasets: list[str] | None = None,
    include_latest_day: bool = False,
    row_group_size: int | None = None,
    file_rows: int = COMPACT_FILE_ROWS,
    level: int = COMPACT_LEVEL,
    progress: ProgressBar | None = None,
) -> CompactionReport:
    """Merge each (dataset, day)'s rolling files into few large files sorted by the dataset's
    ``sort_keys`` (``schemas/*.toml``: symbol, then time or id), with large row groups.

    ``date`` limits compaction to one UTC day (``YYYY-MM-DD``); otherwise every day except
    the archive's latest (still being written by live capture) unless ``include_latest_day``.
    A partition is compacted when it has more than one file or a file not yet compacted.
    Rows are only reordered (stable within equal keys, so a message's rows stay contiguous
    and in order): the set of rows, every value and the per-day file set's row count are
    unchanged. Files of different schema versions are compacted separately. One commit per
    partition (atomic, crash-safe; see the module docstring). Returns a report.
    ``progress``: learns the rows to compact as its total and advances by each partition's.
    """
    archive, owned = _open(root)
    try:
        report = CompactionReport()
        groups: dict[tuple[str, str, int], list[FileEntry]] = defaultdict(list)
        for f in archive.state.files:
            if datasets is not None and f.dataset not in datasets:
                continue
            groups[(f.dataset, f.date, f.schema_version)].append(f)
        latest = max((f.date for f in archive.state.files), default="")
        todo = []
        for (dataset, day, version), entries in sorted(groups.items()):
            if date is not None and day != date:
                continue
            if date is None and day == latest and not include_latest_day:
                continue
            if len(entries) == 1 and entries[0].file.rsplit("/", 1)[-1].startswith("compact-"):
                continue
            todo.append((dataset, day, version, entries))
        if progress is not None:
            progress.update(total=sum(f.rows for *_, entries in todo for f in entries))
        for dataset, day, version, entries in todo:
            schema = archive.schemas[dataset]
            try:
                table = pa.concat_tables(
                    [pq.read_table(archive.root / f.file) for f in entries],
                    promote_options="default").unify_dictionaries()
            except (OSError, pa.ArrowException) as exc:  # a damaged file: repair, not compact
                log.warning("not compacting %s/%s of %s: a file cannot be read (%s: %s); "
                            "re-derive it with: %s", dataset, day, archive.root,
                            type(exc).__name__, exc, repair_hint(archive.root))
                report.skipped_damaged += 1
                continue
            keys = [k for k in schema.sort_keys if k in table.schema.names]
            table = table.take(_sort_indices(table, keys)) if keys else table
            table = table.replace_schema_metadata(
                {**(table.schema.metadata or {}), b"dataset": dataset.encode(),
                 b"schema_version": str(version).encode(), b"sorted_by": ",".join(keys).encode()})
            group_rows = (row_group_size or schema.compact_row_group_rows
                          or COMPACT_ROW_GROUP)
            seq = archive.state.commit + 1
            new: list[FileEntry] = []
            written: list[Path] = []
            try:
                for n, start in enumerate(range(0, table.num_rows, file_rows)):
                    part = table.slice(start, file_rows).combine_chunks()
                    path = partition_dir(archive.root, dataset, day) / (
                        f"compact-{seq:08d}-{n:03d}.parquet")
                    size = write_parquet_atomic(part, path, row_group_size=group_rows,
                                                compacted=True, compression_level=level)
                    written.append(path)
                    entry = file_entry(part, schema, str(path.relative_to(archive.root)), day,
                                       size, seq)
                    entry.schema_version = version
                    new.append(entry)
                old = [f.file for f in entries]
                archive.commit(new, pipeline=None, journal=archive.state.journal,
                               segments=archive.state.segments, removed=set(old))
            except BaseException:
                for p in written:
                    p.unlink(missing_ok=True)
                raise
            _delete(archive, old)
            report.partitions += 1
            report.files_before += len(entries)
            report.files_after += len(new)
            report.bytes_before += sum(f.bytes for f in entries)
            report.bytes_after += sum(f.bytes for f in new)
            report.rows += table.num_rows
            if progress is not None:
                progress.advance(table.num_rows)
        return report
    finally:
        if owned:
            archive.unlock()


def _day_ns(day: str) -> int:
    return calendar.timegm(time.strptime(day, "%Y-%m-%d")) * 1_000_000_000


def _older(day: str, max_age_days: float | None, now_ns: int) -> bool:
    if max_age_days is None:
        return False
    try:
        start = _day_ns(day)
    except ValueError:
        return False
    return start + DAY_NS <= now_ns - int(max_age_days * DAY_NS)


def apply_retention(root: str | os.PathLike[str] | ArchiveStore, policy: RetentionPolicy, *,
                    now_ns: int | None = None) -> RetentionReport:
    """Delete Parquet partitions and journal segments beyond ``policy`` (oldest first).

    Parquet: whole (dataset, day) partitions whose day ended more than
    ``parquet_max_age_days`` before ``now_ns``, then the oldest days (all datasets of a day
    together) until the total is at most ``parquet_max_bytes``; one atomic manifest commit,
    then the files are deleted. Journal: segments of days older than
    ``journal_max_age_days``, then the oldest until the total is at most
    ``journal_max_bytes``; only segments that derivation has moved past (registered, read
    from, and not the last in derivation order) are ever deleted, so no journaled frame is
    lost before it reached Parquet. The manifest keeps their positions, so a segment never
    re-derives. The scheduler of the capture service calls this daily; returns a report.
    """
    archive, owned = _open(root)
    now = now_ns if now_ns is not None else time.time_ns()
    try:
        report = RetentionReport()
        files = archive.state.files
        drop: set[str] = {f.file for f in files if _older(f.date, policy.parquet_max_age_days,
                                                          now)}
        if policy.parquet_max_bytes is not None:
            by_day: dict[str, list[FileEntry]] = defaultdict(list)
            for f in files:
                if f.file not in drop:
                    by_day[f.date].append(f)
            total = sum(f.bytes for fs in by_day.values() for f in fs)
            for day in sorted(by_day):
                if total <= policy.parquet_max_bytes:
                    break
                for f in by_day[day]:
                    drop.add(f.file)
                    total -= f.bytes
        if drop:
            gone = [f for f in files if f.file in drop]
            archive.commit([], pipeline=None, journal=archive.state.journal,
                           segments=archive.state.segments, removed=drop)
            _delete(archive, [f.file for f in gone])
            report.parquet_files = len(gone)
            report.parquet_bytes = sum(f.bytes for f in gone)
        # journal
        st = archive.state
        jroot = archive.journal_root
        done = [s for s in st.segments[:-1] if st.journal.get(s, 0) > 0]
        sizes = {s: (jroot / s).stat().st_size for s in done if (jroot / s).exists()}
        remove: list[str] = [s for s in sizes
                             if _older(_segment_day(s), policy.journal_max_age_days, now)]
        if policy.journal_max_bytes is not None:
            total = sum(p.stat().st_size for p in
                        (jroot / s for s in list_segments(jroot))) - sum(sizes[s]
                                                                          for s in remove)
            for s, size in sizes.items():  # derivation order = oldest first
                if total <= policy.journal_max_bytes:
                    break
                if s not in remove:
                    remove.append(s)
                    total -= size
        for s in remove:
            (jroot / s).unlink(missing_ok=True)
            report.journal_segments += 1
            report.journal_bytes += sizes[s]
            parent = (jroot / s).parent
            if parent != jroot and parent.is_dir() and not any(parent.iterdir()):
                shutil.rmtree(parent, ignore_errors=True)
        return report
    finally:
        if owned:
            archive.unlock()


def _segment_day(segment: str) -> str:
    """UTC day of a segment: its ``YYYY-MM-DD/`` directory (live) or ``ingest`` (unknown)."""
    head = segment.split("/", 1)[0]
    return head if len(head) == 10 and head[4] == "-" else ""


@click.command("compact")
@click.option("--archive", "archive", required=True,
              type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--date", "date", default=None, help="Only this UTC day (YYYY-MM-DD).")
@click.option("--include-latest-day", is_flag=True,
              help="Also compact the newest day (normally still being written).")
def compact_command(archive: Path, date: str | None, include_latest_day: bool) -> None:
    """Merge each day's rolling files into few large files sorted by (symbol, time)."""
    with progress_bar("compact", unit="rows") as bar:
        report = compact_archive(archive, date=date, include_latest_day=include_latest_day,
                                 progress=bar)
    click.echo(msgspec.json.encode(report).decode())


@click.command("retention")
@click.option("--archive", "archive", required=True,
              type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--journal-max-age-days", type=float, default=None)
@click.option("--journal-max-gb", type=float, default=None)
@click.option("--parquet-max-age-days", type=float, default=None)
@click.option("--parquet-max-gb", type=float, default=None)
def retention_command(archive: Path, journal_max_age_days: float | None,
                      journal_max_gb: float | None, parquet_max_age_days: float | None,
                      parquet_max_gb: float | None) -> None:
    """Delete journal segments and Parquet days beyond age/size limits (oldest first)."""
    policy = RetentionPolicy(
        journal_max_age_days=journal_max_age_days,
        journal_max_bytes=None if journal_max_gb is None else int(journal_max_gb * 1e9),
        parquet_max_age_days=parquet_max_age_days,
        parquet_max_bytes=None if parquet_max_gb is None else int(parquet_max_gb * 1e9))
    click.echo(msgspec.json.encode(apply_retention(archive, policy)).decode())
