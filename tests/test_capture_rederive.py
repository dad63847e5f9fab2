"""Live capture and ``recorder ingest`` run one feed loop: the archive a capture writes, across
injected faults, a kill -9 of a worker and its recovery, is exactly what deriving its journal
again from scratch writes.

``recorder run`` records ``recorder sim`` with faults (corrupted book and level3 checksums,
dropped trades, a closed socket, a stalled level3 feed) and a short checkpoint interval; worker 0
is killed with SIGKILL mid-run, restarted by the supervisor (it re-derives its journal tail and
records the restart gap), and the recorder is stopped cleanly. Then each writer root's journal
is ingested into a fresh archive, and every dataset of ``schemas/`` is compared as a row set,
both ways (DuckDB ``EXCEPT ALL``): checkpoints, epochs, gaps and liveness included. Nothing is
left out: every row is a function of the journal and of the derivation settings the journal
records, wall-clock times included (markers carry the time they were journaled).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from recorder.archive.journal import list_segments
from recorder.archive.schema import load_schemas
from recorder.archive.session import journal_settings
from recorder.capture.writer import writer_roots
from tests.test_capture_integration import PY, S, Recorder, Sim, _all_active, dataset, rows

pytestmark = pytest.mark.integration

FAULTS = ";".join([
    "checksum:channel=book,rate=0.003,count=6",
    "checksum:channel=level3,rate=0.003,count=4",
    "drop:channel=trade,rate=0.03,count=6",
    "close:endpoint=spot,channel=trade,at=14",
    "stall:endpoint=l3,at=20,duration=6",
])
#: checkpoint interval of the capture (3 s): far from the 15-minute default, so an ingest that
#: did not take the journal's settings would write other ``checkpoints`` rows
CHECKPOINT_MINUTES = 0.05
CHANNELS = {"book", "level3", "trade", "ohlc"}


def _difference(con: duckdb.DuckDBPyConnection, a: pa.Table, b: pa.Table) -> list[Any]:
    """Rows of ``a`` not in ``b`` as a multiset (at most 5 shown)."""
    con.register("a_rows", a)
    con.register("b_rows", b)
    try:
        return con.execute("SELECT * FROM (SELECT * FROM a_rows EXCEPT ALL "
                           "SELECT * FROM b_rows) LIMIT 5").fetchall()
    finally:
        con.unregister("a_rows")
        con.unregister("b_rows")


def _rederive(root: Path, fresh: Path) -> None:
    segments = [str(root / "journal" / s) for s in list_segments(root / "journal")]
    assert segments
    out = subprocess.run([PY, "-m", "recorder", "ingest", *segments, "--archive", str(fresh),
                          "--quiet", "--json"], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


def test_live_archive_equals_the_rederived_journal_after_faults_and_kill_9(tmp_path: Path) -> None:
    sim = Sim(tmp_path, pairs=12, faults=FAULTS, seed=23)
    rec = Recorder(tmp_path, sim, extra_env={
        "RECORDER_SCHEDULE__ROLL_MINUTES": "0.03",
        "RECORDER_SCHEDULE__CHECKPOINT_MINUTES": str(CHECKPOINT_MINUTES)})
    try:
        st = rec.wait_for(lambda s: _all_active(s, CHANNELS)
                          and all(w["commits"] >= 2 for w in s["workers"].values()),
                          90, "every subscription acknowledged and scheduled commits")
        time.sleep(3)  # frames journaled after the last commit: recovery re-derives them
        victim = st["workers"]["0"]["pid"]
        os.kill(victim, signal.SIGKILL)
        rec.wait_for(lambda s: any(sh.get("restarts") for sh in s["shards"])
                     and _all_active(s, CHANNELS)
                     and all(w["pid"] != victim for w in s["workers"].values()),
                     90, "worker 0 restarted and resubscribed")
        time.sleep(14)  # the socket close, the level3 stall and their heals, after the restart
        rec.wait_for(lambda s: all(w["heal_pending"] == 0 and w["rest_queue"] == 0
                                   for w in s["workers"].values()), 60, "healing to finish")
        time.sleep(1)
        assert rec.stop(60) == 0
    finally:
        if rec.proc.poll() is None:
            rec.proc.kill()
        sim.stop()

    roots = writer_roots(rec.root)
    assert len(roots) == 2
    schemas = load_schemas()
    con = duckdb.connect()
    compared: Counter[str] = Counter()
    for root in roots:
        recorded = journal_settings(root / "journal" / list_segments(root / "journal")[0])
        assert recorded is not None
        assert recorded.checkpoint_interval_ns == int(CHECKPOINT_MINUTES * 60 * S)
        fresh = tmp_path / f"rederived-{root.name}"
        _rederive(root, fresh)
        for name in sorted(schemas):
            live, again = dataset(rec.root, name, [root]), dataset(fresh, name, [fresh])
            if live is None and again is None:
                continue
            assert live is not None and again is not None, (root.name, name, live, again)
            assert live.schema == again.schema, (root.name, name)
            only_live, only_again = _difference(con, live, again), _difference(con, again, live)
            assert not only_live and not only_again, (
                f"{root.name} {name}: {live.num_rows} live rows, {again.num_rows} re-derived; "
                f"only live: {only_live}; only re-derived: {only_again}")
            assert live.num_rows == again.num_rows
            compared[name] += live.num_rows

    # what was compared is what the test is about: faults, the crash and the settings show
    killed = next(r for r in roots if r.name.endswith("-w0"))
    restart = [g for g in rows(rec.root, "gaps", [killed]) if g["cause"] == "process_restart"]
    assert len(restart) == 1 and "crash" in restart[0]["detail"], restart
    causes = {g["cause"] for g in rows(rec.root, "gaps", roots)}
    assert "disconnect" in causes and causes & {"checksum_mismatch", "trade_id_jump"}, causes
    reasons = {c["reason"] for c in rows(rec.root, "checkpoints", roots)}
    assert {"epoch_start", "interval"} <= reasons, reasons
    for name in ("book", "level3", "trades", "epochs", "gaps", "checkpoints", "liveness"):
        assert compared[name] > 0, (name, compared)
