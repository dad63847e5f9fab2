"""Archives for the audit tests, built the two ways the must-show allows.

* :func:`record_archive` (fast, deterministic): two ``recorder sim --record`` streams (the
  first with frame faults and a truth file) journaled as one recorder would: ProcessStart,
  the first stream, Disconnected for its connections and ProcessStop, a stopped stretch,
  ProcessStart, the second stream shifted in time (new connection ids, fresh acks and
  snapshots), ProcessStop; then ``recorder ingest`` of that journal segment.
* :func:`live_archive`: ``recorder sim`` serving with a fault schedule and a pair whose
  status stops its market, ``recorder run`` (one worker) capturing it, stopped and restarted
  once; the archive the capture wrote is audited (or, for a capture that only journals,
  ``recorder ingest`` of its journal segments). Subprocesses are driven as in
  tests/test_capture_integration.py: the schedule starts once the recorder is capturing (not
  when the sim started), and what the assertions compare with is what happened (the sim's
  truth file, the times the recorder was seen capturing), so a slow start on a busy machine
  moves the timeline rather than breaking it.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zstandard

from recorder.archive.journal import JournalWriter
from recorder.frames import Frame
from recorder.ingest import ingest
from recorder.pipeline import markers as mk
from recorder.sim.truth import read_truth

PY = sys.executable
S = 1_000_000_000


@dataclass
class Built:
    archive: Path
    truth: list[dict[str, Any]]
    stop_ns: int  #: when the recorder stopped
    start_ns: int  #: when it started again
    quiet_symbol: str | None = None
    quiet_from_ns: int | None = None  #: when the quiet pair's market stopped (the sim's truth)
    ready_ns: int | None = None  #: when the restarted recorder was first seen capturing


def _record(path: Path, messages: int, seed: int, faults: str | None = None,
            truth: Path | None = None, pairs: str = "4") -> list[dict[str, Any]]:
    args = [PY, "-m", "recorder", "sim", "--record", str(path), "--messages", str(messages),
            "--pairs", pairs, "--seed", str(seed)]
    if faults:
        args += ["--faults", faults]
    if truth:
        args += ["--truth", str(truth)]
    subprocess.run(args, check=True, capture_output=True, timeout=300)
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(path.read_bytes())).read()
    return [msgspec.json.decode(line) for line in raw.splitlines() if line.strip()]


RECORD_FAULTS = ";".join([
    "checksum:channel=book,at=5,count=1",
    "checksum:channel=level3,at=8,count=1",
    "drop:channel=trade,symbol=BTC/USD,at=12,count=1",
    "close:endpoint=spot,channel=trade,at=20",
])


def record_archive(tmp: Path, messages: int = 60_000) -> Built:
    """See the module docstring; the stopped stretch is 30 s long."""
    truth_path = tmp / "truth.jsonl"
    first = _record(tmp / "a.zst", messages, 3, RECORD_FAULTS, truth_path)
    second = _record(tmp / "b.zst", messages // 3, 4)
    w = JournalWriter(tmp / "journal-build", host="test", run_id="audit",
                      fsync_interval_s=3600)

    def put(frame: Frame) -> None:
        w.append(frame)

    def marker(m: mk.Marker, t: int, conn: int = 0) -> None:
        put(mk.marker_frame(m, t, conn))

    t0 = first[0]["recv_ns"] - 1000
    marker(mk.ProcessStart(host="test", run_id="r1", version="t"), t0)
    conns: set[int] = set()
    last = t0
    for d in first:
        last = d["recv_ns"]
        conn = int(d["conn"])
        if "frame" in d:
            conns.add(conn)
            put(Frame(recv_ns=last, conn_id=conn, stream=d["ep"], direction="in",
                      payload=d["frame"].encode()))
        elif d.get("event") == "close":
            conns.discard(conn)
            marker(mk.Disconnected(conn_id=conn, reason="closed"), last, conn)
    stop = last + 1000
    for c in sorted(conns):
        marker(mk.Disconnected(conn_id=c, reason=mk.STOP_REASON), stop, c)
    marker(mk.ProcessStop(reason="signal"), stop)
    start = stop + 30 * S
    shift = start - second[0]["recv_ns"] + 1000
    marker(mk.ProcessStart(host="test", run_id="r2", version="t"), start)
    end = start
    for d in second:
        if "frame" in d:
            end = d["recv_ns"] + shift
            put(Frame(recv_ns=end, conn_id=int(d["conn"]) + 1, stream=d["ep"], direction="in",
                      payload=d["frame"].encode()))
    marker(mk.ProcessStop(reason="signal"), end + 1000)
    w.close()
    segs = sorted((tmp / "journal-build").rglob("*.kjz"))
    ingest(segs, tmp / "archive")
    return Built(archive=tmp / "archive", truth=read_truth(truth_path), stop_ns=stop,
                 start_ns=start)


def record_root(tmp: Path, dest: Path, pairs: str, seed: int, messages: int = 6000,
                faults: str | None = None) -> Path:
    """One archive root at ``dest`` from one ``recorder sim --record`` stream (``pairs`` as the
    sim's ``--pairs``), journaled between ProcessStart and ProcessStop, with a Disconnected
    marker where the stream closed a connection. The sim's connection ids are renumbered 1, 2,
    ... in order of appearance, as a capture worker numbers its connections, so two roots built
    this way share connection ids."""
    data = _record(tmp / f"{dest.name}.zst", messages, seed, faults, pairs=pairs)
    w = JournalWriter(tmp / f"journal-{dest.name}", host="test", run_id=dest.name,
                      fsync_interval_s=3600)
    last = data[0]["recv_ns"] - 1000
    w.append(mk.marker_frame(mk.ProcessStart(host="test", run_id=dest.name, version="t"), last, 0))
    conns: set[int] = set()
    ids: dict[int, int] = {}
    for d in data:
        last = d["recv_ns"]
        conn = ids.setdefault(int(d["conn"]), len(ids) + 1)
        if "frame" in d:
            conns.add(conn)
            w.append(Frame(recv_ns=last, conn_id=conn, stream=d["ep"], direction="in",
                           payload=d["frame"].encode()))
        elif d.get("event") == "close":
            conns.discard(conn)
            w.append(mk.marker_frame(mk.Disconnected(conn_id=conn, reason="closed"), last, conn))
    for c in sorted(conns):
        w.append(mk.marker_frame(mk.Disconnected(conn_id=c, reason=mk.STOP_REASON), last + 1000, c))
    w.append(mk.marker_frame(mk.ProcessStop(reason="signal"), last + 1000, 0))
    w.close()
    ingest(sorted((tmp / f"journal-{dest.name}").rglob("*.kjz")), dest)
    return dest


#: From the sim's start: the first level3 token request is refused.
LIVE_START_FAULTS = "token_reject:at=0.1,count=1"
#: Added through ``/control/faults`` once the recorder is capturing (times count from then).
#: The trade drops hit the busiest pair: a dropped trade is a ``trade_id_jump`` gap only once
#: the pair's next trade arrives, which a thin pair may not do before the recorder stops.
LIVE_FAULTS = [
    "checksum:channel=book,at=14,count=1",
    "checksum:channel=level3,at=16,count=1",
    "drop:channel=trade,symbol=BTC/USD,at=18,count=1",
    "close:endpoint=spot,channel=trade,at=22",
    "stall:endpoint=l3,at=26,duration=6",
    "drop:channel=trade,symbol=BTC/USD,at=35,count=1",
    "rest_limit:at=35,count=1",
]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_SECRET = "YXVkaXQtdGVzdC1zZWNyZXQtbWF0ZXJpYWwtMDEyMzQ1Njc4OWFiY2RlZg=="
_KEY = "AUDITKEY"


def _start_sim(tmp: Path, faults: str) -> tuple[subprocess.Popen[bytes], dict[str, str], Path]:
    truth = tmp / "truth.jsonl"
    proc = subprocess.Popen(
        [PY, "-m", "recorder", "sim", "--port", "0", "--pairs", "6", "--seed", "7",
         "--api-key", _KEY, "--api-secret", _SECRET, "--truth", str(truth), "--faults", faults],
        stdout=subprocess.PIPE, stderr=open(tmp / "sim.err", "wb"))
    line = proc.stdout.readline()  # type: ignore[union-attr]
    return proc, msgspec.json.decode(line), truth


def _start_recorder(tmp: Path, urls: dict[str, str], n: int) -> tuple[subprocess.Popen[bytes], int]:
    """``recorder run`` against the sim; the process and its metrics (``/status``) port."""
    port = _free_port()
    env = {**os.environ, "KRAKEN_API_KEY": _KEY, "KRAKEN_API_SECRET": _SECRET,
           "RECORDER_CONNECTION__SILENCE_S": "3", "RECORDER_CONNECTION__PING_INTERVAL_S": "5",
           "RECORDER_CONNECTION__BACKOFF_BASE_S": "0.3", "RECORDER_CONNECTION__BACKOFF_MAX_S": "2",
           "RECORDER_REST__PUBLIC_PER_S": "20", "RECORDER_REST__PUBLIC_BURST": "20",
           "RECORDER_REST__RATE_LIMITED_COOLDOWN_S": "0.5",
           "RECORDER_SCHEDULE__DISK_MIN_FREE_BYTES": "1",
           "RECORDER_SCHEDULE__DISK_RESUME_FREE_BYTES": "1"}
    cmd = [PY, "-m", "recorder", "run", "--workers", "1", "--archive-root", str(tmp / "capture"),
           "--metrics-port", str(port), "--spot-ws", urls["spot_ws"],
           "--l3-ws", urls["l3_ws"], "--futures-ws", urls["futures_ws"],
           "--spot-rest", urls["rest"], "--futures-rest", urls["rest"]]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                            stderr=open(tmp / f"recorder{n}.err", "wb"))
    return proc, port


def _capturing(port: int) -> bool:
    """Does the recorder's ``/status`` show every connection connected with every
    subscription active, the spot and level3 channels included?"""
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=3) as r:
            st = json.loads(r.read())
    except (OSError, ValueError):
        return False
    conns = [c for w in st.get("workers", {}).values() for c in w["connections"]]
    return ({"level3", "book", "trade", "ohlc"} <= {c["channel"] for c in conns}
            and all(c["connected"] and set(c["states"]) <= {"active"} for c in conns))


def _wait_capturing(tmp: Path, proc: subprocess.Popen[bytes], port: int, n: int) -> int:
    """Wait (generously: the machine may be busy) until recorder ``n`` is capturing; the
    wall-clock ns when it was first seen so."""
    deadline = time.monotonic() + 180
    while not _capturing(port):
        assert proc.poll() is None and time.monotonic() < deadline, (
            f"recorder {n} never started capturing:\n"
            + (tmp / f"recorder{n}.err").read_text()[-3000:])
        time.sleep(0.25)
    return time.time_ns()


def _add_faults(control: str, spec: str) -> None:
    import json
    import urllib.request

    req = urllib.request.Request(control + "/faults", data=json.dumps({"spec": spec}).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def _stop(proc: subprocess.Popen[bytes], sig: int) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return -9


def _captured_archive(tmp: Path) -> Path:
    """The Parquet archive the capture wrote (one worker), or one ingested from its journal
    segments when the capture only journals."""
    root = tmp / "capture"
    manifests = sorted(root.rglob("_manifest/current.json"))
    if manifests:
        assert len(manifests) == 1, manifests
        return manifests[0].parent.parent
    segs = sorted(root.rglob("*.kjz"))
    assert segs, f"the capture wrote neither an archive nor journal segments under {root}"
    ingest(segs, tmp / "ingested")
    return tmp / "ingested"


def live_archive(tmp: Path) -> Built:
    """See the module docstring. Timeline (s after the first recorder is capturing, whenever
    that is): the quiet pair's status becomes ``maintenance`` at 8 (no orders, no trades) and
    ``online`` at 52; faults as in :data:`LIVE_FAULTS`; the recorder is stopped (SIGTERM) at 46
    and started again at 54, and runs until it is capturing again, and at least until 64."""
    import signal

    from recorder.sim.universe import load_universe

    quiet = load_universe(None, pairs=6, futures_path=None, seed=7).pairs[-1].symbol
    schedule = ";".join([f"status:symbol={quiet},status=maintenance,at=8",
                         f"status:symbol={quiet},status=online,at=52", *LIVE_FAULTS])
    sim, urls, truth = _start_sim(tmp, LIVE_START_FAULTS)
    rec = rec2 = None
    try:
        rec, port = _start_recorder(tmp, urls, 1)
        _wait_capturing(tmp, rec, port, 1)
        _add_faults(urls["control"], schedule)
        t0 = time.monotonic()

        def until(s: float) -> None:
            while time.monotonic() - t0 < s:
                time.sleep(0.1)

        until(46)
        stop = time.time_ns()  # SIGTERM: recording ends here (the drain only closes up)
        assert _stop(rec, signal.SIGTERM) == 0, (tmp / "recorder1.err").read_text()[-3000:]
        until(54)
        start = time.time_ns()
        rec2, port2 = _start_recorder(tmp, urls, 2)
        ready = _wait_capturing(tmp, rec2, port2, 2)
        until(64)
        time.sleep(2)  # a moment of capture after the subscriptions, however late they came
        assert _stop(rec2, signal.SIGTERM) == 0, (tmp / "recorder2.err").read_text()[-3000:]
    finally:
        for r in (rec, rec2):
            if r is not None and r.poll() is None:
                r.kill()
        _stop(sim, signal.SIGINT)
    facts = read_truth(truth)
    stopped = [r["t_ns"] for r in facts if r.get("kind") == "fault" and r.get("fault") == "status"
               and r.get("symbol") == quiet and r["detail"].get("status") == "maintenance"]
    assert len(stopped) == 1, "the sim never recorded the quiet pair's status change"
    return Built(archive=_captured_archive(tmp), truth=facts, stop_ns=stop, start_ns=start,
                 quiet_symbol=quiet, quiet_from_ns=stopped[0], ready_ns=ready)


# ------------------------------------------------------------------ headless Chromium


CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    """Path of a headless Chromium (installed with apt-get when root and absent), or skip."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True,
                       timeout=900)
        path = shutil.which("chromium")
        if path:
            return path
    pytest.skip("headless Chromium is not installed and cannot be installed here "
                "(needs root and apt-get: `apt-get install -y chromium`)")


# records uncaught errors and console.error calls into the DOM, before the page's own script
PROBE = """<script>(function(){var errs=[];function put(m){errs.push(String(m));
document.documentElement.setAttribute('data-errors',JSON.stringify(errs));}
window.addEventListener('error',function(e){put(e.message||'error');});
var ce=console.error;console.error=function(){put(Array.prototype.join.call(arguments,' '));
ce.apply(console,arguments);};
document.documentElement.setAttribute('data-errors','[]');})();</script>"""
