"""The compiled batch checker (``recorder._core.SpotBooks``) against the pure-Python reference
(``ReferenceSpotChecker``: ``decode_spot`` + ``recorder.book``), and ``recorder verify
--journal`` on a simulated archive, with an injected checksum fault it must find.

Differential: every real v2 book/level3 fixture and a sim stream give identical verdicts,
frame by frame (verdict, channel, kind, reason, symbol, expected, computed, timestamp), and
identical books after the stream. Garbage and mutated real frames only give rejects (or the
same verdicts as the reference) and never crash.
"""

from __future__ import annotations

import decimal
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.archive.journal import JournalWriter, read_segment
from recorder.frames import Frame
from recorder.verify_journal import (
    MISMATCH,
    OK,
    REJECT,
    CoreSpotChecker,
    FrameVerdicts,
    ReferenceSpotChecker,
    journal_segments,
    verify_journal,
)
from tests.archive_helpers import make_sim_record

_EXACT = msgspec.json.Decoder(float_hook=decimal.Decimal)
_ENCODE = msgspec.json.Encoder(decimal_format="number")


def _exact_frame(message: Any) -> bytes:
    """Re-encode a decoded message with every number token exactly as written."""
    return _ENCODE.encode(message)


def _rows(v: FrameVerdicts) -> list[tuple[Any, ...]]:
    return [v.row(i) for i in range(len(v))]


def _both(frames: list[bytes], precisions: dict[str, tuple[int, int]] | None = None,
          batch: int = 7) -> tuple[list[tuple[Any, ...]], CoreSpotChecker, ReferenceSpotChecker]:
    """Feed ``frames`` to both checkers (the core in batches of ``batch``); assert equal rows."""
    core, ref = CoreSpotChecker(), ReferenceSpotChecker()
    for symbol, (pp, qp) in (precisions or {}).items():
        core.set_precision(symbol, pp, qp)
        ref.set_precision(symbol, pp, qp)
    got: list[tuple[Any, ...]] = []
    for start in range(0, len(frames), batch):
        got += _rows(core.feed(frames[start:start + batch]))
    want = _rows(ref.feed(frames))
    assert len(got) == len(want) == len(frames)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, (i, frames[i][:200])
    return got, core, ref


@pytest.mark.fixtures
def test_real_v2_capture_510_checksums(fixture_file: Any) -> None:
    doc = _EXACT.decode(Path(fixture_file("python-kraken-sdk/orderbook-v2.json")).read_bytes())
    frames = [_exact_frame(doc["init"])] + [_exact_frame(m) for m in doc["updates"]]
    # precisions inferred from the snapshot, then given explicitly: 510/510 both ways
    for precisions in (None, {"BTC/USD": (1, 8)}):
        rows, core, ref = _both(frames, precisions)
        assert [r[0] for r in rows] == ["ok"] * 510
        assert core.l2_levels("BTC/USD") == ref.l2_levels("BTC/USD")
    # the same frames as the benchmark renders them (floats re-serialised: trimmed tokens)
    trimmed = [json.dumps(json.loads(f), separators=(",", ":")).encode() for f in frames]
    rows, _, _ = _both(trimmed, {"BTC/USD": (1, 8)}, batch=100)
    assert [r[0] for r in rows] == ["ok"] * 510


@pytest.mark.fixtures
def test_level3_vectors(fixture_file: Any) -> None:
    lines = [line for line in Path(fixture_file("gocryptotrader/wsLevel3.json")).read_bytes()
             .splitlines() if line.strip()]
    rows, core, ref = _both(lines)
    assert [(r[0], r[6]) for r in rows] == [("ok", 1063832831), ("ok", 4214623937),
                                            ("ok", 1052444130), ("ok", 800786314)]
    assert core.l3_orders("BTC/USD") == ref.l3_orders("BTC/USD")


