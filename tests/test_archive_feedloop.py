"""One feed loop with settings fixed at construction: the pipeline's public signals, counters
and accessors capture reads; settings recorded with the archive and the journal; state that
makes a restore derive what a continuous run derives."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from recorder.archive.journal import JournalPosition, list_segments
from recorder.archive.session import ArchiveSession, Deriver, journal_settings
from recorder.frames import Frame
from recorder.ingest import ingest
from recorder.pipeline import ListSink, Pipeline
from recorder.pipeline import markers as mk
from recorder.pipeline.settings import DeriveSettings
from recorder.pipeline.signals import InstrumentChanged, InstrumentSnapshot
from recorder.protocol.spot import exchange_time_ns
from tests.archive_helpers import T0, trade_frame
from tests.test_capture_integration import dataset
from tests.test_pipeline_books import book_frame

MIN = 60_000_000_000


def _pair(symbol: str, status: str = "online", pp: int = 1) -> dict[str, object]:
    return {"symbol": symbol, "base": symbol.split("/")[0], "quote": symbol.split("/")[1],
            "status": status, "price_precision": pp, "qty_precision": 8,
            "cost_precision": 5, "price_increment": "0.1", "qty_increment": "0.00000001",
            "qty_min": "0.0001", "marginable": False, "has_index": True}


def _instrument(recv_ns: int, kind: str, pairs: list[dict[str, object]]) -> Frame:
    payload = json.dumps({"channel": "instrument", "type": kind,
                          "data": {"assets": [], "pairs": pairs}},
                         separators=(",", ":")).encode()
    return Frame(recv_ns=recv_ns, conn_id=1, stream="spot", direction="in", payload=payload)


def test_instrument_signals_carry_the_statuses_capture_needs() -> None:
    p = Pipeline(ListSink())
    out = p.feed(_instrument(T0, "snapshot", [_pair("BTC/USD"), _pair("ETH/USD", "delisted")]))
    assert [type(s) for s in out] == [InstrumentChanged, InstrumentSnapshot]
    assert out[1].statuses == {"BTC/USD": "online", "ETH/USD": "delisted"}  # type: ignore[union-attr]
    # a snapshot with no change still tells capture the listing (no second decode needed)
    out = p.feed(_instrument(T0 + 1, "snapshot", [_pair("BTC/USD"), _pair("ETH/USD", "delisted")]))
    assert out == [InstrumentSnapshot(statuses={"BTC/USD": "online", "ETH/USD": "delisted"},
                                      recv_ns=T0 + 1)]
    out = p.feed(_instrument(T0 + 2, "update", [_pair("ETH/USD", "online")]))
    assert out == [InstrumentChanged(status_changed=["ETH/USD"], statuses={"ETH/USD": "online"},
                                     recv_ns=T0 + 2)]


def test_activity_counts_data_per_connection_across_liveness_minutes() -> None:
    p = Pipeline(ListSink())
    p.feed(mk.marker_frame(mk.Connected(conn_id=1, stream="spot", url="ws://x"), T0))
    for i in range(3):
        p.feed(trade_frame(T0 + 1 + i, 100 + i))
    p.feed(trade_frame(T0 + 2 * MIN, 103))  # a later minute: the first one's rows are written
    p.feed(trade_frame(T0 + 2 * MIN + 5, 104, symbol="ETH/USD"))
    assert p.activity(1) == {("trade", "BTC/USD"): (4, T0 + 2 * MIN),
                             ("trade", "ETH/USD"): (1, T0 + 2 * MIN + 5)}
    assert p.activity(2) == {}
    p.feed(mk.marker_frame(mk.Disconnected(conn_id=1, reason="x"), T0 + 3 * MIN))
    assert p.activity(1) == {}


def test_counters_and_pending_rows_are_public() -> None:
    p = Pipeline(ListSink())
    p.feed(book_frame(T0, "snapshot", [("100.5", "1.0")], [("101.0", "1.0")]))
    c = p.counters()
    assert c.frames == 1 and c.messages == 1
    assert c.checksums_ok + c.checksums_failed <= 1
    assert p.pending_rows > 0
    p.flush()
    assert p.pending_rows == 0
    q = Pipeline.from_state(p.to_state(), ListSink())
    assert q.counters() == c  # persisted with the state


def test_settings_are_fixed_at_construction_and_survive_the_state() -> None:
    s = DeriveSettings(checkpoint_interval_ns=3 * 10**9, checkpoint_messages=7)
    p = Pipeline(ListSink(), settings=s)
    assert p.settings == s
    assert Pipeline.from_state(p.to_state(), ListSink()).settings == s
    with pytest.raises(ValueError):
        DeriveSettings(checkpoint_interval_ns=0)


def test_requests_and_backfilled_ids_are_state() -> None:
    """A restore between a subscribe and its channel-less refusal, or between two overlapping
    backfill pages, derives what a continuous run derives."""
    p = Pipeline(ListSink())
    p.feed(Frame(recv_ns=T0, conn_id=4, stream="spot", direction="out",
                 payload=b'{"method":"subscribe","params":{"channel":"book","symbol":["X/Y"]},'
                         b'"req_id":9}'))
    p._backfilled["BTC/USD"] = {5, 6}  # as a REST page during an open backfill gap leaves it
    p.flush()
    q = Pipeline.from_state(p.to_state(), ListSink())
    assert q.to_state() == p.to_state()
    assert q._req_channel == {(4, 9): "book"}
    assert q._backfilled == {"BTC/USD": {5, 6}}


def test_live_session_journals_its_settings_and_ingest_rederives_with_them(tmp_path: Path) -> None:
    """Checkpoint rows depend on the settings: a journal written with a 1-message cadence
    re-derives (``recorder ingest`` into a fresh archive, no options) to the same
    checkpoints, because the journal's ProcessStart records the settings."""
    live = tmp_path / "live"
    s = ArchiveSession(live, host="t", fsync_interval_s=3600, checkpoint_messages=1,
                       roll_rows=40)
    s.start()
    s.write(book_frame(T0, "snapshot", [("100.5", "1.0")], [("101.0", "1.0")]))
    for i in range(30):
        s.write(book_frame(T0 + 10 + i, "update", [("100.5", f"{1 + i % 5}.0")]))
    s.close()
    segs = [live / "journal" / x for x in list_segments(live / "journal")]
    assert journal_settings(segs[0]) == DeriveSettings(checkpoint_messages=1)

    def checkpoints(root: Path) -> list[tuple[object, ...]]:
        t = dataset(root, "checkpoints", [root])
        assert t is not None
        return sorted((r["recv_ns"], r["epoch_message"], r["reason"], r["checksum"], r["book"])
                      for r in t.to_pylist())

    again = tmp_path / "again"
    ingest(segs, again)
    assert len(checkpoints(live)) == 31
    assert checkpoints(again) == checkpoints(live)
    # without the recorded settings (the defaults: every 2,000 messages) only epoch_start
    other = tmp_path / "other"
    ingest(segs, other, checkpoint_messages=2000)
    assert len(checkpoints(other)) == 1


