"""An archive written by an earlier version stays readable (issue: upgrades).

``tests/data/archive-v1`` is a small archive committed as written by version 0.1.0 (schemas
v1, manifest format 2, journal format 2; how it was made is in ``archive-v1.expected.json``).
Every later version must read it as it is: find it, verify every Kraken checksum in it, query
it, rebuild a book from it, re-derive the same rows from its journal, and resume writing to it.
A change that breaks any of this needs the migration described in ``schemas/README.md``.
Tests work on a copy: the committed files are never written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recorder.archive.session import ArchiveSession
from recorder.roots import archive_roots
from recorder.verify import verify_archive

DATA = Path(__file__).resolve().parent / "data"
EXPECTED = json.loads((DATA / "archive-v1.expected.json").read_text())


@pytest.fixture()
def old_archive(tmp_path: Path) -> Path:
    copy = tmp_path / "archive-v1"
    shutil.copytree(DATA / "archive-v1", copy)
    return copy


def _rows(root: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in root.glob("data/dataset=*/date=*/*.parquet"):
        dataset = path.parent.parent.name.split("=", 1)[1]
        counts[dataset] = counts.get(dataset, 0) + pq.read_metadata(path).num_rows
    return counts


def test_old_archive_is_found_and_verifies(old_archive: Path) -> None:
    assert archive_roots(old_archive) == [old_archive]
    report = verify_archive(old_archive)
    assert report["failed"] == 0
    assert report["messages_checked"] == EXPECTED["messages_checked"]
    assert report["verified"] == EXPECTED["messages_checked"]


def test_old_archive_answers_queries_and_books(old_archive: Path) -> None:
    import recorder

    archive = recorder.Archive(old_archive)
    trades = archive.sql("SELECT count(*) AS n FROM trades").collect()["n"][0]
    assert trades == EXPECTED["rows"]["trades"]
    symbol = archive.sql("SELECT symbol FROM book GROUP BY symbol ORDER BY count(*) DESC LIMIT 1").collect()[
        "symbol"][0]
    last = archive.sql("SELECT max(recv_ns) AS t FROM book WHERE symbol = $1", [symbol]).collect()["t"][0]
    book = archive.book_at(symbol, int(last), channel="book", clock="receive")
    assert book.valid and book.checksum_ok is True and book.checksum == book.exchange_checksum


def test_old_journal_rederives_the_same_rows(old_archive: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from recorder.cli import main

    segments = sorted(str(p) for p in (old_archive / "journal").rglob("*.kjz"))
    fresh = tmp_path / "fresh"
    result = CliRunner().invoke(main, ["ingest", *segments, "--archive", str(fresh)])
    assert result.exit_code == 0, result.output
    rederived = _rows(fresh)
    for dataset in ("book", "level3", "trades", "ohlc", "checkpoints", "instruments"):
        assert rederived.get(dataset, 0) == EXPECTED["rows"].get(dataset, 0), dataset


def test_old_archive_can_be_written_again(old_archive: Path) -> None:
    session = ArchiveSession(old_archive, host="upgrade-test")
    session.start()
    session.close("operator")
    assert verify_archive(old_archive)["failed"] == 0
    assert _rows(old_archive)["book"] == EXPECTED["rows"]["book"]


def test_a_nullable_column_added_later_reads_as_null_in_old_files(old_archive: Path,
                                                                   tmp_path: Path) -> None:
    """The migration rule (schemas/README.md): a later schema version that adds a nullable
    column still reads the old files, through SQL and Polars, the new column being NULL."""
    import recorder

    schemas = tmp_path / "schemas"
    shutil.copytree(Path(__file__).resolve().parents[1] / "schemas", schemas)
    toml = schemas / "trades.toml"
    text = toml.read_text()
    assert "version = 1\n" in text and text.rstrip().endswith("]")
    text = text.replace("version = 1\n", "version = 2\n", 1).rstrip()[:-1] + (
        '  { name = "maker_order_id", type = "string", nullable = true, '
        'doc = "A column a later version adds." },\n]\n')
    toml.write_text(text)
    with recorder.Archive(old_archive) as v1, recorder.Archive(old_archive, schema_dir=schemas) as v2:
        assert v2.schemas["trades"].version == 2
        got = v2.sql("SELECT count(*) AS n, count(maker_order_id) AS m FROM raw_trades").collect()
        assert got["n"][0] == EXPECTED["rows"]["trades"] > 0 and got["m"][0] == 0
        old_cols = v1.sql("SELECT * FROM raw_trades ORDER BY symbol, trade_id").collect()
        new_cols = v2.sql("SELECT * EXCLUDE (maker_order_id) FROM raw_trades "
                          "ORDER BY symbol, trade_id").collect()
        assert new_cols.equals(old_cols)
        frame = v2.scan("trades", raw=True).collect()
        assert frame["maker_order_id"].null_count() == frame.height == EXPECTED["rows"]["trades"]
        assert frame.drop("maker_order_id").equals(v1.scan("trades", raw=True).collect())
