"""Pure arithmetic over half-open integer intervals ``[start, end)`` (nanoseconds).

An *interval set* is a list of ``(start, end)`` tuples that is sorted, non-overlapping,
non-adjacent and has no empty members; :func:`normalise` turns any list of pairs into one.
Every function here returns a fresh normalised set and never mutates its inputs, so the
coverage code built on top of them can be tested exhaustively without an archive.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = [
    "Interval",
    "normalise",
    "union",
    "intersect",
    "subtract",
    "clip",
    "total",
    "split_by",
    "overlap",
]

Interval = tuple[int, int]


def normalise(pairs: Iterable[Interval]) -> list[Interval]:
    """Sort, drop empty/negative members and merge overlapping or touching intervals."""
    items = sorted((s, e) for s, e in pairs if e > s)
    out: list[Interval] = []
    for s, e in items:
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def union(*sets: Iterable[Interval]) -> list[Interval]:
    """Union of any number of interval collections (need not be normalised)."""
    merged: list[Interval] = []
    for s in sets:
        merged.extend(s)
    return normalise(merged)


def intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """Intersection of two *normalised* sets (linear two-pointer sweep)."""
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        s = max(a[i][0], b[j][0])
        e = min(a[i][1], b[j][1])
        if e > s:
            out.append((s, e))
        if a[i][1] <= b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """``a`` minus ``b`` for two *normalised* sets."""
    out: list[Interval] = []
    j = 0
    for s, e in a:
        cur = s
        while j < len(b) and b[j][1] <= cur:
            j += 1
        k = j
        while k < len(b) and b[k][0] < e:
            bs, be = b[k]
            if bs > cur:
                out.append((cur, bs))
            cur = max(cur, be)
            if cur >= e:
                break
            k += 1
        if cur < e:
            out.append((cur, e))
    return out


def clip(a: Sequence[Interval], lo: int, hi: int) -> list[Interval]:
    """``a`` restricted to ``[lo, hi)``."""
    return [(max(s, lo), min(e, hi)) for s, e in a if e > lo and s < hi and min(e, hi) > max(s, lo)]


def total(a: Iterable[Interval]) -> int:
    """Summed length of a *normalised* set (of any set if overlaps should count twice)."""
    return sum(e - s for s, e in a)


def overlap(a: Sequence[Interval], lo: int, hi: int) -> int:
    """Length of ``a`` (normalised) inside ``[lo, hi)``."""
    return total(clip(a, lo, hi))


def split_by(a: Sequence[Interval], lo: int, hi: int, step: int) -> list[int]:
    """Length of ``a`` (normalised) in each bucket ``[lo + k*step, lo + (k+1)*step)`` up to
    ``hi`` (the last bucket may be shorter). Linear in ``len(a)`` plus the bucket count."""
    if hi <= lo:
        return []
    n = (hi - lo + step - 1) // step
    out = [0] * n
    for s, e in a:
        s, e = max(s, lo), min(e, hi)
        while s < e:
            k = (s - lo) // step
            bucket_end = min(lo + (k + 1) * step, hi)
            piece_end = min(e, bucket_end)
            out[k] += piece_end - s
            s = piece_end
    return out
