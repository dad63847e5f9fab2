"""An independent Kraken client against ``recorder sim``: python-kraken-sdk's order book and its
Spot and Futures REST market-data clients.

``kraken.spot.SpotOrderBookClient`` keeps L2 books from the v2 ``book`` channel, fetches each
pair's precisions from REST ``AssetPairs`` (``pair_decimals``/``lot_decimals``), validates the
CRC32 checksum of every update and, on a mismatch, reports ``"Checksum mismatch"`` through
``on_book_update`` and resubscribes. It is pointed at the simulator the way its users point
it at other Kraken instances: the WebSocket base URL class attribute (the client appends
``/v2``) and the REST client's ``URL``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def sim_process(request: pytest.FixtureRequest):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    extra = list(getattr(request, "param", []))
    proc = subprocess.Popen(
        [sys.executable, "-m", "recorder", "sim", "--port", "0", "--pairs", "24", "--seed", "11",
         "--rate", "2", *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line, proc.stderr.read() if proc.stderr else "no output"
        yield json.loads(line)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_python_kraken_sdk_orderbook_keeps_24_books_with_zero_checksum_failures(
        sim_process: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    failures, updates, wsnames = _run_sdk(sim_process, monkeypatch, seconds=8.0, check_books=True)
    assert failures == []
    assert set(updates) == set(wsnames)
    busy = sorted(updates.values())[-5:]
    assert sum(busy) > 100, updates  # checksums were validated on many real updates


@pytest.mark.parametrize("sim_process", [["--pregenerate", "40"]], indirect=True)
def test_python_kraken_sdk_verifies_a_pregenerated_market(
        sim_process: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """``--pregenerate``: the book frames are pre-rendered, the snapshots come from the shadow
    market at the served position; the independent client verifies every checksum."""
    assert sim_process["pregenerated"]["seconds"] == 40.0
    failures, updates, wsnames = _run_sdk(sim_process, monkeypatch, seconds=8.0, check_books=True)
    assert failures == []
    assert set(updates) == set(wsnames)
    assert sum(sorted(updates.values())[-5:]) > 100, updates


@pytest.mark.parametrize("sim_process", [["--faults", "checksum:channel=book,rate=0.02"]],
                         indirect=True)
def test_python_kraken_sdk_detects_injected_checksum_faults(
        sim_process: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The same client notices the simulator's corrupted checksums (the check above can fail)."""
    failures, _, _ = _run_sdk(sim_process, monkeypatch, seconds=4.0, check_books=False)
    assert failures and all("Checksum mismatch" in m["error"] for _, m in failures)


