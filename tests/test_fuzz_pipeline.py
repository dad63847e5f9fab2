"""Hostile input through the whole derivation path (issue #9 item 3): ``Pipeline.feed`` and
``ArchiveSession.write`` fed mutated *real* Kraken frames.

Mutations: byte flips, truncation, numbers replaced by absurd values (``1e400``, ``-0``,
``99999999999999999999999999.999999999``, huge exponents), symbols replaced by hostile text
(``/``, ``..``, quotes, NUL, RTL marks, 10k-char strings), unknown channels, random
interleavings of snapshots, updates, acks and heartbeats over spot, level3 and futures.

Invariants (house rule: never a crash, never silent loss):

* ``feed`` never raises;
* every frame is *accounted for*: it produced a data row (any data dataset, matched by its
  unique ``recv_ns``), a ``rejects`` row with a non-empty reason (and the raw bytes), or it is
  one of the message kinds the pipeline documents as journal-only / bookkeeping (heartbeats,
  acks, status, pong, futures control events, unchanged instrument snapshots, trade-snapshot
  overlap, a book message that carries no levels);
* an archive written through :class:`ArchiveSession` from the same frames stays readable
  (every manifest file opens with its row count) and ``verify_archive`` / ``recorder verify``
  do not crash;
* an oversized frame (64 MiB) is rejected without blowing memory up by multiples of its size.

Real frames come from the shared fixtures (skipped with a reason when absent); a small set of
documented shapes keeps the properties meaningful without them.
"""

from __future__ import annotations

import gc
import json
import os
import re
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.frames import Frame
from recorder.protocol import rest
from recorder.pipeline import ListSink, Pipeline
from recorder.pipeline.core import DATASETS
from recorder.protocol import futures as fut
from recorder.protocol import spot as sp
from recorder.protocol.reject import Reject
from recorder.testing import fixtures_dir

#: ``FUZZ_SCALE=20`` multiplies every ``max_examples`` (bug hunting; CI runs with 1).
SCALE = int(os.environ.get("FUZZ_SCALE", "1"))
T0 = 1_735_689_600_000_000_000
STEP = 1_000_003  # ns between frames: every frame has a unique recv_ns, minutes roll over

# ------------------------------------------------------------------------------- corpus

