"""Kraken REST response bodies (Spot ``/0/...`` and Futures ``/derivatives/api/v3/...``) to Structs.

Every ``decode_*`` function takes the body exactly as received (``bytes`` or ``str``) and returns
the typed result, a :class:`RestError` when Kraken reported an error, or a
:class:`~recorder.protocol.reject.Reject` when the body is not what the endpoint sends. Nothing
raises.

Spot bodies are ``{"error": [...], "result": ...}``; a non-empty ``error`` list with an
``E``-severity entry makes a :class:`RestError` (e.g. ``EAPI:Rate limit exceeded``,
``EService: Throttled: <unix ts>`` whose timestamp becomes ``retry_after_ns``). Futures bodies
are ``{"result": "success" | "error", "serverTime": ..., "error": "<code>", ...}``.

Numbers stay exact tokens (:mod:`recorder.protocol.numbers`): Spot sends decimal strings, kept
as the ``str``; Futures sends JSON numbers, kept as their JSON text (floats) or ``int``. Times
are kept as sent and exposed as int nanoseconds through ``*_ns`` properties; they are validated
during decoding, so those properties never raise.

Reject reasons: ``too_large``, ``bad_encoding``, ``malformed_json``, ``schema``, ``bad_number``,
``bad_timestamp``, ``not_a_frame``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec

from recorder.protocol.errors import NumberError, TimestampError
from recorder.protocol.numbers import MAX_PRECISION, decimals_of, token_to_text
from recorder.protocol.reject import Reject, utf8_error_offset
from recorder.protocol.timestamps import (
    INT64_MAX,
    epoch_seconds_to_ns,
    rfc3339_to_ns,
)

__all__ = [
    "MAX_BODY_BYTES",
    "RestError",
    "AssetPair",
    "AssetPairs",
    "DepthLevel",
    "DepthSnapshot",
    "RestTrade",
    "TradesPage",
    "OhlcBar",
    "OhlcPage",
    "ServerTime",
    "SystemStatus",
    "WebSocketsToken",
    "Level3Order",
    "Level3Snapshot",
    "FuturesRestLevel",
    "FuturesOrderBook",
    "FuturesInstrument",
    "FuturesInstruments",
    "FuturesRestTicker",
    "FuturesTickers",
    "parse_spot_error",
    "decode_asset_pairs",
    "decode_depth",
    "decode_trades",
    "decode_ohlc",
    "decode_server_time",
    "decode_system_status",
    "decode_websockets_token",
    "decode_level3",
    "decode_futures_orderbook",
    "decode_futures_instruments",
    "decode_futures_tickers",
]

#: Bodies larger than this are rejected unread (a full AssetPairs response is ~1.5 MB).
MAX_BODY_BYTES: Final = 64 * 1024 * 1024

_NS_PER_S: Final = 1_000_000_000
Decimals = Annotated[int, msgspec.Meta(ge=0, le=MAX_PRECISION)]
T = TypeVar("T")


class _Invalid(Exception):
    """Internal: a decoded body failed a semantic check; becomes a Reject."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _number(value: Any, where: str) -> None:
    """Require a number token (decimal text or int; JSON floats arrive as their text)."""
    try:
        token_to_text(value)
        if type(value) is str and not value.isascii():  # \d would admit non-ASCII digits
            raise NumberError(value)
    except NumberError:
        raise _Invalid("bad_number", f"{where} is not a number: {str(value)[:64]!r}") from None


def _optional_number(value: Any, where: str) -> None:
    if value is not None:
        _number(value, where)


def _rfc3339(text: str | None, where: str) -> None:
    if text is not None:
        try:
            rfc3339_to_ns(text)
        except TimestampError as exc:
            raise _Invalid("bad_timestamp", f"{where}: {exc}") from None


def _ns_or_none(text: str | None) -> int | None:
    return None if text is None else rfc3339_to_ns(text)


# -------------------------------------------------------------------------------- errors


