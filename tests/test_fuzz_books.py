"""Hostile numbers at the decoder/book boundary (issue #9 item 3), with the fixes they drove.

* Exponent forms the rest of the recorder cannot render (``1E+999999999``) are ``bad_number``
  rejects in the spot and futures decoders (they used to pass the decoders' regex and then
  raise ``NumberError`` half-way through a row in the pipeline, corrupting its buffers).
* A futures book holding integer tokens beyond int64 (the decoder admits up to 38 digits)
  checkpoints them as exact text: msgpack cannot hold them, and a failing checkpoint used to
  make every later pipeline-state commit of the archive fail.
"""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.book.futures import FuturesBook, FuturesBookCheckpoint
from recorder.frames import Frame
from recorder.pipeline import ListSink, Pipeline
from recorder.pipeline.state import decode_state, encode_state
from recorder.protocol import futures as fut
from recorder.protocol import spot as sp
from recorder.protocol.numbers import token_to_text
from recorder.protocol.reject import Reject

T0 = 1_735_689_600_000_000_000
TICKER = (b'{"channel": "ticker", "type": "snapshot", "data": [{"symbol": "BTC/USD", "bid": 0.1,'
          b' "bid_qty": 740.0, "ask": 0.2, "ask_qty": 1.5, "last": 0.15, "volume": 9.5,'
          b' "vwap": %s, "low": 0.09, "high": 0.3, "change": -0.01, "change_pct": -0.17,'
          b' "timestamp": "2023-09-25T09:04:31.742648Z"}]}')
FUT_TICKER = (b'{"feed":"ticker","product_id":"PI_XBTUSD","time":1612270825817,"bid":1,"ask":2,'
              b'"last":1.5,"volume":10,"funding_rate":%s,"markPrice":1.5,"index":1.5,'
              b'"openInterest":5,"change":0,"suspended":false,"tag":"perpetual","pair":"XBT:USD",'
              b'"premium":0,"maturityTime":0}')
UNRENDERABLE = [b"1E+999999999", b"1e400", b"-1e-400", b"9E99", b'"1E+999999999"']
RENDERABLE = [b"1e-8", b"1.5E+3", b"2E-10", b"-3e2"]


@pytest.mark.parametrize("num", UNRENDERABLE)
def test_spot_rejects_unrenderable_exponents(num: bytes) -> None:
    ev = sp.decode_spot(TICKER % num)
    assert isinstance(ev, Reject) and ev.reason == "bad_number", ev


@pytest.mark.parametrize("num", RENDERABLE)
def test_spot_keeps_renderable_exponents_exact(num: bytes) -> None:
    ev = sp.decode_spot(TICKER % num)
    assert isinstance(ev, sp.TickerMessage), ev
    assert token_to_text(ev.data[0].vwap) == token_to_text(num.decode())


def test_futures_rejects_unrenderable_exponents() -> None:
    ok = fut.decode_futures(FUT_TICKER % b"1.2e-05")
    if isinstance(ok, Reject):
        pytest.skip(f"ticker shape not accepted by this decoder version: {ok.detail}")
    for num in UNRENDERABLE[:4]:
        ev = fut.decode_futures(FUT_TICKER % num)
        assert isinstance(ev, Reject) and ev.reason == "bad_number", (num, ev)
    delta = (b'{"feed":"book","product_id":"PI_XBTUSD","side":"sell","seq":4,"price":%s,'
             b'"qty":1,"timestamp":1612269953629}')
    # the delta hot path leaves digits to the book: a typed apply_error, never `internal`
    assert isinstance(fut.decode_futures(delta % b"3.5e4"), fut.FuturesBookDelta)
    sink = ListSink()
    p = Pipeline(sink)
    for i, payload in enumerate([SNAP % (b"34892.5", b"6385"), delta % b"1E+999999999"]):
        p.feed(Frame(recv_ns=T0 + i, conn_id=1, stream="futures", direction="in",
                     payload=payload))
    p.close()
    assert [r["reason"] for r in sink.rows("rejects")] == ["apply_error"]


def test_pipeline_rows_stay_rectangular_with_unrenderable_numbers() -> None:
    sink = ListSink()
    p = Pipeline(sink)
    frames = [Frame(recv_ns=T0 + i, conn_id=1, stream="spot", direction="in",
                    payload=TICKER % n) for i, n in enumerate(UNRENDERABLE + RENDERABLE)]
    frames += [Frame(recv_ns=T0 + 100 + i, conn_id=1, stream="futures", direction="in",
                     payload=FUT_TICKER % n) for i, n in enumerate(UNRENDERABLE + RENDERABLE)]
    for f in frames:
        p.feed(f)
    p.flush()
    for name, cols in sink.data.items():
        assert len({len(v) for v in cols.values()}) == 1, name
    assert not [r for r in sink.rows("rejects") if r["reason"] == "internal"]


SNAP = (b'{"feed":"book_snapshot","product_id":"PI_XBTUSD","timestamp":1612269825817,"seq":3,'
        b'"tickSize":null,"bids":[{"price":%s,"qty":%s}],"asks":[{"price":34911.5,"qty":20598}]}')


@settings(max_examples=60, deadline=None)
@given(price=st.integers(-(10**37), 10**37), qty=st.integers(1, 10**37))
def test_futures_checkpoint_of_huge_integers_round_trips(price: int, qty: int) -> None:
    ev = fut.decode_futures(SNAP % (str(price).encode(), str(qty).encode()))
    if isinstance(ev, Reject):
        return
    book = FuturesBook("PI_XBTUSD")
    book.apply_snapshot(ev)
    cp = book.checkpoint()
    for codec in (msgspec.msgpack, msgspec.json):
        back = codec.decode(codec.encode(cp), type=FuturesBookCheckpoint)
        restored = FuturesBook.restore(back)
        assert restored.checkpoint() == cp
        assert [token_to_text(t) for lv in restored.bids() for t in lv] == \
            [token_to_text(t) for lv in book.bids() for t in lv]


def test_pipeline_state_with_a_huge_futures_level_encodes() -> None:
    """Before the fix: OverflowError from msgpack in every later commit of the archive."""
    p = Pipeline(ListSink())
    p.feed(Frame(recv_ns=T0, conn_id=1, stream="futures", direction="in",
                 payload=SNAP % (b"-99999999999999999999", b"99999999999999999999999")))
    p.flush()
    state = p.to_state()
    again = Pipeline.from_state(decode_state(encode_state(state)), ListSink())
    assert encode_state(again.to_state()) == encode_state(state)


@pytest.mark.parametrize("num", [b"1" * 39, b"-" + b"9" * 39, b"1" * 400])
def test_spot_rejects_integer_tokens_beyond_38_digits(num: bytes) -> None:
    trade = (b'{"channel": "trade", "type": "update", "data": [{"symbol": "BTC/USD", "side": "buy",'
             b' "price": %s, "qty": 1, "ord_type": "limit", "trade_id": 7,'
             b' "timestamp": "2025-01-01T00:00:00.000001Z"}]}')
    ev = sp.decode_spot(trade % num)
    assert isinstance(ev, Reject) and ev.reason == "bad_number", ev
    assert isinstance(sp.decode_spot(trade % (b"9" * 38)), sp.TradeMessage)
    sink = ListSink()
    p = Pipeline(sink)
    p.feed(Frame(recv_ns=T0, conn_id=1, stream="spot", direction="in", payload=trade % num))
    p.flush()
    assert [r["reason"] for r in sink.rows("rejects")] == ["bad_number"]
