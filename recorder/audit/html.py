"""One self-contained HTML page for an audit report: inline CSS and SVG, a few lines of inline
JS (cell details on hover), no external resource of any kind, so it works offline and can be
mailed or archived as a single file.

Sections (each has a stable ``id`` the rendering test checks): ``summary``, ``heatmap``
(symbols x hours, colour = verified coverage, quiet hours marked), ``timeline`` (gaps over time,
one lane per symbol), ``worst`` (worst channel/symbol keys), ``verification`` (checksum and
continuity figures) and ``days`` (per-day verdicts).
"""

from __future__ import annotations

import html
import time
from collections import defaultdict
from typing import Any, Final

__all__ = ["render_html"]

_CAUSE_COLOURS: Final = {
    "process_restart": "#6b21a8", "disconnect": "#c2410c", "silence": "#b45309",
    "checksum_mismatch": "#be123c", "crossed_book": "#9f1239", "apply_error": "#881337",
    "trade_id_jump": "#1d4ed8", "seq_jump": "#1e40af", "quarantine": "#374151",
    "rate_limit": "#0f766e", "subscribe_failed": "#4d7c0f",
}
_MAX_LANES: Final = 60
_MAX_ROWS: Final = 80

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
#tip{position:fixed;pointer-events:none;background:#111827;color:#fff;padding:4px 8px;
border-radius:4px;font-size:12px;display:none;z-index:9}svg text{font:11px system-ui,sans-serif}
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
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def _colour(pct: float, quiet_share: float) -> str:
    """Red (0 %) -> amber -> green (100 %); mostly-quiet covered hours are blue-green."""
    if pct >= 99.0:
        return "#0f766e" if quiet_share > 0.5 else "#16a34a"
    if pct >= 90.0:
        return "#84cc16"
    if pct >= 50.0:
        return "#f59e0b"
    if pct > 0.0:
        return "#ef4444"
    return "#7f1d1d"


def _kpis(r: dict[str, Any]) -> str:
    s = r["summary"]
    v = s["verdicts"]
    items = [
        (f"{s['verified_coverage_pct']:.3f} %", "verified coverage"),
        (f"{s['coverage_pct']:.3f} %", "covered (active + quiet)"),
        (_dur(s["quiet_ns"]), "quiet (listening, no events)"),
        (_dur(s["missing_ns"]), "missing"),
        (f"{s['checksum_verification_pct']:.3f} %",
         f"checksums verified ({r['verification']['source']})"),
        (str(s["gaps"]), "gaps"),
        (f"{v['available']} / {v['degraded']} / {v['missing']}",
         "symbol-days available / degraded / missing"),
        (str(s["trade_ids_missing"]), "trade ids still missing"),
    ]
    return "".join(f'<div class="kpi"><b>{_e(a)}</b><span>{_e(b)}</span></div>' for a, b in items)


