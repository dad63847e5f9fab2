"""``recorder sync`` against a local S3-compatible server (moto, 127.0.0.1 only).

The archive is real: ``recorder sim --record`` streams ingested into two writer roots under one
parent directory (``<parent>/<writer_id>/``), plus files that must never ship (a crash-orphan
Parquet file, a ``.tmp-`` file, a journal segment still being written).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from recorder.archive.journal import JournalWriter
from recorder.archive.store import ArchiveStore
from recorder.cli import main
from recorder.frames import Frame
from recorder.ingest import ingest
from recorder.sync import (
    INDEX_REL,
    MANIFEST_PARQUET_REL,
    MANIFEST_REL,
    SyncError,
    SyncUsageError,
    find_roots,
    make_s3_filesystem,
    parse_s3_url,
    segment_sealed,
    sync_archive,
)
from tests.archive_helpers import make_sim_record

moto_server = pytest.importorskip("moto.server", reason="moto[server] is in the test extra")
pafs = pytest.importorskip("pyarrow.fs")

BUCKET = "kraken-archive"
SECRET = "wJalrXUtnFEMI-sync-test-secret-K7MDENG"
WRITERS = ("hosta-w0", "hosta-w1")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def s3() -> Any:
    """A moto S3 server on 127.0.0.1 (random port) with one bucket; yields its URL."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "AKIASYNCTEST")
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_REGION", "us-east-1")
        # never ask an instance-metadata endpoint (not loopback) for credentials
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
            mp.delenv(var, raising=False)
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            assert host == "127.0.0.1"
            url = f"http://{host}:{port}"
            fs = pafs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http",
                                   region="us-east-1", allow_bucket_creation=True)
            fs.create_dir(BUCKET)
            yield url
        finally:
            server.stop()


@pytest.fixture(scope="module")
def fs(s3: str) -> Any:
    return make_s3_filesystem(s3)


