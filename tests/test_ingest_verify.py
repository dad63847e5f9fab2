import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from recorder.archive.store import ArchiveStore
from recorder.cli import main
from recorder.ingest import ingest
from recorder.verify import verify_archive
from tests.archive_helpers import make_sim_record


@pytest.fixture(scope="module")
def sim_record(tmp_path_factory):
    return make_sim_record(tmp_path_factory.mktemp("sim") / "s.zst")


def _rows(root: Path, dataset: str) -> list[dict]:
    out = []
    for f in ArchiveStore(root).files(dataset):
        out += pq.read_table(f).to_pylist()
    return out


@pytest.mark.fixtures
def test_real_v2_capture_verifies_510(tmp_path, fixture_file):
    instruments = fixture_file("kraken-data-recorder/instrument_snapshot.json")
    book = fixture_file("python-kraken-sdk/orderbook-v2.json")
    runner = CliRunner()
    r = runner.invoke(main, ["ingest", str(instruments), str(book), "--archive",
                             str(tmp_path / "a"), "--quiet"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["verify", "--archive", str(tmp_path / "a"), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert (report["messages_checked"], report["verified"], report["failed"]) == (510, 510, 0)
    epochs = _rows(tmp_path / "a", "epochs")
    assert epochs[0]["precision_source"] == "instrument"
    assert (epochs[0]["price_precision"], epochs[0]["qty_precision"]) == (1, 8)
    # idempotent: the same inputs again add nothing
    before = sorted(p.name for p in (tmp_path / "a").rglob("*.parquet"))
    r = runner.invoke(main, ["ingest", str(instruments), str(book), "--archive",
                             str(tmp_path / "a"), "--quiet", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["frames"] == 0
    assert sorted(p.name for p in (tmp_path / "a").rglob("*.parquet")) == before


def _tamper_archive(root: Path) -> None:
    """Change one qty in the book dataset (rewriting the file) so checksums no longer match."""
    import pyarrow as pa

    f = ArchiveStore(root).files("book")[0]
    t = pq.read_table(f)
    qty = t.column("qty").to_pylist()
    qty[len(qty) // 2] += 1
    t = t.set_column(t.schema.get_field_index("qty"), "qty", pa.array(qty, pa.int64()))
    pq.write_table(t, f)


def test_sim_stream_ingest_verify_and_tamper_detected(tmp_path, sim_record):
    summary = ingest([sim_record], tmp_path / "a")
    assert summary["frames"] == 3000
    report = verify_archive(tmp_path / "a")
    assert report["failed"] == 0 and report["messages_checked"] > 1000
    assert report["verified"] == report["messages_checked"]
    assert {p["dataset"] for p in report["per"]} == {"book", "level3"}
    for ds in ("level3", "book", "trades", "ohlc", "ticker", "checkpoints", "epochs",
               "liveness"):
        assert _rows(tmp_path / "a", ds), ds
    assert not _rows(tmp_path / "a", "rejects")
    _tamper_archive(tmp_path / "a")
    bad = verify_archive(tmp_path / "a")
    assert bad["failed"] >= 1
    r = CliRunner().invoke(main, ["verify", "--archive", str(tmp_path / "a")])
    assert r.exit_code == 1


def test_readable_by_duckdb_polars_pyarrow(tmp_path, sim_record):
    duckdb = pytest.importorskip("duckdb")
    pl = pytest.importorskip("polars")
    import pyarrow.dataset as ds

    ingest([sim_record], tmp_path / "a")
    glob = str(tmp_path / "a" / "data" / "dataset=level3" / "*" / "*.parquet")
    n_arrow = ds.dataset(str(tmp_path / "a" / "data" / "dataset=level3"),
                         partitioning="hive").count_rows()
    con = duckdb.connect()
    n_duck, max_recv = con.execute(
        f"select count(*), max(recv_ns) from read_parquet('{glob}', hive_partitioning=true)"
    ).fetchall()[0]
    n_pl = pl.scan_parquet(glob).select(pl.len()).collect().item()
    assert n_arrow == n_duck == n_pl > 0
    assert isinstance(max_recv, int)
    # the manifest prunes: files of a dataset with their time range
    man = con.execute(
        f"select file, min_time, max_time from read_parquet("
        f"'{tmp_path / 'a' / '_manifest' / 'manifest.parquet'}') where dataset='level3'"
    ).fetchall()
    assert man and all(lo <= hi for _, lo, hi in man)
    # Spark-relevant logical types: ns times are plain INT64 (no TIMESTAMP(NANOS))
    schema = pq.read_schema(ArchiveStore(tmp_path / "a").files("level3")[0])
    assert str(schema.field("recv_ns").type) == "int64"
    assert schema.metadata[b"dataset"] == b"level3"


def test_bad_input_becomes_rejects(tmp_path):
    lines = [
        b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],'
        b'"asks":[{"price":1.0,"qty":1.0}],"checksum":1,"timestamp":"2025-01-01T00:00:00Z"}]}',
        b"{not json",
        b'{"channel":"nope","data":[]}',
        b'{"channel":"trade","type":"update","data":[{"symbol":"../x\\"\xc3\xa4","side":"buy",'
        b'"price":1e400,"qty":1,"ord_type":"limit","trade_id":1,'
        b'"timestamp":"2025-01-01T00:00:00Z"}]}',
        b'{"channel":"trade","type":"update","data":[{"symbol":"../x","side":"buy",'
        b'"price":"99999999999999999999999","qty":1,"ord_type":"limit","trade_id":2,'
        b'"timestamp":"2025-01-01T00:00:00Z"}]}',
        b"\xff\xfe",
    ]
    src = tmp_path / "bad.jsonl"
    src.write_bytes(b"\n".join(lines))
    ingest([src], tmp_path / "a")
    rejects = _rows(tmp_path / "a", "rejects")
    trades = _rows(tmp_path / "a", "trades")
    reasons = sorted(r["reason"] for r in rejects)
    assert "update_before_snapshot" in reasons and "malformed_json" in reasons
    assert "unknown_message" in reasons
    # every input line is accounted for: a reject row or a data row
    assert len(rejects) + len(trades) == len(lines)
    for t in trades:  # a huge value is kept exactly (overflow text), never truncated
        if t["price"] is None:
            assert json.loads(t["overflow"])["price"] in ("1e400", "99999999999999999999999")
    assert not list((tmp_path / "a").rglob("*x*"))  # hostile symbols never become paths


def test_verify_several_roots(tmp_path, sim_record):
    """A parent of two roots (two ingests), or both roots as repeated --archive: counts are
    summed, each root's report is under ``roots``, a tampered root fails the run; a bad path
    is a one-line error (exit 2)."""
    parent = tmp_path / "archives"
    ingest([sim_record], parent / "w1")
    ingest([sim_record], parent / "w2")
    one = verify_archive(parent / "w1")
    runner = CliRunner()
    for args in (["--archive", str(parent)],
                 ["--archive", str(parent / "w1"), "--archive", str(parent / "w2")]):
        r = runner.invoke(main, ["verify", *args, "--json"])
        assert r.exit_code == 0, r.output
        rep = json.loads(r.output)
        assert rep["messages_checked"] == 2 * one["messages_checked"] > 0
        assert rep["verified"] == 2 * one["verified"] and rep["failed"] == 0
        assert [x["root"] for x in rep["roots"]] == [str(parent / "w1"), str(parent / "w2")]
        assert all(x["messages_checked"] == one["messages_checked"] for x in rep["roots"])
    single = json.loads(runner.invoke(main, ["verify", "--archive", str(parent / "w1"),
                                             "--json"]).output)
    assert "roots" not in single and single["messages_checked"] == one["messages_checked"]
    r = runner.invoke(main, ["verify", "--archive", str(parent)])
    assert r.exit_code == 0 and "root " in r.output, r.output
    _tamper_archive(parent / "w2")
    r = runner.invoke(main, ["verify", "--archive", str(parent), "--json"])
    assert r.exit_code == 1
    rep = json.loads(r.output)
    assert rep["failed"] >= 1 and rep["roots"][0]["failed"] == 0
    assert all(f.get("root") == str(parent / "w2") for f in rep["failures"])
    for bad in (tmp_path / "missing", tmp_path / "empty"):
        if bad.name == "empty":
            bad.mkdir()
        r = runner.invoke(main, ["verify", "--archive", str(bad)])
        assert r.exit_code == 2 and "Error:" in r.output and str(bad) in r.output, r.output
        assert r.exception is None or isinstance(r.exception, SystemExit)
