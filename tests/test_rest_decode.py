"""REST body decoding on real fixtures, error envelopes and hostile input."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.protocol.numbers import to_units
from recorder.protocol.reject import Reject
from recorder.protocol.rest import (
    AssetPairs,
    DepthSnapshot,
    FuturesInstruments,
    FuturesOrderBook,
    FuturesTickers,
    Level3Snapshot,
    OhlcPage,
    RestError,
    ServerTime,
    SystemStatus,
    TradesPage,
    WebSocketsToken,
    decode_asset_pairs,
    decode_depth,
    decode_futures_instruments,
    decode_futures_orderbook,
    decode_futures_tickers,
    decode_level3,
    decode_ohlc,
    decode_server_time,
    decode_system_status,
    decode_trades,
    decode_websockets_token,
    parse_spot_error,
)

ALL_DECODERS = (
    decode_asset_pairs, decode_depth, decode_trades, decode_ohlc, decode_server_time,
    decode_system_status, decode_websockets_token, decode_level3, decode_futures_orderbook,
    decode_futures_instruments, decode_futures_tickers,
)


def endpoint_body(path: Path) -> bytes:
    """Kraken.Net endpoint files: method, path, auth flag, then the body."""
    return b"\n".join(path.read_bytes().split(b"\n")[3:])


def recorded_rest_body(path: Path) -> bytes:
    """cryptofeed REST recordings: ``https://... -> <epoch>: <body>``."""
    for line in path.read_bytes().splitlines():
        if line.startswith(b"https://"):
            return line.split(b": ", 1)[1]
    raise AssertionError("no REST line")


# --------------------------------------------------------------------------------- Spot


@pytest.mark.fixtures
def test_trades_page(fixture_file) -> None:
    body = fixture_file("nautilus_trader/http_trades.json").read_bytes()
    page = decode_trades(body)
    assert isinstance(page, TradesPage)
    assert page.pair == "XBTUSDT" and len(page.trades) == 1000
    assert [t.trade_id for t in page.trades] == list(range(10218208, 10219208))
    assert page.last == "1762820035982277754" and page.last_ns == 1762820035982277754
    # Exact tokens: every price/volume is the JSON string, every time the JSON number text.
    original = json.loads(body, parse_float=str)["result"]["XBTUSDT"]
    assert [(t.price, t.volume, t.time, t.side, t.ord_type, t.misc) for t in page.trades] == [
        tuple(row[:6]) for row in original]
    first, newest = page.trades[0], page.trades[-1]
    assert (first.price, first.volume, first.side, first.ord_type) == (
        "105433.60000", "0.00027625", "b", "l")
    assert first.time == "1762795433.9717445" and first.time_ns == 1762795433971744500
    assert newest.time_ns == 1762820035982277900  # float text, digits past the cursor's
    assert to_units(newest.price, 1) == 1058994
    assert all(t.time_ns == int(Decimal(t.time) * 10**9) for t in page.trades)


@pytest.mark.fixtures
def test_trades_kraken_net(fixture_file) -> None:
    page = decode_trades(endpoint_body(fixture_file(
        "kraken-net/Endpoints/Spot/ExchangeData/GetTradeHistory.txt")))
    assert isinstance(page, TradesPage) and page.pair == "XXBTZUSD"
    assert [t.trade_id for t in page.trades] == [61044952, 61044953, 61044956]
    assert page.last_ns == 1688671969993150842


def test_old_six_field_trades_and_empty_cursor() -> None:
    page = decode_trades(
        '{"error":[],"result":{"XXBTZUSD":[["5541.2","0.1","1534614057.321597","s","l",""]],'
        '"last":""}}')
    assert isinstance(page, TradesPage)
    assert page.trades[0].trade_id is None and page.last_ns is None
    assert page.trades[0].time_ns == 1534614057321597000


