"""The audit's coverage model: pure functions from archive facts to quiet / active / missing time.

Vocabulary (one *key* is a ``(channel, symbol)``; all times are int ns, intervals half-open):

* **subscribed**: the key had an acknowledged subscription on a connection (``liveness``:
  ``sub_from_ns``/``sub_to_ns`` place it exactly; older files only say how long, see
  ``queries/audit/subscribed.sql``);
* **alive**: the connection carrying it delivered at least one frame (data or heartbeat) in
  that minute; a subscribed minute on a dead connection is *not alive*;
* **proof of listening**: an acknowledged subscription, then heartbeats or messages on its
  connection. Capture's watchdog ends a connection that goes silent (a ``silence`` gap from its
  last frame), so an open, subscribed, alive connection is listening;
* **gap**: a ``gaps`` row that applies to the key (:func:`gap_applies`) over its effective
  extent (:func:`gap_extent`): from the last proof of listening before the break to the first
  after it. A gap healed by REST backfill does not remove coverage (the missing rows were
  fetched) and is reported as *backfilled* instead;
* **clean stop** (:func:`is_clean_stop`): the ``disconnect`` rows of a recorder stopping
  cleanly end the recorded window; they are not gaps;
* **startup** / **shutdown** (:func:`edges`): from the start of a recorder run to the key's first
  acknowledgement, and from the key's clean stop to the end of the run (other connections and
  workers still closing). Both are at most :data:`EDGE_LIMIT_NS`, labelled as such, and count
  neither as covered nor as missing: they are not part of the measured window;
* **covered** = subscribed and alive, minus the missing gaps; **active** = covered time inside a
  run of data; **quiet** = the rest of covered time: the market was silent, we were listening;
* **missing** = the measured window minus covered, split into *not subscribed*, *not alive* and
  *in gap*. A window, key or symbol with no recording at all is missing: 0 %, never 100 %.

Several archive roots (one per capture worker) are audited as one archive: each root's gaps
apply to that root's subscriptions only (connection ids are unique within a root), and a key is
covered where *any* root covered it (:func:`combine_roots`).

Every function here is free of I/O and of global state.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from recorder.audit import intervals as iv
from recorder.audit.intervals import Interval
from recorder.pipeline.markers import STOP_REASON

__all__ = [
    "Key",
    "Gap",
    "Thresholds",
    "Breakdown",
    "Run",
    "RootRun",
    "Drop",
    "LastProof",
    "BACKFILL_HEALS",
    "EDGE_LIMIT_NS",
    "STOP_TOLERANCE_NS",
    "is_clean_stop",
    "gap_applies",
    "subscription_end",
    "gap_extent",
    "connection_drops",
    "recording_runs",
    "anchor_runs",
    "edges",
    "classify",
    "combine_roots",
    "coverage_pct",
    "day_verdict",
]

Key = tuple[str, str]

#: ``healed_by`` values meaning the missing rows were recovered (coverage is not lost).
BACKFILL_HEALS = frozenset({"rest_backfill"})
#: Longest start-up (recorder run start -> a key's first acknowledgement) and shut-down (a
#: key's clean stop -> the end of the run) labelled as such; beyond it the time is missing.
EDGE_LIMIT_NS: Final = 60_000_000_000
#: A key whose subscription ended at most this long before its worker's first clean-stop
#: disconnect ended with the stop (connections are closed one after another when stopping).
STOP_TOLERANCE_NS: Final = 5_000_000_000
#: Causes whose row start is the last good message *before* an unknown loss; their extent ends
#: at detection (the next epoch of the key), not when a backfill finished.
_DETECTED_AT_NEXT_EPOCH = frozenset({"trade_id_jump"})
_MINUTE_NS: Final = 60_000_000_000
#: Point events: the loss they describe is the absence of a subscription, which the liveness
#: data already counts as *not subscribed*; their extent is empty.
_POINT_CAUSES = frozenset({"subscribe_failed"})


@dataclass(frozen=True, slots=True)
class Gap:
    """One ``gaps`` row (channel normalised: futures channels are ``futures_*``). ``cause`` is
    open-ended: a cause this module has no rule for keeps the row's own bounds."""

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
#: ``last_proof(conn_id, t)``: the last proof of listening (a frame received, or the
#: acknowledgement) on that connection of the gap's root at or before ``t``; None if unknown.
LastProof = Callable[[int, int], "int | None"]


