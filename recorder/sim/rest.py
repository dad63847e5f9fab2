"""Spot and Futures REST of the simulated exchange (``kraken-protocol.md`` §5, §6, §8.2).

Spot answers always use HTTP 200 and Kraken's envelope ``{"error": [...], "result": {...}}``;
failures carry Kraken's error strings (``EQuery:Unknown asset pair``, ``EGeneral:Invalid
arguments``, ``EAPI:Invalid key``, ``EAPI:Invalid signature``, ``EAPI:Invalid nonce``,
``EGeneral:Too many requests`` for the per-IP public throttle, ``EAPI:Rate limit exceeded``
for the per-key private call counter). Futures answers use ``{"result": "success"|"error",
"serverTime": ..., ...}``.

``Trades`` pages by the ns cursor ``last`` (trades strictly newer than ``since``) and never
ends a page inside a group of trades sharing one timestamp (a page may then hold fewer than
``count`` trades, or more when one group alone exceeds it).

Pair lookup accepts the v2 symbol (``BTC/USD``), the v1 ``wsname`` (``XBT/USD``), ``altname``
(``XBTUSD``) and the canonical key (``XXBTZUSD``), case-insensitively. Results are keyed by the
canonical key, except that a pair requested in ``BASE/QUOTE`` form is keyed by that exact
text (what clients such as python-kraken-sdk's order book rely on; live behaviour for the
slash form is UNVERIFIED here).
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import msgspec
from aiohttp import web

from recorder.sim.server import SIM_KEY

from recorder.sim.auth import AuthError, parse_body

if TYPE_CHECKING:
    from recorder.sim.server import SimServer
    from recorder.sim.universe import SpotPair

__all__ = ["add_routes", "pair_key", "v1_name"]

_ENC: Final = msgspec.json.Encoder()

#: v2 asset -> Kraken's legacy REST asset code (the X/Z-prefixed generation).
_LEGACY: Final = {
    "BTC": "XXBT", "ETH": "XETH", "LTC": "XLTC", "XRP": "XXRP", "XLM": "XXLM", "XMR": "XXMR",
    "ETC": "XETC", "ZEC": "XZEC", "REP": "XREP", "MLN": "XMLN", "DOGE": "XXDG",
    "USD": "ZUSD", "EUR": "ZEUR", "GBP": "ZGBP", "JPY": "ZJPY", "CAD": "ZCAD", "AUD": "ZAUD",
}
#: v2 asset -> v1 / altname spelling.
_V1: Final = {"BTC": "XBT", "DOGE": "XDG"}
OHLC_INTERVALS: Final = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)


def v1_name(asset: str) -> str:
    return _V1.get(asset, asset)


def pair_key(pair: SpotPair) -> str:
    """Kraken's canonical REST key: ``XXBTZUSD`` for legacy pairs, else the altname."""
    if pair.base in _LEGACY and pair.quote in _LEGACY and pair.base not in ("USD", "EUR", "GBP", "JPY", "CAD", "AUD"):
        return _LEGACY[pair.base] + _LEGACY[pair.quote]
    return v1_name(pair.base) + v1_name(pair.quote)


def _plain(token: str | int) -> str:
    """Decimal text without exponent and without trailing zeros (REST ``ordermin`` style)."""
    value = Decimal(str(token))
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def asset_pair_info(pair: SpotPair, status: str) -> dict[str, Any]:
    base, quote = _LEGACY.get(pair.base, pair.base), _LEGACY.get(pair.quote, pair.quote)
    return {
        "altname": v1_name(pair.base) + v1_name(pair.quote),
        "wsname": f"{v1_name(pair.base)}/{v1_name(pair.quote)}",
        "aclass_base": "currency",
        "base": base,
        "aclass_quote": "currency",
        "quote": quote,
        "lot": "unit",
        "cost_decimals": pair.cost_precision,
        "pair_decimals": pair.price_precision,
        "lot_decimals": pair.qty_precision,
        "lot_multiplier": 1,
        "leverage_buy": [],
        "leverage_sell": [],
        "fees": [],
        "fees_maker": [],
        "fee_volume_currency": "ZUSD",
        "margin_call": 80,
        "margin_stop": 40,
        "ordermin": _plain(pair.qty_min),
        "costmin": _plain(pair.cost_min),
        "tick_size": _plain(pair.price_increment),
        "status": status,
    }


