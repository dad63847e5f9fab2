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
        """``met``/``short`` against a ``>= N`` target, blank when there is none."""
        if not self.target.startswith(">="):
            return ""
        threshold = float(self.target[2:].replace(",", "").split()[0])
        return "met" if self.value >= threshold else "SHORT"


def measure_rate(run_once: Callable[[], int], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median items/s of ``run_once``, which processes the workload and returns its item count."""
    for _ in range(warmup):
        run_once()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        count = run_once()
        elapsed = time.perf_counter_ns() - start
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


def render_table(figures: list[Figure]) -> str:
    """Markdown table: figure, ours, target, verdict, peer, note."""
    lines = ["| figure | ours | target | verdict | peer (same run) | note |",
             "|---|---|---|---|---|---|"]
    for fig in figures:
        lines.append(f"| {fig.name} | {fig.value:,.0f} {fig.unit} | {fig.target} | {fig.verdict()} "
                     f"| {fig.peer} | {fig.note} |")
    return "\n".join(lines)


def write_report(path: Path, figures: list[Figure], command: str) -> str:
    """Replace the generated section of BENCHMARKS.md (between markers) and return it."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join([
        REPORT_BEGIN,
        f"Generated {stamp} by `{command}` on {machine_summary()}.",
        "",
        render_table(figures),
        REPORT_END,
    ])
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if REPORT_BEGIN in text and REPORT_END in text:
        head, _, rest = text.partition(REPORT_BEGIN)
        _, _, tail = rest.partition(REPORT_END)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
    return section
