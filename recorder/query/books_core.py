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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recorder import _core
from recorder.book.checkpoint import L2Checkpoint, L3Checkpoint, L3OrderState, levels_to_text
from recorder.book.l2 import L2Book
from recorder.book.l3 import L3Book
from recorder.protocol.numbers import units_to_text

if TYPE_CHECKING:
    from recorder.query.books import BookAt, BookEngine

__all__ = ["core_book_at"]


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


_DECODERS: Final = {"book": msgspec.msgpack.Decoder(_RawL2),
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
    cp = engine._checkpoint(channel, symbol, ep, cut)
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
    table = engine._row_table(channel, symbol, ep.epoch, lo, cut)
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