@pytest.mark.fixtures
def test_ohlc(fixture_file) -> None:
    page = decode_ohlc(fixture_file("nautilus_trader/http_ohlc.json").read_bytes())
    assert isinstance(page, OhlcPage) and page.pair == "XBTUSDT"
    assert len(page.bars) == 721 and page.last == 1762820160
    assert all(b.time - a.time == 60 for a, b in zip(page.bars, page.bars[1:]))
    assert page.bars[0].time_ns == 1762777020 * 10**9
    assert (page.bars[0].open, page.bars[0].volume, page.bars[0].count) == (
        "106038.2", "0.00000000", 0)
    small = decode_ohlc(endpoint_body(fixture_file("kraken-net/Endpoints/Spot/ExchangeData/GetKlines.txt")))
    assert isinstance(small, OhlcPage) and len(small.bars) == 4 and small.bars[0].count == 23


@pytest.mark.fixtures
def test_depth(fixture_file) -> None:
    book = decode_depth(fixture_file("nautilus_trader/http_order_book.json").read_bytes())
    assert isinstance(book, DepthSnapshot) and book.pair == "XBTUSDT"
    assert len(book.asks) == len(book.bids) == 5
    assert (book.asks[0].price, book.asks[0].volume, book.asks[0].timestamp_ns) == (
        "105944.30000", "0.136", 1762820248 * 10**9)
    assert book.bids[0].price == "105944.20000"
    other = decode_depth(endpoint_body(fixture_file("kraken-net/Endpoints/Spot/ExchangeData/GetOrderBook.txt")))
    assert isinstance(other, DepthSnapshot) and other.pair == "XXBTZUSD" and other.asks[1].volume == "1.500"


@pytest.mark.fixtures
def test_asset_pairs_nautilus(fixture_file) -> None:
    pairs = decode_asset_pairs(fixture_file("nautilus_trader/http_asset_pairs.json").read_bytes())
    assert isinstance(pairs, AssetPairs)
    pair = pairs.pairs["XBTUSDT"]
    assert (pair.pair_decimals, pair.lot_decimals, pair.cost_decimals) == (1, 8, 5)
    assert (pair.ordermin, pair.costmin, pair.tick_size) == ("0.00005", "0.5", "0.1")
    assert (pair.wsname, pair.altname, pair.status) == ("XBT/USDT", "XBTUSDT", "online")
    assert pairs.by_wsname() == {"XBT/USDT": "XBTUSDT"}
    tokenized = decode_asset_pairs(
        fixture_file("nautilus_trader/http_asset_pairs_tokenized.json").read_bytes())
    assert isinstance(tokenized, AssetPairs)
    assert tokenized.pairs["AAPLxUSD"].execution_venue == "international"


@pytest.mark.fixtures
def test_asset_pairs_full_2025_list(fixture_file) -> None:
    """1032 real pairs (the crawler dropped the REST keys: rebuild the envelope keyed by altname)."""
    items = json.loads(fixture_file("crypto-market-raw-data/kraken.spot.2025-05-08.json").read_bytes(),
                       parse_float=str)
    body = msgspec.json.encode({"error": [], "result": {p["altname"]: p for p in items}})
    pairs = decode_asset_pairs(body)
    assert isinstance(pairs, AssetPairs) and len(pairs.pairs) == 1032
    for item in items:
        pair = pairs.pairs[item["altname"]]
        assert (pair.pair_decimals, pair.lot_decimals, pair.cost_decimals) == (
            item["pair_decimals"], item["lot_decimals"], item["cost_decimals"])
        assert (pair.tick_size, pair.ordermin, pair.costmin) == (
            item["tick_size"], item["ordermin"], item["costmin"])
        assert to_units(pair.tick_size, pair.pair_decimals) >= 1  # tick fits the price decimals


