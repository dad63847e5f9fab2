"""Pipeline: spot trade continuity and REST trade backfill."""

from __future__ import annotations

import json

from recorder.frames import Frame
from recorder.pipeline import ListSink, Pipeline
from recorder.pipeline import markers as mk
from recorder.pipeline.signals import TradeIdGap
from tests.archive_helpers import T0, trade_frame


def rest_trades(recv_ns: int, ids: range, symbol: str = "BTC/USD") -> Frame:
    rows = [["95000.1", "0.001", 1735689600.1 + i / 1000, "b", "m", "", i] for i in ids]
    body = {"error": [], "result": {"XXBTZUSD": rows, "last": "1735689600200000000"}}
    return Frame(recv_ns=recv_ns, conn_id=0, stream="rest", direction="in",
                 meta=f"GET /0/public/Trades?pair={symbol}&since=1",
                 payload=json.dumps(body).encode())


def done(recv_ns: int, lo: int, hi: int, error: str = "") -> Frame:
    return mk.marker_frame(mk.BackfillDone(symbol="BTC/USD", from_trade_id=lo, to_trade_id=hi,
                                           rows=hi - lo + 1, error=error), recv_ns)


def test_two_jumps_before_backfill_done_are_two_gap_rows_closed_by_range() -> None:
    sink = ListSink()
    p = Pipeline(sink)
    p.feed(trade_frame(T0, 100))
    assert p.feed(trade_frame(T0 + 1, 103)) == [
        TradeIdGap(symbol="BTC/USD", expected=101, got=103, recv_ns=T0 + 1)]
    assert p.feed(trade_frame(T0 + 2, 106)) == [
        TradeIdGap(symbol="BTC/USD", expected=104, got=106, recv_ns=T0 + 2)]
    p.flush()
    p = Pipeline.from_state(p.to_state(), sink)  # open ranges are state
    p.feed(done(T0 + 3, 104, 105))
    p.feed(done(T0 + 4, 101, 102, error="1 trade(s) not returned"))
    p.close()
    gaps = sorted(sink.rows("gaps"), key=lambda g: g["missing"])
    assert [(g["missing"], g["end_ns"], g["healed_by"]) for g in gaps] == [
        ("trade_id 101..102", T0 + 4, "none"), ("trade_id 104..105", T0 + 3, "rest_backfill")]


def test_rest_pages_keep_only_trades_inside_open_holes() -> None:
    sink = ListSink()
    p = Pipeline(sink)
    for i in range(90, 101):
        p.feed(trade_frame(T0 + i, i))
    p.feed(trade_frame(T0 + 200, 103))  # hole 101..102
    p.feed(rest_trades(T0 + 300, range(50, 120)))  # a whole page around the hole
    p.feed(rest_trades(T0 + 301, range(95, 110)))  # overlapping second page
    p.feed(done(T0 + 302, 101, 102))
    p.feed(rest_trades(T0 + 400, range(50, 120)))  # no open hole: nothing new
    p.close()
    rest_rows = [r for r in sink.rows("trades") if r["source"] == 2]
    assert [r["trade_id"] for r in rest_rows] == [101, 102]
    ids = sorted(r["trade_id"] for r in sink.rows("trades"))
    assert ids == list(range(90, 104))  # every id exactly once


def test_rest_trades_of_a_symbol_never_seen_live_are_kept() -> None:
    sink = ListSink()
    p = Pipeline(sink)
    p.feed(rest_trades(T0, range(1, 4)))
    p.close()
    assert [r["trade_id"] for r in sink.rows("trades")] == [1, 2, 3]


def test_trade_ids_are_continuous_across_a_disconnect() -> None:
    sink = ListSink()
    p = Pipeline(sink)
    p.feed(mk.marker_frame(mk.Connected(conn_id=1, stream="spot"), T0))
    p.feed(trade_frame(T0 + 1, 100))
    p.feed(mk.marker_frame(mk.Disconnected(conn_id=1, reason="eof"), T0 + 2))
    p.flush()
    p = Pipeline.from_state(p.to_state(), sink)  # and across a state round trip
    p.feed(mk.marker_frame(mk.Connected(conn_id=2, stream="spot"), T0 + 10))
    sig = p.feed(trade_frame(T0 + 11, 105, conn_id=2))
    assert sig == [TradeIdGap(symbol="BTC/USD", expected=101, got=105, recv_ns=T0 + 11)]
    assert p.feed(trade_frame(T0 + 12, 106, conn_id=2)) == []
    p.close()
    jump = [g for g in sink.rows("gaps") if g["cause"] == "trade_id_jump"]
    assert [(g["missing"], g["missing_count"], g["start_ns"]) for g in jump] == [
        ("trade_id 101..104", 4, T0 + 1)]
    assert sorted(r["trade_id"] for r in sink.rows("trades")) == [100, 105, 106]


