"""Fault injection: grammar, pure decisions, and each kind's effect on the wire + truth file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from recorder.protocol.signing import spot_sign_headers
from recorder.sim.faults import (
    FaultError,
    FaultPlan,
    corrupt_checksum,
    corrupt_number,
    malform,
    parse_faults,
)
from recorder.sim.record import read_record, record
from recorder.sim.server import SimConfig, SimServer
from recorder.sim.truth import read_truth
from recorder.sim.universe import load_universe

SECRET = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
KEY = "fault-key"
BOOK = ('{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":95301.1,'
        '"qty":10.00000000}],"asks":[],"checksum":2968244771,"timestamp":"2026-01-01T00:00:00.000000Z"}]}')


# --- grammar and pure decisions ------------------------------------------------------------------


def test_grammar_parses_the_documented_example() -> None:
    rules = parse_faults("drop:channel=book,symbol=BTC/USD,rate=0.01;stall:at=30,duration=5;close:every=20")
    assert [(r.kind, r.channel, r.symbol, r.rate, r.at, r.every, r.duration) for r in rules] == [
        ("drop", "book", "BTC/USD", 0.01, None, None, None),
        ("stall", None, None, None, 30.0, None, 5.0),
        ("close", None, None, None, None, 20.0, None),
    ]
    assert parse_faults(None) == [] and parse_faults(" ; ") == []


@pytest.mark.parametrize("spec, text", [
    ("explode:rate=1", "unknown fault kind"),
    ("drop", "needs rate="),
    ("drop:rate=1.5", "within [0, 1]"),
    ("drop:rate=x", "not a number"),
    ("drop:rate=1,colour=red", "unknown parameter"),
    ("drop:rate", "NAME=VALUE"),
    ("close:every=0", "every=0"),
    ("list:rate=1", "needs a schedule"),
    ("status:at=1,symbol=BTC/USD", "status="),
    ("status:at=1,symbol=BTC/USD,status=party", "not a Kraken pair status"),
    ("drop:rate=1,endpoint=moon", "endpoint"),
    ("drop:rate=1,count=0", "count"),
])
def test_grammar_rejects_bad_specs(spec: str, text: str) -> None:
    with pytest.raises(FaultError, match=text.replace("[", r"\[").replace("]", r"\]")):
        parse_faults(spec)


def test_mutations_change_exactly_one_token() -> None:
    frame, detail = corrupt_checksum(BOOK)  # type: ignore[misc]
    assert json.loads(frame)["data"][0]["checksum"] == detail["new"] != 2968244771
    frame, detail = corrupt_number(BOOK)  # type: ignore[misc]
    assert detail == {"field": "price", "old": "95301.1", "new": "95301.2"}
    assert json.loads(frame)["data"][0]["bids"][0]["qty"] == 10.0
    l3 = ('{"channel":"level3","type":"update","data":[{"checksum":1,"symbol":"BTC/USD","bids":[],'
          '"asks":[{"event":"delete","order_id":"O1","limit_price":95306.8,"order_qty":2.5}]}]}')
    frame, detail = corrupt_number(l3)  # type: ignore[misc]
    assert detail == {"field": "limit_price", "old": "95306.8", "new": "95306.9", "event": "delete"}
    assert json.loads(frame)["data"][0]["asks"][0]["limit_price"] == 95306.9
    assert corrupt_checksum('{"channel":"trade"}') is None
    broken, _ = malform(BOOK)
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken)


def test_plan_rates_schedules_filters_and_records() -> None:
    now = [0]
    sink: list[dict] = []
    plan = FaultPlan(parse_faults("drop:channel=book,rate=1,count=2;duplicate:at=1;reorder:channel=trade,rate=1"),
                     seed=1, clock_ns=lambda: now[0], sink=sink.append)
    kw = {"conn": 9, "endpoint": "spot"}
    assert plan.on_frame("x", channel="book", symbol="A", **kw).frames == []
    assert plan.on_frame("x", channel="book", symbol="A", **kw).frames == []
    assert plan.on_frame("x", channel="book", symbol="A", **kw).frames == ["x"]  # count exhausted
    assert plan.on_frame("y", channel="ohlc", symbol="A", **kw).frames == ["y"]  # not yet at=1
    now[0] = 1_500_000_000
    assert plan.on_frame("y", channel="ohlc", symbol="A", **kw).frames == ["y", "y"]
    assert plan.on_frame("y", channel="ohlc", symbol="A", **kw).frames == ["y"]  # one-shot
    held = plan.on_frame("t", channel="trade", symbol="A", **kw)
    assert held.frames == [] and held.hold == "t"
    assert [r["fault"] for r in sink] == ["drop", "drop", "duplicate", "reorder"]
    assert sink[0] | {"t_ns": 0} == {"t_ns": 0, "kind": "fault", "fault": "drop", "conn": 9, "endpoint": "spot",
                                     "channel": "book", "symbol": "A", "detail": sink[0]["detail"]}


def test_same_seed_same_decisions() -> None:
    def decisions(seed: int) -> list[int]:
        plan = FaultPlan(parse_faults("drop:rate=0.3"), seed=seed, clock_ns=lambda: 0)
        return [len(plan.on_frame("x", conn=1, endpoint="spot", channel="book", symbol="A").frames)
                for _ in range(200)]

    assert decisions(4) == decisions(4) and decisions(4) != decisions(5)
    assert 30 < decisions(4).count(0) < 90


# --- wire effects -----------------------------------------------------------------------------------


def run(coro: Any, timeout: float = 60.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, spec: str, **overrides: Any) -> AsyncIterator[tuple[SimServer, dict, Path]]:
    truth = tmp_path / "truth.jsonl"
    universe = load_universe(None, pairs=overrides.pop("pairs", 4), futures_path=None, seed=2)
    config = SimConfig(port=0, seed=2, keys={KEY: SECRET}, faults=tuple(parse_faults(spec)),
                       truth_path=truth, **overrides)
    server = SimServer(config, universe)
    urls = await server.start()
    try:
        yield server, urls, truth
    finally:
        await server.stop()


async def frames(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> list[str]:
    out: list[str] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        if msg.type != aiohttp.WSMsgType.TEXT:
            out.append(f"<{msg.type.name}>")
            break
        out.append(msg.data)
    return out


def faults_in(truth: Path, kind: str) -> list[dict]:
    return [r for r in read_truth(truth) if r.get("kind") == "fault" and r["fault"] == kind]


async def book_session(urls: dict, seconds: float, symbols: list[str] | None = None) -> list[str]:
    async with aiohttp.ClientSession() as session, session.ws_connect(urls["spot_ws"]) as ws:
        await ws.send_json({"method": "subscribe", "params": {
            "channel": "book", "symbol": symbols or ["BTC/USD", "ETH/USD"]}})
        return await frames(ws, seconds)


def book_frames(texts: list[str]) -> list[dict]:
    out = []
    for text in texts:
        with contextlib.suppress(json.JSONDecodeError):
            message = json.loads(text)
            if message.get("channel") == "book":
                out.append(message)
    return out


def test_drop_filtered_by_symbol(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, "drop:channel=book,symbol=ETH/USD,rate=1") as (_, urls, truth):
            got = book_frames(await book_session(urls, 1.5))
        symbols = {m["data"][0]["symbol"] for m in got}
        assert symbols == {"BTC/USD"}  # every ETH/USD book frame (snapshot too) was dropped
        dropped = faults_in(truth, "drop")
        assert dropped and {(d["channel"], d["symbol"]) for d in dropped} == {("book", "ETH/USD")}
        assert all(d["conn"] > 2**63 and d["t_ns"] > 0 for d in dropped)

    run(scenario())


def test_duplicate_and_reorder(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, "duplicate:channel=book,symbol=BTC/USD,rate=1,count=3;"
                                     "reorder:channel=book,symbol=ETH/USD,rate=1,count=1") as (_, urls, truth):
            texts = await book_session(urls, 1.5)
        counts: dict[str, int] = {}
        for text in texts:
            counts[text] = counts.get(text, 0) + 1
        assert sum(1 for n in counts.values() if n == 2) >= 3
        assert len(faults_in(truth, "duplicate")) == 3
        [reorder] = faults_in(truth, "reorder")
        moved = next(t for t in texts if t.startswith(reorder["detail"]["frame"][:200]))
        # the reordered ETH/USD snapshot arrived after a frame that was produced later
        assert json.loads(moved)["type"] == "snapshot"
        eth = [i for i, t in enumerate(texts) if '"ETH/USD"' in t]
        assert eth and texts.index(moved) > 0

    run(scenario())


def test_checksum_number_and_malformed(tmp_path: Path) -> None:
    async def scenario() -> None:
        spec = ("checksum:channel=book,symbol=BTC/USD,at=0.3;number:channel=book,symbol=ETH/USD,at=0.3;"
                "malformed:channel=book,at=0.6")
        async with serving(tmp_path, spec) as (_, urls, truth):
            texts = await book_session(urls, 1.5)
        [checksum] = faults_in(truth, "checksum")
        assert any(f'"checksum":{checksum["detail"]["new"]}' in t for t in texts)
        [number] = faults_in(truth, "number")
        assert any(number["detail"]["new"] in t and number["symbol"] in t for t in texts)
        [bad] = faults_in(truth, "malformed")
        broken = [t for t in texts if not t.endswith("}")]
        assert len(broken) == 1 and len(broken[0]) == bad["detail"]["sent_len"]

    run(scenario())


def test_stall_silences_data_and_heartbeats(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, "stall:at=0.5,duration=1.5", heartbeat_s=0.2) as (_, urls, truth):
            async with aiohttp.ClientSession() as session, session.ws_connect(urls["spot_ws"]) as ws:
                await ws.send_json({"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USD"]}})
                stamps = []
                deadline = time.monotonic() + 3.0
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        await ws.receive_str(timeout=left)
                    except TimeoutError:
                        break
                    stamps.append(time.monotonic())
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        assert max(gaps) > 1.2  # nothing at all, not even a heartbeat, during the stall
        [stall] = faults_in(truth, "stall")
        assert stall["detail"]["duration_s"] == 1.5

    run(scenario())


def test_close_is_abrupt_and_refuse_answers_503(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, "close:at=0.5;refuse:at=0,duration=0.3") as (_, urls, truth):
            async with aiohttp.ClientSession() as session:
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await session.ws_connect(urls["spot_ws"])
                assert refused.value.status == 503
                await asyncio.sleep(0.4)
                async with session.ws_connect(urls["spot_ws"]) as ws:
                    await ws.send_json({"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USD"]}})
                    texts = await frames(ws, 3.0)
                    assert texts[-1] in ("<CLOSED>", "<ERROR>", "<CLOSE>")
                    assert ws.close_code != 1000
        assert faults_in(truth, "refuse") and faults_in(truth, "close")
        assert any(r.get("kind") == "disconnect" and r["reason"] == "aborted" for r in read_truth(truth))

    run(scenario())


def test_rest_faults_and_token_rejection(tmp_path: Path) -> None:
    async def scenario() -> None:
        spec = "slow_rest:channel=Time,rate=1,delay=0.8;rest_limit:channel=Depth,rate=1;token_reject:at=0"
        async with serving(tmp_path, spec) as (_, urls, truth), aiohttp.ClientSession() as session:
            started = time.monotonic()
            async with session.get(urls["rest"] + "/0/public/Time") as r:
                assert (await r.json())["error"] == []
            assert time.monotonic() - started >= 0.75
            async with session.get(urls["rest"] + "/0/public/Depth?pair=XBTUSD") as r:
                assert (await r.json()) == {"error": ["EGeneral:Too many requests"]}
            body = f"nonce={time.time_ns()}"
            headers = spot_sign_headers(KEY, SECRET, "/0/private/GetWebSocketsToken", body[6:], body)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            async with session.post(urls["rest"] + "/0/private/GetWebSocketsToken", data=body, headers=headers) as r:
                token = (await r.json())["result"]["token"]
            async with session.ws_connect(urls["l3_ws"]) as ws:
                sub = {"method": "subscribe", "params": {"channel": "level3", "symbol": ["BTC/USD"], "token": token}}
                await ws.send_json(sub)
                first = [json.loads(t) for t in await frames(ws, 0.5)]
                assert any(m.get("success") is False and "token" in m["error"].lower() for m in first)
                await ws.send_json(sub)  # the one-shot rejection is spent: the same token works
                second = [json.loads(t) for t in await frames(ws, 0.5)]
                assert any(m.get("success") is True for m in second)
        assert faults_in(truth, "slow_rest") and faults_in(truth, "rest_limit")
        assert faults_in(truth, "token_reject")

    run(scenario())


def test_instrument_changes_from_schedule_and_control(tmp_path: Path) -> None:
    async def scenario() -> None:
        spec = "list:at=0.4,symbol=NEWCOIN/USD;status:at=0.6,symbol=ETH/USD,status=cancel_only"
        async with serving(tmp_path, spec) as (server, urls, truth), aiohttp.ClientSession() as session:
            async with session.ws_connect(urls["spot_ws"]) as ws:
                await ws.send_json({"method": "subscribe", "params": {"channel": "instrument"}})
                texts = await frames(ws, 1.2)
                async with session.post(urls["control"] + "/instrument",
                                        json={"action": "delist", "symbol": "SOL/USD"}) as r:
                    assert r.status == 200
                texts += await frames(ws, 0.5)
                async with session.post(urls["control"] + "/faults", json={"spec": "drop:rate=oops"}) as r:
                    assert r.status == 400 and "not a number" in (await r.json())["error"]
                async with session.post(urls["control"] + "/faults", json={"spec": "drop:channel=book,rate=1"}) as r:
                    assert r.status == 200
                async with session.get(urls["control"] + "/faults") as r:
                    assert [x["kind"] for x in (await r.json())["rules"]][-1] == "drop"
                await ws.send_json({"method": "subscribe", "params": {"channel": "book", "symbol": ["NEWCOIN/USD"]}})
                after = [json.loads(t) for t in await frames(ws, 0.5)]
                await ws.send_json({"method": "subscribe", "req_id": 5, "params": {"channel": "book", "symbol": ["SOL/USD"]}})
                delisted = [json.loads(t) for t in await frames(ws, 0.5)]
            async with session.get(urls["rest"] + "/0/public/AssetPairs?pair=ETH/USD") as r:
                assert (await r.json())["result"]["ETH/USD"]["status"] == "cancel_only"
        updates = [m for m in map(json.loads, texts) if m.get("channel") == "instrument" and m["type"] == "update"]
        changed = {(p["symbol"], p["status"]) for u in updates for p in u["data"]["pairs"]}
        assert {("NEWCOIN/USD", "online"), ("ETH/USD", "cancel_only"), ("SOL/USD", "delisted")} <= changed
        assert any(m.get("success") for m in after)  # the new listing is subscribable
        assert not any(m.get("channel") == "book" for m in after)  # ...and the runtime drop rule applies
        assert any(m.get("error") == "Currency pair not supported SOL/USD" for m in delisted)
        kinds = {f["fault"] for f in read_truth(truth) if f.get("kind") == "fault"}
        assert {"list", "status", "delist", "drop"} <= kinds
        events = {r.get("ev") for r in read_truth(truth)}
        assert {"instrument", "status"} <= events  # the market's own ground truth of the changes

    run(scenario())


def test_record_mode_applies_faults_deterministically(tmp_path: Path) -> None:
    universe = load_universe(None, pairs=3, futures_path=None, seed=9)
    spec = parse_faults("drop:channel=book,rate=0.05;close:at=2;duplicate:channel=trade,rate=0.5")
    a, b = tmp_path / "a.zst", tmp_path / "b.zst"
    truth = tmp_path / "t.jsonl"
    summary = record(a, universe, messages=4000, seed=9, rules=spec, truth_path=truth)
    record(b, universe, messages=4000, seed=9, rules=parse_faults(
        "drop:channel=book,rate=0.05;close:at=2;duplicate:channel=trade,rate=0.5"))
    assert a.read_bytes() == b.read_bytes()
    assert summary["faults_injected"] > 0
    lines = read_record(a)
    assert any(line.get("event") == "close" for line in lines)
    assert len({line["conn"] for line in lines}) >= 4  # two endpoints, reconnected after close
    assert {f["fault"] for f in faults_in(truth, "drop")} == {"drop"}
    assert faults_in(truth, "close")
