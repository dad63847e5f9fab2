"""``python -m benchmarks [--quick] [--only core,sim] [--no-write]``: run, print, record.

Writes the results table into BENCHMARKS.md (between generated-section markers) with the
date, machine and command, unless ``--no-write``. A suite that fails (its own self-check or a
server that did not answer) is reported and skipped; the others still run and are recorded,
and the exit status is 1.
"""

from __future__ import annotations

import argparse
import traceback
import sys
from pathlib import Path

from benchmarks.harness import Figure, render_table, write_report

SUITES = ("core", "sim", "archive", "capture", "receive", "query", "audit", "verify", "replay",
          "bookat", "cut", "capture_load", "stall")
#: Run when ``--only`` is not given: ``bookat`` is the book_at part of ``query`` on its own;
#: ``capture_load`` (recorder vs the load generator up to 100,000 msgs/s, several minutes)
#: runs only when asked for, as does ``stall`` (4 full-universe capture runs back to back).
DEFAULT_SUITES = tuple(s for s in SUITES if s not in ("bookat", "capture_load", "stall"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller workloads (smoke run)")
    parser.add_argument("--only", default=",".join(DEFAULT_SUITES),
                        help="comma list of suites")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SUITES))
    if unknown:
        parser.error(f"unknown suite(s): {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    figures: list[Figure] = []
    failed: list[str] = []
    for suite in SUITES:
        if suite not in chosen:
            continue
        try:
            figures += _run_suite(suite, args.quick)
        except Exception:  # noqa: BLE001 - one broken suite must not discard the others' figures
            traceback.print_exc()
            print(f"benchmarks: suite {suite!r} FAILED; its figures are not recorded",
                  file=sys.stderr)
            failed.append(suite)
    print(render_table(figures))
    if not args.no_write:
        command = "make bench" if not argv and len(sys.argv) <= 1 else \
            "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])
        write_report(Path(__file__).resolve().parent.parent / "BENCHMARKS.md", figures, command)
    return 1 if failed else 0


def _run_suite(suite: str, quick: bool) -> list[Figure]:
    """One suite's figures (imported lazily: each suite pulls in its own dependencies)."""
    if suite == "core":
        from benchmarks.core import run_core as run
    elif suite == "sim":
        from benchmarks.sim import run_sim as run
    elif suite == "archive":
        from benchmarks.archive import run_archive as run
    elif suite == "capture":
        from benchmarks.capture import run_capture as run
    elif suite == "receive":
        from benchmarks.receive import run_receive as run
    elif suite == "query":
        from benchmarks.query import run_query as run
    elif suite == "verify":
        from benchmarks.verify import run_verify as run
    elif suite == "replay":
        from benchmarks.replay import run_replay as run
    elif suite == "bookat":
        from benchmarks.query import run_bookat as run
    elif suite == "cut":
        from benchmarks.cut import run_cut as run
    elif suite == "stall":
        from benchmarks.capture import run_stall as run
    elif suite == "capture_load":
        from benchmarks.capture_load import run_capture_load as run
    else:
        from benchmarks.audit import run_audit as run
    return run(quick=quick)


if __name__ == "__main__":
    sys.exit(main())
