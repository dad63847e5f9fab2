"""Spot L2 (aggregated, price-level) order book: the reference model of Kraken's book rules.

One :class:`L2Book` per symbol and subscription. Each WS v2 ``book`` message is applied by the
same four rules, in this order:

1. **Levels in array order.** A snapshot first clears the book. Each level sets the absolute
   quantity at its price; ``qty == 0`` removes the level (a removal of a price not in the book
   is tolerated and counted in :attr:`L2Result.absent_removals`).
2. **Truncation.** Each side is cut to the subscribed depth after the message: Kraken sends no
   delete for a level that falls out of the window (counted in :attr:`L2Result.truncated`).
3. **Checksum.** Kraken's CRC32 over the 10 best asks (ascending) then the 10 best bids
   (descending), each level as ``price`` then ``qty`` at full precision with the dot removed
   and leading zeros stripped (:func:`recorder.protocol.checksum.level_piece`), compared with
   the message's checksum.
4. **Crossed check.** Best bid >= best ask.

Nothing is raised for a checksum mismatch or a crossed book: both are *reported* in the
returned :class:`L2Result` so the caller decides (resnapshot, flag).

This is the readable model the compiled core (``recorder._core.L2Book``) is tested against, and
the ``engine="python"`` path: it keeps no caches. Prices and quantities are *units* (``int``
scaled by ``10**precision``, :func:`recorder.protocol.numbers.to_units`), so equality and
ordering are exact. Each side keeps its prices sorted best first (bids by negated price) next to
a dict price -> quantity.

Misuse (an update before a snapshot, a wrong symbol, a negative quantity, a token with more
decimals than the pair's precision) raises :class:`BookError` / ``NumberError``. A message that
raises part-way leaves the book *invalid*: further updates raise until the next snapshot.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Literal, NamedTuple, Protocol

import msgspec

from recorder.book.checkpoint import L2Checkpoint, levels_to_text, validate_l2
from recorder.protocol.checksum import CHECKSUM_LEVELS, crc_of_pieces, level_piece
from recorder.protocol.errors import BookError
from recorder.protocol.numbers import MAX_PRECISION, NumToken, to_units

__all__ = ["Side", "L2Level", "L2BookData", "L2Result", "L2Book", "token_units"]

#: Side selector used by accessors.
Side = Literal["bid", "ask"]

#: Row side codes :meth:`L2Book.apply` records.
_BID, _ASK = 0, 1


def token_units(token: NumToken, precision: int) -> int:
    """``token`` scaled to units at ``precision``: exactly
    :func:`~recorder.protocol.numbers.to_units` (same result, same ``NumberError``)."""
    return to_units(token, precision)


class L2Level(Protocol):
    """One price level as decoded: exact number tokens (JSON number text or int)."""

    @property
    def price(self) -> NumToken: ...

    @property
    def qty(self) -> NumToken: ...


class L2BookData(Protocol):
    """One ``data`` item of a v2 ``book`` message."""

    @property
    def symbol(self) -> str: ...

    @property
    def bids(self) -> Iterable[L2Level]: ...

    @property
    def asks(self) -> Iterable[L2Level]: ...

    @property
    def checksum(self) -> int | None: ...


class _Item(NamedTuple):
    """Levels handed to :meth:`L2Book.snapshot` / :meth:`L2Book.update`, shaped as ``data``."""

    symbol: str
    bids: Iterable[L2Level]
    asks: Iterable[L2Level]
    checksum: int | None


class L2Result(msgspec.Struct, frozen=True, gc=False):
    """Outcome of applying one message to an :class:`L2Book`.

    ``match`` is ``None`` when the message carried no checksum, else whether the checksum
    computed after the message equals the ``expected`` one. ``crossed`` is true when,
    after the message, best bid >= best ask. ``absent_removals`` counts ``qty == 0`` levels
    whose price was not in the book (tolerated). ``truncated`` counts levels dropped because a
    side exceeded the subscribed depth.
    """

    computed: int
    expected: int | None
    match: bool | None
    crossed: bool
    absent_removals: int = 0
    truncated: int = 0

    @property
    def ok(self) -> bool:
        """True unless the checksum mismatched or the book is crossed."""
        return self.match is not False and not self.crossed


class _Side:
    """One side of an L2 book: ``keys`` sorted ascending, best first, and ``qty`` key -> units.

    A level's key is ``price * sign``: the price for asks (``sign`` +1), the negated price for
    bids (``sign`` -1), so that ascending order is best first on both sides.
    """

    __slots__ = ("sign", "keys", "qty")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.keys: list[int] = []
        self.qty: dict[int, int] = {}

    def clear(self) -> None:
        self.keys.clear()
        self.qty.clear()

    def set(self, price: int, qty: int) -> bool:
        """Set one level (``qty == 0`` removes it). Returns False for removal of an absent level."""
        if price <= 0 or qty < 0:
            raise BookError(f"invalid level: price {price} units, qty {qty} units")
        key = price * self.sign
        if qty:
            if key not in self.qty:
                self.keys.insert(bisect_left(self.keys, key), key)
            self.qty[key] = qty
            return True
        if key not in self.qty:
            return False
        del self.qty[key]
        del self.keys[bisect_left(self.keys, key)]
        return True

    def truncate(self, depth: int) -> int:
        """Drop levels beyond ``depth``; returns how many were dropped."""
        dropped = self.keys[depth:]
        del self.keys[depth:]
        for key in dropped:
            del self.qty[key]
        return len(dropped)

    def levels(self, n: int | None) -> list[tuple[int, int]]:
        """The ``n`` best levels (all when ``None``) as ``(price_units, qty_units)``."""
        keys = self.keys if n is None else self.keys[:n]
        return [(key * self.sign, self.qty[key]) for key in keys]


def _check_precision(name: str, value: int) -> None:
    if type(value) is not int or not 0 <= value <= MAX_PRECISION:
        raise BookError(f"{name} must be an int in 0..{MAX_PRECISION}, got {value!r}")


class L2CheckpointCut:
    """The containers of an :class:`L2Book` copied at a cut (:meth:`L2Book.checkpoint_later`):
    sorted keys and ``key -> qty`` per side (ints, never mutated after the copy)."""

    __slots__ = ("symbol", "depth", "pp", "qp", "bkeys", "bqty", "akeys", "aqty")

    def __init__(self, symbol: str, depth: int, pp: int, qp: int, bkeys: list[int],
                 bqty: dict[int, int], akeys: list[int], aqty: dict[int, int]) -> None:
        self.symbol = symbol
        self.depth = depth
        self.pp = pp
        self.qp = qp
        self.bkeys = bkeys
        self.bqty = bqty
        self.akeys = akeys
        self.aqty = aqty

    def materialize(self) -> L2Checkpoint:
        """The checkpoint the book's :meth:`L2Book.checkpoint` returned at the cut."""
        return L2Checkpoint(
            symbol=self.symbol,
            depth=self.depth,
            price_precision=self.pp,
            qty_precision=self.qp,
            bids=levels_to_text([(-key, self.bqty[key]) for key in self.bkeys], self.pp, self.qp),
            asks=levels_to_text([(key, self.aqty[key]) for key in self.akeys], self.pp, self.qp),
        )


