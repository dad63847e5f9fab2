"""``recorder ingest``'s compiled-core engine (issue #15) against the pure-Python reference.

The core frames a ``recorder sim --record`` input in bulk (``_core.sim_record_frames``) and
encodes the journal's records per run (``_core.journal_encode_v2``); ``engine="python"`` is
the reference. The frames, the journal records and the archive (every dataset as row sets,
both ways) must be the same, on sim streams with faults, on hostile lines and on the real
captures ingest accepts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import msgspec
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder import _core
from recorder.archive.journal import JournalWriter, list_segments, read_segment
from recorder.archive.store import ArchiveStore
from recorder.frames import Frame
from recorder.ingest import IngestError, _read_bytes, ingest, read_input_frames

_FAULTS = ("drop:channel=book,rate=0.03;duplicate:channel=trade,rate=0.3;"
           "checksum:channel=book,rate=0.01;number:channel=level3,rate=0.01;"
           "malformed:rate=0.005;reorder:channel=level3,rate=0.01;close:at=3")


@pytest.fixture(scope="module")
def faulty_record(tmp_path_factory) -> Path:
    import subprocess
    import sys

    path = tmp_path_factory.mktemp("sim") / "faulty.zst"
    subprocess.run([sys.executable, "-m", "recorder", "sim", "--record", str(path),
                    "--messages", "6000", "--pairs", "4", "--seed", "3", "--faults", _FAULTS],
                   check=True, capture_output=True)
    return path


def _frames(data: bytes, engine: str, start_ns: int | None = None) -> list[Frame]:
    return list(read_input_frames(data, start_ns=start_ns, engine=engine))


# ------------------------------------------------------------------ framing


def test_faulty_sim_record_frames_equal(faulty_record):
    data = _read_bytes(faulty_record)
    core, ref = _frames(data, "core"), _frames(data, "python")
    assert core == ref
    assert len(ref) > 5000
    assert any(f.stream == "control" for f in ref)  # the close event's marker
    assert {f.stream for f in ref} >= {"spot", "l3", "control"}


_HOSTILE_LINES = [
    b'{"recv_ns":5,"conn":2,"ep":"spot","frame":"{\\"a\\":1}"}',
    b'{"recv_ns":6,"conn":2,"ep":"l3","frame":"x","extra":[1,{"y":2}]}',  # unknown key
    b'{"recv_ns":7,"recv_ns":8,"frame":"dup"}',
    b'{"recv_ns":7.0,"frame":"float clock"}',
    b'{"recv_ns":1e3,"frame":"exp clock"}',
    b'{"recv_ns":"9","frame":"string clock"}',
    b'{"recv_ns":18446744073709551615,"conn":1,"frame":"u64 clock"}',
    b'{"recv_ns":18446744073709551616,"frame":"too big"}',
    b'{"recv_ns":1,"conn":-3,"frame":"negative conn"}',
    b'{"recv_ns":1,"conn":18446744073709551615,"frame":"u64 conn"}',
    b'{"recv_ns":1,"frame":"\\ud800 lone surrogate"}',
    b'{"recv_ns":1,"frame":"\\udc80\\ud83d\\ude00 pair after a lone low"}',
    b'{"recv_ns":1,"frame":"\\u00e9\\u0000\\/\\b\\f\\n\\r\\t"}',
    b'{"recv_ns":1,"frame":"raw \t tab"}',
    b'{"recv_ns":1,"frame":"bad utf8 \xff"}',
    "{\"recv_ns\":1,\"frame\":\"caf\u00e9 \u20ac\"}".encode(),
    b'  {  "frame" : "spaced" , "recv_ns" : 3 , "ep" : "futures" }  \r',
    b'{"recv_ns":4,"conn":9,"ep":"nope","frame":"unknown endpoint"}',
    b'{"recv_ns":4,"conn":9,"ep":"spot","event":"close"}',
    b'{"recv_ns":4,"conn":9,"event":"open"}',
    b'{"recv_ns":4}',
    b'{"frame":"no clock"}',
    b'{"recv_ns":1,"frame":"trailing"} junk',
    b'{"recv_ns":1,"frame":"comma",}',
    b'[1,2,3]',
    b'not json at all',
    b'',
    b'   ',
    b'\x0b\x0c',
    b'{"recv_ns":1,"frame":"unterminated',
    b'{"recv_ns":1,"frame":"\\x bad escape"}',
    b'{"recv_ns":01,"frame":"leading zero"}',
    b'{"recv_ns":-0,"frame":"minus zero"}',
    b'{"recv_ns":1,"conn":true,"frame":"bool conn"}',
    b'{"recv_ns":1,"conn":null,"frame":"null conn"}',
    b'{"recv_ns":1,"frame":null}',
]


def test_hostile_lines_frame_as_the_reference_does():
    data = b'{"recv_ns":1,"frame":"first"}\n' + b"\n".join(_HOSTILE_LINES) + b"\n"
    for start_ns in (None, 77):
        assert _frames(data, "core", start_ns) == _frames(data, "python", start_ns)
    # every hostile line alone, too (after a plain first line: the sim-record detection)
    for line in _HOSTILE_LINES:
        one = b'{"recv_ns":1,"frame":"first"}\n' + line
        assert _frames(one, "core") == _frames(one, "python"), line


_PIECES = st.sampled_from([
    b'{', b'}', b'"recv_ns"', b'"conn"', b'"ep"', b'"frame"', b'"event"', b':', b',', b' ',
    b'1', b'-', b'0', b'7', b'.', b'e', b'18446744073709551615', b'"spot"', b'"l3"', b'"x"',
    b'"\\u00e9"', b'"\\ud800"', b'"\\"q\\""', b'"\\n"', b'\\', b'"', b'\xff', b'\t', b'\r',
    b'null', b'true', b'[', b']', b'"close"', b'\n',
])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_PIECES, max_size=14).map(b"".join), max_size=8))
def test_fuzzed_lines_frame_as_the_reference_does(lines):
    data = b'{"recv_ns":1,"frame":"a"}\n' + b"\n".join(lines)
    assert _frames(data, "core") == _frames(data, "python")


@settings(max_examples=200, deadline=None)
@given(recv=st.integers(-2**63, 2**64 - 1), conn=st.integers(-2**63, 2**64 - 1),
       ep=st.sampled_from(["spot", "l3", "futures", "other"]), text=st.text(max_size=40))
def test_encoded_lines_frame_as_the_reference_does(recv, conn, ep, text):
    line = msgspec.json.encode({"recv_ns": recv, "conn": conn, "ep": ep, "frame": text})
    data = line + b"\n" + line
    assert _frames(data, "core") == _frames(data, "python")


def test_core_framing_is_bulk_and_never_raises_on_garbage():
    first = b'{"recv_ns":1,"conn":2,"ep":"l3","frame":"p"}'
    recv, conn, streams, payloads, others = _core.sim_record_frames(
        first + b'\n\xff\xfe\n\n{"recv_ns":3,"frame":"q"}')
    assert (recv, conn, bytes(streams), payloads) == ([1, 3], [2, 0], b"\x01\x00", [b"p", b"q"])
    assert others == [(1, len(first) + 1, len(first) + 3)]  # the garbage line, for the reference


def test_unknown_engine_is_refused():
    with pytest.raises(IngestError):
        _frames(b'{"recv_ns":1,"frame":"a"}', "fast")
    with pytest.raises(ValueError):
        JournalWriter("/nonexistent-never-created", host="t", engine="fast")


# ------------------------------------------------------------------ journal


def _records(root: Path, seg: str) -> bytes:
    """A segment's decompressed records (the header, which holds a creation clock, cut)."""
    raw = zstandard.ZstdDecompressor().stream_reader(
        (root / seg).read_bytes(), read_across_frames=True).read()
    hlen = int.from_bytes(raw[4:8], "little")
    return raw[8 + hlen:]


