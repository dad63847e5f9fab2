"""The compiled core's books (``recorder._core``) against the Python reference books.

Differential: the same message streams (real Kraken captures and vectors, and random streams
from hypothesis: scales 0-10, trailing and leading zeros, trimmed and integer tokens, deletes,
re-adds, depth truncation) go through ``_core.L2Book`` / ``_core.L3Book`` and through
``recorder.book.l2.L2Book`` / ``recorder.book.l3.L3Book``; after every message the checksums,
verdict counters, top of book and the whole book must be identical. Plus: the token parser
agrees with ``to_units`` on plain tokens and rejects the rest with a reason, and the binding
survives garbage (tokens, entries, columns) with a project exception, never a crash.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from recorder import _core
from recorder.book.l2 import L2Book
from recorder.book.l3 import L3Book
from recorder.protocol.errors import BookError, ColumnError, NumberError, ProtocolError
from recorder.protocol.numbers import to_units, units_to_text

_DECODER = msgspec.json.Decoder(float_hook=str)  # non-integers -> exact JSON text


class Lv(NamedTuple):
    price: Any
    qty: Any


class Item(NamedTuple):
    symbol: str
    bids: list[Any]
    asks: list[Any]
    checksum: int | None


class Order(NamedTuple):
    order_id: str
    limit_price: Any
    order_qty: Any
    event: str | None
    ts_ns: int | None


SYMBOL = "X/Y"


def _l2_levels(raw: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    return [(x["price"], x["qty"]) for x in raw]


# ------------------------------------------------------------------ golden and real data


def test_golden_tokens_and_errors() -> None:
    assert _core.parse_decimal("0.250") == (250, 3)
    assert _core.parse_decimal("0.25") == (25, 2)
    assert _core.parse_decimal(b"0.00125386") == (125386, 8)
    assert _core.parse_decimal(42) == (42, 0)
    assert _core.token_units("0.250", 3) == _core.token_units("0.25", 3) == 250
    assert _core.token_units("45283.5", 1) == 452835
    for bad, why in [("1E-8", "exponent"), ("-1", "negative"), ("1" * 41, "41 bytes"),
                     ("0.0000000000000000001", "decimals"), ("1.", "malformed"),
                     ("9223372036854775808", "range"), (True, "malformed"), (1.5, "malformed"),
                     (-3, "negative"), (2**70, "range"), ("\ud800", "malformed")]:
        with pytest.raises(NumberError, match=why):
            _core.parse_decimal(bad)
    with pytest.raises(NumberError, match="beyond the precision"):
        _core.token_units("0.251", 2)
    with pytest.raises(NumberError):
        _core.token_units("1", 19)


@pytest.mark.fixtures
def test_real_v2_capture_510_checksums(fixture_file: Any) -> None:
    """The real python-kraken-sdk capture: 510 Kraken-sent checksums, both books, per message."""
    doc = _DECODER.decode(Path(fixture_file("python-kraken-sdk/orderbook-v2.json")).read_bytes())
    messages = [("snapshot", doc["init"])] + [("update", m) for m in doc["updates"]]
    core = _core.L2Book(10, 1, 8)
    ref = L2Book(SYMBOL, 10, 1, 8)
    matched = 0
    for kind, msg in messages:
        data = msg["data"][0]
        bids, asks = _l2_levels(data["bids"]), _l2_levels(data["asks"])
        got = core.apply(kind, bids, asks, data["checksum"])
        want = ref.apply(kind, Item(SYMBOL, [Lv(*b) for b in bids], [Lv(*a) for a in asks],
                                    data["checksum"]))
        assert got == (want.computed, want.match, want.crossed, want.absent_removals,
                       want.truncated)
        assert core.levels("bid") == ref.levels("bid") and core.levels("ask") == ref.levels("ask")
        matched += got[1] is True
    assert matched == len(messages) == 510


def _decimals(token: str) -> int:
    return len(token.partition(".")[2])


@pytest.mark.fixtures
def test_book_checksum_vectors(fixture_file: Any) -> None:
    """Every published v2 and v1 vector (v1 pads tokens to the pair's decimals: the precision
    is the first token's), and the MATIC update applied to its snapshot."""
    doc = json.loads(Path(fixture_file("checksum_vectors/book_checksum_vectors.json")).read_text())
    vectors = {v["id"]: v for v in doc["vectors"]}
    books = {}
    for vid, v in vectors.items():
        if "bids" not in v:
            continue
        pp = v.get("price_precision")
        qp = v.get("qty_precision")
        if pp is None:
            pp, qp = _decimals(v["bids"][0][0]), _decimals(v["bids"][0][1])
        book = books[vid] = _core.L2Book(10, pp, qp)
        levels = [[(p, q) for p, q, *_ in side] for side in (v["bids"], v["asks"])]
        _, match, *_ = book.apply("snapshot", *levels, v["expected_checksum"])
        assert match is True, vid
    assert len(books) == 7
    update = vectors["v2_docs_maticusd_update"]
    _, match, *_ = books[update["applies_to"]].apply(
        "update", update["update"]["bids"], update["update"]["asks"], update["expected_checksum"])
    assert match is True


def _l3_entries(raw: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(o.get("event"), o["order_id"], o["limit_price"], o["order_qty"], None) for o in raw]


@pytest.mark.fixtures
def test_level3_vectors(fixture_file: Any) -> None:
    doc = json.loads(Path(fixture_file("checksum_vectors/l3_checksum_vectors.json")).read_text())
    vector = next(v for v in doc["vectors"] if v["id"] == "l3_docs_btcusd_snapshot")
    book = _core.L3Book(10, 1, 8)
    got = book.apply("snapshot", _l3_entries(vector["bids_fifo"]),
                     _l3_entries(vector["asks_fifo"]), vector["expected_checksum"])
    assert got[:2] == (1063832831, True) and len(book) == 35
    lines = Path(fixture_file("gocryptotrader/wsLevel3.json")).read_bytes().splitlines()
    messages = [_DECODER.decode(line) for line in lines if line.strip()]
    core = _core.L3Book(10, 1, 8)
    ref = L3Book(SYMBOL, 10, 1, 8)
    computed = []
    for m in messages:
        data = m["data"][0]
        got = core.apply(m["type"], _l3_entries(data["bids"]), _l3_entries(data["asks"]),
                         data["checksum"])
        want = ref.apply(m["type"], Item(SYMBOL, _ref_orders(data["bids"]),
                                         _ref_orders(data["asks"]), data["checksum"]))
        assert got == _l3_tuple(want)
        computed.append(got[0])
    assert computed == [1063832831, 4214623937, 1052444130, 800786314]


def _ref_orders(raw: list[dict[str, Any]]) -> list[Order]:
    return [Order(o["order_id"], o["limit_price"], o["order_qty"], o.get("event"), None)
            for o in raw]


def _l3_tuple(r: Any) -> tuple[Any, ...]:
    return (r.computed, r.match, r.crossed, r.requeued, r.duplicate_adds, r.unknown_modifies,
            r.unknown_deletes, r.truncated)


# ------------------------------------------------------------------ token rendering


def _render(units: int, precision: int, style: int, extra: int, lead: int) -> Any:
    """``units`` at ``precision`` as a token Kraken (or a doc example) could send: exact,
    trimmed of trailing zeros, padded with extra trailing zeros, with leading zeros, or a
    JSON integer when the value is whole."""
    text = units_to_text(units, precision)
    if style == 1 and "." in text:
        text = text.rstrip("0").rstrip(".") or "0"
    elif style == 2:
        text = (text if "." in text else text + ".") + "0" * extra
    elif style == 3:
        text = "0" * lead + text
    elif style == 4 and units % 10**precision == 0:
        return units // 10**precision
    return text


tokens = st.tuples(st.integers(0, 4), st.integers(1, 3), st.integers(1, 3))


@st.composite
def l2_streams(draw: st.DrawFn) -> tuple[int, int, int, list[tuple[str, list, list]]]:
    pp, qp = draw(st.integers(0, 10)), draw(st.integers(0, 10))
    depth = draw(st.sampled_from([1, 2, 3, 5, 10, 11, 14, 25]))
    mid = draw(st.integers(50, 10**6))
    level = st.tuples(st.integers(1, 40), st.integers(0, 30), tokens, tokens)
    messages = []
    for n in range(draw(st.integers(1, 25))):
        kind = "snapshot" if n == 0 or draw(st.integers(0, 30)) == 0 else "update"
        sides = []
        for sign in (-1, 1):
            levels = []
            for off, qty, pt, qt in draw(st.lists(level, max_size=14)):
                price = mid + sign * off
                qty = qty * draw(st.sampled_from([1, 7, 10**qp]))
                levels.append((_render(price, pp, *pt), _render(qty, qp, *qt)))
            sides.append(levels)
        messages.append((kind, sides[0], sides[1]))
    return pp, qp, depth, messages


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(l2_streams(), st.booleans())
def test_l2_random_streams_match_the_reference(stream: Any, with_checksum: bool) -> None:
    pp, qp, depth, messages = stream
    assume(all(len(str(t)) <= 40 for _, b, a in messages for lv in b + a for t in lv))
    core = _core.L2Book(depth, pp, qp)
    ref = L2Book(SYMBOL, depth, pp, qp)
    for kind, bids, asks in messages:
        checksum = ref.checksum() if with_checksum and ref.ready else None
        want = ref.apply(kind, Item(SYMBOL, [Lv(*b) for b in bids], [Lv(*a) for a in asks],
                                    checksum))
        got = core.apply(kind, bids, asks, checksum)
        assert got == (want.computed, want.match, want.crossed, want.absent_removals,
                       want.truncated)
        assert core.checksum() == ref.checksum()
        assert core.best_bid() == ref.best_bid() and core.best_ask() == ref.best_ask()
        assert core.levels("bid") == ref.levels("bid") and core.levels("ask") == ref.levels("ask")
        assert core.levels("ask", 3) == ref.levels("ask", 3)


@st.composite
def l3_streams(draw: st.DrawFn) -> tuple[int, int, int, list[tuple[str, list, list]]]:
    pp, qp = draw(st.integers(0, 10)), draw(st.integers(0, 10))
    depth = draw(st.sampled_from([1, 2, 3, 10, 12]))
    mid = draw(st.integers(50, 10**6))
    ids = [f"O{i:05d}-AAAAA-BBBBBB" for i in range(draw(st.integers(1, 30)))]
    entry = st.tuples(st.sampled_from(["add", "add", "modify", "delete", "bogus"]),
                      st.sampled_from(ids), st.integers(1, 15), st.integers(0, 9), tokens,
                      tokens, st.none() | st.integers(0, 2**62))
    messages = []
    for n in range(draw(st.integers(1, 20))):
        kind = "snapshot" if n == 0 or draw(st.integers(0, 25)) == 0 else "update"
        sides = []
        for sign in (-1, 1):
            entries = []
            for event, oid, off, qty, pt, qt, ts in draw(st.lists(entry, max_size=10)):
                if kind == "snapshot":
                    event = None
                elif event == "bogus" and draw(st.integers(0, 5)):
                    event = "add"
                entries.append((event, oid, _render(mid + sign * off, pp, *pt),
                                _render(qty, qp, *qt), ts))
            sides.append(entries)
        messages.append((kind, sides[0], sides[1]))
    return pp, qp, depth, messages


def _ref_view(book: L3Book, side: str) -> list[tuple[str, int, int, int | None]]:
    return [(o.order_id, o.price, o.qty, o.ts_ns) for o in book.orders(side)]  # type: ignore


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(l3_streams())
def test_l3_random_streams_match_the_reference(stream: Any) -> None:
    pp, qp, depth, messages = stream
    core = _core.L3Book(depth, pp, qp)
    ref = L3Book(SYMBOL, depth, pp, qp)
    for kind, bids, asks in messages:
        item = Item(SYMBOL, [Order(o, p, q, e, ts) for e, o, p, q, ts in bids],
                    [Order(o, p, q, e, ts) for e, o, p, q, ts in asks], None)
        try:
            want: Any = _l3_tuple(ref.apply(kind, item))
        except BookError:
            want = BookError
        try:
            got: Any = core.apply(kind, bids, asks)
        except BookError:
            got = BookError
        assert got == want
        assert core.ready == ref.ready
        if not ref.ready:
            continue
        assert core.checksum() == ref.checksum()
        assert core.best_bid() == ref.best_bid() and core.best_ask() == ref.best_ask()
        assert core.orders("bid") == _ref_view(ref, "bid")
        assert core.orders("ask") == _ref_view(ref, "ask")
        assert len(core) == len(ref)
        assert core.level_count("bid") == ref.level_count("bid")


# ------------------------------------------------------------------ parser vs to_units


plain = st.from_regex(r"[0-9]{1,20}(\.[0-9]{1,18})?", fullmatch=True)


@settings(max_examples=1000, deadline=None)
@given(plain, st.integers(0, 18))
def test_plain_tokens_agree_with_to_units(token: str, precision: int) -> None:
    try:
        want: Any = to_units(token, precision)
        if not -(2**63) <= want < 2**63:
            want = NumberError
    except NumberError:
        want = NumberError
    try:
        got: Any = _core.token_units(token, precision)
    except NumberError:
        got = NumberError
    if got is NumberError and want is not NumberError:
        # the core keeps the token's own mantissa in an i64: 19+ significant digits
        assert len(token.replace(".", "").lstrip("0")) >= 19
    else:
        assert got == want


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=50) | st.binary(max_size=50))
def test_any_text_parses_or_is_refused_with_a_reason(token: Any) -> None:
    try:
        mantissa, scale = _core.parse_decimal(token)
    except NumberError as exc:
        assert str(exc)
        return
    text = token.decode() if isinstance(token, bytes) else token
    assert 0 <= mantissa < 2**63 and 0 <= scale <= 18
    assert to_units(text, scale) == mantissa


