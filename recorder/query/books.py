"""Rebuild books (spot L2 ``book``, L3 ``level3``, Futures ``futures_book``) at any time from
the archive alone.

Semantics (the contract researchers rely on):

* **Receive clock** (``clock="receive"``): the book at ``T`` is the state after every recorded
  message with ``recv_ns <= T``. It is built from the nearest checkpoint at or before ``T`` of
  the epoch that covers ``T`` (same channel and symbol), then the epoch's event rows with
  ``checkpoint < recv_ns <= T`` replayed message by message (a message ends at the row that
  carries Kraken's checksum), truncated to the subscribed depth after each message exactly as
  the live book was.
* **Exchange clock** (``clock="exchange"``, Kraken's timestamps): a message's exchange time is
  its ``timestamp`` (L2) or the latest of its events' timestamps (L3). The book at ``T`` is the
  state after the longest run of messages, in wire order, none of which is stamped later than
  ``T``: i.e. just before the first message stamped ``> T``. This maps to a receive-clock cut
  (that message's ``recv_ns - 1``), so both clocks share one rebuild path. When every message
  is stamped ``<= T``, ``T`` must not be later than the last message's timestamp.
* **Validity**: an epoch covers ``[start_ns, end_ns]`` (its snapshot to its last message), and
  up to the next epoch's start when it ended by a resnapshot. An epoch that ended with a
  checksum mismatch or a crossed book covers only ``[start_ns, end_ns)``: the failing message
  is never applied. A time covered by no epoch, or inside a recorded gap of the channel and
  symbol (or of ``*``), gets a :class:`BookAt` with ``valid=False``, the ``reason`` and the
  gap row: never a silently wrong book.
* **Unreadable files** (:mod:`recorder.archive.health`): a book is never rebuilt across one.
  When a damaged file of the channel may hold rows between the checkpoint used and the cut,
  or a damaged ``epochs``/``gaps`` file may hold rows of the epoch up to the cut, the answer is
  ``valid=False`` with the file, the reason and the repair command, and ``gap`` describes the
  file's time range (cause ``unreadable_file``); a replay stops before such a file's first row
  and yields a :class:`ReplayGap` for the rest of the epoch.
* **Metadata**: the epoch, the checkpoint used, the number of messages replayed, the Kraken
  CRC32 recomputed from the rebuilt book, and whether it equals the last checksum Kraken sent
  at or before the cut (``checksum_ok``).
* **Futures** (``channel="futures_book"``, ``symbol`` = the product id): the full-depth book
  from the epoch's checkpoint (taken at each ``book_snapshot``) plus the deltas with a higher
  ``seq``. Futures send no checksum (``checksum_ok`` is None); an epoch ended by a ``seq`` jump
  covers only the time before the jumping delta. Prices and quantities are Kraken's text.
* **Empty answers explain themselves**: a symbol with no epoch of the channel gets the known
  symbols and the closest matches (``known_symbols``, ``close_matches``) and the channels it
  was recorded on; a time before or after the recorded data gets the recorded range
  (``data_start_ns``/``data_end_ns``, receive clock).

* **Several roots** (one per capture worker, several hosts): epochs, gaps and checkpoints belong
  to the root whose pipeline recorded them. :class:`BookEngine` answers over one root;
  :class:`BookRouter` (what :class:`~recorder.query.api.Archive` uses) sends a question about
  (channel, symbol) to the root(s) that recorded it. A pair recorded by one root at a time
  (sharding; a pair moved between workers by a re-plan) gets exactly the single-root answers
  above, from the root whose epoch covers the time. ``BookAt.root``, ``BookEvent.root`` and
  ``ReplayGap.root`` name the root that answered.

* **Engines**: :meth:`BookEngine.book_at` replays spot books on the compiled core by default
  (``engine="core"``, :mod:`recorder.query.books_core`: the rows go to ``recorder._core`` as
  columns, read straight from Parquet with cached footers, row-group pruning and only the
  needed columns); the pure-Python books of :mod:`recorder.book` are the reference model
  (``engine="python"``), which also answers whatever the core refuses, so both give the same
  answers (tests/test_query_books_core.py). Futures books are read by the core engine's
  reader and replayed by the core as well (``_core.futures_book_at_replay``), the reference's
  :class:`~recorder.book.futures.FuturesBook` answering what the core refuses.

Reference replays read the archive with Polars (manifest-pruned files, predicate pushdown on
the time columns); nothing here formats SQL.
"""

from __future__ import annotations

import dataclasses
import difflib
import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple

import msgspec

from recorder.archive.health import UNREADABLE_CAUSE, FileProblem
from recorder.archive.schema import load_schemas
from recorder.book.checkpoint import (
    L2Checkpoint,
    L3Checkpoint,
    L3OrderState,
    decode_checkpoint,
    levels_to_text,
)
from recorder.book.futures import FuturesBook, FuturesBookCheckpoint
from recorder.book.l2 import L2Book
from recorder.book.l3 import L3Book
from recorder.errors import RecorderError
from recorder.protocol.errors import ProtocolError
from recorder.protocol.numbers import decimals_of, to_units, token_to_text, units_to_text
from recorder.query.timeparse import ns_to_iso

if TYPE_CHECKING:
    import polars as pl

    from recorder.query.api import Archive
    from recorder.query.books_core import RowReader

__all__ = [
    "BookAt",
    "BookEngine",
    "BookEvent",
    "BookRouter",
    "Channel",
    "Clock",
    "DEFAULT_CHANNEL",
    "Engine",
    "QueryError",
    "ReplayGap",
]

Channel = Literal["book", "level3", "futures_book"]
Clock = Literal["exchange", "receive"]
#: ``"core"``: spot books replayed on the compiled core (``recorder._core``), the reference
#: model answering whatever the core refuses; ``"python"``: the reference model only.
Engine = Literal["core", "python"]
ENGINES: Final = ("core", "python")
#: Channels :meth:`BookEngine.book_at` rebuilds.
CHANNELS: Final = ("book", "level3", "futures_book")
#: The channel of every book question unless told otherwise: this module, the researcher API
#: (:class:`recorder.query.api.Archive`), ``recorder book`` for a spot pair, and the SQL
#: macros' ``channel :=`` default (``queries/20_analytics.sql``, checked by a test).
DEFAULT_CHANNEL: Final[Channel] = "book"

