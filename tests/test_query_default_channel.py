"""One default channel (issue #18 §2): the researcher API, the book engine, ``recorder book``
(for a spot pair) and the SQL macros answer a book question on the same channel unless told
otherwise, and that channel is written down once (``recorder.query.books.DEFAULT_CHANNEL``)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from recorder.cli import main
from recorder.query import api, books
from recorder.query.books import CHANNELS, DEFAULT_CHANNEL
from recorder.resources import queries_dir

_MACRO = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?MACRO\s+(\w+)\s*\((.*?)\)\s*AS\b",
                    re.S | re.I)
_CHANNEL_DEFAULT = re.compile(r"\bchannel\s*:=\s*'([^']*)'")


def test_the_constant_is_one_of_the_channels() -> None:
    assert DEFAULT_CHANNEL in CHANNELS
    assert api.DEFAULT_CHANNEL is DEFAULT_CHANNEL  # re-exported, not restated


@pytest.mark.parametrize("method", [
    api.Archive.book_at, api.Archive.replay, api.Archive.bbo,
    books.BookEngine.book_at, books.BookEngine.replay,
    books.BookRouter.book_at, books.BookRouter.replay,
], ids=lambda m: m.__qualname__)
def test_every_python_book_question_defaults_to_it(method: Callable[..., Any]) -> None:
    assert inspect.signature(method).parameters["channel"].default == DEFAULT_CHANNEL


def test_every_sql_macro_with_a_channel_defaults_to_it() -> None:
    """The macros' ``channel := '...'`` defaults (SQL cannot import the constant, so this
    test is what keeps them equal)."""
    defaults: dict[str, str] = {}
    for path in sorted(queries_dir().rglob("*.sql")):
        for macro in _MACRO.finditer(path.read_text(encoding="utf-8")):
            found = _CHANNEL_DEFAULT.search(macro.group(2))
            if found is not None:
                defaults[f"{path.name}:{macro.group(1)}"] = found.group(1)
    names = {key.split(":")[1] for key in defaults}
    assert {"book_at", "bbo_series", "mid_spread", "trades_with_book"} <= names, defaults
    assert {k: v for k, v in defaults.items() if v != DEFAULT_CHANNEL} == {}


def test_recorder_book_help_names_it() -> None:
    r = CliRunner().invoke(main, ["book", "--help"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert f"PF_XBTUSD, else {DEFAULT_CHANNEL}," in text
    assert f"[{'|'.join(CHANNELS)}]" in text