def _json(body: Any) -> web.Response:
    return web.Response(body=_ENC.encode(body), content_type="application/json")


def _ok(result: Any) -> web.Response:
    return _json({"error": [], "result": result})


def _err(*errors: str) -> web.Response:
    return _json({"error": list(errors)})


class _Rest:
    """Request context: throttles, faults, pair resolution. One per application."""

    def __init__(self, sim: SimServer) -> None:
        self.sim = sim
        self._buckets: dict[str, tuple[float, float]] = {}
        self._private: dict[str, tuple[float, float]] = {}

    def pair_index(self) -> dict[str, str]:
        index: dict[str, str] = {}
        for symbol, pair in self.sim.pairs.items():
            if not self.sim.is_listed(symbol):
                continue
            for alias in (symbol, f"{v1_name(pair.base)}/{v1_name(pair.quote)}",
                          v1_name(pair.base) + v1_name(pair.quote), pair_key(pair)):
                index.setdefault(alias.upper(), symbol)
        return index

    def resolve(self, names: str) -> list[tuple[str, str]] | None:
        """``[(result key, symbol)]`` for a comma list, or None if any name is unknown."""
        index = self.pair_index()
        out = []
        for name in filter(None, (n.strip() for n in names.split(","))):
            symbol = index.get(name.upper())
            if symbol is None:
                return None
            key = name if "/" in name else pair_key(self.sim.pairs[symbol])
            out.append((key, symbol))
        return out or None

    def public_throttled(self, peer: str) -> bool:
        cfg = self.sim.config
        now = time.monotonic()
        tokens, at = self._buckets.get(peer, (float(cfg.rest_burst), now))
        tokens = min(float(cfg.rest_burst), tokens + (now - at) * cfg.rest_refill_per_s)
        if tokens < 1.0:
            self._buckets[peer] = (tokens, now)
            return True
        self._buckets[peer] = (tokens - 1.0, now)
        return False

    def private_throttled(self, key: str) -> bool:
        cfg = self.sim.config
        now = time.monotonic()
        counter, at = self._private.get(key, (0.0, now))
        counter = max(0.0, counter - (now - at) * cfg.private_decay_per_s)
        if counter + 1 > cfg.private_max:
            self._private[key] = (counter, now)
            return True
        self._private[key] = (counter + 1, now)
        return False


async def _params(request: web.Request) -> tuple[dict[str, str], bytes]:
    params = {k: v for k, v in request.query.items()}
    body = b""
    if request.method == "POST":
        body = await request.read()
        params.update(parse_body(body, request.content_type))
    return params, body


async def _faults(sim: SimServer, path: str, private: bool) -> str | None:
    if not sim.faults.active:
        return None
    delay, error = sim.faults.rest(path=path, private=private)
    if delay:
        await asyncio.sleep(delay)
    if error is not None:
        sim.faults.rest_answered(path=path, error=error)
    return error


def _int(params: dict[str, str], name: str, default: int, lo: int, hi: int) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if lo <= value <= hi else None


_REST_KEY: web.AppKey[_Rest] = web.AppKey("sim_rest")


def _rest(request: web.Request) -> _Rest:
    return request.app[_REST_KEY]


# --- public spot ------------------------------------------------------------------------------


async def public(request: web.Request) -> web.Response:
    ctx = _rest(request)
    sim = ctx.sim
    name = request.match_info["name"]
    error = await _faults(sim, request.path, private=False)
    if error:
        return _err(error)
    if ctx.public_throttled(request.remote or "?"):
        sim.record("rest_throttle", path=request.path, peer=request.remote)
        return _err("EGeneral:Too many requests")
    params, _ = await _params(request)
    handler = _PUBLIC.get(name)
    if handler is None:
        return _err("EGeneral:Unknown method")
    return handler(ctx, params)


def _epoch_seconds(t_ns: int) -> msgspec.Raw:
    """Epoch seconds as a JSON number with the full ns digits (Kraken: ``1762795433.9717445``)."""
    seconds, frac = divmod(t_ns, 1_000_000_000)
    digits = f"{frac:09d}".rstrip("0") or "0"
    return msgspec.Raw(f"{seconds}.{digits}".encode())


