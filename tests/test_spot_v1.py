"""Spot WS v1 decoder: real v1 captures (book, trade, ticker), events, rejects, fuzzing."""
# ruff: noqa: E501

from __future__ import annotations

import json
import zlib
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.protocol.reject import Reject
from recorder.protocol.spot_v1 import (
    BookMessageV1,
    ErrorV1,
    HeartbeatV1,
    OhlcMessageV1,
    PongV1,
    SpreadMessageV1,
    SubscriptionStatusV1,
    SystemStatusV1,
    TickerMessageV1,
    TradeMessageV1,
    decode_spot_v1,
)

BOOK_UPDATE_BOTH = (b'[320,{"a":[["38800.00000","0.02203518","1622766170.577187"]]},'
                    b'{"b":[["38800.00000","0.03017320","1622766170.577304"]],"c":"2479000840"},'
                    b'"book-25","XBT/USD"]')
TRADE = (b'[321,[["57126.70000","0.02063928","1616333924.737428","b","m",""],'
         b'["57126.80000","0.10000000","1616333924.800000","s","l",""]],"trade","XBT/USD"]')
TICKER = (b'[340,{"a":["29938.60000",12,"12.41074632"],"b":["29938.50000",0,"0.08410000"],'
          b'"c":["29938.60000","0.10146338"],"v":["735.06931643","5243.60824494"],'
          b'"p":["29812.62518","30272.79057"],"t":[6120,30832],"l":["29581.10000","29328.60000"],'
          b'"h":["30085.80000","31869.30000"],"o":["29790.00000","31614.50000"]},"ticker","XBT/USD"]')
OHLC = (b'[343,["1675209613.118218","1675209660.000000","23135.00000","23135.40000","23135.00000",'
        b'"23135.40000","23135.13297","0.39012812",7],"ohlc-1","XBT/USD"]')
SPREAD = (b'[341,["31760.00000","31760.10000","1654031976.197239","0.02167307","6.46761464"],'
          b'"spread","XBT/USD"]')
SYSTEM_STATUS = (b'{"connectionID": 13688620010177543517, "event": "systemStatus", "status": "online",'
                 b' "version": "1.9.1"}')
SUBSCRIBED = (b'{"channelID": 336, "channelName": "book-10", "event": "subscriptionStatus", "pair": "XBT/USD",'
              b' "status": "subscribed", "subscription": {"depth": 10, "name": "book"}}')
DOCUMENTED = [BOOK_UPDATE_BOTH, TRADE, TICKER, OHLC, SPREAD, SYSTEM_STATUS, SUBSCRIBED,
              b'{"event":"heartbeat"}', b'{"event":"pong","reqid":42}']


def _sdk_stream(path: Path) -> list[bytes]:
    """Raw text of every message in a python-kraken-sdk v1 ``{"init": ..., "updates": [...]}``."""
    top = msgspec.json.decode(path.read_bytes(), type=dict[str, msgspec.Raw])
    init = msgspec.json.decode(top["init"])
    if isinstance(init, list) and init and isinstance(init[0], int):
        frames = [bytes(top["init"])]  # a single data array
    else:
        frames = [bytes(raw) for raw in msgspec.json.decode(top["init"], type=list[msgspec.Raw])]
    return frames + [bytes(raw) for raw in msgspec.json.decode(top["updates"],
                                                              type=list[msgspec.Raw])]


def _recording(path: Path) -> list[bytes]:
    """Frames received from Kraken in a cryptofeed recording (``<epoch>: <json>`` lines)."""
    frames = []
    for line in path.read_bytes().splitlines():
        head, sep, body = line.partition(b": ")
        if sep and head.replace(b".", b"", 1).isdigit():
            frames.append(body)
    return frames


def _v1_piece(text: str) -> str:
    return text.replace(".", "").lstrip("0")


def _replay_checksums(events: list[BookMessageV1], depth: int) -> int:
    """Apply v1 book messages in order (per pair) and check every update checksum.

    v1 checksums hash the raw wire strings; books are truncated to the subscribed depth after
    each message. Returns the number of checksums verified.
    """
    books: dict[str, tuple[dict[Decimal, tuple[str, str]], dict[Decimal, tuple[str, str]]]] = {}
    verified = 0
    for event in events:
        item = event.data[0]
        if event.type == "snapshot":
            books[item.symbol] = ({}, {})
        asks, bids = books[item.symbol]
        for levels, book, descending in ((item.asks, asks, False), (item.bids, bids, True)):
            for level in levels:
                key = Decimal(level.price)
                if Decimal(level.qty):
                    book[key] = (level.price, level.qty)
                else:
                    book.pop(key, None)
            if len(book) > depth:
                for stale in sorted(book, reverse=not descending)[: len(book) - depth]:
                    del book[stale]
        if item.checksum is not None:
            top_asks = [asks[p] for p in sorted(asks)[:10]]
            top_bids = [bids[p] for p in sorted(bids, reverse=True)[:10]]
            text = "".join(_v1_piece(p) + _v1_piece(q) for p, q in top_asks + top_bids)
            assert zlib.crc32(text.encode()) == item.checksum, (item.symbol, item.checksum)
            verified += 1
    return verified