@pytest.mark.fixtures
def test_asset_pairs_2021_skip_dark_pool(fixture_file) -> None:
    pairs = decode_asset_pairs(recorded_rest_body(fixture_file("cryptofeed/KRAKEN.0")))
    assert isinstance(pairs, AssetPairs)
    assert len(pairs.pairs) == 293 and len(pairs.skipped_keys) == 11
    assert all(key.endswith(".d") for key in pairs.skipped_keys)
    assert pairs.pairs["XXBTZUSD"].wsname == "XBT/USD" and pairs.pairs["XXBTZUSD"].tick_size is None


@pytest.mark.fixtures
def test_time_and_status(fixture_file) -> None:
    now = decode_server_time(fixture_file("nautilus_trader/http_server_time.json").read_bytes())
    assert isinstance(now, ServerTime) and now.unixtime_ns == 1762820224 * 10**9
    status = decode_system_status(fixture_file("nautilus_trader/http_system_status.json").read_bytes())
    assert isinstance(status, SystemStatus) and status.status == "online"
    assert status.timestamp_ns == 1762820230 * 10**9


def test_websockets_token_and_level3() -> None:
    token = decode_websockets_token(
        '{"error": [], "result": {"token": "G38a1tGFzqGiUCmnegBcm8d4nfP3tytiNQz6tkCBYXY", "expires": 900}}')
    assert token == WebSocketsToken(token="G38a1tGFzqGiUCmnegBcm8d4nfP3tytiNQz6tkCBYXY", expires=900)
    book = decode_level3(
        '{"error": [], "result": {"pair": "BTC/USD", "bids": [{"price": "90509.00000", '
        '"qty": "0.04902300", "order_id": "ONLALL-67PF5-3CAQCL", "timestamp": 1765628335242269554}],'
        ' "asks": [{"price": "90509.10000", "qty": "0.00110900", "order_id": "OVT3GM-4OLSW-L4PPLG",'
        ' "timestamp": 1765628340224297666}]}}')
    assert isinstance(book, Level3Snapshot) and book.pair == "BTC/USD"
    assert book.bids[0].timestamp == 1765628335242269554 and book.asks[0].qty == "0.00110900"
    assert book.asks[0].order_id == "OVT3GM-4OLSW-L4PPLG"


# ------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "category", "message", "detail", "retry_after_ns", "rate_limited"),
    [
        ("EAPI:Rate limit exceeded", "API", "Rate limit exceeded", None, None, True),
        ("EGeneral:Too many requests", "General", "Too many requests", None, None, True),
        ("EService: Throttled: 1700000000", "Service", "Throttled", "1700000000",
         1_700_000_000_000_000_000, True),
        ("EService:Throttled:1700000000.5", "Service", "Throttled", "1700000000.5",
         1_700_000_000_500_000_000, True),
        ("EQuery:Unknown asset pair", "Query", "Unknown asset pair", None, None, False),
        ("EAPI:Invalid nonce", "API", "Invalid nonce", None, None, False),
        ("EService:Market in cancel_only mode", "Service", "Market in cancel_only mode", None, None,
         False),
        ("EGeneral:Invalid arguments:pair", "General", "Invalid arguments", "pair", None, False),
    ],
)
def test_spot_errors_are_typed(text, category, message, detail, retry_after_ns, rate_limited) -> None:
    body = msgspec.json.encode({"error": [text]})
    for decode in (decode_trades, decode_depth, decode_asset_pairs, decode_level3):
        error = decode(body)
        assert isinstance(error, RestError)
        assert (error.venue, error.severity, error.category, error.message, error.detail) == (
            "spot", "E", category, message, detail)
        assert error.retry_after_ns == retry_after_ns and error.text == text
        assert error.is_rate_limited is rate_limited


def test_unparseable_and_multiple_spot_errors() -> None:
    odd = parse_spot_error("something odd")
    assert (odd.severity, odd.category, odd.message) == ("", "", "something odd")
    error = decode_trades('{"error":["EGeneral:Temporary lockout","EAPI:Invalid key"],"result":{}}')
    assert isinstance(error, RestError) and error.is_rate_limited
    assert error.others == ("EAPI:Invalid key",)
    # Warnings alone do not fail a request.
    ok = decode_server_time('{"error":["WGeneral:Something"],"result":{"unixtime":1,"rfc1123":"x"}}')
    assert isinstance(ok, ServerTime)


