"""The worker's event loop is never held by a commit (issue 18, section 1).

* :class:`~recorder.capture.looplag.LoopLagMonitor` measures how late the loop runs a timer;
* a worker capturing from the sim with commits every ~second and on size: every commit's slow
  half (journal flush, Parquet seal, state, manifest) runs in the commit thread, never on the
  loop's thread; the loop-thread part of a commit (the cut) costs <= 20 ms of that thread's
  CPU time (CPU time, so the figure does not depend on how busy the machine is), and the
  loop's measured lag stays under a generous bound; the archive verifies afterwards.
* the loop's own work stays bounded whatever else runs on the machine: with a 1 ms timer,
  the longest stall counted at most as the loop thread's CPU time between the two timer
  runs (``loop_cpu_max_s``; other processes and threads taking the CPU or the GIL do not
  add to it) stays <= 20 ms while commits of the buffered rows run, and the per-batch work that used
  to run on the loop never does: Arrow tables are built, and journal records compressed
  and written, only in other threads.
* commits are exactly once under the split: a failing commit hands its rows back and the
  next commit writes them (no row lost or doubled).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from recorder.capture.looplag import LAG_BUCKETS_S, LoopLagMonitor

#: The issue's bound on the loop time a commit may take (the median cut's CPU time)...
CUT_CPU_MAX_S = 0.020
#: ...and a guard on the longest (thread CPU time still grows on an overloaded machine).
CUT_CPU_WORST_S = 0.100
#: Loop lag from anything (other processes on 2 shared cores included): generous.
LAG_MAX_S = 1.0
#: The issue's bound on the loop's longest stall, applied to the loop's own work (CPU time).
LOOP_CPU_MAX_S = 0.020


def test_loop_lag_monitor_sees_a_blocked_loop() -> None:
    async def scenario() -> LoopLagMonitor:
        mon = LoopLagMonitor(interval_s=0.005)
        task = asyncio.create_task(mon.run())
        await asyncio.sleep(0.05)
        time.sleep(0.08)  # hold the loop's thread
        await asyncio.sleep(0.05)
        task.cancel()
        return mon

    mon = asyncio.run(scenario())
    assert mon.max_s >= 0.07, mon
    snap = mon.snapshot()
    assert snap["loop_lag_count"] == mon.count > 3
    buckets = dict((str(b), c) for b, c in snap["loop_lag_buckets"])
    assert buckets["+Inf"] == mon.count
    assert buckets[str(LAG_BUCKETS_S[4])] < mon.count  # the 80 ms stall is above 50 ms
    assert snap["loop_lag_window_max_s"] >= 0.07
    assert mon.snapshot()["loop_lag_window_max_s"] == 0.0  # a new window
    assert mon.max_committing_s == 0.0 and mon.max_idle_s == mon.max_s  # no probe: idle
    mon.record(0.5, committing=True)
    mon.record(0.2, committing=False)
    assert (mon.max_committing_s, mon.max_s) == (0.5, 0.5) and mon.max_idle_s < 0.5


def test_loop_cpu_counts_the_loops_own_work_not_waiting() -> None:
    """``loop_cpu_*``: 40 ms of CPU work on the loop is a stall of its own of >= 35 ms; 80 ms
    of the loop's thread not running (sleeping, as when another process or thread has the
    CPU or the GIL) is lag but not a stall of its own."""
    async def scenario(work: Any) -> LoopLagMonitor:
        mon = LoopLagMonitor(interval_s=0.001)
        task = asyncio.create_task(mon.run())
        await asyncio.sleep(0.02)
        work()
        await asyncio.sleep(0.02)
        task.cancel()
        return mon

    def spin() -> None:
        end = time.thread_time() + 0.040
        while time.thread_time() < end:
            pass

    busy = asyncio.run(scenario(spin))
    assert busy.cpu_max_s >= 0.035 and busy.snapshot()["loop_cpu_window_max_s"] >= 0.035
    idle = asyncio.run(scenario(lambda: time.sleep(0.08)))
    assert idle.max_s >= 0.07 and idle.cpu_max_s < 0.035, idle
    assert idle.snapshot()["loop_cpu_max_s"] == round(idle.cpu_max_s, 6)


@pytest.mark.integration
def test_commits_run_off_the_loop_under_capture_load(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from recorder.archive.commit import GilYield, PendingCommit
    from recorder.archive.journal import JournalWriter
    from recorder.archive.store import PartitionWriter
    from recorder.capture.config import load_config
    from recorder.capture.gcpolicy import YoungGc
    from recorder.capture.service import Worker, WorkerSpec
    from recorder.capture.shards import plan
    from recorder.capture.supervisor import discover_pairs
    from tests.test_capture_integration import Sim, verify

    finished_on: list[tuple[str, bool]] = []
    pauses: list[Any] = []  # what each finish got to let the loop have the GIL
    cuts: list[float] = []
    real_finish = PendingCommit.finish
    workers: list[Any] = []

    def spy(self: PendingCommit, pause: Any = None) -> None:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        finished_on.append((threading.current_thread().name, on_loop))
        pauses.append(pause)
        if workers:  # the cut of this commit (the next one waits for this finish)
            cuts.append(workers[0].writer.stats.commit_cut_cpu_s_last)
        real_finish(self, pause)

    monkeypatch.setattr(PendingCommit, "finish", spy)
    # which threads build Arrow tables and compress/write journal blocks (never the loop's,
    # apart from a journal roll, which ends the old segment: none happens here)
    loop_thread: list[int] = []
    work_on: dict[str, set[bool]] = {"arrow": set(), "journal": set()}

    def on_loop() -> bool:
        return bool(loop_thread) and threading.get_ident() == loop_thread[0]

    def spied(kind: str, real: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            work_on[kind].add(on_loop())
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(PartitionWriter, "_tables", spied("arrow", PartitionWriter._tables))
    # small batches, so that many reach the sink and the journal's compressor between two
    # commits of this light load (the paths the loop must never take)
    monkeypatch.setattr("recorder.capture.writer.CAPTURE_BATCH_ROWS", 256)
    monkeypatch.setattr("recorder.archive.journal._BATCH_BYTES", 4096)
    for name in ("_compress_raw", "_flush_offloaded", "_write_block"):
        monkeypatch.setattr(JournalWriter, name, spied("journal", getattr(JournalWriter, name)))
    sim = Sim(tmp_path, pairs=30, rate=4.0)
    try:
        u = sim.urls
        cfg = load_config(None, env={}, overrides={
            "venue": {"spot_ws": u["spot_ws"], "l3_ws": u["l3_ws"], "futures_ws": u["futures_ws"],
                      "spot_rest": u["rest"], "futures_rest": u["rest"]},
            "schedule": {"roll_minutes": 0.01, "roll_max_mb": 0.5, "disk_min_free_bytes": 1,
                         "disk_resume_free_bytes": 1},
            "connection": {"backoff_base_s": 0.2, "backoff_max_s": 0.5}},
            top_overrides={"archive_root": tmp_path / "archive", "host": "loop"})
        statuses: list[dict[str, Any]] = []

        async def scenario() -> Worker:
            pairs = await discover_pairs(u["spot_ws"])
            wp = plan([p.symbol for p in pairs], workers=1, level3_depth=None, book_depth=10,
                      trade=True, ohlc_interval=None)[0]
            # the worker process's collector policy (worker_main): a full collection of
            # this test process's heap would otherwise be a pause of its own on the loop
            young_gc = YoungGc()
            young_gc.step()
            worker = Worker(WorkerSpec(cfg, wp, 1, "t"), statuses.append,
                            after_cut=young_gc.step)
            worker.reporter.loop_lag.interval_s = 0.001
            workers.append(worker)
            loop_thread.append(threading.get_ident())
            task = asyncio.create_task(worker.run())
            deadline = time.monotonic() + 120
            while worker.writer.stats.commits < 8 or worker.writer.stats.frames_in < 2000:
                assert time.monotonic() < deadline, ("too few commits", worker.writer.stats)
                assert not task.done(), task
                await asyncio.sleep(0.2)
            loop_thread.clear()  # the close's last commit may run anywhere
            worker.request_stop()
            await asyncio.wait_for(task, 60)
            return worker

        try:
            worker = asyncio.run(scenario())
        finally:
            gc.unfreeze()
    finally:
        sim.stop()
    st = worker.writer.stats
    assert len(finished_on) >= 8
    assert all(not on_loop and name != "MainThread" for name, on_loop in finished_on), finished_on
    assert st.commits_on_loop == 0
    # every commit beside the running loop pauses for it (the last: the close, loop stopping)
    assert all(isinstance(p, GilYield) for p in pauses[:-1]), pauses
    cuts.sort()
    assert len(cuts) >= 8 and cuts[len(cuts) // 2] <= CUT_CPU_MAX_S, cuts
    assert st.commit_cut_cpu_s_max <= CUT_CPU_WORST_S, cuts
    final = statuses[-1]
    print(f"commits {st.commits}, cut CPU max {st.commit_cut_cpu_s_max * 1e3:.2f} ms, cut wall "
          f"max {st.commit_cut_s_max * 1e3:.2f} ms, commit max {st.commit_s_max * 1e3:.0f} ms, "
          f"loop lag max {final['loop_lag_max_s'] * 1e3:.1f} ms (while committing "
          f"{final['loop_lag_committing_max_s'] * 1e3:.1f} ms, otherwise "
          f"{final['loop_lag_idle_max_s'] * 1e3:.1f} ms)")
    assert final.get("stopped") and final["loop_lag_count"] > 100
    assert final["loop_lag_max_s"] < LAG_MAX_S, final["loop_lag_max_s"]
    print(f"loop's own stall max {final['loop_cpu_max_s'] * 1e3:.1f} ms (while committing "
          f"{final['loop_cpu_committing_max_s'] * 1e3:.1f} ms)")
    assert final["loop_cpu_committing_max_s"] > 0  # measured while commits ran
    assert final["loop_cpu_max_s"] <= LOOP_CPU_MAX_S, final
    assert work_on["arrow"] == {False}, work_on  # tables built, never on the loop
    assert work_on["journal"] == {False}, work_on  # journal blocks written, never on it
    assert final["commits_on_loop"] == 0
    verify(worker.root)


def test_a_failed_commit_hands_its_rows_back(tmp_path: Path) -> None:
    """The cut takes the buffered rows; a seal that fails (ENOSPC) puts them back in front of
    the rows derived since, and the next commit writes every trade exactly once, in order,
    with the journal position of its own cut."""
    from recorder.archive.journal import JournalPosition
    from recorder.archive.session import Deriver
    from recorder.archive.store import ArchiveWriteError
    from tests.archive_helpers import trade_frame

    calls = {"n": 0}

    def flaky(table: Any, where: Any, **kw: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(28, "No space left on device")
        pq.write_table(table, where, **kw)

    d = Deriver(tmp_path / "a", write_table=flaky)
    t0 = 1_700_000_000 * 10**9
    for i in range(10):
        d.feed(trade_frame(t0 + i, 100 + i), JournalPosition("s", i))
    pending = d.begin_commit()
    assert pending.rows > 0 and d.writer.buffered_rows == 0 and pending.journal == {"s": 10}
    for i in range(10, 20):  # fed while the commit is in flight
        d.feed(trade_frame(t0 + i, 100 + i), JournalPosition("s", i))
    with pytest.raises(ArchiveWriteError):
        pending.finish()
    pending.abort()
    assert d.archive.state.commit == 0  # nothing committed
    d.commit()
    assert d.archive.state.commit == 1 and d.archive.state.journal == {"s": 20}
    ids = [r["trade_id"] for f in d.archive.files("trades") for r in pq.read_table(f).to_pylist()]
    assert ids == list(range(100, 120))


def test_a_reader_with_a_backlog_yields_to_the_loop() -> None:
    """Messages already queued in the socket (a backlog after the process got no CPU for a
    while) are handed out by ``recv`` without suspending: the reader still gives the loop
    back after each :data:`~recorder.capture.connection.READ_SLICE_S` of work, so other
    tasks (timers, the other connections) run in between; measured in the loop thread's
    CPU time, so other processes do not change it."""
    import random
    from types import SimpleNamespace

    from recorder.capture.config import CaptureConfig
    from recorder.capture.connection import READ_SLICE_S, FeedConnection
    from recorder.capture.limits import Backoff
    from recorder.capture.shards import ConnPlan

    per_message_s = 0.00005
    backlog = 2000  # 100 ms of work at 50 us each

    def emit(frame: Any) -> list[Any]:
        end = time.thread_time() + per_message_s
        while time.thread_time() < end:
            pass
        return []

    class Backlog:
        def __init__(self) -> None:
            self.left = backlog
            self.drained = asyncio.Event()

        async def recv(self, decode: bool = False) -> bytes:
            if not self.left:
                self.drained.set()
                await asyncio.Event().wait()  # nothing more: wait forever
            self.left -= 1
            return b'{"channel":"heartbeat"}'

    async def scenario() -> tuple[int, float]:
        conn = FeedConnection(ConnPlan(name="trade-0", stream="spot", channel="trade",
                                       symbols=("BTC/USD",)),
                              SimpleNamespace(emit=emit),  # type: ignore[arg-type]
                              settings=CaptureConfig().connection, url="ws://x",
                              backoff=Backoff(1.0, 2.0, random.Random(1)))
        ws = Backlog()
        conn.ws = ws  # type: ignore[assignment]
        runs, longest = 0, 0.0

        async def other() -> None:
            nonlocal runs, longest
            last = time.thread_time()
            while not ws.drained.is_set():
                await asyncio.sleep(0)
                now = time.thread_time()
                runs, longest = runs + 1, max(longest, now - last)
                last = now

        reader = asyncio.create_task(conn._reader())
        await other()
        reader.cancel()
        return runs, longest

    runs, longest = asyncio.run(scenario())
    # ~100 ms of work in slices of READ_SLICE_S (0.5 ms): the other task ran between them
    assert runs >= 0.5 * backlog * per_message_s / READ_SLICE_S, runs
    assert longest <= 5 * READ_SLICE_S, longest
