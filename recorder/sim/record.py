"""Record mode: write a pre-generated stream of raw Kraken frames without serving.

A virtual client opens two connections at virtual time ``START_NS``: a Spot WS v2 public one
(``/v2``) subscribed to ``instrument`` (first, as a recorder does, so that every pair's precision
is on record before its data), then ``book`` depth 10, ``trade``, ``ohlc`` interval 1 and ``ticker`` on
every selected pair, and a level3 one (``/l3/v2``) subscribed to ``level3`` depth 10 on the
same pairs. It receives exactly what the server would send: the ``status`` greeting, one ack
and one snapshot per symbol, updates, and ``{"channel":"heartbeat"}`` after a second of
silence. The market is advanced in virtual ticks of ``TICK_NS``; a frame's receive time is
the end of its tick plus a seeded latency (strictly increasing per connection).

Faults (``--faults``) apply per frame exactly as when serving, on the virtual clock:
``drop``, ``duplicate``, ``reorder``, ``checksum``, ``number``, ``malformed``; ``stall`` delays
the connection's frames by its duration; ``close`` ends the connection (a line with
``"event": "close"`` and no frame) and the client reconnects with a new connection id,
resubscribing (fresh acks and snapshots).

File format: zstd-compressed (one frame) JSON Lines, one object per received frame, keys in
this order::

    {"recv_ns": <int>, "conn": <uint64 connection id>, "ep": "spot"|"l3", "frame": "<exact text>"}

Same universe, seed, rate, faults and message count give a byte-identical file.
"""

from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path
from typing import Any, Final

import msgspec
import zstandard

from recorder.sim.faults import FaultPlan, FaultRule
from recorder.sim.server import rfc3339_us
from recorder.sim.truth import TruthWriter
from recorder.sim.universe import Universe

__all__ = ["START_NS", "TICK_NS", "record", "read_record"]

#: Virtual start: 2025-01-01T00:00:00Z (fixed, so that files are reproducible).
START_NS: Final = 1_735_689_600_000_000_000
TICK_NS: Final = 2_000_000
_HEARTBEAT_NS: Final = 1_000_000_000
_ENC: Final = msgspec.json.Encoder(order="sorted")
_LINE: Final = msgspec.json.Encoder()


class _Line(msgspec.Struct, array_like=False):
    recv_ns: int
    conn: int
    ep: str
    frame: str


class _CloseLine(msgspec.Struct):
    recv_ns: int
    conn: int
    ep: str
    event: str


class _VirtualConn:
    def __init__(self, ep: str, conn_id: int) -> None:
        self.ep = ep
        self.id = conn_id
        self.last_recv = 0
        self.held: str | None = None
        self.stall_until = 0
        self.keys: list[tuple] = []
        self.open = True


