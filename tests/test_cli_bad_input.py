"""Issue #14 section 4, case by case through the CLI: every bad input gets a clear error or a
reported reject, never a traceback and never silence.

One archive is built from a ``recorder sim`` recording, a small Kraken Futures book stream and
the hostile inputs of the issue (binary, empty and garbage files, symbols such as
``BTC/USD\\u0000``, ``../../etc/passwd`` and SQL text); each test runs one command on it and
asserts what the user is told.
"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from recorder.cli import main
from recorder.query.books import DEFAULT_CHANNEL
from tests.archive_helpers import make_sim_record

T0_MS = 1_735_700_000_000  # futures stream: 2025-01-01T02:53:20Z, after the sim recording
HOSTILE_SYMBOLS = ["BTC/USD\u0000", "../../etc/passwd", "BTC/USD'; DROP TABLE trades; --"]


def run(*args: Any) -> Result:
    """``recorder ARGS`` in-process; fails the test on a traceback."""
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), (
        f"{r.exception!r}\n{r.output[-2000:]}")
    assert "Traceback" not in r.output
    return r


def futures_frames() -> list[dict[str, Any]]:
    """A PF_XBTUSD book (snapshot + 12 deltas, one per second) as ``sim --record`` lines."""
    snap = {"feed": "book_snapshot", "product_id": "PF_XBTUSD", "timestamp": T0_MS,
            "seq": 100, "tickSize": None,
            "bids": [{"price": 34892.5, "qty": 6385}, {"price": 34890.0, "qty": 10}],
            "asks": [{"price": 34911.5, "qty": 20598}, {"price": 34912, "qty": 1.5}]}
    msgs: list[dict[str, Any]] = [snap]
    for k in range(12):
        side = "buy" if k % 2 == 0 else "sell"
        price = 34891 + k / 2 if side == "buy" else 34913 + k
        msgs.append({"feed": "book", "product_id": "PF_XBTUSD", "side": side,
                     "seq": 101 + k, "price": price, "qty": 0.0 if k == 6 else 1 + k / 4,
                     "timestamp": T0_MS + (k + 1) * 1000})
    return [{"recv_ns": (m["timestamp"] + 5) * 1_000_000, "conn": 7, "ep": "futures",
             "frame": json.dumps(m)} for m in msgs]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("badin")
    files = {"sim": make_sim_record(d / "s.zst", messages=1500, pairs=3, seed=5)}
    files["futures"] = d / "futures.jsonl"
    files["futures"].write_text("\n".join(json.dumps(f) for f in futures_frames()))
    rnd = random.Random(14)
    files["binary"] = d / "binary.bin"
    files["binary"].write_bytes(bytes(rnd.randrange(256) for _ in range(4000)))
    files["empty"] = d / "empty.jsonl"
    files["empty"].write_bytes(b"")
    files["garbage"] = d / "garbage.txt"
    files["garbage"].write_text("this is not json\n{oops\n<html>\n")
    files["symbols"] = d / "symbols.jsonl"
    files["symbols"].write_text("\n".join(json.dumps({
        "channel": "trade", "type": "update", "data": [{
            "symbol": s, "side": "buy", "price": 95000.1, "qty": 0.001, "ord_type": "limit",
            "trade_id": 1, "timestamp": "2025-01-01T00:00:00.000001Z"}]}) for s in
        HOSTILE_SYMBOLS))
    return files


@pytest.fixture(scope="module")
def archive(inputs, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("badin-archive") / "a"
    for name in ("sim", "futures"):
        r = run("ingest", inputs[name], "--archive", root, "--quiet")
        assert r.exit_code == 0, r.output
    for name in ("binary", "empty", "garbage", "symbols"):
        run("ingest", inputs[name], "--archive", root, "--quiet")
    return root


# ------------------------------------------------------------------------------ ingest


@pytest.mark.parametrize("name, told", [
    ("binary", "binary.bin: every frame was rejected (not_utf8"),
    ("empty", "empty.jsonl: no frames (empty, or nothing in it could be read)"),
    ("garbage", "garbage.txt: every frame was rejected (malformed_json 3)"),
    ("symbols", "symbols.jsonl: every frame was rejected (bad_symbol 3)"),
])
def test_empty_or_wholly_rejected_inputs_exit_1_with_the_reason(inputs, tmp_path, name, told):
    r = run("ingest", inputs[name], "--archive", tmp_path / "a", "--quiet")
    assert r.exit_code == 1
    assert told in r.stderr
    status = "empty" if name == "empty" else "rejected"
    assert status in r.stdout  # the summary table is printed first
    r = run("ingest", inputs[name], "--archive", tmp_path / "b", "--json")
    summary = json.loads(r.stdout)  # machine output: one JSON object, nothing else
    assert summary["inputs"][0]["status"] == status and r.exit_code == 1


def test_ingest_summary_has_frames_rows_and_rejects(inputs, tmp_path):
    r = run("ingest", inputs["sim"], inputs["garbage"], "--archive", tmp_path / "a",
            "--json")
    assert r.exit_code == 1  # garbage.txt is wholly rejected; the recording is derived
    s = json.loads(r.stdout)
    sim, garbage = s["inputs"]
    assert sim["status"] == "ingested" and sim["frames"] == 1500 and sim["rejects"] == {}
    assert sim["rows"]["book"] > 0 and sim["rows"]["level3"] > 0
    assert garbage["rejects"] == {"malformed_json": 3} and garbage["rejected_frames"] == 3
    assert s["rejects"] == {"malformed_json": 3} and s["rows"]["rejects"] == 3
    r = run("ingest", inputs["sim"], "--archive", tmp_path / "a")  # again: nothing new
    assert r.exit_code == 0 and "already ingested" in r.stdout


def test_strict_makes_any_reject_an_error(inputs, tmp_path):
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(b'{"channel": "heartbeat"}\nnot json\n')
    r = run("ingest", mixed, "--archive", tmp_path / "a", "--quiet")
    assert r.exit_code == 0 and "malformed_json 1" in r.stdout
    r = run("ingest", mixed, "--archive", tmp_path / "b", "--quiet", "--strict")
    assert r.exit_code == 1 and "mixed.jsonl: malformed_json 1 (--strict)" in r.stderr


# ------------------------------------------------------------------------------ verify


def test_verify_reports_the_rejects(archive):
    r = run("verify", "--archive", archive)
    assert r.exit_code == 0, r.output
    line = next(x for x in r.stdout.splitlines() if x.startswith("rejects "))
    assert "bad_symbol 3" in line and "malformed_json 3" in line and "not_utf8" in line
    report = json.loads(run("verify", "--archive", archive, "--json").stdout)
    assert report["rejects_by_reason"]["bad_symbol"] == 3
    assert report["rejects"] == sum(report["rejects_by_reason"].values())


# ------------------------------------------------------------------------------ query


def test_csv_of_the_rejects_table_has_the_raw_bytes_as_hex(archive, inputs):
    r = run("query", "--archive", archive, "--format", "csv",
            "SELECT reason, detail, symbol, raw FROM rejects ORDER BY recv_ns, raw")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    raws = {bytes.fromhex(row["raw"]) for row in rows}
    assert b"this is not json" in raws
    bad = [row for row in rows if row["reason"] == "bad_symbol"]
    assert len(bad) == 3 and all(row["symbol"] == "" for row in bad)
    assert any("'BTC/USD\\x00'" in row["detail"] for row in bad)  # shown escaped


def test_hostile_symbols_are_never_symbols(archive):
    r = run("query", "--archive", archive, "--format", "json",
            "SELECT DISTINCT symbol FROM trades UNION SELECT DISTINCT symbol FROM rejects")
    stored = {row["symbol"] for row in json.loads(r.stdout)}
    assert not stored & set(HOSTILE_SYMBOLS)
    assert {"BTC/USD", "ETH/USD"} <= stored


def test_prices_print_as_kraken_text(archive):
    r = run("query", "--archive", archive,
            "SELECT price, qty FROM futures_book WHERE seq = 100 ORDER BY price")
    assert r.exit_code == 0 and "34892.5" in r.stdout and "34912 " in r.stdout
    assert "000000000" not in r.stdout  # never DECIMAL(38,18) padding


# ------------------------------------------------------------------------------ book


def test_unknown_symbol_lists_close_matches_and_the_known_symbols(archive):
    r = run("book", "NOPE/USD", "--archive", archive, "--at", "2025-01-01T00:00:01Z")
    assert r.exit_code == 3  # a spot pair's book question is on the one default channel
    assert f"unknown symbol NOPE/USD for {DEFAULT_CHANNEL}" in r.stdout
    assert f"known {DEFAULT_CHANNEL} symbols: BTC/USD, ETH/USD" in r.stdout
    r = run("book", "NOPE/USD", "--archive", archive, "--at", "2025-01-01T00:00:01Z",
            "--channel", "level3")
    assert r.exit_code == 3
    assert "unknown symbol NOPE/USD for level3" in r.stdout
    assert "known level3 symbols: BTC/USD, ETH/USD" in r.stdout
    r = run("book", "BTCUSD", "--archive", archive, "--at", "2025-01-01T00:00:01Z",
            "--channel", "book", "--json")
    d = json.loads(r.stdout)
    assert r.exit_code == 3 and d["close_matches"] == ["BTC/USD"]
    assert "BTC/USD" in d["known_symbols"] and "did you mean BTC/USD?" in d["reason"]
    r = run("book", "BTC/USD", "--archive", archive, "--at", "2025-01-01T00:00:01Z",
            "--channel", "futures_book")
    assert "it was recorded on book, level3 (use --channel)" in r.stdout


def test_a_time_outside_the_data_gives_the_range(archive):
    r = run("book", "BTC/USD", "--archive", archive, "--at", "2020-01-01", "--json")
    d = json.loads(r.stdout)
    assert r.exit_code == 3 and d["data_start_ns"] < d["data_end_ns"]
    assert d["channel"] == DEFAULT_CHANNEL
    assert d["reason"].startswith(f"before the first recorded {DEFAULT_CHANNEL} data of "
                                  "BTC/USD: recorded from 2025-01-01T00:00:0")
    r = run("book", "BTC/USD", "--archive", archive, "--at", "2025-06-01", "--clock",
            "receive", "--channel", "level3")
    assert r.exit_code == 3 and "after the last recorded level3 data of BTC/USD" in r.stdout


def test_a_spot_pair_defaults_to_the_api_channel(archive):
    """``recorder book`` without --channel answers on the channel recorder.Archive and the
    SQL macros use (``DEFAULT_CHANNEL``), and the same book as asking for it by name."""
    at = "2025-01-01T00:00:02Z"
    default = json.loads(run("book", "BTC/USD", "--archive", archive, "--at", at,
                             "--json").stdout)
    named = json.loads(run("book", "BTC/USD", "--archive", archive, "--at", at, "--json",
                           "--channel", DEFAULT_CHANNEL).stdout)
    assert default["valid"] and default["channel"] == DEFAULT_CHANNEL
    assert default == named
    l3 = json.loads(run("book", "BTC/USD", "--archive", archive, "--at", at, "--json",
                        "--channel", "level3").stdout)
    assert l3["valid"] and l3["channel"] == "level3" and l3 != default


@pytest.mark.parametrize("at, told", [
    ("2026-13-45T99:00:00Z", "Invalid value for '--at': month 13 is not in 1..12"),
    ("2026-02-30", "Invalid value for '--at': day 30 is not in 1..28 for 2026-02"),
    ("yesterday", "Invalid value for '--at': not a time: 'yesterday'"),
    ("99999999999999999999999", "Invalid value for '--at': '99999999999999999999999' is "
                                "outside the representable range"),
])
def test_a_bad_time_names_the_option(archive, at, told):
    r = run("book", "BTC/USD", "--archive", archive, "--at", at)
    assert r.exit_code == 2 and told in r.output


@pytest.mark.parametrize("symbol", HOSTILE_SYMBOLS)
def test_a_bad_symbol_is_refused_before_any_lookup(archive, symbol):
    r = run("book", symbol, "--archive", archive, "--at", "2025-01-01")
    assert r.exit_code == 2 and "Invalid value for 'SYMBOL'" in r.output
    assert "is not a Kraken symbol" in r.output


def test_futures_book_is_rebuilt(archive):
    at = (T0_MS + 4_500) * 1_000_000
    r = run("book", "PF_XBTUSD", "--archive", archive, "--at", at, "--clock", "receive")
    assert r.exit_code == 0, r.output
    assert "PF_XBTUSD futures book" in r.stdout and "34892.5" in r.stdout
    d = json.loads(run("book", "PF_XBTUSD", "--archive", archive, "--at", at, "--clock",
                       "receive", "--json").stdout)
    assert d["valid"] and d["channel"] == "futures_book" and d["seq"] == 104


# ------------------------------------------------------------------------------ info


def test_info_describes_the_archive(archive):
    r = run("info", "--archive", archive)
    assert r.exit_code == 0, r.output
    for text in ("level3", "futures_book", "spot symbols (3): BTC/USD, ETH/USD",
                 "futures symbols (1): PF_XBTUSD", "rejects ", "bad_symbol 3"):
        assert text in r.stdout, text
    info = json.loads(run("info", "--archive", archive, "--json").stdout)
    (root,) = info["roots"]
    assert root["datasets"]["futures_book"]["rows"] == 16  # 4 snapshot levels + 12 deltas
    assert root["rejects_by_reason"]["bad_symbol"] == 3
    assert run("info", "--archive", archive.parent / "missing").exit_code == 2


# ------------------------------------------------------------------------------ formats


def test_every_output_format_works_on_every_table(archive, tmp_path):
    """table, csv, json, jsonl and parquet for every dataset view (binary, decimal, time and
    empty tables included); JSON is valid and keeps exact decimals as strings."""
    import polars as pl

    from recorder.archive.schema import load_schemas

    for dataset in sorted(load_schemas()):
        sql = f"SELECT * FROM {dataset}"
        n = json.loads(run("query", "--archive", archive, "--format", "json",
                           f"SELECT count(*) AS n FROM {dataset}").stdout)[0]["n"]
        for fmt in ("table", "csv", "json", "jsonl"):
            r = run("query", "--archive", archive, "--format", fmt, "--limit", "5", sql)
            assert r.exit_code == 0, (dataset, fmt, r.output)
            if fmt == "csv":
                assert len(list(csv.DictReader(io.StringIO(r.stdout)))) == n, dataset
            elif fmt == "json":
                rows = json.loads(r.stdout)
                assert len(rows) == n, dataset
                for row in rows:  # decimals are exact strings, never floats
                    for col in ("price", "qty"):
                        assert not isinstance(row.get(col), float), (dataset, row)
            elif fmt == "jsonl":
                lines = r.stdout.splitlines()
                assert len(lines) == n and all(json.loads(x) for x in lines), dataset
            else:
                assert "b'" not in r.stdout and "{'" not in r.stdout, dataset  # no Python reprs
        out = tmp_path / f"{dataset}.parquet"
        r = run("query", "--archive", archive, "--format", "parquet", "-o", out, sql)
        assert r.exit_code == 0 and pl.read_parquet(out).height == n, (dataset, r.output)
    r = run("query", "--archive", archive, "--format", "csv", "-o",
            tmp_path / "no" / "such" / "dir.csv", "SELECT 1")
    assert r.exit_code == 1 and "cannot write" in r.output


def test_decimal_text_is_exact_without_padding():
    from decimal import Decimal

    import polars as pl

    from recorder.query.output import decimal_text, json_rows, text_frame

    values = ["96291.3", "0.001", "100", "0", "-1.5", "0.000000000000000001",
              "99999999999999999999.999999999999999999"]
    df = pl.DataFrame({"p": [Decimal(v) for v in values]}, schema={"p": pl.Decimal(38, 18)})
    assert text_frame(df)["p"].to_list() == values
    assert [r["p"] for r in json_rows(df)] == values
    assert decimal_text(Decimal("1E+3")) == "1000" and decimal_text(Decimal("-0.00")) == "0"


# ------------------------------------------------------------------------------ archives


def test_an_unreadable_manifest_is_one_line_for_every_command(inputs, tmp_path):
    root = tmp_path / "bad"
    (root / "_manifest").mkdir(parents=True)
    (root / "_manifest" / "current.json").write_text("garbage")
    for args in (["ingest", inputs["garbage"], "--archive", root], ["verify", "--archive", root],
                 ["query", "--archive", root, "SELECT 1"], ["info", "--archive", root],
                 ["book", "BTC/USD", "--at", "1", "--archive", root]):
        r = run(*args)
        assert r.exit_code in (1, 2) and r.stderr.startswith("Error: "), (args, r.output)
        assert "malformed manifest" in r.stderr and len(r.stderr.splitlines()) == 1, args


def test_a_busy_archive_is_a_clear_error(inputs, tmp_path):
    from recorder.archive.store import ArchiveStore

    holder = ArchiveStore(tmp_path / "a")
    holder.lock()
    try:
        r = run("ingest", inputs["garbage"], "--archive", tmp_path / "a")
    finally:
        holder.unlock()
    assert r.exit_code == 1 and "another writer holds the archive" in r.stderr
