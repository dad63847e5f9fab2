"""The ``fix`` part of ``recorder verify --journal``: what can be checked of FIX from the journal.

FIX 4.4 market data carries no Kraken CRC32, so no checksum is re-computed here (the report
says so). What is checked, per FIX connection (``conn_id`` of the frames; a ``Connected``
marker starts a connection afresh, ``Disconnected`` ends it):

* **Sequence continuity** of inbound MsgSeqNum (34), with the pipeline's rules
  (:mod:`recorder.pipeline.core`): a Logon (35=A) sets the expectation to its number + 1; each
  message is then expected + 1; a SequenceReset-GapFill (35=4, 123=Y) moves it to NewSeqNo (36);
  a hard SequenceReset moves it (a jump forward is a gap); a message below it with
  PossDupFlag (43=Y) is a ``duplicate`` (not applied), without it ``too_low``; a number above
  it is a ``seq_gap`` (connection, expected, got, segment, record, recv time). A gap is the
  exchange stream's loss (capture records it as a ``gaps`` row and resubscribes), not a fault
  of the journal: it does not change the exit status.
* **Book consistency**: the W/X messages that pass the sequence check go, per connection, to
  the core's ``recorder._core.FixBooks`` (L3 for stream ``fix_l3``) with the depth of the
  connection's MarketDataRequests (35=V, 264) and precisions inferred from the snapshots.
  Its rejects are counted by reason. After a sequence gap the connection's books are dropped:
  the updates of a symbol before its next W are ``update_before_snapshot`` by design and are
  counted as ``after_gap``, apart from the ``book_problems`` (rejects and 5041 mismatches
  outside gaps: an unknown or duplicate entry, a crossed book, ...).

Messages are decoded by the core's codec (``recorder._core.FixFramer``, as the pipeline does).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Final

import numpy as np

from recorder import _core
from recorder.pipeline import markers as mk
from recorder.pipeline.core import FIX_STREAMS, _FIX_GARBLED, _fix_decode
from recorder.protocol.timestamps import ns_to_rfc3339

__all__ = ["FIX_STREAMS", "FixJournalChecker"]

FIX_BOOK_REASONS: Final[tuple[str, ...]] = tuple(_core.FIX_BOOK_REASONS)
_OK, _MISMATCH, _REJECT, _SKIPPED, _UNCHECKED = range(5)
_NO_SNAPSHOT: Final = FIX_BOOK_REASONS.index("update_before_snapshot")
_CROSSED: Final = FIX_BOOK_REASONS.index("crossed")
#: Messages per connection handed to the core per call.
BATCH: Final = 20_000
#: Longest listing of gaps and of book problems.
LISTED: Final = 100

_Item = tuple[str, int, int, bytes, str]  # segment, record, recv_ns, payload, symbol


class _Conn:
    __slots__ = ("conn_id", "stream", "books", "depths", "expected", "pending", "healed",
                 "counts")

    def __init__(self, conn_id: int, stream: str) -> None:
        self.conn_id = conn_id
        self.stream = stream
        self.books = _core.FixBooks(level3=stream == "fix_l3")
        self.depths: dict[str, int] = {}
        self.expected: int | None = None
        self.pending: list[_Item] = []
        #: None: no gap yet; else the symbols that had a W since the last gap
        self.healed: set[str] | None = None
        self.counts = {"messages": 0, "seq_gaps": 0, "duplicates": 0, "book_problems": 0,
                       "after_gap": 0}


class FixJournalChecker:
    """Feed journal frames in order (:meth:`frame`, :meth:`marker`), then :meth:`report`."""

    def __init__(self) -> None:
        self._conns: dict[int, _Conn] = {}
        self._done: list[_Conn] = []
        self.counts = {"connections": 0, "messages": 0, "logons": 0, "seq_gaps": 0,
                       "missing": 0, "duplicates": 0, "too_low": 0, "gap_fills": 0,
                       "sequence_resets": 0, "decode_rejects": 0, "book_messages": 0,
                       "applied": 0, "mismatches": 0, "crossed": 0, "book_problems": 0,
                       "after_gap": 0}
        self.by_reason: dict[str, int] = defaultdict(int)
        self.gaps: list[dict[str, Any]] = []
        self.problems: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ input

    def _conn(self, conn_id: int, stream: str) -> _Conn:
        conn = self._conns.get(conn_id)
        if conn is None:
            conn = self._conns[conn_id] = _Conn(conn_id, stream)
            self.counts["connections"] += 1
        return conn

    def _close(self, conn_id: int) -> None:
        conn = self._conns.pop(conn_id, None)
        if conn is not None:
            self._flush(conn)
            self._done.append(conn)

    def marker(self, payload: bytes) -> None:
        """A control frame: ``Connected`` / ``Disconnected`` bracket a connection."""
        if b"connected" not in payload:
            return
        m = mk.decode_marker(payload)
        if type(m) is mk.Connected:
            self._close(m.conn_id)  # a conn_id seen again (another run): a new connection
        elif type(m) is mk.Disconnected:
            self._close(m.conn_id)

    def frame(self, segment: str, record: int, recv_ns: int, conn_id: int, stream: str,
              direction: str, payload: bytes) -> None:
        """One FIX frame (stream ``fix`` or ``fix_l3``) of the journal, in order."""
        conn = self._conn(conn_id, stream)
        m = _fix_decode(payload)
        if direction != "in":
            if m is not None and m["ok"] and m["msg_type"] == "V":
                self._request(conn, m)
            return
        self.counts["messages"] += 1
        conn.counts["messages"] += 1
        where = (segment, record, recv_ns)
        if m is None or not m["ok"]:
            self.counts["decode_rejects"] += 1
            if m is not None and m.get("seq_num") is not None and m["reason"] not in _FIX_GARBLED:
                self._sequence(conn, m["seq_num"], bool(m.get("poss_dup")), where)
            return
        msg_type = m["msg_type"]
        seq = m["seq_num"]
        fields = m["fields"]
        if msg_type == "A":  # a (new) session: numbering starts from its Logon
            self.counts["logons"] += 1
            conn.expected = seq + 1
            return
        if msg_type == "4" and fields.get(123) != "Y":  # hard reset: MsgSeqNum ignored
            self.counts["sequence_resets"] += 1
            new_text = fields.get(36, "")
            if new_text.isdigit():
                new = int(new_text)
                if conn.expected is not None and new > conn.expected:
                    self._gap(conn, conn.expected, new, where, "sequence_reset")
                if conn.expected is None or new >= conn.expected:
                    conn.expected = new
            return
        if not self._sequence(conn, seq, bool(m["poss_dup"]), where):
            return
        if msg_type == "W" or msg_type == "X":
            conn.pending.append((segment, record, recv_ns, payload, fields.get(55, "")))
            if len(conn.pending) >= BATCH:
                self._flush(conn)
        elif msg_type == "4":  # GapFill: numbers up to NewSeqNo - 1 carried nothing
            self.counts["gap_fills"] += 1
            new_text = fields.get(36, "")
            if new_text.isdigit() and int(new_text) > seq:
                conn.expected = int(new_text)

    def _request(self, conn: _Conn, m: dict[str, Any]) -> None:
        """An outgoing MarketDataRequest: the depth of its symbols' next snapshots."""
        fields = m["fields"]
        depth_text = fields.get(264, "")
        if fields.get(263) == "2" or not depth_text.isdigit() or int(depth_text) < 1:
            return
        depth = int(depth_text)
        self._flush(conn)  # the messages before it were received under the old depth
        for tag, symbol in m["field_list"]:
            if tag == 55 and conn.depths.get(symbol) != depth:
                conn.depths[symbol] = depth
                conn.books.subscribe(symbol, depth)

    def _sequence(self, conn: _Conn, seq: int, poss_dup: bool,
                  where: tuple[str, int, int]) -> bool:
        """Check ``seq`` against the expectation; False when the message is not applied."""
        expected = conn.expected
        if expected is None or seq == expected:  # no Logon seen (a journal cut mid-session)
            conn.expected = seq + 1
            return True
        if seq > expected:
            self._gap(conn, expected, seq, where, "gap")
            conn.expected = seq + 1
            return True
        if poss_dup:
            self.counts["duplicates"] += 1
            conn.counts["duplicates"] += 1
        else:
            self.counts["too_low"] += 1
        return False

    def _gap(self, conn: _Conn, expected: int, got: int, where: tuple[str, int, int],
             cause: str) -> None:
        """MsgSeqNum ``expected..got - 1`` lost: the connection's books end (capture
        resubscribes; each symbol's next W restarts its book)."""
        self.counts["seq_gaps"] += 1
        self.counts["missing"] += got - expected
        conn.counts["seq_gaps"] += 1
        if len(self.gaps) < LISTED:
            segment, record, recv_ns = where
            self.gaps.append({"conn_id": conn.conn_id, "stream": conn.stream,
                              "expected": expected, "got": got, "missing": got - expected,
                              "cause": cause, "segment": segment, "record": record,
                              "recv_ns": recv_ns, "recv": ns_to_rfc3339(recv_ns)})
        self._flush(conn)
        conn.books = _core.FixBooks(level3=conn.stream == "fix_l3")
        for symbol, depth in conn.depths.items():
            conn.books.subscribe(symbol, depth)
        conn.healed = set()

    # ------------------------------------------------------------------ books

    def _flush(self, conn: _Conn) -> None:
        items = conn.pending
        if not items:
            return
        conn.pending = []
        cols = conn.books.feed([it[3] for it in items])
        verdict = np.frombuffer(cols["verdict"], np.uint8)
        reason = np.frombuffer(cols["reason"], np.uint8)
        msg_type = cols["msg_type"]
        c = self.counts
        c["book_messages"] += len(items)
        c["applied"] += int(np.count_nonzero((verdict == _OK) | (verdict == _UNCHECKED)))
        details: dict[int, str] = {}
        text = cols["detail_text"]
        start = 0
        for i, end in zip(np.frombuffer(cols["detail_index"], "<u4").tolist(),
                          np.frombuffer(cols["detail_end"], "<u4").tolist()):
            details[i] = text[start:end].decode("utf-8", "replace")
            start = end
        healed = conn.healed
        if healed is None and not np.any((verdict == _REJECT) | (verdict == _MISMATCH)):
            return  # the common case: every message applied
        seq = np.frombuffer(cols["seq_num"], "<u8")
        for i, (v, r) in enumerate(zip(verdict.tolist(), reason.tolist())):
            symbol = items[i][4]
            if healed is not None and msg_type[i] == ord("W") and v in (_OK, _UNCHECKED):
                healed.add(symbol)
            if v != _REJECT and v != _MISMATCH:
                continue
            if (v == _REJECT and r == _NO_SNAPSHOT and healed is not None
                    and symbol not in healed):
                c["after_gap"] += 1
                conn.counts["after_gap"] += 1
                continue
            name = "mismatch" if v == _MISMATCH else FIX_BOOK_REASONS[r]
            self.by_reason[name] += 1
            c["book_problems"] += 1
            conn.counts["book_problems"] += 1
            if v == _MISMATCH:
                c["mismatches"] += 1
            elif r == _CROSSED:
                c["crossed"] += 1
            if len(self.problems) < LISTED:
                segment, record, recv_ns, _, _ = items[i]
                self.problems.append({
                    "conn_id": conn.conn_id, "stream": conn.stream, "symbol": symbol,
                    "reason": name, "msg_type": chr(msg_type[i]), "seq_num": int(seq[i]),
                    "detail": details.get(i, ""), "segment": segment, "record": record,
                    "recv_ns": recv_ns, "recv": ns_to_rfc3339(recv_ns)})

    # ------------------------------------------------------------------ output

    def close_all(self) -> None:
        """End every open connection (the end of a recording: conn_ids start afresh)."""
        for conn_id in list(self._conns):
            self._close(conn_id)

    def report(self) -> dict[str, Any]:
        """The ``fix`` part of the journal report (flushes what is pending)."""
        self.close_all()
        per = [{"conn_id": c.conn_id, "stream": c.stream, **c.counts}
               for c in self._done if c.counts["messages"]]
        return {**self.counts, "rejects_by_reason": dict(sorted(self.by_reason.items())),
                "gaps": self.gaps, "problems": self.problems, "per_connection": per}
