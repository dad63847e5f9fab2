"""``recorder verify --archive DIR [--json]``: prove the archive's integrity from the archive alone.

For every ``book`` and ``level3`` epoch: rebuild the book from the epoch's snapshot rows,
recompute Kraken's CRC32 and compare it with the checksum Kraken sent (stored on each message's
last row); then replay every update message of the epoch in order and compare again; every
checkpoint is compared with the replayed book at its time (``checkpoints_checked``). Also
checks that every manifest file exists, has the size and rows the manifest says and decodes
in full (:mod:`recorder.archive.health`); a file that does not is a failure (with the
``recorder repair`` command that re-derives it from the journal, key ``repair``) and is left
out of the replay, which goes on with every other file.

The replay runs on the compiled core (``recorder._core``, see :mod:`recorder.verify_core`):
whole columns go to Rust, which replays every epoch with the GIL released. The pure-Python
books of :mod:`recorder.book` remain the reference model: ``verify_archive(root,
engine="python")`` replays with them (tests compare the two reports field by field), and the
core hands them the rare epochs it does not replay itself (values kept as overflow text).

A mismatch on the final message of an epoch that the ``epochs`` dataset records as ended by
``checksum_mismatch`` was detected live and is reported as ``recorded_mismatches`` (evidence,
with its gap row), not as a verification failure. Exit status: 0 when ``failed`` (messages),
``checkpoints_failed`` and ``files_failed`` are all 0, else 1.

Epochs recorded over FIX 4.4 (``epochs.stream`` ``fix`` / ``fix_l3``) are **not checkable**:
FIX carries no Kraken CRC32, so there is nothing to recompute against. They are left out of
the replay and counted apart, as ``not_checkable_epochs`` and ``not_checkable_messages``
(their sequence continuity was checked live: a MsgSeqNum gap ended the epoch and is a
``gaps`` row with cause ``fix_seq_gap``).

Rejects are reported, not failed: ``rejects`` (rows of the ``rejects`` dataset: input that could
not be decoded or applied, kept raw), ``rejects_by_reason``, and ``flagged_by_reason`` (rows with
``stage = "flag"``, e.g. ``unlisted_symbol``: reported, data kept).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import click
import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.archive.health import FileHealth, repair_hint
from recorder.archive.layout import DAY_NS, day_of
from recorder.roots import ArchiveRootError, archive_roots
from recorder.archive.store import ArchiveStore
from recorder.book.checkpoint import decode_checkpoint
from recorder.book.l2 import L2Book
from recorder.book.l3 import L3Book
from recorder.info import reject_counts
from recorder.pipeline.core import FIX_STREAMS
from recorder.pipeline.state import StateError
from recorder.progress import progress_bar
from recorder.protocol.numbers import to_units
from recorder.verify_core import verify_channel_core

__all__ = ["verify_archive", "verify_command"]


def _read(archive: ArchiveStore, dataset: str, columns: list[str],
          skip: frozenset[Path] = frozenset()) -> pa.Table | None:
    files = [f for f in archive.files(dataset) if f not in skip]
    if not files:
        return None
    return pa.concat_tables(pq.read_table(f, columns=columns) for f in files)


def _pylist(col: pa.ChunkedArray) -> list[Any]:
    """A column as a Python list; integer columns without nulls go through numpy (~10x
    faster than ``to_pylist``), an all-null column becomes a list of ``None``."""
    if col.null_count == len(col):
        return [None] * len(col)
    if col.null_count == 0 and pa.types.is_integer(col.type):
        return col.to_numpy().tolist()
    return col.to_pylist()


#: Replay engines: the compiled core (``recorder._core``) or the pure-Python reference books.
Engine = Literal["core", "python"]


def verify_archive(root: Path, progress: Callable[[int], None] | None = None,
                   engine: Engine = "core") -> dict[str, Any]:
    """Run every check; returns the report dict (see module docstring). ``progress`` is
    called with the number of book/level3 rows replayed.

    ``engine="core"`` (the product) replays the book channels in Rust
    (:mod:`recorder.verify_core`); ``engine="python"`` replays them with the pure-Python books
    of :mod:`recorder.book`, the reference model the core is tested against. Both give the
    same report."""
    if engine not in ("core", "python"):
        raise ValueError(f"unknown verify engine {engine!r}")
    archive = ArchiveStore(root)
    report: dict[str, Any] = {
        "messages_checked": 0, "verified": 0, "failed": 0, "recorded_mismatches": 0,
        "checkpoints_checked": 0, "checkpoints_failed": 0, "files_checked": 0,
        "files_failed": 0, "unverifiable_messages": 0, "not_checkable_epochs": 0,
        "not_checkable_messages": 0, "per": [], "failures": [],
    }
    health = FileHealth(warn=False)
    damaged: set[Path] = set()
    by_reason, flagged = reject_counts(archive)
    report.update(rejects=sum(by_reason.values()), rejects_by_reason=by_reason,
                  flagged_by_reason=flagged)
    for f in archive.state.files:
        report["files_checked"] += 1
        problem = health.check(archive.root, f, deep=True)
        if problem is not None:
            damaged.add(problem.path)
            report["files_failed"] += 1
            report["failures"].append({"file": f.file, "error": problem.reason[:200],
                                       "repair": problem.fix})
    skip = frozenset(damaged)
    recorded: set[tuple[str, str, int]] = set()
    #: per channel, the epochs recorded over FIX (no Kraken CRC32: not checkable)
    no_crc: dict[str, set[int]] = defaultdict(set)
    fix_messages: dict[tuple[str, int], int] = {}
    ep = _read(archive, "epochs", ["channel", "symbol", "epoch", "end_reason", "stream",
                                   "messages"], skip)
    if ep is not None:
        for ch, sym, e, why, stream, n in zip(*(ep.column(i).to_pylist() for i in range(6))):
            if why == "checksum_mismatch":
                recorded.add((ch, sym, e))
            if stream in FIX_STREAMS and ch in ("book", "level3"):
                no_crc[ch].add(e)
                # an epoch's rows: an open one is superseded by its final row (most messages)
                fix_messages[(ch, e)] = max(n, fix_messages.get((ch, e), 0))
    report["not_checkable_epochs"] = len(fix_messages)
    report["not_checkable_messages"] = sum(fix_messages.values())
    cps: dict[tuple[str, str, int], list[tuple[int, bytes, int | None]]] = defaultdict(list)
    cpt = _read(archive, "checkpoints", ["channel", "symbol", "epoch", "epoch_message", "book",
                                         "checksum"], skip)
    if cpt is not None:
        for ch, sym, e, t, blob, ck in zip(*(cpt.column(i).to_pylist() for i in range(6))):
            cps[(ch, sym, e)].append((t, blob, ck))
    per: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for channel in ("book", "level3"):
        cols = ["recv_ns", "symbol", "epoch", "event", "side", "price", "qty", "price_scale",
                "qty_scale", "checksum", "overflow"]
        if channel == "level3":
            cols += ["order_id", "ts_ns"]
        table = _read(archive, channel, cols, skip)
        if table is not None and no_crc[channel]:
            table = table.filter(pc.invert(pc.is_in(
                table.column("epoch"), value_set=pa.array(sorted(no_crc[channel]), pa.int64()))))
        if table is None or table.num_rows == 0:
            continue
        columns: dict[str, list[Any]] = {}

        def reference_epoch(sym: str, e: int, idx: list[int], channel: str = channel,
                            table: pa.Table = table, cols: list[str] = cols) -> None:
            if not columns:  # the reference needs the rows as Python lists: built once
                columns.update({c: _pylist(table.column(c)) for c in cols})
            _verify_epoch(channel, sym, e, idx, columns, cps.get((channel, sym, e), []),
                          (channel, sym, e) in recorded, report, per)

        if engine == "core" and verify_channel_core(channel, table, cps, recorded, report,
                                                    per, reference_epoch):
            if progress is not None:
                progress(table.num_rows)
            continue
        data = {c: _pylist(table.column(c)) for c in cols}
        columns.update(data)
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for i, (sym, e) in enumerate(zip(data["symbol"], data["epoch"])):
            groups[(sym, e)].append(i)
        for (sym, e), idx in groups.items():
            reference_epoch(sym, e, idx)
            if progress is not None:
                progress(len(idx))
    report["per"] = [
        {"dataset": d, "symbol": s, "date": day, "messages_checked": v[0], "verified": v[1],
         "failed": v[2]}
        for (d, s, day), v in sorted(per.items())
    ]
    if damaged:  # replays that lacked the damaged files' rows may fail too: same fix
        for failure in report["failures"]:
            failure.setdefault("repair", repair_hint(archive.root))
    report["failures"] = report["failures"][:50]
    return report


def _units(units: int | None, scale: int, overflow: str | None, field: str) -> int:
    """Units of a stored value: the int column, or the exact overflow text at ``scale``."""
    if units is not None:
        return units
    return to_units(msgspec.json.decode(overflow or "{}")[field], scale)


def _verify_epoch(channel: str, symbol: str, epoch: int, idx: list[int],
                  d: dict[str, list[Any]], checkpoints: list[tuple[int, bytes, int | None]],
                  recorded_mismatch: bool, report: dict[str, Any],
                  per: dict[tuple[str, str, str], list[int]]) -> None:
    """Replay one epoch's rows message by message (units straight from the columns, no text
    round trip) and compare every recomputed checksum with the stored one."""
    first = idx[0]
    pp, qp = d["price_scale"][first], d["qty_scale"][first]
    depth = None
    cp_by_time = {t: (blob, ck) for t, blob, ck in checkpoints}
    for t, blob, _ in checkpoints:
        depth = decode_checkpoint(blob).depth
        break
    if depth is None:
        depth = 10
    book: Any = (L2Book if channel == "book" else L3Book)(symbol, depth, pp, qp)
    l2 = channel == "book"
    price, qty, over = d["price"], d["qty"], d["overflow"]
    side, event, checksum, recv_col = d["side"], d["event"], d["checksum"], d["recv_ns"]
    order_id = d.get("order_id")
    ts_col = d.get("ts_ns")
    bids: list[Any] = []
    asks: list[Any] = []
    messages: list[tuple[bool, list[Any], list[Any], int, int]] = []
    for i in idx:
        p = price[i]
        q = qty[i]
        if p is None or q is None:
            p = _units(p, pp, over[i], "price")
            q = _units(q, qp, over[i], "qty")
        ev = event[i]
        item: Any = (p, q) if l2 else (ev, order_id[i], p, q, ts_col[i])  # type: ignore[index]
        (bids if side[i] == 0 else asks).append(item)
        ck = checksum[i]
        if ck is not None:
            messages.append((ev == 0, bids, asks, ck, recv_col[i]))
            bids, asks = [], []
    if bids or asks:
        report["unverifiable_messages"] += 1
    days: dict[int, str] = {}
    last = len(messages) - 1
    for k, (is_snap, b, a, ck, recv) in enumerate(messages):
        dn = recv // DAY_NS
        day = days.get(dn)
        if day is None:
            day = days[dn] = day_of(recv)
        key = (channel, symbol, day)
        try:
            res = book.apply_units("snapshot" if is_snap else "update", b, a, ck)
            computed: Any = res.computed
            ok = computed == ck
        except Exception as exc:  # noqa: BLE001 - replay failure is a verification failure
            ok, computed = False, f"{type(exc).__name__}: {exc}"
        counts = per[key]
        if ok:
            report["messages_checked"] += 1
            report["verified"] += 1
            counts[0] += 1
            counts[1] += 1
        elif recorded_mismatch and k == last:
            report["recorded_mismatches"] += 1
            continue
        else:
            report["messages_checked"] += 1
            report["failed"] += 1
            counts[0] += 1
            counts[2] += 1
            report["failures"].append({"dataset": channel, "symbol": symbol, "epoch": epoch,
                                       "recv_ns": recv, "expected": ck,
                                       "computed": computed})
            return  # the rest of the epoch cannot be trusted
        cp = cp_by_time.get(k + 1)
        if cp is not None:
            report["checkpoints_checked"] += 1
            blob, cp_ck = cp
            if decode_checkpoint(blob) != book.checkpoint() or (cp_ck is not None
                                                                and cp_ck != book.checksum()):
                report["checkpoints_failed"] += 1
                report["failures"].append({"dataset": "checkpoints", "channel": channel,
                                           "symbol": symbol, "epoch": epoch, "recv_ns": recv})


_COUNTS = ("messages_checked", "verified", "failed", "recorded_mismatches",
           "checkpoints_checked", "checkpoints_failed", "files_checked", "files_failed",
           "unverifiable_messages", "not_checkable_epochs", "not_checkable_messages",
           "rejects")


def replay_rows(paths: Any) -> int:
    """The book and level3 rows :func:`verify_roots` replays (a progress bar's total)."""
    return sum(f.rows for r in archive_roots(paths) for f in ArchiveStore(r).state.files
               if f.dataset in ("book", "level3"))


def verify_roots(paths: Any, progress: Callable[[int], None] | None = None,
                 engine: Engine = "core") -> dict[str, Any]:
    """:func:`verify_archive` for every root ``paths`` designates (a root, a parent of roots,
    or several such paths; :func:`recorder.roots.archive_roots`). One root: its report as is.
    Several: counts summed, ``per``/``failures`` concatenated with a ``root`` key, and
    ``roots`` = ``[{"root": str, **report}]``. Raises :class:`~recorder.roots.ArchiveRootError`.
    """
    roots = archive_roots(paths)
    reports = [(r, verify_archive(r, progress, engine)) for r in roots]
    if len(reports) == 1:
        return reports[0][1]
    total: dict[str, Any] = {k: sum(rep[k] for _, rep in reports) for k in _COUNTS}
    for key in ("rejects_by_reason", "flagged_by_reason"):
        merged: dict[str, int] = defaultdict(int)
        for _, rep in reports:
            for reason, n in rep[key].items():
                merged[reason] += n
        total[key] = dict(sorted(merged.items()))
    total["per"] = [{"root": str(r), **p} for r, rep in reports for p in rep["per"]]
    total["failures"] = [{"root": str(r), **f} for r, rep in reports
                         for f in rep["failures"]][:50]
    total["roots"] = [{"root": str(r), **rep} for r, rep in reports]
    return total


@click.command("verify")
@click.option("--archive", "archive", multiple=True,
              type=click.Path(path_type=Path),
              help="An archive root, a parent of writer roots; repeat for several.")
@click.option("--journal", "journal", multiple=True, type=click.Path(path_type=Path),
              help="Re-check every book/level3 checksum from raw journal segments instead: "
                   "an archive root, a journal directory or a .kjz segment; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def verify_command(archive: tuple[Path, ...], journal: tuple[Path, ...], as_json: bool) -> None:
    """Replay every epoch from the archive alone and recompute every Kraken checksum
    (with --journal: from the raw journal segments, independent of Parquet)."""
    if bool(archive) == bool(journal):
        raise click.UsageError("give --archive or --journal (one of them)")
    if journal:
        from recorder.verify_journal import run_journal_command

        run_journal_command(list(journal), as_json)
        return
    try:
        with progress_bar("verify", unit="rows", enabled=not as_json) as bar:
            if bar.enabled:
                bar.update(total=replay_rows(list(archive)))
            report = verify_roots(list(archive), bar.advance if bar.enabled else None)
    except ArchiveRootError as exc:
        raise click.BadParameter(str(exc), param_hint="'--archive'") from None
    except StateError as exc:  # a manifest this recorder cannot read
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    bad = report["failed"] or report["checkpoints_failed"] or report["files_failed"]
    if as_json:
        click.echo(msgspec.json.encode(report).decode())
    else:
        click.echo(f"messages checked {report['messages_checked']}, verified "
                   f"{report['verified']}, failed {report['failed']} (recorded live "
                   f"mismatches {report['recorded_mismatches']}); checkpoints "
                   f"{report['checkpoints_checked']} checked, {report['checkpoints_failed']} "
                   f"failed; files {report['files_checked']} checked, "
                   f"{report['files_failed']} failed")
        if report["not_checkable_epochs"]:
            click.echo(f"FIX epochs {report['not_checkable_epochs']:,} "
                       f"({report['not_checkable_messages']:,} messages): not checkable, FIX "
                       "carries no Kraken CRC32 (sequence gaps are in gaps, cause fix_seq_gap)")
        reported = [f"{reason} {n:,}" for reason, n in report["rejects_by_reason"].items()]
        reported += [f"{reason} {n:,} (flagged, rows kept)"
                     for reason, n in report["flagged_by_reason"].items()]
        click.echo(f"rejects {report['rejects']:,}" + (f": {', '.join(reported)}"
                                                       if reported else "")
                   + ("  (see: recorder query \"SELECT reason, detail, symbol FROM rejects\")"
                      if reported else ""))
        for r in report.get("roots", []):
            click.echo(f"  root {r['root']}: checked {r['messages_checked']}, verified "
                       f"{r['verified']}, failed {r['failed']}, checkpoints failed "
                       f"{r['checkpoints_failed']}, files failed {r['files_failed']}, "
                       f"rejects {r['rejects']}")
        for p in report["per"]:
            click.echo(f"  {(p['root'] + ' ') if 'root' in p else ''}{p['dataset']:7} {p['symbol']:12} {p['date']}  checked "
                       f"{p['messages_checked']:>8}  verified {p['verified']:>8}  failed "
                       f"{p['failed']:>4}")
        for f in report["failures"][:10]:
            fix = f.get("repair")
            click.echo("  FAIL " + ", ".join(f"{k} {v}" for k, v in f.items() if k != "repair")
                       + (f"\n       fix: {fix}" if fix else ""))
    sys.exit(1 if bad else 0)
