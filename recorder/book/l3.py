"""Spot L3 (order-by-order, ``level3`` channel) book: the reference model of Kraken's rules.

One :class:`L3Book` per symbol. Orders sit in queue order inside their price level (snapshot
order, later ``add``s at the back). Events of a message are applied in array order, bids then
asks:

* ``add`` appends the order to the back of its level. An ``add`` for an order id already in the
  book (Kraken re-sends orders as ``add`` when their level comes back into the window, with the
  old timestamp) replaces the stale copy: the old copy is removed and the new one appended; it
  is counted in :attr:`L3Result.duplicate_adds`.
* ``modify`` at the same price (and side) changes the quantity *in place* (queue position kept).
  A ``modify`` whose price (or side) differs is applied as delete + re-add at the back of the
  new level, as the protocol note prescribes (Kraken's priority rule for amends is not
  documented), and counted in :attr:`L3Result.requeued` so a later checksum mismatch can be
  attributed. A ``modify`` of an unknown id is applied as an ``add`` and counted; a ``modify``
  to quantity 0 removes the order.
* ``delete`` removes the order by id (its price is not needed); unknown ids are counted.

After the events each side is truncated to ``depth`` *price levels* (Kraken sends nothing for
levels leaving the window; their orders return later as ``add``), then the checksum is
computed: for each of the 10 best levels per side (asks ascending, then bids descending) every
order's ``price`` then ``qty`` piece in queue order
(:func:`recorder.protocol.checksum.level_piece`).

This is the readable model the compiled core (``recorder._core.L3Book``) is tested against, and
the ``engine="python"`` path: it keeps no caches. Each side keeps its level keys sorted best
first (bids by negated price) next to a dict key -> level, a level being a dict order id ->
order in queue order; the book also indexes every order by id. Order timestamps (int ns) are
kept per order when the decoded order exposes ``ts_ns`` (else ``None``) so checkpoints can
restore them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Final, NamedTuple, Protocol

import msgspec

from recorder.book.checkpoint import L3Checkpoint, L3OrderState, validate_l3
from recorder.book.l2 import Side
from recorder.protocol.checksum import CHECKSUM_LEVELS, crc_of_pieces, level_piece
from recorder.protocol.errors import BookError
from recorder.protocol.numbers import MAX_PRECISION, NumToken, to_units, units_to_text

__all__ = ["L3OrderEvent", "L3BookData", "L3Result", "OrderView", "L3Book"]

#: Event codes of the rows :meth:`L3Book.apply` records (snapshot entries are 0; an unknown
#: event is recorded as 0 just before the book raises for it).
EVENT_CODES: Final = {"add": 1, "modify": 2, "delete": 3}

#: The six lists :meth:`L3Book.apply` appends rows to: ``ts_ns``, event code, side (0 bid,
#: 1 ask), order id, price units, quantity units.
L3Rows = tuple[list[int | None], list[int], list[int], list[str], list[int], list[int]]

#: Units-level event codes :meth:`L3Book.apply_units` takes, by name.
_ADD, _MODIFY, _DELETE = EVENT_CODES["add"], EVENT_CODES["modify"], EVENT_CODES["delete"]


class L3OrderEvent(Protocol):
    """One decoded level3 order entry. ``event`` is ``None`` in snapshots.

    An optional ``ts_ns`` attribute (int nanoseconds) is read with ``getattr`` when present.
    """

    @property
    def order_id(self) -> str: ...

    @property
    def limit_price(self) -> NumToken: ...

    @property
    def order_qty(self) -> NumToken: ...

    @property
    def event(self) -> str | None: ...


class L3BookData(Protocol):
    """One ``data`` item of a v2 ``level3`` message."""

    @property
    def symbol(self) -> str: ...

    @property
    def bids(self) -> Iterable[L3OrderEvent]: ...

    @property
    def asks(self) -> Iterable[L3OrderEvent]: ...

    @property
    def checksum(self) -> int | None: ...


class _Item(NamedTuple):
    """Events handed to :meth:`L3Book.update`, shaped as a decoded ``data`` item."""

    symbol: str
    bids: Iterable[L3OrderEvent]
    asks: Iterable[L3OrderEvent]
    checksum: int | None


class L3Result(msgspec.Struct, frozen=True, gc=False):
    """Outcome of applying one message to an :class:`L3Book`.

    ``computed``/``expected``/``match``/``crossed`` as in :class:`recorder.book.l2.L2Result`.
    Anomaly counters for this message: ``requeued`` price- or side-changing modifies (applied as
    delete + re-add at the back); ``duplicate_adds`` adds of ids already present (stale copy
    replaced); ``unknown_modifies`` modifies of absent ids (applied as adds); ``unknown_deletes``
    deletes of absent ids (ignored); ``truncated`` price levels dropped by depth truncation.
    """

    computed: int
    expected: int | None
    match: bool | None
    crossed: bool
    requeued: int = 0
    duplicate_adds: int = 0
    unknown_modifies: int = 0
    unknown_deletes: int = 0
    truncated: int = 0

    @property
    def ok(self) -> bool:
        """True unless the checksum mismatched or the book is crossed."""
        return self.match is not False and not self.crossed


class OrderView(NamedTuple):
    """Read-only view of one resting order."""

    order_id: str
    side: Side
    price: int
    qty: int
    ts_ns: int | None


class _Order(msgspec.Struct, frozen=True, gc=False):
    """A resting order. ``sign`` is +1 for asks, -1 for bids; ``key = price * sign``.

    Frozen: a modify puts a new order in the old one's place, so the orders a cut keeps
    (:meth:`L3Book.checkpoint_later`) never change.
    """

    order_id: str
    sign: int
    key: int
    price: int
    qty: int
    ts_ns: int | None


def _new_order(order_id: str, sign: int, price: int, qty: int, ts_ns: int | None) -> _Order:
    return _Order(order_id, sign, price * sign, price, qty, ts_ns)


#: One price level: order id -> order, in queue order (dicts keep insertion order).
_Level = dict[str, _Order]


class _L3Side:
    """One side: ``keys`` (level keys sorted ascending, best first; bid keys are negated
    prices) and ``levels`` key -> :data:`_Level`."""

    __slots__ = ("sign", "keys", "levels")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.keys: list[int] = []
        self.levels: dict[int, _Level] = {}

    def clear(self) -> None:
        self.keys.clear()
        self.levels.clear()

    def append(self, order: _Order) -> None:
        """Put an order at the back of its level, creating the level if needed."""
        level = self.levels.get(order.key)
        if level is None:
            level = self.levels[order.key] = {}
            self.keys.insert(bisect_left(self.keys, order.key), order.key)
        level[order.order_id] = order

    def discard(self, order: _Order) -> None:
        """Remove an order from its level, dropping the level when it becomes empty."""
        level = self.levels[order.key]
        del level[order.order_id]
        if not level:
            del self.levels[order.key]
            del self.keys[bisect_left(self.keys, order.key)]

    def truncate(self, depth: int) -> list[_Level]:
        """Drop the levels beyond ``depth``; returns them."""
        dropped = [self.levels.pop(key) for key in self.keys[depth:]]
        del self.keys[depth:]
        return dropped

    def checksum_pieces(self) -> list[str]:
        """Every order of the 10 best levels, best level first and in queue order."""
        return [level_piece(order.price, order.qty)
                for key in self.keys[:CHECKSUM_LEVELS]
                for order in self.levels[key].values()]

    def total_qty(self, key: int) -> int:
        """Total quantity of the level ``key``."""
        return sum(order.qty for order in self.levels[key].values())


def _record(rows: L3Rows, ts_ns: int | None, event: int, side: int, order_id: str, price: int,
            qty: int) -> None:
    """Append one entry to the six row lists (:data:`L3Rows`)."""
    rows[0].append(ts_ns)
    rows[1].append(event)
    rows[2].append(side)
    rows[3].append(order_id)
    rows[4].append(price)
    rows[5].append(qty)


class L3CheckpointCut:
    """The orders of an :class:`L3Book` at a cut (:meth:`L3Book.checkpoint_later`), in the
    book's order index order (orders are frozen: they stay as they were at the cut)."""

    __slots__ = ("symbol", "depth", "pp", "qp", "orders")

    def __init__(self, symbol: str, depth: int, pp: int, qp: int,
                 orders: tuple[_Order, ...]) -> None:
        self.symbol = symbol
        self.depth = depth
        self.pp = pp
        self.qp = qp
        self.orders = orders

    def materialize(self) -> L3Checkpoint:
        """The checkpoint the book's :meth:`L3Book.checkpoint` returned at the cut: per side,
        levels best first (ascending key; bid keys are negated prices), queue order within a
        level (a stable sort keeps the order index's order)."""
        ordered = sorted(self.orders, key=lambda order: order.key)

        def states(sign: int) -> list[L3OrderState]:
            return [L3OrderState(o.order_id, units_to_text(o.price, self.pp),
                                 units_to_text(o.qty, self.qp), o.ts_ns)
                    for o in ordered if o.sign == sign]

        return L3Checkpoint(symbol=self.symbol, depth=self.depth, price_precision=self.pp,
                            qty_precision=self.qp, bids=states(-1), asks=states(1))


