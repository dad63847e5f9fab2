"""The simulated Kraken Futures market: per-product full-depth books, trades and tickers,
rendered as Futures WS v1 frames (``book_snapshot``/``book``, ``trade_snapshot``/``trade``,
``ticker``, ``ticker_lite``).

Pure, like :mod:`recorder.sim.market` (whose seeded per-product generator and matching engine it
reuses, with the same time-slicing independent determinism).

Wire rules (protocol notes §4.1, §8.1): every level change of a product's book is one ``book``
delta carrying the level's absolute ``qty`` (0 = removed) and the product's ``seq``, which
increases by exactly 1 per delta whether or not anyone is subscribed; a ``book_snapshot`` carries
the current ``seq`` so the first delta after it is ``seq + 1``. Trades have their own per-product
``seq`` counter, a ``uid`` (UUID from the seeded RNG) and ``type`` ``fill`` (rarely
``liquidation``); the ``trade_snapshot`` holds the 100 most recent trades, newest first.
``ticker``/``ticker_lite`` are sent at most once per second per product, when a trade happened
or the best bid/ask changed. Times are epoch milliseconds; numbers are JSON numbers written at
the product's precision.
"""

from __future__ import annotations

import heapq
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

from recorder.protocol.numbers import units_to_text
from recorder.sim.engine import ASK, BID, Level, Order
from recorder.sim.events import FuturesTrade, SimEvent
from recorder.sim.feeds import Now, TradeRec
from recorder.sim.market import TOP_RATE, ZIPF_S, MarketError, _Pair

__all__ = ["FuturesMarket", "FUTURES_TRADE_SNAPSHOT", "P_LIQUIDATION"]

#: Trades in a ``trade_snapshot`` (real captures: 100, newest first).
FUTURES_TRADE_SNAPSHOT: Final = 100
#: Trades kept per product for REST ``history`` (Kraken: the last 100 before ``lastTime``).
FUTURES_HISTORY: Final = 1000
#: Share of trades flagged ``liquidation``.
P_LIQUIDATION: Final = 0.01
_MS: Final = 1_000_000
_NS: Final = 1_000_000_000
_FUNDING_PERIOD_MS: Final = 3_600_000
_DAY_MS: Final = 86_400_000


@dataclass(frozen=True, slots=True)
class _SpecAdapter:
    """A futures product seen through the spot generator's pair interface."""

    symbol: str
    base: str
    quote: str
    status: str
    price_precision: int
    qty_precision: int
    price_increment: str
    qty_increment: str
    qty_min: str
    cost_min: str
    ref_price: str
    wire: dict


def _adapt(product: Any) -> _SpecAdapter:
    raw = int(product.qty_precision)  # contractValueTradePrecision, may be negative
    qp = max(0, raw)
    lot = units_to_text(10 ** max(0, -raw), qp)
    base, _, quote = str(product.pair).partition(":")
    return _SpecAdapter(product.product_id, base, quote or "USD", "online", int(product.price_precision),
                        qp, product.tick_size, lot, lot, "50", product.ref_price, {})