DOCUMENTED_SPOT = [
    b'{"channel": "heartbeat"}',
    b'{"method": "subscribe", "result": {"channel": "book", "depth": 10, "snapshot": true,'
    b' "symbol": "BTC/USD"}, "success": true, "time_in": "2023-10-06T17:35:55.219022Z",'
    b' "time_out": "2023-10-06T17:35:55.219067Z"}',
    b'{"error": "Already subscribed", "method": "subscribe", "req_id": 2, "success": false,'
    b' "symbol": "BTC/USD", "time_in": "2025-12-20T07:39:28.809188Z",'
    b' "time_out": "2025-12-20T07:39:28.809200Z"}',
    b'{"method": "unsubscribe", "result": {"channel": "book", "depth": 10, "symbol": "BTC/USD"},'
    b' "success": true, "time_in": "2023-10-06T17:35:55.219022Z",'
    b' "time_out": "2023-10-06T17:35:55.219067Z"}',
    b'{"channel": "status", "data": [{"api_version": "v2", "connection_id": 13834774380200032777,'
    b' "system": "online", "version": "2.0.0"}], "type": "update"}',
    b'{"method": "pong", "req_id": 101, "time_in": "2023-09-24T14:10:23.799685Z",'
    b' "time_out": "2023-09-24T14:10:23.799703Z"}',
    b'{"channel": "book", "type": "snapshot", "data": [{"symbol": "BTC/USD", "bids": [{"price":'
    b' 29430.2, "qty": 0.18967538}], "asks": [{"price": 29430.3, "qty": 1.5}], "checksum": 0,'
    b' "timestamp": "2023-10-06T17:35:55.440295Z"}]}',
    b'{"channel": "book", "type": "update", "data": [{"symbol": "BTC/USD", "bids": [{"price":'
    b' 29430.1, "qty": 1098.3947558}], "asks": [], "checksum": 2114181697,'
    b' "timestamp": "2023-10-06T17:35:55.440295Z"}]}',
    b'{"channel": "trade", "type": "update", "data": [{"symbol": "BTC/USD", "side": "buy",'
    b' "price": 0.5147, "qty": 6423.46326, "ord_type": "limit", "trade_id": 4665846,'
    b' "timestamp": "2023-09-25T07:48:36.925533Z"}]}',
    b'{"channel": "ohlc", "type": "update", "timestamp": "2023-10-04T16:26:30.524394914Z",'
    b' "data": [{"symbol": "BTC/USD", "open": 0.5624, "high": 0.5628, "low": 0.5622,'
    b' "close": 0.5627, "trades": 12, "volume": 30927.68066226, "vwap": 0.5626,'
    b' "interval_begin": "2023-10-04T16:25:00.000000000Z", "interval": 5,'
    b' "timestamp": "2023-10-04T16:30:00.000000Z"}]}',
    b'{"channel": "ticker", "type": "snapshot", "data": [{"symbol": "BTC/USD", "bid": 0.10025,'
    b' "bid_qty": 740.0, "ask": 0.10036, "ask_qty": 1361.44813783, "last": 0.10035,'
    b' "volume": 997038.98383185, "vwap": 0.10148, "low": 0.09979, "high": 0.10285,'
    b' "change": -0.00017, "change_pct": -0.17, "timestamp": "2023-09-25T09:04:31.742648Z"}]}',
    b'{"channel": "instrument", "type": "snapshot", "data": {"assets": [{"id": "BTC", "status":'
    b' "enabled", "precision": 10, "precision_display": 5, "borrowable": true,'
    b' "collateral_value": 1.0, "margin_rate": 0.01}], "pairs": [{"symbol": "BTC/USD", "base":'
    b' "BTC", "quote": "USD", "status": "online", "qty_precision": 8, "qty_increment": 1e-08,'
    b' "price_precision": 1, "cost_precision": 5, "marginable": true, "has_index": true,'
    b' "cost_min": 0.5, "margin_initial": 0.2, "position_limit_long": 250,'
    b' "position_limit_short": 200, "tick_size": 0.1, "price_increment": 0.1,'
    b' "qty_min": 0.0001}]}}',
]
DOCUMENTED_L3 = [
    b'{"channel": "level3", "type": "snapshot", "data": [{"symbol": "MATIC/USD", "checksum":'
    b' 281817320, "bids": [{"order_id": "O6ZQNQ-BXL4E-5WGINO", "limit_price": 0.5629,'
    b' "order_qty": 111.56125344, "timestamp": "2023-10-06T17:35:00.279389650Z"}], "asks":'
    b' [{"order_id": "O5SR5W-L7OLY-BLDEJV", "limit_price": 0.563, "order_qty": 420.0,'
    b' "timestamp": "2023-10-06T18:18:20.738706230Z"}]}]}',
    b'{"channel": "level3", "type": "update", "data": [{"checksum": 2841398499, "symbol":'
    b' "MATIC/USD", "bids": [], "asks": [{"event": "add", "order_id": "O2BN53-5RSB2-V3J57T",'
    b' "limit_price": 0.564, "order_qty": 3500.77668626,'
    b' "timestamp": "2023-10-06T18:20:27.383408052Z"}]}]}',
]
DOCUMENTED_FUTURES = [
    b'{"feed":"book_snapshot","product_id":"PI_XBTUSD","timestamp":1612269825817,"seq":326072249,'
    b'"tickSize":null,"bids":[{"price":34892.5,"qty":6385}],"asks":[{"price":34911.5,"qty":20598}]}',
    b'{"feed":"book","product_id":"PI_XBTUSD","side":"sell","seq":326072250,"price":34911.5,'
    b'"qty":0.0,"timestamp":1612269953629}',
    b'{"feed":"trade","product_id":"PI_XBTUSD","uid":"05af78ac-a774-478c-a50c-8b9c234e071e",'
    b'"side":"sell","type":"fill","seq":653355,"time":1612266317519,"qty":15000,"price":34969.5}',
    b'{"event":"subscribed","feed":"book","product_ids":["PI_XBTUSD"]}',
    b'{"feed":"heartbeat","time":1534262350627}',
    b'{"event":"info","version":1}',
]

