"""Kraken snapshot frames rendered from state rebuilt out of the archive (pure).

Every value is exact: prices and quantities are the archive's integer units written at their
recorded scale (``units_to_text``), which is the text Kraken's wire carries (full precision,
protocol notes §3.2); times are Kraken's RFC 3339 forms. Key order follows Kraken's frames as
recorded (and as ``recorder sim`` writes them). A book snapshot carries the checksum computed
by :mod:`recorder.book` over the rebuilt book (Kraken's algorithm), and the exchange time of
the last message the book includes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Final

import msgspec

from recorder.protocol.numbers import units_to_text

__all__ = [
    "FuturesTrade",
    "L3Order",
    "OhlcBar",
    "SpotTrade",
    "book_snapshot",
    "futures_book_snapshot",
    "futures_trade_snapshot",
    "instrument_snapshot",
    "level3_snapshot",
    "ohlc_snapshot",
    "rfc3339_ns",
    "rfc3339_us",
    "trade_snapshot",
]

_NS: Final = 1_000_000_000
_STR: Final = msgspec.json.Encoder()


def _clock(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // _NS))


def rfc3339_us(ns: int) -> str:
    """``2026-01-01T12:00:00.123456Z`` (book/trade timestamps, acks)."""
    return f"{_clock(ns)}.{ns % _NS // 1000:06d}Z"


def rfc3339_ns(ns: int) -> str:
    """``2026-01-01T12:00:00.123456789Z`` (level3 order and message timestamps)."""
    return f"{_clock(ns)}.{ns % _NS:09d}Z"


def _q(text: str) -> str:
    return _STR.encode(text).decode()


def _levels(levels: Iterable[tuple[int, int]], pp: int, qp: int) -> str:
    return ",".join(f'{{"price":{units_to_text(p, pp)},"qty":{units_to_text(q, qp)}}}'
                    for p, q in levels)


def book_snapshot(symbol: str, bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]],
                  *, price_precision: int, qty_precision: int, checksum: int,
                  ts_ns: int | None) -> str:
    """A Spot WS v2 ``book`` snapshot; levels as ``(price_units, qty_units)``, best first."""
    pp, qp = price_precision, qty_precision
    stamp = "" if ts_ns is None else f',"timestamp":"{rfc3339_us(ts_ns)}"'
    return (f'{{"channel":"book","type":"snapshot","data":[{{"symbol":{_q(symbol)},'
            f'"bids":[{_levels(bids, pp, qp)}],"asks":[{_levels(asks, pp, qp)}],'
            f'"checksum":{checksum}{stamp}}}]}}')


class L3Order(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One resting order of a rebuilt level3 book (queue order within its level)."""

    order_id: str
    price: int
    qty: int
    ts_ns: int | None


def _orders(orders: Iterable[L3Order], pp: int, qp: int) -> str:
    out = []
    for o in orders:
        stamp = "" if o.ts_ns is None else f',"timestamp":"{rfc3339_ns(o.ts_ns)}"'
        out.append(f'{{"order_id":{_q(o.order_id)},"limit_price":{units_to_text(o.price, pp)},'
                   f'"order_qty":{units_to_text(o.qty, qp)}{stamp}}}')
    return ",".join(out)


def level3_snapshot(symbol: str, bids: Iterable[L3Order], asks: Iterable[L3Order], *,
                    price_precision: int, qty_precision: int, checksum: int,
                    ts_ns: int | None) -> str:
    """A Spot WS v2 ``level3`` snapshot; orders best level first, queue order within one."""
    pp, qp = price_precision, qty_precision
    stamp = "" if ts_ns is None else f',"timestamp":"{rfc3339_ns(ts_ns)}"'
    return (f'{{"channel":"level3","type":"snapshot","data":[{{"symbol":{_q(symbol)},'
            f'"checksum":{checksum},"bids":[{_orders(bids, pp, qp)}],'
            f'"asks":[{_orders(asks, pp, qp)}]{stamp}}}]}}')


