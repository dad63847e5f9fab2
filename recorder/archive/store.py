"""Committed archive state, the Parquet partition writer, and atomic file operations.

A *commit* makes a set of sealed Parquet files visible together with the journal position they
were derived up to and the pipeline state at that point. ``_manifest/current.json`` is replaced
atomically (temp name, fsync, rename, fsync dir); a Parquet file that no commit lists is an
orphan of a crash and :meth:`ArchiveStore.recover` deletes it (its rows are re-derived from the
journal). That is how journal -> Parquet is exactly-once across crashes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.archive.layout import DAY_NS, day_of, partition_dir
from recorder.archive.schema import DatasetSchema, load_schemas
from recorder.errors import RecorderError
from recorder.pipeline.state import PipelineState, StateError, decode_state, encode_state

__all__ = ["ArchiveWriteError", "ArchiveFormatError", "ArchiveBusyError", "parquet_encodings", "FileEntry", "ArchiveState", "ArchiveStore", "PartitionWriter", "SealBatch",
           "atomic_write_bytes", "write_parquet_atomic", "PARQUET_OPTIONS", "choose_encodings"]

#: Threads writing the files of one commit (:meth:`PartitionWriter.seal`).
SEAL_THREADS: Final = 2
#: Rolling files: zstd 3 (written on the ingest path). Compaction passes its own level.
PARQUET_OPTIONS: Final = {"compression": "zstd", "compression_level": 3}
#: Rows of a compacted table that :func:`choose_encodings` encodes per candidate (in
#: ``_TRIAL_SLICES`` evenly spaced runs, so sorted neighbourhoods and deltas stay realistic).
TRIAL_ROWS: Final = 1 << 17
_TRIAL_SLICES: Final = 16
#: Highest zstd level of the trial encodes: ranks the candidates as the final level does on
#: the sim stream's level3/book/trades columns at ~1/3.5 of the CPU time of level 15.
TRIAL_LEVEL_MAX: Final = 9
_DICTIONARY: Final = "DICTIONARY"
_SYMBOL_COLUMNS: Final = ("symbol", "product_id")


class ArchiveWriteError(RecorderError, OSError):
    """A Parquet file or manifest could not be written (e.g. ENOSPC). Nothing committed is
    touched; buffered rows stay in memory and the next commit retries."""


class ArchiveBusyError(RecorderError, RuntimeError):
    """Another process (or another :class:`ArchiveStore` object) holds the archive's writer lock."""


class ArchiveFormatError(StateError):
    """The archive's manifest or pipeline state cannot be used by this code (newer format,
    pickled state of the first archive format, a state path outside ``_state/``...)."""


#: Manifest format written by this code (2: explicit pipeline state; 1: pickled state).
MANIFEST_FORMAT: Final = 2
_STATE_PATH: Final = re.compile(r"_state/pipeline-[0-9]{8}\.state")


class FileEntry(msgspec.Struct, kw_only=True):
    """One live data file (manifest row)."""

    file: str
    dataset: str
    date: str
    rows: int
    bytes: int
    min_time: int | None
    max_time: int | None
    symbols: list[str]
    epochs: int
    schema_version: int
    commit: int


class ArchiveState(msgspec.Struct, kw_only=True):
    """Everything ``_manifest/current.json`` holds."""

    format: int = MANIFEST_FORMAT
    commit: int = 0
    files: list[FileEntry] = msgspec.field(default_factory=list)
    #: journal segment (relative to journal/) -> number of records derived
    journal: dict[str, int] = msgspec.field(default_factory=dict)
    #: segments in derivation order
    segments: list[str] = msgspec.field(default_factory=list)
    #: ingest sources: content digest -> {"name", "segment", "frames"}
    sources: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    #: pipeline state file of this commit (``_state/pipeline-<commit>.state``), "" if none
    pipeline: str = ""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise ArchiveWriteError(exc.errno or errno.EIO, f"cannot write {path}: {exc}") from exc


