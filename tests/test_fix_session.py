"""The sans-IO FIX session (``recorder.fix.session``): every rule, driven by encoded bytes.

Inbound messages are encoded with the core's encoder and decoded by the core's framer, the
same path a socket's bytes take. Each :class:`Send` is decoded again, so the tests check
real wire messages, not what the session meant to send.
"""

from __future__ import annotations

from typing import Any

import pytest

from recorder import _core
from recorder.fix import (
    Deliver,
    Disconnect,
    DuplicateIgnored,
    FixSession,
    GapDetected,
    InboundRejected,
    LoggedOn,
    PeerReject,
    ResubscribeNeeded,
    Send,
    SessionConfig,
    Subscription,
)
from recorder.fix.session import SessionState
from recorder.protocol.errors import FixError

S = 1_000_000_000
T0 = 1_765_000_000 * S
ME, KRAKEN = "CLIENT1", "KRAKEN-MD"


def frame(msg_type: str, seq: int, fields: list[tuple[int, str]] | None = None, *,
          poss_dup: bool = False, sender: str = KRAKEN, target: str = ME) -> dict[str, Any]:
    data = _core.encode_fix(msg_type, seq, sender, target, T0, fields or [], poss_dup=poss_dup)
    (decoded,) = _core.FixFramer().feed(data)
    return decoded


def sent(actions: list) -> list[dict[str, Any]]:
    """The Send actions, decoded from their bytes."""
    out = []
    for action in actions:
        if isinstance(action, Send):
            (decoded,) = _core.FixFramer().feed(action.data)
            assert decoded["ok"], decoded
            assert decoded["seq_num"] == action.seq_num and decoded["msg_type"] == action.msg_type
            out.append(decoded)
    return out


def kinds(actions: list) -> list[str]:
    return [a.msg_type if isinstance(a, Send) else type(a).__name__ for a in actions]


def snapshot(seq: int, md_req_id: str = "BOOK", **kw: Any) -> dict[str, Any]:
    return frame("W", seq, [(55, "BTC/USD"), (262, md_req_id), (268, "1"), (269, "0"),
                            (278, "O1"), (270, "100.5"), (271, "2")], **kw)


def logged_on(heartbeat_s: int = 30, subs: tuple[Subscription, ...] = ()) -> FixSession:
    session = FixSession(SessionConfig(ME, heartbeat_s=heartbeat_s))
    for sub in subs:
        assert session.subscribe(sub, T0) == []
    session.start(T0)
    session.on_frame(frame("A", 1, [(98, "0"), (108, str(heartbeat_s))]), T0)
    assert session.state is SessionState.ACTIVE
    return session


def test_logon_message_and_reply() -> None:
    session = FixSession(SessionConfig(ME, heartbeat_s=60))
    (logon,) = sent(session.start(T0))
    assert logon["msg_type"] == "A" and logon["seq_num"] == 1
    assert logon["sender"] == ME and logon["target"] == KRAKEN
    assert logon["fields"] == {98: "0", 108: "60", 141: "Y"}
    actions = session.on_frame(frame("A", 1, [(98, "0"), (108, "30")]), T0 + S)
    assert actions == [LoggedOn(30)]
    assert session.heartbeat_s == 30 and session.expected_in == 2


def test_subscriptions_are_sent_on_logon_and_again_after_reconnect() -> None:
    l2 = Subscription("BOOK", ("BTC/USD", "ETH/USD"), depth=10, trades=True)
    l3 = Subscription("L3", ("BTC/USD",), depth=100, level3=True)
    session = logged_on(subs=(l2, l3))
    session.connection_lost()
    session.start(T0 + 10 * S)
    actions = session.on_frame(frame("A", 1, [(98, "0"), (108, "30")]), T0 + 11 * S)
    book, level3 = sent(actions)
    assert book["field_list"] == [(262, "BOOK"), (263, "1"), (264, "10"), (265, "1"), (266, "Y"),
                                  (267, "3"), (269, "0"), (269, "1"), (269, "2"), (146, "2"),
                                  (55, "BTC/USD"), (55, "ETH/USD")]
    assert level3["fields"][266] == "N" and level3["fields"][264] == "100"
    assert level3["seq_num"] == book["seq_num"] + 1 == 3


def test_subscribe_while_active_sends_at_once_and_refuses_duplicates() -> None:
    session = logged_on()
    (request,) = sent(session.subscribe(Subscription("B", ("BTC/USD",)), T0))
    assert request["msg_type"] == "V" and request["seq_num"] == 2
    with pytest.raises(FixError):
        session.subscribe(Subscription("B", ("ETH/USD",)), T0)


