"""The capture benchmark's load generator serves a rendered stream that ``recorder run``
captures whole: briefly, at a low rate; correctness only (frames written == frames journaled,
every checksum verified), never speed."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.capture_load import CaptureLoadError, _check, capture_at_rate, render_for
from benchmarks.loadgen import load_stream


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("loadgen") / "stream.pickle"
    summary = render_for(path, frames=12_000, pairs=6, market_rate=20.0)
    assert summary["frames"] >= 12_000
    return path


@pytest.mark.integration
def test_rendered_stream_is_framed_kraken_v2(stream: Path) -> None:
    rendered = load_stream(stream)
    channels = {key[0] for key in rendered.keys}
    assert channels == {"level3", "book", "trade", "ohlc"}
    assert len(rendered.keys) == 6 * 4
    total = 0
    for _, frames in rendered.slices:
        for index, data in frames:
            assert data[0] == 0x81  # FIN + text opcode, unmasked (server to client)
            n = data[1] if data[1] < 126 else int.from_bytes(data[2:4], "big")
            payload = data[2:] if data[1] < 126 else data[4:]
            assert len(payload) == n
            assert rendered.keys[index][0].encode() in payload
            total += 1
    assert total == rendered.frames


@pytest.mark.integration
def test_recorder_journals_every_frame_served(stream: Path, tmp_path: Path) -> None:
    run = capture_at_rate(stream, rate=1_500.0, window=3.0, warmup=1.0, workers=1,
                          startup_timeout=120.0, keep_in=tmp_path)
    # _check passed inside: the journal holds every frame written, checksums all verified
    assert run["journal_frames"] <= run["frames_on_sockets"]
    assert run["unjournaled_connections"] == 1  # the supervisor's discovery
    assert run["stream_written"] > 1_500 * 3
    assert run["verified"] > 0
    assert run["keys"][0] == run["keys"][1] == 24
    assert run["written"] >= 0.9 * run["offered"] > 0
    # the same check fails when one frame more was written than journaled, or on a refusal
    archive = tmp_path / "archive"
    per = run["generator"]["per_connection"]
    conn, (at_stop, final, _) = next((c, v) for c, v in per.items() if v[2])
    short = {**run["generator"], "per_connection": {**per, conn: [final + 1, final + 1, True]}}
    with pytest.raises(CaptureLoadError, match="the generator wrote"):
        _check(archive, short, 0)
    refused = {**run["generator"], "refused": {"late_subscribe": 1}}
    with pytest.raises(CaptureLoadError, match="late_subscribe"):
        _check(archive, refused, 0)
    with pytest.raises(CaptureLoadError, match="checksum failures"):
        _check(archive, run["generator"], 1)
    with pytest.raises(CaptureLoadError, match="no journal"):
        _check(tmp_path / "nowhere", run["generator"], 0)


@pytest.mark.parametrize(("stack", "supervisor", "expected"), [
    ("thread (1): commit_0;Thread.run (threading.py:1);finish_commit (/r/recorder/capture/writer.py:9)",
     False, "commit"),
    ("thread (1): MainThread;_reader (/r/recorder/capture/connection.py:3);begin_commit "
     "(/r/recorder/capture/writer.py:5);flush (/r/recorder/pipeline/x.py:1)", False, "commit"),
    ("thread (1): MainThread;_reader (/r/recorder/capture/connection.py:3);emit "
     "(/r/recorder/capture/service.py:2);append (/r/recorder/archive/journal.py:4)", False, "journal"),
    ("thread (1): MainThread;_reader (/r/recorder/capture/connection.py:3);emit "
     "(/r/recorder/capture/service.py:2);write (/r/recorder/archive/session.py:4);feed "
     "(/r/recorder/pipeline/core.py:7)", False, "pipeline"),
    ("thread (1): MainThread;_reader (/r/recorder/capture/connection.py:3);recv "
     "(/v/site-packages/picows/websockets/asyncio/connection.py:3)", False, "receive"),
    ("thread (1): MainThread;Handle._run (asyncio/events.py:84);FeedConnection._reader "
     "(/r/recorder/capture/connection.py:333)", False, "receive"),
    ("thread (1): MainThread;FeedConnection._reader (/r/recorder/capture/connection.py:3);"
     "ArchiveWriter.begin_commit (/r/recorder/capture/writer.py:5)", False, "commit"),
    ("thread (1): MainThread;_run_once (asyncio/base_events.py:1)", False, "loop"),
    ("thread (1): MainThread;_reader (/r/recorder/capture/connection.py:3)", True, "supervisor"),
])
def test_profile_buckets(stack: str, supervisor: bool, expected: str) -> None:
    from benchmarks.capture_profile import bucket

    assert bucket(stack, supervisor=supervisor) == expected
