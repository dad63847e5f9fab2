"""Capture at offered rates up to >= 100,000 msgs/s: ``recorder run`` against the load generator.

``python -m benchmarks --only capture_load`` (or ``python -m benchmarks.capture_load
[--quick] [--rates 10000,50000,100000]``). One stream is rendered before anything is timed
(:mod:`benchmarks.loadgen`: the simulator's market, real Kraken v2 frames with valid
checksums, framed once); then, per offered rate, a fresh generator process serves it and a
fresh ``recorder run`` (supervisor + 2 workers, the product as deployed) captures it:

1. the recorder connects, subscribes every pair (level3 10 + book 10 + trade + ohlc 1), gets
   acks and snapshots; when every subscription is active the generator is armed and started
   at the offered rate;
2. after a warm-up, over the window: frames offered (due) and written by the generator,
   frames received by the recorder (counted afterwards in its journal by receive time; the
   workers' own ``frames_in`` status is reported beside), CPU of the recorder's whole
   process tree and of the generator, peak RSS of the tree, the generator's backlog (frames
   due it could not write because the recorder's socket was full), the recorder's longest
   event-loop stall and exchange->receive lag (informational: the frames' exchange times run
   at the render's pace, not the offered rate);
3. the generator stops (no more frames, no heartbeats), the recorder drains and is stopped
   (SIGTERM, clean close), and the run checks itself: on every generator connection, every
   frame written up to the stop (all stream frames among them) is in the recorder's journal
   and nothing it did not write (connections matched by the id their status greeting
   carries; only the supervisor's discovery connection, closed before the stream and
   running no archive, is absent), every book/level3 checksum there verifies (0 mismatches, 0 crossed, 0 rejects), the
   recorder reported 0 checksum failures, and the generator refused nothing (no
   subscription it could not serve faithfully). A run failing a check raises
   :class:`CaptureLoadError`: no figure is reported from it.

CPU per message = CPU seconds of the recorder's process tree over the window / frames it
received in the window; it does not depend on how much of the shared machine the recorder got.

Kept up: the generator wrote at least 98 % of what was offered in the window and its backlog
at the window's end is under 0.25 s of the offered rate, and the recorder received at least
98 % of what was written.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.harness import Figure

__all__ = ["CaptureLoadError", "run_capture_load", "capture_at_rate", "render_for"]

_SECRET = base64.b64encode(b"bench-secret-material-0123456789" * 2).decode()
_KEY = "BENCH"


class CaptureLoadError(RuntimeError):
    """A run failed its own check (or a process did not come up): nothing is reported."""


def _get(url: str, timeout: float = 30.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _post(url: str, body: dict[str, Any], timeout: float = 120.0) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree_cpu(pid: int) -> float:
    """User+system CPU seconds of ``pid`` and every live descendant."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _cpu_by_process(pid: int) -> dict[int, float]:
    """CPU seconds of ``pid`` and each live descendant, by pid."""
    import psutil

    out: dict[int, float] = {}
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return out


