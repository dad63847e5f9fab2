"""The audit's pure core: interval arithmetic, the quiet/missing model, verdicts, truth
reconciliation. No archive, no I/O."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.audit import intervals as iv
from recorder.audit.coverage import (
    Gap,
    Thresholds,
    classify,
    combine_roots,
    day_verdict,
    gap_applies,
    gap_extent,
)
from recorder.audit.truth import reconcile

S = 1_000_000_000

spans = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=8)


def _points(a: list[tuple[int, int]]) -> set[int]:
    return {x for s, e in a for x in range(s, e)}


@settings(max_examples=300, deadline=None)
@given(spans, spans)
def test_interval_ops_match_point_sets(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> None:
    na, nb = iv.normalise(a), iv.normalise(b)
    pa, pb = _points(a), _points(b)
    assert _points(na) == pa
    assert all(x[1] < y[0] for x, y in zip(na, na[1:]))  # sorted, disjoint, not touching
    assert _points(iv.union(a, b)) == pa | pb
    assert _points(iv.intersect(na, nb)) == pa & pb
    assert _points(iv.subtract(na, nb)) == pa - pb
    assert iv.total(na) == len(pa)
    assert _points(iv.clip(na, 10, 30)) == {x for x in pa if 10 <= x < 30}
    buckets = iv.split_by(na, 0, 61, 7)
    assert buckets == [len({x for x in pa if k * 7 <= x < min(61, (k + 1) * 7)})
                       for k in range(len(buckets))]


@settings(max_examples=200, deadline=None)
@given(spans, spans, spans, spans, spans)
def test_classify_partitions_the_window(alive, dead, act, gaps, healed) -> None:
    b = classify((5, 55), alive, dead, act, gaps, healed)
    win = set(range(5, 55))
    cov, miss = _points(b.covered), _points(b.missing)
    assert cov | miss == win and not cov & miss
    assert _points(b.active) | _points(b.quiet) == cov
    assert not _points(b.active) & _points(b.quiet)
    reasons = [_points(b.not_subscribed), _points(b.not_alive), _points(b.in_gap)]
    assert set().union(*reasons) == miss
    assert sum(len(r) for r in reasons) == len(miss)
    assert cov == (_points(alive) & win) - _points(gaps)


def test_quiet_is_covered_not_missing() -> None:
    # subscribed on a live connection for the whole hour, data only in the first minute
    b = classify((0, 3600 * S), [(0, 3600 * S)], [], [(0, 60 * S)], [], [])
    assert iv.total(b.missing) == 0
    assert iv.total(b.active) == 60 * S and iv.total(b.quiet) == 3540 * S


def test_dead_connection_and_gap_are_missing_with_reasons() -> None:
    b = classify((0, 100), subscribed_alive=[(0, 40), (60, 100)], subscribed_dead=[(40, 60)],
                 activity=[(0, 100)], missing_gaps=[(80, 90)], healed_gaps=[(10, 20)])
    assert b.not_alive == [(40, 60)] and b.in_gap == [(80, 90)] and b.not_subscribed == []
    assert b.backfilled == [(10, 20)] and iv.total(b.covered) == 70


def _gap(**kw) -> Gap:
    base = dict(start_ns=100, end_ns=200, stream="spot", channel="book", symbol="BTC/USD",
                conn_id=7, cause="checksum_mismatch", healed_by="resnapshot")
    base.update(kw)
    return Gap(**base)


def test_gap_applies_scopes() -> None:
    keys = {7: {("level3", "BTC/USD")}}
    assert gap_applies(_gap(), ("book", "BTC/USD"), keys)
    assert not gap_applies(_gap(), ("book", "ETH/USD"), keys)
    assert not gap_applies(_gap(), ("trade", "BTC/USD"), keys)
    silence = _gap(channel="level3", symbol="*", cause="silence", stream="*")
    assert gap_applies(silence, ("level3", "BTC/USD"), keys)
    assert not gap_applies(silence, ("level3", "ETH/USD"), keys)  # not on that connection
    restart = _gap(channel="*", symbol="*", conn_id=0, cause="process_restart", stream="*")
    assert gap_applies(restart, ("ohlc", "ANY/PAIR"), keys)
    assert not gap_applies(_gap(stream="rest", channel="*", symbol="*", conn_id=0,
                                cause="rate_limit"), ("book", "BTC/USD"), keys)


def test_gap_extent_rules() -> None:
    assert gap_extent(_gap(), [], [], 10_000) == (100, 200)
    # unhealed: until the key's next epoch, else the end of the range
    assert gap_extent(_gap(end_ns=None), [50, 300], [], 10_000) == (100, 300)
    assert gap_extent(_gap(end_ns=None), [], [], 10_000) == (100, 10_000)
    # trade id jump: from the last good trade to detection (next epoch), not to the backfill
    tj = _gap(channel="trade", cause="trade_id_jump", end_ns=900, healed_by="rest_backfill")
    assert gap_extent(tj, [0, 150], [], 10_000) == (100, 150)
    # disconnect of a quiet key: the break is where its subscription ended
    dc = _gap(cause="disconnect", start_ns=100, end_ns=700)
    assert gap_extent(dc, [700], [650], 10_000) == (650, 700)
    assert gap_extent(_gap(cause="subscribe_failed", end_ns=None), [], [], 10_000) == (100, 100)


def test_trade_disconnect_ends_when_subscribed_and_alive_again() -> None:
    # a quiet pair: last trade at 100, connection 5 closed at 650, resubscribed on connection
    # 6 at 655, next trade (the pipeline's end of the row) only at 1500
    dc = _gap(channel="trade", cause="disconnect", start_ns=100, end_ns=1500, conn_id=5,
              healed_by="resubscribe")
    runs = [(5, 0, 650, True), (6, 655, 2000, True)]
    assert gap_extent(dc, [0, 1500], [650, 2000], 10_000, runs=runs) == (650, 655)
    assert gap_extent(dc, [0, 1500], [650, 2000], 10_000, runs=runs,
                      trades_missed=False) == (650, 655)
    # a trade_id hole across the disconnect: trades were missed, the row's end stands
    assert gap_extent(dc, [0, 1500], [650, 2000], 10_000, runs=runs,
                      trades_missed=True) == (650, 1500)
    # resubscribed on a dead connection first: the gap lasts until it is alive
    dead_first = [(5, 0, 650, True), (6, 655, 700, False), (6, 700, 2000, True)]
    assert gap_extent(dc, [], [], 10_000, runs=dead_first) == (650, 700)
    # never subscribed again: unchanged (open row ends at hi)
    open_row = _gap(channel="trade", cause="disconnect", start_ns=100, end_ns=None, conn_id=5)
    assert gap_extent(open_row, [], [650], 10_000, runs=[(5, 0, 650, True)]) == (650, 10_000)
    # overlapping placement inside the minute (new run placed before the old one's end)
    assert gap_extent(dc, [], [], 10_000,
                      runs=[(5, 0, 650, True), (6, 640, 2000, True)]) == (650, 650)
    # other channels keep the row's end: a book disconnect is healed by its resnapshot
    book = _gap(channel="book", cause="disconnect", start_ns=100, end_ns=1500, conn_id=5)
    assert gap_extent(book, [], [], 10_000, runs=runs) == (650, 1500)
    # a reused connection id in a later run counts as subscribed again
    assert gap_extent(dc, [], [], 10_000,
                      runs=[(5, 0, 650, True), (5, 900, 2000, True)]) == (650, 900)


def test_combine_roots_covers_where_any_root_covered() -> None:
    # one root: identity
    assert combine_roots([([(0, 100)], [(10, 20)])]) == ([(0, 100)], [(10, 20)])
    # root A gap 10-20 while root B covered 15-30: only 10-15 is missing
    alive, gaps = combine_roots([([(0, 100)], [(10, 20)]), ([(15, 30)], [])])
    b = classify((0, 100), alive, [], [], gaps, [])
    assert b.covered == [(0, 10), (15, 100)] and b.in_gap == [(10, 15)]
    # a gap of a root that was not subscribed still explains the missing time
    alive, gaps = combine_roots([([], [(50, 60)]), ([(0, 40)], [])])
    b = classify((0, 100), alive, [], [], gaps, [])
    assert b.in_gap == [(50, 60)] and b.not_subscribed == [(40, 50), (60, 100)]


def test_day_verdict_thresholds() -> None:
    th = Thresholds(available_pct=99.0, usable_pct=50.0)
    assert day_verdict([100.0, 99.5], th) == "available"
    assert day_verdict([100.0, 98.0], th) == "degraded"
    assert day_verdict([49.0, 10.0], th) == "missing"
    assert day_verdict([], th) == "missing"


def test_reconcile_requires_cause_and_bounds() -> None:
    gaps = [{"cause": "checksum_mismatch", "channel": "book", "symbol": "X", "start_ns": 0,
             "effective_start_ns": 10 * S + 300_000_000, "effective_end_ns": 12 * S},
            {"cause": "trade_id_jump", "channel": "trade", "symbol": "Y",
             "effective_start_ns": 20 * S, "effective_end_ns": 25 * S}]
    truth = [{"kind": "fault", "fault": "checksum", "t_ns": 10 * S, "channel": "book",
              "symbol": "X"},
             {"kind": "fault", "fault": "checksum", "t_ns": 15 * S, "channel": "book",
              "symbol": "X"},
             {"kind": "fault", "fault": "drop", "t_ns": 24 * S, "channel": "trade", "symbol": "Y"},
             {"kind": "fault", "fault": "drop", "t_ns": 24 * S, "channel": "trade", "symbol": "X"},
             {"kind": "fault", "fault": "status", "t_ns": 1, "channel": None, "symbol": "Y"},
             {"kind": "server", "t_ns": 0}]
    got = [r["status"] for r in reconcile(truth, gaps)]
    assert got == ["matched", "unmatched", "matched", "unmatched", "not_a_gap"]
