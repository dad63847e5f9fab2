"""One damaged file never takes the archive down (issue #14 §3), on a real `recorder demo`
archive (made once per session, copied per test):

* readers (SQL views, ``recorder.Archive``, audit, book, verify) leave an unreadable file out,
  name it and the repair command, and answer from every other file;
* ``recorder repair`` re-derives exactly the rows that were there from the journal;
* a damaged journal gives back its readable prefix and the rest is reported.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recorder.archive.journal import JournalWriter, read_segment
from recorder.archive.maintenance import compact_archive
from recorder.archive.repair import repair_root
from recorder.archive.store import ArchiveStore as Store
from recorder.archive.store import FileEntry
from recorder.query.api import Archive
from recorder.query.books import BookEvent, ReplayGap
from recorder.roots import archive_roots
from recorder.verify import verify_roots
from tests.repair_helpers import DAMAGES, damage, minus, plain, same_rows

pytestmark = pytest.mark.integration

PY = sys.executable
DEMO_SECONDS = "15"
#: datasets whose damage the cheap check must see (the audit reads them, or their coverage)
CHEAP = {"trades": "truncate", "liveness": "footer", "level3": "delete", "gaps": "truncate",
         "book": "footer", "epochs": "delete"}


@pytest.fixture(scope="session")
def demo_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `recorder demo` archive (two writer roots), made once per test session."""
    where = tmp_path_factory.mktemp("repair-demo") / "archive"
    out = subprocess.run([PY, "-m", "recorder", "demo", "--seconds", DEMO_SECONDS,
                          "--archive", str(where)], capture_output=True, text=True,
                         timeout=280, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return where


@pytest.fixture
def archive(demo_archive: Path, tmp_path: Path) -> Path:
    """A private copy of the demo archive."""
    copy = tmp_path / "archive"
    shutil.copytree(demo_archive, copy, symlinks=True)
    return copy


def _rows(path: Path | list[Path], dataset: str) -> pa.Table:
    """Every row of ``dataset`` as the SQL layer reads it (raw columns)."""
    with Archive(path) as ar:
        return ar.connection.sql(f"SELECT * FROM raw_{dataset}").to_arrow_table()


def _pick(archive: Path) -> dict[str, tuple[Path, FileEntry]]:
    """One file of each dataset the archive has (the first listed with rows)."""
    out: dict[str, tuple[Path, FileEntry]] = {}
    for root in archive_roots(archive):
        for f in Store(root).state.files:
            if f.rows and f.dataset not in out:
                out[f.dataset] = (root, f)
    return out


def _damage_one_per_dataset(archive: Path) -> dict[str, tuple[Path, FileEntry, str]]:
    picked = _pick(archive)
    done = {}
    for i, (dataset, (root, f)) in enumerate(sorted(picked.items())):
        how = CHEAP.get(dataset, DAMAGES[i % len(DAMAGES)])
        damage(root / f.file, how)
        done[dataset] = (root, f, how)
    return done


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "recorder", *args], capture_output=True, text=True,
                          timeout=240, check=False)


