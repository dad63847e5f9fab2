"""Property tests: random message sequences against slow from-scratch reference books.

The books' three ways in (``snapshot``/``update``, ``apply`` recording rows, ``apply_units``)
must agree with each other and with the reference after every message."""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.book.checkpoint import decode_checkpoint, encode_checkpoint
from recorder.book.l2 import L2Book
from recorder.book.l3 import EVENT_CODES, L3Book, OrderView
from recorder.protocol.checksum import crc_of_pieces, level_piece
from recorder.protocol.numbers import NumToken, to_units, units_to_text

SETTINGS = settings(deadline=None, max_examples=150)


class Lv(NamedTuple):
    price: NumToken
    qty: NumToken


class Item(NamedTuple):
    """A decoded ``data`` item, as :meth:`L2Book.apply` / :meth:`L3Book.apply` take it."""

    symbol: str
    bids: list[Any]
    asks: list[Any]
    checksum: int | None


class Order(msgspec.Struct, frozen=True):
    order_id: str
    limit_price: NumToken
    order_qty: NumToken
    event: str | None = None
    ts_ns: int | None = None


def render(units: int, precision: int, style: int) -> NumToken:
    """Exact token for ``units`` in one of three spellings Kraken (or a doc page) may use."""
    text = units_to_text(units, precision)
    if style == 0 or precision == 0:
        return text  # full precision, e.g. "0.00100000"
    trimmed = text.rstrip("0").rstrip(".")
    if style == 1 or "." in trimmed:
        return trimmed  # trimmed like a float printout, e.g. "0.001" or "4"
    return int(trimmed)  # a JSON integer


# ---------------------------------------------------------------------- L2


class L2Ref:
    """Slow reference: dicts, full re-sort and checksum from scratch after every message."""

    def __init__(self, depth: int, pp: int, qp: int) -> None:
        self.depth, self.pp, self.qp = depth, pp, qp
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}

    def apply(self, levels: list[tuple[str, int, int]], snapshot: bool) -> None:
        if snapshot:
            self.bids, self.asks = {}, {}
        for side, price, qty in levels:
            book = self.bids if side == "bid" else self.asks
            if qty:
                book[price] = qty
            else:
                book.pop(price, None)
        self.bids = dict(self.sorted_bids()[: self.depth])
        self.asks = dict(self.sorted_asks()[: self.depth])

    def sorted_bids(self) -> list[tuple[int, int]]:
        return sorted(self.bids.items(), reverse=True)

    def sorted_asks(self) -> list[tuple[int, int]]:
        return sorted(self.asks.items())

    def checksum(self) -> int:
        return crc_of_pieces(
            [level_piece(p, q) for p, q in self.sorted_asks()[:10]],
            [level_piece(p, q) for p, q in self.sorted_bids()[:10]],
        )

    def crossed(self) -> bool:
        return bool(self.bids) and bool(self.asks) and max(self.bids) >= min(self.asks)


@st.composite
def l2_scenarios(draw: Any) -> dict[str, Any]:
    pp = draw(st.integers(0, 4))
    qp = draw(st.integers(0, 8))
    depth = draw(st.sampled_from([1, 2, 3, 5, 10, 11, 25]))
    overlap = draw(st.booleans())
    bid_prices = st.integers(1, 40) if overlap else st.integers(1, 60)
    ask_prices = st.integers(1, 40) if overlap else st.integers(61, 120)
    qty = st.integers(0, 3) | st.integers(1, 10**9)

    def level(side: str) -> Any:
        prices = bid_prices if side == "bid" else ask_prices
        return st.tuples(st.just(side), prices, qty, st.integers(0, 2), st.integers(0, 2))

    one = level("bid") | level("ask")
    snapshot = draw(st.lists(one, max_size=30))
    updates = draw(st.lists(st.lists(one, max_size=6), max_size=25))
    return {
        "pp": pp, "qp": qp, "depth": depth, "overlap": overlap,
        "snapshot": snapshot, "updates": updates,
    }


def l2_tokens(
    levels: list[tuple[str, int, int, int, int]], pp: int, qp: int
) -> tuple[list[Lv], list[Lv]]:
    bids = [Lv(render(p, pp, sp), render(q, qp, sq)) for s, p, q, sp, sq in levels if s == "bid"]
    asks = [Lv(render(p, pp, sp), render(q, qp, sq)) for s, p, q, sp, sq in levels if s == "ask"]
    return bids, asks


