"""The raw journal: every frame, append-only, in zstd-compressed rolling segments.

The journal is the source of truth and the write-ahead log of the archive: every Parquet row is
re-derivable from it (``recorder ingest <segments> --archive NEW``).

Segment format (``*.kjz``): one zstd stream. Its decompressed content is::

    b"KRJ2" | u32 header length | header JSON ({"format":2,"host","run_id","created_ns",...})
    record*  where record = struct "<IHBHI" (dt, conn, sd, meta length, payload length)
                            [| i64 recv_ns  if dt == 0xFFFFFFFF]
                            [| u64 conn_id  if conn == 0xFFFF]
                            | meta | payload

* ``dt`` = ``recv_ns`` minus the previous record's ``recv_ns`` in this segment (the first
  record's previous is 0), or ``0xFFFFFFFF`` when that is negative or does not fit, followed
  by the absolute ``recv_ns``;
* ``conn`` = index into the segment's connection table, or ``0xFFFF`` followed by the
  ``conn_id``, which is then appended to the table (while it has fewer than 0xFFFF entries);
* ``sd`` = stream index * 2 + direction index (:data:`recorder.frames.STREAMS`,
  ``("in", "out")``).

The compact header (13 bytes instead of 24, mostly constant) takes the journal from 41.8 to
40.5 B/msg on the 1M-frame sim stream at zstd level 3 (37.0 at the default level 5). Format 1 (``b"KRJ1"``, record =
struct ``"<qQBBHI"`` (recv_ns, conn_id, stream, direction, meta length, payload length) |
meta | payload) is still read.
The writer compresses records into memory and, at least every ``fsync_interval_s`` (and on
:meth:`JournalWriter.flush`), ends a zstd *block* (so everything written so far decodes), writes it
with ``os.write`` and fsyncs (:meth:`JournalWriter.flush` from another thread syncs outside the
writer's lock, so appends go on meanwhile). A kill -9 can therefore lose at most the last interval and can leave
a torn tail (a partial block, or a partial record); :func:`read_segment` detects that, reports it
and stops cleanly at the last complete record. It never raises on damaged data.

Disk full (or any write error) raises :class:`JournalWriteError`; the segment is truncated back to
its last durable size, the records not yet durable stay in memory, and the next successful
:meth:`JournalWriter.flush` writes them into a fresh segment: nothing already durable is
corrupted and nothing accepted is lost while the process lives.

Positions: the ``n``-th record (0-based) of segment ``name`` has ``JournalPosition(name, n)``.
"""

from __future__ import annotations

import errno
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Final

import msgspec
import zstandard

from recorder import _core
from recorder.errors import RecorderError
from recorder.frames import STREAMS, Frame

__all__ = [
    "SEGMENT_SUFFIX",
    "JournalPosition",
    "JournalWriteError",
    "JournalWriter",
    "SegmentInfo",
    "read_segment",
    "list_segments",
    "encode_record",
    "as_read",
]

SEGMENT_SUFFIX: Final = ".kjz"
_MAGIC: Final = b"KRJ2"
_MAGIC_V1: Final = b"KRJ1"
_REC: Final = struct.Struct("<qQBBHI")  # format 1
_REC2: Final = struct.Struct("<IHBHI")  # format 2
_I64: Final = struct.Struct("<q")
_U64: Final = struct.Struct("<Q")
_DT_ESC: Final = 0xFFFFFFFF
_CONN_ESC: Final = 0xFFFF
_U32: Final = struct.Struct("<I")
_DIRS: Final = ("in", "out")
_STREAM_INDEX: Final = {s: i for i, s in enumerate(STREAMS)}
_DIR_INDEX: Final = {"in": 0, "out": 1}
_SAFE: Final = re.compile(r"[^A-Za-z0-9_.-]")
_MAX_META: Final = 0xFFFF
#: Records are handed to zstd in batches of about this many bytes (per-record ``compress``
#: calls cost ~1 us each); a flush always compresses what is batched first.
_BATCH_BYTES: Final = 256 * 1024


class JournalWriteError(RecorderError, OSError):
    """Writing or fsyncing the journal failed (``errno`` kept, e.g. ENOSPC). Records accepted by
    :meth:`JournalWriter.append` are retained in memory and written by the next flush."""


class JournalPosition(msgspec.Struct, frozen=True, order=True):
    """A record's place: segment file name (relative to the journal root) and 0-based index."""

    segment: str
    index: int


