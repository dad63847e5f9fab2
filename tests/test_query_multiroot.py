"""The query layer over several archive roots: a parent of writer roots, or a list of roots.

Two roots are built by two ingests of different sim recordings (BTC/USD, ETH/USD in one;
SOL/USD, XRP/USD in the other); a third (BTC/USD again, another seed) records a pair that a
second root also holds. A capture run of two workers against ``recorder sim`` checks the same
on the layout capture really writes (integration).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("duckdb")
pl = pytest.importorskip("polars")

from click.testing import CliRunner

from recorder.cli import main
from recorder.ingest import ingest
from recorder.query.api import Archive
from recorder.query.books import BookEvent, ReplayGap
from recorder.roots import ArchiveRootError

A_PAIRS = ["BTC/USD", "ETH/USD"]
B_PAIRS = ["SOL/USD", "XRP/USD"]


def _record(path: Path, pairs: list[str], seed: int) -> Path:
    subprocess.run([sys.executable, "-m", "recorder", "sim", "--record", str(path),
                    "--messages", "2500", "--pairs", ",".join(pairs), "--seed", str(seed)],
                   check=True, capture_output=True, timeout=60)
    return path


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("multiroot")
    ingest([_record(d / "a.zst", A_PAIRS, 3)], d / "archive" / "h-w0")
    ingest([_record(d / "b.zst", B_PAIRS, 4)], d / "archive" / "h-w1")
    (d / "archive" / "audits").mkdir()  # a non-root directory beside the roots
    ingest([_record(d / "c.zst", ["BTC/USD"], 9)], d / "extra" / "h2-w0")
    return d


def _count(ar: Archive, view: str) -> dict[str, int]:
    df = ar.sql(f"SELECT symbol, count(*) AS n FROM {view} GROUP BY symbol").collect()
    return dict(zip(df["symbol"].to_list(), df["n"].to_list()))


def test_parent_is_the_union_of_its_roots(parent: Path) -> None:
    a = Archive(parent / "archive" / "h-w0")
    b = Archive(parent / "archive" / "h-w1")
    both = Archive(parent / "archive")
    assert both.roots == [parent / "archive" / "h-w0", parent / "archive" / "h-w1"]
    for view in ("book", "level3", "trades", "epochs", "checkpoints"):
        ca, cb, cu = _count(a, view), _count(b, view), _count(both, view)
        assert set(ca) == set(A_PAIRS) and set(cb) == set(B_PAIRS), view
        assert cu == {**ca, **cb}, view
    assert both.files("trades") == a.files("trades") + b.files("trades")
    assert both.files("trades", root=b.roots[0]) == b.files("trades")
    assert (both.scan("book").select(pl.len()).collect().item()
            == sum(x.scan("book").select(pl.len()).collect().item() for x in (a, b)))
    # a list of roots is the same archive as their parent
    listed = Archive([parent / "archive" / "h-w1", parent / "archive" / "h-w0"])
    assert _count(listed, "trades") == _count(both, "trades")
    ohlc = both.ohlc("1m").collect()
    assert set(ohlc["symbol"].to_list()) == set(A_PAIRS) | set(B_PAIRS)


def _mid_time(ar: Archive, sym: str, channel: str) -> int:
    e = ar.epochs(sym, channels=channel).collect()
    return int((e["start_ns"][0] + e["end_ns"][0]) // 2)


@pytest.mark.parametrize("channel", ["level3", "book"])
def test_book_at_finds_the_root_holding_the_symbol(parent: Path, channel: str) -> None:
    both = Archive(parent / "archive")
    for sym, root in ((A_PAIRS[0], "h-w0"), (B_PAIRS[1], "h-w1")):
        single = Archive(parent / "archive" / root)
        t = _mid_time(single, sym, channel)
        for clock in ("receive", "exchange"):
            want = single.book_at(sym, t, channel=channel, clock=clock)  # type: ignore[arg-type]
            got = both.book_at(sym, t, channel=channel, clock=clock)  # type: ignore[arg-type]
            assert want.valid and got.valid, (sym, clock, got.reason)
            assert got.root == parent / "archive" / root
            assert (got.bids, got.asks, got.epoch, got.checksum) == (
                want.bids, want.asks, want.epoch, want.checksum)
            assert got.checksum_ok is True
    missing = both.book_at("NOPE/USD", t, channel=channel, clock="receive")  # type: ignore[arg-type]
    assert not missing.valid and "no" in (missing.reason or "")


def test_sql_book_macro_and_replay_over_roots(parent: Path) -> None:
    both = Archive(parent / "archive")
    single = Archive(parent / "archive" / "h-w1")
    sym = B_PAIRS[0]
    t = _mid_time(single, sym, "book")
    rows = both.sql("SELECT * FROM book_at(?, ?, depth := 5, clock := 'receive')",
                    [sym, t]).collect()
    assert rows.height == 10 and rows["valid"].all()
    e = single.epochs(sym, channels="book").collect()
    lo, hi = int(e["start_ns"][0]), int(e["end_ns"][0])

    def events(ar: Archive) -> list[tuple[int, int]]:
        out = []
        for ev in ar.replay(sym, lo, hi, channel="book", clock="receive"):
            assert isinstance(ev, (BookEvent, ReplayGap))
            if isinstance(ev, BookEvent):
                out.append((ev.recv_ns, ev.checksum))
        return out

    assert events(both) == events(single) != []


def test_a_pair_held_by_two_roots_is_answered_by_one_of_them(parent: Path) -> None:
    merged = Archive([parent / "archive", parent / "extra"])
    assert len(merged.roots) == 3
    extra = Archive(parent / "extra")
    t = _mid_time(extra, "BTC/USD", "level3")
    got = merged.book_at("BTC/USD", t, channel="level3", clock="receive")
    assert got.valid and got.root is not None
    want = Archive(got.root).book_at("BTC/USD", t, channel="level3", clock="receive")
    assert (got.bids, got.asks, got.checksum) == (want.bids, want.asks, want.checksum)
    # trades_unique keeps both roots' trades of the pair apart only where ids differ
    n = merged.sql("SELECT count(*) AS n FROM trades WHERE symbol = 'BTC/USD'").collect()["n"][0]
    parts = sum(Archive(r).sql("SELECT count(*) AS n FROM trades WHERE symbol = 'BTC/USD'").collect()["n"][0]
                for r in (parent / "archive" / "h-w0", parent / "extra" / "h2-w0"))
    assert n == parts


def test_refresh_sees_a_new_root(parent: Path, tmp_path: Path) -> None:
    import shutil

    p = tmp_path / "p"
    shutil.copytree(parent / "archive" / "h-w0", p / "h-w0")
    ar = Archive(p)
    assert len(ar.roots) == 1
    shutil.copytree(parent / "archive" / "h-w1", p / "h-w1")
    ar.refresh()
    assert len(ar.roots) == 2 and set(_count(ar, "trades")) == set(A_PAIRS) | set(B_PAIRS)


def test_cli_reads_a_parent_and_merged_paths(parent: Path) -> None:
    r = CliRunner().invoke(main, ["query", "SELECT DISTINCT symbol FROM trades ORDER BY 1",
                                  "--archive", str(parent / "archive"), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert [x["symbol"] for x in json.loads(r.output)] == sorted(A_PAIRS + B_PAIRS)
    r = CliRunner().invoke(main, ["query", "SELECT count(DISTINCT symbol) AS n FROM trades",
                                  "--archive", str(parent / "archive" / "h-w1"),
                                  "--archive", str(parent / "extra"), "--format", "csv"])
    assert r.exit_code == 0 and r.output.splitlines()[1] == "3", r.output
    t = _mid_time(Archive(parent / "archive" / "h-w1"), B_PAIRS[0], "level3")
    r = CliRunner().invoke(main, ["book", B_PAIRS[0], "--at", str(t), "--clock", "receive",
                                  "--channel", "level3", "--archive", str(parent / "archive"),
                                  "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["valid"] and d["root"] == str(parent / "archive" / "h-w1")


def test_hostile_archive_paths_are_clear_errors(parent: Path, tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    afile = tmp_path / "file"
    afile.write_text("x")
    for bad, why in ((loop, "symlink loop"), (afile, "is a file"), (tmp_path / "no", "no such"),
                     (parent / "archive" / "audits", "not an archive")):
        with pytest.raises(ArchiveRootError, match=why):
            Archive(bad)
        for cmd in (["query", "SELECT 1"], ["book", "BTC/USD", "--at", "1"]):
            r = CliRunner().invoke(main, [*cmd, "--archive", str(bad)])
            assert r.exit_code == 2 and why in r.output and "Traceback" not in r.output, r.output
