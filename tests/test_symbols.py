"""Kraken's symbol grammar (issue #14 section 4): every symbol of the real captures is valid;
hostile text is refused with a reason; in the pipeline a bad symbol is a ``bad_symbol`` reject
and never a row's symbol, and a symbol missing from a recorded instrument list is flagged once
with its rows kept."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.frames import Frame
from recorder.pipeline import ListSink, Pipeline
from recorder.pipeline.core import DATASETS
from recorder.pipeline.state import decode_state, encode_state
from recorder.protocol.symbols import MAX_SYMBOL_LENGTH, is_futures_symbol, symbol_problem
from tests.test_fuzz_pipeline import DOCUMENTED_FUTURES, DOCUMENTED_L3, DOCUMENTED_SPOT

T0 = 1_735_689_600_000_000_000

HOSTILE = ["BTC/USD\x00", "../../etc/passwd", "BTC/USD'; DROP TABLE trades; --", "BTC/USD ",
           " BTC/USD", "BTC\tUSD", "BTC/US\u200bD", "BTC/\uff35SD", "\u202eDSU/CTB",
           "A" * (MAX_SYMBOL_LENGTH + 1), "", "BTC/USD/EUR", "BTC\\USD", "/BTC", "BTC/",
           "a..b/USD", 'q"uote/USD', "BTC/USD\n", "%", "*", "PF_XBTUSD;", "nul\x00byte",
           "..", "/", "CON ", "\ud83d\ude00/USD", "x/y\x7f"]


# ------------------------------------------------------------------------------ grammar


def _fixture_symbols(root: Path) -> dict[str, set[str]]:
    """Every symbol-like value of every fixture file, by the grammar it must satisfy."""
    keys = re.compile(r'"(symbol|product_id|product_ids|wsname|altname|pair|id)"\s*:\s*'
                      r'("(?:[^"\\]|\\.)*"|\[[^\]]*\])')
    found: dict[str, set[str]] = {"spot": set(), "futures": set(), "rest": set(),
                                  "asset": set()}
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text("utf-8", errors="replace")
        for key, raw in keys.findall(text):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                continue
            for v in value if isinstance(value, list) else [value]:
                if not isinstance(v, str) or ":" in v or "-" in v:
                    continue  # futures "pair" (XBT:USD), order/fill ids: not symbols
                if "/" in v:
                    found["spot"].add(v)
                elif re.fullmatch(r"[A-Za-z]{2}_.*", v):
                    found["futures"].add(v)
                elif key == "altname":
                    found["rest"].add(v)
    snapshot = root / "kraken-data-recorder" / "instrument_snapshot.json"
    if snapshot.is_file():
        data = json.loads(snapshot.read_text())["data"]
        found["spot"] |= {p["symbol"] for p in data["pairs"]}
        found["asset"] |= {a["id"] for a in data["assets"]}
    return found


@pytest.mark.fixtures
def test_every_symbol_of_the_real_fixtures_is_valid(kraken_fixtures: Path) -> None:
    found = _fixture_symbols(kraken_fixtures)
    assert len(found["spot"]) > 1000 and len(found["futures"]) > 300, {
        k: len(v) for k, v in found.items()}
    assert {"BTC/USD", "1INCH/EUR", "AAPLx/USD", "ETH2.S/ETH", "XBT/USD"} <= found["spot"]
    assert {"PF_XBTUSD", "PI_XBTUSD", "FI_XBTUSD_250627", "pi_xbtusd", "in_xbtusd",
            "PF_AAPLxUSD"} <= found["futures"]
    for kind, symbols in found.items():
        bad = {s: symbol_problem(s, kind) for s in symbols if symbol_problem(s, kind)}
        assert not bad, (kind, bad)
        assert all(symbol_problem(s, "any") is None for s in symbols if kind != "asset")
    assert all(is_futures_symbol(s) for s in found["futures"])
    assert not any(is_futures_symbol(s) for s in found["spot"])


@pytest.mark.parametrize("symbol", HOSTILE)
def test_hostile_symbols_are_refused_with_a_reason(symbol: str) -> None:
    for kind in ("spot", "asset", "futures", "rest", "any"):
        problem = symbol_problem(symbol, kind)  # type: ignore[arg-type]
        assert problem, (kind, symbol)


def test_the_reason_names_what_is_wrong() -> None:
    assert symbol_problem("BTC/USD\x00", "spot") == "contains U+0000 (a control character) at 7"
    assert symbol_problem("../../etc/passwd", "spot") == "contains '..'"
    assert symbol_problem("BTC/USD'; DROP TABLE t", "spot") == "contains U+0020 SPACE at 9"
    assert symbol_problem("BTC/USD'", "spot") == "contains \"'\" at 7"
    assert symbol_problem("BTC\\USD", "spot") == "contains a path separator"
    assert symbol_problem("A" * 40, "spot") == "too long (40 > 32 characters)"
    assert "non-ASCII" in symbol_problem("BTC/\uff35SD", "spot")  # type: ignore[operator]
    assert symbol_problem("PF_XBTUSD", "spot") == (
        "not BASE/QUOTE of ASCII letters and digits (e.g. BTC/USD)")
    assert symbol_problem(7, "spot") == "not a string (int)"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.sampled_from(HOSTILE)))
def test_anything_accepted_is_plain_ascii(text: str) -> None:
    for kind in ("spot", "asset", "futures", "rest", "any"):
        if symbol_problem(text, kind) is None:  # type: ignore[arg-type]
            assert re.fullmatch(r"[A-Za-z0-9._/]{1,32}", text), (kind, text)
            assert ".." not in text and "//" not in text and not text.startswith(("/", "."))


# ------------------------------------------------------------------------------ pipeline

def _with_symbol(frame: bytes, symbol: str, product_id: str | None = None,
                 asset: str | None = None) -> bytes:
    """``frame`` with its spot symbols, futures product ids and asset ids replaced (by
    ``symbol`` unless ``product_id`` / ``asset`` are given), JSON-escaped."""
    def text(value: str) -> bytes:
        return json.dumps(value).encode("utf-8", "surrogatepass")

    pid, aid = text(product_id or symbol), text(asset or symbol)
    frame = re.sub(rb'("symbol"\s*:\s*)"[^"]*"', lambda m: m.group(1) + text(symbol), frame)
    frame = re.sub(rb'("product_id"\s*:\s*)"[^"]*"', lambda m: m.group(1) + pid, frame)
    frame = re.sub(rb'("id"\s*:\s*)"[^"]*"', lambda m: m.group(1) + aid, frame)
    return frame.replace(b'["PI_XBTUSD"]', b"[" + pid + b"]")


def _symbol_values(sink: ListSink) -> set[str]:
    out = set()
    for name, cols in DATASETS.items():
        for col in ("symbol", "product_id"):
            if col in cols and name != "rejects":
                out |= {r[col] for r in sink.rows(name)}
    return out


def _frames(symbol: str, product_id: str | None = None,
            asset: str | None = None) -> list[Frame]:
    frames = []
    for stream, corpus in (("spot", DOCUMENTED_SPOT), ("l3", DOCUMENTED_L3),
                           ("futures", DOCUMENTED_FUTURES)):
        for raw in corpus:
            mutated = _with_symbol(raw, symbol, product_id, asset)
            if mutated != raw:
                frames.append(Frame(recv_ns=T0 + len(frames) * 1000, conn_id=1,
                                    stream=stream, direction="in", payload=mutated))  # type: ignore[arg-type]
    return frames


@pytest.mark.parametrize("symbol", ["BTC/USD\x00", "../../etc/passwd",
                                    "BTC/USD'; DROP TABLE trades; --", "A" * 200, "BTC/\uff35SD"])
def test_a_bad_symbol_is_a_reject_in_every_channel(symbol: str) -> None:
    frames = _frames(symbol)
    assert len(frames) >= 14  # book, level3, trade, ohlc, ticker, instrument, acks, futures
    sink = ListSink()
    p = Pipeline(sink)
    for f in frames:
        p.feed(f)
    p.close()
    assert symbol not in _symbol_values(sink)
    rejects = [r for r in sink.rows("rejects") if r["reason"] == "bad_symbol"]
    assert {r["recv_ns"] for r in rejects} == {f.recv_ns for f in frames}
    assert all(r["symbol"] is None and repr(symbol)[:20] in r["detail"] for r in rejects)
    assert p.reject_counts["bad_symbol"] == len(rejects)


def test_good_symbols_still_become_rows() -> None:
    frames = _frames("ETH/USD", "PF_ETHUSD", "ETH")  # valid symbols: no bad_symbol
    sink = ListSink()
    p = Pipeline(sink)
    for f in frames:
        p.feed(f)
    p.close()
    assert not [r for r in sink.rows("rejects") if r["reason"] == "bad_symbol"]
    assert {"ETH/USD", "PF_ETHUSD"} <= _symbol_values(sink)


def test_bad_symbols_in_rest_and_markers_are_rejects() -> None:
    from recorder.pipeline import markers as mk

    sink = ListSink()
    p = Pipeline(sink)
    depth = (b'{"error":[],"result":{"BTC/USD\\u0000":{"asks":[["1.0","2.0",1700000000]],'
             b'"bids":[["0.9","1.0",1700000000]]}}}')
    p.feed(Frame(recv_ns=T0, conn_id=0, stream="rest", direction="in", payload=depth,
                 meta="GET /0/public/Depth?pair=BTC/USD"))
    marker = mk.marker_frame(mk.Quarantined(channel="book", symbol="../x", reason="test",
                                            until_ns=T0 + 10), T0 + 1, 0)
    p.feed(marker)
    p.close()
    reasons = [(r["stream"], r["reason"]) for r in sink.rows("rejects")]
    assert ("rest", "bad_symbol") in reasons and ("control", "bad_symbol") in reasons
    assert not sink.rows("rest_snapshots") and not sink.rows("gaps")


def _instrument(symbols: list[str]) -> bytes:
    pairs = [{"symbol": s, "base": s.split("/")[0], "quote": "USD", "status": "online",
              "qty_precision": 8, "qty_increment": 1e-08, "price_precision": 1,
              "cost_precision": 5, "marginable": False, "has_index": True, "cost_min": 0.5,
              "tick_size": 0.1, "price_increment": 0.1, "qty_min": 0.0001} for s in symbols]
    return json.dumps({"channel": "instrument", "type": "snapshot",
                       "data": {"assets": [], "pairs": pairs}}).encode()


def _trade(symbol: str, trade_id: int) -> bytes:
    return json.dumps({"channel": "trade", "type": "update", "data": [{
        "symbol": symbol, "side": "buy", "price": 1.5, "qty": 2.0, "ord_type": "limit",
        "trade_id": trade_id, "timestamp": "2025-01-01T00:00:00.000001Z"}]}).encode()


def test_a_symbol_missing_from_the_instrument_list_is_flagged_once_and_kept() -> None:
    sink = ListSink()
    p = Pipeline(sink)
    feed = [_trade("NEW/USD", 1),  # no list yet: nothing to compare with
            _instrument(["BTC/USD"]), _trade("BTC/USD", 1), _trade("NEW/USD", 2),
            _trade("NEW/USD", 3)]
    for i, raw in enumerate(feed):
        p.feed(Frame(recv_ns=T0 + i, conn_id=1, stream="spot", direction="in", payload=raw))
    p.flush()
    flags = [r for r in sink.rows("rejects") if r["stage"] == "flag"]
    assert [(r["reason"], r["symbol"], r["recv_ns"]) for r in flags] == [
        ("unlisted_symbol", "NEW/USD", T0 + 3)]
    assert [r["symbol"] for r in sink.rows("trades")] == ["NEW/USD", "BTC/USD", "NEW/USD",
                                                          "NEW/USD"]
    assert p.flag_counts == {"unlisted_symbol": 1} and p.reject_counts == {}
    # the flag is remembered across a restart (state), and a new listing clears it
    q = Pipeline.from_state(decode_state(encode_state(p.to_state())), sink)
    q.feed(Frame(recv_ns=T0 + 9, conn_id=1, stream="spot", direction="in",
                 payload=_trade("NEW/USD", 4)))
    q.feed(Frame(recv_ns=T0 + 10, conn_id=1, stream="spot", direction="in",
                 payload=_instrument(["BTC/USD", "NEW/USD"])))
    q.feed(Frame(recv_ns=T0 + 11, conn_id=1, stream="spot", direction="in",
                 payload=_trade("OTHER/USD", 1)))
    q.flush()
    flags = [r["symbol"] for r in sink.rows("rejects") if r["stage"] == "flag"]
    assert flags == ["NEW/USD", "OTHER/USD"]


def test_row_counts_follow_the_sink() -> None:
    sink = ListSink()
    p = Pipeline(sink, batch_rows=3)
    for i, raw in enumerate(DOCUMENTED_SPOT + DOCUMENTED_L3):
        p.feed(Frame(recv_ns=T0 + i, conn_id=1, stream="l3" if b"level3" in raw else "spot",
                     direction="in", payload=raw))
    p.close()
    assert p.row_counts() == {name: len(sink.rows(name)) for name in DATASETS
                              if sink.rows(name)}
