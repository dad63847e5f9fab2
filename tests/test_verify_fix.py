"""``recorder verify --journal`` on FIX: MsgSeqNum continuity and book consistency per connection.

The journals are built from the sim's FIX acceptor (``AcceptorSession``): its messages for a
Logon, a MarketDataRequest and a moving market, journaled as a capture would (a ``Connected``
marker, our outgoing Logon and 35=V, the acceptor's messages inbound). Faults are injected by
renumbering (MsgSeqNum gap, a PossDup resend, a GapFill) or by tampering with one X.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.workloads import FrameStream, fix_stream
from recorder import _core
from recorder.archive.journal import JournalWriter
from recorder.fix import Subscription
from recorder.frames import Frame
from recorder.pipeline import markers as mk
from recorder.sim.fix_acceptor import AcceptorSession
from recorder.verify_journal import journal_exit_code, verify_journal
from tests.test_fix_books import START, S, client_frame, market
from tests.test_verify_journal import _run

ME, PEER = "CLIENT1", "KRAKEN-MD"
LOGON = [(98, "0"), (108, "30"), (141, "Y")]
#: (msg_type, body fields, poss_dup) of one inbound message, renumbered when journaled
Msg = tuple[str, list[tuple[int, str]], bool]


def session(steps: int = 40, resubscribe_at: int | None = None
            ) -> tuple[list[Msg], list[tuple[int, str]], int]:
    """The acceptor's messages (inbound for us) and our request; with ``resubscribe_at``, we
    unsubscribe and subscribe again there (fresh snapshots), as capture does after a gap.
    Also returns the index of the first message of the resubscription."""
    m = market(3)
    symbols = m.symbols[:2]
    acceptor = AcceptorSession(m)
    raw: list[bytes] = list(acceptor.on_frame(client_frame("A", 1, LOGON), START))
    request = Subscription("B", symbols, depth=10).request_fields("B", True)
    raw += acceptor.on_frame(client_frame("V", 2, request), START)
    resub = -1
    for step in range(1, steps + 1):
        if step == resubscribe_at:
            sub = Subscription("B", symbols, depth=10)
            raw += acceptor.on_frame(client_frame("V", 3, sub.request_fields("B", False)),
                                     m.now_ns)
            resub = len(raw)
            raw += acceptor.on_frame(client_frame("V", 4, sub.request_fields("C", True)),
                                     m.now_ns)
        m.advance(START + step * S // 4)
        raw += acceptor.publish(m.now_ns)
    framer = _core.FixFramer()
    out: list[Msg] = []
    for data in raw:
        (d,) = framer.feed(data)
        assert d["ok"], d
        out.append((d["msg_type"], body(data), False))
    return out, request, resub


_HEADER = {8, 9, 35, 34, 49, 52, 56, 43, 122, 10}


def body(data: bytes) -> list[tuple[int, str]]:
    """The body fields of one message in order, repeating groups flat (to re-encode it)."""
    fields = []
    for field in data.decode().split("\x01")[:-1]:
        tag, _, value = field.partition("=")
        if int(tag) not in _HEADER:
            fields.append((int(tag), value))
    return fields


def journal(tmp_path: Path, msgs: list[tuple[int, Msg]], request: list[tuple[int, str]],
            stream: str = "fix") -> tuple[Path, list[int]]:
    """Journal one FIX connection: ``msgs`` as ``(MsgSeqNum, message)``; the recv_ns of each."""
    t = START + 10 * S
    frames = [mk.marker_frame(mk.Connected(conn_id=7, stream=stream), t, 7)]

    def add(direction: str, data: bytes) -> int:
        frames.append(Frame(recv_ns=t + len(frames), conn_id=7,
                            stream=stream,  # type: ignore[arg-type]
                            direction=direction,  # type: ignore[arg-type]
                            payload=data))
        return t + len(frames) - 1

    add("out", _core.encode_fix("A", 1, ME, PEER, START, LOGON))
    add("out", _core.encode_fix("V", 2, ME, PEER, START, request))
    recv = [add("in", _core.encode_fix(mt, seq, PEER, ME, START, fields, poss_dup=dup))
            for seq, (mt, fields, dup) in msgs]
    frames.append(mk.marker_frame(mk.Disconnected(conn_id=7, reason="test"), t + len(frames), 7))
    path = tmp_path / "journal"
    with JournalWriter(path, host="test", run_id="fix") as writer:
        writer.append_many(frames)
    return path, recv


def numbered(msgs: list[Msg]) -> list[tuple[int, Msg]]:
    return [(i + 1, msg) for i, msg in enumerate(msgs)]


def fix_report(path: Path) -> dict[str, Any]:
    report = verify_journal([path])
    assert report["fix_not_checkable"] == report["fix"]["messages"]
    return report


def test_a_clean_fix_capture_has_no_gap_and_no_book_problem(tmp_path: Path) -> None:
    msgs, request, _ = session()
    path, _ = journal(tmp_path, numbered(msgs), request)
    report = fix_report(path)
    fx = report["fix"]
    kinds = [mt for mt, _, _ in msgs]
    assert fx["connections"] == 1 and fx["messages"] == len(msgs) and fx["logons"] == 1
    assert fx["book_messages"] == fx["applied"] == kinds.count("W") + kinds.count("X")
    assert kinds.count("W") == 2 and kinds.count("X") > 20
    for key in ("seq_gaps", "duplicates", "too_low", "book_problems", "after_gap",
                "decode_rejects", "crossed", "mismatches"):
        assert fx[key] == 0, key
    assert fx["gaps"] == [] and fx["problems"] == [] and fx["rejects_by_reason"] == {}
    (conn,) = fx["per_connection"]
    assert conn["conn_id"] == 7 and conn["messages"] == len(msgs)
    assert journal_exit_code(report) == 0
    r = _run("--journal", path)
    assert r.returncode == 0, r.stderr
    assert "not checkable, FIX carries no Kraken CRC32" in r.stdout
    assert f"fix: 1 connections, {len(msgs)} messages: seq gaps 0" in r.stdout
    assert "book problems 0" in r.stdout


def test_a_msgseqnum_gap_is_reported_where_it_is_and_the_books_wait_for_snapshots(
        tmp_path: Path) -> None:
    msgs, request, resub = session(steps=40, resubscribe_at=20)
    seqs = numbered(msgs)
    # lose the two messages before the resubscription's snapshots (the capture resubscribes)
    lost = [i for i in range(resub) if seqs[i][1][0] == "X"][-2:]
    kept = [s for i, s in enumerate(seqs) if i not in lost]
    path, recv = journal(tmp_path, kept, request)
    report = fix_report(path)
    fx = report["fix"]
    assert fx["seq_gaps"] == 1 and fx["missing"] == 1 + lost[1] - lost[0]
    (gap,) = fx["gaps"]
    at = lost[0]  # the first message after the loss, in the journal
    assert gap["conn_id"] == 7 and gap["expected"] == seqs[lost[0]][0]
    assert gap["got"] == seqs[lost[0]][0] + fx["missing"]
    assert gap["recv_ns"] == recv[at] and gap["record"] == at + 3  # marker, Logon, V
    assert gap["segment"].endswith(".kjz")
    # the resubscription's W restarts both books; nothing after is a problem
    assert fx["book_problems"] == 0 and fx["duplicates"] == 0, fx["problems"]
    assert fx["applied"] > 0
    assert journal_exit_code(report) == 0
    r = _run("--journal", path)
    assert r.returncode == 0
    assert "GAP fix conn 7 at" in r.stdout and f"expected {gap['expected']}" in r.stdout


def test_a_gap_without_new_snapshots_counts_updates_after_the_gap_apart(tmp_path: Path) -> None:
    msgs, request, _ = session()
    seqs = numbered(msgs)
    cut = len(seqs) // 2
    path, _ = journal(tmp_path, seqs[:cut] + seqs[cut + 1:], request)
    fx = fix_report(path)["fix"]
    assert fx["seq_gaps"] == 1 and fx["book_problems"] == 0
    assert fx["after_gap"] == len(seqs) - cut - 1  # every later X waits for a W
    assert fx["rejects_by_reason"] == {}


def test_a_possdup_resend_is_a_duplicate_not_a_gap_and_not_applied_twice(
        tmp_path: Path) -> None:
    msgs, request, _ = session()
    seqs = numbered(msgs)
    i = next(k for k in range(len(seqs) // 2, len(seqs)) if seqs[k][1][0] == "X")
    seq, (mt, fields, _) = seqs[i]
    resent = (seq, (mt, fields, True))
    plain = (seq, (mt, fields, False))
    path, _ = journal(tmp_path, seqs[:i + 1] + [resent, plain] + seqs[i + 1:], request)
    fx = fix_report(path)["fix"]
    assert fx["duplicates"] == 1 and fx["too_low"] == 1 and fx["seq_gaps"] == 0
    assert fx["book_problems"] == 0 and fx["per_connection"][0]["duplicates"] == 1


def test_a_gapfill_moves_the_expected_msgseqnum(tmp_path: Path) -> None:
    msgs, request, _ = session()
    seqs = numbered(msgs)
    i = len(seqs) // 2
    # a GapFill at i covering 10 numbers, then the rest renumbered after them
    fill = (seqs[i][0], ("4", [(123, "Y"), (36, str(seqs[i][0] + 10))], False))
    rest = [(seq + 10, msg) for seq, msg in seqs[i:]]
    path, _ = journal(tmp_path, seqs[:i] + [fill] + rest, request)
    fx = fix_report(path)["fix"]
    assert fx["gap_fills"] == 1 and fx["seq_gaps"] == 0 and fx["book_problems"] == 0
    assert fx["applied"] == sum(mt in "WX" for mt, _, _ in msgs)
    # without 123=Y it is still no gap when it does not jump forward; a forward reset is one
    reset = (seqs[i][0], ("4", [(36, str(seqs[i][0] + 10))], False))
    path2, _ = journal(tmp_path / "b", seqs[:i] + [reset] + rest, request)
    fx2 = fix_report(path2)["fix"]
    assert fx2["sequence_resets"] == 1 and fx2["seq_gaps"] == 1
    assert fx2["gaps"][0]["cause"] == "sequence_reset"


def first_entry(fields: list[tuple[int, str]], values: dict[int, str]
                ) -> list[tuple[int, str]]:
    """``fields`` with the first MD entry's tags set to ``values`` (its MDEntryID dropped:
    Kraken's L2 id is ``O`` + the price)."""
    k = next(n for n, f in enumerate(fields) if f[0] == 279)
    end = next((n for n in range(k + 1, len(fields)) if fields[n][0] == 279), len(fields))
    entry = [(t, values.get(t, v)) for t, v in fields[k:end] if t != 278]
    return fields[:k] + entry + fields[end:]


