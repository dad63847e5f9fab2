"""Pure helpers behind the simulator's REST answers: Kraken's pair keys, names and number text."""

from __future__ import annotations

import json

import msgspec
import pytest

from recorder.sim.futures_rest import futures_number, iso_ms, iso_us
from recorder.sim.rest_shapes import (
    asset_info,
    asset_pair_info,
    ceil_volume,
    epoch_seconds,
    pad_price,
    pair_key,
    plain,
    rest_price_decimals,
    rfc1123,
    whole_lot,
)
from recorder.sim.universe import asset_wire, make_pair

_V2: dict[str, str] = {"XBT": "BTC", "XDG": "DOGE"}


def _pair(symbol: str, **wire: object):
    pair = make_pair(symbol, seed=1)
    pair.wire.update(wire)
    return pair


@pytest.mark.parametrize(("symbol", "key"), [
    ("BTC/USD", "XXBTZUSD"), ("ETH/BTC", "XETHXXBT"), ("DOGE/USD", "XDGUSD"),
    ("DOGE/BTC", "XXDGXXBT"), ("EUR/USD", "ZEURZUSD"), ("USDT/USD", "USDTZUSD"),
    ("USD/JPY", "ZUSDZJPY"), ("SOL/USD", "SOLUSD"), ("BTC/USDT", "XBTUSDT"), ("ETH/AUD", "ETHAUD"),
])
def test_pair_keys(symbol: str, key: str) -> None:
    assert pair_key(_pair(symbol)) == key


def test_pair_keys_of_a_real_full_asset_pairs_answer(fixture_file) -> None:
    """Every key of a real, complete 2021 AssetPairs answer (304 pairs) is reproduced."""
    line = fixture_file("cryptofeed/KRAKEN.0").read_text().splitlines()[0]
    result = json.loads(line.split(": ", 1)[1])["result"]
    checked = 0
    for key, entry in result.items():
        if key.endswith(".d") or "wsname" not in entry:
            continue
        base, quote = (_V2.get(a, a) for a in entry["wsname"].split("/"))
        pair = _pair(f"{base}/{quote}")
        assert pair_key(pair) == key, entry["wsname"]
        info = asset_pair_info(pair, "online")
        assert (info["altname"], info["wsname"], info["base"], info["quote"]) == (
            entry["altname"], entry["wsname"], entry["base"], entry["quote"])
        checked += 1
    assert checked > 250


def test_number_text() -> None:
    assert pad_price("95696.3", 1, 5) == "95696.30000"  # the example, padded
    assert pad_price("0.070960700", 9, 9) == "0.070960700"
    assert ceil_volume(13594173, 8) == "0.136" and ceil_volume(13500000, 8) == "0.135"
    assert ceil_volume(1, 8) == "0.001" and ceil_volume(0, 8) == "0.000"
    assert ceil_volume(5, 0) == "5.000" and ceil_volume(1234, 2) == "12.340"
    assert whole_lot(13594173, 8) == 1 and whole_lot(100000000, 8) == 1
    assert whole_lot(100000001, 8) == 2 and whole_lot(0, 8) == 0
    assert plain("0.00010000") == "0.0001" and plain("1E-8") == "0.00000001" and plain(50) == "50"
    btc = _pair("BTC/USD")
    assert rest_price_decimals(btc) == max(btc.price_precision, btc.cost_precision)


def test_times() -> None:
    assert epoch_seconds(1762795433971744512) == msgspec.Raw(b"1762795433.9717445")
    assert epoch_seconds(1688669602698379000) == msgspec.Raw(b"1688669602.698379")
    assert rfc1123(1762820224) == "Tue, 11 Nov 25 00:17:04 +0000"  # the real Time capture
    assert rfc1123(1688669448) == "Thu, 06 Jul 23 18:50:48 +0000"  # Kraken's docs example
    assert iso_ms(1455_000_000_830_000_001) == "2016-02-09T06:40:00.830Z"
    assert iso_us(1763339461835715000) == "2025-11-17T00:31:01.835715Z"


def test_futures_numbers_are_shortest() -> None:
    def text(token: str) -> str:
        value = futures_number(token)
        return bytes(value).decode() if isinstance(value, msgspec.Raw) else value

    assert text("61008.0") == "61008" and text("61011.50") == "61011.5" and text("100") == "100"
    assert text("-0.50") == "-0.5" and text("0.0") == "0" and text("1.5e-05") == "1.5e-05"
    assert futures_number("perpetual") == "perpetual" and futures_number(True) is True


def test_asset_pair_info_levels_and_margin_fields() -> None:
    pair = _pair("BTC/USD", marginable=True, margin_initial="0.20", position_limit_long=300,
                 position_limit_short=240)
    full = asset_pair_info(pair, "online")
    assert full["leverage_buy"] == full["leverage_sell"] == [2, 3, 4, 5]
    assert (full["long_position_limit"], full["short_position_limit"]) == (300, 240)
    assert asset_pair_info(_pair("ETH/USD", marginable=True, margin_initial="0.33",
                                 position_limit_long=1, position_limit_short=1),
                           "online")["leverage_buy"] == [2, 3]
    plain_pair = asset_pair_info(_pair("AAA/USD", marginable=False), "reduce_only")
    assert plain_pair["leverage_buy"] == [] and "long_position_limit" not in plain_pair
    assert plain_pair["status"] == "reduce_only"
    assert asset_pair_info(pair, "online", "leverage") == {"leverage_buy": [2, 3, 4, 5],
                                                           "leverage_sell": [2, 3, 4, 5]}
    assert asset_pair_info(pair, "online", "margin") == {"margin_call": 80, "margin_level": 40}
    assert set(asset_pair_info(pair, "online", "fees")) == {"fees", "fees_maker", "fee_volume_currency"}
    stable = asset_pair_info(_pair("USDT/USD"), "online")
    assert stable["fees"][0] == [0, 0.2] and full["fees"][0] == [0, 0.4]
    assert full["fees_maker"][-1] == [10000000, 0.0]
    assert asset_pair_info(_pair("BTC/USD"), "online")["lot"] in ("unit", "unit5")


def test_asset_info() -> None:
    key, btc = asset_info(asset_wire("BTC"))
    assert key == "XXBT" and btc["altname"] == "XBT" and btc["collateral_value"] == msgspec.Raw(b"1.0")
    key, doge = asset_info(asset_wire("DOGE"))
    assert key == "XXDG" and doge["altname"] == "XDG" and "collateral_value" not in doge
    _, usd = asset_info(asset_wire("USD"))
    assert (usd["decimals"], usd["display_decimals"]) == (4, 2)
    _, odd = asset_info({"id": "AAA", "status": "withdrawalonly", "precision": 8,
                         "precision_display": 4, "collateral_value": "0.70"})
    assert odd["status"] == "withdrawal_only" and odd["collateral_value"] == msgspec.Raw(b"0.7")
