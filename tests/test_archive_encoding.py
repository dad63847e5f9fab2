"""Parquet encodings: schema hints (rolling files) and measured choices (compacted files).

Encodings are physical only: every reader must see exactly the rows that were written."""

import os
import random
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recorder.archive.maintenance import compact_archive
from recorder.archive.schema import SchemaError, load_schemas
from recorder.archive.store import ArchiveStore, choose_encodings, parquet_encodings
from recorder.ingest import ingest
from tests.archive_helpers import make_sim_record

_PARQUET_NAME = {"DICTIONARY": "RLE_DICTIONARY"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(rolling archive, compacted copy) of one sim stream."""
    base = tmp_path_factory.mktemp("enc")
    rolling = base / "rolling"
    ingest([make_sim_record(base / "s.zst", messages=3000, pairs=3, seed=11)], rolling,
           roll_rows=1000)
    compacted = base / "compacted"
    shutil.copytree(rolling, compacted)
    compact_archive(compacted, include_latest_day=True)
    return rolling, compacted


def _encodings(path: Path) -> dict[str, set[str]]:
    meta = pq.ParquetFile(path).metadata
    out: dict[str, set[str]] = {}
    for i in range(meta.num_row_groups):
        for j in range(meta.num_columns):
            col = meta.row_group(i).column(j)
            out.setdefault(col.path_in_schema, set()).update(col.encodings)
    return out


def test_schema_encoding_hint_must_fit_the_type(tmp_path):
    src = Path(__file__).resolve().parents[1] / "schemas" / "level3.toml"
    text = src.read_text("utf-8")
    assert 'encoding = "DELTA_LENGTH_BYTE_ARRAY"' in text
    (tmp_path / "level3.toml").write_text(
        text.replace('encoding = "PLAIN"', 'encoding = "DELTA_LENGTH_BYTE_ARRAY"'), "utf-8")
    with pytest.raises(SchemaError, match="does not fit"):
        load_schemas(tmp_path)
    (tmp_path / "level3.toml").write_text(
        text.replace('encoding = "PLAIN"', 'encoding = "GORILLA"'), "utf-8")
    with pytest.raises(SchemaError, match="does not fit"):
        load_schemas(tmp_path)


def test_rolling_files_follow_the_schema_hints(pair):
    rolling, _ = pair
    schema = load_schemas()["level3"]
    kwargs = parquet_encodings(schema.table({"recv_ns": [1], "symbol": ["X"], "order_id": ["O"]}))
    assert kwargs["column_encoding"]["ts_ns"] == "PLAIN"
    assert kwargs["column_encoding"]["order_id"] == "DELTA_LENGTH_BYTE_ARRAY"
    assert "symbol" in kwargs["use_dictionary"]
    files = ArchiveStore(rolling).files("level3")
    assert files
    for f in files:
        enc = _encodings(f)
        assert "DELTA_LENGTH_BYTE_ARRAY" in enc["order_id"]
        assert "RLE_DICTIONARY" not in enc["order_id"] and "RLE_DICTIONARY" not in enc["ts_ns"]


def test_choose_encodings_measures_each_column():
    rng = random.Random(3)
    n = 20_000
    table = pa.table({
        "recv_ns": pa.array([1_700_000_000_000_000_000 + i * 1_000 for i in range(n)],
                            pa.int64()),
        "checksum": pa.array([rng.getrandbits(32) for _ in range(n)], pa.uint32()),
        "level": pa.array([rng.choice((5, 7, 11)) for _ in range(n)], pa.int64()),
        "ident": pa.array(["".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ234567", k=17))
                           for _ in range(n)], pa.string()),
        "side": pa.array([rng.getrandbits(1) for _ in range(n)], pa.int8()),
        "overflow": pa.nulls(n, pa.string()),
    })
    chosen = choose_encodings(table, compression_level=9, trial_rows=4096)
    assert chosen["recv_ns"] == "DELTA_BINARY_PACKED"  # constant step: deltas are ~free
    assert chosen["level"] == "DICTIONARY"  # three values: 2-bit indices
    assert chosen["checksum"] != "DICTIONARY"  # random: a dictionary only adds bytes
    assert chosen["ident"] != "DICTIONARY"  # all distinct
    assert chosen["side"] == "DICTIONARY" and chosen["overflow"] == "DICTIONARY"  # not tried


def test_compacted_files_are_smaller_and_read_back_exactly(pair):
    rolling, compacted = pair
    spark_free = ("level3", "book", "trades")
    for ds in spark_free:
        before = ArchiveStore(rolling).files(ds)
        after = ArchiveStore(compacted).files(ds)
        assert len(after) == 1 and after[0].name.startswith("compact-")
        want = pa.concat_tables([pq.read_table(f) for f in before])
        want_rows = sorted(map(repr, want.cast(pa.schema(
            [pa.field(f.name, pa.string() if pa.types.is_dictionary(f.type) else f.type)
             for f in want.schema])).to_pylist()))
        path = str(after[0])
        got_pa = pq.read_table(path)
        names = got_pa.schema.names
        got_duck = duckdb.sql(f"SELECT {', '.join(names)} FROM read_parquet('{path}', "
                              f"hive_partitioning=false)").to_arrow_table()
        got_pl = pl.read_parquet(path).to_arrow()
        for got in (got_pa, got_duck, got_pl):
            rows = [dict(zip(names, r)) for r in zip(*[got.column(c).to_pylist()
                                                       for c in names])]
            assert sorted(map(repr, rows)) == want_rows, ds
        assert (sum(os.path.getsize(f) for f in after)
                < sum(os.path.getsize(f) for f in before)), ds


def test_compacted_files_use_the_measured_encodings(pair):
    _, compacted = pair
    path = ArchiveStore(compacted).files("level3")[0]
    table = pq.read_table(path)
    chosen = choose_encodings(table, compression_level=15)
    enc = _encodings(path)
    for name, e in chosen.items():
        assert _PARQUET_NAME.get(e, e) in enc[name], (name, e, enc[name])
    assert chosen["checksum"] != "DICTIONARY" and chosen["order_id"] != "DICTIONARY"


def test_spark_reads_compacted_files_exactly(pair):
    """Spark's Parquet reader decodes every measured encoding (DELTA_LENGTH_BYTE_ARRAY,
    DELTA_BYTE_ARRAY, PLAIN, DELTA_BINARY_PACKED): per-column sums/lengths match pyarrow."""
    pytest.importorskip("pyspark")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java runtime for Spark local mode")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    _, compacted = pair
    spark = (SparkSession.builder.master("local[1]").appName("recorder-encoding-test")
             .config("spark.driver.host", "127.0.0.1").config("spark.ui.enabled", "false")
             .getOrCreate())
    try:
        for ds in ("level3", "book", "trades", "checkpoints"):
            path = ArchiveStore(compacted).files(ds)[0]
            table = pq.read_table(path)
            df = spark.read.parquet(str(path))
            for name in ("recv_ns", "ts_ns", "price", "qty", "checksum", "trade_id"):
                if name in table.schema.names:
                    want = sum(v for v in table.column(name).to_pylist() if v is not None)
                    got = df.selectExpr(f"sum(cast({name} AS decimal(38, 0)))").collect()[0][0]
                    assert int(got) == want, (ds, name)
            for name in ("order_id", "book"):
                if name in table.schema.names:
                    want = sorted(bytes(v) if isinstance(v, bytes) else v
                                  for v in table.column(name).to_pylist())
                    got = sorted(bytes(r[0]) if isinstance(r[0], bytearray) else r[0]
                                 for r in df.select(name).collect())
                    assert got == want, (ds, name)
    finally:
        spark.stop()


def test_compacted_hint_applies_to_compacted_files_only():
    schema = load_schemas()["book"]
    table = schema.table({"recv_ns": [1, 2], "symbol": ["X", "X"], "price": [5, 6]})
    rolling = parquet_encodings(table)
    compacted = parquet_encodings(table, compacted=True)
    assert "price" in rolling["use_dictionary"]
    assert compacted["column_encoding"]["price"] == "DELTA_BINARY_PACKED"
    for kwargs in (rolling, compacted):  # the plain hints hold in both
        assert kwargs["column_encoding"]["recv_ns"] == "DELTA_BINARY_PACKED"
        assert kwargs["column_encoding"]["checksum"] == "PLAIN"


def test_a_column_without_hint_is_dictionary_encoded_whatever_its_name():
    """Encodings come from the schema file, not from column names."""
    import pyarrow as pa

    table = pa.table({"recv_ns": pa.array([1, 2], pa.int64()),
                      "checksum": pa.array([3, 4], pa.uint32())})
    kwargs = parquet_encodings(table, compacted=True)
    assert kwargs["column_encoding"] == {} and kwargs["use_dictionary"] == ["recv_ns", "checksum"]