class SegmentInfo(msgspec.Struct, kw_only=True):
    """What a read found: the header, how many complete records, and whether the tail was torn."""

    header: dict = msgspec.field(default_factory=dict)
    records: int = 0
    torn: bool = False
    error: str = ""


class _Encoder:
    """Format-2 record encoder of one segment (delta time, connection table)."""

    __slots__ = ("prev", "conns")

    def __init__(self) -> None:
        self.prev = 0
        self.conns: dict[int, int] = {}

    def encode(self, frame: Frame) -> bytes:
        meta = frame.meta.encode("utf-8", "surrogatepass") if frame.meta else b""
        if len(meta) > _MAX_META:
            meta = meta[:_MAX_META]
        payload = frame.payload
        recv = frame.recv_ns
        dt = recv - self.prev
        self.prev = recv
        extra = b""
        if not 0 <= dt < _DT_ESC:
            dt = _DT_ESC
            extra = _I64.pack(recv)
        conn = frame.conn_id & 0xFFFFFFFFFFFFFFFF
        ci = self.conns.get(conn)
        if ci is None:
            ci = _CONN_ESC
            extra += _U64.pack(conn)
            if len(self.conns) < _CONN_ESC:
                self.conns[conn] = len(self.conns)
        return (_REC2.pack(dt, ci, _STREAM_INDEX[frame.stream] * 2 + _DIR_INDEX[frame.direction],
                           len(meta), len(payload)) + extra + meta + payload)


def encode_record(frame: Frame) -> bytes:
    """One *format-1* record's bytes (header + meta + payload); kept for compatibility tests.
    The writer emits format 2 (see the module docstring)."""
    meta = frame.meta.encode("utf-8", "surrogatepass")
    if len(meta) > _MAX_META:
        meta = meta[:_MAX_META]
    payload = frame.payload
    return (
        _REC.pack(
            frame.recv_ns,
            frame.conn_id & 0xFFFFFFFFFFFFFFFF,
            _STREAM_INDEX[frame.stream],
            _DIR_INDEX[frame.direction],
            len(meta),
            len(payload),
        )
        + meta
        + payload
    )


_U64_MAX: Final = 0xFFFFFFFFFFFFFFFF


def as_read(frame: Frame) -> Frame | None:
    """``frame`` exactly as :func:`read_segment` yields it back once :class:`JournalWriter`
    appended it (the same object: the journal keeps every field as is), or None where the
    journal would change it (a ``meta`` longer than 65,535 UTF-8 bytes is cut, a ``conn_id``
    outside u64 is masked, a non-int clock or non-bytes payload comes back converted): then
    the caller must read the record back instead. Lets ``recorder ingest`` derive the frames it
    has just journaled without decoding the segment again."""
    conn = frame.conn_id
    if (type(frame.payload) is not bytes or type(conn) is not int
            or type(frame.recv_ns) is not int or not 0 <= conn <= _U64_MAX):
        return None
    meta = frame.meta
    if meta and (type(meta) is not str or (len(meta) * 4 > _MAX_META and len(
            meta.encode("utf-8", "surrogatepass")) > _MAX_META)):
        return None
    return frame


def safe_component(text: str) -> str:
    """A file-name-safe rendering of ``text`` (for host names)."""
    return _SAFE.sub("_", text)[:64] or "_"


