"""Decoder for Kraken Spot WebSocket API v2 frames (public channels and ``level3``).

:func:`decode_spot` turns one received text frame into a typed event or a
:class:`~recorder.protocol.reject.Reject`; it never raises. It does no I/O and keeps no state
between calls, so it can run on any thread or in a replay.

Numbers stay exact. Every price, quantity and other decimal field is a *token*
(:data:`~recorder.protocol.numbers.NumToken`): the exact JSON text of a non-integer
(``"0.2997598"``, ``"1E-8"``, ``"4.0"``) or an ``int`` for a JSON integer. The decoder guarantees
the *type* of a token (``str`` or ``int``; never ``bool``, ``None``, ``float`` or a container).
Kraken also documents some numbers as JSON strings, so a string token's digits are checked at
decode time for every channel except the two hot ones: on ``book`` and ``level3`` the digits are
validated where the books scale them (:func:`~recorder.protocol.numbers.to_units` raises
``NumberError`` for bad text), which keeps the per-message cost low.

Timestamps are converted once, at decode time, to integer nanoseconds since the Unix epoch: each
struct carrying a wire ``timestamp`` (RFC3339, 6 or 9 fractional digits) also has ``ts_ns``; acks
and pongs have ``time_in_ns``/``time_out_ns``; candles have ``interval_begin_ns``. The raw strings
are kept as well. Struct field order and list order are exactly the wire order.

Reject reasons (stable codes): ``too_large``, ``not_utf8``, ``malformed_json``,
``unknown_message`` (not an object, unknown ``channel``/``method``, neither key present),
``schema`` (missing/ill-typed field, bad enum value), ``bad_number``, ``bad_timestamp`` and
``internal`` (an unexpected exception inside the decoder; should never happen).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Final, Literal, TypeAlias

import msgspec
from msgspec.structs import force_setattr

from recorder.protocol.errors import NumberError, TimestampError
from recorder.protocol.numbers import token_to_text
from recorder.protocol.reject import Reject
from recorder.protocol.timestamps import rfc3339_to_ns

__all__ = [
    "exchange_time_ns",
    "DEFAULT_MAX_FRAME_BYTES",
    "SPOT_CHANNELS",
    "SPOT_METHODS",
    "REJECT_TOO_LARGE",
    "REJECT_NOT_UTF8",
    "REJECT_MALFORMED_JSON",
    "REJECT_UNKNOWN_MESSAGE",
    "REJECT_SCHEMA",
    "REJECT_BAD_NUMBER",
    "REJECT_BAD_TIMESTAMP",
    "REJECT_INTERNAL",
    "SpotEvent",
    "SpotData",
    "SpotResponse",
    "StatusItem",
    "StatusMessage",
    "Heartbeat",
    "AckResult",
    "SubscribeAck",
    "UnsubscribeAck",
    "PongResult",
    "Pong",
    "BookLevel",
    "BookData",
    "BookMessage",
    "Level3Order",
    "Level3Data",
    "Level3Message",
    "Trade",
    "TradeMessage",
    "Candle",
    "OhlcMessage",
    "Ticker",
    "TickerMessage",
    "Asset",
    "Pair",
    "InstrumentData",
    "InstrumentMessage",
    "decode_spot",
]

#: Frames longer than this (in bytes) are rejected unread. The 683-pair instrument snapshot is
#: ~360 KB pretty-printed and a depth-1000 book snapshot well under 1 MB, so this is generous.
DEFAULT_MAX_FRAME_BYTES: Final = 16 * 1024 * 1024

REJECT_TOO_LARGE: Final = "too_large"
REJECT_NOT_UTF8: Final = "not_utf8"
REJECT_MALFORMED_JSON: Final = "malformed_json"
REJECT_UNKNOWN_MESSAGE: Final = "unknown_message"
REJECT_SCHEMA: Final = "schema"
REJECT_BAD_NUMBER: Final = "bad_number"
REJECT_BAD_TIMESTAMP: Final = "bad_timestamp"
REJECT_INTERNAL: Final = "internal"

_UINT32_MAX: Final = 2**32 - 1
_UINT64_MAX: Final = 2**64 - 1
_TOKEN_TYPES: Final = frozenset((str, int))
_NUMBER_TEXT: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_MAX_TOKEN_CHARS: Final = 80
_INT_TOKEN_LIMIT: Final = 10**38
_SHORT_REPR_CHARS: Final = 32

_Checksum: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=_UINT32_MAX)]
_MessageType: TypeAlias = Literal["snapshot", "update"]


# --------------------------------------------------------------------------------------------
# Validation helpers used from ``__post_init__``. msgspec turns the ValueError raised here into
# a ValidationError; the message prefix (a reject reason code) survives and drives the Reject.


def _timestamp_ns(text: str, field: str) -> int:
    """RFC3339 UTC text -> int ns via :func:`rfc3339_to_ns`."""
    try:
        return rfc3339_to_ns(text)
    except TimestampError as exc:
        raise ValueError(f"{REJECT_BAD_TIMESTAMP}: `{field}`: {exc}") from None


def _optional_timestamp_ns(text: str | None, field: str) -> int | None:
    return None if text is None else _timestamp_ns(text, field)


def _bad_token(value: object, field: str) -> ValueError:
    return ValueError(f"{REJECT_BAD_NUMBER}: `{field}` is not a number token: {str(value)[:48]!r}")


def _check_token_type(value: Any, field: str) -> None:
    """A hot channel's token must be a ``str`` or an ``int`` (its digits are checked later)."""
    if type(value) not in _TOKEN_TYPES:
        raise _bad_token(value, field)


