"""Pipeline hot-path equivalences: a book message the book refuses half-way leaves no rows
(rows are appended while the levels are converted, then cut back); the liveness tick's
current-minute fast path gives the same rows across minutes and state restores."""

from __future__ import annotations

import json

from recorder.frames import Frame
from recorder.pipeline import ListSink, Pipeline
from tests.archive_helpers import T0


def _book(recv: int, kind: str, bids: list[tuple[str, str]],
          asks: list[tuple[str, str]] = ()) -> Frame:
    data = {"symbol": "BTC/USD", "bids": [{"price": p, "qty": q} for p, q in bids],
            "asks": [{"price": p, "qty": q} for p, q in asks]}
    return Frame(recv_ns=recv, conn_id=1, stream="spot", direction="in",
                 payload=json.dumps({"channel": "book", "type": kind, "data": [data]}).encode())


def _l3(recv: int, kind: str, orders: list[tuple[str, str, str]]) -> Frame:
    bids = []
    for oid, price, qty in orders:
        o = {"order_id": oid, "limit_price": price, "order_qty": qty,
             "timestamp": "2023-10-06T17:35:00.279389650Z"}
        if kind == "update":
            o["event"] = "add"
        bids.append(o)
    data = {"symbol": "BTC/USD", "bids": bids, "asks": []}
    return Frame(recv_ns=recv, conn_id=1, stream="l3", direction="in",
                 payload=json.dumps({"channel": "level3", "type": kind, "data": [data]}).encode())


def test_refused_l2_update_adds_no_rows_and_later_rows_line_up() -> None:
    sink = ListSink()
    p = Pipeline(sink)
    p.feed(_book(T0, "snapshot", [("100.5", "1.5")], [("101.5", "2.5")]))
    p.feed(_book(T0 + 1, "update", [("100.0", "1.5"), ("99.5", "1.123")]))  # 2nd level fails
    p.feed(_book(T0 + 2, "snapshot", [("100.5", "1.5")], [("101.5", "2.5")]))
    p.feed(_book(T0 + 3, "update", [("100.0", "0.5")]))
    p.close()
    (rej,) = sink.rows("rejects")
    assert (rej["recv_ns"], rej["reason"]) == (T0 + 1, "apply_error")
    rows = [(r["recv_ns"], r["side"], r["price"], r["qty"], r["event"])
            for r in sink.rows("book")]
    assert rows == [(T0, 0, 1005, 15, 0), (T0, 1, 1015, 25, 0),
                    (T0 + 2, 0, 1005, 15, 0), (T0 + 2, 1, 1015, 25, 0),
                    (T0 + 3, 0, 1000, 5, 1)]


def test_refused_l3_update_adds_no_rows_and_later_rows_line_up() -> None:
    sink = ListSink()
    p = Pipeline(sink)
    p.feed(_l3(T0, "snapshot", [("O1", "100.5", "1.25")]))
    p.feed(_l3(T0 + 1, "update", [("O2", "100.0", "1.5"), ("O3", "99.5", "1.123")]))
    p.feed(_l3(T0 + 2, "snapshot", [("O1", "100.5", "1.25")]))
    p.feed(_l3(T0 + 3, "update", [("O4", "100.0", "0.5")]))
    p.close()
    (rej,) = sink.rows("rejects")
    assert (rej["recv_ns"], rej["reason"]) == (T0 + 1, "apply_error")
    rows = [(r["recv_ns"], r["order_id"], r["price"], r["qty"], r["event"])
            for r in sink.rows("level3")]
    assert rows == [(T0, "O1", 1005, 125, 0), (T0 + 2, "O1", 1005, 125, 0),
                    (T0 + 3, "O4", 1000, 50, 1)]


def test_liveness_minutes_are_the_same_across_a_state_restore() -> None:
    """The current-minute fast path of the liveness tick: book and level3 messages within a
    minute, across minute boundaries and across a state restore in the middle of a minute
    give the same liveness rows as one uninterrupted pipeline."""
    minute = 60 * 10**9
    start = T0 - T0 % minute
    times = [start + 5, start + 7, start + minute - 1, start + minute, start + minute + 9,
             start + 3 * minute + 1, start + 3 * minute + 2]
    frames = [_book(times[0], "snapshot", [("100.5", "1.5")], [("101.5", "2.5")]),
              _l3(times[0] + 1, "snapshot", [("O1", "100.5", "1.25")])]
    for i, t in enumerate(times[1:]):
        frames.append(_book(t, "update", [("100.0", f"{i % 3}.5")]))
        frames.append(_l3(t + 1, "update", [(f"O{i + 2}", "100.0", "0.5")]))
    whole = ListSink()
    p = Pipeline(whole)
    for f in frames:
        p.feed(f)
    p.close()
    for cut in (1, 3, 4, 7):
        sink = ListSink()
        q = Pipeline(sink)
        for f in frames[:cut]:
            q.feed(f)
        q.flush()
        q = Pipeline.from_state(q.to_state(), sink)
        for f in frames[cut:]:
            q.feed(f)
        q.close()
        assert sink.rows("liveness") == whole.rows("liveness"), cut
    assert len(whole.rows("liveness")) >= 6
