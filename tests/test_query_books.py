"""Must-shows of the query layer's book rebuilds: Kraken's own checksums on a real capture, the
simulator's true books at random times, and explicit answers outside valid epochs."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

pytest.importorskip("duckdb")
pytest.importorskip("polars")

from recorder.ingest import ingest  # noqa: E402
from recorder.protocol.numbers import units_to_text  # noqa: E402
from recorder.protocol.timestamps import rfc3339_to_ns  # noqa: E402
from recorder.query.api import Archive  # noqa: E402
from recorder.sim.record import TICK_NS  # noqa: E402
from tests.query_helpers import record_with_truth  # noqa: E402


@pytest.fixture(scope="module")
def sim_archive(tmp_path_factory):
    d = tmp_path_factory.mktemp("simq")
    truth, symbols = record_with_truth(d / "s.zst", messages=4000, pairs=3, seed=7, samples=40)
    ingest([d / "s.zst"], d / "a")
    return Archive(d / "a"), truth, symbols


@pytest.mark.fixtures
def test_real_capture_every_unique_timestamp_rebuilds_krakens_checksum(tmp_path, fixture_file):
    instruments = fixture_file("kraken-data-recorder/instrument_snapshot.json")
    book = fixture_file("python-kraken-sdk/orderbook-v2.json")
    ingest([instruments, book], tmp_path / "a")
    doc = json.loads(book.read_text())
    messages = [doc["init"], *doc["updates"]]
    stamps: dict[int, list[dict]] = {}
    for m in messages:
        data = m["data"][0]
        if "timestamp" in data:
            stamps.setdefault(rfc3339_to_ns(data["timestamp"]), []).append(data)
    unique = {t: ds[0] for t, ds in stamps.items() if len(ds) == 1}
    assert len(unique) >= 500
    ar = Archive(tmp_path / "a")
    for t, data in unique.items():
        b = ar.book_at(data["symbol"], t, channel="book", clock="exchange")
        assert b.valid, (t, b.reason)
        assert b.checksum == data["checksum"], t
        assert b.checksum_ok is True and b.exchange_checksum == data["checksum"]
        assert b.last_message_ts_ns == t
    # one nanosecond before a message, that message is not applied yet
    ts = sorted(unique)
    b = ar.book_at("BTC/USD", ts[10] - 1, channel="book")
    assert b.valid and b.last_message_ts_ns == ts[9] and b.checksum == unique[ts[9]]["checksum"]
    # after the last message there is no evidence: explicit answer, not a stale book
    late = ar.book_at("BTC/USD", ts[-1] + 1, channel="book")
    assert not late.valid and "after the last" in late.reason


def _l2(levels):
    return [(Decimal(p), Decimal(q)) for p, q, *_ in levels]


def test_sim_rebuilt_books_equal_truth_at_random_times(sim_archive):
    ar, truth, symbols = sim_archive
    assert len(truth) >= 30
    checked = 0
    for t, books in sorted(truth.items()):
        at = t + TICK_NS - 1
        for sym in symbols:
            tb, ta, t3b, t3a = books[sym]
            b2 = ar.book_at(sym, at, channel="book", clock="receive")
            assert b2.valid, b2.reason
            pp, qp = b2.price_precision, b2.qty_precision
            got_b = [(Decimal(units_to_text(p, pp)), Decimal(units_to_text(q, qp)))
                     for _, p, q in b2.bids]
            got_a = [(Decimal(units_to_text(p, pp)), Decimal(units_to_text(q, qp)))
                     for _, p, q in b2.asks]
            assert (got_b, got_a) == (_l2(tb), _l2(ta)), (sym, t)
            assert b2.checksum_ok is True
            b3 = ar.book_at(sym, at, channel="level3", clock="receive")
            assert b3.valid, b3.reason
            for rows, true_orders in ((b3.bids, t3b), (b3.asks, t3a)):
                got = [(oid, Decimal(units_to_text(p, pp)), Decimal(units_to_text(q, qp)))
                       for _, _, oid, p, q, _, _ in rows]
                want = [(oid, Decimal(p), Decimal(q)) for p, q, oid, _ in true_orders]
                assert got == want, (sym, t)
            assert b3.checksum_ok is True
            checked += 1
    assert checked == len(truth) * len(symbols)


def test_depth_and_frame_shape(sim_archive):
    ar, truth, symbols = sim_archive
    t = sorted(truth)[5] + TICK_NS - 1
    b = ar.book_at(symbols[0], t, channel="level3", depth=2, clock="receive")
    df = b.frame
    assert set(df["side"]) == {"bid", "ask"}
    assert df.filter(df["side"] == "bid")["level"].max() <= 2
    assert {"order_id", "queue", "price", "qty", "qty_ahead_units"} <= set(df.columns)
    full = ar.book_at(symbols[0], t, channel="book", clock="receive")
    assert full.frame.height == len(full.bids) + len(full.asks) > 2
    d = full.to_dict()
    for key in ("symbol", "channel", "at", "epoch", "checksum", "bids", "asks"):
        assert key in d


def test_outside_epochs_is_an_explicit_no_book(sim_archive):
    ar, truth, symbols = sim_archive
    epochs = ar.books.epochs("book", symbols[0])
    before = ar.book_at(symbols[0], epochs[0].start_ns - 1, channel="book", clock="receive")
    assert not before.valid and before.reason and before.frame.height == 0
    after = ar.book_at(symbols[0], epochs[-1].end_ns + 10**9, channel="book", clock="receive")
    assert not after.valid and "ended" in after.reason


def test_gap_after_checksum_mismatch_is_reported_not_rebuilt(tmp_path):
    """A corrupted update ends the epoch live; inside the gap there is no book, after the
    resnapshot there is one again."""
    snap = {"channel": "book", "type": "snapshot", "data": [{
        "symbol": "BTC/USD", "bids": [{"price": 100.0, "qty": 1.0}],
        "asks": [{"price": 101.0, "qty": 2.0}], "checksum": 0,
        "timestamp": "2025-01-01T00:00:00.000000Z"}]}
    from recorder.book.l2 import L2Book

    def crc(bids, asks):
        book = L2Book("BTC/USD", 10, 1, 1)
        lv = lambda p, q: type("L", (), {"price": p, "qty": q})()  # noqa: E731
        book.snapshot([lv(*x) for x in bids], [lv(*x) for x in asks])
        return book.checksum()

    snap["data"][0]["checksum"] = crc([("100.0", "1.0")], [("101.0", "2.0")])
    good = {"channel": "book", "type": "update", "data": [{
        "symbol": "BTC/USD", "bids": [{"price": 100.0, "qty": 3.0}], "asks": [],
        "checksum": crc([("100.0", "3.0")], [("101.0", "2.0")]),
        "timestamp": "2025-01-01T00:00:01.000000Z"}]}
    bad = {"channel": "book", "type": "update", "data": [{
        "symbol": "BTC/USD", "bids": [{"price": 100.0, "qty": 4.0}], "asks": [],
        "checksum": 12345, "timestamp": "2025-01-01T00:00:02.000000Z"}]}
    snap2 = json.loads(json.dumps(snap))
    snap2["data"][0]["timestamp"] = "2025-01-01T00:00:05.000000Z"
    src = tmp_path / "m.jsonl"
    src.write_text("\n".join(json.dumps(m) for m in (snap, good, bad, snap2)))
    ingest([src], tmp_path / "a")
    ar = Archive(tmp_path / "a")
    t0 = rfc3339_to_ns("2025-01-01T00:00:00Z")
    ok = ar.book_at("BTC/USD", t0 + 1_500_000_000, channel="book", clock="receive")
    assert ok.valid and ok.checksum_ok and ok.bids == [(1, 1000, 30)]
    for at in (t0 + 2_000_000_000, t0 + 3_000_000_000):
        nb = ar.book_at("BTC/USD", at, channel="book", clock="receive")
        assert not nb.valid and nb.gap is not None and nb.gap["cause"] == "checksum_mismatch"
        assert "checksum_mismatch" in nb.reason
    again = ar.book_at("BTC/USD", t0 + 5_000_000_000, channel="book", clock="receive")
    assert again.valid and again.bids == [(1, 1000, 10)]
    # the SQL macro says the same
    rows = ar.sql("SELECT valid, reason FROM book_at(?, ?, clock := 'receive')",
                  ["BTC/USD", t0 + 3_000_000_000]).collect().rows()
    assert rows == [(False, nb.reason)]


def test_replay_yields_every_message_and_matches_book_at(sim_archive):
    ar, truth, symbols = sim_archive
    ts = sorted(truth)
    lo, hi = ts[2] + TICK_NS - 1, ts[8] + TICK_NS - 1
    events = list(ar.replay(symbols[0], lo, hi, channel="level3", clock="receive"))
    assert events and all(e.recv_ns > lo and e.recv_ns <= hi for e in events)
    assert all(e.checksum == e.exchange_checksum for e in events)
    last = events[-1]
    b = ar.book_at(symbols[0], hi, channel="level3", clock="receive")
    assert last.checksum == b.checksum


def test_book_epoch_without_recorded_precision_is_a_clear_query_error() -> None:
    """The L2 book takes no precision guess: an epoch row that lost its precisions (a corrupt
    archive) is refused with a QueryError naming the epoch, not a BookError traceback."""
    from recorder.query.books import QueryError, _Epoch, _l2_book

    good = _Epoch(7, 1, 2, "", 10, 1, 8, 2)
    assert _l2_book("BTC/USD", good).price_precision == 1
    for pp, qp in ((None, 8), (1, None)):
        with pytest.raises(QueryError, match="epoch 7 of 'BTC/USD' records no price/qty"):
            _l2_book("BTC/USD", _Epoch(7, 1, 2, "", 10, pp, qp, 2))
