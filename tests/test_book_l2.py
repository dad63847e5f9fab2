"""L2 book against Kraken's published v2 vectors and a real v2 capture (read in place)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import pytest

from recorder.book.checkpoint import decode_checkpoint, encode_checkpoint
from recorder.book.l2 import L2Book
from recorder.protocol.errors import BookError, NumberError
from recorder.protocol.numbers import NumToken

_DECODER = msgspec.json.Decoder(float_hook=str)  # non-integers -> exact JSON text, ints stay int


class Lv(NamedTuple):
    price: NumToken
    qty: NumToken


class Item(msgspec.Struct):
    symbol: str
    bids: list[Lv]
    asks: list[Lv]
    checksum: int | None = None


def levels(raw: list[Any]) -> list[Lv]:
    """v2 ``{"price", "qty"}`` objects or the vectors' ``[price, qty, ...]`` arrays -> Lv."""
    return [Lv(x["price"], x["qty"]) if isinstance(x, dict) else Lv(x[0], x[1]) for x in raw]


def v2_item(msg: dict[str, Any]) -> Item:
    data = msg["data"][0]
    return Item(data["symbol"], levels(data["bids"]), levels(data["asks"]), data.get("checksum"))


def load_vectors(fixture_file: Any) -> dict[str, dict[str, Any]]:
    path = fixture_file("checksum_vectors/book_checksum_vectors.json")
    return {v["id"]: v for v in json.loads(Path(path).read_text())["vectors"]}


def vector_book(vector: dict[str, Any], depth: int = 10) -> tuple[L2Book, Any]:
    pp, qp = vector.get("price_precision"), vector.get("qty_precision")
    book = L2Book(vector["pair"] or "?", depth, pp, qp)
    bids, asks = levels(vector["bids"]), levels(vector["asks"])
    result = book.snapshot(bids, asks, vector["expected_checksum"])
    return book, result


# ---------------------------------------------------------------------- published vectors


@pytest.mark.fixtures
def test_docs_btcusd_snapshot_and_checksum_input(fixture_file: Any) -> None:
    vector = load_vectors(fixture_file)["v2_docs_btcusd_snapshot"]
    book, result = vector_book(vector)
    assert result.match is True and result.computed == 3310070434
    assert not result.crossed
    asks = "".join(f"{p}{q}" for p, q in book.levels("ask", 10))
    bids = "".join(f"{p}{q}" for p, q in book.levels("bid", 10))
    assert asks == vector["expected_checksum_input_asks"]
    assert bids == vector["expected_checksum_input_bids"]


@pytest.mark.fixtures
def test_trimmed_tokens_hash_at_pair_precision(fixture_file: Any) -> None:
    """Doc examples print trimmed floats (``0.566``); units at the precision still match."""
    vector = load_vectors(fixture_file)["v2_docs_btcusd_snapshot"]
    trim = [[p, q.rstrip("0")] for p, q, *_ in vector["bids"]]
    book = L2Book("BTC/USD", 10, 1, 8)
    result = book.snapshot(levels(trim), levels(vector["asks"]), 3310070434)
    assert result.match is True


@pytest.mark.fixtures
def test_docs_maticusd_snapshot_then_update(fixture_file: Any) -> None:
    vectors = load_vectors(fixture_file)
    book, result = vector_book(vectors["v2_docs_maticusd_snapshot"])
    assert result.match is True and result.computed == 2439117997
    update = vectors["v2_docs_maticusd_update"]
    change = update["update"]
    result = book.update(levels(change["bids"]), levels(change["asks"]), 2114181697)
    assert result.match is True
    assert result.truncated == 0 and result.absent_removals == 0  # 0.5657 is a quantity change
    assert book.levels("bid")[9] == (5657, 109839475580)
    assert book.level_count("bid") == 10


@pytest.mark.fixtures
def test_gstusd_snapshot(fixture_file: Any) -> None:
    book, result = vector_book(load_vectors(fixture_file)["v2_gstusd_snapshot"])
    assert result.match is True and result.computed == 1931231958


# ---------------------------------------------------------------------- real v2 capture


def load_v2_capture(fixture_file: Any) -> tuple[Item, list[Item]]:
    raw = Path(fixture_file("python-kraken-sdk/orderbook-v2.json")).read_bytes()
    doc = _DECODER.decode(raw)
    return v2_item(doc["init"]), [v2_item(m) for m in doc["updates"]]


