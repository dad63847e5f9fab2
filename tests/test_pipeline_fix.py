"""FIX 4.4 market data into the archive's datasets (issue #17): the pipeline's derivation.

Each test journals frames as capture would (stream ``fix`` / ``fix_l3``, inbound messages and
our outgoing MarketDataRequests) and checks the ``book``, ``level3``, ``trades``, ``epochs``
and ``gaps`` rows.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from recorder import _core
from recorder.fix import Subscription
from recorder.fix.messages import BookEntry, incremental_fields, reject_fields, snapshot_fields
from recorder.frames import Frame
from recorder.pipeline import markers as mk
from recorder.pipeline.core import ListSink, Pipeline

ME, KRAKEN = "RECORDER1", "KRAKEN-MD"
T0 = 1_700_000_000 * 10**9
MS = 10**6
CONN = 42


class Session:
    """Frames of one FIX connection, numbered as the two sides would number them."""

    def __init__(self, pipeline: Pipeline, stream: str = "fix", conn_id: int = CONN) -> None:
        self.pipeline = pipeline
        self.stream = stream
        self.conn_id = conn_id
        self.inbound = 1
        self.outbound = 1
        self.now = T0

    def feed(self, payload: bytes, direction: str) -> None:
        self.now += MS
        self.pipeline.feed(Frame(recv_ns=self.now, conn_id=self.conn_id, stream=self.stream,
                                 direction=direction, payload=payload))  # type: ignore[arg-type]

    def send(self, msg_type: str, fields: list[tuple[int, str]]) -> None:
        self.feed(_core.encode_fix(msg_type, self.outbound, ME, KRAKEN, self.now, fields), "out")
        self.outbound += 1

    def receive(self, msg_type: str, fields: list[tuple[int, str]], *, skip: int = 0,
                seq: int | None = None, poss_dup: bool = False) -> None:
        self.inbound += skip
        number = self.inbound if seq is None else seq
        self.feed(_core.encode_fix(msg_type, number, KRAKEN, ME, self.now, fields,
                                   poss_dup=poss_dup), "in")
        if seq is None:
            self.inbound += 1

    def logon(self) -> None:
        self.pipeline.feed(Frame(recv_ns=self.now, conn_id=self.conn_id, stream="control",
                                 direction="in", payload=mk.encode_marker(
                                     mk.Connected(conn_id=self.conn_id, stream=self.stream))))
        self.send("A", [(98, "0"), (108, "30"), (141, "Y")])
        self.receive("A", [(98, "0"), (108, "30")])

    def subscribe(self, sub: Subscription) -> None:
        self.send("V", sub.request_fields(sub.md_req_id, True))


def bid(price: str, size: str, action: int | None = None) -> BookEntry:
    return BookEntry("0", f"O{price}", price, size, "10:00:00.000", action=action)


def ask(price: str, size: str, action: int | None = None) -> BookEntry:
    return BookEntry("1", f"O{price}", price, size, "10:00:00.000", action=action)


def trade(trade_id: str, price: str, size: str, side: str) -> BookEntry:
    return BookEntry("2", trade_id, price, size, "10:00:00.000", action=0,
                     timestamp="2023-11-14T22:13:20.123456789Z", ord_type="2",
                     aggressor_side=side)


def rows(sink: ListSink, dataset: str) -> list[dict[str, Any]]:
    return sink.rows(dataset)


def book_of(sink: ListSink, epoch: int) -> dict[int, dict[int, int]]:
    """The L2 book an epoch's rows rebuild (side -> price units -> qty units)."""
    sides: dict[int, dict[int, int]] = {0: {}, 1: {}}
    for r in rows(sink, "book"):
        if r["epoch"] != epoch:
            continue
        if r["qty"] == 0:
            sides[r["side"]].pop(r["price"], None)
        else:
            sides[r["side"]][r["price"]] = r["qty"]
    return sides


def l2_session() -> tuple[Pipeline, ListSink, Session]:
    sink = ListSink()
    pipeline = Pipeline(sink)
    s = Session(pipeline)
    s.logon()
    s.subscribe(Subscription("md1", ("BTC/USD",), depth=10, trades=True))
    s.receive("W", snapshot_fields("md1", "BTC/USD", [
        bid("30000.1", "1.5"), bid("29999.0", "2"), ask("30001.0", "0.25"),
        ask("30002.5", "3")]))
    return pipeline, sink, s


