"""Shard planning (pure): which host, which worker process, which connection carries what.

Three levels, each deterministic for the same inputs:

1. **Host** (``--shard K/N``): rendezvous (highest-random-weight) hashing of each symbol over
   the N host slots. Going from N to N+1 hosts moves only the symbols whose new top weight is
   the added slot (about 1/(N+1) of them); nothing moves between the old hosts.
2. **Connection**: per channel, symbols are packed first-fit-decreasing by *estimated message
   rate* (measured rates from a previous run when available, else a per-channel default), under
   a per-connection message-rate ceiling and symbol cap; level3 additionally at most 200
   symbols (Kraken's limit).
3. **Worker process**: connections are spread over the worker processes by longest-processing-
   time-first on their estimated rates, so every core gets a similar load.

Symbols listed at runtime go to ``worker_for(symbol)`` (rendezvous over workers) so that every
worker agrees without talking to the others.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = [
    "ConnPlan",
    "WorkerPlan",
    "DEFAULT_RATES",
    "rendezvous_owner",
    "host_symbols",
    "worker_for",
    "channel_owner",
    "channel_owners",
    "pack_connections",
    "plan",
    "load_rates",
    "save_rates",
]

#: Default estimated messages/s per symbol and channel when nothing was measured yet.
DEFAULT_RATES: Final[dict[str, float]] = {
    "level3": 3.0, "book": 2.0, "trade": 0.3, "ohlc": 0.3, "instrument": 0.01,
    "futures:book": 3.0, "futures:trade": 0.3, "futures:ticker": 1.0, "futures:ticker_lite": 1.0,
}


def _weight(slot: str, key: str) -> int:
    digest = hashlib.blake2b(f"{slot}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rendezvous_owner(key: str, n: int, salt: str = "host") -> int:
    """The slot in ``0..n-1`` with the highest hash weight for ``key`` (stable, uniform)."""
    if n < 1:
        raise ValueError("n must be >= 1")
    return max(range(n), key=lambda i: _weight(f"{salt}:{i}", key))


def host_symbols(symbols: Iterable[str], k: int, n: int) -> list[str]:
    """Symbols owned by host ``k`` of ``n`` (1-based ``k``)."""
    return [s for s in symbols if rendezvous_owner(s, n) == k - 1]


def worker_for(symbol: str, workers: int) -> int:
    """The worker (0-based) that takes ``symbol`` when it is listed at runtime (when the
    plan's channel owners are unknown: see :func:`channel_owner`)."""
    return rendezvous_owner(symbol, workers, salt="worker")


def channel_owner(symbol: str, owners: tuple[int, ...]) -> int:
    """The worker, among ``owners`` (those with a connection of one channel), that takes
    ``symbol`` on that channel when it is listed at runtime: connections are spread over the
    workers channel by channel, so a listing must go, channel by channel, to a worker that
    holds that channel."""
    return owners[rendezvous_owner(symbol, len(owners), salt="worker")]


def channel_owners(plans: Iterable[WorkerPlan]) -> dict[str, tuple[int, ...]]:
    """Spot channel -> the sorted worker indices holding a connection of it."""
    out: dict[str, set[int]] = {}
    for wp in plans:
        for c in wp.connections:
            if c.stream != "futures":
                out.setdefault(c.channel, set()).add(wp.index)
    return {ch: tuple(sorted(ws)) for ch, ws in sorted(out.items())}


@dataclass(frozen=True, slots=True)
class ConnPlan:
    """One WebSocket connection: ``stream`` (``spot``/``l3``/``futures``), one channel/feed
    and its symbols (product ids for futures), with the channel parameter that applies."""

    name: str
    stream: str
    channel: str
    symbols: tuple[str, ...]
    depth: int | None = None
    interval: int | None = None
    est_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """Connections of one worker process."""

    index: int
    connections: tuple[ConnPlan, ...] = field(default_factory=tuple)

    @property
    def est_rate(self) -> float:
        return sum(c.est_rate for c in self.connections)


def _rate(rates: Mapping[str, Mapping[str, float]], channel: str, symbol: str) -> float:
    measured = rates.get(channel, {}).get(symbol)
    if measured is not None and measured >= 0:
        return float(measured)
    return DEFAULT_RATES.get(channel, 1.0)


def pack_connections(
    symbols: Iterable[str],
    rate_of: Mapping[str, float],
    *,
    max_rate: float,
    max_symbols: int,
) -> list[list[str]]:
    """First-fit-decreasing bin packing of symbols by rate under both ceilings.

    A single symbol above ``max_rate`` gets a connection of its own. Output order and content
    are deterministic (ties broken by symbol).
    """
    order = sorted(set(symbols), key=lambda s: (-rate_of.get(s, 0.0), s))
    bins: list[list[str]] = []
    loads: list[float] = []
    for s in order:
        r = rate_of.get(s, 0.0)
        for i, b in enumerate(bins):
            if len(b) < max_symbols and loads[i] + r <= max_rate:
                b.append(s)
                loads[i] += r
                break
        else:
            bins.append([s])
            loads.append(r)
    return [sorted(b) for b in bins]


def plan(
    symbols: Iterable[str],
    *,
    workers: int,
    level3_depth: int | None,
    book_depth: int | None,
    trade: bool,
    ohlc_interval: int | None,
    futures_products: Iterable[str] = (),
    futures_feeds: Iterable[str] = (),
    rates: Mapping[str, Mapping[str, float]] | None = None,
    max_rate: float = 2000.0,
    max_symbols: int = 200,
    l3_max_symbols: int = 200,
) -> list[WorkerPlan]:
    """Plan connections and their workers for ``symbols`` (already filtered to this host).

    ``None`` for a channel parameter disables that channel. Every worker also gets its own
    ``instrument`` connection (added by the service, not planned here).
    """
    if workers < 1:
        raise ValueError("workers must be >= 1")
    rates = rates or {}
    syms = sorted(set(symbols))
    conns: list[ConnPlan] = []
    specs: list[tuple[str, str, int | None, int | None, int]] = []
    if level3_depth is not None:
        specs.append(("l3", "level3", level3_depth, None, min(l3_max_symbols, max_symbols, 200)))
    if book_depth is not None:
        specs.append(("spot", "book", book_depth, None, max_symbols))
    if trade:
        specs.append(("spot", "trade", None, None, max_symbols))
    if ohlc_interval is not None:
        specs.append(("spot", "ohlc", None, ohlc_interval, max_symbols))
    for stream, channel, depth, interval, cap in specs:
        rate_of = {s: _rate(rates, channel, s) for s in syms}
        if channel == "book" and depth is not None and channel not in rates:
            scale = {10: 1.0, 25: 1.3, 100: 2.0, 500: 3.0, 1000: 3.5}.get(depth, 1.0)
            rate_of = {s: r * scale for s, r in rate_of.items()}
        for i, group in enumerate(pack_connections(syms, rate_of, max_rate=max_rate, max_symbols=cap)):
            conns.append(ConnPlan(
                name=f"{channel}-{i}", stream=stream, channel=channel, symbols=tuple(group),
                depth=depth, interval=interval, est_rate=sum(rate_of[s] for s in group)))
    products = sorted(set(futures_products))
    for feed in sorted(set(futures_feeds)) if products else ():
        key = f"futures:{feed}"
        rate_of = {p: _rate(rates, key, p) for p in products}
        for i, group in enumerate(pack_connections(products, rate_of, max_rate=max_rate,
                                                   max_symbols=max_symbols)):
            conns.append(ConnPlan(name=f"futures-{feed}-{i}", stream="futures", channel=feed,
                                  symbols=tuple(group), est_rate=sum(rate_of[p] for p in group)))
    # LPT: heaviest connection first onto the least-loaded worker (ties: lowest index).
    loads = [0.0] * workers
    assigned: list[list[ConnPlan]] = [[] for _ in range(workers)]
    for c in sorted(conns, key=lambda c: (-c.est_rate, c.name)):
        w = min(range(workers), key=lambda i: (loads[i], i))
        assigned[w].append(c)
        loads[w] += c.est_rate
    return [WorkerPlan(i, tuple(sorted(a, key=lambda c: c.name))) for i, a in enumerate(assigned)]


def load_rates(path: Path) -> dict[str, dict[str, float]]:
    """Measured rates written by a previous run (``{channel: {symbol: msgs_per_s}}``); empty
    when missing or unreadable (planning then uses :data:`DEFAULT_RATES`)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, dict[str, float]] = {}
    for channel, table in data.items():
        if isinstance(table, dict):
            out[str(channel)] = {str(k): float(v) for k, v in table.items()
                                 if isinstance(v, (int, float)) and v >= 0}
    return out


def save_rates(path: Path, rates: Mapping[str, Mapping[str, float]]) -> None:
    """Atomically write measured rates for the next planning."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({c: dict(t) for c, t in rates.items()}, sort_keys=True))
    tmp.replace(path)
