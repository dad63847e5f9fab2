"""``recorder replay`` over real sockets on 127.0.0.1, against a ``recorder demo`` archive.

The archive is built once for this module (``recorder demo --seconds 20``: 24 spot pairs with
book depth 25 and level3 depth 10, two futures products, and the demo's faults: one corrupted
book checksum, one dropped trade, one dropped trade connection). Every expectation is computed
from the archive itself (epochs, datasets, ``Archive.book_at``), so the tests check that the
replay serves exactly what was recorded: every covered message once, nothing invented, every
checksum Kraken's. Set ``KRAKEN_REPLAY_ARCHIVE`` to an existing demo archive to skip building.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
KEY = "REPLAYKEY"
SECRET = base64.b64encode(b"replay-test-secret-" * 4).decode()
V2 = {"XBT": "BTC", "XDG": "DOGE"}


# ------------------------------------------------------------------ fixtures and helpers


@pytest.fixture(scope="module")
def demo_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("KRAKEN_REPLAY_ARCHIVE")
    if given:
        return Path(given)
    archive = tmp_path_factory.mktemp("replay") / "demo-archive"
    out = subprocess.run([sys.executable, "-m", "recorder", "demo", "--seconds", "20",
                          "--archive", str(archive)], cwd=REPO, capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return archive


@pytest.fixture(scope="module")
def archive(demo_archive: Path) -> Any:
    import recorder

    ar = recorder.Archive(demo_archive)
    yield ar
    ar.close()


class Replay:
    """One ``recorder replay`` process: its URLs, stats, and a clean stop."""

    def __init__(self, archive: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "recorder", "replay", "--archive", str(archive), "--port", "0",
             "--api-key", KEY, "--api-secret", SECRET, *args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise AssertionError(f"replay did not start: {self.stderr}")
        self.urls: dict[str, Any] = json.loads(line)
        self.stderr = ""

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.urls["control"] + "/stats", timeout=10) as r:
            return json.load(r)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.urls["rest"] + path, timeout=30) as r:
            return json.load(r)

    def token(self) -> str:
        from recorder.protocol.signing import spot_api_sign

        path = "/0/private/GetWebSocketsToken"
        nonce = str(time.time_ns())
        body = urllib.parse.urlencode({"nonce": nonce}).encode()
        req = urllib.request.Request(self.urls["rest"] + path, data=body, headers={
            "API-Key": KEY, "API-Sign": spot_api_sign(SECRET, path, nonce, body)})
        with urllib.request.urlopen(req, timeout=10) as r:
            return str(json.load(r)["result"]["token"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.stderr = self.proc.stderr.read() if self.proc.stderr else ""
        if self.proc.stdout:
            self.proc.stdout.close()
        if self.proc.stderr:
            self.proc.stderr.close()


@pytest.fixture()
def replay(demo_archive: Path) -> Iterator[Any]:
    started: list[Replay] = []

    def start(*args: str) -> Replay:
        r = Replay(demo_archive, *args)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()
        assert "Traceback" not in r.stderr, r.stderr
        assert r.proc.returncode == 0, r.stderr


def pair_precisions(rp: Replay) -> dict[str, tuple[int, int]]:
    """v2 symbol -> (pair_decimals, lot_decimals) from the replay's REST AssetPairs."""
    out = {}
    for info in rp.get("/0/public/AssetPairs")["result"].values():
        base, quote = info["wsname"].split("/")
        out[f"{V2.get(base, base)}/{V2.get(quote, quote)}"] = (info["pair_decimals"],
                                                                 info["lot_decimals"])
    return out


def epoch_counts(ar: Any, channel: str) -> dict[str, tuple[int, int]]:
    """symbol -> (epochs, messages whose checksum matched) of ``channel`` (final epoch rows)."""
    df = ar.sql("SELECT symbol, count(*) AS epochs, sum(ok)::BIGINT AS ok FROM ("
                "  SELECT symbol, epoch, arg_max(checksum_ok, end_ns) AS ok FROM epochs"
                "  WHERE channel = ? GROUP BY ALL) GROUP BY symbol", [channel]).collect()
    return {s: (e, ok) for s, e, ok in df.iter_rows()}


