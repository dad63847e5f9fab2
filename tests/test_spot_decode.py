"""Spot WS v2 decoder: real captures, documented shapes, rejects, and fuzzing."""
# ruff: noqa: E501

from __future__ import annotations

import json
import zlib
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.protocol.numbers import to_units
from recorder.protocol.reject import Reject
from recorder.protocol.spot import (
    BookMessage,
    Heartbeat,
    InstrumentMessage,
    Level3Message,
    OhlcMessage,
    Pong,
    StatusMessage,
    SubscribeAck,
    TickerMessage,
    TradeMessage,
    UnsubscribeAck,
    decode_spot,
)

# Documented shapes, copied from the protocol note (kraken-protocol.md §1 and §2).
SUBSCRIBE_OK = (b'{"method": "subscribe", "result": {"channel": "book", "depth": 10, "snapshot": true,'
                b' "symbol": "ALGO/USD"}, "success": true, "time_in": "2023-10-06T17:35:55.219022Z",'
                b' "time_out": "2023-10-06T17:35:55.219067Z"}')
ALREADY_SUBSCRIBED = (b'{"error": "Already subscribed", "method": "subscribe", "req_id": 2,'
                      b' "success": false, "symbol": "BTC/USD", "time_in": "2025-12-20T07:39:28.809188Z",'
                      b' "time_out": "2025-12-20T07:39:28.809200Z"}')
NOT_SUPPORTED = (b'{"error": "Currency pair not supported xxx/USD", "method": "subscribe", "req_id": 69,'
                 b' "success": false, "symbol": "xxx/USD", "time_in": "2025-04-27T15:37:48.652299Z",'
                 b' "time_out": "2025-04-27T15:37:48.652337Z"}')
STATUS = (b'{"channel": "status", "data": [{"api_version": "v2", "connection_id": 13834774380200032777,'
          b' "system": "online", "version": "2.0.0"}], "type": "update"}')
PONG = (b'{"method": "pong", "req_id": 101, "time_in": "2023-09-24T14:10:23.799685Z",'
        b' "time_out": "2023-09-24T14:10:23.799703Z"}')
LEVEL3_DOCS_SNAPSHOT = b"""{"channel": "level3", "type": "snapshot", "data": [{"symbol": "MATIC/USD", "checksum": 281817320,
  "bids": [
    {"order_id": "O6ZQNQ-BXL4E-5WGINO", "limit_price": 0.5629, "order_qty": 111.56125344, "timestamp": "2023-10-06T17:35:00.279389650Z"},
    {"order_id": "OEP26Y-YAFEF-OFR62B", "limit_price": 0.5625, "order_qty": 6390.19338, "timestamp": "2023-10-06T18:19:55.056070105Z"}],
  "asks": [
    {"order_id": "O5SR5W-L7OLY-BLDEJV", "limit_price": 0.563, "order_qty": 420.0, "timestamp": "2023-10-06T18:18:20.738706230Z"}]}]}"""
LEVEL3_DOCS_UPDATE = b"""{"channel": "level3", "type": "update", "data": [{"checksum": 2841398499, "symbol": "MATIC/USD", "bids": [],
  "asks": [
    {"event": "delete", "order_id": "OOIATY-6EIWY-ACVIUN", "limit_price": 0.5636, "order_qty": 302.89736033, "timestamp": "2023-10-06T18:21:00.097010033Z"},
    {"event": "add", "order_id": "O2BN53-5RSB2-V3J57T", "limit_price": 0.564, "order_qty": 3500.77668626, "timestamp": "2023-10-06T18:20:27.383408052Z"}]}]}"""
BOOK_UPDATE = (b'{"channel": "book", "type": "update", "data": [{"symbol": "MATIC/USD", "bids": [{"price": 0.5657,'
               b' "qty": 1098.3947558}], "asks": [], "checksum": 2114181697, "timestamp": "2023-10-06T17:35:55.440295Z"}]}')
TRADE = (b'{"channel": "trade", "type": "snapshot", "data": ['
         b'{"symbol": "MATIC/USD", "side": "buy", "price": 0.5147, "qty": 6423.46326, "ord_type": "limit", "trade_id": 4665846, "timestamp": "2023-09-25T07:48:36.925533Z"},'
         b'{"symbol": "MATIC/USD", "side": "buy", "price": 0.5147, "qty": 1136.19677815, "ord_type": "limit", "trade_id": 4665847, "timestamp": "2023-09-25T07:49:36.925603Z"}]}')
