"""The books' hot ``apply`` paths against their plain twins and against books rebuilt from scratch.

``L2Book.apply`` / ``L3Book.apply`` inline the level updates, the truncation, the token memos
(prices and quantities) and the checksum with its reuse when no top-10 level changed. The same
messages through ``apply_units`` (the uninlined per-level code, units converted by
``to_units``) must give equal results and equal books, and after every message the computed
checksum must be the one of a fresh book snapshotted from the current levels.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.book.l2 import L2Book
from recorder.book.l3 import L3Book
from recorder.protocol.errors import BookError, NumberError
from recorder.protocol.numbers import NumToken, units_to_text
from tests.test_book_l3 import Order

SETTINGS = settings(deadline=None, max_examples=120)
PP = 1
QP = 8


class Lv(NamedTuple):
    price: NumToken
    qty: NumToken


class L2Item(NamedTuple):
    symbol: str
    bids: list[Lv]
    asks: list[Lv]
    checksum: int | None


class L3Item(NamedTuple):
    symbol: str
    bids: list[Order]
    asks: list[Order]
    checksum: int | None


def spell(units: int, precision: int, style: int) -> NumToken:
    """Three exact spellings of the same value: full precision, trimmed, or a JSON integer."""
    text = units_to_text(units, precision)
    if style == 0:
        return text
    trimmed = text.rstrip("0").rstrip(".") if "." in text else text
    if style == 1 or "." in trimmed:
        return trimmed
    return int(trimmed)


# ---------------------------------------------------------------------- L2


@st.composite
def l2_streams(draw: Any) -> dict[str, Any]:
    depth = draw(st.sampled_from([1, 3, 10, 11, 14, 40]))
    # a small pool of quantities (so the qty memo hits, zero included) plus arbitrary ones
    qty = st.sampled_from([0, 0, 1, 10_000, 123_456_789]) | st.integers(0, 10**10)
    bid = st.tuples(st.just(0), st.integers(1, 60), qty, st.integers(0, 2), st.integers(0, 2))
    ask = st.tuples(st.just(1), st.integers(61, 120), qty, st.integers(0, 2), st.integers(0, 2))
    one = bid | ask
    return {
        "depth": depth,
        "snapshot": draw(st.lists(one, min_size=0, max_size=80)),
        "updates": draw(st.lists(st.lists(one, max_size=5), max_size=40)),
    }


def _l2_tokens(levels: list[Any], side: int) -> list[Lv]:
    return [Lv(spell(p, PP, sp), spell(q, QP, sq)) for s, p, q, sp, sq in levels if s == side]


def _l2_units(levels: list[Any], side: int) -> list[tuple[int, int]]:
    return [(p, q) for s, p, q, _, _ in levels if s == side]


def _fresh_l2(book: L2Book) -> L2Book:
    """A new book snapshotted from ``book``'s levels (checksum computed from scratch)."""
    fresh = L2Book(book.symbol, book.depth, PP, QP)
    fresh.snapshot(
        [Lv(units_to_text(p, PP), units_to_text(q, QP)) for p, q in book.levels("bid")],
        [Lv(units_to_text(p, PP), units_to_text(q, QP)) for p, q in book.levels("ask")],
    )
    return fresh


@SETTINGS
@given(l2_streams())
def test_l2_apply_equals_apply_units_and_a_fresh_book(stream: dict[str, Any]) -> None:
    hot = L2Book("X/Y", stream["depth"], PP, QP)
    plain = L2Book("X/Y", stream["depth"], PP, QP)
    for index, levels in enumerate([stream["snapshot"], *stream["updates"]]):
        kind = "snapshot" if index == 0 else "update"
        expected = plain.apply_units(kind, _l2_units(levels, 0), _l2_units(levels, 1), None)
        item = L2Item("X/Y", _l2_tokens(levels, 0), _l2_tokens(levels, 1), expected.computed)
        result = hot.apply(kind, item)
        assert result.match is True
        assert result.computed == expected.computed
        assert result.crossed == expected.crossed
        assert result.absent_removals == expected.absent_removals
        assert result.truncated == expected.truncated
        assert hot.levels("bid") == plain.levels("bid")
        assert hot.levels("ask") == plain.levels("ask")
        fresh = _fresh_l2(hot)
        assert fresh.checksum() == result.computed == hot.checksum()
        assert fresh.is_crossed() == result.crossed
    assert hot.truncated_levels == plain.truncated_levels
    assert hot.absent_removals == plain.absent_removals
    assert len(hot._prices) <= hot._cache_max and len(hot._qtys) <= hot._cache_max


