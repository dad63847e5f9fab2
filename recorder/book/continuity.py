"""Counter continuity: report missing, repeated or regressing exchange sequence numbers.

Kraken offers three per-instrument counters a recorder can check:

* Spot v2 ``trade.trade_id`` — +1 per trade per symbol, including across the snapshot boundary;
* Futures ``book`` ``seq`` — the first delta is the ``book_snapshot`` ``seq`` + 1, then +1;
* Futures ``trade`` ``seq`` — the ``trade_snapshot`` lists trades newest first with consecutive
  descending ``seq``; live trades continue at the snapshot's highest ``seq`` + 1.

The trackers are pure (no clock, no I/O): callers feed them what was decoded and receive
:class:`SequenceGap` values to record. A gap means messages were missed (resnapshot or backfill);
a duplicate or regression means a message arrived twice or out of order and is reported
distinctly, without moving the tracker's position backwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, TypeAlias

import msgspec

from recorder.protocol.futures import (
    FuturesBookDelta,
    FuturesBookSnapshot,
    FuturesTrade,
    FuturesTradeSnapshot,
)

__all__ = [
    "CounterName",
    "DiscontinuityKind",
    "SequenceGap",
    "TradeIdTracker",
    "FuturesSeqTracker",
    "classify_step",
]

#: Which counter a report is about.
CounterName: TypeAlias = Literal["spot_trade_id", "futures_book_seq", "futures_trade_seq"]
#: ``gap``: ``got > expected`` (``got - expected`` values missing); ``duplicate``: the last value
#: again; ``regression``: an older value; ``unordered_snapshot``: a snapshot whose own values are
#: not consecutive.
DiscontinuityKind: TypeAlias = Literal["gap", "duplicate", "regression", "unordered_snapshot"]


class SequenceGap(msgspec.Struct, frozen=True, kw_only=True):
    """One discontinuity of an exchange counter.

    ``key`` is the Spot symbol (``"BTC/USD"``) or the upper-cased Futures product id; together
    with ``what`` (the counter, which names the feed) it identifies the stream. ``expected`` is
    the value continuity called for, ``got`` the value that arrived, ``exchange_time_ns`` the
    exchange timestamp of the message that revealed it (``None`` when unknown).
    """

    what: CounterName
    kind: DiscontinuityKind
    key: str
    expected: int
    got: int
    exchange_time_ns: int | None = None

    @property
    def missing(self) -> int:
        """How many values were skipped (0 unless ``kind == "gap"``)."""
        return self.got - self.expected if self.kind == "gap" else 0


def classify_step(last: int, got: int) -> DiscontinuityKind | None:
    """Continuity of ``got`` after ``last`` for a +1 counter: ``None`` when ``got == last + 1``."""
    if got == last + 1:
        return None
    if got > last:
        return "gap"
    return "duplicate" if got == last else "regression"


def _advance(
    last: dict[str, int], what: CounterName, key: str, got: int, time_ns: int | None
) -> SequenceGap | None:
    """Check ``got`` against ``last[key]`` and move the position forward (never backwards)."""
    previous = last.get(key)
    if previous is None:
        last[key] = got
        return None
    kind = classify_step(previous, got)
    if kind is None:
        last[key] = got
        return None
    if kind == "gap":
        last[key] = got
    return SequenceGap(what=what, kind=kind, key=key, expected=previous + 1, got=got,
                       exchange_time_ns=time_ns)


def _seed_from_snapshot(
    last: dict[str, int],
    what: CounterName,
    key: str,
    ascending: Sequence[int],
    time_ns: int | None,
) -> list[SequenceGap]:
    """Check a snapshot's values (oldest first) are consecutive, then continue from its newest.

    If values were already seen for ``key`` (a resubscription), values missed between the last
    one seen and the snapshot's oldest are reported as a ``gap``; an overlap is expected and not
    reported. Live values then continue at the snapshot's newest + 1.
    """
    gaps: list[SequenceGap] = []
    if not ascending:
        return gaps
    previous = last.get(key)
    if previous is not None and ascending[0] > previous + 1:
        gaps.append(SequenceGap(what=what, kind="gap", key=key, expected=previous + 1,
                                got=ascending[0], exchange_time_ns=time_ns))
    for before, after in zip(ascending, ascending[1:]):
        if after != before + 1:
            gaps.append(SequenceGap(what=what, kind="unordered_snapshot", key=key,
                                    expected=before + 1, got=after, exchange_time_ns=time_ns))
    last[key] = ascending[-1]
    return gaps


class TradeIdTracker:
    """Spot v2 ``trade_id`` continuity per symbol (+1 per trade, snapshot boundary included)."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def observe_snapshot(
        self, symbol: str, trade_ids: Iterable[int], exchange_time_ns: int | None = None
    ) -> list[SequenceGap]:
        """A trade snapshot, trades in the order Kraken sent them (oldest first)."""
        return _seed_from_snapshot(self._last, "spot_trade_id", symbol, list(trade_ids),
                                   exchange_time_ns)

    def observe(
        self, symbol: str, trade_id: int, exchange_time_ns: int | None = None
    ) -> SequenceGap | None:
        """One live trade; the first trade of an unknown symbol only sets the position."""
        return _advance(self._last, "spot_trade_id", symbol, trade_id, exchange_time_ns)

    def last(self, symbol: str) -> int | None:
        """The highest contiguous-or-later trade id seen for ``symbol``."""
        return self._last.get(symbol)

    def reset(self, symbol: str | None = None) -> None:
        """Forget one symbol (or all): the next trade or snapshot starts afresh, unchecked."""
        if symbol is None:
            self._last.clear()
        else:
            self._last.pop(symbol, None)


