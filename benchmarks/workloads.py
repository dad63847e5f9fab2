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

__all__ = [
    "STANDARD_PROFILES",
    "FrameStream",
    "RecordedWorkload",
    "V1BookStream",
    "FixStream",
    "fix_stream",
    "real_l2_frames",
    "recorded_workload",
    "sim_frames",
    "to_v1_book",
    "v1_pair_name",
]

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


# ------------------------------------------------------------------ recorded standard workloads


@dataclass(frozen=True, slots=True)
class RecordedWorkload:
    """A ``recorder sim --record`` stream: every received frame with its virtual receive time.

    ``command`` is the exact sim command line that produced it (fixed seed: same bytes every
    run); ``pairs`` is the number of pairs in its ``instrument`` snapshot.
    """

    name: str
    command: str
    frames: tuple[bytes, ...]
    recv_ns: tuple[int, ...]
    pairs: int

    def steady_start(self) -> int:
        """Index of the first frame after the subscription phase (the last subscribe ack)."""
        last = -1
        for i, frame in enumerate(self.frames):
            if b'"method":"subscribe"' in frame:
                last = i
        return last + 1

    def rate_profile(self, window_ns: int = 100_000_000) -> tuple[float, float]:
        """``(peak, mean)`` received msgs/s after the subscription phase (whose snapshots
        arrive all at once): busiest ``window_ns`` window vs the whole steady span."""
        times = sorted(self.recv_ns[self.steady_start():])
        if len(times) < 2 or times[-1] == times[0]:
            return 0.0, 0.0
        first = times[0]
        counts: dict[int, int] = {}
        for t in times:
            slot = (t - first) // window_ns
            counts[slot] = counts.get(slot, 0) + 1
        span_s = (times[-1] - first) / 1e9
        return max(counts.values()) / (window_ns / 1e9), len(times) / span_s


#: The issue-9 standard workloads: ``recorder sim --record`` over the default generated
#: universe (~700 pairs; the record client subscribes instrument, book 10, trade, ohlc, ticker
#: and level3 10 on every pair), fixed seed. The sim has no burst option of its own (its
#: market bursts per pair by itself: 20-200 arrivals at 8x, rarely), so ``burst`` is built from
#: the options it has: ``--rate 8`` (that in-burst intensity, market-wide) and a connection
#: stall of 0.5 s every virtual second whose held frames are then delivered at once.
STANDARD_PROFILES: dict[str, tuple[str, ...]] = {
    "standard": (),
    "burst": ("--rate", "8", "--faults", "stall:every=1,duration=0.5"),
}


def recorded_workload(profile: str, messages: int) -> RecordedWorkload:
    """Run ``recorder sim --record`` for ``profile`` (see :data:`STANDARD_PROFILES`) and load it."""
    import subprocess
    import sys
    import tempfile

    from recorder.sim.record import read_record

    args = ["--record", "", "--messages", str(messages), "--seed", str(SEED),
            *STANDARD_PROFILES[profile]]
    with tempfile.TemporaryDirectory(prefix="bench-workload-") as tmp:
        path = Path(tmp) / f"{profile}.jsonl.zst"
        args[1] = str(path)
        subprocess.run([sys.executable, "-m", "recorder", "sim", *args], check=True,
                       stdout=subprocess.DEVNULL)
        lines = read_record(path)
    frames = tuple(line["frame"].encode() for line in lines)
    pairs = 0
    for frame in frames:
        if frame.startswith(b'{"channel":"instrument"'):
            pairs = len(json.loads(frame)["data"]["pairs"])
            break
    args[1] = f"{profile}.jsonl.zst"
    return RecordedWorkload(f"{profile} workload", "recorder sim " + " ".join(args), frames,
                            tuple(line["recv_ns"] for line in lines), pairs)


# ------------------------------------------------------------------ the same book stream in v1


