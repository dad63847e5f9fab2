"""Read an archive that ``recorder sync`` shipped to S3-compatible storage.

:func:`fetch_archive` mirrors ``s3://bucket/prefix`` into a local cache directory and returns
it; :class:`recorder.Archive`, ``recorder query`` and ``recorder audit`` accept the ``s3://`` URL
directly and read the mirror (DuckDB's own S3 support is an extension that cannot be installed
offline; a local mirror also makes every later query run at local-disk speed).

The prefix may be one archive root or hold several, one or two levels down (one per writer,
as ``recorder sync`` lays them out, under one directory per host when several hosts sync to
one prefix). For each remote root the committed manifest (``_manifest/current.json``)
is read first and then every Parquet file it names is fetched, unless the cache already holds a
file of that name and size (files are immutable once a manifest names them: compaction writes
new names). The local manifest is replaced last, so a reader of the cache, like a reader of the
remote copy, never sees a manifest naming a file that is not there. Cached files that the new
manifest no longer names are deleted. A second fetch of an unchanged archive transfers only the
manifest.

The cache is ``$RECORDER_CACHE_DIR/s3/<bucket>/<prefix>`` (default ``~/.cache/recorder``). The
endpoint and credentials come from the AWS default chain and ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL`` as for ``recorder sync`` (:func:`recorder.sync.make_s3_filesystem`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Final

import msgspec

from recorder.archive.store import ArchiveState
from recorder.roots import ArchiveRootError

__all__ = ["CACHE_ENV", "cache_dir", "fetch_archive", "is_remote", "resolve"]

CACHE_ENV: Final = "RECORDER_CACHE_DIR"
_MANIFEST: Final = "_manifest/current.json"
_MANIFEST_PARQUET: Final = "_manifest/manifest.parquet"
_CHUNK: Final = 8 * 1024 * 1024


def is_remote(path: str | os.PathLike[str]) -> bool:
    """True for an ``s3://`` URL (a ``str``: a ``Path`` has lost its double slash)."""
    return isinstance(path, str) and path.startswith("s3://")


def cache_dir(url: str, env: Mapping[str, str] | None = None) -> Path:
    """Where :func:`fetch_archive` mirrors ``url``."""
    from recorder.sync import SyncUsageError, parse_s3_url

    env = os.environ if env is None else env
    try:
        bucket, prefix = parse_s3_url(url)
    except SyncUsageError as exc:
        raise ArchiveRootError(str(exc).replace("destination", "archive")) from None
    base = Path(env.get(CACHE_ENV) or Path.home() / ".cache" / "recorder")
    return base.joinpath("s3", bucket, *[p for p in prefix.split("/") if p])


def _info(fs: Any, path: str) -> Any:
    return fs.get_file_info([path])[0]


def _read(fs: Any, path: str) -> bytes:
    with fs.open_input_stream(path) as fh:
        data: bytes = fh.read()
    return data


def _remote_roots(fs: Any, base: str, depth: int = 2) -> list[tuple[str, str]]:
    """(remote root path, its path relative to ``base``) of every root at ``base`` or up to
    ``depth`` levels below it (``<prefix>/<host>/<writer>/`` is how several hosts sync)."""
    from pyarrow import fs as pafs

    if _info(fs, f"{base}/{_MANIFEST}").type == pafs.FileType.File:
        return [(base, "")]
    if depth == 0:
        return []
    children = fs.get_file_info(pafs.FileSelector(base, recursive=False, allow_not_found=True))
    found = []
    for child in sorted(children, key=lambda i: i.path):
        if child.type == pafs.FileType.Directory and not PurePosixPath(child.path).name.startswith("_"):
            name = PurePosixPath(child.path).name
            found += [(path, f"{name}/{rel}" if rel else name)
                      for path, rel in _remote_roots(fs, child.path, depth - 1)]
    return found


