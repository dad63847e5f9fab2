"""Pipeline: book coverage gaps, subscription gaps, checkpoint cadence."""

from __future__ import annotations

import json

from recorder.frames import Frame
from recorder.pipeline import ListSink, Pipeline
from recorder.pipeline.signals import BookDesync
from tests.archive_helpers import T0


def book_frame(recv_ns: int, kind: str, bids: list[tuple[str, str]],
               asks: list[tuple[str, str]] = (), symbol: str = "BTC/USD",
               conn_id: int = 1) -> Frame:
    data = {"symbol": symbol, "bids": [{"price": float(p), "qty": float(q)} for p, q in bids],
            "asks": [{"price": float(p), "qty": float(q)} for p, q in asks]}
    payload = json.dumps({"channel": "book", "type": kind, "data": [data]}).encode()
    return Frame(recv_ns=recv_ns, conn_id=conn_id, stream="spot", direction="in",
                 payload=payload)


def l3_frame(recv_ns: int, kind: str, symbol: str = "BTC/USD") -> Frame:
    order = {"order_id": "O1", "limit_price": 100.5, "order_qty": 1.25,
             "timestamp": "2023-10-06T17:35:00.279389650Z"}
    if kind == "update":
        order["event"] = "add"
    data = {"symbol": symbol, "bids": [order], "asks": []}
    payload = json.dumps({"channel": "level3", "type": kind, "data": [data]}).encode()
    return Frame(recv_ns=recv_ns, conn_id=1, stream="l3", direction="in", payload=payload)


def test_updates_before_a_snapshot_are_a_gap_and_one_desync_signal() -> None:
    sink = ListSink()
    p = Pipeline(sink)
    s1 = p.feed(book_frame(T0, "update", [("100.5", "1.0")]))
    s2 = p.feed(book_frame(T0 + 5, "update", [("100.5", "2.0")]))
    assert [type(s) for s in s1] == [BookDesync] and s2 == []  # once per episode
    assert s1[0].reason == "update_before_snapshot" and s1[0].channel == "book"
    assert p.feed(book_frame(T0 + 9, "snapshot", [("100.5", "2.0")], [("101.0", "1.0")])) == []
    p.feed(book_frame(T0 + 12, "update", [("100.5", "3.0")]))
    p.close()
    gaps = sink.rows("gaps")
    assert [(g["cause"], g["start_ns"], g["end_ns"], g["healed_by"], g["channel"])
            for g in gaps] == [("update_before_snapshot", T0, T0 + 9, "resnapshot", "book")]
    assert [r["reason"] for r in sink.rows("rejects")] == ["update_before_snapshot"] * 2
    # after a restart, the episode starts again
    q = Pipeline.from_state(p.to_state(), ListSink())
    assert q.feed(book_frame(T0 + 13, "update", [("100.5", "3.0")])) == []  # epoch still open


def test_level3_update_before_snapshot_is_a_gap_closed_by_the_snapshot() -> None:
    sink = ListSink()
    p = Pipeline(sink)
    sig = p.feed(l3_frame(T0, "update"))
    assert [(type(s), s.channel) for s in sig] == [(BookDesync, "level3")]
    assert p.feed(l3_frame(T0 + 1, "update")) == []
    p.feed(l3_frame(T0 + 2, "snapshot"))
    p.close()
    (g,) = sink.rows("gaps")
    assert (g["cause"], g["start_ns"], g["end_ns"], g["healed_by"]) == (
        "update_before_snapshot", T0, T0 + 2, "resnapshot")


def test_open_update_before_snapshot_gap_survives_state_round_trip() -> None:
    sink = ListSink()
    p = Pipeline(sink)
    p.feed(book_frame(T0, "update", [("100.5", "1.0")]))
    p.flush()
    q = Pipeline.from_state(p.to_state(), sink)
    assert q.feed(book_frame(T0 + 1, "update", [("100.5", "1.0")])) == []
    q.feed(book_frame(T0 + 2, "snapshot", [("100.5", "1.0")]))
    q.close()
    (g,) = sink.rows("gaps")
    assert (g["start_ns"], g["end_ns"]) == (T0, T0 + 2)