OHLC = (b'{"channel": "ohlc", "type": "update", "timestamp": "2023-10-04T16:26:30.524394914Z", "data": ['
        b'{"symbol": "MATIC/USD", "open": 0.5624, "high": 0.5628, "low": 0.5622, "close": 0.5627, "trades": 12,'
        b' "volume": 30927.68066226, "vwap": 0.5626, "interval_begin": "2023-10-04T16:25:00.000000000Z", "interval": 5,'
        b' "timestamp": "2023-10-04T16:30:00.000000Z"}]}')
TICKER = (b'{"channel": "ticker", "type": "snapshot", "data": [{"symbol": "ALGO/USD", "bid": 0.10025, "bid_qty": 740.0,'
          b' "ask": 0.10036, "ask_qty": 1361.44813783, "last": 0.10035, "volume": 997038.98383185, "vwap": 0.10148,'
          b' "low": 0.09979, "high": 0.10285, "change": -0.00017, "change_pct": -0.17, "timestamp": "2023-09-25T09:04:31.742648Z"}]}')
INSTRUMENT_DOCS = (b'{"channel": "instrument", "type": "snapshot", "data": {'
                   b'"assets": [{"id": "BTC", "status": "enabled", "precision": 10, "precision_display": 5, "borrowable": true,'
                   b' "collateral_value": 1.0, "margin_rate": 0.01}],'
                   b'"pairs": [{"symbol": "BTC/USD", "base": "BTC", "quote": "USD", "status": "online", "qty_precision": 8,'
                   b' "qty_increment": 1e-08, "price_precision": 1, "cost_precision": 5, "marginable": true, "has_index": true,'
                   b' "cost_min": 0.5, "margin_initial": 0.2, "position_limit_long": 250, "position_limit_short": 200,'
                   b' "tick_size": 0.1, "price_increment": 0.1, "qty_min": 0.0001}]}}')

DOCUMENTED = [SUBSCRIBE_OK, ALREADY_SUBSCRIBED, NOT_SUPPORTED, STATUS, PONG, LEVEL3_DOCS_SNAPSHOT,
              LEVEL3_DOCS_UPDATE, BOOK_UPDATE, TRADE, OHLC, TICKER, INSTRUMENT_DOCS,
              b'{"channel": "heartbeat"}']


def _book_stream(path: Path) -> list[bytes]:
    """The raw text of every message in a python-kraken-sdk ``{"init": ..., "updates": [...]}``."""
    top = msgspec.json.decode(path.read_bytes(), type=dict[str, msgspec.Raw])
    updates = msgspec.json.decode(top["updates"], type=list[msgspec.Raw])
    return [bytes(top["init"])] + [bytes(raw) for raw in updates]


def _checksum(asks: dict[int, int], bids: dict[int, int]) -> int:
    """Kraken's CRC32 over the top 10 asks ascending then bids descending (units text)."""
    text = "".join(f"{p}{q}" for p, q in sorted(asks.items())[:10])
    text += "".join(f"{p}{q}" for p, q in sorted(bids.items(), reverse=True)[:10])
    return zlib.crc32(text.encode())


# ---------------------------------------------------------------------------------------------
# Real captures.


@pytest.mark.fixtures
def test_every_v2_book_message_decodes_with_exact_tokens_and_checksums(fixture_file) -> None:
    frames = _book_stream(fixture_file("python-kraken-sdk/orderbook-v2.json"))
    events = [decode_spot(frame) for frame in frames]
    assert len(events) == 510
    assert all(isinstance(event, BookMessage) for event in events)
    assert [event.type for event in events].count("snapshot") == 1
    assert events[0].type == "snapshot" and all(e.type == "update" for e in events[1:])
    snapshot = events[0].data[0]
    assert snapshot.symbol == "BTC/USD" and len(snapshot.bids) == 10 and len(snapshot.asks) == 10
    assert snapshot.ts_ns is None  # this 2023 snapshot has no timestamp
    assert (snapshot.bids[0].price, snapshot.bids[0].qty) == ("29430.2", "0.18967538")
    assert snapshot.asks[2].qty == "0.2997598"
    assert snapshot.bids[3].qty == "4.0"
    assert all(e.data[0].checksum is not None for e in events)
    assert all(e.data[0].ts_ns is not None for e in events[1:])

    # Replaying the decoded levels reproduces every checksum Kraken sent: tokens and their order
    # are exactly the wire's (price precision 1, qty precision 8, depth 10).
    asks: dict[int, int] = {}
    bids: dict[int, int] = {}
    for event in events:
        item = event.data[0]
        for levels, book, best_first in ((item.asks, asks, False), (item.bids, bids, True)):
            for level in levels:
                price, qty = to_units(level.price, 1), to_units(level.qty, 8)
                if qty:
                    book[price] = qty
                else:
                    book.pop(price, None)
            for stale in sorted(book, reverse=not best_first)[: max(0, len(book) - 10)]:
                del book[stale]
        assert _checksum(asks, bids) == item.checksum