class _Product(_Pair):
    """One futures product: spot generator + engine, Futures wire state."""

    RNG_TAG = "sim-futures"

    def __init__(self, market: FuturesMarket, product: Any, index: int, activity: float) -> None:
        self.product = product
        self.fm = market
        super().__init__(market, _adapt(product), index, activity)  # type: ignore[arg-type]
        rng = self.rng
        self.seq = rng.randint(100_000, 400_000_000)
        self.trade_seq = rng.randint(10_000, 5_000_000)
        self.ftrades: deque[str] = deque(maxlen=FUTURES_TRADE_SNAPSHOT)
        #: recent trades for REST ``history``: (t_ns, seq, price, qty, side, type, uid)
        self.history: deque[tuple[int, int, str, str, str, str, str]] = deque(maxlen=FUTURES_HISTORY)
        self.book_on = False
        self.trade_on = False
        self.ticker_on = False
        self.lite_on = False
        self.pending: list[tuple[tuple, str]] = []
        self.key_book = ("book", self.symbol)
        self.key_trade = ("trade", self.symbol)
        self.last_ticker_ms = -(10**15)
        self.ticker_dirty = True
        self.open_interest = rng.uniform(1e5, 5e7)
        self.premium = rng.uniform(-0.0005, 0.0005)
        self.funding = rng.uniform(-2e-5, 2e-5)

    # book deltas: one per level change, seq always advances
    def _sink(self, code: int, order: Order, level: Level, rank: int, flag: bool) -> None:
        self.seq += 1
        if rank == 0:
            self.ticker_dirty = True
        if self.book_on:
            qty = "0" if not level.orders else self.ps.qtext(level.total)
            self.pending.append((self.key_book,
                f'{{"feed":"book","product_id":"{self.symbol}",'
                f'"side":"{"buy" if order.side == BID else "sell"}","seq":{self.seq},'
                f'"price":{level.price_text},"qty":{qty},"timestamp":{self.fm.now.ns // _MS}}}'))

    def on_fills(self, t: int, fills: list, side: int, ord_type: str, taker: str) -> list[TradeRec]:
        ps = self.ps
        rng = self.rng
        tside = "buy" if side == BID else "sell"
        recs: list[TradeRec] = []
        for f in fills:
            self.trade_seq += 1
            uid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            kind = "liquidation" if rng.random() < P_LIQUIDATION else "fill"
            price, qty = self.engine.price_text(f.price), ps.qtext(f.qty)
            text = (f'{{"feed":"trade","product_id":"{self.symbol}","uid":"{uid}","side":"{tside}",'
                    f'"type":"{kind}","seq":{self.trade_seq},"time":{t // _MS},"qty":{qty},'
                    f'"price":{price}}}')
            self.ftrades.append(text)
            self.history.append((t, self.trade_seq, price, qty, tside, kind, uid))
            if self.trade_on:
                self.pending.append((self.key_trade, text))
            recs.append(ps.record_trade(self.trade_seq, t, f.price, f.qty, tside, ord_type))
            self.fm._truth.append(FuturesTrade(t, self.symbol, uid, self.trade_seq, price, qty, tside, kind))
            self.open_interest = max(0.0, self.open_interest + rng.uniform(-1.0, 1.0) * f.qty)
        if recs:
            self.ticker_dirty = True
        return recs

    # ------------------------------------------------------------------ rendering

    def book_snapshot(self) -> str:
        eng, ps = self.engine, self.ps
        sides = [",".join(f'{{"price":{lv.price_text},"qty":{ps.qtext(lv.total)}}}'
                          for lv in eng.top(side, 10**9)) for side in (BID, ASK)]
        return (f'{{"feed":"book_snapshot","product_id":"{self.symbol}",'
                f'"timestamp":{self.fm.now.ns // _MS},"seq":{self.seq},"tickSize":null,'
                f'"bids":[{sides[0]}],"asks":[{sides[1]}]}}')

    def trade_snapshot(self) -> str:
        trades = ",".join(reversed(self.ftrades))
        return f'{{"feed":"trade_snapshot","product_id":"{self.symbol}","trades":[{trades}]}}'

    def _maturity(self) -> tuple[int, int]:
        m = self.product.maturity_ms
        if not m:
            return 0, 0
        now_ms = self.fm.now.ns // _MS
        return max(0, (m - now_ms) // _DAY_MS), m

    def values(self) -> dict[str, Any]:
        """Current ticker values (text for exact prices; floats where Kraken sends floats)."""
        ps, eng = self.ps, self.engine
        bid, ask = eng.best(BID), eng.best(ASK)
        last, vol, _vwap, low, high, open_ = ps.stats24()
        pp = ps.pp
        mid = ((bid.price if bid else last) + (ask.price if ask else last)) / 2 / 10**pp
        index = mid * (1 - self.premium)
        change = (last - open_) / open_ * 100 if open_ else 0.0
        dtm, maturity = self._maturity()
        now_ms = self.fm.now.ns // _MS
        return {
            "bid": ps.ptext(bid.price) if bid else ps.ptext(0),
            "ask": ps.ptext(ask.price) if ask else ps.ptext(0),
            "bid_size": ps.qtext(bid.total) if bid else ps.qtext(0),
            "ask_size": ps.qtext(ask.total) if ask else ps.qtext(0),
            "last": ps.ptext(last), "open": ps.ptext(open_), "high": ps.ptext(high),
            "low": ps.ptext(low), "volume": ps.qtext(vol),
            "volumeQuote": repr(round(vol / 10**ps.qp * last / 10**pp, 2)),
            "change": repr(change), "index": repr(round(index, pp + 2)),
            "markPrice": repr(round(mid, pp + 3)), "premium": repr(round(self.premium * 100, 1)),
            "openInterest": repr(round(self.open_interest, 1)), "dtm": dtm, "maturityTime": maturity,
            "tag": self.product.tag, "pair": self.product.pair, "funding": self.funding,
            "next_funding_rate_time": (now_ms // _FUNDING_PERIOD_MS + 1) * _FUNDING_PERIOD_MS,
            "suspended": self.ps.status not in ("online",), "time": now_ms,
        }

    def ticker(self) -> str:
        v = self.values()
        funding = ""
        if self.product.tag == "perpetual":
            f = v["funding"]
            rel = f * 3
            funding = (f'"funding_rate":{f!r},"funding_rate_prediction":{f * 0.9!r},'
                       f'"relative_funding_rate":{rel!r},"relative_funding_rate_prediction":{rel * 0.9!r},'
                       f'"next_funding_rate_time":{v["next_funding_rate_time"]},')
        return (
            f'{{"time":{v["time"]},"product_id":"{self.symbol}",{funding}"feed":"ticker",'
            f'"bid":{v["bid"]},"ask":{v["ask"]},"bid_size":{v["bid_size"]},"ask_size":{v["ask_size"]},'
            f'"volume":{v["volume"]},"dtm":{v["dtm"]},"leverage":"50x","index":{v["index"]},'
            f'"premium":{v["premium"]},"last":{v["last"]},"change":{v["change"]},'
            f'"suspended":{"true" if v["suspended"] else "false"},"tag":"{v["tag"]}",'
            f'"pair":"{v["pair"]}","openInterest":{v["openInterest"]},"markPrice":{v["markPrice"]},'
            f'"maturityTime":{v["maturityTime"]},"post_only":false,"volumeQuote":{v["volumeQuote"]},'
            f'"open":{v["open"]},"high":{v["high"]},"low":{v["low"]}}}'
        )

    def ticker_lite(self) -> str:
        v = self.values()
        return (
            f'{{"feed":"ticker_lite","product_id":"{self.symbol}","bid":{v["bid"]},"ask":{v["ask"]},'
            f'"change":{v["change"]},"premium":{v["premium"]},"volume":{v["volume"]},'
            f'"tag":"{v["tag"]}","pair":"{v["pair"]}","dtm":{v["dtm"]},'
            f'"maturityTime":{v["maturityTime"]}}}'
        )


class FuturesMarket:
    """All futures products of a universe; same driving shape as :class:`SpotMarket`.

    Keys: ``("book", product_id)``, ``("trade", product_id)``, ``("ticker", product_id)``,
    ``("ticker_lite", product_id)`` (product ids upper-case). Ground truth: one
    :class:`~recorder.sim.events.FuturesTrade` per trade (book changes are not reported).
    """

    def __init__(self, universe: Any, *, seed: int, rate: float = 1.0, start_ns: int) -> None:
        self.seed = seed
        self.rate = rate
        self.now = Now(start_ns)
        self._truth: list[SimEvent] = []
        self._out: list[tuple[tuple, str]] = []
        self._refs: dict[tuple, int] = {}
        self._products: dict[str, _Product] = {}
        self._order: list[_Product] = []
        self._heap: list[tuple[int, int]] = []
        ranked = sorted(universe.futures, key=lambda p: (p.tag != "perpetual", "XBT" not in p.product_id,
                                                         p.product_id))
        rank_of = {p.product_id: i for i, p in enumerate(ranked)}
        for product in universe.futures:
            activity = rate * max(TOP_RATE / 3 / (rank_of[product.product_id] + 1) ** ZIPF_S, 0.05)
            prod = _Product(self, product, len(self._order), activity)
            self._products[prod.symbol] = prod
            self._order.append(prod)
            prod.init_book(start_ns)
            prod.draw_arrival(start_ns)
            t = prod.next_time()
            if t is not None:
                heapq.heappush(self._heap, (t, prod.index))

    @property
    def product_ids(self) -> tuple[str, ...]:
        return tuple(self._products)

    def _product(self, product_id: str) -> _Product:
        prod = self._products.get(product_id.upper())
        if prod is None:
            raise MarketError(f"unknown product {product_id!r}")
        return prod

    def engine(self, product_id: str):
        return self._product(product_id).engine

    def advance(self, until_ns: int) -> list[SimEvent]:
        """Run every action with time ``<= until_ns``; ground truth since the last call."""
        heap, order, now, out = self._heap, self._order, self.now, self._out
        while heap and heap[0][0] <= until_ns:
            t, idx = heapq.heappop(heap)
            prod = order[idx]
            now.set(t)
            prod.act(t)
            if prod.pending:
                out += prod.pending
                prod.pending.clear()
            if (prod.ticker_on or prod.lite_on) and prod.ticker_dirty:
                ms = t // _MS
                if ms - prod.last_ticker_ms >= 1000:
                    prod.last_ticker_ms = ms
                    prod.ticker_dirty = False
                    if prod.ticker_on:
                        out.append((("ticker", prod.symbol), prod.ticker()))
                    if prod.lite_on:
                        out.append((("ticker_lite", prod.symbol), prod.ticker_lite()))
            nt = prod.next_time()
            if nt is not None:
                heapq.heappush(heap, (nt, idx))
        if until_ns > now.ns:
            now.set(until_ns)
        truth, self._truth = self._truth, []
        return truth

    def _flags(self, prod: _Product) -> None:
        r = self._refs
        prod.book_on = r.get(("book", prod.symbol), 0) > 0
        prod.trade_on = r.get(("trade", prod.symbol), 0) > 0
        prod.ticker_on = r.get(("ticker", prod.symbol), 0) > 0
        prod.lite_on = r.get(("ticker_lite", prod.symbol), 0) > 0

    def subscribe(self, key: tuple, *, snapshot: bool = True) -> list[str]:
        """Activate (ref-count) ``key``; returns the snapshot frame (book: ``book_snapshot``,
        trade: ``trade_snapshot``, ticker/ticker_lite: the current ticker)."""
        if not isinstance(key, tuple) or len(key) != 2 or key[0] not in ("book", "trade", "ticker", "ticker_lite"):
            raise MarketError(f"bad feed key {key!r}")
        prod = self._product(key[1])
        key = (key[0], prod.symbol)
        self._refs[key] = self._refs.get(key, 0) + 1
        self._flags(prod)
        if not snapshot:
            return []
        if key[0] == "book":
            return [prod.book_snapshot()]
        if key[0] == "trade":
            return [prod.trade_snapshot()]
        return [prod.ticker() if key[0] == "ticker" else prod.ticker_lite()]

    def unsubscribe(self, key: tuple) -> None:
        if not isinstance(key, tuple) or len(key) != 2:
            return
        prod = self._products.get(str(key[1]).upper())
        if prod is None:
            return
        key = (key[0], prod.symbol)
        n = self._refs.get(key, 0) - 1
        if n > 0:
            self._refs[key] = n
        else:
            self._refs.pop(key, None)
        self._flags(prod)

    def updates(self) -> list[tuple[tuple, str]]:
        """Frames produced since the last call, in order (drained)."""
        out, self._out = self._out, []
        return out

    # ---------------------------------------------------------------- REST

    def orderbook(self, product_id: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Full book as ``(price_text, qty_text)``: bids descending, asks ascending."""
        prod = self._product(product_id)
        eng, ps = prod.engine, prod.ps
        return tuple(  # type: ignore[return-value]
            [(lv.price_text, ps.qtext(lv.total)) for lv in eng.top(side, 10**9)] for side in (BID, ASK))

    def tickers(self) -> list[dict[str, Any]]:
        """REST ``tickers`` data per product (text numbers at precision; floats as repr text)."""
        out = []
        for prod in self._order:
            v = prod.values()
            last_trade = prod.history[-1] if prod.history else None
            out.append({
                "symbol": prod.symbol, "last": v["last"],
                "lastTime_ns": last_trade[0] if last_trade else None, "tag": v["tag"], "pair": v["pair"],
                "markPrice": v["markPrice"], "bid": v["bid"], "bidSize": v["bid_size"], "ask": v["ask"],
                "askSize": v["ask_size"], "vol24h": v["volume"], "volumeQuote": v["volumeQuote"],
                "openInterest": v["openInterest"], "open24h": v["open"], "high24h": v["high"],
                "low24h": v["low"], "lastSize": last_trade[3] if last_trade else None,
                "fundingRate": repr(v["funding"]) if v["tag"] == "perpetual" else None,
                "fundingRatePrediction": repr(v["funding"] * 0.9) if v["tag"] == "perpetual" else None,
                "suspended": v["suspended"], "indexPrice": v["index"], "postOnly": False,
                "change24h": v["change"],
            })
        return out

    def history(self, product_id: str, before_ns: int | None,
                count: int = 100) -> list[tuple[int, int, str, str, str, str, str]]:
        """Up to ``count`` most recent trades strictly before ``before_ns`` (None: the most
        recent), newest first, as ``(t_ns, trade_id, price, qty, side, type, uid)``."""
        prod = self._product(product_id)
        out = []
        for rec in reversed(prod.history):
            if before_ns is None or rec[0] < before_ns:
                out.append(rec)
                if len(out) == count:
                    break
        return out

