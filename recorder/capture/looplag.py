"""Event-loop stall metric: how late the loop runs a timer (its *lag*).

:class:`LoopLagMonitor` sleeps ``interval_s`` in a loop and records how much later than asked
it woke up. Anything that holds the loop's thread (a synchronous commit, a long decode, the
GIL held by another thread) shows up as lag. It keeps the maximum since start, the maximum
since the last :meth:`~LoopLagMonitor.snapshot` (one status interval), and a cumulative
histogram (Prometheus' ``le`` buckets) that the supervisor exports as
``recorder_event_loop_lag_seconds``.

On a shared machine the lag also includes time the OS gave to other processes (and time
the loop waited for the GIL). The share of a stall the loop's own work accounts for is measured beside it
(``loop_cpu_max_s``, ``loop_cpu_window_max_s``): the smaller of the lag and the loop
thread's CPU time (:func:`time.thread_time`) between the two timer runs. Another process
or thread taking the CPU or the GIL does not add to it (it is at most that CPU time), so
it bounds what the capture itself holds the loop for whatever else runs on the machine; on
a machine with CPU to spare it equals the lag whenever the loop was busy. (A loop busy
all the time with short callbacks has CPU time between two runs of its timer of about
one interval, but little lag: the minimum keeps that out.) The commit cut alone is also
measured
(:attr:`recorder.capture.writer.WriterStats.commit_cut_cpu_s_max`).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["LoopLagMonitor", "LAG_BUCKETS_S"]

#: Upper bounds (seconds) of the lag histogram's buckets (+Inf implied).
LAG_BUCKETS_S: Final = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(slots=True)
class LoopLagMonitor:
    """Periodic timer on the running loop measuring its lag (see module docstring).

    ``committing``: whether a commit is in flight; the longest lag is also kept separately
    for samples taken while one was (``max_committing_s``) and while none was
    (``max_idle_s``), so one run shows what commits add to the loop's stalls."""

    interval_s: float = 0.01
    committing: Callable[[], bool] | None = None
    max_s: float = 0.0
    max_committing_s: float = 0.0
    max_idle_s: float = 0.0
    window_max_s: float = 0.0
    window_committing_s: float = 0.0
    window_idle_s: float = 0.0
    last_s: float = 0.0
    #: the loop's own share of a lag (the lag, at most the loop thread's CPU seconds between
    #: the two timer runs): longest since start, in the current window, and while a commit
    #: was in flight
    cpu_max_s: float = 0.0
    cpu_window_max_s: float = 0.0
    cpu_committing_max_s: float = 0.0
    count: int = 0
    sum_s: float = 0.0
    #: per bucket of :data:`LAG_BUCKETS_S` (and +Inf last): samples at or below its bound
    #: and above the previous one (not cumulative; :meth:`snapshot` makes it cumulative)
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LAG_BUCKETS_S) + 1))

    def record(self, lag_s: float, committing: bool = False) -> None:
        """Count one measured lag (``committing``: a commit was in flight)."""
        lag_s = max(0.0, lag_s)
        self.last_s = lag_s
        self.max_s = max(self.max_s, lag_s)
        if committing:
            self.max_committing_s = max(self.max_committing_s, lag_s)
            self.window_committing_s = max(self.window_committing_s, lag_s)
        else:
            self.max_idle_s = max(self.max_idle_s, lag_s)
            self.window_idle_s = max(self.window_idle_s, lag_s)
        self.window_max_s = max(self.window_max_s, lag_s)
        self.count += 1
        self.sum_s += lag_s
        self.buckets[bisect.bisect_left(LAG_BUCKETS_S, lag_s)] += 1

    def record_cpu(self, cpu_s: float, lag_s: float, committing: bool = False) -> None:
        """Count one lag's share of the loop's own work: ``lag_s``, at most ``cpu_s`` (the
        loop thread's CPU seconds between the two timer runs)."""
        cpu_s = max(0.0, min(cpu_s, lag_s))
        self.cpu_max_s = max(self.cpu_max_s, cpu_s)
        self.cpu_window_max_s = max(self.cpu_window_max_s, cpu_s)
        if committing:
            self.cpu_committing_max_s = max(self.cpu_committing_max_s, cpu_s)

    async def run(self) -> None:
        """Measure until cancelled (on the loop's thread: its CPU clock is this thread's)."""
        loop = asyncio.get_running_loop()
        probe = self.committing
        cpu_clock = time.thread_time
        while True:
            t0 = loop.time()
            c0 = cpu_clock()
            busy = probe is not None and probe()
            await asyncio.sleep(self.interval_s)
            c1 = cpu_clock()
            busy = busy or (probe is not None and probe())
            lag = loop.time() - t0 - self.interval_s
            self.record(lag, busy)
            self.record_cpu(c1 - c0, lag, busy)

    def snapshot(self) -> dict[str, Any]:
        """The status fields (and start a new window for ``loop_lag_window_max_s``)."""
        cumulative, acc = [], 0
        for n in self.buckets:
            acc += n
            cumulative.append(acc)
        out = {"loop_lag_max_s": round(self.max_s, 6),
               "loop_lag_window_max_s": round(self.window_max_s, 6),
               "loop_lag_committing_max_s": round(self.max_committing_s, 6),
               "loop_lag_idle_max_s": round(self.max_idle_s, 6),
               "loop_lag_window_committing_max_s": round(self.window_committing_s, 6),
               "loop_lag_window_idle_max_s": round(self.window_idle_s, 6),
               "loop_lag_last_s": round(self.last_s, 6),
               "loop_cpu_max_s": round(self.cpu_max_s, 6),
               "loop_cpu_window_max_s": round(self.cpu_window_max_s, 6),
               "loop_cpu_committing_max_s": round(self.cpu_committing_max_s, 6),
               "loop_lag_count": self.count, "loop_lag_sum_s": round(self.sum_s, 6),
               "loop_lag_buckets": [[b, c] for b, c in zip((*LAG_BUCKETS_S, "+Inf"), cumulative)]}
        self.window_max_s = self.window_committing_s = self.window_idle_s = 0.0
        self.cpu_window_max_s = 0.0
        return out