class JournalWriter:
    """Append frames to rolling zstd segments under ``root``.

    ``fsync_interval_s`` bounds how much a crash can lose: :meth:`append` flushes and fsyncs
    when the interval has elapsed; with ``background_flush=True`` a daemon thread also flushes
    every interval so quiet periods are durable too. Segments roll after ``segment_max_bytes``
    of uncompressed data or ``segment_max_s`` seconds. ``level`` is the zstd level: 5 by
    default (1M-frame sim stream, format 2, batched: level 3 40.5 B/msg at ~1.2 us/msg of
    compression, level 5 37.0 B/msg at ~2.8 us/msg; the ~4 B/msg left above the payloads'
    own 33 B/msg is the ns-jittered receive time, which is kept exactly). ``write`` is the low-level write seam
    (``os.write`` by default; tests inject ENOSPC through it). ``threads``: zstd worker threads
    (0, the default: compress in the calling thread; ``recorder ingest`` uses 1 so compression
    runs beside the conversion on the second core; zstd releases the GIL. The stream is
    equally valid and a flush still waits for every byte, but block boundaries differ, so
    the segment is ~0.1 % larger at the same level).

    ``offload``: :meth:`append` only encodes (no compression, write or sync, so it never
    holds its caller, an event loop, for more than one record's encoding); the owner calls
    :meth:`flush` from another thread at least every ``fsync_interval_s`` (live capture: every
    half interval), and the flush compresses, writes and syncs *outside* the lock that
    :meth:`append` takes (zstd releases the GIL: it runs beside the caller on the other
    core). Only a roll (a new segment: size, age, or after a write error) and :meth:`close`
    still compress and sync in the appending thread, after waiting for a flush in progress.
    Segments, positions, durability after a flush and error behaviour are as without it;
    the zstd block boundaries differ (one block per flush).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        host: str,
        run_id: str = "",
        fsync_interval_s: float = 1.0,
        segment_max_bytes: int = 256 * 1024 * 1024,
        segment_max_s: float = 3600.0,
        level: int = 5,
        threads: int = 0,
        background_flush: bool = False,
        write: Callable[[int, bytes], int] = os.write,
        clock_ns: Callable[[], int] = time.time_ns,
        on_segment: Callable[[str, int], None] | None = None,
        engine: str = "core",
        offload: bool = False,
    ) -> None:
        if engine not in ("core", "python"):
            raise ValueError(f"unknown journal engine {engine!r} (core or python)")
        self._core_encode = engine == "core"
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.run_id = run_id or f"{os.getpid()}-{time.time_ns()}"
        self.fsync_interval_s = fsync_interval_s
        self.segment_max_bytes = segment_max_bytes
        self.segment_max_s = segment_max_s
        self._level = level
        self._threads = threads
        self._write = write
        self._clock_ns = clock_ns
        self._on_segment = on_segment
        self._lock = threading.RLock()
        self._offload = offload
        #: offload: held by the thread that owns the compressor and the file (a flush, a
        #: roll, close); always taken *before* ``_lock``
        self._io_lock = threading.RLock()
        self._fd: int | None = None
        self._name = ""
        self._cobj: zstandard.ZstdCompressionObj | None = None
        self._out: list[bytes] = []  # compressed bytes not yet written
        self._raw: list[bytes] = []  # records not yet given to the compressor (batched)
        self._raw_pending = 0
        self._pending: list[Frame] = []  # frames not yet durable (rewritten after an error)
        #: frames of this segment dropped from the front of ``_pending`` once durable
        self._pending_dropped = 0
        #: bytes of this segment written (durable once fsynced: ``_durable_size``)
        self._written_size = 0
        #: segment generation (a roll or a failed sync starts a new one); a sync that ran
        #: outside the lock only counts for the generation it wrote in
        self._gen = 0
        self._failed_gen = -1
        self._sync_lock = threading.Lock()
        self._enc = _Encoder()
        self._index = 0  # records in the current segment
        self._raw_bytes = 0
        self._opened_at = 0.0
        self._durable_size = 0
        self._broken = False
        #: a write error happened (frames were re-written into a later segment: the segments
        #: no longer hold exactly the frames in the order ``append`` placed them)
        self.had_error = False
        self._seq = 0
        self._next_flush = time.monotonic() + fsync_interval_s
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background_flush:
            self._thread = threading.Thread(target=self._flusher, daemon=True, name="journal")
            self._thread.start()

    # ------------------------------------------------------------------ public API

    @property
    def segment(self) -> str:
        """The current segment's name relative to ``root`` ('' before the first append)."""
        return self._name

    def append(self, frame: Frame) -> JournalPosition:
        """Append one frame; returns its position.

        Once a frame is accepted (a position returned) it is never lost: a write error while
        appending (an interval flush, or rolling to a fresh segment while the disk is full)
        does not raise here; the frame stays pending in memory and the error is raised by the
        next :meth:`flush` (or commit), which retries. Raises only *before* accepting: a closed
        writer, or the very first segment cannot be created (:class:`JournalWriteError`)."""
        if self._offload:
            with self._lock:
                if not (self._closed or self._fd is None or self._broken
                        or self._should_roll()):
                    return self._accept(frame)
            with self._io_lock:  # a roll (or a closed writer): the full path, file ours
                return self._append(frame)
        return self._append(frame)

    def _accept(self, frame: Frame) -> JournalPosition:
        """Encode ``frame`` into the batch of the open segment and give it the next position
        (called holding ``_lock``, with a writable segment)."""
        record = self._enc.encode(frame)
        pos = JournalPosition(self._name, self._index)
        self._index += 1
        self._raw_bytes += len(record)
        self._pending.append(frame)
        self._raw.append(record)
        self._raw_pending += len(record)
        return pos

    def _append(self, frame: Frame) -> JournalPosition:
        """:meth:`append`'s full path (offload: called holding ``_io_lock``)."""
        with self._lock:
            if self._closed:
                raise ValueError("journal writer is closed")
            if self._fd is None or self._broken or self._should_roll():
                try:
                    self._roll()
                except JournalWriteError:
                    if not self._name:
                        raise  # no segment yet: nothing accepted
                    self._broken = True  # kept in memory; the next flush() retries and raises
            if self._fd is None or self._broken:  # no writable segment: keep it pending only
                pos = JournalPosition(self._name, self._index)
                self._index += 1
                self._pending.append(frame)
                return pos
            pos = self._accept(frame)
            if self._offload:
                return pos  # the owner's flush compresses and writes
            if self._raw_pending >= _BATCH_BYTES:
                self._compress_raw()
            if time.monotonic() >= self._next_flush:
                try:
                    self._flush_locked()
                except JournalWriteError:
                    pass  # accepted and pending: the next flush() retries and raises
            return pos

    def append_many(self, frames: Iterable[Frame]) -> list[tuple[str, int]]:
        """:meth:`append` each of ``frames`` in order, with the same effect, positions and
        error behaviour (a frame that needs a roll, or any unusual state, goes through
        :meth:`append` itself); the common case is one loop under one lock. Returns the runs
        as ``(segment, count)``: the first ``count`` frames went to ``segment`` (consecutive
        indexes), the next run to the next segment, and so on. Used by ``recorder ingest``."""
        if self._offload:
            out: list[tuple[str, int]] = []
            for frame in frames:
                seg = self.append(frame).segment
                if out and out[-1][0] == seg:
                    out[-1] = (seg, out[-1][1] + 1)
                else:
                    out.append((seg, 1))
            return out
        if self._core_encode:
            return self._append_many_core(frames if type(frames) is list else list(frames))
        runs: list[tuple[str, int]] = []
        name, count = "", 0
        monotonic = time.monotonic
        with self._lock:
            for frame in frames:
                now = monotonic()
                if (self._closed or self._fd is None or self._broken
                        or self._raw_bytes >= self.segment_max_bytes
                        or now - self._opened_at >= self.segment_max_s
                        or now >= self._next_flush):
                    seg = self.append(frame).segment  # roll, flush, errors: the full path
                else:
                    record = self._enc.encode(frame)
                    self._index += 1
                    n = len(record)
                    self._raw_bytes += n
                    self._pending.append(frame)
                    self._raw.append(record)
                    self._raw_pending += n
                    if self._raw_pending >= _BATCH_BYTES:
                        self._compress_raw()
                    seg = self._name
                if seg == name:
                    count += 1
                else:
                    if count:
                        runs.append((name, count))
                    name, count = seg, 1
        if count:
            runs.append((name, count))
        return runs

    def _append_many_core(self, frames: list[Frame]) -> list[tuple[str, int]]:
        """:meth:`append_many` with the records encoded by the compiled core
        (``recorder._core.journal_encode_v2``), a run of frames per call: the same bytes,
        segments, positions and error behaviour. The roll and flush conditions are checked
        before every run instead of every frame: the size roll exactly (a run stops at the
        segment's size limit), the time-based roll and the interval flush at most one batch
        (``_BATCH_BYTES``) late. A frame the core does not encode (an unusual field, a long
        ``meta``) goes through the reference encoder, one at a time."""
        runs: list[tuple[str, int]] = []
        name, count = "", 0
        monotonic = time.monotonic
        encode_run = _core.journal_encode_v2
        i, n = 0, len(frames)
        with self._lock:
            while i < n:
                now = monotonic()
                if (self._closed or self._fd is None or self._broken
                        or self._raw_bytes >= self.segment_max_bytes
                        or now - self._opened_at >= self.segment_max_s
                        or now >= self._next_flush):
                    seg = self.append(frames[i]).segment  # roll, flush, errors: the full path
                    done = 1
                else:
                    enc = self._enc
                    limit = min(self.segment_max_bytes - self._raw_bytes,
                                max(_BATCH_BYTES - self._raw_pending, 1))
                    data, done, enc.prev = encode_run(frames, i, enc.prev, enc.conns,
                                                      STREAMS, limit)
                    if not done:  # the reference encoder's frame
                        data = enc.encode(frames[i])
                        done = 1
                    self._index += done
                    size = len(data)
                    self._raw_bytes += size
                    self._pending += frames[i:i + done]
                    self._raw.append(data)
                    self._raw_pending += size
                    if self._raw_pending >= _BATCH_BYTES:
                        self._compress_raw()
                    seg = self._name
                i += done
                if seg == name:
                    count += done
                else:
                    if count:
                        runs.append((name, count))
                    name, count = seg, done
        if count:
            runs.append((name, count))
        return runs

    def _compress_raw(self) -> None:
        """Give the batched records to the compressor (one call per batch, not per record)."""
        if self._raw:
            assert self._cobj is not None
            chunk = self._cobj.compress(b"".join(self._raw))
            if chunk:
                self._out.append(chunk)
            self._raw.clear()
            self._raw_pending = 0

    def flush(self) -> None:
        """Make every appended record durable (zstd block end, write, fsync).

        The block is written under the writer's lock; the ``fsync`` runs outside it, so
        :meth:`append` (the capture event loop) never waits for the disk while another
        thread flushes. Must not be called while holding the lock (internal callers use
        :meth:`_flush_locked`). Raises :class:`JournalWriteError`; then the records not yet
        durable stay in memory and the next flush rewrites them into a fresh segment."""
        if self._offload:
            self._flush_offloaded()
            return
        with self._lock:
            written = self._write_block()
            if written is None:
                return
        fd, gen, size, upto = written
        with self._sync_lock:  # syncs and their bookkeeping in order
            try:
                os.fsync(fd)
                error: OSError | None = None
            except OSError as exc:
                error = exc
            with self._lock:
                if gen != self._gen:
                    if gen == self._failed_gen:
                        raise self._write_error(errno.EIO)
                    # rolled or closed meanwhile: the segment was synced before it closed
                    # (an fsync of its reused or closed fd proves nothing either way)
                    return
                if error is not None:
                    self._fail(error)
                self._synced(size, upto)

    def _flush_offloaded(self) -> None:
        """:meth:`flush` with ``offload``: the batched records are taken under the lock (a
        list swap), then compressed, written and synced holding only ``_io_lock``, which
        every other user of the compressor and the file (a roll, :meth:`close`) takes first:
        :meth:`append` goes on meanwhile."""
        with self._io_lock:
            with self._lock:
                self._next_flush = time.monotonic() + self.fsync_interval_s
                if self._fd is None and not self._broken:
                    return
                if self._broken:
                    self._roll()  # re-encodes the frames not durable into a fresh segment
                assert self._cobj is not None and self._fd is not None
                raw, self._raw, self._raw_pending = self._raw, [], 0
                out, self._out = self._out, []
                cobj, fd = self._cobj, self._fd
                upto = self._pending_dropped + len(self._pending)
            # the compressor and the file are ours (_io_lock): zstd runs without the GIL
            if raw:
                out.append(cobj.compress(b"".join(raw)))
            out.append(cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
            data = b"".join(out)
            error: OSError | None = None
            try:
                view = memoryview(data)
                while view:
                    n = self._write(fd, view)
                    view = view[n:]
            except OSError as exc:
                error = exc
            if error is None:
                try:
                    os.fsync(fd)
                except OSError as exc:
                    error = exc
            with self._lock:
                if error is not None:
                    self._fail(error)  # raises; the frames not durable stay pending
                self._written_size += len(data)
                self._synced(self._written_size, upto)

    def _flush_locked(self) -> None:
        """:meth:`flush` for callers holding the lock (roll, close, an inline interval flush):
        write and fsync under the lock."""
        with self._lock:
            written = self._write_block()
            if written is None:
                return
            fd, _, size, upto = written
            try:
                os.fsync(fd)
            except OSError as exc:
                self._fail(exc)
            self._synced(size, upto)

    def _write_block(self) -> tuple[int, int, int, int] | None:
        """End a zstd block and write everything compressed so far (lock held). Returns
        ``(fd, generation, segment size written, pending frames covered (absolute))``, or
        None when nothing is open."""
        self._next_flush = time.monotonic() + self.fsync_interval_s
        if self._fd is None and not self._broken:
            return None
        if self._broken:
            self._roll()
        assert self._cobj is not None and self._fd is not None
        self._compress_raw()
        self._out.append(self._cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
        data = b"".join(self._out)
        self._out.clear()
        try:
            view = memoryview(data)
            while view:
                n = self._write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            self._fail(exc)
        self._written_size += len(data)
        return (self._fd, self._gen, self._written_size,
                self._pending_dropped + len(self._pending))

    def _synced(self, size: int, upto: int) -> None:
        """The segment is durable up to ``size`` bytes, holding the first ``upto`` frames
        (absolute) of this segment's pending list (lock held)."""
        if size > self._durable_size:
            self._durable_size = size
        n = upto - self._pending_dropped
        if n > 0:
            del self._pending[:n]
            self._pending_dropped += n

    def _write_error(self, code: int) -> JournalWriteError:
        return JournalWriteError(
            code, f"journal write failed ({os.strerror(code)}); "
            f"{len(self._pending)} records kept in memory")

    def _fail(self, exc: OSError) -> None:
        """A write or sync failed (lock held): cut the segment back to its durable size,
        keep every frame not durable for the next segment, raise."""
        self._broken = True
        self._failed_gen = self._gen
        self._gen += 1
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, self._durable_size)
            except OSError:
                pass
        raise self._write_error(exc.errno or errno.EIO) from exc

    def close(self) -> None:
        """Flush, end the zstd frame and close the segment."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._io_lock, self._lock:
            if self._closed:
                return
            if self._fd is not None:
                self._flush_locked()
                self._finish_segment()
            self._closed = True

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _flusher(self) -> None:
        while not self._stop.wait(self.fsync_interval_s):
            try:
                self.flush()
            except OSError:
                pass  # reported to the next caller of append/flush

    def _should_roll(self) -> bool:
        return (
            self._raw_bytes >= self.segment_max_bytes
            or time.monotonic() - self._opened_at >= self.segment_max_s
        )

    def _finish_segment(self) -> None:
        if self._fd is None:
            return
        try:
            if not self._broken and self._cobj is not None:
                tail = self._cobj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)
                if self._out:
                    tail = b"".join(self._out) + tail
                    self._out.clear()
                self._write(self._fd, tail)
                os.fsync(self._fd)
        except OSError:
            pass  # the block-level content is already durable; a missing frame end is a torn tail
        finally:
            os.close(self._fd)
            self._fd = None

    def _roll(self) -> None:
        """Open a fresh segment; after a write error the pending (accepted, not durable)
        frames are re-written at its start and ``on_segment(name, carried)`` says how many.
        Raises :class:`JournalWriteError` (state kept: pending frames stay pending)."""
        carry = self._pending if self._broken else []
        if self._broken:
            self.had_error = True
        if self._fd is not None:
            if not self._broken:
                self._flush_locked()
            self._finish_segment()
        now = self._clock_ns()
        day = time.strftime("%Y-%m-%d", time.gmtime(now // 1_000_000_000))
        self._seq += 1
        name = f"{day}/{safe_component(self.host)}-{now:020d}-{safe_component(self.run_id)}-{self._seq:04d}{SEGMENT_SUFFIX}"
        path = self.root / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            code = exc.errno or errno.EIO
            raise JournalWriteError(
                code, f"journal segment could not be created ({os.strerror(code)}); "
                f"{len(self._pending)} records kept in memory") from exc
        self._broken = False
        self._fd = fd
        self._name = name
        self._cobj = zstandard.ZstdCompressor(level=self._level,
                                          threads=self._threads).compressobj()
        self._out = []
        self._raw = []
        self._raw_pending = 0
        self._pending = []
        self._pending_dropped = 0
        self._written_size = 0
        self._gen += 1
        self._enc = _Encoder()
        self._index = 0
        self._raw_bytes = 0
        self._durable_size = 0
        self._opened_at = time.monotonic()
        header = msgspec.json.encode(
            {"format": 2, "host": self.host, "run_id": self.run_id, "created_ns": now}
        )
        self._out.append(self._cobj.compress(_MAGIC + _U32.pack(len(header)) + header))
        _fsync_dir(path.parent)
        if self._on_segment is not None:
            self._on_segment(name, len(carry))
        for frame in carry:  # frames that were not durable when the old segment broke
            record = self._enc.encode(frame)
            self._pending.append(frame)
            self._index += 1
            self._raw_bytes += len(record)
            self._raw.append(record)
        self._compress_raw()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


#: Decompressed bytes produced per step when reading a segment: memory grows by at most this
#: much per step however well the input compresses (a hostile segment cannot balloon it).
_READ_OUT: Final = 1 << 20
#: A record claiming more than this many bytes (header + meta + payload) is a bad record: a
#: hostile length cannot make the reader buffer gigabytes waiting for it to complete.
MAX_RECORD_BYTES: Final = 512 * 1024 * 1024

try:  # bounded-output streaming with an exact frame-end signal (zstandard's cffi backend)
    from zstandard.backend_cffi import ffi as _zffi
    from zstandard.backend_cffi import lib as _zlib
except Exception:  # noqa: BLE001 - cffi missing: fall back to small input steps
    _zffi = _zlib = None


class _BoundedDecompressor:
    """zstd decompression of one frame, at most ``_READ_OUT`` bytes of output per call.

    ``feed(data)`` gives input; ``step()`` returns the next <= ``_READ_OUT`` bytes of output
    (``b""`` when more input is needed); ``eof`` is true once the frame end was decoded;
    ``unused`` counts input bytes after the frame end. Raises ``zstandard.ZstdError``.
    """

    def __init__(self) -> None:
        self.eof = False
        self.unused = 0
        if _zlib is not None:
            dctx = _zlib.ZSTD_createDCtx()
            if dctx == _zffi.NULL:
                raise MemoryError("ZSTD_createDCtx")
            self._dctx = _zffi.gc(dctx, _zlib.ZSTD_freeDCtx)
            self._inb = _zffi.new("ZSTD_inBuffer *")
            self._outb = _zffi.new("ZSTD_outBuffer *")
            self._dst = _zffi.new("char[]", _READ_OUT)
            self._src = None
            self._keep = b""
        else:  # fallback: 256-byte input steps bound the output per step to ~8 MiB
            self._dobj = zstandard.ZstdDecompressor().decompressobj()
            self._data = memoryview(b"")

    def feed(self, data: bytes) -> None:
        if self.eof:
            self.unused += len(data)
            return
        if _zlib is not None:
            self._keep = data
            self._src = _zffi.from_buffer(data)
            self._inb.src = self._src
            self._inb.size = len(data)
            self._inb.pos = 0
        else:
            self._data = memoryview(data)

    def step(self) -> bytes:
        if self.eof:
            return b""
        if _zlib is None:
            while self._data:
                piece, self._data = self._data[:256], self._data[256:]
                out = self._dobj.decompress(piece)
                if self._dobj.eof:
                    self.eof = True
                    self.unused += len(self._dobj.unused_data) + len(self._data)
                if out or self.eof:
                    return out
            return b""
        inb, outb = self._inb, self._outb
        while True:
            outb.dst = self._dst
            outb.size = _READ_OUT
            outb.pos = 0
            had_input = inb.pos < inb.size
            z = _zlib.ZSTD_decompressStream(self._dctx, outb, inb)
            if _zlib.ZSTD_isError(z):
                msg = _zffi.string(_zlib.ZSTD_getErrorName(z)).decode("utf-8", "replace")
                raise zstandard.ZstdError(f"zstd decompressor error: {msg}")
            if z == 0:
                self.eof = True
                self.unused += inb.size - inb.pos
            out = _zffi.buffer(self._dst, outb.pos)[:] if outb.pos else b""
            if out or self.eof:
                return out
            if not had_input or inb.pos >= inb.size:
                return b""  # needs more input


def list_segments(root: str | os.PathLike[str]) -> list[str]:
    """Segment names under ``root`` (relative), in name order (= creation time per host)."""
    base = Path(root)
    if not base.is_dir():
        return []
    return sorted(str(p.relative_to(base)) for p in base.rglob(f"*{SEGMENT_SUFFIX}"))


def read_segment(
    path: str | os.PathLike[str], *, start: int = 0, info: SegmentInfo | None = None
) -> Iterator[tuple[int, Frame]]:
    """Yield ``(index, frame)`` for records ``index >= start`` of one segment.

    Tolerant: a truncated or corrupt tail (kill -9, bad disk) ends the iteration; ``info`` (if
    given) is filled with the header, the count of complete records and ``torn``/``error``.
    """
    info = info if info is not None else SegmentInfo()
    dobj = _BoundedDecompressor()
    buf = bytearray()
    pos = 0
    index = 0
    header_done = False
    unpack = _REC.unpack_from
    rec_size = _REC.size
    unpack2 = _REC2.unpack_from
    rec2_size = _REC2.size
    streams = STREAMS
    n_sd = 2 * len(STREAMS)
    v2 = True
    prev = 0
    conns: list[int] = []
    try:
        fh = open(path, "rb")
    except OSError as exc:
        info.torn, info.error = True, str(exc)
        return
    with fh:
        eof_clean = False
        while True:
            try:
                out = dobj.step()  # at most _READ_OUT bytes: bounded growth per step
            except zstandard.ZstdError as exc:
                info.torn, info.error = True, f"zstd: {exc}"
                out = b""
            if not out and not info.torn:
                if dobj.eof:
                    break
                chunk = fh.read(1 << 20)
                if not chunk:
                    break
                dobj.feed(chunk)
                continue
            buf += out
            chunk = out  # empty only after a zstd error
            if not header_done:
                if len(buf) < 8:
                    if not chunk:
                        break
                    continue
                magic = bytes(buf[:4])
                if magic != _MAGIC and magic != _MAGIC_V1:
                    info.torn, info.error = True, "bad magic"
                    return
                v2 = magic == _MAGIC
                (hlen,) = _U32.unpack_from(buf, 4)
                if len(buf) < 8 + hlen:
                    if not chunk:
                        break
                    continue
                try:
                    info.header = msgspec.json.decode(bytes(buf[8 : 8 + hlen]))
                except msgspec.DecodeError:
                    info.torn, info.error = True, "bad header"
                    return
                pos = 8 + hlen
                header_done = True
            n = len(buf)
            if v2:
                while pos + rec2_size <= n:
                    dt, ci, sd, mlen, plen = unpack2(buf, pos)
                    m = pos + rec2_size
                    if dt == _DT_ESC:
                        if m + 8 > n:
                            break
                        (recv_ns,) = _I64.unpack_from(buf, m)
                        m += 8
                    else:
                        recv_ns = prev + dt
                    if ci == _CONN_ESC:
                        if m + 8 > n:
                            break
                        (conn,) = _U64.unpack_from(buf, m)
                        m += 8
                        new_conn = True
                    else:
                        new_conn = False
                        if ci >= len(conns):
                            info.torn, info.error = True, f"bad record at {index}"
                            info.records = index
                            return
                        conn = conns[ci]
                    end = m + mlen + plen
                    if plen > MAX_RECORD_BYTES:
                        info.torn, info.error = True, f"bad record at {index}: too large"
                        info.records = index
                        return
                    if end > n:
                        break
                    if sd >= n_sd:
                        info.torn, info.error = True, f"bad record at {index}"
                        info.records = index
                        return
                    if new_conn and len(conns) < _CONN_ESC:
                        conns.append(conn)
                    prev = recv_ns
                    if index >= start:
                        yield index, Frame(
                            recv_ns=recv_ns,
                            conn_id=conn,
                            stream=streams[sd >> 1],
                            direction=_DIRS[sd & 1],
                            payload=bytes(buf[m + mlen : end]),
                            meta=buf[m : m + mlen].decode("utf-8", "surrogatepass")
                            if mlen else "",
                        )
                    index += 1
                    pos = end
            else:
                while pos + rec_size <= n:
                    recv_ns, conn, s, d, mlen, plen = unpack(buf, pos)
                    end = pos + rec_size + mlen + plen
                    if plen > MAX_RECORD_BYTES:
                        info.torn, info.error = True, f"bad record at {index}: too large"
                        info.records = index
                        return
                    if end > n:
                        break
                    if s >= len(streams) or d > 1:
                        info.torn, info.error = True, f"bad record at {index}"
                        info.records = index
                        return
                    if index >= start:
                        m = pos + rec_size
                        yield index, Frame(
                            recv_ns=recv_ns,
                            conn_id=conn,
                            stream=streams[s],
                            direction=_DIRS[d],
                            payload=bytes(buf[m + mlen : end]),
                            meta=buf[m : m + mlen].decode("utf-8", "surrogatepass")
                            if mlen else "",
                        )
                    index += 1
                    pos = end
            del buf[:pos]
            pos = 0
            if info.torn:
                break
        eof_clean = dobj.eof
        if eof_clean and not info.torn and (dobj.unused or fh.read(1)):
            info.torn, info.error = True, "data after the zstd frame end"
        info.records = index
        if buf or (not eof_clean and not info.torn):
            # bytes left over (partial record) or a stream without its zstd frame end: a
            # crash tail or a segment still being written.
            info.torn = True
            info.error = info.error or ("partial record" if buf else "no frame end")
