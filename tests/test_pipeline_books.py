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


def _ack(recv_ns: int, stream: str, ok: bool, req_id: int = 7, channel: str | None = None,
         conn_id: int = 1) -> Frame:
    msg: dict = {"method": "subscribe", "success": ok, "req_id": req_id,
                 "time_in": "2023-10-06T17:35:00.000000Z",
                 "time_out": "2023-10-06T17:35:00.000100Z"}
    if ok:
        msg["result"] = {"channel": channel, "symbol": "BTC/USD", "snapshot": True}
    else:
        msg["error"] = "Token rejected"
        msg["symbol"] = "BTC/USD"
    return Frame(recv_ns=recv_ns, conn_id=conn_id, stream=stream, direction="in",
                 payload=json.dumps(msg).encode())


def test_subscribe_failed_gap_is_closed_by_the_next_snapshot_with_its_channel() -> None:
    sink = ListSink()
    p = Pipeline(sink)
    p.feed(_ack(T0, "l3", False))
    p.feed(l3_frame(T0 + 1_000, "snapshot"))
    p.close()
    (g,) = sink.rows("gaps")
    assert (g["cause"], g["channel"], g["symbol"], g["start_ns"], g["end_ns"],
            g["healed_by"]) == ("subscribe_failed", "level3", "BTC/USD", T0, T0 + 1_000,
                                "resubscribe")


def test_subscribe_failed_gap_channel_from_the_request_and_closed_by_an_ack() -> None:
    sink = ListSink()
    p = Pipeline(sink)
    req = {"method": "subscribe", "params": {"channel": "ticker", "symbol": ["BTC/USD"]},
           "req_id": 7}
    p.feed(Frame(recv_ns=T0 - 1, conn_id=1, stream="spot", direction="out",
                 payload=json.dumps(req).encode()))
    p.feed(_ack(T0, "spot", False, req_id=7))
    p.flush()
    p = Pipeline.from_state(p.to_state(), sink)  # the open gap is state
    p.feed(_ack(T0 + 50, "spot", True, req_id=8, channel="ticker"))
    p.close()
    (g,) = sink.rows("gaps")
    assert (g["channel"], g["end_ns"], g["healed_by"]) == ("ticker", T0 + 50, "resubscribe")


def test_futures_subscribed_event_is_a_subscription_ack() -> None:
    from recorder.pipeline.signals import SubscriptionAcked

    p = Pipeline(ListSink())
    payload = b'{"event":"subscribed","feed":"book","product_ids":["PI_XBTUSD","PF_ETHUSD"]}'
    sig = p.feed(Frame(recv_ns=T0, conn_id=3, stream="futures", direction="in",
                       payload=payload))
    assert sig == [SubscriptionAcked(stream="futures", conn_id=3, channel="book",
                                     symbol=pid, recv_ns=T0)
                   for pid in ("PI_XBTUSD", "PF_ETHUSD")]


def _book_session(p: Pipeline, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        qty = f"{1 + i % 7}.0"
        p.feed(book_frame(T0 + 10 + i, "update", [("100.5", qty)]))


def test_checkpoints_every_n_messages_besides_the_interval() -> None:
    sink = ListSink()
    p = Pipeline(sink, checkpoint_messages=50)
    p.feed(book_frame(T0, "snapshot", [("100.5", "1.0")], [("101.0", "1.0")]))
    _book_session(p, 120)
    p.flush()
    p = Pipeline.from_state(p.to_state(), sink)  # cadence and position are state
    assert p.checkpoint_messages == 50
    _book_session(p, 40, start=120)
    p.close()
    cps = sink.rows("checkpoints")
    assert [(c["reason"], c["epoch_message"]) for c in cps] == [
        ("epoch_start", 1), ("interval", 51), ("interval", 101), ("interval", 151)]
    # off: time only
    sink2 = ListSink()
    q = Pipeline(sink2, checkpoint_messages=0)
    q.feed(book_frame(T0, "snapshot", [("100.5", "1.0")]))
    _book_session(q, 120)
    q.close()
    assert [c["reason"] for c in sink2.rows("checkpoints")] == ["epoch_start"]


def test_archive_session_checkpoint_messages_and_verify(tmp_path) -> None:
    from recorder.archive.session import ArchiveSession

    clock = iter(range(T0 + 10**12, T0 + 10**13, 1000))
    s = ArchiveSession(tmp_path / "a", host="t", clock_ns=lambda: next(clock),
                       fsync_interval_s=3600, checkpoint_messages=25)
    s.start()
    from recorder.book.l2 import L2Book

    shadow = L2Book("BTC/USD", 10, 1, 1)  # what the pipeline builds: depth 10, 1/1 decimals

    def checked(f: Frame) -> Frame:
        msg = json.loads(f.payload)
        d = msg["data"][0]
        shadow.apply_units(msg["type"], [(round(b["price"] * 10), round(b["qty"] * 10))
                                         for b in d["bids"]],
                           [(round(a["price"] * 10), round(a["qty"] * 10)) for a in d["asks"]],
                           None)
        d["checksum"] = shadow.checksum()
        return Frame(recv_ns=f.recv_ns, conn_id=f.conn_id, stream=f.stream,
                     direction=f.direction, payload=json.dumps(msg).encode())

    s.write(checked(book_frame(T0, "snapshot", [("100.5", "1.0")], [("101.0", "1.0")])))
    for i in range(60):
        s.write(checked(book_frame(T0 + 10 + i, "update", [("100.5", f"{1 + i % 5}.0")])))
    s.close()
    import pyarrow.parquet as pq

    from recorder.archive.store import ArchiveStore
    from recorder.verify import verify_archive

    root = tmp_path / "a"
    files = [f.file for f in ArchiveStore(root).state.files if "checkpoints" in f.file]
    cps = [r for f in files for r in pq.read_table(root / f).to_pylist()]
    assert sorted(c["epoch_message"] for c in cps) == [1, 26, 51]
    report = verify_archive(root)
    assert report["failed"] == 0 and report["checkpoints_failed"] == 0, report["failures"]
    assert report["checkpoints_checked"] == 3 and report["verified"] == 61
