"""RestConfig.max_body_bytes: a chunked answer with no Content-Length is cut at the cap."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiohttp import web

from recorder.capture.config import ConfigError, RestConfig, load_config
from recorder.capture.rest_client import RestClient, RestFailure
from recorder.frames import Frame

BODY = (b'{"error":[],"result":{"XXBTZUSD":[["95000.1","0.001",1735689600.1,"b","l","",7]],'
        b'"last":"1735689600100000000"}}')


async def _call(size: int | None, cap: int) -> tuple[BaseException | None, list[Frame]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)  # chunked: no Content-Length
        with contextlib.suppress(ConnectionError):
            if size is None:
                await resp.write(BODY)
            else:
                for _ in range(size // 2**16):
                    await resp.write(b" " * 2**16)
        return resp

    app = web.Application()
    app.router.add_get("/0/public/Trades", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    journal: list[Frame] = []
    client = RestClient(base, base, RestConfig(timeout_s=10, max_body_bytes=cap), journal.append)
    err: BaseException | None = None
    try:
        await client.trades("XBT/USD", None)
    except Exception as exc:  # noqa: BLE001
        err = exc
    await client.close()
    await runner.cleanup()
    return err, journal


def test_chunked_answer_over_the_cap_is_a_clean_failure() -> None:
    err, journal = asyncio.run(_call(8 * 2**20, 2**20))
    assert isinstance(err, RestFailure) and "body exceeds 1048576 bytes" in str(err)
    assert not [f for f in journal if f.stream == "rest"]  # nothing partial journaled


def test_answer_under_the_cap_is_read_and_journaled() -> None:
    err, journal = asyncio.run(_call(None, len(BODY)))
    assert not isinstance(err, RestFailure) or "exceeds" not in str(err), err
    assert [f.payload for f in journal if f.stream == "rest"] == [BODY]


def test_max_body_bytes_must_be_positive(tmp_path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[rest]\nmax_body_bytes = 0\n")
    with pytest.raises(ConfigError, match="max_body_bytes"):
        load_config(f)
