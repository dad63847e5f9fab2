"""Journal -> pipeline -> Parquet, exactly once: the derivation loop used by live capture
(:class:`ArchiveSession`), by ``recorder ingest`` (:class:`Deriver`) and by ``recorder repair``
(:class:`FeedLoop`).

:class:`Deriver` feeds frames with their :class:`~recorder.archive.journal.JournalPosition` to
the :class:`~recorder.pipeline.Pipeline`, whose sink is a
:class:`~recorder.archive.store.PartitionWriter`. :meth:`Deriver.commit` seals the buffered rows
into Parquet files and commits them together with the journal positions reached and the
pipeline's explicit state (:mod:`recorder.pipeline.state`). After a crash, opening a
:class:`Deriver` deletes uncommitted files and restores the pipeline of the last commit, and
:meth:`Deriver.catch_up` re-derives every journal record after the committed positions, so
each journaled frame reaches Parquet exactly once.

One feed loop, :class:`FeedLoop`: live frames (:meth:`Deriver.feed`), recovery and ingest
(:meth:`Deriver.catch_up`) and ``recorder repair`` take the same step, and the settings that
decide the rows (:class:`~recorder.pipeline.settings.DeriveSettings`) and the commit policy are
fixed when it is built. The settings belong to the archive (stored with each commit) and are
journaled with each ``ProcessStart`` (:func:`journal_settings` reads them back), so a
re-derivation of a live journal writes the rows live capture wrote.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from itertools import islice
from pathlib import Path
from typing import Any, Final

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
from recorder.pipeline.settings import DeriveSettings
from recorder.pipeline.signals import Signal

__all__ = ["FeedLoop", "Deriver", "ArchiveSession", "journal_settings"]

log = logging.getLogger("recorder.archive.session")

#: Records of a segment searched for its ProcessStart (the first one of a capture's run).
_SETTINGS_SCAN: Final = 16
#: Records taken from a run at a time by :meth:`FeedLoop.feed_run` (compiled lane); also
#: bounds how long one call of the lane holds the GIL (~1024 frames: a few ms).
_CHUNK: Final = 1024


def journal_settings(path: str | os.PathLike[str]) -> DeriveSettings | None:
    """The derivation settings a journal segment records: those of the ``ProcessStart``
    among its first records (live capture journals it first in every run), or ``None`` (no
    ProcessStart there, one written before settings were recorded, or not a readable
    segment)."""
    try:
        for index, frame in read_segment(path):
            if index >= _SETTINGS_SCAN:
                break
            if frame.stream == "control":
                marker = mk.decode_marker(frame.payload)
                if isinstance(marker, mk.ProcessStart):
                    return marker.settings
    except OSError:
        return None
    return None


class FeedLoop:
    """The one feed loop: journal records -> :class:`~recorder.pipeline.Pipeline` -> rows ->
    ``writer`` (a :class:`~recorder.archive.store.PartitionWriter`), one record at a time in
    derivation order, with the journal position reached per segment.

    Live capture and ``recorder ingest`` (through :class:`Deriver`) and ``recorder repair``
    (re-deriving damaged files) all derive with :meth:`feed`. Everything is fixed at
    construction: the pipeline (whose settings decide the rows) and the roll policy (commit
    when ``roll_rows`` rows or ``roll_bytes`` Arrow bytes are buffered, or ``roll_seconds`` of
    receive time passed since the last commit; ``None``: never), which calls ``on_roll``.
    """

    def __init__(self, pipeline: Pipeline, writer: PartitionWriter, *,
                 positions: dict[str, int] | None = None, segments: list[str] | None = None,
                 roll_rows: int | None = None, roll_bytes: int | None = None,
                 roll_seconds: float | None = None,
                 on_roll: Callable[[], None] | None = None) -> None:
        self.pipeline = pipeline
        self.writer = writer
        #: segment -> records derived from it; the derivation order of the segments
        self.positions: dict[str, int] = positions if positions is not None else {}
        self.segments: list[str] = segments if segments is not None else []
        never = 1 << 62
        self._roll_rows = never if roll_rows is None else roll_rows
        self._roll_bytes = never if roll_bytes is None else roll_bytes
        self._roll_ns = never if roll_seconds is None else int(roll_seconds * 1e9)
        self._on_roll = on_roll
        self._last_commit_ns: int | None = None
        self.frames = 0

    def register(self, segment: str, derived: int = 0) -> None:
        """Add a journal segment to the derivation order (idempotent); ``derived``: leading
        records already derived."""
        if segment not in self.positions:
            self.positions[segment] = derived
            self.segments.append(segment)

    def feed(self, frame: Frame, segment: str, index: int) -> list[Signal]:
        """Derive ``frame`` (record ``index`` of ``segment``), advance the position, roll when
        the policy says so. Returns the pipeline's signals."""
        positions = self.positions
        if segment not in positions:
            self.register(segment)
        signals = self.pipeline.feed(frame)
        positions[segment] = index + 1
        self.frames += 1
        recv = frame.recv_ns
        last = self._last_commit_ns
        if last is None:
            last = self._last_commit_ns = recv
        w = self.writer
        if self._on_roll is not None and (
                self.pipeline.pending_rows + w.buffered_rows >= self._roll_rows
                or w.buffered_bytes >= self._roll_bytes
                or recv - last >= self._roll_ns):
            self._on_roll()
        return signals

    def feed_run(self, records: Iterable[tuple[int, Frame]], segment: str,
                 progress: Callable[[int], None] | None = None) -> int:
        """:meth:`feed` each ``(index, frame)`` of consecutive records of ``segment`` (the
        signals dropped: re-derivation has no capture to act on them), with the same
        positions, roll points and commits as one :meth:`feed` per record, in one loop.
        ``progress`` (if given) is told every 10,000 frames and at the end. Returns the
        number of frames fed."""
        if segment not in self.positions:
            self.register(segment)
        fed = [0]
        try:
            self._feed_chunks(records, segment, progress, fed)
        finally:
            n = fed[0]
            self.frames += n
        if progress is not None and n % 10000:
            progress(n % 10000)
        return n

    def _feed_chunks(self, records: Iterable[tuple[int, Frame]], segment: str,
                     progress: Callable[[int], None] | None, fed: list[int]) -> None:
        """The loop of :meth:`feed_run` through :meth:`Pipeline.feed_many` (runs of frames
        in one call of the compiled lane; one frame per call for the reference engine), with the same positions, roll points, commits and
        progress calls: the pipeline stops after every frame where :meth:`feed` would check
        something that may hold (its row and receive-time thresholds are handed down; the
        writer's counts only change when the pipeline flushes, after which it stops too).
        ``fed[0]``: the number of frames fed so far (also read when this raises)."""
        positions = self.positions
        pipeline = self.pipeline
        feed_many = pipeline.feed_many
        w = self.writer
        on_roll = self._on_roll
        roll_rows, roll_bytes, roll_ns = self._roll_rows, self._roll_bytes, self._roll_ns
        never = 1 << 62
        n = 0
        it = iter(records)
        while True:
            chunk = list(islice(it, _CHUNK))
            if not chunk:
                return
            frames = [f for _, f in chunk]
            i = 0
            end = len(chunk)
            while i < end:
                last = self._last_commit_ns
                if last is None:
                    last = self._last_commit_ns = frames[i].recv_ns
                stop = min(end, i + 10000 - n % 10000)
                if on_roll is None:
                    until_rows = until_recv = never
                else:
                    until_rows = roll_rows - w.buffered_rows
                    until_recv = last + roll_ns
                    if w.buffered_bytes >= roll_bytes:
                        stop = i + 1
                j = feed_many(frames, i, stop, until_rows, until_recv)
                n += j - i
                fed[0] = n
                positions[segment] = chunk[j - 1][0] + 1
                i = j
                recv = frames[j - 1].recv_ns
                if on_roll is not None and (
                        pipeline.pending_rows + w.buffered_rows >= roll_rows
                        or w.buffered_bytes >= roll_bytes or recv - last >= roll_ns):
                    on_roll()
                if progress is not None and n % 10000 == 0:
                    progress(10000)

    def committed(self) -> None:
        """A commit happened: the receive-time roll counts from the next frame."""
        self._last_commit_ns = None


