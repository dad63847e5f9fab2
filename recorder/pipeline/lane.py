"""The pipeline's compiled Spot v2 book lane (``Pipeline(..., engine="core")``, the default).

:class:`recorder._core.SpotLane` derives the common ``book`` frames straight into a
:class:`~recorder.pipeline.core.Pipeline`'s buffers (rows, counters, liveness counts exactly
as the pure-Python path appends them; rare events through the pipeline's own methods) and
keeps each such epoch's book as a :class:`CoreL2Book` / :class:`CoreL3Book`: the compiled
book with the reference book's (:class:`~recorder.book.l2.L2Book`,
:class:`~recorder.book.l3.L3Book`) checkpoint interface, so that checkpoints, state,
cuts and restores give the same objects and bytes. A frame the lane does not take is derived
by the reference path; an epoch whose book the reference path must apply (a token the lane
leaves to it, e.g. a number beyond int64) continues with a reference book until its next
snapshot (:func:`to_reference`).
"""

from __future__ import annotations

from typing import Any, Final

from recorder import _core
from recorder.book.checkpoint import (
    L2Checkpoint,
    L3Checkpoint,
    L3OrderState,
    levels_to_text,
    validate_l2,
    validate_l3,
)
from recorder.book.l2 import L2Book
from recorder.book.l3 import L3Book
from recorder.protocol.errors import BookError
from recorder.protocol.numbers import MAX_PRECISION, units_to_text

__all__ = ["CoreL2Book", "CoreL2Cut", "CoreL3Book", "CoreL3Cut", "to_reference", "restore_l2",
           "restore_l3", "ENGINES"]

#: Pipeline engines: the compiled lane (product) or the pure-Python reference model.
ENGINES: Final = ("core", "python")
_INT64_MAX: Final = 2**63 - 1
_LANE_L2: Any = _core.LaneL2Book
_LANE_L3: Any = _core.LaneL3Book


def _check_ready(book: Any) -> None:
    if not book.ready:
        raise BookError(f"{book.symbol}: no valid book to checkpoint")


class CoreL2Book(_LANE_L2):  # type: ignore[misc]  # (_core is untyped)
    """A compiled L2 book with the checkpoint interface of :class:`~recorder.book.l2.L2Book`
    (:meth:`checkpoint`, :meth:`checkpoint_later`, :meth:`restore`, :meth:`checksum`,
    ``len()``)."""

    __slots__ = ()

    def checkpoint(self) -> L2Checkpoint:
        """The checkpoint the reference book holding the same levels returns (raises
        :class:`~recorder.protocol.errors.BookError` as it does for a book not ready)."""
        _check_ready(self)
        pp = self.price_precision
        qp = self.qty_precision
        return L2Checkpoint(
            symbol=self.symbol, depth=self.depth, price_precision=pp, qty_precision=qp,
            bids=levels_to_text(self.side_levels(False), pp, qp),
            asks=levels_to_text(self.side_levels(True), pp, qp))

    def checkpoint_later(self) -> CoreL2Cut:
        """:meth:`checkpoint` in two halves (as the reference's): a copy of the book now, its
        ``materialize()`` later."""
        _check_ready(self)
        return CoreL2Cut(self.copy())

    @classmethod
    def restore(cls, cp: L2Checkpoint) -> CoreL2Book:
        """A book holding the checkpoint's levels (validated as the reference's restore);
        raises :class:`~recorder.protocol.errors.BookError` like it, ``OverflowError`` for
        units beyond int64 (see :func:`restore_l2`)."""
        bids, asks = validate_l2(cp)
        book = cls(cp.symbol, cp.depth, cp.price_precision, cp.qty_precision)
        book.load(bids, asks)
        return book


class CoreL2Cut:
    """A :class:`CoreL2Book` copied at a commit's cut (:meth:`CoreL2Book.checkpoint_later`)."""

    __slots__ = ("_book",)

    def __init__(self, book: Any) -> None:
        self._book = book

    def materialize(self) -> L2Checkpoint:
        """The checkpoint the book returned at the cut."""
        return CoreL2Book.checkpoint(self._book)


