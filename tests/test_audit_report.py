"""``recorder audit`` outputs on a sim-derived archive: JSON keys, terminal table,
``--fail-under``, the daily job, and the HTML page rendered in headless Chromium (expected
elements present, no console errors, no external references, screenshot taken)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recorder.audit.command import run_daily_audit
from recorder.audit.html import render_html
from recorder.audit.report import build_report
from tests.audit_helpers import CHROME_FLAGS, PROBE, Built, chromium, record_archive

PY = sys.executable

TOP_KEYS = {"audit_version", "archive", "roots", "generated_at", "range", "thresholds", "expect",
            "summary", "channels", "days", "hours", "heatmap", "gaps", "runs", "epochs",
            "trades", "ohlc", "rejects", "verification", "cross_source"}
SUMMARY_KEYS = {"keys", "symbols", "window_ns", "measured_ns", "startup_ns", "shutdown_ns",
                "covered_ns", "active_ns", "quiet_ns", "missing_ns", "backfilled_ns",
                "coverage_pct", "verified_coverage_pct", "never_recorded", "verdicts", "gaps",
                "gaps_by_cause", "stops", "clean_stop_rows", "epochs", "desyncs", "resnapshots",
                "quarantines", "checksum_verification_pct", "trade_ids_missing",
                "ohlc_bars_mismatched", "rejects"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return record_archive(tmp_path_factory.mktemp("audit-report"), messages=40_000)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "recorder", "audit", *args], capture_output=True,
                          text=True, timeout=120)


def test_json_keys_are_the_documented_ones(built: Built) -> None:
    out = _cli("--archive", str(built.archive), "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert set(r) == TOP_KEYS
    assert set(r["summary"]) == SUMMARY_KEYS
    doc = (Path(__file__).parent.parent / "docs" / "audit.md").read_text()
    assert r["audit_version"] == 2
    for key in TOP_KEYS | SUMMARY_KEYS | set(r["channels"][0]) | set(r["gaps"][0]) \
            | set(r["days"][0]) | set(r["hours"][0]) | set(r["runs"][0]) | set(r["expect"]) \
            | set(r["heatmap"]) | set(r["heatmap"]["cells"][0]) | set(r["cross_source"]):
        assert f"`{key}`" in doc, f"{key} is not documented in docs/audit.md"
    pcts = [c["verified_coverage_pct"] for c in r["channels"]]
    assert pcts == sorted(pcts)  # worst first
    assert {d["verdict"] for d in r["days"]} <= {"available", "degraded", "missing"}
    assert r["verification"]["source"] == "live"
    # no FIX recording: nothing to compare, and the section says so
    assert (r["cross_source"]["symbols"], r["cross_source"]["disagreements"]) == (0, 0)


def test_terminal_fail_under_and_symbols(built: Built) -> None:
    ok = _cli("--archive", str(built.archive), "--quiet", "--fail-under", "1")
    assert ok.returncode == 0, ok.stderr
    assert "verified coverage" in ok.stdout and "worst" in ok.stdout
    bad = _cli("--archive", str(built.archive), "--quiet", "--fail-under", "99.99")
    assert bad.returncode == 3 and "below --fail-under" in bad.stderr
    one = _cli("--archive", str(built.archive), "--json", "--symbols", "BTC/USD")
    assert {c["symbol"] for c in json.loads(one.stdout)["channels"]} == {"BTC/USD"}


def test_replay_verification_feeds_the_report(built: Built) -> None:
    from recorder.verify import verify_archive

    r = build_report(built.archive, verify_report=verify_archive(built.archive))
    assert r["verification"]["source"] == "replay"
    assert r["verification"]["messages_checked"] > 0 and r["verification"]["failed"] == 0


def test_daily_audit_writes_json_and_html(built: Built, tmp_path: Path) -> None:
    day = json.loads(_cli("--archive", str(built.archive), "--json").stdout)["range"]["from"][:10]
    paths = run_daily_audit(built.archive, tmp_path / "audits", day=day)
    r = json.loads(paths["json"].read_text())
    assert r["range"]["from"] == f"{day}T00:00:00Z" and r["channels"]
    assert paths["html"].read_text().startswith("<!DOCTYPE html>")


def test_html_is_self_contained(built: Built) -> None:
    page = render_html(build_report(built.archive))
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    for section in ("summary", "heatmap", "timeline", "worst", "verification", "cross-source",
                    "days"):
        assert f'id="{section}"' in page


def test_html_cross_source_section(built: Built) -> None:
    report = build_report(built.archive)
    # no FIX recording here: the section says so rather than showing an empty table
    assert "no symbol was recorded over both WebSocket and FIX" in render_html(report)
    report["cross_source"] = {
        "symbols": 1, "comparisons": 40, "skipped": 2, "disagreements": 1,
        "text": "cross-source (WebSocket vs FIX books): 1 symbols, 40 comparisons, "
                "1 disagreements",
        "channels": {"book": {"symbols": 1, "comparisons": 40, "skipped": 2,
                              "disagreements": 1, "per_symbol": []}},
        "rows": [{"symbol": "BTC/USD", "channel": "book", "time_ns": 1_735_689_600 * 10**9,
                  "side": "bid", "level": 3, "ws_price": "97000.1", "ws_qty": "0.5",
                  "fix_price": None, "fix_qty": None, "kind": "missing_fix"}]}
    page = render_html(report)
    assert 'id="cross-rows"' in page and "missing_fix" in page and "97000.1" in page
    assert "2025-01-01 00:00:00" in page and "None" not in page.split('id="cross-rows"')[1]


def test_html_renders_in_headless_chromium(built: Built, tmp_path: Path) -> None:
    chrome = chromium()
    page = render_html(build_report(built.archive))
    probed = page.replace("<head>", "<head>" + PROBE, 1)
    html_file = tmp_path / "audit.html"
    html_file.write_text(probed, encoding="utf-8")
    profile = tmp_path / "profile"
    common = [chrome, *CHROME_FLAGS, f"--user-data-dir={profile}", "--window-size=1366,900"]
    dom = subprocess.run([*common, "--virtual-time-budget=3000", "--dump-dom",
                          html_file.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    assert 'data-ready="1"' in text, "the page's script did not run to the end"
    errors = re.search(r'data-errors="([^"]*)"', text)
    assert errors is not None and errors.group(1) == "[]", \
        errors.group(1) if errors else text[:500]
    for element in ('id="heatmap-svg"', 'id="timeline-svg"', 'id="worst-table"',
                    'id="trades-table"', 'id="days-table"', 'class="cell"', 'class="gap"'):
        assert element in text, element
    shot = tmp_path / "audit.png"
    snap = subprocess.run([*common, f"--screenshot={shot}", html_file.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert snap.returncode == 0 and shot.exists() and shot.stat().st_size > 20_000, snap.stderr
    keep = os.environ.get("AUDIT_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)


def test_an_archive_that_recorded_nothing_is_zero_and_the_page_says_why(tmp_path: Path) -> None:
    from recorder.archive.session import ArchiveSession

    session = ArchiveSession(tmp_path / "empty", host="audit-test")
    session.start()
    session.close("operator")
    out = _cli("--archive", str(tmp_path / "empty"), "--quiet", "--fail-under", "1")
    assert out.returncode == 3 and "verified coverage 0.000%" in out.stdout, out
    assert "nothing was recorded in this range" in out.stdout
    t0 = 1_767_225_600_000_000_000  # 2026-01-01
    r = build_report(tmp_path / "empty", lo=t0, hi=t0 + 3_600_000_000_000)
    assert r["channels"] == [] and r["summary"]["verified_coverage_pct"] == 0.0
    assert r["summary"]["checksum_verification_pct"] is None  # nothing checked: not 100 %
    page = render_html(r)
    for section in ("heatmap", "timeline", "worst", "days"):
        body = page[page.index(f'id="{section}"'):]
        body = body[:body.index("</section>")]
        assert "Nothing was recorded in this range" in body, section
        assert "<td" not in body, section
    verification = page[page.index('id="verification"'):]
    for why in ("nothing to verify", "no trade was recorded in this range",
                "No 1-minute OHLC bar was recorded", "No frame was rejected"):
        assert why in verification, why


def test_rejects_are_counted_from_the_rejects_dataset(tmp_path: Path) -> None:
    from recorder.query.api import Archive
    from tests.audit_helpers import record_root

    root = record_root(tmp_path, tmp_path / "a" / "h-w0", "BTC/USD,ETH/USD", 5, messages=4000,
                       faults="malformed:channel=book,rate=0.05")
    with Archive(root) as ar:
        want = ar.sql("SELECT stream, stage, reason, count(*) AS n FROM rejects "
                      "GROUP BY ALL ORDER BY ALL").collect()
    expected = {(a, b, c): n for a, b, c, n in want.iter_rows()}
    assert expected, "the malformed frames must have been rejected"
    r = build_report(root)
    got = {(x["stream"], x["stage"], x["reason"]): x["rejects"] for x in r["rejects"]}
    assert got == expected
    assert r["summary"]["rejects"] == sum(expected.values())
    page = render_html(r)
    assert 'id="rejects-table"' in page and "malformed" in page.lower()


def test_expected_pairs_that_were_never_recorded_are_missing(built: Built) -> None:
    base = build_report(built.archive, expect="recorded")
    r = build_report(built.archive, expect="BTC/USD,NOPE/USD,book:ALSO/USD")
    never = {(c["channel"], c["symbol"]) for c in r["channels"] if not c["recorded"]}
    spot = {c["channel"] for c in base["channels"] if not c["channel"].startswith("futures_")}
    assert never == {(ch, "NOPE/USD") for ch in spot} | {("book", "ALSO/USD")}
    for c in r["channels"]:
        if not c["recorded"]:
            assert c["verified_coverage_pct"] == 0.0 and c["state"] == "missing"
            assert c["missing_by_reason"]["not_subscribed"] == c["window_ns"]
    assert r["expect"] == {"mode": "list", "symbols": ["BTC/USD", "NOPE/USD"],
                           "keys": ["book:ALSO/USD"], "never_recorded": len(never)}
    assert r["summary"]["verified_coverage_pct"] < base["summary"]["verified_coverage_pct"]
    bad = _cli("--archive", str(built.archive), "--quiet", "--expect", "book:")
    assert bad.returncode == 2 and "--expect" in bad.stderr and "Traceback" not in bad.stderr


def test_time_axes_tick_at_round_times_for_any_span() -> None:
    from recorder.audit.html import time_ticks
    from recorder.audit.report import heatmap_bucket

    s = 1_000_000_000
    t0 = 1_796_654_472_117_098_632  # 14:41:12.117 UTC, a run's first proof
    run = time_ticks(t0, t0 + 45 * s)  # a 45 s run: every 5 s, HH:MM:SS
    assert [label for _, label in run] == ["14:41:15", "14:41:20", "14:41:25", "14:41:30",
                                           "14:41:35", "14:41:40", "14:41:45", "14:41:50",
                                           "14:41:55"]
    assert heatmap_bucket(t0, t0 + 45 * s) == s
    hours = time_ticks(t0, t0 + 3 * 3600 * s)  # 3 h: every 30 min, HH:MM, the date once
    assert [label for _, label in hours][:3] == ["12-07 15:00", "15:30", "16:00"]
    week = time_ticks(t0, t0 + 7 * 86400 * s)  # a week: one tick a day, dates
    assert len(week) == 7 and all(re.fullmatch(r"\d{4}-\d\d-\d\d", lab) for _, lab in week)
    assert all(t % (86400 * s) == 0 for t, _ in week)
    assert heatmap_bucket(t0, t0 + 7 * 86400 * s) == 3 * 3600 * s
    assert heatmap_bucket(t0, t0 + 86400 * s) == 1800 * s
