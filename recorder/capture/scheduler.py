"""Periodic jobs of a worker, run by APScheduler 3.x (:class:`AsyncIOScheduler`).

Every worker schedules these on its own archive root (``<archive_root>/<host>-w<k>/``):

* ``commit`` (every ``schedule.roll_minutes``): seal the buffered rows into Parquet and commit
  them with the journal position (:meth:`recorder.capture.archive_part.ArchivePart.commit`:
  cut on the loop, finished in the commit thread);
* ``compaction`` (``schedule.compaction_cron``): :func:`recorder.archive.maintenance.compact_archive`
  on the worker's live archive (every day but the one being written), in a thread while
  commits wait;
* ``retention`` (``schedule.retention_cron``, when any retention limit is set):
  :func:`recorder.archive.maintenance.apply_retention` with the configured
  :class:`~recorder.archive.maintenance.RetentionPolicy` (journal and Parquet separately);
* ``instruments`` (every ``schedule.instrument_refresh_minutes``): re-subscribe the
  ``instrument`` channel; the fresh snapshot goes through the pipeline, which signals
  listings, delistings and precision changes;
* ``disk`` (every ``schedule.disk_check_s``): the disk-space guard
  (:meth:`~recorder.capture.archive_part.ArchivePart.check_disk`);
* ``rates`` (every 5 minutes): measured message rates per symbol for the next shard planning
  (``<root>/_capture/rates.json``).

Book checkpoints are not a job: the pipeline writes one at every epoch start and then every
``schedule.checkpoint_minutes`` of receive time, as data arrives (the archive's own cadence,
configured through :class:`~recorder.capture.writer.ArchiveWriter`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recorder.capture.config import ScheduleConfig
from recorder.capture.shards import save_rates

if TYPE_CHECKING:
    from recorder.capture.service import Worker

__all__ = ["start_jobs", "retention_policy", "rates_path", "maintenance_functions"]

log = logging.getLogger("recorder.capture.scheduler")


def rates_path(root: Path) -> Path:
    """Where a worker keeps its measured rates (inside its writer root, outside the archive's
    own directories)."""
    return Path(root) / "_capture" / "rates.json"


def maintenance_functions() -> tuple[Any, Any, Any]:
    """``(compact_archive, apply_retention, RetentionPolicy)`` from the archive, each ``None``
    when this archive version does not provide it."""
    try:
        from recorder.archive import maintenance as m
    except ImportError:
        return None, None, None
    return (getattr(m, "compact_archive", None), getattr(m, "apply_retention", None),
            getattr(m, "RetentionPolicy", None))


def retention_policy(s: ScheduleConfig, policy_type: Any) -> Any:
    """The archive's retention policy from the schedule settings (0 = unlimited), or ``None``
    when no limit is set (the job is then not scheduled)."""
    def days(v: float) -> float | None:
        return v if v > 0 else None

    def size(gib: float) -> int | None:
        return int(gib * 1024**3) if gib > 0 else None

    kw = {"journal_max_age_days": days(s.journal_retention_days),
          "journal_max_bytes": size(s.journal_retention_gib),
          "parquet_max_age_days": days(s.retention_days),
          "parquet_max_bytes": size(s.parquet_retention_gib)}
    if all(v is None for v in kw.values()):
        return None
    return policy_type(**kw)


async def _commit(worker: Worker) -> None:
    # a task of the worker's group (its shutdown cancels it; the commit itself is settled
    # by the final commit), not a job APScheduler would cancel midway at its shutdown
    worker.spawn(worker.archive.commit("schedule"), "scheduled commit")


async def _disk(worker: Worker) -> None:
    worker.spawn(worker.archive.check_disk(), "disk check")


async def _instrument_refresh(worker: Worker) -> None:
    worker.pool.instrument_refresh()


async def daily_audit(worker: Worker) -> dict[str, Path] | None:
    """Audit yesterday (UTC) of the worker's own archive root into ``<root>/audits/``.

    The audit only reads committed Parquet files, so it runs in a thread beside capture. A
    failure is logged, never raised: an audit must not take a capture worker down.
    """
    from recorder.audit.command import run_daily_audit

    # One host of several (--shard K/N, N > 1) records only its share of the online pairs:
    # it is audited against what it recorded, not against every pair Kraken listed.
    _, hosts = worker.cfg.shard_index
    expect = "recorded" if hosts > 1 else None
    try:
        paths = await asyncio.to_thread(run_daily_audit, worker.root, worker.root / "audits",
                                        expect=expect)
    except Exception as exc:  # noqa: BLE001 - reported, capture goes on
        log.error("daily audit of %s failed: %s", worker.root, exc)
        return None
    log.info("daily audit written: %s", paths["html"])
    return paths


async def _save_rates(worker: Worker) -> None:
    save_rates(rates_path(worker.root), worker.pool.rates(worker.uptime_s()))


def start_jobs(worker: Worker) -> Any:
    """Create and start the scheduler on the running loop; returns it (or None if APScheduler
    is missing, which the capture command reports at start-up)."""
    try:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler
        from apscheduler.triggers.cron import CronTrigger
    except ImportError:  # pragma: no cover - a dependency of the package
        log.error("APScheduler is not installed: periodic jobs (commits, disk guard, "
                  "compaction, retention) disabled; commits happen on size and at shutdown")
        return None
    s = worker.cfg.schedule
    sched = AsyncIOScheduler(job_defaults={"coalesce": True, "max_instances": 1,
                                           "misfire_grace_time": 60})
    # Every job is a coroutine: APScheduler's asyncio executor runs plain functions in a thread
    # pool, and the archive writer must only be used from the event loop's thread.
    sched.add_job(_commit, "interval", seconds=max(s.roll_minutes * 60, 0.5), args=[worker],
                  id="commit")
    sched.add_job(_disk, "interval", seconds=max(s.disk_check_s, 0.1), args=[worker], id="disk")
    sched.add_job(_instrument_refresh, "interval", minutes=max(s.instrument_refresh_minutes, 0.05),
                  args=[worker], id="instruments")
    sched.add_job(_save_rates, "interval", minutes=5, args=[worker], id="rates")
    if s.audit_cron:
        # UTC: the audited day is a UTC day, whatever the host's local time zone
        sched.add_job(daily_audit, CronTrigger.from_crontab(s.audit_cron, timezone="UTC"),
                      args=[worker], id="audit")
    compact, retention, policy_type = maintenance_functions()
    if compact is None:
        log.warning("compaction disabled: this archive has no compact_archive()")
    elif s.compaction_cron:
        sched.add_job(worker.archive.maintenance, CronTrigger.from_crontab(s.compaction_cron),
                      args=["compaction", compact], id="compaction")
    policy = retention_policy(s, policy_type) if policy_type is not None else None
    if retention is None or policy_type is None:
        log.warning("retention disabled: this archive has no apply_retention()")
    elif policy is None:
        log.info("retention disabled: no retention limit configured (schedule.retention_days, "
                 "journal_retention_days, *_retention_gib are 0)")
    else:
        sched.add_job(worker.archive.maintenance, CronTrigger.from_crontab(s.retention_cron),
                      args=["retention", functools.partial(_retain, retention, policy)],
                      id="retention")
    log.info("jobs: commit every %.1f min, checkpoints every %.1f min (pipeline), disk guard "
             "every %.0fs, compaction %r, retention %s", s.roll_minutes, s.checkpoint_minutes,
             s.disk_check_s, s.compaction_cron if compact is not None else "off",
             repr(s.retention_cron) if policy is not None and retention is not None else "off")
    sched.start()
    worker.spawn(worker.archive.check_disk(), "disk check")
    return sched


def _retain(apply_retention: Any, policy: Any, archive: Any) -> Any:
    return apply_retention(archive, policy)
