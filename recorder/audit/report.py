"""Assemble the audit report (a plain, JSON-ready dict with stable keys; see docs/audit.md).

:func:`build_report` is the only function here that touches the archive (through
:mod:`recorder.audit.load`); the arithmetic is in :mod:`recorder.audit.coverage` and
:mod:`recorder.audit.expect`, and the helpers below are pure. ``REPORT_VERSION`` is bumped when
a key changes meaning or is removed; keys may be added without a bump.
"""

from __future__ import annotations

import bisect
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from recorder.archive.layout import DAY_NS, day_of
from recorder.audit import intervals as iv
from recorder.audit.coverage import (
    BACKFILL_HEALS,
    STOP_TOLERANCE_NS,
    Breakdown,
    Drop,
    Gap,
    Key,
    RootRun,
    Run,
    Thresholds,
    anchor_runs,
    classify,
    combine_roots,
    connection_drops,
    coverage_pct,
    day_verdict,
    edges,
    gap_applies,
    gap_extent,
    is_clean_stop,
    recording_runs,
    subscription_end,
)
from recorder.audit.expect import Expectation, expected_keys, parse_expect
from recorder.audit.load import AuditSource, open_source, sibling_keys
from recorder.pipeline.core import FIX_STREAMS
from recorder.roots import PathSpec

__all__ = ["REPORT_VERSION", "HOUR_NS", "build_report", "Progress", "heatmap_bucket"]

REPORT_VERSION: Final = 2
HOUR_NS: Final = 3_600_000_000_000
#: Epoch end reasons that are desyncs (each is followed by a resnapshot when healed).
DESYNC_REASONS: Final = frozenset({"checksum_mismatch", "crossed", "apply_error", "seq_jump"})
#: Channels whose rows carry Kraken checksums (verification applies).
CHECKSUM_CHANNELS: Final = frozenset({"book", "level3"})
#: Bucket sizes the heatmap may use (ns): the smallest giving at most :data:`HEATMAP_COLUMNS`.
_BUCKETS: Final = tuple(s * 1_000_000_000 for s in (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400))
HEATMAP_COLUMNS: Final = 60

#: ``progress(step, done, total)``; called as the audit advances.
Progress = Callable[[str, int, int], None]


def _rate_pct(part: int, whole: int) -> float | None:
    """A rate in percent, None when there was nothing to count."""
    return round(100.0 * part / whole, 4) if whole > 0 else None


def heatmap_bucket(lo: int, hi: int) -> int:
    """The heatmap's bucket size for ``[lo, hi)``: the smallest of 1 s .. 1 day giving at most
    :data:`HEATMAP_COLUMNS` columns (a 45 s run gets 1 s columns, a week 3 h)."""
    span = max(1, hi - lo)
    for b in _BUCKETS:
        if span / b <= HEATMAP_COLUMNS:
            return b
    return _BUCKETS[-1]


def _gap_from_row(r: Mapping[str, Any]) -> Gap:
    return Gap(start_ns=r["start_ns"], end_ns=r["end_ns"], stream=r["stream"],
               channel=r["channel"], symbol=r["symbol"], conn_id=int(r["conn_id"]),
               cause=r["cause"], healed_by=r["healed_by"], missing=r["missing"],
               missing_count=r["missing_count"], detail=r["detail"], root=r["root"])


def _intervals_by_key(rows: Iterable[Mapping[str, Any]]) -> dict[Key, list[tuple[int, int]]]:
    out: dict[Key, list[tuple[int, int]]] = defaultdict(list)
    for r in rows:
        out[(r["channel"], r["symbol"])].append((r["start_ns"], r["end_ns"]))
    return out


_SERIES: Final = ("covered", "active", "quiet", "missing", "in_gap", "backfilled", "startup",
                  "shutdown")


def _bucket(b: Breakdown, lo: int, hi: int, step: int, origin: int | None = None
            ) -> dict[str, list[int]]:
    start = lo - lo % step if origin is None else origin
    return {name: iv.split_by(getattr(b, name), start, hi, step) for name in _SERIES}


