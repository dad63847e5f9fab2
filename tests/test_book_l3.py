"""L3 book against Kraken's level3 docs vector, the gocryptotrader update vectors and edge cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from recorder.book.checkpoint import decode_checkpoint, encode_checkpoint
from recorder.book.l3 import L3Book, OrderView
from recorder.protocol.errors import BookError
from recorder.protocol.numbers import NumToken

_DECODER = msgspec.json.Decoder(float_hook=str)


class Order(msgspec.Struct, frozen=True):
    order_id: str
    limit_price: NumToken
    order_qty: NumToken
    event: str | None = None
    ts_ns: int | None = None


class Item(msgspec.Struct):
    symbol: str
    bids: list[Order]
    asks: list[Order]
    checksum: int | None = None


def orders(raw: list[dict[str, Any]]) -> list[Order]:
    return [Order(o["order_id"], o["limit_price"], o["order_qty"], o.get("event")) for o in raw]


def item(msg: dict[str, Any]) -> Item:
    data = msg["data"][0]
    return Item(data["symbol"], orders(data["bids"]), orders(data["asks"]), data["checksum"])


def docs_vector(fixture_file: Any) -> dict[str, Any]:
    doc = json.loads(Path(fixture_file("checksum_vectors/l3_checksum_vectors.json")).read_text())
    return next(v for v in doc["vectors"] if v["id"] == "l3_docs_btcusd_snapshot")


def gocryptotrader_messages(fixture_file: Any) -> list[tuple[str, Item]]:
    lines = Path(fixture_file("gocryptotrader/wsLevel3.json")).read_bytes().splitlines()
    msgs = [_DECODER.decode(line) for line in lines if line.strip()]
    return [(m["type"], item(m)) for m in msgs]


# ---------------------------------------------------------------------- vectors


@pytest.mark.fixtures
def test_docs_snapshot_checksum_and_input_strings(fixture_file: Any) -> None:
    vector = docs_vector(fixture_file)
    book = L3Book("BTC/USD", 10, vector["price_precision"], vector["qty_precision"])
    bids, asks = orders(vector["bids_fifo"]), orders(vector["asks_fifo"])
    result = book.snapshot(bids, asks, vector["expected_checksum"])
    assert result.match is True and result.computed == 1063832831
    assert len(book) == 35
    # checksum input = every order of the top 10 levels in queue order
    def text(side: str) -> str:
        top = {p for p, _ in book.levels(side, 10)}  # type: ignore[arg-type]
        side_orders = book.orders(side)  # type: ignore[arg-type]
        return "".join(f"{o.price}{o.qty}" for o in side_orders if o.price in top)

    assert text("ask") == vector["expected_checksum_input_asks"]
    assert text("bid") == vector["expected_checksum_input_bids"]


@pytest.mark.fixtures
def test_gocryptotrader_update_vectors(fixture_file: Any) -> None:
    messages = gocryptotrader_messages(fixture_file)
    book = L3Book("BTC/USD", 10, 1, 8)
    results = [book.apply(kind, data) for kind, data in messages]
    assert [r.computed for r in results] == [1063832831, 4214623937, 1052444130, 800786314]
    assert all(r.match for r in results)
    assert not any(r.crossed for r in results)
    # the last update adds a bid level above the book: the 11th bid level leaves the window
    assert results[3].truncated == 1


@pytest.mark.fixtures
def test_doctored_snapshot_and_update_mismatch(fixture_file: Any) -> None:
    messages = gocryptotrader_messages(fixture_file)
    _, snap = messages[0]
    dropped = Item(snap.symbol, snap.bids[:3] + snap.bids[4:], snap.asks, snap.checksum)
    assert L3Book("BTC/USD", 10, 1, 8).apply("snapshot", dropped).match is False
    # swapping two orders of one level keeps the aggregate book but breaks the queue order
    bids = [snap.bids[1], snap.bids[0], *snap.bids[2:]]
    swapped = Item(snap.symbol, bids, snap.asks, snap.checksum)
    assert L3Book("BTC/USD", 10, 1, 8).apply("snapshot", swapped).match is False

    book = L3Book("BTC/USD", 10, 1, 8)
    book.apply("snapshot", snap)
    _, upd = messages[2]
    result = book.apply("update", Item(upd.symbol, upd.bids, upd.asks[1:], upd.checksum))
    assert result.match is False and book.mismatches == 1


@pytest.mark.fixtures
def test_checkpoint_round_trip_on_vectors(fixture_file: Any) -> None:
    messages = gocryptotrader_messages(fixture_file)
    book = L3Book("BTC/USD", 10, 1, 8)
    book.apply(*messages[0])
    for fmt in ("msgpack", "json"):
        raw = encode_checkpoint(book.checkpoint(), fmt)  # type: ignore[arg-type]
        cp = decode_checkpoint(raw, fmt)  # type: ignore[arg-type]
        restored = L3Book.restore(cp)  # type: ignore[arg-type]
        assert list(restored.orders()) == list(book.orders())
        assert restored.checksum() == book.checksum()
        assert [restored.apply(k, d).match for k, d in messages[1:]] == [True, True, True]


# ---------------------------------------------------------------------- semantics


def add(oid: str, price: str, qty: str, ts: int | None = None) -> Order:
    return Order(oid, price, qty, "add", ts)


def modify(oid: str, price: str, qty: str, ts: int | None = None) -> Order:
    return Order(oid, price, qty, "modify", ts)


def delete(oid: str, price: str, qty: str = "0") -> Order:
    return Order(oid, price, qty, "delete")


def snap_order(oid: str, price: str, qty: str, ts: int | None = None) -> Order:
    return Order(oid, price, qty, None, ts)


def small_book(depth: int = 10) -> L3Book:
    book = L3Book("X/Y", depth, 1, 2)
    book.snapshot(
        [snap_order("b1", "9.0", "1", 1), snap_order("b2", "9.0", "2", 2),
         snap_order("b3", "8.0", "3", 3)],
        [snap_order("a1", "10.0", "1", 4), snap_order("a2", "10.0", "2", 5),
         snap_order("a3", "11.0", "3", 6)],
    )
    return book


def ids(book: L3Book, side: str) -> list[str]:
    return [o.order_id for o in book.orders(side)]  # type: ignore[arg-type]


def test_add_goes_to_back_and_same_price_modify_keeps_position() -> None:
    book = small_book()
    book.update([add("b4", "9.0", "4", 7)], [modify("a1", "10.0", "0.5", 8)])
    assert ids(book, "bid") == ["b1", "b2", "b4", "b3"]
    assert ids(book, "ask") == ["a1", "a2", "a3"]
    assert book.order("a1") == OrderView("a1", "ask", 100, 50, 8)
    assert book.best_ask() == (100, 250)
    assert book.levels("bid") == [(90, 700), (80, 300)]


def test_price_changing_modify_requeues_and_is_counted() -> None:
    book = small_book()
    result = book.update([modify("b1", "8.0", "1")], [])
    assert result.requeued == 1 and book.requeued == 1
    assert ids(book, "bid") == ["b2", "b3", "b1"]
    assert book.order("b1") == OrderView("b1", "bid", 80, 100, 1)  # timestamp kept when absent


def test_modify_to_zero_removes_and_drops_empty_level() -> None:
    book = small_book()
    book.update([modify("b3", "8.0", "0")], [])
    assert book.level_count("bid") == 1 and "b3" not in book


def test_duplicate_add_replaces_stale_copy_and_is_counted() -> None:
    book = small_book()
    result = book.update([add("b1", "9.0", "1.5", 9)], [])
    assert result.duplicate_adds == 1
    assert ids(book, "bid") == ["b2", "b1", "b3"]
    assert len(book) == 6


def test_unknown_ids_are_tolerated_and_counted() -> None:
    book = small_book()
    result = book.update([delete("zz", "9.0")], [modify("new", "12.0", "1")])
    assert result.unknown_deletes == 1 and result.unknown_modifies == 1
    assert ids(book, "ask") == ["a1", "a2", "a3", "new"]
    assert (book.unknown_deletes, book.unknown_modifies) == (1, 1)


def test_delete_empties_level_and_truncation_readd_semantics() -> None:
    book = small_book(depth=2)
    assert book.level_count("ask") == 2
    # a better ask level enters: 11.0 leaves the window silently
    result = book.update([], [add("a4", "9.5", "1", 10)])
    assert result.truncated == 1 and "a3" not in book
    assert book.levels("ask") == [(95, 100), (100, 300)]
    # when 9.5 goes, Kraken re-sends 11.0's orders as adds with their old timestamps
    result = book.update([], [delete("a4", "9.5"), add("a3", "11.0", "3", 6)])
    assert result.duplicate_adds == 0 and result.truncated == 0
    assert book.order("a3") == OrderView("a3", "ask", 110, 300, 6)
    assert book.level_count("ask") == 2


def test_crossed_is_reported() -> None:
    book = small_book()
    result = book.update([add("x", "10.0", "1")], [])
    assert result.crossed and not result.ok and book.is_crossed()


def test_timestamps_survive_checkpoint() -> None:
    book = small_book()
    cp = decode_checkpoint(encode_checkpoint(book.checkpoint(), "json"), "json")
    restored = L3Book.restore(cp)  # type: ignore[arg-type]
    assert [o.ts_ns for o in restored.orders()] == [4, 5, 6, 1, 2, 3]


def test_misuse_raises() -> None:
    book = L3Book("X/Y", 10, 1, 2)
    with pytest.raises(BookError):
        book.update([], [])
    with pytest.raises(BookError):
        book.apply("snapshot", Item("Z/Y", [], []))
    with pytest.raises(BookError):
        L3Book("X/Y", 10, None, 2)  # type: ignore[arg-type]
    book = small_book()
    with pytest.raises(BookError):
        book.update([Order("b1", "9.0", "1", "amend")], [])
    assert not book.ready
    with pytest.raises(BookError):
        book.update([], [])
    with pytest.raises(BookError):
        book.checkpoint()


def test_restore_rejects_impossible_checkpoints() -> None:
    cp = small_book().checkpoint()
    from recorder.book.checkpoint import L3Checkpoint, L3OrderState

    bad_order = L3Checkpoint(cp.symbol, cp.depth, 1, 2, [*cp.bids, cp.bids[0]], cp.asks)
    with pytest.raises(BookError):
        L3Book.restore(bad_order)  # duplicate id / level reappearing
    unsorted = L3Checkpoint(cp.symbol, cp.depth, 1, 2, list(reversed(cp.bids)), cp.asks)
    with pytest.raises(BookError):
        L3Book.restore(unsorted)
    too_deep = L3Checkpoint(cp.symbol, 1, 1, 2, cp.bids, cp.asks)
    with pytest.raises(BookError):
        L3Book.restore(too_deep)
    bad_qty = L3Checkpoint(cp.symbol, cp.depth, 1, 2, [L3OrderState("q", "9.0", "0.00")], [])
    with pytest.raises(BookError):
        L3Book.restore(bad_qty)


@pytest.mark.parametrize("token", ["1", "1.5", "0.00000001", 7, "1E-8", "5.", ".5", "+5", " 5",
                                   "1_0", "\u0661", "1.000000001", "1" * 41])
def test_quantity_spellings_scale_as_to_units(token: NumToken) -> None:
    from recorder.protocol.errors import NumberError
    from recorder.protocol.numbers import to_units

    try:
        expected: int | None = to_units(token, 8)
    except NumberError:
        expected = None
    book = L3Book("X/Y", 10, 1, 8)
    book.snapshot([Order("B1", "10.0", "1")], [Order("A1", "11.0", "1")])
    update = [Order("B2", "10.0", token, "add", 5)]
    if expected is None:
        with pytest.raises(NumberError):
            book.update(update, [])
        assert not book.ready
        return
    book.update(update, [])
    assert book.order("B2") == OrderView("B2", "bid", 100, expected, 5)
    assert [o.order_id for o in book.orders("bid")] == ["B1", "B2"]  # appended at the back


def test_anomaly_counts_are_per_message_and_cumulative() -> None:
    book = small_book()
    first = book.update([delete("zz", "9.0")], [modify("new", "12.0", "1")])
    assert (first.unknown_deletes, first.unknown_modifies) == (1, 1)
    clean = book.update([], [modify("new", "12.0", "2")])
    assert (clean.requeued, clean.duplicate_adds, clean.unknown_modifies,
            clean.unknown_deletes) == (0, 0, 0, 0)
    units = book.apply_units("update", [(3, "zz2", 0, 0, None)], [(1, "new", 120, 3, None)], None)
    assert (units.unknown_deletes, units.duplicate_adds) == (1, 1)
    again = book.apply_units("update", [], [], None)
    assert (again.unknown_deletes, again.duplicate_adds) == (0, 0)
    assert (book.unknown_deletes, book.unknown_modifies, book.duplicate_adds) == (2, 1, 1)


def test_failed_update_leaves_no_anomaly_for_the_next_snapshot() -> None:
    book = small_book()
    with pytest.raises(BookError):
        book.update([delete("zz", "9.0"), Order("x", "9.0", "1", "bogus")], [])
    snap = book.snapshot([Order("b1", "9.0", "1")], [Order("a1", "11.0", "1")])
    assert (snap.unknown_deletes, snap.unknown_modifies) == (0, 0)


def test_rows_parse_a_deletes_numbers_only_when_recording() -> None:
    """Recording, every entry is appended (deletes included) and a delete's price is parsed,
    so a malformed one raises; without rows a delete is applied by order id alone."""
    from recorder.protocol.errors import NumberError

    def run(rows: Any) -> Any:
        book = L3Book("X/Y", 10, 1, 8)
        book.snapshot([Order("A", "1.0", "1")], [Order("B", "9.0", "1")])
        update = Item("X/Y", [Order("A", "1.0", "1", "delete", 5),
                              Order("A", "x", "1", "delete", 6)], [])
        return book.apply("update", update, rows)

    rows: Any = ([], [], [], [], [], [])
    with pytest.raises(NumberError):
        run(rows)
    assert rows == ([5], [3], [0], ["A"], [10], [100_000_000])
    assert run(None).unknown_deletes == 1