def l2_run(
    book: L2Book, ref: L2Ref | None, messages: list[Any], pp: int, qp: int, first_is_snapshot: bool,
    recording: L2Book | None = None, by_units: L2Book | None = None,
) -> list[Any]:
    """Apply ``messages`` to ``book`` (checked against ``ref`` when given). ``recording`` gets
    the same messages through ``apply(..., rows)`` and must record every level, bids then asks
    in array order, as (side, price units, qty units); ``by_units`` gets them through
    ``apply_units``. Both must give ``book``'s results and levels."""
    results = []
    for index, levels in enumerate(messages):
        snapshot = first_is_snapshot and index == 0
        bids, asks = l2_tokens(levels, pp, qp)
        expected = None
        if ref is not None:
            ref.apply([(s, p, q) for s, p, q, _, _ in levels], snapshot)
            expected = ref.checksum()
        result = (book.snapshot if snapshot else book.update)(bids, asks, expected)
        results.append(result)
        if ref is not None:
            check_l2_invariants(book, ref, result)
        kind = "snapshot" if snapshot else "update"
        if recording is not None:
            rows: tuple[list[int], list[int], list[int]] = ([], [], [])
            assert recording.apply(kind, Item("X/Y", bids, asks, expected), rows) == result
            assert list(zip(*rows, strict=True)) == (
                [(0, p, q) for s, p, q, _, _ in levels if s == "bid"]
                + [(1, p, q) for s, p, q, _, _ in levels if s == "ask"])
            assert recording.levels("bid") == book.levels("bid")
            assert recording.levels("ask") == book.levels("ask")
        if by_units is not None:
            units = {side: [(p, q) for s, p, q, _, _ in levels if s == side]
                     for side in ("bid", "ask")}
            assert by_units.apply_units(kind, units["bid"], units["ask"], expected) == result
            assert by_units.levels("bid") == book.levels("bid")
            assert by_units.levels("ask") == book.levels("ask")
    return results


def check_l2_invariants(book: L2Book, ref: L2Ref, result: Any) -> None:
    bids = book.levels("bid")
    asks = book.levels("ask")
    assert bids == ref.sorted_bids()
    assert asks == ref.sorted_asks()
    assert all(a[0] > b[0] for a, b in zip(bids, bids[1:], strict=False))
    assert all(a[0] < b[0] for a, b in zip(asks, asks[1:], strict=False))
    assert all(q > 0 for _, q in bids + asks)
    assert len(bids) <= book.depth and len(asks) <= book.depth
    assert len(book) == len(bids) + len(asks)
    assert result.match is True and result.computed == book.checksum() == ref.checksum()
    assert result.crossed == ref.crossed() == book.is_crossed()


@SETTINGS
@given(l2_scenarios())
def test_l2_random_sequences_match_reference(scenario: dict[str, Any]) -> None:
    pp, qp, depth = scenario["pp"], scenario["qp"], scenario["depth"]
    book = L2Book("X/Y", depth, pp, qp)
    ref = L2Ref(depth, pp, qp)
    twins = L2Book("X/Y", depth, pp, qp), L2Book("X/Y", depth, pp, qp)
    results = l2_run(book, ref, [scenario["snapshot"], *scenario["updates"]], pp, qp, True, *twins)
    if not scenario["overlap"]:
        assert not any(r.crossed for r in results)
    absent = sum(r.absent_removals for r in results)
    assert absent == book.absent_removals
    assert book.mismatches == 0


@SETTINGS
@given(l2_scenarios(), st.integers(0, 25), st.sampled_from(["json", "msgpack"]))
def test_l2_checkpoint_restore_round_trip(scenario: dict[str, Any], cut: int, fmt: str) -> None:
    pp, qp, depth = scenario["pp"], scenario["qp"], scenario["depth"]
    messages = [scenario["snapshot"], *scenario["updates"]]
    cut = min(cut, len(messages) - 1)
    book = L2Book("X/Y", depth, pp, qp)
    l2_run(book, None, messages[: cut + 1], pp, qp, True)
    cp = decode_checkpoint(encode_checkpoint(book.checkpoint(), fmt), fmt)  # type: ignore[arg-type]
    assert cp == book.checkpoint()
    restored = L2Book.restore(cp)  # type: ignore[arg-type]
    assert restored.levels("bid") == book.levels("bid")
    assert restored.levels("ask") == book.levels("ask")
    assert restored.checksum() == book.checksum()
    rest = messages[cut + 1 :]
    assert l2_run(restored, None, rest, pp, qp, False) == l2_run(book, None, rest, pp, qp, False)
    assert restored.checksum() == book.checksum()


# ---------------------------------------------------------------------- L3