def build_report(archive: PathSpec, *, lo: int | None = None, hi: int | None = None,
                 symbols: Iterable[str] | None = None, thresholds: Thresholds | None = None,
                 verify_report: Mapping[str, Any] | None = None,
                 progress: Progress | None = None, threads: int | None = None,
                 expect: Expectation | str | None = None) -> dict[str, Any]:
    """Audit ``archive`` over ``[lo, hi)`` (default: from its first to its last proof of
    listening).

    ``archive`` is an archive root, a parent of roots (capture's ``<archive>/<host>-w<k>/``) or
    several such paths (:func:`recorder.roots.archive_roots`); all roots with committed data
    are audited as one archive. Raises :class:`recorder.roots.ArchiveRootError` for a path
    that leads to no root and :class:`recorder.audit.load.AuditError` when no root has
    committed data. ``symbols`` restricts the keys (and expects those symbols);
    ``expect`` is an :class:`~recorder.audit.expect.Expectation` or ``--expect`` text
    (default ``auto``); ``verify_report`` is a ``recorder verify --json`` result (replay
    verification); without it the verification figures come from the live checksum counts in
    ``epochs``. See docs/audit.md for every key of the result.
    """
    th = thresholds or Thresholds()
    exp = expect if isinstance(expect, Expectation) else parse_expect(expect)
    note = progress or (lambda step, done, total: None)
    label = (str(archive) if isinstance(archive, (str, os.PathLike))
             else ", ".join(str(p) for p in archive))
    with open_source(archive, lo, hi, threads=threads) as src:
        theirs = sibling_keys(src) if exp.mode in ("auto", "online") else set()
        report = _build(src, label, list(symbols) if symbols is not None else None, th,
                        verify_report, note, exp, theirs)
    report["cross_source"] = _cross_source(archive, report, symbols)
    return report


def _cross_source(archive: PathSpec, report: dict[str, Any],
                  symbols: Iterable[str] | None) -> dict[str, Any]:
    """The cross-source section (:mod:`recorder.audit.cross`) over the report's range."""
    from recorder.audit.cross import cross_source_section
    from recorder.query.api import Archive

    r = report["range"]
    with Archive(archive) as ar:
        return cross_source_section(ar, r["from_ns"], r["to_ns"],
                                    list(symbols) if symbols is not None else None)


_STEPS: Final = ("subscribed", "activity", "gaps", "epochs", "conn_keys", "keys", "conn_proof",
                 "trade_continuity", "trade_holes", "ohlc_vs_trades", "online", "rejects",
                 "trade_jumps")


def _root_runs(data: Mapping[str, list[dict[str, Any]]], gaps: Sequence[Gap],
               runs: Mapping[tuple[str, Key], list[Run]], lo: int, hi: int
               ) -> dict[str, list[RootRun]]:
    """The recorder runs of every root (:func:`recording_runs`, then :func:`anchor_runs`)."""
    spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in data["conn_proof"]:
        firsts = [r[c] for c in ("first_ns", "sub_from_ns") if r[c] is not None]
        lasts = [r[c] for c in ("last_ns", "sub_to_ns") if r[c] is not None]
        if firsts and lasts:
            spans[r["root"]].append((int(min(firsts)), int(max(lasts))))
    restarts: dict[str, list[tuple[int, int]]] = defaultdict(list)
    stops: dict[str, list[int]] = defaultdict(list)
    for g in gaps:
        if g.cause == "process_restart" and g.end_ns is not None:
            restarts[g.root].append((g.start_ns, g.end_ns))
        elif is_clean_stop(g):
            cut = subscription_end(g, runs.get((g.root, (g.channel, g.symbol)), ()))
            stops[g.root].append(cut if cut is not None else g.start_ns)
    return {root: anchor_runs(recording_runs(spans[root], restarts[root], stops[root]), lo, hi)
            for root in sorted(set(spans) | set(restarts))}


