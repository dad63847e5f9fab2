"""Replay suite: ``recorder replay --max-speed`` serving a recorded archive to one client.

The archive is the archive suite's stream (``recorder sim --record``, 8 pairs, seed 7: book
depth 10, trade, ohlc 1, ticker and level3 depth 10 on every pair) ingested once with
``recorder ingest`` into ``.bench/cache/`` (gitignored). One ``recorder replay --max-speed``
process serves it to one client process (picows, the WebSocket client capture uses) subscribed
to everything the archive can serve: ``book`` depth 10, ``trade`` and ``ohlc`` 1 on ``/v2`` and
``level3`` depth 10 on ``/l3/v2`` for every pair. The figure is the data frames the client
received per second of wall time, from its first data frame to its last (the whole archive);
the note gives the replay process's CPU per frame (what the figure would be with a core to
itself) and the client's.

Peer, in the same run: the simulator serving a pre-generated market over the same server code
(``benchmarks.sim``'s ``split, --pregenerate`` loopback row: 4 clients, 120 pairs, paced by
the market), the fastest the simulator serves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Figure
from benchmarks.servers import cpu_seconds, start_server, stop_processes

__all__ = ["run_replay"]

_SECRET = "cmVwbGF5LWJlbmNoLXNlY3JldC1yZXBsYXktYmVuY2gtc2VjcmV0LXJlcGxheS1iZW5jaA=="
_CACHE = Path(__file__).resolve().parent.parent / ".bench" / "cache"

#: The client process (argv: urls key secret): subscribes everything, counts data frames
#: (heartbeats excluded) until the replay has finished and nothing came for 2 s, then prints
#: ``{"frames", "seconds", "rate", "cpu_s"}``.
CLIENT = r'''
import asyncio, json, sys, time, urllib.request
from picows.websockets.asyncio.client import connect
from recorder.protocol.signing import spot_sign_headers

urls, key, secret = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]

def get(url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)

async def main():
    v2 = {"XBT": "BTC", "XDG": "DOGE"}
    symbols = []
    for info in get(urls["rest"] + "/0/public/AssetPairs")["result"].values():
        base, quote = info["wsname"].split("/")
        symbols.append(f"{v2.get(base, base)}/{v2.get(quote, quote)}")
    nonce = int(time.time() * 1000)
    body = f"nonce={nonce}"
    headers = spot_sign_headers(key, secret, "/0/private/GetWebSocketsToken", nonce, body)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    token = get(urls["rest"] + "/0/private/GetWebSocketsToken", body.encode(), headers)["result"]["token"]
    seen = {"n": 0, "first": None, "last": None}
    async def reader(ws):
        while True:
            msg = await ws.recv(decode=False)
            if msg == b'{"channel":"heartbeat"}':
                continue
            now = time.perf_counter()
            if seen["first"] is None:
                seen["first"] = now
            seen["last"] = now
            seen["n"] += 1
    spot = await connect(urls["spot_ws"], max_size=None)
    l3 = await connect(urls["l3_ws"], max_size=None)
    for channel, extra in (("book", {"depth": 10}), ("trade", {}), ("ohlc", {"interval": 1})):
        await spot.send(json.dumps({"method": "subscribe", "params": {
            "channel": channel, "symbol": symbols, **extra}}))
    await l3.send(json.dumps({"method": "subscribe", "params": {
        "channel": "level3", "symbol": symbols, "depth": 10, "token": token}}))
    tasks = [asyncio.ensure_future(reader(spot)), asyncio.ensure_future(reader(l3))]
    cpu = time.process_time()
    while True:
        await asyncio.sleep(0.25)
        done = get(urls["control"] + "/stats")["replay_finished"]
        if done and seen["last"] is not None and time.perf_counter() - seen["last"] > 2:
            break
    cpu = time.process_time() - cpu
    span = seen["last"] - seen["first"]
    print(json.dumps({"frames": seen["n"], "seconds": span, "rate": seen["n"] / span,
                      "cpu_s": cpu}), flush=True)
    for t in tasks:
        t.cancel()

asyncio.run(main())
'''


def _archive(messages: int) -> Path:
    """The benchmark archive (built once, cached)."""
    from benchmarks.archive import _stream
    from recorder.ingest import ingest

    path = _CACHE / f"replay-archive-{messages}-p8-s7"
    if not (path / "_manifest" / "current.json").exists():
        src = _stream(messages)
        work = Path(tempfile.mkdtemp(prefix="bench-replay-", dir=_CACHE))
        try:
            ingest([src], work / "a", max_decompressed_bytes=16 * 2**30)
            shutil.rmtree(path, ignore_errors=True)
            (work / "a").replace(path)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return path


def _replay_figure(archive: Path, messages: int) -> Figure:
    name = "replay --max-speed to one client (book/10 + trade + ohlc/1 + level3/10, 8 pairs)"
    cmd = [sys.executable, "-m", "recorder", "replay", "--archive", str(archive), "--port", "0",
           "--max-speed", "--start-delay", "1", "--api-key", "BENCH", "--api-secret", _SECRET]
    server, urls = start_server(cmd, keep_stderr=True)
    client: subprocess.Popen[str] | None = None
    try:
        if urls is None:
            err = server.stderr.read() if server.stderr else ""
            return Figure(name, 0.0, "msgs/s", ">= 100,000", note=f"replay failed: {err[-300:]}")
        cpu0 = cpu_seconds(server.pid)
        t0 = time.perf_counter()
        client = subprocess.Popen(
            [sys.executable, "-c", CLIENT, json.dumps(urls), "BENCH", _SECRET],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        out, err = client.communicate(timeout=900)
        wall = time.perf_counter() - t0
        cpu = cpu_seconds(server.pid) - cpu0
        if client.returncode != 0 or not out.strip():
            return Figure(name, 0.0, "msgs/s", ">= 100,000",
                          note=f"client failed: {err.strip().splitlines()[-1:]}")
        result = json.loads(out)
        frames = result["frames"]
        return Figure(
            name, result["rate"], "msgs/s", ">= 100,000",
            note=(f"{frames:,} frames of a {messages:,}-frame archive (`recorder sim --record "
                  f"--messages {messages} --pairs 8 --seed 7` + `recorder ingest`) in "
                  f"{result['seconds']:.1f} s; replay process CPU {1e6 * cpu / frames:.1f} us "
                  f"per frame served ({frames / cpu:,.0f} frames per CPU-second, start-up and "
                  f"subscribe included, {wall:.0f} s wall in all); client CPU "
                  f"{1e6 * result['cpu_s'] / frames:.2f} us per frame"),
            extra={"server_us_per_frame": 1e6 * cpu / frames})
    finally:
        stop_processes(client, server)


def run_replay(quick: bool = False) -> list[Figure]:
    """The replay figure with the simulator's pre-generated serving rate as its peer."""
    from benchmarks.sim import _loopback_figure

    messages = 200_000 if quick else 1_000_000
    archive = _archive(messages)
    figure = _replay_figure(archive, messages)
    peer = _loopback_figure(quick, rate=40.0, share="split", pregenerate=True)
    if peer is not None and peer.value > 0:
        figure.peer = (f"sim serving a pre-generated market {peer.value:,.0f} msgs/s "
                       f"(4 clients, paced by its market; ours x{figure.value / peer.value:.1f})")
    return [figure]
