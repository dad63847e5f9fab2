"""The sim's FIX acceptor (first slice, L2): sans-IO answers, then our initiator over TLS.

The books a client builds from the acceptor's W and X messages must equal the sim market's
own top-N book (``SpotMarket.depth``) after every publish.
"""

from __future__ import annotations

import asyncio
import ssl
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from recorder import _core
from recorder.fix import Deliver, FixSession, LoggedOn, Send, SessionConfig, Subscription
from recorder.sim.fix_acceptor import AcceptorSession, FixAcceptorServer
from recorder.sim.market import SpotMarket
from recorder.sim.universe import load_universe

START = 1_700_000_000 * 10**9
S = 10**9
ME = "CLIENT1"


def market(rate: float = 4.0) -> SpotMarket:
    return SpotMarket(load_universe(None, pairs=4, futures_path=None, seed=3), seed=7, rate=rate,
                      start_ns=START)


def dec(pair: tuple[int, int] | list[int]) -> Decimal:
    mantissa, scale = pair
    return Decimal(mantissa).scaleb(-scale)


class Book:
    """A client's L2 book from W/X entries (exact decimals)."""

    def __init__(self) -> None:
        self.sides: dict[str, dict[Decimal, Decimal]] = {"0": {}, "1": {}}

    def apply(self, message: dict[str, Any]) -> None:
        if message["msg_type"] == "W":
            self.sides = {"0": {}, "1": {}}
        for e in message["entries"]:
            side = self.sides[e["type"]]
            price = dec(e["price"])
            if e["action"] == 2:
                del side[price]
            else:
                side[price] = dec(e["size"])

    def matches(self, m: SpotMarket, symbol: str, depth: int) -> bool:
        bids, asks = m.depth(symbol, depth)
        want = {"0": {Decimal(p): Decimal(q) for p, q, _ in bids},
                "1": {Decimal(p): Decimal(q) for p, q, _ in asks}}
        return want == self.sides and bool(bids) and bool(asks)


def client_frame(msg_type: str, seq: int, fields: list[tuple[int, str]]) -> dict[str, Any]:
    data = _core.encode_fix(msg_type, seq, ME, "KRAKEN-MD", START, fields)
    (decoded,) = _core.FixFramer().feed(data)
    return decoded


def decode(messages: list[bytes]) -> list[dict[str, Any]]:
    framer = _core.FixFramer()
    out = [f for m in messages for f in framer.feed(m)]
    assert all(f["ok"] for f in out), out
    return out


def logged_on_acceptor(m: SpotMarket) -> AcceptorSession:
    acceptor = AcceptorSession(m)
    (answer,) = decode(acceptor.on_frame(client_frame("A", 1, [(98, "0"), (108, "30"),
                                                               (141, "Y")]), START))
    assert answer["msg_type"] == "A" and answer["target"] == ME and answer["fields"][108] == "30"
    return acceptor


def test_snapshot_then_increments_track_the_market() -> None:
    m = market()
    symbol = m.symbols[0]
    acceptor = logged_on_acceptor(m)
    request = Subscription("B", (symbol,), depth=10).request_fields("B", True)
    (snapshot,) = decode(acceptor.on_frame(client_frame("V", 2, request), START))
    assert snapshot["msg_type"] == "W" and snapshot["fields"][55] == symbol
    book = Book()
    book.apply(snapshot)
    assert book.matches(m, symbol, 10)
    updates = 0
    for step in range(1, 40):
        m.advance(START + step * S // 4)
        for message in decode(acceptor.publish(m.now_ns)):
            assert message["msg_type"] == "X"
            book.apply(message)
            updates += 1
        assert book.matches(m, symbol, 10), step
    assert updates > 5
    assert acceptor.next_out > updates + 2


@pytest.mark.parametrize("fields, reason", [
    ([(262, "B"), (263, "1"), (264, "7"), (146, "1"), (55, "BTC/USD")], "5"),
    (Subscription("L", ("BTC/USD",), level3=True).request_fields("L", True), "B"),
    (Subscription("U", ("NOPE/USD",)).request_fields("U", True), "0"),
])
def test_requests_kraken_rejects(fields: list[tuple[int, str]], reason: str) -> None:
    acceptor = logged_on_acceptor(market())
    (reject,) = decode(acceptor.on_frame(client_frame("V", 2, fields), START))
    assert reject["msg_type"] == "Y" and reject["fields"][281] == reason


def test_duplicate_md_req_id_and_test_request_and_seq_gap() -> None:
    m = market()
    acceptor = logged_on_acceptor(m)
    request = Subscription("B", (m.symbols[0],)).request_fields("B", True)
    acceptor.on_frame(client_frame("V", 2, request), START)
    (dup,) = decode(acceptor.on_frame(client_frame("V", 3, request), START))
    assert dup["fields"][281] == "1"
    (heartbeat,) = decode(acceptor.on_frame(client_frame("1", 4, [(112, "T9")]), START))
    assert heartbeat["msg_type"] == "0" and heartbeat["fields"][112] == "T9"
    other = logged_on_acceptor(m)
    (answer,) = decode(other.on_frame(client_frame("5", 2, []), START))
    assert answer["msg_type"] == "5" and other.closed
    # an inbound gap: the acceptor asks for the missing numbers and carries on
    (resend,) = decode(acceptor.on_frame(client_frame("0", 9, []), START))
    assert resend["msg_type"] == "2" and resend["fields"][7] == "5" and not acceptor.closed
    fill = _core.encode_fix("4", 5, ME, "KRAKEN-MD", START, [(123, "Y"), (36, "10")],
                            poss_dup=True)
    assert acceptor.on_frame(_core.FixFramer().feed(fill)[0], START) == []
    (heartbeat,) = decode(acceptor.on_frame(client_frame("1", 10, [(112, "T10")]), START))
    assert heartbeat["fields"][112] == "T10"
    # a number that is too low without PossDupFlag ends the session
    (logout,) = decode(acceptor.on_frame(client_frame("0", 3, []), START))
    assert logout["msg_type"] == "5" and acceptor.closed


def test_first_message_must_be_logon() -> None:
    acceptor = AcceptorSession(market())
    assert acceptor.on_frame(client_frame("0", 1, []), START) == [] and acceptor.closed


def test_initiator_over_tls_builds_the_market_book(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_over_tls(tmp_path), timeout=120))


