"""Typed exceptions of the protocol core.

Decoders never let these escape: they turn them into :class:`recorder.protocol.reject.Reject`
values. Books and trackers raise them for misuse (a token at the wrong precision, an update
before a snapshot) so that callers can quarantine the offending message with a reason.
"""

from __future__ import annotations

from recorder.errors import RecorderError

__all__ = [
    "ProtocolError", "NumberError", "TimestampError", "BookError", "SigningError", "ColumnError",
    "FixError",
]


class ProtocolError(RecorderError):
    """Base class of every error raised by :mod:`recorder.protocol` and :mod:`recorder.book`."""


class NumberError(ProtocolError, ValueError):
    """A number is malformed, out of range, or has more decimals than its pair's precision."""


class TimestampError(ProtocolError, ValueError):
    """A timestamp is malformed or out of the representable int64-nanosecond range."""


class BookError(ProtocolError):
    """A book message cannot be applied (no snapshot yet, wrong symbol, bad level)."""


class SigningError(ProtocolError, ValueError):
    """An API secret or challenge cannot be used for signing (e.g. secret is not base64)."""


class ColumnError(ProtocolError, ValueError):
    """Columns handed to the compiled core (``recorder._core``) are inconsistent: a missing or
    mistyped column, different lengths, an order handle outside its dictionary."""


class FixError(ProtocolError, ValueError):
    """A FIX message cannot be encoded (empty value, SOH inside a value, a header tag given
    as a body field), or a FIX session is driven outside its protocol."""
