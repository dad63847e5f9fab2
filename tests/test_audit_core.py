"""The audit's pure core: interval arithmetic, the quiet/missing model, verdicts, truth
reconciliation. No archive, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.audit import intervals as iv
from recorder.audit.coverage import (
    EDGE_LIMIT_NS,
    Gap,
    RootRun,
    Thresholds,
    anchor_runs,
    classify,
    combine_roots,
    connection_drops,
    coverage_pct,
    day_verdict,
    edges,
    gap_applies,
    gap_extent,
    is_clean_stop,
    recording_runs,
)
from recorder.audit.expect import (
    ANY_CHANNEL,
    Expectation,
    ExpectError,
    expected_keys,
    parse_expect,
)
from recorder.audit.truth import reconcile
from recorder.pipeline.markers import STOP_REASON

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


@settings(max_examples=300, deadline=None)
@given(spans, spans, spans, spans, spans, spans, spans)
def test_classify_partitions_the_window(alive, dead, act, gaps, healed, up, down) -> None:
    b = classify((5, 55), alive, dead, act, gaps, healed, up, down)
    win = set(range(5, 55))
    cov, miss = _points(b.covered), _points(b.missing)
    st, sh = _points(b.startup), _points(b.shutdown)
    assert cov | miss | st | sh == win
    assert len(cov) + len(miss) + len(st) + len(sh) == len(win)  # disjoint
    assert _points(b.active) | _points(b.quiet) == cov
    assert not _points(b.active) & _points(b.quiet)
    reasons = [_points(b.not_subscribed), _points(b.not_alive), _points(b.in_gap)]
    assert set().union(*reasons) == miss
    assert sum(len(r) for r in reasons) == len(miss)
    assert cov == (_points(alive) & win) - _points(gaps)
    # a gap explains all it covers; the edges only what no gap explains
    assert _points(b.in_gap) == (win - cov) & _points(gaps)
    assert st <= _points(up) and sh <= _points(down) - st
    assert b.measured_ns == len(win) - len(st) - len(sh)


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
    # ... but where the lost trades were, once a REST backfill recovered them: one dropped
    # frame on a listening connection is a point, not the quiet pair's time since its last trade
    assert gap_extent(tj, [0, 150], [], 10_000, lost=(120, 125)) == (120, 125)
    assert gap_extent(tj, [0, 150], [], 10_000, lost=(50, 60)) == (100, 100)  # clock skew
    assert gap_extent(_gap(cause="subscribe_failed", end_ns=None), [], [], 10_000) == (100, 100)
    # a cause without a rule of its own (the list is open) keeps the row's bounds
    assert gap_extent(_gap(cause="unreadable_file", end_ns=400), [], [], 10_000) == (100, 400)


def test_disconnect_is_from_the_last_proof_to_the_next_acknowledgement() -> None:
    # a quiet pair: its last trade at 100; connection 5 delivered frames (heartbeats) until
    # 640 and dropped at 650; resubscribed on connection 6 at 655; the pipeline's row ends at
    # the next trade, 1500
    dc = _gap(channel="trade", cause="disconnect", start_ns=100, end_ns=1500, conn_id=5,
              healed_by="resubscribe")
    runs = [(5, 0, 650, True), (6, 655, 2000, True)]
    proof = {5: [10, 200, 640, 700]}  # 700: a later run that reused the connection id

    def last(conn: int, t: int) -> int | None:
        return max((x for x in proof.get(conn, []) if x <= t), default=None)

    assert gap_extent(dc, [0, 1500], runs, 10_000, last_proof=last) == (640, 655)
    # no frame known on the connection: from the disconnect itself, never the last trade
    assert gap_extent(dc, [0, 1500], runs, 10_000) == (650, 655)
    # resubscribed on a dead connection first: the gap lasts until it is alive
    dead_first = [(5, 0, 650, True), (6, 655, 700, False), (6, 700, 2000, True)]
    assert gap_extent(dc, [], dead_first, 10_000, last_proof=last) == (640, 700)
    # never subscribed again: the row's end, else the next epoch, else the range's end
    assert gap_extent(dc, [], [(5, 0, 650, True)], 10_000, last_proof=last) == (640, 1500)
    open_row = _gap(channel="trade", cause="disconnect", start_ns=100, end_ns=None, conn_id=5)
    assert gap_extent(open_row, [], [(5, 0, 650, True)], 10_000) == (650, 10_000)
    # any channel: a book disconnect ends at the acknowledgement, not at the later snapshot
    book = _gap(channel="book", cause="disconnect", start_ns=100, end_ns=1500, conn_id=5)
    assert gap_extent(book, [], runs, 10_000, last_proof=last) == (640, 655)
    # a reused connection id in a later run counts as subscribed again
    assert gap_extent(dc, [], [(5, 0, 650, True), (5, 900, 2000, True)], 10_000) == (650, 900)


def test_connection_drops_from_subscriptions_alone() -> None:
    # connection 5 carries trade A and B; it drops at 65 s (last frame 64 s), both come back on
    # connection 6 (A at 65.5 s, B at 66 s); connection 7 (ohlc A) only stops with the recorder
    # at 200 s (clean stop); connection 8 (book A) has a resnapshot on the same connection
    runs = {("trade", "A"): [(5, 0, 65 * S, True), (6, 65 * S + S // 2, 200 * S, True)],
            ("trade", "B"): [(5, S, 65 * S, True), (6, 66 * S, 200 * S, True)],
            ("ohlc", "A"): [(7, 0, 200 * S, True)],
            ("book", "A"): [(8, 0, 30 * S, True), (8, 30 * S + 5, 200 * S, True)]}
    run = RootRun(start_ns=0, end_ns=200 * S, stop_ns=200 * S, group_end_ns=200 * S)

    def last(conn: int, t: int) -> int | None:
        return 64 * S if conn == 5 and t >= 64 * S else None

    (d,) = connection_drops(runs, [run], last)
    assert (d.conn_id, d.cut_ns, d.start_ns) == (5, 65 * S, 64 * S)
    assert d.resumed == {("trade", "A"): 65 * S + S // 2, ("trade", "B"): 66 * S}
    assert d.extent(("trade", "B"), 10_000 * S) == (64 * S, 66 * S)
    # a drop 3 s before a clean stop is the stop; the end of a run that did not stop cleanly
    # (a crash: its process_restart row says why; or the end of the data) is not a drop either
    near_stop = RootRun(start_ns=0, end_ns=200 * S, stop_ns=68 * S)
    assert connection_drops(runs, [near_stop], last) == []
    assert connection_drops({("trade", "A"): [(5, 0, 200 * S, True)]},
                            [RootRun(start_ns=0, end_ns=200 * S)], last) == []
    # not subscribed again: resumed None, the gap runs to the end given
    (d,) = connection_drops({("trade", "A"): [(5, 0, 65 * S, True)],
                             ("book", "A"): [(8, 0, 200 * S, True)]},
                            [RootRun(start_ns=0, end_ns=200 * S)], last)
    assert d.resumed == {("trade", "A"): None}
    assert d.extent(("trade", "A"), 90 * S) == (64 * S, 90 * S)


def test_recorder_runs_start_up_and_shut_down() -> None:
    # a root: first proof at 2 s, last at 40 s, its process's last frame at 41 s, a crash
    # (process_restart 41 s -> 50 s), clean stop at 80 s
    proofs = [(2 * S, 10 * S), (10 * S, 40 * S), (50 * S, 60 * S), (60 * S, 81 * S)]
    runs = recording_runs(proofs, restarts=[(41 * S, 50 * S)], stops=[80 * S])
    assert [(r.start_ns, r.end_ns, r.stop_ns, r.restarted) for r in runs] == [
        (2 * S, 41 * S, None, False), (50 * S, 81 * S, 80 * S, True)]
    # against the range [0, 82 s): the unknown start of the first run is the range start (the
    # root's first proof is within the edge limit of it); the stop's shut-down may last to hi
    placed = anchor_runs(runs, 0, 82 * S)
    assert placed[0].start_ns == 0 and placed[1].start_ns == 50 * S
    assert placed[1].group_end_ns == 82 * S
    assert anchor_runs(runs, 0, 82 * S + EDGE_LIMIT_NS)[1].group_end_ns == 81 * S  # too far
    assert anchor_runs(runs, -EDGE_LIMIT_NS - S, 82 * S)[0].start_ns == 2 * S
    # a key acknowledged at 3 s, subscribed again after the restart at 52 s, stopped at 80 s
    key = [(1, 3 * S, 40 * S, True), (1, 52 * S, 80 * S, True)]
    up, down = edges(key, placed)
    assert up == [(0, 3 * S), (50 * S, 52 * S)] and down == [(80 * S, 82 * S)]
    b = classify((0, 82 * S), [(s, e) for _, s, e, _ in key], [], [], [(41 * S, 50 * S)], [],
                 up, down)
    assert b.in_gap == [(41 * S, 50 * S)] and b.not_subscribed == [(40 * S, 41 * S)]
    assert b.measured_ns == 82 * S - 7 * S
    # acknowledged later than the edge limit: that is not start-up, it is missing
    late = [(1, EDGE_LIMIT_NS + 5 * S, 80 * S, True)]
    assert edges(late, [RootRun(start_ns=0, end_ns=81 * S)])[0] == []


def test_nothing_measured_is_zero_percent_not_hundred() -> None:
    assert coverage_pct(0, 0) == 0.0 and coverage_pct(5, 10) == 50.0
    b = classify((0, 100), [], [], [], [], [])
    assert b.not_subscribed == [(0, 100)] and b.measured_ns == 100


def test_clean_stop_rows_are_not_gaps() -> None:
    assert is_clean_stop(_gap(cause="disconnect", detail=STOP_REASON))
    assert not is_clean_stop(_gap(cause="disconnect", detail="closed: no close frame"))
    assert not is_clean_stop(_gap(cause="checksum_mismatch", detail=STOP_REASON))


def test_expectations() -> None:
    assert parse_expect(None) == Expectation() and parse_expect("online").mode == "online"
    e = parse_expect("BTC/USD, book:ETH/USD,PF_XBTUSD")
    assert e.mode == "list" and e.symbols == ("BTC/USD", "PF_XBTUSD")
    assert e.keys == (("book", "ETH/USD"),)
    for bad in ("book:", ":X", ",,"):
        with pytest.raises(ExpectError):
            parse_expect(bad)
    have = {("book", "BTC/USD"), ("trade", "BTC/USD"), ("futures_book", "PF_XBTUSD")}
    chans = {"book", "trade", "futures_book"}
    # auto: online when instruments say which pairs were online, else what was recorded
    keys, mode = expected_keys(Expectation(), recorded=have, channels=chans, online=[])
    assert (keys, mode) == (have, "recorded")
    keys, mode = expected_keys(Expectation(), recorded=have, channels=chans,
                               online=["BTC/USD", "ETH/USD"],
                               sibling_keys={("trade", "ETH/USD")})
    assert mode == "online" and keys == have | {("book", "ETH/USD")}
    keys, _ = expected_keys(e, recorded=have, channels=chans, online=[])
    assert keys == have | {("book", "ETH/USD")}
    # --symbols: only those, and each is expected (on the channels of its kind)
    keys, _ = expected_keys(Expectation(mode="recorded"), recorded=have, channels=chans,
                            online=[], symbols=["NOPE/USD", "PF_NOPE"])
    assert keys == {("book", "NOPE/USD"), ("trade", "NOPE/USD"), ("futures_book", "PF_NOPE")}
    keys, _ = expected_keys(Expectation(mode="recorded"), recorded=set(), channels=set(),
                            online=[], symbols=["NOPE/USD"])
    assert keys == {(ANY_CHANNEL, "NOPE/USD")}


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


def test_reconcile_compares_durations_with_the_truth() -> None:
    close_t = 30 * S
    truth = [{"kind": "fault", "fault": "close", "t_ns": close_t, "endpoint": "spot",
              "channel": "trade", "symbol": None},
             {"kind": "connect", "t_ns": close_t + S // 4, "endpoint": "spot"},
             {"kind": "connect", "t_ns": close_t + 9 * S, "endpoint": "spot"}]
    one = {"cause": "disconnect", "channel": "trade", "symbol": "*",
           "effective_start_ns": close_t - S // 10, "effective_end_ns": close_t + S // 3,
           "duration_s": 0.433}
    (row,) = reconcile(truth, [one])
    assert row["status"] == "matched" and row["truth_duration_s"] == 0.25
    assert row["duration_ok"] is True and len(row["gaps"]) == 1
    # drawn 10 s long (e.g. backdated to the last trade): the cause matches, the duration not
    (row,) = reconcile(truth, [one | {"effective_end_ns": close_t + 10 * S}])
    assert row["status"] == "matched" and row["duration_ok"] is False
    # a gap on another channel of the endpoint is not this fault's
    (row,) = reconcile(truth, [one | {"channel": "book"}])
    assert row["status"] == "unmatched"
