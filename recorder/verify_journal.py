"""``recorder verify --journal PATH``: re-check every Kraken book checksum from the raw journal.

The journal is the source of truth (:mod:`recorder.archive.journal`); this check reads its
segments directly, independent of Parquet: every Spot v2 ``book`` and ``level3`` frame received
is decoded, applied to its symbol's book and its CRC32 recomputed, with the same semantics as
the pipeline (a snapshot starts a book with the depth of its subscribe ack and the precisions
of the instrument channel, a mismatch or crossed book ends it until the next snapshot). Frames
of other channels (trade, ticker, ohlc, heartbeat, status, pong) are recognised and skipped;
subscribe acks and instrument frames are read for depths and precisions.

The work runs on the compiled core (``recorder._core.SpotBooks``): frames go to Rust in
batches, decoded and checked with the GIL released, and come back as verdict columns (numpy
arrays, no per-frame Python object). :class:`ReferenceSpotChecker` is the pure-Python reference
model (``recorder.protocol.spot`` decoder and ``recorder.book`` books) with the same interface;
tests compare the two verdict by verdict (``engine="python"`` runs the whole check on it).

Futures frames (stream ``futures``) go to ``recorder._core.FuturesBooks``
(:mod:`recorder.verify_futures`): each product's full-depth book is rebuilt from its
``book_snapshot`` and ``book`` deltas with the pipeline's rules, and ``seq`` continuity is
checked; the report's ``futures`` part counts ``frames``, ``book_frames``, ``ok`` (in
sequence), ``seq_gaps`` (with the first 100 in ``gaps``: product, expected and received
``seq``, segment, record, time), ``crossed`` (frames after which their product's book was
crossed), ``skipped``, ``rejects`` and
``rejects_by_reason``. A gap is the exchange stream's (messages missed on the wire), not a
fault of the journal, so it does not change the exit status.

Report (``verify_journal``): ``frames`` read, ``frames_checked`` (book/level3 frames applied
with a checksum), ``verified``, ``mismatches`` (each with its segment, record, ``recv_ns``,
exchange ``ts_ns``, expected and computed CRC), ``crossed``, ``unchecked`` (applied, no
checksum on the wire), ``rejects`` and ``rejects_by_reason``, and ``per`` (channel, symbol)
counts; ``fix_not_checkable``: inbound FIX 4.4 messages (streams ``fix`` / ``fix_l3``), which
carry no Kraken CRC32, so no checksum of theirs can be checked. What can be checked of FIX is
in the ``fix`` part (:mod:`recorder.verify_fix`), per connection: MsgSeqNum continuity
(``seq_gaps`` with ``missing`` numbers and the first 100 in ``gaps``: connection, expected and
received MsgSeqNum, segment, record, time; ``duplicates`` (PossDup resends, not applied),
``too_low``, ``gap_fills``, ``sequence_resets``) and the consistency of the books rebuilt from
the W/X messages by ``recorder._core.FixBooks`` (``book_messages``, ``applied``,
``book_problems`` by reason in ``rejects_by_reason`` with the first 100 in ``problems``,
``crossed``, ``mismatches`` of 5041; ``after_gap``: updates that waited for a snapshot after a
sequence gap, expected and counted apart) and ``per_connection`` counts. Like a Futures
``seq`` gap, a FIX sequence gap is the exchange stream's loss, not a fault of the journal.
Exit status of the command: 1 when any mismatch or crossed book was found (WebSocket, or a
FIX book crossed or failing its 5041), else 0.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import click
import msgspec
import numpy as np

from recorder import _core
from recorder.archive.journal import SEGMENT_SUFFIX, SegmentInfo, list_segments, read_segment
from recorder.book.l2 import L2Book
from recorder.book.l3 import L3Book
from recorder.errors import RecorderError
from recorder.protocol import spot as sp
from recorder.protocol.numbers import decimals_of
from recorder.protocol.reject import Reject
from recorder.protocol.timestamps import ns_to_rfc3339
from recorder.verify_fix import FixJournalChecker
from recorder.verify_futures import (
    FUTURES_REASONS,
    CoreFuturesChecker,
    FuturesVerdicts,
    ReferenceFuturesChecker,
)
from recorder.verify_futures import NO_KIND as FUT_NO_KIND
from recorder.verify_futures import OK as FUT_OK
from recorder.verify_futures import REJECT as FUT_REJECT
from recorder.verify_futures import SEQ_GAP as FUT_SEQ_GAP
from recorder.verify_futures import SKIPPED as FUT_SKIPPED

__all__ = [
    "VERDICTS",
    "REASONS",
    "CHANNELS",
    "FrameVerdicts",
    "CoreSpotChecker",
    "ReferenceSpotChecker",
    "JournalPathError",
    "verify_journal",
    "journal_segments",
]

#: Verdict names by code (``FrameVerdicts.verdict``).
VERDICTS: Final[tuple[str, ...]] = tuple(_core.SPOT_VERDICTS)
#: Reject reason names by code (``FrameVerdicts.reason``; 0 = none).
REASONS: Final[tuple[str, ...]] = tuple(_core.SPOT_REASONS)
#: Channel names by code (``FrameVerdicts.channel``).
CHANNELS: Final[tuple[str, ...]] = tuple(_core.SPOT_CHANNELS)

OK, MISMATCH, REJECT, SKIPPED, UNCHECKED, CROSSED = range(6)
CH_NONE, CH_BOOK, CH_LEVEL3, CH_INSTRUMENT, CH_ACK, CH_OTHER = range(6)
SNAPSHOT, UPDATE, NO_KIND = range(3)
NO_SYMBOL: Final = 2**32 - 1
NO_TS: Final = -(2**63)
_REASON_CODE: Final = {name: code for code, name in enumerate(REASONS) if name}
_KRAKEN_DEPTHS: Final = (10, 25, 100, 500, 1000)
#: Frames handed to the core per call.
BATCH_FRAMES: Final = 20_000

Engine = Literal["core", "python"]


class JournalPathError(RecorderError, ValueError):
    """A ``--journal`` path that holds no journal segment."""


@dataclass
class FrameVerdicts:
    """Verdict columns of one batch (numpy arrays of equal length) and reject details."""

    verdict: np.ndarray
    channel: np.ndarray
    kind: np.ndarray
    reason: np.ndarray
    symbol: np.ndarray
    expected: np.ndarray
    computed: np.ndarray
    ts_ns: np.ndarray
    symbols: list[str]
    details: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.verdict)

    def row(self, i: int) -> tuple[Any, ...]:
        """Frame ``i``'s verdict as a comparable tuple (symbol as its name)."""
        sym = int(self.symbol[i])
        return (VERDICTS[self.verdict[i]], CHANNELS[self.channel[i]], int(self.kind[i]),
                REASONS[self.reason[i]], None if sym == NO_SYMBOL else self.symbols[sym],
                int(self.expected[i]), int(self.computed[i]), int(self.ts_ns[i]))