def _time(ctx: _Rest, params: dict[str, str]) -> web.Response:
    now = ctx.sim.clock_ns() // 1_000_000_000
    return _ok({"unixtime": now,
                "rfc1123": time.strftime("%a, %d %b %y %H:%M:%S +0000", time.gmtime(now))})


def _system_status(ctx: _Rest, params: dict[str, str]) -> web.Response:
    now = ctx.sim.clock_ns() // 1_000_000_000
    return _ok({"status": "online", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})


def _asset_pairs(ctx: _Rest, params: dict[str, str]) -> web.Response:
    sim = ctx.sim
    if params.get("pair"):
        resolved = ctx.resolve(params["pair"])
        if resolved is None:
            return _err("EQuery:Unknown asset pair")
    else:
        resolved = [(pair_key(p), s) for s, p in sim.pairs.items() if sim.is_listed(s)]
    return _ok({key: asset_pair_info(sim.pairs[s], sim.status[s]) for key, s in resolved})


def _one_pair(ctx: _Rest, params: dict[str, str]) -> tuple[str, str] | web.Response:
    raw = params.get("pair")
    if not raw:
        return _err("EGeneral:Invalid arguments")
    resolved = ctx.resolve(raw)
    if resolved is None or len(resolved) != 1:
        return _err("EQuery:Unknown asset pair")
    return resolved[0]


def _depth(ctx: _Rest, params: dict[str, str]) -> web.Response:
    found = _one_pair(ctx, params)
    if isinstance(found, web.Response):
        return found
    key, symbol = found
    count = _int(params, "count", 100, 1, 500)
    if count is None:
        return _err("EGeneral:Invalid arguments")
    bids, asks = ctx.sim.spot.depth(symbol, count)
    return _ok({key: {"asks": [list(level) for level in asks], "bids": [list(level) for level in bids]}})


def _trades(ctx: _Rest, params: dict[str, str]) -> web.Response:
    found = _one_pair(ctx, params)
    if isinstance(found, web.Response):
        return found
    key, symbol = found
    count = _int(params, "count", 1000, 1, 1000)
    since_raw = params.get("since", "")
    if count is None or (since_raw and not since_raw.isdigit()):
        return _err("EGeneral:Invalid arguments")
    since: int | None = int(since_raw) if since_raw else None
    if since is not None and 0 < since < 10**12:  # seconds (Kraken accepts both); not ns
        since *= 1_000_000_000
    if since is None:
        trades = ctx.sim.spot.trades_since(symbol, None, count)
    else:
        # Several trades of one taker order share a timestamp; ``last`` is a timestamp cursor,
        # so a page never ends inside such a group (no gaps, no duplicates when paging).
        after = ctx.sim.spot.trades_since(symbol, since, 1000)
        trades = after[:count]
        if len(after) > count and after[count].t_ns == trades[-1].t_ns:
            cut = after[count].t_ns
            trimmed = [t for t in trades if t.t_ns != cut]
            trades = trimmed or [t for t in after if t.t_ns == cut]
    rows = [[t.price, t.qty, _epoch_seconds(t.t_ns), t.side, t.ord_type, "", t.trade_id]
            for t in trades]
    last = trades[-1].t_ns if trades else (since or 0)
    return _ok({key: rows, "last": str(last)})


def _ohlc(ctx: _Rest, params: dict[str, str]) -> web.Response:
    found = _one_pair(ctx, params)
    if isinstance(found, web.Response):
        return found
    key, symbol = found
    interval = _int(params, "interval", 1, 1, 21600)
    since_raw = params.get("since", "") or "0"
    if interval is None or interval not in OHLC_INTERVALS or not since_raw.isdigit():
        return _err("EGeneral:Invalid arguments")
    bars = ctx.sim.spot.ohlc(symbol, interval)
    since = int(since_raw)
    rows = [[b.begin_s, b.open, b.high, b.low, b.close, b.vwap, b.volume, b.trades]
            for b in bars if b.begin_s > since][-720:]
    # ``last``: the newest committed bar (the very last one is still open).
    last = rows[-2][0] if len(rows) >= 2 else since
    return _ok({key: rows, "last": last})


_PUBLIC: Final = {
    "Time": _time, "SystemStatus": _system_status, "AssetPairs": _asset_pairs,
    "Depth": _depth, "Trades": _trades, "OHLC": _ohlc,
}


# --- private spot -----------------------------------------------------------------------------


