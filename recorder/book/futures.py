"""Full-depth L2 book of one Kraken Futures product, with ``seq`` continuity built in.

Futures books have no depth limit and no checksum: a ``book_snapshot`` carries every level,
then each ``book`` delta sets one level to an absolute quantity (0 removes it) and carries a
per-product ``seq`` that must be the previous one + 1 (the first delta: snapshot ``seq`` + 1).

Prices and quantities arrive as JSON floats; the book stores them as the exact wire tokens
(:mod:`recorder.protocol.numbers`) and orders levels by an exact key: integer units at the
product's price precision when it is known (from the instruments endpoint's ``tickSize``), else
the token's :class:`~decimal.Decimal` value (``"34892"``, ``34892`` and ``"34892.0"`` are the same
level). No digit is ever dropped: a token finer than a configured precision raises
:class:`~recorder.protocol.errors.NumberError`.

Continuity: :meth:`FuturesBook.apply` returns a :class:`~recorder.book.continuity.SequenceGap`
when ``seq`` is not ``last + 1``. A gap's delta is still applied (quantities are absolute) but
the book is marked out of sync until the next snapshot; a duplicate or older ``seq`` is reported
and not applied, so it cannot overwrite newer state.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from decimal import Decimal
from typing import Any, Literal, TypeAlias

import msgspec

from recorder.book.continuity import SequenceGap, classify_step
from recorder.protocol.errors import BookError
from recorder.protocol.futures import FuturesBookDelta, FuturesBookSnapshot
from recorder.protocol.numbers import NumToken, to_units, token_to_text

__all__ = ["FuturesBook", "FuturesBookCheckpoint", "Level"]

#: ``(price, qty)`` exactly as received.
Level: TypeAlias = "tuple[NumToken, NumToken]"
_Key: TypeAlias = "int | Decimal"


class FuturesBookCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    """Exact, serialisable state of a :class:`FuturesBook` (JSON/msgpack round-trip safe).

    ``bids``/``asks`` are best first, as the wire tokens; ``seq`` is the last applied ``seq``.
    """

    product_id: str
    seq: int | None
    timestamp_ms: int | None
    in_sync: bool
    price_precision: int | None = None
    qty_precision: int | None = None
    bids: tuple[tuple[Any, Any], ...] = ()
    asks: tuple[tuple[Any, Any], ...] = ()


class _Side:
    """Levels of one side: key -> (price token, qty token), plus the keys kept sorted ascending."""

    __slots__ = ("levels", "keys")

    def __init__(self) -> None:
        self.levels: dict[_Key, tuple[NumToken, NumToken]] = {}
        self.keys: list[_Key] = []

    def set(self, key: _Key, price: NumToken, qty: NumToken, remove: bool) -> None:
        levels = self.levels
        if remove:
            if levels.pop(key, None) is not None:
                keys = self.keys
                del keys[bisect_left(keys, key)]
            return
        if key not in levels:
            insort(self.keys, key)
        levels[key] = (price, qty)

    def clear(self) -> None:
        self.levels.clear()
        self.keys.clear()


class FuturesBook:
    """The book of one product. Feed it decoded ``book_snapshot`` and ``book`` events.

    ``price_precision``/``qty_precision`` (decimals) come from the product's instrument data;
    leave them ``None`` to key levels by exact decimal value instead.
    """

    __slots__ = ("product_id", "price_precision", "qty_precision", "_bids", "_asks", "_seq",
                 "_timestamp_ms", "_in_sync")

    def __init__(
        self, product_id: str, *, price_precision: int | None = None,
        qty_precision: int | None = None,
    ) -> None:
        self.product_id = product_id.upper()
        self.price_precision = price_precision
        self.qty_precision = qty_precision
        self._bids = _Side()
        self._asks = _Side()
        self._seq: int | None = None
        self._timestamp_ms: int | None = None
        self._in_sync = False

    # ------------------------------------------------------------------------ state

    @property
    def seq(self) -> int | None:
        """The ``seq`` of the last snapshot or delta applied (``None`` before a snapshot)."""
        return self._seq

    @property
    def timestamp_ms(self) -> int | None:
        """Exchange time of the last snapshot or delta applied, epoch ms."""
        return self._timestamp_ms

    @property
    def in_sync(self) -> bool:
        """False before the first snapshot and after a gap, until the next snapshot."""
        return self._in_sync

    @property
    def has_snapshot(self) -> bool:
        return self._seq is not None

    def best_bid(self) -> Level | None:
        keys = self._bids.keys
        return self._bids.levels[keys[-1]] if keys else None

    def best_ask(self) -> Level | None:
        keys = self._asks.keys
        return self._asks.levels[keys[0]] if keys else None

    @property
    def crossed(self) -> bool:
        """True when the best bid is at or above the best ask (a corrupt or stale book)."""
        bids, asks = self._bids.keys, self._asks.keys
        return bool(bids and asks and bids[-1] >= asks[0])

    def bids(self, depth: int | None = None) -> list[Level]:
        """Bid levels, best (highest) first, optionally only the top ``depth``."""
        keys = self._bids.keys
        top = keys if depth is None else keys[max(len(keys) - max(depth, 0), 0):]
        levels = self._bids.levels
        return [levels[k] for k in reversed(top)]

    def asks(self, depth: int | None = None) -> list[Level]:
        """Ask levels, best (lowest) first, optionally only the top ``depth``."""
        keys = self._asks.keys if depth is None else self._asks.keys[: max(depth, 0)]
        levels = self._asks.levels
        return [levels[k] for k in keys]

    def __len__(self) -> int:
        return len(self._bids.keys) + len(self._asks.keys)

    # --------------------------------------------------------------------- updates

    def apply_snapshot(self, snapshot: FuturesBookSnapshot) -> None:
        """Replace the whole book; levels listed with quantity 0 are ignored."""
        self._check_product(snapshot.product_id)
        bids, asks = _Side(), _Side()
        for side, levels in ((bids, snapshot.bids), (asks, snapshot.asks)):
            for level in levels:
                key, remove = self._key(level.price), self._is_zero(level.qty)
                side.set(key, level.price, level.qty, remove)
        self._bids, self._asks = bids, asks
        self._seq = snapshot.seq
        self._timestamp_ms = snapshot.timestamp_ms
        self._in_sync = True

    def apply(self, delta: FuturesBookDelta) -> SequenceGap | None:
        """Apply one delta; return the continuity problem it revealed, if any."""
        self._check_product(delta.product_id)
        return self.apply_level(delta.side, delta.price, delta.qty, delta.seq, delta.timestamp_ms)

    def apply_level(
        self, side: Literal["buy", "sell"], price: NumToken, qty: NumToken, seq: int,
        timestamp_ms: int | None = None,
    ) -> SequenceGap | None:
        """Set one level to an absolute quantity (0 removes it), checking ``seq``."""
        if self._seq is None:
            raise BookError(f"{self.product_id}: book delta before any snapshot")
        if side == "buy":
            book_side = self._bids
        elif side == "sell":
            book_side = self._asks
        else:
            raise BookError(f"{self.product_id}: unknown side {side!r}")
        key, remove = self._key(price), self._is_zero(qty)
        kind = classify_step(self._seq, seq)
        gap = None
        if kind is not None:
            gap = SequenceGap(what="futures_book_seq", kind=kind, key=self.product_id,
                              expected=self._seq + 1, got=seq,
                              exchange_time_ns=None if timestamp_ms is None else timestamp_ms * 1_000_000)
            if kind != "gap":
                return gap
            self._in_sync = False
        book_side.set(key, price, qty, remove)
        self._seq = seq
        if timestamp_ms is not None:
            self._timestamp_ms = timestamp_ms
        return gap

    # ------------------------------------------------------------ checkpoint/restore

    def checkpoint(self) -> FuturesBookCheckpoint:
        """Exact state (wire tokens, best first) to persist and later :meth:`restore`.

        Integer tokens outside int64 (the decoder admits up to 38 digits) are stored as their
        exact decimal text: msgpack cannot hold them, and text restores to the same level."""
        return FuturesBookCheckpoint(
            product_id=self.product_id, seq=self._seq, timestamp_ms=self._timestamp_ms,
            in_sync=self._in_sync, price_precision=self.price_precision,
            qty_precision=self.qty_precision, bids=_serialisable(self.bids()),
            asks=_serialisable(self.asks()),
        )

    @classmethod
    def restore(cls, checkpoint: FuturesBookCheckpoint) -> FuturesBook:
        """Rebuild a book from :meth:`checkpoint`; raises BookError/NumberError if corrupt."""
        book = cls(checkpoint.product_id, price_precision=checkpoint.price_precision,
                   qty_precision=checkpoint.qty_precision)
        for side, levels in ((book._bids, checkpoint.bids), (book._asks, checkpoint.asks)):
            for price, qty in levels:
                if book._is_zero(qty):
                    raise BookError(f"{checkpoint.product_id}: checkpoint holds an empty level")
                side.set(book._key(price), price, qty, False)
        book._seq = checkpoint.seq
        book._timestamp_ms = checkpoint.timestamp_ms
        book._in_sync = checkpoint.in_sync and checkpoint.seq is not None
        return book

    # -------------------------------------------------------------------- helpers

    def _check_product(self, product_id: str) -> None:
        if product_id.upper() != self.product_id:
            raise BookError(f"book of {self.product_id} got a message for {product_id}")

    def _key(self, price: NumToken) -> _Key:
        """Exact ordering key of a price token."""
        if self.price_precision is not None:
            return to_units(price, self.price_precision)
        return Decimal(token_to_text(price))

    def _is_zero(self, qty: NumToken) -> bool:
        """Validate a quantity token and say whether it removes the level."""
        if self.qty_precision is not None:
            units = to_units(qty, self.qty_precision)
        else:
            units = Decimal(token_to_text(qty))
        if units < 0:
            raise BookError(f"{self.product_id}: negative quantity {qty!r}")
        return units == 0


_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1


def _token_safe(token: NumToken) -> NumToken:
    if type(token) is int and not _I64_MIN <= token <= _I64_MAX:
        return str(token)
    return token


def _serialisable(levels: list[Level]) -> tuple[tuple[Any, Any], ...]:
    """Levels whose tokens every checkpoint encoding (msgpack, JSON) can hold exactly."""
    return tuple((_token_safe(p), _token_safe(q)) for p, q in levels)
