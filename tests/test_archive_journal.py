import errno
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.archive.journal import (
    JournalWriteError,
    JournalWriter,
    SegmentInfo,
    list_segments,
    read_segment,
)
from recorder.archive.layout import decode_component, encode_component
from recorder.frames import STREAMS, Frame

T0 = 1_735_689_600_000_000_000


def frames(n):
    for i in range(n):
        yield Frame(recv_ns=T0 + i, conn_id=(2**64 - 1) if i % 2 else i,
                    stream=STREAMS[i % len(STREAMS)], direction="in" if i % 3 else "out",
                    payload=b'{"channel":"heartbeat","i":%d}' % i,
                    meta="GET /0/public/Trades?pair=XBTUSD" if i % 5 == 0 else "")


@pytest.mark.parametrize("offload", [False, True])
def test_round_trip_and_positions(offload, tmp_path):
    w = JournalWriter(tmp_path, host="h/x", fsync_interval_s=0.0, offload=offload)
    src = list(frames(500))
    positions = [w.append(f) for f in src]
    w.close()
    segs = list_segments(tmp_path)
    assert len(segs) == 1 and "/" not in segs[0].split("/", 1)[1]
    info = SegmentInfo()
    got = list(read_segment(tmp_path / segs[0], info=info))
    assert [f for _, f in got] == src
    assert [p.index for p in positions] == list(range(500))
    assert not info.torn and info.records == 500 and info.header["host"] == "h/x"
    assert [i for i, _ in read_segment(tmp_path / segs[0], start=490)] == list(range(490, 500))


