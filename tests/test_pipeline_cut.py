"""The commit cut in two halves (issue #18): :meth:`Pipeline.cut` on the feeding thread, rows
and state built later (in the commit thread) while the pipeline goes on.

What is checked: the state a cut materializes after more frames were fed equals (as a value
and as encoded bytes, i.e. the state file) :meth:`Pipeline.to_state` taken at the cut; the
rows it builds equal what :meth:`Pipeline.flush` hands the sink at the same point; the books'
``checkpoint_later`` equals ``checkpoint`` at the cut whatever the book does afterwards
(level3 orders are modified in place, requeued, duplicated, truncated away); a commit cut by
:meth:`Deriver.begin_commit` and finished after more frames writes the state file and rows a
flush + to_state commit writes, and recovery from it re-derives the same archive.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.archive.schema import load_schemas
from recorder.archive.session import Deriver
from recorder.archive.store import ArchiveStore
from recorder.book.l2 import L2Book
from recorder.book.l3 import L3Book
from recorder.ingest import _read_bytes, read_input_frames
from recorder.pipeline import Pipeline
from recorder.pipeline.core import PipelineCut
from recorder.pipeline.state import decode_state, encode_state
from tests.archive_helpers import make_sim_record

SCHEMAS = load_schemas()


class _Sink:
    """Records every (dataset, table) handed over, in order."""

    def __init__(self) -> None:
        self.tables: list[tuple[str, pa.Table]] = []

    def append(self, dataset: str, columns: dict[str, Any]) -> None:
        self.tables.append((dataset, SCHEMAS[dataset].table(columns)))


@pytest.fixture(scope="module")
def sim_frames(tmp_path_factory) -> list[Any]:
    """A sim stream with faults (resnapshots, checksum desyncs, drops, closes): books and
    level3 of 6 pairs, trades, ohlc, instruments, two connections."""
    path = tmp_path_factory.mktemp("cut") / "s.zst"
    make_sim_record(path, messages=12000, pairs=6, seed=11)
    return list(read_input_frames(_read_bytes(path)))


def _same_rows(got: list[tuple[str, pa.Table]], want: list[tuple[str, pa.Table]]) -> None:
    assert [name for name, _ in got] == [name for name, _ in want]
    for (name, a), (_, b) in zip(got, want, strict=True):
        assert a.equals(b), name


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cut_materialized_later_equals_flush_and_to_state_at_the_cut(sim_frames, seed):
    """Two pipelines fed the same frames: one flushes + takes its state at random points,
    the other cuts there and materializes each cut only after feeding on (the rows of each
    commit period compared: those flushed before the cut, then the cut's own)."""
    rng = random.Random(seed)
    ref_sink, fast_sink = _Sink(), _Sink()
    batch_rows = rng.choice([700, 200_000])  # small: the pipeline also flushes between cuts
    ref = Pipeline(ref_sink, batch_rows=batch_rows)
    fast = Pipeline(fast_sink, batch_rows=batch_rows)
    points = sorted(rng.sample(range(100, len(sim_frames)), 12))
    # per cut: (the cut, rows flushed before it, the state and rows flush + to_state gave)
    pending: list[tuple[Any, list[Any], Any, list[Any]]] = []
    checked = 0
    i = 0
    for point in [*points, len(sim_frames)]:
        for frame in sim_frames[i:point]:
            assert ref.feed(frame) == fast.feed(frame)
        i = point
        # materialize the cuts taken before the previous point: the pipeline moved on since
        while pending and (len(pending) > 1 or point == len(sim_frames)):
            cut, rows, want_state, want_rows = pending.pop(0)
            rows += [(name, SCHEMAS[name].table(cols)) for name, cols in cut.rows()]
            state = cut.state()
            assert cut.state() is state  # built once
            assert state == want_state
            assert encode_state(state) == encode_state(want_state)
            _same_rows(rows, want_rows)
            checked += 1
        if point == len(sim_frames):
            break
        ref.flush()
        want = ref.to_state()
        want_rows, ref_sink.tables = ref_sink.tables, []
        cut = fast.cut()
        assert fast.pending_rows == 0
        assert fast.to_state() == want  # the live pipeline at the same point
        rows, fast_sink.tables = fast_sink.tables, []
        pending.append((cut, rows, want, want_rows))
    assert checked == len(points)
    ref.flush()
    fast.flush()
    _same_rows(fast_sink.tables, ref_sink.tables)
    assert encode_state(fast.to_state()) == encode_state(ref.to_state())
    assert any(es.l3 is not None for es in want.epochs)
    assert any(es.l2 is not None for es in want.epochs)


def _l3_events(rng: random.Random, ids: list[str], n: int) -> tuple[list[Any], list[Any]]:
    """Random level3 update events over a few prices: adds (some duplicate), modifies (same
    price: in place; other price: requeue; unknown ids), deletes (some unknown)."""
    bids: list[Any] = []
    asks: list[Any] = []
    for _ in range(n):
        side = rng.random() < 0.5
        price = (1000 - rng.randint(1, 14)) if side else (1000 + rng.randint(1, 14))
        oid = rng.choice(ids)
        event = rng.choice((1, 1, 2, 2, 2, 3))
        qty = rng.choice((0, rng.randint(1, 50))) if event == 2 else rng.randint(1, 50)
        ts = rng.choice((None, rng.randint(1, 10**12)))
        (bids if side else asks).append((event, oid, price, qty, ts))
    return bids, asks


@settings(deadline=None, max_examples=60)
@given(st.integers(0, 2**32 - 1))
def test_l3_checkpoint_later_is_the_checkpoint_at_the_cut(seed):
    """Orders modified in place, requeued, duplicated, deleted and truncated away after the
    cut do not change what the cut materializes."""
    rng = random.Random(seed)
    book = L3Book("X/Y", rng.choice((3, 10)), 1, 2)
    ids = [f"O{k}" for k in range(40)]
    book.apply_units("snapshot", *_l3_events(rng, ids, 30), None)
    cuts: list[tuple[Any, Any]] = []
    for _ in range(12):
        book.apply_units("update", *_l3_events(rng, ids, rng.randint(1, 12)), None)
        cuts.append((book.checkpoint_later(), book.checkpoint()))
    for cut, want in cuts:
        assert cut.materialize() == want
    assert book.requeued + book.duplicate_adds + book.unknown_modifies > 0 or len(book) == 0


@settings(deadline=None, max_examples=60)
@given(st.integers(0, 2**32 - 1))
def test_l2_checkpoint_later_is_the_checkpoint_at_the_cut(seed):
    rng = random.Random(seed)
    book = L2Book("X/Y", rng.choice((3, 10)), 2, 8)

    def levels(n: int, zero: bool) -> tuple[list[Any], list[Any]]:
        bids = [(1000 - rng.randint(1, 20), rng.choice((0,) * zero + (rng.randint(1, 10**9),)))
                for _ in range(n)]
        asks = [(1000 + rng.randint(1, 20), rng.choice((0,) * zero + (rng.randint(1, 10**9),)))
                for _ in range(n)]
        return bids, asks

    book.apply_units("snapshot", *levels(15, False), None)
    cuts = []
    for _ in range(12):
        book.apply_units("update", *levels(rng.randint(1, 8), True), None)
        cuts.append((book.checkpoint_later(), book.checkpoint()))
    for cut, want in cuts:
        assert cut.materialize() == want


class _AtTheCut:
    """What a cut was before it was split: flush + to_state at the cut (the reference)."""

    row_count = 0  # rows flushed to the writer before its take

    def __init__(self, pipeline: Pipeline) -> None:
        pipeline.flush()
        self._state = pipeline.to_state()

    def rows(self, pause: Any = None) -> list[Any]:
        return []

    def state(self, pause: Any = None) -> Any:
        return self._state

    def release(self) -> None:
        pass


def test_deferred_commits_write_the_state_files_of_flush_and_to_state(sim_frames, tmp_path):
    """An archive committed through begin_commit (cut) + finish after the next stretch of
    frames holds, byte for byte, the state files of one whose commits flushed and took the
    state at the cut, and the same rows in the same files."""
    frames = sim_frames[:8000]
    stops = {1500, 3100, 4700, 6400}

    def run(root: Path) -> tuple[ArchiveStore, list[bytes]]:
        d = Deriver(root, roll_rows=None, roll_bytes=None, roll_seconds=None)
        states = []

        def finish(pending: Any) -> None:
            rows = pending.rows
            pauses: list[int] = []
            pending.finish(lambda: pauses.append(1))  # capture's commit thread: a GilYield
            assert pending.rows == rows > 0
            states.append((root / d.archive.state.pipeline).read_bytes())
            if isinstance(pending.cut, PipelineCut):  # once per column built and per epoch
                assert len(pauses) > len(decode_state(states[-1]).epochs) > 0

        pending = None
        for i, frame in enumerate(frames):
            d.loop.feed(frame, "seg-1", i)
            if i + 1 in stops:
                if pending is not None:
                    finish(pending)
                pending = d.begin_commit()  # finished after the next stretch of frames
        assert pending is not None
        finish(pending)
        d.release()
        return ArchiveStore(root), states

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Pipeline, "cut", lambda self: _AtTheCut(self))
        ref, ref_states = run(tmp_path / "ref")
    cut, cut_states = run(tmp_path / "cut")
    assert ref.state.commit == cut.state.commit == len(stops)
    assert len(cut_states) == len(stops)
    assert cut_states == ref_states
    ref_files = sorted((f.file, f.rows) for f in ref.state.files)
    assert ref_files == sorted((f.file, f.rows) for f in cut.state.files)
    assert len(ref_files) > len(stops)
    for rel, _ in ref_files:
        assert pq.read_table(tmp_path / "cut" / rel).equals(pq.read_table(tmp_path / "ref" / rel))