@dataclass(frozen=True, slots=True)
class RootRun:
    """One recorder run of one archive root: ``[start_ns, end_ns]`` from its start (the
    ProcessStart of a restart, else its first proof of listening; see :func:`anchor_runs`) to
    its last proof; ``stop_ns`` is the first clean-stop disconnect of the run (None: it did not
    end by a clean stop, or is still on)."""

    start_ns: int
    end_ns: int
    stop_ns: int | None = None
    #: The run began at a restart (a ``process_restart`` row's end), so its start is exact.
    restarted: bool = False
    #: Where its shut-down may last until (:func:`anchor_runs`): its end, or the end of the
    #: range when that follows a clean stop closely (other roots were still stopping).
    group_end_ns: int = 0


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Per-day verdict thresholds (percent of the day's measured window inside the range).

    ``available``: every channel of the symbol has verified coverage >= ``available_pct``.
    ``missing``: every channel is below ``usable_pct``. Anything else is ``degraded``.
    Quiet time counts as covered: a pair that did not trade is available, not missing.
    """

    available_pct: float = 99.0
    usable_pct: float = 50.0


@dataclass(slots=True)
class Breakdown:
    """Interval sets of one key over one window (all normalised, all inside the window).
    ``covered + missing + startup + shutdown == window``; the measured window excludes the
    startup and shutdown edges."""

    window: Interval
    covered: list[Interval] = field(default_factory=list)
    active: list[Interval] = field(default_factory=list)
    quiet: list[Interval] = field(default_factory=list)
    missing: list[Interval] = field(default_factory=list)
    not_subscribed: list[Interval] = field(default_factory=list)
    not_alive: list[Interval] = field(default_factory=list)
    in_gap: list[Interval] = field(default_factory=list)
    backfilled: list[Interval] = field(default_factory=list)
    startup: list[Interval] = field(default_factory=list)
    shutdown: list[Interval] = field(default_factory=list)

    @property
    def window_ns(self) -> int:
        return self.window[1] - self.window[0]

    @property
    def measured_ns(self) -> int:
        """The window minus its startup and shutdown edges (the coverage denominator)."""
        return self.window_ns - iv.total(self.startup) - iv.total(self.shutdown)


def is_clean_stop(gap: Gap) -> bool:
    """A ``disconnect`` row of a connection closed because the recorder stopped cleanly
    (``Disconnected.reason`` == :data:`recorder.pipeline.markers.STOP_REASON`, kept in
    ``detail``): it ends the recorded window and is not a gap."""
    return gap.cause == "disconnect" and gap.detail == STOP_REASON


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


def subscription_end(gap: Gap, runs: Sequence[Run]) -> int | None:
    """For a ``disconnect`` row: when the subscription it ended stopped, i.e. the disconnect
    itself (the first end, at or after the row's start, of the key's runs on the row's
    connection); None when the liveness data has no such run."""
    ends = sorted(e for c, _, e, _ in runs if c == gap.conn_id and e >= gap.start_ns)
    return ends[0] if ends else None


def _first_after(sorted_values: Sequence[int], t: int) -> int | None:
    i = bisect.bisect_right(sorted_values, t)
    return sorted_values[i] if i < len(sorted_values) else None


def gap_extent(gap: Gap, epoch_starts: Sequence[int], runs: Sequence[Run], hi: int, *,
               last_proof: LastProof | None = None, lost: Interval | None = None) -> Interval:
    """The effective ``[start, end)`` of ``gap`` for one key (of the gap's own root).

    ``epoch_starts``: sorted start times of the key's epochs; ``runs``: the key's subscription
    runs per connection (:data:`Run`); ``last_proof``: see :data:`LastProof`; ``lost``: for a
    ``trade_id_jump``, the exchange times of the first and last trade it lost when a REST
    backfill recovered them. Rules:

    * ``disconnect``: from the last proof of listening on the connection before the disconnect
      (its last frame, heartbeats included; not the key's own last message, which for a quiet
      key can be minutes earlier) to the first proof after it, the acknowledgement of the key's
      next subscription (on a later run of any connection); without one, the row's end, else
      the key's next epoch, else ``hi``;
    * ``trade_id_jump``: where the lost trades were (``lost``, a point for one dropped frame:
      the connection was listening before and after it), else from the last good trade to
      *detection*, the start of the key's next epoch (the trades after the jump were recorded
      live; a backfill may finish later);
    * ``subscribe_failed`` is a point (empty extent): the missing subscription is already
      *not subscribed* time;
    * any other cause (open list): unhealed rows (``end_ns`` null) end at the key's next epoch
      start, else at ``hi``; otherwise ``[start_ns, end_ns)``.
    """
    start = gap.start_ns
    if gap.cause in _POINT_CAUSES:
        return (start, start)
    end = gap.end_ns
    nxt = _first_after(epoch_starts, start)
    if gap.cause == "disconnect":
        cut = subscription_end(gap, runs)
        if cut is not None:
            own_start = max((s for c, s, e, _ in runs if c == gap.conn_id and s <= cut
                             and e >= cut), default=start)
            proof = last_proof(gap.conn_id, cut) if last_proof is not None else None
            # listening until the last frame on the connection (until the cut itself when no
            # frame is known), never before the subscription the drop ended began
            start = min(cut, max(own_start, proof)) if proof is not None else cut
            again = [max(s, cut) for c, s, e, alive in runs
                     if alive and e > cut and not (c == gap.conn_id and s < cut)]
            if again:
                resumed = min(again)
                end = resumed if end is None else min(end, resumed)
                return (start, max(start, end))
    if gap.cause in _DETECTED_AT_NEXT_EPOCH and nxt is not None:
        end = nxt if end is None else min(end, nxt)
    if gap.cause in _DETECTED_AT_NEXT_EPOCH and lost is not None:
        bound = end if end is not None else hi
        first = min(max(lost[0], start), bound)
        return (first, min(max(lost[1], first), bound))
    if end is None:
        end = nxt if nxt is not None else hi
    return (start, max(start, end))


@dataclass(frozen=True, slots=True)
class Drop:
    """A connection of one root that went away while its recorder kept running: every key it
    carried stopped being subscribed at ``cut_ns`` (the disconnect). ``start_ns`` is the last
    proof of listening on it before; ``resumed`` maps each key it carried to the start of that
    key's next subscription (None: not subscribed again in the data)."""

    conn_id: int
    cut_ns: int
    start_ns: int
    resumed: dict[Key, int | None]

    def extent(self, key: Key, hi: int) -> Interval:
        """The gap this drop is for ``key``: from the last proof before it to the key's next
        acknowledgement (``hi`` when there is none)."""
        end = self.resumed.get(key)
        return (self.start_ns, max(self.start_ns, hi if end is None else end))


def connection_drops(runs_by_key: Mapping[Key, Sequence[Run]], root_runs: Sequence[RootRun],
                     last_proof: LastProof | None = None,
                     tolerance: int = STOP_TOLERANCE_NS) -> list[Drop]:
    """The connections of one root that went away (:class:`Drop`), from its keys' subscription
    runs alone: a connection's last stretch of subscriptions in a recorder run ends at
    ``cut`` for every key it carried, and nothing comes after it on that connection. Not a drop:
    a cut within ``tolerance`` of the run's clean stop (the stop closes every connection), or of
    the run's end when it did not stop cleanly (a crash: its ``process_restart`` row says why;
    or simply the end of the data). This finds drops whether or not the pipeline wrote a
    ``disconnect`` row (it writes one per key with an open epoch: none for ``ohlc``, none for a
    pair that has not traded yet)."""
    by_conn: dict[int, list[tuple[Key, int, int]]] = {}
    for key, rs in runs_by_key.items():
        for c, s, e, _ in rs:
            by_conn.setdefault(c, []).append((key, s, e))
    drops: list[Drop] = []
    for conn, items in by_conn.items():
        for run in root_runs:
            inside = [(k, s, e) for k, s, e in items if run.start_ns <= e and s <= run.end_ns]
            if not inside:
                continue
            sessions = iv.normalise((s, e) for _, s, e in inside)
            first, cut = sessions[-1]
            if run.stop_ns is not None and cut >= run.stop_ns - tolerance:
                continue
            if run.stop_ns is None and cut >= run.end_ns - tolerance:
                continue
            # v2 liveness ends every key's run at the disconnect itself; v1 only to the minute
            carried = sorted({k for k, s, e in inside if s >= first and e >= cut - _MINUTE_NS})
            proof = last_proof(conn, cut) if last_proof is not None else None
            start = min(cut, max(first, proof)) if proof is not None else cut
            resumed: dict[Key, int | None] = {}
            for key in carried:
                later = [max(s, cut) for c, s, e, alive in runs_by_key[key]
                         if alive and e > cut and not (c == conn and s < cut)]
                resumed[key] = min(later) if later else None
            drops.append(Drop(conn_id=conn, cut_ns=cut, start_ns=start, resumed=resumed))
    drops.sort(key=lambda d: (d.cut_ns, d.conn_id))
    return drops


def recording_runs(proofs: Sequence[Interval], restarts: Sequence[Interval],
                   stops: Sequence[int]) -> list[RootRun]:
    """The recorder runs of one root from its facts: ``proofs`` (spans from a first to a last
    proof of listening, e.g. per connection and minute), ``restarts`` (its ``process_restart``
    rows: the previous process's last receive time, the new ProcessStart) and ``stops`` (times
    of its clean-stop disconnects). A restart begins a run; a run ends at its last proof, or
    at the last receive time of its process when a restart follows."""
    bounds = sorted(set(restarts), key=lambda r: r[1])
    spans = sorted((s, e) for s, e in proofs if e >= s)
    out: list[RootRun] = []
    for k in range(len(bounds) + 1):
        lo = bounds[k - 1][1] if k > 0 else None
        hi = bounds[k][1] if k < len(bounds) else None
        inside = [(s, e) for s, e in spans if (lo is None or e >= lo) and (hi is None or e < hi)]
        if not inside:
            continue
        start = lo if lo is not None else min(s for s, _ in inside)
        end = max(e for _, e in inside)
        if k < len(bounds):
            end = max(end, min(bounds[k][0], bounds[k][1]))
        stop = min((t for t in stops if t >= start and (hi is None or t < hi)), default=None)
        out.append(RootRun(start_ns=start, end_ns=end, stop_ns=stop, restarted=lo is not None,
                           group_end_ns=end))
    return out


def anchor_runs(runs: Sequence[RootRun], lo: int, hi: int, limit: int = EDGE_LIMIT_NS
                ) -> list[RootRun]:
    """One root's runs placed against the audit range ``[lo, hi)``: a first run that did not
    begin at a restart, whose first proof lies at most ``limit`` after ``lo``, starts at
    ``lo`` (the range starts where the archive's first proof is, by default: the root's own
    start is unknown, it was starting up); the last run, ended by a clean stop at most ``limit``
    before ``hi``, has its ``group_end_ns`` at ``hi`` (the other roots were still stopping).
    Depends on nothing but the root's own facts and the range, so a root audited alone and the
    same root audited with others get the same figures."""
    out: list[RootRun] = []
    for i, r in enumerate(runs):
        start = r.start_ns
        if i == 0 and not r.restarted and lo <= start <= lo + limit:
            start = lo
        group_end = r.end_ns
        if i == len(runs) - 1 and r.stop_ns is not None and r.end_ns <= hi <= r.end_ns + limit:
            group_end = hi
        out.append(RootRun(start_ns=start, end_ns=r.end_ns, stop_ns=r.stop_ns,
                           restarted=r.restarted, group_end_ns=group_end))
    return out


def edges(key_runs: Sequence[Run], root_runs: Sequence[RootRun],
          limit: int = EDGE_LIMIT_NS) -> tuple[list[Interval], list[Interval]]:
    """``(startup, shutdown)`` of one key in one root.

    Startup: in each recorder run, from its start to the key's first subscription in it, when
    that comes within ``limit``. Shutdown: in a run that ended by a clean stop, from the end of
    the key's last subscription (when it ended with the stop, at most
    :data:`STOP_TOLERANCE_NS` before the run's first clean-stop disconnect) to the run's
    ``group_end_ns`` (:func:`anchor_runs`), at most ``limit``."""
    startup: list[Interval] = []
    shutdown: list[Interval] = []
    for r in root_runs:
        inside = [(s, e) for _, s, e, _ in key_runs if s <= r.end_ns and e >= r.start_ns]
        if not inside:
            continue
        first = min(s for s, _ in inside)
        if r.start_ns < first <= r.start_ns + limit:
            startup.append((r.start_ns, first))
        if r.stop_ns is not None:
            last = max(e for _, e in inside)
            end = min(r.group_end_ns, last + limit)
            if last >= r.stop_ns - STOP_TOLERANCE_NS and end > last:
                shutdown.append((last, end))
    return iv.normalise(startup), iv.normalise(shutdown)


def classify(window: Interval, subscribed_alive: Iterable[Interval],
             subscribed_dead: Iterable[Interval], activity: Iterable[Interval],
             missing_gaps: Iterable[Interval], healed_gaps: Iterable[Interval],
             startup: Iterable[Interval] = (), shutdown: Iterable[Interval] = ()) -> Breakdown:
    """Split ``window`` of one key into covered (active + quiet), missing, and the startup and
    shutdown edges.

    ``subscribed_alive`` / ``subscribed_dead``: subscription time on live / dead connections;
    ``activity``: runs of data; ``missing_gaps`` / ``healed_gaps``: effective extents of the
    applicable gaps that remove coverage / were healed by backfill; ``startup`` / ``shutdown``:
    see :func:`edges` (time there that is not covered and not in a gap is labelled as such, not
    missing). Inputs need not be normalised. Invariants (tested): ``active + quiet == covered``,
    ``covered + missing + startup + shutdown == window`` and the three missing reasons
    partition ``missing``.
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
    uncovered = iv.subtract(win, covered)
    in_gap = iv.intersect(uncovered, gaps)
    rest = iv.subtract(uncovered, in_gap)
    start_edge = iv.intersect(rest, iv.normalise(startup))
    rest = iv.subtract(rest, start_edge)
    stop_edge = iv.intersect(rest, iv.normalise(shutdown))
    rest = iv.subtract(rest, stop_edge)
    not_alive = iv.intersect(rest, dead)
    not_subscribed = iv.subtract(rest, not_alive)
    missing = iv.union(in_gap, rest)
    backfilled = iv.intersect(iv.clip(iv.normalise(healed_gaps), lo, hi), alive)
    return Breakdown(window=window, covered=covered, active=active, quiet=quiet,
                     missing=missing, not_subscribed=not_subscribed, not_alive=not_alive,
                     in_gap=in_gap, backfilled=backfilled, startup=start_edge,
                     shutdown=stop_edge)


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


def coverage_pct(covered_ns: float, measured_ns: float) -> float:
    """``covered / measured`` in percent (4 decimals); **0.0** when nothing was measured: no
    recording is never 100 %."""
    return round(100.0 * covered_ns / measured_ns, 4) if measured_ns > 0 else 0.0


def day_verdict(channel_pcts: Iterable[float], thresholds: Thresholds) -> str:
    """``available`` / ``degraded`` / ``missing`` for one symbol-day from its channels'
    verified coverage percentages (see :class:`Thresholds`); no channels -> ``missing``."""
    pcts = list(channel_pcts)
    if not pcts or all(p < thresholds.usable_pct for p in pcts):
        return "missing"
    if all(p >= thresholds.available_pct for p in pcts):
        return "available"
    return "degraded"
