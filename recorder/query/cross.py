"""Cross-source check: the WebSocket and FIX books of one symbol, compared (issue #17 §4).

A symbol recorded over both the WebSocket and FIX has two epochs at a time in ``book`` (or
``level3``): ``epochs.stream`` is ``spot`` / ``l3`` for the WebSocket and ``fix`` / ``fix_l3``
for FIX. Each source's book is rebuilt on its own by the ordinary replay
(:meth:`recorder.query.books.BookEngine.replay` restricted to that source's epochs), never by
new book logic here.

**The rule.** The books are compared at every *FIX message time*: the exchange time
(``book.ts_ns``, FIX's SendingTime) of each FIX book message applied in a FIX epoch. The FIX
book there is the book after the last FIX message with that time. The WebSocket book is
looked for on the same exchange clock (``book.ts_ns``, Kraken's timestamp): the state after
WebSocket message *i* holds on ``[ts_i, ts_next)``, where ``ts_next`` is the next message of
the same epoch; the last state of an epoch holds until the epoch ends (its receive-clock
coverage, ``valid_until``, carried to the exchange clock as the same distance after its last
message). The two feeds are timed independently (two connections, two gateways), so a change
may be stamped a little apart on each: the FIX book **agrees** when it equals (level by level:
price and quantity, as decimals) *any* WebSocket state that holds somewhere in
``[t - tolerance, t + tolerance]``. A time where no WebSocket book holds at ``t`` itself (no
WebSocket epoch open, a WebSocket gap), or whose WebSocket epoch opened (receive clock) only
after the FIX message was received, is **not compared** (counted as ``skipped``): both
epochs must be open when the FIX message arrives. Times
inside a FIX gap are never compared: FIX books only exist in FIX epochs.

A **disagreement** is a compared time where no WebSocket state in the window equals the FIX
book. It is reported as one row per differing (side, level) against the WebSocket book that
holds at ``t``: ``kind`` is ``price`` (both have the level at different prices), ``qty``
(same price, different quantity), ``missing_ws`` (only FIX has the level) or ``missing_fix``
(only the WebSocket has it). Levels are compared to ``depth``: the smaller of the two epochs'
subscribed depths unless a smaller one is asked for. ``level3`` books are compared as their
aggregated levels (price, total quantity).

A message's exchange time is what ``book_at`` uses: ``ts_ns`` of an L2 message (Kraken's
timestamp; FIX SendingTime), the latest event time of an L3 message. An L3 *snapshot* (a
WebSocket snapshot or a FIX W) carries its orders' own times, so its latest time can be long
before it was sent. On ``level3`` a FIX snapshot is therefore no comparison time, and a
WebSocket snapshot does not by itself make a WebSocket book hold at a time (both sources are
compared from their epochs' first incremental message on); a WebSocket snapshot's state is
still one the FIX book may equal within the tolerance.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from recorder.protocol.numbers import units_to_text
from recorder.query.books import BookEngine, BookEvent, QueryError

if TYPE_CHECKING:
    import polars as pl

    from recorder.query.api import Archive

__all__ = ["SOURCES", "CrossResult", "compare_sources", "ROW_SCHEMA", "SUMMARY_SCHEMA"]

#: (channel) -> (WebSocket streams, FIX streams) of ``epochs.stream``
SOURCES: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "book": (("spot",), ("fix",)),
    "level3": (("l3",), ("fix_l3",)),
}

ROW_SCHEMA: Final = {
    "symbol": "str", "channel": "str", "time_ns": "i64", "ws_epoch": "i64",
    "fix_epoch": "i64", "ws_recv_ns": "i64", "fix_recv_ns": "i64", "side": "str",
    "level": "i64", "ws_price": "str", "ws_qty": "str", "fix_price": "str", "fix_qty": "str",
    "kind": "str",
}
SUMMARY_SCHEMA: Final = {
    "symbol": "str", "channel": "str", "depth": "i64", "ws_epochs": "i64",
    "fix_epochs": "i64", "epochs_compared": "i64", "comparisons": "i64", "skipped": "i64",
    "disagreements": "i64", "rows": "i64", "first_ns": "i64", "last_ns": "i64",
}

_Levels = tuple[tuple[Decimal, Decimal], ...]


@dataclass(frozen=True)
class _State:
    ts: int           # exchange time of the message that made it
    until: int        # exclusive end of its validity on the exchange clock
    recv: int
    epoch: int
    bids: _Levels
    asks: _Levels
    snapshot: bool = False
    epoch_start: int = 0  # receive-clock start of its epoch


@dataclass
class CrossResult:
    """What :func:`compare_sources` found: disagreement rows and one summary per symbol."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)

    def frames(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        import polars as pl

        def frame(rows: list[dict[str, Any]], schema: dict[str, str]) -> pl.DataFrame:
            types = {"str": pl.Utf8, "i64": pl.Int64}
            return pl.DataFrame(rows, schema={k: types[v] for k, v in schema.items()},
                                orient="row")
        return frame(self.rows, ROW_SCHEMA), frame(self.summary, SUMMARY_SCHEMA)


def _levels(book: Any, side: str, depth: int) -> _Levels:
    pp, qp = book.price_precision, book.qty_precision
    return tuple((Decimal(units_to_text(p, pp)), Decimal(units_to_text(q, qp)))
                 for p, q in book.levels(side, depth))


def _states(archive: Archive, streams: tuple[str, ...], channel: str, symbol: str,
            depth: int, lo: int, hi: int) -> list[_State]:
    """Every book state of one source, in exchange-time order, with its validity."""
    out: list[_State] = []
    for root in archive.roots:
        engine = BookEngine(archive, root, engine="python", streams=streams)
        epochs = {e.epoch: e for e in engine.epochs(channel, symbol)}
        if not epochs:
            continue
        raw: list[tuple[int, int, int, _Levels, _Levels, bool]] = []
        for item in engine.replay(symbol, lo, hi, channel=channel,  # type: ignore[arg-type]
                                  clock="receive"):
            if isinstance(item, BookEvent) and item.ts_ns is not None:
                raw.append((item.ts_ns, item.recv_ns, item.epoch,
                            _levels(item.book, "bid", depth), _levels(item.book, "ask", depth),
                            item.kind == "snapshot"))
        for i, (ts, recv, ep, bids, asks, snap) in enumerate(raw):
            nxt = raw[i + 1] if i + 1 < len(raw) else None
            if nxt is not None and nxt[2] == ep:
                until = max(nxt[0], ts)
            else:  # the epoch's last state: as long after it as the epoch lasted after it
                until = ts + max(0, epochs[ep].valid_until - recv) + 1
            out.append(_State(ts, until, recv, ep, bids, asks, snap, epochs[ep].start_ns))
    out.sort(key=lambda s: (s.ts, s.recv))
    return out


def _diff(symbol: str, channel: str, t: int, ws: _State, fx: _State) -> list[dict[str, Any]]:
    rows = []
    for side, a, b in (("bid", ws.bids, fx.bids), ("ask", ws.asks, fx.asks)):
        for i in range(max(len(a), len(b))):
            w = a[i] if i < len(a) else None
            f = b[i] if i < len(b) else None
            if w == f:
                continue
            if w is None:
                kind = "missing_ws"
            elif f is None:
                kind = "missing_fix"
            elif w[0] != f[0]:
                kind = "price"
            else:
                kind = "qty"
            rows.append({
                "symbol": symbol, "channel": channel, "time_ns": t, "ws_epoch": ws.epoch,
                "fix_epoch": fx.epoch, "ws_recv_ns": ws.recv, "fix_recv_ns": fx.recv,
                "side": side, "level": i + 1,
                "ws_price": None if w is None else str(w[0]),
                "ws_qty": None if w is None else str(w[1]),
                "fix_price": None if f is None else str(f[0]),
                "fix_qty": None if f is None else str(f[1]), "kind": kind})
    return rows


def compare_states(symbol: str, channel: str, ws: list[_State], fx: list[_State], lo: int,
                   hi: int, tolerance_ns: int, summary: dict[str, Any], *,
                   snapshot_times: bool = True) -> list[dict[str, Any]]:
    """The rule of the module docstring over two sources' states (each sorted by exchange
    time); counts into ``summary``, returns the disagreement rows. ``snapshot_times``
    False (L3): snapshot states are no comparison times and do not make a WebSocket book
    hold at a time; they still count as WebSocket states that the FIX book may equal."""
    out: list[dict[str, Any]] = []
    starts = [s.ts for s in ws]
    span = max((s.until - s.ts for s in ws), default=0)  # the longest any state holds
    compared: set[int] = set()
    for i, f in enumerate(fx):
        t = f.ts
        if not lo <= t <= hi or (f.snapshot and not snapshot_times) or (i + 1 < len(fx) and fx[i + 1].ts == t
                                 and fx[i + 1].epoch == f.epoch):
            continue  # the last FIX state of a time stands for it
        j = bisect.bisect_right(starts, t) - 1
        at = None
        while j >= 0:  # the latest-starting WebSocket state that still holds at t
            if ws[j].until > t and (snapshot_times or not ws[j].snapshot) \
                    and ws[j].epoch_start <= f.recv:
                at = ws[j]
                break
            if ws[j].ts < t - span:
                break
            j -= 1
        if at is None:
            summary["skipped"] += 1
            continue
        summary["comparisons"] += 1
        compared.add(f.epoch)
        if summary["first_ns"] is None:
            summary["first_ns"] = t
        summary["last_ns"] = t
        ok = False
        for k in range(bisect.bisect_right(starts, t + tolerance_ns) - 1, -1, -1):
            w = ws[k]
            if w.ts < t - tolerance_ns - span:
                break
            if w.until > t - tolerance_ns and w.bids == f.bids and w.asks == f.asks:
                ok = True
                break
        if ok:
            continue
        rows = _diff(symbol, channel, t, at, f)
        summary["disagreements"] += 1
        summary["rows"] += len(rows)
        out.extend(rows)
    summary["epochs_compared"] += len(compared)
    return out


def _symbols(archive: Archive, channel: str) -> list[str]:
    """Symbols of ``channel`` with epochs of both sources."""
    import polars as pl

    ws, fix = SOURCES[channel]
    df = (archive.scan("epochs", raw=True)
          .filter(pl.col("channel").cast(pl.Utf8) == channel)
          .select(pl.col("symbol").cast(pl.Utf8), pl.col("stream").cast(pl.Utf8))
          .unique().collect())
    by: dict[str, set[str]] = {}
    for sym, stream in df.rows():
        by.setdefault(sym, set()).add(stream)
    return sorted(s for s, st in by.items() if st & set(ws) and st & set(fix))


def compare_sources(archive: Archive, *, symbols: Sequence[str] | None = None,
                    channel: str = "book", depth: int | None = None, start: int | None = None,
                    end: int | None = None, tolerance_ns: int = 1_000_000_000) -> CrossResult:
    """Compare the WebSocket and FIX books of ``symbols`` (default: every symbol with epochs
    of both sources) on ``channel`` (``book`` or ``level3``) at every FIX message time in
    ``[start, end]`` (exchange clock); see the module docstring for the rule."""
    if channel not in SOURCES:
        raise QueryError(f"cross-source compares the book or level3 channel, not {channel!r}")
    if depth is not None and depth < 1:
        raise QueryError("depth must be a positive number of price levels (or None)")
    if tolerance_ns < 0:
        raise QueryError("tolerance must not be negative")
    ws_streams, fix_streams = SOURCES[channel]
    lo = -(2**62) if start is None else start
    hi = 2**62 if end is None else end
    # receive-clock bounds for the replays: a margin of the tolerance plus a minute, so that
    # the states holding at the edges are there (the feeds' clocks differ from ours)
    margin = tolerance_ns + 60_000_000_000
    rlo, rhi = lo - margin, hi + margin
    result = CrossResult()
    for symbol in (list(symbols) if symbols is not None else _symbols(archive, channel)):
        eps = {}
        for name, streams in (("ws", ws_streams), ("fix", fix_streams)):
            eps[name] = [e for root in archive.roots
                         for e in BookEngine(archive, root, engine="python",
                                             streams=streams).epochs(channel, symbol)]
        depths = [e.depth for e in eps["ws"] + eps["fix"] if e.depth]
        n = min([*depths, *([depth] if depth else [])], default=depth or 10)
        summary = {"symbol": symbol, "channel": channel, "depth": n,
                   "ws_epochs": len(eps["ws"]), "fix_epochs": len(eps["fix"]),
                   "epochs_compared": 0, "comparisons": 0, "skipped": 0, "disagreements": 0,
                   "rows": 0, "first_ns": None, "last_ns": None}
        result.summary.append(summary)
        if not eps["ws"] or not eps["fix"]:
            continue
        ws = _states(archive, ws_streams, channel, symbol, n, rlo, rhi)
        fx = _states(archive, fix_streams, channel, symbol, n, rlo, rhi)
        result.rows.extend(compare_states(symbol, channel, ws, fx, lo, hi, tolerance_ns,
                                          summary, snapshot_times=channel != "level3"))
    return result
