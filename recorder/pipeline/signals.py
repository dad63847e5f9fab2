"""What :meth:`recorder.pipeline.Pipeline.feed` returns: facts capture must act on to heal.

The pipeline is pure with respect to the network: it never resubscribes or fetches anything. When
it detects something the live capture can repair, it returns a signal; capture decides what to do
(resubscribe the book, backfill trades over REST, refresh instruments) and journals its decision
as a control marker (:mod:`recorder.pipeline.markers`) so the archive records how a gap was
healed. Offline ingest ignores signals (the archive already holds the gap rows).

Stability contract: fields may be added with defaults; nothing is renamed or removed.
"""

from __future__ import annotations

from typing import TypeAlias

import msgspec

__all__ = [
    "Signal",
    "BookDesync",
    "TradeIdGap",
    "FuturesSeqGap",
    "SubscriptionAcked",
    "SubscriptionRejected",
    "InstrumentChanged",
    "InstrumentSnapshot",
    "PipelineCounters",
]


class BookDesync(msgspec.Struct, frozen=True, kw_only=True):
    """A book can no longer be trusted; resubscribe (snapshot) to heal.

    ``stream`` is the frame stream (``spot``, ``l3``, ``futures``); ``channel`` is ``book`` or
    ``level3`` (futures: ``book``); ``reason`` is one of ``checksum_mismatch``, ``crossed``,
    ``apply_error``, ``seq_gap``, ``update_before_snapshot``. ``expected`` is the checksum
    Kraken sent, ``computed`` ours (``None`` when the reason is not a checksum).
    """

    stream: str
    channel: str
    symbol: str
    depth: int | None
    reason: str
    expected: int | None = None
    computed: int | None = None
    recv_ns: int = 0


class TradeIdGap(msgspec.Struct, frozen=True, kw_only=True):
    """Spot trade ids of ``symbol`` jumped from ``expected`` to ``got`` (``got - expected``
    trades missing): backfill them with REST ``Trades`` and journal BackfillStarted/Done."""

    symbol: str
    expected: int
    got: int
    recv_ns: int = 0


class FuturesSeqGap(msgspec.Struct, frozen=True, kw_only=True):
    """A Futures ``feed`` (``book`` or ``trade``) of ``product_id`` skipped sequence numbers."""

    feed: str
    product_id: str
    expected: int
    got: int
    recv_ns: int = 0


class SubscriptionAcked(msgspec.Struct, frozen=True, kw_only=True):
    """Kraken acknowledged a subscription (one signal per symbol)."""

    stream: str
    conn_id: int
    channel: str
    symbol: str | None
    depth: int | None = None
    interval: int | None = None
    recv_ns: int = 0


class SubscriptionRejected(msgspec.Struct, frozen=True, kw_only=True):
    """Kraken refused a subscription; ``error`` is Kraken's text."""

    stream: str
    conn_id: int
    channel: str
    symbol: str | None
    error: str
    recv_ns: int = 0


class InstrumentChanged(msgspec.Struct, frozen=True, kw_only=True):
    """The instrument universe changed: symbols newly listed, delisted, or whose status
    (or precision) changed. Capture may subscribe/unsubscribe accordingly."""

    listed: list[str] = msgspec.field(default_factory=list)
    delisted: list[str] = msgspec.field(default_factory=list)
    status_changed: list[str] = msgspec.field(default_factory=list)
    recv_ns: int = 0
    #: pair -> its status (``online``, ``delisted``, ...) for every pair the instrument
    #: message named (capture needs no second decode of the frame)
    statuses: dict[str, str] = msgspec.field(default_factory=dict)


class InstrumentSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """An ``instrument`` snapshot was derived (after any :class:`InstrumentChanged` of the same
    message): ``statuses`` is pair -> status for every pair it lists. Capture brings its
    subscriptions in line with it and lets book connections subscribe once the first one is in
    the archive."""

    statuses: dict[str, str] = msgspec.field(default_factory=dict)
    recv_ns: int = 0


class PipelineCounters(msgspec.Struct, frozen=True, kw_only=True):
    """Cumulative counters of a pipeline (:meth:`recorder.pipeline.Pipeline.counters`),
    persisted with its state: frames and venue messages fed, book messages whose Kraken
    checksum matched / did not."""

    frames: int = 0
    messages: int = 0
    checksums_ok: int = 0
    checksums_failed: int = 0


Signal: TypeAlias = (
    BookDesync
    | TradeIdGap
    | FuturesSeqGap
    | SubscriptionAcked
    | SubscriptionRejected
    | InstrumentChanged
    | InstrumentSnapshot
)
