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
  (``spot``: book/trade/ohlc/ticker, ``l3``: level3);
* ``stall`` -> a ``silence`` gap starting within ``tol`` (the silence began when the stall did);
* ``rest_limit`` -> a ``rate_limit`` gap within ``tol``;
* ``token_reject`` -> a ``subscribe_failed`` gap on ``level3`` within ``tol``.

Other kinds (``duplicate``, ``reorder``, ``number``, ``malformed``, ``slow_rest``, ``refuse``,
``list``, ``delist``, ``status``) do not lose coverage by themselves and get status
``not_a_gap``. A fault the record mode injects on a frame that was never delivered to a
recorder is still expected: nothing is excused silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = ["GAP_FAULTS", "reconcile"]

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


def reconcile(truth: Iterable[Mapping[str, Any]], gaps: Iterable[Mapping[str, Any]], *,
              tol_ns: int = 1_000_000_000) -> list[dict[str, Any]]:
    """One row per injected fault: ``fault``, ``t_ns``, ``channel``, ``symbol``, ``status``
    (``matched`` / ``unmatched`` / ``not_a_gap``) and ``gaps`` (the matching gap rows'
    ``cause``/``channel``/``symbol``/effective bounds)."""
    gap_list = list(gaps)
    out = []
    for rec in truth:
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
            row["gaps"] = [{k: g[k] for k in ("cause", "channel", "symbol",
                                             "effective_start_ns", "effective_end_ns")}
                           for g in found[:10]]
        out.append(row)
    return out
