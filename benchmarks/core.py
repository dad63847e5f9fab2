"""Protocol-core throughput: decode + book update + checksum verify, one core, frames in memory.

Targets (issue "Protocol core"): L2 ``book`` updates at depth 10 and 1000 >= 150,000 msgs/s;
``level3`` updates (1-5 orders per message) >= 100,000 msgs/s; >= 10x python-kraken-sdk's
checksum-validating order-book client on the same L2 stream. cryptofeed's Kraken handler
(WS v1 only) is measured on the same stream rendered in v1's shape, in the same run.

Issue 9's standard workloads (``recorder sim --record``, full generated universe, every
channel; and its burst profile) are replayed whole: every frame decoded, every ``book`` and
``level3`` message applied to its pair's book and its checksum verified. Their target is the
``level3`` one (about half the frames are ``level3``).

Every pass replays the whole stream through a fresh book (snapshot first), and the pass fails
loudly if any checksum does not match: a fast wrong answer is not a result.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from benchmarks.harness import Figure, measure_rate
from benchmarks.peers import (
    CryptofeedBook,
    KrakenSdkBook,
    PeerMismatch,
    cryptofeed_available,
    kraken_sdk_available,
)
from benchmarks.workloads import (
    FixStream,
    FrameStream,
    RecordedWorkload,
    fix_stream,
    real_l2_frames,
    recorded_workload,
    sim_frames,
    to_v1_book,
)
from recorder import _core
from recorder.book.l2 import L2Book
from recorder.book.l3 import L3Book
from recorder.protocol.reject import Reject
from recorder.protocol.spot import decode_spot

__all__ = ["run_core"]


class ChecksumFailure(AssertionError):
    """A benchmark stream did not verify: the figure would be meaningless."""


def _replay(stream: FrameStream) -> int:
    book_type = L3Book if stream.channel == "level3" else L2Book
    book = book_type(stream.symbol, stream.depth, stream.price_precision, stream.qty_precision)
    decode = decode_spot
    apply = book.apply
    verified = 0
    for frame in stream.frames:
        message = decode(frame)
        if type(message) is Reject:
            raise ChecksumFailure(f"{stream.name}: rejected frame: {message.detail}")
        kind = message.type
        for data in message.data:
            if apply(kind, data).match:
                verified += 1
    if verified != len(stream.frames):
        raise ChecksumFailure(f"{stream.name}: {verified}/{len(stream.frames)} checksums verified")
    return len(stream.frames)


def _replay_core(stream: FrameStream) -> int:
    """The compiled core on the same frames: one ``SpotBooks.feed`` of the whole list (decode,
    book, checksum in Rust, GIL released); fails unless every checksum verified."""
    books = _core.SpotBooks()
    books.set_precision(stream.symbol, stream.price_precision, stream.qty_precision)
    frames = list(stream.frames)
    verdicts = books.feed(frames)["verdict"]
    if verdicts.count(0) != len(frames):
        raise ChecksumFailure(f"{stream.name} (core): {verdicts.count(0)}/{len(frames)} "
                              "checksums verified")
    return len(frames)


def _replay_fix(fix: FixStream) -> int:
    """The same book updates as FIX W/X messages through the compiled core: one
    ``FixBooks.feed`` of the whole list (FIX decode, entry checks, L2/L3 book in Rust, GIL
    released); fails unless every message applied and the final book equals the reference."""
    books = _core.FixBooks(level3=fix.level3)
    books.subscribe(fix.symbol, fix.depth, fix.price_precision, fix.qty_precision)
    messages = list(fix.messages)
    verdicts = books.feed(messages)["verdict"]
    if verdicts.count(4) != len(messages):  # 4 = unchecked: applied, no 5041 sent
        raise ChecksumFailure(f"{fix.name} (FixBooks): {verdicts.count(4)}/{len(messages)} "
                              "messages applied")
    top = books.top(fix.symbol, fix.depth)
    if top is None or (tuple(top[0]), tuple(top[1])) != (fix.bids[:fix.depth],
                                                         fix.asks[:fix.depth]):
        raise ChecksumFailure(f"{fix.name} (FixBooks): final book differs from the reference")
    return len(messages)


def _fix_figure(stream: FrameStream, ws_rate: float, ws_cpu: float) -> Figure:
    """FIX decode+book on ``stream``'s updates rendered as FIX, beside the WebSocket figure."""
    fix = fix_stream(stream)
    rate = measure_rate(lambda: _replay_fix(fix), min_seconds=0.25)
    cpu = _cpu_rate(lambda: _replay_fix(fix))
    level = "L3" if fix.level3 else "L2"
    fix_bytes = sum(map(len, fix.messages)) / len(fix.messages)
    ws_bytes = sum(map(len, stream.frames)) / len(stream.frames)
    return Figure(
        name=f"FIX decode+book, {level} depth {fix.depth} ({stream.name} as FIX W/X), "
             "compiled core (FixBooks.feed)",
        value=rate, unit="msgs/s",
        peer=(f"WebSocket decode+book+checksum of the same updates (SpotBooks.feed) "
              f"{ws_rate:,.0f} msgs/s (FIX x{rate / ws_rate:.2f}); per CPU-second: FIX "
              f"{cpu:,.0f}, WebSocket {ws_cpu:,.0f}"),
        note=(f"{len(fix.messages):,} pre-encoded messages (1 W + X; {fix.skipped} frames "
              f"changed nothing a FIX client holds), {fix_bytes:.0f} B/msg vs {ws_bytes:.0f} "
              "B/frame on the WebSocket; in one batch, bytes in, verdict columns out; every "
              "message applied (no 5041 sent), final book equal to the reference"))


