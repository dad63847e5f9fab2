"""Futures book checks of raw frames: the compiled checker and its pure-Python reference.

:class:`CoreFuturesChecker` feeds batches of received Kraken Futures WebSocket frames to
``recorder._core.FuturesBooks`` (decoded and applied in Rust with the GIL released) and returns
one verdict per frame as numpy columns; :class:`ReferenceFuturesChecker` decides the same with
the Python decoder (:func:`recorder.protocol.futures.decode_futures`) and book
(:class:`recorder.book.futures.FuturesBook`) and the pipeline's rules
(:mod:`recorder.pipeline.core`):

* ``ok``: a ``book_snapshot`` (replaces the product's book) or a ``book`` delta with
  ``seq`` = last + 1;
* ``seq_gap``: a delta whose ``seq`` jumped: applied, then the book is dropped until the next
  snapshot (the pipeline ends the epoch, later deltas are ``update_before_snapshot``);
* ``reject`` with the pipeline's reason: the decoder's (``malformed_json``, ``schema``,
  ``bad_number``, ...), ``bad_symbol``, ``apply_error`` (drops the book),
  ``update_before_snapshot``, ``seq_duplicate``, ``seq_regression`` (not applied);
* ``skipped``: any other valid frame (trade, ticker, heartbeat, control events).

``crossed`` is 1 when the product's book is crossed after the frame (reported, not a reject,
as in the pipeline). Books are keyed by the product id exactly as sent, as the pipeline's
epochs are. ``recorder verify --journal`` runs the core checker on the journal's futures
frames; tests compare the two frame by frame.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from recorder import _core
from recorder.book.futures import FuturesBook
from recorder.protocol import futures as fut
from recorder.protocol.reject import Reject
from recorder.protocol.symbols import symbol_problem

__all__ = [
    "FUTURES_VERDICTS",
    "FUTURES_REASONS",
    "FuturesVerdicts",
    "CoreFuturesChecker",
    "ReferenceFuturesChecker",
]

#: Verdict names by code (``FuturesVerdicts.verdict``).
FUTURES_VERDICTS: Final[tuple[str, ...]] = tuple(_core.FUTURES_VERDICTS)
#: Reject reason names by code (``FuturesVerdicts.reason``; 0 = none).
FUTURES_REASONS: Final[tuple[str, ...]] = tuple(_core.FUTURES_REASONS)

OK, SEQ_GAP, REJECT, SKIPPED = range(4)
SNAPSHOT, DELTA, NO_KIND = range(3)
NO_PRODUCT: Final = 2**32 - 1
NONE: Final = -(2**63)
_REASON_CODE: Final = {name: code for code, name in enumerate(FUTURES_REASONS) if name}


@dataclass
class FuturesVerdicts:
    """Verdict columns of one batch (numpy arrays of equal length) and reject details."""

    verdict: np.ndarray
    kind: np.ndarray
    reason: np.ndarray
    product: np.ndarray
    seq: np.ndarray
    expected: np.ndarray
    ts_ns: np.ndarray
    crossed: np.ndarray
    products: list[str]
    details: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.verdict)

    def row(self, i: int) -> tuple[Any, ...]:
        """Frame ``i``'s verdict as a comparable tuple (product as its id)."""
        pid = int(self.product[i])
        return (FUTURES_VERDICTS[self.verdict[i]], int(self.kind[i]),
                FUTURES_REASONS[self.reason[i]], None if pid == NO_PRODUCT else self.products[pid],
                int(self.seq[i]), int(self.expected[i]), int(self.ts_ns[i]), int(self.crossed[i]))


Levels = list[tuple[str, str]]


class CoreFuturesChecker:
    """The compiled checker (``recorder._core.FuturesBooks``): books persist across batches."""

    def __init__(self, max_frame_bytes: int = fut.MAX_FRAME_BYTES) -> None:
        self._books = _core.FuturesBooks(max_frame_bytes)
        #: the last batch's raw columns (``price``/``qty`` units and scales of deltas)
        self.columns: dict[str, bytes] = {}

    def feed(self, frames: list[bytes]) -> FuturesVerdicts:
        """Decode and check one batch of frames (GIL released in the core)."""
        cols = self.columns = self._books.feed(frames)
        text = cols["detail_text"]
        ends = np.frombuffer(cols["detail_end"], "<u4")
        starts = np.concatenate(([0], ends[:-1])) if len(ends) else ends
        details = {int(f): text[int(a):int(b)].decode("utf-8", "replace")
                   for f, a, b in zip(np.frombuffer(cols["detail_frame"], "<u4"), starts, ends)}
        return FuturesVerdicts(
            verdict=np.frombuffer(cols["verdict"], np.uint8),
            kind=np.frombuffer(cols["kind"], np.uint8),
            reason=np.frombuffer(cols["reason"], np.uint8),
            product=np.frombuffer(cols["product"], "<u4"),
            seq=np.frombuffer(cols["seq"], "<i8"),
            expected=np.frombuffer(cols["expected"], "<i8"),
            ts_ns=np.frombuffer(cols["ts_ns"], "<i8"),
            crossed=np.frombuffer(cols["crossed"], np.uint8),
            products=self._books.products(),
            details=details,
        )

    def levels(self, product: str, depth: int | None = None) -> tuple[int, Levels, Levels] | None:
        """``(seq, bids, asks)`` of ``product``'s valid book as exact text, best first."""
        return self._books.levels(product, depth)


