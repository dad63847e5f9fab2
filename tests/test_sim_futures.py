"""FuturesMarket: book seq contiguity and book reconstruction, trade seq/uid, tickers."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest

from recorder.sim.futures_market import FuturesMarket
from recorder.sim.market import MarketError
from recorder.sim.universe import load_universe

START = 1_700_000_000 * 10**9
SEC = 10**9


def _market(seed: int = 1, rate: float = 2.0) -> FuturesMarket:
    return FuturesMarket(load_universe(None, pairs=2, futures_path=None, seed=4), seed=seed, rate=rate,
                         start_ns=START)


def _p(text: str) -> dict:
    return json.loads(text, parse_float=Decimal)


def test_book_seq_contiguous_and_deltas_rebuild_the_book() -> None:
    fm = _market()
    pids = fm.product_ids[:3]
    books: dict[str, dict[str, dict[Decimal, Decimal]]] = {}
    seq: dict[str, int] = {}
    for pid in pids:
        snap = _p(fm.subscribe(("book", pid))[0])
        assert snap["feed"] == "book_snapshot" and snap["product_id"] == pid and snap["tickSize"] is None
        books[pid] = {"buy": {Decimal(x["price"]): x["qty"] for x in snap["bids"]},
                      "sell": {Decimal(x["price"]): x["qty"] for x in snap["asks"]}}
        seq[pid] = snap["seq"]
    deltas = 0
    for i in range(1, 41):
        fm.advance(START + i * SEC // 4)
        for key, text in fm.updates():
            d = _p(text)
            assert key == ("book", d["product_id"]) and d["feed"] == "book"
            assert d["seq"] == seq[d["product_id"]] + 1
            seq[d["product_id"]] = d["seq"]
            assert isinstance(d["timestamp"], int)
            side = books[d["product_id"]][d["side"]]
            if d["qty"] == 0:
                side.pop(d["price"], None)
            else:
                side[d["price"]] = d["qty"]
            deltas += 1
        for pid in pids:
            bids, asks = fm.orderbook(pid)
            assert sorted(books[pid]["buy"].items(), reverse=True) == [(Decimal(p), Decimal(q)) for p, q in bids]
            assert sorted(books[pid]["sell"].items()) == [(Decimal(p), Decimal(q)) for p, q in asks]
            assert Decimal(bids[0][0]) < Decimal(asks[0][0])
    assert deltas > 200
    # a resubscriber's snapshot continues the same counter
    fm.unsubscribe(("book", pids[0]))
    fm.advance(START + 20 * SEC)
    fm.updates()
    snap = _p(fm.subscribe(("book", pids[0]))[0])
    assert snap["seq"] > seq[pids[0]]


def test_trades_seq_uid_snapshot() -> None:
    fm = _market(rate=5.0)
    pid = fm.product_ids[0]
    fm.advance(START + 30 * SEC)
    snap = _p(fm.subscribe(("trade", pid))[0])
    trades = snap["trades"]
    assert snap["feed"] == "trade_snapshot" and 0 < len(trades) <= 100
    seqs = [t["seq"] for t in trades]
    assert seqs == list(range(seqs[0], seqs[0] - len(seqs), -1))  # newest first, consecutive
    uid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    last = seqs[0]
    fm.advance(START + 60 * SEC)
    live = [_p(t) for k, t in fm.updates() if k == ("trade", pid)]
    assert live
    for t in trades + live:
        assert list(t) == ["feed", "product_id", "uid", "side", "type", "seq", "time", "qty", "price"]
        assert uid.fullmatch(t["uid"]) and t["type"] in ("fill", "liquidation") and t["side"] in ("buy", "sell")
    for t in live:
        assert t["seq"] == last + 1
        last = t["seq"]


def test_determinism_and_ticker_throttle() -> None:
    def run(steps: int) -> list:
        fm = _market(seed=3)
        for pid in fm.product_ids:
            for feed in ("book", "trade", "ticker", "ticker_lite"):
                fm.subscribe((feed, pid))
        frames: list = []
        truth: list = []
        for i in range(1, steps + 1):
            truth += fm.advance(START + 10 * SEC * i // steps)
            frames += fm.updates()
        return frames + truth

    a = run(1)
    assert a == run(500)
    tick_times: dict[str, list[int]] = {}
    for item in a:
        if isinstance(item, tuple) and item[0][0] == "ticker":
            d = _p(item[1])
            tick_times.setdefault(d["product_id"], []).append(d["time"])
    assert tick_times
    for times in tick_times.values():
        assert all(b - a_ >= 1000 for a_, b in zip(times, times[1:]))


def test_ticker_shapes_perpetual_vs_dated() -> None:
    fm = _market()
    fm.advance(START + 5 * SEC)
    perp = next(p for p in fm.product_ids if p.startswith("PF_"))
    dated = next(p for p in fm.product_ids if p.startswith("FI_"))
    tp = _p(fm.subscribe(("ticker", perp))[0])
    td = _p(fm.subscribe(("ticker", dated))[0])
    assert tp["tag"] == "perpetual" and "funding_rate" in tp and tp["maturityTime"] == 0
    assert "funding_rate" not in td and td["tag"] in ("month", "quarter") and td["maturityTime"] > 0
    for key in ("bid", "ask", "bid_size", "ask_size", "openInterest", "markPrice", "index", "volume"):
        assert key in tp and key in td
    lite = _p(fm.subscribe(("ticker_lite", dated))[0])
    assert list(lite) == ["feed", "product_id", "bid", "ask", "change", "premium", "volume", "tag",
                          "pair", "dtm", "maturityTime"]
    assert len(fm.tickers()) == len(fm.product_ids)
    with pytest.raises(MarketError):
        fm.subscribe(("book", "PF_NOPE"))