def test_a_failed_commit_puts_the_cut_rows_back_in_order(sim_frames, tmp_path):
    """finish fails before building the cut's rows (journal flush error): abort builds them
    on the feeding thread and hands them back in front of the newer rows; the next commit
    writes every row once."""
    frames = sim_frames[:4000]

    def fail() -> None:
        raise OSError("journal flush failed")

    d = Deriver(tmp_path / "a", roll_rows=None, roll_bytes=None, roll_seconds=None)
    ref = Deriver(tmp_path / "r", roll_rows=None, roll_bytes=None, roll_seconds=None)
    for i, frame in enumerate(frames[:2000]):
        d.loop.feed(frame, "seg-1", i)
        ref.loop.feed(frame, "seg-1", i)
    pending = d.begin_commit()
    pending.before = fail
    with pytest.raises(OSError):
        pending.finish()
    for i, frame in enumerate(frames[2000:], 2000):
        d.loop.feed(frame, "seg-1", i)
        ref.loop.feed(frame, "seg-1", i)
    pending.abort()
    d.commit()
    ref.commit()
    got, want = ArchiveStore(tmp_path / "a"), ArchiveStore(tmp_path / "r")
    assert got.state.commit == want.state.commit == 1
    assert ((tmp_path / "a" / got.state.pipeline).read_bytes()
            == (tmp_path / "r" / want.state.pipeline).read_bytes())
    files = sorted(f.file for f in want.state.files)
    assert files == sorted(f.file for f in got.state.files)
    for rel in files:
        assert pq.read_table(tmp_path / "a" / rel).equals(pq.read_table(tmp_path / "r" / rel))