def _cpu_rate(run_once: Callable[[], int], repeats: int = 3) -> float:
    """Best items per CPU-second of this thread (the core runs on the calling thread with the
    GIL released): on a shared, loaded machine this is steadier than wall time."""
    best = 0.0
    for _ in range(repeats):
        start = time.thread_time_ns()
        count = run_once()
        spent = max(time.thread_time_ns() - start, 1)
        best = max(best, count / (spent / 1e9))
    return best


#: The peer re-sorts a whole book side per level (about 2,000 msgs/s at depth 1000), so it is
#: measured on a prefix of the stream; ours is measured on the same prefix for the ratio.
PEER_FRAMES = 10_000


def _prefix(stream: FrameStream, frames: int) -> FrameStream:
    if len(stream.frames) <= frames:
        return stream
    return FrameStream(stream.name, stream.channel, stream.symbol, stream.depth,
                       stream.price_precision, stream.qty_precision, stream.frames[:frames])


def _sdk_rate(stream: FrameStream) -> float:
    def run_once() -> int:
        peer = KrakenSdkBook(stream.symbol, stream.depth, stream.price_precision,
                             stream.qty_precision)
        count = peer.run(stream.frames)
        if peer.checksum_failures:
            raise ChecksumFailure(f"python-kraken-sdk: {peer.checksum_failures} failures")
        return count

    return measure_rate(run_once, repeats=3, min_seconds=0.25)


def _cryptofeed_rate(stream: FrameStream) -> tuple[float, str]:
    """cryptofeed's msgs/s on ``stream`` (rendered as v1) and what it verified, for the note."""
    v1 = to_v1_book(stream)
    peer = CryptofeedBook(v1.pair, v1.depth)

    def run_once() -> int:
        count = peer.run(v1.frames)
        if peer.book_updates != len(v1.frames):
            raise PeerMismatch(f"cryptofeed: {peer.book_updates}/{len(v1.frames)} book frames")
        if peer.final_checksum != v1.final_checksum:
            raise PeerMismatch(f"cryptofeed: final book checksum {peer.final_checksum} "
                               f"!= {v1.final_checksum}")
        return count

    rate = measure_rate(run_once, repeats=3, min_seconds=0.25)
    return rate, (f"its check ran on {v1.one_sided:,} updates, not on the {v1.two_sided:,} "
                  "two-sided ones; final book equal")


def _replay_universe(workload: RecordedWorkload) -> int:
    """Decode every frame; apply every book/level3 item to its pair's book and verify it."""
    precision: dict[str, tuple[int, int]] = {}
    books: dict[tuple[str, str], L2Book | L3Book] = {}
    decode = decode_spot
    items = verified = 0
    for frame in workload.frames:
        message = decode(frame)
        if type(message) is Reject:
            raise ChecksumFailure(f"{workload.name}: rejected frame: {message.detail}")
        channel = getattr(message, "channel", None)
        if channel == "book" or channel == "level3":
            kind = message.type
            for data in message.data:
                items += 1
                key = (channel, data.symbol)
                book = books.get(key)
                if kind == "snapshot":
                    pp, qp = precision[data.symbol]
                    book_type = L3Book if channel == "level3" else L2Book
                    book = books[key] = book_type(data.symbol, 10, pp, qp)
                if book is not None and book.apply(kind, data).match:
                    verified += 1
        elif channel == "instrument":
            for pair in message.data.pairs:
                precision[pair.symbol] = (pair.price_precision, pair.qty_precision)
    if verified != items or not items:
        raise ChecksumFailure(f"{workload.name}: {verified}/{items} checksums verified")
    return len(workload.frames)


