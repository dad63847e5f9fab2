"""Pure models of every limit capture must respect: backoff, connect window, budgets.

All classes take explicit ``now`` values (seconds, monotonic) and never sleep: the asyncio shell
asks "how long must I wait?" and sleeps itself. Randomness (jitter) comes from an injected
:class:`random.Random`, so tests are deterministic.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Final

__all__ = [
    "L3_COST",
    "L3_BUDGET_PER_S",
    "Backoff",
    "ConnectLimiter",
    "TokenBucket",
    "CallCounter",
    "Cooldown",
    "l3_cost",
]

#: Level3 subscription cost per symbol by depth (kraken-protocol.md §2.1).
L3_COST: Final = {10: 5, 100: 25, 1000: 100}
#: Level3 subscription rate counter per second by tier.
L3_BUDGET_PER_S: Final = {"standard": 200.0, "pro": 500.0}


def l3_cost(depth: int) -> int:
    """Cost of subscribing one level3 symbol at ``depth``."""
    try:
        return L3_COST[depth]
    except KeyError:
        raise ValueError(f"level3 depth must be 10, 100 or 1000, got {depth}") from None


class Backoff:
    """Exponential backoff with "full jitter" between ``base * 2**(n-1) / 2`` and the cap.

    ``next_delay()`` after each failure; ``reset()`` after a connection that stayed healthy.
    The jittered delay lies in ``[d/2, d]`` where ``d = min(cap, base * 2**(failures-1))``,
    so retries never synchronise across connections and never exceed ``cap``.
    """

    def __init__(self, base_s: float, cap_s: float, rng: random.Random | None = None) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError("need 0 < base_s <= cap_s")
        self.base_s = base_s
        self.cap_s = cap_s
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        self.failures += 1
        ceiling = min(self.cap_s, self.base_s * 2 ** min(self.failures - 1, 30))
        return ceiling / 2 + self._rng.random() * ceiling / 2

    def reset(self) -> None:
        self.failures = 0


class ConnectLimiter:
    """At most ``limit`` connection attempts in any rolling ``window_s`` (per IP at Kraken).

    ``wait(now)`` is how long to wait before the next attempt may start; ``record(now)``
    registers an attempt (successful or not: Cloudflare counts attempts).
    """

    def __init__(self, limit: int, window_s: float) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("need limit >= 1 and window_s > 0")
        self.limit = limit
        self.window_s = window_s
        self._times: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()

    def wait(self, now: float) -> float:
        self._expire(now)
        if len(self._times) < self.limit:
            return 0.0
        return self._times[0] + self.window_s - now

    def record(self, now: float) -> None:
        self._expire(now)
        self._times.append(now)

    def used(self, now: float) -> int:
        self._expire(now)
        return len(self._times)


class TokenBucket:
    """A bucket of ``capacity`` units refilled at ``rate`` units/s (starts full).

    Models Kraken's level3 subscription counter (capacity = rate = 200 or 500 cost units/s),
    the per-connection request pacing and the public REST budget.
    """

    def __init__(self, rate: float, capacity: float, now: float = 0.0) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("need rate > 0 and capacity > 0")
        self.rate = rate
        self.capacity = capacity
        self._tokens = capacity
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
            self._at = now

    def wait(self, cost: float, now: float) -> float:
        """Seconds until ``cost`` units are available (0 if now). ``cost`` > capacity is an error."""
        if cost > self.capacity:
            raise ValueError(f"cost {cost} exceeds the bucket capacity {self.capacity}")
        self._refill(now)
        return 0.0 if self._tokens >= cost else (cost - self._tokens) / self.rate

    def take(self, cost: float, now: float) -> bool:
        """Spend ``cost`` units if available; False (nothing spent) otherwise."""
        if self.wait(cost, now) > 0:
            return False
        self._tokens -= cost
        return True

    def drain(self, now: float) -> None:
        """Empty the bucket (the venue said we exceeded it: trust the venue)."""
        self._refill(now)
        self._tokens = 0.0

    def level(self, now: float) -> float:
        self._refill(now)
        return self._tokens

    def utilisation(self, now: float) -> float:
        """Fraction of the capacity currently spent (0 = idle, 1 = exhausted)."""
        return 1.0 - self.level(now) / self.capacity


class CallCounter:
    """Kraken's private REST call counter: +cost per call, decays at ``decay_per_s``; a call
    that would take it above ``maximum`` is refused by Kraken (``EAPI:Rate limit exceeded``)."""

    def __init__(self, maximum: float, decay_per_s: float) -> None:
        self.maximum = maximum
        self.decay_per_s = decay_per_s
        self._value = 0.0
        self._at = 0.0

    def _decay(self, now: float) -> None:
        if now > self._at:
            self._value = max(0.0, self._value - (now - self._at) * self.decay_per_s)
            self._at = now

    def wait(self, cost: float, now: float) -> float:
        self._decay(now)
        excess = self._value + cost - self.maximum
        return 0.0 if excess <= 0 else excess / self.decay_per_s

    def add(self, cost: float, now: float) -> None:
        self._decay(now)
        self._value += cost

    def saturate(self, now: float) -> None:
        """Kraken said we are over the limit: assume the counter is full."""
        self._decay(now)
        self._value = self.maximum

    def value(self, now: float) -> float:
        self._decay(now)
        return self._value


@dataclass(slots=True)
class Cooldown:
    """A "do not call before" instant raised by rate-limit answers; doubles while repeated."""

    base_s: float
    cap_s: float = 300.0
    until: float = 0.0
    strikes: int = 0

    def hit(self, now: float, retry_at: float | None = None) -> float:
        """Register a rate-limit answer; returns the instant calls may resume."""
        self.strikes += 1
        delay = min(self.cap_s, self.base_s * 2 ** min(self.strikes - 1, 20))
        self.until = max(self.until, now + delay, retry_at or 0.0)
        return self.until

    def ok(self) -> None:
        self.strikes = 0

    def wait(self, now: float) -> float:
        return max(0.0, self.until - now)
