"""``recorder verify`` on the compiled core (issue #15) gives exactly the reference's report.

The same archive is verified with ``engine="core"`` (the product: books replayed in Rust) and
``engine="python"`` (the pure-Python books of ``recorder/book/``, the reference model); the two
reports must be equal in every field: counts, the per-day table, failures in order with their
error text. Archives: the committed v1 archive, a 12 s ``recorder demo`` (live faults: a
recorded mismatch), and a simulated stream's archive with one fault injected per case
(mismatches, refused messages, delegated overflow epochs, recorded mismatches, trailing rows,
tampered, non-canonical and duplicated checkpoints). Each case also asserts the effect it
injects, so none can pass vacuously.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recorder.archive.store import ArchiveStore
from recorder.book.checkpoint import L3OrderState, decode_checkpoint, encode_checkpoint
from recorder.ingest import ingest
from recorder.protocol.numbers import units_to_text
from recorder.roots import archive_roots
from recorder.verify import verify_archive
from recorder.verify_core import verify_channel_core
from tests.archive_helpers import make_sim_record

DATA = Path(__file__).resolve().parent / "data"


def _both(root: Path) -> dict[str, Any]:
    """Verify ``root`` with both engines, assert the reports are equal, return it."""
    reference = verify_archive(root, engine="python")
    core = verify_archive(root, engine="core")
    assert core == reference
    assert json.dumps(core, sort_keys=True) == json.dumps(reference, sort_keys=True)
    return core


def test_committed_v1_archive(tmp_path: Path) -> None:
    report = _both(DATA / "archive-v1")
    expected = json.loads((DATA / "archive-v1.expected.json").read_text())
    assert report["messages_checked"] == report["verified"] == expected["messages_checked"]
    assert report["checkpoints_checked"] == 4


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="engine"):
        verify_archive(DATA / "archive-v1", engine="fortran")  # type: ignore[arg-type]


@pytest.mark.integration
def test_demo_archive(tmp_path: Path) -> None:
    archive = tmp_path / "demo"
    subprocess.run([sys.executable, "-m", "recorder", "demo", "--seconds", "12", "--archive",
                    str(archive)], check=True, capture_output=True, timeout=150)
    reports = [_both(root) for root in archive_roots(archive)]
    assert len(reports) == 2
    assert all(r["messages_checked"] > 500 and r["failed"] == 0 for r in reports)
    # the demo's faults: a live checksum mismatch, recorded as such
    assert sum(r["recorded_mismatches"] for r in reports) >= 1


# ------------------------------------------------------------------ injected faults


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("core-verify")
    record = make_sim_record(base / "s.zst", messages=3000, pairs=2, seed=5)
    ingest([record], base / "a")
    return base / "a"


Table = pa.Table


def _edit(root: Path, dataset: str, change: Callable[[Table], Table]) -> None:
    """Rewrite the dataset's first file with ``change`` applied (row count kept)."""
    path = ArchiveStore(root).files(dataset)[0]
    table = pq.read_table(path)
    new = change(table)
    assert new.num_rows == table.num_rows
    pq.write_table(new, path)


def _set(table: Table, column: str, values: list[Any]) -> Table:
    i = table.schema.get_field_index(column)
    return table.set_column(i, column, pa.array(values, table.schema.field(column).type))


def _col(table: Table, column: str) -> list[Any]:
    return table.column(column).to_pylist()


def _epochs(table: Table) -> dict[tuple[str, int], list[int]]:
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, key in enumerate(zip(_col(table, "symbol"), _col(table, "epoch"))):
        groups[key].append(i)
    return groups


def _message_ends(table: Table, rows: list[int]) -> list[int]:
    checksum = _col(table, "checksum")
    return [i for i in rows if checksum[i] is not None]


def _first_epoch(table: Table) -> list[int]:
    return next(iter(_epochs(table).values()))


def _copy(pristine: Path, tmp_path: Path) -> Path:
    root = tmp_path / "a"
    shutil.copytree(pristine, root)
    return root


def test_clean_archive(pristine: Path, tmp_path: Path) -> None:
    report = _both(_copy(pristine, tmp_path))
    assert report["failed"] == 0 and report["messages_checked"] > 2000
    assert report["checkpoints_checked"] >= 4
    assert {p["dataset"] for p in report["per"]} == {"book", "level3"}


