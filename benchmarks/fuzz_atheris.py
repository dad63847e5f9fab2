"""Coverage-guided fuzzing of the decoders and the pipeline with atheris (not run in CI).

    .venv/bin/pip install atheris
    .venv/bin/python -m benchmarks.fuzz_atheris [TARGET] [-max_total_time=120] [-seed=1] [CORPUS_DIR]

TARGET: ``spot`` (decode_spot), ``futures`` (decode_futures), ``rest`` (every REST body
decoder), ``pipeline`` (one ``Pipeline`` fed the input as a spot, level3 and futures frame, with
rows flushed and the state encoded), or ``all`` (default: the input's first byte picks one).
Seeds come from the shared Kraken fixtures when present (``KRAKEN_FIXTURES``).

Each target enforces the house rule: no exception escapes a decoder (anything but a typed event
or a ``Reject``/``RestError`` is a finding), the pipeline never records an ``internal`` reject
except the known pipeline-owned one (tests/test_fuzz_pipeline.py), its buffers stay rectangular
and its state stays encodable.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports():
    from recorder.frames import Frame
    from recorder.pipeline import ListSink, Pipeline
    from recorder.pipeline.state import encode_state
    from recorder.protocol import futures as fut
    from recorder.protocol import rest
    from recorder.protocol import spot as sp
    from recorder.protocol.reject import Reject

T0 = 1_735_689_600_000_000_000
REST_DECODERS = [getattr(rest, n) for n in dir(rest) if n.startswith("decode_")]
_seen_internal: set[str] = set()


def _spot(data: bytes) -> None:
    ev = sp.decode_spot(data)
    if isinstance(ev, Reject):
        assert ev.reason != "internal", ev.detail


def _futures(data: bytes) -> None:
    ev = fut.decode_futures(data)
    if isinstance(ev, Reject):
        assert ev.reason != "internal", ev.detail


def _rest(data: bytes) -> None:
    for decode in REST_DECODERS:
        out = decode(data)
        if isinstance(out, Reject):
            assert out.reason != "internal", (decode.__name__, out.detail)


def _known(row: dict[str, Any]) -> bool:
    return row["detail"].startswith("NumberError:") and b'"snapshot"' in row["raw"]


def _pipeline(data: bytes) -> None:
    sink = ListSink()
    p = Pipeline(sink, batch_rows=3)
    for i, stream in enumerate(("spot", "l3", "futures", "spot")):
        p.feed(Frame(recv_ns=T0 + i, conn_id=1, stream=stream, direction="in",  # type: ignore[arg-type]
                     payload=data))
    p.close()
    for name, cols in sink.data.items():
        assert len({len(v) for v in cols.values()}) <= 1, f"ragged columns in {name}"
    for row in sink.rows("rejects"):
        if row["reason"] == "internal" and not _known(row):
            raise AssertionError(f"internal reject: {row['detail']}")
    encode_state(p.to_state())


TARGETS = {"spot": _spot, "futures": _futures, "rest": _rest, "pipeline": _pipeline}


def _all(data: bytes) -> None:
    if not data:
        return
    list(TARGETS.values())[data[0] % len(TARGETS)](data[1:])


def _seed_corpus(directory: Path) -> None:
    """Write a few real frames as seeds (only when the corpus directory is empty)."""
    if any(directory.iterdir()):
        return
    from recorder.testing import fixtures_dir

    root = fixtures_dir()
    seeds: list[bytes] = [b'{"channel": "heartbeat"}']
    naut = root / "nautilus_trader"
    if naut.is_dir():
        seeds += [p.read_bytes() for p in sorted(naut.glob("*.json"))]
    for i, s in enumerate(seeds):
        for k in range(len(TARGETS)):
            (directory / f"seed-{i}-{k}").write_bytes(bytes([k]) + s)


def main() -> None:
    args = sys.argv[1:]
    target = "all"
    if args and args[0] in (*TARGETS, "all"):
        target = args.pop(0)
    corpus = [a for a in args if not a.startswith("-")]
    if corpus:
        Path(corpus[0]).mkdir(parents=True, exist_ok=True)
        _seed_corpus(Path(corpus[0]))
    fn = _all if target == "all" else TARGETS[target]
    atheris.Setup([sys.argv[0], *args], fn)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
