"""The pure comparison of a soak's archive with the sim's truth (no I/O).

Inputs are plain values (:class:`ArchiveFacts`, the truth faults and trades); the output is a
:class:`SoakReport` whose :attr:`~SoakReport.misses` must be empty.

**Fault mapping** (truth fault -> archive evidence). A gap *covers* time ``t`` when
``start_ns - 1 s <= t <= (end_ns or start_ns) + 1 s``. *Detected* = the evidence exists;
*recorded* = the break is bounded in the archive: a matched gap has ``end_ns`` and
``healed_by`` other than ``open``, or (a row left open) a later epoch of its (channel, symbol)
shows coverage resumed — reported as a warning; for evidence that is not a gap, the same as
detected. Every injected fault of a *must* kind that is not detected, or detected and not
recorded, is a miss.

=============  =====================================================================  ========
kind           evidence                                                               must
=============  =====================================================================  ========
checksum       ``checksum_mismatch`` gap of the fault's (channel, symbol) covering t   yes
number         ``checksum_mismatch``/``apply_error``/``crossed_book`` gap, same, except  yes
               in a level3 ``delete`` (by id: no book state) or on the Futures feed (no
               checksum), which :func:`inert` reports as ``number (no effect)``
drop (trade)   the dropped live trade ids lie in a ``trade_id_jump`` gap of the symbol  yes
               (or were re-delivered by a snapshot); a dropped snapshot/ack: benign
drop (book)    a desync gap of the (channel, symbol) covering t, or any gap of it (or   yes
               ``*``) starting within [t - 1 s, t + 30 s] (a break that resnapshotted first);
               without one, :func:`undone` may show the change was undone unseen
malformed      a ``decode`` reject row within 1 s of t                                 yes
stall          a ``silence`` gap of the endpoint covering t (stall >= silence_s)       yes
close          a ``disconnect`` gap of the channel covering t (not ``process stop``)   yes
rest_limit     a ``rate_limit`` gap covering t                                          yes
token_reject   a ``subscribe_failed`` gap mentioning the token covering t              yes
list           an ``instruments`` row (symbol, online) within 5 s, and a book epoch    yes
delist         an ``instruments`` row (symbol, delisted) within 5 s; no book rows      yes
               of the symbol after t + 5 s
status         an ``instruments`` row (symbol, status) within 5 s                      yes
(frame kinds)  or a ``process_restart`` gap covering t +- 2 s (frame lost in a crash)   yes
kill9          a ``process_restart`` gap of the killed worker's root covering t        yes
disk_pressure  ``disconnect`` gaps whose detail starts ``disk pressure`` covering t    yes
duplicate      none; must produce no duplicate rows (checked globally)                  no
reorder        none or a ``trade_id_jump``; must lose nothing (checked globally)       no
refuse         none; the reconnect is merely delayed (checked globally)                 no
slow_rest      none; heals merely take longer (checked globally)                        no
=============  =====================================================================  ========

**Global checks** (each must hold):

* *events missing outside recorded gaps*: truth trades of a recorded symbol, within the
  symbol's capture window (first trade epoch to the end of capture or its delisting, minus
  ``edge_s`` at both ends), absent from the archive and not covered by any gap of
  (``trade``|``*``, symbol|``*``) of the same writer roots -> 0; plus book/level3 messages that
  fail ``recorder verify`` (checksum replay) outside mismatches recorded live -> 0;
* *duplicate events*: a (symbol, trade_id) present more than once among live rows
  (``source = 1``) — the archive's dedup rule (the ``trades_unique`` view: one row per
  (symbol, trade_id)) lets a REST page or a WS snapshot repeat ids already recorded live, so
  only live repeats are a defect — and book/level3 rows identical on their message key
  (counted by the I/O layer) -> 0;
* *unreadable files*: Parquet files that fail to open (or disagree with the manifest) -> 0;
* *books verified after each heal*: every healed gap of (book|level3, symbol) is followed by an
  epoch of that (channel, symbol) starting at or after the heal (1 s tolerance) with at least
  one verified checksum and no verify failure -> 100 %;
* *backfilled trades*: every trade id inside a ``trade_id_jump`` gap is present with
  ``source = 2`` (REST backfill) -> 100 %.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "S",
    "MUST_KINDS",
    "inert",
    "undone",
    "BENIGN_KINDS",
    "ArchiveFacts",
    "FaultOutcome",
    "SoakReport",
    "covers",
    "compare",
]

S: Final = 1_000_000_000
MUST_KINDS: Final = frozenset({"checksum", "number", "drop", "malformed", "stall", "close",
                               "rest_limit", "token_reject", "list", "delist", "status",
                               "kill9", "disk_pressure"})
BENIGN_KINDS: Final = frozenset({"duplicate", "reorder", "refuse", "slow_rest"})
_DESYNC: Final = frozenset({"checksum_mismatch", "apply_error", "crossed_book"})
_TRADE_ID_RE: Final = re.compile(r'"trade_id":(\d+)')


@dataclass(slots=True)
class ArchiveFacts:
    """What the comparison reads from the archive (rows as dicts; each ``gaps``/``trades`` row
    may carry ``"root"``, the writer root's name, used for kill9 matching)."""

    gaps: list[dict[str, Any]] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)  #: symbol, trade_id, source, recv_ns
    epochs: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)  #: recv_ns, stage, reason
    instruments: list[dict[str, Any]] = field(default_factory=list)  #: recv_ns, symbol, status
    book_last_recv: dict[str, int] = field(default_factory=dict)  #: symbol -> last book recv_ns
    verify: list[dict[str, Any]] = field(default_factory=list)  #: one report per root
    unreadable: list[tuple[str, str]] = field(default_factory=list)  #: (path, error)
    files_checked: int = 0
    duplicate_rows: dict[str, int] = field(default_factory=dict)  #: dataset -> extra rows
    messages: int = 0  #: frames captured (liveness)
    capture_end_ns: int = 0  #: last receive time of the run


