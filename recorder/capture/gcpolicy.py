"""The garbage collector of a capture worker process: young objects only, between commits.

CPython's cyclic collector stops the whole process while it runs, whatever thread starts it.
A full (generation 2) collection walks every tracked object the worker holds: the open
epochs, their books, the row buffers. Over the full universe that is a pause of 40-50 ms
(measured: ``python -m benchmarks.capture --no-sweep``, 683 pairs, a 51 ms gen-2 collection
triggered in the commit thread stalled the event loop 43 ms), which breaks the loop's 20 ms
budget by itself (issue #18).

:class:`YoungGc` keeps the collector but takes the long-lived heap out of its reach: right
after each commit cut (on the event loop, where the cut already runs with the collector
off) and every ``freeze_every_s`` (10 s; commits may be minutes apart) it calls
:func:`gc.freeze`, which moves every object then tracked into the permanent generation in
O(1). Collections then only walk what was allocated since the last freeze.
Frozen objects are still freed by reference counting as usual; only a reference *cycle*
that became garbage before a freeze and was not yet collected would stay. Each
``full_every_s`` (default 6 hours) the next step calls :func:`gc.unfreeze` instead, so that
the next full collection reclaims such cycles: one longer pause per period, by design.

Only the worker process entry (:func:`recorder.capture.service.worker_main`) installs it:
freezing is process-wide, so an in-process worker (tests, embedding) leaves the collector
alone by default.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

__all__ = ["YoungGc"]


class YoungGc:
    """Freeze the heap after each commit cut and every ``freeze_every_s`` (:meth:`run`);
    unfreeze instead once per ``full_every_s``.

    ``clock``: monotonic seconds (tests inject one). Counters: ``freezes``, ``unfreezes``."""

    __slots__ = ("full_every_s", "freeze_every_s", "_clock", "_last_full", "freezes",
                 "unfreezes")

    def __init__(self, full_every_s: float = 6 * 3600.0, freeze_every_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not full_every_s > 0:
            raise ValueError(f"full_every_s must be > 0, got {full_every_s!r}")
        if not freeze_every_s > 0:
            raise ValueError(f"freeze_every_s must be > 0, got {freeze_every_s!r}")
        self.full_every_s = full_every_s
        self.freeze_every_s = freeze_every_s
        self._clock = clock
        self._last_full = clock()
        self.freezes = 0
        self.unfreezes = 0

    def step(self) -> None:
        """Freeze (or, once per period, unfreeze). Call on the thread that feeds frames: right
        after a commit cut, and from :meth:`run`."""
        now = self._clock()
        if now - self._last_full >= self.full_every_s:
            self._last_full = now
            gc.unfreeze()
            self.unfreezes += 1
        else:
            gc.freeze()
            self.freezes += 1

    async def run(self) -> None:
        """:meth:`step` every ``freeze_every_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.freeze_every_s)
            self.step()
