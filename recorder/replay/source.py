"""The recorded venue frames of an archive, in receive order, from its raw journals.

The journal (``<root>/journal/**/*.kjz``, :mod:`recorder.archive.journal`) is the archive's
source of truth: every frame exactly as Kraken sent it, with its receive time and the
recorder's connection id. :class:`JournalSource` yields the inbound market-data streams
(``spot``, ``l3``, ``futures``; never REST bodies, control markers or what the recorder sent)
of every root, merged by receive time (each root's journal is in receive order).

Segments are skipped without being read when the next segment of the same root was created
before the window starts (every frame of a segment was received before its successor was
created). A segment that cannot be read, or ends in a torn tail, is reported through
``on_problem`` (the replay counts and logs it) and the frames it did yield are served: a
damaged journal never stops a replay, and never silently.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import Final, NamedTuple

from recorder.archive.journal import SegmentInfo, list_segments, read_segment

__all__ = ["VENUE_STREAMS", "JournalSource", "VenueFrame", "segment_created_ns"]

VENUE_STREAMS: Final = frozenset({"spot", "l3", "futures"})
_CREATED: Final = re.compile(r"-(\d{20})-")
#: How far past the window's end a root is still read (frames of different connections are
#: appended in arrival order; their receive times are never far apart).
_END_SLACK_NS: Final = 1_000_000_000


class VenueFrame(NamedTuple):
    """One inbound market-data frame: receive time, root index, connection, stream, bytes."""

    recv_ns: int
    root: int
    conn_id: int
    stream: str
    payload: bytes


def segment_created_ns(name: str) -> int | None:
    """The creation time in a segment's name (``<host>-<ns:020d>-<run>-<seq>.kjz``)."""
    found = _CREATED.search(Path(name).name)
    return int(found.group(1)) if found else None


class JournalSource:
    """Venue frames of ``roots`` with ``start_ns < recv_ns <= end_ns`` (see module doc; the
    window's start is the state the replay starts from, its frames are before it).

    ``on_problem(root, segment, error)`` is called once per damaged segment."""

    def __init__(self, roots: list[Path], start_ns: int | None, end_ns: int | None, *,
                 on_problem: Callable[[Path, str, str], None] | None = None) -> None:
        self.roots = roots
        self.start_ns = start_ns
        self.end_ns = end_ns
        self._on_problem = on_problem

    def segments(self, root: Path) -> list[str]:
        """The segments of ``root`` that may hold frames of the window, in order."""
        names = list_segments(root / "journal")
        if self.start_ns is None:
            return names
        kept = []
        for i, name in enumerate(names):
            nxt = segment_created_ns(names[i + 1]) if i + 1 < len(names) else None
            if nxt is not None and nxt < self.start_ns:
                continue
            kept.append(name)
        return kept

    def _root_frames(self, index: int, root: Path) -> Iterator[VenueFrame]:
        lo = self.start_ns
        hi = self.end_ns
        stop = None if hi is None else hi + _END_SLACK_NS
        streams = VENUE_STREAMS
        for name in self.segments(root):
            info = SegmentInfo()
            for _, f in read_segment(root / "journal" / name, info=info):
                recv = f.recv_ns
                if stop is not None and recv > stop:
                    return
                if f.direction != "in" or f.stream not in streams:
                    continue
                if (lo is not None and recv <= lo) or (hi is not None and recv > hi):
                    continue
                yield VenueFrame(recv, index, f.conn_id, f.stream, f.payload)
            if info.torn and self._on_problem is not None:
                self._on_problem(root, name, info.error or "torn")

    def __iter__(self) -> Iterator[VenueFrame]:
        iters = [self._root_frames(i, r) for i, r in enumerate(self.roots)]
        if len(iters) == 1:
            return iters[0]
        return heapq.merge(*iters, key=itemgetter(0))