@dataclass(slots=True)
class FaultOutcome:
    """One injected fault and what the archive shows of it."""

    fault: dict[str, Any]
    detected: bool
    recorded: bool
    must: bool
    note: str = ""

    @property
    def kind(self) -> str:
        return str(self.fault["fault"])


@dataclass(slots=True)
class SoakReport:
    """Figures of one soak; :attr:`misses` lists every failed check (empty = pass)."""

    messages: int = 0
    truth_events: int = 0
    truth_trades_expected: int = 0
    archive_trades: int = 0
    outcomes: list[FaultOutcome] = field(default_factory=list)
    missing_outside_gaps: list[tuple[str, int, int]] = field(default_factory=list)
    missing_inside_gaps: int = 0
    verify_failed: int = 0
    duplicate_trades: list[tuple[str, int]] = field(default_factory=list)
    duplicate_rows: dict[str, int] = field(default_factory=dict)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    files_checked: int = 0
    heals: int = 0
    heals_verified: int = 0
    unverified_heals: list[dict[str, Any]] = field(default_factory=list)
    backfill_expected: int = 0
    backfill_present: int = 0
    backfill_missing: list[tuple[str, int]] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    #: findings that lose nothing (e.g. a gap row left open although coverage resumed)
    warnings: list[str] = field(default_factory=list)

    def per_kind(self) -> dict[str, tuple[int, int, int, bool]]:
        """kind -> (injected, detected, recorded, must)."""
        out: dict[str, list[Any]] = {}
        for o in self.outcomes:
            row = out.setdefault(o.kind, [0, 0, 0, o.must])
            row[0] += 1
            row[1] += o.detected
            row[2] += o.recorded
        return {k: (v[0], v[1], v[2], v[3]) for k, v in sorted(out.items())}

    @property
    def ok(self) -> bool:
        return not self.misses


def covers(gap: dict[str, Any], t_ns: int, slack_ns: int = S) -> bool:
    """Gap ``gap`` spans time ``t_ns`` within ``slack_ns`` (an open gap spans its start)."""
    end = gap["end_ns"] if gap.get("end_ns") is not None else gap["start_ns"]
    return gap["start_ns"] - slack_ns <= t_ns <= end + slack_ns


