"""The pipeline's compiled Spot book lane (``Pipeline(engine="core")``, issue #15) against the
pure-Python reference model (``engine="python"``).

Differential: sim streams with faults (drops, checksum faults, bad numbers, malformed frames,
reorders, duplicates, connection closes: resnapshots and disconnect markers), the real Kraken
captures and hypothesis-mutated frames go through both engines, fed one frame at a time and
in runs (:meth:`Pipeline.feed_many`, with random stops); every dataset's rows (exact, in
order), the signals, the counters and ``to_state()`` must be identical, also across a
``cut``/``from_state`` restart in the middle of the stream.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder import _core
from recorder.book.checkpoint import encode_checkpoint
from recorder.book.l2 import L2Book
from recorder.frames import Frame
from recorder.ingest import _read_bytes, read_input_frames
from recorder.pipeline import ListSink, Pipeline
from recorder.book.l3 import L3Book
from recorder.pipeline.lane import CoreL2Book, CoreL3Book, restore_l2, restore_l3, to_reference

_FAULTS = ("drop:channel=book,rate=0.03;duplicate:channel=book,rate=0.02;"
           "checksum:channel=book,rate=0.01;number:channel=book,rate=0.01;"
           "number:channel=level3,rate=0.01;reorder:channel=level3,rate=0.01;"
           "checksum:channel=level3,rate=0.005;drop:channel=level3,rate=0.01;"
           "malformed:rate=0.005;reorder:channel=book,rate=0.01;close:every=2")


def _sim(tmp_path_factory, name: str, args: list[str]) -> list[Frame]:
    path = tmp_path_factory.mktemp("sim") / f"{name}.zst"
    subprocess.run([sys.executable, "-m", "recorder", "sim", "--record", str(path), *args],
                   check=True, capture_output=True)
    return list(read_input_frames(_read_bytes(path), engine="python"))


@pytest.fixture(scope="module")
def faulty(tmp_path_factory) -> list[Frame]:
    return _sim(tmp_path_factory, "faulty", ["--messages", "12000", "--pairs", "4", "--seed",
                                             "5", "--faults", _FAULTS])


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> list[Frame]:
    return _sim(tmp_path_factory, "clean", ["--messages", "6000", "--pairs", "3", "--seed", "2"])


def _plain(value: Any) -> Any:
    if isinstance(value, (pa.Array, pa.ChunkedArray)):
        return value.to_pylist()
    return value


class _Sink(ListSink):
    """Rows as plain lists, in the order they were handed over."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[str, dict[str, list[Any]]]] = []

    def append(self, dataset: str, columns: dict[str, Any]) -> None:
        self.batches.append((dataset, {k: list(_plain(v)) for k, v in columns.items()}))


def _rows(sink: _Sink) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for name, cols in sink.batches:
        names = list(cols)
        out.setdefault(name, []).extend(zip(*(cols[c] for c in names), strict=True))
    return out


def _feed(p: Pipeline, frames: list[Frame], mode: str, rng: random.Random,
          signals: list[Any]) -> None:
    if mode == "feed" or p.engine == "python":
        for f in frames:
            signals.extend(p.feed(f))
        return
    i = 0
    while i < len(frames):
        stop = min(len(frames), i + rng.randint(1, 300))
        until_rows = rng.choice([1 << 62, rng.randint(0, 5000)])
        until_recv = rng.choice([1 << 62, frames[i].recv_ns + rng.randint(0, 10**9)])
        j = p.feed_many(frames, i, stop, until_rows, until_recv)
        assert i < j <= stop
        i = j


def _outcome(p: Pipeline, sink: _Sink, signals: list[Any]) -> dict[str, Any]:
    p.flush()
    state = msgspec.json.encode(p.to_state())
    return {"rows": _rows(sink), "signals": [repr(s) for s in signals],
            "counters": p.counters(), "rejects": dict(p.reject_counts),
            "flags": dict(p.flag_counts), "rejected_frames": p.rejected_frames,
            "row_counts": p.row_counts(), "state": state,
            "activity": {c: p.activity(c) for c in p._conns}}


