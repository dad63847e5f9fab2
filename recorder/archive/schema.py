"""Load dataset schemas from ``schemas/*.toml`` (the single source of truth) into Arrow schemas.

A :class:`DatasetSchema` knows its columns and can turn per-column Python lists into a
``pyarrow.Table`` (:meth:`DatasetSchema.table`). Loading is pure (a directory in, values out);
:func:`load_schemas` caches nothing globally.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import msgspec
import pyarrow as pa

from recorder.errors import RecorderError

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


class SchemaError(RecorderError, ValueError):
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
    #: Encoding hint for compacted (sorted) files, where it wins over ``encoding``; it is
    #: the static choice :func:`recorder.archive.store.choose_encodings` keeps on a tie.
    compacted_encoding: str | None = None
    #: A coded int: ``labels[code]`` is the readable value of ``code`` (the SQL view shows
    #: the label as ``<name>`` and the code as ``<name>_code``; see :meth:`label_sql`).
    labels: list[str] | None = None
    #: An exact decimal: ``"units"`` (int64 units of 10^-``<name>_scale``; the view shows
    #: DECIMAL ``<name>`` and ``<name>_units``) or ``"text"`` (exact JSON number text; the
    #: view shows it as DECIMAL ``<name>``).
    decimal: str | None = None
    #: An int64 ``*_ns`` column that is a span of nanoseconds, not a time (no ``*_time`` in
    #: the view); every other int64 ``*_ns`` column is a UTC time.
    duration: bool = False

    @property
    def is_time(self) -> bool:
        """Whether this is an int ns UTC time (the view shows a TIMESTAMP_NS beside it)."""
        return self.type == "int64" and self.name.endswith("_ns") and not self.duration

    @property
    def arrow_type(self) -> pa.DataType:
        return _TYPES[self.type]

    def codes(self) -> dict[str, int]:
        """Label -> code of a coded column (empty for any other column)."""
        return {label: code for code, label in enumerate(self.labels or ())}

    def label_sql(self, expression: str) -> str:
        """SQL ``CASE`` decoding ``expression`` (this column's code) to its label; NULL for a
        code without a label."""
        if not self.labels:
            raise SchemaError(f"column {self.name} is not a coded column")
        whens = " ".join(f"WHEN {code} THEN '{label}'" for code, label in enumerate(self.labels))
        return f"CASE {expression} {whens} END"


def _field_metadata(c: Column) -> dict[str, str]:
    """Arrow field metadata of a column: its doc and its encoding hints (the Parquet writer
    reads the hints from there, see :func:`recorder.archive.store.parquet_encodings`)."""
    meta = {"doc": c.doc}
    if c.encoding is not None:
        meta["encoding"] = c.encoding
    if c.compacted_encoding is not None:
        meta["compacted_encoding"] = c.compacted_encoding
    return meta


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
    #: Columns the SQL view (``queries/10_views.sql``) derives beyond the conventions every
    #: view follows (labels, decimals, ``*_time``; see ``schemas/README.md``), e.g. ``removed``.
    view_adds: list[str] = msgspec.field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        """The column called ``name`` (:class:`SchemaError` if there is none)."""
        for c in self.columns:
            if c.name == name:
                return c
        raise SchemaError(f"dataset {self.name}: no column {name!r}")

    def label_macros_sql(self) -> str:
        """SQL defining ``kr_<dataset>_<column>(code)``, the label decoder of every coded
        column (the views call them; generated so that a label is added in one place)."""
        return "".join(f"CREATE OR REPLACE MACRO kr_{self.name}_{c.name}(code) AS "
                       f"{c.label_sql('code')};\n" for c in self.columns if c.labels)

    def arrow(self) -> pa.Schema:
        """The Arrow schema, with ``dataset`` / ``schema_version`` metadata and column docs
        (and ``encoding`` hints, which the Parquet writer reads from the field metadata)."""
        fields = [
            pa.field(c.name, c.arrow_type, nullable=c.nullable, metadata=_field_metadata(c))
            for c in self.columns
        ]
        return pa.schema(
            fields,
            metadata={"dataset": self.name, "schema_version": str(self.version)},
        )

    def empty_columns(self) -> dict[str, list[Any]]:
        """Fresh per-column buffers (one list per column)."""
        return {c.name: [] for c in self.columns}

    def table(self, columns: dict[str, Any],
              pause: Callable[[], None] | None = None) -> pa.Table:
        """Build a table from per-column Python lists or Arrow arrays (all the same length;
        missing columns = nulls). Columns of different lengths are a :class:`SchemaError`
        naming them (e.g. a schema column that no row builder fills). ``pause``: called
        after each column (a commit thread lets the event loop have the GIL there)."""
        lengths = {c.name: len(v) for c in self.columns
                   if (v := columns.get(c.name)) is not None}
        n = max(lengths.values(), default=0)
        short = sorted(name for name, k in lengths.items() if k != n)
        if short:
            raise SchemaError(f"dataset {self.name}: columns {short} have fewer values than "
                              f"the others ({n}); does every row builder fill them?")
        arrays = []
        for c in self.columns:
            values = columns.get(c.name)
            if values is None:
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
            if pause is not None:
                pause()
        return pa.Table.from_arrays(arrays, schema=self.arrow())


def default_schema_dir() -> Path:
    """The schemas shipped inside the package (``recorder/_resources/schemas``, copies of the
    repository's ``schemas/*.toml``: see :mod:`recorder.resources`)."""
    from recorder.resources import schema_dir

    return schema_dir()


_CODED_TYPES: Final = frozenset({"int8", "int16", "int32"})
_IDENTIFIER: Final = re.compile(r"[a-z][a-z0-9_]*")


def _check_labels(path: Path, c: Column) -> None:
    if c.labels is None:
        return
    if c.type not in _CODED_TYPES:
        raise SchemaError(f"{path}: column {c.name}: labels need a small int type, not {c.type!r}")
    if not c.labels or len(set(c.labels)) != len(c.labels):
        raise SchemaError(f"{path}: column {c.name}: labels must be distinct and not empty")
    for label in c.labels:
        if not _IDENTIFIER.fullmatch(label):  # they are spliced into SQL as literals
            raise SchemaError(f"{path}: column {c.name}: label {label!r} is not [a-z][a-z0-9_]*")


def _check_decimal(path: Path, schema: DatasetSchema, c: Column) -> None:
    if c.decimal is None:
        return
    if c.decimal == "units":
        scale = f"{c.name}_scale"
        if c.type != "int64" or scale not in schema.names or schema.column(scale).type != "int8":
            raise SchemaError(f"{path}: column {c.name}: decimal units need an int64 column "
                              f"and an int8 {scale!r} column")
    elif c.decimal == "text":
        if c.type not in ("string", "dict_string"):
            raise SchemaError(f"{path}: column {c.name}: decimal text needs a string column")
    else:
        raise SchemaError(f"{path}: column {c.name}: decimal must be 'units' or 'text', "
                          f"not {c.decimal!r}")


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
        for hint in (c.encoding, c.compacted_encoding):
            if hint is not None and c.type not in ENCODINGS.get(hint, ()):
                raise SchemaError(f"{path}: column {c.name}: encoding {hint!r} does not fit "
                                  f"type {c.type!r} (known: {sorted(ENCODINGS)})")
        if c.duration and not (c.type == "int64" and c.name.endswith("_ns")):
            raise SchemaError(f"{path}: column {c.name}: duration needs an int64 *_ns column")
        _check_labels(path, c)
        _check_decimal(path, schema, c)
    if schema.compact_row_group_rows is not None and schema.compact_row_group_rows < 1:
        raise SchemaError(f"{path}: compact_row_group_rows must be a positive row count")
    for key in [schema.time_column, *schema.sort_keys]:
        if key not in names:
            raise SchemaError(f"{path}: {key!r} is not a column")
    time_type = next(c.type for c in schema.columns if c.name == schema.time_column)
    if time_type != "int64":
        raise SchemaError(f"{path}: time column must be int64 ns")
    if not _IDENTIFIER.fullmatch(schema.name):  # spliced into SQL macro names
        raise SchemaError(f"{path}: dataset name {schema.name!r} is not [a-z][a-z0-9_]*")
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
