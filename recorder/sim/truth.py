"""Ground truth of a simulator run: every market event and every injected fault, as JSONL.

One JSON object per line. Market events are the market's msgspec Structs encoded as they
define themselves (tagged with ``"ev"``, see :mod:`recorder.sim.events`; they carry their own
exchange time ``t_ns``), so :func:`recorder.sim.events.decode_event` reads them back; faults are the
dicts produced by :class:`recorder.sim.faults.FaultPlan` (``"kind": "fault"``); the server
also records lifecycle lines (``"kind": "server"``, ``"kind": "connection"``, ...).

A path ending in ``.zst`` is written zstd-compressed (a single frame, streamed), anything else
as plain text. Lines are buffered and flushed at least every ``flush_every`` lines and on
:meth:`TruthWriter.close`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from recorder.errors import RecorderError

__all__ = ["TruthError", "TruthWriter", "read_truth"]


class TruthError(RecorderError, OSError):
    """The truth file cannot be opened or written."""


_ENCODER = msgspec.json.Encoder()


def _struct_line(event: Any, t_ns: int | None) -> bytes:
    if t_ns is None or hasattr(event, "t_ns"):
        return _ENCODER.encode(event) + b"\n"
    body = msgspec.to_builtins(event)
    if isinstance(body, dict):
        body["t_ns"] = t_ns
    return _ENCODER.encode(body) + b"\n"


class TruthWriter:
    """Append-only JSONL (optionally zstd) sink for events and faults."""

    def __init__(self, path: Path, *, flush_every: int = 1000) -> None:
        self.path = Path(path)
        self._flush_every = flush_every
        self._pending = 0
        self.lines = 0
        try:
            raw: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise TruthError(f"cannot open truth file {self.path}: {exc.strerror or exc}") from exc
        self._raw = raw
        self._zstd_writer: Any = None
        if self.path.suffix == ".zst":
            import zstandard

            self._zstd_writer = zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False)
            self._out: io.RawIOBase | BinaryIO | Any = self._zstd_writer
        else:
            self._out = raw

    def _write(self, line: bytes) -> None:
        self._out.write(line)
        self.lines += 1
        self._pending += 1
        if self._pending >= self._flush_every:
            self.flush()

    def write_record(self, record: dict[str, Any]) -> None:
        """One plain dict (a fault or lifecycle record)."""
        self._write(_ENCODER.encode(record) + b"\n")

    def write_events(self, events: list[Any], *, t_ns: int | None = None) -> None:
        """Market SimEvents (msgspec Structs or plain dicts)."""
        for event in events:
            if isinstance(event, dict):
                self.write_record(event if t_ns is None or "t_ns" in event else {**event, "t_ns": t_ns})
            else:
                self._write(_struct_line(event, t_ns))

    def flush(self) -> None:
        self._pending = 0
        if self._zstd_writer is not None:
            import zstandard

            self._zstd_writer.flush(zstandard.FLUSH_BLOCK)
        self._raw.flush()

    def close(self) -> None:
        if self._raw.closed:
            return
        if self._zstd_writer is not None:
            self._zstd_writer.close()
        self._raw.close()

    def __enter__(self) -> TruthWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_truth(path: Path) -> list[dict[str, Any]]:
    """Read a truth file back (plain or ``.zst``); a truncated last line is ignored."""
    data = Path(path).read_bytes()
    if Path(path).suffix == ".zst":
        import zstandard

        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    out = []
    for line in data.splitlines():
        try:
            out.append(msgspec.json.decode(line))
        except msgspec.DecodeError:
            break
    return out