class _Recorder:
    def __init__(self, out: Any, universe: Universe, *, messages: int, seed: int, rate: float,
                 rules: list[FaultRule], truth: TruthWriter | None) -> None:
        from recorder.sim.market import SpotMarket

        self.out = out
        self.limit = messages
        self.written = 0
        self.now = START_NS
        self.truth = truth
        self.market = SpotMarket(universe, seed=seed, rate=rate, start_ns=START_NS)
        self.symbols = [p.symbol for p in universe.pairs if p.status != "delisted"]
        self.rng = random.Random(f"record:{seed}")
        self.plan = FaultPlan(rules, seed=seed, clock_ns=lambda: self.now,
                              sink=truth.write_record if truth is not None else None)
        self.subs: dict[tuple, list[_VirtualConn]] = {}
        self.conns: list[_VirtualConn] = []
        self.req_id = 0

    # --- output -----------------------------------------------------------------------------

    def _recv_time(self, conn: _VirtualConn) -> int:
        latency = 150_000 + self.rng.randrange(100_000)
        t = max(self.now + latency, conn.stall_until, conn.last_recv + 1)
        conn.last_recv = t
        return t

    def emit(self, conn: _VirtualConn, frame: str) -> None:
        if self.written >= self.limit or not conn.open:
            return
        self.out.write(_LINE.encode(_Line(self._recv_time(conn), conn.id, conn.ep, frame)))
        self.out.write(b"\n")
        self.written += 1

    def data(self, conn: _VirtualConn, frame: str, key: tuple) -> None:
        if not self.plan.active:
            self.emit(conn, frame)
            return
        verdict = self.plan.on_frame(frame, conn=conn.id, endpoint=conn.ep, channel=key[0],
                                     symbol=key[1] if len(key) > 1 else None)
        for f in verdict.frames:
            self.emit(conn, f)
        if verdict.frames and conn.held is not None:
            held, conn.held = conn.held, None
            self.emit(conn, held)
        if verdict.hold is not None:
            if conn.held is not None:
                self.emit(conn, conn.held)
            conn.held = verdict.hold
        if verdict.stall_s:
            conn.stall_until = max(conn.stall_until, self.now + int(verdict.stall_s * 1e9))
        if verdict.close:
            self.close(conn)

    # --- connections ------------------------------------------------------------------------

    def connect(self, ep: str) -> _VirtualConn:
        conn = _VirtualConn(ep, (1 << 63) + self.rng.getrandbits(63))
        self.conns.append(conn)
        self.emit(conn, _ENC.encode({
            "channel": "status", "type": "update",
            "data": [{"api_version": "v2", "connection_id": conn.id, "system": "online",
                      "version": "2.0.0"}],
        }).decode())
        if ep == "spot":
            # like a recorder: the instrument channel first, so precisions are known before data
            plan = [("instrument", {}, True), ("book", {"depth": 10}, True), ("trade", {}, False),
                    ("ohlc", {"interval": 1}, True), ("ticker", {"event_trigger": "trades"}, True)]
        else:
            plan = [("level3", {"depth": 10}, True)]
        for channel, extra, snapshot in plan:
            self.req_id += 1
            t_in = rfc3339_us(self.now)
            for symbol in (None,) if channel == "instrument" else self.symbols:
                key = (channel,) if symbol is None else (channel, symbol, *extra.values())
                result: dict[str, Any] = {"channel": channel, **extra, "snapshot": snapshot}
                if symbol is not None:
                    result["symbol"] = symbol
                if channel == "ohlc":
                    result["warnings"] = ["timestamp is deprecated, use interval_begin"]
                self.emit(conn, _ENC.encode({
                    "method": "subscribe", "req_id": self.req_id, "result": result, "success": True,
                    "time_in": t_in, "time_out": rfc3339_us(self.now),
                }).decode())
                for frame in self.market.subscribe(key, snapshot=snapshot):
                    self.data(conn, frame, key)
                self.subs.setdefault(key, []).append(conn)
                conn.keys.append(key)
        return conn

    def close(self, conn: _VirtualConn) -> None:
        if not conn.open:
            return
        if self.written < self.limit:
            self.out.write(_LINE.encode(_CloseLine(self._recv_time(conn), conn.id, conn.ep, "close")))
            self.out.write(b"\n")
        conn.open = False
        for key in conn.keys:
            self.subs[key].remove(conn)
            self.market.unsubscribe(key)
        self.conns.remove(conn)
        self.connect(conn.ep)  # the client reconnects at once

    # --- main loop --------------------------------------------------------------------------

    def run(self) -> None:
        self.market.advance(START_NS)
        self.connect("spot")
        self.connect("l3")
        while self.written < self.limit:
            self.now += TICK_NS
            events = self.market.advance(self.now)
            if self.truth is not None:
                self.truth.write_events(events)
            for key, frame in self.market.updates():
                for conn in tuple(self.subs.get(key, ())):
                    self.data(conn, frame, key)
            for conn in tuple(self.conns):
                if conn.held is not None and self.now - conn.last_recv > _HEARTBEAT_NS // 2:
                    held, conn.held = conn.held, None
                    self.emit(conn, held)
                if self.now - conn.last_recv >= _HEARTBEAT_NS and self.now >= conn.stall_until:
                    self.data(conn, '{"channel":"heartbeat"}', ("heartbeat",))
            if self.plan.active:
                for rule in self.plan.due_connection_faults():
                    for conn in tuple(self.conns):
                        if rule.endpoint not in (None, conn.ep):
                            continue
                        self.plan.record(rule.kind, conn=conn.id, endpoint=conn.ep,
                                         detail={"rule": rule.text, "duration_s": rule.duration})
                        if rule.kind == "stall":
                            conn.stall_until = self.now + int((rule.duration or 5.0) * 1e9)
                        else:
                            self.close(conn)


def record(path: Path, universe: Universe, *, messages: int, seed: int, rate: float = 1.0,
           rules: list[FaultRule] | None = None, truth_path: Path | None = None) -> dict[str, Any]:
    """Write ``messages`` frames to ``path`` (see module docstring); returns a summary."""
    started = time.perf_counter()
    truth = TruthWriter(truth_path) if truth_path is not None else None
    path = Path(path)
    try:
        with open(path, "wb") as raw:
            with zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False) as out:
                rec = _Recorder(out, universe, messages=messages, seed=seed, rate=rate,
                                rules=list(rules or []), truth=truth)
                rec.run()
    finally:
        if truth is not None:
            truth.close()
    elapsed = time.perf_counter() - started
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {
        "event": "recorded", "path": str(path), "messages": rec.written,
        "virtual_seconds": round((rec.now - START_NS) / 1e9, 3), "bytes": path.stat().st_size,
        "elapsed_s": round(elapsed, 3), "frames_per_s": round(rec.written / elapsed) if elapsed else None,
        "sha256": digest, "faults_injected": rec.plan.injected,
    }


def read_record(path: Path) -> list[dict[str, Any]]:
    """Decode a recorded file back to dicts (tests, tools)."""
    data = zstandard.ZstdDecompressor().decompressobj().decompress(Path(path).read_bytes())
    return [msgspec.json.decode(line) for line in data.splitlines() if line]
