"""Compaction (sorted, atomic, crash-safe) and retention (journal and Parquet separately)."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import msgspec
import pyarrow.parquet as pq
import pytest

from recorder.archive.layout import DAY_NS
from recorder.archive.maintenance import RetentionPolicy, apply_retention, compact_archive
from recorder.archive.session import Deriver
from recorder.archive.store import ArchiveStore, ArchiveBusyError
from recorder.ingest import ingest
from recorder.verify import verify_archive
from tests.archive_helpers import copy_archive, make_sim_record, rolled_sim_archive, row_counts

DATASETS = ("level3", "book", "trades", "checkpoints", "epochs", "liveness")


@pytest.fixture(scope="module")
def rolled(tmp_path_factory):
    """An archive of a sim stream with many small rolling files."""
    return rolled_sim_archive(tmp_path_factory.mktemp("m"))


def _all_listed_files_open(root: Path) -> None:
    archive = ArchiveStore(root)
    for f in archive.state.files:
        assert pq.ParquetFile(root / f.file).metadata.num_rows == f.rows
    on_disk = {str(p.relative_to(root)) for p in (root / "data").rglob("*.parquet")}
    assert {f.file for f in archive.state.files} <= on_disk


def test_compaction_merges_sorts_and_keeps_every_row(rolled, tmp_path):
    root = copy_archive(rolled, tmp_path / "a")
    before = {ds: row_counts(root, ds) for ds in DATASETS}
    report_before = verify_archive(root)
    n_files = len(ArchiveStore(root).state.files)
    rep = compact_archive(root, include_latest_day=True)
    assert rep.files_before == n_files and rep.files_after < n_files / 3
    archive = ArchiveStore(root)
    for ds in DATASETS:
        assert row_counts(root, ds) == before[ds], ds  # same multiset of rows, every value exact
    for ds in ("level3", "book"):
        (f,) = archive.files(ds)
        assert f.name.startswith("compact-")
        t = pq.read_table(f, columns=["symbol", "recv_ns"])
        keys = list(zip(t.column("symbol").to_pylist(), t.column("recv_ns").to_pylist()))
        assert keys == sorted(keys)
    after = verify_archive(root)
    for k in ("messages_checked", "verified", "failed", "checkpoints_checked"):
        assert after[k] == report_before[k], k
    assert after["failed"] == 0 and after["verified"] > 100
    _all_listed_files_open(root)
    # no leftovers: only the compacted files remain on disk
    assert len(list((root / "data").rglob("*.parquet"))) == len(archive.state.files)
    # idempotent
    assert compact_archive(root, include_latest_day=True).partitions == 0
    # DuckDB reads it through the manifest's file list
    files = [str(p) for p in archive.files("book")]
    n = duckdb.sql(f"select count(*) from read_parquet({files!r})").fetchall()[0][0]
    assert n == sum(before["book"].values())


def test_latest_day_is_left_alone_by_default(rolled, tmp_path):
    root = copy_archive(rolled, tmp_path / "a")
    assert compact_archive(root).partitions == 0  # the stream is one (latest) day
    assert compact_archive(root, date="1999-01-01").partitions == 0


def test_failure_before_commit_leaves_old_archive(rolled, tmp_path, monkeypatch):
    root = copy_archive(rolled, tmp_path / "a")
    before = ArchiveStore(root).state.files
    archive = ArchiveStore(root)
    archive.lock()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(archive, "commit", boom)
    with pytest.raises(OSError):
        compact_archive(archive, include_latest_day=True)
    archive.unlock()
    assert ArchiveStore(root).state.files == before
    _all_listed_files_open(root)
    assert not list((root / "data").rglob("compact-*"))


CHILD = r"""
import sys
sys.path.insert(0, {repo!r})
from recorder.archive.maintenance import compact_archive
print("go", flush=True)
compact_archive({root!r}, include_latest_day=True, row_group_size=1000, file_rows=3000)
"""


def test_kill9_mid_compaction_leaves_consistent_archive(rolled, tmp_path):
    repo = str(Path(__file__).resolve().parents[1])
    rng = random.Random(9)
    expected = {ds: row_counts(rolled, ds) for ds in ("level3", "book", "trades")}
    for k in range(6):
        root = copy_archive(rolled, tmp_path / f"a{k}")
        script = tmp_path / f"c{k}.py"
        script.write_text(CHILD.format(repo=repo, root=str(root)))
        p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        assert p.stdout is not None
        p.stdout.readline()
        time.sleep(rng.uniform(0.2, 1.2))
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        _all_listed_files_open(root)  # readable and consistent as left by the kill
        compact_archive(root, include_latest_day=True)  # recovers orphans, finishes
        for ds, rows in expected.items():
            assert row_counts(root, ds) == rows
        assert len(list((root / "data").rglob("*.parquet"))) == len(ArchiveStore(root).state.files)


def test_lock_excludes_a_second_writer(rolled, tmp_path):
    root = copy_archive(rolled, tmp_path / "a")
    d = Deriver(root)
    with pytest.raises(ArchiveBusyError):
        compact_archive(root, include_latest_day=True)
    d.release()
    compact_archive(root, include_latest_day=True)


def test_retention_parquet_by_age_and_size(rolled, tmp_path):
    root = copy_archive(rolled, tmp_path / "a")
    archive = ArchiveStore(root)
    day = archive.state.files[0].date
    import calendar

    day_ns = calendar.timegm(time.strptime(day, "%Y-%m-%d")) * 1_000_000_000
    # the day is not older than 2 days on the day after it
    rep = apply_retention(root, RetentionPolicy(parquet_max_age_days=2),
                          now_ns=day_ns + DAY_NS + 1)
    assert rep.parquet_files == 0
    journal_before = sorted(p.name for p in (root / "journal").rglob("*.kjz"))
    rep = apply_retention(root, RetentionPolicy(parquet_max_age_days=2),
                          now_ns=day_ns + 4 * DAY_NS)
    assert rep.parquet_files > 0 and ArchiveStore(root).state.files == []
    assert not list((root / "data").rglob("*.parquet"))
    # the journal is independent: untouched
    assert sorted(p.name for p in (root / "journal").rglob("*.kjz")) == journal_before
    root2 = copy_archive(rolled, tmp_path / "b")
    total = sum(f.bytes for f in ArchiveStore(root2).state.files)
    rep = apply_retention(root2, RetentionPolicy(parquet_max_bytes=total + 1))
    assert rep.parquet_files == 0
    rep = apply_retention(root2, RetentionPolicy(parquet_max_bytes=total - 1))
    assert rep.parquet_files == len(ArchiveStore(rolled).state.files)  # one day: all of it


def test_retention_journal_keeps_underived_and_does_not_rederive(tmp_path):
    root = tmp_path / "a"
    srcs = [make_sim_record(tmp_path / f"s{i}.zst", messages=800, pairs=2, seed=i)
            for i in range(3)]
    for s in srcs:
        ingest([s], root)
    segs = ArchiveStore(root).state.segments
    assert len(segs) == 3
    rep = apply_retention(root, RetentionPolicy(journal_max_bytes=0))
    assert rep.journal_segments == 2  # never the last one in derivation order
    assert [s for s in segs if (root / "journal" / s).exists()] == segs[-1:]
    files = ArchiveStore(root).state.files
    d = Deriver(root)
    assert d.catch_up() == 0  # positions kept: nothing re-derived
    d.release()
    assert ArchiveStore(root).state.files == files
    assert verify_archive(root)["failed"] == 0


def test_compaction_uses_each_schemas_row_group_size(rolled, tmp_path):
    """A dataset read a few rows at a time keeps small row groups after compaction (the
    schema's ``compact_row_group_rows``); the others get the large default."""
    root = copy_archive(rolled, tmp_path / "a")
    archive = ArchiveStore(root)
    assert archive.schemas["checkpoints"].compact_row_group_rows == 64
    assert archive.schemas["trades"].compact_row_group_rows is None
    # this small archive has a handful of checkpoints: 2-row groups make the rule visible
    archive.schemas["checkpoints"] = msgspec.structs.replace(
        archive.schemas["checkpoints"], compact_row_group_rows=2)
    archive.lock()
    try:
        compact_archive(archive, include_latest_day=True)
    finally:
        archive.unlock()
    archive = ArchiveStore(root)
    (cp,) = archive.files("checkpoints")
    meta = pq.ParquetFile(cp).metadata
    assert meta.num_rows > 2
    assert meta.num_row_groups == -(-meta.num_rows // 2)
    (tr,) = archive.files("trades")
    assert pq.ParquetFile(tr).metadata.num_row_groups == 1
