"""Kraken Futures WebSocket v1 (``wss://futures.kraken.com/ws/v1``) frames to typed events.

One entry point, :func:`decode_futures`, turns a received (or sent) text frame into one of the
event Structs below or a :class:`~recorder.protocol.reject.Reject`. It never raises.

Two families share the socket:

* control events keyed by ``"event"``: ``info``, ``subscribe``/``unsubscribe`` requests,
  ``subscribed``/``unsubscribed``/``subscribed_failed``/``unsubscribed_failed`` acks,
  ``error``, ``alert`` and ``challenge``;
* data messages keyed by ``"feed"``: ``book_snapshot``, ``book``, ``trade_snapshot``,
  ``trade``, ``ticker``, ``ticker_lite`` and ``heartbeat``.

Numbers stay exact: Futures sends JSON floats, which are kept as their JSON text (``"34892.5"``,
``"-6.2604214e-11"``) and JSON integers as ``int`` — the number *tokens* of
:mod:`recorder.protocol.numbers`. Times are integer epoch milliseconds on the wire and kept as
such in ``*_ms`` fields; every one has a ``*_ns`` property. A number sent as a JSON *string*
is accepted only if its text is a valid JSON number (it is then kept as that text). Product ids are kept exactly as sent
(old captures and client requests use lower case); ``canonical_product_id`` upper-cases them.

Reject reasons: ``too_large``, ``bad_encoding`` (not UTF-8), ``malformed_json``,
``unknown_message`` (valid JSON but not a known event/feed), ``schema`` (known message, wrong
shape or types), ``bad_number`` (a number field holding something that is not a number),
``bad_timestamp`` (a millisecond time outside the int64-nanosecond range), ``not_a_frame``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Final, Literal, TypeAlias

import msgspec

from recorder.protocol.errors import NumberError
from recorder.protocol.numbers import token_to_text
from recorder.protocol.reject import Reject, utf8_error_offset
from recorder.protocol.timestamps import INT64_MAX

__all__ = [
    "MAX_FRAME_BYTES",
    "FuturesInfo",
    "FuturesSubscribeRequest",
    "FuturesUnsubscribeRequest",
    "FuturesSubscribed",
    "FuturesUnsubscribed",
    "FuturesSubscribeFailed",
    "FuturesUnsubscribeFailed",
    "FuturesError",
    "FuturesAlert",
    "FuturesChallenge",
    "FuturesLevel",
    "FuturesBookSnapshot",
    "FuturesBookDelta",
    "FuturesTrade",
    "FuturesTradeSnapshot",
    "FuturesTicker",
    "FuturesTickerLite",
    "FuturesHeartbeat",
    "FuturesControl",
    "FuturesData",
    "FuturesEvent",
    "KNOWN_TRADE_TYPES",
    "decode_futures",
    "normalise_product_id",
]

#: Frames larger than this are rejected unread (a full-depth futures snapshot is ~20 KB).
MAX_FRAME_BYTES: Final = 4 * 1024 * 1024
#: Trade ``type`` values Kraken documents; other text is kept as sent, not rejected.
KNOWN_TRADE_TYPES: Final = frozenset({"fill", "liquidation", "termination", "block"})

_NS_PER_MS: Final = 1_000_000
_MAX_MS: Final = INT64_MAX // _NS_PER_MS
_MAX_TOKEN_CHARS: Final = 64
_INT_LIMIT: Final = 10**38
#: Quote characters in a book delta whose only strings are its keys, feed, product_id and side.
_DELTA_QUOTES: Final = 20
_JSON_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")

Seq = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
Side = Literal["buy", "sell"]


def normalise_product_id(product_id: str) -> str:
    """Canonical (upper-case) form of a Futures product id: ``"pi_xbtusd"`` -> ``"PI_XBTUSD"``."""
    return product_id.upper()


def _ns(ms: int | None) -> int | None:
    return None if ms is None else ms * _NS_PER_MS


# --------------------------------------------------------------------------- control events


class _Control(msgspec.Struct, frozen=True, kw_only=True, tag_field="event"):
    """Base of the ``{"event": ...}`` messages."""


class FuturesInfo(_Control, tag="info"):
    """``{"event": "info", "version": 1}``, sent by the server on connect."""

    version: int | None = None


class _SubscriptionRequest(_Control):
    feed: str
    product_ids: tuple[str, ...] = ()
    api_key: str | None = None
    original_challenge: str | None = None
    signed_challenge: str | None = None


class FuturesSubscribeRequest(_SubscriptionRequest, tag="subscribe"):
    """A client ``subscribe`` request (seen in captures and by the simulator)."""


class FuturesUnsubscribeRequest(_SubscriptionRequest, tag="unsubscribe"):
    """A client ``unsubscribe`` request."""


class _SubscriptionAck(_Control):
    feed: str | None = None
    product_ids: tuple[str, ...] = ()
    message: str | None = None


class FuturesSubscribed(_SubscriptionAck, tag="subscribed"):
    """Ack of a subscription; Kraken sends one per product, product ids upper-cased."""


class FuturesUnsubscribed(_SubscriptionAck, tag="unsubscribed"):
    """Ack of an unsubscription."""


class FuturesSubscribeFailed(_SubscriptionAck, tag="subscribed_failed"):
    """A subscription Kraken refused."""


class FuturesUnsubscribeFailed(_SubscriptionAck, tag="unsubscribed_failed"):
    """An unsubscription Kraken refused."""


class FuturesError(_Control, tag="error"):
    """``{"event": "error", "message": "Invalid product id"}`` (also ``Invalid feed``, ``Json Error``)."""

    message: str = ""


class FuturesAlert(_Control, tag="alert"):
    """``{"event": "alert", "message": ...}``: observed instead of ``error`` for bad products."""

    message: str = ""


class FuturesChallenge(_Control, tag="challenge"):
    """Challenge request (``api_key``) or the server's reply (``message`` = the challenge uuid)."""

    message: str | None = None
    api_key: str | None = None


