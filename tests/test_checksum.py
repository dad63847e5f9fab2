"""The CRC32 primitive against Kraken's published worked example."""

from __future__ import annotations

import zlib

from recorder.protocol.checksum import checksum_of_levels, crc_of_pieces

BIDS = [("45283.5", "0.10000000"), ("45283.4", "1.54582015"), ("45282.1", "0.10000000"),
        ("45281.0", "0.10000000"), ("45280.3", "1.54592586"), ("45279.0", "0.07990000"),
        ("45277.6", "0.03310103"), ("45277.5", "0.30000000"), ("45277.3", "1.54602737"),
        ("45276.6", "0.15445238")]
ASKS = [("45285.2", "0.00100000"), ("45286.4", "1.54571953"), ("45286.6", "1.54571109"),
        ("45289.6", "1.54560911"), ("45290.2", "0.15890660"), ("45291.8", "1.54553491"),
        ("45294.7", "0.04454749"), ("45296.1", "0.35380000"), ("45297.5", "0.09945542"),
        ("45299.5", "0.18772827")]


def test_docs_btcusd_vector() -> None:
    assert checksum_of_levels(ASKS, BIDS, 1, 8) == 3310070434


def test_trimmed_floats_hash_at_precision() -> None:
    trimmed = [(p, q.rstrip("0")) for p, q in ASKS]
    assert checksum_of_levels(trimmed, BIDS, 1, 8) == 3310070434


def test_crc_of_pieces_is_crc_of_concatenation() -> None:
    assert crc_of_pieces(["ab", "c"], ["de"]) == zlib.crc32(b"abcde")
    assert zlib.crc32(b"123456789") == 0xCBF43926
