"""``recorder repair --archive DIR``: re-derive damaged or missing Parquet files from the journal.

The journal is the source of truth: every row of a root's Parquet files was derived from its
journal segments by the one pipeline (:class:`~recorder.pipeline.Pipeline`) that live capture
and ``recorder ingest`` share. Repair runs that derivation again and puts back, for each
damaged file, exactly the rows it held.

1. **Find** the damaged files: every live file is checked (:mod:`recorder.archive.health`;
   a full decode unless ``quick``). Nothing damaged: nothing is written.
2. **Re-derive** the root's committed journal records (each segment in derivation order, up
   to the position the last commit recorded) through a fresh pipeline with the root's
   settings, keeping only the rows of the (dataset, UTC day) partitions that hold a damaged
   file. A damaged segment gives its readable prefix
   (:func:`~recorder.archive.journal.read_segment`) and is reported with how many committed
   records could not be read (unless a journal write error moved them to the start of the
   same writer's next segment, see :func:`_carried_on`).
3. **Check** each partition, file by file in the manifest's order: a rolling file
   (``part-*``) holds the next rows of the partition in derivation order; a run of compacted
   files (``compact-*``) holds the next rows sorted by the dataset's sort keys (stable, as
   :func:`~recorder.archive.maintenance.compact_archive` sorts them). Every *healthy* file must
   equal its slice of the re-derivation value for value, the damaged file's slice must match
   its manifest row (rows, time bounds, symbols, epochs), and the partition must re-derive to
   exactly its files' row count (with or without the rows the pipeline writes when its input
   ends, as ``recorder ingest`` leaves them). A partition that fails any of these is not
   touched and the reason is reported (e.g. the journal no longer holds its start). Where
   the journal is damaged, only a damaged file whose rows were all re-derived before the
   first unreadable record, every healthy file before it matching, is restored: its rows come
   from the journal's intact prefix.
4. **Swap** atomically: the replacement files are written under new names (temp name, fsync,
   rename), then one manifest commit puts each in its damaged file's place in the file list
   (a day's files keep their order), then the damaged files are deleted. A crash before the
   commit leaves orphans that the next writer deletes; after it, a completed repair.

Repair takes the root's writer lock (stop capture on that root first) and handles one root
at a time; ``DIR`` may be a parent of roots. Memory: the re-derived rows of one file at a time
(rolling files) or of a whole compacted day (compacted files), besides the pipeline itself.
"""

from __future__ import annotations

import os
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

import click
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from recorder.archive.health import FileHealth, FileProblem
from recorder.archive.journal import SegmentInfo, read_segment
from recorder.archive.layout import partition_dir
from recorder.archive.maintenance import COMPACT_LEVEL, COMPACT_ROW_GROUP, _sort_indices
from recorder.archive.schema import DatasetSchema
from recorder.archive.session import FeedLoop
from recorder.archive.store import (
    ArchiveStore,
    ArchiveBusyError,
    FileEntry,
    PartitionWriter,
    file_entry,
    write_parquet_atomic,
)
from recorder.errors import RecorderError
from recorder.pipeline import Pipeline
from recorder.pipeline.state import StateError, state_settings
from recorder.progress import progress_bar
from recorder.roots import ArchiveRootError, archive_roots

__all__ = [
    "RepairError",
    "JournalDamage",
    "RepairedFile",
    "UnrepairedFile",
    "RepairReport",
    "repair_root",
    "repair_archive",
    "repair_command",
]

_COMPACT_PREFIX: Final = "compact-"
#: What the pipeline's own end of input is called when ``recorder ingest`` finishes.
_INGEST_CLOSE: Final = "open"


class RepairError(RecorderError, RuntimeError):
    """The root cannot be repaired at all (busy, unreadable manifest or state)."""


class JournalDamage(msgspec.Struct, frozen=True, kw_only=True):
    """A committed journal segment that could not be read to its committed position."""

    segment: str
    readable: int
    committed: int
    error: str


class RepairedFile(msgspec.Struct, frozen=True, kw_only=True):
    """A damaged file whose rows were re-derived into ``new_file`` (same rows, same place)."""

    file: str
    dataset: str
    date: str
    rows: int
    damage: str
    new_file: str


class UnrepairedFile(msgspec.Struct, frozen=True, kw_only=True):
    """A damaged file left as it is, and why it could not be re-derived exactly."""

    file: str
    dataset: str
    date: str
    rows: int
    damage: str
    reason: str


