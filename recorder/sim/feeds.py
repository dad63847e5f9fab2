"""Kraken Spot WS v2 wire rendering: per-pair feed state and one *view* per subscription key.

A view turns the engine's primitive book changes (see :mod:`recorder.sim.engine`) into the
frames a Kraken subscriber of that key receives, incrementally: nothing is rebuilt per event.

Depth windows (``level3`` and ``book``). Kraken's subscriber keeps only the best ``depth``
levels per side after every message and Kraken sends nothing for levels pushed out of that
window; when a level inside the window empties, the next level below enters it and is sent in
full (``level3``: every order as ``add`` with its original timestamp; ``book``: the level's
quantity). A view therefore tracks, per side, ``k`` = how many best levels of the true book
the subscriber currently holds (always a prefix of the true book; ``k`` may exceed ``depth``
inside a message and is cut back to ``depth`` when the message ends). Rules per change at a
level of rank ``r``:

* order joins a level: sent if ``r < k``; a *new* level is sent if ``r < k`` or ``k < depth``
  (then the subscriber holds every level) and grows ``k``;
* quantity change in place: sent if ``r < k``;
* order leaves a level: sent if ``r < k``; if the level disappeared, ``k`` shrinks and levels
  ``k, k+1, ..`` are sent as entering until ``k == min(depth, levels)``;
* a price-changing amend is one ``modify`` if both old and new place are visible, a ``delete``
  if only the old one is, an ``add`` if only the new one is (level3), i.e. the subscriber's
  book stays a prefix of the true book.

``checksum`` (CRC32 of the true top 10 levels, which equal the subscriber's top 10 after
truncation because every depth is >= 10) is computed once per pair per action and shared by
all views of that pair. Caches behind it (see :class:`PairState`): per side, the ASCII bytes
of the top-10 checksum text (dropped only by a change at rank < 10 on that side), and the
CRC of the ask bytes alone, which is the starting value of the full CRC (Kraken hashes asks
then bids), so a bid-side change costs one CRC over the bid bytes only.

Numbers are written as JSON numbers with exactly the instrument precision (``0.00100000``) from
exact integer units; no float is ever involved.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final
from zlib import crc32

from recorder.protocol.numbers import units_to_text
from recorder.sim.engine import (
    ADD,
    AMEND,
    ASK,
    BID,
    CANCEL,
    FILL,
    FILLED,
    MOVE_IN,
    MOVE_OUT,
    Level,
    Order,
    PairEngine,
    rfc3339,
)

__all__ = [
    "L3_DEPTHS",
    "BOOK_DEPTHS",
    "OHLC_INTERVALS",
    "TRADE_SNAPSHOT",
    "OHLC_SNAPSHOT_BARS",
    "Now",
    "TradeRec",
    "Bar",
    "PairState",
    "View",
    "L3View",
    "BookView",
    "TradeView",
    "OhlcView",
    "TickerView",
    "InstrumentView",
    "render_bar",
]

L3_DEPTHS: Final = (10, 100, 1000)
BOOK_DEPTHS: Final = (10, 25, 100, 500, 1000)
OHLC_INTERVALS: Final = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)
#: Trades in a ``trade`` snapshot (Kraken: the 50 most recent).
TRADE_SNAPSHOT: Final = 50
#: Most recent bars sent in an ``ohlc`` snapshot.
OHLC_SNAPSHOT_BARS: Final = 12
_MIN_NS: Final = 60_000_000_000
_HOUR_NS: Final = 3_600_000_000_000
_DAY_NS: Final = 24 * _HOUR_NS
_HISTORY_TRADES: Final = 1000
_HISTORY_BARS: Final = 720
#: top-of-book changes kept for REST ``Spread`` (Kraken: "the last ~200")
_HISTORY_SPREADS: Final = 200


class Now:
    """The exchange time of the action being processed, with lazily cached RFC3339 texts."""

    __slots__ = ("ns", "_t6", "_t9")

    def __init__(self, ns: int) -> None:
        self.ns = ns
        self._t6: str | None = None
        self._t9: str | None = None

    def set(self, ns: int) -> None:
        if ns != self.ns:
            self.ns = ns
            self._t6 = self._t9 = None

    @property
    def t6(self) -> str:
        """Microsecond RFC3339 (book, trade, ticker)."""
        if self._t6 is None:
            self._t6 = rfc3339(self.ns, 6)
        return self._t6

    @property
    def t9(self) -> str:
        """Nanosecond RFC3339 (level3, ohlc)."""
        if self._t9 is None:
            self._t9 = rfc3339(self.ns, 9)
        return self._t9


class TradeRec:
    """One executed spot trade (units), with its rendered ``trade`` object JSON."""

    __slots__ = ("trade_id", "t_ns", "price", "qty", "side", "ord_type", "json")

    def __init__(self, trade_id: int, t_ns: int, price: int, qty: int, side: str, ord_type: str,
                 json: str) -> None:
        self.trade_id = trade_id
        self.t_ns = t_ns
        self.price = price
        self.qty = qty
        self.side = side  #: taker side, "buy"/"sell"
        self.ord_type = ord_type  #: taker order type, "market"/"limit"
        self.json = json


class Bar:
    """One OHLC bar in units; ``cost`` = sum(price*qty) at price+qty precision."""

    __slots__ = ("interval", "begin_ns", "open", "high", "low", "close", "volume", "cost", "trades")

    def __init__(self, interval: int, begin_ns: int, price: int) -> None:
        self.interval = interval
        self.begin_ns = begin_ns
        self.open = self.high = self.low = self.close = price
        self.volume = 0
        self.cost = 0
        self.trades = 0

    def add(self, price: int, qty: int) -> None:
        if price > self.high:
            self.high = price
        if price < self.low:
            self.low = price
        self.close = price
        self.volume += qty
        self.cost += price * qty
        self.trades += 1

    def vwap(self) -> int:
        """Volume-weighted average price in price units, rounded half up."""
        if not self.volume:
            return self.close
        return (2 * self.cost + self.volume) // (2 * self.volume)


class PairState:
    """Everything the feeds of one pair need besides the book: status, trade history, bars,
    24 h ticker statistics and the per-action checksum cache."""

    def __init__(self, symbol: str, engine: PairEngine, ref_price: int, wire: dict, status: str,
                 now: Now) -> None:
        self.symbol = symbol
        self.engine = engine
        self.pp = engine.price_precision
        self.qp = engine.qty_precision
        self.ref_price = ref_price
        self.wire = wire
        self.status = status
        self.now = now
        self.trades: deque[TradeRec] = deque(maxlen=_HISTORY_TRADES)
        self.bars: dict[int, deque[Bar]] = {m: deque(maxlen=_HISTORY_BARS) for m in OHLC_INTERVALS}
        #: hourly buckets for 24 h ticker statistics:
        #: [begin_ns, open, high, low, volume, cost, trades]
        self.hours: deque[list[int]] = deque()
        self.last_price = ref_price
        #: best bid/ask price changes for REST ``Spread``: (t_ns, bid units, ask units)
        self.spreads: deque[tuple[int, int, int]] = deque(maxlen=_HISTORY_SPREADS)
        #: True once the current action changed a best level (set by the market's sink; the
        #: market then calls :meth:`note_top`)
        self.top_moved = False
        self.book_views: list[L3View | BookView] = []
        self.trade_views: list[TradeView | OhlcView | TickerView] = []
        self.bbo_views: list[TickerView] = []
        #: True once a book view queued output during the current action (the market then
        #: flushes the pair's book views; actions nobody sees skip that loop entirely)
        self.dirty = False
        self._ck3: int | None = None
        self._ck2: int | None = None
        #: per side (BID, ASK): ASCII bytes of the checksum text of the top 10 levels
        #: (None = stale); and the CRC32 of the ask bytes alone (None = stale)
        self._s3: list[bytes | None] = [None, None]
        self._s2: list[bytes | None] = [None, None]
        self._a3: int | None = None
        self._a2: int | None = None

    # -- checksums: cached until a change at rank < 10 (see touched())

    def touched(self, side: int) -> None:
        """A change at rank < 10 on ``side``: drop that side's checksum caches."""
        self._s3[side] = self._s2[side] = None
        self._ck3 = self._ck2 = None
        if side == ASK:
            self._a3 = self._a2 = None

    def _side3(self, side: int) -> bytes:
        data = self._s3[side]
        if data is None:
            eng = self.engine
            levels = eng.levels[side]
            p3 = eng.level_piece3
            parts = []
            for key in eng.keys[side][:10]:
                level = levels[key]
                piece = level._piece3
                parts.append(piece if piece is not None else p3(level))
            data = self._s3[side] = "".join(parts).encode("ascii")
        return data

    def _side2(self, side: int) -> bytes:
        data = self._s2[side]
        if data is None:
            eng = self.engine
            levels = eng.levels[side]
            parts = []
            for key in eng.keys[side][:10]:
                level = levels[key]
                piece = level._piece2
                if piece is None:  # eng.level_piece2(level), inlined (total > 0)
                    piece = level._piece2 = level._price_piece + str(level.total)
                parts.append(piece)
            data = self._s2[side] = "".join(parts).encode("ascii")
        return data

    def checksum3(self) -> int:
        """Level3 CRC32 of the top 10 levels (asks then bids, every order), cached."""
        ck = self._ck3
        if ck is None:
            a = self._a3
            if a is None:
                a = self._a3 = crc32(self._side3(ASK))
            ck = self._ck3 = crc32(self._side3(BID), a)
        return ck

    def checksum2(self) -> int:
        """L2 CRC32 of the top 10 levels (asks then bids, level totals), cached."""
        ck = self._ck2
        if ck is None:
            a = self._a2
            if a is None:
                a = self._a2 = crc32(self._side2(ASK))
            ck = self._ck2 = crc32(self._side2(BID), a)
        return ck

    # -- text helpers

    def ptext(self, units: int) -> str:
        return units_to_text(units, self.pp)

    def qtext(self, units: int) -> str:
        return units_to_text(units, self.qp)

    # -- trades, bars, 24 h stats

    def record_trade(self, trade_id: int, t_ns: int, price: int, qty: int, side: str,
                     ord_type: str) -> TradeRec:
        """Append a trade to the history, bars and hourly stats; returns the record."""
        json = (
            f'{{"symbol":"{self.symbol}","side":"{side}","price":{self.engine.price_text(price)},'
            f'"qty":{units_to_text(qty, self.qp)},"ord_type":"{ord_type}","trade_id":{trade_id},'
            f'"timestamp":"{self.now.t6}"}}'
        )
        rec = TradeRec(trade_id, t_ns, price, qty, side, ord_type, json)
        self.trades.append(rec)
        for m, bars in self.bars.items():
            span = m * _MIN_NS
            begin = t_ns - t_ns % span
            if not bars or bars[-1].begin_ns != begin:
                bars.append(Bar(m, begin, price))
            bars[-1].add(price, qty)
        hour = t_ns - t_ns % _HOUR_NS
        hours = self.hours
        if not hours or hours[-1][0] != hour:
            hours.append([hour, price, price, price, 0, 0, 0])
        b = hours[-1]
        if price > b[2]:
            b[2] = price
        if price < b[3]:
            b[3] = price
        b[4] += qty
        b[5] += price * qty
        b[6] += 1
        self.last_price = price
        return rec

    def note_top(self, t_ns: int) -> None:
        """Record the best bid/ask prices if either differs from the last recorded pair."""
        eng = self.engine
        bid, ask = eng.best(BID), eng.best(ASK)
        top = (bid.price if bid else 0, ask.price if ask else 0)
        spreads = self.spreads
        if not spreads or spreads[-1][1:] != top:
            spreads.append((t_ns, *top))

    def _recent_hours(self) -> deque[list[int]]:
        """The hourly buckets overlapping the last 24 h (older ones are dropped)."""
        horizon = self.now.ns - _DAY_NS
        hours = self.hours
        while hours and hours[0][0] + _HOUR_NS <= horizon:
            hours.popleft()
        return hours

    def period_stats(self, since_ns: int | None) -> tuple[int, int, int, int, int, int]:
        """(volume, cost, trades, low, high, open) over the hourly buckets beginning at or
        after ``since_ns``, or (None) over every bucket overlapping the last 24 h; without
        trades: zeros and the last price."""
        recent = self._recent_hours()
        chosen = list(recent) if since_ns is None else [b for b in recent if b[0] >= since_ns]
        last = self.last_price
        if not chosen:
            return 0, 0, 0, last, last, last
        return (sum(b[4] for b in chosen), sum(b[5] for b in chosen), sum(b[6] for b in chosen),
                min(b[3] for b in chosen), max(b[2] for b in chosen), chosen[0][1])

    def stats24(self) -> tuple[int, int, int, int, int, int]:
        """(last, volume, vwap, low, high, open) over the hourly buckets of the last 24 h."""
        hours = self._recent_hours()
        last = self.last_price
        if not hours:
            return last, 0, last, last, last, last
        vol = sum(b[4] for b in hours)
        cost = sum(b[5] for b in hours)
        vwap = (2 * cost + vol) // (2 * vol) if vol else last
        return (last, vol, vwap, min(b[3] for b in hours), max(b[2] for b in hours), hours[0][1])

    def ticker_obj(self) -> str:
        """The ``ticker`` data object (JSON) at the current state."""
        eng = self.engine
        bid, ask = eng.best(BID), eng.best(ASK)
        last, vol, vwap, low, high, open_ = self.stats24()
        change = last - open_
        pct = (abs(change) * 20000 // open_ + 1) // 2 if open_ else 0  # 0.01 % units, half up
        pt, qt = self.ptext, self.qtext
        return (
            f'{{"symbol":"{self.symbol}","bid":{pt(bid.price) if bid else pt(0)},'
            f'"bid_qty":{qt(bid.total) if bid else qt(0)},'
            f'"ask":{pt(ask.price) if ask else pt(0)},"ask_qty":{qt(ask.total) if ask else qt(0)},'
            f'"last":{pt(last)},"volume":{qt(vol)},"vwap":{pt(vwap)},"low":{pt(low)},'
            f'"high":{pt(high)},"change":{pt(change)},'
            f'"change_pct":{units_to_text(-pct if change < 0 else pct, 2)},'
            f'"timestamp":"{self.now.t6}"}}'
        )

    def bbo(self) -> tuple[int, int, int, int]:
        eng = self.engine
        bid, ask = eng.best(BID), eng.best(ASK)
        return (bid.price if bid else 0, bid.total if bid else 0,
                ask.price if ask else 0, ask.total if ask else 0)


def render_bar(ps: PairState, bar: Bar) -> str:
    """The ``ohlc`` data object of one bar."""
    pt = ps.ptext
    end = bar.begin_ns + bar.interval * _MIN_NS
    return (
        f'{{"symbol":"{ps.symbol}","open":{pt(bar.open)},"high":{pt(bar.high)},'
        f'"low":{pt(bar.low)},"close":{pt(bar.close)},"trades":{bar.trades},'
        f'"volume":{ps.qtext(bar.volume)},"vwap":{pt(bar.vwap())},'
        f'"interval_begin":"{rfc3339(bar.begin_ns, 9)}","interval":{bar.interval},'
        f'"timestamp":"{rfc3339(end, 6)}"}}'
    )


class View:
    """Base of all views: ``key`` is the subscription key, ``refs`` the subscriber count."""

    __slots__ = ("key", "refs")

    def __init__(self, key: tuple) -> None:
        self.key = key
        self.refs = 0

    def snapshot(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


class L3View(View):
    """``level3`` view of one pair at one depth (10, 100, 1000)."""

    __slots__ = ("ps", "depth", "k", "bids", "asks", "_move_vis", "_move_old", "_head")

    def __init__(self, key: tuple, ps: PairState, depth: int) -> None:
        super().__init__(key)
        self.ps = ps
        self.depth = depth
        #: constant start of every update frame, up to the checksum value
        self._head = '{"channel":"level3","type":"update","data":[{"checksum":'
        eng = ps.engine
        self.k = [min(depth, eng.level_count(BID)), min(depth, eng.level_count(ASK))]
        self.bids: list[str] = []
        self.asks: list[str] = []
        self._move_vis = False
        self._move_old = ""

    def _refill(self, side: int, out: list[str]) -> None:
        eng = self.ps.engine
        keys, levels = eng.keys[side], eng.levels[side]
        k = self.k[side]
        n = min(self.depth, len(keys))
        frag = eng.order_frag
        while k < n:
            level = levels[keys[k]]
            for o in level.orders.values():
                out.append('{"event":"add",' + frag(o, level))
            k += 1
        self.k[side] = k

    def on_book(self, code: int, order: Order, level: Level, rank: int, flag: bool) -> None:
        side = order.side
        out = self.bids if side == BID else self.asks
        k = self.k[side]
        if rank >= k and code <= FILLED and not (flag and code == ADD and k < self.depth):
            # below the subscriber's window and not a new level entering it: nothing to send
            # (moves keep their bookkeeping: a MOVE_IN below the window may delete a visible
            # old place)
            return
        eng = self.ps.engine
        self.ps.dirty = True  # may queue nothing (flush then returns None), never the reverse
        if code == ADD:
            if rank < k:
                out.append('{"event":"add",' + eng.order_frag(order, level))
                if flag:
                    self.k[side] = k + 1
            elif flag and k < self.depth:
                out.append('{"event":"add",' + eng.order_frag(order, level))
                self.k[side] = k + 1
        elif code == FILL or code == AMEND:
            if rank < k:
                out.append('{"event":"modify",' + eng.order_frag(order, level))
        elif code == CANCEL or code == FILLED:
            if rank < k:
                out.append(
                    f'{{"event":"delete","order_id":"{order.order_id}","limit_price":'
                    f'{level.price_text},"order_qty":{eng.qty_text(order)},'
                    f'"timestamp":"{self.ps.now.t9}"}}'
                )
                if flag:
                    self.k[side] = k - 1
                    self._refill(side, out)
        elif code == MOVE_OUT:
            self._move_vis = rank < k
            self._move_old = level.price_text
            if rank < k and flag:
                self.k[side] = k - 1
                self._refill(side, out)
        elif code == MOVE_IN:
            visible = rank < k or (flag and k < self.depth)
            if visible and flag:
                self.k[side] = k + 1
            if visible:
                event = "modify" if self._move_vis else "add"
                out.append(f'{{"event":"{event}",' + eng.order_frag(order, level))
            elif self._move_vis:
                out.append(
                    f'{{"event":"delete","order_id":"{order.order_id}","limit_price":'
                    f'{self._move_old},"order_qty":{eng.qty_text(order)},'
                    f'"timestamp":"{self.ps.now.t9}"}}'
                )

    def flush(self) -> str | None:
        """End of an action: the update frame (or None if nothing visible changed)."""
        bids, asks = self.bids, self.asks
        k = self.k
        if k[0] > self.depth:
            k[0] = self.depth
        if k[1] > self.depth:
            k[1] = self.depth
        if not bids and not asks:
            return None
        ps = self.ps
        text = (
            f'{self._head}{ps.checksum3()},"symbol":"{ps.symbol}","bids":[{",".join(bids)}],'
            f'"asks":[{",".join(asks)}],"timestamp":"{ps.now.t9}"}}]}}'
        )
        bids.clear()
        asks.clear()
        return text

    def snapshot(self) -> str:
        ps = self.ps
        eng = ps.engine
        frag = eng.order_frag
        sides = []
        for side in (BID, ASK):
            sides.append(",".join(
                ["{" + frag(o, lv) for lv in eng.top(side, self.depth) for o in lv.orders.values()]))
        return (
            f'{{"channel":"level3","type":"snapshot","data":[{{"symbol":"{ps.symbol}",'
            f'"checksum":{ps.checksum3()},"bids":[{sides[0]}],"asks":[{sides[1]}],'
            f'"timestamp":"{ps.now.t9}"}}]}}'
        )


class BookView(View):
    """``book`` (L2) view of one pair at one depth (10, 25, 100, 500, 1000)."""

    __slots__ = ("ps", "depth", "k", "changed", "zero", "_head")

    def __init__(self, key: tuple, ps: PairState, depth: int) -> None:
        super().__init__(key)
        self.ps = ps
        self.depth = depth
        self.zero = units_to_text(0, ps.qp)  #: the qty text of a removed level
        #: constant start of every update frame, up to the bids
        self._head = f'{{"channel":"book","type":"update","data":[{{"symbol":"{ps.symbol}","bids":['
        eng = ps.engine
        self.k = [min(depth, eng.level_count(BID)), min(depth, eng.level_count(ASK))]
        #: per side: price units -> Level (None = removed), first-change order
        self.changed: tuple[dict[int, Level | None], dict[int, Level | None]] = ({}, {})

    def _refill(self, side: int) -> None:
        eng = self.ps.engine
        keys, levels = eng.keys[side], eng.levels[side]
        k = self.k[side]
        n = min(self.depth, len(keys))
        changed = self.changed[side]
        while k < n:
            level = levels[keys[k]]
            changed[level.price] = level
            k += 1
        self.k[side] = k

    def on_book(self, code: int, order: Order, level: Level, rank: int, flag: bool) -> None:
        side = order.side
        k = self.k[side]
        if rank >= k and not (flag and (code == ADD or code == MOVE_IN) and k < self.depth):
            return  # below the subscriber's window and not a new level entering it
        self.ps.dirty = True  # may queue nothing (flush then returns None), never the reverse
        if code == ADD or code == MOVE_IN:
            if rank < k:
                self.changed[side][level.price] = level
                if flag:
                    self.k[side] = k + 1
            elif flag and k < self.depth:
                self.changed[side][level.price] = level
                self.k[side] = k + 1
        elif code == FILL or code == AMEND:
            if rank < k:
                self.changed[side][level.price] = level
        elif rank < k:  # CANCEL, FILLED, MOVE_OUT
            if flag:
                self.changed[side][level.price] = None
                self.k[side] = k - 1
                self._refill(side)
            else:
                self.changed[side][level.price] = level

    def _levels_json(self, changed: dict[int, Level | None]) -> str:
        eng = self.ps.engine
        zero = self.zero
        qty_format = eng.qty_format
        parts = []
        for price, level in changed.items():
            if level is None or not level.orders:
                parts.append(f'{{"price":{eng.price_text(price)},"qty":{zero}}}')
            else:
                parts.append(f'{{"price":{level.price_text},"qty":{qty_format(level.total)}}}')
        return ",".join(parts)

    def flush(self) -> str | None:
        k = self.k
        if k[0] > self.depth:
            k[0] = self.depth
        if k[1] > self.depth:
            k[1] = self.depth
        cb, ca = self.changed
        if not cb and not ca:
            return None
        ps = self.ps
        text = (
            f'{self._head}{self._levels_json(cb) if cb else ""}],'
            f'"asks":[{self._levels_json(ca) if ca else ""}],'
            f'"checksum":{ps.checksum2()},"timestamp":"{ps.now.t6}"}}]}}'
        )
        cb.clear()
        ca.clear()
        return text

    def snapshot(self) -> str:
        ps = self.ps
        eng = ps.engine
        qp = ps.qp
        sides = []
        for side in (BID, ASK):
            sides.append(",".join(
                [f'{{"price":{lv.price_text},"qty":{units_to_text(lv.total, qp)}}}'
                 for lv in eng.top(side, self.depth)]))
        return (
            f'{{"channel":"book","type":"snapshot","data":[{{"symbol":"{ps.symbol}",'
            f'"bids":[{sides[0]}],"asks":[{sides[1]}],"checksum":{ps.checksum2()},'
            f'"timestamp":"{ps.now.t6}"}}]}}'
        )


class TradeView(View):
    """``trade`` view: one update per taker order with all its trades."""

    __slots__ = ("ps",)

    def __init__(self, key: tuple, ps: PairState) -> None:
        super().__init__(key)
        self.ps = ps

    def on_trades(self, trades: list[TradeRec]) -> str | None:
        if not trades:
            return None
        return f'{{"channel":"trade","type":"update","data":[{",".join([t.json for t in trades])}]}}'

    def snapshot(self) -> str:
        recent = list(self.ps.trades)[-TRADE_SNAPSHOT:]
        return f'{{"channel":"trade","type":"snapshot","data":[{",".join([t.json for t in recent])}]}}'


class OhlcView(View):
    """``ohlc`` view of one interval: the current bar after every taker order that traded."""

    __slots__ = ("ps", "interval")

    def __init__(self, key: tuple, ps: PairState, interval: int) -> None:
        super().__init__(key)
        self.ps = ps
        self.interval = interval

    def on_trades(self, trades: list[TradeRec]) -> str | None:
        if not trades:
            return None
        ps = self.ps
        return (
            f'{{"channel":"ohlc","type":"update","timestamp":"{ps.now.t9}",'
            f'"data":[{render_bar(ps, ps.bars[self.interval][-1])}]}}'
        )

    def snapshot(self) -> str:
        ps = self.ps
        bars = list(ps.bars[self.interval])[-OHLC_SNAPSHOT_BARS:]
        return (
            f'{{"channel":"ohlc","type":"snapshot","timestamp":"{ps.now.t9}",'
            f'"data":[{",".join([render_bar(ps, b) for b in bars])}]}}'
        )


class TickerView(View):
    """``ticker`` view: on every trade (``event_trigger`` ``trades``) or on every change of
    best bid/ask price or quantity (``bbo``)."""

    __slots__ = ("ps", "trigger", "last_bbo")

    def __init__(self, key: tuple, ps: PairState, trigger: str) -> None:
        super().__init__(key)
        self.ps = ps
        self.trigger = trigger
        self.last_bbo = ps.bbo()

    def on_trades(self, trades: list[TradeRec]) -> str | None:
        if not trades or self.trigger != "trades":
            return None
        return self._frame("update")

    def on_bbo(self) -> str | None:
        bbo = self.ps.bbo()
        if bbo == self.last_bbo:
            return None
        self.last_bbo = bbo
        return self._frame("update")

    def _frame(self, kind: str) -> str:
        return f'{{"channel":"ticker","type":"{kind}","data":[{self.ps.ticker_obj()}]}}'

    def snapshot(self) -> str:
        self.last_bbo = self.ps.bbo()
        return self._frame("snapshot")


class InstrumentView(View):
    """``instrument`` view: all assets and pairs; updates carry the changed pairs."""

    __slots__ = ("render_all",)

    def __init__(self, key: tuple, render_all: Callable[[], str]) -> None:
        super().__init__(key)
        self.render_all = render_all

    def snapshot(self) -> str:
        return f'{{"channel":"instrument","type":"snapshot","data":{self.render_all()}}}'

    @staticmethod
    def update(pair_json: str) -> str:
        return f'{{"channel":"instrument","type":"update","data":{{"assets":[],"pairs":[{pair_json}]}}}}'