#: First try to find the exchange-clock cut among rows received at most this long after T.
_EXCHANGE_WINDOW_NS: Final = 60_000_000_000
_L3_EVENT: Final = load_schemas()["level3"].column("event")
#: level3 event code -> name of the order change (``schemas/level3.toml`` labels).
_L3_EVENTS: Final = {code: name for name, code in _L3_EVENT.codes().items() if name != "snapshot"}
#: The event code of snapshot rows, the same in book, level3 and futures_book.
_SNAPSHOT: Final = _L3_EVENT.codes()["snapshot"]
#: A checkpoint lookup first reads this much receive time before the cut, then a window
#: ``_CP_WIDEN`` times wider each time it finds none (see ``BookEngine._checkpoint``).
_CP_WINDOW_NS: Final = 60_000_000_000
_CP_WIDEN: Final = 8
_HALT: Final = frozenset({"checksum_mismatch", "crossed", "seq_jump"})
#: At most this many known symbols are listed in an "unknown symbol" answer.
_KNOWN_LISTED: Final = 50
_JSON: Final = msgspec.json.Decoder(dict[str, str])


class QueryError(RecorderError, ValueError):
    """A query cannot be answered as asked (bad channel/clock, missing exchange times...)."""


def _symbol_column(channel: str) -> str:
    """The symbol column of a channel's dataset (futures datasets name it ``product_id``)."""
    return "product_id" if channel == "futures_book" else "symbol"


def _outside(channel: str, symbol: str, t: int, start: int, end: int) -> str:
    """Why ``t`` (receive clock) has no book: it lies outside ``[start, end]``."""
    where = "before the first" if t < start else "after the last"
    return (f"{where} recorded {channel} data of {symbol}: recorded from {ns_to_iso(start)} "
            f"to {ns_to_iso(end)} (receive clock)")


class _Lvl(NamedTuple):
    price: str
    qty: str


class _Ord(NamedTuple):
    order_id: str
    limit_price: str
    order_qty: str
    event: str | None
    ts_ns: int | None


