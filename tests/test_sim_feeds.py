"""Feed views: every rendered frame is checked by an independent subscriber-side reference.

The reference books here are deliberately slow and separate from the simulator's code: frames
are parsed as JSON with number tokens kept as text, quantities handled with ``Decimal``, Kraken's
maintenance rules applied (events in order, drop empty levels, truncate to depth after every
message, price-changing ``modify`` = move to the back of the new level), and the checksum
recomputed from decimal text. Agreement of every checksum, and of the reference book with the
engine's true top levels, validates the truncation and re-add semantics.
"""

from __future__ import annotations

import json
import re
import zlib
from decimal import Decimal

import pytest

from recorder.sim.engine import ASK, BID
from recorder.sim.market import SpotMarket
from recorder.sim.universe import load_universe

START = 1_700_000_000 * 10**9
SEC = 10**9


def _universe(n: int = 6):
    return load_universe(None, pairs=n, futures_path=None, seed=3)


def _parse(text: str) -> dict:
    return json.loads(text, parse_float=str, parse_int=str)


def _digits(token: str, precision: int) -> str:
    """Checksum text of a value: fixed precision, no dot, no leading zeros (slow reference)."""
    fixed = format(Decimal(token).quantize(Decimal(1).scaleb(-precision)), "f")
    return fixed.replace(".", "").lstrip("0")


def _crc(asks: list[list[tuple[str, str]]], bids: list[list[tuple[str, str]]], pp: int, qp: int) -> int:
    """asks/bids: best-first levels, each a list of (price, qty) entries (one per order for L3)."""
    a = "".join(_digits(p, pp) + _digits(q, qp) for lvl in asks[:10] for p, q in lvl)
    b = "".join(_digits(p, pp) + _digits(q, qp) for lvl in bids[:10] for p, q in lvl)
    return zlib.crc32((a + b).encode())


class RefL3:
    """Subscriber-side level3 book."""

    def __init__(self, depth: int, pp: int, qp: int) -> None:
        self.depth, self.pp, self.qp = depth, pp, qp
        self.sides: dict[str, dict[Decimal, list[list[str]]]] = {"bids": {}, "asks": {}}
        self.where: dict[str, tuple[str, Decimal]] = {}

    def _ordered(self, name: str) -> list[Decimal]:
        return sorted(self.sides[name], reverse=(name == "bids"))

    def snapshot(self, data: dict) -> None:
        self.sides = {"bids": {}, "asks": {}}
        self.where = {}
        for name in ("bids", "asks"):
            for o in data[name]:
                self._add(name, o)
        self._check(data)

    def _add(self, name: str, o: dict) -> None:
        assert o["order_id"] not in self.where, f"duplicate add {o['order_id']}"
        price = Decimal(o["limit_price"])
        self.sides[name].setdefault(price, []).append([o["order_id"], o["order_qty"], o["limit_price"]])
        self.where[o["order_id"]] = (name, price)

    def _remove(self, oid: str) -> None:
        name, price = self.where.pop(oid)
        level = self.sides[name][price]
        level[:] = [e for e in level if e[0] != oid]
        if not level:
            del self.sides[name][price]

    def update(self, data: dict) -> None:
        for name in ("bids", "asks"):
            for o in data[name]:
                ev = o["event"]
                if ev == "add":
                    self._add(name, o)
                elif ev == "delete":
                    assert o["order_id"] in self.where, f"delete of unknown {o['order_id']}"
                    self._remove(o["order_id"])
                else:
                    assert ev == "modify"
                    _, price = self.where[o["order_id"]]
                    if Decimal(o["limit_price"]) == price:
                        for e in self.sides[name][price]:
                            if e[0] == o["order_id"]:
                                e[1] = o["order_qty"]
                    else:
                        self._remove(o["order_id"])
                        self._add(name, o)
        for name in ("bids", "asks"):
            for price in self._ordered(name)[self.depth:]:
                for e in self.sides[name].pop(price):
                    del self.where[e[0]]
        self._check(data)

    def levels(self, name: str) -> list[list[tuple[str, str]]]:
        return [[(e[2], e[1]) for e in self.sides[name][p]] for p in self._ordered(name)]

    def ids(self, name: str) -> list[list[str]]:
        return [[e[0] for e in self.sides[name][p]] for p in self._ordered(name)]

    def _check(self, data: dict) -> None:
        assert int(data["checksum"]) == _crc(self.levels("asks"), self.levels("bids"), self.pp, self.qp)


