"""``recorder sim`` over real loopback sockets: spot v2, level3, REST, futures, CLI, record mode.

Every test binds an ephemeral port on 127.0.0.1, bounds each wait with a timeout, and asserts
only generous timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from recorder.protocol.signing import spot_sign_headers
from recorder.sim.record import read_record, record
from recorder.sim.server import SimConfig, SimServer
from recorder.sim.truth import read_truth
from recorder.sim.universe import load_universe

pytestmark = pytest.mark.integration

SECRET = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
KEY = "sim-test-key"
REPO = Path(__file__).resolve().parent.parent


def run(coro: Any, timeout: float = 60.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@contextlib.asynccontextmanager
async def serving(pairs: int | list[str] = 8, **overrides: Any) -> AsyncIterator[tuple[SimServer, dict]]:
    universe = load_universe(None, pairs=pairs, futures_path=None, seed=1)
    config = SimConfig(port=0, seed=1, keys={KEY: SECRET}, **overrides)
    server = SimServer(config, universe)
    urls = await server.start()
    try:
        yield server, urls
    finally:
        await server.stop()


async def recv_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict:
    return json.loads(await ws.receive_str(timeout=timeout))


async def collect(ws: aiohttp.ClientWebSocketResponse, seconds: float, limit: int = 100_000) -> list[dict]:
    out: list[dict] = []
    deadline = time.monotonic() + seconds
    while len(out) < limit and (left := deadline - time.monotonic()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        out.append(json.loads(msg.data))
    return out


async def until(ws: aiohttp.ClientWebSocketResponse, pred: Any, seconds: float = 5.0) -> dict:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        message = await recv_json(ws, timeout=left)
        if pred(message):
            return message
    raise AssertionError("expected message not received")


def acks(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m.get("method") in ("subscribe", "unsubscribe")]


async def signed_post(session: aiohttp.ClientSession, base: str, path: str, nonce: int,
                      extra: str = "", secret: str = SECRET, key: str = KEY) -> dict:
    body = f"nonce={nonce}{extra}"
    headers = spot_sign_headers(key, secret, path, nonce, body)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    async with session.post(base + path, data=body, headers=headers) as response:
        assert response.status == 200
        return await response.json()


# --- spot WS v2 ---------------------------------------------------------------------------------


def test_status_acks_snapshots_errors_and_pong() -> None:
    async def scenario() -> None:
        async with serving() as (server, urls), aiohttp.ClientSession() as session:
            async with session.ws_connect(urls["spot_ws"]) as ws:
                status = await recv_json(ws)
                assert status["channel"] == "status" and status["type"] == "update"
                assert status["data"][0]["connection_id"] > 2**63
                assert status["data"][0]["api_version"] == "v2"
                await ws.send_json({"method": "subscribe", "req_id": 7, "params": {
                    "channel": "book", "depth": 25, "symbol": ["BTC/USD", "ETH/USD", "NOPE/USD"]}})
                got = await collect(ws, 1.0)
                ack = [m for m in acks(got) if m.get("success")]
                assert [a["result"]["symbol"] for a in ack] == ["BTC/USD", "ETH/USD"]
                assert all(a["req_id"] == 7 and a["result"]["depth"] == 25 for a in ack)
                snaps = [m for m in got if m.get("type") == "snapshot"]
                assert sorted(s["data"][0]["symbol"] for s in snaps) == ["BTC/USD", "ETH/USD"]
                assert all(len(s["data"][0]["bids"]) == 25 for s in snaps)
                bad = [m for m in got if m.get("success") is False]
                assert bad == [{**bad[0], "error": "Currency pair not supported NOPE/USD",
                                "method": "subscribe", "req_id": 7, "success": False,
                                "symbol": "NOPE/USD"}]
                assert "result" not in bad[0] and "time_in" in bad[0] and "time_out" in bad[0]
                # the ack of a symbol precedes its snapshot
                first = {m["result"]["symbol"] if "result" in m else m["data"][0]["symbol"]: i
                         for i, m in reversed(list(enumerate(got))) if "result" in m or m.get("type") == "snapshot"}
                assert first
                await ws.send_json({"method": "subscribe", "req_id": 8, "params": {
                    "channel": "book", "depth": 10, "symbol": ["BTC/USD"]}})
                again = await until(ws, lambda m: m.get("req_id") == 8)
                assert again["error"] == "Already subscribed" and again["symbol"] == "BTC/USD"
                await ws.send_json({"method": "subscribe", "req_id": 9, "params": {
                    "channel": "book", "depth": 20, "symbol": ["SOL/USD"]}})
                depth = await until(ws, lambda m: m.get("req_id") == 9)
                assert depth["success"] is False and "depth" in depth["error"]
                await ws.send_json({"method": "subscribe", "req_id": 10, "params": {
                    "channel": "ohlc", "interval": 7, "symbol": ["SOL/USD"]}})
                interval = await until(ws, lambda m: m.get("req_id") == 10)
                assert interval["success"] is False and "interval" in interval["error"]
                await ws.send_json({"method": "subscribe", "req_id": 11, "params": {
                    "channel": "nope", "symbol": ["SOL/USD"]}})
                channel = await until(ws, lambda m: m.get("req_id") == 11)
                assert channel["success"] is False and "channel" in channel["error"]
                await ws.send_json({"method": "ping", "req_id": 12})
                pong = await until(ws, lambda m: m.get("method") == "pong")
                assert pong["req_id"] == 12 and pong["time_in"].endswith("Z") and pong["time_out"]
                await ws.send_json({"method": "unsubscribe", "req_id": 13, "params": {
                    "channel": "book", "depth": 25, "symbol": ["BTC/USD", "XRP/USD"]}})
                un = [m for m in await collect(ws, 0.5) if m.get("req_id") == 13]
                assert [(m["success"], m.get("symbol") or m["result"]["symbol"]) for m in un] == [
                    (True, "BTC/USD"), (False, "XRP/USD")]
                # resnapshot = unsubscribe + subscribe
                await ws.send_json({"method": "subscribe", "req_id": 14, "params": {
                    "channel": "book", "depth": 25, "symbol": ["BTC/USD"]}})
                snap = await until(ws, lambda m: m.get("type") == "snapshot")
                assert snap["data"][0]["symbol"] == "BTC/USD"

    run(scenario())


def test_book_updates_carry_checksums_and_trade_channel_works() -> None:
    async def scenario() -> None:
        async with serving(pairs=3) as (server, urls), aiohttp.ClientSession() as session:
            async with session.ws_connect(urls["spot_ws"]) as ws:
                await recv_json(ws)
                await ws.send_json({"method": "subscribe", "params": {
                    "channel": "trade", "symbol": ["BTC/USD"], "snapshot": True}})
                await ws.send_json({"method": "subscribe", "params": {
                    "channel": "book", "symbol": ["BTC/USD"]}})
                got = await collect(ws, 2.0)
                updates = [m for m in got if m.get("channel") == "book" and m["type"] == "update"]
                assert updates and all(isinstance(u["data"][0]["checksum"], int) for u in updates)
                trade_snap = [m for m in got if m.get("channel") == "trade" and m["type"] == "snapshot"]
                assert len(trade_snap) == 1

    run(scenario())


def test_heartbeat_only_once_subscribed_then_idle_disconnect() -> None:
    async def scenario() -> None:
        async with serving(heartbeat_s=0.2, idle_timeout_s=1.5) as (server, urls), \
                aiohttp.ClientSession() as session:
            async with session.ws_connect(urls["spot_ws"]) as ws:
                await recv_json(ws)
                before = await collect(ws, 0.7)
                assert not [m for m in before if m.get("channel") == "heartbeat"]
                await ws.send_json({"method": "subscribe", "params": {"channel": "instrument"}})
                got = await collect(ws, 1.0)
                assert got[0]["method"] == "subscribe" and got[0]["result"]["channel"] == "instrument"
                assert any(m.get("channel") == "instrument" and m["type"] == "snapshot" for m in got)
                assert sum(m.get("channel") == "heartbeat" for m in got) >= 2
                # no client traffic since the subscribe: closed within the idle timeout (+ slack)
                closed_at = None
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    msg = await ws.receive(timeout=5)
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        closed_at = time.monotonic()
                        break
                assert closed_at is not None
        assert server.stats["idle_disconnects"] == 1

    run(scenario())


def test_exceeded_msg_rate() -> None:
    async def scenario() -> None:
        async with serving(msg_rate=5) as (server, urls), aiohttp.ClientSession() as session:
            async with session.ws_connect(urls["spot_ws"]) as ws:
                await recv_json(ws)
                for i in range(12):
                    await ws.send_json({"method": "ping", "req_id": i})
                got = [m for m in await collect(ws, 0.8) if "req_id" in m]
                assert sum(m["method"] == "pong" for m in got) == 5
                errors = [m for m in got if m.get("error") == "Exceeded msg rate"]
                assert len(errors) == 7 and all(m["success"] is False for m in errors)

    run(scenario())


# --- level3 -------------------------------------------------------------------------------------


def test_level3_token_flow_and_limits() -> None:
    async def scenario() -> None:
        async with serving(pairs=250, l3_budget=100_000) as (server, urls), \
                aiohttp.ClientSession() as session:
            base = urls["rest"]
            nonce = time.time_ns()
            reply = await signed_post(session, base, "/0/private/GetWebSocketsToken", nonce)
            assert reply["error"] == [] and reply["result"]["expires"] == 900
            token = reply["result"]["token"]
            # replayed nonce, wrong secret, unknown key
            assert (await signed_post(session, base, "/0/private/GetWebSocketsToken", nonce))[
                "error"] == ["EAPI:Invalid nonce"]
            other = "c2VjcmV0c2VjcmV0c2VjcmV0"
            assert (await signed_post(session, base, "/0/private/GetWebSocketsToken", nonce + 5,
                                      secret=other))["error"] == ["EAPI:Invalid signature"]
            assert (await signed_post(session, base, "/0/private/GetWebSocketsToken", nonce + 6,
                                      key="nobody"))["error"] == ["EAPI:Invalid key"]
            symbols = list(server.pairs)
            async with session.ws_connect(urls["l3_ws"]) as ws:
                await recv_json(ws)
                await ws.send_json({"method": "subscribe", "req_id": 1, "params": {
                    "channel": "level3", "symbol": ["BTC/USD"]}})
                missing = await until(ws, lambda m: m.get("req_id") == 1)
                assert missing["success"] is False and missing["symbol"] == "BTC/USD"
                await ws.send_json({"method": "subscribe", "req_id": 2, "params": {
                    "channel": "level3", "symbol": ["BTC/USD"], "token": "forged"}})
                forged = await until(ws, lambda m: m.get("req_id") == 2)
                assert forged["success"] is False and "token" in forged["error"].lower()
                await ws.send_json({"method": "subscribe", "req_id": 3, "params": {
                    "channel": "level3", "symbol": ["BTC/USD"], "depth": 25, "token": token}})
                depth = await until(ws, lambda m: m.get("req_id") == 3)
                assert depth["success"] is False and "depth" in depth["error"]
                await ws.send_json({"method": "subscribe", "req_id": 4, "params": {
                    "channel": "level3", "symbol": symbols[:201], "token": token}})
                got = [m for m in await collect(ws, 1.0) if m.get("req_id") == 4]
                assert len(got) == 201 and not any(m["success"] for m in got)
                await ws.send_json({"method": "subscribe", "req_id": 5, "params": {
                    "channel": "level3", "symbol": ["BTC/USD", "ETH/USD"], "token": token}})
                got = await collect(ws, 1.5)
                ok = [m for m in got if m.get("req_id") == 5 and m["success"]]
                assert [m["result"]["symbol"] for m in ok] == ["BTC/USD", "ETH/USD"]
                snaps = [m for m in got if m.get("channel") == "level3" and m["type"] == "snapshot"]
                assert len(snaps) == 2 and all(o["order_id"] for o in snaps[0]["data"][0]["bids"])
                assert any(m.get("channel") == "level3" and m["type"] == "update" for m in got)
                await ws.send_json({"method": "unsubscribe", "req_id": 6, "params": {
                    "channel": "level3", "symbol": ["BTC/USD"]}})
                un = await until(ws, lambda m: m.get("req_id") == 6)
                assert un["success"] is False  # token is required on unsubscribe too
                await ws.send_json({"method": "unsubscribe", "req_id": 7, "params": {
                    "channel": "level3", "symbol": ["BTC/USD"], "token": token}})
                un = await until(ws, lambda m: m.get("req_id") == 7)
                assert un["success"] is True
            # the book endpoint does not serve level3, the level3 endpoint does not serve book
            async with session.ws_connect(urls["spot_ws"]) as ws:
                await recv_json(ws)
                await ws.send_json({"method": "subscribe", "req_id": 1, "params": {
                    "channel": "level3", "symbol": ["BTC/USD"], "token": token}})
                assert (await until(ws, lambda m: m.get("req_id") == 1))["success"] is False

    run(scenario())


def test_level3_subscription_budget() -> None:
    async def scenario() -> None:
        async with serving(pairs=60) as (server, urls), aiohttp.ClientSession() as session:
            reply = await signed_post(session, urls["rest"], "/0/private/GetWebSocketsToken", 1)
            token = reply["result"]["token"]
            async with session.ws_connect(urls["l3_ws"]) as ws:
                await recv_json(ws)
                await ws.send_json({"method": "subscribe", "req_id": 1, "params": {
                    "channel": "level3", "symbol": list(server.pairs)[:50], "token": token}})
                got = [m for m in await collect(ws, 1.0) if m.get("req_id") == 1]
                assert sum(m["success"] for m in got) == 40  # 200 per second / cost 5
                assert {m["error"] for m in got if not m["success"]} == {"Exceeded msg rate"}

    run(scenario())


# --- REST -----------------------------------------------------------------------------------------


def test_rest_public_shapes_and_errors() -> None:
    async def scenario() -> None:
        async with serving(pairs=4, rest_burst=100, rest_refill_per_s=0.001, rate=5.0) as (server, urls), aiohttp.ClientSession() as session:
            base = urls["rest"]

            async def get(path: str) -> dict:
                async with session.get(base + path) as response:
                    assert response.status == 200
                    return await response.json()

            assert (await get("/0/public/Time"))["result"]["unixtime"] > 1_600_000_000
            assert (await get("/0/public/SystemStatus"))["result"]["status"] == "online"
            pairs = (await get("/0/public/AssetPairs"))["result"]
            assert pairs["XXBTZUSD"]["wsname"] == "XBT/USD" and pairs["XXBTZUSD"]["altname"] == "XBTUSD"
            assert pairs["XXBTZUSD"]["pair_decimals"] == 1 and pairs["XXBTZUSD"]["lot_decimals"] == 8
            assert list((await get("/0/public/AssetPairs?pair=XBTUSD"))["result"]) == ["XXBTZUSD"]
            assert (await get("/0/public/AssetPairs?pair=NOPE"))["error"] == ["EQuery:Unknown asset pair"]
            depth = (await get("/0/public/Depth?pair=XBTUSD&count=5"))["result"]["XXBTZUSD"]
            assert len(depth["bids"]) == 5 and len(depth["asks"]) == 5
            price, volume, ts = depth["bids"][0]
            assert isinstance(price, str) and isinstance(volume, str) and isinstance(ts, int)
            assert float(depth["bids"][0][0]) < float(depth["asks"][0][0])
            assert (await get("/0/public/Depth?pair=XBTUSD&count=0"))["error"] == ["EGeneral:Invalid arguments"]
            for _ in range(50):  # bars exist once the first trade happened
                ohlc = (await get("/0/public/OHLC?pair=XBTUSD&interval=1"))["result"]
                if ohlc["XXBTZUSD"]:
                    break
                await asyncio.sleep(0.2)
            assert isinstance(ohlc["last"], int) and len(ohlc["XXBTZUSD"][0]) == 8
            assert (await get("/0/public/OHLC?pair=XBTUSD&interval=2"))["error"]
            # public throttle: EGeneral:Too many requests with HTTP 200
            errors = [(await get("/0/public/Time"))["error"] for _ in range(100)]
            assert ["EGeneral:Too many requests"] in errors

    run(scenario())


def test_rest_trades_pagination_has_no_gaps_or_duplicates() -> None:
    async def scenario() -> None:
        async with serving(pairs=2, rate=3.0, rest_burst=1000) as (server, urls), \
                aiohttp.ClientSession() as session:
            await asyncio.sleep(3.0)
            seen: list[int] = []
            since = "0"
            for _ in range(200):
                async with session.get(urls["rest"] + f"/0/public/Trades?pair=BTC/USD&since={since}&count=7") as r:
                    body = await r.json()
                rows = body["result"]["BTC/USD"]
                assert len(rows) <= 7 or len({row[2] for row in rows}) == 1  # one big group
                for row in rows:
                    assert len(row) == 7 and row[3] in ("b", "s") and row[4] in ("m", "l")
                    assert int(body["result"]["last"]) >= int(since)
                seen.extend(row[6] for row in rows)
                if not rows:
                    break
                since = body["result"]["last"]
            assert len(seen) >= 10, "the market produced too few trades to paginate"
            assert seen == list(range(seen[0], seen[0] + len(seen)))

    run(scenario())


# --- futures ----------------------------------------------------------------------------------------


def test_futures_ws_and_rest() -> None:
    pytest.importorskip("recorder.sim.futures_market")

    async def scenario() -> None:
        async with serving(pairs=2, futures_heartbeat_s=0.3) as (server, urls), \
                aiohttp.ClientSession() as session:
            async with session.ws_connect(urls["futures_ws"]) as ws:
                assert await recv_json(ws) == {"event": "info", "version": 1}
                await ws.send_json({"event": "subscribe", "feed": "book", "product_ids": ["pf_xbtusd", "PI_XBTUSD"]})
                await ws.send_json({"event": "subscribe", "feed": "trade", "product_ids": ["PF_XBTUSD"]})
                await ws.send_json({"event": "subscribe", "feed": "heartbeat"})
                await ws.send_json({"event": "subscribe", "feed": "book", "product_ids": ["PF_NOPE"]})
                await ws.send_json({"event": "subscribe", "feed": "nope", "product_ids": ["PF_XBTUSD"]})
                got = await collect(ws, 3.0)
            subscribed = [m for m in got if m.get("event") == "subscribed"]
            assert {"event": "subscribed", "feed": "book", "product_ids": ["PF_XBTUSD"]} in subscribed
            assert {"event": "subscribed", "feed": "book", "product_ids": ["PI_XBTUSD"]} in subscribed
            assert {"event": "error", "message": "Invalid product id"} in got
            assert {"event": "error", "message": "Invalid feed"} in got
            assert any(m.get("feed") == "heartbeat" and isinstance(m.get("time"), int) for m in got)
            for pid in ("PF_XBTUSD", "PI_XBTUSD"):
                snap = [m for m in got if m.get("feed") == "book_snapshot" and m["product_id"] == pid]
                assert len(snap) == 1
                seqs = [snap[0]["seq"]] + [m["seq"] for m in got
                                           if m.get("feed") == "book" and m.get("product_id") == pid]
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            assert any(m.get("feed") == "trade_snapshot" for m in got)
            base = urls["futures_rest"]
            async with session.get(base + "/orderbook?symbol=PF_XBTUSD") as r:
                book = await r.json()
            assert book["result"] == "success" and book["orderBook"]["bids"] and book["orderBook"]["asks"]
            async with session.get(base + "/instruments") as r:
                instruments = await r.json()
            assert {i["symbol"] for i in instruments["instruments"]} >= {"PF_XBTUSD", "PI_XBTUSD"}
            async with session.get(base + "/tickers") as r:
                assert (await r.json())["result"] == "success"
            async with session.get(base + "/orderbook?symbol=PF_NOPE") as r:
                assert (await r.json())["result"] == "error"

    run(scenario())


# --- framing ---------------------------------------------------------------------------------------


def _parse_server_frames(data: bytes) -> list[tuple[int, str]]:
    """RFC 6455 frames sent by a server (unmasked): [(first byte, text)], all bytes consumed."""
    out, i = [], 0
    while i < len(data):
        b0, b1 = data[i], data[i + 1]
        assert b1 & 0x80 == 0  # server frames are never masked
        n, i = b1 & 0x7F, i + 2
        if n == 126:
            n, i = int.from_bytes(data[i:i + 2], "big"), i + 2
        elif n == 127:
            n, i = int.from_bytes(data[i:i + 8], "big"), i + 8
        out.append((b0, data[i:i + n].decode()))
        i += n
    return out


def test_text_frames_are_framed_per_rfc6455_at_every_length_boundary() -> None:
    from recorder.sim.spot_ws import encode_text_frames

    # 7-bit maximum, 16-bit minimum, 16-bit maximum (in UTF-8 bytes, not characters), 64-bit
    texts = ["", "x" * 125, "y" * 126, "\u00e9" * 40 + "z" * (65_535 - 80), "w" * 65_536,
             "v" * 70_000]
    assert len(texts[3].encode()) == 65_535
    assert _parse_server_frames(encode_text_frames(texts)) == [(0x81, t) for t in texts]
    assert encode_text_frames([]) == b""


def test_permessage_deflate_is_never_negotiated_and_large_frames_arrive_intact() -> None:
    async def scenario() -> None:
        async with serving(pairs=4) as (server, urls), aiohttp.ClientSession() as session:
            async with session.ws_connect(urls["spot_ws"], compress=15, max_msg_size=0) as ws:
                assert "Sec-WebSocket-Extensions" not in ws._response.headers  # noqa: SLF001
                assert ws.compress == 0
                assert (await recv_json(ws))["channel"] == "status"
                await ws.send_json({"method": "subscribe", "params": {
                    "channel": "book", "depth": 1000, "symbol": list(server.pairs)}})
                snaps = []
                while len(snaps) < len(server.pairs):
                    m = await recv_json(ws)
                    if m.get("type") == "snapshot":
                        snaps.append(m)
                assert all(len(s["data"][0]["bids"]) > 10 for s in snaps)

    run(scenario())


# --- slow consumers --------------------------------------------------------------------------------


def test_slow_reader_is_dropped_without_stalling_others(tmp_path: Path) -> None:
    async def scenario() -> None:
        truth = tmp_path / "truth.jsonl"
        async with serving(pairs=6, send_queue=50, rate=5.0, truth_path=truth) as (server, urls), \
                aiohttp.ClientSession() as session:
            sub = {"method": "subscribe", "params": {"channel": "book", "depth": 1000,
                                                      "symbol": list(server.pairs)}}
            slow = await session.ws_connect(urls["spot_ws"], max_msg_size=0)
            await slow.send_json(sub)
            # never read from `slow`; pause its transport so that the server-side buffer fills
            slow._response.connection.transport.pause_reading()  # type: ignore[union-attr]
            async with session.ws_connect(urls["spot_ws"]) as fast:
                await recv_json(fast)
                await fast.send_json({**sub, "params": {**sub["params"], "depth": 10}})
                got = await collect(fast, 3.0)
                assert len(got) > 50
            deadline = time.monotonic() + 10
            while server.stats["slow_disconnects"] == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert server.stats["slow_disconnects"] >= 1
            await slow.close()
        assert any(r.get("kind") == "slow_consumer" for r in read_truth(truth))

    run(scenario())


# --- CLI -------------------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "recorder", "sim", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_cli_prints_one_json_line_serves_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl.zst"
    proc = _cli("--port", "0", "--pairs", "5", "--seed", "3", "--truth", str(truth))
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        urls = json.loads(line)
        assert urls["port"] > 0 and urls["spot_ws"].endswith(f":{urls['port']}/v2")
        assert {"l3_ws", "futures_ws", "rest", "futures_rest", "control"} <= set(urls)

        async def client() -> None:
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(urls["spot_ws"]) as ws:
                    assert (await recv_json(ws))["channel"] == "status"
                    await ws.send_json({"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USD"]}})
                    await until(ws, lambda m: m.get("type") == "snapshot")
                    proc.send_signal(signal.SIGTERM)
                    rest = await collect(ws, 5.0)
                    assert ws.closed or rest is not None

        run(client(), timeout=30)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    assert proc.stdout is not None and proc.stdout.read() == ""  # exactly one line
    kinds = {r.get("kind") for r in read_truth(truth)}
    assert {"server_start", "connect", "server_stop"} <= kinds


@pytest.mark.parametrize("args, text", [
    (["--faults", "explode:rate=1"], "unknown fault kind"),
    (["--faults", "drop:rate=2"], "rate=2"),
    (["--instruments", "/nonexistent/instruments.json"], "cannot read"),
    (["--pairs", "BTC/USD,NOPE/XYZ"], "NOPE/XYZ"),
    (["--api-key", "k"], "go together"),
])
def test_cli_config_errors_are_clear(args: list[str], text: str) -> None:
    proc = _cli("--port", "0", *args)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode not in (0, None)
    assert text in err and "Traceback" not in err and out == ""


# --- record mode ---------------------------------------------------------------------------------------


def test_record_mode_is_deterministic(tmp_path: Path) -> None:
    universe = load_universe(None, pairs=6, futures_path=None, seed=5)
    a, b = tmp_path / "a.zst", tmp_path / "b.zst"
    summary = record(a, universe, messages=3000, seed=5)
    record(b, universe, messages=3000, seed=5)
    assert a.read_bytes() == b.read_bytes()
    assert summary["messages"] == 3000
    lines = read_record(a)
    assert len(lines) == 3000
    assert list(lines[0]) == ["recv_ns", "conn", "ep", "frame"]
    channels = {json.loads(line["frame"]).get("channel") for line in lines}
    assert {"status", "book", "level3", "trade", "ohlc", "ticker"} <= channels
    per_conn: dict[int, int] = {}
    for line in lines:
        assert line["recv_ns"] > per_conn.get(line["conn"], 0)
        per_conn[line["conn"]] = line["recv_ns"]
    record(b, universe, messages=3000, seed=6)
    assert a.read_bytes() != b.read_bytes()


def test_record_cli(tmp_path: Path) -> None:
    out = tmp_path / "cli.zst"
    proc = _cli("--record", str(out), "--messages", "500", "--pairs", "3", "--seed", "2")
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["messages"] == 500 and out.exists()
