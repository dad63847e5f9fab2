"""Where the archive holds a valid book of a (channel, symbol), on the receive clock (pure).

An epoch (``schemas/epochs.toml``) is a validated stretch of one book from the snapshot that
started it; :meth:`recorder.query.books.BookEngine.epochs` gives its covered interval
``[start_ns, valid_until]`` (the failing message of a checksum mismatch or crossed book is
outside it). A recorded gap of the channel and symbol (or of ``*``) inside that interval takes
its open interior out, exactly as :meth:`~recorder.query.books.BookEngine.book_at` refuses a
time inside a gap. What is left is a list of :class:`Interval` per (channel, symbol), each
tied to the recording connection whose frames it covers (``root`` = index of the archive root,
``conn_id`` = the recorder's connection id).

The replay forwards a recorded book frame only when an interval of its (channel, symbol)
covers its receive time *and* names its connection: a frame the archive found bad, frames
after a failure and before the next snapshot, and a second connection's copy of the same book
are never forwarded.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["HALT_REASONS", "Coverage", "EpochRow", "Interval", "epoch_intervals", "subtract_gaps"]


@dataclass(frozen=True, slots=True)
class Interval:
    """A covered stretch ``[start_ns, end_ns]`` (inclusive) of one epoch.

    ``begins_epoch``: ``start_ns`` is the epoch's first message (its recorded snapshot)."""

    start_ns: int
    end_ns: int
    root: int
    conn_id: int
    epoch: int
    depth: int | None
    begins_epoch: bool


def subtract_gaps(interval: Interval, gaps: Iterable[tuple[int, int | None]]) -> list[Interval]:
    """``interval`` without the open interiors ``(start, end)`` of ``gaps`` (``end`` None:
    open-ended). A gap covers the times ``t`` with ``start < t < end``, as in
    :meth:`~recorder.query.books.BookEngine.book_at`."""
    pieces = [interval]
    for g_start, g_end in gaps:
        lo = g_start + 1
        hi = None if g_end is None else g_end - 1
        if hi is not None and hi < lo:
            continue
        out: list[Interval] = []
        for piece in pieces:
            if piece.end_ns < lo or (hi is not None and piece.start_ns > hi):
                out.append(piece)
                continue
            if piece.start_ns < lo:
                out.append(_with(piece, piece.start_ns, lo - 1, piece.begins_epoch))
            if hi is not None and piece.end_ns > hi:
                out.append(_with(piece, hi + 1, piece.end_ns, False))
        pieces = out
    return pieces


def _with(piece: Interval, start: int, end: int, begins: bool) -> Interval:
    return Interval(start, end, piece.root, piece.conn_id, piece.epoch, piece.depth, begins)


class Coverage:
    """Covered intervals per ``(channel, symbol)``, sorted by start. One recording
    connection's intervals never overlap; several roots' may (redundant capture), then a frame
    is matched against the intervals of its own connection."""

    def __init__(self, intervals: dict[tuple[str, str], list[Interval]]) -> None:
        self._by_key = {k: sorted(v, key=lambda i: (i.start_ns, i.end_ns))
                        for k, v in intervals.items() if v}
        self._starts = {k: [i.start_ns for i in v] for k, v in self._by_key.items()}
        self._reach: dict[tuple[str, str], list[int]] = {}  # running max of end_ns
        self._last: dict[tuple[str, str], Interval] = {}  # the last interval a frame matched
        for k, v in self._by_key.items():
            reach, top = [], None
            for iv in v:
                top = iv.end_ns if top is None else max(top, iv.end_ns)
                reach.append(top)
            self._reach[k] = reach

    def books(self) -> list[tuple[str, str]]:
        return sorted(self._by_key)

    def intervals(self, channel: str, symbol: str) -> list[Interval]:
        return self._by_key.get((channel, symbol), [])

    def depths(self, channel: str, symbol: str) -> set[int | None]:
        return {i.depth for i in self._by_key.get((channel, symbol), [])}

    def _covering(self, key: tuple[str, str], t: int) -> list[Interval]:
        """Intervals of ``key`` containing ``t``, latest start first."""
        ivs = self._by_key.get(key)
        if not ivs:
            return []
        reach = self._reach[key]
        out = []
        i = bisect_right(self._starts[key], t) - 1
        while i >= 0 and reach[i] >= t:
            if ivs[i].end_ns >= t:
                out.append(ivs[i])
            i -= 1
        return out

    def at(self, channel: str, symbol: str, t: int) -> Interval | None:
        """The interval covering ``t`` (the latest-starting one when several roots do)."""
        found = self._covering((channel, symbol), t)
        return found[0] if found else None

    def frame(self, channel: str, symbol: str, root: int, conn_id: int, t: int) -> Interval | None:
        """The interval covering a frame received at ``t`` on ``(root, conn_id)``, or None
        (one connection's intervals never overlap, so the last match is tried first)."""
        key = (channel, symbol)
        last = self._last.get(key)
        if (last is not None and last.start_ns <= t <= last.end_ns and last.root == root
                and last.conn_id == conn_id):
            return last
        for iv in self._covering(key, t):
            if iv.root == root and iv.conn_id == conn_id:
                self._last[key] = iv
                return iv
        return None

    def first_after(self, channel: str, symbol: str, t: int) -> Interval | None:
        """The first interval starting after ``t``."""
        ivs = self._by_key.get((channel, symbol))
        if not ivs:
            return None
        i = bisect_right(self._starts[(channel, symbol)], t)
        return ivs[i] if i < len(ivs) else None


#: Epoch ends whose last message was not applied (books.py: the failing message is outside).
HALT_REASONS = frozenset({"checksum_mismatch", "crossed"})


class EpochRow(NamedTuple):
    """The final row of one epoch (``schemas/epochs.toml``)."""

    epoch: int
    start_ns: int
    end_ns: int
    end_reason: str
    depth: int | None
    conn_id: int


def epoch_intervals(rows: list[EpochRow], root: int) -> list[Interval]:
    """Covered intervals of one (channel, symbol)'s epochs in one root, by the rule of
    :meth:`recorder.query.books.BookEngine.epochs`: ``[start_ns, end_ns]``, ``end_ns - 1``
    when the epoch ended by a checksum mismatch or a crossed book, up to the next epoch's start
    when it ended by a resnapshot (a test keeps the two in step)."""
    ordered = sorted(rows, key=lambda r: r.start_ns)
    out = []
    for i, r in enumerate(ordered):
        if r.end_reason in HALT_REASONS:
            until = r.end_ns - 1
        elif r.end_reason == "resnapshot" and i + 1 < len(ordered):
            until = ordered[i + 1].start_ns - 1
        else:
            until = r.end_ns
        if until >= r.start_ns:
            out.append(Interval(r.start_ns, until, root, r.conn_id, r.epoch, r.depth, True))
    return out
