"""PartitionWriter.seal writes a commit's files on several threads: same files and entries,
and a failure of any one file removes every file of the call and keeps the buffers."""

from __future__ import annotations

import errno
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recorder.archive.store import ArchiveStore, ArchiveWriteError, PartitionWriter
from tests.archive_helpers import T0

_DAY = 86_400 * 10**9


def _fill(w: PartitionWriter) -> None:
    for day in range(3):  # three days x two datasets: six files
        t = T0 + day * _DAY
        w.append("gaps", {"start_ns": [t, t + 1], "end_ns": [t + 5, None],
                          "stream": ["spot", "spot"], "channel": ["book", "trade"],
                          "symbol": ["BTC/USD", "ETH/USD"], "conn_id": [1, 2],
                          "cause": ["reconnect", "reconnect"], "missing": [None, None],
                          "missing_count": [None, None], "healed_by": ["resnapshot", "open"],
                          "detail": [None, "x"]})
        w.append("liveness", {"minute_ns": [t], "conn_id": [1], "stream": ["spot"],
                              "channel": ["book"], "symbol": ["BTC/USD"],
                              "subscribed_ns": [60 * 10**9], "frames": [3], "first_ns": [t],
                              "last_ns": [t + 9]})


def test_seal_writes_every_file_in_order(tmp_path: Path) -> None:
    a = ArchiveStore(tmp_path)
    w = PartitionWriter(tmp_path, a.schemas)
    _fill(w)
    entries = w.seal(1)
    assert [e.file.rsplit("/", 1)[1] for e in entries] == [
        f"part-00000001-{n:03d}.parquet" for n in range(6)]
    assert [e.dataset for e in entries] == ["gaps"] * 3 + ["liveness"] * 3
    assert [e.rows for e in entries] == [2, 2, 2, 1, 1, 1]
    for e in entries:
        assert pq.read_table(tmp_path / e.file).num_rows == e.rows
        assert (tmp_path / e.file).stat().st_size == e.bytes
    assert w.buffered_rows == 0


@pytest.mark.parametrize("failing", [0, 3, 5])
def test_one_failing_file_removes_all_and_keeps_the_buffers(tmp_path: Path,
                                                            failing: int) -> None:
    fail = {"on": True}

    def write_table(table, where, **kw):
        if fail["on"] and Path(where).name.endswith(f"-{failing:03d}.parquet"):
            Path(where).write_bytes(b"PAR1partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return pq.write_table(table, where, **kw)

    a = ArchiveStore(tmp_path)
    w = PartitionWriter(tmp_path, a.schemas, write_table=write_table)
    _fill(w)
    with pytest.raises(ArchiveWriteError) as exc:
        w.seal(1)
    assert exc.value.errno == errno.ENOSPC
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing left, no temp files
    assert w.buffered_rows == 9
    fail["on"] = False
    entries = w.seal(1)
    assert sum(e.rows for e in entries) == 9 and len(entries) == 6
