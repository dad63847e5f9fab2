"""``recorder query`` and ``recorder book``: SQL and book ladders from the terminal."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from recorder.query.books import CHANNELS, DEFAULT_CHANNEL

if TYPE_CHECKING:
    from recorder.query.api import Archive
    from recorder.query.books import Channel, Clock

__all__ = ["book_command", "query_command"]

_ARCHIVE = click.option("--archive", "archive", required=True, multiple=True, type=str,
                        help="Archive root, or the parent of capture's writer roots, or an "
                             "s3://bucket/prefix that recorder sync filled; repeat to merge "
                             "several.")


def _open(archive: tuple[str, ...]) -> Archive:
    """The :class:`~recorder.query.api.Archive` of the ``--archive`` paths; a path that leads
    to no archive root exits 2 with the reason (missing, a file, a symlink loop...)."""
    from recorder.pipeline.state import StateError
    from recorder.query.api import Archive
    from recorder.roots import ArchiveRootError

    try:
        return Archive(list(archive))
    except (ArchiveRootError, OSError, StateError) as exc:  # OSError: s3:// out of reach;
        # StateError: a manifest this recorder cannot read
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)


def _cell(value: Any, width: int = 200) -> str:
    """One table cell: ``text_frame`` already made decimals, binary and nested values text."""
    if value is None:
        return ""
    text = str(value)
    return text if len(text) <= width else f"{text[:width - 1]}…"


@click.command("query")
@click.argument("sql")
@_ARCHIVE
@click.option("--format", "fmt",
              type=click.Choice(["table", "csv", "json", "jsonl", "parquet"]),
              default="table", show_default=True,
              help="table (for people), csv, json (one array), jsonl (one object per line) or "
                   "parquet. Exact decimals print without padding (strings in JSON), binary "
                   "columns as hex, nested values as JSON.")
@click.option("--param", "params", multiple=True,
              help="Positional parameter for ? placeholders (repeatable; bound, never spliced).")
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write here instead of stdout (required for parquet).")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="Rows shown by --format table.")
def query_command(sql: str, archive: tuple[str, ...], fmt: str, params: tuple[str, ...],
                  output: Path | None, limit: int) -> None:
    """Run SQL against the archive with every view and macro registered.

    Views: one per dataset (see schemas/*.toml) with readable columns; macros such as
    book_at, bbo_series, mid_spread, trades_with_book, ohlc_from_trades, basis_series,
    funding_series, order_lifetimes, queue_position (queries/*.sql).
    """
    import msgspec

    from recorder.query.output import json_rows, text_frame

    ar = _open(archive)
    try:
        with ar:
            df = ar.sql(sql, list(params) if params else None).collect()
    except Exception as exc:  # noqa: BLE001 - any SQL error is the user's, report it cleanly
        click.echo(f"Error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(2)
    if fmt == "parquet":
        if output is None:
            raise click.UsageError("--format parquet needs --output FILE")
        try:
            df.write_parquet(output)
        except OSError as exc:
            raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
        return
    if fmt == "csv":
        text = text_frame(df).write_csv()
    elif fmt == "json":
        text = msgspec.json.encode(json_rows(df), enc_hook=str).decode() + "\n"
    elif fmt == "jsonl":
        encode = msgspec.json.Encoder(enc_hook=str).encode
        text = "".join(encode(row).decode() + "\n" for row in json_rows(df))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(show_lines=False)
        for name in df.columns:
            table.add_column(name, overflow="fold")
        for row in text_frame(df.head(limit)).iter_rows():
            table.add_row(*(_cell(v) for v in row))
        console = Console(width=max(120, 14 * len(df.columns)))
        with console.capture() as cap:
            console.print(table)
            if df.height > limit:
                console.print(f"({df.height} rows, {limit} shown; --limit N or --format csv)")
        text = cap.get()
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
    else:
        click.echo(text, nl=False)


@click.command("book")
@click.argument("symbol")
@click.option("--at", "at", required=True,
              help="Time: ISO 8601 (UTC unless an offset is given), int ns, or relative to "
                   "the symbol's recorded data: start, end, start+30s, end-1m (Polars-style "
                   "durations: ns us ms s m h d).")
@_ARCHIVE
@click.option("--channel", type=click.Choice(CHANNELS), default=None,
              help="Which book: book (L2 levels), level3 (orders) or futures_book "
                   "[default: futures_book for a futures product id such as PF_XBTUSD, else "
                   f"{DEFAULT_CHANNEL}, as recorder.Archive and the SQL macros].")
@click.option("--depth", type=click.IntRange(min=0), default=10, show_default=True,
              help="Price levels per side (0 = the full recorded book).")
@click.option("--clock", type=click.Choice(["exchange", "receive"]), default="exchange",
              show_default=True, help="Whose timestamps --at refers to.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def book_command(symbol: str, at: str, archive: tuple[str, ...], channel: str | None,
                 depth: int, clock: str, as_json: bool) -> None:
    """Rebuild SYMBOL's book at --at exactly (checkpoint + replay) and print a ladder.

    SYMBOL is a spot pair (BTC/USD) or a futures product id (PF_XBTUSD). When there is no
    book, the answer says why: an unknown symbol (with close matches and the known ones), a
    time outside the recorded data (with its range), or a gap.

    Exit status 0 with a valid book, 3 when no valid book exists at that time (gap, before
    the first snapshot...), 2 on bad input.
    """
    import msgspec

    from recorder.protocol.symbols import is_futures_symbol, symbol_problem
    from recorder.query.books import QueryError
    from recorder.query.timeparse import parse_anchored, to_ns

    problem = symbol_problem(symbol, "any")
    if problem is not None:
        raise click.BadParameter(f"{symbol!r} is not a Kraken symbol: {problem}",
                                 param_hint="'SYMBOL'")
    try:
        anchored = parse_anchored(at)
        t = to_ns(at) if anchored is None else 0
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--at'") from None
    chosen = cast("Channel", channel or ("futures_book" if is_futures_symbol(symbol)
                                        else DEFAULT_CHANNEL))
    when = cast("Clock", clock)
    ar = _open(archive)
    try:
        with ar:
            if anchored is not None:
                # the recorded range comes with the answer for a time before the data
                probe = ar.book_at(symbol, 0, channel=chosen, depth=1, clock="receive")
                if probe.data_start_ns is not None and probe.data_end_ns is not None:
                    t = anchored.resolve(probe.data_start_ns, probe.data_end_ns - 1)
                    when = "receive"  # the range is on the receive clock
            b = ar.book_at(symbol, t, channel=chosen, depth=depth or None, clock=when)
    except (ValueError, QueryError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(msgspec.json.encode(b.to_dict()).decode())
        sys.exit(0 if b.valid else 3)
    print_ladder(b, show_root=len(ar.roots) > 1)
    sys.exit(0 if b.valid else 3)


def _gap_text(gap: dict[str, Any]) -> str:
    from recorder.query.timeparse import ns_to_iso

    end = "open" if gap.get("end_ns") is None else ns_to_iso(gap["end_ns"])
    start = "?" if gap.get("start_ns") is None else ns_to_iso(gap["start_ns"])
    detail = f" ({gap['detail']})" if gap.get("detail") else ""
    return f"{gap.get('cause')} from {start} to {end}{detail}"


def print_ladder(b: Any, *, show_root: bool = False) -> None:
    """Print a rebuilt book (:class:`~recorder.query.books.BookAt`) as a price ladder: per
    level the total quantity and, for level3, the number of orders; or why it is not valid."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    d = b.to_dict()
    if not b.valid:
        console.print(f"[bold red]no valid book[/] ({d['channel']}) for "
                      f"{escape(d['symbol'])} at {d['at']} ({d['clock']} clock): "
                      f"{escape(d['reason'] or '')}", soft_wrap=True)
        if d["gap"]:
            console.print(f"gap: {escape(_gap_text(d['gap']))}", soft_wrap=True)
        return
    if d["channel"] == "futures_book":
        console.print(f"[bold]{escape(d['symbol'])}[/] futures book at {d['at']} "
                      f"({d['clock']} clock) - epoch {d['epoch']}, checkpoint "
                      f"{d['checkpoint_recv_ns']} ({d['checkpoint_reason']}) + "
                      f"{d['messages_replayed']} deltas, seq {d['seq']}"
                      + (f" - root {d['root']}" if show_root and d["root"] else ""))
        console.print("Kraken Futures sends no checksum; seq continuity was checked live")
        table = Table()
        for col in ("bid qty", "bid", "ask", "ask qty"):
            table.add_column(col, justify="right")
        bids, asks = d["bids"], d["asks"]
        for i in range(max(len(bids), len(asks))):
            bid = bids[i] if i < len(bids) else {"price": "", "qty": ""}
            ask = asks[i] if i < len(asks) else {"price": "", "qty": ""}
            table.add_row(bid["qty"], f"[green]{bid['price']}[/]", f"[red]{ask['price']}[/]",
                          ask["qty"])
        console.print(table)
        return
    ok = {True: "[green]matches[/]", False: "[red]DIFFERS from[/]",
          None: "(no Kraken checksum to compare with)"}[b.checksum_ok]
    console.print(f"[bold]{d['symbol']}[/] {d['channel']} at {d['at']} ({d['clock']} clock) - "
                  f"epoch {d['epoch']}, checkpoint {d['checkpoint_recv_ns']} "
                  f"({d['checkpoint_reason']}) + {d['messages_replayed']} messages"
                  + (f" - root {d['root']}" if show_root and d["root"] else ""))
    console.print(f"checksum {d['checksum']} {ok} Kraken's last ({d['exchange_checksum']})")
    table = Table()
    l3 = d["channel"] == "level3"
    for col in (["bid orders"] if l3 else []) + ["bid qty", "bid", "ask", "ask qty"] + (
            ["ask orders"] if l3 else []):
        table.add_column(col, justify="right")

    def levels(rows: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
        out: dict[int, list[Any]] = {}
        from decimal import Decimal

        for r in rows:
            lv = out.setdefault(r["level"], [r["price"], Decimal(0), 0])
            lv[1] += Decimal(r["qty"])
            lv[2] += 1
        return [(p, format(q, "f"), n) for p, q, n in (out[k] for k in sorted(out))]

    bids, asks = levels(d["bids"]), levels(d["asks"])
    for i in range(max(len(bids), len(asks))):
        bp, bq, bn = bids[i] if i < len(bids) else ("", "", "")
        ap, aq, an = asks[i] if i < len(asks) else ("", "", "")
        row = [str(bq), f"[green]{bp}[/]", f"[red]{ap}[/]", str(aq)]
        if l3:
            row = [str(bn), *row, str(an)]
        table.add_row(*row)
    console.print(table)
