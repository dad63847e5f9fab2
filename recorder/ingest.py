"""``recorder ingest FILE... --archive DIR``: derive the archive from recorded inputs.

Accepted inputs (detected from content, optionally zstd-compressed):

* journal segments (``*.kjz``, :mod:`recorder.archive.journal`) - copied into the archive's
  journal if not already there;
* the ``recorder sim --record`` format: JSON lines ``{"recv_ns","conn","ep","frame"}`` (a line
  with ``"event":"close"`` becomes a ``Disconnected`` marker);
* plain Kraken WS messages: JSON lines (one message per line, as received), a JSON array of
  messages, a single message (pretty-printed is fine), or ``{"init": msg, "updates": [msg...]}``.
  Messages are kept byte-exact (sliced from the input, never re-encoded). Receive time = the
  message's exchange ``timestamp`` when it has one, else the previous message's (else the first
  later timestamp of this invocation, else 0).

Non-journal inputs are first converted into one journal segment per input
(``journal/ingest/<sha256>.kjz``), then everything is derived through the same
:class:`~recorder.archive.session.Deriver` as live capture (the frames just converted are
derived from memory rather than decoded from the new segment again, and the segment is
compressed on a zstd worker thread; the archive is the same). Idempotent: an input whose digest
is already recorded adds nothing. Crash-safe: rerunning after a crash resumes from the last
commit.

Bounded memory: a zstd-compressed input is decompressed in 1 MiB chunks and refused with a
clear error (``IngestError``, exit 1) once it expands past ``max_decompressed_bytes``
(:data:`MAX_DECOMPRESSED_BYTES`, 256 MiB by default; ``--max-decompressed-mib`` on the command
line), so a zstd bomb can never exhaust memory.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import click
import msgspec
import zstandard

from recorder import _core
from recorder.archive.journal import SEGMENT_SUFFIX, JournalWriter, as_read, list_segments
from recorder.archive.session import Deriver, journal_settings
from recorder.archive.store import ArchiveBusyError
from recorder.errors import RecorderError
from recorder.frames import Frame, Stream
from recorder.pipeline import markers as mk
from recorder.pipeline.settings import DeriveSettings
from recorder.pipeline.state import StateError
from recorder.progress import progress_bar
from recorder.protocol.reject import utf8_error_offset
from recorder.protocol.timestamps import rfc3339_to_ns

__all__ = ["IngestError", "ingest", "problems", "print_summary", "read_input_frames",
           "ingest_command"]

_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_TS: Final = re.compile(rb'"timestamp"\s*:\s*"([^"]{10,40})"')
_SIM_LINE: Final = msgspec.json.Decoder(dict[str, Any])
#: Largest decompressed size of one zstd-compressed input; larger inputs are refused (an
#: ``IngestError`` naming the cap) instead of being expanded into memory.
MAX_DECOMPRESSED_BYTES: Final = 256 * 2**20
_ZSTD_CHUNK: Final = 1 << 20


class _SimFrame(msgspec.Struct):
    """The common ``recorder sim --record`` line: one received frame."""

    recv_ns: int
    frame: str
    conn: int = 0
    ep: str = "spot"


_SIM_FRAME: Final = msgspec.json.Decoder(_SimFrame)
_SIM_STREAMS: Final = frozenset({"spot", "l3", "futures"})
#: The stream codes of ``recorder._core.sim_record_frames``.
_CORE_STREAMS: Final[tuple[Stream, ...]] = ("spot", "l3", "futures")
#: ``engine`` of :func:`ingest`: the compiled core's bulk framing, journal encoding and Spot
#: book derivation (default) or the pure-Python reference.
ENGINES: Final = ("core", "python")


class IngestError(RecorderError):
    """An input could not be read at all (missing, unreadable, unknown format)."""


class _InitUpdates(msgspec.Struct):
    init: msgspec.Raw
    updates: list[msgspec.Raw]


def _read_bytes(path: Path, max_decompressed: int = MAX_DECOMPRESSED_BYTES) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"{path}: {exc}") from exc
    if data.startswith(_ZSTD_MAGIC):
        chunks: list[bytes] = []
        size = 0
        try:
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data),
                                                            read_across_frames=True) as r:
                while True:
                    chunk = r.read(_ZSTD_CHUNK)  # at most one chunk of output per read
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > max_decompressed:
                        raise IngestError(
                            f"{path}: zstd input expands past {max_decompressed} bytes "
                            f"(the decompressed-size cap); refused")
                    chunks.append(chunk)
        except zstandard.ZstdError as exc:
            raise IngestError(f"{path}: corrupt zstd: {exc}") from exc
        finally:
            del data
        data = b"".join(chunks)
        chunks.clear()
    return data


def _exchange_ts(message: bytes) -> int | None:
    m = _TS.search(message)
    if m is None:
        return None
    try:
        return rfc3339_to_ns(m.group(1).decode("ascii"))
    except Exception:  # noqa: BLE001 - a bad timestamp is the decoder's business, not ours
        return None


def _stream_of(message: bytes) -> str:
    head = message[:200]
    if b'"level3"' in head:
        return "l3"
    if b'"feed"' in head or b'"event"' in head and b'"channel"' not in head:
        return "futures"
    return "spot"


def _messages(data: bytes) -> Iterator[bytes]:
    stripped = data.strip()
    if stripped.startswith(b"{") and b'"init"' in stripped[:200]:
        try:
            doc = msgspec.json.decode(stripped, type=_InitUpdates)
            yield bytes(doc.init)
            for u in doc.updates:
                yield bytes(u)
            return
        except msgspec.DecodeError:
            pass
    if stripped.startswith(b"["):
        try:
            for raw in msgspec.json.decode(stripped, type=list[msgspec.Raw]):
                yield bytes(raw)
            return
        except msgspec.DecodeError:
            pass
    lines = stripped.split(b"\n")
    if len(lines) > 1 and stripped.startswith(b"{"):
        if utf8_error_offset(lines[0]) is None:  # else one message per line: not_utf8
            try:  # one pretty-printed document?
                msgspec.json.decode(lines[0])
            except msgspec.DecodeError:
                yield stripped
                return
    for line in lines:
        line = line.strip(b"\r \t")
        if line:
            yield line


def _sim_other_line(line: bytes, start_ns: int | None) -> Frame | None:
    """A sim-record line that is not a plain frame line (the reference's slow path): a frame
    line with unusual fields, a ``close`` event (a ``Disconnected`` marker), something else
    (None), or not a record at all (the line itself becomes a frame: a reject later)."""
    try:
        d = _SIM_LINE.decode(line)
        recv = int(d["recv_ns"])
        conn = int(d.get("conn", 0))
        if "frame" in d:
            ep = d.get("ep", "spot")
            return Frame(recv_ns=recv, conn_id=conn,
                         stream=ep if ep in ("spot", "l3", "futures") else "spot",
                         direction="in", payload=d["frame"].encode("utf-8", "surrogatepass"))
        if d.get("event") == "close":
            return mk.marker_frame(mk.Disconnected(conn_id=conn, reason="closed"), recv, conn)
        return None
    except (msgspec.DecodeError, KeyError, TypeError, ValueError, AttributeError):
        # (AttributeError: a "frame" that is not a string, e.g. null: kept as a line)
        return Frame(recv_ns=start_ns or 0, conn_id=0, stream="spot", direction="in",
                     payload=line)


def _sim_line(line: bytes, start_ns: int | None) -> Frame | None:
    """One sim-record line exactly as the reference loop of :func:`read_input_frames` takes
    it (None: the line adds no frame)."""
    try:
        f = _SIM_FRAME.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        if not line.strip():
            return None
        return _sim_other_line(line, start_ns)
    return Frame(recv_ns=f.recv_ns, conn_id=f.conn,
                 stream=f.ep if f.ep in _SIM_STREAMS else "spot",  # type: ignore[arg-type]
                 direction="in", payload=f.frame.encode("utf-8", "surrogatepass"))


def _sim_record_core(data: bytes, start_ns: int | None) -> list[Frame]:
    """A whole sim record decoded by the compiled core in one call
    (``recorder._core.sim_record_frames``): the plain frame lines come back as columns, every
    other line goes through :func:`_sim_line` (the reference), in input order."""
    recv, conn, streams, payloads, others = _core.sim_record_frames(data)
    names = _CORE_STREAMS
    frames = [Frame(recv_ns=r, conn_id=c, stream=names[s], direction="in", payload=p)
              for r, c, s, p in zip(recv, conn, streams, payloads)]
    del recv, conn, streams, payloads
    if others:
        merged: list[Frame] = []
        at = 0
        for position, start, end in others:
            merged += frames[at:position]
            at = position
            frame = _sim_line(data[start:end], start_ns)
            if frame is not None:
                merged.append(frame)
        merged += frames[at:]
        frames = merged
    return frames


def read_input_frames(data: bytes, *, start_ns: int | None = None,
                      engine: str = "core") -> Iterator[Frame]:
    """Frames of one non-journal input (sim record or plain messages), in order.

    ``engine``: ``"core"`` decodes a sim record's lines in bulk in the compiled core (lines it
    does not take exactly go through the reference); ``"python"`` is the reference, one
    msgspec decode per line. Both give the same frames (tests/test_ingest_core.py)."""
    if engine not in ENGINES:
        raise IngestError(f"unknown ingest engine {engine!r} (one of {', '.join(ENGINES)})")
    first = data.lstrip()[:300]
    if first.startswith(b'{"recv_ns"'):
        if engine == "core":
            yield from _sim_record_core(data, start_ns)
            return
        fast = _SIM_FRAME.decode
        for line in data.split(b"\n"):
            try:  # fast path: a frame line
                f: _SimFrame | None = fast(line)
            except (msgspec.DecodeError, msgspec.ValidationError):
                f = None
            if f is not None:
                yield Frame(recv_ns=f.recv_ns, conn_id=f.conn,
                            stream=f.ep if f.ep in _SIM_STREAMS else "spot",  # type: ignore[arg-type]
                            direction="in", payload=f.frame.encode("utf-8", "surrogatepass"))
                continue
            if not line.strip():
                continue
            frame = _sim_other_line(line, start_ns)
            if frame is not None:
                yield frame
        return
    prev = start_ns
    pending: list[bytes] = []
    for msg in _messages(data):
        ts = _exchange_ts(msg)
        if ts is None and prev is None:
            pending.append(msg)
            continue
        t = ts if ts is not None else prev
        assert t is not None
        for p in pending:
            yield Frame(recv_ns=t, conn_id=0, stream=_stream_of(p), direction="in", payload=p)
        pending.clear()
        prev = t
        yield Frame(recv_ns=t, conn_id=0, stream=_stream_of(msg), direction="in", payload=msg)
    for p in pending:
        yield Frame(recv_ns=prev or 0, conn_id=0, stream=_stream_of(p), direction="in",
                    payload=p)


def _head(path: Path, n: int = 1 << 20) -> bytes:
    """The first ``n`` bytes of an input as :func:`_read_bytes` would give them (b"" if it
    cannot be read: the input's own turn reports that)."""
    try:
        with path.open("rb") as f:
            raw = f.read(n)
            if not raw.startswith(_ZSTD_MAGIC):
                return raw
            f.seek(0)
            with zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True) as r:
                return r.read(n)
    except (OSError, zstandard.ZstdError):
        return b""