@pytest.mark.parametrize("bad", [
    dict(md_req_id="", symbols=("A/B",)), dict(md_req_id="x", symbols=()),
    dict(md_req_id="x", symbols=("A/B",), depth=7),
    dict(md_req_id="x", symbols=("A/B",), level3=True, trades=True),
])
def test_subscription_validation(bad: dict[str, Any]) -> None:
    with pytest.raises(FixError):
        Subscription(**bad)


def test_config_validation() -> None:
    with pytest.raises(FixError):
        SessionConfig("")
    with pytest.raises(FixError):
        SessionConfig("me", heartbeat_s=0)


def test_first_message_must_be_logon() -> None:
    session = FixSession(SessionConfig(ME))
    session.start(T0)
    actions = session.on_frame(frame("0", 1), T0)
    assert kinds(actions) == ["5", "Disconnect"]
    assert session.state is SessionState.DISCONNECTED


def test_logon_timeout() -> None:
    session = FixSession(SessionConfig(ME, logon_timeout_s=10))
    session.start(T0)
    assert session.next_deadline_ns() == T0 + 10 * S
    assert session.on_timer(T0 + 9 * S) == []
    assert session.on_timer(T0 + 10 * S) == [Disconnect("no Logon answer in time", clean=False)]


def test_in_sequence_application_messages_are_delivered() -> None:
    session = logged_on()
    actions = session.on_frame(snapshot(2), T0)
    assert len(actions) == 1 and isinstance(actions[0], Deliver)
    assert actions[0].message["entries"][0]["price"] == (1005, 1)
    assert session.expected_in == 3


def test_test_request_is_answered_with_its_id() -> None:
    session = logged_on()
    (heartbeat,) = sent(session.on_frame(frame("1", 2, [(112, "PING7")]), T0))
    assert heartbeat["msg_type"] == "0" and heartbeat["fields"] == {112: "PING7"}


def test_heartbeat_and_test_request_timers() -> None:
    session = logged_on(heartbeat_s=30)
    t_logon = T0
    assert session.next_deadline_ns() == t_logon + 30 * S
    assert kinds(session.on_timer(t_logon + 30 * S)) == ["0"]        # we were silent
    # inbound silent for HeartBtInt * 1.2: TestRequest
    actions = session.on_timer(t_logon + 36 * S)
    assert kinds(actions) == ["1"]
    (probe,) = sent(actions)
    assert probe["fields"][112] == "TEST1"
    # the answering heartbeat clears it
    assert session.on_frame(frame("0", 2, [(112, "TEST1")]), t_logon + 37 * S) == []
    assert session.test_request_id is None
    # silent again: TestRequest, then no answer within HeartBtInt: disconnect
    assert "1" in kinds(session.on_timer(t_logon + 37 * S + 36 * S))
    actions = session.on_timer(t_logon + 37 * S + 66 * S)
    assert actions == [Disconnect("heartbeat timeout: TestRequest unanswered", clean=False)]


def test_a_heartbeat_with_another_id_does_not_clear_the_test_request() -> None:
    session = logged_on(heartbeat_s=30)
    session.on_timer(T0 + 36 * S)
    session.on_frame(frame("0", 2, [(112, "OTHER")]), T0 + 37 * S)
    assert session.test_request_id == "TEST1"


def test_gap_sends_one_resend_request_and_holds_messages_back() -> None:
    session = logged_on()
    actions = session.on_frame(snapshot(5), T0)
    assert actions[0] == GapDetected(expected=2, received=5)
    (resend,) = sent(actions)
    assert resend["msg_type"] == "2" and resend["fields"] == {7: "2", 16: "0"}
    # a second out-of-order message: gap reported, no second ResendRequest
    actions = session.on_frame(snapshot(6), T0)
    assert kinds(actions) == ["GapDetected"]
    # the replay (PossDup) fills the gap: everything is delivered in order
    delivered = []
    for seq in (2, 3, 4):
        delivered += session.on_frame(snapshot(seq, poss_dup=True), T0)
    assert [a.message["seq_num"] for a in delivered] == [2, 3, 4, 5, 6]
    assert session.expected_in == 7 and session.resend_until is None and session.queued == {}


def test_gap_fill_during_resend_means_data_loss_and_resubscribes() -> None:
    session = logged_on(subs=(Subscription("BOOK", ("BTC/USD",)),))
    session.on_frame(snapshot(5), T0)                     # gap 2..4
    actions = session.on_frame(frame("4", 2, [(123, "Y"), (36, "5")], poss_dup=True), T0)
    assert actions[0] == ResubscribeNeeded("GapFill 2..4 during resend", ("BOOK.1",))
    unsubscribe, resubscribe, = sent(actions)[:2]
    assert unsubscribe["fields"][263] == "2" and unsubscribe["fields"][262] == "BOOK"
    assert resubscribe["fields"][263] == "1" and resubscribe["fields"][262] == "BOOK.1"
    # the held-back message 5 is delivered
    assert any(isinstance(a, Deliver) and a.message["seq_num"] == 5 for a in actions)
    assert session.expected_in == 6