FuturesControl: TypeAlias = (
    FuturesInfo
    | FuturesSubscribeRequest
    | FuturesUnsubscribeRequest
    | FuturesSubscribed
    | FuturesUnsubscribed
    | FuturesSubscribeFailed
    | FuturesUnsubscribeFailed
    | FuturesError
    | FuturesAlert
    | FuturesChallenge
)

# ----------------------------------------------------------------------------- data feeds


class _Data(msgspec.Struct, frozen=True, kw_only=True, tag_field="feed"):
    """Base of the ``{"feed": ...}`` messages.

    ``_numbers`` name required number-token fields, ``_optional_numbers`` number fields that may
    be ``None`` (absent or JSON null) and ``_millis`` epoch-millisecond fields; all are checked
    after decoding.
    """

    _numbers: ClassVar[tuple[str, ...]] = ()
    _optional_numbers: ClassVar[tuple[str, ...]] = ()
    _millis: ClassVar[tuple[str, ...]] = ()


class _ProductData(_Data):
    product_id: str

    @property
    def canonical_product_id(self) -> str:
        """``product_id`` upper-cased (old captures may carry lower-case ids)."""
        return self.product_id.upper()


class FuturesLevel(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One snapshot level: price and absolute quantity as number tokens."""

    price: Any
    qty: Any


class FuturesBookSnapshot(_ProductData, tag="book_snapshot"):
    """Full-depth book of one product; the first delta after it has ``seq`` = this ``seq`` + 1."""

    timestamp_ms: int = msgspec.field(name="timestamp")
    seq: Seq
    tick_size: Any = msgspec.field(default=None, name="tickSize")
    bids: tuple[FuturesLevel, ...] = ()
    asks: tuple[FuturesLevel, ...] = ()

    _optional_numbers: ClassVar[tuple[str, ...]] = ("tick_size",)
    _millis: ClassVar[tuple[str, ...]] = ("timestamp_ms",)

    @property
    def timestamp_ns(self) -> int:
        return self.timestamp_ms * _NS_PER_MS


class FuturesBookDelta(_ProductData, tag="book"):
    """One level change: ``qty`` is the new absolute quantity (0 removes the level)."""

    side: Side
    seq: Seq
    price: Any
    qty: Any
    timestamp_ms: int = msgspec.field(name="timestamp")

    _numbers: ClassVar[tuple[str, ...]] = ("price", "qty")
    _millis: ClassVar[tuple[str, ...]] = ("timestamp_ms",)

    @property
    def timestamp_ns(self) -> int:
        return self.timestamp_ms * _NS_PER_MS


class FuturesTrade(_ProductData, tag="trade"):
    """One trade; ``side`` is the taker side, ``seq`` a per-product trade counter."""

    uid: str
    side: Side
    type: str
    seq: Seq
    time_ms: int = msgspec.field(name="time")
    qty: Any
    price: Any

    _numbers: ClassVar[tuple[str, ...]] = ("price", "qty")
    _millis: ClassVar[tuple[str, ...]] = ("time_ms",)

    @property
    def time_ns(self) -> int:
        return self.time_ms * _NS_PER_MS


class FuturesTradeSnapshot(_ProductData, tag="trade_snapshot"):
    """Recent trades of one product, newest first, with consecutive descending ``seq``."""

    trades: tuple[FuturesTrade, ...]


class FuturesTicker(_ProductData, tag="ticker"):
    """Full ticker (every field resent each time). Funding fields exist for perpetuals only."""

    time_ms: int = msgspec.field(name="time")
    bid: Any = None
    ask: Any = None
    bid_size: Any = None
    ask_size: Any = None
    volume: Any = None
    volume_quote: Any = msgspec.field(default=None, name="volumeQuote")
    dtm: Any = None
    leverage: str | None = None
    index: Any = None
    premium: Any = None
    last: Any = None
    change: Any = None
    open: Any = None
    high: Any = None
    low: Any = None
    suspended: bool | None = None
    post_only: bool | None = None
    tag: str | None = None
    pair: str | None = None
    open_interest: Any = msgspec.field(default=None, name="openInterest")
    mark_price: Any = msgspec.field(default=None, name="markPrice")
    maturity_time_ms: int | None = msgspec.field(default=None, name="maturityTime")
    funding_rate: Any = None
    funding_rate_prediction: Any = None
    relative_funding_rate: Any = None
    relative_funding_rate_prediction: Any = None
    next_funding_rate_time_ms: int | None = msgspec.field(default=None, name="next_funding_rate_time")
    greeks: dict[str, Any] | None = None

    _optional_numbers: ClassVar[tuple[str, ...]] = (
        "bid", "ask", "bid_size", "ask_size", "volume", "volume_quote", "dtm", "index", "premium",
        "last", "change", "open", "high", "low", "open_interest", "mark_price", "funding_rate",
        "funding_rate_prediction", "relative_funding_rate", "relative_funding_rate_prediction",
    )
    _millis: ClassVar[tuple[str, ...]] = ("time_ms", "maturity_time_ms", "next_funding_rate_time_ms")

    @property
    def time_ns(self) -> int:
        return self.time_ms * _NS_PER_MS

    @property
    def maturity_time_ns(self) -> int | None:
        return _ns(self.maturity_time_ms)

    @property
    def next_funding_rate_time_ns(self) -> int | None:
        return _ns(self.next_funding_rate_time_ms)


class FuturesTickerLite(_ProductData, tag="ticker_lite"):
    """Reduced ticker (no time field of its own)."""

    bid: Any = None
    ask: Any = None
    change: Any = None
    premium: Any = None
    volume: Any = None
    tag: str | None = None
    pair: str | None = None
    dtm: Any = None
    maturity_time_ms: int | None = msgspec.field(default=None, name="maturityTime")

    _optional_numbers: ClassVar[tuple[str, ...]] = (
        "bid", "ask", "change", "premium", "volume", "dtm")
    _millis: ClassVar[tuple[str, ...]] = ("maturity_time_ms",)

    @property
    def maturity_time_ns(self) -> int | None:
        return _ns(self.maturity_time_ms)


class FuturesHeartbeat(_Data, tag="heartbeat"):
    """``{"feed": "heartbeat", "time": <ms>}`` (an explicit subscription on Futures)."""

    time_ms: int = msgspec.field(name="time")

    _millis: ClassVar[tuple[str, ...]] = ("time_ms",)

    @property
    def time_ns(self) -> int:
        return self.time_ms * _NS_PER_MS


FuturesData: TypeAlias = (
    FuturesBookSnapshot
    | FuturesBookDelta
    | FuturesTrade
    | FuturesTradeSnapshot
    | FuturesTicker
    | FuturesTickerLite
    | FuturesHeartbeat
)
FuturesEvent: TypeAlias = FuturesControl | FuturesData

# ------------------------------------------------------------------------------- decoding


class _Envelope(msgspec.Struct):
    """What a frame claims to be; decoded only to classify a frame that failed to decode."""

    event: Any = None
    feed: Any = None


_CONTROL_DECODER: Final = msgspec.json.Decoder(FuturesControl, float_hook=str)
_DATA_DECODER: Final = msgspec.json.Decoder(FuturesData, float_hook=str)
_ENVELOPE_DECODER: Final = msgspec.json.Decoder(_Envelope, float_hook=str)
_EVENT_NAMES: Final = frozenset(cls.__struct_config__.tag for cls in FuturesControl.__args__)
_FEED_NAMES: Final = frozenset(cls.__struct_config__.tag for cls in FuturesData.__args__)


def _is_token(value: Any) -> bool:
    """True if ``value`` is a number token: exact JSON number text or a bounded ``int``.

    Floats arrive as their JSON text via ``float_hook``; the check guards against JSON
    *strings* (which also decode to ``str``) that do not spell a number.
    """
    kind = type(value)
    if kind is str:
        if len(value) > _MAX_TOKEN_CHARS or _is_number_text(value) is None:
            return False
        return not ("e" in value or "E" in value) or _exponent_in_range(value)
    return kind is int and -_INT_LIMIT < value < _INT_LIMIT


_is_number_text: Final = _JSON_NUMBER.fullmatch


def _exponent_in_range(text: str) -> bool:
    """Exponent forms the rest of the recorder can render exactly (``1E+999999999`` cannot:
    :func:`~recorder.protocol.numbers.token_to_text` refuses it)."""
    try:
        token_to_text(text)
    except NumberError:
        return False
    return True


def _check_fields(msg: _Data) -> tuple[str, str] | None:
    """Return ``(reason, detail)`` for the first invalid number or millisecond field, else None."""
    for name in msg._numbers:
        value = getattr(msg, name)
        if not _is_token(value):
            return "bad_number", f"{name} is not a number: {str(value)[:64]!r}"
    for name in msg._optional_numbers:
        value = getattr(msg, name)
        if value is not None and not _is_token(value):
            return "bad_number", f"{name} is not a number: {str(value)[:64]!r}"
    for name in msg._millis:
        value = getattr(msg, name)
        if value is not None and not 0 <= value <= _MAX_MS:
            return "bad_timestamp", f"{name} out of range: {value!r}"
    return None


def _check_book_delta(msg: FuturesBookDelta) -> tuple[str, str] | None:
    """The hot path (most Futures traffic), unrolled."""
    if _is_token(msg.price) and _is_token(msg.qty) and 0 <= msg.timestamp_ms <= _MAX_MS:
        return None
    return _check_fields(msg)


def _check_book_snapshot(msg: FuturesBookSnapshot) -> tuple[str, str] | None:
    problem = _check_fields(msg)
    if problem is not None:
        return problem
    for side_name, levels in (("bids", msg.bids), ("asks", msg.asks)):
        for i, level in enumerate(levels):
            if not (_is_token(level.price) and _is_token(level.qty)):
                return "bad_number", f"{side_name}[{i}] is not a (price, qty) of numbers"
    return None


def _check_trade_snapshot(msg: FuturesTradeSnapshot) -> tuple[str, str] | None:
    for i, trade in enumerate(msg.trades):
        problem = _check_fields(trade)
        if problem is not None:
            return problem[0], f"trades[{i}].{problem[1]}"
    return None


_CHECKS: Final[dict[type, Callable[[Any], tuple[str, str] | None]]] = {
    FuturesBookDelta: _check_book_delta,
    FuturesBookSnapshot: _check_book_snapshot,
    FuturesTradeSnapshot: _check_trade_snapshot,
}


def _validated(msg: FuturesData, raw: bytes) -> FuturesData | Reject:
    """Semantic checks msgspec cannot express (number tokens, time ranges), nested included."""
    problem = _CHECKS.get(type(msg), _check_fields)(msg)
    if problem is None:
        return msg
    return Reject(reason=problem[0], detail=problem[1], raw=raw)


def _as_bytes(frame: object) -> bytes | None:
    if type(frame) is bytes:
        return frame  # type: ignore[return-value]
    if isinstance(frame, str):
        return frame.encode("utf-8", "surrogatepass")
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return bytes(frame)
    return None


def decode_futures(frame: bytes | str, *, max_bytes: int = MAX_FRAME_BYTES) -> FuturesEvent | Reject:
    """Decode one Futures WS v1 frame into a typed event, or a :class:`Reject`; never raises."""
    raw = frame if type(frame) is bytes else _as_bytes(frame)
    if raw is None:
        return Reject(reason="not_a_frame", detail=f"frame is {type(frame).__name__}", raw=b"")
    if len(raw) > max_bytes:
        return Reject(reason="too_large", detail=f"{len(raw)} bytes > {max_bytes}", raw=raw)
    try:
        try:
            msg = _DATA_DECODER.decode(raw)
        except msgspec.ValidationError:
            return _decode_slow(raw)
        if type(msg) is FuturesBookDelta and raw.count(b'"') == _DELTA_QUOTES:
            # Hot path (most Futures traffic). A delta's 7 required keys and 3 string values
            # need exactly 20 quote characters, so with 20 there is no JSON *string* anywhere
            # else: a ``str`` price/qty can only be float_hook's JSON number text. What is
            # left to check is the JSON type (not null/bool/array), int bounds, token length
            # and the time range. Anything else takes the full validation below.
            price, qty = msg.price, msg.qty
            if (
                (type(price) is str and len(price) <= _MAX_TOKEN_CHARS)
                or (type(price) is int and -_INT_LIMIT < price < _INT_LIMIT)
            ) and (
                (type(qty) is str and len(qty) <= _MAX_TOKEN_CHARS)
                or (type(qty) is int and -_INT_LIMIT < qty < _INT_LIMIT)
            ) and 0 <= msg.timestamp_ms <= _MAX_MS:
                return msg
        return _validated(msg, raw)
    except UnicodeDecodeError as exc:
        return Reject(reason="bad_encoding", detail=str(exc), raw=raw)
    except msgspec.DecodeError as exc:
        bad_byte = utf8_error_offset(raw)
        if bad_byte is not None:
            return Reject(reason="bad_encoding", detail=f"invalid UTF-8 at byte {bad_byte}",
                          raw=raw)
        return Reject(reason="malformed_json", detail=str(exc), raw=raw)
    except Exception as exc:  # pragma: no cover - defensive: the no-raise contract comes first
        return Reject(reason="internal", detail=f"{type(exc).__name__}: {exc}", raw=raw)


def _decode_slow(raw: bytes) -> FuturesEvent | Reject:
    """Classify and decode a control frame or a data frame that failed the fast path."""
    try:
        envelope = _ENVELOPE_DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        return Reject(reason="unknown_message", detail=f"not a JSON object: {exc}", raw=raw)
    if envelope.event is not None:
        if not isinstance(envelope.event, str) or envelope.event not in _EVENT_NAMES:
            return Reject(reason="unknown_message", detail=f"event {envelope.event!r}", raw=raw)
        try:
            return _CONTROL_DECODER.decode(raw)
        except msgspec.ValidationError as exc:
            return Reject(reason="schema", detail=f"{envelope.event}: {exc}", raw=raw)
    if envelope.feed is None:
        return Reject(reason="unknown_message", detail="neither 'event' nor 'feed'", raw=raw)
    if not isinstance(envelope.feed, str) or envelope.feed not in _FEED_NAMES:
        return Reject(reason="unknown_message", detail=f"feed {str(envelope.feed)[:64]!r}", raw=raw)
    try:
        msg = _DATA_DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        return Reject(reason="schema", detail=f"{envelope.feed}: {exc}", raw=raw)
    return _validated(msg, raw)