def _tampered(msgs: list[Msg], change: Any) -> tuple[list[Msg], int]:
    i = next(k for k in range(len(msgs) // 2, len(msgs))
             if msgs[k][0] == "X" and any(t == 279 for t, _ in msgs[k][1]))
    mt, fields, dup = msgs[i]
    out = list(msgs)
    out[i] = (mt, change(list(fields)), dup)
    return out, i


def test_a_tampered_x_is_a_book_problem(tmp_path: Path) -> None:
    msgs, request, _ = session()

    def unknown_delete(fields: list[tuple[int, str]]) -> list[tuple[int, str]]:
        return first_entry(fields, {279: "2", 270: "1"})  # no such level

    bad, i = _tampered(msgs, unknown_delete)
    path, recv = journal(tmp_path, numbered(bad), request)
    report = fix_report(path)
    fx = report["fix"]
    assert fx["seq_gaps"] == 0 and fx["book_problems"] >= 1
    first = fx["problems"][0]
    assert first["recv_ns"] == recv[i] and first["msg_type"] == "X"
    assert first["reason"] in fx["rejects_by_reason"]
    assert first["reason"] == "unknown_entry", first
    r = _run("--journal", path)
    assert "FAIL fix" in r.stdout

    def crossing_bid(fields: list[tuple[int, str]]) -> list[tuple[int, str]]:
        k = next(n for n, f in enumerate(fields) if f[0] == 279)
        end = next((n for n in range(k + 1, len(fields)) if fields[n][0] == 279), len(fields))
        # a new bid above every ask
        return fields[:k] + [(279, "0"), (269, "0"), (270, "99999"), (271, "1")] + fields[end:]

    crossing, i = _tampered(msgs, crossing_bid)
    path2, recv2 = journal(tmp_path / "c", numbered(crossing), request)
    report2 = fix_report(path2)
    fx2 = report2["fix"]
    assert fx2["crossed"] >= 1, fx2["problems"]
    assert fx2["problems"][0]["reason"] == "crossed"
    assert fx2["problems"][0]["recv_ns"] == recv2[i]
    assert journal_exit_code(report2) == 1


def test_a_level3_session_is_checked_on_level3_books(tmp_path: Path) -> None:
    m = market()
    symbol = m.symbols[0]
    pair = m.universe.pair(symbol)
    key = ("level3", symbol, 10)
    frames = [f.encode() for f in m.subscribe(key)]
    for step in range(1, 80):
        m.advance(START + step * S // 4)
        frames += [text.encode() for k, text in m.updates() if k == key]
    stream = fix_stream(FrameStream("sim level3", "level3", symbol, 10, pair.price_precision,
                                    pair.qty_precision, tuple(frames)))
    msgs: list[Msg] = [("A", LOGON, False)] + [
        (_core.FixFramer().feed(data)[0]["msg_type"], body(data), False)
        for data in stream.messages]
    request = Subscription("L", (symbol,), depth=10, level3=True).request_fields("L", True)
    path, _ = journal(tmp_path, numbered(msgs), request, stream="fix_l3")
    fx = fix_report(path)["fix"]
    assert fx["per_connection"][0]["stream"] == "fix_l3"
    assert fx["book_messages"] == fx["applied"] == len(stream.messages) > 50
    assert fx["book_problems"] == 0 and fx["seq_gaps"] == 0, fx["problems"]
    # an order deleted twice: the second is an unknown entry of the level3 book
    seqs = numbered(msgs)
    i = next(k for k in range(len(seqs) // 2, len(seqs))
             if any(f == (279, "2") for f in seqs[k][1][1]))
    mt, fields, _ = seqs[i][1]
    again = [(seq + 1, msg) for seq, msg in seqs[i + 1:]]
    path2, recv = journal(tmp_path / "b", seqs[:i + 1] + [(seqs[i][0] + 1, (mt, fields, False))]
                          + again, request, stream="fix_l3")
    fx2 = fix_report(path2)["fix"]
    assert fx2["seq_gaps"] == 0 and fx2["book_problems"] >= 1
    assert fx2["problems"][0]["reason"] == "unknown_entry"
    assert fx2["problems"][0]["recv_ns"] == recv[i + 1]


def test_a_real_capture_with_a_sequence_gap_verifies_from_its_journal(tmp_path: Path) -> None:
    """A worker records FIX against the sim's acceptor, which skips a MsgSeqNum (``fix_gap``):
    the journal shows that one gap where the acceptor made it, the GapFill answering the
    ResendRequest (a PossDup resend: a duplicate), and books that are consistent before and after (the resubscription's
    snapshots restart them)."""
    import asyncio

    from recorder.sim.market import SpotMarket
    from recorder.sim.universe import load_universe
    from tests.test_capture_fix import _caught_up, _until
    from tests.test_capture_fix import _run as run_worker

    m = SpotMarket(load_universe(None, pairs=4, futures_path=None, seed=11), seed=2,
                   rate=4.0, start_ns=START)
    symbols = list(m.symbols[:2])
    lost: list[int] = []

    async def body(worker: Any, conns: list[Any], server: Any) -> None:
        (conn,) = conns
        await _until(lambda: conn.logged_on and _caught_up(conn, server), 30, "snapshots")
        server.inject("fix_gap", record=lambda kind, **f: lost.append(f["detail"]["skipped_seq"]))
        m.advance(START + S)
        await server.publish()
        await _until(lambda: conn.gaps == 1, 10, "the gap seen")
        await asyncio.sleep(0.3)
        await _until(lambda: _caught_up(conn, server), 30, "the resubscription's snapshots")
        m.advance(START + 2 * S)
        await server.publish()
        await _until(lambda: _caught_up(conn, server), 10, "the refreshes")

    worker = run_worker(tmp_path, m, symbols, body, heartbeat_s=1)
    report = verify_journal([worker.root])
    fx = report["fix"]
    assert fx["connections"] == 1 and fx["logons"] == 1 and fx["messages"] > 10
    assert fx["seq_gaps"] == 1 and fx["missing"] == 1
    (gap,) = fx["gaps"]
    assert (gap["expected"], gap["got"]) == (lost[0], lost[0] + 1)
    # the GapFill answering the ResendRequest is a PossDup resend of the lost number: below
    # the expectation, a duplicate (not a gap)
    assert fx["duplicates"] == 1 and fx["too_low"] == 0
    assert fx["book_problems"] == 0, fx["problems"]
    assert fx["applied"] > 4 and fx["rejects_by_reason"] == {}
    assert journal_exit_code(report) == 0