_RECEIVED = re.compile(rb"^\d+(?:\.\d+)?: (.*)$")


def _book_stream(path: Path) -> list[bytes]:
    top = msgspec.json.decode(path.read_bytes(), type=dict[str, msgspec.Raw])
    updates = msgspec.json.decode(top["updates"], type=list[msgspec.Raw])
    return [bytes(top["init"])] + [bytes(raw) for raw in updates]


def _load_corpus() -> dict[str, list[bytes]]:
    """stream -> real frames (fixtures when present, always the documented shapes)."""
    corpus = {"spot": list(DOCUMENTED_SPOT), "l3": list(DOCUMENTED_L3),
              "futures": list(DOCUMENTED_FUTURES)}
    root = fixtures_dir()
    if not root.is_dir():
        return corpus
    book = root / "python-kraken-sdk" / "orderbook-v2.json"
    if book.is_file():
        corpus["spot"] += _book_stream(book)[:60]
    naut = root / "nautilus_trader"
    for name in ("ws_book_snapshot", "ws_book_update", "ws_trade_update", "ws_ohlc_update",
                 "ws_ticker_snapshot", "ws_pong", "ws_subscribe_response"):
        p = naut / f"{name}.json"
        if p.is_file():
            corpus["spot"].append(p.read_bytes().strip())
    for name in ("ws_l3_snapshot", "ws_l3_update_add", "ws_l3_update_delete",
                 "ws_l3_update_modify_price", "ws_l3_update_modify_qty"):
        p = naut / f"{name}.json"
        if p.is_file():
            corpus["l3"].append(p.read_bytes().strip())
    for name in ("ws_futures_book_snapshot", "ws_futures_book_delta", "ws_futures_ticker",
                 "ws_futures_trade", "ws_futures_trade_snapshot",
                 "ws_futures_book_snapshot_with_zero_qty"):
        p = naut / f"{name}.json"
        if p.is_file():
            corpus["futures"].append(p.read_bytes().strip())
    cap = root / "cryptofeed" / "KRAKEN_FUTURES.ws.1.0"
    if cap.is_file():
        got = []
        for line in cap.read_bytes().splitlines():
            m = _RECEIVED.match(line)
            if m:
                got.append(m.group(1))
            if len(got) >= 80:
                break
        corpus["futures"] += got
    return corpus


CORPUS = _load_corpus()
HAVE_FIXTURES = fixtures_dir().is_dir()

# ------------------------------------------------------------------------------- mutations

ABSURD_NUMBERS = [b"1e400", b"-1e400", b"-0", b"-0.0", b"0E-99999", b"1E+999999999",
                  b"99999999999999999999999999.999999999", b"1" * 400, b"0." + b"0" * 300 + b"1",
                  b"-99999999999999999999", b"18446744073709551616", b"9223372036854775808",
                  b"-9223372036854775809", b"NaN", b"Infinity", b"-Infinity", b"1e-400",
                  b'"1e400"', b'"-0"', b'""', b"null", b"true", b"[]", b"{}", b"0x10", b"+1",
                  b".5", b"5.", b"00012", b"1_000"]
HOSTILE_SYMBOLS = ["../../etc/passwd", "BTC/USD/..", "..", "/", "a/b/c", "x'; DROP TABLE t;--",
                   'q"uote', "back\\slash", "nul\x00byte", "\u202eDSU/CTB", "ünï/cødé€",
                   "\ud83d\ude00/USD", "", " ", "CON", "A" * 10_000, "\n\r\t", "%2e%2e%2f",
                   "{}", "[]", "\u0000" * 5]
