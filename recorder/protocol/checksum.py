"""Kraken's CRC32 book checksum, from cached per-level pieces.

Kraken hashes the top 10 ask levels (price ascending) then the top 10 bid levels (price
descending); each level contributes ``price`` then ``qty`` at the pair's full precision with the
``.`` removed and leading zeros stripped (level3: every order of the level in queue order).
The CRC is the standard CRC-32 (``zlib.crc32``), unsigned.

Books keep one *piece* per level (or per order) and only rebuild it when that level changes, so
an update costs one join and one CRC instead of re-formatting 40 numbers.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Final

from recorder.protocol.numbers import NumToken, checksum_piece, to_units

__all__ = ["CHECKSUM_LEVELS", "level_piece", "crc_of_pieces", "checksum_of_levels"]

#: Price levels per side that Kraken hashes, whatever the subscribed depth.
CHECKSUM_LEVELS: Final = 10


def level_piece(price_units: int, qty_units: int) -> str:
    """The checksum text of one level (L2) or one order (L3) given its scaled values."""
    return checksum_piece(price_units) + checksum_piece(qty_units)


def crc_of_pieces(ask_pieces: Iterable[str], bid_pieces: Iterable[str]) -> int:
    """CRC32 of the concatenated ask pieces followed by the bid pieces."""
    return zlib.crc32("".join(bid_pieces).encode("ascii"), zlib.crc32("".join(ask_pieces).encode("ascii")))


def checksum_of_levels(
    asks: Iterable[tuple[NumToken, NumToken]],
    bids: Iterable[tuple[NumToken, NumToken]],
    price_precision: int,
    qty_precision: int,
) -> int:
    """Checksum of books given as (price, qty) tokens, best first, already truncated to 10.

    A convenience for tests, the simulator and REST evidence; live books use cached pieces.
    """
    return crc_of_pieces(
        (level_piece(to_units(p, price_precision), to_units(q, qty_precision)) for p, q in asks),
        (level_piece(to_units(p, price_precision), to_units(q, qty_precision)) for p, q in bids),
    )
