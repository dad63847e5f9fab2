"""Futures REST of the simulated exchange: ``/derivatives/api/v3`` public market data.

Endpoints (``kraken-protocol.md`` §8.2; Kraken's Futures OpenAPI; ``docs/kraken-rest.md``):

* ``instruments`` (``contractType`` filter, repeatable): the universe's instrument objects,
  byte-for-byte as recorded, or the generated ones (which carry every field of the real list);
* ``instruments/status`` and ``instruments/{symbol}/status``: no price dislocation or extreme
  volatility is simulated, so every instrument reports none;
* ``tickers`` (``symbol`` / ``contractType`` filters, repeatable) and ``tickers/{symbol}``;
* ``orderbook?symbol=``: the full non-cumulative book;
* ``history?symbol=&lastTime=``: the 100 most recent trades before ``lastTime``, newest first.

Success: ``{"result": "success", ..., "serverTime": "2025-11-17T00:34:37.524Z"}``; failure:
``{"result": "error", "serverTime": ..., "error": "<code>"}`` with Kraken's codes
(``invalidArgument``, ``notFound``, ``apiLimitExceeded``, ``Unavailable``). Symbols are
case-insensitive. Numbers are JSON numbers in shortest decimal form (``61008``, ``61011.5``),
as in Kraken's raw answers.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import msgspec
from aiohttp import web

from recorder.sim.rest_io import DataUnavailable, json_response, rest_faults
from recorder.sim.server import SIM_KEY
from recorder.sim.universe import encode_wire

if TYPE_CHECKING:
    from recorder.sim.server import SimServer

__all__ = ["add_routes", "futures_number", "iso_ms", "iso_us"]

_TEXT_FIELDS: Final = frozenset({"symbol", "tag", "pair"})
#: trades per ``history`` answer (Kraken: "the most recent 100 trades")
HISTORY_COUNT: Final = 100


def futures_number(token: Any) -> Any:
    """A decimal text as a raw JSON number in shortest form (``"61008.0"`` -> ``61008``);
    exponent forms (``"1.5e-05"``) are kept; anything else is returned unchanged."""
    if not isinstance(token, str) or not token or not (token[0].isdigit() or token[0] == "-"):
        return token
    if "." in token and "e" not in token and "E" not in token:
        token = token.rstrip("0").rstrip(".")
    return msgspec.Raw(token.encode())


def iso_ms(ns: int) -> str:
    """``2016-02-26T12:09:38.830Z`` (REST dates, ``serverTime``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns // 10**6 % 1000:03d}Z"


def iso_us(ns: int) -> str:
    """``2025-11-17T00:31:01.835715Z`` (a ticker's ``lastTime``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns // 1000 % 10**6:06d}Z"


def _ticker(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key == "lastTime_ns":
            if value is not None:
                out["lastTime"] = iso_us(value)
        elif value is None:
            continue
        else:
            out[key] = value if key in _TEXT_FIELDS else futures_number(value)
    return out


def _parse_iso(text: str) -> int | None:
    """Epoch ns of an ISO 8601 UTC time (``2019-02-14T09:25:33.920Z``), None if malformed."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


class _Futures:
    """Answers of one application (the simulator's futures market and universe)."""

    def __init__(self, sim: SimServer) -> None:
        self.sim = sim

    def server_time(self) -> str:
        return iso_ms(self.sim.clock_ns())

    def success(self, **fields: Any) -> web.Response:
        return json_response({"result": "success", **fields, "serverTime": self.server_time()})

    def error(self, code: str, status: int = 200) -> web.Response:
        return json_response({"result": "error", "serverTime": self.server_time(), "error": code},
                             status=status)

    def product(self, symbol: str | None) -> str | None:
        """The product id of a symbol (case-insensitive), None if unknown."""
        if not symbol:
            return None
        upper = symbol.upper()
        return upper if upper in self.sim.products else None

    # -- endpoints

    def instruments(self, request: web.Request) -> web.Response:
        types = set(request.query.getall("contractType", []))
        chosen = [f for f in self.sim.universe.futures if not types or f.wire.get("type") in types]
        body = ('{"result":"success","instruments":[' + ",".join(encode_wire(f.wire) for f in chosen)
                + '],"serverTime":"' + self.server_time() + '"}')
        return web.Response(text=body, content_type="application/json")

    @staticmethod
    def _status(product_id: str) -> dict[str, Any]:
        return {"tradeable": product_id, "experiencingDislocation": False,
                "priceDislocationDirection": None, "experiencingExtremeVolatility": False,
                "extremeVolatilityInitialMarginMultiplier": 1}

    def instruments_status(self, request: web.Request) -> web.Response:
        return self.success(instrumentStatus=[self._status(p) for p in self.sim.products])

    def instrument_status(self, request: web.Request) -> web.Response:
        product = self.product(request.match_info["symbol"])
        if product is None:
            return self.error("notFound", status=404)
        return self.success(**self._status(product))

    def tickers(self, request: web.Request) -> web.Response:
        assert self.sim.futures is not None
        symbols = {s.upper() for s in request.query.getall("symbol", [])}
        types = set(request.query.getall("contractType", []))
        wanted_types = {p.product_id for p in self.sim.universe.futures
                        if not types or p.wire.get("type") in types}
        rows = [_ticker(t) for t in self.sim.futures.tickers()
                if (not symbols or t["symbol"] in symbols) and t["symbol"] in wanted_types]
        return self.success(tickers=rows)

    def ticker(self, request: web.Request) -> web.Response:
        assert self.sim.futures is not None
        product = self.product(request.match_info["symbol"])
        if product is None:
            return self.error("notFound", status=404)
        row = next(t for t in self.sim.futures.tickers() if t["symbol"] == product)
        return self.success(ticker=_ticker(row))

    def orderbook(self, request: web.Request) -> web.Response:
        assert self.sim.futures is not None
        product = self.product(request.query.get("symbol"))
        if product is None:
            return self.error("invalidArgument")
        bids, asks = self.sim.futures.orderbook(product)
        book = {"bids": [[futures_number(p), futures_number(q)] for p, q in bids],
                "asks": [[futures_number(p), futures_number(q)] for p, q in asks]}
        return self.success(orderBook=book)

    def history(self, request: web.Request) -> web.Response:
        assert self.sim.futures is not None
        product = self.product(request.query.get("symbol"))
        last_time = request.query.get("lastTime")
        before = None if last_time is None else _parse_iso(last_time)
        if product is None or (last_time is not None and before is None):
            return self.error("invalidArgument")
        rows = [{"time": iso_ms(t), "trade_id": trade_id, "price": futures_number(price),
                 "size": futures_number(qty), "side": side, "type": kind, "uid": uid}
                for t, trade_id, price, qty, side, kind, uid
                in self.sim.futures.history(product, before, HISTORY_COUNT)]
        return self.success(history=rows)


_FUTURES_KEY: web.AppKey[_Futures] = web.AppKey("sim_futures_rest")
_ROUTES: Final = (
    ("/derivatives/api/v3/instruments", "instruments"),
    ("/derivatives/api/v3/instruments/status", "instruments_status"),
    ("/derivatives/api/v3/instruments/{symbol}/status", "instrument_status"),
    ("/derivatives/api/v3/tickers", "tickers"),
    ("/derivatives/api/v3/tickers/{symbol}", "ticker"),
    ("/derivatives/api/v3/orderbook", "orderbook"),
    ("/derivatives/api/v3/history", "history"),
)


def _handler(method: str) -> Any:
    async def handle(request: web.Request) -> web.Response:
        futures = request.app[_FUTURES_KEY]
        sim = futures.sim
        if sim.futures is None:
            return futures.error("Unavailable")
        if await rest_faults(sim, request.path, private=False):
            return futures.error("apiLimitExceeded")
        try:
            answer: web.Response = getattr(futures, method)(request)
        except DataUnavailable:
            return futures.error("Unavailable")
        return answer

    return handle


async def _not_found(request: web.Request) -> web.Response:
    return request.app[_FUTURES_KEY].error("notFound", status=404)


def add_routes(app: web.Application) -> None:
    app[_FUTURES_KEY] = _Futures(app[SIM_KEY])
    for path, method in _ROUTES:
        app.router.add_get(path, _handler(method))
    app.router.add_get("/derivatives/api/v3/{tail:.*}", _not_found)