def _check_token(value: Any, field: str) -> None:
    """A token must be an int or number text (JSON number text or a numeric JSON string)."""
    kind = type(value)
    if kind is int:
        if -_INT_TOKEN_LIMIT < value < _INT_TOKEN_LIMIT:  # as numbers.to_units (38 digits)
            return
        raise _bad_token(value, field)
    if kind is not str or len(value) > _MAX_TOKEN_CHARS or _NUMBER_TEXT.fullmatch(value) is None:
        raise _bad_token(value, field)
    if ("e" in value or "E" in value) and not _exponent_in_range(value):
        raise _bad_token(value, field)


def _exponent_in_range(text: str) -> bool:
    """Exponent forms the rest of the recorder can render exactly (``1E+999999999`` cannot:
    :func:`~recorder.protocol.numbers.token_to_text` refuses it)."""
    try:
        token_to_text(text)
    except NumberError:
        return False
    return True


def _check_optional_token(value: Any, field: str) -> None:
    if value is not None:
        _check_token(value, field)


# --------------------------------------------------------------------------------------------
# Control channels: status and heartbeat.


class StatusItem(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Engine status. ``system`` is one of ``online``, ``cancel_only``, ``maintenance``,
    ``post_only``. ``connection_id`` is an unsigned 64-bit id (it exceeds 2**63)."""

    api_version: str
    connection_id: Annotated[int, msgspec.Meta(ge=0)]
    system: str
    version: str

    def __post_init__(self) -> None:
        if self.connection_id > _UINT64_MAX:
            raise ValueError(f"`connection_id` exceeds uint64: {self.connection_id}")


class StatusMessage(msgspec.Struct, frozen=True, kw_only=True, tag_field="channel", tag="status"):
    """``{"channel": "status", "type": "update", "data": [StatusItem]}``; sent on connect."""

    channel: ClassVar[str] = "status"
    type: _MessageType
    data: list[StatusItem]


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True, tag_field="channel", tag="heartbeat",
                gc=False):
    """``{"channel": "heartbeat"}``: about one per second on an otherwise idle subscribed socket."""

    channel: ClassVar[str] = "heartbeat"


# --------------------------------------------------------------------------------------------
# Method responses: subscribe/unsubscribe acks (one per symbol) and pong.


class AckResult(msgspec.Struct, frozen=True, kw_only=True):
    """The subscription parameters Kraken echoes in a successful ack.

    Only the parameters relevant to market data are kept; ``symbol`` is absent for
    ``instrument``. ``warnings`` lists deprecation notices such as
    ``"timestamp is deprecated, use interval_begin"``.
    """

    channel: str
    symbol: str | None = None
    depth: int | None = None
    snapshot: bool | None = None
    interval: int | None = None
    event_trigger: str | None = None
    warnings: list[str] | None = None


class _Ack(msgspec.Struct, frozen=True, kw_only=True, tag_field="method"):
    """Shared shape of subscribe and unsubscribe acks.

    Success: ``success`` is true and ``result`` echoes the parameters. Failure: ``success`` is
    false, ``error`` is Kraken's text (``"Already subscribed"``, ``"Exceeded msg rate"``,
    ``"Currency pair not supported XBT/USD"``), ``symbol`` is top level and ``result`` is None.
    ``time_in``/``time_out`` are the server receive/send times (RFC3339); ``*_ns`` are the same
    as int ns (None when absent).
    """

    success: bool
    result: AckResult | None = None
    error: str | None = None
    symbol: str | None = None
    req_id: int | None = None
    time_in: str | None = None
    time_out: str | None = None
    time_in_ns: int | None = None
    time_out_ns: int | None = None

    def __post_init__(self) -> None:
        force_setattr(self, "time_in_ns", _optional_timestamp_ns(self.time_in, "time_in"))
        force_setattr(self, "time_out_ns", _optional_timestamp_ns(self.time_out, "time_out"))


class SubscribeAck(_Ack, frozen=True, kw_only=True, tag="subscribe"):
    """Response to ``{"method": "subscribe", ...}`` for one symbol (see :class:`_Ack` fields)."""

    method: ClassVar[str] = "subscribe"


class UnsubscribeAck(_Ack, frozen=True, kw_only=True, tag="unsubscribe"):
    """Response to ``{"method": "unsubscribe", ...}`` for one symbol (see :class:`_Ack` fields)."""

    method: ClassVar[str] = "unsubscribe"


class PongResult(msgspec.Struct, frozen=True, kw_only=True):
    """Optional ``result`` of a pong: only ``warnings`` is defined."""

    warnings: list[str] | None = None


class Pong(msgspec.Struct, frozen=True, kw_only=True, tag_field="method", tag="pong"):
    """Answer to an application ``ping``; ``req_id`` echoes the ping's id. The schema also allows
    ``success``/``error``/``result.warnings``."""

    method: ClassVar[str] = "pong"
    req_id: int | None = None
    success: bool | None = None
    error: str | None = None
    result: PongResult | None = None
    time_in: str | None = None
    time_out: str | None = None
    time_in_ns: int | None = None
    time_out_ns: int | None = None

    def __post_init__(self) -> None:
        force_setattr(self, "time_in_ns", _optional_timestamp_ns(self.time_in, "time_in"))
        force_setattr(self, "time_out_ns", _optional_timestamp_ns(self.time_out, "time_out"))


# --------------------------------------------------------------------------------------------
# book (L2). HARD CONTRACT with recorder.book: keep attribute names.
#
# The hot channels' structs are ``gc=False`` (fewer GC-tracked allocations per frame): they hold
# only strings, ints and lists of gc=False structs, so they can be part of no reference cycle
# unless a caller puts one inside its own lists.


class BookLevel(msgspec.Struct, frozen=True, gc=False):
    """One aggregated price level: ``price`` and ``qty`` tokens (``qty`` 0 deletes the level)."""

    price: Any
    qty: Any


class BookData(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The book of one symbol in one message.

    ``bids``/``asks`` are in wire order (snapshot: best first; update: only changed levels, apply
    in order). ``checksum`` is the uint32 CRC of the top 10 levels after applying the message.
    ``timestamp`` (RFC3339 µs) may be absent on old snapshots; ``ts_ns`` is it in int ns.
    Token types are checked here; token digits are checked by ``to_units`` in the book.
    """

    symbol: str
    bids: list[BookLevel]
    asks: list[BookLevel]
    checksum: _Checksum | None = None
    timestamp: str | None = None
    ts_ns: int | None = None

    def __post_init__(self) -> None:
        for level in self.bids + self.asks:
            _check_token_type(level.price, "price")
            _check_token_type(level.qty, "qty")
        if self.timestamp is not None:
            force_setattr(self, "ts_ns", _timestamp_ns(self.timestamp, "timestamp"))