class RestError(msgspec.Struct, frozen=True, kw_only=True):
    """An error Kraken reported in a REST body.

    Spot ``"EService: Throttled: 1700000000"`` becomes ``severity="E"``, ``category="Service"``,
    ``message="Throttled"``, ``detail="1700000000"``, ``retry_after_ns=1700000000 * 10**9``.
    Futures ``{"result": "error", "error": "apiLimitExceeded"}`` becomes ``venue="futures"``,
    ``category=""``, ``message="apiLimitExceeded"``. ``text`` is the first error exactly as sent,
    ``others`` any further error strings.
    """

    venue: Literal["spot", "futures"]
    severity: str
    category: str
    message: str
    detail: str | None = None
    text: str
    retry_after_ns: int | None = None
    server_time_ns: int | None = None
    others: tuple[str, ...] = ()

    @property
    def is_rate_limited(self) -> bool:
        """True for the throttling family: back off before retrying."""
        return (self.category, self.message) in _RATE_LIMITS


_RATE_LIMITS: Final = frozenset({
    ("API", "Rate limit exceeded"),
    ("General", "Too many requests"),
    ("General", "Temporary lockout"),
    ("Service", "Throttled"),
    ("Order", "Rate limit exceeded"),
    ("", "apiLimitExceeded"),
})
_SPOT_ERROR: Final = re.compile(r"([EW])([A-Za-z]+):\s*(.*)", re.DOTALL)
_THROTTLE_TS: Final = re.compile(r"\d{1,12}(?:\.\d{1,9})?")


def parse_spot_error(text: str, others: tuple[str, ...] = ()) -> RestError:
    """Split one Spot error string ``<E|W><category>:<message>[:<detail>]`` into its parts."""
    match = _SPOT_ERROR.fullmatch(text)
    if match is None:
        return RestError(venue="spot", severity="", category="", message=text.strip(), text=text,
                         others=others)
    severity, category, rest = match.groups()
    message, colon, detail = rest.partition(":")
    message, detail_text = message.strip(), detail.strip() if colon else None
    retry_after_ns = None
    if (category, message) == ("Service", "Throttled") and detail_text:
        if _THROTTLE_TS.fullmatch(detail_text):
            retry_after_ns = epoch_seconds_to_ns(detail_text)
    return RestError(venue="spot", severity=severity, category=category, message=message,
                     detail=detail_text, text=text, retry_after_ns=retry_after_ns, others=others)


# ------------------------------------------------------------------------- common plumbing


class _SpotEnvelope(msgspec.Struct):
    error: tuple[str, ...] = ()
    result: msgspec.Raw = msgspec.Raw()


class _FuturesEnvelope(msgspec.Struct, rename="camel"):
    result: str
    error: Any = None
    server_time: str | None = None


_SPOT_ENVELOPE: Final = msgspec.json.Decoder(_SpotEnvelope)
_FUTURES_ENVELOPE: Final = msgspec.json.Decoder(_FuturesEnvelope)


def _as_bytes(body: object) -> bytes | None:
    if type(body) is bytes:
        return body  # type: ignore[return-value]
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    return None


def _guarded(raw_body: object, work: Callable[[bytes], T]) -> T | Reject:
    """Run ``work`` on the body bytes, turning every failure into a Reject."""
    raw = _as_bytes(raw_body)
    if raw is None:
        return Reject(reason="not_a_frame", detail=f"body is {type(raw_body).__name__}", raw=b"")
    if len(raw) > MAX_BODY_BYTES:
        return Reject(reason="too_large", detail=f"{len(raw)} bytes > {MAX_BODY_BYTES}", raw=raw)
    try:
        return work(raw)
    except _Invalid as exc:
        return Reject(reason=exc.reason, detail=exc.detail, raw=raw)
    except UnicodeDecodeError as exc:
        return Reject(reason="bad_encoding", detail=str(exc), raw=raw)
    except msgspec.ValidationError as exc:
        return Reject(reason="schema", detail=str(exc), raw=raw)
    except msgspec.DecodeError as exc:
        bad_byte = utf8_error_offset(raw)
        if bad_byte is not None:
            return Reject(reason="bad_encoding", detail=f"invalid UTF-8 at byte {bad_byte}",
                          raw=raw)
        return Reject(reason="malformed_json", detail=str(exc), raw=raw)
    except NumberError as exc:
        return Reject(reason="bad_number", detail=str(exc), raw=raw)
    except TimestampError as exc:
        return Reject(reason="bad_timestamp", detail=str(exc), raw=raw)
    except Exception as exc:  # pragma: no cover - defensive: the no-raise contract comes first
        return Reject(reason="internal", detail=f"{type(exc).__name__}: {exc}", raw=raw)


