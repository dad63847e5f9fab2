"""Decoder for legacy Kraken Spot WebSocket API v1 frames, for importing old captures.

:func:`decode_spot_v1` turns one frame into a typed event or a
:class:`~recorder.protocol.reject.Reject`; it never raises and keeps no state.

v1 has two frame shapes:

* event objects ``{"event": ...}``: ``systemStatus``, ``subscriptionStatus`` (including
  ``status: "error"``), ``heartbeat``, ``pong`` and ``error``;
* data arrays ``[channelID, payload..., channelName, pair]`` for ``book-N``, ``trade``,
  ``ticker``, ``ohlc-N`` and ``spread``.

Values are kept exactly as sent: prices and volumes are the wire's decimal strings (v1 pads them,
e.g. ``"5541.30000"``, and its book checksum hashes exactly these strings, so precision = the
decimals a string is written with). Integer counts stay ``int``. Epoch-second times are kept as
text and converted to int ns (``ts_ns`` and similar) with
:func:`~recorder.protocol.timestamps.epoch_seconds_to_ns`.

Book messages deliberately mirror the v2 book envelope (:class:`recorder.protocol.spot.BookMessage`)
so the same L2 book code consumes both: ``.type`` is ``"snapshot"``/``"update"`` and ``.data`` holds
one :class:`BookDataV1` with ``.symbol`` (the v1 pair, e.g. ``XBT/USD``), ``.bids``/``.asks``
(levels with ``.price``/``.qty`` strings, wire order) and ``.checksum`` (``int`` from the quoted
``"c"``; None on snapshots and on updates without one).

Reject reasons are the ones of :mod:`recorder.protocol.spot` (``too_large``, ``not_utf8``,
``malformed_json``, ``unknown_message``, ``schema``, ``bad_number``, ``bad_timestamp``,
``internal``).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Final, Literal, TypeAlias

import msgspec

from recorder.protocol.errors import ProtocolError, TimestampError
from recorder.protocol.reject import Reject, utf8_error_offset
from recorder.protocol.spot import (
    DEFAULT_MAX_FRAME_BYTES,
    REJECT_BAD_NUMBER,
    REJECT_BAD_TIMESTAMP,
    REJECT_INTERNAL,
    REJECT_MALFORMED_JSON,
    REJECT_NOT_UTF8,
    REJECT_SCHEMA,
    REJECT_TOO_LARGE,
    REJECT_UNKNOWN_MESSAGE,
)
from recorder.protocol.timestamps import epoch_seconds_to_ns

__all__ = [
    "SpotV1Event",
    "SystemStatusV1",
    "SubscriptionV1",
    "SubscriptionStatusV1",
    "HeartbeatV1",
    "PongV1",
    "ErrorV1",
    "BookLevelV1",
    "BookDataV1",
    "BookMessageV1",
    "TradeV1",
    "TradeMessageV1",
    "TickerV1",
    "TickerMessageV1",
    "CandleV1",
    "OhlcMessageV1",
    "SpreadV1",
    "SpreadMessageV1",
    "decode_spot_v1",
]

_UINT32_MAX: Final = 2**32 - 1
_DECIMAL_TEXT: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_CHECKSUM_TEXT: Final = re.compile(r"[0-9]{1,10}")
_MAX_TOKEN_CHARS: Final = 80


class _Invalid(ProtocolError):
    """Internal: a v1 frame is not acceptable; ``reason`` is the Reject reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Event objects.


class SystemStatusV1(msgspec.Struct, frozen=True, kw_only=True, tag_field="event",
                     tag="systemStatus"):
    """``{"event": "systemStatus", "connectionID": ..., "status": "online", "version": ...}``;
    ``connection_id`` is an unsigned 64-bit id."""

    event: ClassVar[str] = "systemStatus"
    connection_id: int | None = msgspec.field(default=None, name="connectionID")
    status: str
    version: str | None = None


class SubscriptionV1(msgspec.Struct, frozen=True, kw_only=True):
    """The ``subscription`` object echoed in a subscriptionStatus (``name`` e.g. ``book``)."""

    name: str | None = None
    depth: int | None = None
    interval: int | None = None


class SubscriptionStatusV1(msgspec.Struct, frozen=True, kw_only=True, tag_field="event",
                           tag="subscriptionStatus"):
    """Subscription ack per pair: ``status`` is ``subscribed``, ``unsubscribed`` or ``error``
    (then ``error_message`` says why). ``channel_name`` is e.g. ``book-10``."""

    event: ClassVar[str] = "subscriptionStatus"
    status: str
    channel_id: int | None = msgspec.field(default=None, name="channelID")
    channel_name: str | None = msgspec.field(default=None, name="channelName")
    pair: str | None = None
    subscription: SubscriptionV1 | None = None
    error_message: str | None = msgspec.field(default=None, name="errorMessage")
    reqid: int | None = None


