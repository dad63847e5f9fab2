"""The pure parts of ``recorder replay``: frame routing, coverage, the clock, snapshot
rendering, and the market's routing rules over a hand-made journal (no sockets, no archive)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from recorder.replay.catalog import Catalog
from recorder.replay.clock import ReplayClock
from recorder.replay.coverage import Coverage, EpochRow, Interval, epoch_intervals, subtract_gaps
from recorder.replay.frames import Route, route_futures, route_spot, split_spot
from recorder.replay.market import ReplayMarket, refusal
from recorder.replay.source import VenueFrame, segment_created_ns

# ------------------------------------------------------------------ frames

BOOK = (b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":96283.8,'
        b'"qty":0.00000000}],"asks":[],"checksum":116298275,"timestamp":"2026-12-07T15:20:20.141780Z"}]}')
TRADES = (b'{"channel":"trade","type":"update","data":[{"symbol":"XLM/USD","side":"sell",'
          b'"price":0.285005,"qty":3324.91024118,"ord_type":"market","trade_id":5406039,'
          b'"timestamp":"2026-12-07T15:20:20.148855Z"},{"symbol":"ETH/USD","side":"buy",'
          b'"price":1794.10,"qty":0.50000000,"ord_type":"limit","trade_id":77,'
          b'"timestamp":"2026-12-07T15:20:20.148855Z"},{"symbol":"XLM/USD","side":"sell",'
          b'"price":0.285005,"qty":27.01420076,"ord_type":"market","trade_id":5406040,'
          b'"timestamp":"2026-12-07T15:20:20.148855Z"}]}')


def test_route_spot_names_channel_symbols_and_ids() -> None:
    assert route_spot(BOOK) == Route("book", ("BTC/USD",), False)
    snap = b'{"channel":"level3","type":"snapshot","data":[{"symbol":"ADA/USD","checksum":1,"bids":[],"asks":[]}]}'
    assert route_spot(snap) == Route("level3", ("ADA/USD",), True)
    ohlc = (b'{"channel":"ohlc","type":"update","timestamp":"2026-12-07T15:20:20.148855699Z","data":'
            b'[{"symbol":"XLM/USD","open":0.285005,"interval":5}]}')
    assert route_spot(ohlc) == Route("ohlc", ("XLM/USD",), False, interval=5)
    assert route_spot(b'{"channel":"instrument","type":"update","data":{"assets":[],"pairs":[]}}') \
        == Route("instrument", (), False)
    mixed = route_spot(TRADES)
    assert mixed == Route("trade", ("XLM/USD", "ETH/USD"), False, last_id=5406040, mixed=True)


@pytest.mark.parametrize("frame", [
    b'{"channel":"heartbeat"}',
    b'{"method":"pong","req_id":2,"time_in":"x","time_out":"y"}',
    b'{"method":"subscribe","result":{"channel":"book","symbol":"BTC/USD"},"success":true}',
    b'{"channel":"status","data":[{"system":"online"}],"type":"update"}',
    b'{"channel":"book","type":"update","data":[{"bids":[]}]}',  # no symbol
    b'{"channel":"ohlc","type":"update","data":[{"symbol":"A/B"}]}',  # no interval
    b'{"channel":"book","type":"update","data":[]}',
    b'not json', b'[1,2]', b'{"channel":"book","type":"update","data":[{"symbol":7}]}',
])
def test_route_spot_ignores_what_is_not_market_data(frame: bytes) -> None:
    assert route_spot(frame) is None


def test_split_keeps_every_byte_of_the_kept_events_and_the_envelope() -> None:
    xlm = split_spot(TRADES, "XLM/USD")
    assert xlm == (b'{"channel":"trade","type":"update","data":[{"symbol":"XLM/USD","side":"sell",'
                   b'"price":0.285005,"qty":3324.91024118,"ord_type":"market","trade_id":5406039,'
                   b'"timestamp":"2026-12-07T15:20:20.148855Z"},{"symbol":"XLM/USD","side":"sell",'
                   b'"price":0.285005,"qty":27.01420076,"ord_type":"market","trade_id":5406040,'
                   b'"timestamp":"2026-12-07T15:20:20.148855Z"}]}')
    eth = split_spot(TRADES, "ETH/USD")
    assert eth is not None and b'"price":1794.10,"qty":0.50000000' in eth
    assert route_spot(eth) == Route("trade", ("ETH/USD",), False, last_id=77)
    assert split_spot(TRADES, "BTC/USD") is None
    assert split_spot(b"{broken", "BTC/USD") is None


def test_route_futures() -> None:
    delta = b'{"feed":"book","product_id":"PF_XBTUSD","side":"buy","seq":109631856,"price":96621,"qty":0,"timestamp":1}'
    assert route_futures(delta) == Route("book", ("PF_XBTUSD",), False, last_id=109631856)
    snap = b'{"feed":"book_snapshot","product_id":"pf_ethusd","timestamp":1,"seq":5,"bids":[],"asks":[]}'
    assert route_futures(snap) == Route("book", ("PF_ETHUSD",), True, last_id=5)
    trades = (b'{"feed":"trade_snapshot","product_id":"PF_XBTUSD","trades":[{"feed":"trade","seq":9},'
              b'{"feed":"trade","seq":7}]}')
    assert route_futures(trades) == Route("trade", ("PF_XBTUSD",), True, last_id=9)
    assert route_futures(b'{"event":"subscribed","feed":"book","product_ids":["PF_XBTUSD"]}') is None
    assert route_futures(b'{"feed":"heartbeat","time":1}') is None
    assert route_futures(b'{"feed":"ticker","product_id":"PF_XBTUSD","bid":1}') == Route(
        "ticker", ("PF_XBTUSD",), False)
    assert route_futures(b"\xff") is None


def test_segment_creation_time_from_its_name() -> None:
    assert segment_created_ns("2026-12-07/demo-01796656820283087309-6713-1796656820282818520-0001.kjz") \
        == 1796656820283087309
    assert segment_created_ns("odd.kjz") is None


# ------------------------------------------------------------------ coverage


def iv(start: int, end: int, *, root: int = 0, conn: int = 1, epoch: int | None = None,
       depth: int | None = 10, begins: bool = True) -> Interval:
    return Interval(start, end, root, conn, start if epoch is None else epoch, depth, begins)


def test_gaps_take_their_open_interior_out_of_an_interval() -> None:
    whole = iv(100, 200)
    assert subtract_gaps(whole, [(130, 160)]) == [iv(100, 130), iv(160, 200, epoch=100, begins=False)]
    assert subtract_gaps(whole, [(50, 120)]) == [iv(120, 200, epoch=100, begins=False)]
    assert subtract_gaps(whole, [(150, None)]) == [iv(100, 150)]
    assert subtract_gaps(whole, [(140, 141)]) == [whole]  # no time strictly inside
    assert subtract_gaps(whole, [(10, 20), (300, None)]) == [whole]
    assert subtract_gaps(whole, [(90, None)]) == []


def test_epoch_intervals_follow_the_book_validity_rule() -> None:
    rows = [EpochRow(100, 100, 180, "checksum_mismatch", 25, 1),
            EpochRow(200, 200, 260, "resnapshot", 25, 1),
            EpochRow(300, 300, 390, "disconnect", 25, 2)]
    assert epoch_intervals(rows, 3) == [
        Interval(100, 179, 3, 1, 100, 25, True), Interval(200, 299, 3, 1, 200, 25, True),
        Interval(300, 390, 3, 2, 300, 25, True)]


def test_coverage_matches_a_frame_to_its_recording_connection() -> None:
    cov = Coverage({("book", "X"): [iv(100, 200, root=0, conn=1), iv(150, 400, root=1, conn=9),
                                    iv(500, 600, root=0, conn=2)]})
    assert cov.frame("book", "X", 0, 1, 180) == iv(100, 200, root=0, conn=1)
    assert cov.frame("book", "X", 1, 9, 180) == iv(150, 400, root=1, conn=9)
    assert cov.frame("book", "X", 0, 9, 180) is None  # conn 9 is root 1's
    assert cov.frame("book", "X", 0, 1, 250) is None  # after its interval
    assert cov.at("book", "X", 180) == iv(150, 400, root=1, conn=9)  # latest start
    assert cov.at("book", "X", 450) is None and cov.at("book", "Y", 1) is None
    assert cov.first_after("book", "X", 450) == iv(500, 600, root=0, conn=2)
    assert cov.depths("book", "X") == {10}


# ------------------------------------------------------------------ clock


class Wall:
    def __init__(self) -> None:
        self.t = 1_000

    def __call__(self) -> int:
        return self.t


def test_paced_clock_runs_at_its_speed_without_held_time() -> None:
    wall = Wall()
    clock = ReplayClock(10_000, 50_000, speed=2.0, wall_ns=wall)
    assert clock.target() == 10_000 and clock.now_ns() == 10_000  # not started
    clock.start()
    wall.t += 1_000
    assert clock.target() == 12_000
    clock.hold()
    wall.t += 5_000  # a rebuild: replay time does not move
    assert clock.target() == 12_000
    clock.release()
    wall.t += 500
    assert clock.target() == 13_000
    wall.t += 10**9
    assert clock.target() == 50_000  # never past the end
    with pytest.raises(ValueError):
        ReplayClock(1, 2, speed=0.0, wall_ns=wall)
    with pytest.raises(ValueError):
        ReplayClock(2, 1, speed=1.0, wall_ns=wall)


def test_max_speed_clock_is_the_last_frame_served() -> None:
    clock = ReplayClock(10, 99, speed=None, wall_ns=Wall())
    clock.start()
    assert clock.max_speed and clock.target() is None
    clock.advance_to(40)
    clock.advance_to(30)  # never backwards
    assert clock.now_ns() == 40
    clock.advance_to(500)
    assert clock.now_ns() == 99


# ------------------------------------------------------------------ rendering


def test_rendered_snapshots_decode_and_carry_the_books_checksum() -> None:
    from recorder.book.l2 import L2Book
    from recorder.book.l3 import L3Book
    from recorder.protocol.futures import decode_futures
    from recorder.protocol.numbers import token_to_text
    from recorder.protocol.spot import decode_spot
    from recorder.replay import render

    book = L2Book("BTC/USD", 25, 1, 8)
    bids = [(962838, 50_000_000), (962830, 100_000)]
    asks = [(962840, 12_345_678)]
    frame = render.book_snapshot("BTC/USD", bids, asks, price_precision=1, qty_precision=8,
                                 checksum=0, ts_ns=1_796_656_820_141_780_123)
    msg = decode_spot(frame)
    result = book.apply("snapshot", msg.data[0])
    expected = book.checksum()
    frame = render.book_snapshot("BTC/USD", bids, asks, price_precision=1, qty_precision=8,
                                 checksum=expected, ts_ns=1_796_656_820_141_780_123)
    assert '"qty":0.50000000' in frame and '"timestamp":"2026-12-07T15:20:20.141780Z"' in frame
    assert L2Book("BTC/USD", 25, 1, 8).apply("snapshot", decode_spot(frame).data[0]).match is True
    assert result.match is False  # the checksum field is checked: 0 is wrong

    orders = [render.L3Order("OAAAAA-AAAAA-AAAAAA", 5000, 100, 1_796_656_820_000_000_001)]
    l3 = L3Book("ADA/USD", 10, 4, 2)
    probe = render.level3_snapshot("ADA/USD", orders, [], price_precision=4, qty_precision=2,
                                   checksum=0, ts_ns=None)
    l3.apply("snapshot", decode_spot(probe).data[0])
    good = render.level3_snapshot("ADA/USD", orders, [], price_precision=4, qty_precision=2,
                                  checksum=l3.checksum(), ts_ns=None)
    assert '"limit_price":0.5000,"order_qty":1.00,"timestamp":"2026-12-07T15:20:20.000000001Z"' in good
    assert L3Book("ADA/USD", 10, 4, 2).apply("snapshot", decode_spot(good).data[0]).match is True

    fut = render.futures_book_snapshot("PF_XBTUSD", [("96621", "0.4800")], [("96622.5", "1")],
                                       seq=42, timestamp_ms=1_796_656_820_495)
    snap = decode_futures(fut)
    assert snap.seq == 42 and snap.timestamp_ms == 1_796_656_820_495
    assert [(token_to_text(lv.price), token_to_text(lv.qty)) for lv in snap.bids + snap.asks] \
        == [("96621", "0.4800"), ("96622.5", "1")]
    trades = render.trade_snapshot("XLM/USD", [render.SpotTrade(7, 1_796_656_820_148_855_000,
                                                                "sell", "market", 285005, 6,
                                                                2701420076, 8)])
    assert json.loads(trades)["data"][0] == {
        "symbol": "XLM/USD", "side": "sell", "price": 0.285005, "qty": 27.01420076,
        "ord_type": "market", "trade_id": 7, "timestamp": "2026-12-07T15:20:20.148855Z"}
    assert '"price":0.285005,"qty":27.01420076' in trades


# ------------------------------------------------------------------ the market's rules


class FakeRebuilder:
    """Rebuilt snapshots as recognisable text; records what was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[Any, ...]] = []

    def spot_book(self, channel: str, symbol: str, interval: Interval, cut: int) -> str:
        self.asked.append((channel, symbol, interval.start_ns, cut))
        return f"REBUILT {channel} {symbol} @{cut}"

    def futures_book_frame(self, product: str, interval: Interval, cut: int) -> str:
        return f"REBUILT futures {product} @{cut}"

    def spot_trades(self, symbol: str, cut: int) -> list[Any]:
        return []

    def last_trade_id(self, symbol: str, cut: int) -> int | None:
        return None


