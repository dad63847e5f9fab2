"""Capture benchmark: ``recorder run`` (2 workers) against ``recorder sim`` over loopback.

Every frame goes through the archive (journal + the one pipeline + Parquet commits), so the
figures include the archive's per-frame cost. Measures, over a steady-state window after every
subscription is up: messages/s received and journaled+derived by the recorder (and the sim's
sent rate, to show it kept up), CPU% of the whole recorder process tree (100% = one core), peak
RSS of the tree, exchange->receive lag (flat = kept up), the longest archive commit, and the
archive bytes written per message. Channels: level3 (depth 10) + book (depth 10) + trade + ohlc.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.harness import Figure

__all__ = ["run_capture"]

_SECRET = base64.b64encode(b"bench-secret-material-0123456789" * 2).decode()


#: ``CAPTURE_BENCH_SAMPLE=1``: every recorder process runs :data:`_SAMPLER` (a generated
#: ``sitecustomize``); the run prints the main thread's stacks seen during its long busy
#: stretches (>= 4 ms of its CPU time in a row, sampled each ~1 ms). Opt-in, for finding
#: the loop's stalls (it perturbs the run); off for figures.
_SAMPLER = """
import atexit, collections, os, sys, threading, time, traceback
def _start():
    main = threading.main_thread().ident
    clock = time.pthread_getcpuclockid(main)
    counts = collections.Counter()
    out = os.path.join(os.environ["CAPTURE_BENCH_SAMPLE_DIR"], f"sample-{os.getpid()}.txt")
    def run():
        busy = 0.0  # main-thread CPU of the current run of busy ticks
        while True:
            t0, c0 = time.monotonic(), time.clock_gettime(clock)
            time.sleep(0.001)
            dt, dc = time.monotonic() - t0, time.clock_gettime(clock) - c0
            busy = busy + dc if dc > 0.7 * dt else 0.0
            if busy > 0.004:  # the main thread has been busy > 4 ms of CPU in a row
                frame = sys._current_frames().get(main)
                if frame is not None:
                    stack = traceback.extract_stack(frame)[-8:]
                    counts[" <- ".join(f"{os.path.basename(f.filename)}:{f.lineno}:{f.name}"
                                       for f in reversed(stack))] += 1
    def dump():
        with open(out, "w") as fh:
            for stack, n in counts.most_common(25):
                fh.write(f"{n}\\t{stack}\\n")
    threading.Thread(target=run, daemon=True, name="bench-sampler").start()
    atexit.register(dump)
    def every():
        while True:
            time.sleep(5)
            dump()
    threading.Thread(target=every, daemon=True, name="bench-sampler-dump").start()
if os.environ.get("CAPTURE_BENCH_SAMPLE_DIR"):
    _start()
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 30.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _tree(pid: int) -> list[Any]:
    import psutil

    p = psutil.Process(pid)
    return [p, *p.children(recursive=True)]


