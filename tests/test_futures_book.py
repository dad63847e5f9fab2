"""FuturesBook: real capture replay, seq continuity, crossing, exact keys, checkpoint/restore."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.book.futures import FuturesBook, FuturesBookCheckpoint
from recorder.protocol.errors import BookError, NumberError
from recorder.protocol.futures import (
    FuturesBookDelta,
    FuturesBookSnapshot,
    FuturesLevel,
    decode_futures,
)
from recorder.protocol.rest import FuturesInstruments, decode_futures_instruments

CAPTURES = ("cryptofeed/KRAKEN_FUTURES.ws.1.0", "cryptofeed/2021-04-17_be4e5c8/KRAKEN_FUTURES.ws.46.0")
_RECEIVED = re.compile(rb"^\d+(?:\.\d+)?: (.*)$")


def received_frames(path: Path) -> list[bytes]:
    return [m.group(1) for line in path.read_bytes().splitlines() if (m := _RECEIVED.match(line))]


def book_events(path: Path) -> list[FuturesBookSnapshot | FuturesBookDelta]:
    events = [decode_futures(f) for f in received_frames(path)]
    return [e for e in events if isinstance(e, (FuturesBookSnapshot, FuturesBookDelta))]


def replay(events, precisions: dict[str, tuple[int, int]] | None = None):
    books: dict[str, FuturesBook] = {}
    gaps, crossed = [], 0
    for event in events:
        if isinstance(event, FuturesBookSnapshot):
            price_p, qty_p = (precisions or {}).get(event.product_id, (None, None))
            books[event.product_id] = FuturesBook(event.product_id, price_precision=price_p,
                                                  qty_precision=qty_p)
            books[event.product_id].apply_snapshot(event)
        else:
            gap = books[event.product_id].apply(event)
            if gap is not None:
                gaps.append(gap)
            crossed += books[event.product_id].crossed
    return books, gaps, crossed


def snapshot(bids, asks, seq=10, product="PI_XBTUSD") -> FuturesBookSnapshot:
    return FuturesBookSnapshot(
        product_id=product, timestamp_ms=1, seq=seq,
        bids=tuple(FuturesLevel(price=p, qty=q) for p, q in bids),
        asks=tuple(FuturesLevel(price=p, qty=q) for p, q in asks))


def delta(side, price, qty, seq, product="PI_XBTUSD") -> FuturesBookDelta:
    return FuturesBookDelta(product_id=product, side=side, seq=seq, price=price, qty=qty,
                            timestamp_ms=seq)


# ----------------------------------------------------------------------------- real captures


@pytest.mark.fixtures
@pytest.mark.parametrize("capture", CAPTURES)
def test_capture_replay_is_gap_free_and_uncrossed(fixture_file, capture: str) -> None:
    books, gaps, crossed = replay(book_events(fixture_file(capture)))
    assert len(books) == 10
    assert gaps == [] and crossed == 0
    for book in books.values():
        assert book.in_sync and len(book) > 0
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is not None and ask is not None
        assert Decimal(str(bid[0])) < Decimal(str(ask[0]))


@pytest.mark.fixtures
def test_instrument_precision_keys_give_the_same_books(fixture_file) -> None:
    """Scaling by the 2021 instruments' tickSize gives exactly the books the Decimal keys give."""
    folder = "cryptofeed/2021-04-17_be4e5c8/"
    rest_line = next(line for line in fixture_file(folder + "KRAKEN_FUTURES.0").read_bytes().splitlines()
                     if line.startswith(b"https://"))
    instruments = decode_futures_instruments(rest_line.split(b": ", 1)[1])
    assert isinstance(instruments, FuturesInstruments)
    precisions = {
        symbol: (inst.price_precision, 0)
        for symbol, inst in instruments.by_symbol().items() if inst.price_precision is not None
    }
    events = book_events(fixture_file(folder + "KRAKEN_FUTURES.ws.46.0"))
    assert {e.product_id for e in events} <= set(precisions)
    scaled, gaps, _ = replay(events, precisions)
    plain, _, _ = replay(events)
    assert gaps == []
    for product, book in scaled.items():
        assert book.price_precision is not None
        assert book.bids() == plain[product].bids() and book.asks() == plain[product].asks()


@pytest.mark.fixtures
def test_removed_delta_is_one_gap_and_marks_out_of_sync(fixture_file) -> None:
    events = book_events(fixture_file(CAPTURES[0]))
    victim_at = next(i for i, e in enumerate(events) if isinstance(e, FuturesBookDelta) and i > 3000)
    victim = events[victim_at]
    books, gaps, _ = replay(events[:victim_at] + events[victim_at + 1:])
    assert [(g.key, g.kind, g.expected, g.got) for g in gaps] == [
        (victim.product_id, "gap", victim.seq, victim.seq + 1)]
    assert not books[victim.product_id].in_sync
    assert sum(b.in_sync for b in books.values()) == 9


@pytest.mark.fixtures
def test_checkpoint_roundtrip_on_real_book(fixture_file) -> None:
    events = book_events(fixture_file(CAPTURES[1]))
    half = len(events) // 2
    books, _, _ = replay(events[:half])
    restored = {}
    for product, book in books.items():
        blob = msgspec.json.encode(book.checkpoint())
        restored[product] = FuturesBook.restore(msgspec.json.decode(blob, type=FuturesBookCheckpoint))
        assert restored[product].checkpoint() == book.checkpoint()
    for event in events[half:]:
        if isinstance(event, FuturesBookSnapshot):
            restored[event.product_id].apply_snapshot(event)
        else:
            assert restored[event.product_id].apply(event) is None
    final, _, _ = replay(events)
    for product, book in final.items():
        assert restored[product].checkpoint() == book.checkpoint()


