"""The worker's run and stop paths on the task group (issue 18, section 1): a stop request
ends every part and commits once; a second request abandons the final commit (the journal
is durable and the next start re-derives it) and the run still returns normally; a failed
part's error reaches the supervisor unwrapped from its exception group."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from recorder.archive.store import ArchiveStore
from recorder.capture.config import load_config
from recorder.capture.service import Worker, WorkerSpec, failure_text
from recorder.capture.shards import ConnPlan, WorkerPlan
from recorder.pipeline.markers import ResyncRequested

OFFLINE = "ws://127.0.0.1:9"  # discard port: nothing listens, connections keep retrying


def _worker(tmp_path: Path) -> Worker:
    cfg = load_config(None, env={}, overrides={
        "venue": {"spot_ws": OFFLINE, "l3_ws": OFFLINE, "futures_ws": OFFLINE,
                  "spot_rest": "http://127.0.0.1:9", "futures_rest": "http://127.0.0.1:9"},
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
    from recorder.archive.session import ArchiveSession

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