def _spot(body: object, decode_result: Callable[[msgspec.Raw], T]) -> T | RestError | Reject:
    """Decode a Spot envelope; errors become RestError, the result goes to ``decode_result``."""

    def work(raw: bytes) -> T | RestError:
        envelope = _SPOT_ENVELOPE.decode(raw)
        errors = tuple(e for e in envelope.error if not e.startswith("W"))
        if errors:
            return parse_spot_error(errors[0], errors[1:])
        if bytes(envelope.result) in (b"", b"null"):
            raise _Invalid("schema", "neither error nor result")
        return decode_result(envelope.result)

    return _guarded(body, work)


def _futures(body: object, decode_success: Callable[[bytes], T]) -> T | RestError | Reject:
    """Decode a Futures body: ``result == "error"`` becomes RestError, success goes on."""

    def work(raw: bytes) -> T | RestError:
        envelope = _FUTURES_ENVELOPE.decode(raw)
        _rfc3339(envelope.server_time, "serverTime")
        if envelope.result != "success":
            code = envelope.error if isinstance(envelope.error, str) else str(envelope.error)
            return RestError(venue="futures", severity="E", category="", message=code, text=code,
                             server_time_ns=_ns_or_none(envelope.server_time))
        return decode_success(raw)

    return _guarded(body, work)


# --------------------------------------------------------------------------- Spot: AssetPairs


class AssetPair(msgspec.Struct, frozen=True, kw_only=True):
    """One tradable pair. ``pair_decimals`` = price decimals, ``lot_decimals`` = volume decimals.

    ``ordermin``, ``costmin`` and ``tick_size`` are the exact decimal strings Kraken sent
    (absent on old responses). Fee schedules are not kept.
    """

    altname: str
    wsname: str | None = None
    aclass_base: str | None = None
    base: str
    aclass_quote: str | None = None
    quote: str
    lot: str | None = None
    pair_decimals: Decimals
    lot_decimals: Decimals
    cost_decimals: Decimals | None = None
    lot_multiplier: int | None = None
    leverage_buy: tuple[int, ...] = ()
    leverage_sell: tuple[int, ...] = ()
    fee_volume_currency: str | None = None
    margin_call: int | None = None
    margin_stop: int | None = None
    ordermin: str | None = None
    costmin: str | None = None
    tick_size: str | None = None
    status: str | None = None
    execution_venue: str | None = None
    long_position_limit: int | None = None
    short_position_limit: int | None = None


class AssetPairs(msgspec.Struct, frozen=True, kw_only=True):
    """``pairs`` by Kraken's canonical key (``XXBTZUSD``); legacy dark-pool ``*.d`` keys skipped."""

    pairs: dict[str, AssetPair]
    skipped_keys: tuple[str, ...] = ()

    def by_wsname(self) -> dict[str, str]:
        """``wsname`` (``"XBT/USD"``) -> canonical key, for pairs that have one."""
        return {p.wsname: key for key, p in self.pairs.items() if p.wsname is not None}


_ASSET_PAIRS: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ASSET_PAIR: Final = msgspec.json.Decoder(AssetPair, float_hook=str)


def decode_asset_pairs(body: bytes | str) -> AssetPairs | RestError | Reject:
    """``GET /0/public/AssetPairs``."""

    def result(raw: msgspec.Raw) -> AssetPairs:
        pairs: dict[str, AssetPair] = {}
        skipped: list[str] = []
        for key, item in _ASSET_PAIRS.decode(raw).items():
            if key.endswith(".d"):
                skipped.append(key)
                continue
            try:
                pair = _ASSET_PAIR.decode(item)
            except msgspec.ValidationError as exc:
                raise _Invalid("schema", f"{key}: {exc}") from None
            for name in ("ordermin", "costmin", "tick_size"):
                _optional_number(getattr(pair, name), f"{key}.{name}")
            pairs[key] = pair
        return AssetPairs(pairs=pairs, skipped_keys=tuple(skipped))

    return _spot(body, result)