def test_an_archive_keeps_its_settings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = Deriver(tmp_path / "a", checkpoint_messages=3)
    d.feed(trade_frame(T0, 1), JournalPosition(segment="s.kjz", index=0))
    d.commit()
    d.release()
    with caplog.at_level(logging.WARNING, logger="recorder.archive.session"):
        d = Deriver(tmp_path / "a", checkpoint_messages=50)
    assert d.settings == DeriveSettings(checkpoint_messages=3)
    assert "keeps the derivation settings" in caplog.text
    d.release()


def test_exchange_time_helper() -> None:
    trade = trade_frame(T0, 1).payload
    assert exchange_time_ns(trade) == 1_735_689_600_000_000_000
    assert exchange_time_ns(b'{"channel":"heartbeat"}') is None
    assert exchange_time_ns(b'{"channel":"trade","timestamp":"not a time"}') is None


def test_capture_marks_symbol_data_from_the_pipelines_counters(tmp_path: Path) -> None:
    """A connection's per-symbol data marks (dead-subscription detection, measured rates) come
    from :meth:`Pipeline.activity` through the archive writer: no frame is parsed by capture."""
    import random
    import time
    from types import SimpleNamespace

    from recorder.capture.config import CaptureConfig
    from recorder.capture.connection import FeedConnection
    from recorder.capture.limits import Backoff
    from recorder.capture.shards import ConnPlan
    from recorder.capture.writer import ArchiveWriter

    writer = ArchiveWriter(tmp_path / "w", host="t", fsync_interval_s=3600)
    writer.open()
    worker = SimpleNamespace(activity=writer.activity)
    conn = FeedConnection(ConnPlan(name="trade-0", stream="spot", channel="trade",
                                   symbols=("BTC/USD", "ETH/USD")), worker,  # type: ignore[arg-type]
                          settings=CaptureConfig().connection, url="ws://x",
                          backoff=Backoff(1.0, 2.0, random.Random(1)))
    conn.conn_id = 7
    now = time.time_ns()
    writer.marker(mk.Connected(conn_id=7, stream="spot", url="ws://x"), 7)
    for i in range(3):
        writer.write(trade_frame(now + i, 100 + i, conn_id=7))
    writer.write(trade_frame(now + 5, 200, symbol="ETH/USD", conn_id=8))  # another connection
    conn.note_activity()
    btc, eth = conn.table.subs["BTC/USD"], conn.table.subs["ETH/USD"]
    assert btc.messages == 3 and btc.last_data is not None
    assert eth.messages == 0 and eth.last_data is None
    conn.note_activity()  # nothing new: nothing counted twice
    writer.write(trade_frame(now + 9, 103, conn_id=7))
    conn.note_activity()
    assert btc.messages == 4
    writer.close("test")
