"""Capture over FIX (issue #17): a worker's FIX part against the sim's TLS acceptor.

A real :class:`~recorder.capture.service.Worker` (its WebSocket venue offline) records three
pairs from :class:`~recorder.sim.fix_acceptor.FixAcceptorServer` over TLS, trusting the
acceptor's generated certificate through ``[fix] ca_file``. The sim market moves and the
acceptor publishes incremental refreshes; after a clean stop the archive's ``book`` rows of
each pair's FIX epoch rebuild exactly the sim market's top-10 book (and so does
``Archive.book_at``); ``recorder verify`` and the audit call them not checkable (no CRC32);
then ``recorder ingest`` re-derives the worker's journal into a fresh archive, and every
dataset is the same row set. Further tests: a connection the exchange drops, a MsgSeqNum the
exchange skips, refused L3 requests, a failing session, and which worker runs FIX.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from recorder import _core
from recorder.archive.schema import load_schemas
from recorder.audit.report import build_report
from recorder.capture.config import load_config
from recorder.capture.fix_part import FixConnection
from recorder.capture.service import Worker, WorkerSpec
from recorder.capture.shards import WorkerPlan
from recorder.fix.messages import BookEntry, incremental_fields, snapshot_fields
from recorder.sim.fix_acceptor import FixAcceptorServer, self_signed_tls
from recorder.sim.market import SpotMarket
from recorder.sim.universe import load_universe
from recorder.query.api import Archive
from recorder.verify import verify_archive
from tests.test_capture_integration import PY, dataset, journal_frames, rows
from tests.test_capture_rederive import _difference, _rederive

pytestmark = pytest.mark.integration

OFFLINE = "ws://127.0.0.1:9"
START = 1_700_000_000 * 10**9
S = 10**9
DEPTH = 10


def _worker(tmp_path: Path, port: int, cert: Path, symbols: list[str], *,
            heartbeat_s: int = 5, channels: list[str] | None = None,
            same_port: bool = False) -> Worker:
    cfg = load_config(None, env={}, overrides={
        "venue": {"spot_ws": OFFLINE, "l3_ws": OFFLINE, "futures_ws": OFFLINE,
                  "spot_rest": "http://127.0.0.1:9", "futures_rest": "http://127.0.0.1:9"},
        "schedule": {"disk_min_free_bytes": 1, "disk_resume_free_bytes": 1},
        # the venue's WebSocket is offline here: no instrument snapshot to wait for
        "connection": {"backoff_base_s": 0.05, "backoff_max_s": 0.2, "ack_timeout_s": 0.2},
        "fix": {"host": "127.0.0.1", "l2_port": port,
                "l3_port": port if same_port else 4005, "sender_comp_id": "RECORDER1",
                "symbols": symbols, "channels": channels or ["L2"], "depth": DEPTH,
                "ca_file": str(cert), "heartbeat_s": heartbeat_s, "backoff_base_s": 0.05,
                "backoff_max_s": 0.2}},
        top_overrides={"archive_root": tmp_path / "archive", "host": "fix"})
    return Worker(WorkerSpec(cfg, WorkerPlan(index=0, connections=()), 1, "t"))


def _book(book_rows: list[dict[str, Any]], epoch: int) -> dict[int, dict[Decimal, Decimal]]:
    sides: dict[int, dict[Decimal, Decimal]] = {0: {}, 1: {}}
    for r in book_rows:
        if r["epoch"] != epoch:
            continue
        price = Decimal(r["price"]).scaleb(-r["price_scale"])
        qty = Decimal(r["qty"]).scaleb(-r["qty_scale"])
        if qty == 0:
            sides[r["side"]].pop(price, None)
        else:
            sides[r["side"]][price] = qty
    return sides


async def _until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def test_fix_capture_rebuilds_the_sim_books_and_rederives_the_same(tmp_path: Path) -> None:
    market = SpotMarket(load_universe(None, pairs=4, futures_path=None, seed=3), seed=7,
                        rate=4.0, start_ns=START)
    symbols = list(market.symbols[:3])

    async def scenario() -> Worker:
        server = FixAcceptorServer(market, time.time_ns, directory=tmp_path)
        port = await server.start()
        worker = _worker(tmp_path, port, server.cert_path, symbols)
        assert worker.fix is not None
        (conn,) = worker.fix.connections
        task = asyncio.create_task(worker.run())
        try:
            await _until(lambda: conn.logged_on and conn.messages >= 1 + len(symbols), 30,
                         "logon and one snapshot per pair")
            for step in range(1, 25):
                market.advance(START + step * S // 2)
                await server.publish()
                await asyncio.sleep(0.01)
            await _until(lambda: _caught_up(conn, server), 10, "the last refreshes")
            worker.request_stop()
            await asyncio.wait_for(task, 30)
        finally:
            if not task.done():
                task.cancel()
            await server.close()
        return worker

    worker = asyncio.run(scenario())
    root = worker.root
    book_rows = rows(root.parent, "book", [root])
    epochs = [e for e in rows(root.parent, "epochs", [root]) if e["channel"] == "book"]
    assert {e["symbol"] for e in epochs} == set(symbols)
    for symbol in symbols:
        (epoch,) = [e for e in epochs if e["symbol"] == symbol]
        assert epoch["stream"] == "fix" and epoch["start_reason"] == "snapshot"
        assert epoch["end_reason"] == "disconnect" and epoch["depth"] == DEPTH
        assert epoch["checksum_ok"] == epoch["checksum_failed"] == 0  # no CRC32 over FIX
        assert epoch["messages"] > 5, epoch
        bids, asks = market.depth(symbol, DEPTH)
        want = {0: {Decimal(p): Decimal(q) for p, q, _ in bids},
                1: {Decimal(p): Decimal(q) for p, q, _ in asks}}
        assert _book(book_rows, epoch["epoch"]) == want, symbol
    assert all(r["checksum"] is None for r in book_rows)
    # the researcher's API reads a FIX book like any other: book_at at its last message
    archive = Archive(root)
    for symbol in symbols:
        (epoch,) = [e for e in epochs if e["symbol"] == symbol]
        at = archive.book_at(symbol, epoch["end_ns"], clock="receive")
        assert at.valid, at.reason
        got = {(side, Decimal(str(price)), Decimal(str(qty)))
               for side, price, qty in at.frame.select("side", "price", "qty").rows()}
        bids, asks = market.depth(symbol, DEPTH)
        assert got == {("bid", Decimal(p), Decimal(q)) for p, q, _ in bids} | {
            ("ask", Decimal(p), Decimal(q)) for p, q, _ in asks}, symbol
    gaps = rows(root.parent, "gaps", [root])
    assert {(g["cause"], g["detail"]) for g in gaps} == {("disconnect", "process stop")}, gaps
    assert not [r for r in rows(root.parent, "rejects", [root]) if r["stream"] == "fix"]
    live = [r for r in rows(root.parent, "liveness", [root]) if r["stream"] == "fix"]
    assert {r["symbol"] for r in live if r["channel"] == "book"} == set(symbols)

    for engine in ("core", "python"):
        report = verify_archive(root, engine=engine)  # type: ignore[arg-type]
        assert report["not_checkable_epochs"] == len(symbols), report
        assert report["not_checkable_messages"] == sum(e["messages"] for e in epochs)
        assert report["messages_checked"] == report["failed"] == 0
        assert report["unverifiable_messages"] == 0 and report["checkpoints_failed"] == 0
    shown = subprocess.run([PY, "-m", "recorder", "verify", "--archive", str(root)],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "not checkable, FIX carries no Kraken CRC32" in shown.stdout
    journal = subprocess.run([PY, "-m", "recorder", "verify", "--journal", str(root)],
                             capture_output=True, text=True, timeout=120)
    assert journal.returncode == 0, journal.stderr
    assert "not checkable, FIX carries no Kraken CRC32" in journal.stdout

    audit = build_report(root)
    assert audit["verification"]["not_checkable_epochs"] == len(symbols)
    assert audit["verification"]["messages_checked"] == 0
    books = {c["symbol"]: c for c in audit["channels"] if c["channel"] == "book"}
    assert set(books) == set(symbols)
    assert all(c["missing_ns"] == 0 and c["coverage_pct"] == 100.0 for c in books.values())

    fresh = tmp_path / "rederived"
    _rederive(root, fresh)
    con = duckdb.connect()
    for name in sorted(load_schemas()):
        live_t, again = dataset(root.parent, name, [root]), dataset(fresh, name, [fresh])
        if live_t is None and again is None:
            continue
        assert live_t is not None and again is not None, name
        assert _difference(con, live_t, again) == [], name
        assert _difference(con, again, live_t) == [], name


def _caught_up(conn: FixConnection, server: FixAcceptorServer,
               other: FixConnection | None = None) -> bool:
    """Every message the acceptor sent has reached the recorder's journal."""
    sessions = server.sessions
    sent = sum(session.next_out - 1 for _, session in sessions)
    got = conn.messages + (other.messages if other is not None else 0)
    return bool(sessions) and got >= sent


