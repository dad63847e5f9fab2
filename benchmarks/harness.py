"""Timing, machine facts and the BENCHMARKS.md table: the parts every benchmark shares.

Each figure is the median of several repetitions of a workload run in this process on one
core, frames already in memory. Timings are wall-clock ``perf_counter_ns`` of the whole loop
(no per-message clock reads inside the measured region).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["Figure", "measure_rate", "machine_summary", "write_report"]

REPORT_BEGIN = "<!-- bench:begin -->"
REPORT_END = "<!-- bench:end -->"


@dataclass(slots=True)
class Figure:
    """One row of the results table."""

    name: str
    value: float
    unit: str
    target: str = ""
    peer: str = ""
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    def verdict(self) -> str:
        """``met``/``SHORT`` against a ``>= N`` or ``<= N`` target, blank when there is none."""
        for op in (">=", "<="):
            if self.target.startswith(op):
                threshold = float(self.target[2:].replace(",", "").split()[0])
                ok = self.value >= threshold if op == ">=" else self.value <= threshold
                return "met" if ok else "SHORT"
        return ""


def measure_rate(run_once: Callable[[], int], *, repeats: int = 5, warmup: int = 1,
                 min_seconds: float = 0.0) -> float:
    """Median items/s of ``run_once``, which processes the workload and returns its item count.

    ``min_seconds``: each repetition calls ``run_once`` again until it has run that long (a
    small workload, such as a 510-frame capture replayed in 3 ms, is otherwise timed over a
    span where timer and scheduler noise are a large part of the figure)."""
    for _ in range(warmup):
        run_once()
    rates = []
    for _ in range(repeats):
        count = 0
        start = time.perf_counter_ns()
        while True:
            count += run_once()
            elapsed = time.perf_counter_ns() - start
            if elapsed >= min_seconds * 1e9:
                break
        rates.append(count / (elapsed / 1e9))
    return statistics.median(rates)


def machine_summary() -> str:
    """CPU model, cores, memory and Python version, for the report header."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{mem_kib / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        memory = "unknown memory"
    return (f"{cpu}, {os.cpu_count()} cores, {memory}, "
            f"{platform.python_implementation()} {platform.python_version()}")


def _number(value: float) -> str:
    """Thousands separators for large values, three significant digits for small ones."""
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _row(fig: Figure, measured: str) -> str:
    return (f"| {fig.name} | {_number(fig.value)} {fig.unit} | {fig.target} | {fig.verdict()} "
            f"| {fig.peer} | {fig.note} | {measured} |")


_HEADER = ("| figure | ours | target | verdict | peer (same run) | note | measured |\n"
           "|---|---|---|---|---|---|---|")


def render_table(figures: list[Figure], measured: str = "now") -> str:
    """Markdown table: figure, ours, target, verdict, peer, note, when measured."""
    return "\n".join([_HEADER, *(_row(fig, measured) for fig in figures)])


def _existing_rows(section: str) -> dict[str, str]:
    """Rows of a previously generated table, keyed by figure name."""
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = line.split("|")
        if len(cells) > 3 and line.startswith("| ") and not line.startswith("| figure "):
            rows[cells[1].strip()] = line
    return rows


def write_report(path: Path, figures: list[Figure], command: str) -> str:
    """Merge this run's rows into the generated section of BENCHMARKS.md and return it.

    Rows are keyed by figure name: a figure measured now replaces its old row; rows of suites
    not run this time are kept with the date they were measured, so a partial run
    (``--only core``) never erases other figures.
    """
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    old: dict[str, str] = {}
    if REPORT_BEGIN in text and REPORT_END in text:
        old = _existing_rows(text.partition(REPORT_BEGIN)[2].partition(REPORT_END)[0])
    rows = dict(old)
    for fig in figures:
        rows[fig.name] = _row(fig, stamp)
    section = "\n".join([
        REPORT_BEGIN,
        f"Last run {stamp}: `{command}` on {machine_summary()}.",
        "",
        _HEADER,
        *rows.values(),
        REPORT_END,
    ])
    if REPORT_BEGIN in text and REPORT_END in text:
        head, _, rest = text.partition(REPORT_BEGIN)
        _, _, tail = rest.partition(REPORT_END)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
    return section
