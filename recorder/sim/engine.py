"""Price-time priority limit order book and matching engine for one simulated pair.

Pure and synchronous: no clock, no I/O, no randomness. The caller (the activity generator in
:mod:`recorder.sim.market`) decides *what* happens and *when*; the engine keeps the book exact
and reports every primitive change, at the moment it happens, to a *sink* so that feed views
can follow the book incrementally (see :mod:`recorder.sim.feeds`).

Representation. Prices and quantities are exact integers scaled by the pair's precision
("units", see :mod:`recorder.protocol.numbers`). Each side keeps a sorted list of level *keys*
(``price`` for asks, ``-price`` for bids, so index 0 is always the best level and the index of a
key is the level's *rank*) and a dict ``key -> Level``. A level keeps its orders in a dict, whose
insertion order is the queue order. Rendering caches (text, checksum pieces, JSON fragments) live
on the objects and are dropped whenever the object changes.

Sink protocol. ``sink(code, order, level, rank, flag)`` is called after each primitive change:

* ``ADD`` -- ``order`` now rests at ``level`` (rank ``rank``); ``flag`` is True if the level was
  created by this add.
* ``FILL`` / ``AMEND`` -- quantity of ``order`` changed in place (partial fill / amend down); the
  level keeps its rank.
* ``CANCEL`` / ``FILLED`` -- ``order`` left ``level`` (cancelled / fully filled); ``rank`` is the
  level's rank *before* the change, ``flag`` is True if the level was removed.
* ``MOVE_OUT`` then ``MOVE_IN`` -- a price-changing amend: the order leaves its old level (like a
  delete) and joins the back of the new level (like an add), keeping its id.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from recorder.errors import RecorderError
from recorder.protocol.numbers import checksum_piece, units_to_text
from recorder.protocol.timestamps import ns_to_rfc3339

@lru_cache(maxsize=4096)
def _second_prefix(seconds: int) -> str:
    return ns_to_rfc3339(seconds * 1_000_000_000, 0)[:-1]


def rfc3339(ns: int, digits: int) -> str:
    """``ns_to_rfc3339(ns, digits)`` with the date/second prefix memoised (pure)."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    prefix = _second_prefix(seconds)
    if digits == 9:
        return f"{prefix}.{nanos:09d}Z"
    if digits == 6:  # the first 6 of 9 digits, i.e. truncated to microseconds
        return f"{prefix}.{nanos // 1000:06d}Z"
    return f"{prefix}.{nanos:09d}"[: len(prefix) + 1 + digits] + "Z"


def units_formatter(precision: int) -> Callable[[int], str]:
    """A fast ``lambda units: units_to_text(units, precision)`` for *non-negative* units:
    integer part, ``.``, the remainder zero-padded to ``precision`` digits (same text)."""
    if precision == 0:
        return str
    scale = 10**precision
    fmt = f"%d.%0{precision}d"

    def fmt_units(units: int) -> str:
        return fmt % divmod(units, scale)

    return fmt_units

__all__ = [
    "BID",
    "ASK",
    "ADD",
    "FILL",
    "AMEND",
    "CANCEL",
    "FILLED",
    "MOVE_OUT",
    "MOVE_IN",
    "SIDE_NAMES",
    "Order",
    "Level",
    "Fill",
    "Sink",
    "EngineError",
    "PairEngine",
    "rfc3339",
    "units_formatter",
]

BID: Final = 0
ASK: Final = 1
#: Wire names of the sides, indexed by ``BID``/``ASK``.
SIDE_NAMES: Final = ("bid", "ask")

ADD: Final = 1
FILL: Final = 2
AMEND: Final = 3
CANCEL: Final = 4
FILLED: Final = 5
MOVE_OUT: Final = 6
MOVE_IN: Final = 7


class EngineError(RecorderError, ValueError):
    """An operation would violate a book invariant (crossing add, unknown order, bad grid)."""