def _derive(frames: list[Frame], engine: str, mode: str = "feed", seed: int = 0,
            batch_rows: int = 200_000, cut_at: int | None = None,
            **kw: Any) -> dict[str, Any]:
    rng = random.Random(seed)
    sink = _Sink()
    p = Pipeline(sink, engine=engine, batch_rows=batch_rows, **kw)
    signals: list[Any] = []
    if cut_at is None:
        _feed(p, frames, mode, rng, signals)
    else:
        _feed(p, frames[:cut_at], mode, rng, signals)
        cut = p.cut()
        for name, cols in cut.rows():
            sink.append(name, cols)
        p = Pipeline.from_state(cut.state(), sink, engine=engine)
        _feed(p, frames[cut_at:], mode, rng, signals)
    p.close()
    out = _outcome(p, sink, signals)
    if mode == "many" and engine == "core":
        out["signals"] = None  # feed_many drops them (re-derivation has no capture)
    if cut_at is not None:  # counted per object, not state: the restarted one's only
        for key in ("rejects", "flags", "rejected_frames", "row_counts", "activity"):
            out[key] = None
    return out


def _assert_same(core: dict[str, Any], ref: dict[str, Any]) -> None:
    assert core["rows"].keys() == ref["rows"].keys()
    for name in ref["rows"]:
        assert core["rows"][name] == ref["rows"][name], name
    for key in ref:
        if core[key] is not None:
            assert core[key] == ref[key], key


# ------------------------------------------------------------------ sim streams


@pytest.mark.parametrize("mode", ["feed", "many"])
def test_faulty_sim_stream_equal(faulty, mode):
    ref = _derive(faulty, "python")
    core = _derive(faulty, "core", mode, seed=1)
    _assert_same(core, ref)
    rows = ref["rows"]
    for ds in ("book", "checkpoints", "epochs", "gaps", "rejects", "liveness"):
        assert rows.get(ds), ds
    reasons = {r[5] for r in rows["rejects"]}
    assert {"update_before_snapshot"} <= reasons
    ends = {r[12] for r in rows["epochs"]}
    assert {"checksum_mismatch", "resnapshot"} & ends


def test_clean_sim_stream_small_batches_and_checkpoint_cadence(clean):
    kw = dict(batch_rows=777, checkpoint_messages=50, checkpoint_interval_ns=2 * 10**9)
    ref = _derive(clean, "python", **kw)
    for mode in ("feed", "many"):
        _assert_same(_derive(clean, "core", mode, seed=7, **kw), ref)
    assert len(ref["rows"]["checkpoints"]) > 20


@pytest.mark.parametrize("cut_at", [1, 2500, 7001])
def test_cut_and_restore_mid_stream_continue_identically(faulty, cut_at):
    ref = _derive(faulty, "python")
    _assert_same(_derive(faulty, "python", cut_at=cut_at), ref)
    _assert_same(_derive(faulty, "core", "many", seed=3, cut_at=cut_at), ref)


def test_the_lane_derives_the_common_path(clean):
    """Not a vacuous differential: in core mode the spot books are the compiled ones."""
    p = Pipeline(ListSink())
    for f in clean:
        p.feed(f)
    books = [ep.book for (ch, _), ep in p._epochs.items() if ch == "book"]
    assert books and all(type(b) is CoreL2Book for b in books)
    l3 = [ep.book for (ch, _), ep in p._epochs.items() if ch == "level3"]
    assert l3 and all(type(b) is CoreL3Book for b in l3)
    assert Pipeline(ListSink(), engine="python")._lane is None
    with pytest.raises(ValueError):
        Pipeline(ListSink(), engine="fast")


# ------------------------------------------------------------------ real captures


def _raw_frames(lines: list[bytes], stream: str = "spot") -> list[Frame]:
    return [Frame(recv_ns=1_700_000_000_000_000_000 + i * 50_000_000, conn_id=1,
                  stream=stream, direction="in", payload=line)  # type: ignore[arg-type]
            for i, line in enumerate(lines)]


def _book_stream(path: Path) -> list[bytes]:
    top = msgspec.json.decode(path.read_bytes(), type=dict[str, msgspec.Raw])
    updates = msgspec.json.decode(top["updates"], type=list[msgspec.Raw])
    return [bytes(top["init"])] + [bytes(raw) for raw in updates]