def _safe_rel(rel: str) -> str:
    """A manifest-named path, refused if it could leave the root (a hostile manifest)."""
    parts = PurePosixPath(rel).parts
    if not parts or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ArchiveRootError(f"remote manifest names an unsafe path {rel!r}")
    return rel


def _fetch(fs: Any, src: str, dst: Path) -> int:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".tmp-{dst.name}")
    n = 0
    with fs.open_input_stream(src) as fh, tmp.open("wb") as out:
        while chunk := fh.read(_CHUNK):
            out.write(chunk)
            n += len(chunk)
    os.replace(tmp, dst)
    return n


def _mirror_root(fs: Any, remote: str, local: Path) -> dict[str, int]:
    manifest = _read(fs, f"{remote}/{_MANIFEST}")
    try:
        state = msgspec.json.decode(manifest, type=ArchiveState)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ArchiveRootError(f"{remote}/{_MANIFEST}: not an archive manifest: {exc}") from None
    wanted = {_safe_rel(f.file): f.bytes for f in state.files}
    fetched = kept = nbytes = 0
    for rel, size in sorted(wanted.items()):
        dst = local / rel
        if dst.is_file() and dst.stat().st_size == size:
            kept += 1
            continue
        nbytes += _fetch(fs, f"{remote}/{rel}", dst)
        fetched += 1
    from pyarrow import fs as pafs

    if _info(fs, f"{remote}/{_MANIFEST_PARQUET}").type == pafs.FileType.File:
        nbytes += _fetch(fs, f"{remote}/{_MANIFEST_PARQUET}", local / _MANIFEST_PARQUET)
    target = local / _MANIFEST
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(".tmp-current.json")
    tmp.write_bytes(manifest)
    os.replace(tmp, target)  # the commit point, last
    removed = 0
    data = local / "data"
    if data.is_dir():
        for f in data.rglob("*"):
            if f.is_file() and f.relative_to(local).as_posix() not in wanted:
                f.unlink()
                removed += 1
    return {"fetched": fetched, "kept": kept, "removed": removed, "bytes": nbytes}


def fetch_archive(url: str, cache: Path | None = None, *, filesystem: Any = None,
                  endpoint_url: str | None = None, region: str | None = None) -> list[Path]:
    """Mirror the archive at ``url`` (``s3://bucket/prefix``: a root, or roots up to two levels
    below it) into ``cache`` (default :func:`cache_dir`); returns the local roots.
    ``filesystem`` replaces the S3 filesystem (tests). Raises
    :class:`~recorder.roots.ArchiveRootError` when the URL holds no archive root, and the
    store's ``OSError`` when it cannot be reached."""
    from recorder.sync import make_s3_filesystem, parse_s3_url

    local = cache if cache is not None else cache_dir(url)
    bucket, prefix = parse_s3_url(url)
    fs = filesystem if filesystem is not None else make_s3_filesystem(endpoint_url, region)
    base = "/".join(p for p in (bucket, prefix) if p)
    roots = _remote_roots(fs, base)
    if not roots:
        raise ArchiveRootError(f"{url}: no archive root there (no {_MANIFEST} at the prefix "
                               "or up to two levels under it)")
    names = {name for _, name in roots}
    if local.is_dir() and "" not in names:  # roots gone from the remote copy leave the cache
        for manifest in sorted(local.rglob(_MANIFEST)):
            root = manifest.parent.parent
            if root.relative_to(local).as_posix() not in names and root.is_dir():
                shutil.rmtree(root)
    out = []
    for remote, name in roots:
        dst = local / name if name else local
        _mirror_root(fs, remote, dst)
        out.append(dst)
    return out


def resolve(paths: str | os.PathLike[str] | list[Any] | tuple[Any, ...]) -> list[Path]:
    """Local paths for a user's archive path(s): each ``s3://`` URL is fetched into its cache
    (:func:`fetch_archive`), anything else is taken as a local path."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out: list[Path] = []
    for p in items:
        out += fetch_archive(p) if is_remote(p) else [Path(p)]
    return out
