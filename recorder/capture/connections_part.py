"""The connections part of a worker: its WebSocket connections, their ids and connect budget.

:class:`ConnectionPool` owns the worker's :class:`~recorder.capture.connection.FeedConnection`
objects (the planned ones, one ``instrument`` connection, and those added for runtime
listings), hands out connection ids that no other process of the archive root used (worker
index and restart number in the high digits), and spends the connect limiter (Kraken: about
150 connects per 10 minutes per IP, shared by the workers). Each connection runs as one task
of the worker's task group (:meth:`ConnectionPool.start`); :meth:`ConnectionPool.close_all`
ends their sessions on shutdown or pause.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from recorder.capture.config import CaptureConfig
from recorder.capture.connection import ConnectionHost, FeedConnection
from recorder.capture.limits import Backoff, ConnectLimiter
from recorder.capture.shards import ConnPlan

__all__ = ["ConnectionPool", "Spawn"]

log = logging.getLogger("recorder.capture.connections")

#: Starts a coroutine as a task of the worker's task group (named for logs and tracebacks);
#: outside the group's life the coroutine is discarded.
Spawn = Callable[[Coroutine[Any, Any, Any], str], None]


class ConnectionPool:
    """A worker's connections (see module docstring)."""

    def __init__(self, cfg: CaptureConfig, *, index: int, restart: int, workers: int,
                 host: ConnectionHost) -> None:
        self._cfg = cfg
        self._host = host
        self._index = index
        conn = cfg.connection
        self.connects = ConnectLimiter(max(1, conn.connects_per_window // max(1, workers)),
                                       conn.connect_window_s)
        self._ids = itertools.count(index * 1_000_000 + restart * 10_000 + 1)
        self._conns: list[FeedConnection] = []
        self._spawn: Spawn | None = None

    # ------------------------------------------------------------------ membership

    def add(self, plan: ConnPlan) -> FeedConnection:
        """A new connection for ``plan`` (started at once when the pool runs already)."""
        venue = self._cfg.venue
        url = {"spot": venue.spot_ws, "l3": venue.l3_ws, "futures": venue.futures_ws}[plan.stream]
        backoff = Backoff(self._cfg.connection.backoff_base_s, self._cfg.connection.backoff_max_s,
                          random.Random(hash(plan.name) ^ os.getpid()))
        c = FeedConnection(plan, self._host, settings=self._cfg.connection, url=url,
                           backoff=backoff)
        self._conns.append(c)
        if self._spawn is not None:
            self._spawn(c.run(), f"connection {plan.name}")
        return c

    def __iter__(self) -> Iterator[FeedConnection]:
        return iter(list(self._conns))

    def __len__(self) -> int:
        return len(self._conns)

    def find(self, stream: str, channel: str, symbol: str) -> FeedConnection | None:
        """The connection of ``stream``/``channel`` that holds ``symbol``, if any."""
        for c in self._conns:
            if c.stream == stream and c.channel == channel and c.has(symbol):
                return c
        return None

    def spot_channels(self) -> dict[str, list[FeedConnection]]:
        """Spot and level3 data connections by channel (``instrument`` excluded)."""
        out: dict[str, list[FeedConnection]] = {}
        for c in self._conns:
            if c.stream in ("spot", "l3") and c.channel != "instrument":
                out.setdefault(c.channel, []).append(c)
        return out

    # ------------------------------------------------------------------ ids and budget

    def new_conn_id(self) -> int:
        return next(self._ids)

    async def connect_slot(self, stopping: asyncio.Event) -> None:
        """Wait for the connect limiter, then count one attempt. Raises
        :class:`asyncio.CancelledError` when ``stopping`` is set meanwhile."""
        while True:
            wait = self.connects.wait(time.monotonic())
            if wait <= 0:
                self.connects.record(time.monotonic())
                return
            log.warning("connect budget exhausted (%d in %.0fs): waiting %.1fs",
                        self.connects.limit, self.connects.window_s, wait)
            try:
                await asyncio.wait_for(stopping.wait(), wait)
            except asyncio.TimeoutError:
                pass
            if stopping.is_set():
                raise asyncio.CancelledError

    # ------------------------------------------------------------------ lifecycle

    def start(self, spawn: Spawn) -> None:
        """Run every connection as a task of the worker's task group; later additions
        (runtime listings) start as they are added."""
        self._spawn = spawn
        for c in self._conns:
            spawn(c.run(), f"connection {c.name}")

    async def close_all(self, reason: str, timeout_s: float = 1.0) -> None:
        """End every connection's session (each journals ``Disconnected`` with ``reason``),
        waiting at most ``timeout_s`` for each close handshake."""
        async def one(c: FeedConnection) -> None:
            try:
                await asyncio.wait_for(c.close(reason), timeout_s)
            except (asyncio.TimeoutError, OSError):
                pass
        await asyncio.gather(*(one(c) for c in self._conns))

    def instrument_refresh(self) -> None:
        """Re-subscribe the ``instrument`` channel (the fresh snapshot goes through the
        pipeline, which signals listings, delistings and precision changes)."""
        if self._spawn is None:
            return
        for c in self._conns:
            if c.channel == "instrument" and c.connected:
                async def refresh(conn: FeedConnection = c) -> None:
                    await conn.send({"method": "unsubscribe", "params": {"channel": "instrument"}})
                    await conn.send({"method": "subscribe", "params": {"channel": "instrument"}})
                self._spawn(refresh(), "instrument refresh")

    # ------------------------------------------------------------------ status

    def rates(self, elapsed_s: float) -> dict[str, dict[str, float]]:
        """Measured messages/s per channel (``futures:<feed>`` for futures) and symbol."""
        elapsed_s = max(1.0, elapsed_s)
        rates: dict[str, dict[str, float]] = {}
        for c in self._conns:
            key = c.channel if c.stream != "futures" else f"futures:{c.channel}"
            table = rates.setdefault(key, {})
            for sym, info in c.table.subs.items():
                table[sym] = round(info.messages / elapsed_s, 3)
        return rates

    def status(self, now: float, dead_after_s: float) -> dict[str, Any]:
        """The connections' fields of the worker status."""
        conns = [{
            "name": c.name, "stream": c.stream, "channel": c.channel, "connected": c.connected,
            "conn_id": c.conn_id, "symbols": len(c.table.subs), "states": c.table.counts(),
            "dead": c.table.dead(now, dead_after_s, c.connected)[:50],
            "messages": c.messages, "bytes": c.bytes, "sessions": c.sessions,
            "last_error": c.last_error, "url": c.url, "retry_at": c.retry_at,
            "attempts": c.backoff.failures,
        } for c in self._conns]
        return {"connections": conns, "connects_used": self.connects.used(now)}
