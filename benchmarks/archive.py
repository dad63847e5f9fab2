"""ArchiveStore suite: ``recorder ingest`` end to end on a pre-generated sim stream, and sizes.

The stream (``recorder sim --record``, 1M frames, 8 pairs, seed 7; quick: 100k) is generated
once into ``.bench/cache/`` (gitignored). Figures: ingest messages/s end to end (conversion to
the journal + decode + books + checksums + Parquet + checkpoints + commit; wall clock, with the
process CPU rate in the note because the machine is shared), journal bytes per message,
``recorder compact`` and ``recorder verify`` times, bytes per row per dataset after compaction
(rolling-file figure in the note), and the archive's size against raw JSON, gzip'd JSON and
zstd'd JSON of the same frames.
"""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zstandard

from benchmarks.harness import Figure

_ROOT = Path(__file__).resolve().parent.parent
_CACHE = _ROOT / ".bench" / "cache"


def _stream(messages: int) -> Path:
    path = _CACHE / f"sim-{messages}-p8-s7.zst"
    if not path.exists():
        _CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        subprocess.run([sys.executable, "-m", "recorder", "sim", "--record", str(tmp),
                        "--messages", str(messages), "--pairs", "8", "--seed", "7"],
                       check=True, capture_output=True)
        tmp.replace(path)
    return path


def _stage_floor(src: Path, work: Path) -> Figure:
    """CPU per message of the stages ``recorder ingest`` cannot skip, each timed alone on the
    same stream: decompress the input, parse its lines into frames, journal them (encode +
    zstd, in this thread), decode each message, and apply every book message to its book with
    the checksum, recording the rows' numbers (what the archive must store). Their sum bounds
    ingest from above: it leaves out all of the pipeline's bookkeeping (epochs, gaps,
    liveness, trades and the other datasets, checkpoints), the Arrow conversion, Parquet and
    the commits."""
    from recorder.archive.journal import JournalWriter
    from recorder.book.l2 import L2Book
    from recorder.book.l3 import L3Book
    from recorder.ingest import _read_bytes, read_input_frames
    from recorder.pipeline.core import _infer_precision, _l2_depth
    # (framing and journaling by ingest's default engine, the compiled core's bulk calls)
    from recorder.protocol import spot as sp

    stage: dict[str, float] = {}
    c = time.process_time()
    data = _read_bytes(src, 16 * 2**30)
    stage["decompress"] = time.process_time() - c
    c = time.process_time()
    frames = list(read_input_frames(data))
    stage["parse lines"] = time.process_time() - c
    del data
    c = time.process_time()
    writer = JournalWriter(work / "floor-journal", host="bench", fsync_interval_s=3600)
    writer.append_many(frames)
    writer.close()
    stage["journal"] = time.process_time() - c
    payloads = [f.payload for f in frames]
    n = len(frames)
    del frames
    decode = sp.decode_spot
    c = time.process_time()
    for payload in payloads:
        decode(payload)
    decode_alone = time.process_time() - c
    precisions: dict[str, tuple[int, int]] = {}
    books: dict[tuple[str, str], Any] = {}
    l2_rows: tuple[list[Any], ...] = ([], [], [])
    l3_rows: tuple[list[Any], ...] = ([], [], [], [], [], [])
    c = time.process_time()
    for payload in payloads:
        ev = decode(payload)
        t = type(ev)
        if t is sp.BookMessage or t is sp.Level3Message:
            l3 = t is sp.Level3Message
            for d in ev.data:
                key = ("level3" if l3 else "book", d.symbol)
                if ev.type == "snapshot":
                    known = precisions.get(d.symbol)
                    if known is None:  # no instrument message: inferred, as the pipeline does
                        entries = [*d.bids, *d.asks]
                        known = (_infer_precision([e.limit_price if l3 else e.price
                                                   for e in entries]),
                                 _infer_precision([e.order_qty if l3 else e.qty
                                                   for e in entries]))
                    pp, qp = known
                    books[key] = (L3Book(d.symbol, 10, pp, qp) if l3 else
                                  L2Book(d.symbol, _l2_depth(None, len(d.bids), len(d.asks)),
                                         pp, qp))
                books[key].apply(ev.type, d, l3_rows if l3 else l2_rows)
        elif t is sp.InstrumentMessage:
            for pair in ev.data.pairs:
                precisions[pair.symbol] = (pair.price_precision, pair.qty_precision)
    stage["decode + books + rows"] = time.process_time() - c
    total = sum(stage.values())
    return Figure("archive: ingest upper bound from its unavoidable stages", n / total, "msgs/s",
                  target=">= 200000",
                  note=f"{1e6 * total / n:.1f} CPU-us/msg before any bookkeeping, Arrow, Parquet "
                  "or commit: " + ", ".join(f"{k} {1e6 * v / n:.1f}" for k, v in stage.items())
                  + f" (decode alone {1e6 * decode_alone / n:.1f}); {n:,} frames")


