"""The public API's docstring examples run as written (issue #18 §2), against a small archive.

Every ``>>>`` example of the modules below is a doctest: it runs here with ``ar`` (an open
:class:`recorder.Archive`) and ``archive_path`` (its directory) bound to a deterministic
``recorder sim --record`` stream ingested into a fresh archive, and its printed result must be
exactly the one written in the docstring.
"""

from __future__ import annotations

import doctest
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("duckdb")
pytest.importorskip("polars")

from recorder.ingest import ingest  # noqa: E402
from tests.archive_helpers import make_sim_record  # noqa: E402

#: The modules of the public surface whose examples are checked.
MODULES = ["recorder", "recorder.errors", "recorder.query", "recorder.query.api",
           "recorder.query.timeparse"]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.fixture(scope="module")
def archive_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The examples' archive: 2,500 sim messages of three pairs (book, level3, trades...)."""
    work = tmp_path_factory.mktemp("doctest")
    make_sim_record(work / "sim.zst", messages=2500, pairs=3, seed=3)
    ingest([work / "sim.zst"], work / "archive")
    return work / "archive"


@pytest.fixture(scope="module")
def namespace(archive_path: Path) -> Iterator[dict[str, object]]:
    from recorder.query.api import Archive

    with Archive(archive_path) as ar:
        yield {"ar": ar, "archive_path": str(archive_path), "Archive": Archive}


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module: str, namespace: dict[str, object]) -> None:
    tests = doctest.DocTestFinder().find(importlib.import_module(module),
                                        extraglobs=namespace)
    examples = sum(len(t.examples) for t in tests)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
    if module != "recorder.query":
        assert examples > 0, f"{module} has no examples"


def test_the_api_is_documented() -> None:
    """Every public method of ``recorder.Archive`` has a docstring, and every table-returning
    one shows an example."""
    from recorder import Archive

    for name in dir(Archive):
        if name.startswith("_"):
            continue
        member = getattr(Archive, name)
        assert (member.__doc__ or "").strip(), f"Archive.{name} has no docstring"
    for name in ("sql", "relation", "scan", "trades", "ohlc", "bbo", "gaps", "epochs",
                 "describe", "book_at", "replay", "files"):
        assert ">>>" in (getattr(Archive, name).__doc__ or ""), f"Archive.{name}: no example"