class Deriver:
    """Derive Parquet from journal frames with exactly-once commits: the archive around the
    :class:`FeedLoop` of live capture (:class:`ArchiveSession`), ``recorder ingest`` and crash
    recovery (:meth:`catch_up`).

    Everything that decides the rows or the commit points is fixed here, at construction:

    * the pipeline's :class:`~recorder.pipeline.settings.DeriveSettings` belong to the archive:
      a new archive takes ``settings`` (or the ``checkpoint_interval_ns`` /
      ``checkpoint_messages`` shorthands; defaults for the rest), an existing one keeps the
      settings stored with its last commit (a different request is logged and ignored, since
      rows derived before and after must agree with one re-derivation of the journal);
    * ``roll_rows`` / ``roll_bytes`` / ``roll_seconds``: commit (seal rolling files) when that
      many rows or Arrow bytes are buffered, or that much receive time has passed since the
      last commit (live capture commits on its own schedule and passes ``None``: never);
    * ``before_commit``: runs first in every commit (live: the journal flush, so that a commit
      never claims journal records that are not durable);
    * ``engine``: the pipeline's (``"core"``: the compiled Spot book lane; ``"python"``: the
      reference model); the rows and commits are the same.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        settings: DeriveSettings | None = None,
        checkpoint_interval_ns: int | None = None,
        checkpoint_messages: int | None = None,
        roll_rows: int | None = 2_000_000,
        roll_bytes: int | None = 256 * 1024 * 1024,
        roll_seconds: float | None = 300.0,
        write_table: Callable[..., None] = pq.write_table,
        before_commit: Callable[[], None] | None = None,
        engine: str = "core",
    ) -> None:
        self._before_commit = before_commit
        self.archive = ArchiveStore(root)
        self.archive.lock()  # one committing process per archive (ArchiveBusyError)
        try:
            self.archive.recover()
            self.writer = PartitionWriter(self.archive.root, self.archive.schemas,
                                          write_table=write_table)
            if settings is None and (checkpoint_interval_ns is not None
                                     or checkpoint_messages is not None):
                defaults = DeriveSettings()
                settings = DeriveSettings(
                    checkpoint_interval_ns=(defaults.checkpoint_interval_ns
                                            if checkpoint_interval_ns is None
                                            else checkpoint_interval_ns),
                    checkpoint_messages=(defaults.checkpoint_messages if checkpoint_messages is None
                                         else checkpoint_messages))
            state = self.archive.load_pipeline()
            if state is None:
                self.pipeline = Pipeline(self.writer, settings=settings or DeriveSettings(),
                                         engine=engine)
            else:
                self.pipeline = Pipeline.from_state(state, self.writer, engine=engine)
                kept = self.pipeline.settings
                if settings is not None and settings != kept:
                    log.warning("archive %s keeps the derivation settings it was created "
                                "with (%s); %s requested (settings belong to an archive: a new "
                                "archive root takes new ones)", self.archive.root, kept, settings)
            st = self.archive.state
            self.sources: dict[str, dict[str, Any]] = {k: dict(v) for k, v in st.sources.items()}
            self.loop = FeedLoop(self.pipeline, self.writer, positions=dict(st.journal),
                                 segments=list(st.segments), roll_rows=roll_rows,
                                 roll_bytes=roll_bytes, roll_seconds=roll_seconds,
                                 on_roll=self.commit)
            #: the loop's positions and segment order (the same objects)
            self.positions = self.loop.positions
            self.segments = self.loop.segments
        except BaseException:
            # a failed open (a corrupt or foreign state, a bad manifest) must not keep the
            # archive locked: the next writer would get ArchiveBusyError
            self.archive.unlock()
            raise

    @property
    def frames(self) -> int:
        """Frames derived by this object."""
        return self.loop.frames

    @property
    def settings(self) -> DeriveSettings:
        """The archive's derivation settings (fixed; see the class docstring)."""
        return self.pipeline.settings

    @property
    def journal_root(self) -> Path:
        return self.archive.journal_root

    def register(self, segment: str, derived: int = 0) -> None:
        """Add a journal segment to the derivation order (idempotent). ``derived``: how many
        leading records are already derived (the journal re-wrote frames accepted into a
        segment that failed to write: they were derived when accepted)."""
        self.loop.register(segment, derived)

    def feed(self, frame: Frame, pos: JournalPosition) -> list[Signal]:
        """Derive one journaled frame (``pos`` must be the next record of its segment)."""
        return self.loop.feed(frame, pos.segment, pos.index)

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
        """Cut a commit here (fast: the writer's tables and the pipeline's row buffers handed
        over whole, the pipeline state copied with book containers instead of text
        checkpoints, see :meth:`~recorder.pipeline.Pipeline.cut`; positions copied); its
        :meth:`~recorder.archive.commit.PendingCommit.finish` (rows and book checkpoints built,
        journal flush, seal, manifest) may run in another thread while frames keep being fed."""
        cut = self.pipeline.cut()
        pending = PendingCommit(
            archive=self.archive, writer=self.writer, batch=self.writer.take(), cut=cut,
            journal=dict(self.positions), segments=list(self.segments),
            sources={k: dict(v) for k, v in self.sources.items()}, before=self._before_commit)
        self.loop.committed()
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
            records: Iterable[tuple[int, Frame]]
            if frames is not None:
                records = enumerate(frames[start:], start)
            else:
                path = self.journal_root / seg
                if not path.exists():
                    continue
                records = read_segment(path, start=start, info=SegmentInfo())
            n += self.loop.feed_run(records, seg, progress)
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

    ``journal_offload``: the journal's ``offload`` mode (:class:`JournalWriter`): appends
    only encode; the owner must call ``journal.flush()`` from another thread at least every
    ``fsync_interval_s`` (live capture does; every commit flushes first too).
    """

    def __init__(self, root: str | os.PathLike[str], *, host: str | None = None,
                 fsync_interval_s: float = 1.0, clock_ns: Callable[[], int] = time.time_ns,
                 journal_offload: bool = False, **deriver_options: Any) -> None:
        self.root = Path(root)
        self.host = host or socket.gethostname()
        self.clock_ns = clock_ns
        self.deriver = Deriver(self.root, before_commit=self._flush_journal, **deriver_options)
        self.run_id = f"{os.getpid()}-{clock_ns()}"
        self.journal = JournalWriter(self.deriver.journal_root, host=self.host,
                                     run_id=self.run_id, fsync_interval_s=fsync_interval_s,
                                     clock_ns=clock_ns, on_segment=self.deriver.register,
                                     offload=journal_offload)

    def _flush_journal(self) -> None:
        """The deriver's ``before_commit``: journal records are durable before a commit."""
        self.journal.flush()

    def start(self) -> int:
        """Recover, then journal ProcessStart. Returns frames re-derived from the journal."""
        n = self.deriver.catch_up()
        self.marker(mk.ProcessStart(host=self.host, run_id=self.run_id, version=__version__,
                                    settings=self.deriver.settings))
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
