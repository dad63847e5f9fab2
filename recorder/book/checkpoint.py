"""Lossless, serialisable checkpoints of spot L2 and L3 books.

A checkpoint holds everything a book needs to continue exactly as before: symbol, subscribed
depth, precisions and every level (L3: every order in queue order, with its id and timestamp).
Values are stored as exact decimal *text* at the pair's precision (``"29430.2"``,
``"0.00011621"``), not as scaled ints: text is readable in JSON and has no integer-width limit
(msgpack cannot hold ints above 2**64, which a large quantity at 18 decimals can exceed).

Checkpoints are tagged msgspec Structs; :func:`encode_checkpoint` / :func:`decode_checkpoint`
turn them into msgpack or JSON bytes and back. ``L2Book.restore`` / ``L3Book.restore`` validate
the content (ordering, depth, positive quantities, unique order ids) and raise
:class:`~recorder.protocol.errors.BookError` on anything a book could not have produced.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import msgspec

from recorder.protocol.errors import BookError, NumberError
from recorder.protocol.numbers import to_units, units_to_text

__all__ = [
    "L2Checkpoint",
    "L3OrderState",
    "L3Checkpoint",
    "Checkpoint",
    "encode_checkpoint",
    "decode_checkpoint",
    "levels_to_text",
    "validate_l2",
    "validate_l3",
]


class L2Checkpoint(msgspec.Struct, frozen=True, tag="l2", forbid_unknown_fields=True):
    """State of an L2 book. Levels are ``(price, qty)`` exact text, best first per side."""

    symbol: str
    depth: int
    price_precision: int | None
    qty_precision: int | None
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


class L3OrderState(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """One resting order: id, exact price and quantity text, timestamp (int ns or ``None``)."""

    order_id: str
    price: str
    qty: str
    ts_ns: int | None = None


class L3Checkpoint(msgspec.Struct, frozen=True, tag="l3", forbid_unknown_fields=True):
    """State of an L3 book: per side, orders of the best level first, each level in queue order."""

    symbol: str
    depth: int
    price_precision: int
    qty_precision: int
    bids: list[L3OrderState]
    asks: list[L3OrderState]


#: Either kind of checkpoint (tagged union for decoding).
Checkpoint = L2Checkpoint | L3Checkpoint

_JSON_DECODER = msgspec.json.Decoder(Checkpoint)
_MSGPACK_DECODER = msgspec.msgpack.Decoder(Checkpoint)


def encode_checkpoint(cp: Checkpoint, fmt: Literal["msgpack", "json"] = "msgpack") -> bytes:
    """Serialise a checkpoint to msgpack (default) or JSON bytes."""
    if fmt == "msgpack":
        return msgspec.msgpack.encode(cp)
    if fmt == "json":
        return msgspec.json.encode(cp)
    raise ValueError(f"unknown checkpoint format {fmt!r}")


def decode_checkpoint(raw: bytes, fmt: Literal["msgpack", "json"] = "msgpack") -> Checkpoint:
    """Parse bytes made by :func:`encode_checkpoint`.

    Raises ``msgspec.ValidationError`` / ``msgspec.DecodeError`` on malformed input.
    """
    if fmt == "msgpack":
        return _MSGPACK_DECODER.decode(raw)
    if fmt == "json":
        return _JSON_DECODER.decode(raw)
    raise ValueError(f"unknown checkpoint format {fmt!r}")


def levels_to_text(
    levels: Iterable[tuple[int, int]], price_precision: int | None, qty_precision: int | None
) -> list[tuple[str, str]]:
    """Render ``(price_units, qty_units)`` pairs as exact text at the given precisions."""
    out = []
    for price, qty in levels:
        if price_precision is None or qty_precision is None:
            raise BookError("cannot render levels before the precision is known")
        out.append((units_to_text(price, price_precision), units_to_text(qty, qty_precision)))
    return out


def _units(text: str, precision: int | None, what: str) -> int:
    if precision is None:
        raise BookError(f"checkpoint has a {what} but no {what} precision")
    try:
        return to_units(text, precision)
    except NumberError as exc:
        raise BookError(f"bad checkpoint {what} {text!r}: {exc}") from exc


def _check_header(depth: object) -> None:
    if type(depth) is not int or depth < 1:
        raise BookError(f"checkpoint depth must be a positive int, got {depth!r}")


def validate_l2(cp: L2Checkpoint) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Parse and validate an L2 checkpoint; returns ``(bids, asks)`` as units, best first."""
    _check_header(cp.depth)
    sides = []
    for name, levels, sign in (("bids", cp.bids, -1), ("asks", cp.asks, 1)):
        if len(levels) > cp.depth:
            raise BookError(f"checkpoint {name}: {len(levels)} levels exceed depth {cp.depth}")
        parsed = []
        last_key: int | None = None
        for price_text, qty_text in levels:
            price = _units(price_text, cp.price_precision, "price")
            qty = _units(qty_text, cp.qty_precision, "qty")
            if price <= 0 or qty <= 0:
                raise BookError(f"checkpoint {name}: non-positive level {price_text}/{qty_text}")
            key = price * sign
            if last_key is not None and key <= last_key:
                raise BookError(f"checkpoint {name}: levels not best-first at {price_text}")
            last_key = key
            parsed.append((price, qty))
        sides.append(parsed)
    return sides[0], sides[1]


def validate_l3(
    cp: L3Checkpoint,
) -> tuple[list[tuple[str, int, int, int | None]], list[tuple[str, int, int, int | None]]]:
    """Parse and validate an L3 checkpoint; returns per side ``(order_id, price, qty, ts_ns)``.

    Orders of one price level must be contiguous (queue order), levels strictly best-first,
    at most ``depth`` levels per side, quantities positive, order ids unique across sides.
    """
    _check_header(cp.depth)
    seen: set[str] = set()
    sides = []
    for name, orders, sign in (("bids", cp.bids, -1), ("asks", cp.asks, 1)):
        parsed = []
        last_key: int | None = None
        level_count = 0
        for order in orders:
            price = _units(order.price, cp.price_precision, "price")
            qty = _units(order.qty, cp.qty_precision, "qty")
            if price <= 0 or qty <= 0:
                raise BookError(f"checkpoint {name}: non-positive order {order.order_id}")
            if order.order_id in seen:
                raise BookError(f"checkpoint: duplicate order id {order.order_id}")
            seen.add(order.order_id)
            key = price * sign
            if key != last_key:
                if last_key is not None and key < last_key:
                    raise BookError(f"checkpoint {name}: levels not best-first at {order.price}")
                level_count += 1
                last_key = key
            parsed.append((order.order_id, price, qty, order.ts_ns))
        if level_count > cp.depth:
            raise BookError(f"checkpoint {name}: {level_count} levels exceed depth {cp.depth}")
        sides.append(parsed)
    return sides[0], sides[1]