async def _over_tls(tmp_path: Path) -> None:
    m = market()
    symbol = m.symbols[1]
    server = FixAcceptorServer(m, lambda: m.now_ns, directory=tmp_path)
    port = await server.start()
    client_tls = ssl.create_default_context(cafile=str(server.cert_path))
    client_tls.minimum_version = ssl.TLSVersion.TLSv1_2
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_tls)
    session = FixSession(SessionConfig(ME, heartbeat_s=30))
    session.subscribe(Subscription("B", (symbol,), depth=25), m.now_ns)
    framer = _core.FixFramer()
    book = Book()
    seen: list[str] = []

    def act(actions: list) -> None:
        for action in actions:
            if isinstance(action, Send):
                writer.write(action.data)
            elif isinstance(action, Deliver):
                book.apply(action.message)
                seen.append(action.message["msg_type"])
            elif isinstance(action, LoggedOn):
                seen.append("logon")

    async def pump(until: Any) -> None:
        while not until():
            data = await reader.read(65536)
            assert data, "acceptor closed the connection"
            for frame in framer.feed(data):
                act(session.on_frame(frame, m.now_ns))
            await writer.drain()

    try:
        act(session.start(m.now_ns))
        await writer.drain()
        await pump(lambda: "W" in seen)
        assert seen[:2] == ["logon", "W"] and book.matches(m, symbol, 25)
        # liveness: our TestRequest is answered by the acceptor's Heartbeat
        act(session.on_timer(m.now_ns + 36 * S))
        await writer.drain()
        await pump(lambda: session.test_request_id is None)
        for step in range(1, 20):
            m.advance(START + step * S // 2)
            await server.publish()
            count = seen.count("X")
            await pump(lambda: book.matches(m, symbol, 25) or seen.count("X") > count + 50)
            assert book.matches(m, symbol, 25), step
        assert seen.count("X") > 3
        act(session.logout("done", m.now_ns))
        await writer.drain()
        await pump(lambda: session.state.value == "disconnected")
    finally:
        writer.close()
        await server.close()


# ---- L3, trades, resend and faults (issue #17 §3) ------------------------------------------

class L3Book:
    """A client's L3 book from W/X entries: order id -> (side, price, size), queue order kept."""

    def __init__(self) -> None:
        self.orders: dict[str, tuple[str, Decimal, Decimal]] = {}

    def apply(self, message: dict[str, Any]) -> None:
        if message["msg_type"] == "W":
            self.orders = {}
        for e in message["entries"]:
            if e["type"] == "2":
                continue
            if e["action"] == 2:
                del self.orders[e["id"]]
            elif e["action"] == 1:
                assert e["id"] in self.orders, e
                side, price, _ = self.orders[e["id"]]
                assert (side, price) == (e["type"], dec(e["price"]))
                self.orders[e["id"]] = (side, price, dec(e["size"]))
            else:
                assert e["id"] not in self.orders, e
                self.orders[e["id"]] = (e["type"], dec(e["price"]), dec(e["size"]))
            assert e["id"] is not None and e["timestamp_ns"] is not None

    def levels(self) -> dict[tuple[str, Decimal], list[tuple[str, Decimal]]]:
        out: dict[tuple[str, Decimal], list[tuple[str, Decimal]]] = {}
        for order_id, (side, price, size) in self.orders.items():
            out.setdefault((side, price), []).append((order_id, size))
        return out


def l3_truth(m: Any, symbol: str, depth: int) -> dict[tuple[str, Decimal], list[tuple[str, Decimal]]]:
    """The sim's level3 book (the orders of its WebSocket level3 feed), level by level in queue
    order."""
    bids, asks = m.l3_orders(symbol, depth)
    out: dict[tuple[str, Decimal], list[tuple[str, Decimal]]] = {}
    for side, rows in (("0", bids), ("1", asks)):
        for price, qty, order_id, _ts in rows:
            out.setdefault((side, Decimal(price)), []).append((order_id, Decimal(qty)))
    return out


def logged_on_l3(m: SpotMarket) -> AcceptorSession:
    acceptor = AcceptorSession(m, level3=True)
    decode(acceptor.on_frame(client_frame("A", 1, [(98, "0"), (108, "30"), (141, "Y")]), START))
    return acceptor


def test_l3_snapshot_and_increments_track_every_order() -> None:
    m = market()
    symbol = m.symbols[0]
    acceptor = logged_on_l3(m)
    request = Subscription("L", (symbol,), depth=10, level3=True).request_fields("L", True)
    (snapshot,) = decode(acceptor.on_frame(client_frame("V", 2, request), START))
    assert snapshot["msg_type"] == "W"
    bids, asks = m.l3_orders(symbol, 10)
    assert [e["id"] for e in snapshot["entries"]] == [r[2] for r in bids + asks]
    assert [e["queue_time_ns"] for e in snapshot["entries"]] == [r[3] for r in bids + asks]
    book = L3Book()
    book.apply(snapshot)
    assert book.levels() == l3_truth(m, symbol, 10)
    actions = set()
    for step in range(1, 40):
        m.advance(START + step * S // 4)
        for message in decode(acceptor.publish(m.now_ns)):
            assert message["msg_type"] == "X" and message["fields"][262] == "L"
            actions |= {e["action"] for e in message["entries"]}
            book.apply(message)
        assert book.levels() == l3_truth(m, symbol, 10), step
    assert actions == {0, 1, 2}


@pytest.mark.parametrize("level3, fields, reason", [
    (True, Subscription("B", ("BTC/USD",)).request_fields("B", True), "A"),
    (True, Subscription("T", ("BTC/USD",), level3=True).request_fields("T", True)[:5]
     + [(267, "3"), (269, "0"), (269, "1"), (269, "2"), (146, "1"), (55, "BTC/USD")], "C"),
    (False, Subscription("B", ("BTC/USD",)).request_fields("B", True)[:3] + [(265, "0")]
     + Subscription("B", ("BTC/USD",)).request_fields("B", True)[4:], "6"),
])
def test_l3_port_rejects(level3: bool, fields: list[tuple[int, str]], reason: str) -> None:
    m = market()
    acceptor = logged_on_l3(m) if level3 else logged_on_acceptor(m)
    (reject,) = decode(acceptor.on_frame(client_frame("V", 2, fields), START))
    assert reject["msg_type"] == "Y" and reject["fields"][281] == reason


def test_trades_are_the_websocket_trade_channel() -> None:
    """Every trade the sim's WebSocket ``trade`` channel publishes arrives as a 269=2 entry
    with the same id, price, quantity, side, order type and time."""
    import json

    m = market(rate=8.0)
    symbol = m.symbols[0]
    m.subscribe(("trade", symbol), snapshot=False)
    acceptor = logged_on_acceptor(m)
    request = Subscription("T", (symbol,), depth=10, trades=True).request_fields("T", True)
    decode(acceptor.on_frame(client_frame("V", 2, request), START))
    ws, fix = [], []
    for step in range(1, 60):
        m.advance(START + step * S // 4)
        for key, frame in m.updates():
            if key == ("trade", symbol):
                for t in json.loads(frame, parse_float=Decimal)["data"]:
                    ws.append((str(t["trade_id"]), t["price"], t["qty"],
                               "1" if t["side"] == "buy" else "2",
                               "1" if t["ord_type"] == "market" else "2", t["timestamp"]))
        for message in decode(acceptor.publish(m.now_ns)):
            for e in message["entries"]:
                if e["type"] == "2":
                    assert e["action"] == 0
                    stamp = _core_stamp(e["timestamp_ns"])
                    fix.append((e["id"], dec(e["price"]), dec(e["size"]), e["aggressor_side"],
                                e["ord_type"], stamp))
    assert len(ws) > 5 and fix == ws


def _core_stamp(ns: int) -> str:
    """RFC 3339 with microseconds, as the WebSocket trade channel writes its timestamp."""
    from recorder.sim.server import rfc3339_us

    return rfc3339_us(ns)


def test_resend_request_is_answered_with_a_gap_fill() -> None:
    m = market()
    acceptor = logged_on_acceptor(m)
    request = Subscription("B", (m.symbols[0],)).request_fields("B", True)
    decode(acceptor.on_frame(client_frame("V", 2, request), START))  # the W is seq 2
    (fill,) = decode(acceptor.on_frame(client_frame("2", 3, [(7, "1"), (16, "0")]), START + S))
    assert fill["msg_type"] == "4" and fill["seq_num"] == 1 and fill["poss_dup"]
    assert fill["fields"][123] == "Y" and fill["fields"][36] == "3"
    assert fill["orig_sending_time_ns"] == START  # the Logon answer's SendingTime
    (part,) = decode(acceptor.on_frame(client_frame("2", 4, [(7, "2"), (16, "2")]), START + S))
    assert part["seq_num"] == 2 and part["fields"][36] == "3"
    assert acceptor.on_frame(client_frame("2", 5, [(7, "9"), (16, "0")]), START) == []
    assert acceptor.next_out == 3  # gap fills use no new number


def test_fault_kinds_change_the_wire_as_recorded() -> None:
    m = market()
    symbol = m.symbols[0]
    acceptor = logged_on_acceptor(m)
    decode(acceptor.on_frame(client_frame("V", 2, Subscription("B", (symbol,)).request_fields(
        "B", True)), START))
    # gap: the next message skips one number
    out, detail = acceptor.inject("fix_gap", START)
    assert out == [] and detail["skipped_seq"] == 3 and detail["symbols"] == [symbol]
    (beat,) = decode(acceptor.on_frame(client_frame("1", 3, [(112, "A")]), START))
    assert beat["seq_num"] == 4
    # duplicate: the last data message (the W, seq 2) again, PossDup with OrigSendingTime
    (dup,), detail = acceptor.inject("fix_duplicate", START + 2 * S)
    dup_frame = decode([dup])[0]
    assert detail["seq"] == 2 and dup_frame["msg_type"] == "W" and dup_frame["seq_num"] == 2
    assert dup_frame["poss_dup"] and dup_frame["orig_sending_time_ns"] == START
    assert dup_frame["sending_time_ns"] == START + 2 * S
    # checksum: the next message is garbled
    _, detail = acceptor.inject("fix_checksum", START)
    (bad,) = acceptor.on_frame(client_frame("1", 4, [(112, "B")]), START)
    (frame,) = _core.FixFramer().feed(bad)
    assert detail["garbled_seq"] == 5 and not frame["ok"] and frame["reason"] == "checksum"
    # stall: nothing (not even heartbeats or answers) until it ends, then the answers
    _, detail = acceptor.inject("fix_stall", START)
    assert detail["duration_s"] == 75.0  # 2.5 x HeartBtInt 30
    assert acceptor.on_frame(client_frame("1", 5, [(112, "C")]), START + S) == []
    assert acceptor.publish(START + 74 * S) == []
    after = decode(acceptor.publish(START + 76 * S))
    assert after[0]["fields"][112] == "C" and after[-1]["msg_type"] == "0"
    # logout: a Logout, then the session is closed
    (logout,), detail = acceptor.inject("fix_logout", START + 77 * S)
    assert decode([logout])[0]["msg_type"] == "5" and acceptor.closed
    assert acceptor.inject("fix_gap", START + 78 * S)[1]["applied"] is False


def test_heartbeat_after_heartbt_int_of_silence() -> None:
    acceptor = logged_on_acceptor(market(rate=0.0))
    assert acceptor.publish(START + 29 * S) == []
    (beat,) = decode(acceptor.publish(START + 30 * S))
    assert beat["msg_type"] == "0"
    assert acceptor.publish(START + 31 * S) == []


def test_fix_fault_rules_are_scheduled_and_checked() -> None:
    from recorder.sim.faults import FaultError, FaultPlan, parse_faults

    for bad in ("fix_gap:rate=0.1", "fix_gap", "fix_logout:at=1,endpoint=spot",
                "fix_stall:at=1,endpoint=fix_l4"):
        with pytest.raises(FaultError):
            parse_faults(bad)
    now = [START]
    plan = FaultPlan(parse_faults("fix_gap:every=2,count=2;fix_stall:at=1,duration=3;"
                                  "stall:at=1"), seed=1, clock_ns=lambda: now[0])
    fired = []
    for step in range(1, 9):
        now[0] = START + step * S
        fired += [(step, r.kind) for r in plan.due_fix_faults()]
    assert fired == [(1, "fix_stall"), (2, "fix_gap"), (4, "fix_gap")]
    assert not plan.affects_frames("spot", "book", "BTC/USD")  # WebSocket frames untouched
