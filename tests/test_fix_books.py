"""``recorder._core.FixBooks``: FIX W/X market data into the core's L2 and L3 books.

Differential: the sim's FIX acceptor (``AcceptorSession``, L2) and the sim market's level3
feed rendered as FIX (``benchmarks.workloads.fix_stream``, L3) produce W/X messages; after
every message the core's book equals the sim market's own top-N book and a plain Python
application of the same entries. Hostile input (garbage, a wrong BodyLength, an unknown
MsgType, a huge group, absurd numbers, inconsistent entries) gives typed rejects, and
hypothesis shows that mutated messages give only verdicts, never an exception.
"""

from __future__ import annotations

import struct
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.workloads import FrameStream, fix_stream
from recorder import _core
from recorder.fix import Subscription
from recorder.protocol.errors import BookError, ColumnError
from recorder.sim.fix_acceptor import AcceptorSession
from recorder.sim.market import SpotMarket
from recorder.sim.universe import load_universe

START = 1_700_000_000 * 10**9
S = 10**9
ME = "CLIENT1"
VERDICTS = _core.FIX_BOOK_VERDICTS
REASONS = _core.FIX_BOOK_REASONS
OK, MISMATCH, REJECT, SKIPPED, UNCHECKED = range(5)


def market(pairs: int = 4) -> SpotMarket:
    return SpotMarket(load_universe(None, pairs=pairs, futures_path=None, seed=3), seed=7,
                      rate=4.0, start_ns=START)


def precisions(m: SpotMarket, symbol: str) -> tuple[int, int]:
    pair = m.universe.pair(symbol)
    return pair.price_precision, pair.qty_precision


def client_frame(msg_type: str, seq: int, fields: list[tuple[int, str]]) -> dict[str, Any]:
    (decoded,) = _core.FixFramer().feed(_core.encode_fix(msg_type, seq, ME, "KRAKEN-MD", START,
                                                         fields))
    return decoded


def verdicts(columns: dict[str, bytes]) -> list[str]:
    return [VERDICTS[v] for v in columns["verdict"]]


def reasons(columns: dict[str, bytes]) -> list[str]:
    return [REASONS[r] for r in columns["reason"]]


def check_columns(columns: dict[str, bytes], n: int) -> None:
    """Every column has one value per message; a reject has a reason and one detail."""
    assert len(columns["verdict"]) == len(columns["reason"]) == len(columns["msg_type"]) == n
    for name, width in (("symbol", 4), ("seq_num", 8), ("entries", 4), ("trades", 4),
                        ("expected", 4), ("computed", 4)):
        assert len(columns[name]) == n * width, name
    rejects = [i for i, v in enumerate(columns["verdict"]) if v == REJECT]
    assert all((v == REJECT) == (r != 0) for v, r in zip(columns["verdict"], columns["reason"]))
    index = list(struct.unpack(f"<{len(rejects)}I", columns["detail_index"]))
    assert index == rejects
    ends = struct.unpack(f"<{len(rejects)}I", columns["detail_end"])
    assert list(ends) == sorted(ends) and (not ends or ends[-1] == len(columns["detail_text"]))


class PythonL2:
    """A client's L2 book applied the plain way: side -> {price: size} (exact decimals)."""

    def __init__(self) -> None:
        self.sides: dict[str, dict[Decimal, Decimal]] = {"0": {}, "1": {}}

    def apply(self, message: dict[str, Any]) -> None:
        if message["msg_type"] == "W":
            self.sides = {"0": {}, "1": {}}
        for e in message["entries"]:
            if e["type"] == "2":
                continue
            side, price = self.sides[e["type"]], dec(e["price"])
            if e["action"] == 2:
                del side[price]
            else:
                side[price] = dec(e["size"])

    def top(self, n: int) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        bids = sorted(self.sides["0"].items(), reverse=True)[:n]
        asks = sorted(self.sides["1"].items())[:n]
        return bids, asks


def dec(pair: tuple[int, int] | list[int]) -> Decimal:
    mantissa, scale = pair
    return Decimal(mantissa).scaleb(-scale)


def as_decimals(levels: list[tuple[str, str]] | list[tuple[str, str, int]]
                ) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(level[0]), Decimal(level[1])) for level in levels]


