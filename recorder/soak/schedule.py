"""The soak plan: which faults, kills and disk pressure happen when (pure, no I/O).

A soak of ``M`` minutes repeats one 60-second *chaos cycle* ``M`` times. The cycle injects every
fault kind of :mod:`recorder.sim.faults` that reaches a WebSocket or REST client once (frame
kinds on the busiest pairs, so that a lost frame is followed by another frame of the same symbol
and can be detected), plus one listing, one delisting and a status change and its revert. The
soak captures over WebSocket only: the FIX kinds (:data:`~recorder.sim.faults.FIX_KINDS`) need a
FIX session and are exercised by ``tests/test_capture_fix_sim.py``. Times are seconds since the
spec is posted to the sim's ``/control/faults`` (the sim measures runtime rules from that
moment). On top of the sim's faults the orchestrator SIGKILLs a random worker every ``6 * M``
seconds and holds one disk-pressure episode in the last cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

from recorder.errors import RecorderError
from recorder.sim.faults import FIX_KINDS, KINDS, parse_faults

__all__ = ["SoakPlan", "ScheduleError", "CYCLE_S", "SOAK_KINDS", "plan_soak"]

CYCLE_S = 60.0
#: The fault kinds a soak injects: all but the FIX ones (the soak runs no FIX session).
SOAK_KINDS = frozenset(KINDS) - FIX_KINDS

#: (second within the cycle, rule without schedule) — every fault kind except the instrument
#: ones, which name per-cycle symbols (see :func:`plan_soak`). ``{busy}``/``{busy2}`` are the
#: two busiest pairs.
_CYCLE: tuple[tuple[float, str], ...] = (
    (2.0, "checksum:channel=book"),
    (4.0, "token_reject"),  # armed: refuses the next level3 subscribe (the 5 s resnapshot)
    (5.0, "checksum:channel=level3"),
    (8.0, "number:endpoint=spot,channel=book"),  # Futures books carry no checksum
    (10.0, "number:channel=level3"),
    (12.0, "drop:channel=trade,symbol={busy}"),
    (14.0, "refuse:endpoint=spot,duration=2"),  # the reconnect after the close below
    (14.5, "close:endpoint=spot,channel=trade"),
    (18.0, "malformed:channel=book,symbol={busy2}"),
    (20.0, "duplicate:channel=trade,symbol={busy}"),
    (21.0, "duplicate:channel=book,symbol={busy}"),
    (23.0, "reorder:channel=trade,symbol={busy}"),
    (25.0, "stall:endpoint=l3,duration=5"),
    (32.0, "rest_limit"),  # armed: the backfill of the next drop is refused once
    (33.0, "drop:channel=trade,symbol={busy2}"),
    (37.0, "slow_rest:duration=4,delay=1"),
    (38.0, "drop:channel=trade,symbol={busy}"),
    (40.0, "drop:channel=book,symbol={busy}"),
)
_LIST_AT, _STATUS_AT, _DELIST_AT, _REVERT_AT = 42.0, 44.0, 46.0, 48.0
#: the disk-pressure episode, within the last cycle
_DISK_AT, _DISK_S = 50.0, 5.0


class ScheduleError(RecorderError, ValueError):
    """The soak cannot be planned (too few pairs, bad duration)."""


@dataclass(frozen=True, slots=True)
class SoakPlan:
    """Everything the orchestrator injects, in seconds since the fault spec was posted."""

    minutes: int
    fault_spec: str  #: for ``POST /control/faults``
    kill_at_s: tuple[float, ...]  #: SIGKILL a random worker at these times
    disk_at_s: float  #: balloon file created
    disk_s: float  #: ... and removed this much later
    duration_s: float  #: faults stop (then: clear, settle, SIGTERM)
    listed: tuple[str, ...]  #: symbols listed by the sim (one per cycle)
    delisted: tuple[str, ...]  #: original pairs delisted (one per cycle)
    status_changed: tuple[str, ...]  #: pairs set to cancel_only then back online

    @property
    def kinds(self) -> frozenset[str]:
        """Fault kinds of the sim spec."""
        return frozenset(r.kind for r in parse_faults(self.fault_spec))


def plan_soak(minutes: int, pairs: list[str]) -> SoakPlan:
    """The plan for ``minutes`` (>= 1) over the sim's ``pairs`` (busiest first; at least
    ``4 + 2 * minutes`` of them, the delist/status victims are never the 4 busiest)."""
    if minutes < 1:
        raise ScheduleError(f"minutes must be >= 1, got {minutes}")
    if len(pairs) < 4 + 2 * minutes:
        raise ScheduleError(f"{len(pairs)} pairs are too few for {minutes} cycles "
                            f"(need {4 + 2 * minutes})")
    m = minutes
    fill = {"busy": pairs[0], "busy2": pairs[1]}
    rules = [f"{rule.format(**fill)}{',' if ':' in rule else ':'}at={at:g},every={CYCLE_S:g},count={m}"
             for at, rule in _CYCLE]
    victims = pairs[4:]
    listed, delisted, status = [], [], []
    for k in range(m):
        base = k * CYCLE_S
        new, gone, flip = f"SOAK{k}/USD", victims[-1 - k], victims[k]
        listed.append(new)
        delisted.append(gone)
        status.append(flip)
        rules += [f"list:symbol={new},at={base + _LIST_AT:g}",
                  f"status:symbol={flip},status=cancel_only,at={base + _STATUS_AT:g}",
                  f"delist:symbol={gone},at={base + _DELIST_AT:g}",
                  f"status:symbol={flip},status=online,at={base + _REVERT_AT:g}"]
    spec = ";".join(rules)
    kinds = {r.kind for r in parse_faults(spec)}
    assert kinds == SOAK_KINDS, sorted(SOAK_KINDS - kinds)  # every kind, by construction
    duration = m * CYCLE_S
    disk_at = duration - CYCLE_S + _DISK_AT
    period = 6.0 * m
    kills: list[float] = []
    t = period
    while t <= duration - 6.0:
        if not disk_at - 3.0 <= t <= disk_at + _DISK_S + 3.0:
            kills.append(t)
        t += period
    if not kills:
        kills.append(min(period, duration / 2))
    return SoakPlan(minutes=m, fault_spec=spec, kill_at_s=tuple(kills), disk_at_s=disk_at,
                    disk_s=_DISK_S, duration_s=duration, listed=tuple(listed),
                    delisted=tuple(delisted), status_changed=tuple(status))
