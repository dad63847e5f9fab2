"""Spot WS v2 endpoints (``/v2`` public, ``/l3/v2`` level3) and the per-connection send machinery.

:class:`Connection` owns one WebSocket: an ordered list of pending frames written to the
transport in batches, pre-framed (see :func:`encode_text_frames` and the class docstring; a
slow reader only hurts itself: when too many frames wait it is disconnected and recorded),
per-connection fault application (drop/duplicate/reorder/corrupt/malformed/stall/close),
heartbeats (spot: ``{"channel":"heartbeat"}`` about once per ``heartbeat_s`` when something is
subscribed and nothing else was sent), the idle timeout and the request-rate limit.

Spot request semantics follow Kraken (``kraken-protocol.md`` §1-§2): one ack and one snapshot
per symbol, ``Already subscribed`` for a second subscribe of a symbol on the channel, errors
with a top-level ``symbol``, level3 token / 200-symbol / cost-budget rules. Control messages
(acks, errors, pong) are serialised with sorted keys, matching Kraken's captured frames.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import struct
import time
from typing import TYPE_CHECKING, Any, Final

import msgspec
from aiohttp import WSMsgType, web

from recorder.sim.server import SIM_KEY, rfc3339_us

if TYPE_CHECKING:
    from recorder.sim.server import SimServer

__all__ = ["Connection", "SpotConnection", "encode_text_frames", "spot_handler", "l3_handler"]

_ENC: Final = msgspec.json.Encoder(order="sorted")
_DEC: Final = msgspec.json.Decoder()
_HEARTBEAT: Final = '{"channel":"heartbeat"}'

BOOK_DEPTHS: Final = frozenset({10, 25, 100, 500, 1000})
L3_DEPTHS: Final = frozenset({10, 100, 1000})
L3_COST: Final = {10: 5, 100: 25, 1000: 100}
OHLC_INTERVALS: Final = frozenset({1, 5, 15, 30, 60, 240, 1440, 10080, 21600})
EVENT_TRIGGERS: Final = frozenset({"trades", "bbo"})
PUBLIC_CHANNELS: Final = frozenset({"book", "trade", "ticker", "ohlc", "instrument"})

# Error texts. Those marked (observed) are from real captures; the others follow Kraken's
# "<E><Category>:<message>" convention and are the simulator's choice (UNVERIFIED wording).
ERR_ALREADY: Final = "Already subscribed"  # (observed)
ERR_PAIR: Final = "Currency pair not supported {symbol}"  # (observed)
ERR_RATE: Final = "Exceeded msg rate"  # (observed)
ERR_NOT_SUBSCRIBED: Final = "Subscription Not Found"
ERR_ARGS: Final = "EGeneral:Invalid arguments"
ERR_CHANNEL: Final = "EGeneral:Invalid arguments:channel"
ERR_DEPTH: Final = "EGeneral:Invalid arguments:depth"
ERR_INTERVAL: Final = "EGeneral:Invalid arguments:interval"
ERR_TRIGGER: Final = "EGeneral:Invalid arguments:event_trigger"
ERR_SYMBOL: Final = "EGeneral:Invalid arguments:symbol"
ERR_METHOD: Final = "EGeneral:Invalid arguments:method"
ERR_TOKEN_MISSING: Final = "EGeneral:Invalid arguments:token"
ERR_TOKEN: Final = "EAPI:Invalid token"
ERR_L3_SYMBOLS: Final = "Exceeded maximum number of symbols per connection"


def encode_text_frames(frames: list[str] | list[str | bytes]) -> bytes:
    """Frame ``frames`` as consecutive server-to-client WebSocket text frames (RFC 6455 §5.2).
    A frame is text (``str``) or its UTF-8 bytes (``bytes``, sent as they are: the replay's
    recorded frames).

    Each frame is ``FIN=1, RSV=0, opcode=0x1`` (byte ``0x81``), then the payload length --
    7 bits if < 126, else 126 and a 16-bit big-endian length if < 65536, else 127 and a 64-bit
    big-endian length -- with the MASK bit clear (servers never mask), then the UTF-8 payload.
    No extension data: the endpoints never negotiate ``permessage-deflate`` (``compress=False``
    below), so RSV1 is never set and the payload is the text as is.
    """
    parts: list[bytes] = []
    append = parts.append
    small = _SMALL_HEADERS
    for frame in frames:
        data = frame.encode() if isinstance(frame, str) else frame
        n = len(data)
        if n < 126:
            append(small[n])
        elif n < 65536:
            append(_HEADER16(0x81, 126, n))
        else:
            append(_HEADER64(0x81, 127, n))
        append(data)
    return b"".join(parts)


_SMALL_HEADERS: Final = tuple(bytes((0x81, n)) for n in range(126))
_HEADER16: Final = struct.Struct("!BBH").pack
_HEADER64: Final = struct.Struct("!BBQ").pack

#: Bytes the transport may hold unsent before a connection stops taking new writes (its
#: frames then wait in the pending list, where ``send_queue`` bounds them).
WRITE_BUFFER_LIMIT: Final = 256 * 1024
#: How often a connection blocked by a full transport buffer retries.
BACKPRESSURE_POLL_S: Final = 0.005


class Connection:
    """One client WebSocket: pending frames, batched writes, faults, heartbeat, liveness.

    Sending. Every outgoing frame (control replies, data, heartbeats) is appended to the
    connection's *pending* list, in order; the first append of a loop iteration schedules one
    :meth:`_flush` (``loop.call_soon``) which frames everything pending with
    :func:`encode_text_frames` and hands it to the transport in a single ``write`` -- a clock
    tick's worth of frames costs one syscall, not one coroutine and one ``send_str`` each.
    aiohttp still owns the handshake, the reader, ping/pong and close frames; its writes are
    whole frames from the same thread, so they interleave with ours only at frame boundaries.

    Backpressure. A flush writes only while the transport's unsent buffer is at most
    :data:`WRITE_BUFFER_LIMIT` bytes (the kernel socket buffer is full beyond that); otherwise
    frames stay pending and the pacer task retries every :data:`BACKPRESSURE_POLL_S`. A
    connection that cannot drain (transport over the limit, or stalled by a fault) while more
    than ``send_queue`` frames are pending is a slow consumer: it is aborted and recorded,
    and nobody else waits for it.

    The pacer task (:meth:`pacer_loop`) only handles time: the end of a stall, backpressure
    retries, heartbeats, and the release of a reordered frame that nothing followed.
    """

    endpoint: str = "spot"
    #: spot: heartbeat only after ``heartbeat_s`` of silence; futures: on a fixed timer
    heartbeat_when_silent: bool = True

    def __init__(self, sim: SimServer, ws: web.WebSocketResponse, transport: Any) -> None:
        self.sim = sim
        self.ws = ws
        self.transport = transport
        self.id = sim.new_connection_id()
        self._loop = asyncio.get_running_loop()
        self._send_queue = sim.config.send_queue
        self._pending: list[str | bytes] = []
        self._flush_armed = False
        self._kick = asyncio.Event()
        #: (channel, symbol) -> subscription key (one per symbol per channel, as Kraken)
        self.subs: dict[tuple[str, str | None], tuple] = {}
        self._held: str | None = None
        self._stall_until = 0.0
        self._last_sent = time.monotonic()
        self._last_beat = time.monotonic()
        self._requests: collections.deque[float] = collections.deque()
        self.closed = False
        self.sent = 0
        self.writer: asyncio.Task[None] | None = None

    # --- subscription bookkeeping (overridden per protocol) -------------------------------------

    @property
    def subs_registry(self) -> dict[tuple, set[Any]]:
        return self.sim.spot_subs

    def heartbeat_frame(self) -> str | None:
        return _HEARTBEAT if self.subs else None

    @property
    def heartbeat_s(self) -> float:
        return self.sim.config.heartbeat_s

    def subscribed_to(self, channel: str | None, symbol: str | None) -> bool:
        return any((channel is None or c == channel) and (symbol is None or s == symbol)
                   for c, s in self.subs)

    def add_sub(self, channel: str, symbol: str | None, key: tuple) -> None:
        self.subs[(channel, symbol)] = key
        self.subs_registry.setdefault(key, set()).add(self)

    def drop_sub(self, channel: str, symbol: str | None, market: Any) -> tuple | None:
        key = self.subs.pop((channel, symbol), None)
        if key is not None:
            holders = self.subs_registry.get(key)
            if holders is not None:
                holders.discard(self)
                if not holders:
                    del self.subs_registry[key]
            market.unsubscribe(key)
        return key

    def release_all(self, market: Any) -> None:
        for channel, symbol in list(self.subs):
            self.drop_sub(channel, symbol, market)

    # --- sending ------------------------------------------------------------------------------

    def _draining(self) -> bool:
        """Can pending frames go out now (not stalled, transport buffer within the limit)?"""
        if time.monotonic() < self._stall_until:
            return False
        transport = self.transport
        return transport is None or transport.get_write_buffer_size() <= WRITE_BUFFER_LIMIT

    def _too_slow(self) -> None:
        self.sim.stats["slow_disconnects"] += 1
        self.sim.record("slow_consumer", conn=self.id, endpoint=self.endpoint,
                        queued=len(self._pending))
        self.abort()

    def _put(self, frame: str | bytes) -> bool:
        """Queue one frame (in order) and make sure a flush is scheduled; False if closed or
        dropped as a slow consumer."""
        if self.closed:
            return False
        pending = self._pending
        pending.append(frame)
        if len(pending) > self._send_queue and not self._draining():
            self._too_slow()
            return False
        if not self._flush_armed:
            self._flush_armed = True
            self._loop.call_soon(self._flush)
        return True

    def _flush(self) -> None:
        """Write every pending frame in one transport write, unless stalled or backpressured
        (then the pacer retries; see the class docstring)."""
        self._flush_armed = False
        pending = self._pending
        if not pending or self.closed or self.ws.closed:
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if time.monotonic() < self._stall_until:
            return  # the pacer flushes when the stall ends
        if transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            if len(pending) > self._send_queue:
                self._too_slow()
            else:
                self._kick.set()
            return
        self._pending = []
        transport.write(encode_text_frames(pending))
        self.sent += len(pending)
        self.sim.stats["frames_sent"] += len(pending)
        self._last_sent = time.monotonic()

    def send_control(self, message: dict[str, Any]) -> None:
        """An ack/error/pong: never subject to data faults."""
        self._put(_ENC.encode(message).decode())

    def send_data(self, frame: str, key: tuple) -> None:
        """A data frame of subscription ``key``: faults apply, reordering is honoured."""
        if self.closed:
            return
        plan = self.sim.faults
        symbol = key[1] if len(key) > 1 else None
        if not plan.active or not plan.affects_frames(self.endpoint, key[0], symbol):
            if self._put(frame) and self._held is not None:
                held, self._held = self._held, None
                self._put(held)
            return
        verdict = plan.on_frame(frame, conn=self.id, endpoint=self.endpoint,
                                channel=key[0], symbol=symbol)
        for out in verdict.frames:
            self._put(out)
        if verdict.frames and self._held is not None:
            held, self._held = self._held, None
            self._put(held)
        if verdict.hold is not None:
            if self._held is not None:  # two holds in a row: release the older one now
                self._put(self._held)
            self._held = verdict.hold
        if verdict.stall_s:
            self.stall(verdict.stall_s)
        if verdict.close:
            self.abort()

    def stall(self, seconds: float) -> None:
        self._stall_until = max(self._stall_until, time.monotonic() + seconds)
        self._kick.set()

    def abort(self) -> None:
        """Close the TCP connection abruptly (no WebSocket close frame)."""
        if self.closed:
            return
        self.closed = True
        self._pending = []
        if self.transport is not None:
            self.transport.abort()
        self._kick.set()

    async def shutdown(self, code: int = 1001) -> None:
        """Clean close (server shutdown)."""
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                await self.ws.close(code=code, message=b"server shutdown")

    def _heartbeat_delay(self, now: float) -> float:
        if self.heartbeat_when_silent:
            return max(0.05, self._last_sent + self.heartbeat_s - now)
        return max(0.0, self._last_beat + self.heartbeat_s - now)

    async def pacer_loop(self) -> None:
        """The connection's timers: stall end, backpressure retry, heartbeats, reorder release.

        Spot heartbeats go out after ``heartbeat_s`` without any frame sent (only while
        subscribed, never while stalled, data faults apply to them); a reordered frame that
        nothing followed within that time is released instead. Futures heartbeats go out on a
        fixed ``heartbeat_s`` timer (when the ``heartbeat`` feed is subscribed)."""
        kick = self._kick
        while not self.closed and not self.ws.closed:
            now = time.monotonic()
            if now < self._stall_until:
                delay = self._stall_until - now
            else:
                if self._pending:
                    self._flush()
                    if self.closed:
                        return
                delay = self._heartbeat_delay(now)
                if self._pending:  # still blocked by a full transport buffer
                    delay = min(delay, BACKPRESSURE_POLL_S)
            kick.clear()
            try:
                async with asyncio.timeout(delay):
                    await kick.wait()
                continue  # kicked: re-evaluate
            except TimeoutError:
                pass
            now = time.monotonic()
            if now < self._stall_until or self.closed:
                continue
            if self.heartbeat_when_silent:
                if self._pending or now < self._last_sent + self.heartbeat_s:
                    continue
                self._silent_beat()
            elif now >= self._last_beat + self.heartbeat_s:
                self._last_beat = now
                beat = self.heartbeat_frame()
                if beat is not None:
                    self._put(beat)

    def _silent_beat(self) -> None:
        """``heartbeat_s`` without a frame: release a held (reordered) frame, or heartbeat."""
        if self._held is not None:  # nothing followed a reordered frame: release it
            frame, self._held = self._held, None
        else:
            beat = self.heartbeat_frame()
            if beat is None:
                self._last_sent = time.monotonic()
                return
            frame = beat
            if self.sim.faults.active:
                verdict = self.sim.faults.on_frame(frame, conn=self.id, endpoint=self.endpoint,
                                                   channel="heartbeat", symbol=None)
                if not verdict.frames:
                    self._last_sent = time.monotonic()
                    return
                frame = verdict.frames[0]
        self._put(frame)
        self._flush()

    # --- receiving ------------------------------------------------------------------------------

    def rate_exceeded(self) -> bool:
        now = time.monotonic()
        q = self._requests
        q.append(now)
        while q and q[0] < now - 1.0:
            q.popleft()
        return len(q) > self.sim.config.msg_rate

    async def on_text(self, text: str, time_in: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def greeting(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def market(self) -> Any:
        return self.sim.spot


async def serve_connection(request: web.Request, conn_cls: type[Connection]) -> web.StreamResponse:
    """Common WebSocket lifecycle: refuse fault, upgrade, greet, read until idle/closed."""
    sim: SimServer = request.app[SIM_KEY]
    endpoint = conn_cls.endpoint
    probe_id = sim.new_connection_id()
    if sim.faults.active and sim.faults.refuse_connect(endpoint=endpoint, conn=probe_id):
        return web.Response(status=503, text="Service Unavailable (sim fault: refuse)")
    ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 20, compress=False)
    transport = request.transport
    await ws.prepare(request)
    conn = conn_cls(sim, ws, transport)
    sim.connections[conn.id] = conn
    sim.stats["connections"] += 1
    sim.record("connect", conn=conn.id, endpoint=endpoint, peer=request.remote)
    conn.writer = asyncio.create_task(conn.pacer_loop(), name=f"sim-pacer-{conn.id}")
    reason = "closed"
    try:
        conn.greeting()
        idle = sim.config.idle_timeout_s
        while not conn.closed:
            try:
                msg = await ws.receive(timeout=idle)
            except TimeoutError:
                reason = "idle"
                sim.stats["idle_disconnects"] += 1
                break
            if msg.type == WSMsgType.TEXT:
                await conn.on_text(msg.data, sim.clock_ns())
            elif msg.type == WSMsgType.BINARY:
                await conn.on_text(msg.data.decode("utf-8", "replace"), sim.clock_ns())
            else:  # CLOSE, CLOSING, CLOSED, ERROR
                break
    finally:
        was_aborted = conn.closed
        conn.closed = True
        conn.release_all(conn.market())
        sim.connections.pop(conn.id, None)
        if conn.writer is not None:
            conn.writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await conn.writer
        if not ws.closed and not was_aborted:
            with contextlib.suppress(Exception):
                await ws.close(code=1000, message=b"idle timeout" if reason == "idle" else b"")
        sim.record("disconnect", conn=conn.id, endpoint=endpoint,
                   reason="aborted" if was_aborted and reason == "closed" else reason,
                   frames_sent=conn.sent)
    return ws


class SpotConnection(Connection):
    """Spot WS v2 public protocol (``/v2``)."""

    endpoint = "spot"
    channels: frozenset[str] = PUBLIC_CHANNELS

    def greeting(self) -> None:
        self.send_control({
            "channel": "status", "type": "update",
            "data": [{"api_version": "v2", "connection_id": self.id, "system": "online",
                      "version": "2.0.0"}],
        })

    # --- request dispatch ---------------------------------------------------------------------

    def _reply(self, method: str, req_id: Any, time_in: int, **fields: Any) -> None:
        message: dict[str, Any] = {"method": method, **fields,
                                   "time_in": rfc3339_us(time_in), "time_out": rfc3339_us(self.sim.clock_ns())}
        if req_id is not None:
            message["req_id"] = req_id
        self.send_control(message)

    def _error(self, method: str, req_id: Any, time_in: int, error: str,
               symbol: str | None = None) -> None:
        fields: dict[str, Any] = {"error": error, "success": False}
        if symbol is not None:
            fields["symbol"] = symbol
        self._reply(method, req_id, time_in, **fields)

    async def on_text(self, text: str, time_in: int) -> None:
        try:
            request = _DEC.decode(text)
        except msgspec.DecodeError:
            self.send_control({"error": ERR_ARGS, "success": False, "time_in": rfc3339_us(time_in),
                               "time_out": rfc3339_us(self.sim.clock_ns())})
            return
        if not isinstance(request, dict):
            self.send_control({"error": ERR_ARGS, "success": False, "time_in": rfc3339_us(time_in),
                               "time_out": rfc3339_us(self.sim.clock_ns())})
            return
        method = request.get("method")
        req_id = request.get("req_id")
        method_name = method if isinstance(method, str) else "unknown"
        if self.rate_exceeded():
            self.sim.record("msg_rate", conn=self.id, endpoint=self.endpoint, method=method_name)
            self._error(method_name, req_id, time_in, ERR_RATE)
            return
        if method == "ping":
            self._reply("pong", req_id, time_in)
        elif method in ("subscribe", "unsubscribe"):
            params = request.get("params")
            if not isinstance(params, dict):
                self._error(method, req_id, time_in, ERR_ARGS)
                return
            self.handle_subscription(method, params, req_id, time_in)
        else:
            self._error(method_name, req_id, time_in, ERR_METHOD)

    # --- subscribe / unsubscribe --------------------------------------------------------------

    def handle_subscription(self, method: str, params: dict[str, Any], req_id: Any, time_in: int) -> None:
        channel = params.get("channel")
        if channel not in self.channels:
            self._error(method, req_id, time_in, ERR_CHANNEL)
            return
        snapshot = params.get("snapshot", channel != "trade")
        if not isinstance(snapshot, bool):
            self._error(method, req_id, time_in, ERR_ARGS)
            return
        if channel == "instrument":
            self._instrument(method, snapshot, req_id, time_in)
            return
        result = self.channel_params(channel, params)
        if isinstance(result, str):
            self._error(method, req_id, time_in, result)
            return
        symbols = params.get("symbol")
        if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
            self._error(method, req_id, time_in, ERR_SYMBOL)
            return
        if not self.authorise(method, params, symbols, req_id, time_in, result):
            return
        self.handle_symbols(method, channel, symbols, result, snapshot, req_id, time_in)

    def handle_symbols(self, method: str, channel: str, symbols: list[str], result: dict[str, Any],
                       snapshot: bool, req_id: Any, time_in: int) -> None:
        """Subscribe or unsubscribe each symbol of a request that :meth:`handle_subscription`
        validated (channel, snapshot flag, channel params ``result``, symbols, authorisation)."""
        market = self.market()
        for symbol in symbols:
            key = self.key_for(channel, symbol, result)
            echo = {"channel": channel, **result, "symbol": symbol}
            if method == "subscribe":
                if not self.sim.is_listed(symbol):
                    self._error(method, req_id, time_in, ERR_PAIR.format(symbol=symbol), symbol)
                    continue
                if (channel, symbol) in self.subs:
                    self._error(method, req_id, time_in, ERR_ALREADY, symbol)
                    continue
                refusal = self.admit(symbol, result)
                if refusal is not None:
                    self._error(method, req_id, time_in, refusal, symbol)
                    continue
                frames = market.subscribe(key, snapshot=snapshot)
                echo["snapshot"] = snapshot
                if channel == "ohlc":
                    echo["warnings"] = ["timestamp is deprecated, use interval_begin"]
                self._reply(method, req_id, time_in, result=echo, success=True)
                for frame in frames:
                    self.send_data(frame, key)
                self.add_sub(channel, symbol, key)
            else:
                self.unsubscribe_symbol(channel, symbol, key, echo, req_id, time_in)

    def unsubscribe_symbol(self, channel: str, symbol: str, key: tuple, echo: dict[str, Any],
                           req_id: Any, time_in: int) -> bool:
        """Drop this connection's subscription ``key`` and ack it (``echo``), or answer Kraken's
        ``Subscription Not Found``; whether it was dropped."""
        current = self.subs.get((channel, symbol))
        if current is None or current != key:
            self._error("unsubscribe", req_id, time_in, ERR_NOT_SUBSCRIBED, symbol)
            return False
        self.drop_sub(channel, symbol, self.market())
        self._reply("unsubscribe", req_id, time_in, result=echo, success=True)
        return True

    def channel_params(self, channel: str, params: dict[str, Any]) -> dict[str, Any] | str:
        """Validated channel-specific params echoed in acks, or an error text."""
        if channel == "book":
            depth = params.get("depth", 10)
            if type(depth) is not int or depth not in BOOK_DEPTHS:
                return ERR_DEPTH
            return {"depth": depth}
        if channel == "ohlc":
            interval = params.get("interval", 1)
            if type(interval) is not int or interval not in OHLC_INTERVALS:
                return ERR_INTERVAL
            return {"interval": interval}
        if channel == "ticker":
            trigger = params.get("event_trigger", "trades")
            if trigger not in EVENT_TRIGGERS:
                return ERR_TRIGGER
            return {"event_trigger": trigger}
        return {}

    def key_for(self, channel: str, symbol: str, result: dict[str, Any]) -> tuple:
        if channel in ("book", "level3"):
            return (channel, symbol, result["depth"])
        if channel == "ohlc":
            return (channel, symbol, result["interval"])
        if channel == "ticker":
            return (channel, symbol, result["event_trigger"])
        return (channel, symbol)

    def authorise(self, method: str, params: dict[str, Any], symbols: list[str], req_id: Any,
                  time_in: int, result: dict[str, Any]) -> bool:
        return True

    def admit(self, symbol: str, result: dict[str, Any]) -> str | None:
        return None

    def _instrument(self, method: str, snapshot: bool, req_id: Any, time_in: int) -> None:
        key = ("instrument",)
        echo: dict[str, Any] = {"channel": "instrument"}
        if method == "subscribe":
            if ("instrument", None) in self.subs:
                self._error(method, req_id, time_in, ERR_ALREADY)
                return
            frames = self.market().subscribe(key, snapshot=snapshot)
            echo.update(snapshot=snapshot, warnings=["tick_size is deprecated, use price_increment"])
            self._reply(method, req_id, time_in, result=echo, success=True)
            for frame in frames:
                self.send_data(frame, key)
            self.add_sub("instrument", None, key)
        else:
            self.unsubscribe_instrument(req_id, time_in)

    def unsubscribe_instrument(self, req_id: Any, time_in: int) -> None:
        """Drop this connection's instrument subscription and ack it, or answer Kraken's
        ``Subscription Not Found``."""
        if ("instrument", None) not in self.subs:
            self._error("unsubscribe", req_id, time_in, ERR_NOT_SUBSCRIBED)
            return
        self.drop_sub("instrument", None, self.market())
        self._reply("unsubscribe", req_id, time_in, result={"channel": "instrument"}, success=True)


class L3Connection(SpotConnection):
    """Spot WS v2 level3 protocol (``/l3/v2``): token, 200 symbols, cost budget per second."""

    endpoint = "l3"
    channels = frozenset({"level3"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._budget = float(self.sim.config.l3_budget)
        self._budget_at = time.monotonic()

    def channel_params(self, channel: str, params: dict[str, Any]) -> dict[str, Any] | str:
        depth = params.get("depth", 10)
        if type(depth) is not int or depth not in L3_DEPTHS:
            return ERR_DEPTH
        return {"depth": depth}

    def authorise(self, method: str, params: dict[str, Any], symbols: list[str], req_id: Any,
                  time_in: int, result: dict[str, Any]) -> bool:
        token = params.get("token")
        error = None
        if token is None:
            error = ERR_TOKEN_MISSING
        elif not self.sim.tokens.check(token):
            error = ERR_TOKEN
        elif method == "subscribe" and self.sim.faults.active and self.sim.faults.reject_token(
                conn=self.id, symbol=symbols[0]):
            error = ERR_TOKEN
        if error is None and method == "subscribe":
            self._refill_budget()
            new = {s for s in symbols if ("level3", s) not in self.subs}
            if len(self.subs) + len(new) > self.sim.config.l3_max_symbols:
                error = ERR_L3_SYMBOLS
        if error is None:
            return True
        for symbol in symbols:
            self._error(method, req_id, time_in, error, symbol)
        return False

    def _refill_budget(self) -> None:
        """Credit the budget for the time since the last request (at most one second's worth).
        Done once per request, at its arrival, so that the time spent rendering the snapshots
        of a long symbol list does not buy extra subscriptions within that same request."""
        now = time.monotonic()
        cap = float(self.sim.config.l3_budget)
        self._budget = min(cap, self._budget + (now - self._budget_at) * cap)
        self._budget_at = now

    def admit(self, symbol: str, result: dict[str, Any]) -> str | None:
        """Spend the subscription cost of one symbol from the per-second budget."""
        cost = L3_COST[result["depth"]]
        if self._budget < cost:
            self.sim.record("l3_budget", conn=self.id, symbol=symbol, budget=self._budget)
            return ERR_RATE
        self._budget -= cost
        return None


async def spot_handler(request: web.Request) -> web.StreamResponse:
    return await serve_connection(request, SpotConnection)


async def l3_handler(request: web.Request) -> web.StreamResponse:
    return await serve_connection(request, L3Connection)