def test_checksum_of_the_core_is_zlib_crc32() -> None:
    book = _core.L2Book(10, 2, 3)
    computed, *_ = book.apply("snapshot", [("1.00", "0.500")], [("1.01", "2")])
    assert computed == zlib.crc32(b"1012000" + b"100500")


# ------------------------------------------------------------------ garbage in, no crash


garbage = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.binary(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.tuples(inner, inner, inner, inner, inner),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["snapshot", "update", "bogus"]), garbage, garbage, garbage)
def test_books_survive_garbage(kind: str, bids: Any, asks: Any, checksum: Any) -> None:
    for book in (_core.L2Book(10, 2, 8), _core.L3Book(10, 2, 8)):
        book.apply("snapshot", [], [])
        for args in ((kind, bids, asks, checksum), (kind, bids, asks)):
            try:
                book.apply(*args)
            except (ProtocolError, TypeError):  # TypeError: not iterable / not a sequence
                pass
        book.checksum()


def test_books_reject_bad_construction() -> None:
    for cls in (_core.L2Book, _core.L3Book):
        for args in ((0, 1, 1), (10, -1, 1), (10, 1, 19)):
            with pytest.raises(BookError):
                cls(*args)
        with pytest.raises(BookError, match="side"):
            cls(10, 1, 1).level_count("middle") if cls is _core.L3Book else cls(
                10, 1, 1).levels("middle")