@SETTINGS
@given(l2_streams())
def test_l2_apply_records_every_level_as_a_row(stream: dict[str, Any]) -> None:
    """With ``rows``, ``apply`` appends each level (bids, then asks, in array order) as
    (side, price units, qty units), and the book and results are those of ``apply`` alone."""
    hot = L2Book("X/Y", stream["depth"], PP, QP)
    recording = L2Book("X/Y", stream["depth"], PP, QP)
    rows: tuple[list[int], list[int], list[int]] = ([], [], [])
    expected_rows: list[tuple[int, int, int]] = []
    for index, levels in enumerate([stream["snapshot"], *stream["updates"]]):
        kind = "snapshot" if index == 0 else "update"
        item = L2Item("X/Y", _l2_tokens(levels, 0), _l2_tokens(levels, 1), None)
        assert recording.apply(kind, item, rows) == hot.apply(kind, item)
        expected_rows += [(s, p, q) for s, p, q, _, _ in levels if s == 0]
        expected_rows += [(s, p, q) for s, p, q, _, _ in levels if s == 1]
        assert list(zip(*rows, strict=True)) == expected_rows
        assert recording.levels("bid") == hot.levels("bid")
        assert recording.levels("ask") == hot.levels("ask")


def test_l2_rows_stop_at_the_level_that_raises() -> None:
    book = L2Book("X/Y", 10, PP, QP)
    book.snapshot([Lv("1.0", "1")], [Lv("9.0", "1")])
    rows: tuple[list[int], list[int], list[int]] = ([], [], [])
    with pytest.raises(NumberError):
        book.apply("update", L2Item("X/Y", [Lv("2.0", "1"), Lv("2.0", "1.5.0")], [], None), rows)
    assert rows == ([0], [20], [100_000_000])


def test_l2_deep_updates_reuse_the_checksum_and_refill_the_top() -> None:
    """Updates below the top 10 leave the checksum as it was; deleting a top level pulls the
    11th in with a piece built from its quantity."""
    book = L2Book("X/Y", 1000, PP, QP)
    asks = [Lv(units_to_text(1000 + i, PP), "0.5") for i in range(30)]
    bids = [Lv(units_to_text(999 - i, PP), "0.25") for i in range(30)]
    first = book.snapshot(bids, asks).computed
    for i in range(15, 30):
        assert book.update([Lv(units_to_text(999 - i, PP), "0.75")], []).computed == first
        assert book.update([], [Lv(units_to_text(1000 + i, PP), "0.0")]).computed == first
    result = book.update([], [Lv(units_to_text(1003, PP), "0")])  # the 11th ask moves in
    assert result.computed == _fresh_l2(book).checksum() != first
    result = book.update([Lv(units_to_text(999, PP), "0.00000000")], [])
    assert result.computed == _fresh_l2(book).checksum()