class CoreSpotChecker:
    """The compiled checker (``recorder._core.SpotBooks``): books persist across batches."""

    def __init__(self, max_frame_bytes: int = sp.DEFAULT_MAX_FRAME_BYTES) -> None:
        self._books = _core.SpotBooks(max_frame_bytes)

    def set_precision(self, symbol: str, price_precision: int, qty_precision: int) -> None:
        """Precisions for ``symbol``'s next snapshots (win over the instrument channel's)."""
        self._books.set_precision(symbol, price_precision, qty_precision)

    def feed(self, frames: list[bytes]) -> FrameVerdicts:
        """Decode and check one batch of frames (GIL released in the core)."""
        cols = self._books.feed(frames)
        text = cols["detail_text"]
        ends = np.frombuffer(cols["detail_end"], "<u4")
        starts = np.concatenate(([0], ends[:-1])) if len(ends) else ends
        details = {int(f): text[int(a):int(b)].decode("utf-8", "replace")
                   for f, a, b in zip(np.frombuffer(cols["detail_frame"], "<u4"), starts, ends)}
        return FrameVerdicts(
            verdict=np.frombuffer(cols["verdict"], np.uint8),
            channel=np.frombuffer(cols["channel"], np.uint8),
            kind=np.frombuffer(cols["kind"], np.uint8),
            reason=np.frombuffer(cols["reason"], np.uint8),
            symbol=np.frombuffer(cols["symbol"], "<u4"),
            expected=np.frombuffer(cols["expected"], "<u4"),
            computed=np.frombuffer(cols["computed"], "<u4"),
            ts_ns=np.frombuffer(cols["ts_ns"], "<i8"),
            symbols=self._books.symbols(),
            details=details,
        )

    def l2_levels(self, symbol: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]] | None:
        """``(bids, asks)`` units of ``symbol``'s valid L2 book, best first (None: no book)."""
        return self._books.l2_levels(symbol)

    def l3_orders(self, symbol: str) -> tuple[list[tuple[str, int, int]],
                                              list[tuple[str, int, int]]] | None:
        """``(bids, asks)`` as ``(order_id, price, qty)`` of ``symbol``'s valid level3 book."""
        return self._books.l3_orders(symbol)


