"""One capture worker process: its parts under one task group, and the process entry point.

:func:`worker_main` is the process entry point used by the supervisor; :class:`Worker` is the
asyncio service. Each worker owns one archive root, ``<archive_root>/<host>-w<k>/``
(:mod:`recorder.capture.writer`). A worker is a composition of parts, each owning its state
and offering a small typed interface:

* :class:`~recorder.capture.archive_part.ArchivePart`: the one write path (journal first, then
  the archive's pipeline, the code ``recorder ingest`` runs), commits cut on the loop and
  finished in a commit thread, journal flushes, the disk guard, compaction/retention;
* :class:`~recorder.capture.connections_part.ConnectionPool`: the WebSocket connections, their
  ids and the connect limiter;
* :class:`~recorder.capture.subscriptions_part.SubscriptionManager`: Kraken's answers to
  subscribes, the instrument listing (runtime listings and delistings) and the level3 budget;
* :class:`~recorder.capture.healing_part.HealingPart`: resnapshots, quarantines, REST backfills
  and evidence snapshots decided by the pure :class:`~recorder.capture.healing.Healer`;
* :class:`~recorder.capture.fix_part.FixPart` (``[fix]`` set; worker 0 of shard 1): the FIX 4.4
  market-data sessions, journaled as streams ``fix`` / ``fix_l3``;
* :class:`~recorder.capture.status_part.StatusReporter`: the status sent to the supervisor
  every ``status_interval_s``, with the event loop's lag and the exchange->receive lag;
* :class:`~recorder.capture.control.RunControl`: stopping and paused, shared by all.

Data path per frame: socket -> :meth:`Worker.emit` -> :meth:`ArchivePart.emit
<recorder.capture.archive_part.ArchivePart.emit>` -> the pipeline's signals ->
:meth:`Worker.on_signals`, which routes each signal to the part that acts on it. Every break
and heal is journaled as a control marker (:mod:`recorder.pipeline.markers`), so the pipeline
writes the ``gaps``/``epochs``/``liveness`` rows. The worker is the
:class:`~recorder.capture.connection.ConnectionHost` of its connections: they reach the parts
only through that interface.

Start: the archive root is opened (writer lock, recovery: the journal tail a crash left
uncommitted is re-derived) and ``ProcessStart`` is journaled (after a crash the pipeline turns
the downtime into a ``gaps`` row with cause ``process_restart``); trade-id holes whose REST
backfill a killed run left unfinished are handed to the healer again. Book/level3/trade/ohlc
connections wait (bounded) for the ``instrument`` snapshot to be journaled first, so books are
built with the venue's precisions rather than inferred ones.

Run and stop: every long-running job (each connection, healing, the archive's flush and
commit loops, status) and every short one (unsubscribes, retries) is a task of one
:class:`asyncio.TaskGroup`. :meth:`Worker.request_stop` (SIGTERM/SIGINT, the orphan watch)
sets *stopping*; the shutdown path then stops the periodic jobs, ends the sessions (each
journals ``Disconnected``), waits (bounded) for the connections, cancels what is left
explicitly, and the archive journals ``ProcessStop``, writes open epochs and commits. A task
that fails ends the group with its error (the worker exits non-zero after the final commit).
A second request abandons the final commit: the journal is made durable and the run is
cancelled (the next start re-derives the journal); the process still exits normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from recorder.capture.archive_part import ArchivePart, disk_free_bytes
from recorder.capture.config import CaptureConfig
from recorder.capture.connection import INSTRUMENT, FeedConnection
from recorder.capture.connections_part import ConnectionPool
from recorder.capture.control import RunControl
from recorder.capture.fix_part import FixPart
from recorder.capture.gcpolicy import YoungGc
from recorder.capture.healing_part import HealingPart
from recorder.capture.rest_client import RestClient
from recorder.capture.shards import ConnPlan, WorkerPlan
from recorder.capture.status_part import StatusReporter
from recorder.capture.subscriptions_part import SubscriptionManager
from recorder.capture.writer import ArchiveBusyError, ArchiveWriter, writer_id
from recorder.frames import Frame
from recorder.pipeline.markers import STOP_REASON, Marker
from recorder.pipeline.signals import (
    BookDesync,
    FuturesSeqGap,
    InstrumentChanged,
    InstrumentSnapshot,
    Signal,
    SubscriptionAcked,
    SubscriptionRejected,
    TradeIdGap,
)

__all__ = ["Worker", "WorkerSpec", "worker_main", "disk_free_bytes", "failure_text",
           "EXIT_ARCHIVE_BUSY", "EXIT_WORKER_FAILED"]

log = logging.getLogger("recorder.capture.worker")

#: Exit code of a worker whose archive root is locked by another process.
EXIT_ARCHIVE_BUSY: Final = 3
#: Exit code of a worker that stopped on an error (its text goes to the supervisor).
EXIT_WORKER_FAILED: Final = 1
#: Seconds the shutdown path waits for the connections to end their sessions.
_DRAIN_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything a worker process needs (picklable)."""

    cfg: CaptureConfig
    plan: WorkerPlan
    workers: int
    run_id: str
    restart: int = 0
    #: every spot symbol the supervisor planned, over all its workers: a symbol outside it
    #: that the venue lists is a runtime listing, taken by its channel owners (below)
    planned: frozenset[str] = frozenset()
    #: spot channel -> the workers holding a connection of it (``shards.channel_owners``): a
    #: runtime listing goes, channel by channel, to one of them
    channel_owners: dict[str, tuple[int, ...]] = field(default_factory=dict)


