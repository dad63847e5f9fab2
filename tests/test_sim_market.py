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


def test_rest_spreads_record_every_change_of_the_best_prices() -> None:
    market = SpotMarket(_universe(), seed=4, rate=2.0, start_ns=START)
    market.advance(START + 20 * SEC)
    for symbol in market.symbols[:3]:
        rows = market.spreads(symbol)
        assert 1 < len(rows) <= 200
        assert rows[0][0] >= START and all(a[0] <= b[0] for a, b in zip(rows, rows[1:]))
        assert all(a[1:] != b[1:] for a, b in zip(rows, rows[1:]))  # a row per price change
        assert all(to_units(bid, 8) < to_units(ask, 8) for _, bid, ask in rows)
        bids, asks = market.depth(symbol, 1)
        assert rows[-1][1:] == (bids[0][0], asks[0][0])  # the last row is the current top


def test_rest_ohlc_sends_one_bar_per_interval_up_to_the_open_one() -> None:
    market = SpotMarket(_universe(), seed=4, rate=0.05, start_ns=START)
    end = START + 30 * 60 * SEC
    truth = market.advance(end)
    counts = Counter(e.symbol for e in truth if isinstance(e, TradeEvent))
    symbol = min(counts, key=counts.__getitem__)  # the quietest pair that traded
    trades = [e for e in truth if isinstance(e, TradeEvent) and e.symbol == symbol]
    bars = market.ohlc(symbol, 1)
    begins = [b.begin_s for b in bars]
    assert begins == list(range(begins[0], begins[0] + 60 * len(bars), 60))
    assert begins[-1] == end // SEC // 60 * 60  # the current, still open interval
    assert sum(b.trades for b in bars) == len(trades)
    empty = [(prev, bar) for prev, bar in zip(bars, bars[1:]) if bar.trades == 0]
    assert empty, "the slow market should leave minutes without a trade"
    for prev, bar in empty:  # Kraken: the previous close, vwap 0, volume 0
        assert bar.open == bar.high == bar.low == bar.close == prev.close
        assert to_units(bar.vwap, 8) == 0 and to_units(bar.volume, 8) == 0
    quiet = SpotMarket(_universe(2), seed=4, rate=0.002, start_ns=START)
    quiet.advance(START + 13 * 3600 * SEC)
    assert len(quiet.ohlc(quiet.symbols[0], 1)) == 721  # 720 committed bars and the open one


def test_rest_ticker_splits_today_from_the_last_24_hours() -> None:
    before_midnight = (START // (86_400 * SEC) + 1) * 86_400 * SEC - 120 * SEC
    market = SpotMarket(_universe(2), seed=4, rate=0.3, start_ns=before_midnight)
    truth = market.advance(before_midnight + 240 * SEC)  # 2 min before, 2 min after 00:00
    symbol = market.symbols[0]
    trades = [e for e in truth if isinstance(e, TradeEvent) and e.symbol == symbol]
    today = [t for t in trades if t.t_ns >= before_midnight + 120 * SEC]
    assert 0 < len(today) < len(trades)
    t = market.rest_ticker(symbol)
    pp, qp = t.price_precision, t.qty_precision
    assert (t.day.trades, t.today.trades) == (len(trades), len(today))
    assert t.day.volume == sum(to_units(e.qty, qp) for e in trades)
    assert t.today.volume == sum(to_units(e.qty, qp) for e in today)
    assert t.today.open == to_units(today[0].price, pp) and t.day.open == to_units(trades[0].price, pp)
    assert t.last == to_units(trades[-1].price, pp) and t.last_qty == to_units(trades[-1].qty, qp)
    assert t.day.cost == sum(to_units(e.price, pp) * to_units(e.qty, qp) for e in trades)
    assert t.bid < t.ask and t.bid_qty > 0 and t.ask_qty > 0
