"""Readability checks of live files (cheap / deep, cached), the manifest's in-place replacement,
the audit's ``unreadable_file`` rows, and repair on ``recorder ingest`` archives (many small
rolling files; the pipeline's end-of-input rows; inputs ingested in several runs)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recorder.archive.health import UNREADABLE_CAUSE, FileHealth, FileProblem, check_file
from recorder.archive.journal import read_segment
from recorder.archive.maintenance import compact_archive
from recorder.archive.repair import repair_root
from recorder.archive.store import ArchiveStore
from recorder.audit.load import unreadable_gap_rows
from recorder.ingest import ingest
from recorder.verify import verify_archive
from tests.archive_helpers import copy_archive, make_sim_record, rolled_sim_archive, row_counts
from tests.repair_helpers import damage

DAY0 = 1_735_689_600_000_000_000  # 2025-01-01T00:00:00Z


@pytest.fixture(scope="module")
def rolled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive of a sim stream ingested in one run, with many small rolling files."""
    return rolled_sim_archive(tmp_path_factory.mktemp("health"))


def _datasets(root: Path) -> list[str]:
    return sorted({f.dataset for f in ArchiveStore(root).state.files})


# ---------------------------------------------------------------------------- checks


@pytest.mark.parametrize("how", ["truncate", "footer", "page", "delete"])
def test_cheap_and_deep_checks_find_each_kind_of_damage(rolled: Path, tmp_path: Path,
                                                        how: str) -> None:
    root = copy_archive(rolled, tmp_path / "a")
    entry = next(f for f in ArchiveStore(root).state.files if f.dataset == "level3")
    path = root / entry.file
    assert check_file(path, entry) is None and check_file(path, entry, deep=True) is None
    damage(path, how)
    cheap, deep = check_file(path, entry), check_file(path, entry, deep=True)
    assert deep is not None
    assert (cheap is None) == (how == "page")  # only a full decode sees a damaged page
    if how == "delete":
        assert deep.startswith("missing")


def test_a_row_count_other_than_the_manifests_is_a_problem(rolled: Path) -> None:
    entry = next(f for f in ArchiveStore(rolled).state.files if f.dataset == "trades")
    wrong = type(entry)(**{**{k: getattr(entry, k) for k in entry.__struct_fields__},
                           "rows": entry.rows + 1})
    reason = check_file(rolled / entry.file, wrong)
    assert reason is not None and str(entry.rows) in reason