def test_fix_capture_reconnects_and_resubscribes_after_a_dropped_connection(
        tmp_path: Path) -> None:
    market = SpotMarket(load_universe(None, pairs=4, futures_path=None, seed=5), seed=9,
                        rate=4.0, start_ns=START)
    symbols = list(market.symbols[:2])

    async def scenario() -> Worker:
        server = FixAcceptorServer(market, time.time_ns, directory=tmp_path)
        port = await server.start()
        worker = _worker(tmp_path, port, server.cert_path, symbols)
        assert worker.fix is not None
        (conn,) = worker.fix.connections
        task = asyncio.create_task(worker.run())
        try:
            await _until(lambda: conn.logged_on and conn.messages >= 1 + len(symbols), 30,
                         "logon and snapshots")
            first = conn.conn_id
            assert server.drop_connections() == 1  # the exchange drops the TCP connection
            await _until(lambda: conn.sessions == 2 and conn.logged_on and conn.conn_id != first
                         and _caught_up(conn, server), 30, "reconnect, logon and snapshots")
            market.advance(START + S)
            await server.publish()
            await _until(lambda: _caught_up(conn, server), 10, "the refreshes")
            worker.request_stop()
            await asyncio.wait_for(task, 30)
        finally:
            if not task.done():
                task.cancel()
            await server.close()
        return worker

    worker = asyncio.run(scenario())
    root = worker.root
    epochs = [e for e in rows(root.parent, "epochs", [root]) if e["channel"] == "book"]
    for symbol in symbols:
        mine = sorted((e for e in epochs if e["symbol"] == symbol), key=lambda e: e["start_ns"])
        assert [e["end_reason"] for e in mine] == ["disconnect", "disconnect"], mine
        assert mine[0]["conn_id"] != mine[1]["conn_id"]
    gaps = rows(root.parent, "gaps", [root])
    healed = [g for g in gaps if g["healed_by"] == "resnapshot"]
    assert {(g["symbol"], g["cause"]) for g in healed} == {(s, "disconnect") for s in symbols}
    book_rows = rows(root.parent, "book", [root])
    for symbol in symbols:
        last = max((e for e in epochs if e["symbol"] == symbol), key=lambda e: e["start_ns"])
        bids, asks = market.depth(symbol, DEPTH)
        assert _book(book_rows, last["epoch"]) == {
            0: {Decimal(p): Decimal(q) for p, q, _ in bids},
            1: {Decimal(p): Decimal(q) for p, q, _ in asks}}