def _heatmap(r: dict[str, Any]) -> str:
    cells: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    hours: set[int] = set()
    for h in r["hours"]:
        c = cells[(h["symbol"], h["hour_ns"])]
        c[0] += h["window_ns"]
        c[1] += h["covered_ns"]
        c[2] += h["quiet_ns"]
        hours.add(h["hour_ns"])
    worst_first = []
    seen: set[str] = set()
    for c in r["channels"]:
        if c["symbol"] not in seen:
            seen.add(c["symbol"])
            worst_first.append(c["symbol"])
    symbols = worst_first[:_MAX_ROWS]
    hs = sorted(hours)
    if not symbols or not hs:
        return "<p>No subscribed time in range.</p>"
    cw = max(4, min(18, 1100 // len(hs)))
    ch = 14
    left = 110
    top = 18
    width = left + cw * len(hs) + 4
    height = top + ch * len(symbols) + 4
    parts = [f'<svg id="heatmap-svg" width="{width}" height="{height}" role="img" '
             f'aria-label="coverage heatmap">']
    step = max(1, len(hs) // 12)
    for i, h in enumerate(hs):
        if i % step == 0:
            parts.append(f'<text x="{left + i * cw}" y="12">{_e(_t(h)[5:13])}h</text>')
    for j, sym in enumerate(symbols):
        y = top + j * ch
        parts.append(f'<text x="0" y="{y + 11}">{_e(sym[:16])}</text>')
        for i, h in enumerate(hs):
            w, cov, quiet = cells.get((sym, h), (0, 0, 0))
            if w == 0:
                continue
            pct = 100.0 * cov / w
            qs = quiet / cov if cov else 0.0
            parts.append(
                f'<rect class="cell" x="{left + i * cw}" y="{y}" width="{cw - 1}" '
                f'height="{ch - 1}" fill="{_colour(pct, qs)}" data-tip="{_e(sym)} '
                f'{_e(_t(h)[:13])}h: covered {pct:.2f}% (quiet {100 * qs:.0f}% of covered)"/>')
    parts.append("</svg>")
    more = len(seen) - len(symbols)
    legend = ('<div class="legend">coverage: <i style="background:#16a34a"></i>&ge;99% '
              '<i style="background:#0f766e"></i>&ge;99%, mostly quiet '
              '<i style="background:#84cc16"></i>&ge;90% <i style="background:#f59e0b"></i>'
              '&ge;50% <i style="background:#ef4444"></i>&lt;50% '
              '<i style="background:#7f1d1d"></i>none (all channels of the symbol summed)</div>')
    note = f"<p>{more} more symbols not drawn (all are in the JSON).</p>" if more > 0 else ""
    return legend + f'<div class="scroll">{"".join(parts)}</div>' + note


def _timeline(r: dict[str, Any]) -> str:
    lo, hi = r["range"]["from_ns"], r["range"]["to_ns"]
    gaps = [g for g in r["gaps"] if g["effective_end_ns"] >= lo and g["effective_start_ns"] < hi]
    if not gaps or hi <= lo:
        return "<p>No gaps in range.</p>"
    lanes: list[str] = []
    for g in sorted(gaps, key=lambda g: (g["symbol"] != "*", g["symbol"])):
        if g["symbol"] not in lanes:
            lanes.append(g["symbol"])
    lanes = lanes[:_MAX_LANES]
    left, width, lh, top = 110, 1100, 14, 18
    scale = width / (hi - lo)
    parts = [f'<svg id="timeline-svg" width="{left + width + 4}" height="{top + lh * len(lanes) + 4}"'
             ' role="img" aria-label="gap timeline">']
    fmt = slice(11, 19) if hi - lo < 3 * 3_600_000_000_000 else slice(5, 16)
    for k in range(7):
        t = lo + (hi - lo) * k // 6
        parts.append(f'<text x="{left + int((t - lo) * scale) - (60 if k == 6 else 0)}" y="12">'
                     f'{_e(_t(t)[fmt])}</text>')
    for j, lane in enumerate(lanes):
        y = top + j * lh
        parts.append(f'<text x="0" y="{y + 11}">{_e("all symbols" if lane == "*" else lane[:16])}'
                     f'</text><line x1="{left}" x2="{left + width}" y1="{y + 7}" y2="{y + 7}" '
                     'stroke="#e5e7eb"/>')
    lane_of = {s: i for i, s in enumerate(lanes)}
    for g in gaps:
        j = lane_of.get(g["symbol"])
        if j is None:
            continue
        s = max(g["effective_start_ns"], lo)
        e = min(max(g["effective_end_ns"], s), hi)
        x = left + (s - lo) * scale
        w = max(2.0, (e - s) * scale)
        colour = _CAUSE_COLOURS.get(g["cause"], "#6b7280")
        tip = (f"{g['cause']} {g['channel']} {g['symbol']}: {_t(g['effective_start_ns'])} "
               f"+{g['duration_s']} s, healed by {g['healed_by']}"
               + (f", missing {g['missing']}" if g["missing"] else ""))
        parts.append(f'<rect class="gap" x="{x:.1f}" y="{top + j * lh + 1}" width="{w:.1f}" '
                     f'height="{lh - 3}" fill="{colour}" data-tip="{_e(tip)}"/>')
    parts.append("</svg>")
    used = sorted({g["cause"] for g in gaps})
    legend = '<div class="legend">' + "".join(
        f'<i style="background:{_CAUSE_COLOURS.get(c, "#6b7280")}"></i>{_e(c)}' for c in used
    ) + "</div>"
    return legend + f'<div class="scroll">{"".join(parts)}</div>'


def _worst(r: dict[str, Any]) -> str:
    th = r["thresholds"]
    rows = []
    for c in r["channels"][:25]:
        m = c["missing_by_reason"]
        cls = ("missing" if c["verified_coverage_pct"] < th["usable_pct"] else "degraded"
               if c["verified_coverage_pct"] < th["available_pct"] else "available")
        rows.append(
            f'<tr><td class="l">{_e(c["symbol"])}</td><td class="l">{_e(c["channel"])}</td>'
            f'<td class="{cls}">{c["verified_coverage_pct"]:.3f}</td>'
            f'<td>{_dur(c["quiet_ns"])}</td><td>{_dur(c["missing_ns"])}</td>'
            f'<td>{_dur(m["not_subscribed"])}</td><td>{_dur(m["not_alive"])}</td>'
            f'<td>{_dur(m["in_gap"])}</td><td>{c["gaps"]}</td><td>{c["resnapshots"]}</td>'
            f'<td class="l">{_e(c["state"])}</td></tr>')
    return ('<div class="scroll"><table id="worst-table"><tr><th class="l">symbol</th>'
            '<th class="l">channel</th><th>verified %</th><th>quiet</th><th>missing</th>'
            '<th>not subscribed</th><th>not alive</th><th>in gap</th><th>gaps</th>'
            '<th>resnapshots</th><th class="l">state</th></tr>' + "".join(rows)
            + "</table></div>")


def _verification(r: dict[str, Any]) -> str:
    v = r["verification"]
    head = (f"<p>Checksums: <b>{v['verified']:,}</b> of {v['messages_checked']:,} messages "
            f"verified ({v['rate_pct']:.4f} %), {v['failed']} failed, source "
            f"<b>{_e(v['source'])}</b>"
            + (f"; {v.get('recorded_mismatches', 0)} live mismatches recorded as gaps"
               if "recorded_mismatches" in v else "") + ".</p>")
    trows = "".join(
        f'<tr><td class="l">{_e(t["symbol"])}</td><td>{t["trades"]:,}</td>'
        f'<td>{t["ws_trades"]:,}</td><td>{t["rest_trades"]:,}</td><td>{t["holes"]}</td>'
        f'<td>{t["missing_ids"]}</td><td>{t["duplicates"]}</td></tr>' for t in r["trades"][:40])
    orows = "".join(
        f'<tr><td class="l">{_e(o["symbol"])}</td><td>{o["bars"]}</td><td>{o["bars_checked"]}'
        f'</td><td>{o["bars_matching"]}</td><td>{o["count_mismatches"]}</td>'
        f'<td>{o["volume_mismatches"]}</td></tr>' for o in r["ohlc"][:40])
    return (head + '<div class="scroll"><table id="trades-table"><tr><th class="l">symbol</th>'
            '<th>trades</th><th>WS</th><th>REST backfill</th><th>holes</th>'
            '<th>ids missing</th><th>duplicates</th></tr>' + trows + '</table></div>'
            '<h2 style="margin-top:10px">OHLC 1-min bars vs trades</h2><div class="scroll">'
            '<table id="ohlc-table"><tr><th class="l">symbol</th><th>bars</th>'
            '<th>checkable</th><th>matching</th><th>count mismatch</th>'
            '<th>volume mismatch</th></tr>' + orows + "</table></div>")


def _days(r: dict[str, Any]) -> str:
    rows = "".join(
        f'<tr><td class="l">{_e(d["date"])}</td><td class="l">{_e(d["symbol"])}</td>'
        f'<td class="l {d["verdict"]}">{d["verdict"]}</td><td>{d["verified_coverage_pct"]:.3f}'
        f'</td><td>{d["quiet_pct"]:.2f}</td><td>{d["missing_pct"]:.3f}</td>'
        f'<td class="l">{_e(", ".join(f"{k} {v:.2f}" for k, v in d["channels"].items()))}</td></tr>'
        for d in sorted(r["days"], key=lambda d: (d["verified_coverage_pct"], d["date"]))[:200])
    th = r["thresholds"]
    return (f'<p>available: every channel &ge; {th["available_pct"]} %; missing: every channel '
            f'&lt; {th["usable_pct"]} %; otherwise degraded (quiet time counts as covered).</p>'
            '<div class="scroll"><table id="days-table"><tr><th class="l">date</th>'
            '<th class="l">symbol</th><th class="l">verdict</th><th>verified %</th>'
            '<th>quiet %</th><th>missing %</th><th class="l">channels %</th></tr>' + rows
            + "</table></div>")


def render_html(report: dict[str, Any]) -> str:
    """The whole page for ``report`` (a :func:`recorder.audit.report.build_report` result)."""
    r = report
    title = f"Archive audit {r['range']['from']} - {r['range']['to']}"
    body = [
        f'<header><h1>{_e(title)}</h1><p>{_e(r["archive"])} &middot; generated '
        f'{_e(r["generated_at"])} &middot; {r["summary"]["symbols"]} symbols, '
        f'{r["summary"]["keys"]} channel/symbol keys</p></header><main>',
        f'<section id="summary"><h2>Summary</h2><div class="kpis">{_kpis(r)}</div></section>',
        f'<section id="heatmap"><h2>Coverage by symbol and hour (worst symbols first)</h2>'
        f'{_heatmap(r)}</section>',
        f'<section id="timeline"><h2>Gap timeline</h2>{_timeline(r)}</section>',
        f'<section id="worst"><h2>Worst channel/symbol pairs</h2>{_worst(r)}</section>',
        f'<section id="verification"><h2>Verification and continuity</h2>{_verification(r)}'
        '</section>',
        f'<section id="days"><h2>Per-day verdicts</h2>{_days(r)}</section>',
        '</main><div id="tip"></div>',
    ]
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{_e(title)}</title><style>{_CSS}</style></head><body>'
            + "".join(body) + f"<script>{_JS}</script></body></html>")
