import pytest

from recorder.archive.schema import SchemaError, load_schemas
from recorder.pipeline import DATASETS


def test_pipeline_columns_match_schema_files():
    schemas = load_schemas()
    assert set(schemas) == set(DATASETS)
    for name, cols in DATASETS.items():
        assert tuple(schemas[name].names) == cols, name
        assert schemas[name].arrow().metadata[b"dataset"] == name.encode()


def test_ns_times_are_plain_int64_everywhere():
    for s in load_schemas().values():
        for c in s.columns:
            if c.name.endswith("_ns") or c.name == "epoch":
                assert c.type == "int64", (s.name, c.name)


def test_bad_schema_is_a_typed_error(tmp_path):
    (tmp_path / "x.toml").write_text('name = "x"\nversion = 1\n')
    with pytest.raises(SchemaError):
        load_schemas(tmp_path)
