"""The one pipeline: frames -> decoded events -> books/validators -> archive rows.

Live capture and offline ingest both feed :class:`Pipeline` with :class:`~recorder.frames.Frame`
values in journal order. The pipeline is pure apart from its ``sink``: no clock, no network, no
files. It keeps per-column buffers (one Python list per column per dataset) and hands them to
``sink.append(dataset, columns)`` in batches (every ``batch_rows`` rows, and on :meth:`flush`).

What it maintains:

* books per (channel, symbol): ``book`` -> :class:`~recorder.book.l2.L2Book`, ``level3`` ->
  :class:`~recorder.book.l3.L3Book`, futures ``book`` -> :class:`~recorder.book.futures.FuturesBook`
  (with ``engine="core"``, the default, Spot v2 ``book`` / ``level3`` frames are derived by the
  compiled lane of :mod:`recorder.pipeline.lane` into the same buffers, exactly as here, its
  epochs holding compiled books; ``engine="python"`` is this reference model alone);
  each validated stretch is an *epoch* (id = ``recv_ns`` of the frame that started it) with a
  checkpoint at its start and every ``checkpoint_interval_ns``;
* trade-id continuity per symbol and seq continuity per futures product;
* subscriptions per connection (from acks and control markers) for ``liveness`` minutes;
* open gaps, closed when coverage resumes (next snapshot, backfill, reconnect).

Every frame that cannot be decoded or applied becomes a ``rejects`` row (never an exception,
never silence). Symbols are checked against Kraken's grammar
(:mod:`recorder.protocol.symbols`) before they become rows: a bad one (``BTC/USD\\0``,
``../x``, SQL text...) is a ``bad_symbol`` reject and is never stored as a symbol. Once an
``instrument`` snapshot has been seen, a spot symbol missing from it is *flagged*, not
rejected: its rows are kept (the list may lag a new listing, or omit tokenized assets) and one
``rejects`` row with ``stage = "flag"`` and ``reason = "unlisted_symbol"`` reports it, once per
symbol. :meth:`Pipeline.feed` returns :mod:`~recorder.pipeline.signals` for capture.
:meth:`Pipeline.to_state` / :meth:`Pipeline.from_state` convert it to and from the explicit,
versioned :class:`~recorder.pipeline.state.PipelineState` the archive stores with each commit
for exactly-once recovery (never a pickle). A commit takes it in two halves: :meth:`Pipeline.cut`
where frames are fed (row buffers handed over whole, the state copied with each spot book's
containers instead of its text checkpoint), then :class:`PipelineCut` builds the rows and the
state, equal to :meth:`Pipeline.flush` + :meth:`Pipeline.to_state` at the cut, in the commit
thread.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from operator import attrgetter
from typing import Any, Final, NamedTuple, Protocol

import msgspec
import numpy as np
import pyarrow as pa

from recorder import _core
from recorder.archive.schema import load_schemas
from recorder.book.checkpoint import L2Checkpoint, L3Checkpoint, encode_checkpoint
from recorder.book.futures import FuturesBook
from recorder.book.l2 import L2Book, L2CheckpointCut, token_units
from recorder.book.l3 import L3Book, L3CheckpointCut
from recorder.frames import Frame
from recorder.pipeline import markers as mk
from recorder.pipeline.lane import (
    ENGINES,
    CoreL2Book,
    CoreL2Cut,
    CoreL3Book,
    CoreL3Cut,
    restore_l2,
    restore_l3,
    to_reference,
)
from recorder.pipeline.settings import (
    DEFAULT_CHECKPOINT_INTERVAL_NS,
    DEFAULT_CHECKPOINT_MESSAGES,
    DeriveSettings,
)
from recorder.pipeline.signals import (
    BookDesync,
    FuturesSeqGap,
    InstrumentChanged,
    InstrumentSnapshot,
    PipelineCounters,
    Signal,
    SubscriptionAcked,
    SubscriptionRejected,
    TradeIdGap,
)
from recorder.pipeline.state import (
    ConnState,
    EpochState,
    FixRequestState,
    GapState,
    PipelineState,
    StateError,
    state_settings,
)
from recorder.protocol import futures as fut
from recorder.protocol import rest
from recorder.protocol import spot as sp
from recorder.protocol.errors import BookError, NumberError
from recorder.protocol.numbers import decimals_of, to_units, token_to_text
from recorder.protocol.reject import Reject
from recorder.protocol.symbols import SymbolKind, symbol_problem

__all__ = ["RowSink", "Pipeline", "PipelineCut", "ListSink", "DATASETS", "FIX_STREAMS"]

INT64_MAX: Final = 2**63 - 1
#: "no limit" for :meth:`Pipeline.feed_many`'s thresholds
_NEVER: Final = 1 << 62
INT64_MIN: Final = -(2**63)
MINUTE_NS: Final = 60_000_000_000
#: Default book checkpoint cadence in messages per (channel, symbol) epoch (bounds replay).
CHECKPOINT_MESSAGES: Final = DEFAULT_CHECKPOINT_MESSAGES
_KRAKEN_DEPTHS: Final = (10, 25, 100, 500, 1000)
#: The dataset schemas (``schemas/*.toml``): column lists, Arrow types and codes come from
#: them, never restated here.
_SCHEMAS: Final = load_schemas()
_TAKER_SIDE: Final = _SCHEMAS["trades"].column("side").codes()
#: Wire side (spot ``buy``/``sell``, REST ``b``/``s``) -> code of ``trades.side``.
_SIDE_BUYSELL: Final = {**_TAKER_SIDE, "b": _TAKER_SIDE["buy"], "s": _TAKER_SIDE["sell"]}
_ENC: Final = msgspec.json.Encoder()
#: Journal streams of FIX 4.4 market data (issue #17, docs/fix.md): raw messages of the L2
#: port's session and of the L3 port's session.
FIX_STREAMS: Final = ("fix", "fix_l3")
#: ``trades.source`` code of a trade received over FIX.
_FIX_TRADE_SOURCE: Final = _SCHEMAS["trades"].column("source").codes()["fix"]
#: Epoch and gap keys of FIX books and trades: ``("fix:" + channel, symbol)``, apart from
#: the WebSocket's ``(channel, symbol)`` so that a symbol recorded both ways keeps two epochs.
_FIX_KEY: Final = "fix:"
#: Framing failures of the FIX codec: the bytes are garbled and use up no MsgSeqNum.
_FIX_GARBLED: Final = frozenset({"garbage", "body_length", "checksum", "too_long"})
#: Most remembered outgoing FIX messages per pipeline (MsgSeqNum -> MDReqID, for a 35=3).
_FIX_SENT_MAX: Final = 4096


#: Datasets buffered per *message* (columns constant within a message stored once, expanded
#: to rows at flush) plus per-row columns; every other dataset is one list per column.
_MSG_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "book": ("recv_ns", "ts_ns", "symbol", "epoch", "conn_id", "event", "price_scale",
             "qty_scale", "checksum", "_rows"),
    "level3": ("recv_ns", "symbol", "epoch", "conn_id", "price_scale", "qty_scale", "checksum",
               "_rows"),
}
_ROW_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "book": ("side", "price", "qty"),
    "level3": ("ts_ns", "event", "side", "order_id", "price", "qty"),
}
#: Arrow type of each per-message column (from the schema).
_MSG_TYPES: Final[dict[str, pa.DataType]] = {
    c.name: c.arrow_type for name, cols in _MSG_COLUMNS.items()
    for c in _SCHEMAS[name].columns if c.name in cols}
_MAX_LIVENESS_MINUTES: Final = 24 * 60
#: Most distinct symbols memoised as valid per grammar (the memo restarts when full).
_SYMBOL_MEMO: Final = 100_000

#: Columns buffered per dataset: exactly the schema's columns, in its order.
DATASETS: Final[dict[str, tuple[str, ...]]] = {
    name: tuple(schema.names) for name, schema in _SCHEMAS.items()}


class RowSink(Protocol):
    """Where rows go: per-column values of equal length for one dataset, each a Python list
    or a ``pyarrow.Array`` (the pipeline builds some columns in Arrow directly)."""

    def append(self, dataset: str, columns: dict[str, Any]) -> None: ...


class ListSink:
    """A sink that keeps everything in memory as Python lists (tests, small tools)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, list[Any]]] = {}

    def append(self, dataset: str, columns: dict[str, Any]) -> None:
        target = self.data.setdefault(dataset, {k: [] for k in columns})
        for k, v in columns.items():
            target.setdefault(k, []).extend(v.to_pylist() if isinstance(v, pa.Array) else v)

    def rows(self, dataset: str) -> list[dict[str, Any]]:
        cols = self.data.get(dataset, {})
        names = list(cols)
        n = len(cols[names[0]]) if names else 0
        return [{k: cols[k][i] for k in names} for i in range(n)]


class _Epoch:
    """Bookkeeping of one open epoch (books and trade streams)."""

    __slots__ = ("epoch", "stream", "channel", "symbol", "conn_id", "depth", "pp", "qp",
                 "psource", "start_ns", "end_ns", "start_reason", "messages", "rows", "ok",
                 "failed", "book", "last_cp_ns", "last_id", "last_cp_msg")

    def __init__(self, epoch: int, stream: str, channel: str, symbol: str, conn_id: int,
                 start_reason: str) -> None:
        self.epoch = epoch
        self.stream = stream
        self.channel = channel
        self.symbol = symbol
        self.conn_id = conn_id
        self.depth: int | None = None
        self.pp: int | None = None
        self.qp: int | None = None
        self.psource: str | None = None
        self.start_ns = epoch
        self.end_ns = epoch
        self.start_reason = start_reason
        self.messages = 0
        self.rows = 0
        self.ok = 0
        self.failed = 0
        self.book: Any = None
        self.last_cp_ns = epoch
        self.last_cp_msg = 0
        self.last_id: int | None = None


class _Gap:
    __slots__ = ("start_ns", "stream", "channel", "symbol", "conn_id", "cause", "missing",
                 "missing_count", "detail")

    def __init__(self, start_ns: int, stream: str, channel: str, symbol: str, conn_id: int,
                 cause: str, missing: str | None = None, missing_count: int | None = None,
                 detail: str | None = None) -> None:
        self.start_ns = start_ns
        self.stream = stream
        self.channel = channel
        self.symbol = symbol
        self.conn_id = conn_id
        self.cause = cause
        self.missing = missing
        self.missing_count = missing_count
        self.detail = detail


class _Conn:
    """Liveness accounting of one connection: subscriptions and the current minute's counts."""

    __slots__ = ("stream", "subs", "minute", "until", "counts", "ended", "totals")

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.subs: dict[tuple[str, str], int] = {}  # (channel, symbol) -> since ns
        self.minute = -1
        #: ``minute + MINUTE_NS`` once :meth:`Pipeline._tick` computed ``minute`` (so
        #: ``minute <= recv < until`` means "recv is in the current minute" without a
        #: division); ``== minute`` (an empty range) until then, e.g. after a restore
        self.until = -1
        self.counts: dict[tuple[str, str], list[int]] = {}  # key -> [frames, first, last]
        self.ended: dict[tuple[str, str], tuple[int, int]] = {}  # ended this minute: (from, to)
        #: counts of the minutes already written: key -> (frames, last ns); not state, for
        #: :meth:`Pipeline.activity`
        self.totals: dict[tuple[str, str], tuple[int, int]] = {}


def _units(token: Any, precision: int) -> int:
    return token_units(token, precision)


def _cut(cols: tuple[list[Any], ...], first: int, n: int) -> None:
    """Cut the row columns ``cols[first:]`` back to ``n`` rows (a refused message's rows)."""
    for c in cols[first:]:
        del c[n:]


def _infer_precision(tokens: Iterable[Any]) -> int:
    best = 0
    for t in tokens:
        d = decimals_of(t)
        if d > best:
            best = d
    return best


def _l2_depth(ack_depth: int | None, bids: int, asks: int) -> int:
    if ack_depth:
        return ack_depth
    n = max(bids, asks, 1)
    for d in _KRAKEN_DEPTHS:
        if n <= d:
            return d
    return n


class _Checks:
    """The pipeline's symbol checks and report counters.

    ``ok``: symbols accepted per grammar (``spot``/``futures`` bound for the hot path: the
    check is one set lookup); ``flagged``: spot symbols already reported as missing from the
    instrument list (part of the state); the rest count what this object saw (not state):
    rejects and flags by reason, frames with at least one reject, rows handed to the sink."""

    __slots__ = ("ok", "spot", "futures", "flagged", "rejects", "flags", "rejected_frames",
                 "last_rejected", "rows_flushed")

    def __init__(self) -> None:
        self.ok: dict[str, set[str]] = {
            kind: set() for kind in ("spot", "asset", "futures", "rest", "any")}
        self.spot = self.ok["spot"]
        self.futures = self.ok["futures"]
        self.flagged: set[str] = set()
        self.rejects: dict[str, int] = {}
        self.flags: dict[str, int] = {}
        self.rejected_frames = 0
        self.last_rejected: Frame | None = None
        self.rows_flushed: dict[str, int] = {}


def _expand_columns(name: str, m: dict[str, list[Any]], r: dict[str, list[Any]],
                    ov: dict[int, str], pause: Callable[[], None] | None = None
                    ) -> dict[str, Any]:
    """Per-row columns of the message dataset ``name`` from its per-message buffers ``m``,
    per-row buffers ``r`` and overflow texts ``ov`` (read only); ``pause``: called after each
    column expanded.

    Per-message values are repeated over the message's rows with one Arrow ``take``;
    ``checksum`` is set on each message's last row only (null elsewhere)."""
    counts = np.asarray(m["_rows"], dtype=np.int64)
    total = int(counts.sum())
    nmsg = len(counts)
    idx = pa.array(np.repeat(np.arange(nmsg, dtype=np.int64), counts))
    last = np.full(total, -1, dtype=np.int64)
    last[np.cumsum(counts) - 1] = np.arange(nmsg, dtype=np.int64)
    last_idx = pa.array(last, mask=last < 0)
    out: dict[str, Any] = {}
    for c in DATASETS[name]:
        if c in r:
            out[c] = r[c]
        elif c == "symbol":
            out[c] = pa.array(m[c], pa.string()).dictionary_encode().take(idx)
        elif c == "checksum":
            out[c] = pa.array(m[c], pa.uint32()).take(last_idx)
        elif c == "overflow":
            col: list[str | None] = [None] * total
            for i, text in ov.items():
                col[i] = text
            out[c] = col
        else:
            out[c] = pa.array(m[c], _MSG_TYPES[c]).take(idx)
        if pause is not None:
            pause()
    return out


#: an open epoch's fields, in :func:`_epoch_state`'s order (one C-level call at a cut)
_EPOCH_FIELDS: Final = attrgetter(
    "epoch", "stream", "channel", "symbol", "conn_id", "depth", "pp", "qp", "psource",
    "start_ns", "end_ns", "start_reason", "messages", "rows", "ok", "failed", "last_cp_ns",
    "last_id", "last_cp_msg")