@pytest.mark.fixtures
def test_every_other_real_v2_frame(fixture_file: Any) -> None:
    """nautilus_trader's captured frames (book, level3, acks, pongs, trades, futures) and
    crypto-msg-parser's raw Kraken messages: same verdicts, whatever they are."""
    base = Path(fixture_file("nautilus_trader/ws_book_snapshot.json")).parent
    frames = [p.read_bytes() for p in sorted(base.glob("ws_*.json"))]
    rows, _, _ = _both(frames)
    assert {r[0] for r in rows} >= {"skipped", "reject"}
    lines = Path(fixture_file("crypto-msg-parser/kraken_raw_messages_from_tests.jsonl")) \
        .read_bytes().splitlines()
    frames = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        raw = record.get("raw") if isinstance(record, dict) else None
        frames.append(raw.encode() if isinstance(raw, str) else line)
    _both(frames)


def _sim_frames(tmp_path: Path, messages: int, pairs: int, seed: int) -> list[bytes]:
    """The Spot frames received in a `recorder sim --record` stream (through ingest's journal)."""
    from recorder.ingest import ingest

    record = make_sim_record(tmp_path / "s.zst", messages=messages, pairs=pairs, seed=seed)
    ingest([record], tmp_path / "a")
    frames = []
    for seg in journal_segments(tmp_path / "a"):
        frames += [f.payload for _, f in read_segment(seg)
                   if f.direction == "in" and f.stream in ("spot", "l3")]
    return frames


def test_sim_stream_same_verdicts_and_books(tmp_path: Path) -> None:
    frames = _sim_frames(tmp_path, messages=4000, pairs=3, seed=11)
    rows, core, ref = _both(frames, batch=500)
    verdicts = [r[0] for r in rows]
    assert verdicts.count("ok") > 1000
    assert {r[1] for r in rows} >= {"book", "level3", "instrument", "ack"}
    symbols = {r[4] for r in rows if r[4] is not None}
    for symbol in symbols:
        assert core.l2_levels(symbol) == ref.l2_levels(symbol)
        assert core.l3_orders(symbol) == ref.l3_orders(symbol)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=20))
def test_random_bytes_are_rejected(frames: list[bytes]) -> None:
    v = CoreSpotChecker().feed(frames)
    for i in range(len(v)):
        row = v.row(i)
        assert row[0] in ("reject", "skipped"), row
        if row[0] == "reject":
            assert row[3] and v.details[i]


_REAL_SNAPSHOT = (b'{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":'
                  b'[{"price":29430.2,"qty":0.18967538},{"price":29429.6,"qty":0.00011621}],'
                  b'"asks":[{"price":29430.3,"qty":8.25215653},{"price":29430.4,"qty":'
                  b'2.55637606}],"checksum":2785033588,"timestamp":"2023-07-30T15:29:58.343415Z"}]}')
_REAL_L3 = (b'{"channel":"level3","type":"update","data":[{"checksum":2841398499,"symbol":'
            b'"MATIC/USD","bids":[],"asks":[{"event":"delete","order_id":"OOIATY-6EIWY-ACVIUN",'
            b'"limit_price":0.5636,"order_qty":302.89736033,"timestamp":'
            b'"2023-10-06T18:21:00.097010033Z"}]}]}')


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([_REAL_SNAPSHOT, _REAL_L3]),
       st.lists(st.tuples(st.integers(0, 400), st.binary(min_size=0, max_size=3)),
                min_size=1, max_size=4))
def test_mutated_real_frames_never_crash(frame: bytes, edits: list[tuple[int, bytes]]) -> None:
    """Byte splices of real frames: the core gives a verdict for each; where the reference
    rejects a frame as not JSON / not an object / unknown, so does the core, for the same
    reason; anything applied is verdicted like the reference."""
    mutated = bytearray(frame)
    for at, new in edits:
        at = min(at, len(mutated))
        mutated[at:at + len(new)] = new
    frames = [frame, bytes(mutated)] if frame is _REAL_L3 else [bytes(mutated)]
    core = CoreSpotChecker().feed(frames).row(len(frames) - 1)
    ref = ReferenceSpotChecker().feed(frames).row(len(frames) - 1)
    assert core[0] in ("ok", "mismatch", "reject", "skipped", "unchecked", "crossed")
    if ref[3] in ("not_utf8", "malformed_json", "unknown_message", "too_large"):
        assert core[:4] == ref[:4]
    if core[0] in ("ok", "mismatch", "unchecked") and ref[0] in ("ok", "mismatch", "unchecked"):
        assert core == ref


