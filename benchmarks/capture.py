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


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def _tree(pid: int) -> list[Any]:
    import psutil

    p = psutil.Process(pid)
    return [p, *p.children(recursive=True)]


def run_capture(*, quick: bool = False) -> list[Figure]:
    import tempfile

    pairs, rate, window = (60, 4.0, 10.0) if quick else (683, 3.0, 30.0)
    tmp = tempfile.mkdtemp(prefix="capture-bench-")
    sim = subprocess.Popen([sys.executable, "-m", "recorder", "sim", "--port", "0", "--pairs",
                            str(pairs), "--rate", str(rate), "--seed", "5", "--api-key", "BENCH",
                            "--api-secret", _SECRET, "--send-queue", "500000"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    urls = json.loads(sim.stdout.readline())  # type: ignore[union-attr]
    mport = _port()
    env = {**os.environ, "KRAKEN_API_KEY": "BENCH", "KRAKEN_API_SECRET": _SECRET,
           "RECORDER_SCHEDULE__ROLL_MINUTES": "0.25",
           "RECORDER_CHANNELS__BOOK_DEPTH": "10", "RECORDER_CHANNELS__L3_TIER": "pro",
           "RECORDER_CONNECTION__SILENCE_S": "10", "RECORDER_LOG_LEVEL": "WARNING"}
    rec = subprocess.Popen([sys.executable, "-m", "recorder", "run", "--workers", "2",
                            "--archive-root", f"{tmp}/archive", "--metrics-port", str(mport),
                            "--spot-ws", urls["spot_ws"], "--l3-ws", urls["l3_ws"],
                            "--futures-ws", urls["futures_ws"], "--spot-rest", urls["rest"],
                            "--futures-rest", urls["rest"], "--log-level", "WARNING"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{mport}"
    figures: list[Figure] = []
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
        for p in procs:
            p.cpu_percent(None)
        s0 = _get(base + "/status")
        sim0 = _get(urls["control"] + "/stats")
        t0 = time.monotonic()
        rss_peak = 0
        lags = []
        while time.monotonic() - t0 < window:
            time.sleep(1)
            rss_peak = max(rss_peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            lags.append(max(w["lag_exchange_receive_s"] for w in _get(base + "/status")["workers"].values()))
        cpu = sum(p.cpu_percent(None) for p in procs if p.is_running())
        s1 = _get(base + "/status")
        sim1 = _get(urls["control"] + "/stats")
        dt = time.monotonic() - t0
        got = sum(w["frames_in"] for w in s1["workers"].values()) - sum(
            w["frames_in"] for w in s0["workers"].values())
        sent_key = next((k for k in ("frames_sent", "sent_frames", "frames") if k in sim1), None)
        sent = (sim1[sent_key] - sim0[sent_key]) if sent_key and isinstance(sim1[sent_key], int) else None
        fails = sum(w["checksum_failures"] for w in s1["workers"].values())
        commit_max = max(w["commit_s_max"] for w in s1["workers"].values())
        journaled = sum(w["frames_journaled"] for w in s1["workers"].values())
        note = f"{pairs} pairs x (level3+book10+trade+ohlc), sim --rate {rate}, 2 workers, {dt:.0f}s"
        figures.append(Figure("capture: sustained messages/s kept up with", got / dt, "msg/s",
                              target=">= 50,000", note=note + (f"; sim sent {sent / dt:,.0f}/s" if sent else "")
                              + f"; checksum failures {fails}"))
        figures.append(Figure("capture: CPU of recorder process tree", cpu, "% of one core",
                              note="supervisor + 2 workers"))
        figures.append(Figure("capture: peak RSS of recorder process tree", rss_peak / 2**20, "MiB",
                              target="<= 1024 MiB"))
        figures.append(Figure("capture: exchange->receive lag at window end", lags[-1] if lags else 0.0, "s",
                              note=f"max over window {max(lags) if lags else 0:.3f}s (flat = kept up)"))
        figures.append(Figure("capture: longest archive commit (blocks the worker's loop)",
                              commit_max, "s", note="Parquet seal + manifest, every 15 s here"))
        size = sum(f.stat().st_size for f in Path(tmp, "archive").rglob("*") if f.is_file())
        figures.append(Figure("capture: archive bytes per journaled frame (journal + Parquet)",
                              size / max(1, journaled), "B/frame",
                              note=f"{journaled:,} frames journaled incl. markers and requests"))
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
    return figures


if __name__ == "__main__":
    for f in run_capture(quick="--quick" in sys.argv):
        print(f)