def _peek_channel(frame: bytes) -> tuple[Any, Any]:
    try:
        message = msgspec.json.decode(frame)
    except Exception:  # noqa: BLE001 - only a hint for classifying a reject
        return None, None
    if not isinstance(message, dict):
        return None, None
    return message.get("channel"), message.get("method")


class ReferenceSpotChecker:
    """The pure-Python reference model of :class:`CoreSpotChecker` (same verdicts).

    Decodes with :func:`recorder.protocol.spot.decode_spot` and applies to the books of
    :mod:`recorder.book`, with the pipeline's rules (see the module docstring). Slow and
    simple on purpose: differential tests compare the core with it.
    """

    def __init__(self, max_frame_bytes: int = sp.DEFAULT_MAX_FRAME_BYTES) -> None:
        self._max = max_frame_bytes
        self._symbols: list[str] = []
        self._ids: dict[str, int] = {}
        self._explicit: dict[str, tuple[int, int]] = {}
        self._learned: dict[str, tuple[int, int]] = {}
        self._ack_depth: dict[tuple[int, int], int] = {}
        self._l2: dict[int, L2Book] = {}
        self._l3: dict[int, L3Book] = {}

    def set_precision(self, symbol: str, price_precision: int, qty_precision: int) -> None:
        """As :meth:`CoreSpotChecker.set_precision`."""
        self._explicit[symbol] = (price_precision, qty_precision)

    def _intern(self, symbol: str) -> int:
        sym = self._ids.get(symbol)
        if sym is None:
            sym = self._ids[symbol] = len(self._symbols)
            self._symbols.append(symbol)
        return sym

    def feed(self, frames: Iterable[bytes]) -> FrameVerdicts:
        """Decode and check one batch of frames."""
        rows: list[tuple[int, int, int, int, int, int, int, int]] = []
        details: dict[int, str] = {}
        for i, frame in enumerate(frames):
            row, detail = self._one(frame)
            rows.append(row)
            if detail is not None:
                details[i] = detail
        cols = list(zip(*rows)) if rows else [()] * 8
        return FrameVerdicts(
            verdict=np.array(cols[0], np.uint8), channel=np.array(cols[1], np.uint8),
            kind=np.array(cols[2], np.uint8), reason=np.array(cols[3], np.uint8),
            symbol=np.array(cols[4], np.uint32), expected=np.array(cols[5], np.uint32),
            computed=np.array(cols[6], np.uint32), ts_ns=np.array(cols[7], np.int64),
            symbols=list(self._symbols), details=details)

    def _one(self, frame: bytes) -> tuple[tuple[int, ...], str | None]:
        ev = sp.decode_spot(frame, max_frame_bytes=self._max)
        t = type(ev)
        if t is Reject:
            if ev.reason in ("schema", "bad_number", "bad_timestamp"):
                channel, method = _peek_channel(frame)
                if channel in ("heartbeat", "status", "trade", "ticker", "ohlc") or (
                        channel is None and method == "pong"):
                    return (SKIPPED, CH_OTHER, NO_KIND, 0, NO_SYMBOL, 0, 0, NO_TS), None
            code = _REASON_CODE.get(ev.reason, _REASON_CODE["schema"])
            return (REJECT, CH_NONE, NO_KIND, code, NO_SYMBOL, 0, 0, NO_TS), ev.detail
        if t is sp.BookMessage or t is sp.Level3Message:
            l3 = t is sp.Level3Message
            best: tuple[tuple[int, ...], str | None] | None = None
            for data in ev.data:
                got = (self._l3_item if l3 else self._l2_item)(ev.type, data)
                if best is None or best[0][0] in (OK, UNCHECKED):
                    best = got
            kind = SNAPSHOT if ev.type == "snapshot" else UPDATE
            channel = CH_LEVEL3 if l3 else CH_BOOK
            if best is None:
                return (SKIPPED, channel, kind, 0, NO_SYMBOL, 0, 0, NO_TS), None
            (verdict, reason, sym, expected, computed, ts), detail = best
            return (verdict, channel, kind, reason, sym, expected, computed, ts), detail
        if t is sp.InstrumentMessage:
            if ev.type == "snapshot":
                self._learned.clear()
            for pair in ev.data.pairs:
                self._learned[pair.symbol] = (pair.price_precision, pair.qty_precision)
            return (SKIPPED, CH_INSTRUMENT, NO_KIND, 0, NO_SYMBOL, 0, 0, NO_TS), None
        if t is sp.SubscribeAck or t is sp.UnsubscribeAck:
            self._ack(ev)
            return (SKIPPED, CH_ACK, NO_KIND, 0, NO_SYMBOL, 0, 0, NO_TS), None
        return (SKIPPED, CH_OTHER, NO_KIND, 0, NO_SYMBOL, 0, 0, NO_TS), None

    def _ack(self, ev: Any) -> None:
        res = ev.result
        symbol = (res.symbol if res is not None else None) or ev.symbol
        channel = res.channel if res is not None else ""
        if not ev.success or symbol is None or channel not in ("book", "level3"):
            return
        code = CH_BOOK if channel == "book" else CH_LEVEL3
        sym = self._intern(symbol)
        if type(ev) is sp.SubscribeAck:
            if res is not None and res.depth:
                self._ack_depth[(code, sym)] = res.depth
        else:
            (self._l2 if code == CH_BOOK else self._l3).pop(sym, None)

    def _precisions(self, symbol: str, prices: list[Any], qtys: list[Any]) -> tuple[int, int]:
        known = self._explicit.get(symbol) or self._learned.get(symbol)
        if known is not None:
            return known
        return (max((decimals_of(t) for t in prices), default=0),
                max((decimals_of(t) for t in qtys), default=0))

    def _l2_item(self, kind: str, data: Any) -> tuple[tuple[int, ...], str | None]:
        sym = self._intern(data.symbol)
        ts = NO_TS if data.ts_ns is None else data.ts_ns
        if kind == "snapshot":
            self._l2.pop(sym, None)
            try:
                depth = self._ack_depth.get((CH_BOOK, sym))
                if not depth:
                    n = max(len(data.bids), len(data.asks), 1)
                    depth = next((d for d in _KRAKEN_DEPTHS if n <= d), n)
                levels = [*data.bids, *data.asks]
                pp, qp = self._precisions(data.symbol, [lv.price for lv in levels],
                                          [lv.qty for lv in levels])
                book = L2Book(data.symbol, depth, pp, qp)
                res = book.apply(kind, data)
            except Exception as exc:  # noqa: BLE001 - BookError/NumberError: a reject
                return (REJECT, _REASON_CODE["apply_error"], sym, 0, 0, ts), str(exc)
        else:
            book = self._l2.pop(sym, None)
            if book is None:
                return ((REJECT, _REASON_CODE["update_before_snapshot"], sym, 0, 0, ts),
                        "book update without a valid snapshot")
            try:
                res = book.apply(kind, data)
            except Exception as exc:  # noqa: BLE001
                return (REJECT, _REASON_CODE["apply_error"], sym, 0, 0, ts), str(exc)
        return self._settle(self._l2, sym, book, ts, data.checksum, res.computed, res.crossed)

    def _l3_item(self, kind: str, data: Any) -> tuple[tuple[int, ...], str | None]:
        sym = self._intern(data.symbol)
        ts = NO_TS if data.ts_ns is None else data.ts_ns
        if kind == "snapshot":
            self._l3.pop(sym, None)
            try:
                depth = self._ack_depth.get((CH_LEVEL3, sym)) or 10
                orders = [*data.bids, *data.asks]
                pp, qp = self._precisions(data.symbol, [o.limit_price for o in orders],
                                          [o.order_qty for o in orders])
                book = L3Book(data.symbol, depth, pp, qp)
                res = book.apply(kind, data)
            except Exception as exc:  # noqa: BLE001
                return (REJECT, _REASON_CODE["apply_error"], sym, 0, 0, ts), str(exc)
        else:
            book = self._l3.pop(sym, None)
            if book is None:
                return ((REJECT, _REASON_CODE["update_before_snapshot"], sym, 0, 0, ts),
                        "level3 update without a valid snapshot")
            try:
                res = book.apply(kind, data)
            except Exception as exc:  # noqa: BLE001
                return (REJECT, _REASON_CODE["apply_error"], sym, 0, 0, ts), str(exc)
        return self._settle(self._l3, sym, book, ts, data.checksum, res.computed, res.crossed)

    @staticmethod
    def _settle(books: dict[int, Any], sym: int, book: Any, ts: int, checksum: int | None,
                computed: int, crossed: bool) -> tuple[tuple[int, ...], str | None]:
        if checksum is not None and checksum != computed:
            verdict, expected = MISMATCH, checksum
        elif crossed:
            verdict, expected = CROSSED, checksum or 0
        elif checksum is None:
            verdict, expected = UNCHECKED, 0
        else:
            verdict, expected = OK, checksum
        if verdict in (OK, UNCHECKED):
            books[sym] = book
        return (verdict, 0, sym, expected, computed, ts), None

    def l2_levels(self, symbol: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]] | None:
        """As :meth:`CoreSpotChecker.l2_levels`."""
        book = self._l2.get(self._ids.get(symbol, -1))
        if book is None:
            return None
        return book.levels("bid"), book.levels("ask")

    def l3_orders(self, symbol: str) -> tuple[list[tuple[str, int, int]],
                                              list[tuple[str, int, int]]] | None:
        """As :meth:`CoreSpotChecker.l3_orders`."""
        book = self._l3.get(self._ids.get(symbol, -1))
        if book is None:
            return None
        return ([(o.order_id, o.price, o.qty) for o in book.orders("bid")],
                [(o.order_id, o.price, o.qty) for o in book.orders("ask")])