UNKNOWN_CHANNELS = [b"books", b"level2", b"executions", b"", b"BOOK", b"book\x00", b"\xff",
                    b"instrument ", b"heartbeat2"]

_NUMBER = re.compile(rb"(?<![\w.\"])-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.\"])")
_SYMBOL = re.compile(rb'("(?:symbol|product_id|pair)"\s*:\s*)"[^"]*"')
_CHANNEL = re.compile(rb'("(?:channel|feed|method|event)"\s*:\s*)"[^"]*"')


def _json_str(text: str) -> bytes:
    return json.dumps(text).encode("utf-8", "surrogatepass")


@st.composite
def mutated(draw: Any, frame: bytes) -> bytes:
    """One mutation (or a few) of a real frame."""
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "number", "symbol", "symbol_raw",
                                     "channel", "splice", "none"]))
        if kind == "flip" and frame:
            i = draw(st.integers(0, len(frame) - 1))
            frame = frame[:i] + bytes([draw(st.integers(0, 255))]) + frame[i + 1:]
        elif kind == "truncate" and frame:
            frame = frame[:draw(st.integers(0, len(frame) - 1))]
        elif kind == "number":
            spots = list(_NUMBER.finditer(frame))
            if spots:
                m = spots[draw(st.integers(0, len(spots) - 1))]
                frame = frame[:m.start()] + draw(st.sampled_from(ABSURD_NUMBERS)) + frame[m.end():]
        elif kind in ("symbol", "symbol_raw"):
            sym = draw(st.one_of(st.sampled_from(HOSTILE_SYMBOLS), st.text(max_size=30)))
            value = (_json_str(sym) if kind == "symbol"
                     else b'"' + sym.encode("utf-8", "surrogatepass") + b'"')
            frame = _SYMBOL.sub(lambda m: m.group(1) + value, frame, count=draw(st.integers(0, 3)))
        elif kind == "channel":
            value = draw(st.sampled_from(UNKNOWN_CHANNELS))
            frame = _CHANNEL.sub(lambda m: m.group(1) + b'"' + value + b'"', frame, count=1)
        elif kind == "splice" and frame:
            i = draw(st.integers(0, len(frame)))
            frame = frame[:i] + draw(st.sampled_from([b"{", b"}", b"[", b"]", b",", b'"',
                                                      b"\\", b"\x00", b"\xc3", b"\xed\xa0\x80",
                                                      b"\\u0000", b"\\ud800"])) + frame[i:]
    return frame


@st.composite
def frame_sequences(draw: Any, max_frames: int = 30) -> list[Frame]:
    """An interleaving of real (sometimes mutated) frames over several streams/connections."""
    n = draw(st.integers(1, max_frames))
    out: list[Frame] = []
    for i in range(n):
        stream = draw(st.sampled_from(["spot", "spot", "l3", "futures", "rest", "control",
                                       "spot_v1"]))
        conn = draw(st.integers(1, 3))
        if stream in CORPUS:
            payload = draw(st.sampled_from(CORPUS[stream]))
            if draw(st.booleans()):
                payload = draw(mutated(payload))
        elif stream == "rest":
            payload = draw(st.sampled_from([
                b'{"error":[],"result":{"XXBTZUSD":[["29430.2","0.1",1688671200,"b","l","",1]],'
                b'"last":"1688671200000000000"}}', b'{"error":["EGeneral:Too many requests"]}',
                b"<html>502</html>", b""]))
            if draw(st.booleans()):
                payload = draw(mutated(payload))
        elif stream == "control":
            payload = draw(st.sampled_from([b'{"kind":"bogus"}', b"not json", b"{}",
                                            b'{"marker":"process_start"}']))
        else:
            payload = draw(st.binary(max_size=64))
        meta = ""
        if stream == "rest":
            meta = draw(st.sampled_from(["GET /0/public/Trades?pair=XBT%2FUSD",
                                         "GET /0/public/OHLC?pair=..%2F..&interval=x",
                                         "GET /0/public/Depth?pair=%00", "POST /0/private/Level3",
                                         "GET /0/public/Time"]))
        out.append(Frame(recv_ns=T0 + i * STEP, conn_id=conn, stream=stream,  # type: ignore[arg-type]
                         direction="in", payload=payload, meta=meta))
    return out


