"""The replay's WebSocket endpoints: Spot WS v2 (``/v2``), level3 (``/l3/v2``), Futures (``/ws/v1``).

The connections are the simulator's (:mod:`recorder.sim.spot_ws`, :mod:`recorder.sim.futures_ws`:
greeting, ping/pong, heartbeats, request-rate limit, level3 token and subscription budget,
pre-framed batched writes with a bound on what waits for a slow reader); only subscribing
differs: a subscription is answered from the archive (:class:`~recorder.replay.market.ReplayMarket`).

* The archive holds the (channel, symbol, depth/interval): Kraken's ack, then the snapshot at
  the replay clock (none when the archive has no valid book there: the recorded snapshot, or a
  rebuilt one, follows when coverage resumes), then the recorded frames.
* It does not: Kraken's error for that request -- ``Currency pair not supported SYMBOL`` (a
  symbol the window does not hold on that channel), ``EGeneral:Invalid arguments:depth`` (a
  depth it was not recorded at), ``EGeneral:Invalid arguments:interval`` (an ohlc interval
  not recorded); futures: ``{"event":"error","message":"Invalid product id"}``.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from recorder.replay.market import Registry, refusal
from recorder.sim.futures_ws import FuturesConnection
from recorder.sim.spot_ws import (
    ERR_ALREADY,
    ERR_CHANNEL,
    ERR_DEPTH,
    ERR_INTERVAL,
    ERR_PAIR,
    L3Connection,
    SpotConnection,
    serve_connection,
)

if TYPE_CHECKING:
    from recorder.replay.server import ReplayServer

__all__ = [
    "ReplayFuturesConnection",
    "ReplayL3Connection",
    "ReplaySpotConnection",
    "futures_handler",
    "l3_handler",
    "spot_handler",
]

_REASONS: Final = {"depth": ERR_DEPTH, "interval": ERR_INTERVAL}


class _Side:
    """One registry of the replay market as the simulator's connections see a market
    (``unsubscribe(key)`` when a connection drops a subscription or closes)."""

    def __init__(self, server: ReplayServer, registry: Registry) -> None:
        self.server = server
        self.registry = registry

    def unsubscribe(self, key: tuple) -> None:
        self.server.replay.unsubscribe(self.registry, key)


class _ReplayMixin:
    """Replay subscription state shared by the three endpoints."""

    sim: Any
    registry: Registry

    def _replay_init(self) -> None:
        size = self.sim.replay_config.socket_buffer
        sock = None if self.transport is None else self.transport.get_extra_info("socket")  # type: ignore[attr-defined]
        if size and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
        #: key -> the subscription asked for snapshots (recorded snapshots go only there)
        self.wants_snapshot: dict[tuple, bool] = {}
        #: key -> the ack's ``result`` of the subscription (repeated on a resync)
        self.acked: dict[tuple, dict[str, Any]] = {}

    def replay_market(self) -> _Side:
        return _Side(self.sim, self.registry)

    def deliver(self, frame: bytes | str, key: tuple, snapshot: bool, resync: bool = False) -> None:
        """One routed frame (from the replay clock's fan-out); ``resync``: coverage resumed
        after a gap, so the subscribe ack goes first (see :class:`~recorder.replay.market.Dispatch`)."""
        if snapshot and not self.wants_snapshot.get(key, True):
            return
        if resync:
            self.resync_ack(key)
        self._put(frame)  # type: ignore[attr-defined]  # (a replay injects no faults)

    def resync_ack(self, key: tuple) -> None:  # pragma: no cover - per protocol
        raise NotImplementedError

    def queued(self) -> int:
        """Frames waiting for the socket (the flow-control signal of the replay clock)."""
        return len(self._pending)  # type: ignore[attr-defined]

    def write_backlog(self) -> int:
        """Bytes the transport holds unsent."""
        transport = self.transport  # type: ignore[attr-defined]
        return 0 if transport is None else int(transport.get_write_buffer_size())

    def _wake_others(self, key: tuple, frames: list[bytes | str], resync: bool) -> None:
        for conn in tuple(self.sim.subs_of(self.registry, key)):
            if conn is not self:
                for frame in frames:
                    conn.deliver(frame, key, False, resync)


class ReplaySpotConnection(_ReplayMixin, SpotConnection):
    """``/v2`` served from the archive."""

    registry: Registry = "spot"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._replay_init()

    def market(self) -> Any:
        return self.replay_market()

    def handle_symbols(self, method: str, channel: str, symbols: list[str], result: dict[str, Any],
                       snapshot: bool, req_id: Any, time_in: int) -> None:
        """Each symbol of a validated request, answered from the archive."""
        server: ReplayServer = self.sim
        for symbol in symbols:
            key = self.key_for(channel, symbol, result)
            echo = {"channel": channel, **result, "symbol": symbol}
            if method == "subscribe":
                if (channel, symbol) in self.subs:
                    self._error(method, req_id, time_in, ERR_ALREADY, symbol)
                    continue
                reason = refusal(server.catalog, "spot", key)
                if reason is not None:
                    self._error(method, req_id, time_in,
                                _REASONS.get(reason) or ERR_PAIR.format(symbol=symbol), symbol)
                    continue
                budget = self.admit(symbol, result)
                if budget is not None:
                    self._error(method, req_id, time_in, budget, symbol)
                    continue
                got = server.subscribe(self.registry, key, snapshot=snapshot)
                echo["snapshot"] = snapshot
                if channel == "ohlc":
                    echo["warnings"] = ["timestamp is deprecated, use interval_begin"]
                self._reply(method, req_id, time_in, result=echo, success=True)
                for frame in got.frames:
                    self._put(frame)
                self._wake_others(key, got.others, got.others_resync)
                self.wants_snapshot[key] = snapshot
                self.acked[key] = echo
                self.add_sub(channel, symbol, key)
            elif self.unsubscribe_symbol(channel, symbol, key, echo, req_id, time_in):
                self.wants_snapshot.pop(key, None)
                self.acked.pop(key, None)

    def resync_ack(self, key: tuple) -> None:
        """Kraken's subscribe ack of this subscription, as after a resubscribe."""
        echo = self.acked.get(key)
        if echo is not None:
            now = self.sim.clock_ns()
            self._reply("subscribe", None, now, result=echo, success=True)

    def _instrument(self, method: str, snapshot: bool, req_id: Any, time_in: int) -> None:
        key = ("instrument",)
        echo: dict[str, Any] = {"channel": "instrument"}
        server: ReplayServer = self.sim
        if method == "subscribe":
            if ("instrument", None) in self.subs:
                self._error(method, req_id, time_in, ERR_ALREADY)
                return
            if refusal(server.catalog, "spot", key) is not None:
                self._error(method, req_id, time_in, ERR_CHANNEL)
                return
            got = server.subscribe(self.registry, key, snapshot=snapshot)
            echo.update(snapshot=snapshot, warnings=["tick_size is deprecated, use price_increment"])
            self._reply(method, req_id, time_in, result=echo, success=True)
            for frame in got.frames:
                self._put(frame)
            self.wants_snapshot[key] = snapshot
            self.add_sub("instrument", None, key)
        else:
            self.unsubscribe_instrument(req_id, time_in)


class ReplayL3Connection(ReplaySpotConnection, L3Connection):
    """``/l3/v2`` served from the archive (token and subscription budget as Kraken's)."""

    endpoint = "l3"
    channels = frozenset({"level3"})
    # channel_params (depths 10/100/1000), authorise (token, 200 symbols) and admit (the
    # per-second cost budget) are L3Connection's (next in the method resolution order).


class ReplayFuturesConnection(_ReplayMixin, FuturesConnection):
    """``/ws/v1`` served from the archive."""

    registry: Registry = "futures"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._replay_init()

    def market(self) -> Any:
        return self.replay_market()

    def resync_ack(self, key: tuple) -> None:
        """Kraken Futures' ``subscribed`` event of this subscription, as after a resubscribe."""
        self._send({"event": "subscribed", "feed": key[0], "product_ids": [key[1]]})

    def handle_products(self, event: str, feed: str, products: list[str]) -> None:
        """Each product of a validated request, answered from the archive."""
        server: ReplayServer = self.sim
        for raw in products:
            pid = raw.upper()
            key = (feed, pid)
            if event == "subscribe":
                if refusal(server.catalog, "futures", key) is not None:
                    self._send({"event": "error", "message": "Invalid product id"})
                    continue
                self._send({"event": "subscribed", "feed": feed, "product_ids": [pid]})
                if (feed, pid) in self.subs:
                    continue
                got = server.subscribe(self.registry, key, snapshot=True)
                for frame in got.frames:
                    self._put(frame)
                self._wake_others(key, got.others, got.others_resync)
                self.add_sub(feed, pid, key)
            else:
                self.unsubscribe_product(feed, pid)


async def spot_handler(request: web.Request) -> web.StreamResponse:
    return await serve_connection(request, ReplaySpotConnection)


async def l3_handler(request: web.Request) -> web.StreamResponse:
    return await serve_connection(request, ReplayL3Connection)


async def futures_handler(request: web.Request) -> web.StreamResponse:
    return await serve_connection(request, ReplayFuturesConnection)
