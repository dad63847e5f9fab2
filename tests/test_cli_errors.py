"""The command line's last line of defence: no Python traceback reaches a user."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from recorder import cli


@click.command("boom")
@click.option("--kind", default="value")
def boom(kind: str) -> None:
    if kind == "value":
        raise ValueError("the archive said something unexpected")
    if kind == "empty":
        raise RuntimeError()
    if kind == "usage":
        raise click.BadParameter("nope", param_hint="--kind")
    raise SystemExit(7)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setitem(cli._COMMANDS, "boom", f"{__name__}:boom")
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    return CliRunner()


def test_unexpected_error_is_one_line_without_traceback(runner: CliRunner) -> None:
    result = runner.invoke(cli.main, ["boom"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        "Error: the archive said something unexpected (ValueError). This is a recorder bug or "
        "an unexpected condition: set RECORDER_DEBUG=1 to see the traceback."]


def test_an_error_without_text_still_names_itself(runner: CliRunner) -> None:
    result = runner.invoke(cli.main, ["boom", "--kind", "empty"])
    assert result.exit_code == 1 and "Error: no detail (RuntimeError)" in result.output


def test_usage_errors_and_exit_codes_pass_through(runner: CliRunner) -> None:
    usage = runner.invoke(cli.main, ["boom", "--kind", "usage"])
    assert usage.exit_code == 2 and "nope" in usage.output and "RECORDER_DEBUG" not in usage.output
    assert runner.invoke(cli.main, ["boom", "--kind", "exit"]).exit_code == 7


def test_debug_lets_the_traceback_through(runner: CliRunner,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    result = runner.invoke(cli.main, ["boom"])
    assert isinstance(result.exception, ValueError)
