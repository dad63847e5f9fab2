"""Universe of ``recorder sim``: the real 683-pair snapshot read in place, and generated ones."""

from __future__ import annotations

import collections
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from recorder.sim.universe import (
    UniverseError,
    encode_wire,
    load_universe,
    make_pair,
)

SNAPSHOT = "kraken-data-recorder/instrument_snapshot.json"
FUTURES = "crypto-market-raw-data/kraken.futures.2025-05-06.json"


def _decimals(text: str) -> int:
    return len(text.partition(".")[2])


def test_real_snapshot_keeps_every_pair_and_token(fixture_file) -> None:
    path = fixture_file(SNAPSHOT)
    universe = load_universe(path, pairs=None, futures_path=None, seed=1)
    assert len(universe.pairs) == 683
    btc = universe.pair("BTC/USD")
    assert (btc.price_precision, btc.qty_precision, btc.price_increment, btc.qty_increment) == (
        1, 8, "0.1", "1E-8")
    assert btc.qty_min == "0.00010000" and btc.cost_min == "0.50"
    # every pair object re-encodes to exactly the tokens of the source file
    compact = re.sub(r"\s+", "", path.read_text())
    assert all(encode_wire(p.wire) in compact for p in universe.pairs)
    assert all(encode_wire(a) in compact for a in universe.assets)
    statuses = collections.Counter(p.status for p in universe.pairs)
    assert statuses == {"online": 672, "reduce_only": 9, "cancel_only": 2}
    for pair in universe.pairs:  # reference prices sit on the price grid
        assert _decimals(pair.ref_price) == pair.price_precision
        assert float(pair.ref_price) > 0


def test_narrowing_prefers_busy_online_pairs(fixture_file) -> None:
    path = fixture_file(SNAPSHOT)
    universe = load_universe(path, pairs=5, futures_path=None, seed=1)
    assert universe.symbols[:2] == ("BTC/USD", "ETH/USD")
    assert len(universe.pairs) == 5 and all(p.status == "online" for p in universe.pairs)
    assert {a["id"] for a in universe.assets} == {p.base for p in universe.pairs} | {
        p.quote for p in universe.pairs}
    chosen = load_universe(path, pairs=["ETH/BTC", "EUR/USD"], futures_path=None, seed=1)
    assert chosen.symbols == ("ETH/BTC", "EUR/USD")
    with pytest.raises(UniverseError, match="NOPE/USD"):
        load_universe(path, pairs=["NOPE/USD"], futures_path=None, seed=1)


def test_generated_universe_follows_the_real_distribution() -> None:
    universe = load_universe(None, pairs=None, futures_path=None, seed=7)
    assert 650 <= len(universe.pairs) <= 750
    assert len(set(universe.symbols)) == len(universe.pairs)
    precisions = collections.Counter(p.price_precision for p in universe.pairs)
    assert set(precisions) <= set(range(11)) and len(precisions) >= 8
    assert 0.85 < sum(p.qty_precision == 8 for p in universe.pairs) / len(universe.pairs) < 0.97
    assert sum(p.status == "online" for p in universe.pairs) / len(universe.pairs) > 0.95
    btc = universe.pair("BTC/USD")
    assert btc.price_precision == 1 and 50_000 < float(btc.ref_price) < 200_000
    for pair in universe.pairs:
        assert _decimals(pair.ref_price) == pair.price_precision
        assert pair.wire["symbol"] == pair.symbol
    again = load_universe(None, pairs=None, futures_path=None, seed=7)
    assert again.pairs == universe.pairs
    other = load_universe(None, pairs=None, futures_path=None, seed=8)
    assert [p.ref_price for p in other.pairs] != [p.ref_price for p in universe.pairs]


def test_futures_from_fixture_and_generated(fixture_file) -> None:
    universe = load_universe(None, pairs=3, futures_path=fixture_file(FUTURES), seed=1)
    prefixes = collections.Counter(f.product_id[:3] for f in universe.futures)
    assert prefixes == {"PF_": 338, "FF_": 10, "FI_": 10, "PI_": 4}
    pf = universe.product("pf_xbtusd")
    assert pf.tag == "perpetual" and pf.maturity_ms is None and pf.pair == "BTC:USD"
    dated = [f for f in universe.futures if f.product_id.startswith("FI_")]
    assert all(f.maturity_ms and f.tag in ("month", "quarter") for f in dated)
    original = {i["symbol"]: i for i in json.loads(fixture_file(FUTURES).read_text(), parse_float=Decimal)}
    for product in universe.futures:  # the instruments endpoint re-emits each object exactly
        assert json.loads(encode_wire(product.wire), parse_float=Decimal) == original[product.wire["symbol"]]
    generated = load_universe(None, pairs=3, futures_path=None, seed=1)
    assert {"PF_XBTUSD", "PI_XBTUSD"} <= {f.product_id for f in generated.futures}
    assert any(f.maturity_ms for f in generated.futures)
    assert all(json.loads(encode_wire(f.wire)) for f in generated.futures)


def test_bad_inputs_raise_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(UniverseError, match="cannot read"):
        load_universe(tmp_path / "missing.json", pairs=None, futures_path=None, seed=1)
    bad = tmp_path / "bad.json"
    bad.write_text('{"channel": "book"}')
    with pytest.raises(UniverseError, match="instrument snapshot"):
        load_universe(bad, pairs=None, futures_path=None, seed=1)
    with pytest.raises(UniverseError):
        load_universe(None, pairs=0, futures_path=None, seed=1)
    with pytest.raises(UniverseError):
        make_pair("NOSLASH", seed=1)
    assert make_pair("NEW/USD", seed=1).status == "online"


def test_generated_instruments_carry_the_real_lists_fields() -> None:
    """Generated futures carry every field of the real instruments list (2025-05-06); generated
    marginable spot pairs carry the snapshot's margin fields (REST leverage and limits)."""
    universe = load_universe(None, pairs=None, futures_path=None, seed=2)
    every = {"symbol", "type", "tickSize", "contractSize", "tradeable", "impactMidSize",
             "maxPositionSize", "openingDate", "marginLevels", "isin", "contractValueTradePrecision",
             "postOnly", "feeScheduleUid", "retailMarginLevels", "marginSchedules", "category",
             "tags", "tradfi", "mtf", "base", "quote", "pair"}
    for product in universe.futures:
        keys = set(json.loads(encode_wire(product.wire)))
        extra = ({"fundingRateCoefficient", "maxRelativeFundingRate"} if product.tag == "perpetual"
                 else {"lastTradingTime"})
        extra |= {"underlying"} if product.product_id[:2] in ("PI", "FI") else set()
        assert keys == every | extra, product.product_id
    marginable = [p for p in universe.pairs if p.wire["marginable"]]
    assert 0.15 < len(marginable) / len(universe.pairs) < 0.35
    for pair in marginable:
        assert pair.wire["margin_initial"] in ("0.33", "0.50", "0.25", "0.20")
        assert pair.wire["position_limit_long"] >= pair.wire["position_limit_short"] > 0
    assert not any("margin_initial" in p.wire for p in universe.pairs if not p.wire["marginable"])
