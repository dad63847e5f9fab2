"""One capture worker process: its connections, archive root, healer, REST and jobs.

:func:`worker_main` is the process entry point used by the supervisor; :class:`Worker` is the
asyncio service. Each worker owns one archive root, ``<archive_root>/<host>-w<k>/``
(:mod:`recorder.capture.writer`). Data path per frame: socket -> :meth:`Worker.emit` ->
:meth:`ArchiveWriter.write <recorder.capture.writer.ArchiveWriter.write>` (journal first, then
the archive's one pipeline, the same code ``recorder ingest`` runs) -> the pipeline's signals ->
:meth:`Worker.on_signals` (healer decisions, subscription state). Every break and heal is
journaled as a control marker (:mod:`recorder.pipeline.markers`), so the pipeline writes the
``gaps``/``epochs``/``liveness`` rows. Repairs run in :meth:`Worker._heal_loop` (resnapshots
on the live connection) and :meth:`Worker._rest_loop` (REST backfill and evidence snapshots,
within the REST limit model). Status (health, counters) goes to the supervisor every
``status_interval_s``.

Start: the archive root is opened (writer lock, recovery: the journal tail a crash left
uncommitted is re-derived) and ``ProcessStart`` is journaled (after a crash the pipeline turns
the downtime into a ``gaps`` row with cause ``process_restart``). Book/level3/trade/ohlc
connections wait (bounded) for the ``instrument`` snapshot to be journaled first, so books are
built with the venue's precisions rather than inferred ones.

Commits (Parquet sealed + manifest with the journal position): on the ``roll`` schedule, when
the buffered rows exceed ``schedule.roll_max_mb``, before a disk-pressure pause, and on
shutdown. Shutdown: :meth:`Worker.request_stop` (SIGTERM/SIGINT) ends sessions (journaling
``Disconnected``), then the archive journals ``ProcessStop``, writes open epochs and commits.
A second signal makes the journal durable and exits at once (the next start re-derives it).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import shutil
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from recorder.capture.config import CaptureConfig, select_symbols
from recorder.capture.connection import INSTRUMENT, FeedConnection
from recorder.capture.healing import HealAction, Healer
from recorder.capture.limits import L3_BUDGET_PER_S, Backoff, ConnectLimiter, TokenBucket
from recorder.capture.rest_client import NoCredentials, RestClient, RestFailure, RestRateLimited
from recorder.capture.shards import ConnPlan, WorkerPlan, channel_owner, host_symbols, worker_for
from recorder.capture.writer import (
    ArchiveBusyError,
    ArchiveWriter,
    DiskGuard,
    WriterError,
    writer_id,
)
from recorder.frames import Frame
from recorder.pipeline.markers import (
    BackfillDone,
    BackfillStarted,
    DiskPressure,
    Marker,
    Quarantined,
    Released,
    STOP_REASON,
    ResyncRequested,
    SubscribeFailed,
    encode_marker,
)
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
from recorder.protocol.spot import exchange_time_ns

__all__ = ["Worker", "WorkerSpec", "worker_main", "disk_free_bytes", "failure_text",
           "EXIT_ARCHIVE_BUSY", "EXIT_WORKER_FAILED"]

log = logging.getLogger("recorder.capture.worker")

#: Exit code of a worker whose archive root is locked by another process.
EXIT_ARCHIVE_BUSY: Final = 3
#: Exit code of a worker that stopped on an error (its text goes to the supervisor).
EXIT_WORKER_FAILED: Final = 1
#: One data frame in this many is sampled for the exchange->receive lag.
_LAG_SAMPLE: Final = 64


def disk_free_bytes(path: Path) -> int:
    """Free bytes on the volume of ``path`` (the disk guard's default probe)."""
    return shutil.disk_usage(path).free


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
    """See module docstring.

    ``disk_free``: the free-space probe of the disk guard (tests inject a fake one).
    """

    def __init__(self, spec: WorkerSpec, status_cb: Callable[[dict[str, Any]], None] | None = None,
                 *, disk_free: Callable[[Path], int] = disk_free_bytes) -> None:
        self.spec = spec
        self.cfg = spec.cfg
        self.index = spec.plan.index
        self.host = self.cfg.host or socket.gethostname()
        self.writer_id = writer_id(self.host, self.index)
        self.root = Path(self.cfg.archive_root) / self.writer_id
        sched = self.cfg.schedule
        self.writer = ArchiveWriter(self.root, host=self.host,
                                    fsync_interval_s=self.cfg.fsync_interval_s,
                                    roll_bytes=int(sched.roll_max_mb * 1024 * 1024),
                                    checkpoint_minutes=sched.checkpoint_minutes)
        self.disk_guard = DiskGuard(sched.disk_min_free_bytes, sched.disk_resume_free_bytes)
        self._disk_free = disk_free
        now = time.monotonic()
        self.healer = Healer(self.cfg.healing, now)
        conn = self.cfg.connection
        self.connects = ConnectLimiter(max(1, conn.connects_per_window // max(1, spec.workers)),
                                       conn.connect_window_s)
        rate = L3_BUDGET_PER_S[self.cfg.channels.l3_tier] / max(1, spec.workers)
        self.l3_budget = TokenBucket(rate, rate, now)
        self.stopping = asyncio.Event()
        self.paused = asyncio.Event()
        self._resumed = asyncio.Event()
        self._instruments = asyncio.Event()
        self._commit_wanted = asyncio.Event()
        self._maintenance = ""
        self._write_failed = False
        #: why capture is paused, for the status (the journaled reason stays short)
        self._pause_reason = ""
        #: "channel:symbol" -> why it was quarantined (the healer holds until when)
        self._quarantine_reasons: dict[str, str] = {}
        self._conn_ids = itertools.count(self.index * 1_000_000 + spec.restart * 10_000 + 1)
        self._rng = random.Random(os.getpid() ^ time.time_ns())
        self.rest = RestClient(self.cfg.venue.spot_rest, self.cfg.venue.futures_rest, self.cfg.rest,
                               self.emit, self.cfg.credentials, conn_id=self.index * 1_000_000)
        self.connections: list[FeedConnection] = []
        for plan in (*spec.plan.connections,
                     ConnPlan(name=f"instrument-w{self.index}", stream="spot", channel="instrument",
                              symbols=())):
            self._add_connection(plan)
        self._status_cb = status_cb
        self._rest_queue: asyncio.Queue[HealAction] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.disk_lag_s = 0.0
        self.started = time.time()
        self.backfilled_rows = 0
        self.backfill_missing = 0
        self.rest_snapshots = 0
        self.resyncs = 0
        self._signals = 0
        #: symbols seen delisted by this process: listing one again is a relisting, which
        #: goes to the channel owners even if the supervisor's plan held it
        self._delisted_seen: set[str] = set()
        self._lag_n = 0
        self._lag_x = 0.0
        self._loop_started = 0.0

    # ------------------------------------------------------------------ helpers for connections

    def _add_connection(self, plan: ConnPlan) -> FeedConnection:
        c = FeedConnection(plan, self, backoff=Backoff(self.cfg.connection.backoff_base_s,
                                                       self.cfg.connection.backoff_max_s,
                                                       random.Random(hash(plan.name) ^ os.getpid())))
        self.connections.append(c)
        return c

    def new_conn_id(self) -> int:
        return next(self._conn_ids)

    async def connect_slot(self) -> None:
        """Wait for the connect limiter, then count one attempt."""
        while True:
            wait = self.connects.wait(time.monotonic())
            if wait <= 0:
                self.connects.record(time.monotonic())
                return
            log.warning("connect budget exhausted (%d in %.0fs): waiting %.1fs", self.connects.limit,
                        self.connects.window_s, wait)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), wait)
            if self.stopping.is_set():
                raise asyncio.CancelledError

    async def spend_l3(self, cost: float) -> None:
        while not self.l3_budget.take(cost, time.monotonic()):
            await asyncio.sleep(self.l3_budget.wait(cost, time.monotonic()))

    async def fresh_token(self) -> str:
        """A new GetWebSocketsToken token (one per level3 session)."""
        return await self.rest.websockets_token()

    async def wait_resumed(self) -> None:
        self._resumed.clear()
        stop = asyncio.ensure_future(self.stopping.wait())
        res = asyncio.ensure_future(self._resumed.wait())
        await asyncio.wait({stop, res}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        res.cancel()

    def instruments_seen(self, statuses: dict[str, str] | None = None) -> None:
        """An instrument snapshot has been journaled (and derived): the subscription tables are
        brought in line with its pair ``statuses`` (:meth:`_reconcile_listing`; from the
        pipeline's :class:`InstrumentSnapshot` signal), then books may subscribe."""
        if statuses:
            self._reconcile_listing(statuses)
        if not self._instruments.is_set():
            self._instruments.set()

    def _reconcile_listing(self, statuses: dict[str, str]) -> None:
        """Make the spot subscription tables agree with one instrument snapshot.

        The plan a worker starts from was drawn when the supervisor started. A worker restarted
        later (after a crash or kill -9) restores its pipeline state, which already saw any
        listing or delisting since, so no :class:`InstrumentChanged` comes for them: without
        this, a pair delisted meanwhile would be subscribed and refused forever (a dead
        subscription), and a pair listed meanwhile would never be recorded. A symbol the
        snapshot no longer lists (or lists as ``delisted``) is dropped; an ``online`` symbol
        outside the supervisor's plan (``WorkerSpec.planned``) that falls to this worker, as a
        runtime listing would, is added where no connection holds it yet.
        """
        if not statuses:
            return
        for c in self.connections:
            if c.stream == "futures" or c.channel == "instrument":
                continue
            gone = [s for s in c.table.subs if statuses.get(s, "delisted") == "delisted"]
            for sym in gone:
                self._delisted_seen.add(sym)
                info = c.table.subs[sym]
                log.info("%s is not listed any more: dropping it from %s", sym, c.channel)
                self.healer.forget(sym)
                c.table.remove(sym)
                if info.state in ("pending", "active") and c.connected:
                    self._spawn(c.unsubscribe([sym], "delisted"))
        planned = self.spec.planned
        for sym in sorted(statuses):
            if statuses[sym] == "online" and sym not in planned and self._mine(sym):
                self._add_to_channels(sym)  # no-op where a connection holds it already

    async def wait_instruments(self) -> None:
        """Until the instrument snapshot is in the archive (bounded by ``ack_timeout_s``:
        without it the pipeline infers precisions from the book snapshots)."""
        if self._instruments.is_set():
            return
        try:
            await asyncio.wait_for(self._instruments.wait(), self.cfg.connection.ack_timeout_s)
        except asyncio.TimeoutError:
            if not self._instruments.is_set():
                log.warning("no instrument snapshot after %.0fs: subscribing without it "
                            "(precisions inferred from snapshots)",
                            self.cfg.connection.ack_timeout_s)
                self._instruments.set()

    # ------------------------------------------------------------------ data path

    def emit(self, frame: Frame) -> list[Signal]:
        """Journal then derive ``frame`` through the archive's pipeline; its signals."""
        try:
            signals = self.writer.write(frame)
        except WriterError as exc:
            self._on_write_error(exc)
            return []
        if self.writer.commit_due and not self._commit_wanted.is_set():
            self._commit_wanted.set()
        if frame.direction == "in" and frame.stream != "control" and frame.stream != "rest":
            self._lag_n += 1
            if self._lag_n % _LAG_SAMPLE == 0:
                self._sample_lag(frame)
        return signals

    def activity(self, conn_id: int) -> dict[tuple[str, str], tuple[int, int]]:
        """Data the archive's pipeline counted on connection ``conn_id``: ``(channel, symbol)
        -> (messages, last recv_ns)`` (:meth:`recorder.pipeline.Pipeline.activity`)."""
        return self.writer.activity(conn_id)

    def _sample_lag(self, frame: Frame) -> None:
        """Exchange->receive lag from one frame's latest exchange ``timestamp`` (a metric, not
        data): the last one (book/level3/trade data), except on ``ohlc``, whose bars carry a
        deprecated ``timestamp`` at the bar's *end* (in the future): there the message-level
        generation time, which comes first."""
        ts = exchange_time_ns(frame.payload)
        if ts is not None:
            self._lag_x = max(0.0, (frame.recv_ns - ts) / 1e9)

    def marker(self, marker: Marker, conn_id: int = 0) -> None:
        """Journal (and derive) a control marker."""
        self.emit(Frame(recv_ns=time.time_ns(), conn_id=conn_id, stream="control", direction="in",
                        payload=encode_marker(marker)))

    def _on_write_error(self, exc: WriterError) -> None:
        log.error("archive write failed (%s): capture paused until the journal writes again",
                  exc)
        self._write_failed = True
        self._pause(f"archive write failed: {exc}"[:200])

    def _find(self, stream: str, channel: str, symbol: str) -> FeedConnection | None:
        for c in self.connections:
            if c.stream == stream and c.channel == channel and c.has(symbol):
                return c
        return None

    def on_signals(self, conn: FeedConnection, signals: list[Signal]) -> None:
        now = time.monotonic()
        for sig in signals:
            self._signals += 1
            if isinstance(sig, SubscriptionAcked):
                sym = sig.symbol or INSTRUMENT
                conn.table.acked(sym, now)
                conn.backoff.reset()
            elif isinstance(sig, SubscriptionRejected):
                self._rejected(conn, sig, now)
            elif isinstance(sig, BookDesync):
                c = self._find(sig.stream, sig.channel if sig.channel != "futures_book" else "book",
                               sig.symbol) or conn
                channel = "book" if sig.channel == "futures_book" else sig.channel
                d = self.healer.desync(sig.stream, channel, sig.symbol, sig.depth, sig.reason, now,
                                       rest_snapshot=None if sig.stream != "futures" else False)
                log.info("desync %s %s %s (%s) -> %s", sig.stream, channel, sig.symbol,
                         sig.reason, d.outcome)
                if sig.stream == "futures" and d.outcome == "queued" and self.cfg.healing.rest_snapshot_on_gap:
                    self.healer._push(HealAction("rest_snapshot", "futures", "book", sig.symbol))
                if d.outcome == "quarantined":
                    self._quarantine(c, sig.symbol, channel, sig.reason, d.until or now)
            elif isinstance(sig, FuturesSeqGap):
                c = self._find("futures", sig.feed, sig.product_id) or conn
                d = self.healer.desync("futures", sig.feed, sig.product_id, None, "seq_gap", now,
                                       rest_snapshot=False)
                if d.outcome == "queued" and sig.feed == "book" and self.cfg.healing.rest_snapshot_on_gap:
                    self.healer._push(HealAction("rest_snapshot", "futures", "book", sig.product_id))
                if d.outcome == "quarantined":
                    self._quarantine(c, sig.product_id, sig.feed, "seq_gap", d.until or now)
            elif isinstance(sig, TradeIdGap):
                self.healer.trade_gap(sig.symbol, sig.expected, sig.got, sig.recv_ns)
            elif isinstance(sig, InstrumentChanged):
                conn.table.data(INSTRUMENT, now)
                self._instrument_changed(sig)
            elif isinstance(sig, InstrumentSnapshot):
                conn.table.data(INSTRUMENT, now)
                self.instruments_seen(sig.statuses)

    def _rejected(self, conn: FeedConnection, sig: SubscriptionRejected, now: float) -> None:
        err = sig.error
        syms = [sig.symbol] if sig.symbol else conn.table.in_state("pending")
        if not sig.symbol:
            # Kraken named no symbol: the pipeline cannot attribute the refusal, capture can
            # (the pending ones); with a symbol the pipeline's own gaps row already says it.
            self.marker(SubscribeFailed(conn_id=conn.conn_id, channel=sig.channel or conn.channel,
                                        symbols=syms, error=err, depth=conn.plan.depth,
                                        interval=conn.plan.interval), conn.conn_id)
        for sym in syms:
            if err == "Already subscribed":
                conn.table.acked(sym, now)
            elif "not supported" in err or "Invalid product" in err:
                conn.table.rejected(sym, err, now)  # not listed: stays failed until relisted
            else:
                conn.table.rejected(sym, err, now)
                self._spawn(self._retry_subscribe(conn, sym, err))
        if "Exceeded msg rate" in err:
            conn.requests.drain(now)
            if conn.stream == "l3":
                self.l3_budget.drain(now)
        if "token" in err.lower():
            conn.need_token_refresh()

    async def _retry_subscribe(self, conn: FeedConnection, symbol: str, err: str) -> None:
        info = conn.table.subs.get(symbol)
        attempts = info.attempts if info else 1
        await asyncio.sleep(min(30.0, 0.5 * 2 ** min(attempts, 6)) * (0.5 + self._rng.random() / 2))
        info = conn.table.subs.get(symbol)
        if info is not None and info.state == "failed" and conn.connected:
            info.state = "idle"
            conn.wake()

    def _quarantine(self, conn: FeedConnection, symbol: str, channel: str, reason: str,
                    until: float) -> None:
        until_ns = time.time_ns() + int((until - time.monotonic()) * 1e9)
        self.marker(Quarantined(channel=channel, symbol=symbol, reason=reason, until_ns=until_ns),
                    conn.conn_id)
        log.warning("quarantined %s %s until +%.0fs (%s)", channel, symbol,
                    until - time.monotonic(), reason)
        conn.table.quarantine(symbol, time.monotonic())
        self._quarantine_reasons[f"{channel}:{symbol}"] = reason
        self._spawn(conn.unsubscribe([symbol], "quarantine"))

    def on_disconnected(self, conn: FeedConnection) -> None:
        if conn.channel == "ohlc":
            for sym in conn.table.subs:
                self.healer.ohlc_gap(sym, conn.plan.interval, time.time_ns())

    # ------------------------------------------------------------------ instruments

    def _mine(self, symbol: str) -> bool:
        """This host records ``symbol`` (include/exclude patterns and ``--shard``)."""
        k, n = self.cfg.shard_index
        ch = self.cfg.channels
        return (bool(select_symbols([symbol], ch.include, ch.exclude))
                and bool(host_symbols([symbol], k, n)))

    def _takes(self, channel: str, symbol: str) -> bool:
        """This worker subscribes ``symbol`` on ``channel`` when it is listed at runtime."""
        owners = self.spec.channel_owners.get(channel)
        if not owners:  # a spec without the plan's owners: one owner for every channel
            return worker_for(symbol, self.spec.workers) == self.index
        return channel_owner(symbol, owners) == self.index

    def _instrument_changed(self, sig: InstrumentChanged) -> None:
        status = sig.statuses
        gone = set(sig.delisted) | {s for s in sig.status_changed if status.get(s) == "delisted"}
        for sym in sig.listed:
            if status.get(sym, "online") == "online" and sym not in gone and self._mine(sym):
                self._add_to_channels(sym)  # no-op for symbols already subscribed
        for sym in sorted(gone):
            self.healer.forget(sym)
            self._delisted_seen.add(sym)
            for c in self.connections:
                if c.has(sym) and c.stream != "futures":
                    log.info("delisted %s: unsubscribing %s", sym, c.channel)
                    c.table.remove(sym)
                    self._spawn(c.unsubscribe([sym], "delisted"))
        for sym in sig.status_changed:
            if sym in gone:
                continue
            if status.get(sym) == "online" and self._mine(sym):
                self._add_to_channels(sym)
            for c in self.connections:
                if c.has(sym) and c.channel in ("book", "level3"):
                    # new precision (or status): a fresh snapshot rebuilds the book with it
                    self.healer._push(HealAction("resnapshot", c.stream, c.channel, sym,
                                                 c.plan.depth, "instrument_changed"))

    def _add_to_channels(self, sym: str) -> None:
        """Add a new symbol to the least-loaded connection of each spot channel this worker
        takes it on (:meth:`_takes`), or to a new connection where all are full."""
        if sym in self.spec.planned and sym not in self._delisted_seen:
            # the first instrument snapshot "lists" every pair: a planned one is its plan
            # owner's (on whichever worker), unless it was delisted since (a relisting)
            return
        by_channel: dict[str, list[FeedConnection]] = {}
        for c in self.connections:
            if c.stream in ("spot", "l3") and c.channel != "instrument":
                by_channel.setdefault(c.channel, []).append(c)
        cap = self.cfg.connection
        for channel, conns in by_channel.items():
            if not self._takes(channel, sym) or any(c.has(sym) for c in conns):
                continue
            log.info("new listing %s: subscribing %s", sym, channel)
            limit = cap.l3_symbols_per_connection if channel == "level3" else cap.max_symbols_per_connection
            room = [c for c in conns if len(c.table.subs) < limit]
            if room:
                c = min(room, key=lambda c: len(c.table.subs))
                c.table.add(sym)
                c.wake()
            else:
                base = conns[0].plan
                plan = ConnPlan(name=f"{channel}-x{len(conns)}", stream=base.stream, channel=channel,
                                symbols=(sym,), depth=base.depth, interval=base.interval)
                newc = self._add_connection(plan)
                self._spawn(newc.run())

    # ------------------------------------------------------------------ healing

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _heal_loop(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            if self.paused.is_set():
                continue
            for action in self.healer.due(time.monotonic()):
                if action.kind in ("resnapshot", "resubscribe", "release"):
                    self._spawn(self._resnapshot(action))
                else:
                    self._rest_queue.put_nowait(action)

    async def _resnapshot(self, action: HealAction) -> None:
        try:
            conn = self._find(action.stream, action.channel, action.symbol)
            if conn is None:
                return
            if action.kind == "release":
                conn.table.release(action.symbol, time.monotonic())
                self.marker(Released(channel=action.channel, symbol=action.symbol,
                                     reason=action.reason), conn.conn_id)
                conn.wake()
                return
            self.resyncs += 1
            self.marker(ResyncRequested(channel=action.channel, symbol=action.symbol,
                                        reason=action.reason), conn.conn_id)
            await conn.resnapshot(action.symbol, action.reason)
        except Exception as exc:
            log.info("resnapshot of %s %s not sent: %s", action.channel, action.symbol, exc)
        finally:
            self.healer.done(action)

    async def _rest_loop(self) -> None:
        while True:
            action = await self._rest_queue.get()
            if self.paused.is_set():
                await self.wait_resumed()
            try:
                if action.kind == "backfill_trades":
                    await self._backfill_trades(action)
                elif action.kind == "rest_snapshot":
                    await self._rest_snapshot(action)
                elif action.kind == "backfill_ohlc":
                    await self.rest.ohlc(action.symbol, action.depth or 1,
                                         since=int(time.time()) - 3600)
                self.healer.done(action)
            except RestRateLimited as exc:
                log.warning("REST rate limited (%s); retrying in %.1fs", exc, exc.retry_in_s)
                self._spawn(self._requeue_later(action, exc.retry_in_s))
            except NoCredentials:
                self.healer.done(action)
            except RestFailure as exc:
                log.warning("REST %s for %s failed: %s", action.kind, action.symbol, exc)
                self._spawn(self._requeue_later(action, 5.0))

    async def _requeue_later(self, action: HealAction, delay: float) -> None:
        await asyncio.sleep(max(0.1, delay))
        self._rest_queue.put_nowait(action)

    async def _rest_snapshot(self, action: HealAction) -> None:
        self.rest_snapshots += 1
        if action.stream == "futures":
            await self.rest.futures_orderbook(action.symbol)
        elif action.channel == "level3" and self.rest.has_keys:
            await self.rest.level3(action.symbol, action.depth or 10)
        else:
            await self.rest.depth(action.symbol, min(500, action.depth or 100))

    async def _backfill_trades(self, action: HealAction) -> None:
        """Fetch trade ids ``expected .. got-1`` from REST ``Trades`` paging by ``last``.

        Every page body is journaled (``stream="rest"``) and derived by the pipeline into
        ``trades`` rows with ``source`` = REST backfill; ``BackfillDone`` closes the
        ``trade_id_jump`` gap (healed by ``rest_backfill``, or not when ids stay missing)."""
        sym, lo, hi = action.symbol, action.expected or 0, action.got or 0
        self.marker(BackfillStarted(symbol=sym, from_trade_id=lo, to_trade_id=hi - 1))
        lookback = int(self.cfg.healing.backfill_lookback_s * 1e9)
        since = (action.recv_ns or time.time_ns()) - lookback
        page = await self.rest.trades(sym, since)
        for step in range(8):  # step back until the page starts at or before the gap
            ids = [t.trade_id for t in page.trades if t.trade_id is not None]
            if ids and min(ids) <= lo:
                break
            since -= lookback * 2 ** step
            page = await self.rest.trades(sym, max(0, since))
        have: set[int] = set()
        for _ in range(1000):
            ids = [t.trade_id for t in page.trades if t.trade_id is not None]
            have.update(i for i in ids if lo <= i < hi)
            if not ids or max(ids) >= hi - 1 or not page.last or page.last_ns == since:
                break
            since = page.last_ns or since
            page = await self.rest.trades(sym, since)
        missing = (hi - lo) - len(have)
        self.backfilled_rows += len(have)
        self.backfill_missing += max(0, missing)
        self.marker(BackfillDone(symbol=sym, from_trade_id=lo, to_trade_id=hi - 1, rows=len(have),
                                 error="" if missing <= 0 else f"{missing} trade(s) not returned"))

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        dead_after = self.cfg.observability.dead_after_s
        conns = []
        for c in self.connections:
            conns.append({
                "name": c.name, "stream": c.stream, "channel": c.channel, "connected": c.connected,
                "conn_id": c.conn_id, "symbols": len(c.table.subs), "states": c.table.counts(),
                "dead": c.table.dead(now, dead_after, c.connected)[:50],
                "messages": c.messages, "bytes": c.bytes, "sessions": c.sessions,
                "last_error": c.last_error, "url": c.url, "retry_at": c.retry_at,
                "attempts": c.backoff.failures,
            })
        self.writer.refresh_counters()
        st = self.writer.stats
        wall = time.time()
        quarantine = [{"key": key, "until": wall + max(0.0, until - now),
                       "reason": self._quarantine_reasons.get(key, "")}
                      for key, until in sorted((f"{k[1]}:{k[2]}", u)
                                               for k, u in self.healer.quarantined().items())]
        return {
            "worker": self.index, "pid": os.getpid(), "time": time.time(), "started": self.started,
            "writer": self.writer_id, "root": str(self.root),
            "paused": self.paused.is_set(), "pause_reason": self._pause_reason,
            "connections": conns, "quarantine": quarantine,
            "frames_in": st.frames_in, "bytes_in": st.bytes_in, "frames_journaled": st.frames,
            "checksums_ok": st.checksums_ok, "checksum_failures": st.checksum_failures,
            "trade_gaps": st.trade_gaps, "seq_gaps": st.seq_gaps,
            "commits": st.commits, "commit_s_last": round(st.commit_s_last, 4),
            "commit_s_max": round(st.commit_s_max, 4), "recovered_frames": st.recovered_frames,
            "archive_buffered_bytes": self.writer.buffered_bytes if self.writer.session else 0,
            "resyncs": self.resyncs, "quarantined": [f"{k[1]}:{k[2]}" for k in self.healer.quarantined()],
            "heal_pending": self.healer.pending(), "rest_queue": self._rest_queue.qsize(),
            "resnapshot_budget_use": self.healer.budget_utilisation(now),
            "l3_budget_use": self.l3_budget.utilisation(now),
            "connects_used": self.connects.used(now), "rest_calls": self.rest.calls,
            "rest_rate_limited": self.rest.rate_limited, "backfilled_rows": self.backfilled_rows,
            "backfill_missing": self.backfill_missing, "rest_snapshots": self.rest_snapshots,
            "lag_exchange_receive_s": self._lag_x, "lag_receive_disk_s": self.disk_lag_s,
        }

    async def _flush_loop(self) -> None:
        """Journal durability in quiet periods (appends flush only while frames arrive)."""
        interval = max(0.05, min(1.0, self.cfg.fsync_interval_s) / 2)
        while True:
            await asyncio.sleep(interval)
            self._flush()

    def _flush(self) -> None:
        if self.writer.session is None:
            return
        try:
            self.writer.flush_journal()
        except WriterError as exc:
            self._on_write_error(exc)
            return
        last = self.writer.stats.last_recv_ns
        if last:
            self.disk_lag_s = max(0.0, (time.time_ns() - last) / 1e9)

    async def _status_loop(self) -> None:
        while True:
            if self._status_cb is not None:
                with contextlib.suppress(Exception):
                    self._status_cb(self.status())
            await asyncio.sleep(self.cfg.observability.status_interval_s)

    # ------------------------------------------------------------------ commits and maintenance

    def commit(self, why: str) -> bool:
        """Seal and commit the buffered rows now (skipped while compaction/retention holds the
        archive; the next trigger commits). False when nothing was committed."""
        if self.writer.session is None:
            return False
        if self._maintenance:
            log.debug("commit (%s) deferred: %s is running", why, self._maintenance)
            self._commit_wanted.set()
            return False
        try:
            dt = self.writer.commit()
        except WriterError as exc:
            log.error("archive commit failed (%s); rows stay buffered, capture paused", exc)
            self._write_failed = True
            self._pause(f"archive commit failed: {exc}"[:200])
            return False
        (log.warning if dt > 1.0 else log.debug)("archive commit (%s) took %.3fs", why, dt)
        return True

    async def _commit_loop(self) -> None:
        """Commits asked for by the data path (buffered rows over ``roll_max_mb``)."""
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted.clear()
            await asyncio.sleep(0)  # let the reader that asked finish its frame
            self.commit("size")
            await asyncio.sleep(1.0)  # at most one size-triggered commit per second

    async def maintenance(self, name: str, fn: Callable[[Any], Any]) -> Any:
        """Run compaction/retention ``fn(archive)`` in a thread with the writer's own
        :class:`~recorder.archive.store.Archive` (its lock); commits wait meanwhile. Frames
        keep flowing into the journal and the pipeline's buffers."""
        if self._maintenance or self.writer.session is None:
            log.info("%s skipped: %s", name, self._maintenance or "archive not open")
            return None
        self.commit(f"before {name}")
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

    def _pause(self, reason: str, status: str = "") -> None:
        """Stop taking data: close every connection (each journals ``Disconnected`` with
        ``reason``, so the pipeline records the gaps); REST and healing wait. ``status``: the
        longer explanation the worker's status gives (default ``reason``)."""
        if self.paused.is_set():
            return
        self._pause_reason = status or reason
        self.paused.set()
        for c in self.connections:
            self._spawn(c.close(reason))

    def _resume(self) -> None:
        self._pause_reason = ""
        self.paused.clear()
        self._resumed.set()

    def check_disk(self) -> None:
        """The disk guard: below ``disk_min_free_bytes`` journal ``DiskPressure``, commit what
        is buffered and pause; at or above ``disk_resume_free_bytes`` resume. A pause caused by
        a failed write resumes once the journal writes again."""
        try:
            free = self._disk_free(self.root)
        except OSError as exc:
            log.warning("disk guard cannot read free space of %s: %s", self.root, exc)
            return
        sched = self.cfg.schedule
        verdict = self.disk_guard.check(free)
        if verdict == "pause":
            log.error("disk space low (%d bytes free on %s, minimum %d): capture paused",
                      free, self.root, sched.disk_min_free_bytes)
            self.marker(DiskPressure(free_bytes=free, path=str(self.root)))
            self.commit("disk pressure")
            self._pause(f"disk pressure: {free} bytes free",
                        f"disk nearly full: {free:,} bytes free on {self.root} (capture pauses "
                        f"below {sched.disk_min_free_bytes:,} and resumes at "
                        f"{sched.disk_resume_free_bytes:,} bytes free)")
        elif verdict == "resume":
            log.warning("disk space recovered (%d bytes free): capture resumed", free)
            if not self._write_failed:
                self._resume()
        if self._write_failed and not self.disk_guard.paused:
            try:
                self.writer.flush_journal()
            except WriterError:
                return
            log.warning("archive writes again: capture resumed")
            self._write_failed = False
            self._resume()

    # ------------------------------------------------------------------ run / stop

    def request_stop(self) -> None:
        if self.stopping.is_set():
            # second signal: keep what reached the journal, exit now
            with contextlib.suppress(Exception):
                self.writer.emergency_flush()
            os._exit(0)
        log.info("worker %d stopping", self.index)
        self.stopping.set()

    async def run(self) -> None:
        """Open the archive root, capture until :attr:`stopping`, then drain and close it.

        Raises :class:`ArchiveBusyError` when another process writes this root."""
        n = await asyncio.to_thread(self.writer.open)
        log.info("worker %d writes %s (run %s; %d journal frames re-derived at start)",
                 self.index, self.root, self.writer.run_id, n)
        self.commit("start")  # the recovered tail and the ProcessStart/restart gap are durable now
        from recorder.capture.scheduler import start_jobs

        self._loop_started = asyncio.get_running_loop().time()
        scheduler = start_jobs(self)
        runners = [asyncio.ensure_future(c.run()) for c in self.connections]
        helpers = [asyncio.ensure_future(x) for x in (self._heal_loop(), self._rest_loop(),
                                                      self._flush_loop(), self._status_loop(),
                                                      self._commit_loop())]
        try:
            await self.stopping.wait()
        finally:
            if scheduler is not None:
                with contextlib.suppress(Exception):
                    scheduler.shutdown(wait=False)
            for t in helpers + list(self._tasks):
                t.cancel()
            # connections notice `stopping` and end their sessions; bounded wait, then cancel
            for c in self.connections:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(c.close(STOP_REASON), 1.0)
            _, pending = await asyncio.wait(runners, timeout=5.0) if runners else (set(), set())
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, *helpers, return_exceptions=True)
            await self.rest.close()
            t0 = time.perf_counter()
            try:
                await asyncio.to_thread(self.writer.close, "signal")
                log.info("worker %d archive closed and committed in %.2fs", self.index,
                         time.perf_counter() - t0)
            except WriterError as exc:
                log.error("final commit failed (%s): the journal holds everything; the next "
                          "start re-derives it", exc)
            if self._status_cb is not None:
                with contextlib.suppress(Exception):
                    self._status_cb({**self.status(), "stopped": True})


def failure_text(exc: BaseException) -> str:
    """One line naming an error that stopped a worker (the supervisor compares these to tell
    a worker that fails the same way at every start)."""
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
        worker = Worker(spec, push)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.request_stop)
        watch = asyncio.ensure_future(orphan_watch(worker))
        try:
            await worker.run()
        finally:
            watch.cancel()

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
        if isinstance(exc, OSError) or type(exc).__module__.startswith("recorder."):
            log.error("worker %d stopped: %s", spec.plan.index, text)
        else:
            log.exception("worker %d stopped on an internal error: %s", spec.plan.index, text)
        raise SystemExit(EXIT_WORKER_FAILED) from None
