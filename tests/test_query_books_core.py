"""Differential tests of ``book_at`` on the compiled core against the reference model.

The same archive is asked the same questions through two routers: ``engine="core"`` (the
product: rows replayed by ``recorder._core``) and ``engine="python"`` (the pure-Python books
of ``recorder/book/``). Every answer must be equal field by field (levels, orders, queue
positions, checksums and their verdicts, epochs, checkpoints used, gaps, reasons), at random
times, at epoch and checkpoint boundaries, at the first and last rows, on both clocks, over an
archive with injected faults (checksum mismatches and dropped frames end epochs and open
gaps). The core must really answer (not hand every question to the reference), and the
lazily restored ``BookAt.book`` must be the reference's book.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("polars")

import polars as pl  # noqa: E402

from recorder import _core  # noqa: E402
from recorder.ingest import ingest  # noqa: E402
from recorder.query.api import Archive  # noqa: E402
from recorder.query.books import BookAt, BookEngine, BookRouter, QueryError  # noqa: E402
from recorder.query.books_core import core_book_at  # noqa: E402
from recorder.sim.faults import parse_faults  # noqa: E402
from recorder.sim.record import record  # noqa: E402
from recorder.sim.universe import load_universe  # noqa: E402

SPOT = ("book", "level3")


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sim recording with checksum corruption and dropped frames (several epochs and gaps
    per book), ingested with a short checkpoint cadence (many checkpoints per epoch)."""
    d = tmp_path_factory.mktemp("bookat-core")
    universe = load_universe(None, pairs=3, futures_path=None, seed=5)
    rules = parse_faults("checksum:rate=0.0008;drop:rate=0.0005")
    record(d / "s.zst", universe, messages=5000, seed=5, rules=rules)
    # small rolling files (one per virtual second): a replay spans several files
    ingest([d / "s.zst"], d / "a", checkpoint_messages=40, roll_seconds=1)
    return d / "a"


