"""Load dataset schemas from ``schemas/*.toml`` (the single source of truth) into Arrow schemas.

A :class:`DatasetSchema` knows its columns and can turn per-column Python lists into a
``pyarrow.Table`` (:meth:`DatasetSchema.table`). Loading is pure (a directory in, values out);
:func:`load_schemas` caches nothing globally.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Final

import msgspec
import pyarrow as pa

__all__ = ["SchemaError", "ENCODINGS", "Column", "DatasetSchema", "load_schemas", "default_schema_dir"]

_TYPES: Final[dict[str, pa.DataType]] = {
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "dict_string": pa.dictionary(pa.int32(), pa.string()),
    "binary": pa.binary(),
}


class SchemaError(ValueError):
    """A schema file is missing, malformed or inconsistent."""


#: Parquet encodings a column may name as its ``encoding`` hint, and the types each fits
#: ("DICTIONARY" = dictionary + RLE indices, pyarrow's default).
ENCODINGS: Final[dict[str, frozenset[str]]] = {
    "DICTIONARY": frozenset(_TYPES),
    "PLAIN": frozenset(_TYPES) - {"dict_string"},
    "DELTA_BINARY_PACKED": frozenset({"int32", "int64", "uint32", "uint64"}),
    "DELTA_LENGTH_BYTE_ARRAY": frozenset({"string", "binary"}),
    "DELTA_BYTE_ARRAY": frozenset({"string", "binary"}),
}


class Column(msgspec.Struct, frozen=True, kw_only=True):
    """One column: ``type`` is a key of the type table (see ``schemas/README.md``).

    ``encoding`` (optional) is a physical hint for rolling files: the Parquet encoding that
    measured smallest for this column (a key of :data:`ENCODINGS`); it never changes the
    column's type or values. Compaction measures its own choice (see
    :func:`recorder.archive.store.choose_encodings`)."""

    name: str
    type: str
    nullable: bool
    doc: str
    encoding: str | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        return _TYPES[self.type]


class DatasetSchema(msgspec.Struct, frozen=True, kw_only=True):
    """One dataset's schema as declared in its TOML file."""

    name: str
    version: int
    description: str
    time_column: str
    sort_keys: list[str]
    partitioning: list[str]
    columns: list[Column]
    #: Rows per Parquet row group in compacted files (None: the compaction default). A reader
    #: prunes by row-group statistics, so a dataset read a few rows at a time (checkpoints:
    #: one per book_at) wants small groups, or every query decodes a whole day of it.
    compact_row_group_rows: int | None = None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def arrow(self) -> pa.Schema:
        """The Arrow schema, with ``dataset`` / ``schema_version`` metadata and column docs
        (and ``encoding`` hints, which the Parquet writer reads from the field metadata)."""
        fields = [
            pa.field(c.name, c.arrow_type, nullable=c.nullable,
                     metadata={"doc": c.doc} if c.encoding is None
                     else {"doc": c.doc, "encoding": c.encoding})
            for c in self.columns
        ]
        return pa.schema(
            fields,
            metadata={"dataset": self.name, "schema_version": str(self.version)},
        )

    def empty_columns(self) -> dict[str, list[Any]]:
        """Fresh per-column buffers (one list per column)."""
        return {c.name: [] for c in self.columns}

    def table(self, columns: dict[str, Any]) -> pa.Table:
        """Build a table from per-column Python lists or Arrow arrays (all the same length;
        missing columns = nulls)."""
        n = None
        arrays = []
        for c in self.columns:
            values = columns.get(c.name)
            if values is None:
                if n is None:
                    n = max((len(v) for v in columns.values()), default=0)
                values = [None] * n
            if isinstance(values, pa.Array):
                want = c.arrow_type
                if c.type == "dict_string" and not pa.types.is_dictionary(values.type):
                    values = values.cast(pa.string()).dictionary_encode()
                elif values.type != want:
                    values = values.cast(want)
                arrays.append(values)
            elif c.type == "dict_string":
                arrays.append(pa.array(values, type=pa.string()).dictionary_encode())
            else:
                arrays.append(pa.array(values, type=c.arrow_type))
        return pa.Table.from_arrays(arrays, schema=self.arrow())


def default_schema_dir() -> Path:
    """The schemas shipped inside the package (``recorder/_resources/schemas``, copies of the
    repository's ``schemas/*.toml``: see :mod:`recorder.resources`)."""
    from recorder.resources import schema_dir

    return schema_dir()


def _load_one(path: Path) -> DatasetSchema:
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
        schema = msgspec.convert(raw, DatasetSchema)
    except (OSError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise SchemaError(f"{path}: {exc}") from exc
    names = schema.names
    if len(set(names)) != len(names):
        raise SchemaError(f"{path}: duplicate column names")
    for c in schema.columns:
        if c.type not in _TYPES:
            raise SchemaError(f"{path}: column {c.name}: unknown type {c.type!r}")
        if c.encoding is not None and c.type not in ENCODINGS.get(c.encoding, ()):
            raise SchemaError(f"{path}: column {c.name}: encoding {c.encoding!r} does not fit "
                              f"type {c.type!r} (known: {sorted(ENCODINGS)})")
    if schema.compact_row_group_rows is not None and schema.compact_row_group_rows < 1:
        raise SchemaError(f"{path}: compact_row_group_rows must be a positive row count")
    for key in [schema.time_column, *schema.sort_keys]:
        if key not in names:
            raise SchemaError(f"{path}: {key!r} is not a column")
    time_type = next(c.type for c in schema.columns if c.name == schema.time_column)
    if time_type != "int64":
        raise SchemaError(f"{path}: time column must be int64 ns")
    if path.stem != schema.name:
        raise SchemaError(f"{path}: file name must be the dataset name {schema.name!r}")
    return schema


def load_schemas(directory: Path | None = None) -> dict[str, DatasetSchema]:
    """All dataset schemas in ``directory`` (default: the packaged ``schemas/``)."""
    directory = directory or default_schema_dir()
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise SchemaError(f"no schema files in {directory}")
    return {s.name: s for s in map(_load_one, files)}