# ------------------------------------------------------------------------------- accounting

_NO_ROW_SPOT = (sp.Heartbeat, sp.SubscribeAck, sp.UnsubscribeAck, sp.StatusMessage, sp.Pong,
                sp.InstrumentMessage)  # instrument: rows only for listed/changed/delisted
_DATA_DATASETS = [d for d in DATASETS if d not in ("rejects",)]


def _rows_by_recv(sink: ListSink) -> tuple[set[int], dict[int, list[dict[str, Any]]]]:
    data: set[int] = set()
    for name in _DATA_DATASETS:
        cols = sink.data.get(name)
        if not cols:
            continue
        for key in ("recv_ns", "minute_ns", "start_ns", "epoch"):
            if key in cols:
                data.update(v for v in cols[key] if v is not None)
    rejects: dict[int, list[dict[str, Any]]] = {}
    for row in sink.rows("rejects"):
        rejects.setdefault(row["recv_ns"], []).append(row)
    return data, rejects


def _explained_without_rows(frame: Frame) -> bool:
    """Frames the pipeline documents as producing no row of their own."""
    if frame.stream in ("spot", "l3"):
        ev = sp.decode_spot(frame.payload)
        if isinstance(ev, _NO_ROW_SPOT):
            return True
        if isinstance(ev, sp.TradeMessage) and ev.type == "snapshot":
            return True  # overlap with trades already recorded is skipped (dedup)
        if isinstance(ev, (sp.BookMessage, sp.Level3Message)):
            # a message without levels carries only a checksum: counted in its epoch
            return all(not d.bids and not d.asks for d in ev.data)
        return isinstance(ev, (sp.TradeMessage, sp.OhlcMessage, sp.TickerMessage)) and not ev.data
    if frame.stream == "futures":
        ev = fut.decode_futures(frame.payload)
        if isinstance(ev, Reject):
            return False
        return not isinstance(ev, (fut.FuturesBookDelta, fut.FuturesBookSnapshot,
                                   fut.FuturesTrade, fut.FuturesTicker)) or (
            isinstance(ev, fut.FuturesTradeSnapshot))
    if frame.stream == "rest":
        if "/Trades" in frame.meta:
            # backfill pages add only trades inside open trade_id holes (not yet recorded):
            # a decodable page whose trades were all recorded adds no row; an undecodable one
            # must still have its reject row (checked above)
            return isinstance(rest.decode_trades(frame.payload), rest.TradesPage)
        return not any(k in frame.meta for k in ("/OHLC", "/Depth", "/Level3"))
    if frame.stream == "control":
        return True  # markers: valid ones are bookkeeping; invalid ones are rejects (checked)
    return False


def check_accounting(frames: list[Frame], sink: ListSink) -> None:
    data, rejects = _rows_by_recv(sink)
    unaccounted = []
    for f in frames:
        for row in rejects.get(f.recv_ns, []):
            assert row["reason"] and isinstance(row["reason"], str)
            assert row["detail"] is not None
            assert row["raw"] == f.payload
            assert row["stream"] == f.stream
        if f.recv_ns in rejects or f.recv_ns in data:
            continue
        if not _explained_without_rows(f):
            unaccounted.append(f)
    assert not unaccounted, [(f.stream, f.meta, f.payload[:300]) for f in unaccounted[:3]]
    # nothing the pipeline could not derive was dropped: an undecodable spot/futures frame
    # always has its reject row
    for f in frames:
        if f.stream in ("spot", "l3") and isinstance(sp.decode_spot(f.payload), Reject):
            assert f.recv_ns in rejects, f.payload[:200]
        if f.stream == "futures" and isinstance(fut.decode_futures(f.payload), Reject):
            assert f.recv_ns in rejects, f.payload[:200]
        if f.stream == "spot_v1":
            assert f.recv_ns in rejects  # journaled but not derived: an explicit reject