def test_gap_fill_outside_a_resend_just_moves_the_sequence() -> None:
    session = logged_on()
    assert session.on_frame(frame("4", 2, [(123, "Y"), (36, "9")]), T0) == []
    assert session.expected_in == 9


def test_gap_fill_that_goes_backwards_is_rejected() -> None:
    session = logged_on()
    (reject,) = sent(session.on_frame(frame("4", 2, [(123, "Y"), (36, "2")]), T0))
    assert reject["msg_type"] == "3" and reject["fields"][373] == "5"
    assert reject["fields"][45] == "2" and reject["fields"][371] == "36"


def test_hard_reset_skipping_numbers_resubscribes() -> None:
    session = logged_on(subs=(Subscription("BOOK", ("BTC/USD",)),))
    actions = session.on_frame(frame("4", 99, [(123, "N"), (36, "50")]), T0)
    assert actions[0] == GapDetected(2, 50)
    assert isinstance(actions[1], ResubscribeNeeded)
    assert session.expected_in == 50
    # a hard reset to the expected number loses nothing
    assert session.on_frame(frame("4", 3, [(36, "50")]), T0) == []


def test_hard_reset_backwards_is_rejected() -> None:
    session = logged_on()
    session.on_frame(snapshot(2), T0)
    (reject,) = sent(session.on_frame(frame("4", 3, [(123, "N"), (36, "1")]), T0))
    assert reject["fields"][373] == "5"
    assert session.expected_in == 3


def test_possdup_below_expected_is_ignored() -> None:
    session = logged_on()
    session.on_frame(snapshot(2), T0)
    assert session.on_frame(snapshot(2, poss_dup=True), T0) == [DuplicateIgnored(2, "W")]
    assert session.expected_in == 3


def test_seq_too_low_without_possdup_is_fatal() -> None:
    session = logged_on()
    session.on_frame(snapshot(2), T0)
    actions = session.on_frame(snapshot(2), T0)
    (logout,) = sent(actions)
    assert logout["msg_type"] == "5" and "too low" in logout["fields"][58]
    assert isinstance(actions[-1], Disconnect) and session.state is SessionState.DISCONNECTED
    assert session.on_frame(snapshot(3), T0) == []


def test_logon_with_a_higher_seq_asks_for_a_resend() -> None:
    session = FixSession(SessionConfig(ME))
    session.start(T0)
    actions = session.on_frame(frame("A", 4, [(98, "0"), (108, "60")]), T0)
    assert kinds(actions) == ["LoggedOn", "GapDetected", "2"]


def test_peer_logout_is_answered() -> None:
    session = logged_on()
    actions = session.on_frame(frame("5", 2, [(58, "session rollover")]), T0)
    (answer,) = sent(actions)
    assert answer["msg_type"] == "5"
    assert actions[-1] == Disconnect("peer logout: session rollover", clean=True)


def test_peer_logout_ahead_of_sequence_is_still_processed() -> None:
    session = logged_on()
    actions = session.on_frame(frame("5", 9), T0)
    assert kinds(actions) == ["5", "Disconnect"]


def test_our_logout_waits_for_the_answer_or_times_out() -> None:
    session = logged_on()
    (logout,) = sent(session.logout("bye", T0))
    assert logout["fields"] == {58: "bye"}
    assert session.logout("again", T0) == []
    assert session.on_frame(frame("5", 2), T0) == [Disconnect("logout confirmed", clean=True)]
    other = logged_on()
    other.logout("", T0)
    assert other.on_timer(T0 + 5 * S) == [Disconnect("no Logout answer in time", clean=False)]


def test_resend_request_from_the_peer_is_gap_filled() -> None:
    session = logged_on()
    session.subscribe(Subscription("B", ("BTC/USD",)), T0)        # our seq 2; next_out 3
    actions = session.on_frame(frame("2", 2, [(7, "1"), (16, "0")]), T0)
    (fill,) = sent(actions)
    assert fill["msg_type"] == "4" and fill["seq_num"] == 1 and fill["poss_dup"] is True
    assert fill["fields"][123] == "Y" and fill["fields"][36] == "3"
    assert session.next_out == 3


def test_peer_session_reject_is_reported() -> None:
    session = logged_on()
    actions = session.on_frame(frame("3", 2, [(45, "2"), (373, "1"), (58, "Missing tag")]), T0)
    assert actions == [PeerReject(2, 1, "Missing tag")]


def test_unknown_msg_type_gets_a_session_reject_and_uses_its_number() -> None:
    session = logged_on()
    actions = session.on_frame(frame("ZZ", 2, [(58, "x")]), T0)
    assert isinstance(actions[0], InboundRejected) and actions[0].reason == "unknown_msg_type"
    (reject,) = sent(actions)
    assert reject["fields"][373] == "11" and reject["fields"][45] == "2"
    assert reject["fields"][372] == "ZZ"
    assert session.expected_in == 3