@pytest.mark.fixtures
def test_first_v2_update_fields_and_timestamp(fixture_file) -> None:
    frames = _book_stream(fixture_file("python-kraken-sdk/orderbook-v2.json"))
    event = decode_spot(frames[1])
    assert isinstance(event, BookMessage)
    item = event.data[0]
    assert item.bids == []
    assert [(a.price, a.qty) for a in item.asks] == [("29431.1", "0.0"), ("29433.3", "0.8"),
                                                    ("29430.6", "0.001")]
    assert item.checksum == 3547452596
    assert item.timestamp == "2023-07-30T15:29:58.343415Z"
    assert item.ts_ns == 1690730998343415000


@pytest.mark.fixtures
def test_real_instrument_snapshot_keeps_every_precision_and_token(fixture_file) -> None:
    path = fixture_file("kraken-data-recorder/instrument_snapshot.json")
    event = decode_spot(path.read_bytes())
    assert isinstance(event, InstrumentMessage) and event.type == "snapshot"
    assert len(event.data.pairs) == 683 and len(event.data.assets) == 296
    # An independent parse (stdlib json, non-integers as text) gives the expected values.
    expected = json.loads(path.read_text(), parse_float=str)["data"]
    for pair, raw in zip(event.data.pairs, expected["pairs"], strict=True):
        assert pair.symbol == raw["symbol"]
        assert type(pair.price_precision) is int and pair.price_precision == raw["price_precision"]
        assert type(pair.qty_precision) is int and pair.qty_precision == raw["qty_precision"]
        assert pair.cost_precision == raw["cost_precision"]
        for name in ("price_increment", "qty_increment", "qty_min", "cost_min", "tick_size",
                     "margin_initial", "position_limit_long", "position_limit_short"):
            assert getattr(pair, name) == raw.get(name), (pair.symbol, name)
        assert (pair.base, pair.quote, pair.status) == (raw["base"], raw["quote"], raw["status"])
        assert (pair.marginable, pair.has_index) == (raw["marginable"], raw["has_index"])
    for asset, raw in zip(event.data.assets, expected["assets"], strict=True):
        assert (asset.id, asset.precision, asset.precision_display) == (
            raw["id"], raw["precision"], raw["precision_display"])
        assert asset.collateral_value == raw["collateral_value"]
        assert asset.margin_rate == raw.get("margin_rate")
    by_symbol = {pair.symbol: pair for pair in event.data.pairs}
    assert by_symbol["EUR/USD"].qty_increment == "1E-8"
    assert by_symbol["EUR/USD"].qty_min == "0.50000000"
    assert by_symbol["EUR/USD"].cost_min == "0.50"
    assert sum(pair.qty_increment == "1E-8" for pair in event.data.pairs) == 627
    assert event.data.assets[0].margin_rate == "0.025000"