def test_reconnect_snapshot_overlap_is_not_recorded_twice_and_a_skip_is_a_gap() -> None:
    sink = ListSink()
    p = Pipeline(sink)
    p.feed(trade_frame(T0, 100))
    p.feed(mk.marker_frame(mk.Disconnected(conn_id=1, reason="eof"), T0 + 1))
    snap = trade_frame(T0 + 5, 0).payload.replace(b'"update"', b'"snapshot"')
    data = json.loads(snap)
    item = data["data"][0]
    data["data"] = [dict(item, trade_id=i) for i in (99, 100, 101, 103)]
    sig = p.feed(Frame(recv_ns=T0 + 5, conn_id=2, stream="spot", direction="in",
                       payload=json.dumps(data).encode()))
    assert sig == [TradeIdGap(symbol="BTC/USD", expected=102, got=103, recv_ns=T0 + 5)]
    p.close()
    assert sorted(r["trade_id"] for r in sink.rows("trades")) == [100, 101, 103]


def _start(recv_ns: int, run: str) -> Frame:
    return mk.marker_frame(mk.ProcessStart(host="h", run_id=run, version="t"), recv_ns)


def test_a_backfill_a_crash_left_unfinished_is_asked_for_again_and_filled_once() -> None:
    """kill -9 while a REST backfill was in flight: the hole (in the committed state) survives
    the restart's ProcessStart, is signalled again, and the restarted run's pages fill it
    without writing an id twice (the killed run had journaled a page already)."""
    sink = ListSink()
    p = Pipeline(sink)
    p.feed(_start(T0, "a"))
    p.feed(trade_frame(T0 + 1, 100))
    p.feed(trade_frame(T0 + 2, 104))  # hole 101..103: backfill requested
    p.feed(trade_frame(T0 + 3, 105))
    p.feed(rest_trades(T0 + 4, range(99, 103)))  # the killed run's first page: 101, 102
    p.flush()
    assert p.open_trade_gaps() == [TradeIdGap(symbol="BTC/USD", expected=101, got=104,
                                              recv_ns=T0 + 1)]
    p = Pipeline.from_state(p.to_state(), sink)  # killed (no BackfillDone, no ProcessStop)
    p.feed(_start(T0 + 10, "b"))
    again = p.open_trade_gaps()
    assert again == [TradeIdGap(symbol="BTC/USD", expected=101, got=104, recv_ns=T0 + 1)]
    p.feed(rest_trades(T0 + 11, range(99, 106)))  # the restarted run's backfill
    p.feed(done(T0 + 12, 101, 103))
    assert p.open_trade_gaps() == []
    p.close()
    ids = sorted(r["trade_id"] for r in sink.rows("trades"))
    assert ids == list(range(100, 106))  # every id exactly once
    assert sorted(r["trade_id"] for r in sink.rows("trades") if r["source"] == 2) == [
        101, 102, 103]
    jumps = [g for g in sink.rows("gaps") if g["cause"] == "trade_id_jump"]
    assert [(g["missing"], g["end_ns"], g["healed_by"]) for g in jumps] == [
        ("trade_id 101..103", T0 + 12, "rest_backfill")]
    restart = [g for g in sink.rows("gaps") if g["cause"] == "process_restart"]
    assert len(restart) == 1


def test_a_clean_stop_still_ends_open_trade_holes_unhealed() -> None:
    sink = ListSink()
    p = Pipeline(sink)
    p.feed(_start(T0, "a"))
    p.feed(trade_frame(T0 + 1, 100))
    p.feed(trade_frame(T0 + 2, 103))
    p.feed(mk.marker_frame(mk.ProcessStop(reason="operator"), T0 + 3))
    assert p.open_trade_gaps() == []
    p.feed(_start(T0 + 10, "b"))
    assert p.open_trade_gaps() == []
    p.close()
    jumps = [g for g in sink.rows("gaps") if g["cause"] == "trade_id_jump"]
    assert [(g["missing"], g["end_ns"], g["healed_by"]) for g in jumps] == [
        ("trade_id 101..102", None, "none")]