def test_verdicts_are_cached_until_the_file_changes_and_warned_once(
        rolled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    root = copy_archive(rolled, tmp_path / "a")
    entry = next(f for f in ArchiveStore(root).state.files if f.dataset == "book")
    opened: list[Path] = []
    real = pq.ParquetFile

    def counting(path, *a, **k):  # noqa: ANN001, ANN202
        opened.append(Path(path))
        return real(path, *a, **k)

    monkeypatch.setattr(pq, "ParquetFile", counting)
    health = FileHealth()
    assert health.check(root, entry) is None and health.check(root, entry) is None
    assert len(opened) == 1  # the second verdict came from the cache
    assert not health.deep_checked(root, entry)
    assert health.check(root, entry, deep=True) is None and health.deep_checked(root, entry)
    assert health.check(root, entry) is None and len(opened) == 2  # deep verdict reused
    damage(root / entry.file, "page")
    os.utime(root / entry.file, ns=(1, 1))  # a new (size, mtime): checked again
    with caplog.at_level(logging.WARNING, logger="recorder.archive.health"):
        assert health.check(root, entry, deep=True) is not None
        assert health.check(root, entry) is not None
    warned = [r for r in caplog.records if entry.file in r.getMessage()]
    assert len(warned) == 1
    assert f"recorder repair --archive {root}" in warned[0].getMessage()


def test_commit_replaces_an_entry_in_its_place(rolled: Path, tmp_path: Path) -> None:
    root = copy_archive(rolled, tmp_path / "a")
    ar = ArchiveStore(root)
    ar.lock()
    try:
        files = list(ar.state.files)
        middle = files[len(files) // 2]
        new = type(middle)(**{**{k: getattr(middle, k) for k in middle.__struct_fields__},
                              "file": middle.file + ".x"})
        ar.commit([], pipeline=None, journal=ar.state.journal, segments=ar.state.segments,
                  replaced={middle.file: new})
        assert [f.file for f in ArchiveStore(root).state.files] == [
            new.file if f.file == middle.file else f.file for f in files]
    finally:
        ar.unlock()


# ---------------------------------------------------------------------------- audit rows


def _problem(dataset: str, **kw: object) -> FileProblem:
    base: dict = {"root": "/r", "file": f"data/dataset={dataset}/date=2025-01-01/p.parquet",
                  "dataset": dataset, "date": "2025-01-01", "rows": 7,
                  "min_time": DAY0 + 10, "max_time": DAY0 + 20, "reason": "bad",
                  "symbols": ("BTC/USD", "ETH/USD")}
    base.update(kw)
    return FileProblem(**base)  # type: ignore[arg-type]


def test_unreadable_files_become_gap_rows_of_their_channel_and_range() -> None:
    rows = unreadable_gap_rows(_problem("trades"))
    assert [(r["stream"], r["channel"], r["symbol"]) for r in rows] == [
        ("spot", "trade", "BTC/USD"), ("spot", "trade", "ETH/USD")]
    assert all(r["start_ns"] == DAY0 + 10 and r["end_ns"] == DAY0 + 21 for r in rows)
    assert all(r["cause"] == UNREADABLE_CAUSE and r["conn_id"] == 0 and r["missing_count"] == 7
               and r["healed_by"] == "none" and "recorder repair --archive /r" in r["detail"]
               for r in rows)
    (fut,) = unreadable_gap_rows(_problem("futures_trades", symbols=()))
    assert (fut["stream"], fut["channel"], fut["symbol"]) == ("futures", "futures_trade", "*")
    # the audit's own evidence: every key; a liveness row is a whole minute
    (live,) = unreadable_gap_rows(_problem("liveness", min_time=DAY0, max_time=DAY0))
    assert (live["channel"], live["symbol"], live["end_ns"]) == ("*", "*", DAY0 + 60 * 10**9)
    # no time bounds in the manifest: the whole day
    (day,) = unreadable_gap_rows(_problem("epochs", min_time=None, max_time=None))
    assert (day["start_ns"], day["end_ns"]) == (DAY0, DAY0 + 86_400 * 10**9)
    # datasets that are not market data: listed under their own name, no key matches
    (cp,) = unreadable_gap_rows(_problem("checkpoints"))
    assert (cp["stream"], cp["channel"], cp["symbol"]) == ("*", "checkpoints", "*")


# ---------------------------------------------------------------------------- repair


def test_repair_restores_rolling_files_of_an_ingested_archive(rolled: Path,
                                                             tmp_path: Path) -> None:
    """One ingest run: its last commit holds the pipeline's end-of-input rows (open epochs,
    gaps, liveness), which the re-derivation must write too."""
    root = copy_archive(rolled, tmp_path / "a")
    datasets = _datasets(root)
    before = {d: row_counts(root, d) for d in datasets}
    files = ArchiveStore(root).state.files
    targets = []
    for i, d in enumerate(datasets):  # a middle file and the last file of each dataset
        of = [f for f in files if f.dataset == d]
        targets += {of[len(of) // 2].file, of[-1].file}
    for i, rel in enumerate(targets):
        damage(root / rel, ("truncate", "footer", "page", "delete")[i % 4])
    report = repair_root(root)
    assert report.unrepaired == [] and sorted(r.file for r in report.repaired) == sorted(targets)
    assert report.journal == []
    for d in datasets:
        assert row_counts(root, d) == before[d], d
    assert [(f.dataset, f.date, f.rows) for f in ArchiveStore(root).state.files] == [
        (f.dataset, f.date, f.rows) for f in files]
    rep = verify_archive(root)
    assert rep["files_failed"] == 0 and rep["failed"] == 0


def test_repair_shows_its_progress_on_a_terminal(rolled: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``recorder repair`` draws count, rate and ETA of the journal records it re-derives
    (on a terminal's stderr only; ``show_progress=False``, as ``--json`` passes, draws none)."""
    import io

    import recorder.archive.repair as repair
    from recorder.progress import progress_bar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(repair, "progress_bar",
                        lambda *a, **k: progress_bar(*a, **k, stream=screen))
    root = copy_archive(rolled, tmp_path / "a")
    records = sum(ArchiveStore(root).state.journal.values())
    damage(root / next(f.file for f in ArchiveStore(root).state.files if f.dataset == "trades"),
           "truncate")
    assert repair_root(root, show_progress=True).unrepaired == []
    text = screen.getvalue()
    assert "repair a" in text and f"{records}/{records}" in text and "records/s" in text
    quiet = Terminal()
    monkeypatch.setattr(repair, "progress_bar",
                        lambda *a, **k: progress_bar(*a, **k, stream=quiet))
    damage(root / next(f.file for f in ArchiveStore(root).state.files if f.dataset == "trades"),
           "truncate")
    assert repair_root(root, show_progress=False).unrepaired == []
    assert quiet.getvalue() == ""


def test_repair_never_writes_rows_it_cannot_reproduce(tmp_path: Path) -> None:
    """Two ingest runs: the first run's end-of-input rows (open epochs, gaps, liveness) are
    in no journal record, so the days holding them do not re-derive. Repair restores what it
    can prove, exactly, and leaves the rest as it is, with the reason."""
    a = make_sim_record(tmp_path / "a.zst", messages=3000, pairs=3, seed=7)
    b = make_sim_record(tmp_path / "b.zst", messages=3000, pairs=3, seed=8)
    root = tmp_path / "arch"
    ingest([a], root, roll_rows=1000)
    ingest([b], root, roll_rows=1000)
    pristine = copy_archive(root, tmp_path / "pristine")
    files = ArchiveStore(root).state.files
    targets = [next(f for f in files if f.dataset == d).file for d in _datasets(root)]
    for rel in targets:
        damage(root / rel, "truncate")
    report = repair_root(root)
    unrepaired = {u.file: u.reason for u in report.unrepaired}
    assert "epochs" in " ".join(unrepaired), unrepaired
    assert all(unrepaired.values())
    assert {r.file for r in report.repaired} | set(unrepaired) == set(targets)
    assert report.repaired, "the days that re-derive exactly are restored"
    for r in report.repaired:
        got = pq.read_table(root / r.new_file).to_pylist()
        assert got == pq.read_table(pristine / r.file).to_pylist(), r.file  # rows and order
    live = {f.file for f in ArchiveStore(root).state.files}
    assert set(unrepaired) <= live  # left in place, still reported by readers and verify
    assert verify_archive(root)["files_failed"] == len(unrepaired)


def test_compaction_leaves_a_day_with_a_damaged_file_alone(rolled: Path, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    root = copy_archive(rolled, tmp_path / "a")
    victim = next(f for f in ArchiveStore(root).state.files if f.dataset == "trades")
    damage(root / victim.file, "truncate")
    with caplog.at_level(logging.WARNING, logger="recorder.archive.maintenance"):
        report = compact_archive(root, include_latest_day=True)
    assert report.skipped_damaged == 1 and report.partitions > 0
    assert victim.file in [f.file for f in ArchiveStore(root).state.files]
    assert any("recorder repair --archive" in r.getMessage() for r in caplog.records)
    assert repair_root(root).unrepaired == []  # compacted days around it do not matter


def test_a_failed_swap_leaves_the_archive_as_it_was(rolled: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The replacement files are written before the one manifest commit; when that commit
    fails, they are removed and the manifest, the damaged file and the disk are unchanged."""
    root = copy_archive(rolled, tmp_path / "a")
    victim = next(f for f in ArchiveStore(root).state.files if f.dataset == "level3")
    damage(root / victim.file, "footer")
    manifest = (root / "_manifest" / "current.json").read_bytes()
    on_disk = sorted(p.name for p in (root / "data").rglob("*"))

    def refuse(self: ArchiveStore, *a: object, **k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ArchiveStore, "commit", refuse)
    with pytest.raises(OSError):
        repair_root(root)
    assert (root / "_manifest" / "current.json").read_bytes() == manifest
    assert sorted(p.name for p in (root / "data").rglob("*")) == on_disk
    monkeypatch.undo()
    assert [r.file for r in repair_root(root).repaired] == [victim.file]


def test_a_query_error_of_the_users_own_is_raised_without_decoding_files(
        rolled: Path, tmp_path: Path) -> None:
    import duckdb

    from recorder.query.api import Archive as Query

    root = copy_archive(rolled, tmp_path / "a")
    victim = next(f for f in ArchiveStore(root).state.files if f.dataset == "trades")
    damage(root / victim.file, "page")  # only a full decode would find it
    with Query(root) as ar:
        with pytest.raises(duckdb.ParserException):
            ar.sql("SELEC count(*) FROM trades").collect()
        with pytest.raises(duckdb.BinderException):
            ar.sql("SELECT no_such_column FROM trades").collect()
        assert ar.unreadable() == []  # nothing was decoded for those
        assert ar.sql("SELECT count(*) AS n FROM trades").collect().item() > 0  # footer-only count
        ar.sql("SELECT * FROM trades").collect()  # reads the page: found, left out, answered
        assert [p.file for p in ar.unreadable()] == [victim.file]


def test_frames_a_disk_full_moved_to_the_next_segment_are_not_journal_damage(
        tmp_path: Path) -> None:
    """After a journal write error, the frames that were not durable are written again at the
    start of the writer's next segment: the first segment holds fewer records than the
    manifest says were derived from it. That is not damage: repair re-derives exactly."""
    from tests.archive_helpers import session_on_a_disk_that_fills, trade_frame

    root = tmp_path / "a"
    s, full, clock = session_on_a_disk_that_fills(root)
    full["on"] = True
    for i in range(50, 80):  # accepted, not durable: carried into the next segment
        s.write(trade_frame(next(clock), 1000 + i))
    full["on"] = False
    s.journal.segment_max_bytes = 0  # the next append rolls to a fresh segment
    for i in range(80, 120):
        s.write(trade_frame(next(clock), 1000 + i))
        s.journal.segment_max_bytes = 256 * 2**20
    s.close()
    st = ArchiveStore(root).state
    first = st.segments[0]
    assert sum(1 for _ in read_segment(root / "journal" / first)) < st.journal[first]
    before = row_counts(root, "trades")
    victims = [f.file for f in st.files if f.dataset in ("trades", "epochs", "liveness")]
    for rel in victims:
        damage(root / rel, "truncate")
    report = repair_root(root)
    assert report.journal == [] and report.unrepaired == []
    assert sorted(r.file for r in report.repaired) == sorted(victims)
    assert row_counts(root, "trades") == before


@pytest.mark.parametrize(("later", "committed", "carried"), [
    (["2025-01-02/h-01735689600000055000-7-1735689600000000000-0002.kjz"], 1, True),
    (["2025-01-01/h-01735689600000055000-8-1735689600000000000-0002.kjz"], 1, False),  # run
    (["2025-01-01/g-01735689600000055000-7-1735689600000000000-0002.kjz"], 1, False),  # host
    (["2025-01-01/h-01735689600000055000-7-1735689600000000000-0003.kjz"], 1, False),  # seq
    (["2025-01-01/h-01735689600000055000-7-1735689600000000000-0002.kjz"], 0, False),
    ([], 0, False),  # the last segment: nothing took its records over
])
def test_only_the_same_writers_next_segment_takes_over_missing_records(
        later: list[str], committed: int, carried: bool) -> None:
    from recorder.archive.repair import _carried_on

    first = "2025-01-01/h-01735689600000002000-7-1735689600000000000-0001.kjz"
    assert _carried_on(first, later, {s: committed for s in later}) is carried
