"""Loopback-only control endpoint of ``recorder sim``.

* ``GET /control/faults`` -> ``{"rules": [{"rule", "kind", "fired"}...], "injected": N}``
* ``POST /control/faults`` with ``{"spec": "<fault spec>", "replace": false}`` adds rules (their
  schedules start now), ``{"clear": true}`` removes all; a bad spec answers 400 ``{"error": ...}``.
* ``POST /control/instrument`` with ``{"action": "list", "symbol": "NEW/USD"?}``,
  ``{"action": "delist", "symbol": ...}`` or ``{"action": "status", "symbol": ..., "status": ...}``;
  the change is sent to ``instrument`` subscribers and recorded as a fault in the truth file.
* ``GET /control/stats`` -> server counters.

Requests from non-loopback peers get 403.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from recorder.sim.server import SIM_KEY

from recorder.sim.faults import FaultError, parse_faults

if TYPE_CHECKING:
    from recorder.sim.server import SimServer

__all__ = ["add_routes"]

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def _reply(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        doc = msgspec.json.decode(await request.read())
    except msgspec.DecodeError as exc:
        return _reply({"error": f"body is not JSON: {exc}"}, 400)
    if not isinstance(doc, dict):
        return _reply({"error": "body must be a JSON object"}, 400)
    return doc


@web.middleware
async def _loopback_only(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path.startswith("/control") and request.remote not in _LOOPBACK:
        return _reply({"error": "control endpoint is loopback-only"}, 403)
    return await handler(request)


async def get_faults(request: web.Request) -> web.Response:
    sim: SimServer = request.app[SIM_KEY]
    return _reply({"rules": sim.faults.describe(), "injected": sim.faults.injected})


async def post_faults(request: web.Request) -> web.Response:
    sim: SimServer = request.app[SIM_KEY]
    doc = await _body(request)
    if isinstance(doc, web.Response):
        return doc
    if doc.get("clear"):
        sim.faults.clear()
        sim.record("faults_cleared")
        return _reply({"rules": []})
    spec = doc.get("spec")
    if not isinstance(spec, str):
        return _reply({"error": "expected {\"spec\": \"...\"} or {\"clear\": true}"}, 400)
    try:
        rules = parse_faults(spec)
    except FaultError as exc:
        return _reply({"error": str(exc)}, 400)
    if doc.get("replace"):
        sim.faults.clear()
    sim.faults.add(rules)
    sim.record("faults_set", spec=spec, replace=bool(doc.get("replace")))
    return _reply({"rules": sim.faults.describe()})


async def post_instrument(request: web.Request) -> web.Response:
    sim: SimServer = request.app[SIM_KEY]
    doc = await _body(request)
    if isinstance(doc, web.Response):
        return doc
    action, symbol, status = doc.get("action"), doc.get("symbol"), doc.get("status")
    try:
        if action == "list":
            symbol = sim.list_pair(symbol if isinstance(symbol, str) else None)
            status = "online"
        elif action == "delist" and isinstance(symbol, str):
            sim.delist_pair(symbol)
            status = "delisted"
        elif action == "status" and isinstance(symbol, str) and isinstance(status, str):
            sim.set_pair_status(symbol, status)
        else:
            return _reply({"error": "expected action list|delist|status with symbol (and status)"}, 400)
    except (KeyError, ValueError) as exc:
        return _reply({"error": str(exc).strip("'\"")}, 400)
    sim.faults.record(action, channel="instrument", symbol=symbol,
                      detail={"source": "control", "status": status})
    return _reply({"symbol": symbol, "status": status})


async def get_stats(request: web.Request) -> web.Response:
    sim: SimServer = request.app[SIM_KEY]
    extra = {"pregen_live": int(sim.spot.live)} if sim.pregen is not None else {}
    return _reply({**sim.stats, "open_connections": len(sim.connections), **extra})


def add_routes(app: web.Application) -> None:
    app.middlewares.append(_loopback_only)
    app.router.add_get("/control/faults", get_faults)
    app.router.add_post("/control/faults", post_faults)
    app.router.add_post("/control/instrument", post_instrument)
    app.router.add_get("/control/stats", get_stats)
