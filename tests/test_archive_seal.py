"""PartitionWriter.seal writes a commit's files on several threads: same files and entries,
and a failure of any one file removes every file of the call and keeps the buffers."""

from __future__ import annotations

import errno
import types
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


def _tables_of(root: Path, entries: list) -> list[tuple[str, list[dict]]]:
    return [(e.file.rsplit("/", 1)[1] + e.dataset, pq.read_table(root / e.file).to_pylist())
            for e in entries]


@pytest.mark.parametrize("built_before_take", [0, 1, 3, 6])
def test_deferred_writer_seals_the_same_files(tmp_path: Path, built_before_take: int) -> None:
    """A deferred writer keeps the appended lists; however many were built before the take
    (in another thread, :meth:`convert_pending`), the files hold the same rows in the same
    order as the immediate writer's, and the counters agree."""
    a = ArchiveStore(tmp_path / "a")
    ref = PartitionWriter(tmp_path / "a", a.schemas)
    _fill(ref)
    want = _tables_of(tmp_path / "a", ref.seal(1))

    b = ArchiveStore(tmp_path / "b")
    w = PartitionWriter(tmp_path / "b", b.schemas)
    w.deferred = True
    _fill(w)
    assert w.unbuilt == 6 and w.buffered_rows == 9 and w.buffered_bytes == 0
    assert w.convert_pending(limit=built_before_take) == built_before_take
    assert w.unbuilt == 6 - built_before_take and w.buffered_rows == 9
    assert (w.buffered_bytes > 0) == (built_before_take > 0)
    batch = w.take()
    assert w.unbuilt == 0 and w.buffered_rows == 0 and batch.rows == 9
    _fill(w)  # rows appended while the batch is sealed elsewhere stay for the next commit
    assert _tables_of(tmp_path / "b", w.seal_batch(batch, 1)) == want
    assert w.buffered_rows == 9 and w.unbuilt == 6


def test_deferred_build_overlapping_a_take_is_dropped(tmp_path: Path) -> None:
    """A take (or restore) while :meth:`convert_pending` builds a set: the set went with the
    batch, so the build's table is dropped, never added twice; a failed seal's restore puts
    the batch (its unbuilt sets built) back in front of newer rows."""
    a = ArchiveStore(tmp_path)
    w = PartitionWriter(tmp_path, a.schemas)
    w.deferred = True
    _fill(w)
    taken = []
    gaps = w.schemas["gaps"]

    def table(columns, pause=None):
        out = gaps.table(columns, pause)
        if not taken:
            taken.append(w.take())  # the commit's cut, while this set is being built
        return out

    # the writer only calls these three of a dataset's schema
    w.schemas = {**w.schemas, "gaps": types.SimpleNamespace(
        table=table, time_column=gaps.time_column, arrow=gaps.arrow)}
    assert w.convert_pending() == 0  # the one it built was taken meanwhile
    assert w.unbuilt == 0 and w.buffered_rows == 0 and w.buffered_bytes == 0
    batch = taken[0]
    assert batch.rows == 9 and len(batch.unbuilt) == 6 and not batch.tables
    w.schemas = {**w.schemas, "gaps": gaps}
    _fill(w)
    w.convert_pending()
    w.restore(batch)  # (a failed seal) its sets are built and go in front
    assert not batch.unbuilt and w.buffered_rows == 18
    entries = w.seal(1)
    assert sum(e.rows for e in entries) == 18
    rows = pq.read_table(tmp_path / entries[0].file).to_pylist()
    assert len(rows) == 4 and rows[0]["start_ns"] == T0  # batch rows first, then the newer


def test_a_pipeline_hands_book_rows_unexpanded_to_a_deferred_writer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipeline's flush gives a deferred writer its ``book`` / ``level3`` buffers
    unexpanded (``append_later``): the expansion to rows runs where the writer builds (capture's
    commit thread), never in the flush on the event loop, and the files equal those of an
    immediate writer fed the same frames."""
    from recorder.ingest import _read_bytes, read_input_frames
    from recorder.pipeline import Pipeline
    from recorder.pipeline import core
    from tests.archive_helpers import make_sim_record

    record = make_sim_record(tmp_path / "s.jsonl.zst", messages=1500, pairs=2, seed=4)
    frames = list(read_input_frames(_read_bytes(record)))

    def derive(root: Path, deferred: bool) -> PartitionWriter:
        w = PartitionWriter(root, ArchiveStore(root).schemas)
        w.deferred = deferred
        p = Pipeline(w, batch_rows=500)
        for f in frames:
            p.feed(f)
        p.flush()
        return w

    want = _tables_of(tmp_path / "a", derive(tmp_path / "a", False).seal(1))
    assert {"book", "level3"} <= {name.split(".parquet")[1] for name, _ in want}
    expanded: list[str] = []
    real = core._expand_columns

    def counting(name: str, *args: object, **kwargs: object) -> dict[str, object]:
        expanded.append(name)
        return real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(core, "_expand_columns", counting)
    w = derive(tmp_path / "b", True)
    assert not expanded and w.unbuilt > 4  # nothing expanded by the flushes
    w.convert_pending(limit=w.unbuilt // 2)
    assert expanded  # expanded by the thread that builds
    assert _tables_of(tmp_path / "b", w.seal(1)) == want
    assert set(expanded) == {"book", "level3"}