def snap(symbol: str, n: int) -> bytes:
    return (f'{{"channel":"book","type":"snapshot","data":[{{"symbol":"{symbol}","bids":[],'
            f'"asks":[],"checksum":{n}}}]}}').encode()


def upd(symbol: str, n: int) -> bytes:
    return (f'{{"channel":"book","type":"update","data":[{{"symbol":"{symbol}","bids":[],'
            f'"asks":[],"checksum":{n}}}]}}').encode()


def trade(symbol: str, *ids: int, kind: str = "update") -> bytes:
    items = ",".join(f'{{"symbol":"{symbol}","trade_id":{i}}}' for i in ids)
    return f'{{"channel":"trade","type":"{kind}","data":[{items}]}}'.encode()


def market(frames: list[VenueFrame], intervals: list[Interval], **extra: Any) -> tuple[ReplayMarket, FakeRebuilder]:
    catalog = Catalog(start_ns=0, end_ns=10_000, coverage=Coverage({("book", "X"): intervals}),
                      **extra)
    rb = FakeRebuilder()
    return ReplayMarket(catalog, rb, iter(frames)), rb  # type: ignore[arg-type]


def frames_of(dispatches: list[Any]) -> list[tuple[Any, ...]]:
    return [(d.frame if isinstance(d.frame, str) else d.frame.decode(), d.snapshot, d.resync)
            for d in dispatches]