class RefL2:
    """Subscriber-side L2 book."""

    def __init__(self, depth: int, pp: int, qp: int) -> None:
        self.depth, self.pp, self.qp = depth, pp, qp
        self.sides: dict[str, dict[Decimal, tuple[str, str]]] = {"bids": {}, "asks": {}}

    def apply(self, data: dict, snapshot: bool) -> None:
        if snapshot:
            self.sides = {"bids": {}, "asks": {}}
        for name in ("bids", "asks"):
            for lv in data[name]:
                price = Decimal(lv["price"])
                if Decimal(lv["qty"]) == 0:
                    assert not snapshot
                    self.sides[name].pop(price, None)
                else:
                    self.sides[name][price] = (lv["price"], lv["qty"])
            keep = sorted(self.sides[name], reverse=(name == "bids"))[: self.depth]
            self.sides[name] = {p: self.sides[name][p] for p in keep}
        assert int(data["checksum"]) == _crc([[v] for v in self.levels("asks")],
                                             [[v] for v in self.levels("bids")], self.pp, self.qp)

    def levels(self, name: str) -> list[tuple[str, str]]:
        return [self.sides[name][p] for p in sorted(self.sides[name], reverse=(name == "bids"))]


def _true_l3(market: SpotMarket, symbol: str, side: int, depth: int) -> list[list[str]]:
    eng = market.engine(symbol)
    return [list(lv.orders) for lv in eng.top(side, depth)]


def _true_l2(market: SpotMarket, symbol: str, side: int, depth: int) -> list[tuple[Decimal, Decimal]]:
    eng = market.engine(symbol)
    return [(Decimal(lv.price_text), Decimal(lv.total).scaleb(-eng.qty_precision)) for lv in eng.top(side, depth)]