def test_snapshot_then_new_change_delete_and_trades() -> None:
    pipeline, sink, s = l2_session()
    s.receive("X", incremental_fields("md1", "BTC/USD", [
        bid("30000.5", "0.1", action=0), ask("30001.0", "0.5", action=1),
        bid("29999.0", "0", action=2), trade("777", "30001.0", "0.01", "1")]))
    s.receive("X", incremental_fields("md1", "BTC/USD", [trade("778", "30000.1", "0.2", "2")]))
    s.receive("0", [])
    pipeline.close()
    (epoch_row,) = [e for e in rows(sink, "epochs") if e["channel"] == "book"]
    assert epoch_row["stream"] == "fix" and epoch_row["start_reason"] == "snapshot"
    assert epoch_row["depth"] == 10 and epoch_row["messages"] == 2
    assert epoch_row["checksum_ok"] == 0 and epoch_row["checksum_failed"] == 0
    assert (epoch_row["price_precision"], epoch_row["qty_precision"]) == (1, 2)
    book = rows(sink, "book")
    assert [r["event"] for r in book] == [0, 0, 0, 0, 1, 1, 1]
    assert all(r["checksum"] is None for r in book)
    assert book_of(sink, epoch_row["epoch"]) == {0: {300001: 150, 300005: 10},
                                                 1: {300010: 50, 300025: 300}}
    trades = rows(sink, "trades")
    assert [(t["trade_id"], t["side"], t["price"], t["qty"], t["ord_type"]) for t in trades] == [
        (777, 0, 300010, 1, "limit"), (778, 1, 300001, 2, "limit")]
    assert {t["source"] for t in trades} == {3}
    assert trades[0]["ts_ns"] == T0 + 123456789 and trades[0]["conn_id"] == CONN
    assert not rows(sink, "rejects") and not rows(sink, "gaps")
    live = [r for r in rows(sink, "liveness") if r["channel"] == "heartbeat"]
    assert live and live[0]["stream"] == "fix" and live[0]["frames"] == 1


def test_sequence_gap_ends_the_epoch_and_opens_a_gap_healed_by_the_next_snapshot() -> None:
    pipeline, sink, s = l2_session()
    s.receive("X", incremental_fields("md1", "BTC/USD", [bid("30000.5", "0.1", action=0)]))
    s.receive("X", incremental_fields("md1", "BTC/USD", [bid("30000.6", "0.1", action=0)]),
              skip=2)  # MsgSeqNum 4 and 5 lost
    # the resend's PossDup copy of an applied message is not applied twice
    s.receive("X", incremental_fields("md1", "BTC/USD", [bid("1.0", "9", action=0)]),
              seq=3, poss_dup=True)
    s.subscribe(Subscription("md1.1", ("BTC/USD",), depth=10, trades=True))
    s.receive("W", snapshot_fields("md1.1", "BTC/USD", [bid("30000.6", "0.1"),
                                                        ask("30001.0", "1")]))
    pipeline.close()
    epochs = [e for e in rows(sink, "epochs") if e["channel"] == "book"]
    assert [e["end_reason"] for e in epochs] == ["fix_seq_gap", "open"]
    assert epochs[0]["messages"] == 2 and epochs[1]["start_reason"] == "snapshot"
    (gap,) = rows(sink, "gaps")
    assert (gap["cause"], gap["channel"], gap["symbol"], gap["stream"]) == (
        "fix_seq_gap", "book", "BTC/USD", "fix")
    assert gap["missing"] == "MsgSeqNum 4..5" and gap["missing_count"] == 2
    assert gap["start_ns"] == epochs[0]["end_ns"] and gap["end_ns"] == epochs[1]["start_ns"]
    assert gap["healed_by"] == "resnapshot"
    (reject,) = rows(sink, "rejects")  # the X after the gap: no epoch to apply it to
    assert reject["reason"] == "update_before_snapshot"
    assert book_of(sink, epochs[1]["epoch"]) == {0: {300006: 1}, 1: {300010: 10}}


def test_market_data_request_reject_is_a_subscribe_failed_gap() -> None:
    sink = ListSink()
    pipeline = Pipeline(sink)
    s = Session(pipeline)
    s.logon()
    s.subscribe(Subscription("md9", ("ETH/USD", "XBT/EUR"), depth=25))
    s.receive("Y", reject_fields("md9", "0", "Unknown symbol: XBT/EUR"))
    s.subscribe(Subscription("md10", ("ETH/USD",), depth=25))
    s.receive("W", snapshot_fields("md10", "ETH/USD", [bid("2000.0", "1"), ask("2001.0", "1")]))
    pipeline.close()
    gaps = {(g["symbol"], g["cause"]): g for g in rows(sink, "gaps")}
    assert set(gaps) == {("ETH/USD", "subscribe_failed"), ("XBT/EUR", "subscribe_failed")}
    assert "Unknown symbol" in gaps[("XBT/EUR", "subscribe_failed")]["detail"]
    assert gaps[("ETH/USD", "subscribe_failed")]["healed_by"] == "resubscribe"
    assert gaps[("XBT/EUR", "subscribe_failed")]["end_ns"] is None  # still open at close