def test_book_frames_flow_only_inside_coverage_and_a_gap_ends_with_ack_and_fresh_snapshot() -> None:
    f = [VenueFrame(100, 0, 1, "spot", snap("X", 1)), VenueFrame(150, 0, 1, "spot", upd("X", 2)),
         VenueFrame(150, 1, 1, "spot", upd("X", 2)),  # root 1's copy (same conn id, other root)
         VenueFrame(180, 0, 1, "spot", upd("X", 3)),
         VenueFrame(250, 0, 1, "spot", upd("X", 4)),  # the bad frame: outside coverage
         VenueFrame(300, 0, 1, "spot", snap("X", 5)), VenueFrame(350, 0, 1, "spot", upd("X", 6)),
         VenueFrame(550, 0, 1, "spot", upd("X", 7)), VenueFrame(560, 0, 1, "spot", upd("X", 8))]
    m, rb = market(f, [iv(100, 200), iv(300, 400), iv(500, 600, epoch=300, begins=False)])
    got = m.subscribe("spot", ("book", "X", 10), snapshot=True)
    assert got.frames == [] and got.others == []  # nothing covered at the cut (0)
    out = frames_of(m.advance(None))
    assert out == [(snap("X", 1).decode(), False, False), (upd("X", 2).decode(), False, False),
                   (upd("X", 3).decode(), False, False), (snap("X", 5).decode(), False, True),
                   (upd("X", 6).decode(), False, False),
                   ("REBUILT book X @550", False, True),  # resumed mid-epoch: rebuilt
                   (upd("X", 8).decode(), False, False)]
    assert m.stats.frames_withheld == 2 and m.exhausted and m.cut_ns == 10_000
    assert rb.asked == [("book", "X", 500, 550)]