class Worker:
    """One worker: its parts under one task group (see module docstring).

    ``status_cb`` receives the status dict every status interval; ``disk_free``: the
    free-space probe of the disk guard (tests inject a fake one); ``after_cut``: called
    after each commit cut (the worker process passes :class:`~recorder.capture.gcpolicy.
    YoungGc`'s, see :func:`worker_main`)."""

    def __init__(self, spec: WorkerSpec, status_cb: Callable[[dict[str, Any]], None] | None = None,
                 *, disk_free: Callable[[Path], int] = disk_free_bytes,
                 after_cut: Callable[[], None] | None = None) -> None:
        self.spec = spec
        self.cfg = cfg = spec.cfg
        self.index = spec.plan.index
        self.host = cfg.host or socket.gethostname()
        self.writer_id = writer_id(self.host, self.index)
        self.root = Path(cfg.archive_root) / self.writer_id
        self.control = RunControl()
        self.archive = ArchivePart(self.root, host=self.host, cfg=cfg, control=self.control,
                                   disk_free=disk_free, after_cut=after_cut)
        self.rest = RestClient(cfg.venue.spot_rest, cfg.venue.futures_rest, cfg.rest,
                               self.archive.emit, cfg.credentials, conn_id=self.index * 1_000_000)
        self.pool = ConnectionPool(cfg, index=self.index, restart=spec.restart,
                                   workers=spec.workers, host=self)
        self.healing = HealingPart(cfg.healing, pool=self.pool, rest=self.rest,
                                   marker=self.marker, control=self.control, spawn=self.spawn)
        self.subscriptions = SubscriptionManager(
            cfg, index=self.index, workers=spec.workers, planned=spec.planned,
            channel_owners=spec.channel_owners, pool=self.pool, healing=self.healing,
            marker=self.marker, spawn=self.spawn)
        for plan in (*spec.plan.connections,
                     ConnPlan(name=f"instrument-w{self.index}", stream="spot", channel="instrument",
                              symbols=())):
            self.pool.add(plan)
        #: the FIX source runs in one worker of one shard: its sessions are few, its symbols
        #: explicit, and Kraken knows one session per SenderCompID and port
        self.fix = (FixPart(cfg.fix, host=self, stopping=self.control.stopping)
                    if cfg.fix.enabled and self.index == 0 and cfg.shard_index[0] == 1
                    else None)
        self.reporter = StatusReporter(
            worker=self.index, writer=self.writer_id, root=str(self.root),
            interval_s=cfg.observability.status_interval_s, send=status_cb,
            committing=self.archive.committing,
            sections=[self._run_status, self._connection_status, self.archive.status,
                      lambda: self.healing.status(time.monotonic()),
                      lambda: self.subscriptions.status(time.monotonic()),
                      *([self.fix.status] if self.fix is not None else [])])
        self.control.on_pause(self._pause_connections)
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._main: asyncio.Task[Any] | None = None
        self._abandoned = False
        self._started_at = 0.0

    # ------------------------------------------------------------------ shared facts

    @property
    def stopping(self) -> asyncio.Event:
        """Set once when the worker ends."""
        return self.control.stopping

    @property
    def paused(self) -> asyncio.Event:
        """Set while capture is paused (disk pressure, failing archive writes)."""
        return self.control.paused

    @property
    def writer(self) -> ArchiveWriter:
        """The archive writer (its ``stats`` are the worker's counters)."""
        return self.archive.writer

    @property
    def connections(self) -> list[FeedConnection]:
        """The worker's connections (a copy)."""
        return list(self.pool)

    def uptime_s(self) -> float:
        """Seconds since the worker started capturing (0 before)."""
        return asyncio.get_running_loop().time() - self._started_at if self._started_at else 0.0

    # ------------------------------------------------------------------ tasks

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``coro`` as a task of the worker's task group (cancelled at shutdown). Outside
        the run (before it, or once the group ended) the coroutine is discarded."""
        tg = self._tg
        if tg is None or self._abandoned:
            coro.close()
            return
        try:
            task = tg.create_task(coro, name=name)
        except RuntimeError:  # the group is shutting down
            coro.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _pause_connections(self, reason: str) -> None:
        self.spawn(self.pool.close_all(reason), "pause: close connections")

    # ------------------------------------------------------------------ ConnectionHost

    @property
    def l3_capacity(self) -> float:
        return self.subscriptions.l3_budget.capacity

    def emit(self, frame: Frame) -> list[Signal]:
        """Journal then derive ``frame`` (the archive part); its signals."""
        signals = self.archive.emit(frame)
        if frame.direction == "in" and frame.stream not in ("control", "rest"):
            self.reporter.exchange_lag.frame(frame)
        return signals

    def marker(self, marker: Marker, conn_id: int = 0) -> None:
        """Journal (and derive) a control marker."""
        self.archive.marker(marker, conn_id)

    def on_signals(self, conn: FeedConnection, signals: list[Signal]) -> None:
        """Route each pipeline signal to the part that acts on it."""
        for sig in signals:
            if isinstance(sig, SubscriptionAcked):
                self.subscriptions.acked(conn, sig)
            elif isinstance(sig, SubscriptionRejected):
                self.subscriptions.rejected(conn, sig)
            elif isinstance(sig, BookDesync):
                self.healing.desync(conn, sig)
            elif isinstance(sig, FuturesSeqGap):
                self.healing.futures_gap(conn, sig)
            elif isinstance(sig, TradeIdGap):
                self.healing.trade_gap(sig)
            elif isinstance(sig, InstrumentChanged):
                conn.table.data(INSTRUMENT, time.monotonic())
                self.subscriptions.instrument_changed(sig)
            elif isinstance(sig, InstrumentSnapshot):
                conn.table.data(INSTRUMENT, time.monotonic())
                self.instruments_seen(sig.statuses)

    def on_disconnected(self, conn: FeedConnection) -> None:
        self.healing.disconnected(conn)

    def instruments_seen(self, statuses: dict[str, str] | None = None) -> None:
        self.subscriptions.instruments_seen(statuses)

    def activity(self, conn_id: int) -> dict[tuple[str, str], tuple[int, int]]:
        """Data the archive's pipeline counted on connection ``conn_id``: ``(channel, symbol)
        -> (messages, last recv_ns)`` (:meth:`recorder.pipeline.Pipeline.activity`)."""
        return self.archive.activity(conn_id)

    async def wait_instruments(self) -> None:
        await self.subscriptions.wait_instruments()

    async def wait_resumed(self) -> None:
        await self.control.wait_resumed()

    async def connect_slot(self) -> None:
        await self.pool.connect_slot(self.control.stopping)

    async def spend_l3(self, cost: float) -> None:
        await self.subscriptions.spend_l3(cost)

    async def fresh_token(self) -> str:
        """A new GetWebSocketsToken token (one per level3 session)."""
        return await self.rest.websockets_token()

    def new_conn_id(self) -> int:
        return self.pool.new_conn_id()

    # ------------------------------------------------------------------ status

    def _run_status(self) -> dict[str, Any]:
        return {"paused": self.control.paused.is_set(), "pause_reason": self.control.pause_reason,
                "rest_calls": self.rest.calls, "rest_rate_limited": self.rest.rate_limited}

    def _connection_status(self) -> dict[str, Any]:
        return self.pool.status(time.monotonic(),
                                self.cfg.observability.dead_after_s)

    def status(self) -> dict[str, Any]:
        """The worker's status now (what the supervisor receives)."""
        return self.reporter.status()

    # ------------------------------------------------------------------ run / stop

    def request_stop(self) -> None:
        """Stop: the run ends its sessions, cancels its tasks and commits. A second request
        abandons the final commit (journal made durable, run cancelled)."""
        if self.control.stopping.is_set():
            if not self._abandoned:
                log.warning("worker %d: second stop request: journal made durable, final "
                            "commit abandoned (the next start re-derives it)", self.index)
                self._abandoned = True
                self.archive.abandon()
                if self._main is not None:
                    self._main.cancel()
            return
        log.info("worker %d stopping", self.index)
        self.control.stop()

    async def run(self) -> None:
        """Open the archive root, capture until stopped, then drain and close it.

        Raises :class:`ArchiveBusyError` when another process writes this root; the error of
        a failed task (after the final commit)."""
        self._main = asyncio.current_task()
        if self._abandoned:  # stopped twice before it started: nothing to open or commit
            return
        try:
            n = await self.archive.open()
            log.info("worker %d writes %s (run %s; %d journal frames re-derived at start)",
                     self.index, self.root, self.archive.run_id, n)
            for gap in self.archive.open_trade_gaps():  # a killed run's unfinished backfills
                log.info("worker %d: trade ids %d..%d of %s still missing: backfill requested",
                         self.index, gap.expected, gap.got - 1, gap.symbol)
                self.healing.trade_gap(gap)
            try:
                await self._capture()
            finally:
                self._tg = None
                await self.rest.close()
                if not self._abandoned:
                    await self.archive.close("signal")
                    log.info("worker %d archive closed and committed", self.index)
                else:
                    await self.archive.release()
                self.reporter.send(stopped=True)
        except asyncio.CancelledError:
            if not self._abandoned:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()

    async def _capture(self) -> None:
        """The task group: every part runs until :attr:`stopping`, then :meth:`_shutdown`."""
        from recorder.capture.scheduler import start_jobs

        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            self._started_at = asyncio.get_running_loop().time()
            self.pool.start(self.spawn)
            if self.fix is not None:
                self.fix.start(self.spawn)
            self.spawn(self.healing.run(), "healing")
            self.spawn(self.archive.run(), "archive")
            self.spawn(self.reporter.run(), "status")
            scheduler = start_jobs(self)
            try:
                await self.control.stopping.wait()
            finally:
                if scheduler is not None:
                    with contextlib.suppress(Exception):
                        scheduler.shutdown(wait=False)
            await self._shutdown()

    async def _shutdown(self) -> None:
        """End the sessions (each journals ``Disconnected``), wait for the connections
        (bounded), then cancel every task that is left."""
        await self.pool.close_all(STOP_REASON)
        runners = [t for t in self._tasks if t.get_name().startswith("connection ")]
        if runners:
            _, pending = await asyncio.wait(runners, timeout=_DRAIN_S)
            if pending:
                log.warning("worker %d: %d connection(s) did not end in %.0fs: cancelled",
                            self.index, len(pending), _DRAIN_S)
        for task in list(self._tasks):
            task.cancel()