@dataclass(frozen=True, slots=True)
class V1BookStream:
    """A v2 ``book`` stream re-rendered in Kraken WS v1's shape (for v1-only peers).

    Levels are ``[price, volume, timestamp]`` strings with the pair's decimals, so each v1
    checksum equals the v2 one (Kraken computes both from those digits). ``one_sided`` counts
    updates carrying one side (checksum in the only object); ``two_sided`` those carrying both
    (v1 puts ``a`` and ``b`` in two objects, the checksum in the second).
    """

    pair: str
    depth: int
    frames: tuple[str, ...]
    final_checksum: int
    one_sided: int
    two_sided: int


def v1_pair_name(symbol: str) -> str:
    """Kraken v1 ``wsname`` of a v2 symbol (v1 still says XBT and XDG)."""
    base, _, quote = symbol.partition("/")
    names = {"BTC": "XBT", "DOGE": "XDG"}
    return f"{names.get(base, base)}/{names.get(quote, quote)}"


def to_v1_book(stream: FrameStream, channel_id: int = 336) -> V1BookStream:
    """Render every frame of a v2 ``book`` stream as the v1 frame Kraken would have sent."""
    from recorder.protocol.numbers import to_units, units_to_text
    from recorder.protocol.spot import BookMessage, decode_spot

    pp, qp = stream.price_precision, stream.qty_precision
    pair = v1_pair_name(stream.symbol)
    name = f"book-{stream.depth}"
    out: list[str] = []
    one = two = 0
    final = 0
    for frame in stream.frames:
        message = decode_spot(frame)
        if not isinstance(message, BookMessage) or len(message.data) != 1:
            raise ValueError(f"{stream.name}: not a one-symbol book frame: {frame[:80]!r}")
        data = message.data[0]
        ts = data.ts_ns or 0
        stamp = f"{ts // 10**9}.{ts % 10**9 // 1000:06d}"

        def levels(side: list, stamp: str = stamp) -> list[list[str]]:
            return [[units_to_text(to_units(lv.price, pp), pp),
                     units_to_text(to_units(lv.qty, qp), qp), stamp] for lv in side]

        if message.type == "snapshot":
            body: list[object] = [{"as": levels(data.asks), "bs": levels(data.bids)}]
        else:
            checksum = str(data.checksum)
            if data.asks and data.bids:
                body = [{"a": levels(data.asks)}, {"b": levels(data.bids), "c": checksum}]
                two += 1
            elif data.asks:
                body = [{"a": levels(data.asks), "c": checksum}]
                one += 1
            else:
                body = [{"b": levels(data.bids), "c": checksum}]
                one += 1
        final = data.checksum if data.checksum is not None else final
        out.append(json.dumps([channel_id, *body, name, pair], separators=(",", ":")))
    return V1BookStream(pair, stream.depth, tuple(out), final, one, two)


# ------------------------------------------------------------------ the same updates over FIX


@dataclass(frozen=True, slots=True)
class FixStream:
    """A WebSocket :class:`FrameStream` rendered as Kraken FIX market data: a W, then one X per
    update frame that changes what a FIX client holds (``skipped`` frames change nothing:
    their only levels were removals of levels already out of the window). ``bids``/``asks``
    are the final book's levels as ``(price, qty)`` text, for checking the result."""

    name: str
    level3: bool
    symbol: str
    depth: int
    price_precision: int
    qty_precision: int
    messages: tuple[bytes, ...]
    skipped: int
    bids: tuple[tuple[str, str], ...]
    asks: tuple[tuple[str, str], ...]


