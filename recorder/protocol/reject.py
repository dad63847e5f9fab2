"""The typed value a decoder returns instead of raising."""

from __future__ import annotations

import msgspec

__all__ = ["Reject"]


class Reject(msgspec.Struct, frozen=True, kw_only=True):
    """A frame that could not be decoded into a known event.

    ``reason`` is a short stable code (``malformed_json``, ``unknown_message``, ``schema``,
    ``bad_number``, ``bad_timestamp``, ``too_large``, ...) suitable for a ``rejects`` table;
    ``detail`` is a human-readable explanation; ``raw`` is the frame exactly as received.
    """

    reason: str
    detail: str
    raw: bytes
