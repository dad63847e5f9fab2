"""What ``recorder run`` will record, said once at start in one readable block (pure).

:func:`describe_plan` renders the venue URLs, the pairs, the channels with their depths, the
futures products, the archive path, and the expected load: messages per second from the
plan (each connection's estimated rate: measured by the previous run when present, else the
per-channel defaults of :data:`recorder.capture.shards.DEFAULT_RATES`), turned into disk per
day and CPU with the recorder's measured costs per message (:data:`JOURNAL_BYTES_PER_MSG`,
:data:`PARQUET_BYTES_PER_MSG`, :data:`CPU_US_PER_MSG`, from BENCHMARKS.md). The block says
that these are estimates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from recorder.capture.config import CaptureConfig
from recorder.capture.shards import WorkerPlan

__all__ = ["JOURNAL_BYTES_PER_MSG", "PARQUET_BYTES_PER_MSG", "CPU_US_PER_MSG", "LoadEstimate",
           "estimate_load", "describe_plan"]

#: Journal bytes per message on disk (BENCHMARKS.md "archive: journal", zstd segments).
JOURNAL_BYTES_PER_MSG: Final = 37.1
#: Parquet bytes per message, every dataset, compacted (BENCHMARKS.md "archive: Parquet total
#: vs raw JSON"); rolling files before compaction are larger.
PARQUET_BYTES_PER_MSG: Final = 19.8
#: The recorder's CPU per message at the highest measured rate (BENCHMARKS.md "capture:
#: CPU-time bound ... recorder alone"): receive, journal, pipeline, Parquet.
CPU_US_PER_MSG: Final = 51.8
_DAY_S: Final = 86_400


@dataclass(frozen=True, slots=True)
class LoadEstimate:
    """Expected load of a plan (estimates, see module docstring)."""

    msgs_per_s: float
    disk_bytes_per_day: float
    cpu_cores: float


def estimate_load(plans: Sequence[WorkerPlan]) -> LoadEstimate:
    """Messages/s of every planned connection, with the measured costs per message."""
    rate = sum(p.est_rate for p in plans)
    per_msg = JOURNAL_BYTES_PER_MSG + PARQUET_BYTES_PER_MSG
    return LoadEstimate(rate, rate * per_msg * _DAY_S, rate * CPU_US_PER_MSG / 1e6)


def _size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def _cores(n: float) -> str:
    return f"{n:.2g}" if n < 10 else f"{n:.0f}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _listing(items: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def describe_plan(cfg: CaptureConfig, plans: Sequence[WorkerPlan], *, online: int,
                  pairs: Sequence[str], products: Sequence[str], host: str,
                  measured_rates: bool, level3_off: str | None = None) -> str:
    """The start-up block: one header line, then one indented line per aspect.

    ``online``: online pairs the venue lists; ``pairs``: those this host records (after the
    include/exclude patterns and the shard); ``products``: futures products recorded;
    ``level3_off``: why level3 is off although configured (missing keys), if so."""
    ch, venue = cfg.channels, cfg.venue
    k, n = cfg.shard_index
    conns = [c for p in plans for c in p.connections]
    workers = len(plans)
    lines = [f"shard {k}/{n}: {len(pairs)} of {online} online pairs, {len(products)} futures "
             f"products, {_count(workers, 'worker')}, {_count(len(conns), 'connection')} (+ 1 "
             f"instrument connection per worker). This run records:"]

    def row(label: str, text: str) -> None:
        lines.append(f"  {label:<10} {text}")

    row("venue", f"spot {venue.spot_ws}; level3 {venue.l3_ws}; futures {venue.futures_ws}")
    row("", f"REST {venue.spot_rest}; futures REST {venue.futures_rest}")
    filters = []
    if ch.include:
        filters.append(f"include {', '.join(ch.include)}")
    if ch.exclude:
        filters.append(f"exclude {', '.join(ch.exclude)}")
    row("pairs", f"{len(pairs)}: {_listing(list(pairs)) or 'none'}"
        + (f" ({'; '.join(filters)})" if filters else ""))
    by_channel: dict[str, list[int]] = {}
    for c in conns:
        if c.stream != "futures":
            entry = by_channel.setdefault(c.channel, [0, 0])
            entry[0] += len(c.symbols)
            entry[1] += 1
    parts = []
    wanted = [("level3", ch.level3, f"level3 depth {ch.level3_depth}"),
              ("book", ch.book, f"book depth {ch.book_depth}"), ("trade", ch.trade, "trade"),
              ("ohlc", ch.ohlc, f"ohlc {ch.ohlc_interval} min")]
    for channel, on, label in wanted:
        if channel in by_channel:
            syms, nconn = by_channel[channel]
            parts.append(f"{label} ({syms} pairs, {nconn} conn)")
        elif channel == "level3" and on and level3_off:
            parts.append(f"level3 OFF ({level3_off})")
        elif on:
            parts.append(f"{label} (no pairs)")
    row("channels", "; ".join(parts) or "none")
    if products:
        feeds = ", ".join(ch.futures_feeds)
        row("futures", f"{feeds} on {_count(len(products), 'product')}: "
            f"{_listing(list(products))}")
    root = Path(cfg.archive_root).absolute()
    names = f"{host}-w0" + (f" .. {host}-w{workers - 1}" if workers > 1 else "")
    row("archive", f"{root}/ ({names}, one root per worker)")
    load = estimate_load(plans)
    source = "rates measured by the previous run" if measured_rates else "default per-channel rates"
    row("expected", f"~{load.msgs_per_s:,.0f} msgs/s, ~{_size(load.disk_bytes_per_day)}/day on "
        f"disk, ~{_cores(load.cpu_cores)} CPU cores")
    row("", f"(estimates: the plan's {source} x the measured {JOURNAL_BYTES_PER_MSG} B journal"
        f" + {PARQUET_BYTES_PER_MSG} B Parquet and {CPU_US_PER_MSG} CPU-us per message of "
        "BENCHMARKS.md)")
    return "\n".join(lines)
