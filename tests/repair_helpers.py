"""Helpers for the damaged-file tests: ways to damage a Parquet file, and row-set comparison."""

from __future__ import annotations

import struct
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

#: How a test damages a file: all four leave the other files of the archive untouched.
DAMAGES = ("truncate", "footer", "page", "delete")


def damage(path: Path, how: str) -> None:
    """Damage one Parquet file.

    ``truncate``: cut its last 100 bytes (a full disk, an interrupted copy); ``footer``: zero
    the footer's metadata (its length and magic stay); ``page``: zero the header of the first
    page of the first column (footer, size and row count intact: only a full decode finds
    it); ``delete``: remove it."""
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[:-100]))
    elif how == "footer":
        (length,) = struct.unpack("<I", data[-8:-4])
        data[-8 - length:-8] = bytes(length)
        path.write_bytes(bytes(data))
    elif how == "page":
        col = pq.ParquetFile(path).metadata.row_group(0).column(0)
        start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
        data[start:start + 32] = bytes(32)
        path.write_bytes(bytes(data))
    elif how == "delete":
        path.unlink()
    else:
        raise ValueError(how)


def plain(table: pa.Table) -> pa.Table:
    """Dictionary columns decoded (DuckDB and Arrow compare them as their values)."""
    cols = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c
            for c in table.columns]
    return pa.table(cols, names=table.column_names)


def multiset_difference(a: pa.Table, b: pa.Table) -> tuple[int, int]:
    """(rows of ``a`` not in ``b``, rows of ``b`` not in ``a``), counting duplicates."""
    con = duckdb.connect()
    try:
        con.register("a", plain(a))
        con.register("b", plain(b.select(a.column_names)))
        ab = con.sql("SELECT count(*) FROM (SELECT * FROM a EXCEPT ALL SELECT * FROM b)")
        ba = con.sql("SELECT count(*) FROM (SELECT * FROM b EXCEPT ALL SELECT * FROM a)")
        return ab.fetchall()[0][0], ba.fetchall()[0][0]
    finally:
        con.close()


def same_rows(a: pa.Table, b: pa.Table) -> bool:
    """Row-set (multiset) equality of two tables with the same columns."""
    return a.num_rows == b.num_rows and multiset_difference(a, b) == (0, 0)


def minus(a: pa.Table, b: pa.Table) -> pa.Table:
    """The rows of ``a`` without those of ``b`` (multiset difference)."""
    con = duckdb.connect()
    try:
        con.register("a", plain(a))
        con.register("b", plain(b.select(a.column_names)))
        return con.sql("SELECT * FROM a EXCEPT ALL SELECT * FROM b").to_arrow_table()
    finally:
        con.close()
