"""The researcher's API (issue #18 §2): one consistent, typed surface over the archive.

* every table comes back as its name says: a Polars LazyFrame (``sql``, ``scan``, the helpers)
  or a DuckDB relation (``relation``);
* Polars-style durations, one ``symbols=`` convention, one default channel (``book``) shared
  with the SQL macros, exact decimals by default and raw units with ``raw=True``;
* ``Archive(queries=...)`` is what every helper reads;
* one root exception, ``recorder.RecorderError``; ``mypy --strict`` passes on the public API.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import pkgutil
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

duckdb = pytest.importorskip("duckdb")
pl = pytest.importorskip("polars")

import recorder  # noqa: E402
from recorder.archive.schema import load_schemas  # noqa: E402
from recorder.ingest import ingest  # noqa: E402
from recorder.query.api import Archive, queries_dir  # noqa: E402
from recorder.query.books import QueryError  # noqa: E402
from tests.archive_helpers import make_sim_record  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
T1, T2 = "2025-01-01T00:00:01Z", "2025-01-01T00:00:02Z"


@pytest.fixture(scope="module")
def archive_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("api")
    make_sim_record(work / "sim.zst", messages=2500, pairs=3, seed=3)
    ingest([work / "sim.zst"], work / "archive")
    return work / "archive"


@pytest.fixture(scope="module")
def ar(archive_path: Path):
    with Archive(archive_path) as archive:
        yield archive


def test_the_public_surface() -> None:
    assert {"Archive", "RecorderError"} <= set(dir(recorder))
    assert recorder.Archive is Archive and inspect.isclass(recorder.Archive)
    # one class named Archive in the package's public modules
    import recorder.archive.store as store

    assert "Archive" not in dir(store) and "Archive" not in store.__all__
    assert store.ArchiveStore.__name__ == "ArchiveStore"
    with pytest.warns(DeprecationWarning, match="ArchiveStore"):  # the former name, for callers
        assert store.Archive is store.ArchiveStore  # not moved yet


def test_each_method_returns_what_its_name_says(ar: Archive) -> None:
    lazy = {
        "sql": ar.sql("SELECT 1 AS x"),
        "scan": ar.scan("trades"),
        "trades": ar.trades(),
        "ohlc": ar.ohlc(),
        "bbo": ar.bbo("BTC/USD", T1, T2),
        "gaps": ar.gaps(),
        "epochs": ar.epochs(),
        "describe": ar.describe("trades"),
    }
    for name, value in lazy.items():
        assert isinstance(value, pl.LazyFrame), name
        assert value.collect().width > 0, name
    assert isinstance(ar.relation("SELECT 1 AS x"), duckdb.DuckDBPyRelation)


def test_sql_is_lazy_and_checked_at_once(ar: Archive) -> None:
    with pytest.raises(duckdb.Error):  # a bad query is refused when it is given
        ar.sql("SELECT nope FROM trades")
    lf = ar.sql("SELECT count(*) AS n FROM trades WHERE symbol = ?", ["BTC/USD"])
    assert lf.collect_schema().names() == ["n"]
    assert lf.collect().item() == lf.collect().item() > 0
    # a statement that is not a query runs once, when given (not again at each collect)
    ar.sql("CREATE OR REPLACE TEMP TABLE api_once (x INTEGER)")
    ar.sql("INSERT INTO api_once VALUES (1)").collect()
    assert ar.sql("SELECT count(*) FROM api_once").collect().item() == 1


def test_scan_gives_the_views_decimals_and_raw_units_on_request(ar: Archive) -> None:
    view = ar.sql("SELECT * FROM trades WHERE symbol = 'BTC/USD'").collect()
    scanned = ar.scan("trades", symbols="BTC/USD").collect()
    assert scanned.equals(view)
    assert scanned.schema["price"] == pl.Decimal(38, 18) and scanned.schema["side"] == pl.String
    raw = ar.scan("trades", symbols="BTC/USD", raw=True).collect()
    assert raw.columns == load_schemas()["trades"].names
    assert raw.schema["price"] == pl.Int64 and raw.schema["side"].is_integer()
    assert [Decimal(u).scaleb(-s) for u, s in raw.select("price", "price_scale").rows()] == \
        scanned["price"].to_list()
    with pytest.raises(QueryError, match="raw=True"):
        ar.scan("trades", root=ar.roots[0])
    assert ar.scan("trades", root=ar.roots[0], raw=True).collect().height == raw.height + \
        ar.scan("trades", raw=True).filter(pl.col("symbol") != "BTC/USD").collect().height


def test_one_symbols_convention(ar: Archive) -> None:
    one = ar.trades("BTC/USD").collect()
    assert one.equals(ar.trades(["BTC/USD"]).collect()) and one.height > 0
    two = ar.trades(("BTC/USD", "ETH/USD")).collect()
    assert set(two["symbol"]) == {"BTC/USD", "ETH/USD"}
    assert two.height == one.height + ar.trades(symbols="ETH/USD").collect().height
    assert ar.scan("book", symbols="BTC/USD").collect().height == \
        ar.scan("book", symbols=["BTC/USD"]).collect().height
    for method in (Archive.files, Archive.scan, Archive.trades, Archive.ohlc, Archive.gaps,
                   Archive.epochs):
        params = inspect.signature(method).parameters
        assert "symbols" in params and "symbol" not in params, method.__name__
    with pytest.raises(QueryError):
        ar.trades([1, 2]).collect()  # type: ignore[list-item]


def test_polars_durations(ar: Archive) -> None:
    exact = ["symbol", "bucket_ns", "open", "high", "low", "close", "volume", "trades"]
    minute = ar.ohlc("1m").select(exact).collect()
    assert minute.height > 0
    for same in ("60s", "1m0s", dt.timedelta(minutes=1), "60000ms"):
        assert ar.ohlc(same).select(exact).collect().equals(minute), same
    seconds = ar.ohlc("1s", symbols="BTC/USD").collect()
    assert (seconds["bucket_ns"] % 1_000_000_000 == 0).all()
    assert seconds["trades"].sum() == ar.trades("BTC/USD").collect().height
    for bad in ("1 minute", "INTERVAL 1 MINUTE", "1mo", "500ns", "0s", "", dt.timedelta(0)):
        with pytest.raises(recorder.RecorderError):
            ar.ohlc(bad)


def test_one_default_channel_everywhere(ar: Archive) -> None:
    default = inspect.signature(Archive.book_at).parameters["channel"].default
    assert default == "book"
    for method in (Archive.bbo, Archive.replay):
        assert inspect.signature(method).parameters["channel"].default == default
    for macro in ("book_at", "bbo_series", "mid_spread", "trades_with_book"):
        assert f"channel := '{default}'" in _macro_text(macro), macro
    b = ar.book_at("BTC/USD", T1, depth=3)
    assert b.valid and b.channel == "book"
    sql = ar.sql("SELECT side, level, price FROM book_at(?, ?, depth := 3)",
                 ["BTC/USD", T1]).collect()
    assert sql.rows() == b.frame.select("side", "level", pl.col("price").cast(
        pl.Decimal(38, 18))).rows()
    top = ar.bbo("BTC/USD", T1, T2).collect()
    assert top.row(0, named=True)["bid"] == b.frame.filter(side="bid")["price"][0]
    assert top.schema["bid"] == pl.Decimal(38, 18) and top["checksum_ok"].all()


def _macro_text(name: str) -> str:
    text = (REPO / "queries" / "20_analytics.sql").read_text()
    start = text.index(f"MACRO {name}(")
    return text[start:text.index("AS TABLE", start)]


def test_the_archives_queries_directory_is_what_every_helper_reads(archive_path: Path,
                                                                    tmp_path: Path) -> None:
    """``Archive(queries=...)``: the helpers' own statements come from there too."""
    mine = tmp_path / "queries"
    shutil.copytree(queries_dir(), mine, symlinks=False)
    for sql in (mine / "api").glob("*.sql"):
        sql.write_text(f"SELECT *, 'mine' AS marker FROM (\n{sql.read_text()}\n)\n")
    with Archive(archive_path, queries=mine) as custom:
        frames = {"trades": custom.trades(), "ohlc": custom.ohlc(), "gaps": custom.gaps(),
                  "epochs": custom.epochs(), "describe": custom.describe("trades"),
                  "bbo": custom.bbo("BTC/USD", T1, T2)}
        for name, lf in frames.items():
            assert "marker" in lf.collect_schema().names(), name


def test_every_typed_exception_derives_from_recorder_error() -> None:
    """Each exception class the package defines (private helpers aside) is a RecorderError."""
    outside = []
    for info in pkgutil.walk_packages(recorder.__path__, "recorder."):
        if info.name.endswith("__main__") or info.name.startswith("recorder._core"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__ and not name.startswith("_")
                    and not issubclass(obj, recorder.RecorderError)):
                outside.append(f"{module.__name__}.{name}")
    assert outside == []
    with pytest.raises(recorder.RecorderError):
        Archive(REPO / "no-such-archive")


def test_mypy_strict_on_the_public_api() -> None:
    """``mypy --strict`` (the locked version, settings in pyproject.toml) finds nothing."""
    pytest.importorskip("mypy")
    cache = REPO / ".mypy_cache"
    proc = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
