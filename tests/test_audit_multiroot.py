"""``recorder audit`` over several archive roots (capture writes one per worker process).

A parent with two roots, each ingested from a ``recorder sim --record`` stream with its own
pairs and seed (the sim numbers connections from the same start in both, so connection ids
collide across the roots and their times overlap): audited as one archive, every key's
figures equal the per-root audit's over the same range and the summary is their sum;
repeated ``--archive`` equals the parent; bad paths are usage errors naming the path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from recorder.audit.command import run_daily_audit
from recorder.audit.load import AuditError, open_source
from recorder.audit.report import build_report
from recorder.roots import ArchiveRootError
from tests.audit_helpers import record_root

PY = sys.executable
A_PAIRS = ["BTC/USD", "ETH/USD"]
B_PAIRS = ["SOL/USD", "XRP/USD"]
#: Summary figures that add up over roots whose keys are disjoint.
ADDITIVE = ("keys", "symbols", "window_ns", "covered_ns", "active_ns", "quiet_ns", "missing_ns",
            "backfilled_ns", "gaps", "epochs", "desyncs", "resnapshots", "quarantines",
            "trade_ids_missing", "ohlc_bars_mismatched")


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("audit-multiroot")
    record_root(d, d / "archive" / "h-w0", ",".join(A_PAIRS), 3,
                faults="checksum:channel=book,at=5,count=1;close:endpoint=spot,channel=trade,at=20")
    record_root(d, d / "archive" / "h-w1", ",".join(B_PAIRS), 4,
                faults="checksum:channel=level3,at=8,count=1")
    (d / "archive" / "audits").mkdir()  # not a root: ignored
    return d / "archive"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "recorder", "audit", *args], capture_output=True,
                          text=True, timeout=120)


def _bounds(parent: Path) -> tuple[int, int]:
    with open_source(parent) as src:
        return src.lo, src.hi


def _by_key(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["channel"], c["symbol"]): c for c in report["channels"]}


def test_roots_collide_on_connection_ids_and_overlap_in_time(parent: Path) -> None:
    """The premise of the other tests: merging by conn_id alone would mix the roots."""
    with open_source(parent) as src:
        rows = src.con.execute(
            "SELECT conn_id, count(DISTINCT root) AS n, min(minute_ns), max(minute_ns) "
            "FROM liveness GROUP BY conn_id HAVING count(DISTINCT root) > 1").fetchall()
    assert rows, "the two roots should share connection ids"
    a = _bounds(parent / "h-w0")
    b = _bounds(parent / "h-w1")
    assert a[0] < b[1] and b[0] < a[1], (a, b)


def test_parent_equals_the_per_root_audits_combined(parent: Path) -> None:
    lo, hi = _bounds(parent)
    both = build_report(parent, lo=lo, hi=hi)
    parts = [build_report(parent / r, lo=lo, hi=hi) for r in ("h-w0", "h-w1")]
    assert both["roots"] == [str(parent / "h-w0"), str(parent / "h-w1")]
    assert both["archive"] == str(parent)
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for p in parts:
        assert not set(_by_key(p)) & set(merged)
        merged |= _by_key(p)
    assert _by_key(both) == merged
    assert {s for _, s in merged} == set(A_PAIRS + B_PAIRS)
    for k in ADDITIVE:
        assert both["summary"][k] == sum(p["summary"][k] for p in parts), k
    assert both["summary"]["verdicts"] == {
        v: sum(p["summary"]["verdicts"][v] for p in parts) for v in both["summary"]["verdicts"]}
    # gaps: the same rows, each tagged with its root; the hours/days/trades rows likewise
    strip = lambda g: {k: v for k, v in g.items() if k != "root"}  # noqa: E731
    assert sorted(map(json.dumps, map(strip, both["gaps"]))) == sorted(
        json.dumps(strip(g)) for p in parts for g in p["gaps"])
    assert {g["root"] for g in both["gaps"]} == {str(parent / "h-w0"), str(parent / "h-w1")}
    for section in ("hours", "days", "trades", "epochs"):
        assert sorted(map(json.dumps, both[section])) == sorted(
            json.dumps(r) for p in parts for r in p[section]), section
    # the recorded faults are there, each in its own root
    causes = {(g["cause"], g["root"]) for g in both["gaps"]}
    assert ("checksum_mismatch", str(parent / "h-w0")) in causes
    assert ("checksum_mismatch", str(parent / "h-w1")) in causes
    assert ("disconnect", str(parent / "h-w0")) in causes


def test_repeated_archive_option_equals_the_parent(parent: Path) -> None:
    one = _cli("--archive", str(parent), "--json", "--quiet")
    two = _cli("--archive", str(parent / "h-w0"), "--archive", str(parent / "h-w1"),
               "--archive", str(parent / "h-w0"), "--json", "--quiet")
    assert one.returncode == 0 and two.returncode == 0, (one.stderr, two.stderr)
    r1, r2 = json.loads(one.stdout), json.loads(two.stdout)
    assert r1["roots"] == r2["roots"]  # a root given twice is read once
    assert r1["channels"] == r2["channels"] and r1["summary"] == r2["summary"]


@pytest.mark.parametrize("bad", ["missing", "file.txt", "empty"])
def test_bad_paths_are_usage_errors_naming_the_path(parent: Path, tmp_path: Path,
                                                    bad: str) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    out = _cli("--archive", str(parent), "--archive", str(tmp_path / bad), "--quiet")
    assert out.returncode == 2, out
    assert "Error:" in out.stderr and str(tmp_path / bad) in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    with pytest.raises(ArchiveRootError):
        build_report([parent, tmp_path / bad])


def test_roots_without_committed_data(parent: Path, tmp_path: Path) -> None:
    (tmp_path / "h-w9" / "_manifest").mkdir(parents=True)  # a writer that never committed
    with pytest.raises(AuditError, match="committed"):
        build_report(tmp_path)
    out = _cli("--archive", str(tmp_path), "--quiet")
    assert out.returncode == 1 and "Error:" in out.stderr and "Traceback" not in out.stderr
    # beside committed roots it is simply not audited
    r = build_report([parent, tmp_path])
    assert r["roots"] == [str(parent / "h-w0"), str(parent / "h-w1")]


def test_daily_audit_of_a_parent(parent: Path, tmp_path: Path) -> None:
    lo, _ = _bounds(parent)
    day = build_report(parent)["range"]["from"][:10]
    paths = run_daily_audit(parent, tmp_path / "audits", day=day)
    r = json.loads(paths["json"].read_text())
    assert r["roots"] == [str(parent / "h-w0"), str(parent / "h-w1")]
    assert {c["symbol"] for c in r["channels"]} == set(A_PAIRS + B_PAIRS)
    assert lo >= r["range"]["from_ns"]


def test_a_pair_in_two_roots_with_colliding_connection_ids(parent: Path, tmp_path: Path) -> None:
    """Two roots holding the same pair on the same connection ids at the same time: each
    root's subscription runs stay its own, and the pair is covered where either root was."""
    extra = record_root(tmp_path, tmp_path / "extra" / "h2-w0", "BTC/USD", 9)
    a = parent / "h-w0"
    with open_source([a, extra]) as src:
        lo, hi = src.lo, src.hi
        both = src.rows("subscribed")
    per_root = []
    for root in (a, extra):
        with open_source(root, lo, hi) as one:
            per_root += one.rows("subscribed")
    key = lambda r: tuple(sorted(r.items()))  # noqa: E731
    assert sorted(map(key, both)) == sorted(map(key, per_root))
    shared = {(r["root"], r["conn_id"]) for r in both if r["symbol"] == "BTC/USD"}
    assert {c for _, c in shared if (str(a), c) in shared and (str(extra), c) in shared}
    report = _by_key(build_report([a, extra], lo=lo, hi=hi))
    alone = [_by_key(build_report(r, lo=lo, hi=hi)) for r in (a, extra)]
    for k in (("book", "BTC/USD"), ("trade", "BTC/USD")):
        assert report[k]["covered_ns"] >= max(p[k]["covered_ns"] for p in alone), k
        assert report[k]["covered_ns"] <= report[k]["window_ns"]