def test_futures_error() -> None:
    body = '{"result":"error","serverTime":"2016-02-26T12:09:38.830Z","error":"apiLimitExceeded"}'
    for decode in (decode_futures_orderbook, decode_futures_instruments, decode_futures_tickers):
        error = decode(body)
        assert isinstance(error, RestError)
        assert (error.venue, error.message, error.is_rate_limited) == ("futures", "apiLimitExceeded", True)
        assert error.server_time_ns == 1456488578830_000000


# ------------------------------------------------------------------------------ Futures


@pytest.mark.fixtures
def test_futures_orderbooks(fixture_file) -> None:
    book = decode_futures_orderbook(
        fixture_file("nautilus_trader/http_futures_orderbook.json").read_bytes(), symbol="PF_XBTUSD")
    assert isinstance(book, FuturesOrderBook) and book.symbol == "PF_XBTUSD"
    assert [(lv.price, lv.size) for lv in book.bids] == [
        ("105900.0", "0.5"), ("105850.0", "1.2"), ("105800.0", "0.8")]
    assert book.server_time_ns == 1752235200 * 10**9
    full = decode_futures_orderbook(endpoint_body(
        fixture_file("kraken-net/Endpoints/Futures/ExchangeData/GetOrderBook.txt")))
    assert isinstance(full, FuturesOrderBook)
    assert (len(full.bids), len(full.asks)) == (244, 182)
    assert (full.bids[0].price, full.bids[0].size) == ("61011.5", 2900)
    assert all(type(lv.size) is int for lv in full.bids)


@pytest.mark.fixtures
def test_futures_instruments_2025(fixture_file) -> None:
    items = json.loads(fixture_file("crypto-market-raw-data/kraken.futures.2025-05-06.json").read_bytes(),
                       parse_float=str)
    instruments = decode_futures_instruments(
        msgspec.json.encode({"result": "success", "instruments": items}))
    assert isinstance(instruments, FuturesInstruments) and len(instruments.instruments) == 362
    by_symbol = instruments.by_symbol()
    for item in items:
        decoded = by_symbol[item["symbol"].upper()]
        assert decoded.tick_size == item["tickSize"]
        assert decoded.contract_value_trade_precision == item["contractValueTradePrecision"]
        assert decoded.price_precision is not None and decoded.opening_date_ns is not None


@pytest.mark.fixtures
def test_futures_instruments_other_sources(fixture_file) -> None:
    small = decode_futures_instruments(
        fixture_file("nautilus_trader/http_futures_instruments.json").read_bytes())
    assert isinstance(small, FuturesInstruments)
    pepe = small.by_symbol()["PF_PEPEUSD"]
    assert pepe.tick_size == "1e-10" and pepe.price_precision == 10
    old = decode_futures_instruments(recorded_rest_body(fixture_file("cryptofeed/KRAKEN_FUTURES.0")))
    assert isinstance(old, FuturesInstruments) and len(old.instruments) == 27
    xbt = old.by_symbol()["PI_XBTUSD"]
    assert xbt.symbol == "pi_xbtusd" and xbt.tick_size == "0.5" and xbt.price_precision == 1
    assert sum(i.type == "spot index" for i in old.instruments) == 10