# ------------------------------------------------------------------------------ journal


def journal_segments(path: Path) -> list[Path]:
    """The segments ``path`` designates: one ``.kjz`` file, a journal directory, or an
    archive root (its ``journal/``). Raises :class:`JournalPathError` when there is none."""
    if path.is_file():
        if path.name.endswith(SEGMENT_SUFFIX):
            return [path]
        raise JournalPathError(f"{path} is not a journal segment (*{SEGMENT_SUFFIX})")
    if not path.is_dir():
        raise JournalPathError(f"{path} does not exist")
    base = path / "journal" if (path / "journal").is_dir() else path
    found = [base / name for name in list_segments(base)]
    if not found:
        raise JournalPathError(f"no journal segment (*{SEGMENT_SUFFIX}) under {path}")
    return found


def _group(segment: Path) -> str:
    """Segments of one recording share books: live capture, or one ``ingest/<digest>``."""
    parts = segment.parts
    if "ingest" in parts:
        i = parts.index("ingest")
        return "/".join(parts[: i + 2])
    return str(segment.parent.parent)


def _frames(segments: Sequence[Path], infos: dict[str, SegmentInfo],
            fix: FixJournalChecker | None = None) -> Iterator[tuple[str, int, int, bytes, bool]]:
    """``(segment, record, recv_ns, payload, futures)`` of every Spot v2 and Futures frame
    received (``futures``: the frame is a Futures one); FIX frames (both directions) and
    control markers go to ``fix`` (:mod:`recorder.verify_fix`), in journal order."""
    for seg in segments:
        name = str(seg)
        info = infos.setdefault(name, SegmentInfo())
        for index, frame in read_segment(seg, info=info):
            stream = frame.stream
            if frame.direction == "in" and (
                    stream == "spot" or stream == "l3" or stream == "futures"):
                yield name, index, frame.recv_ns, frame.payload, stream == "futures"
            elif fix is not None:
                if stream == "fix" or stream == "fix_l3":
                    fix.frame(name, index, frame.recv_ns, frame.conn_id, stream,
                              frame.direction, frame.payload)
                elif stream == "control":
                    fix.marker(frame.payload)


