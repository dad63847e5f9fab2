"""The audit's coverage model: pure functions from archive facts to quiet / active / missing time.

Vocabulary (one *key* is a ``(channel, symbol)``; all times are int ns, intervals half-open):

* **subscribed**: the key had an acknowledged subscription (``liveness.subscribed_ns``);
* **alive**: the connection carrying it delivered at least one frame (data or heartbeat) in
  that minute; a subscribed minute on a dead connection is *not alive*;
* **gap**: a ``gaps`` row that applies to the key (see :func:`gap_applies`) over its effective
  extent (see :func:`gap_extent`); a gap healed by REST backfill does not remove coverage (the
  missing rows were fetched) and is reported as *backfilled* instead;
* **covered** = subscribed and alive, minus the missing gaps;
* **active** = covered time inside a minute in which the key delivered data;
* **quiet** = covered time in minutes without data: the market was silent, we were listening;
* **missing** = the window minus covered, split into *not subscribed*, *not alive* and *in gap*.

Several archive roots (one per capture worker) are audited as one archive: each root's gaps
apply to that root's subscriptions only (connection ids are unique within a root), and a key is
covered where *any* root covered it (:func:`combine_roots`).

Every function here is free of I/O and of global state.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from recorder.audit import intervals as iv
from recorder.audit.intervals import Interval

__all__ = [
    "Key",
    "Gap",
    "Thresholds",
    "Breakdown",
    "Run",
    "BACKFILL_HEALS",
    "RESUME_WHEN_ALIVE",
    "gap_applies",
    "gap_extent",
    "classify",
    "combine_roots",
    "day_verdict",
]

Key = tuple[str, str]

#: ``healed_by`` values meaning the missing rows were recovered (coverage is not lost).
BACKFILL_HEALS = frozenset({"rest_backfill"})
#: Causes whose row start is the last good message *before* an unknown loss; their extent ends
#: at detection (the next epoch of the key), not when a backfill finished.
_DETECTED_AT_NEXT_EPOCH = frozenset({"trade_id_jump"})
#: Causes whose row start is the last message received, which for a quiet key can be long before
#: the break: the effective start is the end of the subscription that the break ended.
_START_AT_SUBSCRIPTION_END = frozenset({"disconnect"})
#: Channels whose ``disconnect`` gap ends when the key is subscribed and alive again (on another
#: connection), unless a trade_id hole across the disconnect shows trades were missed. The
#: pipeline closes a trade gap only at the next trade (nothing else marks a trade stream as
#: resumed), which for a quiet pair can be long after the resubscription; the time between is
#: quiet, not missing. Only spot ``trade`` qualifies: its trade ids are checkable.
RESUME_WHEN_ALIVE = frozenset({"trade"})
#: Point events: the loss they describe is the absence of a subscription, which the liveness
#: data already counts as *not subscribed*; their extent is empty.
_POINT_CAUSES = frozenset({"subscribe_failed"})


@dataclass(frozen=True, slots=True)
class Gap:
    """One ``gaps`` row (channel normalised: futures channels are ``futures_*``)."""

    start_ns: int
    end_ns: int | None
    stream: str
    channel: str
    symbol: str
    conn_id: int
    cause: str
    healed_by: str
    missing: str | None = None
    missing_count: int | None = None
    detail: str | None = None
    #: The archive root that wrote the row (its ``conn_id`` names a connection of that root).
    root: str = ""


#: One subscription run of a key on one connection: ``(conn_id, start_ns, end_ns, alive)``.
Run = tuple[int, int, int, bool]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Per-day verdict thresholds (percent of the day's window inside the audit range).

    ``available``: every channel of the symbol has verified coverage >= ``available_pct``.
    ``missing``: every channel is below ``usable_pct``. Anything else is ``degraded``.
    Quiet time counts as covered: a pair that did not trade is available, not missing.
    """

    available_pct: float = 99.0
    usable_pct: float = 50.0