@pytest.mark.fixtures
def test_level3_capture_decodes_exactly(fixture_file) -> None:
    lines = fixture_file("gocryptotrader/wsLevel3.json").read_bytes().splitlines()
    events = [decode_spot(line) for line in lines if line.strip()]
    assert all(isinstance(event, Level3Message) for event in events)
    assert [event.type for event in events] == ["snapshot", "update", "update", "update"]
    assert [event.data[0].checksum for event in events] == [1063832831, 4214623937, 1052444130,
                                                          800786314]
    snapshot = events[0].data[0]
    assert len(snapshot.bids) == 21 and len(snapshot.asks) == 14
    first = snapshot.bids[0]
    assert (first.order_id, first.limit_price, first.order_qty, first.event) == (
        "OTCFZG-YOE2Q-LQKNM3", "44939.4", "0.88968699", None)
    assert snapshot.bids[1].order_qty == "0.45210000"  # trailing zeros kept
    assert first.ts_ns == 1704716799526146327
    assert snapshot.ts_ns == 1704716805110524116
    update = events[2].data[0]
    assert update.bids == []
    assert [o.event for o in update.asks] == ["delete"] * 4 + ["add"] * 2
    assert [o.order_id for o in update.asks][-2:] == ["OH2KQP-6W4XN-RXJ3YT", "OJ7YDM-AQ2KF-MZ5V4B"]
    assert update.asks[-1].ts_ns == 1704716795880312614
    assert [o.event for o in events[1].data[0].asks] == ["modify"]


def test_level3_documented_snapshot_and_update() -> None:
    snapshot = decode_spot(LEVEL3_DOCS_SNAPSHOT)
    assert isinstance(snapshot, Level3Message)
    order = snapshot.data[0].bids[0]
    assert order.timestamp == "2023-10-06T17:35:00.279389650Z"
    assert order.ts_ns == 1696613700279389650
    assert snapshot.data[0].asks[0].order_qty == "420.0"
    assert snapshot.data[0].ts_ns is None
    update = decode_spot(LEVEL3_DOCS_UPDATE)
    assert isinstance(update, Level3Message) and update.type == "update"
    assert [(o.event, o.order_id, o.limit_price) for o in update.data[0].asks] == [
        ("delete", "OOIATY-6EIWY-ACVIUN", "0.5636"), ("add", "O2BN53-5RSB2-V3J57T", "0.564")]
    assert update.data[0].checksum == 2841398499


@pytest.mark.fixtures
@pytest.mark.parametrize("name, kind", [
    ("ws_book_snapshot.json", BookMessage), ("ws_book_update.json", BookMessage),
    ("ws_l3_snapshot.json", Level3Message), ("ws_l3_update_add.json", Level3Message),
    ("ws_l3_update_delete.json", Level3Message), ("ws_l3_update_modify_price.json", Level3Message),
    ("ws_l3_update_modify_qty.json", Level3Message), ("ws_ohlc_update.json", OhlcMessage),
    ("ws_pong.json", Pong), ("ws_subscribe_response.json", SubscribeAck),
    ("ws_ticker_snapshot.json", TickerMessage), ("ws_trade_update.json", TradeMessage),
])
def test_nautilus_v2_shapes_decode(fixture_file, name: str, kind: type) -> None:
    assert isinstance(decode_spot(fixture_file(f"nautilus_trader/{name}").read_bytes()), kind)


@pytest.mark.fixtures
def test_futures_frames_are_unknown_to_the_spot_decoder(fixture_file) -> None:
    event = decode_spot(fixture_file("nautilus_trader/ws_futures_book_delta.json").read_bytes())
    assert isinstance(event, Reject) and event.reason == "unknown_message"


# ---------------------------------------------------------------------------------------------
# Control messages and acks.


def test_status_keeps_uint64_connection_id() -> None:
    event = decode_spot(STATUS)
    assert isinstance(event, StatusMessage) and event.type == "update"
    assert event.data[0].connection_id == 13834774380200032777
    assert (event.data[0].system, event.data[0].api_version) == ("online", "v2")
    too_big = decode_spot(STATUS.replace(b"13834774380200032777", b"18446744073709551616"))
    assert isinstance(too_big, Reject) and too_big.reason == "schema"


def test_heartbeat_and_pong() -> None:
    assert isinstance(decode_spot(b'{"channel":"heartbeat"}'), Heartbeat)
    assert decode_spot('{"channel": "heartbeat"}').channel == "heartbeat"
    pong = decode_spot(PONG)
    assert isinstance(pong, Pong) and pong.req_id == 101 and pong.method == "pong"
    assert pong.time_in_ns == 1695564623799685000 and pong.time_out_ns == 1695564623799703000
    warned = decode_spot(b'{"method":"pong","req_id":1,"result":{"warnings":["w"]},"success":true}')
    assert isinstance(warned, Pong) and warned.result.warnings == ["w"]