class L3Ref:
    """Slow reference: one list of orders per side in arrival order; levels derived on demand."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.sides: dict[str, list[list[Any]]] = {"bid": [], "ask": []}  # [oid, price, qty, ts]

    def find(self, oid: str) -> tuple[str, int] | None:
        for side, entries in self.sides.items():
            for index, entry in enumerate(entries):
                if entry[0] == oid:
                    return side, index
        return None

    def remove(self, oid: str) -> bool:
        found = self.find(oid)
        if found is not None:
            del self.sides[found[0]][found[1]]
        return found is not None

    def add(self, side: str, oid: str, price: int, qty: int, ts: int | None) -> None:
        self.remove(oid)
        if qty:
            self.sides[side].append([oid, price, qty, ts])

    def apply(
        self, events: list[tuple[str, str, str, int, int, int | None]], snapshot: bool
    ) -> None:
        if snapshot:
            self.sides = {"bid": [], "ask": []}
        for side, kind, oid, price, qty, ts in events:
            found = self.find(oid)
            if snapshot or kind == "add":
                self.add(side, oid, price, qty, ts)
            elif kind == "delete":
                self.remove(oid)
            elif found is None:
                self.add(side, oid, price, qty, ts)
            elif qty == 0:
                self.remove(oid)
            else:
                entry = self.sides[found[0]][found[1]]
                if found[0] == side and entry[1] == price:
                    entry[2] = qty
                    entry[3] = ts if ts is not None else entry[3]
                else:
                    old_ts = entry[3]
                    self.remove(oid)
                    self.add(side, oid, price, qty, ts if ts is not None else old_ts)
        for side in ("bid", "ask"):
            keep = set(self.prices(side)[: self.depth])
            self.sides[side] = [e for e in self.sides[side] if e[1] in keep]

    def prices(self, side: str) -> list[int]:
        return sorted({e[1] for e in self.sides[side]}, reverse=side == "bid")

    def view(self, side: str) -> list[OrderView]:
        return [
            OrderView(e[0], side, e[1], e[2], e[3])  # type: ignore[arg-type]
            for price in self.prices(side)
            for e in self.sides[side]
            if e[1] == price
        ]

    def checksum(self) -> int:
        def pieces(side: str) -> list[str]:
            top = self.prices(side)[:10]
            return [level_piece(o.price, o.qty) for o in self.view(side) if o.price in top]

        return crc_of_pieces(pieces("ask"), pieces("bid"))

    def crossed(self) -> bool:
        bids, asks = self.prices("bid"), self.prices("ask")
        return bool(bids) and bool(asks) and bids[0] >= asks[0]


@st.composite
def l3_scenarios(draw: Any) -> dict[str, Any]:
    depth = draw(st.sampled_from([1, 2, 3, 10, 12]))
    overlap = draw(st.booleans())
    width = draw(st.sampled_from([5, 13]))  # few levels (long queues) or more than 10 levels
    oid = st.sampled_from([f"O{i}" for i in range(64)])
    ts = st.none() | st.integers(0, 2**62)

    def event(side: str, kinds: list[str]) -> Any:
        if overlap:
            prices = st.integers(1, width + 4)
        else:
            prices = st.integers(1, width) if side == "bid" else st.integers(width + 1, 2 * width)
        qty = st.integers(0, 4) | st.integers(1, 10**12)
        return st.tuples(st.just(side), st.sampled_from(kinds), oid, prices, qty, ts)

    snap = st.lists(event("bid", ["add"]) | event("ask", ["add"]), max_size=60)
    kinds = ["add", "modify", "delete"]
    upd = st.lists(event("bid", kinds) | event("ask", kinds), max_size=6)
    return {
        "depth": depth,
        "overlap": overlap,
        "qp": draw(st.integers(0, 8)),
        "snapshot": draw(snap),
        "updates": draw(st.lists(upd, max_size=25)),
    }


PP = 2


def l3_orders(events: list[Any], side: str, qp: int, snapshot: bool) -> list[Order]:
    return [
        Order(
            oid, render(price, PP, price % 3), render(qty, qp, qty % 3),
            None if snapshot else kind, ts,
        )
        for s, kind, oid, price, qty, ts in events
        if s == side
    ]


def l3_run(
    book: L3Book, ref: L3Ref | None, messages: list[Any], qp: int, first_is_snapshot: bool,
    recording: L3Book | None = None, by_units: L3Book | None = None,
) -> list[Any]:
    """Apply ``messages`` to ``book`` (checked against ``ref`` when given). ``recording`` gets
    the same messages through ``apply(..., rows)`` and must record every entry, deletes
    included, bids then asks in array order, as (ts_ns, event code (0 in a snapshot), side,
    order id, price units, qty units); ``by_units`` gets them through ``apply_units``. Both
    must give ``book``'s results and orders."""
    results = []
    for index, events in enumerate(messages):
        snapshot = first_is_snapshot and index == 0
        bids = l3_orders(events, "bid", qp, snapshot)
        asks = l3_orders(events, "ask", qp, snapshot)
        # the book takes events in this order: bids, then asks
        ordered = [e for e in events if e[0] == "bid"] + [e for e in events if e[0] == "ask"]
        expected = None
        if ref is not None:
            ref.apply(ordered, snapshot)
            expected = ref.checksum()
        result = (book.snapshot if snapshot else book.update)(bids, asks, expected)
        results.append(result)
        if ref is not None:
            check_l3_invariants(book, ref, result)
        kind = "snapshot" if snapshot else "update"
        if recording is not None:
            rows: Any = ([], [], [], [], [], [])
            assert recording.apply(kind, Item("X/Y", bids, asks, expected), rows) == result
            assert list(zip(*rows, strict=True)) == [
                (ts, 0 if snapshot else EVENT_CODES[k], 0 if s == "bid" else 1, oid, p, q)
                for s, k, oid, p, q, ts in ordered]
            assert list(recording.orders()) == list(book.orders())
        if by_units is not None:
            units = {side: [(EVENT_CODES[k], oid, p, q, ts)
                            for s, k, oid, p, q, ts in events if s == side]
                     for side in ("bid", "ask")}
            assert by_units.apply_units(kind, units["bid"], units["ask"], expected) == result
            assert list(by_units.orders()) == list(book.orders())
    return results