def _unusual_frames() -> list[Frame]:
    base = 1_735_689_600_000_000_000
    out = []
    for i in range(400):
        out.append(Frame(recv_ns=base + i * 1000, conn_id=i % 3, stream="spot", direction="in",
                         payload=b'{"channel":"heartbeat"}'))
    out += [
        Frame(recv_ns=base - 5, conn_id=1, stream="l3", direction="in", payload=b"back in time"),
        Frame(recv_ns=base + 2**40, conn_id=1, stream="rest", direction="out", payload=b"",
              meta="GET /0/public/Depth?pair=XBTUSD"),
        Frame(recv_ns=base, conn_id=-3, stream="control", direction="in", payload=b"{}"),
        Frame(recv_ns=base, conn_id=2**64 - 1, stream="futures", direction="out",
              payload=b"x" * 70_000),
        Frame(recv_ns=base, conn_id=5, stream="spot", direction="in", payload=b"m",
              meta="\udc80 surrogate"),
        Frame(recv_ns=base, conn_id=5, stream="spot", direction="in", payload=b"m",
              meta="y" * 70_000),
        Frame(recv_ns=-1, conn_id=6, stream="spot_v1", direction="in", payload=b"neg clock"),
        Frame(recv_ns=base, conn_id=7, stream="spot", direction="in",
              payload=bytearray(b"bytearray")),  # type: ignore[arg-type]
    ]
    return out


@pytest.mark.parametrize("max_bytes,interval", [(256 * 2**20, 3600.0), (20_000, 3600.0),
                                                (20_000, 0.0)])
def test_core_journal_records_equal_the_reference(tmp_path, faulty_record, max_bytes,
                                                  interval):
    """Same runs, same segments, byte-identical records (rolls by size and flushes by
    interval included; unusual frames go through the reference encoder)."""
    frames = _frames(_read_bytes(faulty_record), "python")[:3000] + _unusual_frames()
    out = {}
    for engine in ("python", "core"):
        root = tmp_path / engine
        w = JournalWriter(root, host="t", run_id="r", segment_max_bytes=max_bytes,
                          fsync_interval_s=interval, engine=engine,
                          clock_ns=lambda: 1_735_689_600_000_000_000)
        runs = w.append_many(frames)
        w.close()
        out[engine] = (runs, [_records(root, s) for s in list_segments(root)],
                       [f for s in list_segments(root) for _, f in read_segment(root / s)])
    assert out["core"] == out["python"]
    runs, _, back = out["core"]
    assert len(back) == len(frames)
    if max_bytes < 10**6:
        assert len(runs) > 3


