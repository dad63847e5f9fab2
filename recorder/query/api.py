"""``recorder.Archive``: the researcher's entry point to a recorded archive.

Every table comes back the way Polars and DuckDB users expect: :meth:`Archive.sql`,
:meth:`Archive.scan` and the helpers (:meth:`~Archive.trades`, :meth:`~Archive.ohlc`,
:meth:`~Archive.bbo`, :meth:`~Archive.gaps`, :meth:`~Archive.epochs`,
:meth:`~Archive.describe`) return a Polars ``LazyFrame`` (nothing is read until
``.collect()``); :meth:`Archive.relation` returns a DuckDB relation. Prices and quantities
are exact decimals and coded columns are labels, as in the SQL views; ``scan(...,
raw=True)`` gives the stored integer units, scales and codes instead. Durations are
Polars-style (``"1m"``, ``"5s"``, ``"1h"``, ``"1d"`` or a :class:`datetime.timedelta`);
symbol filters are ``symbols=`` (one symbol or a sequence); the default channel of every
book question is ``"book"`` (L2), as in the SQL macros.

    >>> import recorder
    >>> ar = recorder.Archive(archive_path)   # a root, a parent of roots, or a list of them
    >>> ar.sql("SELECT symbol, count(*) AS n FROM trades WHERE symbol = ? GROUP BY ALL",
    ...        ["BTC/USD"]).collect().rows()
    [('BTC/USD', 22)]
    >>> book = ar.book_at("BTC/USD", "2025-01-01T00:00:01Z", depth=3)
    >>> book.valid, book.checksum_ok, book.frame.height
    (True, True, 6)
    >>> ar.scan("trades", symbols="BTC/USD").select("side", "price").head(1).collect().rows()
    [('buy', Decimal('92579.100000000000000000'))]

SQL: every dataset of ``schemas/*.toml`` is a view with readable columns, plus research
macros (``queries/*.sql``, run in file-name order against raw relations ``raw_<dataset>``
built from the manifest's live files, after the label decoders ``kr_<dataset>_<column>``
generated from the schemas' ``labels``). Values are always bound as parameters
(``?``/``$name``), never formatted into SQL.

**Several roots.** Capture writes one complete archive root per worker process
(``<archive>/<host>-w<k>/``), and several hosts may share a parent. An :class:`Archive` opens
whatever :func:`recorder.roots.archive_roots` finds: a root, a parent of roots, or a list of
either. Every dataset (SQL views, :meth:`Archive.scan`, :meth:`Archive.files`) is the union of
the roots' live files. Books are per root (an epoch belongs to the root whose pipeline opened
it): :meth:`Archive.book_at` asks the root(s) holding that (channel, symbol) and answers from
the one whose epoch covers the time (see :class:`~recorder.query.books.BookRouter`).

An :class:`Archive` reads one snapshot of each root's manifest (``_manifest/current.json``)
when it is opened; :meth:`Archive.refresh` picks up newer commits and newly created roots.

**Damaged files.** A live file that cannot be read (missing, truncated, corrupt; see
:mod:`recorder.archive.health`) is left out of every view, scan and file list, with one
warning naming it and the command that repairs it (``recorder repair --archive ROOT``); every
other file still answers. Files are checked cheaply (footer, row count) when first needed; a
read that fails anyway (damage inside a data page) decodes the candidate files in full, leaves
out the ones that fail and runs again. :meth:`Archive.unreadable` lists them. A book is never
rebuilt across an unreadable file: :meth:`Archive.book_at` answers ``valid=False`` with the
reason, :meth:`Archive.replay` yields a :class:`ReplayGap`.
"""

from __future__ import annotations

import datetime as dt
import os
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar, cast

from recorder.archive.health import FileHealth, FileProblem
from recorder.archive.schema import DatasetSchema, load_schemas
from recorder.archive.store import ArchiveStore, FileEntry
from recorder.query.books import (
    CHANNELS,
    DEFAULT_CHANNEL,
    BookAt,
    BookEvent,
    BookRouter,
    Channel,
    Clock,
    QueryError,
    ReplayGap,
)
from recorder.query.timeparse import TimeLike, duration_ns, to_ns
from recorder.remote import is_remote, resolve
from recorder.resources import queries_dir as packaged_queries_dir
from recorder.roots import PathSpec, archive_roots

if TYPE_CHECKING:
    import duckdb
    import polars as pl

__all__ = ["Archive", "DEFAULT_CHANNEL", "Every", "Params", "Symbols", "queries_dir",
           "sql_files", "symbol_list"]

#: One symbol (``"BTC/USD"``) or several (``["BTC/USD", "ETH/USD"]``): every ``symbols=``.
Symbols: TypeAlias = str | Sequence[str]
#: A Polars-style duration (``"1m"``, ``"5s"``, ``"1h"``, ``"1d"``) or a timedelta.
Every: TypeAlias = str | dt.timedelta
#: Bound SQL parameters: a sequence for ``?``, a mapping for ``$name``.
Params: TypeAlias = Sequence[Any] | Mapping[str, Any] | None

