"""Sequence continuity trackers on real Futures captures and on hand-made streams."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.book.continuity import (
    FuturesSeqTracker,
    SequenceGap,
    TradeIdTracker,
    classify_step,
)
from recorder.protocol.futures import FuturesBookDelta, FuturesTrade, decode_futures
from recorder.protocol.reject import Reject

CAPTURES = ("cryptofeed/KRAKEN_FUTURES.ws.1.0", "cryptofeed/2021-04-17_be4e5c8/KRAKEN_FUTURES.ws.46.0")
_RECEIVED = re.compile(rb"^\d+(?:\.\d+)?: (.*)$")


def received_frames(path: Path) -> list[bytes]:
    return [m.group(1) for line in path.read_bytes().splitlines() if (m := _RECEIVED.match(line))]


def replay(frames: list[bytes]) -> tuple[FuturesSeqTracker, list[SequenceGap]]:
    tracker = FuturesSeqTracker()
    gaps: list[SequenceGap] = []
    for frame in frames:
        event = decode_futures(frame)
        assert not isinstance(event, Reject)
        gaps.extend(tracker.observe(event))
    return tracker, gaps


# ----------------------------------------------------------------------------- real captures


@pytest.mark.fixtures
@pytest.mark.parametrize("capture", CAPTURES)
def test_real_captures_have_no_gaps(fixture_file, capture: str) -> None:
    frames = received_frames(fixture_file(capture))
    tracker, gaps = replay(frames)
    assert gaps == []
    # Every product got a book and a trade counter position (the check really ran).
    products = {e.product_id for f in frames if isinstance(e := decode_futures(f), FuturesBookDelta)}
    assert len(products) == 10
    assert all(tracker.last("book", p) is not None for p in products)


@pytest.mark.fixtures
@pytest.mark.parametrize("capture", CAPTURES)
def test_one_removed_book_delta_is_exactly_one_gap(fixture_file, capture: str) -> None:
    frames = received_frames(fixture_file(capture))
    delta_positions = [i for i, f in enumerate(frames) if f.startswith(b'{"feed":"book",')]
    victim_index = delta_positions[len(delta_positions) // 2]
    victim = decode_futures(frames[victim_index])
    assert isinstance(victim, FuturesBookDelta)
    doctored = frames[:victim_index] + frames[victim_index + 1:]
    _, gaps = replay(doctored)
    assert len(gaps) == 1
    (gap,) = gaps
    following = next(
        e for f in frames[victim_index + 1:]
        if isinstance(e := decode_futures(f), FuturesBookDelta) and e.product_id == victim.product_id
    )
    assert (gap.what, gap.kind, gap.key) == ("futures_book_seq", "gap", victim.product_id)
    assert (gap.expected, gap.got, gap.missing) == (victim.seq, victim.seq + 1, 1)
    assert gap.exchange_time_ns == following.timestamp_ns


@pytest.mark.fixtures
def test_trade_snapshot_then_live_trades_continue(fixture_file) -> None:
    frames = received_frames(fixture_file(CAPTURES[0]))
    tracker, gaps = replay(frames)
    assert gaps == []
    live = [e for f in frames if isinstance(e := decode_futures(f), FuturesTrade)]
    assert len(live) == 3
    for trade in live:
        assert tracker.last("trade", trade.product_id) >= trade.seq
    # Dropping one trade out of a snapshot is reported as a disordered snapshot.
    snapshot = next(f for f in frames if f.startswith(b'{"feed":"trade_snapshot"'))
    event = decode_futures(snapshot)
    fresh = FuturesSeqTracker()
    seqs = [t.seq for t in event.trades]  # type: ignore[union-attr]
    reports = fresh.observe_trade_snapshot(event.product_id, seqs[:10] + seqs[11:])  # type: ignore[union-attr]
    assert [(r.kind, r.expected, r.got) for r in reports] == [
        ("unordered_snapshot", seqs[11] + 1, seqs[9])]


# --------------------------------------------------------------------------- futures by hand


def test_futures_book_counter_rules() -> None:
    tracker = FuturesSeqTracker()
    tracker.observe_book_snapshot("pi_xbtusd", 100)
    assert tracker.observe_book_delta("PI_XBTUSD", 101, 5) is None
    assert tracker.observe_book_delta("PI_XBTUSD", 103, 7) == SequenceGap(
        what="futures_book_seq", kind="gap", key="PI_XBTUSD", expected=102, got=103,
        exchange_time_ns=7)
    dup = tracker.observe_book_delta("PI_XBTUSD", 103)
    assert dup is not None and dup.kind == "duplicate" and dup.missing == 0
    old = tracker.observe_book_delta("PI_XBTUSD", 50)
    assert old is not None and (old.kind, old.expected, old.got) == ("regression", 104, 50)
    assert tracker.observe_book_delta("PI_XBTUSD", 104) is None
    # A new snapshot (resubscription) re-seeds, even backwards.
    tracker.observe_book_snapshot("PI_XBTUSD", 10)
    assert tracker.observe_book_delta("PI_XBTUSD", 11) is None
    # Products are independent.
    tracker.observe_book_snapshot("PI_ETHUSD", 7)
    assert tracker.observe_book_delta("PI_ETHUSD", 9).got == 9  # type: ignore[union-attr]
    assert tracker.observe_book_delta("PI_XBTUSD", 12) is None


def test_futures_trade_snapshot_and_resubscribe() -> None:
    tracker = FuturesSeqTracker()
    assert tracker.observe_trade_snapshot("PI_XBTUSD", [105, 104, 103]) == []
    assert tracker.observe_trade("PI_XBTUSD", 106) is None
    gap = tracker.observe_trade("PI_XBTUSD", 108, 99)
    assert gap is not None and (gap.what, gap.expected, gap.got) == ("futures_trade_seq", 107, 108)
    # Resubscription overlapping what we saw: no report; missed trades between: one gap.
    assert tracker.observe_trade_snapshot("PI_XBTUSD", [109, 108, 107]) == []
    reports = tracker.observe_trade_snapshot("PI_XBTUSD", [120, 119, 118])
    assert [(r.kind, r.expected, r.got) for r in reports] == [("gap", 110, 118)]
    assert tracker.observe_trade("PI_XBTUSD", 121) is None
    tracker.reset("trade", "pi_xbtusd")
    assert tracker.last("trade", "PI_XBTUSD") is None
    assert tracker.observe_trade("PI_XBTUSD", 5) is None


def test_observe_ignores_other_events() -> None:
    tracker = FuturesSeqTracker()
    assert tracker.observe(decode_futures('{"feed":"heartbeat","time":1}')) == []
    assert tracker.observe(object()) == []


# -------------------------------------------------------------------------------- spot trade id


def test_trade_id_across_snapshot_boundary() -> None:
    tracker = TradeIdTracker()
    assert tracker.observe_snapshot("BTC/USD", range(10218208, 10218258)) == []
    assert tracker.observe("BTC/USD", 10218258) is None
    gap = tracker.observe("BTC/USD", 10218261, 1_700_000_000_000_000_000)
    assert gap == SequenceGap(what="spot_trade_id", kind="gap", key="BTC/USD", expected=10218259,
                              got=10218261, exchange_time_ns=1_700_000_000_000_000_000)
    assert gap.missing == 2
    assert tracker.observe("BTC/USD", 10218261).kind == "duplicate"  # type: ignore[union-attr]
    assert tracker.observe("BTC/USD", 10218200).kind == "regression"  # type: ignore[union-attr]
    assert tracker.last("BTC/USD") == 10218261
    assert tracker.observe("ETH/USD", 5) is None


def test_trade_id_gap_right_after_snapshot() -> None:
    tracker = TradeIdTracker()
    tracker.observe_snapshot("BTC/USD", [1, 2, 3])
    gap = tracker.observe("BTC/USD", 5)
    assert gap is not None and (gap.expected, gap.got) == (4, 5)
    tracker.reset()
    assert tracker.last("BTC/USD") is None


@pytest.mark.fixtures
def test_rest_trades_fixture_is_contiguous(fixture_file) -> None:
    from recorder.protocol.rest import TradesPage, decode_trades

    page = decode_trades(fixture_file("nautilus_trader/http_trades.json").read_bytes())
    assert isinstance(page, TradesPage)
    tracker = TradeIdTracker()
    reports = [tracker.observe("XBTUSDT", t.trade_id) for t in page.trades]  # type: ignore[arg-type]
    assert [r for r in reports if r is not None] == []


@given(st.lists(st.integers(0, 50), min_size=1, max_size=60))
def test_reports_match_a_simple_model(values: list[int]) -> None:
    tracker = TradeIdTracker()
    expected_reports = []
    high = None
    for value in values:
        if high is not None and value != high + 1:
            kind = classify_step(high, value)
            expected_reports.append((kind, high + 1, value))
        high = value if high is None or value > high else high
        report = tracker.observe("X", value)
        got = None if report is None else (report.kind, report.expected, report.got)
        assert got == (expected_reports[-1] if report is not None else None)
    assert tracker.last("X") == max(values)