class Order:
    """One resting order. ``qty`` is the remaining visible quantity in units."""

    __slots__ = ("order_id", "side", "price", "qty", "ts_ns", "_qty_text", "_piece", "_frag")

    def __init__(self, order_id: str, side: int, price: int, qty: int, ts_ns: int) -> None:
        self.order_id = order_id
        self.side = side
        self.price = price
        self.qty = qty
        self.ts_ns = ts_ns  #: insertion or last amend time (ns)
        self._qty_text: str | None = None
        self._piece: str | None = None
        self._frag: str | None = None

    def touch(self) -> None:
        """Drop the rendering caches after a change of qty, price or timestamp."""
        self._qty_text = self._piece = self._frag = None

    def __repr__(self) -> str:
        return f"Order({self.order_id}, side={self.side}, price={self.price}, qty={self.qty})"


class Level:
    """One price level; ``orders`` in queue order, ``total`` the summed quantity in units."""

    __slots__ = ("price", "key", "orders", "total", "price_text", "_price_piece", "_piece3", "_piece2")

    def __init__(self, price: int, key: int, price_text: str) -> None:
        self.price = price
        self.key = key
        self.orders: dict[str, Order] = {}
        self.total = 0
        self.price_text = price_text
        self._price_piece = str(price) if price else ""  # checksum_piece(price), inlined
        self._piece3: str | None = None
        self._piece2: str | None = None


@dataclass(frozen=True, slots=True)
class Fill:
    """One match: ``maker`` traded ``qty`` units at ``price`` units (the maker's price)."""

    maker_id: str
    price: int
    qty: int
    maker_left: int  #: maker's remaining qty after the fill (0 = fully filled)


Sink = Callable[[int, Order, Level, int, bool], None]


def _no_sink(code: int, order: Order, level: Level, rank: int, flag: bool) -> None:
    return None


