"""The cross-source rule (:mod:`recorder.query.cross`): FIX book states compared with the
WebSocket book that holds within the tolerance of each FIX message time. The real-archive
path (both sources recorded from ``recorder sim``) is tests/test_capture_fix_sim.py."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest

from recorder.query.cross import _State, compare_states

S = 10**9


def st(ts: int, until: int, bid: str, ask: str, *, epoch: int = 1, bq: str = "1",
       aq: str = "1") -> _State:
    return _State(ts, until, ts, epoch, ((D(bid), D(bq)),), ((D(ask), D(aq)),))


def summary() -> dict[str, Any]:
    return {"epochs_compared": 0, "comparisons": 0, "skipped": 0, "disagreements": 0,
            "rows": 0, "first_ns": None, "last_ns": None}


def run(ws: list[_State], fx: list[_State], tol: int = 0) -> tuple[list[dict[str, Any]],
                                                                  dict[str, Any]]:
    s = summary()
    rows = compare_states("BTC/USD", "book", ws, fx, -(2**62), 2**62, tol, s)
    return rows, s


def test_equal_books_agree_and_are_counted() -> None:
    ws = [st(10, 20, "100", "101"), st(20, 40, "100.5", "101")]
    fx = [st(10, 25, "100", "101", epoch=7), st(20, 30, "100.50", "101.0", epoch=7)]
    rows, s = run(ws, fx)
    assert rows == [] and s["comparisons"] == 2 and s["disagreements"] == 0
    assert s["epochs_compared"] == 1 and (s["first_ns"], s["last_ns"]) == (10, 20)


def test_a_difference_is_reported_per_level_with_its_kind() -> None:
    ws = [_State(10, 50, 5, 1, ((D("100"), D("1")), (D("99"), D("2"))), ((D("101"), D("1")),))]
    fx = [_State(10, 50, 6, 2, ((D("100"), D("1.5")),), ((D("102"), D("1")),))]
    rows, s = run(ws, fx)
    assert s["disagreements"] == 1 and s["rows"] == 3
    kinds = {(r["side"], r["level"]): r["kind"] for r in rows}
    assert kinds == {("bid", 1): "qty", ("bid", 2): "missing_fix", ("ask", 1): "price"}
    r = rows[0]
    assert (r["ws_epoch"], r["fix_epoch"], r["ws_recv_ns"], r["fix_recv_ns"]) == (1, 2, 5, 6)
    assert (r["ws_price"], r["ws_qty"], r["fix_price"], r["fix_qty"]) == ("100", "1", "100",
                                                                          "1.5")


def test_the_tolerance_absorbs_the_feeds_independent_timing() -> None:
    # the WebSocket stamps the change at 20, FIX at 21: equal within 1 ns of tolerance only
    ws = [st(10, 20, "100", "101"), st(20, 40, "100.5", "101")]
    fx = [st(10, 21, "100", "101"), st(21, 40, "100.5", "101")]
    assert run(ws, fx, tol=0)[1]["disagreements"] == 0  # at 21 the ws book is already new
    fx_early = [st(10, 19, "100", "101"), st(19, 40, "100.5", "101")]
    rows, s = run(ws, fx_early, tol=0)
    assert s["disagreements"] == 1 and rows[0]["time_ns"] == 19
    assert run(ws, fx_early, tol=1)[1]["disagreements"] == 0


def test_times_without_a_websocket_book_are_skipped_not_compared() -> None:
    ws = [st(10, 20, "100", "101"), st(40, 50, "100", "101", epoch=2)]  # a gap in [20, 40)
    fx = [st(15, 30, "100", "101"), st(30, 45, "99", "101"), st(45, 60, "100", "101")]
    rows, s = run(ws, fx)
    assert rows == [] and s["skipped"] == 1 and s["comparisons"] == 2


def test_several_fix_messages_at_one_time_compare_once_after_the_last() -> None:
    ws = [st(10, 50, "100", "101")]
    fx = [st(10, 10, "99", "101"), st(10, 50, "100", "101")]
    rows, s = run(ws, fx)
    assert rows == [] and s["comparisons"] == 1


@pytest.mark.parametrize("channel", ["futures_book", "ticker"])
def test_only_book_and_level3_are_compared(channel: str) -> None:
    from recorder.query.books import QueryError
    from recorder.query.cross import compare_sources

    with pytest.raises(QueryError):
        compare_sources(None, channel=channel)  # type: ignore[arg-type]
