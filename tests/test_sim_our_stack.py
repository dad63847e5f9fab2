"""Our own protocol core against ``recorder sim`` over real loopback sockets.

A client built only from the project's public pieces (the ``websockets`` library, our signing,
REST and WS decoders, books and continuity trackers) connects to the three WebSocket
endpoints the way the recorder will, takes pair precisions from the ``instrument`` channel
(never guessed), and checks every message: zero rejects, every ``book`` and ``level3``
checksum verified by our books, consecutive ``trade_id`` per symbol, contiguous futures
``seq`` with a consistent futures book.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest
import websockets

from recorder.book.continuity import FuturesSeqTracker, TradeIdTracker
from recorder.book.futures import FuturesBook
from recorder.book.l2 import L2Book
from recorder.book.l3 import L3Book
from recorder.protocol.futures import (
    FuturesBookDelta,
    FuturesBookSnapshot,
    FuturesTrade,
    FuturesTradeSnapshot,
    decode_futures,
)
from recorder.protocol.reject import Reject
from recorder.protocol.rest import decode_websockets_token
from recorder.protocol.signing import spot_sign_headers
from recorder.protocol.spot import (
    BookMessage,
    InstrumentMessage,
    Level3Message,
    SubscribeAck,
    TradeMessage,
    decode_spot,
)
from recorder.sim.server import SimConfig, SimServer
from recorder.sim.universe import load_universe

pytestmark = pytest.mark.integration

KEY = "stack-test-key"
SECRET = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
PAIRS = 24
SECONDS = 4.0


async def _token(rest: str) -> str:
    path = "/0/private/GetWebSocketsToken"
    nonce = time.time_ns()
    body = f"nonce={nonce}"
    headers = spot_sign_headers(KEY, SECRET, path, nonce, body)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    async with aiohttp.ClientSession() as session, \
            session.post(rest + path, data=body, headers=headers) as response:
        token = decode_websockets_token(await response.read())
    assert not isinstance(token, Reject), token
    return token.token


async def _drain(ws: Any, seconds: float) -> list[bytes]:
    frames: list[bytes] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            frame = await asyncio.wait_for(ws.recv(decode=False), timeout=left)
        except (TimeoutError, websockets.ConnectionClosed):
            break
        frames.append(frame)
    return frames


async def _capture(pregenerate_s: float) -> dict[str, list[bytes]]:
    universe = load_universe(None, pairs=PAIRS, futures_path=None, seed=7)
    server = SimServer(SimConfig(port=0, seed=7, rate=3.0, keys={KEY: SECRET},
                                 pregenerate_s=pregenerate_s), universe)
    urls = await server.start()
    try:
        symbols = [pair.symbol for pair in universe.pairs]
        products = [product.product_id for product in universe.futures][:4]
        token = await _token(urls["rest"])
        async with websockets.connect(urls["spot_ws"], max_size=2**24) as spot, \
                websockets.connect(urls["l3_ws"], max_size=2**24) as l3, \
                websockets.connect(urls["futures_ws"], max_size=2**24) as futures:
            await spot.send(json.dumps({"method": "subscribe", "params": {"channel": "instrument"}}))
            await spot.send(json.dumps({"method": "subscribe", "params": {
                "channel": "book", "symbol": symbols, "depth": 10}}))
            await spot.send(json.dumps({"method": "subscribe", "params": {
                "channel": "trade", "symbol": symbols, "snapshot": True}}))
            await l3.send(json.dumps({"method": "subscribe", "params": {
                "channel": "level3", "symbol": symbols, "depth": 10, "token": token}}))
            for feed in ("book", "trade"):
                await futures.send(json.dumps({"event": "subscribe", "feed": feed,
                                               "product_ids": products}))
            spot_frames, l3_frames, futures_frames = await asyncio.gather(
                _drain(spot, SECONDS), _drain(l3, SECONDS), _drain(futures, SECONDS))
    finally:
        await server.stop()
    return {"spot": spot_frames, "l3": l3_frames, "futures": futures_frames, "symbols": symbols}


@pytest.fixture(scope="module", params=[0.0, 30.0], ids=["live", "pregenerated"])
def captured(request: pytest.FixtureRequest) -> dict[str, list]:
    """Live market, and ``--pregenerate`` (its horizon outlasts the capture, so every spot
    book/trade/level3 frame is a pre-rendered one, behind snapshots from the shadow)."""
    if request.param:
        return asyncio.run(asyncio.wait_for(_capture(request.param), 120))
    return asyncio.run(asyncio.wait_for(_capture(request.param), 60))


def test_spot_book_and_trades_verify_with_our_books(captured: dict[str, list]) -> None:
    precisions: dict[str, tuple[int, int]] = {}
    books: dict[str, L2Book] = {}
    trades = TradeIdTracker()
    counts: Counter[str] = Counter()
    acked: set[tuple[str, str]] = set()
    for frame in captured["spot"]:
        event = decode_spot(frame)
        assert not isinstance(event, Reject), (event.reason, event.detail, frame[:200])
        if isinstance(event, InstrumentMessage):
            for pair in event.data.pairs:
                precisions[pair.symbol] = (pair.price_precision, pair.qty_precision)
        elif isinstance(event, SubscribeAck):
            assert event.success, event.error
            if event.result is not None and event.result.symbol:
                acked.add((event.result.channel, event.result.symbol))
        elif isinstance(event, BookMessage):
            for data in event.data:
                if event.type == "snapshot":
                    price_p, qty_p = precisions[data.symbol]  # instrument arrives first
                    books[data.symbol] = L2Book(data.symbol, 10, price_p, qty_p)
                result = books[data.symbol].apply(event.type, data)
                assert result.match is True, (data.symbol, result)
                assert not result.crossed
                counts["book " + event.type] += 1
        elif isinstance(event, TradeMessage):
            if event.type == "snapshot":
                for symbol in {t.symbol for t in event.data}:
                    ids = [t.trade_id for t in event.data if t.symbol == symbol]
                    assert trades.observe_snapshot(symbol, ids) == []
            else:
                for trade in event.data:
                    assert trades.observe(trade.symbol, trade.trade_id) is None, trade
                    counts["trade"] += 1
    symbols = captured["symbols"]
    assert len(symbols) >= 20
    assert {("book", s) for s in symbols} <= acked and {("trade", s) for s in symbols} <= acked
    assert counts["book snapshot"] == len(symbols)  # one snapshot per symbol
    assert counts["book update"] > 200 and counts["trade"] > 5, counts


def test_level3_checksums_verify_with_our_book(captured: dict[str, list]) -> None:
    books: dict[str, L3Book] = {}
    precisions = _precisions(captured["spot"])
    updates = 0
    for frame in captured["l3"]:
        event = decode_spot(frame)
        assert not isinstance(event, Reject), (event.reason, event.detail)
        if isinstance(event, SubscribeAck):
            assert event.success, event.error
        if not isinstance(event, Level3Message):
            continue
        for data in event.data:
            if event.type == "snapshot":
                books[data.symbol] = L3Book(data.symbol, 10, *precisions[data.symbol])
            result = books[data.symbol].apply(event.type, data)
            assert result.match is True, (data.symbol, result)
            updates += event.type == "update"
    assert set(books) == set(captured["symbols"])
    assert updates > 200


def test_futures_seq_contiguous_and_book_consistent(captured: dict[str, list]) -> None:
    tracker = FuturesSeqTracker()
    books: dict[str, FuturesBook] = {}
    kinds: Counter[str] = Counter()
    for frame in captured["futures"]:
        event = decode_futures(frame)
        assert not isinstance(event, Reject), (event.reason, event.detail)
        assert tracker.observe(event) == []
        if isinstance(event, FuturesBookSnapshot):
            books[event.product_id] = book = FuturesBook(event.product_id)
            book.apply_snapshot(event)
        elif isinstance(event, FuturesBookDelta):
            assert books[event.product_id].apply(event) is None
            assert not books[event.product_id].crossed
        kinds[type(event).__name__] += 1
    assert kinds[FuturesBookSnapshot.__name__] >= 2 and kinds[FuturesBookDelta.__name__] > 50
    assert kinds[FuturesTradeSnapshot.__name__] >= 2
    assert all(book.in_sync for book in books.values())
    assert kinds[FuturesTrade.__name__] >= 1  # live trades continue the snapshot seq (tracker)


def _precisions(spot_frames: list[bytes]) -> dict[str, tuple[int, int]]:
    for frame in spot_frames:
        event = decode_spot(frame)
        if isinstance(event, InstrumentMessage) and event.type == "snapshot":
            return {p.symbol: (p.price_precision, p.qty_precision) for p in event.data.pairs}
    raise AssertionError("no instrument snapshot received")
