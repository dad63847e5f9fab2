"""The local exchange's FIX 4.4 market-data acceptor (issue #17): L2 and L3, trades, faults.

Pure part (no I/O, no clock): :class:`AcceptorSession` is one client's session. It answers
Logon, Heartbeat, TestRequest, ResendRequest (with a SequenceReset-GapFill: market data is
never replayed, docs/fix.md) and Logout, and a MarketDataRequest with a
MarketDataSnapshotFullRefresh (W) or a MarketDataRequestReject (Y). :meth:`AcceptorSession.publish`
returns what happened since its last call as MarketDataIncrementalRefresh (X) messages, and a
Heartbeat when nothing was sent for HeartBtInt:

* an **L2** session (Kraken's port 4000, ``level3=False``) diffs each subscribed top-N book
  (:meth:`~recorder.sim.market.SpotMarket.depth`); MDEntryID is ``O`` + the price, as in
  Kraken's examples;
* an **L3** session (port 4005, ``level3=True``, requests with AggregatedBook 266=N) diffs
  the individual orders of the top-N price levels
  (:meth:`~recorder.sim.market.SpotMarket.l3_orders`, the orders and ids of the sim's
  WebSocket ``level3`` feed); MDEntryID is the order id, with 5060 MDEntryTimestamp and
  5273 MDEntryTimeQueue; a changed quantity is an Update, a changed price a Delete then a New
  (the order joins the back of its new level);
* **trades** (MDEntryType 2, L2 only: Kraken rejects L3 requests for trades) are the trades of
  the sim's WebSocket ``trade`` channel (:meth:`~recorder.sim.market.SpotMarket.trades_since`):
  MDEntryID is the trade id, with price, quantity, 40 OrdType and 2446 AggressorSide.

Faults (:meth:`AcceptorSession.inject`, scheduled by :class:`recorder.sim.faults.FaultPlan`
kinds ``fix_gap``, ``fix_duplicate``, ``fix_checksum``, ``fix_stall`` and ``fix_logout``).

I/O part: :class:`FixAcceptorServer` serves sessions over TLS on one port, using a
self-signed certificate (:func:`self_signed_tls`). Its owner (``recorder sim``: the clock
of :class:`recorder.sim.server.SimServer`) advances the market and calls
:meth:`FixAcceptorServer.tick`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import ipaddress
import ssl
import tempfile
from collections.abc import Callable
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
    TRADE,
    BookEntry,
    incremental_fields,
    reject_fields,
    snapshot_fields,
)
from recorder.sim.engine import rfc3339

__all__ = ["AcceptorSession", "FixAcceptorServer", "L2Market", "self_signed_tls"]

KRAKEN_MD = "KRAKEN-MD"
DEPTHS = (0, 1, 10, 25, 100, 500, 1000)
MAX_L2_DEPTH = 1000
#: price levels per side for an L3 MarketDepth 0 ("full book"): every level
FULL_L3_DEPTH = 1 << 30
#: messages kept for ``fix_duplicate`` (and OrigSendingTime of a gap fill)
HISTORY = 1000
#: a stall without ``duration``: this many HeartBtInt (the initiator times out after 2.2)
STALL_HEARTBEATS = 2.5
NS = 1_000_000_000
Levels = dict[str, str]  # price text -> qty text
Orders = dict[str, tuple[str, str, str, int]]  # order id -> (side, price, qty, ts_ns)


class L2Market(Protocol):
    """What the acceptor needs from the market (``SpotMarket`` has it)."""

    @property
    def symbols(self) -> tuple[str, ...]: ...

    def depth(self, symbol: str, count: int) -> tuple[list[tuple[str, str, int]],
                                                      list[tuple[str, str, int]]]: ...

    def l3_orders(self, symbol: str, depth: int) -> tuple[list[tuple[str, str, str, int]],
                                                          list[tuple[str, str, str, int]]]: ...

    def trades_since(self, symbol: str, since_ns: int | None, count: int = 1000) -> list[Any]: ...

    def last_trade_id(self, symbol: str) -> int: ...


def _time_of_day(now_ns: int) -> str:
    seconds, nanos = divmod(now_ns, NS)
    clock = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return f"{clock:%H:%M:%S}.{nanos // 1_000_000:03d}"


def _levels(rows: list[tuple[str, str, int]]) -> Levels:
    return {price: qty for price, qty, _ in rows}


def _orders(bids: list[tuple[str, str, str, int]], asks: list[tuple[str, str, str, int]]) -> Orders:
    out: Orders = {}
    for side, rows in ((BID, bids), (OFFER, asks)):
        for price, qty, order_id, ts_ns in rows:
            out[order_id] = (side, price, qty, ts_ns)
    return out


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


def l3_entry(order_id: str, side: str, price: str, qty: str, ts_ns: int,
             action: int | None = None) -> BookEntry:
    """One order as an L3 entry: MDEntryID = order id, 5060 and 5273 = the order's time."""
    stamp = rfc3339(ts_ns, 9)
    return BookEntry(side, order_id, price, qty, _time_of_day(ts_ns), action=action,
                     timestamp=stamp, queue_time=stamp)


