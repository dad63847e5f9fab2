"""The capture worker's daily audit job: writes the reports, never takes the worker down."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from recorder.archive.session import ArchiveSession
from recorder.capture.config import CaptureConfig
from recorder.capture.scheduler import daily_audit


def _worker(root: Path, shard: str = "1/1") -> SimpleNamespace:
    from dataclasses import replace

    cfg = CaptureConfig()
    cfg = replace(cfg, connection=replace(cfg.connection, shard=shard))
    return SimpleNamespace(root=root, cfg=cfg)


def test_daily_audit_writes_reports_for_the_worker_root(tmp_path: Path) -> None:
    root = tmp_path / "vm-w0"
    session = ArchiveSession(root, host="vm")
    session.start()
    session.close("operator")
    paths = asyncio.run(daily_audit(_worker(root)))  # type: ignore[arg-type]
    assert paths is not None
    assert paths["json"].parent == root / "audits"
    assert paths["json"].is_file() and paths["html"].read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("shard,expect", [("1/1", None), ("2/3", "recorded")])
def test_a_sharded_host_is_audited_against_what_it_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shard: str, expect: str | None) -> None:
    """One host of N > 1 records only its share of the online pairs: its daily audit must not
    count the other hosts' pairs as missing (``--expect recorded``); a lone host expects every
    pair online that day (the audit's default)."""
    import recorder.audit.command as command

    seen: dict[str, object] = {}

    def fake(archive: Path, out_dir: Path, **kwargs: object) -> dict[str, Path]:
        seen.update(kwargs)
        return {"html": out_dir / "a.html", "json": out_dir / "a.json"}

    monkeypatch.setattr(command, "run_daily_audit", fake)
    asyncio.run(daily_audit(_worker(tmp_path, shard)))  # type: ignore[arg-type]
    assert seen == {"expect": expect}


def test_daily_audit_failure_is_logged_not_raised(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    not_an_archive = tmp_path / "missing"
    with caplog.at_level(logging.ERROR):
        result = asyncio.run(daily_audit(_worker(not_an_archive)))  # type: ignore[arg-type]
    assert result is None
    assert any("daily audit" in r.getMessage() for r in caplog.records)


def test_recorder_run_schedules_the_daily_audit_in_utc(tmp_path: Path) -> None:
    """``start_jobs`` (what every capture worker runs) registers the audit job on the
    configured crontab, in UTC, and none when ``schedule.audit_cron`` is empty."""
    from dataclasses import replace
    from datetime import datetime, timezone

    from recorder.capture.config import CaptureConfig
    from recorder.capture.scheduler import start_jobs

    def worker(audit_cron: str) -> SimpleNamespace:
        cfg = CaptureConfig()
        cfg = replace(cfg, schedule=replace(cfg.schedule, audit_cron=audit_cron))
        async def check_disk() -> None: ...

        return SimpleNamespace(cfg=cfg, root=tmp_path,
                               archive=SimpleNamespace(check_disk=check_disk,
                                                       maintenance=lambda *a: None),
                               spawn=lambda coro, name: coro.close())

    async def jobs(w: SimpleNamespace) -> dict[str, object]:
        sched = start_jobs(w)  # type: ignore[arg-type]
        try:
            return {j.id: j for j in sched.get_jobs()}
        finally:
            sched.shutdown(wait=False)

    got = asyncio.run(jobs(worker("20 0 * * *")))
    audit = got["audit"]
    assert audit.func is daily_audit  # type: ignore[attr-defined]
    trigger = audit.trigger  # type: ignore[attr-defined]
    assert str(trigger.timezone) == "UTC"
    fire = trigger.get_next_fire_time(None, datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc))
    assert fire == datetime(2026, 11, 22, 0, 20, tzinfo=timezone.utc)
    assert "audit" not in asyncio.run(jobs(worker("")))