def _leaf(exc: BaseException) -> BaseException:
    """The first error inside (nested) exception groups: a failed task of the worker's task
    group arrives wrapped in one."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def failure_text(exc: BaseException) -> str:
    """One line naming an error that stopped a worker (the supervisor compares these to tell
    a worker that fails the same way at every start)."""
    exc = _leaf(exc)
    text = str(exc).replace("\n", " ").strip()
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def worker_main(spec: WorkerSpec, status_queue: Any = None, failures: Any = None) -> None:
    """Process entry point: logging, signals, run the worker's event loop, exit 0.

    On an error that stops the worker, its :func:`failure_text` is sent on ``failures`` (the
    write end of a pipe from the supervisor; a pipe write reaches the supervisor even though
    the process exits right after) and the process exits with :data:`EXIT_ARCHIVE_BUSY` when
    another process holds the archive root, else :data:`EXIT_WORKER_FAILED`. An error of the
    environment (``OSError``) or one of the recorder's own typed errors is logged in one line;
    anything else (a bug) with its traceback."""
    from recorder.capture.logs import setup_logging

    setup_logging(spec.cfg.observability, worker=spec.plan.index)

    if status_queue is not None:
        # status reports are disposable: exiting must never wait for the queue's feeder thread
        # to hand them to a supervisor that is gone (a full pipe would block the exit forever)
        status_queue.cancel_join_thread()
    parent = os.getppid()

    def push(status: dict[str, Any]) -> None:
        if status_queue is not None:
            status_queue.put_nowait(status)

    async def orphan_watch(worker: Worker) -> None:
        """Stop (drain, flush, seal) when the supervisor dies (kill -9, OOM kill): nobody would
        restart or stop this worker any more, and a new supervisor's worker needs the root."""
        while not worker.stopping.is_set():
            await asyncio.sleep(min(1.0, spec.cfg.observability.status_interval_s))
            if os.getppid() != parent:
                log.error("worker %d: the supervisor (pid %d) is gone; stopping", worker.index,
                          parent)
                worker.request_stop()
                return

    async def main() -> None:
        # this process is the worker's own: keep the collector's pauses to young objects
        young_gc = YoungGc()
        worker = Worker(spec, push, after_cut=young_gc.step)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.request_stop)
        watch = asyncio.create_task(orphan_watch(worker), name="orphan watch")
        freezer = asyncio.create_task(young_gc.run(), name="young gc")
        try:
            await worker.run()
        finally:
            for task in (watch, freezer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def report(exc: BaseException) -> str:
        text = failure_text(exc)
        if failures is not None:
            with contextlib.suppress(OSError, ValueError):
                failures.send(text)
        return text

    try:
        asyncio.run(main())
    except ArchiveBusyError as exc:
        report(exc)
        log.error("%s", exc)
        raise SystemExit(EXIT_ARCHIVE_BUSY) from None
    except Exception as exc:
        text = report(exc)
        cause = _leaf(exc)
        if isinstance(cause, ArchiveBusyError):
            log.error("%s", cause)
            raise SystemExit(EXIT_ARCHIVE_BUSY) from None
        if isinstance(cause, OSError) or type(cause).__module__.startswith("recorder."):
            log.error("worker %d stopped: %s", spec.plan.index, text)
        else:
            log.exception("worker %d stopped on an internal error: %s", spec.plan.index, text)
        raise SystemExit(EXIT_WORKER_FAILED) from None