async def book_session(url: str, precisions: dict[str, tuple[int, int]], channel: str,
                       depth: int, *, token: str | None = None, idle_s: float = 4.0,
                       replay: Replay | None = None) -> dict[str, Any]:
    """Subscribe ``channel`` for every symbol and verify every message with
    :mod:`recorder.book` (a snapshot replaces the book). Ends when the replay has finished
    and nothing arrived for ``idle_s``. Returns per-symbol message kinds and counts."""
    import websockets

    from recorder.book.l2 import L2Book
    from recorder.book.l3 import L3Book
    from recorder.protocol.spot import BookMessage, Level3Message, decode_spot

    books: dict[str, Any] = {}
    seq: dict[str, list[str]] = {s: [] for s in precisions}
    out: dict[str, Any] = {"ok": 0, "mismatch": 0, "errors": [], "acks": 0, "seq": seq,
                           "snapshot_checksums": {}}
    async with websockets.connect(url, max_size=None) as ws:
        params: dict[str, Any] = {"channel": channel, "symbol": sorted(precisions),
                                  "depth": depth}
        if token:
            params["token"] = token
        await ws.send(json.dumps({"method": "subscribe", "params": params, "req_id": 7}))
        quiet_since = time.monotonic()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                finished = replay is None or replay.stats()["replay_finished"]
                if finished and time.monotonic() - quiet_since > idle_s:
                    break
                continue
            if raw == '{"channel":"heartbeat"}':  # the replay's own, not market data
                continue
            quiet_since = time.monotonic()
            ev = decode_spot(raw)
            if isinstance(ev, (BookMessage, Level3Message)):
                for d in ev.data:
                    pp, qp = precisions[d.symbol]
                    if ev.type == "snapshot":
                        books[d.symbol] = (L2Book(d.symbol, depth, pp, qp) if channel == "book"
                                           else L3Book(d.symbol, depth, pp, qp))
                        out["snapshot_checksums"].setdefault(d.symbol, []).append(d.checksum)
                    elif d.symbol not in books:
                        out["errors"].append(f"update before snapshot: {d.symbol}")
                        continue
                    seq[d.symbol].append(ev.type)
                    result = books[d.symbol].apply(ev.type, d)
                    if result.match is False:
                        out["mismatch"] += 1
                    elif result.match:
                        out["ok"] += 1
            else:
                msg = json.loads(raw)
                if msg.get("method") == "subscribe":
                    if not msg.get("success"):
                        out["errors"].append(msg)
                    else:
                        out["acks"] += 1
                        if out["acks"] > len(precisions):  # a resync ack: mark it in order
                            seq[msg["result"]["symbol"]].append("ack")
    return out


# ------------------------------------------------------------------ the clients