def _live_segment(dest: Path) -> None:
    """A journal segment as it is on disk while its writer is still appending (no frame end)."""
    scratch = dest.parent / ".scratch"
    w = JournalWriter(scratch, host="hosta", run_id="live")
    w.append(Frame(recv_ns=1, conn_id=1, stream="spot", direction="in", payload=b'{"x":1}'))
    w.flush()
    src = scratch / w.segment
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    w.close()
    shutil.rmtree(scratch)


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<parent>/hosta-w0`` (20k sim messages, 5 pairs) and ``<parent>/hosta-w1`` (6k)."""
    base = tmp_path_factory.mktemp("sync")
    par = base / "archive"
    for writer, (messages, seed) in zip(WRITERS, ((20000, 1), (6000, 2)), strict=True):
        rec = make_sim_record(base / f"{writer}.zst", messages=messages, pairs=5, seed=seed)
        ingest([rec], par / writer, progress=False)
    root = par / WRITERS[0]
    listed = ArchiveStore(root).state.files[0].file
    # never shipped: a crash orphan, a temp file, a journal segment still being written
    shutil.copyfile(root / listed, root / Path(listed).with_name("part-99999999-000.parquet"))
    shutil.copyfile(root / listed, root / Path(listed).with_name(".tmp-1-part-x.parquet"))
    _live_segment(root / "journal" / "2025-01-01" / "hosta-live-0001.kjz")
    return par


@pytest.fixture
def copy(parent: Path, tmp_path: Path) -> Path:
    """A private copy of the parent archive (for tests that change it)."""
    dest = tmp_path / "archive"
    shutil.copytree(parent, dest)
    return dest


def _remote(fs: Any, base: str) -> dict[str, int]:
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return {i.path[len(base) + 1:]: i.size for i in infos if i.type == pafs.FileType.File}


def _expected(root: Path, journal: bool) -> set[str]:
    st = ArchiveStore(root).state
    out = {f.file for f in st.files} | {st.pipeline, MANIFEST_REL, MANIFEST_PARQUET_REL,
                                        INDEX_REL}
    if journal:
        out |= {str(p.relative_to(root)) for p in (root / "journal").rglob("*.kjz")
                if p.name != "hosta-live-0001.kjz"}
    return out


def _read(fs: Any, path: str) -> bytes:
    with fs.open_input_stream(path) as fh:
        return fh.read()


class Recording:
    """A filesystem wrapper recording writes; it can fail the Nth data upload (a dropped
    connection), and in ``hard`` mode also every later index save (the process died)."""

    def __init__(self, inner: Any, fail_at: int | None = None, hard: bool = False,
                 on_first_write: Any = None) -> None:
        self.inner = inner
        self.fail_at = fail_at
        self.hard = hard
        self.on_first_write = on_first_write
        self.writes: list[str] = []
        self.failed = False
        self._lock = threading.Lock()

    def get_file_info(self, arg: Any) -> Any:
        return self.inner.get_file_info(arg)

    def open_input_stream(self, path: str) -> Any:
        return self.inner.open_input_stream(path)

    def delete_file(self, path: str) -> None:
        self.inner.delete_file(path)

    def open_output_stream(self, path: str) -> Any:
        with self._lock:
            if path.endswith(INDEX_REL):
                if self.failed and self.hard:
                    raise OSError("simulated kill -9: nothing more is written")
            else:
                if self.on_first_write is not None and not self.writes:
                    self.on_first_write()
                if self.fail_at is not None and len(self.writes) >= self.fail_at:
                    self.failed = True
                    raise OSError("simulated connection reset during upload")
                self.writes.append(path)
        return self.inner.open_output_stream(path)


# --------------------------------------------------------------------------- unit checks


def test_parse_s3_url() -> None:
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    for bad in ("bucket/a", "http://bucket/a", "s3:///a", "s3://b/a//c", "s3://b/../x",
                "s3://b/a?x=1"):
        with pytest.raises(SyncUsageError):
            parse_s3_url(bad)


def test_find_roots(parent: Path, tmp_path: Path) -> None:
    assert [sub for _, sub in find_roots(parent)] == list(WRITERS)
    assert find_roots(parent / WRITERS[0]) == [(parent / WRITERS[0], "")]
    with pytest.raises(SyncUsageError, match="not an archive"):
        find_roots(tmp_path)
    with pytest.raises(SyncUsageError, match="no such directory"):
        find_roots(tmp_path / "missing")
    # a writer that has not committed yet has nothing to ship: left out beside sealed roots,
    # and a clear error when it is all there is
    (tmp_path / "h-w9" / "_manifest").mkdir(parents=True)
    with pytest.raises(SyncUsageError, match="nothing to ship"):
        find_roots(tmp_path)
    with pytest.raises(SyncUsageError, match="nothing to ship"):
        find_roots(tmp_path / "h-w9")
    (parent / "zz-w9" / "_manifest").mkdir(parents=True)
    try:
        assert [sub for _, sub in find_roots(parent)] == list(WRITERS)
    finally:
        (parent / "zz-w9" / "_manifest").rmdir()
        (parent / "zz-w9").rmdir()


def test_segment_sealed(parent: Path, tmp_path: Path) -> None:
    root = parent / WRITERS[0]
    sealed = [p for p in (root / "journal").rglob("*.kjz") if p.name != "hosta-live-0001.kjz"]
    assert sealed and all(segment_sealed(p) for p in sealed)
    assert not segment_sealed(root / "journal" / "2025-01-01" / "hosta-live-0001.kjz")
    data = sealed[0].read_bytes()
    torn = tmp_path / "torn.kjz"
    for cut in (1, 3, len(data) // 2):
        torn.write_bytes(data[:-cut])
        assert not segment_sealed(torn), cut
    torn.write_bytes(data + b"\0")  # trailing garbage after the frame
    assert not segment_sealed(torn)
    torn.write_bytes(b"not zstd at all")
    assert not segment_sealed(torn)


# --------------------------------------------------------------------------- sync


def test_sync_ships_sealed_files_manifest_last_and_is_idempotent(parent: Path, fs: Any,
                                                                  s3: str) -> None:
    rec = Recording(fs)
    report = sync_archive(parent, f"s3://{BUCKET}/full", filesystem=rec, journal=True)
    t = report.totals()
    assert t["roots"] == 2 and t["skipped"] == 0 and t["unsealed_segments"] == 1
    for root, sub in find_roots(parent):
        base = f"{BUCKET}/full/{sub}"
        remote = _remote(fs, base)
        assert set(remote) == _expected(root, journal=True)  # nothing unsealed, no orphan
        for rel, size in remote.items():
            if rel != INDEX_REL:
                assert size == (root / rel).stat().st_size, rel
        # the manifests come after every file they name, current.json last of all
        mine = [w[len(base) + 1:] for w in rec.writes if w.startswith(base + "/")]
        assert mine[-2:] == [MANIFEST_PARQUET_REL, MANIFEST_REL]
        assert _read(fs, f"{base}/{MANIFEST_REL}") == (root / MANIFEST_REL).read_bytes()
    assert t["uploaded"] == sum(len(_expected(r, True)) - 1 for r, _ in find_roots(parent))

    # second run: a no-op (nothing written but the unchanged index, which is not rewritten)
    rec2 = Recording(fs)
    again = sync_archive(parent, f"s3://{BUCKET}/full", filesystem=rec2, journal=True)
    assert again.totals()["uploaded"] == 0 and rec2.writes == []
    assert again.totals()["skipped"] == t["uploaded"]
    # --checksum re-hashes locally and still finds everything unchanged
    assert sync_archive(parent, f"s3://{BUCKET}/full", filesystem=fs, journal=True,
                        checksum=True).totals()["uploaded"] == 0


def test_interrupted_sync_resumes(parent: Path, fs: Any) -> None:
    dest = f"s3://{BUCKET}/resume"
    root = parent / WRITERS[0]
    total = len(_expected(root, journal=False)) - 1  # every object but the index
    flaky = Recording(fs, fail_at=5)
    with pytest.raises(OSError, match="simulated connection reset"):
        sync_archive(root, dest, filesystem=flaky, workers=1)
    remote = _remote(fs, f"{BUCKET}/resume")
    assert MANIFEST_REL not in remote and MANIFEST_PARQUET_REL not in remote
    assert len(remote) == 5 + 1  # five files and the index saved on the way out
    resumed = sync_archive(root, dest, filesystem=fs, workers=1)
    assert (resumed.totals()["skipped"], resumed.totals()["uploaded"]) == (5, total - 5)
    assert set(_remote(fs, f"{BUCKET}/resume")) == _expected(root, journal=False)


def test_hard_killed_sync_resumes_without_its_index(parent: Path, fs: Any) -> None:
    """A kill -9 leaves uploaded objects the index does not know: they are shipped again."""
    dest = f"s3://{BUCKET}/killed"
    root = parent / WRITERS[1]
    total = len(_expected(root, journal=False)) - 1
    with pytest.raises(OSError):
        sync_archive(root, dest, filesystem=Recording(fs, fail_at=3, hard=True), workers=1,
                     checkpoint_s=3600)
    remote = _remote(fs, f"{BUCKET}/killed")
    assert len(remote) == 3 and INDEX_REL not in remote and MANIFEST_REL not in remote
    resumed = sync_archive(root, dest, filesystem=fs)
    assert resumed.totals()["uploaded"] == total
    assert _read(fs, f"{BUCKET}/killed/{MANIFEST_REL}") == (root / MANIFEST_REL).read_bytes()


def test_checkpoints_bound_the_work_redone_after_a_kill(parent: Path, fs: Any) -> None:
    dest = f"s3://{BUCKET}/checkpointed"
    root = parent / WRITERS[0]
    with pytest.raises(OSError):  # index saved after every upload, then killed at the 6th
        sync_archive(root, dest, filesystem=Recording(fs, fail_at=6, hard=True), workers=1,
                     checkpoint_s=0)
    resumed = sync_archive(root, dest, filesystem=fs, workers=1)
    assert resumed.totals()["skipped"] == 6


def test_quick_check_and_checksum(copy: Path, fs: Any) -> None:
    """Like rsync: an unchanged size and mtime is trusted; --checksum re-hashes and finds a
    same-size rewrite that kept its mtime."""
    root = copy / WRITERS[1]
    dest = f"s3://{BUCKET}/quick"
    sync_archive(root, dest, filesystem=fs)
    victim = root / ArchiveStore(root).state.files[0].file
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sync_archive(root, dest, filesystem=fs).totals()["uploaded"] == 0
    report = sync_archive(root, dest, filesystem=fs, checksum=True)
    assert report.totals()["uploaded"] == 1
    assert _read(fs, f"{BUCKET}/quick/{ArchiveStore(root).state.files[0].file}") == bytes(data)
    # a touched file with the same content is re-hashed, found equal, and not re-sent
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert sync_archive(root, dest, filesystem=fs).totals()["uploaded"] == 0


def test_never_ships_a_file_that_differs_from_its_manifest(copy: Path, fs: Any) -> None:
    root = copy / WRITERS[1]
    victim = root / ArchiveStore(root).state.files[-1].file
    with open(victim, "ab") as fh:
        fh.write(b"x")
    with pytest.raises(SyncError, match="manifest says"):
        sync_archive(root, f"s3://{BUCKET}/tampered", filesystem=fs, workers=1)
    assert MANIFEST_REL not in _remote(fs, f"{BUCKET}/tampered")


def test_compaction_during_sync_ships_the_new_snapshot(copy: Path, fs: Any) -> None:
    """Compaction retires listed files while they are being shipped: the sync notices the
    vanished files, takes a new snapshot, and ships the compacted commit's manifest."""
    from recorder.archive.maintenance import compact_archive

    root = copy / WRITERS[1]
    base = f"{BUCKET}/compacted"
    before = {f.file for f in ArchiveStore(root).state.files}
    rec = Recording(fs, on_first_write=lambda: compact_archive(root, include_latest_day=True))
    report = sync_archive(root, f"s3://{base}", filesystem=rec, workers=1)
    after = ArchiveStore(root).state
    assert {f.file for f in after.files}.isdisjoint(before)
    assert report.roots[0].vanished >= 1
    assert report.roots[0].manifest_commit == after.commit
    assert _read(fs, f"{base}/{MANIFEST_REL}") == (root / MANIFEST_REL).read_bytes()
    remote = _remote(fs, base)
    for f in after.files:
        assert remote.get(f.file) == f.bytes, f.file