def _epoch_state(fields: tuple[Any, ...]) -> EpochState:
    """The :class:`EpochState` (without its book) of an epoch's :data:`_EPOCH_FIELDS`."""
    (epoch, stream, channel, symbol, conn_id, depth, pp, qp, psource, start_ns, end_ns,
     start_reason, messages, rows, ok, failed, last_cp_ns, last_id, last_cp_msg) = fields
    return EpochState(
        epoch=epoch, stream=stream, channel=channel, symbol=symbol, conn_id=conn_id,
        depth=depth, price_precision=pp, qty_precision=qp, precision_source=psource,
        start_ns=start_ns, end_ns=end_ns, start_reason=start_reason, messages=messages,
        rows=rows, checksum_ok=ok, checksum_failed=failed, last_checkpoint_ns=last_cp_ns,
        last_id=last_id, last_checkpoint_message=last_cp_msg)


class PipelineCut:
    """A :class:`Pipeline` at a commit's cut, taken cheaply where frames are fed
    (:meth:`Pipeline.cut`) and turned into rows and state later, in any thread, while the
    pipeline goes on: the buffered rows' lists (handed over whole, as :meth:`Pipeline.flush`
    would hand them to the sink) and the state with each book's containers copied instead of
    its text checkpoint (:meth:`~recorder.book.l2.L2Book.checkpoint_later`).

    :meth:`rows` then :meth:`state` give exactly what :meth:`Pipeline.flush` and
    :meth:`Pipeline.to_state` would have given at the cut (the rows once: each dataset is
    dropped once taken; the state is built once and returned again)."""

    __slots__ = ("_rows", "_state", "_books", "row_count")

    def __init__(self, rows: list[tuple[str, Any]], state: PipelineState,
                 books: list[tuple[tuple[Any, ...], Any]], row_count: int) -> None:
        #: (dataset, its column lists) or (message dataset, (per-message, per-row, overflow))
        self._rows = rows
        self._state = state
        self._books: list[tuple[tuple[Any, ...], Any]] | None = books
        #: rows handed over at the cut (all datasets)
        self.row_count = row_count

    def rows(self, pause: Callable[[], None] | None = None
             ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(dataset, columns) in the order :meth:`Pipeline.flush` would have appended them to
        its sink at the cut; each is dropped from the cut once the consumer asks for the next
        (so a consumer that failed on one can start again from it). ``pause``: called after
        each column expanded."""
        pending = self._rows
        while pending:
            name, taken = pending[0]
            if name in _MSG_COLUMNS:
                m, r, ov = taken
                yield name, _expand_columns(name, m, r, ov, pause)
            else:
                yield name, taken
            del pending[0]

    def release(self) -> None:
        """Drop what the cut holds (its rows and state: tens of thousands of objects), so that
        they are freed on this thread rather than wherever the cut's last reference goes (a
        commit thread calls this once its commit is written)."""
        self._rows = []
        self._books = None
        self._state = PipelineState(checkpoint_interval_ns=0, batch_rows=0)

    def state(self, pause: Callable[[], None] | None = None) -> PipelineState:
        """The state :meth:`Pipeline.to_state` would have returned at the cut (its epochs and
        their book checkpoints' text built here). ``pause``: called after each epoch (a
        commit thread lets the feeding thread have the GIL there)."""
        if self._books is None:  # built already
            return self._state
        epochs = []
        for fields, book in self._books:
            es = _epoch_state(fields)
            if isinstance(book, (L2CheckpointCut, L3CheckpointCut, CoreL2Cut, CoreL3Cut)):
                book = book.materialize()
            if isinstance(book, L2Checkpoint):
                es.l2 = book
            elif isinstance(book, L3Checkpoint):
                es.l3 = book
            elif book is not None:
                es.futures = book
            epochs.append(es)
            if pause is not None:
                pause()
        self._state.epochs = epochs
        self._books = None
        return self._state


class Pipeline:
    """Frames in, rows out (to ``sink``), signals back (to capture). See the module docstring.

    ``checkpoint_interval_ns``: a book checkpoint every this many ns of receive time (besides
    the one at each epoch start). ``checkpoint_messages``: also one every this many messages of
    an epoch (0: time only), so a replay from the nearest checkpoint stays short on busy
    books. ``batch_rows``: buffered rows (all datasets) before handing
    them to the sink. ``instruments``: optional initial ``symbol -> (price_precision,
    qty_precision)``. ``engine``: ``"core"`` (default; Spot ``book`` / ``level3`` frames
    through the compiled lane, :mod:`recorder.pipeline.lane`) or ``"python"`` (the reference
    model); rows, signals, counters and state are the same.
    """

    #: Fixed attributes: slot access stays fast however many there are (an instance dict
    #: with more than 29 keys loses CPython's shared-key fast path: measured +2.4 % of
    #: instructions per frame for one attribute more).
    __slots__ = ("sink", "checkpoint_interval_ns", "checkpoint_messages", "batch_rows", "_buf",
                 "_mbuf", "_rbuf", "_ovbuf", "_mrows", "_book_cols", "_l3_cols", "_book_rows",
                 "_l3_rows", "_pending_rows", "precisions", "_instr_attrs", "_epochs", "_gaps",
                 "_conns", "_ack_depth", "_req_channel", "_trade_last", "_backfilled",
                 "running", "last_recv_ns", "frames", "messages", "checksums_ok",
                 "checksums_failed", "_checks", "_spot_ok", "_futures_ok", "_fix", "_lane",
                 "_sink_later",
                 "__weakref__")

    def __init__(
        self,
        sink: RowSink,
        *,
        checkpoint_interval_ns: int = DEFAULT_CHECKPOINT_INTERVAL_NS,
        checkpoint_messages: int = CHECKPOINT_MESSAGES,
        batch_rows: int = 200_000,
        instruments: dict[str, tuple[int, int]] | None = None,
        settings: DeriveSettings | None = None,
        engine: str = "core",
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"unknown pipeline engine {engine!r} (one of {', '.join(ENGINES)})")
        self.sink = sink
        #: the sink's ``append_later(dataset, build, rows)`` if it has one (the archive's
        #: :class:`~recorder.archive.store.PartitionWriter`): ``book`` / ``level3`` buffers
        #: go over unexpanded and are expanded where the sink builds its rows
        self._sink_later: Callable[[str, Callable[..., dict[str, Any]], int], None] | None = (
            getattr(sink, "append_later", None))
        if settings is not None:
            checkpoint_interval_ns = settings.checkpoint_interval_ns
            checkpoint_messages = settings.checkpoint_messages
        #: fixed at construction (see :attr:`settings`); never assigned afterwards
        self.checkpoint_interval_ns = checkpoint_interval_ns
        self.checkpoint_messages = checkpoint_messages
        self.batch_rows = batch_rows
        self._buf: dict[str, dict[str, list[Any]]] = {
            name: {c: [] for c in cols} for name, cols in DATASETS.items()
        }
        self._mbuf: dict[str, dict[str, list[Any]]] = {
            name: {c: [] for c in cols} for name, cols in _MSG_COLUMNS.items()}
        self._rbuf: dict[str, dict[str, list[Any]]] = {
            name: {c: [] for c in cols} for name, cols in _ROW_COLUMNS.items()}
        self._ovbuf: dict[str, dict[int, str]] = {name: {} for name in _MSG_COLUMNS}
        self._mrows: dict[str, int] = {name: 0 for name in _MSG_COLUMNS}
        #: the ``book`` / ``level3`` buffers' lists in one tuple each (per-message columns in
        #: ``_MSG_COLUMNS`` order, then per-row columns in ``_ROW_COLUMNS`` order) for the hot
        #: path; rebound by :meth:`_bind` whenever the buffers are replaced
        self._book_cols: tuple[list[Any], ...] = ()
        self._l3_cols: tuple[list[Any], ...] = ()
        self._book_rows: tuple[list[Any], ...] = ()
        self._l3_rows: tuple[list[Any], ...] = ()
        self._bind()
        self._pending_rows = 0
        self.precisions: dict[str, tuple[int, int]] = dict(instruments or {})
        self._instr_attrs: dict[tuple[str, str], tuple[str, str]] = {}  # (kind,sym)->(status,json)
        self._epochs: dict[tuple[str, str], _Epoch] = {}  # (channel, symbol) -> open epoch
        self._gaps: dict[tuple[str, str], _Gap] = {}  # open gaps by (channel, symbol)
        self._conns: dict[int, _Conn] = {}
        self._ack_depth: dict[tuple[str, str], int] = {}
        self._req_channel: dict[tuple[int, int], str] = {}  # (conn_id, req_id) -> channel
        #: symbol -> (last spot trade_id, its recv ns), kept across epochs and connections
        self._trade_last: dict[str, tuple[int, int]] = {}
        #: trade ids written from REST pages while backfill gaps of the symbol are open
        #: (state: a page overlapping an earlier one after a restart writes no id twice)
        self._backfilled: dict[str, set[int]] = {}
        self.running = False
        self.last_recv_ns: int | None = None
        self.frames = 0
        self.messages = 0
        #: Book messages whose Kraken checksum matched / did not match (cumulative, all
        #: channels; for capture status; persisted with the state).
        self.checksums_ok = 0
        self.checksums_failed = 0
        #: symbol memo, flags and report counters; the memo's spot and futures sets bound
        #: here too, for the hot path (one slot load and one set lookup per message)
        self._checks = _Checks()
        self._spot_ok = self._checks.spot
        self._futures_ok = self._checks.futures
        #: FIX sessions: expected MsgSeqNum, subscriptions, sent MarketDataRequests (state)
        self._fix = _FixSessions()
        #: the compiled Spot v2 book lane (``engine="core"``), None for the reference model
        self._lane: Any = (_core.SpotLane(_Epoch, CoreL2Book, CoreL3Book) if engine == "core"
                           else None)

    # ------------------------------------------------------------------ state

    def to_state(self) -> PipelineState:
        """The explicit, versioned state (:mod:`recorder.pipeline.state`) of this pipeline.

        Call after :meth:`flush` (rows are not part of the state; buffered rows raise)."""
        if self._pending_rows:
            raise RuntimeError("flush the pipeline before taking its state")
        return self._state(None)

    def cut(self) -> PipelineCut:
        """:meth:`flush` + :meth:`to_state` in two halves, for a commit cut where frames are
        fed: this cheap half hands the row buffers over whole (no Arrow conversion) and copies
        the state with each spot book's containers instead of its text checkpoint
        (:meth:`~recorder.book.l2.L2Book.checkpoint_later`, a few C-level copies per book);
        the returned :class:`PipelineCut` builds the rows and the state in any thread, equal
        to what :meth:`flush` and :meth:`to_state` give here. Raises like :meth:`to_state`
        (a book with no valid state), before anything is handed over."""
        books: list[tuple[tuple[Any, ...], Any]] = []
        state = self._state(books)
        flushed = self._checks.rows_flushed
        rows: list[tuple[str, Any]] = []
        count = 0
        for name, cols in self._buf.items():
            if name in _MSG_COLUMNS:
                n = self._mrows[name]
                if n:
                    count += n
                    flushed[name] = flushed.get(name, 0) + n
                    rows.append((name, (self._mbuf[name], self._rbuf[name], self._ovbuf[name])))
                    self._mbuf[name] = {c: [] for c in _MSG_COLUMNS[name]}
                    self._rbuf[name] = {c: [] for c in _ROW_COLUMNS[name]}
                    self._ovbuf[name] = {}
                    self._mrows[name] = 0
                continue
            first = cols[DATASETS[name][0]]
            if first:
                count += len(first)
                flushed[name] = flushed.get(name, 0) + len(first)
                rows.append((name, cols))
                self._buf[name] = {c: [] for c in DATASETS[name]}
        self._bind()
        self._pending_rows = 0
        return PipelineCut(rows, state, books, count)

    def _state(self, later: list[tuple[tuple[Any, ...], Any]] | None) -> PipelineState:
        """The state; ``later``: None for everything now, else a list that gets, per open
        epoch, its fields (:data:`_EPOCH_FIELDS`) and its book's checkpoint or, for a spot
        book, :meth:`checkpoint_later` cut; the state's ``epochs`` are then left empty (built
        by :meth:`PipelineCut.state`)."""
        epochs: list[EpochState] = []
        if later is not None:
            fields = _EPOCH_FIELDS
            for ep in self._epochs.values():
                book = ep.book
                if isinstance(book, (L2Book, L3Book, CoreL2Book, CoreL3Book)):
                    book = book.checkpoint_later()
                elif isinstance(book, FuturesBook):
                    book = book.checkpoint()
                later.append((fields(ep), book))
        for ep in self._epochs.values() if later is None else ():
            es = EpochState(
                epoch=ep.epoch, stream=ep.stream, channel=ep.channel, symbol=ep.symbol,
                conn_id=ep.conn_id, depth=ep.depth, price_precision=ep.pp,
                qty_precision=ep.qp, precision_source=ep.psource, start_ns=ep.start_ns,
                end_ns=ep.end_ns, start_reason=ep.start_reason, messages=ep.messages,
                rows=ep.rows, checksum_ok=ep.ok, checksum_failed=ep.failed,
                last_checkpoint_ns=ep.last_cp_ns, last_id=ep.last_id,
                last_checkpoint_message=ep.last_cp_msg)
            book = ep.book
            if isinstance(book, (L2Book, CoreL2Book)):
                es.l2 = book.checkpoint()
            elif isinstance(book, (L3Book, CoreL3Book)):
                es.l3 = book.checkpoint()
            elif isinstance(book, FuturesBook):
                es.futures = book.checkpoint()
            epochs.append(es)
        gaps = [GapState(key_channel=k[0], key_symbol=k[1], start_ns=g.start_ns,
                         stream=g.stream, channel=g.channel, symbol=g.symbol,
                         conn_id=g.conn_id, cause=g.cause, missing=g.missing,
                         missing_count=g.missing_count, detail=g.detail)
                for k, g in self._gaps.items()]
        conns = [ConnState(conn_id=cid, stream=c.stream, minute=c.minute,
                           subs=[(k[0], k[1], v) for k, v in c.subs.items()],
                           counts=[(k[0], k[1], v[0], v[1], v[2]) for k, v in c.counts.items()],
                           ended=[(k[0], k[1], v[0], v[1]) for k, v in c.ended.items()])
                 for cid, c in self._conns.items()]
        return PipelineState(
            checkpoint_interval_ns=self.checkpoint_interval_ns, batch_rows=self.batch_rows,
            checkpoint_messages=self.checkpoint_messages,
            running=self.running, last_recv_ns=self.last_recv_ns, frames=self.frames,
            messages=self.messages, checksums_ok=self.checksums_ok,
            checksums_failed=self.checksums_failed, precisions=dict(self.precisions),
            instruments=[(k[0], k[1], v[0], v[1]) for k, v in self._instr_attrs.items()],
            ack_depth=[(k[0], k[1], v) for k, v in self._ack_depth.items()],
            epochs=epochs, gaps=gaps, conns=conns,
            trade_last=[(k, v[0], v[1]) for k, v in self._trade_last.items()],
            flagged_symbols=sorted(self._checks.flagged),
            requests=[(k[0], k[1], v) for k, v in self._req_channel.items()],
            backfilled=[(sym, sorted(ids)) for sym, ids in self._backfilled.items()],
            fix_expected=sorted(self._fix.expected.items()),
            fix_requests=[FixRequestState(conn_id=k[0], md_req_id=k[1], channel=r.channel,
                                          depth=r.depth, symbols=list(r.symbols),
                                          trades=r.trades)
                          for k, r in self._fix.requests.items()],
            fix_sent=[(k[0], k[1], v) for k, v in self._fix.sent.items()],
            fix_logout_sent=sorted(self._fix.logout_sent))

    @classmethod
    def from_state(cls, state: PipelineState, sink: RowSink, engine: str = "core") -> Pipeline:
        """A pipeline continuing exactly from ``state`` (see :meth:`to_state`); ``engine``: as
        for the constructor (the rows are the same either way).

        Raises :class:`~recorder.pipeline.state.StateError` if a book checkpoint is invalid."""
        p = cls(sink, settings=state_settings(state), batch_rows=state.batch_rows,
                instruments=dict(state.precisions), engine=engine)
        p.running = state.running
        p.last_recv_ns = state.last_recv_ns
        p.frames = state.frames
        p.messages = state.messages
        p.checksums_ok = state.checksums_ok
        p.checksums_failed = state.checksums_failed
        p._instr_attrs = {(k, s): (st, a) for k, s, st, a in state.instruments}
        p._ack_depth = {(c, s): d for c, s, d in state.ack_depth}
        for es in state.epochs:
            ep = _Epoch(es.epoch, es.stream, es.channel, es.symbol, es.conn_id,
                        es.start_reason)
            ep.depth, ep.pp, ep.qp, ep.psource = (es.depth, es.price_precision,
                                                  es.qty_precision, es.precision_source)
            ep.start_ns, ep.end_ns = es.start_ns, es.end_ns
            ep.messages, ep.rows, ep.ok, ep.failed = (es.messages, es.rows, es.checksum_ok,
                                                      es.checksum_failed)
            ep.last_cp_ns, ep.last_id = es.last_checkpoint_ns, es.last_id
            ep.last_cp_msg = es.last_checkpoint_message
            try:
                if es.l2 is not None:
                    ep.book = (restore_l2(es.l2) if p._lane is not None and es.channel == "book"
                               and es.stream not in FIX_STREAMS else L2Book.restore(es.l2))
                elif es.l3 is not None:
                    ep.book = (restore_l3(es.l3) if p._lane is not None
                               and es.channel == "level3" and es.stream not in FIX_STREAMS
                               else L3Book.restore(es.l3))
                elif es.futures is not None:
                    ep.book = FuturesBook.restore(es.futures)
            except (BookError, NumberError) as exc:
                raise StateError(f"invalid book checkpoint for {es.channel} {es.symbol}: "
                                 f"{exc}") from exc
            if es.channel in ("book", "level3", "futures_book") and ep.book is None:
                raise StateError(f"open {es.channel} epoch of {es.symbol} has no book")
            key = ((_FIX_KEY + es.channel) if es.stream in FIX_STREAMS else es.channel,
                   es.symbol)
            p._epochs[key] = ep
        for g in state.gaps:
            p._gaps[(g.key_channel, g.key_symbol)] = _Gap(
                g.start_ns, g.stream, g.channel, g.symbol, g.conn_id, g.cause, g.missing,
                g.missing_count, g.detail)
        p._trade_last = {sym: (i, ns) for sym, i, ns in state.trade_last}
        p._checks.flagged = set(state.flagged_symbols)
        p._req_channel = {(c, r): ch for c, r, ch in state.requests}
        p._backfilled = {sym: set(ids) for sym, ids in state.backfilled}
        p._fix.expected = dict(state.fix_expected)
        p._fix.requests = {(r.conn_id, r.md_req_id): _FixRequest(
            r.channel, r.depth, tuple(r.symbols), r.trades) for r in state.fix_requests}
        p._fix.sent = {(c, q): md for c, q, md in state.fix_sent}
        p._fix.logout_sent = set(state.fix_logout_sent)
        for cs in state.conns:
            c = _Conn(cs.stream)
            c.minute = c.until = cs.minute  # until: not computed here (empty range)
            c.subs = {(ch, sy): v for ch, sy, v in cs.subs}
            c.counts = {(ch, sy): [n, a, b] for ch, sy, n, a, b in cs.counts}
            c.ended = {(ch, sy): (a, b) for ch, sy, a, b in cs.ended}
            p._conns[cs.conn_id] = c
        return p

    # ------------------------------------------------------------------ public API

    def feed(self, frame: Frame) -> list[Signal]:
        """Process one frame (journal order). Returns signals for capture (usually empty)."""
        lane = self._lane
        if lane is not None and (frame.stream == "spot" or frame.stream == "l3"):
            out: list[Signal] = []
            nxt, err, flush, _ = lane.feed(self, [frame], 0, 1, _NEVER, _NEVER, out)
            if err is not None:
                self._lane_error(frame, err)
                return out
            if nxt:
                if flush:
                    self.flush()
                return out
        return self._feed(frame)

    def feed_many(self, frames: list[Frame], start: int, stop: int, until_rows: int,
                  until_recv: int) -> int:
        """:meth:`feed` ``frames[start:]`` (signals dropped) as one :meth:`feed` per frame
        would, stopping after ``frames[stop - 1]``, after a frame that made the pipeline flush
        its rows to the sink, that left at least ``until_rows`` rows pending or whose
        ``recv_ns`` is at least ``until_recv``, or earlier (at least one frame is fed).
        Returns the index of the next frame to feed. Runs of Spot ``book`` frames go through
        the compiled lane in one call."""
        lane = self._lane
        if lane is None:
            self._feed(frames[start])
            return start + 1
        nxt, err, flush, foreign = lane.feed(self, frames, start, stop,
                                             max(min(until_rows, INT64_MAX), INT64_MIN),
                                             max(min(until_recv, INT64_MAX), INT64_MIN), [])
        if err is not None:
            self._lane_error(frames[nxt], err)
            return nxt + 1
        if flush:
            self.flush()
        elif foreign:  # no stop point before it: the reference derives it here
            self._feed(frames[nxt])
            return nxt + 1
        return nxt

    def _lane_error(self, frame: Frame, exc: BaseException) -> None:
        """The end of :meth:`_feed` for a frame whose derivation in the lane raised ``exc``
        part-way (as :meth:`_feed` handles an exception of the reference path)."""
        if not isinstance(exc, Exception):
            raise exc
        self._repair_buffers()
        self._reject(frame, "internal", "internal", f"{type(exc).__name__}: {exc}"[:300], None)
        self.last_recv_ns = frame.recv_ns
        if self._pending_rows >= self.batch_rows:
            self.flush()

    def _feed(self, frame: Frame) -> list[Signal]:
        """:meth:`feed` by the reference path."""
        self.frames += 1
        out: list[Signal] = []
        stream = frame.stream
        if frame.direction != "in":
            if stream in ("spot", "l3") and b'"subscribe"' in frame.payload:
                self._note_request(frame)
            elif stream in FIX_STREAMS:
                self._fix_out(frame)
            self.last_recv_ns = frame.recv_ns
            return out
        try:
            if stream == "spot" or stream == "l3":
                self._spot(frame, out)
            elif stream == "futures":
                self._futures(frame, out)
            elif stream == "control":
                self._control(frame, out)
            elif stream == "rest":
                self._rest(frame, out)
            elif stream in FIX_STREAMS:
                self._fix_in(frame, out)
            else:
                self._reject(frame, "decode", "unsupported_stream",
                             f"stream {stream!r} is journaled but not derived", None)
        except Exception as exc:  # noqa: BLE001 - a pipeline bug must not lose the frame
            self._repair_buffers()
            self._reject(frame, "internal", "internal", f"{type(exc).__name__}: {exc}"[:300],
                         None)
        self.last_recv_ns = frame.recv_ns
        if self._pending_rows >= self.batch_rows:
            self.flush()
        return out

    def _note_request(self, frame: Frame) -> None:
        """Remember the channel of an outgoing subscribe by ``req_id`` (a refusal's ack names
        no channel: a gap's label depends on it). Bounded; part of the state, so that a
        restart between a subscribe and its refusal labels the gap as a continuous run does."""
        try:
            msg = msgspec.json.decode(frame.payload)
            params = msg.get("params") or {}
            req_id, channel = msg.get("req_id"), params.get("channel")
        except Exception:  # noqa: BLE001 - our own outgoing frame; never worth a crash
            return
        if isinstance(req_id, int) and isinstance(channel, str):
            if len(self._req_channel) >= 4096:
                self._req_channel.clear()
            self._req_channel[(frame.conn_id, req_id)] = channel

    def _repair_buffers(self) -> None:
        """Roll back a row half-appended when an exception interrupted it: every dataset's
        columns are cut to the rows complete in all of them (rows are appended column by
        column; a row is complete only once its last column is appended), so buffers stay
        rectangular and the next flush cannot fail. Only runs after an exception."""
        for name, cols in self._buf.items():
            if name in _MSG_COLUMNS:
                continue
            n = min(len(v) for v in cols.values())
            for v in cols.values():
                del v[n:]
        for name in _MSG_COLUMNS:
            m = self._mbuf[name]
            nmsg = min(len(v) for v in m.values())
            for v in m.values():
                del v[nmsg:]
            rows = sum(m["_rows"])
            r = self._rbuf[name]
            for v in r.values():
                del v[rows:]
            if any(len(v) != rows for v in r.values()):  # a message's rows cut short
                n = min(len(v) for v in r.values())
                while m["_rows"] and rows > n:
                    rows -= m["_rows"].pop()
                    for c, v in m.items():
                        if c != "_rows":
                            del v[len(m["_rows"]):]
                for v in r.values():
                    del v[rows:]
            self._mrows[name] = rows
            ov = self._ovbuf[name]
            for i in [i for i in ov if i >= rows]:
                del ov[i]

    def flush(self) -> None:
        """Hand every buffered row to the sink (``book`` and ``level3`` columns that are
        constant within a message arrive as Arrow arrays expanded from one value per message,
        expanded by the sink's ``append_later`` where it builds its rows if it has one;
        everything else as Python lists)."""
        flushed = self._checks.rows_flushed
        for name, cols in self._buf.items():
            if name in _MSG_COLUMNS:
                n = self._mrows[name]
                if n:
                    flushed[name] = flushed.get(name, 0) + n
                    if self._sink_later is None:
                        self.sink.append(name, self._expand(name))
                    else:  # expanded where the sink builds its rows
                        self._sink_later(name, partial(_expand_columns, name,
                                                       *self._take_messages(name)), n)
                continue
            first = cols[DATASETS[name][0]]
            if first:
                flushed[name] = flushed.get(name, 0) + len(first)
                self.sink.append(name, cols)
                self._buf[name] = {c: [] for c in DATASETS[name]}
        self._pending_rows = 0

    @property
    def settings(self) -> DeriveSettings:
        """The settings that decide this pipeline's rows (fixed at construction; journaled with
        ``ProcessStart`` and stored with its state)."""
        return DeriveSettings(checkpoint_interval_ns=self.checkpoint_interval_ns,
                              checkpoint_messages=self.checkpoint_messages)

    @property
    def engine(self) -> str:
        """``"core"`` (the compiled Spot book lane) or ``"python"`` (the reference model)."""
        return "python" if self._lane is None else "core"

    @property
    def pending_rows(self) -> int:
        """Rows buffered here, not yet handed to the sink (a commit policy reads this)."""
        return self._pending_rows

    def counters(self) -> PipelineCounters:
        """Cumulative counters (persisted with the state, so they continue across restarts)."""
        return PipelineCounters(frames=self.frames, messages=self.messages,
                                checksums_ok=self.checksums_ok,
                                checksums_failed=self.checksums_failed)

    def activity(self, conn_id: int) -> dict[tuple[str, str], tuple[int, int]]:
        """Data seen on connection ``conn_id``: ``(channel, symbol) -> (messages, last
        recv_ns)`` for every key the pipeline counted for liveness (book, level3, trade, ohlc,
        ticker; futures book/trade/ticker; ``("heartbeat", "")``) since this object first saw
        the connection (not part of the state). Empty for an unknown or ended connection."""
        conn = self._conns.get(conn_id)
        if conn is None:
            return {}
        out = dict(conn.totals)
        for key, (n, _first, last) in conn.counts.items():
            prev = out.get(key)
            out[key] = (n, last) if prev is None else (prev[0] + n, last)
        return out

    @property
    def reject_counts(self) -> dict[str, int]:
        """Rejects by reason that this object wrote (not part of the state)."""
        return self._checks.rejects

    @property
    def flag_counts(self) -> dict[str, int]:
        """Flags (``stage = "flag"`` rows) by reason that this object wrote."""
        return self._checks.flags

    @property
    def rejected_frames(self) -> int:
        """Frames with at least one reject, fed to this object."""
        return self._checks.rejected_frames

    def row_counts(self) -> dict[str, int]:
        """Rows this object has produced so far per dataset (handed to the sink or still
        buffered); datasets without rows are absent. Not part of the state."""
        out = dict(self._checks.rows_flushed)
        for name, cols in self._buf.items():
            n = self._mrows[name] if name in _MSG_COLUMNS else len(cols[DATASETS[name][0]])
            if n:
                out[name] = out.get(name, 0) + n
        return out

    def _expand(self, name: str) -> dict[str, Any]:
        """Per-row columns of ``name`` from its per-message and per-row buffers (then reset;
        see :func:`_expand_columns`)."""
        return _expand_columns(name, *self._take_messages(name))

    def _take_messages(self, name: str
                       ) -> tuple[dict[str, list[Any]], dict[str, list[Any]], dict[int, str]]:
        """The per-message, per-row and overflow buffers of ``name``, handed over whole (new
        empty ones take their place)."""
        out = (self._mbuf[name], self._rbuf[name], self._ovbuf[name])
        self._mbuf[name] = {c: [] for c in _MSG_COLUMNS[name]}
        self._rbuf[name] = {c: [] for c in _ROW_COLUMNS[name]}
        self._ovbuf[name] = {}
        self._mrows[name] = 0
        self._bind()
        return out

    def _bind(self) -> None:
        """Point ``_book_cols`` / ``_l3_cols`` at the current ``book`` / ``level3`` lists."""
        self._book_cols = (*self._mbuf["book"].values(), *self._rbuf["book"].values())
        self._l3_cols = (*self._mbuf["level3"].values(), *self._rbuf["level3"].values())
        self._book_rows = self._book_cols[10:13]  # what L2Book.apply appends to
        self._l3_rows = self._l3_cols[8:14]  # what L3Book.apply appends to

    def close(self, reason: str = "open") -> None:
        """End of input: write a row for each open epoch (``end_reason=reason``; a later row of
        the same epoch supersedes it), each open gap (unhealed), liveness of the current
        minutes, then flush. The pipeline can continue to be fed afterwards."""
        for ep in list(self._epochs.values()):
            self._epoch_row(ep, reason)
        for gap in list(self._gaps.values()):
            self._gap_row(gap, None, "open")
        for cid, conn in self._conns.items():
            if conn.minute >= 0:
                self._liveness_minute(cid, conn, conn.minute, self.last_recv_ns or 0)
        self.flush()

    # ------------------------------------------------------------------ row helpers

    def _reject(self, frame: Frame, stage: str, reason: str, detail: str,
                symbol: str | None) -> None:
        checks = self._checks
        checks.rejects[reason] = checks.rejects.get(reason, 0) + 1
        if frame is not checks.last_rejected:
            checks.last_rejected = frame
            checks.rejected_frames += 1
        self._reject_row(frame, stage, reason, detail, symbol)

    def _flag(self, frame: Frame, reason: str, detail: str, symbol: str) -> None:
        """A ``rejects`` row with ``stage = "flag"``: reported, but the frame's rows are kept."""
        self._checks.flags[reason] = self._checks.flags.get(reason, 0) + 1
        self._reject_row(frame, "flag", reason, detail, symbol)

    def _reject_row(self, frame: Frame, stage: str, reason: str, detail: str,
                    symbol: str | None) -> None:
        b = self._buf["rejects"]
        b["recv_ns"].append(frame.recv_ns)
        b["conn_id"].append(frame.conn_id)
        b["stream"].append(frame.stream)
        b["direction"].append(frame.direction)
        b["stage"].append(stage)
        b["reason"].append(reason)
        b["detail"].append(detail)
        b["symbol"].append(symbol)
        b["raw"].append(frame.payload)
        self._pending_rows += 1

    def _valid(self, frame: Frame, symbol: Any, kind: SymbolKind) -> bool:
        """True when ``symbol`` follows Kraken's ``kind`` grammar; else a ``bad_symbol``
        reject of ``frame`` (the symbol is only shown, escaped, in ``detail``)."""
        problem = symbol_problem(symbol, kind)
        if problem is None:
            return True
        shown = repr(symbol) if isinstance(symbol, str) else type(symbol).__name__
        if len(shown) > 60:
            shown = shown[:57] + "..."
        self._reject(frame, "decode", "bad_symbol", f"{kind} symbol {shown}: {problem}", None)
        return False

    def _admit(self, frame: Frame, symbol: Any, kind: SymbolKind) -> bool:
        """:meth:`_valid`, memoised per distinct symbol (callers test ``symbol in
        self._spot_ok`` / ``self._futures_ok`` first); a valid spot symbol missing from a known
        instrument list is flagged once (see module docstring) and admitted."""
        if not self._valid(frame, symbol, kind):
            return False
        checks = self._checks
        if kind == "spot" and symbol not in checks.flagged and self._unlisted(symbol):
            checks.flagged.add(symbol)
            self._flag(frame, "unlisted_symbol",
                       f"{symbol} is not in the instrument list recorded so far; its rows "
                       f"are kept", symbol)
        memo = checks.ok[kind]
        if len(memo) >= _SYMBOL_MEMO:
            memo.clear()
        memo.add(symbol)
        return True

    def _unlisted(self, symbol: str) -> bool:
        """An instrument list is known (pairs recorded) and ``symbol`` is not in it."""
        attrs = self._instr_attrs
        return ("pair", symbol) not in attrs and any(k[0] == "pair" for k in attrs)

    def _gap_row(self, g: _Gap, end_ns: int | None, healed_by: str) -> None:
        b = self._buf["gaps"]
        b["start_ns"].append(g.start_ns)
        b["end_ns"].append(end_ns)
        b["stream"].append(g.stream)
        b["channel"].append(g.channel)
        b["symbol"].append(g.symbol)
        b["conn_id"].append(g.conn_id)
        b["cause"].append(g.cause)
        b["missing"].append(g.missing)
        b["missing_count"].append(g.missing_count)
        b["healed_by"].append(healed_by)
        b["detail"].append(g.detail)
        self._pending_rows += 1

    def _open_gap(self, g: _Gap) -> None:
        key = (g.channel, g.symbol)
        if key not in self._gaps:
            self._gaps[key] = g

    def _close_gap(self, channel: str, symbol: str, end_ns: int, healed_by: str) -> None:
        g = self._gaps.pop((channel, symbol), None)
        if g is not None:
            self._gap_row(g, end_ns, "resubscribe" if g.cause == "subscribe_failed"
                          else healed_by)

    def _subscribe_failed(self, recv: int, stream: str, channel: str, symbol: str,
                          conn_id: int, error: str | None) -> None:
        """A refused/timed-out subscribe: an open gap of (channel, symbol), closed by the next
        successful ack or snapshot (``healed_by=resubscribe``). Unknown channel or symbol
        (``*``): nothing can close it, so it is written at once (unhealed)."""
        g = _Gap(recv, stream, channel, symbol, conn_id, "subscribe_failed", detail=error)
        if channel == "*" or symbol == "*":
            self._gap_row(g, None, "none")
            return
        cur = self._gaps.get((channel, symbol))
        if cur is None:
            self._gaps[(channel, symbol)] = g
        elif cur.cause != "subscribe_failed":  # already covered by an open gap: note why
            cur.detail = f"{cur.detail or ''}; subscribe_failed: {error or ''}".lstrip("; ")[:500]

    def _close_subscribe_failed(self, channel: str, symbol: str, end_ns: int) -> None:
        g = self._gaps.get((channel, symbol))
        if g is not None and g.cause == "subscribe_failed":
            self._close_gap(channel, symbol, end_ns, "resubscribe")

    def _epoch_row(self, ep: _Epoch, end_reason: str) -> None:
        b = self._buf["epochs"]
        b["epoch"].append(ep.epoch)
        b["stream"].append(ep.stream)
        b["channel"].append(ep.channel)
        b["symbol"].append(ep.symbol)
        b["conn_id"].append(ep.conn_id)
        b["depth"].append(ep.depth)
        b["price_precision"].append(ep.pp)
        b["qty_precision"].append(ep.qp)
        b["precision_source"].append(ep.psource)
        b["start_ns"].append(ep.start_ns)
        b["end_ns"].append(ep.end_ns)
        b["start_reason"].append(ep.start_reason)
        b["end_reason"].append(end_reason)
        b["messages"].append(ep.messages)
        b["rows"].append(ep.rows)
        b["checksum_ok"].append(ep.ok)
        b["checksum_failed"].append(ep.failed)
        self._pending_rows += 1

    def _end_epoch(self, key: tuple[str, str], reason: str, gap_cause: str | None,
                   at_ns: int, detail: str | None = None) -> _Epoch | None:
        ep = self._epochs.pop(key, None)
        if ep is None:
            return None
        self._epoch_row(ep, reason)
        if gap_cause is not None and key not in self._gaps:  # keyed as the epoch was
            self._gaps[key] = _Gap(ep.end_ns, ep.stream, ep.channel, ep.symbol, ep.conn_id,
                                   gap_cause, detail=detail)
        return ep

    def _checkpoint_row(self, ep: _Epoch, recv_ns: int, reason: str) -> None:
        book = ep.book
        b = self._buf["checkpoints"]
        cp = book.checkpoint()
        if ep.channel == "futures_book":
            blob = msgspec.msgpack.encode(cp)
            entries = len(book)
            crc = None
        else:
            blob = encode_checkpoint(cp)
            entries = len(book)
            crc = book.checksum()
        b["recv_ns"].append(recv_ns)
        b["channel"].append(ep.channel)
        b["symbol"].append(ep.symbol)
        b["epoch"].append(ep.epoch)
        b["epoch_message"].append(ep.messages)
        b["reason"].append(reason)
        b["depth"].append(ep.depth)
        b["price_precision"].append(ep.pp)
        b["qty_precision"].append(ep.qp)
        b["checksum"].append(crc)
        b["entries"].append(entries)
        b["book"].append(blob)
        ep.last_cp_ns = recv_ns
        ep.last_cp_msg = ep.messages
        self._pending_rows += 1

    def _checkpoint_due(self, ep: _Epoch, recv_ns: int) -> bool:
        """An ``interval`` checkpoint is due: ``checkpoint_interval_ns`` of receive time or
        ``checkpoint_messages`` messages since the epoch's last checkpoint."""
        n = self.checkpoint_messages
        return (recv_ns - ep.last_cp_ns >= self.checkpoint_interval_ns
                or (n > 0 and ep.messages - ep.last_cp_msg >= n))

    # ------------------------------------------------------------------ liveness

    def _conn(self, conn_id: int, stream: str) -> _Conn:
        conn = self._conns.get(conn_id)
        if conn is None:
            conn = self._conns[conn_id] = _Conn(stream)
        return conn

    def _tick(self, conn_id: int, stream: str, channel: str, symbol: str, recv_ns: int) -> None:
        """Count one message of (channel, symbol) on a connection for liveness."""
        conn = self._conns.get(conn_id)
        if conn is None:
            conn = self._conn(conn_id, stream)
        minute = recv_ns - recv_ns % MINUTE_NS
        if minute != conn.minute:
            if conn.minute >= 0:
                self._roll_minutes(conn_id, conn, minute)
            conn.minute = minute
        conn.until = minute + MINUTE_NS
        key = (channel, symbol)
        if channel != "heartbeat" and key not in conn.subs:
            conn.subs[key] = recv_ns  # data without a seen ack: subscribed from now
        c = conn.counts.get(key)
        if c is None:
            conn.counts[key] = [1, recv_ns, recv_ns]
        else:
            c[0] += 1
            c[2] = recv_ns

    def _roll_minutes(self, conn_id: int, conn: _Conn, new_minute: int) -> None:
        m = conn.minute
        self._liveness_minute(conn_id, conn, m, m + MINUTE_NS)
        m += MINUTE_NS
        n = 0
        while m < new_minute and conn.subs and n < _MAX_LIVENESS_MINUTES:
            self._liveness_minute(conn_id, conn, m, m + MINUTE_NS)
            m += MINUTE_NS
            n += 1

    def _liveness_minute(self, conn_id: int, conn: _Conn, minute: int, until: int) -> None:
        b = self._buf["liveness"]
        end = min(minute + MINUTE_NS, max(until, minute))
        keys = set(conn.subs) | set(conn.counts) | set(conn.ended)
        for key in sorted(keys):
            # the subscribed part of the minute: a subscription that ended in it (``ended``),
            # then the one still running (``subs``, e.g. resubscribed after a resnapshot)
            sub_ns = 0
            sub_from: int | None = None
            sub_to: int | None = None
            done = conn.ended.get(key)
            if done is not None:
                s, e = max(done[0], minute), min(done[1], end)
                if e > s:
                    sub_ns, sub_from, sub_to = e - s, s, e
            since = conn.subs.get(key)
            if since is not None:
                s = max(since, minute)
                if end > s:
                    sub_ns += end - s
                    sub_from = s if sub_from is None else sub_from
                    sub_to = end
            if key[0] == "heartbeat":
                sub_ns, sub_from, sub_to = 0, None, None
            c = conn.counts.get(key)
            b["minute_ns"].append(minute)
            b["conn_id"].append(conn_id)
            b["stream"].append(conn.stream)
            b["channel"].append(key[0])
            b["symbol"].append(key[1])
            b["subscribed_ns"].append(sub_ns)
            b["frames"].append(c[0] if c else 0)
            b["first_ns"].append(c[1] if c else None)
            b["last_ns"].append(c[2] if c else None)
            b["sub_from_ns"].append(sub_from)
            b["sub_to_ns"].append(sub_to)
            self._pending_rows += 1
        totals = conn.totals
        for key, (n, _first, last) in conn.counts.items():
            prev = totals.get(key)
            totals[key] = (n, last) if prev is None else (prev[0] + n, last)
        conn.counts = {}
        conn.ended = {}

    def _unsubscribe(self, conn: _Conn, key: tuple[str, str], at_ns: int) -> None:
        since = conn.subs.pop(key, None)
        if since is not None:
            # ended twice in one minute (e.g. a resnapshot: unsubscribed, data still in flight,
            # then the venue's unsubscribe ack): keep the whole subscribed span of the minute
            done = conn.ended.get(key)
            conn.ended[key] = (since, at_ns) if done is None else (min(done[0], since),
                                                                    max(done[1], at_ns))

    # ------------------------------------------------------------------ spot

    def _spot(self, frame: Frame, out: list[Signal]) -> None:
        ev = sp.decode_spot(frame.payload)
        t = type(ev)
        if t is sp.BookMessage:
            for data in ev.data:
                self._l2(frame, ev.type, data, out)
        elif t is sp.Level3Message:
            for data in ev.data:
                self._l3(frame, ev.type, data, out)
        elif t is sp.TradeMessage:
            self._trades(frame, ev, out)
        elif t is sp.Heartbeat:
            self._tick(frame.conn_id, frame.stream, "heartbeat", "", frame.recv_ns)
        elif t is sp.OhlcMessage:
            self._ohlc(frame, ev)
        elif t is sp.TickerMessage:
            self._ticker(frame, ev)
        elif t is sp.InstrumentMessage:
            self._instrument(frame, ev, out)
        elif t is sp.SubscribeAck or t is sp.UnsubscribeAck:
            self._ack(frame, ev, out)
        elif t is Reject:
            self._reject(frame, "decode", ev.reason, ev.detail, None)
        # StatusMessage, Pong: journaled only
        self.messages += 1

    def _ack(self, frame: Frame, ev: Any, out: list[Signal]) -> None:
        res = ev.result
        channel = res.channel if res is not None else ""
        symbol = (res.symbol if res is not None else None) or ev.symbol
        if symbol is not None and not self._valid(frame, symbol, "spot"):
            return
        conn = self._conn(frame.conn_id, frame.stream)
        if not ev.success:
            out.append(SubscriptionRejected(stream=frame.stream, conn_id=frame.conn_id,
                                            channel=channel, symbol=symbol,
                                            error=ev.error or "", recv_ns=frame.recv_ns))
            if type(ev) is sp.SubscribeAck:
                if not channel:
                    channel = ("level3" if frame.stream == "l3" else
                               self._req_channel.get((frame.conn_id, ev.req_id or -1), ""))
                self._subscribe_failed(frame.recv_ns, frame.stream, channel or "*",
                                       symbol or "*", frame.conn_id, ev.error)
            return
        if type(ev) is sp.SubscribeAck:
            if symbol is not None:
                self._close_subscribe_failed(channel, symbol, frame.recv_ns)
                conn.subs.setdefault((channel, symbol), frame.recv_ns)
                if res is not None and res.depth:
                    self._ack_depth[(channel, symbol)] = res.depth
            out.append(SubscriptionAcked(stream=frame.stream, conn_id=frame.conn_id,
                                         channel=channel, symbol=symbol,
                                         depth=res.depth if res else None,
                                         interval=res.interval if res else None,
                                         recv_ns=frame.recv_ns))
        else:
            if symbol is not None:
                self._unsubscribe(conn, (channel, symbol), frame.recv_ns)
                self._end_epoch((channel, symbol), "unsubscribed", None, frame.recv_ns)

    def _precision(self, symbol: str, tokens: Any) -> tuple[int, int, str]:
        known = self.precisions.get(symbol)
        if known is not None:
            return known[0], known[1], "instrument"
        prices, qtys = tokens
        return _infer_precision(prices), _infer_precision(qtys), "inferred"

    def _values(self, token: Any, scale: int, field: str, over: dict[str, str]) -> int | None:
        v = token_units(token, scale)
        if INT64_MIN <= v <= INT64_MAX:
            return v
        over[field] = token_to_text(token)
        return None

    def _desync(self, frame: Frame, channel: str, ep: _Epoch, reason: str,
                expected: int | None, computed: int | None, out: list[Signal]) -> None:
        cause = "checksum_mismatch" if reason == "checksum_mismatch" else (
            "crossed_book" if reason == "crossed" else reason)
        self._end_epoch((channel, ep.symbol), reason, cause, frame.recv_ns,
                        detail=None if expected is None else
                        f"expected {expected} computed {computed}")
        out.append(BookDesync(stream=frame.stream, channel=channel, symbol=ep.symbol,
                              depth=ep.depth, reason=reason, expected=expected,
                              computed=computed, recv_ns=frame.recv_ns))

    def _before_snapshot(self, frame: Frame, channel: str, symbol: str,
                         out: list[Signal]) -> None:
        """A book update with no valid snapshot (e.g. the snapshot was lost in a restart):
        unless a gap of (channel, symbol) is already open (its heal is under way), open an
        ``update_before_snapshot`` gap (closed by the next snapshot) and ask capture for a new
        snapshot with one :class:`BookDesync` per episode."""
        key = (channel, symbol)
        if key in self._gaps:
            return
        self._open_gap(_Gap(frame.recv_ns, frame.stream, channel, symbol, frame.conn_id,
                            "update_before_snapshot",
                            detail="updates without a snapshot were kept as rejects"))
        out.append(BookDesync(stream=frame.stream, channel=channel, symbol=symbol,
                              depth=self._ack_depth.get(key), reason="update_before_snapshot",
                              expected=None, computed=None, recv_ns=frame.recv_ns))

    def _overflow(self, name: str, base: int, pcol: list[Any], qcol: list[Any],
                  tokens: list[tuple[Any, Any]]) -> None:
        """Rows ``base..`` whose units do not fit int64: null units + exact text in
        ``overflow`` (the book still got the full units)."""
        ov = self._ovbuf[name]
        for i, (pt, qt) in enumerate(tokens):
            over: dict[str, str] = {}
            if not INT64_MIN <= pcol[base + i] <= INT64_MAX:
                over["price"] = token_to_text(pt)
                pcol[base + i] = None
            if not INT64_MIN <= qcol[base + i] <= INT64_MAX:
                over["qty"] = token_to_text(qt)
                qcol[base + i] = None
            if over:
                ov[base + i] = _ENC.encode(over).decode()

    def _tick_key(self, conn_id: int, stream: str, key: tuple[str, str], recv: int) -> None:
        """:meth:`_tick` for ``key = (channel, symbol)`` (book channels) with the common case
        - the connection's current minute - done here without the minute roll."""
        conn = self._conns.get(conn_id)
        if conn is None or not conn.minute <= recv < conn.until:
            self._tick(conn_id, stream, key[0], key[1], recv)
            return
        if key not in conn.subs:
            conn.subs[key] = recv  # data without a seen ack: subscribed from now
        c = conn.counts.get(key)
        if c is None:
            conn.counts[key] = [1, recv, recv]
        else:
            c[0] += 1
            c[2] = recv

    def _l2(self, frame: Frame, kind: str, data: Any, out: list[Signal]) -> None:
        symbol = data.symbol
        if symbol not in self._spot_ok and not self._admit(frame, symbol, "spot"):
            return
        key = ("book", symbol)
        recv = frame.recv_ns
        self._tick_key(frame.conn_id, frame.stream, key, recv)
        ep = self._epochs.get(key)
        cols = self._book_cols
        base = len(cols[11])
        if kind == "snapshot":
            if ep is not None:
                self._end_epoch(key, "resnapshot", None, recv)
            ep = _Epoch(recv, frame.stream, "book", symbol, frame.conn_id, "snapshot")
            ep.depth = _l2_depth(self._ack_depth.get(key), len(data.bids), len(data.asks))
            try:
                pp, qp, src = self._precision(
                    symbol, ([lv.price for lv in data.bids] + [lv.price for lv in data.asks],
                             [lv.qty for lv in data.bids] + [lv.qty for lv in data.asks]))
                ep.pp, ep.qp, ep.psource = pp, qp, src
                ep.book = L2Book(symbol, ep.depth, pp, qp)
                res = ep.book.apply(kind, data, self._book_rows)
            except Exception as exc:  # noqa: BLE001 - BookError/NumberError
                _cut(cols, 10, base)
                self._reject(frame, "apply", "apply_error", f"{type(exc).__name__}: {exc}",
                             symbol)
                self._open_gap(_Gap(recv, frame.stream, "book", symbol, frame.conn_id,
                                    "apply_error", detail=str(exc)[:200]))
                return
            self._epochs[key] = ep
            self._close_gap("book", symbol, recv, "resnapshot")
            ev_code = 0
        else:
            if ep is None:
                self._reject(frame, "apply", "update_before_snapshot",
                             "book update without a valid snapshot", symbol)
                self._before_snapshot(frame, "book", symbol, out)
                return
            book = ep.book
            if type(book) is CoreL2Book:  # an update the lane left to the reference path
                book = ep.book = to_reference(book)
            try:
                res = book.apply(kind, data, self._book_rows)
            except Exception as exc:  # noqa: BLE001
                _cut(cols, 10, base)
                self._reject(frame, "apply", "apply_error", f"{type(exc).__name__}: {exc}",
                             symbol)
                self._desync(frame, "book", ep, "apply_error", None, None, out)
                return
            ev_code = 1
        n = len(cols[11]) - base
        if n:
            if max(cols[11][base:]) > INT64_MAX or max(cols[12][base:]) > INT64_MAX:
                self._overflow("book", base, cols[11], cols[12],
                               [(lv.price, lv.qty) for lv in (*data.bids, *data.asks)])
            # the message's columns (_MSG_COLUMNS["book"] order), expanded at flush
            cols[0].append(recv)
            cols[1].append(data.ts_ns)
            cols[2].append(ep.symbol)
            cols[3].append(ep.epoch)
            cols[4].append(frame.conn_id)
            cols[5].append(ev_code)
            cols[6].append(ep.pp)
            cols[7].append(ep.qp)
            cols[8].append(data.checksum)
            cols[9].append(n)
            self._mrows["book"] += n
            self._pending_rows += n
            ep.rows += n
        ep.messages += 1
        ep.end_ns = recv
        match = res.match
        if match is True:
            ep.ok += 1
            self.checksums_ok += 1
        elif match is False:
            ep.failed += 1
            self.checksums_failed += 1
        if match is not False and not res.crossed:  # res.ok
            if ev_code == 0:
                self._checkpoint_row(ep, recv, "epoch_start")
            elif (recv - ep.last_cp_ns >= self.checkpoint_interval_ns
                  or (self.checkpoint_messages > 0
                      and ep.messages - ep.last_cp_msg >= self.checkpoint_messages)):
                self._checkpoint_row(ep, recv, "interval")  # see _checkpoint_due
        else:
            self._desync(frame, "book", ep,
                         "checksum_mismatch" if match is False else "crossed",
                         res.expected, res.computed, out)

    def _l3(self, frame: Frame, kind: str, data: Any, out: list[Signal]) -> None:
        symbol = data.symbol
        if symbol not in self._spot_ok and not self._admit(frame, symbol, "spot"):
            return
        key = ("level3", symbol)
        recv = frame.recv_ns
        self._tick_key(frame.conn_id, frame.stream, key, recv)
        ep = self._epochs.get(key)
        cols = self._l3_cols
        base = len(cols[12])
        if kind == "snapshot":
            if ep is not None:
                self._end_epoch(key, "resnapshot", None, recv)
            orders = list(data.bids) + list(data.asks)
            ep = _Epoch(recv, frame.stream, "level3", symbol, frame.conn_id, "snapshot")
            ep.depth = self._ack_depth.get(key) or 10
            try:
                pp, qp, src = self._precision(
                    symbol, ([o.limit_price for o in orders], [o.order_qty for o in orders]))
                ep.pp, ep.qp, ep.psource = pp, qp, src
                ep.book = L3Book(symbol, ep.depth, pp, qp)
                res = ep.book.apply(kind, data, self._l3_rows)
            except Exception as exc:  # noqa: BLE001
                _cut(cols, 8, base)
                self._reject(frame, "apply", "apply_error", f"{type(exc).__name__}: {exc}",
                             symbol)
                self._open_gap(_Gap(recv, frame.stream, "level3", symbol, frame.conn_id,
                                    "apply_error", detail=str(exc)[:200]))
                return
            self._epochs[key] = ep
            self._close_gap("level3", symbol, recv, "resnapshot")
            snap = True
        else:
            if ep is None:
                self._reject(frame, "apply", "update_before_snapshot",
                             "level3 update without a valid snapshot", symbol)
                self._before_snapshot(frame, "level3", symbol, out)
                return
            book = ep.book
            if type(book) is CoreL3Book:  # an update the lane left to the reference path
                book = ep.book = to_reference(book)
            try:
                res = book.apply(kind, data, self._l3_rows)
            except Exception as exc:  # noqa: BLE001
                _cut(cols, 8, base)
                self._reject(frame, "apply", "apply_error", f"{type(exc).__name__}: {exc}",
                             symbol)
                self._desync(frame, "level3", ep, "apply_error", None, None, out)
                return
            snap = False
        n = len(cols[12]) - base
        if n:
            if max(cols[12][base:]) > INT64_MAX or max(cols[13][base:]) > INT64_MAX:
                self._overflow("level3", base, cols[12], cols[13],
                               [(o.limit_price, o.order_qty) for o in (*data.bids, *data.asks)])
            # the message's columns (_MSG_COLUMNS["level3"] order), expanded at flush
            cols[0].append(recv)
            cols[1].append(ep.symbol)
            cols[2].append(ep.epoch)
            cols[3].append(frame.conn_id)
            cols[4].append(ep.pp)
            cols[5].append(ep.qp)
            cols[6].append(data.checksum)
            cols[7].append(n)
            self._mrows["level3"] += n
            self._pending_rows += n
            ep.rows += n
        ep.messages += 1
        ep.end_ns = recv
        match = res.match
        if match is True:
            ep.ok += 1
            self.checksums_ok += 1
        elif match is False:
            ep.failed += 1
            self.checksums_failed += 1
        if match is not False and not res.crossed:  # res.ok
            if snap:
                self._checkpoint_row(ep, recv, "epoch_start")
            elif (recv - ep.last_cp_ns >= self.checkpoint_interval_ns
                  or (self.checkpoint_messages > 0
                      and ep.messages - ep.last_cp_msg >= self.checkpoint_messages)):
                self._checkpoint_row(ep, recv, "interval")  # see _checkpoint_due
        else:
            self._desync(frame, "level3", ep,
                         "checksum_mismatch" if match is False else "crossed",
                         res.expected, res.computed, out)

    def _trade_row(self, recv: int, ts: int, symbol: str, epoch: int, conn_id: int, source: int,
                   trade_id: int | None, side: int, ord_type: str, price: Any, qty: Any) -> None:
        b = self._buf["trades"]
        known = self.precisions.get(symbol)
        if known is not None and decimals_of(price) <= known[0] and decimals_of(qty) <= known[1]:
            ps, qs = known
        else:
            ps, qs = decimals_of(price), decimals_of(qty)
        over: dict[str, str] = {}
        p = self._values(price, ps, "price", over)
        q = self._values(qty, qs, "qty", over)
        b["recv_ns"].append(recv)
        b["ts_ns"].append(ts)
        b["symbol"].append(symbol)
        b["epoch"].append(epoch)
        b["conn_id"].append(conn_id)
        b["source"].append(source)
        b["trade_id"].append(trade_id)
        b["side"].append(side)
        b["ord_type"].append(ord_type)
        b["price"].append(p)
        b["qty"].append(q)
        b["price_scale"].append(ps)
        b["qty_scale"].append(qs)
        b["overflow"].append(_ENC.encode(over).decode() if over else None)
        self._pending_rows += 1

    def _trades(self, frame: Frame, ev: Any, out: list[Signal]) -> None:
        recv = frame.recv_ns
        snapshot = ev.type == "snapshot"
        for t in ev.data:
            symbol = t.symbol
            if symbol not in self._spot_ok and not self._admit(frame, symbol, "spot"):
                continue
            key = ("trade", symbol)
            self._tick(frame.conn_id, frame.stream, "trade", symbol, recv)
            ep = self._epochs.get(key)
            tid = t.trade_id
            if ep is None:
                ep = _Epoch(recv, frame.stream, "trade", symbol, frame.conn_id,
                            "snapshot" if snapshot else "first_trade")
                self._epochs[key] = ep
                self._close_gap("trade", symbol, recv, "resubscribe")
                prev = self._trade_last.get(symbol)
                if prev is not None:  # continuity across epochs (reconnect, restart)
                    ep.last_id, ep.end_ns = prev
            if ep.last_id is not None and tid is not None:
                last = ep.last_id
                if tid <= last:
                    if not snapshot:
                        self._reject(frame, "apply", "duplicate_trade",
                                     f"trade_id {tid} <= last {last}", symbol)
                    continue  # snapshot overlap with trades already recorded
                if tid > last + 1:
                    missing = tid - last - 1
                    gap = _Gap(ep.end_ns, frame.stream, "trade", symbol, frame.conn_id,
                               "trade_id_jump", f"trade_id {last + 1}..{tid - 1}", missing)
                    self._gaps[_backfill_key(symbol, last + 1, tid - 1)] = gap
                    out.append(TradeIdGap(symbol=symbol, expected=last + 1, got=tid,
                                          recv_ns=recv))
                    if ep.messages:
                        self._end_epoch(key, "trade_id_jump", None, recv)
                        ep = _Epoch(recv, frame.stream, "trade", symbol, frame.conn_id,
                                    "after_gap")
                        self._epochs[key] = ep
            ep.last_id = tid
            ep.messages += 1
            ep.rows += 1
            ep.end_ns = recv
            if tid is not None:
                self._trade_last[symbol] = (tid, recv)
            self._trade_row(recv, t.ts_ns, symbol, ep.epoch, frame.conn_id,
                            0 if snapshot else 1, tid, _SIDE_BUYSELL[t.side], t.ord_type,
                            t.price, t.qty)

    def _backfill_ranges(self, symbol: str) -> list[tuple[int, int, tuple[str, str]]]:
        """Open trade backfill gaps of ``symbol``: (first id, last id, gap key)."""
        out = []
        for k in self._gaps:
            if k[0] == "trade_backfill":
                r = _parse_backfill_key(k[1])
                if r is not None and r[0] == symbol:
                    out.append((r[1], r[2], k))
        return out

    def open_trade_gaps(self) -> list[TradeIdGap]:
        """Spot trade-id holes still waiting for their REST backfill (no ``BackfillDone``
        yet), as the :class:`TradeIdGap` signals that asked for them, by symbol and first id.

        A capture that restarts after a crash asks for these again: the signal of a hole
        detected by the killed run was acted on by that run only (and one re-derived from the
        journal tail at recovery reaches nobody). ``recv_ns`` is the receive time of the last
        trade before the hole, so the backfill's search starts before it. Requesting a hole
        twice writes no id twice (see :meth:`feed` of REST ``Trades`` pages)."""
        out = []
        for k, g in self._gaps.items():
            r = _trade_hole(k)
            if r is not None:
                sym, first, last = r
                out.append(TradeIdGap(symbol=sym, expected=first, got=last + 1,
                                      recv_ns=g.start_ns))
        out.sort(key=lambda s: (s.symbol, s.expected))
        return out

    def _ohlc(self, frame: Frame, ev: Any) -> None:
        b = self._buf["ohlc"]
        src = 0 if ev.type == "snapshot" else 1
        for c in ev.data:
            if c.symbol not in self._spot_ok and not self._admit(frame, c.symbol, "spot"):
                continue
            self._tick(frame.conn_id, frame.stream, "ohlc", c.symbol, frame.recv_ns)
            b["recv_ns"].append(frame.recv_ns)
            b["ts_ns"].append(c.ts_ns if c.ts_ns is not None else ev.ts_ns)
            b["symbol"].append(c.symbol)
            b["conn_id"].append(frame.conn_id)
            b["source"].append(src)
            b["interval"].append(c.interval)
            b["interval_begin_ns"].append(c.interval_begin_ns)
            b["open"].append(token_to_text(c.open))
            b["high"].append(token_to_text(c.high))
            b["low"].append(token_to_text(c.low))
            b["close"].append(token_to_text(c.close))
            b["vwap"].append(token_to_text(c.vwap))
            b["volume"].append(token_to_text(c.volume))
            b["trades"].append(c.trades)
            self._pending_rows += 1

    def _ticker(self, frame: Frame, ev: Any) -> None:
        b = self._buf["ticker"]
        for t in ev.data:
            if t.symbol not in self._spot_ok and not self._admit(frame, t.symbol, "spot"):
                continue
            self._tick(frame.conn_id, frame.stream, "ticker", t.symbol, frame.recv_ns)
            b["recv_ns"].append(frame.recv_ns)
            b["ts_ns"].append(t.ts_ns)
            b["symbol"].append(t.symbol)
            b["conn_id"].append(frame.conn_id)
            for name in ("bid", "bid_qty", "ask", "ask_qty", "last", "volume", "vwap", "low",
                         "high", "change", "change_pct"):
                b[name].append(token_to_text(getattr(t, name)))
            self._pending_rows += 1

    def _instrument(self, frame: Frame, ev: Any, out: list[Signal]) -> None:
        recv = frame.recv_ns
        b = self._buf["instruments"]
        listed: list[str] = []
        changed: list[str] = []
        delisted: list[str] = []
        seen: set[tuple[str, str]] = set()
        statuses: dict[str, str] = {}  # pair -> status, every valid pair of the message
        items: list[tuple[str, Any]] = [("asset", a) for a in ev.data.assets]
        items += [("pair", p) for p in ev.data.pairs]
        for kind, item in items:
            sym = item.id if kind == "asset" else item.symbol
            if not self._valid(frame, sym, "asset" if kind == "asset" else "spot"):
                continue
            if kind == "pair":
                statuses[sym] = item.status
            attrs = _ENC.encode(item).decode()
            k = (kind, sym)
            seen.add(k)
            prev = self._instr_attrs.get(k)
            if prev is not None and prev[1] == attrs:
                continue
            change = "listed" if prev is None else "changed"
            self._instr_attrs[k] = (item.status, attrs)
            if kind == "pair":
                self.precisions[sym] = (item.price_precision, item.qty_precision)
                if prev is None:
                    listed.append(sym)
                else:
                    changed.append(sym)
            self._instrument_row(recv, sym, kind, change, item, attrs)
        if ev.type == "snapshot" and self._instr_attrs:
            for k in [k for k in self._instr_attrs if k not in seen]:
                status, attrs = self._instr_attrs.pop(k)
                if k[0] == "pair":
                    delisted.append(k[1])
                    self.precisions.pop(k[1], None)
                self._instrument_row(recv, k[1], k[0], "delisted", None, attrs, status)
        del b
        if listed or delisted:  # spot symbols are checked against the new list again
            self._checks.spot.clear()
        if listed or changed or delisted:
            out.append(InstrumentChanged(listed=listed, delisted=delisted,
                                         status_changed=changed, statuses=statuses,
                                         recv_ns=recv))
        if ev.type == "snapshot":
            out.append(InstrumentSnapshot(statuses=statuses, recv_ns=recv))

    def _instrument_row(self, recv: int, sym: str, kind: str, change: str, item: Any,
                        attrs: str, status: str | None = None) -> None:
        b = self._buf["instruments"]
        pair = kind == "pair" and item is not None
        b["recv_ns"].append(recv)
        b["symbol"].append(sym)
        b["kind"].append(kind)
        b["change"].append(change)
        b["status"].append(item.status if item is not None else (status or ""))
        b["base"].append(item.base if pair else None)
        b["quote"].append(item.quote if pair else None)
        b["price_precision"].append(item.price_precision if pair else None)
        b["qty_precision"].append(item.qty_precision if pair else (
            item.precision if item is not None else None))
        b["cost_precision"].append(item.cost_precision if pair else None)
        b["price_increment"].append(token_to_text(item.price_increment) if pair else None)
        b["qty_increment"].append(token_to_text(item.qty_increment) if pair else None)
        b["qty_min"].append(token_to_text(item.qty_min) if pair else None)
        b["attributes"].append(attrs)
        self._pending_rows += 1

    # ------------------------------------------------------------------ futures

    def _futures(self, frame: Frame, out: list[Signal]) -> None:
        ev = fut.decode_futures(frame.payload)
        t = type(ev)
        recv = frame.recv_ns
        if t is fut.FuturesBookDelta or t is fut.FuturesBookSnapshot:
            self._futures_book(frame, ev, out)
        elif t is fut.FuturesTrade or t is fut.FuturesTradeSnapshot:
            trades = ev.trades if t is fut.FuturesTradeSnapshot else (ev,)
            src = 0 if t is fut.FuturesTradeSnapshot else 1
            for tr in sorted(trades, key=lambda x: x.seq):
                pid = tr.product_id
                if pid not in self._futures_ok and not self._admit(frame, pid, "futures"):
                    continue
                self._tick(frame.conn_id, "futures", "trade", pid, recv)
                key = ("futures_trade", pid)
                ep = self._epochs.get(key)
                if ep is None:
                    ep = self._epochs[key] = _Epoch(recv, "futures", "futures_trade", pid,
                                                    frame.conn_id, "first_trade")
                elif ep.last_id is not None:
                    if tr.seq <= ep.last_id:
                        if src:
                            self._reject(frame, "apply", "duplicate_trade",
                                         f"seq {tr.seq} <= last {ep.last_id}", pid)
                        continue
                    if tr.seq > ep.last_id + 1:
                        self._gap_row(_Gap(ep.end_ns, "futures", "trade", pid, frame.conn_id,
                                           "seq_jump", f"seq {ep.last_id + 1}..{tr.seq - 1}",
                                           tr.seq - ep.last_id - 1), recv, "none")
                        out.append(FuturesSeqGap(feed="trade", product_id=pid,
                                                 expected=ep.last_id + 1, got=tr.seq,
                                                 recv_ns=recv))
                ep.last_id = tr.seq
                ep.end_ns = recv
                ep.messages += 1
                self._futures_trade_row(frame, tr, src)
        elif t is fut.FuturesTicker:
            pid = ev.product_id
            if pid not in self._futures_ok and not self._admit(frame, pid, "futures"):
                self.messages += 1
                return
            self._tick(frame.conn_id, "futures", "ticker", ev.product_id, recv)
            b = self._buf["futures_ticker"]
            b["recv_ns"].append(recv)
            b["ts_ns"].append(ev.time_ns)
            b["product_id"].append(ev.product_id)
            b["conn_id"].append(frame.conn_id)
            for name in ("bid", "ask", "last", "mark_price", "index", "funding_rate",
                         "funding_rate_prediction", "open_interest", "volume"):
                v = getattr(ev, name)
                b[name].append(None if v is None else token_to_text(v))
            b["next_funding_rate_time_ns"].append(ev.next_funding_rate_time_ns)
            self._pending_rows += 1
        elif t is Reject:
            self._reject(frame, "decode", ev.reason, ev.detail, None)
        elif t is fut.FuturesSubscribeFailed:
            out.append(SubscriptionRejected(stream="futures", conn_id=frame.conn_id,
                                            channel=ev.feed or "", symbol=None,
                                            error=ev.message or "", recv_ns=recv))
        elif t is fut.FuturesSubscribed:
            conn = self._conn(frame.conn_id, "futures")
            for raw_pid in ev.product_ids:
                if not self._valid(frame, raw_pid, "futures"):
                    continue
                pid = fut.normalise_product_id(raw_pid)
                conn.subs.setdefault((ev.feed or "", pid), recv)
                self._close_subscribe_failed(ev.feed or "", pid, recv)
                out.append(SubscriptionAcked(stream="futures", conn_id=frame.conn_id,
                                             channel=ev.feed or "", symbol=pid, recv_ns=recv))
        self.messages += 1

    def _scaled(self, token: Any, over: dict[str, str], field: str) -> tuple[int | None, int]:
        scale = decimals_of(token)
        try:
            v = to_units(token, scale)
        except Exception:  # noqa: BLE001 - exponent forms beyond the precision range
            over[field] = token_to_text(token)
            return None, 0
        if INT64_MIN <= v <= INT64_MAX:
            return v, scale
        over[field] = token_to_text(token)
        return None, scale

    def _futures_trade_row(self, frame: Frame, tr: Any, src: int) -> None:
        b = self._buf["futures_trades"]
        over: dict[str, str] = {}
        p, ps = self._scaled(tr.price, over, "price")
        q, qs = self._scaled(tr.qty, over, "qty")
        b["recv_ns"].append(frame.recv_ns)
        b["ts_ns"].append(tr.time_ms * 1_000_000)
        b["product_id"].append(tr.product_id)
        b["conn_id"].append(frame.conn_id)
        b["source"].append(src)
        b["seq"].append(tr.seq)
        b["uid"].append(tr.uid)
        b["side"].append(_SIDE_BUYSELL.get(tr.side, 0))
        b["type"].append(tr.type)
        b["price"].append(p)
        b["qty"].append(q)
        b["price_scale"].append(ps)
        b["qty_scale"].append(qs)
        b["overflow"].append(_ENC.encode(over).decode() if over else None)
        self._pending_rows += 1

    def _futures_book_row(self, frame: Frame, ep: _Epoch, event: int, seq: int, ts_ms: int | None,
                          side: int, price: Any, qty: Any) -> None:
        b = self._buf["futures_book"]
        over: dict[str, str] = {}
        p, ps = self._scaled(price, over, "price")
        q, qs = self._scaled(qty, over, "qty")
        b["recv_ns"].append(frame.recv_ns)
        b["ts_ns"].append(None if ts_ms is None else ts_ms * 1_000_000)
        b["product_id"].append(ep.symbol)
        b["epoch"].append(ep.epoch)
        b["conn_id"].append(frame.conn_id)
        b["event"].append(event)
        b["seq"].append(seq)
        b["side"].append(side)
        b["price"].append(p)
        b["qty"].append(q)
        b["price_scale"].append(ps)
        b["qty_scale"].append(qs)
        b["overflow"].append(_ENC.encode(over).decode() if over else None)
        ep.rows += 1
        self._pending_rows += 1

    def _futures_book(self, frame: Frame, ev: Any, out: list[Signal]) -> None:
        pid = ev.product_id
        if pid not in self._futures_ok and not self._admit(frame, pid, "futures"):
            return
        key = ("futures_book", pid)
        recv = frame.recv_ns
        self._tick(frame.conn_id, "futures", "book", pid, recv)
        ep = self._epochs.get(key)
        if type(ev) is fut.FuturesBookSnapshot:
            if ep is not None:
                self._end_epoch(key, "resnapshot", None, recv)
            ep = _Epoch(recv, "futures", "futures_book", pid, frame.conn_id, "snapshot")
            try:
                ep.book = FuturesBook(pid)
                ep.book.apply_snapshot(ev)
            except Exception as exc:  # noqa: BLE001
                self._reject(frame, "apply", "apply_error", str(exc)[:200], pid)
                return
            self._epochs[key] = ep
            self._close_gap("futures_book", pid, recv, "resnapshot")
            for side, levels in ((0, ev.bids), (1, ev.asks)):
                for lv in levels:
                    self._futures_book_row(frame, ep, 0, ev.seq, ev.timestamp_ms, side,
                                           lv.price, lv.qty)
            ep.messages += 1
            self._checkpoint_row(ep, recv, "epoch_start")
            return
        if ep is None:
            self._reject(frame, "apply", "update_before_snapshot",
                         "futures book delta without a snapshot", pid)
            self._before_snapshot(frame, "futures_book", pid, out)
            return
        try:
            gap = ep.book.apply(ev)
        except Exception as exc:  # noqa: BLE001
            self._reject(frame, "apply", "apply_error", str(exc)[:200], pid)
            self._desync(frame, "futures_book", ep, "apply_error", None, None, out)
            return
        if gap is not None and gap.kind != "gap":
            self._reject(frame, "apply", f"seq_{gap.kind}",
                         f"seq {gap.got}, expected {gap.expected}", pid)
            return
        self._futures_book_row(frame, ep, 1, ev.seq, ev.timestamp_ms,
                               0 if ev.side == "buy" else 1, ev.price, ev.qty)
        ep.messages += 1
        ep.end_ns = recv
        if gap is not None:
            self._end_epoch(key, "seq_jump", "seq_jump", recv,
                            detail=f"seq {gap.expected}..{gap.got - 1} missing")
            out.append(FuturesSeqGap(feed="book", product_id=pid, expected=gap.expected,
                                     got=gap.got, recv_ns=recv))
        elif self._checkpoint_due(ep, recv):
            self._checkpoint_row(ep, recv, "interval")

    # ------------------------------------------------------------------ FIX 4.4

    def _fix_out(self, frame: Frame) -> None:
        """An outgoing FIX message: remember each MarketDataRequest (35=V) by MDReqID (what a
        W, X or Y of that id is about) and by MsgSeqNum (what a session Reject refers to); an
        unsubscribe ends its epochs (``unsubscribed``)."""
        m = _fix_decode(frame.payload)
        if m is None or not m["ok"]:
            return
        if m["msg_type"] == "5":  # the peer's Logout that follows only confirms ours
            self._fix.logout_sent.add(frame.conn_id)
            return
        if m["msg_type"] != "V":
            return
        fields = m["fields"]
        md_req_id = fields.get(262)
        if md_req_id is None:
            return
        fix = self._fix
        cid = frame.conn_id
        if len(fix.sent) >= _FIX_SENT_MAX:
            fix.sent.clear()
        fix.sent[(cid, m["seq_num"])] = md_req_id
        symbols = tuple(v for t, v in m["field_list"] if t == 55)
        channel = "level3" if fields.get(266) == "N" else "book"
        if fields.get(263) == "2":
            req = fix.requests.pop((cid, md_req_id), None)
            conn = self._conns.get(cid)
            for sym in symbols:
                for ch in (channel, "trade") if req is None or req.trades else (channel,):
                    self._end_epoch((_FIX_KEY + ch, sym), "unsubscribed", None,
                                    frame.recv_ns)
                    if conn is not None:
                        self._unsubscribe(conn, (ch, sym), frame.recv_ns)
            return
        depth_text = fields.get(264, "")
        depth = int(depth_text) if depth_text.isdigit() else None
        types = {v for t, v in m["field_list"] if t == 269}
        if len(fix.requests) >= _FIX_SENT_MAX:
            fix.requests.clear()
        fix.requests[(cid, md_req_id)] = _FixRequest(channel, depth, symbols, "2" in types)

    def _fix_in(self, frame: Frame, out: list[Signal]) -> None:
        """An inbound FIX message (one per frame, as journaled): MsgSeqNum continuity per
        connection, then W/X into ``book``/``level3``/``trades``, Y and 35=3 as refused
        subscriptions, Logout ending the epochs, heartbeats for liveness."""
        self.messages += 1
        m = _fix_decode(frame.payload)
        cid = frame.conn_id
        if m is None:
            self._reject(frame, "decode", "fix_framing",
                         "not exactly one complete FIX message", None)
            return
        if not m["ok"]:
            self._reject(frame, "decode", f"fix_{m['reason']}", str(m["detail"])[:300], None)
            seq = m.get("seq_num")
            if seq is not None and m["reason"] not in _FIX_GARBLED:
                self._fix_sequence(frame, seq, bool(m.get("poss_dup")))  # it uses up its number
            return
        msg_type = m["msg_type"]
        fields = m["fields"]
        seq = m["seq_num"]
        fix = self._fix
        if msg_type == "A":  # a (new) session: numbering starts from its Logon
            fix.expected[cid] = seq + 1
            return
        if msg_type == "4" and fields.get(123) != "Y":  # hard reset: MsgSeqNum ignored
            new_text = fields.get(36, "")
            expected = fix.expected.get(cid)
            if not new_text.isdigit():
                return
            new = int(new_text)
            if expected is not None and new > expected:
                self._fix_break(frame, "fix_seq_gap", f"MsgSeqNum {expected}..{new - 1}",
                                new - expected, "SequenceReset skipped messages")
            if expected is None or new >= expected:
                fix.expected[cid] = new
            return
        if not self._fix_sequence(frame, seq, bool(m["poss_dup"])):
            return
        if msg_type == "X":
            self._fix_incremental(frame, m, out)
        elif msg_type == "W":
            self._fix_snapshot(frame, m)
        elif msg_type == "0" or msg_type == "1":
            self._tick(cid, frame.stream, "heartbeat", "", frame.recv_ns)
        elif msg_type == "4":  # GapFill: numbers up to NewSeqNo - 1 carried nothing to apply
            new_text = fields.get(36, "")
            if new_text.isdigit() and int(new_text) > seq:
                fix.expected[cid] = int(new_text)
        elif msg_type == "Y":
            self._fix_refused(frame, fields.get(262),
                              f"MarketDataRequestReject {fields.get(281, '?')}: "
                              f"{fields.get(58, '')}".rstrip(": "))
        elif msg_type == "3":
            ref = fields.get(45, "")
            md_req_id = fix.sent.get((cid, int(ref))) if ref.isdigit() else None
            detail = (f"session Reject of MsgSeqNum {ref or '?'} (373={fields.get(373, '?')}): "
                      f"{fields.get(58, '')}").rstrip(": ")
            if md_req_id is not None:
                self._fix_refused(frame, md_req_id, detail)
            else:
                self._reject(frame, "session", "fix_peer_reject", detail[:300], None)
        elif msg_type == "5" and cid not in fix.logout_sent:  # the peer ends the session
            self._fix_end_epochs(frame, "logout", "fix_logout",
                                 f"peer Logout: {fields.get(58, '')}".rstrip(": "))
        # a Logout answering ours: the Disconnected marker that follows ends the epochs
        # ResendRequest (2), MarketDataRequest echoes, SecurityList (j): journaled only

    def _fix_sequence(self, frame: Frame, seq: int, poss_dup: bool) -> bool:
        """Check ``seq`` against the connection's expected MsgSeqNum; False when the message
        must not be applied (a PossDup duplicate, or a number too low)."""
        fix = self._fix
        cid = frame.conn_id
        expected = fix.expected.get(cid)
        if expected is None or seq == expected:  # no Logon seen (a journal cut mid-session)
            fix.expected[cid] = seq + 1
            return True
        if seq > expected:
            self._fix_break(frame, "fix_seq_gap", f"MsgSeqNum {expected}..{seq - 1}",
                            seq - expected, None)
            fix.expected[cid] = seq + 1
            return True
        if not poss_dup:
            self._reject(frame, "decode", "fix_seq_too_low",
                         f"MsgSeqNum {seq}, expected {expected}, without PossDupFlag", None)
        return False  # a PossDup resend of what was applied (or given up): never twice

    def _fix_break(self, frame: Frame, cause: str, missing: str, count: int,
                   detail: str | None) -> None:
        """Messages of a FIX session were lost: every book and trade epoch of the connection
        ends with a gap (healed by the next snapshot); with none open, one gap row of the
        connection as a whole."""
        if not self._fix_end_epochs(frame, cause, cause, detail, missing, count):
            self._gap_row(_Gap(frame.recv_ns, frame.stream, "*", "*", frame.conn_id, cause,
                               missing, count, detail), frame.recv_ns, "none")

    def _fix_end_epochs(self, frame: Frame, reason: str, cause: str, detail: str | None,
                        missing: str | None = None, count: int | None = None,
                        keys: list[tuple[str, str]] | None = None) -> int:
        """End the FIX epochs of ``frame``'s connection (or ``keys``) with ``reason`` and open a
        gap of ``cause`` for each; how many ended."""
        cid = frame.conn_id
        if keys is None:
            keys = [k for k, ep in self._epochs.items()
                    if ep.conn_id == cid and k[0].startswith(_FIX_KEY)]
        n = 0
        for key in keys:
            ep = self._epochs.pop(key, None)
            if ep is None:
                continue
            n += 1
            self._epoch_row(ep, reason)
            if key not in self._gaps:
                self._gaps[key] = _Gap(ep.end_ns, ep.stream, ep.channel, ep.symbol, cid,
                                       cause, missing, count, detail)
        return n

    def _fix_refused(self, frame: Frame, md_req_id: str | None, detail: str) -> None:
        """A MarketDataRequest refused (35=Y, or a 35=3 naming it): its epochs end and a
        ``subscribe_failed`` gap of each of its symbols opens (closed by the next snapshot)."""
        req = self._fix.requests.get((frame.conn_id, md_req_id or ""))
        if req is None:
            self._gap_row(_Gap(frame.recv_ns, frame.stream, "*", "*", frame.conn_id,
                               "subscribe_failed", detail=f"MDReqID {md_req_id}: {detail}"[:500]),
                          None, "none")
            return
        channels = (req.channel, "trade") if req.trades else (req.channel,)
        recv = frame.recv_ns
        for sym in req.symbols:
            for ch in channels:
                key = (_FIX_KEY + ch, sym)
                self._end_epoch(key, "subscribe_failed", None, recv)
                cur = self._gaps.get(key)
                if cur is None:
                    self._gaps[key] = _Gap(recv, frame.stream, ch, sym, frame.conn_id,
                                           "subscribe_failed", detail=detail[:500])
                elif cur.cause != "subscribe_failed":
                    cur.detail = f"{cur.detail or ''}; subscribe_failed: {detail}".lstrip("; ")[:500]

    def _fix_depth(self, frame: Frame, md_req_id: str | None, channel: str, sides: int) -> int:
        req = self._fix.requests.get((frame.conn_id, md_req_id or ""))
        depth = req.depth if req is not None else None
        if depth == 0:
            return 1000  # full book: Kraken's L2 maximum
        if channel == "book":
            return _l2_depth(depth, sides, sides)
        return depth or 1000

    def _fix_snapshot(self, frame: Frame, m: dict[str, Any]) -> None:
        """35=W: a new epoch of the L2 (``fix``) or L3 (``fix_l3``) book of its symbol."""
        fields = m["fields"]
        symbol = fields.get(55)
        if symbol not in self._spot_ok and not self._admit(frame, symbol, "spot"):
            return
        channel = "level3" if frame.stream == "fix_l3" else "book"
        key = (_FIX_KEY + channel, symbol)
        recv = frame.recv_ns
        cid = frame.conn_id
        self._tick(cid, frame.stream, channel, symbol, recv)
        if key in self._epochs:
            self._end_epoch(key, "resnapshot", None, recv)
        entries = m["entries"]
        if any(e["type"] not in ("0", "1") for e in entries):
            self._reject(frame, "apply", "fix_bad_entry", "a snapshot entry that is neither "
                         "bid nor offer", symbol)
            return
        bids = [e for e in entries if e["type"] == "0"]
        asks = [e for e in entries if e["type"] == "1"]
        ep = _Epoch(recv, frame.stream, channel, symbol, cid, "snapshot")
        ep.depth = self._fix_depth(frame, fields.get(262), channel, max(len(bids), len(asks)))
        cols = self._book_cols if channel == "book" else self._l3_cols
        first = 10 if channel == "book" else 8
        base = len(cols[first])
        try:
            texts = [(_fix_text(e["price"]), _fix_text(e["size"])) for e in entries]
            pp, qp, src = self._precision(symbol, ([t[0] for t in texts], [t[1] for t in texts]))
            ep.pp, ep.qp, ep.psource = pp, qp, src
            if channel == "book":
                ep.book = L2Book(symbol, ep.depth, pp, qp)
                res = ep.book.apply("snapshot", _FixL2Data(
                    symbol, [_FixLevel(_fix_text(e["price"]), _fix_text(e["size"])) for e in bids],
                    [_FixLevel(_fix_text(e["price"]), _fix_text(e["size"])) for e in asks]),
                    self._book_rows)
            else:
                ep.book = L3Book(symbol, ep.depth, pp, qp)
                res = ep.book.apply("snapshot", _FixL3Data(
                    symbol, [_fix_order(e, None) for e in bids],
                    [_fix_order(e, None) for e in asks]), self._l3_rows)
        except Exception as exc:  # noqa: BLE001 - BookError/NumberError/FixError
            _cut(cols, first, base)
            self._reject(frame, "apply", "apply_error", f"{type(exc).__name__}: {exc}"[:300],
                         symbol)
            if key not in self._gaps:
                self._gaps[key] = _Gap(recv, frame.stream, channel, symbol, cid, "apply_error",
                                       detail=str(exc)[:200])
            return
        self._epochs[key] = ep
        self._close_gap(key[0], symbol, recv, "resnapshot")
        self._fix_rows(frame, m, ep, cols, base, 0)
        if not res.crossed:
            self._checkpoint_row(ep, recv, "epoch_start")
        else:
            self._fix_end_epochs(frame, "crossed", "crossed_book", None, keys=[key])

    def _fix_rows(self, frame: Frame, m: dict[str, Any], ep: _Epoch, cols: tuple[list[Any], ...],
                  base: int, event: int) -> None:
        """The per-message columns of the rows a FIX W/X just appended (no Kraken checksum:
        FIX carries none, docs/fix.md)."""
        ep.messages += 1
        ep.end_ns = frame.recv_ns
        if ep.channel == "book":
            n = len(cols[11]) - base
            if not n:
                return
            cols[0].append(frame.recv_ns)
            cols[1].append(m["sending_time_ns"])
            cols[2].append(ep.symbol)
            cols[3].append(ep.epoch)
            cols[4].append(frame.conn_id)
            cols[5].append(event)
            cols[6].append(ep.pp)
            cols[7].append(ep.qp)
            cols[8].append(None)
            cols[9].append(n)
            self._mrows["book"] += n
        else:
            n = len(cols[12]) - base
            if not n:
                return
            cols[0].append(frame.recv_ns)
            cols[1].append(ep.symbol)
            cols[2].append(ep.epoch)
            cols[3].append(frame.conn_id)
            cols[4].append(ep.pp)
            cols[5].append(ep.qp)
            cols[6].append(None)
            cols[7].append(n)
            self._mrows["level3"] += n
        self._pending_rows += n
        ep.rows += n

    def _fix_incremental(self, frame: Frame, m: dict[str, Any], out: list[Signal]) -> None:
        """35=X: book entries (new, change, delete) onto the symbol's open FIX epoch, then its
        trade entries into ``trades``."""
        symbol = m["fields"].get(55)
        if symbol not in self._spot_ok and not self._admit(frame, symbol, "spot"):
            return
        entries = m["entries"]
        book = [e for e in entries if e["type"] != "2"]
        if book:
            self._fix_book_update(frame, m, symbol, book)
        trades = [e for e in entries if e["type"] == "2"]
        if trades:
            self._fix_trades(frame, m, symbol, trades)

    def _fix_book_update(self, frame: Frame, m: dict[str, Any], symbol: str,
                         entries: list[dict[str, Any]]) -> None:
        channel = "level3" if frame.stream == "fix_l3" else "book"
        key = (_FIX_KEY + channel, symbol)
        recv = frame.recv_ns
        self._tick(frame.conn_id, frame.stream, channel, symbol, recv)
        ep = self._epochs.get(key)
        if ep is None:
            self._reject(frame, "apply", "update_before_snapshot",
                         f"FIX {channel} update without a valid snapshot", symbol)
            return
        cols = self._book_cols if channel == "book" else self._l3_cols
        first = 10 if channel == "book" else 8
        base = len(cols[first])
        try:
            if channel == "book":
                bids: list[Any] = []
                asks: list[Any] = []
                for e in entries:
                    size = "0" if e["action"] == 2 else _fix_text(e["size"])
                    (bids if e["type"] == "0" else asks).append(
                        _FixLevel(_fix_text(e["price"]), size))
                res = ep.book.apply("update", _FixL2Data(symbol, bids, asks), self._book_rows)
            else:
                bids, asks = [], []
                for e in entries:
                    (bids if e["type"] == "0" else asks).append(
                        _fix_order(e, _FIX_L3_EVENTS.get(e["action"], "?")))
                res = ep.book.apply("update", _FixL3Data(symbol, bids, asks), self._l3_rows)
        except Exception as exc:  # noqa: BLE001
            _cut(cols, first, base)
            self._reject(frame, "apply", "apply_error", f"{type(exc).__name__}: {exc}"[:300],
                         symbol)
            self._fix_end_epochs(frame, "apply_error", "apply_error", str(exc)[:200],
                                 keys=[key])
            return
        self._fix_rows(frame, m, ep, cols, base, 1)
        if res.crossed:
            self._fix_end_epochs(frame, "crossed", "crossed_book", None, keys=[key])
        elif self._checkpoint_due(ep, recv):
            self._checkpoint_row(ep, recv, "interval")

    def _fix_trades(self, frame: Frame, m: dict[str, Any], symbol: str,
                    entries: list[dict[str, Any]]) -> None:
        key = (_FIX_KEY + "trade", symbol)
        recv = frame.recv_ns
        cid = frame.conn_id
        self._tick(cid, frame.stream, "trade", symbol, recv)
        ep = self._epochs.get(key)
        if ep is None:
            ep = self._epochs[key] = _Epoch(recv, frame.stream, "trade", symbol, cid,
                                            "first_trade")
            self._close_gap(key[0], symbol, recv, "resubscribe")
        for e in entries:
            side = _FIX_AGGRESSOR.get(e["aggressor_side"] or "")
            if side is None or e["price"] is None or e["size"] is None:
                self._reject(frame, "apply", "fix_bad_trade",
                             f"trade {e['id']!r} without AggressorSide, price or size", symbol)
                continue
            tid = e["id"]
            ts = e["timestamp_ns"] if e["timestamp_ns"] is not None else m["sending_time_ns"]
            ep.messages += 1
            ep.rows += 1
            ep.end_ns = recv
            self._trade_row(recv, ts, symbol, ep.epoch, cid, _FIX_TRADE_SOURCE,
                            int(tid) if tid and tid.isdigit() and len(tid) < 19 else None,
                            side, _FIX_ORD_TYPE.get(e["ord_type"] or "", "unknown"),
                            _fix_text(e["price"]), _fix_text(e["size"]))

    # ------------------------------------------------------------------ REST

    def _rest(self, frame: Frame, out: list[Signal]) -> None:
        meta = frame.meta
        path = meta.split(" ", 1)[-1]
        recv = frame.recv_ns
        if "/Trades" in path:
            page = rest.decode_trades(frame.payload)
            if not isinstance(page, rest.TradesPage):
                self._rest_reject(frame, page)
                return
            sym = _query_param(path, "pair") or page.pair
            if not self._valid(frame, sym, "rest"):
                return
            ranges = self._backfill_ranges(sym)
            seen = sym in self._trade_last
            for tr in page.trades:
                tid = tr.trade_id
                if seen and (tid is None or not any(a <= tid <= b for a, b, _ in ranges)):
                    continue  # already recorded live (or outside every open hole)
                if tid is not None:
                    done = self._backfilled.setdefault(sym, set())
                    if tid in done:
                        continue  # fetched again by an overlapping page/backfill
                    if len(done) >= 1_000_000:
                        done.clear()
                    done.add(tid)
                self._trade_row(recv, tr.time_ns, sym, 0, frame.conn_id, 2, tr.trade_id,
                                _SIDE_BUYSELL[tr.side], "market" if tr.ord_type == "m"
                                else "limit", tr.price, tr.volume)
        elif "/OHLC" in path:
            page = rest.decode_ohlc(frame.payload)
            if not isinstance(page, rest.OhlcPage):
                self._rest_reject(frame, page)
                return
            interval = int(_query_param(path, "interval") or 1)
            sym = _query_param(path, "pair") or page.pair
            if not self._valid(frame, sym, "rest"):
                return
            b = self._buf["ohlc"]
            for bar in page.bars:
                b["recv_ns"].append(recv)
                b["ts_ns"].append(None)
                b["symbol"].append(sym)
                b["conn_id"].append(frame.conn_id)
                b["source"].append(2)
                b["interval"].append(interval)
                b["interval_begin_ns"].append(bar.time * 1_000_000_000)
                for name in ("open", "high", "low", "close", "vwap", "volume"):
                    b[name].append(token_to_text(getattr(bar, name)))
                b["trades"].append(bar.count)
                self._pending_rows += 1
        elif "/Depth" in path:
            snap = rest.decode_depth(frame.payload)
            if not isinstance(snap, rest.DepthSnapshot):
                self._rest_reject(frame, snap)
                return
            if not self._valid(frame, snap.pair, "rest"):
                return
            for side, levels in ((0, snap.bids), (1, snap.asks)):
                for i, lv in enumerate(levels):
                    self._rest_level(recv, meta, snap.pair, side, i, lv.price, lv.volume,
                                     lv.timestamp_ns, None)
        elif "/Level3" in path:
            snap = rest.decode_level3(frame.payload)
            if not isinstance(snap, rest.Level3Snapshot):
                self._rest_reject(frame, snap)
                return
            if not self._valid(frame, snap.pair, "rest"):
                return
            for side, orders in ((0, snap.bids), (1, snap.asks)):
                for i, o in enumerate(orders):
                    self._rest_level(recv, meta, snap.pair, side, i, token_to_text(o.price),
                                     token_to_text(o.qty), getattr(o, "timestamp_ns", None),
                                     o.order_id)
        # other REST bodies (AssetPairs, Time, ...) are journaled only

    def _rest_level(self, recv: int, request: str, symbol: str, side: int, pos: int, price: str,
                    qty: str, ts: int | None, order_id: str | None) -> None:
        b = self._buf["rest_snapshots"]
        b["recv_ns"].append(recv)
        b["request"].append(request)
        b["symbol"].append(symbol)
        b["side"].append(side)
        b["position"].append(pos)
        b["price"].append(price)
        b["qty"].append(qty)
        b["ts_ns"].append(ts)
        b["order_id"].append(order_id)
        self._pending_rows += 1

    def _rest_reject(self, frame: Frame, result: Any) -> None:
        if isinstance(result, Reject):
            self._reject(frame, "decode", result.reason, result.detail, None)
        else:
            self._reject(frame, "decode", "rest_error", str(result)[:300], None)

    # ------------------------------------------------------------------ control markers

    def _control(self, frame: Frame, out: list[Signal]) -> None:
        m = mk.decode_marker(frame.payload)
        recv = frame.recv_ns
        t = type(m)
        if t is Reject:
            self._reject(frame, "decode", m.reason, m.detail, None)
            return
        named = getattr(m, "symbols", None) or ([m.symbol] if hasattr(m, "symbol") else [])
        for s in named:
            if s != "*" and not self._valid(frame, s, "any"):
                return
        if t is mk.ProcessStart:
            if self.last_recv_ns is not None:
                crashed = self.running
                self._end_all(recv, "process_restart")
                self._gap_row(_Gap(self.last_recv_ns, "*", "*", "*", 0, "process_restart",
                                   detail=("previous run ended without ProcessStop (crash)"
                                           if crashed else "clean stop and restart")),
                              recv, "restart")
            self.running = True
        elif t is mk.ProcessStop:
            self._end_all(recv, "process_stop")
            self.running = False
        elif t is mk.Connected:
            self._conns[m.conn_id] = _Conn(m.stream)
        elif t is mk.Disconnected:
            conn = self._conns.get(m.conn_id)
            if conn is not None:
                for key in list(self._epochs):
                    ep = self._epochs[key]
                    if ep.conn_id == m.conn_id:
                        self._end_epoch(key, "disconnect", "disconnect", recv, detail=m.reason)
                for key in list(conn.subs):
                    self._unsubscribe(conn, key, recv)
                if conn.minute >= 0:
                    self._liveness_minute(m.conn_id, conn, conn.minute, recv)
                del self._conns[m.conn_id]
            self._fix.forget(m.conn_id)
        elif t is mk.Subscribed:
            conn = self._conn(m.conn_id, "spot")
            for s in m.symbols:
                self._close_subscribe_failed(m.channel, s, recv)
                if m.depth:
                    self._ack_depth[(m.channel, s)] = m.depth
        elif t is mk.SubscribeFailed:
            for s in m.symbols or ["*"]:
                self._subscribe_failed(recv, "*", m.channel or "*", s, m.conn_id, m.error)
        elif t is mk.Unsubscribed:
            conn = self._conns.get(m.conn_id)
            for s in m.symbols:
                if conn is not None:
                    self._unsubscribe(conn, (m.channel, s), recv)
        elif t is mk.Silence:
            self._gap_row(_Gap(m.since_ns, "*", m.channel or "*", "*", m.conn_id, "silence"),
                          recv, "none")
        elif t is mk.RateLimited:
            self._gap_row(_Gap(recv, "rest" if m.conn_id is None else "*", "*", "*",
                               m.conn_id or 0, "rate_limit", detail=m.detail), recv, "none")
        elif t is mk.Quarantined:
            key = (m.channel, m.symbol)
            self._end_epoch(key, "quarantine", None, recv)
            self._gaps.pop(key, None)
            self._open_gap(_Gap(recv, "*", m.channel, m.symbol, 0, "quarantine",
                                detail=m.reason))
        elif t is mk.Released:
            self._close_gap(m.channel, m.symbol, recv, "released")
        elif t is mk.BackfillDone:
            lo, hi = m.from_trade_id, m.to_trade_id
            for a, b, k in self._backfill_ranges(m.symbol):
                if (lo is None or b >= lo) and (hi is None or a <= hi):  # overlaps the range
                    g = self._gaps.pop(k)
                    self._gap_row(g, recv, "rest_backfill" if not m.error else "none")
            if not self._backfill_ranges(m.symbol):
                self._backfilled.pop(m.symbol, None)
        # ResyncRequested, BackfillStarted, DiskPressure: journaled; no rows of their own

    def _end_all(self, recv: int, reason: str) -> None:
        """End every epoch, subscription and open gap (a stop, or a restart after one).

        After a crash (``process_restart``) the trade-id holes still waiting for their REST
        backfill stay open: they name ids, not a stretch of time, the killed run's backfill
        never journaled ``BackfillDone``, and the restarted capture requests them again
        (:meth:`open_trade_gaps`); the pages it journals fill them and its ``BackfillDone``
        closes them."""
        for key in list(self._epochs):
            self._end_epoch(key, reason, None, recv)
        for cid, conn in list(self._conns.items()):
            for key in list(conn.subs):
                self._unsubscribe(conn, key, recv)
            if conn.minute >= 0:
                self._liveness_minute(cid, conn, conn.minute, self.last_recv_ns or recv)
        self._conns.clear()
        self._fix = _FixSessions()
        kept = {}
        for k, g in self._gaps.items():
            if reason == "process_restart" and _trade_hole(k) is not None:
                kept[k] = g
            else:
                self._gap_row(g, None, "none")
        self._gaps.clear()
        self._gaps.update(kept)