def test_successful_subscribe_ack() -> None:
    ack = decode_spot(SUBSCRIBE_OK)
    assert isinstance(ack, SubscribeAck) and ack.success and ack.error is None
    assert (ack.result.channel, ack.result.symbol, ack.result.depth, ack.result.snapshot) == (
        "book", "ALGO/USD", 10, True)
    assert ack.time_in_ns == 1696613755219022000
    ohlc_ack = decode_spot(b'{"method":"subscribe","result":{"channel":"ohlc","interval":5,"snapshot":true,'
                           b'"symbol":"BTC/USD","warnings":["timestamp is deprecated, use interval_begin"]},'
                           b'"success":true,"req_id":7}')
    assert isinstance(ohlc_ack, SubscribeAck)
    assert ohlc_ack.result.warnings == ["timestamp is deprecated, use interval_begin"]
    assert ohlc_ack.result.interval == 5 and ohlc_ack.req_id == 7 and ohlc_ack.time_in_ns is None
    instrument_ack = decode_spot(b'{"method":"subscribe","result":{"channel":"instrument","snapshot":true,'
                                 b'"warnings":["tick_size is deprecated, use price_increment"]},"success":true}')
    assert isinstance(instrument_ack, SubscribeAck) and instrument_ack.result.symbol is None


@pytest.mark.parametrize("frame, error, symbol", [
    (ALREADY_SUBSCRIBED, "Already subscribed", "BTC/USD"),
    (NOT_SUPPORTED, "Currency pair not supported xxx/USD", "xxx/USD"),
    (b'{"error":"Exceeded msg rate","method":"subscribe","req_id":3,"success":false,"symbol":"BTC/USD"}',
     "Exceeded msg rate", "BTC/USD"),
])
def test_failed_subscribe_ack(frame: bytes, error: str, symbol: str) -> None:
    ack = decode_spot(frame)
    assert isinstance(ack, SubscribeAck)
    assert (ack.success, ack.error, ack.symbol, ack.result) == (False, error, symbol, None)


def test_unsubscribe_ack() -> None:
    ack = decode_spot(SUBSCRIBE_OK.replace(b'"subscribe"', b'"unsubscribe"'))
    assert isinstance(ack, UnsubscribeAck) and ack.method == "unsubscribe" and ack.success


# ---------------------------------------------------------------------------------------------
# Data channels (documented examples).


def test_book_update_example() -> None:
    event = decode_spot(BOOK_UPDATE)
    assert isinstance(event, BookMessage) and event.type == "update"
    item = event.data[0]
    assert (item.symbol, item.asks, item.checksum) == ("MATIC/USD", [], 2114181697)
    assert (item.bids[0].price, item.bids[0].qty) == ("0.5657", "1098.3947558")
    assert item.ts_ns == 1696613755440295000


def test_trade_example() -> None:
    event = decode_spot(TRADE)
    assert isinstance(event, TradeMessage) and event.type == "snapshot"
    assert [t.trade_id for t in event.data] == [4665846, 4665847]
    first = event.data[0]
    assert (first.side, first.price, first.qty, first.ord_type) == ("buy", "0.5147", "6423.46326",
                                                                     "limit")
    assert first.ts_ns == 1695628116925533000


def test_ohlc_example() -> None:
    event = decode_spot(OHLC)
    assert isinstance(event, OhlcMessage)
    assert event.ts_ns == 1696436790524394914
    candle = event.data[0]
    assert (candle.open, candle.close, candle.volume, candle.trades, candle.interval) == (
        "0.5624", "0.5627", "30927.68066226", 12, 5)
    assert candle.interval_begin_ns == 1696436700000000000
    assert candle.ts_ns == 1696437000000000000


def test_ticker_example_and_string_numbers() -> None:
    event = decode_spot(TICKER)
    assert isinstance(event, TickerMessage)
    ticker = event.data[0]
    assert (ticker.bid, ticker.bid_qty, ticker.change, ticker.change_pct) == (
        "0.10025", "740.0", "-0.00017", "-0.17")
    as_strings = decode_spot(TICKER.replace(b'"bid": 0.10025', b'"bid": "0.10025"'))
    assert isinstance(as_strings, TickerMessage) and as_strings.data[0].bid == "0.10025"
    not_a_number = decode_spot(TICKER.replace(b'"bid": 0.10025', b'"bid": "abc"'))
    assert isinstance(not_a_number, Reject) and not_a_number.reason == "bad_number"