def l3_changes(before: Orders, after: Orders, when_ns: int) -> list[BookEntry]:
    """Entries that turn the order set ``before`` into ``after``: deletes (and the delete half
    of a price move) first, then updates and news in the book's queue order."""
    out = []
    for order_id, (side, price, _qty, ts_ns) in before.items():
        now = after.get(order_id)
        if now is None or now[1] != price or now[0] != side:
            out.append(l3_entry(order_id, side, price, "0", when_ns, DELETE))
    for order_id, (side, price, qty, ts_ns) in after.items():
        old = before.get(order_id)
        if old is None or old[1] != price or old[0] != side:
            out.append(l3_entry(order_id, side, price, qty, ts_ns, NEW))
        elif old[2] != qty:
            out.append(l3_entry(order_id, side, price, qty, ts_ns, CHANGE))
    return out


def trade_entry(trade: Any) -> BookEntry:
    """A sim trade (:class:`~recorder.sim.market.RestTrade`) as a 269=2 entry."""
    return BookEntry(TRADE, str(trade.trade_id), trade.price, trade.qty,
                     _time_of_day(trade.t_ns), action=NEW, timestamp=rfc3339(trade.t_ns, 9),
                     ord_type="1" if trade.ord_type == "m" else "2",
                     aggressor_side="1" if trade.side == "b" else "2")


def garble_checksum(data: bytes) -> bytes:
    """The message with a CheckSum (10=) that does not match its bytes."""
    head, sep, tail = data.rpartition(b"\x0110=")
    good = int(tail[:3])
    return head + sep + b"%03d\x01" % ((good + 128) % 256)


@dataclass(slots=True)
class _Subscription:
    md_req_id: str
    symbol: str
    depth: int
    book: bool
    trades: bool
    bids: Levels = field(default_factory=dict)
    asks: Levels = field(default_factory=dict)
    orders: Orders = field(default_factory=dict)
    last_trade_id: int = 0


@dataclass(frozen=True, slots=True)
class _Sent:
    seq: int
    msg_type: str
    fields: list[tuple[int, str]]
    sending_ns: int


