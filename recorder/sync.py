"""``recorder sync --archive DIR --to s3://bucket/prefix``: ship sealed archive files to object storage.

What is shipped, per archive root (a directory holding ``_manifest/current.json``):

* every Parquet file the committed manifest lists (``data/...``): listed = sealed, because the
  archive writes a file under a temp name, renames it, and only then commits a manifest naming
  it. Files on disk that no commit lists (crash orphans, ``.tmp-*`` files being written) are
  never shipped;
* the pipeline state file the manifest names (``_state/pipeline-<commit>.state``), so the
  remote copy is a complete archive root that a deriver could resume from;
* with ``--journal``, the journal segments (``journal/**.kjz``) whose zstd frame is complete.
  A live segment only has block ends (it is being appended to) and a segment torn by a crash
  never gets a frame end; neither is shipped (:func:`segment_sealed`);
* last, ``_manifest/manifest.parquet`` and then ``_manifest/current.json``, the commit point
  readers start from. A reader of the remote copy therefore never sees a manifest that names
  an object that is not there yet.

``--archive`` may also be a parent directory of several roots (one per capture worker,
``<parent>/<writer_id>/``); each root goes to ``<prefix>/<writer_id>/`` and readers take the
union, exactly as they do locally.

Resumable and idempotent: each remote root has a sync index, ``_sync/index.json``, that maps a
shipped file to the size, local mtime and SHA-256 of the bytes that were uploaded (S3 offers no
portable content checksum for multipart uploads, and pyarrow does not store user metadata). A
file is skipped when the object listing shows it with the local size and the index records the
same size and SHA-256 (the SHA-256 is taken from the index when the local size and mtime are
unchanged, as rsync's quick check does; ``--checksum`` always re-hashes the local file). The
index is saved every ``checkpoint_s`` seconds during a run and when a run ends, even by an
error, so an interrupted run redoes at most that much work; a file uploaded but not yet in
the index is simply uploaded again.

``--prune`` deletes remote ``data/`` and ``_state/`` objects that neither the new manifest nor
the remote manifest it replaces names (one generation of grace: a reader that has just read the
previous manifest still finds its files until the next sync). Journal objects are never pruned.

Credentials come from the AWS default chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, instance or container roles); nothing here logs or prints them. The endpoint of
an S3-compatible store comes from ``--endpoint-url`` or ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL``; the region from ``--region`` or ``AWS_REGION`` / ``AWS_DEFAULT_REGION``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import click
import msgspec

from recorder.archive.store import ArchiveState
from recorder.errors import RecorderError
from recorder.roots import ArchiveRootError, archive_roots, is_archive_root

__all__ = [
    "SyncError",
    "SyncUsageError",
    "RemoteFileSystem",
    "RootReport",
    "SyncReport",
    "parse_s3_url",
    "make_s3_filesystem",
    "find_roots",
    "segment_sealed",
    "sync_archive",
    "sync_command",
]

#: Where the per-root sync index lives, relative to the remote root.
INDEX_REL: Final = "_sync/index.json"
INDEX_FORMAT: Final = 1
MANIFEST_REL: Final = "_manifest/current.json"
MANIFEST_PARQUET_REL: Final = "_manifest/manifest.parquet"
#: Bytes per read/write when streaming a file to the object store.
CHUNK: Final = 8 * 1024 * 1024
#: Snapshot attempts when a commit lands between reading current.json and manifest.parquet, or
#: when compaction/retention deletes a listed file while it is being shipped.
ATTEMPTS: Final = 5


class SyncError(RecorderError, RuntimeError):
    """The sync could not complete; the remote manifest was left as it was (rerun to resume)."""


class SyncUsageError(SyncError):
    """Bad arguments: a malformed destination or endpoint, or no archive where one was named."""


class _Vanished(Exception):
    """A listed local file disappeared while being shipped (compaction/retention retired it)."""

    def __init__(self, rel: str) -> None:
        super().__init__(rel)
        self.rel = rel


class RemoteFileSystem(Protocol):
    """The part of :class:`pyarrow.fs.FileSystem` the sync uses (tests wrap it to inject faults)."""

    def get_file_info(self, paths_or_selector: Any) -> Any: ...
    def open_input_stream(self, path: str) -> Any: ...
    def open_output_stream(self, path: str) -> Any: ...
    def delete_file(self, path: str) -> None: ...


# --------------------------------------------------------------------------- destinations


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")`` (prefix may be empty)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise SyncUsageError(f"destination must look like s3://bucket/prefix, got {url!r}")
    if parts.query or parts.fragment:
        raise SyncUsageError(f"destination {url!r}: no ?query or #fragment allowed")
    prefix = parts.path.strip("/")
    if any(seg in ("", ".", "..") for seg in prefix.split("/")) and prefix:
        raise SyncUsageError(f"destination {url!r}: empty, '.' or '..' path segments")
    return parts.netloc, prefix


def make_s3_filesystem(endpoint_url: str | None = None, region: str | None = None,
                       env: Mapping[str, str] | None = None) -> Any:
    """A :class:`pyarrow.fs.S3FileSystem` using the AWS default credential chain.

    ``endpoint_url`` (``http(s)://host:port``) selects an S3-compatible store (MinIO, Ceph,
    Garage, moto...); path-style addressing is used with it. No credentials are passed here:
    the AWS SDK inside pyarrow resolves them itself, so they never pass through this code.
    """
    from pyarrow import fs as pafs

    env = os.environ if env is None else env
    endpoint_url = endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    kwargs: dict[str, Any] = {
        # the SDK's standard retry mode with a few more attempts than pyarrow's default (3):
        # a long sync should ride out a store's transient 5xx/throttling answers
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=6),
        "connect_timeout": 10.0,
        "request_timeout": 60.0,
    }
    if region:
        kwargs["region"] = region
    if endpoint_url:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SyncUsageError(f"--endpoint-url must look like http(s)://host[:port], got "
                            f"{endpoint_url!r}")
        kwargs["scheme"] = parts.scheme
        kwargs["endpoint_override"] = parts.netloc
    return pafs.S3FileSystem(**kwargs)


# --------------------------------------------------------------------------- local side


def find_roots(archive: Path) -> list[tuple[Path, str]]:
    """The archive roots under ``archive`` that have something to ship, with their remote
    sub-prefix.

    Roots are found by :func:`recorder.roots.archive_roots` (the one discovery rule): ``archive``
    itself when it is a root (sub-prefix ``""``), else its direct children that are roots
    (sub-prefix = the child's name, i.e. the writer id), in name order. Sync ships *sealed*
    state only: a root whose writer has not committed yet (``_manifest/`` without
    ``current.json``) has nothing to ship and is left out. :class:`SyncUsageError` when the
    path leads to no root (the :class:`~recorder.roots.ArchiveRootError` message) or when no
    root has committed yet (naming them).
    """
    try:
        roots = archive_roots(archive)
    except ArchiveRootError as exc:
        raise SyncUsageError(str(exc)) from None
    sealed = [r for r in roots if (r / MANIFEST_REL).is_file()]
    if not sealed:
        names = ", ".join(str(r) for r in roots)
        raise SyncUsageError(f"{archive}: nothing to ship: no archive root has committed yet "
                             f"(no {MANIFEST_REL} in {names})")
    own = is_archive_root(archive)
    return [(r, "" if own else r.name) for r in sealed]


def segment_sealed(path: Path) -> bool:
    """True when the journal segment ``path`` is one complete zstd frame.

    Walks the frame's block headers (3 bytes each: last-block flag, type, size) without
    decompressing. A segment still being written ends after a flushed block that is not the
    last one; a segment torn by a crash ends inside a block or without the last block. Only a
    segment closed by its writer (``JournalWriter.close`` or a roll) ends exactly after its last
    block (and the 4-byte content checksum when the frame has one).
    """
    import zstandard

    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(18)  # a zstd frame header is at most 18 bytes
            try:
                pos = zstandard.frame_header_size(head)
                has_checksum = zstandard.get_frame_parameters(head).has_checksum
            except zstandard.ZstdError:
                return False
            while True:
                fh.seek(pos)
                raw = fh.read(3)
                if len(raw) < 3:
                    return False
                header = int.from_bytes(raw, "little")
                last, kind, block_size = header & 1, (header >> 1) & 3, header >> 3
                if kind == 3:  # reserved block type: not a valid frame
                    return False
                pos += 3 + (1 if kind == 1 else block_size)  # an RLE block stores one byte
                if pos > size:
                    return False
                if last:
                    return pos + (4 if has_checksum else 0) == size
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class _Item:
    """One file to ship: its path relative to the root, and where its bytes come from."""

    rel: str
    path: Path | None = None  # a local file ...
    data: bytes | None = None  # ... or bytes snapshotted in memory (the manifests)
    size: int = 0  # size the manifest promises (data files), else the size at planning
    kind: str = "data"


@dataclass(slots=True)
class _Snapshot:
    current: bytes
    manifest_parquet: bytes | None
    state: ArchiveState


def _snapshot(root: Path) -> _Snapshot:
    """``current.json`` and the ``manifest.parquet`` derived from the same commit.

    The archive replaces current.json first and manifest.parquet just after; a commit landing
    between our two reads is detected (the Parquet manifest's file set differs) and retried."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for _ in range(ATTEMPTS):
        current = (root / MANIFEST_REL).read_bytes()
        try:
            state = msgspec.json.decode(current, type=ArchiveState)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise SyncError(f"{root / MANIFEST_REL}: malformed manifest: {exc}") from None
        try:
            mp = (root / MANIFEST_PARQUET_REL).read_bytes()
        except FileNotFoundError:
            mp = None
        if mp is None:
            return _Snapshot(current, None, state)
        try:
            listed = set(pq.read_table(pa.BufferReader(mp), columns=["file"])
                         .column("file").to_pylist())
        except (pa.ArrowException, KeyError):
            listed = None
        if listed == {f.file for f in state.files} and current == (root / MANIFEST_REL).read_bytes():
            return _Snapshot(current, mp, state)
        time.sleep(0.05)
    raise SyncError(f"{root}: manifest changed under every one of {ATTEMPTS} snapshots "
                    f"(commits too frequent, or manifest.parquet stale); retry later")


def _plan(root: Path, snap: _Snapshot, journal: bool) -> tuple[list[_Item], list[_Item], int]:
    """(files that must reach the store before the manifest, the manifests, unsealed segments)."""
    items: list[_Item] = []
    for f in snap.state.files:
        items.append(_Item(rel=f.file, path=root / f.file, size=f.bytes, kind="data"))
    if snap.state.pipeline:
        p = root / snap.state.pipeline
        items.append(_Item(rel=snap.state.pipeline, path=p, size=-1, kind="state"))
    unsealed = 0
    if journal:
        jroot = root / "journal"
        if jroot.is_dir():
            for seg in sorted(jroot.rglob("*.kjz")):
                if seg.name.startswith(".tmp-"):
                    continue
                if segment_sealed(seg):
                    items.append(_Item(rel=str(seg.relative_to(root)), path=seg, size=-1,
                                       kind="journal"))
                else:
                    unsealed += 1
    for it in items:
        if "\\" in it.rel or it.rel.startswith("/") or ".." in it.rel.split("/"):
            raise SyncError(f"{root}: manifest names an unsafe path {it.rel!r}")
    manifests = []
    if snap.manifest_parquet is not None:
        manifests.append(_Item(rel=MANIFEST_PARQUET_REL, data=snap.manifest_parquet,
                               size=len(snap.manifest_parquet), kind="manifest"))
    manifests.append(_Item(rel=MANIFEST_REL, data=snap.current, size=len(snap.current),
                           kind="manifest"))
    return items, manifests, unsealed


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- reports


@dataclass(slots=True)
class RootReport:
    """What one archive root's sync did."""

    root: str
    remote: str
    planned: int = 0
    uploaded: int = 0
    uploaded_bytes: int = 0
    skipped: int = 0
    skipped_bytes: int = 0
    vanished: int = 0  # listed files deleted locally (compaction/retention) while shipping
    unsealed_segments: int = 0
    pruned: int = 0
    manifest_commit: int = 0
    manifest_uploaded: bool = False
    seconds: float = 0.0


@dataclass(slots=True)
class SyncReport:
    """Totals of a sync over every root; ``files_per_s``/``mb_per_s`` count uploads only."""

    destination: str
    dry_run: bool = False
    roots: list[RootReport] = field(default_factory=list)
    seconds: float = 0.0

    def totals(self) -> dict[str, Any]:
        up = sum(r.uploaded for r in self.roots)
        upb = sum(r.uploaded_bytes for r in self.roots)
        secs = max(self.seconds, 1e-9)
        return {
            "roots": len(self.roots), "uploaded": up, "uploaded_bytes": upb,
            "skipped": sum(r.skipped for r in self.roots),
            "skipped_bytes": sum(r.skipped_bytes for r in self.roots),
            "vanished": sum(r.vanished for r in self.roots),
            "unsealed_segments": sum(r.unsealed_segments for r in self.roots),
            "pruned": sum(r.pruned for r in self.roots),
            "seconds": round(self.seconds, 3),
            "files_per_s": round(up / secs, 1), "mb_per_s": round(upb / secs / 1e6, 2),
        }

    def as_dict(self) -> dict[str, Any]:
        return {"destination": self.destination, "dry_run": self.dry_run,
                "totals": self.totals(),
                "roots": [{k: getattr(r, k) for k in r.__dataclass_fields__} for r in self.roots]}


# --------------------------------------------------------------------------- remote side


class _Index:
    """The remote sync index of one root: rel -> {"size", "mtime_ns", "sha256"} (thread-safe)."""

    def __init__(self, fs: RemoteFileSystem, path: str) -> None:
        self.fs = fs
        self.path = path
        self.files: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._dirty = False

    def load(self) -> None:
        from pyarrow import ArrowException

        try:
            with self.fs.open_input_stream(self.path) as fh:
                doc = json.loads(fh.read())
        except FileNotFoundError:
            return
        except (ArrowException, OSError, ValueError):
            return  # unreadable or foreign index: start over (everything is re-verified)
        if isinstance(doc, dict) and doc.get("format") == INDEX_FORMAT:
            files = doc.get("files")
            if isinstance(files, dict):
                self.files = {k: v for k, v in files.items() if isinstance(v, dict)}

    def get(self, rel: str) -> dict[str, Any] | None:
        with self._lock:
            return self.files.get(rel)

    def put(self, rel: str, entry: dict[str, Any]) -> None:
        with self._lock:
            self.files[rel] = entry
            self._dirty = True

    def drop(self, rels: Iterable[str]) -> None:
        with self._lock:
            for rel in rels:
                if self.files.pop(rel, None) is not None:
                    self._dirty = True

    def save(self, force: bool = False) -> None:
        with self._lock:
            if not (self._dirty or force):
                return
            body = json.dumps({"format": INDEX_FORMAT, "files": self.files},
                              sort_keys=True, separators=(",", ":")).encode()
            self._dirty = False
        try:
            with self.fs.open_output_stream(self.path) as out:
                out.write(body)
        except BaseException:
            with self._lock:
                self._dirty = True
            raise


def _remote_listing(fs: RemoteFileSystem, base: str) -> dict[str, int]:
    """rel -> size of every object under ``base`` (one recursive listing)."""
    from pyarrow import fs as pafs

    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except FileNotFoundError:
        return {}
    out = {}
    cut = len(base) + 1
    for info in infos:
        if info.type == pafs.FileType.File:
            out[info.path[cut:]] = info.size
    return out


def _upload(fs: RemoteFileSystem, remote_path: str, item: _Item) -> tuple[int, str, int]:
    """Stream ``item`` to ``remote_path``; (bytes sent, their SHA-256, local mtime_ns).

    Raises FileNotFoundError when a local file vanished, :class:`SyncError` when a local file
    does not have the size its manifest promises (nothing is uploaded then)."""
    h = hashlib.sha256()
    if item.data is not None:
        h.update(item.data)
        with fs.open_output_stream(remote_path) as out:
            out.write(item.data)
        return len(item.data), h.hexdigest(), 0
    assert item.path is not None
    with open(item.path, "rb") as fh:
        st = os.fstat(fh.fileno())
        if item.size >= 0 and st.st_size != item.size:
            raise SyncError(f"{item.path}: {st.st_size} bytes on disk but the manifest says "
                            f"{item.size}; not shipped (run `recorder verify`)")
        sent = 0
        with fs.open_output_stream(remote_path) as out:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
                out.write(chunk)
                sent += len(chunk)
    if sent != st.st_size:
        raise SyncError(f"{item.path}: changed while being shipped ({sent} of {st.st_size} bytes)")
    return sent, h.hexdigest(), st.st_mtime_ns


def _unchanged(item: _Item, remote_size: int | None, entry: dict[str, Any] | None,
               checksum: bool) -> bool:
    """True when the remote object already holds exactly this file (see module docstring)."""
    if remote_size is None or entry is None:
        return False
    if item.data is not None:
        return (remote_size == len(item.data) == entry.get("size")
                and entry.get("sha256") == hashlib.sha256(item.data).hexdigest())
    assert item.path is not None
    st = item.path.stat()  # FileNotFoundError propagates: the file vanished
    if not remote_size == st.st_size == entry.get("size"):
        return False
    if not checksum and entry.get("mtime_ns") == st.st_mtime_ns:
        return True
    return entry.get("sha256") == _sha256_file(item.path)


def _sync_root(fs: RemoteFileSystem, root: Path, base: str, report: RootReport, *,
               journal: bool, prune: bool, dry_run: bool, workers: int, checksum: bool,
               checkpoint_s: float, progress: Callable[[str], None] | None) -> None:
    index = _Index(fs, f"{base}/{INDEX_REL}")
    index.load()
    remote = _remote_listing(fs, base)
    old_refs: set[str] = set()
    if prune and MANIFEST_REL in remote:
        old_refs = _remote_refs(fs, f"{base}/{MANIFEST_REL}")
    last_save = time.monotonic()
    lock = threading.Lock()  # report counters, `remote` and `last_save` (ship runs in threads)

    def count(uploaded: bool, nbytes: int) -> None:
        with lock:
            if uploaded:
                report.uploaded += 1
                report.uploaded_bytes += nbytes
            else:
                report.skipped += 1
                report.skipped_bytes += nbytes

    def ship(item: _Item) -> None:
        nonlocal last_save
        with lock:
            remote_size = remote.get(item.rel)
        try:
            entry = index.get(item.rel)
            if _unchanged(item, remote_size, entry, checksum):
                count(False, remote_size or 0)
                if item.path is not None and entry is not None and not dry_run:
                    mtime_ns = item.path.stat().st_mtime_ns
                    if entry.get("mtime_ns") != mtime_ns:  # same bytes, touched: re-arm the
                        index.put(item.rel, {**entry, "mtime_ns": mtime_ns})  # quick check
                return
            if dry_run:
                assert item.path is not None or item.data is not None
                count(True, item.size if item.size >= 0 else item.path.stat().st_size)  # type: ignore[union-attr]
                return
            sent, digest, mtime_ns = _upload(fs, f"{base}/{item.rel}", item)
        except FileNotFoundError:
            raise _Vanished(item.rel) from None
        index.put(item.rel, {"size": sent, "sha256": digest, "mtime_ns": mtime_ns})
        with lock:
            remote[item.rel] = sent
        count(True, sent)
        if progress is not None:
            progress(item.rel)
        with lock:
            due = time.monotonic() - last_save >= checkpoint_s
            if due:
                last_save = time.monotonic()
        if due:
            index.save()  # bounds the work a hard kill (no `finally`) makes us redo

    try:
        for attempt in range(ATTEMPTS):
            snap = _snapshot(root)
            items, manifests, unsealed = _plan(root, snap, journal)
            report.planned = len(items) + len(manifests)
            report.unsealed_segments = unsealed
            report.manifest_commit = snap.state.commit
            vanished = _run_parallel(ship, items, workers)
            if not vanished:
                break
            report.vanished += len(vanished)
            # compaction or retention retired files of this snapshot: a newer commit lists
            # their replacements; take a new snapshot (shipped files are skipped next time)
        else:
            raise SyncError(f"{root}: listed files kept disappearing during {ATTEMPTS} attempts")
        if not dry_run:
            index.save()  # every data object is in place and indexed before the commit point
        for item in manifests:  # manifest.parquet, then current.json: the commit point, last
            ship(item)
        report.manifest_uploaded = not dry_run
        if prune and not dry_run:
            keep = _refs(snap.state) | old_refs
            doomed = sorted(rel for rel in remote
                            if rel.startswith(("data/", "_state/")) and rel not in keep)
            for rel in doomed:
                fs.delete_file(f"{base}/{rel}")
            index.drop(doomed)
            report.pruned = len(doomed)
    finally:
        if not dry_run:
            index.save()


def _run_parallel(fn: Callable[[_Item], None], items: list[_Item], workers: int) -> list[str]:
    """Run ``fn`` over ``items`` on a thread pool; the rels that vanished. The first other
    error cancels what has not started and is raised."""
    vanished: list[str] = []
    if not items:
        return vanished
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="sync") as pool:
        futures = [pool.submit(fn, it) for it in items]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for fut in pending:
            fut.cancel()
        error: BaseException | None = None
        for fut in futures:
            if fut.cancelled():
                continue
            exc = fut.exception()
            if isinstance(exc, _Vanished):
                vanished.append(exc.rel)
            elif exc is not None and error is None:
                error = exc
        if error is not None:
            raise error
    return vanished


def _refs(state: ArchiveState) -> set[str]:
    refs = {f.file for f in state.files}
    if state.pipeline:
        refs.add(state.pipeline)
    return refs


def _remote_refs(fs: RemoteFileSystem, path: str) -> set[str]:
    """Files named by the remote manifest at ``path`` (empty when unreadable)."""
    try:
        with fs.open_input_stream(path) as fh:
            return _refs(msgspec.json.decode(fh.read(), type=ArchiveState))
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return set()


def sync_archive(archive: str | os.PathLike[str], destination: str, *,
                 filesystem: RemoteFileSystem | None = None, endpoint_url: str | None = None,
                 region: str | None = None, journal: bool = False, prune: bool = False,
                 dry_run: bool = False, workers: int = 8, checksum: bool = False,
                 checkpoint_s: float = 30.0,
                 progress: Callable[[str], None] | None = None) -> SyncReport:
    """Ship every archive root under ``archive`` to ``destination`` (``s3://bucket/prefix``).

    ``filesystem`` replaces the S3 filesystem built from ``endpoint_url``/``region`` and the
    AWS default chain (tests pass a fault-injecting wrapper). Raises :class:`SyncError` (or the
    store's ``OSError``) when something could not be shipped; the remote manifest of a root is
    only replaced once all of its files are in place. See the module docstring.
    """
    bucket, prefix = parse_s3_url(destination)
    roots = find_roots(Path(archive))
    fs = filesystem if filesystem is not None else make_s3_filesystem(endpoint_url, region)
    report = SyncReport(destination=destination, dry_run=dry_run)
    t0 = time.perf_counter()
    try:
        for root, sub in roots:
            base = "/".join(p for p in (bucket, prefix, sub) if p)
            rr = RootReport(root=str(root), remote=f"s3://{base}")
            report.roots.append(rr)
            t1 = time.perf_counter()
            try:
                _sync_root(fs, root, base, rr, journal=journal, prune=prune, dry_run=dry_run,
                           workers=workers, checksum=checksum, checkpoint_s=checkpoint_s,
                           progress=progress)
            finally:
                rr.seconds = round(time.perf_counter() - t1, 3)
    finally:
        report.seconds = time.perf_counter() - t0
    return report


# --------------------------------------------------------------------------- command line


@click.command("sync")
@click.option("--archive", "archive", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="An archive root, or a parent directory of several roots (one per writer).")
@click.option("--to", "destination", required=True, metavar="s3://BUCKET/PREFIX",
              help="Destination in S3-compatible object storage.")
@click.option("--endpoint-url", default=None, metavar="URL",
              help="S3-compatible endpoint (http(s)://host:port); default AWS_ENDPOINT_URL_S3, "
                   "AWS_ENDPOINT_URL, else AWS S3.")
@click.option("--region", default=None, help="Region (default AWS_REGION/AWS_DEFAULT_REGION).")
@click.option("--journal/--no-journal", default=False, show_default=True,
              help="Also ship sealed journal segments (the raw frames).")
@click.option("--prune", is_flag=True,
              help="Delete remote data/state objects no longer named by the new or the "
                   "previous remote manifest.")
@click.option("--checksum", is_flag=True,
              help="Re-hash every local file instead of trusting an unchanged size and mtime.")
@click.option("--workers", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Parallel uploads.")
@click.option("--dry-run", is_flag=True, help="Show what would be shipped; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def sync_command(archive: Path, destination: str, endpoint_url: str | None, region: str | None,
                 journal: bool, prune: bool, checksum: bool, workers: int, dry_run: bool,
                 as_json: bool) -> None:
    """Ship sealed Parquet files, then the manifest, to S3-compatible storage (resumable).

    Exit status: 0 when every root was shipped, 1 when a transfer failed (the remote
    manifest of that root is unchanged: rerun to resume), 2 for bad arguments.
    """
    try:
        parse_s3_url(destination)
        report = sync_archive(archive, destination, endpoint_url=endpoint_url, region=region,
                              journal=journal, prune=prune, dry_run=dry_run, workers=workers,
                              checksum=checksum)
    except SyncError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2 if isinstance(exc, SyncUsageError) else 1)
    except OSError as exc:
        # pyarrow's S3 errors name the operation and the key, never the credentials
        click.echo(f"Error: sync to {destination} failed: {exc}; the remote manifest was "
                   f"not replaced, rerun to resume", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    t = report.totals()
    verb = "would upload" if dry_run else "uploaded"
    for r in report.roots:
        click.echo(f"{r.root} -> {r.remote}: commit {r.manifest_commit}, {verb} {r.uploaded} "
                   f"({r.uploaded_bytes / 1e6:.1f} MB), unchanged {r.skipped}"
                   + (f", pruned {r.pruned}" if r.pruned else "")
                   + (f", {r.unsealed_segments} unsealed journal segment(s) left for later"
                      if r.unsealed_segments else ""))
    click.echo(f"{verb} {t['uploaded']} file(s), {t['uploaded_bytes'] / 1e6:.1f} MB in "
               f"{t['seconds']:.1f}s ({t['files_per_s']} files/s, {t['mb_per_s']} MB/s)")