class _FixRequest:
    """An outgoing MarketDataRequest (35=V) of a FIX session."""

    __slots__ = ("channel", "depth", "symbols", "trades")

    def __init__(self, channel: str, depth: int | None, symbols: tuple[str, ...],
                 trades: bool) -> None:
        self.channel = channel
        self.depth = depth
        self.symbols = symbols
        self.trades = trades


class _FixSessions:
    """What the pipeline tracks of FIX sessions (part of the state): the next inbound
    MsgSeqNum per connection, its MarketDataRequests by MDReqID, and MsgSeqNum -> MDReqID of
    the requests sent (a session-level Reject refers to one by its number)."""

    __slots__ = ("expected", "requests", "sent", "logout_sent")

    def __init__(self) -> None:
        self.expected: dict[int, int] = {}
        #: connections on which we sent a Logout (the peer's Logout then confirms it)
        self.logout_sent: set[int] = set()
        self.requests: dict[tuple[int, str], _FixRequest] = {}
        self.sent: dict[tuple[int, int], str] = {}

    def forget(self, conn_id: int) -> None:
        """Connection ``conn_id`` ended: its session is over."""
        self.expected.pop(conn_id, None)
        self.logout_sent.discard(conn_id)
        for request in [k for k in self.requests if k[0] == conn_id]:
            del self.requests[request]
        for sent in [k for k in self.sent if k[0] == conn_id]:
            del self.sent[sent]