def run_archive(quick: bool = False) -> list[Figure]:
    from recorder.archive.store import ArchiveStore
    from recorder.ingest import ingest

    messages = 100_000 if quick else 1_000_000
    src = _stream(messages)
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(src.read_bytes())).read()
    import msgspec

    frames = [msgspec.json.decode(line)["frame"].encode() for line in raw.splitlines()
              if b'"frame"' in line]
    raw_json = b"\n".join(frames)
    gz = len(gzip.compress(raw_json, 6))
    zs = len(zstandard.ZstdCompressor(level=3).compress(raw_json))
    from recorder.archive.maintenance import compact_archive
    from recorder.verify import verify_archive

    work = Path(tempfile.mkdtemp(prefix="bench-archive-"))

    def sizes_rows() -> tuple[dict[str, int], dict[str, int]]:
        sizes: dict[str, int] = {}
        rows: dict[str, int] = {}
        for f in ArchiveStore(work / "a").state.files:
            sizes[f.dataset] = sizes.get(f.dataset, 0) + f.bytes
            rows[f.dataset] = rows.get(f.dataset, 0) + f.rows
        return sizes, rows

    try:
        # the peer in the same run: the pure-Python reference engine on the same stream (its
        # archive must equal the core engine's, row counts per dataset checked below)
        t = time.perf_counter()
        c = time.process_time()
        ingest([src], work / "ref", max_decompressed_bytes=16 * 2**30, engine="python")
        ref_elapsed = time.perf_counter() - t
        ref_cpu = time.process_time() - c
        ref_rows = {}
        for f in ArchiveStore(work / "ref").state.files:
            ref_rows[f.dataset] = ref_rows.get(f.dataset, 0) + f.rows
        shutil.rmtree(work / "ref", ignore_errors=True)
        t = time.perf_counter()
        c = time.process_time()
        # the full stream (1M messages, ~280 MB of JSON) expands past ingest's default 256 MiB
        # guard against zstd bombs: this input is our own, so lift the guard as a user would
        # with --max-decompressed-mib
        ingest([src], work / "a", max_decompressed_bytes=16 * 2**30, engine="core")
        elapsed = time.perf_counter() - t
        cpu = time.process_time() - c
        rolling, core_rows = sizes_rows()
        if core_rows != ref_rows:
            raise AssertionError(f"core and reference ingest disagree: {core_rows} vs "
                                 f"{ref_rows}")
        journal = sum(p.stat().st_size for p in (work / "a" / "journal").rglob("*.kjz"))
        t = time.perf_counter()
        compact_archive(work / "a", include_latest_day=True)
        compact_s = time.perf_counter() - t
        sizes, rows = sizes_rows()
        t = time.perf_counter()
        c = time.process_time()
        report = verify_archive(work / "a")
        verify_s = time.perf_counter() - t
        verify_cpu = time.process_time() - c
        floor = _stage_floor(src, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = len(frames)
    parquet_total = sum(sizes.values())
    figs = [
        Figure("archive: recorder ingest end to end", n / elapsed, "msgs/s",
               target=">= 200000",
               peer=f"reference engine (engine=\"python\") {n / ref_elapsed:,.0f} msgs/s, "
               f"{1e6 * ref_cpu / n:.1f} CPU-us/msg (core x{ref_cpu / cpu:.2f} in CPU)",
               note=f"{n:,} sim frames, 8 pairs, one process, engine=\"core\" (bulk framing "
               f"and journal encoding in the compiled core; decode, books and rows still "
               f"per frame in the Python pipeline); {n / cpu:,.0f} msgs/s of process CPU "
               f"time = {1e6 * cpu / n:.1f} CPU-us/msg; same row counts per dataset as the "
               f"reference"),
        floor,
        Figure("archive: journal", journal / n, "B/msg", target="<= 40",
               note=f"format 2, zstd-5 segments; raw JSON {len(raw_json) / n:.0f} B/msg"),
        Figure("archive: recorder compact", compact_s, "s",
               note="all rolling files of the day -> one sorted file per dataset"),
        Figure("archive: recorder verify", verify_s, "s",
               note=f"{report['verified']:,} checksums recomputed, {report['failed']} failed; "
               f"{verify_cpu:.1f} s CPU"),
    ]
    targets = {"level3": "<= 12", "book": "<= 5", "trades": "<= 12"}
    for ds in ("level3", "book", "trades", "ohlc", "ticker", "checkpoints", "liveness"):
        if rows.get(ds):
            figs.append(Figure(f"archive: {ds} Parquet (compacted)", sizes[ds] / rows[ds],
                               "B/row", target=targets.get(ds, ""),
                               note=f"{rows[ds]:,} rows; rolling files "
                               f"{rolling.get(ds, 0) / rows[ds]:.1f} B/row"))
    figs += [
        Figure("archive: Parquet total vs raw JSON", len(raw_json) / parquet_total, "x smaller",
               note=f"raw {len(raw_json) / n:.1f} B/msg, Parquet {parquet_total / n:.1f} B/msg"),
        Figure("archive: Parquet total vs gzip JSON", gz / parquet_total, "x smaller",
               note=f"gzip-6 {gz / n:.1f} B/msg, zstd-3 {zs / n:.1f} B/msg"),
        Figure("archive: Parquet total vs zstd JSON", zs / parquet_total, "x smaller"),
    ]
    return figs
