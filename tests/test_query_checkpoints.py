"""The book_at checkpoint lookup: the same checkpoint as a scan of the whole epoch, found by
reading only the checkpoint files near the cut (a query's cost must not grow with history)."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("duckdb")
pytest.importorskip("polars")

import polars as pl

from recorder.ingest import ingest
from recorder.query import books as books_mod
from recorder.query.api import Archive
from recorder.sim.record import record
from recorder.sim.universe import load_universe


@pytest.fixture(scope="module")
def dense_archive(tmp_path_factory):
    """Two pairs, a checkpoint every 40 messages of an epoch: many checkpoints per epoch."""
    d = tmp_path_factory.mktemp("cpq")
    universe = load_universe(None, pairs=2, futures_path=None, seed=3)
    record(d / "s.zst", universe, messages=6000, seed=3)
    ingest([d / "s.zst"], d / "a", checkpoint_messages=40)
    return Archive(d / "a")


def _full_scan(ar: Archive, channel: str, symbol: str, epoch: int, cut: int):
    """The reference: the latest (recv_ns, epoch_message) checkpoint of the whole epoch."""
    df = (ar.scan("checkpoints", raw=True)
          .filter((pl.col("channel").cast(pl.Utf8) == channel)
                  & (pl.col("symbol").cast(pl.Utf8) == symbol)
                  & (pl.col("epoch") == epoch) & (pl.col("recv_ns") <= cut))
          .sort(["recv_ns", "epoch_message"]).collect())
    return None if df.height == 0 else df.row(-1, named=True)


@pytest.mark.parametrize("window_ns", [books_mod._CP_WINDOW_NS, 1, 3_000_000])
def test_lookup_finds_the_epochs_latest_checkpoint(dense_archive, monkeypatch, window_ns):
    # tiny windows force the widening path (no checkpoint inside the first window)
    monkeypatch.setattr(books_mod, "_CP_WINDOW_NS", window_ns)
    ar = dense_archive
    engine = books_mod.BookEngine(ar)
    rng = random.Random(5)
    checked = 0
    for channel in ("book", "level3"):
        for symbol in ("BTC/USD", "ETH/USD"):
            epochs = engine.epochs(channel, symbol)
            assert epochs
            for ep in epochs:
                cuts = [ep.start_ns, ep.valid_until,
                        *(rng.randrange(ep.start_ns, ep.valid_until + 1) for _ in range(15))]
                for cut in cuts:
                    want = _full_scan(ar, channel, symbol, ep.epoch, cut)
                    got = engine._checkpoint(channel, symbol, ep, cut)
                    if want is None:
                        assert got is None
                        continue
                    assert got is not None
                    assert got[0] == want["recv_ns"]
                    assert got[3] == want["book"]
                    checked += 1
    assert checked >= 40
    n_cp = ar.sql("SELECT count(*) FROM raw_checkpoints").collect().item()
    assert n_cp > 4 * 2 * 2, "the fixture must have several checkpoints per epoch"


def test_lookup_reads_only_files_near_the_cut(dense_archive, monkeypatch):
    ar = dense_archive
    engine = books_mod.BookEngine(ar)
    ep = engine.epochs("book", "BTC/USD")[-1]
    cut = ep.valid_until
    starts: list[int] = []
    original = ar.scan

    def scan(dataset, **kw):
        if dataset == "checkpoints":
            starts.append(kw["start"])
        return original(dataset, **kw)

    monkeypatch.setattr(ar, "scan", scan)
    # a window that holds checkpoints: the lookup never reaches back to the epoch's start
    monkeypatch.setattr(books_mod, "_CP_WINDOW_NS", (cut - ep.start_ns) // 4)
    assert engine._checkpoint("book", "BTC/USD", ep, cut) is not None
    assert starts and min(starts) >= cut - (cut - ep.start_ns) // 4 > ep.start_ns
    # and book_at through it still rebuilds Kraken's checksum
    b = ar.book_at("BTC/USD", cut, channel="book", clock="receive")
    assert b.valid and b.checksum_ok is True