class BookMessage(msgspec.Struct, frozen=True, kw_only=True, tag_field="channel", tag="book",
                  gc=False):
    """``book`` channel message: ``type`` is ``"snapshot"`` or ``"update"``; ``data`` holds one
    :class:`BookData` per symbol (Kraken sends exactly one)."""

    channel: ClassVar[str] = "book"
    type: _MessageType
    data: list[BookData]


# --------------------------------------------------------------------------------------------
# level3 (order by order). HARD CONTRACT with recorder.book: keep attribute names.


class Level3Order(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One visible resting order.

    ``event`` is ``"add"``, ``"modify"`` or ``"delete"`` in updates and None in snapshots.
    ``limit_price``/``order_qty`` are tokens (``order_qty`` = remaining visible quantity).
    ``timestamp`` (RFC3339 ns) is when the order was inserted or last amended; ``ts_ns`` is it
    in int ns.
    """

    order_id: str
    limit_price: Any
    order_qty: Any
    timestamp: str
    event: Literal["add", "modify", "delete"] | None = None
    #: Set by the enclosing :class:`Level3Data` (validated there, once per message).
    ts_ns: int = 0


class Level3Data(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The order book of one symbol in one level3 message (orders in wire order).

    ``checksum`` covers the top 10 levels after applying the message. ``timestamp`` is the
    engine's generation time (optional on the wire); ``ts_ns`` is it in int ns.
    """

    symbol: str
    bids: list[Level3Order]
    asks: list[Level3Order]
    checksum: _Checksum | None = None
    timestamp: str | None = None
    ts_ns: int | None = None

    def __post_init__(self) -> None:
        # The orders are validated here, by the message (a reject's location is the ``data``
        # item): the message timestamp first, then each order's tokens and timestamp, bids
        # then asks.
        if self.timestamp is not None:
            force_setattr(self, "ts_ns", _timestamp_ns(self.timestamp, "timestamp"))
        for order in self.bids + self.asks:
            _check_token_type(order.limit_price, "limit_price")
            _check_token_type(order.order_qty, "order_qty")
            force_setattr(order, "ts_ns", _timestamp_ns(order.timestamp, "timestamp"))


class Level3Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="channel",
                    tag="level3", gc=False):
    """``level3`` channel message: ``type`` snapshot/update, ``data`` one :class:`Level3Data`."""

    channel: ClassVar[str] = "level3"
    type: _MessageType
    data: list[Level3Data]