def test_too_large_and_bad_arguments() -> None:
    from recorder import _core
    from recorder.protocol.errors import BookError, ColumnError

    v = CoreSpotChecker(max_frame_bytes=10).feed([b'{"channel":"heartbeat"}'])
    assert v.row(0)[:4] == ("reject", "", 2, "too_large")
    books = _core.SpotBooks()
    with pytest.raises(ColumnError):
        books.feed([b"{}", "not bytes"])
    with pytest.raises(ColumnError):
        books.feed_buffer(b"abc", (5).to_bytes(8, "little") * 2)
    with pytest.raises(BookError):
        books.set_precision("A/B", 19, 1)
    buf = b'{"channel":"heartbeat"}{"channel":"pong"}'
    offsets = b"".join(n.to_bytes(8, "little") for n in (0, 23, len(buf)))
    cols = books.feed_buffer(buf, offsets)
    assert cols["verdict"] == bytes([3, 2])


# ------------------------------------------------------------------ recorder verify --journal


@pytest.fixture(scope="module")
def sim_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from recorder.ingest import ingest

    base = tmp_path_factory.mktemp("journal-verify")
    record = make_sim_record(base / "s.zst", messages=3000, pairs=2, seed=5)
    ingest([record], base / "a")
    return base / "a"


def _run(*args: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recorder", "verify", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_journal_verify_of_a_clean_archive(sim_archive: Path) -> None:
    from recorder.verify import verify_archive

    report = verify_journal([sim_archive])
    assert report["frames_checked"] > 500
    assert report["verified"] == report["frames_checked"]
    assert report["mismatches"] == report["crossed"] == 0
    assert report["per"] and all(p["mismatches"] == 0 for p in report["per"])
    # the same messages verify from Parquet
    assert verify_archive(sim_archive)["verified"] == report["verified"]
    assert verify_journal([sim_archive], engine="python") == report
    r = _run("--journal", sim_archive)
    assert r.returncode == 0, r.stderr
    assert "mismatches 0" in r.stdout and "Traceback" not in r.stderr
    as_json = json.loads(_run("--journal", sim_archive, "--json").stdout)
    assert as_json["verified"] == report["verified"]


def test_journal_verify_finds_an_injected_fault(sim_archive: Path, tmp_path: Path) -> None:
    """Rewrite the journal with one book update's checksum changed: found, with its time."""
    frames: list[Frame] = []
    for seg in journal_segments(sim_archive):
        frames += [f for _, f in read_segment(seg)]
    target = next(i for i, f in enumerate(frames)
                  if f.stream == "spot" and b'"channel":"book","type":"update"' in f.payload
                  and i > len(frames) // 2)
    frame = frames[target]
    message = json.loads(frame.payload)
    message["data"][0]["checksum"] = (message["data"][0]["checksum"] + 1) % 2**32
    frames[target] = Frame(recv_ns=frame.recv_ns, conn_id=frame.conn_id, stream=frame.stream,
                           direction=frame.direction, payload=json.dumps(message).encode(),
                           meta=frame.meta)
    journal = tmp_path / "journal"
    with JournalWriter(journal, host="test", run_id="fault") as writer:
        writer.append_many(frames)
    for engine in ("core", "python"):
        report = verify_journal([journal], engine=engine)  # type: ignore[arg-type]
        assert report["mismatches"] == 1, engine
        (failure,) = report["failures"]
        assert failure["recv_ns"] == frame.recv_ns
        assert failure["symbol"] == message["data"][0]["symbol"]
        assert failure["expected"] == message["data"][0]["checksum"]
        assert failure["computed"] != failure["expected"]
        # the updates after it wait for the next snapshot: rejects, not silent passes
        assert report["rejects_by_reason"].get("update_before_snapshot", 0) >= 0
    r = _run("--journal", journal)
    assert r.returncode == 1
    assert "mismatches 1" in r.stdout and "FAIL mismatch book" in r.stdout


def test_journal_verify_usage_errors(tmp_path: Path) -> None:
    for args in ([], ["--journal", tmp_path], ["--journal", tmp_path / "nope"],
                 ["--journal", tmp_path, "--archive", tmp_path]):
        r = _run(*args)
        assert r.returncode == 2, args
        assert "Traceback" not in r.stderr and r.stderr.strip().splitlines()[-1].startswith(
            "Error:")