def test_prune_deletes_objects_no_manifest_names(copy: Path, fs: Any) -> None:
    from recorder.archive.maintenance import compact_archive

    root = copy / WRITERS[1]
    dest, base = f"s3://{BUCKET}/pruned", f"{BUCKET}/pruned"
    sync_archive(root, dest, filesystem=fs)
    old = {f.file for f in ArchiveStore(root).state.files}
    compact_archive(root, include_latest_day=True)
    new = {f.file for f in ArchiveStore(root).state.files}
    assert old.isdisjoint(new)
    sync_archive(root, dest, filesystem=fs, prune=True)
    assert old <= set(_remote(fs, base))  # one generation of grace
    # an unrelated stray object under data/ is pruned too; journal objects never are
    with fs.open_output_stream(f"{base}/data/dataset=book/date=2025-01-01/stray.parquet") as o:
        o.write(b"x")
    with fs.open_output_stream(f"{base}/journal/keep.kjz") as o:
        o.write(b"x")
    report = sync_archive(root, dest, filesystem=fs, prune=True)
    remote = set(_remote(fs, base))
    assert report.totals()["pruned"] == len(old) + 1
    assert old.isdisjoint(remote) and new <= remote and "journal/keep.kjz" in remote
    index = json.loads(_read(fs, f"{base}/{INDEX_REL}"))
    assert old.isdisjoint(index["files"])


