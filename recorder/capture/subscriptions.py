"""Per-symbol subscription state (pure): what was asked, what Kraken acknowledged, what flows.

One :class:`SubscriptionTable` per connection. Kraken acknowledges (or refuses) every symbol of
a subscribe separately, so state is per symbol: ``pending`` (sent, no answer yet), ``active``
(acknowledged), ``failed`` (refused; ``error`` is Kraken's text), ``unsubscribing`` (a
resnapshot's unsubscribe is in flight), ``quarantined`` (withheld by the healer), ``idle``
(wanted but not sent yet, e.g. while the connection is down).

Health: a symbol is *dead* when its connection is up and it has been ``active`` without data
for longer than ``dead_after_s`` (for channels that always flow) or ``pending`` longer than the
ack timeout. A book that is merely quiet is not dead: Kraken's heartbeats are per connection, so
a symbol's own silence only counts once it is out of proportion to its history, longer than
:data:`QUIET_FACTOR` times its mean time between messages since it was acknowledged (an
illiquid pair whose top 10 levels change every few minutes is quiet, not dead; a busy book that
stops is dead after ``dead_after_s``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["QUIET_CHANNELS", "QUIET_FACTOR", "SubInfo", "SubState", "SubscriptionTable"]

SubState = Literal["idle", "pending", "active", "failed", "unsubscribing", "quarantined"]

#: Channels that may legitimately be silent for long stretches (no trades on a quiet pair):
#: they are never declared dead for lack of data, only for a missing ack.
QUIET_CHANNELS: Final = frozenset({"trade", "ohlc", "instrument", "ticker", "ticker_lite"})

#: On other channels, an active symbol is dead when silent for longer than ``dead_after_s``
#: and longer than this many times its mean time between messages since its ack.
QUIET_FACTOR: Final = 10.0


@dataclass(slots=True)
class SubInfo:
    state: SubState = "idle"
    since: float = 0.0
    acked_at: float | None = None
    last_data: float | None = None
    messages: int = 0
    error: str = ""
    attempts: int = 0
    resyncs: int = 0


class SubscriptionTable:
    """Subscription state of one connection (``channel`` is the connection's channel)."""

    def __init__(self, channel: str, symbols: tuple[str, ...] | list[str]) -> None:
        self.channel = channel
        self.subs: dict[str, SubInfo] = {s: SubInfo() for s in symbols}

    # -------------------------------------------------------------- transitions

    def add(self, symbol: str) -> None:
        self.subs.setdefault(symbol, SubInfo())

    def remove(self, symbol: str) -> None:
        self.subs.pop(symbol, None)

    def reset(self, now: float) -> None:
        """The connection dropped: everything must be subscribed again."""
        for info in self.subs.values():
            if info.state != "quarantined":
                info.state, info.since = "idle", now

    def sent(self, symbol: str, now: float) -> None:
        info = self.subs.setdefault(symbol, SubInfo())
        info.state, info.since, info.error = "pending", now, ""
        info.attempts += 1

    def unsubscribing(self, symbol: str, now: float) -> None:
        info = self.subs.get(symbol)
        if info is not None:
            info.state, info.since = "unsubscribing", now
            info.resyncs += 1

    def acked(self, symbol: str, now: float) -> None:
        info = self.subs.get(symbol)
        if info is None or info.state == "quarantined":
            return
        info.state, info.since, info.acked_at, info.error = "active", now, now, ""

    def unacked(self, symbol: str, now: float) -> None:
        """An unsubscribe was acknowledged."""
        info = self.subs.get(symbol)
        if info is not None and info.state == "unsubscribing":
            info.state, info.since = "idle", now

    def rejected(self, symbol: str, error: str, now: float) -> None:
        info = self.subs.get(symbol)
        if info is not None and info.state != "quarantined":
            info.state, info.since, info.error = "failed", now, error

    def quarantine(self, symbol: str, now: float) -> None:
        info = self.subs.get(symbol)
        if info is not None:
            info.state, info.since = "quarantined", now

    def release(self, symbol: str, now: float) -> None:
        info = self.subs.get(symbol)
        if info is not None and info.state == "quarantined":
            info.state, info.since = "idle", now

    def data(self, symbol: str, now: float, messages: int = 1) -> None:
        """``messages`` data messages of ``symbol`` arrived, the last at ``now``."""
        info = self.subs.get(symbol)
        if info is not None:
            info.last_data = now if info.last_data is None else max(info.last_data, now)
            info.messages += messages

    # -------------------------------------------------------------- queries

    def in_state(self, *states: SubState) -> list[str]:
        return sorted(s for s, i in self.subs.items() if i.state in states)

    def timed_out(self, now: float, ack_timeout_s: float) -> list[str]:
        """Symbols whose subscribe (or unsubscribe) got no answer within ``ack_timeout_s``."""
        return sorted(s for s, i in self.subs.items()
                      if i.state in ("pending", "unsubscribing") and now - i.since > ack_timeout_s)

    def dead(self, now: float, dead_after_s: float, connected: bool) -> list[str]:
        """Symbols considered dead (see module docstring)."""
        if not connected:
            return sorted(s for s, i in self.subs.items() if i.state != "quarantined")
        out = []
        for s, i in self.subs.items():
            if i.state in ("pending", "unsubscribing", "failed", "idle"):
                if now - i.since > dead_after_s:
                    out.append(s)
            elif i.state == "active" and self.channel not in QUIET_CHANNELS:
                last = i.last_data if i.last_data is not None else i.acked_at or i.since
                acked = i.acked_at if i.acked_at is not None else i.since
                usual = QUIET_FACTOR * (now - acked) / max(i.messages, 1)
                if now - last > max(dead_after_s, usual):
                    out.append(s)
        return sorted(out)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in self.subs.values():
            out[i.state] = out.get(i.state, 0) + 1
        return out