class _FixLevel(NamedTuple):
    price: str
    qty: str


class _FixL2Data(NamedTuple):
    symbol: str
    bids: list[Any]
    asks: list[Any]
    checksum: None = None


class _FixOrder(NamedTuple):
    order_id: str
    limit_price: str
    order_qty: str
    event: str | None
    ts_ns: int | None


class _FixL3Data(NamedTuple):
    symbol: str
    bids: list[Any]
    asks: list[Any]
    checksum: None = None


#: MDUpdateAction (279) -> the level3 book's event.
_FIX_L3_EVENTS: Final = {0: "add", 1: "modify", 2: "delete"}
#: AggressorSide (2446) -> ``trades.side`` code; OrdType (40) -> ``trades.ord_type``.
_FIX_AGGRESSOR: Final = {"1": _TAKER_SIDE["buy"], "2": _TAKER_SIDE["sell"]}
_FIX_ORD_TYPE: Final = {"1": "market", "2": "limit"}


def _fix_decode(payload: bytes) -> dict[str, Any] | None:
    """The one FIX message of a journaled frame, decoded by the core's codec (a reject is a
    dict with ``ok`` False); None unless the payload is exactly one framed message."""
    framer = _core.FixFramer()
    frames = framer.feed(payload)
    if len(frames) != 1 or framer.pending:
        return None
    return frames[0]  # type: ignore[no-any-return]