def test_python_kraken_sdk_rest_clients_read_every_public_market_data_endpoint(
        sim_process: dict[str, Any]) -> None:
    """python-kraken-sdk's ``kraken.spot.Market`` and ``kraken.futures.Market``, pointed at the
    simulator by their ``url`` argument, read every public market-data endpoint; Kraken's error
    strings reach the caller as the SDK's typed exceptions."""
    from decimal import Decimal

    spot = pytest.importorskip("kraken.spot")
    futures = pytest.importorskip("kraken.futures")
    exceptions = pytest.importorskip("kraken.exceptions")
    market = spot.Market(url=sim_process["rest"])

    assert market.get_system_status()["status"] == "online"
    assets = market.get_assets()
    assert assets["XXBT"]["altname"] == "XBT" and assets["ZUSD"]["decimals"] == 4
    assert set(market.get_assets(assets=["XBT", "USD"])) == {"XXBT", "ZUSD"}
    pairs = market.get_asset_pairs()
    assert len(pairs) == 24 and pairs["XXBTZUSD"]["wsname"] == "XBT/USD"
    assert market.get_asset_pairs(pair="BTC/USD", info="leverage")["BTC/USD"].keys() == {
        "leverage_buy", "leverage_sell"}
    assert market.get_asset_pairs(aclass_base="tokenized_asset") == {}
    width = max(pairs["XXBTZUSD"]["pair_decimals"], pairs["XXBTZUSD"]["cost_decimals"])
    ticker = market.get_ticker(pair="XBTUSD")["XXBTZUSD"]
    assert Decimal(ticker["b"][0]) < Decimal(ticker["a"][0])
    assert len(ticker["a"][0].partition(".")[2]) == width
    assert set(market.get_ticker()) == set(pairs)
    book = market.get_order_book(pair="XBTUSD", count=5)["XXBTZUSD"]
    assert len(book["bids"]) == 5 and Decimal(book["bids"][0][0]) < Decimal(book["asks"][0][0])
    deadline = time.monotonic() + 30
    while not (trades := market.get_recent_trades(pair="XBTUSD"))["XXBTZUSD"]:
        assert time.monotonic() < deadline, "no trade in 30 s"
        time.sleep(0.25)
    assert int(trades["last"]) > 0 and all(Decimal(t[0]) > 0 for t in trades["XXBTZUSD"])
    ohlc = market.get_ohlc(pair="XBTUSD", interval=5)
    assert ohlc["XXBTZUSD"] and isinstance(ohlc["last"], int)
    spreads = market.get_recent_spreads(pair="XBTUSD")
    assert spreads["XXBTZUSD"] and all(Decimal(b) < Decimal(a) for _, b, a in spreads["XXBTZUSD"])
    # Kraken's error strings become the SDK's typed errors (it maps "EQuery:Unknown asset
    # pair" by prefix, so either of its two unknown-asset types may be raised)
    unknown = (exceptions.KrakenUnknownAssetPairError, exceptions.KrakenUnknownAssetError)
    with pytest.raises(unknown):
        market.get_ticker(pair="NOPEUSD")
    with pytest.raises(exceptions.KrakenUnknownAssetError):
        market.get_assets(assets="NOPE")

    fmarket = futures.Market(url=sim_process["rest"])
    instruments = fmarket.get_instruments()["instruments"]
    assert {"PF_XBTUSD", "PI_XBTUSD"} <= {i["symbol"] for i in instruments}
    assert all("openingDate" in i and "marginLevels" in i for i in instruments)
    assert {t["symbol"] for t in fmarket.get_tickers()["tickers"]} == {i["symbol"] for i in instruments}
    fbook = fmarket.get_orderbook(symbol="PF_XBTUSD")["orderBook"]
    assert fbook["bids"][0][0] < fbook["asks"][0][0]
    assert fmarket.get_trade_history(symbol="PF_XBTUSD")["result"] == "success"
    assert len(fmarket.get_instruments_status()["instrumentStatus"]) == len(instruments)
    assert fmarket.get_instruments_status(instrument="PF_XBTUSD")["tradeable"] == "PF_XBTUSD"


def _run_sdk(sim_process: dict[str, Any], monkeypatch: pytest.MonkeyPatch, *, seconds: float,
             check_books: bool) -> tuple[list[Any], dict[str, int], list[str]]:
    orderbook_module = pytest.importorskip("kraken.spot.orderbook")
    SpotOrderBookClient = orderbook_module.SpotOrderBookClient

    rest_url = sim_process["rest"]
    ws_base = sim_process["spot_ws"].removesuffix("/v2")
    # The order book builds its own REST client; point that client class at the simulator.
    monkeypatch.setattr(orderbook_module.Market, "URL", rest_url)

    updates: dict[str, int] = {}
    failures: list[Any] = []

    class SimOrderBook(SpotOrderBookClient):
        WS_URL = ws_base

        async def on_book_update(self, pair: str, message: dict) -> None:
            if "error" in message:
                failures.append((pair, message))
                return
            updates[pair] = updates.get(pair, 0) + 1

    async def scenario() -> list[str]:
        async with SimOrderBook(depth=10) as book:
            from kraken.spot import Market

            symbols = sorted(Market(url=rest_url).get_asset_pairs().keys())
            assert len(symbols) == 24
            wsnames = [pair_symbol(rest_url, key) for key in symbols]
            await book.add_book(pairs=wsnames)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not book.exception_occur:
                await asyncio.sleep(0.25)
            assert not book.exception_occur
            for pair in wsnames if check_books else ():
                state = book.get(pair)
                assert state is not None and state["valid"], pair
                assert len(state["bid"]) == 10 and len(state["ask"]) == 10, pair
            return wsnames

    wsnames = asyncio.run(asyncio.wait_for(scenario(), 60))
    return failures, updates, wsnames


def pair_symbol(rest_url: str, key: str) -> str:
    """The v2 symbol of a REST pair key (v2 names differ from REST ``wsname`` for BTC/DOGE)."""
    import urllib.request

    with urllib.request.urlopen(f"{rest_url}/0/public/AssetPairs?pair={key}", timeout=10) as r:
        info = json.load(r)["result"][key]
    base, quote = info["wsname"].split("/")
    v2 = {"XBT": "BTC", "XDG": "DOGE"}
    return f"{v2.get(base, base)}/{v2.get(quote, quote)}"
