"""REST calls capture makes (token, trade/OHLC backfill, gap snapshots), within Kraken's limits.

Every response body is journaled as ``Frame(stream="rest", direction="in", meta="GET /0/...")``
before it is decoded, so the archive keeps the evidence exactly as received. Request pacing
follows a model of Kraken's limits (kraken-protocol.md §7.1): public calls from a token bucket
(about 1/s with a small burst, per IP), private calls from the decaying call counter. A
rate-limit answer (``EAPI:Rate limit exceeded``, ``EGeneral:Too many requests``,
``EService: Throttled: <ts>``, futures ``apiLimitExceeded``) journals a ``RateLimited`` marker,
pushes a cooldown (honouring the ``Throttled`` timestamp) and raises :class:`RestRateLimited`.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import aiohttp

from recorder.capture.config import Credentials, RestConfig
from recorder.capture.limits import CallCounter, Cooldown, TokenBucket
from recorder.errors import RecorderError
from recorder.frames import Frame
from recorder.pipeline.markers import RateLimited, encode_marker
from recorder.protocol.reject import Reject
from recorder.protocol.rest import (
    RestError,
    TradesPage,
    decode_futures_orderbook,
    decode_level3,
    decode_trades,
    decode_websockets_token,
)
from recorder.protocol.signing import spot_sign_headers

__all__ = ["RestClient", "RestFailure", "RestRateLimited", "RestAuthRefused", "NoCredentials"]

#: Kraken's answers that refuse the API key itself (category, message): retrying the same
#: key cannot succeed until an operator changes it.
_AUTH_REFUSALS = frozenset({("API", "Invalid key"), ("API", "Invalid signature"),
                            ("General", "Permission denied")})


class RestFailure(RecorderError, RuntimeError):
    """A REST call failed (network, HTTP status, Kraken error, undecodable body)."""


class RestRateLimited(RestFailure):
    """Kraken rate-limited the call; retry after ``retry_in_s``."""

    def __init__(self, message: str, retry_in_s: float) -> None:
        super().__init__(message)
        self.retry_in_s = retry_in_s


class RestAuthRefused(RestFailure):
    """Kraken refused the API key of a private call (invalid key or signature, or a key
    without the permission)."""


class NoCredentials(RestFailure):
    """A private call was needed but no API key is configured."""


class RestClient:
    """One aiohttp session plus the limit model. ``emit`` journals (and pipelines) frames."""

    def __init__(self, spot_base: str, futures_base: str, cfg: RestConfig,
                 emit: Callable[[Frame], Any], credentials: Credentials | None = None,
                 conn_id: int = 0) -> None:
        self.spot_base = spot_base.rstrip("/")
        self.futures_base = futures_base.rstrip("/")
        self.cfg = cfg
        self._emit = emit
        self._creds = credentials
        self._conn_id = conn_id
        now = time.monotonic()
        self.public = TokenBucket(cfg.public_per_s, max(1, cfg.public_burst), now)
        self.private = CallCounter(cfg.private_max, cfg.private_decay_per_s)
        self.cooldown = Cooldown(cfg.rate_limited_cooldown_s)
        self.private_cooldown = Cooldown(cfg.rate_limited_cooldown_s)
        self._session: aiohttp.ClientSession | None = None
        self._nonce = time.time_ns() // 1000
        self._lock = asyncio.Lock()
        self.calls = 0
        self.rate_limited = 0

    @property
    def has_keys(self) -> bool:
        return self._creds is not None

    async def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _pace(self, private: bool) -> None:
        while True:
            now = time.monotonic()
            wait = (self.private_cooldown if private else self.cooldown).wait(now)
            if private:
                wait = max(wait, self.private.wait(1.0, now))
            else:
                wait = max(wait, self.public.wait(1.0, now))
            if wait <= 0:
                if private:
                    self.private.add(1.0, now)
                else:
                    self.public.take(1.0, now)
                return
            await asyncio.sleep(min(wait, 5.0))

    def _journal(self, meta: str, body: bytes) -> None:
        self._emit(Frame(recv_ns=time.time_ns(), conn_id=self._conn_id, stream="rest",
                         direction="in", payload=body, meta=meta))

    def _limited(self, err: RestError, endpoint: str, private: bool) -> RestRateLimited:
        now = time.monotonic()
        retry_at = None
        if err.retry_after_ns is not None:
            retry_at = now + max(0.0, err.retry_after_ns / 1e9 - time.time())
        until = (self.private_cooldown if private else self.cooldown).hit(now, retry_at)
        if private:
            self.private.saturate(now)
        else:
            self.public.drain(now)
        self.rate_limited += 1
        self._emit(Frame(recv_ns=time.time_ns(), conn_id=self._conn_id, stream="control",
                         direction="in",
                         payload=encode_marker(RateLimited(detail=err.text, endpoint=endpoint))))
        return RestRateLimited(f"{endpoint}: {err.text}", until - now)

    async def _read_body(self, resp: aiohttp.ClientResponse, method: str, path: str) -> bytes:
        """The answer body, read in chunks; :class:`RestFailure` past ``max_body_bytes``
        (at most the cap plus one chunk is ever held; nothing is journaled)."""
        cap = self.cfg.max_body_bytes
        if resp.content_length is not None and resp.content_length > cap:
            self.calls += 1
            raise RestFailure(f"{method} {path}: body exceeds {cap} bytes "
                              f"(Content-Length {resp.content_length})")
        buf = bytearray()
        async for chunk in resp.content.iter_chunked(1 << 16):
            if len(buf) + len(chunk) > cap:
                self.calls += 1
                raise RestFailure(f"{method} {path}: body exceeds {cap} bytes")
            buf += chunk
        return bytes(buf)

    async def _request(self, method: str, base: str, path: str, params: dict[str, Any],
                       private: bool = False) -> bytes:
        await self._pace(private)
        session = await self._sess()
        query = urllib.parse.urlencode(params)
        meta = f"{method} {path}" + (f"?{query}" if query and not private else "")
        try:
            if private:
                if self._creds is None:
                    raise NoCredentials(f"{path} needs API keys")
                async with self._lock:
                    self._nonce = max(self._nonce + 1, time.time_ns() // 1000)
                    nonce = self._nonce
                body = urllib.parse.urlencode({"nonce": nonce, **params})
                headers = spot_sign_headers(self._creds.api_key, self._creds.api_secret.reveal(),
                                            path, nonce, body)
                headers["Content-Type"] = "application/x-www-form-urlencoded"
                async with session.post(base + path, data=body, headers=headers) as resp:
                    payload = await self._read_body(resp, method, path)
                    status = resp.status
            else:
                async with session.get(base + path, params=params) as resp:
                    payload = await self._read_body(resp, method, path)
                    status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise RestFailure(f"{method} {path}: {type(exc).__name__}") from None
        self.calls += 1
        self._journal(meta, payload)
        if status == 429:
            raise self._limited(RestError(venue="spot", severity="E", category="General",
                                          message="Too many requests", text="HTTP 429"),
                                path, private)
        if status != 200:
            raise RestFailure(f"{method} {path}: HTTP {status}")
        return payload

    def _check(self, result: Any, path: str, private: bool = False) -> Any:
        if isinstance(result, RestError):
            if result.is_rate_limited:
                raise self._limited(result, path, private)
            if (result.category, result.message) in _AUTH_REFUSALS:
                raise RestAuthRefused(f"{path}: {result.text}")
            raise RestFailure(f"{path}: {result.text}")
        if isinstance(result, Reject):
            raise RestFailure(f"{path}: undecodable response ({result.reason})")
        if not private:
            self.cooldown.ok()
        else:
            self.private_cooldown.ok()
        return result

    # ------------------------------------------------------------------ calls

    async def websockets_token(self) -> str:
        path = "/0/private/GetWebSocketsToken"
        body = await self._request("POST", self.spot_base, path, {}, private=True)
        return self._check(decode_websockets_token(body), path, True).token  # type: ignore[no-any-return]

    async def trades(self, pair: str, since: int | None) -> TradesPage:
        path = "/0/public/Trades"
        params: dict[str, Any] = {"pair": pair}
        if since is not None:
            params["since"] = str(since)
        body = await self._request("GET", self.spot_base, path, params)
        return self._check(decode_trades(body), path)  # type: ignore[no-any-return]

    async def ohlc(self, pair: str, interval: int, since: int | None = None) -> bytes:
        path = "/0/public/OHLC"
        params: dict[str, Any] = {"pair": pair, "interval": interval}
        if since is not None:
            params["since"] = since
        body = await self._request("GET", self.spot_base, path, params)
        from recorder.protocol.rest import decode_ohlc

        self._check(decode_ohlc(body), path)
        return body

    async def depth(self, pair: str, count: int = 500) -> bytes:
        path = "/0/public/Depth"
        body = await self._request("GET", self.spot_base, path, {"pair": pair, "count": count})
        from recorder.protocol.rest import decode_depth

        self._check(decode_depth(body), path)
        return body

    async def level3(self, pair: str, depth: int) -> bytes:
        path = "/0/private/Level3"
        body = await self._request("POST", self.spot_base, path, {"pair": pair, "depth": depth},
                                   private=True)
        self._check(decode_level3(body), path, True)
        return body

    async def futures_orderbook(self, product: str) -> bytes:
        path = "/derivatives/api/v3/orderbook"
        body = await self._request("GET", self.futures_base, path, {"symbol": product})
        self._check(decode_futures_orderbook(body), path)
        return body