def _healed(gap: dict[str, Any]) -> bool:
    """The gap row itself says coverage resumed (an end and a heal other than ``open``)."""
    return gap.get("end_ns") is not None and gap.get("healed_by") != "open"


def id_range(gap: dict[str, Any]) -> tuple[int, int]:
    """Inclusive trade-id bounds of a ``trade_id_jump`` gap (``missing`` = ``trade_id A..B``)."""
    lo, _, hi = str(gap["missing"]).removeprefix("trade_id ").partition("..")
    return int(lo), int(hi or lo)


class _Index:
    def __init__(self, facts: ArchiveFacts) -> None:
        self.by_cause: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for g in facts.gaps:
            self.by_cause[g["cause"]].append(g)
        self.ids: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
        for t in facts.trades:
            if t.get("trade_id") is not None:
                self.ids[t["symbol"]][t["trade_id"]].append(t["source"])
        self.epoch_starts: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for e in facts.epochs:
            self.epoch_starts[e["symbol"]].append((e["channel"], e["start_ns"]))
        self.facts = facts

    def bounded(self, gap: dict[str, Any]) -> bool:
        """Coverage resumed after ``gap``: the row is healed, or (a row left open) a later
        epoch of its (channel, symbol) — any channel for ``*`` — started after it."""
        if _healed(gap):
            return True
        syms = [gap["symbol"]] if gap["symbol"] != "*" else list(self.epoch_starts)
        return any(start > gap["start_ns"] and gap["channel"] in (ch, "*")
                   for s in syms for ch, start in self.epoch_starts.get(s, ()))


def inert(fault: dict[str, Any]) -> str:
    """Why a must-kind fault can leave no evidence in any client's archive ("" if it must).

    A ``number`` fault that hit a level3 ``delete`` changed nothing a book holds: Kraken
    deletes an order by id, and the price and quantity it repeats are not book state (the
    archive keeps the frame as sent). On the Futures book feed, which has no checksum, a
    changed number cannot be told from a real one by any client.
    """
    if fault["fault"] != "number":
        return ""
    if (fault.get("detail") or {}).get("event") == "delete":
        return "the number of a level3 delete (applied by order id: no book state changed)"
    if fault.get("endpoint") == "futures":
        return "a Futures book number (the feed has no checksum: undetectable by any client)"
    return ""


def undone(fault: dict[str, Any], facts: ArchiveFacts) -> str:
    """Why a dropped book/level3 update that left no gap lost nothing ("" if it did).

    A dropped change can be undone by the updates after it before any checksum sees the
    difference (a level removed and re-added; a level that falls out of the subscribed depth,
    for which Kraken sends no delete): the book then agrees with Kraken's again, and no client
    can detect the drop. That holds when the symbol's book was still recorded after the drop
    and ``recorder verify`` failed none of its checksums (a book left wrong would fail them).
    """
    ch, sym, t = fault.get("channel"), fault.get("symbol"), int(fault["t_ns"])
    if fault["fault"] != "drop" or ch not in ("book", "level3") or not sym:
        return ""
    failed = {(x.get("dataset"), x.get("symbol")) for v in facts.verify
              for x in v.get("failures", [])}
    last = facts.book_last_recv.get(sym) if ch == "book" else None
    verified = any(e["channel"] == ch and e["symbol"] == sym and (e.get("checksum_ok") or 0) > 0
                   for e in facts.epochs)
    if (ch, sym) in failed or not verified or (ch == "book" and (last is None or last <= t)):
        return ""
    return "the dropped change was undone before any checksum saw it (every checksum verified)"


