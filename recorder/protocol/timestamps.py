"""Kraken timestamps to integer nanoseconds since the Unix epoch, exactly.

Kraken mixes clocks: Spot v2 sends RFC3339 strings with 6 or 9 fractional digits, Spot v1 and
REST send epoch seconds as decimal text (``"1534614248.456738"``) or JSON numbers
(``1762795433.9717445``), REST Level3 and ``Trades.last`` use integer nanoseconds, Futures uses
integer milliseconds on WS and ISO 8601 with milliseconds on REST. ``datetime`` keeps only
microseconds, so parsing here is done on the text and never through ``float``.
"""

from __future__ import annotations

import calendar
import functools
import re
from typing import Final

from recorder.protocol.errors import TimestampError

__all__ = [
    "INT64_MAX",
    "rfc3339_to_ns",
    "epoch_seconds_to_ns",
    "epoch_ms_to_ns",
    "ns_to_rfc3339",
    "kraken_second_ns",
]

INT64_MAX: Final = 2**63 - 1
_NS_PER_S: Final = 1_000_000_000
_RFC3339: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?(Z|[+-]00:?00)?"
)
_EPOCH_SECONDS: Final = re.compile(r"([0-9]{1,12})(?:\.([0-9]{0,18}))?")
_PAD: Final = ("000000000", "00000000", "0000000", "000000", "00000", "0000", "000", "00", "0", "")


def rfc3339_to_ns(text: str) -> int:
    """``"2023-10-06T17:35:00.279389650Z"`` -> ``1696613700279389650``.

    Accepts 0-9 fractional digits, a ``Z`` or ``+00:00`` suffix (or none: UTC is assumed, as on
    Futures REST). Raises :class:`TimestampError` for anything else.

    Kraken's own layout (``YYYY-MM-DDTHH:MM:SS.fffffffffZ``, 1-9 fractional digits) takes a fast
    path: the whole-second prefix is validated once and memoised, only the fraction is parsed
    per call. Every other spelling goes through the full validating parser.
    """
    if type(text) is str:
        size = len(text)
        if 21 < size < 31 and text[-1] == "Z" and text[19] == ".":
            frac = text[20:-1]
            if frac.isdigit() and frac.isascii():
                ns = kraken_second_ns(text[:19]) + int(frac) * _FRACTION_SCALE[len(frac)]
                return _checked(ns, text)  # the second is in range, its fraction may not be
    return _rfc3339_to_ns_full(text)


_FRACTION_SCALE: Final = (0, 10**8, 10**7, 10**6, 10**5, 10**4, 10**3, 100, 10, 1)


@functools.lru_cache(maxsize=8192)
def kraken_second_ns(prefix: str) -> int:
    """ns at a whole second given as ``YYYY-MM-DDTHH:MM:SS`` (validated; memoised).

    The building block of the fast paths: a caller that has checked the rest of Kraken's
    layout (``.`` at index 19, ASCII digits, ``Z``) adds the fraction itself. Raises
    :class:`TimestampError` when the prefix is not a valid UTC second.
    """
    return _rfc3339_to_ns_full(prefix + "Z")


def _rfc3339_to_ns_full(text: str) -> int:
    """The validating parser behind :func:`rfc3339_to_ns`."""
    if type(text) is not str or len(text) > 40:
        raise TimestampError(f"not an RFC3339 timestamp: {str(text)[:48]!r}")
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise TimestampError(f"not an RFC3339 timestamp: {text!r}")
    year, month, day, hour, minute, second, frac, _zone = match.groups()
    month_i, day_i, hour_i, minute_i, second_i = (int(month), int(day), int(hour), int(minute),
                                                  int(second))
    if not (1 <= month_i <= 12 and 1 <= day_i <= 31 and hour_i <= 23 and minute_i <= 59
            and second_i <= 60):
        raise TimestampError(f"timestamp field out of range: {text!r}")
    if day_i > calendar.monthrange(int(year), month_i)[1]:
        raise TimestampError(f"no such day: {text!r}")
    seconds = calendar.timegm((int(year), month_i, day_i, hour_i, minute_i, second_i, 0, 0, 0))
    nanos = int(frac + _PAD[len(frac)]) if frac else 0
    return _checked(seconds * _NS_PER_S + nanos, text)


def epoch_seconds_to_ns(token: str | int) -> int:
    """Epoch seconds as decimal text or JSON token (``"1534614248.456738"``) -> int ns.

    Digits beyond nanoseconds are truncated (Kraken REST ``Trades`` times carry 7 decimals).
    """
    if type(token) is int:
        return _checked(token * _NS_PER_S, token)
    if type(token) is not str:
        raise TimestampError(f"not epoch seconds: {token!r}")
    match = _EPOCH_SECONDS.fullmatch(token)
    if match is None:
        raise TimestampError(f"not epoch seconds: {token[:48]!r}")
    whole, frac = match.groups()
    frac = (frac or "")[:9]
    return _checked(int(whole) * _NS_PER_S + (int(frac + _PAD[len(frac)]) if frac else 0), token)


def epoch_ms_to_ns(value: int) -> int:
    """Epoch milliseconds (Futures WS ``timestamp``/``time``) -> int ns."""
    if type(value) is not int:
        raise TimestampError(f"epoch milliseconds must be an integer, got {value!r}")
    return _checked(value * 1_000_000, value)


def ns_to_rfc3339(ns: int, digits: int = 9) -> str:
    """Render int ns as RFC3339 UTC with ``digits`` fractional digits (the sim's wire format)."""
    seconds, nanos = divmod(ns, _NS_PER_S)
    year, month, day, hour, minute, second = _gmtime(seconds)
    base = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    if digits <= 0:
        return base + "Z"
    return f"{base}.{nanos:09d}"[: len(base) + 1 + digits] + "Z"


def _gmtime(seconds: int) -> tuple[int, int, int, int, int, int]:
    import time

    st = time.gmtime(seconds)
    return st.tm_year, st.tm_mon, st.tm_mday, st.tm_hour, st.tm_min, st.tm_sec


def _checked(ns: int, source: object) -> int:
    if not 0 <= ns <= INT64_MAX:
        raise TimestampError(f"timestamp out of int64 ns range: {str(source)[:48]!r}")
    return ns
