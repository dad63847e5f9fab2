"""Spot L3 (order-by-order, ``level3`` channel) book: exact state machine with Kraken's checksum.

One :class:`L3Book` per symbol. Orders sit in queue order inside their price level (snapshot
order, later ``add``s at the back). Events of a message are applied in array order:

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
order's ``price`` then ``qty`` piece in queue order. Each order caches its piece (ASCII
``bytes``: no encoding before the CRC); each level caches the join of its orders' pieces (an
``add`` appends to it, a delete or modify rebuilds it: eagerly inside the top 10, lazily
below); each side keeps the pieces of its 10 best levels in a list maintained in place and
caches their join and (asks) its CRC; the book caches the final CRC. A message that leaves
both top 10s untouched costs no join and no CRC.

Order timestamps (int ns) are kept per order when the decoded order exposes ``ts_ns`` (else
``None``) so checkpoints can restore them.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left
from operator import attrgetter
from collections.abc import Iterable, Iterator
from typing import Final, NamedTuple, Protocol

import msgspec

from recorder.book.checkpoint import L3Checkpoint, L3OrderState, validate_l3
from recorder.book.l2 import Side, memo_units, token_units
from recorder.protocol.checksum import CHECKSUM_LEVELS
from recorder.protocol.errors import BookError
from recorder.protocol.numbers import (
    MAX_DIGITS,
    MAX_PRECISION,
    NumToken,
    to_units,
    units_to_text,
)

__all__ = ["L3OrderEvent", "L3BookData", "L3Result", "OrderView", "L3Book"]

_TOP: Final = CHECKSUM_LEVELS
#: an :class:`_Order`'s level key
_KEY: Final = attrgetter("key")
_POW10: Final = tuple(10**i for i in range(MAX_PRECISION + 1))
_MAX_PLAIN_LEN: Final = MAX_DIGITS + 2
#: Event codes of the rows :meth:`L3Book.apply` records (snapshot entries are 0; an unknown
#: event is recorded as 0 just before the book raises for it).
EVENT_CODES: Final = {"add": 1, "modify": 2, "delete": 3}

#: The six lists :meth:`L3Book.apply` appends rows to: ``ts_ns``, event code, side (0 bid,
#: 1 ask), order id, price units, quantity units.
L3Rows = tuple[list[int | None], list[int], list[int], list[str], list[int], list[int]]


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

    Holds no reference to its side or level (no reference cycles, so it need not be tracked by
    the garbage collector); ``piece`` is ``level_piece(price, qty)`` (both are > 0) as ASCII
    ``bytes``, so joins need no encoding. Frozen: a modify puts a new order in the old one's
    place, so the orders a cut keeps (:meth:`L3Book.checkpoint_later`) never change.
    """

    order_id: str
    sign: int
    key: int
    price: int
    qty: int
    ts_ns: int | None
    piece: bytes


class _Level(msgspec.Struct, gc=False):
    """Orders of one price level in queue order, and the cached join of their pieces."""

    orders: dict[str, _Order]  # insertion order == queue order
    piece: bytes | None = None

    def build(self) -> bytes:
        piece = self.piece = b"".join([o.piece for o in self.orders.values()])
        return piece


def _new_order(
    order_id: str, sign: int, price: int, qty: int, ts_ns: int | None
) -> _Order:
    return _Order(order_id, sign, price * sign, price, qty, ts_ns, b"%d%d" % (price, qty))


