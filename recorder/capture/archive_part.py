"""The archive part of a worker: the one write path, commits off the loop, the disk guard.

:class:`ArchivePart` owns the worker's :class:`~recorder.capture.writer.ArchiveWriter` and
everything that decides when it commits or stops taking data:

* :meth:`ArchivePart.emit` / :meth:`ArchivePart.marker`: every frame and control marker, on
  the event loop, journal first then the pipeline; the pipeline's signals are returned.
* :meth:`ArchivePart.commit`: the commit is cut on the loop
  (:meth:`~recorder.capture.writer.ArchiveWriter.begin_commit`: row buffers handed over whole,
  state copied with book containers instead of text checkpoints, journal positions copied;
  see :mod:`recorder.archive.commit`) and finished in the part's single *commit thread* (the
  cut's Arrow tables and book checkpoints built, pausing now and then so the loop gets the
  GIL; journal flush, Parquet seal, state file, manifest), so the loop keeps reading sockets
  meanwhile. Commits
  are serialised (one in flight, finished in cut order); a failed one hands its rows back and
  pauses capture. Triggers: the scheduler (``roll_minutes``), buffered rows over
  ``roll_max_mb`` (:meth:`ArchivePart.run`), before a disk-pressure pause or a maintenance
  job, and the final commit in :meth:`ArchivePart.close`.
* the row batches the pipeline hands over on the loop (lists, kept as they are) are built
  into Arrow tables in the commit thread between commits (:meth:`ArchivePart.run`); a
  commit builds those still waiting;
* journal durability (a flush every half ``fsync_interval_s``, in a thread): the journal
  runs in its ``offload`` mode, so appends on the loop only encode records, and this flush
  compresses, writes and syncs them outside the append lock;
* the disk guard (:meth:`ArchivePart.check_disk`): below ``disk_min_free_bytes`` journal
  ``DiskPressure``, commit, pause; resume at ``disk_resume_free_bytes``; a pause caused by
  a failed write resumes once the journal writes again;
* compaction/retention (:meth:`ArchivePart.maintenance`) in a thread on the writer's own
  archive object while commits wait.

Pausing goes through the shared :class:`~recorder.capture.control.RunControl`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from recorder.archive.commit import PendingCommit
from recorder.capture.config import CaptureConfig
from recorder.capture.control import RunControl
from recorder.capture.writer import ArchiveWriter, DiskGuard, WriterError
from recorder.frames import Frame
from recorder.pipeline.markers import DiskPressure, Marker, encode_marker
from recorder.pipeline.signals import Signal, TradeIdGap

__all__ = ["ArchivePart", "disk_free_bytes"]

log = logging.getLogger("recorder.capture.archive")

#: How often the loop looks for row batches to build in the commit thread (a batch of
#: :data:`~recorder.capture.writer.CAPTURE_BATCH_ROWS` rows fills in ~0.1 s under load).
_BUILD_POLL_S: Final = 0.02


def disk_free_bytes(path: Path) -> int:
    """Free bytes on the volume of ``path`` (the disk guard's default probe)."""
    return shutil.disk_usage(path).free


class ArchivePart:
    """One worker's archive root and its commit schedule (see module docstring).

    ``disk_free``: the free-space probe of the disk guard (tests inject a fake one);
    ``after_cut``: see :class:`~recorder.capture.writer.ArchiveWriter`."""

    def __init__(self, root: Path, *, host: str, cfg: CaptureConfig, control: RunControl,
                 disk_free: Callable[[Path], int] = disk_free_bytes,
                 after_cut: Callable[[], None] | None = None) -> None:
        sched = cfg.schedule
        self.root = root
        self.writer = ArchiveWriter(root, host=host, fsync_interval_s=cfg.fsync_interval_s,
                                    roll_bytes=int(sched.roll_max_mb * 1024 * 1024),
                                    checkpoint_minutes=sched.checkpoint_minutes,
                                    after_cut=after_cut)
        self._sched = sched
        self._fsync_interval_s = cfg.fsync_interval_s
        self._control = control
        self._disk_free = disk_free
        self.disk_guard = DiskGuard(sched.disk_min_free_bytes, sched.disk_resume_free_bytes)
        self._commit_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit")
        self._commit_lock = asyncio.Lock()
        self._commit_wanted = asyncio.Event()
        self._inflight: asyncio.Future[float] | None = None
        self._maintenance = ""
        self._write_failed = False
        #: receive time of the last journaled frame to its journal flush (status)
        self.disk_lag_s = 0.0

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> int:
        """Open the root (lock, recovery, re-derivation; in a thread) and commit what it
        recovered. Returns the journal frames re-derived. :class:`ArchiveBusyError` when
        another process writes this root."""
        n = await asyncio.to_thread(self.writer.open)
        await self.commit("start")  # the recovered tail and the ProcessStart gap are durable
        return n

    def open_trade_gaps(self) -> list[TradeIdGap]:
        """Trade-id holes still waiting for a REST backfill (after :meth:`open`: those a
        killed run left; :meth:`ArchiveWriter.open_trade_gaps`)."""
        return self.writer.open_trade_gaps()

    @property
    def run_id(self) -> str:
        return self.writer.run_id

    def committing(self) -> bool:
        """Whether a commit's slow half is running in the commit thread now."""
        fut = self._inflight
        return fut is not None and not fut.done()

    async def run(self) -> None:
        """Journal flushes in quiet periods and size-triggered commits, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._flush_loop())
            tg.create_task(self._commit_loop())
            tg.create_task(self._build_loop())

    async def close(self, reason: str) -> None:
        """Final commit: wait for a commit in flight, then journal ProcessStop, write open
        epochs/gaps and commit (in the commit thread). A failure is logged: the journal holds
        everything and the next start re-derives it."""
        async with self._commit_lock:
            await self._settle()
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._commit_thread, self.writer.close, reason)
            except WriterError as exc:
                log.error("final commit failed (%s): the journal holds everything; the next "
                          "start re-derives it", exc)
            finally:
                self._commit_thread.shutdown(wait=True)

    async def release(self) -> None:
        """After :meth:`abandon`: wait for a commit in flight to end, then release the
        archive's writer lock (a process exit releases it too)."""
        await self._settle()
        self.writer.release()

    def abandon(self) -> None:
        """Stop without the final commit: make the journal durable and close it (the next
        start re-derives everything after the last commit). Safe while a commit is in flight
        in the commit thread (the journal has its own lock)."""
        with contextlib.suppress(Exception):
            self.writer.emergency_flush()
        self._commit_thread.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ data path

    def emit(self, frame: Frame) -> list[Signal]:
        """Journal then derive ``frame`` through the archive's pipeline; its signals. A
        journal that cannot write pauses capture (the frame itself was kept)."""
        try:
            signals = self.writer.write(frame)
        except WriterError as exc:
            self._on_write_error(exc)
            return []
        if self.writer.commit_due and not self._commit_wanted.is_set():
            self._commit_wanted.set()
        return signals

    def activity(self, conn_id: int) -> dict[tuple[str, str], tuple[int, int]]:
        """Data the pipeline counted on connection ``conn_id``: ``(channel, symbol) ->
        (messages, last recv_ns)`` (:meth:`recorder.pipeline.Pipeline.activity`)."""
        return self.writer.activity(conn_id)

    def marker(self, marker: Marker, conn_id: int = 0) -> list[Signal]:
        """Journal (and derive) a control marker."""
        return self.emit(Frame(recv_ns=time.time_ns(), conn_id=conn_id, stream="control",
                               direction="in", payload=encode_marker(marker)))

    def _on_write_error(self, exc: WriterError) -> None:
        log.error("archive write failed (%s): capture paused until the journal writes again",
                  exc)
        self._write_failed = True
        self._control.pause(f"archive write failed: {exc}"[:200])

    # ------------------------------------------------------------------ commits

    async def commit(self, why: str) -> bool:
        """Seal and commit the buffered rows: cut on the loop, finished in the commit thread
        (see module docstring). Skipped while compaction/retention holds the archive (the
        next trigger commits). False when nothing was committed."""
        async with self._commit_lock:
            await self._settle()
            if self.writer.session is None:
                return False
            if self._maintenance:
                log.debug("commit (%s) deferred: %s is running", why, self._maintenance)
                self._commit_wanted.set()
                return False
            pending = self.writer.begin_commit()
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(self._commit_thread, self.writer.finish_commit, pending)
            self._inflight = fut
            # settled on the loop even if the caller is cancelled meanwhile
            fut.add_done_callback(lambda f: self._finished(f, pending, why))
            try:
                await asyncio.shield(fut)
            except WriterError:
                return False
            return True

    def _finished(self, fut: asyncio.Future[float], pending: PendingCommit, why: str) -> None:
        """A commit's slow half ended (on the loop): on failure its rows go back and capture
        pauses."""
        if fut.cancelled():
            self.writer.abort_commit(pending)
            return
        exc = fut.exception()
        if exc is None:
            dt = fut.result()
            (log.warning if dt > 1.0 else log.debug)("archive commit (%s) took %.3fs", why, dt)
            return
        self.writer.abort_commit(pending)
        if isinstance(exc, WriterError):
            log.error("archive commit failed (%s); rows stay buffered, capture paused", exc)
        else:
            log.error("archive commit failed on an internal error (%s: %s); rows stay "
                      "buffered, capture paused", type(exc).__name__, exc)
        self._write_failed = True
        self._control.pause(f"archive commit failed: {exc}"[:200])

    async def _settle(self) -> None:
        """Wait until the commit in flight (if any) has ended, whatever its outcome."""
        fut, self._inflight = self._inflight, None
        if fut is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(fut)
            await asyncio.sleep(0)  # its done-callback (rows back on failure) has run

    async def _commit_loop(self) -> None:
        """Commits asked for by the data path (buffered rows over ``roll_max_mb``)."""
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted.clear()
            await asyncio.sleep(0)  # let the reader that asked finish its frame
            await self.commit("size")
            await asyncio.sleep(1.0)  # at most one size-triggered commit per second

    async def _build_loop(self) -> None:
        """Row batches the pipeline handed over are built into Arrow tables in the commit
        thread (between commits; one at a time with them), never on the loop."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(_BUILD_POLL_S)
            if not self.writer.unbuilt:
                continue
            try:
                await loop.run_in_executor(self._commit_thread, self.writer.convert_pending)
            except Exception as exc:  # noqa: BLE001 - a batch that cannot be built
                if self.writer.session is None:  # closed (the commit thread shut down)
                    return
                # stays first in the writer: the next commit builds it again and, failing,
                # pauses capture with the error (_finished); nothing is lost meanwhile
                log.error("building a row batch failed (%s: %s); the next commit retries it",
                          type(exc).__name__, exc)
                return

    # ------------------------------------------------------------------ journal durability

    async def _flush_loop(self) -> None:
        """Journal durability in quiet periods (appends flush only while frames arrive)."""
        interval = max(0.05, min(1.0, self._fsync_interval_s) / 2)
        while True:
            await asyncio.sleep(interval)
            await self.flush()

    async def flush(self) -> bool:
        """Make the journal durable now (in a thread); False when it failed (then capture is
        paused until it writes again)."""
        if self.writer.session is None:
            return False
        try:
            await asyncio.to_thread(self.writer.flush_journal)
        except WriterError as exc:
            self._on_write_error(exc)
            return False
        last = self.writer.stats.last_recv_ns
        if last:
            self.disk_lag_s = max(0.0, (time.time_ns() - last) / 1e9)
        return True

    # ------------------------------------------------------------------ maintenance

    async def maintenance(self, name: str, fn: Callable[[Any], Any]) -> Any:
        """Run compaction/retention ``fn(archive)`` in a thread with the writer's own
        :class:`~recorder.archive.store.ArchiveStore` (its lock); commits wait meanwhile. Frames
        keep flowing into the journal and the pipeline's buffers."""
        if self._maintenance or self.writer.session is None:
            log.info("%s skipped: %s", name, self._maintenance or "archive not open")
            return None
        await self.commit(f"before {name}")
        async with self._commit_lock:
            await self._settle()
            self._maintenance = name
        t0 = time.perf_counter()
        try:
            report = await asyncio.to_thread(fn, self.writer.archive)
        except Exception:
            log.exception("%s failed", name)
            return None
        finally:
            self._maintenance = ""
        log.info("%s done in %.1fs: %s", name, time.perf_counter() - t0, report)
        return report

    # ------------------------------------------------------------------ disk guard

    async def check_disk(self) -> None:
        """The disk guard (see module docstring)."""
        try:
            free = self._disk_free(self.root)
        except OSError as exc:
            log.warning("disk guard cannot read free space of %s: %s", self.root, exc)
            return
        sched = self._sched
        verdict = self.disk_guard.check(free)
        if verdict == "pause":
            log.error("disk space low (%d bytes free on %s, minimum %d): capture paused",
                      free, self.root, sched.disk_min_free_bytes)
            self.marker(DiskPressure(free_bytes=free, path=str(self.root)))
            await self.commit("disk pressure")
            self._control.pause(
                f"disk pressure: {free} bytes free",
                f"disk nearly full: {free:,} bytes free on {self.root} (capture pauses "
                f"below {sched.disk_min_free_bytes:,} and resumes at "
                f"{sched.disk_resume_free_bytes:,} bytes free)")
        elif verdict == "resume":
            log.warning("disk space recovered (%d bytes free): capture resumed", free)
            if not self._write_failed:
                self._control.resume()
        if self._write_failed and not self.disk_guard.paused:
            try:
                await asyncio.to_thread(self.writer.flush_journal)
            except WriterError:
                return
            log.warning("archive writes again: capture resumed")
            self._write_failed = False
            self._control.resume()

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """The archive's fields of the worker status."""
        self.writer.refresh_counters()
        st = self.writer.stats
        return {
            "writer_run": self.writer.run_id,
            "frames_in": st.frames_in, "bytes_in": st.bytes_in, "frames_journaled": st.frames,
            "checksums_ok": st.checksums_ok, "checksum_failures": st.checksum_failures,
            "trade_gaps": st.trade_gaps, "seq_gaps": st.seq_gaps,
            "commits": st.commits, "commit_s_last": round(st.commit_s_last, 4),
            "commit_s_max": round(st.commit_s_max, 4),
            "commit_cut_s_max": round(st.commit_cut_s_max, 6),
            "commit_cut_cpu_s_max": round(st.commit_cut_cpu_s_max, 6),
            "commits_on_loop": st.commits_on_loop, "recovered_frames": st.recovered_frames,
            "archive_buffered_bytes": self.writer.buffered_bytes if self.writer.session else 0,
            "lag_receive_disk_s": self.disk_lag_s,
        }
