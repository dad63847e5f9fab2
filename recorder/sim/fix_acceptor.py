"""The local exchange's FIX 4.4 market-data acceptor (issue #17, first slice): L2 only.

Pure part (no I/O, no clock): :class:`AcceptorSession` answers a Logon, Heartbeats and
TestRequests, checks inbound MsgSeqNum (a gap or a number that is too low ends the session
with a Logout, because the acceptor keeps no history to replay), and answers a
MarketDataRequest. The answer is a MarketDataSnapshotFullRefresh taken from the sim's
market (:meth:`recorder.sim.market.SpotMarket.depth`) or a MarketDataRequestReject.
:meth:`AcceptorSession.publish` turns what changed in each subscribed top-N book since the
last call into MarketDataIncrementalRefresh messages (new, change, delete), built with
:mod:`recorder.fix.messages`.

I/O part: :class:`FixAcceptorServer` serves sessions over TLS on one port, using a
self-signed certificate it generates (:func:`self_signed_tls`). Its owner advances the
market and calls :meth:`FixAcceptorServer.publish`.

Not yet here: L3 (port 4005), trades, the FIX fault kinds, and a place in ``recorder sim``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from recorder import _core
from recorder.fix.messages import (
    BID,
    CHANGE,
    DELETE,
    NEW,
    OFFER,
    BookEntry,
    incremental_fields,
    reject_fields,
    snapshot_fields,
)

__all__ = ["AcceptorSession", "FixAcceptorServer", "L2Market", "self_signed_tls"]

KRAKEN_MD = "KRAKEN-MD"
DEPTHS = (0, 1, 10, 25, 100, 500, 1000)
MAX_L2_DEPTH = 1000
Levels = dict[str, str]  # price text -> qty text


class L2Market(Protocol):
    """What the acceptor needs from the market (``SpotMarket`` has it)."""

    @property
    def symbols(self) -> tuple[str, ...]: ...

    def depth(self, symbol: str, count: int) -> tuple[list[tuple[str, str, int]],
                                                      list[tuple[str, str, int]]]: ...


def _time_of_day(now_ns: int) -> str:
    seconds, nanos = divmod(now_ns, 1_000_000_000)
    clock = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return f"{clock:%H:%M:%S}.{nanos // 1_000_000:03d}"


def _levels(rows: list[tuple[str, str, int]]) -> Levels:
    return {price: qty for price, qty, _ in rows}


def l2_changes(before: Levels, after: Levels, entry_type: str, when: str) -> list[BookEntry]:
    """Entries that turn the top-N side ``before`` into ``after`` (deletes first)."""
    out = [BookEntry(entry_type, f"O{p}", p, "0", when, action=DELETE)
           for p in before if p not in after]
    for price, qty in after.items():
        if price not in before:
            out.append(BookEntry(entry_type, f"O{price}", price, qty, when, action=NEW))
        elif before[price] != qty:
            out.append(BookEntry(entry_type, f"O{price}", price, qty, when, action=CHANGE))
    return out


@dataclass(slots=True)
class _Subscription:
    md_req_id: str
    symbol: str
    depth: int
    bids: Levels
    asks: Levels


@dataclass(slots=True)
class AcceptorSession:
    """One client connection's session on the acceptor side; returns bytes to send."""

    market: L2Market
    sender_comp_id: str = KRAKEN_MD
    client_comp_id: str | None = None
    logged_on: bool = False
    closed: bool = False
    next_out: int = 1
    expected_in: int = 1
    subscriptions: list[_Subscription] = field(default_factory=list)

    def _send(self, msg_type: str, fields: list[tuple[int, str]], now_ns: int) -> bytes:
        data = _core.encode_fix(msg_type, self.next_out, self.sender_comp_id,
                                self.client_comp_id or "?", now_ns, fields)
        self.next_out += 1
        return data

    def _logout(self, text: str, now_ns: int) -> list[bytes]:
        self.closed = True
        return [self._send("5", [(58, text)] if text else [], now_ns)]

    def on_frame(self, frame: dict[str, Any], now_ns: int) -> list[bytes]:
        """Answer one frame from ``FixFramer.feed``."""
        if self.closed:
            return []
        if not frame["ok"]:
            seq = frame.get("seq_num")
            if frame["reason"] in ("garbage", "body_length", "checksum", "too_long") or (
                    seq is None or not self.logged_on):
                return []  # garbled: ignored, as FIX prescribes
            self.expected_in = max(self.expected_in, seq + 1)
            fields = [(45, str(seq)), (373, "99"), (58, frame["detail"][:200])]
            return [self._send("3", fields, now_ns)]
        if not self.logged_on:
            if frame["msg_type"] != "A":
                self.closed = True
                return []
            self.client_comp_id = frame["sender"]
            self.logged_on = True
            if frame["fields"].get(141) == "Y":
                self.next_out = 1
            self.expected_in = frame["seq_num"] + 1
            return [self._send("A", [(98, "0"), (108, frame["fields"].get(108, "60"))], now_ns)]
        seq = frame["seq_num"]
        if seq != self.expected_in and not frame["poss_dup"]:
            return self._logout(f"MsgSeqNum {seq}, expected {self.expected_in}", now_ns)
        self.expected_in = seq + 1
        fields = frame["fields"]
        match frame["msg_type"]:
            case "0" | "4" | "3":
                return []
            case "1":
                return [self._send("0", [(112, fields[112])], now_ns)]
            case "5":
                return self._logout("", now_ns)
            case "V":
                return self._on_request(frame, now_ns)
            case other:
                return [self._send("3", [(45, str(seq)), (372, other), (373, "11"),
                                         (58, f"unsupported MsgType {other}")], now_ns)]

    def _on_request(self, frame: dict[str, Any], now_ns: int) -> list[bytes]:
        fields = frame["fields"]
        req_id = fields[262]
        symbols = [v for t, v in frame["field_list"] if t == 55]
        if fields[263] == "2":
            self.subscriptions = [s for s in self.subscriptions if s.md_req_id != req_id]
            return []
        depth = int(fields[264])

        def reject(reason: str, text: str) -> list[bytes]:
            return [self._send("Y", reject_fields(req_id, reason, text), now_ns)]

        if any(s.md_req_id == req_id for s in self.subscriptions):
            return reject("1", "Duplicate MDReqID")
        if depth not in DEPTHS:
            return reject("5", f"Unsupported market depth: {depth}")
        if fields.get(266) == "N":
            return reject("B", "Level3 not available")
        unknown = [s for s in symbols if s not in self.market.symbols]
        if unknown or not symbols:
            return reject("0", f"Unknown symbol: {','.join(unknown) or '(none)'}")
        count = MAX_L2_DEPTH if depth == 0 else depth
        out = []
        when = _time_of_day(now_ns)
        for symbol in symbols:
            bids, asks = self.market.depth(symbol, count)
            sub = _Subscription(req_id, symbol, count, _levels(bids), _levels(asks))
            self.subscriptions.append(sub)
            entries = [BookEntry(BID, f"O{p}", p, q, when) for p, q in sub.bids.items()]
            entries += [BookEntry(OFFER, f"O{p}", p, q, when) for p, q in sub.asks.items()]
            out.append(self._send("W", snapshot_fields(req_id, symbol, entries), now_ns))
        return out

    def publish(self, now_ns: int) -> list[bytes]:
        """Incremental refreshes for every subscription whose top-N book changed."""
        if self.closed or not self.logged_on:
            return []
        out = []
        when = _time_of_day(now_ns)
        for sub in self.subscriptions:
            bids, asks = self.market.depth(sub.symbol, sub.depth)
            new_bids, new_asks = _levels(bids), _levels(asks)
            entries = l2_changes(sub.bids, new_bids, BID, when)
            entries += l2_changes(sub.asks, new_asks, OFFER, when)
            sub.bids, sub.asks = new_bids, new_asks
            if entries:
                fields = incremental_fields(sub.md_req_id, sub.symbol, entries)
                out.append(self._send("X", fields, now_ns))
        return out


