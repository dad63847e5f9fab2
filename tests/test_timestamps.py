"""Kraken clocks -> int64 nanoseconds, exactly."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.protocol.errors import TimestampError
from recorder.protocol.timestamps import (
    epoch_ms_to_ns,
    epoch_seconds_to_ns,
    ns_to_rfc3339,
    rfc3339_to_ns,
)


def test_rfc3339_nanoseconds() -> None:
    assert rfc3339_to_ns("2023-10-06T17:35:00.279389650Z") == 1696613700279389650
    assert rfc3339_to_ns("2023-10-06T17:35:55.440295Z") == 1696613755440295000
    assert rfc3339_to_ns("2025-11-11T00:17:10Z") == 1762820230000000000
    assert rfc3339_to_ns("2016-02-26T12:09:38.830Z") == 1456488578830000000
    assert rfc3339_to_ns("2016-02-26T12:09:38.830+00:00") == 1456488578830000000


@pytest.mark.parametrize(
    "text",
    ["", "2023-13-01T00:00:00Z", "2023-02-30T00:00:00Z", "2023-10-06T17:35:00.1234567890Z",
     "2023-10-06 garbage", "2023-10-06T25:00:00Z", "1969-12-31T23:59:59Z", "2023-10-06T17:35:00+05:00",
     "\uff12023-10-06T17:35:00Z", "2023-10-06T17:35:00.\u0661Z"],
)
def test_rfc3339_rejects(text: str) -> None:
    with pytest.raises(TimestampError):
        rfc3339_to_ns(text)


def test_epoch_forms() -> None:
    assert epoch_seconds_to_ns("1534614248.456738") == 1534614248456738000
    assert epoch_seconds_to_ns("1762795433.9717445") == 1762795433971744500
    assert epoch_seconds_to_ns(1548119951) == 1548119951000000000
    assert epoch_ms_to_ns(1612269825817) == 1612269825817000000
    with pytest.raises(TimestampError):
        epoch_seconds_to_ns("1e9")
    with pytest.raises(TimestampError):
        epoch_seconds_to_ns("\u0661534614248")
    with pytest.raises(TimestampError):
        epoch_ms_to_ns(1.5)  # type: ignore[arg-type]
    with pytest.raises(TimestampError):
        epoch_ms_to_ns(10**20)


@given(st.integers(min_value=0, max_value=4102444800 * 10**9))
def test_rfc3339_roundtrip(ns: int) -> None:
    assert rfc3339_to_ns(ns_to_rfc3339(ns)) == ns


def test_agrees_with_datetime() -> None:
    text = "2024-02-29T23:59:59.999999Z"
    dt = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=timezone.utc)
    assert rfc3339_to_ns(text) == int(dt.timestamp()) * 10**9 + 999999000


@given(st.integers(min_value=0, max_value=4102444800 * 10**9), st.integers(min_value=1, max_value=9))
def test_fast_path_agrees_with_full_parser(ns: int, digits: int) -> None:
    from recorder.protocol.timestamps import _rfc3339_to_ns_full

    text = ns_to_rfc3339(ns, digits)
    assert rfc3339_to_ns(text) == _rfc3339_to_ns_full(text)


@pytest.mark.parametrize("text", ["2023-10-06T17:35:00.27938965aZ", "2023-10-06T17:35:00.Z",
                                  "2023-10-06T17:35:0x.123Z", "2023-02-30T00:00:00.5Z",
                                  "2023-10-06T17:35:00.\uff11Z",
                                  "2262-04-11T23:47:16.854775808Z", "2262-04-11T23:47:16.9Z"])
def test_fast_path_still_rejects(text: str) -> None:
    with pytest.raises(TimestampError):
        rfc3339_to_ns(text)


def test_last_int64_nanosecond_is_accepted_by_the_fast_path() -> None:
    """The whole second 2262-04-11T23:47:16 is in range; its fraction decides."""
    assert rfc3339_to_ns("2262-04-11T23:47:16.854775807Z") == 2**63 - 1