def fix_stream(stream: FrameStream, *, sender: str = "KRAKEN-MD",
               target: str = "CLIENT") -> FixStream:
    """Render ``stream``'s book or level3 frames as FIX 4.4 W/X messages, pre-encoded.

    The frames are applied to the Python reference book (every checksum must verify), which
    tells each entry's MDUpdateAction: a level (L2, keyed by price, MDEntryID ``O`` + price as
    in Kraken's examples) or order (L3, MDEntryID = order id) the client holds is changed or
    deleted, one it does not hold is new; a removal of something it does not hold is dropped.
    Levels that leave the window by depth truncation get no delete, as on the WebSocket: a
    FIX client truncates at the same depth. Entries follow the frame's order (bids, asks).
    """
    from recorder import _core
    from recorder.book.l2 import L2Book
    from recorder.book.l3 import L3Book
    from recorder.fix.messages import (
        BID,
        CHANGE,
        DELETE,
        NEW,
        OFFER,
        BookEntry,
        incremental_fields,
        snapshot_fields,
    )
    from recorder.protocol.numbers import units_to_text
    from recorder.protocol.spot import decode_spot

    level3 = stream.channel == "level3"
    pp, qp = stream.price_precision, stream.qty_precision
    book: L2Book | L3Book = (L3Book if level3 else L2Book)(stream.symbol, stream.depth, pp, qp)
    messages: list[bytes] = []
    skipped = 0
    seq = 1
    now = START_NS

    def text(token: object, precision: int) -> str:
        return units_to_text(_core.token_units(str(token), precision), precision)

    for frame in stream.frames:
        message = decode_spot(frame)
        data = message.data[0]  # type: ignore[union-attr]
        kind = message.type  # type: ignore[union-attr]
        now = data.ts_ns or now
        when = f"{now // 10**9 % 86400 // 3600:02d}:{now // 10**9 % 3600 // 60:02d}:" \
               f"{now // 10**9 % 60:02d}.{now // 10**6 % 1000:03d}"
        entries: list[BookEntry] = []
        for entry_type, side, items in ((BID, "bid", data.bids), (OFFER, "ask", data.asks)):
            if level3:
                live = {o.order_id for o in book.orders(side)}  # type: ignore[union-attr]
                for o in items:
                    price, qty = text(o.limit_price, pp), text(o.order_qty, qp)
                    known = o.order_id in live
                    if kind == "snapshot":
                        action = None
                    elif o.event == "delete":
                        if not known:
                            continue
                        action = DELETE
                    else:
                        action = CHANGE if known else NEW
                    (live.discard if action == DELETE else live.add)(o.order_id)
                    entries.append(BookEntry(entry_type, o.order_id, price, qty, when,
                                             action=action, timestamp=o.timestamp))
            else:
                live = {p for p, _ in book.levels(side)}
                for lv in items:
                    units = _core.token_units(str(lv.price), pp)
                    price, qty = units_to_text(units, pp), text(lv.qty, qp)
                    gone = _core.token_units(str(lv.qty), qp) == 0
                    if kind == "snapshot":
                        action = None
                    elif gone:
                        if units not in live:
                            continue
                        action = DELETE
                    else:
                        action = CHANGE if units in live else NEW
                    (live.discard if action == DELETE else live.add)(units)
                    entries.append(BookEntry(entry_type, f"O{price}", price, qty, when,
                                             action=action))
        if not book.apply(kind, data).match:  # type: ignore[arg-type]
            raise ValueError(f"{stream.name}: reference book checksum failed")
        if kind == "snapshot":
            fields = snapshot_fields("1", stream.symbol, entries)
            msg_type = "W"
        elif entries:
            fields = incremental_fields("1", stream.symbol, entries)
            msg_type = "X"
        else:
            skipped += 1
            continue
        messages.append(_core.encode_fix(msg_type, seq, sender, target, now, fields))
        seq += 1

    def final(side: str) -> tuple[tuple[str, str], ...]:
        return tuple((units_to_text(p, pp), units_to_text(q, qp))
                     for p, q in book.levels(side))  # type: ignore[arg-type]

    return FixStream(f"{stream.name} as FIX", level3, stream.symbol, stream.depth, pp, qp,
                     tuple(messages), skipped, final("bid"), final("ask"))
