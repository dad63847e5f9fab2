"""Futures WS v1 endpoint (``/ws/v1``), Kraken Futures semantics (``kraken-protocol.md`` §8.1).

On connect: ``{"event":"info","version":1}``. ``{"event":"subscribe","feed":F,"product_ids":[...]}``
answers one ``subscribed`` per product (upper-cased), then the product's snapshot frames.
Invalid products answer ``{"event":"error","message":"Invalid product id"}``, unknown feeds
``Invalid feed``, undecodable requests ``Json Error``. The ``heartbeat`` feed is an explicit
subscription producing ``{"feed":"heartbeat","time":<ms>}`` every ``futures_heartbeat_s``.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from aiohttp import web

from recorder.sim.server import SIM_KEY

from recorder.sim.spot_ws import Connection, serve_connection

__all__ = ["FuturesConnection", "futures_handler"]

_DEC: Final = msgspec.json.Decoder()
_ENC: Final = msgspec.json.Encoder()
FEEDS: Final = frozenset({"book", "trade", "ticker", "ticker_lite"})


class FuturesConnection(Connection):
    endpoint = "futures"
    heartbeat_when_silent = False

    @property
    def subs_registry(self) -> dict[tuple, set[Any]]:
        return self.sim.futures_subs

    @property
    def heartbeat_s(self) -> float:
        return self.sim.config.futures_heartbeat_s

    def market(self) -> Any:
        return self.sim.futures

    def heartbeat_frame(self) -> str | None:
        if ("heartbeat", None) not in self.subs:
            return None
        return '{"feed":"heartbeat","time":%d}' % (self.sim.clock_ns() // 1_000_000)

    def greeting(self) -> None:
        self._send({"event": "info", "version": 1})

    def _send(self, message: dict[str, Any]) -> None:
        self._put(_ENC.encode(message).decode())

    def send_control(self, message: dict[str, Any]) -> None:
        self._send(message)

    async def on_text(self, text: str, time_in: int) -> None:
        try:
            request = _DEC.decode(text)
        except msgspec.DecodeError:
            self._send({"event": "error", "message": "Json Error"})
            return
        if not isinstance(request, dict):
            self._send({"event": "error", "message": "Json Error"})
            return
        if self.rate_exceeded():
            self.sim.record("msg_rate", conn=self.id, endpoint=self.endpoint)
            self._send({"event": "alert", "message": "Exceeded msg rate"})
            return
        event = request.get("event")
        feed = request.get("feed")
        if event not in ("subscribe", "unsubscribe"):
            self._send({"event": "error", "message": "Invalid event"})
            return
        if feed == "heartbeat":
            if event == "subscribe":
                self.subs[("heartbeat", None)] = ("heartbeat",)
                self._send({"event": "subscribed", "feed": "heartbeat"})
            else:
                self.subs.pop(("heartbeat", None), None)
                self._send({"event": "unsubscribed", "feed": "heartbeat"})
            return
        if feed not in FEEDS:
            self._send({"event": "error", "message": "Invalid feed"})
            return
        products = request.get("product_ids")
        if not isinstance(products, list) or not products or not all(isinstance(p, str) for p in products):
            self._send({"event": "error", "message": "Invalid product id"})
            return
        self.handle_products(event, feed, products)

    def handle_products(self, event: str, feed: str, products: list[str]) -> None:
        """Subscribe or unsubscribe each product of a request that :meth:`on_text` validated
        (JSON, rate limit, event, feed, a non-empty list of product ids)."""
        market = self.market()
        for raw in products:
            pid = raw.upper()
            key = (feed, pid)
            if pid not in self.sim.products:
                self._send({"event": "error", "message": "Invalid product id"})
                continue
            if event == "subscribe":
                self._send({"event": "subscribed", "feed": feed, "product_ids": [pid]})
                if (feed, pid) in self.subs:
                    continue
                for frame in market.subscribe(key, snapshot=True):
                    self.send_data(frame, key)
                self.add_sub(feed, pid, key)
            else:
                self.unsubscribe_product(feed, pid)

    def unsubscribe_product(self, feed: str, pid: str) -> None:
        """Drop this connection's ``(feed, pid)`` subscription and answer ``unsubscribed``, or
        ``unsubscribed_failed`` when it has none."""
        if (feed, pid) not in self.subs:
            self._send({"event": "unsubscribed_failed", "feed": feed, "product_ids": [pid]})
            return
        self.drop_sub(feed, pid, self.market())
        self._send({"event": "unsubscribed", "feed": feed, "product_ids": [pid]})

    def release_all(self, market: Any) -> None:
        self.subs.pop(("heartbeat", None), None)
        super().release_all(market)


async def futures_handler(request: web.Request) -> web.StreamResponse:
    if request.app[SIM_KEY].futures is None:
        return web.Response(status=503, text="futures market unavailable")
    return await serve_connection(request, FuturesConnection)
