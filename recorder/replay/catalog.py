"""What a recorded archive can serve in a replay window, read once at start-up.

* books (``book``, ``level3``, ``futures_book``): the covered intervals of every epoch
  (:mod:`recorder.replay.coverage`) with the depth each was recorded at;
* ``trade`` symbols, ``ohlc`` (symbol, interval) pairs, futures ``trade`` products and futures
  ``ticker`` products recorded in the window (from their datasets);
* the instruments (``instruments`` dataset: every pair and asset with its recorded wire
  attributes, valid from the row's receive time), which give the replay its pairs, precisions
  and the ``instrument`` channel.

One scan per dataset and root (manifest-pruned to the window), whatever the number of symbols.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from recorder.replay.coverage import Coverage, EpochRow, Interval, epoch_intervals, subtract_gaps

if TYPE_CHECKING:
    from recorder.query.api import Archive

__all__ = ["BOOK_CHANNELS", "Catalog", "InstrumentRow", "load_catalog"]

#: Channels whose frames are gated by coverage (they need a valid book).
BOOK_CHANNELS = ("book", "level3", "futures_book")


@dataclass(frozen=True, slots=True)
class InstrumentRow:
    """One ``instruments`` row: valid from ``recv_ns`` until the next row of its symbol."""

    recv_ns: int
    kind: str  #: pair or asset
    symbol: str
    change: str  #: listed, changed, delisted
    status: str
    attributes: str  #: the wire object as JSON (exact tokens)


@dataclass
class Catalog:
    """See module docstring. ``start_ns``/``end_ns``: the receive-time window served
    (``start_ns`` exclusive: the state at ``start_ns`` is the starting point)."""

    start_ns: int
    end_ns: int
    coverage: Coverage
    trades: set[str] = field(default_factory=set)
    ohlc: set[tuple[str, int]] = field(default_factory=set)
    futures_trades: set[str] = field(default_factory=set)
    futures_tickers: set[str] = field(default_factory=set)
    instruments: list[InstrumentRow] = field(default_factory=list)

    def book_depths(self, channel: str, symbol: str) -> set[int]:
        """Depths ``channel`` (book/level3) of ``symbol`` was recorded at in the window."""
        return {d for d in self.coverage.depths(channel, symbol) if d is not None}

    def has_futures_book(self, product_id: str) -> bool:
        return bool(self.coverage.intervals("futures_book", product_id))

    def instruments_at(self, t: int) -> tuple[list[InstrumentRow], list[InstrumentRow]]:
        """``(assets, pairs)`` valid at receive time ``t`` (delisted ones left out), in
        first-seen order."""
        latest: dict[tuple[str, str], InstrumentRow] = {}
        for row in self.instruments:
            if row.recv_ns > t:
                break
            latest[(row.kind, row.symbol)] = row
        assets = [r for (k, _), r in latest.items() if k == "asset" and r.change != "delisted"]
        pairs = [r for (k, _), r in latest.items() if k == "pair" and r.change != "delisted"]
        return assets, pairs

    def symbols(self) -> set[str]:
        """Every spot symbol and futures product the window holds."""
        out = {s for _, s in self.coverage.books()} | self.trades | {s for s, _ in self.ohlc}
        return out | self.futures_trades | self.futures_tickers


def _window(archive: Archive) -> tuple[int, int] | None:
    """Earliest and latest receive time of the archive's live files (manifest times of the
    datasets whose time column is the receive time)."""
    from recorder.archive.store import ArchiveStore as Store

    lo: int | None = None
    hi: int | None = None
    received = {name for name, sch in archive.schemas.items() if sch.time_column == "recv_ns"}
    for root in archive.roots:
        for f in Store(root).state.files:
            if f.dataset not in received:
                continue
            if f.min_time is not None:
                lo = f.min_time if lo is None else min(lo, f.min_time)
            if f.max_time is not None:
                hi = f.max_time if hi is None else max(hi, f.max_time)
    return None if lo is None or hi is None else (lo, hi)


def _book_coverage(archive: Archive, lo: int, hi: int,
                   symbols: set[str] | None) -> dict[tuple[str, str], list[Interval]]:
    import polars as pl

    out: dict[tuple[str, str], list[Interval]] = defaultdict(list)
    for index, root in enumerate(archive.roots):
        df = (archive.scan("epochs", root=root, raw=True)
              .with_columns(pl.col("channel").cast(pl.Utf8), pl.col("symbol").cast(pl.Utf8),
                            pl.col("end_reason").cast(pl.Utf8))
              .filter(pl.col("channel").is_in(list(BOOK_CHANNELS)))
              .sort(["epoch", "end_ns", "messages"])
              .group_by(["channel", "symbol", "epoch"], maintain_order=True).last()
              .select(["channel", "symbol", "epoch", "start_ns", "end_ns", "end_reason",
                       "depth", "conn_id"])
              .collect())
        if symbols is not None:
            df = df.filter(pl.col("symbol").is_in(sorted(symbols)))
        rows: dict[tuple[str, str], list[EpochRow]] = defaultdict(list)
        for ch, sym, ep, start, end, why, depth, conn in df.iter_rows():
            rows[(ch, sym)].append(EpochRow(ep, start, end, why, depth, conn))
        if not rows:
            continue
        gaps = (archive.scan("gaps", root=root, raw=True)
                .with_columns(pl.col("channel").cast(pl.Utf8), pl.col("symbol").cast(pl.Utf8))
                .select(["channel", "symbol", "start_ns", "end_ns"]).collect())
        by_key: dict[tuple[str, str], list[tuple[int, int | None]]] = defaultdict(list)
        for ch, sym, g_start, g_end in gaps.iter_rows():
            by_key[(ch, sym)].append((g_start, g_end))
        for (ch, sym), epochs in rows.items():
            holes = by_key[(ch, sym)] + by_key[(ch, "*")] + by_key[("*", sym)] + by_key[("*", "*")]
            for iv in epoch_intervals(epochs, index):
                for piece in subtract_gaps(iv, holes):
                    if piece.end_ns > lo and piece.start_ns <= hi:
                        out[(ch, sym)].append(piece)
    return out


def _distinct(archive: Archive, dataset: str, column: str, lo: int, hi: int,
              extra: tuple[str, ...] = (), sources: tuple[int, ...] | None = None) -> list[tuple]:
    import polars as pl

    lf = archive.scan(dataset, start=lo, end=hi, raw=True)
    if sources is not None:
        lf = lf.filter(pl.col("source").is_in(list(sources)))
    df = (lf.select([pl.col(column).cast(pl.Utf8), *[pl.col(c) for c in extra]])
          .unique().collect())
    return list(df.iter_rows())


def _instruments(archive: Archive, hi: int) -> list[InstrumentRow]:
    import polars as pl

    df = (archive.scan("instruments", end=hi, raw=True)
          .select(["recv_ns", pl.col("kind").cast(pl.Utf8), "symbol",
                   pl.col("change").cast(pl.Utf8), pl.col("status").cast(pl.Utf8), "attributes"])
          .sort("recv_ns", maintain_order=True).collect())
    return [InstrumentRow(*r) for r in df.iter_rows()]


def load_catalog(archive: Archive, *, start_ns: int | None, end_ns: int | None,
                 symbols: set[str] | None = None) -> Catalog:
    """The catalog of ``archive`` for the window ``(start_ns, end_ns]`` (None: from the
    archive's first to its last recorded receive time); ``symbols`` narrows it (spot symbols
    and futures product ids, as on the wire). Raises ``ValueError`` when the archive holds no
    data or the window is empty."""
    found = _window(archive)
    if found is None:
        raise ValueError("the archive holds no committed data")
    first, last = found
    lo = first - 1 if start_ns is None else start_ns
    hi = last if end_ns is None else end_ns
    if hi <= lo:
        raise ValueError("the replay window is empty (--to is not after --from)")
    coverage = Coverage(_book_coverage(archive, lo, hi, symbols))

    def keep(values: set[Any]) -> set[Any]:
        if symbols is None:
            return values
        return {v for v in values if (v[0] if isinstance(v, tuple) else v) in symbols}

    return Catalog(
        start_ns=lo, end_ns=hi, coverage=coverage,
        trades=keep({r[0] for r in _distinct(archive, "trades", "symbol", lo, hi, sources=(0, 1))}),
        ohlc=keep({(r[0], int(r[1])) for r in _distinct(archive, "ohlc", "symbol", lo, hi,
                                                         ("interval",), sources=(0, 1))}),
        futures_trades=keep({r[0] for r in _distinct(archive, "futures_trades", "product_id",
                                                      lo, hi, sources=(0, 1))}),
        futures_tickers=keep({r[0] for r in _distinct(archive, "futures_ticker", "product_id",
                                                       lo, hi)}),
        instruments=_instruments(archive, hi),
    )
