"""The audit's cross-source section: WebSocket vs FIX books of the symbols recorded over both
(issue #17 §4; the rule is in :mod:`recorder.query.cross`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from recorder.query.cross import compare_sources

if TYPE_CHECKING:
    from recorder.query.api import Archive

__all__ = ["cross_source_section"]

#: disagreement rows kept in the report (the query gives them all)
ROWS_KEPT = 50


def cross_source_section(archive: Archive, lo: int | None = None, hi: int | None = None,
                         symbols: Iterable[str] | None = None,
                         tolerance_ns: int = 1_000_000_000) -> dict[str, Any]:
    """Per channel (``book``, ``level3``) and in all: symbols compared, comparisons (FIX
    message times), skipped times (no WebSocket book), disagreements (times) and the first
    :data:`ROWS_KEPT` disagreement rows; ``text`` is the one-line summary.
    ``lo``/``hi`` bound the compared times (exchange clock)."""
    wanted = None if symbols is None else set(symbols)
    out: dict[str, Any] = {"channels": {}, "symbols": 0, "comparisons": 0, "skipped": 0,
                           "disagreements": 0, "rows": []}
    names: set[str] = set()
    for channel in ("book", "level3"):
        res = compare_sources(archive, channel=channel, start=lo, end=hi,
                              tolerance_ns=tolerance_ns)
        summary = [s for s in res.summary if wanted is None or s["symbol"] in wanted]
        rows = [r for r in res.rows if wanted is None or r["symbol"] in wanted]
        compared = [s for s in summary if s["comparisons"]]
        ch = {"symbols": len(compared),
              "comparisons": sum(s["comparisons"] for s in summary),
              "skipped": sum(s["skipped"] for s in summary),
              "disagreements": sum(s["disagreements"] for s in summary),
              "per_symbol": summary}
        out["channels"][channel] = ch
        names.update(s["symbol"] for s in compared)
        for k in ("comparisons", "skipped", "disagreements"):
            out[k] += ch[k]
        out["rows"].extend(rows[:ROWS_KEPT - len(out["rows"])])
    out["symbols"] = len(names)
    out["text"] = (f"cross-source (WebSocket vs FIX books): {out['symbols']} symbols, "
                   f"{out['comparisons']} comparisons, {out['disagreements']} disagreements"
                   + (f", {out['skipped']} FIX times without a WebSocket book"
                      if out["skipped"] else ""))
    return out
