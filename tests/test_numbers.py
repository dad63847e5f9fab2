"""Exact number tokens -> scaled integer units and back."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.protocol.errors import NumberError
from recorder.protocol.numbers import (
    checksum_piece,
    decimals_of,
    to_units,
    token_to_text,
    units_to_text,
)


@pytest.mark.parametrize(
    ("token", "precision", "units"),
    [
        ("0.00010000", 8, 10000),
        ("1E-8", 8, 1),
        ("1e-08", 8, 1),
        ("0.2997598", 8, 29975980),
        ("29430.2", 1, 294302),
        ("29431.0", 1, 294310),
        (4, 8, 400000000),
        ("4.0", 8, 400000000),
        ("0.50", 2, 50),
        ("-0.00017", 5, -17),
        ("1.5E+3", 0, 1500),
        ("123456789012.12345678", 8, 12345678901212345678),
        ("0.10000000000", 8, 10000000),
    ],
)
def test_to_units_exact(token: str | int, precision: int, units: int) -> None:
    assert to_units(token, precision) == units


@pytest.mark.parametrize(
    "token",
    ["0.123456789", "1E-9", "", "abc", "1_000", " 1", "1.", "--1", "0x10", "1e999999999", "9" * 80,
     1.5, True, None, "NaN", "Infinity", "\uff11\uff12", "1.\u0665", "\u0661E-8"],
)
def test_to_units_rejects(token: object) -> None:
    with pytest.raises(NumberError):
        to_units(token, 8)  # type: ignore[arg-type]


def test_units_to_text_keeps_precision() -> None:
    assert units_to_text(10000, 8) == "0.00010000"
    assert units_to_text(294302, 1) == "29430.2"
    assert units_to_text(-17, 5) == "-0.00017"
    assert units_to_text(42, 0) == "42"


def test_token_to_text_and_decimals() -> None:
    assert token_to_text("1E-8") == "0.00000001"
    assert token_to_text("0.00010000") == "0.00010000"
    assert token_to_text(7) == "7"
    assert decimals_of("0.00010000") == 8
    assert decimals_of("1E-8") == 8
    assert decimals_of(3) == 0


def test_checksum_piece_is_stripped_full_precision_text() -> None:
    for text, precision in [("0.00100000", 8), ("45285.2", 1), ("0.5657", 4)]:
        expected = text.replace(".", "").lstrip("0")
        assert checksum_piece(to_units(text, precision)) == expected


@given(st.decimals(min_value=Decimal("-1e20"), max_value=Decimal("1e20"), places=8,
                   allow_nan=False, allow_infinity=False), st.integers(min_value=8, max_value=12))
def test_roundtrip_property(value: Decimal, precision: int) -> None:
    token = json.dumps(float(0)) if value == 0 else format(value, "f")
    units = to_units(token, precision)
    assert Decimal(units_to_text(units, precision)) == Decimal(token)
