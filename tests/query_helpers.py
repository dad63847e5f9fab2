"""Helpers for query-layer tests: sim recordings with ground truth books captured in-process."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import msgspec
import zstandard


def record_with_truth(path: Path, *, messages: int, pairs: int, seed: int,
                      samples: int) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """Write a ``recorder sim --record`` stream to ``path`` (same generator) and capture the
    market's true books at ``samples`` random virtual ticks.

    Returns ``({t_ns: {symbol: (l2_bids, l2_asks, l3_bids, l3_asks)}}, symbols)``: every frame of
    tick ``t`` is received before ``t + TICK_NS`` and every frame of later ticks after it, so the
    receive-clock book at ``t + TICK_NS - 1`` must equal the truth at ``t``.
    """
    from recorder.sim import record as rec_mod
    from recorder.sim.universe import load_universe

    universe = load_universe(None, pairs=pairs, futures_path=None, seed=seed)
    rng = random.Random(seed)
    approx_ticks = messages // 2
    wanted = {rec_mod.START_NS + k * rec_mod.TICK_NS
              for k in rng.sample(range(20, max(approx_ticks, 40)), samples)}
    truth: dict[int, dict[str, Any]] = {}
    with open(path, "wb") as raw:
        with zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False) as out:
            rec = rec_mod._Recorder(out, universe, messages=messages, seed=seed, rate=1.0,
                                    rules=[], truth=None)
            market = rec.market
            original = market.advance

            def advance(until_ns: int) -> list[Any]:
                events = original(until_ns)
                if until_ns in wanted:
                    truth[until_ns] = {
                        s: (*market.depth(s, 10), *market.l3_orders(s, 10)) for s in rec.symbols
                    }
                return events

            market.advance = advance  # type: ignore[method-assign]
            rec.run()
            last = rec.now
    # the last tick may be cut short by the message limit: keep samples well before it
    keep = {t: v for t, v in truth.items() if t + 2 * rec_mod.TICK_NS < last}
    return keep, list(rec.symbols)


def kraken_lines(messages: list[dict[str, Any]]) -> bytes:
    return b"\n".join(msgspec.json.encode(m) for m in messages)
