"""Shared I/O helpers of the simulator's Spot and Futures REST handlers."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

import msgspec
from aiohttp import web

from recorder.errors import RecorderError

if TYPE_CHECKING:
    from recorder.sim.server import SimServer

__all__ = ["DataUnavailable", "json_response", "rest_faults"]

_ENC: Final = msgspec.json.Encoder()


class DataUnavailable(RecorderError, LookupError):
    """A market cannot answer a REST question right now (``recorder replay``: the archive
    holds no valid book of the pair at the replay time). Spot answers
    ``EService:Unavailable``, Futures ``Unavailable``, Kraken's codes for it."""


def json_response(body: Any, status: int = 200) -> web.Response:
    """``body`` as compact JSON (``msgspec.Raw`` values are written verbatim)."""
    return web.Response(body=_ENC.encode(body), status=status, content_type="application/json")


async def rest_faults(sim: SimServer, path: str, private: bool) -> str | None:
    """Apply the active ``slow_rest`` / ``rest_limit`` faults to one request: sleeps for a
    delay and returns the error text to answer with, or None."""
    if not sim.faults.active:
        return None
    delay, error = sim.faults.rest(path=path, private=private)
    if delay:
        await asyncio.sleep(delay)
    if error is not None:
        sim.faults.rest_answered(path=path, error=error)
    return error
