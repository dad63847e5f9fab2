"""Shared helpers for archive tests (synthetic frames, a sim archive of many small files)."""

from __future__ import annotations

import errno
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from recorder.frames import Frame

if TYPE_CHECKING:
    from recorder.archive.session import ArchiveSession

T0 = 1_735_689_600_000_000_000


def trade_frame(recv_ns: int, trade_id: int, symbol: str = "BTC/USD", conn_id: int = 1) -> Frame:
    ts = "2025-01-01T00:00:00.000000Z"
    payload = (
        '{"channel":"trade","type":"update","data":[{"symbol":"%s","side":"buy",'
        '"price":95000.1,"qty":0.00100000,"ord_type":"market","trade_id":%d,'
        '"timestamp":"%s"}]}' % (symbol, trade_id, ts)
    ).encode()
    return Frame(recv_ns=recv_ns, conn_id=conn_id, stream="spot", direction="in",
                 payload=payload)


def make_sim_record(path, messages: int = 3000, pairs: int = 4, seed: int = 1):
    """Write a deterministic `recorder sim --record` stream to ``path``."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "recorder", "sim", "--record", str(path),
                    "--messages", str(messages), "--pairs", str(pairs), "--seed", str(seed)],
                   check=True, capture_output=True)
    return path


def rolled_sim_archive(base: Path) -> Path:
    """An archive (``base/a``) of a sim stream ingested in one run, with many small rolling
    files (6,000 messages, 3 pairs, 1,500 rows per file)."""
    from recorder.ingest import ingest

    src = make_sim_record(base / "s.zst", messages=6000, pairs=3, seed=5)
    root = base / "a"
    ingest([src], root, roll_rows=1500)
    return root


def copy_archive(src: Path, dst: Path) -> Path:
    """A copy of the archive ``src`` at ``dst``."""
    shutil.copytree(src, dst)
    return dst


def row_counts(root: Path, dataset: str) -> Counter:
    """Every row of ``dataset`` in the archive's listed files (sorted items), with its count."""
    import pyarrow.parquet as pq

    from recorder.archive.store import ArchiveStore

    out: Counter = Counter()
    for f in ArchiveStore(root).files(dataset):
        for r in pq.read_table(f).to_pylist():
            out[tuple(sorted(r.items()))] += 1
    return out


def session_on_a_disk_that_fills(root: Path
                                 ) -> tuple[ArchiveSession, dict[str, bool], Iterator[int]]:
    """An :class:`~recorder.archive.session.ArchiveSession` at ``root`` (flush on every append,
    no rolling, a clock counting from :data:`T0` in 1 us steps) whose journal writes fail with
    ENOSPC while ``full["on"]``, after 50 trade frames (ids 1000-1049) were written and
    committed: ``(session, full, clock)``."""
    from recorder.archive.session import ArchiveSession

    full = {"on": False}

    def write(fd: int, data: bytes) -> int:
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    clock = iter(range(T0, T0 + 10**12, 1000))
    session = ArchiveSession(root, host="t", fsync_interval_s=0.0, roll_rows=10**9,
                             roll_seconds=10**9, clock_ns=lambda: next(clock))
    session.journal._write = write  # the journal's write seam (os.write)
    session.start()
    for i in range(50):
        session.write(trade_frame(next(clock), 1000 + i))
    session.deriver.commit()
    return session, full, clock
