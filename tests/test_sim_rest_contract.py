"""Contract tests: every public REST market-data answer of ``recorder sim`` has the shape of a
real Kraken answer.

Each test fetches an endpoint from a simulator serving the real 683-pair instrument snapshot
(read in place from the shared fixtures) and compares it with a real capture of the same
endpoint: same keys, same JSON types and, for Kraken's decimal strings, the same number of
decimals for a pair with the same ``pair_decimals``/``cost_decimals``/``lot_decimals`` (the
simulated BTC/USDT and BTC/USD have those of the captured XBTUSDT and XXBTZUSD). Where no real
capture exists (Assets, Spread, Futures history and instrument status) the documented example
of Kraken's API specification is the reference, written out below. ``docs/kraken-rest.md``
lists the sources.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recorder.sim.server import SimConfig, SimServer
from recorder.sim.universe import load_universe

pytestmark = pytest.mark.integration

SNAPSHOT = "kraken-data-recorder/instrument_snapshot.json"
PAIRS = ["BTC/USDT", "BTC/USD", "ETH/BTC", "DOGE/USD", "EUR/USD", "USDT/USD", "SOL/USD", "BTT/USD"]
_DECIMAL = re.compile(r"-?\d+(?:\.(\d+))?")


# --- shapes ------------------------------------------------------------------------------------


def shape(value: Any, *, decimals: bool = True, numbers: bool = False) -> Any:
    """A comparable skeleton of a JSON value.

    Decimal strings become ``"num<decimals>"`` (``"num"`` with ``decimals=False``); other
    strings ``"str"``; with ``numbers=True`` ints and floats are both ``"number"`` (for answers
    whose captures were re-serialised, turning ``61008`` into ``61008.0``). A list of lists is
    the set of its rows' shapes, a list of one repeated shape is ``("all", shape)``, any other
    list is positional; a dict maps its keys to shapes.
    """
    def sub(v: Any) -> Any:
        return shape(v, decimals=decimals, numbers=numbers)

    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, int | float):
        return "number" if numbers else type(value).__name__
    if isinstance(value, str):
        match = _DECIMAL.fullmatch(value)
        if match is None:
            return "str"
        return f"num{len(match.group(1) or '')}" if decimals else "num"
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, sub(v)) for k, v in value.items())))
    if value and all(isinstance(v, list) for v in value):
        return ("rows", frozenset(sub(v) for v in value))
    shapes = [sub(v) for v in value]
    if len(set(map(repr, shapes))) == 1:
        return ("all", shapes[0])
    return ("seq", tuple(shapes))


def test_shape_tells_decimals_types_and_rows_apart() -> None:
    assert shape("105944.30000") == "num5" and shape("1") == "num0" and shape("b") == "str"
    assert shape("0.1", decimals=False) == "num" and shape(1, numbers=True) == shape(1.5, numbers=True)
    assert shape(1) != shape(1.0) and shape([1, 2]) == shape([3, 4, 5]) == ("all", "int")
    assert shape(["1.0", "1", "1.000"]) != shape(["1.00", "1", "1.000"])
    assert shape({"a": [["1.5", 2]]}) == shape({"a": [["2.5", 3], ["0.1", 9]]})
    assert shape({"a": 1}) != shape({"a": 1, "b": 1})


# --- the simulator -----------------------------------------------------------------------------


class _Served:
    """A simulator on an ephemeral port, run by an event loop in a background thread."""

    def __init__(self, snapshot: Path) -> None:
        universe = load_universe(snapshot, pairs=PAIRS, futures_path=None, seed=5)
        self.server = SimServer(SimConfig(port=0, seed=5, rate=8.0, rest_burst=100_000,
                                          rest_refill_per_s=1000.0), universe)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.urls = asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(60)
        self.rest = self.urls["rest"]

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()

    def get(self, path: str, expect_status: int = 200) -> Any:
        try:
            with urllib.request.urlopen(self.rest + path, timeout=20) as response:
                assert response.status == expect_status
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            assert exc.code == expect_status, (path, exc.code)
            return json.loads(exc.read())

    def result(self, path: str) -> Any:
        body = self.get(path)
        assert body["error"] == [], (path, body)
        return body["result"]


@pytest.fixture(scope="module")
def sim(fixture_file) -> Iterator[_Served]:
    served = _Served(fixture_file(SNAPSHOT))
    try:
        deadline = time.monotonic() + 30
        while True:  # enough trades for full Trades and Ticker answers on the busy pairs
            rows = served.result("/0/public/Trades?pair=XBTUSDT")["XBTUSDT"]
            if len(rows) >= 20 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(rows) >= 20, "the simulated market produced too few trades"
        yield served
    finally:
        served.close()


def nautilus(fixture_file, name: str) -> Any:
    return json.loads(fixture_file(f"nautilus_trader/{name}").read_text())


def kraken_net(fixture_file, relative: str) -> Any:
    """A Kraken.Net endpoint file: method, path and auth flag lines, then the body."""
    lines = fixture_file(f"kraken-net/Endpoints/{relative}").read_text().splitlines()
    return json.loads("\n".join(lines[3:]))


# --- Spot --------------------------------------------------------------------------------------


def test_time_and_system_status(sim: _Served, fixture_file) -> None:
    real_time = nautilus(fixture_file, "http_server_time.json")
    ours = sim.get("/0/public/Time")
    assert shape(ours) == shape(real_time)
    rfc = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d\d \d\d:\d\d:\d\d \+0000")
    assert rfc.fullmatch(real_time["result"]["rfc1123"]) and rfc.fullmatch(ours["result"]["rfc1123"])
    real_status = nautilus(fixture_file, "http_system_status.json")
    ours = sim.get("/0/public/SystemStatus")
    assert shape(ours) == shape(real_status)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", ours["result"]["timestamp"])


def test_asset_pairs_match_the_real_lists(sim: _Served, fixture_file) -> None:
    pairs = sim.result("/0/public/AssetPairs")
    # result keys: Kraken's canonical keys (legacy-keyed pairs, XDGUSD, altnames)
    assert sorted(pairs) == sorted(["XBTUSDT", "XXBTZUSD", "XETHXXBT", "XDGUSD", "ZEURZUSD",
                                    "USDTZUSD", "SOLUSD", "BTTUSD"])
    real = nautilus(fixture_file, "http_asset_pairs.json")["result"]["XBTUSDT"]
    ours = pairs["XBTUSDT"]
    assert shape(ours, decimals=False) == shape(real, decimals=False)
    same = ("altname", "wsname", "aclass_base", "base", "aclass_quote", "quote", "lot",
            "cost_decimals", "pair_decimals", "lot_decimals", "fee_volume_currency", "status")
    assert {k: ours[k] for k in same} == {k: real[k] for k in same}
    assert ours["fees"] == real["fees"] and ours["fees_maker"] == real["fees_maker"]
    # a pair that is not marginable: no position limits; lot "unit5" for 5 lot decimals
    crawl = {p["altname"]: p for p in json.loads(fixture_file(
        "crypto-market-raw-data/kraken.spot.2025-05-08.json").read_text())}
    for key in ("BTTUSD", "XDGUSD", "XETHXXBT", "USDTZUSD"):
        real_entry = crawl[pairs[key]["altname"]]
        assert shape(pairs[key], decimals=False) == shape(real_entry, decimals=False), key
        for field in ("wsname", "base", "quote", "lot", "lot_decimals"):  # precisions drift
            assert pairs[key][field] == real_entry[field], (key, field)
    # the tick size is written with pair_decimals decimals
    for entry in pairs.values():
        assert shape(entry["tick_size"]) == f"num{entry['pair_decimals']}"


def test_asset_pairs_filters_and_info_levels(sim: _Served, fixture_file) -> None:
    assert list(sim.result("/0/public/AssetPairs?pair=XBTUSD")) == ["XXBTZUSD"]
    assert list(sim.result("/0/public/AssetPairs?pair=BTC/USD,XETHXXBT")) == ["BTC/USD", "XETHXXBT"]
    assert list(sim.result("/0/public/AssetPairs?pair=btcusd,DOGEUSD")) == ["XXBTZUSD", "XDGUSD"]
    assert sim.result("/0/public/AssetPairs?aclass_base=tokenized_asset") == {}
    currency = sim.result("/0/public/AssetPairs?aclass_base=currency")
    assert currency == sim.result("/0/public/AssetPairs")
    assert all(p["aclass_base"] == "currency" for p in currency.values())
    assert sim.get("/0/public/AssetPairs?pair=XBTUSD&aclass_base=tokenized_asset") == {
        "error": ["EQuery:Unknown asset pair"]}
    assert sim.result("/0/public/AssetPairs?country_code=GB") == currency
    full = currency["XBTUSDT"]
    levels = {"leverage": {"leverage_buy", "leverage_sell"},
              "fees": {"fees", "fees_maker", "fee_volume_currency"},
              "margin": {"margin_call", "margin_level"}}
    for info, fields in levels.items():
        entry = sim.result(f"/0/public/AssetPairs?pair=XBTUSDT&info={info}")["XBTUSDT"]
        assert set(entry) == fields, info
        assert all(entry[f] == full[f] for f in fields if f in full)
    assert sim.result("/0/public/AssetPairs?pair=XBTUSDT&info=margin")["XBTUSDT"]["margin_level"] == full["margin_stop"]
    assert sim.result("/0/public/AssetPairs?pair=XBTUSDT&info=info") == {"XBTUSDT": full}
    for bad in ("info=everything", "aclass_base=stocks", "country_code=GBR"):
        assert sim.get(f"/0/public/AssetPairs?{bad}") == {"error": ["EGeneral:Invalid arguments"]}, bad
    assert sim.get("/0/public/AssetPairs?pair=NOPE") == {"error": ["EQuery:Unknown asset pair"]}


def test_assets_match_kraken_docs(sim: _Served) -> None:
    # Kraken's documented example entry (api-specs spot-rest examples/responses/public/assets)
    documented = {"aclass": "currency", "altname": "XBT", "decimals": 10, "display_decimals": 5,
                  "collateral_value": 1.0, "status": "enabled"}
    assets = sim.result("/0/public/Assets")
    assert set(assets) == {"XXBT", "ZUSD", "USDT", "XETH", "XXDG", "ZEUR", "SOL", "BTT"}
    assert assets["XXBT"] == documented
    assert shape(assets["ZUSD"]) == shape(documented) and assets["ZUSD"]["altname"] == "USD"
    assert assets["XXDG"]["altname"] == "XDG" and assets["XXDG"]["decimals"] == 8
    assert "collateral_value" not in assets["XXDG"]  # only assets with a collateral value
    assert sim.result("/0/public/Assets?asset=xbt,%20ZUSD,BTC") == {
        "XXBT": assets["XXBT"], "ZUSD": assets["ZUSD"]}
    assert sim.result("/0/public/Assets?aclass=tokenized_asset") == {}
    assert sim.get("/0/public/Assets?asset=NOPE") == {"error": ["EQuery:Unknown asset"]}
    assert sim.get("/0/public/Assets?asset=") == {"error": ["EQuery:Unknown asset"]}
    assert sim.get("/0/public/Assets?aclass=bonds") == {"error": ["EGeneral:Invalid arguments"]}


def test_ticker_matches_the_real_capture(sim: _Served, fixture_file) -> None:
    real = nautilus(fixture_file, "http_ticker.json")["result"]["XBTUSDT"]
    ours = sim.result("/0/public/Ticker?pair=XBTUSDT")["XBTUSDT"]
    assert shape(ours) == shape(real)
    assert int(ours["a"][1]) >= 1 and ours["a"][2] == ours["a"][1] + ".000"
    assert float(ours["b"][0]) < float(ours["a"][0])
    assert ours["t"][0] <= ours["t"][1] and float(ours["l"][1]) <= float(ours["h"][1])
    everything = sim.result("/0/public/Ticker")
    assert set(everything) == set(sim.result("/0/public/AssetPairs"))
    # BTT/USD: pair_decimals > cost_decimals, so prices keep every pair decimal
    btt = sim.result("/0/public/AssetPairs?pair=BTTUSD")["BTTUSD"]
    assert btt["pair_decimals"] > btt["cost_decimals"]
    assert shape(everything["BTTUSD"]["c"][0]) == f"num{btt['pair_decimals']}"
    both = sim.result("/0/public/Ticker?pair=XBTUSD,ETHXBT")
    assert set(both) == {"XXBTZUSD", "XETHXXBT"}
    assert shape(both["XETHXXBT"]["a"][0]) == "num10"  # ETH/BTC: cost_decimals 10
    assert sim.get("/0/public/Ticker?pair=XBTUSD,NOPE") == {"error": ["EQuery:Unknown asset pair"]}


def _real_depths(fixture_file) -> list[tuple[str, Any]]:
    raw = [json.loads(line) for line in fixture_file(
        "crypto-msg-parser/kraken_raw_messages_from_tests.jsonl").read_text().splitlines()]
    depth = next(json.loads(m["raw"]) for m in raw if m["kind"] == "spot_rest:Depth")
    return [("XBTUSDT", nautilus(fixture_file, "http_order_book.json")),
            ("XBTUSD", kraken_net(fixture_file, "Spot/ExchangeData/GetOrderBook.txt")),
            ("XBTUSD", depth)]


def test_depth_matches_the_real_captures(sim: _Served, fixture_file) -> None:
    for request, real in _real_depths(fixture_file):
        ours = sim.get(f"/0/public/Depth?pair={request}&count=5")
        assert shape(ours) == shape(real), request
        book = next(iter(ours["result"].values()))
        assert len(book["asks"]) == len(book["bids"]) == 5
        assert float(book["bids"][0][0]) < float(book["asks"][0][0])
    assert sim.get("/0/public/Depth?pair=XBTUSD&count=501") == {"error": ["EGeneral:Invalid arguments"]}
    assert sim.get("/0/public/Depth") == {"error": ["EGeneral:Invalid arguments"]}
    assert sim.get("/0/public/Depth?pair=NOPE") == {"error": ["EQuery:Unknown asset pair"]}
    assert sim.get("/0/public/Depth?pair=XBTUSD&asset_class=tokenized_asset") == {
        "error": ["EQuery:Unknown asset pair"]}


def test_trades_match_the_real_captures(sim: _Served, fixture_file) -> None:
    for request, real in (("XBTUSDT", nautilus(fixture_file, "http_trades.json")),
                          ("XBTUSD", kraken_net(fixture_file, "Spot/ExchangeData/GetTradeHistory.txt"))):
        ours = sim.get(f"/0/public/Trades?pair={request}&count=20")
        assert shape(ours) == shape(real), request
        rows = next(v for k, v in ours["result"].items() if k != "last")
        last_ns = int(ours["result"]["last"])
        # the time is the epoch-seconds double of the trade's ns time (``last`` is the newest)
        assert abs(rows[-1][2] * 1e9 - last_ns) < 1e3
        assert re.fullmatch(r"\d+\.\d{1,7}", json.dumps(rows[-1][2]))


def test_ohlc_matches_the_real_captures(sim: _Served, fixture_file) -> None:
    for request, real in (("XBTUSDT", nautilus(fixture_file, "http_ohlc.json")),
                          ("XBTUSD", kraken_net(fixture_file, "Spot/ExchangeData/GetKlines.txt"))):
        ours = sim.get(f"/0/public/OHLC?pair={request}")
        assert shape(ours) == shape(real), request
    rows = sim.result("/0/public/OHLC?pair=XBTUSDT&interval=1")["XBTUSDT"]
    begins = [r[0] for r in rows]
    assert begins == list(range(begins[0], begins[0] + 60 * len(rows), 60))  # one bar a minute
    assert begins[-1] == int(time.time()) // 60 * 60 or begins[-1] == int(time.time()) // 60 * 60 - 60
    answer = sim.result(f"/0/public/OHLC?pair=XBTUSDT&since={begins[-1]}")
    assert [r[0] for r in answer["XBTUSDT"]] == [begins[-1]]  # the open bar is always sent
    assert sim.get("/0/public/OHLC?pair=XBTUSDT&interval=2") == {"error": ["EGeneral:Invalid arguments"]}


def test_spread_matches_kraken_docs(sim: _Served) -> None:
    # Kraken's documented example (api-specs spot-rest openapi_v3.yaml, /public/Spread)
    documented = {"error": [], "result": {"XXBTZUSD": [[1688671834, "30292.10000", "30297.50000"],
                                                        [1688671834, "30292.10000", "30296.70000"]],
                                          "last": 1688672106}}
    ours = sim.get("/0/public/Spread?pair=XBTUSD")
    assert shape(ours) == shape(documented)
    rows = ours["result"]["XXBTZUSD"]
    assert ours["result"]["last"] == rows[-1][0]
    assert all(float(bid) < float(ask) for _, bid, ask in rows)
    assert all(a[1:] != b[1:] for a, b in zip(rows, rows[1:]))  # one row per change
    later = sim.result(f"/0/public/Spread?pair=XBTUSD&since={rows[-1][0]}")
    assert all(r[0] > rows[-1][0] for r in later["XXBTZUSD"])
    assert sim.get("/0/public/Spread?pair=XBTUSD&since=x") == {"error": ["EGeneral:Invalid arguments"]}


def test_unknown_method_is_kraken_s_error(sim: _Served) -> None:
    assert sim.get("/0/public/Nope") == {"error": ["EGeneral:Unknown method"]}


# --- Futures -----------------------------------------------------------------------------------


def test_futures_instruments_carry_every_field_of_the_real_list(sim: _Served, fixture_file) -> None:
    real = {i["symbol"]: i for i in json.loads(fixture_file(
        "crypto-market-raw-data/kraken.futures.2025-05-06.json").read_text())}
    body = sim.get("/derivatives/api/v3/instruments")
    assert body["result"] == "success" and re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["serverTime"])
    ours = {i["symbol"]: i for i in body["instruments"]}
    assert len(ours) == 18
    for symbol, instrument in ours.items():
        assert shape(instrument) == shape(real[symbol]), symbol
        for field in ("type", "tickSize", "contractValueTradePrecision", "openingDate", "base",
                      "quote", "pair", "underlying", "lastTradingTime", "marginLevels"):
            assert instrument.get(field) == real[symbol].get(field), (symbol, field)
    strict = nautilus(fixture_file, "http_futures_instruments.json")["instruments"][0]  # PI_XBTUSD
    assert set(strict) <= set(ours["PI_XBTUSD"])
    inverse = sim.get("/derivatives/api/v3/instruments?contractType=futures_inverse")["instruments"]
    assert {i["symbol"][:3] for i in inverse} == {"PI_", "FI_"}


def test_futures_tickers_match_the_real_capture(sim: _Served, fixture_file) -> None:
    real = {t["symbol"]: t for t in nautilus(fixture_file, "http_futures_tickers.json")["tickers"]}
    body = sim.get("/derivatives/api/v3/tickers")
    ours = {t["symbol"]: t for t in body["tickers"]}
    assert body["result"] == "success" and len(ours) == 18
    assert shape(ours["PI_XBTUSD"], numbers=True) == shape(real["PI_XBTUSD"], numbers=True)
    assert shape(ours["PF_ETHUSD"], numbers=True) == shape(real["PF_ETHUSD"], numbers=True)
    dated = ours["FI_XBTUSD_250627"]
    assert dated["tag"] in ("month", "quarter") and "fundingRate" not in dated
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", ours["PF_XBTUSD"]["lastTime"])
    one = sim.get("/derivatives/api/v3/tickers/pf_xbtusd")
    assert one["result"] == "success" and one["ticker"]["symbol"] == "PF_XBTUSD"
    assert set(one["ticker"]) == set(ours["PF_XBTUSD"])
    chosen = sim.get("/derivatives/api/v3/tickers?symbol=PF_XBTUSD&symbol=pi_ethusd")["tickers"]
    assert [t["symbol"] for t in chosen] == ["PF_XBTUSD", "PI_ETHUSD"]
    missing = sim.get("/derivatives/api/v3/tickers/PF_NOPE", expect_status=404)
    assert missing["result"] == "error" and missing["error"] == "notFound"


def test_futures_orderbook_matches_the_real_capture(sim: _Served, fixture_file) -> None:
    real = kraken_net(fixture_file, "Futures/ExchangeData/GetOrderBook.txt")
    ours = sim.get("/derivatives/api/v3/orderbook?symbol=PI_XBTUSD")
    assert shape(ours, numbers=True) == shape(real, numbers=True)
    # Kraken writes whole numbers without a fraction (61008, not 61008.0)
    raw = urllib.request.urlopen(sim.rest + "/derivatives/api/v3/orderbook?symbol=PF_XBTUSD",
                                 timeout=20).read().decode()
    assert not re.search(r"[\[,]-?\d+\.0[,\]]", raw)
    bids, asks = ours["orderBook"]["bids"], ours["orderBook"]["asks"]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0][0] < asks[0][0]
    assert sim.get("/derivatives/api/v3/orderbook?symbol=PF_NOPE")["error"] == "invalidArgument"


def test_futures_history_and_instrument_status_match_kraken_docs(sim: _Served) -> None:
    # Kraken Futures OpenAPI (api-specs futures-rest/trading): HistoryJson, InstrumentStatus
    history = sim.get("/derivatives/api/v3/history?symbol=PF_XBTUSD")
    assert history["result"] == "success" and 0 < len(history["history"]) <= 100
    entry = history["history"][0]
    assert set(entry) == {"time", "trade_id", "price", "size", "side", "type", "uid"}
    assert entry["side"] in ("buy", "sell") and entry["type"] in ("fill", "liquidation")
    times = [h["time"] for h in history["history"]]
    assert times == sorted(times, reverse=True)
    older = sim.get(f"/derivatives/api/v3/history?symbol=PF_XBTUSD&lastTime={times[-1]}")["history"]
    assert all(h["time"] < times[-1] for h in older)
    assert sim.get("/derivatives/api/v3/history?symbol=PF_XBTUSD&lastTime=yesterday")["error"] == "invalidArgument"
    statuses = sim.get("/derivatives/api/v3/instruments/status")
    assert len(statuses["instrumentStatus"]) == 18
    documented = {"tradeable", "experiencingDislocation", "priceDislocationDirection",
                  "experiencingExtremeVolatility", "extremeVolatilityInitialMarginMultiplier"}
    assert all(set(s) == documented for s in statuses["instrumentStatus"])
    one = sim.get("/derivatives/api/v3/instruments/pi_xbtusd/status")
    assert one["tradeable"] == "PI_XBTUSD" and set(one) == documented | {"result", "serverTime"}
    assert sim.get("/derivatives/api/v3/nope", expect_status=404)["error"] == "notFound"
