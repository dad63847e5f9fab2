"""The worker's run and stop paths on the task group (issue 18, section 1): a stop request
ends every part and commits once; a second request abandons the final commit (the journal
is durable and the next start re-derives it) and the run still returns normally; a failed
part's error reaches the supervisor unwrapped from its exception group."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from aiohttp import web

from recorder.archive.session import ArchiveSession
from recorder.archive.store import ArchiveStore
from recorder.capture.config import load_config
from recorder.capture.service import Worker, WorkerSpec, failure_text
from recorder.capture.shards import ConnPlan, WorkerPlan
from recorder.capture.writer import writer_id
from recorder.pipeline.markers import BackfillStarted, ResyncRequested
from recorder.pipeline.signals import TradeIdGap
from tests.archive_helpers import trade_frame

OFFLINE = "ws://127.0.0.1:9"  # discard port: nothing listens, connections keep retrying


def _worker(tmp_path: Path, spot_rest: str = "http://127.0.0.1:9") -> Worker:
    cfg = load_config(None, env={}, overrides={
        "venue": {"spot_ws": OFFLINE, "l3_ws": OFFLINE, "futures_ws": OFFLINE,
                  "spot_rest": spot_rest, "futures_rest": "http://127.0.0.1:9"},
        "schedule": {"disk_min_free_bytes": 1, "disk_resume_free_bytes": 1},
        "connection": {"backoff_base_s": 0.05, "backoff_max_s": 0.2}},
        top_overrides={"archive_root": tmp_path / "archive", "host": "stop"})
    plan = WorkerPlan(index=0, connections=(
        ConnPlan(name="book-0", stream="spot", channel="book", symbols=("BTC/USD",), depth=10),))
    return Worker(WorkerSpec(cfg, plan, 1, "t"))


async def _started(worker: Worker) -> asyncio.Task[None]:
    task = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 60
    while worker.writer.stats.commits < 1 or worker.uptime_s() <= 0:
        assert time.monotonic() < deadline and not task.done(), task
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # connections attempt and fail at least once
    return task


def test_a_stop_request_ends_every_task_and_commits_once(tmp_path: Path) -> None:
    async def scenario() -> Worker:
        worker = _worker(tmp_path)
        task = await _started(worker)
        before = set(asyncio.all_tasks())
        worker.request_stop()
        await asyncio.wait_for(task, 30)
        left = {t for t in asyncio.all_tasks() - {asyncio.current_task()} if not t.done()}
        assert not left & before, left  # nothing of the worker outlives its run
        return worker

    worker = asyncio.run(scenario())
    state = ArchiveStore(worker.root).state
    assert state.commit == 2  # start + final
    assert worker.writer.session is None


def test_a_second_stop_request_abandons_the_final_commit(tmp_path: Path) -> None:
    async def scenario() -> Worker:
        worker = _worker(tmp_path)
        task = await _started(worker)
        worker.marker(ResyncRequested(channel="book", symbol="BTC/USD", reason="test"))
        worker.request_stop()
        worker.request_stop()
        await asyncio.wait_for(task, 30)  # returns normally (no os._exit, no CancelledError)
        return worker

    worker = asyncio.run(scenario())
    assert ArchiveStore(worker.root).state.commit == 1  # only the start commit
    session = ArchiveSession(worker.root, host="stop")
    assert session.start() >= 1  # the journaled marker, after the last commit: re-derived
    session.close("test")


def test_failure_text_names_the_error_inside_a_task_group() -> None:
    try:
        raise ExceptionGroup("unhandled errors in a TaskGroup", [OSError(28, "disk full")])
    except ExceptionGroup as exc:
        assert failure_text(exc) == "OSError: [Errno 28] disk full"


@pytest.mark.parametrize("second", [False, True])
def test_request_stop_is_idempotent_before_run(tmp_path: Path, second: bool) -> None:
    async def scenario() -> None:
        worker = _worker(tmp_path)
        worker.request_stop()
        if second:
            worker.request_stop()  # nothing to abandon yet: still harmless
        await asyncio.wait_for(worker.run(), 30)

    asyncio.run(scenario())


def read_rows(root: Path, dataset: str) -> list[dict[str, Any]]:
    """Every committed row of ``dataset`` in the archive at ``root``."""
    return [r for f in ArchiveStore(root).files(dataset) for r in pq.read_table(f).to_pylist()]


async def _trades_server(ids: range) -> tuple[web.AppRunner, str]:
    """A local REST ``Trades`` endpoint answering every request with one page of ``ids``."""
    rows = [["95000.1", "0.001", 1735689600.1 + i / 1000, "b", "m", "", i] for i in ids]
    body = json.dumps({"error": [], "result": {"XXBTZUSD": rows,
                                               "last": "1735689600200000000"}})

    async def trades(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/0/public/Trades", trades)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("committed", [True, False], ids=["in_state", "in_journal_tail"])
def test_a_killed_runs_unfinished_trade_backfill_is_finished_after_the_restart(
        tmp_path: Path, committed: bool) -> None:
    """kill -9 while a REST trade backfill was in flight: the restarted worker requests the
    still-open hole again (whether the killed run committed it or recovery re-derives it
    from the journal tail), fills it from REST and closes it as backfilled."""
    root = tmp_path / "archive" / writer_id("stop", 0)
    root.mkdir(parents=True)
    killed = ArchiveSession(root, host="stop")
    killed.start()
    now = time.time_ns()
    killed.write(trade_frame(now + 1, 100))
    assert killed.write(trade_frame(now + 2, 103)) == [
        TradeIdGap(symbol="BTC/USD", expected=101, got=103, recv_ns=now + 2)]
    killed.marker(BackfillStarted(symbol="BTC/USD", from_trade_id=101, to_trade_id=102))
    if committed:
        killed.deriver.commit()
    killed.journal.close()  # what a kill -9 leaves: the journal, no BackfillDone, no stop
    killed.deriver.release()

    async def scenario() -> Worker:
        runner, url = await _trades_server(range(95, 111))
        try:
            worker = _worker(tmp_path, spot_rest=url)
            task = await _started(worker)
            deadline = time.monotonic() + 60
            while worker.healing.backfilled_rows < 2:
                assert time.monotonic() < deadline and not task.done(), task
                await asyncio.sleep(0.05)
            worker.request_stop()
            await asyncio.wait_for(task, 30)
            return worker
        finally:
            await runner.cleanup()

    worker = asyncio.run(scenario())
    assert worker.healing.backfill_missing == 0
    trades = read_rows(worker.root, "trades")
    assert sorted((t["trade_id"], t["source"]) for t in trades) == [
        (100, 1), (101, 2), (102, 2), (103, 1)]  # the hole filled, nothing twice
    jumps = [g for g in read_rows(worker.root, "gaps") if g["cause"] == "trade_id_jump"]
    assert [(g["missing"], g["healed_by"]) for g in jumps] == [
        ("trade_id 101..102", "rest_backfill")]
