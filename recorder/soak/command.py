"""``recorder soak --minutes M [--seed S] [--workdir DIR] [--keep]``: chaos run + proof.

Prints the plan, what the orchestrator did, and one table of figures; every failed check is
listed after it. Exit 0 when nothing was missed, 1 on any miss, 2 when the soak could not run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["soak_command", "render"]


def render(result: object) -> None:
    """Print a :class:`~recorder.soak.run.SoakResult` as rich tables."""
    from rich.console import Console
    from rich.table import Table

    from recorder.soak.run import SoakResult

    assert isinstance(result, SoakResult)
    rep = result.report
    console = Console(width=None if sys.stdout.isatty() else 110)
    ok = "[green]ok[/green]"
    bad = "[red]MISS[/red]"
    t = Table(title=f"soak {result.plan.minutes} min — {'PASS' if rep.ok else 'FAIL'} "
                    f"({result.wall_s:.0f}s wall, workdir {result.workdir})")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("", justify="center")
    t.add_row("messages captured", f"{rep.messages:,}", ok if rep.messages else bad)
    t.add_row("truth market events", f"{rep.truth_events:,}", "")
    t.add_row("truth trades in capture windows", f"{rep.truth_trades_expected:,}", "")
    t.add_row("archive trade rows", f"{rep.archive_trades:,}", "")
    kinds = rep.per_kind()
    inj = sum(v[0] for v in kinds.values())
    det = sum(v[1] for k, v in kinds.items() if v[3])
    rec = sum(v[2] for k, v in kinds.items() if v[3])
    must = sum(v[0] for v in kinds.values() if v[3])
    t.add_row("faults injected / detected / recorded", f"{inj} / {det} / {rec} (of {must} "
              f"with an archive effect)", ok if det == rec == must else bad)
    t.add_row("workers SIGKILLed (slots skipped)", f"{result.kills} ({result.kills_skipped})",
              ok if result.kills else bad)
    t.add_row("events missing outside recorded gaps",
              f"{len(rep.missing_outside_gaps) + rep.verify_failed}",
              ok if not rep.missing_outside_gaps and not rep.verify_failed else bad)
    t.add_row("  (trades missing inside recorded gaps)", f"{rep.missing_inside_gaps}", "")
    dups = len(rep.duplicate_trades) + sum(rep.duplicate_rows.values())
    t.add_row("duplicate events", str(dups), ok if not dups else bad)
    t.add_row("unreadable files", f"{len(rep.unreadable)} of {rep.files_checked}",
              ok if not rep.unreadable else bad)
    pct = 100.0 * rep.heals_verified / rep.heals if rep.heals else 100.0
    t.add_row("books verified after each heal", f"{pct:.1f}% ({rep.heals_verified}/{rep.heals})",
              ok if not rep.unverified_heals else bad)
    pct = 100.0 * rep.backfill_present / rep.backfill_expected if rep.backfill_expected else 100.0
    t.add_row("backfilled trades", f"{pct:.1f}% ({rep.backfill_present}/{rep.backfill_expected})",
              ok if not rep.backfill_missing else bad)
    console.print(t)
    k = Table(title="faults per kind")
    for col in ("kind", "injected", "detected", "recorded", "expected effect"):
        k.add_column(col, justify="left" if col in ("kind", "expected effect") else "right")
    why: dict[str, set[str]] = {}
    for o in rep.outcomes:
        if not o.must and o.note:
            why.setdefault(o.kind, set()).add(o.note)
    for kind, (i, d, r, m) in kinds.items():
        k.add_row(kind, str(i), str(d) if m else "-", str(r) if m else "-",
                  "archive evidence" if m else "; ".join(sorted(why.get(kind, ())))
                  or "none (global checks)")
    console.print(k)
    for msg in rep.warnings:
        console.print(f"[yellow]warning:[/yellow] {msg}", soft_wrap=True)
    for msg in rep.misses:
        console.print(f"[red]miss:[/red] {msg}", soft_wrap=True)
    console.print(f"soak {'PASSED' if rep.ok else 'FAILED'}: {len(rep.misses)} misses")


@click.command("soak")
@click.option("--minutes", type=click.IntRange(1, 24 * 60), default=10, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep sim truth, config, logs and archive here (default: a temp dir, "
                   "removed after a passing run).")
@click.option("--keep", is_flag=True, help="Keep the temp workdir even when the soak passes.")
@click.option("--pairs", type=click.IntRange(8, 200), default=30, show_default=True)
def soak_command(minutes: int, seed: int, workdir: Path | None, keep: bool, pairs: int) -> None:
    """Run the recorder against the sim under every fault kind, kill -9 and disk pressure for
    MINUTES, then prove the archive against the sim's truth (exit 1 on any miss)."""
    from recorder.soak.run import SoakConfig, SoakError, run_soak
    from recorder.soak.schedule import ScheduleError

    try:
        result = run_soak(SoakConfig(minutes=minutes, seed=seed, workdir=workdir, keep=keep,
                                     pairs=pairs),
                          log=lambda m: click.echo(f"soak: {m}", err=True))
    except (SoakError, ScheduleError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    render(result)
    sys.exit(0 if result.report.ok else 1)
