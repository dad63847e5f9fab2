"""Times as researchers type them -> int nanoseconds since the Unix epoch (UTC).

Accepted: ``int`` (already ns), a string of digits (ns), an ISO-8601 / RFC 3339 string with up
to 9 fractional digits (``"2025-01-01T00:00:01.5Z"``, ``"2025-01-01 00:00:01.123456789"``;
no offset = UTC), a :class:`datetime.datetime` (naive = UTC), a :class:`datetime.date`
(midnight UTC). Nanoseconds are never lost to float rounding.

Anything else raises ``ValueError`` with a message of our own naming the bad part (``month 13
is not in 1..12``, ``day 45 is not in 1..31 for 2026-01``); results outside the int64
nanosecond range (years 1678..2262) are refused too (an ``int`` is passed through as is).
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from typing import Final

__all__ = ["TimeLike", "to_ns", "ns_to_iso", "Anchored", "parse_anchored", "duration_ns"]

TimeLike = int | str | dt.datetime | dt.date

_ISO: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?"
)
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_INT64: Final = (-(2**63), 2**63 - 1)
_FORMS: Final = "ISO 8601 such as 2025-01-01T12:00:00Z, or integer ns since 1970"


def _in_range(ns: int, value: object) -> int:
    if not _INT64[0] <= ns <= _INT64[1]:
        raise ValueError(f"{value!r} is outside the representable range (int64 ns: years "
                         f"1678..2262)")
    return ns


def _check_fields(y: int, mo: int, d: int, h: int, mi: int, s: int) -> None:
    """Our own message for each out-of-range field (not the datetime library's)."""
    if not 1 <= mo <= 12:
        raise ValueError(f"month {mo} is not in 1..12")
    last = calendar.monthrange(y, mo)[1] if 1 <= y <= 9999 else 31
    if not 1 <= d <= last:
        raise ValueError(f"day {d} is not in 1..{last} for {y:04d}-{mo:02d}")
    if h > 23:
        raise ValueError(f"hour {h} is not in 0..23")
    if mi > 59:
        raise ValueError(f"minute {mi} is not in 0..59")
    if s > 59:
        raise ValueError(f"second {s} is not in 0..59")


def to_ns(value: TimeLike) -> int:
    """Convert ``value`` to int ns since the Unix epoch (UTC); raises ``ValueError``."""
    if isinstance(value, bool):
        raise ValueError("a bool is not a time")
    if isinstance(value, int):
        return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    if isinstance(value, dt.date):
        return to_ns(dt.datetime(value.year, value.month, value.day))
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isascii() and text.lstrip("-").isdigit():
            if len(text) > 20:
                raise ValueError(f"{value!r} is outside the representable range (int64 ns)")
            return _in_range(int(text), value)
        m = _ISO.fullmatch(text)
        if m is None:
            raise ValueError(f"not a time: {value!r} (expected {_FORMS})")
        y, mo, d, h, mi, s, frac, tz = m.groups()
        fields = (int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0))
        _check_fields(*fields)
        if tz and tz != "Z" and (int(tz[1:3]) > 23 or int(tz[-2:]) > 59):
            raise ValueError(f"offset {tz} is not a valid UTC offset")
        if fields[0] < 1:
            raise ValueError(f"year {fields[0]} is outside the representable range")
        base = dt.datetime(*fields, tzinfo=dt.timezone.utc)
        ns = to_ns(base) + int((frac or "").ljust(9, "0") or 0)
        if tz and tz != "Z":
            sign = 1 if tz[0] == "+" else -1
            hh, mm = int(tz[1:3]), int(tz[-2:])
            ns -= sign * (hh * 3600 + mm * 60) * 1_000_000_000
        return _in_range(ns, value)
    raise ValueError(f"not a time: {value!r} ({type(value).__name__})")


def ns_to_iso(ns: int) -> str:
    """``2025-01-01T00:00:01.123456789Z`` (always 9 fractional digits)."""
    sec, frac = divmod(ns, 1_000_000_000)
    base = (_EPOCH + dt.timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z"


#: Polars-style duration units (``"1m"`` is a minute, as in ``group_by_dynamic``).
_UNITS: Final = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
                 "m": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000,
                 "w": 604_800_000_000_000}
_DURATION: Final = re.compile(r"(\d+)(ns|us|ms|s|m|h|d|w)")
_ANCHORED: Final = re.compile(r"(start|end)\s*(?:([+-])\s*(\S+))?")


def duration_ns(text: str) -> int:
    """A Polars-style duration (``"30s"``, ``"1m30s"``, ``"500ms"``, ``"2h"``, ``"1d"``,
    ``"1w"``) in ns; raises ``ValueError`` naming the bad part.

        >>> duration_ns("1m30s"), duration_ns("500ms")
        (90000000000, 500000000)
    """
    spec = text.strip()
    pos, total = 0, 0
    for m in _DURATION.finditer(spec):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(spec) or not spec:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 30s, 1m30s, 500ms, 2h, 1d, "
                         f"1w)")
    return total


class Anchored:
    """A time relative to the recorded data: ``start``/``end`` plus or minus a duration."""

    __slots__ = ("anchor", "offset_ns")

    def __init__(self, anchor: str, offset_ns: int) -> None:
        self.anchor = anchor
        self.offset_ns = offset_ns

    def resolve(self, start_ns: int, end_ns: int) -> int:
        """The time in ns, given the recorded data's first and last instants."""
        return (start_ns if self.anchor == "start" else end_ns) + self.offset_ns

    def __repr__(self) -> str:
        return f"Anchored({self.anchor!r}, {self.offset_ns})"


def parse_anchored(text: str) -> Anchored | None:
    """``"start"``, ``"end"``, ``"start+10s"``, ``"end-1m"`` as :class:`Anchored`; None when
    ``text`` is not of that form (an absolute time); ``ValueError`` for a bad duration."""
    m = _ANCHORED.fullmatch(text.strip())
    if m is None:
        return None
    anchor, sign, spec = m.groups()
    offset = 0 if spec is None else duration_ns(spec) * (1 if sign == "+" else -1)
    return Anchored(anchor, offset)
