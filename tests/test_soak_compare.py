"""The soak's pure comparison core and plan, with small hand-built inputs: a clean archive
passes, and each check fails on the defect it exists to catch."""

from __future__ import annotations

from typing import Any

import pytest

from recorder.sim.faults import FIX_KINDS, KINDS, parse_faults
from recorder.soak.compare import S, ArchiveFacts, compare, covers
from recorder.soak.schedule import ScheduleError, plan_soak

T0 = 1_000 * S


def gap(cause: str, start: int, end: int | None, channel: str = "trade", symbol: str = "A/USD",
        healed_by: str = "resnapshot", missing: str | None = None, detail: str | None = None,
        root: str = "h-w0", stream: str = "spot") -> dict[str, Any]:
    return {"cause": cause, "start_ns": start, "end_ns": end, "channel": channel, "symbol": symbol,
            "healed_by": healed_by, "missing": missing, "detail": detail, "root": root,
            "stream": stream}


def epoch(channel: str, symbol: str, start: int, ok: int = 5) -> dict[str, Any]:
    return {"channel": channel, "symbol": symbol, "start_ns": start, "epoch": start,
            "checksum_ok": ok}


def fault(kind: str, t: int, channel: str | None = None, symbol: str | None = None,
          **detail: Any) -> dict[str, Any]:
    return {"t_ns": t, "kind": "fault", "fault": kind, "channel": channel, "symbol": symbol,
            "endpoint": None, "detail": detail}