@dataclass(slots=True)
class AcceptorSession:
    """One client connection's session on the acceptor side; returns bytes to send."""

    market: L2Market
    level3: bool = False
    sender_comp_id: str = KRAKEN_MD
    client_comp_id: str | None = None
    logged_on: bool = False
    closed: bool = False
    next_out: int = 1
    expected_in: int = 1
    heartbeat_s: int = 60
    last_sent_ns: int = 0
    subscriptions: list[_Subscription] = field(default_factory=list)
    history: collections.deque[_Sent] = field(
        default_factory=lambda: collections.deque(maxlen=HISTORY))
    #: fault state: numbers to skip before the next message, garble the next one, stall end
    pending_gap: int = 0
    pending_garble: bool = False
    stalled_until_ns: int = 0
    held: list[bytes] = field(default_factory=list)

    # ---- sending ---------------------------------------------------------------------------

    def _send(self, msg_type: str, fields: list[tuple[int, str]], now_ns: int) -> list[bytes]:
        if self.pending_gap:
            self.next_out += self.pending_gap
            self.pending_gap = 0
        seq = self.next_out
        data = _core.encode_fix(msg_type, seq, self.sender_comp_id,
                                self.client_comp_id or "?", now_ns, fields)
        self.next_out += 1
        self.history.append(_Sent(seq, msg_type, fields, now_ns))
        if self.pending_garble:
            data = garble_checksum(data)
            self.pending_garble = False
        self.last_sent_ns = now_ns
        if now_ns < self.stalled_until_ns:
            self.held.append(data)
            return []
        return [data]

    def _logout(self, text: str, now_ns: int) -> list[bytes]:
        out = self.held + self._send("5", [(58, text)] if text else [], now_ns)
        self.held = []
        self.stalled_until_ns = 0
        self.closed = True
        return out

    @property
    def symbols(self) -> list[str]:
        """The symbols this session is subscribed to (in subscription order)."""
        return list(dict.fromkeys(s.symbol for s in self.subscriptions))

    # ---- inbound ---------------------------------------------------------------------------

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
            return self._send("3", fields, now_ns)
        if not self.logged_on:
            if frame["msg_type"] != "A":
                self.closed = True
                return []
            self.client_comp_id = frame["sender"]
            self.logged_on = True
            heartbeat = frame["fields"].get(108, "60")
            if heartbeat.isdigit() and 1 <= int(heartbeat) <= 3600:
                self.heartbeat_s = int(heartbeat)
            if frame["fields"].get(141) == "Y":
                self.next_out = 1
            self.expected_in = frame["seq_num"] + 1
            return self._send("A", [(98, "0"), (108, str(self.heartbeat_s))], now_ns)
        seq = frame["seq_num"]
        fields = frame["fields"]
        out: list[bytes] = []
        if seq < self.expected_in and not frame["poss_dup"]:
            return self._logout(f"MsgSeqNum too low, expecting {self.expected_in} but "
                                f"received {seq}", now_ns)
        if seq > self.expected_in and frame["msg_type"] not in ("4", "5"):
            # ASSUMPTION (docs/fix.md): ask for the missing numbers and carry on; an
            # initiator's messages are admin or requests that it gap-fills
            out += self._send("2", [(7, str(self.expected_in)), (16, "0")], now_ns)
        if seq < self.expected_in:  # a PossDup copy of something already processed
            if frame["msg_type"] == "4" and fields.get(123) == "Y":
                self.expected_in = max(self.expected_in, int(fields[36]))
            return out
        self.expected_in = seq + 1
        match frame["msg_type"]:
            case "0" | "3":
                return out
            case "4":
                new_seq = int(fields[36])
                if new_seq > self.expected_in:
                    self.expected_in = new_seq
                return out
            case "1":
                return out + self._send("0", [(112, fields[112])], now_ns)
            case "2":
                return out + self._answer_resend(int(fields[7]), int(fields[16]), now_ns)
            case "5":
                return out + self._logout("", now_ns)
            case "V":
                return out + self._on_request(frame, now_ns)
            case other:
                return out + self._send("3", [(45, str(seq)), (372, other), (373, "11"),
                                              (58, f"unsupported MsgType {other}")], now_ns)

    def _answer_resend(self, begin: int, end: int, now_ns: int) -> list[bytes]:
        """A SequenceReset-GapFill over ``begin``..``end`` (0: up to now), sent with the first
        number of the range, PossDupFlag=Y and the original SendingTime if still known.
        ASSUMPTION (docs/fix.md): Kraken's market-data gateway does not replay market data."""
        begin = max(1, begin)
        last = self.next_out - 1
        if begin > last:
            return []
        new_seq = self.next_out if end == 0 or end >= last else end + 1
        orig = next((s.sending_ns for s in self.history if s.seq == begin), now_ns)
        data = _core.encode_fix("4", begin, self.sender_comp_id, self.client_comp_id or "?",
                                now_ns, [(123, "Y"), (36, str(new_seq))], poss_dup=True,
                                orig_sending_time_ns=orig)
        self.last_sent_ns = now_ns
        if now_ns < self.stalled_until_ns:
            self.held.append(data)
            return []
        return [data]

    def _on_request(self, frame: dict[str, Any], now_ns: int) -> list[bytes]:
        fields = frame["fields"]
        req_id = fields[262]
        symbols = [v for t, v in frame["field_list"] if t == 55]
        types = {v for t, v in frame["field_list"] if t == 269}
        if fields[263] == "2":
            self.subscriptions = [s for s in self.subscriptions if s.md_req_id != req_id]
            return []

        def reject(reason: str, text: str) -> list[bytes]:
            return self._send("Y", reject_fields(req_id, reason, text), now_ns)

        if fields[263] != "1":
            return reject("4", f"Unsupported SubscriptionRequestType: {fields[263]}")
        if any(s.md_req_id == req_id for s in self.subscriptions):
            return reject("1", "Duplicate MDReqID")
        depth_text = fields.get(264, "0")
        depth = int(depth_text) if depth_text.isdigit() else -1
        if depth not in DEPTHS:
            return reject("5", f"Unsupported market depth: {depth_text}")
        if fields.get(265, "1") != "1":
            return reject("6", "Only incremental refresh is supported")
        if types - {BID, OFFER, TRADE}:
            return reject("8", f"Unsupported MDEntryType: {','.join(sorted(types))}")
        level3 = fields.get(266) == "N"
        if level3 and not self.level3:
            return reject("B", "Level3 not available on this port")
        if not level3 and self.level3:
            # ASSUMPTION: the L3 port serves only non-aggregated books
            return reject("A", "Only AggregatedBook=N (Level3) on this port")
        if level3 and TRADE in types:
            return reject("C", "Trades not available on a Level3 request")
        unknown = [s for s in symbols if s not in self.market.symbols]
        if unknown or not symbols:
            return reject("0", f"Unknown symbol: {','.join(unknown) or '(none)'}")
        book = not types or bool(types & {BID, OFFER})
        trades = TRADE in types
        if level3:
            count = FULL_L3_DEPTH if depth == 0 else depth
        else:
            count = MAX_L2_DEPTH if depth == 0 else depth
        out: list[bytes] = []
        when = _time_of_day(now_ns)
        for symbol in symbols:
            sub = _Subscription(req_id, symbol, count, book, trades,
                                last_trade_id=self.market.last_trade_id(symbol))
            self.subscriptions.append(sub)
            if not book:
                continue
            if level3:
                sub.orders = _orders(*self.market.l3_orders(symbol, count))
                entries = [l3_entry(oid, side, price, qty, ts)
                           for oid, (side, price, qty, ts) in sub.orders.items()]
            else:
                bids, asks = self.market.depth(symbol, count)
                sub.bids, sub.asks = _levels(bids), _levels(asks)
                entries = [BookEntry(BID, f"O{p}", p, q, when) for p, q in sub.bids.items()]
                entries += [BookEntry(OFFER, f"O{p}", p, q, when) for p, q in sub.asks.items()]
            out += self._send("W", snapshot_fields(req_id, symbol, entries), now_ns)
        return out

    # ---- outbound --------------------------------------------------------------------------

    def publish(self, now_ns: int) -> list[bytes]:
        """Incremental refreshes for every subscription whose book changed or that has new
        trades, then a Heartbeat if nothing was sent for HeartBtInt. During a stall nothing
        is sent; afterwards the held answers go first and the refreshes catch up."""
        if self.closed or not self.logged_on or now_ns < self.stalled_until_ns:
            return []
        out, self.held = self.held, []
        self.stalled_until_ns = 0
        when = _time_of_day(now_ns)
        for sub in self.subscriptions:
            if sub.book:
                if self.level3:
                    after = _orders(*self.market.l3_orders(sub.symbol, sub.depth))
                    entries = l3_changes(sub.orders, after, now_ns)
                    sub.orders = after
                else:
                    bids, asks = self.market.depth(sub.symbol, sub.depth)
                    new_bids, new_asks = _levels(bids), _levels(asks)
                    entries = l2_changes(sub.bids, new_bids, BID, when)
                    entries += l2_changes(sub.asks, new_asks, OFFER, when)
                    sub.bids, sub.asks = new_bids, new_asks
                if entries:
                    out += self._send("X", incremental_fields(sub.md_req_id, sub.symbol, entries),
                                      now_ns)
            if sub.trades:
                # the market keeps its last 1000 trades: far more than one tick has
                trades = [t for t in self.market.trades_since(sub.symbol, None, 1000)
                          if t.trade_id > sub.last_trade_id]
                if trades:
                    sub.last_trade_id = trades[-1].trade_id
                    fields = incremental_fields(sub.md_req_id, sub.symbol,
                                                [trade_entry(t) for t in trades])
                    out += self._send("X", fields, now_ns)
        if now_ns - self.last_sent_ns >= self.heartbeat_s * NS:
            out += self._send("0", [], now_ns)
        return out

    def inject(self, kind: str, now_ns: int, *,
               duration_s: float | None = None) -> tuple[list[bytes], dict[str, Any]]:
        """Apply one FIX fault (a :data:`recorder.sim.faults.FIX_KINDS` kind); returns what to
        send now and the fault's detail for the truth file."""
        detail: dict[str, Any] = {"session": self.client_comp_id, "symbols": self.symbols}
        if self.closed or not self.logged_on:
            return [], {**detail, "applied": False}
        out: list[bytes] = []
        if kind == "fix_gap":
            self.pending_gap += 1
            detail["skipped_seq"] = self.next_out + self.pending_gap - 1
        elif kind == "fix_checksum":
            self.pending_garble = True
            detail["garbled_seq"] = self.next_out + self.pending_gap
        elif kind == "fix_duplicate":
            original = next((s for s in reversed(self.history) if s.msg_type in ("W", "X")),
                            self.history[-1] if self.history else None)
            if original is None:
                return [], {**detail, "applied": False}
            data = _core.encode_fix(original.msg_type, original.seq, self.sender_comp_id,
                                    self.client_comp_id or "?", now_ns, original.fields,
                                    poss_dup=True, orig_sending_time_ns=original.sending_ns)
            detail.update(seq=original.seq, msg_type=original.msg_type)
            if now_ns < self.stalled_until_ns:
                self.held.append(data)
            else:
                out.append(data)
        elif kind == "fix_stall":
            seconds = duration_s if duration_s is not None else STALL_HEARTBEATS * self.heartbeat_s
            self.stalled_until_ns = max(self.stalled_until_ns, now_ns + int(seconds * NS))
            detail["duration_s"] = seconds
            detail["heartbeat_s"] = self.heartbeat_s
        elif kind == "fix_logout":
            detail["seq"] = self.next_out + self.pending_gap
            out = self._logout("sim fault: logout", now_ns)
        else:
            raise ValueError(f"unknown FIX fault kind {kind!r}")
        detail["applied"] = True
        return out, detail


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


