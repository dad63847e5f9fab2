"""Where the recorder's CPU per message goes: ``recorder run`` against the load generator,
sampled with py-spy.

``python -m benchmarks.capture_profile [--rate 50000] [--window 10] [--stream FILE]``:
one :func:`benchmarks.capture_load.capture_at_rate` run (self-checked as always) with every
recorder process (supervisor and workers) sampled by ``py-spy record --nonblocking`` at
250 Hz over the window (idle threads excluded, so samples are CPU time), then each sample is
put in one bucket by the stack it was taken in:

* ``receive``: the connection's reader awaiting and decoding WebSocket frames (picows /
  the websockets-compatible client, the frame object);
* ``journal``: :mod:`recorder.archive.journal` (record encoding, compression, writes);
* ``pipeline``: deriving rows (:mod:`recorder.pipeline`, the archive session's deriver, the
  Arrow/Parquet writer on the loop);
* ``commit``: the commit thread (flush, Parquet seal, state, manifest) and the commit cut;
* ``status``: status, metrics, exchange-lag bookkeeping;
* ``loop``: the event loop itself and everything else in a worker;
* ``supervisor``: every sample of the supervisor process.

Per bucket: share of the samples, and CPU-us per received message (the share times the run's
measured recorder CPU per message). The top functions by own samples follow. Sampling
intrudes a little (py-spy reads memory without stopping the process); the CPU per message of
a profiled run is reported beside the share, not as the benchmark's figure.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.capture_load import capture_at_rate, render_for

__all__ = ["bucket", "summarise", "main"]

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

#: (bucket, path or function fragment), tried from the innermost recorder frame outwards
_RULES: tuple[tuple[str, str], ...] = (
    ("journal", "recorder/archive/journal"),
    ("pipeline", "recorder/pipeline/"),
    ("pipeline", "recorder/archive/"),
    ("pipeline", "recorder/protocol/"),
    ("pipeline", "recorder/book/"),
    ("status", "recorder/capture/status_part"),
    ("status", "recorder/capture/metrics"),
    ("status", "recorder/capture/looplag"),
    ("status", "recorder/progress"),
)


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for part in stack.split(";"):
        m = _FRAME.match(part.strip())
        out.append((m.group("func"), m.group("file")) if m else (part.strip(), ""))
    return out


def bucket(stack: str, *, supervisor: bool) -> str:
    """The bucket of one collapsed py-spy stack (root first; see the module docstring)."""
    if supervisor:
        return "supervisor"
    frames = _frames(stack)
    thread = frames[0][0] if frames and frames[0][0].startswith("thread (") else ""
    if thread.partition(": ")[2].startswith("commit"):  # the commit thread (ThreadPoolExecutor)
        return "commit"
    if any(f.rpartition(".")[2] == "begin_commit" for f, _ in frames):  # the cut, on the loop
        return "commit"
    for func, file in reversed(frames):
        for name, fragment in _RULES:
            if fragment in file:
                return name
        if "recorder/capture/writer" in file or "recorder/capture/archive_part" in file:
            return "pipeline"
        if func.rpartition(".")[2] == "_reader" and "recorder/capture/connection" in file:
            return "receive"
    if any("picows" in file or "websockets" in file for _, file in frames):
        return "receive"
    return "loop"


def summarise_dir(directory: Path) -> dict[str, Any]:
    """:func:`summarise` of the files :func:`benchmarks.capture_load._start_profilers` wrote."""
    files = sorted(directory.glob("*-*.txt"))
    profiles = [(int(f.stem.rpartition("-")[2]), str(f)) for f in files]
    sup = next((pid for pid, path in profiles if Path(path).name.startswith("supervisor-")), -1)
    return summarise(profiles, sup)


def summarise(profiles: list[tuple[int, str]], supervisor_pid: int) -> dict[str, Any]:
    """Bucket shares and top own-time functions over the collapsed-stack files."""
    buckets: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for pid, path in profiles:
        p = Path(path)
        if not p.exists():
            continue
        for line in p.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            buckets[bucket(stack, supervisor=pid == supervisor_pid)] += n
            leaf = _frames(stack)[-1]
            own[f"{leaf[0]} ({leaf[1].split('site-packages/')[-1].split('wt-loadgen/')[-1]})"] += n
    return {"samples": total, "buckets": dict(buckets.most_common()),
            "top_own": own.most_common(25)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.capture_profile",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50_000.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--stream", type=Path, default=None,
                        help="a stream rendered by benchmarks.loadgen (default: render one)")
    parser.add_argument("--out", type=Path, default=None, help="keep the raw profiles here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="capture-profile-") as d:
        stream = args.stream
        if stream is None:
            stream = Path(d, "stream.pickle")
            render_for(stream, frames=int(args.rate * (args.window + 7)), pairs=60,
                       market_rate=60.0)
        out = args.out or Path(d, "profiles")
        run = capture_at_rate(stream, rate=args.rate, window=args.window, profile_dir=out)
        sup = next(pid for pid, path in run["profiles"] if "supervisor-" in path)
        summary = summarise(run["profiles"], sup)
    us = 1e6 * run["rec_cpu_s"] / max(1.0, run["got"])
    total = max(1, summary["samples"])
    print(f"rate offered {run['offered'] / run['dt']:,.0f}/s, received {run['got'] / run['dt']:,.0f}/s (journal), "
          f"recorder {us:.1f} CPU-us/msg (profiled run), supervisor "
          f"{1e6 * run['supervisor_cpu_s'] / max(1.0, run['got']):.1f} CPU-us/msg")
    for name, n in summary["buckets"].items():
        print(f"  {name:10s} {100 * n / total:5.1f}%  {us * n / total:6.1f} CPU-us/msg")
    print("top functions by own samples:")
    for name, n in summary["top_own"]:
        print(f"  {100 * n / total:5.1f}%  {name}")
    print(json.dumps({"summary": summary, "us_per_msg": us}, default=str)[:200])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