def clean() -> tuple[ArchiveFacts, list[dict[str, Any]], list[tuple[str, int, int]]]:
    """Trades 1..10 of A/USD one per second from T0+1 s; id 5 dropped live, backfilled; one
    checksum fault on the book healed and re-verified; one kill -9."""
    truth = [("A/USD", i, T0 + i * S) for i in range(1, 11)]
    trades = [{"symbol": "A/USD", "trade_id": i, "source": 1, "recv_ns": T0 + i * S}
              for i in range(1, 11) if i != 5]
    trades.append({"symbol": "A/USD", "trade_id": 5, "source": 2, "recv_ns": T0 + 7 * S})
    trades.append({"symbol": "A/USD", "trade_id": 4, "source": 2, "recv_ns": T0 + 7 * S})  # page overlap
    facts = ArchiveFacts(
        gaps=[gap("trade_id_jump", T0 + 4 * S, T0 + 7 * S, healed_by="rest_backfill",
                  missing="trade_id 5..5"),
              gap("checksum_mismatch", T0 + 3 * S, T0 + 4 * S, channel="book"),
              gap("process_restart", T0 + 8 * S, T0 + 9 * S, channel="*", symbol="*",
                  healed_by="restart", detail="crash")],
        trades=trades,
        epochs=[epoch("trade", "A/USD", T0), epoch("book", "A/USD", T0),
                epoch("book", "A/USD", T0 + 4 * S)],
        verify=[{"failed": 0, "checkpoints_failed": 0, "failures": []}],
        files_checked=3, messages=100, capture_end_ns=T0 + 20 * S)
    frame = '{"channel":"trade","type":"update","data":[{"symbol":"A/USD","trade_id":5}]}'
    faults = [fault("drop", T0 + 5 * S, "trade", "A/USD", frame=frame),
              fault("checksum", T0 + 3 * S + S // 2, "book", "A/USD"),
              fault("kill9", T0 + 8 * S + S // 2, root="h-w0"),
              fault("duplicate", T0 + 2 * S, "trade", "A/USD")]
    return facts, faults, truth


def test_clean_archive_passes() -> None:
    facts, faults, truth = clean()
    rep = compare(facts, faults, truth, edge_s=0)
    assert rep.ok, rep.misses
    assert rep.per_kind() == {"checksum": (1, 1, 1, True), "drop": (1, 1, 1, True),
                              "duplicate": (1, 1, 1, False), "kill9": (1, 1, 1, True)}
    assert rep.truth_trades_expected == 10 and not rep.missing_outside_gaps
    assert (rep.heals, rep.heals_verified) == (1, 1)
    assert (rep.backfill_expected, rep.backfill_present) == (1, 1)


def test_missing_trade_outside_gaps_is_a_miss_and_inside_is_not() -> None:
    facts, faults, truth = clean()
    facts.trades = [t for t in facts.trades if t["trade_id"] != 2]
    rep = compare(facts, faults, truth, edge_s=0)
    assert rep.missing_outside_gaps == [("A/USD", 2, T0 + 2 * S)]
    assert any("missing outside recorded gaps" in m for m in rep.misses)
    facts.gaps.append(gap("disconnect", T0 + 2 * S + S // 2, T0 + 3 * S))
    rep = compare(facts, faults, truth, edge_s=0)
    assert not rep.missing_outside_gaps and rep.missing_inside_gaps == 1 and rep.ok


def test_verify_failure_counts_as_missing_book_events() -> None:
    facts, faults, truth = clean()
    facts.verify = [{"failed": 1, "checkpoints_failed": 0,
                     "failures": [{"dataset": "book", "symbol": "A/USD", "epoch": T0 + 4 * S}]}]
    rep = compare(facts, faults, truth, edge_s=0)
    assert rep.verify_failed == 1
    # ... and the heal whose next epoch fails verification is not verified
    assert rep.heals_verified == 0 and len(rep.misses) == 2


def test_duplicate_live_trade_is_a_miss_but_rest_overlap_is_not() -> None:
    facts, faults, truth = clean()
    facts.trades.append({"symbol": "A/USD", "trade_id": 3, "source": 1, "recv_ns": T0 + 11 * S})
    rep = compare(facts, faults, truth, edge_s=0)
    assert rep.duplicate_trades == [("A/USD", 3)] and not rep.ok
    facts, faults, truth = clean()
    facts.duplicate_rows = {"book": 2, "level3": 0}
    rep = compare(facts, faults, truth, edge_s=0)
    assert rep.duplicate_rows == {"book": 2} and not rep.ok


def test_unreadable_file_is_a_miss() -> None:
    facts, faults, truth = clean()
    facts.unreadable = [("x.parquet", "ArrowInvalid: bad magic")]
    assert any("unreadable" in m for m in compare(facts, faults, truth, edge_s=0).misses)


def test_heal_without_verified_epoch_is_a_miss() -> None:
    facts, faults, truth = clean()
    facts.epochs = [e for e in facts.epochs if e["start_ns"] != T0 + 4 * S]
    rep = compare(facts, faults, truth, edge_s=0)
    assert rep.heals == 1 and rep.heals_verified == 0 and not rep.ok


def test_trade_not_backfilled_is_a_miss() -> None:
    facts, faults, truth = clean()
    facts.trades = [t for t in facts.trades if not (t["trade_id"] == 5 and t["source"] == 2)]
    rep = compare(facts, faults, truth, edge_s=0)
    assert rep.backfill_missing == [("A/USD", 5)]
    # id 5 lies inside the trade_id_jump gap: not "missing outside gaps", but not backfilled
    assert not rep.missing_outside_gaps and not rep.ok


@pytest.mark.parametrize("kind", ["checksum", "kill9", "drop"])
def test_undetected_fault_is_a_miss(kind: str) -> None:
    facts, faults, truth = clean()
    cause = {"checksum": "checksum_mismatch", "kill9": "process_restart",
             "drop": "trade_id_jump"}[kind]
    facts.gaps = [g for g in facts.gaps if g["cause"] != cause]
    if kind == "drop":  # the id is then simply missing: restore it as live to isolate the fault
        facts.trades = [t for t in facts.trades if t["trade_id"] != 5] + [
            {"symbol": "A/USD", "trade_id": 5, "source": 1, "recv_ns": T0 + 5 * S}]
    rep = compare(facts, faults, truth, edge_s=0)
    assert rep.per_kind()[kind][1] == 0
    assert any(m.startswith(f"fault {kind}") for m in rep.misses), rep.misses


def test_open_gap_with_resumed_coverage_is_recorded_with_a_warning() -> None:
    facts, faults, truth = clean()
    facts.gaps.append(gap("subscribe_failed", T0 + 2 * S, None, channel="*", healed_by="none",
                          detail="EAPI:Invalid token"))
    faults.append(fault("token_reject", T0 + 2 * S, "level3", "A/USD"))
    rep = compare(facts, faults, truth, edge_s=0)
    assert rep.ok and rep.per_kind()["token_reject"] == (1, 1, 1, True)
    assert rep.warnings and "left open" in rep.warnings[0]
    facts.epochs = [e for e in facts.epochs if e["start_ns"] <= T0 + 2 * S]
    rep = compare(facts, faults, truth, edge_s=0)
    assert rep.per_kind()["token_reject"] == (1, 1, 0, True) and not rep.ok


def test_delisted_symbol_with_later_book_rows_is_a_miss() -> None:
    facts, faults, truth = clean()
    facts.instruments = [{"symbol": "B/USD", "status": "delisted", "recv_ns": T0 + 2 * S}]
    faults.append(fault("delist", T0 + 2 * S, "instrument", "B/USD"))
    facts.book_last_recv = {"B/USD": T0 + 3 * S}
    assert compare(facts, faults, truth, edge_s=0).ok
    facts.book_last_recv = {"B/USD": T0 + 10 * S}
    assert not compare(facts, faults, truth, edge_s=0).ok


def test_covers_bounds() -> None:
    g = gap("silence", 10 * S, 20 * S)
    assert covers(g, 9 * S) and covers(g, 21 * S) and not covers(g, 8 * S - 1)
    assert covers(gap("x", 10 * S, None), 11 * S) and not covers(gap("x", 10 * S, None), 12 * S)


def test_plan_covers_every_kind_and_scales() -> None:
    pairs = [f"P{i}/USD" for i in range(30)]
    one, ten = plan_soak(1, pairs), plan_soak(10, pairs)
    assert one.kinds == ten.kinds == KINDS - FIX_KINDS  # the soak runs no FIX session
    assert one.kill_at_s and all(0 < t < one.duration_s for t in one.kill_at_s)
    assert len(ten.listed) == len(set(ten.delisted)) == 10
    assert not set(ten.delisted) & set(pairs[:4]) and not set(ten.status_changed) & set(pairs[:4])
    assert ten.duration_s == 600 and ten.disk_at_s > 540
    assert all(not ten.disk_at_s - 3 <= t <= ten.disk_at_s + ten.disk_s + 3 for t in ten.kill_at_s)
    parse_faults(ten.fault_spec)
    with pytest.raises(ScheduleError):
        plan_soak(0, pairs)
    with pytest.raises(ScheduleError):
        plan_soak(20, pairs)


def test_token_reject_recorded_on_the_gap_it_interrupted() -> None:
    """A token rejected while resubscribing to heal a checksum mismatch is recorded on that
    open gap (one gap per key): detected; an unrelated gap without the failure is not enough."""
    facts, faults, truth = clean()
    t = T0 + 3 * S + S // 2
    faults.append(fault("token_reject", t, "level3", "A/USD"))
    facts.gaps.append(gap("checksum_mismatch", t - S // 10, t + S, channel="level3",
                          detail="expected 1 computed 2; subscribe_failed: EAPI:Invalid token"))
    facts.epochs.append(epoch("level3", "A/USD", T0))
    facts.epochs.append(epoch("level3", "A/USD", t + S))
    rep = compare(facts, faults, truth, edge_s=0)
    assert rep.per_kind()["token_reject"] == (1, 1, 1, True), rep.misses
    facts.gaps[-1]["detail"] = "expected 1 computed 2"
    rep = compare(facts, faults, truth, edge_s=0)
    assert rep.per_kind()["token_reject"][1:3] == (0, 0) and not rep.ok


def test_number_faults_without_book_effect_are_reported_apart_not_excused_elsewhere() -> None:
    facts, faults, truth = clean()
    delete = fault("number", T0 + 2 * S, "level3", "A/USD", field="limit_price", old="1.5",
                   new="1.6", event="delete")
    futures = {**fault("number", T0 + 2 * S, "book", "PF_XBTUSD", field="price", old="9",
                       new="8"), "endpoint": "futures"}
    add = fault("number", T0 + 2 * S, "level3", "A/USD", field="limit_price", old="1.5",
                new="1.6", event="add")
    rep = compare(facts, [*faults, delete, futures], truth, edge_s=0)
    assert rep.ok, rep.misses
    assert rep.per_kind()["number (no effect)"] == (2, 0, 0, False)
    # an add (or an L2 level) changes the book: without a desync gap it is a miss
    rep = compare(facts, [*faults, add], truth, edge_s=0)
    assert any(m.startswith("fault number") for m in rep.misses), rep.misses


def test_a_dropped_book_update_undone_unseen_is_no_miss_unless_a_checksum_failed() -> None:
    facts, faults, truth = clean()
    drop = fault("drop", T0 + 12 * S, "book", "B/USD", frame='{"channel":"book"}')
    facts.epochs.append(epoch("book", "B/USD", T0))
    facts.book_last_recv = {"B/USD": T0 + 15 * S}
    rep = compare(facts, [*faults, drop], truth, edge_s=0)
    assert rep.ok, rep.misses
    assert rep.per_kind()["drop (no effect)"] == (1, 0, 0, False)
    # a book left wrong fails recorder verify: the drop is then a miss (and so is the failure)
    facts.verify = [{"failed": 1, "checkpoints_failed": 0,
                     "failures": [{"dataset": "book", "symbol": "B/USD", "epoch": T0}]}]
    rep = compare(facts, [*faults, drop], truth, edge_s=0)
    assert any(m.startswith("fault drop") for m in rep.misses), rep.misses
    # no book recorded after the drop: nothing shows it was undone
    facts.verify = [{"failed": 0, "checkpoints_failed": 0, "failures": []}]
    facts.book_last_recv = {"B/USD": T0 + 11 * S}
    rep = compare(facts, [*faults, drop], truth, edge_s=0)
    assert any(m.startswith("fault drop") for m in rep.misses), rep.misses