def _known_internal(row: dict[str, Any]) -> bool:
    """No ``internal`` reject is expected any more (snapshot number errors are typed
    ``apply_error`` rejects)."""
    return False


def _no_internal(sink: ListSink) -> None:
    internal = [r for r in sink.rows("rejects")
                if r["reason"] == "internal" and not _known_internal(r)]
    assert not internal, [(r["detail"], r["raw"][:200]) for r in internal[:3]]


# ------------------------------------------------------------------------------- properties


@settings(max_examples=250 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@given(frame_sequences())
def test_pipeline_never_raises_and_accounts_for_every_frame(frames: list[Frame]) -> None:
    sink = ListSink()
    p = Pipeline(sink, batch_rows=7)  # tiny batches: flushing mid-stream is exercised too
    for f in frames:
        p.feed(f)
    p.close("fuzz")
    assert p.frames == len(frames)
    check_accounting(frames, sink)
    _no_internal(sink)
    # the state round-trips and the restored pipeline keeps accepting hostile frames
    state = p.to_state()
    q = Pipeline.from_state(state, ListSink())
    for f in frames[-3:]:
        q.feed(f)


@settings(max_examples=150 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["spot", "l3", "futures"]), st.data())
def test_absurd_numbers_and_hostile_symbols_are_rows_or_rejects(stream: str,
                                                               data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(CORPUS[stream]))
    sym = data.draw(st.sampled_from(HOSTILE_SYMBOLS))
    num = data.draw(st.sampled_from(ABSURD_NUMBERS))
    frames_payloads = [base,
                       _SYMBOL.sub(lambda m: m.group(1) + _json_str(sym), base),
                       _NUMBER.sub(lambda m: num, base, count=data.draw(st.integers(1, 4)))]
    frames = [Frame(recv_ns=T0 + i * STEP, conn_id=1, stream=stream,  # type: ignore[arg-type]
                    direction="in", payload=pl) for i, pl in enumerate(frames_payloads)]
    sink = ListSink()
    p = Pipeline(sink)
    for f in frames:
        p.feed(f)
    p.close()
    check_accounting(frames, sink)
    _no_internal(sink)
    # exact text survives: an absurd number kept as a row is in the overflow/text columns
    for name in ("trades", "book", "level3", "futures_book", "futures_trades"):
        for row in sink.rows(name):
            for col in ("price", "qty"):
                if col in row and row[col] is None:
                    assert col in json.loads(row["overflow"] or "{}"), (name, row)


def test_every_absurd_number_in_every_numeric_field() -> None:
    """Deterministic sweep: each absurd value in each number position of each corpus frame."""
    frames: list[Frame] = []
    i = 0
    for stream in ("spot", "l3", "futures"):
        for base in CORPUS[stream][:25]:
            spots = list(_NUMBER.finditer(base))[:12]
            for m in spots:
                for num in ABSURD_NUMBERS[:14]:
                    frames.append(Frame(recv_ns=T0 + i * STEP, conn_id=1, stream=stream,  # type: ignore[arg-type]
                                        direction="in",
                                        payload=base[:m.start()] + num + base[m.end():]))
                    i += 1
    sink = ListSink()
    p = Pipeline(sink, batch_rows=1000)
    for f in frames:
        p.feed(f)
    p.close()
    check_accounting(frames, sink)
    _no_internal(sink)