def test_huge_group_gets_a_session_reject() -> None:
    session = logged_on()
    bad = frame("W", 2, [(55, "BTC/USD"), (262, "B"), (268, "999999")])
    (reject,) = sent(session.on_frame(bad, T0))
    assert reject["fields"][373] == "16" and reject["fields"][371] == "268"


def test_garbled_bytes_are_ignored_and_the_gap_is_caught_next() -> None:
    session = logged_on()
    garbled = snapshot(2)["raw"][:-4] + b"000\x01"
    (bad,) = _core.FixFramer().feed(garbled)
    actions = session.on_frame(bad, T0)
    assert kinds(actions) == ["InboundRejected"] and actions[0].reason == "checksum"
    assert session.expected_in == 2
    actions = session.on_frame(snapshot(3), T0)
    assert actions[0] == GapDetected(2, 3)


def test_comp_id_mismatch_is_fatal() -> None:
    session = logged_on()
    actions = session.on_frame(frame("0", 2, sender="SOMEONE"), T0)
    assert kinds(actions) == ["3", "5", "Disconnect"]


def test_logon_on_an_active_session_is_fatal() -> None:
    session = logged_on()
    assert kinds(session.on_frame(frame("A", 2, [(98, "0"), (108, "30")]), T0)) == [
        "5", "Disconnect"]


def test_resend_that_never_comes_disconnects() -> None:
    session = logged_on(heartbeat_s=30)
    session.on_frame(snapshot(5), T0)
    session.on_frame(frame("0", 6), T0 + 50 * S)
    actions = session.on_timer(T0 + 60 * S)
    assert kinds(actions) == ["5", "Disconnect"]


def test_outbound_sequence_numbers_are_consecutive() -> None:
    session = logged_on(heartbeat_s=30)
    seqs = [s["seq_num"] for s in sent(session.on_timer(T0 + 30 * S))]
    seqs += [s["seq_num"] for s in sent(session.on_frame(frame("1", 2, [(112, "x")]), T0))]
    seqs += [s["seq_num"] for s in sent(session.logout("bye", T0))]
    assert seqs == [2, 3, 4]


def test_nothing_happens_when_disconnected() -> None:
    session = FixSession(SessionConfig(ME))
    assert session.on_frame(snapshot(1), T0) == []
    assert session.on_timer(T0) == [] and session.next_deadline_ns() is None
    assert session.logout("x", T0) == []


def test_sim_message_builders_refuse_what_kraken_never_sends() -> None:
    from recorder.fix.messages import BookEntry, incremental_fields, reject_fields, snapshot_fields

    bid = BookEntry("0", "O1", "1.5", "2", "10:00:00.000")
    trade = BookEntry("2", "T1", "1.5", "2", "10:00:00.000", action=0)
    with pytest.raises(FixError):
        snapshot_fields("B", "BTC/USD", [trade])
    with pytest.raises(FixError):
        incremental_fields("B", "BTC/USD", [bid])              # no MDUpdateAction
    with pytest.raises(FixError):
        incremental_fields("B", "BTC/USD", [])
    with pytest.raises(FixError):
        reject_fields("B", "7", "x")
    with pytest.raises(FixError):
        BookEntry("9", "O1", "1", "1", "t").fields()
    with pytest.raises(FixError):
        BookEntry("0", "O1", "1", "1", "t", action=5).fields()
    fields = incremental_fields("B", "BTC/USD", [trade], book_checksum=7)
    assert fields[:4] == [(55, "BTC/USD"), (262, "B"), (268, "1"), (279, "0")]
    assert fields[-1] == (5041, "7")


def test_resubscribe_on_request_sends_every_subscription_again() -> None:
    """Capture asks for it at a sequence gap: the archive's books restart from snapshots."""
    idle = FixSession(SessionConfig(ME))
    idle.subscribe(Subscription("BOOK", ("BTC/USD",)), T0)
    assert idle.resubscribe("gap", T0) == []  # not logged on: the logon sends them anyway
    session = logged_on(subs=(Subscription("BOOK", ("BTC/USD",)),
                              Subscription("L3", ("ETH/USD",), level3=True)))
    actions = session.resubscribe("MsgSeqNum gap 2..3", T0)
    assert actions[0] == ResubscribeNeeded("MsgSeqNum gap 2..3", ("BOOK.1", "L3.1"))
    requests = [(m["fields"][262], m["fields"][263]) for m in sent(actions)]
    assert requests == [("BOOK", "2"), ("BOOK.1", "1"), ("L3", "2"), ("L3.1", "1")]