class RepairReport(msgspec.Struct, kw_only=True):
    """What :func:`repair_root` found and did for one root."""

    root: str
    files_checked: int = 0
    damaged: int = 0
    repaired: list[RepairedFile] = msgspec.field(default_factory=list)
    unrepaired: list[UnrepairedFile] = msgspec.field(default_factory=list)
    journal: list[JournalDamage] = msgspec.field(default_factory=list)
    frames: int = 0
    commit: int | None = None
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """Every damaged file was (or, in a dry run, can be) repaired."""
        return not self.unrepaired


# ---------------------------------------------------------------------------- the proof


def _plain(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One contiguous array, dictionary columns decoded to their value type."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column


def _first_difference(a: pa.Array, b: pa.Array) -> int:
    """Index of the first differing value of two equally long arrays (-1 if none)."""
    step = 1 << 14
    for start in range(0, len(a), step):
        x, y = a.slice(start, step).to_pylist(), b.slice(start, step).to_pylist()
        for i, (u, v) in enumerate(zip(x, y)):
            if u != v:
                return start + i
    return -1


def _compare(expected: pa.Table, actual: pa.Table) -> str | None:
    """None when ``actual`` (a healthy file) holds exactly the rows of ``expected`` (its
    re-derived slice, the dataset's current schema), else the first difference. A column the
    file lacks (written before a nullable column was added) must be null in ``expected``."""
    if actual.num_rows != expected.num_rows:
        return f"{actual.num_rows} rows, the re-derivation gives {expected.num_rows}"
    extra = set(actual.column_names) - set(expected.column_names)
    if extra:
        return f"columns {sorted(extra)} are not in the dataset's schema"
    for name in expected.column_names:
        want = _plain(expected.column(name))
        if name not in actual.column_names:
            if want.null_count != len(want):
                return f"column {name} is absent but re-derives with values"
            continue
        have = _plain(actual.column(name))
        if have.type != want.type:
            try:
                have = have.cast(want.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return f"column {name} is {have.type}, the schema says {want.type}"
        if not have.equals(want):
            return f"column {name} differs at row {_first_difference(want, have)}"
    return None


class _Unit(msgspec.Struct, kw_only=True):
    """Consecutive files of a partition filled from consecutive re-derived rows: one rolling
    file, or a run of compacted files (their rows sorted together by ``sort_keys``)."""

    files: list[FileEntry]
    sort_keys: list[str] | None
    rows: int


class _PartitionPlan:
    """Checks one (dataset, day) partition against its re-derived rows, as they arrive in
    derivation order, and keeps the damaged files' slices (see the module docstring, step 3).

    A damaged file's slice is accepted (:meth:`verdict`) when the whole partition re-derived
    exactly; when the journal is damaged, only when its slice was complete before the first
    damaged record was reached and every healthy file before it matched (those rows come from
    the journal's intact prefix; rows derived past lost records could match the count and the
    manifest's bounds yet differ)."""

    def __init__(self, root: Path, schema: DatasetSchema, files: list[FileEntry],
                 damaged: set[str]) -> None:
        self.root = root
        self.schema = schema
        self.damaged = damaged
        self.units: list[_Unit] = []
        keys = [k for k in schema.sort_keys if k in schema.names]
        for f in files:
            compacted = f.file.rsplit("/", 1)[-1].startswith(_COMPACT_PREFIX)
            last = self.units[-1] if self.units else None
            if compacted and last is not None and last.sort_keys is not None:
                last.files.append(f)
                last.rows += f.rows
            else:
                self.units.append(_Unit(files=[f], sort_keys=keys if compacted else None,
                                        rows=f.rows))
        self.unit_of = {f.file: i for i, u in enumerate(self.units) for f in u.files}
        self.expected = sum(u.rows for u in self.units)
        self.seen = 0
        self.seen_before_close: int | None = None
        #: damaged file -> its re-derived rows
        self.replacements: dict[str, pa.Table] = {}
        #: the first unit that did not re-derive exactly, and why
        self.failed_unit: int | None = None
        self.failure: str | None = None
        #: units complete when the first damaged journal record was reached (None: no damage)
        self.done_before_damage: int | None = None
        self._unit = 0
        self._chunks: list[pa.Table] = []
        self._have = 0
        self._advance()

    def add(self, table: pa.Table) -> None:
        """The partition's next re-derived rows (derivation order)."""
        self.seen += table.num_rows
        while table.num_rows and self._unit < len(self.units) and self.failure is None:
            unit = self.units[self._unit]
            take = min(unit.rows - self._have, table.num_rows)
            self._chunks.append(table.slice(0, take))
            self._have += take
            table = table.slice(take)
            self._advance()

    def _advance(self) -> None:
        """Finish every unit whose rows are all here (zero-row units included)."""
        while (self._unit < len(self.units) and self.failure is None
               and self._have == self.units[self._unit].rows):
            self.failure = self._finish(self.units[self._unit])
            if self.failure is not None:
                self.failed_unit = self._unit
            self._unit += 1
            self._chunks = []
            self._have = 0

    def mark_journal_damage(self) -> None:
        """The next rows may come from after a damaged or missing journal record."""
        if self.done_before_damage is None:
            self.done_before_damage = self._unit

    def mark_close(self) -> None:
        """Rows after this point are the pipeline's end-of-input rows."""
        self.seen_before_close = self.seen

    def _finish(self, unit: _Unit) -> str | None:
        """Check a unit whose rows are all here; the reason it does not re-derive, or None."""
        if self._chunks:
            table = pa.concat_tables(self._chunks)
        else:
            table = self.schema.arrow().empty_table()
        if unit.sort_keys:
            table = table.take(_sort_indices(table, unit.sort_keys))
        offset = 0
        for f in unit.files:
            part = table.slice(offset, f.rows)
            offset += f.rows
            if f.file in self.damaged:
                why = _fingerprint_mismatch(part, f, self.schema)
                if why is not None:
                    return f"its re-derived rows do not match its manifest row ({why})"
                self.replacements[f.file] = part
                continue
            try:
                actual = pq.read_table(self.root / f.file)
            except (OSError, pa.ArrowException) as exc:
                return (f"{f.file}, a healthy file of the same day, could not be read to "
                        f"compare ({type(exc).__name__})")
            why = _compare(part, actual)
            if why is not None:
                return (f"the journal does not reproduce {f.file}, a healthy file of the same "
                        f"day ({why})")
        return None

    def _whole(self) -> str | None:
        """None when the whole partition re-derived exactly, else why not."""
        if self.failure is not None:
            return self.failure
        if self.expected in (self.seen_before_close, self.seen):
            return None
        if self.seen < self.expected:
            why = ("journal records are missing" if self.done_before_damage is not None else
                   "the day holds rows no journal record gives, e.g. the end-of-input rows "
                   "of an earlier `recorder ingest` run")
            return f"the journal re-derives {self.seen} of the day's {self.expected} rows ({why})"
        return f"the journal re-derives {self.seen} rows, the day's files hold {self.expected}"

    def verdict(self, file: str) -> str | None:
        """None when damaged ``file``'s re-derived rows are proven exact, else why not."""
        whole = self._whole()
        k = self.unit_of[file]
        if self.failed_unit is not None and self.failed_unit < k:
            return f"an earlier file of the day does not re-derive: {self.failure}"
        if file in self.replacements:
            if self.done_before_damage is None:
                if whole is None:
                    return None
            elif k < self.done_before_damage:
                return None  # re-derived from the journal's intact prefix
            else:  # rows re-derived past missing records could stand in for the lost ones
                return ("its rows were re-derived only after records the journal lost "
                        "(see the journal damage)")
        return whole or "its rows were not re-derived"


def _fingerprint_mismatch(part: pa.Table, entry: FileEntry, schema: DatasetSchema) -> str | None:
    """Compare re-derived rows with what the manifest recorded about the damaged file."""
    got = file_entry(part, schema, entry.file, entry.date, 0, 0)
    for name in ("rows", "min_time", "max_time", "symbols", "epochs"):
        if getattr(got, name) != getattr(entry, name):
            return f"{name} {getattr(got, name)!r}, the manifest recorded {getattr(entry, name)!r}"
    return None


# ---------------------------------------------------------------------------- re-derivation


class _PlanSink(PartitionWriter):
    """The pipeline's :class:`~recorder.pipeline.RowSink`: routes the rows of the planned
    partitions to their plans, split by UTC day exactly as the archive's writer splits them
    (the rows of other partitions are dropped)."""

    def __init__(self, root: Path, schemas: dict[str, DatasetSchema],
                 plans: dict[tuple[str, str], _PartitionPlan]) -> None:
        super().__init__(root, schemas)
        self._plans = plans
        self._datasets = {ds for ds, _ in plans}

    def append(self, dataset: str, columns: dict[str, Any]) -> None:
        if dataset in self._datasets:
            super().append(dataset, columns)

    def _add(self, dataset: str, day: str, table: pa.Table) -> None:
        plan = self._plans.get((dataset, day))
        if plan is not None:
            plan.add(table)


def _pipeline(archive: ArchiveStore, sink: _PlanSink) -> Pipeline:
    """A fresh pipeline with the root's settings (those of its last committed state)."""
    try:
        state = archive.load_pipeline()
    except StateError:
        state = None
    if state is None:
        return Pipeline(sink)
    return Pipeline(sink, settings=state_settings(state), batch_rows=state.batch_rows)


def _journal_damage(pipe: Pipeline, plans: dict[tuple[str, str], _PartitionPlan]) -> None:
    """Records are missing here: every row derived so far reaches its plan first."""
    pipe.flush()
    for plan in plans.values():
        plan.mark_journal_damage()


_SEGMENT_NAME: Final = re.compile(r"(?P<writer>.+?-)[0-9]{20}(?P<run>-.+-)(?P<seq>[0-9]{4})\.kjz")


def _carried_on(segment: str, later: list[str], committed: dict[str, int]) -> bool:
    """Whether a segment that holds fewer records than were derived from it lost them to a
    journal write error: the writer then truncates it to its durable size, keeps the frames
    it accepted but could not make durable and writes them again at the start of its next
    segment (:class:`~recorder.archive.journal.JournalWriter`; names
    ``<host>-<created_ns>-<run>-<seq>.kjz``), which the derivation order lists next. So: the
    next segment with derived records is the same writer run's next one. (A crash cannot
    leave a segment short: a commit never claims records that are not durable.)"""
    nxt = next((s for s in later if committed.get(s, 0) > 0), None)
    this = _SEGMENT_NAME.fullmatch(segment.rsplit("/", 1)[-1])
    that = None if nxt is None else _SEGMENT_NAME.fullmatch(nxt.rsplit("/", 1)[-1])
    return (this is not None and that is not None
            and (this["writer"], this["run"]) == (that["writer"], that["run"])
            and int(that["seq"]) == int(this["seq"]) + 1)


def _rederive(archive: ArchiveStore, plans: dict[tuple[str, str], _PartitionPlan],
              report: RepairReport, progress: Callable[[int], None] | None = None) -> None:
    """Feed every committed journal record, in derivation order, to a fresh pipeline whose
    rows go to ``plans``; damaged or missing segments are recorded in ``report.journal``.
    ``progress`` is called with the number of records of each segment fed."""
    sink = _PlanSink(archive.root, archive.schemas, plans)
    pipe = _pipeline(archive, sink)
    loop = FeedLoop(pipe, sink)  # the feed loop of capture and ingest; no commits here
    st = archive.state
    for i, seg in enumerate(st.segments):
        committed = st.journal.get(seg, 0)
        if committed <= 0:
            continue
        path = archive.journal_root / seg
        if not path.is_file():
            report.journal.append(JournalDamage(segment=seg, readable=0, committed=committed,
                                                error="missing (deleted by journal retention?)"))
            _journal_damage(pipe, plans)
            continue
        info = SegmentInfo()
        n = 0
        for index, frame in read_segment(path, info=info):
            if index >= committed:
                break
            loop.feed(frame, seg, index)
            n += 1
        report.frames += n
        if progress is not None:
            progress(committed)
        if n < committed and not _carried_on(seg, st.segments[i + 1:], st.journal):
            report.journal.append(JournalDamage(segment=seg, readable=n, committed=committed,
                                                error=info.error or "ends early"))
            _journal_damage(pipe, plans)
    pipe.flush()
    for plan in plans.values():
        plan.mark_close()
    pipe.close(_INGEST_CLOSE)  # after a capture's ProcessStop this writes no row


# ---------------------------------------------------------------------------- repair


def _write_replacement(archive: ArchiveStore, entry: FileEntry, table: pa.Table, seq: int,
                       n: int) -> tuple[Path, FileEntry]:
    """Write ``table`` (the rows of damaged ``entry``) as a new file of the same kind."""
    schema = archive.schemas[entry.dataset]
    compacted = entry.file.rsplit("/", 1)[-1].startswith(_COMPACT_PREFIX)
    table = table.combine_chunks()
    directory = partition_dir(archive.root, entry.dataset, entry.date)
    if compacted:
        keys = [k for k in schema.sort_keys if k in schema.names]
        table = table.replace_schema_metadata({
            **(schema.arrow().metadata or {}), b"sorted_by": ",".join(keys).encode()})
        path = directory / f"{_COMPACT_PREFIX}{seq:08d}-{n:03d}.parquet"
        size = write_parquet_atomic(
            table, path, compacted=True, compression_level=COMPACT_LEVEL,
            row_group_size=schema.compact_row_group_rows or COMPACT_ROW_GROUP)
    else:
        table = table.replace_schema_metadata(schema.arrow().metadata)
        path = directory / f"part-{seq:08d}-{n:03d}.parquet"
        size = write_parquet_atomic(table, path)
    new = file_entry(table, schema, str(path.relative_to(archive.root)), entry.date, size, seq)
    return path, new


def _plans(archive: ArchiveStore, problems: list[FileProblem], report: RepairReport
           ) -> dict[tuple[str, str], _PartitionPlan]:
    """A plan per partition holding a damaged file; files that cannot be planned are
    reported as unrepaired."""
    by_partition: dict[tuple[str, str], list[FileProblem]] = defaultdict(list)
    for p in problems:
        by_partition[(p.dataset, p.date)].append(p)
    plans: dict[tuple[str, str], _PartitionPlan] = {}
    for (dataset, day), damaged in sorted(by_partition.items()):
        schema = archive.schemas.get(dataset)
        why = None
        if schema is None:
            why = f"no schema for dataset {dataset!r} (schemas/{dataset}.toml)"
        else:
            old = [p for p in damaged if _entry(archive, p).schema_version != schema.version]
            if old:
                why = (f"written with schema version {_entry(archive, old[0]).schema_version}; "
                       f"this recorder writes version {schema.version}")
        if why is not None:
            report.unrepaired.extend(_unrepaired(p, why) for p in damaged)
            continue
        assert schema is not None
        files = [f for f in archive.state.files if f.dataset == dataset and f.date == day]
        plans[(dataset, day)] = _PartitionPlan(archive.root, schema, files,
                                               {p.file for p in damaged})
    return plans


def _entry(archive: ArchiveStore, problem: FileProblem) -> FileEntry:
    return next(f for f in archive.state.files if f.file == problem.file)


def _unrepaired(p: FileProblem, reason: str) -> UnrepairedFile:
    return UnrepairedFile(file=p.file, dataset=p.dataset, date=p.date, rows=p.rows,
                          damage=p.reason, reason=reason)


def repair_root(root: str | os.PathLike[str], *, deep: bool = True,
                dry_run: bool = False, show_progress: bool = False) -> RepairReport:
    """Repair one archive root (see the module docstring); returns what was done.

    ``deep``: decode every file to find damage (else footer, size and row count only).
    ``dry_run``: find, re-derive and prove, write nothing. ``show_progress``: a progress bar
    of the journal records re-derived (count, rate, ETA; on a terminal's stderr only).
    Raises :class:`RepairError` when the root cannot be opened for writing (another writer
    holds it, malformed manifest)."""
    try:
        archive = ArchiveStore(root)
        archive.lock()
    except (ArchiveBusyError, StateError) as exc:
        raise RepairError(f"{root}: {exc}") from exc
    try:
        if not dry_run:
            archive.recover()
        report = RepairReport(root=str(archive.root), dry_run=dry_run,
                              files_checked=len(archive.state.files))
        health = FileHealth(warn=False)
        problems = health.problems(archive.root, archive.state.files, deep=deep)
        report.damaged = len(problems)
        if not problems:
            return report
        plans = _plans(archive, problems, report)
        if plans:
            total = sum(max(0, n) for n in archive.state.journal.values())
            with progress_bar(f"repair {archive.root.name}", total=total, unit="records",
                              enabled=show_progress) as bar:
                _rederive(archive, plans, report, bar.advance)
        fixes: list[tuple[FileProblem, pa.Table]] = []
        for p in problems:
            plan = plans.get((p.dataset, p.date))
            if plan is None:
                continue  # reported by _plans
            why = plan.verdict(p.file)
            if why is not None:
                report.unrepaired.append(_unrepaired(p, why))
            else:
                fixes.append((p, plan.replacements[p.file]))
        if not fixes:
            return report
        seq = archive.state.commit + 1
        if dry_run:
            report.repaired = [RepairedFile(file=p.file, dataset=p.dataset, date=p.date,
                                            rows=p.rows, damage=p.reason, new_file="")
                               for p, _ in fixes]
            return report
        written: list[Path] = []
        replaced: dict[str, FileEntry] = {}
        try:
            for n, (p, table) in enumerate(fixes):
                path, new = _write_replacement(archive, _entry(archive, p), table, seq, n)
                written.append(path)
                replaced[p.file] = new
            st = archive.state
            archive.commit([], pipeline=None, journal=st.journal, segments=st.segments,
                           replaced=replaced)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        for p, _ in fixes:
            (archive.root / p.file).unlink(missing_ok=True)
        report.repaired = [RepairedFile(file=p.file, dataset=p.dataset, date=p.date,
                                        rows=p.rows, damage=p.reason,
                                        new_file=replaced[p.file].file) for p, _ in fixes]
        report.commit = archive.state.commit
        return report
    finally:
        archive.unlock()


def repair_archive(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                   deep: bool = True, dry_run: bool = False) -> list[RepairReport]:
    """:func:`repair_root` for every root ``paths`` designates
    (:func:`recorder.roots.archive_roots`: a root, a parent of roots, or several). Raises
    :class:`~recorder.roots.ArchiveRootError`."""
    return [repair_root(r, deep=deep, dry_run=dry_run) for r in archive_roots(paths)]


def _print(report: RepairReport) -> None:
    verb = "can be repaired" if report.dry_run else "repaired"
    click.echo(f"root {report.root}: {report.files_checked} files checked, {report.damaged} "
               f"damaged, {len(report.repaired)} {verb}, {len(report.unrepaired)} not "
               f"repairable" + (f" ({report.frames} journal records re-derived)"
                                if report.frames else ""))
    for r in report.repaired:
        to = f" -> {r.new_file}" if r.new_file else ""
        click.echo(f"  {verb.upper() if report.dry_run else 'REPAIRED'} {r.file}{to} "
                   f"({r.rows} rows; was: {r.damage})")
    for u in report.unrepaired:
        click.echo(f"  NOT REPAIRED {u.file} ({u.rows} rows; {u.damage}): {u.reason}")
    for j in report.journal:
        click.echo(f"  journal {j.segment}: {j.readable} of {j.committed} committed records "
                   f"readable ({j.error}); records {j.readable}..{j.committed - 1} cannot be "
                   f"re-derived")


@click.command("repair")
@click.option("--archive", "archive", required=True, multiple=True,
              type=click.Path(path_type=Path),
              help="An archive root, a parent of writer roots; repeat for several.")
@click.option("--dry-run", is_flag=True, help="Find, re-derive and check; write nothing.")
@click.option("--quick", is_flag=True,
              help="Find damage from size, footer and row count only (no full decode).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list of root reports.")
def repair_command(archive: tuple[Path, ...], dry_run: bool, quick: bool, as_json: bool) -> None:
    """Re-derive damaged or missing Parquet files of each root from its journal.

    Exit status 0 when every damaged file was repaired (or none was damaged), 1 when some
    could not be (each is listed with the reason) or a root could not be opened, 2 for a
    path that leads to no archive root. Stop capture on a root before repairing it."""
    try:
        roots = archive_roots(list(archive))
    except ArchiveRootError as exc:
        raise click.BadParameter(str(exc), param_hint="'--archive'") from None
    reports: list[RepairReport] = []
    failed = False
    for root in roots:
        try:
            report = repair_root(root, deep=not quick, dry_run=dry_run,
                                 show_progress=not as_json)
        except (RepairError, OSError) as exc:
            click.echo(f"Error: {exc}", err=True)
            failed = True
            continue
        reports.append(report)
        failed = failed or not report.ok
        if not as_json:
            _print(report)
    if as_json:
        click.echo(msgspec.json.encode(reports).decode())
    sys.exit(1 if failed else 0)