@pytest.mark.fixtures
@pytest.mark.parametrize("inputs", [
    ("kraken-data-recorder/instrument_snapshot.json", "python-kraken-sdk/orderbook-v2.json"),
    ("crypto-market-raw-data/kraken.spot.2025-05-08.json",),
    ("gocryptotrader/wsLevel3.json",),
])
def test_real_captures_equal(fixture_file, inputs):
    frames: list[Frame] = []
    for rel in inputs:
        path = fixture_file(rel)
        if rel.endswith("orderbook-v2.json"):
            frames += _raw_frames(_book_stream(path))
        else:
            data = _read_bytes(path)
            frames += list(read_input_frames(data, start_ns=1_700_000_000_000_000_000))
    assert frames
    ref = _derive(frames, "python")
    for mode in ("feed", "many"):
        _assert_same(_derive(frames, "core", mode, seed=11), ref)
    for cut_at in (len(frames) // 3, len(frames) // 2):
        _assert_same(_derive(frames, "core", "many", seed=2, cut_at=cut_at), ref)


# ------------------------------------------------------------------ hostile frames

_SNAP = (b'{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":'
         b'[{"price":100.5,"qty":1.25},{"price":100.4,"qty":0.5}],"asks":[{"price":100.6,'
         b'"qty":2.0},{"price":100.9,"qty":0.125}],"checksum":%d}]}')
_UPD = (b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":'
        b'[{"price":100.5,"qty":0.75}],"asks":[],"checksum":%d,'
        b'"timestamp":"2023-10-06T17:35:55.440295Z"}]}')
_PIECES = [b"0", b"9", b"-", b".", b"e", b"E5", b'"', b",", b"}", b"]", b"[", b"{",
           b"99999999999999999999", b"1.123456789012345678901", b"null", b"true",
           b'"ETH/USD"', b'"update"', b'"snapshot"', b'"level3"', b"\\u0000", b"\xff"]


def _mutate(frame: bytes, data: st.DataObject) -> bytes:
    b = bytearray(frame)
    for _ in range(data.draw(st.integers(0, 3))):
        at = data.draw(st.integers(0, len(b)))
        op = data.draw(st.sampled_from(["ins", "del", "set"]))
        piece = data.draw(st.sampled_from(_PIECES))
        if op == "ins":
            b[at:at] = piece
        elif op == "del":
            del b[at:at + data.draw(st.integers(1, 8))]
        else:
            b[at:at + len(piece)] = piece
    return bytes(b)


def _checksummed() -> list[bytes]:
    """A snapshot and updates with the right checksums (taken from the reference book)."""
    book = L2Book("BTC/USD", 10, 1, 3)
    out = []
    snap = _SNAP % 0
    from recorder.protocol.spot import decode_spot
    ev = decode_spot(snap)
    crc = book.apply("snapshot", ev.data[0]).computed
    out.append(_SNAP % crc)
    ev = decode_spot(_UPD % 0)
    crc = book.apply("update", ev.data[0]).computed
    out.append(_UPD % crc)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_frames_equal_and_never_crash(data):
    base = _checksummed()
    lines = [base[0]]
    for _ in range(data.draw(st.integers(1, 12))):
        pick = data.draw(st.sampled_from(base + [base[1], base[1]]))
        lines.append(_mutate(pick, data) if data.draw(st.booleans()) else pick)
    frames = _raw_frames(lines)
    ref = _derive(frames, "python")
    seed = data.draw(st.integers(0, 1000))
    _assert_same(_derive(frames, "core", "feed"), ref)
    _assert_same(_derive(frames, "core", "many", seed=seed), ref)
    assert "internal" not in ref["rejects"]


# ------------------------------------------------------------------ books and edges


def test_core_book_checkpoints_restore_and_convert(clean):
    p = Pipeline(ListSink())
    for f in clean:
        p.feed(f)
    seen = set()
    for (ch, _), ep in p._epochs.items():
        if ch not in ("book", "level3"):
            continue
        seen.add(ch)
        book = ep.book
        cp = book.checkpoint()
        cls, ref_cls, restore = ((CoreL2Book, L2Book, restore_l2) if ch == "book"
                                 else (CoreL3Book, L3Book, restore_l3))
        ref = ref_cls.restore(cp)
        assert book.checksum() == ref.checksum() and len(book) == len(ref) > 0
        assert encode_checkpoint(ref.checkpoint()) == encode_checkpoint(cp)
        assert book.checkpoint_later().materialize() == cp
        assert cls.restore(cp).checkpoint() == cp
        assert type(restore(cp)) is cls
        assert to_reference(book).checkpoint() == cp
    assert seen == {"book", "level3"}


def test_numbers_beyond_int64_continue_in_the_reference_book():
    big = (b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":'
           b'[{"price":100.5,"qty":99999999999999999999.5}],"asks":[],"checksum":1}]}')
    frames = _raw_frames([_checksummed()[0], big, _checksummed()[1], _checksummed()[0],
                          _checksummed()[1]])
    ref = _derive(frames, "python")
    _assert_same(_derive(frames, "core"), ref)
    _assert_same(_derive(frames, "core", "many"), ref)
    assert any(r[-1] is not None for r in ref["rows"]["book"])  # an overflow text


def test_lane_binding_refuses_bad_books():
    with pytest.raises(Exception, match="depth"):
        _core.LaneL2Book("X/Y", 0, 1, 1)
    with pytest.raises(Exception, match="price_precision"):
        _core.LaneL2Book("X/Y", 10, 19, 1)


# ------------------------------------------------------------------ level3

_L3_SNAP = {"channel": "level3", "type": "snapshot", "data": [{
    "symbol": "BTC/USD", "checksum": 0,
    "bids": [{"order_id": "B1", "limit_price": 100.5, "order_qty": 1.25,
              "timestamp": "2023-10-06T17:35:55.440295Z"},
             {"order_id": "B2", "limit_price": 100.4, "order_qty": 0.5,
              "timestamp": "2023-10-06T17:35:55.440295Z"}],
    "asks": [{"order_id": "A1", "limit_price": 100.6, "order_qty": 2.0,
              "timestamp": "2023-10-06T17:35:55.440295Z"}]}]}


_L3_PRECISION = {"BTC/USD": (1, 3)}


def _l3_frames(n: int, seed: int) -> list[bytes]:
    """A level3 snapshot then ``n`` updates (adds of new ids, modifies, deletes) with the
    checksums of the reference book, as JSON frames."""
    from recorder.protocol.spot import decode_spot

    rng = random.Random(seed)
    book = L3Book("BTC/USD", 10, 1, 3)
    out = []

    def emit(msg: dict[str, Any]) -> None:
        raw = msgspec.json.encode(msg)
        ev = decode_spot(raw)
        msg["data"][0]["checksum"] = book.apply(msg["type"], ev.data[0]).computed
        out.append(msgspec.json.encode(msg))

    emit(_L3_SNAP)
    live: dict[str, tuple[str, str]] = {"B1": ("bids", "100.5"), "B2": ("bids", "100.4"),
                                        "A1": ("asks", "100.6")}
    for i in range(n):
        event = rng.choice(["add", "add", "delete", "delete", "modify"]) if live else "add"
        if event == "add":
            side = rng.choice(["bids", "asks"])
            price = f"{(99.0 + rng.randint(0, 15) / 10) if side == 'bids' else (100.6 + rng.randint(0, 15) / 10):.1f}"
            oid = f"O{i}"
            live[oid] = (side, price)
        else:
            oid = rng.choice(sorted(live))
            side, price = live.pop(oid) if event == "delete" else live[oid]
        entry = {"event": event, "order_id": oid, "limit_price": float(price),
                 "order_qty": round(rng.randint(1, 4000) / 1000, 3),
                 "timestamp": "2023-10-06T17:35:56.000000123Z"}
        msg = {"channel": "level3", "type": "update", "data": [{
            "symbol": "BTC/USD", "checksum": 0, "bids": [], "asks": [], side: [entry]}]}
        msg["data"][0][side] = [entry]
        emit(msg)
        if oid in live and event != "delete" and oid not in {o.order_id for o in book.orders()}:
            live.pop(oid)  # truncated out of the book
    return out


def test_level3_stream_with_renumbered_handles_equal():
    lines = _l3_frames(14_000, seed=4)
    frames = _raw_frames(lines, "l3")
    ref = _derive(frames, "python", instruments=_L3_PRECISION)
    for mode in ("feed", "many"):
        _assert_same(_derive(frames, "core", mode, seed=5, instruments=_L3_PRECISION), ref)
    _assert_same(_derive(frames, "core", "many", seed=6, cut_at=7000,
                         instruments=_L3_PRECISION), ref)
    p = Pipeline(ListSink(), instruments=_L3_PRECISION)
    for f in frames:
        p.feed(f)
    book = p._epochs[("level3", "BTC/USD")].book
    assert type(book) is CoreL3Book
    assert book.handles < 4096 + 4 * len(book) + 2  # renumbered: thousands of ids were given out
    assert len(ref["rows"]["level3"]) == 14_003
    assert ref["counters"].checksums_ok == 14_001


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_level3_frames_equal_and_never_crash(data):
    base = _l3_frames(6, seed=data.draw(st.integers(0, 50)))
    lines = [base[0]]
    for _ in range(data.draw(st.integers(1, 10))):
        pick = data.draw(st.sampled_from(base))
        lines.append(_mutate(pick, data) if data.draw(st.booleans()) else pick)
    frames = _raw_frames(lines, "l3")
    kw = {"instruments": _L3_PRECISION} if data.draw(st.booleans()) else {}
    ref = _derive(frames, "python", **kw)
    _assert_same(_derive(frames, "core", "feed", **kw), ref)
    _assert_same(_derive(frames, "core", "many", seed=data.draw(st.integers(0, 99)), **kw), ref)
    assert "internal" not in ref["rejects"]


def test_an_error_inside_the_lane_is_an_internal_reject_as_in_the_reference(clean, monkeypatch):
    """A pipeline method the lane calls back raising part-way (a bug): the frame becomes an
    ``internal`` reject, the buffers are repaired, and the stream goes on, as the reference's
    ``feed`` does it."""
    original = Pipeline._checkpoint_row
    calls = {"n": 0}

    def flaky(self, ep, recv_ns, reason):
        if reason == "interval":
            calls["n"] += 1
            if calls["n"] % 3 == 0:
                raise RuntimeError("boom")
        return original(self, ep, recv_ns, reason)

    monkeypatch.setattr(Pipeline, "_checkpoint_row", flaky)
    kw = dict(checkpoint_messages=40)
    ref = _derive(clean, "python", **kw)
    assert ref["rejects"].get("internal", 0) > 3
    for mode in ("feed", "many"):
        calls["n"] = 0
        _assert_same(_derive(clean, "core", mode, seed=9, **kw), ref)


class _Writer:
    """A FeedLoop writer: counts what the pipeline hands over (rows, pretend bytes)."""

    def __init__(self) -> None:
        self.buffered_rows = 0
        self.buffered_bytes = 0
        self.log: list[tuple[str, int]] = []

    def append(self, dataset: str, columns: dict[str, Any]) -> None:
        n = len(next(iter(columns.values())))
        self.buffered_rows += n
        self.buffered_bytes += 40 * n
        self.log.append((dataset, n))


def _loop_run(frames: list[Frame], engine: str, **roll: Any) -> tuple[Any, ...]:
    from recorder.archive.session import FeedLoop

    w = _Writer()
    p = Pipeline(w, engine=engine, batch_rows=500)
    rolls: list[Any] = []

    def on_roll() -> None:
        rolls.append((dict(loop.positions), p.pending_rows, w.buffered_rows, p.frames))
        p.flush()
        w.buffered_rows = w.buffered_bytes = 0
        loop.committed()

    loop = FeedLoop(p, w, on_roll=on_roll, **roll)
    progress: list[int] = []
    half = len(frames) // 2
    n = loop.feed_run(enumerate(frames[:half]), "a", progress.append)
    n += loop.feed_run(enumerate(frames[half:], 3), "b", progress.append)
    return rolls, progress, w.log, n, loop.frames, dict(loop.positions)


@pytest.mark.parametrize("roll", [
    dict(roll_rows=700), dict(roll_bytes=30_000), dict(roll_seconds=1.5),
    dict(roll_rows=5000, roll_bytes=90_000, roll_seconds=20.0), {}])
def test_feed_run_rolls_and_progress_equal(clean, roll):
    """``FeedLoop.feed_run`` through the lane in runs: the same roll points (positions,
    pending rows), progress calls and sink batches as one ``feed`` per frame."""
    ref = _loop_run(clean, "python", **roll)
    assert _loop_run(clean, "core", **roll) == ref
    if roll:
        assert len(ref[0]) >= 2
