"""``recorder sim``: run a local Kraken exchange, or pre-generate a recorded stream.

Serving prints exactly one line of JSON with every endpoint URL on stdout (``--port 0`` picks
a free port; the JSON says which) and serves until SIGINT/SIGTERM, then shuts down cleanly
(exit 0). With ``--record FILE`` nothing is served: ``--messages N`` frames are written (see
:mod:`recorder.sim.record`). Configuration errors print one ``Error: ...`` line and exit 2.
"""

from __future__ import annotations

from pathlib import Path

import click
import msgspec

from recorder.sim.cli_common import key_options, keys_from_options, run_server, serve_until_stopped
from recorder.sim.faults import FaultError, parse_faults

__all__ = ["sim"]

_FAULT_HELP = """Fault specification: RULE[;RULE...], RULE = KIND[:NAME=VALUE,...].
Kinds: drop, duplicate, reorder, checksum, number, malformed (per frame); stall, close
(per connection); refuse (connects, HTTP 503); slow_rest, rest_limit, token_reject;
list, delist, status (instrument changes); fix_gap, fix_duplicate, fix_checksum, fix_stall,
fix_logout (FIX sessions, scheduled: at=/every=). Params: rate=P, at=S, every=S, duration=S,
channel=, symbol=, endpoint=spot|l3|futures|fix_l2|fix_l3, count=N, delay=S, status=, error=.
Example: drop:channel=book,symbol=BTC/USD,rate=0.01;stall:at=30,duration=5;close:every=20"""


def _pairs_option(value: str | None) -> int | list[str] | None:
    if value is None or value == "":
        return None
    if value.isdigit():
        return int(value)
    return [s.strip() for s in value.split(",") if s.strip()]


@click.command(name="sim", epilog=_FAULT_HELP.replace("\n", " "))
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (loopback recommended).")
@click.option("--port", type=int, default=8787, show_default=True, help="Port; 0 picks a free one.")
@click.option("--instruments", "instruments", type=click.Path(path_type=Path), default=None,
              help="Recorded Spot WS v2 instrument snapshot (JSON); default: generated ~700 pairs.")
@click.option("--futures-instruments", type=click.Path(path_type=Path), default=None,
              help="Recorded futures /instruments list (JSON); default: generated products.")
@click.option("--pairs", default=None, help="N (busy pairs first) or a comma list such as BTC/USD,ETH/USD.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--rate", type=float, default=1.0, show_default=True, help="Market activity multiplier.")
@click.option("--faults", "faults_spec", default=None, help="Fault spec (see below).")
@click.option("--truth", type=click.Path(path_type=Path), default=None,
              help="Write ground truth JSONL here (.zst = zstd).")
@click.option("--record", "record_path", type=click.Path(path_type=Path), default=None,
              help="Write a pre-generated frame stream here instead of serving.")
@click.option("--messages", type=int, default=1_000_000, show_default=True, help="Frames to record.")
@click.option("--pregenerate", "pregenerate_s", type=float, default=0.0, show_default=True,
              help="Serve a spot market pre-generated for this many exchange seconds (0: live). "
                   "Generation runs before listening (the market starts when it is done); "
                   "serving then costs the socket path only. Keys outside "
                   "--pregenerate-channels, REST, and everything after an instrument change or "
                   "past the horizon are served live, frame-exact.")
@click.option("--pregenerate-channels", default="level3:10,book:10,trade,ohlc:1", show_default=True,
              help="Keys pre-rendered on every pair: CHANNEL[:PARAM],... (level3/book depth, "
                   "ohlc interval, ticker trigger).")
@key_options
@click.option("--idle-timeout", type=float, default=60.0, show_default=True,
              help="Close WebSockets idle for this many seconds.")
@click.option("--msg-rate", type=int, default=50, show_default=True,
              help="Client requests per second per connection before 'Exceeded msg rate'.")
@click.option("--heartbeat", type=float, default=1.0, show_default=True, help="Heartbeat period (s).")
@click.option("--send-queue", type=int, default=50_000, show_default=True,
              help="Frames buffered per connection before a slow client is dropped.")