@pytest.fixture(scope="module")
def compacted(faulty: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same archive after ``recorder compact`` (one file per dataset and day, sorted by
    symbol and time, row groups per schema)."""
    from recorder.archive.maintenance import compact_archive

    out = tmp_path_factory.mktemp("bookat-compacted") / "a"
    shutil.copytree(faulty, out)
    compact_archive(out, include_latest_day=True)
    return out


def _routers(root: Path) -> tuple[Archive, BookRouter]:
    ar = Archive(root)
    return ar, BookRouter(ar, engine="python")


def _same(core: BookAt, ref: BookAt) -> None:
    assert core.to_dict() == ref.to_dict()
    if ref.valid:
        assert core.book is not None and ref.book is not None
        for side in ("bid", "ask"):
            assert core.book.levels(side) == ref.book.levels(side)  # type: ignore[arg-type]
        assert core.book.checksum() == ref.book.checksum()
        assert core.book.depth == ref.book.depth
        assert (core.book.price_precision, core.book.qty_precision) == (
            ref.book.price_precision, ref.book.qty_precision)


def _times(ar: Archive, channel: str, symbol: str, rng: random.Random) -> list[int]:
    """Random times, epoch and checkpoint boundaries (each +-1 ns), first and last rows."""
    eps = ar.books.epochs(channel, symbol)
    out: list[int] = []
    for ep in eps:
        for t in (ep.start_ns, ep.end_ns, ep.valid_until):
            out += [t - 1, t, t + 1]
    cps = (ar.scan("checkpoints", symbols=[symbol])
           .filter(pl.col("channel").cast(pl.Utf8) == channel)
           .select("recv_ns").collect().get_column("recv_ns").to_list())
    for t in rng.sample(cps, min(12, len(cps))):
        out += [t - 1, t, t + 1]
    recv = (ar.scan(channel, symbols=[symbol]).select("recv_ns").collect()
            .get_column("recv_ns"))
    first, last = recv.min(), recv.max()
    out += [first - 1, first, last, last + 1]  # type: ignore[operator]
    out += [rng.randrange(first, last + 1) for _ in range(25)]  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize("layout", ["rolling", "compacted"])
def test_core_equals_the_reference_everywhere(layout: str, request: pytest.FixtureRequest
                                              ) -> None:
    root = request.getfixturevalue("faulty" if layout == "rolling" else "compacted")
    ar, ref = _routers(root)
    assert len(ar.files("book")) > (3 if layout == "rolling" else 0)
    assert len(ar.files("checkpoints")) > (3 if layout == "rolling" else 0)
    rng = random.Random(3)
    symbols = ref.symbols("book")
    assert len(symbols) == 3
    answered = invalid = mismatched_epochs = 0
    for channel in SPOT:
        for symbol in symbols:
            eps = ar.books.epochs(channel, symbol)
            mismatched_epochs += sum(e.end_reason in ("checksum_mismatch", "gap") for e in eps)
            for t in _times(ar, channel, symbol, rng):
                for depth in (None, 3):
                    core = ar.books.book_at(symbol, t, channel=channel,  # type: ignore[arg-type]
                                            depth=depth, clock="receive")
                    _same(core, ref.book_at(symbol, t, channel=channel,  # type: ignore[arg-type]
                                            depth=depth, clock="receive"))
                    answered += core.valid
                    invalid += not core.valid
            # the exchange clock maps to a receive cut: the same rebuild path
            for t in _times(ar, channel, symbol, rng)[-10:]:
                _same(ar.books.book_at(symbol, t, channel=channel,  # type: ignore[arg-type]
                                       clock="exchange"),
                      ref.book_at(symbol, t, channel=channel,  # type: ignore[arg-type]
                                  clock="exchange"))
    assert answered > 300 and invalid > 20
    assert mismatched_epochs >= 1 or any(len(ar.books.epochs(c, s)) > 1
                                         for c in SPOT for s in symbols)


def test_the_core_answers_itself(faulty: Path) -> None:
    """Valid answers come from the core, not from the fallback to the reference."""
    ar, _ = _routers(faulty)
    engine: BookEngine = ar.books.engines[0]
    rng = random.Random(9)
    for channel in SPOT:
        for symbol in ar.books.symbols(channel):
            for t in _times(ar, channel, symbol, rng)[-20:]:
                res = BookAt(symbol=symbol, channel=channel, at_ns=t, clock="receive",
                             valid=False, root=engine.root, cut_recv_ns=t)
                got = core_book_at(engine, channel, symbol, t, None, res)
                assert got is not None


def test_refusals_fall_back_to_the_reference(faulty: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the core refuses is answered by the reference model: same answer."""
    ar, ref = _routers(faulty)
    calls: list[Any] = []

    def refuse(*args: Any) -> dict[str, str]:
        calls.append(args)
        return {"refused": "test"}

    symbol = ref.symbols("level3")[0]
    ep = ar.books.epochs("level3", symbol)[0]
    t = (ep.start_ns + ep.valid_until) // 2
    want = ref.book_at(symbol, t, channel="level3", clock="receive")
    monkeypatch.setattr(_core, "book_at_replay", refuse)
    got = ar.books.book_at(symbol, t, channel="level3", clock="receive")
    assert calls and got.valid
    _same(got, want)


def test_core_refuses_what_the_reference_refuses() -> None:
    """Bad rows and checkpoints are refused (the reference then raises its own error)."""
    import numpy as np

    def rows(**over: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "side": np.array([0, 1], np.int8), "event": np.array([0, 0], np.int8),
            "price": np.array([100, 101], np.int64), "qty": np.array([5, 5], np.int64),
            "price_scale": np.array([1, 1], np.int8), "qty_scale": np.array([1, 1], np.int8),
            "checksum": np.array([0, 7], np.uint32),
            "checksum_valid": np.array([0, 1], np.uint8),
            "recv_ns": np.array([10, 10], np.int64), "ts_ns": np.array([0, 0], np.int64),
            "ts_valid": np.array([0, 0], np.uint8)}
        base.update(over)
        return base

    ok = _core.book_at_replay("book", 10, 1, 1, rows())
    assert ok["ready"] and ok["bids"] == [(1, 100, 5)] and ok["asks"] == [(1, 101, 5)]
    assert ok["exchange_checksum"] == 7 and ok["messages"] == 1
    # an update before any snapshot, a negative qty, a digit beyond the precision
    assert "refused" in _core.book_at_replay("book", 10, 1, 1,
                                             rows(event=np.array([1, 1], np.int8)))
    assert "refused" in _core.book_at_replay("book", 10, 1, 1,
                                             rows(qty=np.array([5, -5], np.int64)))
    assert "refused" in _core.book_at_replay("book", 10, 1, 1,
                                             rows(qty_scale=np.array([2, 1], np.int8)))
    # checkpoints: not best-first, more levels than the depth, text not canonical
    for bids in ([("10.0", "1.0"), ("10.1", "1.0")], [("10.1", "1.0"), ("10.0", "1.0")],
                 [("10.10", "1.0")]):
        cp = {"bids": bids, "asks": []}
        out = _core.book_at_replay("book", 1 if len(bids) == 2 and bids[0][0] == "10.1"
                                   else 10, 1, 1, rows(), cp, True)
        assert "refused" in out, bids
    # bad inputs are errors, not refusals
    from recorder.protocol.errors import ColumnError

    with pytest.raises(ColumnError):
        _core.book_at_replay("book", 10, 1, 1, rows(qty=np.array([5], np.int64)))
    with pytest.raises(ColumnError):
        _core.book_at_replay("trade", 10, 1, 1, rows())
    with pytest.raises(ColumnError):
        _core.book_at_replay("level3", 10, 1, 1, rows(order=np.array([0, 1], np.int64)),
                             None, False, 2**31)


def test_engine_is_checked(faulty: Path) -> None:
    with pytest.raises(QueryError, match="engine"):
        BookEngine(Archive(faulty), engine="fortran")  # type: ignore[arg-type]


def test_resnapshot_epochs_and_gaps(tmp_path: Path) -> None:
    """Two epochs of one book (a checksum mismatch, then a resnapshot): the same answers
    before, inside and after the gap, at every message and between messages."""
    import json

    from recorder.book.l2 import L2Book
    from recorder.protocol.timestamps import rfc3339_to_ns

    def crc(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
        book = L2Book("BTC/USD", 10, 1, 1)
        lv = lambda p, q: type("L", (), {"price": p, "qty": q})()  # noqa: E731
        book.snapshot([lv(*x) for x in bids], [lv(*x) for x in asks])
        return book.checksum()

    def msg(kind: str, second: int, bids: list[tuple[float, float]],
            asks: list[tuple[float, float]], checksum: int) -> dict[str, Any]:
        return {"channel": "book", "type": kind, "data": [{
            "symbol": "BTC/USD", "bids": [{"price": p, "qty": q} for p, q in bids],
            "asks": [{"price": p, "qty": q} for p, q in asks], "checksum": checksum,
            "timestamp": f"2025-01-01T00:{second // 60:02d}:{second % 60:02d}.000000Z"}]}

    lines = [
        msg("snapshot", 0, [(100.0, 1.0)], [(101.0, 2.0)],
            crc([("100.0", "1.0")], [("101.0", "2.0")])),
        msg("update", 1, [(100.0, 3.0)], [], crc([("100.0", "3.0")], [("101.0", "2.0")])),
        msg("update", 2, [(100.0, 4.0)], [], 12345),  # mismatch: the epoch ends
        msg("update", 3, [(100.0, 5.0)], [], 1),
        msg("snapshot", 5, [(99.0, 1.0)], [(101.0, 2.0)],
            crc([("99.0", "1.0")], [("101.0", "2.0")])),
        msg("update", 6, [(99.5, 2.0)], [], crc([("99.5", "2.0"), ("99.0", "1.0")],
                                                 [("101.0", "2.0")])),
        # minutes later: the checkpoint search widens its window back to the resnapshot
        msg("update", 200, [(99.5, 3.0)], [], crc([("99.5", "3.0"), ("99.0", "1.0")],
                                                   [("101.0", "2.0")])),
        msg("update", 500, [(99.0, 0.0)], [], crc([("99.5", "3.0")], [("101.0", "2.0")])),
    ]
    src = tmp_path / "m.jsonl"
    src.write_text("\n".join(json.dumps(m) for m in lines))
    ingest([src], tmp_path / "a")
    ar, ref = _routers(tmp_path / "a")
    assert len(ar.books.epochs("book", "BTC/USD")) == 2
    recv = (ar.scan("book").select("recv_ns").collect().get_column("recv_ns").unique()
            .sort().to_list())
    t0 = rfc3339_to_ns("2025-01-01T00:00:00Z")
    times = [t + d for t in recv for d in (-1, 0, 1)]
    times += [t0 + k * 250_000_000 for k in range(-4, 40)]
    times += [t0 + k * 20_000_000_000 for k in range(40)]
    valid = 0
    for t in times:
        for clock in ("receive", "exchange"):
            core = ar.books.book_at("BTC/USD", t, channel="book", clock=clock)  # type: ignore[arg-type]
            _same(core, ref.book_at("BTC/USD", t, channel="book", clock=clock))  # type: ignore[arg-type]
            valid += core.valid
    assert valid > 20


class _NoReferenceFuturesBook:
    """Stands in for the reference's FuturesBook while the core engine answers: any use of
    it (a fallback to the reference replay) fails the test."""

    @classmethod
    def restore(cls, *_: object, **__: object) -> None:
        raise AssertionError("the core engine fell back to the reference FuturesBook")


@pytest.mark.parametrize(("jump_at", "checkpoint_messages"), [(None, 7), (25, 7), (None, 0)])
def test_futures_books_replayed_by_the_core_equal_the_reference(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jump_at: int | None,
        checkpoint_messages: int) -> None:
    """Futures books replayed by the core (``_core.futures_book_at_replay``) answer as the
    reference engine's FuturesBook: every message time +-1 ns, both clocks, several depths,
    across a ``seq`` jump, from interval checkpoints in small rolling files or from the
    epoch-start checkpoint alone; and the core answered every one of them itself (the
    replay from snapshot rows without a checkpoint is covered by the crate's unit tests)."""
    from tests.test_query_futures_books import PID, _stream, _write

    msgs = _stream(60, seed=4, jump_at=jump_at)
    recv = _write(tmp_path / "f.jsonl", msgs)
    ingest([tmp_path / "f.jsonl"], tmp_path / "a", checkpoint_messages=checkpoint_messages,
           roll_seconds=2)
    ar, ref = _routers(tmp_path / "a")
    assert len(ar.files("futures_book")) > 2
    cps = ar.sql("SELECT count(*) FROM checkpoints WHERE channel = 'futures_book'"
                 ).collect().item()
    assert (cps > 3) if checkpoint_messages else (cps <= 2)
    questions = [(i, clock, at, depth)
                 for i, t in enumerate(recv)
                 for clock, at in (("receive", t - 1), ("receive", t), ("receive", t + 1),
                                   ("exchange", msgs[i]["timestamp"] * 1_000_000))
                 for depth in (None, 1, 2)]
    want = [ref.book_at(PID, at, channel="futures_book",  # type: ignore[arg-type]
                        depth=depth, clock=clock).to_dict() for _, clock, at, depth in questions]
    monkeypatch.setattr("recorder.query.books.FuturesBook", _NoReferenceFuturesBook)
    valid = 0
    for (i, clock, at, depth), expected in zip(questions, want):
        core = ar.books.book_at(PID, at, channel="futures_book",  # type: ignore[arg-type]
                                depth=depth, clock=clock)
        assert core.to_dict() == expected, (i, clock, depth)
        valid += core.valid
    assert valid > 200


def test_futures_replay_refusals_go_to_the_reference(tmp_path: Path) -> None:
    """What the core refuses (a row beyond int64 units, whose text is in ``overflow``) is
    answered by the reference, so both engines still agree."""
    from tests.test_query_futures_books import PID, _stream, _write

    msgs = _stream(12, seed=5)
    msgs[6]["qty"] = "123456789012345678901234.5"  # beyond int64 units: overflow text
    recv = _write(tmp_path / "f.jsonl", msgs)
    ingest([tmp_path / "f.jsonl"], tmp_path / "a")
    ar, ref = _routers(tmp_path / "a")
    overflow = ar.sql("SELECT count(*) FROM futures_book WHERE overflow IS NOT NULL"
                      ).collect().item()
    assert overflow == 1
    for t in recv:
        core = ar.books.book_at(PID, t, channel="futures_book",  # type: ignore[arg-type]
                                clock="receive")
        want = ref.book_at(PID, t, channel="futures_book",  # type: ignore[arg-type]
                           clock="receive")
        assert core.to_dict() == want.to_dict()