@pytest.mark.parametrize("token", [True, False, 1.0, None, b"1", "1", 1])
def test_l2_memos_never_alias_other_token_types(token: Any) -> None:
    """Only text tokens are memoised: after ``"1"`` and ``1`` went through the memos, a bool or
    float spelling still fails (or succeeds) exactly as on a fresh book."""

    def run(book: L2Book) -> Any:
        try:
            return book.update([Lv("5.0", token)], [Lv(token, "1")])
        except (NumberError, BookError) as exc:
            return type(exc), str(exc)

    primed = L2Book("X/Y", 10, PP, QP)
    primed.snapshot([Lv("1", "1"), Lv(1, 1)], [Lv("20.0", "1")])
    primed.update([Lv("2", "1"), Lv("1", "1")], [Lv("1", "1"), Lv(2, 1)])  # crossed, fine
    primed.snapshot([Lv("4.0", "1")], [Lv("20.0", "1")])
    fresh = L2Book("X/Y", 10, PP, QP)
    fresh.snapshot([Lv("4.0", "1")], [Lv("20.0", "1")])
    outcome = run(primed)
    assert outcome == run(fresh)
    if token in ("1", 1):
        assert primed.levels("bid") == fresh.levels("bid")


def test_l2_memos_are_bounded() -> None:
    book = L2Book("X/Y", 10, PP, QP)
    book.snapshot([Lv("1.0", "1")], [Lv("1000.0", "1")])
    for i in range(3 * book._cache_max):
        book.update([Lv(units_to_text(2 + i % 900, PP), units_to_text(i + 1, QP))], [])
        assert len(book._prices) <= book._cache_max
        assert len(book._qtys) <= book._cache_max
    assert book.checksum() == _fresh_l2(book).checksum()


# ---------------------------------------------------------------------- L3

_EVENT_CODES = {"add": 1, "modify": 2, "delete": 3}


@st.composite
def l3_streams(draw: Any) -> dict[str, Any]:
    depth = draw(st.sampled_from([1, 3, 10, 12, 30]))
    oid = st.sampled_from([f"O{i}" for i in range(48)])
    qty = st.sampled_from([0, 1, 10_000, 500_000_000]) | st.integers(0, 10**10)
    ts = st.none() | st.integers(0, 2**62)

    def event(side: int, kinds: list[str]) -> Any:
        prices = st.integers(1, 40) if side == 0 else st.integers(41, 80)
        return st.tuples(st.just(side), st.sampled_from(kinds), oid, prices, qty, ts,
                         st.integers(0, 2), st.integers(0, 2))

    kinds = ["add", "add", "modify", "delete"]
    return {
        "depth": depth,
        "snapshot": draw(st.lists(event(0, ["add"]) | event(1, ["add"]), max_size=80)),
        "updates": draw(st.lists(st.lists(event(0, kinds) | event(1, kinds), max_size=5),
                                 max_size=40)),
    }


def _l3_orders(events: list[Any], side: int, snapshot: bool) -> list[Order]:
    return [Order(o, spell(p, PP, sp), spell(q, QP, sq), None if snapshot else k, ts)
            for s, k, o, p, q, ts, sp, sq in events if s == side]


def _l3_units(events: list[Any], side: int) -> list[tuple[int, str, int, int, int | None]]:
    return [(_EVENT_CODES[k], o, p, q, ts) for s, k, o, p, q, ts, _, _ in events if s == side]


def _fresh_l3(book: L3Book) -> L3Book:
    fresh = L3Book(book.symbol, book.depth, PP, QP)
    fresh.snapshot(
        [Order(o.order_id, units_to_text(o.price, PP), units_to_text(o.qty, QP), None, o.ts_ns)
         for o in book.orders("bid")],
        [Order(o.order_id, units_to_text(o.price, PP), units_to_text(o.qty, QP), None, o.ts_ns)
         for o in book.orders("ask")],
    )
    return fresh


