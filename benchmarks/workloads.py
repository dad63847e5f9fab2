"""Fixed, reproducible frame streams for the benchmarks.

* ``real_l2_frames``: Kraken's real v2 ``book`` capture (python-kraken-sdk fixture, BTC/USD
  depth 10, snapshot + 509 updates), re-serialised exactly as the wire had it.
* ``sim_frames``: streams rendered by the simulator's pure market (``recorder.sim.market``)
  for one busy pair: ``book`` at depth 10 or 1000, ``level3`` at depth 10. Fixed seed, so
  every run measures the same bytes. Each stream starts with its snapshot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from recorder.testing import fixtures_dir

__all__ = ["FrameStream", "real_l2_frames", "sim_frames"]

SEED = 20261121
START_NS = 1_790_000_000_000_000_000
BENCH_PAIR = "BTC/USD"


@dataclass(frozen=True, slots=True)
class FrameStream:
    """A snapshot frame followed by update frames for one (channel, symbol, depth)."""

    name: str
    channel: str
    symbol: str
    depth: int
    price_precision: int
    qty_precision: int
    frames: tuple[bytes, ...]

    def describe(self) -> str:
        return f"{self.name}: {len(self.frames):,} frames of {self.channel} {self.symbol} depth {self.depth}"


def real_l2_frames() -> FrameStream | None:
    """The real BTC/USD v2 book capture, or None when the fixtures are absent."""
    path = fixtures_dir() / "python-kraken-sdk" / "orderbook-v2.json"
    if not path.is_file():
        return None
    capture = json.loads(path.read_text())
    messages = [capture["init"], *capture["updates"]]
    frames = tuple(json.dumps(m, separators=(",", ":")).encode() for m in messages)
    return FrameStream("real v2 book capture", "book", "BTC/USD", 10, 1, 8, frames)


def sim_frames(channel: str, depth: int, updates: int, *, symbol: str = BENCH_PAIR) -> FrameStream:
    """Render ``updates`` update frames (plus the snapshot) for one pair from the sim market."""
    from recorder.sim.market import SpotMarket
    from recorder.sim.universe import load_universe

    instruments = fixtures_dir() / "kraken-data-recorder" / "instrument_snapshot.json"
    universe = load_universe(instruments if instruments.is_file() else None,
                             pairs=[symbol], futures_path=None, seed=SEED)
    pair = universe.pair(symbol)
    market = SpotMarket(universe, seed=SEED, rate=1.0, start_ns=START_NS)
    key = (channel, symbol, depth)
    frames = [f.encode() for f in market.subscribe(key)]
    now = START_NS
    step = 50_000_000
    while len(frames) <= updates:
        now += step
        market.advance(now)
        frames.extend(text.encode() for k, text in market.updates() if k == key)
    return FrameStream(f"sim {channel} depth {depth}", channel, symbol, depth,
                       pair.price_precision, pair.qty_precision, tuple(frames[: updates + 1]))


def cache_path(root: Path, name: str) -> Path:
    return root / f"{name.replace(' ', '_')}.jsonl"
