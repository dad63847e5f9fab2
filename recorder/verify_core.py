"""``recorder verify``'s replay on the compiled core (``recorder._core``, issue #15).

:func:`verify_channel_core` replays every epoch of one channel (``book`` or ``level3``) in
Rust: it hands the archive's columns over as numpy buffers (no per-row Python objects), the
core groups the rows by ``(symbol, epoch)``, replays each epoch with the GIL released and
returns one verdict per message plus the checkpoint comparisons; this module turns those
into exactly the report entries the reference replay (:func:`recorder.verify._verify_epoch`
over the pure-Python books) produces: same counts, same ``per`` rows, same failures in the
same order, same error text.

Epochs the core does not replay are *delegated* to the reference replay, so the report stays
identical: an epoch holding a value that does not fit int64 units (its exact text is in the
``overflow`` column), scales outside 0..18 or a depth below 1 (or beyond 2**62). A channel
whose never-null columns hold nulls is left to the reference replay as a whole
(:func:`verify_channel_core` returns False).

Checkpoints are decoded here (``msgspec``) and handed over as units at their own precisions,
with a ``comparable`` flag that is False when the checkpoint cannot equal any book the epoch
can hold (another kind or symbol, a value whose text is not the canonical rendering at its
precision, an order id absent from the rows): the core then compares depth, precisions,
every level/order and the stored checksum, which is what the reference's
``decode_checkpoint(blob) != book.checkpoint()`` amounts to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recorder import _core
from recorder.archive.layout import DAY_NS, day_of
from recorder.book.checkpoint import L2Checkpoint, L3Checkpoint, decode_checkpoint
from recorder.protocol.errors import BookError

__all__ = ["verify_channel_core"]

#: Verdicts and checkpoint results of ``_core.replay_channel``.
_MATCHED: Final = 0
_CP_NOT_REACHED: Final = 0
_CP_FAILED: Final = 2
_DELEGATED: Final = 1
#: Depths beyond this are left to the reference replay (they do not fit the core's int64).
_MAX_DEPTH: Final = 2**62
_I64: Final = (-(2**63), 2**63)
_MAX_SCALE: Final = 18

#: Checkpoints of one ``(channel, symbol, epoch)``: ``(epoch_message, blob, checksum)``.
CheckpointRows = list[tuple[int, bytes, "int | None"]]
#: Replays one delegated epoch with the reference model: ``(symbol, epoch, row indices)``.
ReferenceEpoch = Callable[[str, int, list[int]], None]

_NEVER_NULL: Final = ("recv_ns", "symbol", "epoch", "event", "side", "price_scale", "qty_scale")


def _ints(col: pa.ChunkedArray, dtype: type[np.generic]) -> np.ndarray:
    """A column without nulls as a contiguous numpy array of ``dtype``."""
    return np.ascontiguousarray(col.to_numpy(), dtype=dtype)


def _nullable(col: pa.ChunkedArray, dtype: type[np.generic]) -> tuple[np.ndarray, np.ndarray]:
    """Values (nulls as 0) and validity (uint8) of a nullable integer column."""
    values = np.ascontiguousarray(pc.fill_null(col, 0).to_numpy(), dtype=dtype)
    valid = np.ascontiguousarray(col.is_valid().to_numpy(), dtype=np.uint8)
    return values, valid


def _dictionary(col: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Codes (int32, first appearance order) and dictionary of a string column."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    encoded = pc.dictionary_encode(col.combine_chunks())
    return np.ascontiguousarray(encoded.indices.to_numpy(), dtype=np.int32), encoded.dictionary


class _Specs:
    """The flat checkpoint arrays ``_core.replay_channel`` takes, built epoch by epoch."""

    def __init__(self, level3: bool) -> None:
        self.level3 = level3
        self.spec_symbol: list[int] = []
        self.spec_epoch: list[int] = []
        self.spec_depth: list[int] = []
        self.spec_cp_start = [0]
        self.cp_message: list[int] = []
        self.cp_checksum: list[int] = []
        self.cp_comparable: list[int] = []
        self.cp_depth: list[int] = []
        self.cp_price_scale: list[int] = []
        self.cp_qty_scale: list[int] = []
        self.cp_level_start = [0]
        self.lv_side: list[int] = []
        self.lv_price_text: list[str] = []
        self.lv_qty_text: list[str] = []
        self.lv_order_id: list[str] = []
        self.lv_ts: list[int] = []
        self.lv_ts_valid: list[int] = []
        #: per checkpoint: (spec index, epoch_message, decode error or None)
        self.cp_info: list[tuple[int, int, Exception | None]] = []

    def add_epoch(self, symbol_code: int, symbol: str, epoch: int,
                  checkpoints: CheckpointRows) -> None:
        """One epoch's checkpoints, as the reference replay reads them: the depth from the
        first one, then ``{epoch_message: (blob, checksum)}`` (a later row for the same
        message wins). When the first one does not decode (or its depth is out of range) the
        epoch is left to the reference replay, which needs that depth; a later one that does
        not decode cannot match, and its error is raised if the replay reaches it, as the
        reference would."""
        spec = len(self.spec_symbol)
        self.spec_symbol.append(symbol_code)
        self.spec_epoch.append(epoch)
        try:
            depth = decode_checkpoint(checkpoints[0][1]).depth
        except Exception:  # noqa: BLE001 - the reference replay raises it if it has rows
            depth = 0
        if not 1 <= depth <= _MAX_DEPTH:  # 0: the core delegates the epoch to the reference
            self.spec_depth.append(0)
            self.spec_cp_start.append(len(self.cp_message))
            return
        self.spec_depth.append(depth)
        by_message = {t: (blob, ck) for t, blob, ck in checkpoints}
        for t, (blob, ck) in by_message.items():
            try:
                cp: Any = decode_checkpoint(blob)
                error = None
            except Exception as exc:  # noqa: BLE001 - re-raised if the replay reaches it
                cp, error = None, exc
            message = t if type(t) is int and _I64[0] <= t < _I64[1] else -1  # -1: never
            self.cp_info.append((spec, message, error))
            self.cp_message.append(message)
            self.cp_checksum.append(-1 if ck is None else ck)
            comparable = cp is not None and self._add_levels(cp, symbol)
            self.cp_comparable.append(int(comparable))
            self.cp_depth.append(cp.depth if comparable and cp.depth <= _MAX_DEPTH else -1)
            self.cp_price_scale.append(cp.price_precision if comparable else -1)
            self.cp_qty_scale.append(cp.qty_precision if comparable else -1)
            self.cp_level_start.append(len(self.lv_side))
        self.spec_cp_start.append(len(self.cp_message))

    def _add_levels(self, cp: Any, symbol: str) -> bool:
        """Append the checkpoint's levels (orders) as text; False when it cannot match any
        book of the epoch (the core also refuses texts that are not the canonical rendering
        at the checkpoint's precisions)."""
        kind = L3Checkpoint if self.level3 else L2Checkpoint
        if type(cp) is not kind or cp.symbol != symbol:
            return False
        pp, qp = cp.price_precision, cp.qty_precision
        if pp is None or qp is None or not (0 <= pp <= _MAX_SCALE and 0 <= qp <= _MAX_SCALE):
            return False  # a replayed epoch's precisions are always in 0..18
        if self.level3:
            stamps = [o.ts_ns for o in cp.bids if o.ts_ns is not None]
            stamps += [o.ts_ns for o in cp.asks if o.ts_ns is not None]
            if stamps and not (_I64[0] <= min(stamps) and max(stamps) < _I64[1]):
                return False  # the book's timestamps come from an int64 column
        for code, side in ((0, cp.bids), (1, cp.asks)):
            if not side:
                continue
            self.lv_side.extend([code] * len(side))
            if self.level3:
                self.lv_price_text.extend([o.price for o in side])
                self.lv_qty_text.extend([o.qty for o in side])
                self.lv_order_id.extend([o.order_id for o in side])
                ts = [o.ts_ns for o in side]
                self.lv_ts_valid.extend([t is not None for t in ts])
                self.lv_ts.extend([0 if t is None else t for t in ts])
            else:
                prices, qtys = zip(*side)
                self.lv_price_text.extend(prices)
                self.lv_qty_text.extend(qtys)
        return True

    def arrays(self, order_dictionary: pa.Array | None) -> dict[str, np.ndarray]:
        out = {
            "spec_symbol": np.array(self.spec_symbol, np.int32),
            "spec_epoch": np.array(self.spec_epoch, np.int64),
            "spec_depth": np.array(self.spec_depth, np.int64),
            "spec_cp_start": np.array(self.spec_cp_start, np.int64),
            "cp_message": np.array(self.cp_message, np.int64),
            "cp_checksum": np.array(self.cp_checksum, np.int64),
            "cp_comparable": np.array(self.cp_comparable, np.uint8),
            "cp_depth": np.array(self.cp_depth, np.int64),
            "cp_price_scale": np.array(self.cp_price_scale, np.int64),
            "cp_qty_scale": np.array(self.cp_qty_scale, np.int64),
            "cp_level_start": np.array(self.cp_level_start, np.int64),
            "lv_side": np.array(self.lv_side, np.int8),
            "lv_price_text": self.lv_price_text,
            "lv_qty_text": self.lv_qty_text,
        }
        if self.level3:
            # order ids -> codes of the rows' dictionary; an id the rows never had is -1
            # (the core then knows the checkpoint cannot match)
            ids = pa.array(self.lv_order_id, pa.string())
            codes = pc.fill_null(pc.index_in(ids, value_set=order_dictionary), -1)
            out["lv_order"] = np.ascontiguousarray(codes.to_numpy(), np.int64)
            out["lv_ts"] = np.array(self.lv_ts, np.int64)  # in range: see _add_levels
            out["lv_ts_valid"] = np.array(self.lv_ts_valid, np.uint8)
        return out


def _refusal(kind: int, a: int, b: int, c: int, symbol: str,
             order_dictionary: pa.Array | None) -> str:
    """The reference replay's text for a message its book refuses."""
    if kind == 1:
        exc = BookError(f"{symbol}: update without a valid snapshot")
    elif kind == 2:
        exc = BookError(f"invalid level: price {a} units, qty {b} units")
    elif kind == 3 and order_dictionary is not None:
        order_id = order_dictionary[a].as_py()
        exc = BookError(f"{symbol}: invalid order {order_id}: price {b}, qty {c}")
    elif kind == 4:
        exc = BookError(f"{symbol}: unknown level3 event {a!r}")
    else:  # pragma: no cover - the core validates handles before replaying
        exc = BookError(f"{symbol}: order handle {a} out of range")
    return f"{type(exc).__name__}: {exc}"


def verify_channel_core(
    channel: str,
    table: pa.Table,
    checkpoints: dict[tuple[str, str, int], CheckpointRows],
    recorded: set[tuple[str, str, int]],
    report: dict[str, Any],
    per: dict[tuple[str, str, str], list[int]],
    reference_epoch: ReferenceEpoch,
) -> bool:
    """Replay one channel's ``table`` on the core and add its results to ``report``/``per``
    exactly as the reference replay would; delegated epochs go to ``reference_epoch``.

    Returns False (and changes nothing) when a never-null column holds nulls: the caller
    then runs the reference replay on the whole channel.
    """
    level3 = channel == "level3"
    never_null = _NEVER_NULL + (("order_id",) if level3 else ())
    if any(table.column(c).null_count for c in never_null):
        return False
    symbols, symbol_names = _dictionary(table.column("symbol"))
    price, price_valid = _nullable(table.column("price"), np.int64)
    qty, qty_valid = _nullable(table.column("qty"), np.int64)
    checksum, checksum_valid = _nullable(table.column("checksum"), np.uint32)
    rows: dict[str, Any] = {
        "symbol": symbols,
        "epoch": _ints(table.column("epoch"), np.int64),
        "side": _ints(table.column("side"), np.int8),
        "event": _ints(table.column("event"), np.int8),
        "price": price,
        "qty": qty,
        "units_valid": price_valid & qty_valid,
        "price_scale": _ints(table.column("price_scale"), np.int8),
        "qty_scale": _ints(table.column("qty_scale"), np.int8),
        "checksum": checksum,
        "checksum_valid": checksum_valid,
        "recv_ns": _ints(table.column("recv_ns"), np.int64),
    }
    order_dictionary: pa.Array | None = None
    if level3:
        orders, order_dictionary = _dictionary(table.column("order_id"))
        rows["order"] = orders.astype(np.int64)
        rows["n_orders"] = len(order_dictionary)
        rows["ts_ns"], rows["ts_valid"] = _nullable(table.column("ts_ns"), np.int64)
    names = symbol_names.to_pylist()
    code_of = {name: code for code, name in enumerate(names)}
    specs = _Specs(level3)
    for (ch, symbol, epoch), cps in checkpoints.items():
        if ch == channel and symbol in code_of and cps:
            specs.add_epoch(code_of[symbol], symbol, epoch, cps)
    result = _core.replay_channel(channel, rows, specs.arrays(order_dictionary))
    out = {name: np.frombuffer(result[name], dtype) for name, dtype in _RESULT_TYPES.items()}
    _report(channel, out, names, specs, order_dictionary, recorded, report, per,
            reference_epoch)
    return True


_RESULT_TYPES: Final = {
    "perm": "<i8", "group_row_start": "<i8", "group_symbol": "<i4", "group_epoch": "<i8",
    "group_status": "u1", "group_messages": "<i8", "group_unverifiable": "u1",
    "group_msg_start": "<i8", "msg_verdict": "u1", "msg_expected": "<u4",
    "msg_computed": "<u4", "msg_recv": "<i8", "cp_result": "u1", "err_message": "<i8",
    "err_kind": "u1", "err_a": "<i8", "err_b": "<i8", "err_c": "<i8",
}


def _report(channel: str, out: dict[str, np.ndarray], names: list[Any], specs: _Specs,
            order_dictionary: pa.Array | None, recorded: set[tuple[str, str, int]],
            report: dict[str, Any], per: dict[tuple[str, str, str], list[int]],
            reference_epoch: ReferenceEpoch) -> None:
    """Add the core's verdicts to the report, epoch by epoch in the reference's order."""
    msg_start = out["group_msg_start"]
    verdict = out["msg_verdict"]
    recv = out["msg_recv"]
    errors = {int(m): (int(k), int(a), int(b), int(c)) for m, k, a, b, c in zip(
        out["err_message"], out["err_kind"], out["err_a"], out["err_b"], out["err_c"])}
    spec_of = {(s, e): i for i, (s, e) in enumerate(zip(specs.spec_symbol, specs.spec_epoch))}
    cps_of: dict[int, list[int]] = {}
    for c, (spec, _, _) in enumerate(specs.cp_info):
        cps_of.setdefault(spec, []).append(c)
    cp_result = out["cp_result"]
    # per-message status for the per-day table: 0 verified, 1 failed, 2 recorded (counted
    # nowhere, but its day row exists, as in the reference)
    status = np.where(verdict == _MATCHED, 0, 1).astype(np.int8)
    checked = verified = failed = recorded_n = unverifiable = 0
    cp_checked = cp_failed = 0
    for g, (sym_code, epoch) in enumerate(zip(out["group_symbol"].tolist(),
                                              out["group_epoch"].tolist())):
        symbol = names[sym_code]
        if out["group_status"][g] == _DELEGATED:
            a, b = out["group_row_start"][g], out["group_row_start"][g + 1]
            reference_epoch(symbol, epoch, out["perm"][a:b].tolist())
            continue
        unverifiable += int(out["group_unverifiable"][g])
        lo, hi = int(msg_start[g]), int(msg_start[g + 1])
        spec = spec_of.get((sym_code, epoch))
        for c in sorted(cps_of.get(spec, []) if spec is not None else [],
                        key=lambda c: specs.cp_info[c][1]):
            result = cp_result[c]
            if result == _CP_NOT_REACHED:
                continue
            error = specs.cp_info[c][2]
            if error is not None:  # the reference decodes it here and raises
                raise error
            cp_checked += 1
            if result == _CP_FAILED:
                cp_failed += 1
                k = specs.cp_info[c][1]
                report["failures"].append({"dataset": "checkpoints", "channel": channel,
                                           "symbol": symbol, "epoch": epoch,
                                           "recv_ns": int(recv[lo + k - 1])})
        if hi == lo:
            continue
        last = hi - 1
        ok = hi - lo - int(verdict[last] != _MATCHED)
        checked += ok
        verified += ok
        if verdict[last] == _MATCHED:
            continue
        if (channel, symbol, epoch) in recorded and hi - lo == out["group_messages"][g]:
            recorded_n += 1
            status[last] = 2
            continue
        checked += 1
        failed += 1
        if last in errors:
            computed: Any = _refusal(*errors[last], symbol, order_dictionary)
        else:
            computed = int(out["msg_computed"][last])
        report["failures"].append({"dataset": channel, "symbol": symbol, "epoch": epoch,
                                   "recv_ns": int(recv[last]),
                                   "expected": int(out["msg_expected"][last]),
                                   "computed": computed})
    report["messages_checked"] += checked
    report["verified"] += verified
    report["failed"] += failed
    report["recorded_mismatches"] += recorded_n
    report["unverifiable_messages"] += unverifiable
    report["checkpoints_checked"] += cp_checked
    report["checkpoints_failed"] += cp_failed
    _add_days(channel, out, names, status, per)


#: Day numbers of int64 ns times lie in [-2**17, 2**17): a (symbol, day) pair packs in an int64.
_DAY_BITS: Final = 18


def _add_days(channel: str, out: dict[str, np.ndarray], names: list[Any],
              status: np.ndarray, per: dict[tuple[str, str, str], list[int]]) -> None:
    """Add replayed messages to the per (dataset, symbol, UTC day) table, vectorised: the
    messages come epoch by epoch, so equal (symbol, day) keys form runs (no sort needed)."""
    if not len(status):
        return
    counts = np.diff(out["group_msg_start"])
    msg_symbol = np.repeat(out["group_symbol"].astype(np.int64), counts)
    key = (msg_symbol << _DAY_BITS) + (out["msg_recv"] // DAY_NS + (1 << (_DAY_BITS - 1)))
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    ok = np.add.reduceat((status == 0).astype(np.int64), starts)
    bad = np.add.reduceat((status == 1).astype(np.int64), starts)
    for k, v, f in zip(key[starts].tolist(), ok.tolist(), bad.tolist()):
        day_n = (k & ((1 << _DAY_BITS) - 1)) - (1 << (_DAY_BITS - 1))
        row = per[(channel, names[k >> _DAY_BITS], day_of(day_n * DAY_NS))]
        row[0] += v + f
        row[1] += v
        row[2] += f