def self_signed_tls(directory: Path, host: str = "127.0.0.1") -> tuple[ssl.SSLContext, Path]:
    """A server TLS context with a fresh self-signed certificate for ``host`` (files in
    ``directory``), and the certificate's path for clients to trust."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "recorder sim FIX")])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "fix-sim-cert.pem", directory / "fix-sim-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


@dataclass(slots=True)
class _Client:
    session: AcceptorSession
    framer: Any
    writer: asyncio.StreamWriter


class FixAcceptorServer:
    """Serves :class:`AcceptorSession` over TLS; ``publish`` fans out incremental refreshes."""

    def __init__(self, market: L2Market, clock_ns: Any, *, host: str = "127.0.0.1",
                 port: int = 0, directory: Path | None = None) -> None:
        self.market = market
        self.clock_ns = clock_ns  # callable returning the exchange time (int ns)
        self.host, self.port = host, port
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="fix-sim-")
        self.directory = directory or Path(self._tmp.name if self._tmp else ".")
        self.ssl_context, self.cert_path = self_signed_tls(self.directory, host)
        self._server: asyncio.Server | None = None
        self._clients: list[_Client] = []

    async def start(self) -> int:
        """Listen; returns the bound port."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for client in self._clients:
            client.writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await client.writer.wait_closed()
        self._clients.clear()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def publish(self) -> None:
        """Send each session what changed in its books since the last call."""
        now = self.clock_ns()
        for client in list(self._clients):
            for data in client.session.publish(now):
                client.writer.write(data)
            with contextlib.suppress(ConnectionError):
                await client.writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(AcceptorSession(self.market), _core.FixFramer(), writer)
        self._clients.append(client)
        try:
            while not client.session.closed:
                data = await reader.read(65536)
                if not data:
                    break
                for frame in client.framer.feed(data):
                    for out in client.session.on_frame(frame, self.clock_ns()):
                        writer.write(out)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            if client in self._clients:
                self._clients.remove(client)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
