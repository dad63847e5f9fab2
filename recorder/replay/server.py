"""The replay server: the simulator's server with a recorded archive as its source of market.

:class:`ReplayServer` is a :class:`~recorder.sim.server.SimServer` (same endpoints, same
connections, same REST code, same start-up line) whose markets come from the archive:
the WebSocket endpoints subscribe through :class:`~recorder.replay.market.ReplayMarket`, the
REST methods answer from :mod:`recorder.replay.rest` as of the replay clock, and the clock task
drives :class:`~recorder.replay.clock.ReplayClock` instead of a generator.

The clock starts ``start_delay_s`` after the first subscription and is shared by every client:
each new subscription gets the state at the current replay time. Flow control:

* ``--speed X``: frames are due at their recorded spacing divided by X; a client that cannot
  keep up is treated as Kraken treats it (the simulator's rule: more than ``send_queue``
  frames waiting while its socket is full -> disconnected), and nobody else waits for it.
* ``--max-speed``: frames are served as fast as the slowest client reads. A step routes at
  most ``step_frames`` frames; the clock does not take another step while any client has more
  than ``high_water`` frames waiting or its socket buffer full with frames waiting, so the
  server never holds more than about ``high_water + step_frames`` frames per client (plus
  what the kernel buffers: ``socket_buffer``). A slow client slows the replay down; one that
  makes no progress at all for ``stall_timeout_s`` is disconnected (a slow consumer).

When the window is exhausted the clock stops at its end and the server goes on serving
(heartbeats, REST as of the end) until stopped; ``/control/stats`` says ``replay_finished``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from recorder.replay.catalog import Catalog, load_catalog
from recorder.replay.clock import ReplayClock
from recorder.replay.market import ReplayMarket, Subscribed
from recorder.replay.rebuild import Rebuilder, wire_object
from recorder.replay.source import JournalSource
from recorder.sim.auth import TokenStore
from recorder.sim.server import SIM_KEY, SimConfig, SimError, SimServer
from recorder.sim.spot_ws import WRITE_BUFFER_LIMIT
from recorder.sim.universe import FuturesProduct, Universe, UniverseError, pair_from_wire

__all__ = ["ReplayConfig", "ReplayError", "ReplayServer", "build_universe"]

_POLL_S: Final = 0.001


class ReplayError(SimError):
    """The replay cannot start (no archive there, nothing recorded in the window, ...)."""


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    """What ``recorder replay`` serves and how fast (CLI flags map 1:1)."""

    archive: tuple[str, ...]
    start_ns: int | None = None  #: the replay starts from the state at this receive time
    end_ns: int | None = None
    speed: float | None = 1.0  #: None: --max-speed
    symbols: frozenset[str] | None = None
    start_delay_s: float = 0.0
    step_frames: int = 4096
    high_water: int = 8192
    stall_timeout_s: float = 30.0
    #: SO_SNDBUF of every client socket (None: the OS's, which grows to megabytes)
    socket_buffer: int | None = None


def build_universe(catalog: Catalog) -> Universe:
    """The replay's instruments: every pair the window holds market data of (with its
    recorded ``instrument`` attributes as of the window's end), their assets, and the futures
    products recorded (the archive holds no futures instrument details: only the id)."""
    held = catalog.symbols()
    assets, pairs = catalog.instruments_at(catalog.end_ns)
    spot = []
    for row in pairs:
        if row.symbol not in held:
            continue
        try:
            spot.append(pair_from_wire(wire_object(row.attributes)))
        except UniverseError:
            continue
    used = {p.base for p in spot} | {p.quote for p in spot}
    asset_wires = tuple(wire_object(r.attributes) for r in assets if r.symbol in used)
    books = {symbol for channel, symbol in catalog.coverage.books() if channel == "futures_book"}
    products = sorted(books | catalog.futures_trades | catalog.futures_tickers)
    futures = tuple(FuturesProduct(product_id=p, tag="", pair="", tick_size="", contract_size="",
                                   price_precision=0, qty_precision=0, maturity_ms=None,
                                   ref_price="", wire={"symbol": p, "tradeable": True})
                    for p in products)
    return Universe(assets=asset_wires, pairs=tuple(spot), futures=futures)


class ReplayServer(SimServer):
    """See module docstring."""

    def __init__(self, config: SimConfig, replay: ReplayConfig, *,
                 wall_ns: Callable[[], int] = time.time_ns,
                 out: Callable[[str], None] | None = None) -> None:
        from recorder.query.api import Archive
        from recorder.roots import ArchiveRootError

        self.replay_config = replay
        self._wall_ns = wall_ns
        self.log = out or (lambda line: print(line, file=sys.stderr, flush=True))
        try:
            self.archive = Archive(list(replay.archive))
        except (ArchiveRootError, OSError) as exc:
            raise ReplayError(f"--archive: {exc}") from exc
        try:
            self.catalog = load_catalog(self.archive, start_ns=replay.start_ns,
                                        end_ns=replay.end_ns,
                                        symbols=set(replay.symbols) if replay.symbols else None)
        except ValueError as exc:
            raise ReplayError(str(exc)) from exc
        except Exception as exc:  # unreadable metadata: one line, no traceback
            raise ReplayError(f"cannot read the archive's epochs, gaps or instruments "
                              f"({type(exc).__name__}: {exc})"[:800]) from exc
        if not self.catalog.symbols():
            raise ReplayError("the archive holds no market data in this window"
                              + (" for --symbols" if replay.symbols else ""))
        self.clock = ReplayClock(self.catalog.start_ns, self.catalog.end_ns, speed=replay.speed,
                                 wall_ns=wall_ns)
        self.journal_problems: list[str] = []
        #: why the clock stopped early (the command exits 1 with it), None if it did not
        self.failure: str | None = None
        super().__init__(config, build_universe(self.catalog), clock_ns=self.clock.now_ns,
                         out=out)
        # tokens expire in wall time (a replay's clock may run much faster than 15 minutes)
        self.tokens = TokenStore(clock_ns=wall_ns, ttl_s=config.token_ttl_s)
        self._go = asyncio.Event()
        #: blocking connection -> ((frames handed to its socket, -unsent bytes), when it last grew)
        self._progress: dict[int, tuple[tuple[int, int], float]] = {}
        self.stats.update(replay_frames_read=0, replay_frames_routed=0, replay_withheld=0,
                          replay_duplicates=0, replay_snapshots_rebuilt=0, replay_split=0,
                          replay_finished=False, replay_started=False,
                          replay_cut_ns=self.catalog.start_ns, replay_journal_problems=0,
                          replay_max_queued=0, replay_rebuild_errors=0)

    # --- the source of market -----------------------------------------------------------------

    def _make_markets(self, start_ns: int | None) -> tuple[Any, Any | None]:
        from recorder.replay.rest import ReplayFuturesData, ReplaySpotData

        self.start_ns = self.catalog.start_ns
        source = JournalSource(self.archive.roots, self.catalog.start_ns, self.catalog.end_ns,
                               on_problem=self._journal_problem)
        self.rebuilder = Rebuilder(self.archive, self.catalog)
        self.replay = ReplayMarket(self.catalog, self.rebuilder, iter(source),
                                   symbols=set(self.replay_config.symbols)
                                   if self.replay_config.symbols else None,
                                   hold=self._hold, on_error=self._rebuild_error)
        return ReplaySpotData(self), ReplayFuturesData(self)

    def _journal_problem(self, root: Path, segment: str, error: str) -> None:
        text = f"{root.name}/journal/{segment}: {error}"
        self.journal_problems.append(text)
        self.stats["replay_journal_problems"] = len(self.journal_problems)
        self.log(f"recorder replay: journal segment {text}; its complete records are served")

    def _rebuild_error(self, text: str) -> None:
        self.stats["replay_rebuild_errors"] = self.replay.stats.rebuild_errors
        self.log(f"recorder replay: {text}; served without that snapshot")

    def _hold(self, on: bool) -> None:
        if on:
            self.clock.hold()
        else:
            self.clock.release()

    def subs_of(self, registry: str, key: tuple) -> set[Any]:
        return (self.spot_subs if registry == "spot" else self.futures_subs).get(key, set())

    def subscribe(self, registry: Any, key: tuple, *, snapshot: bool) -> Subscribed:
        """A connection subscribes ``key``: the replay market's answer at the cut; the first
        subscription starts the clock."""
        got = self.replay.subscribe(registry, key, snapshot=snapshot)
        self._go.set()
        return got

    # --- lifecycle ----------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        from recorder.replay import ws
        from recorder.sim import control, rest

        app = web.Application(client_max_size=1 << 20)
        app[SIM_KEY] = self
        app.router.add_get("/v2", ws.spot_handler)
        app.router.add_get("/l3/v2", ws.l3_handler)
        app.router.add_get("/ws/v1", ws.futures_handler)
        rest.add_routes(app)
        app.router.add_get("/control/stats", control.get_stats)
        return app

    async def start(self) -> dict[str, Any]:
        urls = await super().start()
        from recorder.query.timeparse import ns_to_iso

        cfg = self.replay_config
        urls.pop("truth", None)
        urls.pop("pregenerated", None)
        urls.pop("seed", None)
        urls.update({
            "archive": [str(r) for r in self.archive.roots],
            "from": ns_to_iso(self.catalog.start_ns), "to": ns_to_iso(self.catalog.end_ns),
            "from_ns": self.catalog.start_ns, "to_ns": self.catalog.end_ns,
            "speed": "max" if cfg.speed is None else cfg.speed,
            "symbols": len(self.catalog.symbols()),
        })
        self.urls = urls
        return urls

    # --- the clock ----------------------------------------------------------------------------

    async def _clock(self) -> None:
        cfg = self.replay_config
        tick = self.config.tick_s
        await self._go.wait()
        if cfg.start_delay_s > 0:
            await asyncio.sleep(cfg.start_delay_s)
        self.clock.start()
        self.stats["replay_started"] = True
        while True:
            if self.replay.exhausted:
                self.stats["replay_finished"] = True
                await asyncio.sleep(tick * 20)
                continue
            if self.clock.max_speed:
                if self._blocked():
                    await asyncio.sleep(_POLL_S)
                    continue
                target = None
            else:
                target = self.clock.target()
            try:
                routed = self.step_replay(target, cfg.step_frames)
            except Exception as exc:  # noqa: BLE001 - reported, then a clean stop
                self.failure = f"the replay stopped: {type(exc).__name__}: {exc}"[:800]
                self.log(f"recorder replay: {self.failure}")
                self.request_stop()
                return
            full = routed >= cfg.step_frames
            await asyncio.sleep(0 if (full or self.clock.max_speed) else tick)

    def step_replay(self, target: int | None, budget: int) -> int:
        """One step: route the frames due (at most ``budget``, see
        :meth:`ReplayMarket.advance`) to the subscribed connections; returns frames read."""
        market = self.replay
        before = market.stats.frames_read
        dispatches = market.advance(target, budget)
        self.clock.advance_to(market.cut_ns)
        registries = {"spot": self.spot_subs, "futures": self.futures_subs}
        for registry, key, frame, snapshot, resync in dispatches:
            subs = registries[registry].get(key)
            if subs:
                for conn in subs:  # delivering never changes the subscriber set
                    conn.deliver(frame, key, snapshot, resync)
        s, st = market.stats, self.stats
        st["ticks"] += 1
        st["replay_frames_read"] = s.frames_read
        st["replay_frames_routed"] = s.frames_routed
        st["replay_withheld"] = s.frames_withheld
        st["replay_duplicates"] = s.duplicates_skipped
        st["replay_snapshots_rebuilt"] = s.snapshots_rebuilt
        st["replay_split"] = s.frames_split
        st["replay_cut_ns"] = market.cut_ns
        return s.frames_read - before

    def _blocked(self) -> bool:
        """Max speed: does a client hold the clock back (see module docstring)? A blocking
        client that made no progress (nothing handed to its socket, its unsent bytes not
        shrinking) for ``stall_timeout_s`` is disconnected; a slow one only slows the replay."""
        high = self.replay_config.high_water
        blocking = []
        most = self.stats["replay_max_queued"]
        now = time.monotonic()
        for c in self.connections.values():
            queued = c.queued()
            most = max(most, queued)
            if not c.closed and (queued >= high
                                 or (queued and c.write_backlog() > WRITE_BUFFER_LIMIT)):
                blocking.append(c)
                mark = (c.sent, -c.write_backlog())
                seen = self._progress.get(c.id)
                if seen is None or mark > seen[0]:
                    self._progress[c.id] = (mark, now)
            else:
                self._progress.pop(c.id, None)
        self.stats["replay_max_queued"] = most
        if not blocking:
            return False
        for conn in blocking:
            _, since = self._progress[conn.id]
            if now - since > self.replay_config.stall_timeout_s:
                self.stats["slow_disconnects"] += 1
                self.record("slow_consumer", conn=conn.id, endpoint=conn.endpoint,
                            queued=conn.queued())
                self._progress.pop(conn.id, None)
                conn.abort()
        return True

    async def stop(self) -> None:
        await super().stop()
        with contextlib.suppress(Exception):
            self.archive.close()
