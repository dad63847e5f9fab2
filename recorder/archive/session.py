"""Journal -> pipeline -> Parquet, exactly once: the derivation loop used by live capture
(:class:`ArchiveSession`) and by ``recorder ingest`` (:class:`Deriver`).

:class:`Deriver` feeds frames with their :class:`~recorder.archive.journal.JournalPosition` to
the :class:`~recorder.pipeline.Pipeline`, whose sink is a
:class:`~recorder.archive.store.PartitionWriter`. :meth:`Deriver.commit` seals the buffered rows
into Parquet files and commits them together with the journal positions reached and the
pipeline's explicit state (:mod:`recorder.pipeline.state`). After a crash, :meth:`Deriver.open` deletes uncommitted files, restores the
pipeline of the last commit and :meth:`Deriver.catch_up` re-derives every journal record after
the committed positions, so each journaled frame reaches Parquet exactly once.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from recorder import __version__
from recorder.archive.commit import PendingCommit
from recorder.archive.journal import (
    JournalPosition,
    JournalWriter,
    SegmentInfo,
    list_segments,
    read_segment,
)
from recorder.archive.store import ArchiveStore, PartitionWriter
from recorder.frames import Frame
from recorder.pipeline import Pipeline
from recorder.pipeline import markers as mk
from recorder.pipeline.signals import Signal

__all__ = ["Deriver", "ArchiveSession"]


class Deriver:
    """Derive Parquet from journal frames with exactly-once commits.

    ``roll_rows`` / ``roll_bytes`` / ``roll_seconds``: commit (seal rolling files) when that
    many rows or Arrow bytes are buffered, or that much receive time has passed since the
    last commit.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        roll_rows: int = 2_000_000,
        roll_bytes: int = 256 * 1024 * 1024,
        roll_seconds: float = 300.0,
        checkpoint_interval_ns: int = 15 * 60 * 1_000_000_000,
        checkpoint_messages: int | None = None,
        write_table: Callable[..., None] = pq.write_table,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        self.before_commit = before_commit
        self.archive = ArchiveStore(root)
        self.archive.lock()  # one committing process per archive (ArchiveBusyError)
        self.archive.recover()
        self.writer = PartitionWriter(self.archive.root, self.archive.schemas,
                                      write_table=write_table)
        state = self.archive.load_pipeline()
        if state is None:
            self.pipeline = Pipeline(self.writer, checkpoint_interval_ns=checkpoint_interval_ns)
        else:
            self.pipeline = Pipeline.from_state(state, self.writer)
        if checkpoint_messages is not None:  # None: the pipeline's default / the stored one
            self.pipeline.checkpoint_messages = checkpoint_messages
        st = self.archive.state
        self.positions: dict[str, int] = dict(st.journal)
        self.segments: list[str] = list(st.segments)
        self.sources: dict[str, dict[str, Any]] = {k: dict(v) for k, v in st.sources.items()}
        self.roll_rows = roll_rows
        self.roll_bytes = roll_bytes
        self.roll_ns = int(roll_seconds * 1e9)
        self._last_commit_ns: int | None = None
        self.frames = 0

    @property
    def journal_root(self) -> Path:
        return self.archive.journal_root

    def register(self, segment: str, derived: int = 0) -> None:
        """Add a journal segment to the derivation order (idempotent). ``derived``: how many
        leading records are already derived (the journal re-wrote frames accepted into a
        segment that failed to write: they were derived when accepted)."""
        if segment not in self.positions:
            self.positions[segment] = derived
            self.segments.append(segment)

    def feed(self, frame: Frame, pos: JournalPosition) -> list[Signal]:
        """Derive one journaled frame (``pos`` must be the next record of its segment)."""
        if pos.segment not in self.positions:
            self.register(pos.segment)
        signals = self.pipeline.feed(frame)
        self.positions[pos.segment] = pos.index + 1
        self.frames += 1
        if self._last_commit_ns is None:
            self._last_commit_ns = frame.recv_ns
        w = self.writer
        if (
            self.pipeline._pending_rows + w.buffered_rows >= self.roll_rows
            or w.buffered_bytes >= self.roll_bytes
            or frame.recv_ns - self._last_commit_ns >= self.roll_ns
        ):
            self.commit()
        return signals

    def commit(self) -> None:
        """Seal buffered rows into Parquet and commit them with the journal positions.

        ``before_commit`` (live: the journal flush) runs first, so a commit never claims
        journal records that are not durable. :meth:`begin_commit` + finish, on this thread."""
        pending = self.begin_commit()
        try:
            pending.finish()
        except BaseException:
            pending.abort()
            raise

    def begin_commit(self) -> PendingCommit:
        """Cut a commit here (fast: the pipeline's rows handed over, buffers taken, state and
        positions copied); its :meth:`~recorder.archive.commit.PendingCommit.finish` (journal
        flush, seal, manifest) may run in another thread while frames keep being fed."""
        self.pipeline.flush()
        pending = PendingCommit(
            archive=self.archive, writer=self.writer, batch=self.writer.take(),
            state=self.pipeline.to_state(), journal=dict(self.positions),
            segments=list(self.segments),
            sources={k: dict(v) for k, v in self.sources.items()}, before=self.before_commit)
        self._last_commit_ns = None
        return pending

    def catch_up(self, progress: Callable[[int], None] | None = None, *,
                 preloaded: dict[str, list[Frame]] | None = None) -> int:
        """Derive every journal record not yet committed (registered segments first, then any
        unregistered segment on disk in name order). Returns the number of frames fed.

        ``preloaded``: segment -> all its records exactly as :func:`read_segment` yields them
        (``recorder ingest`` passes the frames it has just journaled and closed, see
        :func:`~recorder.archive.journal.as_read`); such a segment is not decoded again. The
        frames fed, their positions and the commit points are the same either way."""
        on_disk = list_segments(self.journal_root)
        for seg in on_disk:
            self.register(seg)
        n = 0
        for seg in list(self.segments):
            start = self.positions.get(seg, 0)
            frames = preloaded.get(seg) if preloaded is not None else None
            if frames is not None:
                n += self._feed_run(seg, enumerate(frames[start:], start), progress, n)
                continue
            path = self.journal_root / seg
            if not path.exists():
                continue
            info = SegmentInfo()
            n += self._feed_run(seg, read_segment(path, start=start, info=info), progress, n)
        if progress is not None:
            progress(n % 10000)
        return n

    def _feed_run(self, seg: str, records: Iterable[tuple[int, Frame]],
                  progress: Callable[[int], None] | None, done: int) -> int:
        """:meth:`feed` for consecutive records of one segment (the same frames, positions and
        commit points; the per-frame work is inlined). ``done``: frames fed before (for the
        progress cadence). Returns the number fed."""
        self.register(seg)
        feed = self.pipeline.feed
        pipe = self.pipeline
        w = self.writer
        positions = self.positions
        roll_rows, roll_bytes, roll_ns = self.roll_rows, self.roll_bytes, self.roll_ns
        n = 0
        counted = 0  # of n, already added to self.frames
        pos = positions[seg]
        try:
            for index, frame in records:
                feed(frame)
                pos = index + 1
                n += 1
                recv = frame.recv_ns
                last = self._last_commit_ns
                if last is None:
                    last = self._last_commit_ns = recv
                if (
                    pipe._pending_rows + w.buffered_rows >= roll_rows
                    or w.buffered_bytes >= roll_bytes
                    or recv - last >= roll_ns
                ):
                    positions[seg] = pos
                    self.frames += n - counted
                    counted = n
                    self.commit()
                if progress is not None and (done + n) % 10000 == 0:
                    progress(10000)
        finally:
            positions[seg] = pos
            self.frames += n - counted
        return n

    def close(self, reason: str = "open") -> None:
        """Write open epochs/gaps rows and commit."""
        self.pipeline.close(reason)
        self.commit()

    def release(self) -> None:
        """Release the archive's writer lock (the deriver must not commit afterwards)."""
        self.archive.unlock()


