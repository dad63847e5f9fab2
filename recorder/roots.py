"""Finding the archive roots a user pointed at: one root, a parent of roots, or several of them.

An **archive root** is a directory holding ``_manifest/`` (the archive's own layout: journal,
Parquet files, manifest, pipeline state; a root whose writer has not committed yet has
``_manifest/`` but no ``current.json`` and reads as empty). Capture writes one root per worker
process, ``<archive_root>/<host>-w<k>/`` (see :mod:`recorder.capture`), so users normally point
tools at the **parent**: a directory whose direct children include roots. Only direct children
are considered (no recursive walk: a symlink cycle cannot make discovery loop), and children
that are not roots (``audits/``, stray files, dangling symlinks) are ignored.

:func:`archive_roots` is the one place every reader resolves a user's path (or list of paths)
into roots; the union of the roots is the archive. Roots reached twice (a root and its parent
both given, two symlinks to one directory) are listed once, so no row is read twice.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Final, TypeAlias

from recorder.errors import RecorderError

__all__ = [
    "MANIFEST_DIR",
    "ArchiveRootError",
    "PathSpec",
    "archive_roots",
    "child_roots",
    "is_archive_root",
]

#: The directory whose presence makes a directory an archive root.
MANIFEST_DIR: Final = "_manifest"

PathSpec: TypeAlias = "str | os.PathLike[str] | Iterable[str | os.PathLike[str]]"


class ArchiveRootError(RecorderError, ValueError):
    """The path does not lead to any archive root (missing, not a directory, a symlink loop,
    unreadable, or a directory with no root in it or directly below it)."""


def _check_dir(path: Path) -> None:
    """Raise :class:`ArchiveRootError` unless ``path`` is a readable directory."""
    try:
        st = path.stat()
    except FileNotFoundError:
        if os.path.lexists(path):
            raise ArchiveRootError(f"{path}: dangling symlink (its target does not exist)") \
                from None
        raise ArchiveRootError(f"{path}: no such directory") from None
    except RuntimeError as exc:  # pathlib's own loop detection
        raise ArchiveRootError(f"{path}: symlink loop ({exc})") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ArchiveRootError(f"{path}: symlink loop") from None
        raise ArchiveRootError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ArchiveRootError(f"{path}: is a file, not an archive directory")


def is_archive_root(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a directory holding ``_manifest/`` (a loop or an unreadable entry
    is simply not a root)."""
    try:
        return Path(path, MANIFEST_DIR).is_dir()
    except OSError:
        return False


def child_roots(parent: str | os.PathLike[str]) -> list[Path]:
    """The archive roots directly below ``parent``, sorted by name; ``[]`` when there is none
    or ``parent`` cannot be listed. No error handling beyond that: use :func:`archive_roots`
    for a user-given path."""
    try:
        children = sorted(Path(parent).iterdir())
    except OSError:
        return []
    return [c for c in children if is_archive_root(c)]


def _roots_of(path: Path) -> list[Path]:
    _check_dir(path)
    if is_archive_root(path):
        return [path]
    try:
        children = sorted(path.iterdir())
    except OSError as exc:
        raise ArchiveRootError(f"{path}: cannot list ({exc.strerror or exc})") from None
    roots = []
    for child in children:
        try:
            if Path(child, MANIFEST_DIR).is_dir():
                roots.append(child)
        except PermissionError as exc:  # a root we may not read must not vanish silently
            raise ArchiveRootError(f"{child}: cannot read ({exc.strerror or exc})") from None
        except OSError:
            continue  # loops, dangling links, non-directories: not roots
    if not roots:
        raise ArchiveRootError(f"{path}: not an archive (no {MANIFEST_DIR}/ in it or in any "
                               f"directory directly below it)")
    return roots


def archive_roots(path: PathSpec) -> list[Path]:
    """The archive roots ``path`` designates.

    ``path`` is a root (returned as is), a parent of roots (its root children, by name), or an
    iterable of such paths (their roots in argument order, duplicates removed by resolved
    location). Raises :class:`ArchiveRootError` with the offending path when any given path is
    missing, a file, a symlink loop, unreadable, or holds no root; and for an empty list.
    """
    paths = [Path(path)] if isinstance(path, (str, os.PathLike)) else [Path(p) for p in path]
    if not paths:
        raise ArchiveRootError("no archive path given")
    out: list[Path] = []
    seen: set[Path] = set()
    for p in paths:
        for root in _roots_of(p):
            try:
                key = root.resolve(strict=True)
            except (OSError, RuntimeError) as exc:
                raise ArchiveRootError(f"{root}: cannot resolve ({exc})") from None
            if key not in seen:
                seen.add(key)
                out.append(root)
    return out
