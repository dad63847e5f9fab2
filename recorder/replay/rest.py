"""REST market data as of the replay clock, from the archive.

The simulator's REST handlers (:mod:`recorder.sim.rest`, :mod:`recorder.sim.futures_rest`:
Kraken's envelopes, names, number text, errors, throttles, API-Sign) ask their market for the
data; in a replay these two objects answer, at the replay's cut (every frame received at or
before it has been served, see :class:`~recorder.replay.market.ReplayMarket`):

* ``Depth``: the deeper of the recorded ``level3``/``book`` books at the cut (level
  timestamps: the newest order of the level from ``level3``; from an L2 ``book``, which has no
  per-level times, the exchange time of the book's last message); ``Level3`` (private): the
  ``level3`` book. No valid book at the cut (before the first snapshot, inside a gap):
  ``EService:Unavailable``.
* ``Trades``: recorded trades received by the cut (WebSocket and REST backfill, one row per
  ``trade_id``); ``OHLC``: 1-to-21600-minute bars computed from them, gap-filled as Kraken's;
  ``Spread``: best bid/ask changes over the last minute of receive time before the cut;
  ``Ticker``: best levels at the cut, the last trade, today's and the last 24 hours' trades.
* ``Time``: the replay time. ``Assets``/``AssetPairs``: the recorded instruments of the pairs the
  window holds (fields Kraken's instrument channel does not carry -- fees, leverage, margin
  levels -- at the simulator's values, ``docs/kraken-rest.md``).
* Futures ``orderbook`` (the book at the cut), ``history`` (recorded trades), ``tickers`` (best
  levels, last trade and 24-hour statistics from the archive; mark, index, funding and open
  interest from recorded futures tickers when the archive has them, else left out).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from recorder.protocol.numbers import token_to_text, units_to_text
from recorder.sim.market import RestBar, RestTicker, RestTrade, TickerPeriod
from recorder.sim.rest_io import DataUnavailable

if TYPE_CHECKING:
    from recorder.query.books import BookAt
    from recorder.replay.server import ReplayServer

__all__ = ["ReplayFuturesData", "ReplaySpotData", "rescale"]

_NS: Final = 1_000_000_000
_DAY_NS: Final = 86_400 * _NS
_REST_BARS: Final = 721
_SPREAD_WINDOW_NS: Final = 60 * _NS
_SPREADS: Final = 200
_SIDES: Final = ("buy", "sell")


def rescale(units: int, scale: int, target: int) -> int:
    """``units`` at ``scale`` decimals expressed at ``target`` decimals (exact: raises
    ``ValueError`` if digits would be lost)."""
    if target >= scale:
        return units * 10 ** (target - scale)
    q, r = divmod(units, 10 ** (scale - target))
    if r:
        raise ValueError(f"{units}e-{scale} has more than {target} decimals")
    return q


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """A REST data method whose archive read fails (an unreadable file) answers Kraken's
    "unavailable" (:class:`DataUnavailable`) and is reported once on stderr, never a 500."""
    @functools.wraps(method)
    def guarded(self: _Data, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except DataUnavailable:
            raise
        except Exception as exc:  # unreadable archive data: unavailable, reported
            self.server.log(f"recorder replay: REST {method.__name__} failed "
                             f"({type(exc).__name__}: {exc})"[:500])
            raise DataUnavailable(method.__name__) from exc

    return guarded


class _Data:
    def __init__(self, server: ReplayServer) -> None:
        self.server = server

    @property
    def cut(self) -> int:
        return self.server.replay.cut_ns


class ReplaySpotData(_Data):
    """The spot market's REST data (the interface of :class:`recorder.sim.market.SpotMarket`
    that :mod:`recorder.sim.rest` uses)."""

    def _book(self, symbol: str, channels: tuple[str, ...] = ("level3", "book")
              ) -> tuple[str, BookAt]:
        """The deepest valid recorded book of ``symbol`` at the cut."""
        cut = self.cut
        cov = self.server.catalog.coverage
        found = [(iv.depth or 0, channel == "level3", channel, iv) for channel in channels
                 if (iv := cov.at(channel, symbol, cut)) is not None]
        for _, _, channel, iv in sorted(found, key=lambda f: (f[0], f[1]), reverse=True):
            res = self.server.rebuilder.book_at(channel, symbol, iv, cut)
            if res is not None:
                return channel, res
        raise DataUnavailable(symbol)

    @_guarded
    def depth(self, symbol: str, count: int) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]:
        channel, res = self._book(symbol)
        book: Any = res.book
        pp, qp = book.price_precision, book.qty_precision
        book_ts = (res.last_message_ts_ns or self.cut) // _NS
        out = []
        for side in ("bid", "ask"):
            levels = []
            for price, qty in book.levels(side, count):
                ts = book_ts
                if channel == "level3":
                    stamps = [o.ts_ns for o in book.level_orders(side, price) if o.ts_ns is not None]
                    ts = max(stamps) // _NS if stamps else book_ts
                levels.append((units_to_text(price, pp), units_to_text(qty, qp), ts))
            out.append(levels)
        return out[0], out[1]

    @_guarded
    def l3_orders(self, symbol: str, depth: int
                  ) -> tuple[list[tuple[str, str, str, int]], list[tuple[str, str, str, int]]]:
        _, res = self._book(symbol, ("level3",))
        book: Any = res.book
        pp, qp = book.price_precision, book.qty_precision
        out = []
        for side in ("bid", "ask"):
            out.append([(units_to_text(o.price, pp), units_to_text(o.qty, qp), o.order_id,
                         o.ts_ns or 0)
                        for price, _ in book.levels(side, depth)
                        for o in book.level_orders(side, price)])
        return out[0], out[1]

    def _trades(self, symbol: str, *, since_ts: int | None = None) -> list[tuple]:
        """Trades received by the cut (one per ``trade_id``), oldest first: ``(trade_id,
        ts_ns, side, ord_type, price, price_scale, qty, qty_scale)``."""
        import polars as pl

        lf = self.server.archive.scan("trades", symbols=[symbol], end=self.cut, raw=True).filter(
            (pl.col("symbol").cast(pl.Utf8) == symbol) & pl.col("trade_id").is_not_null()
            & pl.col("price").is_not_null() & pl.col("qty").is_not_null())
        if since_ts is not None:
            lf = lf.filter(pl.col("ts_ns") > since_ts)
        df = (lf.unique("trade_id", keep="first").sort("trade_id")
              .select(["trade_id", "ts_ns", "side", pl.col("ord_type").cast(pl.Utf8), "price",
                       "price_scale", "qty", "qty_scale"]).collect())
        return list(df.iter_rows())

    @_guarded
    def trades_since(self, symbol: str, since_ns: int | None, count: int = 1000) -> list[RestTrade]:
        rows = self._trades(symbol, since_ts=since_ns)
        chosen = rows[-count:] if since_ns is None else rows[:count]
        return [RestTrade(units_to_text(p, ps), units_to_text(q, qs), ts,
                          "b" if side == 0 else "s", "m" if ot == "market" else "l", tid)
                for tid, ts, side, ot, p, ps, q, qs in chosen]

    def _units(self, symbol: str) -> tuple[int, int]:
        pair = self.server.pairs[symbol]
        return pair.price_precision, pair.qty_precision

    @_guarded
    def ohlc(self, symbol: str, interval: int) -> list[RestBar]:
        pp, qp = self._units(symbol)
        span = interval * 60 * _NS
        cut = self.cut
        current = cut - cut % span
        horizon = current - (_REST_BARS - 1) * span
        rows = self._trades(symbol)
        if not rows:
            raise DataUnavailable(symbol)
        bars: dict[int, list[int]] = {}
        close_before: int | None = None
        for _, ts, _, _, p, ps, q, qs in sorted(rows, key=lambda r: (r[1], r[0])):
            price, qty = rescale(p, ps, pp), rescale(q, qs, qp)
            begin = ts - ts % span
            if begin < horizon:
                close_before = price
                continue
            bar = bars.get(begin)
            if bar is None:
                bars[begin] = [price, price, price, price, qty, price * qty, 1]
            else:
                bar[1] = max(bar[1], price)
                bar[2] = min(bar[2], price)
                bar[3] = price
                bar[4] += qty
                bar[5] += price * qty
                bar[6] += 1
        first = min(bars) if bars else current
        start = max(first, horizon)
        close = close_before if close_before is not None else (
            bars[first][0] if bars else rescale(rows[-1][4], rows[-1][5], pp))
        out = []
        for t in range(start, current + 1, span):
            bar = bars.get(t)
            if bar is None:
                flat = units_to_text(close, pp)
                out.append(RestBar(t // _NS, flat, flat, flat, flat, units_to_text(0, pp),
                                   units_to_text(0, qp), 0))
                continue
            o, h, lo, c, vol, cost, n = bar
            vwap = (2 * cost + vol) // (2 * vol) if vol else c
            out.append(RestBar(t // _NS, units_to_text(o, pp), units_to_text(h, pp),
                               units_to_text(lo, pp), units_to_text(c, pp),
                               units_to_text(vwap, pp), units_to_text(vol, qp), n))
            close = c
        return out

    @_guarded
    def spreads(self, symbol: str) -> list[tuple[int, str, str]]:
        from recorder.query.books import BookEvent

        channel, res = self._book(symbol)
        cut = self.cut
        book: Any = res.book
        pp = book.price_precision
        out: list[tuple[int, str, str]] = []
        prev = None
        for item in self.server.archive.books.replay(symbol, cut - _SPREAD_WINDOW_NS, cut,
                                                     channel=channel,  # type: ignore[arg-type]
                                                     clock="receive"):
            if not isinstance(item, BookEvent):
                prev = None
                continue
            bid, ask = item.book.best_bid(), item.book.best_ask()
            if bid is None or ask is None:
                continue
            if (bid[0], ask[0]) != prev:
                prev = (bid[0], ask[0])
                out.append((item.ts_ns or item.recv_ns, units_to_text(bid[0], pp),
                            units_to_text(ask[0], pp)))
        if not out:
            bid, ask = book.best_bid(), book.best_ask()
            if bid is not None and ask is not None:
                out.append((res.last_message_ts_ns or cut, units_to_text(bid[0], pp),
                            units_to_text(ask[0], pp)))
        return out[-_SPREADS:]

    @_guarded
    def rest_ticker(self, symbol: str) -> RestTicker:
        pp, qp = self._units(symbol)
        _, res = self._book(symbol)
        book: Any = res.book
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None:
            raise DataUnavailable(symbol)
        cut = self.cut
        rows = self._trades(symbol)
        if rows:
            last = rescale(rows[-1][4], rows[-1][5], pp)
            last_qty = rescale(rows[-1][6], rows[-1][7], qp)
        else:
            last, last_qty = (bid[0] + ask[0]) // 2, 0

        def period(since: int) -> TickerPeriod:
            chosen = [(rescale(p, ps, pp), rescale(q, qs, qp))
                      for _, ts, _, _, p, ps, q, qs in rows if ts >= since]
            if not chosen:
                return TickerPeriod(0, 0, 0, last, last, last)
            return TickerPeriod(sum(q for _, q in chosen), sum(p * q for p, q in chosen),
                                len(chosen), min(p for p, _ in chosen),
                                max(p for p, _ in chosen), chosen[0][0])

        midnight = cut - cut % _DAY_NS
        return RestTicker(pp, qp, bid[0], bid[1], ask[0], ask[1], last, last_qty,
                          period(midnight), period(cut - _DAY_NS))


class ReplayFuturesData(_Data):
    """The futures market's REST data (the interface of
    :class:`recorder.sim.futures_market.FuturesMarket` that :mod:`recorder.sim.futures_rest`
    uses)."""

    @_guarded
    def orderbook(self, product_id: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        cut = self.cut
        iv = self.server.catalog.coverage.at("futures_book", product_id, cut)
        book = None if iv is None else self.server.rebuilder.futures_book(product_id, iv, cut)
        if book is None:
            raise DataUnavailable(product_id)
        return ([(token_to_text(p), token_to_text(q)) for p, q in book.bids()],
                [(token_to_text(p), token_to_text(q)) for p, q in book.asks()])

    def _trades(self, product_id: str, since_ts: int | None = None) -> list[tuple]:
        """Futures trades received by the cut, one per ``seq``, oldest first: ``(ts_ns, seq,
        price_text, qty_text, side, type, uid)``."""
        import polars as pl

        lf = self.server.archive.scan("futures_trades", symbols=[product_id], end=self.cut,
                                      raw=True).filter(
            (pl.col("product_id").cast(pl.Utf8) == product_id) & pl.col("price").is_not_null()
            & pl.col("qty").is_not_null())
        if since_ts is not None:
            lf = lf.filter(pl.col("ts_ns") >= since_ts)
        df = (lf.unique("seq", keep="first").sort("seq")
              .select(["ts_ns", "seq", "price", "price_scale", "qty", "qty_scale", "side",
                       pl.col("type").cast(pl.Utf8), "uid"]).collect())
        return [(ts, seq, units_to_text(p, ps), units_to_text(q, qs), _SIDES[side], kind, uid)
                for ts, seq, p, ps, q, qs, side, kind, uid in df.iter_rows()]

    @_guarded
    def history(self, product_id: str, before_ns: int | None,
                count: int = 100) -> list[tuple[int, int, str, str, str, str, str]]:
        rows = [r for r in reversed(self._trades(product_id))
                if before_ns is None or r[0] < before_ns]
        return rows[:count]

    def _ticker_row(self, product_id: str) -> dict[str, Any] | None:
        import polars as pl

        df = (self.server.archive.scan("futures_ticker", symbols=[product_id], end=self.cut,
                                       raw=True)
              .filter(pl.col("product_id").cast(pl.Utf8) == product_id)
              .sort("recv_ns").tail(1).collect())
        return df.to_dicts()[0] if df.height else None

    @_guarded
    def tickers(self) -> list[dict[str, Any]]:
        from decimal import Decimal

        cut = self.cut
        out = []
        for product_id in self.server.products:
            try:
                bids, asks = self.orderbook(product_id)
            except DataUnavailable:
                bids, asks = [], []
            trades = self._trades(product_id, since_ts=cut - _DAY_NS)
            everything = trades or self.history(product_id, None, 1)
            last = everything[-1] if everything else None
            prices = [Decimal(t[2]) for t in trades]
            volume = sum((Decimal(t[3]) for t in trades), Decimal(0))
            quote = sum((Decimal(t[2]) * Decimal(t[3]) for t in trades), Decimal(0))
            tick = self._ticker_row(product_id) or {}
            change = None
            if prices and prices[0]:
                change = format((prices[-1] - prices[0]) / prices[0] * 100, "f")
            out.append({
                "symbol": product_id,
                "last": last[2] if last else None,
                "lastTime_ns": last[0] if last else None,
                "markPrice": tick.get("mark_price"),
                "bid": bids[0][0] if bids else None, "bidSize": bids[0][1] if bids else None,
                "ask": asks[0][0] if asks else None, "askSize": asks[0][1] if asks else None,
                "vol24h": format(volume, "f") if trades else None,
                "volumeQuote": format(quote, "f") if trades else None,
                "openInterest": tick.get("open_interest"),
                "open24h": trades[0][2] if trades else None,
                "high24h": format(max(prices), "f") if prices else None,
                "low24h": format(min(prices), "f") if prices else None,
                "lastSize": last[3] if last else None,
                "fundingRate": tick.get("funding_rate"),
                "fundingRatePrediction": tick.get("funding_rate_prediction"),
                "indexPrice": tick.get("index"),
                "change24h": change,
            })
        return out