def test_cut_of_a_book_that_is_not_ready_raises_before_handing_anything_over(sim_frames):
    """Like to_state: a book with no valid state raises, and the rows stay in the pipeline
    (the reference model's books: the compiled lane's are never left invalid in an epoch)."""
    sink = _Sink()
    p = Pipeline(sink, engine="python")
    for frame in sim_frames[:3000]:
        p.feed(frame)
    ep = next(e for e in p._epochs.values() if isinstance(e.book, L3Book))
    ep.book._ready = False
    rows = p.pending_rows
    assert rows
    with pytest.raises(Exception, match="no valid book"):
        p.cut()
    assert p.pending_rows == rows
    ep.book._ready = True
    cut = p.cut()
    assert p.pending_rows == 0
    assert sum(1 for _ in cut.rows()) > 0


def test_cut_with_futures_and_trade_epochs(sim_frames):
    """Epochs of every kind (spot book and level3, trades, a futures book) in one cut."""
    import json

    t0_ms = 1_700_000_000_000
    msgs: list[dict[str, Any]] = [{
        "feed": "book_snapshot", "product_id": "PF_XBTUSD", "timestamp": t0_ms, "seq": 100,
        "tickSize": None, "bids": [{"price": 34892.5, "qty": 6385}, {"price": 34890.0, "qty": 10}],
        "asks": [{"price": 34911.5, "qty": 20598}, {"price": 34912, "qty": 1.5}]}]
    for k in range(8):
        side = "buy" if k % 2 == 0 else "sell"
        msgs.append({"feed": "book", "product_id": "PF_XBTUSD", "side": side, "seq": 101 + k,
                     "price": 34891 + k / 2 if side == "buy" else 34913 + k,
                     "qty": 1 + k / 4, "timestamp": t0_ms + (k + 1) * 1000})
    lines = "\n".join(json.dumps({"recv_ns": (m["timestamp"] + 5) * 1_000_000, "conn": 7,
                                  "ep": "futures", "frame": json.dumps(m)}) for m in msgs)
    futures = list(read_input_frames(lines.encode()))
    p = Pipeline(_Sink())
    for frame in [*sim_frames[:3000], *futures[:5]]:
        p.feed(frame)
    p.flush()
    want = p.to_state()
    cut = p.cut()
    for frame in [*sim_frames[3000:4000], *futures[5:]]:
        p.feed(frame)
    got = cut.state()
    assert encode_state(got) == encode_state(want)
    kinds = {(es.l2 is not None, es.l3 is not None, es.futures is not None) for es in got.epochs}
    assert kinds == {(True, False, False), (False, True, False), (False, False, True),
                     (False, False, False)}