def test_python_kraken_sdk_orderbook_replays_every_recorded_pair_with_zero_mismatches(
        replay: Any, archive: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """python-kraken-sdk's SpotOrderBookClient, pointed at the replay like at any Kraken,
    keeps the 24 recorded books (depth 25) through the whole archive, the corrupted-checksum
    gap included: every recorded update the archive verified arrives once and validates."""
    orderbook = pytest.importorskip("kraken.spot.orderbook")
    rp = replay("--max-speed", "--start-delay", "0.5")
    monkeypatch.setattr(orderbook.Market, "URL", rp.urls["rest"])
    updates: dict[str, int] = {}
    snapshots: dict[str, int] = {}
    failures: list[Any] = []

    class ReplayBook(orderbook.SpotOrderBookClient):
        WS_URL = rp.urls["spot_ws"].removesuffix("/v2")

        async def on_book_update(self, pair: str, message: dict) -> None:
            if "error" in message:
                failures.append((pair, message))
                return
            into = snapshots if message["type"] == "snapshot" else updates
            into[pair] = into.get(pair, 0) + 1

    async def scenario() -> bool:
        async with ReplayBook(depth=25) as book:
            await book.add_book(pairs=sorted(pair_precisions(rp)))
            last, quiet = -1, time.monotonic()
            while time.monotonic() - quiet < 4 or not rp.stats()["replay_finished"]:
                await asyncio.sleep(0.25)
                if sum(updates.values()) != last:
                    last, quiet = sum(updates.values()), time.monotonic()
            return bool(book.exception_occur)

    assert asyncio.run(asyncio.wait_for(scenario(), 240)) is False
    assert failures == []
    expected = epoch_counts(archive, "book")
    assert set(updates) == set(expected) and len(expected) == 24
    for symbol, (epochs, ok) in expected.items():
        assert snapshots[symbol] == epochs, symbol
        assert updates[symbol] == ok - epochs, symbol  # every verified update, once
    corrupted, _, _ = corrupted_book(archive)
    assert snapshots[corrupted] >= 2  # the demo's corrupted checksum: a fresh snapshot


def test_level3_client_replays_every_recorded_pair_with_zero_mismatches(
        replay: Any, archive: Any) -> None:
    """A raw level3 client (token from the signed REST call, checksums verified with
    recorder.book.l3) gets every recorded level3 message of the 24 pairs."""
    rp = replay("--max-speed", "--start-delay", "0.5")
    precisions = pair_precisions(rp)
    got = asyncio.run(book_session(rp.urls["l3_ws"], precisions, "level3", 10,
                                   token=rp.token(), replay=rp))
    assert got["errors"] == [] and got["mismatch"] == 0
    expected = epoch_counts(archive, "level3")
    assert got["ok"] == sum(ok for _, ok in expected.values())
    for symbol, (epochs, ok) in expected.items():
        assert len(got["seq"][symbol]) == ok, symbol
        assert got["seq"][symbol].count("snapshot") == epochs, symbol


def test_replay_started_in_the_middle_of_an_epoch(replay: Any, archive: Any) -> None:
    """``--from`` inside every level3 epoch: each client gets a snapshot rebuilt from the
    archive (checkpoint + replay) whose checksum is Kraken's for that book, then exactly the
    recorded messages after that time, all verifying."""
    busiest = archive.sql("SELECT symbol, min(start_ns) s, max(end_ns) e FROM epochs "
                          "WHERE channel = 'level3' GROUP BY ALL ORDER BY e - s DESC LIMIT 1").collect()
    _, start, end = busiest.row(0)
    t = start + (end - start) // 2
    rp = replay("--max-speed", "--start-delay", "0.5", "--from", str(t))
    precisions = pair_precisions(rp)
    got = asyncio.run(book_session(rp.urls["l3_ws"], precisions, "level3", 10,
                                   token=rp.token(), replay=rp))
    assert got["errors"] == [] and got["mismatch"] == 0
    after = dict(archive.sql("SELECT symbol, count(*) FROM level3 WHERE recv_ns > ? "
                             "AND checksum IS NOT NULL GROUP BY symbol", [t]).collect().iter_rows())
    rebuilt = 0
    for symbol, kinds in got["seq"].items():
        b = archive.book_at(symbol, t, channel="level3", clock="receive")
        if not b.valid:  # not covered at t: the next recorded snapshot starts it
            continue
        rebuilt += 1
        assert kinds[0] == "snapshot" and got["snapshot_checksums"][symbol][0] == b.checksum
        assert kinds.count("update") == after.get(symbol, 0), symbol
    assert rebuilt >= 20
    assert rp.stats()["replay_snapshots_rebuilt"] >= rebuilt


def corrupted_book(ar: Any) -> tuple[str, int, int]:
    """The book whose checksum the demo corrupted: (symbol, gap start, gap end)."""
    found = ar.sql("SELECT symbol, start_ns, end_ns FROM gaps WHERE channel = 'book' "
                   "AND cause = 'checksum_mismatch' AND end_ns IS NOT NULL").collect()
    assert found.height == 1, found
    symbol, start, end = found.row(0)
    return str(symbol), int(start), int(end)


def expected_kinds(ar: Any, symbol: str, after: int) -> list[str]:
    """What a client verifying ``symbol``'s book receives from a replay starting at ``after``
    (before the first epoch starting then): per epoch its recorded snapshot and every update
    the archive verified, each later epoch announced by a subscribe ack (a resync)."""
    rows = ar.sql("SELECT min(start_ns), arg_max(checksum_ok, end_ns) FROM epochs "
                  "WHERE channel = 'book' AND symbol = ? GROUP BY epoch ORDER BY 1",
                  [symbol]).collect().rows()
    kinds: list[str] = []
    for start, ok in rows:
        if start > after:
            kinds += (["ack"] if kinds else []) + ["snapshot"] + ["update"] * (ok - 1)
    return kinds


def test_replay_across_a_gap_gets_a_fresh_snapshot_and_never_the_bad_frame(
        replay: Any, archive: Any) -> None:
    """The demo corrupted one book checksum: the archive ended that epoch (a gap, cause
    checksum_mismatch) and the recorder resubscribed. The replay withholds the bad frame and
    sends what Kraken sends after a resubscribe: the subscribe ack, then the fresh (recorded)
    snapshot; a replay started inside the gap sends the ack, nothing until the recorded
    snapshot, then its updates."""
    symbol, g_start, g_end = corrupted_book(archive)
    rp = replay("--max-speed", "--start-delay", "0.5", "--symbols", symbol)
    assert set(pair_precisions(rp)) == {symbol}
    got = asyncio.run(book_session(rp.urls["spot_ws"], pair_precisions(rp), "book", 25,
                                   replay=rp))
    assert got["mismatch"] == 0 and got["errors"] == []
    kinds = expected_kinds(archive, symbol, 0)
    assert kinds.count("ack") >= 1 and got["seq"][symbol] == kinds
    assert rp.stats()["replay_withheld"] >= 1

    middle = (g_start + g_end) // 2
    inside = replay("--max-speed", "--start-delay", "0.5", "--symbols", symbol,
                    "--from", str(middle))
    got = asyncio.run(book_session(inside.urls["spot_ws"], pair_precisions(inside), "book", 25,
                                   replay=inside))
    assert got["mismatch"] == 0 and got["errors"] == []
    assert got["seq"][symbol] == expected_kinds(archive, symbol, middle)
    assert got["seq"][symbol][0] == "snapshot"  # no ack: this client never held a book


def dropped_trade(archive_dir: Path) -> tuple[str, str, list[int]]:
    """The trade frame the demo's fault dropped, from the simulator's ground truth:
    (endpoint, symbol, its trade ids (spot) or seqs (futures))."""
    import re

    for line in (archive_dir / "demo" / "truth.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "fault" and rec.get("fault") == "drop":
            text = rec["detail"]["frame"]  # the frame's first 200 characters
            name = "seq" if rec["endpoint"] == "futures" else "trade_id"
            ids = [int(i) for i in re.findall(rf'"{name}":(\d+)', text)]
            assert ids, text
            return rec["endpoint"], rec["symbol"], ids
    raise AssertionError("the demo dropped no trade frame")


def test_a_dropped_trade_stays_dropped_on_the_wire_and_rest_holds_the_backfill(
        replay: Any, archive: Any, demo_archive: Path) -> None:
    """The demo dropped one trade frame before the recorder saw it: the replayed trade stream
    shows the same jump the recorder saw (nothing invented on the WebSocket), every other trade
    once and in order; REST ``Trades`` as of the replay clock holds what the recorder
    backfilled over REST."""
    import websockets

    endpoint, symbol, dropped = dropped_trade(demo_archive)
    rp = replay("--max-speed", "--start-delay", "0.5", "--symbols", symbol)

    async def trades() -> list[int]:
        ids: list[int] = []
        url = rp.urls["futures_ws" if endpoint == "futures" else "spot_ws"]
        async with websockets.connect(url, max_size=None) as ws:
            if endpoint == "futures":
                await ws.send(json.dumps({"event": "subscribe", "feed": "trade",
                                          "product_ids": [symbol]}))
            else:
                await ws.send(json.dumps({"method": "subscribe", "params": {
                    "channel": "trade", "symbol": [symbol]}}))
            quiet = time.monotonic()
            while time.monotonic() - quiet < 3 or not rp.stats()["replay_finished"]:
                try:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                except TimeoutError:
                    continue
                if msg.get("channel") == "trade":
                    assert msg["type"] == "update"  # snapshot: false (the default)
                    ids += [t["trade_id"] for t in msg["data"]]
                elif msg.get("feed") == "trade" and "event" not in msg:
                    ids.append(msg["seq"])
                else:
                    continue
                quiet = time.monotonic()
        return ids

    ids = asyncio.run(asyncio.wait_for(trades(), 120))
    assert ids == sorted(set(ids)), "every trade once, in order"
    assert not set(dropped) & set(ids)  # the dropped frame stays dropped
    assert any(i < min(dropped) for i in ids) and any(i > max(dropped) for i in ids)
    healed = archive.sql("SELECT count(*) FROM gaps WHERE symbol = ? AND cause = 'trade_id_jump'"
                         " AND healed_by = 'rest_backfill'", [symbol]).collect().item()
    if endpoint == "spot" and healed:
        pair = rp.get(f"/0/public/AssetPairs?pair={urllib.parse.quote(symbol)}")["result"][symbol]
        answer = rp.get(f"/0/public/Trades?pair={pair['altname']}&count=1000")["result"]
        rest_ids = [row[6] for row in next(v for k, v in answer.items() if k != "last")]
        assert set(dropped) <= set(rest_ids)


def test_subscriptions_the_archive_cannot_serve_get_krakens_errors(replay: Any) -> None:
    """Depth 10 of a book recorded at 25, an ohlc interval not recorded, a pair not in the
    archive, a level3 depth not recorded, a futures feed not recorded: Kraken's errors, and the
    servable part of the same request is served."""
    import websockets

    rp = replay("--speed", "1")

    async def errors() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with websockets.connect(rp.urls["spot_ws"]) as ws:
            for req, params in ((1, {"channel": "book", "symbol": ["BTC/USD"], "depth": 10}),
                                (2, {"channel": "book", "symbol": ["NOPE/USD", "ETH/USD"],
                                     "depth": 25}),
                                (3, {"channel": "ohlc", "symbol": ["BTC/USD"], "interval": 5})):
                await ws.send(json.dumps({"method": "subscribe", "params": params, "req_id": req}))
            acks = 0
            while acks < 4:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if msg.get("method") == "subscribe":
                    acks += 1
                    out[f"{msg['req_id']}:{msg.get('symbol') or msg['result']['symbol']}"] = \
                        msg.get("error") or "ok"
        async with websockets.connect(rp.urls["l3_ws"]) as ws:
            await ws.send(json.dumps({"method": "subscribe", "params": {
                "channel": "level3", "symbol": ["BTC/USD"], "depth": 100,
                "token": rp.token()}}))
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            while msg.get("method") != "subscribe":
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            out["l3"] = msg["error"]
        async with websockets.connect(rp.urls["futures_ws"]) as ws:
            await ws.send(json.dumps({"event": "subscribe", "feed": "ticker",
                                      "product_ids": ["PF_XBTUSD"]}))
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            while msg.get("event") == "info":
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            out["futures"] = msg
        return out

    got = asyncio.run(asyncio.wait_for(errors(), 60))
    assert got == {
        "1:BTC/USD": "EGeneral:Invalid arguments:depth",
        "2:NOPE/USD": "Currency pair not supported NOPE/USD",
        "2:ETH/USD": "ok",
        "3:BTC/USD": "EGeneral:Invalid arguments:interval",
        "l3": "EGeneral:Invalid arguments:depth",
        "futures": {"event": "error", "message": "Invalid product id"},
    }


# ------------------------------------------------------------------ clock and flow control


def test_clients_share_one_replay_clock(replay: Any) -> None:
    """Two clients subscribed at the start get the same frames, byte for byte; a third that
    subscribes later starts from a snapshot at the shared clock."""
    import websockets

    rp = replay("--speed", "4", "--start-delay", "1", "--symbols", "BTC/USD")

    async def client(delay: float) -> list[bytes]:
        await asyncio.sleep(delay)
        frames: list[bytes] = []
        async with websockets.connect(rp.urls["spot_ws"], max_size=None) as ws:
            await ws.send(json.dumps({"method": "subscribe", "params": {
                "channel": "book", "symbol": ["BTC/USD"], "depth": 25}}))
            quiet = time.monotonic()
            while time.monotonic() - quiet < 3 or not rp.stats()["replay_finished"]:
                try:
                    raw = await asyncio.wait_for(ws.recv(decode=False), 0.5)
                except TimeoutError:
                    continue
                if raw.startswith(b'{"channel":"book"'):
                    quiet = time.monotonic()
                    frames.append(raw)
        return frames

    async def both() -> list[list[bytes]]:
        return list(await asyncio.gather(client(0), client(0.1), client(4.0)))

    a, b, late = asyncio.run(asyncio.wait_for(both(), 120))
    assert a and a == b
    assert late[0].startswith(b'{"channel":"book","type":"snapshot"')
    assert late[1:] == a[len(a) - len(late) + 1:]  # then the same frames as everyone


def test_a_client_that_does_not_read_cannot_make_the_server_buffer_without_bound(
        replay: Any, archive: Any) -> None:
    """--max-speed waits for its slowest client, with a bound: a client that stops reading
    holds the clock at most --stall-timeout, is then disconnected as a slow consumer, and
    the reading client gets the whole replay; no client ever had more than the high-water
    mark plus one step of frames waiting (a small --socket-buffer keeps the kernel from
    absorbing the whole demo stream first)."""
    rp = replay("--max-speed", "--start-delay", "1", "--stall-timeout", "2",
                "--socket-buffer", "16384")
    precisions = pair_precisions(rp)
    host, port = rp.urls["host"], rp.urls["port"]
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    stuck.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    stuck.sendall((f"GET /l3/v2 HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    assert b" 101 " in stuck.recv(4096)
    payload = json.dumps({"method": "subscribe", "params": {
        "channel": "level3", "symbol": sorted(precisions), "depth": 10,
        "token": rp.token()}}).encode()
    mask = os.urandom(4)
    header = bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big") + mask
    stuck.sendall(header + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    try:
        got = asyncio.run(book_session(rp.urls["spot_ws"], precisions, "book", 25, replay=rp))
    finally:
        stuck.close()
    stats = rp.stats()
    assert stats["slow_disconnects"] == 1
    assert got["mismatch"] == 0
    assert got["ok"] == sum(ok for _, ok in epoch_counts(archive, "book").values())
    assert 0 < stats["replay_max_queued"] <= 8192 + 4096


# ------------------------------------------------------------------ REST and futures


def test_rest_answers_as_of_the_replay_clock(replay: Any, archive: Any) -> None:
    """Before the clock starts the replay stands at --from: ``Time`` is that time, ``Depth``
    is the recorded book at it, ``Level3`` the recorded level3 book, ``Trades`` the trades
    received by then, futures ``orderbook`` the futures book at it."""
    from decimal import Decimal

    t0 = archive.sql("SELECT min(start_ns) + 9 * (max(end_ns) - min(start_ns)) // 10 "
                     "FROM epochs WHERE channel = 'book'").collect().item()
    rp = replay("--from", str(t0))
    assert rp.get("/0/public/Time")["result"]["unixtime"] == t0 // 10**9
    book = archive.book_at("BTC/USD", t0, channel="book", clock="receive")
    assert book.valid
    depth = rp.get("/0/public/Depth?pair=XBTUSD&count=25")["result"]["XXBTZUSD"]
    for side in ("bids", "asks"):  # the deeper recorded book (book, depth 25) at t0
        assert [Decimal(p) for p, _, _ in depth[side]] == [Decimal(r["price"]) for r in
                                                           book.to_dict()[side]]
    l3 = archive.book_at("BTC/USD", t0, channel="level3", clock="receive")
    from recorder.protocol.signing import spot_api_sign

    path = "/0/private/Level3"
    nonce = str(time.time_ns())
    body = urllib.parse.urlencode({"nonce": nonce, "pair": "BTC/USD", "depth": 10}).encode()
    req = urllib.request.Request(rp.urls["rest"] + path, data=body, headers={
        "API-Key": KEY, "API-Sign": spot_api_sign(SECRET, path, nonce, body)})
    with urllib.request.urlopen(req, timeout=30) as r:
        answer = json.load(r)["result"]
    assert [o["order_id"] for o in answer["bids"]] == [o["order_id"] for o in
                                                       l3.to_dict()["bids"]]
    trades = rp.get("/0/public/Trades?pair=XBTUSD&count=1000")["result"]["XXBTZUSD"]
    recorded = archive.sql("SELECT count(DISTINCT trade_id) FROM trades WHERE symbol = 'BTC/USD'"
                           " AND recv_ns <= ?", [t0]).collect().item()
    assert len(trades) == recorded and all(row[2] * 1e9 <= t0 for row in trades)
    fbook = rp.get("/derivatives/api/v3/orderbook?symbol=PF_XBTUSD")["orderBook"]
    assert fbook["bids"] and fbook["bids"][0][0] < fbook["asks"][0][0]
    ticker = rp.get("/0/public/Ticker?pair=XBTUSD")["result"]["XXBTZUSD"]
    assert Decimal(ticker["b"][0]) == Decimal(book.to_dict()["bids"][0]["price"])
    assert rp.get("/0/public/Depth?pair=NOPEUSD")["error"] == ["EQuery:Unknown asset pair"]


def test_futures_book_from_the_middle_of_an_epoch_continues_its_seq(
        replay: Any, archive: Any) -> None:
    """A futures book subscription mid-epoch gets a book_snapshot rebuilt from the futures
    checkpoint and deltas, whose ``seq`` the next recorded delta continues; every recorded
    delta after that time arrives once."""
    import websockets

    start, end = archive.sql("SELECT min(start_ns), max(end_ns) FROM epochs WHERE channel = "
                             "'futures_book' AND symbol = 'PF_XBTUSD'").collect().row(0)
    t = start + (end - start) // 2
    rp = replay("--max-speed", "--start-delay", "0.5", "--from", str(t))

    async def session() -> tuple[list[int], int]:
        seqs: list[int] = []
        snapshot_seq = -1
        async with websockets.connect(rp.urls["futures_ws"], max_size=None) as ws:
            await ws.send(json.dumps({"event": "subscribe", "feed": "book",
                                      "product_ids": ["pf_xbtusd"]}))
            quiet = time.monotonic()
            while time.monotonic() - quiet < 3 or not rp.stats()["replay_finished"]:
                try:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                except TimeoutError:
                    continue
                if "event" in msg:
                    continue
                quiet = time.monotonic()
                if msg.get("feed") == "book_snapshot":
                    snapshot_seq = msg["seq"]
                elif msg.get("feed") == "book":
                    seqs.append(msg["seq"])
        return seqs, snapshot_seq

    seqs, snapshot_seq = asyncio.run(asyncio.wait_for(session(), 120))
    assert seqs and seqs == list(range(snapshot_seq + 1, snapshot_seq + 1 + len(seqs)))
    recorded = archive.sql("SELECT count(*) FROM futures_book WHERE product_id = 'PF_XBTUSD' "
                           "AND event = 'delta' AND recv_ns > ?", [t]).collect().item()
    assert len(seqs) == recorded


# ------------------------------------------------------------------ the command line


@pytest.mark.parametrize("args, status, text", [
    (["--archive", "/nonexistent/archive"], 1, "no such directory"),
    (["--from", "yesterday"], 2, "--from: not a time"),
    (["--speed", "0"], 2, "--speed must be > 0"),
    (["--speed", "2", "--max-speed"], 2, "exclude each other"),
    (["--symbols", "NOPE/USD"], 1, "no market data"),
])
def test_cli_errors_are_one_line_without_traceback(demo_archive: Path, args: list[str],
                                                   status: int, text: str) -> None:
    base = [] if args[0] == "--archive" else ["--archive", str(demo_archive)]
    out = subprocess.run([sys.executable, "-m", "recorder", "replay", *base, *args, "--port", "0"],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == status, out.stderr
    assert text in out.stderr and "Traceback" not in out.stderr
    assert out.stdout == ""


def test_coverage_is_where_the_archive_rebuilds_a_valid_book(archive: Any) -> None:
    """The replay forwards a book's frames exactly where ``BookEngine.book_at`` answers with a
    valid book of the same epoch: both ends of every covered interval are valid, the time
    after an interval that a failure ended is not, and no interval leaves its epoch."""
    from recorder.replay.catalog import load_catalog

    catalog = load_catalog(archive, start_ns=None, end_ns=None)
    checked = halted = 0
    for channel, symbol in catalog.coverage.books():
        if channel == "futures_book":
            continue
        for iv in catalog.coverage.intervals(channel, symbol):
            engine = archive.books.engines[iv.root]
            epoch = next(e for e in engine.epochs(channel, symbol) if e.epoch == iv.epoch)
            assert epoch.start_ns <= iv.start_ns <= iv.end_ns <= epoch.valid_until
            for t in (iv.start_ns, iv.end_ns):
                b = engine.book_at(symbol, t, channel=channel, clock="receive")
                assert b.valid and b.epoch == iv.epoch, (channel, symbol, t, b.reason)
            checked += 1
            if epoch.end_reason == "checksum_mismatch":
                after = engine.book_at(symbol, iv.end_ns + 1, channel=channel, clock="receive")
                assert not after.valid
                halted += 1
    assert checked >= 48 and halted == 1


def test_a_torn_journal_segment_is_served_up_to_its_last_record_and_reported(
        demo_archive: Path, tmp_path: Path) -> None:
    """A journal segment cut short (a crash tail, a bad disk) does not stop a replay: its
    complete records are served, the damage is reported once on stderr and in the stats."""
    import shutil

    import websockets

    copy = tmp_path / "archive"
    shutil.copytree(demo_archive, copy, symlinks=True)
    segment = max((copy / "demo-w1" / "journal").rglob("*.kjz"), key=lambda p: p.stat().st_size)
    data = segment.read_bytes()
    segment.write_bytes(data[: len(data) * 2 // 3])
    rp = Replay(copy, "--max-speed", "--start-delay", "0.5", "--symbols", "BTC/USD")
    try:
        async def count() -> int:
            n = 0
            async with websockets.connect(rp.urls["spot_ws"], max_size=None) as ws:
                await ws.send(json.dumps({"method": "subscribe", "params": {
                    "channel": "book", "symbol": ["BTC/USD"], "depth": 25}}))
                quiet = time.monotonic()
                while time.monotonic() - quiet < 3 or not rp.stats()["replay_finished"]:
                    try:
                        raw = await asyncio.wait_for(ws.recv(), 0.5)
                    except TimeoutError:
                        continue
                    if raw.startswith('{"channel":"book"'):
                        n += 1
                        quiet = time.monotonic()
            return n

        served = asyncio.run(asyncio.wait_for(count(), 120))
        stats = rp.stats()
    finally:
        rp.stop()
    assert served > 0 and stats["replay_journal_problems"] == 1
    assert "journal segment" in rp.stderr and "Traceback" not in rp.stderr
    assert rp.proc.returncode == 0