def test_unknown_channels_and_shapes_become_rejects() -> None:
    payloads = [b'{"channel": "%s", "type": "update", "data": []}' % c for c in UNKNOWN_CHANNELS]
    payloads += [b"", b"null", b"[]", b"[1,2,3]", b'{"channel": null}', b'{"channel": 5}',
                 b'{"method": "frobnicate"}', b"\xff\xfe", b"{" * 100_000, b'"' + b"a" * 1000]
    frames = [Frame(recv_ns=T0 + i * STEP, conn_id=1, stream=s, direction="in", payload=pl)  # type: ignore[arg-type]
              for i, (s, pl) in enumerate((s, pl) for s in ("spot", "futures") for pl in payloads)]
    sink = ListSink()
    p = Pipeline(sink)
    for f in frames:
        p.feed(f)
    p.close()
    rejects = {r["recv_ns"]: r for r in sink.rows("rejects")}
    for f in frames:
        assert f.recv_ns in rejects, (f.stream, f.payload[:80])
        assert rejects[f.recv_ns]["reason"] in {"unknown_message", "malformed_json", "schema",
                                                "not_utf8", "bad_encoding", "bad_number"}
        # invalid UTF-8 is named as such on both streams (spot: not_utf8, futures: bad_encoding)
        if f.payload == b"\xff\xfe":
            assert rejects[f.recv_ns]["reason"] in {"not_utf8", "bad_encoding"}


# ------------------------------------------------------------------------------- known bugs


@pytest.mark.parametrize("stream,payload", [
    ("spot", b'{"channel": "book", "type": "snapshot", "data": [{"symbol": "BTC/USD", "bids":'
             b' [{"price": 1e400, "qty": 1}], "asks": [], "checksum": 0}]}'),
    ("l3", b'{"channel": "level3", "type": "snapshot", "data": [{"symbol": "BTC/USD",'
           b' "checksum": 0, "bids": [{"order_id": "O1", "limit_price": 1E+999999999,'
           b' "order_qty": 1, "timestamp": "2023-10-06T17:35:00.279389650Z"}], "asks": []}]}'),
])
def test_out_of_range_number_in_a_snapshot_is_a_typed_reject(stream: str, payload: bytes) -> None:
    sink = ListSink()
    p = Pipeline(sink)
    p.feed(Frame(recv_ns=T0, conn_id=1, stream=stream, direction="in", payload=payload))  # type: ignore[arg-type]
    p.close()
    (row,) = sink.rows("rejects")
    assert row["reason"] in ("apply_error", "bad_number"), row["detail"]
    assert any(g["cause"] == "apply_error" for g in sink.rows("gaps"))


def test_an_exception_mid_row_does_not_corrupt_the_dataset_buffer(tmp_path: Path,
                                                                   monkeypatch) -> None:
    import recorder.pipeline.core as core
    from recorder.archive.session import ArchiveSession

    real = core.token_to_text

    def flaky(token: Any) -> str:
        if token == "0.10148":  # the ticker's vwap: after bid..volume were appended
            raise core.NumberError("simulated conversion failure")
        return real(token)

    monkeypatch.setattr(core, "token_to_text", flaky)
    ticker = next(f for f in DOCUMENTED_SPOT if b'"ticker"' in f)
    clock = iter(range(T0 + 10**12, T0 + 10**13, STEP))
    s = ArchiveSession(tmp_path / "a", host="fuzz", clock_ns=lambda: next(clock),
                       fsync_interval_s=3600)
    s.start()
    s.write(Frame(recv_ns=T0, conn_id=1, stream="spot", direction="in", payload=ticker))
    s.close()  # must not raise: the failed row is a reject, the buffer stays rectangular
    _check_archive(tmp_path / "a")


# ------------------------------------------------------------------------------- oversized


def test_oversized_frame_is_rejected_without_blowup() -> None:
    """A 64 MiB frame: one reject row that keeps the raw bytes (by reference, not copies);
    peak extra memory stays well under a few multiples of the frame."""
    size = 64 * 1024 * 1024
    payload = b'{"channel": "book", "type": "update", "data": [{"symbol": "' + b"A" * size + b'"}]}'
    frames = [Frame(recv_ns=T0, conn_id=1, stream="spot", direction="in", payload=payload),
              Frame(recv_ns=T0 + 1, conn_id=1, stream="futures", direction="in", payload=payload),
              Frame(recv_ns=T0 + 2, conn_id=1, stream="l3", direction="in",
                    payload=b"[" * size)]
    sink = ListSink()
    p = Pipeline(sink)
    gc.collect()
    tracemalloc.start()
    try:
        for f in frames:
            p.feed(f)
        p.flush()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rows = sink.rows("rejects")
    assert [r["reason"] for r in rows] == ["too_large"] * 3
    assert all(r["raw"] is f.payload for r, f in zip(rows, frames))  # no copies
    assert peak < size // 4, f"peak {peak / 2**20:.1f} MiB while rejecting 64 MiB frames"