# -------------------------------------------------------------------------------- Spot: Depth


class DepthLevel(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """``[price, volume, timestamp]``: decimal strings and integer epoch seconds."""

    price: str
    volume: str
    timestamp: int

    @property
    def timestamp_ns(self) -> int:
        return self.timestamp * _NS_PER_S


class _DepthSides(msgspec.Struct, frozen=True):
    asks: tuple[DepthLevel, ...]
    bids: tuple[DepthLevel, ...]


class DepthSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """REST book of one pair: asks ascending, bids descending. Volumes may be display-rounded,
    so this is evidence, not a seed for a checksummed WS book."""

    pair: str
    asks: tuple[DepthLevel, ...]
    bids: tuple[DepthLevel, ...]


_DEPTH: Final = msgspec.json.Decoder(dict[str, _DepthSides])


def _single(result: dict[str, T], what: str) -> tuple[str, T]:
    if len(result) != 1:
        raise _Invalid("schema", f"{what}: expected one pair, got {sorted(result)[:5]}")
    return next(iter(result.items()))


def _check_levels(levels: tuple[DepthLevel, ...], where: str) -> None:
    for i, level in enumerate(levels):
        _number(level.price, f"{where}[{i}].price")
        _number(level.volume, f"{where}[{i}].volume")
        if not 0 <= level.timestamp <= INT64_MAX // _NS_PER_S:
            raise _Invalid("bad_timestamp", f"{where}[{i}].timestamp {level.timestamp}")


def decode_depth(body: bytes | str) -> DepthSnapshot | RestError | Reject:
    """``GET /0/public/Depth``."""

    def result(raw: msgspec.Raw) -> DepthSnapshot:
        pair, sides = _single(_DEPTH.decode(raw), "Depth")
        _check_levels(sides.asks, "asks")
        _check_levels(sides.bids, "bids")
        return DepthSnapshot(pair=pair, asks=sides.asks, bids=sides.bids)

    return _spot(body, result)


# ------------------------------------------------------------------------------- Spot: Trades


class RestTrade(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """``[price, volume, time, side, ord_type, misc, trade_id]``.

    ``time`` is the epoch-seconds JSON number as its exact text (``"1762795433.9717445"``);
    ``time_ns`` converts it exactly (truncating beyond 9 decimals). ``trade_id`` is absent from
    old 6-field responses.
    """

    price: str
    volume: str
    time: Any
    side: Literal["b", "s"]
    ord_type: Literal["m", "l"]
    misc: str
    trade_id: Annotated[int, msgspec.Meta(ge=0)] | None = None

    @property
    def time_ns(self) -> int:
        return epoch_seconds_to_ns(self.time)


class TradesPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of recent trades; ``last`` is the nanosecond cursor to pass back as ``since``."""

    pair: str
    trades: tuple[RestTrade, ...]
    last: str

    @property
    def last_ns(self) -> int | None:
        """``last`` as int ns (``None`` for the empty cursor that ends pagination)."""
        return int(self.last) if self.last else None


_RESULT_PARTS: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_TRADE_LIST: Final = msgspec.json.Decoder(tuple[RestTrade, ...], float_hook=str)
_CURSOR: Final = msgspec.json.Decoder(str | int)
_DIGITS: Final = re.compile(r"\d{0,19}")


def _pair_and_last(raw: msgspec.Raw, what: str) -> tuple[str, msgspec.Raw, msgspec.Raw]:
    parts = _RESULT_PARTS.decode(raw)
    if "last" not in parts:
        raise _Invalid("schema", f"{what}: no 'last'")
    last = parts.pop("last")
    pair, rows = _single(parts, what)
    return pair, rows, last


def decode_trades(body: bytes | str) -> TradesPage | RestError | Reject:
    """``GET /0/public/Trades``."""

    def result(raw: msgspec.Raw) -> TradesPage:
        pair, rows, last_raw = _pair_and_last(raw, "Trades")
        last = _CURSOR.decode(last_raw)
        last_text = str(last)
        if _DIGITS.fullmatch(last_text) is None or (last_text and int(last_text) > INT64_MAX):
            raise _Invalid("bad_timestamp", f"last cursor {last_text[:32]!r}")
        trades = _TRADE_LIST.decode(rows)
        for i, trade in enumerate(trades):
            _number(trade.price, f"trades[{i}].price")
            _number(trade.volume, f"trades[{i}].volume")
            try:
                trade.time_ns
            except TimestampError as exc:
                raise _Invalid("bad_timestamp", f"trades[{i}].time: {exc}") from None
        return TradesPage(pair=pair, trades=trades, last=last_text)

    return _spot(body, result)


# --------------------------------------------------------------------------------- Spot: OHLC


class OhlcBar(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """``[time, open, high, low, close, vwap, volume, count]``; ``time`` = bar start, epoch s."""

    time: Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX // _NS_PER_S)]
    open: str
    high: str
    low: str
    close: str
    vwap: str
    volume: str
    count: Annotated[int, msgspec.Meta(ge=0)]

    @property
    def time_ns(self) -> int:
        return self.time * _NS_PER_S


class OhlcPage(msgspec.Struct, frozen=True, kw_only=True):
    """Up to 720 committed bars plus the current one (last); ``last`` = ``since`` for new bars."""

    pair: str
    bars: tuple[OhlcBar, ...]
    last: int


_BARS: Final = msgspec.json.Decoder(tuple[OhlcBar, ...])
_INT: Final = msgspec.json.Decoder(Annotated[int, msgspec.Meta(ge=0)])


def decode_ohlc(body: bytes | str) -> OhlcPage | RestError | Reject:
    """``GET /0/public/OHLC``."""

    def result(raw: msgspec.Raw) -> OhlcPage:
        pair, rows, last_raw = _pair_and_last(raw, "OHLC")
        bars = _BARS.decode(rows)
        for i, bar in enumerate(bars):
            for name in ("open", "high", "low", "close", "vwap", "volume"):
                _number(getattr(bar, name), f"bars[{i}].{name}")
        return OhlcPage(pair=pair, bars=bars, last=_INT.decode(last_raw))

    return _spot(body, result)


# ------------------------------------------------------- Spot: Time, SystemStatus, token, L3


class ServerTime(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /0/public/Time``."""

    unixtime: Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX // _NS_PER_S)]
    rfc1123: str

    @property
    def unixtime_ns(self) -> int:
        return self.unixtime * _NS_PER_S


class SystemStatus(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /0/public/SystemStatus``: ``status`` in online, maintenance, cancel_only, post_only."""

    status: str
    timestamp: str

    @property
    def timestamp_ns(self) -> int:
        return rfc3339_to_ns(self.timestamp)


class WebSocketsToken(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /0/private/GetWebSocketsToken``: ``expires`` in seconds."""

    token: str
    expires: Annotated[int, msgspec.Meta(ge=0)]


class Level3Order(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One resting order: decimal strings and an integer epoch-nanosecond timestamp."""

    order_id: str
    price: str
    qty: str
    timestamp: Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]


class Level3Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /0/private/Level3``: orders per side in queue order."""

    pair: str
    bids: tuple[Level3Order, ...]
    asks: tuple[Level3Order, ...]


def _typed(decoder: msgspec.json.Decoder, check: Callable[[Any], None] | None = None) -> Callable[[msgspec.Raw], Any]:
    def result(raw: msgspec.Raw) -> Any:
        value = decoder.decode(raw)
        if check is not None:
            check(value)
        return value

    return result


def _check_system_status(value: SystemStatus) -> None:
    _rfc3339(value.timestamp, "timestamp")


def _check_level3(value: Level3Snapshot) -> None:
    for side in ("bids", "asks"):
        for i, order in enumerate(getattr(value, side)):
            _number(order.price, f"{side}[{i}].price")
            _number(order.qty, f"{side}[{i}].qty")


_SERVER_TIME: Final = _typed(msgspec.json.Decoder(ServerTime))
_SYSTEM_STATUS: Final = _typed(msgspec.json.Decoder(SystemStatus), _check_system_status)
_TOKEN: Final = _typed(msgspec.json.Decoder(WebSocketsToken))
_LEVEL3: Final = _typed(msgspec.json.Decoder(Level3Snapshot), _check_level3)


def decode_server_time(body: bytes | str) -> ServerTime | RestError | Reject:
    """``GET /0/public/Time``."""
    return _spot(body, _SERVER_TIME)


def decode_system_status(body: bytes | str) -> SystemStatus | RestError | Reject:
    """``GET /0/public/SystemStatus``."""
    return _spot(body, _SYSTEM_STATUS)


def decode_websockets_token(body: bytes | str) -> WebSocketsToken | RestError | Reject:
    """``POST /0/private/GetWebSocketsToken``."""
    return _spot(body, _TOKEN)


def decode_level3(body: bytes | str) -> Level3Snapshot | RestError | Reject:
    """``POST /0/private/Level3``."""
    return _spot(body, _LEVEL3)


# ------------------------------------------------------------------------ Futures: orderbook


class FuturesRestLevel(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """``[price, size]`` as number tokens."""

    price: Any
    size: Any


class _OrderBookSides(msgspec.Struct, frozen=True):
    bids: tuple[FuturesRestLevel, ...] = ()
    asks: tuple[FuturesRestLevel, ...] = ()


class FuturesOrderBook(msgspec.Struct, frozen=True, kw_only=True):
    """Full non-cumulative book: bids descending, asks ascending; no ``seq``."""

    symbol: str | None = None
    bids: tuple[FuturesRestLevel, ...]
    asks: tuple[FuturesRestLevel, ...]
    server_time: str | None = None

    @property
    def server_time_ns(self) -> int | None:
        return _ns_or_none(self.server_time)


class _OrderBookBody(msgspec.Struct, rename="camel"):
    order_book: _OrderBookSides
    server_time: str | None = None


_ORDER_BOOK: Final = msgspec.json.Decoder(_OrderBookBody, float_hook=str)


def decode_futures_orderbook(
    body: bytes | str, symbol: str | None = None
) -> FuturesOrderBook | RestError | Reject:
    """``GET /derivatives/api/v3/orderbook?symbol=...`` (the body does not name the symbol)."""

    def success(raw: bytes) -> FuturesOrderBook:
        decoded = _ORDER_BOOK.decode(raw)
        for side in ("bids", "asks"):
            for i, level in enumerate(getattr(decoded.order_book, side)):
                _number(level.price, f"{side}[{i}].price")
                _number(level.size, f"{side}[{i}].size")
        return FuturesOrderBook(symbol=symbol, bids=decoded.order_book.bids,
                                asks=decoded.order_book.asks, server_time=decoded.server_time)

    return _futures(body, success)


# ---------------------------------------------------------------------- Futures: instruments


class FuturesInstrument(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One Futures contract or index. Indices (``type == "spot index"``) lack tick/contract data.

    Wire names are camelCase (``tickSize`` -> ``tick_size``). ``price_precision`` and
    ``qty_precision`` give the decimals a book needs to scale prices and sizes exactly.
    """

    symbol: str
    type: str
    tradeable: bool | None = None
    underlying: str | None = None
    tick_size: Any = None
    contract_size: Any = None
    contract_value_trade_precision: int | None = None
    impact_mid_size: Any = None
    max_position_size: Any = None
    opening_date: str | None = None
    last_trading_time: str | None = None
    funding_rate_coefficient: Any = None
    max_relative_funding_rate: Any = None
    isin: str | None = None
    post_only: bool | None = None
    fee_schedule_uid: str | None = None
    mtf: bool | None = None
    tradfi: bool | None = None
    base: str | None = None
    quote: str | None = None
    pair: str | None = None
    category: str | None = None
    tags: tuple[str, ...] = ()

    @property
    def canonical_symbol(self) -> str:
        return self.symbol.upper()

    @property
    def price_precision(self) -> int | None:
        """Decimals of ``tick_size`` (``0.5`` -> 1, ``1e-10`` -> 10), if known."""
        return None if self.tick_size is None else decimals_of(self.tick_size)

    @property
    def qty_precision(self) -> int | None:
        """Decimals of order sizes (``contractValueTradePrecision``, negative means whole tens)."""
        precision = self.contract_value_trade_precision
        return None if precision is None else max(precision, 0)

    @property
    def opening_date_ns(self) -> int | None:
        return _ns_or_none(self.opening_date)

    @property
    def last_trading_time_ns(self) -> int | None:
        return _ns_or_none(self.last_trading_time)


class FuturesInstruments(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /derivatives/api/v3/instruments``."""

    instruments: tuple[FuturesInstrument, ...]
    server_time: str | None = None

    def by_symbol(self) -> dict[str, FuturesInstrument]:
        """Upper-cased symbol -> instrument."""
        return {i.symbol.upper(): i for i in self.instruments}


class _InstrumentsBody(msgspec.Struct, rename="camel"):
    instruments: tuple[FuturesInstrument, ...]
    server_time: str | None = None


_INSTRUMENTS: Final = msgspec.json.Decoder(_InstrumentsBody, float_hook=str)
_INSTRUMENT_NUMBERS: Final = ("tick_size", "contract_size", "impact_mid_size", "max_position_size",
                              "funding_rate_coefficient", "max_relative_funding_rate")


def decode_futures_instruments(body: bytes | str) -> FuturesInstruments | RestError | Reject:
    """``GET /derivatives/api/v3/instruments``."""

    def success(raw: bytes) -> FuturesInstruments:
        decoded = _INSTRUMENTS.decode(raw)
        for item in decoded.instruments:
            for name in _INSTRUMENT_NUMBERS:
                _optional_number(getattr(item, name), f"{item.symbol}.{name}")
            _rfc3339(item.opening_date, f"{item.symbol}.openingDate")
            _rfc3339(item.last_trading_time, f"{item.symbol}.lastTradingTime")
            if item.tick_size is not None and decimals_of(item.tick_size) > MAX_PRECISION:
                raise _Invalid("bad_number", f"{item.symbol}.tickSize too fine: {item.tick_size}")
        return FuturesInstruments(instruments=decoded.instruments, server_time=decoded.server_time)

    return _futures(body, success)


# -------------------------------------------------------------------------- Futures: tickers


class FuturesRestTicker(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One market or index ticker; indices carry only ``symbol``, ``last``, ``last_time``."""

    symbol: str
    last: Any = None
    last_time: str | None = None
    last_size: Any = None
    tag: str | None = None
    pair: str | None = None
    mark_price: Any = None
    bid: Any = None
    bid_size: Any = None
    ask: Any = None
    ask_size: Any = None
    vol24h: Any = None
    volume_quote: Any = None
    open_interest: Any = None
    open24h: Any = None
    high24h: Any = None
    low24h: Any = None
    funding_rate: Any = None
    funding_rate_prediction: Any = None
    suspended: bool | None = None
    index_price: Any = None
    post_only: bool | None = None
    change24h: Any = None

    @property
    def last_time_ns(self) -> int | None:
        return _ns_or_none(self.last_time)


class FuturesTickers(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /derivatives/api/v3/tickers``."""

    tickers: tuple[FuturesRestTicker, ...]
    server_time: str | None = None


class _TickersBody(msgspec.Struct, rename="camel"):
    tickers: tuple[FuturesRestTicker, ...]
    server_time: str | None = None


_TICKERS: Final = msgspec.json.Decoder(_TickersBody, float_hook=str)
_TICKER_NUMBERS: Final = ("last", "last_size", "mark_price", "bid", "bid_size", "ask", "ask_size",
                          "vol24h", "volume_quote", "open_interest", "open24h", "high24h", "low24h",
                          "funding_rate", "funding_rate_prediction", "index_price", "change24h")


def decode_futures_tickers(body: bytes | str) -> FuturesTickers | RestError | Reject:
    """``GET /derivatives/api/v3/tickers``."""

    def success(raw: bytes) -> FuturesTickers:
        decoded = _TICKERS.decode(raw)
        for item in decoded.tickers:
            for name in _TICKER_NUMBERS:
                _optional_number(getattr(item, name), f"{item.symbol}.{name}")
            _rfc3339(item.last_time, f"{item.symbol}.lastTime")
        return FuturesTickers(tickers=decoded.tickers, server_time=decoded.server_time)

    return _futures(body, success)