def test_session_reject_of_a_request_and_of_anything_else() -> None:
    sink = ListSink()
    pipeline = Pipeline(sink)
    s = Session(pipeline)
    s.logon()
    s.subscribe(Subscription("md1", ("BTC/USD",), depth=10))  # our MsgSeqNum 2
    s.receive("3", [(45, "2"), (372, "V"), (373, "5"), (58, "bad depth")])
    s.receive("3", [(45, "1"), (373, "99"), (58, "whatever")])
    pipeline.close()
    (gap,) = rows(sink, "gaps")
    assert gap["cause"] == "subscribe_failed" and gap["symbol"] == "BTC/USD"
    assert "session Reject of MsgSeqNum 2" in gap["detail"]
    (reject,) = rows(sink, "rejects")
    assert reject["reason"] == "fix_peer_reject" and reject["stage"] == "session"


def test_logout_ends_every_epoch_of_the_session() -> None:
    pipeline, sink, s = l2_session()
    s.receive("X", incremental_fields("md1", "BTC/USD", [trade("1", "30001.0", "0.01", "1")]))
    s.receive("5", [(58, "rollover")])
    pipeline.feed(Frame(recv_ns=s.now + MS, conn_id=CONN, stream="control", direction="in",
                        payload=mk.encode_marker(mk.Disconnected(conn_id=CONN,
                                                                 reason="peer logout"))))
    pipeline.close()
    epochs = {e["channel"]: e for e in rows(sink, "epochs")}
    assert {c: e["end_reason"] for c, e in epochs.items()} == {"book": "logout",
                                                                 "trade": "logout"}
    gaps = rows(sink, "gaps")
    assert {(g["channel"], g["cause"]) for g in gaps} == {("book", "fix_logout"),
                                                          ("trade", "fix_logout")}
    assert all(g["detail"] == "peer Logout: rollover" for g in gaps)


def test_garbled_and_too_low_messages_are_rejects() -> None:
    pipeline, sink, s = l2_session()
    good = _core.encode_fix("0", s.inbound, KRAKEN, ME, s.now, [])
    s.feed(good.replace(b"10=", b"10=9")[:-1] + b"\x01", "in")  # a wrong CheckSum
    s.receive("0", [], seq=1)  # too low, not PossDup
    s.feed(b"garbage", "in")
    pipeline.close()
    reasons = [r["reason"] for r in rows(sink, "rejects")]
    assert reasons == ["fix_checksum", "fix_seq_too_low", "fix_garbage"]


def test_level3_snapshot_and_order_events() -> None:
    sink = ListSink()
    pipeline = Pipeline(sink)
    s = Session(pipeline, stream="fix_l3")
    s.logon()
    s.subscribe(Subscription("l3a", ("BTC/USD",), depth=10, level3=True))

    def order(side: str, oid: str, price: str, size: str, action: int | None = None
              ) -> BookEntry:
        return BookEntry(side, oid, price, size, "10:00:00.000", action=action,
                         timestamp="2023-11-14T22:13:20.000000001Z")

    s.receive("W", snapshot_fields("l3a", "BTC/USD", [
        order("0", "OA", "100.0", "1.0"), order("0", "OB", "100.0", "2.0"),
        order("1", "OC", "101.5", "3.0")]))
    s.receive("X", incremental_fields("l3a", "BTC/USD", [
        order("0", "OD", "99.5", "4.0", action=0), order("0", "OA", "100.0", "0.5", action=1),
        order("1", "OC", "101.5", "3.0", action=2)]))
    pipeline.close()
    (epoch,) = rows(sink, "epochs")
    assert (epoch["stream"], epoch["channel"], epoch["end_reason"]) == ("fix_l3", "level3",
                                                                        "open")
    l3 = rows(sink, "level3")
    assert [(r["event"], r["order_id"], r["price"], r["qty"]) for r in l3] == [
        (0, "OA", 1000, 10), (0, "OB", 1000, 20), (0, "OC", 1015, 30),
        (1, "OD", 995, 40), (2, "OA", 1000, 5), (3, "OC", 1015, 30)]
    assert all(r["checksum"] is None for r in l3)
    assert l3[0]["ts_ns"] == T0 + 1


