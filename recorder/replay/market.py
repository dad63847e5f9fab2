"""The recorded market: routes journal frames to the replay's subscriptions.

:class:`ReplayMarket` reads the archive's venue frames in receive order
(:class:`~recorder.replay.source.JournalSource`) up to the replay clock's target and turns
them into :class:`Dispatch` items for the subscribed keys. It holds the *cut*: every frame
received at or before ``cut_ns`` has been routed, none after it, so a snapshot rebuilt at the
cut (:class:`~recorder.replay.rebuild.Rebuilder`) is exactly the state the frames that follow
continue.

Keys are the simulator's (:mod:`recorder.sim.spot_ws`): spot ``("book", symbol, depth)``,
``("level3", symbol, depth)``, ``("trade", symbol)``, ``("ohlc", symbol, interval)``,
``("instrument",)``; futures ``("book", product)``, ``("trade", product)``,
``("ticker", product)``, ``("ticker_lite", product)``. Spot keys live in the ``"spot"``
registry (both ``/v2`` and ``/l3/v2``), futures keys in ``"futures"``.

Rules (``docs/replay.md``):

* Book frames (``book``, ``level3``, futures ``book``) are forwarded byte for byte when a
  covered interval of their book names their recording connection
  (:mod:`recorder.replay.coverage`); everything else (a frame the archive found bad, frames
  after a failure, a second connection's copy) is withheld. Entering a new interval, a
  recorded snapshot is forwarded as is; otherwise (coverage resumed inside an epoch) a
  snapshot rebuilt at that frame replaces it. Frames already inside a subscriber's snapshot
  (received at or before its cut) are skipped.
* ``trade``: frames whose trades were all forwarded already (a second connection's copy,
  a resubscribe's snapshot) are skipped (by ``trade_id``, futures by ``seq``); recorded
  snapshots go only to subscriptions that asked for snapshots.
* ``ohlc``, ``instrument`` updates, futures tickers: an identical copy of the frame just
  forwarded for the key (a second connection) is skipped. Recorded ``instrument`` snapshots
  are never forwarded (each subscriber got one at subscribe).
* A frame batching several symbols (``trade``/``ohlc``) is split
  (:func:`~recorder.replay.frames.split_spot`) per subscribed symbol: each subscription gets
  only its own symbol's events (the only frames not forwarded byte for byte; Kraken's
  current feeds send one symbol per message, so this is the exception).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple

from recorder.replay.catalog import Catalog
from recorder.replay.coverage import Interval
from recorder.replay.frames import Route, route_futures, route_spot, split_spot
from recorder.replay.rebuild import Rebuilder
from recorder.replay.render import futures_trade_snapshot, ohlc_snapshot, trade_snapshot
from recorder.replay.source import VenueFrame

__all__ = ["Dispatch", "MarketStats", "Registry", "ReplayMarket", "Subscribed", "refusal"]

Registry = Literal["spot", "futures"]
_MAX_STEP_FRAMES: Final = 1 << 62


class Dispatch(NamedTuple):
    """One frame for every subscriber of ``key`` in ``registry``. ``snapshot``: a recorded
    snapshot (a subscription that asked for none does not get it). ``resync``: a book's
    coverage resumed after a gap while its subscribers held a book; each subscriber gets what
    Kraken sends after a resubscribe: its subscribe ack, then this (fresh) snapshot."""

    registry: Registry
    key: tuple
    frame: bytes | str
    snapshot: bool
    resync: bool = False


@dataclass(slots=True)
class Subscribed:
    """What a new subscription gets: ``frames`` for the subscriber (its snapshot; none when
    the archive holds no valid state at the cut, or none was asked for), and ``others`` for
    the key's earlier subscribers, which were waiting for coverage to resume or hold the book
    of an interval that has ended (they get the fresh snapshot too)."""

    frames: list[bytes | str] = field(default_factory=list)
    others: list[bytes | str] = field(default_factory=list)
    #: the earlier subscribers held a book (of an ended interval): ack + snapshot for them
    others_resync: bool = False


@dataclass(slots=True)
class _KeyState:
    subscribers: int = 0
    live: Interval | None = None  #: books: the interval whose frames flow
    cut: int = -1  #: frames received at or before this are inside a sent snapshot
    last_id: int | None = None  #: trade: highest trade_id / seq forwarded
    last_frame: bytes | None = None  #: last frame forwarded (duplicate check)


def refusal(catalog: Catalog, registry: Registry, key: tuple) -> str | None:
    """Why the archive cannot serve ``key`` (``"symbol"``, ``"depth"``, ``"interval"``) or
    None when it can. The caller turns the reason into Kraken's error message."""
    channel = key[0]
    if registry == "futures":
        product = key[1]
        held = {"book": catalog.has_futures_book(product),
                "trade": product in catalog.futures_trades,
                "ticker": product in catalog.futures_tickers,
                "ticker_lite": product in catalog.futures_tickers}.get(channel, False)
        return None if held else "symbol"
    if channel == "instrument":
        return None if catalog.instruments else "symbol"
    symbol = key[1]
    if channel in ("book", "level3"):
        depths = catalog.book_depths(channel, symbol)
        if not depths:
            return "symbol"
        return None if key[2] in depths else "depth"
    if channel == "trade":
        return None if symbol in catalog.trades else "symbol"
    if channel == "ohlc":
        intervals = {i for s, i in catalog.ohlc if s == symbol}
        if not intervals:
            return "symbol"
        return None if key[2] in intervals else "interval"
    return "symbol"