def _run(tmp_path: Path, market: SpotMarket, symbols: list[str], body: Any,
         **fix: Any) -> Worker:
    """Run a worker against the sim's acceptor; ``body(worker, conn, server)`` drives it."""

    async def scenario() -> Worker:
        server = FixAcceptorServer(market, time.time_ns, directory=tmp_path)
        port = await server.start()
        worker = _worker(tmp_path, port, server.cert_path, symbols, **fix)
        assert worker.fix is not None
        task = asyncio.create_task(worker.run())
        try:
            await body(worker, worker.fix.connections, server)
            worker.request_stop()
            await asyncio.wait_for(task, 30)
        finally:
            if not task.done():
                task.cancel()
            await server.close()
        return worker

    return asyncio.run(scenario())


def test_a_sequence_gap_ends_the_epochs_and_fresh_snapshots_heal_them(tmp_path: Path) -> None:
    """The exchange skips a MsgSeqNum (the sim's ``fix_gap`` fault): the archive ends each book
    epoch with a ``fix_seq_gap`` gap naming the lost number. The session's ResendRequest is
    answered with a SequenceReset-GapFill (no replay), capture resubscribes on the same
    connection, and the new snapshots heal the gaps."""
    market = SpotMarket(load_universe(None, pairs=4, futures_path=None, seed=11), seed=2,
                        rate=4.0, start_ns=START)
    symbols = list(market.symbols[:2])

    async def body(worker: Worker, conns: list[FixConnection], server: FixAcceptorServer) -> None:
        (conn,) = conns
        await _until(lambda: conn.logged_on and _caught_up(conn, server), 30, "snapshots")
        hits: list[dict[str, Any]] = []
        assert server.inject("fix_gap", record=lambda kind, **f: hits.append(f["detail"])) == 1
        market.advance(START + S)
        await server.publish()
        await _until(lambda: conn.gaps == 1, 10, "the gap seen")
        await asyncio.sleep(0.3)  # the GapFill, the resubscription and its snapshots
        await _until(lambda: _caught_up(conn, server), 30, "the resubscription's snapshots")
        market.advance(START + 2 * S)
        await server.publish()
        await _until(lambda: _caught_up(conn, server), 10, "the refreshes")
        assert conn.sessions == 1  # healed on the same connection
        body.lost = hits[0]["skipped_seq"]  # type: ignore[attr-defined]

    worker = _run(tmp_path, market, symbols, body, heartbeat_s=1)
    root = worker.root
    gaps = rows(root.parent, "gaps", [root])
    seq_gaps = [g for g in gaps if g["cause"] == "fix_seq_gap"]
    assert {g["symbol"] for g in seq_gaps} == set(symbols), gaps
    lost = body.lost  # type: ignore[attr-defined]
    assert all(g["missing"] == f"MsgSeqNum {lost}..{lost}" and g["missing_count"] == 1
               and g["healed_by"] == "resnapshot" and g["end_ns"] is not None
               for g in seq_gaps), seq_gaps
    epochs = [e for e in rows(root.parent, "epochs", [root]) if e["channel"] == "book"]
    book_rows = rows(root.parent, "book", [root])
    for symbol in symbols:
        mine = sorted((e for e in epochs if e["symbol"] == symbol), key=lambda e: e["start_ns"])
        assert mine[0]["end_reason"] == "fix_seq_gap", mine
        bids, asks = market.depth(symbol, DEPTH)
        assert _book(book_rows, mine[-1]["epoch"]) == {
            0: {Decimal(p): Decimal(q) for p, q, _ in bids},
            1: {Decimal(p): Decimal(q) for p, q, _ in asks}}