def _fix_text(value: Any) -> str:
    """Exact decimal text of a codec ``(mantissa, scale)``."""
    if value is None:
        raise BookError("price or size missing")
    mantissa, scale = value
    if scale <= 0:
        return str(mantissa)
    whole, frac = divmod(mantissa, 10**scale)
    return f"{whole}.{frac:0{scale}d}"


def _fix_order(e: dict[str, Any], event: str | None) -> _FixOrder:
    if not e["id"]:
        raise BookError("a level3 entry without MDEntryID (the order id)")
    price = _fix_text(e["price"])
    size = "0" if event == "delete" and e["size"] is None else _fix_text(e["size"])
    return _FixOrder(e["id"], price, size, event, e["timestamp_ns"])


def _backfill_key(symbol: str, first: int, last: int) -> tuple[str, str]:
    """Key of an open trade backfill gap: one per missing id range of a symbol."""
    return ("trade_backfill", f"{symbol}\x1f{first}\x1f{last}")


def _parse_backfill_key(text: str) -> tuple[str, int, int] | None:
    parts = text.split("\x1f")
    if len(parts) == 3:
        try:
            return parts[0], int(parts[1]), int(parts[2])
        except ValueError:
            return None
    if len(parts) == 1:  # state written before ranges were keyed: the whole symbol
        return parts[0], 0, INT64_MAX
    return None


def _trade_hole(key: tuple[str, str]) -> tuple[str, int, int] | None:
    """(symbol, first id, last id) when ``key`` is an open trade backfill gap of a known id
    range (a whole-symbol key of an old state names no range to fetch again)."""
    if key[0] != "trade_backfill":
        return None
    r = _parse_backfill_key(key[1])
    return r if r is not None and r[2] != INT64_MAX else None


def _query_param(path: str, name: str) -> str | None:
    _, _, query = path.partition("?")
    for part in query.split("&"):
        k, _, v = part.partition("=")
        if k == name:
            from urllib.parse import unquote

            return unquote(v)
    return None


def crc_of(text: bytes) -> int:
    """CRC32 as Kraken computes it (helper for tests)."""
    return zlib.crc32(text)