def _fits(encoding: str, t: pa.DataType) -> bool:
    """Whether pyarrow can write a column of Arrow type ``t`` with ``encoding``."""
    if encoding == _DICTIONARY:
        return True
    if pa.types.is_dictionary(t):
        return False
    if encoding == "PLAIN":
        return True
    if encoding == "DELTA_BINARY_PACKED":
        return pa.types.is_integer(t)
    if encoding in ("DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY"):
        return pa.types.is_string(t) or pa.types.is_binary(t)
    return False


def _static_encoding(field: pa.Field, *, compacted: bool) -> str:
    """One column's encoding without measuring: the schema's hint (``schemas/*.toml``
    ``encoding``, or ``compacted_encoding`` first in compacted files; they travel in the Arrow
    field metadata, see :meth:`~recorder.archive.schema.DatasetSchema.arrow`), else
    dictionary + RLE."""
    meta = field.metadata or {}
    keys = (b"compacted_encoding", b"encoding") if compacted else (b"encoding",)
    for key in keys:
        hint = meta.get(key)
        if hint is not None and _fits(hint.decode(), field.type):
            return hint.decode()
    return _DICTIONARY


def _write_kwargs(encodings: dict[str, str]) -> dict[str, Any]:
    """``pq.write_table`` keyword arguments for a column -> encoding map."""
    return {"use_dictionary": [n for n, e in encodings.items() if e == _DICTIONARY],
            "column_encoding": {n: e for n, e in encodings.items() if e != _DICTIONARY}}


def parquet_encodings(table: pa.Table, *, compacted: bool = False) -> dict[str, Any]:
    """``pq.write_table`` keyword arguments choosing each column's encoding (no measuring;
    rolling files): the column's hint from ``schemas/*.toml`` (``encoding``; in ``compacted``
    files ``compacted_encoding`` first), else dictionary + RLE. The hints were measured on
    the sim stream (B/row, see ``schemas/README.md``):

    * time-like and id int64 columns (``recv_ns``, ``ts_ns``, ``trade_id``, ``seq``, ...):
      ``DELTA_BINARY_PACKED``; level3 ``ts_ns`` is ``PLAIN`` (order times are not monotone,
      deltas cost more than zstd on plain values); level3 ``order_id`` is
      ``DELTA_LENGTH_BYTE_ARRAY`` (random ids, a dictionary only adds indices);
    * ``checksum`` (random CRC32 values, one per message): ``PLAIN`` - a dictionary of random
      values costs more than the values (book: 3.8 -> 3.1 B/row);
    * everything else: dictionary + RLE (symbols, epochs, scales, sides, events become runs);
    * ``compacted`` files are sorted by (symbol, time), so int ``price`` has
      ``compacted_encoding = DELTA_BINARY_PACKED`` (neighbouring rows are the same
      instrument: book 1.27 -> 0.95 B/row).
    """
    return _write_kwargs({f.name: _static_encoding(f, compacted=compacted)
                          for f in table.schema})


def _candidates(t: pa.DataType) -> tuple[str, ...]:
    """Encodings worth measuring for a column of type ``t`` (empty: keep the static one)."""
    if pa.types.is_dictionary(t) or pa.types.is_boolean(t):
        return ()
    if pa.types.is_integer(t):
        if t.bit_width <= 16:  # small enums and scales: RLE runs of a dictionary win
            return ()
        return (_DICTIONARY, "PLAIN", "DELTA_BINARY_PACKED")
    if pa.types.is_string(t) or pa.types.is_binary(t):
        return (_DICTIONARY, "PLAIN", "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY")
    return ()


