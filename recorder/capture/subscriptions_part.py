"""The subscriptions part of a worker: what it subscribes, Kraken's answers, listings, budget.

:class:`SubscriptionManager` keeps each connection's :class:`SubscriptionTable` in line with
Kraken's answers and with the venue's listing:

* acknowledgements and refusals (:class:`SubscriptionAcked`, :class:`SubscriptionRejected`):
  the table's state, retries with jittered backoff, ``SubscribeFailed`` when Kraken named no
  symbol, a drained request budget after "Exceeded msg rate", a token refresh for level3;
* the ``instrument`` snapshot: books wait for the first one (bounded,
  :meth:`SubscriptionManager.wait_instruments`), every one reconciles the tables with the
  listing (:meth:`SubscriptionManager.instruments_seen`), and an :class:`InstrumentChanged`
  adds runtime listings (on this worker's share of the channel owners), drops delistings and
  asks for fresh snapshots of books whose precision or status changed;
* the level3 subscription budget (5/25/100 per symbol by depth against 200/s or 500/s at the
  configured tier, shared by the workers).

Pair statuses come with the pipeline's signals (:class:`~recorder.pipeline.signals.InstrumentSnapshot`,
:class:`InstrumentChanged`): capture never decodes an instrument frame itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from typing import Any

from recorder.capture.config import CaptureConfig, select_symbols
from recorder.capture.connection import INSTRUMENT, FeedConnection
from recorder.capture.connections_part import ConnectionPool, Spawn
from recorder.capture.healing_part import HealingPart, MarkerSink
from recorder.capture.limits import L3_BUDGET_PER_S, TokenBucket
from recorder.capture.shards import ConnPlan, channel_owner, host_symbols, worker_for
from recorder.pipeline.markers import SubscribeFailed
from recorder.pipeline.signals import InstrumentChanged, SubscriptionAcked, SubscriptionRejected

__all__ = ["SubscriptionManager"]

log = logging.getLogger("recorder.capture.subscriptions")


class SubscriptionManager:
    """Subscription tables, listings and the level3 budget (see module docstring).

    ``planned``: every spot symbol the supervisor planned (over all workers);
    ``channel_owners``: spot channel -> the workers holding a connection of it."""

    def __init__(self, cfg: CaptureConfig, *, index: int, workers: int,
                 planned: frozenset[str], channel_owners: dict[str, tuple[int, ...]],
                 pool: ConnectionPool, healing: HealingPart, marker: MarkerSink,
                 spawn: Spawn) -> None:
        self._cfg = cfg
        self._index = index
        self._workers = workers
        self._planned = planned
        self._owners = channel_owners
        self._pool = pool
        self._healing = healing
        self._marker = marker
        self._spawn = spawn
        rate = L3_BUDGET_PER_S[cfg.channels.l3_tier] / max(1, workers)
        self.l3_budget = TokenBucket(rate, rate, time.monotonic())
        self._instruments = asyncio.Event()
        #: symbols seen delisted by this process: listing one again is a relisting, which
        #: goes to the channel owners even if the supervisor's plan held it
        self._delisted_seen: set[str] = set()
        self._rng = random.Random(os.getpid() ^ time.time_ns())

    # ------------------------------------------------------------------ level3 budget

    async def spend_l3(self, cost: float) -> None:
        """Wait until the level3 budget has ``cost`` and take it."""
        while not self.l3_budget.take(cost, time.monotonic()):
            await asyncio.sleep(self.l3_budget.wait(cost, time.monotonic()))

    # ------------------------------------------------------------------ Kraken's answers

    def acked(self, conn: FeedConnection, sig: SubscriptionAcked) -> None:
        conn.table.acked(sig.symbol or INSTRUMENT, time.monotonic())
        conn.backoff.reset()

    def rejected(self, conn: FeedConnection, sig: SubscriptionRejected) -> None:
        now = time.monotonic()
        err = sig.error
        syms = [sig.symbol] if sig.symbol else conn.table.in_state("pending")
        if not sig.symbol:
            # Kraken named no symbol: the pipeline cannot attribute the refusal, capture can
            # (the pending ones); with a symbol the pipeline's own gaps row already says it.
            self._marker(SubscribeFailed(conn_id=conn.conn_id, channel=sig.channel or conn.channel,
                                         symbols=syms, error=err, depth=conn.plan.depth,
                                         interval=conn.plan.interval), conn.conn_id)
        for sym in syms:
            if err == "Already subscribed":
                conn.table.acked(sym, now)
            elif "not supported" in err or "Invalid product" in err:
                conn.table.rejected(sym, err, now)  # not listed: stays failed until relisted
            else:
                conn.table.rejected(sym, err, now)
                self._spawn(self._retry_subscribe(conn, sym), f"retry subscribe {sym}")
        if "Exceeded msg rate" in err:
            conn.requests.drain(now)
            if conn.stream == "l3":
                self.l3_budget.drain(now)
        if "token" in err.lower():
            conn.need_token_refresh()

    async def _retry_subscribe(self, conn: FeedConnection, symbol: str) -> None:
        info = conn.table.subs.get(symbol)
        attempts = info.attempts if info else 1
        await asyncio.sleep(min(30.0, 0.5 * 2 ** min(attempts, 6)) * (0.5 + self._rng.random() / 2))
        info = conn.table.subs.get(symbol)
        if info is not None and info.state == "failed" and conn.connected:
            info.state = "idle"
            conn.wake()

    # ------------------------------------------------------------------ the listing

    def instruments_seen(self, statuses: dict[str, str] | None = None) -> None:
        """An instrument snapshot has been journaled (and derived): the subscription tables are
        brought in line with its pair ``statuses`` (:meth:`reconcile_listing`; from the
        pipeline's :class:`~recorder.pipeline.signals.InstrumentSnapshot` signal), then books
        may subscribe."""
        if statuses:
            self.reconcile_listing(statuses)
        self._instruments.set()

    async def wait_instruments(self) -> None:
        """Until the instrument snapshot is in the archive (bounded by ``ack_timeout_s``:
        without it the pipeline infers precisions from the book snapshots)."""
        if self._instruments.is_set():
            return
        timeout = self._cfg.connection.ack_timeout_s
        try:
            await asyncio.wait_for(self._instruments.wait(), timeout)
        except asyncio.TimeoutError:
            if not self._instruments.is_set():
                log.warning("no instrument snapshot after %.0fs: subscribing without it "
                            "(precisions inferred from snapshots)", timeout)
                self._instruments.set()

    def reconcile_listing(self, statuses: dict[str, str]) -> None:
        """Make the spot subscription tables agree with one instrument snapshot.

        The plan a worker starts from was drawn when the supervisor started. A worker restarted
        later (after a crash or kill -9) restores its pipeline state, which already saw any
        listing or delisting since, so no :class:`InstrumentChanged` comes for them: without
        this, a pair delisted meanwhile would be subscribed and refused forever (a dead
        subscription), and a pair listed meanwhile would never be recorded. A symbol the
        snapshot no longer lists (or lists as ``delisted``) is dropped; an ``online`` symbol
        outside the supervisor's plan that falls to this worker, as a runtime listing would,
        is added where no connection holds it yet.
        """
        if not statuses:
            return
        for c in self._pool:
            if c.stream == "futures" or c.channel == "instrument":
                continue
            gone = [s for s in c.table.subs if statuses.get(s, "delisted") == "delisted"]
            for sym in gone:
                self._delisted_seen.add(sym)
                info = c.table.subs[sym]
                log.info("%s is not listed any more: dropping it from %s", sym, c.channel)
                self._healing.forget(sym)
                c.table.remove(sym)
                if info.state in ("pending", "active") and c.connected:
                    self._spawn(c.unsubscribe([sym], "delisted"), f"unsubscribe {sym}")
        for sym in sorted(statuses):
            if statuses[sym] == "online" and sym not in self._planned and self._mine(sym):
                self._add_to_channels(sym)  # no-op where a connection holds it already

    def instrument_changed(self, sig: InstrumentChanged) -> None:
        """Listings, delistings and status/precision changes signalled by the pipeline (with
        the pair statuses the instrument frame named)."""
        status = sig.statuses
        gone = set(sig.delisted) | {s for s in sig.status_changed if status.get(s) == "delisted"}
        for sym in sig.listed:
            if status.get(sym, "online") == "online" and sym not in gone and self._mine(sym):
                self._add_to_channels(sym)  # no-op for symbols already subscribed
        for sym in sorted(gone):
            self._healing.forget(sym)
            self._delisted_seen.add(sym)
            for c in self._pool:
                if c.has(sym) and c.stream != "futures":
                    log.info("delisted %s: unsubscribing %s", sym, c.channel)
                    c.table.remove(sym)
                    self._spawn(c.unsubscribe([sym], "delisted"), f"unsubscribe {sym}")
        for sym in sig.status_changed:
            if sym in gone:
                continue
            if status.get(sym) == "online" and self._mine(sym):
                self._add_to_channels(sym)
            for c in self._pool:
                if c.has(sym) and c.channel in ("book", "level3"):
                    # new precision (or status): a fresh snapshot rebuilds the book with it
                    self._healing.rebuild(c, sym, "instrument_changed")

    def _mine(self, symbol: str) -> bool:
        """This host records ``symbol`` (include/exclude patterns and ``--shard``)."""
        k, n = self._cfg.shard_index
        ch = self._cfg.channels
        return (bool(select_symbols([symbol], ch.include, ch.exclude))
                and bool(host_symbols([symbol], k, n)))

    def _takes(self, channel: str, symbol: str) -> bool:
        """This worker subscribes ``symbol`` on ``channel`` when it is listed at runtime."""
        owners = self._owners.get(channel)
        if not owners:  # a spec without the plan's owners: one owner for every channel
            return worker_for(symbol, self._workers) == self._index
        return channel_owner(symbol, owners) == self._index

    def _add_to_channels(self, sym: str) -> None:
        """Add a new symbol to the least-loaded connection of each spot channel this worker
        takes it on (:meth:`_takes`), or to a new connection where all are full."""
        if sym in self._planned and sym not in self._delisted_seen:
            # the first instrument snapshot "lists" every pair: a planned one is its plan
            # owner's (on whichever worker), unless it was delisted since (a relisting)
            return
        cap = self._cfg.connection
        for channel, conns in self._pool.spot_channels().items():
            if not self._takes(channel, sym) or any(c.has(sym) for c in conns):
                continue
            log.info("new listing %s: subscribing %s", sym, channel)
            limit = (cap.l3_symbols_per_connection if channel == "level3"
                     else cap.max_symbols_per_connection)
            room = [c for c in conns if len(c.table.subs) < limit]
            if room:
                c = min(room, key=lambda c: len(c.table.subs))
                c.table.add(sym)
                c.wake()
            else:
                base = conns[0].plan
                self._pool.add(ConnPlan(name=f"{channel}-x{len(conns)}", stream=base.stream,
                                        channel=channel, symbols=(sym,), depth=base.depth,
                                        interval=base.interval))

    # ------------------------------------------------------------------ status

    def status(self, now: float) -> dict[str, Any]:
        """The subscription fields of the worker status."""
        return {"l3_budget_use": self.l3_budget.utilisation(now)}
