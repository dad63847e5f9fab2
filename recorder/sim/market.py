"""The simulated spot market: one matching engine per pair, a seeded activity generator, ground
truth, and the subscription views that render Kraken Spot WS v2 frames.

Pure: no I/O, no clock, no asyncio. The server drives it with :meth:`SpotMarket.advance`.

Determinism. Each pair has its own RNG (seeded from ``seed`` and the symbol) and pre-draws the
time of its next action; scheduled cancels sit in a per-pair heap. :meth:`SpotMarket.advance`
executes every pending action with time ``<= until_ns`` in ``(time, pair index)`` order, so
the ground truth and the frames depend only on ``(universe, seed, rate, start_ns,
subscription/status history)``, never on how time is sliced into ``advance`` calls.

Calibration (from the real ``level3`` capture ``fixtures/kraken/kracked/L3_ticks.csv``: ETH,
BTC, DOGE, SOL /USD, ~10 s, depth 10; and ``kracked/trades.csv``):

* order lifetimes (add -> delete of the same id): median 0.07 s, p75 0.38 s, p90 1.5 s,
  p99 12 s, i.e. log-normal with median 0.07 s and sigma 2.5 (:data:`LIFETIME_MEDIAN_S`,
  :data:`LIFETIME_SIGMA`);
* new adds relative to the same-side touch: ~12 % improve the touch, the rest sit a median of
  2-3 bps behind it (DOGE ~10) -> exponential with mean 3.5 bps (:data:`ADD_OFFSET_BPS`);
* visible event rates of the busiest pairs 80-190 events/s (:data:`TOP_RATE`);
* trade batches (taker orders) 0.5-1.3/s against ~100-170 book events/s, i.e. ~0.8 % of
  actions (:data:`P_TAKER`), 1.8-3.3 trades per batch, 62 % ``market`` ord_type;
* ``modify`` is rare (16 of 5367 events; mostly partial fills): amends ~0.4 % of actions.
"""

from __future__ import annotations

import heapq
import math
import random
from math import exp as _exp
from math import log as _log
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from recorder.errors import RecorderError
from recorder.protocol.numbers import to_units
from recorder.sim.engine import (
    ADD,
    AMEND,
    ASK,
    BID,
    CANCEL,
    FILL,
    FILLED,
    MOVE_IN,
    MOVE_OUT,
    SIDE_NAMES,
    Level,
    Order,
    PairEngine,
)
from recorder.sim.events import (
    BarUpdated,
    InstrumentChanged,
    OrderAdded,
    OrderDeleted,
    OrderModified,
    PairStatusChanged,
    SimEvent,
    TradeEvent,
)
from recorder.sim.feeds import (
    BOOK_DEPTHS,
    L3_DEPTHS,
    OHLC_INTERVALS,
    BookView,
    InstrumentView,
    L3View,
    Now,
    OhlcView,
    PairState,
    TickerView,
    TradeRec,
    TradeView,
    View,
)

__all__ = [
    "FeedKey",
    "SpotMarket",
    "MarketError",
    "RestTrade",
    "RestBar",
    "TOP_RATE",
    "LIFETIME_MEDIAN_S",
    "LIFETIME_SIGMA",
    "ADD_OFFSET_BPS",
    "P_TAKER",
    "P_AMEND",
    "order_id",
]

FeedKey: TypeAlias = tuple

#: Actions/s of the busiest pair at rate 1 (kracked L3: 80-190 visible events/s on majors).
TOP_RATE: Final = 150.0
#: Zipf exponent of activity over the pair ranking, and the idle floor (actions/s).
ZIPF_S: Final = 1.1
IDLE_RATE: Final = 0.02
#: Order lifetime log-normal (kracked L3 add->delete: median 0.07 s, p90 1.5 s).
LIFETIME_MEDIAN_S: Final = 0.07
LIFETIME_SIGMA: Final = 2.5
#: Mean distance of a new add behind the same-side touch, in bps (kracked L3: median 2-3 bps).
ADD_OFFSET_BPS: Final = 3.5
#: Share of adds that improve the touch when the spread allows (kracked L3: ~12 %).
P_IMPROVE: Final = 0.12
#: Share of adds placed deep (5-150 bps) with long lifetimes (not visible at depth 10).
P_DEEP: Final = 0.15
#: Share of actions that are taker orders (kracked: ~0.8 %) and amends (~0.4 %).
P_TAKER: Final = 0.008
P_AMEND: Final = 0.004
#: Taker order type mix (kracked trades.csv: 123 market / 77 limit).
P_MARKET: Final = 0.62
#: Minimum levels per side the generator keeps (replenishes deep when below).
MIN_LEVELS: Final = 30
#: Statuses in which the generator is active, and what it may do.
_ACTIVE = frozenset({"online", "reduce_only", "post_only", "limit_only", "cancel_only"})