@pytest.mark.parametrize("dataset", ["book", "level3"])
def test_mismatch(pristine: Path, tmp_path: Path, dataset: str) -> None:
    root = _copy(pristine, tmp_path)

    def bump_qty(t: Table) -> Table:
        rows = _first_epoch(t)
        ends = _message_ends(t, rows)
        target = ends[len(ends) // 2]  # the last row of a message in the middle
        qty = _col(t, "qty")
        qty[target] += 1
        return _set(t, "qty", qty)

    _edit(root, dataset, bump_qty)
    report = _both(root)
    assert report["failed"] == 1
    failure = next(f for f in report["failures"] if f["dataset"] == dataset)
    assert isinstance(failure["computed"], int) and failure["computed"] != failure["expected"]


def test_refused_l2_level(pristine: Path, tmp_path: Path) -> None:
    root = _copy(pristine, tmp_path)

    def zero_price(t: Table) -> Table:
        rows = _first_epoch(t)
        price = _col(t, "price")
        price[_message_ends(t, rows)[3]] = 0
        return _set(t, "price", price)

    _edit(root, "book", zero_price)
    report = _both(root)
    assert report["failed"] == 1
    assert report["failures"][0]["computed"].startswith("BookError: invalid level: price 0 units")


def test_update_without_snapshot(pristine: Path, tmp_path: Path) -> None:
    root = _copy(pristine, tmp_path)

    def no_snapshot(t: Table) -> Table:
        rows = _first_epoch(t)
        first_end = _message_ends(t, rows)[0]
        event = _col(t, "event")
        for i in rows:
            if i <= first_end:
                event[i] = 1
        return _set(t, "event", event)

    _edit(root, "level3", no_snapshot)
    report = _both(root)
    assert report["failed"] == 1
    assert report["failures"][0]["computed"].endswith(": update without a valid snapshot")


@pytest.mark.parametrize("fault", ["unknown_event", "negative_price"])
def test_refused_l3_entries(pristine: Path, tmp_path: Path, fault: str) -> None:
    root = _copy(pristine, tmp_path)

    def corrupt(t: Table) -> Table:
        rows = _first_epoch(t)
        event = _col(t, "event")
        target = next(i for i in rows[len(rows) // 2:] if event[i] == 1)  # an add
        if fault == "unknown_event":
            event[target] = 9
            return _set(t, "event", event)
        price = _col(t, "price")
        price[target] = -5
        return _set(t, "price", price)

    _edit(root, "level3", corrupt)
    report = _both(root)
    assert report["failed"] == 1
    text = report["failures"][0]["computed"]
    if fault == "unknown_event":
        assert text.endswith("unknown level3 event 9")
    else:
        assert "invalid order " in text and "price -5" in text


def test_overflow_epoch_is_delegated(pristine: Path, tmp_path: Path) -> None:
    """A value kept as overflow text (null units) sends its epoch to the reference replay."""
    root = _copy(pristine, tmp_path)
    seen: dict[str, Any] = {}

    def to_overflow(t: Table) -> Table:
        rows = _first_epoch(t)
        target = rows[len(rows) // 2]
        price = _col(t, "price")
        scale = _col(t, "price_scale")[target]
        overflow = _col(t, "overflow")
        overflow[target] = json.dumps({"price": units_to_text(price[target], scale)})
        price[target] = None
        seen["key"] = (_col(t, "symbol")[target], _col(t, "epoch")[target])
        return _set(_set(t, "price", price), "overflow", overflow)

    _edit(root, "book", to_overflow)
    report = _both(root)
    assert report["failed"] == 0
    assert report["messages_checked"] == _both(pristine)["messages_checked"]
    # the core handed exactly that epoch over
    delegated: list[tuple[str, int]] = []
    table = pa.concat_tables(pq.read_table(f) for f in ArchiveStore(root).files("book"))
    report2: dict[str, Any] = defaultdict(int, failures=[])
    handled = verify_channel_core("book", table, {}, set(), report2, defaultdict(lambda: [0, 0, 0]),
                                  lambda s, e, idx: delegated.append((s, e)))
    assert handled and delegated == [seen["key"]]


def test_recorded_mismatch(pristine: Path, tmp_path: Path) -> None:
    root = _copy(pristine, tmp_path)
    key: dict[str, Any] = {}

    def last_checksum_wrong(t: Table) -> Table:
        symbol, epoch = next(iter(_epochs(t)))
        key["k"] = (symbol, epoch)
        rows = _epochs(t)[(symbol, epoch)]
        checksum = _col(t, "checksum")
        last = _message_ends(t, rows)[-1]
        checksum[last] = (checksum[last] + 1) % 2**32
        return _set(t, "checksum", checksum)

    def mark_ended(t: Table) -> Table:
        why = _col(t, "end_reason")
        for i, (ch, sym, ep) in enumerate(zip(_col(t, "channel"), _col(t, "symbol"),
                                             _col(t, "epoch"))):
            if (ch, sym, ep) == ("book", *key["k"]):
                why[i] = "checksum_mismatch"
        return _set(t, "end_reason", why)

    _edit(root, "book", last_checksum_wrong)
    _edit(root, "epochs", mark_ended)
    report = _both(root)
    assert report["recorded_mismatches"] == 1 and report["failed"] == 0


def test_trailing_rows_are_unverifiable(pristine: Path, tmp_path: Path) -> None:
    root = _copy(pristine, tmp_path)

    def drop_last_checksum(t: Table) -> Table:
        rows = _first_epoch(t)
        checksum = _col(t, "checksum")
        checksum[_message_ends(t, rows)[-1]] = None
        return _set(t, "checksum", checksum)

    _edit(root, "level3", drop_last_checksum)
    report = _both(root)
    assert report["unverifiable_messages"] == 1 and report["failed"] == 0


def _edit_checkpoint(t: Table, channel: str, change: Callable[[Any], Any]) -> Table:
    blobs = _col(t, "book")
    i = _col(t, "channel").index(channel)
    blobs[i] = encode_checkpoint(change(decode_checkpoint(blobs[i])))
    return _set(t, "book", blobs)


@pytest.mark.parametrize("fault", ["l2_qty", "l2_non_canonical", "checksum", "l3_order_id",
                                   "l3_ts", "l3_queue_order"])
def test_tampered_checkpoint(pristine: Path, tmp_path: Path, fault: str) -> None:
    root = _copy(pristine, tmp_path)

    def change(t: Table) -> Table:
        if fault == "checksum":
            ck = _col(t, "checksum")
            ck[0] = (ck[0] + 1) % 2**32
            return _set(t, "checksum", ck)
        if fault.startswith("l2"):
            def edit(cp: Any) -> Any:
                price, qty = cp.bids[0]
                qty = qty + "0" if fault == "l2_non_canonical" else units_to_text(
                    int(qty.replace(".", "")) + 1, cp.qty_precision)
                cp.bids[0] = (price, qty)
                return cp
            return _edit_checkpoint(t, "book", edit)

        def edit3(cp: Any) -> Any:
            o = cp.asks[0]
            if fault == "l3_order_id":
                cp.asks[0] = L3OrderState("OZZZZZ-ZZZZZ-ZZZZZZ", o.price, o.qty, o.ts_ns)
            elif fault == "l3_ts":
                cp.asks[0] = L3OrderState(o.order_id, o.price, o.qty, (o.ts_ns or 0) + 1)
            else:  # swap the first two orders (same level or not)
                cp.asks[0], cp.asks[1] = cp.asks[1], cp.asks[0]
            return cp
        return _edit_checkpoint(t, "level3", edit3)

    _edit(root, "checkpoints", change)
    report = _both(root)
    assert report["checkpoints_failed"] == 1 and report["failed"] == 0
    assert [f["dataset"] for f in report["failures"]] == ["checkpoints"]


@pytest.mark.parametrize("tampered_last", [False, True])
def test_duplicate_checkpoint_rows(pristine: Path, tmp_path: Path, tampered_last: bool) -> None:
    """Two checkpoint rows for the same message: the later row is the one compared. (A level3
    checkpoint row makes room for the copy, so the file keeps its row count.)"""
    root = _copy(pristine, tmp_path)

    def duplicate(t: Table) -> Table:
        channels = _col(t, "channel")
        i, j = channels.index("book"), channels.index("level3")
        order = [r for r in range(t.num_rows) if r != j]
        at = order.index(i)
        order.insert(at + 1 if tampered_last else at, i)
        copy = at + 1 if tampered_last else at
        out = t.take(order)
        blobs = _col(out, "book")
        cp = decode_checkpoint(blobs[copy])
        blobs[copy] = encode_checkpoint(msgspec.structs.replace(cp, bids=cp.bids[1:]))
        return _set(out, "book", blobs)

    _edit(root, "checkpoints", duplicate)
    report = _both(root)
    assert report["checkpoints_failed"] == int(tampered_last)
    assert report["checkpoints_checked"] == _both(pristine)["checkpoints_checked"] - 1


def test_epochs_across_days(pristine: Path, tmp_path: Path) -> None:
    """The per-day table: an epoch crossing midnight counts on both days; receive times
    before 1970 count on 1970-01-01, as the reference's ``day_of`` clamps them."""
    root = _copy(pristine, tmp_path)

    def shift(t: Table) -> Table:
        recv = _col(t, "recv_ns")
        groups = list(_epochs(t).values())
        first = groups[0]
        for i in first[len(first) // 2:]:
            recv[i] += 86_400 * 10**9
        for i in groups[-1]:
            recv[i] -= 2 * 10**18
        return _set(t, "recv_ns", recv)

    _edit(root, "book", shift)
    report = _both(root)
    book_days = {(p["symbol"], p["date"]) for p in report["per"] if p["dataset"] == "book"}
    assert len(book_days) >= 3 and any(d == "1970-01-01" for _, d in book_days)
    assert report["failed"] == 0