def test_a_refused_level3_subscription_is_an_open_subscribe_failed_gap(tmp_path: Path) -> None:
    """The L3 session's requests are refused (35=Y, MDReqRejReason B): one open
    ``subscribe_failed`` gap per symbol with the reason; the L2 session records as usual."""
    market = SpotMarket(load_universe(None, pairs=4, futures_path=None, seed=3), seed=7,
                        rate=4.0, start_ns=START)
    symbols = list(market.symbols[:2])

    async def body(worker: Worker, conns: list[FixConnection], server: FixAcceptorServer) -> None:
        await _until(lambda: all(c.logged_on for c in conns) and all(
            c.messages >= 1 + len(symbols) for c in conns), 30, "snapshots and refusals")
        await _until(lambda: _caught_up(conns[0], server, conns[1]), 10, "everything")

    worker = _run(tmp_path, market, symbols, body, channels=["L2", "L3"], same_port=True)
    root = worker.root
    gaps = rows(root.parent, "gaps", [root])
    refused = [g for g in gaps if g["cause"] == "subscribe_failed"]
    assert {(g["stream"], g["channel"], g["symbol"]) for g in refused} == {
        ("fix_l3", "level3", s) for s in symbols}, gaps
    assert all("Level3 not available" in g["detail"] and g["healed_by"] == "none"
               for g in refused)
    epochs = rows(root.parent, "epochs", [root])
    assert {(e["stream"], e["channel"]) for e in epochs} == {("fix", "book")}


