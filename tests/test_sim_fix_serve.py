"""``recorder sim`` serves FIX: our initiator over real TLS sockets against :class:`SimServer`
with an L3 port, the same market as its WebSocket feeds, and scheduled FIX faults.

The sim's clock is driven by the test (a settable clock), so the market only moves when the
test says so. After every advance the initiator's L3 book must equal the sim's level3 book
(the orders of its WebSocket ``level3`` feed), and every scheduled fault must reach the
initiator as the event FIX prescribes, and be in the truth file.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from recorder import _core
from recorder.fix import (
    Deliver,
    Disconnect,
    DuplicateIgnored,
    FixSession,
    GapDetected,
    InboundRejected,
    ResubscribeNeeded,
    Send,
    SessionConfig,
    Subscription,
)
from recorder.sim.faults import parse_faults
from recorder.sim.server import SimConfig, SimServer
from recorder.sim.truth import read_truth
from recorder.sim.universe import load_universe
from tests.test_sim_fix_acceptor import L3Book, l3_truth

START = 1_700_000_000 * 10**9
S = 10**9
HB = 2  # HeartBtInt of the test sessions (s)


class Clock:
    def __init__(self) -> None:
        self.ns = START

    def __call__(self) -> int:
        return self.ns


class Client:
    """Our initiator (FixSession + FixFramer) on one TLS connection."""

    def __init__(self, clock: Clock, name: str, *, level3: bool = True) -> None:
        self.clock = clock
        self.level3 = level3
        self.session = FixSession(SessionConfig(name, heartbeat_s=HB))
        self.framer = _core.FixFramer()
        self.book = L3Book()
        self.events: list[Any] = []
        self.closed = False
        self.md_req_id = ""  # the subscription's current MDReqID: older ones are stale


    async def connect(self, url: str, cert: str, subscription: Subscription) -> None:
        host, port = url.removeprefix("tls://").rsplit(":", 1)
        tls = ssl.create_default_context(cafile=cert)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        self.reader, self.writer = await asyncio.open_connection(host, int(port), ssl=tls)
        self.md_req_id = subscription.md_req_id
        self.session.subscribe(subscription, self.clock())
        self.act(self.session.start(self.clock()))

    def act(self, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.writer.write(action.data)
            elif isinstance(action, Deliver):
                # after a ResubscribeNeeded, messages of the old MDReqID are unsound
                if self.level3 and action.message["fields"].get(262) == self.md_req_id:
                    self.book.apply(action.message)
                self.events.append(action.message["msg_type"])
            else:
                self.events.append(action)
                if isinstance(action, ResubscribeNeeded):
                    (self.md_req_id,) = action.md_req_ids
                if isinstance(action, Disconnect):
                    self.closed = True
                    self.writer.close()

    async def pump(self, until: Any, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while not until() and not self.closed:
            assert time.monotonic() < deadline, self.events[-10:]
            try:
                data = await asyncio.wait_for(self.reader.read(65536), 0.05)
            except TimeoutError:
                continue
            if not data:
                self.closed = True
                break
            for frame in self.framer.feed(data):
                self.act(self.session.on_frame(frame, self.clock()))
            if not self.closed:
                await self.writer.drain()
        assert until(), self.events[-10:]

    async def take_pending(self) -> None:
        """Read and act on everything that arrives until 0.2 s of silence."""
        while True:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), 0.2)
            except TimeoutError:
                return
            assert data
            for frame in self.framer.feed(data):
                self.act(self.session.on_frame(frame, self.clock()))

    def count(self, kind: type) -> int:
        return sum(isinstance(e, kind) for e in self.events)


def test_l3_book_and_every_fault_over_tls(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_serve(tmp_path), timeout=240))


async def _serve(tmp_path: Path) -> None:
    clock = Clock()
    universe = load_universe(None, pairs=4, futures_path=None, seed=3)
    truth = tmp_path / "truth.jsonl"
    config = SimConfig(port=0, seed=7, rate=4.0, tick_s=0.002, truth_path=truth,
                       fix_l3_port=0, fix_cert_dir=tmp_path / "cert")
    server = SimServer(config, universe, clock_ns=clock, start_ns=START)
    urls = await server.start()
    assert urls["fix_l3"].startswith("tls://") and Path(urls["fix_cert"]).is_file()
    assert "fix_l2" not in urls
    market = server.spot
    symbol = market.symbols[0]
    depth = 10
    client = Client(clock, "CLIENT1")

    def in_sync() -> bool:
        return client.book.levels() == l3_truth(market, symbol, depth)

    async def advance(seconds: float) -> None:
        clock.ns += int(seconds * S)
        await client.pump(lambda: market.now_ns == clock.ns and in_sync())

    async def fault(spec: str) -> None:
        server.faults.add(parse_faults(spec))
        await advance(0.25)

    try:
        await client.connect(urls["fix_l3"], urls["fix_cert"],
                             Subscription("L3", (symbol,), depth=depth, level3=True))
        await client.pump(lambda: "W" in client.events and in_sync())
        for _ in range(8):
            await advance(0.25)
        assert client.events.count("X") > 3

        await fault("fix_gap:at=0.1,endpoint=fix_l3")
        await client.pump(lambda: client.count(ResubscribeNeeded) == 1 and in_sync())
        gap = next(e for e in client.events if isinstance(e, GapDetected))
        assert gap.received == gap.expected + 1

        await fault("fix_duplicate:at=0.1")
        await client.pump(lambda: client.count(DuplicateIgnored) == 1)

        await fault(f"fix_checksum:at=0.1,symbol={symbol}")
        await advance(0.25)
        await client.pump(lambda: client.count(ResubscribeNeeded) == 2 and in_sync())
        bad = [e for e in client.events if isinstance(e, InboundRejected)]
        assert [e.reason for e in bad] == ["checksum"]

        for _ in range(4):
            await advance(0.25)
            assert in_sync()

        server.faults.add(parse_faults("fix_logout:at=0.1"))
        clock.ns += S // 4
        await client.pump(lambda: client.closed)
        (end,) = [e for e in client.events if isinstance(e, Disconnect)]
        assert end.clean and "sim fault" in end.reason

        # a heartbeat stall: a second session sees silence, sends a TestRequest, times out
        stalled = Client(clock, "CLIENT2")
        await stalled.connect(urls["fix_l3"], urls["fix_cert"],
                              Subscription("S", (symbol,), depth=depth, level3=True))
        client = stalled
        await client.pump(lambda: "W" in client.events)
        server.faults.add(parse_faults("fix_stall:at=0"))
        clock.ns += S // 100
        await asyncio.sleep(0.2)
        await client.take_pending()  # what was sent before the stall began
        sent = client.session.next_out
        clock.ns += int(1.3 * HB * S)
        client.act(client.session.on_timer(clock.ns))
        assert client.session.test_request_id is not None and client.session.next_out > sent
        await client.writer.drain()
        try:  # stalled: neither the answer nor a heartbeat comes
            data = await asyncio.wait_for(client.reader.read(65536), 0.5)
        except TimeoutError:
            data = b""
        assert data == b"", data
        clock.ns += int(1.0 * HB * S)
        client.act(client.session.on_timer(clock.ns))
        (end,) = [e for e in client.events if isinstance(e, Disconnect)]
        assert not end.clean and "heartbeat timeout" in end.reason
    finally:
        client.writer.close()
        await server.stop()

    faults = [r for r in read_truth(truth) if r.get("kind") == "fault"]
    assert [r["fault"] for r in faults] == [
        "fix_gap", "fix_duplicate", "fix_checksum", "fix_logout", "fix_stall"]
    for record in faults:
        assert record["endpoint"] == "fix_l3" and record["t_ns"] >= START
        assert record["detail"]["session"] in ("CLIENT1", "CLIENT2")
        assert record["detail"]["symbols"] == [symbol]
    assert faults[0]["detail"]["skipped_seq"] > 1 and faults[1]["detail"]["msg_type"] in "WX"
    assert faults[2]["symbol"] == symbol and faults[4]["detail"]["duration_s"] == 2.5 * HB


def test_recorder_sim_prints_fix_urls_and_cert(tmp_path: Path) -> None:
    """The command line: ``--fix-l2-port 0 --fix-l3-port 0`` serves both, and the JSON line
    names the ports and the certificate; the L2 port answers a TLS Logon."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "recorder", "sim", "--port", "0", "--pairs", "3",
         "--fix-l2-port", "0", "--fix-l3-port", "0", "--fix-cert-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        urls = json.loads(proc.stdout.readline())
        assert urls["fix_cert"] == str(tmp_path / "fix-sim-cert.pem")
        assert urls["fix_l2"].startswith("tls://127.0.0.1:")
        assert urls["fix_l3"].startswith("tls://127.0.0.1:")
        asyncio.run(asyncio.wait_for(_logon(urls), timeout=60))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


async def _logon(urls: dict[str, Any]) -> None:
    client = Client(Clock(), "CLI", level3=False)
    client.clock.ns = time.time_ns()
    await client.connect(urls["fix_l2"], urls["fix_cert"], Subscription("B", ("BTC/USD",)))
    await client.pump(lambda: "W" in client.events or client.closed)
    assert "W" in client.events
    client.act(client.session.logout("bye", time.time_ns()))
    await client.writer.drain()
    await client.pump(lambda: client.closed)
