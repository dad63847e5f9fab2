"""Load generator of the capture benchmark: pre-rendered Kraken Spot v2 frames, served in batches.

``recorder sim`` renders and frames every message as it serves it (about 22 CPU-us per frame
even with ``--pregenerate``), so beside the recorder on a 2-core machine it cannot offer
100,000 msgs/s. This generator moves all of that before the timed window:

``render`` (``python -m benchmarks.loadgen render --out FILE ...``), once per benchmark run:
a generating :class:`~recorder.sim.market.SpotMarket` with a view on every key of
``--channels`` (default what ``recorder run`` subscribes: ``level3`` depth 10, ``book``
depth 10, ``trade``, ``ohlc`` 1) on every pair is advanced in
:data:`~recorder.sim.pregen.STEP_NS` slices from ``start_ns`` until ``--frames`` update frames
exist; each frame is kept already framed as a WebSocket text frame
(:func:`~recorder.sim.spot_ws.encode_text_frames`). The frames are the simulator's own:
real Kraken v2 ``book``/``level3`` updates with valid CRC32 checksums, trades with continuous
ids, ohlc bars.

``serve`` (``python -m benchmarks.loadgen serve --stream FILE ...``), one process per
benchmark run: the :class:`~recorder.sim.server.SimServer` protocol path unchanged (status
greeting, subscribe acks and errors, level3 token and budget, REST, heartbeats), over a
:class:`StreamMarket` frozen at the stream's start: every subscription is answered with the
snapshot of that state (rendered by a fresh market of the same universe, seed and rate, which
is exactly the state the stream's first update applies to, see :mod:`recorder.sim.pregen`),
and no update flows until the benchmark says so:

* ``POST /control/loadgen {"action": "arm"}``: each connection's stream (the update frames of
  the keys it subscribed, in stream order) is joined into one bytes buffer with the offset
  after every slice;
* ``{"action": "go", "rate": R}``: frames become due at ``R`` per second (in the merged
  stream order over all connections, ``int(R * elapsed)`` frames); every ``tick_s`` each
  connection gets everything due in one ``transport.write`` of a slice of its buffer (no
  per-frame work while serving). A connection whose transport holds more than
  :data:`~recorder.sim.spot_ws.WRITE_BUFFER_LIMIT` unsent bytes is not written to (its due
  frames wait: ``backlog``, the recorder not keeping up);
* ``{"action": "stop"}``: no more stream frames, and no heartbeats, so that every frame the
  generator wrote can be counted in the recorder's journal;
* ``GET /control/loadgen``: counters (frames due, written, backlog, every frame written on a
  spot/level3 socket, process CPU seconds, subscriptions the stream cannot serve).

What it cannot do faithfully is refused in its counters, never faked: a subscription after
``arm`` (its snapshot would be the start state, not the served position), an unsubscribe
after ``arm``, a key outside the rendered set, an instrument change. The benchmark fails a
run where any is non-zero. Exchange timestamps inside the frames advance at the render
market's pace (``--market-rate``), not at the offered rate, so the recorder's
exchange->receive lag drifts by design; kept-up is judged from the backlog instead.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import pickle
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from recorder.errors import RecorderError

__all__ = ["LoadgenError", "RenderedStream", "StreamMarket", "make_server", "render_stream",
           "save_stream", "load_stream", "main"]

_FORMAT: Final = "recorder-loadgen-stream/1"


class LoadgenError(RecorderError, RuntimeError):
    """The load generator cannot render or serve what was asked."""


@dataclass(slots=True)
class RenderedStream:
    """A rendered update stream and what rebuilds its start state.

    ``slices``: ``(slice end ns, ((key index, framed bytes), ...))`` of every non-empty slice,
    in order; ``keys``: the feed keys the indexes name."""

    pairs: int
    seed: int
    market_rate: float
    start_ns: int
    channels: str
    keys: list[tuple[Any, ...]]
    slices: list[tuple[int, tuple[tuple[int, bytes], ...]]]
    frames: int
    bytes: int
    render_s: float
    meta: dict[str, Any] = field(default_factory=dict)


def _universe(pairs: int, seed: int) -> Any:
    from recorder.sim.universe import load_universe

    return load_universe(None, pairs=pairs, futures_path=None, seed=seed)


def render_stream(*, pairs: int, seed: int, market_rate: float, frames: int,
                  channels: str = "level3:10,book:10,trade,ohlc:1",
                  start_ns: int | None = None) -> RenderedStream:
    """Advance a generating market until ``frames`` update frames exist (whole slices)."""
    from recorder.sim.pregen import STEP_NS, _gc_paused, _generating_market, parse_channels
    from recorder.sim.spot_ws import encode_text_frames

    if frames < 1:
        raise LoadgenError("--frames must be >= 1")
    shapes = parse_channels(channels)
    start = time.time_ns() if start_ns is None else start_ns
    t0 = time.perf_counter()
    gen = _generating_market(_universe(pairs, seed), seed=seed, rate=market_rate,
                             start_ns=start, shapes=shapes)
    keys = sorted(gen.active_keys(), key=repr)
    index = {key: i for i, key in enumerate(keys)}
    slices: list[tuple[int, tuple[tuple[int, bytes], ...]]] = []
    count = size = 0
    end = start
    with _gc_paused():
        while count < frames:
            end += STEP_NS
            gen.advance(end)
            out = gen.updates()
            if not out:
                continue
            framed = tuple((index[key], encode_text_frames([frame])) for key, frame in out)
            slices.append((end, framed))
            count += len(framed)
            size += sum(len(b) for _, b in framed)
    return RenderedStream(pairs=pairs, seed=seed, market_rate=market_rate, start_ns=start,
                          channels=channels, keys=keys, slices=slices, frames=count, bytes=size,
                          render_s=time.perf_counter() - t0,
                          meta={"exchange_s": (end - start) / 1e9})


def save_stream(stream: RenderedStream, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump((_FORMAT, {name: getattr(stream, name) for name in stream.__slots__}), f,
                    protocol=pickle.HIGHEST_PROTOCOL)


def load_stream(path: Path) -> RenderedStream:
    """Read a stream written by :func:`save_stream` (a file this benchmark wrote itself)."""
    import gc

    gc.disable()  # millions of long-lived tuples: no collection while they are built
    try:
        with open(path, "rb") as f:
            fmt, fields = pickle.load(f)  # noqa: S301 - our own temporary file
    finally:
        gc.enable()
        gc.freeze()
    if fmt != _FORMAT:
        raise LoadgenError(f"{path}: not a load generator stream ({fmt!r})")
    return RenderedStream(**fields)


class StreamMarket:
    """The market interface :class:`~recorder.sim.server.SimServer` uses, frozen at the
    stream's start: snapshots and REST answers of that state, no updates (the stream is
    written by the server of :func:`make_server` itself). Refusals are counted in ``refused``."""

    def __init__(self, stream: RenderedStream, universe: Any) -> None:
        from recorder.sim.market import SpotMarket

        self.shadow = SpotMarket(universe, seed=stream.seed, rate=stream.market_rate,
                                 start_ns=stream.start_ns)
        self.stream_keys = frozenset(stream.keys)
        self.armed = False
        self.stopped = False
        self.live = False
        self.refused: dict[str, int] = {"late_subscribe": 0, "late_unsubscribe": 0,
                                        "unrendered_key": 0, "instrument_change": 0}
        self.unrendered: list[str] = []

    def advance(self, until_ns: int) -> list[Any]:
        return []

    def updates(self) -> list[tuple[Any, str]]:
        return []

    @property
    def now_ns(self) -> int:
        return self.shadow.now_ns

    def subscribe(self, key: tuple[Any, ...], *, snapshot: bool = True) -> list[str]:
        if key[:1] == ("instrument",):  # only changes with instrument changes (refused)
            return self.shadow.subscribe(key, snapshot=snapshot)
        if self.armed:
            self.refused["late_subscribe"] += 1
        if key not in self.stream_keys:
            self.refused["unrendered_key"] += 1
            if len(self.unrendered) < 10:
                self.unrendered.append(repr(key))
        frames = self.shadow.subscribe(key, snapshot=snapshot)  # a temporary view
        self.shadow.unsubscribe(key)
        return frames

    def unsubscribe(self, key: tuple[Any, ...]) -> None:
        if key[:1] == ("instrument",):
            self.shadow.unsubscribe(key)
        elif self.armed and not self.stopped:  # (connections closing after stop: fine)
            self.refused["late_unsubscribe"] += 1

    def active_keys(self) -> list[Any]:
        return self.shadow.active_keys()

    def _refuse_change(self) -> None:
        self.refused["instrument_change"] += 1
        raise ValueError("the load generator serves a fixed universe: no instrument changes")

    def set_pair_status(self, symbol: str, status: str) -> Any:
        self._refuse_change()

    def list_pair(self, spec: Any) -> Any:
        self._refuse_change()

    def delist_pair(self, symbol: str) -> Any:
        self._refuse_change()

    def __getattr__(self, name: str) -> Any:  # state queries (REST): the start state
        return getattr(self.shadow, name)


@dataclass(slots=True)
class _ConnStream:
    """One connection's part of the stream: its frames joined, and per slice holding any of
    them the merged-stream count after that slice, the byte offset and its own frame count."""

    conn: Any
    buf: bytes = b""
    counts: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    done: int = 0  #: slices written
    offset: int = 0  #: bytes written
    written: int = 0  #: frames written


def _connection_classes() -> tuple[type, type]:
    from recorder.sim.spot_ws import L3Connection, SpotConnection

    class _Quiet:
        """No heartbeat once the generator is stopped (every frame written is counted)."""

        def heartbeat_frame(self) -> str | None:
            if self.sim.quiet:  # type: ignore[attr-defined]
                return None
            beat: str | None = super().heartbeat_frame()  # type: ignore[misc]
            return beat

    class LoadgenSpotConnection(_Quiet, SpotConnection):
        pass

    class LoadgenL3Connection(_Quiet, L3Connection):
        pass

    return LoadgenSpotConnection, LoadgenL3Connection


def make_server(config: Any, stream: RenderedStream) -> Any:
    """A :class:`~recorder.sim.server.SimServer` serving ``stream`` (see the module docstring)."""
    from aiohttp import web

    from recorder.sim import control, rest
    from recorder.sim.server import SIM_KEY, SimServer
    from recorder.sim.spot_ws import WRITE_BUFFER_LIMIT, serve_connection

    spot_cls, l3_cls = _connection_classes()
    universe = _universe(stream.pairs, stream.seed)

    class _Server(SimServer):
        def __init__(self) -> None:
            self.stream = stream
            self.quiet = False
            self.all_conns: list[Any] = []
            self.parts: list[_ConnStream] = []
            self.total = 0
            self.rate = 0.0
            self.go_at = 0.0
            self.due = 0
            self.arm_s = 0.0
            self.cpu_at_go = 0.0
            self.stream_done_at: float | None = None
            self.at_stop: dict[int, int] = {}
            self.open_at_arm: set[int] = set()
            self._pacer: asyncio.Task[None] | None = None
            super().__init__(config, universe, start_ns=stream.start_ns)

        def _make_markets(self, start_ns: int | None) -> tuple[Any, Any]:
            self.start_ns = self.stream.start_ns
            return StreamMarket(self.stream, self.universe), None

        def build_app(self) -> web.Application:
            app = web.Application(client_max_size=1 << 20)
            app[SIM_KEY] = self

            async def spot(request: web.Request) -> web.StreamResponse:
                return await serve_connection(request, spot_cls)

            async def l3(request: web.Request) -> web.StreamResponse:
                return await serve_connection(request, l3_cls)

            app.router.add_get("/v2", spot)
            app.router.add_get("/l3/v2", l3)
            rest.add_routes(app)
            control.add_routes(app)
            app.router.add_get("/control/loadgen", self._get_loadgen)
            app.router.add_post("/control/loadgen", self._post_loadgen)
            return app

        # --- control ----------------------------------------------------------------------

        async def _get_loadgen(self, request: web.Request) -> web.Response:
            return web.json_response(self.counters())

        async def _post_loadgen(self, request: web.Request) -> web.Response:
            try:
                body = await request.json()
                action = body["action"]
                if action == "arm":
                    self.arm()
                elif action == "go":
                    self.go(float(body["rate"]))
                elif action == "stop":
                    self.halt()
                else:
                    raise LoadgenError(f"unknown action {action!r}")
            except (LoadgenError, KeyError, ValueError, TypeError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
            return web.json_response(self.counters())

        def per_connection(self) -> dict[int, int]:
            """Frames written on each spot/level3 socket so far, by connection id (the id its
            status greeting carries): control replies, snapshots, heartbeats and stream."""
            stream = {id(p.conn): p.written for p in self.parts}
            conns = {id(c): c for c in self.all_conns}
            conns.update((id(c), c) for c in self.connections.values())
            return {c.id: c.sent + stream.get(key, 0) for key, c in conns.items()}

        def counters(self) -> dict[str, Any]:
            written = sum(p.written for p in self.parts)
            per = self.per_connection()
            now = time.monotonic()
            due = self._due(now) if self._pacer is not None else self.due
            return {
                "armed": self.spot.armed, "going": self._pacer is not None and not self.quiet,
                "rate": self.rate, "stream_frames": self.total, "due": due,
                "written": written, "backlog": due - written,
                "exhausted": due >= self.total > 0,
                "since_go_s": now - self.go_at if self.go_at else 0.0,
                "frames_on_sockets": sum(per.values()),
                "per_connection": {str(k): [self.at_stop.get(k), v, k in self.open_at_arm]
                                   for k, v in per.items()},
                "connections": len(self.connections), "stream_connections": len(self.parts),
                "keys_subscribed": sum(1 for k in self.spot_subs if k in self.spot.stream_keys),
                "keys_rendered": len(self.stream.keys), "refused": dict(self.spot.refused),
                "unrendered": self.spot.unrendered, "cpu_s": time.process_time(),
                "arm_s": self.arm_s,
            }

        # --- the stream ---------------------------------------------------------------------

        def arm(self) -> None:
            if self.spot.armed:
                raise LoadgenError("already armed")
            t0 = time.perf_counter()
            self.spot.armed = True
            self.open_at_arm = set(self.connections)
            owners: dict[int, list[_ConnStream]] = {}
            by_conn: dict[int, _ConnStream] = {}
            index = {key: i for i, key in enumerate(self.stream.keys)}
            for key, conns in self.spot_subs.items():
                i = index.get(key)
                if i is None:
                    continue
                for conn in conns:
                    part = by_conn.get(id(conn))
                    if part is None:
                        part = by_conn[id(conn)] = _ConnStream(conn)
                    owners.setdefault(i, []).append(part)
            pieces: dict[int, list[bytes]] = {id(p): [] for p in by_conn.values()}
            sizes = dict.fromkeys(pieces, 0)
            nframes = dict.fromkeys(pieces, 0)
            total = 0
            for _, frames in self.stream.slices:
                touched: dict[int, _ConnStream] = {}
                for i, data in frames:
                    parts = owners.get(i)
                    if not parts:
                        continue
                    total += 1
                    for part in parts:
                        k = id(part)
                        pieces[k].append(data)
                        sizes[k] += len(data)
                        nframes[k] += 1
                        touched[k] = part
                for k, part in touched.items():
                    part.counts.append(total)
                    part.offsets.append(sizes[k])
                    part.frames.append(nframes[k])
            for part in by_conn.values():
                part.buf = b"".join(pieces.pop(id(part)))
            self.parts = list(by_conn.values())
            self.stream.slices = []  # every frame now lives in the buffers (half the memory)
            self.total = total
            self.arm_s = time.perf_counter() - t0

        def go(self, rate: float) -> None:
            if not self.spot.armed:
                raise LoadgenError("arm first")
            if self._pacer is not None:
                raise LoadgenError("already going")
            if rate <= 0:
                raise LoadgenError("rate must be > 0")
            self.rate = rate
            self.go_at = time.monotonic()
            self.cpu_at_go = time.process_time()
            self._pacer = asyncio.create_task(self._pace(), name="loadgen-pacer")
            self._tasks.append(self._pacer)

        def halt(self) -> None:
            self.due = self._due(time.monotonic()) if self._pacer is not None else 0
            self.quiet = True
            self.spot.stopped = True
            self.at_stop = self.per_connection()

        def _due(self, now: float) -> int:
            if self.quiet:
                return self.due
            return min(self.total, int(self.rate * (now - self.go_at)))

        async def _pace(self) -> None:
            tick = self.config.tick_s
            limit = WRITE_BUFFER_LIMIT
            parts = self.parts
            while not self.quiet:
                now = time.monotonic()
                due = self._due(now)
                for part in parts:
                    j = bisect.bisect_right(part.counts, due)
                    if j <= part.done:
                        continue
                    conn = part.conn
                    transport = conn.transport
                    if (conn.closed or transport is None or transport.is_closing()
                            or transport.get_write_buffer_size() > limit):
                        continue
                    end = part.offsets[j - 1]
                    transport.write(memoryview(part.buf)[part.offset:end])
                    part.offset = end
                    part.done = j
                    part.written = part.frames[j - 1]
                    conn._last_sent = now  # noqa: SLF001 - no heartbeat while streaming
                if due >= self.total and self.stream_done_at is None:
                    self.stream_done_at = now
                await asyncio.sleep(tick)

        def record(self, kind: str, **fields: Any) -> None:
            if kind == "connect":  # every connection, for the count of frames written
                conn = self.connections.get(int(fields.get("conn", 0)))
                if conn is not None:
                    self.all_conns.append(conn)
            super().record(kind, **fields)

    return _Server()


# --------------------------------------------------------------------------------------- CLI


def _render_main(args: argparse.Namespace) -> int:
    stream = render_stream(pairs=args.pairs, seed=args.seed, market_rate=args.market_rate,
                           frames=args.frames, channels=args.channels)
    save_stream(stream, args.out)
    import json

    print(json.dumps({"frames": stream.frames, "bytes": stream.bytes,
                      "render_s": round(stream.render_s, 3), "keys": len(stream.keys),
                      "exchange_s": stream.meta["exchange_s"], "out": str(args.out)}))
    return 0


def _serve_main(args: argparse.Namespace) -> int:
    import base64

    from recorder.sim.cli_common import serve_until_stopped
    from recorder.sim.server import SimConfig, SimError

    stream = load_stream(args.stream)
    config = SimConfig(host="127.0.0.1", port=args.port, seed=stream.seed,
                       rate=stream.market_rate, keys={args.api_key: args.api_secret},
                       send_queue=args.send_queue, l3_budget=args.l3_budget,
                       idle_timeout_s=args.idle_timeout, msg_rate=args.msg_rate)
    base64.b64decode(args.api_secret, validate=True)  # a bad secret fails here, not later

    async def serve() -> None:
        server = make_server(config, stream)
        urls = await server.start()
        urls["stream"] = {"frames": stream.frames, "keys": len(stream.keys),
                          "render_s": round(stream.render_s, 3),
                          "market_rate": stream.market_rate, "pairs": stream.pairs}
        await serve_until_stopped(server, urls)

    try:
        asyncio.run(serve())
    except (SimError, LoadgenError, OSError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="render a stream into a file")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--pairs", type=int, default=60)
    r.add_argument("--seed", type=int, default=5)
    r.add_argument("--market-rate", type=float, default=60.0)
    r.add_argument("--frames", type=int, default=1_000_000)
    r.add_argument("--channels", default="level3:10,book:10,trade,ohlc:1")
    s = sub.add_parser("serve", help="serve a rendered stream")
    s.add_argument("--stream", type=Path, required=True)
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--api-key", required=True)
    s.add_argument("--api-secret", required=True)
    s.add_argument("--send-queue", type=int, default=500_000)
    s.add_argument("--l3-budget", type=int, default=500)
    s.add_argument("--idle-timeout", type=float, default=600.0)
    s.add_argument("--msg-rate", type=int, default=50)
    args = parser.parse_args(argv)
    try:
        return _render_main(args) if args.command == "render" else _serve_main(args)
    except (LoadgenError, OSError, ValueError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
