"""Verify suite: ``recorder verify`` on the compiled core (issue #15) against the reference.

The same archive is verified, in the same run, by ``verify_archive(root, engine="core")``
(the product: every ``book``/``level3`` epoch replayed in Rust from the Parquet columns) and
by ``engine="python"`` (the pure-Python books, the reference model); the two reports must be
equal and every checksum must verify, else the suite fails instead of reporting a number.

Figures per archive, in checksums recomputed per second:

* the replay alone: the CPU time of the calling thread inside ``_core.replay_channel``
  (column copies in, checkpoint texts parsed, GIL released, replay, verdict columns out)
  against the same inside the reference's per-epoch replay (``recorder.verify._verify_epoch``
  over the rows as Python lists); CPU time because the machine is shared (wall rates in the
  note);
* ``recorder verify`` end to end (manifest file checks, Parquet reads, checkpoint decoding,
  the replay and the report), core engine, with the reference engine's figure as the peer.

Archives (cached under ``.bench/cache``): BTC/USD L2 depth 1000 from the query suite (1 h;
quick 10 min) and the archive suite's simulated stream, 8 pairs with book/10 and level3/10
among the other channels (1M frames; quick 100k), ingested at the default checkpoint cadence.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import Figure

_ROOT = Path(__file__).resolve().parent.parent
_CACHE = _ROOT / ".bench" / "cache"


class VerifyBenchError(RuntimeError):
    """A verify run computed a wrong answer (a failure, or engines that disagree)."""


def _sim_archive(messages: int) -> Path:
    """The archive suite's stream, ingested once into the cache."""
    from benchmarks.archive import _stream
    from recorder.ingest import ingest

    root = _CACHE / f"verify-sim-{messages}-p8-s7"
    if not (root / "_manifest" / "current.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        ingest([_stream(messages)], root, max_decompressed_bytes=16 * 2**30)
    return root


class _Stopwatch:
    """Wraps a function and adds up the wall time and the CPU time of this thread spent
    inside it (the replay runs in the calling thread, GIL released or not)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.ns = 0
        self.cpu_ns = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t, c = time.perf_counter_ns(), time.thread_time_ns()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.ns += time.perf_counter_ns() - t
            self.cpu_ns += time.thread_time_ns() - c


class _TimedCore:
    """``recorder._core`` with ``replay_channel`` timed."""

    def __init__(self, core: Any) -> None:
        self._core = core
        self.replay_channel = _Stopwatch(core.replay_channel)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)


def _run(root: Path, engine: str) -> tuple[dict[str, Any], float, float, float, float]:
    """One verify: (report, wall s, process CPU s, wall s and CPU s inside the replay)."""
    import recorder.verify as verify
    import recorder.verify_core as verify_core

    saved = verify_core._core, verify._verify_epoch
    timed_core = verify_core._core = _TimedCore(saved[0])
    timed_ref = verify._verify_epoch = _Stopwatch(saved[1])
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        report = verify.verify_archive(root, engine=engine)  # type: ignore[arg-type]
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        verify_core._core, verify._verify_epoch = saved
    replay_ns = timed_core.replay_channel.ns + timed_ref.ns
    replay_cpu_ns = timed_core.replay_channel.cpu_ns + timed_ref.cpu_ns
    return report, wall, cpu, replay_ns / 1e9, replay_cpu_ns / 1e9


def _figures(label: str, root: Path, repeats: int) -> list[Figure]:
    reference, ref_wall, ref_cpu, ref_replay_wall, ref_replay = _run(root, "python")
    runs = [_run(root, "core") for _ in range(repeats)]
    report = runs[0][0]
    if any(r[0] != reference for r in runs):
        raise VerifyBenchError(f"{label}: the core's report differs from the reference's")
    checksums = report["verified"]
    if report["failed"] or report["files_failed"] or report["checkpoints_failed"] or \
            checksums != report["messages_checked"] or not checksums:
        raise VerifyBenchError(f"{label}: {dict((k, v) for k, v in report.items() if k != 'per')}")
    wall = statistics.median(r[1] for r in runs)
    cpu = statistics.median(r[2] for r in runs)
    replay_wall = statistics.median(r[3] for r in runs)
    replay = statistics.median(r[4] for r in runs)
    core_rate, ref_rate = checksums / replay, checksums / ref_replay
    e2e, ref_e2e = checksums / wall, checksums / ref_wall
    return [
        Figure(f"verify: core replay alone, {label}", core_rate, "checksums/s",
               target=">= 1,000,000",
               peer=f"Python reference books {ref_rate:,.0f} checksums/s "
                    f"(core x{core_rate / ref_rate:.1f})",
               note=f"{checksums:,} checksums, all verified, {report['checkpoints_checked']:,} "
                    f"checkpoints compared; CPU time of the thread inside _core.replay_channel "
                    f"(columns in, checkpoint texts parsed, GIL released, verdicts out) vs "
                    f"inside the reference's _verify_epoch; median of {repeats}; wall "
                    f"{checksums / replay_wall:,.0f} vs {checksums / ref_replay_wall:,.0f} "
                    f"checksums/s"),
        Figure(f"verify: recorder verify end to end (core), {label}", e2e, "checksums/s",
               peer=f"engine=python {ref_e2e:,.0f} checksums/s (core x{e2e / ref_e2e:.1f})",
               note=f"{wall:.2f} s wall, {cpu:.2f} s CPU (python engine {ref_wall:.2f} s, "
                    f"{ref_cpu:.2f} s CPU): file checks, Parquet reads, checkpoint decoding, "
                    f"replay, report; reports equal"),
    ]


def run_verify(quick: bool = False) -> list[Figure]:
    """The verify suite's figures (see module docstring)."""
    from benchmarks.query import _archive

    minutes = 10 if quick else 60
    messages = 100_000 if quick else 1_000_000
    depth1000, _ = _archive("btc", minutes)
    label = {10: "10 min", 60: "1 h"}[minutes]
    figures = _figures(f"BTC/USD book depth 1000, {label}", depth1000, 3)
    figures += _figures(f"sim {messages:,} frames, 8 pairs (book/10 + level3/10)",
                        _sim_archive(messages), 3)
    return figures