def futures_book_snapshot(product_id: str, bids: Iterable[tuple[str, str]],
                          asks: Iterable[tuple[str, str]], *, seq: int,
                          timestamp_ms: int | None) -> str:
    """A Futures WS v1 ``book_snapshot``; levels as exact number text, best first. ``seq`` is
    the last delta the book includes (the next recorded delta carries ``seq + 1``)."""
    def side(levels: Iterable[tuple[str, str]]) -> str:
        return ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in levels)

    stamp = "null" if timestamp_ms is None else str(timestamp_ms)
    return (f'{{"feed":"book_snapshot","product_id":{_q(product_id)},"timestamp":{stamp},'
            f'"seq":{seq},"tickSize":null,"bids":[{side(bids)}],"asks":[{side(asks)}]}}')


class SpotTrade(msgspec.Struct, frozen=True, gc=False):
    """One spot trade as recorded (exact units at their recorded scale)."""

    trade_id: int
    ts_ns: int
    side: str  #: buy / sell (taker side)
    ord_type: str
    price: int
    price_scale: int
    qty: int
    qty_scale: int


def trade_snapshot(symbol: str, trades: Sequence[SpotTrade]) -> str:
    """A Spot WS v2 ``trade`` snapshot (oldest first, as Kraken's)."""
    items = ",".join(
        f'{{"symbol":{_q(symbol)},"side":{_q(t.side)},"price":{units_to_text(t.price, t.price_scale)},'
        f'"qty":{units_to_text(t.qty, t.qty_scale)},"ord_type":{_q(t.ord_type)},'
        f'"trade_id":{t.trade_id},"timestamp":"{rfc3339_us(t.ts_ns)}"}}' for t in trades)
    return f'{{"channel":"trade","type":"snapshot","data":[{items}]}}'


class FuturesTrade(msgspec.Struct, frozen=True, gc=False):
    """One futures trade as recorded."""

    seq: int
    ts_ns: int
    uid: str
    side: str  #: buy / sell
    type: str  #: fill, liquidation, ...
    price: int
    price_scale: int
    qty: int
    qty_scale: int


def futures_trade_snapshot(product_id: str, trades: Sequence[FuturesTrade]) -> str:
    """A Futures WS v1 ``trade_snapshot`` (newest first, as Kraken's)."""
    pid = _q(product_id)
    items = ",".join(
        f'{{"feed":"trade","product_id":{pid},"uid":{_q(t.uid)},"side":{_q(t.side)},'
        f'"type":{_q(t.type)},"seq":{t.seq},"time":{t.ts_ns // 1_000_000},'
        f'"qty":{units_to_text(t.qty, t.qty_scale)},"price":{units_to_text(t.price, t.price_scale)}}}'
        for t in trades)
    return f'{{"feed":"trade_snapshot","product_id":{pid},"trades":[{items}]}}'


class OhlcBar(msgspec.Struct, frozen=True, gc=False):
    """The latest recorded state of one candle (exact text values)."""

    interval: int
    interval_begin_ns: int
    open: str
    high: str
    low: str
    close: str
    trades: int | None
    volume: str
    vwap: str | None


def ohlc_snapshot(symbol: str, bars: Sequence[OhlcBar], *, at_ns: int) -> str:
    """A Spot WS v2 ``ohlc`` snapshot (``timestamp``: the replay time of the snapshot; each
    bar's deprecated ``timestamp`` is its end, as Kraken's)."""
    items = []
    for b in bars:
        end = b.interval_begin_ns + b.interval * 60 * _NS
        trades = "null" if b.trades is None else str(b.trades)
        vwap = "null" if b.vwap is None else b.vwap
        items.append(f'{{"symbol":{_q(symbol)},"open":{b.open},"high":{b.high},"low":{b.low},'
                     f'"close":{b.close},"trades":{trades},"volume":{b.volume},"vwap":{vwap},'
                     f'"interval_begin":"{rfc3339_ns(b.interval_begin_ns)}",'
                     f'"interval":{b.interval},"timestamp":"{rfc3339_us(end)}"}}')
    return (f'{{"channel":"ohlc","type":"snapshot","timestamp":"{rfc3339_ns(at_ns)}",'
            f'"data":[{",".join(items)}]}}')


def instrument_snapshot(assets: Iterable[str], pairs: Iterable[str]) -> str:
    """A Spot WS v2 ``instrument`` snapshot from recorded attribute objects (raw JSON)."""
    return (f'{{"channel":"instrument","type":"snapshot","data":{{"assets":[{",".join(assets)}],'
            f'"pairs":[{",".join(pairs)}]}}}}')