def test_a_damaged_file_of_each_dataset_is_left_out_and_repair_restores_its_rows(
        demo_archive: Path, archive: Path) -> None:
    datasets = sorted(_pick(demo_archive))
    assert {"book", "level3", "trades", "ohlc", "epochs", "gaps", "liveness", "checkpoints",
            "instruments"} <= set(datasets), datasets
    before = {d: _rows(demo_archive, d) for d in datasets}
    order = {r.name: [(f.dataset, f.date, f.rows) for f in Store(r).state.files]
             for r in archive_roots(archive)}
    damaged = _damage_one_per_dataset(archive)
    assert set(damaged) == set(datasets)

    # every view answers with exactly the rows of the files that still read
    with Archive(archive) as ar:
        for d in datasets:
            root, f, _ = damaged[d]
            lost = pq.read_table(demo_archive / root.name / f.file)
            got = ar.sql(f"SELECT * FROM raw_{d}").collect().to_arrow()
            assert same_rows(got, minus(before[d], lost)), d
            assert ar.sql(f"SELECT count(*) AS n FROM {d}").collect().item() == got.num_rows, d
        bad = {(Path(p.root).name, p.file) for p in ar.unreadable()}
        assert bad == {(root.name, f.file) for root, f, _ in damaged.values()}
        # the helpers answer too (from what is left)
        trades_left = before["trades"].num_rows - damaged["trades"][1].rows
        assert (ar.ohlc("10s").collect().height > 0) == (trades_left > 0)
        assert (ar.trades().collect().height > 0) == (trades_left > 0)
        assert ar.gaps().collect().height > 0 and ar.epochs().collect().height > 0

    # the command line: no traceback, the file and the fix named on stderr
    trades_root, trades_file, _ = damaged["trades"]
    q = _cli("query", "--archive", str(archive), "--format", "json",
             "SELECT count(*) AS n FROM book")
    assert q.returncode == 0, q.stderr
    assert "Traceback" not in q.stderr
    assert trades_file.file in q.stderr and f"recorder repair --archive {trades_root}" in q.stderr
    assert json.loads(q.stdout)[0]["n"] == before["book"].num_rows - damaged["book"][1].rows

    audit = _cli("audit", "--archive", str(archive), "--json", "--quiet")
    assert audit.returncode == 0, audit.stderr[-3000:]
    assert "Traceback" not in audit.stderr
    report = json.loads(audit.stdout)
    unreadable = [g for g in report["gaps"] if g["cause"] == "unreadable_file"]
    for d in ("trades", "liveness", "level3"):
        root, f, _ = damaged[d]
        rows = [g for g in unreadable if f.file in (g["detail"] or "")]
        assert rows, d
        assert all(g["start_ns"] == f.min_time for g in rows), d
        assert any(g["counts_as"] == "missing" for g in rows), d
    assert report["summary"]["gaps_by_cause"]["unreadable_file"] == len(unreadable)

    verify = _cli("verify", "--archive", str(archive))
    assert verify.returncode == 1
    assert "Traceback" not in verify.stderr
    assert "fix: recorder repair --archive" in verify.stdout
    failures = json.loads(_cli("verify", "--archive", str(archive), "--json").stdout)["failures"]
    for root, f, _ in damaged.values():
        (failure,) = [x for x in failures if x.get("file") == f.file]
        assert failure["repair"] == f"recorder repair --archive {root}"

    fixed = _cli("repair", "--archive", str(archive))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert fixed.stdout.count("REPAIRED ") == len(datasets)
    assert "NOT REPAIRED" not in fixed.stdout

    for d in datasets:
        assert same_rows(_rows(archive, d), before[d]), d
    assert {r.name: [(f.dataset, f.date, f.rows) for f in Store(r).state.files]
            for r in archive_roots(archive)} == order  # same files, same places
    for root, f, _ in damaged.values():  # the damaged files are gone, the manifest is whole
        assert not (root / f.file).exists()
    assert _cli("verify", "--archive", str(archive)).returncode == 0
    again = _cli("repair", "--archive", str(archive))
    assert again.returncode == 0 and "0 damaged" in again.stdout


