"""The FIX part of a worker (issue #17): Kraken's FIX 4.4 market data into the same archive.

:class:`FixPart` runs one :class:`FixConnection` per ``[fix] channels`` entry (``L2`` on
``l2_port``, ``L3`` on ``l3_port``), each a task of the worker's task group named
``connection fix-...`` (so the worker's shutdown waits for its Logout like for the WebSocket
connections). A connection is an asyncio TLS initiator (TLS 1.2 minimum; the server's
certificate verified unless ``tls_verify = false``) driving the sans-IO
:class:`~recorder.fix.session.FixSession`: it logs on, sends one MarketDataRequest (35=V) per
symbol, answers heartbeats and TestRequests on the session's own deadlines
(:meth:`~recorder.fix.session.FixSession.next_deadline_ns`), and on stop logs out and waits
(bounded) for the peer's Logout.

What goes into the archive: every inbound message's exact bytes and every message we send,
as frames of stream ``fix`` (L2 port) or ``fix_l3`` (L3 port) with the connection id and the
receive time, through the worker's one write path (journal first, then the pipeline that
``recorder ingest`` runs too). ``Connected`` / ``Disconnected`` markers bracket each TCP
connection. The pipeline derives ``book``, ``level3``, ``trades``, ``epochs``, ``gaps`` and
``liveness`` from those frames alone (docs/fix.md), so the journal stays the source of truth.

Gaps: the pipeline ends a symbol's epochs at a sequence gap; this part then sends every
subscription again (:meth:`~recorder.fix.session.FixSession.resubscribe`) so that fresh
snapshots (35=W) open new epochs. A disconnect, a Logout or a fatal session error closes the
socket; the connection reconnects with exponential backoff (``backoff_base_s`` ..
``backoff_max_s``), logs on with ResetSeqNumFlag and subscribes again (Kraken: subscriptions
die with the connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from recorder import _core
from recorder.capture.config import FixConfig
from recorder.capture.limits import Backoff
from recorder.fix.session import (
    Disconnect,
    DuplicateIgnored,
    FixSession,
    GapDetected,
    InboundRejected,
    LoggedOn,
    PeerReject,
    ResubscribeNeeded,
    Send,
    SessionAction,
    SessionConfig,
    Subscription,
)
from recorder.frames import Frame
from recorder.pipeline.markers import STOP_REASON, Connected, Disconnected, Marker
from recorder.pipeline.signals import Signal

__all__ = ["FixConnection", "FixHost", "FixPart", "fix_subscriptions", "fix_tls_context"]

log = logging.getLogger("recorder.capture.fix")

#: Seconds a stopping connection waits for the peer's Logout before it closes the socket.
LOGOUT_WAIT_S = 2
#: Bytes asked of the TLS stream per read.
READ_BYTES = 65536


class FixHost(Protocol):
    """What a FIX connection needs from its worker."""

    def emit(self, frame: Frame) -> list[Signal]: ...

    def marker(self, marker: Marker, conn_id: int = 0) -> None: ...

    def new_conn_id(self) -> int: ...

    async def wait_instruments(self) -> None: ...


def fix_tls_context(cfg: FixConfig) -> ssl.SSLContext:
    """The client TLS context: TLS 1.2 or newer (Kraken), the server verified against the
    system store or ``ca_file``, unless ``tls_verify`` is off (UAT only)."""
    context = ssl.create_default_context(cafile=cfg.ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not cfg.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def fix_subscriptions(cfg: FixConfig, level3: bool) -> list[Subscription]:
    """One MarketDataRequest per symbol (a refusal of one symbol leaves the others alone)."""
    prefix = "l3" if level3 else "l2"
    return [Subscription(f"{prefix}-{symbol}", (symbol,), depth=cfg.depth, level3=level3,
                         trades=cfg.trades and not level3) for symbol in cfg.symbols]


class FixConnection:
    """One FIX market-data session, reconnected until the worker stops (module docstring)."""

    def __init__(self, cfg: FixConfig, *, level3: bool, host: FixHost,
                 stopping: asyncio.Event, rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.level3 = level3
        self.stream = "fix_l3" if level3 else "fix"
        self.port = cfg.l3_port if level3 else cfg.l2_port
        self.name = f"fix-{'l3' if level3 else 'l2'}"
        self.url = f"fix://{cfg.host}:{self.port}"
        self._host = host
        self._stopping = stopping
        self._tls = fix_tls_context(cfg)
        self.subscriptions = fix_subscriptions(cfg, level3)
        self.backoff = Backoff(cfg.backoff_base_s, cfg.backoff_max_s, rng)
        self.conn_id: int | None = None
        self.connected = False
        self.logged_on = False
        self.sessions = 0
        self.messages = 0
        self.bytes = 0
        self.gaps = 0
        self.last_error: str | None = None
        self.retry_at: float | None = None
        self._last_ns = 0
        #: the first missing MsgSeqNum of the gap last acted on (one resubscription per gap)
        self._gap_from: int | None = None

    async def run(self) -> None:
        """Connect, run a session, back off, again, until the worker stops. The first connect
        waits (bounded) for the instrument snapshot, as the WebSocket book connections do, so
        that FIX books are built with the venue's precisions rather than inferred ones."""
        await self._host.wait_instruments()
        while not self._stopping.is_set():
            healthy = await self._session()
            if self._stopping.is_set():
                return
            if healthy:
                self.backoff.reset()
            delay = self.backoff.next_delay()
            self.retry_at = time.time() + delay
            log.info("%s: reconnecting in %.1fs", self.name, delay)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            self.retry_at = None

    def _journal(self, conn_id: int, direction: str, data: bytes) -> None:
        """One message as a journal frame. Its ``recv_ns`` is strictly after the previous
        one's: readers of the archive split a FIX book's rows into messages where
        ``recv_ns`` changes (no checksum marks a FIX message's last row)."""
        now = time.time_ns()
        if now <= self._last_ns:
            now = self._last_ns + 1
        self._last_ns = now
        self._host.emit(Frame(recv_ns=now, conn_id=conn_id,
                              stream=self.stream,  # type: ignore[arg-type]
                              direction=direction, payload=data))  # type: ignore[arg-type]

    async def _session(self) -> bool:
        """One TCP/TLS connection and its FIX session; True when it got logged on."""
        cfg = self.cfg
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(cfg.host, self.port, ssl=self._tls),
                cfg.connect_timeout_s)
        except (OSError, ssl.SSLError, asyncio.TimeoutError) as exc:
            self.last_error = f"connect: {type(exc).__name__}: {exc}"[:300]
            log.warning("%s: cannot connect to %s: %s", self.name, self.url, self.last_error)
            return False
        conn_id = self._host.new_conn_id()
        self.conn_id, self.connected, self.logged_on = conn_id, True, False
        self.sessions += 1
        self._gap_from = None
        self._host.marker(Connected(conn_id=conn_id, stream=self.stream, url=self.url), conn_id)
        session = FixSession(SessionConfig(cfg.sender_comp_id, cfg.target_comp_id,
                                           heartbeat_s=cfg.heartbeat_s,
                                           logout_timeout_s=LOGOUT_WAIT_S))
        now = time.time_ns()
        for sub in self.subscriptions:
            session.subscribe(sub, now)  # registered: sent once the Logon is answered
        reason = "connection closed by the peer"
        framer = _core.FixFramer()
        stop_wait = asyncio.ensure_future(self._stopping.wait())
        read: asyncio.Future[bytes] | None = None
        logging_out = False
        try:
            done = await self._act(session, session.start(now), writer, conn_id)
            while done is None:
                if stop_wait.done() and not logging_out:
                    logging_out = True
                    done = await self._act(session, session.logout("recorder stopping",
                                                                   time.time_ns()),
                                           writer, conn_id)
                    if done is not None:
                        break
                deadline = session.next_deadline_ns()
                timeout = None if deadline is None else max(0.0, (deadline - time.time_ns())
                                                           / 1e9)
                if read is None:
                    read = asyncio.ensure_future(reader.read(READ_BYTES))
                waiting: set[asyncio.Future[Any]] = {read}
                if not logging_out:
                    waiting.add(stop_wait)
                finished, _ = await asyncio.wait(waiting, timeout=timeout,
                                                 return_when=asyncio.FIRST_COMPLETED)
                if read in finished:
                    data = read.result()
                    read = None
                    if not data:
                        break
                    done = await self._received(session, framer, data, writer, conn_id)
                elif not finished:
                    done = await self._act(session, session.on_timer(time.time_ns()), writer,
                                           conn_id)
            if done is not None:
                reason = done
        except (OSError, ssl.SSLError) as exc:
            reason = f"{type(exc).__name__}: {exc}"[:300]
        except Exception as exc:  # noqa: BLE001 - a session bug ends this session, not the worker
            log.exception("%s: session on conn %d failed", self.name, conn_id)
            reason = f"internal error: {type(exc).__name__}: {exc}"[:300]
        finally:
            for task in (stop_wait, read):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, OSError, ssl.SSLError):
                        await task
            session.connection_lost()
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            self.connected = False
            if self._stopping.is_set():
                reason = STOP_REASON
            else:
                self.last_error = reason
            log.info("%s: session on conn %d ended: %s", self.name, conn_id, reason)
            self._host.marker(Disconnected(conn_id=conn_id, reason=reason), conn_id)
        return self.logged_on

    async def _received(self, session: FixSession, framer: Any, data: bytes,
                        writer: asyncio.StreamWriter, conn_id: int) -> str | None:
        """Journal each framed message (exact bytes) first, then let the session act on it."""
        self.bytes += len(data)
        for frame in framer.feed(data):
            self.messages += 1
            self._journal(conn_id, "in", frame["raw"])
            done = await self._act(session, session.on_frame(frame, time.time_ns()), writer,
                                   conn_id)
            if done is not None:
                return done
        return None

    async def _act(self, session: FixSession, actions: list[SessionAction],
                   writer: asyncio.StreamWriter, conn_id: int) -> str | None:
        """Carry out the session's actions in order; the reason when one is a Disconnect."""
        queue = list(actions)
        sent = False
        while queue:
            action = queue.pop(0)
            if isinstance(action, Send):
                self._journal(conn_id, "out", action.data)
                writer.write(action.data)
                sent = True
            elif isinstance(action, Disconnect):
                if sent:
                    with contextlib.suppress(OSError, ssl.SSLError):
                        await writer.drain()
                return action.reason
            elif isinstance(action, LoggedOn):
                self.logged_on = True
                log.info("%s: logged on (conn %d, HeartBtInt %ds), %d subscription(s)",
                         self.name, conn_id, action.heartbeat_s, len(self.subscriptions))
            elif isinstance(action, GapDetected):
                if action.expected == self._gap_from:
                    continue  # the same gap, seen again by a later held-back message
                self._gap_from = action.expected
                self.gaps += 1
                log.warning("%s: MsgSeqNum %d where %d was due: books rebuilt from fresh "
                            "snapshots", self.name, action.received, action.expected)
                # after what the session already numbered (its ResendRequest): wire order
                queue += session.resubscribe(
                    f"MsgSeqNum gap {action.expected}..{action.received - 1}",
                    time.time_ns())
            elif isinstance(action, ResubscribeNeeded):
                log.warning("%s: resubscribed (%s)", self.name, action.reason)
            elif isinstance(action, (InboundRejected, PeerReject, DuplicateIgnored)):
                log.info("%s: %s", self.name, action)
        if sent:
            await writer.drain()
        return None

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "stream": self.stream, "url": self.url,
                "connected": self.connected, "logged_on": self.logged_on,
                "conn_id": self.conn_id, "symbols": len(self.subscriptions),
                "messages": self.messages, "bytes": self.bytes, "sessions": self.sessions,
                "sequence_gaps": self.gaps, "last_error": self.last_error,
                "retry_at": self.retry_at, "attempts": self.backoff.failures}


class FixPart:
    """The worker's FIX connections (one per configured channel)."""

    def __init__(self, cfg: FixConfig, *, host: FixHost, stopping: asyncio.Event) -> None:
        self.connections = [FixConnection(cfg, level3=channel == "L3", host=host,
                                          stopping=stopping)
                            for channel in cfg.channels]

    def start(self, spawn: Callable[[Coroutine[Any, Any, Any], str], None]) -> None:
        """Run each connection as a task of the worker's task group."""
        for c in self.connections:
            spawn(c.run(), f"connection {c.name}")

    def status(self) -> dict[str, Any]:
        return {"fix": [c.status() for c in self.connections]}