@pytest.mark.fixtures
def test_futures_tickers(fixture_file) -> None:
    tickers = decode_futures_tickers(fixture_file("nautilus_trader/http_futures_tickers.json").read_bytes())
    assert isinstance(tickers, FuturesTickers)
    pi = tickers.tickers[0]
    assert (pi.symbol, pi.mark_price, pi.funding_rate) == (
        "PI_XBTUSD", "91506.6009839176", "-3.995839963e-09")
    assert pi.last_time_ns == 1763339461835715000
    other = decode_futures_tickers(endpoint_body(
        fixture_file("kraken-net/Endpoints/Futures/ExchangeData/GetTickers.txt")))
    assert isinstance(other, FuturesTickers)
    assert [t.symbol for t in other.tickers][-2:] == ["in_xbtusd", "rr_xbtusd"]


# ------------------------------------------------------------------------------ rejects


@pytest.mark.parametrize(
    ("decode", "body", "reason"),
    [
        (decode_trades, b"", "malformed_json"),
        (decode_trades, b'{"error":[],"result":{"X":[["1","2",3,"b","l","",1]]}}', "schema"),
        (decode_trades, b'{"error":[],"result":{"X":[["1","2",3,"x","l","",1]],"last":"1"}}', "schema"),
        (decode_trades, b'{"error":[],"result":{"X":[["1.2.3","2",3,"b","l","",1]],"last":"1"}}',
         "bad_number"),
        (decode_trades, b'{"error":[],"result":{"X":[["1","2","soon","b","l","",1]],"last":"1"}}',
         "bad_timestamp"),
        (decode_trades, b'{"error":[],"result":{"X":[],"last":"abc"}}', "bad_timestamp"),
        (decode_trades, b'{"error":[],"result":{"X":[],"Y":[],"last":"1"}}', "schema"),
        (decode_trades, b'{"error":[]}', "schema"),
        (decode_trades, b'{"error":"x"}', "schema"),
        (decode_trades, b"[]", "schema"),
        (decode_trades, b'{"error":[],"result":{"X":[],"last":"\xff"}}', "bad_encoding"),
        (decode_depth, b'{"error":[],"result":{"X":{"asks":[["a","1",1]],"bids":[]}}}', "bad_number"),
        (decode_depth, '{"error":[],"result":{"X":{"asks":[["1\uff11","1",1]],"bids":[]}}}'.encode(),
         "bad_number"),
        (decode_asset_pairs, b'{"error":[],"result":{"X":{"altname":"X","base":"A","quote":"B",'
                             b'"pair_decimals":99,"lot_decimals":8}}}', "schema"),
        (decode_asset_pairs, b'{"error":[],"result":{"X":{"altname":"X","base":"A","quote":"B",'
                             b'"pair_decimals":1,"lot_decimals":8,"tick_size":"0.1x"}}}', "bad_number"),
        (decode_system_status, b'{"error":[],"result":{"status":"online","timestamp":"yesterday"}}',
         "bad_timestamp"),
        (decode_futures_orderbook, b'{"result":"success","orderBook":{"bids":[[1,true]]}}', "bad_number"),
        (decode_futures_orderbook, b'{"orderBook":{}}', "schema"),
        (decode_futures_instruments, b'{"result":"success","instruments":[{"symbol":"X"}]}', "schema"),
    ],
)
def test_rejects(decode, body: bytes, reason: str) -> None:
    result = decode(body)
    assert isinstance(result, Reject), result
    assert result.reason == reason, result.detail
    assert result.raw == body


def test_not_a_body() -> None:
    assert decode_trades(None).reason == "not_a_frame"  # type: ignore[arg-type,union-attr]


@pytest.mark.parametrize("decode", ALL_DECODERS)
@given(data=st.binary(max_size=300))
@settings(max_examples=100)
def test_random_bytes_never_raise(decode, data: bytes) -> None:
    decode(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@pytest.mark.parametrize("decode", ALL_DECODERS)
@given(result=json_values, error=st.lists(st.text(max_size=20), max_size=2))
@settings(max_examples=100)
def test_random_envelopes_never_raise(decode, result, error) -> None:
    decode(msgspec.json.encode({"error": error, "result": result}))
    decode(msgspec.json.encode({"result": "success", "tickers": result, "instruments": result,
                                "orderBook": result}))
