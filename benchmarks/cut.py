"""The commit cut alone: what a commit costs the thread that feeds frames (issue #18).

One capture worker's share of the full universe (342 pairs: book depth 10 + level3 depth 10 +
trade + ohlc + instrument, a ``recorder sim --record`` stream) is fed to two
:class:`~recorder.archive.session.Deriver` twins, frame by frame, with a commit cut every
quarter of the stream (about 37 s of the sim's market, 50,000 frames, per cut). At each cut,
thread CPU time, garbage collection off (as :meth:`recorder.capture.writer.ArchiveWriter.
begin_commit` does):

* **cut**: :meth:`Deriver.begin_commit` (row buffers handed over, state copied with book
  containers: :meth:`recorder.pipeline.Pipeline.cut`), what capture does on its event loop;
* **peer**: what a cut did before it was split, :meth:`Pipeline.flush` (rows turned into
  Arrow tables) + :meth:`Pipeline.to_state` (every book rendered as text) + the writer's take,
  on the twin;
* **rest**: the part the commit thread now does before its I/O (the cut's tables and the
  state built), checked equal: the state's bytes equal the twin's.

``python -m benchmarks.cut`` (or ``python -m benchmarks --only cut``)
"""

from __future__ import annotations

import gc
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Figure

__all__ = ["run_cut"]


def run_cut(*, quick: bool = False, pairs: int = 342, cuts: int = 4) -> list[Figure]:
    """The figures (see module docstring); ``quick``: half the stream."""
    messages = 100_000 if quick else 200_000
    from recorder.archive.session import Deriver
    from recorder.ingest import _read_bytes, read_input_frames
    from recorder.pipeline.state import encode_state

    tmp = Path(tempfile.mkdtemp(prefix="cut-bench-"))
    src = tmp / "s.zst"
    subprocess.run([sys.executable, "-m", "recorder", "sim", "--record", str(src),
                    "--messages", str(messages), "--pairs", str(pairs), "--seed", "5"],
                   check=True, capture_output=True)
    frames = list(read_input_frames(_read_bytes(src)))
    opts = {"roll_rows": None, "roll_bytes": None, "roll_seconds": None}
    fast, ref = Deriver(tmp / "fast", **opts), Deriver(tmp / "ref", **opts)
    chunk = len(frames) // cuts
    cpu = time.thread_time
    cut_ms, peer_ms, rest_ms, rows, epochs = [], [], [], [], []
    for k in range(cuts):
        for i, frame in enumerate(frames[k * chunk:(k + 1) * chunk], k * chunk):
            fast.loop.feed(frame, "seg", i)
            ref.loop.feed(frame, "seg", i)
        gc.disable()
        try:
            t0 = cpu()
            pending = fast.begin_commit()
            t1 = cpu()
            ref.pipeline.flush()
            ref.writer.take()
            want = ref.pipeline.to_state()
            t2 = cpu()
            pending.build()
            state = pending.cut.state()
            t3 = cpu()
        finally:
            gc.enable()
        if encode_state(state) != encode_state(want):
            raise AssertionError("the cut's state differs from flush + to_state at the cut")
        pending.writer.restore(pending.batch)  # not committed: keep the bench to the cut
        fast.writer.take()
        cut_ms.append((t1 - t0) * 1e3)
        peer_ms.append((t2 - t1) * 1e3)
        rest_ms.append((t3 - t2) * 1e3)
        rows.append(pending.rows)
        epochs.append(len(state.epochs))
    fast.release()
    ref.release()
    note = (f"{pairs} pairs (one worker's share of 683), cut every {chunk:,} frames; median of "
            f"{cuts} cuts of {min(epochs):,}-{max(epochs):,} open epochs and "
            f"{min(rows):,}-{max(rows):,} rows; thread CPU, gc off")
    return [
        Figure("capture: commit cut on the feeding thread (one worker, full universe)",
               statistics.median(cut_ms), "CPU-ms",
               peer=f"flush + to_state at the cut {statistics.median(peer_ms):.1f} CPU-ms "
                    f"(x{statistics.median(peer_ms) / statistics.median(cut_ms):.0f})",
               note=note + f"; max {max(cut_ms):.1f} CPU-ms"),
        Figure("capture: the cut's rows and state built in the commit thread",
               statistics.median(rest_ms), "CPU-ms",
               note=note + "; Arrow tables + book checkpoints, state bytes checked equal to "
                           "flush + to_state's"),
    ]


if __name__ == "__main__":
    for f in run_cut(quick="--quick" in sys.argv):
        print(f)