@dataclass
class MarketStats:
    frames_read: int = 0
    frames_routed: int = 0
    frames_withheld: int = 0
    duplicates_skipped: int = 0
    snapshots_rebuilt: int = 0
    frames_split: int = 0
    rebuild_errors: int = 0


class ReplayMarket:
    """See module docstring. ``frames``: the venue frames of the window in receive order;
    ``on_rebuild(start)``/``on_rebuilt()`` bracket every rebuild (the server holds its clock)."""

    def __init__(self, catalog: Catalog, rebuilder: Rebuilder, frames: Iterator[VenueFrame], *,
                 symbols: set[str] | None = None,
                 hold: Callable[[bool], None] | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.catalog = catalog
        self.rebuilder = rebuilder
        self._frames = frames
        self._peek: VenueFrame | None = None
        self._symbols = symbols
        self._hold = hold
        self._on_error = on_error
        self.cut_ns = catalog.start_ns
        self.exhausted = False
        self.stats = MarketStats()
        self._state: dict[tuple[Registry, tuple], _KeyState] = {}
        #: (registry, channel, symbol) with at least one subscribed key
        self._active: dict[tuple[str, str, str], int] = {}
        #: the last recorded futures ticker frame per (feed, product) (ticker subscriptions'
        #: first frame)
        self._last_ticker: dict[tuple[str, str], bytes] = {}

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, registry: Registry, key: tuple, *, snapshot: bool) -> Subscribed:
        """Register one subscriber of ``key`` at the cut and return its first frames (see
        :class:`Subscribed`)."""
        st = self._state.get((registry, key))
        if st is None:
            st = self._state[(registry, key)] = _KeyState()
            name = (registry, key[0], key[1] if len(key) > 1 else "")
            self._active[name] = self._active.get(name, 0) + 1
        st.subscribers += 1
        cut = self.cut_ns
        channel = key[0]
        result = Subscribed()
        if registry == "spot" and channel in ("book", "level3") or (
                registry == "futures" and channel == "book"):
            book_channel = "futures_book" if registry == "futures" else channel
            interval = self._interval_at(book_channel, key, cut)
            frame = None if interval is None else self._rebuild(registry, key, interval, cut)
            if frame is not None:
                assert interval is not None
                if st.subscribers > 1 and st.live != interval:
                    result.others.append(frame)  # they hold no (or a stale) book
                    result.others_resync = st.live is not None
                st.live, st.cut = interval, cut
                if snapshot or registry == "futures":
                    result.frames.append(frame)
        elif channel == "trade":
            if registry == "spot":
                trades = self._rebuilding(lambda: self.rebuilder.spot_trades(key[1], cut), []) \
                    if snapshot else []
                last = trades[-1].trade_id if trades else self._rebuilding(
                    lambda: self.rebuilder.last_trade_id(key[1], cut))
                if snapshot:
                    result.frames.append(trade_snapshot(key[1], trades))
            else:  # futures subscriptions always start with a trade_snapshot
                ftrades = self._rebuilding(lambda: self.rebuilder.futures_trades(key[1], cut), [])
                last = ftrades[0].seq if ftrades else self._rebuilding(
                    lambda: self.rebuilder.last_futures_trade_seq(key[1], cut))
                result.frames.append(futures_trade_snapshot(key[1], ftrades))
            if last is not None and (st.last_id is None or last > st.last_id):
                st.last_id = last
            st.cut = max(st.cut, cut)
        elif channel == "ohlc":
            if snapshot:
                bars = self._rebuilding(lambda: self.rebuilder.ohlc_bars(key[1], key[2], cut), [])
                result.frames.append(ohlc_snapshot(key[1], bars, at_ns=cut))
        elif channel == "instrument":
            frame = self._rebuilding(lambda: self.rebuilder.instrument_frame(cut)) \
                if snapshot else None
            if frame is not None:
                result.frames.append(frame)
        elif channel in ("ticker", "ticker_lite"):
            last_frame = self._last_ticker.get((channel, key[1]))
            if last_frame is not None:
                result.frames.append(last_frame)
        return result

    def unsubscribe(self, registry: Registry, key: tuple) -> None:
        st = self._state.get((registry, key))
        if st is None:
            return
        st.subscribers -= 1
        if st.subscribers <= 0:
            del self._state[(registry, key)]
            name = (registry, key[0], key[1] if len(key) > 1 else "")
            n = self._active.get(name, 0) - 1
            if n > 0:
                self._active[name] = n
            else:
                self._active.pop(name, None)

    def _interval_at(self, book_channel: str, key: tuple, cut: int) -> Interval | None:
        """The covered interval of the key's book at ``cut`` (of the key's depth)."""
        cov = self.catalog.coverage
        found = cov.at(book_channel, key[1], cut)
        if found is not None and (len(key) < 3 or found.depth == key[2]):
            return found
        for iv in cov.intervals(book_channel, key[1]):  # another root's, at this depth
            if iv.start_ns <= cut <= iv.end_ns and (len(key) < 3 or iv.depth == key[2]):
                return iv
        return None

    def _rebuilding(self, work: Callable[[], Any], default: Any = None) -> Any:
        """Run one rebuild with the clock held. An archive file that cannot be read makes
        the state unavailable (``default``: no snapshot), reported through ``on_error``;
        it never takes the replay down."""
        if self._hold is not None:
            self._hold(True)
        try:
            return work()
        except Exception as exc:  # noqa: BLE001 - unreadable archive data: no state, reported
            self.stats.rebuild_errors += 1
            if self._on_error is not None:
                self._on_error(f"rebuild failed ({type(exc).__name__}: {exc})"[:500])
            return default
        finally:
            if self._hold is not None:
                self._hold(False)

    def _rebuild(self, registry: Registry, key: tuple, interval: Interval, cut: int) -> str | None:
        self.stats.snapshots_rebuilt += 1
        if registry == "futures":
            return self._rebuilding(lambda: self.rebuilder.futures_book_frame(key[1], interval, cut))
        return self._rebuilding(lambda: self.rebuilder.spot_book(key[0], key[1], interval, cut))

    # ------------------------------------------------------------------ the stream

    def advance(self, target: int | None, budget: int = _MAX_STEP_FRAMES) -> list[Dispatch]:
        """Route the frames received up to ``target`` (None: no limit), at most ``budget``
        of them (more when the next ones share the last one's receive time, so that the cut
        stays between receive times). Sets :attr:`exhausted` at the end of the window."""
        out: list[Dispatch] = []
        frames = self._frames
        nxt = self._peek
        self._peek = None
        cut = self.cut_ns
        end = self.catalog.end_ns
        stats = self.stats
        while True:
            if nxt is None:
                nxt = next(frames, None)
                if nxt is None:
                    self.exhausted = True
                    break
            recv = nxt.recv_ns
            if target is not None and recv > target:
                break
            if budget <= 0 and recv > cut:
                break
            stats.frames_read += 1
            if self._active:
                self._route(nxt, out)
            cut = max(cut, recv)
            budget -= 1
            nxt = None
        self._peek = nxt
        if target is not None and not (budget <= 0 and nxt is not None and nxt.recv_ns <= target):
            cut = max(cut, min(target, end))
        if self.exhausted:
            cut = max(cut, end)
        self.cut_ns = cut
        return out

    def _route(self, f: VenueFrame, out: list[Dispatch]) -> None:
        stream = f.stream
        if stream == "futures":
            route = route_futures(f.payload)
            registry: Registry = "futures"
        else:
            route = route_spot(f.payload)
            registry = "spot"
        if route is None:
            return
        channel = route.channel
        if channel in ("ticker", "ticker_lite") and registry == "futures":
            self._last_ticker[(channel, route.symbols[0])] = f.payload
        if channel == "instrument":
            if (registry, "instrument", "") in self._active and not route.snapshot:
                self._forward(registry, ("instrument",), f.payload, False, out)
            return
        active = self._active
        wanted = self._symbols
        for symbol in route.symbols:
            if (registry, channel, symbol) not in active:
                continue
            if wanted is not None and symbol not in wanted:
                continue
            payload = f.payload
            this = route
            if route.mixed:
                part = split_spot(payload, symbol)
                if part is None:
                    continue
                self.stats.frames_split += 1
                payload = part
                this = route_spot(part) or route
            self._one(registry, channel, symbol, f, payload, this, out)

    def _one(self, registry: Registry, channel: str, symbol: str, f: VenueFrame, payload: bytes,
             route: Route, out: list[Dispatch]) -> None:
        stats = self.stats
        if channel in ("book", "level3"):
            book_channel = "futures_book" if registry == "futures" else channel
            iv = self.catalog.coverage.frame(book_channel, symbol, f.root, f.conn_id, f.recv_ns)
            if iv is None:
                stats.frames_withheld += 1
                return
            key: tuple = (channel, symbol, iv.depth) if registry == "spot" else (channel, symbol)
            st = self._state.get((registry, key))
            if st is None:
                return
            if f.recv_ns <= st.cut:
                stats.duplicates_skipped += 1
                return
            if st.live is not iv and st.live != iv:  # coverage (re)starts: fresh snapshot
                live = st.live
                if live is not None and live.start_ns <= f.recv_ns <= live.end_ns:
                    stats.duplicates_skipped += 1  # another recording of the book being served
                    return
                resync = live is not None
                if not route.snapshot:
                    frame = self._rebuild(registry, key, iv, f.recv_ns)
                    if frame is None:
                        stats.frames_withheld += 1
                        return
                    st.live, st.cut = iv, f.recv_ns
                    out.append(Dispatch(registry, key, frame, False, resync))
                    return
                st.live = iv
                st.last_frame = payload
                stats.frames_routed += 1
                out.append(Dispatch(registry, key, payload, False, resync))
                return
            self._forward(registry, key, payload, False, out, st)
            return
        if channel == "trade":
            key = (channel, symbol)
            st = self._state.get((registry, key))
            if st is None:
                return
            last = route.last_id
            if last is not None and st.last_id is not None and last <= st.last_id:
                stats.duplicates_skipped += 1
                return
            if last is None and f.recv_ns <= st.cut:
                stats.duplicates_skipped += 1
                return
            if last is not None:
                st.last_id = last
            self._forward(registry, key, payload, route.snapshot, out, st)
            return
        if channel == "ohlc":
            key = (channel, symbol, route.interval)
        else:
            key = (channel, symbol)
        st = self._state.get((registry, key))
        if st is None:
            return
        if st.last_frame == payload:
            stats.duplicates_skipped += 1
            return
        self._forward(registry, key, payload, route.snapshot, out, st)

    def _forward(self, registry: Registry, key: tuple, payload: bytes, snapshot: bool,
                 out: list[Dispatch], st: _KeyState | None = None) -> None:
        if st is None:
            st = self._state.get((registry, key))
            if st is None:
                return
            if st.last_frame == payload:
                self.stats.duplicates_skipped += 1
                return
        st.last_frame = payload
        self.stats.frames_routed += 1
        out.append(Dispatch(registry, key, payload, snapshot))