def _match(fault: dict[str, Any], ix: _Index) -> tuple[bool, bool, str]:
    """(detected, recorded, note) of one must-kind fault (see the module table)."""
    kind, t = fault["fault"], int(fault["t_ns"])
    ch, sym = fault.get("channel"), fault.get("symbol")
    detail = fault.get("detail") or {}
    facts = ix.facts

    def gaps(causes: set[str] | frozenset[str], pred: Any = None) -> list[dict[str, Any]]:
        return [g for c in causes for g in ix.by_cause.get(c, ()) if pred is None or pred(g)]

    def verdict(hit: list[dict[str, Any]], what: str) -> tuple[bool, bool, str]:
        if not hit:
            return False, False, f"no {what}"
        if any(_healed(g) for g in hit):
            return True, True, ""
        if any(ix.bounded(g) for g in hit):
            return True, True, f"{what} left open although coverage resumed"
        return True, False, f"{what} never healed"

    if kind in ("checksum", "number", "malformed", "drop") and any(
            covers(g, t, 2 * S) for g in ix.by_cause.get("process_restart", ())):
        # the frame reached a worker that was SIGKILLed before journaling it: the loss is
        # inside the crash's process_restart gap (the symbol's worker is not known here)
        return True, True, "superseded by a worker crash (process_restart gap)"
    if kind in ("checksum", "number"):
        causes = {"checksum_mismatch"} if kind == "checksum" else _DESYNC
        return verdict(gaps(causes, lambda g: g["channel"] == ch and g["symbol"] == sym
                            and covers(g, t)), f"{'/'.join(sorted(causes))} gap of {ch} {sym}")
    if kind == "drop":
        frame = str(detail.get("frame", ""))
        if ch == "trade":
            found = _TRADE_ID_RE.findall(frame)
            if not found or '"type":"update"' not in frame:
                return True, True, "dropped frame held no live trade"
            tids = [int(x) for x in found]
            have = ix.ids.get(sym, {})
            if not have or max(tids) > max(have) or min(tids) < min(have):
                return True, True, "dropped trade outside the recorded range"
            jumps = gaps({"trade_id_jump"}, lambda g: g["symbol"] == sym
                         and all(id_range(g)[0] <= i <= id_range(g)[1] for i in tids))
            if jumps:
                return verdict(jumps, "trade_id_jump gap")
            if all(0 in have.get(i, ()) for i in tids):
                return True, True, "re-delivered by a snapshot"
            return False, False, f"trade ids {tids} of {sym} in no trade_id_jump gap"
        # the next update of the symbol fails its checksum (a desync gap), unless another
        # break of that book (disconnect, disk pressure, crash) resnapshotted it first
        return verdict([g for c, gs in ix.by_cause.items() for g in gs
                        if g["channel"] in (ch, "*") and g["symbol"] in (sym, "*")
                        and (c in _DESYNC or g["start_ns"] >= t - S)
                        and (covers(g, t) or t - S <= g["start_ns"] <= t + 30 * S)],
                       f"gap of {ch} {sym} within 30 s")
    if kind == "malformed":
        hit = [r for r in facts.rejects if r["stage"] == "decode" and abs(r["recv_ns"] - t) <= S]
        return (True, True, "") if hit else (False, False, "no decode reject within 1 s")
    if kind == "stall":
        return verdict(gaps({"silence"}, lambda g: covers(g, t)
                            and (fault.get("endpoint") is None or g["stream"] in
                                 (fault["endpoint"], "*"))), "silence gap")
    if kind == "close":
        return verdict(gaps({"disconnect"}, lambda g: g["channel"] in (ch, "*") and covers(g, t)
                            and g.get("detail") != "process stop"), f"disconnect gap of {ch}")
    if kind == "rest_limit":
        return verdict(gaps({"rate_limit"}, lambda g: covers(g, t)), "rate_limit gap")
    if kind == "token_reject":
        # its own subscribe_failed gap, or - when the refused subscribe was itself healing an
        # open gap of the same key (e.g. a resnapshot after a checksum mismatch) - that gap,
        # whose detail records the failure (one gap per key at a time)
        def token_failure(g: dict[str, Any]) -> bool:
            detail = (g.get("detail") or "").lower()
            return (covers(g, t) and g["symbol"] in (sym, "*") and "token" in detail
                    and (g["cause"] == "subscribe_failed" or "subscribe_failed" in detail))

        return verdict([g for g in facts.gaps if token_failure(g)],
                       "subscribe_failed (token) gap")
    if kind in ("list", "delist", "status"):
        want = {"list": "online", "delist": "delisted"}.get(kind) or detail.get("status")
        rows = [r for r in facts.instruments if r["symbol"] == sym and r["status"] == want
                and t - S <= r["recv_ns"] <= t + 5 * S]
        if not rows:
            return False, False, f"no instruments row {sym} {want}"
        if kind == "list":
            ok = any(e["symbol"] == sym and e["channel"] == "book" for e in facts.epochs)
            return True, ok, "" if ok else f"{sym} listed but never recorded (no book epoch)"
        if kind == "delist":
            last = facts.book_last_recv.get(sym)
            ok = last is None or last <= t + 5 * S
            return True, ok, "" if ok else f"book rows of {sym} after its delisting"
        return True, True, ""
    if kind == "kill9":
        root = detail.get("root")
        return verdict(gaps({"process_restart"}, lambda g: covers(g, t, 2 * S)
                            and (root is None or g.get("root") == root)),
                       f"process_restart gap of {root}")
    if kind == "disk_pressure":
        return verdict(gaps({"disconnect"}, lambda g: covers(g, t, 2 * S)
                            and (g.get("detail") or "").startswith("disk pressure")),
                       "disk-pressure gap")
    return False, False, f"unknown kind {kind}"


