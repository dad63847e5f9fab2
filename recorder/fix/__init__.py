"""FIX 4.4 market data (issue #17): a sans-IO session layer over the core's codec.

``recorder._core.FixFramer`` frames and decodes bytes; :mod:`recorder.fix.session` is the
session state machine (logon, heartbeats, sequence numbers, resend, logout). Neither does
I/O or reads a clock: the caller passes bytes and the time in, and carries out the actions
it gets back.
"""

from __future__ import annotations

from recorder.fix.session import (
    Deliver,
    Disconnect,
    DuplicateIgnored,
    FixSession,
    GapDetected,
    InboundRejected,
    LoggedOn,
    PeerReject,
    ResubscribeNeeded,
    Send,
    SessionAction,
    SessionConfig,
    Subscription,
)

__all__ = [
    "Deliver", "Disconnect", "DuplicateIgnored", "FixSession", "GapDetected", "InboundRejected",
    "LoggedOn", "PeerReject", "ResubscribeNeeded", "Send", "SessionAction", "SessionConfig",
    "Subscription",
]
