"""Is a live data file readable? Cheap checks, full decodes where needed, cached verdicts.

A file the manifest lists can still be damaged on disk (truncated by a full disk or a bad
copy, bytes flipped, deleted by hand). Readers must then leave that one file out, say so
loudly, and go on answering from every other file; ``recorder repair`` re-derives it from the
journal (:mod:`recorder.archive.repair`).

Two levels of checking (:func:`check_file`):

* **cheap** (every reader, before it reads a file): the file exists, its Parquet footer
  parses and holds the manifest's row count. A truncation or an append (the footer is no
  longer at the end), a missing file or a damaged footer are all caught here, at the cost of
  one ``stat`` and one footer read. (The size is not compared with the manifest's: a file
  rewritten with the same rows reads, and ``recorder verify`` judges its values.)
* **deep** (``recorder verify``, ``recorder repair``, and a reader whose read failed although
  the cheap check passed): every column of every row group is decoded. Damage inside a data
  page that leaves size and footer intact is only found this way.

:class:`FileHealth` caches verdicts by ``(path, size, mtime_ns)``, so a file is opened once
per process (until it changes), not once per query; it also makes sure each damaged file is
warned about once. Warnings go to the ``recorder.archive.health`` logger (stderr when logging
is not configured), naming the file, what is wrong and the command that repairs it.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from recorder.archive.store import FileEntry

__all__ = ["UNREADABLE_CAUSE", "FileProblem", "FileHealth", "check_file", "repair_hint"]

log = logging.getLogger("recorder.archive.health")

#: The audit's gap cause for the time range of a file that cannot be read.
UNREADABLE_CAUSE: Final = "unreadable_file"
#: Deep checks decode at most this many rows at a time (bounded memory on big files).
_DEEP_BATCH_ROWS: Final = 1 << 16


class FileProblem(msgspec.Struct, frozen=True, kw_only=True):
    """A live file (manifest row) that cannot be read, and why."""

    root: str
    file: str
    dataset: str
    date: str
    rows: int
    min_time: int | None
    max_time: int | None
    reason: str
    #: the symbols the manifest lists for the file (at most 1000; empty when none)
    symbols: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return Path(self.root) / self.file

    @property
    def fix(self) -> str:
        """The command that re-derives this file from the root's journal."""
        return repair_hint(self.root)


def repair_hint(root: str | os.PathLike[str]) -> str:
    """``recorder repair --archive ROOT`` (shell-quoted)."""
    return f"recorder repair --archive {shlex.quote(str(root))}"


def _describe(exc: BaseException) -> str:
    """A short human description of a read error (never parsed by anything)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


def check_file(path: Path, entry: FileEntry, *, deep: bool = False) -> str | None:
    """``None`` when ``path`` (the file of manifest row ``entry``) reads, else the reason.

    Cheap: the footer parses and its row count equals ``entry.rows``. ``deep``: also decode
    every column of every row group. Never raises for a damaged file."""
    if not path.exists():
        return "missing (the manifest lists it, the disk does not have it)"
    try:
        with pq.ParquetFile(path) as pf:
            rows = pf.metadata.num_rows
            if rows != entry.rows:
                return f"footer says {rows} rows, the manifest recorded {entry.rows}"
            if deep:
                decoded = 0
                for batch in pf.iter_batches(batch_size=_DEEP_BATCH_ROWS, use_threads=False):
                    decoded += batch.num_rows
                if decoded != entry.rows:
                    return f"decoded {decoded} rows, the manifest recorded {entry.rows}"
    except (OSError, pa.ArrowException, ValueError, IndexError, MemoryError) as exc:
        return f"not a readable Parquet file ({_describe(exc)})"
    return None


class FileHealth:
    """Verdicts on live files, cached by ``(path, size, mtime_ns)``; one object per reader
    (an :class:`recorder.query.api.Archive`, an audit, a verify run), never global.

    ``warn``: log each damaged file once (``recorder.archive.health``, WARNING)."""

    def __init__(self, *, warn: bool = True) -> None:
        self.warn = warn
        #: (path, size, mtime_ns) -> (deep checked, reason or None)
        self._verdicts: dict[tuple[str, int, int], tuple[bool, str | None]] = {}
        self._warned: set[tuple[str, str]] = set()

    def check(self, root: Path, entry: FileEntry, *, deep: bool = False) -> FileProblem | None:
        """The problem of ``entry`` (a live file of ``root``), or None when it reads.

        A cached verdict is reused while the file's size and mtime are unchanged; a cheap
        verdict is upgraded by a deep check when ``deep`` asks for one."""
        path = root / entry.file
        try:
            st = path.stat()
        except OSError as exc:  # nothing to cache: the next look may find it
            reason = ("missing (the manifest lists it, the disk does not have it)"
                      if isinstance(exc, FileNotFoundError) else f"cannot stat: {_describe(exc)}")
            return self._problem(root, entry, reason)
        key = (str(path), st.st_size, st.st_mtime_ns)
        cached = self._verdicts.get(key)
        if cached is not None and (cached[0] or not deep or cached[1] is not None):
            return self._problem(root, entry, cached[1])
        reason = check_file(path, entry, deep=deep)
        self._verdicts[key] = (deep, reason)
        return self._problem(root, entry, reason)

    def deep_checked(self, root: Path, entry: FileEntry) -> bool:
        """Whether a deep verdict on ``entry``'s current bytes is cached."""
        path = root / entry.file
        try:
            st = path.stat()
        except OSError:
            return True  # nothing more to learn by decoding
        cached = self._verdicts.get((str(path), st.st_size, st.st_mtime_ns))
        return cached is not None and (cached[0] or cached[1] is not None)

    def problems(self, root: Path, entries: Iterable[FileEntry], *,
                 deep: bool = False) -> list[FileProblem]:
        """:meth:`check` of every entry; the problems found, in entry order."""
        out = []
        for entry in entries:
            p = self.check(root, entry, deep=deep)
            if p is not None:
                out.append(p)
        return out

    def _problem(self, root: Path, entry: FileEntry, reason: str | None) -> FileProblem | None:
        if reason is None:
            return None
        problem = FileProblem(root=str(root), file=entry.file, dataset=entry.dataset,
                              date=entry.date, rows=entry.rows, min_time=entry.min_time,
                              max_time=entry.max_time, reason=reason,
                              symbols=tuple(entry.symbols))
        if self.warn and (problem.file, problem.root) not in self._warned:
            self._warned.add((problem.file, problem.root))
            log.warning("skipping unreadable file %s (dataset %s, %s, %d rows): %s; its rows "
                        "are left out of every result until it is repaired: %s",
                        problem.path, problem.dataset, problem.date, problem.rows,
                        problem.reason, problem.fix)
        return problem