@pytest.mark.fixtures
def test_documented_snapshot_with_zero_qty(fixture_file) -> None:
    event = decode_futures(
        fixture_file("nautilus_trader/ws_futures_book_snapshot_with_zero_qty.json").read_bytes())
    book = FuturesBook("pi_xbtusd")
    book.apply_snapshot(event)  # type: ignore[arg-type]
    assert book.bids() == [("34892.5", 6385), ("34891.5", 100)]
    assert book.asks() == [(34912, 2300)]


# ------------------------------------------------------------------------------ by hand


def test_deltas_crossing_and_views() -> None:
    book = FuturesBook("PI_XBTUSD")
    book.apply_snapshot(snapshot([("100.5", 1), (100, "2.0")], [("101", 3), ("102.5", "4.25")]))
    assert book.best_bid() == ("100.5", 1) and book.best_ask() == ("101", 3)
    assert book.apply(delta("buy", "100.0", 7, 11)) is None  # same level as 100
    assert book.bids() == [("100.5", 1), ("100.0", 7)]
    assert book.apply(delta("sell", 101, 0, 12)) is None  # "101" == 101: removed
    assert book.asks() == [("102.5", "4.25")]
    assert not book.crossed
    assert book.apply(delta("buy", "103", 1, 13)) is None
    assert book.crossed and book.best_bid() == ("103", 1)
    assert book.apply(delta("buy", "103", "0.0", 14)) is None
    assert not book.crossed
    assert book.bids(1) == [("100.5", 1)] and book.asks(0) == [] and book.bids(99) == book.bids()
    assert book.seq == 14 and book.timestamp_ms == 14 and len(book) == 3


def test_seq_rules() -> None:
    book = FuturesBook("PI_XBTUSD")
    with pytest.raises(BookError):
        book.apply(delta("buy", 1, 1, 1))
    book.apply_snapshot(snapshot([(100, 1)], [(101, 1)], seq=10))
    gap = book.apply(delta("buy", 99, 5, 13))
    assert gap is not None and (gap.kind, gap.expected, gap.got, gap.missing) == ("gap", 11, 13, 2)
    assert gap.exchange_time_ns == 13_000_000
    assert not book.in_sync and book.bids()[-1] == (99, 5)  # applied: quantities are absolute
    dup = book.apply(delta("buy", 99, 6, 13))
    assert dup is not None and dup.kind == "duplicate" and book.bids()[-1] == (99, 5)
    old = book.apply(delta("buy", 99, 6, 3))
    assert old is not None and old.kind == "regression" and book.bids()[-1] == (99, 5)
    book.apply_snapshot(snapshot([(100, 1)], [(101, 1)], seq=50))
    assert book.in_sync and book.apply(delta("sell", 101, 2, 51)) is None


def test_misuse_raises() -> None:
    book = FuturesBook("PI_XBTUSD", price_precision=1, qty_precision=0)
    with pytest.raises(BookError):
        book.apply_snapshot(snapshot([], [], product="PI_ETHUSD"))
    book.apply_snapshot(snapshot([("100.5", 1)], [], seq=1))
    with pytest.raises(NumberError):
        book.apply(delta("buy", "100.25", 1, 2))  # finer than the tick precision: never rounded
    with pytest.raises(NumberError):
        book.apply(delta("buy", "100.5", "1.5", 2))
    with pytest.raises(BookError):
        book.apply(delta("buy", "100.5", -1, 2))
    with pytest.raises(BookError):
        book.apply_level("bid", "100.5", 1, 2)  # type: ignore[arg-type]
    with pytest.raises(NumberError):
        FuturesBook("X").apply_snapshot(snapshot([("abc", 1)], [], product="X"))
    assert book.seq == 1


def test_tiny_prices_keep_every_digit() -> None:
    book = FuturesBook("PF_PEPEUSD")
    book.apply_snapshot(snapshot([("1.234e-05", 10), ("0.00001233", 5)], [("1.2341E-5", 1)],
                                 product="PF_PEPEUSD"))
    assert book.bids() == [("1.234e-05", 10), ("0.00001233", 5)]
    assert book.apply(delta("buy", "0.00001234", 0, 11, product="PF_PEPEUSD")) is None
    assert book.bids() == [("0.00001233", 5)] and not book.crossed


levels_strategy = st.lists(
    st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 40), st.integers(0, 3)),
    max_size=80)


@given(levels_strategy, st.booleans())
def test_matches_a_dict_model(updates, scaled: bool) -> None:
    """Random deltas: the book equals a plain dict model, and checkpoints restore exactly."""
    book = FuturesBook("X", price_precision=2 if scaled else None)
    book.apply_snapshot(snapshot([], [], seq=0, product="X"))
    model: dict[str, dict[Decimal, int]] = {"buy": {}, "sell": {}}
    for seq, (side, tick, qty) in enumerate(updates, start=1):
        price = f"{tick / 4:.2f}" if seq % 2 else str(tick / 4)  # two spellings of one price
        assert book.apply(delta(side, price, qty, seq, product="X")) is None
        if qty:
            model[side][Decimal(price)] = qty
        else:
            model[side].pop(Decimal(price), None)
    assert [(Decimal(p), q) for p, q in book.bids()] == sorted(model["buy"].items(), reverse=True)
    assert [(Decimal(p), q) for p, q in book.asks()] == sorted(model["sell"].items())
    restored = FuturesBook.restore(book.checkpoint())
    assert restored.checkpoint() == book.checkpoint()
    assert restored.crossed == book.crossed