@pytest.mark.fixtures
def test_v2_capture_every_checksum_reproduces(fixture_file: Any) -> None:
    init, updates = load_v2_capture(fixture_file)
    assert len(updates) == 509
    book = L2Book("BTC/USD", 10, 1, 8)
    results = [book.apply("snapshot", init)] + [book.apply("update", u) for u in updates]
    assert sum(r.match is True for r in results) == 510
    assert book.mismatches == 0 and book.messages == 510
    assert not any(r.crossed for r in results)
    assert results[1].truncated == 1  # first update leaves 11 asks
    assert len(book) == 20


@pytest.mark.fixtures
def test_doctored_messages_mismatch(fixture_file: Any) -> None:
    init, updates = load_v2_capture(fixture_file)
    dropped = Item(init.symbol, init.bids[1:], init.asks, init.checksum)
    assert L2Book("BTC/USD", 10, 1, 8).apply("snapshot", dropped).match is False

    book = L2Book("BTC/USD", 10, 1, 8)
    book.apply("snapshot", init)
    # the third update inserts a bid inside the top 10; drop that level
    update = updates[2]
    assert update.bids and not update.asks
    doctored = Item(update.symbol, update.bids[1:], update.asks, update.checksum)
    result = book.apply("update", doctored)
    assert result.match is False and not result.ok
    assert book.mismatches == 1


@pytest.mark.fixtures
def test_checkpoint_midstream_continues_identically(fixture_file: Any) -> None:
    init, updates = load_v2_capture(fixture_file)
    book = L2Book("BTC/USD", 10, 1, 8)
    book.apply("snapshot", init)
    for update in updates[:200]:
        book.apply("update", update)
    for fmt in ("msgpack", "json"):
        raw = encode_checkpoint(book.checkpoint(), fmt)  # type: ignore[arg-type]
        cp = decode_checkpoint(raw, fmt)  # type: ignore[arg-type]
        assert cp == book.checkpoint()
        restored = L2Book.restore(cp)  # type: ignore[arg-type]
        assert restored.checksum() == book.checksum()
        assert restored.levels("bid") == book.levels("bid")
        assert all(restored.apply("update", u).match for u in updates[200:])


# ---------------------------------------------------------------------- behaviour and misuse


def lv(price: str, qty: str) -> Lv:
    return Lv(price, qty)


def test_update_before_snapshot_and_wrong_symbol_raise() -> None:
    book = L2Book("BTC/USD", 10, 1, 8)
    with pytest.raises(BookError):
        book.update([lv("1.0", "1.0")], [])
    with pytest.raises(BookError):
        book.apply("snapshot", Item("ETH/USD", [], []))
    with pytest.raises(BookError):
        book.apply("heartbeat", Item("BTC/USD", [], []))
    with pytest.raises(BookError):
        L2Book("BTC/USD", 0, 1, 8)
    with pytest.raises(BookError):
        L2Book("BTC/USD", 10, -1, 8)
    with pytest.raises(BookError):  # precisions are required (no inference inside the book)
        L2Book("BTC/USD", 10, None, 8)  # type: ignore[arg-type]
    with pytest.raises(BookError):
        L2Book("BTC/USD", 10, 1, None)  # type: ignore[arg-type]
    with pytest.raises(BookError):
        book.checkpoint()


def test_bad_token_invalidates_until_next_snapshot() -> None:
    book = L2Book("X/Y", 10, 1, 8)
    book.snapshot([lv("10.0", "1")], [lv("11.0", "1")])
    with pytest.raises(NumberError):
        book.update([lv("10.05", "1")], [])  # more decimals than the pair's precision
    assert not book.ready
    with pytest.raises(BookError):
        book.update([], [])
    with pytest.raises(BookError):
        book.snapshot([lv("10.0", "-1")], [])  # negative quantity
    assert not book.ready
    assert book.snapshot([lv("10.0", "1")], []).match is None
    assert book.ready


def test_levels_in_array_order_absent_removals_and_accessors() -> None:
    book = L2Book("X/Y", 10, 2, 3)
    book.snapshot([lv("9.00", "1"), lv("9.50", "2")], [lv("10.00", "3"), lv("10.50", "4")])
    assert book.best_bid() == (950, 2000) and book.best_ask() == (1000, 3000)
    result = book.update(
        # the same price twice, then a delete of an absent price
        [lv("9.50", "0"), lv("9.50", "5.5"), lv("8.00", "0")],
        [lv("10.00", "0")],
    )
    assert result.absent_removals == 1 and book.absent_removals == 1
    assert book.levels("bid") == [(950, 5500), (900, 1000)]
    assert book.levels("ask", 1) == [(1050, 4000)]
    assert len(book) == 3
    with pytest.raises(BookError):
        book.levels("buy")  # type: ignore[arg-type]


