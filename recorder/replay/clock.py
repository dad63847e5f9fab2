"""The replay clock: receive time of the recording as a function of wall time (pure).

One clock per replay, shared by every client. It runs over ``[start_ns, end_ns]`` of the
recording's receive clock (when Kraken's frames arrived at the recorder; the exchange
timestamps stay inside the frames) and starts when :meth:`ReplayClock.start` is called (the
server calls it at the first subscription, so a client that connects after start-up does not
miss the beginning).

* ``speed`` X: replay time = ``start_ns + X * (wall time since start - held time)``. Time
  spent in :meth:`hold` (rebuilding a book for a new subscription) is taken out, so the
  recorded spacing of frames is kept instead of being bunched into a burst afterwards.
* ``speed`` None (``--max-speed``): there is no pacing; the time is the receive time of the
  last frame served (:meth:`advance_to`), and the server serves as fast as its slowest
  client reads.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ReplayClock"]


class ReplayClock:
    """See module docstring. ``wall_ns`` is the wall clock (injectable for tests)."""

    def __init__(self, start_ns: int, end_ns: int, *, speed: float | None,
                 wall_ns: Callable[[], int]) -> None:
        if speed is not None and not speed > 0:
            raise ValueError("speed must be > 0 (or None for max speed)")
        if end_ns < start_ns:
            raise ValueError("the replay ends before it starts")
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.speed = speed
        self._wall_ns = wall_ns
        self._started_wall: int | None = None
        self._held_ns = 0
        self._hold_since: int | None = None
        self._position = start_ns

    @property
    def started(self) -> bool:
        return self._started_wall is not None

    @property
    def max_speed(self) -> bool:
        return self.speed is None

    def start(self) -> None:
        """Start the clock now (idempotent)."""
        if self._started_wall is None:
            self._started_wall = self._wall_ns()

    def target(self) -> int | None:
        """Receive time up to which frames are due now: paced (``speed``), ``start_ns``
        before :meth:`start`, None at max speed once started (everything is due)."""
        if self._started_wall is None:
            return self.start_ns
        if self.speed is None:
            return None
        wall = self._wall_ns()
        held = self._held_ns + (wall - self._hold_since if self._hold_since is not None else 0)
        elapsed = wall - self._started_wall - held
        return min(self.end_ns, self.start_ns + int(elapsed * self.speed))

    def advance_to(self, recv_ns: int) -> None:
        """Frames up to ``recv_ns`` have been served (never moves backwards)."""
        if recv_ns > self._position:
            self._position = min(recv_ns, self.end_ns)

    def now_ns(self) -> int:
        """The replay's current time (acks, REST ``Time``, snapshots): the paced time, or at
        max speed the last frame served."""
        if self.speed is not None and self._started_wall is not None:
            due = self.target()
            assert due is not None
            return max(due, self._position)
        return self._position

    def hold(self) -> None:
        """Stop paced time (a rebuild is running); :meth:`release` resumes it."""
        if self._hold_since is None:
            self._hold_since = self._wall_ns()

    def release(self) -> None:
        if self._hold_since is not None:
            self._held_ns += self._wall_ns() - self._hold_since
            self._hold_since = None
