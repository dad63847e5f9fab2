"""Reading an archive parent and a sim truth file into plain values (the I/O half of the soak).

An archive *parent* is the ``archive_root`` of ``recorder run``: one writer root per worker
(``<parent>/<host>-w<k>/``), each with its own manifest. Readers treat the parent as the union of
its roots and read committed files only (those the manifest lists). These helpers are shared by
the soak and the capture integration tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.archive.journal import list_segments, read_segment
from recorder.capture.writer import writer_roots
from recorder.errors import RecorderError
from recorder.frames import Frame

__all__ = [
    "ArchiveReadError",
    "dataset",
    "rows",
    "journal_frames",
    "verify_root",
    "manifest_files",
    "FileCheck",
    "check_files",
    "duplicate_rows",
    "TruthDigest",
    "read_truth_digest",
]


class ArchiveReadError(RecorderError, OSError):
    """An archive root or truth file cannot be read at all (missing manifest, bad JSON)."""


def manifest_files(root: Path) -> list[dict[str, Any]]:
    """The committed file entries (``dataset``, ``file``, ``rows``...) of one writer root."""
    path = root / "_manifest" / "current.json"
    try:
        state = msgspec.json.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError) as exc:
        raise ArchiveReadError(f"cannot read manifest {path}: {exc}") from exc
    return list(state["files"])


def _plain(t: pa.Table) -> pa.Table:
    """Dictionary columns decoded (files of one dataset may differ in dictionary encoding)."""
    return t.cast(pa.schema([pa.field(x.name, x.type.value_type if pa.types.is_dictionary(x.type)
                                      else x.type) for x in t.schema]))


def dataset(parent: Path, name: str, roots: list[Path] | None = None,
            columns: list[str] | None = None) -> pa.Table | None:
    """One dataset over every writer root under ``parent`` (or over ``roots``); None if no
    committed file holds it."""
    tables = []
    for root in roots if roots is not None else writer_roots(parent):
        for f in manifest_files(root):
            if f["dataset"] == name:
                tables.append(_plain(pq.read_table(root / f["file"], columns=columns)))
    return pa.concat_tables(tables) if tables else None


def rows(parent: Path, name: str, roots: list[Path] | None = None,
         columns: list[str] | None = None) -> list[dict[str, Any]]:
    """:func:`dataset` as a list of row dicts (empty if absent)."""
    t = dataset(parent, name, roots, columns)
    return t.to_pylist() if t is not None else []


def journal_frames(root: Path) -> list[Frame]:
    """Every frame of one writer root's journal, in journal order."""
    out: list[Frame] = []
    for seg in list_segments(root / "journal"):
        out.extend(f for _, f in read_segment(root / "journal" / seg))
    return out


def verify_root(root: Path, timeout_s: float = 300.0) -> dict[str, Any]:
    """``recorder verify --archive ROOT --json`` as a dict, plus ``"exit"`` (its exit status).
    Raises :class:`ArchiveReadError` if it prints no JSON (a crash)."""
    out = subprocess.run([sys.executable, "-m", "recorder", "verify", "--archive", str(root),
                          "--json"], capture_output=True, text=True, timeout=timeout_s)
    try:
        report: dict[str, Any] = json.loads(out.stdout)
    except ValueError as exc:
        raise ArchiveReadError(f"recorder verify {root} printed no report (exit "
                               f"{out.returncode}): {out.stderr[-1000:]}") from exc
    report["exit"] = out.returncode
    return report


@dataclass(frozen=True, slots=True)
class FileCheck:
    """One Parquet file of an archive: did it open and hold the rows the manifest says?"""

    path: str
    ok: bool
    error: str | None = None


def check_files(parent: Path) -> list[FileCheck]:
    """Open every Parquet file under ``parent`` (committed or not: an uncommitted leftover that
    cannot be read is as much a defect as a committed one) and compare the row count of the
    committed ones with their manifest entry."""
    expected: dict[Path, int] = {}
    for root in writer_roots(parent):
        for f in manifest_files(root):
            expected[(root / f["file"]).resolve()] = int(f["rows"])
    out: list[FileCheck] = []
    for path in sorted(Path(parent).rglob("*.parquet")):
        try:
            n = pq.ParquetFile(path).metadata.num_rows
            want = expected.get(path.resolve())
            if want is not None and want != n:
                raise ValueError(f"{n} rows, manifest says {want}")
            out.append(FileCheck(str(path), True))
        except Exception as exc:  # noqa: BLE001 - any failure to open is the finding
            out.append(FileCheck(str(path), False, f"{type(exc).__name__}: {exc}"[:300]))
    return out


def duplicate_rows(table: pa.Table | None, keys: list[str], limit: int = 5) -> tuple[int, list[dict[str, Any]]]:
    """(number of extra rows, a few examples) among rows of ``table`` that are identical on
    ``keys`` — the same message derived into the archive twice."""
    if table is None or table.num_rows == 0:
        return 0, []
    counts = table.select(keys).group_by(keys).aggregate([([], "count_all")])
    dup = counts.filter(pc.greater(counts["count_all"], 1))
    extra = int(pc.sum(pc.subtract(dup["count_all"], 1)).as_py() or 0) if dup.num_rows else 0
    return extra, dup.slice(0, limit).to_pylist()


@dataclass(slots=True)
class TruthDigest:
    """What the comparison needs from a truth file (the file itself may hold millions of
    order events, which are skipped without decoding)."""

    events: int = 0  #: market events of every kind
    trades: list[tuple[str, int, int]] = field(default_factory=list)  #: (symbol, trade_id, t_ns)
    faults: list[dict[str, Any]] = field(default_factory=list)  #: ``kind == "fault"`` records
    instruments: list[dict[str, Any]] = field(default_factory=list)  #: status/instrument events
    server_stop_ns: int | None = None


def _lines(path: Path) -> Iterator[bytes]:
    if path.suffix == ".zst":
        import zstandard

        with open(path, "rb") as fh:
            reader = zstandard.ZstdDecompressor().stream_reader(fh)
            buf = b""
            while chunk := reader.read(1 << 20):
                buf += chunk
                *done, buf = buf.split(b"\n")
                yield from done
            if buf:
                yield buf
        return
    with open(path, "rb") as fh:
        yield from fh


def read_truth_digest(path: Path) -> TruthDigest:
    """Stream a truth file (plain or ``.zst``) into a :class:`TruthDigest`; a truncated last
    line is ignored."""
    digest = TruthDigest()
    dec = msgspec.json.Decoder()
    try:
        for line in _lines(Path(path)):
            if line.startswith(b'{"ev":'):
                digest.events += 1
                kind = line[7:line.index(b'"', 7)]
                if kind in (b"trade", b"status", b"instrument"):
                    try:
                        ev = dec.decode(line)
                    except msgspec.DecodeError:
                        break
                    if kind == b"trade":
                        digest.trades.append((ev["symbol"], ev["trade_id"], ev["t_ns"]))
                    else:
                        digest.instruments.append(ev)
                continue
            try:
                rec = dec.decode(line)
            except msgspec.DecodeError:
                break
            if not isinstance(rec, dict):
                continue
            if "ev" in rec:  # a market event whose tag is not first (not written that way today)
                digest.events += 1
                continue
            if rec.get("kind") == "fault":
                digest.faults.append(rec)
            elif rec.get("kind") == "server_stop":
                digest.server_stop_ns = rec.get("t_ns")
    except OSError as exc:
        raise ArchiveReadError(f"cannot read truth file {path}: {exc}") from exc
    return digest