def _first_timestamp(paths: list[Path]) -> int | None:
    for path in paths:
        ts = _exchange_ts(_head(path))
        if ts is not None:
            return ts
    return None


def _recorded_settings(paths: list[Path]) -> DeriveSettings | None:
    """The derivation settings recorded by the first journal input that names them (its
    ``ProcessStart``, see :func:`~recorder.archive.session.journal_settings`): a live journal
    re-derives with the settings live capture used. ``None``: no input records them."""
    for path in paths:
        if _head(path, 4).startswith((b"KRJ1", b"KRJ2")):
            found = journal_settings(path)
            if found is not None:
                return found
    return None


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """Per-key increase from ``before`` to ``after`` (keys that did not grow are left out)."""
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v > before.get(k, 0)}


def ingest(paths: list[Path], archive: Path, *, progress: bool = False,
           max_decompressed_bytes: int = MAX_DECOMPRESSED_BYTES, engine: str = "core",
           **deriver_options: Any) -> dict[str, Any]:
    """Ingest ``paths`` (in order) into ``archive``; returns the summary (see below).

    Inputs are taken one at a time: each is converted to journal segments and derived before
    the next is read, so memory is bounded by the largest input, not by their sum. A zstd
    input expanding past ``max_decompressed_bytes`` raises :class:`IngestError`. A new
    archive derives with the settings the first journal input records (live capture journals
    them with ``ProcessStart``), unless ``deriver_options`` name settings; an existing archive
    keeps its own (:class:`~recorder.archive.session.Deriver`).

    Summary: ``inputs`` (one entry per path: ``path``, ``sha256``, ``status``, and for inputs
    derived now ``frames``, ``rows`` per dataset, ``rejects`` and ``flagged`` by reason,
    ``rejected_frames``), then the totals ``frames``, ``rows``, ``rejects``, ``flagged`` and
    ``commit``. ``status``: ``ingested``; ``already ingested`` (same digest as an earlier
    input: nothing added); ``empty`` (no content, or no frames: nothing recorded, not
    remembered as ingested); ``rejected`` (every frame became a reject).

    ``engine``: ``"core"`` (default) frames sim records, encodes the journal in bulk and
    derives Spot ``book`` frames (the pipeline's lane) in the compiled core; ``"python"`` is
    the pure-Python reference. The archive is the same."""
    if engine not in ENGINES:
        raise IngestError(f"unknown ingest engine {engine!r} (one of {', '.join(ENGINES)})")
    if not {"settings", "checkpoint_interval_ns", "checkpoint_messages"} & set(deriver_options):
        recorded = _recorded_settings(paths)
        if recorded is not None:
            deriver_options["settings"] = recorded
    deriver = Deriver(archive, engine=engine, **deriver_options)
    jroot = deriver.journal_root
    pipe = deriver.pipeline
    summary: dict[str, Any] = {"inputs": [], "frames": 0}
    for p in paths:  # every input exists before anything is written
        try:
            p.stat()
        except OSError as exc:
            raise IngestError(f"{p}: {exc}") from exc
        if not p.is_file():
            raise IngestError(f"{p}: not a regular file")
    n = 0
    derived = False
    last_ns: int | None = None
    start_rows, start_rejects, start_flags = (pipe.row_counts(), dict(pipe.reject_counts),
                                              dict(pipe.flag_counts))
    with progress_bar("ingest", unit="frames", enabled=progress) as bar:
        tick: Callable[[int], None] | None = bar.advance if bar.enabled else None
        for i, p in enumerate(paths):
            data = _read_bytes(p, max_decompressed_bytes)
            digest = hashlib.sha256(data).hexdigest()
            entry: dict[str, Any] = {"path": str(p), "sha256": digest}
            summary["inputs"].append(entry)
            if digest in deriver.sources:
                entry["status"] = "already ingested"
                continue
            if not data.strip():
                entry.update(status="empty", frames=0)
                continue
            bar.update(description=f"ingest {p.name}")
            #: the converted segments' frames (derived from memory, not decoded again)
            preloaded: dict[str, list[Frame]] = {}
            segs: list[str]
            if data.startswith((b"KRJ1", b"KRJ2")):
                seg = f"ingest/{digest[:32]}{SEGMENT_SUFFIX}"
                if not (jroot / seg).exists():
                    (jroot / "ingest").mkdir(parents=True, exist_ok=True)
                    tmp = jroot / "ingest" / f".tmp-{digest[:32]}"
                    shutil.copyfile(p, tmp)
                    os.replace(tmp, jroot / seg)
                segs = [seg]
            else:
                target = jroot / "ingest" / digest[:32]
                if not target.exists():
                    start = last_ns
                    if start is None and not data.lstrip().startswith(b'{"recv_ns"'):
                        start = _exchange_ts(data[:1 << 16]) or _exchange_ts(
                            data[:1 << 20]) or _first_timestamp(paths[i + 1:])
                    tmpdir = jroot / ".ingest-tmp" / digest[:32]
                    shutil.rmtree(tmpdir, ignore_errors=True)
                    w = JournalWriter(tmpdir, host="ingest", run_id=digest[:16],
                                      fsync_interval_s=3600, threads=1, engine=engine)
                    frames = list(read_input_frames(data, start_ns=start, engine=engine))
                    bar.update(total=len(frames))
                    runs = w.append_many(frames)
                    if frames:
                        last_ns = frames[-1].recv_ns
                    w.close()
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmpdir, target)  # the converted segments appear atomically
                    if not w.had_error:  # each segment's frames, unless the journal alters one
                        at = 0
                        for seg_name, count in runs:
                            chunk = frames[at:at + count]
                            at += count
                            if all(map(as_read, chunk)):  # (a Frame is truthy)
                                preloaded[f"ingest/{digest[:32]}/{seg_name}"] = chunk
                    del frames
                segs = [f"ingest/{digest[:32]}/{s}" for s in list_segments(target)]
                seg = segs[0] if segs else ""
            del data
            for s_ in segs:
                deriver.register(s_)
            deriver.sources[digest] = {"name": p.name, "segment": seg}
            rows0, rejects0, flags0, rejected0 = (pipe.row_counts(), dict(pipe.reject_counts),
                                                  dict(pipe.flag_counts), pipe.rejected_frames)
            fed = deriver.catch_up(progress=tick, preloaded=preloaded)
            n += fed
            derived = True
            preloaded.clear()
            rejected = pipe.rejected_frames - rejected0
            entry.update(status="ingested", frames=fed,
                         rows=_delta(pipe.row_counts(), rows0),
                         rejects=_delta(pipe.reject_counts, rejects0),
                         flagged=_delta(pipe.flag_counts, flags0), rejected_frames=rejected)
            if fed == 0:
                entry["status"] = "empty"
            elif rejected >= fed:
                entry["status"] = "rejected"
        if not derived:  # every input was ingested before: derive what an interrupted run left
            n += deriver.catch_up(progress=tick)
    if n:
        deriver.close("open")
    deriver.release()
    summary["frames"] = n
    summary["rows"] = _delta(pipe.row_counts(), start_rows)
    summary["rejects"] = _delta(pipe.reject_counts, start_rejects)
    summary["flagged"] = _delta(pipe.flag_counts, start_flags)
    summary["commit"] = deriver.archive.state.commit
    return summary