_ROW_TYPES = {"symbol": np.int32, "epoch": np.int64, "side": np.int8, "event": np.int8,
              "price": np.int64, "qty": np.int64, "units_valid": np.uint8,
              "price_scale": np.int8, "qty_scale": np.int8, "checksum": np.uint32,
              "checksum_valid": np.uint8, "recv_ns": np.int64, "order": np.int64,
              "ts_ns": np.int64, "ts_valid": np.uint8}
_SPEC_TYPES = {"spec_symbol": np.int32, "spec_epoch": np.int64, "spec_depth": np.int64,
               "spec_cp_start": np.int64, "cp_message": np.int64, "cp_checksum": np.int64,
               "cp_comparable": np.uint8, "cp_depth": np.int64, "cp_price_scale": np.int64,
               "cp_qty_scale": np.int64, "cp_level_start": np.int64, "lv_side": np.int8,
               "lv_order": np.int64,
               "lv_ts": np.int64, "lv_ts_valid": np.uint8}


def _column(draw: st.DrawFn, dtype: Any, n: int) -> Any:
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(garbage)  # not a buffer at all
    if choice == 1:
        dtype = draw(st.sampled_from([np.float64, np.int16, np.uint64, np.int32]))
    length = n if choice > 3 else draw(st.integers(0, n + 2))
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    lo, hi = (info.min, info.max) if info else (-5, 5)
    small = draw(st.booleans())
    values = [draw(st.integers(-3 if small else lo, 12 if small else hi)) for _ in range(length)]
    values = [min(max(v, lo), hi) for v in values]
    return np.array(values, dtype=dtype)


