"""Peer implementations measured in the same run, used as their users use them.

python-kraken-sdk's :class:`kraken.spot.SpotOrderBookClient` keeps the v2 L2 book and validates
Kraken's CRC32 after every update. Its websocket layer parses each frame with ``json.loads``
and hands the dict to ``on_message``; we do exactly that in-process. The one network call it
makes (REST ``AssetPairs`` for the pair's decimals, on the first book message) is answered
locally with the same decimals, which is what that call would return.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

__all__ = ["kraken_sdk_available", "KrakenSdkBook"]


def kraken_sdk_available() -> bool:
    try:
        import kraken.spot  # noqa: F401
    except ImportError:
        return False
    return True


class KrakenSdkBook:
    """Feeds v2 ``book`` frames through python-kraken-sdk's order-book client.

    The client opens an aiohttp session when constructed, so construction, feeding and closing
    all happen inside one event loop per :meth:`run`.
    """

    def __init__(self, symbol: str, depth: int, price_decimals: int, qty_decimals: int) -> None:
        self.symbol = symbol
        self.depth = depth
        self.pairs = {symbol: {"pair_decimals": price_decimals, "lot_decimals": qty_decimals}}
        self.checksum_failures = 0

    def _on_update(self, pair: str, message: dict) -> None:
        if "error" in message:
            self.checksum_failures += 1

    def run(self, frames: Sequence[bytes]) -> int:
        """Process every frame (json.loads + on_message); returns the frame count."""

        async def feed() -> None:
            from kraken.spot import SpotOrderBookClient

            client = SpotOrderBookClient(depth=self.depth, callback=self._on_update)
            market = client._SpotOrderBookClient__market  # type: ignore[attr-defined]
            market.get_asset_pairs = lambda pair: self.pairs  # the REST answer, served locally
            try:
                on_message = client.on_message
                for frame in frames:
                    await on_message(json.loads(frame))
            finally:
                await client.close()

        asyncio.run(feed())
        return len(frames)
