"""What a recorded venue frame is, for routing it to replay subscriptions (pure).

:func:`route_spot` reads a Spot WS v2 frame (``spot`` or ``l3`` stream) and :func:`route_futures`
a Futures WS v1 frame; both return a :class:`Route` for market data and None for everything
else (acks, pongs, heartbeats, ``status``, errors, undecodable bytes): those belong to the
recording connection, not to the market, and are never forwarded.

A data frame names one symbol, except that Kraken may batch several symbols in one ``trade``
or ``ohlc`` message (``data`` is a list of events; ``book``, ``level3`` and ``ticker`` carry one
book object each, protocol notes §1.7). Such a frame is ``mixed``: :func:`split_spot` keeps
the events of one symbol and every other byte of the frame as it was (the ``data`` elements
are copied as their raw JSON text; only the list around them is re-joined), so a client
subscribed to a subset of the symbols still gets only its own symbols' events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec

__all__ = ["Route", "route_futures", "route_spot", "split_spot"]


@dataclass(frozen=True, slots=True)
class Route:
    """Where a market-data frame goes.

    ``channel``: spot ``book``, ``level3``, ``trade``, ``ohlc``, ``ticker``, ``instrument``;
    futures ``book``, ``trade``, ``ticker``, ``ticker_lite`` (the feed without ``_snapshot``).
    ``symbols``: the distinct symbols (product ids upper-cased) in wire order; empty for
    ``instrument``. ``snapshot``: a snapshot message (``type`` snapshot, ``*_snapshot`` feed).
    ``interval``: the ohlc interval (minutes) of the events. ``last_id``: the highest
    ``trade_id`` (spot trade) or ``seq`` (futures trade, futures book) of the frame.
    ``mixed``: several symbols in one frame (see :func:`split_spot`).
    """

    channel: str
    symbols: tuple[str, ...]
    snapshot: bool
    interval: int | None = None
    last_id: int | None = None
    mixed: bool = False


class _Item(msgspec.Struct, gc=False):
    symbol: str | None = None
    interval: int | None = None
    trade_id: int | None = None


class _Spot(msgspec.Struct, gc=False):
    channel: str | None = None
    type: str | None = None
    data: list[_Item] | dict | None = None
    method: str | None = None


class _Seq(msgspec.Struct, gc=False):
    seq: int | None = None


class _Futures(msgspec.Struct, gc=False):
    feed: str | None = None
    event: str | None = None
    product_id: str | None = None
    seq: int | None = None
    trades: list[_Seq] | None = None


_SPOT: Final = msgspec.json.Decoder(_Spot)
_FUTURES: Final = msgspec.json.Decoder(_Futures)
_SPOT_DATA: Final = frozenset({"book", "level3", "trade", "ohlc", "ticker", "instrument"})
_FUTURES_FEEDS: Final = {
    "book": ("book", False), "book_snapshot": ("book", True),
    "trade": ("trade", False), "trade_snapshot": ("trade", True),
    "ticker": ("ticker", False), "ticker_lite": ("ticker_lite", False),
}


#: Book frames as Kraken lays them out (keys in this order; checked byte for byte) are routed
#: without decoding their levels: ``{"channel":"<book|level3>","type":"<update|snapshot>",
#: "data":[{...one book object...}]}``. Anything else takes the decoding path.
_HEAD: Final = b'{"channel":"'
_BOOK_SHAPES: Final = {
    ord("b"): ((b'book","type":"update","data":[{', "book", False),
               (b'book","type":"snapshot","data":[{', "book", True)),
    ord("l"): ((b'level3","type":"update","data":[{', "level3", False),
               (b'level3","type":"snapshot","data":[{', "level3", True)),
}
_SYMBOL_KEY: Final = b'"symbol":"'
_ROUTE_CACHE: dict[tuple[str, bytes, bool], Route] = {}
_ROUTE_CACHE_MAX: Final = 100_000


def _route_book(payload: bytes) -> Route | None:
    """The fast path of :func:`route_spot` for a ``book``/``level3`` frame (one book object,
    one ``symbol`` key, a complete frame); None when the frame is not exactly that shape."""
    if not payload.startswith(_HEAD) or len(payload) < 40:
        return None
    shapes = _BOOK_SHAPES.get(payload[12])
    if shapes is None:
        return None
    for rest, channel, snapshot in shapes:
        if payload.startswith(rest, 12):
            break
    else:
        return None
    start = payload.find(_SYMBOL_KEY, 12 + len(rest))
    if start < 0:
        return None
    start += 10
    end = payload.find(b'"', start)
    if end <= start or not payload.endswith(b"}]}") or payload.find(_SYMBOL_KEY, end) >= 0:
        return None
    name = payload[start:end]
    cache_key = (channel, name, snapshot)
    route = _ROUTE_CACHE.get(cache_key)
    if route is None:
        if b"\\" in name:
            return None
        if len(_ROUTE_CACHE) >= _ROUTE_CACHE_MAX:
            _ROUTE_CACHE.clear()
        try:
            symbol = name.decode()
        except UnicodeDecodeError:
            return None
        route = _ROUTE_CACHE[cache_key] = Route(channel, (symbol,), snapshot)
    return route


def route_spot(payload: bytes) -> Route | None:
    """The route of a Spot WS v2 market-data frame, or None (control frame, malformed)."""
    fast = _route_book(payload)
    if fast is not None:
        return fast
    try:
        msg = _SPOT.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    channel = msg.channel
    if channel not in _SPOT_DATA or msg.method is not None or msg.type not in ("snapshot", "update"):
        return None
    data = msg.data
    snapshot = msg.type == "snapshot"
    if channel == "instrument":
        return Route("instrument", (), snapshot) if isinstance(data, dict) else None
    if not isinstance(data, list) or not data:
        return None
    symbols: list[str] = []
    interval = None
    last_id = None
    for item in data:
        symbol = item.symbol
        if symbol is None:
            return None
        if not symbols or symbols[-1] != symbol and symbol not in symbols:
            symbols.append(symbol)
        if item.interval is not None:
            interval = item.interval
        if item.trade_id is not None and (last_id is None or item.trade_id > last_id):
            last_id = item.trade_id
    if channel == "ohlc" and interval is None:
        return None
    return Route(channel, tuple(symbols), snapshot, interval, last_id, len(symbols) > 1)


def route_futures(payload: bytes) -> Route | None:
    """The route of a Futures WS v1 market-data frame, or None (events, heartbeats, ...)."""
    try:
        msg = _FUTURES.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if msg.event is not None or msg.product_id is None:
        return None
    found = _FUTURES_FEEDS.get(msg.feed or "")
    if found is None:
        return None
    channel, snapshot = found
    last_id = msg.seq
    if msg.trades:
        seqs = [t.seq for t in msg.trades if t.seq is not None]
        last_id = max(seqs) if seqs else None
    return Route(channel, (msg.product_id.upper(),), snapshot, None, last_id)


class _Symbol(msgspec.Struct, gc=False):
    symbol: str | None = None


_RAW_OBJECT: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_RAW_LIST: Final = msgspec.json.Decoder(list[msgspec.Raw])
_SYMBOL: Final = msgspec.json.Decoder(_Symbol)
_KEY: Final = msgspec.json.Encoder()


def split_spot(payload: bytes, symbol: str) -> bytes | None:
    """``payload`` with only the ``data`` events of ``symbol`` (None if it has none or is not
    a Spot WS v2 data frame). Keys stay in their order and every value other than ``data`` is
    copied as its raw JSON text; so are the kept events."""
    try:
        fields = _RAW_OBJECT.decode(payload)
        data = fields.get("data")
        if data is None:
            return None
        kept = [raw for raw in _RAW_LIST.decode(data) if _SYMBOL.decode(raw).symbol == symbol]
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if not kept:
        return None
    parts = []
    for key, raw in fields.items():
        value = b"[" + b",".join(bytes(r) for r in kept) + b"]" if key == "data" else bytes(raw)
        parts.append(_KEY.encode(key) + b":" + value)
    return b"{" + b",".join(parts) + b"}"
