"""Must-show (issue #14 §2, "the audit tells the truth"), on the archive ``recorder demo`` builds
(built once per session: about a minute) and against the simulator's truth file:

* every injected fault (one corrupted book checksum, one dropped trade, one dropped trade
  connection) is exactly one gap with the right channel, cause and duration (within 1 s);
* nothing else is missing: no key is "not subscribed" or "not alive", the clean stop is not a
  gap, start-up before the first acknowledgement is labelled as such;
* every symbol-day without a fault is "available";
* an empty window and an unknown symbol fail ``--fail-under`` (no data is never 100 %);
* the HTML names the channel of every gap bar, draws gaps at their true extent, gives the 45 s
  run a readable time axis, and says why an empty table is empty.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from recorder.audit.coverage import EDGE_LIMIT_NS
from recorder.audit.html import render_html, time_ticks
from recorder.audit.report import build_report
from recorder.audit.truth import reconcile
from recorder.pipeline.markers import STOP_REASON
from recorder.sim.truth import read_truth
from tests.audit_helpers import CHROME_FLAGS, PROBE, S, chromium

pytestmark = pytest.mark.integration

PY = sys.executable
#: fault kind -> the gap cause it must become
CAUSE = {"checksum": "checksum_mismatch", "drop": "trade_id_jump", "close": "disconnect"}


@dataclass
class Demo:
    archive: Path
    truth: list[dict[str, Any]]
    report: dict[str, Any]


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    archive = tmp_path_factory.mktemp("audit-demo") / "archive"
    out = subprocess.run([PY, "-m", "recorder", "demo", "--seconds", "45", "--archive",
                          str(archive)], capture_output=True, text=True, timeout=400,
                         check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return Demo(archive=archive, truth=read_truth(archive / "demo" / "truth.jsonl"),
                report=build_report(archive))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "recorder", "audit", *args], capture_output=True,
                          text=True, timeout=180, check=False)


def test_every_injected_fault_is_exactly_one_gap(demo: Demo) -> None:
    r = demo.report
    rows = reconcile(demo.truth, r["gaps"])
    assert sorted(x["fault"] for x in rows) == ["checksum", "close", "drop"], rows
    for x in rows:
        assert x["status"] == "matched", x
        (g,) = x["gaps"]  # exactly one gap per fault
        assert g["cause"] == CAUSE[x["fault"]], x
        assert g["channel"] == x["channel"], x
        assert x["duration_ok"] is True, x  # within 1 s of the truth's own duration
    # and nothing else: three faults, three gaps
    assert len(r["gaps"]) == 3, [(g["cause"], g["channel"], g["symbol"]) for g in r["gaps"]]
    close = next(g for g in r["gaps"] if g["cause"] == "disconnect")
    # the one dropped connection carried every spot pair's trades: one gap over all of them,
    # from its last frame to the resubscription, not backdated to each pair's last trade
    spot_pairs = {c["symbol"] for c in r["channels"] if c["channel"] == "level3"}
    assert set(close["symbols"]) == spot_pairs and close["keys"] == len(spot_pairs)
    assert close["duration_s"] < 2.0
    drop = next(g for g in r["gaps"] if g["cause"] == "trade_id_jump")
    assert drop["counts_as"] == "backfilled" and r["summary"]["trade_ids_missing"] == 0


def test_nothing_else_is_missing_and_the_stop_is_not_a_gap(demo: Demo) -> None:
    r = demo.report
    s = r["summary"]
    faulted_keys: set[tuple[str, str]] = set()
    for g in r["gaps"]:
        if g["counts_as"] == "missing":
            faulted_keys |= {(g["channel"], sym) for sym in g["symbols"]}
    for c in r["channels"]:
        key = (c["channel"], c["symbol"])
        m = c["missing_by_reason"]
        assert m["not_subscribed"] == 0 and m["not_alive"] == 0, c
        assert (c["missing_ns"] > 0) == (key in faulted_keys), c
        assert c["missing_ns"] == m["in_gap"] and c["missing_ns"] < 2 * S, c
        assert c["recorded"] and c["verified_coverage_pct"] >= 95.0, c
        # start-up before the first acknowledgement is labelled, never missing
        assert 0 <= c["startup_ns"] < EDGE_LIMIT_NS, c
    assert s["startup_ns"] > 0 and s["never_recorded"] == 0
    # the clean stop ends the recorded window: no gap, both workers' runs ended by it
    assert s["clean_stop_rows"] > 0 and s["stops"] == 2
    assert all(run["ended_by"] == "stop" for run in r["runs"]) and len(r["runs"]) == 2
    assert not [g for g in r["gaps"] if g["detail"] == STOP_REASON]
    assert "disconnect" not in s["gaps_by_cause"] or s["gaps_by_cause"]["disconnect"] == 1


def test_every_symbol_day_without_a_fault_is_available(demo: Demo) -> None:
    r = demo.report
    faulted = {sym for g in r["gaps"] if g["counts_as"] == "missing" for sym in g["symbols"]}
    clean = [d for d in r["days"] if d["symbol"] not in faulted]
    assert clean, "the futures products had no fault"
    assert all(d["verdict"] == "available" for d in clean), clean
    assert len(r["days"]) == 26 and r["summary"]["verdicts"]["missing"] == 0


def test_each_worker_root_alone_expects_only_its_own_keys(demo: Demo) -> None:
    """The demo audits each writer root on its own: the other worker's keys (its sibling's)
    are not expected of it, and together the roots make up the whole archive."""
    keys: set[tuple[str, str]] = set()
    for root in ("demo-w0", "demo-w1"):
        one = build_report(demo.archive / root)
        assert one["expect"]["mode"] == "online"
        assert one["summary"]["never_recorded"] == 0, root
        mine = {(c["channel"], c["symbol"]) for c in one["channels"]}
        assert not mine & keys
        keys |= mine
    assert keys == {(c["channel"], c["symbol"]) for c in demo.report["channels"]}


def test_no_data_is_never_a_pass(demo: Demo) -> None:
    lo = demo.report["range"]["from_ns"]
    # a window with nothing recorded in it (the hour before the run)
    empty = _cli("--archive", str(demo.archive), "--quiet", "--from", str(lo - 3600 * S),
                 "--to", str(lo - 60 * S), "--fail-under", "99")
    assert empty.returncode == 3, empty.stdout + empty.stderr
    assert "verified coverage 0.000%" in empty.stdout and "Traceback" not in empty.stderr
    # a symbol that does not exist
    nope = _cli("--archive", str(demo.archive), "--quiet", "--symbols", "NOPE/USD",
                "--fail-under", "99")
    assert nope.returncode == 3 and "0.000%" in nope.stdout, nope.stdout + nope.stderr
    js = json.loads(_cli("--archive", str(demo.archive), "--json", "--quiet", "--symbols",
                         "NOPE/USD").stdout)
    assert js["channels"] and all(not c["recorded"] and c["state"] == "missing"
                                  for c in js["channels"])
    assert js["days"][0]["verdict"] == "missing"
    # an expected pair that was never recorded counts as missing next to the recorded ones
    exp = json.loads(_cli("--archive", str(demo.archive), "--json", "--quiet", "--expect",
                          "BTC/USD,NOPE/USD").stdout)
    missing = {c["channel"] for c in exp["channels"] if c["symbol"] == "NOPE/USD"}
    assert missing == {"book", "trade", "ohlc", "level3"}
    assert exp["summary"]["never_recorded"] == 4
    assert exp["summary"]["verified_coverage_pct"] < demo.report["summary"][
        "verified_coverage_pct"] - 2
    # and the real archive passes the same alert
    ok = _cli("--archive", str(demo.archive), "--quiet", "--fail-under", "99")
    assert ok.returncode == 0, ok.stdout + ok.stderr


def _attrs(tag: str) -> dict[str, str]:
    return dict(re.findall(r'([\w-]+)="([^"]*)"', tag))


def test_html_names_channels_true_extents_and_a_readable_axis(demo: Demo,
                                                              tmp_path: Path) -> None:
    r = demo.report
    page = render_html(r)
    lo, hi = r["range"]["from_ns"], r["range"]["to_ns"]
    svg = page[page.index('<svg id="timeline-svg"'):]
    svg = svg[:svg.index("</svg>")]
    bars = [_attrs(t) for t in re.findall(r'<rect class="gap"[^>]*>', svg)]
    assert len(bars) == len(r["gaps"]) == 3
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    left, width = 170, 1040  # the timeline's plot area (html._timeline)
    for g in r["gaps"]:
        (bar,) = [b for b in bars if b["data-cause"] == g["cause"]]
        assert bar["data-channel"] == g["channel"]
        # every bar is named by its channel: its lane, its label and its tooltip
        assert any(g["channel"] in t and "·" in t for t in texts), texts
        assert any(t.startswith(f"{g['channel']} {g['cause']}") for t in texts), texts
        assert g["channel"] in bar["data-tip"]
        # drawn at its true extent (a point gap at least 2 px)
        x0 = left + (g["effective_start_ns"] - lo) * width / (hi - lo)
        w = (g["effective_end_ns"] - g["effective_start_ns"]) * width / (hi - lo)
        assert abs(float(bar["x"]) - x0) < 0.2, (bar, g)
        assert abs(float(bar["width"]) - max(2.0, w)) < 0.2, (bar, g)
        assert float(bar["width"]) < 0.05 * width  # seconds, not a third of the run
    # the 45 s run's time axis: round seconds, a handful of readable HH:MM:SS labels
    ticks = time_ticks(lo, hi)
    assert 4 <= len(ticks) <= 10
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d", label) for _, label in ticks)
    assert all(t % (5 * S) == 0 for t, _ in ticks)
    assert all(f">{label}<" in svg for _, label in ticks)
    # the heatmap's columns are seconds too, not one hour
    assert r["heatmap"]["bucket_ns"] == S
    # rendered: no script error, the elements are there; a screenshot for a person to look at
    chrome = chromium()
    html_file = tmp_path / "demo.html"
    html_file.write_text(page.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    common = [chrome, *CHROME_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
              "--window-size=1400,1600"]
    dom = subprocess.run([*common, "--virtual-time-budget=3000", "--dump-dom",
                          html_file.as_uri()], capture_output=True, text=True, timeout=120,
                         check=False)
    assert dom.returncode == 0 and 'data-ready="1"' in dom.stdout, dom.stderr[-2000:]
    assert 'data-errors="[]"' in dom.stdout
    shot = tmp_path / "demo.png"
    subprocess.run([*common, f"--screenshot={shot}", html_file.as_uri()], capture_output=True,
                   timeout=120, check=False)
    assert shot.exists() and shot.stat().st_size > 20_000