class ReferenceFuturesChecker:
    """The pure-Python reference model of :class:`CoreFuturesChecker` (same verdicts)."""

    def __init__(self, max_frame_bytes: int = fut.MAX_FRAME_BYTES) -> None:
        self._max = max_frame_bytes
        self._products: list[str] = []
        self._ids: dict[str, int] = {}
        self._books: dict[str, FuturesBook] = {}

    def _intern(self, product: str) -> int:
        pid = self._ids.get(product)
        if pid is None:
            pid = self._ids[product] = len(self._products)
            self._products.append(product)
        return pid

    def feed(self, frames: Iterable[bytes]) -> FuturesVerdicts:
        """Decode and check one batch of frames."""
        rows: list[tuple[int, ...]] = []
        details: dict[int, str] = {}
        for i, frame in enumerate(frames):
            row, detail = self._one(frame)
            rows.append(row)
            if detail is not None:
                details[i] = detail
        cols = list(zip(*rows)) if rows else [()] * 8
        return FuturesVerdicts(
            verdict=np.array(cols[0], np.uint8), kind=np.array(cols[1], np.uint8),
            reason=np.array(cols[2], np.uint8), product=np.array(cols[3], np.uint32),
            seq=np.array(cols[4], np.int64), expected=np.array(cols[5], np.int64),
            ts_ns=np.array(cols[6], np.int64), crossed=np.array(cols[7], np.uint8),
            products=list(self._products), details=details)

    def _one(self, frame: bytes) -> tuple[tuple[int, ...], str | None]:
        ev = fut.decode_futures(frame, max_bytes=self._max)
        t = type(ev)
        if t is Reject:
            return (REJECT, NO_KIND, _REASON_CODE[ev.reason], NO_PRODUCT, NONE, NONE, NONE,
                    0), ev.detail
        if t is fut.FuturesBookSnapshot or t is fut.FuturesBookDelta:
            return self._book(ev)
        if t is fut.FuturesTrade or t is fut.FuturesTradeSnapshot:
            ids: tuple[Any, ...] = tuple(tr.product_id for tr in (
                ev.trades if t is fut.FuturesTradeSnapshot else (ev,)))
        elif t is fut.FuturesTicker:
            ids = (ev.product_id,)
        elif t is fut.FuturesSubscribed:
            ids = ev.product_ids
        else:
            ids = ()
        for pid in ids:
            problem = symbol_problem(pid, "futures")
            if problem is not None:
                return (REJECT, NO_KIND, _REASON_CODE["bad_symbol"], NO_PRODUCT, NONE, NONE,
                        NONE, 0), problem
        return (SKIPPED, NO_KIND, 0, NO_PRODUCT, NONE, NONE, NONE, 0), None

    def _book(self, ev: Any) -> tuple[tuple[int, ...], str | None]:
        snapshot = type(ev) is fut.FuturesBookSnapshot
        kind = SNAPSHOT if snapshot else DELTA
        seq, ts = ev.seq, ev.timestamp_ms * 1_000_000
        product = ev.product_id

        def reject(reason: str, detail: str, pid: int = NO_PRODUCT,
                   expected: int = NONE) -> tuple[tuple[int, ...], str | None]:
            return (REJECT, kind, _REASON_CODE[reason], pid, seq, expected, ts, 0), detail

        problem = symbol_problem(product, "futures")
        if problem is not None:
            return reject("bad_symbol", problem)
        pid = self._intern(product)
        if snapshot:
            self._books.pop(product, None)
            try:
                book = FuturesBook(product)
                book.apply_snapshot(ev)
            except Exception as exc:  # noqa: BLE001 - BookError/NumberError: a reject
                return reject("apply_error", str(exc), pid)
            self._books[product] = book
            return (OK, kind, 0, pid, seq, NONE, ts, int(book.crossed)), None
        book = self._books.get(product)
        if book is None:
            return reject("update_before_snapshot", "futures book delta without a snapshot", pid)
        try:
            gap = book.apply(ev)
        except Exception as exc:  # noqa: BLE001
            del self._books[product]
            return reject("apply_error", str(exc), pid)
        if gap is not None and gap.kind != "gap":
            return reject(f"seq_{gap.kind}", f"seq {gap.got}, expected {gap.expected}", pid,
                          gap.expected)
        crossed = int(book.crossed)
        if gap is not None:
            del self._books[product]
            return (SEQ_GAP, kind, 0, pid, seq, gap.expected, ts, crossed), None
        return (OK, kind, 0, pid, seq, NONE, ts, crossed), None

    def levels(self, product: str, depth: int | None = None) -> tuple[int, Levels, Levels] | None:
        """As :meth:`CoreFuturesChecker.levels`."""
        book = self._books.get(product)
        if book is None or book.seq is None:
            return None
        return (book.seq, [(str(p), str(q)) for p, q in book.bids(depth)],
                [(str(p), str(q)) for p, q in book.asks(depth)])
