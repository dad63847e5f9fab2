"""A self-contained live validator producing :mod:`recorder.pipeline.signals` from frames.

Capture needs signals (book desyncs, trade-id gaps, futures seq gaps, acks, instrument changes)
to heal. The archive's :class:`recorder.pipeline.Pipeline` produces them while it builds rows;
when it is not available (or for a capture-only run), :class:`LiveValidator` produces the same
signals with the protocol core's decoders and books. It keeps one book per (stream, symbol),
rebuilt from each snapshot with the precision known *at that moment* from the ``instrument``
channel (so precision changes take effect from the next snapshot, which the healer requests).

It also remembers per-subscription facts the shell uses for health and metrics: the number of
verified checksums, the last exchange timestamp (for exchange->receive lag) and the last trade
timestamp per symbol (for REST backfill cursors).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from recorder.book.l2 import L2Book
from recorder.book.l3 import L3Book
from recorder.frames import Frame
from recorder.pipeline.signals import (
    BookDesync,
    FuturesSeqGap,
    InstrumentChanged,
    Signal,
    SubscriptionAcked,
    SubscriptionRejected,
    TradeIdGap,
)
from recorder.protocol.futures import (
    FuturesAlert,
    FuturesBookDelta,
    FuturesBookSnapshot,
    FuturesError,
    FuturesSubscribed,
    FuturesSubscribeFailed,
    FuturesTrade,
    FuturesTradeSnapshot,
    decode_futures,
)
from recorder.protocol.reject import Reject
from recorder.protocol.spot import (
    BookMessage,
    InstrumentMessage,
    Level3Message,
    OhlcMessage,
    SubscribeAck,
    TradeMessage,
    UnsubscribeAck,
    decode_spot,
)

__all__ = ["LiveValidator", "PairInfo", "ValidatorStats"]


@dataclass(frozen=True, slots=True)
class PairInfo:
    symbol: str
    status: str
    price_precision: int
    qty_precision: int


@dataclass(slots=True)
class ValidatorStats:
    frames: int = 0
    rejects: int = 0
    checksums_ok: int = 0
    checksum_failures: int = 0
    trade_gaps: int = 0
    seq_gaps: int = 0
    last_exchange_ns: int = 0
    last_exchange_recv_ns: int = 0
    unsubscribe_acks: list[tuple[int, str, str]] = field(default_factory=list)


class LiveValidator:
    """Frame in, signals out (the subset of the pipeline's contract capture acts on)."""

    def __init__(self) -> None:
        self.pairs: dict[str, PairInfo] = {}
        self._books: dict[tuple[str, str], L2Book | L3Book | None] = {}
        self._depth: dict[tuple[str, str], int] = {}
        self._trade_id: dict[str, int] = {}
        self.last_trade_ns: dict[str, int] = {}
        self._fseq: dict[tuple[str, str], int] = {}
        self.stats = ValidatorStats()
        self.verified: dict[tuple[str, str], int] = {}
        self.last_apply_error = ""

    # ------------------------------------------------------------------ instruments

    def set_pairs(self, pairs: list[PairInfo]) -> None:
        self.pairs = {p.symbol: p for p in pairs}

    def _instrument(self, msg: InstrumentMessage, recv_ns: int) -> list[Signal]:
        new = {p.symbol: PairInfo(p.symbol, p.status, p.price_precision, p.qty_precision)
               for p in msg.data.pairs}
        listed: list[str] = []
        delisted: list[str] = []
        changed: list[str] = []
        if msg.type == "snapshot":
            old = self.pairs
            if old:
                listed = sorted(s for s in new if s not in old and new[s].status == "online")
                delisted = sorted(s for s in old if s not in new or new[s].status == "delisted")
                changed = sorted(s for s in new if s in old and new[s] != old[s]
                                 and new[s].status != "delisted")
            self.pairs = new
        else:
            for s, info in new.items():
                old_info = self.pairs.get(s)
                if info.status == "delisted":
                    delisted.append(s)
                elif old_info is None:
                    listed.append(s)
                elif old_info != info:
                    changed.append(s)
                self.pairs[s] = info
        if not (listed or delisted or changed):
            return []
        return [InstrumentChanged(listed=listed, delisted=delisted, status_changed=changed,
                                  recv_ns=recv_ns)]

    # ------------------------------------------------------------------ feeding

    def feed(self, frame: Frame) -> list[Signal]:
        if frame.direction != "in":
            return []
        self.stats.frames += 1
        if frame.stream in ("spot", "l3"):
            return self._spot(frame)
        if frame.stream == "futures":
            return self._futures(frame)
        return []

    def _book(self, stream: str, channel: str, msg: BookMessage | Level3Message,
              recv_ns: int) -> list[Signal]:
        out: list[Signal] = []
        for data in msg.data:
            key = (stream, data.symbol)
            book = self._books.get(key)
            if msg.type == "snapshot":
                info = self.pairs.get(data.symbol)
                depth = self._depth.get(key, 10)
                if info is None:
                    self._books[key] = None
                    continue
                book = (L3Book(data.symbol, depth, info.price_precision, info.qty_precision)
                        if channel == "level3"
                        else L2Book(data.symbol, depth, info.price_precision, info.qty_precision))
                self._books[key] = book
            elif book is None:
                continue  # desynced (or never snapshotted): wait for the resnapshot
            if data.ts_ns:
                self.stats.last_exchange_ns = data.ts_ns
                self.stats.last_exchange_recv_ns = recv_ns
            try:
                result = book.apply(msg.type, data)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - any apply failure is a desync
                self._books[key] = None
                out.append(BookDesync(stream=stream, channel=channel, symbol=data.symbol,
                                      depth=book.depth, reason="apply_error", recv_ns=recv_ns,
                                      computed=None, expected=None))
                self.last_apply_error = f"{type(exc).__name__}: {exc}"[:200]
                continue
            if result.match is False or result.crossed:
                self._books[key] = None
                self.stats.checksum_failures += result.match is False
                out.append(BookDesync(
                    stream=stream, channel=channel, symbol=data.symbol, depth=book.depth,
                    reason="checksum_mismatch" if result.match is False else "crossed",
                    expected=result.expected, computed=result.computed, recv_ns=recv_ns))
            elif result.match:
                self.stats.checksums_ok += 1
                self.verified[key] = self.verified.get(key, 0) + 1
        return out

    def _spot(self, frame: Frame) -> list[Signal]:
        ev: Any = decode_spot(frame.payload)
        recv_ns = frame.recv_ns
        if isinstance(ev, (BookMessage, Level3Message)):
            return self._book(frame.stream, ev.channel, ev, recv_ns)
        if isinstance(ev, TradeMessage):
            out: list[Signal] = []
            for t in ev.data:
                last = self._trade_id.get(t.symbol)
                if last is not None and t.trade_id <= last:
                    continue  # duplicate or replay (snapshot overlap): nothing missing
                if last is not None and t.trade_id != last + 1:
                    self.stats.trade_gaps += 1
                    out.append(TradeIdGap(symbol=t.symbol, expected=last + 1, got=t.trade_id,
                                          recv_ns=recv_ns))
                self._trade_id[t.symbol] = t.trade_id
                self.last_trade_ns[t.symbol] = t.ts_ns
                self.stats.last_exchange_ns = t.ts_ns
                self.stats.last_exchange_recv_ns = recv_ns
            return out
        if isinstance(ev, OhlcMessage):
            return []
        if isinstance(ev, InstrumentMessage):
            return self._instrument(ev, recv_ns)
        if isinstance(ev, SubscribeAck):
            sym = ev.result.symbol if ev.result is not None else ev.symbol
            channel = ev.result.channel if ev.result is not None else ""
            if ev.success and ev.result is not None:
                if ev.result.depth is not None and sym is not None:
                    self._depth[(frame.stream, sym)] = ev.result.depth
                return [SubscriptionAcked(stream=frame.stream, conn_id=frame.conn_id,
                                          channel=channel, symbol=sym, depth=ev.result.depth,
                                          interval=ev.result.interval, recv_ns=recv_ns)]
            return [SubscriptionRejected(stream=frame.stream, conn_id=frame.conn_id,
                                         channel=channel, symbol=sym, error=ev.error or "",
                                         recv_ns=recv_ns)]
        if isinstance(ev, UnsubscribeAck):
            sym = ev.result.symbol if ev.result is not None else ev.symbol
            if ev.success and sym is not None:
                self._books.pop((frame.stream, sym), None)
                self.stats.unsubscribe_acks.append((frame.conn_id, ev.result.channel if ev.result else "", sym))
            return []
        if isinstance(ev, Reject):
            self.stats.rejects += 1
        return []

    def _futures(self, frame: Frame) -> list[Signal]:
        ev: Any = decode_futures(frame.payload)
        recv_ns = frame.recv_ns
        if isinstance(ev, FuturesBookDelta):
            key = ("book", ev.canonical_product_id)
            last = self._fseq.get(key)
            self._fseq[key] = ev.seq
            if last is not None and ev.seq != last + 1 and ev.seq > last:
                self.stats.seq_gaps += 1
                return [FuturesSeqGap(feed="book", product_id=key[1], expected=last + 1,
                                      got=ev.seq, recv_ns=recv_ns)]
            return []
        if isinstance(ev, FuturesBookSnapshot):
            self._fseq[("book", ev.canonical_product_id)] = ev.seq
            return []
        if isinstance(ev, FuturesTrade):
            key = ("trade", ev.canonical_product_id)
            last = self._fseq.get(key)
            if last is not None and ev.seq <= last:
                return []
            self._fseq[key] = ev.seq
            if last is not None and ev.seq != last + 1:
                self.stats.seq_gaps += 1
                return [FuturesSeqGap(feed="trade", product_id=key[1], expected=last + 1,
                                      got=ev.seq, recv_ns=recv_ns)]
            return []
        if isinstance(ev, FuturesTradeSnapshot):
            if ev.trades:
                key = ("trade", ev.canonical_product_id)
                self._fseq[key] = max(self._fseq.get(key, 0), max(t.seq for t in ev.trades))
            return []
        if isinstance(ev, FuturesSubscribed):
            return [SubscriptionAcked(stream="futures", conn_id=frame.conn_id, channel=ev.feed or "",
                                      symbol=p.upper(), recv_ns=recv_ns) for p in ev.product_ids]
        if isinstance(ev, FuturesSubscribeFailed):
            return [SubscriptionRejected(stream="futures", conn_id=frame.conn_id,
                                         channel=ev.feed or "", symbol=p.upper(),
                                         error=ev.message or "subscribe failed", recv_ns=recv_ns)
                    for p in ev.product_ids or (None,)]  # type: ignore[arg-type]
        if isinstance(ev, (FuturesError, FuturesAlert)):
            return [SubscriptionRejected(stream="futures", conn_id=frame.conn_id, channel="",
                                         symbol=None, error=ev.message, recv_ns=recv_ns)]
        if isinstance(ev, Reject):
            self.stats.rejects += 1
        return []

    def forget_futures(self, feed: str, product: str) -> None:
        """A resubscribe is coming: the next snapshot seeds the sequence again."""
        self._fseq.pop((feed, product), None)
