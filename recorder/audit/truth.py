"""Reconcile a ``recorder sim`` truth file with an audit report: did every injected fault
become a gap with the right cause and bounds?

Pure: takes the truth records (:func:`recorder.sim.truth.read_truth`) and the report's
``gaps`` list. Rules per fault kind (``tol_ns`` defaults to 1 s):

* ``checksum`` -> a ``checksum_mismatch`` gap of the same channel and symbol whose effective
  start is within ``tol`` of the fault;
* ``drop`` on ``trade`` -> a ``trade_id_jump`` gap of the symbol whose effective extent contains
  the fault time (``+- tol``): the row starts at the last trade before the loss and ends at
  detection, and a dropped frame can only be noticed at the next trade;
* ``close`` -> ``disconnect`` gaps starting within ``tol`` on the endpoint's channels
  (``spot``: book/trade/ohlc/ticker, ``l3``: level3), on the fault's channel when it names one
  (the audit reports one connection's drop as one gap, whatever the keys it carried);
* ``stall`` -> a ``silence`` gap starting within ``tol`` (the silence began when the stall did);
* ``rest_limit`` -> a ``rate_limit`` gap within ``tol``;
* ``token_reject`` -> a ``subscribe_failed`` gap on ``level3`` within ``tol``.

Durations: the truth's own duration of a ``close`` is from the fault to the simulator's next
accepted connection of the same endpoint (the recorder's reconnect); ``checksum`` and ``drop``
hit one frame (0 s: the loss lasts until the recorder notices and repairs it). Each row reports
``truth_duration_s`` (None when the truth does not say) and ``duration_ok``: every matching
gap's ``duration_s`` is within ``tol`` of it.

Other kinds (``duplicate``, ``reorder``, ``number``, ``malformed``, ``slow_rest``, ``refuse``,
``list``, ``delist``, ``status``) do not lose coverage by themselves and get status
``not_a_gap``. A fault the record mode injects on a frame that was never delivered to a
recorder is still expected: nothing is excused silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = ["GAP_FAULTS", "reconcile", "truth_duration_ns"]

_ENDPOINT_CHANNELS: Final = {"spot": {"book", "trade", "ohlc", "ticker"}, "l3": {"level3"},
                             "futures": {"futures_book", "futures_trade", "futures_ticker"}}
GAP_FAULTS: Final = frozenset({"checksum", "drop", "close", "stall", "rest_limit", "token_reject"})


def _near(g: Mapping[str, Any], t: int, tol: int) -> bool:
    return abs(g["effective_start_ns"] - t) <= tol


def _candidates(fault: Mapping[str, Any], gaps: list[Mapping[str, Any]],
                tol: int) -> list[Mapping[str, Any]]:
    kind, t = fault["fault"], int(fault["t_ns"])
    ch, sym = fault.get("channel"), fault.get("symbol")
    if kind == "checksum":
        return [g for g in gaps if g["cause"] == "checksum_mismatch" and g["channel"] == ch
                and g["symbol"] == sym and _near(g, t, tol)]
    if kind == "drop" and ch == "trade":
        return [g for g in gaps if g["cause"] == "trade_id_jump" and g["symbol"] == sym
                and g["effective_start_ns"] - tol <= t <= g["effective_end_ns"] + tol]
    if kind == "close":
        chans = _ENDPOINT_CHANNELS.get(fault.get("endpoint") or "spot", set())
        if ch:
            chans = chans & {ch}
        return [g for g in gaps if g["cause"] == "disconnect" and g["channel"] in chans | {"*"}
                and _near(g, t, tol)]
    if kind == "stall":
        return [g for g in gaps if g["cause"] == "silence" and _near(g, t, tol)]
    if kind == "rest_limit":
        return [g for g in gaps if g["cause"] == "rate_limit" and _near(g, t, tol)]
    if kind == "token_reject":
        return [g for g in gaps if g["cause"] == "subscribe_failed"
                and g["channel"] in ("level3", "*") and _near(g, t, tol)]
    return []


def truth_duration_ns(fault: Mapping[str, Any], records: list[Mapping[str, Any]]) -> int | None:
    """How long the fault itself lasted by the truth file (see the module docstring)."""
    kind, t = fault["fault"], int(fault["t_ns"])
    if kind in ("checksum", "drop"):
        return 0
    if kind == "close":
        later = [int(r["t_ns"]) for r in records if r.get("kind") == "connect"
                 and r.get("endpoint") == fault.get("endpoint") and int(r["t_ns"]) > t]
        return min(later) - t if later else None
    return None


def reconcile(truth: Iterable[Mapping[str, Any]], gaps: Iterable[Mapping[str, Any]], *,
              tol_ns: int = 1_000_000_000) -> list[dict[str, Any]]:
    """One row per injected fault: ``fault``, ``t_ns``, ``channel``, ``symbol``, ``status``
    (``matched`` / ``unmatched`` / ``not_a_gap``), ``gaps`` (the matching gaps' ``cause``/
    ``channel``/``symbol``/effective bounds/``duration_s``), ``truth_duration_s`` and
    ``duration_ok`` (None when there is nothing to compare)."""
    gap_list = list(gaps)
    records = list(truth)
    out = []
    for rec in records:
        if rec.get("kind") != "fault":
            continue
        kind = rec["fault"]
        row: dict[str, Any] = {"fault": kind, "t_ns": int(rec["t_ns"]),
                               "endpoint": rec.get("endpoint"), "channel": rec.get("channel"),
                               "symbol": rec.get("symbol")}
        if kind not in GAP_FAULTS or (kind == "drop" and rec.get("channel") != "trade"):
            row["status"] = "not_a_gap"
            row["gaps"] = []
        else:
            found = _candidates(rec, gap_list, tol_ns)
            row["status"] = "matched" if found else "unmatched"
            row["gaps"] = [{k: g.get(k) for k in ("cause", "channel", "symbol",
                                                 "effective_start_ns", "effective_end_ns",
                                                 "duration_s")}
                           for g in found[:10]]
        dur = truth_duration_ns(rec, records) if row["status"] == "matched" else None
        row["truth_duration_s"] = None if dur is None else round(dur / 1e9, 3)
        row["duration_ok"] = None if dur is None else all(
            abs((g["effective_end_ns"] - g["effective_start_ns"]) - dur) <= tol_ns
            for g in found)
        out.append(row)
    return out
