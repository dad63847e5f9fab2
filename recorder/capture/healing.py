"""Healing decisions (pure): what to repair, in which order, within which budget.

The pipeline reports problems as signals (:mod:`recorder.pipeline.signals`); the
:class:`Healer` turns them into :class:`HealAction` values the asyncio shell carries out:

* a book desync (checksum mismatch, crossed book, ...) -> ``resnapshot`` of that one symbol on
  its connection (unsubscribe + subscribe at the same depth; the connection keeps serving its
  other symbols) plus, when enabled, a low-priority ``rest_snapshot`` kept as unverified
  evidence of the book during the gap;
* a futures ``seq`` gap -> ``resubscribe`` of the product's feed (+ ``rest_snapshot`` for books);
* a trade-id gap -> ``backfill_trades`` from REST ``Trades``;
* a broken OHLC connection -> ``backfill_ohlc`` from REST ``OHLC`` per symbol.

Resnapshots spend a token bucket (``resnapshots_per_minute``, ``resnapshot_burst``) and are
served by priority (configured priority symbols, then level3, book, futures). A (channel,
symbol) that desyncs ``max_failures`` times within ``failure_window_s`` is *quarantined*: it is
unsubscribed and released (resubscribed) after a backoff that doubles with each quarantine
(``quarantine_base_s`` .. ``quarantine_max_s``) and resets after a clean window.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Final, Literal

from recorder.capture.config import HealingConfig
from recorder.capture.limits import TokenBucket

__all__ = ["ActionKind", "HealAction", "Decision", "Healer", "SubKey"]

ActionKind = Literal["resnapshot", "resubscribe", "backfill_trades", "backfill_ohlc",
                     "rest_snapshot", "release"]
#: (stream, channel, symbol): one subscription.
SubKey = tuple[str, str, str]

_CHANNEL_PRIORITY: Final = {"level3": 1, "book": 2}
_KIND_PRIORITY: Final = {"release": 1, "resnapshot": 2, "resubscribe": 2, "backfill_trades": 3,
                         "rest_snapshot": 5, "backfill_ohlc": 6}
_BUDGETED: Final = frozenset({"resnapshot", "resubscribe", "release"})


@dataclass(frozen=True, slots=True)
class HealAction:
    """One repair for the shell. ``expected``/``got`` bound a trade gap (``got`` exclusive);
    ``recv_ns`` is when the problem was seen (the backfill search starts before it)."""

    kind: ActionKind
    stream: str
    channel: str
    symbol: str
    depth: int | None = None
    reason: str = ""
    expected: int | None = None
    got: int | None = None
    recv_ns: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    """The immediate outcome of a signal: ``queued``, ``duplicate`` (already being healed),
    ``quarantined`` (until ``until``) or ``ignored`` (the key is quarantined already)."""

    outcome: Literal["queued", "duplicate", "quarantined", "ignored"]
    until: float | None = None
    failures: int = 0


@dataclass(slots=True)
class _KeyState:
    failures: deque[float] = field(default_factory=deque)
    quarantines: int = 0
    quarantined_until: float | None = None
    last_desync: float = 0.0


class Healer:
    """Priority queue of repairs with a resnapshot budget and per-key quarantine."""

    def __init__(self, cfg: HealingConfig, now: float = 0.0) -> None:
        self.cfg = cfg
        burst = max(1.0, float(cfg.resnapshot_burst))
        self._bucket = TokenBucket(max(cfg.resnapshots_per_minute, 1e-6) / 60.0, burst, now)
        self._queue: list[tuple[int, int, HealAction]] = []
        self._seq = itertools.count()
        self._pending: set[tuple[str, str, str, str]] = set()
        self._keys: dict[SubKey, _KeyState] = {}
        self._priority = {s: i for i, s in enumerate(cfg.priority_symbols)}
        self.resnapshots = 0
        self.quarantine_events = 0

    # ------------------------------------------------------------------ inputs

    def _priority_of(self, action: HealAction) -> int:
        base = _KIND_PRIORITY[action.kind] * 10 + _CHANNEL_PRIORITY.get(action.channel, 3)
        return base * 1000 + self._priority.get(action.symbol, 999)

    def _push(self, action: HealAction) -> bool:
        ident = (action.kind, action.stream, action.channel, action.symbol)
        if action.kind == "backfill_trades":
            ident = (action.kind, action.symbol, str(action.expected), str(action.got))
        if ident in self._pending:
            return False
        self._pending.add(ident)
        heapq.heappush(self._queue, (self._priority_of(action), next(self._seq), action))
        return True

    def is_quarantined(self, key: SubKey, now: float) -> bool:
        st = self._keys.get(key)
        return bool(st and st.quarantined_until is not None and st.quarantined_until > now)

    def quarantined(self) -> dict[SubKey, float]:
        return {k: s.quarantined_until for k, s in self._keys.items()
                if s.quarantined_until is not None}

    def desync(self, stream: str, channel: str, symbol: str, depth: int | None, reason: str,
               now: float, *, rest_snapshot: bool | None = None) -> Decision:
        """A book of (stream, channel, symbol) can no longer be trusted."""
        key = (stream, channel, symbol)
        st = self._keys.setdefault(key, _KeyState())
        if st.quarantined_until is not None:
            return Decision("ignored", st.quarantined_until)
        kind: ActionKind = "resubscribe" if stream == "futures" else "resnapshot"
        if (kind, stream, channel, symbol) in self._pending:
            return Decision("duplicate", failures=len(st.failures))
        window = self.cfg.failure_window_s
        while st.failures and st.failures[0] <= now - window:
            st.failures.popleft()
        if not st.failures and st.last_desync and now - st.last_desync > window:
            st.quarantines = 0  # a clean window forgives earlier quarantines
        st.failures.append(now)
        st.last_desync = now
        want_rest = self.cfg.rest_snapshot_on_gap if rest_snapshot is None else rest_snapshot
        if want_rest and channel in ("book", "level3"):
            self._push(HealAction("rest_snapshot", stream, channel, symbol, depth, reason))
        if len(st.failures) >= self.cfg.max_failures:
            st.quarantines += 1
            backoff = min(self.cfg.quarantine_max_s,
                          self.cfg.quarantine_base_s * 2 ** (st.quarantines - 1))
            st.quarantined_until = now + backoff
            st.failures.clear()
            self.quarantine_events += 1
            return Decision("quarantined", st.quarantined_until, self.cfg.max_failures)
        self._push(HealAction(kind, stream, channel, symbol, depth, reason))
        return Decision("queued", failures=len(st.failures))

    def trade_gap(self, symbol: str, expected: int, got: int, recv_ns: int) -> bool:
        """Trade ids ``expected .. got-1`` of ``symbol`` were not received."""
        return self._push(HealAction("backfill_trades", "spot", "trade", symbol, None,
                                     "trade_id_gap", expected, got, recv_ns))

    def rest_snapshot(self, stream: str, channel: str, symbol: str, depth: int | None = None,
                      reason: str = "") -> bool:
        """Ask for a REST snapshot of a book as evidence during its gap (futures books, whose
        desyncs are healed by a resubscribe: :meth:`desync` is told not to queue one)."""
        return self._push(HealAction("rest_snapshot", stream, channel, symbol, depth, reason))

    def resnapshot(self, stream: str, channel: str, symbol: str, depth: int | None,
                   reason: str) -> bool:
        """Ask for a fresh snapshot of a book that is not desynchronised but must be rebuilt
        (new precisions or status from the ``instrument`` channel); not counted as a failure."""
        return self._push(HealAction("resnapshot", stream, channel, symbol, depth, reason))

    def ohlc_gap(self, symbol: str, interval: int | None, recv_ns: int) -> bool:
        """Bars of ``symbol`` may be missing (the ohlc connection broke)."""
        return self._push(HealAction("backfill_ohlc", "spot", "ohlc", symbol, interval,
                                     "connection_lost", recv_ns=recv_ns))

    # ------------------------------------------------------------------ outputs

    def due(self, now: float, limit: int = 100) -> list[HealAction]:
        """Actions to carry out now, best first: releases of ended quarantines, then queued
        repairs. Budgeted kinds wait (stay queued) while the resnapshot bucket is empty."""
        out: list[HealAction] = []
        for key, st in self._keys.items():
            if st.quarantined_until is not None and st.quarantined_until <= now:
                st.quarantined_until = None
                stream, channel, symbol = key
                self._push(HealAction("release", stream, channel, symbol, None, "quarantine_over"))
        deferred: list[tuple[int, int, HealAction]] = []
        while self._queue and len(out) < limit:
            item = heapq.heappop(self._queue)
            action = item[2]
            if action.kind in _BUDGETED:
                if not self._bucket.take(1.0, now):
                    deferred.append(item)
                    continue
                self.resnapshots += action.kind != "release"
            out.append(action)
        for item in deferred:
            heapq.heappush(self._queue, item)
        return out

    def done(self, action: HealAction) -> None:
        """The shell finished (or abandoned) ``action``; the same repair may be queued again."""
        ident = (action.kind, action.stream, action.channel, action.symbol)
        if action.kind == "backfill_trades":
            ident = (action.kind, action.symbol, str(action.expected), str(action.got))
        self._pending.discard(ident)

    def retry(self, action: HealAction) -> None:
        """Put ``action`` back (e.g. the REST budget was exhausted)."""
        self.done(action)
        self._push(action)

    def forget(self, symbol: str) -> None:
        """A delisted symbol: drop its queued repairs and quarantine state."""
        self._queue = [i for i in self._queue if i[2].symbol != symbol]
        heapq.heapify(self._queue)
        self._pending = {p for p in self._pending if symbol not in p}
        for key in [k for k in self._keys if k[2] == symbol]:
            del self._keys[key]

    def pending(self) -> int:
        return len(self._queue)

    def budget_utilisation(self, now: float) -> float:
        return self._bucket.utilisation(now)
