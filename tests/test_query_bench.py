"""The query benchmark's workloads: the streams it records ingest into archives whose books
verify and whose OHLC bars add up to the trades (the checks the figures rely on)."""

from __future__ import annotations

import pytest

pytest.importorskip("duckdb")
pytest.importorskip("polars")

from benchmarks import query as bench
from recorder.ingest import ingest
from recorder.query.api import Archive


def test_cadence_is_the_production_default():
    from recorder.capture.config import ScheduleConfig
    from recorder.pipeline.core import CHECKPOINT_MESSAGES

    assert bench.CHECKPOINT_INTERVAL_NS == int(ScheduleConfig().checkpoint_minutes * 60e9)
    assert bench.CHECKPOINT_MESSAGES == CHECKPOINT_MESSAGES


def test_busiest_pair_deep_and_others_shallow(tmp_path):
    n = bench._record(tmp_path / "s.zst", 1, pairs=3, book_depth=1000, others_depth=10)
    assert n > 100
    ingest([tmp_path / "s.zst"], tmp_path / "a",
           checkpoint_interval_ns=bench.CHECKPOINT_INTERVAL_NS,
           checkpoint_messages=bench.CHECKPOINT_MESSAGES)
    ar = Archive(tmp_path / "a")
    depths = dict(ar.sql("SELECT symbol, max(depth) FROM epochs WHERE channel = 'book' "
                         "GROUP BY symbol").collect().rows())
    assert depths.pop("BTC/USD") == 1000
    assert len(depths) == 2 and set(depths.values()) == {10}
    lat, info = bench._latencies(tmp_path / "a", 5)
    assert len(lat) == 5 and info["ok"] and info["levels"] > 20


def test_trades_only_stream_resamples_to_bars_that_add_up(tmp_path):
    bench._record(tmp_path / "t.zst", 2, pairs=20, book_depth=None)
    ingest([tmp_path / "t.zst"], tmp_path / "a")
    ar = Archive(tmp_path / "a")
    assert ar.sql("SELECT count(*) FROM raw_book").collect().item() == 0
    seconds, want = bench._ohlc(tmp_path / "a", 2)
    assert seconds > 0
    assert want["trades"] > 0 and want["pairs"] >= 2
    assert want["pairs"] <= want["bars"] <= 2 * want["pairs"]  # two minutes
