"""``recorder demo`` end to end (subprocess, bounded): sections printed, archive verifies, the
parent of the two writer roots queries as their union, Ctrl-C stops early and cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from recorder.demo import fault_schedule
from recorder.roots import archive_roots

pytestmark = pytest.mark.integration

PY = sys.executable
SECTIONS = ["== capture", "every subscription acknowledged", "stopped cleanly",
            "== archive: 2 writer roots", "== audit", "verified coverage", "== verify",
            "== L3 book of the busiest pair", "level3 at", "== SQL", "ohlc_from_trades",
            "== where things are", "HTML report:"]


def _children_of(marker: str) -> list[int]:
    """Pids of live processes whose command line mentions ``marker`` (the demo's paths)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd:
                out.append(int(d.name))
    return out


def test_demo_runs_offline_and_the_archive_verifies(tmp_path: Path) -> None:
    archive = tmp_path / "demo-archive"
    t0 = time.monotonic()
    out = subprocess.run([PY, "-m", "recorder", "demo", "--seconds", "20", "--archive",
                          str(archive)], check=False,
                         capture_output=True, text=True, timeout=150)
    took = time.monotonic() - t0
    text = out.stdout
    assert out.returncode == 0, text[-4000:] + out.stderr[-4000:]
    assert took < 120, took
    pos = [text.find(s) for s in SECTIONS]
    assert all(p >= 0 for p in pos) and pos == sorted(pos), list(zip(SECTIONS, pos))
    assert "Traceback" not in text + out.stderr
    # the rebuilt book matched Kraken's checksum; the faults left their gaps
    assert "matches Kraken's last" in text
    for cause in ("checksum_mismatch", "disconnect"):
        assert cause in text, cause
    roots = archive_roots(archive)
    assert [r.name for r in roots] == ["demo-w0", "demo-w1"]
    for root in roots:
        v = subprocess.run([PY, "-m", "recorder", "verify", "--archive", str(root), "--json"],
                           check=False, capture_output=True, text=True, timeout=120)
        report = json.loads(v.stdout)
        assert v.returncode == 0 and report["failed"] == 0 and report["messages_checked"] > 0
    for name in ("audit-demo-w0.html", "audit-demo-w1.html"):
        assert (archive / "demo" / name).stat().st_size > 1000
    # the parent reads as the union of the two roots (a real capture run's layout)
    from recorder.query.api import Archive

    def keys(ar: Archive) -> set[tuple[str, str]]:
        df = ar.sql("SELECT DISTINCT channel, symbol FROM epochs").collect()
        return set(zip(df["channel"].to_list(), df["symbol"].to_list()))

    per_root = [keys(Archive(r)) for r in roots]
    ar = Archive(archive)
    assert all(per_root) and keys(ar) == per_root[0] | per_root[1]
    assert len({s for c, s in keys(ar) if c == "level3"}) == 24
    for held, root in zip(per_root, roots):  # each root answers for what it recorded
        channel, sym = min(k for k in held if k[0] in ("book", "level3"))
        e = ar.epochs(sym, channels=channel).collect()
        t = int((e["start_ns"][0] + e["end_ns"][0]) // 2)
        b = ar.book_at(sym, t, channel=channel, clock="receive")
        assert b.valid and b.root == root and b.checksum_ok is not False, (sym, b.reason)
    # the faults were scheduled once capture was up: each fired once, and the corrupted
    # checksum was an update's, not a first snapshot's (the pair's first epoch verified, then
    # the recorder resubscribed: a second epoch)
    truth = [json.loads(line) for line in
             (archive / "demo" / "truth.jsonl").read_text().splitlines()]
    fired = [r for r in truth if r.get("kind") == "fault"]
    assert sorted(r["fault"] for r in fired) == ["checksum", "close", "drop"], fired
    (bad,) = [r for r in fired if r["fault"] == "checksum"]
    epochs = ar.sql("SELECT epoch, min(start_ns) AS s, arg_max(checksum_ok, end_ns) AS ok "
                    "FROM epochs WHERE channel = 'book' AND symbol = ? GROUP BY epoch "
                    "ORDER BY s", [bad["symbol"]]).collect()
    assert epochs.height >= 2 and epochs["ok"][0] > 1, (bad, epochs)
    assert not _children_of(str(archive))  # simulator and recorder are gone


def test_demo_ctrl_c_stops_early_and_still_reports(tmp_path: Path) -> None:
    archive = tmp_path / "a"
    proc = subprocess.Popen([PY, "-m", "recorder", "demo", "--seconds", "90", "--archive",
                             str(archive)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    lines: list[str] = []
    subscribed = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "every subscription acknowledged" in line:
                subscribed.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert subscribed.wait(60), "".join(lines)[-3000:]
        time.sleep(3)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(90)
        reader.join(5)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(lines)
    assert code == 0, text[-3000:] + (proc.stderr.read() if proc.stderr else "")
    assert time.monotonic() - t0 < 60
    assert "interrupted: stopping capture early" in text and "== where things are" in text
    assert len(archive_roots(archive)) == 2
    assert not _children_of(str(archive))


def test_demo_refuses_a_non_empty_archive_and_plans_mild_faults(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("keep me")
    out = subprocess.run([PY, "-m", "recorder", "demo", "--archive", str(tmp_path)],
                         check=False, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "not empty" in out.stderr
    assert (tmp_path / "x").read_text() == "keep me"
    rules = fault_schedule(45).split(";")
    assert [r.split(":")[0] for r in rules] == ["checksum", "drop", "close"]
    assert all("count=1" in r for r in rules)
