"""``recorder info --archive DIR [--json]``: what an archive holds, from its manifests.

Per root (a root, a parent of writer roots, or several ``--archive``): the last commit, and per
dataset the live files, rows, bytes, time range (the dataset's time column, UTC) and number of
symbols; the symbols recorded (spot and futures); the rejects by reason (and the flags, rows
with ``stage = "flag"``). Everything but the symbols of very wide files and the reject reasons
comes from ``_manifest/current.json``: no data file is scanned.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import click
import msgspec
import pyarrow.parquet as pq

from recorder.archive.store import ArchiveStore, ArchiveFormatError
from recorder.protocol.symbols import is_futures_symbol
from recorder.query.timeparse import ns_to_iso
from recorder.roots import ArchiveRootError, archive_roots

__all__ = ["archive_info", "info_command", "reject_counts"]

#: The manifest lists at most this many symbols per file; wider files are read.
_MANIFEST_SYMBOL_LIMIT = 1000
#: Symbols printed per kind by the human output (``--json`` has them all).
_SHOWN = 40


def reject_counts(archive: ArchiveStore) -> tuple[dict[str, int], dict[str, int]]:
    """(rejects by reason, flags by reason) of an archive root's ``rejects`` dataset. A file
    that cannot be read is left out (``recorder verify`` reports it)."""
    rejects: dict[str, int] = defaultdict(int)
    flags: dict[str, int] = defaultdict(int)
    for f in archive.files("rejects"):
        try:
            t = pq.read_table(f, columns=["stage", "reason"])
        except Exception:  # noqa: BLE001 - an unreadable file is verify's to report
            continue
        counts = t.group_by(["stage", "reason"]).aggregate([("reason", "count")])
        for stage, reason, n in zip(*(counts.column(i).to_pylist() for i in range(3))):
            (flags if stage == "flag" else rejects)[str(reason)] += n
    return dict(sorted(rejects.items())), dict(sorted(flags.items()))


def _symbols(archive: ArchiveStore) -> tuple[list[str], list[str]]:
    """(spot symbols, futures product ids) with data in an archive root (instrument listings,
    gaps, liveness and rejects do not count)."""
    spot: set[str] = set()
    futures: set[str] = set()
    for f in archive.state.files:
        if f.dataset in ("rejects", "gaps", "liveness", "instruments"):
            continue  # no data symbols of their own (asset ids, "*" rows, bookkeeping)
        names: set[str] = set(f.symbols)
        if len(f.symbols) >= _MANIFEST_SYMBOL_LIMIT:  # the manifest's list may be cut short
            column = "product_id" if f.dataset.startswith("futures_") else "symbol"
            try:
                values = pq.read_table(archive.root / f.file, columns=[column]).column(0)
            except Exception:  # noqa: BLE001 - an unreadable file is verify's to report
                continue
            names = {str(v) for v in values.unique().to_pylist() if v is not None}
        for name in names:
            if name != "*":
                (futures if is_futures_symbol(name) else spot).add(name)
    return sorted(spot), sorted(futures)


def root_info(root: Path) -> dict[str, Any]:
    """What one archive root holds (see module docstring)."""
    archive = ArchiveStore(root)
    datasets: dict[str, dict[str, Any]] = {}
    for f in archive.state.files:
        d = datasets.setdefault(f.dataset, {"files": 0, "rows": 0, "bytes": 0,
                                            "start_ns": None, "end_ns": None,
                                            "symbols": set()})
        d["files"] += 1
        d["rows"] += f.rows
        d["bytes"] += f.bytes
        if f.min_time is not None:
            d["start_ns"] = f.min_time if d["start_ns"] is None else min(d["start_ns"],
                                                                          f.min_time)
        if f.max_time is not None:
            d["end_ns"] = f.max_time if d["end_ns"] is None else max(d["end_ns"], f.max_time)
        d["symbols"].update(s for s in f.symbols if s != "*")
    for d in datasets.values():
        d["symbols"] = len(d["symbols"])
        d["start"] = None if d["start_ns"] is None else ns_to_iso(d["start_ns"])
        d["end"] = None if d["end_ns"] is None else ns_to_iso(d["end_ns"])
    spot, futures = _symbols(archive)
    by_reason, flagged = reject_counts(archive)
    starts = [d["start_ns"] for d in datasets.values() if d["start_ns"] is not None]
    ends = [d["end_ns"] for d in datasets.values() if d["end_ns"] is not None]
    return {
        "root": str(root), "commit": archive.state.commit,
        "files": len(archive.state.files), "rows": sum(d["rows"] for d in datasets.values()),
        "bytes": sum(d["bytes"] for d in datasets.values()),
        "start": ns_to_iso(min(starts)) if starts else None,
        "end": ns_to_iso(max(ends)) if ends else None,
        "datasets": dict(sorted(datasets.items())),
        "symbols": {"spot": spot, "futures": futures},
        "rejects": sum(by_reason.values()), "rejects_by_reason": by_reason,
        "flagged_by_reason": flagged,
    }


def archive_info(paths: Any) -> dict[str, Any]:
    """:func:`root_info` for every root ``paths`` designates, with totals. Raises
    :class:`~recorder.roots.ArchiveRootError` when a path leads to no archive root."""
    roots = [root_info(r) for r in archive_roots(paths)]
    return {
        "roots": roots,
        "files": sum(r["files"] for r in roots), "rows": sum(r["rows"] for r in roots),
        "bytes": sum(r["bytes"] for r in roots), "rejects": sum(r["rejects"] for r in roots),
    }


def _print(info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    console.width = max(console.width, 132)  # full timestamps, also when piped
    for r in info["roots"]:
        console.print(f"[bold]{escape(r['root'])}[/]  commit {r['commit']}, {r['files']:,} "
                      f"files, {r['rows']:,} rows, {r['bytes']:,} bytes"
                      + (f", {r['start']} .. {r['end']}" if r["start"] else ""))
        table = Table()
        for col, justify in (("dataset", "left"), ("files", "right"), ("rows", "right"),
                             ("bytes", "right"), ("from (UTC)", "left"), ("to (UTC)", "left"),
                             ("symbols", "right")):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for name, d in r["datasets"].items():
            table.add_row(name, f"{d['files']:,}", f"{d['rows']:,}", f"{d['bytes']:,}",
                          d["start"] or "", d["end"] or "", f"{d['symbols']:,}")
        if r["datasets"]:
            console.print(table)
        else:
            console.print("no data files yet")
        for kind, symbols in r["symbols"].items():
            if symbols:
                more = f" and {len(symbols) - _SHOWN} more" if len(symbols) > _SHOWN else ""
                console.print(f"{kind} symbols ({len(symbols)}): "
                              f"{escape(', '.join(symbols[:_SHOWN]))}{more}")
        reported = [f"{reason} {n:,}" for reason, n in r["rejects_by_reason"].items()]
        reported += [f"{reason} {n:,} (flagged, rows kept)"
                     for reason, n in r["flagged_by_reason"].items()]
        console.print(f"rejects {r['rejects']:,}" + (f": {', '.join(reported)}"
                                                     if reported else ""))
    if len(info["roots"]) > 1:
        console.print(f"total: {len(info['roots'])} roots, {info['files']:,} files, "
                      f"{info['rows']:,} rows, {info['rejects']:,} rejects")


@click.command("info")
@click.option("--archive", "archive", required=True, multiple=True,
              type=click.Path(path_type=Path),
              help="An archive root, a parent of writer roots; repeat for several.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info_command(archive: tuple[Path, ...], as_json: bool) -> None:
    """What an archive holds: roots, datasets, symbols, time ranges, rows, files, rejects."""
    try:
        info = archive_info(list(archive))
    except ArchiveRootError as exc:
        raise click.BadParameter(str(exc), param_hint="'--archive'") from None
    except ArchiveFormatError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"Error: cannot read the archive: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(msgspec.json.encode(info).decode())
    else:
        _print(info)