def verify_journal(paths: Sequence[Path], engine: Engine = "core",
                   progress: Callable[[int], None] | None = None,
                   batch_frames: int = BATCH_FRAMES) -> dict[str, Any]:
    """Re-check every ``book``/``level3`` checksum of the journal segments under ``paths``.

    Returns the report described in the module docstring. Raises
    :class:`JournalPathError` for a path without segments.
    """
    segments: list[Path] = []
    for p in paths:
        segments.extend(journal_segments(Path(p)))
    groups: dict[str, list[Path]] = defaultdict(list)
    for seg in segments:
        groups[_group(seg)].append(seg)
    per: dict[tuple[str, str], dict[str, int]] = defaultdict(
        lambda: {"frames": 0, "checked": 0, "verified": 0, "mismatches": 0, "crossed": 0,
                 "unchecked": 0, "rejects": 0})
    report: dict[str, Any] = {"segments": len(segments), "frames": 0, "frames_checked": 0,
                              "verified": 0, "mismatches": 0, "crossed": 0, "unchecked": 0,
                              "skipped": 0, "rejects": 0, "fix_not_checkable": 0}
    by_reason: dict[str, int] = defaultdict(int)
    failures: list[dict[str, Any]] = []
    torn: list[dict[str, Any]] = []
    futures = _FuturesTally()
    fix = FixJournalChecker()
    for _, group in sorted(groups.items()):
        checker: CoreSpotChecker | ReferenceSpotChecker = (
            CoreSpotChecker() if engine == "core" else ReferenceSpotChecker())
        fchecker: CoreFuturesChecker | ReferenceFuturesChecker = (
            CoreFuturesChecker() if engine == "core" else ReferenceFuturesChecker())
        infos: dict[str, SegmentInfo] = {}
        batch: list[tuple[str, int, int, bytes]] = []
        fbatch: list[tuple[str, int, int, bytes]] = []
        stream = _frames(group, infos, fix)
        while True:
            batch.clear()
            fbatch.clear()
            for item in stream:
                (fbatch if item[4] else batch).append(item[:4])
                if len(batch) + len(fbatch) >= batch_frames:
                    break
            if not batch and not fbatch:
                break
            if batch:
                v = checker.feed([b[3] for b in batch])
                _tally(v, batch, per, report, by_reason, failures)
            if fbatch:
                futures.add(fchecker.feed([b[3] for b in fbatch]), fbatch)
            if progress is not None:
                progress(len(batch) + len(fbatch))
        fix.close_all()
        torn.extend({"segment": name, "error": info.error}
                    for name, info in infos.items() if info.torn)
    report["futures"] = futures.report()
    report["fix"] = fix.report()
    report["fix_not_checkable"] = report["fix"]["messages"]
    report["rejects_by_reason"] = dict(sorted(by_reason.items()))
    report["per"] = [{"channel": c, "symbol": s, **counts}
                     for (c, s), counts in sorted(per.items())]
    report["failures"] = failures[:100]
    report["torn_segments"] = torn
    return report