def test_a_subscription_mid_interval_gets_the_rebuilt_book_and_only_later_frames() -> None:
    f = [VenueFrame(100, 0, 1, "spot", snap("X", 1)), VenueFrame(150, 0, 1, "spot", upd("X", 2)),
         VenueFrame(160, 0, 1, "spot", upd("X", 3)), VenueFrame(180, 0, 1, "spot", upd("X", 4)),
         VenueFrame(900, 0, 1, "spot", upd("X", 5))]
    m, _ = market(f, [iv(100, 200)])
    assert m.advance(160) == [] and m.cut_ns == 160  # nobody subscribed yet
    got = m.subscribe("spot", ("book", "X", 10), snapshot=True)
    assert got.frames == ["REBUILT book X @160"]
    assert frames_of(m.advance(190)) == [(upd("X", 4).decode(), False, False)]
    second = m.subscribe("spot", ("book", "X", 10), snapshot=True)
    assert second.frames == ["REBUILT book X @190"] and second.others == []
    m.advance(None)
    late = m.subscribe("spot", ("book", "X", 10), snapshot=True)
    assert late.frames == [] and m.cut_ns == 10_000  # the end: no valid book there


def test_budgeted_steps_stop_between_receive_times() -> None:
    f = [VenueFrame(t, 0, 1, "spot", upd("X", t)) for t in (110, 120, 120, 120, 130)]
    m, _ = market([VenueFrame(100, 0, 1, "spot", snap("X", 0)), *f], [iv(100, 200)])
    m.subscribe("spot", ("book", "X", 10), snapshot=True)
    assert len(m.advance(None, budget=3)) == 5 and m.cut_ns == 120  # the three at 120 together
    assert len(m.advance(125)) == 0 and m.cut_ns == 125
    assert len(m.advance(None, budget=3)) == 1 and m.exhausted