# --------------------------------------------------------------------------------------------
# trade, ohlc, ticker.


class Trade(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One trade. ``side`` is the taker side, ``ord_type`` the taker order type (``limit`` or
    ``market``), ``trade_id`` a per-symbol sequence number (consecutive ids = no gap)."""

    symbol: str
    side: Literal["buy", "sell"]
    price: Any
    qty: Any
    ord_type: str
    trade_id: int
    timestamp: str
    ts_ns: int = 0

    def __post_init__(self) -> None:
        _check_token(self.price, "price")
        _check_token(self.qty, "qty")
        force_setattr(self, "ts_ns", _timestamp_ns(self.timestamp, "timestamp"))


class TradeMessage(msgspec.Struct, frozen=True, kw_only=True, tag_field="channel", tag="trade"):
    """``trade`` channel message; ``data`` may batch several trades (snapshot: the last 50)."""

    channel: ClassVar[str] = "trade"
    type: _MessageType
    data: list[Trade]


class Candle(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One OHLC bar. ``interval_begin`` (RFC3339 ns) starts the bar; ``interval`` is in minutes;
    ``trades`` is the trade count. The deprecated per-bar ``timestamp`` is kept when present."""

    symbol: str
    open: Any
    high: Any
    low: Any
    close: Any
    vwap: Any
    volume: Any
    trades: int
    interval_begin: str
    interval: int
    timestamp: str | None = None
    interval_begin_ns: int = 0
    ts_ns: int | None = None

    def __post_init__(self) -> None:
        _check_token(self.open, "open")
        _check_token(self.high, "high")
        _check_token(self.low, "low")
        _check_token(self.close, "close")
        _check_token(self.vwap, "vwap")
        _check_token(self.volume, "volume")
        force_setattr(self, "interval_begin_ns",
                      _timestamp_ns(self.interval_begin, "interval_begin"))
        force_setattr(self, "ts_ns", _optional_timestamp_ns(self.timestamp, "timestamp"))


class OhlcMessage(msgspec.Struct, frozen=True, kw_only=True, tag_field="channel", tag="ohlc"):
    """``ohlc`` channel message; the top-level ``timestamp`` (RFC3339 ns) is generation time."""

    channel: ClassVar[str] = "ohlc"
    type: _MessageType
    data: list[Candle]
    timestamp: str | None = None
    ts_ns: int | None = None

    def __post_init__(self) -> None:
        force_setattr(self, "ts_ns", _optional_timestamp_ns(self.timestamp, "timestamp"))


class Ticker(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Level-1 summary: best bid/ask with quantities, last trade price and 24h statistics
    (``volume`` in base currency, ``change`` in quote currency, ``change_pct`` in percent)."""

    symbol: str
    bid: Any
    bid_qty: Any
    ask: Any
    ask_qty: Any
    last: Any
    volume: Any
    vwap: Any
    low: Any
    high: Any
    change: Any
    change_pct: Any
    timestamp: str | None = None
    ts_ns: int | None = None

    def __post_init__(self) -> None:
        for name in ("bid", "bid_qty", "ask", "ask_qty", "last", "volume", "vwap", "low", "high",
                     "change", "change_pct"):
            _check_token(getattr(self, name), name)
        force_setattr(self, "ts_ns", _optional_timestamp_ns(self.timestamp, "timestamp"))


class TickerMessage(msgspec.Struct, frozen=True, kw_only=True, tag_field="channel",
                    tag="ticker"):
    """``ticker`` channel message: ``data`` holds one :class:`Ticker`."""

    channel: ClassVar[str] = "ticker"
    type: _MessageType
    data: list[Ticker]


# --------------------------------------------------------------------------------------------
# instrument (reference data: every asset and pair).

_Precision: TypeAlias = Annotated[int, msgspec.Meta(ge=0)]


class Asset(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One asset. ``precision`` is the ledger precision, ``precision_display`` the UI one;
    ``collateral_value``/``margin_rate``/``multiplier`` are tokens (the latter two optional)."""

    id: str
    status: str
    precision: _Precision
    precision_display: _Precision
    borrowable: bool
    collateral_value: Any = None
    margin_rate: Any = None
    multiplier: Any = None

    def __post_init__(self) -> None:
        _check_optional_token(self.collateral_value, "collateral_value")
        _check_optional_token(self.margin_rate, "margin_rate")
        _check_optional_token(self.multiplier, "multiplier")


class Pair(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One tradable pair. ``price_precision``/``qty_precision`` are what the book checksum uses.

    Increments and minimums are exact tokens (``"1E-8"``, ``"0.00010000"``); margin fields are
    present only for marginable pairs; ``tick_size`` is the deprecated ``price_increment``.
    """

    symbol: str
    base: str
    quote: str
    status: str
    price_precision: _Precision
    qty_precision: _Precision
    cost_precision: _Precision
    price_increment: Any
    qty_increment: Any
    qty_min: Any
    cost_min: Any = None
    marginable: bool
    has_index: bool
    margin_initial: Any = None
    position_limit_long: Any = None
    position_limit_short: Any = None
    tick_size: Any = None

    def __post_init__(self) -> None:
        _check_token(self.price_increment, "price_increment")
        _check_token(self.qty_increment, "qty_increment")
        _check_token(self.qty_min, "qty_min")
        _check_optional_token(self.cost_min, "cost_min")
        _check_optional_token(self.margin_initial, "margin_initial")
        _check_optional_token(self.position_limit_long, "position_limit_long")
        _check_optional_token(self.position_limit_short, "position_limit_short")
        _check_optional_token(self.tick_size, "tick_size")


class InstrumentData(msgspec.Struct, frozen=True, kw_only=True):
    """All assets and pairs (snapshot) or the changed ones (update)."""

    assets: list[Asset]
    pairs: list[Pair]


class InstrumentMessage(msgspec.Struct, frozen=True, kw_only=True, tag_field="channel",
                        tag="instrument"):
    """``instrument`` channel message; unlike other channels ``data`` is one object."""

    channel: ClassVar[str] = "instrument"
    type: _MessageType
    data: InstrumentData


# --------------------------------------------------------------------------------------------
# Dispatch.

SpotData: TypeAlias = (StatusMessage | Heartbeat | BookMessage | Level3Message | TradeMessage
                       | OhlcMessage | TickerMessage | InstrumentMessage)
SpotResponse: TypeAlias = SubscribeAck | UnsubscribeAck | Pong
#: Everything :func:`decode_spot` can return besides a Reject.
SpotEvent: TypeAlias = SpotData | SpotResponse

#: ``channel`` values understood by :func:`decode_spot`.
SPOT_CHANNELS: Final = frozenset(
    ("status", "heartbeat", "book", "level3", "trade", "ohlc", "ticker", "instrument"))
#: ``method`` values understood by :func:`decode_spot`.
SPOT_METHODS: Final = frozenset(("subscribe", "unsubscribe", "pong"))

#: msgspec hands each non-integer JSON number to the float hook as its exact text; ``str``
#: keeps that text (the token).
_FLOAT_TEXT: Final = str
_DATA_DECODER: Final = msgspec.json.Decoder(SpotData, float_hook=_FLOAT_TEXT)
_RESPONSE_DECODER: Final = msgspec.json.Decoder(SpotResponse, float_hook=_FLOAT_TEXT)
_GENERIC_DECODER: Final = msgspec.json.Decoder(float_hook=_FLOAT_TEXT)


def decode_spot(frame: bytes | str, *,
                max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> SpotEvent | Reject:
    """Decode one Spot WS v2 frame into a typed event, or a :class:`Reject` describing why not.

    ``frame`` is the text frame as received (``bytes`` or ``str``). Frames longer than
    ``max_frame_bytes`` bytes are rejected without parsing. No exception escapes: anything
    malformed, unknown or unexpected becomes a Reject (see the module docstring for reasons)
    whose ``raw`` is the frame as bytes (a ``str`` frame is UTF-8 encoded, lone surrogates
    passed through).
    """
    try:
        if len(frame) > max_frame_bytes or (
                type(frame) is str and len(frame) * 4 > max_frame_bytes
                and len(frame.encode("utf-8", "surrogatepass")) > max_frame_bytes):
            return _reject(REJECT_TOO_LARGE, f"frame exceeds {max_frame_bytes} bytes", frame)
        if type(frame) is bytes:
            if not frame.isascii():
                frame.decode("utf-8")  # msgspec skips unknown fields without checking UTF-8
        elif type(frame) is not str:
            raise TypeError("not bytes or str")
        return _DATA_DECODER.decode(frame)
    except Exception:  # noqa: BLE001 - a response, unknown or invalid frame: classified below
        pass
    try:
        return _decode_uncommon(frame)
    except Exception as exc:  # noqa: BLE001 - the no-exception promise holds even for our bugs
        return _reject(REJECT_INTERNAL, f"{type(exc).__name__}: {exc}"[:200], frame)


def _decode_uncommon(frame: bytes | str) -> SpotEvent | Reject:
    """Slow path for everything that is not a well-formed data message."""
    if isinstance(frame, (bytes, bytearray, memoryview)):
        try:
            bytes(frame).decode("utf-8")
        except UnicodeDecodeError as exc:
            return _reject(REJECT_NOT_UTF8, f"invalid UTF-8 at byte {exc.start}", frame)
    elif isinstance(frame, str):
        try:
            frame.encode("utf-8")
        except UnicodeEncodeError as exc:
            return _reject(REJECT_NOT_UTF8, f"unencodable character at index {exc.start}", frame)
    else:
        return _reject(REJECT_SCHEMA, f"frame must be bytes or str, got {type(frame).__name__}",
                       frame)
    try:
        message = _GENERIC_DECODER.decode(frame)
    except msgspec.DecodeError as exc:
        return _reject(REJECT_MALFORMED_JSON, str(exc), frame)
    except RecursionError:
        return _reject(REJECT_MALFORMED_JSON, "nesting too deep", frame)
    if not isinstance(message, dict):
        return _reject(REJECT_UNKNOWN_MESSAGE, f"top level is a JSON {_json_kind(message)}",
                       frame)
    if "channel" in message:
        channel = message["channel"]
        if not isinstance(channel, str) or channel not in SPOT_CHANNELS:
            return _reject(REJECT_UNKNOWN_MESSAGE, f"unknown channel {_short(channel)}", frame)
        decoder: msgspec.json.Decoder[Any] = _DATA_DECODER
    elif "method" in message:
        method = message["method"]
        if not isinstance(method, str) or method not in SPOT_METHODS:
            return _reject(REJECT_UNKNOWN_MESSAGE, f"unknown method {_short(method)}", frame)
        decoder = _RESPONSE_DECODER
    else:
        return _reject(REJECT_UNKNOWN_MESSAGE, "object has neither `channel` nor `method`", frame)
    try:
        return decoder.decode(frame)
    except msgspec.ValidationError as exc:
        return _reject_invalid(str(exc), frame)


def _reject_invalid(detail: str, frame: bytes | str) -> Reject:
    """Map a msgspec ValidationError message to a reason code (our own prefixes first)."""
    for reason in (REJECT_BAD_NUMBER, REJECT_BAD_TIMESTAMP):
        if detail.startswith(reason + ": "):
            return _reject(reason, detail[len(reason) + 2:], frame)
    return _reject(REJECT_SCHEMA, detail, frame)


def _reject(reason: str, detail: str, frame: object) -> Reject:
    return Reject(reason=reason, detail=detail, raw=_raw_bytes(frame))


def _raw_bytes(frame: object) -> bytes:
    if isinstance(frame, bytes):
        return frame
    if isinstance(frame, str):
        return frame.encode("utf-8", "surrogatepass")
    if isinstance(frame, (bytearray, memoryview)):
        return bytes(frame)
    return repr(frame).encode("utf-8", "backslashreplace")


def _json_kind(value: object) -> str:
    return {list: "array", str: "string or non-integer number", int: "integer",
            bool: "boolean"}.get(type(value), "null")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHORT_REPR_CHARS else text[:_SHORT_REPR_CHARS] + "..."


_TS_KEY: Final = b'"timestamp":"'


def exchange_time_ns(payload: bytes) -> int | None:
    """The latest exchange time a spot or futures data frame carries, without decoding it (for
    capture's exchange->receive lag metric, sampled; never for data): the last ``timestamp``
    (book, level3, trade data carry it last), except on ``ohlc``, whose bars carry a deprecated
    ``timestamp`` at the bar's *end* (in the future): there the message-level generation time,
    which comes first. ``None`` when the frame has no readable one."""
    if payload.startswith(b'{"channel":"ohlc"'):
        i = payload.find(_TS_KEY)
    else:
        i = payload.rfind(_TS_KEY)
    if i < 0:
        return None
    j = payload.find(b'"', i + len(_TS_KEY))
    try:
        return rfc3339_to_ns(payload[i + len(_TS_KEY):j].decode("ascii"))
    except (TimestampError, UnicodeDecodeError, ValueError):
        return None
