from recorder.frames import Frame
from recorder.pipeline import ListSink, Pipeline
from recorder.pipeline import markers as mk
from recorder.pipeline.signals import TradeIdGap
from recorder.protocol.reject import Reject
from tests.archive_helpers import T0, trade_frame


def test_every_marker_round_trips():
    samples = [
        mk.ProcessStart(host="h", run_id="r", version="1"), mk.ProcessStop(reason="signal"),
        mk.Connected(conn_id=1, stream="spot", url="wss://x"),
        mk.Disconnected(conn_id=1, reason="eof"),
        mk.Subscribed(conn_id=1, channel="book", symbols=["BTC/USD"], depth=10),
        mk.SubscribeFailed(conn_id=1, channel="book", symbols=["X"], error="bad"),
        mk.Unsubscribed(conn_id=1, channel="book", symbols=["X"]),
        mk.Silence(conn_id=1, since_ns=5), mk.RateLimited(detail="429"),
        mk.Quarantined(channel="book", symbol="X", reason="flapping", until_ns=9),
        mk.Released(channel="book", symbol="X"),
        mk.ResyncRequested(channel="book", symbol="X", reason="checksum"),
        mk.BackfillStarted(symbol="X", from_trade_id=1, to_trade_id=5),
        mk.BackfillDone(symbol="X", from_trade_id=1, to_trade_id=5, rows=5),
        mk.DiskPressure(free_bytes=10),
    ]
    assert {type(s) for s in samples} == set(mk.MARKER_TYPES)
    for m in samples:
        assert mk.decode_marker(mk.encode_marker(m)) == m
    assert mk.decode_marker(b'{"marker":"nope"}').reason == "unknown_marker"
    assert isinstance(mk.decode_marker(b"\xff"), Reject)


def test_trade_gap_signal_gap_row_and_backfill_heal():
    sink = ListSink()
    p = Pipeline(sink)
    assert p.feed(trade_frame(T0, 100)) == []
    signals = p.feed(trade_frame(T0 + 1, 104))
    assert signals == [TradeIdGap(symbol="BTC/USD", expected=101, got=104, recv_ns=T0 + 1)]
    p.feed(mk.marker_frame(mk.BackfillDone(symbol="BTC/USD", from_trade_id=101,
                                           to_trade_id=103, rows=3), T0 + 2))
    p.feed(trade_frame(T0 + 3, 104))  # duplicate -> reject row, not silently dropped
    p.close()
    gaps = sink.rows("gaps")
    assert gaps[0]["cause"] == "trade_id_jump" and gaps[0]["missing_count"] == 3
    assert gaps[0]["healed_by"] == "rest_backfill"
    assert [r["reason"] for r in sink.rows("rejects")] == ["duplicate_trade"]


def test_disconnect_and_restart_become_gaps():
    sink = ListSink()
    p = Pipeline(sink)
    p.feed(mk.marker_frame(mk.ProcessStart(host="h", run_id="1", version="v"), T0))
    p.feed(trade_frame(T0 + 10, 1))
    p.feed(mk.marker_frame(mk.Disconnected(conn_id=1, reason="eof"), T0 + 20))
    p.feed(mk.marker_frame(mk.ProcessStart(host="h", run_id="2", version="v"), T0 + 99))
    p.close()
    causes = [g["cause"] for g in sink.rows("gaps")]
    assert "disconnect" in causes and "process_restart" in causes
    restart = next(g for g in sink.rows("gaps") if g["cause"] == "process_restart")
    assert (restart["start_ns"], restart["end_ns"]) == (T0 + 20, T0 + 99)


def test_outgoing_and_unknown_streams_are_never_silent():
    sink = ListSink()
    p = Pipeline(sink)
    p.feed(Frame(recv_ns=T0, conn_id=0, stream="spot_v1", direction="in", payload=b"[]"))
    p.feed(Frame(recv_ns=T0, conn_id=0, stream="spot", direction="out", payload=b"{}"))
    p.close()
    assert [r["reason"] for r in sink.rows("rejects")] == ["unsupported_stream"]