@click.option("--l3-budget", type=int, default=200, show_default=True,
              help="level3 subscription cost budget per second.")
@click.option("--rest-burst", type=int, default=60, show_default=True,
              help="Public REST calls per IP before throttling.")
@click.option("--fix-l2-port", type=int, default=None,
              help="Also serve FIX 4.4 L2 market data over TLS on this port (Kraken: 4000; "
                   "0 picks a free one). Off by default.")
@click.option("--fix-l3-port", type=int, default=None,
              help="Also serve FIX 4.4 L3 market data (AggregatedBook=N) over TLS on this port "
                   "(Kraken: 4005; 0 picks a free one). Off by default.")
@click.option("--fix-cert-dir", type=click.Path(path_type=Path), default=None,
              help="Write the FIX TLS certificate (fix-sim-cert.pem, the one clients trust) and "
                   "key here; default: a temporary directory. The JSON line names the file.")
def sim(host: str, port: int, instruments: Path | None, futures_instruments: Path | None,
        pairs: str | None, seed: int, rate: float, faults_spec: str | None, truth: Path | None,
        record_path: Path | None, messages: int, pregenerate_s: float,
        pregenerate_channels: str, api_key: str | None, api_secret: str | None,
        keys_file: Path | None, idle_timeout: float, msg_rate: int, heartbeat: float,
        send_queue: int, l3_budget: int, rest_burst: int, fix_l2_port: int | None,
        fix_l3_port: int | None, fix_cert_dir: Path | None) -> None:
    """Run a local Kraken exchange (Spot WS v2 + level3, Futures WS v1, REST) on one port."""
    from recorder.sim.universe import UniverseError, load_universe

    try:
        rules = parse_faults(faults_spec)
    except FaultError as exc:
        raise click.UsageError(f"--faults: {exc}") from None
    if rate <= 0:
        raise click.UsageError("--rate must be > 0")
    if pregenerate_s < 0:
        raise click.UsageError("--pregenerate must be >= 0")
    if pregenerate_s > 0:
        from recorder.sim.pregen import PregenError, parse_channels

        try:
            parse_channels(pregenerate_channels)
        except PregenError as exc:
            raise click.UsageError(f"--pregenerate-channels: {exc}") from None
    for name, value in (("--fix-l2-port", fix_l2_port), ("--fix-l3-port", fix_l3_port)):
        if value is not None and not 0 <= value <= 65535:
            raise click.UsageError(f"{name} must be within 0..65535")
    keys = keys_from_options(api_key, api_secret, keys_file)
    try:
        universe = load_universe(instruments, pairs=_pairs_option(pairs),
                                 futures_path=futures_instruments, seed=seed)
    except UniverseError as exc:
        raise click.UsageError(str(exc)) from None

    if record_path is not None:
        from recorder.sim.record import record

        if messages < 1:
            raise click.UsageError("--messages must be >= 1")
        try:
            summary = record(record_path, universe, messages=messages, seed=seed, rate=rate,
                             rules=rules, truth_path=truth)
        except OSError as exc:
            raise click.ClickException(f"cannot write {record_path}: {exc.strerror or exc}") from None
        click.echo(msgspec.json.encode(summary).decode())
        return

    from recorder.sim.server import SimConfig, SimError

    config = SimConfig(
        host=host, port=port, seed=seed, rate=rate, idle_timeout_s=idle_timeout,
        msg_rate=msg_rate, heartbeat_s=heartbeat, futures_heartbeat_s=heartbeat,
        send_queue=send_queue, l3_budget=l3_budget, rest_burst=rest_burst, keys=keys,
        faults=tuple(rules), truth_path=truth, pregenerate_s=pregenerate_s,
        pregenerate_channels=pregenerate_channels, fix_l2_port=fix_l2_port,
        fix_l3_port=fix_l3_port, fix_cert_dir=fix_cert_dir,
    )
    run_server(_serve(config, universe), SimError)


async def _serve(config: object, universe: object) -> None:
    from recorder.sim.server import SimServer

    server = SimServer(config, universe)  # type: ignore[arg-type]
    urls = await server.start()
    await serve_until_stopped(server, urls)
