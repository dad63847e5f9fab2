"""Futures WS v1 decoding on real captures, documented examples and hostile input."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.protocol.futures import (
    FuturesAlert,
    FuturesBookDelta,
    FuturesBookSnapshot,
    FuturesChallenge,
    FuturesError,
    FuturesHeartbeat,
    FuturesInfo,
    FuturesSubscribed,
    FuturesSubscribeFailed,
    FuturesSubscribeRequest,
    FuturesTicker,
    FuturesTickerLite,
    FuturesTrade,
    FuturesTradeSnapshot,
    FuturesUnsubscribed,
    decode_futures,
    normalise_product_id,
)
from recorder.protocol.numbers import to_units
from recorder.protocol.reject import Reject

CAPTURES = ("cryptofeed/KRAKEN_FUTURES.ws.1.0", "cryptofeed/2021-04-17_be4e5c8/KRAKEN_FUTURES.ws.46.0")
_RECEIVED = re.compile(rb"^\d+(?:\.\d+)?: (.*)$")
_SENT = re.compile(rb"^wss://\S+ <- \d+(?:\.\d+)?: (.*)$")


def received_frames(path: Path) -> list[bytes]:
    """Frames Kraken sent, in order, from a cryptofeed recording (``<epoch>: <frame>`` lines)."""
    frames = []
    for line in path.read_bytes().splitlines():
        match = _RECEIVED.match(line)
        if match:
            frames.append(match.group(1))
    return frames


def kind_of(event: object) -> str:
    return type(event).__struct_config__.tag  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- real captures

EXPECTED_KINDS = {
    # (book deltas, snapshots, ticker_lite, live trades, trade snapshots, subscribed acks, info)
    CAPTURES[0]: {"book": 7014, "book_snapshot": 10, "ticker_lite": 107, "trade": 3,
                  "trade_snapshot": 10, "subscribed": 30, "info": 1},
    CAPTURES[1]: {"book": 6528, "book_snapshot": 10, "ticker_lite": 541, "trade": 3,
                  "trade_snapshot": 10, "subscribed": 30, "info": 1},
}


@pytest.mark.fixtures
@pytest.mark.parametrize("capture", CAPTURES)
def test_capture_decodes_fully(fixture_file, capture: str) -> None:
    frames = received_frames(fixture_file(capture))
    events = [decode_futures(frame) for frame in frames]
    rejects = [e for e in events if isinstance(e, Reject)]
    assert rejects == []
    assert Counter(kind_of(e) for e in events) == EXPECTED_KINDS[capture]
    # The raw grep counts of the capture agree with the decoded counts.
    text = fixture_file(capture).read_bytes()
    assert text.count(b': {"feed":"book",') == EXPECTED_KINDS[capture]["book"]


@pytest.mark.fixtures
@pytest.mark.parametrize("capture", CAPTURES)
def test_capture_numbers_are_exact_tokens(fixture_file, capture: str) -> None:
    """Every decoded number equals the JSON text (floats) or int (ints) of the frame."""
    for frame in received_frames(fixture_file(capture)):
        event = decode_futures(frame)
        original = json.loads(frame, parse_float=lambda text: ("float", text))
        if isinstance(event, FuturesBookDelta):
            assert _as_wire(event.price) == original["price"]
            assert _as_wire(event.qty) == original["qty"]
            assert event.timestamp_ns == original["timestamp"] * 1_000_000
            assert event.seq == original["seq"]
        elif isinstance(event, FuturesBookSnapshot):
            assert [(_as_wire(lv.price), _as_wire(lv.qty)) for lv in event.bids] == [
                (lv["price"], lv["qty"]) for lv in original["bids"]
            ]
            assert len(event.asks) == len(original["asks"]) > 0
            assert event.tick_size is None
        elif isinstance(event, FuturesTradeSnapshot):
            assert len(event.trades) == 100
            assert [t.uid for t in event.trades] == [t["uid"] for t in original["trades"]]
            assert [_as_wire(t.price) for t in event.trades] == [t["price"] for t in original["trades"]]


def _as_wire(token: object) -> object:
    return ("float", token) if isinstance(token, str) else token


@pytest.mark.fixtures
def test_capture_subscribe_requests_keep_lower_case_ids(fixture_file) -> None:
    sent = [
        m.group(1)
        for line in fixture_file(CAPTURES[0]).read_bytes().splitlines()
        if (m := _SENT.match(line))
    ]
    requests = [decode_futures(frame) for frame in sent]
    assert [type(r) for r in requests] == [FuturesSubscribeRequest] * 3
    assert {r.feed for r in requests} == {"book", "trade", "ticker_lite"}  # type: ignore[union-attr]
    first = requests[0]
    assert isinstance(first, FuturesSubscribeRequest)
    assert first.product_ids[0] == "fi_ethusd_211231"
    assert normalise_product_id(first.product_ids[0]) == "FI_ETHUSD_211231"


# ------------------------------------------------------------------------- documented shapes


@pytest.mark.fixtures
def test_nautilus_documented_messages(fixture_file) -> None:
    delta = decode_futures(fixture_file("nautilus_trader/ws_futures_book_delta.json").read_bytes())
    assert delta == FuturesBookDelta(
        product_id="PI_XBTUSD", side="sell", seq=326094134, price=34981, qty=0,
        timestamp_ms=1612269953629,
    )
    assert delta.timestamp_ns == 1612269953629_000000

    snap = decode_futures(fixture_file("nautilus_trader/ws_futures_book_snapshot.json").read_bytes())
    assert isinstance(snap, FuturesBookSnapshot)
    assert snap.seq == 326072249 and snap.bids[0].price == "34892.5" and snap.bids[1].price == 34892
    assert snap.asks[0].qty == 20598

    trade = decode_futures(fixture_file("nautilus_trader/ws_futures_trade.json").read_bytes())
    assert isinstance(trade, FuturesTrade)
    assert (trade.uid, trade.side, trade.type, trade.seq, trade.qty, trade.price) == (
        "05af78ac-a774-478c-a50c-8b9c234e071e", "sell", "fill", 653355, 15000, "34969.5")
    assert trade.time_ns == 1612266317519_000000

    ticker = decode_futures(fixture_file("nautilus_trader/ws_futures_ticker.json").read_bytes())
    assert isinstance(ticker, FuturesTicker)
    assert ticker.funding_rate == "-6.2604214e-11"
    assert ticker.relative_funding_rate_prediction == "-8.047629166667e-6"
    assert ticker.next_funding_rate_time_ns == 1676394000000_000000
    assert ticker.mark_price == "21979.68641534714"
    assert ticker.open_interest == "30072580.0"
    assert ticker.premium == "-0.0"
    assert ticker.maturity_time_ms == 0 and ticker.dtm == 0
    assert (ticker.leverage, ticker.tag, ticker.pair) == ("50x", "perpetual", "XBT:USD")
    assert ticker.suspended is False and ticker.post_only is False
    assert to_units(ticker.funding_rate, 18) == -62604214


@pytest.mark.fixtures
def test_kraken_net_ticker(fixture_file) -> None:
    lines = fixture_file("kraken-net/Subscriptions/Futures/Ticker.txt").read_text().splitlines()
    ack = decode_futures(lines[1][2:])
    assert ack == FuturesSubscribed(feed="ticker", product_ids=("PF_ETHUSD",))
    ticker = decode_futures(lines[3])
    assert isinstance(ticker, FuturesTicker)
    assert ticker.relative_funding_rate == "0.0000186711875"
    assert ticker.bid_size == "1.459" and ticker.volume_quote == "99424431.8132"


@pytest.mark.fixtures
def test_crypto_msg_parser_futures_messages(fixture_file) -> None:
    path = fixture_file("crypto-msg-parser/kraken_raw_messages_from_tests.jsonl")
    seen = Counter()
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["kind"].startswith("futures_ws_v1:"):
            event = decode_futures(record["raw"])
            assert not isinstance(event, Reject), event
            assert kind_of(event) == record["kind"].split(":")[1]
            seen[kind_of(event)] += 1
    assert seen == {"trade_snapshot": 2, "trade": 2, "book_snapshot": 2, "book": 2, "ticker": 2}


def test_control_events() -> None:
    assert decode_futures('{"event":"info","version":1}') == FuturesInfo(version=1)
    assert decode_futures('{"event":"error","message":"Invalid product id"}') == FuturesError(
        message="Invalid product id")
    assert decode_futures('{"event":"alert","message":"Bad request"}') == FuturesAlert(
        message="Bad request")
    assert decode_futures('{"event":"challenge","message":"c100b894-1729"}') == FuturesChallenge(
        message="c100b894-1729")
    assert decode_futures(
        '{"event":"subscribed_failed","feed":"book","product_ids":["PI_NOPE"]}'
    ) == FuturesSubscribeFailed(feed="book", product_ids=("PI_NOPE",))
    assert decode_futures('{"event":"unsubscribed","feed":"heartbeat"}') == FuturesUnsubscribed(
        feed="heartbeat")
    assert decode_futures('{"feed":"heartbeat","time":1534262350627}') == FuturesHeartbeat(
        time_ms=1534262350627)


def test_ticker_lite_and_trade_types() -> None:
    lite = decode_futures(
        '{"feed":"ticker_lite","product_id":"FI_BCHUSD_210730","bid":439.3,"ask":439.6,'
        '"change":2.640803926150981,"premium":0.3,"volume":3413476.0,"tag":"month",'
        '"pair":"BCH:USD","dtm":7,"maturityTime":1627657200000}'
    )
    assert isinstance(lite, FuturesTickerLite)
    assert lite.change == "2.640803926150981" and lite.maturity_time_ns == 1627657200000_000000
    for kind in ("fill", "liquidation", "termination", "block"):
        trade = decode_futures(
            '{"feed":"trade","product_id":"pi_xbtusd","uid":"u","side":"buy","type":"%s",'
            '"seq":1,"time":1,"qty":1E-8,"price":1}' % kind
        )
        assert isinstance(trade, FuturesTrade) and trade.type == kind and trade.qty == "1E-8"
        assert trade.canonical_product_id == "PI_XBTUSD" and trade.product_id == "pi_xbtusd"


# ----------------------------------------------------------------------------------- rejects

DELTA = {"feed": "book", "product_id": "PI_XBTUSD", "side": "sell", "seq": 5, "price": 1.5,
         "qty": 2, "timestamp": 1612269953629}


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "malformed_json"),
        (b"{", "malformed_json"),
        (b'{"feed":"book",}', "malformed_json"),
        (b'{"feed":"b\xff"}', "bad_encoding"),
        ("{\"feed\":\"\ud800\"}", "bad_encoding"),
        (b"[1,2,3]", "unknown_message"),
        (b"null", "unknown_message"),
        (b"{}", "unknown_message"),
        (b'{"feed":"fills","x":1}', "unknown_message"),
        (b'{"event":"pong"}', "unknown_message"),
        (b'{"event":{"x":1}}', "unknown_message"),
        (b'{"feed":["book"]}', "unknown_message"),
        (b'{"event":"info","version":"one"}', "schema"),
        (msgspec.json.encode({**DELTA, "side": "bid"}), "schema"),
        (msgspec.json.encode({**DELTA, "seq": -1}), "schema"),
        (msgspec.json.encode({**DELTA, "seq": 2**64}), "schema"),
        (msgspec.json.encode({**DELTA, "seq": 1.0}), "schema"),
        (msgspec.json.encode({**DELTA, "timestamp": "1612269953629"}), "schema"),
        (msgspec.json.encode({k: v for k, v in DELTA.items() if k != "seq"}), "schema"),
        (msgspec.json.encode({**DELTA, "price": "abc"}), "bad_number"),
        (msgspec.json.encode({**DELTA, "qty": None}), "bad_number"),
        (msgspec.json.encode({**DELTA, "qty": True}), "bad_number"),
        (msgspec.json.encode({**DELTA, "qty": [1]}), "bad_number"),
        (msgspec.json.encode({**DELTA, "qty": 10**40}), "bad_number"),
        (msgspec.json.encode({**DELTA, "timestamp": 10**17}), "bad_timestamp"),
        (msgspec.json.encode({**DELTA, "timestamp": -1}), "bad_timestamp"),
        (b'{"feed":"trade_snapshot","product_id":"X","trades":[{"feed":"book"}]}', "schema"),
        (b'{"feed":"book_snapshot","product_id":"X","timestamp":1,"seq":1,"bids":[{"price":"x","qty":1}]}',
         "bad_number"),
    ],
)
def test_rejects_have_stable_reasons(frame: bytes | str, reason: str) -> None:
    result = decode_futures(frame)
    assert isinstance(result, Reject), result
    assert result.reason == reason, result.detail
    expected_raw = frame.encode("utf-8", "surrogatepass") if isinstance(frame, str) else frame
    assert result.raw == expected_raw


def test_too_large_and_not_a_frame() -> None:
    big = b'{"feed":"heartbeat","time":1' + b" " * 100 + b"}"
    assert decode_futures(big, max_bytes=64).reason == "too_large"  # type: ignore[union-attr]
    assert isinstance(decode_futures(big), FuturesHeartbeat)
    assert decode_futures(12345).reason == "not_a_frame"  # type: ignore[arg-type,union-attr]
    assert isinstance(decode_futures(bytearray(msgspec.json.encode(DELTA))), FuturesBookDelta)


# --------------------------------------------------------------------------------- hypothesis


@given(st.binary(max_size=512))
@settings(max_examples=400)
def test_random_bytes_never_raise(data: bytes) -> None:
    result = decode_futures(data)
    assert isinstance(result, (Reject, msgspec.Struct))


@given(st.text(max_size=256))
@settings(max_examples=300)
def test_random_text_never_raises(text: str) -> None:
    decode_futures(text)


_SAMPLE_FRAMES: list[bytes] = []


def _samples() -> list[bytes]:
    """A few real frames of every kind (loaded lazily so a missing fixture skips cleanly)."""
    if not _SAMPLE_FRAMES:
        from recorder.testing import fixtures_dir

        path = fixtures_dir() / CAPTURES[0]
        if not path.is_file():
            pytest.skip(f"{CAPTURES[0]} not found")
        frames = received_frames(path)
        by_kind: dict[str, list[bytes]] = {}
        for frame in frames:
            by_kind.setdefault(kind_of(decode_futures(frame)), []).append(frame)
        for items in by_kind.values():
            _SAMPLE_FRAMES.extend(items[:3])
        _SAMPLE_FRAMES.append(
            Path(fixtures_dir() / "nautilus_trader/ws_futures_ticker.json").read_bytes())
    return _SAMPLE_FRAMES


@pytest.mark.fixtures
@given(data=st.data())
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_real_frames_never_raise(data: st.DataObject) -> None:
    frame = bytearray(data.draw(st.sampled_from(_samples())))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        pos = data.draw(st.integers(0, max(len(frame) - 1, 0)))
        if op == "flip" and frame:
            frame[pos] = data.draw(st.integers(0, 255))
        elif op == "delete" and frame:
            del frame[pos]
        elif op == "insert":
            frame[pos:pos] = data.draw(st.sampled_from([b'"', b"-", b"1e999", b"null", b"\xc3", b"{", b"]"]))
        else:
            del frame[pos:]
    result = decode_futures(bytes(frame))
    if isinstance(result, Reject):
        assert result.raw == bytes(frame) and result.reason
    else:
        assert isinstance(result, msgspec.Struct)


# ------------------------------------------------------------------- hot path vs full checks


@pytest.mark.parametrize(
    ("changes", "outcome"),
    [
        ({}, ("1.5", 2)),
        ({"price": "1.5"}, ("1.5", 2)),  # numeric JSON string: slow path, accepted as its text
        ({"price": 1.5e300}, ("1.5e300", 2)),
        ({"price": "1１.5"}, "bad_number"),
        ({"qty": 0.0}, ("1.5", "0.0")),
        ({"extra": "text"}, ("1.5", 2)),  # unknown string field: slow path, same result
        ({"price": "1.5 "}, "bad_number"),
        ({"price": "１.5"}, "bad_number"),  # non-ASCII digit
        ({"qty": {}}, "bad_number"),
        ({"qty": "x" * 70}, "bad_number"),
        ({"price": "1" * 70 + ".5"}, "bad_number"),
    ],
)
def test_book_delta_fast_and_slow_paths_agree(changes: dict, outcome) -> None:
    result = decode_futures(msgspec.json.encode({**DELTA, **changes}))
    if isinstance(outcome, str):
        assert isinstance(result, Reject) and result.reason == outcome
    else:
        assert isinstance(result, FuturesBookDelta)
        assert (result.price, result.qty) == outcome
