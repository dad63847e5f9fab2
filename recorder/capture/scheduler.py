"""Periodic jobs of a worker, run by APScheduler 3.x (:class:`AsyncIOScheduler`).

Jobs: journal roll, book checkpoints, compaction and retention (worker 0 only; they call the
archive's functions when the archive provides them and are no-ops until then), instrument
refresh (re-subscribe the ``instrument`` channel: a fresh snapshot is diffed against the known
universe), measured-rate export for the next shard planning, and the disk-space guard.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recorder.capture.shards import save_rates

if TYPE_CHECKING:
    from recorder.capture.service import Worker

__all__ = ["start_jobs", "archive_hook"]

log = logging.getLogger("recorder.capture.scheduler")


def archive_hook(module: str, name: str) -> Any:
    """``recorder.archive.<module>.<name>`` if the archive provides it, else ``None``."""
    try:
        return getattr(importlib.import_module(f"recorder.archive.{module}"), name, None)
    except ImportError:
        return None


def _roll(worker: Worker) -> None:
    roll = getattr(worker.journal, "roll", None)
    if callable(roll):
        roll()
    else:
        worker.journal.flush()


def _checkpoint(worker: Worker) -> None:
    cp = getattr(worker.validator, "checkpoint", None)
    if callable(cp):
        cp()


def _archive_job(worker: Worker, module: str, name: str, **kwargs: Any) -> None:
    fn = archive_hook(module, name)
    if fn is None:
        log.debug("archive %s.%s not available yet: skipped", module, name)
        return
    try:
        fn(Path(worker.cfg.archive_root), **kwargs)
    except Exception:  # noqa: BLE001 - a failed maintenance job must not stop capture
        log.exception("archive job %s.%s failed", module, name)


def _instrument_refresh(worker: Worker) -> None:
    for c in worker.connections:
        if c.channel == "instrument" and c.connected:
            async def refresh(conn: Any = c) -> None:
                await conn.send({"method": "unsubscribe", "params": {"channel": "instrument"}})
                await conn.send({"method": "subscribe", "params": {"channel": "instrument"}})
            worker._spawn(refresh())


def _save_rates(worker: Worker) -> None:
    elapsed = max(1.0, asyncio.get_event_loop().time() - worker._loop_started)
    rates: dict[str, dict[str, float]] = {}
    for c in worker.connections:
        key = c.channel if c.stream != "futures" else f"futures:{c.channel}"
        table = rates.setdefault(key, {})
        for sym, info in c.table.subs.items():
            table[sym] = round(info.messages / elapsed, 3)
    save_rates(Path(worker.cfg.archive_root) / "state" / f"rates-w{worker.index}.json", rates)


def start_jobs(worker: Worker) -> Any:
    """Create and start the scheduler on the running loop; returns it (or None if APScheduler
    is missing, which the capture command reports at start-up)."""
    try:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler
        from apscheduler.triggers.cron import CronTrigger
    except ImportError:  # pragma: no cover - a dependency of the package
        log.error("APScheduler is not installed: periodic jobs disabled")
        return None
    worker._loop_started = asyncio.get_event_loop().time()
    s = worker.cfg.schedule
    sched = AsyncIOScheduler(job_defaults={"coalesce": True, "max_instances": 1,
                                           "misfire_grace_time": 60})
    sched.add_job(_roll, "interval", minutes=max(s.roll_minutes, 0.01), args=[worker], id="roll")
    sched.add_job(_checkpoint, "interval", minutes=max(s.checkpoint_minutes, 0.01), args=[worker],
                  id="checkpoint")
    sched.add_job(worker.check_disk, "interval", seconds=max(s.disk_check_s, 0.5), id="disk")
    sched.add_job(_instrument_refresh, "interval", minutes=max(s.instrument_refresh_minutes, 0.05),
                  args=[worker], id="instruments")
    sched.add_job(_save_rates, "interval", minutes=5, args=[worker], id="rates")
    if worker.index == 0:
        sched.add_job(_archive_job, CronTrigger.from_crontab(s.compaction_cron),
                      args=[worker, "compaction", "compact"], id="compaction")
        if s.retention_days > 0:
            sched.add_job(_archive_job, CronTrigger.from_crontab(s.retention_cron),
                          args=[worker, "retention", "apply_retention"],
                          kwargs={"days": s.retention_days}, id="retention")
    sched.start()
    worker.check_disk()
    return sched
