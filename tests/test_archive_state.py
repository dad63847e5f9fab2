"""Explicit pipeline state: exact resume across a state round trip; hostile state files."""

import os
import pickle
from pathlib import Path

import msgspec
import pytest
import zstandard

from recorder.archive.session import Deriver
from recorder.archive.store import ArchiveStore, ArchiveFormatError
from recorder.ingest import read_input_frames
from recorder.pipeline import ListSink, Pipeline
from recorder.pipeline.state import (
    STATE_VERSION,
    PipelineState,
    StateError,
    decode_state,
    encode_state,
)
from tests.archive_helpers import make_sim_record, trade_frame


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    path = make_sim_record(tmp_path_factory.mktemp("sim") / "s.zst", messages=4000, pairs=3,
                           seed=3)
    data = zstandard.ZstdDecompressor().stream_reader(path.read_bytes()).read()
    return list(read_input_frames(data))


def _run(frames, split: int | None) -> dict:
    sink = ListSink()
    p = Pipeline(sink, checkpoint_interval_ns=5_000_000_000, batch_rows=500)
    for i, f in enumerate(frames):
        if i == split:
            p.flush()
            blob = encode_state(p.to_state())
            p = Pipeline.from_state(decode_state(blob), sink)
        p.feed(f)
    p.close("open")
    return sink.data


def test_state_round_trip_resumes_exactly(frames):
    straight = _run(frames, None)
    assert straight["level3"]["price"] and straight["book"]["price"]
    for split in (1, len(frames) // 3, 2 * len(frames) // 3):
        assert _run(frames, split) == straight


def test_state_contains_books_and_trackers(frames):
    p = Pipeline(ListSink())
    for f in frames[: len(frames) // 2]:
        p.feed(f)
    p.flush()
    st = p.to_state()
    channels = {e.channel for e in st.epochs}
    assert {"book", "level3", "trade"} <= channels
    assert all(e.l2 is not None for e in st.epochs if e.channel == "book")
    assert all(e.l3 is not None for e in st.epochs if e.channel == "level3")
    assert any(e.last_id is not None for e in st.epochs if e.channel == "trade")
    assert st.conns and st.version == STATE_VERSION
    assert st.checksums_ok > 0 and st.checksums_failed == 0
    assert Pipeline.from_state(st, ListSink()).checksums_ok == p.checksums_ok


def _archive_with_state(tmp_path: Path) -> Path:
    root = tmp_path / "a"
    d = Deriver(root)
    d.feed(trade_frame(1_735_689_600_000_000_000, 1), _pos("x.kjz", 0))
    d.commit()
    d.release()  # the Deriver is in a reference cycle: do not leave the lock to the GC
    return root


def _pos(seg, i):
    from recorder.archive.journal import JournalPosition

    return JournalPosition(seg, i)


class _Evil:
    """Unpickling this runs ``open(marker, 'w')`` (a stand-in for arbitrary code)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_state_file_is_rejected_without_executing(tmp_path):
    root = _archive_with_state(tmp_path)
    archive = ArchiveStore(root)
    rel = archive.state.pipeline
    assert rel.endswith(".state")
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Evil(str(marker)))
    # 1. pickle bytes in place of the state file
    (root / rel).write_bytes(evil)
    with pytest.raises(StateError):
        Deriver(root)
    assert not marker.exists()
    # 2. a manifest pointing at a pickle (the old format) is refused, never unpickled
    (root / "_state" / "pipeline-00000001.pkl").write_bytes(evil)
    man = msgspec.json.decode((root / "_manifest" / "current.json").read_bytes())
    man["pipeline"] = "_state/pipeline-00000001.pkl"
    (root / "_manifest" / "current.json").write_bytes(msgspec.json.encode(man))
    with pytest.raises(ArchiveFormatError, match="pickle"):
        Deriver(root)
    # 3. a state path escaping _state/ is refused
    man["pipeline"] = "../../etc/passwd"
    (root / "_manifest" / "current.json").write_bytes(msgspec.json.encode(man))
    with pytest.raises(ArchiveFormatError, match="invalid state path"):
        Deriver(root)
    assert not marker.exists()


def test_newer_or_foreign_state_versions_are_clear_errors(tmp_path):
    good = PipelineState(checkpoint_interval_ns=1, batch_rows=1)
    assert decode_state(encode_state(good)) == good
    newer = msgspec.msgpack.encode({"kind": "recorder.pipeline.state",
                                    "version": STATE_VERSION + 1})
    with pytest.raises(StateError, match="newer recorder"):
        decode_state(newer)
    with pytest.raises(StateError, match="kind"):
        decode_state(msgspec.msgpack.encode({"kind": "other", "version": 1}))
    bad = msgspec.msgpack.encode({"kind": "recorder.pipeline.state", "version": 1,
                                  "checkpoint_interval_ns": "x", "batch_rows": 1})
    with pytest.raises(StateError, match="malformed"):
        decode_state(bad)
    # a book checkpoint a book could not have produced
    st = PipelineState(checkpoint_interval_ns=1, batch_rows=1)
    from recorder.book.checkpoint import L2Checkpoint
    from recorder.pipeline.state import EpochState

    st.epochs = [EpochState(epoch=1, stream="spot", channel="book", symbol="X/Y", conn_id=0,
                            start_ns=1, end_ns=1, start_reason="snapshot",
                            last_checkpoint_ns=1,
                            l2=L2Checkpoint(symbol="X/Y", depth=10, price_precision=1,
                                            qty_precision=1, bids=[("1.0", "1.0"),
                                                                   ("2.0", "1.0")], asks=[]))]
    with pytest.raises(StateError, match="invalid book checkpoint"):
        Pipeline.from_state(decode_state(encode_state(st)), ListSink())
    assert not os.path.exists(tmp_path / "pwned")
