"""Explicit, versioned pipeline state: what an archive stores at each commit for crash recovery.

The archive must be able to resume derivation exactly where its last commit stopped, so each
commit stores the state of the :class:`~recorder.pipeline.Pipeline` at that point. This module
defines that state as plain msgspec Structs (no code, no classes chosen by the file) and its
on-disk form, ``_state/pipeline-<commit>.state``::

    msgpack map {"kind": "recorder.pipeline.state", "version": 1, ...fields of PipelineState}

What is kept (and nothing else):

* ``epochs``: every open epoch (one per (channel, symbol)) with its counters, precisions,
  depth, last checkpoint time, the trackers' last id (trade_id / futures seq) and its book as a
  lossless checkpoint (:mod:`recorder.book.checkpoint` for spot L2/L3, the futures book's own
  :class:`~recorder.book.futures.FuturesBookCheckpoint`);
* ``gaps``: open gaps by (channel, symbol); ``conns``: liveness cursors per connection (the
  current minute, subscriptions with their start, per-key counters, subscriptions that ended
  this minute); ``ack_depth``: depths from subscription acks;
* ``precisions`` (instrument price/qty decimals), ``instruments`` (last status and attributes
  JSON per (kind, symbol), for change detection);
* ``running``, ``last_recv_ns``, ``frames``, ``messages``, ``checksums_ok`` /
  ``checksums_failed`` and the pipeline options;
* ``flagged_symbols``: spot symbols already reported as missing from the instrument list;
* ``fix_expected``, ``fix_requests``, ``fix_sent``: per FIX connection the next inbound
  MsgSeqNum, the MarketDataRequests in force, and the MsgSeqNum of each request sent;
* ``requests``: the channel of each outgoing subscribe by (conn_id, req_id), bounded (a
  refusal's gap is labelled with it); ``backfilled``: trade ids written from REST pages while
  a backfill gap of the symbol is open (an overlapping page writes no id twice).

Together with the derivation settings (:mod:`recorder.pipeline.settings`) this is everything
the rows depend on: a pipeline restored from a state and fed the rest of a journal writes the
rows one fed the whole journal without a stop writes.

Rows are never part of the state: a commit always flushes the pipeline first.

Loading is pure data decoding: a file whose ``kind`` is wrong, whose ``version`` is not one this
code reads (e.g. written by a newer recorder), or whose content does not match the schema raises
:class:`StateError` with a clear message. Nothing in the file can name a type, a function or a
path, so opening a shared or synced archive for writing can never execute code from it (the
pickle used by the first archive format could). Book checkpoints are validated by the books'
``restore`` (ordering, depth, positive quantities) and a corrupt one is a :class:`StateError`.

Versioning rule: adding a field with a default keeps ``STATE_VERSION``; any other change bumps
it and adds a reader for the previous version here (older archives must stay resumable).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from recorder.book.checkpoint import L2Checkpoint, L3Checkpoint
from recorder.book.futures import FuturesBookCheckpoint
from recorder.errors import RecorderError
from recorder.pipeline.settings import DEFAULT_CHECKPOINT_MESSAGES, DeriveSettings

__all__ = [
    "STATE_KIND",
    "STATE_VERSION",
    "StateError",
    "EpochState",
    "FixRequestState",
    "GapState",
    "ConnState",
    "PipelineState",
    "encode_state",
    "decode_state",
    "state_settings",
]

STATE_KIND: Final = "recorder.pipeline.state"
#: Version written by this code. Readers accept ``1..STATE_VERSION``.
STATE_VERSION: Final = 1


class StateError(RecorderError, ValueError):
    """A state file is not a pipeline state this code can read (wrong kind, unknown or newer
    version, malformed content, or an invalid book checkpoint)."""


class EpochState(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One open epoch of a (channel, symbol).

    Exactly one of ``l2`` / ``l3`` / ``futures`` is set for book channels (``book``,
    ``level3``, ``futures_book``); none for trade streams (``trade``, ``futures_trade``).
    """

    epoch: int
    stream: str
    channel: str
    symbol: str
    conn_id: int
    depth: int | None = None
    price_precision: int | None = None
    qty_precision: int | None = None
    precision_source: str | None = None
    start_ns: int
    end_ns: int
    start_reason: str
    messages: int = 0
    rows: int = 0
    checksum_ok: int = 0
    checksum_failed: int = 0
    last_checkpoint_ns: int
    #: last trade_id (spot trades) or seq (futures trades) seen in this epoch
    last_id: int | None = None
    #: ``messages`` of the epoch at its last checkpoint
    last_checkpoint_message: int = 0
    l2: L2Checkpoint | None = None
    l3: L3Checkpoint | None = None
    futures: FuturesBookCheckpoint | None = None