def problems(summary: dict[str, Any], *, strict: bool = False) -> list[str]:
    """Why an ingest summary should end with a non-zero exit status (empty list: it should
    not): an input that is empty or wholly rejected; with ``strict``, any reject or flag."""
    out = []
    for entry in summary["inputs"]:
        name = Path(entry["path"]).name
        if entry["status"] == "empty":
            out.append(f"{name}: no frames (empty, or nothing in it could be read)")
        elif entry["status"] == "rejected":
            out.append(f"{name}: every frame was rejected ({_reasons(entry['rejects'])})")
        elif strict and (entry.get("rejects") or entry.get("flagged")):
            out.append(f"{name}: {_reasons({**entry['rejects'], **entry['flagged']})} "
                       f"(--strict)")
    return out


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n:,}" for reason, n in sorted(counts.items(),
                                                                 key=lambda kv: -kv[1]))


def print_summary(summary: dict[str, Any]) -> None:
    """The summary as tables for a person (``recorder ingest`` without ``--json``)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    inputs = Table(title="inputs", title_justify="left")
    for col, justify in (("input", "left"), ("status", "left"), ("frames", "right"),
                         ("rows", "right"), ("rejects", "left")):
        inputs.add_column(col, justify=justify)  # type: ignore[arg-type]
    for e in summary["inputs"]:
        reported = {**e.get("rejects", {}), **e.get("flagged", {})}
        inputs.add_row(Path(e["path"]).name, e["status"],
                       f"{e['frames']:,}" if "frames" in e else "",
                       f"{sum(e['rows'].values()):,}" if "rows" in e else "",
                       _reasons(reported) if reported else "")
    console.print(inputs)
    if summary["rows"]:
        rows = Table(title="rows written", title_justify="left")
        rows.add_column("dataset")
        rows.add_column("rows", justify="right")
        for dataset, count in summary["rows"].items():
            rows.add_row(dataset, f"{count:,}")
        console.print(rows)
    if summary["rejects"] or summary["flagged"]:
        rej = Table(title="rejects (kept raw in the rejects dataset)", title_justify="left")
        rej.add_column("reason")
        rej.add_column("count", justify="right")
        rej.add_column("")
        for reason, count in summary["rejects"].items():
            rej.add_row(reason, f"{count:,}", "rejected")
        for reason, count in summary["flagged"].items():
            rej.add_row(reason, f"{count:,}", "flagged (rows kept)")
        console.print(rej)
    console.print(f"frames derived {summary['frames']:,}; archive commit {summary['commit']}")


@click.command("ingest")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--archive", "archive", required=True, type=click.Path(path_type=Path),
              help="Archive directory (created if missing).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("--strict", is_flag=True,
              help="Exit 1 on any reject or flagged symbol, not only on empty or wholly "
                   "rejected inputs.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--max-decompressed-mib", type=click.IntRange(min=1),
              default=MAX_DECOMPRESSED_BYTES // 2**20, show_default=True,
              help="Refuse a zstd input that expands past this many MiB.")
@click.option("--engine", type=click.Choice(ENGINES), default="core", show_default=True,
              help="Frame sim records, encode the journal and derive Spot book frames in the "
                   "compiled core, or with the pure-Python reference (same archive).")
def ingest_command(files: tuple[Path, ...], archive: Path, as_json: bool, strict: bool,
                   quiet: bool, max_decompressed_mib: int, engine: str) -> None:
    """Derive the archive from journal segments, `recorder sim --record` files or JSONL.

    Prints what was derived: frames, rows per dataset, rejects by reason. Exit status 1 when
    an input is empty or every frame of it was rejected (with --strict: on any reject), after
    deriving everything else; the rejects stay in the archive's rejects dataset.
    """
    try:
        summary = ingest(list(files), archive, progress=not (quiet or as_json),
                         max_decompressed_bytes=max_decompressed_mib * 2**20, engine=engine)
    except IngestError as exc:
        raise click.ClickException(str(exc)) from exc
    except ArchiveBusyError as exc:
        raise click.ClickException(str(exc)) from None
    except StateError as exc:  # a manifest or pipeline state this recorder cannot read
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"archive write failed: {exc}") from exc
    if as_json:
        click.echo(msgspec.json.encode(summary).decode())
    else:
        print_summary(summary)
    bad = problems(summary, strict=strict)
    if bad:
        for line in bad:
            click.echo(f"Error: {line}", err=True)
        sys.exit(1)