class FuturesSeqTracker:
    """Futures ``seq`` continuity per (feed, product): ``book`` and ``trade`` counters.

    Product ids are upper-cased so lower-case and upper-case spellings share one stream. A book
    snapshot always re-seeds the book counter (a resubscription resets it); a trade snapshot
    re-seeds the trade counter after checking it against trades already seen.
    """

    __slots__ = ("_book", "_trade")

    def __init__(self) -> None:
        self._book: dict[str, int] = {}
        self._trade: dict[str, int] = {}

    # -- book
    def observe_book_snapshot(self, product_id: str, seq: int) -> None:
        """Seed the book counter: the next delta must carry ``seq + 1``."""
        self._book[product_id.upper()] = seq

    def observe_book_delta(
        self, product_id: str, seq: int, exchange_time_ns: int | None = None
    ) -> SequenceGap | None:
        """One book delta; a delta before any snapshot only sets the position."""
        return _advance(self._book, "futures_book_seq", product_id.upper(), seq, exchange_time_ns)

    # -- trades
    def observe_trade_snapshot(
        self, product_id: str, seqs_newest_first: Iterable[int], exchange_time_ns: int | None = None
    ) -> list[SequenceGap]:
        """A trade snapshot's ``seq`` values as sent (newest first, consecutive descending)."""
        ascending = list(seqs_newest_first)[::-1]
        return _seed_from_snapshot(self._trade, "futures_trade_seq", product_id.upper(),
                                   ascending, exchange_time_ns)

    def observe_trade(
        self, product_id: str, seq: int, exchange_time_ns: int | None = None
    ) -> SequenceGap | None:
        """One live trade; it must continue at the last ``seq`` + 1."""
        return _advance(self._trade, "futures_trade_seq", product_id.upper(), seq,
                        exchange_time_ns)

    # -- decoded events
    def observe(self, event: object) -> list[SequenceGap]:
        """Feed any decoded Futures event; events without a counter are ignored."""
        if isinstance(event, FuturesBookDelta):
            gap = self.observe_book_delta(event.product_id, event.seq, event.timestamp_ns)
            return [] if gap is None else [gap]
        if isinstance(event, FuturesTrade):
            gap = self.observe_trade(event.product_id, event.seq, event.time_ns)
            return [] if gap is None else [gap]
        if isinstance(event, FuturesBookSnapshot):
            self.observe_book_snapshot(event.product_id, event.seq)
            return []
        if isinstance(event, FuturesTradeSnapshot):
            newest_time = event.trades[0].time_ns if event.trades else None
            return self.observe_trade_snapshot(
                event.product_id, [trade.seq for trade in event.trades], newest_time)
        return []

    def last(self, feed: Literal["book", "trade"], product_id: str) -> int | None:
        """Current position of one counter."""
        table = self._book if feed == "book" else self._trade
        return table.get(product_id.upper())

    def reset(self, feed: Literal["book", "trade"] | None = None, product_id: str | None = None) -> None:
        """Forget counters: one feed and/or one product, or everything."""
        tables = [self._book, self._trade] if feed is None else [
            self._book if feed == "book" else self._trade]
        for table in tables:
            if product_id is None:
                table.clear()
            else:
                table.pop(product_id.upper(), None)