def test_state_round_trip_continues_the_session() -> None:
    pipeline, sink, s = l2_session()
    pipeline.flush()
    restored = Pipeline.from_state(pipeline.to_state(), sink)
    s.pipeline = restored
    s.receive("X", incremental_fields("md1", "BTC/USD", [bid("30000.5", "0.1", action=0)]),
              skip=1)
    restored.close()
    epochs = [e for e in rows(sink, "epochs") if e["channel"] == "book"]
    assert [e["end_reason"] for e in epochs] == ["fix_seq_gap"]
    (gap,) = rows(sink, "gaps")
    assert gap["missing"] == f"MsgSeqNum {s.inbound - 2}..{s.inbound - 2}"


def test_websocket_and_fix_books_of_one_symbol_keep_separate_epochs() -> None:
    pipeline, sink, s = l2_session()
    ws_snapshot = (b'{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD",'
                   b'"bids":[{"price":30000.1,"qty":1.5}],"asks":[{"price":30001.0,'
                   b'"qty":0.25}],"checksum":0}]}')
    pipeline.feed(Frame(recv_ns=s.now + 1, conn_id=9, stream="spot", direction="in",
                        payload=ws_snapshot))
    s.receive("X", incremental_fields("md1", "BTC/USD", [bid("30000.5", "0.1", action=0)]))
    pipeline.close()
    epochs = {e["stream"]: e for e in rows(sink, "epochs") if e["channel"] == "book"}
    assert set(epochs) == {"fix", "spot"}
    assert epochs["fix"]["end_reason"] == "open" and epochs["fix"]["messages"] == 2


def test_a_logout_we_started_is_a_disconnect_not_a_peer_logout() -> None:
    pipeline, sink, s = l2_session()
    s.send("5", [(58, "recorder stopping")])
    s.receive("5", [])
    pipeline.feed(Frame(recv_ns=s.now + MS, conn_id=CONN, stream="control", direction="in",
                        payload=mk.encode_marker(mk.Disconnected(conn_id=CONN,
                                                                 reason=mk.STOP_REASON))))
    pipeline.close()
    (epoch,) = [e for e in rows(sink, "epochs") if e["channel"] == "book"]
    assert epoch["end_reason"] == "disconnect"
    (gap,) = rows(sink, "gaps")
    assert (gap["cause"], gap["detail"]) == ("disconnect", mk.STOP_REASON)


def _valid_stream() -> list[tuple[str, bytes]]:
    """A short FIX session's frames (direction, payload), as capture journals them."""
    sink = ListSink()
    frames: list[tuple[str, bytes]] = []

    pipeline = Pipeline(sink)
    s = Session(pipeline)
    original = s.feed

    def record(payload: bytes, direction: str) -> None:
        frames.append((direction, payload))
        original(payload, direction)

    s.feed = record  # type: ignore[method-assign]
    s.logon()
    s.subscribe(Subscription("md1", ("BTC/USD",), depth=10, trades=True))
    s.receive("W", snapshot_fields("md1", "BTC/USD", [bid("30000.1", "1.5"),
                                                      ask("30001.0", "0.25")]))
    s.receive("X", incremental_fields("md1", "BTC/USD", [
        bid("30000.5", "0.1", action=0), ask("30001.0", "0.5", action=1),
        trade("777", "30001.0", "0.01", "1")]))
    s.receive("Y", reject_fields("md1", "0", "Unknown symbol"))
    s.receive("5", [(58, "bye")])
    return frames


VALID = _valid_stream()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 400),
                          st.integers(0, 255), st.booleans()), max_size=12),
       st.sampled_from(["fix", "fix_l3"]))
def test_any_damage_to_fix_frames_is_a_reject_never_an_internal_error(
        edits: list[tuple[int, int, int, bool]], stream: str) -> None:
    """Frames of a real session, reordered, truncated or with a byte changed, on either FIX
    stream: the pipeline writes rows or rejects, never an ``internal`` reject."""
    sink = ListSink()
    pipeline = Pipeline(sink)
    t = T0
    frames = list(VALID) + [VALID[i] for i, *_ in edits]
    for which, pos, byte, cut in edits:
        direction, payload = frames[which]
        if payload:
            p = pos % len(payload)
            payload = payload[:p] if cut else payload[:p] + bytes([byte]) + payload[p + 1:]
        frames[which] = (direction, payload)
    for direction, payload in frames:
        t += MS
        pipeline.feed(Frame(recv_ns=t, conn_id=CONN, stream=stream,  # type: ignore[arg-type]
                            direction=direction, payload=payload))  # type: ignore[arg-type]
    pipeline.close()
    assert "internal" not in pipeline.reject_counts, rows(sink, "rejects")
