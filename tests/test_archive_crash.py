"""kill -9 of a live archive writer at random moments; disk full during a commit."""

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pyarrow.parquet as pq
import pytest

from recorder.archive.journal import list_segments, read_segment
from recorder.archive.session import ArchiveSession
from recorder.archive.store import ArchiveStore, ArchiveWriteError
from tests.archive_helpers import trade_frame

CHILD = r"""
import sys, time
sys.path.insert(0, {repo!r})
from recorder.archive.session import ArchiveSession
from tests.archive_helpers import trade_frame
s = ArchiveSession({root!r}, host="t", fsync_interval_s=0.01, roll_rows=150, roll_seconds=3600)
s.start()
print("ready", flush=True)
n = int(sys.argv[1])
for i in range(n):
    t = time.time_ns()
    s.write(trade_frame(t, t // 1000))
if n < 10**9:
    s.close()
"""


def _trade_ids_in_journal(root: Path) -> list[int]:
    ids = []
    jroot = root / "journal"
    for seg in list_segments(jroot):
        for _, f in read_segment(jroot / seg):
            if f.stream == "spot":
                ids.append(msgspec.json.decode(f.payload)["data"][0]["trade_id"])
    return ids


def test_kill9_at_random_moments_exactly_once(tmp_path):
    root = tmp_path / "a"
    repo = str(Path(__file__).resolve().parents[1])
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=repo, root=str(root)))
    rng = random.Random(4)
    deadline = time.monotonic() + 90
    kills = 0
    while kills < 20 and time.monotonic() < deadline:
        p = subprocess.Popen([sys.executable, str(script), str(10**9)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        assert p.stdout is not None
        p.stdout.readline()  # "ready": the child is writing from now on
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        kills += 1
    assert kills >= 20
    # a last, clean run recovers everything the journal holds
    subprocess.run([sys.executable, str(script), "50"], check=True, capture_output=True)
    archive = ArchiveStore(root)
    trades = []
    for f in list((root / "data").rglob("*.parquet")):
        table = pq.read_table(f)  # every file opens
        assert table.num_rows > 0
    for f in archive.files("trades"):
        trades += pq.read_table(f, columns=["trade_id"]).column("trade_id").to_pylist()
    journal_ids = _trade_ids_in_journal(root)
    assert len(journal_ids) > 100
    assert sorted(trades) == sorted(journal_ids)  # exactly once
    gaps = []
    for f in archive.files("gaps"):
        gaps += pq.read_table(f).to_pylist()
    restarts = [g for g in gaps if g["cause"] == "process_restart"]
    assert len(restarts) >= kills
    assert all(g["end_ns"] >= g["start_ns"] for g in restarts)
    assert sum("crash" in (g["detail"] or "") for g in restarts) >= kills


def test_disk_full_during_commit_is_clear_and_recoverable(tmp_path):
    full = {"on": False}

    def write_table(table, where, **kw):
        if full["on"]:
            Path(where).write_bytes(b"PAR1partial")  # a partial temp file, as ENOSPC leaves
            raise OSError(errno.ENOSPC, "No space left on device")
        return pq.write_table(table, where, **kw)

    root = tmp_path / "a"
    clock = iter(range(1_735_689_600_000_000_000, 1_735_689_700_000_000_000, 1000))
    s = ArchiveSession(root, host="t", roll_rows=10**9, roll_seconds=10**9,
                       clock_ns=lambda: next(clock), write_table=write_table)
    s.start()
    for i in range(100):
        s.write(trade_frame(next(clock), 1000 + i))
    s.deriver.commit()
    committed = ArchiveStore(root).state.commit
    for i in range(100, 200):
        s.write(trade_frame(next(clock), 1000 + i))
    full["on"] = True
    with pytest.raises(ArchiveWriteError) as exc:
        s.deriver.commit()
    assert exc.value.errno == errno.ENOSPC and "No space" in str(exc.value)
    assert ArchiveStore(root).state.commit == committed  # nothing half-committed
    assert not list(root.rglob(".tmp-*"))
    for f in (root / "data").rglob("*.parquet"):
        pq.read_table(f)  # nothing corrupt
    full["on"] = False  # space returns
    for i in range(200, 250):
        s.write(trade_frame(next(clock), 1000 + i))
    s.close()
    ids = []
    for f in ArchiveStore(root).files("trades"):
        ids += pq.read_table(f, columns=["trade_id"]).column("trade_id").to_pylist()
    assert sorted(ids) == list(range(1000, 1250))