def test_documented_instrument_example() -> None:
    event = decode_spot(INSTRUMENT_DOCS)
    assert isinstance(event, InstrumentMessage)
    pair = event.data.pairs[0]
    assert (pair.qty_increment, pair.qty_min, pair.position_limit_long) == ("1e-08", "0.0001", 250)
    assert event.data.assets[0].collateral_value == "1.0"


def test_str_and_bytes_frames_decode_the_same() -> None:
    for frame in DOCUMENTED:
        assert decode_spot(frame) == decode_spot(frame.decode())


# ---------------------------------------------------------------------------------------------
# Rejects.


@pytest.mark.parametrize("frame, reason", [
    (BOOK_UPDATE[:-5], "malformed_json"),
    (b"", "malformed_json"),
    (b'{"channel": "book", "type": "update", "data": [{"symbol": "X", "bids": [{"price": NaN, "qty": 1}], "asks": []}]}',
     "malformed_json"),
    (b'{"channel":"heartbeat"} {}', "malformed_json"),
    (b'{"channel": "bok", "type": "update", "data": []}', "unknown_message"),
    (b'{"channel": 5}', "unknown_message"),
    (b'{"method": "add_order", "success": true}', "unknown_message"),
    (b'{"foo": 1}', "unknown_message"),
    (b'[1, 2, 3]', "unknown_message"),
    (b'"book"', "unknown_message"),
    (b'{"channel": "book", "type": "update"}', "schema"),
    (b'{"channel": "book", "type": "partial", "data": []}', "schema"),
    (BOOK_UPDATE.replace(b'"symbol": "MATIC/USD"', b'"symbol": 7'), "schema"),
    (BOOK_UPDATE.replace(b"2114181697", b'"2114181697"'), "schema"),
    (BOOK_UPDATE.replace(b"2114181697", b"4294967296"), "schema"),
    (BOOK_UPDATE.replace(b"2114181697", b"-1"), "schema"),
    (BOOK_UPDATE.replace(b'"price": 0.5657', b'"price": true'), "bad_number"),
    (BOOK_UPDATE.replace(b'"price": 0.5657', b'"price": null'), "bad_number"),
    (BOOK_UPDATE.replace(b'"qty": 1098.3947558', b'"qty": [1]'), "bad_number"),
    (BOOK_UPDATE.replace(b"2023-10-06T17:35:55.440295Z", b"2023-13-06T17:35:55.440295Z"),
     "bad_timestamp"),
    (BOOK_UPDATE.replace(b"2023-10-06T17:35:55.440295Z", b"yesterday"), "bad_timestamp"),
    (LEVEL3_DOCS_UPDATE.replace(b'"event": "add"', b'"event": "insert"'), "schema"),
    (LEVEL3_DOCS_UPDATE.replace(b'"limit_price": 0.564', b'"limit_price": false'), "bad_number"),
    (LEVEL3_DOCS_UPDATE.replace(b"2023-10-06T18:20:27.383408052Z", b"2023-10-06T18:20:27.38340805xZ"),
     "bad_timestamp"),
    (TRADE.replace(b'"side": "buy"', b'"side": "b"', 1), "schema"),
    (TRADE.replace(b'"trade_id": 4665846', b'"trade_id": 4665846.0'), "schema"),
    (PONG.replace(b"2023-09-24T14:10:23.799685Z", b"2023-09-24T14:10:23.799685"), "pong-ok"),
    (PONG.replace(b"2023-09-24T14:10:23.799685Z", b"2023-09-24T24:10:23.799685Z"), "bad_timestamp"),
    (INSTRUMENT_DOCS.replace(b'"qty_precision": 8', b'"qty_precision": 8.0'), "schema"),
    (INSTRUMENT_DOCS.replace(b'"qty_precision": 8', b'"qty_precision": -1'), "schema"),
    (INSTRUMENT_DOCS.replace(b'"qty_increment": 1e-08', b'"qty_increment": "1e-08x"'), "bad_number"),
])
def test_rejects(frame: bytes, reason: str) -> None:
    event = decode_spot(frame)
    if reason == "pong-ok":  # a timestamp without zone is UTC per the shared parser
        assert isinstance(event, Pong)
        return
    assert isinstance(event, Reject), event
    assert event.reason == reason, event.detail
    assert event.raw == frame and event.detail


