"""The benchmark report writer keeps figures from suites that were not re-run; the standard
workloads and the peers process what they claim to."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.harness import Figure, write_report


def test_partial_runs_merge_rows(tmp_path: Path) -> None:
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("# Benchmarks\n\nintro stays\n")
    write_report(report, [Figure("a", 10, "msgs/s", ">= 5"), Figure("b", 1, "ms")], "first")
    write_report(report, [Figure("a", 3, "msgs/s", ">= 5")], "second")
    text = report.read_text()
    assert "intro stays" in text and "`second`" in text
    rows = [line for line in text.splitlines() if line.startswith(("| a ", "| b "))]
    assert len(rows) == 2
    assert "| a | 3 msgs/s | >= 5 | SHORT |" in rows[0]
    assert rows[1].startswith("| b | 1 ms |")


def test_verdicts_and_small_numbers(tmp_path: Path) -> None:
    assert Figure("x", 40, "ms", "<= 50").verdict() == "met"
    assert Figure("x", 60, "ms", "<= 50").verdict() == "SHORT"
    assert Figure("x", 9, "B", "").verdict() == ""
    report = tmp_path / "B.md"
    write_report(report, [Figure("t", 0.125, "s")], "c")
    assert "| t | 0.125 s |" in report.read_text()


# ----------------------------------------------------------------- workloads and peers


def test_rate_profile_ignores_the_subscription_phase_and_finds_the_burst() -> None:
    from benchmarks.workloads import RecordedWorkload

    ack = b'{"method":"subscribe","success":true}'
    frames = (ack,) * 50 + (b"{}",) * 200
    # 50 acks in one instant, then 100 frames spread over 10 s and 100 in one 100 ms window
    times = [0] * 50 + [10**9 + i * 10**8 for i in range(100)] + [5 * 10**9 + i for i in range(100)]
    workload = RecordedWorkload("w", "cmd", frames, tuple(sorted(times)), 1)
    assert workload.steady_start() == 50
    peak, mean = workload.rate_profile()
    assert peak == pytest.approx(1010.0)  # 101 frames in the busiest 100 ms window
    assert mean == pytest.approx(200 / 9.9, rel=1e-3)


@pytest.fixture(scope="module")
def small_standard():
    from benchmarks.workloads import recorded_workload

    return recorded_workload("standard", 9_000)


def test_standard_workload_is_the_full_universe_and_replays_verified(small_standard) -> None:
    from benchmarks.core import _replay_universe

    assert small_standard.pairs >= 600
    assert "--seed" in small_standard.command and "--record" in small_standard.command
    assert _replay_universe(small_standard) == len(small_standard.frames)


def test_universe_replay_fails_on_a_wrong_checksum(small_standard) -> None:
    from benchmarks.core import ChecksumFailure, _replay_universe

    frames = list(small_standard.frames)
    i = next(i for i, f in enumerate(frames)
             if f.startswith(b'{"channel":"book"') and b'"type":"update"' in f)
    message = json.loads(frames[i])
    message["data"][0]["checksum"] = (message["data"][0]["checksum"] + 1) % 2**32
    frames[i] = json.dumps(message, separators=(",", ":")).encode()
    with pytest.raises(ChecksumFailure):
        _replay_universe(replace(small_standard, frames=tuple(frames)))


def _v1_sim_stream():
    from benchmarks.workloads import sim_frames, to_v1_book

    return to_v1_book(sim_frames("book", 10, 600))


def test_cryptofeed_peer_processes_every_frame_to_our_final_book() -> None:
    pytest.importorskip("cryptofeed", reason="cryptofeed is a bench extra")
    from benchmarks.peers import CryptofeedBook

    v1 = _v1_sim_stream()
    assert len(v1.frames) == 601 and v1.one_sided > 500
    peer = CryptofeedBook(v1.pair, v1.depth)
    assert peer.run(v1.frames) == 601
    assert peer.book_updates == 601
    assert peer.final_checksum == v1.final_checksum


def test_cryptofeed_peer_really_validates_checksums() -> None:
    pytest.importorskip("cryptofeed", reason="cryptofeed is a bench extra")
    from cryptofeed.exceptions import BadChecksum

    from benchmarks.peers import CryptofeedBook

    v1 = _v1_sim_stream()
    frames = list(v1.frames)
    i = next(i for i, f in enumerate(frames) if i > 0 and f.count("{") == 1)
    message = json.loads(frames[i])
    message[1]["c"] = str((int(message[1]["c"]) + 1) % 2**32)
    frames[i] = json.dumps(message)
    with pytest.raises(BadChecksum):
        CryptofeedBook(v1.pair, v1.depth).run(frames)


@pytest.mark.fixtures
def test_cryptofeed_peer_on_a_real_v1_capture() -> None:
    """Our reading of cryptofeed's input is Kraken's real v1 wire: it takes a real capture."""
    pytest.importorskip("cryptofeed", reason="cryptofeed is a bench extra")
    from benchmarks.peers import CryptofeedBook
    from recorder.testing import fixtures_dir

    path = fixtures_dir() / "python-kraken-sdk" / "orderbook-v1.json"
    if not path.is_file():
        pytest.skip(f"fixture absent: {path}")
    capture = json.loads(path.read_text())
    book = [m for m in [*capture["init"], *capture["updates"]] if isinstance(m, list)]
    peer = CryptofeedBook("XBT/USD", 10)
    peer.run([json.dumps(m) for m in book])
    assert peer.book_updates == len(book) == 980
    assert peer.final_checksum == int(book[-1][-3]["c"])


def test_measure_rate_repeats_a_small_workload_for_min_seconds() -> None:
    from benchmarks.harness import measure_rate

    calls = []

    def run_once() -> int:
        calls.append(1)
        return 10

    measure_rate(run_once, repeats=2, warmup=0)
    assert len(calls) == 2  # one call per repetition by default
    calls.clear()
    rate = measure_rate(run_once, repeats=2, warmup=0, min_seconds=0.02)
    assert len(calls) > 4 and rate > 0  # each repetition ran for at least 20 ms
