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
  4 clients each with ``book`` depth 10 + ``trade`` on ``/v2`` and ``level3`` depth 10 on
  ``/l3/v2`` across 120 pairs; frames received per second by the clients, counted after a
  warm-up, with the sim process's CPU share over exactly that window. Two shapes: *split*
  (the 120 pairs dealt over the clients, ``--rate 30``: every frame is rendered by the market
  for one delivery, so this is bounded by the market's ~30 us per rendered frame) and
  *fan-out* (every client on all 120 pairs, ``--rate 10``: each rendered frame is delivered 4
  times, which measures the serving path). Target >= 30,000. On a shared machine read the
  "us per frame delivered" in the note: it does not depend on how much CPU the sim got.
  A third row, *split, --pregenerate* (``--rate 40``), serves the same split shape from a
  market pre-generated before the sim listens (see :mod:`recorder.sim.pregen`): the window
  then measures the serving path alone, checksums and snapshots still exact.

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
from benchmarks.servers import cpu_seconds, start_server, stop_processes
from benchmarks.sim_profile import LOOPBACK_CLIENT as _CLIENT, load, run_scenario

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




def _loopback_figure(quick: bool, *, rate: float, share: str,
                     pregenerate: bool = False) -> Figure | None:
    """Serve 120 of 150 pairs from a ``recorder sim`` process to :data:`LOOPBACK_CLIENT` in
    another process; None if the server won't start. Server CPU is read from ``/proc`` at
    the client's window start and end, so it covers exactly the counted frames. With
    ``pregenerate`` the sim runs ``--pregenerate`` (horizon: warm-up + window + 15 s of
    slack for connecting and for a generation-time overshoot) on the clients' three keys."""
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
    if pregenerate:
        cmd += ["--pregenerate", str(warm + window + 15.0),
                "--pregenerate-channels", "level3:10,book:10,trade"]
    shape = ("symbols dealt over the clients: each rendered frame delivered once"
             if share == "split" else
             f"every client on every pair: each rendered frame delivered {clients}x")
    name = (f"sim loopback, {views} pairs x (book/10 + trade + level3/10), {clients} clients "
            f"({'split' if share == 'split' else 'fan-out'}"
            f"{', --pregenerate' if pregenerate else ''})")
    sim, urls = start_server(cmd)
    client: subprocess.Popen[str] | None = None
    try:
        if urls is None:
            return None
        client = subprocess.Popen(
            [sys.executable, "-c", _CLIENT, json.dumps(urls), json.dumps(symbols), str(clients),
             str(warm), str(window), "BENCH", _SECRET, share],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        assert client.stdout is not None
        started = client.stdout.readline()
        cpu0 = cpu_seconds(sim.pid)
        done = client.stdout.readline()
        cpu = cpu_seconds(sim.pid) - cpu0
        try:
            client.wait(30)
        except subprocess.TimeoutExpired:
            client.kill()
        if not started or not done.strip():
            err = client.stderr.read() if client.stderr else ""
            return Figure(name=name, value=0.0, unit="msgs/s", target=">= 30,000",
                          note=f"client failed: {err.strip().splitlines()[-1:]}")
        result = json.loads(done)
        stats = _stats(urls["control"])
        if pregenerate and stats.get("pregen_live", 1):
            return Figure(name=name, value=0.0, unit="msgs/s", target=">= 30,000",
                          note="the pre-generated horizon ran out inside the window")
        wall = result["wall_s"]
        per_frame = 1e6 * cpu / max(1, result["frames"])
        return Figure(
            name=name, value=result["rate"], unit="msgs/s", target=">= 30,000",
            note=(f"{shape}; sim --rate {rate:g}; {result['frames']:,} frames in {wall:.0f} s "
                  f"after {warm:.0f} s warm-up; sim process CPU {100 * cpu / wall:.0f}% of one "
                  f"core in the window = {per_frame:.1f} us per frame delivered ("
                  f"{'serving only' if pregenerate else 'market included'}; "
                  f"{1e6 / per_frame:,.0f} frames per CPU-second); clients "
                  f"{100 * result['cpu_s'] / wall:.0f}%"
                  + (f"; pre-generated {urls['pregenerated']['frames']:,} frames of "
                     f"{urls['pregenerated']['seconds']:g} s in "
                     f"{urls['pregenerated']['generate_s']:.0f} s before listening (not in the "
                     f"window; started {urls['pregenerated'].get('start_late_s', 0):.0f} s late), "
                     f"stream still pre-generated at the window end; sim clock lag at the "
                     f"window end {stats.get('lag_ms', 0):,} ms (> 0: still catching up after "
                     f"the first subscribe's shadow catch-up, so the rate exceeds --rate's)"
                     if pregenerate else "")),
            extra={"server_cpu_pct": 100 * cpu / wall, "us_per_frame": per_frame})
    finally:
        stop_processes(client, sim)


def _stats(control: str) -> dict:
    """The sim's ``/control/stats`` (empty on failure)."""
    import urllib.request

    try:
        with urllib.request.urlopen(control + "/stats", timeout=5) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return {}


def run_sim(quick: bool = False) -> list[Figure]:
    """Measure every simulator figure; returns table rows."""
    figures = _market_figures(quick)
    figures.append(_record_figure(quick))
    for rate, share, pregenerate in ((30.0, "split", False), (10.0, "all", False),
                                     (40.0, "split", True)):
        loopback = _loopback_figure(quick, rate=rate, share=share, pregenerate=pregenerate)
        if loopback is not None:
            figures.append(loopback)
    return figures