# --------------------------------------------------------------------------- read back


def test_synced_archive_reads_back_from_s3(parent: Path, fs: Any, s3: str) -> None:
    dest = f"s3://{BUCKET}/readback"
    sync_archive(parent, dest, filesystem=fs)
    total_trades_local = 0
    remote_trade_files: list[str] = []
    for root, sub in find_roots(parent):
        base = f"{BUCKET}/readback/{sub}"
        manifest = json.loads(_read(fs, f"{base}/{MANIFEST_REL}"))
        local = ArchiveStore(root)
        assert manifest["commit"] == local.state.commit
        for entry in manifest["files"]:
            remote_table = pq.read_table(f"{base}/{entry['file']}", filesystem=fs)
            local_table = pq.read_table(root / entry["file"])
            assert remote_table.equals(local_table), entry["file"]
            assert remote_table.num_rows == entry["rows"]
            if entry["dataset"] == "trades":
                remote_trade_files.append(f"{base}/{entry['file']}")
                total_trades_local += local_table.num_rows
        # manifest.parquet (query pruning) reads back too
        mp = pq.read_table(f"{base}/{MANIFEST_PARQUET_REL}", filesystem=fs)
        assert sorted(mp.column("file").to_pylist()) == sorted(f["file"] for f in manifest["files"])
    # the union of both writers' roots, read as one dataset from s3://
    import pyarrow.dataset as ds

    union = ds.dataset(remote_trade_files, filesystem=fs, format="parquet")
    assert union.count_rows() == total_trades_local > 0


