"""Archive paths: Hive-style partitions and safe file-name components.

Layout under the archive root::

    journal/<YYYY-MM-DD>/<host>-<start_ns>-<run>-<n>.kjz      raw journal segments (format 2)
    journal/ingest/<digest>/...kjz                            segments converted by ingest
    data/dataset=<name>/date=<YYYY-MM-DD>/part-<commit>-<n>.parquet     rolling files
    data/dataset=<name>/date=<YYYY-MM-DD>/compact-<commit>-<n>.parquet  compacted (sorted)
    _manifest/current.json      committed state (files, journal positions, sources)
    _manifest/manifest.parquet  one row per live data file (for pruning)
    _manifest/writer.lock       flock held by the one committing process
    _state/pipeline-<commit>.state  pipeline state at that commit (msgpack, crash recovery;
                                    see recorder.pipeline.state)

Symbols never appear in paths (they live in the files and the manifest); where a symbol must
name something on disk, :func:`encode_component` gives an injective, portable encoding.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Final

__all__ = ["DAY_NS", "day_of", "partition_dir", "encode_component", "decode_component"]

DAY_NS: Final = 86_400_000_000_000
_SAFE: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def day_of(ns: int) -> str:
    """UTC date ``YYYY-MM-DD`` of an int-ns time (times before 1970 clamp to 1970-01-01)."""
    return time.strftime("%Y-%m-%d", time.gmtime(max(ns, 0) // 1_000_000_000))


def partition_dir(root: Path, dataset: str, day: str) -> Path:
    """``root/data/dataset=<dataset>/date=<day>`` (dataset names come from schema files)."""
    if set(dataset) - _SAFE or set(day) - _SAFE:
        raise ValueError(f"unsafe partition {dataset!r}/{day!r}")
    return root / "data" / f"dataset={dataset}" / f"date={day}"


def encode_component(text: str) -> str:
    """Injective, portable file-name encoding of any string (``BTC/USD`` -> ``BTC~2FUSD``).

    Letters, digits, ``-`` and ``_`` are kept; every other UTF-8 byte becomes ``~XX``. The
    result never contains ``/``, ``\\``, ``.``, NUL or non-ASCII, so ``..``, absolute paths,
    quotes and unicode cannot escape or collide; empty text encodes as ``~``.
    """
    if not text:
        return "~"
    out = []
    for ch in text:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend(f"~{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


def decode_component(name: str) -> str:
    """Inverse of :func:`encode_component`."""
    if name == "~":
        return ""
    raw = bytearray()
    i = 0
    while i < len(name):
        if name[i] == "~":
            raw.append(int(name[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(name[i].encode())
            i += 1
    return raw.decode("utf-8", "surrogatepass")
