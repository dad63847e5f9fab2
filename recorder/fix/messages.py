"""Bodies of Kraken's market-data messages (W, X, Y), in the field order of Kraken's docs.

The local exchange (``recorder sim``) uses these to speak FIX. The tests use them as well,
so that an established engine can validate exactly what the sim sends (docs/fix.md).
Each function returns the body fields for ``recorder._core.encode_fix``. Repeating groups
are flat, with the count field first.
"""

from __future__ import annotations

from dataclasses import dataclass

from recorder.protocol.errors import FixError

__all__ = ["BookEntry", "incremental_fields", "reject_fields", "snapshot_fields"]

BID, OFFER, TRADE = "0", "1", "2"
NEW, CHANGE, DELETE = 0, 1, 2
# MDReqRejReason (281) values Kraken documents
REJECT_REASONS = frozenset({"0", "1", "4", "5", "6", "8", "A", "B", "C"})


@dataclass(frozen=True, slots=True)
class BookEntry:
    """One 268 entry. Price and size are exact decimal text, written as they go on the wire."""

    entry_type: str
    entry_id: str
    price: str
    size: str
    time: str
    action: int | None = None
    timestamp: str | None = None
    queue_time: str | None = None
    ord_type: str | None = None
    aggressor_side: str | None = None

    def fields(self) -> list[tuple[int, str]]:
        """The group fields of this entry (279 first in an incremental refresh)."""
        if self.entry_type not in (BID, OFFER, TRADE):
            raise FixError(f"MDEntryType {self.entry_type!r} is not 0, 1 or 2")
        out: list[tuple[int, str]] = []
        if self.action is not None:
            if self.action not in (NEW, CHANGE, DELETE):
                raise FixError(f"MDUpdateAction {self.action} is not 0, 1 or 2")
            out.append((279, str(self.action)))
        out += [(269, self.entry_type), (278, self.entry_id), (270, self.price),
                (271, self.size), (273, self.time)]
        if self.timestamp is not None:
            out.append((5060, self.timestamp))
        if self.queue_time is not None:
            out.append((5273, self.queue_time))
        if self.entry_type == TRADE:
            if self.ord_type is not None:
                out.append((40, self.ord_type))
            if self.aggressor_side is not None:
                out.append((2446, self.aggressor_side))
        return out


def snapshot_fields(md_req_id: str, symbol: str,
                    entries: list[BookEntry]) -> list[tuple[int, str]]:
    """MarketDataSnapshotFullRefresh (35=W): bids and offers only, no 279."""
    if any(e.entry_type == TRADE or e.action is not None for e in entries):
        raise FixError("a snapshot carries bids and offers without MDUpdateAction")
    out: list[tuple[int, str]] = [(262, md_req_id), (55, symbol), (268, str(len(entries)))]
    for entry in entries:
        out += entry.fields()
    return out


def incremental_fields(md_req_id: str, symbol: str, entries: list[BookEntry],
                       book_checksum: int | None = None) -> list[tuple[int, str]]:
    """MarketDataIncrementalRefresh (35=X): 279 on every entry, optional 5041 at the end."""
    if not entries or any(e.action is None for e in entries):
        raise FixError("an incremental refresh needs entries, each with MDUpdateAction")
    out: list[tuple[int, str]] = [(55, symbol), (262, md_req_id), (268, str(len(entries)))]
    for entry in entries:
        out += entry.fields()
    if book_checksum is not None:
        out.append((5041, str(book_checksum)))
    return out


def reject_fields(md_req_id: str, reason: str, text: str) -> list[tuple[int, str]]:
    """MarketDataRequestReject (35=Y)."""
    if reason not in REJECT_REASONS:
        raise FixError(f"MDReqRejReason {reason!r} is not one Kraken documents")
    return [(262, md_req_id), (281, reason), (58, text)]