def test_truncation_to_depth_without_deletes() -> None:
    book = L2Book("X/Y", 3, 1, 0)
    book.snapshot(
        [lv(p, "1") for p in ("10.0", "9.0", "8.0")], [lv(p, "1") for p in ("11.0", "12.0", "13.0")]
    )
    result = book.update([], [lv("10.5", "2")])  # 13.0 falls out of the window, no delete sent
    assert result.truncated == 1 and book.truncated_levels == 1
    assert book.levels("ask") == [(105, 2), (110, 1), (120, 1)]
    result = book.update([], [lv("10.5", "0")])
    assert book.levels("ask") == [(110, 1), (120, 1)]  # 13.0 is not remembered
    result = book.update([], [lv("13.0", "1")])  # Kraken re-sends the level entering the window
    assert result.truncated == 0
    assert book.levels("ask") == [(110, 1), (120, 1), (130, 1)]


def test_crossed_book_is_reported_not_raised() -> None:
    book = L2Book("X/Y", 10, 1, 1)
    assert not book.snapshot([lv("10.0", "1")], [lv("10.1", "1")]).crossed
    result = book.update([lv("10.1", "1")], [])
    assert result.crossed and not result.ok and book.is_crossed()
    assert book.crossed_messages == 1
    assert not book.update([lv("10.1", "0")], []).crossed


def test_change_at_tenth_level_only_is_hashed() -> None:
    """Edits confined to the 10th-best level (the edge of the checksum window) change the CRC."""
    from recorder.protocol.checksum import checksum_of_levels

    book = L2Book("X/Y", 12, 0, 0)
    asks = {p: 1 for p in range(100, 112)}
    bids = {p: 1 for p in range(50, 62)}
    book.snapshot([lv(str(p), "1") for p in bids], [lv(str(p), "1") for p in asks])
    for side, price, qty in [("ask", 109, 5), ("bid", 52, 0), ("bid", 51, 7), ("ask", 109, 0)]:
        (asks if side == "ask" else bids)[price] = qty
        if not qty:
            del (asks if side == "ask" else bids)[price]
        levels_ = [lv(str(price), str(qty))]
        result = book.update(levels_ if side == "bid" else [], levels_ if side == "ask" else [])
        expected = checksum_of_levels(
            sorted(asks.items())[:10], sorted(bids.items(), reverse=True)[:10], 0, 0
        )
        assert result.computed == expected


# Quantity spellings an update meets: each one is scaled as ``to_units`` scales it (plain forms
# give the same units), a bad one raises NumberError and invalidates the book.
_QTY_SPELLINGS = ["1", "1.5", "0.00000001", "12.50000000", "7", 7, "1E-8", "1.000000000",
                  "5.", ".5", "+5", " 5", "1_0", "-1", "\u0661", "1.5\u0661", "", ".", "abc",
                  "1.000000001", "1" * 39, "1" * 41]


@pytest.mark.parametrize("token", _QTY_SPELLINGS)
def test_quantity_spellings_scale_as_to_units(token: NumToken) -> None:
    from recorder.protocol.numbers import to_units

    try:
        expected: int | None = to_units(token, 8)
    except NumberError:
        expected = None
    book = L2Book("X/Y", 10, 1, 8)
    book.snapshot([lv("10.0", "1")], [lv("11.0", "1")])
    if expected is None:
        with pytest.raises(NumberError):
            book.update([lv("9.0", token)], [])
        assert not book.ready
        return
    if expected < 0:
        with pytest.raises(BookError):
            book.update([], [lv("12.0", token)])
        return
    book.update([], [lv("12.0", token)])
    assert book.levels("ask") == ([(110, 100_000_000), (120, expected)] if expected
                                  else [(110, 100_000_000)])


def test_rows_are_recorded_as_applied_and_stop_at_the_level_that_raises() -> None:
    """``apply(..., rows)`` appends each level as (side, price units, qty units), bids then
    asks in array order; a level that raises is not recorded, the ones before it are."""
    book = L2Book("X/Y", 10, 1, 8)
    book.snapshot([lv("1.0", "1")], [lv("9.0", "1")])
    rows: tuple[list[int], list[int], list[int]] = ([], [], [])
    book.apply("update", Item("X/Y", [lv("2.0", "0.5"), lv("1.0", "0")], [lv("8.5", "2")]), rows)
    assert rows == ([0, 0, 1], [20, 10, 85], [50_000_000, 0, 200_000_000])
    rows = ([], [], [])
    with pytest.raises(NumberError):
        book.apply("update", Item("X/Y", [lv("2.0", "1"), lv("2.0", "1.5.0")], []), rows)
    assert rows == ([0], [20], [100_000_000])
