"""The worker process's collector policy (recorder.capture.gcpolicy): the heap is frozen after
each commit cut, so a collection walks only what was allocated since; once per period the
next cut unfreezes instead, so a full collection can reclaim frozen reference cycles."""

from __future__ import annotations

import gc

import pytest

from recorder.capture.gcpolicy import YoungGc
from recorder.capture.writer import ArchiveWriter


@pytest.fixture(autouse=True)
def _restore_gc():
    yield
    gc.unfreeze()  # freezing is process-wide: leave the test process as it was


def test_freezes_after_each_cut_and_unfreezes_once_per_period():
    now = [0.0]
    policy = YoungGc(full_every_s=100.0, clock=lambda: now[0])
    gc.unfreeze()
    keep = [object() for _ in range(10)] + [[i] for i in range(1000)]
    policy.step()
    assert gc.get_freeze_count() >= 1000 and policy.freezes == 1
    now[0] = 99.0
    policy.step()
    assert policy.freezes == 2 and policy.unfreezes == 0
    now[0] = 100.0
    policy.step()  # the period is over: unfreeze, a full collection may reclaim cycles
    assert gc.get_freeze_count() == 0 and policy.unfreezes == 1
    now[0] = 150.0
    policy.step()  # a new period began at the unfreeze
    assert policy.freezes == 3 and policy.unfreezes == 1
    del keep


def test_a_cycle_frozen_before_a_collection_is_reclaimed_after_the_unfreeze():
    now = [0.0]
    policy = YoungGc(full_every_s=10.0, clock=lambda: now[0])

    class Node:
        pass

    gc.collect()
    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b  # a cycle: only the collector frees it
    policy.step()  # frozen before any collection saw it
    assert gc.collect() == 0  # out of the collector's reach while frozen
    now[0] = 10.0
    policy.step()
    assert gc.collect() >= 2


def test_bad_periods_are_refused():
    with pytest.raises(ValueError, match="full_every_s"):
        YoungGc(full_every_s=0)
    with pytest.raises(ValueError, match="freeze_every_s"):
        YoungGc(freeze_every_s=-1)


def test_run_steps_periodically_until_cancelled():
    import asyncio

    policy = YoungGc(freeze_every_s=0.01)

    async def main() -> None:
        task = asyncio.create_task(policy.run())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert policy.freezes >= 2


def test_the_writer_calls_the_policy_at_each_cut_with_the_collector_off(tmp_path):
    seen: list[bool] = []
    w = ArchiveWriter(tmp_path / "root", host="h", after_cut=lambda: seen.append(gc.isenabled()))
    w.open()
    try:
        assert gc.isenabled()
        pending = w.begin_commit()
        w.finish_commit(pending)
        assert seen == [False] and gc.isenabled()
    finally:
        w.close("test")
