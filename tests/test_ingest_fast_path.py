"""``recorder ingest``'s fast path derives the frames it has just journaled from memory (and
compresses the journal on a zstd worker thread): the archive must be exactly the one a
derivation that reads the journal back produces (same rows, files per commit, positions)."""

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recorder.archive.journal import JournalWriter, as_read, list_segments, read_segment
from recorder.archive.session import Deriver
from recorder.archive.store import ArchiveStore
from recorder.frames import Frame
from recorder.ingest import ingest
from tests.archive_helpers import make_sim_record


@pytest.fixture(scope="module")
def sim_record(tmp_path_factory):
    return make_sim_record(tmp_path_factory.mktemp("sim") / "s.zst", messages=2000)


def _frame(**kw) -> Frame:
    base = {"recv_ns": 5, "conn_id": 1, "stream": "spot", "direction": "in", "payload": b"{}"}
    base.update(kw)
    return Frame(**base)


def test_as_read_keeps_plain_frames_and_refuses_altered_ones():
    f = _frame(meta="GET /0/public/Depth")
    assert as_read(f) is f
    assert as_read(_frame(conn_id=2**64 - 1)) is not None
    assert as_read(_frame(conn_id=-1)) is None  # masked to u64 by the journal
    assert as_read(_frame(conn_id=2**64)) is None
    assert as_read(_frame(meta="x" * 65_536)) is None  # cut to 65,535 bytes
    assert as_read(_frame(meta="\u00e9" * 40_000)) is None  # 80,000 bytes
    assert as_read(_frame(meta="\u00e9" * 20_000)) is not None  # 40,000 bytes
    assert as_read(_frame(payload=bytearray(b"{}"))) is None  # read back as bytes
    assert as_read(_frame(recv_ns=True)) is None


def test_as_read_agrees_with_the_journal(tmp_path):
    frames = [_frame(recv_ns=i, conn_id=c, meta=m)
              for i, (c, m) in enumerate([(1, ""), (-3, ""), (7, "y" * 70_000), (2**64 - 1, "\udc80")])]
    w = JournalWriter(tmp_path, host="t", threads=1)
    for f in frames:
        w.append(f)
    w.close()
    (seg,) = list_segments(tmp_path)
    back = [f for _, f in read_segment(tmp_path / seg)]
    assert len(back) == len(frames)
    for f, b in zip(frames, back):
        kept = as_read(f)
        assert kept is None or kept == b
        assert (kept is None) == (f != b)


def test_threaded_journal_reads_back_identically(tmp_path, sim_record):
    from recorder.ingest import _read_bytes, read_input_frames

    frames = list(read_input_frames(_read_bytes(sim_record)))
    w = JournalWriter(tmp_path, host="t", threads=1, fsync_interval_s=0.0)  # flush every append
    for f in frames[:50]:
        w.append(f)
    w.flush()
    for f in frames[50:]:
        w.append(f)
    w.close()
    (seg,) = list_segments(tmp_path)
    assert [f for _, f in read_segment(tmp_path / seg)] == frames


def _archive_view(root: Path) -> tuple[list, dict, list]:
    a = ArchiveStore(root)
    files = sorted((f.commit, f.dataset, f.rows, f.min_time, f.max_time) for f in a.state.files)
    rows = {}
    for f in a.state.files:
        rows.setdefault(f.dataset, []).extend(pq.read_table(root / f.file).to_pylist())
    rows = {k: sorted(map(repr, v)) for k, v in rows.items()}
    return files, rows, sorted(a.state.journal.values())