class ArchiveSession:
    """The live writer: journal first, then derive; restart-safe.

    :meth:`start` recovers (derives any journal tail a crash left uncommitted) and journals a
    :class:`~recorder.pipeline.markers.ProcessStart` (the pipeline turns the downtime into a
    ``gaps`` row with cause ``process_restart``). :meth:`write` journals then derives one
    frame; :meth:`close` journals ProcessStop and commits.
    """

    def __init__(self, root: str | os.PathLike[str], *, host: str | None = None,
                 fsync_interval_s: float = 1.0, clock_ns: Callable[[], int] = time.time_ns,
                 **deriver_options: Any) -> None:
        self.root = Path(root)
        self.host = host or socket.gethostname()
        self.clock_ns = clock_ns
        self.deriver = Deriver(self.root, **deriver_options)
        self.run_id = f"{os.getpid()}-{clock_ns()}"
        self.journal = JournalWriter(self.deriver.journal_root, host=self.host,
                                     run_id=self.run_id, fsync_interval_s=fsync_interval_s,
                                     clock_ns=clock_ns, on_segment=self.deriver.register)
        self.deriver.before_commit = self.journal.flush

    def start(self) -> int:
        """Recover, then journal ProcessStart. Returns frames re-derived from the journal."""
        n = self.deriver.catch_up()
        self.marker(mk.ProcessStart(host=self.host, run_id=self.run_id, version=__version__))
        return n

    def marker(self, marker: mk.Marker, conn_id: int = 0) -> list[Signal]:
        """Journal and derive a control marker."""
        return self.write(mk.marker_frame(marker, self.clock_ns(), conn_id))

    def write(self, frame: Frame) -> list[Signal]:
        """Journal ``frame`` (durable within the fsync interval) then derive it.

        Exact contract: if ``journal.append`` returns, the frame is accepted (a journal write
        error keeps it pending in memory and is raised by the next journal flush or commit)
        and it is derived here, exactly once; if ``append`` raises, nothing was accepted."""
        pos = self.journal.append(frame)
        return self.deriver.feed(frame, pos)

    def write_many(self, frames: Iterable[Frame]) -> None:
        for f in frames:
            self.write(f)

    def close(self, reason: str = "operator") -> None:
        self.marker(mk.ProcessStop(reason=reason))
        self.journal.close()
        self.deriver.close("process_stop")
        self.deriver.release()
