"""recorder.roots: a root, a parent of roots, several paths; hostile paths give clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from recorder.roots import ArchiveRootError, archive_roots, child_roots, is_archive_root


def _root(path: Path) -> Path:
    (path / "_manifest").mkdir(parents=True)
    return path


def test_a_root_is_itself(tmp_path: Path) -> None:
    r = _root(tmp_path / "a")
    assert is_archive_root(r)
    assert archive_roots(r) == [r]
    assert archive_roots(str(r)) == [r]


def test_a_parent_lists_its_root_children_only(tmp_path: Path) -> None:
    w1 = _root(tmp_path / "h-w1")
    w0 = _root(tmp_path / "h-w0")
    (tmp_path / "audits").mkdir()  # not a root: ignored
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "self").symlink_to(tmp_path)  # a cycle one level down: not a root, no walk
    assert archive_roots(tmp_path) == [w0, w1]
    assert child_roots(tmp_path) == [w0, w1]
    assert not is_archive_root(tmp_path)


def test_several_paths_are_merged_without_duplicates(tmp_path: Path) -> None:
    a = _root(tmp_path / "p" / "h-w0")
    b = _root(tmp_path / "p" / "h-w1")
    c = _root(tmp_path / "other")
    (tmp_path / "alias").symlink_to(c)
    got = archive_roots([tmp_path / "p", a, c, tmp_path / "alias"])
    assert got == [a, b, c]


def test_writer_roots_uses_the_shared_rule(tmp_path: Path) -> None:
    from recorder.capture.writer import writer_roots

    w0 = _root(tmp_path / "x-w0")  # opened by a writer, nothing committed yet: still a root
    assert writer_roots(tmp_path) == [w0]
    assert writer_roots(tmp_path / "missing") == []


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing", "no such directory"),
    (lambda d: (d / "f.parquet").write_bytes(b"PAR1") and d / "f.parquet", "is a file"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "not an archive"),
    (lambda d: (d / "dangling").symlink_to(d / "gone") or d / "dangling", "dangling symlink"),
])
def test_hostile_paths_are_clear_errors(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(ArchiveRootError, match=message) as info:
        archive_roots(path)
    assert str(path) in str(info.value)


def test_symlink_loop_is_a_clear_error(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(ArchiveRootError, match="symlink loop"):
        archive_roots(a)
    with pytest.raises(ArchiveRootError, match="symlink loop"):
        archive_roots([_root(tmp_path / "ok"), a])  # one bad path fails the whole list


def test_empty_list_and_root_that_is_a_file(tmp_path: Path) -> None:
    with pytest.raises(ArchiveRootError, match="no archive path"):
        archive_roots([])
    bad = tmp_path / "r"
    bad.mkdir()
    (bad / "_manifest").write_text("not a directory")
    with pytest.raises(ArchiveRootError, match="not an archive"):
        archive_roots(bad)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory")
def test_unreadable_root_is_reported_not_skipped(tmp_path: Path) -> None:
    _root(tmp_path / "w0")
    locked = _root(tmp_path / "w1")
    locked.chmod(0)
    try:
        with pytest.raises(ArchiveRootError, match="cannot read"):
            archive_roots(tmp_path)
    finally:
        locked.chmod(0o755)