def _universe_figure(workload: RecordedWorkload) -> Figure:
    rate = measure_rate(lambda: _replay_universe(workload), repeats=3)
    peak, mean = workload.rate_profile()
    shape = (f"after subscribing, received rate peaks at {peak:,.0f} msgs/s (busiest 100 ms) "
             f"vs mean {mean:,.0f} (x{peak / mean:.1f}); " if mean else "")
    return Figure(
        name=f"decode+book+checksum, {workload.name} (full universe, all channels)",
        value=rate, unit="msgs/s", target=">= 100,000",
        peer="none replays a mixed v2 book+level3+trade+ticker+ohlc stream",
        note=(f"`{workload.command}`: {len(workload.frames):,} frames, {workload.pairs} pairs; "
              f"{shape}all book and level3 checksums verified"))


# ------------------------------------------------------------------------------- futures

#: The real Futures WS v1 capture (book, trade, ticker_lite; 10 products) of the fixtures.
FUTURES_CAPTURE = "cryptofeed/2021-04-17_be4e5c8/KRAKEN_FUTURES.ws.46.0"


def _futures_streams(frames: int) -> list[tuple[str, tuple[bytes, ...]]]:
    """The real Futures capture (when the fixtures are present) and a sim Futures stream of
    ``frames`` frames: the book, trade and ticker feeds of three products."""
    import re

    from benchmarks.workloads import SEED, START_NS
    from recorder.sim.futures_market import FuturesMarket
    from recorder.sim.universe import load_universe
    from recorder.testing import fixtures_dir

    streams: list[tuple[str, tuple[bytes, ...]]] = []
    path = fixtures_dir() / FUTURES_CAPTURE
    if path.is_file():
        received = re.compile(rb"^\d+(?:\.\d+)?: (.*)$")
        streams.append(("real Futures capture (cryptofeed, 10 products)", tuple(
            m.group(1) for line in path.read_bytes().splitlines() if (m := received.match(line)))))
    market = FuturesMarket(load_universe(None, pairs=2, futures_path=None, seed=SEED),
                           seed=SEED, rate=4.0, start_ns=START_NS)
    out: list[bytes] = []
    for pid in market.product_ids[:3]:
        for feed in ("book", "trade", "ticker"):
            out += [t.encode() for t in market.subscribe((feed, pid))]
    now = START_NS
    while len(out) < frames:
        now += 250_000_000
        market.advance(now)
        out += [t.encode() for _, t in market.updates()]
    streams.append(("sim Futures book+trade+ticker, 3 products", tuple(out[:frames])))
    return streams


def _futures_python(frames: tuple[bytes, ...]) -> int:
    """The Python path: ``decode_futures`` then ``FuturesBook`` per product (the pipeline's
    decoder and book); fails unless every book frame applied in sequence."""
    from recorder.book.futures import FuturesBook
    from recorder.protocol import futures as fut

    decode, snapshot_type, delta_type = fut.decode_futures, fut.FuturesBookSnapshot, fut.FuturesBookDelta
    books: dict[str, FuturesBook] = {}
    for frame in frames:
        ev = decode(frame)
        t = type(ev)
        if t is delta_type:
            if books[ev.product_id].apply(ev) is not None:
                raise ChecksumFailure(f"futures seq discontinuity at {ev.product_id} {ev.seq}")
        elif t is snapshot_type:
            book = books[ev.product_id] = FuturesBook(ev.product_id)
            book.apply_snapshot(ev)
        elif t is Reject:
            raise ChecksumFailure(f"futures frame rejected: {ev.detail}")
    return len(frames)


def _futures_core(frames: tuple[bytes, ...]) -> int:
    """The compiled core: one ``FuturesBooks.feed`` of the whole list; fails unless every
    frame is ok (book) or skipped (other feeds)."""
    verdicts = _core.FuturesBooks().feed(list(frames))["verdict"]
    good = verdicts.count(0) + verdicts.count(3)
    if good != len(frames):
        raise ChecksumFailure(f"futures (core): {len(frames) - good} frames not ok")
    return len(frames)