_B32: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
#: Two base32 characters for each 10-bit value (fast order-id rendering).
_B32_PAIRS: Final = tuple(a + b for a in _B32 for b in _B32)
#: The same pairs with the id's first dash between the two characters (it falls after the
#: 5th character, i.e. inside the third pair).
_B32_PAIRS_DASH: Final = tuple(a + "-" + b for a in _B32 for b in _B32)
_BUSY_BASES: Final = ("BTC", "ETH", "SOL", "XRP", "DOGE", "USDT", "USDC", "ADA", "LTC", "LINK")
_NS: Final = 1_000_000_000
#: bars in a REST ``OHLC`` answer: 720 committed and the current one (as Kraken's)
_REST_BARS: Final = 721
_MAX_LIFETIME_S: Final = 6 * 3600.0

# Hot-path sampling. The generator used to call ``Random.lognormvariate``/``expovariate``/
# ``uniform``/``randint``; those wrappers cost more than the draws. The helpers and inlined
# expressions below perform *exactly* the same arithmetic on exactly the same ``random()`` /
# ``getrandbits()`` calls in the same order (CPython 3.11 ``random.py``), so every stream is
# bit-identical to the wrapper-based one. Constants are the very floats the wrappers computed
# per call (``math.log(200.0)`` etc.).
_NV_MAGIC: Final = random.NV_MAGICCONST  # type: ignore[attr-defined]
_LOG_QTY_MEDIAN: Final = math.log(200.0)
_LOG_LIFETIME: Final = math.log(LIFETIME_MEDIAN_S)
_LOG_DEEP_LIFETIME: Final = math.log(300.0)
_LOG_DEEP_MIN: Final = math.log(5.0)
_LOG_DEEP_SPAN: Final = math.log(150.0) - math.log(5.0)  # uniform(a, b) = a + (b - a) * random()
_ADD_LAMBDA: Final = 1.0 / ADD_OFFSET_BPS  # expovariate(l) = -log(1 - random()) / l


def _lognormal(random_: Callable[[], float], mu: float, sigma: float) -> float:
    """``Random.lognormvariate(mu, sigma)`` (Kinderman-Monahan normal, then ``exp``), same
    draws and same floats, without the two method-call layers."""
    while True:
        u1 = random_()
        u2 = 1.0 - random_()
        z = _NV_MAGIC * (u1 - 0.5) / u2
        if z * z / 4.0 <= -_log(u2):
            return _exp(mu + z * sigma)


def _below(getrandbits: Callable[[int], int], n: int) -> int:
    """``Random._randbelow(n)`` (rejection sampling on ``n.bit_length()`` bits), ``n > 0``;
    ``randint(a, b)`` is ``a + _below(b - a + 1)`` and ``randrange(n)`` is ``_below(n)``."""
    k = n.bit_length()
    r = getrandbits(k)
    while r >= n:
        r = getrandbits(k)
    return r


class MarketError(RecorderError, KeyError):
    """Unknown symbol or invalid feed key."""


@dataclass(frozen=True, slots=True)
class RestTrade:
    """One trade for REST ``Trades``: exact text values, time in ns, side ``b``/``s``,
    type ``m``/``l``, per-pair consecutive ``trade_id``."""

    price: str
    qty: str
    t_ns: int
    side: str
    ord_type: str
    trade_id: int


@dataclass(frozen=True, slots=True)
class TickerPeriod:
    """Trade statistics of one ticker period in exact units: ``volume`` (qty units), ``cost``
    (sum of price units x qty units), ``trades``, and ``low``/``high``/``open`` (price units;
    the last price when the period has no trade)."""

    volume: int
    cost: int
    trades: int
    low: int
    high: int
    open: int


@dataclass(frozen=True, slots=True)
class RestTicker:
    """REST ``Ticker`` inputs of one pair in exact units (prices at ``price_precision``,
    quantities at ``qty_precision``): best levels, the last trade, today (since 00:00 UTC)
    and the last 24 h (hourly buckets)."""

    price_precision: int
    qty_precision: int
    bid: int
    bid_qty: int
    ask: int
    ask_qty: int
    last: int
    last_qty: int
    today: TickerPeriod
    day: TickerPeriod


@dataclass(frozen=True, slots=True)
class RestBar:
    """One OHLC bar for REST ``OHLC`` (``begin_s`` epoch seconds; text values)."""

    begin_s: int
    open: str
    high: str
    low: str
    close: str
    vwap: str
    volume: str
    trades: int


def order_id(rng: random.Random) -> str:
    """A Kraken-format order id ``OXXXXX-XXXXX-XXXXXX`` (base32 alphabet, as Kraken's)."""
    x = rng.getrandbits(80)
    t = _B32_PAIRS
    # 16 characters from the eight 10-bit groups, low group first, dashes after the 5th and
    # 10th character: the 3rd pair carries the first dash, the second falls between pairs.
    return (f"O{t[x & 1023]}{t[(x >> 10) & 1023]}{_B32_PAIRS_DASH[(x >> 20) & 1023]}"
            f"{t[(x >> 30) & 1023]}{t[(x >> 40) & 1023]}-{t[(x >> 50) & 1023]}"
            f"{t[(x >> 60) & 1023]}{t[x >> 70]}")


