"""SQL layer: views generated against schemas/*.toml, exact decimals, bound parameters with
hostile symbols, the `recorder query` / `recorder book` commands, scans with pruning."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

pytest.importorskip("duckdb")
pl = pytest.importorskip("polars")

from click.testing import CliRunner  # noqa: E402

from recorder.archive.schema import load_schemas  # noqa: E402
from recorder.cli import main  # noqa: E402
from recorder.ingest import ingest  # noqa: E402
from recorder.query.api import Archive  # noqa: E402
from tests.archive_helpers import make_sim_record  # noqa: E402

HOSTILE = ["BTC/USD'", "x'; DROP TABLE trades; --", 'q"uote', "ünï/cødé€", "../..", "a\\b",
           "%", "_", "*", "", "$sym", "?"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    d = tmp_path_factory.mktemp("sqlq")
    make_sim_record(d / "s.zst", messages=2500, pairs=3, seed=3)
    lines = [json.dumps({"channel": "trade", "type": "update", "data": [{
        "symbol": s, "side": "buy", "price": 1.5, "qty": 2, "ord_type": "limit",
        "trade_id": 1, "timestamp": "2025-01-01T00:00:00.000001Z"}]}) for s in HOSTILE]
    (d / "hostile.jsonl").write_text("\n".join(lines))
    ingest([d / "s.zst", d / "hostile.jsonl"], d / "a")
    return Archive(d / "a")


def _time_name(col: str) -> str:
    special = {"recv_ns": "recv_time", "ts_ns": "exchange_time"}
    if col in special:
        return special[col]
    stem = col[:-3]
    return stem if stem.endswith("_time") else stem + "_time"


def test_every_dataset_has_a_view_matching_its_schema(archive):
    schemas = load_schemas()
    assert set(archive.datasets) == set(schemas)
    for name, schema in schemas.items():
        view = dict(archive.sql("SELECT column_name, data_type FROM information_schema.columns "
                                "WHERE table_name = ?", [name]).collect().rows())
        assert view, name
        for c in schema.columns:
            assert c.name in view, (name, c.name)
            if c.name.endswith("_ns") and c.type == "int64" and not c.doc.startswith(
                    "Nanoseconds"):
                assert view.get(_time_name(c.name)) == "TIMESTAMP_NS", (name, c.name)
        if "price_scale" in schema.names:
            for col in ("price", "qty"):
                assert view[col] == "DECIMAL(38,18)", (name, col)
                assert view[f"{col}_units"] == "BIGINT", (name, col)
        if "side" in schema.names:
            assert view["side"] == "VARCHAR" and "side_code" in view
        desc = archive.describe(name).collect()
        assert desc.filter(pl.col("column").is_not_null())["doc"].null_count() == 0
    labels = dict(archive.describe("trades").select("column", "labels").collect().rows())
    assert labels["side"] == "0 buy, 1 sell" and labels["symbol"] is None


def test_decimals_are_exact(archive):
    rows = archive.sql("SELECT price, price_units, price_scale, qty, qty_units, qty_scale "
                       "FROM trades WHERE price_units IS NOT NULL").collect().rows()
    assert rows
    for price, pu, ps, qty, qu, qs in rows:
        assert price == Decimal(pu).scaleb(-ps) and qty == Decimal(qu).scaleb(-qs)
    # a value at the int64 limit with 18 decimals survives
    v = archive.sql("SELECT kr_dec(9223372036854775807::BIGINT, 18) AS v").collect().item()
    assert v == Decimal("9.223372036854775807")


def test_hostile_symbols_are_rejects_never_symbols(archive):
    """Every hostile symbol of the input is a ``bad_symbol`` reject (raw kept), not a row."""
    rejects = archive.sql("SELECT reason, symbol, raw FROM rejects").collect().rows()
    bad = [r for r in rejects if r[0] == "bad_symbol"]
    assert len(bad) == len(HOSTILE) and all(sym is None for _, sym, _ in bad)
    stored = set(archive.sql("SELECT DISTINCT symbol FROM trades").collect().to_series().to_list())
    assert not stored & set(HOSTILE)


@pytest.mark.parametrize("sym", HOSTILE)
def test_hostile_symbols_are_bound_parameters(archive, sym):
    n_before = archive.sql("SELECT count(*) FROM trades").collect().item()
    assert archive.sql("SELECT ?::VARCHAR AS v", [sym]).collect().item() == sym  # bound, not spliced
    got = archive.sql("SELECT symbol, price FROM trades WHERE symbol = ?", [sym]).collect()
    assert got.rows() == []
    assert archive.sql("SELECT count(*) FROM trades WHERE symbol = $s", {"s": sym}).collect().item() == 0
    assert archive.trades(sym).collect().height == 0
    assert archive.ohlc("1m", symbols=sym).collect().height == 0
    b = archive.book_at(sym, "2025-01-01T00:00:01Z", channel="book")
    assert not b.valid  # no book data for it: an explicit answer, no error
    res = archive.sql("SELECT valid FROM book_at(?, ?)", [sym, "2025-01-01 00:00:01"]).collect()
    assert res.rows() == [(False,)]
    assert archive.scan("trades", symbols=[sym]).collect().height == 0
    assert archive.sql("SELECT count(*) FROM trades").collect().item() == n_before  # nothing dropped


def test_views_are_usable_for_research_queries(archive):
    sym = archive.sql("SELECT symbol FROM trades_unique GROUP BY symbol "
                      "ORDER BY count(*) DESC LIMIT 1").collect().item()
    (lo, hi), = archive.sql("SELECT min(recv_ns), max(recv_ns) FROM book WHERE symbol = ?",
                            [sym]).collect().rows()
    spread = archive.sql("SELECT * FROM mid_spread(?, ?, ?, every := INTERVAL 1 SECOND, "
                         "clock := 'receive')", [sym, lo + 1, hi]).collect()
    assert spread.height >= 2 and spread["mid"].null_count() == 0
    assert (spread["ask"] > spread["bid"]).all()
    twb = archive.sql("SELECT * FROM trades_with_book(?, ?, ?)", [sym, lo, hi]).collect()
    live = twb.filter(pl.col("source") == "ws_live")
    assert live.height > 0 and live["pre_mid"].null_count() == 0
    ohlc = archive.ohlc("1s", symbols=sym).collect()
    trades = archive.trades(sym).collect()
    assert ohlc["trades"].sum() == trades.height
    assert ohlc["volume"].sum() == trades["qty"].sum()
    life = archive.sql("SELECT * FROM order_lifetimes(?)", [sym]).collect()
    assert life.height > 0 and (life.filter(pl.col("lifetime_s").is_not_null())["lifetime_s"]
                                >= 0).all()
    oid, at = archive.sql("SELECT order_id, first_recv_ns FROM order_lifetimes(?) "
                          "WHERE NOT in_snapshot LIMIT 1", [sym]).collect().row(0)
    q = archive.sql("SELECT * FROM queue_position(?, ?, ?, clock := 'receive')",
                    [sym, oid, at]).collect()
    assert q.height in (0, 1)
    for empty in ("funding_series('PF_XBTUSD')", "basis_series('BTC/USD', 'PF_XBTUSD')"):
        assert archive.sql(f"SELECT * FROM {empty}").collect().height == 0


def test_scan_prunes_with_the_manifest(archive):
    all_files = archive.files("book")
    assert all_files
    assert archive.files("book", start=10**20) == []
    assert archive.files("book", symbols=["NOPE/USD"]) == []
    lf = archive.scan("book", symbols=["BTC/USD"], start="2025-01-01T00:00:01Z",
                      end="2025-01-01T00:00:02Z")
    df = lf.collect()
    assert df.height > 0 and set(df["symbol"].cast(pl.Utf8)) == {"BTC/USD"}
    assert df["recv_ns"].min() >= 1_735_689_601_000_000_000
    assert archive.scan("futures_ticker").collect().height == 0


def test_query_and_book_commands(archive):
    r = CliRunner()
    root = str(archive.root)
    out = r.invoke(main, ["query", "SELECT symbol, count(*) AS n FROM trades WHERE symbol = ? "
                          "GROUP BY ALL", "--param", "x'; DROP TABLE trades; --",
                          "--archive", root, "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == []
    out = r.invoke(main, ["query", "SELECT ?::VARCHAR AS s", "--param", "x'; DROP TABLE t; --",
                          "--archive", root, "--format", "json"])
    assert json.loads(out.output) == [{"s": "x'; DROP TABLE t; --"}]
    out = r.invoke(main, ["query", "SELECT 1 AS a, 'x' AS b", "--archive", root,
                          "--format", "csv"])
    assert out.output.splitlines() == ["a,b", "1,x"]
    out = r.invoke(main, ["query", "SELECT * FROM nope", "--archive", root])
    assert out.exit_code == 2
    sym = "BTC/USD"
    out = r.invoke(main, ["book", sym, "--at", "2025-01-01T00:00:02Z", "--archive", root,
                          "--channel", "book", "--depth", "3", "--json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    assert d["symbol"] == sym and d["channel"] == "book" and d["valid"]
    assert len(d["bids"]) == 3 and Decimal(d["bids"][0]["price"]) < Decimal(d["asks"][0]["price"])
    assert d["checksum"] == d["exchange_checksum"] and isinstance(d["epoch"], int)
    out = r.invoke(main, ["book", sym, "--at", "2025-01-01T00:00:02Z", "--archive", root])
    assert out.exit_code == 0 and "matches" in out.output
    out = r.invoke(main, ["book", sym, "--at", "2024-01-01", "--archive", root, "--json"])
    assert out.exit_code == 3 and json.loads(out.output)["valid"] is False
    out = r.invoke(main, ["book", sym, "--at", "yesterday", "--archive", root])
    assert out.exit_code == 2


def test_recorder_import_stays_light():
    import subprocess
    import sys

    code = ("import sys, recorder; assert 'duckdb' not in sys.modules and "
            "'polars' not in sys.modules; assert recorder.Archive.__name__ == 'Archive'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_stored_code_has_a_label(archive):
    """The row builders write literal codes: each one the archive holds must be a code the
    schema labels (the view shows NULL for an unlabeled code)."""
    checked = 0
    for name, schema in load_schemas().items():
        for c in schema.columns:
            if c.labels:
                bad = archive.sql(f'SELECT DISTINCT "{c.name}_code" FROM "{name}" '
                                  f'WHERE "{c.name}" IS NULL').collect().rows()
                assert bad == [], (name, c.name, bad)
                checked += archive.sql(f'SELECT count(*) FROM "{name}"').collect().rows()[0][0]
    assert checked > 0