@pytest.mark.parametrize("offload", [False, True])
def test_every_truncation_is_tolerated(offload, tmp_path):
    w = JournalWriter(tmp_path, host="h", fsync_interval_s=0.0, offload=offload)
    src = list(frames(300))
    for f in src:
        w.append(f)
        if f.recv_ns % 37 == 0:
            w.flush()
    w.close()
    path = tmp_path / list_segments(tmp_path)[0]
    data = path.read_bytes()
    cut_path = tmp_path / "cut.kjz"
    prev = 0
    for cut in range(0, len(data), max(1, len(data) // 200)):
        torn = data[:cut] + b"\x00" * (cut % 7)  # torn tail, maybe zero-filled
        cut_path.write_bytes(torn)
        info = SegmentInfo()
        got = [f for _, f in read_segment(cut_path, info=info)]
        assert got == src[: len(got)]  # always a clean prefix
        # (the zero fill can recreate the frame's last bytes exactly: then it is complete)
        assert info.torn or (torn.startswith(data) and got == src)
        assert len(got) >= prev or cut % 7  # prefixes only grow with the cut (modulo zeros)
        prev = len(got)


@pytest.mark.parametrize("offload", [False, True])
def test_flush_makes_records_durable_without_close(offload, tmp_path):
    w = JournalWriter(tmp_path, host="h", fsync_interval_s=3600, offload=offload)
    src = list(frames(50))
    for f in src:
        w.append(f)
    w.flush()
    info = SegmentInfo()
    got = [f for _, f in read_segment(tmp_path / w.segment, info=info)]
    assert got == src and info.torn  # readable although the zstd frame is not finished
    w.close()


@pytest.mark.parametrize("offload", [False, True])
def test_enospc_keeps_records_and_resumes(offload, tmp_path):
    full = {"on": False}

    def write(fd, data):
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    w = JournalWriter(tmp_path, host="h", fsync_interval_s=3600, write=write, offload=offload)
    src = list(frames(100))
    for f in src[:40]:
        w.append(f)
    w.flush()
    full["on"] = True
    for f in src[40:70]:
        w.append(f)
    with pytest.raises(JournalWriteError) as exc:
        w.flush()
    assert exc.value.errno == errno.ENOSPC
    full["on"] = False
    for f in src[70:]:
        w.append(f)
    w.close()
    got = []
    for seg in list_segments(tmp_path):
        got += [f for _, f in read_segment(tmp_path / seg)]
    assert got == src  # nothing lost, nothing duplicated, first segment intact


@settings(max_examples=200)
@given(st.text())
def test_component_encoding_is_safe_and_injective(text):
    enc = encode_component(text)
    assert decode_component(enc) == text
    assert enc.isascii() and "/" not in enc and "." not in enc and "\\" not in enc
    assert enc not in ("", ".", "..")


def test_hostile_symbols():
    for s in ("BTC/USD", "../x", "a\"b'c", "ÄÖ/€", "\x00", "..", "/etc/passwd"):
        enc = encode_component(s)
        assert "/" not in enc and ".." not in enc


def _crafted_segment(path, body_chunks):
    """A format-2 segment: a valid header, then ``body_chunks`` (bytes) in one zstd frame."""
    import struct

    import msgspec
    import zstandard

    header = msgspec.json.encode({"format": 2, "host": "evil", "run_id": "x", "created_ns": 0})
    cobj = zstandard.ZstdCompressor(level=1).compressobj()
    out = [cobj.compress(b"KRJ2" + struct.pack("<I", len(header)) + header)]
    for chunk in body_chunks:
        out.append(cobj.compress(chunk))
    out.append(cobj.flush())
    path.write_bytes(b"".join(out))


def test_hostile_segment_cannot_balloon_memory(tmp_path):
    """A ~100 KiB segment expanding to 2 GiB of zeros, and one record claiming a 4 GiB payload
    followed by 1 GiB of zeros: both end as a torn segment with little memory used."""
    import struct
    import tracemalloc

    bomb = tmp_path / "bomb.kjz"
    _crafted_segment(bomb, (bytes(16 * 2**20) for _ in range(128)))
    assert bomb.stat().st_size < 2**20
    huge = tmp_path / "huge.kjz"
    rec = struct.pack("<IHBHI", 0xFFFFFFFF, 0xFFFF, 0, 0, 0xFFFFFFF0) + struct.pack(
        "<qQ", T0, 1)
    _crafted_segment(huge, [rec, *(bytes(16 * 2**20) for _ in range(64))])
    for path in (bomb, huge):
        tracemalloc.start()
        try:
            info = SegmentInfo()
            got = list(read_segment(path, info=info))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert got == [] and info.torn and "bad record" in info.error, info.error
        assert peak < 64 * 2**20, (path.name, peak)


def test_bounded_reader_keeps_data_after_frame_end_torn(tmp_path):
    w = JournalWriter(tmp_path, host="h", fsync_interval_s=0.0)
    src = list(frames(20))
    for f in src:
        w.append(f)
    w.close()
    path = tmp_path / list_segments(tmp_path)[0]
    path.write_bytes(path.read_bytes() + b"junk")
    info = SegmentInfo()
    assert [f for _, f in read_segment(path, info=info)] == src
    assert info.torn and "after the zstd frame end" in info.error


def _trade_ids(root):
    import pyarrow.parquet as pq

    from recorder.archive.store import ArchiveStore

    ids = []
    for f in ArchiveStore(root).files("trades"):
        ids += pq.read_table(f, columns=["trade_id"]).column("trade_id").to_pylist()
    return sorted(ids)


@pytest.mark.parametrize("crash", [False, True])
def test_enospc_every_accepted_frame_reaches_parquet_exactly_once(tmp_path, crash):
    """Disk full while appending (interval flushes and segment creation fail): append keeps
    accepting, the session derives every accepted frame, the error surfaces on the next flush,
    and after space returns each frame is in Parquet exactly once, live and after a crash."""
    from recorder.archive.session import ArchiveSession
    from tests.archive_helpers import session_on_a_disk_that_fills, trade_frame

    root = tmp_path / "a"
    s, full, clock = session_on_a_disk_that_fills(root)
    full["on"] = True
    real_open = os.open

    def no_new_files(path, flags, *a):
        if flags & os.O_CREAT and full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, flags, *a)

    os.open = no_new_files
    try:
        for i in range(50, 120):  # every append flushes (interval 0) and fails: no exception
            s.write(trade_frame(next(clock), 1000 + i))
            if i == 80:
                s.journal.segment_max_bytes = 0  # rolls are due too: segment creation fails
        with pytest.raises(JournalWriteError) as exc:
            s.journal.flush()
        assert exc.value.errno == errno.ENOSPC
        with pytest.raises(JournalWriteError):
            s.deriver.commit()  # a commit never claims records that are not durable
    finally:
        os.open = real_open
    full["on"] = False  # space returns
    s.journal.segment_max_bytes = 256 * 2**20
    for i in range(120, 150):
        s.write(trade_frame(next(clock), 1000 + i))
    if crash:
        s.deriver.commit()
        for i in range(150, 160):
            s.write(trade_frame(next(clock), 1000 + i))
        s.journal.flush()
        s.journal._closed = True  # kill -9: nothing more is written
        s.deriver.release()
        s = ArchiveSession(root, host="t", roll_rows=10**9, roll_seconds=10**9,
                           clock_ns=lambda: next(clock))
        s.start()
        n = 160
    else:
        n = 150
    s.close()
    assert _trade_ids(root) == list(range(1000, 1000 + n))
    # the journal holds each frame exactly once too
    jroot = root / "journal"
    spot = [f for seg in list_segments(jroot) for _, f in read_segment(jroot / seg)
            if f.stream == "spot"]
    assert len(spot) == n


@pytest.mark.parametrize("offload", [False, True])
def test_a_flush_syncs_outside_the_lock_so_appends_go_on(offload, tmp_path, monkeypatch):
    """While one thread's flush waits for fsync (a slow disk), another thread's appends are
    not held up (capture's event loop appends while the commit thread flushes); the frames
    the flush wrote are durable when it returns, and nothing is lost or doubled."""
    import threading

    import recorder.archive.journal as journal

    in_sync = threading.Event()
    release = threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd):
        if threading.current_thread().name == "flusher":
            in_sync.set()
            assert release.wait(30)
        real_fsync(fd)

    monkeypatch.setattr(journal.os, "fsync", slow_fsync)
    w = JournalWriter(tmp_path, host="h", fsync_interval_s=3600, offload=offload)
    src = list(frames(100))
    for f in src[:50]:
        w.append(f)
    flusher = threading.Thread(target=w.flush, name="flusher")
    flusher.start()
    assert in_sync.wait(30)
    appender = threading.Thread(target=lambda: [w.append(f) for f in src[50:]])
    appender.start()
    appender.join(30)
    done_during_sync = not appender.is_alive()
    release.set()
    flusher.join(30)
    assert done_during_sync, "append waited for another thread's fsync"
    w.close()
    got = [f for seg in list_segments(tmp_path) for _, f in read_segment(tmp_path / seg)]
    assert got == src


