"""The archive layout as Spark sees it: Parquet logical types (always) and Spark local mode
(when pyspark and a Java runtime are installed; skipped otherwise)."""

import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recorder.archive.schema import load_schemas
from recorder.archive.store import ArchiveStore
from recorder.ingest import ingest
from tests.archive_helpers import make_sim_record


@pytest.fixture(scope="module")
def archive_root(tmp_path_factory):
    base = tmp_path_factory.mktemp("spark")
    root = base / "a"
    ingest([make_sim_record(base / "s.zst", messages=1500, pairs=2, seed=2)], root)
    return root


def test_parquet_logical_types_spark_can_read(archive_root):
    """No TIMESTAMP(NANOS) (Spark rejects it), times are plain INT64; the only unsigned types
    are uint32 (Spark: bigint) and uint64 (Spark: decimal(20,0), exact)."""
    for f in ArchiveStore(archive_root).state.files:
        schema = pq.ParquetFile(archive_root / f.file).schema_arrow
        for field in schema:
            t = field.type
            assert not pa.types.is_timestamp(t), (f.file, field.name)
            if pa.types.is_unsigned_integer(t):
                assert t in (pa.uint32(), pa.uint64()), (f.file, field.name)
            if field.name.endswith("_ns") or field.name in ("epoch",):
                assert t == pa.int64(), (f.file, field.name)
    for s in load_schemas().values():
        assert all(c.type != "timestamp" for c in s.columns)


def _spark():
    pyspark = pytest.importorskip("pyspark")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java runtime for Spark local mode")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    del pyspark
    return (SparkSession.builder.master("local[1]").appName("recorder-test")
            .config("spark.driver.host", "127.0.0.1").config("spark.ui.enabled", "false")
            .getOrCreate())


def test_spark_local_mode_reads_every_dataset(archive_root):
    spark = _spark()
    try:
        archive = ArchiveStore(archive_root)
        for ds in sorted({f.dataset for f in archive.state.files}):
            expected = sum(f.rows for f in archive.state.files if f.dataset == ds)
            df = spark.read.parquet(str(archive_root / "data" / f"dataset={ds}"))
            types = dict(df.dtypes)
            assert df.count() == expected, ds
            for name, t in types.items():
                if name.endswith("_ns") or name == "epoch":
                    assert t == "bigint", (ds, name, t)
            if "conn_id" in types:
                assert types["conn_id"] == "decimal(20,0)"
            if "checksum" in types:
                assert types["checksum"] == "bigint"
        # exact values through Spark: sum of book price units equals pyarrow's
        files = archive.files("book")
        want = sum(v for f in files for v in pq.read_table(f, columns=["price"])
                   .column("price").to_pylist() if v is not None)
        got = spark.read.parquet(str(archive_root / "data" / "dataset=book")) \
            .selectExpr("sum(price)").collect()[0][0]
        assert got == want
    finally:
        spark.stop()