def check_l3_invariants(book: L3Book, ref: L3Ref, result: Any) -> None:
    for side in ("bid", "ask"):
        assert list(book.orders(side)) == ref.view(side)  # type: ignore[arg-type]
        prices = [p for p, _ in book.levels(side)]  # type: ignore[arg-type]
        assert prices == ref.prices(side)
        assert len(prices) <= book.depth
        assert all(q > 0 for _, q in book.levels(side))  # type: ignore[arg-type]
    assert len(book) == sum(len(v) for v in ref.sides.values())
    assert result.match is True and result.computed == book.checksum() == ref.checksum()
    assert result.crossed == ref.crossed() == book.is_crossed()


@SETTINGS
@given(l3_scenarios())
def test_l3_random_sequences_match_reference(scenario: dict[str, Any]) -> None:
    book = L3Book("X/Y", scenario["depth"], PP, scenario["qp"])
    ref = L3Ref(scenario["depth"])
    twins = (L3Book("X/Y", scenario["depth"], PP, scenario["qp"]),
             L3Book("X/Y", scenario["depth"], PP, scenario["qp"]))
    results = l3_run(book, ref, [scenario["snapshot"], *scenario["updates"]], scenario["qp"], True,
                     *twins)
    if not scenario["overlap"]:
        assert not any(r.crossed for r in results)
    assert book.requeued == sum(r.requeued for r in results)
    assert book.mismatches == 0


@SETTINGS
@given(l3_scenarios(), st.integers(0, 25), st.sampled_from(["json", "msgpack"]))
def test_l3_checkpoint_restore_round_trip(scenario: dict[str, Any], cut: int, fmt: str) -> None:
    qp = scenario["qp"]
    messages = [scenario["snapshot"], *scenario["updates"]]
    cut = min(cut, len(messages) - 1)
    book = L3Book("X/Y", scenario["depth"], PP, qp)
    l3_run(book, None, messages[: cut + 1], qp, True)
    cp = decode_checkpoint(encode_checkpoint(book.checkpoint(), fmt), fmt)  # type: ignore[arg-type]
    assert cp == book.checkpoint()
    restored = L3Book.restore(cp)  # type: ignore[arg-type]
    assert list(restored.orders()) == list(book.orders())
    assert restored.checksum() == book.checksum()
    rest = messages[cut + 1 :]
    assert l3_run(restored, None, rest, qp, False) == l3_run(book, None, rest, qp, False)
    assert list(restored.orders()) == list(book.orders())


def test_l3_change_at_tenth_level_only() -> None:
    """Edits confined to the 10th-best level (the edge of the checksum window) are hashed."""
    book = L3Book("X/Y", 12, PP, 0)
    ref = L3Ref(12)
    snap = [("ask", "add", f"A{p}", p, 1, None) for p in range(100, 112)]
    snap += [("bid", "add", f"B{p}", p, 1, None) for p in range(50, 62)]
    updates = [
        [("ask", "modify", "A109", 109, 5, None)],  # in place at the 10th ask
        [("ask", "add", "X1", 109, 2, None)],  # joins the 10th ask level
        [("bid", "delete", "B52", 52, 0, None)],  # removes the 10th bid level, 11th moves in
        [("bid", "add", "X2", 51, 3, None)],  # joins the (new) 10th bid level
        [("ask", "delete", "X1", 109, 0, None)],
    ]
    l3_run(book, ref, [snap, *updates], 0, True)


def test_render_is_exact() -> None:
    """The token spellings used above all denote the same units."""
    for units in (0, 1, 10, 100, 12345, 10**9):
        for precision in range(5):
            for style in range(3):
                assert to_units(render(units, precision, style), precision) == units