def test_damage_inside_a_data_page_is_found_when_a_read_fails(demo_archive: Path,
                                                            archive: Path) -> None:
    """Footer and row count intact: the cheap check passes; the first query that reads the
    page fails, the files are decoded, the bad one is left out and the query answers."""
    root, f = _pick(archive)["book"]
    before = _rows(demo_archive, "book")
    damage(root / f.file, "page")
    with Archive(archive) as ar:
        assert ar.unreadable() == []  # not visible to the cheap check
        got = ar.sql("SELECT * FROM book").collect()
        assert got.height == before.num_rows - f.rows
        assert [p.file for p in ar.unreadable()] == [f.file]
        middle = pq.read_table(demo_archive / root.name / f.file).slice(f.rows // 2, 1)
        symbol, t = str(middle.column("symbol")[0]), middle.column("recv_ns")[0].as_py()
        with Archive(demo_archive) as pristine:
            assert pristine.book_at(symbol, t, channel="book", clock="receive").valid
        b = ar.book_at(symbol, t, channel="book", clock="receive")
        assert not b.valid and "unreadable file" in (b.reason or "")
        assert b.gap is not None and b.gap["cause"] == "unreadable_file"
        # a replay across it stops before the file's first row and says why
        items = list(ar.replay(symbol, f.min_time - 10**9, t, channel="book", clock="receive"))
        gaps = [i for i in items if isinstance(i, ReplayGap)
                and i.gap is not None and i.gap["cause"] == "unreadable_file"]
        assert gaps and all(f.file in g.reason for g in gaps)
        assert not [i for i in items if isinstance(i, BookEvent)
                    and f.min_time <= i.recv_ns <= t]
    with Archive(archive) as ar:  # a fresh reader: the book query itself finds the damage
        b = ar.book_at(symbol, t, channel="book", clock="receive")
        assert not b.valid and f.file in (b.reason or "")
    report = repair_root(root)
    assert [r.file for r in report.repaired] == [f.file] and report.unrepaired == []
    assert same_rows(_rows(archive, "book"), before)
    with Archive(archive) as ar:
        assert ar.book_at(symbol, t, channel="book", clock="receive").valid


def test_repair_of_compacted_files_restores_their_sorted_rows(demo_archive: Path,
                                                              archive: Path) -> None:
    root, _ = _pick(archive)["book"]
    compact_archive(root, include_latest_day=True, file_rows=4000)
    st = Store(root).state
    group = [f for f in st.files if f.dataset == "book"]
    assert len(group) > 1 and all("/compact-" in f.file for f in group)
    target = group[1]  # a middle file of a sorted run
    expected = pq.read_table(root / target.file)
    datasets = sorted({f.dataset for f in st.files})
    before = {d: _rows(root, d) for d in datasets}
    damage(root / target.file, "footer")
    trades = next(f for f in st.files if f.dataset == "trades")
    damage(root / trades.file, "truncate")
    report = repair_root(root)
    assert sorted(r.file for r in report.repaired) == sorted([target.file, trades.file])
    assert report.unrepaired == []
    new = next(r.new_file for r in report.repaired if r.file == target.file)
    assert "/compact-" in new
    got = pq.read_table(root / new).select(expected.column_names)
    assert plain(got).equals(plain(expected))  # the same rows in the same (sorted) order
    for d in datasets:
        assert same_rows(_rows(root, d), before[d]), d
    assert verify_roots([root])["files_failed"] == 0


def _keep_prefix(segment: Path, records: int) -> None:
    """Rewrite a journal segment with only its first ``records`` records (same name)."""
    frames = [f for i, f in read_segment(segment) if i < records]
    tmp = segment.parent / "rewrite"
    w = JournalWriter(tmp, host="t", run_id="t", fsync_interval_s=3600)
    for fr in frames:
        w.append(fr)
    w.close()
    (written,) = list(tmp.rglob("*.kjz"))
    written.replace(segment)
    shutil.rmtree(tmp)


def test_a_damaged_journal_gives_back_its_readable_prefix_and_reports_the_rest(
        demo_archive: Path, archive: Path) -> None:
    root, _ = _pick(archive)["trades"]
    st = Store(root).state
    (seg,) = st.segments
    committed = st.journal[seg]
    kept = committed // 2
    _keep_prefix(root / "journal" / seg, kept)  # the second half of the records is lost
    # instruments rows come from the first frames; epochs rows are written as epochs end
    # (when the capture stops, the connections close)
    early = next(f for f in st.files if f.dataset == "instruments")
    late = max((f for f in st.files if f.dataset == "epochs"), key=lambda f: f.commit)
    expected = pq.read_table(root / early.file)
    damage(root / early.file, "truncate")
    damage(root / late.file, "delete")

    dry = repair_root(root, dry_run=True)
    assert [r.file for r in dry.repaired] == [early.file]
    assert [u.file for u in dry.unrepaired] == [late.file]
    assert Store(root).state.commit == st.commit  # nothing written

    out = _cli("repair", "--archive", str(root))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert f"REPAIRED {early.file}" in out.stdout
    assert f"NOT REPAIRED {late.file}" in out.stdout
    assert f"{kept} of {committed} committed records readable" in out.stdout
    new = Store(root).state
    replaced = new.files[[f.file for f in st.files].index(early.file)]
    assert same_rows(pq.read_table(root / replaced.file), expected)
    assert late.file in [f.file for f in new.files]  # left for a better journal
    verify = _cli("verify", "--archive", str(root))
    assert verify.returncode == 1 and late.file in verify.stdout
    assert early.file not in verify.stdout


def test_repair_waits_for_the_writer_and_rejects_paths_without_roots(archive: Path,
                                                                     tmp_path: Path) -> None:
    root = archive_roots(archive)[0]
    holder = Store(root)
    holder.lock()
    try:
        out = _cli("repair", "--archive", str(root))
        assert out.returncode == 1 and "another writer" in out.stderr
        assert "Traceback" not in out.stderr
    finally:
        holder.unlock()
    out = _cli("repair", "--archive", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
