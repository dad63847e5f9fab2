"""Capture over FIX of 22 pairs, L2 and L3, against ``recorder sim`` with every FIX fault kind
(issue #17 "must show").

``recorder sim --fix-l2-port 0 --fix-l3-port 0`` (subprocess) serves the WebSocket feeds and
the FIX acceptor from one market; ``recorder run`` (subprocess, 2 workers) records every
WebSocket channel and, through ``[fix]``, the same 22 pairs over FIX (L2 with trades, and L3)
into one archive. Every FIX fault kind is scheduled on both ports through the sim's
``/control/faults`` (``fix_gap``, ``fix_duplicate``, ``fix_checksum``, ``fix_stall``,
``fix_logout``). The test then checks, against the sim's truth file:

* each fault was detected: a ``fix_seq_gap`` gap naming the skipped / garbled MsgSeqNum (and a
  ``fix_checksum`` reject), a ``disconnect`` gap for the stall (heartbeat timeout), a
  ``fix_logout`` gap for the logout, for every symbol of the session hit, each healed by a
  resnapshot; the duplicate reached the journal (PossDup, its original MsgSeqNum) and opened
  no gap;
* the books are the sim's books after every heal: every FIX epoch (and so every one that
  follows a heal) is compared by the cross-source query with the WebSocket book of the same
  symbol, whose every message ``recorder verify`` checked against the sim's CRC32, and no
  comparison disagrees (book and level3);
* nothing is missing outside the recorded gaps: FIX trade ids equal the truth's trade ids
  outside the times of FIX trade gaps;
* the audit's cross-source section reports the symbols compared and 0 disagreements.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from recorder.capture.writer import writer_roots
from recorder.query.api import Archive
from recorder.sim.universe import load_universe
from tests.test_capture_integration import (
    KEY,
    PY,
    SECRET,
    Recorder,
    Sim,
    _all_active,
    _post,
    _wait_fired,
    journal_frames,
    rows,
    verify,
)

pytestmark = pytest.mark.integration

S = 10**9
PAIRS = 22
SEED = 13
FIX_FAULTS = ";".join([
    "fix_gap:endpoint=fix_l2,at=1",
    "fix_gap:endpoint=fix_l3,at=1.5",
    "fix_duplicate:endpoint=fix_l2,at=2.5",
    "fix_duplicate:endpoint=fix_l3,at=3",
    "fix_checksum:endpoint=fix_l2,at=4",
    "fix_checksum:endpoint=fix_l3,at=4.5",
    "fix_logout:endpoint=fix_l2,at=5.5",
    "fix_logout:endpoint=fix_l3,at=6",
    "fix_stall:endpoint=fix_l2,at=8",
    "fix_stall:endpoint=fix_l3,at=8.5",
])
STREAM = {"fix_l2": "fix", "fix_l3": "fix_l3"}
BOOK = {"fix_l2": "book", "fix_l3": "level3"}


class FixSim(Sim):
    """``recorder sim`` with both FIX ports (its certificate in ``tmp``)."""

    def __init__(self, tmp: Path) -> None:
        import subprocess

        self.truth = tmp / "truth.jsonl"
        args = [PY, "-m", "recorder", "sim", "--port", "0", "--seed", str(SEED), "--rate", "1.0",
                "--pairs", str(PAIRS), "--api-key", KEY, "--api-secret", SECRET,
                "--truth", str(self.truth), "--fix-l2-port", "0", "--fix-l3-port", "0",
                "--fix-cert-dir", str(tmp / "cert")]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stderr=open(tmp / "sim.err", "wb"))
        self.urls = json.loads(self.proc.stdout.readline())  # type: ignore[union-attr]


def _config(tmp: Path, sim: Sim, symbols: list[str]) -> Path:
    l2 = sim.urls["fix_l2"].rsplit(":", 1)[1]
    l3 = sim.urls["fix_l3"].rsplit(":", 1)[1]
    path = tmp / "recorder.toml"
    path.write_text(
        "[fix]\n"
        'host = "127.0.0.1"\n'
        f"l2_port = {l2}\n"
        f"l3_port = {l3}\n"
        'sender_comp_id = "RECORDER1"\n'
        f"symbols = {json.dumps(symbols)}\n"
        'channels = ["L2", "L3"]\n'
        "depth = 10\n"
        "trades = true\n"
        f"ca_file = {json.dumps(sim.urls['fix_cert'])}\n"
        "heartbeat_s = 1\n"
        "backoff_base_s = 0.1\n"
        "backoff_max_s = 0.5\n")
    return path


def _near(g: dict[str, Any], t: int, before: float = 1.0, after: float = 6.0) -> bool:
    return t - int(before * S) <= g["start_ns"] <= t + int(after * S)


def test_fix_capture_of_22_pairs_heals_every_fix_fault_and_agrees_with_the_websocket(
        tmp_path: Path) -> None:
    symbols = list(load_universe(None, pairs=PAIRS, futures_path=None, seed=SEED).symbols)
    assert len(symbols) >= 20
    sim = FixSim(tmp_path)
    rec = Recorder(tmp_path, sim, args=["--config", str(_config(tmp_path, sim, symbols))])
    try:
        rec.wait_for(lambda s: _all_active(s, {"level3", "book", "trade"}), 90, "subscriptions")
        time.sleep(2)  # the FIX sessions log on and take their snapshots
        control = sim.urls["control"]
        _post(control + "/faults", {"spec": FIX_FAULTS})
        _wait_fired(control, FIX_FAULTS, 60)
        time.sleep(6)  # the stall (2.5 s), the heartbeat timeout, the reconnects and snapshots
        assert rec.stop() == 0
    finally:
        if rec.proc.poll() is None:
            rec.proc.kill()
        sim.stop()

    truth = [json.loads(line) for line in sim.truth.read_text().splitlines() if line.strip()]
    faults = [r for r in truth if r.get("kind") == "fault" and r["fault"].startswith("fix_")]
    assert {(r["fault"], r["endpoint"]) for r in faults} == {
        (k, e) for k in ("fix_gap", "fix_duplicate", "fix_checksum", "fix_stall", "fix_logout")
        for e in ("fix_l2", "fix_l3")}, faults
    roots = writer_roots(rec.root)
    for root in roots:
        verify(root)  # every WebSocket book epoch re-verifies (the sim's CRC32), 0 failed
    gaps = [g for g in rows(rec.root, "gaps") if g["stream"] in ("fix", "fix_l3")]
    rejects = rows(rec.root, "rejects")

    # ---- each fault detected and recorded as a gap, healed by a resnapshot
    for r in faults:
        kind, ep, t, det = r["fault"], r["endpoint"], r["t_ns"], r["detail"]
        stream, channel = STREAM[ep], BOOK[ep]
        assert sorted(det["symbols"]) == sorted(symbols), r
        if kind == "fix_duplicate":
            # no gap of its own: the only MsgSeqNum gaps of the stream are the fix_gap and
            # fix_checksum faults' (not applied twice: the books agree below)
            seq_gaps = {g["missing"] for g in gaps if g["stream"] == stream
                        and g["cause"] == "fix_seq_gap"}
            assert seq_gaps == {f"MsgSeqNum {d[k]}..{d[k]}" for x in faults
                                if x["endpoint"] == ep for d in [x["detail"]]
                                for k in ("skipped_seq", "garbled_seq") if k in d}, seq_gaps
            dup = [f for root in roots for f in journal_frames(root) if f.stream == stream
                   and b"\x0143=Y\x01" in f.payload and b"\x0134=%d\x01" % det["seq"] in f.payload
                   and b"\x0135=%s\x01" % det["msg_type"].encode() in f.payload]
            assert dup, r
            continue
        cause = {"fix_gap": "fix_seq_gap", "fix_checksum": "fix_seq_gap",
                 "fix_stall": "disconnect", "fix_logout": "fix_logout"}[kind]
        missing = None
        if kind in ("fix_gap", "fix_checksum"):
            seq = det["skipped_seq"] if kind == "fix_gap" else det["garbled_seq"]
            missing = f"MsgSeqNum {seq}..{seq}"

        def found(ch: str, cause: str = cause, missing: str | None = missing,
                  stream: str = stream, t: int = t) -> dict[str, dict[str, Any]]:
            # a gap starts at the key's last good message: up to a few seconds before t
            return {g["symbol"]: g for g in gaps if g["stream"] == stream
                    and g["channel"] == ch and g["cause"] == cause
                    and (missing is None or g["missing"] == missing)
                    and g["detail"] != "process stop" and _near(g, t, before=5)}

        hit = found(channel)
        assert set(hit) == set(symbols), (r, sorted(set(symbols) - set(hit)))
        assert all(g["healed_by"] == "resnapshot" and g["end_ns"] is not None
                   for g in hit.values()), r
        if kind == "fix_checksum":
            assert [x for x in rejects if x["reason"] == "fix_checksum"
                    and t - S <= x["recv_ns"] <= t + 3 * S], r
        if ep == "fix_l2":  # the session's trade keys (those that traded) share the gap
            assert set(found("trade")) <= set(symbols), r

    # ---- the books after every heal: FIX equals the (CRC32-verified) WebSocket book
    ar = Archive(rec.root)
    epochs = rows(rec.root, "epochs")
    for channel, stream in (("book", "fix"), ("level3", "fix_l3")):
        bad = ar.cross_source(channel=channel).collect()
        assert bad.height == 0, bad.head(20)
        summary = {r["symbol"]: r for r in ar.cross_source_summary(channel=channel)
                   .collect().to_dicts()}
        assert set(summary) == set(symbols), (channel, sorted(summary))
        for sym in symbols:
            fix_epochs = [e for e in epochs if e["stream"] == stream
                          and e["channel"] == channel and e["symbol"] == sym]
            # the first, one after each of gap, checksum, logout and stall (at least)
            assert len({e["epoch"] for e in fix_epochs}) >= 5, (channel, sym, fix_epochs)
            s = summary[sym]
            assert s["disagreements"] == 0 and s["comparisons"] > 0, s
            # every FIX epoch is compared (on level3 from its first incremental refresh:
            # an epoch of its snapshot alone, replaced at once by a resubscription's, is not)
            expect = {e["epoch"] for e in fix_epochs if channel == "book" or e["messages"] > 1}
            assert s["epochs_compared"] == len(expect), (s, fix_epochs)

    # ---- nothing missing outside the recorded gaps: FIX trade ids against the truth
    trades = [t for t in rows(rec.root, "trades") if t["source"] == 3]
    truth_trades: dict[str, dict[int, int]] = defaultdict(dict)
    for r in truth:
        if r.get("ev") == "trade":
            truth_trades[r["symbol"]][r["trade_id"]] = r["t_ns"]
    fix_ids: dict[str, set[int]] = defaultdict(set)
    for t in trades:
        fix_ids[t["symbol"]].add(t["trade_id"])
    trade_gaps = [g for g in gaps if g["channel"] == "trade"]
    checked = 0
    for sym, got in fix_ids.items():
        lo, hi = min(got), max(got)
        mine = [g for g in trade_gaps if g["symbol"] == sym]
        for tid, t_ns in truth_trades[sym].items():
            if not lo <= tid <= hi:
                continue
            in_gap = any(g["start_ns"] - S <= t_ns <= (g["end_ns"] or 2**62) + S for g in mine)
            if not in_gap:
                assert tid in got, (sym, tid, t_ns, mine)
                checked += 1
        assert got <= set(truth_trades[sym]), sym
    assert checked > 0

    # ---- the audit's cross-source section
    from recorder.audit.cross import cross_source_section

    sec = cross_source_section(ar)
    assert sec["symbols"] == len(symbols) and sec["disagreements"] == 0, sec
    assert sec["comparisons"] > 0
    assert re.search(r"0 disagreements", sec["text"]), sec["text"]
