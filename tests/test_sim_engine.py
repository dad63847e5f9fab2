"""The single-pair matching engine: invariants, price-time priority, sink reports."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    EngineError,
    PairEngine,
)


def _engine(sink=None) -> PairEngine:
    return PairEngine("T/USD", 2, 4, tick=5, lot=10, sink=sink)


def test_price_time_priority_and_maker_price() -> None:
    eng = _engine()
    eng.add("A1", ASK, 1000, 100, 1)
    eng.add("A2", ASK, 1000, 50, 2)
    eng.add("A3", ASK, 995, 30, 3)
    eng.add("B1", BID, 990, 40, 4)
    fills, rest = eng.execute("T1", BID, 100, 1000, 5)
    assert [(f.maker_id, f.price, f.qty, f.maker_left) for f in fills] == [
        ("A3", 995, 30, 0), ("A1", 1000, 70, 30)]
    assert rest is None
    assert list(eng.best(ASK).orders) == ["A1", "A2"]
    assert eng.best(ASK).total == 80
    fills, rest = eng.execute("T2", BID, 200, 1000, 6)
    assert [f.maker_id for f in fills] == ["A1", "A2"]
    assert rest is not None and rest.price == 1000 and rest.qty == 120
    assert eng.best_price(BID) == 1000 and eng.best(ASK) is None
    eng.check()


def test_refuses_crossing_and_off_grid() -> None:
    eng = _engine()
    eng.add("A1", ASK, 1000, 100, 1)
    with pytest.raises(EngineError):
        eng.add("B1", BID, 1000, 10, 2)
    with pytest.raises(EngineError):
        eng.add("B2", BID, 992, 10, 2)  # off tick grid
    with pytest.raises(EngineError):
        eng.add("B3", BID, 990, 15, 2)  # off lot grid
    with pytest.raises(EngineError):
        eng.amend("A1", 100, 990, 3) if eng.add("B4", BID, 995, 10, 2) else None
    eng.check()


def test_sink_reports_ranks_and_level_flags() -> None:
    seen: list[tuple] = []
    eng = _engine(lambda code, o, lv, rank, flag: seen.append((code, o.order_id, lv.price, rank, flag)))
    eng.add("B1", BID, 990, 40, 1)
    eng.add("B2", BID, 995, 40, 2)
    eng.add("B3", BID, 990, 40, 3)
    eng.amend("B3", 20, None, 4)
    eng.amend("B1", 20, 985, 5)
    eng.execute("S1", ASK, 50, None, 6)
    eng.cancel("B3")
    assert seen == [
        (ADD, "B1", 990, 0, True),
        (ADD, "B2", 995, 0, True),
        (ADD, "B3", 990, 1, False),
        (AMEND, "B3", 990, 1, False),
        (MOVE_OUT, "B1", 990, 1, False),
        (MOVE_IN, "B1", 985, 2, True),
        (FILLED, "B2", 995, 0, True),
        (FILL, "B3", 990, 0, False),
        (CANCEL, "B3", 990, 0, True),
    ]
    eng.check()


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32))
def test_random_operations_match_naive_reference(seed: int) -> None:
    """Random adds/cancels/amends/takes agree with a naive list-based price-time book."""
    rng = random.Random(seed)
    eng = _engine()
    ref: list[list] = []  # [id, side, price, qty, seq]
    seq = 0
    for step in range(300):
        r = rng.random()
        bb, ba = eng.best_price(BID), eng.best_price(ASK)
        if r < 0.5 or not ref:
            side = rng.choice((BID, ASK))
            price = 5 * rng.randint(180, 220)
            if (side == BID and ba is not None and price >= ba) or (side == ASK and bb is not None and price <= bb):
                continue
            qty = 10 * rng.randint(1, 20)
            eng.add(f"O{step}", side, price, qty, step)
            seq += 1
            ref.append([f"O{step}", side, price, qty, seq])
        elif r < 0.7:
            victim = rng.choice(ref)
            eng.cancel(victim[0])
            ref.remove(victim)
        elif r < 0.8:
            victim = rng.choice(ref)
            new_qty = 10 * rng.randint(1, max(1, victim[3] // 10))
            eng.amend(victim[0], new_qty, None, step)
            victim[3] = new_qty
        else:
            side = rng.choice((BID, ASK))
            qty = 10 * rng.randint(1, 30)
            limit = None if rng.random() < 0.5 else 5 * rng.randint(180, 220)
            fills, rest = eng.execute(f"T{step}", side, qty, limit, step)
            makers = sorted(
                (o for o in ref if o[1] != side and (limit is None or (o[2] <= limit if side == BID else o[2] >= limit))),
                key=lambda o: (o[2] if side == BID else -o[2], o[4]),
            )
            left = qty
            expected = []
            for o in makers:
                if not left:
                    break
                take = min(left, o[3])
                left -= take
                o[3] -= take
                expected.append((o[0], o[2], take, o[3]))
                if o[3] == 0:
                    ref.remove(o)
            assert [(f.maker_id, f.price, f.qty, f.maker_left) for f in fills] == expected
            if left and limit is not None:
                seq += 1
                ref.append([f"T{step}", side, limit, left, seq])
                assert rest is not None and rest.qty == left
        eng.check()
        for side in (BID, ASK):
            expect = sorted((o for o in ref if o[1] == side), key=lambda o: (-o[2] if side == BID else o[2], o[4]))
            got = [(o.order_id, o.qty) for lv in eng.top(side, 10**6) for o in lv.orders.values()]
            assert got == [(o[0], o[3]) for o in expect]