@dataclass(slots=True)
class Breakdown:
    """Interval sets of one key over one window (all normalised, all inside the window)."""

    window: Interval
    covered: list[Interval] = field(default_factory=list)
    active: list[Interval] = field(default_factory=list)
    quiet: list[Interval] = field(default_factory=list)
    missing: list[Interval] = field(default_factory=list)
    not_subscribed: list[Interval] = field(default_factory=list)
    not_alive: list[Interval] = field(default_factory=list)
    in_gap: list[Interval] = field(default_factory=list)
    backfilled: list[Interval] = field(default_factory=list)

    @property
    def window_ns(self) -> int:
        return self.window[1] - self.window[0]


def gap_applies(gap: Gap, key: Key, conn_keys: Mapping[int, set[Key]]) -> bool:
    """Whether ``gap`` removes coverage from ``key``.

    Channel and symbol must match or be ``*``. REST gaps (``stream == "rest"``, e.g. a
    rate-limited request) concern requests, not subscriptions, and apply to no key. A wildcard
    symbol on a real connection (``conn_id != 0``: silence, disconnect) applies only to the keys
    that connection carried (``conn_keys``); ``conn_id == 0`` wildcards (process restart) apply
    to every key.
    """
    channel, symbol = key
    if gap.stream == "rest":
        return False
    if gap.channel not in ("*", channel) or gap.symbol not in ("*", symbol):
        return False
    if gap.symbol == "*" and gap.conn_id != 0:
        return key in conn_keys.get(gap.conn_id, ())
    return True


def gap_extent(gap: Gap, epoch_starts: Sequence[int], subscription_ends: Sequence[int],
               hi: int, *, runs: Sequence[Run] = (),
               trades_missed: bool | None = None) -> Interval:
    """The effective ``[start, end)`` of ``gap`` for one key (of the gap's own root).

    ``epoch_starts`` / ``subscription_ends``: sorted start times of the key's epochs and end
    times of its subscription intervals; ``runs``: the key's subscription runs per connection
    (:data:`Run`); ``trades_missed``: for a trade-channel disconnect, whether a trade_id hole
    spans it (``None``: unknown). Rules:

    * ``trade_id_jump``: from the last good trade to *detection*, the start of the key's next
      epoch (the trades after the jump were recorded live; a backfill may finish later);
    * ``disconnect``: starts at the end of the subscription the disconnect ended (the first
      end at or after the row's start of the gap's connection's runs, else of
      ``subscription_ends``), since a quiet key's last message may precede the disconnect by
      minutes during which it was listened to;
    * ``disconnect`` on a :data:`RESUME_WHEN_ALIVE` channel ends, at the latest, when the key is
      subscribed and alive again on a run other than the one the disconnect ended (the row's
      end is the next trade, which for a quiet pair comes much later), unless
      ``trades_missed`` is true: then trades were lost and the row's end stands;
    * ``subscribe_failed`` is a point (empty extent): the missing subscription is already
      *not subscribed* time;
    * unhealed rows (``end_ns`` null) end at the key's next epoch start, else at ``hi``;
    * otherwise ``[start_ns, end_ns)``.
    """
    start = gap.start_ns
    if gap.cause in _POINT_CAUSES:
        return (start, start)
    end = gap.end_ns
    nxt = _first_after(epoch_starts, start)
    if gap.cause in _DETECTED_AT_NEXT_EPOCH:
        if nxt is not None:
            end = nxt if end is None else min(end, nxt)
    if end is None:
        end = nxt if nxt is not None else hi
    if gap.cause in _START_AT_SUBSCRIPTION_END:
        own = iv.normalise((s, e) for c, s, e, _ in runs if c == gap.conn_id)
        ends = [e for _, e in own] if own else subscription_ends
        i = bisect.bisect_left(ends, start)
        if i < len(ends) and ends[i] < end:
            start = ends[i]
        if gap.channel in RESUME_WHEN_ALIVE and trades_missed is not True:
            again = [max(start, s) for c, s, e, alive in runs
                     if alive and e > start and not (c == gap.conn_id and s <= gap.start_ns)]
            if again:
                end = min(end, min(again))
    return (start, max(start, end))


