"""``recorder audit``: what the archive covers, what is quiet, what is missing, and why.

Pure core: :mod:`recorder.audit.intervals` (interval arithmetic) and
:mod:`recorder.audit.coverage` (the quiet/missing model and verdicts). Shell:
:mod:`recorder.audit.load` (DuckDB over the manifest's Parquet files, SQL in
``queries/audit/``), :mod:`recorder.audit.report` (the JSON report), :mod:`recorder.audit.html`
and :mod:`recorder.audit.command` (CLI, terminal table, :func:`run_daily_audit`).
See docs/audit.md.
"""

from recorder.audit.command import run_daily_audit
from recorder.audit.report import build_report

__all__ = ["build_report", "run_daily_audit"]
