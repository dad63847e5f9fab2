"""Control markers: recorder-internal events journaled next to venue frames.

A marker is not venue data. It records a decision or an observation of the recorder itself
(process start/stop, connection up/down, subscribe outcome, silence, rate limiting, quarantine,
resync, backfill, disk pressure) so that the archive can say *why* data is missing: markers become
``epochs`` boundaries, ``gaps`` rows and ``liveness`` rows when the pipeline consumes them.

Wire form: a marker is the JSON payload of ``Frame(stream="control", direction="in")``. Every
marker is a tagged :class:`msgspec.Struct` (tag field ``"marker"``, tag = the class name in
snake case), so the journal stays self-describing and human-greppable::

    frame = Frame(recv_ns=now, conn_id=0, stream="control", direction="in",
                  payload=encode_marker(Connected(conn_id=3, stream="spot", url=url)))

:func:`decode_marker` never raises: malformed or unknown payloads come back as a
:class:`~recorder.protocol.reject.Reject` (reason ``malformed_marker`` / ``unknown_marker``).

Stability contract: fields may be *added* with defaults; existing fields are never renamed or
removed (journals are kept for years and must stay decodable).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, TypeAlias

import msgspec

from recorder.pipeline.settings import DeriveSettings
from recorder.protocol.reject import Reject

if TYPE_CHECKING:
    from recorder.frames import Frame

__all__ = [
    "Marker",
    "MARKER_TYPES",
    "ProcessStart",
    "ProcessStop",
    "Connected",
    "Disconnected",
    "STOP_REASON",
    "Subscribed",
    "SubscribeFailed",
    "Unsubscribed",
    "Silence",
    "RateLimited",
    "Quarantined",
    "Released",
    "ResyncRequested",
    "BackfillStarted",
    "BackfillDone",
    "DiskPressure",
    "encode_marker",
    "decode_marker",
    "marker_frame",
]


class _Marker(msgspec.Struct, frozen=True, kw_only=True, tag_field="marker", tag=True):
    """Base of all markers (tag = snake-cased class name)."""


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


class ProcessStart(_Marker, tag="process_start"):
    """The recorder process started. ``run_id`` is unique per process run (never reused)."""

    host: str
    run_id: str
    version: str
    #: The configuration digest or a short description, for provenance (optional).
    config: str = ""
    #: The archive's derivation settings (fixed when the archive was created), so that a
    #: re-derivation of this journal elsewhere (``recorder ingest``) writes the same rows;
    #: ``None`` in journals written before they were recorded (the defaults applied).
    settings: DeriveSettings | None = None


class ProcessStop(_Marker, tag="process_stop"):
    """Clean shutdown (``reason``: ``signal``, ``operator``, ``error: ...``). A kill -9 leaves
    no ProcessStop: the next :class:`ProcessStart` without one reveals the crash."""

    reason: str


class Connected(_Marker, tag="connected"):
    """A WebSocket connection ``conn_id`` to ``url`` (of frame stream ``stream``) is open."""

    conn_id: int
    stream: str
    url: str = ""


#: ``Disconnected.reason`` of a connection closed because the recorder stops cleanly (SIGTERM,
#: operator): the end of the recorded window, not a loss. The pipeline keeps it as the
#: ``detail`` of the ``disconnect`` gap rows it opens; the audit reads it there.
STOP_REASON: Final = "process stop"


class Disconnected(_Marker, tag="disconnected"):
    """Connection ``conn_id`` closed or failed; every subscription on it ends here
    (``reason`` is :data:`STOP_REASON` when the recorder is stopping)."""

    conn_id: int
    reason: str


class Subscribed(_Marker, tag="subscribed"):
    """The recorder sent a subscribe (or saw it acknowledged) for ``channel``/``symbols``.

    ``depth`` applies to book/level3, ``interval`` to ohlc; ``None`` when not applicable."""

    conn_id: int
    channel: str
    symbols: list[str]
    depth: int | None = None
    interval: int | None = None


class SubscribeFailed(_Marker, tag="subscribe_failed"):
    """A subscribe request was refused or timed out; ``error`` is Kraken's text or ``timeout``."""

    conn_id: int
    channel: str
    symbols: list[str]
    error: str
    depth: int | None = None
    interval: int | None = None