def _start_profilers(pid: int, seconds: float, out_dir: Path) -> list[tuple[int, Path, Any]]:
    """``py-spy record`` (sampling, non-blocking, collapsed stacks) of the supervisor and each
    worker for ``seconds``; the profilers' own CPU is outside the recorder's tree."""
    import psutil
    import shutil

    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise CaptureLoadError("py-spy is not installed (pip install py-spy)")
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    started = []
    for p in procs:
        path = out_dir / f"{'supervisor' if p.pid == pid else 'worker'}-{p.pid}.txt"
        started.append((p.pid, path, subprocess.Popen(
            [spy, "record", "--pid", str(p.pid), "--duration", str(int(seconds)), "--rate", "250",
             "--nonblocking", "--threads", "--format", "raw", "--output", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    return started


def _tree_rss(pid: int) -> int:
    import psutil

    total = 0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def render_for(path: Path, *, frames: int, pairs: int, market_rate: float, seed: int = 5
               ) -> dict[str, Any]:
    """Render the stream (a subprocess: its memory is returned when it exits)."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.loadgen", "render", "--out", str(path),
                          "--pairs", str(pairs), "--seed", str(seed), "--market-rate",
                          str(market_rate), "--frames", str(frames)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise CaptureLoadError(f"render failed: {out.stderr.strip()[-2000:]}")
    summary: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return summary


def _frames_in(status: dict[str, Any]) -> int:
    return sum(w["frames_in"] for w in status["workers"].values())


def capture_at_rate(stream: Path, *, rate: float, window: float, warmup: float = 3.0,
                    workers: int = 2, startup_timeout: float = 180.0,
                    keep_in: Path | None = None, profile_dir: Path | None = None
                    ) -> dict[str, Any]:
    """One generator + one ``recorder run`` at ``rate`` offered msgs/s; the measurements and
    the self-check's findings (see the module docstring). Raises :class:`CaptureLoadError`
    when a check fails. ``keep_in``: the archive is written under this directory and kept
    (otherwise in a temporary one, removed). ``profile_dir``: py-spy samples every recorder
    process over the window into collapsed-stack files there (``"profiles"`` of the result;
    the figures of such a run include the sampling's intrusion)."""
    import shutil

    tmp = str(keep_in) if keep_in is not None else tempfile.mkdtemp(prefix="capture-load-")
    gen = subprocess.Popen([sys.executable, "-m", "benchmarks.loadgen", "serve", "--stream",
                            str(stream), "--api-key", _KEY, "--api-secret", _SECRET],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rec: subprocess.Popen[bytes] | None = None
    try:
        line = gen.stdout.readline() if gen.stdout is not None else ""
        if not line:
            raise CaptureLoadError(f"generator did not start: {gen.communicate()[1][-2000:]}")
        urls = json.loads(line)
        control = urls["control"] + "/loadgen"
        mport = _port()
        env = {**os.environ, "KRAKEN_API_KEY": _KEY, "KRAKEN_API_SECRET": _SECRET,
               "RECORDER_SCHEDULE__ROLL_MINUTES": "0.25",
               "RECORDER_CHANNELS__BOOK_DEPTH": "10", "RECORDER_CHANNELS__L3_TIER": "pro",
               "RECORDER_CONNECTION__SILENCE_S": "10",
               # no application pings: a pong in flight at shutdown would spoil the count
               "RECORDER_CONNECTION__PING_INTERVAL_S": "3600",
               # a worker's last commit on the loaded 2 cores may take longer than the
               # default 20 s: killed then, it would lose its journal's unflushed tail
               "RECORDER_DRAIN_TIMEOUT_S": "180",
               "RECORDER_LOG_LEVEL": "WARNING"}
        rec_log = open(Path(tmp, "recorder.log"), "wb")  # noqa: SIM115 - closed below
        rec = subprocess.Popen([sys.executable, "-m", "recorder", "run", "--workers", str(workers),
                                "--archive-root", f"{tmp}/archive", "--metrics-port", str(mport),
                                "--spot-ws", urls["spot_ws"], "--l3-ws", urls["l3_ws"],
                                "--futures-ws", urls["futures_ws"], "--spot-rest", urls["rest"],
                                "--futures-rest", urls["rest"], "--log-level", "WARNING"],
                               env=env, stdout=subprocess.DEVNULL, stderr=rec_log)
        rec_log.close()
        base = f"http://127.0.0.1:{mport}"
        started = time.monotonic()
        while True:
            if rec.poll() is not None:
                raise CaptureLoadError(f"recorder exited ({rec.returncode}) during start-up: "
                                       f"{_tail(Path(tmp, 'recorder.log'))}")
            try:
                st = _get(base + "/status", 5)
                conns = [c for w in st["workers"].values() for c in w["connections"]]
                if (len(st["workers"]) == workers and conns and all(
                        c["connected"] and set(c["states"]) <= {"active"} for c in conns)):
                    break
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() - started > startup_timeout:
                raise CaptureLoadError("recorder did not get every subscription active in "
                                       f"{startup_timeout:.0f} s")
            time.sleep(1)
        ready_s = time.monotonic() - started
        time.sleep(1.0)
        armed = _post(control, {"action": "arm"})
        if armed["stream_frames"] < rate * (warmup + window + 2):
            raise CaptureLoadError(
                f"stream too short: {armed['stream_frames']:,} frames subscribed, "
                f"{rate * (warmup + window + 2):,.0f} needed at {rate:,.0f}/s")
        _post(control, {"action": "go", "rate": rate})
        time.sleep(warmup)
        s0, g0 = _get(base + "/status"), _get(control)
        rec_cpu0, gen_cpu0 = _tree_cpu(rec.pid), g0["cpu_s"]
        by_proc0 = _cpu_by_process(rec.pid)
        profilers = (_start_profilers(rec.pid, window, profile_dir)
                     if profile_dir is not None else [])
        t0 = time.monotonic()
        t0_ns = time.time_ns()
        rss_peak, lags, backlogs, stall = 0, [], [], 0.0
        while time.monotonic() - t0 < window:
            time.sleep(1.0)
            rss_peak = max(rss_peak, _tree_rss(rec.pid))
            ws = _get(base + "/status")["workers"].values()
            lags.append(max(w["lag_exchange_receive_s"] for w in ws))
            stall = max(stall, *(w.get("loop_lag_window_max_s", 0.0) for w in ws))
            backlogs.append(_get(control)["backlog"])
        rec_cpu1 = _tree_cpu(rec.pid)
        t1_ns = time.time_ns()
        by_proc1 = _cpu_by_process(rec.pid)
        s1, g1 = _get(base + "/status"), _get(control)
        dt = time.monotonic() - t0
        for _, _, spy in profilers:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
        supervisor_cpu = by_proc1.get(rec.pid, 0.0) - by_proc0.get(rec.pid, 0.0)
        children_cpu = sorted((by_proc1[p] - by_proc0.get(p, 0.0) for p in by_proc1
                               if p != rec.pid), reverse=True)
        if g1["exhausted"]:
            raise CaptureLoadError("the stream ran out before the window ended")
        # each worker's counters carry their own time: rate between its two reports x window
        # (the workers' status view; the figures use the journal's receive times, below)
        got = 0.0
        for key, w1 in s1["workers"].items():
            w0 = s0["workers"].get(key)
            if w0 is not None and w1["time"] > w0["time"]:
                got += (w1["frames_in"] - w0["frames_in"]) / (w1["time"] - w0["time"]) * dt
        # stop, drain, stop the recorder cleanly, then check every frame
        stopped = _post(control, {"action": "stop"})
        drain_t0 = time.monotonic()
        last, still = -1, 0
        while time.monotonic() - drain_t0 < 60:
            n = _frames_in(_get(base + "/status"))
            still = still + 1 if n == last else 0
            if still >= 3:
                break
            last = n
            time.sleep(0.5)
        drain_s = time.monotonic() - drain_t0
        fails = sum(w["checksum_failures"] for w in _get(base + "/status")["workers"].values())
        rec.send_signal(signal.SIGTERM)
        stop_t0 = time.monotonic()
        try:
            rec.wait(240)
        except subprocess.TimeoutExpired:
            rec.kill()
            raise CaptureLoadError("recorder did not stop within 240 s of SIGTERM") from None
        stop_s = time.monotonic() - stop_t0
        if rec.returncode != 0:
            raise CaptureLoadError(f"recorder exited {rec.returncode} after SIGTERM: "
                                   f"{_tail(Path(tmp, 'recorder.log'))}")
        final = _get(control)
        try:
            check = _check(Path(tmp, "archive"), final, fails, window_ns=(t0_ns, t1_ns))
        except CaptureLoadError as exc:
            raise CaptureLoadError(f"{exc}; recorder stopped in {stop_s:.1f} s; its log: "
                                   f"{_tail(Path(tmp, 'recorder.log'))}") from None
        offered = (g1["due"] - g0["due"])
        written = (g1["written"] - g0["written"])
        return {
            "rate": rate, "dt": dt, "offered": offered, "written": written, "got_status": got,
            "rec_cpu_s": rec_cpu1 - rec_cpu0, "gen_cpu_s": g1["cpu_s"] - gen_cpu0,
            "supervisor_cpu_s": supervisor_cpu, "children_cpu_s": children_cpu,
            "profiles": [(pid, str(path)) for pid, path, _ in profilers],
            "rss_peak": rss_peak, "lags": lags, "backlogs": backlogs, "stall_s": stall,
            "drain_s": drain_s, "stop_s": stop_s, "ready_s": ready_s, "arm_s": armed["arm_s"],
            "keys": (armed["keys_subscribed"], armed["keys_rendered"]),
            "connections": armed["stream_connections"], "stopped_due": stopped["due"],
            **check,
        }
    finally:
        if rec is not None and rec.poll() is None:
            rec.kill()
            rec.wait()
        if gen.poll() is None:
            gen.send_signal(signal.SIGINT)
            try:
                gen.wait(15)
            except subprocess.TimeoutExpired:
                gen.kill()
                gen.wait()
        if keep_in is None:
            shutil.rmtree(tmp, ignore_errors=True)


def _tail(path: Path, size: int = 1500) -> str:
    try:
        return path.read_bytes()[-size:].decode("utf-8", "replace").strip() or "(empty)"
    except OSError:
        return "(none)"


def _journal_per_connection(roots: list[Path], window_ns: tuple[int, int]
                            ) -> tuple[dict[int, int], int]:
    """Spot/level3 frames received per generator connection, from the journal: each recorder
    connection's first frame is the status greeting, which names the generator's connection
    id. Frames of a recorder connection without a greeting count under -1. Also: how many
    were received (journal ``recv_ns``, the wall clock) within ``window_ns``."""
    from recorder.archive.journal import list_segments, read_segment

    lo, hi = window_ns
    in_window = 0
    counts: dict[tuple[str, int], int] = {}
    names: dict[tuple[str, int], int] = {}
    for root in roots:
        base = root / "journal"
        for name in list_segments(base):
            for _, frame in read_segment(base / name):
                if frame.direction != "in" or frame.stream not in ("spot", "l3"):
                    continue
                key = (str(root), frame.conn_id)
                counts[key] = counts.get(key, 0) + 1
                in_window += lo <= frame.recv_ns < hi
                if key not in names and frame.payload.startswith(b'{"channel":"status"'):
                    data = json.loads(frame.payload)["data"][0]
                    names[key] = int(data["connection_id"])
    out: dict[int, int] = {}
    for key, n in counts.items():
        gen_id = names.get(key, -1)
        out[gen_id] = out.get(gen_id, 0) + n
    return out, in_window


def _check(archive: Path, gen: dict[str, Any], status_fails: int,
           window_ns: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """Every frame the generator wrote is journaled, every checksum verifies, nothing was
    refused; :class:`CaptureLoadError` otherwise.

    Per generator connection, the journal must hold at least every frame written up to the
    stop (all stream frames are among them) and at most every frame written at all: after
    the stop only replies to the recorder's own requests can be written, and one still in
    flight when the recorder closed its socket is legitimately not received."""
    from recorder.verify_journal import verify_journal

    roots = sorted({p.parent for p in archive.rglob("journal") if p.is_dir()})
    if not roots:
        raise CaptureLoadError(f"no journal under {archive}")
    report = verify_journal(roots)
    journal, in_window = _journal_per_connection(roots, window_ns)
    problems = []
    unjournaled = 0
    if -1 in journal:
        problems.append(f"{journal[-1]} journaled frames on connections without a greeting")
    for conn, (at_stop, final, open_at_arm) in gen["per_connection"].items():
        got = journal.get(int(conn), 0)
        if not open_at_arm and got == 0:
            # closed before the stream started, never journaled: the supervisor's discovery
            # connection (greeting + instrument ack and snapshot; it runs no archive)
            unjournaled += 1
            continue
        if at_stop is None or not at_stop <= got <= final:
            problems.append(f"connection {conn}: journal holds {got:,} frames, the generator "
                            f"wrote {at_stop} up to the stop and {final:,} in all")
    extra = set(journal) - {int(c) for c in gen["per_connection"]} - {-1}
    if extra:
        problems.append(f"journal frames from unknown connections {sorted(extra)[:5]}")
    if report["frames"] != sum(journal.values()):
        problems.append(f"verify counted {report['frames']:,} frames, the per-connection "
                        f"count {sum(journal.values()):,}")
    for name in ("mismatches", "crossed", "rejects"):
        if report[name]:
            problems.append(f"journal verify: {report[name]} {name}")
    if report["torn_segments"]:
        problems.append(f"torn journal segments: {report['torn_segments'][:3]}")
    if status_fails:
        problems.append(f"recorder reported {status_fails} checksum failures")
    refused = {k: v for k, v in gen["refused"].items() if v}
    if refused:
        problems.append(f"generator refused {refused} (unrendered: {gen['unrendered']})")
    if gen["written"] == 0:
        problems.append("the generator wrote no stream frame")
    if problems:
        raise CaptureLoadError("; ".join(problems[:10]))
    return {"journal_frames": report["frames"], "verified": report["verified"],
            "frames_on_sockets": gen["frames_on_sockets"], "stream_written": gen["written"],
            "unjournaled_connections": unjournaled, "got": in_window, "generator": gen}


def kept_up(run: dict[str, Any]) -> bool:
    """See the module docstring."""
    return bool(run["written"] >= 0.98 * run["offered"]
            and run["backlogs"][-1] < 0.25 * run["rate"]
            and run["got"] >= 0.98 * run["written"])


def figures_for(run: dict[str, Any]) -> Figure:
    dt = run["dt"]
    offered, written, got = run["offered"] / dt, run["written"] / dt, run["got"] / dt
    got_status = run["got_status"] / dt
    rec_us = 1e6 * run["rec_cpu_s"] / max(1.0, run["got"])
    gen_us = 1e6 * run["gen_cpu_s"] / max(1, run["written"])
    ok = kept_up(run)
    lags = run["lags"]
    return Figure(
        f"capture vs load generator, {run['rate']:,.0f} msgs/s offered: recorder CPU per msg",
        rec_us, "CPU-us/msg", target="<= 10",
        note=(f"offered {offered:,.0f}/s, generator wrote {written:,.0f}/s, recorder received "
              f"{got:,.0f}/s (journal receive times; workers' status said {got_status:,.0f}/s); "
              f"{'KEPT UP' if ok else 'FELL BEHIND'} (backlog at window end "
              f"{run['backlogs'][-1]:,} frames); recorder tree (supervisor + 2 workers) CPU "
              f"{100 * run['rec_cpu_s'] / dt:.0f}% of one core (supervisor "
              f"{100 * run['supervisor_cpu_s'] / dt:.0f}%, children "
              f"{', '.join(f'{100 * c / dt:.0f}%' for c in run['children_cpu_s'])}), peak RSS "
              f"{run['rss_peak'] / 2**20:,.0f} MiB; generator {gen_us:.2f} CPU-us/frame "
              f"({100 * run['gen_cpu_s'] / dt:.0f}% of one core); longest loop stall "
              f"{run['stall_s'] * 1e3:.0f} ms; exchange lag {lags[0]:.1f}s -> {lags[-1]:.1f}s "
              f"(frames' exchange times run at the render's pace); checked: "
              f"every frame written up to the stop journaled ({run['journal_frames']:,}), {run['verified']:,} "
              f"checksums verified, 0 failures (not journaled: {run['unjournaled_connections']} "
              f"connection(s) closed before the stream, the supervisor's discovery); {run['keys'][0]} of {run['keys'][1]} keys on "
              f"{run['connections']} connections; {dt:.0f}s window"),
        extra={"offered": offered, "written": written, "received": got, "kept_up": float(ok),
               "gen_us": gen_us, "rss_mib": run["rss_peak"] / 2**20})


def run_capture_load(*, quick: bool = False, rates: tuple[float, ...] | None = None,
                     window: float | None = None, stream: Path | None = None) -> list[Figure]:
    """Render once, then one run per offered rate; per-rate rows and the best rate kept up.
    ``stream``: serve this already rendered stream (``python -m benchmarks.loadgen render``,
    60 pairs at market rate 60 expected) instead of rendering one."""
    if rates is None:
        rates = (10_000.0, 100_000.0) if quick else (10_000.0, 25_000.0, 50_000.0, 100_000.0)
    if window is None:
        window = 8.0 if quick else 10.0
    warmup = 3.0
    pairs, market_rate = 60, 60.0
    frames = int(max(rates) * (warmup + window + 4))
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="capture-load-stream-") as d:
        if stream is None:
            path = Path(d, "stream.pickle")
            rendered = render_for(path, frames=frames, pairs=pairs, market_rate=market_rate)
        else:
            from benchmarks.loadgen import load_stream

            path, loaded = stream, load_stream(stream)
            pairs, market_rate = loaded.pairs, loaded.market_rate
            rendered = {"frames": loaded.frames, "render_s": loaded.render_s}
            del loaded
        best = (0.0, "none kept up")
        bound = (0.0, "")
        print(f"capture_load: rendered {rendered}", file=sys.stderr, flush=True)
        failed: list[str] = []
        for rate in rates:
            try:
                run = capture_at_rate(path, rate=rate, window=window, warmup=warmup)
            except CaptureLoadError as exc:
                failed.append(f"{rate:,.0f}/s: {exc}")
                print(f"capture_load: {rate:,.0f}/s FAILED: {exc}", file=sys.stderr, flush=True)
                continue
            fig = figures_for(run)
            print(f"capture_load: {fig}; drain {run['drain_s']:.1f}s, stop {run['stop_s']:.1f}s",
                  file=sys.stderr, flush=True)
            fig.note += (f"; stream: {pairs} pairs, sim market --rate {market_rate:g}, "
                         f"{rendered['frames']:,} frames rendered once in "
                         f"{rendered['render_s']:.0f} s before any run")
            figures.append(fig)
            if fig.extra["kept_up"] and fig.extra["written"] > best[0]:
                best = (fig.extra["written"], f"{rate:,.0f}/s offered")
            bound = (2e6 / fig.value, f"{rate:,.0f}/s offered: recorder {fig.value:.1f} "
                                      f"CPU-us/msg; the generator's {fig.extra['gen_us']:.2f} "
                                      "CPU-us/frame would take it to "
                                      f"{2e6 / (fig.value + fig.extra['gen_us']):,.0f}/s")
        figures.append(Figure(
            "capture vs load generator: highest offered rate kept up (2 cores shared)",
            best[0], "msg/s", target=">= 100,000",
            note=f"{best[1]}; recorder + generator on the same 2 cores"))
        figures.append(Figure(
            "capture vs load generator: CPU-time bound of the recorder on 2 dedicated cores",
            bound[0], "msg/s", target=">= 100,000",
            note=f"2 core-seconds / the recorder's CPU per message at the highest rate "
                 f"({bound[1]}); from CPU time, not a wall measurement"))
    if failed:  # no figure from a run that failed its check; the others are not reported
        raise CaptureLoadError("; ".join(failed))
    return figures


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rates", default=None)
    parser.add_argument("--window", type=float, default=None)
    parser.add_argument("--stream", type=Path, default=None)
    a = parser.parse_args()
    chosen = tuple(float(r) for r in a.rates.split(",")) if a.rates else None
    for f in run_capture_load(quick=a.quick, rates=chosen, window=a.window, stream=a.stream):
        print(f)
