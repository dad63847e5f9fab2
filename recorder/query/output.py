"""Query results as text: the same value rules for every output format of ``recorder query``.

* exact decimals (the views' ``DECIMAL(38,18)`` prices and quantities) print as their exact
  value without padding: ``96291.3``, never ``96291.300000000000000000`` (and never a float);
* binary columns (``rejects.raw``, ``checkpoints.book``) are lower-case hex;
* nested values (lists, structs, maps) are JSON text in tables and CSV, JSON in JSON;
* times are ISO 8601 text with nanoseconds;
* in JSON, decimals are strings (exact).

Tables and CSV get strings from :func:`text_frame` (vectorised: no per-row Python for the
common column types); JSON gets plain values from :func:`json_rows`.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    import polars as pl

__all__ = ["decimal_text", "json_value", "json_rows", "text_frame"]

_ENCODER = msgspec.json.Encoder()


def decimal_text(value: Decimal) -> str:
    """Exact text of ``value`` without exponent or trailing fractional zeros (``"0.001"``)."""
    if not value.is_finite():
        return str(value)
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def json_value(value: Any) -> Any:
    """``value`` with every decimal as exact text, bytes as hex, times as RFC 3339 text,
    containers converted recursively (what :mod:`msgspec` then encodes as JSON)."""
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def json_rows(df: pl.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``df`` as JSON-ready dicts (see :func:`json_value`); timestamps keep
    their nanoseconds (converted by Polars, not through Python's microsecond datetime)."""
    import polars as pl

    times = [_time_text(pl.col(n), t).alias(n) for n, t in df.schema.items()
             if isinstance(t, pl.Datetime)]
    if times:
        df = df.with_columns(times)
    return [{k: json_value(v) for k, v in row.items()} for row in df.iter_rows(named=True)]


def _time_text(col: pl.Expr, dtype: Any) -> pl.Expr:
    """ISO 8601 with nine fractional digits (and the offset of an aware column)."""
    return col.dt.to_string("%Y-%m-%dT%H:%M:%S%.9f" + ("%:z" if dtype.time_zone else ""))


def _nested_text(value: Any) -> str | None:
    return None if value is None else _ENCODER.encode(json_value(value)).decode()


def text_frame(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with decimal, binary and nested columns as text (see module docstring); other
    columns unchanged. Every column of the result can be written as CSV."""
    import polars as pl

    exprs: list[pl.Expr | pl.Series] = []
    for name, dtype in df.schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.Decimal):
            exprs.append(col.cast(pl.Utf8).str.replace(r"(\.[0-9]*?)0+$", "$1")
                         .str.replace(r"\.$", "").str.replace(r"^-0$", "0").alias(name))
        elif isinstance(dtype, pl.Datetime):
            exprs.append(_time_text(col, dtype).alias(name))
        elif dtype == pl.Binary:
            exprs.append(col.bin.encode("hex").alias(name))
        elif isinstance(dtype, (pl.List, pl.Array, pl.Struct)) or dtype == pl.Object:
            exprs.append(pl.Series(name, [_nested_text(v) for v in df.get_column(name).to_list()],
                                   dtype=pl.Utf8).alias(name))
        else:
            exprs.append(col)
    return df.select(exprs) if exprs else df
