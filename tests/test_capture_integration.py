"""``recorder run`` against ``recorder sim`` over real loopback sockets (bounded in time).

Each test starts a sim (subprocess) and a recorder (subprocess, 2 workers), then reads the
recorder's /status and /health, its logs, its journal and the sim's truth file.
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
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from recorder.capture.journal import all_frames
from recorder.capture.validator import LiveValidator
from recorder.pipeline.markers import decode_marker
from recorder.protocol.rest import TradesPage, decode_trades
from recorder.protocol.spot import TradeMessage, decode_spot
from recorder.sim.truth import read_truth

pytestmark = pytest.mark.integration

PY = sys.executable
SECRET = base64.b64encode(b"capture-test-secret-material-0123456789abcdef" * 2).decode()
KEY = "CAPTUREKEY"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sim:
    def __init__(self, tmp: Path, pairs: int, faults: str | None = None, seed: int = 7) -> None:
        self.truth = tmp / "truth.jsonl"
        args = [PY, "-m", "recorder", "sim", "--port", "0", "--pairs", str(pairs), "--seed", str(seed),
                "--api-key", KEY, "--api-secret", SECRET, "--truth", str(self.truth)]
        if faults:
            args += ["--faults", faults]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(tmp / "sim.err", "wb"))
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        self.urls = json.loads(line)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Recorder:
    def __init__(self, tmp: Path, sim: Sim, extra_env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.root = tmp / "archive"
        self.port = _free_port()
        self.err_path = tmp / "recorder.err"
        u = sim.urls
        env = {**os.environ, "KRAKEN_API_KEY": KEY, "KRAKEN_API_SECRET": SECRET,
               "RECORDER_CONNECTION__SILENCE_S": "3", "RECORDER_CONNECTION__PING_INTERVAL_S": "5",
               "RECORDER_CONNECTION__BACKOFF_BASE_S": "0.3", "RECORDER_CONNECTION__BACKOFF_MAX_S": "2",
               "RECORDER_REST__PUBLIC_PER_S": "20", "RECORDER_REST__PUBLIC_BURST": "20",
               "RECORDER_REST__RATE_LIMITED_COOLDOWN_S": "0.5",
               "RECORDER_OBSERVABILITY__DEAD_AFTER_S": "8",
               "RECORDER_SCHEDULE__DISK_MIN_FREE_BYTES": "1", "RECORDER_SCHEDULE__DISK_RESUME_FREE_BYTES": "1",
               **(extra_env or {})}
        cmd = [PY, "-m", "recorder", "run", "--workers", "2", "--archive-root", str(self.root),
               "--metrics-port", str(self.port), "--spot-ws", u["spot_ws"], "--l3-ws", u["l3_ws"],
               "--futures-ws", u["futures_ws"], "--spot-rest", u["rest"], "--futures-rest", u["rest"],
               *(args or [])]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.err_path, "wb"))

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=3) as r:
                body = r.read()
                return r.status, (json.loads(body) if path != "/metrics" else body.decode())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def status(self) -> dict[str, Any] | None:
        try:
            return self.get("/status")[1]
        except (OSError, ValueError):
            return None

    def wait_for(self, pred: Any, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            st = self.status()
            if st and pred(st):
                return st
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}; last status: {json.dumps(st)[:3000]}\n"
                             f"log tail: {self.err_path.read_text()[-3000:]}")

    def stop(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def _conns(st: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for w in st.get("workers", {}).values() for c in w["connections"]]


def _all_active(st: dict[str, Any], channels: set[str]) -> bool:
    conns = _conns(st)
    seen = {c["channel"] for c in conns}
    return (len(st.get("workers", {})) == 2 and channels <= seen
            and all(c["connected"] and set(c["states"]) <= {"active"} for c in conns))


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


def _scan_secret(rec: Recorder) -> None:
    needle = SECRET.encode()
    assert needle not in rec.err_path.read_bytes()
    for f in rec.root.rglob("*"):
        if f.is_file():
            assert needle not in f.read_bytes(), f
    for fr in all_frames(rec.root):
        assert needle not in fr.payload and SECRET not in fr.meta


def test_capture_moderate_universe_all_channels(tmp: Path) -> None:
    sim = Sim(tmp, pairs=40)
    rec = Recorder(tmp, sim, args=["--futures", "PF_XBTUSD,PF_ETHUSD"])
    try:
        st = rec.wait_for(lambda s: _all_active(s, {"level3", "book", "trade", "ohlc", "instrument"}),
                          60, "every subscription acknowledged")
        time.sleep(4)
        st = rec.status()
        assert st is not None
        workers = st["workers"].values()
        assert sum(w["checksums_ok"] for w in workers) > 1000
        assert sum(w["checksum_failures"] for w in workers) == 0
        symbols = defaultdict(int)
        for c in _conns(st):
            symbols[c["channel"]] += c["symbols"]
        assert symbols["level3"] == 40 and symbols["book"] == 40 + 2  # + futures book products
        code, health = rec.get("/health")
        assert code == 200 and health["healthy"], health
        code, metrics = rec.get("/metrics")
        assert "recorder_messages_per_second" in metrics and "recorder_checksums_verified_total" in metrics
        assert SECRET not in metrics
        out = subprocess.run([PY, "-m", "recorder", "status", "--url", f"http://127.0.0.1:{rec.port}"],
                             capture_output=True, text=True, timeout=20)
        assert out.returncode == 0 and "level3" in out.stdout
        t0 = time.monotonic()
        assert rec.stop() == 0
        assert time.monotonic() - t0 < 15
    finally:
        if rec.proc.poll() is None:
            rec.proc.kill()
        sim.stop()
    markers = [decode_marker(f.payload) for f in all_frames(rec.root) if f.stream == "control"]
    names = [type(m).__name__ for m in markers]
    assert names.count("ProcessStart") == 2 and names.count("ProcessStop") == 2
    _scan_secret(rec)


FAULTS = ";".join([
    "checksum:channel=book,rate=0.002,count=6",
    "checksum:channel=level3,rate=0.002,count=4",
    "drop:channel=trade,rate=0.03,count=6",
    "close:endpoint=spot,channel=trade,at=12",
    "stall:endpoint=l3,at=16,duration=6",
    "rest_limit:rate=0.3,count=4",
    "token_reject:at=0.1,count=1",
])


def test_capture_heals_every_injected_fault(tmp: Path) -> None:
    sim = Sim(tmp, pairs=30, faults=FAULTS, seed=11)
    rec = Recorder(tmp, sim)
    try:
        rec.wait_for(lambda s: _all_active(s, {"level3", "book", "trade", "ohlc"}), 60, "subscriptions")
        time.sleep(24)
        st = rec.wait_for(lambda s: all(w["heal_pending"] == 0 and w["rest_queue"] == 0
                                        for w in s["workers"].values()), 30, "healing to finish")
        time.sleep(2)
        assert rec.stop() == 0
    finally:
        if rec.proc.poll() is None:
            rec.proc.kill()
        sim.stop()
    truth = read_truth(sim.truth)
    faults = [r for r in truth if r.get("kind") == "fault"]
    frames = list(all_frames(rec.root))
    markers = [(f, decode_marker(f.payload)) for f in frames if f.stream == "control"]
    by = defaultdict(list)
    for f, m in markers:
        by[type(m).__name__].append((f.recv_ns, m))
    kinds = {r["fault"] for r in faults}
    assert {"checksum", "drop", "close", "stall", "rest_limit", "token_reject"} <= kinds, kinds

    resyncs = {(m.channel, m.symbol) for _, m in by["ResyncRequested"]} | \
              {(m.channel, m.symbol) for _, m in by["Quarantined"]}
    for r in faults:
        f, t = r["fault"], r["t_ns"]
        if f == "checksum":
            assert (r["channel"], r["symbol"]) in resyncs, r
        elif f == "close":
            assert any(ts >= t - 10**9 for ts, _ in by["Disconnected"]), r
        elif f == "stall":
            assert any(ts >= t for ts, _ in by["Silence"]), r
        elif f == "rest_limit":
            assert by["RateLimited"], r
        elif f == "token_reject":
            assert any("token" in m.error.lower() for _, m in by["SubscribeFailed"]), r

    # books verify again after each heal, and the faulty symbol's connection kept serving others
    v = LiveValidator()
    ok_after: dict[tuple[str, str], int] = defaultdict(int)
    resync_at = {(m.channel, m.symbol): ts for ts, m in by["ResyncRequested"]}
    for fr in frames:
        before = v.verified.copy()
        v.feed(fr)
        for key, n in v.verified.items():
            if n > before.get(key, 0):
                ch = "level3" if key[0] == "l3" else "book"
                if (ch, key[1]) in resync_at and fr.recv_ns > resync_at[(ch, key[1])]:
                    ok_after[(ch, key[1])] += 1
    for key in resync_at:
        if key[0] in ("book", "level3"):
            assert ok_after[key] > 0, f"{key} never verified after its resnapshot"
    # the connection of a resynced symbol kept serving its other symbols (no teardown)
    from recorder.capture.connection import frame_symbol

    resync_conn = [(f.conn_id, f.recv_ns, m.symbol) for f, m in markers
                   if type(m).__name__ == "ResyncRequested" and m.channel in ("book", "level3")]
    assert resync_conn
    for conn_id, ts, sym in resync_conn:
        others = [f for f in frames if f.conn_id == conn_id and f.direction == "in"
                  and f.stream in ("spot", "l3") and ts < f.recv_ns < ts + 2 * 10**9
                  and frame_symbol(f.payload[:200]) not in (None, sym)]
        down = [t for t, m in by["Disconnected"] if m.conn_id == conn_id and ts < t < ts + 10**9]
        assert others and not down, (conn_id, sym)

    # trade gaps fully backfilled: WS ids + REST Trades pages cover every truth trade id
    got: dict[str, set[int]] = defaultdict(set)
    for fr in frames:
        if fr.stream == "spot" and fr.payload.startswith(b'{"channel":"trade"'):
            ev = decode_spot(fr.payload)
            if isinstance(ev, TradeMessage):
                for t in ev.data:
                    got[t.symbol].add(t.trade_id)
        elif fr.stream == "rest" and "/0/public/Trades" in fr.meta:
            page = decode_trades(fr.payload)
            if isinstance(page, TradesPage):
                sym = fr.meta.split("pair=")[1].split("&")[0].replace("%2F", "/")
                got[sym].update(t.trade_id for t in page.trades if t.trade_id is not None)
    truth_ids: dict[str, list[int]] = defaultdict(list)
    for r in truth:
        if r.get("ev") == "trade":
            truth_ids[r["symbol"]].append(r["trade_id"])
    gaps = [(m.symbol, m.from_trade_id, m.to_trade_id) for _, m in by["BackfillDone"]]
    assert gaps, "drops must have produced trade backfills"
    assert all(not m.error for _, m in by["BackfillDone"]), [m for _, m in by["BackfillDone"]]
    for sym, ids in truth_ids.items():
        if not got[sym]:
            continue
        lo, hi = min(got[sym]), max(got[sym])
        missing = [i for i in ids if lo <= i <= hi and i not in got[sym]]
        assert not missing, f"{sym}: {len(missing)} trade ids missing, e.g. {missing[:5]}"
    _scan_secret(rec)


def test_kill_9_worker_is_restarted_and_gap_recorded(tmp: Path) -> None:
    sim = Sim(tmp, pairs=10)
    rec = Recorder(tmp, sim)
    try:
        st = rec.wait_for(lambda s: _all_active(s, {"book", "trade"}), 60, "subscriptions")
        victim = st["workers"]["0"]["pid"] if "0" in st["workers"] else st["workers"][0]["pid"]
        os.kill(victim, signal.SIGKILL)
        st = rec.wait_for(lambda s: any(sh.get("restarts") for sh in s["shards"])
                          and _all_active(s, {"book", "trade"})
                          and all(w["pid"] != victim for w in s["workers"].values()),
                          60, "worker restarted and resubscribed")
        code, _ = rec.get("/health")
        assert code == 200
        assert rec.stop() == 0
    finally:
        if rec.proc.poll() is None:
            rec.proc.kill()
        sim.stop()
    starts = [m for f in all_frames(rec.root) if f.stream == "control"
              for m in [decode_marker(f.payload)] if type(m).__name__ == "ProcessStart"]
    assert len(starts) == 3  # 2 workers + the restarted one (its predecessor has no ProcessStop)
    from recorder.archive.journal import SegmentInfo, read_segment

    for seg in rec.root.rglob("*.kjz"):
        info = SegmentInfo()
        list(read_segment(seg, info=info))
        assert not info.error or info.torn  # a killed writer may leave a torn tail, never garbage


def test_bad_config_exits_cleanly(tmp: Path) -> None:
    bad = tmp / "bad.toml"
    bad.write_text("[channels]\nbook_depth = 7\n")
    out = subprocess.run([PY, "-m", "recorder", "run", "--config", str(bad)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2 and "book_depth" in out.stderr and "Traceback" not in out.stderr
    keys = tmp / "keys.toml"
    keys.write_text(f'api_key = "K"\napi_secret = "{SECRET}"\n')
    os.chmod(keys, 0o644)
    out = subprocess.run([PY, "-m", "recorder", "run", "--secrets-file", str(keys)],
                         capture_output=True, text=True, timeout=30,
                         env={k: v for k, v in os.environ.items() if not k.startswith("KRAKEN_")})
    assert out.returncode == 2 and "chmod 600" in out.stderr and SECRET not in out.stderr


def test_offline_keeps_retrying_and_stops_cleanly(tmp: Path) -> None:
    port = _free_port()  # nothing listens there
    env = {**os.environ, "RECORDER_CONNECTION__CONNECT_TIMEOUT_S": "1"}
    err = tmp / "err"
    proc = subprocess.Popen([PY, "-m", "recorder", "run", "--workers", "1", "--archive-root",
                             str(tmp / "a"), "--metrics-port", str(_free_port()),
                             "--spot-ws", f"ws://127.0.0.1:{port}/v2"], env=env,
                            stderr=open(err, "wb"), stdout=subprocess.DEVNULL)
    time.sleep(6)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    text = err.read_text()
    assert "cannot reach Kraken" in text and "retrying" in text and "Traceback" not in text
