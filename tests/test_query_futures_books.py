"""Futures books rebuilt from the archive (issue #14 section 4): at every message time, on both
clocks, equal to the same frames applied to a :class:`FuturesBook` in memory; checkpoints and
their ``seq`` are honoured; a ``seq`` jump ends the covered time with an explanation."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from recorder.book.futures import FuturesBook
from recorder.ingest import ingest
from recorder.protocol import futures as fut
from recorder.protocol.numbers import token_to_text
from recorder.query.api import Archive

T0_MS = 1_735_700_000_000
PID = "PF_ETHUSD"


def _stream(n: int, seed: int, *, jump_at: int | None = None) -> list[dict[str, Any]]:
    """A snapshot and ``n`` deltas of ``PID`` (random levels, some removals); with
    ``jump_at``, the seq skips 3 numbers at that delta."""
    rnd = random.Random(seed)
    snap = {"feed": "book_snapshot", "product_id": PID, "timestamp": T0_MS, "seq": 1000,
            "tickSize": None,
            "bids": [{"price": 3000 - i * 0.5, "qty": rnd.randint(1, 50) / 4} for i in range(8)],
            "asks": [{"price": 3001 + i * 0.5, "qty": rnd.randint(1, 50)} for i in range(8)]}
    msgs: list[dict[str, Any]] = [snap]
    seq = 1000
    for k in range(n):
        seq += 4 if k == jump_at else 1
        side = rnd.choice(["buy", "sell"])
        base = 3000 - rnd.randint(0, 10) * 0.5 if side == "buy" else 3001 + rnd.randint(0, 10) * 0.5
        qty = 0.0 if rnd.random() < 0.25 else rnd.randint(1, 400) / 8
        msgs.append({"feed": "book", "product_id": PID, "side": side, "seq": seq,
                     "price": base, "qty": qty, "timestamp": T0_MS + (k + 1) * 250})
    return msgs


def _write(path: Path, msgs: list[dict[str, Any]]) -> list[int]:
    recv = [(m["timestamp"] + 3) * 1_000_000 for m in msgs]
    path.write_text("\n".join(json.dumps({"recv_ns": r, "conn": 3, "ep": "futures",
                                          "frame": json.dumps(m)}) for r, m in zip(recv, msgs)))
    return recv


def _truth(msgs: list[dict[str, Any]], upto: int) -> tuple[list[tuple[str, str]], ...]:
    """The book after ``msgs[:upto + 1]``, applied in memory from the decoded frames."""
    book = FuturesBook(PID)
    for m in msgs[: upto + 1]:
        ev = fut.decode_futures(json.dumps(m).encode())
        if isinstance(ev, fut.FuturesBookSnapshot):
            book.apply_snapshot(ev)
        else:
            book.apply(ev)
    return tuple([(token_to_text(p), token_to_text(q)) for p, q in side]
                 for side in (book.bids(), book.asks()))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Archive, list[dict[str, Any]], list[int]]:
    d = tmp_path_factory.mktemp("futbook")
    msgs = _stream(60, seed=3)
    recv = _write(d / "f.jsonl", msgs)
    ingest([d / "f.jsonl"], d / "a", checkpoint_messages=7)  # interval checkpoints too
    return Archive(d / "a"), msgs, recv


def test_every_message_time_matches_the_book_in_memory(recorded):
    ar, msgs, recv = recorded
    cps = ar.sql("SELECT count(*) FROM checkpoints WHERE channel = 'futures_book'").collect().item()
    assert cps > 5
    for i, t in enumerate(recv):
        for clock, at in (("receive", t), ("exchange", msgs[i]["timestamp"] * 1_000_000)):
            b = ar.book_at(PID, at, channel="futures_book", clock=clock)  # type: ignore[arg-type]
            assert b.valid, (i, clock, b.reason)
            bids, asks = _truth(msgs, i)
            d = b.to_dict()
            assert [(x["price"], x["qty"]) for x in d["bids"]] == bids, (i, clock)
            assert [(x["price"], x["qty"]) for x in d["asks"]] == asks, (i, clock)
            assert b.seq == msgs[i]["seq"] and b.checksum_ok is None


def test_depth_frame_and_exact_text(recorded):
    ar, msgs, recv = recorded
    b = ar.book_at(PID, recv[30], channel="futures_book", depth=3, clock="receive")
    assert len(b.bids) == 3 and len(b.asks) == 3
    df = b.frame
    assert df.columns == ["side", "level", "price", "qty", "price_units", "qty_units"]
    d = b.to_dict()
    assert df["price"][:3].to_list() == [Decimal(x["price"]) for x in d["bids"]]
    assert any(x["price"].endswith(".0") for x in d["bids"] + d["asks"])  # as Kraken sent it


def test_a_seq_jump_ends_the_covered_time(tmp_path: Path):
    msgs = _stream(20, seed=9, jump_at=10)
    recv = _write(tmp_path / "f.jsonl", msgs)
    ingest([tmp_path / "f.jsonl"], tmp_path / "a")
    ar = Archive(tmp_path / "a")
    ok = ar.book_at(PID, recv[10], channel="futures_book", clock="receive")
    assert ok.valid and ok.seq == msgs[10]["seq"]
    for i in (11, 15):  # the jumping delta and after: no snapshot since, no book
        nb = ar.book_at(PID, recv[i], channel="futures_book", clock="receive")
        assert not nb.valid and "seq_jump" in (nb.reason or ""), nb.reason


def test_replay_of_a_futures_book_is_refused_clearly(recorded):
    from recorder.query.books import QueryError

    ar, _, recv = recorded
    with pytest.raises(QueryError, match="book_at"):
        list(ar.replay(PID, recv[0], recv[-1], channel="futures_book"))  # type: ignore[arg-type]