def _first_after(sorted_values: Sequence[int], t: int) -> int | None:
    i = bisect.bisect_right(sorted_values, t)
    return sorted_values[i] if i < len(sorted_values) else None


def classify(window: Interval, subscribed_alive: Iterable[Interval],
             subscribed_dead: Iterable[Interval], activity: Iterable[Interval],
             missing_gaps: Iterable[Interval], healed_gaps: Iterable[Interval]) -> Breakdown:
    """Split ``window`` of one key into covered (active + quiet) and missing time.

    ``subscribed_alive`` / ``subscribed_dead``: subscription time on live / dead connections;
    ``activity``: minutes with data; ``missing_gaps`` / ``healed_gaps``: effective extents of
    the applicable gaps that remove coverage / were healed by backfill. Inputs need not be
    normalised. Invariants (tested): ``active + quiet == covered``,
    ``covered + missing == window`` and the three missing reasons partition ``missing``.
    """
    lo, hi = window
    alive = iv.clip(iv.normalise(subscribed_alive), lo, hi)
    dead = iv.subtract(iv.clip(iv.normalise(subscribed_dead), lo, hi), alive)
    gaps = iv.clip(iv.normalise(missing_gaps), lo, hi)
    act = iv.normalise(activity)
    win = [(lo, hi)] if hi > lo else []
    covered = iv.subtract(alive, gaps)
    active = iv.intersect(covered, act)
    quiet = iv.subtract(covered, act)
    missing = iv.subtract(win, covered)
    in_gap = iv.intersect(missing, gaps)
    rest = iv.subtract(missing, in_gap)
    not_alive = iv.intersect(rest, dead)
    not_subscribed = iv.subtract(rest, not_alive)
    backfilled = iv.intersect(iv.clip(iv.normalise(healed_gaps), lo, hi), alive)
    return Breakdown(window=window, covered=covered, active=active, quiet=quiet,
                     missing=missing, not_subscribed=not_subscribed, not_alive=not_alive,
                     in_gap=in_gap, backfilled=backfilled)


def combine_roots(per_root: Iterable[tuple[Iterable[Interval], Iterable[Interval]]]
                  ) -> tuple[list[Interval], list[Interval]]:
    """Merge one key's ``(subscribed_alive, missing_gaps)`` of several roots into the pair
    :func:`classify` takes for the whole archive.

    Each root's gaps remove coverage from that root only, and the key is covered where any root
    covered it: ``covered = U_r (alive_r - gaps_r)``. Returned: ``alive = U_r alive_r`` and
    ``gaps = U_r gaps_r - covered``, so that ``alive - gaps == covered`` and the gaps still
    explain every missing stretch they touch. With one root this is the identity (normalised).
    """
    alive: list[Interval] = []
    gaps: list[Interval] = []
    covered: list[Interval] = []
    for a, g in per_root:
        a_n, g_n = iv.normalise(a), iv.normalise(g)
        alive = iv.union(alive, a_n)
        gaps = iv.union(gaps, g_n)
        covered = iv.union(covered, iv.subtract(a_n, g_n))
    return alive, iv.subtract(gaps, covered)


def day_verdict(channel_pcts: Iterable[float], thresholds: Thresholds) -> str:
    """``available`` / ``degraded`` / ``missing`` for one symbol-day from its channels'
    verified coverage percentages (see :class:`Thresholds`); no channels -> ``missing``."""
    pcts = list(channel_pcts)
    if not pcts or all(p < thresholds.usable_pct for p in pcts):
        return "missing"
    if all(p >= thresholds.available_pct for p in pcts):
        return "available"
    return "degraded"
