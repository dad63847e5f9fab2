"""Assemble the audit report (a plain, JSON-ready dict with stable keys; see docs/audit.md).

:func:`build_report` is the only function here that touches the archive (through
:mod:`recorder.audit.load`); the arithmetic is in :mod:`recorder.audit.coverage` and the
helpers below are pure. ``REPORT_VERSION`` is bumped when a key changes meaning or is removed;
keys may be added without a bump.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from recorder.archive.layout import DAY_NS, day_of
from recorder.audit import intervals as iv
from recorder.audit.coverage import (
    BACKFILL_HEALS,
    Breakdown,
    Gap,
    Key,
    Run,
    Thresholds,
    classify,
    combine_roots,
    day_verdict,
    gap_applies,
    gap_extent,
)
from recorder.audit.load import AuditSource, open_source
from recorder.roots import PathSpec

__all__ = ["REPORT_VERSION", "HOUR_NS", "build_report", "Progress"]

REPORT_VERSION: Final = 1
HOUR_NS: Final = 3_600_000_000_000
#: Epoch end reasons that are desyncs (each is followed by a resnapshot when healed).
DESYNC_REASONS: Final = frozenset({"checksum_mismatch", "crossed", "apply_error", "seq_jump"})
#: Channels whose rows carry Kraken checksums (verification applies).
CHECKSUM_CHANNELS: Final = frozenset({"book", "level3"})

#: ``progress(step, done, total)``; called as the audit advances.
Progress = Callable[[str, int, int], None]


def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 4) if whole > 0 else 100.0


def _gap_from_row(r: Mapping[str, Any]) -> Gap:
    return Gap(start_ns=r["start_ns"], end_ns=r["end_ns"], stream=r["stream"],
               channel=r["channel"], symbol=r["symbol"], conn_id=int(r["conn_id"]),
               cause=r["cause"], healed_by=r["healed_by"], missing=r["missing"],
               missing_count=r["missing_count"], detail=r["detail"], root=r["root"])


def _intervals_by_key(rows: Iterable[Mapping[str, Any]],
                      flag: str | None = None) -> dict[Key, list[tuple[int, int]]]:
    out: dict[Key, list[tuple[int, int]]] = defaultdict(list)
    for r in rows:
        if flag is not None and not r[flag]:
            continue
        out[(r["channel"], r["symbol"])].append((r["start_ns"], r["end_ns"]))
    return out


def _bucket(b: Breakdown, lo: int, hi: int, step: int) -> dict[str, list[int]]:
    start = lo - lo % step
    return {name: iv.split_by(getattr(b, name), start, hi, step)
            for name in ("covered", "active", "quiet", "missing", "in_gap", "backfilled")}


def build_report(archive: PathSpec, *, lo: int | None = None, hi: int | None = None,
                 symbols: Iterable[str] | None = None, thresholds: Thresholds | None = None,
                 verify_report: Mapping[str, Any] | None = None,
                 progress: Progress | None = None, threads: int | None = None
                 ) -> dict[str, Any]:
    """Audit ``archive`` over ``[lo, hi)`` (default: its whole liveness span).

    ``archive`` is an archive root, a parent of roots (capture's ``<archive>/<host>-w<k>/``) or
    several such paths (:func:`recorder.roots.archive_roots`); all roots with committed data
    are audited as one archive. Raises :class:`recorder.roots.ArchiveRootError` for a path
    that leads to no root and :class:`recorder.audit.load.AuditError` when no root has
    committed data. ``symbols`` restricts the keys; ``verify_report`` is a ``recorder verify --json`` result
    (replay verification); without it the verification figures come from the live checksum
    counts in ``epochs``. See docs/audit.md for every key of the result.
    """
    th = thresholds or Thresholds()
    note = progress or (lambda step, done, total: None)
    label = (str(archive) if isinstance(archive, (str, os.PathLike))
             else ", ".join(str(p) for p in archive))
    with open_source(archive, lo, hi, threads=threads) as src:
        return _build(src, label, set(symbols) if symbols else None, th, verify_report, note)


_STEPS: Final = ("subscribed", "activity", "gaps", "epochs", "conn_keys", "trade_continuity",
                 "trade_holes", "ohlc_vs_trades", "trade_resume")


def _build(src: AuditSource, label: str, symbols: set[str] | None, th: Thresholds,
           verify_report: Mapping[str, Any] | None, note: Progress) -> dict[str, Any]:
    lo, hi = src.lo, src.hi
    data: dict[str, list[dict[str, Any]]] = {}
    for i, step in enumerate(_STEPS):
        note(f"query {step}", i, len(_STEPS))
        data[step] = src.rows(step)
    note("queries done", len(_STEPS), len(_STEPS))

    def wanted(sym: str) -> bool:
        return symbols is None or sym in symbols

    # per (root, key): subscription runs per connection, epoch starts; per root: the keys of
    # each connection and the keys the root knows (a root's gaps apply to its own keys only)
    runs: dict[tuple[str, Key], list[Run]] = defaultdict(list)
    for r in data["subscribed"]:
        runs[(r["root"], (r["channel"], r["symbol"]))].append(
            (int(r["conn_id"]), r["start_ns"], r["end_ns"], bool(r["alive"])))
    activity = _intervals_by_key(data["activity"])
    gaps = [_gap_from_row(r) for r in data["gaps"]]
    conn_keys: dict[str, dict[int, set[Key]]] = defaultdict(lambda: defaultdict(set))
    for r in data["conn_keys"]:
        conn_keys[r["root"]][int(r["conn_id"])].add((r["channel"], r["symbol"]))
    epochs_by_key: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    epoch_starts: dict[tuple[str, Key], list[int]] = defaultdict(list)
    for r in data["epochs"]:
        epochs_by_key[(r["channel"], r["symbol"])].append(r)
        epoch_starts[(r["root"], (r["channel"], r["symbol"]))].append(r["start_ns"])
    trades_missed = {(r["root"], r["symbol"], r["start_ns"]): r["missed"]
                     for r in data["trade_resume"]}

    root_keys: dict[Key, set[str]] = defaultdict(set)
    for root, key in list(runs) + list(epoch_starts):
        root_keys[key].add(root)
    for g in gaps:
        if g.channel != "*" and g.symbol != "*" and g.stream != "rest":
            root_keys[(g.channel, g.symbol)].add(g.root)
    keys = {k for k in root_keys if wanted(k[1])}
    ordered = sorted(keys)

    by_scope: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for gi, g in enumerate(gaps):
        by_scope[(g.root, g.channel, g.symbol)].append(gi)
    per_key: dict[Key, Breakdown] = {}
    gap_uses: dict[int, dict[str, Any]] = {}
    key_gaps: dict[Key, list[int]] = defaultdict(list)
    for n, key in enumerate(ordered):
        if n % 25 == 0:
            note("coverage", n, len(ordered))
        ch, sym = key
        per_root: list[tuple[list[tuple[int, int]], list[tuple[int, int]]]] = []
        dead: list[tuple[int, int]] = []
        healed_ext: list[tuple[int, int]] = []
        for root in sorted(root_keys[key]):
            key_runs = runs.get((root, key), [])
            alive_r = iv.normalise((s, e) for _, s, e, a in key_runs if a)
            dead_r = iv.normalise((s, e) for _, s, e, a in key_runs if not a)
            dead += dead_r
            starts = sorted(epoch_starts.get((root, key), ()))
            sub_ends = sorted(e for _, e in alive_r + dead_r)
            missing_ext: list[tuple[int, int]] = []
            scoped = sorted(by_scope.get((root, ch, sym), []) + by_scope.get((root, ch, "*"), [])
                            + by_scope.get((root, "*", sym), [])
                            + by_scope.get((root, "*", "*"), []))
            for gi in scoped:
                g = gaps[gi]
                if not gap_applies(g, key, conn_keys.get(root, {})):
                    continue
                ext = gap_extent(g, starts, sub_ends, hi, runs=key_runs,
                                 trades_missed=trades_missed.get((root, g.symbol, g.start_ns)))
                (healed_ext if g.healed_by in BACKFILL_HEALS else missing_ext).append(ext)
                key_gaps[key].append(gi)
                use = gap_uses.setdefault(gi, {"keys": 0, "start": ext[0], "end": ext[1]})
                use["keys"] += 1
                use["start"] = min(use["start"], ext[0])
                use["end"] = max(use["end"], ext[1])
            per_root.append((alive_r, missing_ext))
        alive, missing = combine_roots(per_root)
        per_key[key] = classify((lo, hi), alive, dead, activity.get(key, ()), missing,
                                healed_ext)
    note("coverage", len(ordered), len(ordered))

    verification = _verification(data["epochs"], verify_report, wanted, lo, hi)
    unverified_days = {(r["dataset"], r["symbol"], r["date"])
                       for r in verification["per"] if r["failed"] > 0}

    channels_out: list[dict[str, Any]] = []
    hours_out: list[dict[str, Any]] = []
    day_cells: dict[tuple[str, str], dict[str, Any]] = {}
    for key in ordered:
        b = per_key[key]
        ch, sym = key
        eps = [e for e in epochs_by_key.get(key, ()) if e["start_ns"] < hi and e["end_ns"] >= lo]
        gis = key_gaps.get(key, [])
        day_start = lo - lo % DAY_NS
        days = _bucket(b, lo, hi, DAY_NS)
        verified_ns = 0
        for k in range(len(days["covered"])):
            d0 = day_start + k * DAY_NS
            w = min(hi, d0 + DAY_NS) - max(lo, d0)
            if w <= 0:
                continue
            date = day_of(d0)
            ok = (ch, sym, date) not in unverified_days
            v = days["covered"][k] if ok else 0
            verified_ns += v
            cell = day_cells.setdefault((sym, date), {"channels": {}, "window_ns": 0,
                                                      "covered_ns": 0, "quiet_ns": 0,
                                                      "missing_ns": 0, "verified_ns": 0})
            cell["channels"][ch] = _pct(v, w)
            cell["window_ns"] += w
            cell["covered_ns"] += days["covered"][k]
            cell["quiet_ns"] += days["quiet"][k]
            cell["missing_ns"] += days["missing"][k]
            cell["verified_ns"] += v
        window = b.window_ns
        covered = iv.total(b.covered)
        ck_ok = sum(int(e["checksum_ok"] or 0) for e in eps)
        ck_failed = sum(int(e["checksum_failed"] or 0) for e in eps)
        channels_out.append({
            "channel": ch, "symbol": sym, "window_ns": window,
            "covered_ns": covered, "active_ns": iv.total(b.active), "quiet_ns": iv.total(b.quiet),
            "missing_ns": iv.total(b.missing),
            "missing_by_reason": {"not_subscribed": iv.total(b.not_subscribed),
                                  "not_alive": iv.total(b.not_alive),
                                  "in_gap": iv.total(b.in_gap)},
            "backfilled_ns": iv.total(b.backfilled),
            "coverage_pct": _pct(covered, window),
            "verified_coverage_pct": _pct(verified_ns, window),
            "quiet_pct": _pct(iv.total(b.quiet), window),
            "state": _state(b),
            "epochs": len(eps),
            "desyncs": sum(1 for e in eps if e["end_reason"] in DESYNC_REASONS),
            "resnapshots": sum(1 for gi in gis if gaps[gi].healed_by == "resnapshot"),
            "quarantines": sum(1 for gi in gis if gaps[gi].cause == "quarantine"),
            "gaps": len(gis),
            "checksum_ok": ck_ok, "checksum_failed": ck_failed,
        })
        hb = _bucket(b, lo, hi, HOUR_NS)
        h0 = lo - lo % HOUR_NS
        for k in range(len(hb["covered"])):
            hs = h0 + k * HOUR_NS
            w = min(hi, hs + HOUR_NS) - max(lo, hs)
            if w <= 0:
                continue
            hours_out.append({"hour_ns": hs, "channel": ch, "symbol": sym, "window_ns": w,
                              "covered_ns": hb["covered"][k], "active_ns": hb["active"][k],
                              "quiet_ns": hb["quiet"][k], "missing_ns": hb["missing"][k],
                              "backfilled_ns": hb["backfilled"][k]})
    channels_out.sort(key=lambda r: (r["verified_coverage_pct"], -r["missing_ns"], r["symbol"],
                                     r["channel"]))

    days_out = []
    for (sym, date), c in sorted(day_cells.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        days_out.append({
            "date": date, "symbol": sym, "verdict": day_verdict(c["channels"].values(), th),
            "coverage_pct": _pct(c["covered_ns"], c["window_ns"]),
            "verified_coverage_pct": _pct(c["verified_ns"], c["window_ns"]),
            "quiet_pct": _pct(c["quiet_ns"], c["window_ns"]),
            "missing_pct": _pct(c["missing_ns"], c["window_ns"]),
            "channels": dict(sorted(c["channels"].items())),
        })

    gaps_out = []
    for gi, g in enumerate(gaps):
        if g.symbol != "*" and not wanted(g.symbol):
            continue
        use = gap_uses.get(gi)
        eff_start = use["start"] if use else g.start_ns
        eff_end = use["end"] if use else (g.end_ns if g.end_ns is not None else g.start_ns)
        gaps_out.append({
            "start_ns": g.start_ns, "end_ns": g.end_ns, "effective_start_ns": eff_start,
            "effective_end_ns": eff_end, "duration_s": round((eff_end - eff_start) / 1e9, 3),
            "stream": g.stream, "channel": g.channel, "symbol": g.symbol, "root": g.root,
            "conn_id": g.conn_id,
            "cause": g.cause, "missing": g.missing, "missing_count": g.missing_count,
            "healed_by": g.healed_by, "detail": g.detail,
            "counts_as": ("backfilled" if g.healed_by in BACKFILL_HEALS else
                          "missing" if use else "none"),
            "keys": use["keys"] if use else 0,
        })

    window_total = sum(r["window_ns"] for r in channels_out)
    covered_total = sum(r["covered_ns"] for r in channels_out)
    verified_total = sum(r["verified_coverage_pct"] * r["window_ns"] / 100.0
                         for r in channels_out)
    verdicts = {"available": 0, "degraded": 0, "missing": 0}
    for d in days_out:
        verdicts[d["verdict"]] += 1
    causes: dict[str, int] = defaultdict(int)
    for g in gaps_out:
        causes[g["cause"]] += 1
    epochs_out = _epoch_summary(data["epochs"], wanted, lo, hi)
    trades_out = [dict(r) | {"holes_detail": [h for h in data["trade_holes"]
                                              if h["symbol"] == r["symbol"]][:20]}
                  for r in data["trade_continuity"] if wanted(r["symbol"])]
    ohlc_out = _ohlc_check(data["ohlc_vs_trades"], per_key, wanted)
    return {
        "audit_version": REPORT_VERSION,
        "archive": label,
        "roots": [str(r) for r in src.roots],
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "range": {"from_ns": lo, "to_ns": hi, "from": _iso(lo), "to": _iso(hi)},
        "thresholds": {"available_pct": th.available_pct, "usable_pct": th.usable_pct},
        "summary": {
            "keys": len(channels_out), "symbols": len({r["symbol"] for r in channels_out}),
            "window_ns": window_total, "covered_ns": covered_total,
            "active_ns": sum(r["active_ns"] for r in channels_out),
            "quiet_ns": sum(r["quiet_ns"] for r in channels_out),
            "missing_ns": sum(r["missing_ns"] for r in channels_out),
            "backfilled_ns": sum(r["backfilled_ns"] for r in channels_out),
            "coverage_pct": _pct(covered_total, window_total),
            "verified_coverage_pct": round(100.0 * verified_total / window_total, 4)
            if window_total else 100.0,
            "verdicts": verdicts, "gaps": len(gaps_out), "gaps_by_cause": dict(sorted(causes.items())),
            "epochs": sum(r["epochs"] for r in channels_out),
            "desyncs": sum(r["desyncs"] for r in channels_out),
            "resnapshots": sum(r["resnapshots"] for r in channels_out),
            "quarantines": sum(1 for g in gaps_out if g["cause"] == "quarantine"),
            "checksum_verification_pct": verification["rate_pct"],
            "trade_ids_missing": sum(int(r["missing_ids"]) for r in trades_out),
            "ohlc_bars_mismatched": sum(r["count_mismatches"] + r["volume_mismatches"]
                                        for r in ohlc_out),
        },
        "channels": channels_out,
        "days": days_out,
        "hours": hours_out,
        "gaps": gaps_out,
        "epochs": epochs_out,
        "trades": trades_out,
        "ohlc": ohlc_out,
        "verification": verification,
    }


def _state(b: Breakdown) -> str:
    """One word for a key: ``missing`` when more is missing than covered, else ``active`` when
    at least as much time was active as quiet, else ``quiet``."""
    covered = iv.total(b.covered)
    if iv.total(b.missing) > covered:
        return "missing"
    return "active" if iv.total(b.active) >= iv.total(b.quiet) else "quiet"


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 1_000_000_000))


def _epoch_summary(rows: list[dict[str, Any]], wanted: Callable[[str], bool], lo: int,
                   hi: int) -> list[dict[str, Any]]:
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        if not wanted(r["symbol"]) or r["start_ns"] >= hi or r["end_ns"] < lo:
            continue
        k = (r["channel"], r["symbol"], day_of(max(r["start_ns"], lo)))
        e = out.setdefault(k, {"channel": k[0], "symbol": k[1], "date": k[2], "epochs": 0,
                               "start_reasons": defaultdict(int),
                               "end_reasons": defaultdict(int), "messages": 0,
                               "checksum_ok": 0, "checksum_failed": 0})
        e["epochs"] += 1
        e["start_reasons"][r["start_reason"]] += 1
        e["end_reasons"][r["end_reason"]] += 1
        e["messages"] += int(r["messages"] or 0)
        e["checksum_ok"] += int(r["checksum_ok"] or 0)
        e["checksum_failed"] += int(r["checksum_failed"] or 0)
    result = []
    for k in sorted(out):
        e = out[k]
        e["start_reasons"] = dict(sorted(e["start_reasons"].items()))
        e["end_reasons"] = dict(sorted(e["end_reasons"].items()))
        result.append(e)
    return result


def _verification(epoch_rows: list[dict[str, Any]], verify_report: Mapping[str, Any] | None,
                  wanted: Callable[[str], bool], lo: int, hi: int) -> dict[str, Any]:
    """Checksum verification figures: from a replay report when given, else live counts."""
    per: list[dict[str, Any]] = []
    if verify_report is not None:
        for p in verify_report.get("per", []):
            if wanted(p["symbol"]):
                per.append({"dataset": p["dataset"], "symbol": p["symbol"], "date": p["date"],
                            "messages_checked": p["messages_checked"],
                            "verified": p["verified"], "failed": p["failed"]})
        source = "replay"
        extra = {k: verify_report.get(k, 0) for k in
                 ("recorded_mismatches", "checkpoints_checked", "checkpoints_failed",
                  "files_checked", "files_failed", "unverifiable_messages")}
    else:
        acc: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        for r in epoch_rows:
            if r["channel"] not in CHECKSUM_CHANNELS or not wanted(r["symbol"]):
                continue
            if r["start_ns"] >= hi or r["end_ns"] < lo:
                continue
            a = acc[(r["channel"], r["symbol"], day_of(max(r["start_ns"], lo)))]
            a[0] += int(r["checksum_ok"] or 0)
            a[1] += int(r["checksum_failed"] or 0)
        for (ch, sym, date), (ok, failed) in sorted(acc.items()):
            per.append({"dataset": ch, "symbol": sym, "date": date,
                        "messages_checked": ok + failed, "verified": ok, "failed": failed})
        source = "live"
        extra = {}
    checked = sum(p["messages_checked"] for p in per)
    verified = sum(p["verified"] for p in per)
    failed = sum(p["failed"] for p in per)
    if source == "live":
        # a live mismatch ends its epoch and opens a gap: it is recorded evidence, not an
        # unverified stretch; count it separately like `recorder verify` does
        extra = {"recorded_mismatches": failed}
        for p in per:
            p["messages_checked"] -= p["failed"]
            p["failed"] = 0
        checked -= failed
        failed = 0
    return {"source": source, "messages_checked": checked, "verified": verified,
            "failed": failed, "rate_pct": _pct(verified, checked), **extra, "per": per}


def _ohlc_check(rows: list[dict[str, Any]], per_key: Mapping[Key, Breakdown],
                wanted: Callable[[str], bool]) -> list[dict[str, Any]]:
    """1-minute bars vs recorded trades, only for bars whose minute the ``trade`` key covered
    completely (a bar over a gap cannot be checked)."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        sym = r["symbol"]
        if not wanted(sym):
            continue
        o = out.setdefault(sym, {"symbol": sym, "bars": 0, "bars_checked": 0,
                                 "bars_matching": 0, "count_mismatches": 0,
                                 "volume_mismatches": 0, "examples": []})
        o["bars"] += 1
        b = per_key.get(("trade", sym))
        t0 = r["interval_begin_ns"]
        if b is None or iv.overlap(b.covered, t0, t0 + 60_000_000_000) < 60_000_000_000:
            continue
        o["bars_checked"] += 1
        count_ok = r["bar_trades"] is None or int(r["bar_trades"]) == int(r["trades"])
        try:
            bar_e18 = int(Decimal(r["bar_volume"]).scaleb(18).to_integral_value())
            vol_ok = bar_e18 == int(r["vol_e18"])
        except (InvalidOperation, TypeError, ValueError):
            vol_ok = False
        if count_ok and vol_ok:
            o["bars_matching"] += 1
            continue
        o["count_mismatches"] += not count_ok
        o["volume_mismatches"] += not vol_ok
        if len(o["examples"]) < 5:
            o["examples"].append({"interval_begin_ns": t0, "bar_trades": r["bar_trades"],
                                  "trades": int(r["trades"]), "bar_volume": r["bar_volume"],
                                  "trades_volume_e18": int(r["vol_e18"])})
    return [out[s] for s in sorted(out)]