def test_non_utf8_is_rejected() -> None:
    for frame in (b'{"channel": "heartbeat", "x": "\xff"}', b"\xff\xfe", b'{"channel":"\xc3("}'):
        event = decode_spot(frame)
        assert isinstance(event, Reject) and event.reason == "not_utf8", event
        assert event.raw == frame
    lone_surrogate = '{"channel": "heartbeat", "x": "\ud800"}'
    event = decode_spot(lone_surrogate)
    assert isinstance(event, Reject) and event.reason == "not_utf8"
    assert event.raw == lone_surrogate.encode("utf-8", "surrogatepass")


def test_oversized_frames_are_rejected_unread() -> None:
    event = decode_spot(BOOK_UPDATE, max_frame_bytes=64)
    assert isinstance(event, Reject) and event.reason == "too_large" and event.raw == BOOK_UPDATE
    huge = b'{"channel": "heartbeat", "pad": "' + b"x" * (16 * 1024 * 1024) + b'"}'
    event = decode_spot(huge)
    assert isinstance(event, Reject) and event.reason == "too_large"
    # Multi-byte text is measured in bytes, not characters.
    wide = '{"channel": "heartbeat", "pad": "' + "\u20ac" * 30 + '"}'
    assert isinstance(decode_spot(wide, max_frame_bytes=100), Reject)
    assert isinstance(decode_spot(wide, max_frame_bytes=200), Heartbeat)


@pytest.mark.parametrize("depth", [100, 10_000, 200_000])
def test_deep_nesting_is_rejected(depth: int) -> None:
    for frame in (b"[" * depth + b"]" * depth,
                  b'{"channel": "book", "type": "update", "data": ' + b"[" * depth + b"]" * depth + b"}",
                  b'{"x": ' * depth + b"1" + b"}" * depth):
        event = decode_spot(frame)
        assert isinstance(event, Reject) and event.reason in {"malformed_json", "unknown_message",
                                                              "schema"}


def test_wrong_frame_types_are_rejected() -> None:
    for frame in (None, 12, ["x"]):
        event = decode_spot(frame)  # type: ignore[arg-type]
        assert isinstance(event, Reject) and event.reason == "schema"
    assert isinstance(decode_spot(bytearray(b'{"channel":"heartbeat"}')), Heartbeat)


# ---------------------------------------------------------------------------------------------
# Fuzzing: nothing may escape decode_spot.


def _assert_event_or_reject(frame: bytes | str) -> None:
    event = decode_spot(frame)
    assert isinstance(event, (Reject, BookMessage, Level3Message, TradeMessage, OhlcMessage,
                              TickerMessage, InstrumentMessage, StatusMessage, Heartbeat,
                              SubscribeAck, UnsubscribeAck, Pong))
    if isinstance(event, Reject):
        assert event.reason and isinstance(event.raw, bytes)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(frame: bytes) -> None:
    _assert_event_or_reject(frame)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_text_never_raises(frame: str) -> None:
    _assert_event_or_reject(frame)


_JSON_NOISE = [b"", b"0", b"-", b".", b"e", b"1E-8", b'"', b"null", b"true", b"[", b"]", b"{",
               b"}", b",", b":", b"\xff", b"NaN", b"99999999999999999999999", b'"\\u0000"']


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(DOCUMENTED), st.data())
def test_mutated_real_frames_never_raise(frame: bytes, data: st.DataObject) -> None:
    mutated = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4))):
        start = data.draw(st.integers(0, len(mutated)))
        end = data.draw(st.integers(start, min(len(mutated), start + 8)))
        noise = data.draw(st.sampled_from(_JSON_NOISE) | st.binary(max_size=4))
        mutated[start:end] = noise
    _assert_event_or_reject(bytes(mutated))


@pytest.mark.fixtures
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_captured_frames_never_raise(fixture_file, data: st.DataObject) -> None:
    lines = [line for line in fixture_file("gocryptotrader/wsLevel3.json").read_bytes().splitlines()
             if line.strip()]
    frame = bytearray(data.draw(st.sampled_from(lines)))
    position = data.draw(st.integers(0, len(frame) - 1))
    frame[position] = data.draw(st.integers(0, 255))
    _assert_event_or_reject(bytes(frame))