class PairEngine:
    """The order book of one pair with price-time priority matching.

    ``price_precision``/``qty_precision`` define the units; ``tick``/``lot`` are the price and
    quantity grids in units (every resting price is a multiple of ``tick``; every quantity a
    multiple of ``lot``). The book is never crossed: :meth:`add` refuses marketable prices and
    :meth:`execute` matches before resting the remainder.
    """

    def __init__(
        self,
        symbol: str,
        price_precision: int,
        qty_precision: int,
        *,
        tick: int = 1,
        lot: int = 1,
        sink: Sink | None = None,
    ) -> None:
        if tick <= 0 or lot <= 0:
            raise EngineError("tick and lot must be positive")
        self.symbol = symbol
        self.price_precision = price_precision
        self.qty_precision = qty_precision
        self.tick = tick
        self.lot = lot
        self.sink: Sink = sink or _no_sink
        #: per side: sorted keys (best first) and key -> Level
        self.keys: tuple[list[int], list[int]] = ([], [])
        self.levels: tuple[dict[int, Level], dict[int, Level]] = ({}, {})
        self.orders: dict[str, Order] = {}
        self._price_text: dict[int, str] = {}
        #: ``units_to_text(units, qty_precision)`` for non-negative units (see units_formatter)
        self.qty_format = units_formatter(qty_precision)

    # ------------------------------------------------------------------ queries

    def best(self, side: int) -> Level | None:
        """Best level of ``side`` or None when that side is empty."""
        keys = self.keys[side]
        return self.levels[side][keys[0]] if keys else None

    def best_price(self, side: int) -> int | None:
        keys = self.keys[side]
        if not keys:
            return None
        return keys[0] if side == ASK else -keys[0]

    def top(self, side: int, n: int) -> list[Level]:
        """The ``n`` best levels of ``side``, best first."""
        levels = self.levels[side]
        return [levels[k] for k in self.keys[side][:n]]

    def level_count(self, side: int) -> int:
        return len(self.keys[side])

    def rank_of(self, side: int, price: int) -> int:
        """Rank (0 = best) that a level at ``price`` has or would have on ``side``."""
        return bisect_left(self.keys[side], price if side == ASK else -price)

    def price_text(self, price: int) -> str:
        """Decimal text of a price in units (cached)."""
        text = self._price_text.get(price)
        if text is None:
            text = units_to_text(price, self.price_precision)
            if len(self._price_text) > 100_000:
                self._price_text.clear()
            self._price_text[price] = text
        return text

    def qty_text(self, order: Order) -> str:
        text = order._qty_text
        if text is None:
            text = order._qty_text = self.qty_format(order.qty)
        return text

    def order_piece(self, order: Order, level: Level) -> str:
        """Checksum text of one order (price digits + qty digits)."""
        piece = order._piece
        if piece is None:
            piece = order._piece = level._price_piece + checksum_piece(order.qty)
        return piece

    def level_piece3(self, level: Level) -> str:
        """Level3 checksum text of a level: every order in queue order."""
        piece = level._piece3
        if piece is None:
            parts = []
            price_piece = level._price_piece
            for o in level.orders.values():
                p = o._piece
                if p is None:  # order_piece(o, level), inlined (qty > 0: str(qty))
                    p = o._piece = price_piece + str(o.qty)
                parts.append(p)
            piece = level._piece3 = "".join(parts)
        return piece

    def level_piece2(self, level: Level) -> str:
        """L2 checksum text of a level: price digits + total qty digits."""
        piece = level._piece2
        if piece is None:
            piece = level._piece2 = level._price_piece + checksum_piece(level.total)
        return piece

    def order_frag(self, order: Order, level: Level) -> str:
        """JSON tail of a level3 order object (everything after ``{`` or ``{"event":..,``)."""
        frag = order._frag
        if frag is None:
            frag = order._frag = (
                f'"order_id":"{order.order_id}","limit_price":{level.price_text},'
                f'"order_qty":{self.qty_text(order)},"timestamp":"{rfc3339(order.ts_ns, 9)}"}}'
            )
        return frag

    def level_of(self, order: Order) -> Level:
        return self.levels[order.side][order.price if order.side == ASK else -order.price]

    # ------------------------------------------------------------------ mutations

    def _check_grid(self, price: int, qty: int) -> None:
        if price <= 0 or price % self.tick:
            raise EngineError(f"{self.symbol}: price {price} not on tick grid {self.tick}")
        if qty <= 0 or qty % self.lot:
            raise EngineError(f"{self.symbol}: qty {qty} not on lot grid {self.lot}")

    def _rest(self, order: Order, code: int) -> None:
        side = order.side
        price = order.price
        key = price if side == ASK else -price
        keys = self.keys[side]
        rank = bisect_left(keys, key)
        levels = self.levels[side]
        level = levels.get(key)
        if level is None:
            created = True
            text = self._price_text.get(price)
            level = Level(price, key, text if text is not None else self.price_text(price))
            levels[key] = level
            keys.insert(rank, key)  # absent key: insort's position is bisect_left's
        else:
            created = False
            level._piece3 = level._piece2 = None
        oid = order.order_id
        level.orders[oid] = order
        level.total += order.qty
        self.orders[oid] = order
        self.sink(code, order, level, rank, created)

    def _unrest(self, order: Order, code: int) -> None:
        side = order.side
        key = order.price if side == ASK else -order.price
        level = self.levels[side][key]
        keys = self.keys[side]
        rank = bisect_left(keys, key)
        del level.orders[order.order_id]
        del self.orders[order.order_id]
        level.total -= order.qty
        level._piece3 = level._piece2 = None
        removed = not level.orders
        if removed:
            del keys[rank]
            del self.levels[side][key]
        self.sink(code, order, level, rank, removed)

    def add(self, order_id: str, side: int, price: int, qty: int, ts_ns: int) -> Order:
        """Rest a passive limit order at the back of its level. Refuses marketable prices."""
        if price <= 0 or price % self.tick or qty <= 0 or qty % self.lot:
            self._check_grid(price, qty)  # raises the precise error
        if order_id in self.orders:
            raise EngineError(f"{self.symbol}: duplicate order id {order_id}")
        opp_keys = self.keys[1 - side]
        if opp_keys:
            opposite = opp_keys[0] if side == BID else -opp_keys[0]
            if price >= opposite if side == BID else price <= opposite:
                raise EngineError(f"{self.symbol}: add at {price} would cross {opposite}")
        order = Order(order_id, side, price, qty, ts_ns)
        self._rest(order, ADD)
        return order

    def cancel(self, order_id: str) -> Order:
        """Remove a resting order (reason cancel)."""
        order = self.orders.get(order_id)
        if order is None:
            raise EngineError(f"{self.symbol}: unknown order {order_id}")
        self._unrest(order, CANCEL)
        return order

    def amend(self, order_id: str, qty: int, price: int | None, ts_ns: int) -> Order:
        """Amend an order: new ``qty`` and optionally a new ``price``; the timestamp becomes
        ``ts_ns``. Same price: in place, queue priority kept. New price: the order moves to the
        back of the new level (refused if that price would cross)."""
        order = self.orders.get(order_id)
        if order is None:
            raise EngineError(f"{self.symbol}: unknown order {order_id}")
        new_price = order.price if price is None else price
        self._check_grid(new_price, qty)
        if new_price == order.price:
            level = self.level_of(order)
            level.total += qty - order.qty
            level._piece3 = level._piece2 = None
            order.qty = qty
            order.ts_ns = ts_ns
            order.touch()
            self.sink(AMEND, order, level, self.rank_of(order.side, order.price), False)
            return order
        opposite = self.best_price(1 - order.side)
        if opposite is not None and (new_price >= opposite if order.side == BID else new_price <= opposite):
            raise EngineError(f"{self.symbol}: amend to {new_price} would cross {opposite}")
        self._unrest(order, MOVE_OUT)
        order.price = new_price
        order.qty = qty
        order.ts_ns = ts_ns
        order.touch()
        self._rest(order, MOVE_IN)
        return order

    def execute(
        self,
        taker_id: str,
        side: int,
        qty: int,
        limit: int | None,
        ts_ns: int,
    ) -> tuple[list[Fill], Order | None]:
        """Match an incoming order of ``side`` for ``qty`` units against the opposite side in
        price-time priority, up to ``limit`` (None = market order). Makers trade at their own
        price; a fully filled maker is removed (``FILLED``), a partially filled one modified in
        place (``FILL``). An unfilled limit remainder rests as ``taker_id`` (``ADD``). Returns the
        fills and the resting remainder (if any)."""
        if qty <= 0 or qty % self.lot:
            raise EngineError(f"{self.symbol}: qty {qty} not on lot grid {self.lot}")
        if limit is not None and (limit <= 0 or limit % self.tick):
            raise EngineError(f"{self.symbol}: limit {limit} not on tick grid {self.tick}")
        opp = 1 - side
        keys = self.keys[opp]
        levels = self.levels[opp]
        fills: list[Fill] = []
        left = qty
        sink = self.sink
        while left and keys:
            key = keys[0]
            price = key if opp == ASK else -key
            if limit is not None and (price > limit if side == BID else price < limit):
                break
            level = levels[key]
            while left and level.orders:
                maker = next(iter(level.orders.values()))
                take = maker.qty if maker.qty <= left else left
                left -= take
                if take == maker.qty:
                    fills.append(Fill(maker.order_id, price, take, 0))
                    self._unrest(maker, FILLED)
                else:
                    maker.qty -= take
                    maker.touch()
                    level.total -= take
                    level._piece3 = level._piece2 = None
                    fills.append(Fill(maker.order_id, price, take, maker.qty))
                    sink(FILL, maker, level, 0, False)
            # a level emptied by FILLED was removed from keys by _unrest
        rest = None
        if left and limit is not None:
            if taker_id in self.orders:
                raise EngineError(f"{self.symbol}: duplicate order id {taker_id}")
            rest = Order(taker_id, side, limit, left, ts_ns)
            self._rest(rest, ADD)
        return fills, rest

    def check(self) -> None:
        """Verify every invariant (slow; for tests)."""
        for side in (BID, ASK):
            keys = self.keys[side]
            assert keys == sorted(keys) and len(set(keys)) == len(keys)
            assert set(keys) == set(self.levels[side])
            for key, level in self.levels[side].items():
                assert level.orders, "empty level kept"
                assert level.key == key and level.price == (key if side == ASK else -key)
                assert level.total == sum(o.qty for o in level.orders.values())
                for o in level.orders.values():
                    assert o.side == side and o.price == level.price and o.qty > 0
                    assert self.orders[o.order_id] is o
                    assert o.price % self.tick == 0 and o.qty % self.lot == 0
        assert len(self.orders) == sum(len(lv.orders) for s in self.levels for lv in s.values())
        bb, ba = self.best_price(BID), self.best_price(ASK)
        assert bb is None or ba is None or bb < ba, "crossed book"
