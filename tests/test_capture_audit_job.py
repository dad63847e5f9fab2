"""The capture worker's daily audit job: writes the reports, never takes the worker down."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from recorder.archive.session import ArchiveSession
from recorder.capture.scheduler import daily_audit


def test_daily_audit_writes_reports_for_the_worker_root(tmp_path: Path) -> None:
    root = tmp_path / "vm-w0"
    session = ArchiveSession(root, host="vm")
    session.start()
    session.close("operator")
    paths = asyncio.run(daily_audit(SimpleNamespace(root=root)))  # type: ignore[arg-type]
    assert paths is not None
    assert paths["json"].parent == root / "audits"
    assert paths["json"].is_file() and paths["html"].read_text().startswith("<!DOCTYPE html>")


def test_daily_audit_failure_is_logged_not_raised(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    not_an_archive = tmp_path / "missing"
    with caplog.at_level(logging.ERROR):
        result = asyncio.run(daily_audit(SimpleNamespace(root=not_an_archive)))  # type: ignore[arg-type]
    assert result is None
    assert any("daily audit" in r.getMessage() for r in caplog.records)