class Unsubscribed(_Marker, tag="unsubscribed"):
    """The recorder dropped a subscription (planned, or to resubscribe after a desync)."""

    conn_id: int
    channel: str
    symbols: list[str]
    reason: str = ""
    depth: int | None = None
    interval: int | None = None


class Silence(_Marker, tag="silence"):
    """Connection ``conn_id`` delivered nothing (not even heartbeats) since ``since_ns``."""

    conn_id: int
    since_ns: int
    channel: str = ""


class RateLimited(_Marker, tag="rate_limited"):
    """Kraken rate-limited us. ``conn_id`` is ``None`` for REST."""

    detail: str
    conn_id: int | None = None
    endpoint: str = ""


class Quarantined(_Marker, tag="quarantined"):
    """(channel, symbol) is not recorded until ``until_ns`` (e.g. repeated desyncs)."""

    channel: str
    symbol: str
    reason: str
    until_ns: int | None = None


class Released(_Marker, tag="released"):
    """The quarantine of (channel, symbol) ended."""

    channel: str
    symbol: str
    reason: str = ""


class ResyncRequested(_Marker, tag="resync_requested"):
    """Capture decided to resnapshot (channel, symbol) (after a desync or a sequence gap)."""

    channel: str
    symbol: str
    reason: str


class BackfillStarted(_Marker, tag="backfill_started"):
    """REST trade backfill of ``symbol`` between two trade ids (inclusive bounds as known)."""

    symbol: str
    from_trade_id: int | None = None
    to_trade_id: int | None = None
    rows: int = 0


class BackfillDone(_Marker, tag="backfill_done"):
    """REST trade backfill finished; ``rows`` trades were fetched (possibly 0)."""

    symbol: str
    from_trade_id: int | None = None
    to_trade_id: int | None = None
    rows: int = 0
    error: str = ""


class DiskPressure(_Marker, tag="disk_pressure"):
    """Free space on the archive volume fell to ``free_bytes``; retention or shedding follows."""

    free_bytes: int
    path: str = ""


Marker: TypeAlias = (
    ProcessStart
    | ProcessStop
    | Connected
    | Disconnected
    | Subscribed
    | SubscribeFailed
    | Unsubscribed
    | Silence
    | RateLimited
    | Quarantined
    | Released
    | ResyncRequested
    | BackfillStarted
    | BackfillDone
    | DiskPressure
)

MARKER_TYPES: Final[tuple[type, ...]] = (
    ProcessStart,
    ProcessStop,
    Connected,
    Disconnected,
    Subscribed,
    SubscribeFailed,
    Unsubscribed,
    Silence,
    RateLimited,
    Quarantined,
    Released,
    ResyncRequested,
    BackfillStarted,
    BackfillDone,
    DiskPressure,
)

_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(Marker)
_TAGS: Final = frozenset(_snake(t.__name__) for t in MARKER_TYPES)


def encode_marker(marker: Marker) -> bytes:
    """The JSON payload of a control frame for ``marker`` (tagged with ``"marker"``)."""
    return _ENCODER.encode(marker)


def decode_marker(payload: bytes) -> Marker | Reject:
    """Decode a control-frame payload; a :class:`Reject` (never an exception) when it is not a
    known marker: ``unknown_marker`` for an unrecognised tag, ``malformed_marker`` otherwise."""
    try:
        return _DECODER.decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        reason = "malformed_marker"
        try:
            obj = msgspec.json.decode(payload)
            if isinstance(obj, dict) and obj.get("marker") not in _TAGS:
                reason = "unknown_marker"
        except msgspec.DecodeError:
            pass
        return Reject(reason=reason, detail=str(exc)[:200], raw=bytes(payload))


def marker_frame(marker: Marker, recv_ns: int, conn_id: int = 0) -> Frame:
    """Convenience: the control :class:`~recorder.frames.Frame` carrying ``marker``."""
    from recorder.frames import Frame as _Frame

    return _Frame(
        recv_ns=recv_ns,
        conn_id=conn_id,
        stream="control",
        direction="in",
        payload=encode_marker(marker),
    )

