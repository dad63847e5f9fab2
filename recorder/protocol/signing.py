"""Kraken request signatures: Spot private REST ``API-Sign`` and the Futures WS challenge.

Both are HMAC-SHA512 keyed with the base64-decoded API secret:

* Spot REST: ``API-Sign = base64(HMAC-SHA512(secret, uri_path + SHA256(nonce + post_data)))``
  where ``SHA256(...)`` is the raw 32-byte digest and ``post_data`` is exactly the body sent
  (form-encoded or JSON) — it normally contains the same ``nonce``.
* Futures WebSocket: ``signed_challenge = base64(HMAC-SHA512(secret, SHA256(challenge)))``.

Pure functions, no clock and no I/O: callers choose the nonce. A secret that is not valid
base64 raises :class:`~recorder.protocol.errors.SigningError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from recorder.protocol.errors import SigningError

__all__ = ["spot_api_sign", "spot_sign_headers", "futures_challenge_sign"]


def _secret_bytes(secret_b64: str) -> bytes:
    """Strictly decode an API secret; reject non-base64 text and empty secrets."""
    if not isinstance(secret_b64, str):
        raise SigningError("API secret must be base64 text")
    try:
        key = base64.b64decode(secret_b64.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SigningError("API secret is not valid base64") from exc
    if not key:
        raise SigningError("API secret is empty")
    return key


def _nonce_text(nonce: int | str) -> str:
    """The nonce as the decimal text that is hashed (an unsigned 64-bit integer)."""
    if type(nonce) is int:
        text = str(nonce)
    elif isinstance(nonce, str):
        text = nonce
    else:
        raise SigningError(f"nonce must be an int or decimal text, got {type(nonce).__name__}")
    if not text.isascii() or not text.isdigit() or int(text) >= 2**64:
        raise SigningError(f"nonce must be an unsigned 64-bit decimal integer, got {text[:32]!r}")
    return text


def spot_api_sign(secret_b64: str, uri_path: str, nonce: int | str, post_data: str | bytes) -> str:
    """Return the Spot REST ``API-Sign`` header value for one private request.

    ``uri_path`` starts at ``/0/private/...``; ``post_data`` is the exact request body.
    """
    key = _secret_bytes(secret_b64)
    if not isinstance(uri_path, str) or not uri_path.startswith("/"):
        raise SigningError(f"uri_path must be an absolute path, got {uri_path!r}")
    body = post_data.encode("utf-8") if isinstance(post_data, str) else bytes(post_data)
    inner = hashlib.sha256(_nonce_text(nonce).encode("ascii") + body).digest()
    mac = hmac.new(key, uri_path.encode("utf-8") + inner, hashlib.sha512).digest()
    return base64.b64encode(mac).decode("ascii")


def spot_sign_headers(
    api_key: str, secret_b64: str, uri_path: str, nonce: int | str, post_data: str | bytes
) -> dict[str, str]:
    """The two authentication headers of a Spot private REST request (``API-Key``, ``API-Sign``)."""
    if not isinstance(api_key, str) or not api_key:
        raise SigningError("API key must be non-empty text")
    return {"API-Key": api_key, "API-Sign": spot_api_sign(secret_b64, uri_path, nonce, post_data)}


def futures_challenge_sign(secret_b64: str, challenge: str) -> str:
    """Return ``signed_challenge`` for a Futures WS private subscription."""
    key = _secret_bytes(secret_b64)
    if not isinstance(challenge, str) or not challenge:
        raise SigningError("challenge must be non-empty text")
    digest = hashlib.sha256(challenge.encode("utf-8")).digest()
    return base64.b64encode(hmac.new(key, digest, hashlib.sha512).digest()).decode("ascii")