def _tally(v: FrameVerdicts, batch: list[tuple[str, int, int, bytes]],
           per: dict[tuple[str, str], dict[str, int]], report: dict[str, Any],
           by_reason: dict[str, int], failures: list[dict[str, Any]]) -> None:
    n = len(v)
    report["frames"] += n
    counts = np.bincount(v.verdict, minlength=6)
    report["verified"] += int(counts[OK])
    report["mismatches"] += int(counts[MISMATCH])
    report["crossed"] += int(counts[CROSSED])
    report["unchecked"] += int(counts[UNCHECKED])
    report["skipped"] += int(counts[SKIPPED])
    report["rejects"] += int(counts[REJECT])
    report["frames_checked"] += int(counts[OK] + counts[MISMATCH] + counts[CROSSED])
    for code, k in enumerate(np.bincount(v.reason[v.verdict == REJECT], minlength=len(REASONS))):
        if k:
            by_reason[REASONS[code]] += int(k)
    book = (v.channel == CH_BOOK) | (v.channel == CH_LEVEL3)
    has_symbol = book & (v.symbol != NO_SYMBOL)
    if has_symbol.any():
        nsym = len(v.symbols)
        key = v.channel[has_symbol].astype(np.int64) * nsym + v.symbol[has_symbol]
        verdicts = v.verdict[has_symbol]
        for name, mask in (("frames", None), ("verified", verdicts == OK),
                           ("mismatches", verdicts == MISMATCH), ("crossed", verdicts == CROSSED),
                           ("unchecked", verdicts == UNCHECKED), ("rejects", verdicts == REJECT),
                           ("checked", (verdicts == OK) | (verdicts == MISMATCH)
                            | (verdicts == CROSSED))):
            keys = key if mask is None else key[mask]
            uniq, cnt = np.unique(keys, return_counts=True)
            for k, c in zip(uniq.tolist(), cnt.tolist()):
                ch, sym = divmod(k, nsym)
                per[(CHANNELS[ch], v.symbols[sym])][name] += c
    for i in np.flatnonzero((v.verdict == MISMATCH) | (v.verdict == CROSSED)).tolist():
        if len(failures) >= 100:
            break
        seg, record, recv_ns, _ = batch[i]
        ts = int(v.ts_ns[i])
        sym = int(v.symbol[i])
        failures.append({
            "verdict": VERDICTS[v.verdict[i]], "channel": CHANNELS[v.channel[i]],
            "symbol": v.symbols[sym] if sym != NO_SYMBOL else None,
            "segment": seg, "record": record, "recv_ns": recv_ns,
            "recv": ns_to_rfc3339(recv_ns), "ts_ns": None if ts == NO_TS else ts,
            "expected": int(v.expected[i]), "computed": int(v.computed[i])})


