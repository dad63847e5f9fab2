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
from tests.audit_helpers import Built, record_archive

PY = sys.executable

TOP_KEYS = {"audit_version", "archive", "roots", "generated_at", "range", "thresholds", "summary",
            "channels", "days", "hours", "gaps", "epochs", "trades", "ohlc", "verification"}
SUMMARY_KEYS = {"keys", "symbols", "window_ns", "covered_ns", "active_ns", "quiet_ns",
                "missing_ns", "backfilled_ns", "coverage_pct", "verified_coverage_pct",
                "verdicts", "gaps", "gaps_by_cause", "epochs", "desyncs", "resnapshots",
                "quarantines", "checksum_verification_pct", "trade_ids_missing",
                "ohlc_bars_mismatched"}


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
    for key in TOP_KEYS | SUMMARY_KEYS | set(r["channels"][0]) | set(r["gaps"][0]) \
            | set(r["days"][0]) | set(r["hours"][0]):
        assert f"`{key}`" in doc, f"{key} is not documented in docs/audit.md"
    pcts = [c["verified_coverage_pct"] for c in r["channels"]]
    assert pcts == sorted(pcts)  # worst first
    assert {d["verdict"] for d in r["days"]} <= {"available", "degraded", "missing"}
    assert r["verification"]["source"] == "live"


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
    for section in ("summary", "heatmap", "timeline", "worst", "verification", "days"):
        assert f'id="{section}"' in page


# ------------------------------------------------------------------ headless Chromium

_CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
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
_PROBE = """<script>(function(){var errs=[];function put(m){errs.push(String(m));
document.documentElement.setAttribute('data-errors',JSON.stringify(errs));}
window.addEventListener('error',function(e){put(e.message||'error');});
var ce=console.error;console.error=function(){put(Array.prototype.join.call(arguments,' '));
ce.apply(console,arguments);};
document.documentElement.setAttribute('data-errors','[]');})();</script>"""


def test_html_renders_in_headless_chromium(built: Built, tmp_path: Path) -> None:
    chrome = _chromium()
    page = render_html(build_report(built.archive))
    probed = page.replace("<head>", "<head>" + _PROBE, 1)
    html_file = tmp_path / "audit.html"
    html_file.write_text(probed, encoding="utf-8")
    profile = tmp_path / "profile"
    common = [chrome, *_CHROME_FLAGS, f"--user-data-dir={profile}", "--window-size=1366,900"]
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
