"""Journal format 2 (compact headers) round trips every field; format 1 segments stay readable."""

import os

import zstandard

from recorder.archive.journal import (
    JournalWriter,
    SegmentInfo,
    encode_record,
    list_segments,
    read_segment,
)
from recorder.frames import Frame


def _frames() -> list[Frame]:
    conns = [0, 1, 2**64 - 1, 2**63 + 5]
    out = []
    t = 1_735_689_600_000_000_000
    for i in range(300):
        # forward steps, a step back in time, a huge jump, equal times
        t += [1, 0, 7_000_000_000, -5, 123_456][i % 5]
        out.append(Frame(recv_ns=t, conn_id=conns[i % 4], stream=["spot", "l3", "rest",
                                                                    "control"][i % 4],
                         direction="out" if i % 7 == 0 else "in",
                         payload=b'{"i":%d}' % i, meta="GET /0/public/Depth?pair=X" if i % 4 == 2
                         else ""))
    out.append(Frame(recv_ns=-3, conn_id=9, stream="futures", direction="in", payload=b""))
    return out


def test_format2_round_trips_every_field(tmp_path):
    frames = _frames()
    w = JournalWriter(tmp_path, host="h", fsync_interval_s=3600)
    for f in frames:
        w.append(f)
    w.close()
    (seg,) = list_segments(tmp_path)
    info = SegmentInfo()
    got = [f for _, f in read_segment(tmp_path / seg, info=info)]
    assert got == frames and not info.torn and info.header["format"] == 2
    assert [i for i, _ in read_segment(tmp_path / seg, start=250)] == list(range(250, 301))


def test_many_connections_overflow_the_table(tmp_path):
    frames = [Frame(recv_ns=i, conn_id=i * 7919, stream="spot", direction="in", payload=b"x")
              for i in range(70_000)]
    frames += frames[:10]
    w = JournalWriter(tmp_path, host="h", fsync_interval_s=3600)
    for f in frames:
        w.append(f)
    w.close()
    (seg,) = list_segments(tmp_path)
    assert [f for _, f in read_segment(tmp_path / seg)] == frames


def test_format1_segments_are_still_read(tmp_path):
    frames = _frames()[:-1]
    header = b'{"format":1,"host":"old","run_id":"r","created_ns":1}'
    raw = b"KRJ1" + len(header).to_bytes(4, "little") + header
    raw += b"".join(encode_record(f) for f in frames)
    (tmp_path / "old.kjz").write_bytes(zstandard.ZstdCompressor().compress(raw))
    info = SegmentInfo()
    got = [f for _, f in read_segment(tmp_path / "old.kjz", info=info)]
    assert got == [f for f in frames] and not info.torn


def test_format2_torn_tail_stops_at_last_complete_record(tmp_path):
    frames = _frames()
    w = JournalWriter(tmp_path, host="h", fsync_interval_s=3600)
    for f in frames:
        w.append(f)
    w.flush()
    (seg,) = list_segments(tmp_path)
    data = (tmp_path / seg).read_bytes()
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    for cut in (len(raw) - 1, len(raw) - 9, len(raw) // 2):
        p = tmp_path / f"cut{cut}.kjz"
        p.write_bytes(zstandard.ZstdCompressor().compress(raw[:cut]))
        info = SegmentInfo()
        got = [f for _, f in read_segment(p, info=info)]
        assert info.torn and got == frames[: len(got)] and len(got) < len(frames)
    w.close()
    os.sync()
