"""The benchmark report writer keeps figures from suites that were not re-run."""

from __future__ import annotations

from pathlib import Path

from benchmarks.harness import Figure, write_report


def test_partial_runs_merge_rows(tmp_path: Path) -> None:
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("# Benchmarks\n\nintro stays\n")
    write_report(report, [Figure("a", 10, "msgs/s", ">= 5"), Figure("b", 1, "ms")], "first")
    write_report(report, [Figure("a", 3, "msgs/s", ">= 5")], "second")
    text = report.read_text()
    assert "intro stays" in text and "`second`" in text
    rows = [line for line in text.splitlines() if line.startswith("| a ") or line.startswith("| b ")]
    assert len(rows) == 2
    assert "| a | 3 msgs/s | >= 5 | SHORT |" in rows[0]
    assert rows[1].startswith("| b | 1 ms |")


def test_verdicts_and_small_numbers(tmp_path: Path) -> None:
    assert Figure("x", 40, "ms", "<= 50").verdict() == "met"
    assert Figure("x", 60, "ms", "<= 50").verdict() == "SHORT"
    assert Figure("x", 9, "B", "").verdict() == ""
    report = tmp_path / "B.md"
    write_report(report, [Figure("t", 0.125, "s")], "c")
    assert "| t | 0.125 s |" in report.read_text()