def _build(src: AuditSource, label: str, symbols: list[str] | None, th: Thresholds,
           verify_report: Mapping[str, Any] | None, note: Progress, exp: Expectation,
           theirs: set[Key]) -> dict[str, Any]:
    lo, hi = src.lo, src.hi
    data: dict[str, list[dict[str, Any]]] = {}
    for i, step in enumerate(_STEPS):
        note(f"query {step}", i, len(_STEPS))
        data[step] = src.rows(step)
    note("queries done", len(_STEPS), len(_STEPS))
    wanted_set = set(symbols) if symbols is not None else None

    def wanted(sym: str) -> bool:
        return wanted_set is None or sym in wanted_set

    # per (root, key): subscription runs per connection, epoch starts; per root: the keys of
    # each connection and the keys the root knows (a root's gaps apply to its own keys only)
    runs: dict[tuple[str, Key], list[Run]] = defaultdict(list)
    for r in data["subscribed"]:
        runs[(r["root"], (r["channel"], r["symbol"]))].append(
            (int(r["conn_id"]), r["start_ns"], r["end_ns"], bool(r["alive"])))
    activity = _intervals_by_key(data["activity"])
    all_gaps = [_gap_from_row(r) for r in data["gaps"]]
    stop_rows = [g for g in all_gaps if is_clean_stop(g)]
    gaps = [g for g in all_gaps if not is_clean_stop(g)]
    conn_keys: dict[str, dict[int, set[Key]]] = defaultdict(lambda: defaultdict(set))
    for r in data["conn_keys"]:
        conn_keys[r["root"]][int(r["conn_id"])].add((r["channel"], r["symbol"]))
    epochs_by_key: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    epoch_starts: dict[tuple[str, Key], list[int]] = defaultdict(list)
    for r in data["epochs"]:
        epochs_by_key[(r["channel"], r["symbol"])].append(r)
        epoch_starts[(r["root"], (r["channel"], r["symbol"]))].append(r["start_ns"])
    root_runs = _root_runs(data, all_gaps, runs, lo, hi)
    lost_trades = {(r["root"], r["symbol"], r["start_ns"]): (r["first_ts_ns"], r["last_ts_ns"])
                   for r in data["trade_jumps"]}

    root_keys: dict[Key, set[str]] = defaultdict(set)
    for root, key in list(runs) + list(epoch_starts):
        root_keys[key].add(root)
    for g in gaps:
        if g.channel != "*" and g.symbol != "*" and g.stream != "rest":
            root_keys[(g.channel, g.symbol)].add(g.root)
    held = set(root_keys) | {(r["channel"], r["symbol"]) for r in data["keys"]}
    channels_seen = {k[0] for k in held}
    channels_seen.discard("*")
    keys, expect_mode = expected_keys(
        exp, recorded=held, channels=channels_seen,
        online=[r["symbol"] for r in data["online"]], sibling_keys=theirs, symbols=symbols)
    ordered = sorted(keys)

    # connections that went away while their recorder ran: one incident each, over every key
    # they carried; the pipeline's per-key disconnect rows are attached to theirs
    by_root: dict[str, dict[Key, list[Run]]] = defaultdict(dict)
    for (run_root, run_key), rs in runs.items():
        by_root[run_root][run_key] = rs
    # the last proof of listening before every disconnect (found first, then looked up at once)
    cuts = [(root, d.conn_id, d.cut_ns) for root in by_root
            for d in connection_drops(by_root[root], root_runs.get(root, []))]
    for g in all_gaps:
        if g.cause == "disconnect":
            cut = subscription_end(g, runs.get((g.root, (g.channel, g.symbol)), ()))
            if cut is not None:
                cuts.append((g.root, g.conn_id, cut))
    known = src.last_proofs(cuts)

    def proof_of(root: str) -> Callable[[int, int], int | None]:
        return lambda conn, t: known.get((root, conn, t))

    drops: list[tuple[str, Drop]] = []
    for root in sorted(by_root):
        drops += [(root, d) for d in connection_drops(
            by_root[root], root_runs.get(root, []), proof_of(root))]
    drop_of = {(root, d.conn_id, d.cut_ns): n for n, (root, d) in enumerate(drops)}
    drops_of_key: dict[tuple[str, Key], list[int]] = defaultdict(list)
    for n, (root, d) in enumerate(drops):
        for key in d.resumed:
            drops_of_key[(root, key)].append(n)
    cuts_of_conn: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for n, (root, d) in enumerate(drops):
        cuts_of_conn[(root, d.conn_id)].append((d.cut_ns, n))
    attached: dict[int, int] = {}
    for gi, g in enumerate(gaps):
        if g.cause == "disconnect":
            cut = subscription_end(g, runs.get((g.root, (g.channel, g.symbol)), ()))
            owner = drop_of.get((g.root, g.conn_id, cut)) if cut is not None else None
            if owner is not None:
                attached[gi] = owner
        elif g.cause == "silence" and g.conn_id != 0 and g.end_ns is not None:
            # the watchdog found the connection silent and closed it: one incident, the
            # silence's cause, from its last frame to the resubscriptions
            near = [n for cut, n in cuts_of_conn.get((g.root, g.conn_id), ())
                    if g.end_ns <= cut <= g.end_ns + STOP_TOLERANCE_NS]
            if near:
                attached[gi] = near[0]

    by_scope: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for gi, g in enumerate(gaps):
        if gi not in attached:
            by_scope[(g.root, g.channel, g.symbol)].append(gi)
    per_key: dict[Key, Breakdown] = {}
    #: per gap row (and per drop): the keys it applies to and its extent over them
    gap_uses: dict[int, dict[str, Any]] = {}
    drop_uses: dict[int, dict[str, Any]] = {}
    key_gaps: dict[Key, list[int]] = defaultdict(list)
    key_drops: dict[Key, list[int]] = defaultdict(list)
    #: the disconnect rows of a key attached to its drops (for its resnapshot count)
    key_rows: dict[Key, list[int]] = defaultdict(list)
    rows_of_drop: dict[int, list[int]] = defaultdict(list)
    for gi, n in attached.items():
        rows_of_drop[n].append(gi)
    for done, key in enumerate(ordered):
        if done % 25 == 0:
            note("coverage", done, len(ordered))
        ch, sym = key
        per_root: list[tuple[list[tuple[int, int]], list[tuple[int, int]]]] = []
        dead: list[tuple[int, int]] = []
        healed_ext: list[tuple[int, int]] = []
        startup: list[tuple[int, int]] = []
        shutdown: list[tuple[int, int]] = []
        for root in sorted(root_keys.get(key, ())):
            key_runs = runs.get((root, key), [])
            alive_r = iv.normalise((s, e) for _, s, e, a in key_runs if a)
            dead += iv.normalise((s, e) for _, s, e, a in key_runs if not a)
            starts = sorted(epoch_starts.get((root, key), ()))
            missing_ext: list[tuple[int, int]] = []
            scoped = sorted(by_scope.get((root, ch, sym), []) + by_scope.get((root, ch, "*"), [])
                            + by_scope.get((root, "*", sym), [])
                            + by_scope.get((root, "*", "*"), []))
            for gi in scoped:
                g = gaps[gi]
                if not gap_applies(g, key, conn_keys.get(root, {})):
                    continue
                ext = gap_extent(g, starts, key_runs, hi, last_proof=proof_of(root),
                                 lost=lost_trades.get((root, g.symbol, g.start_ns))
                                 if g.healed_by in BACKFILL_HEALS else None)
                (healed_ext if g.healed_by in BACKFILL_HEALS else missing_ext).append(ext)
                key_gaps[key].append(gi)
                _use(gap_uses, gi, ext)
            for di in drops_of_key.get((root, key), ()):
                d = drops[di][1]
                own = [gi for gi in rows_of_drop.get(di, ())
                       if (gaps[gi].channel, gaps[gi].symbol) == key]
                key_rows[key] += own
                row_end = gaps[own[0]].end_ns if own else None
                fallback = row_end if row_end is not None else (_next(starts, d.cut_ns) or hi)
                ext = d.extent(key, fallback)
                missing_ext.append(ext)
                key_drops[key].append(di)
                _use(drop_uses, di, ext)
            up, down = edges(key_runs, root_runs.get(root, []))
            startup += up
            shutdown += down
            per_root.append((alive_r, missing_ext))
        alive, missing = combine_roots(per_root)
        per_key[key] = classify((lo, hi), alive, dead, activity.get(key, ()), missing,
                                healed_ext, startup, shutdown)
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
            edge = days["startup"][k] + days["shutdown"][k]
            measured = w - edge
            date = day_of(d0)
            ok = (ch, sym, date) not in unverified_days
            v = days["covered"][k] if ok else 0
            verified_ns += v
            cell = day_cells.setdefault((sym, date), {"channels": {}, "measured_ns": 0,
                                                      "covered_ns": 0, "quiet_ns": 0,
                                                      "missing_ns": 0, "verified_ns": 0})
            if measured > 0 or edge == 0:  # a channel-day that was all startup: nothing to judge
                cell["channels"][ch] = coverage_pct(v, measured)
            cell["measured_ns"] += measured
            cell["covered_ns"] += days["covered"][k]
            cell["quiet_ns"] += days["quiet"][k]
            cell["missing_ns"] += days["missing"][k]
            cell["verified_ns"] += v
        measured = b.measured_ns
        covered = iv.total(b.covered)
        ck_ok = sum(int(e["checksum_ok"] or 0) for e in eps)
        ck_failed = sum(int(e["checksum_failed"] or 0) for e in eps)
        channels_out.append({
            "channel": ch, "symbol": sym, "recorded": key in root_keys,
            "window_ns": b.window_ns, "measured_ns": measured,
            "startup_ns": iv.total(b.startup), "shutdown_ns": iv.total(b.shutdown),
            "covered_ns": covered, "active_ns": iv.total(b.active), "quiet_ns": iv.total(b.quiet),
            "missing_ns": iv.total(b.missing),
            "missing_by_reason": {"not_subscribed": iv.total(b.not_subscribed),
                                  "not_alive": iv.total(b.not_alive),
                                  "in_gap": iv.total(b.in_gap)},
            "backfilled_ns": iv.total(b.backfilled),
            "coverage_pct": coverage_pct(covered, measured),
            "verified_coverage_pct": coverage_pct(verified_ns, measured),
            "quiet_pct": coverage_pct(iv.total(b.quiet), measured),
            "state": _state(b),
            "epochs": len(eps),
            "desyncs": sum(1 for e in eps if e["end_reason"] in DESYNC_REASONS),
            "resnapshots": sum(1 for gi in gis + key_rows.get(key, [])
                               if gaps[gi].healed_by == "resnapshot"),
            "quarantines": sum(1 for gi in gis if gaps[gi].cause == "quarantine"),
            "gaps": len(gis) + len(key_drops.get(key, ())),
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
                              "backfilled_ns": hb["backfilled"][k],
                              "startup_ns": hb["startup"][k], "shutdown_ns": hb["shutdown"][k]})
    channels_out.sort(key=lambda r: (r["verified_coverage_pct"], -r["missing_ns"], r["symbol"],
                                     r["channel"]))

    days_out: list[dict[str, Any]] = []
    for (sym, date), c in sorted(day_cells.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        m = c["measured_ns"]
        days_out.append({
            "date": date, "symbol": sym, "verdict": day_verdict(c["channels"].values(), th),
            "coverage_pct": coverage_pct(c["covered_ns"], m),
            "verified_coverage_pct": coverage_pct(c["verified_ns"], m),
            "quiet_pct": coverage_pct(c["quiet_ns"], m),
            "missing_pct": coverage_pct(c["missing_ns"], m),
            "channels": dict(sorted(c["channels"].items())),
        })

    gaps_out = _gap_incidents(gaps, gap_uses, drops, drop_uses, attached, wanted)
    window_total = sum(r["window_ns"] for r in channels_out)
    measured_total = sum(r["measured_ns"] for r in channels_out)
    covered_total = sum(r["covered_ns"] for r in channels_out)
    verified_total = sum(r["verified_coverage_pct"] * r["measured_ns"] / 100.0
                         for r in channels_out)
    verdicts = {"available": 0, "degraded": 0, "missing": 0}
    for day in days_out:
        verdicts[day["verdict"]] += 1
    causes: dict[str, int] = defaultdict(int)
    for entry in gaps_out:
        causes[entry["cause"]] += 1
    epochs_out = _epoch_summary(data["epochs"], wanted, lo, hi)
    trades_out = [dict(r) | {"holes_detail": [h for h in data["trade_holes"]
                                              if h["symbol"] == r["symbol"]][:20]}
                  for r in data["trade_continuity"] if wanted(r["symbol"])]
    ohlc_out = _ohlc_check(data["ohlc_vs_trades"], per_key, wanted)
    runs_out = _runs(root_runs, lo, hi)
    rejects_out = [dict(r) for r in data["rejects"]]
    return {
        "audit_version": REPORT_VERSION,
        "archive": label,
        "roots": [str(r) for r in src.roots],
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "range": {"from_ns": lo, "to_ns": hi, "from": _iso(lo), "to": _iso(hi)},
        "thresholds": {"available_pct": th.available_pct, "usable_pct": th.usable_pct},
        "expect": {"mode": expect_mode, "symbols": list(exp.symbols),
                   "keys": [f"{c}:{s}" for c, s in exp.keys],
                   "never_recorded": sum(1 for r in channels_out if not r["recorded"])},
        "summary": {
            "keys": len(channels_out), "symbols": len({r["symbol"] for r in channels_out}),
            "window_ns": window_total, "measured_ns": measured_total,
            "startup_ns": sum(r["startup_ns"] for r in channels_out),
            "shutdown_ns": sum(r["shutdown_ns"] for r in channels_out),
            "covered_ns": covered_total,
            "active_ns": sum(r["active_ns"] for r in channels_out),
            "quiet_ns": sum(r["quiet_ns"] for r in channels_out),
            "missing_ns": sum(r["missing_ns"] for r in channels_out),
            "backfilled_ns": sum(r["backfilled_ns"] for r in channels_out),
            "coverage_pct": coverage_pct(covered_total, measured_total),
            "verified_coverage_pct": coverage_pct(verified_total, measured_total),
            "never_recorded": sum(1 for r in channels_out if not r["recorded"]),
            "verdicts": verdicts, "gaps": len(gaps_out),
            "gaps_by_cause": dict(sorted(causes.items())),
            "stops": sum(1 for r in runs_out if r["ended_by"] == "stop"),
            "clean_stop_rows": sum(1 for g in stop_rows if g.symbol == "*" or wanted(g.symbol)),
            "epochs": sum(r["epochs"] for r in channels_out),
            "desyncs": sum(r["desyncs"] for r in channels_out),
            "resnapshots": sum(r["resnapshots"] for r in channels_out),
            "quarantines": sum(1 for g in gaps_out if g["cause"] == "quarantine"),
            "checksum_verification_pct": verification["rate_pct"],
            "trade_ids_missing": sum(int(r["missing_ids"]) for r in trades_out),
            "ohlc_bars_mismatched": sum(r["count_mismatches"] + r["volume_mismatches"]
                                        for r in ohlc_out),
            "rejects": sum(int(r["rejects"]) for r in rejects_out),
        },
        "channels": channels_out,
        "days": days_out,
        "hours": hours_out,
        "heatmap": _heatmap(per_key, lo, hi),
        "gaps": gaps_out,
        "runs": runs_out,
        "epochs": epochs_out,
        "trades": trades_out,
        "ohlc": ohlc_out,
        "rejects": rejects_out,
        "verification": verification,
    }


def _use(uses: dict[int, dict[str, Any]], n: int, ext: tuple[int, int]) -> None:
    use = uses.setdefault(n, {"keys": 0, "start": ext[0], "end": ext[1]})
    use["keys"] += 1
    use["start"] = min(use["start"], ext[0])
    use["end"] = max(use["end"], ext[1])


def _next(sorted_values: Sequence[int], t: int) -> int | None:
    i = bisect.bisect_right(sorted_values, t)
    return sorted_values[i] if i < len(sorted_values) else None


#: ``detail`` of a drop that no ``disconnect`` row describes.
DROP_DETAIL: Final = ("connection closed: every subscription on it ended here (from liveness; "
                      "no gap row: none of its keys had an open epoch)")


def _gap_entry(rows: Sequence[Gap], used: Sequence[dict[str, Any]], *, keys: Sequence[Key],
               fallback: Gap | None = None, cause: str = "", root: str = "", conn_id: int = 0,
               start_ns: int = 0, healed_by: str = "") -> dict[str, Any]:
    """One ``gaps[]`` entry from the rows it stands for (possibly none: a drop found in the
    liveness data alone) and the extents it had over the audited keys."""
    g = rows[0] if rows else fallback
    if used:
        eff_start = min(u["start"] for u in used)
        eff_end = max(u["end"] for u in used)
    elif g is not None:
        eff_start = g.start_ns
        eff_end = g.end_ns if g.end_ns is not None else g.start_ns
    else:
        eff_start = eff_end = start_ns
    symbols = sorted({k[1] for k in keys} or {r.symbol for r in rows})
    channels = sorted({k[0] for k in keys} or {r.channel for r in rows})
    ends = [r.end_ns for r in rows]
    counts = [r.missing_count for r in rows if r.missing_count is not None]
    missing = "; ".join(sorted({r.missing for r in rows if r.missing}))
    healed = (",".join(sorted({r.healed_by for r in rows if r.cause == "disconnect"}
                              or {r.healed_by for r in rows})) if rows else healed_by)
    return {
        "start_ns": min(r.start_ns for r in rows) if rows else start_ns,
        "end_ns": (None if not rows or any(e is None for e in ends)
                   else max(e for e in ends if e is not None)),
        "effective_start_ns": eff_start, "effective_end_ns": eff_end,
        "duration_s": round((eff_end - eff_start) / 1e9, 3),
        "stream": g.stream if g is not None else "*",
        "channel": channels[0] if len(channels) == 1 else "*", "channels": channels,
        "symbol": symbols[0] if len(symbols) == 1 else "*", "symbols": symbols,
        "rows": len(rows), "root": g.root if g is not None else root,
        "conn_id": g.conn_id if g is not None else conn_id,
        "cause": g.cause if g is not None else cause,
        "missing": missing or None, "missing_count": sum(counts) if counts else None,
        "healed_by": healed, "detail": g.detail if g is not None else DROP_DETAIL,
        "counts_as": ("backfilled" if rows and all(r.healed_by in BACKFILL_HEALS for r in rows)
                      else "missing" if used else "none"),
        "keys": sum(u["keys"] for u in used),
    }


def _gap_incidents(gaps: Sequence[Gap], uses: Mapping[int, dict[str, Any]],
                   drops: Sequence[tuple[str, Drop]], drop_uses: Mapping[int, dict[str, Any]],
                   attached: Mapping[int, int], wanted: Callable[[str], bool]
                   ) -> list[dict[str, Any]]:
    """One entry per incident: a connection that went away (a :class:`Drop`, with the
    ``disconnect`` rows the pipeline wrote for it, one per key that had an open epoch) is one
    gap over every key it carried (symbol ``*`` when several; ``symbols`` lists them); every
    other row is its own gap."""
    out = []
    for n, (root, d) in enumerate(drops):
        keys = [k for k in d.resumed if wanted(k[1])]
        if not keys:
            continue
        rows = [gaps[gi] for gi in sorted(gi for gi, m in attached.items() if m == n)]
        used = [drop_uses[n]] if n in drop_uses else []
        healed = "resubscribe" if all(v is not None for v in d.resumed.values()) else "none"
        # a drop the watchdog caused is a silence (its row first: cause, start, detail)
        rows.sort(key=lambda r: r.cause != "silence")
        out.append(_gap_entry(rows, used, keys=keys, cause="disconnect", root=root,
                              conn_id=d.conn_id, start_ns=d.start_ns, healed_by=healed))
    for gi, g in enumerate(gaps):
        if gi in attached or (g.symbol != "*" and not wanted(g.symbol)):
            continue
        used = [uses[gi]] if gi in uses else []
        out.append(_gap_entry([g], used, keys=[]))
    out.sort(key=lambda x: (x["effective_start_ns"], x["channel"], x["symbol"], x["root"]))
    return out


def _heatmap(per_key: Mapping[Key, Breakdown], lo: int, hi: int) -> dict[str, Any]:
    """Per symbol (all its channels summed) and bucket of :func:`heatmap_bucket`: measured,
    covered, quiet and missing ns; buckets are aligned to the range start."""
    step = heatmap_bucket(lo, hi)
    cells: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for (_, sym), b in per_key.items():
        parts = _bucket(b, lo, hi, step, origin=lo)
        for k in range(len(parts["covered"])):
            s0 = lo + k * step
            w = min(hi, s0 + step) - s0
            c = cells[(sym, s0)]
            c[0] += w - parts["startup"][k] - parts["shutdown"][k]
            c[1] += parts["covered"][k]
            c[2] += parts["quiet"][k]
            c[3] += parts["missing"][k]
    return {"bucket_ns": step, "cells": [
        {"start_ns": s0, "symbol": sym, "measured_ns": c[0], "covered_ns": c[1],
         "quiet_ns": c[2], "missing_ns": c[3]} for (sym, s0), c in sorted(cells.items())]}


def _runs(root_runs: Mapping[str, list[RootRun]], lo: int, hi: int) -> list[dict[str, Any]]:
    out = []
    for root in sorted(root_runs):
        rs = root_runs[root]
        for i, r in enumerate(rs):
            if r.end_ns < lo or r.start_ns >= hi:
                continue
            ended = ("stop" if r.stop_ns is not None else
                     "restart" if i + 1 < len(rs) else "open")
            out.append({"root": root, "start_ns": r.start_ns, "end_ns": r.end_ns,
                        "start": _iso(r.start_ns), "end": _iso(r.end_ns), "ended_by": ended,
                        "restarted": r.restarted})
    return out


def _state(b: Breakdown) -> str:
    """One word for a key: ``missing`` when more is missing than covered (or nothing was
    covered), else ``active`` when at least as much time was active as quiet, else
    ``quiet``."""
    covered = iv.total(b.covered)
    if covered == 0 or iv.total(b.missing) > covered:
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
                  "files_checked", "files_failed", "unverifiable_messages",
                  "not_checkable_epochs", "not_checkable_messages")}
    else:
        acc: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        no_crc = [0, 0]  # FIX epochs, messages: no Kraken CRC32, not checkable
        for r in epoch_rows:
            if r["channel"] not in CHECKSUM_CHANNELS or not wanted(r["symbol"]):
                continue
            if r["start_ns"] >= hi or r["end_ns"] < lo:
                continue
            if r.get("stream") in FIX_STREAMS:
                no_crc[0] += 1
                no_crc[1] += int(r["messages"] or 0)
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
        extra = {"recorded_mismatches": failed, "not_checkable_epochs": no_crc[0],
                 "not_checkable_messages": no_crc[1]}
        for p in per:
            p["messages_checked"] -= p["failed"]
            p["failed"] = 0
        checked -= failed
        failed = 0
    return {"source": source, "messages_checked": checked, "verified": verified,
            "failed": failed, "rate_pct": _rate_pct(verified, checked), **extra, "per": per}


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
