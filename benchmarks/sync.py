"""``recorder sync`` throughput on loopback: files/s and MB/s into a local S3-compatible server.

Run: ``python -m benchmarks.sync [--messages 200000] [--copies 30] [--workers 8]``
(needs the test extra: moto[server]). Two archives are built with ``recorder sim --record`` +
``recorder ingest``: a *large* root (``--messages`` frames, 10 pairs) for MB/s, and a parent
of ``--copies`` copies of a small root (20k frames, 5 pairs) for files/s, as a host with many
writer roots and small files would be. Each is synced to a fresh prefix of a moto server on
127.0.0.1 (a single-threaded Python server sharing the 2 cores with the client: a floor, not
what a real object store does), then synced again (the no-op run: listing + index only).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _build(tmp: Path, messages: int, pairs: int, name: str) -> Path:
    from recorder.ingest import ingest

    rec = tmp / f"{name}.zst"
    subprocess.run([sys.executable, "-m", "recorder", "sim", "--record", str(rec), "--messages",
                    str(messages), "--pairs", str(pairs), "--seed", "1"], check=True,
                   capture_output=True)
    root = tmp / name
    ingest([rec], root, progress=False)
    return root


def _run(archive: Path, dest: str, fs: Any, workers: int) -> dict[str, Any]:
    from recorder.sync import sync_archive

    first = sync_archive(archive, dest, filesystem=fs, workers=workers, journal=True).totals()
    t0 = time.perf_counter()
    again = sync_archive(archive, dest, filesystem=fs, workers=workers, journal=True).totals()
    return {"first": first, "noop_seconds": round(time.perf_counter() - t0, 3),
            "noop_uploaded": again["uploaded"], "noop_skipped": again["skipped"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--copies", type=int, default=30)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    from moto.server import ThreadedMotoServer
    from pyarrow import fs as pafs

    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = pafs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http",
                               region="us-east-1", allow_bucket_creation=True)
        s3.create_dir("bench")
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            large = _build(tmp, args.messages, 10, "large")
            small = _build(tmp, 20_000, 5, "small")
            parent = tmp / "many"
            for i in range(args.copies):
                shutil.copytree(small, parent / f"host-w{i}")
            size = sum(p.stat().st_size for p in large.rglob("*") if p.is_file())
            out = {"server": "moto ThreadedMotoServer on 127.0.0.1", "workers": args.workers,
                   "large_root": {"messages": args.messages, "bytes_on_disk": size,
                                  **_run(large, "s3://bench/large", s3, args.workers)},
                   "many_roots": {"roots": args.copies,
                                  **_run(parent, "s3://bench/many", s3, args.workers)}}
    finally:
        server.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