_SYMBOL_COLUMNS = ("symbol", "product_id")
_MANIFEST_SYMBOL_LIMIT = 1000  # the manifest lists at most this many symbols per file
#: DuckDB error classes that are the query's own fault (never a damaged file): no re-check.
_QUERY_ERRORS: Final = ("ParserException", "BinderException", "CatalogException",
                        "ConversionException", "OutOfRangeException", "ConstraintException",
                        "NotImplementedException", "SyntaxException", "TypeMismatchException",
                        "InvalidTypeException", "DependencyException", "PermissionException",
                        "InterruptException")
_T = TypeVar("_T")


def queries_dir() -> Path:
    """The SQL shipped inside the package (``recorder/_resources/queries``, copies of the
    repository's ``queries/``: see :mod:`recorder.resources`); override with
    ``KRAKEN_RECORDER_QUERIES``."""
    env = os.environ.get("KRAKEN_RECORDER_QUERIES")
    if env:
        return Path(env)
    return packaged_queries_dir()


def sql_files(directory: Path | None = None) -> list[Path]:
    """The SQL files registered on every connection, in execution (name) order."""
    return sorted((directory or queries_dir()).glob("*.sql"))


def symbol_list(symbols: str | Sequence[str] | None) -> list[str] | None:
    """``symbols`` as a list (None stays None: no filter); one string is one symbol, never
    its characters.

        >>> symbol_list("BTC/USD"), symbol_list(("BTC/USD", "ETH/USD")), symbol_list(None)
        (['BTC/USD'], ['BTC/USD', 'ETH/USD'], None)
    """
    if symbols is None:
        return None
    if isinstance(symbols, str):
        return [symbols]
    listed = list(symbols)
    bad = [s for s in listed if not isinstance(s, str)]
    if bad:
        raise QueryError(f"a symbol is a string, not {bad[0]!r}")
    return listed


def _every_us(every: Every) -> int:
    """A bucket width in whole microseconds (what a DuckDB INTERVAL holds)."""
    if isinstance(every, dt.timedelta):
        ns = ((every.days * 86_400 + every.seconds) * 1_000_000 + every.microseconds) * 1000
    elif isinstance(every, str):
        try:
            ns = duration_ns(every)
        except ValueError as exc:
            raise QueryError(str(exc)) from None
    else:
        raise QueryError(f"every= takes a duration such as '1m' or a timedelta, "
                         f"not {type(every).__name__}")
    if ns <= 0 or ns % 1000:
        raise QueryError(f"every={every!r} must be a positive whole number of microseconds")
    return ns // 1000


def _channel(value: str) -> Channel:
    if value in CHANNELS:
        return cast(Channel, value)
    raise QueryError(f"unknown channel {value!r}; one of {', '.join(CHANNELS)}")


def _clock(value: str) -> Clock:
    if value in ("exchange", "receive"):
        return cast(Clock, value)
    raise QueryError(f"unknown clock {value!r}; one of exchange, receive")


def _quote(identifier: str) -> str:
    """A DuckDB identifier, quoted."""
    return '"' + identifier.replace('"', '""') + '"'


def _plain_arrow_schema(schema: DatasetSchema) -> Any:
    """Arrow schema of a dataset with dictionary strings as plain strings (empty relations)."""
    import pyarrow as pa

    fields = [pa.field(f.name, pa.string() if pa.types.is_dictionary(f.type) else f.type)
              for f in schema.arrow()]
    return pa.schema(fields)


