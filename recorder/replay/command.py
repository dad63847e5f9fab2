"""``recorder replay``: serve a recorded archive as Kraken's own wire (``docs/replay.md``).

Prints exactly one line of JSON with every endpoint URL on stdout (like ``recorder sim``;
``--port 0`` picks a free port) and serves until SIGINT/SIGTERM, then shuts down cleanly
(exit 0). Bad usage and an archive that cannot be replayed print one ``Error: ...`` line and
exit 2 / 1.
"""

from __future__ import annotations

from pathlib import Path

import click

from recorder.sim.cli_common import key_options, keys_from_options, run_server, serve_until_stopped

__all__ = ["replay_command"]


def _time(name: str, value: str | None) -> int | None:
    from recorder.query.timeparse import to_ns

    if value is None or value == "":
        return None
    try:
        return to_ns(value)
    except ValueError:
        raise click.UsageError(f"{name}: not a time (ISO 8601 such as 2026-01-01T12:00:00Z, "
                               f"or integer ns since the epoch): {value!r}") from None


def _symbols(values: tuple[str, ...]) -> frozenset[str] | None:
    names = {s.strip() for v in values for s in v.split(",") if s.strip()}
    return frozenset(names) if names else None


@click.command("replay")
@click.option("--archive", "archives", multiple=True, required=True,
              type=click.Path(path_type=Path, file_okay=False),
              help="Archive root or parent of roots (what `recorder run`/`recorder demo` "
                   "wrote); repeatable.")
@click.option("--from", "start", default=None,
              help="Start from the state at this receive time (ISO 8601 or ns); default: the "
                   "archive's first frame.")
@click.option("--to", "end", default=None, help="Stop at this receive time; default: the last.")
@click.option("--speed", type=float, default=None,
              help="Replay speed (1 = the recorded pace, the default; 10 = ten times faster).")
@click.option("--max-speed", is_flag=True, help="No pacing: as fast as the slowest client reads.")
@click.option("--symbols", "symbols", multiple=True,
              help="Only these symbols/products (comma list, repeatable), e.g. BTC/USD,PF_XBTUSD.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address.")
@click.option("--port", type=int, default=8788, show_default=True, help="Port; 0 picks a free one.")
@click.option("--start-delay", type=click.FloatRange(0, 3600), default=0.0, show_default=True,
              help="Start the replay clock this many seconds after the first subscription "
                   "(lets several clients subscribe at the replay's start).")
@click.option("--stall-timeout", type=click.FloatRange(0.1, 86400), default=30.0,
              show_default=True,
              help="--max-speed: disconnect a client that holds the clock back this long.")
@click.option("--socket-buffer", type=click.IntRange(4096, 1 << 30), default=None,
              help="Kernel send buffer of each client socket, bytes (default: the OS's, which "
                   "grows to megabytes): bounds what a stalled client holds in the kernel.")
@key_options
@click.option("--idle-timeout", type=float, default=60.0, show_default=True,
              help="Close WebSockets idle for this many seconds.")
@click.option("--heartbeat", type=float, default=1.0, show_default=True, help="Heartbeat period (s).")
@click.option("--send-queue", type=int, default=50_000, show_default=True,
              help="--speed: frames buffered per connection before a slow client is dropped.")
def replay_command(archives: tuple[Path, ...], start: str | None, end: str | None,
                   speed: float | None, max_speed: bool, symbols: tuple[str, ...], host: str,
                   port: int, start_delay: float, stall_timeout: float,
                   socket_buffer: int | None, api_key: str | None, api_secret: str | None,
                   keys_file: Path | None, idle_timeout: float, heartbeat: float,
                   send_queue: int) -> None:
    """Serve a recorded archive as Kraken's wire: Spot WS v2, level3, Futures WS and REST."""
    from recorder.replay.server import ReplayConfig, ReplayError
    from recorder.sim.server import SimConfig

    if speed is not None and max_speed:
        raise click.UsageError("--speed and --max-speed exclude each other")
    speed = 1.0 if speed is None else speed
    if not speed > 0:
        raise click.UsageError("--speed must be > 0")
    if send_queue < 1:
        raise click.UsageError("--send-queue must be >= 1")
    start_ns, end_ns = _time("--from", start), _time("--to", end)
    if start_ns is not None and end_ns is not None and end_ns <= start_ns:
        raise click.UsageError("--to must be after --from")
    keys = keys_from_options(api_key, api_secret, keys_file)
    config = SimConfig(host=host, port=port, idle_timeout_s=idle_timeout, heartbeat_s=heartbeat,
                       futures_heartbeat_s=heartbeat, send_queue=send_queue, keys=keys)
    replay = ReplayConfig(archive=tuple(str(a) for a in archives), start_ns=start_ns,
                          end_ns=end_ns, speed=None if max_speed else speed,
                          symbols=_symbols(symbols), start_delay_s=start_delay,
                          stall_timeout_s=stall_timeout, socket_buffer=socket_buffer)
    run_server(_serve(config, replay), ReplayError)


async def _serve(config: object, replay: object) -> None:
    from recorder.replay.server import ReplayError, ReplayServer
    from recorder.sim.server import SimError

    try:
        server = ReplayServer(config, replay)  # type: ignore[arg-type]
        urls = await server.start()
    except SimError as exc:
        raise ReplayError(str(exc)) from exc
    await serve_until_stopped(server, urls)
    if server.failure is not None:
        raise ReplayError(server.failure)
