"""``recorder run``: the always-on capture service."""

from __future__ import annotations

import sys

import click


@click.command()
@click.option("--config", type=click.Path(dir_okay=False), default=None,
              help="TOML configuration file (see ops/recorder.example.toml once capture ships).")
def run(config: str | None) -> None:
    """Start capturing Kraken market data into the archive."""
    click.echo(
        "recorder run: live capture is not built yet (tracked as the `recorder run` issue).\n"
        "What works today: the protocol core (decoders, books, checksums, signing) and\n"
        "`recorder sim`, a local Kraken exchange: try `make sim` or `recorder sim --help`.",
        err=True,
    )
    sys.exit(2)
