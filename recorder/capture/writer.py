"""A capture worker's archive root, and the one path every frame takes into it.

Layout (decided for the project): each worker *process* owns one complete archive root,
``<archive_root>/<writer_id>/`` with ``writer_id = <host>-w<k>`` (:func:`writer_id`). Inside it
the archive's own layout applies (journal segments, Parquet partitions, manifest, pipeline
state); ``_capture/`` holds capture's own small files (measured rates). Readers treat the
parent directory as the union of its writer roots (:func:`writer_roots`).

:class:`ArchiveWriter` wraps :class:`recorder.archive.session.ArchiveSession`: every frame,
received or sent, REST bodies and control markers, goes through :meth:`ArchiveWriter.write`
(journal first, then the shared pipeline), and the pipeline's signals come back to the caller.
The session is opened with automatic commits disabled (fixed at construction); capture commits
explicitly on its schedule, when the buffered Arrow bytes exceed a limit, and on shutdown - so
that a commit never happens in the middle of a write and a failed commit can never swallow the
signals of the frame being written. A commit is split: :meth:`ArchiveWriter.begin_commit` cuts
it on the event loop (fast), :meth:`ArchiveWriter.finish_commit` does the I/O in a thread
(:mod:`recorder.capture.archive_part`).

:class:`DiskGuard` is the pure pause/resume decision of the disk-space guard.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from recorder.archive.commit import GilYield, PendingCommit
from recorder.archive.journal import JournalWriteError
from recorder.archive.session import ArchiveSession
from recorder.archive.store import ArchiveBusyError, ArchiveWriteError
from recorder.errors import RecorderError
from recorder.frames import Frame
from recorder.pipeline import markers as mk
from recorder.pipeline.signals import BookDesync, FuturesSeqGap, Signal, TradeIdGap
from recorder.roots import child_roots

__all__ = [
    "writer_id",
    "writer_roots",
    "ArchiveWriter",
    "WriterError",
    "WriterStats",
    "DiskGuard",
    "DiskVerdict",
    "ArchiveBusyError",
]

log = logging.getLogger("recorder.capture.writer")

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.-]")
#: Rows the live pipeline buffers before handing them to its sink (``recorder ingest`` uses
#: the pipeline's default, 200,000). The sink only keeps the lists (the commit thread builds
#: the Arrow tables: :meth:`ArchiveWriter.convert_pending`), so this bounds the rows not
#: yet built and the per-batch work left on the loop (the pipeline's own flush). A batch
#: size never changes which rows are derived (not a derivation setting).
CAPTURE_BATCH_ROWS: Final = 4096


def writer_id(host: str, index: int) -> str:
    """``<host>-w<index>``; the host part is made file-name safe (``[A-Za-z0-9_.-]``)."""
    safe = _UNSAFE.sub("_", host)[:64].strip(".") or "host"
    return f"{safe}-w{index}"


def writer_roots(parent: Path) -> list[Path]:
    """Every writer root under ``parent`` (directories holding ``_manifest/``), sorted; the
    discovery rule is :func:`recorder.roots.child_roots`."""
    return child_roots(parent)


class WriterError(RecorderError, OSError):
    """The archive could not take a frame or a commit (disk full, I/O error). The journal keeps
    every frame it accepted; capture pauses and retries (see the disk guard)."""


@dataclass(slots=True)
class WriterStats:
    """Counters capture reports (metrics/status). ``checksums_ok`` counts verified Kraken
    checksums of book/level3/futures epochs as observed by the pipeline."""

    frames: int = 0
    frames_in: int = 0
    bytes_in: int = 0
    checksums_ok: int = 0
    checksum_failures: int = 0
    trade_gaps: int = 0
    seq_gaps: int = 0
    commits: int = 0
    commit_s_last: float = 0.0
    commit_s_max: float = 0.0
    last_recv_ns: int = 0
    recovered_frames: int = 0
    #: the loop-thread half of a commit (:meth:`ArchiveWriter.begin_commit`): wall seconds
    #: and thread CPU seconds (the latter is what the commit itself costs the loop, whatever
    #: else runs on the machine), longest so far
    commit_cut_s_max: float = 0.0
    commit_cut_cpu_s_max: float = 0.0
    commit_cut_cpu_s_last: float = 0.0
    #: commits whose slow half (flush, seal, manifest, state) ran on a thread running an
    #: event loop: 0 in capture (they run in the commit thread)
    commits_on_loop: int = 0


class ArchiveWriter:
    """One worker's archive root (see module docstring).

    ``roll_bytes``: buffered Arrow bytes that make :attr:`commit_due` true.
    ``checkpoint_minutes``: the book checkpoint interval of a *new* root (an existing root
    keeps the derivation settings it was created with, so that its journal re-derives to the
    same rows; see :class:`recorder.archive.session.Deriver`).
    """

    def __init__(self, root: Path, *, host: str, fsync_interval_s: float = 1.0,
                 roll_bytes: int = 128 * 1024 * 1024, checkpoint_minutes: float = 15.0,
                 clock_ns: Callable[[], int] = time.time_ns,
                 after_cut: Callable[[], None] | None = None) -> None:
        self.root = Path(root)
        #: called right after each commit cut, collector still off (the worker process:
        #: :meth:`recorder.capture.gcpolicy.YoungGc.step`)
        self._after_cut = after_cut
        self.host = host
        self.roll_bytes = roll_bytes
        self.checkpoint_ns = int(checkpoint_minutes * 60e9)
        self._fsync_interval_s = fsync_interval_s
        self._clock_ns = clock_ns
        self.session: ArchiveSession | None = None
        self.stats = WriterStats()
        #: the pipeline's cumulative ``checksums_ok`` when this process opened the root
        self._ok_base = 0

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> int:
        """Open the root (writer lock, crash recovery, re-derivation of the journal tail) and
        journal ProcessStart. Returns the number of journal frames re-derived.

        Raises :class:`ArchiveBusyError` if another process writes this root."""
        self.root.mkdir(parents=True, exist_ok=True)
        session = ArchiveSession(
            self.root, host=self.host, fsync_interval_s=self._fsync_interval_s,
            clock_ns=self._clock_ns, roll_rows=None, roll_bytes=None, roll_seconds=None,
            checkpoint_interval_ns=self.checkpoint_ns,
            # appends on the event loop only encode: the flush loop (a thread, every half
            # interval) and each commit compress, write and sync, outside the append lock
            journal_offload=True)
        # an existing root keeps the settings it was created with (Deriver): what capture
        # derives is what a re-derivation of this journal derives
        self._ok_base = session.deriver.pipeline.counters().checksums_ok
        # rows reach the sink in small batches (the pipeline's own per-batch work, which
        # stays on the event loop, is bounded by their size; the rows are identical)
        session.deriver.pipeline.batch_rows = CAPTURE_BATCH_ROWS
        self.session = session
        n = session.start()
        self.stats.recovered_frames = n
        _warm_up(session)
        # from here rows reach the partition writer on the event loop: it keeps the column
        # lists and the commit thread builds the Arrow tables (convert_pending, and each
        # commit's finish for what is left), never the loop
        session.deriver.writer.deferred = True
        return n

    @property
    def run_id(self) -> str:
        return self.session.run_id if self.session is not None else ""

    def open_trade_gaps(self) -> list[TradeIdGap]:
        """Trade-id holes of this root still waiting for a REST backfill
        (:meth:`recorder.pipeline.Pipeline.open_trade_gaps`): after :meth:`open`, those a
        killed run detected and never finished backfilling."""
        return self._s().deriver.pipeline.open_trade_gaps()

    def _s(self) -> ArchiveSession:
        if self.session is None:
            raise RuntimeError("archive writer is not open")
        return self.session

    # ------------------------------------------------------------------ data path

    def write(self, frame: Frame) -> list[Signal]:
        """Journal then derive ``frame``; the pipeline's signals for capture.

        Raises :class:`WriterError` when the journal cannot write (the journal keeps the
        record in memory and writes it with its next successful flush)."""
        try:
            signals = self._s().write(frame)
        except JournalWriteError as exc:
            raise WriterError(exc.errno or 0, f"journal: {exc}") from exc
        st = self.stats
        st.frames += 1
        if frame.direction == "in" and frame.stream != "control":
            st.frames_in += 1
            st.bytes_in += len(frame.payload)
            st.last_recv_ns = frame.recv_ns
        if signals:
            for sig in signals:
                t = type(sig)
                if t is BookDesync:
                    st.checksum_failures += sig.reason == "checksum_mismatch"  # type: ignore[union-attr]
                elif t is TradeIdGap:
                    st.trade_gaps += 1
                elif t is FuturesSeqGap:
                    st.seq_gaps += 1
        return signals

    def marker(self, marker: mk.Marker, conn_id: int = 0) -> list[Signal]:
        """Journal and derive a control marker."""
        return self.write(mk.marker_frame(marker, self._clock_ns(), conn_id))

    @property
    def buffered_bytes(self) -> int:
        """Arrow bytes waiting for the next commit (rows the pipeline still batches, and rows
        handed over but not built yet, excluded)."""
        return self._s().deriver.writer.buffered_bytes

    @property
    def unbuilt(self) -> int:
        """Row batches handed to the partition writer and not yet built into Arrow tables."""
        s = self.session
        return 0 if s is None else s.deriver.writer.unbuilt

    def convert_pending(self) -> int:
        """Build the row batches the partition writer holds unbuilt into Arrow tables (for the
        commit thread: it lets the loop have the GIL after each column, :class:`GilYield`).
        Returns the batches built."""
        s = self.session
        return 0 if s is None else s.deriver.writer.convert_pending(GilYield())

    @property
    def commit_due(self) -> bool:
        return self.session is not None and self.buffered_bytes >= self.roll_bytes

    def flush_journal(self) -> None:
        """Make every journaled frame durable now (quiet periods included)."""
        try:
            self._s().journal.flush()
        except JournalWriteError as exc:
            raise WriterError(exc.errno or 0, f"journal: {exc}") from exc

    def commit(self) -> float:
        """Seal buffered rows into Parquet and commit them with the journal position (the
        journal is flushed first), all on this thread. Returns the seconds it took.
        :class:`WriterError` on I/O failure (nothing committed is touched; the rows stay
        buffered for the next try). Capture uses the split form below instead."""
        pending = self.begin_commit()
        try:
            return self.finish_commit(pending)
        except WriterError:
            self.abort_commit(pending)
            raise

    def begin_commit(self) -> PendingCommit:
        """The fast half of a commit, on the thread that writes frames (the event loop): the
        cut (:meth:`recorder.archive.session.Deriver.begin_commit`). Its cost is recorded in
        ``stats.commit_cut_s_max`` / ``commit_cut_cpu_s_max``."""
        # a garbage collection due meanwhile runs right after the cut (it is a stall of its
        # own, seen by the loop-lag metric, not a cost of the commit)
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            t0, c0 = time.perf_counter(), time.thread_time()
            pending = self._s().deriver.begin_commit()
            if self._after_cut is not None:
                self._after_cut()
        finally:
            if gc_was_enabled:
                gc.enable()
        st = self.stats
        cpu = time.thread_time() - c0
        st.commit_cut_s_max = max(st.commit_cut_s_max, time.perf_counter() - t0)
        st.commit_cut_cpu_s_last = cpu
        st.commit_cut_cpu_s_max = max(st.commit_cut_cpu_s_max, cpu)
        return pending

    def finish_commit(self, pending: PendingCommit) -> float:
        """The slow half (journal flush, Parquet seal, state, manifest), meant for a thread
        that runs no event loop; returns its seconds. :class:`WriterError` on I/O failure:
        then call :meth:`abort_commit` on the writing thread."""
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        t0 = time.perf_counter()
        try:
            # beside the loop, let it have the GIL while the cut's tables and state are built
            pending.finish(None if on_loop else GilYield())
        except (ArchiveWriteError, JournalWriteError) as exc:
            raise WriterError(exc.errno or 0, f"commit: {exc}") from exc
        dt = time.perf_counter() - t0
        st = self.stats
        st.commits += 1
        st.commits_on_loop += on_loop
        st.commit_s_last = dt
        st.commit_s_max = max(st.commit_s_max, dt)
        return dt

    def abort_commit(self, pending: PendingCommit) -> None:
        """A failed :meth:`finish_commit`: its rows go back to the buffers (writing thread)."""
        pending.abort()

    def close(self, reason: str) -> None:
        """Journal ProcessStop, close the journal, write open epochs/gaps, commit, unlock."""
        s = self.session
        if s is None:
            return
        self.session = None
        try:
            s.close(reason)
        except (ArchiveWriteError, JournalWriteError) as exc:
            s.deriver.release()
            raise WriterError(exc.errno or 0, f"close: {exc}") from exc

    def release(self) -> None:
        """Release the writer lock without committing (after :meth:`emergency_flush`)."""
        s, self.session = self.session, None
        if s is not None:
            s.deriver.release()

    def emergency_flush(self) -> None:
        """Second signal: make the journal durable and close it, nothing else (the next start
        re-derives everything after the last commit)."""
        s = self.session
        if s is not None:
            s.journal.close()

    # ------------------------------------------------------------------ maintenance

    @property
    def archive(self) -> Any:
        """The live :class:`recorder.archive.store.ArchiveStore` (for compaction/retention, which
        must use the writer's own object and lock)."""
        return self._s().deriver.archive

    # ------------------------------------------------------------------ counters

    def refresh_counters(self) -> None:
        """Update ``stats.checksums_ok``: Kraken checksums the pipeline verified since this
        process opened the root (from its public counters, which persist across restarts)."""
        s = self.session
        if s is None:
            return
        self.stats.checksums_ok = s.deriver.pipeline.counters().checksums_ok - self._ok_base

    def activity(self, conn_id: int) -> dict[tuple[str, str], tuple[int, int]]:
        """Data the pipeline counted on connection ``conn_id``: ``(channel, symbol) ->
        (messages, last recv_ns)`` (:meth:`recorder.pipeline.Pipeline.activity`)."""
        s = self.session
        return {} if s is None else s.deriver.pipeline.activity(conn_id)


def _warm_up(session: ArchiveSession) -> None:
    """Pay one-time costs of the row path here (in the opening thread) rather than in the
    first commit's cut on the event loop: pyarrow imports ``numpy.ma`` on the first masked
    array (the pipeline's checksum column), and each dataset's first Arrow table builds its
    conversion paths."""
    import numpy.ma  # noqa: F401

    for schema in session.deriver.archive.schemas.values():
        schema.table(schema.empty_columns())


DiskVerdict = Literal["pause", "resume", "keep"]


@dataclass(slots=True)
class DiskGuard:
    """Pause below ``min_free`` bytes, resume at or above ``resume_free`` (hysteresis)."""

    min_free: int
    resume_free: int
    paused: bool = False

    def check(self, free: int) -> DiskVerdict:
        if not self.paused and free < self.min_free:
            self.paused = True
            return "pause"
        if self.paused and free >= self.resume_free:
            self.paused = False
            return "resume"
        return "keep"