@pytest.mark.parametrize("stamp, ns", [
    ("2023-10-06T17:35:55.440295Z", 1696613755440295000),
    ("2023-10-06T17:35:55.000001Z", 1696613755000001000),
    ("2023-10-06T17:35:55.44Z", 1696613755440000000),          # not Kraken's 6-digit layout
    ("2023-10-06T17:35:55.440295123Z", 1696613755440295123),   # level3's 9-digit one
])
def test_book_timestamp_is_exact(stamp: str, ns: int) -> None:
    frame = BOOK_UPDATE.replace(b"2023-10-06T17:35:55.440295Z", stamp.encode())
    event = decode_spot(frame)
    assert not isinstance(event, Reject), event
    assert event.data[0].ts_ns == ns


@pytest.mark.parametrize("stamp", [
    "2023-02-30T17:35:55.440295Z", "2023-10-06T17:35:55.44029xZ", "2023-10-06T17:35:55.\u0661\u0661\u0661\u0661\u0661\u0661Z",
    "2023-10-06T17:35:55,440295Z", "2023-10-06T17:35:55.440295z",
])
def test_book_timestamp_rejects(stamp: str) -> None:
    frame = BOOK_UPDATE.replace(b"2023-10-06T17:35:55.440295Z", stamp.encode())
    event = decode_spot(frame)
    assert isinstance(event, Reject) and event.reason == "bad_timestamp", event


@pytest.mark.parametrize("stamp, ok", [
    ("2023-10-06T18:20:27.383408052Z", True), ("2023-02-29T18:20:27.383408052Z", False),
    ("2023-10-06T18:20:27.38340805\u0661Z", False), ("2023-10-06T18:20:27.383408052+00:00", True),
])
def test_level3_order_timestamp(stamp: str, ok: bool) -> None:
    from recorder.protocol.timestamps import rfc3339_to_ns

    frame = LEVEL3_DOCS_UPDATE.replace(b"2023-10-06T18:20:27.383408052Z", stamp.encode())
    event = decode_spot(frame)
    if not ok:
        assert isinstance(event, Reject) and event.reason == "bad_timestamp", event
        return
    assert not isinstance(event, Reject), event
    stamps = [o.ts_ns for side in (event.data[0].bids, event.data[0].asks) for o in side]
    assert rfc3339_to_ns(stamp) in stamps


@pytest.mark.parametrize("stamp, ns", [
    ("2023-10-06T18:21:00.097010033Z", 1696616460097010033),
    ("2023-10-06T18:21:00.097010Z", 1696616460097010000),
    ("2023-10-06T18:21:00.09Z", 1696616460090000000),
    ("2023-10-06T18:21:00.097010033+00:00", 1696616460097010033),
    ("2023-10-06T18:21:61.097010033Z", None),
    ("2023-10-06T18:21:00.0970100\u06613Z", None),
])
def test_level3_message_timestamp(stamp: str, ns: int | None) -> None:
    frame = LEVEL3_DOCS_UPDATE.replace(b'"bids": []', f'"timestamp": "{stamp}", "bids": []'.encode())
    event = decode_spot(frame)
    if ns is None:
        assert isinstance(event, Reject) and event.reason == "bad_timestamp", event
        return
    assert not isinstance(event, Reject), event
    assert event.data[0].ts_ns == ns
    assert event.data[0].asks[1].ts_ns == 1696616427383408052


@pytest.mark.parametrize("text", ["1E-8", "0.00010000", "-0.0", "1e+2", "93704.2", "4.0",
                                  "12345678901234567890.123456789012345678"])
def test_non_integer_numbers_keep_their_exact_text(text: str) -> None:
    frame = BOOK_UPDATE.replace(b"0.5657", text.encode()).replace(b"1098.3947558", text.encode())
    event = decode_spot(frame)
    assert isinstance(event, BookMessage), event
    level = event.data[0].bids[0]
    assert type(level.price) is str and level.price == text
    assert type(level.qty) is str and level.qty == text


def test_integer_numbers_stay_ints() -> None:
    event = decode_spot(BOOK_UPDATE.replace(b"0.5657", b"93704").replace(b"1098.3947558", b"0"))
    assert isinstance(event, BookMessage), event
    level = event.data[0].bids[0]
    assert level.price == 93704 and type(level.price) is int
    assert level.qty == 0 and type(level.qty) is int
