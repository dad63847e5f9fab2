"""Ground-truth events of the simulated market (what really happened, independent of feeds).

Every event carries the exchange time ``t_ns`` (integer ns since the Unix epoch) and the
``symbol`` (spot v2 name, or futures product id). Prices and quantities are exact decimal text at
the instrument's precision (``"0.00100000"``), never floats. The structs form one tagged union
(:data:`SimEvent`, tag field ``"ev"``) so a truth file can be written and read back with
:func:`encode_event` / :func:`decode_event` (one JSON object per event).
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

import msgspec

__all__ = [
    "OrderAdded",
    "OrderModified",
    "OrderDeleted",
    "TradeEvent",
    "BarUpdated",
    "PairStatusChanged",
    "InstrumentChanged",
    "FuturesTrade",
    "SimEvent",
    "encode_event",
    "decode_event",
]

Side: TypeAlias = Literal["bid", "ask"]


class OrderAdded(msgspec.Struct, frozen=True, gc=False, tag="add", tag_field="ev"):
    """A visible order started resting (new passive order or the rested remainder of a taker)."""

    t_ns: int
    symbol: str
    side: Side
    order_id: str
    price: str
    qty: str
    order_ts_ns: int


class OrderModified(msgspec.Struct, frozen=True, gc=False, tag="modify", tag_field="ev"):
    """A resting order changed: ``reason`` ``fill`` (partial fill, in place) or ``amend``
    (quantity and/or price; a price change moves the order to the back of the new level).
    ``price``/``qty`` are the new values, ``old_price`` the price before the change."""

    t_ns: int
    symbol: str
    side: Side
    order_id: str
    price: str
    qty: str
    reason: Literal["fill", "amend"]
    order_ts_ns: int
    old_price: str


class OrderDeleted(msgspec.Struct, frozen=True, gc=False, tag="delete", tag_field="ev"):
    """A resting order left the book: ``reason`` ``cancel`` or ``fill`` (fully filled).
    ``qty`` is the quantity it had just before leaving (for fills: the last fill's size)."""

    t_ns: int
    symbol: str
    side: Side
    order_id: str
    price: str
    qty: str
    reason: Literal["cancel", "fill"]


class TradeEvent(msgspec.Struct, frozen=True, gc=False, tag="trade", tag_field="ev"):
    """One spot trade at the maker's price; ``side`` is the taker side, ``ord_type`` the
    taker's order type; ``trade_id`` is consecutive per symbol."""

    t_ns: int
    symbol: str
    trade_id: int
    price: str
    qty: str
    side: Literal["buy", "sell"]
    ord_type: Literal["limit", "market"]
    maker_order_id: str
    taker_order_id: str


class BarUpdated(msgspec.Struct, frozen=True, gc=False, tag="bar", tag_field="ev"):
    """The OHLC bar of ``interval`` minutes starting at ``interval_begin_ns`` after a trade batch."""

    t_ns: int
    symbol: str
    interval: int
    interval_begin_ns: int
    open: str
    high: str
    low: str
    close: str
    vwap: str
    volume: str
    trades: int


class PairStatusChanged(msgspec.Struct, frozen=True, gc=False, tag="status", tag_field="ev"):
    """The trading status of a pair changed (``online``, ``cancel_only``, ``maintenance``, ...)."""

    t_ns: int
    symbol: str
    status: str
    old_status: str


class InstrumentChanged(msgspec.Struct, frozen=True, gc=False, tag="instrument", tag_field="ev"):
    """A pair was listed or delisted."""

    t_ns: int
    symbol: str
    change: Literal["listed", "delisted"]


class FuturesTrade(msgspec.Struct, frozen=True, gc=False, tag="futures_trade", tag_field="ev"):
    """One futures trade (``symbol`` is the product id); ``seq`` is the product's trade counter."""

    t_ns: int
    symbol: str
    uid: str
    seq: int
    price: str
    qty: str
    side: Literal["buy", "sell"]
    type: str


SimEvent: TypeAlias = (
    OrderAdded
    | OrderModified
    | OrderDeleted
    | TradeEvent
    | BarUpdated
    | PairStatusChanged
    | InstrumentChanged
    | FuturesTrade
)

_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(SimEvent)


def encode_event(event: SimEvent) -> bytes:
    """Compact JSON of one event, tagged with ``"ev"``."""
    return _ENCODER.encode(event)


def decode_event(data: bytes | str) -> SimEvent:
    """Inverse of :func:`encode_event`."""
    return _DECODER.decode(data)
