"""``recorder sim --pregenerate``: the pre-generated market is the live market, frame for frame.

Every test drives a live :class:`SpotMarket` and a :class:`PregenMarket` (same universe, seed,
rate and start) through the same script of advances, subscribes, unsubscribes and instrument
changes, and compares what a subscriber receives: snapshots, then every update frame per key
(the server delivers a pre-generated frame only to the key's current subscribers, so the
comparison filters the same way), and the ground truth.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from recorder.sim.market import SpotMarket
from recorder.sim.pregen import STEP_NS, PregenError, PregenMarket, parse_channels, plan_start
from recorder.sim.universe import load_universe

START = 1_735_689_600_000_000_000
SEED = 3
RATE = 20.0
SHAPES = parse_channels("level3:10,book:10,trade,ohlc:1")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def universe() -> Any:
    return load_universe(None, pairs=8, futures_path=None, seed=SEED)


class _Subscriber:
    """What the subscribers of one market received, per key (snapshots and updates)."""

    def __init__(self, market: Any) -> None:
        self.market = market
        self.refs: dict[tuple, int] = defaultdict(int)
        self.got: dict[tuple, list[str]] = defaultdict(list)
        self.truth: list[Any] = []

    def step(self, t: int) -> None:
        self.truth.extend(self.market.advance(t))
        for key, frame in self.market.updates():
            if self.refs.get(key):
                self.got[key].append(frame)

    def subscribe(self, key: tuple) -> None:
        self.got[key].extend(self.market.subscribe(key))
        self.refs[key] += 1

    def unsubscribe(self, key: tuple) -> None:
        self.market.unsubscribe(key)
        self.refs[key] -= 1


def _run(universe: Any, script: dict[int, list[tuple[str, Any]]], *, steps: int,
         horizon_s: float, uneven: bool = True) -> tuple[_Subscriber, _Subscriber]:
    live = _Subscriber(SpotMarket(universe, seed=SEED, rate=RATE, start_ns=START))
    pre = _Subscriber(PregenMarket(universe, seed=SEED, rate=RATE, start_ns=START,
                                   horizon_s=horizon_s, shapes=SHAPES, keep_truth=True))
    for i in range(1, steps + 1):
        # uneven targets (off the slice grid) as the wall clock gives them: the pre-generated
        # market serves whole slices, i.e. up to the grid point at or before the target
        t = START + i * STEP_NS + ((i * 7919) % STEP_NS if uneven else 0)
        for sub in (live, pre):
            sub.step(t if sub is pre else START + i * STEP_NS)
            for op, arg in script.get(i, []):
                if op == "status":
                    sub.market.set_pair_status(*arg)
                else:
                    getattr(sub, op)(arg)
    for sub in (live, pre):  # a common end point (live, the targets are exact)
        sub.step(START + (steps + 1) * STEP_NS)
    return live, pre


def _assert_same(live: _Subscriber, pre: _Subscriber) -> None:
    assert set(live.got) == set(pre.got)
    for key in live.got:
        assert pre.got[key] == live.got[key], key
    assert pre.truth == live.truth
    assert sum(len(v) for v in live.got.values()) > 200  # the comparison covered real traffic


def test_late_subscribers_and_resnapshots_match_the_live_market(universe: Any) -> None:
    symbols = [p.symbol for p in universe.pairs]
    a, b = symbols[0], symbols[1]
    script = {
        1: [("subscribe", ("level3", a, 10)), ("subscribe", ("book", a, 10))],
        40: [("subscribe", ("level3", b, 10)), ("subscribe", ("trade", a)),
             ("subscribe", ("ohlc", a, 1)), ("subscribe", ("book", b, 10))],
        # a key outside the pre-rendered set: rendered live by the shadow
        90: [("subscribe", ("book", a, 25)), ("subscribe", ("ticker", b, "bbo"))],
        150: [("unsubscribe", ("level3", a, 10)), ("unsubscribe", ("book", a, 25))],
        151: [("subscribe", ("level3", a, 10))],  # resnapshot
        152: [("subscribe", ("book", a, 25)), ("subscribe", ("level3", a, 10))],  # 2nd ref
        220: [("unsubscribe", ("level3", a, 10))],
    }
    live, pre = _run(universe, script, steps=300, horizon_s=3.0)
    assert not pre.market.live
    _assert_same(live, pre)
    assert pre.got[("level3", a, 10)].count(pre.got[("level3", a, 10)][0]) == 1
    snapshots = [f for f in pre.got[("level3", a, 10)] if '"type":"snapshot"' in f]
    assert len(snapshots) == 3  # one per subscribe


def test_horizon_end_and_instrument_change_continue_live(universe: Any) -> None:
    symbols = [p.symbol for p in universe.pairs]
    a, b = symbols[0], symbols[2]
    script = {
        1: [("subscribe", ("level3", a, 10)), ("subscribe", ("book", b, 10)),
            ("subscribe", ("trade", a))],
    }
    live, pre = _run(universe, script, steps=250, horizon_s=0.6)  # ends at step 120
    assert pre.market.live and pre.market.live_reason == "horizon"
    _assert_same(live, pre)
    script = {
        1: [("subscribe", ("level3", a, 10)), ("subscribe", ("book", a, 10))],
        80: [("status", (a, "post_only"))],
        160: [("status", (a, "online"))],
    }
    # on the grid: once live, changes happen at the exact target, which must be the same
    live, pre = _run(universe, script, steps=250, horizon_s=3.0, uneven=False)
    assert pre.market.live and pre.market.live_reason == "instrument change"
    _assert_same(live, pre)


def test_serving_pre_rendered_keys_does_not_step_the_shadow(universe: Any) -> None:
    """Only keys outside the pre-rendered set make the shadow market run every step
    (``instrument`` does not: it changes only with instrument changes)."""
    a = universe.pairs[0].symbol
    live = _Subscriber(SpotMarket(universe, seed=SEED, rate=RATE, start_ns=START))
    pre = _Subscriber(PregenMarket(universe, seed=SEED, rate=RATE, start_ns=START,
                                   horizon_s=1.0, shapes=SHAPES))
    for sub in (live, pre):
        sub.subscribe(("instrument",))
        sub.subscribe(("level3", a, 10))
    for i in range(1, 100):
        for sub in (live, pre):
            sub.step(START + i * STEP_NS)
    assert pre.market.shadow.now_ns == START  # never stepped: no engine cost while serving
    assert pre.got == live.got
    pre.subscribe(("book", a, 25))
    pre.step(START + 100 * STEP_NS)
    pre.step(START + 101 * STEP_NS)
    assert pre.market.shadow.now_ns == START + 101 * STEP_NS


def test_rest_state_is_the_served_position(universe: Any) -> None:
    a = universe.pairs[0].symbol
    live = SpotMarket(universe, seed=SEED, rate=RATE, start_ns=START)
    pre = PregenMarket(universe, seed=SEED, rate=RATE, start_ns=START, horizon_s=2.0,
                       shapes=SHAPES)
    t = START + 137 * STEP_NS
    live.advance(t)
    pre.advance(t + STEP_NS - 1)  # same slice: served up to t
    assert pre.depth(a, 10) == live.depth(a, 10)
    assert pre.l3_orders(a, 10) == live.l3_orders(a, 10)
    assert pre.trades_since(a, None) == live.trades_since(a, None)
    assert pre.ohlc(a, 1) == live.ohlc(a, 1)
    assert pre.frames > 0 and not pre.live


def test_channel_spec_is_validated() -> None:
    assert parse_channels("book:25, trade,ticker:bbo") == (("book", 25), ("trade",),
                                                          ("ticker", "bbo"))
    for bad in ("", "book", "trade:1", "level3:x", "candles:1"):
        with pytest.raises(PregenError):
            parse_channels(bad)


def test_plan_start_is_in_the_future(universe: Any) -> None:
    clock = [START]
    start = plan_start(universe, seed=SEED, rate=RATE, horizon_s=2.0, shapes=SHAPES,
                       clock_ns=lambda: clock[0])
    assert start >= START + 1_000_000_000  # at least the fixed margin


def test_cli_serves_pregenerated_market_and_reports_it(tmp_path: Path) -> None:
    """``recorder sim --pregenerate`` starts, says so in its URL line, and refuses bad specs."""
    bad = subprocess.run([sys.executable, "-m", "recorder", "sim", "--port", "0", "--pairs", "4",
                          "--pregenerate", "2", "--pregenerate-channels", "book:x"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--pregenerate-channels" in bad.stderr
    proc = subprocess.Popen([sys.executable, "-m", "recorder", "sim", "--port", "0", "--pairs",
                             "6", "--pregenerate", "3"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        urls = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        assert urls["pregenerated"]["seconds"] == 3.0
        assert urls["pregenerated"]["keys"] == 6 * 4
        assert urls["pregenerated"]["start_late_s"] >= 0.0
        stats = asyncio.run(_get(urls["control"] + "/stats"))
        assert stats["pregen_live"] == 0
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0


async def _get(url: str) -> Any:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.json()