def _run_views(depth_l3: int, depth_l2: int, seconds: int, rate: float, steps: int) -> tuple[int, int]:
    market = SpotMarket(_universe(), seed=11, rate=rate, start_ns=START)
    symbols = market.symbols[:3]
    refs3: dict[str, RefL3] = {}
    refs2: dict[str, RefL2] = {}
    for s in symbols:
        eng = market.engine(s)
        refs3[s] = RefL3(depth_l3, eng.price_precision, eng.qty_precision)
        refs2[s] = RefL2(depth_l2, eng.price_precision, eng.qty_precision)
        (snap3,) = market.subscribe(("level3", s, depth_l3))
        msg = _parse(snap3)
        assert msg["type"] == "snapshot" and msg["channel"] == "level3"
        refs3[s].snapshot(msg["data"][0])
        (snap2,) = market.subscribe(("book", s, depth_l2))
        refs2[s].apply(_parse(snap2)["data"][0], True)
    n3 = n2 = 0
    for i in range(1, steps + 1):
        market.advance(START + seconds * SEC * i // steps)
        for key, text in market.updates():
            msg = _parse(text)
            assert msg["type"] == "update"
            data = msg["data"][0]
            s = data["symbol"]
            if key[0] == "level3":
                refs3[s].update(data)
                n3 += 1
            else:
                refs2[s].apply(data, False)
                n2 += 1
        # after every batch the subscriber-side books equal the true top levels
        for s in symbols:
            assert refs3[s].ids("bids") == _true_l3(market, s, BID, depth_l3)
            assert refs3[s].ids("asks") == _true_l3(market, s, ASK, depth_l3)
            for name, side in (("bids", BID), ("asks", ASK)):
                got = [(Decimal(p), Decimal(q)) for p, q in refs2[s].levels(name)]
                assert got == _true_l2(market, s, side, depth_l2)
            market.engine(s).check()
    return n3, n2


@pytest.mark.parametrize("depth_l3,depth_l2,seconds,steps", [
    (10, 10, 20, 400), (100, 25, 8, 100), (1000, 1000, 3, 20)])
def test_every_frame_checksum_and_state_match_reference(depth_l3: int, depth_l2: int, seconds: int,
                                                        steps: int) -> None:
    n3, n2 = _run_views(depth_l3, depth_l2, seconds=seconds, rate=2.0, steps=steps)
    assert n3 > 100 and n2 > 100


def test_window_reentry_is_exercised() -> None:
    """Shallow depth on a busy pair: levels leave and re-enter the window; adds with old
    timestamps (re-entries) must occur and the reference must stay exact."""
    market = SpotMarket(_universe(), seed=5, rate=4.0, start_ns=START)
    s = market.symbols[0]
    eng = market.engine(s)
    ref = RefL3(10, eng.price_precision, eng.qty_precision)
    ref.snapshot(_parse(market.subscribe(("level3", s, 10))[0])["data"][0])
    reentries = 0
    for i in range(1, 301):
        market.advance(START + i * SEC // 20)
        for key, text in market.updates():
            data = _parse(text)["data"][0]
            ref.update(data)
            stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z")
            assert stamp.fullmatch(data["timestamp"])
            for name in ("bids", "asks"):
                for o in data[name]:
                    assert stamp.fullmatch(o["timestamp"])
                    if o["event"] == "add" and o["timestamp"] < data["timestamp"]:
                        reentries += 1
    assert reentries > 0


def test_late_subscriber_snapshot_consistent_with_updates() -> None:
    market = SpotMarket(_universe(), seed=9, rate=3.0, start_ns=START)
    s = market.symbols[0]
    eng = market.engine(s)
    early = RefL3(100, eng.price_precision, eng.qty_precision)
    early.snapshot(_parse(market.subscribe(("level3", s, 100))[0])["data"][0])
    late = None
    late2 = None
    for i in range(1, 141):
        market.advance(START + i * SEC // 10)
        if i == 80:
            # frames produced before the snapshot are not for the late subscriber
            for key, text in market.updates():
                early.update(_parse(text)["data"][0])
            late = RefL3(100, eng.price_precision, eng.qty_precision)
            late.snapshot(_parse(market.subscribe(("level3", s, 100))[0])["data"][0])
            late2 = RefL2(10, eng.price_precision, eng.qty_precision)
            late2.apply(_parse(market.subscribe(("book", s, 10))[0])["data"][0], True)
        for key, text in market.updates():
            data = _parse(text)["data"][0]
            if key[0] == "level3":
                early.update(data)
                if late is not None:
                    late.update(data)
            else:
                assert late2 is not None
                late2.apply(data, False)
        if late is not None:
            assert late.ids("bids") == early.ids("bids") and late.ids("asks") == early.ids("asks")
    assert late is not None
    market.unsubscribe(("level3", s, 100))
    market.unsubscribe(("level3", s, 100))
    market.unsubscribe(("book", s, 10))
    market.advance(START + 30 * SEC)
    assert market.updates() == []


def test_number_rendering_uses_exact_precision() -> None:
    market = SpotMarket(_universe(), seed=2, rate=2.0, start_ns=START)
    for s in market.symbols:
        eng = market.engine(s)
        snap = market.subscribe(("book", s, 10))[0]
        prices = re.findall(r'"price":([0-9.]+)', snap)
        qtys = re.findall(r'"qty":([0-9.]+)', snap)
        assert prices and qtys
        for p in prices:
            assert len(p.partition(".")[2]) == eng.price_precision
        for q in qtys:
            assert len(q.partition(".")[2]) == eng.qty_precision
        assert re.search(r'"timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"', snap)


def test_trade_frames_batch_per_taker_and_ids_consecutive() -> None:
    market = SpotMarket(_universe(), seed=4, rate=5.0, start_ns=START)
    symbols = market.symbols[:4]
    for s in symbols:
        assert market.subscribe(("trade", s), snapshot=False) == []
    truth = market.advance(START + 60 * SEC)
    frames = [(_parse(t), k) for k, t in market.updates()]
    last: dict[str, int] = {}
    batches = 0
    for msg, key in frames:
        assert msg["channel"] == "trade" and msg["type"] == "update"
        stamps = {t["timestamp"] for t in msg["data"]}
        assert len(stamps) == 1  # one taker order per message
        batches += 1
        for t in msg["data"]:
            assert list(t) == ["symbol", "side", "price", "qty", "ord_type", "trade_id", "timestamp"]
            tid = int(t["trade_id"])
            if t["symbol"] in last:
                assert tid == last[t["symbol"]] + 1
            last[t["symbol"]] = tid
    truth_trades = [e for e in truth if type(e).__name__ == "TradeEvent" and e.symbol in symbols]
    assert len(truth_trades) == sum(len(m["data"]) for m, _ in frames)
    assert batches > 5
    # snapshot = the 50 most recent trades, continuing into later updates
    s = max(last, key=lambda x: sum(1 for e in truth_trades if e.symbol == x))
    snap = _parse(market.subscribe(("trade", s))[0])
    assert snap["type"] == "snapshot" and len(snap["data"]) == min(50, sum(1 for e in truth_trades if e.symbol == s))
    assert int(snap["data"][-1]["trade_id"]) == last[s]


def test_ohlc_bars_match_trades() -> None:
    market = SpotMarket(_universe(), seed=8, rate=5.0, start_ns=START)
    s = market.symbols[0]
    eng = market.engine(s)
    market.subscribe(("ohlc", s, 1))
    market.subscribe(("ohlc", s, 5))
    trades: list = []
    checked = 0
    for i in range(1, 71):  # crosses the 1-minute boundary 40 s after START
        truth = market.advance(START + i * SEC)
        trades += [e for e in truth if type(e).__name__ == "TradeEvent" and e.symbol == s]
        for key, text in market.updates():
            msg = _parse(text)
            bar = msg["data"][0]
            interval = key[2]
            begin = bar["interval_begin"]
            span = interval * 60 * SEC
            cutoff = _ns(msg["timestamp"])
            mine = [t for t in trades if t.t_ns // span * span == _ns(begin) and t.t_ns <= cutoff]
            assert mine, "bar without trades"
            assert Decimal(bar["open"]) == Decimal(mine[0].price)
            assert Decimal(bar["close"]) == Decimal(mine[-1].price)
            assert Decimal(bar["high"]) == max(Decimal(t.price) for t in mine)
            assert Decimal(bar["low"]) == min(Decimal(t.price) for t in mine)
            assert int(bar["trades"]) == len(mine)
            vol = sum(Decimal(t.qty) for t in mine)
            assert Decimal(bar["volume"]) == vol
            vwap = sum(Decimal(t.price) * Decimal(t.qty) for t in mine) / vol
            assert abs(Decimal(bar["vwap"]) - vwap) <= Decimal(1).scaleb(-eng.price_precision)
            assert re.fullmatch(r".*\.\d{9}Z", begin) and re.fullmatch(r".*\.\d{9}Z", msg["timestamp"])
            checked += 1
    assert checked > 20


def _ns(text: str) -> int:
    from recorder.protocol.timestamps import rfc3339_to_ns

    return rfc3339_to_ns(text)


def test_ticker_trades_and_bbo() -> None:
    market = SpotMarket(_universe(), seed=6, rate=5.0, start_ns=START)
    s = market.symbols[0]
    snap = _parse(market.subscribe(("ticker", s, "bbo"))[0])
    assert list(snap["data"][0]) == ["symbol", "bid", "bid_qty", "ask", "ask_qty", "last", "volume",
                                     "vwap", "low", "high", "change", "change_pct", "timestamp"]
    market.subscribe(("ticker", s, "trades"))
    market.advance(START + 30 * SEC)
    frames = market.updates()
    bbo = [_parse(t)["data"][0] for k, t in frames if k[2] == "bbo"]
    trd = [_parse(t)["data"][0] for k, t in frames if k[2] == "trades"]
    assert bbo and trd
    prev = None
    for d in bbo:
        cur = (d["bid"], d["bid_qty"], d["ask"], d["ask_qty"])
        assert cur != prev and Decimal(d["bid"]) < Decimal(d["ask"])
        prev = cur
    eng = market.engine(s)
    assert Decimal(bbo[-1]["bid"]) == Decimal(eng.best(BID).price_text)


def test_instrument_snapshot_and_status_updates() -> None:
    market = SpotMarket(_universe(), seed=1, start_ns=START)
    snap = _parse(market.subscribe(("instrument",))[0])
    assert snap["type"] == "snapshot"
    assert [p["symbol"] for p in snap["data"]["pairs"]] == list(market.symbols)
    s = market.symbols[1]
    market.set_pair_status(s, "cancel_only")
    truth = market.advance(START + SEC)
    assert any(type(e).__name__ == "PairStatusChanged" for e in truth)
    (key, text), = [u for u in market.updates() if u[0] == ("instrument",)]
    upd = _parse(text)
    assert upd["data"]["pairs"][0]["symbol"] == s and upd["data"]["pairs"][0]["status"] == "cancel_only"
    # cancel_only: no new orders or trades for that pair from now on
    truth = market.advance(START + 120 * SEC)
    assert not any(e.symbol == s and type(e).__name__ in ("OrderAdded", "TradeEvent") for e in truth)


def test_bad_keys_rejected() -> None:
    from recorder.sim.market import MarketError

    market = SpotMarket(_universe(), seed=1, start_ns=START)
    s = market.symbols[0]
    for key in [("level3", s, 25), ("book", s, 7), ("ohlc", s, 2), ("ticker", s, "x"), ("nope", s),
                ("book", "NOPE/USD", 10)]:
        with pytest.raises(MarketError):
            market.subscribe(key)