def _trial_sample(table: pa.Table, rows: int) -> pa.Table:
    """``table`` itself if small, else ``_TRIAL_SLICES`` evenly spaced runs of ``rows`` total."""
    n = table.num_rows
    if n <= rows:
        return table
    run = max(1, rows // _TRIAL_SLICES)
    step = (n - run) / max(1, _TRIAL_SLICES - 1)
    return pa.concat_tables([table.slice(int(i * step), run)
                             for i in range(_TRIAL_SLICES)]).combine_chunks()


def _encoded_size(column: pa.Table, encoding: str, compression_level: int) -> int:
    """Compressed bytes of a one-column table written with ``encoding`` (zstd)."""
    sink = pa.BufferOutputStream()
    name = column.schema.names[0]
    pq.write_table(column, sink, compression="zstd", compression_level=compression_level,
                   write_statistics=False, **_write_kwargs({name: encoding}))
    meta = pq.ParquetFile(pa.BufferReader(sink.getvalue())).metadata
    return sum(meta.row_group(i).column(0).total_compressed_size
               for i in range(meta.num_row_groups))


def choose_encodings(table: pa.Table, *, compression_level: int,
                     trial_rows: int = TRIAL_ROWS) -> dict[str, str]:
    """Column -> Parquet encoding measured on ``table`` (compaction: written once, kept long).

    Each int32/int64/uint32/uint64 and string column is written alone, on a sample of at most
    ``trial_rows`` rows (evenly spaced runs, so sorted neighbourhoods stay intact), with
    each candidate (dictionary, PLAIN, DELTA_BINARY_PACKED / DELTA_LENGTH_BYTE_ARRAY /
    DELTA_BYTE_ARRAY) at the final zstd level (at most :data:`TRIAL_LEVEL_MAX`); the
    smallest wins, ties keep the static choice (:func:`parquet_encodings`). Small ints, booleans, dictionary strings and all-null columns
    keep the static choice. Every candidate is a standard Parquet encoding that pyarrow,
    DuckDB, Polars and Spark read; values are never changed, only their layout.
    """
    sample = _trial_sample(table, trial_rows)
    chosen: dict[str, str] = {}
    for i, field in enumerate(table.schema):
        static = _static_encoding(field, compacted=True)
        cands = _candidates(field.type)
        col = sample.column(i)
        if not cands or col.null_count == len(col):
            chosen[field.name] = static
            continue
        one = pa.table({field.name: col})
        ordered = [static, *(c for c in cands if c != static)]
        sizes = {e: _encoded_size(one, e, min(compression_level, TRIAL_LEVEL_MAX))
                 for e in ordered}
        chosen[field.name] = min(ordered, key=lambda e: sizes[e])  # first minimum: static
    return chosen


def write_parquet_atomic(table: pa.Table, path: Path, *, row_group_size: int = 1 << 20,
                         write_table: Callable[..., None] = pq.write_table,
                         compacted: bool = False, compression_level: int | None = None) -> int:
    """Write ``table`` to ``path`` via a temp name + fsync + rename + dir fsync; returns bytes.

    ``compacted``: the table is sorted by (symbol, time) and written once to be kept, so
    each column's encoding is measured (:func:`choose_encodings`); otherwise the static
    choice (:func:`parquet_encodings`). ``write_table`` is a seam for fault injection in tests.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    options = dict(PARQUET_OPTIONS)
    if compression_level is not None:
        options["compression_level"] = compression_level
    if compacted:
        encodings = _write_kwargs(choose_encodings(
            table, compression_level=int(options["compression_level"])))
    else:
        encodings = parquet_encodings(table)
    try:
        write_table(
            table, tmp,
            row_group_size=row_group_size,
            write_statistics=True,
            **encodings,
            **options,
        )
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise ArchiveWriteError(exc.errno or errno.EIO, f"cannot write {path}: {exc}") from exc
    return path.stat().st_size


def file_entry(table: pa.Table, schema: DatasetSchema, rel: str, day: str, size: int,
               commit: int) -> FileEntry:
    """Manifest row for a table about to be (or just) written."""
    tcol = table.column(schema.time_column)
    mm = pc.min_max(tcol)
    symbols: list[str] = []
    for name in _SYMBOL_COLUMNS:
        if name in table.schema.names:
            col = table.column(name)
            symbols = sorted(str(s) for s in pc.unique(col.cast(pa.string())).to_pylist()
                             if s is not None)
            break
    epochs = 0
    if "epoch" in table.schema.names:
        epochs = len(pc.unique(table.column("epoch")))
    return FileEntry(file=rel, dataset=schema.name, date=day, rows=table.num_rows, bytes=size,
                     min_time=mm["min"].as_py(), max_time=mm["max"].as_py(),
                     symbols=symbols[:1000], epochs=epochs, schema_version=schema.version,
                     commit=commit)


class PartitionWriter:
    """The :class:`~recorder.pipeline.RowSink` of the archive: buffers Arrow tables per
    (dataset, UTC day) and seals them into Parquet files when the archive commits.

    By default :meth:`append` builds the Arrow table at once, on the caller's thread. With
    :attr:`deferred` true (live capture, where the caller is the event loop) it only keeps
    the column lists the pipeline hands over (O(1), they are never touched again by the
    pipeline); :meth:`convert_pending` builds them, in order, in another thread (capture's
    commit thread), and :meth:`take` hands those not built yet over with the batch, so that
    :meth:`~recorder.archive.commit.PendingCommit.build` / :meth:`seal_batch` build them
    behind the batch's tables. Rows, their order and the files are the same either way."""

    def __init__(self, root: Path, schemas: dict[str, DatasetSchema], *,
                 write_table: Callable[..., None] = pq.write_table) -> None:
        self.root = root
        self.schemas = schemas
        self._open: dict[tuple[str, str], list[pa.Table]] = {}
        #: rows buffered (built or not); Arrow bytes of the built ones
        self.buffered_rows = 0
        self.buffered_bytes = 0
        self._write_table = write_table
        #: keep appended columns unbuilt until :meth:`convert_pending` or a commit builds them
        self.deferred = False
        #: (dataset, columns, rows) appended and not built yet, oldest first; the one
        #: :meth:`convert_pending` is building stays at the front until it is added
        self._unbuilt: deque[tuple[str, dict[str, Any], int]] = deque()
        #: guards ``_open``, ``_unbuilt`` and the counters against :meth:`convert_pending`
        self._mutex = threading.Lock()
        #: bumped by :meth:`take` / :meth:`restore`: a build that overlapped one is dropped
        self._generation = 0

    def append(self, dataset: str, columns: dict[str, list[Any]]) -> None:
        if self.deferred:
            first = next(iter(columns.values()), None)
            rows = len(first) if first is not None else 0
            with self._mutex:
                self._unbuilt.append((dataset, columns, rows))
                self.buffered_rows += rows
            return
        rows, nbytes = self._tables(self._add, dataset, columns)
        with self._mutex:
            self.buffered_rows += rows
            self.buffered_bytes += nbytes

    def append_later(self, dataset: str,
                     build: Callable[[Callable[[], None] | None], dict[str, Any]],
                     rows: int) -> None:
        """:meth:`append` of the ``rows`` rows whose columns ``build(pause)`` returns, called
        only when they are built: at once, unless :attr:`deferred` (then in the thread that
        builds, as for an appended column set). ``build`` must be pure and read-only over
        what it was given (a build that overlapped a :meth:`take` is dropped and done again
        with the batch). The pipeline hands its ``book`` / ``level3`` message buffers over
        this way, so their expansion to rows never runs on the caller's thread."""
        if not self.deferred:
            self.append(dataset, build(None))
            return
        with self._mutex:
            self._unbuilt.append((dataset, build, rows))
            self.buffered_rows += rows

    @property
    def unbuilt(self) -> int:
        """Appended column sets not built into Arrow tables yet (:attr:`deferred` mode)."""
        return len(self._unbuilt)

    def convert_pending(self, pause: Callable[[], None] | None = None,
                        limit: int | None = None) -> int:
        """Build appended column sets into Arrow tables (oldest first; at most ``limit``),
        meant for one thread beside the one that appends (:attr:`deferred` mode; one such
        thread at a time). ``pause``:
        called after each column built. A :meth:`take` or :meth:`restore` meanwhile wins:
        the set being built was handed over with the batch and its table is dropped here.
        Returns the sets built. A set that fails to build stays first and the error is
        raised (the next commit's build raises it again, so it cannot be lost silently)."""
        done = 0
        while limit is None or done < limit:
            with self._mutex:
                if not self._unbuilt:
                    break
                dataset, columns, rows = self._unbuilt[0]
                generation = self._generation
            built: list[tuple[str, str, pa.Table]] = []

            def add(ds: str, day: str, table: pa.Table) -> None:
                built.append((ds, day, table))

            n, nbytes = self._tables(add, dataset, columns, pause)
            with self._mutex:
                if generation != self._generation:
                    continue  # taken meanwhile: the batch builds it
                self._unbuilt.popleft()
                for ds, day, table in built:
                    self._open.setdefault((ds, day), []).append(table)
                # rows without a time are dropped by _tables, as in the immediate mode
                self.buffered_rows += n - rows
                self.buffered_bytes += nbytes
            done += 1
        return done

    def append_to(self, batch: SealBatch, dataset: str, columns: dict[str, Any],
                  pause: Callable[[], None] | None = None) -> None:
        """:meth:`append` into a taken ``batch`` instead of this writer's buffers (after the
        batch's tables, as if appended before :meth:`take`). Touches no buffer of this writer:
        safe in another thread (a commit's thread builds the rows of its cut this way, see
        :class:`recorder.archive.commit.PendingCommit`); ``pause``: called after each column
        built. The batch's unbuilt column sets are built first (they are older)."""
        self.build_unbuilt(batch, pause)
        self._append_built(batch, dataset, columns, pause)

    def _append_built(self, batch: SealBatch, dataset: str, columns: dict[str, Any],
                      pause: Callable[[], None] | None = None) -> None:
        tables = batch.tables

        def add(dataset: str, day: str, table: pa.Table) -> None:
            tables.setdefault((dataset, day), []).append(table)

        rows, nbytes = self._tables(add, dataset, columns, pause)
        batch.rows += rows
        batch.bytes += nbytes

    def build_unbuilt(self, batch: SealBatch, pause: Callable[[], None] | None = None) -> None:
        """Build the column sets ``batch`` took unbuilt into its tables, in order (each is
        dropped from the batch once built, so a retry after an error resumes there)."""
        unbuilt = batch.unbuilt
        while unbuilt:
            dataset, columns, rows = unbuilt[0]
            batch.rows -= rows  # counted again, as built, by _append_built
            try:
                self._append_built(batch, dataset, columns, pause)
            except BaseException:
                batch.rows += rows
                raise
            unbuilt.popleft()

    def _tables(self, add: Callable[[str, str, pa.Table], None], dataset: str,
                columns: dict[str, Any],
                pause: Callable[[], None] | None = None) -> tuple[int, int]:
        """Build ``dataset``'s table from ``columns`` and ``add`` it split by UTC day; returns
        its rows and Arrow bytes (0, 0 when it has no time: nothing added). ``columns`` may be
        an :meth:`append_later` build, called here."""
        if callable(columns):
            columns = columns(pause)
        schema = self.schemas[dataset]
        table = schema.table(columns, pause)
        t = table.column(schema.time_column)
        lo, hi = pc.min_max(t).values()
        lo, hi = lo.as_py(), hi.as_py()
        if lo is None:
            return 0, 0
        if lo // DAY_NS == hi // DAY_NS:
            add(dataset, day_of(lo), table)
        else:
            days = pc.divide(t, pa.scalar(DAY_NS, pa.int64()))
            for d in pc.unique(days).to_pylist():
                part = table.filter(pc.equal(days, d))
                add(dataset, day_of(d * DAY_NS), part)
        return table.num_rows, table.nbytes

    def _add(self, dataset: str, day: str, table: pa.Table) -> None:
        self._open.setdefault((dataset, day), []).append(table)

    def take(self) -> SealBatch:
        """Hand over every buffered table (and, :attr:`deferred`, every column set not built
        yet) and start empty buffers (O(1): no copy, nothing built).

        The taken :class:`SealBatch` can be sealed by another thread (:meth:`seal_batch`)
        while new rows are appended here; :meth:`restore` puts it back if sealing failed."""
        with self._mutex:
            batch = SealBatch(self._open, self.buffered_rows, self.buffered_bytes,
                              self._unbuilt)
            self._open = {}
            self._unbuilt = deque()
            self.buffered_rows = 0
            self.buffered_bytes = 0
            self._generation += 1
        return batch

    def restore(self, batch: SealBatch) -> None:
        """Put a batch whose seal failed back in front of the rows buffered since it was
        taken, so the next commit writes the same rows in the same order. Its unbuilt column
        sets are built here first (they are older than any table buffered since)."""
        self.build_unbuilt(batch)
        with self._mutex:
            merged = dict(batch.tables)
            for key, tables in self._open.items():
                merged[key] = [*merged.get(key, []), *tables]
            self._open = merged
            self.buffered_rows += batch.rows
            self.buffered_bytes += batch.bytes
            self._generation += 1

    def seal(self, commit: int) -> list[FileEntry]:
        """Write every buffered (dataset, day) to a Parquet file named after ``commit``
        (:meth:`take` + :meth:`seal_batch`; on error the buffers are kept)."""
        batch = self.take()
        try:
            return self.seal_batch(batch, commit)
        except BaseException:
            self.restore(batch)
            raise

    def seal_batch(self, batch: SealBatch, commit: int) -> list[FileEntry]:
        """Write each (dataset, day) of ``batch`` to a Parquet file named after ``commit``
        (column sets it took unbuilt are built first).

        Touches no buffer of this writer (safe in another thread while rows are appended).
        The files are written by up to :data:`SEAL_THREADS` threads (pyarrow's Parquet writer
        and ``fsync`` release the GIL, so files encode and sync side by side); names, contents
        and the order of the entries do not depend on that. On error, every file written by
        this call is removed (once all writers have stopped) and the first error (in file
        order) is raised."""
        self.build_unbuilt(batch)
        items = sorted(batch.tables.items())
        written: list[Path] = []  # appended by the writer threads (list.append is atomic)

        def one(n: int, dataset: str, day: str, tables: list[pa.Table]) -> FileEntry:
            schema = self.schemas[dataset]
            table = pa.concat_tables(tables).combine_chunks()
            table = table.replace_schema_metadata(schema.arrow().metadata)
            directory = partition_dir(self.root, dataset, day)
            path = directory / f"part-{commit:08d}-{n:03d}.parquet"
            size = write_parquet_atomic(table, path, write_table=self._write_table)
            written.append(path)
            rel = str(path.relative_to(self.root))
            return file_entry(table, schema, rel, day, size, commit)

        try:
            if len(items) <= 1:
                entries = [one(n, ds, day, t) for n, ((ds, day), t) in enumerate(items)]
            else:
                with ThreadPoolExecutor(max_workers=min(SEAL_THREADS, len(items)),
                                        thread_name_prefix="seal") as pool:
                    futures = [pool.submit(one, n, ds, day, t)
                               for n, ((ds, day), t) in enumerate(items)]
                    wait(futures)  # every writer has stopped before any cleanup
                entries = [f.result() for f in futures]  # the first error in file order
        except BaseException:
            for p in written:
                try:
                    p.unlink()
                except OSError:
                    pass
            raise
        return entries


@dataclass(slots=True)
class SealBatch:
    """Buffered tables taken from a :class:`PartitionWriter` for one commit:
    (dataset, UTC day) -> tables in append order, with their row and Arrow byte counts."""

    tables: dict[tuple[str, str], list[pa.Table]]
    rows: int
    bytes: int
    #: column sets taken before they were built (a deferred writer's), oldest first: built
    #: behind ``tables`` before the batch is sealed (``rows`` counts them already)
    unbuilt: deque[tuple[str, dict[str, Any], int]] = field(default_factory=deque)


class ArchiveStore:
    """An archive directory: committed state, recovery, commits."""

    def __init__(self, root: str | os.PathLike[str], *, schema_dir: Path | None = None) -> None:
        self.root = Path(root)
        self.schemas = load_schemas(schema_dir)
        self.journal_root = self.root / "journal"
        self._lock_fh: Any = None
        self.state = self._load()

    @property
    def manifest_path(self) -> Path:
        return self.root / "_manifest" / "current.json"

    def _load(self) -> ArchiveState:
        try:
            raw = self.manifest_path.read_bytes()
        except FileNotFoundError:
            return ArchiveState()
        try:
            st = msgspec.json.decode(raw, type=ArchiveState)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ArchiveFormatError(f"{self.manifest_path}: malformed manifest: {exc}") from exc
        if st.format > MANIFEST_FORMAT:
            raise ArchiveFormatError(f"{self.manifest_path}: manifest format {st.format} was "
                                     f"written by a newer recorder (this one reads "
                                     f"<= {MANIFEST_FORMAT})")
        return st

    def recover(self) -> list[Path]:
        """Delete data files no commit lists (crash orphans) and stale temp files."""
        live = {f.file for f in self.state.files}
        removed: list[Path] = []
        data = self.root / "data"
        if data.is_dir():
            for p in data.rglob("*"):
                if p.is_file() and (p.name.startswith(".tmp-")
                                    or str(p.relative_to(self.root)) not in live):
                    p.unlink()
                    removed.append(p)
        for sub in ("_manifest", "_state"):
            d = self.root / sub
            if d.is_dir():
                for p in d.glob(".tmp-*"):
                    p.unlink()
                    removed.append(p)
        d = self.root / "_state"
        if d.is_dir():  # state files of superseded commits (crash before their unlink)
            for p in d.glob("pipeline-*.state"):
                if f"_state/{p.name}" != self.state.pipeline:
                    p.unlink()
                    removed.append(p)
        return removed

    def load_pipeline(self) -> PipelineState | None:
        """The pipeline state of the last commit (None for a fresh archive).

        Pure data decoding (:func:`recorder.pipeline.state.decode_state`): never unpickles,
        never imports or calls anything the file names. Raises :class:`ArchiveFormatError` /
        :class:`~recorder.pipeline.state.StateError` for a pickled (format 1) state, a path
        outside ``_state/``, an unknown or newer state version, or malformed content."""
        rel = self.state.pipeline
        if not rel:
            return None
        if rel.endswith(".pkl"):
            raise ArchiveFormatError(
                f"{rel}: this archive stores its pipeline state as a pickle (first archive "
                f"format); it is never unpickled. Re-derive it from its journal instead: "
                f"`recorder ingest {self.journal_root}/... --archive NEW`")
        if not _STATE_PATH.fullmatch(rel):
            raise ArchiveFormatError(f"manifest names an invalid state path {rel!r}")
        try:
            data = (self.root / rel).read_bytes()
        except OSError as exc:
            raise ArchiveFormatError(f"cannot read pipeline state {rel}: {exc}") from exc
        return decode_state(data)

    def commit(self, entries: list[FileEntry], *, pipeline: PipelineState | None,
               journal: dict[str, int],
               segments: list[str], sources: dict[str, dict[str, Any]] | None = None,
               removed: set[str] | None = None,
               replaced: dict[str, FileEntry] | None = None) -> None:
        """Make ``entries`` visible with the journal position and pipeline state (atomic).

        ``removed``: files this commit retires (compaction, retention); they stay on disk
        until the caller deletes them after the commit. ``replaced``: live file -> the entry
        taking its place *at the same position* of the file list (``recorder repair``: a
        day's files keep their order); the old file stays on disk until the caller deletes
        it. ``pipeline=None`` keeps the state file of the previous commit (commits that do
        not derive, e.g. compaction)."""
        st = self.state
        seq = st.commit + 1
        if pipeline is None:
            pipe_rel = st.pipeline
        else:
            pipe_rel = f"_state/pipeline-{seq:08d}.state"
            atomic_write_bytes(self.root / pipe_rel, encode_state(pipeline))
        files = [(replaced or {}).get(f.file, f) for f in st.files
                 if not removed or f.file not in removed] + entries
        new = ArchiveState(commit=seq, files=files, journal=dict(journal),
                           segments=list(segments),
                           sources=dict(sources if sources is not None else st.sources),
                           pipeline=pipe_rel)
        atomic_write_bytes(self.manifest_path, msgspec.json.encode(new))
        old_pipe = st.pipeline
        self.state = new
        if old_pipe and old_pipe != pipe_rel:
            try:
                (self.root / old_pipe).unlink()
            except OSError:
                pass
        try:
            self.write_manifest_parquet()
        except ArchiveWriteError:
            pass  # derived convenience file; rebuilt at the next commit

    def write_manifest_parquet(self) -> None:
        """``_manifest/manifest.parquet``: one row per live file, for query pruning."""
        files = self.state.files
        table = pa.table({
            "file": pa.array([f.file for f in files], pa.string()),
            "dataset": pa.array([f.dataset for f in files], pa.string()),
            "date": pa.array([f.date for f in files], pa.string()),
            "rows": pa.array([f.rows for f in files], pa.int64()),
            "bytes": pa.array([f.bytes for f in files], pa.int64()),
            "min_time": pa.array([f.min_time for f in files], pa.int64()),
            "max_time": pa.array([f.max_time for f in files], pa.int64()),
            "symbols": pa.array([f.symbols for f in files], pa.list_(pa.string())),
            "epochs": pa.array([f.epochs for f in files], pa.int64()),
            "schema_version": pa.array([f.schema_version for f in files], pa.int32()),
            "commit": pa.array([f.commit for f in files], pa.int64()),
        })
        write_parquet_atomic(table, self.root / "_manifest" / "manifest.parquet")

    def files(self, dataset: str) -> list[Path]:
        """Live data files of one dataset in time order: by UTC date, then commit order (a
        day's rolling files, or its compacted file(s), are consecutive)."""
        entries = [f for f in self.state.files if f.dataset == dataset]
        order = {id(f): i for i, f in enumerate(entries)}
        entries.sort(key=lambda f: (f.date, order[id(f)]))
        return [self.root / f.file for f in entries]

    # ------------------------------------------------------------------ writer lock

    def lock(self) -> None:
        """Take the archive's exclusive writer lock (``_manifest/writer.lock``, ``flock``).

        One process at a time may commit to an archive: the live writer / ingest
        (:class:`~recorder.archive.session.Deriver`), compaction and retention all take it.
        Raises :class:`ArchiveBusyError` if another open :class:`ArchiveStore` holds it. Released
        by :meth:`unlock`, when this object is garbage-collected, or when the process dies
        (kill -9 included)."""
        if self._lock_fh is not None:
            return
        path = self.root / "_manifest" / "writer.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+b")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.close()
            raise ArchiveBusyError(f"{self.root}: another writer holds the archive "
                                   f"(ingest, capture, compaction or retention)") from exc
        self._lock_fh = fh
        self.state = self._load()  # what the previous holder committed

    def unlock(self) -> None:
        """Release the writer lock (no-op when not held)."""
        fh, self._lock_fh = self._lock_fh, None
        if fh is not None:
            fh.close()


def __getattr__(name: str) -> type[ArchiveStore]:
    """``Archive``, this class's former name, still imports (with a DeprecationWarning):
    ``recorder.Archive`` is the one public class of that name (the read-only query API)."""
    if name == "Archive":
        import warnings

        warnings.warn("recorder.archive.store.Archive is now ArchiveStore (recorder.Archive is "
                      "the query API)", DeprecationWarning, stacklevel=2)
        return ArchiveStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