def test_polars_reads_the_synced_archive(parent: Path, fs: Any, s3: str) -> None:
    pl = pytest.importorskip("polars")
    root = parent / WRITERS[0]
    dest = f"s3://{BUCKET}/polars"
    sync_archive(root, dest, filesystem=fs)
    files = [f.file for f in ArchiveStore(root).state.files if f.dataset == "trades"]
    options = {"aws_endpoint_url": s3, "aws_allow_http": "true", "aws_region": "us-east-1",
               "aws_access_key_id": "AKIASYNCTEST", "aws_secret_access_key": SECRET}
    got = pl.read_parquet([f"{dest}/{f}" for f in files], storage_options=options)
    want = pl.read_parquet([root / f for f in files])
    assert got.height == want.height > 0
    assert got.equals(want)


# --------------------------------------------------------------------------- command line


def test_cli_sync_json_dry_run_and_errors(parent: Path, fs: Any, s3: str) -> None:
    runner = CliRunner()
    root = parent / WRITERS[1]
    dest = f"s3://{BUCKET}/cli"
    args = ["sync", "--archive", str(root), "--to", dest, "--endpoint-url", s3]
    r = runner.invoke(main, [*args, "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    planned = json.loads(r.output)["totals"]["uploaded"]
    assert planned == len(_expected(root, journal=False)) - 1
    assert _remote(fs, f"{BUCKET}/cli") == {}  # a dry run writes nothing
    r = runner.invoke(main, [*args, "--journal"])
    assert r.exit_code == 0, r.output
    assert "files/s" in r.output and SECRET not in r.output
    r = runner.invoke(main, [*args, "--journal", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["totals"]["uploaded"] == 0
    # usage errors: exit 2; a store error: exit 1, never showing the credentials
    assert runner.invoke(main, ["sync", "--archive", str(root), "--to", "gs://x/y"]).exit_code == 2
    r = runner.invoke(main, ["sync", "--archive", str(root), "--to", "s3://no-such-bucket-xyz/a",
                             "--endpoint-url", s3])
    assert r.exit_code == 1 and "rerun to resume" in r.output and SECRET not in r.output
    r = runner.invoke(main, ["sync", "--archive", str(parent.parent), "--to", dest,
                             "--endpoint-url", s3])
    assert r.exit_code == 2 and "not an archive" in r.output


def test_api_sql_query_and_audit_read_an_s3_archive(parent: Path, fs: Any, s3: str,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``recorder.Archive("s3://...")``, ``recorder query`` and ``recorder audit`` read what
    ``recorder sync`` shipped, through a local mirror that refetches only what changed."""
    from recorder.query.api import Archive as Query
    from recorder.remote import cache_dir, fetch_archive

    dest = f"s3://{BUCKET}/readable"  # one directory per host, as several hosts sync
    sync_archive(parent, f"{dest}/hosta", filesystem=fs)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3)
    monkeypatch.setenv("RECORDER_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_dir(dest) == tmp_path / "cache" / "s3" / BUCKET / "readable"
    sql = "SELECT symbol, count(*) AS n, sum(trade_id) AS ids FROM trades GROUP BY 1 ORDER BY 1"
    with Query(parent) as local, Query(dest) as remote:
        assert [r.name for r in remote.roots] == list(WRITERS)
        want, got = local.sql(sql).collect(), remote.sql(sql).collect()
        assert got.height > 0 and got.equals(want)
        sym = want["symbol"][0]
        t = local.sql("SELECT max(recv_ns) AS t FROM level3 WHERE symbol = ?",
                      [sym]).collect()["t"][0]
        a = local.book_at(sym, t, channel="level3", clock="receive")
        b = remote.book_at(sym, t, channel="level3", clock="receive")
        assert a.valid and b.valid and b.frame.equals(a.frame)
    # a second fetch of an unchanged archive moves nothing but the manifest (a refetched file
    # would be a new inode: it is written beside and renamed over)
    cached = {f: f.stat().st_ino for f in (tmp_path / "cache").rglob("data/**/*.parquet")}
    assert [r.name for r in fetch_archive(dest)] == list(WRITERS)
    assert cached and all(f.stat().st_ino == ino for f, ino in cached.items())
    runner = CliRunner()
    out = runner.invoke(main, ["query", "--archive", dest, "--format", "csv",
                              "SELECT count(*) AS n FROM trades"])
    assert out.exit_code == 0, out.output
    assert out.output.strip().splitlines()[-1] == str(int(want["n"].sum()))
    out = runner.invoke(main, ["audit", "--archive", dest, "--json", "--quiet"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["summary"]["keys"] > 0
    out = runner.invoke(main, ["query", "--archive", f"s3://{BUCKET}/nothing-here",
                              "SELECT 1"])
    assert out.exit_code == 2 and "no archive root" in out.output
