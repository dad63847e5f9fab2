"""Exact decimal numbers as Kraken sends them.

Kraken's v2 WebSocket sends prices and quantities as JSON numbers carrying the engine's full
precision (``0.00010000``, ``1E-8``); v1 and REST send decimal strings. A float would lose
digits, so decoders keep every number as a *token*: the exact JSON text for non-integers
(``str``) or a Python ``int`` for JSON integers. Nothing here ever goes through ``float``.

Books and row builders turn tokens into *units*: the value scaled by ``10**precision`` to an
``int``, where the precision comes from the pair's recorded instrument data. ``str(units)`` is
exactly the piece Kraken's CRC32 checksum hashes (the value at full precision with the ``.``
removed and leading zeros stripped).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Final, TypeAlias

from recorder.protocol.errors import NumberError

__all__ = [
    "NumToken",
    "MAX_DIGITS",
    "MAX_PRECISION",
    "to_units",
    "units_to_text",
    "token_to_text",
    "decimals_of",
    "checksum_piece",
]

#: A number exactly as it appeared on the wire: JSON text (``str``) or a JSON integer (``int``).
NumToken: TypeAlias = "str | int"

#: Tokens with more significant digits than this are absurd and rejected (Decimal128 holds 38).
MAX_DIGITS: Final = 38
#: Largest supported decimal precision (Kraken uses at most 10 for assets).
MAX_PRECISION: Final = 18

_POW10: Final = tuple(10**i for i in range(MAX_DIGITS + MAX_PRECISION + 2))
_PLAIN: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_ANY_NUMBER: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


def to_units(token: NumToken, precision: int) -> int:
    """Return ``token * 10**precision`` as an exact ``int``.

    ``token`` is a JSON number token or a decimal string (``"0.00010000"``, ``"1E-8"``, ``42``).
    Trailing zeros beyond ``precision`` are accepted; any non-zero digit beyond it raises
    :class:`NumberError`, as do malformed text, booleans, floats and absurdly long numbers.
    """
    if type(token) is int:
        if -_POW10[MAX_DIGITS] < token < _POW10[MAX_DIGITS]:
            return token * _POW10[precision]
        raise NumberError(f"number out of range: {token!r}")
    if type(token) is not str:
        raise NumberError(f"not a number token: {token!r}")
    if len(token) <= MAX_DIGITS + 2 and _PLAIN.fullmatch(token) is not None:
        whole, _, frac = token.partition(".")
        excess = len(frac) - precision
        if excess <= 0:
            return int(whole + frac) * _POW10[-excess]
        if frac[precision:].strip("0"):
            raise NumberError(f"{token!r} has more than {precision} decimals")
        return int(whole + frac[:precision])
    return _to_units_slow(token, precision)


def _to_units_slow(token: str, precision: int) -> int:
    """Exponent notation and other valid-but-unusual spellings, validated strictly."""
    if len(token) > 2 * MAX_DIGITS or _ANY_NUMBER.fullmatch(token) is None:
        raise NumberError(f"malformed number: {token[:64]!r}")
    try:
        value = Decimal(token)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid text
        raise NumberError(f"malformed number: {token[:64]!r}") from exc
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if exponent > MAX_DIGITS or exponent < -(MAX_DIGITS + MAX_PRECISION):
        raise NumberError(f"number out of range: {token[:64]!r}")
    scaled = value.scaleb(precision)
    integral = scaled.to_integral_value()
    if scaled != integral:
        raise NumberError(f"{token!r} has more than {precision} decimals")
    units = int(integral)
    if abs(units) >= _POW10[MAX_DIGITS + precision]:
        raise NumberError(f"number out of range: {token[:64]!r}")
    return units


def units_to_text(units: int, precision: int) -> str:
    """Render units as plain decimal text with exactly ``precision`` decimals (``"0.00010000"``)."""
    if precision == 0:
        return str(units)
    digits = str(-units if units < 0 else units).rjust(precision + 1, "0")
    text = f"{digits[:-precision]}.{digits[-precision:]}"
    return "-" + text if units < 0 else text


def token_to_text(token: NumToken) -> str:
    """Exact plain decimal text of a token, without exponent (``"1E-8"`` -> ``"0.00000001"``).

    Trailing zeros of the token are kept (they are part of what Kraken sent).
    """
    if type(token) is int:
        return str(token)
    if type(token) is str and _PLAIN.fullmatch(token) is not None:
        return token
    if type(token) is not str or _ANY_NUMBER.fullmatch(token) is None or len(token) > 2 * MAX_DIGITS:
        raise NumberError(f"malformed number: {str(token)[:64]!r}")
    try:
        value = Decimal(token)
    except ArithmeticError:  # an exponent beyond the decimal context's range
        raise NumberError(f"number out of range: {token[:64]!r}") from None
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent > MAX_DIGITS or exponent < -(MAX_DIGITS + MAX_PRECISION):
        raise NumberError(f"number out of range: {token[:64]!r}")
    return format(value, "f")


def decimals_of(token: NumToken) -> int:
    """Number of decimals the token is written with (``"0.00010000"`` -> 8, ``"1E-8"`` -> 8)."""
    text = token_to_text(token)
    _, dot, frac = text.partition(".")
    return len(frac) if dot else 0


def checksum_piece(units: int) -> str:
    """The text Kraken's CRC32 hashes for one value: full-precision digits, no dot, no leading 0s."""
    return str(units) if units else ""
