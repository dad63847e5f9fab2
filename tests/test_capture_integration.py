"""``recorder run`` against ``recorder sim`` over real loopback sockets (bounded in time).

Each test starts a sim (subprocess) and a recorder (subprocess, 2 workers), then reads the
recorder's /status and /health, its logs, its journal and the sim's truth file.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
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

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recorder.archive.journal import SegmentInfo, list_segments, read_segment
from recorder.capture.writer import writer_roots
from recorder.frames import Frame
from recorder.pipeline.markers import decode_marker
from recorder.sim.truth import read_truth

pytestmark = pytest.mark.integration

PY = sys.executable
SECRET = base64.b64encode(b"capture-test-secret-material-0123456789abcdef" * 2).decode()
KEY = "CAPTUREKEY"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


S = 1_000_000_000


def dataset(parent: Path, name: str, roots: list[Path] | None = None) -> pa.Table | None:
    """One dataset over every writer root under ``parent`` (committed files only, via each
    root's manifest: readers treat the parent as the union of its roots)."""
    tables = []
    for root in roots if roots is not None else writer_roots(parent):
        state = msgspec.json.decode((root / "_manifest" / "current.json").read_bytes())
        for f in state["files"]:
            if f["dataset"] == name:
                t = pq.read_table(root / f["file"])
                tables.append(t.cast(pa.schema([pa.field(x.name, x.type.value_type
                                                          if pa.types.is_dictionary(x.type)
                                                          else x.type) for x in t.schema])))
    return pa.concat_tables(tables) if tables else None


def rows(parent: Path, name: str, roots: list[Path] | None = None) -> list[dict[str, Any]]:
    t = dataset(parent, name, roots)
    return t.to_pylist() if t is not None else []


def journal_frames(root: Path) -> list[Frame]:
    """Every frame of one writer root's journal, in journal order."""
    out: list[Frame] = []
    for seg in list_segments(root / "journal"):
        out.extend(f for _, f in read_segment(root / "journal" / seg))
    return out


def verify(root: Path) -> dict[str, Any]:
    out = subprocess.run([PY, "-m", "recorder", "verify", "--archive", str(root), "--json"],
                         capture_output=True, text=True, timeout=60)
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["failed"] == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return report


class Sim:
    def __init__(self, tmp: Path, pairs: int | None, faults: str | None = None, seed: int = 7,
                 rate: float = 1.0) -> None:
        self.truth = tmp / "truth.jsonl"
        args = [PY, "-m", "recorder", "sim", "--port", "0", "--seed", str(seed), "--rate", str(rate),
                "--api-key", KEY, "--api-secret", SECRET, "--truth", str(self.truth)]
        if pairs is not None:  # else the whole generated universe
            args += ["--pairs", str(pairs)]
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
    """The API secret is nowhere: logs, files (Parquet cells included) or journal frames."""
    needle = SECRET.encode()
    assert needle not in rec.err_path.read_bytes()
    for f in rec.root.rglob("*"):
        if f.is_file():
            assert needle not in f.read_bytes(), f
    for root in writer_roots(rec.root):
        for fr in journal_frames(root):
            assert needle not in fr.payload and SECRET not in fr.meta


def _markers(root: Path) -> list[tuple[Frame, Any]]:
    return [(f, decode_marker(f.payload)) for f in journal_frames(root) if f.stream == "control"]


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
    roots = writer_roots(rec.root)
    assert [r.name for r in roots] == [f"{socket.gethostname()}-w0", f"{socket.gethostname()}-w1"]
    for root in roots:
        names = [type(m).__name__ for _, m in _markers(root)]
        assert names.count("ProcessStart") == 1 and names.count("ProcessStop") == 1, names
        assert names.index("ProcessStart") < names.index("Connected") < names.index("ProcessStop")
        assert verify(root)["messages_checked"] > 0
    # the archive, read over every writer root
    pairs = {r["symbol"] for r in rows(rec.root, "instruments") if r["kind"] == "pair"
             and r["status"] == "online"}
    assert len(pairs) == 40
    assert {r["symbol"] for r in rows(rec.root, "book")} >= pairs
    assert {r["symbol"] for r in rows(rec.root, "level3")} == pairs
    assert {r["product_id"] for r in rows(rec.root, "futures_book")} == {"PF_XBTUSD", "PF_ETHUSD"}
    assert rows(rec.root, "trades") and rows(rec.root, "ohlc")
    epochs = rows(rec.root, "epochs")
    assert sum(e["checksum_ok"] or 0 for e in epochs) > 1000
    assert sum(e["checksum_failed"] or 0 for e in epochs) == 0
    assert all(e["precision_source"] in (None, "instrument") for e in epochs)  # instruments first
    live = rows(rec.root, "liveness")
    assert {(r["channel"], r["symbol"]) for r in live if r["frames"]} >= {("level3", s) for s in pairs}
    assert not [r for r in rows(rec.root, "rejects") if r["stage"] == "internal"]
    _scan_secret(rec)


def test_capture_full_universe_all_channels(tmp: Path) -> None:
    """The sim's whole universe (every online pair on level3, book, trade and ohlc, and every
    Futures product on book and trade): every subscription acknowledged, every checksum
    verifying, live and again from the archive. The market runs slowly (``--rate``): this is
    about breadth, not speed (speed is the capture benchmark's)."""
    from recorder.sim.universe import load_universe

    universe = load_universe(None, pairs=None, futures_path=None, seed=7)
    online = {p.symbol for p in universe.pairs if p.status == "online"}
    products = [f.product_id for f in universe.futures]
    assert len(online) >= 640 and products
    sim = Sim(tmp, pairs=None, rate=0.05)
    # the slow market leaves many books quiet for minutes: /health must still say healthy
    rec = Recorder(tmp, sim, args=["--futures", ",".join(products)],
                   extra_env={"RECORDER_OBSERVABILITY__DEAD_AFTER_S": "20"})

    def held(st: dict[str, Any]) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for c in _conns(st):
            out[f"{c['stream']}:{c['channel']}"] += c["symbols"]
        return out

    want = {"l3:level3": len(online), "spot:book": len(online), "spot:trade": len(online),
            "spot:ohlc": len(online), "futures:book": len(products), "futures:trade": len(products)}
    try:
        # level3 subscriptions are paced by their budget (cost 5 per symbol at depth 10, 200/s)
        st = rec.wait_for(lambda s: _all_active(s, {"level3", "book", "trade", "ohlc", "instrument"})
                          and all(held(s).get(k) == v for k, v in want.items()),
                          240, "every subscription of the full universe acknowledged")
        level3 = [c for c in _conns(st) if c["channel"] == "level3"]
        assert len(level3) >= 4 and all(c["symbols"] <= 200 for c in level3)
        time.sleep(25)  # past dead_after_s
        st = rec.status()
        assert st is not None
        workers = list(st["workers"].values())
        assert sum(w["checksums_ok"] for w in workers) > 2 * len(online)
        assert sum(w["checksum_failures"] for w in workers) == 0
        assert sum(w["resyncs"] for w in workers) == 0
        code, health = rec.get("/health")
        assert code == 200 and health["healthy"], health
        assert rec.stop(60) == 0
    finally:
        if rec.proc.poll() is None:
            rec.proc.kill()
        sim.stop()
    for root in writer_roots(rec.root):
        assert verify(root)["failed"] == 0
    pairs = {r["symbol"] for r in rows(rec.root, "instruments") if r["kind"] == "pair"
             and r["status"] == "online"}
    assert pairs == online
    assert {r["symbol"] for r in rows(rec.root, "level3")} == online  # every snapshot recorded
    assert {r["symbol"] for r in rows(rec.root, "book")} >= online
    assert {r["product_id"] for r in rows(rec.root, "futures_book")} == set(products)
    epochs = rows(rec.root, "epochs")
    for channel in ("level3", "book"):  # every pair's book verified its checksums
        verified = {e["symbol"] for e in epochs if e["channel"] == channel
                    and (e["checksum_ok"] or 0) > 0}
        assert verified == online, (channel, len(verified), sorted(online - verified)[:5])
    assert sum(e["checksum_failed"] or 0 for e in epochs) == 0
    assert not [r for r in rows(rec.root, "rejects") if r["stage"] == "internal"]


#: From the sim's start: REST rate limits on a share of the REST calls (the backfills), and the
#: first level3 token request refused.
FAULTS = ";".join([
    "rest_limit:rate=0.3,count=4",
    "token_reject:at=0.1,count=1",
])
#: Added once every subscription is active (``POST /control/faults``: schedules start then), so
#: the timeline is the capture's, not the machine's start-up time. Each rule is one-shot per
#: tick on the next matching frame: 6 corrupted book checksums, 4 level3 ones, 6 dropped trades.
FRAME_FAULTS = ";".join([
    "checksum:channel=book,at=1,every=1,count=6",
    "checksum:channel=level3,at=1.5,every=1.5,count=4",
    "drop:channel=trade,at=0.5,every=1,count=6",
])
#: Added once every frame fault fired and its heal finished, so that no checksum heal overlaps
#: the connection faults (a checksum mismatch inside the level3 stall would be healed by the
#: reconnect, not by a resnapshot): the spot trade connection closes 2 s later, and the level3
#: connection stalls 4 s after that.
STALL_S = 6
CONNECTION_FAULTS = ";".join(["close:endpoint=spot,channel=trade,at=2",
                              f"stall:endpoint=l3,at=6,duration={STALL_S}"])


def _fired(control: str, spec: str) -> bool:
    """Has every rule of ``spec`` (as added through ``/control/faults``) fired its count?"""
    with urllib.request.urlopen(control + "/faults", timeout=5) as r:
        rules = {rule["rule"]: rule["fired"] for rule in json.loads(r.read())["rules"]}
    wanted = spec.split(";")
    counts = [int(m.group(1)) if (m := re.search(r"count=(\d+)", w)) else 1 for w in wanted]
    return all(rules.get(w, 0) >= n for w, n in zip(wanted, counts))


def _wait_fired(control: str, spec: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _fired(control, spec):
        assert time.monotonic() < deadline, f"the sim never fired all of {spec!r}"
        time.sleep(0.25)


def _settled(st: dict[str, Any]) -> bool:
    """Every connection active again and no heal or backfill waiting."""
    return _all_active(st, {"level3", "book", "trade", "ohlc"}) and all(
        w["heal_pending"] == 0 and w["rest_queue"] == 0 for w in st["workers"].values())


def _covers(g: dict[str, Any], t: int) -> bool:
    """Gap ``g`` spans truth time ``t`` within +-1 s."""
    end = g["end_ns"] if g["end_ns"] is not None else g["start_ns"]
    return g["start_ns"] - S <= t <= end + S


def _id_range(g: dict[str, Any]) -> tuple[int, int]:
    """Inclusive trade-id bounds of a ``trade_id_jump`` gap (``missing`` = ``trade_id A..B``)."""
    lo, _, hi = g["missing"].removeprefix("trade_id ").partition("..")
    return int(lo), int(hi)


def test_capture_heals_every_injected_fault(tmp: Path) -> None:
    sim = Sim(tmp, pairs=30, faults=FAULTS, seed=11)
    rec = Recorder(tmp, sim)
    try:
        rec.wait_for(lambda s: _all_active(s, {"level3", "book", "trade", "ohlc"}), 60, "subscriptions")
        control = sim.urls["control"]
        _post(control + "/faults", {"spec": FRAME_FAULTS})
        _wait_fired(control, FRAME_FAULTS, 60)
        rec.wait_for(_settled, 60, "the checksum heals and trade backfills to finish")
        _post(control + "/faults", {"spec": CONNECTION_FAULTS})
        _wait_fired(control, CONNECTION_FAULTS, 60)
        time.sleep(STALL_S)  # the sim holds the stalled connection's frames this long
        rec.wait_for(_settled, 60, "the reconnects and heals to finish")
        time.sleep(2)
        assert rec.stop() == 0
    finally:
        if rec.proc.poll() is None:
            rec.proc.kill()
        sim.stop()
    truth = read_truth(sim.truth)
    faults = [r for r in truth if r.get("kind") == "fault"]
    kinds = {r["fault"] for r in faults}
    assert {"checksum", "drop", "close", "stall", "rest_limit", "token_reject"} <= kinds, kinds
    for root in writer_roots(rec.root):
        verify(root)  # every book epoch re-verifies from the archive alone, 0 failed
    gaps = rows(rec.root, "gaps")
    by_cause: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for g in gaps:
        by_cause[g["cause"]].append(g)
    trades = rows(rec.root, "trades")
    ids: dict[str, set[int]] = defaultdict(set)
    live_ids: dict[str, set[int]] = defaultdict(set)
    snap_ids: dict[str, set[int]] = defaultdict(set)
    for t in trades:
        ids[t["symbol"]].add(t["trade_id"])
        if t["source"] == 0:
            snap_ids[t["symbol"]].add(t["trade_id"])
        elif t["source"] == 1:
            live_ids[t["symbol"]].add(t["trade_id"])
    checked_drops = 0

    for r in faults:
        f, t, sym = r["fault"], r["t_ns"], r.get("symbol")
        if f == "checksum":
            hit = [g for g in by_cause["checksum_mismatch"] if g["channel"] == r["channel"]
                   and g["symbol"] == sym and _covers(g, t)]
            assert hit and all(g["healed_by"] == "resnapshot" for g in hit), (r, hit)
            g = hit[0]
            # the connection kept serving its other symbols: no disconnect around the heal
            assert not [d for d in by_cause["disconnect"] if d["conn_id"] == g["conn_id"]
                        and g["start_ns"] - S <= d["start_ns"] <= g["end_ns"] + S], g
        elif f == "close":
            hit = [g for g in by_cause["disconnect"] if g["channel"] == "trade" and _covers(g, t)
                   and g["detail"] != "process stop"]
            assert hit, r
            assert not [g for g in hit if "ExceptionGroup" in (g["detail"] or "")], hit
            # a trade gap closes with the symbol's next trade (a quiet symbol stays open): every
            # symbol that traded after the reconnect is healed, within 15 s for some
            healed = [g for g in hit if g["end_ns"] is not None]
            traded_after = {x["symbol"] for x in trades if x["recv_ns"] > t + 15 * S}
            assert {g["symbol"] for g in hit if g["symbol"] in traded_after} <= {
                g["symbol"] for g in healed}, hit
            assert any(g["end_ns"] - t < 15 * S and g["healed_by"] == "resubscribe"
                       for g in healed), hit
        elif f == "stall":
            hit = [g for g in by_cause["silence"] if g["channel"] == "level3"
                   and abs(g["start_ns"] - t) <= S]
            assert hit, (r, by_cause["silence"])
        elif f == "rest_limit":
            assert [g for g in by_cause["rate_limit"] if abs(g["start_ns"] - t) <= S], r
        elif f == "token_reject":
            assert [g for g in by_cause["subscribe_failed"] if g["symbol"] in (sym, "*")
                    and abs(g["start_ns"] - t) <= S and "token" in (g["detail"] or "").lower()], r
        elif f == "drop":
            # a dropped live trade is never re-sent live: it is in a trade_id_jump gap healed by
            # REST backfill, or (dropped just before the `close` fault) re-delivered by the
            # resubscribe snapshot (source 0)
            found = re.search(r'"trade_id":(\d+)', str(r.get("detail", {}).get("frame", "")))
            if found is None or '"type":"update"' not in str(r["detail"].get("frame")):
                continue  # a snapshot or an ack: nothing of the live feed is missing
            tid = int(found.group(1))
            seen = ids.get(sym)  # .get: a lookup must not plant an empty set in the defaultdict
            if not seen or tid > max(seen) or tid < min(seen):
                continue  # outside what was recorded (before subscribe / after stop)
            assert tid not in live_ids[sym], (r, tid)
            hit = [g for g in by_cause["trade_id_jump"] if g["symbol"] == sym
                   and _id_range(g)[0] <= tid <= _id_range(g)[1]]
            assert all(g["healed_by"] == "rest_backfill" and _covers(g, t) for g in hit), hit
            assert hit or tid in snap_ids[sym], (r, tid)
            checked_drops += 1
    assert checked_drops, "no dropped trade was missing from the WS feed: the test saw no drop"

    # books verify again after each heal: a new epoch with verified checksums follows every
    # checksum gap of that (channel, symbol)
    epochs = rows(rec.root, "epochs")
    for g in by_cause["checksum_mismatch"]:
        after = [e for e in epochs if e["channel"] == g["channel"] and e["symbol"] == g["symbol"]
                 and e["start_ns"] >= g["end_ns"] and e["checksum_ok"] > 0]
        assert after, f"{g['channel']} {g['symbol']} never verified after its resnapshot"

    # trade gaps fully backfilled: archive trades (distinct ids) == truth trades per symbol over
    # the recorded range, and the ids a drop lost came from REST (source 2 = backfill)
    truth_ids: dict[str, set[int]] = defaultdict(set)
    for r in truth:
        if r.get("ev") == "trade":
            truth_ids[r["symbol"]].add(r["trade_id"])
    jumps = by_cause["trade_id_jump"]
    assert jumps, "drops must have produced trade_id gaps"
    backfilled = {(t["symbol"], t["trade_id"]) for t in trades if t["source"] == 2}
    for g in jumps:
        lo, hi = _id_range(g)
        for i in range(lo, hi + 1):
            assert (g["symbol"], i) in backfilled, (g, i)
    assert all(g["healed_by"] == "rest_backfill" for g in jumps), jumps
    for sym, got in ids.items():
        lo, hi = min(got), max(got)
        want = {i for i in truth_ids[sym] if lo <= i <= hi}
        assert got == want, f"{sym}: missing {sorted(want - got)[:5]}, extra {sorted(got - want)[:5]}"
    _scan_secret(rec)


def test_kill_9_worker_is_restarted_and_gap_recorded(tmp: Path) -> None:
    sim = Sim(tmp, pairs=10)
    rec = Recorder(tmp, sim, extra_env={"RECORDER_SCHEDULE__ROLL_MINUTES": "0.03"})
    try:
        st = rec.wait_for(lambda s: _all_active(s, {"book", "trade"})
                          and all(w["commits"] >= 2 for w in s["workers"].values()),
                          60, "subscriptions and scheduled commits")
        w0 = st["workers"]["0"]
        victim, root = w0["pid"], Path(w0["root"])
        time.sleep(0.7)  # frames journaled after the last commit: recovery must re-derive them
        os.kill(victim, signal.SIGKILL)
        st = rec.wait_for(lambda s: any(sh.get("restarts") for sh in s["shards"])
                          and _all_active(s, {"book", "trade"})
                          and all(w["pid"] != victim for w in s["workers"].values()),
                          60, "worker restarted and resubscribed")
        assert st["workers"]["0"]["root"] == str(root)
        assert st["workers"]["0"]["recovered_frames"] > 0
        code, _ = rec.get("/health")
        assert code == 200
        time.sleep(2)
        assert rec.stop() == 0
    finally:
        if rec.proc.poll() is None:
            rec.proc.kill()
        sim.stop()
    starts = [m for _, m in _markers(root) if type(m).__name__ == "ProcessStart"]
    assert len(starts) == 2  # the killed run and its restart (the killed one has no ProcessStop)
    restart = [g for g in rows(rec.root, "gaps", [root]) if g["cause"] == "process_restart"]
    assert len(restart) == 1 and "crash" in restart[0]["detail"], restart
    assert 0 < restart[0]["end_ns"] - restart[0]["start_ns"] < 30 * S
    for seg in (root / "journal").rglob("*.kjz"):
        info = SegmentInfo()
        list(read_segment(seg, info=info))
        assert not info.error or info.torn  # a killed writer may leave a torn tail, never garbage
    for f in (root / "data").rglob("*.parquet"):
        pq.read_metadata(f)  # every file opens
    verify(root)
    # exactly once: deriving the same journal from scratch (`recorder ingest`) gives the same
    # rows as the live writer did across the crash and its recovery
    fresh = tmp / "rederived"
    segs = [str(root / "journal" / s) for s in list_segments(root / "journal")]
    out = subprocess.run([PY, "-m", "recorder", "ingest", *segs, "--archive", str(fresh), "--quiet"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for name in ("book", "trades", "ohlc", "instruments", "epochs", "gaps", "checkpoints"):
        live_t, again_t = dataset(rec.root, name, [root]), dataset(fresh, name, [fresh])
        assert (live_t.num_rows if live_t else 0) == (again_t.num_rows if again_t else 0), name
    key = ("recv_ns", "conn_id", "symbol", "side", "price", "qty")
    live_book = sorted(tuple(r[k] for k in key) for r in rows(rec.root, "book", [root]))
    assert live_book == sorted(tuple(r[k] for k in key) for r in rows(fresh, "book", [fresh]))
    assert len(set(live_book)) == len(live_book)


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


def test_disk_guard_pauses_commits_and_resumes(tmp: Path) -> None:
    """A worker (in-process, against the sim) whose free-space probe says the disk is nearly
    full journals DiskPressure, commits, closes its connections and takes no data; when space
    returns it resumes, and the archive records the pause as healed gaps."""
    import asyncio

    from recorder.capture.config import load_config
    from recorder.capture.service import Worker, WorkerSpec
    from recorder.capture.shards import plan
    from recorder.capture.supervisor import discover_pairs

    sim = Sim(tmp, pairs=6)
    free = {"bytes": 10**12}
    try:
        u = sim.urls
        cfg = load_config(None, env={}, overrides={
            "venue": {"spot_ws": u["spot_ws"], "l3_ws": u["l3_ws"], "futures_ws": u["futures_ws"],
                      "spot_rest": u["rest"], "futures_rest": u["rest"]},
            "schedule": {"disk_check_s": 0.2, "disk_min_free_bytes": 1000,
                         "disk_resume_free_bytes": 2000},
            "connection": {"backoff_base_s": 0.2, "backoff_max_s": 0.5}},
            top_overrides={"archive_root": tmp / "archive", "host": "guard"})

        async def scenario() -> Worker:
            pairs = await discover_pairs(u["spot_ws"])
            wp = plan([p.symbol for p in pairs], workers=1, level3_depth=None, book_depth=10,
                      trade=False, ohlc_interval=None)[0]
            worker = Worker(WorkerSpec(cfg, wp, 1, "t"), disk_free=lambda _: free["bytes"])
            task = asyncio.create_task(worker.run())

            async def until(pred: Any, what: str, timeout: float = 20.0) -> None:
                deadline = time.monotonic() + timeout
                while not pred():
                    assert time.monotonic() < deadline, f"timed out: {what}"
                    assert not task.done(), task
                    await asyncio.sleep(0.05)

            book = next(c for c in worker.connections if c.channel == "book")
            await until(lambda: book.table.counts().get("active") == 6
                        and worker.writer.stats.frames_in > 100, "book active")
            commits = worker.writer.stats.commits
            free["bytes"] = 500
            await until(lambda: worker.paused.is_set()
                        and not any(c.connected for c in worker.connections), "paused")
            assert worker.writer.stats.commits == commits + 1  # committed before pausing
            await asyncio.sleep(0.3)
            frozen = worker.writer.stats.frames_in
            await asyncio.sleep(1.0)
            assert worker.writer.stats.frames_in == frozen  # no data while paused
            free["bytes"] = 1500  # above the minimum, below the resume threshold: still paused
            await asyncio.sleep(0.6)
            assert worker.paused.is_set()
            free["bytes"] = 5000
            await until(lambda: not worker.paused.is_set()
                        and book.table.counts().get("active") == 6
                        and worker.writer.stats.frames_in > frozen + 100, "resumed")
            worker.request_stop()
            await asyncio.wait_for(task, 20)
            return worker

        worker = asyncio.run(scenario())
    finally:
        sim.stop()
    root = worker.root
    assert root == tmp / "archive" / "guard-w0"
    names = [type(m).__name__ for _, m in _markers(root)]
    assert names.count("DiskPressure") == 1
    pressure = next(f.recv_ns for f, m in _markers(root) if type(m).__name__ == "DiskPressure")
    paused = [g for g in rows(tmp / "archive", "gaps") if (g["detail"] or "").startswith("disk pressure")]
    assert {g["symbol"] for g in paused if g["channel"] == "book"} == {
        r["symbol"] for r in rows(tmp / "archive", "book")}
    for g in paused:
        assert g["cause"] == "disconnect" and g["healed_by"] == "resnapshot", g
        assert g["start_ns"] <= pressure + S and g["end_ns"] - g["start_ns"] >= 1.5 * S, g
    verify(root)


def _post(url: str, doc: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(doc).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def _spot_symbols(st: dict[str, Any]) -> dict[str, int]:
    """Spot channel -> symbols held over every worker's connections."""
    out: dict[str, int] = defaultdict(int)
    for c in _conns(st):
        if c["stream"] in ("spot", "l3") and c["channel"] != "instrument":
            out[c["channel"]] += c["symbols"]
    return out


def test_listings_reach_every_channel_and_survive_a_worker_crash(tmp: Path) -> None:
    """A runtime listing is subscribed on every spot channel, although the channels' connections
    are spread over both workers; and a worker killed after it saw a delisting and a listing
    resumes with both. Its restored pipeline state already holds them (no InstrumentChanged
    comes again), so the instrument snapshot is reconciled with the plan: without that, the
    delisted pair is refused forever (a dead subscription) and the new pair is lost."""
    sim = Sim(tmp, pairs=10)
    rec = Recorder(tmp, sim)
    control = sim.urls["control"]
    try:
        st = rec.wait_for(lambda s: _all_active(s, {"book", "trade"}), 60, "subscriptions")
        channels = set(_spot_symbols(st))
        assert {"book", "trade", "level3", "ohlc"} <= channels and set(_spot_symbols(st).values()) == {10}
        w0 = {c["channel"] for c in st["workers"]["0"]["connections"] if c["channel"] in channels}
        w1 = {c["channel"] for c in st["workers"]["1"]["connections"] if c["channel"] in channels}
        assert w0 and w1  # the channels are spread over both workers
        victim = st["workers"]["0"]["pid"]
        new = "NEW1/USD"
        assert _post(control + "/instrument", {"action": "delist", "symbol": "ETH/USD"})["status"] == "delisted"
        assert _post(control + "/instrument", {"action": "list", "symbol": new})["symbol"] == new
        rec.wait_for(lambda s: _all_active(s, {"book", "trade"})
                     and set(_spot_symbols(s).values()) == {10},
                     30, "the delisted pair dropped and the new one subscribed on every channel")
        time.sleep(1.0)  # the instrument update is journaled before the kill
        os.kill(victim, signal.SIGKILL)
        killed_ns = time.time_ns()
        st = rec.wait_for(lambda s: any(sh.get("restarts") for sh in s["shards"])
                          and s["workers"]["0"]["pid"] != victim
                          and _all_active(s, {"book", "trade"}), 60,
                          "the restarted worker to have every subscription active")
        assert set(_spot_symbols(st).values()) == {10}, _spot_symbols(st)
        assert all(c["dead"] == [] for c in _conns(st))
        time.sleep(3)
        assert rec.stop() == 0
    finally:
        if rec.proc.poll() is None:
            rec.proc.kill()
        sim.stop()
    root0 = Path(st["workers"]["0"]["root"])
    assert "ETH/USD is not listed any more" in rec.err_path.read_text()
    for channel, table in (("book", "book"), ("level3", "level3")):
        roots = [root0] if channel in w0 else None
        after = {r["symbol"] for r in rows(rec.root, table, roots) if r["recv_ns"] > killed_ns}
        assert new in after and "ETH/USD" not in after, (channel, sorted(after))


def test_two_shard_hosts_cover_every_pair_once_and_query_as_one(tmp: Path) -> None:
    """Two ``recorder run --shard K/2`` processes (as two hosts: their own ``host`` names)
    against one sim: every pair is recorded by exactly one of them, and the Python API and SQL
    over the common parent see the union."""
    import recorder

    sim = Sim(tmp, pairs=24)
    hosts = [tmp / "a", tmp / "b"]
    for h in hosts:
        h.mkdir()
    parent = tmp / "archive"
    recs = [Recorder(h, sim, args=["--shard", f"{k + 1}/2", "--archive-root", str(parent)],
                     extra_env={"RECORDER_HOST": f"host{'ab'[k]}"})
            for k, h in enumerate(hosts)]
    try:
        for rec in recs:
            rec.wait_for(lambda s: _all_active(s, {"level3", "book", "trade", "ohlc"}), 90,
                         "every subscription of the shard")
        held = [_spot_symbols(rec.status() or {}) for rec in recs]
        assert all(h["book"] > 0 for h in held)
        assert held[0]["book"] + held[1]["book"] == 24  # each pair on one host
        time.sleep(3)
        for rec in recs:
            assert rec.stop() == 0
    finally:
        for rec in recs:
            if rec.proc.poll() is None:
                rec.proc.kill()
        sim.stop()
    roots = writer_roots(parent)
    assert sorted(r.name for r in roots) == ["hosta-w0", "hosta-w1", "hostb-w0", "hostb-w1"]
    by_host: dict[str, set[str]] = {"hosta": set(), "hostb": set()}
    for root in roots:
        by_host[root.name[:5]] |= {r["symbol"] for r in rows(parent, "level3", [root])}
    assert by_host["hosta"] and by_host["hostb"]
    assert not by_host["hosta"] & by_host["hostb"]  # exactly once
    online = {r["symbol"] for r in rows(parent, "instruments") if r["kind"] == "pair"
              and r["status"] == "online"}
    assert by_host["hosta"] | by_host["hostb"] == online and len(online) == 24
    with recorder.Archive(parent) as archive:  # the union, through the API and SQL
        got = archive.sql("SELECT DISTINCT symbol FROM level3 ORDER BY symbol").collect()
        assert set(got["symbol"].to_list()) == online
        for sym in [*sorted(by_host["hosta"])[:2], *sorted(by_host["hostb"])[:2]]:
            t = archive.sql("SELECT max(recv_ns) AS t FROM level3 WHERE symbol = ?",
                            [sym]).collect()["t"][0]
            book = archive.book_at(sym, t, channel="level3", clock="receive")
            assert book.valid and book.frame.height > 0, sym


def test_workers_stop_cleanly_when_the_supervisor_is_killed(tmp: Path) -> None:
    """kill -9 of ``recorder run`` itself (not a worker): nobody would restart or stop its
    workers any more, so each notices, drains and seals, and exits; the archive verifies."""
    import psutil

    sim = Sim(tmp, pairs=6)
    rec = Recorder(tmp, sim)
    workers: list[psutil.Process] = []
    try:
        st = rec.wait_for(lambda s: _all_active(s, {"book", "trade"}), 60, "subscriptions")
        workers = [psutil.Process(int(w["pid"])) for w in st["workers"].values()]
        time.sleep(1.0)
        rec.proc.kill()
        rec.proc.wait(10)
        gone, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive, [p.pid for p in alive]
    finally:
        for p in workers:  # orphans now (their parent is init): never leak one
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        if rec.proc.poll() is None:
            rec.proc.kill()
        sim.stop()
    assert "the supervisor (pid" in rec.err_path.read_text()
    for root in writer_roots(rec.root):
        verify(root)
        names = [type(m).__name__ for _, m in _markers(root)]
        assert names[-1] == "ProcessStop", names[-3:]  # a clean stop, not a torn end