class HeartbeatV1(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", tag="heartbeat"):
    """``{"event": "heartbeat"}``."""

    event: ClassVar[str] = "heartbeat"


class PongV1(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", tag="pong"):
    """``{"event": "pong", "reqid": ...}``, the answer to a ping."""

    event: ClassVar[str] = "pong"
    reqid: int | None = None


class ErrorV1(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", tag="error"):
    """``{"event": "error", "errorMessage": "Exceeded msg rate", "reqid": 42}``."""

    event: ClassVar[str] = "error"
    error_message: str | None = msgspec.field(default=None, name="errorMessage")
    reqid: int | None = None


_EventV1: TypeAlias = SystemStatusV1 | SubscriptionStatusV1 | HeartbeatV1 | PongV1 | ErrorV1
_EVENTS: Final = frozenset(("systemStatus", "subscriptionStatus", "heartbeat", "pong", "error"))


# --------------------------------------------------------------------------------------------
# Data arrays.


class BookLevelV1(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One book level: ``price``/``qty`` (v1 "volume") are the raw wire strings; ``qty`` 0
    deletes. ``timestamp`` is the level's epoch-seconds text, ``ts_ns`` the same in int ns;
    ``republish`` is True for the ``"r"`` flag (a level re-entering the window)."""

    price: str
    qty: str
    timestamp: str
    ts_ns: int
    republish: bool = False


class BookDataV1(msgspec.Struct, frozen=True, kw_only=True):
    """The book of one pair in one message; same attribute names as the v2 ``BookData``."""

    symbol: str
    bids: list[BookLevelV1]
    asks: list[BookLevelV1]
    checksum: int | None = None


class BookMessageV1(msgspec.Struct, frozen=True, kw_only=True):
    """A ``book-N`` data array (``depth`` = N) as a v2-shaped envelope (see module docs)."""

    channel: ClassVar[str] = "book"
    type: Literal["snapshot", "update"]
    data: list[BookDataV1]
    channel_id: int | None
    channel_name: str
    depth: int


class TradeV1(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One v1 trade (no trade id in v1). ``side``/``ord_type`` are normalised from ``b``/``s``
    and ``m``/``l`` to ``buy``/``sell`` and ``market``/``limit``; ``misc`` is kept raw."""

    price: str
    qty: str
    timestamp: str
    ts_ns: int
    side: Literal["buy", "sell"]
    ord_type: Literal["market", "limit"]
    misc: str


class TradeMessageV1(msgspec.Struct, frozen=True, kw_only=True):
    """A ``trade`` data array: ``data`` lists the trades in wire order."""

    channel: ClassVar[str] = "trade"
    channel_id: int | None
    symbol: str
    data: list[TradeV1]


class TickerV1(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The v1 ticker object, one field per array slot. Decimal values are raw strings, counts
    and whole-lot volumes ints. ``*_today`` are since 00:00 UTC, ``*_24h`` rolling."""

    ask: str
    ask_whole_lot_volume: int
    ask_lot_volume: str
    bid: str
    bid_whole_lot_volume: int
    bid_lot_volume: str
    last: str
    last_qty: str
    volume_today: str
    volume_24h: str
    vwap_today: str
    vwap_24h: str
    trades_today: int
    trades_24h: int
    low_today: str
    low_24h: str
    high_today: str
    high_24h: str
    open_today: str
    open_24h: str


class TickerMessageV1(msgspec.Struct, frozen=True, kw_only=True):
    """A ``ticker`` data array."""

    channel: ClassVar[str] = "ticker"
    channel_id: int | None
    symbol: str
    data: TickerV1


class CandleV1(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A v1 OHLC bar: ``time`` (last update) and ``end_time`` (bar end) are epoch-seconds text
    with ``ts_ns``/``end_ns``; prices/volume raw strings; ``count`` the number of trades."""

    time: str
    ts_ns: int
    end_time: str
    end_ns: int
    open: str
    high: str
    low: str
    close: str
    vwap: str
    volume: str
    count: int


class OhlcMessageV1(msgspec.Struct, frozen=True, kw_only=True):
    """An ``ohlc-N`` data array (``interval`` = N minutes)."""

    channel: ClassVar[str] = "ohlc"
    channel_id: int | None
    channel_name: str
    interval: int
    symbol: str
    data: CandleV1


class SpreadV1(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Best bid/ask: ``[bid, ask, timestamp, bidVolume, askVolume]`` (volumes optional in old
    captures)."""

    bid: str
    ask: str
    timestamp: str
    ts_ns: int
    bid_qty: str | None = None
    ask_qty: str | None = None


class SpreadMessageV1(msgspec.Struct, frozen=True, kw_only=True):
    """A ``spread`` data array."""

    channel: ClassVar[str] = "spread"
    channel_id: int | None
    symbol: str
    data: SpreadV1


#: Everything :func:`decode_spot_v1` can return besides a Reject.
SpotV1Event: TypeAlias = (_EventV1 | BookMessageV1 | TradeMessageV1 | TickerMessageV1
                          | OhlcMessageV1 | SpreadMessageV1)

_EVENT_DECODER: Final = msgspec.json.Decoder(_EventV1)
#: Untyped parse of the whole frame. JSON floats become ``float`` on purpose: v1 sends decimals as
#: strings, so a bare JSON number where a decimal string belongs is rejected, never reinterpreted.
_GENERIC_DECODER: Final = msgspec.json.Decoder()


def decode_spot_v1(frame: bytes | str, *,
                   max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> SpotV1Event | Reject:
    """Decode one Spot WS v1 frame into a typed event, or a :class:`Reject` saying why not.

    ``frame`` is the text frame as received. Frames longer than ``max_frame_bytes`` bytes are
    rejected unread. No exception escapes; ``Reject.raw`` is the frame as bytes.
    """
    try:
        return _decode(frame, max_frame_bytes)
    except _Invalid as exc:
        return _reject(exc.reason, str(exc), frame)
    except Exception as exc:  # noqa: BLE001 - the no-exception promise holds even for our bugs
        return _reject(REJECT_INTERNAL, f"{type(exc).__name__}: {exc}"[:200], frame)


def _decode(frame: bytes | str, max_frame_bytes: int) -> SpotV1Event:
    if isinstance(frame, str):
        try:
            data: bytes = frame.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _Invalid(REJECT_NOT_UTF8, f"unencodable character at index {exc.start}") from None
    elif isinstance(frame, (bytes, bytearray, memoryview)):
        data = bytes(frame)
    else:
        raise _Invalid(REJECT_SCHEMA, f"frame must be bytes or str, got {type(frame).__name__}")
    if len(data) > max_frame_bytes:
        raise _Invalid(REJECT_TOO_LARGE, f"frame exceeds {max_frame_bytes} bytes")
    try:
        message = _GENERIC_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        bad_byte = utf8_error_offset(data)
        if bad_byte is not None:
            raise _Invalid(REJECT_NOT_UTF8, f"invalid UTF-8 at byte {bad_byte}") from None
        raise _Invalid(REJECT_MALFORMED_JSON, str(exc)) from None
    except UnicodeDecodeError as exc:
        raise _Invalid(REJECT_NOT_UTF8, f"invalid UTF-8 at byte {exc.start}") from None
    except RecursionError:
        raise _Invalid(REJECT_MALFORMED_JSON, "nesting too deep") from None
    if isinstance(message, dict):
        event = message.get("event")
        if not isinstance(event, str) or event not in _EVENTS:
            raise _Invalid(REJECT_UNKNOWN_MESSAGE, f"unknown event {str(event)[:32]!r}")
        try:
            return _EVENT_DECODER.decode(data)
        except msgspec.ValidationError as exc:
            raise _Invalid(REJECT_SCHEMA, str(exc)) from None
    if isinstance(message, list):
        return _decode_array(message)
    raise _Invalid(REJECT_UNKNOWN_MESSAGE, "top level is neither an object nor an array")


def _decode_array(message: list[Any]) -> SpotV1Event:
    """``[channelID, payload..., channelName, pair]`` -> typed data message."""
    if len(message) < 4:
        raise _Invalid(REJECT_SCHEMA, f"data array has {len(message)} elements, expected >= 4")
    channel_id, payloads, name, pair = message[0], message[1:-2], message[-2], message[-1]
    if channel_id is not None and type(channel_id) is not int:
        raise _Invalid(REJECT_SCHEMA, "channelID is not an integer")
    if type(name) is not str or type(pair) is not str:
        raise _Invalid(REJECT_SCHEMA, "channelName and pair must be strings")
    if name.startswith("book-"):
        return _book(channel_id, payloads, name, pair)
    if len(payloads) != 1:
        raise _Invalid(REJECT_SCHEMA, f"{name!r} array has {len(payloads)} payloads, expected 1")
    payload = payloads[0]
    if name == "trade":
        return TradeMessageV1(channel_id=channel_id, symbol=pair, data=_trades(payload))
    if name == "ticker":
        return TickerMessageV1(channel_id=channel_id, symbol=pair, data=_ticker(payload))
    if name == "spread":
        return SpreadMessageV1(channel_id=channel_id, symbol=pair, data=_spread(payload))
    if name.startswith("ohlc-"):
        return OhlcMessageV1(channel_id=channel_id, channel_name=name,
                             interval=_suffix_int(name), symbol=pair, data=_candle(payload))
    raise _Invalid(REJECT_UNKNOWN_MESSAGE, f"unknown channel {name[:32]!r}")


# --------------------------------------------------------------------------------------------
# Field helpers.


def _text(value: Any, field: str) -> str:
    """A decimal string exactly as sent (``"5541.30000"``)."""
    if type(value) is not str or len(value) > _MAX_TOKEN_CHARS or \
            _DECIMAL_TEXT.fullmatch(value) is None:
        raise _Invalid(REJECT_BAD_NUMBER, f"`{field}` is not decimal text: {str(value)[:48]!r}")
    return value


def _count(value: Any, field: str) -> int:
    if type(value) is not int or value < 0:
        raise _Invalid(REJECT_SCHEMA, f"`{field}` is not a non-negative integer: {value!r}")
    return value


def _seconds_ns(value: Any, field: str) -> int:
    """Epoch-seconds *text* (``"1534614248.456738"``) -> int ns."""
    if type(value) is not str:
        raise _Invalid(REJECT_BAD_TIMESTAMP, f"`{field}` is not epoch-seconds text: {value!r:.48}")
    try:
        return epoch_seconds_to_ns(value)
    except TimestampError as exc:
        raise _Invalid(REJECT_BAD_TIMESTAMP, f"`{field}`: {exc}") from None


def _suffix_int(name: str) -> int:
    suffix = name.partition("-")[2]
    if not (suffix.isascii() and suffix.isdigit()) or len(suffix) > 6:
        raise _Invalid(REJECT_SCHEMA, f"bad channel name {name[:32]!r}")
    return int(suffix)


def _array(value: Any, field: str, sizes: tuple[int, ...]) -> list[Any]:
    if type(value) is not list or len(value) not in sizes:
        raise _Invalid(REJECT_SCHEMA, f"`{field}` must be an array of {sizes} elements")
    return value


# --------------------------------------------------------------------------------------------
# Channel builders.


def _book(channel_id: int | None, payloads: list[Any], name: str, pair: str) -> BookMessageV1:
    if not 1 <= len(payloads) <= 2 or any(type(p) is not dict for p in payloads):
        raise _Invalid(REJECT_SCHEMA, "book payload must be one or two objects")
    depth = _suffix_int(name)
    first = payloads[0]
    if "as" in first or "bs" in first:
        if len(payloads) != 1:
            raise _Invalid(REJECT_SCHEMA, "book snapshot must have one payload")
        data = BookDataV1(symbol=pair, bids=_levels(first.get("bs", []), "bs"),
                          asks=_levels(first.get("as", []), "as"))
        return BookMessageV1(type="snapshot", data=[data], channel_id=channel_id,
                             channel_name=name, depth=depth)
    bids: list[BookLevelV1] = []
    asks: list[BookLevelV1] = []
    checksum: int | None = None
    for payload in payloads:
        if not payload.keys() <= {"a", "b", "c"} or not payload.keys() & {"a", "b"}:
            raise _Invalid(REJECT_SCHEMA, f"unexpected book update keys {sorted(payload)[:5]}")
        if "a" in payload:
            asks.extend(_levels(payload["a"], "a"))
        if "b" in payload:
            bids.extend(_levels(payload["b"], "b"))
        if "c" in payload:
            checksum = _checksum(payload["c"])
    data = BookDataV1(symbol=pair, bids=bids, asks=asks, checksum=checksum)
    return BookMessageV1(type="update", data=[data], channel_id=channel_id, channel_name=name,
                         depth=depth)


def _levels(raw: Any, field: str) -> list[BookLevelV1]:
    if type(raw) is not list:
        raise _Invalid(REJECT_SCHEMA, f"`{field}` is not an array")
    levels = []
    for entry in raw:
        entry = _array(entry, field, (3, 4))
        republish = False
        if len(entry) == 4:
            if entry[3] != "r":
                raise _Invalid(REJECT_SCHEMA, f"unknown level flag {str(entry[3])[:16]!r}")
            republish = True
        levels.append(BookLevelV1(price=_text(entry[0], "price"), qty=_text(entry[1], "qty"),
                                  timestamp=entry[2], ts_ns=_seconds_ns(entry[2], "timestamp"),
                                  republish=republish))
    return levels


def _checksum(value: Any) -> int:
    if type(value) is not str or _CHECKSUM_TEXT.fullmatch(value) is None \
            or int(value) > _UINT32_MAX:
        raise _Invalid(REJECT_SCHEMA, f"checksum is not a quoted uint32: {str(value)[:16]!r}")
    return int(value)


_SIDES: Final = {"b": "buy", "s": "sell"}
_ORDER_TYPES: Final = {"m": "market", "l": "limit"}


def _trades(payload: Any) -> list[TradeV1]:
    if type(payload) is not list:
        raise _Invalid(REJECT_SCHEMA, "trade payload is not an array")
    trades = []
    for entry in payload:
        price, qty, time, side, ord_type, misc = _array(entry, "trade", (6,))
        if type(side) is not str or side not in _SIDES or type(ord_type) is not str \
                or ord_type not in _ORDER_TYPES or type(misc) is not str:
            raise _Invalid(REJECT_SCHEMA, "trade side/type/misc not understood")
        trades.append(TradeV1(price=_text(price, "price"), qty=_text(qty, "volume"),
                              timestamp=time, ts_ns=_seconds_ns(time, "time"),
                              side=_SIDES[side], ord_type=_ORDER_TYPES[ord_type], misc=misc))
    return trades


def _ticker(payload: Any) -> TickerV1:
    if type(payload) is not dict:
        raise _Invalid(REJECT_SCHEMA, "ticker payload is not an object")
    try:
        a = _array(payload["a"], "a", (3,))
        b = _array(payload["b"], "b", (3,))
        c = _array(payload["c"], "c", (2,))
        v, p, t, low, high, o = (_array(payload[k], k, (2,)) for k in "vptlho")
    except KeyError as exc:
        raise _Invalid(REJECT_SCHEMA, f"ticker misses {exc}") from None
    return TickerV1(
        ask=_text(a[0], "a"), ask_whole_lot_volume=_count(a[1], "a"),
        ask_lot_volume=_text(a[2], "a"),
        bid=_text(b[0], "b"), bid_whole_lot_volume=_count(b[1], "b"),
        bid_lot_volume=_text(b[2], "b"),
        last=_text(c[0], "c"), last_qty=_text(c[1], "c"),
        volume_today=_text(v[0], "v"), volume_24h=_text(v[1], "v"),
        vwap_today=_text(p[0], "p"), vwap_24h=_text(p[1], "p"),
        trades_today=_count(t[0], "t"), trades_24h=_count(t[1], "t"),
        low_today=_text(low[0], "l"), low_24h=_text(low[1], "l"),
        high_today=_text(high[0], "h"), high_24h=_text(high[1], "h"),
        open_today=_text(o[0], "o"), open_24h=_text(o[1], "o"),
    )


def _candle(payload: Any) -> CandleV1:
    time, end, open_, high, low, close, vwap, volume, count = _array(payload, "ohlc", (9,))
    return CandleV1(time=time, ts_ns=_seconds_ns(time, "time"), end_time=end,
                    end_ns=_seconds_ns(end, "etime"), open=_text(open_, "open"),
                    high=_text(high, "high"), low=_text(low, "low"), close=_text(close, "close"),
                    vwap=_text(vwap, "vwap"), volume=_text(volume, "volume"),
                    count=_count(count, "count"))


def _spread(payload: Any) -> SpreadV1:
    entry = _array(payload, "spread", (3, 5))
    bid_qty = _text(entry[3], "bidVolume") if len(entry) == 5 else None
    ask_qty = _text(entry[4], "askVolume") if len(entry) == 5 else None
    return SpreadV1(bid=_text(entry[0], "bid"), ask=_text(entry[1], "ask"), timestamp=entry[2],
                    ts_ns=_seconds_ns(entry[2], "timestamp"), bid_qty=bid_qty, ask_qty=ask_qty)


def _reject(reason: str, detail: str, frame: object) -> Reject:
    if isinstance(frame, str):
        raw = frame.encode("utf-8", "surrogatepass")
    elif isinstance(frame, (bytes, bytearray, memoryview)):
        raw = bytes(frame)
    else:
        raw = repr(frame).encode("utf-8", "backslashreplace")
    return Reject(reason=reason, detail=detail, raw=raw)
