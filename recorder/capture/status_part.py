"""The status part of a worker: its report to the supervisor, and the lag measurements.

:class:`StatusReporter` assembles the worker's status dict (the fields ``recorder status``,
``/health``, ``/status`` and ``/metrics`` are built from: see
:mod:`recorder.capture.metrics`) from each part's own ``status()`` and sends it every
``status_interval_s`` (and once more, marked ``stopped``, at the end). It owns two
measurements that belong to no other part:

* the event loop's lag (:class:`~recorder.capture.looplag.LoopLagMonitor`): how long the loop
  was held, e.g. by a commit (commits are cut on the loop and finished in a thread);
* the exchange->receive lag (:class:`ExchangeLag`), sampled from one data frame in
  :data:`LAG_SAMPLE`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from recorder.capture.looplag import LoopLagMonitor
from recorder.frames import Frame
from recorder.protocol.spot import exchange_time_ns

__all__ = ["ExchangeLag", "StatusReporter", "LAG_SAMPLE"]

log = logging.getLogger("recorder.capture.status")

#: One data frame in this many is sampled for the exchange->receive lag.
LAG_SAMPLE: Final = 64


@dataclass(slots=True)
class ExchangeLag:
    """Exchange->receive lag (a metric, not data) from sampled frames."""

    seconds: float = 0.0
    _n: int = 0

    def frame(self, frame: Frame) -> None:
        """Count one received data frame; every :data:`LAG_SAMPLE`-th is sampled."""
        self._n += 1
        if self._n % LAG_SAMPLE == 0:
            self.sample(frame)

    def sample(self, frame: Frame) -> None:
        """The lag from one frame's latest exchange ``timestamp``: the last one (book/level3/
        trade data), except on ``ohlc``, whose bars carry a deprecated ``timestamp`` at the
        bar's *end* (in the future): there the message-level generation time, which comes
        first. A frame without a readable timestamp leaves the figure as it was."""
        ts = exchange_time_ns(frame.payload)
        if ts is None:
            return
        self.seconds = max(0.0, (frame.recv_ns - ts) / 1e9)


class StatusReporter:
    """Builds and sends the worker status (see module docstring). ``sections``: callables
    each returning one part's fields (called in order, later keys win); ``committing``: whether
    a commit is in flight (the loop's lag is kept apart for those moments)."""

    def __init__(self, *, worker: int, writer: str, root: str, interval_s: float,
                 sections: list[Callable[[], dict[str, Any]]],
                 send: Callable[[dict[str, Any]], None] | None,
                 committing: Callable[[], bool] | None = None) -> None:
        self._head = {"worker": worker, "writer": writer, "root": root}
        self._interval_s = interval_s
        self._sections = sections
        self._send = send
        self.started = time.time()
        self.loop_lag = LoopLagMonitor(committing=committing)
        self.exchange_lag = ExchangeLag()

    def status(self) -> dict[str, Any]:
        """The full status dict now (starts a new loop-lag window)."""
        out: dict[str, Any] = {**self._head, "pid": os.getpid(), "time": time.time(),
                               "started": self.started}
        for section in self._sections:
            out.update(section())
        out["lag_exchange_receive_s"] = self.exchange_lag.seconds
        out.update(self.loop_lag.snapshot())
        return out

    def send(self, **extra: Any) -> None:
        """Send the status now (a failing send is logged, never raised)."""
        if self._send is None:
            return
        try:
            self._send({**self.status(), **extra})
        except Exception as exc:  # noqa: BLE001 - a status report must not stop capture
            log.debug("status not sent: %s", exc)

    async def run(self) -> None:
        """Measure the loop's lag and send the status every interval, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.loop_lag.run())
            while True:
                self.send()
                await asyncio.sleep(self._interval_s)
