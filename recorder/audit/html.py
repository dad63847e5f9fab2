"""One self-contained HTML page for an audit report: inline CSS and SVG, a few lines of inline
JS (cell details on hover), no external resource of any kind, so it works offline and can be
mailed or archived as a single file.

Sections (each has a stable ``id`` the rendering test checks): ``summary``, ``heatmap``
(symbols x time buckets, colour = coverage, quiet buckets marked), ``timeline`` (the recorder's
runs, then every gap at its true extent, one lane per channel and symbol, each lane and bar
named by its channel), ``worst`` (worst channel/symbol keys), ``verification`` (checksum,
continuity and reject figures) and ``days`` (per-day verdicts). Both time axes put ticks at
round times (1 s .. 1 day apart) so a 45-second run and a week read equally well. An empty
table or chart says why it is empty.
"""

from __future__ import annotations

import html
import time
from typing import Any, Final

__all__ = ["render_html", "time_ticks"]

_CAUSE_COLOURS: Final = {
    "process_restart": "#6b21a8", "disconnect": "#c2410c", "silence": "#b45309",
    "checksum_mismatch": "#be123c", "crossed_book": "#9f1239", "apply_error": "#881337",
    "trade_id_jump": "#1d4ed8", "seq_jump": "#1e40af", "quarantine": "#374151",
    "rate_limit": "#0f766e", "subscribe_failed": "#4d7c0f",
}
_OTHER_CAUSE: Final = "#6b7280"
_MAX_LANES: Final = 60
_MAX_ROWS: Final = 80
_TICK_STEPS_S: Final = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
                        21600, 43200, 86400, 172800, 604800)

_CSS: Final = """
*{box-sizing:border-box}body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;
margin:0;color:#111827;background:#f9fafb}header{background:#111827;color:#f9fafb;padding:12px 20px}
header h1{font-size:18px;margin:0}header p{margin:2px 0 0;color:#d1d5db;font-size:13px}
main{padding:12px 20px;max-width:1400px}section{background:#fff;border:1px solid #e5e7eb;
border-radius:6px;padding:12px 16px;margin:0 0 14px}h2{font-size:15px;margin:0 0 8px}
.kpis{display:flex;flex-wrap:wrap;gap:10px}.kpi{border:1px solid #e5e7eb;border-radius:6px;
padding:6px 12px;min-width:150px}.kpi b{display:block;font-size:20px}.kpi span{color:#6b7280;
font-size:12px}table{border-collapse:collapse;width:100%;font-size:13px}th,td{padding:3px 8px;
border-bottom:1px solid #f3f4f6;text-align:right;white-space:nowrap}th{background:#f3f4f6}
td.l,th.l{text-align:left}.scroll{overflow-x:auto}.legend{font-size:12px;color:#4b5563;margin:4px 0}
.legend i{display:inline-block;width:12px;height:12px;vertical-align:-2px;margin:0 4px 0 10px}
.available{color:#15803d}.degraded{color:#b45309}.missing{color:#b91c1c}
p.empty{color:#4b5563;font-style:italic;margin:4px 0}
#tip{position:fixed;pointer-events:none;background:#111827;color:#fff;padding:4px 8px;
border-radius:4px;font-size:12px;display:none;z-index:9}svg text{font:11px system-ui,sans-serif}
svg text.axis{fill:#374151}svg text.bar{fill:#111827;font-size:10px}
"""