class Archive:
    """Read-only query access to one archive root, a parent of roots, or several of them
    (see the module docstring).

    ``path``: a root, the parent of capture's writer roots, an ``s3://`` prefix that
    ``recorder sync`` filled, or a list of these. ``schema_dir`` and ``queries`` replace the
    packaged ``schemas/`` and ``queries/`` (every view, macro and helper query is then read
    from there). ``root`` is the path given (the first one when a list is given); ``roots``
    the archive roots found there, re-discovered by :meth:`refresh`. Raises
    :class:`recorder.roots.ArchiveRootError` (a :class:`~recorder.errors.RecorderError`) when
    a path leads to no root.

        >>> ar = Archive(archive_path)
        >>> ar                                              # doctest: +ELLIPSIS
        Archive('...', roots=1, files=...)
        >>> "trades" in ar.datasets
        True
    """

    def __init__(self, path: PathSpec, *, schema_dir: Path | None = None,
                 queries: Path | None = None) -> None:
        #: as given: ``s3://`` URLs stay URLs and are fetched again by :meth:`refresh`
        self._sources: list[Any] = ([path] if isinstance(path, (str, os.PathLike))
                                    else list(path))
        self._spec: list[Path] = resolve(self._sources)
        self.root: Path = self._spec[0] if self._spec else Path()
        self.roots: list[Path] = archive_roots(self._spec)
        self._schema_dir = schema_dir
        self._queries = queries
        self.schemas: dict[str, DatasetSchema] = load_schemas(schema_dir)
        self._con: duckdb.DuckDBPyConnection | None = None
        #: verdicts on the files' readability, cached by (path, size, mtime) across refreshes
        self._health = FileHealth()
        self._entries: list[tuple[Path, FileEntry]] = []
        self._problems: dict[tuple[Path, str], FileProblem | None] = {}
        self.books: BookRouter
        self.refresh()

    # ------------------------------------------------------------------ lifecycle

    def refresh(self) -> None:
        """Re-discover the roots and re-read their manifests (new commits and new writer roots
        become visible; an ``s3://`` archive is fetched again, see :mod:`recorder.remote`);
        resets SQL and caches."""
        if any(is_remote(p) for p in self._sources):
            self._spec = resolve(self._sources)
        self.roots = archive_roots(self._spec)
        #: (root, live file) in each root's commit order, roots in discovery order
        self._entries = [(root, f) for root in self.roots
                         for f in ArchiveStore(root, schema_dir=self._schema_dir).state.files]
        #: (root, file) -> its problem (None: readable), checked when first needed
        self._problems = {}
        self.close()
        self.books = BookRouter(self)

    def close(self) -> None:
        """Close the DuckDB connection (reopened on the next SQL call)."""
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Archive({str(self.root)!r}, roots={len(self.roots)}, "
                f"files={len(self._entries)})")

    # ------------------------------------------------------------------ files and scans

    @property
    def datasets(self) -> list[str]:
        """The dataset names (``schemas/*.toml``), sorted."""
        return sorted(self.schemas)

    def _schema(self, dataset: str) -> DatasetSchema:
        try:
            return self.schemas[dataset]
        except KeyError:
            raise QueryError(f"unknown dataset {dataset!r}; one of {self.datasets}") from None

    def files(self, dataset: str, *, symbols: Symbols | None = None,
              start: TimeLike | None = None, end: TimeLike | None = None,
              root: Path | None = None) -> list[Path]:
        """Live files of ``dataset`` that may hold rows of ``symbols`` with the dataset's time
        column in ``[start, end]`` (manifest pruning: per-file symbol lists and min/max time).
        Every root's files (or only ``root``'s, one of :attr:`roots`), each root's in commit
        order, which is wire order. Unreadable files are left out (see :meth:`unreadable`).

            >>> [p.suffix for p in ar.files("trades", symbols="BTC/USD")][:1]
            ['.parquet']
            >>> ar.files("trades", symbols="NOPE/USD")
            []
        """
        return [r / f.file for r, f in self._candidates(dataset, symbols, start, end, root)
                if self._problem(r, f) is None]

    def unreadable_files(self, dataset: str, *, symbols: Symbols | None = None,
                         start: TimeLike | None = None, end: TimeLike | None = None,
                         root: Path | None = None) -> list[FileProblem]:
        """The files :meth:`files` leaves out for the same arguments, with their problems."""
        out = []
        for r, f in self._candidates(dataset, symbols, start, end, root):
            problem = self._problem(r, f)
            if problem is not None:
                out.append(problem)
        return out

    def unreadable(self, *, deep: bool = False) -> list[FileProblem]:
        """Every live file of every root that cannot be read, and why (``deep``: decode every
        file in full first; otherwise the cheap checks and what failed reads found).

            >>> ar.unreadable()
            []
        """
        if deep:
            self._recheck()
        return [p for r, f in self._entries if (p := self._problem(r, f)) is not None]

    def _problem(self, root: Path, entry: FileEntry) -> FileProblem | None:
        key = (root, entry.file)
        if key not in self._problems:
            self._problems[key] = self._health.check(root, entry)
        return self._problems[key]

    def _recheck(self) -> bool:
        """Decode in full every live file not decoded yet; True when that found a file
        unreadable that was not known to be (views and books are then rebuilt without it)."""
        found = False
        for r, f in self._entries:
            if self._problem(r, f) is not None or self._health.deep_checked(r, f):
                continue
            problem = self._health.check(r, f, deep=True)
            if problem is not None:
                self._problems[(r, f.file)] = problem
                found = True
        if found:
            self.close()
            self.books = BookRouter(self)
        return found

    def _retrying(self, run: Callable[[], _T]) -> _T:
        """``run()``; when it fails reading files (a DuckDB error that is not the query's own
        fault, a Polars or I/O error), decode the files not decoded yet and run again without
        the ones that fail; re-raise when that finds nothing new."""
        import duckdb
        import polars as pl

        own_fault = tuple(getattr(duckdb, name) for name in _QUERY_ERRORS
                          if hasattr(duckdb, name))
        while True:
            try:
                return run()
            except (duckdb.Error, pl.exceptions.PolarsError, OSError) as exc:
                if isinstance(exc, own_fault) or not self._recheck():
                    raise

    def _candidates(self, dataset: str, symbols: Symbols | None,
                    start: TimeLike | None, end: TimeLike | None,
                    root: Path | None) -> list[tuple[Path, FileEntry]]:
        """Manifest pruning for :meth:`files` (readable or not)."""
        self._schema(dataset)
        if root is not None and root not in self.roots:
            raise QueryError(f"{root} is not one of this archive's roots {self.roots}")
        lo = None if start is None else to_ns(start)
        hi = None if end is None else to_ns(end)
        listed = symbol_list(symbols)
        wanted = None if listed is None else set(listed)
        out = []
        for r, f in self._entries:
            if f.dataset != dataset or (root is not None and r is not root and r != root):
                continue
            if lo is not None and f.max_time is not None and f.max_time < lo:
                continue
            if hi is not None and f.min_time is not None and f.min_time > hi:
                continue
            if (wanted is not None and f.symbols and len(f.symbols) < _MANIFEST_SYMBOL_LIMIT
                    and wanted.isdisjoint(f.symbols)):
                continue
            out.append((r, f))
        return out

    def scan(self, dataset: str, *, symbols: Symbols | None = None,
             start: TimeLike | None = None, end: TimeLike | None = None,
             root: Path | None = None, raw: bool = False) -> pl.LazyFrame:
        """A Polars LazyFrame of one dataset over every root (or only ``root``, one of
        :attr:`roots`).

        By default its columns are the SQL view's (``SELECT * FROM <dataset>``): exact
        decimals (``price``, ``qty``; the integer units stay beside them as ``price_units``),
        labels (``side``; the codes as ``side_code``) and ``*_time`` timestamps beside the int
        ns clocks. ``raw=True`` gives the stored columns instead (``schemas/<dataset>.toml``:
        integer units + scale, codes), read by Polars itself with projection and predicate
        pushdown into the Parquet files.

        Files are pruned with the manifest; ``symbols`` (one symbol or a sequence) and
        ``start``/``end`` (inclusive, on the dataset's time column) are also applied as row
        filters, so the result is exact. An archive without files of ``dataset`` gives an
        empty frame with the schema.

            >>> lf = ar.scan("trades", symbols=["BTC/USD", "ETH/USD"], end="2025-01-01T00:00:02Z")
            >>> lf.select("symbol", "side", "price").collect().dtypes
            [String, String, Decimal(precision=38, scale=18)]
            >>> raw = ar.scan("trades", symbols="BTC/USD", raw=True)
            >>> raw.select("side", "price", "price_scale").collect().dtypes
            [Int8, Int64, Int8]
        """
        if not raw:
            return self._view_scan(dataset, symbols, start, end, root)
        import polars as pl
        import pyarrow as pa

        schema = self._schema(dataset)
        files = self.files(dataset, symbols=symbols, start=start, end=end, root=root)
        empty = pl.from_arrow(pa.table({f.name: pa.array([], f.type)
                                        for f in _plain_arrow_schema(schema)}))
        assert isinstance(empty, pl.DataFrame)
        if files:
            lf = pl.scan_parquet([str(f) for f in files], hive_partitioning=False,
                                 missing_columns="insert", extra_columns="ignore")
            have = set(lf.collect_schema().names())
            missing = [c for c in empty.columns if c not in have]
            if missing:  # a nullable column added after these files (schemas/README.md)
                lf = lf.with_columns([pl.lit(None, dtype=empty.schema[c]).alias(c)
                                      for c in missing])
        else:
            lf = empty.lazy()
        tcol = pl.col(schema.time_column)
        if start is not None:
            lf = lf.filter(tcol >= to_ns(start))
        if end is not None:
            lf = lf.filter(tcol <= to_ns(end))
        listed = symbol_list(symbols)
        if listed is not None:
            name = next((c for c in _SYMBOL_COLUMNS if c in schema.names), None)
            if name is not None:
                lf = lf.filter(pl.col(name).cast(pl.Utf8).is_in(listed))
        return lf

    def _view_scan(self, dataset: str, symbols: Symbols | None, start: TimeLike | None,
                   end: TimeLike | None, root: Path | None) -> pl.LazyFrame:
        """:meth:`scan` of the SQL view (the decimals and labels)."""
        schema = self._schema(dataset)
        if root is not None:
            raise QueryError("scan(root=...) reads one root's stored columns: pass raw=True "
                             "(the SQL views are over every root)")
        where = []
        params: dict[str, Any] = {}
        tcol = _quote(schema.time_column)
        if start is not None:
            where.append(f"{tcol} >= $lo")
            params["lo"] = to_ns(start)
        if end is not None:
            where.append(f"{tcol} <= $hi")
            params["hi"] = to_ns(end)
        listed = symbol_list(symbols)
        name = next((c for c in _SYMBOL_COLUMNS if c in schema.names), None)
        if listed is not None and name is not None:
            where.append(f"list_contains($syms, {_quote(name)})")
            params["syms"] = listed
        query = f"SELECT * FROM {_quote(dataset)}"
        if where:
            query += " WHERE " + " AND ".join(where)
        return self.sql(query, params or None)

    # ------------------------------------------------------------------ SQL

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection with ``raw_<dataset>`` relations, views and macros
        registered (opened on first use; :meth:`close` closes it)."""
        if self._con is None:
            self._con = self._connect()
            # close before interpreter exit: the connection holds our Python UDFs
            weakref.finalize(self, self._con.close)
        return self._con

    def _connect(self) -> duckdb.DuckDBPyConnection:
        import duckdb
        import pyarrow as pa

        con = duckdb.connect(":memory:")
        for name, schema in self.schemas.items():
            files = [str(p) for p in self.files(name)]
            empty = pa.table({f.name: pa.array([], f.type) for f in _plain_arrow_schema(schema)})
            if not files:
                con.register(f"raw_{name}", empty)
                continue
            rel = con.read_parquet(files, union_by_name=True)
            missing = [c for c in empty.column_names if c not in rel.columns]
            if missing:
                # files written before a nullable column was added (the migration rule in
                # schemas/README.md): the column reads as NULL, typed as the schema says
                full = con.from_arrow(empty)
                types = dict(zip(full.columns, full.types, strict=True))
                rel = rel.select(*[duckdb.ColumnExpression(c) for c in rel.columns],
                                 *[duckdb.ConstantExpression(None).cast(types[c]).alias(c)
                                   for c in missing])
            rel.create_view(f"raw_{name}")
        self._register_functions(con)
        # the label decoders of coded columns, generated from schemas/*.toml (10_views uses them)
        con.execute("".join(s.label_macros_sql() for s in self.schemas.values()))
        for path in sql_files(self._queries):
            con.execute(path.read_text("utf-8"))
        return con

    def _register_functions(self, con: duckdb.DuckDBPyConnection) -> None:
        """Scalar functions backed by the exact book engine (see queries/20_analytics.sql)."""
        from duckdb import func

        l2 = ("side VARCHAR, level INTEGER, queue INTEGER, order_id VARCHAR, "
              "price DECIMAL(38,18), qty DECIMAL(38,18), qty_ahead DECIMAL(38,18), "
              "order_ts_ns BIGINT, valid BOOLEAN, reason VARCHAR, epoch BIGINT, "
              "checksum UBIGINT, checksum_ok BOOLEAN, cut_recv_ns BIGINT")
        bbo = ("recv_ns BIGINT, ts_ns BIGINT, epoch BIGINT, bid DECIMAL(38,18), "
               "bid_qty DECIMAL(38,18), ask DECIMAL(38,18), ask_qty DECIMAL(38,18), "
               "checksum_ok BOOLEAN")
        con.create_function("kr_book", self._udf_book,
                            ["VARCHAR", "VARCHAR", "BIGINT", "BIGINT", "VARCHAR"],
                            f"STRUCT({l2})[]",
                            null_handling=func.FunctionNullHandling.SPECIAL,
                            side_effects=False)
        con.create_function("kr_bbo", self._udf_bbo,
                            ["VARCHAR", "VARCHAR", "BIGINT", "BIGINT", "VARCHAR"],
                            f"STRUCT({bbo})[]",
                            null_handling=func.FunctionNullHandling.SPECIAL,
                            side_effects=False)

    def _udf_book(self, channel: str | None, symbol: str | None, at: int | None,
                  depth: int | None, clock: str | None) -> list[dict[str, Any]]:
        from decimal import Decimal

        from recorder.protocol.numbers import units_to_text

        if symbol is None or at is None:
            return []
        b = self.books.book_at(symbol, at, channel=_channel(channel or DEFAULT_CHANNEL),
                               depth=depth, clock=_clock(clock or "exchange"))
        meta = {"valid": b.valid, "reason": b.reason, "epoch": b.epoch, "checksum": b.checksum,
                "checksum_ok": b.checksum_ok, "cut_recv_ns": b.cut_recv_ns}
        if not b.valid:
            return [{"side": None, "level": None, "queue": None, "order_id": None,
                     "price": None, "qty": None, "qty_ahead": None, "order_ts_ns": None,
                     **meta}]
        pp, qp = b.price_precision or 0, b.qty_precision or 0
        out = []
        for side, rows in (("bid", b.bids), ("ask", b.asks)):
            for r in rows:
                if b.channel in ("book", "futures_book"):
                    level, pu, qu = r[:3]
                    queue = oid = ts = ahead = None
                else:
                    level, queue, oid, pu, qu, ts, ahead_u = r
                    ahead = Decimal(units_to_text(ahead_u, qp))
                out.append({"side": side, "level": level, "queue": queue, "order_id": oid,
                            "price": Decimal(units_to_text(pu, pp)),
                            "qty": Decimal(units_to_text(qu, qp)), "qty_ahead": ahead,
                            "order_ts_ns": ts, **meta})
        return out

    def _udf_bbo(self, channel: str | None, symbol: str | None, start: int | None,
                 end: int | None, clock: str | None) -> list[dict[str, Any]]:
        if symbol is None or start is None or end is None:
            return []
        # a damaged file is re-checked by the query that runs this function
        return self._bbo(symbol, start, end, _channel(channel or DEFAULT_CHANNEL),
                         _clock(clock or "exchange"))

    def sql(self, query: str, params: Params = None) -> pl.LazyFrame:
        """Run SQL over every view and macro as a Polars LazyFrame (as :func:`polars.sql`
        does): the query is checked now, and runs when the frame is collected (each
        ``.collect()`` runs it again). Values only as bound ``params`` (``?`` with a sequence,
        ``$name`` with a mapping), never formatted into the text.

        A statement that is not a single ``SELECT`` (``CREATE``, ``SET``...) runs now; its
        result, if any, is the frame's content.

            >>> lf = ar.sql("SELECT symbol, min(price) AS low FROM trades WHERE symbol = $s "
            ...             "GROUP BY symbol", {"s": "BTC/USD"})
            >>> lf.collect().rows()
            [('BTC/USD', Decimal('92573.400000000000000000'))]
            >>> ar.sql("SELECT ?::VARCHAR AS v", ["x'; DROP TABLE trades; --"]).collect().item()
            "x'; DROP TABLE trades; --"
        """
        import duckdb
        import polars as pl

        statements = duckdb.extract_statements(query)
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            def now() -> pl.DataFrame:
                rel = self.connection.sql(query, params=params)
                frame: pl.DataFrame = pl.DataFrame() if rel is None else rel.pl()
                return frame

            return self._retrying(now).lazy()

        def fetch() -> pl.DataFrame:
            frame: pl.DataFrame = self.connection.sql(query, params=params).pl()
            return frame

        def run() -> pl.DataFrame:
            return self._retrying(fetch)

        schema = self._retrying(lambda: self._result_schema(query, params))
        return pl.defer(run, schema=schema, validate_schema=True)

    def _result_schema(self, query: str, params: Params) -> pl.Schema:
        """The Polars schema of a query's result, from DuckDB's binding alone (the query does
        not run: typed NULLs go through the same conversion as its rows will)."""
        rel = self.connection.sql(query, params=params)
        cols = ", ".join(f"CAST(NULL AS {t}) AS {_quote(c)}"
                         for c, t in zip(rel.columns, rel.types, strict=True))
        empty: pl.DataFrame = self.connection.sql(f"SELECT {cols} LIMIT 0").pl()
        return empty.schema

    def relation(self, query: str, params: Params = None) -> duckdb.DuckDBPyRelation:
        """Like :meth:`sql` but a DuckDB relation (``.pl()``, ``.arrow()``,
        ``.write_parquet()``, chained ``.filter()``/``.aggregate()``...), as
        ``duckdb.sql`` returns. Not re-run when a damaged file is found while it is read
        (:meth:`sql` is).

            >>> rel = ar.relation("SELECT symbol, count(*) AS n FROM trades GROUP BY symbol")
            >>> rel.filter("symbol = 'BTC/USD'").fetchall()
            [('BTC/USD', 22)]
        """
        return self.connection.sql(query, params=params)

    # ------------------------------------------------------------------ books

    def book_at(self, symbol: str, time: TimeLike, /, *, channel: Channel = DEFAULT_CHANNEL,
                depth: int | None = None, clock: Clock = "exchange") -> BookAt:
        """Exact book of ``symbol`` at ``time`` (see :mod:`recorder.query.books`).

        ``channel``: ``"book"`` (L2 levels, the default, as in the SQL macro ``book_at``),
        ``"level3"`` (orders) or ``"futures_book"`` (a Futures product's full book;
        ``symbol`` = the product id); ``depth``: top N price levels per side (None = all
        recorded); ``clock``: ``"exchange"`` (Kraken's timestamps) or ``"receive"`` (ours).
        ``.frame`` is a Polars DataFrame of exact decimals (and the integer units beside
        them); ``.valid`` False means no valid book exists at that time (``.reason``,
        ``.gap``).

            >>> b = ar.book_at("BTC/USD", "2025-01-01T00:00:01Z", depth=2)
            >>> b.frame.select("side", "level", "price").rows()   # doctest: +NORMALIZE_WHITESPACE
            [('bid', 1, Decimal('92577.8')), ('bid', 2, Decimal('92577.4')),
             ('ask', 1, Decimal('92580.4')), ('ask', 2, Decimal('92580.5'))]
            >>> l3 = ar.book_at("BTC/USD", "2025-01-01T00:00:01Z", channel="level3", depth=1)
            >>> l3.valid, l3.frame.columns[:4]
            (True, ['side', 'level', 'queue', 'order_id'])
            >>> ar.book_at("BTC/USD", "2020-01-01").reason      # doctest: +ELLIPSIS
            'before the first recorded book data of BTC/USD: ...'
        """
        at = to_ns(time)
        return self._retrying(lambda: self.books.book_at(symbol, at, channel=channel,
                                                         depth=depth, clock=clock))

    def replay(self, symbol: str, start: TimeLike, end: TimeLike, /, *,
               channel: Channel = DEFAULT_CHANNEL,
               clock: Clock = "exchange") -> Iterator[BookEvent | ReplayGap]:
        """Iterate the messages of ``symbol`` (the book after each) between ``start`` and
        ``end``, on ``channel`` (default ``"book"``). A read that fails on a damaged file
        before the first message is retried without it; later, the error is raised (the file
        is then known: a new replay leaves it out).

            >>> events = list(ar.replay("BTC/USD", "2025-01-01T00:00:01Z",
            ...                         "2025-01-01T00:00:02Z"))
            >>> len(events) > 0, all(e.checksum == e.exchange_checksum for e in events)
            (True, True)
        """
        lo, hi = to_ns(start), to_ns(end)

        def first() -> tuple[Iterator[BookEvent | ReplayGap], BookEvent | ReplayGap | None]:
            items = self.books.replay(symbol, lo, hi, channel=channel, clock=clock)
            return items, next(items, None)

        items, head = self._retrying(first)
        return iter(()) if head is None else _chain(head, items)

    def cross_source(self, symbols: Symbols | None = None, *, channel: Channel = DEFAULT_CHANNEL,
                     depth: int | None = None, start: TimeLike | None = None,
                     end: TimeLike | None = None,
                     tolerance: Every | int = "1s") -> pl.LazyFrame:
        """Every disagreement between the WebSocket and the FIX book of ``symbols`` (default:
        each symbol recorded over both) on ``channel`` (``"book"`` or ``"level3"``), one row
        per differing (side, level): ``symbol``, ``channel``, ``time_ns`` (exchange clock),
        ``ws_epoch``, ``fix_epoch``, ``ws_recv_ns``, ``fix_recv_ns``, ``side``, ``level``,
        ``ws_price``, ``ws_qty``, ``fix_price``, ``fix_qty`` (exact decimal text; null where
        that source has no such level) and ``kind`` (``price``, ``qty``, ``missing_ws``,
        ``missing_fix``). The books are compared at every FIX message time in
        ``[start, end]``; the FIX book agrees when it equals any WebSocket book that holds
        within ``tolerance`` (a Polars-style duration, a timedelta or int ns) of that time.
        Times inside a gap of either source are not compared. The rule is in
        :mod:`recorder.query.cross`; :meth:`cross_source_summary` counts the comparisons.

            >>> ar.cross_source().collect().height   # this archive has no FIX recording
            0
        """
        rows, _ = self._cross(symbols, channel, depth, start, end, tolerance)
        return rows.lazy()

    def cross_source_summary(self, symbols: Symbols | None = None, *,
                             channel: Channel = DEFAULT_CHANNEL, depth: int | None = None,
                             start: TimeLike | None = None, end: TimeLike | None = None,
                             tolerance: Every | int = "1s") -> pl.LazyFrame:
        """One row per symbol of :meth:`cross_source`: ``depth`` compared, ``ws_epochs``,
        ``fix_epochs``, ``comparisons`` (FIX message times compared), ``skipped`` (no
        WebSocket book at that time), ``disagreements`` (times that disagree), ``rows`` and
        the first and last time compared.

            >>> ar.cross_source_summary().collect().height
            0
        """
        _, summary = self._cross(symbols, channel, depth, start, end, tolerance)
        return summary.lazy()

    def _cross(self, symbols: Symbols | None, channel: str, depth: int | None,
               start: TimeLike | None, end: TimeLike | None,
               tolerance: Every | int) -> tuple[pl.DataFrame, pl.DataFrame]:
        from recorder.query.cross import compare_sources

        if isinstance(tolerance, bool):
            raise QueryError("tolerance= takes a duration such as '1s', a timedelta or int ns")
        tol = tolerance if isinstance(tolerance, int) else _every_us(tolerance) * 1000 \
            if tolerance not in ("0", "0s") else 0
        lo = None if start is None else to_ns(start)
        hi = None if end is None else to_ns(end)
        return self._retrying(lambda: compare_sources(
            self, symbols=symbol_list(symbols), channel=channel, depth=depth, start=lo, end=hi,
            tolerance_ns=tol).frames())

    def bbo(self, symbol: str, start: TimeLike, end: TimeLike, /, *,
            channel: Channel = DEFAULT_CHANNEL, clock: Clock = "exchange") -> pl.LazyFrame:
        """Top of book of ``symbol`` in force at ``start`` (first row, when valid) and after
        every message up to ``end``, as a LazyFrame (the SQL macro ``bbo_series``):
        ``recv_ns``, ``ts_ns``, ``epoch``, ``bid``, ``bid_qty``, ``ask``, ``ask_qty`` (exact
        decimals), ``checksum_ok`` (null: no checksum sent), ``recv_time``, ``exchange_time``,
        ``mid``, ``spread`` (decimals) and ``spread_bps``.

            >>> top = ar.bbo("BTC/USD", "2025-01-01T00:00:01Z", "2025-01-01T00:00:02Z")
            >>> top.select("bid", "ask").head(1).collect().rows()
            [(Decimal('92577.800000000000000000'), Decimal('92580.400000000000000000'))]
        """
        return self.sql(self._named("bbo"),
                        {"sym": symbol, "lo": to_ns(start), "hi": to_ns(end),
                         "chan": _channel(channel), "clock": _clock(clock)})

    def _bbo(self, symbol: str, start: int, end: int, channel: Channel,
             clock: Clock) -> list[dict[str, Any]]:
        """The rows of :meth:`bbo` (the SQL function ``kr_bbo``)."""
        from decimal import Decimal

        from recorder.protocol.numbers import units_to_text

        start_ns, end_ns = to_ns(start), to_ns(end)
        out: list[dict[str, Any]] = []
        first = self.books.book_at(symbol, start_ns, channel=channel, clock=clock)
        if first.valid and first.book is not None:  # the book in force at `start`
            book = first.book
            pp, qp = book.price_precision or 0, book.qty_precision or 0
            bb, ba = book.best_bid(), book.best_ask()
            out.append({
                "recv_ns": first.cut_recv_ns,
                "ts_ns": first.last_message_ts_ns if clock == "receive" else start_ns,
                "epoch": first.epoch,
                "bid": None if bb is None else Decimal(units_to_text(bb[0], pp)),
                "bid_qty": None if bb is None else Decimal(units_to_text(bb[1], qp)),
                "ask": None if ba is None else Decimal(units_to_text(ba[0], pp)),
                "ask_qty": None if ba is None else Decimal(units_to_text(ba[1], qp)),
                "checksum_ok": first.checksum_ok,
            })
        for ev in self.books.replay(symbol, start_ns, end_ns, channel=channel, clock=clock):
            if not isinstance(ev, BookEvent):
                continue
            book = ev.book
            pp, qp = book.price_precision or 0, book.qty_precision or 0
            bb, ba = book.best_bid(), book.best_ask()
            out.append({
                "recv_ns": ev.recv_ns, "ts_ns": ev.ts_ns, "epoch": ev.epoch,
                "bid": None if bb is None else Decimal(units_to_text(bb[0], pp)),
                "bid_qty": None if bb is None else Decimal(units_to_text(bb[1], qp)),
                "ask": None if ba is None else Decimal(units_to_text(ba[0], pp)),
                "ask_qty": None if ba is None else Decimal(units_to_text(ba[1], qp)),
                "checksum_ok": (None if ev.exchange_checksum is None
                                else ev.checksum == ev.exchange_checksum),
            })
        return out

    # ------------------------------------------------------------------ helpers

    def _named(self, name: str) -> str:
        """One statement from ``<queries>/api/<name>.sql`` (the API's own parameterised
        queries), from the ``queries`` directory this archive was opened with."""
        return ((self._queries or queries_dir()) / "api" / f"{name}.sql").read_text("utf-8")

    def trades(self, symbols: Symbols | None = None, *, start: TimeLike | None = None,
               end: TimeLike | None = None) -> pl.LazyFrame:
        """Trades (the ``trades`` view, deduplicated by trade id across the WebSocket snapshot,
        live feed and REST backfill) with receive time in ``[start, end]``, in receive order.

            >>> t = ar.trades("BTC/USD", end="2025-01-01T00:00:02Z").collect()
            >>> t.select("side", "price", "qty").row(0)
            ('buy', Decimal('92579.100000000000000000'), Decimal('2.000000000000000000'))
        """
        return self.sql(self._named("trades_between"),
                        {"syms": symbol_list(symbols),
                         "lo": None if start is None else to_ns(start),
                         "hi": None if end is None else to_ns(end)})

    def ohlc(self, every: Every = "1m", *, symbols: Symbols | None = None,
             start: TimeLike | None = None, end: TimeLike | None = None,
             clock: Clock = "exchange") -> pl.LazyFrame:
        """OHLCV candles resampled from :meth:`trades` at any ``every``: a Polars-style
        duration (``"1m"``, ``"15s"``, ``"1h"``, ``"1d"``, ``"1m30s"``; units ns us ms s m h
        d w) or a :class:`datetime.timedelta`, whole microseconds. Buckets on ``clock``
        (``"exchange"``: Kraken's trade times; ``"receive"``: ours), in ``[start, end)``.
        ``open``/``high``/``low``/``close``/``volume`` are exact decimals (``notional`` and
        ``vwap`` are floats).

            >>> import datetime as dt
            >>> exact = ["bucket", "open", "high", "low", "close", "volume", "trades"]
            >>> c = ar.ohlc("1s", symbols="BTC/USD").collect()
            >>> c.select(exact).equals(
            ...     ar.ohlc(dt.timedelta(seconds=1), symbols=["BTC/USD"]).select(exact).collect())
            True
            >>> c["trades"].sum() == ar.trades("BTC/USD").collect().height
            True
        """
        return self.sql(self._named("ohlc"),
                        {"every_us": _every_us(every), "syms": symbol_list(symbols),
                         "lo": None if start is None else to_ns(start),
                         "hi": None if end is None else to_ns(end), "clock": _clock(clock)})

    def gaps(self, symbols: Symbols | None = None, *,
             channels: str | Sequence[str] | None = None) -> pl.LazyFrame:
        """Recorded gaps of ``symbols`` on ``channels`` (each one name or a sequence; the
        ``*`` rows, which cover every symbol or channel, are always included), by start.

            >>> g = ar.gaps("BTC/USD", channels=["book", "level3"])
            >>> {"channel", "symbol", "start_ns", "end_ns", "cause"} <= set(g.collect_schema())
            True
        """
        return self.sql(self._named("gaps_for"),
                        {"syms": symbol_list(symbols), "chans": symbol_list(channels)})

    def epochs(self, symbols: Symbols | None = None, *,
               channels: str | Sequence[str] | None = None) -> pl.LazyFrame:
        """Validated stretches of ``symbols`` on ``channels`` (each one name or a sequence),
        one row per epoch, by channel, symbol and start.

            >>> ar.epochs("BTC/USD", channels=["book", "level3"]).select("channel").collect(
            ...     ).to_series().to_list()
            ['book', 'level3']
        """
        return self.sql(self._named("epochs_for"),
                        {"syms": symbol_list(symbols), "chans": symbol_list(channels)})

    def describe(self, dataset: str) -> pl.LazyFrame:
        """The dataset's documented columns (from its schema file: ``labels`` spells out the
        codes of a coded column, e.g. ``0 buy, 1 sell``) beside the view's columns and types.

            >>> d = ar.describe("trades").collect()
            >>> d.filter(d["column"] == "side").select("labels", "view_type").row(0)
            ('0 buy, 1 sell', 'VARCHAR')
        """
        import polars as pl

        schema = self._schema(dataset)
        documented = pl.LazyFrame({
            "column": [c.name for c in schema.columns],
            "type": [c.type for c in schema.columns],
            "doc": [c.doc for c in schema.columns],
            "labels": [", ".join(f"{code} {label}" for label, code in c.codes().items())
                       or None for c in schema.columns],
        }, schema_overrides={"labels": pl.Utf8})
        view = self.sql(self._named("describe_view"), {"view": dataset})
        return documented.join(view, how="full", left_on="column", right_on="view_column",
                               coalesce=False)



def _chain(first: _T, rest: Iterator[_T]) -> Iterator[_T]:
    yield first
    yield from rest

