"""Audit suite: ``recorder audit`` over a simulated week.

Deriving a real week of ``recorder sim`` traffic through the pipeline would take hours, so the
week is simulated at the dataset level, with the archive's own writer (schemas, partitions,
manifest): 20 symbols x 5 channels (book, level3, trade, ohlc, ticker) over 7 days of
``liveness`` minutes (one connection per channel, heartbeats), a fault every ~20 min per channel
(checksum / disconnect / trade_id_jump gaps and their epochs), a 30-minute recorder stop per
day (process_restart), one idle symbol (quiet: subscribed, never any data), trades every 10 s
per symbol and 1-minute OHLC bars. Quick: 1 day, 6 symbols. The figure is the wall time of
:func:`recorder.audit.report.build_report` (all queries, coverage, report) and rows/s over
the liveness rows it reads.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Figure

MIN = 60_000_000_000
DAY = 86_400_000_000_000
T0 = 1_735_689_600_000_000_000  # 2025-01-01


def _build(root: Path, days: int, symbols: int) -> dict[str, int]:
    from recorder.archive.store import ArchiveStore, PartitionWriter

    rng = random.Random(7)
    archive = ArchiveStore(root)
    writer = PartitionWriter(archive.root, archive.schemas)
    syms = [f"S{i:02d}/USD" for i in range(symbols)]
    idle = syms[-1]
    chans = [("book", 1, "spot"), ("level3", 2, "l3"), ("trade", 3, "spot"),
             ("ohlc", 4, "spot"), ("ticker", 5, "spot")]
    counts = {"liveness": 0, "trades": 0}
    stops = [(T0 + d * DAY + 13 * 3_600_000_000_000,
              T0 + d * DAY + 13 * 3_600_000_000_000 + 30 * MIN) for d in range(days)]
    for d in range(days):
        lv: dict[str, list] = {k: [] for k in ("minute_ns", "conn_id", "stream", "channel",
                                               "symbol", "subscribed_ns", "frames", "first_ns",
                                               "last_ns")}
        gp: dict[str, list] = {k: [] for k in ("start_ns", "end_ns", "stream", "channel",
                                               "symbol", "conn_id", "cause", "missing",
                                               "missing_count", "healed_by", "detail")}
        ep: dict[str, list] = {k: [] for k in archive.schemas["epochs"].names}
        tr: dict[str, list] = {k: [] for k in archive.schemas["trades"].names}
        oh: dict[str, list] = {k: [] for k in archive.schemas["ohlc"].names}
        day0 = T0 + d * DAY
        stop_lo, stop_hi = stops[d]
        for m in range(1440):
            minute = day0 + m * MIN
            if stop_lo <= minute < stop_hi:
                continue
            for ch, conn, stream in chans:
                for col, v in (("minute_ns", minute), ("conn_id", conn), ("stream", stream),
                               ("channel", "heartbeat"), ("symbol", ""), ("subscribed_ns", 0),
                               ("frames", 3), ("first_ns", minute + 1), ("last_ns", minute + MIN - 1)):
                    lv[col].append(v)
                for s in syms:
                    busy = s != idle
                    for col, v in (("minute_ns", minute), ("conn_id", conn), ("stream", stream),
                                   ("channel", ch), ("symbol", s), ("subscribed_ns", MIN),
                                   ("frames", 100 if busy else 0),
                                   ("first_ns", minute + 5 if busy else None),
                                   ("last_ns", minute + MIN - 5 if busy else None)):
                        lv[col].append(v)
        for ch, conn, stream in chans:
            for s in syms:
                t = day0 + rng.randrange(20 * MIN)
                epoch_start = day0
                while t < day0 + DAY - 2 * MIN:
                    if not stop_lo - MIN <= t <= stop_hi + MIN:
                        cause = {"book": "checksum_mismatch", "level3": "disconnect",
                                 "trade": "trade_id_jump"}.get(ch)
                        if cause is not None:
                            end = t + rng.randrange(200_000_000, 3_000_000_000)
                            healed = {"trade_id_jump": "rest_backfill"}.get(cause, "resnapshot")
                            for col, v in (("start_ns", t), ("end_ns", end), ("stream", stream),
                                           ("channel", ch), ("symbol", s), ("conn_id", conn),
                                           ("cause", cause), ("missing", None),
                                           ("missing_count", None), ("healed_by", healed),
                                           ("detail", None)):
                                gp[col].append(v)
                            row = {"epoch": epoch_start, "stream": stream, "channel": ch,
                                   "symbol": s, "conn_id": conn, "depth": 10,
                                   "price_precision": 2, "qty_precision": 8,
                                   "precision_source": "instrument", "start_ns": epoch_start,
                                   "end_ns": t, "start_reason": "snapshot", "end_reason": cause,
                                   "messages": 1000, "rows": 5000, "checksum_ok": 1000,
                                   "checksum_failed": 1 if cause == "checksum_mismatch" else 0}
                            for col in ep:
                                ep[col].append(row[col])
                            epoch_start = end
                    t += rng.randrange(10 * MIN, 30 * MIN)
        for col, v in (("start_ns", stop_lo), ("end_ns", stop_hi), ("stream", "*"),
                       ("channel", "*"), ("symbol", "*"), ("conn_id", 0),
                       ("cause", "process_restart"), ("missing", None), ("missing_count", None),
                       ("healed_by", "restart"), ("detail", "clean stop and restart")):
            gp[col].append(v)
        for i, s in enumerate(syms[:-1]):
            tid = (i + 1) * 10**9 + d * 8640
            for k in range(8640):
                t = day0 + k * 10_000_000_000 + i
                if stop_lo <= t < stop_hi:
                    continue
                row = {"recv_ns": t, "ts_ns": t - 1000, "symbol": s, "epoch": day0,
                       "conn_id": 3, "source": 1, "trade_id": tid + k, "side": k % 2,
                       "ord_type": "limit", "price": 100_000 + k % 50, "qty": 1_000_000,
                       "price_scale": 2, "qty_scale": 8, "overflow": None}
                for col in tr:
                    tr[col].append(row[col])
            for m in range(1440):
                begin = day0 + m * MIN
                if stop_lo <= begin < stop_hi:
                    continue
                row = {"recv_ns": begin + MIN - 1, "ts_ns": begin, "symbol": s, "conn_id": 4,
                       "source": 1, "interval": 1, "interval_begin_ns": begin, "open": "1000.00",
                       "high": "1000.49", "low": "1000.00", "close": "1000.10", "vwap": "1000.2",
                       "volume": "0.06000000", "trades": 6}
                for col in oh:
                    oh[col].append(row[col])
        counts["liveness"] += len(lv["minute_ns"])
        counts["trades"] += len(tr["recv_ns"])
        for name, cols in (("liveness", lv), ("gaps", gp), ("epochs", ep), ("trades", tr),
                           ("ohlc", oh)):
            writer.append(name, cols)
        archive.commit(writer.seal(archive.state.commit + 1), pipeline=None, journal={},
                       segments=[])
    return counts


def run_audit(quick: bool = False) -> list[Figure]:
    from recorder.audit.report import build_report

    days, symbols = (1, 6) if quick else (7, 20)
    work = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    try:
        t = time.perf_counter()
        counts = _build(work / "a", days, symbols)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        report = build_report(work / "a")
        elapsed = time.perf_counter() - t
    finally:
        shutil.rmtree(work, ignore_errors=True)
    s = report["summary"]
    label = f"{days} day{'s' if days > 1 else ''}, {symbols} symbols x 5 channels"
    return [
        Figure(f"audit: simulated {'week' if days == 7 else 'day'} end to end", elapsed, "s",
               target="<= 60" if days == 7 else "",
               note=f"{label}; {counts['liveness']:,} liveness rows, {counts['trades']:,} "
                    f"trades, {s['gaps']:,} gaps; archive built in {build_s:.0f} s; verified "
                    f"coverage {s['verified_coverage_pct']:.2f}%"),
        Figure("audit: liveness rows audited per second", counts["liveness"] / elapsed,
               "rows/s", note="all queries + interval coverage + report"),
    ]
