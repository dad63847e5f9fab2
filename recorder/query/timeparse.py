"""Times as researchers type them -> int nanoseconds since the Unix epoch (UTC).

Accepted: ``int`` (already ns), a string of digits (ns), an ISO-8601 / RFC 3339 string with up
to 9 fractional digits (``"2025-01-01T00:00:01.5Z"``, ``"2025-01-01 00:00:01.123456789"``;
no offset = UTC), a :class:`datetime.datetime` (naive = UTC), a :class:`datetime.date`
(midnight UTC). Nanoseconds are never lost to float rounding.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

__all__ = ["TimeLike", "to_ns", "ns_to_iso"]

TimeLike = int | str | dt.datetime | dt.date

_ISO: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?"
)
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


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
        if text.lstrip("-").isdigit():
            return int(text)
        m = _ISO.fullmatch(text)
        if m is None:
            raise ValueError(f"not a time: {value!r}")
        y, mo, d, h, mi, s, frac, tz = m.groups()
        base = dt.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0),
                           tzinfo=dt.timezone.utc)
        ns = to_ns(base) + int((frac or "").ljust(9, "0") or 0)
        if tz and tz != "Z":
            sign = 1 if tz[0] == "+" else -1
            hh, mm = int(tz[1:3]), int(tz[-2:])
            ns -= sign * (hh * 3600 + mm * 60) * 1_000_000_000
        return ns
    raise ValueError(f"not a time: {value!r} ({type(value).__name__})")


def ns_to_iso(ns: int) -> str:
    """``2025-01-01T00:00:01.123456789Z`` (always 9 fractional digits)."""
    sec, frac = divmod(ns, 1_000_000_000)
    base = (_EPOCH + dt.timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z"