# ------------------------------------------------------------------ the archive


def _datasets(root: Path) -> dict[str, Counter]:
    rows: dict[str, Counter] = {}
    for f in ArchiveStore(root).state.files:
        rows.setdefault(f.dataset, Counter()).update(
            map(repr, pq.read_table(root / f.file).to_pylist()))
    return rows


def _assert_same_archive(a: Path, b: Path) -> dict[str, Counter]:
    left, right = _datasets(a), _datasets(b)
    assert sorted(left) == sorted(right)
    for name in left:
        assert not left[name] - right[name], f"{name}: rows only in {a.name}"
        assert not right[name] - left[name], f"{name}: rows only in {b.name}"
    sa, sb = ArchiveStore(a).state, ArchiveStore(b).state
    assert sa.commit == sb.commit
    assert sorted(sa.journal.values()) == sorted(sb.journal.values())
    return left


@pytest.mark.parametrize("roll_rows", [2_000_000, 900])
def test_faulty_sim_archive_equal_both_engines(tmp_path, faulty_record, roll_rows):
    summaries = {e: ingest([faulty_record], tmp_path / e, engine=e, roll_rows=roll_rows)
                 for e in ("python", "core")}
    assert summaries["core"]["frames"] == summaries["python"]["frames"] > 5000
    assert summaries["core"]["rows"] == summaries["python"]["rows"]
    assert summaries["core"]["rejects"] == summaries["python"]["rejects"]
    rows = _assert_same_archive(tmp_path / "python", tmp_path / "core")
    for ds in ("book", "level3", "trades", "checkpoints", "epochs", "gaps", "rejects"):
        assert rows.get(ds), ds  # the faults left their marks in every kind of dataset


@pytest.mark.fixtures
@pytest.mark.parametrize("inputs", [
    ("kraken-data-recorder/instrument_snapshot.json", "python-kraken-sdk/orderbook-v2.json"),
    ("crypto-market-raw-data/kraken.spot.2025-05-08.json",),
    ("crypto-market-raw-data/kraken.futures.2025-05-06.json",),
])
def test_real_captures_archive_equal_both_engines(tmp_path, fixture_file, inputs):
    paths = [fixture_file(p) for p in inputs]
    s = {e: ingest(paths, tmp_path / e, engine=e) for e in ("python", "core")}
    assert s["core"]["frames"] == s["python"]["frames"] > 0
    _assert_same_archive(tmp_path / "python", tmp_path / "core")


def test_cli_engine_option(tmp_path, faulty_record):
    from click.testing import CliRunner

    from recorder.cli import main

    for engine in ("python", "core"):
        r = CliRunner().invoke(main, ["ingest", str(faulty_record), "--archive",
                                      str(tmp_path / engine), "--quiet", "--json",
                                      "--engine", engine])
        assert r.exit_code == 0, r.output
    _assert_same_archive(tmp_path / "python", tmp_path / "core")
    r = CliRunner().invoke(main, ["ingest", str(faulty_record), "--archive",
                                  str(tmp_path / "x"), "--engine", "fast"])
    assert r.exit_code == 2


def test_mutated_sim_lines_frame_as_the_reference_does(faulty_record):
    """Real sim lines with seeded random damage (bytes flipped, cut, inserted, escapes and
    digits swapped in), all in one input: the core and the reference agree on every line."""
    import random

    lines = _read_bytes(faulty_record).split(b"\n")[:4000]
    rng = random.Random(15)
    alphabet = b'{}[]":,\\u0123456789abcdefABCDEF.-+eE \t\r\x00\x1f\x7f\xc3\xa9\xff\xed\xa0\x80'
    mutated = []
    for line in lines:
        b = bytearray(line)
        for _ in range(rng.randrange(4)):
            if not b:
                break
            at = rng.randrange(len(b))
            op = rng.randrange(4)
            if op == 0:
                b[at] = rng.choice(alphabet)
            elif op == 1:
                del b[at:at + rng.randrange(1, 8)]
            elif op == 2:
                b[at:at] = bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 4)))
            else:
                b[at:at] = rng.choice([b"\\ud83d", b"\\ude00", b"\\u00", b'\\"', b"\\\\",
                                       b"99999999999999999999", b"-", b'"conn":1,'])
        mutated.append(bytes(b))
    data = b'{"recv_ns":1,"frame":"a"}\n' + b"\n".join(mutated)
    core, ref = _frames(data, "core", 5), _frames(data, "python", 5)
    assert core == ref
    assert len(ref) > 3000
