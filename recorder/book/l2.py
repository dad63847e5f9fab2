"""Spot L2 (aggregated, price-level) order book: exact state machine with Kraken's checksum.

One :class:`L2Book` per symbol and subscription. It applies a WS v2 ``book`` snapshot or update
strictly in array order, removes ``qty == 0`` levels, truncates
each side to the subscribed depth after every message (Kraken sends no delete for levels that
fall out of the window), then computes Kraken's CRC32 over the 10 best levels per side and
compares it with the message's checksum. Nothing is raised for a mismatch or a crossed book:
both are *reported* in the returned :class:`L2Result` so the caller decides (resnapshot, flag).

Representation (chosen for a cheap 1-2 level update, also at depth 1000):

* prices and quantities are *units* (``int`` scaled by ``10**precision``, see
  :func:`recorder.protocol.numbers.to_units`), so equality and ordering are exact;
* each side keeps a sorted ``list`` of keys (``bisect``) plus a dict key -> qty units; bids
  use the negated price as key so both lists are best-first;
* each side keeps the checksum pieces of its 10 best levels in a list maintained in place
  (set / insert / delete at the bisected index; a piece is built only for a level that changes
  inside the top 10 or enters it), caches their encoded join, and the ask side caches its CRC;
  the book caches the final CRC. A message that does not touch either top 10 (deep levels of
  a depth-1000 book) costs no piece, no join and no CRC at all;
* price and quantity tokens go through small bounded memos (prices repeat; of quantities,
  removals' ``0.00000000`` and round sizes do), and plain tokens are parsed by
  :func:`token_units`, an exact fast path in front of ``to_units``.

Misuse (an update before a snapshot, a wrong symbol, a negative quantity, a token with more
decimals than the pair's precision) raises :class:`BookError` / ``NumberError``. A message that
raises part-way leaves the book *invalid*: further updates raise until the next snapshot.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left
from collections.abc import Iterable
from typing import Final, Literal, NamedTuple, Protocol

import msgspec

from recorder.book.checkpoint import L2Checkpoint, levels_to_text, validate_l2
from recorder.protocol.checksum import CHECKSUM_LEVELS
from recorder.protocol.errors import BookError
from recorder.protocol.numbers import MAX_DIGITS, MAX_PRECISION, NumToken, to_units

__all__ = ["Side", "L2Level", "L2BookData", "L2Result", "L2Book", "token_units"]

#: Side selector used by accessors.
Side = Literal["bid", "ask"]

_TOP: Final = CHECKSUM_LEVELS
_POW10: Final = tuple(10**i for i in range(MAX_PRECISION + 1))
_MAX_PLAIN_LEN: Final = MAX_DIGITS + 2


def token_units(token: NumToken, precision: int) -> int:
    """Same result as :func:`~recorder.protocol.numbers.to_units`, faster for plain tokens.

    Handles unsigned ASCII ``digits[.digits]`` text with at most ``precision`` decimals inline
    (the shape of nearly every Kraken price and quantity); everything else (ints, signs,
    exponents, excess trailing zeros, malformed text) is delegated to ``to_units``, which
    validates and raises :class:`~recorder.protocol.errors.NumberError`.
    """
    if type(token) is str and len(token) <= _MAX_PLAIN_LEN and token.isascii():
        whole, dot, frac = token.partition(".")
        n = len(frac)
        if n <= precision and whole.isdigit() and (frac.isdigit() if dot else True):
            return int(whole + frac) * _POW10[precision - n]
    return to_units(token, precision)


def memo_units(cache: dict[NumToken, int], limit: int, token: NumToken, precision: int) -> int:
    """:func:`token_units` of a token missing from a book's memo ``cache``, remembered there
    when it is text (the memo is cleared when it holds ``limit`` entries). Only text is a key:
    ``True`` or ``1.0`` must never hit the entry of an equal int."""
    if type(token) is not str:
        return to_units(token, precision)
    value = token_units(token, precision)
    if len(cache) >= limit:
        cache.clear()
    cache[token] = value
    return value


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
    """One side of an L2 book: sorted keys (best first) + per-key quantity.

    ``toplist`` always holds the checksum pieces of ``keys[:10]`` in order, as ASCII ``bytes``
    (the join needs no encoding), maintained in place on each change; a level's piece is only
    built when it is or enters the top 10, so a deep level of a depth-1000 book costs no text.
    ``top`` caches their join and is ``None`` after any change to it.
    """

    __slots__ = ("sign", "keys", "qty", "toplist", "top", "crc0")

    def __init__(self, sign: int) -> None:
        self.sign = sign  # +1 asks (key = price), -1 bids (key = -price)
        self.keys: list[int] = []
        self.qty: dict[int, int] = {}
        self.toplist: list[bytes] = []
        self.top: bytes | None = b""  # cached checksum text of the 10 best levels
        self.crc0: int | None = 0  # cached crc32(top), valid while top is not None

    def clear(self) -> None:
        self.keys.clear()
        self.qty.clear()
        self.toplist.clear()
        self.top = b""
        self.crc0 = 0

    def set(self, price: int, qty: int) -> bool:
        """Set one level (``qty == 0`` removes it). Returns False for removal of an absent level."""
        if price <= 0 or qty < 0:
            raise BookError(f"invalid level: price {price} units, qty {qty} units")
        key = price * self.sign
        keys = self.keys
        levels = self.qty
        if qty:
            # the piece: == checksum_piece(price) + checksum_piece(qty) (both are > 0), ASCII
            if key in levels:
                levels[key] = qty
                if len(keys) <= _TOP or key <= keys[_TOP - 1]:
                    self.toplist[bisect_left(keys, key)] = b"%d%d" % (price, qty)
                    self.top = None
                return True
            levels[key] = qty
            i = bisect_left(keys, key)
            keys.insert(i, key)
            if i < _TOP:
                toplist = self.toplist
                toplist.insert(i, b"%d%d" % (price, qty))
                if len(toplist) > _TOP:
                    toplist.pop()
                self.top = None
            return True
        if key in levels:
            del levels[key]
            i = bisect_left(keys, key)
            del keys[i]
            if i < _TOP:
                toplist = self.toplist
                del toplist[i]
                if len(keys) >= _TOP:  # the 11th level enters the top 10
                    key = keys[_TOP - 1]
                    toplist.append(b"%d%d" % (key * self.sign, levels[key]))
                self.top = None
            return True
        return False

    def truncate(self, depth: int) -> int:
        """Drop levels beyond ``depth``; returns how many were dropped."""
        keys = self.keys
        qty = self.qty
        if depth < _TOP:
            del self.toplist[depth:]
            self.top = None
        if len(keys) == depth + 1:  # the common case: one level pushed out
            del qty[keys.pop()]
            return 1
        dropped = keys[depth:]
        del keys[depth:]
        for key in dropped:
            del qty[key]
        return len(dropped)

    def top_text(self) -> bytes:
        """Checksum input of this side: the pieces of the 10 best levels, best first."""
        top = self.top
        if top is None:
            top = self.top = b"".join(self.toplist)
            self.crc0 = None
        return top

    def top_crc(self) -> int:
        """``crc32`` of :meth:`top_text` (cached): the ask half of Kraken's checksum."""
        crc = self.crc0
        if crc is None or self.top is None:
            crc = self.crc0 = zlib.crc32(self.top_text())
        return crc

    def levels(self, n: int | None) -> list[tuple[int, int]]:
        sign = self.sign
        qty = self.qty
        keys = self.keys if n is None else self.keys[:n]
        return [(key * sign, qty[key]) for key in keys]


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
        pp = self.pp
        qp = self.qp
        bqty = self.bqty
        aqty = self.aqty
        return L2Checkpoint(
            symbol=self.symbol,
            depth=self.depth,
            price_precision=pp,
            qty_precision=qp,
            bids=levels_to_text([(-key, bqty[key]) for key in self.bkeys], pp, qp),
            asks=levels_to_text([(key, aqty[key]) for key in self.akeys], pp, qp),
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
        "_crc",
        "_prices",
        "_qtys",
        "_cache_max",
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
        self._crc: int | None = None  # valid while neither side's top-10 text is invalidated
        self._prices: dict[NumToken, int] = {}  # price text -> units (bounded memo)
        # qty text -> units (bounded memo): removals (``0.00000000``) and round sizes repeat
        self._qtys: dict[NumToken, int] = {}
        # Bounded memos, cleared when full: at depth 10 on a moving market 256 entries hit
        # ~95% of price tokens (4 * depth + 64 = 104 hit ~75%); at most 4096 (~0.5 MB) each.
        self._cache_max = min(16 * depth + 96, 4096)
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

        Levels are applied in array order (a snapshot first clears the book), then the sides
        are truncated to the depth and the checksum is computed and compared. This is the hot
        path, so :meth:`_Side.set`, :func:`token_units` and :meth:`_finish` are inlined here
        (same logic, same errors); ``tests/test_book_properties.py`` checks it against a
        reference model.

        ``rows``: three lists ``(sides, prices, qtys)`` to which each level is appended as it
        is applied, as side (0 bid, 1 ask), price units and quantity units, so that a caller
        recording the levels (the archive pipeline) converts every number once. When the
        message raises, the levels before the failing one have been appended.
        """
        if data.symbol != self.symbol:
            raise BookError(f"message for {data.symbol!r} applied to the {self.symbol!r} book")
        if kind != "update" or not self._ready:
            self._begin(kind)  # a snapshot clears the book; anything else raises
        self._ready = False
        bids = data.bids
        asks = data.asks
        pp = self._pp
        qp = self._qp
        absent = 0
        cache = self._prices
        qcache = self._qtys
        cache_max = self._cache_max
        pow10 = _POW10
        depth = self.depth
        truncated = 0
        if rows is not None:
            add_side = rows[0].append
            add_price = rows[1].append
            add_qty = rows[2].append
        # an update usually touches one side only: skip the other one
        if bids:
            work = (((self._bids, bids, 0), (self._asks, asks, 1)) if asks
                    else ((self._bids, bids, 0),))
        else:
            work = ((self._asks, asks, 1),)
        for side, levels, code in work:
            sign = side.sign
            keys = side.keys
            book_qty = side.qty
            toplist = side.toplist
            for level in levels:
                token = level.price
                price = cache.get(token)
                if price is None:
                    price = self._price_miss(token, pp)
                token = level.qty
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
                if rows is not None:
                    add_side(code)
                    add_price(price)
                    add_qty(qty)
                # side.set(price, qty), inlined
                if price <= 0 or qty < 0:
                    raise BookError(f"invalid level: price {price} units, qty {qty} units")
                key = price * sign
                if qty:
                    if key in book_qty:
                        book_qty[key] = qty
                        if len(keys) <= _TOP or key <= keys[_TOP - 1]:
                            toplist[bisect_left(keys, key)] = b"%d%d" % (price, qty)
                            side.top = None
                        continue
                    book_qty[key] = qty
                    i = bisect_left(keys, key)
                    keys.insert(i, key)
                    if i < _TOP:
                        toplist.insert(i, b"%d%d" % (price, qty))
                        if len(toplist) > _TOP:
                            toplist.pop()
                        side.top = None
                elif key in book_qty:
                    del book_qty[key]
                    i = bisect_left(keys, key)
                    del keys[i]
                    if i < _TOP:
                        del toplist[i]
                        if len(keys) >= _TOP:  # the 11th level enters the top 10
                            key = keys[_TOP - 1]
                            toplist.append(b"%d%d" % (key * sign, book_qty[key]))
                        side.top = None
                else:
                    absent += 1
            # truncate the side to the depth (only a touched side can exceed it); the common
            # case, one level pushed out of a window of at least 10, is done here
            if len(keys) > depth:
                if len(keys) == depth + 1 and depth >= _TOP:
                    del book_qty[keys.pop()]
                    truncated += 1
                else:
                    truncated += side.truncate(depth)
        # self._finish(absent, data.checksum), inlined (same logic)
        b = self._bids
        a = self._asks
        bk = b.keys
        ak = a.keys
        computed = self._crc
        btop = b.top
        atop = a.top
        if computed is None or btop is None or atop is None:  # a top-10 changed
            if atop is None:
                atop = a.top = b"".join(a.toplist)
                acrc = a.crc0 = zlib.crc32(atop)
            else:
                acrc = a.crc0
                if acrc is None:
                    acrc = a.crc0 = zlib.crc32(atop)
            if btop is None:
                btop = b.top = b"".join(b.toplist)
            computed = self._crc = zlib.crc32(btop, acrc)
        self.messages += 1
        self._ready = True
        expected = data.checksum
        if expected is None:
            match = None
        else:
            match = computed == expected
            if not match:
                self.mismatches += 1
        if bk and ak and -bk[0] >= ak[0]:
            self.crossed_messages += 1
            crossed = True
        else:
            crossed = False
        if absent:
            self.absent_removals += absent
        if truncated:
            self.truncated_levels += truncated
        return L2Result(computed, expected, match, crossed, absent, truncated)

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

    def _begin(self, kind: str) -> None:
        """Start applying a message of type ``kind``: an update needs a valid book, a snapshot
        clears it; anything else is a :class:`BookError`."""
        if kind == "update":
            if not self._ready:
                raise BookError(f"{self.symbol}: update without a valid snapshot")
        elif kind == "snapshot":
            self._bids.clear()
            self._asks.clear()
            self._crc = None
        else:
            raise BookError(f"unknown book message type {kind!r}")

    def _price_miss(self, token: NumToken, pp: int) -> int:
        """Price token -> units on a memo miss (:func:`memo_units`)."""
        return memo_units(self._prices, self._cache_max, token, pp)

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
        self._ready = False
        absent = 0
        for side, levels in ((self._bids, bids), (self._asks, asks)):
            side_set = side.set
            for price, qty in levels:
                if not side_set(price, qty):
                    absent += 1
        return self._finish(absent, checksum)

    def _finish(self, absent: int, expected: int | None) -> L2Result:
        """Truncate, checksum, compare; marks the book ready."""
        depth = self.depth
        truncated = 0
        b = self._bids
        a = self._asks
        bk = b.keys
        ak = a.keys
        if len(bk) > depth:
            truncated = b.truncate(depth)
        if len(ak) > depth:
            truncated += a.truncate(depth)
        computed = self._crc
        btop = b.top
        atop = a.top
        if computed is None or btop is None or atop is None:  # a top-10 changed
            if atop is None:
                atop = a.top = b"".join(a.toplist)
                acrc = a.crc0 = zlib.crc32(atop)
            else:
                acrc = a.crc0
                if acrc is None:
                    acrc = a.crc0 = zlib.crc32(atop)
            if btop is None:
                btop = b.top = b"".join(b.toplist)
            computed = self._crc = zlib.crc32(btop, acrc)
        crossed = -bk[0] >= ak[0] if bk and ak else False
        self.messages += 1
        self._ready = True
        if expected is None:
            match = None
        else:
            match = computed == expected
            if not match:
                self.mismatches += 1
        if crossed:
            self.crossed_messages += 1
        if absent:
            self.absent_removals += absent
        if truncated:
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
        """Kraken CRC32 of the current book (cached between changes)."""
        crc = self._crc
        if crc is None or self._bids.top is None or self._asks.top is None:
            crc = self._crc = zlib.crc32(self._bids.top_text(), self._asks.top_crc())
        return crc

    def best_bid(self) -> tuple[int, int] | None:
        """``(price_units, qty_units)`` of the best bid, or ``None`` when there is no bid."""
        keys = self._bids.keys
        return (-keys[0], self._bids.qty[keys[0]]) if keys else None

    def best_ask(self) -> tuple[int, int] | None:
        """``(price_units, qty_units)`` of the best ask, or ``None`` when there is no ask."""
        keys = self._asks.keys
        return (keys[0], self._asks.qty[keys[0]]) if keys else None

    def is_crossed(self) -> bool:
        """Best bid >= best ask (both sides non-empty)."""
        bk = self._bids.keys
        ak = self._asks.keys
        return bool(bk) and bool(ak) and -bk[0] >= ak[0]

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
        pp = self._pp
        qp = self._qp
        return L2Checkpoint(
            symbol=self.symbol,
            depth=self.depth,
            price_precision=pp,
            qty_precision=qp,
            bids=levels_to_text(self._bids.levels(None), pp, qp),
            asks=levels_to_text(self._asks.levels(None), pp, qp),
        )

    def checkpoint_later(self) -> L2CheckpointCut:
        """:meth:`checkpoint` in two halves: this cheap one copies the book's containers now
        (a few C-level copies, no text), the returned cut's ``materialize()`` builds the
        checkpoint :meth:`checkpoint` returns now, in any thread, whatever the book does
        meanwhile. Raises like :meth:`checkpoint` (a book that is not ready)."""
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