def core_top(books: Any, symbol: str, n: int) -> tuple[list, list]:
    top = books.top(symbol, n)
    assert top is not None, f"{symbol}: no valid book"
    return as_decimals(top[0]), as_decimals(top[1])


def market_top(m: SpotMarket, symbol: str, n: int) -> tuple[list, list]:
    bids, asks = m.depth(symbol, n)
    return as_decimals(bids), as_decimals(asks)


def acceptor_stream(m: SpotMarket, symbols: tuple[str, ...], depth: int, steps: int,
                    check: Any) -> list[bytes]:
    """Log on, subscribe ``symbols`` at ``depth``, advance the market ``steps`` times; calls
    ``check(message)`` after each W/X so that the caller can compare with the market then."""
    acceptor = AcceptorSession(m)
    acceptor.on_frame(client_frame("A", 1, [(98, "0"), (108, "30"), (141, "Y")]), START)
    request = Subscription("B", symbols, depth=depth).request_fields("B", True)
    sent: list[bytes] = []
    for message in acceptor.on_frame(client_frame("V", 2, request), START):
        sent.append(message)
        check(message)
    for step in range(1, steps + 1):
        m.advance(START + step * S // 4)
        for message in acceptor.publish(m.now_ns):
            sent.append(message)
            check(message)
    return sent


@pytest.mark.parametrize("depth", [10, 25])
def test_acceptor_l2_messages_track_the_market_after_every_message(depth: int) -> None:
    m = market()
    symbols = m.symbols[:3]
    books = _core.FixBooks()
    for symbol in symbols:
        books.subscribe(symbol, depth, *precisions(m, symbol))
    python = {s: PythonL2() for s in symbols}
    framer = _core.FixFramer()
    seen = {"W": 0, "X": 0, "entries": 0}

    def check(message: bytes) -> None:
        (decoded,) = framer.feed(message)
        symbol = decoded["fields"][55]
        python[symbol].apply(decoded)
        columns = books.feed([message])
        check_columns(columns, 1)
        assert verdicts(columns) == ["unchecked"], columns["detail_text"]
        assert columns["msg_type"] == decoded["msg_type"].encode()
        assert struct.unpack("<Q", columns["seq_num"]) == (decoded["seq_num"],)
        assert books.symbols()[struct.unpack("<I", columns["symbol"])[0]] == symbol
        assert struct.unpack("<I", columns["entries"]) == (len(decoded["entries"]),)
        seen[decoded["msg_type"]] += 1
        seen["entries"] += len(decoded["entries"])
        ours = core_top(books, symbol, depth)
        assert ours == market_top(m, symbol, depth)
        assert ours == python[symbol].top(depth)
        # the text is the pair's precision, exactly as the market renders it
        bids, asks = m.depth(symbol, depth)
        assert books.top(symbol, depth) == ([(p, q) for p, q, _ in bids],
                                            [(p, q) for p, q, _ in asks])

    sent = acceptor_stream(m, symbols, depth, 60, check)
    assert seen["W"] == 3 and seen["X"] > 60 and seen["entries"] > 300
    # the whole stream in one batch (buffer + offsets) ends in the same books
    again = _core.FixBooks()
    for symbol in symbols:
        again.subscribe(symbol, depth, *precisions(m, symbol))
    offsets = [0]
    for message in sent:
        offsets.append(offsets[-1] + len(message))
    columns = again.feed_buffer(b"".join(sent), struct.pack(f"<{len(offsets)}q", *offsets))
    check_columns(columns, len(sent))
    assert set(verdicts(columns)) == {"unchecked"}
    for symbol in symbols:
        assert again.top(symbol, depth) == books.top(symbol, depth)


def test_inferred_precision_and_default_depth_also_track_the_market() -> None:
    m = market()
    symbol = m.symbols[0]
    books = _core.FixBooks()

    def check(message: bytes) -> None:
        columns = books.feed([message])
        assert verdicts(columns) == ["unchecked"], columns["detail_text"]
        assert core_top(books, symbol, 10) == market_top(m, symbol, 10)

    acceptor_stream(m, (symbol,), 10, 20, check)


class PythonL3:
    """A client's level3 book applied the plain way: per side, price -> queue of order ids;
    truncated to ``depth`` levels per side after each message."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.orders: dict[str, tuple[str, Decimal, Decimal]] = {}
        self.queues: dict[str, dict[Decimal, list[str]]] = {"0": {}, "1": {}}

    def _remove(self, order_id: str) -> None:
        side, price, _ = self.orders.pop(order_id)
        queue = self.queues[side][price]
        queue.remove(order_id)
        if not queue:
            del self.queues[side][price]

    def apply(self, message: dict[str, Any]) -> None:
        if message["msg_type"] == "W":
            self.orders, self.queues = {}, {"0": {}, "1": {}}
        for e in message["entries"]:
            side, oid, price, size = e["type"], e["id"], dec(e["price"]), dec(e["size"])
            if e["action"] == 2 or (e["action"] == 1 and size == 0):
                self._remove(oid)
                continue
            old = self.orders.get(oid)
            if old is not None and old[0] == side and old[1] == price:
                self.orders[oid] = (side, price, size)  # keeps its place in the queue
                continue
            if old is not None:
                self._remove(oid)
            self.orders[oid] = (side, price, size)
            self.queues[side].setdefault(price, []).append(oid)
        for side, reverse in (("0", True), ("1", False)):
            for price in sorted(self.queues[side], reverse=reverse)[self.depth:]:
                for oid in self.queues[side].pop(price):
                    del self.orders[oid]

    def top_orders(self, n: int) -> tuple[list, list]:
        out = []
        for side, reverse in (("0", True), ("1", False)):
            prices = sorted(self.queues[side], reverse=reverse)[:n]
            out.append([(oid, p, self.orders[oid][2]) for p in prices
                        for oid in self.queues[side][p]])
        return out[0], out[1]


def test_level3_messages_track_the_market_and_a_python_application() -> None:
    m = market()
    symbol = m.symbols[0]
    pp, qp = precisions(m, symbol)
    depth = 10
    key = ("level3", symbol, depth)
    frames = [f.encode() for f in m.subscribe(key)]
    truth: dict[int, tuple[list, list]] = {0: market_top(m, symbol, depth)}
    for step in range(1, 120):
        m.advance(START + step * S // 4)
        frames += [text.encode() for k, text in m.updates() if k == key]
        truth[len(frames) - 1] = market_top(m, symbol, depth)
    stream = fix_stream(FrameStream("sim level3", "level3", symbol, depth, pp, qp,
                                    tuple(frames)))
    assert stream.level3 and stream.skipped == 0 and len(stream.messages) == len(frames)
    books = _core.FixBooks(level3=True)
    books.subscribe(symbol, depth, pp, qp)
    python = PythonL3(depth)
    framer = _core.FixFramer()
    checked = changes = 0
    for i, message in enumerate(stream.messages):
        (decoded,) = framer.feed(message)
        python.apply(decoded)
        columns = books.feed([message])
        assert verdicts(columns) == ["unchecked"], columns["detail_text"]
        changes += sum(e["action"] in (1, 2) for e in decoded["entries"])
        bids, asks = books.orders(symbol, depth)
        want_bids, want_asks = python.top_orders(depth)
        assert [(o, Decimal(p), Decimal(q)) for o, p, q in bids] == want_bids
        assert [(o, Decimal(p), Decimal(q)) for o, p, q in asks] == want_asks
        if i in truth:
            assert core_top(books, symbol, depth) == truth[i], i
            checked += 1
    assert checked > 30 and changes > 50 and len(stream.messages) > 150
    assert tuple(books.top(symbol, depth)[0]) == stream.bids


def x_message(seq: int, entries: list[tuple[str, str, str, str, str]],
              symbol: str = "BTC/USD") -> bytes:
    fields: list[tuple[int, str]] = [(55, symbol), (262, "1"), (268, str(len(entries)))]
    for action, kind, oid, price, size in entries:
        fields += [(279, action), (269, kind), (278, oid), (270, price), (271, size),
                   (273, "13:42:27.208")]
    return _core.encode_fix("X", seq, "KRAKEN-MD", ME, START, fields)


def w_message(seq: int = 1, symbol: str = "BTC/USD") -> bytes:
    fields: list[tuple[int, str]] = [(262, "1"), (55, symbol), (268, "4")]
    for kind, price, size in (("0", "100.0", "1.5"), ("0", "99.5", "2.0"),
                              ("1", "101.0", "0.25"), ("1", "102.0", "3.0")):
        fields += [(269, kind), (278, f"O{price}"), (270, price), (271, size),
                   (273, "13:42:27.208")]
    return _core.encode_fix("W", seq, "KRAKEN-MD", ME, START, fields)


def reframe(body: bytes) -> bytes:
    """``body`` (from ``35=`` to the SOH before ``10=``) with a correct BodyLength/CheckSum."""
    head = b"8=FIX.4.4\x019=" + str(len(body)).encode() + b"\x01" + body
    return head + f"10={sum(head) % 256:03d}\x01".encode()


def body_of(message: bytes) -> bytes:
    start = message.index(b"35=")
    return message[start:message.rindex(b"10=")]


def test_hostile_messages_are_typed_rejects() -> None:
    good = w_message()
    wrong_length = good.replace(b"9=", b"9=1", 1)
    huge_group = _core.encode_fix("X", 3, "KRAKEN-MD", ME, START,
                                  [(55, "BTC/USD"), (262, "1"), (268, "4000000000")])
    many = [("0", "0", f"O{i}.0", f"{i}.0", "1") for i in range(1, 5002)]
    too_many = x_message(4, many)
    unknown = _core.encode_fix("ZZ", 5, "KRAKEN-MD", ME, START, [(58, "x")])
    absurd = x_message(6, [("0", "0", "O1", "1e5", "1")])
    absurd_size = x_message(7, [("0", "0", "O1", "1.0", "99999999999999999999999")])
    too_fine = x_message(8, [("0", "0", "O98.25", "98.25", "1")])
    messages = [b"\x00\xffgarbage", wrong_length, huge_group, too_many, unknown, absurd,
                absurd_size, good, too_fine, good + good, good[:-3], b""]
    books = _core.FixBooks()
    columns = books.feed(messages)
    check_columns(columns, len(messages))
    assert reasons(columns) == [
        "garbage", "body_length", "group_too_large", "group_too_large", "unknown_msg_type",
        "bad_number", "bad_number", "", "precision", "trailing_bytes", "incomplete",
        "incomplete"]
    assert verdicts(columns)[7] == "unchecked"
    assert not books.has_book("BTC/USD")  # the precision reject ended it


@pytest.mark.parametrize("entries, reason", [
    ([("2", "0", "O98.0", "98.0", "0")], "unknown_entry"),
    ([("1", "1", "O103.0", "103.0", "1")], "unknown_entry"),
    ([("0", "0", "O100.0", "100.0", "1")], "duplicate_entry"),
    ([("0", "0", "O101.5", "101.5", "1")], "crossed"),
    ([("0", "0", "O97.0", "98.0", "1")], "entry_id_mismatch"),
    ([("0", "0", "O98.0", "98.0", "0")], "bad_entry"),
])
def test_inconsistent_entries_are_rejected_and_end_the_book(
        entries: list[tuple[str, str, str, str, str]], reason: str) -> None:
    books = _core.FixBooks()
    follow = x_message(3, [("1", "0", "O100.0", "100.0", "1.0")])
    columns = books.feed([w_message(), x_message(2, entries), follow])
    check_columns(columns, 3)
    assert reasons(columns) == ["", reason, "update_before_snapshot"]
    assert not books.has_book("BTC/USD") and books.top("BTC/USD", 10) is None
    assert verdicts(books.feed([w_message(4)])) == ["unchecked"]


def test_trades_are_counted_and_other_messages_skipped() -> None:
    books = _core.FixBooks()
    trade = x_message(2, [("0", "2", "T1", "100.5", "0.5"), ("0", "2", "T2", "100.5", "0.1"),
                          ("1", "0", "O100.0", "100.0", "1.0")])
    heartbeat = _core.encode_fix("0", 3, "KRAKEN-MD", ME, START, [])
    reject = _core.encode_fix("Y", 4, "KRAKEN-MD", ME, START,
                              [(262, "1"), (281, "0"), (58, "Unknown symbol")])
    columns = books.feed([w_message(), trade, heartbeat, reject])
    assert verdicts(columns) == ["unchecked", "unchecked", "skipped", "skipped"]
    assert struct.unpack("<4I", columns["trades"]) == (0, 2, 0, 0)
    assert struct.unpack("<4I", columns["entries"]) == (4, 1, 0, 0)
    assert columns["msg_type"] == b"WX0Y"
    assert books.trade_count("BTC/USD") == 2
    assert books.top("BTC/USD", 1) == ([("100.0", "1.00")], [("101.0", "0.25")])


def test_binding_refuses_bad_arguments() -> None:
    books = _core.FixBooks()
    with pytest.raises(BookError):
        books.subscribe("BTC/USD", 0)
    with pytest.raises(BookError):
        books.subscribe("BTC/USD", 10, 19, 8)
    with pytest.raises(BookError):
        books.subscribe("BTC/USD", 10, 1)
    with pytest.raises(ColumnError):
        books.feed(["not bytes"])  # type: ignore[list-item]
    with pytest.raises(ColumnError):
        books.feed_buffer(b"abc", struct.pack("<2q", 2, 1))
    with pytest.raises(ColumnError):
        books.feed_buffer(b"abc", struct.pack("<2q", 0, 4))
    assert books.feed([])["verdict"] == b""


def _stream() -> list[bytes]:
    m = market(pairs=2)
    symbol = m.symbols[0]
    return acceptor_stream(m, (symbol,), 10, 12, lambda _: None)


STREAM = _stream()
MUTATIONS = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("value"), st.integers(0, 10**6),
              st.sampled_from([b"0", b"1", b"2", b"", b"-1", b"0.0", b"1e9", b"O1",
                               b"99999999999999999999", b"1.123456789012345678901",
                               b"5000", b"X", b"\x00"])),
)


def mutate(message: bytes, mutation: tuple[str, int, Any]) -> bytes:
    kind, where, what = mutation
    if not message:
        return message
    if kind == "flip":
        i = where % len(message)
        return message[:i] + bytes([what]) + message[i + 1:]
    if kind == "cut":
        return message[:where % len(message)]
    # replace one field's value and re-frame, so the book logic sees it
    if b"35=" not in message or b"10=" not in message:
        return message
    body = body_of(message)
    fields = body.split(b"\x01")[:-1]
    if not fields:
        return message
    i = where % len(fields)
    tag = fields[i].split(b"=", 1)[0]
    fields[i] = tag + b"=" + what
    return reframe(b"\x01".join(fields) + b"\x01")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(STREAM) - 1), MUTATIONS), max_size=6))
def test_mutated_messages_give_only_verdicts(mutations: list[tuple[int, Any]]) -> None:
    messages = list(STREAM)
    for index, mutation in mutations:
        messages[index] = mutate(messages[index], mutation)
    books = _core.FixBooks()
    columns = books.feed(messages)
    check_columns(columns, len(messages))
    assert set(columns["verdict"]) <= {OK, MISMATCH, REJECT, SKIPPED, UNCHECKED}
    mutated = {i for i, _ in mutations}
    for i, v in enumerate(columns["verdict"]):
        if i not in mutated and i > 0 and columns["verdict"][i - 1] != REJECT:
            # an untouched message after a good one is applied (or waits for a snapshot)
            assert v == UNCHECKED or REASONS[columns["reason"][i]] in (
                "update_before_snapshot", "unknown_entry", "duplicate_entry", "crossed")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.binary(max_size=40))
def test_arbitrary_bytes_give_rejects(data: bytes, tail: bytes) -> None:
    books = _core.FixBooks(level3=True)
    messages = [data, w_message() + tail, data + w_message(), x_message(2, [
        ("2", "0", tail.hex() or "x", "100.0", "1.5")])]
    columns = books.feed(messages)
    check_columns(columns, len(messages))
    assert set(columns["verdict"]) <= {REJECT, SKIPPED, UNCHECKED}


def test_benchmark_replay_fails_loudly_on_a_wrong_result() -> None:
    """The FIX benchmark's self-check: a stream that does not apply cannot give a figure."""
    from dataclasses import replace

    from benchmarks.core import ChecksumFailure, _replay_fix
    from benchmarks.workloads import sim_frames

    stream = fix_stream(sim_frames("book", 10, 200))
    assert _replay_fix(stream) == len(stream.messages) == 201
    dropped = replace(stream, messages=stream.messages[:50] + stream.messages[51:])
    with pytest.raises(ChecksumFailure):
        _replay_fix(dropped)
    other_end = replace(stream, bids=stream.bids[1:])
    with pytest.raises(ChecksumFailure):
        _replay_fix(other_end)
