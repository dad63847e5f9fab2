"""The SQL views (queries/10_views.sql) against the schema files (schemas/*.toml): the views
are hand-written SQL, so these tests fail on any drift between the two.

* Each view's columns are exactly those the schema implies (every column kept, coded ints as
  label + ``_code``, int units as DECIMAL + ``_units``, text decimals as DECIMAL, a
  TIMESTAMP_NS ``*_time`` beside each time, plus the schema's ``view_adds``), with the types
  the conventions promise.
* Each coded column decodes every code to the schema's label (and an unknown code to NULL).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from recorder.archive.schema import Column, DatasetSchema, load_schemas
from recorder.query.api import queries_dir

duckdb = pytest.importorskip("duckdb")

_DECIMAL = "DECIMAL(38,18)"
_VIEW_SQL = ("00_functions.sql", "10_views.sql")


def _time_name(col: str) -> str:
    """The view's TIMESTAMP_NS column beside int ns column ``col`` (10_views.sql header)."""
    special = {"recv_ns": "recv_time", "ts_ns": "exchange_time"}
    if col in special:
        return special[col]
    stem = col[:-3]
    return stem if stem.endswith("_time") else stem + "_time"


def _plain(t: pa.DataType) -> pa.DataType:
    return pa.string() if pa.types.is_dictionary(t) else t


def _empty(schema: DatasetSchema) -> pa.Table:
    return pa.table({f.name: pa.array([], _plain(f.type)) for f in schema.arrow()})


def _connect(schemas: dict[str, DatasetSchema],
             raw: dict[str, pa.Table] | None = None) -> Any:
    """DuckDB with ``raw_<dataset>`` (``raw`` or empty), the generated label decoders and
    the view SQL, as :meth:`recorder.query.api.Archive.connection` sets them up."""
    con = duckdb.connect(":memory:")
    for name, schema in schemas.items():
        table = (raw or {}).get(name)
        if table is None:
            table = _empty(schema)
        con.register(f"raw_{name}", table)
    con.execute("".join(s.label_macros_sql() for s in schemas.values()))
    for sql in _VIEW_SQL:
        con.execute((queries_dir() / sql).read_text("utf-8"))
    return con


def _columns(con: Any, relation: str) -> dict[str, str]:
    return dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                            "WHERE table_name = ?", [relation]).fetchall())


def _expected(schema: DatasetSchema, raw_types: dict[str, str]) -> dict[str, str | None]:
    """View column -> DuckDB type the conventions imply (None: a ``view_adds`` column, any
    type)."""
    out: dict[str, str | None] = {}
    for c in schema.columns:
        if c.labels:
            out[c.name], out[f"{c.name}_code"] = "VARCHAR", raw_types[c.name]
        elif c.decimal == "units":
            out[c.name], out[f"{c.name}_units"] = _DECIMAL, "BIGINT"
        elif c.decimal == "text":
            out[c.name] = _DECIMAL
        else:
            out[c.name] = raw_types[c.name]
        if c.is_time:
            out[_time_name(c.name)] = "TIMESTAMP_NS"
    for extra in schema.view_adds:
        out[extra] = None
    return out


def _drift(con: Any, schema: DatasetSchema) -> list[str]:
    """What differs between the view of ``schema`` and what its schema file implies."""
    actual = _columns(con, schema.name)
    con.register("schema_types", _empty(schema))  # the DuckDB type of each schema column
    expected = _expected(schema, _columns(con, "schema_types"))
    problems = [f"view lacks {c}" for c in expected if c not in actual]
    problems += [f"view has {c}, not in the schema (add it to view_adds?)"
                 for c in actual if c not in expected]
    problems += [f"{c} is {actual[c]}, the schema implies {t}" for c, t in expected.items()
                 if t is not None and c in actual and actual[c] != t]
    return problems


def test_views_have_exactly_the_columns_the_schemas_imply():
    schemas = load_schemas()
    con = _connect(schemas)
    drift = {name: p for name in schemas if (p := _drift(con, schemas[name]))}
    assert drift == {}


def _coded_table(schema: DatasetSchema) -> pa.Table:
    """One row per code of the widest coded column, plus one unknown code; the other columns
    null (every code of every coded column of ``schema`` appears once)."""
    coded = [c for c in schema.columns if c.labels]
    n = max(len(c.labels or ()) for c in coded) + 1
    return pa.table({f.name: pa.array(list(range(n)) if f.name in {c.name for c in coded}
                                      else [None] * n, _plain(f.type))
                     for f in schema.arrow()})


def _decoded(con: Any, schema: DatasetSchema, c: Column) -> dict[int, str | None]:
    rows = con.execute(f'SELECT "{c.name}_code", "{c.name}" FROM "{schema.name}"').fetchall()
    return dict(rows)


def test_views_decode_every_code_to_the_schema_label():
    schemas = load_schemas()
    coded = {name: s for name, s in schemas.items() if any(c.labels for c in s.columns)}
    assert {"book", "level3", "trades", "futures_trades"} <= set(coded)
    con = _connect(schemas, {name: _coded_table(s) for name, s in coded.items()})
    for name, schema in coded.items():
        for c in schema.columns:
            if c.labels:
                got = _decoded(con, schema, c)
                want = {code: (c.labels[code] if code < len(c.labels) else None)
                        for code in got}
                assert got == want, (name, c.name)
                assert set(range(len(c.labels))) <= set(got), (name, c.name)


def test_drift_is_reported():
    """The check itself: a column added to a schema file but not to its view, or a view
    column the schema does not imply, is reported."""
    schemas = load_schemas()
    con = _connect(schemas)
    book = schemas["book"]
    grown = DatasetSchema(**{**{f: getattr(book, f) for f in book.__struct_fields__},
                             "columns": [*book.columns, Column(name="venue", type="string",
                                                                nullable=True, doc="x")]})
    assert _drift(con, grown) == ["view lacks venue"]
    shrunk = DatasetSchema(**{**{f: getattr(book, f) for f in book.__struct_fields__},
                              "view_adds": []})
    assert _drift(con, shrunk) == ["view has removed, not in the schema (add it to view_adds?)"]
