"""Where capture writes frames: the archive's journal when it exists, else a local stand-in.

The archive engineer's :class:`recorder.archive.journal.JournalWriter` is the real journal
(``append``/``flush``/``close``). Until it is importable, :class:`FallbackJournal` keeps the same
three-method contract with a deliberately simple format so capture is usable and testable:
one file per process run, each record a 4-byte big-endian length followed by the msgpack
encoding of the :class:`~recorder.frames.Frame`. A torn tail record (crash mid-write) is
ignored by :func:`read_frames`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import msgspec

from recorder.frames import Frame

__all__ = ["Journal", "FallbackJournal", "open_journal", "read_frames", "journal_files",
           "all_frames"]

_ENC = msgspec.msgpack.Encoder()
_DEC = msgspec.msgpack.Decoder(Frame)


class Journal(Protocol):
    def append(self, frame: Frame) -> Any: ...
    def flush(self) -> Any: ...
    def close(self) -> Any: ...


class FallbackJournal:
    """Length-prefixed msgpack frames, flushed to the OS on :meth:`flush` and at least every
    ``fsync_interval_s`` fsynced (a kill -9 loses nothing already flushed)."""

    def __init__(self, root: Path, *, host: str, fsync_interval_s: float = 1.0,
                 name: str = "") -> None:
        self.dir = Path(root) / "journal"
        self.dir.mkdir(parents=True, exist_ok=True)
        stem = f"{host}-{name or 'capture'}-{os.getpid()}-{time.time_ns()}"
        self.path = self.dir / f"{stem}.frames"
        self._f = open(self.path, "ab", buffering=1 << 20)  # noqa: SIM115 - closed in close()
        self._fsync_interval = fsync_interval_s
        self._last_fsync = time.monotonic()
        self.frames = 0
        self.bytes = 0

    def append(self, frame: Frame) -> None:
        body = _ENC.encode(frame)
        self._f.write(len(body).to_bytes(4, "big"))
        self._f.write(body)
        self.frames += 1
        self.bytes += len(body) + 4

    def flush(self) -> None:
        if self._f.closed:
            return
        self._f.flush()
        now = time.monotonic()
        if now - self._last_fsync >= self._fsync_interval:
            os.fsync(self._f.fileno())
            self._last_fsync = now

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()


def open_journal(root: Path, *, host: str, fsync_interval_s: float, name: str) -> Journal:
    """The archive's JournalWriter under ``root/<name>`` if importable, else the fallback."""
    try:
        from recorder.archive.journal import JournalWriter  # type: ignore[import-not-found]
    except ImportError:
        return FallbackJournal(root, host=host, fsync_interval_s=fsync_interval_s, name=name)
    return JournalWriter(Path(root) / "workers" / name, host=host,  # type: ignore[no-any-return]
                         fsync_interval_s=fsync_interval_s, background_flush=True)


def journal_files(root: Path) -> list[Path]:
    return sorted(Path(root).rglob("*.frames"))


def read_frames(path: Path) -> Iterator[Frame]:
    """Frames of one fallback journal file (a torn last record is skipped)."""
    data = Path(path).read_bytes()
    pos = 0
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        if pos + 4 + size > len(data):
            return
        yield _DEC.decode(data[pos + 4:pos + 4 + size])
        pos += 4 + size


def all_frames(root: Path) -> Iterator[Frame]:
    """Every frame under ``root``: archive segments (``*.kjz``) and fallback files, file by
    file in name order (each file is one process run of one worker)."""
    try:
        from recorder.archive.journal import read_segment  # type: ignore[import-not-found]
    except ImportError:
        read_segment = None
    for path in sorted(Path(root).rglob("*")):
        if path.suffix == ".frames":
            yield from read_frames(path)
        elif path.suffix == ".kjz" and read_segment is not None:
            for _, frame in read_segment(path):
                yield frame
