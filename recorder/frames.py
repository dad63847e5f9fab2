"""The unit everything flows through: one raw frame as received from (or sent to) a venue.

Live capture writes every frame to the journal before anything else looks at it; the pipeline
(frames -> decoded events -> books/validators -> rows) consumes the same :class:`Frame` values
whether they come from a live socket or from ``recorder ingest`` reading a journal or JSONL.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

import msgspec

__all__ = ["Frame", "Stream", "Direction", "STREAMS"]

#: Which endpoint a frame belongs to. ``spot`` = Spot WS v2 public, ``l3`` = Spot WS v2
#: level3, ``futures`` = Futures WS v1, ``spot_v1`` = legacy Spot WS v1 (no decoder: such
#: frames are journaled and rejected as ``unsupported_stream``; the name keeps its place because
#: the journal stores a stream as its index here), ``rest`` = a REST response body (the request path is in ``Frame.meta``), ``control`` =
#: recorder-internal markers (process start/stop, subscribe decisions), never venue data;
#: ``fix`` / ``fix_l3`` = one raw FIX 4.4 message of a market-data session on Kraken's L2 / L3
#: port (both directions; docs/fix.md).
Stream: TypeAlias = Literal["spot", "l3", "futures", "spot_v1", "rest", "control", "fix",
                            "fix_l3"]
STREAMS: Final = ("spot", "l3", "futures", "spot_v1", "rest", "control", "fix", "fix_l3")

#: ``in`` = received from the venue, ``out`` = sent by us (subscribe, ping, REST request).
Direction: TypeAlias = Literal["in", "out"]


class Frame(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One raw frame with its receive clock.

    ``recv_ns`` is the local receive (or send) time in int ns since the Unix epoch;
    ``conn_id`` identifies the connection within this recorder process run (unique per
    ``(host, run)``, never reused); ``payload`` is the frame exactly as on the wire.
    ``meta`` carries small context that is not on the wire (for REST: method and path with
    query; for control frames: nothing, the payload is the JSON marker itself).
    """

    recv_ns: int
    conn_id: int
    stream: Stream
    direction: Direction
    payload: bytes
    meta: str = ""