@SETTINGS
@given(l3_streams())
def test_l3_apply_equals_apply_units_and_a_fresh_book(stream: dict[str, Any]) -> None:
    hot = L3Book("X/Y", stream["depth"], PP, QP)
    plain = L3Book("X/Y", stream["depth"], PP, QP)
    for index, events in enumerate([stream["snapshot"], *stream["updates"]]):
        snapshot = index == 0
        kind = "snapshot" if snapshot else "update"
        expected = plain.apply_units(kind, _l3_units(events, 0), _l3_units(events, 1), None)
        item = L3Item("X/Y", _l3_orders(events, 0, snapshot), _l3_orders(events, 1, snapshot),
                      expected.computed)
        result = hot.apply(kind, item)
        assert result == msgspec.structs.replace(expected, expected=expected.computed,
                                                 match=True)
        assert list(hot.orders()) == list(plain.orders())
        fresh = _fresh_l3(hot)
        assert fresh.checksum() == result.computed == hot.checksum()
        assert fresh.is_crossed() == result.crossed
    for counter in ("requeued", "duplicate_adds", "unknown_modifies", "unknown_deletes",
                    "truncated_levels", "crossed_messages"):
        assert getattr(hot, counter) == getattr(plain, counter), counter
    assert len(hot._prices) <= hot._cache_max and len(hot._qtys) <= hot._cache_max


@SETTINGS
@given(l3_streams())
def test_l3_apply_records_every_event_as_a_row(stream: dict[str, Any]) -> None:
    """With ``rows``, ``apply`` appends each entry (bids, then asks, in array order; deletes
    included) as (ts_ns, event code, side, order id, price units, qty units), event code 0 in
    a snapshot, and the book and results are those of ``apply`` alone."""
    hot = L3Book("X/Y", stream["depth"], PP, QP)
    recording = L3Book("X/Y", stream["depth"], PP, QP)
    rows: Any = ([], [], [], [], [], [])
    expected_rows: list[tuple[Any, ...]] = []
    for index, events in enumerate([stream["snapshot"], *stream["updates"]]):
        snapshot = index == 0
        kind = "snapshot" if snapshot else "update"
        item = L3Item("X/Y", _l3_orders(events, 0, snapshot), _l3_orders(events, 1, snapshot),
                      None)
        assert recording.apply(kind, item, rows) == hot.apply(kind, item)
        for side in (0, 1):
            expected_rows += [(ts, 0 if snapshot else _EVENT_CODES[k], s, o, p, q)
                              for s, k, o, p, q, ts, _, _ in events if s == side]
        assert list(zip(*rows, strict=True)) == expected_rows
        assert list(recording.orders()) == list(hot.orders())
    for counter in ("requeued", "duplicate_adds", "unknown_modifies", "unknown_deletes"):
        assert getattr(recording, counter) == getattr(hot, counter), counter


def test_l3_rows_parse_a_deletes_numbers() -> None:
    """Recording, a delete's price is parsed, so a malformed one raises; without rows a delete
    is applied by order id alone."""
    def run(rows: Any) -> Any:
        book = L3Book("X/Y", 10, PP, QP)
        book.snapshot([Order("A", "1.0", "1")], [Order("B", "9.0", "1")])
        item = L3Item("X/Y", [Order("A", "1.0", "1", "delete", 5),
                              Order("A", "x", "1", "delete", 6)], [], None)
        return book.apply("update", item, rows)

    rows: Any = ([], [], [], [], [], [])
    with pytest.raises(NumberError):
        run(rows)
    assert rows == ([5], [3], [0], ["A"], [10], [100_000_000])
    assert run(None).unknown_deletes == 1


@pytest.mark.parametrize("token", ["1.000000001", "1.0000000010", True, 1.0, "1", 1, "1.0"])
def test_l3_qty_memo_keeps_errors(token: Any) -> None:
    """A quantity token meets a memo that holds ``"1"``: it fails (or succeeds) exactly as on
    a book whose memo is empty."""

    def run(primed: bool) -> Any:
        book = L3Book("X/Y", 10, PP, QP)
        book.snapshot([Order("A", "1.0", "1")], [Order("B", "9.0", "1")])
        if primed:
            book.update([Order("C", "2.0", "1", "add"), Order("C", "2.0", 0, "delete")], [])
        assert "1" in book._qtys or not primed
        try:
            result = book.update([Order("D", "3.0", token, "add")], [])
        except (NumberError, BookError) as exc:
            return type(exc), str(exc)
        return result, list(book.orders())

    assert run(True) == run(False)
