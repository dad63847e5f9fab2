"""The I/O shell of ``recorder sim``: one aiohttp application on one port around the pure markets.

Endpoints (all on ``http://HOST:PORT`` / ``ws://HOST:PORT``):

=========================================  ================================================
``/v2``                                    Spot WS v2 public (book, trade, ticker, ohlc, instrument)
``/l3/v2``                                 Spot WS v2 level3 (token from GetWebSocketsToken)
``/ws/v1``                                 Futures WS v1 (book, trade, ticker, ticker_lite, heartbeat)
``/0/public/{Time,SystemStatus,Assets,AssetPairs,Ticker,OHLC,Depth,Trades,Spread}``  Spot REST (GET or POST)
``/0/private/{GetWebSocketsToken,Level3}``  Spot REST private (POST, API-Key/API-Sign)
``/derivatives/api/v3/{instruments[/status],tickers[/SYM],orderbook,history}``  Futures REST
``/control/faults``                        GET rules / POST ``{"spec": ..., "replace": bool}`` or ``{"clear": true}``
``/control/instrument``                    POST ``{"action": "list"|"delist"|"status", "symbol": ..., "status": ...}``
``/control/stats``                         GET counters (frames sent, connections, ...)
=========================================  ================================================

With ``fix_l2_port`` / ``fix_l3_port`` set, FIX 4.4 market data is also served over TLS on
those ports (:mod:`recorder.sim.fix_acceptor`, Kraken's ports 4000 and 4005) from the same
spot market, with a self-signed certificate whose path the URLs name (``fix_cert``).

A clock task advances both markets every ``tick_s`` to the wall clock, writes the ground-truth
events, and fans the markets' shared update frames out to the subscribed connections, whose
pending frames are written in one pre-framed transport write per loop iteration (see
:class:`recorder.sim.spot_ws.Connection`: a client that cannot drain while more than
``send_queue`` frames wait is disconnected and recorded; others are unaffected). Faults are
decided per connection by :class:`recorder.sim.faults.FaultPlan`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from recorder.errors import RecorderError
from recorder.sim.auth import KeyStore, TokenStore
from recorder.sim.faults import FaultPlan, FaultRule
from recorder.sim.truth import TruthWriter
from recorder.sim.universe import SpotPair, Universe, make_pair

if TYPE_CHECKING:
    from recorder.sim.spot_ws import Connection

__all__ = ["SIM_KEY", "SimConfig", "SimServer", "SimError"]


class SimError(RecorderError, RuntimeError):
    """The simulator cannot start (port in use, market unavailable, ...)."""


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Every knob of a serving simulator (CLI flags map 1:1)."""

    host: str = "127.0.0.1"
    port: int = 8787
    seed: int = 0
    rate: float = 1.0  #: market activity multiplier
    tick_s: float = 0.005  #: clock period
    heartbeat_s: float = 1.0  #: spot heartbeat period (only when subscribed and otherwise silent)
    futures_heartbeat_s: float = 1.0
    idle_timeout_s: float = 60.0  #: close a WS after this long without client traffic
    msg_rate: int = 50  #: client requests per second per connection before ``Exceeded msg rate``
    send_queue: int = 50_000  #: frames pending on a connection that cannot drain before it is dropped as too slow
    l3_max_symbols: int = 200
    l3_budget: int = 200  #: level3 subscription cost budget per second (cost 5/25/100)
    token_ttl_s: float = 900.0
    rest_burst: int = 60  #: public REST calls per IP before ``EGeneral:Too many requests``
    rest_refill_per_s: float = 2.0
    private_max: float = 20.0  #: private REST call counter maximum (``EAPI:Rate limit exceeded``)
    private_decay_per_s: float = 0.5
    keys: dict[str, str] = field(default_factory=dict)
    faults: tuple[FaultRule, ...] = ()
    truth_path: Path | None = None
    #: > 0: serve a spot market pre-generated for this many exchange seconds (see
    #: :mod:`recorder.sim.pregen`); 0: generate it live
    pregenerate_s: float = 0.0
    #: the keys pre-rendered on every pair (:func:`recorder.sim.pregen.parse_channels`)
    pregenerate_channels: str = "level3:10,book:10,trade,ohlc:1"
    #: FIX 4.4 market data over TLS: L2 / L3 port (None: not served; 0: a free port)
    fix_l2_port: int | None = None
    fix_l3_port: int | None = None
    #: where the FIX certificate and key are written (None: a temporary directory)
    fix_cert_dir: Path | None = None


