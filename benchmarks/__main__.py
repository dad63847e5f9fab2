"""``python -m benchmarks [--quick] [--only core,sim] [--no-write]``: run, print, record.

Writes the results table into BENCHMARKS.md (between generated-section markers) with the
date, machine and command, unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.harness import Figure, render_table, write_report

SUITES = ("core", "sim", "archive", "capture", "query", "audit")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller workloads (smoke run)")
    parser.add_argument("--only", default=",".join(SUITES), help="comma list of suites")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SUITES))
    if unknown:
        parser.error(f"unknown suite(s): {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    figures: list[Figure] = []
    if "core" in chosen:
        from benchmarks.core import run_core

        figures += run_core(quick=args.quick)
    if "sim" in chosen:
        from benchmarks.sim import run_sim

        figures += run_sim(quick=args.quick)
    if "archive" in chosen:
        from benchmarks.archive import run_archive

        figures += run_archive(quick=args.quick)
    if "capture" in chosen:
        from benchmarks.capture import run_capture

        figures += run_capture(quick=args.quick)
    if "query" in chosen:
        from benchmarks.query import run_query

        figures += run_query(quick=args.quick)
    if "audit" in chosen:
        from benchmarks.audit import run_audit

        figures += run_audit(quick=args.quick)
    print(render_table(figures))
    if not args.no_write:
        command = "make bench" if not argv and len(sys.argv) <= 1 else \
            "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])
        write_report(Path(__file__).resolve().parent.parent / "BENCHMARKS.md", figures, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