class L3Book:
    """Kraken spot level3 book for one symbol at one subscribed depth (price levels per side).

    ``price_precision`` / ``qty_precision`` are the pair's decimals from the ``instrument``
    channel (or REST ``pair_decimals`` / ``lot_decimals``).
    """

    __slots__ = (
        "symbol",
        "depth",
        "_pp",
        "_qp",
        "_bids",
        "_asks",
        "_orders",
        "_ready",
        "_requeued",
        "_dup",
        "_unk_mod",
        "_unk_del",
        "messages",
        "mismatches",
        "crossed_messages",
        "requeued",
        "duplicate_adds",
        "unknown_modifies",
        "unknown_deletes",
        "truncated_levels",
    )

    def __init__(self, symbol: str, depth: int, price_precision: int, qty_precision: int) -> None:
        if type(depth) is not int or depth < 1:
            raise BookError(f"depth must be a positive int, got {depth!r}")
        for name, value in (("price_precision", price_precision), ("qty_precision", qty_precision)):
            if type(value) is not int or not 0 <= value <= MAX_PRECISION:
                raise BookError(f"{name} must be an int in 0..{MAX_PRECISION}, got {value!r}")
        self.symbol = symbol
        self.depth = depth
        self._pp = price_precision
        self._qp = qty_precision
        self._bids = _L3Side(-1)
        self._asks = _L3Side(1)
        #: every resting order by id; holds each level's orders in that level's queue order
        self._orders: dict[str, _Order] = {}
        self._ready = False
        # anomaly counters of the message being applied (reset when one starts)
        self._requeued = self._dup = self._unk_mod = self._unk_del = 0
        #: Cumulative counters since construction (snapshots included).
        self.messages = 0
        self.mismatches = 0
        self.crossed_messages = 0
        self.requeued = 0
        self.duplicate_adds = 0
        self.unknown_modifies = 0
        self.unknown_deletes = 0
        self.truncated_levels = 0

    # ------------------------------------------------------------------ applying messages

    def apply(self, kind: str, data: L3BookData, rows: L3Rows | None = None) -> L3Result:
        """Apply one decoded ``data`` item; ``kind`` is the message ``type``.

        An update's entries are applied in array order, bids then asks; each one's price is
        converted before its quantity, both before the event is applied.

        ``rows``: six lists (:data:`L3Rows`) to which each entry is appended as it is
        applied, so that a caller recording the events (the archive pipeline) converts every
        number once. With ``rows`` a ``delete``'s price and quantity are parsed (and
        validated) too; without, a delete needs only its order id. When the message raises,
        the entries before the failing one have been appended.
        """
        if data.symbol != self.symbol:
            raise BookError(f"message for {data.symbol!r} applied to the {self.symbol!r} book")
        if kind == "snapshot":
            return self.snapshot(data.bids, data.asks, data.checksum, rows)
        self._begin_update(kind)
        for code, side, entries in ((0, self._bids, data.bids), (1, self._asks, data.asks)):
            for entry in entries:
                event = entry.event
                order_id = entry.order_id
                if event == "delete" and rows is None:
                    self._delete(order_id)
                    continue
                price = to_units(entry.limit_price, self._pp)
                qty = to_units(entry.order_qty, self._qp)
                ts_ns = getattr(entry, "ts_ns", None)
                if rows is not None:
                    _record(rows, ts_ns, EVENT_CODES.get(event, 0), code, order_id, price, qty)
                if event == "add":
                    self._add(side, order_id, price, qty, ts_ns)
                elif event == "modify":
                    self._modify(side, order_id, price, qty, ts_ns)
                elif event == "delete":
                    self._delete(order_id)
                else:
                    raise BookError(f"{self.symbol}: unknown level3 event {event!r}")
        return self._finish(data.checksum)

    def snapshot(
        self,
        bids: Iterable[L3OrderEvent],
        asks: Iterable[L3OrderEvent],
        checksum: int | None = None,
        rows: L3Rows | None = None,
    ) -> L3Result:
        """Replace the book: every entry is added in array order (``event`` is ignored).

        ``rows``: as for :meth:`apply` (each entry is recorded with event code 0)."""
        self._begin_snapshot()
        for code, side, entries in ((0, self._bids, bids), (1, self._asks, asks)):
            for entry in entries:
                order_id = entry.order_id
                price = to_units(entry.limit_price, self._pp)
                qty = to_units(entry.order_qty, self._qp)
                ts_ns = getattr(entry, "ts_ns", None)
                if rows is not None:
                    _record(rows, ts_ns, 0, code, order_id, price, qty)
                self._add(side, order_id, price, qty, ts_ns)
        return self._finish(checksum)

    def update(
        self,
        bids: Iterable[L3OrderEvent],
        asks: Iterable[L3OrderEvent],
        checksum: int | None = None,
    ) -> L3Result:
        """Apply an update's events in array order, truncate, checksum."""
        return self.apply("update", _Item(self.symbol, bids, asks, checksum))

    def apply_units(
        self,
        kind: str,
        bids: Iterable[tuple[int, str, int, int, int | None]],
        asks: Iterable[tuple[int, str, int, int, int | None]],
        checksum: int | None,
    ) -> L3Result:
        """:meth:`apply` for events already converted to units: each entry is
        ``(event, order_id, price_units, qty_units, ts_ns)`` with ``event`` 1 add, 2 modify,
        3 delete (ignored for snapshots: every entry is added). Same semantics and result,
        for a caller that holds units (``recorder verify`` replaying the archive's rows)."""
        if kind == "snapshot":
            self._begin_snapshot()
            for side, entries in ((self._bids, bids), (self._asks, asks)):
                for _, order_id, price, qty, ts_ns in entries:
                    self._add(side, order_id, price, qty, ts_ns)
            return self._finish(checksum)
        self._begin_update(kind)
        for side, entries in ((self._bids, bids), (self._asks, asks)):
            for event, order_id, price, qty, ts_ns in entries:
                if event == _ADD:
                    self._add(side, order_id, price, qty, ts_ns)
                elif event == _MODIFY:
                    self._modify(side, order_id, price, qty, ts_ns)
                elif event == _DELETE:
                    self._delete(order_id)
                else:
                    raise BookError(f"{self.symbol}: unknown level3 event {event!r}")
        return self._finish(checksum)

    def _begin_snapshot(self) -> None:
        """Start a snapshot: the book is emptied (and invalid until :meth:`_finish`)."""
        self._ready = False
        self._orders.clear()
        self._bids.clear()
        self._asks.clear()
        self._requeued = self._dup = self._unk_mod = self._unk_del = 0

    def _begin_update(self, kind: str) -> None:
        """Start an update (``kind`` must be ``"update"``, the book valid); the book is invalid
        until :meth:`_finish`."""
        if kind != "update":
            raise BookError(f"unknown level3 message type {kind!r}")
        if not self._ready:
            raise BookError(f"{self.symbol}: update without a valid snapshot")
        self._ready = False
        self._requeued = self._dup = self._unk_mod = self._unk_del = 0

    def _add(self, side: _L3Side, order_id: str, price: int, qty: int, ts_ns: int | None) -> None:
        """An ``add``: a stale copy of the id is removed (counted), then the order is appended
        to the back of its level (a quantity of 0 adds nothing)."""
        if price <= 0 or qty < 0:
            raise BookError(f"{self.symbol}: invalid order {order_id}: price {price}, qty {qty}")
        old = self._orders.get(order_id)
        if old is not None:
            self._dup += 1
            self._remove(old)
        if qty:
            order = self._orders[order_id] = _new_order(order_id, side.sign, price, qty, ts_ns)
            side.append(order)

    def _modify(
        self, side: _L3Side, order_id: str, price: int, qty: int, ts_ns: int | None
    ) -> None:
        """A ``modify``: unknown id -> an add (counted); quantity 0 -> removal; same side and
        price -> new quantity in place (the timestamp kept when none is given); otherwise
        removal and re-add at the back of the new level (counted as requeued)."""
        order = self._orders.get(order_id)
        if order is None:
            self._unk_mod += 1
            self._add(side, order_id, price, qty, ts_ns)
            return
        if price <= 0 or qty < 0:
            raise BookError(f"{self.symbol}: invalid order {order_id}: price {price}, qty {qty}")
        if not qty:
            self._remove(order)
            return
        if ts_ns is None:
            ts_ns = order.ts_ns
        if order.sign == side.sign and order.price == price:
            # a new order in the old one's place: the same queue position in the level and in
            # the index (orders are never changed once made, so a cut may keep them)
            new = _new_order(order_id, order.sign, price, qty, ts_ns)
            self._orders[order_id] = side.levels[order.key][order_id] = new
            return
        self._requeued += 1
        self._remove(order)
        self._add(side, order_id, price, qty, ts_ns)

    def _delete(self, order_id: str) -> None:
        """A ``delete``: removes the order by id; an unknown id is counted."""
        order = self._orders.get(order_id)
        if order is None:
            self._unk_del += 1
        else:
            self._remove(order)

    def _remove(self, order: _Order) -> None:
        (self._asks if order.sign > 0 else self._bids).discard(order)
        del self._orders[order.order_id]

    def _truncate(self, side: _L3Side) -> int:
        """Drop the levels beyond ``depth`` and forget their orders; returns the level count."""
        dropped = side.truncate(self.depth)
        for level in dropped:
            for order_id in level:
                del self._orders[order_id]
        return len(dropped)

    def _finish(self, expected: int | None) -> L3Result:
        """Truncate, checksum, compare, count; marks the book ready."""
        truncated = self._truncate(self._bids) + self._truncate(self._asks)
        computed = self.checksum()
        crossed = self.is_crossed()
        self._ready = True
        self.messages += 1
        if expected is None:
            match = None
        else:
            expected = int(expected)
            match = computed == expected
            if not match:
                self.mismatches += 1
        if crossed:
            self.crossed_messages += 1
        self.requeued += self._requeued
        self.duplicate_adds += self._dup
        self.unknown_modifies += self._unk_mod
        self.unknown_deletes += self._unk_del
        self.truncated_levels += truncated
        return L3Result(computed, expected, match, crossed, self._requeued, self._dup,
                        self._unk_mod, self._unk_del, truncated)

    # ------------------------------------------------------------------ queries

    @property
    def ready(self) -> bool:
        """True once a snapshot was applied and no message failed since."""
        return self._ready

    @property
    def price_precision(self) -> int:
        return self._pp

    @property
    def qty_precision(self) -> int:
        return self._qp

    def checksum(self) -> int:
        """Kraken CRC32 of the current book: every order of the 10 best ask levels, then of
        the 10 best bid levels."""
        return crc_of_pieces(self._asks.checksum_pieces(), self._bids.checksum_pieces())

    def _side(self, side: Side) -> _L3Side:
        if side == "bid":
            return self._bids
        if side == "ask":
            return self._asks
        raise BookError(f"side must be 'bid' or 'ask', got {side!r}")

    def _best(self, side: _L3Side) -> tuple[int, int] | None:
        if not side.keys:
            return None
        key = side.keys[0]
        return key * side.sign, side.total_qty(key)

    def best_bid(self) -> tuple[int, int] | None:
        """``(price_units, total_qty_units)`` of the best bid level, or ``None``."""
        return self._best(self._bids)

    def best_ask(self) -> tuple[int, int] | None:
        """``(price_units, total_qty_units)`` of the best ask level, or ``None``."""
        return self._best(self._asks)

    def is_crossed(self) -> bool:
        bk = self._bids.keys
        ak = self._asks.keys
        return bool(bk) and bool(ak) and -bk[0] >= ak[0]

    def levels(self, side: Side, n: int | None = None) -> list[tuple[int, int]]:
        """The ``n`` best levels (all when ``None``) as ``(price_units, total_qty_units)``."""
        s = self._side(side)
        keys = s.keys if n is None else s.keys[:n]
        return [(key * s.sign, s.total_qty(key)) for key in keys]

    def level_orders(self, side: Side, price: int) -> list[OrderView]:
        """Orders of one price level (units) in queue order; empty if the level is absent."""
        s = self._side(side)
        level = s.levels.get(price * s.sign)
        if level is None:
            return []
        return [_view(o) for o in level.values()]

    def orders(self, side: Side | None = None) -> Iterator[OrderView]:
        """All orders, best level first and in queue order; asks then bids when ``side`` is None."""
        sides = (self._asks, self._bids) if side is None else (self._side(side),)
        for s in sides:
            for key in s.keys:
                for order in s.levels[key].values():
                    yield _view(order)

    def order(self, order_id: str) -> OrderView | None:
        """Look up one resting order by id."""
        order = self._orders.get(order_id)
        return None if order is None else _view(order)

    def level_count(self, side: Side) -> int:
        """Number of price levels on one side."""
        return len(self._side(side).keys)

    def __len__(self) -> int:
        """Total number of resting orders (both sides)."""
        return len(self._orders)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._orders

    def __repr__(self) -> str:
        return (
            f"L3Book({self.symbol!r}, depth={self.depth}, orders={len(self._orders)}, "
            f"bid_levels={len(self._bids.keys)}, ask_levels={len(self._asks.keys)}, "
            f"ready={self._ready})"
        )

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self) -> L3Checkpoint:
        """A lossless, serialisable copy of the book (orders in queue order, with timestamps)."""
        if not self._ready:
            raise BookError(f"{self.symbol}: no valid book to checkpoint")
        pp = self._pp
        qp = self._qp

        def states(side: _L3Side) -> list[L3OrderState]:
            return [
                L3OrderState(
                    o.order_id, units_to_text(o.price, pp), units_to_text(o.qty, qp), o.ts_ns
                )
                for key in side.keys
                for o in side.levels[key].values()
            ]

        return L3Checkpoint(
            symbol=self.symbol,
            depth=self.depth,
            price_precision=pp,
            qty_precision=qp,
            bids=states(self._bids),
            asks=states(self._asks),
        )

    def checkpoint_later(self) -> L3CheckpointCut:
        """:meth:`checkpoint` in two halves: this one copies the order index now (references
        only: orders are frozen, a modify replaces its order), the
        returned cut's ``materialize()`` builds the checkpoint :meth:`checkpoint` returns now,
        in any thread, whatever the book does meanwhile. Raises like :meth:`checkpoint` (a
        book that is not ready).

        Relies on an invariant of the book: ``_orders`` holds the orders of each level in that
        level's queue order (every path inserts an order into both or removes it from both, a
        modify in place moves it in neither), so sorting by level key keeps queue order."""
        if not self._ready:
            raise BookError(f"{self.symbol}: no valid book to checkpoint")
        return L3CheckpointCut(self.symbol, self.depth, self._pp, self._qp,
                               tuple(self._orders.values()))

    @classmethod
    def restore(cls, cp: L3Checkpoint) -> L3Book:
        """Rebuild a book from :meth:`checkpoint` output; validates it first.

        The restored book computes the same checksums and reacts to further messages exactly
        like the original; its cumulative counters (``messages``, ``mismatches``...) start at 0.
        """
        book = cls(cp.symbol, cp.depth, cp.price_precision, cp.qty_precision)
        bids, asks = validate_l3(cp)
        for side, entries in ((book._bids, bids), (book._asks, asks)):
            for order_id, price, qty, ts_ns in entries:
                order = book._orders[order_id] = _new_order(order_id, side.sign, price, qty, ts_ns)
                side.append(order)
        book._ready = True
        return book


def _view(order: _Order) -> OrderView:
    side: Side = "ask" if order.sign > 0 else "bid"
    return OrderView(order.order_id, side, order.price, order.qty, order.ts_ns)