@pytest.mark.parametrize(("shard", "index", "runs"), [("1/1", 0, True), ("1/2", 0, True),
                                                       ("1/2", 1, False), ("2/2", 0, False)])
def test_the_fix_source_runs_in_one_worker_of_one_shard(tmp_path: Path, shard: str, index: int,
                                                        runs: bool) -> None:
    """Kraken knows one session per SenderCompID and port: never two FIX sessions."""
    cfg = load_config(None, env={}, overrides={
        "connection": {"shard": shard},
        "fix": {"sender_comp_id": "RECORDER1", "symbols": ["BTC/USD"]}},
        top_overrides={"archive_root": tmp_path / "archive", "host": "fix"})
    worker = Worker(WorkerSpec(cfg, WorkerPlan(index=index, connections=()), 2, "t"))
    assert (worker.fix is not None) == runs
    if runs:
        assert worker.fix is not None
        assert [(c.name, c.stream, c.port) for c in worker.fix.connections] == [
            ("fix-l2", "fix", 4000)]


def test_a_failing_session_ends_that_session_not_the_worker(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """A bug in the session layer (here: every received frame raises) is logged, the
    connection is closed and retried with backoff; the worker keeps running."""
    market = SpotMarket(load_universe(None, pairs=4, futures_path=None, seed=3), seed=7,
                        rate=4.0, start_ns=START)
    symbols = list(market.symbols[:1])

    def broken(self: Any, frame: Any, now_ns: int) -> list[Any]:
        raise RuntimeError("session bug")

    monkeypatch.setattr("recorder.fix.session.FixSession.on_frame", broken)

    async def body(worker: Worker, conns: list[FixConnection], server: FixAcceptorServer) -> None:
        (conn,) = conns
        await _until(lambda: conn.sessions >= 3, 30, "three attempts")
        assert conn.last_error is not None and "session bug" in conn.last_error
        assert not worker.stopping.is_set()

    worker = _run(tmp_path, market, symbols, body)
    logons = [f for f in journal_frames(worker.root)
              if f.stream == "fix" and f.direction == "in" and b"\x0135=A\x01" in f.payload]
    assert len(logons) >= 3  # each attempt's Logon answer was journaled before the failure


class ScriptedAcceptor:
    """A tiny FIX acceptor for what the sim's acceptor does not serve yet (L3, trades): it
    answers a Logon, a TestRequest and a Logout, and answers each MarketDataRequest with a
    fixed W and X built with :mod:`recorder.fix.messages`."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir()
        self.ssl_context, self.cert_path = self_signed_tls(directory)
        self.sent = 0
        self.logons = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port,
                                                  ssl=self.ssl_context)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and drop every connection (the exchange goes away)."""
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = _core.FixFramer()
        seq, client = 1, "?"
        self._writers.append(writer)

        def send(msg_type: str, fields: list[tuple[int, str]]) -> None:
            nonlocal seq
            writer.write(_core.encode_fix(msg_type, seq, "KRAKEN-MD", client, time.time_ns(),
                                          fields))
            seq += 1
            self.sent += 1

        try:
            while data := await reader.read(65536):
                for f in framer.feed(data):
                    fields = f["fields"]
                    if f["msg_type"] == "A":
                        client = f["sender"]
                        self.logons += 1
                        send("A", [(98, "0"), (108, fields[108])])
                    elif f["msg_type"] == "1":
                        send("0", [(112, fields[112])])
                    elif f["msg_type"] == "5":
                        send("5", [])
                    elif f["msg_type"] == "V" and fields[263] == "1":
                        for msg_type, body in self._answer(fields[262], fields[55],
                                                           fields[266] == "N"):
                            send(msg_type, body)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            self._writers.remove(writer)

    @staticmethod
    def _answer(md_req_id: str, symbol: str, level3: bool) -> list[tuple[str, Any]]:
        t, ts = "10:00:00.000", "2023-11-14T22:13:20.000000001Z"
        if level3:
            return [
                ("W", snapshot_fields(md_req_id, symbol, [
                    BookEntry("0", "OA", "100.0", "1.0", t, timestamp=ts),
                    BookEntry("0", "OB", "100.0", "2.0", t, timestamp=ts),
                    BookEntry("1", "OC", "101.5", "3.0", t, timestamp=ts)])),
                ("X", incremental_fields(md_req_id, symbol, [
                    BookEntry("0", "OD", "99.5", "4.0", t, action=0, timestamp=ts),
                    BookEntry("0", "OA", "100.0", "0.5", t, action=1, timestamp=ts),
                    BookEntry("1", "OC", "101.5", "3.0", t, action=2, timestamp=ts)]))]
        return [
            ("W", snapshot_fields(md_req_id, symbol, [
                BookEntry("0", "O100.0", "100.0", "1.0", t),
                BookEntry("1", "O101.0", "101.0", "2.0", t)])),
            ("X", incremental_fields(md_req_id, symbol, [
                BookEntry("0", "O100.0", "100.0", "0", t, action=2),
                BookEntry("2", "9001", "101.0", "0.5", t, action=0, timestamp=ts, ord_type="1",
                          aggressor_side="1")]))]


def test_level3_and_trades_over_fix_sessions(tmp_path: Path) -> None:
    """Both sessions (L2 with trades, L3) through a real worker: ``level3`` rows from the
    ``fix_l3`` stream, ``trades`` with source ``fix``, and the L2 book after a delete."""
    symbols = ["BTC/USD"]

    async def scenario() -> Worker:
        acceptor = ScriptedAcceptor(tmp_path / "scripted")
        port = await acceptor.start()
        worker = _worker(tmp_path, port, acceptor.cert_path, symbols, channels=["L2", "L3"],
                         same_port=True)
        assert worker.fix is not None
        conns = worker.fix.connections
        task = asyncio.create_task(worker.run())
        try:
            await _until(lambda: sum(c.messages for c in conns) >= acceptor.sent >= 6, 30,
                         "both sessions' W and X")
            worker.request_stop()
            await asyncio.wait_for(task, 30)
        finally:
            if not task.done():
                task.cancel()
            await acceptor.close()
        return worker

    worker = asyncio.run(scenario())
    root = worker.root
    epochs = {(e["stream"], e["channel"]): e for e in rows(root.parent, "epochs", [root])}
    assert set(epochs) == {("fix", "book"), ("fix", "trade"), ("fix_l3", "level3")}
    l3 = rows(root.parent, "level3", [root])
    assert [(r["event"], r["order_id"], r["price"], r["qty"]) for r in l3] == [
        (0, "OA", 1000, 10), (0, "OB", 1000, 20), (0, "OC", 1015, 30),
        (1, "OD", 995, 40), (2, "OA", 1000, 5), (3, "OC", 1015, 30)]
    assert {r["epoch"] for r in l3} == {epochs[("fix_l3", "level3")]["epoch"]}
    (trade,) = rows(root.parent, "trades", [root])
    assert (trade["source"], trade["trade_id"], trade["side"], trade["ord_type"],
            trade["price"], trade["qty"]) == (3, 9001, 0, "market", 1010, 5)
    assert _book(rows(root.parent, "book", [root]), epochs[("fix", "book")]["epoch"]) == {
        0: {}, 1: {Decimal("101.0"): Decimal("2.0")}}
    book_l3 = Archive(root).book_at("BTC/USD", epochs[("fix_l3", "level3")]["end_ns"],
                                    channel="level3", clock="receive")
    assert book_l3.valid, book_l3.reason
    orders = {oid: (side, price, qty) for side, oid, price, qty
              in book_l3.frame.select("side", "order_id", "price", "qty").rows()}
    assert orders == {"OA": ("bid", Decimal("100.0"), Decimal("0.5")),
                      "OB": ("bid", Decimal("100.0"), Decimal("2.0")),
                      "OD": ("bid", Decimal("99.5"), Decimal("4.0"))}


def test_the_audit_tells_a_silent_fix_book_from_a_missing_one(tmp_path: Path) -> None:
    """After its snapshot the book stays silent: only heartbeats arrive (answers to our
    TestRequests), and the audit counts that time as covered, not missing. Then the exchange
    goes away for a while: that stretch is missing (a disconnect gap from the last heartbeat),
    healed by the next snapshot after the reconnect."""
    symbols = ["BTC/USD"]

    async def scenario() -> tuple[Worker, int]:
        acceptor = ScriptedAcceptor(tmp_path / "scripted")
        port = await acceptor.start()
        worker = _worker(tmp_path, port, acceptor.cert_path, symbols, heartbeat_s=1)
        assert worker.fix is not None
        (conn,) = worker.fix.connections
        task = asyncio.create_task(worker.run())
        try:
            await _until(lambda: conn.messages >= 3, 30, "logon, W and X")
            await asyncio.sleep(5.0)  # quiet: heartbeats only
            await acceptor.close()
            await asyncio.sleep(1.5)  # the exchange is gone: reconnects are refused
            await acceptor.start(port)
            await _until(lambda: acceptor.logons == 2 and conn.messages >= acceptor.sent, 30,
                         "reconnect, W and X")
            await asyncio.sleep(1.0)
            worker.request_stop()
            await asyncio.wait_for(task, 30)
        finally:
            if not task.done():
                task.cancel()
            await acceptor.close()
        return worker, conn.sessions

    worker, sessions = asyncio.run(scenario())
    assert sessions >= 2
    root = worker.root
    heartbeats = [r for r in rows(root.parent, "liveness", [root])
                  if r["stream"] == "fix" and r["channel"] == "heartbeat"]
    assert sum(r["frames"] for r in heartbeats) >= 2  # a TestRequest answer every 1.2 s
    (book,) = [c for c in build_report(root)["channels"] if c["channel"] == "book"]
    s = 1e9
    # 5 s without a book message but with heartbeats: covered (the audit's active/quiet split
    # works on minute spans with a 10 s merge, so this short test checks covered, not quiet)
    assert book["active_ns"] + book["quiet_ns"] > 4.5 * s, book
    # the exchange was away 1.5 s; missing from the last proof of listening (a heartbeat at
    # most 1.2 s before) to the snapshot after the reconnect
    assert 1.5 * s < book["missing_ns"] < 4 * s, book
    gaps = [g for g in rows(root.parent, "gaps", [root]) if g["channel"] == "book"]
    assert [(g["cause"], g["healed_by"]) for g in gaps if g["detail"] != "process stop"] == [
        ("disconnect", "resnapshot")]


def _reframed(data: bytes, body_length_delta: int = 0) -> bytes:
    """``data`` with its BodyLength changed by ``body_length_delta`` and a CheckSum that
    matches the new bytes (so that only the BodyLength is wrong)."""
    head, rest = data.split(b"\x019=", 1)
    length, rest = rest.split(b"\x01", 1)
    body = head + b"\x019=" + str(int(length) + body_length_delta).encode() + b"\x01" \
        + rest[:rest.rindex(b"10=")]
    return body + b"10=%03d\x01" % (sum(body) % 256)


class HostileAcceptor(ScriptedAcceptor):
    """:class:`ScriptedAcceptor` that, after the W and X of a subscription, sends what a broken
    or hostile peer might: garbage bytes, a wrong BodyLength, an unknown MsgType, a huge
    repeating group (20,000 entries) and a group whose count claims a million, then a valid
    X (a trade) and answers TestRequests as before."""

    def _answer(self, md_req_id: str, symbol: str, level3: bool) -> list[tuple[str, Any]]:
        out = ScriptedAcceptor._answer(md_req_id, symbol, level3)
        t = "10:00:00.000"
        huge = [BookEntry("0", f"O{i}", f"{90 + i / 1000:.3f}", "1.0", t, action=0)
                for i in range(20_000)]
        out += [
            ("raw", b"\x00\xff garbage \x01not=fix\x01" * 50),
            ("raw-seq", ("X", incremental_fields(md_req_id, symbol, [
                BookEntry("1", "O101.0", "101.0", "3.0", t, action=1)]), 7)),
            ("ZZ", [(58, "what is this")]),
            ("X", incremental_fields(md_req_id, symbol, huge)),
            ("raw-count", ("X", incremental_fields(md_req_id, symbol, [
                BookEntry("1", "O101.0", "101.0", "4.0", t, action=1)]))),
            ("X", incremental_fields(md_req_id, symbol, [
                BookEntry("2", "9002", "101.0", "0.25", t, action=0,
                          timestamp="2023-11-14T22:13:21.000000001Z", ord_type="2",
                          aggressor_side="2")])),
        ]
        return out

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = _core.FixFramer()
        seq, client = 1, "?"
        self._writers.append(writer)

        def encode(msg_type: str, fields: list[tuple[int, str]]) -> bytes:
            nonlocal seq
            data = _core.encode_fix(msg_type, seq, "KRAKEN-MD", client, time.time_ns(), fields)
            seq += 1
            self.sent += 1
            return data

        try:
            while data := await reader.read(65536):
                for f in framer.feed(data):
                    fields = f["fields"]
                    if f["msg_type"] == "A":
                        client = f["sender"]
                        writer.write(encode("A", [(98, "0"), (108, fields[108])]))
                    elif f["msg_type"] == "1":
                        writer.write(encode("0", [(112, fields[112])]))
                    elif f["msg_type"] == "5":
                        writer.write(encode("5", []))
                    elif f["msg_type"] == "V" and fields[263] == "1":
                        for kind, body in self._answer(fields[262], fields[55], False):
                            if kind == "raw":
                                writer.write(body)
                            elif kind == "raw-seq":  # a wrong BodyLength
                                writer.write(_reframed(encode(body[0], body[1]), body[2]))
                            elif kind == "raw-count":  # NoMDEntries claims a million
                                writer.write(_reframed(encode(body[0], body[1]).replace(
                                    b"\x01268=1\x01", b"\x01268=1000000\x01"), 6))
                            else:
                                writer.write(encode(kind, body))
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            self._writers.remove(writer)


def test_bad_input_on_the_fix_socket_is_rejected_never_a_crash(tmp_path: Path) -> None:
    """Garbage bytes, a wrong BodyLength, an unknown MsgType, a 20,000-entry repeating group
    and a group count of a million reach a real worker over TLS: each is a ``rejects`` row
    with its bytes (the huge message is beyond the framer's size limit: garbage), the worker
    keeps running, the session goes on (the trade after them is recorded; the numbers the
    bad messages used up are a sequence gap, healed by resubscribing) and the worker stops
    cleanly."""
    symbols = ["BTC/USD"]

    async def scenario() -> Worker:
        acceptor = HostileAcceptor(tmp_path / "hostile")
        port = await acceptor.start()
        worker = _worker(tmp_path, port, acceptor.cert_path, symbols, heartbeat_s=1)
        assert worker.fix is not None
        (conn,) = worker.fix.connections
        task = asyncio.create_task(worker.run())
        try:
            await _until(lambda: conn.messages >= 8, 30, "the hostile messages")
            await asyncio.sleep(2.5)  # heartbeats, TestRequests: the session lives on
            assert not task.done() and not worker.stopping.is_set()
            worker.request_stop()
            await asyncio.wait_for(task, 30)
        finally:
            if not task.done():
                task.cancel()
            await acceptor.close()
        return worker

    worker = asyncio.run(scenario())
    root = worker.root
    rejects = rows(root.parent, "rejects", [root])
    reasons = {r["reason"] for r in rejects}
    # garbage (and the 20,000-entry message, beyond the framer's size limit), the wrong
    # BodyLength, the group count of a million, the unknown MsgType: each a decode reject
    assert {"fix_garbage", "fix_body_length", "fix_group_too_large",
            "fix_unknown_msg_type"} <= reasons, reasons
    assert all(r["reason"].startswith("fix_") and r["stage"] == "decode"
               for r in rejects), reasons
    raw = b"".join(r["raw"] or b"" for r in rejects if r["raw"] is not None)
    assert b"garbage" in raw and b"35=ZZ" in raw  # the bytes are kept, with their reason
    trades = [t for t in rows(root.parent, "trades", [root]) if t["source"] == 3]
    assert 9002 in {t["trade_id"] for t in trades}  # the session went on after them
    (conn,) = worker.fix.connections  # type: ignore[union-attr]
    assert conn.last_error is None or "Error" not in conn.last_error.split(":")[0], \
        conn.last_error