#: bytes waiting on a connection that cannot drain before it is dropped as too slow
MAX_PENDING_BYTES = 64 << 20
FaultRecorder = Callable[..., None]


@dataclass(slots=True)
class _Client:
    conn: int
    session: AcceptorSession
    framer: Any
    writer: asyncio.StreamWriter


class FixAcceptorServer:
    """Serves :class:`AcceptorSession` over TLS on one port (L2, or L3 with ``level3``).

    The owner calls :meth:`tick` (synchronous: the sim's clock step) or :meth:`publish` after
    advancing the market, and :meth:`inject` for a FIX fault. ``tls`` shares one certificate
    between servers; without it one is generated in ``directory`` (or a temporary one)."""

    def __init__(self, market: L2Market, clock_ns: Any, *, level3: bool = False,
                 host: str = "127.0.0.1", port: int = 0, directory: Path | None = None,
                 tls: tuple[ssl.SSLContext, Path] | None = None,
                 on_event: Callable[..., None] | None = None) -> None:
        self.market = market
        self.clock_ns = clock_ns  # callable returning the exchange time (int ns)
        self.level3 = level3
        self.endpoint = "fix_l3" if level3 else "fix_l2"
        self.host, self.port = host, port
        self._tmp = None
        if tls is None:
            if directory is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="fix-sim-")
                directory = Path(self._tmp.name)
            tls = self_signed_tls(directory, host)
        self.ssl_context, self.cert_path = tls
        self._on_event = on_event  # (kind, **fields) lifecycle lines for the truth file
        self._server: asyncio.Server | None = None
        self._clients: list[_Client] = []
        self._next_conn = 0

    @property
    def sessions(self) -> list[tuple[int, AcceptorSession]]:
        """(connection number, session) of every open connection."""
        return [(c.conn, c.session) for c in self._clients]

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
        for client in list(self._clients):
            client.writer.close()
            try:  # a peer that does not answer the TLS close is cut off
                await asyncio.wait_for(client.writer.wait_closed(), 2)
            except (ConnectionError, ssl.SSLError):
                pass
            except TimeoutError:
                client.writer.transport.abort()
        self._clients.clear()
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()

    def drop_connections(self) -> int:
        """Close every connection's socket without a Logout, as an exchange whose gateway
        drops the link; returns the number of connections dropped."""
        clients = list(self._clients)
        for client in clients:
            client.writer.close()
        return len(clients)

    def _write(self, client: _Client, data: list[bytes]) -> None:
        if data:
            client.writer.write(b"".join(data))
        transport = client.writer.transport
        if transport.get_write_buffer_size() > MAX_PENDING_BYTES:
            self._event("slow_consumer", conn=client.conn, endpoint=self.endpoint)
            transport.abort()
            client.session.closed = True
        elif client.session.closed:
            client.writer.close()  # after a Logout: the bytes are flushed, then the socket

    def tick(self) -> None:
        """Send each session what changed since the last call (and its heartbeats)."""
        now = self.clock_ns()
        for client in list(self._clients):
            if not client.writer.is_closing():
                self._write(client, client.session.publish(now))

    async def publish(self) -> None:
        """:meth:`tick`, then wait until every connection's bytes are written."""
        self.tick()
        for client in list(self._clients):
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await client.writer.drain()

    def inject(self, kind: str, *, symbol: str | None = None, duration_s: float | None = None,
               record: FaultRecorder | None = None) -> int:
        """Apply a FIX fault to every logged-on session (subscribed to ``symbol`` if given);
        ``record(kind, conn=, endpoint=, symbol=, detail=)`` is called per session hit.
        Returns the number of sessions hit."""
        now = self.clock_ns()
        hits = 0
        for client in list(self._clients):
            session = client.session
            if not session.logged_on or session.closed:
                continue
            if symbol is not None and symbol not in session.symbols:
                continue
            out, detail = session.inject(kind, now, duration_s=duration_s)
            if not detail.get("applied"):
                continue
            hits += 1
            self._write(client, out)
            if record is not None:
                record(kind, conn=client.conn, endpoint=self.endpoint, symbol=symbol,
                       detail=detail)
        return hits

    def _event(self, kind: str, **fields: Any) -> None:
        if self._on_event is not None:
            self._on_event(kind, **fields)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._next_conn += 1
        client = _Client(self._next_conn, AcceptorSession(self.market, level3=self.level3),
                         _core.FixFramer(), writer)
        self._clients.append(client)
        self._event("fix_connect", conn=client.conn, endpoint=self.endpoint)
        try:
            while not client.session.closed:
                data = await reader.read(65536)
                if not data:
                    break
                out: list[bytes] = []
                for frame in client.framer.feed(data):
                    out += client.session.on_frame(frame, self.clock_ns())
                self._write(client, out)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            if client in self._clients:
                self._clients.remove(client)
            self._event("fix_disconnect", conn=client.conn, endpoint=self.endpoint,
                        session=client.session.client_comp_id)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