# ---------------------------------------------------------------------------------------------
# Real captures.


@pytest.mark.fixtures
def test_sdk_v1_book_stream_decodes_and_checksums_verify(fixture_file) -> None:
    events = [decode_spot_v1(f) for f in _sdk_stream(fixture_file("python-kraken-sdk/orderbook-v1.json"))]
    assert not [e for e in events if isinstance(e, Reject)]
    books = [e for e in events if isinstance(e, BookMessageV1)]
    assert len(books) == 980
    assert [b.type for b in books].count("snapshot") == 1 and books[0].type == "snapshot"
    assert all(b.depth == 10 and b.channel_name == "book-10" and b.data[0].symbol == "XBT/USD"
               for b in books)
    assert sum(isinstance(e, HeartbeatV1) for e in events) == 152
    assert sum(isinstance(e, PongV1) for e in events) == 16
    status = events[0]
    assert isinstance(status, SystemStatusV1) and status.connection_id == 13688620010177543517
    snapshot = books[0].data[0]
    assert (snapshot.asks[0].price, snapshot.asks[0].qty, snapshot.asks[0].timestamp) == (
        "27120.00000", "4.28732553", "1693415327.935623")
    assert snapshot.asks[0].ts_ns == 1693415327935623000 and snapshot.checksum is None
    updates = books[1:]
    assert all(u.data[0].checksum is not None for u in updates)
    assert updates[0].data[0].checksum == 3572756970
    assert sum(level.republish for u in updates for level in u.data[0].bids + u.data[0].asks) > 0
    assert sum(bool(u.data[0].asks) and bool(u.data[0].bids) for u in updates) == 1
    assert _replay_checksums(books, depth=10) == 979


@pytest.mark.fixtures
def test_older_sdk_v1_book_stream(fixture_file) -> None:
    frames = _sdk_stream(fixture_file("python-kraken-sdk/2023-06-10_d5a3d7c/orderbook.json"))
    events = [decode_spot_v1(f) for f in frames]
    assert len(events) == 111 and all(isinstance(e, BookMessageV1) for e in events)
    assert _replay_checksums(events, depth=10) == 110


@pytest.mark.fixtures
def test_cryptofeed_book_1000_recording(fixture_file) -> None:
    events = [decode_spot_v1(f) for f in _recording(fixture_file("cryptofeed/KRAKEN.ws.50.0"))]
    assert not [e for e in events if isinstance(e, Reject)]
    books = [e for e in events if isinstance(e, BookMessageV1)]
    assert len(books) == 4279
    assert [b.type for b in books].count("snapshot") == 10
    assert all(b.depth == 1000 for b in books)
    assert sum(b.data[0].checksum is not None for b in books) == 4269
    assert sum(isinstance(e, SubscriptionStatusV1) for e in events) == 10
    assert _replay_checksums(books, depth=1000) == 4269


@pytest.mark.fixtures
@pytest.mark.parametrize("name, count", [
    ("cryptofeed/KRAKEN.ws.48.0", 8), ("cryptofeed/2021-04-05_1312c06/KRAKEN-82ac16.0", 12)])
def test_cryptofeed_trade_recordings(fixture_file, name: str, count: int) -> None:
    frames = _recording(fixture_file(name))
    events = [decode_spot_v1(f) for f in frames]
    assert not [e for e in events if isinstance(e, Reject)]
    trades = [e for e in events if isinstance(e, TradeMessageV1)]
    assert len(trades) == count
    for frame, event in zip(frames, events):
        if isinstance(event, TradeMessageV1):
            raw = json.loads(frame)
            assert [[t.price, t.qty, t.timestamp, t.side[0], t.ord_type[0], t.misc]
                    for t in event.data] == raw[1]
            assert event.symbol == raw[-1]


@pytest.mark.fixtures
def test_cryptofeed_first_trade_values(fixture_file) -> None:
    frames = _recording(fixture_file("cryptofeed/KRAKEN.ws.48.0"))
    trade = next(e for e in map(decode_spot_v1, frames) if isinstance(e, TradeMessageV1))
    assert trade.symbol == "XMR/USD" and trade.channel_id == 993
    first = trade.data[0]
    assert (first.price, first.qty, first.side, first.ord_type) == ("354.11000000", "0.89594024",
                                                                    "sell", "limit")
    assert first.ts_ns == 1618678142557535000


