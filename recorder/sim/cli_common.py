"""What the command lines of ``recorder sim`` and ``recorder replay`` share.

Both servers accept the same private-API keys (``/0/private/GetWebSocketsToken`` for level3
tokens): :func:`key_options` declares ``--api-key``/``--api-secret``/``--keys-file`` once and
:func:`keys_from_options` turns their values into the ``{key: base64 secret}`` map of
:class:`~recorder.sim.server.SimConfig`. Both print one line of JSON with their URLs and serve
until SIGINT/SIGTERM (:func:`serve_until_stopped`), run by :func:`run_server`.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import msgspec

if TYPE_CHECKING:
    from recorder.sim.server import SimServer

__all__ = ["key_options", "keys_from_options", "run_server", "serve_until_stopped"]

_Command = TypeVar("_Command", bound=Callable[..., Any])


def key_options(command: _Command) -> _Command:
    """Add ``--api-key``, ``--api-secret`` and ``--keys-file`` (parameters ``api_key``,
    ``api_secret``, ``keys_file``) to a click command."""
    command = click.option("--keys-file", type=click.Path(path_type=Path), default=None,
                           help='JSON {"KEY": "SECRET_B64", ...}.')(command)
    command = click.option("--api-secret", default=None,
                           help="Base64 secret of --api-key.")(command)
    return click.option("--api-key", default=None,
                        help="API key accepted by /0/private (level3 tokens).")(command)


def keys_from_options(api_key: str | None, api_secret: str | None,
                      keys_file: Path | None) -> dict[str, str]:
    """The keys the options name: the keys file's, plus ``--api-key`` with its secret.

    Raises :class:`click.UsageError` (one ``Error: ...`` line, exit 2) for an unreadable or
    malformed keys file, or for ``--api-key`` without ``--api-secret`` (or the reverse).
    """
    from recorder.sim.auth import load_keys

    keys: dict[str, str] = {}
    if keys_file is not None:
        try:
            keys.update(load_keys(keys_file))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    if (api_key is None) != (api_secret is None):
        raise click.UsageError("--api-key and --api-secret go together")
    if api_key is not None and api_secret is not None:
        keys[api_key] = api_secret
    return keys


async def serve_until_stopped(server: SimServer, urls: dict[str, Any]) -> None:
    """Print ``urls`` (one line of JSON on stdout) for a started ``server``, then wait until it
    has closed; SIGINT and SIGTERM ask it to stop (the handlers are removed afterwards)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.request_stop)
    sys.stdout.write(msgspec.json.encode(urls).decode() + "\n")
    sys.stdout.flush()
    try:
        await server.wait_closed()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run_server(serve: Coroutine[Any, Any, None], *errors: type[Exception]) -> None:
    """Run ``serve`` (a server's whole life) to its end; one of ``errors`` or an
    :class:`OSError` (such as the port in use) becomes one ``Error: ...`` line and exit 1."""
    try:
        asyncio.run(serve)
    except (*errors, OSError) as exc:
        raise click.ClickException(str(exc)) from None
