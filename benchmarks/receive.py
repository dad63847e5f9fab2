"""Receive suite: CPU per message of the WebSocket client on capture's receive path.

A server process writes the archive benchmark's sim frames (``recorder sim --record``, seed 7,
8 pairs) as pre-framed WebSocket text frames over loopback, ``batch`` frames per write; the
harness process reads them with ``recv(decode=False)`` in a loop, as
:class:`recorder.capture.connection.FeedConnection` does, and its process CPU time per message
is the figure. Ours is picows' websockets-compatible client (what capture uses); the peer is
``websockets``. A small batch (few frames per socket read) is the shape of a live feed at
moderate rates; a large one, of a burst.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import signal
import time
from typing import Any

import msgspec
import zstandard

from benchmarks.harness import Figure

__all__ = ["run_receive"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _frames(quick: bool) -> list[str]:
    from benchmarks.archive import _stream

    src = _stream(100_000)
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(src.read_bytes())).read()
    frames = [msgspec.json.decode(line)["frame"] for line in raw.splitlines()
              if b'"frame"' in line]
    return frames[:20_000] if quick else frames


def _serve(frames: list[str], batch: int, port_w: int) -> None:
    """Child process: accept one client, answer its handshake, write every frame, linger."""
    from recorder.sim.spot_ws import encode_text_frames

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key"))
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        for i in range(0, len(frames), batch):
            writer.write(encode_text_frames(frames[i:i + batch]))
            await writer.drain()
            await asyncio.sleep(0)
        await asyncio.sleep(60)

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        os.write(port_w, str(server.sockets[0].getsockname()[1]).encode().ljust(8))
        await asyncio.sleep(120)

    asyncio.run(main())


def _client_cpu_us(library: str, frames: list[str], batch: int) -> float:
    """CPU-us per message of one client reading every frame (checks count and bytes)."""
    if library == "picows":
        from picows.websockets.asyncio.client import connect
    else:
        from websockets.asyncio.client import connect  # type: ignore[assignment]
    port_r, port_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            _serve(frames, batch, port_w)
        finally:
            os._exit(0)
    try:
        port = int(os.read(port_r, 8))
        expected = sum(len(f.encode()) for f in frames)

        async def read_all() -> float:
            ws: Any = await connect(f"ws://127.0.0.1:{port}/", max_size=64 * 1024 * 1024,
                                    max_queue=4096, compression=None, close_timeout=0.1)
            n = size = 0
            c = time.process_time()
            while n < len(frames):
                payload = await ws.recv(decode=False)
                size += len(payload)
                n += 1
            cpu = time.process_time() - c
            await ws.close()  # the server never answers the close: close_timeout bounds it
            if size != expected:
                raise AssertionError(f"{library}: {size} bytes received, {expected} sent")
            return cpu

        return 1e6 * asyncio.run(read_all()) / len(frames)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(port_r)
        os.close(port_w)


def run_receive(*, quick: bool = False) -> list[Figure]:
    frames = _frames(quick)
    figures = []
    for batch in (5, 50):
        ours = min(_client_cpu_us("picows", frames, batch) for _ in range(3))
        peer = min(_client_cpu_us("websockets", frames, batch) for _ in range(3))
        figures.append(Figure(
            f"capture: WebSocket receive, {batch} frames per server write", ours, "CPU-us/msg",
            peer=f"websockets {peer:.2f} CPU-us/msg (ours x{peer / ours:.1f} cheaper)",
            note=f"picows websockets-compatible client, recv(decode=False) loop over "
                 f"{len(frames):,} sim frames on loopback; best of 3; client process CPU"))
    return figures
