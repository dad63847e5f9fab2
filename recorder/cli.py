"""The ``recorder`` command line.

Subcommands live in their own modules and are imported only when invoked, so that
``recorder --help`` stays fast and one broken subsystem cannot take the others down.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import click

from recorder import __version__

#: name -> "module:attribute" of a :class:`click.Command`.
_COMMANDS: dict[str, str] = {
    "audit": "recorder.audit.command:audit_command",
    "ingest": "recorder.ingest:ingest_command",
    "info": "recorder.info:info_command",
    "run": "recorder.capture_command:run",
    "sync": "recorder.sync:sync_command",
    "sim": "recorder.sim.command:sim",
    "replay": "recorder.replay.command:replay_command",
    "verify": "recorder.verify:verify_command",
    "compact": "recorder.archive.maintenance:compact_command",
    "demo": "recorder.demo:demo_command",
    "retention": "recorder.archive.maintenance:retention_command",
    "repair": "recorder.archive.repair:repair_command",
    "status": "recorder.capture_command:status",
    "query": "recorder.query.cli:query_command",
    "book": "recorder.query.cli:book_command",
    "soak": "recorder.soak.command:soak_command",
}


#: Set to any non-empty value to let an unexpected error's Python traceback through.
DEBUG_ENV = "RECORDER_DEBUG"


class _LazyGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; an error that no command turned into a message of its own
        still reaches the user as one line naming it, never as a Python traceback."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit,
                click.exceptions.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence for the user
            if os.environ.get(DEBUG_ENV):
                raise
            what = str(exc).strip() or "no detail"
            click.echo(f"Error: {what} ({type(exc).__name__}). This is a recorder bug or an "
                       f"unexpected condition: set {DEBUG_ENV}=1 to see the traceback.",
                       err=True)
            ctx.exit(1)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = target.partition(":")
        command: Any = getattr(importlib.import_module(module_name), attribute)
        return command


@click.group(cls=_LazyGroup)
@click.version_option(__version__, prog_name="recorder")
def main() -> None:
    """Record Kraken market data (L3, L2, trades, OHLC) into an exact, verifiable archive."""
