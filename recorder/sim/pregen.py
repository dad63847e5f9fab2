"""Pre-generated serving: compute the deterministic spot market ahead of time, then serve it.

``recorder sim --pregenerate SECONDS`` moves the market's CPU cost out of the serving window:
before listening, a generating :class:`~recorder.sim.market.SpotMarket` with a view on every
pre-rendered key (``--pregenerate-channels``, default ``level3`` depth 10, ``book`` depth 10,
``trade``, ``ohlc`` interval 1, on every pair) is advanced ``SECONDS`` of exchange time in
:data:`STEP_NS` slices, and every slice's update frames (and, with ``--truth``, its ground
truth) are kept. While serving, :class:`PregenMarket` hands the server the slices whose end
is due on the wall clock: serving a frame costs the socket path only.

It is still the same exchange, frame for frame. A *shadow* :class:`SpotMarket` (same
universe, seed, rate and start) carries the live state; it is advanced (engine, no
pre-rendered views) only when something needs the state at the served position:

* a subscribe to a pre-rendered key: the shadow is caught up to the last served slice end,
  renders the snapshot with a temporary view, and the pre-rendered frames after that point
  follow it. This is exact because a depth-window view's frames do not depend on when the
  view was created (at every message boundary it holds ``min(depth, levels)`` per side, see
  :mod:`recorder.sim.feeds`), which ``tests/test_sim_pregen.py`` checks frame for frame;
* keys outside the pre-rendered set (other depths, ``ticker``, ...): the shadow renders
  them live and is then advanced every step (``instrument`` is rendered by the shadow too,
  but needs no stepping: it only changes with instrument changes, which go live anyway);
* REST queries (``Depth``, ``Trades``, ``OHLC``, ``Level3``, ...): answered from the shadow;
* instrument changes (``list``/``delist``/``status`` faults or control calls) change what the
  generator does, so the pre-rendered future is dropped and everything continues live from
  the shadow; so does reaching the end of the horizon.

Start time. Frames carry exchange timestamps, so the market must start when serving starts:
:func:`plan_start` times one calibration second of the same workload, estimates the
generation time of the horizon, and returns a start in the future by that much (plus a
margin); the server sleeps until then before it listens. An underestimate only means the
first slices are already due when serving begins (their frames reach nobody; the shadow
catches up on the first subscribe).
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

from recorder.errors import RecorderError
from recorder.sim.market import FeedKey, SpotMarket
from recorder.sim.events import SimEvent

__all__ = ["DEFAULT_CHANNELS", "STEP_NS", "PregenError", "PregenMarket", "parse_channels",
           "plan_start"]

#: Slice length of the pre-generated stream (the serving clock's tick).
STEP_NS: Final = 5_000_000
#: ``--pregenerate-channels`` default: what ``recorder run`` subscribes on spot.
DEFAULT_CHANNELS: Final = "level3:10,book:10,trade,ohlc:1"
_CHANNEL_PARAMS: Final = {"level3": int, "book": int, "ohlc": int, "trade": None, "ticker": str}
#: Generation-time estimate margin (relative, and absolute seconds). The estimate times one
#: second of generation; long horizons run slower than that as the stream grows (the capture
#: benchmark's 70 s at --rate 60: 134-181 s against an estimate that started it up to 30 s
#: late at a margin of 1.25, so the recorder began with a backlog).
_MARGIN: Final = 1.6
_MARGIN_S: Final = 1.0


_SERVED: Final = (0, (), None)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC while millions of long-lived frames are created (each full collection
    would walk all of them, again and again as they accumulate), then one collection, so
    the slices' tuples are untracked before serving starts rather than during it."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
        gc.collect()


class PregenError(RecorderError, ValueError):
    """A bad ``--pregenerate``/``--pregenerate-channels`` value."""


def parse_channels(spec: str) -> tuple[tuple[Any, ...], ...]:
    """``"level3:10,book:10,trade"`` -> ``(("level3", 10), ("book", 10), ("trade",))``: the
    key shapes (channel and parameter, symbol left out) to pre-render on every pair."""
    shapes: list[tuple[Any, ...]] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, param = item.partition(":")
        if name not in _CHANNEL_PARAMS:
            raise PregenError(f"unknown channel {name!r} (one of {', '.join(_CHANNEL_PARAMS)})")
        kind = _CHANNEL_PARAMS[name]
        if kind is None:
            if param:
                raise PregenError(f"{name} takes no parameter")
            shapes.append((name,))
        elif not param:
            raise PregenError(f"{name} needs a parameter, e.g. {name}:10")
        elif kind is int:
            if not param.isdigit():
                raise PregenError(f"{name}:{param}: parameter must be an integer")
            shapes.append((name, int(param)))
        else:
            shapes.append((name, param))
    if not shapes:
        raise PregenError("no channel to pre-render")
    return tuple(dict.fromkeys(shapes))


def _keys(symbols: Iterable[str], shapes: tuple[tuple[Any, ...], ...]) -> list[FeedKey]:
    return [(shape[0], symbol, *shape[1:]) for symbol in symbols for shape in shapes]


def _generating_market(universe: Any, *, seed: int, rate: float, start_ns: int,
                       shapes: tuple[tuple[Any, ...], ...]) -> SpotMarket:
    market = SpotMarket(universe, seed=seed, rate=rate, start_ns=start_ns)
    for key in _keys(market.symbols, shapes):
        try:
            market.subscribe(key, snapshot=False)
        except KeyError as exc:  # MarketError: e.g. a depth the channel does not offer
            raise PregenError(f"cannot pre-render {key!r}: {exc}") from None
    return market


def plan_start(universe: Any, *, seed: int, rate: float, horizon_s: float,
               shapes: tuple[tuple[Any, ...], ...],
               clock_ns: Callable[[], int] = time.time_ns) -> int:
    """A market start time far enough ahead that generating ``horizon_s`` seconds finishes
    before it: times the construction and one calibration second of the same workload."""
    t0 = time.perf_counter()
    market = _generating_market(universe, seed=seed, rate=rate, start_ns=clock_ns(),
                                shapes=shapes)
    built = time.perf_counter()
    calib_s = min(1.0, horizon_s)
    start = market.now_ns
    steps = max(1, round(calib_s * 1e9 / STEP_NS))
    kept = []  # keep the frames as generation does (same allocation pattern)
    with _gc_paused():
        for i in range(1, steps + 1):
            market.advance(start + i * STEP_NS)
            kept.append(tuple(market.updates()))
        per_s = (time.perf_counter() - built) / calib_s
        del kept, market
    estimate = (built - t0) + per_s * horizon_s
    return clock_ns() + int((estimate * _MARGIN + _MARGIN_S) * 1e9)


class PregenMarket:
    """The :class:`SpotMarket` interface the server uses, over a pre-generated stream.

    ``horizon_s`` exchange seconds from ``start_ns`` are generated in the constructor. Keys
    of ``shapes`` on every pair are served from the stream; everything else (see the module
    docstring) from the shadow market. ``keep_truth``: keep the ground truth of every slice
    for :meth:`advance` to return (only needed with a truth file; costs memory).
    """

    def __init__(self, universe: Any, *, seed: int, rate: float = 1.0, start_ns: int,
                 horizon_s: float, shapes: tuple[tuple[Any, ...], ...],
                 keep_truth: bool = False) -> None:
        if horizon_s <= 0:
            raise PregenError("the pre-generation horizon must be > 0 s")
        gen = _generating_market(universe, seed=seed, rate=rate, start_ns=start_ns, shapes=shapes)
        self.pregen_keys: frozenset[FeedKey] = frozenset(gen.active_keys())
        self.start_ns = start_ns
        steps = max(1, int(horizon_s * 1e9) // STEP_NS)
        self.end_ns = start_ns + steps * STEP_NS
        #: non-empty slices: (slice end ns, update frames, truth events or None); tuples of
        #: strings and key tuples, which the cyclic GC stops tracking after one look
        self._slices: list[tuple[int, tuple[tuple[FeedKey, str], ...],
                                 tuple[SimEvent, ...] | None]] = []
        self.frames = 0
        t0 = time.perf_counter()
        with _gc_paused():
            for i in range(1, steps + 1):
                end = start_ns + i * STEP_NS
                truth = gen.advance(end)
                frames = gen.updates()
                if frames or (keep_truth and truth):
                    self._slices.append((end, tuple(frames), tuple(truth) if keep_truth else None))
                    self.frames += len(frames)
            del gen
        self.generate_s = time.perf_counter() - t0
        self.shadow = SpotMarket(universe, seed=seed, rate=rate, start_ns=start_ns)
        self._next = 0  #: index of the first slice not yet served
        self.served_ns = start_ns  #: end of the last served slice (the shadow's target)
        self.live = False  #: True once the pre-rendered stream was dropped (see go_live)
        self.live_reason: str | None = None
        self._refs: dict[FeedKey, int] = {}
        self._live_keys: dict[FeedKey, int] = {}  #: keys the shadow renders (refs)
        self._out: list[tuple[FeedKey, str]] = []
        self._truth: list[SimEvent] = []

    # ---------------------------------------------------------------- time

    def _sync(self) -> SpotMarket:
        """The shadow, caught up to the served position (its frames so far were delivered)."""
        shadow = self.shadow
        if not self.live and shadow.now_ns < self.served_ns:
            shadow.advance(self.served_ns)  # its truth duplicates the stream's: dropped
            self._out.extend(shadow.updates())
        return shadow

    def advance(self, until_ns: int) -> list[SimEvent]:
        """Serve every slice ending at or before ``until_ns``; returns their ground truth
        (empty unless ``keep_truth``). Past the horizon everything continues live."""
        if self.live:
            return self.shadow.advance(until_ns)
        slices = self._slices
        i = self._next
        n = len(slices)
        out = self._out
        truth = self._truth
        while i < n and slices[i][0] <= until_ns:
            _, frames, events = slices[i]
            out.extend(frames)
            if events:
                truth.extend(events)
            slices[i] = _SERVED  # free the memory
            i += 1
        self._next = i
        if until_ns >= self.end_ns:
            self.served_ns = self.end_ns
            self.go_live("horizon")
            truth.extend(self.shadow.advance(until_ns))
        else:
            served = until_ns - (until_ns - self.start_ns) % STEP_NS
            if served > self.served_ns:
                self.served_ns = served
            if self._live_keys:
                self._sync()
        self._truth = []
        return truth

    @property
    def now_ns(self) -> int:
        return self.shadow.now_ns if self.live else self.served_ns

    def updates(self) -> list[tuple[FeedKey, str]]:
        """Update frames served since the last call, in order (drained)."""
        out = self._out
        self._out = []
        if self.live:
            out.extend(self.shadow.updates())
        return out

    def go_live(self, reason: str) -> None:
        """Drop the pre-rendered future: the shadow, caught up to the served position, renders
        every subscribed key from now on (views created there continue the stream exactly)."""
        if self.live:
            return
        shadow = self._sync()
        for key, refs in self._refs.items():
            for _ in range(refs):
                shadow.subscribe(key, snapshot=False)
        self._slices = []
        self.live = True
        self.live_reason = reason

    # ---------------------------------------------------------------- subscriptions

    def subscribe(self, key: FeedKey, *, snapshot: bool = True) -> list[str]:
        """As :meth:`SpotMarket.subscribe`: the snapshot is the state at the served position."""
        if self.live:
            return self.shadow.subscribe(key, snapshot=snapshot)
        if key[:1] == ("instrument",):  # changes only with instrument changes (live then)
            return self.shadow.subscribe(key, snapshot=snapshot)
        shadow = self._sync()
        if key in self.pregen_keys:
            frames = shadow.subscribe(key, snapshot=snapshot)  # a temporary view
            shadow.unsubscribe(key)
            self._refs[key] = self._refs.get(key, 0) + 1
            return frames
        frames = shadow.subscribe(key, snapshot=snapshot)
        self._live_keys[key] = self._live_keys.get(key, 0) + 1
        return frames

    def unsubscribe(self, key: FeedKey) -> None:
        if self.live or key[:1] == ("instrument",):
            self.shadow.unsubscribe(key)
            return
        refs = self._refs if key in self.pregen_keys else self._live_keys
        count = refs.get(key, 0)
        if count <= 0:
            return
        if count == 1:
            del refs[key]
        else:
            refs[key] = count - 1
        if refs is self._live_keys:
            self.shadow.unsubscribe(key)

    def active_keys(self) -> list[FeedKey]:
        if self.live:
            return self.shadow.active_keys()
        return [*self._refs, *self.shadow.active_keys()]

    # ---------------------------------------------------------------- instruments (go live)

    def set_pair_status(self, symbol: str, status: str) -> Any:
        self.go_live("instrument change")
        return self.shadow.set_pair_status(symbol, status)

    def list_pair(self, spec: Any) -> Any:
        self.go_live("instrument change")
        return self.shadow.list_pair(spec)

    def delist_pair(self, symbol: str) -> Any:
        self.go_live("instrument change")
        return self.shadow.delist_pair(symbol)

    # ---------------------------------------------------------------- state queries (shadow)

    @property
    def symbols(self) -> tuple[str, ...]:
        return self.shadow.symbols

    def pair_status(self, symbol: str) -> str:
        return self.shadow.pair_status(symbol)

    def activity(self, symbol: str) -> float:
        return self.shadow.activity(symbol)

    def engine(self, symbol: str) -> Any:
        return self._sync().engine(symbol)

    def depth(self, symbol: str, count: int) -> Any:
        return self._sync().depth(symbol, count)

    def l3_orders(self, symbol: str, depth: int) -> Any:
        return self._sync().l3_orders(symbol, depth)

    def trades_since(self, symbol: str, since_ns: int | None, count: int = 1000) -> Any:
        return self._sync().trades_since(symbol, since_ns, count)

    def ohlc(self, symbol: str, interval: int) -> Any:
        return self._sync().ohlc(symbol, interval)

    def ticker(self, symbol: str) -> dict[str, Any]:
        return self._sync().ticker(symbol)

    def rest_ticker(self, symbol: str) -> Any:
        return self._sync().rest_ticker(symbol)

    def spreads(self, symbol: str) -> Any:
        return self._sync().spreads(symbol)

    def last_trade_id(self, symbol: str) -> int:
        return self._sync().last_trade_id(symbol)