def rfc3339_us(ns: int) -> str:
    """RFC3339 UTC with microseconds, as Kraken's acks and book/trade timestamps."""
    seconds, rem = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rem // 1000:06d}Z"


#: The application key under which handlers find the :class:`SimServer`.
SIM_KEY: web.AppKey[SimServer] = web.AppKey("sim")


def _load_market_classes() -> tuple[Any, Any | None]:
    """The market classes; futures are optional (``None``: futures endpoints answer errors)."""
    try:
        from recorder.sim.market import SpotMarket
    except ImportError as exc:  # pragma: no cover - only while the market is being written
        raise SimError(f"the simulated spot market is not available: {exc}") from exc
    try:
        from recorder.sim.futures_market import FuturesMarket
    except ImportError:  # pragma: no cover
        return SpotMarket, None
    return SpotMarket, FuturesMarket


class SimServer:
    """The serving simulator. ``await start()`` then ``await wait_closed()``; ``request_stop()``
    (or a signal) ends it; ``await stop()`` performs the clean shutdown."""

    def __init__(
        self,
        config: SimConfig,
        universe: Universe,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        out: Callable[[str], None] | None = None,
        start_ns: int | None = None,
    ) -> None:
        self.config = config
        self.universe = universe
        self.clock_ns = clock_ns
        self._out = out
        self.pregen: dict[str, Any] | None = None
        self.start_ns = 0
        self.spot, self.futures = self._make_markets(start_ns)
        self.truth = TruthWriter(config.truth_path) if config.truth_path is not None else None
        self.faults = FaultPlan(
            list(config.faults), seed=config.seed, clock_ns=clock_ns, sink=self._record
        )
        self.keys = KeyStore(config.keys)
        self.tokens = TokenStore(clock_ns=clock_ns, ttl_s=config.token_ttl_s)
        self._conn_rng = random.Random(f"conn:{config.seed}")
        #: spot pairs currently listed (symbol -> pair) and their live status
        self.pairs: dict[str, SpotPair] = {p.symbol: p for p in universe.pairs}
        self.status: dict[str, str] = {p.symbol: p.status for p in universe.pairs}
        self.products = {f.product_id: f for f in universe.futures}
        self.spot_subs: dict[tuple, set[Connection]] = {}
        self.futures_subs: dict[tuple, set[Any]] = {}
        self.connections: dict[int, Any] = {}
        self.stats: dict[str, int] = {
            "frames_sent": 0, "connections": 0, "slow_disconnects": 0, "idle_disconnects": 0,
            "ticks": 0, "events": 0, "lag_ms": 0,
        }
        self._runner: web.AppRunner | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listings = 0
        self.urls: dict[str, Any] = {}
        self.fix_servers: list[Any] = []
        self._fix_tmp: Any = None

    def _make_markets(self, start_ns: int | None) -> tuple[Any, Any | None]:
        """The source of market: ``(spot, futures)`` (futures None: the futures endpoints
        answer errors); sets ``start_ns`` (and ``pregen``). Here the generated markets (live or
        pre-generated); :class:`recorder.replay.server.ReplayServer` overrides this to serve a
        recorded archive through the same endpoints."""
        config, universe, clock_ns = self.config, self.universe, self.clock_ns
        spot_cls, futures_cls = _load_market_classes()
        if config.pregenerate_s > 0:
            from recorder.sim.pregen import PregenError, PregenMarket, parse_channels, plan_start

            try:
                shapes = parse_channels(config.pregenerate_channels)
                if start_ns is None:  # in the future: serving starts when generation is done
                    start_ns = plan_start(universe, seed=config.seed, rate=config.rate,
                                          horizon_s=config.pregenerate_s, shapes=shapes,
                                          clock_ns=clock_ns)
                self.start_ns = start_ns
                spot: Any = PregenMarket(universe, seed=config.seed, rate=config.rate,
                                         start_ns=start_ns, horizon_s=config.pregenerate_s,
                                         shapes=shapes, keep_truth=config.truth_path is not None)
            except PregenError as exc:
                raise SimError(f"--pregenerate: {exc}") from exc
            self.pregen = {"seconds": config.pregenerate_s, "frames": spot.frames,
                           "keys": len(spot.pregen_keys),
                           "generate_s": round(spot.generate_s, 3)}
        else:
            self.start_ns = clock_ns() if start_ns is None else start_ns
            spot = spot_cls(universe, seed=config.seed, rate=config.rate, start_ns=self.start_ns)
        futures = (
            futures_cls(universe, seed=config.seed, rate=config.rate, start_ns=self.start_ns)
            if futures_cls is not None else None
        )
        return spot, futures

    # --- identity / recording -----------------------------------------------------------------

    def new_connection_id(self) -> int:
        """A Kraken-like connection id (> 2**63, < 2**64)."""
        return (1 << 63) + self._conn_rng.getrandbits(63)

    def _record(self, record: dict[str, Any]) -> None:
        if self.truth is not None:
            self.truth.write_record(record)

    def record(self, kind: str, **fields: Any) -> None:
        """A lifecycle line in the truth file (``connect``, ``disconnect``, ``slow_consumer``...)."""
        self._record({"t_ns": self.clock_ns(), "kind": kind, **fields})

    # --- lifecycle ---------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        from recorder.sim import control, futures_ws, rest, spot_ws

        app = web.Application(client_max_size=1 << 20)
        app[SIM_KEY] = self
        app.router.add_get("/v2", spot_ws.spot_handler)
        app.router.add_get("/l3/v2", spot_ws.l3_handler)
        app.router.add_get("/ws/v1", futures_ws.futures_handler)
        rest.add_routes(app)
        control.add_routes(app)
        return app

    async def start(self) -> dict[str, Any]:
        """Bind, start the clock, and return the endpoint URLs (``port`` resolved if 0).
        A market starting in the future (pre-generated) is waited for first."""
        early_s = (self.start_ns - self.clock_ns()) / 1e9
        if early_s > 0:
            await asyncio.sleep(early_s)
        if self.pregen is not None:  # > 0: generation overran the planned start
            self.pregen["start_late_s"] = round(max(0.0, -early_s), 3)
        app = self.build_app()
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise SimError(f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}") from exc
        server = site._server  # noqa: SLF001 - aiohttp exposes no public accessor for the bound port
        assert server is not None and server.sockets
        port = server.sockets[0].getsockname()[1]
        host = self.config.host
        http, ws = f"http://{host}:{port}", f"ws://{host}:{port}"
        self.urls = {
            "event": "listening", "host": host, "port": port,
            "spot_ws": f"{ws}/v2", "l3_ws": f"{ws}/l3/v2", "futures_ws": f"{ws}/ws/v1",
            "rest": http, "spot_rest": f"{http}/0", "futures_rest": f"{http}/derivatives/api/v3",
            "control": f"{http}/control", "seed": self.config.seed,
            "pairs": len(self.pairs), "futures": len(self.products),
            "truth": str(self.config.truth_path) if self.config.truth_path else None,
            "pregenerated": self.pregen,
        }
        if self.config.fix_l2_port is not None or self.config.fix_l3_port is not None:
            try:
                self.urls.update(await self._start_fix())
            except OSError as exc:
                await self._stop_fix()
                await self._runner.cleanup()
                raise SimError(f"cannot serve FIX: {exc.strerror or exc}") from exc
        self.record("server_start", urls=self.urls)
        self._tasks.append(asyncio.create_task(self._clock(), name="sim-clock"))
        return self.urls

    async def _start_fix(self) -> dict[str, Any]:
        """Start the FIX acceptors (one certificate for both); returns their URLs."""
        import tempfile

        from recorder.sim.fix_acceptor import FixAcceptorServer, self_signed_tls

        config = self.config
        directory = config.fix_cert_dir.resolve() if config.fix_cert_dir is not None else None
        if directory is None:
            self._fix_tmp = tempfile.TemporaryDirectory(prefix="recorder-sim-fix-")
            directory = Path(self._fix_tmp.name)
        directory.mkdir(parents=True, exist_ok=True)
        tls = self_signed_tls(directory, config.host)
        urls: dict[str, Any] = {"fix_cert": str(tls[1]), "fix_sender_comp_id": "KRAKEN-MD"}
        for name, port, level3 in (("fix_l2", config.fix_l2_port, False),
                                   ("fix_l3", config.fix_l3_port, True)):
            if port is None:
                continue
            server = FixAcceptorServer(self.spot, self.clock_ns, level3=level3,
                                       host=config.host, port=port, tls=tls,
                                       on_event=self.record)
            self.fix_servers.append(server)
            bound = await server.start()
            urls[name] = f"tls://{config.host}:{bound}"
        return urls

    async def _stop_fix(self) -> None:
        for server in self.fix_servers:
            await server.close()
        self.fix_servers.clear()
        if self._fix_tmp is not None:
            self._fix_tmp.cleanup()
            self._fix_tmp = None

    def request_stop(self) -> None:
        self._stop.set()

    async def wait_closed(self) -> None:
        """Serve until :meth:`request_stop`, then shut down cleanly."""
        await self._stop.wait()
        await self.stop()

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for conn in list(self.connections.values()):
            await conn.shutdown()
        await self._stop_fix()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.record("server_stop", stats=self.stats)
        if self.truth is not None:
            self.truth.close()

    # --- the clock ---------------------------------------------------------------------------

    async def _clock(self) -> None:
        """Advance the markets to the wall clock every ``tick_s``.

        When the market cannot keep up (a step takes longer than the time it covers), advance
        in slices of at most ``4 * tick_s`` of exchange time and only yield one loop iteration
        between slices (``sleep(0)``: readers, flushes and timers run, no idle wait) until the
        clock has caught up; the lag is reported in ``stats["lag_ms"]``. Frames rendered by a
        step reach the sockets in the same loop iteration (see
        :class:`recorder.sim.spot_ws.Connection`)."""
        tick = self.config.tick_s
        max_slice = int(tick * 4e9)
        target = self.start_ns
        while True:
            now = self.clock_ns()
            target = min(now, target + max_slice) if now - target > max_slice else now
            try:
                self.step(target)
            except Exception as exc:
                self.record("clock_error", error=repr(exc))
                raise
            lag = now - target
            self.stats["lag_ms"] = lag // 1_000_000
            await asyncio.sleep(0 if lag > 0 else tick)

    def step(self, now_ns: int) -> None:
        """Advance both markets to ``now_ns``, record truth, fan out frames, fire faults.

        Synchronous on purpose: updates are drained right after ``advance`` so that a
        subscriber added between two steps sees its snapshot before any later update.
        """
        self.stats["ticks"] += 1
        events = self.spot.advance(now_ns)
        updates = self.spot.updates()
        if self.futures is not None:
            fevents = self.futures.advance(now_ns)
            fupdates = self.futures.updates()
        else:
            fevents, fupdates = [], []
        if self.truth is not None:
            self.truth.write_events(events)
            self.truth.write_events(fevents)
        self.stats["events"] += len(events) + len(fevents)
        for key, frame in updates:
            subs = self.spot_subs.get(key)
            if subs:
                for conn in tuple(subs):
                    conn.send_data(frame, key)
        for key, frame in fupdates:
            subs = self.futures_subs.get(key)
            if subs:
                for conn in tuple(subs):
                    conn.send_data(frame, key)
        for fix_server in self.fix_servers:
            fix_server.tick()
        if self.faults.active:
            self._fire_scheduled()

    def _fire_scheduled(self) -> None:
        for rule in self.faults.due_connection_faults():
            for conn in list(self.connections.values()):
                if rule.endpoint is not None and rule.endpoint != conn.endpoint:
                    continue
                if (rule.channel or rule.symbol) and not conn.subscribed_to(rule.channel, rule.symbol):
                    continue
                detail = {"rule": rule.text}
                if rule.kind == "stall":
                    detail["duration_s"] = rule.duration
                    conn.stall(rule.duration or 5.0)
                else:
                    conn.abort()
                self.faults.record(rule.kind, conn=conn.id, endpoint=conn.endpoint,
                                   channel=rule.channel, symbol=rule.symbol, detail=detail)
        for rule in self.faults.due_fix_faults():
            for fix_server in self.fix_servers:
                if rule.endpoint is None or rule.endpoint == fix_server.endpoint:
                    fix_server.inject(rule.kind, symbol=rule.symbol, duration_s=rule.duration,
                                      record=self._record_fix_fault(rule))
        for rule in self.faults.due_instrument_changes():
            try:
                if rule.kind == "list":
                    symbol = self.list_pair(rule.symbol)
                    status = "online"
                elif rule.kind == "delist":
                    online = sorted(s for s, st in self.status.items() if st == "online")
                    symbol = rule.symbol or (self.faults.choose(online) if online else None)
                    if symbol is None:
                        continue
                    self.delist_pair(symbol)
                    status = "delisted"
                else:
                    assert rule.symbol is not None and rule.status is not None
                    symbol, status = rule.symbol, rule.status
                    self.set_pair_status(symbol, status)
            except (KeyError, ValueError) as exc:
                self.record("fault_failed", rule=rule.text, error=str(exc))
                continue
            self.faults.record(rule.kind, channel="instrument", symbol=symbol,
                               detail={"rule": rule.text, "status": status})

    def _record_fix_fault(self, rule: FaultRule) -> Callable[..., None]:
        def record(kind: str, *, detail: dict[str, Any], **where: Any) -> None:
            self.faults.record(kind, detail={"rule": rule.text, **detail}, **where)
        return record

    # --- instrument changes (control endpoint and faults) ------------------------------------

    def _fan_instrument(self, result: Any) -> None:
        """Instrument changes queue their update frames in the market; send them right away
        (drained from :meth:`SpotMarket.updates`, which only holds frames of this instant)."""
        for key, frame in self.spot.updates():
            for conn in tuple(self.spot_subs.get(key, ())):
                conn.send_data(frame, key)

    def list_pair(self, symbol: str | None) -> str:
        """List a new pair (``symbol`` or an invented ``SIMn/USD``); returns its symbol."""
        if symbol is None:
            while True:
                self._listings += 1
                symbol = f"SIM{self._listings}/USD"
                if symbol not in self.pairs:
                    break
        if symbol in self.pairs and self.status.get(symbol) != "delisted":
            raise ValueError(f"{symbol} is already listed")
        pair = make_pair(symbol, seed=self.config.seed)
        self._fan_instrument(self.spot.list_pair(pair))
        self.pairs[symbol] = pair
        self.status[symbol] = pair.status
        return symbol

    def delist_pair(self, symbol: str) -> None:
        if symbol not in self.pairs or self.status.get(symbol) == "delisted":
            raise KeyError(f"{symbol} is not listed")
        self._fan_instrument(self.spot.delist_pair(symbol))
        self.status[symbol] = "delisted"

    def set_pair_status(self, symbol: str, status: str) -> None:
        if symbol not in self.pairs or self.status.get(symbol) == "delisted":
            raise KeyError(f"{symbol} is not listed")
        self._fan_instrument(self.spot.set_pair_status(symbol, status))
        self.status[symbol] = status

    def is_listed(self, symbol: object) -> bool:
        return isinstance(symbol, str) and self.status.get(symbol, "delisted") != "delisted"
