"""``recorder audit``: the command, the terminal summary, and the daily job entry point."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from recorder.audit.coverage import Thresholds
from recorder.audit.expect import ExpectError, parse_expect
from recorder.audit.load import AuditError, committed_roots
from recorder.audit.report import Progress, build_report
from recorder.remote import resolve
from recorder.roots import ArchiveRootError, PathSpec

__all__ = ["audit_command", "run_daily_audit", "parse_time", "render_terminal"]


def parse_time(text: str) -> int:
    """Int ns from ``YYYY-MM-DD``, an ISO-8601 time (UTC unless an offset is given) or an
    integer of ns since the epoch."""
    t = text.strip()
    if t.lstrip("-").isdigit():
        return int(t)
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not a date, ISO time or int ns") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def _fmt_s(ns: int) -> str:
    s = ns / 1e9
    if s < 120:
        return f"{s:.1f}s"
    if s < 7200:
        return f"{s / 60:.1f}m"
    return f"{s / 3600:.1f}h"


def render_terminal(report: dict[str, Any], *, limit: int = 15) -> None:
    """A concise rich summary: headline figures, worst keys first, verdicts, causes."""
    from rich.console import Console
    from rich.table import Table

    con = Console(stderr=False)
    s = report["summary"]
    r = report["range"]
    exp = report.get("expect", {})
    con.print(f"[bold]audit[/bold] {report['archive']}  {r['from']} -> {r['to']}  "
              f"{s['symbols']} symbols, {s['keys']} channel/symbol keys "
              f"(expect {exp.get('mode', 'recorded')}"
              + (f", {s['never_recorded']} never recorded" if s.get("never_recorded") else "")
              + ")")
    ck = s["checksum_verification_pct"]
    con.print(f"verified coverage [bold]{s['verified_coverage_pct']:.3f}%[/bold]  "
              f"(covered {s['coverage_pct']:.3f}%, quiet {_fmt_s(s['quiet_ns'])}, missing "
              f"{_fmt_s(s['missing_ns'])}, backfilled {_fmt_s(s['backfilled_ns'])}; not measured:"
              f" start-up {_fmt_s(s['startup_ns'])}, shut-down {_fmt_s(s['shutdown_ns'])})  "
              f"checksums {'n/a' if ck is None else f'{ck:.3f}%'} "
              f"({report['verification']['source']})")
    v = s["verdicts"]
    con.print(f"symbol-days: [green]{v['available']} available[/green], [yellow]{v['degraded']} "
              f"degraded[/yellow], [red]{v['missing']} missing[/red]; gaps {s['gaps']}"
              + "".join(f", {k} {n}" for k, n in s["gaps_by_cause"].items())
              + f"; clean stops {s['stops']}; trade ids missing {s['trade_ids_missing']}; "
              f"OHLC bars mismatched {s['ohlc_bars_mismatched']}; rejected frames "
              f"{s['rejects']}")
    if report.get("cross_source"):
        con.print(report["cross_source"]["text"])
    if not report["channels"]:
        con.print("[red]nothing was recorded in this range and nothing is expected: 0 % "
                  "covered[/red] (name what should be there with --expect or --symbols)")
        return
    t = Table(title=f"worst {min(limit, len(report['channels']))} of "
                    f"{len(report['channels'])} (verified coverage ascending)")
    for col, just in (("symbol", "left"), ("channel", "left"), ("verified %", "right"),
                      ("quiet", "right"), ("missing", "right"), ("mostly", "left"),
                      ("gaps", "right"), ("state", "left")):
        t.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
    for c in report["channels"][:limit]:
        m = c["missing_by_reason"]
        why = max(m, key=lambda k: m[k]) if c["missing_ns"] else ""
        colour = "red" if c["verified_coverage_pct"] < report["thresholds"]["usable_pct"] else (
            "yellow" if c["verified_coverage_pct"] < report["thresholds"]["available_pct"]
            else "green")
        t.add_row(c["symbol"], c["channel"], f"[{colour}]{c['verified_coverage_pct']:.2f}[/]",
                  _fmt_s(c["quiet_ns"]), _fmt_s(c["missing_ns"]), why, str(c["gaps"]),
                  c["state"] if c.get("recorded", True) else "never recorded")
    con.print(t)


@contextmanager
def _rich_progress(enabled: bool) -> Iterator[Progress | None]:
    """The audit's stages as progress bars (count, rate, ETA) on a terminal's stderr; the
    per-query steps share one bar."""
    from recorder.progress import progress_steps

    with progress_steps(enabled=enabled) as bars:
        if bars is None:
            yield None
            return

        def note(step: str, done: int, total: int) -> None:
            bars("queries" if step.startswith("query") else step, done, total)

        yield note


def run_daily_audit(archive: PathSpec, out_dir: Path, *, day: str | None = None,
                    thresholds: Thresholds | None = None,
                    expect: str | None = None) -> dict[str, Path]:
    """Audit one UTC day of ``archive`` (a root, a parent of roots or several paths, audited
    as one archive; see :func:`recorder.audit.report.build_report`) and write ``audit-<day>.json`` and ``audit-<day>.html``
    into ``out_dir`` (created if needed; files replaced atomically). ``day`` defaults to
    yesterday (UTC), which is what a daily job running after midnight wants. Returns the paths
    written. Raises on an unreadable archive; a day that recorded nothing produces a report
    of 0 % (``expect``: see ``--expect``; default ``auto``: the pairs online that day, for a
    capture archive).

    For the capture service's APScheduler (a cron trigger shortly after 00:00 UTC)::

        sched.add_job(run_daily_audit, CronTrigger(hour=0, minute=20),
                      args=[archive_root, archive_root / "audits"], id="audit")
    """
    from recorder.audit.html import render_html

    if day is None:
        now = datetime.now(timezone.utc)
        day = datetime.fromtimestamp(now.timestamp() - 86400, timezone.utc).strftime("%Y-%m-%d")
    lo = parse_time(day)
    report = build_report(archive, lo=lo, hi=lo + 86_400_000_000_000,
                          thresholds=thresholds, expect=expect)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"audit-{day}.json", "html": out / f"audit-{day}.html"}
    _atomic_text(paths["json"], json.dumps(report, indent=1))
    _atomic_text(paths["html"], render_html(report))
    return paths


def _verify_roots(roots: list[Path]) -> dict[str, Any]:
    """``recorder verify`` of every root, merged into one report: lists (``per``,
    ``failures``) concatenated, counts summed, anything else from the first root."""
    from recorder.verify import verify_archive

    merged: dict[str, Any] = {}
    for root in roots:
        one = verify_archive(root)
        for k, v in one.items():
            if isinstance(v, list):
                merged.setdefault(k, []).extend(v)
            elif isinstance(v, int) and not isinstance(v, bool):
                merged[k] = merged.get(k, 0) + v
            else:
                merged.setdefault(k, v)
    return merged


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


@click.command("audit")
@click.option("--archive", "archive", required=True, multiple=True, type=str,
              help="An archive root, or a parent of roots (capture writes one per worker), or "
                   "an s3://bucket/prefix that recorder sync filled; repeat to audit several "
                   "as one archive.")
@click.option("--from", "from_", default=None, help="Start (YYYY-MM-DD, ISO time or int ns).")
@click.option("--to", "to", default=None, help="End, exclusive (same forms).")
@click.option("--symbols", default=None,
              help="Comma list of symbols (default: all); each is expected to be recorded.")
@click.option("--expect", "expect", default="auto", show_default=True,
              help="What should have been recorded (missing if not): auto (online for a capture "
                   "archive, else recorded), recorded, online (every spot pair online in the "
                   "range, on every spot channel recorded), or a comma list of SYMBOL and "
                   "CHANNEL:SYMBOL.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--html", "html_path", type=click.Path(path_type=Path), default=None,
              help="Write a self-contained HTML report to this file.")
@click.option("--fail-under", type=float, default=None,
              help="Exit 3 when verified coverage (%) is below this.")
@click.option("--verify", "run_verify", is_flag=True,
              help="Replay-verify every checksum (recorder verify) instead of live counts.")
@click.option("--verify-report", type=click.Path(path_type=Path, exists=True), default=None,
              help="Use a saved `recorder verify --json` result.")
@click.option("--available-pct", type=float, default=99.0, show_default=True)
@click.option("--usable-pct", type=float, default=50.0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def audit_command(archive: tuple[str, ...], from_: str | None, to: str | None, symbols: str | None,
                  expect: str, as_json: bool, html_path: Path | None, fail_under: float | None,
                  run_verify: bool, verify_report: Path | None, available_pct: float,
                  usable_pct: float, quiet: bool) -> None:
    """Coverage audit: quiet vs missing time, gaps, epochs, continuity, verified coverage.
    A range, symbol or channel with no recording is missing (0 %), never 100 %."""
    try:
        expectation = parse_expect(expect)
    except ExpectError as exc:
        raise click.BadParameter(str(exc), param_hint="'--expect'") from None
    try:
        roots = committed_roots(resolve(list(archive)))
    except ArchiveRootError as exc:
        raise click.BadParameter(str(exc), param_hint="'--archive'") from None
    except OSError as exc:  # an s3:// store out of reach
        raise click.ClickException(f"cannot read the archive: {exc}") from None
    except AuditError as exc:
        raise click.ClickException(str(exc)) from None
    vr = None
    if verify_report is not None:
        vr = json.loads(verify_report.read_text())
    elif run_verify:
        vr = _verify_roots(roots)
    lo = parse_time(from_) if from_ else None
    hi = parse_time(to) if to else None
    if lo is not None and hi is not None and hi <= lo:
        raise click.BadParameter(f"--to ({to}) must be after --from ({from_})",
                                 param_hint="'--to'")
    syms = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
    th = Thresholds(available_pct=available_pct, usable_pct=usable_pct)
    try:
        with _rich_progress(not quiet) as note:
            report = build_report(roots, lo=lo, hi=hi, symbols=syms, thresholds=th,
                                  verify_report=vr, progress=note, expect=expectation)
    except AuditError as exc:
        raise click.ClickException(str(exc)) from None
    if html_path is not None:
        from recorder.audit.html import render_html

        _atomic_text(html_path, render_html(report))
    if as_json:
        click.echo(json.dumps(report))
    else:
        render_terminal(report)
        if html_path is not None:
            click.echo(f"HTML report: {html_path}")
    pct = report["summary"]["verified_coverage_pct"]
    if fail_under is not None and pct < fail_under:
        click.echo(f"verified coverage {pct:.3f}% is below --fail-under {fail_under}%",
                   err=True)
        sys.exit(3)
