"""Peer implementations measured in the same run, used as their users use them.

python-kraken-sdk's :class:`kraken.spot.SpotOrderBookClient` keeps the v2 L2 book and validates
Kraken's CRC32 after every update. Its websocket layer parses each frame with ``json.loads``
and hands the dict to ``on_message``; we do exactly that in-process. The one network call it
makes (REST ``AssetPairs`` for the pair's decimals, on the first book message) is answered
locally with the same decimals, which is what that call would return.

cryptofeed's :class:`cryptofeed.exchanges.kraken.Kraken` speaks Kraken WS **v1** only. Its
connection layer hands each received text frame to ``Kraken.message_handler(msg, conn,
timestamp)``, which parses it (yapic.json, decimals as ``Decimal``), keeps the L2 book in its
``order_book`` C-extension ``OrderBook`` and, with ``checksum_validation=True``, raises
``BadChecksum`` when the CRC32 of the top 10 levels differs. We call that handler in-process
with the same stream rendered in v1's shape (:func:`benchmarks.workloads.to_v1_book`); the one
network call (REST ``AssetPairs``, for the symbol map, made when the feed is constructed) is
answered locally by passing the same ``{"result": {...: {"wsname": ...}}}`` document through
``Kraken._parse_symbol_data`` into cryptofeed's ``Symbols`` registry.

Known limitation of that handler (cryptofeed 2.4.1): it looks for ``"c"`` only in the first
object of an update, so a v1 update carrying both sides (checksum in the second object) is
applied but not checksum-validated. :class:`CryptofeedBook` therefore also checks the final
book's checksum itself, outside the timed loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

__all__ = [
    "CryptofeedBook",
    "KrakenSdkBook",
    "PeerMismatch",
    "cryptofeed_available",
    "kraken_sdk_available",
]


class PeerMismatch(AssertionError):
    """A peer did not process the stream the way we did: its figure would be meaningless."""


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


def cryptofeed_available() -> bool:
    try:
        import cryptofeed.exchanges.kraken  # noqa: F401
    except ImportError:
        return False
    return True


class CryptofeedBook:
    """Feeds v1 ``book-N`` frames through cryptofeed's Kraken feed handler, checksums on.

    After :meth:`run`: ``book_updates`` is how many book callbacks cryptofeed made (one per
    book frame it processed) and ``final_checksum`` the CRC32 its own book computes at the end.
    """

    def __init__(self, pair: str, depth: int) -> None:
        self.pair = pair
        self.depth = depth
        self.book_updates = 0
        self.final_checksum: int | None = None

    async def _on_book(self, book: object, receipt_timestamp: float) -> None:
        self.book_updates += 1

    def run(self, frames: Sequence[str]) -> int:
        """Process every frame through ``message_handler``; returns the frame count.

        Raises ``cryptofeed.exceptions.BadChecksum`` as cryptofeed does on a mismatch.
        """

        async def feed() -> None:
            from cryptofeed.defines import L2_BOOK
            from cryptofeed.exchanges.kraken import Kraken
            from cryptofeed.symbols import Symbols

            asset_pairs = {"result": {self.pair.replace("/", ""): {"wsname": self.pair}}}
            Symbols.set(Kraken.id, *Kraken._parse_symbol_data(asset_pairs))
            feed_ = Kraken(max_depth=self.depth, checksum_validation=True,
                           callbacks={L2_BOOK: self._on_book})
            try:
                handler = feed_.message_handler
                receipt = 0.0
                for frame in frames:
                    await handler(frame, None, receipt)
                books = list(feed_._l2_book.values())
                self.final_checksum = books[0].book.checksum() if len(books) == 1 else None
            finally:
                await feed_.http_conn.close()

        self.book_updates = 0
        asyncio.run(feed())
        return len(frames)
