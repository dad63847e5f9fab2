"""Reproducible profile + fingerprint of the simulator's pure market (no server, no I/O).

``python -m benchmarks.sim_profile [--seconds 60] [--pairs 150] [--views 120] [--profile]
[--no-views] [--futures] [--serve RATE [--sample|--profile]]``

Scenario (fixed seed): the recorded instrument snapshot narrowed to ``--pairs`` pairs (or a
generated universe when the fixture is absent), views ``level3`` depth 10 + ``book`` depth 10 +
``trade`` on the first ``--views`` pairs, the market advanced ``--seconds`` virtual seconds in
10 ms steps. Prints events/s (ground-truth events), frames/s, microseconds per frame and a
SHA-256 *fingerprint* over every snapshot, every update frame (key and exact text) and every
encoded truth event, in order. The fingerprint must not change under a performance edit:
run it before and after and compare.

``--profile`` runs the scenario under cProfile and prints the top functions by own time;
``--sample`` instead samples the running stack every 0.5 ms of CPU time (``ITIMER_PROF``),
which has no per-call overhead and so does not inflate small functions, and prints the
hottest lines (self) and functions (inclusive).

``--serve RATE`` profiles the *serving* path instead: a :class:`SimServer` in this process at
market rate RATE serving the loopback benchmark's clients (a subprocess) for ``--seconds``
wall seconds; prints frames/s received and this process's CPU share.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from recorder.sim.events import encode_event
from recorder.sim.market import SpotMarket
from recorder.sim.universe import load_universe

__all__ = ["FIXTURE", "LOOPBACK_CLIENT", "SEED", "START_NS", "build_market", "run_scenario"]

FIXTURE = Path("/work/shared/fixtures/kraken/kraken-data-recorder/instrument_snapshot.json")
SEED = 7
#: 2025-01-01T00:00:00Z
START_NS = 1_735_689_600_000_000_000
STEP_NS = 10_000_000


#: The loopback client process (argv: urls symbols clients warm window key secret share):
#: per client one ``/v2`` connection with ``book`` depth 10 + ``trade`` and one ``/l3/v2``
#: connection with ``level3`` depth 10; ``share`` ``split`` deals the symbols round-robin
#: (every frame the market renders is delivered once), ``all`` gives every client every
#: symbol (each frame delivered ``clients`` times: the server's fan-out). Prints
#: ``{"window": "start"}`` when the counting window opens (so the caller can read the server's
#: CPU time over exactly the window), then ``{"rate", "frames", "cpu_s"}`` (frames/s received,
#: frames, this process's CPU seconds in the window).
LOOPBACK_CLIENT = r'''
import asyncio, json, sys, time
import aiohttp
from recorder.protocol.signing import spot_sign_headers

async def main(urls, symbols, clients, warm, window, key, secret, share):
    counts = [0]
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
            part = symbols[i::clients] if share == "split" else symbols
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
        print(json.dumps({"window": "start"}), flush=True)
        c0, t0, p0 = counts[0], time.perf_counter(), time.process_time()
        await asyncio.sleep(window)
        c1, t1, p1 = counts[0], time.perf_counter(), time.process_time()
        print(json.dumps({"rate": (c1 - c0) / (t1 - t0), "frames": c1 - c0, "cpu_s": p1 - p0,
                          "wall_s": t1 - t0}), flush=True)
        for t in tasks:
            t.cancel()

urls, symbols = json.loads(sys.argv[1]), json.loads(sys.argv[2])
asyncio.run(main(urls, symbols, int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]),
                 sys.argv[6], sys.argv[7], sys.argv[8] if len(sys.argv) > 8 else "split"))
'''


def load(pairs: int) -> Any:
    """The benchmark universe: the real snapshot if present, else a generated one."""
    path = FIXTURE if FIXTURE.exists() else None
    return load_universe(path, pairs=pairs, futures_path=None, seed=SEED)


#: ``--all-views``: every channel variant (coverage for the fingerprint, not a workload).
ALL_VIEWS = (("level3", 10), ("level3", 100), ("level3", 1000), ("book", 10), ("book", 25),
             ("book", 100), ("book", 500), ("book", 1000), ("trade",), ("ohlc", 1), ("ohlc", 5),
             ("ticker", "trades"), ("ticker", "bbo"))


def build_market(universe: Any, views: int, *, digest: Any = None,
                 all_views: bool = False) -> tuple[SpotMarket, int]:
    """A market with level3/10 + book/10 + trade subscribed on the first ``views`` pairs (or
    every channel variant with ``all_views``); returns it and the number of snapshot frames
    (fed to ``digest`` when given)."""
    market = SpotMarket(universe, seed=SEED, start_ns=START_NS)
    snapshots = 0
    for symbol in market.symbols[:views]:
        if all_views:
            keys = [(v[0], symbol, *v[1:]) for v in ALL_VIEWS]
        else:
            keys = [("level3", symbol, 10), ("book", symbol, 10), ("trade", symbol)]
        for key in keys:
            for frame in market.subscribe(key):
                snapshots += 1
                if digest is not None:
                    digest.update(repr(key).encode())
                    digest.update(frame.encode())
    return market, snapshots


def run_scenario(universe: Any, *, seconds: float, views: int, fingerprint: bool,
                 step_ns: int = STEP_NS, all_views: bool = False) -> dict[str, Any]:
    """Advance the market; returns counts, timing and (optionally) the fingerprint."""
    digest = hashlib.sha256() if fingerprint else None
    market, _ = build_market(universe, views, digest=digest, all_views=all_views)
    end = START_NS + int(seconds * 1e9)
    events = frames = 0
    t = START_NS
    started = time.perf_counter()
    cpu_started = time.process_time()
    while t < end:
        t += step_ns
        truth = market.advance(t)
        events += len(truth)
        out = market.updates()
        frames += len(out)
        if digest is not None:
            for key, text in out:
                digest.update(repr(key).encode())
                digest.update(text.encode())
            for ev in truth:
                digest.update(encode_event(ev))
    wall = time.perf_counter() - started
    # CPU time of this process: robust against other load on a shared machine
    elapsed = time.process_time() - cpu_started
    return {
        "events": events, "frames": frames, "elapsed_s": elapsed, "wall_s": wall,
        "events_per_s": events / elapsed, "frames_per_s": frames / elapsed if frames else 0.0,
        "us_per_event": elapsed / events * 1e6 if events else 0.0,
        "sha256": digest.hexdigest() if digest is not None else None,
    }


def futures_fingerprint(seconds: float) -> str:
    """SHA-256 of every futures frame and truth event for a fixed scenario."""
    from recorder.sim.futures_market import FuturesMarket

    universe = load_universe(None, pairs=10, futures_path=None, seed=SEED)
    fm = FuturesMarket(universe, seed=SEED, start_ns=START_NS)
    digest = hashlib.sha256()
    for product in fm.product_ids[:20]:
        for feed in ("book", "trade", "ticker", "ticker_lite"):
            for frame in fm.subscribe((feed, product)):
                digest.update(frame.encode())
    t, end = START_NS, START_NS + int(seconds * 1e9)
    while t < end:
        t += STEP_NS
        for ev in fm.advance(t):
            digest.update(encode_event(ev))
        for key, text in fm.updates():
            digest.update(repr(key).encode())
            digest.update(text.encode())
    return digest.hexdigest()


def sampled(run: Any, *, interval_s: float = 0.0005, top: int = 25) -> Any:
    """Run ``run()`` under a CPU-time sampling profiler; print hot lines and functions."""
    lines: Counter[tuple[str, int, str]] = Counter()
    funcs: Counter[tuple[str, str]] = Counter()

    def on_tick(signum: int, frame: Any) -> None:
        if frame is None:
            return
        code = frame.f_code
        lines[(code.co_filename, frame.f_lineno, code.co_name)] += 1
        seen = set()
        while frame is not None:
            code = frame.f_code
            key = (code.co_filename, code.co_name)
            if key not in seen:
                seen.add(key)
                funcs[key] += 1
            frame = frame.f_back

    previous = signal.signal(signal.SIGPROF, on_tick)
    signal.setitimer(signal.ITIMER_PROF, interval_s, interval_s)
    try:
        result = run()
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, previous)
    total = sum(lines.values()) or 1

    def short(path: str) -> str:
        return path.rsplit("/", 2)[-1] if "recorder" not in path else path.split("recorder/", 1)[1]

    print(f"{total} samples; hottest lines (self):")
    for (path, line, name), n in lines.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {short(path)}:{line} {name}")
    print("hottest functions (inclusive):")
    for (path, name), n in funcs.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {short(path)} {name}")
    return result


def serve_scenario(*, rate: float, seconds: float, warm: float = 3.0, pairs: int = 150,
                   views: int = 120, clients: int = 4, share: str = "split",
                   profile: str | None = None, pregenerate: bool = False) -> dict[str, Any]:
    """Serve from *this* process (so it can be profiled) to :data:`LOOPBACK_CLIENT` in a
    subprocess: the loopback benchmark's workload. ``profile`` is None, ``"cprofile"`` or
    ``"sample"`` (the profile covers the whole run, connects and snapshots included).
    Returns the client's rate, this process's CPU share over the run and the server stats.
    ``pregenerate``: serve a market pre-generated (before the profile starts) for the run's
    length plus 15 s, on the clients' three keys."""
    import asyncio
    import json
    import os
    import subprocess
    import sys

    from recorder.sim.server import SimConfig, SimServer

    secret = "c2ltLWJlbmNoLXNlY3JldC1zaW0tYmVuY2gtc2VjcmV0LXNpbS1iZW5jaC1zZWNyZXQ="
    universe = load_universe(FIXTURE if FIXTURE.exists() else None, pairs=pairs,
                             futures_path=None, seed=5)
    symbols = [p.symbol for p in universe.pairs][:views]
    config = SimConfig(port=0, seed=5, rate=rate, keys={"BENCH": secret}, send_queue=1_000_000,
                       l3_budget=100_000, msg_rate=100_000,
                       pregenerate_s=warm + seconds + 15.0 if pregenerate else 0.0,
                       pregenerate_channels="level3:10,book:10,trade")
    ready: list[SimServer] = [SimServer(config, universe)] if pregenerate else []

    async def run() -> dict[str, Any]:
        server = ready.pop() if ready else SimServer(config, universe)
        urls = await server.start()
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LOOPBACK_CLIENT, json.dumps(urls), json.dumps(symbols),
            str(clients), str(warm), str(seconds), "BENCH", secret, share,
            stdout=subprocess.PIPE, env=env)
        assert proc.stdout is not None
        await proc.stdout.readline()  # {"window": "start"}
        cpu0, sent0 = time.process_time(), server.stats["frames_sent"]
        line = await proc.stdout.readline()
        cpu = time.process_time() - cpu0
        sent = server.stats["frames_sent"] - sent0
        await proc.wait()
        stats = dict(server.stats)
        await server.stop()
        result = json.loads(line)
        return {**result, "cpu_pct": 100 * cpu / result["wall_s"],
                "us_per_frame": 1e6 * cpu / max(1, sent), "stats": stats}

    if profile == "cprofile":
        prof = cProfile.Profile()
        prof.enable()
        res = asyncio.run(run())
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(35)
    elif profile == "sample":
        res = sampled(lambda: asyncio.run(run()), top=40)
    else:
        res = asyncio.run(run())
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sim_profile", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--pairs", type=int, default=150)
    parser.add_argument("--views", type=int, default=120)
    parser.add_argument("--no-views", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sample", action="store_true")
    parser.add_argument("--futures", action="store_true", help="also print the futures fingerprint")
    parser.add_argument("--all-views", action="store_true",
                        help="every channel variant on the view pairs (fingerprint coverage)")
    parser.add_argument("--serve", type=float, default=None, metavar="RATE",
                        help="profile the serving path instead: an in-process SimServer at "
                             "--rate RATE to loopback clients in a subprocess for --seconds "
                             "wall seconds (with --profile or --sample)")
    parser.add_argument("--pregenerate", action="store_true",
                        help="--serve: from a pre-generated market (generated before profiling)")
    parser.add_argument("--share", choices=("split", "all"), default="split",
                        help="--serve: deal the symbols over the clients or give each all")
    args = parser.parse_args(argv)
    if args.serve is not None:
        mode = "cprofile" if args.profile else "sample" if args.sample else None
        res = serve_scenario(rate=args.serve, seconds=args.seconds, pairs=args.pairs,
                             views=args.views, share=args.share, profile=mode,
                             pregenerate=args.pregenerate)
        print(f"serve rate={args.serve:g} share={args.share}: {res['rate']:,.0f} frames/s "
              f"received; in the window server CPU {res['cpu_pct']:.0f}% = "
              f"{res['us_per_frame']:.1f} us per frame sent, client CPU "
              f"{100 * res['cpu_s'] / res['wall_s']:.0f}%; stats {res['stats']}")
        return 0
    universe = load(args.pairs)
    views = 0 if args.no_views else args.views
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        res = run_scenario(universe, seconds=args.seconds, views=views, fingerprint=False)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    elif args.sample:
        res = sampled(lambda: run_scenario(universe, seconds=args.seconds, views=views,
                                           fingerprint=False))
    else:
        res = run_scenario(universe, seconds=args.seconds, views=views, fingerprint=True,
                           all_views=args.all_views)
        timed = run_scenario(universe, seconds=args.seconds, views=views, fingerprint=False,
                             all_views=args.all_views)
        res.update({k: v for k, v in timed.items() if k != "sha256"})
    print(f"pairs={args.pairs} views={views} seconds={args.seconds}: events={res['events']:,} "
          f"frames={res['frames']:,} in {res['elapsed_s']:.2f} s CPU ({res['wall_s']:.2f} s wall) -> "
          f"{res['events_per_s']:,.0f} events/s ({res['us_per_event']:.2f} us/event), "
          f"{res['frames_per_s']:,.0f} frames/s "
          f"({1e6 / res['frames_per_s'] if res['frames'] else 0:.2f} us/frame incl. engine)")
    if res["sha256"]:
        print(f"fingerprint {res['sha256']}")
    if args.futures:
        print(f"futures fingerprint {futures_fingerprint(args.seconds / 6)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
