"""``recorder.Archive``: the researcher's entry point to a recorded archive.

    >>> from recorder import Archive
    >>> ar = Archive("/data/kraken")          # one root, or the parent of capture's roots
    >>> ar = Archive(["/mnt/a", "/mnt/b"])    # several roots/parents, merged
    >>> ar.sql("SELECT symbol, count(*) FROM trades WHERE symbol = ? GROUP BY ALL", ["BTC/USD"])
    >>> b = ar.book_at("BTC/USD", "2025-01-01T12:00:00Z", channel="book", depth=25)
    >>> b.frame, b.epoch, b.checksum, b.checksum_ok
    >>> ar.scan("level3", symbols=["BTC/USD"], start="2025-01-01").filter(...).collect()

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
other file still answers. Files are checked cheaply (footer, row count) when first needed; a read that fails anyway (damage inside a data page) decodes the candidate files in
full, leaves out the ones that fail and runs again. :meth:`Archive.unreadable` lists them.
A book is never rebuilt across an unreadable file: :meth:`Archive.book_at` answers
``valid=False`` with the reason, :meth:`Archive.replay` yields a :class:`ReplayGap`.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from recorder.archive.health import FileHealth, FileProblem
from recorder.archive.schema import DatasetSchema, load_schemas
from recorder.archive.store import ArchiveStore
from recorder.archive.store import FileEntry
from recorder.query.books import BookAt, BookEvent, BookRouter, Channel, Clock, ReplayGap
from recorder.query.timeparse import TimeLike, to_ns
from recorder.remote import is_remote, resolve
from recorder.resources import queries_dir as packaged_queries_dir
from recorder.roots import PathSpec, archive_roots

if TYPE_CHECKING:
    import duckdb
    import polars as pl

__all__ = ["Archive", "queries_dir", "sql_files"]

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


def _plain_arrow_schema(schema: DatasetSchema) -> Any:
    """Arrow schema of a dataset with dictionary strings as plain strings (empty relations)."""
    import pyarrow as pa

    fields = [pa.field(f.name, pa.string() if pa.types.is_dictionary(f.type) else f.type)
              for f in schema.arrow()]
    return pa.schema(fields)


class Archive:
    """Read-only query access to one archive root, a parent of roots, or several of them
    (see module docstring).

    ``root`` is the path given (the first one when a list is given); ``roots`` the archive
    roots found there, re-discovered by :meth:`refresh`. Raises
    :class:`recorder.roots.ArchiveRootError` (a ``ValueError``) when a path leads to no root.
    """

    def __init__(self, path: PathSpec, *, schema_dir: Path | None = None,
                 queries: Path | None = None) -> None:
        #: as given: ``s3://`` URLs stay URLs and are fetched again by :meth:`refresh`
        self._sources: list[Any] = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        self._spec: list[Path] = resolve(self._sources)
        self.root = self._spec[0] if self._spec else Path()
        self.roots: list[Path] = archive_roots(self._spec)
        self._schema_dir = schema_dir
        self._queries = queries
        self.schemas: dict[str, DatasetSchema] = load_schemas(schema_dir)
        self._con: duckdb.DuckDBPyConnection | None = None
        #: verdicts on the files' readability, cached by (path, size, mtime) across refreshes
        self._health = FileHealth()
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
        self._entries: list[tuple[Path, FileEntry]] = [
            (root, f) for root in self.roots
            for f in ArchiveStore(root, schema_dir=self._schema_dir).state.files]
        #: (root, file) -> its problem (None: readable), checked when first needed
        self._problems: dict[tuple[Path, str], FileProblem | None] = {}
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
        return sorted(self.schemas)

    def _schema(self, dataset: str) -> DatasetSchema:
        try:
            return self.schemas[dataset]
        except KeyError:
            raise KeyError(f"unknown dataset {dataset!r}; one of {self.datasets}") from None

    def files(self, dataset: str, *, symbols: Sequence[str] | None = None,
              start: TimeLike | None = None, end: TimeLike | None = None,
              root: Path | None = None) -> list[Path]:
        """Live files of ``dataset`` that may hold rows of ``symbols`` with the dataset's time
        column in ``[start, end]`` (manifest pruning: per-file symbol lists and min/max time).
        Every root's files (or only ``root``'s, one of :attr:`roots`), each root's in commit
        order, which is wire order. Unreadable files are left out (see :meth:`unreadable`)."""
        return [r / f.file for r, f in self._candidates(dataset, symbols, start, end, root)
                if self._problem(r, f) is None]

    def unreadable_files(self, dataset: str, *, symbols: Sequence[str] | None = None,
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
        file in full first; otherwise the cheap checks and what failed reads found)."""
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

    def _candidates(self, dataset: str, symbols: Sequence[str] | None,
                    start: TimeLike | None, end: TimeLike | None,
                    root: Path | None) -> list[tuple[Path, FileEntry]]:
        """Manifest pruning for :meth:`files` (readable or not)."""
        self._schema(dataset)
        if root is not None and root not in self.roots:
            raise KeyError(f"{root} is not one of this archive's roots {self.roots}")
        lo = None if start is None else to_ns(start)
        hi = None if end is None else to_ns(end)
        wanted = None if symbols is None else set(symbols)
        out = []
        for r, f in self._entries:
            if f.dataset != dataset or (root is not None and r != root):
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

    def scan(self, dataset: str, *, symbols: Sequence[str] | None = None,
             start: TimeLike | None = None, end: TimeLike | None = None,
             root: Path | None = None) -> pl.LazyFrame:
        """Polars LazyFrame of one dataset's raw columns (``schemas/<dataset>.toml``), over
        every root (or only ``root``). Coded columns are raw codes (their labels: the SQL
        views, :meth:`describe`, or the schema's ``labels``).

        Files are pruned with the manifest; ``symbols``/``start``/``end`` (inclusive, on the
        dataset's time column) are also applied as row filters, so the result is exact.
        An archive without files of ``dataset`` gives an empty frame with the schema.
        """
        import polars as pl

        schema = self._schema(dataset)
        files = self.files(dataset, symbols=symbols, start=start, end=end, root=root)
        import pyarrow as pa

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
        if symbols is not None:
            name = next((c for c in _SYMBOL_COLUMNS if c in schema.names), None)
            if name is not None:
                lf = lf.filter(pl.col(name).cast(pl.Utf8).is_in(list(symbols)))
        return lf

    # ------------------------------------------------------------------ SQL

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """DuckDB connection with ``raw_<dataset>`` relations, views and macros registered."""
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
        l2 = ("side VARCHAR, level INTEGER, queue INTEGER, order_id VARCHAR, "
              "price DECIMAL(38,18), qty DECIMAL(38,18), qty_ahead DECIMAL(38,18), "
              "order_ts_ns BIGINT, valid BOOLEAN, reason VARCHAR, epoch BIGINT, "
              "checksum UBIGINT, checksum_ok BOOLEAN, cut_recv_ns BIGINT")
        bbo = ("recv_ns BIGINT, ts_ns BIGINT, epoch BIGINT, bid DECIMAL(38,18), "
               "bid_qty DECIMAL(38,18), ask DECIMAL(38,18), ask_qty DECIMAL(38,18), "
               "checksum_ok BOOLEAN")
        con.create_function("kr_book", self._udf_book,
                            ["VARCHAR", "VARCHAR", "BIGINT", "BIGINT", "VARCHAR"],
                            f"STRUCT({l2})[]", null_handling="special", side_effects=False)
        con.create_function("kr_bbo", self._udf_bbo,
                            ["VARCHAR", "VARCHAR", "BIGINT", "BIGINT", "VARCHAR"],
                            f"STRUCT({bbo})[]", null_handling="special", side_effects=False)

    def _udf_book(self, channel: str | None, symbol: str | None, at: int | None,
                  depth: int | None, clock: str | None) -> list[dict[str, Any]]:
        from decimal import Decimal

        from recorder.protocol.numbers import units_to_text

        if symbol is None or at is None:
            return []
        b = self.books.book_at(symbol, at, channel=(channel or "book"),  # type: ignore[arg-type]
                               depth=depth, clock=(clock or "exchange"))  # type: ignore[arg-type]
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
        # not self.bbo: a damaged file is re-checked by the query that runs this function
        return self._bbo(symbol, start, end, channel=(channel or "book"),  # type: ignore[arg-type]
                         clock=(clock or "exchange"))  # type: ignore[arg-type]

    def sql(self, query: str, params: Sequence[Any] | dict[str, Any] | None = None
            ) -> pl.DataFrame:
        """Run SQL with every view and macro registered; values only as bound ``params``.

        Returns a Polars DataFrame (empty for statements without a result).
        """
        import polars as pl

        def run() -> pl.DataFrame:
            rel = self.connection.sql(query, params=params)
            return pl.DataFrame() if rel is None else rel.pl()

        return self._retrying(run)

    def relation(self, query: str, params: Sequence[Any] | dict[str, Any] | None = None
                 ) -> duckdb.DuckDBPyRelation:
        """Like :meth:`sql` but a lazy DuckDB relation (``.pl()``, ``.to_arrow_table()``,
        ``.write_parquet()``...). Not re-run when a damaged file is found while it is read
        (:meth:`sql` is)."""
        return self.connection.sql(query, params=params)

    # ------------------------------------------------------------------ books

    def book_at(self, symbol: str, time: TimeLike, channel: Channel = "level3",
                depth: int | None = None, clock: Clock = "exchange") -> BookAt:
        """Exact book of ``symbol`` at ``time`` (see :mod:`recorder.query.books`).

        ``channel``: ``"level3"`` (orders), ``"book"`` (L2 levels) or ``"futures_book"``
        (a Futures product's full book; ``symbol`` = the product id); ``depth``: top N price
        levels per side (None = all recorded); ``clock``: ``"exchange"`` (Kraken's timestamps)
        or ``"receive"`` (ours). ``.frame`` is a Polars DataFrame; ``.valid`` False means no
        valid book exists at that time (``.reason``, ``.gap``).
        """
        at = to_ns(time)
        return self._retrying(lambda: self.books.book_at(symbol, at, channel=channel,
                                                         depth=depth, clock=clock))

    def replay(self, symbol: str, start: TimeLike, end: TimeLike, channel: Channel = "level3",
               clock: Clock = "exchange") -> Iterator[BookEvent | ReplayGap]:
        """Iterate the messages (book after each) between ``start`` and ``end``. A read that
        fails on a damaged file before the first message is retried without it; later, the
        error is raised (the file is then known: a new replay leaves it out)."""
        lo, hi = to_ns(start), to_ns(end)

        def first() -> tuple[Iterator[BookEvent | ReplayGap], BookEvent | ReplayGap | None]:
            items = self.books.replay(symbol, lo, hi, channel=channel, clock=clock)
            return items, next(items, None)

        items, head = self._retrying(first)
        return iter(()) if head is None else _chain(head, items)

    def bbo(self, symbol: str, start: TimeLike, end: TimeLike, channel: Channel = "book",
            clock: Clock = "exchange") -> list[dict[str, Any]]:
        """Top of book in force at ``start`` (first row, when valid) and after every message
        up to ``end``: recv_ns, ts_ns, epoch, bid, bid_qty, ask, ask_qty (exact Decimals) and
        checksum_ok (None: no checksum sent)."""
        lo, hi = to_ns(start), to_ns(end)
        return self._retrying(lambda: self._bbo(symbol, lo, hi, channel, clock))

    def _bbo(self, symbol: str, start: int, end: int, channel: Channel,
             clock: Clock) -> list[dict[str, Any]]:
        from decimal import Decimal

        from recorder.protocol.numbers import units_to_text

        start_ns, end_ns = to_ns(start), to_ns(end)
        out = []
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

    def trades(self, symbol: str | None = None, start: TimeLike | None = None,
               end: TimeLike | None = None) -> pl.DataFrame:
        """Trades (``trades`` view, deduplicated by trade id) by receive time, inclusive."""
        return self.sql(_load_named("trades_between"),
                        {"sym": symbol, "lo": None if start is None else to_ns(start),
                         "hi": None if end is None else to_ns(end)})

    def ohlc(self, every: str = "1 minute", symbol: str | None = None,
             start: TimeLike | None = None, end: TimeLike | None = None,
             clock: Clock = "exchange") -> pl.DataFrame:
        """OHLCV candles resampled from trades at any ``every`` (a DuckDB interval text such
        as ``"1 minute"``, ``"15 seconds"``, ``"1 hour"``)."""
        return self.sql(_load_named("ohlc"),
                        {"every": every, "sym": symbol,
                         "lo": None if start is None else to_ns(start),
                         "hi": None if end is None else to_ns(end), "clock": clock})

    def gaps(self, symbol: str | None = None, channel: str | None = None) -> pl.DataFrame:
        """Recorded gaps (``*`` rows always included), ordered by start."""
        return self.sql(_load_named("gaps_for"), {"sym": symbol, "chan": channel})

    def epochs(self, symbol: str | None = None, channel: str | None = None) -> pl.DataFrame:
        """Validated stretches per (channel, symbol), one row per epoch."""
        return self.sql(_load_named("epochs_for"), {"sym": symbol, "chan": channel})

    def describe(self, dataset: str) -> pl.DataFrame:
        """The dataset's documented columns (from its schema file: ``labels`` spells out the
        codes of a coded column, e.g. ``0 buy, 1 sell``, as :meth:`scan` returns codes) and the
        view's columns."""
        import polars as pl

        schema = self._schema(dataset)
        view = self.sql(_load_named("describe_view"), {"view": dataset})
        return pl.DataFrame({
            "column": [c.name for c in schema.columns],
            "type": [c.type for c in schema.columns],
            "doc": [c.doc for c in schema.columns],
            "labels": [", ".join(f"{code} {label}" for label, code in c.codes().items())
                       or None for c in schema.columns],
        }, schema_overrides={"labels": pl.Utf8}).join(
            view, how="full", left_on="column", right_on="view_column", coalesce=False)


def _chain(first: _T, rest: Iterator[_T]) -> Iterator[_T]:
    yield first
    yield from rest


def _load_named(name: str) -> str:
    """One statement from ``queries/api/<name>.sql`` (the API's own parameterised queries)."""
    return (queries_dir() / "api" / f"{name}.sql").read_text("utf-8")