def test_trades_are_deduplicated_by_id_and_recorded_snapshots_are_flagged() -> None:
    f = [VenueFrame(100, 0, 1, "spot", trade("Y", 5, 6)),
         VenueFrame(100, 0, 2, "spot", trade("Y", 5, 6)),  # a second connection's copy
         VenueFrame(120, 0, 2, "spot", trade("Y", 4, 5, 6, 7, kind="snapshot")),
         VenueFrame(130, 0, 1, "spot", trade("Y", 8)),
         VenueFrame(140, 0, 1, "spot", TRADES.replace(b"XLM/USD", b"Y"))]
    m, _ = market(f, [], trades={"Y"})
    got = m.subscribe("spot", ("trade", "Y"), snapshot=False)
    assert got.frames == []
    out = frames_of(m.advance(None))
    assert out[:3] == [(trade("Y", 5, 6).decode(), False, False),
                       (trade("Y", 4, 5, 6, 7, kind="snapshot").decode(), True, False),
                       (trade("Y", 8).decode(), False, False)]
    split = out[3][0]
    assert json.loads(split)["data"][0]["trade_id"] == 5406039 and '"ETH/USD"' not in split
    assert m.stats.duplicates_skipped == 1 and m.stats.frames_split == 1


def test_unsubscribed_keys_cost_nothing_and_refusals_name_the_reason() -> None:
    f = [VenueFrame(100, 0, 1, "spot", snap("X", 1))]
    m, _ = market(f, [iv(100, 200)], ohlc={("X", 1)})
    assert m.advance(None) == [] and m.stats.frames_read == 1 and m.stats.frames_routed == 0
    cat = m.catalog
    assert refusal(cat, "spot", ("book", "X", 10)) is None
    assert refusal(cat, "spot", ("book", "X", 25)) == "depth"
    assert refusal(cat, "spot", ("level3", "X", 10)) == "symbol"
    assert refusal(cat, "spot", ("ohlc", "X", 5)) == "interval"
    assert refusal(cat, "spot", ("ohlc", "X", 1)) is None
    assert refusal(cat, "spot", ("instrument",)) == "symbol"
    assert refusal(cat, "futures", ("book", "PF_XBTUSD")) == "symbol"
    assert refusal(cat, "spot", ("ticker", "X", "trades")) == "symbol"


def test_route_decoding_is_tolerant_of_hostile_bytes() -> None:
    for junk in (b"", b"{", b'{"channel":"book","type":"update","data":{"symbol":"X"}}',
                 msgspec.json.encode({"channel": "trade", "type": "update",
                                      "data": [{"symbol": "A", "trade_id": "x"}]})):
        assert route_spot(junk) is None


def test_a_second_recording_of_the_same_book_takes_over_only_when_the_first_ends() -> None:
    """Two roots recorded the book at once (redundant capture): the replay serves one of
    them while it lasts, then switches to the other with an ack and a rebuilt snapshot."""
    f = [VenueFrame(100, 0, 1, "spot", snap("X", 1)), VenueFrame(110, 1, 7, "spot", snap("X", 1)),
         VenueFrame(150, 0, 1, "spot", upd("X", 2)), VenueFrame(151, 1, 7, "spot", upd("X", 2)),
         VenueFrame(200, 0, 1, "spot", upd("X", 3)), VenueFrame(201, 1, 7, "spot", upd("X", 3)),
         VenueFrame(260, 1, 7, "spot", upd("X", 4)), VenueFrame(270, 1, 7, "spot", upd("X", 5))]
    m, _ = market(f, [iv(100, 200, root=0, conn=1), iv(110, 300, root=1, conn=7)])
    m.subscribe("spot", ("book", "X", 10), snapshot=True)
    assert frames_of(m.advance(None)) == [
        (snap("X", 1).decode(), False, False), (upd("X", 2).decode(), False, False),
        (upd("X", 3).decode(), False, False),
        ("REBUILT book X @201", False, True),  # the first ended at 200: the second takes over
        (upd("X", 4).decode(), False, False), (upd("X", 5).decode(), False, False)]
    assert m.stats.duplicates_skipped == 2  # the second's copies at 110 and 151
