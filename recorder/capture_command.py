"""``recorder run`` (the always-on capture service) and ``recorder status`` (its health table)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

__all__ = ["run", "status"]


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="TOML configuration (see ops/recorder.example.toml).")
@click.option("--archive-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Archive directory (overrides archive_root).")
@click.option("--shard", default=None, help="K/N: record shard K of N hosts.")
@click.option("--workers", type=int, default=None, help="Worker processes (0 = one per core).")
@click.option("--spot-ws", default=None, help="Spot WS v2 URL.")
@click.option("--l3-ws", default=None, help="Spot WS v2 level3 URL.")
@click.option("--futures-ws", default=None, help="Futures WS v1 URL.")
@click.option("--spot-rest", default=None, help="Spot REST base URL.")
@click.option("--futures-rest", default=None, help="Futures REST base URL.")
@click.option("--include", default=None, help="Comma list of symbol patterns to record (BTC/*).")
@click.option("--exclude", default=None, help="Comma list of symbol patterns to skip.")
@click.option("--futures", "futures_products", default=None,
              help="Comma list of futures products, or * for all.")
@click.option("--metrics-port", type=int, default=None, help="Port of /metrics and /health.")
@click.option("--secrets-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TOML file with api_key/api_secret (mode 0600).")
@click.option("--log-json/--no-log-json", default=None, help="One JSON object per log line.")
@click.option("--log-level", default=None)
def run(config_path: Path | None, archive_root: Path | None, shard: str | None,
        workers: int | None, spot_ws: str | None, l3_ws: str | None, futures_ws: str | None,
        spot_rest: str | None, futures_rest: str | None, include: str | None,
        exclude: str | None, futures_products: str | None, metrics_port: int | None,
        secrets_file: Path | None, log_json: bool | None, log_level: str | None) -> None:
    """Capture Kraken market data into the archive until stopped (SIGTERM/SIGINT drain).

    Each worker process writes its own archive root ``<archive-root>/<host>-w<k>/``."""
    from recorder.capture.config import ConfigError, load_config
    from recorder.capture.logs import setup_logging

    overrides: dict[str, dict[str, Any]] = {
        "venue": {"spot_ws": spot_ws, "l3_ws": l3_ws, "futures_ws": futures_ws,
                  "spot_rest": spot_rest, "futures_rest": futures_rest},
        "connection": {"shard": shard, "workers": workers},
        "channels": {"include": include, "exclude": exclude, "futures_products": futures_products},
        "observability": {"metrics_port": metrics_port, "log_json": log_json, "log_level": log_level},
    }
    try:
        cfg = load_config(config_path, overrides=overrides,
                          top_overrides={"archive_root": archive_root}, secrets_file=secrets_file)
        from apscheduler.triggers.cron import CronTrigger

        for name in ("compaction_cron", "retention_cron"):
            if not getattr(cfg.schedule, name):
                continue  # "" = job off
            try:
                CronTrigger.from_crontab(getattr(cfg.schedule, name))
            except ValueError as exc:
                raise ConfigError(f"schedule.{name}: {exc}") from None
        Path(cfg.archive_root).mkdir(parents=True, exist_ok=True)
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"Error: archive_root {archive_root or ''}: {exc.strerror or exc}", err=True)
        sys.exit(2)
    secrets = [cfg.credentials.api_secret.reveal()] if cfg.credentials else []
    setup_logging(cfg.observability, secrets=secrets)
    from recorder.capture.supervisor import Supervisor

    code = asyncio.run(Supervisor(cfg).run())
    sys.exit(code)


@click.command()
@click.option("--url", default="http://127.0.0.1:9464", show_default=True,
              help="Base URL of a running recorder's metrics endpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw status JSON.")
def status(url: str, as_json: bool) -> None:
    """Show shards, connections and symbol health of a running recorder."""
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/status", timeout=5) as resp:
            report = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        report = json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        click.echo(f"Error: no recorder answering at {url} ({getattr(exc, 'reason', exc)})", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        sys.exit(0 if report.get("healthy") else 1)
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 200)
    table = Table(title=f"recorder at {url} — {'healthy' if report.get('healthy') else 'UNHEALTHY'}")
    for col in ("shard", "pid", "state", "msgs/s", "restarts", "connection", "up", "symbols",
                "states", "dead", "quarantined", "checksum fails", "resyncs"):
        table.add_column(col)
    for sh in report.get("shards", []):
        conns = sh.get("connections") or [{}]
        for j, c in enumerate(conns):
            first = j == 0
            table.add_row(
                str(sh["worker"]) if first else "", str(sh.get("pid", "")) if first else "",
                sh.get("state", "") if first else "", str(sh.get("msgs_per_s", "")) if first else "",
                str(sh.get("restarts", "")) if first else "", c.get("name", ""),
                {True: "yes", False: "NO"}.get(c.get("connected"), ""), str(c.get("symbols", "")),
                " ".join(f"{k}={v}" for k, v in (c.get("states") or {}).items()),
                ", ".join(c.get("dead", [])[:3]) + ("…" if len(c.get("dead", [])) > 3 else ""),
                ", ".join(sh.get("quarantined", [])[:3]) if first else "",
                str(sh.get("checksum_failures", "")) if first else "",
                str(sh.get("resyncs", "")) if first else "")
    console.print(table)
    for p in report.get("problems", []):
        console.print(f"[red]problem:[/red] {p}")
    sys.exit(0 if report.get("healthy") else 1)
