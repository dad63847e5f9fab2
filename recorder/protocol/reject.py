"""The typed value a decoder returns instead of raising."""

from __future__ import annotations

import msgspec

__all__ = ["Reject", "utf8_error_offset"]


class Reject(msgspec.Struct, frozen=True, kw_only=True):
    """A frame that could not be decoded into a known event.

    ``reason`` is a short stable code (``malformed_json``, ``unknown_message``, ``schema``,
    ``bad_number``, ``bad_timestamp``, ``too_large``, ...) suitable for a ``rejects`` table;
    ``detail`` is a human-readable explanation; ``raw`` is the frame exactly as received.
    """

    reason: str
    detail: str
    raw: bytes


def utf8_error_offset(raw: bytes) -> int | None:
    """The byte offset of the first invalid UTF-8 sequence in ``raw``, or None if it is valid.

    Decoders call this when the JSON parser fails, to tell an encoding error from malformed
    JSON by looking at the bytes themselves: which of the two a JSON library reports (and in
    what words) differs between libraries and versions, so a reject's reason never depends on it.
    """
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start
    return None