@st.composite
def replay_inputs(draw: st.DrawFn) -> tuple[str, dict[str, Any], dict[str, Any]]:
    n = draw(st.integers(0, 12))
    rows = {k: _column(draw, t, n) for k, t in _ROW_TYPES.items() if draw(st.integers(0, 30))}
    rows["n_orders"] = draw(st.integers(-2, 2**33) | garbage)
    m = draw(st.integers(0, 4))
    specs = {k: _column(draw, t, m) for k, t in _SPEC_TYPES.items() if draw(st.integers(0, 30))}
    texts = st.lists(st.sampled_from(["1.5", "0.00100000", "42", "-1", "1e5", "", "\ud800"])
                     | garbage, max_size=m + 1)
    for name in ("lv_price_text", "lv_qty_text"):
        if draw(st.integers(0, 30)):
            specs[name] = draw(texts | garbage)
    return draw(st.sampled_from(["book", "level3", "ohlc"])), rows, specs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replay_inputs())
def test_replay_survives_garbage_columns(inputs: Any) -> None:
    channel, rows, specs = inputs
    try:
        out = _core.replay_channel(channel, rows, specs)
    except ColumnError:
        return
    groups = len(np.frombuffer(out["group_symbol"], "<i4"))
    assert len(np.frombuffer(out["group_msg_start"], "<i8")) == groups + 1
    assert len(np.frombuffer(out["perm"], "<i8")) == len(rows["symbol"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(6, 40), st.data())  # at least as many rows as the 6 order handles
def test_replay_of_random_well_formed_columns(n: int, data: st.DataObject) -> None:
    """Well-shaped columns with random values: always a result, never an exception."""
    small = st.integers(-2, 4)
    rows = {k: np.array([data.draw(small) for _ in range(n)], np.int64).astype(t)
            for k, t in _ROW_TYPES.items()}  # negatives wrap in unsigned columns
    rows["price"] = np.array([data.draw(st.integers(-2, 6)) for _ in range(n)], np.int64)
    rows["qty"] = np.array([data.draw(st.integers(-1, 3)) for _ in range(n)], np.int64)
    rows["recv_ns"] = np.array([data.draw(st.integers(-(2**63), 2**63 - 1)) for _ in range(n)],
                               np.int64)
    rows["order"] = np.array([data.draw(st.integers(0, 5)) for _ in range(n)], np.int64)
    rows["checksum_valid"] = np.array([data.draw(st.integers(0, 1)) for _ in range(n)], np.uint8)
    rows["n_orders"] = 6
    specs = {k: np.zeros(0, t) for k, t in _SPEC_TYPES.items()}
    specs["spec_cp_start"] = np.zeros(1, np.int64)
    specs["cp_level_start"] = np.zeros(1, np.int64)
    specs["lv_price_text"] = specs["lv_qty_text"] = []
    for channel in ("book", "level3"):
        out = _core.replay_channel(channel, rows, specs)
        verdicts = np.frombuffer(out["msg_verdict"], "u1")
        assert set(verdicts.tolist()) <= {0, 1, 2}
