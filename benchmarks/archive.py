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


def _stage_floor(src: Path, work: Path) -> tuple[Figure, dict[str, float]]:
    """CPU per message of ``recorder ingest``'s stages, each timed alone on the same stream:
    decompress the input, parse its lines into frames, journal them (encode + zstd, in this
    thread), and derive them with the default pipeline (``engine="core"``: decode, books,
    checksums, epochs, gaps, liveness, checkpoints and every dataset's row buffers, in runs
    through the compiled Spot lane as ingest feeds them) into a sink that drops the rows.
    Their sum bounds ingest from above; what ingest costs beyond it is the Arrow conversion,
    Parquet and the commits. Returns the figure and the per-message CPU of each stage."""
    from recorder.archive.journal import JournalWriter
    from recorder.ingest import _read_bytes, read_input_frames
    from recorder.pipeline import Pipeline

    class _Drop:
        """A sink that drops the rows (the derive stage without Arrow or Parquet)."""

        def append(self, dataset: str, columns: dict[str, Any]) -> None:
            pass

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
    n = len(frames)
    pipeline = Pipeline(_Drop())
    c = time.process_time()
    i = 0
    while i < n:
        i = pipeline.feed_many(frames, i, n, 1 << 62, 1 << 62)
    pipeline.close()
    stage["derive (core pipeline, rows dropped)"] = time.process_time() - c
    total = sum(stage.values())
    per = {k: 1e6 * v / n for k, v in stage.items()}
    return Figure("archive: ingest upper bound from its stages before Arrow and Parquet",
                  n / total, "msgs/s", target=">= 200000",
                  note=f"{1e6 * total / n:.1f} CPU-us/msg before the Arrow conversion, Parquet "
                  "and commits: " + ", ".join(f"{k} {v:.1f}" for k, v in per.items())
                  + f"; {n:,} frames"), per


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
        floor, per_stage = _stage_floor(src, work)
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
               f"and journal encoding, and Spot book/level3 derivation through the compiled "
               f"lane, in runs); {n / cpu:,.0f} msgs/s of process CPU time = "
               f"{1e6 * cpu / n:.1f} CPU-us/msg, of which Arrow, Parquet and commits about "
               f"{1e6 * cpu / n - sum(per_stage.values()):.1f} (the rest: the next row's "
               f"stages); same row counts per dataset as the reference"),
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