@pytest.mark.fixtures
@pytest.mark.parametrize("name, count", [
    ("cryptofeed/KRAKEN.ws.49.0", 18), ("cryptofeed/2021-04-05_1312c06/KRAKEN-4b7396.0", 22)])
def test_cryptofeed_ticker_recordings(fixture_file, name: str, count: int) -> None:
    events = [decode_spot_v1(f) for f in _recording(fixture_file(name))]
    assert not [e for e in events if isinstance(e, Reject)]
    tickers = [e for e in events if isinstance(e, TickerMessageV1)]
    assert len(tickers) == count
    first = tickers[0] if name.endswith("49.0") else None
    if first is not None:
        assert first.symbol == "WAVES/EUR"
        assert (first.data.ask, first.data.ask_whole_lot_volume, first.data.trades_24h) == (
            "13.253900", 35, 1353)


@pytest.mark.fixtures
def test_crypto_msg_parser_v1_messages(fixture_file) -> None:
    kinds = {"trade": TradeMessageV1, "book-25": BookMessageV1, "spread": SpreadMessageV1,
             "ohlc-1": OhlcMessageV1, "ticker": TickerMessageV1}
    seen = 0
    for line in fixture_file("crypto-msg-parser/kraken_raw_messages_from_tests.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["kind"].startswith("spot_ws_v1:"):
            event = decode_spot_v1(record["raw"])
            assert isinstance(event, kinds[record["kind"].split(":")[1]]), event
            seen += 1
    assert seen == 8


# ---------------------------------------------------------------------------------------------
# Shapes.


def test_book_update_with_two_payloads() -> None:
    event = decode_spot_v1(BOOK_UPDATE_BOTH)
    assert isinstance(event, BookMessageV1) and event.type == "update"
    item = event.data[0]
    assert (item.asks[0].price, item.asks[0].qty) == ("38800.00000", "0.02203518")
    assert (item.bids[0].price, item.bids[0].qty) == ("38800.00000", "0.03017320")
    assert item.checksum == 2479000840 and event.depth == 25 and event.channel_id == 320


def test_empty_snapshot_and_republish_flag() -> None:
    empty = decode_spot_v1(b'[6304,{"as":[],"bs":[]},"book-25","PERP/EUR"]')
    assert isinstance(empty, BookMessageV1) and empty.type == "snapshot"
    assert empty.data[0].bids == [] and empty.data[0].asks == []
    flagged = decode_spot_v1(b'[1,{"b":[["1.0","2.0","1693415325.036931","r"]],"c":"1"},"book-10","X/Y"]')
    assert isinstance(flagged, BookMessageV1) and flagged.data[0].bids[0].republish


def test_trade_ticker_ohlc_spread() -> None:
    trade = decode_spot_v1(TRADE)
    assert isinstance(trade, TradeMessageV1)
    assert [(t.side, t.ord_type) for t in trade.data] == [("buy", "market"), ("sell", "limit")]
    assert trade.data[0].ts_ns == 1616333924737428000
    ticker = decode_spot_v1(TICKER)
    assert isinstance(ticker, TickerMessageV1)
    assert (ticker.data.bid, ticker.data.bid_whole_lot_volume, ticker.data.last_qty,
            ticker.data.trades_today, ticker.data.open_24h) == (
        "29938.50000", 0, "0.10146338", 6120, "31614.50000")
    ohlc = decode_spot_v1(OHLC)
    assert isinstance(ohlc, OhlcMessageV1) and ohlc.interval == 1
    assert (ohlc.data.vwap, ohlc.data.count, ohlc.data.end_ns) == ("23135.13297", 7,
                                                                    1675209660000000000)
    spread = decode_spot_v1(SPREAD)
    assert isinstance(spread, SpreadMessageV1)
    assert (spread.data.bid, spread.data.ask_qty) == ("31760.00000", "6.46761464")


def test_events() -> None:
    subscribed = decode_spot_v1(SUBSCRIBED)
    assert isinstance(subscribed, SubscriptionStatusV1)
    assert (subscribed.channel_id, subscribed.channel_name, subscribed.pair, subscribed.status,
            subscribed.subscription.depth) == (336, "book-10", "XBT/USD", "subscribed", 10)
    failed = decode_spot_v1(b'{"errorMessage":"Currency pair not supported XBT/USDX","event":'
                            b'"subscriptionStatus","pair":"XBT/USDX","status":"error","reqid":4,'
                            b'"subscription":{"name":"book","depth":10}}')
    assert isinstance(failed, SubscriptionStatusV1) and failed.status == "error"
    assert failed.error_message == "Currency pair not supported XBT/USDX" and failed.reqid == 4
    error = decode_spot_v1(b'{"event":"error","errorMessage":"Exceeded msg rate","reqid":42}')
    assert isinstance(error, ErrorV1) and error.error_message == "Exceeded msg rate"
    assert decode_spot_v1('{"event": "pong", "reqid": 42}') == PongV1(reqid=42)
    assert isinstance(decode_spot_v1(b'{"event":"heartbeat"}'), HeartbeatV1)


# ---------------------------------------------------------------------------------------------
# Rejects and fuzzing.


@pytest.mark.parametrize("frame, reason", [
    (b'[1,{"b":[["1.0","2.0","1.5"]],"c":"x1"},"book-10","X/Y"]', "schema"),
    (b'[1,{"b":[["1.0","2.0","1.5"]],"c":"4294967296"},"book-10","X/Y"]', "schema"),
    (b'[1,{"b":[["1.0","2.0","1.5","q"]]},"book-10","X/Y"]', "schema"),
    (b'[1,{"b":[["1.0","2.0"]]},"book-10","X/Y"]', "schema"),
    (b'[1,{"b":[[1.0,"2.0","1.5"]]},"book-10","X/Y"]', "bad_number"),
    (b'[1,{"b":[["1.0","abc","1.5"]]},"book-10","X/Y"]', "bad_number"),
    (b'[1,{"b":[["1.0","2.0","yesterday"]]},"book-10","X/Y"]', "bad_timestamp"),
    (b'[1,{"b":[["1.0","2.0",1.5]]},"book-10","X/Y"]', "bad_timestamp"),
    (b'[1,{"x":[]},"book-10","X/Y"]', "schema"),
    (b'[1,{"b":[]},"book-ten","X/Y"]', "schema"),
    (b'[1,{"b":[]},{"a":[]},{"c":"1"},"book-10","X/Y"]', "schema"),
    (b'[1,[],"openOrders","X/Y"]', "unknown_message"),
    (b'[1,[["1","2","3","x","l",""]],"trade","X/Y"]', "schema"),
    (b'[1,[[["1"],"2","3","b","l",""]],"trade","X/Y"]', "bad_number"),
    (b'[1,{"a":[]},"ticker","X/Y"]', "schema"),
    (b'[1,["1","2"],"ohlc-1","X/Y"]', "schema"),
    (b'[1, 2, 3]', "schema"),
    (b'[1, {}, 3, "X/Y"]', "schema"),
    (b'{"event":"subscribe"}', "unknown_message"),
    (b'{"status":"online"}', "unknown_message"),
    (b'{"event":"systemStatus"}', "schema"),
    (b'"x"', "unknown_message"),
    (b'[1,{"b":[]},"book-10","X/Y"', "malformed_json"),
    (b'[NaN]', "malformed_json"),
    (b'[1,{"b":[["1.0","2.0","1.5"]],"c":"1"},"book-10","X/\xff"]', "not_utf8"),
])
def test_rejects(frame: bytes, reason: str) -> None:
    event = decode_spot_v1(frame)
    assert isinstance(event, Reject), event
    assert event.reason == reason, event.detail
    assert event.raw == frame


def test_size_nesting_and_type_rejects() -> None:
    assert decode_spot_v1(TRADE, max_frame_bytes=32).reason == "too_large"
    deep = decode_spot_v1(b"[" * 100_000 + b"]" * 100_000)
    assert isinstance(deep, Reject) and deep.reason in {"malformed_json", "schema"}
    assert decode_spot_v1(None).reason == "schema"  # type: ignore[arg-type]
    assert decode_spot_v1("[\ud800]").reason == "not_utf8"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(frame: bytes) -> None:
    assert decode_spot_v1(frame) is not None


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(DOCUMENTED), st.data())
def test_mutated_frames_never_raise(frame: bytes, data: st.DataObject) -> None:
    mutated = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4))):
        start = data.draw(st.integers(0, len(mutated)))
        end = data.draw(st.integers(start, min(len(mutated), start + 8)))
        mutated[start:end] = data.draw(st.sampled_from(
            [b"", b"0", b'"', b"[", b"]", b"{", b"}", b",", b"null", b"true", b'"r"', b"\xff", b"1e5"])
            | st.binary(max_size=4))
    event = decode_spot_v1(bytes(mutated))
    if isinstance(event, Reject):
        assert event.reason and event.raw == bytes(mutated)
