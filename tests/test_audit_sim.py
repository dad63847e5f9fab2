"""Must-show: on archives captured from ``recorder sim`` with a fault schedule, every injected
fault is a gap with the right cause and bounds (+-1 s), the quiet pair is quiet (not missing),
and the stretch with the recorder stopped is missing.

Two archives (see tests/audit_helpers.py): one built from ``recorder sim --record`` streams
with recorder markers (fast, deterministic), one captured live by ``recorder run``
(integration: about 70 s).
"""

from __future__ import annotations

import pytest

from recorder.audit.report import build_report
from recorder.audit.truth import reconcile
from tests.audit_helpers import S, Built, live_archive, record_archive


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return record_archive(tmp_path_factory.mktemp("audit-record"))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return live_archive(tmp_path_factory.mktemp("audit-live"))


def _faults_are_gaps(built: Built, expected_kinds: set[str]) -> dict:
    report = build_report(built.archive)
    rows = reconcile(built.truth, report["gaps"])
    kinds = {r["fault"] for r in rows if r["status"] != "not_a_gap"}
    assert expected_kinds <= kinds, kinds
    bad = [r for r in rows if r["status"] == "unmatched"]
    assert not bad, bad
    # one fault, one gap: a dropped connection (closed, or found silent by the watchdog and
    # closed) is one gap over every key it carried, a corrupted checksum one resnapshot
    for r in rows:
        if r["fault"] in ("close", "stall", "checksum"):
            assert len(r["gaps"]) == 1, r
    return report


def _stopped_is_missing(built: Built, report: dict, startup_ns: int = 0) -> None:
    """``startup_ns``: how long a launched recorder may take to journal its ProcessStart
    (the recorder is not recording before that, so the gap rightly extends over it)."""
    restarts = [g for g in report["gaps"] if g["cause"] == "process_restart"]
    assert len(restarts) == 1
    g = restarts[0]
    assert abs(g["effective_start_ns"] - built.stop_ns) <= S
    assert built.start_ns - S <= g["effective_end_ns"] <= built.start_ns + S + startup_ns
    # inside the stopped stretch nothing is covered, every key is missing
    inner = build_report(built.archive, lo=built.stop_ns + S, hi=built.start_ns - S)
    assert inner["channels"], "keys must still be listed for a stretch without data"
    for c in inner["channels"]:
        assert c["covered_ns"] == 0 and c["quiet_ns"] == 0, c
        assert c["missing_ns"] == c["window_ns"] > 0, c
    assert inner["summary"]["verified_coverage_pct"] == 0.0
    stopped = built.start_ns - built.stop_ns
    for c in report["channels"]:
        assert c["missing_ns"] >= stopped - 2 * S, c


def test_recorded_faults_are_gaps_and_stop_is_missing(recorded: Built) -> None:
    report = _faults_are_gaps(recorded, {"checksum", "drop", "close"})
    _stopped_is_missing(recorded, report)
    # a live checksum mismatch is evidence, not an unverified message
    assert report["verification"]["recorded_mismatches"] >= 2
    assert report["verification"]["failed"] == 0


@pytest.mark.integration
def test_live_capture_faults_are_gaps(live: Built) -> None:
    _faults_are_gaps(live, {"checksum", "drop", "close", "stall", "rest_limit", "token_reject"})


@pytest.mark.integration
def test_live_capture_quiet_pair_is_quiet_not_missing(live: Built) -> None:
    assert live.quiet_symbol and live.quiet_from_ns
    # from shortly after its market stopped until the recorder stopped
    lo, hi = live.quiet_from_ns + 3 * S, live.stop_ns - S
    report = build_report(live.archive, lo=lo, hi=hi, symbols=[live.quiet_symbol])
    chans = {c["channel"]: c for c in report["channels"]}
    assert {"book", "trade", "level3"} <= set(chans)
    for name in ("book", "trade", "ohlc"):
        c = chans[name]
        # quiet for most of the window; missing only where a gap says so (the spot close falls
        # inside it) or, briefly, where a resubscription's start inside a minute is placed
        # approximately (liveness has minute resolution), never because nothing arrived
        why = [(g["cause"], g["channel"], g["symbol"], g["effective_start_ns"] - lo,
                g["duration_s"]) for g in report["gaps"] if g["counts_as"] == "missing"]
        assert c["quiet_ns"] >= 0.6 * c["window_ns"], (c, why)
        assert c["missing_by_reason"]["not_alive"] == 0, c
        assert c["missing_by_reason"]["not_subscribed"] <= 0.25 * c["window_ns"], c
        assert c["state"] == "quiet", c
    # a busy pair over the same window is active, which is what makes the contrast meaningful
    busy = build_report(live.archive, lo=lo, hi=hi, symbols=["BTC/USD"])
    assert all(c["active_ns"] > c["quiet_ns"] for c in busy["channels"]
               if c["channel"] in ("book", "level3"))


@pytest.mark.integration
def test_live_capture_stopped_stretch_is_missing(live: Built) -> None:
    # the restart gap ends once the restarted recorder records: by the time it was seen capturing
    assert live.ready_ns is not None
    _stopped_is_missing(live, build_report(live.archive), startup_ns=live.ready_ns - live.start_ns)


@pytest.mark.integration
def test_live_capture_continuity_and_heal_counts_match_the_archive_and_truth(live: Built) -> None:
    """The report's figures, recomputed independently: trade-id holes against the sim's
    truth, REST-backfilled rows and resnapshots against the archive's own rows."""
    from recorder.query.api import Archive

    report = build_report(live.archive)
    with Archive(live.archive) as archive:
        trades = archive.sql("SELECT symbol, trade_id, source FROM raw_trades").collect()
        gaps = archive.sql("SELECT channel, symbol, healed_by FROM gaps").collect()
    have: dict[str, set[int]] = {}
    rest: dict[str, int] = {}
    for sym, tid, src in trades.iter_rows():
        have.setdefault(sym, set()).add(tid)
        rest[sym] = rest.get(sym, 0) + (src == 2)
    truth_ids: dict[str, set[int]] = {}
    for r in live.truth:
        if r.get("ev") == "trade":
            truth_ids.setdefault(r["symbol"], set()).add(int(r["trade_id"]))
    rows = {r["symbol"]: r for r in report["trades"]}
    assert set(rows) == set(have)
    assert sum(r["rest_trades"] for r in rows.values()) > 0  # the live trade drops were backfilled
    for sym, r in rows.items():
        ids = have[sym]
        assert (r["first_id"], r["last_id"], r["distinct_ids"]) == (min(ids), max(ids), len(ids))
        assert r["rest_trades"] == rest[sym]
        # every id the report calls missing is one the sim traded and the archive lacks
        absent = {i for i in truth_ids.get(sym, ()) if min(ids) <= i <= max(ids)} - ids
        assert r["missing_ids"] == len(absent), sym
    per_key = {(c["channel"], c["symbol"]): c for c in report["channels"]}
    want: dict[tuple[str, str], int] = {}
    for ch, sym, healed in gaps.iter_rows():
        if healed == "resnapshot" and (ch, sym) in per_key:
            want[(ch, sym)] = want.get((ch, sym), 0) + 1
    assert want and sum(want.values()) > 0  # the live checksum faults were resnapshotted
    for key, c in per_key.items():
        assert c["resnapshots"] == want.get(key, 0), key