_JS: Final = """
(function(){var tip=document.getElementById('tip');
document.querySelectorAll('[data-tip]').forEach(function(el){
el.addEventListener('mousemove',function(e){tip.textContent=el.getAttribute('data-tip');
tip.style.display='block';tip.style.left=(e.clientX+12)+'px';tip.style.top=(e.clientY+12)+'px';});
el.addEventListener('mouseleave',function(){tip.style.display='none';});});
document.body.setAttribute('data-ready','1');})();
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _t(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns // 1_000_000_000))


def _dur(ns: float) -> str:
    s = ns / 1e9
    if s < 1:
        return f"{s * 1000:.0f} ms" if s > 0 else "0 s"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def _empty(why: str) -> str:
    return f'<p class="empty">{_e(why)}</p>'


def time_ticks(lo: int, hi: int, max_ticks: int = 10) -> list[tuple[int, str]]:
    """Axis ticks for ``[lo, hi)``: ``(ns, label)`` at multiples of the smallest round step
    (1 s, 2 s, 5 s, ... 1 day, 1 week) giving at most ``max_ticks``; labels ``HH:MM:SS`` below
    a minute's step, ``HH:MM`` below a day's (with the date where it changes), else the date."""
    span = max(1, hi - lo)
    step_s = next((s for s in _TICK_STEPS_S if span / (s * 1_000_000_000) <= max_ticks),
                  _TICK_STEPS_S[-1])
    step = step_s * 1_000_000_000
    first = -(-lo // step) * step
    out: list[tuple[int, str]] = []
    last_day = ""
    for t in range(first, hi + 1, step):
        full = _t(t)
        day, clock = full[5:10], full[11:]
        if step_s < 60:
            label = clock
        elif step_s < 86400:
            label = clock[:5] if day == last_day else f"{day} {clock[:5]}"
        else:
            label = full[:10]
        last_day = day
        out.append((t, label))
    return out


def _colour(pct: float, quiet_share: float) -> str:
    """Red (0 %) -> amber -> green (100 %); mostly-quiet covered cells are blue-green."""
    if pct >= 99.0:
        return "#0f766e" if quiet_share > 0.5 else "#16a34a"
    if pct >= 90.0:
        return "#84cc16"
    if pct >= 50.0:
        return "#f59e0b"
    if pct > 0.0:
        return "#ef4444"
    return "#7f1d1d"


def _pct_text(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f} %"


def _kpis(r: dict[str, Any]) -> str:
    s = r["summary"]
    v = s["verdicts"]
    src = r["verification"]["source"]
    items = [
        (f"{s['verified_coverage_pct']:.3f} %", "verified coverage"),
        (f"{s['coverage_pct']:.3f} %", "covered (active + quiet)"),
        (_dur(s["quiet_ns"]), "quiet (listening, no events)"),
        (_dur(s["missing_ns"]), "missing"),
        (_dur(s["startup_ns"] + s["shutdown_ns"]), "start-up / shut-down (not measured)"),
        (_pct_text(s["checksum_verification_pct"]), f"checksums verified ({src})"),
        (str(s["gaps"]), "gaps"),
        (f"{v['available']} / {v['degraded']} / {v['missing']}",
         "symbol-days available / degraded / missing"),
        (str(s["trade_ids_missing"]), "trade ids still missing"),
        (str(s["rejects"]), "rejected frames"),
    ]
    return "".join(f'<div class="kpi"><b>{_e(a)}</b><span>{_e(b)}</span></div>' for a, b in items)


def _no_keys_reason(r: dict[str, Any]) -> str:
    exp = r.get("expect", {})
    return ("Nothing was recorded in this range, and nothing is expected "
            f"(expect: {exp.get('mode', 'recorded')}); an empty range is 0 % covered. Give "
            "--expect SYMBOLS or --symbols to name what should have been recorded.")


def _axis(parts: list[str], lo: int, hi: int, left: int, width: int, y: int) -> None:
    scale = width / max(1, hi - lo)
    for t, label in time_ticks(lo, hi):
        x = left + (t - lo) * scale
        anchor = "end" if x > left + width - 30 else "middle" if x > left + 30 else "start"
        parts.append(f'<text class="axis" x="{x:.1f}" y="{y}" text-anchor="{anchor}">'
                     f'{_e(label)}</text><line x1="{x:.1f}" x2="{x:.1f}" y1="{y + 3}" '
                     f'y2="{y + 7}" stroke="#9ca3af"/>')


def _heatmap(r: dict[str, Any]) -> str:
    hm = r.get("heatmap", {"bucket_ns": 3_600_000_000_000, "cells": []})
    lo, hi = r["range"]["from_ns"], r["range"]["to_ns"]
    step = hm["bucket_ns"]
    cells = {(c["symbol"], c["start_ns"]): c for c in hm["cells"]}
    starts = sorted({c["start_ns"] for c in hm["cells"]})
    worst_first: list[str] = []
    seen: set[str] = set()
    for c in r["channels"]:
        if c["symbol"] not in seen:
            seen.add(c["symbol"])
            worst_first.append(c["symbol"])
    symbols = worst_first[:_MAX_ROWS]
    if not symbols or not starts or hi <= lo:
        return _empty(_no_keys_reason(r))
    left, width, ch, top = 110, 1100, 14, 22
    scale = width / (hi - lo)
    height = top + ch * len(symbols) + 4
    parts = [f'<svg id="heatmap-svg" width="{left + width + 8}" height="{height}" role="img" '
             f'aria-label="coverage heatmap">']
    _axis(parts, lo, hi, left, width, 12)
    for j, sym in enumerate(symbols):
        y = top + j * ch
        parts.append(f'<text x="0" y="{y + 11}">{_e(sym[:16])}</text>')
        for s0 in starts:
            c = cells.get((sym, s0))
            if c is None:
                continue
            x0 = left + (s0 - lo) * scale
            x1 = left + (min(hi, s0 + step) - lo) * scale
            w = c["measured_ns"]
            if w <= 0:  # start-up / shut-down only: not measured
                fill, text = "#e5e7eb", "start-up / shut-down (not measured)"
            else:
                pct = 100.0 * c["covered_ns"] / w
                qs = c["quiet_ns"] / c["covered_ns"] if c["covered_ns"] else 0.0
                fill = _colour(pct, qs)
                text = (f"covered {pct:.2f}% (quiet {100 * qs:.0f}% of covered), missing "
                        f"{_dur(c['missing_ns'])}")
            parts.append(
                f'<rect class="cell" x="{x0:.1f}" y="{y}" width="{max(1.0, x1 - x0 - 1):.1f}" '
                f'height="{ch - 1}" fill="{fill}" data-tip="{_e(sym)} {_e(_t(s0))} '
                f'+{_e(_dur(min(hi, s0 + step) - s0))}: {_e(text)}"/>')
    parts.append("</svg>")
    more = len(seen) - len(symbols)
    legend = (f'<div class="legend">columns of {_e(_dur(step))} (UTC); coverage of all the '
              'symbol\'s channels: <i style="background:#16a34a"></i>&ge;99% '
              '<i style="background:#0f766e"></i>&ge;99%, mostly quiet '
              '<i style="background:#84cc16"></i>&ge;90% <i style="background:#f59e0b"></i>'
              '&ge;50% <i style="background:#ef4444"></i>&lt;50% '
              '<i style="background:#7f1d1d"></i>none '
              '<i style="background:#e5e7eb"></i>start-up / shut-down</div>')
    note = f"<p>{more} more symbols not drawn (all are in the JSON).</p>" if more > 0 else ""
    return legend + f'<div class="scroll">{"".join(parts)}</div>' + note


def _channels_of(g: dict[str, Any]) -> str:
    """The channel(s) a gap is on, by name (``*`` rows: every channel)."""
    chans = g.get("channels") or [g["channel"]]
    if chans == ["*"]:
        return "all channels"
    return ", ".join(chans[:3]) + (f" +{len(chans) - 3}" if len(chans) > 3 else "")


def _lane_of(g: dict[str, Any]) -> tuple[str, str]:
    """(sort key, label) of a gap's lane: its channel(s) and symbol(s), always naming the
    channel."""
    if g.get("stream") == "rest":
        return ("0|rest", "REST requests")
    ch = _channels_of(g)
    syms = g.get("symbols") or [g["symbol"]]
    if g["symbol"] != "*":
        who = g["symbol"]
    elif len(syms) > 1:
        who = f"{len(syms)} symbols"
    else:
        who = "all symbols"
    return (f"{g['symbol'] != '*'}|{g['symbol']}|{ch}|{who}", f"{who} · {ch}")


def _timeline(r: dict[str, Any]) -> str:
    lo, hi = r["range"]["from_ns"], r["range"]["to_ns"]
    if hi <= lo:
        return _empty("The range is empty.")
    gaps = [g for g in r["gaps"] if g["effective_end_ns"] >= lo and g["effective_start_ns"] < hi]
    runs = [x for x in r.get("runs", []) if x["end_ns"] >= lo and x["start_ns"] < hi]
    if not gaps and not runs:
        return _empty("No recorder run and no gap in this range: " + _no_keys_reason(r))
    lanes: dict[str, str] = {}
    for g in sorted(gaps, key=lambda g: _lane_of(g)[0]):
        k, label = _lane_of(g)
        lanes.setdefault(k, label)
    lane_keys = list(lanes)[:_MAX_LANES]
    roots = sorted({x["root"] for x in runs})
    left, width, lh, top = 170, 1040, 16, 22
    scale = width / (hi - lo)
    n = len(roots) + len(lane_keys)
    parts = [f'<svg id="timeline-svg" width="{left + width + 8}" height="{top + lh * n + 6}"'
             ' role="img" aria-label="recorder runs and gap timeline">']
    _axis(parts, lo, hi, left, width, 12)
    for j, root in enumerate(roots):
        y = top + j * lh
        name = root.rstrip("/").rsplit("/", 1)[-1]
        parts.append(f'<text x="0" y="{y + 12}">recorded · {_e(name[:18])}</text>')
        for x in (x for x in runs if x["root"] == root):
            s, e = max(x["start_ns"], lo), min(x["end_ns"], hi)
            x0, w = left + (s - lo) * scale, max(2.0, (e - s) * scale)
            end = {"stop": "clean stop", "restart": "restarted", "open": "still recording"}[
                x["ended_by"]]
            parts.append(f'<rect class="run" x="{x0:.1f}" y="{y + 3}" width="{w:.1f}" '
                         f'height="{lh - 7}" fill="#bbf7d0" stroke="#16a34a" data-tip="'
                         f'{_e(name)}: recording {_e(_t(x["start_ns"]))} - {_e(_t(x["end_ns"]))}'
                         f', ended by {_e(end)}"/>')
            if x["ended_by"] == "stop" and x["end_ns"] <= hi:
                parts.append(f'<text class="bar" x="{x0 + w - 2:.1f}" y="{y + 11}" '
                             f'text-anchor="end">clean stop</text>')
    base = top + len(roots) * lh
    for j, k in enumerate(lane_keys):
        y = base + j * lh
        parts.append(f'<text x="0" y="{y + 12}">{_e(lanes[k][:30])}</text><line x1="{left}" '
                     f'x2="{left + width}" y1="{y + 8}" y2="{y + 8}" stroke="#e5e7eb"/>')
    lane_index = {k: i for i, k in enumerate(lane_keys)}
    for g in gaps:
        lane = lane_index.get(_lane_of(g)[0])
        if lane is None:
            continue
        y = base + lane * lh
        s = max(g["effective_start_ns"], lo)
        e = min(max(g["effective_end_ns"], s), hi)
        x = left + (s - lo) * scale
        w = max(2.0, (e - s) * scale)
        colour = _CAUSE_COLOURS.get(g["cause"], _OTHER_CAUSE)
        ch = "REST requests" if g.get("stream") == "rest" else _channels_of(g)
        syms = g.get("symbols") or [g["symbol"]]
        who = ", ".join(syms[:6]) + (f" and {len(syms) - 6} more" if len(syms) > 6 else "")
        tip = (f"{g['cause']} on {ch} {who}: "
               f"{_t(g['effective_start_ns'])} +{g['duration_s']} s, counts as "
               f"{g['counts_as']}, healed by {g['healed_by']}"
               + (f", missing {g['missing']}" if g["missing"] else ""))
        parts.append(f'<rect class="gap" data-channel="{_e(g["channel"])}" data-cause="'
                     f'{_e(g["cause"])}" x="{x:.1f}" y="{y + 2}" width="{w:.1f}" '
                     f'height="{lh - 5}" fill="{colour}" data-tip="{_e(tip)}"/>')
        label = f"{ch} {g['cause']} {g['duration_s']} s" + (
            ", backfilled" if g["counts_as"] == "backfilled" else "")
        need = 5.6 * len(label) + 6
        if x + w + need <= left + width:  # right of the bar
            tx, anchor, fill = x + w + 3, "start", ""
        elif w >= need:  # inside it
            tx, anchor, fill = x + 3, "start", ' style="fill:#fff"'
        elif x - need >= left:  # left of it
            tx, anchor, fill = x - 3, "end", ""
        else:  # at the right edge of the plot
            tx, anchor, fill = left + width, "end", ""
        parts.append(f'<text class="bar" x="{tx:.1f}" y="{y + 11}" text-anchor="{anchor}"'
                     f'{fill}>{_e(label)}</text>')
    parts.append("</svg>")
    used = sorted({g["cause"] for g in gaps})
    legend = '<div class="legend">UTC; ' + (
        "".join(f'<i style="background:{_CAUSE_COLOURS.get(c, _OTHER_CAUSE)}"></i>{_e(c)}'
                for c in used) if used else "no gap in this range")
    legend += ('<i style="background:#bbf7d0;border:1px solid #16a34a"></i>recorder running'
               '</div>')
    more = len(lanes) - len(lane_keys)
    note = f"<p>{more} more lanes not drawn (all gaps are in the JSON).</p>" if more > 0 else ""
    return legend + f'<div class="scroll">{"".join(parts)}</div>' + note


def _worst(r: dict[str, Any]) -> str:
    if not r["channels"]:
        return _empty(_no_keys_reason(r))
    th = r["thresholds"]
    rows = []
    for c in r["channels"][:25]:
        m = c["missing_by_reason"]
        cls = ("missing" if c["verified_coverage_pct"] < th["usable_pct"] else "degraded"
               if c["verified_coverage_pct"] < th["available_pct"] else "available")
        state = c["state"] if c.get("recorded", True) else "never recorded"
        rows.append(
            f'<tr><td class="l">{_e(c["symbol"])}</td><td class="l">{_e(c["channel"])}</td>'
            f'<td class="{cls}">{c["verified_coverage_pct"]:.3f}</td>'
            f'<td>{_dur(c["quiet_ns"])}</td><td>{_dur(c["missing_ns"])}</td>'
            f'<td>{_dur(m["not_subscribed"])}</td><td>{_dur(m["not_alive"])}</td>'
            f'<td>{_dur(m["in_gap"])}</td><td>{_dur(c["startup_ns"])}</td>'
            f'<td>{c["gaps"]}</td><td>{c["resnapshots"]}</td>'
            f'<td class="l">{_e(state)}</td></tr>')
    return ('<div class="scroll"><table id="worst-table"><tr><th class="l">symbol</th>'
            '<th class="l">channel</th><th>verified %</th><th>quiet</th><th>missing</th>'
            '<th>not subscribed</th><th>not alive</th><th>in gap</th><th>start-up</th>'
            '<th>gaps</th><th>resnapshots</th><th class="l">state</th></tr>' + "".join(rows)
            + "</table></div>")


def _verification(r: dict[str, Any]) -> str:
    v = r["verification"]
    if v["messages_checked"]:
        head = (f"<p>Checksums: <b>{v['verified']:,}</b> of {v['messages_checked']:,} messages "
                f"verified ({v['rate_pct']:.4f} %), {v['failed']} failed, source "
                f"<b>{_e(v['source'])}</b>"
                + (f"; {v.get('recorded_mismatches', 0)} live mismatches recorded as gaps"
                   if "recorded_mismatches" in v else "") + ".</p>")
    else:
        head = _empty("Checksums: no book or level3 message in this range, nothing to verify.")
    if r["trades"]:
        trows = "".join(
            f'<tr><td class="l">{_e(t["symbol"])}</td><td>{t["trades"]:,}</td>'
            f'<td>{t["ws_trades"]:,}</td><td>{t["rest_trades"]:,}</td><td>{t["holes"]}</td>'
            f'<td>{t["missing_ids"]}</td><td>{t["duplicates"]}</td></tr>'
            for t in r["trades"][:40])
        trades = ('<div class="scroll"><table id="trades-table"><tr><th class="l">symbol</th>'
                  '<th>trades</th><th>WS</th><th>REST backfill</th><th>holes</th>'
                  '<th>ids missing</th><th>duplicates</th></tr>' + trows + '</table></div>')
    else:
        trades = _empty("Trade ids: no trade was recorded in this range, so there is no "
                        "trade_id continuity to check.")
    if r["ohlc"]:
        orows = "".join(
            f'<tr><td class="l">{_e(o["symbol"])}</td><td>{o["bars"]}</td><td>'
            f'{o["bars_checked"]}</td><td>{o["bars_matching"]}</td><td>{o["count_mismatches"]}'
            f'</td><td>{o["volume_mismatches"]}</td></tr>' for o in r["ohlc"][:40])
        ohlc = ('<div class="scroll"><table id="ohlc-table"><tr><th class="l">symbol</th>'
                '<th>bars</th><th>checkable</th><th>matching</th><th>count mismatch</th>'
                '<th>volume mismatch</th></tr>' + orows + "</table></div>")
    else:
        ohlc = _empty("No 1-minute OHLC bar was recorded in this range (the ohlc channel "
                      "records the interval the configuration asks for; bars are compared "
                      "with trades only at 1 minute).")
    rejects = r.get("rejects", [])
    if rejects:
        rrows = "".join(
            f'<tr><td class="l">{_e(x["stream"])}</td><td class="l">{_e(x["stage"])}</td>'
            f'<td class="l">{_e(x["reason"])}</td><td>{x["rejects"]:,}</td>'
            f'<td>{x["symbols"]}</td><td class="l">{_e(_t(x["first_ns"]))}</td>'
            f'<td class="l">{_e(str(x["example"])[:80])}</td></tr>' for x in rejects[:40])
        rej = ('<div class="scroll"><table id="rejects-table"><tr><th class="l">stream</th>'
               '<th class="l">stage</th><th class="l">reason</th><th>rejects</th>'
               '<th>symbols</th><th class="l">first</th><th class="l">example</th></tr>'
               + rrows + "</table></div>")
    else:
        rej = _empty("No frame was rejected in this range: everything received was decoded "
                     "and applied.")
    return (head + trades + '<h2 style="margin-top:10px">OHLC 1-min bars vs trades</h2>' + ohlc
            + '<h2 style="margin-top:10px">Rejected frames (kept raw in <code>rejects</code>)'
            '</h2>' + rej)


def _days(r: dict[str, Any]) -> str:
    th = r["thresholds"]
    rule = (f'<p>available: every channel &ge; {th["available_pct"]} %; missing: every channel '
            f'&lt; {th["usable_pct"]} %; otherwise degraded (quiet time counts as covered; '
            'start-up and shut-down are not measured).</p>')
    if not r["days"]:
        return rule + _empty("No symbol-day: " + _no_keys_reason(r))
    rows = "".join(
        f'<tr><td class="l">{_e(d["date"])}</td><td class="l">{_e(d["symbol"])}</td>'
        f'<td class="l {d["verdict"]}">{d["verdict"]}</td><td>{d["verified_coverage_pct"]:.3f}'
        f'</td><td>{d["quiet_pct"]:.2f}</td><td>{d["missing_pct"]:.3f}</td>'
        f'<td class="l">{_e(", ".join(f"{k} {v:.2f}" for k, v in d["channels"].items()))}</td></tr>'
        for d in sorted(r["days"], key=lambda d: (d["verified_coverage_pct"], d["date"]))[:200])
    return (rule + '<div class="scroll"><table id="days-table"><tr><th class="l">date</th>'
            '<th class="l">symbol</th><th class="l">verdict</th><th>verified %</th>'
            '<th>quiet %</th><th>missing %</th><th class="l">channels %</th></tr>' + rows
            + "</table></div>")


def _or_dash(x: Any) -> Any:
    return "-" if x is None else x


def _cross_source(r: dict[str, Any]) -> str:
    """The WebSocket vs FIX book comparison (:mod:`recorder.audit.cross`)."""
    x = r.get("cross_source")
    if not x or not x["channels"]:
        return _empty("no cross-source comparison in this report")
    if not x["symbols"]:
        return _empty("no symbol was recorded over both WebSocket and FIX in this range")
    per = "".join(
        f'<tr><td class="l">{_e(ch)}</td><td>{c["symbols"]}</td><td>{c["comparisons"]:,}</td>'
        f'<td>{c["skipped"]:,}</td><td class="{"missing" if c["disagreements"] else "available"}"'
        f'>{c["disagreements"]:,}</td></tr>' for ch, c in x["channels"].items())
    head = (f"<p>{_e(x['text'])}. The books are compared at each FIX book message's exchange "
            "time (<code>Archive.cross_source</code>).</p>"
            '<div class="scroll"><table id="cross-table"><tr><th class="l">channel</th>'
            "<th>symbols</th><th>comparisons</th><th>FIX times without a WebSocket book</th>"
            "<th>disagreements</th></tr>" + per + "</table></div>")
    if not x["rows"]:
        return head
    rows = "".join(
        f'<tr><td class="l">{_e(d["symbol"])}</td><td class="l">{_e(d["channel"])}</td>'
        f'<td class="l">{_t(d["time_ns"])}</td><td class="l">{_e(d["side"])}</td>'
        f'<td>{d["level"]}</td><td>{_e(_or_dash(d["ws_price"]))}</td><td>{_e(_or_dash(d["ws_qty"]))}</td>'
        f'<td>{_e(_or_dash(d["fix_price"]))}</td><td>{_e(_or_dash(d["fix_qty"]))}</td>'
        f'<td class="l">{_e(d["kind"])}</td></tr>' for d in x["rows"])
    return (head + f'<h2 style="margin-top:10px">First {len(x["rows"])} disagreements</h2>'
            '<div class="scroll"><table id="cross-rows"><tr><th class="l">symbol</th>'
            '<th class="l">channel</th><th class="l">time</th><th class="l">side</th>'
            "<th>level</th><th>WS price</th><th>WS qty</th><th>FIX price</th><th>FIX qty</th>"
            '<th class="l">kind</th></tr>' + rows + "</table></div>")


def render_html(report: dict[str, Any]) -> str:
    """The whole page for ``report`` (a :func:`recorder.audit.report.build_report` result)."""
    r = report
    title = f"Archive audit {r['range']['from']} - {r['range']['to']}"
    body = [
        f'<header><h1>{_e(title)}</h1><p>{_e(r["archive"])} &middot; generated '
        f'{_e(r["generated_at"])} &middot; {r["summary"]["symbols"]} symbols, '
        f'{r["summary"]["keys"]} channel/symbol keys &middot; expect '
        f'{_e(r.get("expect", {}).get("mode", "recorded"))}</p></header><main>',
        f'<section id="summary"><h2>Summary</h2><div class="kpis">{_kpis(r)}</div></section>',
        f'<section id="heatmap"><h2>Coverage by symbol over time (worst symbols first)</h2>'
        f'{_heatmap(r)}</section>',
        f'<section id="timeline"><h2>Recorder runs and gaps</h2>{_timeline(r)}</section>',
        f'<section id="worst"><h2>Worst channel/symbol pairs</h2>{_worst(r)}</section>',
        f'<section id="verification"><h2>Verification and continuity</h2>{_verification(r)}'
        '</section>',
        f'<section id="cross-source"><h2>WebSocket vs FIX books</h2>{_cross_source(r)}'
        '</section>',
        f'<section id="days"><h2>Per-day verdicts</h2>{_days(r)}</section>',
        '</main><div id="tip"></div>',
    ]
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{_e(title)}</title><style>{_CSS}</style></head><body>'
            + "".join(body) + f"<script>{_JS}</script></body></html>")
