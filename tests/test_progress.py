"""The shared progress bar: count, rate and ETA on a terminal's stderr; nothing otherwise."""

from __future__ import annotations

import io

from recorder.progress import progress_bar, progress_steps, stderr_is_terminal


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_count_rate_and_eta() -> None:
    out = _Terminal()
    with progress_bar("verify", total=200, unit="rows", stream=out) as bar:
        assert bar.enabled
        for _ in range(4):
            bar.advance(50)
    text = out.getvalue()
    assert "verify" in text and "200/200" in text and "rows/s" in text and "ETA" in text


def test_not_a_terminal_or_disabled_draws_nothing() -> None:
    for stream, enabled in ((io.StringIO(), True), (_Terminal(), False)):
        with progress_bar("ingest", total=10, stream=stream, enabled=enabled) as bar:
            assert not bar.enabled
            bar.advance(5)
            bar.update(total=20, description="x")
        assert stream.getvalue() == ""
    assert not stderr_is_terminal(io.StringIO())


def test_steps_get_one_bar_each() -> None:
    out = _Terminal()
    with progress_steps(unit="queries", stream=out) as note:
        assert note is not None
        note("load", 1, 2)
        note("load", 2, 2)
        note("coverage", 5, 5)
    text = out.getvalue()
    assert "load" in text and "coverage" in text and "5/5" in text
    with progress_steps(stream=io.StringIO()) as none:
        assert none is None
