"""Fault injection for ``recorder sim``: a small grammar, a seeded plan, and recorded effects.

Grammar (``--faults SPEC`` and ``POST /control/faults {"spec": SPEC}``)::

    SPEC  := RULE ( ";" RULE )*
    RULE  := KIND [ ":" PARAM ( "," PARAM )* ]
    PARAM := NAME "=" VALUE

Kinds, grouped by what they act on:

* per data frame sent on a WebSocket (spot ``/v2``, level3 ``/l3/v2``, futures ``/ws/v1``):
  ``drop`` (frame not sent), ``duplicate`` (sent twice), ``reorder`` (swapped with the next
  frame of that connection), ``checksum`` (the ``checksum`` value altered), ``number`` (one
  price/qty digit altered), ``malformed`` (the frame truncated so it is invalid JSON);
* per connection: ``stall`` (no data and no heartbeats for ``duration`` seconds, frames are
  held and delivered afterwards), ``close`` (socket closed abruptly, no close handshake),
  ``refuse`` (new WebSocket connects answered with HTTP 503);
* REST: ``slow_rest`` (responses delayed by ``delay`` seconds), ``rest_limit`` (Kraken's
  rate-limit error envelope instead of data: ``EGeneral:Too many requests`` on public and
  ``EAPI:Rate limit exceeded`` on private endpoints, or ``error=TEXT``), ``token_reject``
  (a valid level3 token is refused on subscribe);
* instruments: ``list`` (a new pair is listed; ``symbol=`` optional), ``delist`` (``symbol=``
  or a random online pair), ``status`` (``symbol=``, ``status=`` e.g. ``cancel_only``);
* FIX sessions (the acceptor, ``endpoint=fix_l2|fix_l3``; schedule only): ``fix_gap`` (the
  next message skips one MsgSeqNum), ``fix_duplicate`` (an earlier message is sent again
  with PossDupFlag=Y and OrigSendingTime), ``fix_checksum`` (the next message's CheckSum is
  wrong), ``fix_stall`` (no heartbeats and no data for ``duration`` seconds, default
  2.5 x HeartBtInt; answers are held and sent afterwards), ``fix_logout`` (a Logout, then
  the connection is closed). See :mod:`recorder.sim.fix_acceptor`.

Parameters (all optional unless noted):

``rate=P``
    probability in [0, 1] that each eligible event (frame, connect, request) is hit,
    drawn from the plan's seeded RNG;
``at=S``, ``every=S``
    schedule in seconds since the plan started (for rules added at runtime: since they
    were added). ``at`` fires once; ``every`` repeats (first at ``at`` if given, else at
    ``every``);
``duration=S``
    with a schedule, the rule is active for S seconds from each firing (frames then hit
    with probability ``rate``, default 1); without ``duration`` a scheduled frame/connect/
    request fault hits the next single eligible event. ``stall`` uses it as the stall
    length (default 5), ``refuse`` as the refusal window (default: one connect);
``channel=NAME``, ``symbol=SYM``, ``endpoint=spot|l3|futures|fix_l2|fix_l3``
    filters; a connection-wide scheduled fault (``stall``/``close``, and every ``fix_*``
    kind) hits every connection of the endpoint that is subscribed to the channel/symbol;
``count=N``
    stop after N injections;
``delay=S`` (``slow_rest``, default 2), ``status=NAME`` (``status``), ``error=TEXT``
    (``rest_limit``).

Example: ``drop:channel=book,symbol=BTC/USD,rate=0.01;stall:at=30,duration=5;close:every=20``.
Rules without ``rate`` and without a schedule are rejected, as are unknown kinds/parameters.

Every injection is reported to a sink (the truth file) as a dict with ``t_ns``, ``kind``
(``"fault"``), ``fault``, ``conn``, ``endpoint``, ``channel``, ``symbol`` and ``detail``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from recorder.errors import RecorderError

__all__ = [
    "FRAME_KINDS",
    "CONNECTION_KINDS",
    "INSTRUMENT_KINDS",
    "FIX_KINDS",
    "KINDS",
    "FaultError",
    "FaultRule",
    "FaultPlan",
    "FrameVerdict",
    "parse_faults",
    "corrupt_checksum",
    "corrupt_number",
    "malform",
]


class FaultError(RecorderError, ValueError):
    """A fault specification is malformed."""


FRAME_KINDS: Final = frozenset({"drop", "duplicate", "reorder", "checksum", "number", "malformed"})
CONNECTION_KINDS: Final = frozenset({"stall", "close"})
INSTRUMENT_KINDS: Final = frozenset({"list", "delist", "status"})
REST_KINDS: Final = frozenset({"slow_rest", "rest_limit", "token_reject"})
#: faults of a FIX session (the sim's acceptor), applied per session when their schedule fires
FIX_KINDS: Final = frozenset({"fix_gap", "fix_duplicate", "fix_checksum", "fix_stall", "fix_logout"})
KINDS: Final = (FRAME_KINDS | CONNECTION_KINDS | INSTRUMENT_KINDS | REST_KINDS | FIX_KINDS
                | {"refuse"})

_FLOAT_PARAMS: Final = ("rate", "at", "every", "duration", "delay")
_STR_PARAMS: Final = ("channel", "symbol", "endpoint", "status", "error")
_ENDPOINTS: Final = frozenset({"spot", "l3", "futures", "fix_l2", "fix_l3"})
_PAIR_STATUSES: Final = frozenset(
    {"cancel_only", "delisted", "limit_only", "maintenance", "online", "post_only",
     "reduce_only", "work_in_progress"}
)


@dataclass(slots=True)
class FaultRule:
    """One parsed rule plus its firing state."""

    kind: str
    rate: float | None = None
    at: float | None = None
    every: float | None = None
    duration: float | None = None
    delay: float | None = None
    channel: str | None = None
    symbol: str | None = None
    endpoint: str | None = None
    status: str | None = None
    error: str | None = None
    count: int | None = None
    text: str = ""
    # --- state
    origin_s: float = 0.0
    fired: int = 0
    _next_s: float | None = field(default=None, repr=False)
    _window_end_s: float = field(default=-1.0, repr=False)
    _armed: int = field(default=0, repr=False)

    @property
    def scheduled(self) -> bool:
        return self.at is not None or self.every is not None

    def exhausted(self) -> bool:
        return self.count is not None and self.fired >= self.count

    def matches(self, endpoint: str | None, channel: str | None, symbol: str | None) -> bool:
        return (
            (self.endpoint is None or endpoint is None or self.endpoint == endpoint)
            and (self.channel is None or self.channel == channel)
            and (self.symbol is None or self.symbol == symbol)
        )

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.text, "kind": self.kind, "fired": self.fired}
        return out


def _parse_rule(text: str) -> FaultRule:
    kind, _, params = text.strip().partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        raise FaultError(f"unknown fault kind {kind!r} in {text!r} (known: {', '.join(sorted(KINDS))})")
    rule = FaultRule(kind=kind, text=text.strip())
    for item in filter(None, (p.strip() for p in params.split(","))):
        name, eq, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not value:
            raise FaultError(f"parameter {item!r} in {text!r} must be NAME=VALUE")
        if name in _FLOAT_PARAMS:
            try:
                number = float(value)
            except ValueError:
                raise FaultError(f"{name}={value!r} in {text!r} is not a number") from None
            if number < 0 or number != number or number == float("inf"):
                raise FaultError(f"{name}={value!r} in {text!r} must be a finite number >= 0")
            if name == "rate" and number > 1:
                raise FaultError(f"rate={value} in {text!r} must be within [0, 1]")
            if name == "every" and number <= 0:
                raise FaultError(f"every={value} in {text!r} must be > 0")
            setattr(rule, name, number)
        elif name in _STR_PARAMS:
            setattr(rule, name, value)
        elif name == "count":
            if not value.isdigit() or int(value) < 1:
                raise FaultError(f"count={value!r} in {text!r} must be a positive integer")
            rule.count = int(value)
        else:
            raise FaultError(f"unknown parameter {name!r} in {text!r}")
    if rule.endpoint is not None and rule.endpoint not in _ENDPOINTS:
        raise FaultError(f"endpoint={rule.endpoint!r} in {text!r} must be one of "
                         "spot, l3, futures, fix_l2, fix_l3")
    if kind in FIX_KINDS:
        if not rule.scheduled or rule.rate is not None:
            raise FaultError(f"{kind!r} needs a schedule (at= or every=) and no rate= in {text!r}")
        if rule.endpoint is not None and not rule.endpoint.startswith("fix_"):
            raise FaultError(f"{kind!r} acts on FIX sessions: endpoint must be fix_l2 or fix_l3")
    if kind in INSTRUMENT_KINDS:
        if not rule.scheduled:
            raise FaultError(f"{kind!r} needs a schedule (at= or every=) in {text!r}")
        if kind == "status":
            if rule.symbol is None or rule.status is None:
                raise FaultError(f"'status' needs symbol= and status= in {text!r}")
            if rule.status not in _PAIR_STATUSES:
                raise FaultError(f"status={rule.status!r} in {text!r} is not a Kraken pair status")
    elif rule.rate is None and not rule.scheduled:
        raise FaultError(f"rule {text!r} needs rate= or a schedule (at=, every=)")
    if kind == "stall" and rule.duration is None:
        rule.duration = 5.0
    if kind == "slow_rest" and rule.delay is None:
        rule.delay = 2.0
    return rule


def parse_faults(spec: str | None) -> list[FaultRule]:
    """Parse a fault specification (see module docstring); empty or None gives no rules."""
    if spec is None:
        return []
    return [_parse_rule(part) for part in spec.split(";") if part.strip()]


# --------------------------------------------------------------------------------------------
# Frame mutations (pure text edits; the first matching token is changed)

_CHECKSUM_RE: Final = re.compile(r'"checksum":\s*(\d+)')
_EVENT_RE: Final = re.compile(r'"event":\s*"(\w+)"')
_NUMBER_RE: Final = re.compile(r'"(price|qty|limit_price|order_qty)":\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)')


def corrupt_checksum(frame: str) -> tuple[str, dict[str, Any]] | None:
    """Replace the first checksum value with a different uint32; None if there is none."""
    m = _CHECKSUM_RE.search(frame)
    if m is None:
        return None
    old = int(m.group(1))
    new = (old ^ 0x5A5A5A5A) & 0xFFFFFFFF or 1
    return frame[: m.start(1)] + str(new) + frame[m.end(1):], {"field": "checksum", "old": old, "new": new}


def corrupt_number(frame: str) -> tuple[str, dict[str, Any]] | None:
    """Change the last digit of the first price/qty number; None if there is none. The detail
    names the field, the old and new text and, inside a level3 order event, the ``event``."""
    m = _NUMBER_RE.search(frame)
    if m is None:
        return None
    token = m.group(2)
    mantissa_end = len(token)
    for i, ch in enumerate(token):
        if ch in "eE":
            mantissa_end = i
            break
    idx = max(i for i in range(mantissa_end) if token[i].isdigit())
    digit = int(token[idx])
    new_token = token[:idx] + str((digit + 1) % 10 if digit != 9 else 8) + token[idx + 1:]
    detail = {"field": m.group(1), "old": token, "new": new_token}
    event = _EVENT_RE.search(frame, frame.rfind("{", 0, m.start()), m.start())
    if event is not None:  # a level3 order event: a delete's numbers carry no book state
        detail["event"] = event.group(1)
    return frame[: m.start(2)] + new_token + frame[m.end(2):], detail


def malform(frame: str) -> tuple[str, dict[str, Any]]:
    """Cut the frame so that it is no longer valid JSON."""
    cut = max(1, len(frame) // 2)
    return frame[:cut], {"original_len": len(frame), "sent_len": cut}


# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class FrameVerdict:
    """What to do with one outgoing frame on one connection."""

    frames: list[str]  #: frames to send now, in order (empty = dropped)
    hold: str | None = None  #: a frame to send after the next one (reorder)
    close: bool = False  #: close the connection abruptly after sending ``frames``
    stall_s: float = 0.0  #: stall the connection for this many seconds


FaultSink = Callable[[dict[str, Any]], None]


class FaultPlan:
    """A set of rules, a seeded RNG and a clock; decides and records every injection.

    ``clock_ns`` returns the current time in ns (wall clock when serving, virtual time in
    record mode); schedules are measured from ``start_ns``. ``sink`` receives one dict per
    injected fault. Not thread-safe (one event loop).
    """

    def __init__(
        self,
        rules: list[FaultRule],
        *,
        seed: int,
        clock_ns: Callable[[], int],
        sink: FaultSink | None = None,
    ) -> None:
        self._rng = random.Random(f"faults:{seed}")
        self._clock_ns = clock_ns
        self.start_ns = clock_ns()
        self._sink = sink
        self.rules: list[FaultRule] = []
        self.injected = 0
        #: (endpoint, channel, symbol) -> may a rule act on such a data frame? (see
        #: :meth:`affects_frames`; rebuilt whenever the rules change)
        self._frame_filter: dict[tuple[str, str | None, str | None], bool] = {}
        self.add(rules, relative_to_now=False)

    # --- management -------------------------------------------------------------------------

    def _now_s(self) -> float:
        return (self._clock_ns() - self.start_ns) / 1e9

    def add(self, rules: list[FaultRule], *, relative_to_now: bool = True) -> None:
        """Add rules; with ``relative_to_now`` their schedules start now."""
        origin = self._now_s() if relative_to_now else 0.0
        for rule in rules:
            rule.origin_s = origin
            if rule.scheduled:
                rule._next_s = origin + (rule.at if rule.at is not None else rule.every or 0.0)
            self.rules.append(rule)
        self._frame_filter = {}

    def clear(self) -> None:
        self.rules.clear()
        self._frame_filter = {}

    @staticmethod
    def _acts_on_frames(rule: FaultRule) -> bool:
        return rule.kind in FRAME_KINDS or (rule.kind in CONNECTION_KINDS and rule.rate is not None)

    def affects_frames(self, endpoint: str, channel: str | None, symbol: str | None) -> bool:
        """Could any rule act on a data frame of this endpoint/channel/symbol?

        False means :meth:`on_frame` would return the frame unchanged without touching any
        rule or the RNG, so the caller may skip it. Memoised per triple until the rules
        change (exhausted rules still count: :meth:`on_frame` skips them itself)."""
        where = (endpoint, channel, symbol)
        hit = self._frame_filter.get(where)
        if hit is None:
            hit = any(self._acts_on_frames(r) and r.matches(endpoint, channel, symbol)
                      for r in self.rules)
            self._frame_filter[where] = hit
        return hit

    def describe(self) -> list[dict[str, Any]]:
        return [r.describe() for r in self.rules]

    @property
    def active(self) -> bool:
        return bool(self.rules)

    def set_sink(self, sink: FaultSink | None) -> None:
        self._sink = sink

    def record(
        self,
        fault: str,
        *,
        conn: int | None = None,
        endpoint: str | None = None,
        channel: str | None = None,
        symbol: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Report one injection (also used by the server for faults it carries out itself)."""
        self.injected += 1
        if self._sink is not None:
            self._sink({
                "t_ns": self._clock_ns(), "kind": "fault", "fault": fault, "conn": conn,
                "endpoint": endpoint, "channel": channel, "symbol": symbol,
                "detail": detail or {},
            })

    # --- scheduling core --------------------------------------------------------------------

    def _tick(self, rule: FaultRule, now: float) -> bool:
        """Advance ``rule``'s schedule to ``now``; True if it fired (again) since last tick."""
        fired = False
        while rule._next_s is not None and now >= rule._next_s:
            fired = True
            if rule.duration is not None:
                rule._window_end_s = rule._next_s + rule.duration
            else:
                rule._armed = 1
            if rule.every is not None:
                rule._next_s += rule.every
            else:
                rule._next_s = None
        return fired

    def _hits(self, rule: FaultRule, now: float) -> bool:
        """Does the next eligible event get hit by ``rule``?  Consumes a one-shot arming."""
        if rule.exhausted():
            return False
        if rule.scheduled:
            self._tick(rule, now)
            if now < rule._window_end_s:
                return rule.rate is None or self._rng.random() < rule.rate
            if rule._armed:
                rule._armed = 0
                return True
            return False
        return rule.rate is not None and self._rng.random() < rule.rate

    # --- decisions --------------------------------------------------------------------------

    def on_frame(
        self,
        frame: str,
        *,
        conn: int,
        endpoint: str,
        channel: str | None,
        symbol: str | None,
    ) -> FrameVerdict:
        """Decide the fate of one data frame; records every injection."""
        verdict = FrameVerdict(frames=[frame])
        if not self.rules:
            return verdict
        now = self._now_s()
        where = {"conn": conn, "endpoint": endpoint, "channel": channel, "symbol": symbol}
        for rule in self.rules:
            kind = rule.kind
            if not self._acts_on_frames(rule):
                continue
            if not rule.matches(endpoint, channel, symbol) or not self._hits(rule, now):
                continue
            if not verdict.frames:
                break
            current = verdict.frames[-1]
            detail: dict[str, Any] = {"frame_len": len(current)}
            if kind == "drop":
                verdict.frames = []
                detail["frame"] = current[:200]
            elif kind == "duplicate":
                verdict.frames = verdict.frames + [current]
            elif kind == "reorder":
                verdict.hold = verdict.frames.pop()
                detail["frame"] = current[:200]
            elif kind in ("checksum", "number"):
                edited = corrupt_checksum(current) if kind == "checksum" else corrupt_number(current)
                if edited is None:
                    if rule.scheduled and rule.duration is None:
                        rule._armed = 1  # keep the one-shot for a frame that has the field
                    continue
                verdict.frames[-1], extra = edited
                detail.update(extra)
            elif kind == "malformed":
                verdict.frames[-1], extra = malform(current)
                detail.update(extra)
            elif kind == "close":
                verdict.close = True
            elif kind == "stall":
                verdict.stall_s = max(verdict.stall_s, rule.duration or 5.0)
                detail["duration_s"] = rule.duration
            rule.fired += 1
            self.record(kind, detail=detail, **where)
        return verdict

    def due_connection_faults(self) -> list[FaultRule]:
        """Scheduled ``stall``/``close`` rules that fire now (the server applies them to every
        matching connection and calls :meth:`record` per connection)."""
        now = self._now_s()
        due = []
        for rule in self.rules:
            if rule.kind in CONNECTION_KINDS and rule.scheduled and not rule.exhausted():
                saved_window = rule._window_end_s
                if self._tick(rule, now):
                    rule._armed = 0
                    rule._window_end_s = saved_window
                    rule.fired += 1
                    due.append(rule)
        return due

    def due_fix_faults(self) -> list[FaultRule]:
        """Scheduled FIX session faults that fire now (the server applies each one to every
        matching FIX session and calls :meth:`record` per session)."""
        now = self._now_s()
        due = []
        for rule in self.rules:
            if rule.kind in FIX_KINDS and not rule.exhausted() and self._tick(rule, now):
                rule._armed = 0
                rule.fired += 1
                due.append(rule)
        return due

    def due_instrument_changes(self) -> list[FaultRule]:
        """Instrument-change rules that fire now (the server performs and records them)."""
        now = self._now_s()
        due = []
        for rule in self.rules:
            if rule.kind in INSTRUMENT_KINDS and not rule.exhausted() and self._tick(rule, now):
                rule._armed = 0
                rule.fired += 1
                due.append(rule)
        return due

    def choose(self, options: list[str]) -> str:
        """A seeded choice (e.g. which pair a ``delist`` without ``symbol=`` hits)."""
        return self._rng.choice(options)

    def refuse_connect(self, *, endpoint: str, conn: int) -> bool:
        """True if this WebSocket connect must be refused (recorded)."""
        now = self._now_s()
        for rule in self.rules:
            if rule.kind == "refuse" and rule.matches(endpoint, None, None) and self._hits(rule, now):
                rule.fired += 1
                self.record("refuse", conn=conn, endpoint=endpoint, detail={"http_status": 503})
                return True
        return False

    def rest(self, *, path: str, private: bool) -> tuple[float, str | None]:
        """(delay seconds, error text or None) for one REST request. ``slow_rest`` is recorded
        now; a ``rest_limit`` error is recorded by :meth:`rest_answered` when it is answered
        (after any delay): that is when a client can see it."""
        delay, error = 0.0, None
        if not self.rules:
            return delay, error
        now = self._now_s()
        for rule in self.rules:
            if rule.kind == "slow_rest" and self._rest_match(rule, path) and self._hits(rule, now):
                rule.fired += 1
                delay = max(delay, rule.delay or 0.0)
                self.record("slow_rest", endpoint="rest", detail={"path": path, "delay_s": rule.delay})
            elif rule.kind == "rest_limit" and self._rest_match(rule, path) and self._hits(rule, now):
                rule.fired += 1
                error = rule.error or (
                    "EAPI:Rate limit exceeded" if private else "EGeneral:Too many requests"
                )
        return delay, error

    def rest_answered(self, *, path: str, error: str) -> None:
        """Record a ``rest_limit`` error as it is sent (see :meth:`rest`)."""
        self.record("rest_limit", endpoint="rest", detail={"path": path, "error": error})

    @staticmethod
    def _rest_match(rule: FaultRule, path: str) -> bool:
        return rule.channel is None or path.rstrip("/").endswith("/" + rule.channel)

    def reject_token(self, *, conn: int, symbol: str | None) -> bool:
        """True if a valid level3 token must be refused on this subscribe (recorded)."""
        now = self._now_s()
        for rule in self.rules:
            if rule.kind == "token_reject" and rule.matches("l3", "level3", symbol) and self._hits(rule, now):
                rule.fired += 1
                self.record("token_reject", conn=conn, endpoint="l3", channel="level3", symbol=symbol)
                return True
        return False