class CoreL3Book(_LANE_L3):  # type: ignore[misc]
    """A compiled level3 book with the checkpoint interface of
    :class:`~recorder.book.l3.L3Book` (:meth:`checkpoint`, :meth:`checkpoint_later`,
    :meth:`restore`, :meth:`checksum`, ``len()``: resting orders)."""

    __slots__ = ()

    def checkpoint(self) -> L3Checkpoint:
        """The checkpoint the reference book holding the same orders returns (raises as
        :meth:`CoreL2Book.checkpoint`)."""
        _check_ready(self)
        pp = self.price_precision
        qp = self.qty_precision

        def states(ask: bool) -> list[L3OrderState]:
            return [L3OrderState(oid, units_to_text(price, pp), units_to_text(qty, qp), ts)
                    for oid, price, qty, ts in self.side_orders(ask)]

        return L3Checkpoint(symbol=self.symbol, depth=self.depth, price_precision=pp,
                            qty_precision=qp, bids=states(False), asks=states(True))

    def checkpoint_later(self) -> CoreL3Cut:
        """:meth:`checkpoint` in two halves: the resting orders now (``_core.LaneL3Cut``: one
        pass over them, ids shared, no copy of the book's indexes), their ``materialize()``
        later."""
        _check_ready(self)
        return CoreL3Cut(self.cut())

    @classmethod
    def restore(cls, cp: L3Checkpoint) -> CoreL3Book:
        """A book holding the checkpoint's orders (validated as the reference's restore)."""
        bids, asks = validate_l3(cp)
        book = cls(cp.symbol, cp.depth, cp.price_precision, cp.qty_precision)
        book.load(bids, asks)
        return book


class CoreL3Cut:
    """A :class:`CoreL3Book`'s orders taken at a commit's cut
    (:meth:`CoreL3Book.checkpoint_later`)."""

    __slots__ = ("_book",)

    def __init__(self, book: Any) -> None:
        self._book = book

    def materialize(self) -> L3Checkpoint:
        """The checkpoint the book returned at the cut."""
        return CoreL3Book.checkpoint(self._book)


def to_reference(book: CoreL2Book | CoreL3Book) -> L2Book | L3Book:
    """The reference book holding ``book``'s state (an epoch the reference path continues)."""
    if isinstance(book, CoreL3Book):
        return L3Book.restore(book.checkpoint())
    return L2Book.restore(book.checkpoint())


def _fits(pp: object, qp: object) -> bool:
    return (type(pp) is int and type(qp) is int and 0 <= pp <= MAX_PRECISION
            and 0 <= qp <= MAX_PRECISION)


def restore_l2(cp: L2Checkpoint) -> L2Book | CoreL2Book:
    """A restored spot ``book`` epoch's book: a :class:`CoreL2Book` when the compiled book can
    hold it (precisions at most 18 decimals, units within int64), else the reference book."""
    if _fits(cp.price_precision, cp.qty_precision):
        bids, asks = validate_l2(cp)
        if all(p <= _INT64_MAX and q <= _INT64_MAX for p, q in (*bids, *asks)):
            book = CoreL2Book(cp.symbol, cp.depth, cp.price_precision, cp.qty_precision)
            book.load(bids, asks)
            return book
    return L2Book.restore(cp)


def restore_l3(cp: L3Checkpoint) -> L3Book | CoreL3Book:
    """:func:`restore_l2` for a spot ``level3`` epoch's book."""
    if _fits(cp.price_precision, cp.qty_precision):
        bids, asks = validate_l3(cp)
        if all(p <= _INT64_MAX and q <= _INT64_MAX for _, p, q, _ in (*bids, *asks)):
            book = CoreL3Book(cp.symbol, cp.depth, cp.price_precision, cp.qty_precision)
            book.load(bids, asks)
            return book
    return L3Book.restore(cp)
