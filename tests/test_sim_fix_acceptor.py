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
    (logout,) = decode(acceptor.on_frame(client_frame("0", 9, []), START))
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