class GapState(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An open gap, keyed in the pipeline by (``key_channel``, ``key_symbol``)."""

    key_channel: str
    key_symbol: str
    start_ns: int
    stream: str
    channel: str
    symbol: str
    conn_id: int
    cause: str
    missing: str | None = None
    missing_count: int | None = None
    detail: str | None = None


class ConnState(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Liveness cursor of one connection."""

    conn_id: int
    stream: str
    minute: int
    #: (channel, symbol, subscribed since ns)
    subs: list[tuple[str, str, int]] = []
    #: (channel, symbol, frames, first ns, last ns) of the current minute
    counts: list[tuple[str, str, int, int, int]] = []
    #: (channel, symbol, from ns, to ns): subscriptions that ended in the current minute
    ended: list[tuple[str, str, int, int]] = []


class FixRequestState(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An outgoing FIX MarketDataRequest the pipeline remembers (by connection and MDReqID)."""

    conn_id: int
    md_req_id: str
    channel: str
    depth: int | None = None
    symbols: list[str] = []
    trades: bool = False


class PipelineState(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Everything a :class:`~recorder.pipeline.Pipeline` needs to continue exactly."""

    kind: str = STATE_KIND
    version: int = STATE_VERSION
    checkpoint_interval_ns: int
    batch_rows: int
    running: bool = False
    last_recv_ns: int | None = None
    frames: int = 0
    messages: int = 0
    checksums_ok: int = 0
    checksums_failed: int = 0
    #: symbol -> (price_precision, qty_precision)
    precisions: dict[str, tuple[int, int]] = {}
    #: (kind, symbol, status, attributes JSON) of every known asset/pair
    instruments: list[tuple[str, str, str, str]] = []
    #: (channel, symbol, depth) from subscription acks
    ack_depth: list[tuple[str, str, int]] = []
    epochs: list[EpochState] = []
    gaps: list[GapState] = []
    conns: list[ConnState] = []
    #: (symbol, last trade_id, its recv ns): spot trade continuity across epochs/connections
    trade_last: list[tuple[str, int, int]] = []
    #: a book checkpoint every this many messages of an epoch (0: time only; None: written
    #: before the setting existed, the default applies)
    checkpoint_messages: int | None = None
    #: spot symbols already reported (once each) as missing from the instrument list
    flagged_symbols: list[str] = []
    #: (conn_id, req_id, channel) of outgoing subscribes (a refusal names no channel)
    requests: list[tuple[int, int, str]] = []
    #: (symbol, trade ids) written from REST pages while backfill gaps of it are open
    backfilled: list[tuple[str, list[int]]] = []
    #: FIX sessions (issue #17): (conn_id, next inbound MsgSeqNum)
    fix_expected: list[tuple[int, int]] = []
    #: FIX MarketDataRequests sent and still in force
    fix_requests: list[FixRequestState] = []
    #: (conn_id, MsgSeqNum, MDReqID) of FIX MarketDataRequests sent (a 35=3 names one)
    fix_sent: list[tuple[int, int, str]] = []
    #: FIX connections on which we sent a Logout
    fix_logout_sent: list[int] = []


class _Header(msgspec.Struct):
    """The two fields read before anything else (other fields ignored)."""

    kind: str = ""
    version: int = 0


_HEADER = msgspec.msgpack.Decoder(_Header)
_DECODERS: Final[dict[int, msgspec.msgpack.Decoder[Any]]] = {
    1: msgspec.msgpack.Decoder(PipelineState),
}


def encode_state(state: PipelineState) -> bytes:
    """The state file's bytes (msgpack)."""
    return msgspec.msgpack.encode(state)


def decode_state(data: bytes) -> PipelineState:
    """Decode a state file; raises :class:`StateError` for anything but a readable state.

    Only msgpack data is accepted; the content is checked against the typed schema of its
    version. A newer version than :data:`STATE_VERSION` is refused (upgrade the recorder).
    """
    try:
        head = _HEADER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise StateError(f"not a pipeline state file (expected msgpack): {exc}") from exc
    if head.kind != STATE_KIND:
        raise StateError(f"not a pipeline state file (kind {head.kind!r})")
    if head.version > STATE_VERSION:
        raise StateError(f"pipeline state version {head.version} was written by a newer "
                         f"recorder; this one reads versions 1..{STATE_VERSION}")
    decoder = _DECODERS.get(head.version)
    if decoder is None:
        raise StateError(f"unknown pipeline state version {head.version}")
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise StateError(f"malformed pipeline state (version {head.version}): {exc}") from exc


def state_settings(state: PipelineState) -> DeriveSettings:
    """The derivation settings ``state`` was written with (a state written before
    ``checkpoint_messages`` existed ran with its default)."""
    return DeriveSettings(
        checkpoint_interval_ns=state.checkpoint_interval_ns,
        checkpoint_messages=(DEFAULT_CHECKPOINT_MESSAGES if state.checkpoint_messages is None
                             else state.checkpoint_messages))