@pytest.mark.parametrize("offload", [False, True])
def test_a_failed_sync_keeps_every_frame_not_durable(offload, tmp_path, monkeypatch):
    """fsync failing (EIO) after the write: the flush raises, the segment is cut back to its
    durable size and the frames after it are written again into a fresh segment."""
    import recorder.archive.journal as journal

    fail = {"on": False}
    real_fsync = os.fsync

    def fsync(fd):
        if fail["on"]:
            fail["on"] = False
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(journal.os, "fsync", fsync)
    w = JournalWriter(tmp_path, host="h", fsync_interval_s=3600, offload=offload)
    src = list(frames(90))
    for f in src[:30]:
        w.append(f)
    w.flush()
    for f in src[30:60]:
        w.append(f)
    fail["on"] = True
    with pytest.raises(JournalWriteError) as exc:
        w.flush()
    assert exc.value.errno == errno.EIO
    for f in src[60:]:
        w.append(f)
    w.close()
    segs = list_segments(tmp_path)
    got = [f for seg in segs for _, f in read_segment(tmp_path / seg)]
    assert len(segs) == 2 and got == src


def test_offload_appends_only_encode_while_a_flush_compresses_and_writes(tmp_path):
    """``offload``: appends never compress or write (the segment grows only on a flush), a
    flush's compression and write run outside the append lock (appends go on while it
    writes), and frames appended by one thread while another flushes and the segments
    roll are all there once, in order."""
    import threading

    started = threading.Event()
    release = threading.Event()

    def write(fd, data):
        if threading.current_thread().name == "flusher" and not release.is_set():
            started.set()
            assert release.wait(30)
        return os.write(fd, data)

    w = JournalWriter(tmp_path, host="h", fsync_interval_s=0.0, write=write, offload=True)
    src = list(frames(20_000))
    for f in src[:5000]:  # interval 0 and 5,000 records: without offload these would write
        w.append(f)
    path = tmp_path / w.segment
    assert path.stat().st_size == 0  # nothing compressed or written by the appends
    flusher = threading.Thread(target=w.flush, name="flusher")
    flusher.start()
    assert started.wait(30)
    appender = threading.Thread(target=lambda: [w.append(f) for f in src[5000:6000]])
    appender.start()
    appender.join(30)
    done_during_write = not appender.is_alive()
    release.set()
    flusher.join(30)
    assert done_during_write, "append waited for another thread's compression and write"
    assert [f for _, f in read_segment(path)] == src[:5000]  # what that flush covered

    stop = threading.Event()
    errors: list[BaseException] = []

    def flush_often():
        while not stop.is_set():
            try:
                w.flush()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return

    t = threading.Thread(target=flush_often)
    t.start()
    try:
        for k, f in enumerate(src[6000:], 6000):
            if k == 12_000:
                w.segment_max_bytes = 0  # every append now rolls (under the flusher's feet)
            elif k == 12_050:
                w.segment_max_bytes = 256 * 2**20
            w.append(f)
    finally:
        stop.set()
        t.join(30)
    w.close()
    assert not errors
    got = [f for seg in list_segments(tmp_path) for _, f in read_segment(tmp_path / seg)]
    assert got == src
    assert len(list_segments(tmp_path)) > 50
