"""Hostile network peers on 127.0.0.1 (issue #9 item 3): the capture WebSocket connection and
the REST client against servers that misbehave on purpose.

WebSocket (raw asyncio servers speaking just enough RFC 6455 to misbehave precisely):

* ``never_reads``: completes the handshake, sends heartbeats forever, never reads a byte (our
  pings and subscribes pile up in its buffers, pongs never come);
* ``huge_frame``: announces a 1 GiB frame and starts streaming it;
* ``slowloris``: starts a frame and trickles one byte every 50 ms, forever;
* ``silent``: handshake, then nothing.

Each must end the session (journaled ``Disconnected`` with a reason) and reconnect within a
bounded time, with bounded memory (tracemalloc).

REST (aiohttp): a 100 MB answer and a trickling answer: a clean ``RestFailure`` within the
configured time; memory bounded by a body limit (``RestConfig.max_body_bytes``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import struct
import time
import tracemalloc
from dataclasses import replace
from typing import Any

import pytest

from recorder.capture.config import CaptureConfig, ConnectionConfig, RestConfig
from recorder.capture.connection import FeedConnection
from recorder.capture.limits import Backoff
from recorder.capture.rest_client import RestClient, RestFailure
from recorder.capture.shards import ConnPlan
from recorder.frames import Frame
from recorder.pipeline.markers import Connected, Disconnected

pytestmark = pytest.mark.integration

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _ws_frame(payload: bytes, opcode: int = 1) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 2**16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


async def _handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request = await reader.readuntil(b"\r\n\r\n")
    key = b""
    for line in request.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-key:"):
            key = line.split(b":", 1)[1].strip()
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    await writer.drain()


class HostileWs:
    """A loopback WebSocket server with one misbehaviour; counts connections."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.connections = 0
        self.sent = 0
        self.server: asyncio.base_events.Server | None = None
        self.tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/v2"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for t in list(self.tasks):
            t.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        self.connections += 1
        try:
            await _handshake(reader, writer)
            # From here on the server never reads: whatever the client sends stays queued.
            if self.mode == "never_reads":
                hb = _ws_frame(b'{"channel":"heartbeat"}')
                while True:
                    writer.write(hb)
                    self.sent += len(hb)
                    await asyncio.sleep(0.02)
            elif self.mode == "huge_frame":
                writer.write(struct.pack("!BBQ", 0x81, 127, 2**30))
                chunk = b"x" * 65536
                for _ in range(2**30 // len(chunk)):
                    writer.write(chunk)
                    self.sent += len(chunk)
                    await writer.drain()
            elif self.mode == "slowloris":
                writer.write(struct.pack("!BBH", 0x81, 126, 1000) + b'{"channel":"heartbeat"')
                while True:
                    await asyncio.sleep(0.05)
                    writer.write(b" ")
                    self.sent += 1
                    await writer.drain()
            else:  # silent
                await asyncio.sleep(3600)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()


class FakeWorker:
    """Just what :class:`FeedConnection` needs from a worker; frames are counted, not kept
    (markers are kept)."""

    def __init__(self, cfg: CaptureConfig) -> None:
        self.cfg = cfg
        self.stopping = asyncio.Event()
        self.paused = asyncio.Event()
        self.l3_capacity = 1000.0
        self.markers: list[Any] = []
        self.times: list[float] = []
        self.frames = 0
        self.bytes_in = 0
        self._ids = itertools.count(1)

    def emit(self, frame: Frame) -> list[Any]:
        self.frames += 1
        self.bytes_in += len(frame.payload)
        return []

    def marker(self, marker: Any, conn_id: int = 0) -> None:
        self.markers.append(marker)
        self.times.append(time.monotonic())

    def on_signals(self, *args: Any) -> None: ...
    def on_disconnected(self, conn: Any) -> None: ...
    def instruments_seen(self, frame: Any = None) -> None: ...

    def activity(self, conn_id: int) -> dict[tuple[str, str], tuple[int, int]]:
        return {}

    async def wait_instruments(self) -> None: ...
    async def connect_slot(self) -> None: ...
    async def spend_l3(self, cost: float) -> None: ...
    async def wait_resumed(self) -> None:
        await asyncio.sleep(0.01)

    async def fresh_token(self) -> str:
        return "token"

    def new_conn_id(self) -> int:
        return next(self._ids)


def _cfg(url: str, **conn: Any) -> CaptureConfig:
    base = CaptureConfig()
    return replace(base, venue=replace(base.venue, spot_ws=url),
                   connection=replace(ConnectionConfig(), silence_s=1.5, ping_interval_s=0.5,
                                      connect_timeout_s=2.0, ack_timeout_s=5.0,
                                      backoff_base_s=0.05, backoff_max_s=0.2, **conn))


async def _run_against(mode: str, seconds: float) -> tuple[HostileWs, FakeWorker, int]:
    server = HostileWs(mode)
    url = await server.start()
    worker = FakeWorker(_cfg(url))
    plan = ConnPlan(name="t", stream="spot", channel="book", symbols=("BTC/USD",), depth=10)
    conn = FeedConnection(plan, worker, settings=worker.cfg.connection, url=url,
                          backoff=Backoff(0.05, 0.2))
    tracemalloc.start()
    task = asyncio.create_task(conn.run())
    try:
        # run until the peer was dropped and reconnected twice (bounded by ``seconds``): a
        # fixed sleep made the count depend on how loaded the machine was
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and (
                server.connections < 2
                or sum(isinstance(m, Connected) for m in worker.markers) < 2):
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        worker.stopping.set()
        await conn.close("test over")
        try:
            await asyncio.wait_for(task, 10)
        finally:
            await server.stop()
    return server, worker, peak


@pytest.mark.parametrize("mode,max_detect_s", [("never_reads", 3.0), ("huge_frame", 1.0),
                                               ("slowloris", 3.0), ("silent", 3.0)])
def test_hostile_websocket_peer_is_dropped_and_reconnected(mode: str, max_detect_s: float) -> None:
    window = 15.0  # upper bound; the run ends as soon as two connections were made
    server, worker, peak = asyncio.run(_run_against(mode, window))
    downs = [m for m in worker.markers if isinstance(m, Disconnected)]
    ups = [m for m in worker.markers if isinstance(m, Connected)]
    # detected and reconnected, repeatedly, within the window (each detection is bounded)
    assert server.connections >= 2, (mode, worker.markers)
    assert len(ups) >= 2 and len(downs) >= 1
    first_up = worker.times[worker.markers.index(ups[0])]
    first_down = worker.times[worker.markers.index(downs[0])]
    # detection within its bound (+ slack for a loaded CI machine)
    assert first_down - first_up <= max_detect_s + 1.5, (mode, first_down - first_up)
    assert all(d.reason for d in downs), downs
    # memory stays bounded: nothing like the 1 GiB announced frame or a growing backlog
    assert peak < 32 * 2**20, f"{mode}: peak {peak / 2**20:.1f} MiB"
    if mode == "huge_frame":
        assert any("1009" in d.reason or "too big" in d.reason.lower() or "closed" in d.reason
                   for d in downs), downs


# ----------------------------------------------------------------------------- REST


async def _rest_server(kind: str):
    from aiohttp import web

    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = 100 * 2**20
        await resp.prepare(request)
        chunk = b" " * 2**20
        with contextlib.suppress(ConnectionError):
            for _ in range(100):
                await resp.write(chunk)
        return resp

    async def trickle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            await resp.write(b'{"error":[],"result":{')
            for _ in range(10_000):
                await asyncio.sleep(0.05)
                await resp.write(b" ")
        return resp

    async def stall(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(3600)
        return web.Response()

    app = web.Application()
    app.router.add_get("/0/public/Trades", {"huge": huge, "trickle": trickle,
                                            "stall": stall}[kind])
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def _rest_call(kind: str, timeout_s: float) -> tuple[BaseException | None, float, int, list[Frame]]:
    runner, base = await _rest_server(kind)
    journal: list[Frame] = []
    client = RestClient(base, base, RestConfig(timeout_s=timeout_s, public_burst=5),
                        journal.append)
    tracemalloc.start()
    t0 = time.monotonic()
    err: BaseException | None = None
    try:
        await client.trades("XBT/USD", None)
    except Exception as exc:  # noqa: BLE001 - the type is asserted by the caller
        err = exc
    elapsed = time.monotonic() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    await client.close()
    await runner.cleanup()
    return err, elapsed, peak, journal


@pytest.mark.parametrize("kind", ["trickle", "stall"])
def test_slow_rest_answers_end_in_a_clean_error_in_time(kind: str) -> None:
    err, elapsed, _, _ = asyncio.run(_rest_call(kind, timeout_s=1.5))
    assert isinstance(err, RestFailure), repr(err)
    assert "TimeoutError" in str(err)
    assert elapsed < 1.5 + 1.0, elapsed


def test_huge_rest_answer_is_a_clean_error() -> None:
    err, elapsed, _, journal = asyncio.run(_rest_call("huge", timeout_s=20))
    assert isinstance(err, RestFailure), repr(err)
    assert elapsed < 20


def test_huge_rest_answer_is_cut_at_a_body_limit() -> None:
    err, _, peak, journal = asyncio.run(_rest_call("huge", timeout_s=20))
    assert isinstance(err, RestFailure)
    assert peak < 32 * 2**20, f"peak {peak / 2**20:.0f} MiB for a 100 MiB answer"
    assert all(len(f.payload) < 32 * 2**20 for f in journal)
