"""Protocol-core throughput: decode + book update + checksum verify, one core, frames in memory.

Targets (issue "Protocol core"): L2 ``book`` updates at depth 10 and 1000 >= 150,000 msgs/s;
``level3`` updates (1-5 orders per message) >= 100,000 msgs/s; >= 10x python-kraken-sdk's
checksum-validating order-book client on the same L2 stream.

Every pass replays the whole stream through a fresh book (snapshot first), and the pass fails
loudly if any checksum does not match: a fast wrong answer is not a result.
"""

from __future__ import annotations

from benchmarks.harness import Figure, measure_rate
from benchmarks.peers import KrakenSdkBook, kraken_sdk_available
from benchmarks.workloads import FrameStream, real_l2_frames, sim_frames
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

    return measure_rate(run_once, repeats=3)


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
        rate = measure_rate(lambda s=stream: _replay(s))
        peer = ""
        if stream.channel == "book" and kraken_sdk_available():
            sample = _prefix(stream, PEER_FRAMES)
            sdk = _sdk_rate(sample)
            ours = rate if sample is stream else measure_rate(lambda s=sample: _replay(s))
            peer = (f"python-kraken-sdk {sdk:,.0f} msgs/s, ours {ours:,.0f} on the same "
                    f"{len(sample.frames):,} frames (x{ours / sdk:.1f})")
        figures.append(Figure(
            name=f"decode+book+checksum, {stream.name}", value=rate, unit="msgs/s",
            target=target, peer=peer,
            note=f"{len(stream.frames):,} frames, all checksums verified"))
    return figures
