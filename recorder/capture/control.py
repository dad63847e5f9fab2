"""A worker's run state: stopping, and paused/resumed (one object every part shares).

:class:`RunControl` owns the two facts every part of a worker reacts to: *stopping* (the
worker ends; set once, by a signal, the orphan watch or a test) and *paused* (capture takes no
data: disk pressure or failing archive writes; set and cleared by the archive part). Parts
wait on it (:meth:`RunControl.wait_resumed`, :meth:`RunControl.sleep`) instead of reading
each other's members. Pausing calls the hooks registered with :meth:`RunControl.on_pause`
(the connections close, each journaling ``Disconnected`` with the pause's reason).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

__all__ = ["RunControl"]


class RunControl:
    """Stopping and paused state of one worker (see module docstring)."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.paused = asyncio.Event()
        self._resumed = asyncio.Event()
        #: why capture is paused, in words for the status ("" while running)
        self.pause_reason = ""
        self._pause_hooks: list[Callable[[str], None]] = []

    def on_pause(self, hook: Callable[[str], None]) -> None:
        """Call ``hook(reason)`` whenever capture pauses (``reason`` is the journaled one)."""
        self._pause_hooks.append(hook)

    def pause(self, reason: str, status: str = "") -> bool:
        """Pause capture (no-op when paused already; returns whether it paused now).
        ``reason``: short, journaled with every ``Disconnected``; ``status``: the longer
        explanation the status gives (default ``reason``)."""
        if self.paused.is_set():
            return False
        self.pause_reason = status or reason
        self.paused.set()
        self._resumed.clear()
        for hook in self._pause_hooks:
            hook(reason)
        return True

    def resume(self) -> None:
        """Capture takes data again."""
        self.pause_reason = ""
        self.paused.clear()
        self._resumed.set()

    def stop(self) -> None:
        """The worker ends (idempotent)."""
        self.stopping.set()

    async def wait_resumed(self) -> None:
        """Until capture resumes or the worker stops (at once when not paused)."""
        if not self.paused.is_set():
            return
        waits = [asyncio.ensure_future(self.stopping.wait()),
                 asyncio.ensure_future(self._resumed.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def sleep(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the worker stops first; True when it stopped."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), max(0.0, seconds))
        return self.stopping.is_set()
