"""API keys, ``API-Sign`` verification, nonces and WebSocket tokens of the simulated exchange.

Keys come from ``--api-key/--api-secret`` or a keys file (JSON: ``{"KEY": "SECRET_B64", ...}``
or ``[{"key": ..., "secret": ...}, ...]``). A private request is accepted when its ``API-Key``
is known, its ``nonce`` is strictly greater than the last accepted nonce of that key, and
``API-Sign`` equals :func:`recorder.protocol.signing.spot_api_sign` over the exact body.

Tokens (``GetWebSocketsToken``) are random 43-character strings valid ``token_ttl_s`` seconds
until first used by a subscription; once used they stay valid (Kraken: "as long as the
subscription lives", which the simulator does not track further).
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import msgspec

from recorder.errors import RecorderError
from recorder.protocol.errors import SigningError
from recorder.protocol.signing import spot_api_sign

__all__ = ["AuthError", "KeyStore", "TokenStore", "load_keys", "parse_body"]


class AuthError(RecorderError):
    """A private request failed authentication; ``str(exc)`` is Kraken's error text."""


def load_keys(path: Path) -> dict[str, str]:
    """Read a keys file (see module docstring); raises :class:`ValueError` with a clear text."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read keys file {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"keys file {path} is not JSON: {exc}") from exc
    if isinstance(doc, dict):
        keys = {str(k): str(v) for k, v in doc.items()}
    elif isinstance(doc, list) and all(isinstance(i, dict) and "key" in i and "secret" in i for i in doc):
        keys = {str(i["key"]): str(i["secret"]) for i in doc}
    else:
        raise ValueError(f"keys file {path} must map key -> secret or list {{key, secret}} objects")
    for key, secret in keys.items():
        try:
            base64.b64decode(secret, validate=True)
        except ValueError:
            raise ValueError(f"secret of key {key!r} in {path} is not base64") from None
    return keys


def parse_body(body: bytes, content_type: str) -> dict[str, str]:
    """Form-encoded or JSON body -> flat dict of strings."""
    if not body:
        return {}
    if "json" in content_type or body.lstrip()[:1] == b"{":
        try:
            doc = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return {}
        return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


class KeyStore:
    """Known API keys and their last accepted nonce."""

    def __init__(self, keys: dict[str, str]) -> None:
        self._keys = dict(keys)
        self._last_nonce: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self._keys)

    def verify(self, *, api_key: str | None, api_sign: str | None, uri_path: str,
               body: bytes, params: dict[str, str]) -> str:
        """Return the key on success; raise :class:`AuthError` with Kraken's error text."""
        if not api_key or api_key not in self._keys:
            raise AuthError("EAPI:Invalid key")
        nonce_text = params.get("nonce", "")
        if not nonce_text.isdigit() or int(nonce_text) >= 2**64:
            raise AuthError("EAPI:Invalid nonce")
        try:
            expected = spot_api_sign(self._keys[api_key], uri_path, nonce_text, body)
        except SigningError:
            raise AuthError("EAPI:Invalid signature") from None
        if not api_sign or not hmac.compare_digest(expected, api_sign):
            raise AuthError("EAPI:Invalid signature")
        nonce = int(nonce_text)
        if nonce <= self._last_nonce.get(api_key, -1):
            raise AuthError("EAPI:Invalid nonce")
        self._last_nonce[api_key] = nonce
        return api_key


@dataclass(slots=True)
class _Token:
    expires_ns: int
    used: bool = False


class TokenStore:
    """WebSocket tokens: issue, check on subscribe/unsubscribe, expire."""

    def __init__(self, *, clock_ns: Callable[[], int], ttl_s: float = 900.0) -> None:
        self._clock_ns = clock_ns
        self.ttl_s = ttl_s
        self._tokens: dict[str, _Token] = {}

    def issue(self) -> str:
        token = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=").replace("+", "A").replace("/", "B")
        self._tokens[token] = _Token(expires_ns=self._clock_ns() + int(self.ttl_s * 1e9))
        now = self._clock_ns()
        for stale in [t for t, v in self._tokens.items() if not v.used and v.expires_ns < now]:
            del self._tokens[stale]
        return token

    def check(self, token: object) -> bool:
        """True if ``token`` is valid now; marks it used (no further expiry)."""
        if not isinstance(token, str):
            return False
        entry = self._tokens.get(token)
        if entry is None:
            return False
        if not entry.used and self._clock_ns() > entry.expires_ns:
            del self._tokens[token]
            return False
        entry.used = True
        return True