class _L3Side:
    """Sorted level keys (best first; bids negated), key -> level, and the top-10 pieces.

    Invariant: ``toppieces[i]`` is the checksum piece of level ``keys[i]`` for ``i < 10`` and
    those levels' ``piece`` is always valid (kept eagerly; an ``add`` appends to it); deeper
    levels rebuild their piece lazily (``None`` after a delete/modify) when they move up.
    ``top`` caches the join of ``toppieces`` and is ``None`` after any change to it.
    """

    __slots__ = ("sign", "name", "keys", "levels", "toppieces", "top", "crc0")

    def __init__(self, sign: int, name: Side) -> None:
        self.sign = sign
        self.name: Side = name
        self.keys: list[int] = []
        self.levels: dict[int, _Level] = {}
        self.toppieces: list[bytes] = []
        self.top: bytes | None = b""
        self.crc0: int | None = 0  # cached crc32(top), valid while top is not None

    def clear(self) -> None:
        self.keys.clear()
        self.levels.clear()
        self.toppieces.clear()
        self.top = b""
        self.crc0 = 0

    def refresh(self, key: int, level: _Level) -> None:
        """Record that the orders of the existing level ``key`` changed (not its order count 0)."""
        keys = self.keys
        if len(keys) <= _TOP or key <= keys[_TOP - 1]:
            self.toppieces[bisect_left(keys, key)] = level.build()
            self.top = None
        else:
            level.piece = None

    def append(self, order: _Order) -> None:
        """Put an order at the back of its level, creating the level if needed."""
        key = order.key
        level = self.levels.get(key)
        if level is None:
            self.levels[key] = _Level({order.order_id: order}, order.piece)
            keys = self.keys
            i = bisect_left(keys, key)
            keys.insert(i, key)
            if i < _TOP:
                toppieces = self.toppieces
                toppieces.insert(i, order.piece)
                if len(toppieces) > _TOP:
                    toppieces.pop()
                self.top = None
            return
        level.orders[order.order_id] = order
        piece = level.piece
        if piece is not None:
            piece = level.piece = piece + order.piece  # back of the queue = end of the text
            keys = self.keys
            if len(keys) <= _TOP or key <= keys[_TOP - 1]:
                self.toppieces[bisect_left(keys, key)] = piece
                self.top = None

    def discard(self, order: _Order) -> None:
        """Remove an order from its level, dropping the level when it becomes empty."""
        key = order.key
        level = self.levels[key]
        del level.orders[order.order_id]
        if level.orders:
            self.refresh(key, level)
            return
        del self.levels[key]
        keys = self.keys
        i = bisect_left(keys, key)
        del keys[i]
        if i < _TOP:
            toppieces = self.toppieces
            del toppieces[i]
            if len(keys) >= _TOP:
                level = self.levels[keys[_TOP - 1]]
                toppieces.append(level.piece or level.build())
            self.top = None

    def top_text(self) -> bytes:
        """Checksum input of this side: every order of the 10 best levels, in queue order."""
        top = self.top
        if top is None:
            top = self.top = b"".join(self.toppieces)
            self.crc0 = None
        return top

    def top_crc(self) -> int:
        """``crc32`` of :meth:`top_text` (cached): the ask half of Kraken's checksum."""
        crc = self.crc0
        if crc is None or self.top is None:
            crc = self.crc0 = zlib.crc32(self.top_text())
        return crc


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
        pp = self.pp
        qp = self.qp
        ordered = sorted(self.orders, key=_KEY)
        return L3Checkpoint(
            symbol=self.symbol,
            depth=self.depth,
            price_precision=pp,
            qty_precision=qp,
            bids=[L3OrderState(o.order_id, units_to_text(o.price, pp), units_to_text(o.qty, qp),
                               o.ts_ns) for o in ordered if o.sign < 0],
            asks=[L3OrderState(o.order_id, units_to_text(o.price, pp), units_to_text(o.qty, qp),
                               o.ts_ns) for o in ordered if o.sign > 0],
        )


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
        "_crc",
        "_prices",
        "_qtys",
        "_cache_max",
        "_requeued",
        "_dup",
        "_unk_mod",
        "_unk_del",
        "_anomalous",
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
        self._bids = _L3Side(-1, "bid")
        self._asks = _L3Side(1, "ask")
        self._orders: dict[str, _Order] = {}
        self._ready = False
        self._crc: int | None = None  # valid while neither side's top-10 text is invalidated
        self._prices: dict[NumToken, int] = {}  # price text -> units (bounded memo)
        # qty text -> units (bounded memo): market makers and round sizes repeat
        self._qtys: dict[NumToken, int] = {}
        # Bounded memo, cleared when full: at depth 10 on a moving market 256 entries hit
        # ~95% of price tokens (4 * depth + 64 = 104 hit ~75%); at most 4096 (~0.5 MB).
        self._cache_max = min(16 * depth + 96, 4096)
        # per-message anomaly counters; ``_anomalous`` says one of them may be non-zero, so a
        # clean message (the common case) neither reads nor resets them
        self._requeued = self._dup = self._unk_mod = self._unk_del = 0
        self._anomalous = False
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

        Updates are applied here directly (the hot path: the common ``add``, the quantity
        parse and :meth:`_finish` are inlined, same logic and errors as :meth:`_add`,
        ``token_units`` and ``_finish``).

        ``rows``: six lists (:data:`L3Rows`) to which each entry is appended as it is
        applied, so that a caller recording the events (the archive pipeline) converts every
        number once. With ``rows`` a ``delete``'s price and quantity are parsed (and
        validated) too; without, a delete needs only its order id. When the message raises,
        the entries before the failing one have been appended.
        """
        if data.symbol != self.symbol:
            raise BookError(f"message for {data.symbol!r} applied to the {self.symbol!r} book")
        if kind != "update":
            if kind == "snapshot":
                return self.snapshot(data.bids, data.asks, data.checksum, rows)
            raise BookError(f"unknown level3 message type {kind!r}")
        if not self._ready:
            raise BookError(f"{self.symbol}: update without a valid snapshot")
        self._ready = False
        orders = self._orders
        cache = self._prices
        qcache = self._qtys
        cache_max = self._cache_max
        qp = self._qp
        pow10 = _POW10
        bid_side = self._bids
        ask_side = self._asks
        bids = data.bids
        asks = data.asks
        if rows is not None:
            add_ts = rows[0].append
            add_event = rows[1].append
            add_side = rows[2].append
            add_id = rows[3].append
            add_price = rows[4].append
            add_qty = rows[5].append
            codes = EVENT_CODES
        # a message usually touches one side only: skip the other one
        if bids:
            work = (((bid_side, bids, 0), (ask_side, asks, 1)) if asks
                    else ((bid_side, bids, 0),))
        else:
            work = ((ask_side, asks, 1),)
        for side, entries, code in work:
            sign = side.sign
            levels = side.levels
            for entry in entries:
                event = entry.event
                order_id = entry.order_id
                if event == "delete" and rows is None:  # by id: the price is not needed
                    order = orders.pop(order_id, None)
                    if order is None:
                        self._unk_del += 1
                        self._anomalous = True
                        continue
                    # (ask_side if order.sign > 0 else bid_side).discard(order), inlined
                    oside = ask_side if order.sign > 0 else bid_side
                    key = order.key
                    olevels = oside.levels
                    level = olevels[key]
                    level_orders = level.orders
                    del level_orders[order_id]
                    if level_orders:
                        oside.refresh(key, level)
                        continue
                    del olevels[key]
                    keys = oside.keys
                    i = bisect_left(keys, key)
                    del keys[i]
                    if i < _TOP:
                        toppieces = oside.toppieces
                        del toppieces[i]
                        if len(keys) >= _TOP:
                            level = olevels[keys[_TOP - 1]]
                            toppieces.append(level.piece or level.build())
                        oside.top = None
                    continue
                token = entry.limit_price
                price = cache.get(token)
                if price is None:
                    price = self._price_miss(token)
                token = entry.order_qty
                qty = qcache.get(token)
                if qty is None:
                    # token_units(token, qp), inlined: plain unsigned ASCII digits[.digits]
                    if type(token) is str and len(token) <= _MAX_PLAIN_LEN:
                        whole, dot, frac = token.partition(".")
                        digits = whole + frac
                        n = len(frac)
                        if (n <= qp and whole and (frac or not dot) and digits.isdigit()
                                and digits.isascii()):
                            qty = int(digits) * pow10[qp - n]
                            if len(qcache) >= cache_max:
                                qcache.clear()
                            qcache[token] = qty  # text keys only, as for prices
                        else:
                            qty = to_units(token, qp)
                    else:
                        qty = to_units(token, qp)
                if rows is not None:  # every entry is recorded, a delete's numbers too
                    add_ts(getattr(entry, "ts_ns", None))
                    add_event(codes.get(event, 0))
                    add_side(code)
                    add_id(order_id)
                    add_price(price)
                    add_qty(qty)
                    if event == "delete":
                        self._delete(order_id)
                        continue
                if event == "add":
                    if order_id not in orders and qty > 0 and price > 0:  # the common case
                        key = price * sign
                        piece = b"%d%d" % (price, qty)
                        try:  # getattr(entry, "ts_ns", None) without the call
                            ts_ns = entry.ts_ns
                        except AttributeError:
                            ts_ns = None
                        order = orders[order_id] = _Order(
                            order_id, sign, key, price, qty, ts_ns, piece
                        )
                        # side.append(order), inlined
                        level = levels.get(key)
                        if level is None:  # a new price level
                            levels[key] = _Level({order_id: order}, piece)
                            keys = side.keys
                            i = bisect_left(keys, key)
                            keys.insert(i, key)
                            if i < _TOP:
                                toppieces = side.toppieces
                                toppieces.insert(i, piece)
                                if len(toppieces) > _TOP:
                                    toppieces.pop()
                                side.top = None
                            continue
                        level.orders[order_id] = order
                        text = level.piece
                        if text is not None:  # back of the queue = end of the text
                            text = level.piece = text + piece
                            keys = side.keys
                            if len(keys) <= _TOP or key <= keys[_TOP - 1]:
                                side.toppieces[bisect_left(keys, key)] = text
                                side.top = None
                    else:
                        self._add(side, order_id, price, qty, getattr(entry, "ts_ns", None))
                elif event == "modify":
                    self._modify(side, order_id, price, qty, getattr(entry, "ts_ns", None))
                else:
                    raise BookError(f"{self.symbol}: unknown level3 event {event!r}")
        self._ready = True
        # self._finish(data.checksum), inlined (same logic), with the common truncation (one
        # level pushed out of a window of at least 10) done here
        depth = self.depth
        bk = bid_side.keys
        ak = ask_side.keys
        truncated = 0
        if len(bk) > depth:
            if len(bk) == depth + 1 and depth >= _TOP:
                for order_id in bid_side.levels.pop(bk.pop()).orders:
                    del orders[order_id]
                truncated = 1
            else:
                truncated = self._truncate(bid_side)
        if len(ak) > depth:
            if len(ak) == depth + 1 and depth >= _TOP:
                for order_id in ask_side.levels.pop(ak.pop()).orders:
                    del orders[order_id]
                truncated += 1
            else:
                truncated += self._truncate(ask_side)
        computed = self._crc
        btop = bid_side.top
        atop = ask_side.top
        if computed is None or btop is None or atop is None:  # a top-10 changed
            if atop is None:
                atop = ask_side.top = b"".join(ask_side.toppieces)
                acrc = ask_side.crc0 = zlib.crc32(atop)
            else:
                acrc = ask_side.crc0
                if acrc is None:
                    acrc = ask_side.crc0 = zlib.crc32(atop)
            if btop is None:
                btop = bid_side.top = b"".join(bid_side.toppieces)
            computed = self._crc = zlib.crc32(btop, acrc)
        self.messages += 1
        expected = data.checksum
        if type(expected) is int:
            match = computed == expected
            if not match:
                self.mismatches += 1
        elif expected is None:
            match = None
        else:
            expected = int(expected)
            match = computed == expected
            if not match:
                self.mismatches += 1
        if bk and ak and -bk[0] >= ak[0]:
            self.crossed_messages += 1
            crossed = True
        else:
            crossed = False
        if self._anomalous:
            requeued, dup, unk_mod, unk_del = (self._requeued, self._dup, self._unk_mod,
                                               self._unk_del)
            self.requeued += requeued
            self.duplicate_adds += dup
            self.unknown_modifies += unk_mod
            self.unknown_deletes += unk_del
            self._requeued = self._dup = self._unk_mod = self._unk_del = 0
            self._anomalous = False
            if truncated:
                self.truncated_levels += truncated
            return L3Result(
                computed, expected, match, crossed, requeued, dup, unk_mod, unk_del, truncated
            )
        if truncated:
            self.truncated_levels += truncated
            return L3Result(computed, expected, match, crossed, 0, 0, 0, 0, truncated)
        return L3Result(computed, expected, match, crossed)

    def snapshot(
        self,
        bids: Iterable[L3OrderEvent],
        asks: Iterable[L3OrderEvent],
        checksum: int | None = None,
        rows: L3Rows | None = None,
    ) -> L3Result:
        """Replace the book: every entry is added in array order (``event`` is ignored).

        ``rows``: as for :meth:`apply` (each entry is recorded with event code 0)."""
        self._ready = False
        self._reset()
        self._requeued = self._dup = self._unk_mod = self._unk_del = 0
        for code, side, entries in ((0, self._bids, bids), (1, self._asks, asks)):
            for entry in entries:
                order_id = entry.order_id
                price = self._price_units(entry.limit_price)
                qty = token_units(entry.order_qty, self._qp)
                ts_ns = getattr(entry, "ts_ns", None)
                if rows is not None:
                    for column, value in zip(rows, (ts_ns, 0, code, order_id, price, qty)):
                        column.append(value)
                self._add(side, order_id, price, qty, ts_ns)
        self._ready = True
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
            self._ready = False
            self._reset()
            self._requeued = self._dup = self._unk_mod = self._unk_del = 0
            for side, entries in ((self._bids, bids), (self._asks, asks)):
                for _, order_id, price, qty, ts_ns in entries:
                    self._add(side, order_id, price, qty, ts_ns)
            self._ready = True
            return self._finish(checksum)
        if kind != "update":
            raise BookError(f"unknown level3 message type {kind!r}")
        if not self._ready:
            raise BookError(f"{self.symbol}: update without a valid snapshot")
        self._ready = False
        orders = self._orders
        bid_side = self._bids
        ask_side = self._asks
        for side, entries in ((bid_side, bids), (ask_side, asks)):
            sign = side.sign
            for event, order_id, price, qty, ts_ns in entries:
                if event == 3:
                    self._delete(order_id)
                elif event == 1:
                    if order_id not in orders and qty > 0 and price > 0:
                        order = orders[order_id] = _Order(
                            order_id, sign, price * sign, price, qty, ts_ns,
                            b"%d%d" % (price, qty),
                        )
                        side.append(order)
                    else:
                        self._add(side, order_id, price, qty, ts_ns)
                elif event == 2:
                    self._modify(side, order_id, price, qty, ts_ns)
                else:
                    raise BookError(f"{self.symbol}: unknown level3 event {event!r}")
        self._ready = True
        return self._finish(checksum)

    def _delete(self, order_id: str) -> None:
        """Remove an order by id (a ``delete`` event); an unknown id is counted."""
        order = self._orders.pop(order_id, None)
        if order is None:
            self._unk_del += 1
            self._anomalous = True
        else:
            (self._asks if order.sign > 0 else self._bids).discard(order)

    def _reset(self) -> None:
        self._orders.clear()
        self._bids.clear()
        self._asks.clear()
        self._crc = None

    def _price_units(self, token: NumToken) -> int:
        """Price token -> units through a bounded memo (prices repeat; quantities rarely do)."""
        price = self._prices.get(token)
        return self._price_miss(token) if price is None else price

    def _price_miss(self, token: NumToken) -> int:
        """Price token -> units on a memo miss (:func:`~recorder.book.l2.memo_units`)."""
        return memo_units(self._prices, self._cache_max, token, self._pp)

    def _add(self, side: _L3Side, order_id: str, price: int, qty: int, ts_ns: int | None) -> None:
        if price <= 0 or qty < 0:
            raise BookError(f"{self.symbol}: invalid order {order_id}: price {price}, qty {qty}")
        orders = self._orders
        old = orders.get(order_id)
        if old is not None:
            self._dup += 1
            self._anomalous = True
            self._remove(old)
        if qty:
            order = orders[order_id] = _new_order(order_id, side.sign, price, qty, ts_ns)
            side.append(order)

    def _modify(
        self, side: _L3Side, order_id: str, price: int, qty: int, ts_ns: int | None
    ) -> None:
        order = self._orders.get(order_id)
        if order is None:
            self._unk_mod += 1
            self._anomalous = True
            self._add(side, order_id, price, qty, ts_ns)
            return
        if price <= 0 or qty < 0:
            raise BookError(f"{self.symbol}: invalid order {order_id}: price {price}, qty {qty}")
        if not qty:
            self._remove(order)
            return
        if order.sign == side.sign and order.price == price:
            # a new order in the old one's place (the same queue position in both dicts):
            # orders are never changed once made, so a cut may keep them (checkpoint_later)
            key = order.key
            level = side.levels[key]
            self._orders[order_id] = level.orders[order_id] = _Order(
                order_id, order.sign, key, price, qty, order.ts_ns if ts_ns is None else ts_ns,
                b"%d%d" % (price, qty))
            side.refresh(key, level)
            return
        self._requeued += 1
        self._anomalous = True
        self._remove(order)
        self._add(side, order_id, price, qty, ts_ns if ts_ns is not None else order.ts_ns)

    def _remove(self, order: _Order) -> None:
        (self._asks if order.sign > 0 else self._bids).discard(order)
        del self._orders[order.order_id]

    def _truncate(self, side: _L3Side) -> int:
        """Drop the levels beyond ``depth`` and forget their orders; returns the level count."""
        depth = self.depth
        keys = side.keys
        levels = side.levels
        orders = self._orders
        if len(keys) == depth + 1:  # the common case: one level pushed out
            dropped = [keys.pop()]
        else:
            dropped = keys[depth:]
            del keys[depth:]
        for key in dropped:
            for order_id in levels.pop(key).orders:
                del orders[order_id]
        if depth < _TOP:
            del side.toppieces[depth:]
            side.top = None
        return len(dropped)

    def _finish(self, expected: int | None) -> L3Result:
        depth = self.depth
        bids = self._bids
        asks = self._asks
        truncated = 0
        if len(bids.keys) > depth:
            truncated = self._truncate(bids)
        if len(asks.keys) > depth:
            truncated += self._truncate(asks)
        computed = self._crc
        btop = bids.top
        atop = asks.top
        if computed is None or btop is None or atop is None:  # a top-10 changed
            if atop is None:
                atop = asks.top = b"".join(asks.toppieces)
                acrc = asks.crc0 = zlib.crc32(atop)
            else:
                acrc = asks.crc0
                if acrc is None:
                    acrc = asks.crc0 = zlib.crc32(atop)
            if btop is None:
                btop = bids.top = b"".join(bids.toppieces)
            computed = self._crc = zlib.crc32(btop, acrc)
        bk = bids.keys
        ak = asks.keys
        crossed = -bk[0] >= ak[0] if bk and ak else False
        self.messages += 1
        if expected is None:
            match = None
        else:
            if type(expected) is not int:
                expected = int(expected)
            match = computed == expected
            if not match:
                self.mismatches += 1
        if crossed:
            self.crossed_messages += 1
        if self._anomalous:
            requeued, dup, unk_mod, unk_del = (self._requeued, self._dup, self._unk_mod,
                                               self._unk_del)
            self.requeued += requeued
            self.duplicate_adds += dup
            self.unknown_modifies += unk_mod
            self.unknown_deletes += unk_del
            self._requeued = self._dup = self._unk_mod = self._unk_del = 0
            self._anomalous = False
        else:
            requeued = dup = unk_mod = unk_del = 0
        if truncated:
            self.truncated_levels += truncated
        return L3Result(
            computed, expected, match, crossed, requeued, dup, unk_mod, unk_del, truncated
        )

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
        """Kraken CRC32 of the current book."""
        crc = self._crc
        if crc is None or self._bids.top is None or self._asks.top is None:
            crc = self._crc = zlib.crc32(self._bids.top_text(), self._asks.top_crc())
        return crc

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
        return key * side.sign, sum(o.qty for o in side.levels[key].orders.values())

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
        levels = s.levels
        return [(k * s.sign, sum(o.qty for o in levels[k].orders.values())) for k in keys]

    def level_orders(self, side: Side, price: int) -> list[OrderView]:
        """Orders of one price level (units) in queue order; empty if the level is absent."""
        s = self._side(side)
        level = s.levels.get(price * s.sign)
        if level is None:
            return []
        return [_view(o) for o in level.orders.values()]

    def orders(self, side: Side | None = None) -> Iterator[OrderView]:
        """All orders, best level first and in queue order; asks then bids when ``side`` is None."""
        sides = (self._asks, self._bids) if side is None else (self._side(side),)
        for s in sides:
            levels = s.levels
            for key in s.keys:
                for order in levels[key].orders.values():
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
                for o in side.levels[key].orders.values()
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
        """:meth:`checkpoint` in two halves: this cheap one copies the order index now (one
        C-level copy of references: orders are frozen, a modify replaces its order), the
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
