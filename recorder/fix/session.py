"""The FIX 4.4 session layer of a market-data initiator, as a pure state machine.

:class:`FixSession` is driven by three inputs: :meth:`FixSession.start` (a connection is
up), :meth:`FixSession.on_frame` (one dict from ``recorder._core.FixFramer.feed``) and
:meth:`FixSession.on_timer` (the caller's clock reached :meth:`FixSession.next_deadline_ns`).
Each returns a list of :data:`SessionAction` for the caller to carry out in order: bytes to
:class:`Send`, application messages to :class:`Deliver`, things to record
(:class:`GapDetected`, :class:`DuplicateIgnored`, :class:`InboundRejected`,
:class:`PeerReject`, :class:`ResubscribeNeeded`), and :class:`Disconnect`. The session does
no I/O and reads no clock: ``now_ns`` is always passed in (int64 ns).

Sequence rules (FIX 4.4 session layer; Kraken's additions and our assumptions are in
docs/fix.md):

* The first inbound message must be a Logon. MsgSeqNum is checked on every inbound message.
* **Equal** to the expected number: processed, and the expected number moves on.
* **Higher**: a gap. We send ResendRequest(expected, 0) once and hold the message back until
  the gap is filled. A Logout or a hard SequenceReset is processed at once.
* **Lower** with PossDupFlag=Y: a duplicate. It is ignored and reported. Without
  PossDupFlag: fatal. We send Logout and disconnect.
* A SequenceReset-GapFill while we wait for a resend means that market data in the gap will
  never arrive. This also applies to a hard reset that skips numbers. The books are then
  unsound: every subscription is sent again under a new MDReqID, and
  :class:`ResubscribeNeeded` is reported.
* Bytes the framer rejected (garbage, a wrong BodyLength or CheckSum) are ignored, as FIX
  prescribes. They are reported as :class:`InboundRejected`, and the sequence gap they leave
  is caught by the next good message. A well-framed message with an invalid body (unknown
  MsgType, a missing field, a bad number, a huge group) gets a session-level Reject (35=3)
  and still uses up its sequence number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Union

from recorder import _core
from recorder.protocol.errors import FixError

__all__ = [
    "Deliver", "Disconnect", "DuplicateIgnored", "FixSession", "GapDetected", "InboundRejected",
    "LoggedOn", "PeerReject", "ResubscribeNeeded", "Send", "SessionAction", "SessionConfig",
    "SessionState", "Subscription",
]

NS_PER_S = 1_000_000_000
# SessionRejectReason (373) for each reject code of the core's decoder.
_REJECT_REASON_CODE = {
    "missing_field": 1,
    "bad_field": 5,
    "bad_number": 6,
    "unknown_msg_type": 11,
    "duplicate_field": 13,
    "group_too_large": 16,
    "group_mismatch": 16,
    "malformed": 0,
}
# Framing failures: the bytes are garbled, FIX says ignore them (no Reject, no sequence use).
_GARBLED = frozenset({"garbage", "body_length", "checksum", "too_long"})
# Most messages held back while a resend is outstanding before the session gives up.
MAX_QUEUED = 100_000


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """A market-data session's fixed parameters."""

    sender_comp_id: str
    target_comp_id: str = "KRAKEN-MD"
    heartbeat_s: int = 60
    reset_on_logon: bool = True
    logon_timeout_s: int = 10
    logout_timeout_s: int = 5

    def __post_init__(self) -> None:
        if not self.sender_comp_id or not self.target_comp_id:
            raise FixError("SenderCompID and TargetCompID must not be empty")
        if not 1 <= self.heartbeat_s <= 3600:
            raise FixError(f"HeartBtInt {self.heartbeat_s} outside 1..3600 s")