# ------------------------------------------------------------------------------- archive path


def _check_archive(root: Path) -> dict[str, Any]:
    from recorder.archive.store import ArchiveStore
    from recorder.verify import verify_archive

    archive = ArchiveStore(root)
    for f in archive.state.files:
        assert pq.ParquetFile(root / f.file).metadata.num_rows == f.rows
    report = verify_archive(root)
    assert report["files_failed"] == 0, report["failures"]
    return report


@settings(max_examples=12 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.data_too_large])
@given(frame_sequences(max_frames=40))
def test_archive_session_stays_readable_and_verifiable(tmp_path_factory, frames) -> None:
    from recorder.archive.journal import list_segments, read_segment
    from recorder.archive.session import ArchiveSession
    from recorder.archive.store import ArchiveStore

    root = tmp_path_factory.mktemp("fuzzarchive")
    clock = iter(range(T0 + 10**12, T0 + 10**13, STEP))
    s = ArchiveSession(root, host="fuzz", clock_ns=lambda: next(clock), fsync_interval_s=3600,
                       roll_rows=5)
    s.start()
    for f in frames:
        s.write(f)
    s.close()
    _check_archive(root)
    # the journal holds every frame exactly as written (plus our markers)
    journaled = [fr for seg in list_segments(root / "journal")
                 for _, fr in read_segment(root / "journal" / seg)]
    assert [fr for fr in journaled if fr.recv_ns < T0 + 10**12] == frames
    # every rejects row kept in Parquet has a reason and the raw bytes
    rejects = [root / f.file for f in ArchiveStore(root).state.files if f.dataset == "rejects"]
    if rejects:
        t = pq.read_table(rejects)
        assert all(t.column("reason").to_pylist())
        assert set(t.column("raw").to_pylist()) <= {f.payload for f in frames} | {None}


@pytest.mark.skipif(not HAVE_FIXTURES, reason="Kraken fixtures absent (set KRAKEN_FIXTURES)")
def test_recorder_verify_cli_on_mutated_real_stream(tmp_path: Path) -> None:
    """A real v2 book stream with every 7th frame damaged: ingest + `recorder verify` give
    clean reports (exit 0 or 1 with JSON), never a traceback."""
    import random

    from recorder.archive.session import ArchiveSession

    rnd = random.Random(9)
    frames = []
    for i, payload in enumerate(CORPUS["spot"] * 3):
        if i % 7 == 3:
            m = list(_NUMBER.finditer(payload))
            if m and rnd.random() < 0.5:
                k = rnd.choice(m)
                payload = payload[:k.start()] + rnd.choice(ABSURD_NUMBERS) + payload[k.end():]
            else:
                payload = payload[:rnd.randrange(max(1, len(payload)))]
        frames.append(Frame(recv_ns=T0 + i * STEP, conn_id=1, stream="spot", direction="in",
                            payload=payload))
    root = tmp_path / "a"
    clock = iter(range(T0 + 10**12, T0 + 10**13, STEP))
    s = ArchiveSession(root, host="fuzz", clock_ns=lambda: next(clock), fsync_interval_s=3600)
    s.start()
    s.write_many(frames)
    s.close()
    from recorder.cli import main

    r = CliRunner().invoke(main, ["verify", "--archive", str(root), "--json"])
    assert r.exit_code in (0, 1), r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    report = json.loads(r.output)
    assert report["files_failed"] == 0
