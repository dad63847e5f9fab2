"""Simulator throughput: the pure market, the engine, ``--record``, and serving over loopback.

Figures (``run_sim``):

* pure market frames/s -- 150 pairs of the recorded instrument snapshot (generated universe if
  absent), ``level3`` depth 10 + ``book`` depth 10 + ``trade`` subscribed on 120 pairs, 60
  virtual seconds (quick: 20) advanced in 10 ms steps; frames = update frames produced. Market
  construction and snapshots are outside the timed region. Target: well over 60,000/s so that
  one process can serve >= 30,000 msgs/s including the websocket send cost.
* engine events/s -- the same market without views: generator + matching + ground truth,
  events = ground-truth events.
* ``recorder sim --record`` msgs/s -- a 1,000,000-message recording (quick: 100,000) with the
  CLI defaults (generated ~700-pair universe, seed 0), written to a temporary file.
* loopback msgs/s -- one ``recorder sim`` process (``--rate`` raised so the market produces
  enough) serving websocket clients in a *separate* process (so the server has its own core),
  subscribed to ``book`` depth 10 + ``trade`` on ``/v2`` and ``level3`` depth 10 on
  ``/l3/v2`` across 120 pairs; frames received per second by the clients, counted after a
  warm-up. Target >= 30,000.

Timings are wall clock (``perf_counter``) like every suite; the notes add the CPU time of the
measuring process, which is what matters on a shared machine.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Figure
from benchmarks.sim_profile import load, run_scenario

__all__ = ["run_sim"]

_SECRET = "c2ltLWJlbmNoLXNlY3JldC1zaW0tYmVuY2gtc2VjcmV0LXNpbS1iZW5jaC1zZWNyZXQ="


def _market_figures(quick: bool) -> list[Figure]:
    universe = load(150)
    seconds = 20.0 if quick else 60.0
    repeats = 1 if quick else 3
    figures = []
    for views, name, unit, key, target in (
        (120, "sim pure market (150 pairs; l3/10 + book/10 + trade on 120)", "frames/s", "frames",
         ">= 60,000"),
        (0, "sim engine + generator + truth (150 pairs, no views)", "events/s", "events",
         ">= 166,000"),
    ):
        runs = [run_scenario(universe, seconds=seconds, views=views, fingerprint=False)
                for _ in range(repeats)]
        wall = statistics.median(r[key] / r["wall_s"] for r in runs)
        cpu = statistics.median(r[key] / r["elapsed_s"] for r in runs)
        count = runs[0][key]
        figures.append(Figure(
            name=name, value=wall, unit=unit, target=target,
            note=(f"{count:,} {key} in {seconds:.0f} virtual s; CPU-time rate {cpu:,.0f}/s "
                  f"= {1e6 / cpu:.1f} us per {key[:-1]}"),
            extra={"cpu_rate": cpu}))
    return figures


def _record_figure(quick: bool) -> Figure:
    from recorder.sim.record import record
    from recorder.sim.universe import load_universe

    messages = 100_000 if quick else 1_000_000
    universe = load_universe(None, pairs=None, futures_path=None, seed=0)  # the CLI defaults
    with tempfile.TemporaryDirectory(prefix="sim-bench-") as tmp:
        cpu0 = time.process_time()
        summary = record(Path(tmp) / "rec.jsonl.zst", universe, messages=messages, seed=0)
        cpu = time.process_time() - cpu0
    elapsed = float(summary["elapsed_s"])
    return Figure(
        name=f"sim --record ({messages:,} msgs, ~700 generated pairs)",
        value=summary["messages"] / elapsed, unit="msgs/s",
        note=(f"{elapsed:.1f} s wall, {cpu:.1f} s CPU, {summary['virtual_seconds']} virtual s, "
              f"{summary['bytes'] / 1e6:.1f} MB"))


_CLIENT = r'''
import asyncio, json, sys, time
import aiohttp
from recorder.protocol.signing import spot_sign_headers

async def main(urls, symbols, clients, warm, window, key, secret):
    counts = [0]
    ready = asyncio.Event()
    async def reader(ws):
        async for msg in ws:
            counts[0] += 1
    async with aiohttp.ClientSession() as session:
        nonce = int(time.time() * 1000)
        body = f"nonce={nonce}"
        headers = spot_sign_headers(key, secret, "/0/private/GetWebSocketsToken", nonce, body)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        async with session.post(urls["rest"] + "/0/private/GetWebSocketsToken", data=body,
                                headers=headers) as r:
            token = (await r.json())["result"]["token"]
        tasks = []
        for i in range(clients):
            part = symbols[i::clients]
            ws = await session.ws_connect(urls["spot_ws"], max_msg_size=0)
            for ch, extra in (("book", {"depth": 10}), ("trade", {})):
                await ws.send_str(json.dumps({"method": "subscribe", "params": {
                    "channel": ch, "symbol": part, **extra}}))
            tasks.append(asyncio.ensure_future(reader(ws)))
            l3 = await session.ws_connect(urls["l3_ws"], max_msg_size=0)
            await l3.send_str(json.dumps({"method": "subscribe", "params": {
                "channel": "level3", "symbol": part, "depth": 10, "token": token}}))
            tasks.append(asyncio.ensure_future(reader(l3)))
        await asyncio.sleep(warm)
        c0, t0 = counts[0], time.perf_counter()
        await asyncio.sleep(window)
        c1, t1 = counts[0], time.perf_counter()
        print(json.dumps({"rate": (c1 - c0) / (t1 - t0), "frames": c1 - c0}), flush=True)
        for t in tasks:
            t.cancel()

urls, symbols = json.loads(sys.argv[1]), json.loads(sys.argv[2])
asyncio.run(main(urls, symbols, int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]),
                 sys.argv[6], sys.argv[7]))
'''


def _loopback_figure(quick: bool, rate: float = 20.0) -> Figure | None:
    """Serve 120 of 150 pairs to clients in another process; None if the server won't start."""
    from recorder.sim.universe import load_universe

    from benchmarks.sim_profile import FIXTURE

    pairs, views, clients = 150, 120, 4
    warm, window = (5.0, 5.0) if quick else (10.0, 20.0)
    fixture = [str(FIXTURE)] if FIXTURE.exists() else []
    universe = load_universe(FIXTURE if fixture else None, pairs=pairs, futures_path=None, seed=5)
    symbols = [p.symbol for p in universe.pairs][:views]
    cmd = [sys.executable, "-m", "recorder", "sim", "--port", "0", "--pairs", str(pairs),
           "--rate", str(rate), "--seed", "5", "--api-key", "BENCH", "--api-secret", _SECRET,
           "--send-queue", "1000000", "--l3-budget", "100000", "--msg-rate", "100000"]
    if fixture:
        cmd += ["--instruments", fixture[0]]
    sim = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = sim.stdout.readline()  # type: ignore[union-attr]
        if not line:
            return None
        urls = json.loads(line)
        cpu0 = _cpu_s(sim.pid)
        out = subprocess.run([sys.executable, "-c", _CLIENT, json.dumps(urls), json.dumps(symbols),
                              str(clients), str(warm), str(window), "BENCH", _SECRET],
                             capture_output=True, text=True, timeout=warm + window + 120,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        cpu = _cpu_s(sim.pid) - cpu0
        if out.returncode != 0 or not out.stdout.strip():
            return Figure(name="sim loopback (clients in another process)", value=0.0,
                          unit="msgs/s", target=">= 30,000",
                          note=f"client failed: {out.stderr.strip().splitlines()[-1:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        return Figure(
            name=f"sim loopback, {views} pairs x (book/10 + trade + level3/10), {clients} clients",
            value=result["rate"], unit="msgs/s", target=">= 30,000",
            note=(f"sim --rate {rate:g}; {result['frames']:,} frames in {window:.0f} s after "
                  f"{warm:.0f} s warm-up; sim process CPU {100 * cpu / (warm + window):.0f}% "
                  f"of one core over the run"))
    finally:
        sim.terminate()
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()


def _cpu_s(pid: int) -> float:
    """User+system CPU seconds of a process (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def run_sim(quick: bool = False) -> list[Figure]:
    """Measure every simulator figure; returns table rows."""
    figures = _market_figures(quick)
    figures.append(_record_figure(quick))
    loopback = _loopback_figure(quick)
    if loopback is not None:
        figures.append(loopback)
    return figures
