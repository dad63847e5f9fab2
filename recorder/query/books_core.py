"""``book_at`` on the compiled core (``recorder._core``, issue #15).

:func:`core_book_at` answers :meth:`recorder.query.books.BookEngine.book_at` for the spot
channels (``book``, ``level3``) exactly as the reference replay does (same epoch, checkpoint,
unreadable-file and gap answers, which it shares with it), but replays the rows in Rust: the
epoch's rows from the checkpoint to the cut go over as numpy columns (no per-row Python
objects), the core restores the checkpoint's book, applies the messages with the GIL released
and returns every level (order) of the book at the cut.

It returns None, and the caller answers with the reference model, whenever the core cannot
give the reference's answer: a checkpoint that does not decode as the channel's kind, a row
whose value does not fit int64 units (its text is in the ``overflow`` column), a value or
checkpoint the reference would refuse, or a message the book refuses. The reference then
raises its own error, so callers see one behaviour.

``BookAt.book`` (the reference-model book object) is restored from the answer's levels the
first time it is read.

:func:`core_futures_book_at` does the same for ``futures_book``: the checkpoint's levels and
the epoch's rows up to the cut go to ``_core.futures_book_at_replay``, which keeps the
reference's seq rules; whatever it refuses, the reference answers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import recorder._core as _core
from recorder.book.checkpoint import L2Checkpoint, L3Checkpoint, L3OrderState, levels_to_text
from recorder.book.futures import FuturesBookCheckpoint
from recorder.book.l2 import L2Book
from recorder.book.l3 import L3Book
from recorder.protocol.errors import ProtocolError
from recorder.protocol.numbers import token_to_text, units_to_text

if TYPE_CHECKING:
    from recorder.query.api import Archive
    from recorder.query.books import BookAt, BookEngine

__all__ = ["core_book_at", "core_futures_book_at"]


class _RawL2(msgspec.Struct, frozen=True, tag="l2", forbid_unknown_fields=True):
    """:class:`~recorder.book.checkpoint.L2Checkpoint` as it is encoded (levels as tuples)."""

    symbol: str
    depth: int
    price_precision: int | None
    qty_precision: int | None
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


class _RawL3(msgspec.Struct, frozen=True, tag="l3", forbid_unknown_fields=True):
    """:class:`~recorder.book.checkpoint.L3Checkpoint` as it is encoded (orders as tuples)."""

    symbol: str
    depth: int
    price_precision: int
    qty_precision: int
    bids: list[tuple[str, str, str, int | None]]
    asks: list[tuple[str, str, str, int | None]]


_DECODERS: Final[dict[str, msgspec.msgpack.Decoder[Any]]] = {
    "book": msgspec.msgpack.Decoder(_RawL2),
    "level3": msgspec.msgpack.Decoder(_RawL3)}
#: The columns read for a replay (``order_id`` added for level3).
ROW_COLUMNS: Final = ("recv_ns", "ts_ns", "event", "side", "price", "qty", "price_scale",
                      "qty_scale", "checksum")


def _nullable(col: Any, dtype: type[np.generic]) -> tuple[np.ndarray, np.ndarray]:
    """Values (nulls as 0) and validity (uint8) of a nullable integer column."""
    values = np.ascontiguousarray(pc.fill_null(col, 0).to_numpy(), dtype=dtype)
    valid = np.ascontiguousarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=np.uint8)
    return values, valid


def _ints(col: Any, dtype: type[np.generic]) -> np.ndarray:
    return np.ascontiguousarray(col.to_numpy(), dtype=dtype)


#: Read failures that hand the question to the reference model (its own read then raises
#: the error :meth:`recorder.query.api.Archive` recovers from).
READ_ERRORS: Final = (OSError, pa.ArrowException, KeyError, ValueError, IndexError)
#: Open Parquet files a reader keeps (least recently used closed first).
_OPEN_FILES: Final = 64
#: Rows decoded at a time when a row group is read only up to the cut.
_BATCH_ROWS: Final = 8192
#: Columns of the ``checkpoints`` dataset read to find the checkpoint (the blob is read last).
_CP_COLUMNS: Final = ("recv_ns", "channel", "symbol", "epoch", "epoch_message", "reason",
                      "checksum")


class _Group(NamedTuple):
    """One row group of a file and the statistics that prune it."""

    file: str
    row_group: int
    min_recv: int | None
    max_recv: int | None
    #: ``(min, max)`` of a column by name, when the file has statistics for it
    ranges: dict[str, tuple[Any, Any]]

    def may_hold(self, lo: int, hi: int, **equal: Any) -> bool:
        """Whether rows with ``lo <= recv_ns <= hi`` and these column values may be here."""
        if self.max_recv is not None and self.max_recv < lo:
            return False
        if self.min_recv is not None and self.min_recv > hi:
            return False
        for name, value in equal.items():
            r = self.ranges.get(name)
            if r is not None and not r[0] <= value <= r[1]:
                return False
        return True

    def only(self, name: str, value: Any) -> bool:
        """Whether every row of the group has ``value`` in column ``name``."""
        r = self.ranges.get(name)
        return r is not None and r[0] == value == r[1]


class RowReader:
    """Parquet reads for core replays, with each file's footer and row-group statistics
    cached for the life of the :class:`~recorder.query.books.BookEngine` that owns it (one
    manifest snapshot of one :class:`~recorder.query.api.Archive`; :meth:`Archive.refresh`
    builds new engines).

    Files come from :meth:`Archive.files` (manifest pruning by time and symbol; unreadable
    files left out), row groups are pruned by their ``recv_ns``/symbol/epoch/channel
    statistics, and only the needed columns are decoded. A file that fails to read raises
    (the caller then answers with the reference model, whose read error lets the archive
    find the damaged file).
    """

    def __init__(self, archive: Archive, root: Path | None) -> None:
        self.archive = archive
        self.root = root
        self._meta: dict[str, pq.FileMetaData] = {}
        self._groups: dict[str, list[_Group]] = {}
        #: the checkpoints' rows without blobs, by (file, row group)
        self._cp_index: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
        #: open files, least recently used first
        self._open: dict[str, pq.ParquetFile] = {}

    def _groups_of(self, path: str) -> list[_Group]:
        groups = self._groups.get(path)
        if groups is not None:
            return groups
        md = self._meta[path] = pq.read_metadata(path)
        names = [md.schema.column(i).path for i in range(md.num_columns)]
        groups = []
        for g in range(md.num_row_groups):
            rg = md.row_group(g)
            ranges: dict[str, tuple[Any, Any]] = {}
            for i, name in enumerate(names):
                if name not in ("recv_ns", "ts_ns", "symbol", "product_id", "epoch", "channel"):
                    continue
                st = rg.column(i).statistics
                if st is not None and st.has_min_max:
                    ranges[name] = (st.min, st.max)
            recv = ranges.get("recv_ns", (None, None))
            groups.append(_Group(path, g, recv[0], recv[1], ranges))
        self._groups[path] = groups
        return groups

    def _file(self, path: str) -> pq.ParquetFile:
        """An open file (footer already parsed), kept for the next queries: at most
        :data:`_OPEN_FILES` stay open, the least recently used is closed first."""
        pf = self._open.pop(path, None)
        if pf is None:
            pf = pq.ParquetFile(path, metadata=self._meta[path])
            while len(self._open) >= _OPEN_FILES:
                self._open.pop(next(iter(self._open))).close()
        self._open[path] = pf
        return pf

    def _read(self, group: list[_Group], columns: list[str]) -> pa.Table:
        return self._file(group[0].file).read_row_groups(
            [g.row_group for g in group], columns=columns, use_threads=False)

    def _group_rows(self, g: _Group, lo: int, hi: int, columns: list[str]) -> pa.Table:
        """Rows of one row group with ``lo <= recv_ns <= hi``. When the group's ``recv_ns``
        never decreases (as written: wire order), only the rows up to the last one wanted are
        decoded (batch by batch); otherwise the whole group is read and filtered."""
        pf = self._file(g.file)
        recv = pf.read_row_group(g.row_group, columns=["recv_ns"],
                                 use_threads=False).column(0).to_numpy()
        if len(recv) > 1 and bool((recv[1:] < recv[:-1]).any()):
            t = pf.read_row_group(g.row_group, columns=columns, use_threads=False)
            mask = pc.and_(pc.greater_equal(t.column("recv_ns"), lo),
                           pc.less_equal(t.column("recv_ns"), hi))
            return t.filter(mask)
        a = int(np.searchsorted(recv, lo, "left"))
        b = int(np.searchsorted(recv, hi, "right"))
        if a >= b:
            return _empty_like(pf, columns)
        batches = []
        n = 0
        for batch in pf.iter_batches(batch_size=_BATCH_ROWS, row_groups=[g.row_group],
                                     columns=columns, use_threads=False):
            batches.append(batch)
            n += batch.num_rows
            if n >= b:
                break
        return pa.Table.from_batches(batches).slice(a, b - a)

    def rows(self, channel: str, symbol: str, epoch: int, lo: int, hi: int,
             columns: list[str]) -> pa.Table:
        """The epoch's rows with ``lo <= recv_ns <= hi``, in wire order (as
        ``BookEngine._rows``: files in commit order, then a stable sort on ``recv_ns``)."""
        sym = "product_id" if channel == "futures_book" else "symbol"
        parts: list[pa.Table] = []
        for path in self.archive.files(channel, symbols=[symbol], start=lo, end=hi,
                                       root=self.root):
            key = str(path)
            for g in self._groups_of(key):
                if not g.may_hold(lo, hi, **{sym: symbol, "epoch": epoch}):
                    continue
                filter_symbol = not g.only(sym, symbol)
                filter_epoch = not g.only("epoch", epoch)
                t = self._group_rows(g, lo, hi, [*columns, *([sym] if filter_symbol else []),
                                                 *(["epoch"] if filter_epoch else [])])
                if filter_symbol or filter_epoch:
                    mask = None
                    if filter_epoch:
                        mask = pc.equal(t.column("epoch"), epoch)
                    if filter_symbol:
                        m = _equals(t.column(sym), symbol)
                        mask = m if mask is None else pc.and_(mask, m)
                    t = t.filter(mask)
                parts.append(t.select(columns))
        if not parts:
            return _empty(self.archive, channel, columns)
        table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        recv_np = table.column("recv_ns").to_numpy()
        if len(recv_np) > 1 and bool((recv_np[1:] < recv_np[:-1]).any()):
            table = table.take(pa.array(np.argsort(recv_np, kind="stable")))
        return table

    def first_after(self, channel: str, symbol: str, t: int, hi: int | None) -> int | None:
        """The smallest ``recv_ns`` of the symbol's rows with ``ts_ns > t`` (and ``recv_ns <=
        hi`` unless None), over every epoch; row groups whose ``ts_ns`` statistics end at or
        before ``t`` are not read."""
        sym = "product_id" if channel == "futures_book" else "symbol"
        best: int | None = None
        top = hi if hi is not None else 2**63 - 1
        for path in self.archive.files(channel, symbols=[symbol], end=hi, root=self.root):
            for g in self._groups_of(str(path)):
                ts = g.ranges.get("ts_ns")
                if ts is not None and ts[1] <= t:
                    continue
                if not g.may_hold(-(2**63), top, **{sym: symbol}):
                    continue
                if best is not None and g.min_recv is not None and g.min_recv >= best:
                    continue
                filter_symbol = not g.only(sym, symbol)
                tb = self._read([g], ["recv_ns", "ts_ns", *([sym] if filter_symbol else [])])
                mask = pc.fill_null(pc.greater(tb.column("ts_ns"), t), False)
                if hi is not None:
                    mask = pc.and_(mask, pc.less_equal(tb.column("recv_ns"), hi))
                if filter_symbol:
                    mask = pc.and_(mask, _equals(tb.column(sym), symbol))
                found = pc.min(tb.column("recv_ns").filter(mask)).as_py()
                if found is not None and (best is None or found < best):
                    best = found
        return best

    def last_row(self, channel: str, symbol: str) -> tuple[int | None, int | None]:
        """``(max recv_ns, max ts_ns)`` of the symbol's rows (None when it has none), from
        row-group statistics where a group holds only that symbol."""
        sym = "product_id" if channel == "futures_book" else "symbol"
        recv_max: int | None = None
        ts_max: int | None = None

        def more(a: int | None, b: int | None) -> int | None:
            return b if a is None else a if b is None else max(a, b)

        for path in self.archive.files(channel, symbols=[symbol], root=self.root):
            for g in self._groups_of(str(path)):
                if not g.may_hold(-(2**63), 2**63 - 1, **{sym: symbol}):
                    continue
                ts = g.ranges.get("ts_ns")
                if g.only(sym, symbol) and g.max_recv is not None and ts is not None:
                    recv_max, ts_max = more(recv_max, g.max_recv), more(ts_max, ts[1])
                    continue
                filter_symbol = not g.only(sym, symbol)
                tb = self._read([g], ["recv_ns", "ts_ns", *([sym] if filter_symbol else [])])
                if filter_symbol:
                    tb = tb.filter(_equals(tb.column(sym), symbol))
                recv_max = more(recv_max, pc.max(tb.column("recv_ns")).as_py())
                ts_max = more(ts_max, pc.max(tb.column("ts_ns")).as_py())
        return recv_max, ts_max

    def _checkpoint_index(self, g: _Group) -> list[tuple[Any, ...]]:
        """The rows of a ``checkpoints`` row group without their blobs (``_CP_COLUMNS``),
        read once: a small index of where each checkpoint is."""
        key = (g.file, g.row_group)
        rows = self._cp_index.get(key)
        if rows is None:
            t = self._read([g], list(_CP_COLUMNS))
            rows = self._cp_index[key] = list(zip(*(t.column(c).to_pylist()
                                                    for c in _CP_COLUMNS)))
        return rows

    def checkpoint(self, channel: str, symbol: str, epoch: int, start: int,
                   cut: int) -> tuple[int, str, int | None, bytes] | None:
        """The epoch's latest checkpoint with ``start <= recv_ns <= cut`` (by ``recv_ns``
        then ``epoch_message``): ``(recv_ns, reason, checksum, book blob)``, or None.

        Looked for in a window just before ``cut`` first, widened while it holds none (as
        ``BookEngine._checkpoint``: a query's cost must not grow with the history before it).
        """
        from recorder.query.books import _CP_WIDEN, _CP_WINDOW_NS

        span = _CP_WINDOW_NS
        while True:
            lo = max(start, cut - span)
            found = self._latest_checkpoint(channel, symbol, epoch, lo, cut)
            if found is not None or lo <= start:
                return found
            span *= _CP_WIDEN

    def _latest_checkpoint(self, channel: str, symbol: str, epoch: int, start: int,
                           cut: int) -> tuple[int, str, int | None, bytes] | None:
        """:meth:`checkpoint` in ``[start, cut]``: row groups are visited latest first; the
        search stops at the first group that cannot hold a later checkpoint than the best
        found."""
        candidates = [
            g for path in self.archive.files("checkpoints", symbols=[symbol], start=start,
                                             end=cut, root=self.root)
            for g in self._groups_of(str(path))
            if g.may_hold(start, cut, channel=channel, symbol=symbol, epoch=epoch)]
        candidates.sort(key=lambda g: -(g.max_recv if g.max_recv is not None else 2**63))
        best: tuple[int, int] | None = None
        where: tuple[_Group, int] | None = None
        found: tuple[str, int | None] | None = None
        for g in candidates:
            if best is not None and g.max_recv is not None and g.max_recv < best[0]:
                break
            for i, (recv, ch, sym, ep, msg, reason, ck) in enumerate(self._checkpoint_index(g)):
                if (start <= recv <= cut and ep == epoch and ch == channel and sym == symbol
                        and (best is None or (recv, msg) > best)):
                    best, where, found = (recv, msg), (g, i), (reason, ck)
        if best is None or where is None or found is None:
            return None
        g, i = where
        blob = self._read([g], ["book"]).column("book")[i].as_py()
        return best[0], found[0], found[1], blob


def _equals(col: pa.ChunkedArray, value: str) -> pa.ChunkedArray:
    """``col == value`` for a (dictionary) string column, without decoding the dictionary."""
    out = []
    for chunk in col.chunks:
        if pa.types.is_dictionary(chunk.type):
            codes = np.flatnonzero(chunk.dictionary.to_numpy(zero_copy_only=False) == value)
            out.append(pc.is_in(chunk.indices, value_set=pa.array(codes, chunk.indices.type)))
        else:
            out.append(pc.equal(chunk, value))
    return pa.chunked_array(out, pa.bool_())


def _empty_like(pf: pq.ParquetFile, columns: list[str]) -> pa.Table:
    """No rows, with the file's types."""
    schema = pf.schema_arrow
    return pa.table({c: pa.array([], schema.field(c).type) for c in columns})


def _empty(archive: Archive, channel: str, columns: list[str]) -> pa.Table:
    """No rows: an empty table with the dataset's types."""
    schema = archive.schemas[channel].arrow()
    return pa.table({c: pa.array([], schema.field(c).type) for c in columns})


def core_book_at(engine: BookEngine, channel: str, symbol: str, cut: int, depth: int | None,
                 res: BookAt) -> BookAt | None:
    """The answer of ``engine.book_at`` for (``channel``, ``symbol``) at receive-clock ``cut``
    on the core, filling ``res``; None when the reference model must answer (module doc)."""
    from recorder.query.books import QueryError, _unreadable_gap, _unreadable_reason

    ep = engine._epoch_for(channel, symbol, cut, res)
    if ep is None:
        return res
    res.epoch = ep.epoch
    level3 = channel == "level3"
    reader = engine._reader()
    try:
        cp = reader.checkpoint(channel, symbol, ep.epoch, ep.start_ns, cut)
    except READ_ERRORS:
        return None  # the reference reads again: a damaged file is then found and left out
    checkpoint: dict[str, Any] | None = None
    cp_ids: list[str] = []
    if cp is None:  # no checkpoint: replay from the epoch's snapshot rows
        book_depth = ep.depth or 10
        pp, qp = ep.pp, ep.qp
        if level3:
            pp, qp = pp or 0, qp or 0
        elif pp is None or qp is None:
            return None  # the reference explains it (QueryError)
        lo, skip_first = ep.start_ns, False
    else:
        recv, reason, ck, blob = cp
        try:
            raw: Any = _DECODERS[channel].decode(blob)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None  # the reference raises its own error
        if raw.price_precision is None or raw.qty_precision is None:
            return None
        book_depth, pp, qp = raw.depth, raw.price_precision, raw.qty_precision
        if level3:
            cp_ids = [o[0] for o in raw.bids] + [o[0] for o in raw.asks]
        checkpoint = {"bids": raw.bids, "asks": raw.asks}
        res.checkpoint_recv_ns = recv
        res.checkpoint_reason = reason
        res.exchange_checksum = ck
        lo, skip_first = recv, True
    bad = engine._unreadable(channel, symbol, lo, ep.start_ns, cut)
    if bad:
        res.reason = _unreadable_reason(bad)
        res.gap = _unreadable_gap(bad[0], channel, symbol)
        return res
    try:
        table = reader.rows(channel, symbol, ep.epoch, lo, cut,
                            [*ROW_COLUMNS, *(["order_id"] if level3 else [])])
    except READ_ERRORS:
        return None
    price, qty = table.column("price"), table.column("qty")
    if price.null_count or qty.null_count:
        return None  # a value beyond int64 units: its text is in `overflow`
    never_null = ("recv_ns", "event", "side", "price_scale", "qty_scale") + (
        ("order_id",) if level3 else ())
    if any(table.column(c).null_count for c in never_null):
        return None
    checksum, checksum_valid = _nullable(table.column("checksum"), np.uint32)
    ts_ns, ts_valid = _nullable(table.column("ts_ns"), np.int64)
    rows: dict[str, Any] = {
        "side": _ints(table.column("side"), np.int8),
        "event": _ints(table.column("event"), np.int8),
        "price": _ints(price, np.int64),
        "qty": _ints(qty, np.int64),
        "price_scale": _ints(table.column("price_scale"), np.int8),
        "qty_scale": _ints(table.column("qty_scale"), np.int8),
        "checksum": checksum,
        "checksum_valid": checksum_valid,
        "recv_ns": _ints(table.column("recv_ns"), np.int64),
        "ts_ns": ts_ns,
        "ts_valid": ts_valid,
    }
    dictionary: pa.Array | None = None
    n_orders = 0
    if level3:
        ids = table.column("order_id")
        if pa.types.is_dictionary(ids.type):
            ids = ids.cast(ids.type.value_type)
        every = pa.chunked_array([pa.array(cp_ids, pa.large_string()),
                                  *ids.cast(pa.large_string()).chunks], pa.large_string())
        encoded = pc.dictionary_encode(every.combine_chunks())
        codes = np.ascontiguousarray(encoded.indices.to_numpy(), dtype=np.int64)
        dictionary = encoded.dictionary
        n_orders = len(dictionary)
        rows["order"] = codes[len(cp_ids):]
        if checkpoint is not None:
            n_bids = len(checkpoint["bids"])
            cp_codes = codes[:len(cp_ids)].tolist()
            checkpoint = {
                "bids": [(c, o[1], o[2], o[3]) for c, o in zip(cp_codes[:n_bids],
                                                               checkpoint["bids"])],
                "asks": [(c, o[1], o[2], o[3]) for c, o in zip(cp_codes[n_bids:],
                                                               checkpoint["asks"])],
            }
    out = _core.book_at_replay(channel, book_depth, pp, qp, rows, checkpoint, skip_first,
                               n_orders)
    if "refused" in out:
        return None
    if out["skipped"]:  # the checkpoint is the book after the first message at its recv_ns
        ck = out["skipped_checksum"]
        if ck is not None and res.exchange_checksum is not None and ck != res.exchange_checksum:
            raise QueryError(f"checkpoint at {out['skipped_recv']} does not match the message "
                             f"it follows (archive inconsistent; run recorder verify)")
    if out["last_recv"] is not None:
        res.last_message_recv_ns, res.last_message_ts_ns = out["last_recv"], out["last_ts"]
    if out["exchange_checksum"] is not None:
        res.exchange_checksum = out["exchange_checksum"]
    res.messages_replayed = out["messages"]
    if not out["ready"]:
        res.reason = "no snapshot applied before this time"
        return res
    res.valid = True
    res.checksum = out["checksum"]
    res.checksum_ok = (None if res.exchange_checksum is None
                       else res.checksum == res.exchange_checksum)
    res.price_precision, res.qty_precision, res.depth = pp, qp, out["depth"]
    bids, asks = out["bids"], out["asks"]
    if level3:
        assert dictionary is not None
        res.bids, res.asks = _orders(bids, dictionary, depth), _orders(asks, dictionary, depth)
        res.__dict__["_book_factory"] = _l3_factory(symbol, out["depth"], pp, qp, bids, asks,
                                                    dictionary)
    else:
        res.bids = bids if depth is None else bids[:depth]
        res.asks = asks if depth is None else asks[:depth]
        res.__dict__["_book_factory"] = _l2_factory(symbol, out["depth"], pp, qp, bids, asks)
    return res


def _orders(items: list[tuple[Any, ...]], dictionary: pa.Array,
            depth: int | None) -> list[tuple[Any, ...]]:
    """The core's orders with their Kraken ids, for the ``depth`` best levels."""
    if depth is not None:
        items = [o for o in items if o[0] <= depth]
    if not items:
        return []
    names = dictionary.take(pa.array([o[2] for o in items], pa.int64())).to_pylist()
    return [(lvl, q, name, p, qty, ts, ahead)
            for (lvl, q, _, p, qty, ts, ahead), name in zip(items, names)]


def _l2_factory(symbol: str, depth: int, pp: int, qp: int, bids: list[tuple[int, int, int]],
                asks: list[tuple[int, int, int]]) -> Callable[[], L2Book]:
    """Restores the reference-model book from the core's levels (``BookAt.book``)."""

    def build() -> L2Book:
        return L2Book.restore(L2Checkpoint(
            symbol=symbol, depth=depth, price_precision=pp, qty_precision=qp,
            bids=levels_to_text([(p, q) for _, p, q in bids], pp, qp),
            asks=levels_to_text([(p, q) for _, p, q in asks], pp, qp)))

    return build


def _l3_factory(symbol: str, depth: int, pp: int, qp: int, bids: list[tuple[Any, ...]],
                asks: list[tuple[Any, ...]], dictionary: pa.Array) -> Callable[[], L3Book]:
    """Restores the reference-model book from the core's orders (``BookAt.book``)."""

    def build() -> L3Book:
        def side(orders: list[tuple[Any, ...]]) -> list[L3OrderState]:
            return [L3OrderState(o[2], units_to_text(o[3], pp), units_to_text(o[4], qp), o[5])
                    for o in _orders(orders, dictionary, None)]

        return L3Book.restore(L3Checkpoint(symbol=symbol, depth=depth, price_precision=pp,
                                           qty_precision=qp, bids=side(bids), asks=side(asks)))

    return build


#: The ``futures_book`` columns a futures replay reads.
FUTURES_COLUMNS: Final = ("recv_ns", "ts_ns", "event", "seq", "side", "price", "qty",
                          "price_scale", "qty_scale")


def core_futures_book_at(reader: RowReader, symbol: str, epoch: int, start_ns: int,
                         cp: tuple[int, str, int | None, bytes] | None, cut: int,
                         depth: int | None, res: BookAt) -> bool:
    """:meth:`~recorder.query.books.BookEngine.book_at` of ``futures_book`` on the core.

    ``cp``: the epoch's checkpoint at or before ``cut`` (``(recv_ns, reason, checksum,
    blob)``) or None. The rows from it (else from ``start_ns``) to ``cut`` go to
    ``_core.futures_book_at_replay`` as numpy columns. Fills ``res`` and returns True, or
    returns False with ``res`` untouched whenever the reference model must answer: a
    checkpoint that does not decode or records precisions, a read failure, a value beyond int64
    units (its text is in ``overflow``), or a replay the core refuses (the reference then
    raises its own error)."""
    checkpoint: tuple[int | None, list[tuple[str, str]], list[tuple[str, str]]] | None = None
    since = start_ns
    state: FuturesBookCheckpoint | None = None
    try:
        if cp is not None:
            state = msgspec.msgpack.decode(cp[3], type=FuturesBookCheckpoint)
            if state.price_precision is not None or state.qty_precision is not None:
                return False
            checkpoint = (state.seq,
                          [(token_to_text(p), token_to_text(q)) for p, q in state.bids],
                          [(token_to_text(p), token_to_text(q)) for p, q in state.asks])
            since = cp[0]
        table = reader.rows("futures_book", symbol, epoch, since, cut, list(FUTURES_COLUMNS))
    except (*READ_ERRORS, ProtocolError, msgspec.DecodeError, msgspec.ValidationError):
        return False
    price, qty = table.column("price"), table.column("qty")
    if price.null_count or qty.null_count:
        return False
    rows = {
        "event": _ints(table.column("event"), np.int8),
        "side": _ints(table.column("side"), np.int8),
        "price_scale": _ints(table.column("price_scale"), np.int8),
        "qty_scale": _ints(table.column("qty_scale"), np.int8),
        "seq": _ints(table.column("seq"), np.int64),
        "price": _ints(price, np.int64),
        "qty": _ints(qty, np.int64),
    }
    out = _core.futures_book_at_replay(rows, checkpoint, depth)
    if "refused" in out:
        return False
    if cp is not None and state is not None:
        res.checkpoint_recv_ns, res.checkpoint_reason = cp[0], cp[1]
        res.last_message_recv_ns = cp[0]
        res.last_message_ts_ns = (None if state.timestamp_ms is None
                                  else state.timestamp_ms * 1_000_000)
    last = out["last_row"]
    if last is not None:
        res.last_message_recv_ns = table.column("recv_ns")[last].as_py()
        res.last_message_ts_ns = table.column("ts_ns")[last].as_py()
    res.messages_replayed = out["messages"]
    if not out["ready"]:
        res.reason = "no snapshot applied before this time"
        return True
    from recorder.query.books import futures_answer

    futures_answer(res, out["seq"], out["bids"], out["asks"])
    return True
