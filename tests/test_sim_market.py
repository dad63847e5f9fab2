"""SpotMarket: determinism, grids, trade ids, book integrity, calibrated event mix, REST data."""

from __future__ import annotations

import re
from collections import Counter

from recorder.protocol.numbers import to_units
from recorder.sim.engine import ASK, BID
from recorder.sim.events import OrderAdded, OrderDeleted, OrderModified, TradeEvent, decode_event, encode_event
from recorder.sim.market import SpotMarket
from recorder.sim.universe import load_universe

START = 1_700_000_000 * 10**9
SEC = 10**9


def _universe(n: int = 8):
    return load_universe(None, pairs=n, futures_path=None, seed=3)


def _subscribe_all(market: SpotMarket) -> None:
    for s in market.symbols[:4]:
        market.subscribe(("level3", s, 10))
        market.subscribe(("book", s, 25))
        market.subscribe(("trade", s), snapshot=False)
        market.subscribe(("ohlc", s, 1))
        market.subscribe(("ticker", s, "bbo"))


def _run(seed: int, steps: int, seconds: int = 20) -> tuple[list[bytes], list[tuple]]:
    market = SpotMarket(_universe(), seed=seed, rate=2.0, start_ns=START)
    _subscribe_all(market)
    truth: list[bytes] = []
    frames: list[tuple] = []
    for i in range(1, steps + 1):
        truth += [encode_event(e) for e in market.advance(START + seconds * SEC * i // steps)]
        frames += market.updates()
    return truth, frames


def test_determinism_independent_of_time_slicing() -> None:
    t1, f1 = _run(42, 1)
    t2, f2 = _run(42, 1000)
    assert len(t1) > 1000 and len(f1) > 500
    assert t1 == t2
    assert f1 == f2
    t3, f3 = _run(43, 1)
    assert t3 != t1 and f3 != f1


def test_truth_round_trips_and_is_time_ordered() -> None:
    market = SpotMarket(_universe(), seed=1, rate=2.0, start_ns=START)
    truth = market.advance(START + 10 * SEC)
    assert truth
    times = [e.t_ns for e in truth]
    assert times == sorted(times) and times[0] > START
    for e in truth[:500]:
        assert decode_event(encode_event(e)) == e


def test_grids_ids_trade_ids_and_never_crossed() -> None:
    market = SpotMarket(_universe(), seed=7, rate=3.0, start_ns=START)
    specs = {p.symbol: p for p in _universe().pairs}
    last_tid: dict[str, int] = {}
    oid = re.compile(r"O[A-Z2-7]{5}-[A-Z2-7]{5}-[A-Z2-7]{6}")
    n_trades = 0
    small: set[str] = set()
    takers: set[str] = set()
    for i in range(1, 61):
        for e in market.advance(START + i * SEC):
            spec = specs.get(e.symbol)
            if isinstance(e, (OrderAdded, OrderModified, OrderDeleted, TradeEvent)):
                tick = to_units(spec.price_increment, spec.price_precision)
                lot = to_units(spec.qty_increment, spec.qty_precision)
                assert to_units(e.price, spec.price_precision) % tick == 0
                assert to_units(e.qty, spec.qty_precision) % lot == 0
                assert len(e.price.partition(".")[2]) == spec.price_precision
            if isinstance(e, (OrderAdded, OrderModified, OrderDeleted)):
                assert oid.fullmatch(e.order_id)
            if isinstance(e, OrderAdded):
                if to_units(e.qty, spec.qty_precision) < to_units(spec.qty_min, spec.qty_precision):
                    small.add(e.order_id)  # allowed only for a taker's rested remainder
            if isinstance(e, TradeEvent):
                takers.add(e.taker_order_id)
                n_trades += 1
                if e.symbol in last_tid:
                    assert e.trade_id == last_tid[e.symbol] + 1
                last_tid[e.symbol] = e.trade_id
        for s in market.symbols:
            eng = market.engine(s)
            bb, ba = eng.best_price(BID), eng.best_price(ASK)
            assert bb is not None and ba is not None and bb < ba
            assert eng.level_count(BID) >= 20 and eng.level_count(ASK) >= 20
        if i % 20 == 0:
            for s in market.symbols:
                market.engine(s).check()
    assert n_trades > 50
    assert small <= takers


def test_event_mix_follows_calibration() -> None:
    """kracked L3 (depth-10 view, 4 majors): add 65 % / delete 35 % / modify 0.3 % of visible
    events; all book events here (not only visible ones): adds and deletes balance, modify rare."""
    market = SpotMarket(_universe(), seed=5, rate=1.0, start_ns=START)
    truth = market.advance(START + 60 * SEC)
    busiest = max(market.symbols, key=market.activity)
    kinds = Counter(type(e).__name__ for e in truth if e.symbol == busiest)
    book = kinds["OrderAdded"] + kinds["OrderDeleted"] + kinds["OrderModified"]
    assert book > 3000
    assert 0.40 < kinds["OrderAdded"] / book < 0.70
    assert 0.30 < kinds["OrderDeleted"] / book < 0.60
    assert kinds["OrderModified"] / book < 0.05
    assert 0.002 < kinds["TradeEvent"] / book < 0.05
    # lifetimes of orders added and cancelled within the run: median near 0.07 s (calibrated)
    added = {e.order_id: e.t_ns for e in truth if isinstance(e, OrderAdded) and e.symbol == busiest}
    lives = sorted((e.t_ns - added[e.order_id]) / SEC for e in truth
                   if isinstance(e, OrderDeleted) and e.reason == "cancel" and e.order_id in added)
    median = lives[len(lives) // 2]
    assert 0.02 < median < 0.5
    # activity differs by pair: long tail much quieter than the busiest pair
    counts = Counter(e.symbol for e in truth)
    assert counts[busiest] > 10 * min(counts.get(s, 0) for s in market.symbols) + 10


def test_rate_scales_activity() -> None:
    slow = SpotMarket(_universe(), seed=5, rate=0.5, start_ns=START).advance(START + 20 * SEC)
    fast = SpotMarket(_universe(), seed=5, rate=2.0, start_ns=START).advance(START + 20 * SEC)
    assert len(fast) > 2.5 * len(slow)


def test_rest_data() -> None:
    market = SpotMarket(_universe(), seed=9, rate=3.0, start_ns=START)
    truth = market.advance(START + 30 * SEC)
    s = market.symbols[0]
    bids, asks = market.depth(s, 5)
    assert len(bids) == len(asks) == 5
    assert float(bids[0][0]) < float(asks[0][0]) and isinstance(bids[0][2], int)
    trades = [e for e in truth if isinstance(e, TradeEvent) and e.symbol == s]
    rest = market.trades_since(s, None, 1000)
    assert [t.trade_id for t in rest] == [t.trade_id for t in trades][-1000:]
    assert rest[-1].price == trades[-1].price and rest[-1].side in ("b", "s")
    mid = trades[len(trades) // 2].t_ns
    after = market.trades_since(s, mid, 5)
    assert all(t.t_ns > mid for t in after) and len(after) == 5
    bars = market.ohlc(s, 1)
    assert sum(b.trades for b in bars) == len(trades)
    b3, a3 = market.l3_orders(s, 3)
    assert b3 and a3 and all(len(o) == 4 for o in b3)
    tk = market.ticker(s)
    assert tk["bid"] == bids[0][0] and tk["last"] == trades[-1].price


def test_list_and_delist() -> None:
    universe = _universe(8)
    market = SpotMarket(load_universe(None, pairs=4, futures_path=None, seed=3), seed=1, start_ns=START)
    new = [p for p in universe.pairs if p.symbol not in market.symbols][0]
    market.subscribe(("instrument",))
    market.list_pair(new)
    assert new.symbol in market.symbols
    market.delist_pair(market.symbols[0])
    frames = market.updates()
    assert len(frames) == 2 and all(k == ("instrument",) for k, _ in frames)
    assert '"status":"delisted"' in frames[1][1]