@dataclass
class BookAt:
    """A rebuilt book (``valid``) or an explicit "no valid book" answer with its reason/gap.

    ``frame`` is a Polars DataFrame, one row per level (L2) or order (L3), bids then asks, best
    first: ``side``, ``level`` (1 = best), ``price``, ``qty`` (exact ``Decimal`` at the pair's
    precision), ``price_units``, ``qty_units``; L3 adds ``queue`` (1 = front of the level),
    ``order_id``, ``ts_ns``, ``qty_ahead_units``. Empty when not ``valid``.

    Futures rows are ``(level, price_units, qty_units, price_text, qty_text)``: units at the
    book's largest scale (``price_precision``/``qty_precision``), text as Kraken sent it.
    """

    symbol: str
    channel: str
    at_ns: int
    clock: str
    valid: bool
    reason: str | None = None
    gap: dict[str, Any] | None = None
    cut_recv_ns: int | None = None
    epoch: int | None = None
    checkpoint_recv_ns: int | None = None
    checkpoint_reason: str | None = None
    messages_replayed: int = 0
    last_message_recv_ns: int | None = None
    last_message_ts_ns: int | None = None
    checksum: int | None = None
    exchange_checksum: int | None = None
    checksum_ok: bool | None = None
    depth: int | None = None
    price_precision: int | None = None
    qty_precision: int | None = None
    bids: list[tuple[Any, ...]] = field(default_factory=list)
    asks: list[tuple[Any, ...]] = field(default_factory=list)
    #: the rebuilt book as a reference-model object (:class:`~recorder.book.l2.L2Book` /
    #: :class:`~recorder.book.l3.L3Book`); on the compiled core it is restored from the
    #: answer's state when first read (see :class:`_LazyBook`)
    book: L2Book | L3Book | None = field(default=None, repr=False)
    #: the archive root that answered (None: an engine over the union of roots)
    root: Path | None = None
    #: futures: the ``seq`` of the last delta applied
    seq: int | None = None
    #: an unknown symbol: the channel's recorded symbols (at most 50), the closest ones, and
    #: the other channels the symbol was recorded on
    known_symbols: list[str] | None = None
    close_matches: list[str] | None = None
    other_channels: list[str] | None = None
    #: receive-clock range of the recorded epochs of (channel, symbol), when the time is
    #: outside it
    data_start_ns: int | None = None
    data_end_ns: int | None = None

    def __bool__(self) -> bool:
        return self.valid

    @property
    def frame(self) -> pl.DataFrame:
        """The levels/orders as a Polars DataFrame (see class docstring)."""
        import polars as pl

        pp = self.price_precision or 0
        qp = self.qty_precision or 0
        cut = 3 if self.channel == "futures_book" else None  # futures: units, not text
        rows = [("bid", *r[:cut]) for r in self.bids] + [("ask", *r[:cut]) for r in self.asks]
        if self.channel in ("book", "futures_book"):
            names = ["side", "level", "price_units", "qty_units"]
        else:
            names = ["side", "level", "queue", "order_id", "price_units", "qty_units", "ts_ns",
                     "qty_ahead_units"]
        cols: list[Any] = list(zip(*rows)) if rows else [[] for _ in names]
        schema: dict[str, Any] = {"side": pl.Utf8, "level": pl.Int32, "queue": pl.Int32,
                                  "order_id": pl.Utf8, "price_units": pl.Int64,
                                  "qty_units": pl.Int64, "ts_ns": pl.Int64,
                                  "qty_ahead_units": pl.Int64}
        df = pl.DataFrame({n: pl.Series(n, list(c), dtype=schema[n]) for n, c in zip(names, cols)})
        price = [Decimal(units_to_text(u, pp)) for u in df["price_units"]]
        qty = [Decimal(units_to_text(u, qp)) for u in df["qty_units"]]
        return df.with_columns(
            pl.Series("price", price, dtype=pl.Decimal(38, pp)),
            pl.Series("qty", qty, dtype=pl.Decimal(38, qp)),
        ).select(["side", "level", *(["queue", "order_id"] if self.channel == "level3" else []),
                  "price", "qty", "price_units", "qty_units",
                  *(["ts_ns", "qty_ahead_units"] if self.channel == "level3" else [])])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: metadata plus ``bids``/``asks`` as exact text (L3: one entry per order)."""
        pp = self.price_precision or 0
        qp = self.qty_precision or 0

        def side(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
            out = []
            for r in rows:
                if self.channel == "futures_book":
                    level, _, _, price, qty = r
                    out.append({"level": level, "price": price, "qty": qty})
                elif self.channel == "book":
                    level, pu, qu = r
                    out.append({"level": level, "price": units_to_text(pu, pp),
                                "qty": units_to_text(qu, qp)})
                else:
                    level, queue, oid, pu, qu, ts, ahead = r
                    out.append({"level": level, "queue": queue, "order_id": oid,
                                "price": units_to_text(pu, pp), "qty": units_to_text(qu, qp),
                                "ts_ns": ts, "qty_ahead": units_to_text(ahead, qp)})
            return out

        return {
            "symbol": self.symbol, "channel": self.channel, "at": ns_to_iso(self.at_ns),
            "at_ns": self.at_ns, "clock": self.clock, "valid": self.valid,
            "reason": self.reason, "gap": self.gap, "epoch": self.epoch,
            "cut_recv_ns": self.cut_recv_ns, "checkpoint_recv_ns": self.checkpoint_recv_ns,
            "checkpoint_reason": self.checkpoint_reason,
            "messages_replayed": self.messages_replayed,
            "last_message_recv_ns": self.last_message_recv_ns,
            "last_message_ts_ns": self.last_message_ts_ns, "checksum": self.checksum,
            "exchange_checksum": self.exchange_checksum, "checksum_ok": self.checksum_ok,
            "depth": self.depth, "price_precision": self.price_precision,
            "qty_precision": self.qty_precision, "bids": side(self.bids), "asks": side(self.asks),
            "root": None if self.root is None else str(self.root), "seq": self.seq,
            "known_symbols": self.known_symbols, "close_matches": self.close_matches,
            "other_channels": self.other_channels, "data_start_ns": self.data_start_ns,
            "data_end_ns": self.data_end_ns,
        }


class _LazyBook:
    """``BookAt.book``: a plain attribute, except that an answer of the compiled core leaves a
    ``_book_factory`` that restores the reference-model book from the answer's state the first
    time ``book`` is read (most callers only read the levels, which the core already gave)."""

    def __get__(self, obj: BookAt | None, owner: type | None = None) -> L2Book | L3Book | None:
        if obj is None:
            return None
        state = obj.__dict__
        book = state.get("_book")
        factory = state.get("_book_factory")
        if book is None and factory is not None:
            book = state["_book"] = factory()
            state["_book_factory"] = None
        return book

    def __set__(self, obj: BookAt, value: L2Book | L3Book | None) -> None:
        obj.__dict__["_book"] = value
        obj.__dict__["_book_factory"] = None


# installed after the dataclass is built: its __init__ assigns `book` through the descriptor
BookAt.book = _LazyBook()  # type: ignore[assignment]


@dataclass(frozen=True)
class BookEvent:
    """One message applied during :meth:`BookEngine.replay`.

    ``book`` is the live book object *after* the message (it keeps changing as the iteration
    goes on: copy what you need). ``changes`` are the message's rows as ``(side, price_units,
    qty_units)`` (L2) or ``(side, event, order_id, price_units, qty_units, ts_ns)`` (L3).
    """

    recv_ns: int
    ts_ns: int | None
    epoch: int
    kind: str
    changes: list[tuple[Any, ...]]
    exchange_checksum: int | None
    checksum: int
    book: L2Book | L3Book
    root: Path | None = None


@dataclass(frozen=True)
class ReplayGap:
    """Yielded by :meth:`BookEngine.replay` where no valid book exists (between epochs)."""

    start_ns: int
    end_ns: int | None
    reason: str
    gap: dict[str, Any] | None
    root: Path | None = None


@dataclass(frozen=True)
class _Epoch:
    epoch: int
    start_ns: int
    end_ns: int
    end_reason: str
    depth: int | None
    pp: int | None
    qp: int | None
    valid_until: int  # inclusive receive-clock bound of the covered interval


def _l2_book(symbol: str, ep: _Epoch) -> L2Book:
    """An empty L2 book for replaying ``ep`` (its precisions are recorded with the epoch)."""
    if ep.pp is None or ep.qp is None:
        raise QueryError(f"book epoch {ep.epoch} of {symbol!r} records no price/qty precision "
                         f"(archive inconsistent; run recorder verify)")
    return L2Book(symbol, ep.depth or 10, ep.pp, ep.qp)


def _value(units: int | None, scale: int, overflow: str | None, name: str) -> str:
    if units is None:
        return _JSON.decode(overflow or "{}")[name]
    return units_to_text(units, scale)


def futures_answer(res: BookAt, seq: int | None, bids: list[tuple[str, str]],
                   asks: list[tuple[str, str]]) -> None:
    """Fill ``res`` with a rebuilt futures book: its ``seq`` and its levels, best first, as
    plain ``(price, qty)`` text; units are at the most decimals written on the answer's
    levels (futures have no instrument precision)."""
    res.valid = True
    res.seq = seq
    every = [*bids, *asks]
    pp = max((decimals_of(p) for p, _ in every), default=0)
    qp = max((decimals_of(q) for _, q in every), default=0)
    res.price_precision, res.qty_precision = pp, qp
    res.bids = [(i + 1, to_units(p, pp), to_units(q, qp), p, q) for i, (p, q) in enumerate(bids)]
    res.asks = [(i + 1, to_units(p, pp), to_units(q, qp), p, q) for i, (p, q) in enumerate(asks)]


class BookEngine:
    """Book rebuilds and replays over one :class:`~recorder.query.api.Archive` snapshot.

    ``root``: read only this root of the archive (one of ``archive.roots``); None reads the
    union of every root, which is exact only while each (channel, symbol) was recorded by one
    root (use :class:`BookRouter` for multi-root archives).

    ``engine``: ``"core"`` (spot books replayed by the compiled core, the reference model
    answering what it refuses) or ``"python"`` (the reference model only); see the module
    docstring.

    Caches the (small) epochs and gaps tables per (channel, symbol) and, for the core engine,
    the Parquet footers, open files and checkpoint index it reads, for the life of the engine;
    the archive's :meth:`~recorder.query.api.Archive.refresh` makes a new engine.
    """

    def __init__(self, archive: Archive, root: Path | None = None, *,
                 engine: Engine = "core", streams: tuple[str, ...] | None = None) -> None:
        if engine not in ENGINES:
            raise QueryError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
        self.archive = archive
        self.root = root
        #: only the epochs (and gaps) of these sources (``epochs.stream``: ``spot``, ``l3``,
        #: ``fix``, ``fix_l3``...); None: every source (a symbol recorded over the WebSocket
        #: and FIX then has both sources' epochs, see :mod:`recorder.query.cross`)
        self.streams = streams
        #: who replays spot books in :meth:`book_at` (see :data:`Engine`)
        self.engine: Engine = engine
        #: the core's Parquet reader (cached footers and row-group statistics), made on use
        self._row_reader: RowReader | None = None
        self._epochs: dict[tuple[str, str], list[_Epoch]] = {}
        self._gaps: dict[tuple[str, str], list[dict[str, Any]]] = {}

    # ------------------------------------------------------------------ metadata

    def epochs(self, channel: str, symbol: str) -> list[_Epoch]:
        """The epochs of (channel, symbol) ordered by start, with their covered intervals."""
        key = (channel, symbol)
        cached = self._epochs.get(key)
        if cached is not None:
            return cached
        import polars as pl

        lf = self.archive.scan("epochs", symbols=[symbol], root=self.root, raw=True)
        if self.streams is not None:
            lf = lf.filter(pl.col("stream").cast(pl.Utf8).is_in(list(self.streams)))
        df = (lf.filter((pl.col("channel").cast(pl.Utf8) == channel)
                        & (pl.col("symbol").cast(pl.Utf8) == symbol))
              .sort(["epoch", "end_ns", "messages"])
              .group_by("epoch", maintain_order=True).last()
              .sort("start_ns")
              .collect())
        rows = df.select(["epoch", "start_ns", "end_ns", "end_reason", "depth",
                          "price_precision", "qty_precision"]).rows()
        out: list[_Epoch] = []
        for i, (e, start, end, why, depth, pp, qp) in enumerate(rows):
            why = str(why)
            if why in _HALT:
                until = end - 1
            elif why == "resnapshot" and i + 1 < len(rows):
                until = rows[i + 1][1] - 1
            else:
                until = end
            out.append(_Epoch(e, start, end, why, depth, pp, qp, until))
        self._epochs[key] = out
        return out

    def gaps(self, channel: str, symbol: str) -> list[dict[str, Any]]:
        """Gap rows of (channel, symbol), including ``*`` (all) rows, ordered by start."""
        key = (channel, symbol)
        cached = self._gaps.get(key)
        if cached is not None:
            return cached
        import polars as pl

        lf = self.archive.scan("gaps", root=self.root, raw=True)
        if self.streams is not None:
            lf = lf.filter(pl.col("stream").cast(pl.Utf8).is_in([*self.streams, "*"]))
        df = (lf.filter(pl.col("channel").cast(pl.Utf8).is_in([channel, "*"])
                        & pl.col("symbol").is_in([symbol, "*"]))
              .sort("start_ns").collect())
        out = [{k: (str(v) if isinstance(v, str) else v) for k, v in r.items()}
               for r in df.to_dicts()]
        self._gaps[key] = out
        return out

    def _unreadable(self, channel: str, symbol: str, rows_from: int, epoch_start: int,
                    until: int) -> list[FileProblem]:
        """Unreadable files that may hold rows a book of (channel, symbol) needs: the
        channel's rows in ``[rows_from, until]``, the epoch's ``epochs``/``gaps`` rows in
        ``[epoch_start, until]`` (a gaps file is not pruned by symbol: ``*`` rows apply)."""
        a = self.archive
        return (a.unreadable_files(channel, symbols=[symbol], start=rows_from, end=until,
                                   root=self.root)
                + a.unreadable_files("epochs", symbols=[symbol], start=epoch_start, end=until,
                                     root=self.root)
                + a.unreadable_files("gaps", start=epoch_start, end=until, root=self.root))

    def _gap_at(self, channel: str, symbol: str, t: int) -> dict[str, Any] | None:
        for g in self.gaps(channel, symbol):
            if g["start_ns"] < t and (g["end_ns"] is None or t < g["end_ns"]):
                return g
        return None

    def _gap_after(self, channel: str, symbol: str, t: int) -> dict[str, Any] | None:
        for g in self.gaps(channel, symbol):
            if g["start_ns"] >= t:
                return g
        return None

    # ------------------------------------------------------------------ clocks

    def exchange_cut(self, channel: str, symbol: str, t: int) -> tuple[int | None, str | None]:
        """Receive-clock cut equivalent to exchange time ``t`` (see module docstring).

        Returns ``(cut, None)`` or ``(None, reason)`` when ``t`` is after the last message.
        """
        if self.engine == "core":
            from recorder.query.books_core import READ_ERRORS

            try:
                return self._exchange_cut_read(channel, symbol, t)
            except READ_ERRORS:
                pass  # the reference's own read finds the damaged file
        import polars as pl

        sym = pl.col(_symbol_column(channel)) == symbol
        for hi in (t + _EXCHANGE_WINDOW_NS, None):
            lf = self.archive.scan(channel, symbols=[symbol], end=hi, root=self.root, raw=True)
            cond = sym & (pl.col("ts_ns") > t)
            if hi is not None:
                cond = cond & (pl.col("recv_ns") <= hi)
            first = lf.filter(cond).select(pl.col("recv_ns").min()).collect().item()
            if first is not None:
                return first - 1, None
        last = (self.archive.scan(channel, symbols=[symbol], root=self.root, raw=True)
                .filter(sym)
                .select(pl.col("recv_ns").max(), pl.col("ts_ns").max()).collect())
        last_recv, last_ts = last.row(0)
        return self._after_last(channel, symbol, t, last_recv, last_ts)

    def _exchange_cut_read(self, channel: str, symbol: str,
                           t: int) -> tuple[int | None, str | None]:
        """:meth:`exchange_cut` with the core engine's reader (same answers)."""
        reader = self._reader()
        for hi in (t + _EXCHANGE_WINDOW_NS, None):
            first = reader.first_after(channel, symbol, t, hi)
            if first is not None:
                return first - 1, None
        last_recv, last_ts = reader.last_row(channel, symbol)
        return self._after_last(channel, symbol, t, last_recv, last_ts)

    def _after_last(self, channel: str, symbol: str, t: int, last_recv: int | None,
                    last_ts: int | None) -> tuple[int | None, str | None]:
        """:meth:`exchange_cut` when no message is stamped after ``t``."""
        if last_recv is None:
            return None, f"no {channel} data for this symbol"
        if last_ts is None:
            raise QueryError(f"{channel} rows of {symbol!r} carry no exchange timestamps; "
                             f"use clock='receive'")
        if t > last_ts:
            eps = self.epochs(channel, symbol)
            since = (f" (recorded from {ns_to_iso(eps[0].start_ns)}, receive clock)"
                     if eps else "")
            return None, (f"after the last recorded {channel} message of {symbol} "
                          f"(exchange time {ns_to_iso(last_ts)}){since}")
        return last_recv, None

    # ------------------------------------------------------------------ rebuild

    def book_at(self, symbol: str, t: int, *, channel: Channel = DEFAULT_CHANNEL,
                depth: int | None = None, clock: Clock = "exchange") -> BookAt:
        """The book of ``symbol`` at ``t`` (int ns) on ``clock``; see module docstring."""
        if channel not in CHANNELS:
            raise QueryError(f"channel must be one of {', '.join(CHANNELS)}; got {channel!r}")
        if clock not in ("exchange", "receive"):
            raise QueryError(f"clock must be 'exchange' or 'receive', got {clock!r}")
        if depth is not None and depth < 1:
            raise QueryError("depth must be a positive number of price levels (or None)")
        res = BookAt(symbol=symbol, channel=channel, at_ns=t, clock=clock, valid=False,
                     root=self.root)
        if clock == "exchange":
            cut, why = self.exchange_cut(channel, symbol, t)
            if cut is None:
                res.reason = why
                return res
        else:
            cut = t
        res.cut_recv_ns = cut
        if channel == "futures_book":
            return self._futures_book_at(symbol, cut, depth, res)
        if self.engine == "core":
            from recorder.query.books_core import core_book_at

            answer = core_book_at(self, channel, symbol, cut, depth, dataclasses.replace(res))
            if answer is not None:
                return answer
        state = self._state_at(channel, symbol, cut, res)
        if state is None:
            return res
        book = state
        res.valid = True
        res.book = book
        res.checksum = book.checksum()
        res.checksum_ok = (None if res.exchange_checksum is None
                           else res.checksum == res.exchange_checksum)
        res.price_precision = book.price_precision
        res.qty_precision = book.qty_precision
        res.depth = book.depth
        if channel == "book":
            res.bids = [(i + 1, p, q) for i, (p, q) in enumerate(book.levels("bid", depth))]
            res.asks = [(i + 1, p, q) for i, (p, q) in enumerate(book.levels("ask", depth))]
        else:
            assert isinstance(book, L3Book)
            for name, out in (("bid", res.bids), ("ask", res.asks)):
                for lvl, (price, _) in enumerate(book.levels(name, depth)):  # type: ignore[arg-type]
                    ahead = 0
                    for q, o in enumerate(book.level_orders(name, price)):  # type: ignore[arg-type]
                        out.append((lvl + 1, q + 1, o.order_id, o.price, o.qty, o.ts_ns, ahead))
                        ahead += o.qty
        return res

    def _epoch_for(self, channel: str, symbol: str, cut: int,
                   res: BookAt) -> _Epoch | None:
        every = self.epochs(channel, symbol)
        epochs = [e for e in every if e.start_ns <= cut]
        gap = self._gap_at(channel, symbol, cut)
        if not epochs:
            if every:
                res.data_start_ns, res.data_end_ns = every[0].start_ns, every[-1].end_ns
                res.reason = _outside(channel, symbol, cut, res.data_start_ns, res.data_end_ns)
            else:
                res.reason = f"no {channel} epoch of {symbol} was recorded"
            res.gap = gap
            return None
        ep = epochs[-1]
        if cut > ep.valid_until:
            res.epoch = ep.epoch
            res.gap = gap or self._gap_after(channel, symbol, ep.end_ns)
            if ep.end_reason in _HALT and cut >= ep.end_ns:
                res.reason = (f"inside a gap: epoch {ep.epoch} ended by {ep.end_reason} at "
                              f"{ns_to_iso(ep.end_ns)}")
            else:
                res.reason = (f"not covered: epoch {ep.epoch} ended ({ep.end_reason}) at "
                              f"{ns_to_iso(ep.end_ns)}")
            if ep is every[-1] and cut > ep.end_ns:
                res.data_start_ns, res.data_end_ns = every[0].start_ns, ep.end_ns
                res.reason += "; " + _outside(channel, symbol, cut, every[0].start_ns,
                                              ep.end_ns)
            return None
        if gap is not None:
            res.epoch = ep.epoch
            res.gap = gap
            res.reason = f"inside a gap ({gap['cause']})"
            return None
        return ep

    def _checkpoint(self, channel: str, symbol: str, ep: _Epoch,
                    cut: int) -> tuple[int, str, int | None, bytes] | None:
        """The epoch's latest checkpoint at or before ``cut``: ``(recv_ns, reason, checksum,
        book blob)``, or None.

        Looked for in a window of :data:`_CP_WINDOW_NS` before ``cut`` first, widened
        :data:`_CP_WIDEN` times while it holds none, up to the epoch's start: a cut reads the
        checkpoint files near it, not every file of the epoch (a query's cost must not grow
        with the history before it)."""
        import polars as pl

        span = _CP_WINDOW_NS
        while True:
            lo = max(ep.start_ns, cut - span)
            df = (self.archive.scan("checkpoints", symbols=[symbol], start=lo, end=cut,
                                    root=self.root, raw=True)
                  .filter((pl.col("channel").cast(pl.Utf8) == channel)
                          & (pl.col("symbol").cast(pl.Utf8) == symbol)
                          & (pl.col("epoch") == ep.epoch)
                          & (pl.col("recv_ns") <= cut))
                  .select(["recv_ns", "reason", "checksum", "epoch_message"])
                  .sort(["recv_ns", "epoch_message"]).tail(1).collect())
            if df.height or lo <= ep.start_ns:
                break
            span *= _CP_WIDEN
        if df.height == 0:
            return None
        recv, reason, ck, msg = df.row(0)
        blob = (self.archive.scan("checkpoints", symbols=[symbol], start=recv, end=recv,
                                  root=self.root, raw=True)
                .filter((pl.col("channel").cast(pl.Utf8) == channel)
                        & (pl.col("symbol").cast(pl.Utf8) == symbol)
                        & (pl.col("epoch") == ep.epoch) & (pl.col("recv_ns") == recv)
                        & (pl.col("epoch_message") == msg))
                .select("book").collect().item(0, 0))
        return recv, str(reason), ck, blob

    def _futures_book_at(self, symbol: str, cut: int, depth: int | None,
                         res: BookAt) -> BookAt:
        """:meth:`book_at` for ``futures_book``: checkpoint + deltas with a higher ``seq``."""
        ep = self._epoch_for("futures_book", symbol, cut, res)
        if ep is None:
            return res
        res.epoch = ep.epoch
        cp = self._futures_checkpoint(symbol, ep, cut)
        if self.engine == "core":
            from recorder.query.books_core import core_futures_book_at

            if core_futures_book_at(self._reader(), symbol, ep.epoch, ep.start_ns, cp, cut,
                                    depth, res):
                return res
        try:
            if cp is None:  # no checkpoint: the snapshot rows of the epoch, then its deltas
                book, since, after = None, ep.start_ns, None
            else:
                recv, reason, _, blob = cp
                state = msgspec.msgpack.decode(blob, type=FuturesBookCheckpoint)
                book, since, after = FuturesBook.restore(state), recv, state.seq
                res.checkpoint_recv_ns, res.checkpoint_reason = recv, reason
                res.last_message_recv_ns = recv
                res.last_message_ts_ns = (None if state.timestamp_ms is None
                                          else state.timestamp_ms * 1_000_000)
            d = self._futures_rows(symbol, ep.epoch, since, cut)
            snap: dict[str, list[tuple[str, str]]] = {"bids": [], "asks": []}
            snap_seq: int | None = None
            n = 0
            for i, recv in enumerate(d["recv_ns"]):
                price = _value(d["price"][i], d["price_scale"][i], d["overflow"][i], "price")
                qty = _value(d["qty"][i], d["qty_scale"][i], d["overflow"][i], "qty")
                seq, ts = d["seq"][i], d["ts_ns"][i]
                if d["event"][i] == 0:  # snapshot level (only read without a checkpoint)
                    if book is None and Decimal(qty) != 0:
                        snap["bids" if d["side"][i] == 0 else "asks"].append((price, qty))
                    snap_seq = seq
                    continue
                if book is None:
                    book = FuturesBook.restore(FuturesBookCheckpoint(
                        product_id=symbol, seq=snap_seq, timestamp_ms=None, in_sync=True,
                        bids=tuple(snap["bids"]), asks=tuple(snap["asks"])))
                    n += 1
                if after is not None and seq <= after:
                    continue  # already in the checkpoint
                book.apply_level("buy" if d["side"][i] == 0 else "sell", price, qty, seq,
                                 None if ts is None else ts // 1_000_000)
                n += 1
                res.last_message_recv_ns, res.last_message_ts_ns = recv, ts
            if book is None and snap_seq is not None:
                book = FuturesBook.restore(FuturesBookCheckpoint(
                    product_id=symbol, seq=snap_seq, timestamp_ms=None, in_sync=True,
                    bids=tuple(snap["bids"]), asks=tuple(snap["asks"])))
                n += 1
        except (ProtocolError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise QueryError(f"futures book of {symbol} cannot be rebuilt from the archive "
                             f"({type(exc).__name__}: {exc}); run recorder verify") from None
        res.messages_replayed = n
        if book is None:
            res.reason = "no snapshot applied before this time"
            return res
        futures_answer(res, book.seq,
                       [(token_to_text(p), token_to_text(q)) for p, q in book.bids(depth)],
                       [(token_to_text(p), token_to_text(q)) for p, q in book.asks(depth)])
        return res

    def _reader(self) -> RowReader:
        """The core engine's Parquet reader (made on first use)."""
        if self._row_reader is None:
            from recorder.query.books_core import RowReader

            self._row_reader = RowReader(self.archive, self.root)
        return self._row_reader

    def _futures_checkpoint(self, symbol: str, ep: _Epoch,
                            cut: int) -> tuple[int, str, int | None, bytes] | None:
        """:meth:`_checkpoint` of ``futures_book``; the core engine reads it with its cached
        reader (a failed read is retried by the reference's own read)."""
        if self.engine == "core":
            from recorder.query.books_core import READ_ERRORS

            try:
                return self._reader().checkpoint("futures_book", symbol, ep.epoch, ep.start_ns,
                                                 cut)
            except READ_ERRORS:
                pass
        return self._checkpoint("futures_book", symbol, ep, cut)

    def _futures_rows(self, symbol: str, epoch: int, lo: int, hi: int) -> dict[str, list[Any]]:
        """:meth:`_rows` of ``futures_book``, read by the core engine's reader when it is the
        engine (the replay itself stays in the reference's :class:`FuturesBook`)."""
        if self.engine == "core":
            from recorder.query.books_core import READ_ERRORS

            cols = ["recv_ns", "ts_ns", "event", "seq", "side", "price", "qty", "price_scale",
                    "qty_scale", "overflow"]
            try:
                table = self._reader().rows("futures_book", symbol, epoch, lo, hi, cols)
                return {c: table.column(c).to_pylist() for c in cols}
            except READ_ERRORS:
                pass
        return self._rows("futures_book", symbol, epoch, lo, hi)

    def _rows(self, channel: str, symbol: str, epoch: int, lo: int,
              hi: int) -> dict[str, list[Any]]:
        """Event rows of one epoch with ``lo <= recv_ns <= hi``, in wire (file) order."""
        import polars as pl

        if channel == "futures_book":
            cols = ["recv_ns", "ts_ns", "event", "seq", "side", "price", "qty", "price_scale",
                    "qty_scale", "overflow"]
        else:
            cols = ["recv_ns", "ts_ns", "event", "side", "price", "qty", "price_scale",
                    "qty_scale", "checksum", "overflow"]
        if channel == "level3":
            cols.append("order_id")
        df = (self.archive.scan(channel, symbols=[symbol], start=lo, end=hi, root=self.root,
                                raw=True)
              .filter((pl.col(_symbol_column(channel)) == symbol) & (pl.col("epoch") == epoch)
                      & (pl.col("recv_ns") >= lo) & (pl.col("recv_ns") <= hi))
              .select(cols)
              # files are in commit order; a compacted day can be listed after later days.
              # recv_ns never decreases within an epoch, and the stable sort keeps the wire
              # order of rows sharing a recv_ns (one message, or messages of one frame).
              .sort("recv_ns", maintain_order=True)
              .collect())
        return {c: df.get_column(c).to_list() for c in cols}

    def _messages(self, channel: str,
                  d: dict[str, list[Any]]) -> Iterator[tuple[Any, ...]]:
        """Group rows into messages: ``(is_snapshot, bids, asks, checksum, recv, ts, changes)``."""
        l3 = channel == "level3"
        bids: list[Any] = []
        asks: list[Any] = []
        changes: list[tuple[Any, ...]] = []
        ts_max: int | None = None
        snap = False
        recv_col, ts_col, ev_col, side_col = d["recv_ns"], d["ts_ns"], d["event"], d["side"]
        p_col, q_col, ps_col, qs_col = d["price"], d["qty"], d["price_scale"], d["qty_scale"]
        ck_col, ov_col = d["checksum"], d["overflow"]
        oid_col = d.get("order_id")
        for i in range(len(recv_col)):
            pu, qu = p_col[i], q_col[i]
            if pu is None or qu is None:
                price = _value(pu, ps_col[i], ov_col[i], "price")
                qty = _value(qu, qs_col[i], ov_col[i], "qty")
            else:
                price = units_to_text(pu, ps_col[i])
                qty = units_to_text(qu, qs_col[i])
            ev = ev_col[i]
            side = side_col[i]
            ts = ts_col[i]
            if ts is not None and (ts_max is None or ts > ts_max):
                ts_max = ts
            if ev == _SNAPSHOT:
                snap = True
            if l3:
                oid = oid_col[i]  # type: ignore[index]
                name = _L3_EVENTS.get(ev)
                item: Any = _Ord(oid, price, qty, name, ts)
                changes.append(("bid" if side == 0 else "ask", name or "snapshot", oid, pu, qu,
                                ts))
            else:
                item = _Lvl(price, qty)
                changes.append(("bid" if side == 0 else "ask", pu, qu))
            (bids if side == 0 else asks).append(item)
            ck = ck_col[i]
            if ck is not None or (i + 1 < len(recv_col) and recv_col[i + 1] != recv_col[i]):
                # a message ends at its checksum row, or where recv_ns changes (its rows
                # share the frame's receive time; FIX messages carry no checksum)
                yield snap, bids, asks, ck, recv_col[i], ts_max, changes
                bids, asks, changes, ts_max, snap = [], [], [], None, False
        if bids or asks:
            yield snap, bids, asks, None, recv_col[-1], ts_max, changes

    def _restore(self, channel: str, symbol: str, ep: _Epoch,
                 cut: int, res: BookAt) -> tuple[L2Book | L3Book, int, bool] | None:
        """Book at the nearest checkpoint <= cut (or an empty book before the snapshot)."""
        cp = self._checkpoint(channel, symbol, ep, cut)
        if cp is None:  # no checkpoint (e.g. a failed one): replay from the snapshot rows
            book: L2Book | L3Book
            if channel == "book":
                book = _l2_book(symbol, ep)
            else:
                book = L3Book(symbol, ep.depth or 10, ep.pp or 0, ep.qp or 0)
            return book, ep.start_ns, False
        recv, reason, ck, blob = cp
        state = decode_checkpoint(blob)
        if channel == "book":
            assert isinstance(state, L2Checkpoint)
            book = L2Book.restore(state)
        else:
            assert isinstance(state, L3Checkpoint)
            book = L3Book.restore(state)
        res.checkpoint_recv_ns = recv
        res.checkpoint_reason = reason
        res.exchange_checksum = ck
        return book, recv, True

    def _state_at(self, channel: str, symbol: str, cut: int,
                  res: BookAt) -> L2Book | L3Book | None:
        ep = self._epoch_for(channel, symbol, cut, res)
        if ep is None:
            return None
        res.epoch = ep.epoch
        restored = self._restore(channel, symbol, ep, cut, res)
        if restored is None:
            return None
        book, lo, skip_first = restored
        bad = self._unreadable(channel, symbol, lo, ep.start_ns, cut)
        if bad:
            res.reason = _unreadable_reason(bad)
            res.gap = _unreadable_gap(bad[0], channel, symbol)
            return None
        rows = self._rows(channel, symbol, ep.epoch, lo, cut)
        n = 0
        for snap, bids, asks, ck, recv, ts, _ in self._messages(channel, rows):
            if skip_first:  # the checkpoint is the book after the first message at its recv_ns
                skip_first = False
                if ck is not None and res.exchange_checksum is not None \
                        and ck != res.exchange_checksum:
                    raise QueryError(f"checkpoint at {recv} does not match the message it "
                                     f"follows (archive inconsistent; run recorder verify)")
                res.last_message_recv_ns, res.last_message_ts_ns = recv, ts
                continue
            if snap:
                book.snapshot(bids, asks, ck)
            else:
                book.update(bids, asks, ck)
            n += 1
            res.last_message_recv_ns, res.last_message_ts_ns = recv, ts
            if ck is not None:
                res.exchange_checksum = ck
        res.messages_replayed = n
        if not book.ready:
            res.reason = "no snapshot applied before this time"
            return None
        return book

    # ------------------------------------------------------------------ replay

    def replay(self, symbol: str, start: int, end: int, *, channel: Channel = DEFAULT_CHANNEL,
               clock: Clock = "exchange") -> Iterator[BookEvent | ReplayGap]:
        """Every message of (channel, symbol) between ``start`` and ``end`` (on ``clock``).

        Starts from the book at ``start`` (not yielded; use :meth:`book_at`), then yields a
        :class:`BookEvent` per message applied, and a :class:`ReplayGap` wherever no valid book
        exists (before the first epoch, after a failed epoch, between epochs...).
        Spot channels only (``book``, ``level3``); futures books are rebuilt by
        :meth:`book_at`.
        """
        if channel not in ("book", "level3"):
            raise QueryError(f"replay supports the book and level3 channels, not {channel!r} "
                             f"(rebuild a futures book at a time with book_at)")
        if clock == "exchange":
            lo, _ = self.exchange_cut(channel, symbol, start)
            hi, _ = self.exchange_cut(channel, symbol, end)
            if hi is None:  # after the last message: replay to the end of the data
                hi = max((e.end_ns for e in self.epochs(channel, symbol)), default=start)
            if lo is None:
                return
        else:
            lo, hi = start, end
        epochs = [e for e in self.epochs(channel, symbol) if e.valid_until >= lo
                  and e.start_ns <= hi]
        cursor = lo
        for ep in epochs:
            if ep.start_ns > cursor:
                yield ReplayGap(cursor, ep.start_ns, "no valid book",
                                self._gap_at(channel, symbol, ep.start_ns - 1)
                                or self._gap_after(channel, symbol, cursor), self.root)
            first = max(lo, ep.start_ns)
            res = BookAt(symbol=symbol, channel=channel, at_ns=first, clock="receive",
                         valid=False)
            if first == ep.start_ns:
                book: L2Book | L3Book = (
                    _l2_book(symbol, ep) if channel == "book"
                    else L3Book(symbol, ep.depth or 10, ep.pp or 0, ep.qp or 0))
                since, skip_first = ep.start_ns, False
            else:
                restored = self._restore(channel, symbol, ep, first, res)
                if restored is None:
                    continue
                book, since, skip_first = restored
            last = min(hi, ep.valid_until)
            bad = self._unreadable(channel, symbol, since, ep.start_ns, last)
            # rows before a damaged file of the channel are all in readable files
            stop = last if not bad else min(
                (p.min_time if p.dataset == channel and p.min_time is not None else since)
                for p in bad) - 1
            rows = self._rows(channel, symbol, ep.epoch, since, stop)
            for snap, bids, asks, ck, recv, ts, changes in self._messages(channel, rows):
                if skip_first:
                    skip_first = False
                    continue
                r = book.snapshot(bids, asks, ck) if snap else book.update(bids, asks, ck)
                if recv > lo or (recv == lo and first == ep.start_ns):
                    yield BookEvent(recv, ts, ep.epoch, "snapshot" if snap else "update",
                                    changes, ck, r.computed, book, self.root)
            if bad:
                yield ReplayGap(max(first, stop + 1), last + 1, _unreadable_reason(bad),
                                _unreadable_gap(bad[0], channel, symbol), self.root)
            cursor = ep.valid_until + 1
        if cursor <= hi and epochs and cursor > lo:
            gap = self._gap_at(channel, symbol, cursor) or self._gap_after(channel, symbol,
                                                                            cursor - 1)
            if gap is not None:
                yield ReplayGap(cursor, gap.get("end_ns"), f"gap ({gap['cause']})", gap,
                                self.root)


def _unreadable_reason(problems: list[FileProblem]) -> str:
    p = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return (f"unreadable file {p.path} ({p.dataset}: {p.reason}){more}; repair: {p.fix}")


def _unreadable_gap(p: FileProblem, channel: str, symbol: str) -> dict[str, Any]:
    """A gap-row-shaped description of an unreadable file's time range."""
    return {"start_ns": p.min_time, "end_ns": None if p.max_time is None else p.max_time + 1,
            "stream": "*", "channel": channel, "symbol": symbol, "conn_id": 0,
            "cause": UNREADABLE_CAUSE, "missing": None, "missing_count": p.rows,
            "healed_by": "none", "detail": f"{p.path}: {p.reason}; repair: {p.fix}"}


def _covered(lo: int, hi: int, intervals: list[tuple[int, int]]) -> bool:
    """True when ``[lo, hi]`` lies inside the union of the inclusive ``intervals``."""
    cursor = lo
    for a, b in sorted(intervals):
        if a > cursor:
            break
        cursor = max(cursor, b + 1)
        if cursor > hi:
            return True
    return cursor > hi


class BookRouter:
    """Book questions over a multi-root archive, each answered by the root that recorded it.

    One :class:`BookEngine` per root of ``archive.roots`` (all with ``engine``). For
    (channel, symbol):

    * :meth:`book_at` asks the roots holding epochs of it, the one with the latest epoch
      starting at or before the time first, and returns the first valid answer (or, when none
      is valid, the first root's explanation). A symbol no root recorded is answered by the
      first root ("no epoch ...").
    * :meth:`replay` merges the holders' replays in receive order; a :class:`ReplayGap` of one
      root is dropped when other roots' epochs cover that whole stretch (a pair that moved
      between workers replays as one continuous stream). A pair recorded by several roots *at
      the same time* (redundant hosts) yields each root's messages, interleaved: filter on
      ``BookEvent.root`` to follow one book.
    * :meth:`epochs` / :meth:`gaps` are the holders' lists merged by start time.
    """

    def __init__(self, archive: Archive, *, engine: Engine = "core") -> None:
        self.archive = archive
        self.engines: list[BookEngine] = [BookEngine(archive, root, engine=engine)
                                          for root in archive.roots]

    def holders(self, channel: str, symbol: str) -> list[BookEngine]:
        """Engines of the roots with at least one epoch of (channel, symbol)."""
        return [e for e in self.engines if e.epochs(channel, symbol)]

    def epochs(self, channel: str, symbol: str) -> list[_Epoch]:
        """Every root's epochs of (channel, symbol), ordered by start."""
        return sorted((ep for e in self.engines for ep in e.epochs(channel, symbol)),
                      key=lambda ep: (ep.start_ns, ep.epoch))

    def gaps(self, channel: str, symbol: str) -> list[dict[str, Any]]:
        """Every root's gap rows of (channel, symbol) and ``*``, ordered by start."""
        return sorted((g for e in self.engines for g in e.gaps(channel, symbol)),
                      key=lambda g: g["start_ns"])

    def symbols(self, channel: str) -> list[str]:
        """Every symbol with at least one epoch of ``channel`` in any root, sorted."""
        import polars as pl

        found: set[str] = set()
        for root in self.archive.roots:
            df = (self.archive.scan("epochs", root=root, raw=True)
                  .filter(pl.col("channel").cast(pl.Utf8) == channel)
                  .select(pl.col("symbol").cast(pl.Utf8).unique()).collect())
            found.update(df.get_column("symbol").to_list())
        return sorted(found)

    def unknown(self, symbol: str, t: int, channel: str, clock: str) -> BookAt:
        """The answer for a (channel, symbol) no root recorded: the channel's known symbols,
        the closest ones, and the channels ``symbol`` was recorded on."""
        known = self.symbols(channel)
        close = difflib.get_close_matches(symbol, known, n=5, cutoff=0.75)
        if not close:  # case or separator slips: BTCUSD, btc/usd, pf_xbtusd
            folded = {k.upper().replace("/", "").replace("_", ""): k for k in known}
            hit = folded.get(symbol.upper().replace("/", "").replace("_", ""))
            close = [hit] if hit else []
        others = [c for c in CHANNELS if c != channel and self.holders(c, symbol)]
        parts = [f"unknown symbol {symbol} for {channel}: no epoch recorded"]
        if others:
            parts.append(f"it was recorded on {', '.join(others)} (use --channel)")
        if close:
            parts.append(f"did you mean {', '.join(close)}?")
        if known:
            listed = ", ".join(known[:_KNOWN_LISTED])
            more = f" and {len(known) - _KNOWN_LISTED} more" if len(known) > _KNOWN_LISTED else ""
            parts.append(f"known {channel} symbols: {listed}{more}")
        else:
            parts.append(f"this archive has no {channel} data")
        return BookAt(symbol=symbol, channel=channel, at_ns=t, clock=clock, valid=False,
                      reason="; ".join(parts), known_symbols=known[:_KNOWN_LISTED],
                      close_matches=close, other_channels=others)

    def book_at(self, symbol: str, t: int, *, channel: Channel = DEFAULT_CHANNEL,
                depth: int | None = None, clock: Clock = "exchange") -> BookAt:
        """The book of ``symbol`` at ``t`` from the root whose epoch covers it (see class)."""
        holders = self.holders(channel, symbol) if channel in CHANNELS else []
        if not holders:
            if channel in CHANNELS and clock in ("exchange", "receive") and (
                    depth is None or depth >= 1):
                return self.unknown(symbol, t, channel, clock)
            return self.engines[0].book_at(symbol, t, channel=channel, depth=depth, clock=clock)

        def latest_start(e: BookEngine) -> int:
            return max((ep.start_ns for ep in e.epochs(channel, symbol) if ep.start_ns <= t),
                       default=-1)

        first: BookAt | None = None
        for engine in sorted(holders, key=latest_start, reverse=True):
            res = engine.book_at(symbol, t, channel=channel, depth=depth, clock=clock)
            if res.valid:
                return res
            first = first or res
        assert first is not None
        if len(holders) > 1 and first.data_start_ns is not None:  # the range over every root
            eps = self.epochs(channel, symbol)
            start, end = eps[0].start_ns, max(ep.end_ns for ep in eps)
            cut = first.cut_recv_ns if first.cut_recv_ns is not None else t
            if not start <= cut <= end:
                first.data_start_ns, first.data_end_ns = start, end
                first.reason = _outside(channel, symbol, cut, start, end)
        return first

    def replay(self, symbol: str, start: int, end: int, *, channel: Channel = DEFAULT_CHANNEL,
               clock: Clock = "exchange") -> Iterator[BookEvent | ReplayGap]:
        """Messages of (channel, symbol) between ``start`` and ``end`` over the roots that
        recorded it (see class)."""
        holders = self.holders(channel, symbol)
        if len(holders) <= 1:
            engine = holders[0] if holders else self.engines[0]
            yield from engine.replay(symbol, start, end, channel=channel, clock=clock)
            return
        cover = {id(e): [(ep.start_ns, ep.valid_until) for ep in e.epochs(channel, symbol)]
                 for e in holders}

        def tagged(e: BookEngine) -> Iterator[BookEvent | ReplayGap]:
            others = [iv for e2 in holders if e2 is not e for iv in cover[id(e2)]]
            for item in e.replay(symbol, start, end, channel=channel, clock=clock):
                if isinstance(item, ReplayGap):
                    hi = item.end_ns - 1 if item.end_ns is not None else end
                    if _covered(item.start_ns, max(item.start_ns, hi), others):
                        continue
                yield item

        def key(item: BookEvent | ReplayGap) -> int:
            return item.recv_ns if isinstance(item, BookEvent) else item.start_ns

        # heapq.merge pulls the next item of a replay only after yielding its previous one,
        # so each root's live `book` is still "the book after this message" when seen.
        yield from heapq.merge(*(tagged(e) for e in holders), key=key)
