"""State at a replay time, rebuilt from the archive alone, as Kraken snapshot frames.

* Spot books (``book``, ``level3``): :meth:`recorder.query.books.BookEngine.book_at` on the
  receive clock, in the root that recorded the interval (nearest checkpoint + replay of the
  epoch's rows); the snapshot carries the checksum of the rebuilt book by Kraken's algorithm.
  A rebuild from another epoch than the one whose frames will follow is refused (None).
* Futures books: the epoch's latest ``futures_book`` checkpoint at or before the time, then
  the epoch's deltas after it (by ``seq``) up to the time; the snapshot's ``seq`` is the last
  delta applied, so the next recorded delta continues it.
* Trades (spot: the 50 most recent, futures: the 100 most recent), OHLC (the latest recorded
  state of the newest candle) and instruments (every pair and asset valid at the time) from
  their datasets, received at or before the time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import msgspec

from recorder.book.futures import FuturesBook, FuturesBookCheckpoint
from recorder.protocol.numbers import token_to_text, units_to_text
from recorder.replay import render
from recorder.replay.catalog import Catalog
from recorder.replay.coverage import Interval
from recorder.sim.universe import encode_wire

if TYPE_CHECKING:
    from recorder.query.api import Archive
    from recorder.query.books import BookAt

__all__ = ["FUTURES_TRADE_SNAPSHOT", "SPOT_TRADE_SNAPSHOT", "Rebuilder", "wire_object"]

#: Trades in a Spot WS v2 trade snapshot (Kraken: the 50 most recent).
SPOT_TRADE_SNAPSHOT: Final = 50
#: Trades in a Futures trade_snapshot (real captures: 100, newest first).
FUTURES_TRADE_SNAPSHOT: Final = 100
_JSON: Final = msgspec.json.Decoder()
_SIDES: Final = ("buy", "sell")


def wire_object(attributes: str) -> dict[str, Any]:
    """A recorded instrument's wire object from its ``attributes`` JSON: exact number tokens
    kept as text, attributes Kraken did not send (null) left out."""
    obj = _JSON.decode(attributes)
    return {k: v for k, v in obj.items() if v is not None} if isinstance(obj, dict) else {}


def _text(units: int | None, scale: int, overflow: str | None, name: str) -> str:
    if units is None:
        return str(_JSON.decode(overflow or "{}")[name])
    return units_to_text(units, scale)


class Rebuilder:
    """Snapshot frames at a receive time, from one :class:`~recorder.query.api.Archive`."""

    def __init__(self, archive: Archive, catalog: Catalog) -> None:
        self.archive = archive
        self.catalog = catalog

    # ------------------------------------------------------------------ books

    def book_at(self, channel: str, symbol: str, interval: Interval, cut: int) -> BookAt | None:
        """The spot book (``book``/``level3``) at ``cut`` from ``interval``'s root and epoch,
        or None when the archive has no valid book there."""
        engine = self.archive.books.engines[interval.root]
        res = engine.book_at(symbol, cut, channel=channel, clock="receive")  # type: ignore[arg-type]
        if not res.valid or res.epoch != interval.epoch or res.book is None:
            return None
        return res

    def spot_book(self, channel: str, symbol: str, interval: Interval, cut: int) -> str | None:
        """A ``book``/``level3`` snapshot frame at ``cut`` (see :meth:`book_at`)."""
        res = self.book_at(channel, symbol, interval, cut)
        if res is None:
            return None
        book: Any = res.book
        pp, qp = book.price_precision, book.qty_precision
        if channel == "book":
            return render.book_snapshot(symbol, book.levels("bid"), book.levels("ask"),
                                        price_precision=pp, qty_precision=qp,
                                        checksum=book.checksum(),
                                        ts_ns=res.last_message_ts_ns)
        sides = []
        for side in ("bid", "ask"):
            sides.append([render.L3Order(o.order_id, o.price, o.qty, o.ts_ns)
                          for price, _ in book.levels(side)
                          for o in book.level_orders(side, price)])
        return render.level3_snapshot(symbol, sides[0], sides[1], price_precision=pp,
                                      qty_precision=qp, checksum=book.checksum(),
                                      ts_ns=res.last_message_ts_ns)

    def futures_book(self, product_id: str, interval: Interval, cut: int) -> FuturesBook | None:
        """The futures book of ``interval``'s epoch after every delta received at or before
        ``cut`` (None: no checkpoint of the epoch at or before ``cut``)."""
        import polars as pl

        root = self.archive.roots[interval.root]
        cps = (self.archive.scan("checkpoints", symbols=[product_id], start=interval.start_ns,
                                 end=cut, root=root, raw=True)
               .filter((pl.col("channel").cast(pl.Utf8) == "futures_book")
                       & (pl.col("symbol").cast(pl.Utf8) == product_id)
                       & (pl.col("epoch") == interval.epoch))
               .sort(["recv_ns", "epoch_message"]).tail(1)
               .select(["recv_ns", "book"]).collect())
        if cps.height == 0:
            return None
        cp_recv, blob = cps.row(0)
        try:
            book = FuturesBook.restore(msgspec.msgpack.decode(blob, type=FuturesBookCheckpoint))
        except Exception:  # noqa: BLE001 - a corrupt checkpoint is "no valid book", not a crash
            return None
        if book.seq is None:
            return None
        rows = (self.archive.scan("futures_book", symbols=[product_id], start=cp_recv, end=cut,
                                  root=root, raw=True)
                .filter((pl.col("product_id").cast(pl.Utf8) == product_id)
                        & (pl.col("epoch") == interval.epoch) & (pl.col("event") == 1)
                        & (pl.col("seq") > book.seq) & (pl.col("recv_ns") <= cut))
                .sort("seq")
                .select(["seq", "side", "price", "qty", "price_scale", "qty_scale", "overflow",
                         "ts_ns"]).collect())
        try:
            for seq, side, price, qty, ps, qs, over, ts in rows.iter_rows():
                book.apply_level(_SIDES[side], _text(price, ps, over, "price"),
                                 _text(qty, qs, over, "qty"), seq,
                                 None if ts is None else ts // 1_000_000)
        except Exception:  # noqa: BLE001 - rows the book refuses: no valid book
            return None
        return book if book.in_sync else None

    def futures_book_frame(self, product_id: str, interval: Interval, cut: int) -> str | None:
        book = self.futures_book(product_id, interval, cut)
        if book is None or book.seq is None:
            return None

        def text(levels: list[Any]) -> list[tuple[str, str]]:
            return [(token_to_text(p), token_to_text(q)) for p, q in levels]

        return render.futures_book_snapshot(product_id, text(book.bids()), text(book.asks()),
                                            seq=book.seq, timestamp_ms=book.timestamp_ms)

    # ------------------------------------------------------------------ trades, candles

    def spot_trades(self, symbol: str, cut: int, count: int = SPOT_TRADE_SNAPSHOT
                    ) -> list[render.SpotTrade]:
        """The ``count`` most recent trades (by ``trade_id``) received at or before ``cut``,
        oldest first (any source: WS, and REST backfill of gaps)."""
        import polars as pl

        df = (self.archive.scan("trades", symbols=[symbol], end=cut, raw=True)
              .filter((pl.col("symbol").cast(pl.Utf8) == symbol)
                      & pl.col("trade_id").is_not_null() & pl.col("price").is_not_null()
                      & pl.col("qty").is_not_null())
              .unique("trade_id", keep="first").sort("trade_id").tail(count)
              .select(["trade_id", "ts_ns", "side", pl.col("ord_type").cast(pl.Utf8), "price",
                       "price_scale", "qty", "qty_scale"]).collect())
        return [render.SpotTrade(tid, ts, _SIDES[side], ot, p, ps, q, qs)
                for tid, ts, side, ot, p, ps, q, qs in df.iter_rows()]

    def futures_trades(self, product_id: str, cut: int, count: int = FUTURES_TRADE_SNAPSHOT
                       ) -> list[render.FuturesTrade]:
        """The ``count`` most recent futures trades (by ``seq``) received at or before ``cut``,
        newest first."""
        import polars as pl

        df = (self.archive.scan("futures_trades", symbols=[product_id], end=cut, raw=True)
              .filter((pl.col("product_id").cast(pl.Utf8) == product_id)
                      & pl.col("price").is_not_null() & pl.col("qty").is_not_null())
              .unique("seq", keep="first").sort("seq", descending=True).head(count)
              .select(["seq", "ts_ns", "uid", "side", pl.col("type").cast(pl.Utf8), "price",
                       "price_scale", "qty", "qty_scale"]).collect())
        return [render.FuturesTrade(seq, ts, uid, _SIDES[side], kind, p, ps, q, qs)
                for seq, ts, uid, side, kind, p, ps, q, qs in df.iter_rows()]

    def last_trade_id(self, symbol: str, cut: int) -> int | None:
        """The highest spot ``trade_id`` received at or before ``cut``."""
        import polars as pl

        return (self.archive.scan("trades", symbols=[symbol], end=cut, raw=True)
                .filter(pl.col("symbol").cast(pl.Utf8) == symbol)
                .select(pl.col("trade_id").max()).collect().item())

    def last_futures_trade_seq(self, product_id: str, cut: int) -> int | None:
        import polars as pl

        return (self.archive.scan("futures_trades", symbols=[product_id], end=cut, raw=True)
                .filter(pl.col("product_id").cast(pl.Utf8) == product_id)
                .select(pl.col("seq").max()).collect().item())

    def ohlc_bars(self, symbol: str, interval: int, cut: int) -> list[render.OhlcBar]:
        """The latest recorded state (at or before ``cut``) of the newest candle."""
        import polars as pl

        df = (self.archive.scan("ohlc", symbols=[symbol], end=cut, raw=True)
              .filter((pl.col("symbol").cast(pl.Utf8) == symbol)
                      & (pl.col("interval") == interval))
              .sort(["interval_begin_ns", "recv_ns"], maintain_order=True).tail(1)
              .select(["interval_begin_ns", pl.col("open").cast(pl.Utf8),
                       pl.col("high").cast(pl.Utf8), pl.col("low").cast(pl.Utf8),
                       pl.col("close").cast(pl.Utf8), "trades", "volume", "vwap"]).collect())
        return [render.OhlcBar(interval, begin, o, h, lo, c, n, v, w)
                for begin, o, h, lo, c, n, v, w in df.iter_rows()]

    # ------------------------------------------------------------------ instruments

    def instrument_frame(self, cut: int) -> str:
        """The ``instrument`` snapshot valid at ``cut`` (recorded attributes, exact tokens)."""
        assets, pairs = self.catalog.instruments_at(cut)
        return render.instrument_snapshot([encode_wire(wire_object(r.attributes)) for r in assets],
                                          [encode_wire(wire_object(r.attributes)) for r in pairs])