async def private(request: web.Request) -> web.Response:
    ctx = _rest(request)
    sim = ctx.sim
    name = request.match_info["name"]
    if request.method != "POST":
        return _err("EGeneral:Invalid arguments")
    params, body = await _params(request)
    try:
        key = sim.keys.verify(api_key=request.headers.get("API-Key"),
                              api_sign=request.headers.get("API-Sign"),
                              uri_path=request.path, body=body, params=params)
    except AuthError as exc:
        sim.record("auth_failed", path=request.path, error=str(exc))
        return _err(str(exc))
    error = await _faults(sim, request.path, private=True)
    if error:
        return _err(error)
    if ctx.private_throttled(key):
        sim.record("rest_throttle", path=request.path, key=key)
        return _err("EAPI:Rate limit exceeded")
    if name == "GetWebSocketsToken":
        return _ok({"token": sim.tokens.issue(), "expires": int(sim.tokens.ttl_s)})
    if name == "Level3":
        found = _one_pair(ctx, params)
        if isinstance(found, web.Response):
            return found
        _, symbol = found
        depth = _int(params, "depth", 100, 1, 1000)
        if depth is None:
            return _err("EGeneral:Invalid arguments")
        bids, asks = sim.spot.l3_orders(symbol, depth)

        def orders(side: list[tuple[str, str, str, int]]) -> list[dict[str, Any]]:
            return [{"price": p, "qty": q, "order_id": oid, "timestamp": ts} for p, q, oid, ts in side]

        return _ok({"pair": symbol, "bids": orders(bids), "asks": orders(asks)})
    return _err("EGeneral:Unknown method")


# --- futures ----------------------------------------------------------------------------------


_TEXT_FIELDS: Final = frozenset({"symbol", "tag", "pair"})


def _num(token: Any) -> Any:
    """A decimal text as a raw JSON number (Futures REST sends numbers); others unchanged."""
    if isinstance(token, str) and token and (token[0].isdigit() or token[0] == "-"):
        return msgspec.Raw(token.encode())
    return token


def _iso_ms(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _futures_ticker(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key == "lastTime_ms":
            if value is not None:
                out["lastTime"] = _iso_ms(value)
        elif value is None:
            continue
        else:
            out[key] = value if key in _TEXT_FIELDS else _num(value)
    return out


def _server_time(sim: SimServer) -> str:
    ns = sim.clock_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns // 10**6 % 1000:03d}Z"


async def futures(request: web.Request) -> web.Response:
    ctx = _rest(request)
    sim = ctx.sim
    name = request.match_info["name"]
    if sim.futures is None:
        return _json({"result": "error", "serverTime": _server_time(sim), "error": "Unavailable"})
    error = await _faults(sim, request.path, private=False)
    if error:
        return _json({"result": "error", "serverTime": _server_time(sim), "error": "apiLimitExceeded"})
    if name == "instruments":
        from recorder.sim.universe import encode_wire

        body = ('{"result":"success","instruments":['
                + ",".join(encode_wire(f.wire) for f in sim.universe.futures)
                + '],"serverTime":"' + _server_time(sim) + '"}')
        return web.Response(text=body, content_type="application/json")
    if name == "orderbook":
        symbol = (request.query.get("symbol") or "").upper()
        if symbol not in sim.products:
            return _json({"result": "error", "serverTime": _server_time(sim), "error": "invalidArgument"})
        bids, asks = sim.futures.orderbook(symbol)
        book = {"bids": [[_num(p), _num(q)] for p, q in bids], "asks": [[_num(p), _num(q)] for p, q in asks]}
        return _json({"result": "success", "orderBook": book, "serverTime": _server_time(sim)})
    if name == "tickers":
        return _json({"result": "success", "tickers": [_futures_ticker(t) for t in sim.futures.tickers()],
                      "serverTime": _server_time(sim)})
    return _json({"result": "error", "serverTime": _server_time(sim), "error": "notFound"})


def add_routes(app: web.Application) -> None:
    app[_REST_KEY] = _Rest(app[SIM_KEY])
    app.router.add_route("GET", "/0/public/{name}", public)
    app.router.add_route("POST", "/0/public/{name}", public)
    app.router.add_route("*", "/0/private/{name}", private)
    app.router.add_get("/derivatives/api/v3/{name}", futures)