class _Pair:
    """One pair: engine, feed state, generator state and its sink."""

    RNG_TAG = "sim-spot"

    def __init__(self, market: SpotMarket, spec: Any, index: int, activity: float) -> None:
        self.market = market
        self.spec = spec
        self.index = index
        self.symbol: str = spec.symbol
        pp, qp = int(spec.price_precision), int(spec.qty_precision)
        self.tick = max(1, to_units(spec.price_increment, pp))
        self.lot = max(1, to_units(spec.qty_increment, qp))
        qmin = to_units(spec.qty_min, qp)
        self.qty_min = max(self.lot, -(-qmin // self.lot) * self.lot)
        self.cost_min = float(to_units(spec.cost_min, 8)) / 1e8 or 0.5  # magnitude only
        self.engine = PairEngine(self.symbol, pp, qp, tick=self.tick, lot=self.lot, sink=self._sink)
        ref = to_units(spec.ref_price, pp) // self.tick * self.tick
        self.ref = max(ref, 1000 * self.tick)
        wire = dict(spec.wire) if getattr(spec, "wire", None) else {}
        self.ps = PairState(self.symbol, self.engine, self.ref, wire, spec.status, market.now)
        self.rng = random.Random(f"{self.RNG_TAG}:{market.seed}:{self.symbol}")
        #: bound methods of ``rng`` for the hot paths (same generator, fewer lookups)
        self._random = self.rng.random
        self._getrandbits = self.rng.getrandbits
        #: ``draw_qty`` constants: the reference price as a float and the qty scale
        self._ref_float = self.ref / 10**pp
        self._qty_scale = 10**qp
        self.trade_id = self.rng.randint(1_000_000, 90_000_000)
        self.activity = activity
        self.lifetime_scale = max(1.0, TOP_RATE / activity) if activity > 0 else 1.0
        self.burst_left = 0
        self.cancels: list[tuple[int, int, str]] = []
        self.cancel_seq = 0
        self._old_price = ""
        self.next_arrival: int | None = None

    # -------------------------------------------------------------- sink: truth + views

    def _sink(self, code: int, order: Order, level: Level, rank: int, flag: bool) -> None:
        m = self.market
        t = m.now.ns
        eng = self.engine
        side = SIDE_NAMES[order.side]
        if code == ADD:
            m._truth.append(OrderAdded(t, self.symbol, side, order.order_id, level.price_text,
                                       eng.qty_text(order), order.ts_ns))
        elif code == FILL or code == AMEND:
            m._truth.append(OrderModified(t, self.symbol, side, order.order_id, level.price_text,
                                          eng.qty_text(order), "fill" if code == FILL else "amend",
                                          order.ts_ns, level.price_text))
        elif code == CANCEL or code == FILLED:
            m._truth.append(OrderDeleted(t, self.symbol, side, order.order_id, level.price_text,
                                         eng.qty_text(order), "cancel" if code == CANCEL else "fill"))
        elif code == MOVE_OUT:
            self._old_price = level.price_text
        elif code == MOVE_IN:
            m._truth.append(OrderModified(t, self.symbol, side, order.order_id, level.price_text,
                                          eng.qty_text(order), "amend", order.ts_ns,
                                          self._old_price))
        ps = self.ps
        if rank < 10:  # ps.touched(order.side), inlined
            if rank == 0:
                ps.top_moved = True
            side_ = order.side
            ps._s3[side_] = ps._s2[side_] = None
            ps._ck3 = ps._ck2 = None
            if side_ == ASK:
                ps._a3 = ps._a2 = None
        for view in ps.book_views:
            view.on_book(code, order, level, rank, flag)

    # -------------------------------------------------------------- scheduling

    def draw_arrival(self, t: int) -> None:
        rate = self.activity
        if rate <= 0:
            self.next_arrival = None
            return
        random_ = self._random
        if self.burst_left:
            self.burst_left -= 1
            rate *= 8.0
        elif random_() < 0.003:
            self.burst_left = 20 + _below(self._getrandbits, 181)  # randint(20, 200)
        self.next_arrival = t + 1 + int(-_log(1.0 - random_()) / rate * _NS)  # expovariate

    def next_time(self) -> int | None:
        a = self.next_arrival
        if self.cancels:
            c = self.cancels[0][0]
            return c if a is None or c <= a else a
        return a

    def schedule_cancel(self, t: int, oid: str, lifetime_s: float) -> None:
        self.cancel_seq += 1
        dt = int(min(lifetime_s, _MAX_LIFETIME_S) * _NS) + 1
        heapq.heappush(self.cancels, (t + dt, self.cancel_seq, oid))

    # -------------------------------------------------------------- generator

    def draw_qty(self) -> int:
        """An order size: notional log-normal around 200x the pair's cost_min, on the lot grid."""
        notional = self.cost_min * min(_lognormal(self._random, _LOG_QTY_MEDIAN, 1.6), 1e6)
        units = int(notional / self._ref_float * self._qty_scale)
        units -= units % self.lot
        return max(self.qty_min, units)

    def _ticks_for_bps(self, bps: float, price: int) -> int:
        return int(bps * 1e-4 * price / self.tick)

    def init_book(self, start_ns: int) -> None:
        """Seed both sides with 30-200 levels of resting orders around the reference price
        (no sink calls: the initial book is state, not events)."""
        eng = self.engine
        sink, eng.sink = eng.sink, _mute
        try:
            self._init_levels(start_ns)
        finally:
            eng.sink = sink
        self.ps.note_top(start_ns)

    def _init_levels(self, start_ns: int) -> None:
        rng, eng, tick = self.rng, self.engine, self.tick
        half = max(1, self._ticks_for_bps(rng.uniform(0.2, 2.0), self.ref) // 2)
        gap_mean = max(1.0, 1.5e-4 * self.ref / tick)
        for side in (BID, ASK):
            price = self.ref - half * tick if side == BID else self.ref + half * tick
            for _ in range(rng.randint(MIN_LEVELS, 200)):
                if price < tick:
                    break
                for _ in range(rng.choice((1, 1, 2, 2, 3, 4))):
                    ts = start_ns - int(rng.uniform(0.0, 3600.0) * _NS)
                    eng.add(order_id(rng), side, price, self.draw_qty(), ts)
                step = max(1, int(rng.expovariate(1.0 / gap_mean))) * tick
                price = price - step if side == BID else price + step

    def act(self, t: int) -> list[TradeRec]:
        """Perform the pair's next action at ``t`` (a scheduled cancel or an arrival)."""
        cancels = self.cancels
        if cancels and (self.next_arrival is None or cancels[0][0] <= self.next_arrival):
            _, _, oid = heapq.heappop(cancels)
            if oid in self.engine.orders and self.ps.status in _ACTIVE:
                self.engine.cancel(oid)
            return []
        self.draw_arrival(t)
        status = self.ps.status
        if status not in _ACTIVE:
            return []
        eng = self.engine
        if status == "cancel_only":
            if eng.orders and self._random() < 0.5:
                self._cancel_random()
            return []
        keys = eng.keys
        if len(keys[BID]) < MIN_LEVELS:
            self._replenish(BID, t)
            return []
        if len(keys[ASK]) < MIN_LEVELS:
            self._replenish(ASK, t)
            return []
        u = self._random()
        if u < P_TAKER and status != "post_only":
            return self._take(t, force_limit=status == "limit_only")
        if u < P_TAKER + P_AMEND:
            self._amend(t)
            return []
        self._add(t)
        return []

    def _cancel_random(self) -> None:
        rng, eng = self.rng, self.engine
        side = BID if rng.random() < 0.5 else ASK
        n = eng.level_count(side)
        if not n:
            return
        level = eng.levels[side][eng.keys[side][rng.randrange(n)]]
        eng.cancel(rng.choice(list(level.orders)))

    def _replenish(self, side: int, t: int) -> None:
        rng, eng, tick = self.rng, self.engine, self.tick
        keys = eng.keys[side]
        if keys:
            worst = keys[-1] if side == ASK else -keys[-1]
            step = max(1, int(rng.expovariate(1.0 / max(1.0, 1.5e-4 * self.ref / tick)))) * tick
            price = worst - step if side == BID else worst + step
        else:
            opp = eng.best_price(1 - side)
            base = opp if opp is not None else self.ps.last_price
            price = base - tick if side == BID else base + tick
        if price < tick:
            return
        eng.add(order_id(rng), side, price, self.draw_qty(), t)

    def _add(self, t: int) -> None:
        eng, tick, random_ = self.engine, self.tick, self._random
        keys = eng.keys  # MIN_LEVELS guarantees both sides are non-empty
        if random_() < 0.5:
            side, sign = BID, -1  # sign: direction "behind the touch"
            best, opp = -keys[BID][0], keys[ASK][0]
        else:
            side, sign = ASK, 1
            best, opp = keys[ASK][0], -keys[BID][0]
        u = random_()
        deep = False
        spread = (opp - best) * -sign // tick  # ticks between the touches (>= 1)
        if u < P_IMPROVE and spread >= 2:
            price = best - sign * (1 + _below(self._getrandbits, spread - 1)) * tick
        elif u < P_IMPROVE + P_DEEP:
            deep = True
            bps = _exp(_LOG_DEEP_MIN + _LOG_DEEP_SPAN * random_())
            price = best + sign * max(1, int(bps * 1e-4 * best / tick)) * tick
        else:
            bps = -_log(1.0 - random_()) / _ADD_LAMBDA
            price = best + sign * int(bps * 1e-4 * best / tick) * tick
        if price < tick:
            return
        oid = order_id(self.rng)
        eng.add(oid, side, price, self.draw_qty(), t)
        if deep:
            life = _lognormal(random_, _LOG_DEEP_LIFETIME, 1.0)
        else:
            life = _lognormal(random_, _LOG_LIFETIME, LIFETIME_SIGMA)
        # schedule_cancel, inlined
        self.cancel_seq += 1
        dt = int(min(life * self.lifetime_scale, _MAX_LIFETIME_S) * _NS) + 1
        heapq.heappush(self.cancels, (t + dt, self.cancel_seq, oid))

    def _amend(self, t: int) -> None:
        rng, eng, tick = self.rng, self.engine, self.tick
        side = BID if rng.random() < 0.5 else ASK
        n = min(10, eng.level_count(side))
        if not n:
            return
        level = eng.levels[side][eng.keys[side][rng.randrange(n)]]
        order = rng.choice(list(level.orders.values()))
        if rng.random() < 0.2:
            # price change by 1-3 ticks, never crossing
            new_price = order.price + rng.choice((-3, -2, -1, 1, 2, 3)) * tick
            opp = eng.best_price(1 - side)
            if new_price < tick or (opp is not None and (new_price >= opp if side == BID else new_price <= opp)):
                return
            eng.amend(order.order_id, order.qty, new_price, t)
            return
        new_qty = int(order.qty * rng.uniform(0.3, 0.95))
        new_qty -= new_qty % self.lot
        if new_qty < self.qty_min or new_qty >= order.qty:
            return
        eng.amend(order.order_id, new_qty, None, t)

    def _take(self, t: int, *, force_limit: bool) -> list[TradeRec]:
        rng, eng = self.rng, self.engine
        side = BID if rng.random() < 0.5 else ASK  # taker side
        opp = 1 - side
        # size: the first 1 + geometric(mean 1.5) makers in priority order, last one maybe partial
        want = 1
        while rng.random() < 0.6 and want < 40:
            want += 1
        qty = 0
        limit = 0
        for level in eng.top(opp, 8):
            for o in level.orders.values():
                qty += o.qty
                limit = level.price
                want -= 1
                if not want:
                    break
            if not want:
                break
        if not qty:
            return []
        if rng.random() < 0.5:
            part = int(qty * rng.uniform(0.5, 1.0))
            part -= part % self.lot
            qty = max(self.lot, part)
        ord_type = "limit" if force_limit or rng.random() >= P_MARKET else "market"
        if ord_type == "limit" and rng.random() < 0.1:
            qty += self.draw_qty()  # remainder rests at the limit
        taker = order_id(rng)
        fills, rest = eng.execute(taker, side, qty, limit if ord_type == "limit" else None, t)
        if rest is not None:
            self.schedule_cancel(t, rest.order_id,
                                 _lognormal(self._random, _LOG_LIFETIME, LIFETIME_SIGMA)
                                 * self.lifetime_scale)
        return self.on_fills(t, fills, side, ord_type, taker)

    def on_fills(self, t: int, fills: list, side: int, ord_type: str, taker: str) -> list[TradeRec]:
        """Record the fills of one taker order (trade ids, history, bars, truth)."""
        eng = self.engine
        recs: list[TradeRec] = []
        m = self.market
        tside = "buy" if side == BID else "sell"
        ps = self.ps
        for f in fills:
            tid = self.trade_id
            self.trade_id += 1
            rec = ps.record_trade(tid, t, f.price, f.qty, tside, ord_type)
            recs.append(rec)
            m._truth.append(TradeEvent(t, self.symbol, tid, eng.price_text(f.price),
                                       ps.qtext(f.qty), tside, ord_type, f.maker_id, taker))
        if recs:
            for interval in OHLC_INTERVALS:
                bar = ps.bars[interval][-1]
                m._truth.append(BarUpdated(t, self.symbol, interval, bar.begin_ns,
                                           ps.ptext(bar.open), ps.ptext(bar.high),
                                           ps.ptext(bar.low), ps.ptext(bar.close),
                                           ps.ptext(bar.vwap()), ps.qtext(bar.volume), bar.trades))
        return recs


def _mute(code: int, order: Order, level: Level, rank: int, flag: bool) -> None:
    return None


def _activity_order(pairs: Iterable[Any], seed: int) -> list[str]:
    """Symbols from busiest to idlest: well-known bases quoted in USD/EUR first, then a seeded
    shuffle of the rest."""
    rng = random.Random(f"sim-activity:{seed}")
    scored = []
    for p in pairs:
        base, quote = p.base, p.quote
        busy = _BUSY_BASES.index(base) if base in _BUSY_BASES else None
        if busy is not None and quote in ("USD", "EUR", "USDT"):
            score = busy + (0 if quote == "USD" else 10 if quote == "EUR" else 20)
        else:
            score = 100.0 + rng.random()
        scored.append((score, p.symbol))
    scored.sort()
    return [s for _, s in scored]


class SpotMarket:
    """All spot pairs of a universe, their generators, ground truth and feed views.

    ``rate`` scales every pair's activity (0 = frozen books). ``start_ns`` is the exchange time
    at construction: the initial books are built then and :meth:`advance` moves forward from it.
    """

    def __init__(self, universe: Any, *, seed: int, rate: float = 1.0, start_ns: int) -> None:
        self.seed = seed
        self.rate = rate
        self.universe = universe
        self.now = Now(start_ns)
        self._truth: list[SimEvent] = []
        self._out: list[tuple[FeedKey, str]] = []
        self._views: dict[FeedKey, View] = {}
        self._pairs: dict[str, _Pair] = {}
        self._order: list[_Pair] = []
        self._heap: list[tuple[int, int]] = []
        self._assets: list[dict] = [dict(a) for a in universe.assets]
        ranking = _activity_order(universe.pairs, seed)
        rank_of = {s: i for i, s in enumerate(ranking)}
        for spec in universe.pairs:
            self._add_pair(spec, rank_of[spec.symbol])

    # ---------------------------------------------------------------- pairs

    def _add_pair(self, spec: Any, rank: int) -> _Pair:
        activity = self.rate * max(TOP_RATE / (rank + 1) ** ZIPF_S, IDLE_RATE)
        pair = _Pair(self, spec, len(self._order), activity)
        self._pairs[pair.symbol] = pair
        self._order.append(pair)
        pair.init_book(self.now.ns)  # state, not events: built with the engine's sink muted
        pair.draw_arrival(self.now.ns)
        self._push(pair)
        return pair

    def _push(self, pair: _Pair) -> None:
        t = pair.next_time()
        if t is not None:
            heapq.heappush(self._heap, (t, pair.index))

    def _pair(self, symbol: str) -> _Pair:
        pair = self._pairs.get(symbol)
        if pair is None:
            raise MarketError(f"unknown pair {symbol!r}")
        return pair

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._pairs)

    def engine(self, symbol: str) -> PairEngine:
        """The matching engine of ``symbol`` (read-only use: tests, REST)."""
        return self._pair(symbol).engine

    def activity(self, symbol: str) -> float:
        """Mean actions per second of ``symbol`` outside bursts."""
        return self._pair(symbol).activity

    # ---------------------------------------------------------------- time

    def advance(self, until_ns: int) -> list[SimEvent]:
        """Run every action with time ``<= until_ns``; returns the ground truth since the last
        call in time order. Update frames are collected for :meth:`updates`."""
        heap = self._heap
        order = self._order
        now = self.now
        out = self._out
        while heap and heap[0][0] <= until_ns:
            t, idx = heapq.heappop(heap)
            pair = order[idx]
            now.set(t)
            ps = pair.ps
            trades = pair.act(t)
            if ps.top_moved:
                ps.top_moved = False
                ps.note_top(t)
            if ps.dirty:  # some book view queued output (see PairState.dirty)
                ps.dirty = False
                for view in ps.book_views:
                    text = view.flush()
                    if text is not None:
                        out.append((view.key, text))
            if trades:
                for tv in ps.trade_views:
                    text = tv.on_trades(trades)
                    if text is not None:
                        out.append((tv.key, text))
            for bv in ps.bbo_views:
                text = bv.on_bbo()
                if text is not None:
                    out.append((bv.key, text))
            nt = pair.next_time()
            if nt is not None:
                heapq.heappush(heap, (nt, idx))
        if until_ns > now.ns:
            now.set(until_ns)
        truth = self._truth
        self._truth = []
        return truth

    @property
    def now_ns(self) -> int:
        """Exchange time of the last action or ``advance`` target."""
        return self.now.ns

    # ---------------------------------------------------------------- subscriptions

    def _make_view(self, key: FeedKey) -> View:
        if not isinstance(key, tuple) or not key:
            raise MarketError(f"bad feed key {key!r}")
        channel = key[0]
        if channel == "instrument":
            if len(key) != 1:
                raise MarketError(f"bad feed key {key!r}")
            return InstrumentView(key, self._instrument_data)
        if len(key) < 2:
            raise MarketError(f"bad feed key {key!r}")
        pair = self._pair(key[1])
        ps = pair.ps
        if channel == "level3" and len(key) == 3 and key[2] in L3_DEPTHS:
            view: View = L3View(key, ps, key[2])
            ps.book_views.append(view)  # type: ignore[arg-type]
        elif channel == "book" and len(key) == 3 and key[2] in BOOK_DEPTHS:
            view = BookView(key, ps, key[2])
            ps.book_views.append(view)  # type: ignore[arg-type]
        elif channel == "trade" and len(key) == 2:
            view = TradeView(key, ps)
            ps.trade_views.append(view)  # type: ignore[arg-type]
        elif channel == "ohlc" and len(key) == 3 and key[2] in OHLC_INTERVALS:
            view = OhlcView(key, ps, key[2])
            ps.trade_views.append(view)  # type: ignore[arg-type]
        elif channel == "ticker" and len(key) == 3 and key[2] in ("trades", "bbo"):
            tv = TickerView(key, ps, key[2])
            if key[2] == "bbo":
                ps.bbo_views.append(tv)
            else:
                ps.trade_views.append(tv)
            view = tv
        else:
            raise MarketError(f"bad feed key {key!r}")
        return view

    def subscribe(self, key: FeedKey, *, snapshot: bool = True) -> list[str]:
        """Activate (or add a reference to) the view of ``key``; returns the snapshot frame(s)
        for a new subscriber at the current state, or ``[]`` when ``snapshot`` is False.
        The snapshot reflects every frame already produced: drain :meth:`updates` (and deliver
        those frames to the *existing* subscribers) before calling this, and give the new
        subscriber only frames from later :meth:`updates` calls.
        Raises :class:`MarketError` for unknown symbols or invalid keys."""
        view = self._views.get(key)
        if view is None:
            view = self._make_view(key)
            self._views[key] = view
        view.refs += 1
        return [view.snapshot()] if snapshot else []

    def unsubscribe(self, key: FeedKey) -> None:
        """Drop one reference to ``key``; the view stops when none is left (no-op if inactive)."""
        view = self._views.get(key)
        if view is None:
            return
        view.refs -= 1
        if view.refs > 0:
            return
        del self._views[key]
        if key[0] == "instrument":
            return
        ps = self._pairs[key[1]].ps
        for group in (ps.book_views, ps.trade_views, ps.bbo_views):
            if view in group:
                group.remove(view)  # type: ignore[arg-type]

    def active_keys(self) -> list[FeedKey]:
        return list(self._views)

    def updates(self) -> list[tuple[FeedKey, str]]:
        """Update frames produced since the last call, in order (drained)."""
        out = self._out
        self._out = []
        return out

    # ---------------------------------------------------------------- instruments

    def _pair_wire_json(self, pair: _Pair) -> str:
        from recorder.sim.universe import encode_wire

        return encode_wire(pair.ps.wire)

    def _instrument_data(self) -> str:
        from recorder.sim.universe import encode_wire

        assets = ",".join(encode_wire(a) for a in self._assets)
        pairs = ",".join(self._pair_wire_json(p) for p in self._order)
        return f'{{"assets":[{assets}],"pairs":[{pairs}]}}'

    def _instrument_update(self, pair: _Pair) -> None:
        if ("instrument",) in self._views:
            self._out.append((("instrument",), InstrumentView.update(self._pair_wire_json(pair))))

    def set_pair_status(self, symbol: str, status: str) -> None:
        """Change a pair's status at the current time (truth event + ``instrument`` update).
        The generator follows it: ``cancel_only`` only cancels, ``post_only`` never takes,
        ``limit_only`` takes with limit orders only, ``maintenance``/``delisted``/... idle."""
        pair = self._pair(symbol)
        old = pair.ps.status
        pair.ps.status = status
        pair.ps.wire["status"] = status
        self._truth.append(PairStatusChanged(self.now.ns, symbol, status, old))
        self._instrument_update(pair)

    def list_pair(self, spec: Any) -> None:
        """List a new pair now (fresh book, least active rank); announces it on ``instrument``."""
        if spec.symbol in self._pairs:
            raise MarketError(f"pair {spec.symbol!r} already listed")
        pair = self._add_pair(spec, len(self._order))
        self._truth.append(InstrumentChanged(self.now.ns, spec.symbol, "listed"))
        self._instrument_update(pair)

    def delist_pair(self, symbol: str) -> None:
        """Delist a pair now: status ``delisted``, activity stops; announced on ``instrument``."""
        pair = self._pair(symbol)
        pair.ps.status = "delisted"
        pair.ps.wire["status"] = "delisted"
        self._truth.append(InstrumentChanged(self.now.ns, symbol, "delisted"))
        self._instrument_update(pair)

    def pair_status(self, symbol: str) -> str:
        return self._pair(symbol).ps.status

    # ---------------------------------------------------------------- REST data

    def depth(self, symbol: str, count: int) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]:
        """Top ``count`` L2 levels per side as ``(price_text, qty_text, ts_s)`` (ts = newest
        order of the level, epoch seconds), bids descending, asks ascending."""
        ps = self._pair(symbol).ps
        eng = ps.engine
        out = []
        for side in (BID, ASK):
            out.append([(lv.price_text, ps.qtext(lv.total),
                         max(o.ts_ns for o in lv.orders.values()) // _NS)
                        for lv in eng.top(side, count)])
        return out[0], out[1]

    def l3_orders(self, symbol: str, depth: int) -> tuple[list[tuple[str, str, str, int]], list[tuple[str, str, str, int]]]:
        """Top ``depth`` levels per side, every order as ``(price_text, qty_text, order_id,
        ts_ns)`` in queue order (REST ``Level3``)."""
        ps = self._pair(symbol).ps
        eng = ps.engine
        out = []
        for side in (BID, ASK):
            out.append([(lv.price_text, eng.qty_text(o), o.order_id, o.ts_ns)
                        for lv in eng.top(side, depth) for o in lv.orders.values()])
        return out[0], out[1]

    def trades_since(self, symbol: str, since_ns: int | None, count: int = 1000) -> list[RestTrade]:
        """Up to ``count`` trades with time > ``since_ns`` (oldest first); with ``since_ns``
        None, the ``count`` most recent. Only the last 1000 trades are kept."""
        ps = self._pair(symbol).ps
        recs = list(ps.trades)
        if since_ns is None:
            chosen = recs[-count:] if count > 0 else []
        else:
            chosen = [r for r in recs if r.t_ns > since_ns][:count]
        return [RestTrade(ps.engine.price_text(r.price), ps.qtext(r.qty), r.t_ns,
                          "b" if r.side == "buy" else "s", "m" if r.ord_type == "market" else "l",
                          r.trade_id) for r in chosen]

    def ohlc(self, symbol: str, interval: int) -> list[RestBar]:
        """The 721 most recent bars of ``interval`` minutes up to the current, still open one,
        one per interval as Kraken sends them: an interval without trades is a bar at the
        previous close with vwap 0, volume 0 and no trades. Bars start at the pair's first
        trade (only the current bar, at the last price, before it)."""
        ps = self._pair(symbol).ps
        if interval not in ps.bars:
            raise MarketError(f"bad interval {interval!r}")
        span = interval * 60 * _NS
        current = self.now.ns - self.now.ns % span
        kept = {b.begin_ns: b for b in ps.bars[interval]}
        first = min(kept) if kept else current
        begin = max(first, current - (_REST_BARS - 1) * span)
        before = [b for b in ps.bars[interval] if b.begin_ns < begin]
        close = before[-1].close if before else ps.last_price if not kept else kept[first].open
        zero_vwap, zero_qty = ps.ptext(0), ps.qtext(0)
        out: list[RestBar] = []
        for t in range(begin, current + 1, span):
            b = kept.get(t)
            if b is None:
                c = ps.ptext(close)
                out.append(RestBar(t // _NS, c, c, c, c, zero_vwap, zero_qty, 0))
                continue
            out.append(RestBar(t // _NS, ps.ptext(b.open), ps.ptext(b.high), ps.ptext(b.low),
                               ps.ptext(b.close), ps.ptext(b.vwap()), ps.qtext(b.volume),
                               b.trades))
            close = b.close
        return out

    def spreads(self, symbol: str) -> list[tuple[int, str, str]]:
        """The last 200 best bid/ask price changes as ``(t_ns, bid_text, ask_text)``, oldest
        first (REST ``Spread``)."""
        ps = self._pair(symbol).ps
        return [(t, ps.ptext(bid), ps.ptext(ask)) for t, bid, ask in ps.spreads]

    def rest_ticker(self, symbol: str) -> RestTicker:
        """REST ``Ticker`` inputs of ``symbol`` (see :class:`RestTicker`)."""
        ps = self._pair(symbol).ps
        bid_p, bid_q, ask_p, ask_q = ps.bbo()
        now = self.now.ns
        midnight = now - now % (86_400 * _NS)
        trades = ps.trades
        return RestTicker(
            ps.pp, ps.qp, bid_p, bid_q, ask_p, ask_q, ps.last_price,
            trades[-1].qty if trades else 0,
            TickerPeriod(*ps.period_stats(midnight)),
            TickerPeriod(*ps.period_stats(None)))

    def ticker(self, symbol: str) -> dict[str, Any]:
        """Ticker values as exact text: bid, bid_qty, ask, ask_qty, last, volume, vwap, low,
        high, open, trades24 (count of trades in the kept history within 24 h)."""
        ps = self._pair(symbol).ps
        bid_p, bid_q, ask_p, ask_q = ps.bbo()
        last, vol, vwap, low, high, open_ = ps.stats24()
        horizon = self.now.ns - 86_400 * _NS
        pt, qt = ps.ptext, ps.qtext
        return {
            "bid": pt(bid_p), "bid_qty": qt(bid_q), "ask": pt(ask_p), "ask_qty": qt(ask_q),
            "last": pt(last), "volume": qt(vol), "vwap": pt(vwap), "low": pt(low),
            "high": pt(high), "open": pt(open_),
            "trades24": sum(1 for r in ps.trades if r.t_ns > horizon),
        }

    def last_trade_id(self, symbol: str) -> int:
        """The id the next trade of ``symbol`` will get, minus one."""
        return self._pair(symbol).trade_id - 1