@dataclass(frozen=True, slots=True)
class Subscription:
    """A MarketDataRequest to (re)send: L2 (AggregatedBook=Y) or L3, book and/or trades."""

    md_req_id: str
    symbols: tuple[str, ...]
    depth: int = 10
    level3: bool = False
    trades: bool = False

    def __post_init__(self) -> None:
        if not self.md_req_id or not self.symbols:
            raise FixError("a subscription needs an MDReqID and at least one symbol")
        if self.depth not in (0, 1, 10, 25, 100, 500, 1000):
            raise FixError(f"MarketDepth {self.depth} is not one Kraken accepts")
        if self.level3 and self.trades:
            raise FixError("Kraken rejects trades on a Level 3 request (MDReqRejReason C)")

    def request_fields(self, md_req_id: str, subscribe: bool) -> list[tuple[int, str]]:
        """The body of the 35=V message for this subscription under ``md_req_id``."""
        entry_types = ["0", "1"] + (["2"] if self.trades else [])
        fields: list[tuple[int, str]] = [
            (262, md_req_id),
            (263, "1" if subscribe else "2"),
            (264, str(self.depth)),
            (265, "1"),
            (266, "N" if self.level3 else "Y"),
            (267, str(len(entry_types))),
        ]
        fields += [(269, t) for t in entry_types]
        fields.append((146, str(len(self.symbols))))
        fields += [(55, s) for s in self.symbols]
        return fields


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``data`` (one encoded message) to the socket."""

    msg_type: str
    seq_num: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Deliver:
    """An application message (W, X, Y, j, ...), in sequence order, exactly once."""

    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LoggedOn:
    """The peer accepted our Logon; ``heartbeat_s`` is the interval in force."""

    heartbeat_s: int


@dataclass(frozen=True, slots=True)
class GapDetected:
    """Inbound MsgSeqNum ``received`` where ``expected`` was due."""

    expected: int
    received: int


@dataclass(frozen=True, slots=True)
class DuplicateIgnored:
    """A PossDup message below the expected number: dropped, not applied twice."""

    seq_num: int
    msg_type: str


@dataclass(frozen=True, slots=True)
class InboundRejected:
    """Inbound bytes the codec rejected (``reason`` is the core's code)."""

    reason: str
    detail: str
    raw: bytes
    seq_num: int | None


@dataclass(frozen=True, slots=True)
class PeerReject:
    """The peer rejected one of our messages (35=3 session-level Reject)."""

    ref_seq_num: int | None
    reason_code: int | None
    text: str


@dataclass(frozen=True, slots=True)
class ResubscribeNeeded:
    """Market data was lost: books must be rebuilt; subscriptions were sent again."""

    reason: str
    md_req_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the connection. ``clean`` is True after a Logout exchange."""

    reason: str
    clean: bool


SessionAction = Union[
    Send, Deliver, LoggedOn, GapDetected, DuplicateIgnored, InboundRejected, PeerReject,
    ResubscribeNeeded, Disconnect,
]


class SessionState(Enum):
    """Where the session is."""

    DISCONNECTED = "disconnected"
    LOGON_SENT = "logon_sent"
    ACTIVE = "active"
    LOGOUT_SENT = "logout_sent"


@dataclass(slots=True)
class _Subscribed:
    spec: Subscription
    generation: int = 0

    @property
    def current_id(self) -> str:
        return self.spec.md_req_id if self.generation == 0 else (
            f"{self.spec.md_req_id}.{self.generation}")


@dataclass(slots=True)
class FixSession:
    """A market-data initiator's session state; reusable across reconnects (``start``)."""

    config: SessionConfig
    state: SessionState = SessionState.DISCONNECTED
    next_out: int = 1
    expected_in: int = 1
    heartbeat_s: int = 0
    last_sent_ns: int = 0
    last_received_ns: int = 0
    state_since_ns: int = 0
    test_request_id: str | None = None
    test_request_sent_ns: int = 0
    test_request_count: int = 0
    resend_until: int | None = None
    resend_sent_ns: int = 0
    queued: dict[int, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, _Subscribed] = field(default_factory=dict)

    # ---- inputs -------------------------------------------------------------------------

    def start(self, now_ns: int) -> list[SessionAction]:
        """A connection is up: send Logon (resetting both sequences if so configured)."""
        if self.config.reset_on_logon:
            self.next_out, self.expected_in = 1, 1
        self.state, self.state_since_ns = SessionState.LOGON_SENT, now_ns
        self.heartbeat_s = self.config.heartbeat_s
        self.last_received_ns = now_ns
        self.test_request_id, self.test_request_count = None, 0
        self.resend_until, self.queued = None, {}
        fields = [(98, "0"), (108, str(self.config.heartbeat_s))]
        if self.config.reset_on_logon:
            fields.append((141, "Y"))
        return [self._send("A", fields, now_ns)]

    def subscribe(self, spec: Subscription, now_ns: int) -> list[SessionAction]:
        """Register ``spec``; send it now if logged on (else on the next logon)."""
        if spec.md_req_id in self.subscriptions:
            raise FixError(f"MDReqID {spec.md_req_id!r} is already subscribed")
        self.subscriptions[spec.md_req_id] = _Subscribed(spec)
        if self.state is not SessionState.ACTIVE:
            return []
        return [self._send("V", spec.request_fields(spec.md_req_id, True), now_ns)]

    def logout(self, text: str, now_ns: int) -> list[SessionAction]:
        """Start a clean logout; the Disconnect follows the peer's Logout or a timeout."""
        if self.state in (SessionState.DISCONNECTED, SessionState.LOGOUT_SENT):
            return []
        self.state, self.state_since_ns = SessionState.LOGOUT_SENT, now_ns
        return [self._send("5", [(58, text)] if text else [], now_ns)]

    def resubscribe(self, reason: str, now_ns: int) -> list[SessionAction]:
        """Send every subscription again under a new MDReqID (unsubscribe, subscribe), e.g.
        because the recorder's books were cut by a sequence gap and must be rebuilt from
        fresh snapshots. Nothing while not logged on (a logon sends them all anyway)."""
        if self.state is not SessionState.ACTIVE:
            return []
        return self._resubscribe(reason, now_ns)

    def connection_lost(self) -> None:
        """The transport closed (the caller's side): back to DISCONNECTED."""
        self.state = SessionState.DISCONNECTED

    def on_frame(self, frame: dict[str, Any], now_ns: int) -> list[SessionAction]:
        """One frame from ``FixFramer.feed``: check it, act on it, deliver it."""
        if self.state is SessionState.DISCONNECTED:
            return []
        self.last_received_ns = now_ns
        if not frame["ok"]:
            return self._on_reject(frame, now_ns)
        if frame["sender"] != self.config.target_comp_id or (
                frame["target"] != self.config.sender_comp_id):
            actions = [self._session_reject(frame["seq_num"], frame["msg_type"], 9, None,
                                            "CompID problem", now_ns)]
            return actions + self._fatal("CompID problem", now_ns)
        if self.state is SessionState.LOGON_SENT:
            if frame["msg_type"] != "A":
                return self._fatal(f"first message is {frame['msg_type']!r}, not Logon", now_ns)
            return self._on_logon(frame, now_ns)
        return self._sequenced(frame, now_ns)

    def on_timer(self, now_ns: int) -> list[SessionAction]:
        """Heartbeats, TestRequests and timeouts due at ``now_ns``."""
        hb = self.heartbeat_s * NS_PER_S
        if self.state is SessionState.LOGON_SENT:
            if now_ns - self.state_since_ns >= self.config.logon_timeout_s * NS_PER_S:
                return self._drop("no Logon answer in time")
            return []
        if self.state is SessionState.LOGOUT_SENT:
            if now_ns - self.state_since_ns >= self.config.logout_timeout_s * NS_PER_S:
                return self._drop("no Logout answer in time")
            return []
        if self.state is not SessionState.ACTIVE:
            return []
        actions: list[SessionAction] = []
        if self.test_request_id is not None and now_ns - self.test_request_sent_ns >= hb:
            return self._drop("heartbeat timeout: TestRequest unanswered")
        if self.resend_until is not None and now_ns - self.resend_sent_ns >= 2 * hb:
            return actions + self._fatal("ResendRequest not answered in time", now_ns)
        if self.test_request_id is None and now_ns - self.last_received_ns >= hb + hb // 5:
            self.test_request_count += 1
            self.test_request_id = f"TEST{self.test_request_count}"
            self.test_request_sent_ns = now_ns
            actions.append(self._send("1", [(112, self.test_request_id)], now_ns))
        if now_ns - self.last_sent_ns >= hb:
            actions.append(self._send("0", [], now_ns))
        return actions

    def next_deadline_ns(self) -> int | None:
        """When :meth:`on_timer` has something to do next (None when disconnected)."""
        if self.state is SessionState.LOGON_SENT:
            return self.state_since_ns + self.config.logon_timeout_s * NS_PER_S
        if self.state is SessionState.LOGOUT_SENT:
            return self.state_since_ns + self.config.logout_timeout_s * NS_PER_S
        if self.state is not SessionState.ACTIVE:
            return None
        hb = self.heartbeat_s * NS_PER_S
        deadlines = [self.last_sent_ns + hb]
        if self.test_request_id is not None:
            deadlines.append(self.test_request_sent_ns + hb)
        else:
            deadlines.append(self.last_received_ns + hb + hb // 5)
        if self.resend_until is not None:
            deadlines.append(self.resend_sent_ns + 2 * hb)
        return min(deadlines)

    # ---- internals ----------------------------------------------------------------------

    def _send(self, msg_type: str, fields: list[tuple[int, str]], now_ns: int,
              *, seq_num: int | None = None, poss_dup: bool = False) -> Send:
        seq = self.next_out if seq_num is None else seq_num
        data = _core.encode_fix(msg_type, seq, self.config.sender_comp_id,
                                self.config.target_comp_id, now_ns, fields, poss_dup=poss_dup)
        if seq_num is None:
            self.next_out += 1
        self.last_sent_ns = now_ns
        return Send(msg_type, seq, data)

    def _drop(self, reason: str) -> list[SessionAction]:
        self.state = SessionState.DISCONNECTED
        return [Disconnect(reason, clean=False)]

    def _fatal(self, reason: str, now_ns: int) -> list[SessionAction]:
        """Logout with ``reason`` and disconnect without waiting (FIX: seq too low etc.)."""
        logout = self._send("5", [(58, reason[:200])], now_ns)
        self.state = SessionState.DISCONNECTED
        return [logout, Disconnect(reason, clean=False)]

    def _session_reject(self, ref_seq: int, ref_type: str | None, code: int,
                        ref_tag: int | None, text: str, now_ns: int) -> Send:
        fields: list[tuple[int, str]] = [(45, str(ref_seq))]
        if ref_tag is not None:
            fields.append((371, str(ref_tag)))
        if ref_type:
            fields.append((372, ref_type))
        fields += [(373, str(code)), (58, text[:200] or "rejected")]
        return self._send("3", fields, now_ns)

    def _on_reject(self, frame: dict[str, Any], now_ns: int) -> list[SessionAction]:
        report = InboundRejected(frame["reason"], frame["detail"], frame["raw"],
                                 frame.get("seq_num"))
        if frame["reason"] in _GARBLED:
            return [report]
        seq = frame.get("seq_num")
        if seq is None:
            return [report] + self._fatal(f"MsgSeqNum missing or invalid: {frame['detail']}",
                                          now_ns)
        if self.state is SessionState.LOGON_SENT:
            return [report] + self._fatal(f"Logon answer rejected: {frame['detail']}", now_ns)
        # a well-framed message with a bad body still uses up its sequence number
        placeholder = {"ok": True, "msg_type": None, "seq_num": seq,
                       "poss_dup": frame.get("poss_dup", False), "reject": frame}
        return [report] + self._sequenced(placeholder, now_ns)

    def _on_logon(self, frame: dict[str, Any], now_ns: int) -> list[SessionAction]:
        peer_hb = frame["fields"].get(108)
        if peer_hb is not None and peer_hb.isdigit() and 1 <= int(peer_hb) <= 3600:
            self.heartbeat_s = int(peer_hb)
        self.state, self.state_since_ns = SessionState.ACTIVE, now_ns
        actions: list[SessionAction] = [LoggedOn(self.heartbeat_s)]
        seq = frame["seq_num"]
        if seq < self.expected_in:
            return actions + self._fatal(
                f"MsgSeqNum too low, expecting {self.expected_in} but received {seq}", now_ns)
        if seq > self.expected_in:
            actions += self._start_resend(seq, now_ns)
        else:
            self.expected_in = seq + 1
        # subscriptions die with the connection (Kraken): send them all again
        for sub in self.subscriptions.values():
            actions.append(self._send("V", sub.spec.request_fields(sub.current_id, True), now_ns))
        return actions

    def _start_resend(self, received: int, now_ns: int) -> list[SessionAction]:
        actions: list[SessionAction] = [GapDetected(self.expected_in, received)]
        if self.resend_until is None:
            actions.append(self._send("2", [(7, str(self.expected_in)), (16, "0")], now_ns))
            self.resend_sent_ns = now_ns
        self.resend_until = max(self.resend_until or 0, received - 1)
        return actions

    def _sequenced(self, frame: dict[str, Any], now_ns: int) -> list[SessionAction]:
        seq: int = frame["seq_num"]
        msg_type = frame["msg_type"]
        if msg_type == "4" and frame["fields"].get(123) != "Y":
            return self._hard_reset(frame, now_ns)
        if seq < self.expected_in:
            if frame["poss_dup"]:
                return [DuplicateIgnored(seq, msg_type or "?")]
            return self._fatal(
                f"MsgSeqNum too low, expecting {self.expected_in} but received {seq}", now_ns)
        if seq > self.expected_in:
            if msg_type == "5":
                return self._process(frame, now_ns)
            if len(self.queued) >= MAX_QUEUED:
                return self._fatal("too many messages held back for a resend", now_ns)
            actions = self._start_resend(seq, now_ns)
            self.queued.setdefault(seq, frame)
            return actions
        actions = self._process(frame, now_ns)
        while self.state is not SessionState.DISCONNECTED and self.expected_in in self.queued:
            actions += self._process(self.queued.pop(self.expected_in), now_ns)
        if self.resend_until is not None and self.expected_in > self.resend_until:
            self.resend_until = None
        if not self.queued and self.resend_until is None:
            self.queued = {}
        return actions

    def _hard_reset(self, frame: dict[str, Any], now_ns: int) -> list[SessionAction]:
        new_seq = int(frame["fields"][36])
        if new_seq < self.expected_in:
            return [self._session_reject(frame["seq_num"], "4", 5, 36,
                                         f"NewSeqNo {new_seq} below {self.expected_in}", now_ns)]
        actions: list[SessionAction] = []
        lost = new_seq > self.expected_in
        if lost:
            actions.append(GapDetected(self.expected_in, new_seq))
        self.expected_in = new_seq
        self.queued = {s: f for s, f in self.queued.items() if s >= new_seq}
        if self.resend_until is not None and new_seq > self.resend_until:
            self.resend_until = None
        if lost:
            actions += self._resubscribe("SequenceReset skipped messages", now_ns)
        return actions

    def _resubscribe(self, reason: str, now_ns: int) -> list[SessionAction]:
        actions: list[SessionAction] = []
        ids = []
        for sub in self.subscriptions.values():
            actions.append(self._send("V", sub.spec.request_fields(sub.current_id, False), now_ns))
            sub.generation += 1
            actions.append(self._send("V", sub.spec.request_fields(sub.current_id, True), now_ns))
            ids.append(sub.current_id)
        return [ResubscribeNeeded(reason, tuple(ids)), *actions]

    def _process(self, frame: dict[str, Any], now_ns: int) -> list[SessionAction]:
        """Act on an in-sequence message (or a Logout ahead of sequence)."""
        seq: int = frame["seq_num"]
        if seq >= self.expected_in:
            self.expected_in = seq + 1
        reject = frame.get("reject")
        if reject is not None:
            code = _REJECT_REASON_CODE.get(reject["reason"], 99)
            return [self._session_reject(seq, reject.get("msg_type"), code, reject.get("ref_tag"),
                                         reject["detail"], now_ns)]
        msg_type = frame["msg_type"]
        fields = frame["fields"]
        if msg_type == "0":
            if self.test_request_id is not None and fields.get(112) == self.test_request_id:
                self.test_request_id = None
            return []
        if msg_type == "1":
            return [self._send("0", [(112, fields[112])], now_ns)]
        if msg_type == "2":
            return self._answer_resend(int(fields[7]), now_ns)
        if msg_type == "3":
            ref = fields.get(45)
            code = fields.get(373)
            return [PeerReject(int(ref) if ref and ref.isdigit() else None,
                               int(code) if code and code.isdigit() else None,
                               fields.get(58, ""))]
        if msg_type == "4":  # GapFill (a hard reset never reaches here)
            return self._gap_fill(frame, now_ns)
        if msg_type == "5":
            if self.state is SessionState.LOGOUT_SENT:
                self.state = SessionState.DISCONNECTED
                return [Disconnect("logout confirmed", clean=True)]
            answer = self._send("5", [], now_ns)
            self.state = SessionState.DISCONNECTED
            return [answer, Disconnect(f"peer logout: {fields.get(58, '')}".rstrip(": "),
                                       clean=True)]
        if msg_type == "A":
            return self._fatal("Logon received on an active session", now_ns)
        return [Deliver(frame)]

    def _gap_fill(self, frame: dict[str, Any], now_ns: int) -> list[SessionAction]:
        new_seq = int(frame["fields"][36])
        seq: int = frame["seq_num"]
        if new_seq <= seq:
            return [self._session_reject(seq, "4", 5, 36,
                                         f"NewSeqNo {new_seq} not above MsgSeqNum {seq}", now_ns)]
        skipped = new_seq - seq
        self.expected_in = new_seq
        for s in [s for s in self.queued if s < new_seq]:
            del self.queued[s]
        if self.resend_until is not None and skipped > 0:
            # what the peer would not replay may have been market data: rebuild the books
            return self._resubscribe(f"GapFill {seq}..{new_seq - 1} during resend", now_ns)
        return []

    def _answer_resend(self, begin: int, now_ns: int) -> list[SessionAction]:
        """We replay nothing (our messages are admin or re-sent subscriptions): gap-fill."""
        begin = max(1, begin)
        if begin >= self.next_out:
            return []
        return [self._send("4", [(123, "Y"), (36, str(self.next_out))], now_ns,
                           seq_num=begin, poss_dup=True)]