class _FuturesTally:
    """The ``futures`` part of the journal report: Futures book frames checked by
    :mod:`recorder.verify_futures` (seq continuity, exact full-depth books)."""

    def __init__(self) -> None:
        self.counts = {"frames": 0, "book_frames": 0, "ok": 0, "seq_gaps": 0, "crossed": 0,
                       "skipped": 0, "rejects": 0}
        self.by_reason: dict[str, int] = defaultdict(int)
        self.gaps: list[dict[str, Any]] = []

    def add(self, v: FuturesVerdicts, batch: list[tuple[str, int, int, bytes]]) -> None:
        c = self.counts
        counts = np.bincount(v.verdict, minlength=4)
        c["frames"] += len(v)
        c["book_frames"] += int(np.count_nonzero(v.kind != FUT_NO_KIND))
        c["ok"] += int(counts[FUT_OK])
        c["seq_gaps"] += int(counts[FUT_SEQ_GAP])
        c["skipped"] += int(counts[FUT_SKIPPED])
        c["rejects"] += int(counts[FUT_REJECT])
        c["crossed"] += int(np.count_nonzero(v.crossed))
        rejected = v.reason[v.verdict == FUT_REJECT]
        for code, k in enumerate(np.bincount(rejected, minlength=len(FUTURES_REASONS))):
            if k:
                self.by_reason[FUTURES_REASONS[code]] += int(k)
        for i in np.flatnonzero(v.verdict == FUT_SEQ_GAP).tolist():
            if len(self.gaps) >= 100:
                break
            seg, record, recv_ns, _ = batch[i]
            self.gaps.append({
                "product_id": v.products[int(v.product[i])], "expected": int(v.expected[i]),
                "got": int(v.seq[i]), "missing": int(v.seq[i] - v.expected[i]),
                "segment": seg, "record": record, "recv_ns": recv_ns,
                "recv": ns_to_rfc3339(recv_ns)})

    def report(self) -> dict[str, Any]:
        return {**self.counts, "rejects_by_reason": dict(sorted(self.by_reason.items())),
                "gaps": self.gaps}