def _capture_run(*, pairs: int, rate: float, window: float, quick: bool,
                 pregenerate_s: float = 0.0) -> dict[str, Any]:
    """One ``recorder run`` (2 workers) against one ``recorder sim``; measurements over a
    ``window`` of steady state after every subscription is up (see the module docstring).
    ``pregenerate_s``: the sim serves a market pre-generated for that long (its CPU in the
    window is then the serving path alone); ``"pregen_live"`` says whether the horizon ran
    out (or anything else made it go live) before the window ended."""
    import tempfile

    import psutil

    tmp = tempfile.mkdtemp(prefix="capture-bench-")
    cmd = [sys.executable, "-m", "recorder", "sim", "--port", "0", "--pairs", str(pairs),
           "--rate", str(rate), "--seed", "5", "--api-key", "BENCH", "--api-secret", _SECRET,
           "--send-queue", "500000"]
    if pregenerate_s:
        cmd += ["--pregenerate", str(pregenerate_s)]
    sim = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    urls = json.loads(sim.stdout.readline())  # type: ignore[union-attr]
    listening = time.monotonic()
    mport = _port()
    env = {**os.environ, "KRAKEN_API_KEY": "BENCH", "KRAKEN_API_SECRET": _SECRET,
           "RECORDER_SCHEDULE__ROLL_MINUTES": "0.25",
           "RECORDER_CHANNELS__BOOK_DEPTH": "10", "RECORDER_CHANNELS__L3_TIER": "pro",
           "RECORDER_CONNECTION__SILENCE_S": "10", "RECORDER_LOG_LEVEL": "WARNING"}
    if os.environ.get("CAPTURE_BENCH_SAMPLE") == "1":
        Path(tmp, "site").mkdir()
        Path(tmp, "site", "sitecustomize.py").write_text(_SAMPLER)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [f"{tmp}/site",
                                                          env.get("PYTHONPATH", "")]))
        env["CAPTURE_BENCH_SAMPLE_DIR"] = tmp
    rec = subprocess.Popen([sys.executable, "-m", "recorder", "run", "--workers", "2",
                            "--archive-root", f"{tmp}/archive", "--metrics-port", str(mport),
                            "--spot-ws", urls["spot_ws"], "--l3-ws", urls["l3_ws"],
                            "--futures-ws", urls["futures_ws"], "--spot-rest", urls["rest"],
                            "--futures-rest", urls["rest"], "--log-level", "WARNING"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{mport}"
    try:
        deadline = time.monotonic() + (60 if quick else 180)
        while time.monotonic() < deadline:
            try:
                st = _get(base + "/status")
                conns = [c for w in st["workers"].values() for c in w["connections"]]
                if len(st["workers"]) == 2 and conns and all(
                        c["connected"] and set(c["states"]) <= {"active"} for c in conns):
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(1)
        time.sleep(3)
        procs = _tree(rec.pid)
        simp = psutil.Process(sim.pid)
        for p in [*procs, simp]:
            p.cpu_percent(None)
        s0 = _get(base + "/status")
        sim0 = _get(urls["control"] + "/stats")
        t0 = time.monotonic()
        rss_peak = 0
        lags = []
        stall = {"all": 0.0, "committing": 0.0, "idle": 0.0, "cpu": 0.0, "cpu_committing": 0.0}
        while time.monotonic() - t0 < window:
            time.sleep(1)
            rss_peak = max(rss_peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            ws = _get(base + "/status")["workers"].values()
            lags.append(max(w["lag_exchange_receive_s"] for w in ws))
            # each worker's report covers its last status interval: the window's longest
            # event-loop stall is the largest of them (while a commit ran, or not)
            for key, field in (("all", "loop_lag_window_max_s"),
                               ("committing", "loop_lag_window_committing_max_s"),
                               ("idle", "loop_lag_window_idle_max_s"),
                               ("cpu", "loop_cpu_window_max_s")):
                stall[key] = max(stall[key], *(w.get(field, 0.0) for w in ws))
        stall["cpu_committing"] = max(w.get("loop_cpu_committing_max_s", 0.0)
                                      for w in _get(base + "/status")["workers"].values())
        cpu = sum(p.cpu_percent(None) for p in procs if p.is_running())
        sim_cpu = simp.cpu_percent(None)
        s1 = _get(base + "/status")
        sim1 = _get(urls["control"] + "/stats")
        dt = time.monotonic() - t0
        # each worker reports its counters every status interval (1 s) with its own time:
        # its rate is taken between its two reports, then scaled to the window (counting
        # the reports' difference over the window instead is off by up to one interval of
        # frames, 10 % of a 10 s window)
        got = 0.0
        for key, w1 in s1["workers"].items():
            w0 = s0["workers"].get(key)
            if w0 is not None and w1["time"] > w0["time"]:
                got += (w1["frames_in"] - w0["frames_in"]) / (w1["time"] - w0["time"]) * dt
        size = sum(f.stat().st_size for f in Path(tmp, "archive").rglob("*") if f.is_file())
        return {
            "dt": dt, "got": got, "sent": sim1["frames_sent"] - sim0["frames_sent"],
            "cpu": cpu, "sim_cpu": sim_cpu, "rss_peak": rss_peak, "lags": lags,
            "fails": sum(w["checksum_failures"] for w in s1["workers"].values()),
            "commit_max": max(w["commit_s_max"] for w in s1["workers"].values()),
            "stall": stall,
            "cut_cpu_max": max(w.get("commit_cut_cpu_s_max", 0.0) for w in s1["workers"].values()),
            "commits": sum(w["commits"] for w in s1["workers"].values()),
            "commits_on_loop": sum(w.get("commits_on_loop", 0) for w in s1["workers"].values()),
            "journaled": sum(w["frames_journaled"] for w in s1["workers"].values()),
            "slow": sim1["slow_disconnects"], "size": size,
            "pregen_live": bool(sim1.get("pregen_live", 0)),
            "pregen": urls.get("pregenerated"), "ready_s": t0 - listening,
        }
    finally:
        rec.send_signal(signal.SIGTERM)
        try:
            rec.wait(30)
        except subprocess.TimeoutExpired:
            rec.kill()
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
        import shutil

        for sample in sorted(Path(tmp).glob("sample-*.txt")):
            text = sample.read_text()
            if text:
                print(f"--- {sample.name}: main-thread stacks in busy stretches "
                      f"(count, innermost first)\n{text}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


def _kept_up(run: dict[str, Any]) -> bool:
    """Kept up: the recorder received what the sim sent (within 2 %), no slow-consumer
    disconnect, and the exchange->receive lag did not grow (last 3 s within 0.5 s of the
    first 3 s and under 1 s)."""
    lags = run["lags"]
    head, tail = max(lags[:3]), max(lags[-3:])
    return (run["got"] >= 0.98 * run["sent"] and not run["slow"] and tail < 1.0
            and tail <= head + 0.5)


def _sweep_figures(quick: bool) -> list[Figure]:
    """The recorder above the live sim's limit: ``--pregenerate`` sims at rising offered rates
    (60 pairs; ``--rate`` 15/30/60 offer roughly 10k/20k/40k msgs/s), one row per rate; then
    the best wall rate kept up with, and the CPU-time bound of the highest-rate run.

    CPU per frame (recorder tree CPU-seconds per received frame, sim CPU-seconds per sent
    frame) does not depend on how much of the shared machine the processes got, so the last
    row turns it into what two dedicated cores could carry: ``2 / (recorder + sim)``."""
    pairs, window = (60, 10.0) if quick else (120, 30.0)
    rates = (15.0, 30.0, 60.0) if quick else (15.0, 30.0, 60.0, 90.0)
    figures: list[Figure] = []
    best: tuple[float, str] = (0.0, "none kept up")
    bound: tuple[float, str] = (0.0, "")
    alone: tuple[float, str] = (0.0, "")
    for rate in rates:
        # horizon: recorder start-up (connect + subscribe every pair) + 3 s + window + slack
        try:
            run = _capture_run(pairs=pairs, rate=rate, window=window, quick=quick,
                               pregenerate_s=window + (60.0 if quick else 120.0))
        except (OSError, TimeoutError) as exc:  # e.g. the sim's stats endpoint did not answer
            figures.append(Figure(
                f"capture vs pre-generated sim, --rate {rate:g} ({pairs} pairs): received msgs/s",
                0.0, "msg/s", note=f"RUN FAILED, nothing measured: {type(exc).__name__}: {exc}"))
            continue
        dt = run["dt"]
        offered, got = run["sent"] / dt, run["got"] / dt
        lags = run["lags"]
        ok = _kept_up(run) and not run["pregen_live"]
        # kept up with what was offered: a received rate above it is backlog being drained
        if ok and min(got, offered) > best[0]:
            best = (min(got, offered), f"--rate {rate:g}: offered {offered:,.0f}/s, "
                                       f"received {got:,.0f}/s")
        rec_us = 1e6 * run["cpu"] / 100 * dt / max(1, run["got"])
        sim_us = 1e6 * run["sim_cpu"] / 100 * dt / max(1, run["sent"])
        if run["got"]:
            bound = (2e6 / (rec_us + sim_us),
                     f"--rate {rate:g}: recorder {rec_us:.1f} + sim {sim_us:.1f} CPU-us per msg")
            alone = (2e6 / rec_us, f"--rate {rate:g}: recorder {rec_us:.1f} CPU-us per msg")
        pre = run["pregen"] or {}
        figures.append(Figure(
            f"capture vs pre-generated sim, --rate {rate:g} ({pairs} pairs): received msgs/s",
            got, "msg/s",
            note=(f"offered (sim sent) {offered:,.0f}/s; {'KEPT UP' if ok else 'FELL BEHIND'}; "
                  f"lag {lags[0]:.2f}s -> {lags[-1]:.2f}s (max {max(lags):.2f}s); recorder tree "
                  f"CPU {run['cpu']:.0f}% of one core = {rec_us:.1f} us/msg, peak RSS "
                  f"{run['rss_peak'] / 2**20:,.0f} MiB; sim CPU {run['sim_cpu']:.0f}% = "
                  f"{sim_us:.1f} us/msg (spot served from {pre.get('frames', 0):,} frames "
                  f"pre-generated in {pre.get('generate_s', 0):.0f} s before it listened, "
                  f"{pre.get('start_late_s', 0):.0f} s after the planned start"
                  f"; futures market live{'; horizon ran out, sim went LIVE' if run['pregen_live'] else ''}); "
                  f"checksum failures {run['fails']}; slow-consumer drops {run['slow']}; "
                  f"{dt:.0f}s window")))
    figures.append(Figure(
        "capture: sustained msgs/s kept up with (pre-generated sim, 2 cores shared)", best[0],
        "msg/s", target=">= 50,000",
        note=f"best offered rate the recorder kept up with ({best[1]}); the sim's serving "
             "CPU shares the 2 cores with the recorder; on a busy machine read the next row"))
    figures.append(Figure(
        "capture: CPU-time bound on 2 dedicated cores (recorder + pre-generated sim)", bound[0],
        "msg/s", target=">= 50,000",
        note=f"2 core-seconds / CPU per message at the highest rate ({bound[1]}); an upper "
             "bound from CPU time, not a wall measurement: assumes both cores fully usable"))
    figures.append(Figure(
        "capture: CPU-time bound on 2 cores for the recorder alone (exchange elsewhere)",
        alone[0], "msg/s", target=">= 50,000",
        note=f"2 core-seconds / the recorder's CPU per message at the highest rate ({alone[1]}), "
             "as when the exchange runs on another machine (Kraken in production); an "
             "extrapolation from CPU time, not a wall measurement: this machine has no third "
             "core to put the sim on"))
    return figures


def run_capture(*, quick: bool = False, sweep: bool = True) -> list[Figure]:
    """The main run's figures (683 pairs, or 60 with ``quick``), then the rate sweep's unless
    ``sweep`` is false (``python -m benchmarks.capture [--quick] --no-sweep``)."""
    pairs, rate, window = (60, 4.0, 10.0) if quick else (683, 3.0, 30.0)
    run = _capture_run(pairs=pairs, rate=rate, window=window, quick=quick)
    dt, lags = run["dt"], run["lags"]
    note = f"{pairs} pairs x (level3+book10+trade+ohlc), sim --rate {rate}, 2 workers, {dt:.0f}s"
    figures = [
        Figure("capture: sustained messages/s kept up with", run["got"] / dt, "msg/s",
               target=">= 50,000", note=note + f"; sim sent {run['sent'] / dt:,.0f}/s"
               + f"; checksum failures {run['fails']}"),
        Figure("capture: CPU of recorder process tree", run["cpu"], "% of one core",
               note="supervisor + 2 workers"),
        Figure("capture: peak RSS of recorder process tree", run["rss_peak"] / 2**20, "MiB",
               target="<= 1024 MiB"),
        Figure("capture: exchange->receive lag at window end", lags[-1] if lags else 0.0, "s",
               note=f"max over window {max(lags) if lags else 0:.3f}s (flat = kept up)"),
        Figure("capture: longest archive commit (in the commit thread, off the loop)",
               run["commit_max"], "s", note="journal flush + Parquet seal + state + manifest, "
               "every 15 s here"),
        Figure("capture: event loop's longest stall in the window", run["stall"]["all"] * 1e3,
               "ms", target="<= 20",
               note=f"while a commit ran {run['stall']['committing'] * 1e3:.1f} ms, while none "
                    f"ran {run['stall']['idle'] * 1e3:.1f} ms (10 ms timer, both workers); "
                    f"longest commit cut on the loop {run['cut_cpu_max'] * 1e3:.1f} CPU-ms; "
                    f"{run['commits']} commits, {run['commits_on_loop']} on the loop"),
        Figure("capture: event loop's longest stall from its own work in the window",
               run["stall"]["cpu"] * 1e3, "ms", target="<= 20",
               note="per run of the 10 ms timer: its lag, at most the loop thread's CPU time "
                    "since the previous run (other processes and threads holding the CPU or "
                    f"the GIL do not add to it), both workers; while a commit ran (whole run) "
                    f"{run['stall']['cpu_committing'] * 1e3:.1f} ms"),
        Figure("capture: archive bytes per journaled frame (journal + Parquet)",
               run["size"] / max(1, run["journaled"]), "B/frame",
               note=f"{run['journaled']:,} frames journaled incl. markers and requests"),
    ]
    return figures + (_sweep_figures(quick) if sweep else [])


def run_stall(*, quick: bool = False, runs: int = 4) -> list[Figure]:
    """The event loop's longest stall over the full universe (683 pairs; 60 with ``quick``),
    ``runs`` main runs back to back (no sweep): the figure is the *worst* run, every run
    listed, with the loop's own-work stall, the sustained rate and the peak RSS beside it
    (``python -m benchmarks --only stall``)."""
    pairs, rate, window = (60, 4.0, 10.0) if quick else (683, 3.0, 30.0)
    results = [_capture_run(pairs=pairs, rate=rate, window=window, quick=quick)
               for _ in range(1 if quick else runs)]
    walls = [r["stall"]["all"] * 1e3 for r in results]
    owns = [r["stall"]["cpu"] * 1e3 for r in results]
    listed = ", ".join(f"{w:.1f}" for w in walls)
    met = sum(w <= 20 for w in walls)
    load = os.getloadavg()[0]
    return [
        Figure(f"capture: event loop's longest stall, worst of {len(results)} runs "
               f"({pairs} pairs)", max(walls), "ms", target="<= 20",
               note=f"runs: {listed} ms ({met} of {len(results)} <= 20); 10 ms timer, both "
                    f"workers, wall-clock lag (includes the CPU and GIL the loop waited for); "
                    f"commits on the loop: {sum(r['commits_on_loop'] for r in results)}; "
                    f"load average after the runs {load:.1f}"),
        Figure(f"capture: event loop's longest stall from its own work, worst of "
               f"{len(results)} runs ({pairs} pairs)", max(owns), "ms", target="<= 20",
               note="runs: " + ", ".join(f"{o:.1f}" for o in owns) + " ms (lag counted at "
                    "most as the loop thread's CPU time since the previous timer run)"),
        Figure(f"capture: kept up with, {pairs} pairs (stall runs)",
               min(r["got"] / r["dt"] for r in results), "msg/s",
               note="lowest of the runs; checksum failures "
                    f"{sum(r['fails'] for r in results)}; peak RSS "
                    f"{max(r['rss_peak'] for r in results) / 2**20:,.0f} MiB"),
    ]


if __name__ == "__main__":
    for f in run_capture(quick="--quick" in sys.argv, sweep="--no-sweep" not in sys.argv):
        print(f)
