"""One WebSocket connection: connect, subscribe (paced), read, ping, detect silence, reconnect.

A :class:`FeedConnection` carries one channel (or futures feed) for a set of symbols and runs
until its worker stops. Each session is a :class:`asyncio.TaskGroup` of reader, pinger and
watchdog; any of them failing (socket closed, silence, subscribe impossible) ends the session,
which is journaled as ``Disconnected`` and followed by a jittered exponential backoff under the
worker's connect limiter (Kraken: about 150 connects per 10 minutes per IP).

Every frame received or sent is handed to ``worker.emit`` (journal first, then the archive's
pipeline); the signals that come back are handed to ``worker.on_signals``. The connection never
parses a frame: per-symbol data marks come from the pipeline's counters
(:meth:`FeedConnection.note_activity`), acks and the instrument snapshot from its signals. Book, level3, trade
and ohlc connections open their first session only after the worker's ``instrument`` snapshot
is in the archive (bounded wait), so the pipeline builds books with the venue's precisions.
A subscribe that is neither acknowledged nor refused within ``ack_timeout_s`` is journaled as
``SubscribeFailed(error="timeout")`` and sent again. :meth:`FeedConnection.close` ends the
current session with a reason that becomes the ``Disconnected`` marker's reason (disk
pressure, process stop). The socket is picows' websockets-compatible client: its frame
parsing is compiled, about 3-5 CPU-us per message cheaper than ``websockets`` on the receive
path that every market-data frame takes. Subscribes are per-connection
paced (``requests_per_s``) and, for level3, spend the worker's subscription cost budget
(5/25/100 per symbol by depth against 200/s or 500/s); a level3 session fetches a fresh token.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from typing import Any, Final, Protocol

import msgspec
from picows.websockets.asyncio.client import connect as ws_connect
from picows.websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from recorder.capture.config import ConnectionConfig
from recorder.capture.limits import Backoff, TokenBucket, l3_cost
from recorder.capture.rest_client import RestAuthRefused, RestFailure
from recorder.capture.shards import ConnPlan
from recorder.capture.subscriptions import SubscriptionTable
from recorder.errors import RecorderError
from recorder.frames import Frame
from recorder.pipeline.markers import (
    Connected,
    Disconnected,
    Marker,
    Silence,
    Subscribed,
    SubscribeFailed,
    Unsubscribed,
)
from recorder.pipeline.signals import Signal

__all__ = ["ConnectionHost", "FeedConnection", "SessionEnded", "INSTRUMENT"]

log = logging.getLogger("recorder.capture.connection")
_ENC: Final = msgspec.json.Encoder()
#: The pseudo-symbol of the ``instrument`` subscription.
INSTRUMENT: Final = "*"
#: Loop time one reader step may take before it yields (see ``FeedConnection._reader``).
READ_SLICE_S: Final = 0.0005
#: A ``recv`` that took longer than this waited for data (a queued message returns in a
#: few microseconds).
_WAITED_S: Final = 0.0002


def _leaf(exc: BaseException) -> BaseException:
    """The first non-group exception of a TaskGroup failure (the session's real cause)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _auth_refused(exc: RestAuthRefused) -> str:
    """The reason a level3 session ends when Kraken refuses the API key for its token."""
    return (f"auth refused: Kraken refused the API key for a level3 token ({exc}); check "
            "KRAKEN_API_KEY/KRAKEN_API_SECRET and the key's WebSocket permission")[:300]


class SessionEnded(RecorderError):
    """The current WebSocket session must end (silence, fatal subscribe error, stop)."""


class ConnectionHost(Protocol):
    """Everything a :class:`FeedConnection` needs from the rest of its worker (and nothing
    more): the run state, the archive's write path, the signal router, the connect and
    level3 budgets, level3 tokens and connection ids. The worker implements it
    (:class:`recorder.capture.service.Worker`); tests pass small fakes."""

    @property
    def stopping(self) -> asyncio.Event:
        """Set once when the worker ends."""
        ...

    @property
    def paused(self) -> asyncio.Event:
        """Set while capture is paused (disk pressure, failing writes)."""
        ...

    @property
    def l3_capacity(self) -> float:
        """Capacity of the level3 subscription budget (cost units)."""
        ...

    def emit(self, frame: Frame) -> list[Signal]:
        """Journal then derive ``frame``; the pipeline's signals."""
        ...

    def marker(self, marker: Marker, conn_id: int = 0) -> None:
        """Journal (and derive) a control marker."""
        ...

    def on_signals(self, conn: FeedConnection, signals: list[Signal]) -> None:
        """Act on the signals a frame of ``conn`` produced."""
        ...

    def activity(self, conn_id: int) -> dict[tuple[str, str], tuple[int, int]]:
        """Data the pipeline counted on connection ``conn_id``: ``(channel, symbol) ->
        (messages, last recv_ns)``."""
        ...

    def on_disconnected(self, conn: FeedConnection) -> None:
        """``conn``'s session ended (after its ``Disconnected`` marker)."""
        ...

    def instruments_seen(self, statuses: dict[str, str] | None = None) -> None:
        """An instrument snapshot (its pair ``statuses``) has been journaled and derived."""
        ...

    async def wait_instruments(self) -> None:
        """Until the first instrument snapshot is in the archive (bounded)."""
        ...

    async def wait_resumed(self) -> None:
        """Until capture resumes or the worker stops."""
        ...

    async def connect_slot(self) -> None:
        """Wait for the connect limiter, then count one attempt."""
        ...

    async def spend_l3(self, cost: float) -> None:
        """Wait until the level3 budget has ``cost`` and take it."""
        ...

    async def fresh_token(self) -> str:
        """A new level3 WebSocket token."""
        ...

    def new_conn_id(self) -> int:
        """A connection id never used by this worker's archive."""
        ...


class FeedConnection:
    """See module docstring. ``plan.symbols`` is the initial set; it changes with listings.
    ``settings``: the ``[connection]`` settings; ``url``: the feed's WebSocket URL."""

    def __init__(self, plan: ConnPlan, worker: ConnectionHost, *, settings: ConnectionConfig,
                 url: str, backoff: Backoff) -> None:
        self.plan = plan
        self.worker = worker
        self.cfg = settings
        self.url = url
        symbols = plan.symbols if plan.channel != "instrument" else (INSTRUMENT,)
        self.table = SubscriptionTable(plan.channel, symbols)
        self.backoff = backoff
        self.ws: Any = None
        self.conn_id = 0
        self.connected = False
        self.token: str | None = None
        self.requests = TokenBucket(self.cfg.requests_per_s, max(1.0, self.cfg.requests_per_s))
        self._req = itertools.count(1)
        self._wake = asyncio.Event()
        self.messages = 0
        self.bytes = 0
        self.sessions = 0
        self.last_rx = 0.0
        self.last_error = ""
        #: wall time (s) of the next connection attempt while down after a failure, else None
        self.retry_at: float | None = None
        self._token_refresh = False
        self._was_connected = False
        self._close_reason = ""
        #: symbol -> the pipeline's message count of it on this session's connection, as
        #: already folded into the table (:meth:`note_activity`)
        self._activity_seen: dict[str, int] = {}

    # ------------------------------------------------------------------ identity

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def stream(self) -> str:
        return self.plan.stream

    @property
    def channel(self) -> str:
        return self.plan.channel

    def has(self, symbol: str) -> bool:
        return symbol in self.table.subs

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Sessions until the worker stops; never raises except on cancellation."""
        w = self.worker
        if self.channel != "instrument" and self.stream != "futures":
            await w.wait_instruments()
        while not w.stopping.is_set():
            if w.paused.is_set():
                self.retry_at = None  # the pause is the reason (the worker's status says it)
                await w.wait_resumed()
                continue
            await w.connect_slot()
            self.retry_at = None
            self._close_reason = ""
            try:
                await self._session()
                reason = "closed by server"
            except SessionEnded as exc:
                reason = str(exc)
            except RestAuthRefused as exc:  # the level3 token: Kraken refused the API key
                reason = _auth_refused(exc)
            except RestFailure as exc:
                reason = f"no level3 token: {exc}"[:200]
            except ConnectionClosed as exc:
                reason = f"closed: {exc.rcvd.code if exc.rcvd else 'no close frame'}"
            except (OSError, InvalidHandshake, InvalidURI, asyncio.TimeoutError) as exc:
                reason = f"{type(exc).__name__}: {exc}"[:200]
            except Exception as exc:
                cause = _leaf(exc)
                if isinstance(cause, SessionEnded):
                    reason = str(cause)
                elif isinstance(cause, ConnectionClosed):
                    reason = f"closed: {cause.rcvd.code if cause.rcvd else 'no close frame'}"
                elif isinstance(cause, (OSError, InvalidHandshake, InvalidURI, asyncio.TimeoutError)):
                    reason = f"{type(cause).__name__}: {cause}"[:200]
                elif isinstance(cause, RestAuthRefused):  # a token refresh during the session
                    reason = _auth_refused(cause)
                elif isinstance(cause, RestFailure):
                    reason = f"no level3 token: {cause}"[:200]
                else:
                    reason = f"error: {type(cause).__name__}: {cause}"[:200]
                    log.exception("connection %s session failed", self.name)
            finally:
                await self._teardown()
            if self._close_reason:
                reason = self._close_reason
            self.last_error = reason
            if self.conn_id and self._was_connected:
                w.marker(Disconnected(conn_id=self.conn_id, reason=reason), self.conn_id)
                w.on_disconnected(self)
            if w.stopping.is_set():
                break
            delay = self.backoff.next_delay()
            self.retry_at = time.time() + delay
            log.warning("connection %s (%s) down: %s; retrying in %.1fs (attempt %d)",
                        self.name, self.url, reason, delay, self.backoff.failures)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(w.stopping.wait(), delay)

    async def close(self, reason: str) -> None:
        """End the current session (if any); ``reason`` is journaled with ``Disconnected``."""
        ws = self.ws
        if ws is None:
            return
        self._close_reason = reason
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 2.0)

    def note_activity(self) -> None:
        """Bring the subscription table's per-symbol data marks up to date from the pipeline's
        counters of this connection (:meth:`recorder.pipeline.Pipeline.activity`): capture
        never looks into the frames for symbols. Called by the watchdog (at most a second
        behind) and once more when the session ends."""
        counted = self.worker.activity(self.conn_id)
        if not counted:
            return
        mono, wall = time.monotonic(), time.time_ns()
        seen = self._activity_seen
        channel = self.channel
        for (ch, symbol), (messages, last_ns) in counted.items():
            if ch != channel:
                continue
            before = seen.get(symbol, 0)
            if messages > before:
                seen[symbol] = messages
                self.table.data(symbol, mono - max(0, wall - last_ns) / 1e9, messages - before)

    async def _teardown(self) -> None:
        if self.conn_id:
            self.note_activity()
        self.connected = False
        self.table.reset(time.monotonic())
        ws, self.ws = self.ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)

    async def _session(self) -> None:
        w = self.worker
        self._was_connected = False
        self.conn_id = w.new_conn_id()
        self._activity_seen = {}
        if self.stream == "l3":
            self.token = await w.fresh_token()
        self.ws = await asyncio.wait_for(
            ws_connect(self.url, max_size=64 * 1024 * 1024, max_queue=4096,
                       ping_interval=self.cfg.ping_interval_s, ping_timeout=self.cfg.ping_interval_s,
                       close_timeout=2, compression=None, open_timeout=self.cfg.connect_timeout_s),
            self.cfg.connect_timeout_s + 1)
        self.connected = True
        self._was_connected = True
        self.sessions += 1
        self.last_rx = time.monotonic()
        w.marker(Connected(conn_id=self.conn_id, stream=self.stream, url=self.url), self.conn_id)
        log.info("connection %s up (conn_id %d, %d symbols)", self.name, self.conn_id,
                 len(self.table.subs))
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._reader())
            tg.create_task(self._watchdog())
            tg.create_task(self._subscriber())
            if self.stream != "futures":
                tg.create_task(self._pinger())

    async def _reader(self) -> None:
        """Journal and derive each received message. ``recv`` returns a queued message
        without suspending, so after a backlog (the process got no CPU for a while) one step
        of this task could handle thousands of messages and hold the loop for their whole
        time: it yields to the loop once it has worked :data:`READ_SLICE_S` (its timers,
        the other connections, a commit's hand-offs run in between)."""
        ws = self.ws
        w = self.worker
        stream, conn_id = self.stream, self.conn_id
        clock = time.perf_counter
        slice_end = clock() + READ_SLICE_S
        while True:
            before = clock()
            if before >= slice_end:
                await asyncio.sleep(0)
                before = clock()
                slice_end = before + READ_SLICE_S
            payload = await ws.recv(decode=False)
            after = clock()
            if after - before > _WAITED_S:  # recv waited for data: a new slice starts
                slice_end = after + READ_SLICE_S
            if isinstance(payload, str):
                payload = payload.encode()
            now = time.monotonic()
            self.last_rx = now
            self.messages += 1
            self.bytes += len(payload)
            frame = Frame(recv_ns=time.time_ns(), conn_id=conn_id, stream=stream,  # type: ignore[arg-type]
                          direction="in", payload=payload)
            signals = w.emit(frame)
            if signals:
                w.on_signals(self, signals)

    async def _watchdog(self) -> None:
        """Ends the session after ``silence_s`` without any frame; fails subscriptions that
        got no answer within ``ack_timeout_s``.

        Kraken sends heartbeats only to a connection with an acknowledged subscription. One
        with none yet (a level3 connection waiting its turn in the subscription budget, which
        takes 17 s for 683 pairs at the standard tier) is probed with a ping after half the
        silence, so a live socket answers in time and a dead one is still found."""
        silence = self.cfg.silence_s
        probed = 0.0
        while True:
            await asyncio.sleep(min(1.0, silence / 4))
            self.note_activity()
            now = time.monotonic()
            quiet = now - self.last_rx
            if (quiet > silence / 2 and self.stream != "futures" and now - probed > silence / 2
                    and not any(i.state == "active" for i in self.table.subs.values())):
                probed = now
                await self.send({"method": "ping", "req_id": next(self._req)})
            if now - self.last_rx > silence:
                since_ns = time.time_ns() - int((now - self.last_rx) * 1e9)
                self.worker.marker(Silence(conn_id=self.conn_id, since_ns=since_ns,
                                           channel=self.channel), self.conn_id)
                raise SessionEnded(f"silence for {now - self.last_rx:.1f}s")
            timed_out = self.table.timed_out(now, self.cfg.ack_timeout_s)
            if timed_out:
                self.worker.marker(SubscribeFailed(
                    conn_id=self.conn_id, channel=self.channel,
                    symbols=[s for s in timed_out if s != INSTRUMENT] or ["*"], error="timeout",
                    depth=self.plan.depth, interval=self.plan.interval), self.conn_id)
                for sym in timed_out:
                    info = self.table.subs.get(sym)
                    if info is not None:
                        info.state, info.since = "idle", now
                self._wake.set()

    async def _pinger(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.ping_interval_s)
            await self.send({"method": "ping", "req_id": next(self._req)})

    async def _subscriber(self) -> None:
        """Subscribes whatever is ``idle`` (initially everything), in paced batches."""
        if self.stream == "futures":
            await self.send({"event": "subscribe", "feed": "heartbeat"})
        while True:
            idle = self.table.in_state("idle")
            if idle:
                await self.subscribe(idle)
                if self.table.in_state("idle"):
                    continue
            self._wake.clear()
            await self._wake.wait()

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ requests

    async def send(self, obj: dict[str, Any]) -> None:
        """Send one request (paced), journaled as an ``out`` frame."""
        ws = self.ws
        if ws is None:
            raise SessionEnded("not connected")
        while True:
            wait = self.requests.wait(1.0, time.monotonic())
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        self.requests.take(1.0, time.monotonic())
        payload = _ENC.encode(obj)
        self.worker.emit(Frame(recv_ns=time.time_ns(), conn_id=self.conn_id, stream=self.stream,  # type: ignore[arg-type]
                               direction="out", payload=self._redact(obj, payload)))
        await ws.send(payload.decode())

    def _redact(self, obj: dict[str, Any], payload: bytes) -> bytes:
        """The journaled copy of a request: the level3 token is replaced (it is a credential
        for as long as the subscription lives)."""
        params = obj.get("params")
        if isinstance(params, dict) and "token" in params:
            return _ENC.encode({**obj, "params": {**params, "token": "<redacted>"}})
        return payload

    def _params(self, symbols: list[str]) -> dict[str, Any]:
        p: dict[str, Any] = {"channel": self.channel, "symbol": symbols}
        if self.plan.depth is not None:
            p["depth"] = self.plan.depth
        if self.plan.interval is not None:
            p["interval"] = self.plan.interval
        if self.stream == "l3" and self.token is not None:
            p["token"] = self.token
        return p

    async def subscribe(self, symbols: list[str]) -> None:
        w = self.worker
        if self.stream == "futures":
            for sym in symbols:
                self.table.sent(sym, time.monotonic())
            await self.send({"event": "subscribe", "feed": self.channel, "product_ids": symbols})
            w.marker(Subscribed(conn_id=self.conn_id, channel=self.channel, symbols=symbols),
                     self.conn_id)
            return
        if self.channel == "instrument":
            self.table.sent(INSTRUMENT, time.monotonic())
            await self.send({"method": "subscribe", "params": {"channel": "instrument"},
                             "req_id": next(self._req)})
            return
        if self._token_refresh and self.stream == "l3":
            self._token_refresh = False
            self.token = await w.fresh_token()
        batch_max = 50
        if self.stream == "l3":
            cost = l3_cost(self.plan.depth or 10)
            batch_max = max(1, min(50, int(w.l3_capacity // cost)))
        for i in range(0, len(symbols), batch_max):
            batch = symbols[i:i + batch_max]
            if self.stream == "l3":
                await w.spend_l3(cost * len(batch))
            now = time.monotonic()
            for sym in batch:
                self.table.sent(sym, now)
            params = self._params(batch)
            if self.channel == "trade":
                params["snapshot"] = True  # overlap after reconnects: gaps are then exact
            await self.send({"method": "subscribe", "params": params, "req_id": next(self._req)})
            w.marker(Subscribed(conn_id=self.conn_id, channel=self.channel, symbols=batch,
                                depth=self.plan.depth, interval=self.plan.interval), self.conn_id)

    async def unsubscribe(self, symbols: list[str], reason: str) -> None:
        if not symbols or self.ws is None:
            return
        if self.stream == "futures":
            await self.send({"event": "unsubscribe", "feed": self.channel, "product_ids": symbols})
        else:
            await self.send({"method": "unsubscribe", "params": self._params(symbols),
                             "req_id": next(self._req)})
        self.worker.marker(Unsubscribed(conn_id=self.conn_id, channel=self.channel, symbols=symbols,
                                        reason=reason, depth=self.plan.depth,
                                        interval=self.plan.interval), self.conn_id)

    async def resnapshot(self, symbol: str, reason: str) -> bool:
        """Unsubscribe + subscribe ``symbol`` at the same depth on this live connection."""
        if not self.connected or symbol not in self.table.subs:
            return False
        info = self.table.subs[symbol]
        if info.state == "quarantined":
            return False
        now = time.monotonic()
        self.table.unsubscribing(symbol, now)
        await self.unsubscribe([symbol], reason)
        # Kraken answers in order on one socket: the subscribe follows the unsubscribe.
        if self.stream == "l3":
            await self.worker.spend_l3(l3_cost(self.plan.depth or 10))
        self.table.sent(symbol, time.monotonic())
        if self.stream == "futures":
            await self.send({"event": "subscribe", "feed": self.channel, "product_ids": [symbol]})
        else:
            await self.send({"method": "subscribe", "params": self._params([symbol]),
                             "req_id": next(self._req)})
        self.worker.marker(Subscribed(conn_id=self.conn_id, channel=self.channel, symbols=[symbol],
                                      depth=self.plan.depth, interval=self.plan.interval),
                           self.conn_id)
        return True

    def need_token_refresh(self) -> None:
        self._token_refresh = True
