"""What ``recorder run`` says (pure parts): the start-up block, the reasons ``/health`` gives
for what is not recorded, and when the supervisor gives up on a worker that fails the same way
at every start. The same behaviours through the real CLI against ``recorder sim``:
tests/test_capture_health.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recorder.capture.config import load_config
from recorder.capture.metrics import StatusBoard, health
from recorder.capture.service import failure_text
from recorder.capture.shards import plan
from recorder.capture.startup import (
    CPU_US_PER_MSG,
    JOURNAL_BYTES_PER_MSG,
    PARQUET_BYTES_PER_MSG,
    describe_plan,
    estimate_load,
)
from recorder.capture.supervisor import FailureStreak, failure_signature

NOW = 1_800_000_000.0


# ------------------------------------------------------------------ start-up block


def _cfg(**channels: Any) -> Any:
    return load_config(None, env={}, overrides={
        "channels": {"include": "BTC/*,ETH/*", "exclude": "*/EUR", **channels},
        "venue": {"spot_ws": "ws://venue.test/v2"}},
        top_overrides={"archive_root": Path("/srv/rec/archive")})


def test_estimate_is_the_plans_rate_times_the_measured_costs_per_message() -> None:
    plans = plan(["BTC/USD", "ETH/USD"], workers=2, level3_depth=None, book_depth=10,
                 trade=True, ohlc_interval=None, rates={"book": {"BTC/USD": 100.0, "ETH/USD": 50.0},
                                                        "trade": {"BTC/USD": 10.0, "ETH/USD": 0.0}})
    load = estimate_load(plans)
    assert load.msgs_per_s == pytest.approx(160.0)
    assert load.disk_bytes_per_day == pytest.approx(
        160.0 * (JOURNAL_BYTES_PER_MSG + PARQUET_BYTES_PER_MSG) * 86_400)
    assert load.cpu_cores == pytest.approx(160.0 * CPU_US_PER_MSG / 1e6)


def test_startup_block_says_what_this_run_records() -> None:
    cfg = _cfg(book_depth=25, ohlc_interval=5, futures_feeds="book,ticker")
    pairs = ["BTC/USD", "ETH/USD"]
    plans = plan(pairs, workers=2, level3_depth=None, book_depth=25, trade=True, ohlc_interval=5,
                 futures_products=["PF_XBTUSD"], futures_feeds=["book", "ticker"],
                 rates={"book": {"BTC/USD": 500.0, "ETH/USD": 500.0}})
    text = describe_plan(cfg, plans, online=700, pairs=pairs, products=["PF_XBTUSD"],
                         host="cap1", measured_rates=True, level3_off="needs API keys")
    lines = text.splitlines()
    assert lines[0].startswith("shard 1/1: 2 of 700 online pairs, 1 futures products, 2 workers")
    body = "\n".join(lines[1:])
    assert all(ln.startswith("  ") for ln in lines[1:])  # one indented block
    assert "spot ws://venue.test/v2" in body and "wss://ws-l3.kraken.com/v2" in body
    assert "https://api.kraken.com" in body and "https://futures.kraken.com" in body
    assert "BTC/USD, ETH/USD" in body and "include BTC/*, ETH/*" in body and "exclude */EUR" in body
    assert "level3 OFF (needs API keys)" in body
    assert "book depth 25 (2 pairs, 1 conn)" in body and "trade (2 pairs" in body
    assert "ohlc 5 min (2 pairs" in body and "book, ticker on 1 product: PF_XBTUSD" in body
    assert "/srv/rec/archive/ (cap1-w0 .. cap1-w1, one root per worker)" in body
    rate = estimate_load(plans).msgs_per_s
    assert f"~{rate:,.0f} msgs/s" in body
    gb = rate * (JOURNAL_BYTES_PER_MSG + PARQUET_BYTES_PER_MSG) * 86_400 / 1e9
    assert f"~{gb:.1f} GB/day on disk" in body
    assert "estimates" in body and "measured by the previous run" in body
    assert "BENCHMARKS.md" in body


def test_startup_block_with_defaults_says_the_rates_are_defaults() -> None:
    cfg = _cfg()
    plans = plan(["BTC/USD"], workers=1, level3_depth=10, book_depth=1000, trade=True,
                 ohlc_interval=1)
    text = describe_plan(cfg, plans, online=1, pairs=["BTC/USD"], products=[], host="h",
                         measured_rates=False)
    assert "level3 depth 10 (1 pairs, 1 conn)" in text and "book depth 1000" in text
    assert "default per-channel rates" in text and "futures" not in text.split("channels")[1]
    assert "(h-w0, one root per worker)" in text


# ------------------------------------------------------------------ crash loop


def test_identical_failures_in_a_row_within_the_window_trip_the_streak() -> None:
    s = FailureStreak(limit=3, window_s=60.0)
    assert not s.record("OSError: disk", 0.0)
    assert not s.record("OSError: disk", 5.0)
    assert s.record("OSError: disk", 10.0)


def test_a_different_failure_or_a_kill_starts_over() -> None:
    s = FailureStreak(limit=3, window_s=60.0)
    s.record("A", 0.0)
    s.record("A", 1.0)
    assert not s.record("B", 2.0)  # different error: a new streak of 1
    assert not s.record("B", 3.0)
    assert not s.record(None, 4.0)  # killed by a signal
    assert not s.record("B", 5.0) and not s.record("B", 6.0)
    assert s.record("B", 7.0)


def test_failures_spread_wider_than_the_window_never_trip() -> None:
    s = FailureStreak(limit=3, window_s=10.0)
    assert not any(s.record("A", t) for t in (0.0, 8.0, 16.0, 24.0, 32.0))
    assert FailureStreak(limit=0, window_s=10.0).record("A", 0.0) is False  # 0 = never


def test_failure_signature() -> None:
    assert failure_signature(1, "FileExistsError: x") == "FileExistsError: x"
    assert failure_signature(1, "") == "exit code 1"
    assert failure_signature(-9, "") is None and failure_signature(-9, "whatever") is None
    assert failure_text(FileExistsError(17, "File exists")) == "FileExistsError: [Errno 17] File exists"
    assert failure_text(RuntimeError()) == "RuntimeError"
    assert "\n" not in failure_text(ValueError("two\nlines"))


def test_crash_loop_settings_are_configurable_and_validated() -> None:
    cfg = load_config(None, env={"RECORDER_CRASH_LOOP_FAILURES": "3",
                                 "RECORDER_CRASH_LOOP_WINDOW_S": "120"})
    assert (cfg.crash_loop_failures, cfg.crash_loop_window_s) == (3, 120.0)
    assert load_config(None, env={}).crash_loop_failures == 5
    from recorder.capture.config import ConfigError

    with pytest.raises(ConfigError, match="crash_loop_window_s"):
        load_config(None, env={"RECORDER_CRASH_LOOP_WINDOW_S": "0"})


# ------------------------------------------------------------------ /health reasons


def _conn(name: str, *, connected: bool = True, error: str = "", retry_at: float | None = None,
          attempts: int = 0, url: str = "ws://venue.test/v2", dead: list[str] | None = None,
          ) -> dict[str, Any]:
    return {"name": name, "channel": name.split("-")[0], "connected": connected, "symbols": 2,
            "states": {}, "dead": dead or [], "messages": 0, "last_error": error, "url": url,
            "retry_at": retry_at, "attempts": attempts}


def _status(w: int, conns: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"worker": w, "pid": 100 + w, "time": NOW, "frames_in": 0, "bytes_in": 0,
            "connections": conns, "quarantined": [], "quarantine": [], "checksum_failures": 0,
            "resyncs": 0, "paused": False, "pause_reason": "", **extra}


def _board(workers: int = 1) -> StatusBoard:
    board = StatusBoard(workers)
    board.started = NOW - 100
    return board


def test_venue_unreachable_names_the_error_and_the_next_retry() -> None:
    board = _board(2)
    board.phase = "discovering"
    board.venue = {"url": "wss://ws.kraken.com/v2", "attempt": 3, "retry_at": NOW + 8,
                   "error": "gaierror: [Errno -3] Temporary failure in name resolution"}
    ok, report = health(board, NOW)
    assert not ok
    assert report["problems"] == [
        "venue unreachable: cannot read the pair list from wss://ws.kraken.com/v2: gaierror: "
        "[Errno -3] Temporary failure in name resolution; nothing is recorded until it answers; "
        "next retry at 08:00:08Z (in 8s) (attempt 4)"]
    assert [s["state"] for s in report["shards"]] == ["waiting for the pair list"] * 2
    assert not any("no status" in p for p in report["problems"])


def test_connections_down_are_grouped_with_their_error_and_retry() -> None:
    board = _board()
    refused = "ConnectionRefusedError: [Errno 111] Connect call failed"
    board.update(_status(0, [
        _conn("book-0", connected=False, error=refused, retry_at=NOW + 5, attempts=2),
        _conn("trade-0", connected=False, error=refused, retry_at=NOW + 3, attempts=4),
        _conn("level3-0", connected=False, url="ws://venue.test/l3/v2", retry_at=NOW + 30,
              attempts=1, error="auth refused: Kraken refused the API key for a level3 token "
                                "(/0/private/GetWebSocketsToken: EAPI:Invalid key)"),
        _conn("ohlc-0")]))
    ok, report = health(board, NOW)
    assert not ok
    assert (f"worker 0 book-0, trade-0: not connected to ws://venue.test/v2: {refused}; "
            "next retry at 08:00:03Z (in 3s) (attempt 5)") in report["problems"]
    assert any(p.startswith("worker 0 level3-0: not connected to ws://venue.test/l3/v2: auth "
                            "refused") and "EAPI:Invalid key" in p and "(in 30s)" in p
               for p in report["problems"]), report["problems"]
    assert not any("ohlc-0" in p for p in report["problems"])


def test_paused_capture_says_why_and_hides_the_closed_connections() -> None:
    board = _board()
    reason = "disk nearly full: 500 bytes free on /a/h-w0 (capture pauses below 1,000 ...)"
    board.update(_status(0, [_conn("book-0", connected=False, error="disk pressure: 500 bytes free")],
                         paused=True, pause_reason=reason))
    ok, report = health(board, NOW)
    assert not ok and f"worker 0: paused, nothing recorded: {reason}" in report["problems"]
    assert not any("not connected" in p for p in report["problems"])
    assert report["shards"][0]["state"] == "paused"


def test_quarantined_pairs_are_named_with_until_when() -> None:
    board = _board()
    board.update(_status(0, [_conn("book-0")], quarantined=["book:BTC/USD"], quarantine=[
        {"key": "book:BTC/USD", "until": NOW + 60, "reason": "checksum_mismatch"}]))
    ok, report = health(board, NOW)
    assert not ok
    assert report["problems"] == [
        "worker 0: 1 quarantined after repeated desyncs, not recorded until released: "
        "book:BTC/USD until 08:01:00Z (in 60s) (checksum_mismatch)"]


def test_an_exited_worker_says_its_error_and_its_restart_until_the_new_process_reports() -> None:
    board = _board()
    board.update(_status(0, [_conn("book-0")]))
    board.exits[0] = {"pid": 100, "code": 1, "error": "FileExistsError: [Errno 17] File exists",
                      "restart": 2, "restart_at": NOW + 4}
    ok, report = health(board, NOW)
    assert not ok and report["problems"] == [
        "worker 0: exited with code 1 (FileExistsError: [Errno 17] File exists); restart 2 at "
        "08:00:04Z (in 4s)"]
    assert report["shards"][0]["state"] == "exited"
    board.update({**_status(0, [_conn("book-0")]), "pid": 200})  # the restarted process
    ok, report = health(board, NOW)
    assert ok and report["problems"] == [] and report["shards"][0]["pid"] == 200


def test_a_crash_loop_stop_is_the_first_problem() -> None:
    board = _board()
    board.fatal = "worker 0 failed 5 times in a row at start, each time with: X"
    ok, report = health(board, NOW)
    assert not ok and report["problems"][0] == board.fatal