def _futures_figures(quick: bool) -> list[Figure]:
    figures = []
    for name, frames in _futures_streams(20_000 if quick else 100_000):
        python_rate = measure_rate(lambda f=frames: _futures_python(f), min_seconds=0.25)
        core_rate = measure_rate(lambda f=frames: _futures_core(f), min_seconds=0.25)
        core_cpu = _cpu_rate(lambda f=frames: _futures_core(f))
        python_cpu = _cpu_rate(lambda f=frames: _futures_python(f), repeats=1)
        figures.append(Figure(
            name=f"futures decode+book, {name}, Python path", value=python_rate, unit="msgs/s",
            note=f"{len(frames):,} frames; decode_futures + FuturesBook, every book frame in seq"))
        figures.append(Figure(
            name=f"futures decode+book, {name}, compiled core (FuturesBooks.feed)",
            value=core_rate, unit="msgs/s",
            peer=(f"Python path {python_rate:,.0f} msgs/s (core x{core_rate / python_rate:.1f}); "
                  f"per CPU-second: core {core_cpu:,.0f}, Python path {python_cpu:,.0f} "
                  f"(x{core_cpu / python_cpu:.1f})"),
            note=(f"{len(frames):,} frames in one batch, bytes in, verdict columns out; every "
                  "book frame ok, the others skipped")))
    return figures


def run_core(*, quick: bool = False) -> list[Figure]:
    """Measure every protocol-core figure; returns table rows."""
    n = 20_000 if quick else 100_000
    figures: list[Figure] = []
    streams: list[tuple[FrameStream, str]] = []
    real = real_l2_frames()
    if real is not None:
        streams.append((real, ">= 150,000"))
    streams.append((sim_frames("book", 10, n), ">= 150,000"))
    streams.append((sim_frames("book", 1000, n), ">= 150,000"))
    streams.append((sim_frames("level3", 10, n), ">= 100,000"))
    for stream, target in streams:
        rate = measure_rate(lambda s=stream: _replay(s), min_seconds=0.25)
        peers: list[str] = []
        if stream.channel == "book":
            sample = _prefix(stream, PEER_FRAMES)
            ours = rate if sample is stream else measure_rate(lambda s=sample: _replay(s),
                                                              min_seconds=0.25)
            if kraken_sdk_available():
                sdk = _sdk_rate(sample)
                peers.append(f"python-kraken-sdk {sdk:,.0f} msgs/s (ours x{ours / sdk:.1f})")
            if cryptofeed_available():
                cf, verified = _cryptofeed_rate(sample)
                peers.append(f"cryptofeed (fed v1) {cf:,.0f} msgs/s (ours x{ours / cf:.1f}; "
                             f"{verified})")
            if peers:
                peers.append(f"ours {ours:,.0f} on the same {len(sample.frames):,} frames")
        peer = "; ".join(peers)
        figures.append(Figure(
            name=f"decode+book+checksum, {stream.name}, Python path", value=rate,
            unit="msgs/s", target=target, peer=peer,
            note=f"{len(stream.frames):,} frames, all checksums verified"))
        core_rate = measure_rate(lambda s=stream: _replay_core(s), min_seconds=0.25)
        core_cpu = _cpu_rate(lambda s=stream: _replay_core(s))
        python_cpu = _cpu_rate(lambda s=stream: _replay(s), repeats=1)
        core_peers = [f"Python path {rate:,.0f} msgs/s (core x{core_rate / rate:.1f})",
                      f"per CPU-second: core {core_cpu:,.0f}, Python path {python_cpu:,.0f} "
                      f"(x{core_cpu / python_cpu:.1f})"]
        if stream.channel == "book":
            sample = _prefix(stream, PEER_FRAMES)
            core_sample = (core_rate if sample is stream else
                           measure_rate(lambda s=sample: _replay_core(s), min_seconds=0.25))
            if kraken_sdk_available():
                core_peers.append(f"python-kraken-sdk {sdk:,.0f} msgs/s "
                                  f"(core x{core_sample / sdk:.1f})")
            if cryptofeed_available():
                core_peers.append(f"cryptofeed (fed v1) {cf:,.0f} msgs/s "
                                  f"(core x{core_sample / cf:.1f})")
            core_peers.append(f"core {core_sample:,.0f} on the same {len(sample.frames):,} "
                              "frames")
        core_target = (">= 1,000,000" if stream.channel == "book" and stream.depth == 10 else
                       ">= 700,000" if stream.channel == "level3" else "")
        figures.append(Figure(
            name=f"decode+book+checksum, {stream.name}, compiled core (SpotBooks.feed)",
            value=core_rate, unit="msgs/s", target=core_target, peer="; ".join(core_peers),
            note=(f"{len(stream.frames):,} frames in one batch, bytes in, verdict columns out; "
                  "all checksums verified")))
        figures.append(_fix_figure(stream, core_rate, core_cpu))
    figures.extend(_futures_figures(quick))
    messages = 40_000 if quick else 200_000
    for profile in ("standard", "burst"):
        figures.append(_universe_figure(recorded_workload(profile, messages)))
    return figures
