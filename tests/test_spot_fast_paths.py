"""The spot decoder's hot-path shortcuts: the remembered whole second and the float hook.

``BookData`` and ``Level3Data`` remember the last whole second they validated and only parse
the fraction of a timestamp in the same second; ``level3`` orders from another second (a
deleted order carries its insertion time) go through the memoised parser without replacing
it. Every ``ts_ns`` must equal :func:`rfc3339_to_ns` of its text whatever came before, and a
bad timestamp must be rejected the same way whatever second is remembered.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.protocol.reject import Reject
from recorder.protocol.spot import BookMessage, Level3Message, decode_spot
from recorder.protocol.timestamps import ns_to_rfc3339, rfc3339_to_ns

T0 = 1_790_000_000_000_000_000


def book_frame(stamp: str, price: str = "93704.2", qty: str = "0.01680553") -> bytes:
    return ('{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],'
            f'"asks":[{{"price":{price},"qty":{qty}}}],"checksum":1,"timestamp":"{stamp}"}}]}}'
            ).encode()


def level3_frame(stamp: str | None, order_stamps: list[str]) -> bytes:
    orders = [{"event": "add" if i % 2 == 0 else "delete", "order_id": f"O{i}",
               "limit_price": "93704.2", "order_qty": "0.5", "timestamp": s}
              for i, s in enumerate(order_stamps)]
    data = {"checksum": 1, "symbol": "BTC/USD", "bids": orders[::2], "asks": orders[1::2]}
    if stamp is not None:
        data["timestamp"] = stamp
    return json.dumps({"channel": "level3", "type": "update", "data": [data]}).encode()


@settings(deadline=None, max_examples=200)
@given(st.lists(st.integers(0, 3 * 10**9), min_size=1, max_size=12))
def test_book_ts_ns_is_exact_in_any_order_of_seconds(offsets: list[int]) -> None:
    for offset in offsets:
        stamp = ns_to_rfc3339(T0 + offset * 1000, 6)
        event = decode_spot(book_frame(stamp))
        assert isinstance(event, BookMessage), event
        assert event.data[0].ts_ns == rfc3339_to_ns(stamp)


@settings(deadline=None, max_examples=200)
@given(st.lists(st.integers(0, 3 * 10**9), min_size=1, max_size=10),
       st.integers(0, 3 * 10**9), st.booleans())
def test_level3_ts_ns_is_exact_with_orders_from_other_seconds(
        offsets: list[int], message: int, with_message: bool) -> None:
    stamps = [ns_to_rfc3339(T0 + o * 1000 + o % 997, 9) for o in offsets]
    stamp = ns_to_rfc3339(T0 + message * 1000, 9) if with_message else None
    event = decode_spot(level3_frame(stamp, stamps))
    assert isinstance(event, Level3Message), event
    data = event.data[0]
    assert data.ts_ns == (None if stamp is None else rfc3339_to_ns(stamp))
    orders = data.bids + data.asks
    assert sorted(o.ts_ns for o in orders) == sorted(rfc3339_to_ns(s) for s in stamps)
    # and the message after it, in the message's second, still decodes exactly
    follow = decode_spot(book_frame(ns_to_rfc3339(T0 + message * 1000 + 1000, 6)))
    assert follow.data[0].ts_ns == T0 + message * 1000 + 1000  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", [
    "2026-02-30T14:13:20.000906Z",   # no such day
    "2026-09-21T24:13:20.000906Z",   # no such hour
    "2026-09-21T14:13:20.00090xZ",   # not digits
    "2026-09-21T14:13:20.00090\u0661Z",  # not ASCII digits
    "2026-09-21T14:13:20.000906",    # no zone: not the fast layout, still valid RFC3339
    "2026-09-21T14:13:20.000906z",
    "2026-09-21T14:13:20,000906Z",
])
@pytest.mark.parametrize("primer", ["2026-09-21T14:13:20.000001Z", "2026-02-28T14:13:20.000001Z",
                                    "2026-09-21T14:13:21.000001Z"])
def test_book_rejects_do_not_depend_on_the_remembered_second(bad: str, primer: str) -> None:
    outcomes = []
    for prime in (primer, "2001-01-01T00:00:00.000000Z"):
        assert isinstance(decode_spot(book_frame(prime)), BookMessage)
        event = decode_spot(book_frame(bad))
        outcomes.append(event if isinstance(event, Reject) else event.data[0].ts_ns)
    assert outcomes[0] == outcomes[1]
    try:
        ns = rfc3339_to_ns(bad)
    except Exception:  # noqa: BLE001 - any parse error means the decoder rejects it
        assert isinstance(outcomes[0], Reject) and outcomes[0].reason == "bad_timestamp"
    else:
        assert outcomes[0] == ns


@pytest.mark.parametrize("bad", [
    "2026-02-30T14:13:20.000906645Z", "2026-09-21T14:13:20.00090664xZ",
    "2026-09-21T14:13:20.00090664\u0661Z", "2026-09-21T14:13:61.000906645Z",
])
def test_level3_order_rejects_do_not_depend_on_the_remembered_second(bad: str) -> None:
    good = "2026-09-21T14:13:20.000906645Z"
    outcomes = []
    for stamp in (good, None):
        event = decode_spot(level3_frame(stamp, [good, bad]))
        assert isinstance(event, Reject) and event.reason == "bad_timestamp", event
        outcomes.append(event.detail)
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("text", ["1E-8", "0.00010000", "-0.0", "1e+2", "93704.2", "4.0",
                                  "12345678901234567890.123456789012345678"])
def test_non_integer_numbers_keep_their_exact_text(text: str) -> None:
    event = decode_spot(book_frame("2026-09-21T14:13:20.000906Z", price=text, qty=text))
    assert isinstance(event, BookMessage), event
    level = event.data[0].asks[0]
    assert type(level.price) is str and level.price == text
    assert type(level.qty) is str and level.qty == text


def test_integer_numbers_stay_ints() -> None:
    event = decode_spot(book_frame("2026-09-21T14:13:20.000906Z", price="93704", qty="0"))
    level = event.data[0].asks[0]  # type: ignore[union-attr]
    assert level.price == 93704 and type(level.price) is int
    assert level.qty == 0 and type(level.qty) is int
