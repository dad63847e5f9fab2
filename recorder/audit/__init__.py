"""``recorder audit``: what the archive covers, what is quiet, what is missing, and why.

Pure core: :mod:`recorder.audit.intervals` (interval arithmetic),
:mod:`recorder.audit.coverage` (the quiet/missing model from proof of listening, recorder runs,
connection drops, verdicts), :mod:`recorder.audit.expect` (what should have been recorded) and
:mod:`recorder.audit.truth` (reconciling a simulator's truth file). Shell:
:mod:`recorder.audit.load` (DuckDB over the manifest's Parquet files, SQL in
``queries/audit/``), :mod:`recorder.audit.report` (the JSON report), :mod:`recorder.audit.html`
and :mod:`recorder.audit.command` (CLI, terminal table, :func:`run_daily_audit`).
See docs/audit.md.
"""

from recorder.audit.command import run_daily_audit
from recorder.audit.report import build_report

__all__ = ["build_report", "run_daily_audit"]
