from pathlib import Path

import pytest

from recorder.archive.schema import SchemaError, load_schemas
from recorder.pipeline import DATASETS
from recorder.pipeline import core


def test_pipeline_columns_come_from_the_schema_files():
    schemas = load_schemas()
    assert set(schemas) == set(DATASETS)
    for name, cols in DATASETS.items():
        assert tuple(schemas[name].names) == cols, name
        assert schemas[name].arrow().metadata[b"dataset"] == name.encode()


def test_message_buffers_split_the_schema_columns():
    """book/level3 rows are buffered as per-message + per-row columns (pipeline logic): the
    two lists, plus ``overflow``, are exactly the schema's columns, each once."""
    schemas = load_schemas()
    for name, per_message in core._MSG_COLUMNS.items():
        parts = [c for c in per_message if c != "_rows"] + list(core._ROW_COLUMNS[name])
        assert sorted([*parts, "overflow"]) == sorted(schemas[name].names), name
    assert core._SIDE_BUYSELL == {"buy": 0, "sell": 1, "b": 0, "s": 1}


def test_labels_decimals_and_durations_are_read():
    schemas = load_schemas()
    side = schemas["trades"].column("side")
    assert side.labels == ["buy", "sell"] and side.codes() == {"buy": 0, "sell": 1}
    assert side.label_sql("x") == "CASE x WHEN 0 THEN 'buy' WHEN 1 THEN 'sell' END"
    assert schemas["book"].column("price").decimal == "units"
    assert schemas["ticker"].column("bid").decimal == "text"
    assert not schemas["liveness"].column("subscribed_ns").is_time
    assert schemas["liveness"].column("first_ns").is_time
    assert "kr_level3_event(code)" in schemas["level3"].label_macros_sql()
    assert schemas["ticker"].label_macros_sql() == ""


_ONE = 'name = "x"\nversion = 1\ndescription = "d"\ntime_column = "recv_ns"\n' \
    'sort_keys = []\npartitioning = ["date"]\ncolumns = [\n' \
    '  { name = "recv_ns", type = "int64", nullable = false, doc = "t" },\n'


@pytest.mark.parametrize(("column", "problem"), [
    ('{ name = "s", type = "string", nullable = false, doc = "d", labels = ["a"] }',
     "small int"),
    ('{ name = "s", type = "int8", nullable = false, doc = "d", labels = ["a", "a"] }',
     "distinct"),
    ('{ name = "s", type = "int8", nullable = false, doc = "d", labels = [] }', "distinct"),
    ('{ name = "s", type = "int8", nullable = false, doc = "d", labels = ["a\'; --"] }',
     "is not"),
    ('{ name = "price", type = "int64", nullable = true, doc = "d", decimal = "units" }',
     "price_scale"),
    ('{ name = "p", type = "int64", nullable = true, doc = "d", decimal = "text" }',
     "string column"),
    ('{ name = "p", type = "string", nullable = true, doc = "d", decimal = "float" }',
     "units' or 'text"),
    ('{ name = "p", type = "int64", nullable = true, doc = "d", duration = true }',
     "duration"),
    ('{ name = "p", type = "string", nullable = true, doc = "d", '
     'compacted_encoding = "DELTA_BINARY_PACKED" }', "does not fit"),
])
def test_bad_column_annotations_are_typed_errors(tmp_path: Path, column: str, problem: str):
    (tmp_path / "x.toml").write_text(_ONE + "  " + column + ",\n]\n", "utf-8")
    with pytest.raises(SchemaError, match=problem):
        load_schemas(tmp_path)


def test_the_minimal_schema_of_the_annotation_tests_loads(tmp_path: Path):
    (tmp_path / "x.toml").write_text(_ONE + "]\n", "utf-8")
    assert load_schemas(tmp_path)["x"].names == ["recv_ns"]


def test_ns_times_are_plain_int64_everywhere():
    for s in load_schemas().values():
        for c in s.columns:
            if c.name.endswith("_ns") or c.name == "epoch":
                assert c.type == "int64", (s.name, c.name)


def test_bad_schema_is_a_typed_error(tmp_path):
    (tmp_path / "x.toml").write_text('name = "x"\nversion = 1\n')
    with pytest.raises(SchemaError):
        load_schemas(tmp_path)


def test_a_column_no_row_builder_fills_is_named():
    trades = load_schemas()["trades"]
    cols = {c: [1, 2] for c in ("recv_ns", "ts_ns", "epoch", "conn_id")} | {"symbol": ["A", "B"]}
    assert trades.table(cols).num_rows == 2  # missing columns are nulls
    with pytest.raises(SchemaError, match=r"\['trade_id'\] have fewer values"):
        trades.table(cols | {"trade_id": []})


def test_the_book_datasets_share_the_snapshot_code_the_query_engine_uses():
    from recorder.query import books

    for name in ("book", "level3", "futures_book"):
        assert load_schemas()[name].column("event").codes()["snapshot"] == books._SNAPSHOT
    assert books._L3_EVENTS == {1: "add", 2: "modify", 3: "delete"}