class L2Book:
    """Kraken spot L2 book for one symbol at one subscribed depth.

    ``price_precision`` / ``qty_precision`` are the pair's decimals (from the ``instrument``
    channel or REST ``pair_decimals`` / ``lot_decimals``, else inferred from the snapshot's
    tokens by the caller).
    """

    __slots__ = (
        "symbol",
        "depth",
        "_pp",
        "_qp",
        "_bids",
        "_asks",
        "_ready",
        "messages",
        "mismatches",
        "crossed_messages",
        "absent_removals",
        "truncated_levels",
    )

    def __init__(
        self,
        symbol: str,
        depth: int,
        price_precision: int,
        qty_precision: int,
    ) -> None:
        if type(depth) is not int or depth < 1:
            raise BookError(f"depth must be a positive int, got {depth!r}")
        _check_precision("price_precision", price_precision)
        _check_precision("qty_precision", qty_precision)
        self.symbol = symbol
        self.depth = depth
        self._pp = price_precision
        self._qp = qty_precision
        self._bids = _Side(-1)
        self._asks = _Side(1)
        self._ready = False
        #: Messages applied since construction (snapshots included).
        self.messages = 0
        #: Messages whose checksum did not match.
        self.mismatches = 0
        #: Messages after which the book was crossed.
        self.crossed_messages = 0
        #: ``qty == 0`` levels received for prices not in the book.
        self.absent_removals = 0
        #: Levels dropped by depth truncation.
        self.truncated_levels = 0

    # ------------------------------------------------------------------ applying messages

    def apply(self, kind: str, data: L2BookData,
              rows: tuple[list[int], list[int], list[int]] | None = None) -> L2Result:
        """Apply one decoded ``data`` item; ``kind`` is the message ``type``.

        The bids then the asks are applied in array order (a snapshot first clears the book),
        then the sides are truncated to the depth and the checksum is computed and compared.
        Each level's price is converted before its quantity, both before the level is checked.

        ``rows``: three lists ``(sides, prices, qtys)`` to which each level is appended as it
        is applied, as side (0 bid, 1 ask), price units and quantity units, so that a caller
        recording the levels (the archive pipeline) converts every number once. When the
        message raises, the levels before the failing one have been appended.
        """
        if data.symbol != self.symbol:
            raise BookError(f"message for {data.symbol!r} applied to the {self.symbol!r} book")
        self._begin(kind)
        absent = 0
        for code, side, levels in ((_BID, self._bids, data.bids), (_ASK, self._asks, data.asks)):
            for level in levels:
                price = to_units(level.price, self._pp)
                qty = to_units(level.qty, self._qp)
                if rows is not None:
                    rows[0].append(code)
                    rows[1].append(price)
                    rows[2].append(qty)
                if not side.set(price, qty):
                    absent += 1
        return self._finish(absent, data.checksum)

    def snapshot(
        self,
        bids: Iterable[L2Level],
        asks: Iterable[L2Level],
        checksum: int | None = None,
    ) -> L2Result:
        """Replace the whole book with a snapshot (levels in any order; ``qty == 0`` ignored)."""
        return self.apply("snapshot", _Item(self.symbol, bids, asks, checksum))

    def update(
        self,
        bids: Iterable[L2Level],
        asks: Iterable[L2Level],
        checksum: int | None = None,
    ) -> L2Result:
        """Apply an update's levels in array order, truncate, checksum."""
        return self.apply("update", _Item(self.symbol, bids, asks, checksum))

    def apply_units(
        self,
        kind: str,
        bids: Iterable[tuple[int, int]],
        asks: Iterable[tuple[int, int]],
        checksum: int | None,
    ) -> L2Result:
        """:meth:`apply` for levels already converted to ``(price_units, qty_units)`` at the
        book's precisions (a caller that holds units, e.g. ``recorder verify`` replaying the
        archive's rows). Same semantics and result."""
        self._begin(kind)
        absent = 0
        for side, levels in ((self._bids, bids), (self._asks, asks)):
            for price, qty in levels:
                if not side.set(price, qty):
                    absent += 1
        return self._finish(absent, checksum)

    def _begin(self, kind: str) -> None:
        """Start applying a message of type ``kind``: an update needs a valid book, a snapshot
        clears it; anything else is a :class:`BookError`. The book is invalid until
        :meth:`_finish`."""
        if kind == "update":
            if not self._ready:
                raise BookError(f"{self.symbol}: update without a valid snapshot")
        elif kind == "snapshot":
            self._bids.clear()
            self._asks.clear()
        else:
            raise BookError(f"unknown book message type {kind!r}")
        self._ready = False

    def _finish(self, absent: int, expected: int | None) -> L2Result:
        """Truncate, checksum, compare, count; marks the book ready."""
        truncated = self._bids.truncate(self.depth) + self._asks.truncate(self.depth)
        computed = self.checksum()
        crossed = self.is_crossed()
        match = None if expected is None else computed == expected
        self._ready = True
        self.messages += 1
        if match is False:
            self.mismatches += 1
        if crossed:
            self.crossed_messages += 1
        self.absent_removals += absent
        self.truncated_levels += truncated
        return L2Result(computed, expected, match, crossed, absent, truncated)

    # ------------------------------------------------------------------ queries

    @property
    def ready(self) -> bool:
        """True once a snapshot was applied and no message failed since."""
        return self._ready

    @property
    def price_precision(self) -> int:
        """Decimals of prices."""
        return self._pp

    @property
    def qty_precision(self) -> int:
        """Decimals of quantities."""
        return self._qp

    def checksum(self) -> int:
        """Kraken CRC32 of the current book: the 10 best asks, then the 10 best bids."""
        return crc_of_pieces(
            [level_piece(price, qty) for price, qty in self._asks.levels(CHECKSUM_LEVELS)],
            [level_piece(price, qty) for price, qty in self._bids.levels(CHECKSUM_LEVELS)],
        )

    def best_bid(self) -> tuple[int, int] | None:
        """``(price_units, qty_units)`` of the best bid, or ``None`` when there is no bid."""
        best = self._bids.levels(1)
        return best[0] if best else None

    def best_ask(self) -> tuple[int, int] | None:
        """``(price_units, qty_units)`` of the best ask, or ``None`` when there is no ask."""
        best = self._asks.levels(1)
        return best[0] if best else None

    def is_crossed(self) -> bool:
        """Best bid >= best ask (both sides non-empty)."""
        bid = self.best_bid()
        ask = self.best_ask()
        return bid is not None and ask is not None and bid[0] >= ask[0]

    def levels(self, side: Side, n: int | None = None) -> list[tuple[int, int]]:
        """The ``n`` best levels (all when ``None``) of a side as ``(price_units, qty_units)``."""
        return self._side(side).levels(n)

    def level_count(self, side: Side) -> int:
        """Number of levels on one side."""
        return len(self._side(side).keys)

    def __len__(self) -> int:
        """Total number of price levels (bids + asks)."""
        return len(self._bids.keys) + len(self._asks.keys)

    def __repr__(self) -> str:
        return (
            f"L2Book({self.symbol!r}, depth={self.depth}, bids={len(self._bids.keys)}, "
            f"asks={len(self._asks.keys)}, ready={self._ready})"
        )

    def _side(self, side: Side) -> _Side:
        if side == "bid":
            return self._bids
        if side == "ask":
            return self._asks
        raise BookError(f"side must be 'bid' or 'ask', got {side!r}")

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self) -> L2Checkpoint:
        """A lossless, serialisable copy of the book state (see :mod:`recorder.book.checkpoint`)."""
        if not self._ready:
            raise BookError(f"{self.symbol}: no valid book to checkpoint")
        return self.checkpoint_later().materialize()

    def checkpoint_later(self) -> L2CheckpointCut:
        """:meth:`checkpoint` in two halves: this one copies the book's containers now (no
        text), the returned cut's ``materialize()`` builds the checkpoint :meth:`checkpoint`
        returns now, in any thread, whatever the book does meanwhile. Raises like
        :meth:`checkpoint` (a book that is not ready)."""
        if not self._ready:
            raise BookError(f"{self.symbol}: no valid book to checkpoint")
        b = self._bids
        a = self._asks
        return L2CheckpointCut(self.symbol, self.depth, self._pp, self._qp,
                               b.keys[:], b.qty.copy(), a.keys[:], a.qty.copy())

    @classmethod
    def restore(cls, cp: L2Checkpoint) -> L2Book:
        """Rebuild a book from :meth:`checkpoint` output; validates ordering and depth.

        The restored book computes the same checksums and reacts to further messages exactly
        like the original; its cumulative counters (``messages``, ``mismatches``...) start at 0.
        """
        book = cls(cp.symbol, cp.depth, cp.price_precision, cp.qty_precision)
        bids, asks = validate_l2(cp)
        for side, levels in ((book._bids, bids), (book._asks, asks)):
            for price, qty in levels:
                side.set(price, qty)
        book._ready = True
        return book
