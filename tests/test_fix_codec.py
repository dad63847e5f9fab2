"""The core's FIX 4.4 codec (``recorder._core.FixFramer`` / ``encode_fix``), from Python.

The encoder's BodyLength and CheckSum are checked against an independent computation made
here. Then the decoder gets good messages in every split, plus each kind of bad input the
issue names: garbage bytes, a wrong BodyLength, a bad CheckSum, an unknown MsgType, a huge
repeating group and absurd numbers. Hypothesis feeds it arbitrary bytes too. Every input
ends as a message or a typed reject, never an exception.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder import _core
from recorder.protocol.errors import FixError, ProtocolError

SOH = b"\x01"
T0 = 1_688_737_347_230_000_000  # 2023-07-07 13:42:27.230 UTC


def reference_frame(body: bytes) -> bytes:
    """FIX framing done by hand: 8, 9 = len(body), body, 10 = sum mod 256."""
    head = b"8=FIX.4.4" + SOH + b"9=" + str(len(body)).encode() + SOH + body
    return head + b"10=" + f"{sum(head) % 256:03d}".encode() + SOH


def x_fields() -> list[tuple[int, str]]:
    return [
        (55, "BTC/USD"), (262, "1"), (268, "2"),
        (279, "2"), (269, "1"), (278, "O30300.7"), (270, "30300.7"), (271, "0.0"),
        (273, "13:42:27.208"),
        (279, "0"), (269, "1"), (278, "O31941.0"), (270, "31941.0"), (271, "0.0031746"),
        (273, "20:40:00.455"),
    ]


def encode(msg_type: str, seq: int, fields: list[tuple[int, str]] | None = None, **kw) -> bytes:
    return _core.encode_fix(msg_type, seq, "KRAKEN-MD", "CLIENT", T0, fields or [], **kw)


def feed_all(data: bytes, chunk: int | None = None) -> list[dict]:
    framer = _core.FixFramer()
    frames: list[dict] = []
    step = chunk or max(1, len(data))
    for i in range(0, len(data), step):
        frames += framer.feed(data[i:i + step])
    return frames


def test_encoder_matches_a_hand_computed_frame() -> None:
    data = encode("0", 2)
    body = b"35=0\x0134=2\x0149=KRAKEN-MD\x0152=20230707-13:42:27.230\x0156=CLIENT\x01"
    assert data == reference_frame(body)


def test_incremental_refresh_decodes_exactly() -> None:
    (frame,) = feed_all(encode("X", 100, x_fields()))
    assert frame["ok"] and frame["msg_type"] == "X" and frame["seq_num"] == 100
    assert frame["sending_time_ns"] == T0
    assert frame["fields"][55] == "BTC/USD" and frame["fields"][262] == "1"
    first, second = frame["entries"]
    assert first["action"] == 2 and first["type"] == "1" and first["size"] == (0, 1)
    assert second["price"] == (319410, 1) and second["size"] == (31746, 7)
    assert second["id"] == "O31941.0" and second["time"] == "20:40:00.455"


def test_many_messages_in_any_split_come_out_in_order() -> None:
    stream = b"".join(encode("0", seq) for seq in range(1, 30)) + encode("X", 30, x_fields())
    for chunk in (1, 3, 50, None):
        frames = feed_all(stream, chunk)
        assert [f["seq_num"] for f in frames] == list(range(1, 31))
        assert b"".join(f["raw"] for f in frames) == stream


@pytest.mark.parametrize("bad, reason", [
    (b"\x00\xffgarbage" + SOH, "garbage"),
    (b"8=FIX.4.2\x019=5\x0135=0\x0110=000\x01", "garbage"),
])
def test_garbage_is_a_reject_and_the_next_message_survives(bad: bytes, reason: str) -> None:
    frames = feed_all(bad + encode("0", 5))
    assert {f["reason"] for f in frames if not f["ok"]} == {reason}
    assert frames[-1]["ok"] and frames[-1]["seq_num"] == 5


@pytest.mark.parametrize("declared", ["57", "59", "1", "x", "99999999999"])
def test_wrong_body_length(declared: str) -> None:
    good = encode("0", 2)
    bad = good.replace(b"9=58\x01", f"9={declared}".encode() + SOH, 1)
    frames = feed_all(bad + good)
    assert frames[0]["ok"] is False and frames[0]["reason"] == "body_length"
    assert frames[0]["ref_tag"] == 9 and frames[0]["detail"]
    assert frames[-1]["ok"] and frames[-1]["seq_num"] == 2


def test_bad_checksum_names_both_sums() -> None:
    good = encode("0", 2)
    assert good.endswith(b"10=016\x01")
    (frame,) = feed_all(good[:-4] + b"017\x01")
    assert frame["reason"] == "checksum" and "017" in frame["detail"] and "016" in frame["detail"]


def test_unknown_msg_type_keeps_header_for_a_session_reject() -> None:
    (frame,) = feed_all(encode("ZZ", 9, [(58, "x")]))
    assert frame["ok"] is False and frame["reason"] == "unknown_msg_type"
    assert frame["seq_num"] == 9 and frame["msg_type"] == "ZZ" and frame["ref_tag"] == 35


@pytest.mark.parametrize("count", ["5001", "4000000000", "99999999999999"])
def test_huge_repeating_group_is_refused(count: str) -> None:
    (frame,) = feed_all(encode("W", 1, [(55, "BTC/USD"), (262, "1"), (268, count)]))
    assert frame["ok"] is False and frame["reason"] in {"group_too_large", "bad_field"}
    assert frame["ref_tag"] == 268


@pytest.mark.parametrize("price", ["1e5", "-1", "99999999999999999999999", "1.2.3", "NaN"])
def test_absurd_prices_are_typed_rejects(price: str) -> None:
    fields = [(55, "A/B"), (262, "1"), (268, "1"), (269, "0"), (270, price), (271, "1")]
    (frame,) = feed_all(encode("W", 1, fields))
    assert frame["ok"] is False and frame["reason"] == "bad_number" and frame["ref_tag"] == 270


def test_group_count_must_match_the_entries() -> None:
    fields = [(55, "A/B"), (262, "1"), (268, "2"), (269, "0"), (270, "1"), (271, "1")]
    (frame,) = feed_all(encode("W", 1, fields))
    assert frame["reason"] == "group_mismatch"


def test_l3_snapshot_keeps_order_ids_and_nanosecond_times() -> None:
    fields = [(55, "BTC/USD"), (262, "L3"), (268, "1"), (269, "1"), (278, "OABC12-DEF34-GHI56"),
              (270, "30300.00000"), (271, "0.25000000"), (273, "10:24:34.650"),
              (5060, "2026-02-03T10:24:34.650069468Z"), (5273, "2026-02-03T10:24:29.175114502Z")]
    (frame,) = feed_all(encode("W", 3, fields))
    entry = frame["entries"][0]
    assert entry["id"] == "OABC12-DEF34-GHI56" and entry["price"] == (3030000000, 5)
    assert entry["timestamp_ns"] == 1_770_114_274_650_069_468
    assert entry["queue_time_ns"] == 1_770_114_269_175_114_502


def test_poss_dup_round_trip() -> None:
    (frame,) = feed_all(encode("0", 4, poss_dup=True))
    assert frame["poss_dup"] is True and frame["orig_sending_time_ns"] == T0


@pytest.mark.parametrize("fields", [[(58, "a\x01b")], [(58, "")], [(10, "1")], [("x", "1")],
                                    [(58, 1.5)], [(1,)]])
def test_encoder_errors_are_fix_errors(fields: list) -> None:
    with pytest.raises(FixError) as info:
        _core.encode_fix("0", 1, "A", "B", T0, fields)
    assert isinstance(info.value, ProtocolError)


def test_pending_holds_an_incomplete_tail() -> None:
    data = encode("0", 1)
    framer = _core.FixFramer()
    assert framer.feed(data[:20]) == []
    assert framer.pending == 20
    (frame,) = framer.feed(data[20:])
    assert frame["ok"] and framer.pending == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=1, max_value=64))
def test_arbitrary_bytes_never_raise(noise: bytes, chunk: int) -> None:
    stream = noise + encode("0", 7)
    framer = _core.FixFramer()
    frames: list[dict] = []
    for i in range(0, len(stream), chunk):
        frames += framer.feed(stream[i:i + chunk])
    for frame in frames:
        assert frame["ok"] or (frame["reason"] and frame["detail"])
    # every byte is accounted for, in order: in a frame or held back as an incomplete tail
    covered = b"".join(f["raw"] for f in frames)
    assert stream.startswith(covered)
    assert len(covered) + framer.pending == len(stream)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["0", "1", "X"]), st.integers(1, 10**9)), max_size=8),
       st.integers(min_value=1, max_value=97))
def test_round_trip_any_split(messages: list[tuple[str, int]], chunk: int) -> None:
    def body(kind: str) -> list[tuple[int, str]]:
        return {"0": [], "1": [(112, "T")], "X": x_fields()}[kind]

    stream = b"".join(encode(kind, seq, body(kind)) for kind, seq in messages)
    frames = feed_all(stream, chunk)
    assert [(f["msg_type"], f["seq_num"]) for f in frames] == messages
