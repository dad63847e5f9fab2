"""Spot REST of the simulated exchange (``kraken-protocol.md`` §5, §6; ``docs/kraken-rest.md``).

Public market data: ``Time``, ``SystemStatus``, ``Assets``, ``AssetPairs`` (``pair``,
``aclass_base``, ``info``, ``country_code``), ``Ticker``, ``OHLC``, ``Depth``, ``Trades`` and
``Spread``, GET or POST. Private: ``GetWebSocketsToken`` and ``Level3`` (POST, API-Key/API-Sign).
Futures REST lives in :mod:`recorder.sim.futures_rest`.

Answers always use HTTP 200 and Kraken's envelope: ``{"error": [], "result": {...}}`` on
success, ``{"error": ["EQuery:Unknown asset pair"]}`` on failure (no ``result``, as Kraken's).
Error strings: ``EQuery:Unknown asset pair``, ``EQuery:Unknown asset``, ``EGeneral:Invalid
arguments``, ``EGeneral:Unknown method``, ``EAPI:Invalid key``, ``EAPI:Invalid signature``,
``EAPI:Invalid nonce``, ``EGeneral:Too many requests`` for the per-IP public throttle,
``EAPI:Rate limit exceeded`` for the per-key private call counter, ``EService:Unavailable``
when the market cannot answer (``recorder replay``: no valid recorded book at the replay time).

Names and number text follow :mod:`recorder.sim.rest_shapes`. Pair lookup accepts the v2 symbol
(``BTC/USD``) and its concatenation (``BTCUSD``), the REST ``wsname`` (``XBT/USD``), the
``altname`` (``XBTUSD``) and the canonical key (``XXBTZUSD``), case-insensitively. Results are
keyed by the canonical key, except that a pair requested in ``BASE/QUOTE`` form is keyed by
the requested text (python-kraken-sdk's order book reads ``AssetPairs?pair=BTC/USD`` under
``"BTC/USD"`` against the live API).

``Trades`` pages by the ns cursor ``last`` (trades strictly newer than ``since``) and never
ends a page inside a group of trades sharing one timestamp (a page may then hold fewer than
``count`` trades, or more when one group alone exceeds it).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from recorder.protocol.numbers import to_units, units_to_text
from recorder.sim import futures_rest
from recorder.sim.auth import AuthError, parse_body
from recorder.sim.rest_io import DataUnavailable, json_response, rest_faults
from recorder.sim.rest_shapes import (
    ASSET_PAIR_INFO_LEVELS,
    asset_code,
    asset_info,
    asset_pair_info,
    ceil_volume,
    epoch_seconds,
    pad_price,
    pair_key,
    rest_price_decimals,
    rfc1123,
    v1_name,
    whole_lot,
    wsname,
)
from recorder.sim.server import SIM_KEY
from recorder.sim.universe import asset_wire

if TYPE_CHECKING:
    from recorder.sim.market import RestTicker, TickerPeriod
    from recorder.sim.server import SimServer
    from recorder.sim.universe import SpotPair

__all__ = ["add_routes"]

OHLC_INTERVALS: Final = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)
_COUNTRY: Final = re.compile(r"[A-Za-z]{2}")
#: ``aclass_base`` / ``asset_class`` values Kraken documents; the sim lists no tokenized asset.
_ASSET_CLASSES: Final = ("currency", "tokenized_asset")

UNKNOWN_PAIR: Final = "EQuery:Unknown asset pair"
UNKNOWN_ASSET: Final = "EQuery:Unknown asset"
INVALID: Final = "EGeneral:Invalid arguments"
UNAVAILABLE: Final = "EService:Unavailable"


def _ok(result: Any) -> web.Response:
    return json_response({"error": [], "result": result})


def _err(*errors: str) -> web.Response:
    return json_response({"error": list(errors)})


class _Rest:
    """Request context: throttles, faults, pair resolution. One per application."""

    def __init__(self, sim: SimServer) -> None:
        self.sim = sim
        self._buckets: dict[str, tuple[float, float]] = {}
        self._private: dict[str, tuple[float, float]] = {}

    def listed(self) -> list[str]:
        """Symbols currently listed, in listing order."""
        return [s for s in self.sim.pairs if self.sim.is_listed(s)]

    def pair_index(self) -> dict[str, str]:
        index: dict[str, str] = {}
        for symbol in self.listed():
            pair = self.sim.pairs[symbol]
            for alias in (symbol, pair.base + pair.quote, wsname(pair),
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
    error = await rest_faults(sim, request.path, private=False)
    if error:
        return _err(error)
    if ctx.public_throttled(request.remote or "?"):
        sim.record("rest_throttle", path=request.path, peer=request.remote)
        return _err("EGeneral:Too many requests")
    params, _ = await _params(request)
    handler = _PUBLIC.get(name)
    if handler is None:
        return _err("EGeneral:Unknown method")
    try:
        return handler(ctx, params)
    except DataUnavailable:
        return _err(UNAVAILABLE)


def _time(ctx: _Rest, params: dict[str, str]) -> web.Response:
    now = ctx.sim.clock_ns() // 1_000_000_000
    return _ok({"unixtime": now, "rfc1123": rfc1123(now)})


def _system_status(ctx: _Rest, params: dict[str, str]) -> web.Response:
    now = ctx.sim.clock_ns() // 1_000_000_000
    return _ok({"status": "online", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})


def _assets(ctx: _Rest, params: dict[str, str]) -> web.Response:
    """``Assets``: every asset of the universe and of the listed pairs, keyed by asset code."""
    sim = ctx.sim
    aclass = params.get("aclass") or "currency"
    if aclass not in _ASSET_CLASSES:
        return _err(INVALID)
    objects = {str(a["id"]): a for a in sim.universe.assets if isinstance(a, dict) and "id" in a}
    for symbol in ctx.listed():
        pair = sim.pairs[symbol]
        for asset in (pair.base, pair.quote):
            objects.setdefault(asset, asset_wire(asset))
    entries = dict(asset_info(obj) for obj in objects.values()) if aclass == "currency" else {}
    requested = params.get("asset")
    if requested is None:
        return _ok(dict(sorted(entries.items())))
    index: dict[str, str] = {}
    for asset_id in objects:
        for alias in (asset_id, v1_name(asset_id), asset_code(asset_id)):
            index.setdefault(alias.upper(), asset_code(asset_id))
    chosen: dict[str, Any] = {}
    names = [n.strip() for n in requested.split(",")]
    for name in names:
        key = index.get(name.upper())
        if key is None or key not in entries:
            return _err(UNKNOWN_ASSET)
        chosen[key] = entries[key]
    return _ok(chosen)


def _asset_pairs(ctx: _Rest, params: dict[str, str]) -> web.Response:
    sim = ctx.sim
    info = params.get("info") or "info"
    aclass = params.get("aclass_base") or "currency"
    country = params.get("country_code")
    if info != "info" and info not in ASSET_PAIR_INFO_LEVELS or aclass not in _ASSET_CLASSES:
        return _err(INVALID)
    if country is not None and not _COUNTRY.fullmatch(country):
        return _err(INVALID)
    if params.get("pair"):
        resolved = ctx.resolve(params["pair"]) if aclass == "currency" else None
        if resolved is None:
            return _err(UNKNOWN_PAIR)
    elif aclass == "currency":
        resolved = sorted((pair_key(sim.pairs[s]), s) for s in ctx.listed())
    else:  # the sim lists no tokenized asset pair
        resolved = []
    return _ok({key: asset_pair_info(sim.pairs[s], sim.status[s], info) for key, s in resolved})


def _pairs_of(ctx: _Rest, params: dict[str, str], *, required: bool) -> list[tuple[str, str]] | web.Response:
    """The pairs a market-data call names (``pair``; ``asset_class``), or its error answer."""
    raw = params.get("pair")
    asset_class = params.get("asset_class")
    if asset_class is not None and asset_class not in _ASSET_CLASSES:
        return _err(INVALID)
    if not raw:
        if required:
            return _err(INVALID)
        return sorted((pair_key(ctx.sim.pairs[s]), s) for s in ctx.listed())
    resolved = ctx.resolve(raw) if asset_class != "tokenized_asset" else None
    if resolved is None:
        return _err(UNKNOWN_PAIR)
    return resolved


def _one_pair(ctx: _Rest, params: dict[str, str]) -> tuple[str, str] | web.Response:
    found = _pairs_of(ctx, params, required=True)
    if isinstance(found, web.Response):
        return found
    if len(found) != 1:
        return _err(UNKNOWN_PAIR)
    return found[0]


def _pad(pair: SpotPair, text: str) -> str:
    """A price text at ``pair_decimals`` in REST width (``max(pair_decimals, cost_decimals)``)."""
    return pad_price(text, pair.price_precision, rest_price_decimals(pair))


def _ticker_entry(pair: SpotPair, t: RestTicker) -> dict[str, Any]:
    width = rest_price_decimals(pair)
    scale = 10 ** (width - t.price_precision)
    qp = t.qty_precision

    def price(units: int) -> str:
        return units_to_text(units * scale, width)

    def vwap(period: TickerPeriod) -> str:
        if not period.volume:
            return price(t.last)
        return units_to_text((2 * period.cost * scale + period.volume) // (2 * period.volume), width)

    def best(units: int, qty: int) -> list[str]:
        whole = whole_lot(qty, qp)
        return [price(units), str(whole), f"{whole}.000"]

    today, day = t.today, t.day
    return {
        "a": best(t.ask, t.ask_qty),
        "b": best(t.bid, t.bid_qty),
        "c": [price(t.last), units_to_text(t.last_qty, qp)],
        "v": [units_to_text(today.volume, qp), units_to_text(day.volume, qp)],
        "p": [vwap(today), vwap(day)],
        "t": [today.trades, day.trades],
        "l": [price(today.low), price(day.low)],
        "h": [price(today.high), price(day.high)],
        "o": price(today.open),
    }


def _ticker(ctx: _Rest, params: dict[str, str]) -> web.Response:
    found = _pairs_of(ctx, params, required=False)
    if isinstance(found, web.Response):
        return found
    spot = ctx.sim.spot
    return _ok({key: _ticker_entry(ctx.sim.pairs[s], spot.rest_ticker(s)) for key, s in found})


def _depth(ctx: _Rest, params: dict[str, str]) -> web.Response:
    found = _one_pair(ctx, params)
    if isinstance(found, web.Response):
        return found
    key, symbol = found
    count = _int(params, "count", 100, 1, 500)
    if count is None:
        return _err(INVALID)
    pair = ctx.sim.pairs[symbol]
    qp = pair.qty_precision
    bids, asks = ctx.sim.spot.depth(symbol, count)

    def levels(side: list[tuple[str, str, int]]) -> list[list[Any]]:
        return [[_pad(pair, p), ceil_volume(to_units(q, qp), qp), ts] for p, q, ts in side]

    return _ok({key: {"asks": levels(asks), "bids": levels(bids)}})


def _trades(ctx: _Rest, params: dict[str, str]) -> web.Response:
    found = _one_pair(ctx, params)
    if isinstance(found, web.Response):
        return found
    key, symbol = found
    count = _int(params, "count", 1000, 1, 1000)
    since_raw = params.get("since", "")
    if count is None or (since_raw and not since_raw.isdigit()):
        return _err(INVALID)
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
    pair = ctx.sim.pairs[symbol]
    rows = [[_pad(pair, t.price), t.qty, epoch_seconds(t.t_ns), t.side, t.ord_type, "", t.trade_id]
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
        return _err(INVALID)
    bars = ctx.sim.spot.ohlc(symbol, interval)
    since = int(since_raw)
    # ``last``: the newest committed bar (the very last one is still open, always sent).
    last = bars[-2].begin_s if len(bars) >= 2 else since
    rows = [[b.begin_s, b.open, b.high, b.low, b.close, b.vwap, b.volume, b.trades]
            for i, b in enumerate(bars) if b.begin_s > since or i == len(bars) - 1]
    return _ok({key: rows, "last": last})


def _spread(ctx: _Rest, params: dict[str, str]) -> web.Response:
    found = _one_pair(ctx, params)
    if isinstance(found, web.Response):
        return found
    key, symbol = found
    since_raw = params.get("since", "")
    if since_raw and not since_raw.isdigit():
        return _err(INVALID)
    since = int(since_raw) if since_raw else 0
    pair = ctx.sim.pairs[symbol]
    rows = [[t // 1_000_000_000, _pad(pair, bid), _pad(pair, ask)]
            for t, bid, ask in ctx.sim.spot.spreads(symbol) if t // 1_000_000_000 > since]
    last = rows[-1][0] if rows else since
    return _ok({key: rows, "last": last})


_PUBLIC: Final = {
    "Time": _time, "SystemStatus": _system_status, "Assets": _assets, "AssetPairs": _asset_pairs,
    "Ticker": _ticker, "Depth": _depth, "Trades": _trades, "OHLC": _ohlc, "Spread": _spread,
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
    error = await rest_faults(sim, request.path, private=True)
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
        try:
            bids, asks = sim.spot.l3_orders(symbol, depth)
        except DataUnavailable:
            return _err(UNAVAILABLE)

        def orders(side: list[tuple[str, str, str, int]]) -> list[dict[str, Any]]:
            return [{"price": p, "qty": q, "order_id": oid, "timestamp": ts} for p, q, oid, ts in side]

        return _ok({"pair": symbol, "bids": orders(bids), "asks": orders(asks)})
    return _err("EGeneral:Unknown method")


def add_routes(app: web.Application) -> None:
    app[_REST_KEY] = _Rest(app[SIM_KEY])
    app.router.add_route("GET", "/0/public/{name}", public)
    app.router.add_route("POST", "/0/public/{name}", public)
    app.router.add_route("*", "/0/private/{name}", private)
    futures_rest.add_routes(app)