def _trade_windows(facts: ArchiveFacts, delisted_at: dict[str, int],
                   edge_ns: int) -> dict[str, tuple[int, int]]:
    """Symbol -> (lo, hi) truth-time window in which every trade must be in the archive."""
    first: dict[str, int] = {}
    for e in facts.epochs:
        if e["channel"] == "trade":
            first[e["symbol"]] = min(first.get(e["symbol"], e["start_ns"]), e["start_ns"])
    return {sym: (lo + edge_ns, min(facts.capture_end_ns, delisted_at.get(sym, 1 << 62)) - edge_ns)
            for sym, lo in first.items()}


def compare(facts: ArchiveFacts, faults: list[dict[str, Any]],
            truth_trades: list[tuple[str, int, int]], *, truth_events: int = 0,
            edge_s: float = 2.0) -> SoakReport:
    """Compare the archive ``facts`` with the truth (``faults``: the sim's fault records plus
    the orchestrator's ``kill9``/``disk_pressure`` records in the same shape; ``truth_trades``:
    (symbol, trade_id, t_ns)). See the module docstring for every check."""
    rep = SoakReport(messages=facts.messages, truth_events=truth_events,
                     archive_trades=len(facts.trades), files_checked=facts.files_checked)
    ix = _Index(facts)
    # --- faults
    for f in sorted(faults, key=lambda r: r["t_ns"]):
        kind = f["fault"]
        if kind in BENIGN_KINDS:
            rep.outcomes.append(FaultOutcome(f, True, True, False, "none (global checks)"))
            continue
        why = inert(f)
        if why:
            rep.outcomes.append(FaultOutcome({**f, "fault": f"{kind} (no effect)"}, False, False,
                                             False, why))
            continue
        det, rec, note = _match(f, ix)
        why = "" if det else undone(f, facts)
        if why:
            rep.outcomes.append(FaultOutcome({**f, "fault": f"{kind} (no effect)"}, False, False,
                                             False, why))
            continue
        rep.outcomes.append(FaultOutcome(f, det, rec, True, note))
        if det and rec and note.endswith("coverage resumed"):
            rep.warnings.append(f"fault {kind} at {f['t_ns']} ({f.get('channel')} "
                                f"{f.get('symbol')}): {note}")
        if not (det and rec):
            rep.misses.append(f"fault {kind} at {f['t_ns']} ({f.get('channel')} "
                              f"{f.get('symbol')}): {note}")
    # --- trades missing outside recorded gaps
    delisted_at = {f["symbol"]: int(f["t_ns"]) for f in faults if f["fault"] == "delist"}
    windows = _trade_windows(facts, delisted_at, int(edge_s * S))
    trade_gaps: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for g in facts.gaps:
        if g["channel"] in ("trade", "*"):
            trade_gaps[g["symbol"]].append(g)
    for sym, tid, t in truth_trades:
        w = windows.get(sym)
        if w is None or not w[0] <= t <= w[1]:
            continue
        rep.truth_trades_expected += 1
        if tid in ix.ids.get(sym, {}):
            continue
        if any(covers(g, t) for g in [*trade_gaps.get(sym, ()), *trade_gaps.get("*", ())]):
            rep.missing_inside_gaps += 1
        else:
            rep.missing_outside_gaps.append((sym, tid, t))
    if rep.missing_outside_gaps:
        ex = ", ".join(f"{s}#{i}" for s, i, _ in rep.missing_outside_gaps[:8])
        rep.misses.append(f"{len(rep.missing_outside_gaps)} truth trades missing outside "
                          f"recorded gaps: {ex}")
    rep.verify_failed = sum(int(v.get("failed", 0)) + int(v.get("checkpoints_failed", 0))
                            for v in facts.verify)
    if rep.verify_failed:
        ex = [x for v in facts.verify for x in v.get("failures", [])][:3]
        rep.misses.append(f"{rep.verify_failed} book/level3 messages or checkpoints fail "
                          f"verification outside recorded mismatches: {ex}")
    # --- duplicates
    for sym, by_id in ix.ids.items():
        for tid, sources in by_id.items():
            if sources.count(1) > 1:
                rep.duplicate_trades.append((sym, tid))
    if rep.duplicate_trades:
        rep.misses.append(f"{len(rep.duplicate_trades)} trade ids recorded live twice: "
                          f"{rep.duplicate_trades[:8]}")
    rep.duplicate_rows = {k: v for k, v in facts.duplicate_rows.items() if v}
    for name, n in rep.duplicate_rows.items():
        rep.misses.append(f"{n} {name} rows recorded twice (identical message key)")
    # --- unreadable files
    rep.unreadable = list(facts.unreadable)
    if rep.unreadable:
        rep.misses.append(f"{len(rep.unreadable)} unreadable Parquet files: {rep.unreadable[:3]}")
    # --- books verified after each heal
    failed_epochs = {(x.get("dataset"), x.get("symbol"), x.get("epoch"))
                     for v in facts.verify for x in v.get("failures", [])}
    epochs_by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in facts.epochs:
        epochs_by[(e["channel"], e["symbol"])].append(e)
    for g in facts.gaps:
        if g["channel"] not in ("book", "level3") or g["symbol"] == "*" or not _healed(g):
            continue
        rep.heals += 1
        after = [e for e in epochs_by.get((g["channel"], g["symbol"]), ())
                 if e["start_ns"] >= g["end_ns"] - S and (e.get("checksum_ok") or 0) > 0
                 and (g["channel"], g["symbol"], e["epoch"]) not in failed_epochs]
        if after:
            rep.heals_verified += 1
        else:
            rep.unverified_heals.append(g)
    if rep.unverified_heals:
        ex = [(g["channel"], g["symbol"], g["cause"], g["end_ns"]) for g in rep.unverified_heals[:5]]
        rep.misses.append(f"{len(rep.unverified_heals)} of {rep.heals} book heals never verified "
                          f"afterwards: {ex}")
    # --- backfilled trades
    for g in ix.by_cause.get("trade_id_jump", ()):
        lo, hi = id_range(g)
        for i in range(lo, hi + 1):
            rep.backfill_expected += 1
            if 2 in ix.ids.get(g["symbol"], {}).get(i, ()):
                rep.backfill_present += 1
            else:
                rep.backfill_missing.append((g["symbol"], i))
    if rep.backfill_missing:
        rep.misses.append(f"{len(rep.backfill_missing)} of {rep.backfill_expected} trade ids in "
                          f"trade_id_jump gaps not backfilled from REST: {rep.backfill_missing[:8]}")
    return rep