def print_journal_report(report: dict[str, Any]) -> None:
    """The human-readable report of :func:`verify_journal`."""
    click.echo(f"journal: {report['segments']} segments, {report['frames']:,} frames; book "
               f"checksums checked {report['frames_checked']:,}, verified "
               f"{report['verified']:,}, mismatches {report['mismatches']}, crossed "
               f"{report['crossed']}; unchecked (no checksum) {report['unchecked']:,}")
    reasons = [f"{r} {n:,}" for r, n in report["rejects_by_reason"].items()]
    click.echo(f"rejects {report['rejects']:,}" + (f": {', '.join(reasons)}" if reasons else ""))
    for p in report["per"]:
        click.echo(f"  {p['channel']:7} {p['symbol']:12} frames {p['frames']:>9}  checked "
                   f"{p['checked']:>9}  verified {p['verified']:>9}  mismatches "
                   f"{p['mismatches']:>4}  rejects {p['rejects']:>5}")
    for f in report["failures"][:10]:
        click.echo(f"  FAIL {f['verdict']} {f['channel']} {f['symbol']} at {f['recv']} "
                   f"({f['segment']} record {f['record']}): expected {f['expected']} "
                   f"computed {f['computed']}")
    fut = report.get("futures") or {}
    if fut.get("frames"):
        reasons = [f"{r} {n:,}" for r, n in fut["rejects_by_reason"].items()]
        click.echo(f"futures: {fut['frames']:,} frames, book frames {fut['book_frames']:,}: in "
                   f"sequence {fut['ok']:,}, seq gaps {fut['seq_gaps']}, crossed "
                   f"{fut['crossed']}; rejects {fut['rejects']:,}"
                   + (f": {', '.join(reasons)}" if reasons else ""))
        for g in fut["gaps"][:10]:
            click.echo(f"  GAP futures book {g['product_id']} at {g['recv']} ({g['segment']} "
                       f"record {g['record']}): seq {g['got']}, expected {g['expected']}")
    fx = report.get("fix") or {}
    if fx.get("messages"):
        click.echo(f"FIX messages {fx['messages']:,}: checksums not checkable, FIX carries no "
                   "Kraken CRC32")
        reasons = [f"{r} {n:,}" for r, n in fx["rejects_by_reason"].items()]
        click.echo(f"fix: {fx['connections']} connections, {fx['messages']:,} messages: seq "
                   f"gaps {fx['seq_gaps']} ({fx['missing']:,} missing), duplicates "
                   f"{fx['duplicates']}, too low {fx['too_low']}, gap fills {fx['gap_fills']}; "
                   f"book messages {fx['book_messages']:,}, applied {fx['applied']:,}, book "
                   f"problems {fx['book_problems']}"
                   + (f": {', '.join(reasons)}" if reasons else "")
                   + f"; after gaps (waiting for a snapshot) {fx['after_gap']}")
        for c in fx["per_connection"]:
            click.echo(f"  conn {c['conn_id']:>5} {c['stream']:6} messages {c['messages']:>9}  "
                       f"gaps {c['seq_gaps']:>4}  duplicates {c['duplicates']:>4}  book "
                       f"problems {c['book_problems']:>4}  after gaps {c['after_gap']:>4}")
        for g in fx["gaps"][:10]:
            click.echo(f"  GAP fix conn {g['conn_id']} at {g['recv']} ({g['segment']} record "
                       f"{g['record']}): MsgSeqNum {g['got']}, expected {g['expected']}")
        for p in fx["problems"][:10]:
            click.echo(f"  FAIL fix {p['reason']} conn {p['conn_id']} {p['symbol']} "
                       f"35={p['msg_type']} MsgSeqNum {p['seq_num']} at {p['recv']} "
                       f"({p['segment']} record {p['record']}): {p['detail']}")
    for t in report["torn_segments"]:
        click.echo(f"  torn segment {t['segment']}: {t['error']} (read up to the damage)")


def journal_exit_code(report: dict[str, Any]) -> int:
    """1 when a checksum mismatch or a crossed book was found (a FIX book too: crossed, or a
    5041 mismatch), else 0. Sequence gaps and other rejects do not change it."""
    fx = report.get("fix") or {}
    return 1 if (report["mismatches"] or report["crossed"] or fx.get("crossed")
                 or fx.get("mismatches")) else 0


def run_journal_command(paths: Sequence[Path], as_json: bool) -> None:
    """``recorder verify --journal``: verify, print, exit (errors as one line)."""
    try:
        report = verify_journal(paths)
    except JournalPathError as exc:
        raise click.BadParameter(str(exc), param_hint="'--journal'") from None
    if as_json:
        click.echo(msgspec.json.encode(report).decode())
    else:
        print_journal_report(report)
    sys.exit(journal_exit_code(report))
