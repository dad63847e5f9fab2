"""Times relative to the recorded data (``recorder book --at end-30s``) and Polars durations."""

from __future__ import annotations

import pytest

from recorder.query.timeparse import duration_ns, parse_anchored


@pytest.mark.parametrize("text,ns", [("30s", 30_000_000_000), ("1m30s", 90_000_000_000),
                                     ("500ms", 500_000_000), ("2h", 7_200_000_000_000),
                                     ("1d", 86_400_000_000_000), ("7ns", 7), ("3us", 3_000)])
def test_durations(text: str, ns: int) -> None:
    assert duration_ns(text) == ns


@pytest.mark.parametrize("text", ["", "30", "s", "1x", "1m 30s", "-1s", "1.5s", "1s30"])
def test_bad_durations_name_themselves(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        duration_ns(text)


def test_anchors_resolve_against_the_recorded_range() -> None:
    start, end = 1_000_000_000_000, 2_000_000_000_000
    assert parse_anchored("start").resolve(start, end) == start  # type: ignore[union-attr]
    assert parse_anchored("end").resolve(start, end) == end  # type: ignore[union-attr]
    assert parse_anchored("end-1m").resolve(start, end) == end - 60_000_000_000  # type: ignore[union-attr]
    assert parse_anchored("start + 10s").resolve(start, end) == start + 10_000_000_000  # type: ignore[union-attr]
    assert parse_anchored("2026-01-01T00:00:00Z") is None
    assert parse_anchored("1735689600000000000") is None
    with pytest.raises(ValueError):
        parse_anchored("end-soon")
