"""The healing part of a worker: the asyncio shell around the pure :class:`Healer`.

:class:`HealingPart` takes the pipeline's problem signals (book desyncs, futures ``seq`` gaps,
trade-id gaps) and broken ohlc connections, lets the :class:`~recorder.capture.healing.Healer`
decide, and carries the decisions out:

* resnapshots and quarantine releases on the symbol's live connection (journaling
  ``ResyncRequested`` / ``Released``), within the healer's budget;
* quarantines: ``Quarantined`` journaled, the symbol unsubscribed until the healer releases it;
* REST work in one queue (:meth:`HealingPart.run`): trade backfills (every page journaled,
  ``BackfillStarted``/``BackfillDone`` around them), evidence snapshots of books, ohlc
  backfills; rate-limited or failed calls are retried later, and nothing is sent while
  capture is paused.

It finds connections through the :class:`~recorder.capture.connections_part.ConnectionPool`
and writes through the archive part's ``marker``; it owns its queue, counters and quarantine
reasons.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from recorder.capture.config import HealingConfig
from recorder.capture.connection import FeedConnection
from recorder.capture.connections_part import ConnectionPool, Spawn
from recorder.capture.control import RunControl
from recorder.capture.healing import HealAction, Healer
from recorder.capture.rest_client import NoCredentials, RestClient, RestFailure, RestRateLimited
from recorder.pipeline.markers import (
    BackfillDone,
    BackfillStarted,
    Marker,
    Quarantined,
    Released,
    ResyncRequested,
)
from recorder.pipeline.signals import BookDesync, FuturesSeqGap, TradeIdGap

__all__ = ["HealingPart"]

log = logging.getLogger("recorder.capture.healing")

#: Writes a control marker (the archive part's ``marker``).
MarkerSink = Callable[[Marker, int], Any]


class HealingPart:
    """Carries out the healer's repairs (see module docstring)."""

    def __init__(self, cfg: HealingConfig, *, pool: ConnectionPool, rest: RestClient,
                 marker: MarkerSink, control: RunControl, spawn: Spawn) -> None:
        self._cfg = cfg
        self.healer = Healer(cfg, time.monotonic())
        self._pool = pool
        self._rest = rest
        self._marker = marker
        self._control = control
        self._spawn = spawn
        self._rest_queue: asyncio.Queue[HealAction] = asyncio.Queue()
        #: "channel:symbol" -> why it was quarantined (the healer holds until when)
        self._quarantine_reasons: dict[str, str] = {}
        self.resyncs = 0
        self.backfilled_rows = 0
        self.backfill_missing = 0
        self.rest_snapshots = 0

    # ------------------------------------------------------------------ inputs (signals)

    def desync(self, conn: FeedConnection, sig: BookDesync) -> None:
        """A book (spot, level3 or futures) can no longer be trusted."""
        now = time.monotonic()
        channel = "book" if sig.channel == "futures_book" else sig.channel
        c = self._pool.find(sig.stream, channel, sig.symbol) or conn
        futures = sig.stream == "futures"
        d = self.healer.desync(sig.stream, channel, sig.symbol, sig.depth, sig.reason, now,
                               rest_snapshot=False if futures else None)
        log.info("desync %s %s %s (%s) -> %s", sig.stream, channel, sig.symbol, sig.reason,
                 d.outcome)
        if futures and d.outcome == "queued" and self._cfg.rest_snapshot_on_gap:
            self.healer.rest_snapshot("futures", "book", sig.symbol)
        if d.outcome == "quarantined":
            self._quarantine(c, sig.symbol, channel, sig.reason, d.until or now)

    def futures_gap(self, conn: FeedConnection, sig: FuturesSeqGap) -> None:
        """A futures feed skipped ``seq`` numbers: resubscribe it."""
        now = time.monotonic()
        c = self._pool.find("futures", sig.feed, sig.product_id) or conn
        d = self.healer.desync("futures", sig.feed, sig.product_id, None, "seq_gap", now,
                               rest_snapshot=False)
        if d.outcome == "queued" and sig.feed == "book" and self._cfg.rest_snapshot_on_gap:
            self.healer.rest_snapshot("futures", "book", sig.product_id)
        if d.outcome == "quarantined":
            self._quarantine(c, sig.product_id, sig.feed, "seq_gap", d.until or now)

    def trade_gap(self, sig: TradeIdGap) -> None:
        """Trade ids were skipped: backfill them over REST."""
        self.healer.trade_gap(sig.symbol, sig.expected, sig.got, sig.recv_ns)

    def disconnected(self, conn: FeedConnection) -> None:
        """A session ended: bars of an ohlc connection may be missing."""
        if conn.channel == "ohlc":
            for sym in conn.table.subs:
                self.healer.ohlc_gap(sym, conn.plan.interval, time.time_ns())

    def rebuild(self, conn: FeedConnection, symbol: str, reason: str) -> None:
        """Ask for a fresh snapshot of ``symbol`` on ``conn`` (new precisions or status)."""
        self.healer.resnapshot(conn.stream, conn.channel, symbol, conn.plan.depth, reason)

    def forget(self, symbol: str) -> None:
        """A delisted symbol: drop its repairs and quarantine state."""
        self.healer.forget(symbol)

    def _quarantine(self, conn: FeedConnection, symbol: str, channel: str, reason: str,
                    until: float) -> None:
        until_ns = time.time_ns() + int((until - time.monotonic()) * 1e9)
        self._marker(Quarantined(channel=channel, symbol=symbol, reason=reason, until_ns=until_ns),
                     conn.conn_id)
        log.warning("quarantined %s %s until +%.0fs (%s)", channel, symbol,
                    until - time.monotonic(), reason)
        conn.table.quarantine(symbol, time.monotonic())
        self._quarantine_reasons[f"{channel}:{symbol}"] = reason
        self._spawn(conn.unsubscribe([symbol], "quarantine"), f"quarantine {symbol}")

    # ------------------------------------------------------------------ the shell

    async def run(self) -> None:
        """The heal loop (due repairs every 100 ms) and the REST loop, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._heal_loop())
            tg.create_task(self._rest_loop())

    async def _heal_loop(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            if self._control.paused.is_set():
                continue
            for action in self.healer.due(time.monotonic()):
                if action.kind in ("resnapshot", "resubscribe", "release"):
                    self._spawn(self._resnapshot(action), f"{action.kind} {action.symbol}")
                else:
                    self._rest_queue.put_nowait(action)

    async def _resnapshot(self, action: HealAction) -> None:
        try:
            conn = self._pool.find(action.stream, action.channel, action.symbol)
            if conn is None:
                return
            if action.kind == "release":
                conn.table.release(action.symbol, time.monotonic())
                self._marker(Released(channel=action.channel, symbol=action.symbol,
                                      reason=action.reason), conn.conn_id)
                conn.wake()
                return
            self.resyncs += 1
            self._marker(ResyncRequested(channel=action.channel, symbol=action.symbol,
                                         reason=action.reason), conn.conn_id)
            await conn.resnapshot(action.symbol, action.reason)
        except Exception as exc:
            log.info("resnapshot of %s %s not sent: %s", action.channel, action.symbol, exc)
        finally:
            self.healer.done(action)

    async def _rest_loop(self) -> None:
        while True:
            action = await self._rest_queue.get()
            await self._control.wait_resumed()
            try:
                if action.kind == "backfill_trades":
                    await self._backfill_trades(action)
                elif action.kind == "rest_snapshot":
                    await self._rest_snapshot(action)
                elif action.kind == "backfill_ohlc":
                    await self._rest.ohlc(action.symbol, action.depth or 1,
                                          since=int(time.time()) - 3600)
                self.healer.done(action)
            except RestRateLimited as exc:
                log.warning("REST rate limited (%s); retrying in %.1fs", exc, exc.retry_in_s)
                self._spawn(self._requeue_later(action, exc.retry_in_s), "rest retry")
            except NoCredentials:
                self.healer.done(action)
            except RestFailure as exc:
                log.warning("REST %s for %s failed: %s", action.kind, action.symbol, exc)
                self._spawn(self._requeue_later(action, 5.0), "rest retry")

    async def _requeue_later(self, action: HealAction, delay: float) -> None:
        await asyncio.sleep(max(0.1, delay))
        self._rest_queue.put_nowait(action)

    async def _rest_snapshot(self, action: HealAction) -> None:
        self.rest_snapshots += 1
        if action.stream == "futures":
            await self._rest.futures_orderbook(action.symbol)
        elif action.channel == "level3" and self._rest.has_keys:
            await self._rest.level3(action.symbol, action.depth or 10)
        else:
            await self._rest.depth(action.symbol, min(500, action.depth or 100))

    async def _backfill_trades(self, action: HealAction) -> None:
        """Fetch trade ids ``expected .. got-1`` from REST ``Trades`` paging by ``last``.

        Every page body is journaled (``stream="rest"``) and derived by the pipeline into
        ``trades`` rows with ``source`` = REST backfill; ``BackfillDone`` closes the
        ``trade_id_jump`` gap (healed by ``rest_backfill``, or not when ids stay missing)."""
        sym, lo, hi = action.symbol, action.expected or 0, action.got or 0
        self._marker(BackfillStarted(symbol=sym, from_trade_id=lo, to_trade_id=hi - 1), 0)
        lookback = int(self._cfg.backfill_lookback_s * 1e9)
        since = (action.recv_ns or time.time_ns()) - lookback
        page = await self._rest.trades(sym, since)
        for step in range(8):  # step back until the page starts at or before the gap
            ids = [t.trade_id for t in page.trades if t.trade_id is not None]
            if ids and min(ids) <= lo:
                break
            since -= lookback * 2 ** step
            page = await self._rest.trades(sym, max(0, since))
        have: set[int] = set()
        for _ in range(1000):
            ids = [t.trade_id for t in page.trades if t.trade_id is not None]
            have.update(i for i in ids if lo <= i < hi)
            if not ids or max(ids) >= hi - 1 or not page.last or page.last_ns == since:
                break
            since = page.last_ns or since
            page = await self._rest.trades(sym, since)
        missing = (hi - lo) - len(have)
        self.backfilled_rows += len(have)
        self.backfill_missing += max(0, missing)
        self._marker(BackfillDone(symbol=sym, from_trade_id=lo, to_trade_id=hi - 1,
                                  rows=len(have),
                                  error="" if missing <= 0 else f"{missing} trade(s) not returned"),
                     0)

    # ------------------------------------------------------------------ status

    def status(self, now: float) -> dict[str, Any]:
        """The healing fields of the worker status."""
        wall = time.time()
        quarantine = [{"key": key, "until": wall + max(0.0, until - now),
                       "reason": self._quarantine_reasons.get(key, "")}
                      for key, until in sorted((f"{k[1]}:{k[2]}", u)
                                               for k, u in self.healer.quarantined().items())]
        return {
            "quarantine": quarantine,
            "quarantined": [f"{k[1]}:{k[2]}" for k in self.healer.quarantined()],
            "resyncs": self.resyncs, "heal_pending": self.healer.pending(),
            "rest_queue": self._rest_queue.qsize(),
            "resnapshot_budget_use": self.healer.budget_utilisation(now),
            "backfilled_rows": self.backfilled_rows, "backfill_missing": self.backfill_missing,
            "rest_snapshots": self.rest_snapshots,
        }