@pytest.mark.parametrize("roll_rows", [2_000_000, 700])
def test_memory_derivation_equals_journal_derivation(tmp_path, sim_record, roll_rows,
                                                     monkeypatch):
    """The fast path against a Deriver reading the same converted segments from disk: same
    files per commit, same rows and values, same journal positions (commit points included:
    ``roll_rows=700`` commits many times mid-segment)."""
    import recorder.archive.session as session

    def no_read(*a, **k):
        raise AssertionError("the converted segment was decoded again")

    with monkeypatch.context() as m:
        m.setattr(session, "read_segment", no_read)
        s = ingest([sim_record], tmp_path / "fast", roll_rows=roll_rows)
    assert s["frames"] == 2000  # every frame derived once
    # the reference: the same converted journal, derived by reading it back
    import shutil

    shutil.copytree(tmp_path / "fast" / "journal", tmp_path / "slow" / "journal")
    d = Deriver(tmp_path / "slow", roll_rows=roll_rows)
    n = d.catch_up()
    d.close("open")
    d.release()
    assert n == 2000
    fast, slow = _archive_view(tmp_path / "fast"), _archive_view(tmp_path / "slow")
    assert fast[0] == slow[0]
    assert fast[1] == slow[1]
    assert fast[2] == slow[2] == [2000]
    if roll_rows == 700:
        assert max(c for c, *_ in fast[0]) > 3
    # idempotent: a second ingest adds nothing
    again = ingest([sim_record], tmp_path / "fast", roll_rows=roll_rows)
    assert again["frames"] == 0
    assert _archive_view(tmp_path / "fast") == fast


@pytest.mark.parametrize("max_bytes,interval", [(256 * 2**20, 3600.0), (20_000, 3600.0),
                                                (20_000, 0.0)])
def test_append_many_equals_append(tmp_path, sim_record, max_bytes, interval):
    """Same segments, same records, and runs that say which frames went where (rolls by
    size and flushes by interval included)."""
    from recorder.ingest import _read_bytes, read_input_frames

    frames = list(read_input_frames(_read_bytes(sim_record)))[:600]
    clock = {"run_id": "r", "clock_ns": lambda: 1_735_689_600_000_000_000}  # same names
    one = JournalWriter(tmp_path / "one", host="t", segment_max_bytes=max_bytes,
                        fsync_interval_s=interval, **clock)
    positions = [one.append(f) for f in frames]
    one.close()
    many = JournalWriter(tmp_path / "many", host="t", segment_max_bytes=max_bytes,
                         fsync_interval_s=interval, **clock)
    runs = many.append_many(frames)
    many.close()
    expected: list[list] = []
    for p in positions:
        if expected and expected[-1][0] == p.segment:
            expected[-1][1] += 1
        else:
            expected.append([p.segment, 1])
    assert [tuple(r) for r in expected] == runs
    if max_bytes < 10**6:
        assert len(runs) > 3
    at = 0
    for seg, count in runs:
        assert [f for _, f in read_segment(tmp_path / "many" / seg)] == frames[at:at + count]
        at += count
    assert at == len(frames)


_INGEST_SCRIPT = """
import sys
from pathlib import Path
from recorder.ingest import ingest
ingest([Path(sys.argv[1])], Path(sys.argv[2]), roll_rows=int(sys.argv[3]))
"""


def test_kill_9_during_ingest_then_rerun_is_exactly_once(tmp_path, sim_record):
    """``recorder ingest`` killed (SIGKILL) after some commits, then run again: the archive
    holds exactly the rows of an uninterrupted ingest (the rerun derives the rest from the
    converted journal on disk, no frame twice, none lost)."""
    import json
    import subprocess
    import sys
    import time

    ref = tmp_path / "ref"
    ingest([sim_record], ref, roll_rows=400)
    root = tmp_path / "a"
    manifest = root / "_manifest" / "current.json"
    proc = subprocess.Popen([sys.executable, "-c", _INGEST_SCRIPT, str(sim_record), str(root),
                             "400"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(manifest.read_bytes())["commit"] >= 2:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.005)
    killed = proc.poll() is None
    proc.kill()
    proc.wait()
    ingest([sim_record], root, roll_rows=400)
    assert _archive_view(root)[1] == _archive_view(ref)[1]
    assert _archive_view(root)[2] == [2000]
    if killed:  # the rerun resumed from a commit part-way through the input
        assert ArchiveStore(root).state.commit > 2
