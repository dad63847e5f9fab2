"""``recorder demo``: the whole recorder, offline, in under two minutes.

1. starts ``recorder sim`` (a local Kraken: spot pairs, futures, level3 with generated API
   keys) on an ephemeral loopback port;
2. runs the real capture service (``recorder run`` as a subprocess, two worker processes,
   a generated configuration pointing at the simulator) for ``--seconds``; once every
   subscription is acknowledged it gives the simulator a mild fault schedule through its
   control endpoint (one corrupted book checksum, one dropped trade frame, one abrupt
   disconnect of the trade connection, added once the dropped trade's gap is seen), timed
   from that moment, so a slow start on a busy machine moves the faults instead of changing
   what they hit (see :func:`fault_schedule`); the capture goes on past
   ``--seconds`` if need be until every fault has fired and the recorder has healed it;
3. stops both cleanly (SIGTERM drain of the recorder, then the simulator);
4. prints an audit summary per writer root (with the HTML report), a replay verification,
   a rebuilt L3 book of the busiest pair at a time inside the run, an example SQL query with
   its result, and where everything is.

The archive directory (``--archive``, default a new temporary directory) is the capture
parent: ``<DIR>/demo-w0/``, ``<DIR>/demo-w1/`` are the writer roots, ``<DIR>/demo/`` holds the
simulator's truth file, both processes' logs, the generated configuration and the HTML audit
reports. ``recorder query --archive DIR`` reads it all.

Ctrl-C (or SIGTERM) during capture stops it early and still prints the results; a second one
aborts. Exit status: 0 when every section was produced and the archive verifies, 1 when a
section failed (the message says which), 2 for bad usage, 130 when aborted.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final

import click

from recorder.capture.sim_config import render_toml, sim_settings
from recorder.errors import RecorderError

__all__ = ["DemoError", "demo_command", "fault_schedule", "write_config"]

HOST: Final = "demo"
PAIRS: Final = 24
FUTURES: Final = ("PF_XBTUSD", "PF_ETHUSD")
WORKERS: Final = 2
_STARTUP_S: Final = 40.0  # simulator + recorder start, first subscriptions acknowledged
_DRAIN_S: Final = 30.0
#: After the last scheduled fault: how long the capture may go on past ``--seconds`` waiting
#: for the faults to fire and their gaps to heal before it stops anyway (and says so).
_FAULTS_GRACE_S: Final = 60.0
_SETTLE_S: Final = 2.0
#: The pair the dropped trade frame is taken from: the busiest, so that its next trade (which
#: makes the recorder see the trade-id jump and backfill it) comes within the run.
_DROP_SYMBOL: Final = "BTC/USD"
_PY: Final = sys.executable


class DemoError(RecorderError, RuntimeError):
    """The demo could not run (simulator or recorder failed to start or died)."""


def _fault_times(seconds: float) -> list[float]:
    """When the checksum, the drop and the close are planned: seconds after every
    subscription is acknowledged, spread over a run of ``seconds``."""
    return [max(2.0, seconds * f) for f in (0.30, 0.45, 0.60)]


def _frame_faults(seconds: float) -> str:
    at = _fault_times(seconds)
    return ";".join([f"checksum:channel=book,at={at[0]:.1f},count=1",
                     f"drop:channel=trade,symbol={_DROP_SYMBOL},at={at[1]:.1f},count=1"])


def _close_fault(at: float) -> str:
    return f"close:endpoint=spot,channel=trade,at={at:.1f},count=1"


def fault_schedule(seconds: float) -> str:
    """The mild fault plan for a run of ``seconds``: one checksum corruption on a book frame,
    one dropped trade frame (of the busiest pair), one abrupt close of the spot trade
    connection, spread over the run.

    It is given to the simulator (``POST /control/faults``) once every subscription is
    acknowledged, so its times count from then: the simulator sends each snapshot right after
    its acknowledgement, so by then every book snapshot is out and the corrupted checksum is
    an update's (a gap inside an epoch, healed by a fresh snapshot). The close is added only
    once the recorder has seen the dropped trade's id jump (at its planned time, or at once if
    that has passed): the resubscription after a close fetches recent trades, which would
    otherwise fill the dropped one before the pair's next trade showed the jump."""
    return f"{_frame_faults(seconds)};{_close_fault(_fault_times(seconds)[2])}"


def write_config(path: Path, *, archive: Path, urls: dict[str, str], metrics_port: int) -> Path:
    """Write the demo's ``recorder run`` configuration: the shared sim profile
    (:func:`recorder.capture.sim_config.sim_settings`) with two workers, book depth 25,
    fast commits and checkpoints so the run shows them, and a disk guard that only stops a
    nearly full disk. Credentials are not in it (they go through the environment)."""
    settings = sim_settings(urls, archive=archive, host=HOST, metrics_port=metrics_port,
                            workers=WORKERS, futures=FUTURES, overrides={
                                "channels": {"book_depth": 25},
                                "schedule": {"checkpoint_minutes": 0.25,
                                             "disk_min_free_bytes": 64 * 2**20,
                                             "disk_resume_free_bytes": 128 * 2**20}})
    path.write_text(render_toml(settings, header="generated by `recorder demo`"),
                    encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Procs:
    """The demo's child processes (each in its own session: the demo decides the stop order)."""

    sim: subprocess.Popen[bytes] | None = None
    recorder: subprocess.Popen[bytes] | None = None
    logs: list[Any] = field(default_factory=list)

    def stop_recorder(self, timeout: float = _DRAIN_S) -> int | None:
        p = self.recorder
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                return p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
                return None
        return p.returncode

    def stop_sim(self) -> None:
        p = self.sim
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def close(self) -> None:
        self.stop_recorder()
        self.stop_sim()
        for f in self.logs:
            f.close()


def _status(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:  # 503 while unhealthy: the body is still the status
        try:
            return json.loads(exc.read())
        except ValueError:
            return None
    except (OSError, ValueError):
        return None


def _workers(st: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list((st or {}).get("workers", {}).values())


def _subscribed(st: dict[str, Any] | None) -> bool:
    ws = _workers(st)
    conns = [c for w in ws for c in w.get("connections", [])]
    return (len(ws) == WORKERS and bool(conns)
            and all(c.get("connected") and "active" in (c.get("states") or {}) for c in conns))


def _settled(st: dict[str, Any] | None) -> bool:
    """Every subscription active and no heal or REST request pending in any worker."""
    return _subscribed(st) and all(
        w.get("heal_pending") == 0 and w.get("rest_queue") == 0 for w in _workers(st))


def _total(st: dict[str, Any] | None, name: str) -> int:
    return sum(int(w.get(name, 0) or 0) for w in _workers(st))


def _trade_sessions(st: dict[str, Any] | None) -> int:
    """Sessions opened so far by the spot trade connections (the ``close`` fault's target)."""
    return sum(int(c.get("sessions", 0) or 0) for w in _workers(st)
               for c in w.get("connections", []) if c.get("channel") == "trade"
               and c.get("stream", "spot") == "spot")


def _control(url: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """GET (or, with ``body``, POST as JSON) the simulator's control endpoint ``url``; None
    when it does not answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            doc = json.loads(r.read())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


@dataclass
class _FaultWatch:
    """The demo's faults (:func:`fault_schedule`), from the moment every subscription is
    acknowledged until they are in the archive: the checksum and the drop are added first;
    the close once the recorder has seen both; done when every rule fired (the simulator
    says so) and the recorder has healed them (a new trade session; nothing pending)."""

    control: str
    seconds: float
    added_at: float  #: monotonic time the checksum and drop rules were added
    close_added_at: float | None = None
    trade_sessions: int = 0  #: spot trade sessions when the close was added
    done_at: float | None = None  #: monotonic time they were first seen fired and healed

    def check(self, st: dict[str, Any] | None, now: float) -> str | None:
        """Advance with recorder status ``st``; the close rule when it was just added."""
        if self.close_added_at is None:
            if _total(st, "checksum_failures") >= 1 and _total(st, "trade_gaps") >= 1:
                at = max(1.0, _fault_times(self.seconds)[2] - (now - self.added_at))
                rule = _close_fault(at)
                if _control(self.control + "/faults", {"spec": rule}) is None:
                    raise DemoError("the simulator refused the close fault")
                self.close_added_at, self.trade_sessions = now, _trade_sessions(st)
                return rule
        elif self.done_at is None and (_trade_sessions(st) > self.trade_sessions
                                       and _settled(st)):
            doc = _control(self.control + "/faults")
            rules = (doc or {}).get("rules", [])
            if len(rules) == 3 and all(r.get("fired", 0) >= 1 for r in rules):
                self.done_at = now
        return None

    def settled_by(self, now: float) -> bool:
        """Done for at least :data:`_SETTLE_S` (a REST backfill already taken off the queue
        may still be answering)."""
        return self.done_at is not None and now >= self.done_at + _SETTLE_S

    def overdue(self, now: float) -> bool:
        return now > self.added_at + _fault_times(self.seconds)[2] + _FAULTS_GRACE_S


def _progress_line(elapsed: float, st: dict[str, Any] | None) -> str:
    ws = _workers(st)
    if not ws:
        return f"  {elapsed:5.0f}s  starting..."
    frames = sum(w.get("frames_in", 0) or 0 for w in ws)
    ok = sum(w.get("checksums_ok", 0) or 0 for w in ws)
    bad = sum(w.get("checksum_failures", 0) or 0 for w in ws)
    gaps = sum(w.get("trade_gaps", 0) or 0 for w in ws)
    conns = [c for w in ws for c in w.get("connections", [])]
    up = sum(1 for c in conns if c.get("connected"))
    return (f"  {elapsed:5.0f}s  frames received {frames:>7}  checksums verified {ok:>7}  "
            f"checksum failures {bad}  trade gaps {gaps}  connections up {up}/{len(conns)}")


def _section(title: str) -> None:
    click.echo("")
    click.secho(f"== {title} " + "=" * max(3, 74 - len(title)), bold=True)


# ------------------------------------------------------------------ capture


def _capture(archive: Path, work: Path, seconds: float, stop: threading.Event,
             procs: _Procs) -> dict[str, Any]:
    """Run the simulator and the recorder; returns facts for the report."""
    key = "DEMOKEY"
    secret = base64.b64encode(secrets.token_bytes(64)).decode()
    faults = fault_schedule(seconds)
    sim_log = open(work / "sim.log", "wb")  # noqa: SIM115 - closed by _Procs.close
    procs.logs.append(sim_log)
    procs.sim = subprocess.Popen(
        [_PY, "-m", "recorder", "sim", "--port", "0", "--pairs", str(PAIRS), "--seed", "7",
         "--api-key", key, "--api-secret", secret, "--truth", str(work / "truth.jsonl")],
        stdout=subprocess.PIPE, stderr=sim_log, start_new_session=True)
    line = _read_line(procs.sim, 30.0)
    if not line:
        raise DemoError(f"the simulator did not start (see {work / 'sim.log'})")
    urls = json.loads(line)
    port = _free_port()
    cfg = write_config(work / "recorder.toml", archive=archive, urls=urls, metrics_port=port)
    click.echo(f"simulator: {urls['rest']} ({PAIRS} spot pairs, futures {', '.join(FUTURES)}); "
               f"faults (timed from the last subscription's acknowledgement; the close once the "
               f"dropped trade's gap is seen): {faults}")
    click.echo(f"recorder:  recorder run --config {cfg}  ({WORKERS} workers, level3 with the "
               f"simulator's keys; status on http://127.0.0.1:{port}/status)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECORDER_")}
    env.update(KRAKEN_API_KEY=key, KRAKEN_API_SECRET=secret)
    rec_log = open(work / "recorder.log", "wb")  # noqa: SIM115 - closed by _Procs.close
    procs.logs.append(rec_log)
    procs.recorder = subprocess.Popen([_PY, "-m", "recorder", "run", "--config", str(cfg)],
                                      env=env, stdout=subprocess.DEVNULL, stderr=rec_log,
                                      start_new_session=True)
    t0 = time.monotonic()
    deadline = t0 + seconds
    next_line = t0
    subscribed_at: float | None = None
    watch: _FaultWatch | None = None
    st: dict[str, Any] | None = None
    while not stop.is_set():
        now = time.monotonic()
        if watch is not None and (rule := watch.check(st, now)) is not None:
            click.echo(f"  {now - t0:5.1f}s  the dropped trade's gap was seen; added {rule}")
        if now >= deadline and watch is not None and (watch.settled_by(now)
                                                      or watch.overdue(now)):
            if watch.done_at is None:
                click.echo(f"  {now - t0:5.1f}s  the faults did not all fire and heal within "
                           f"{_FAULTS_GRACE_S:.0f}s of the last one's time: stopping anyway")
            break
        if procs.recorder.poll() is not None:
            raise DemoError(f"the recorder exited with status {procs.recorder.returncode} "
                            f"(see {work / 'recorder.log'})")
        if procs.sim.poll() is not None:
            raise DemoError(f"the simulator exited (see {work / 'sim.log'})")
        st = _status(port)
        if subscribed_at is None and _subscribed(st):
            subscribed_at = now
            click.echo(f"  {now - t0:5.1f}s  every subscription acknowledged")
            frame_faults = _frame_faults(seconds)
            if _control(urls["control"] + "/faults", {"spec": frame_faults}) is None:
                raise DemoError(f"the simulator refused the fault schedule (see {work / 'sim.log'})")
            watch = _FaultWatch(urls["control"], seconds, time.monotonic())
            click.echo(f"  {now - t0:5.1f}s  faults scheduled: {frame_faults}")
        if subscribed_at is None and now - t0 > _STARTUP_S:
            raise DemoError(f"the recorder did not subscribe within {_STARTUP_S:.0f}s "
                            f"(see {work / 'recorder.log'})")
        if now >= next_line:
            click.echo(_progress_line(now - t0, st))
            next_line = now + 5.0
        stop.wait(0.5)
    if stop.is_set():
        click.echo("  interrupted: stopping capture early (Ctrl-C again to abort)")
    click.echo(f"  {time.monotonic() - t0:5.1f}s  stopping the recorder (SIGTERM: drain, commit)")
    code = procs.stop_recorder()
    procs.stop_sim()
    if code != 0:
        raise DemoError(f"the recorder did not stop cleanly (status {code}; see "
                        f"{work / 'recorder.log'})")
    click.echo(f"  stopped cleanly after {time.monotonic() - t0:.1f}s")
    return {"urls": urls, "faults": faults, "status": st, "captured_s": time.monotonic() - t0}


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """The first stdout line of ``proc`` within ``timeout`` (b"" if none)."""
    out: list[bytes] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: out.append(proc.stdout.readline()),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    reader.join(timeout)
    return out[0] if out else b""


# ------------------------------------------------------------------ report


def _audit(roots: list[Path], work: Path) -> tuple[list[Path], bool]:
    """Audit summary per writer root and an HTML report each; returns (html paths, ok)."""
    html: list[Path] = []
    try:
        from recorder.audit import build_report
        from recorder.audit.command import render_terminal
        from recorder.audit.html import render_html
    except ImportError as exc:
        click.echo(f"(recorder.audit not importable: {exc}; running `recorder audit`)")
        return _audit_subprocess(roots, work)
    ok = True
    for root in roots:
        try:
            report = build_report(root)
        except Exception as exc:  # noqa: BLE001 - a failing section is reported, not fatal
            click.echo(f"audit of {root} failed: {type(exc).__name__}: {exc}")
            ok = False
            continue
        render_terminal(report, limit=5)
        path = work / f"audit-{root.name}.html"
        path.write_text(render_html(report), encoding="utf-8")
        html.append(path)
    return html, ok


def _audit_subprocess(roots: list[Path], work: Path) -> tuple[list[Path], bool]:
    html: list[Path] = []
    ok = True
    for root in roots:
        path = work / f"audit-{root.name}.html"
        out = subprocess.run([_PY, "-m", "recorder", "audit", "--archive", str(root), "--quiet",
                              "--html", str(path)], check=False, capture_output=True,
                             text=True, timeout=120)
        click.echo(out.stdout, nl=False)
        if out.returncode != 0:
            click.echo(f"`recorder audit` failed: {out.stderr[-500:]}")
            ok = False
        elif path.exists():
            html.append(path)
    return html, ok


def _verify(roots: list[Path]) -> bool:
    """Replay-verify every root from the archive alone (``recorder verify``)."""
    from recorder.verify import verify_archive

    ok = True
    for root in roots:
        r = verify_archive(root)
        good = r["failed"] == 0 and r["files_failed"] == 0 and r.get("checkpoints_failed", 0) == 0
        ok = ok and good
        click.echo(f"{root.name}: {r['messages_checked']} book messages re-verified against "
                   f"Kraken's checksums, {r['failed']} failed; {r['files_checked']} files, "
                   f"{r['files_failed']} unreadable; {r.get('checkpoints_checked', 0)} "
                   f"checkpoints, {r.get('checkpoints_failed', 0)} failed"
                   + ("" if good else "  <-- FAILED"))
    return ok


def _busiest_book(ar: Any) -> tuple[str, Any] | None:
    """(symbol, BookAt) of the pair with most level3 rows, at a time inside its longest
    epoch (receive clock), or None when nothing was recorded."""
    busiest = ar.sql("SELECT symbol, count(*) AS n FROM level3 GROUP BY symbol "
                     "ORDER BY n DESC, symbol LIMIT 1").collect()
    if busiest.height == 0:
        return None
    sym = busiest["symbol"][0]
    ep = ar.sql("SELECT start_ns, end_ns FROM epochs WHERE channel = 'level3' AND symbol = ? "
                "ORDER BY end_ns - start_ns DESC LIMIT 1", [sym]).collect()
    if ep.height == 0:
        return None
    start, end = int(ep["start_ns"][0]), int(ep["end_ns"][0])
    b = None
    for frac in (0.6, 0.9, 0.3, 1.0):
        b = ar.book_at(sym, start + int((end - start) * frac), channel="level3", depth=10,
                       clock="receive")
        if b.valid:
            break
    return sym, b


def _cell(value: Any) -> str:
    """Display text of a result cell: exact decimals without their padding zeros."""
    from decimal import Decimal

    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def _print_frame(df: Any, limit: int = 12) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for name in df.columns:
        table.add_column(name, justify="right")
    for row in df.head(limit).iter_rows():
        table.add_row(*(_cell(v) for v in row))
    Console(width=max(120, 16 * len(df.columns))).print(table)
    if df.height > limit:
        click.echo(f"({df.height} rows, {limit} shown)")


_SQL: Final = """SELECT bucket, open, high, low, close, volume, trades
FROM ohlc_from_trades(every := INTERVAL 10 SECOND, sym := ?)
ORDER BY bucket"""


def _report(archive: Path, work: Path) -> bool:
    from recorder.query.api import Archive
    from recorder.query.cli import print_ladder
    from recorder.roots import archive_roots

    ok = True
    roots = archive_roots(archive)
    _section(f"archive: {len(roots)} writer roots under {archive}")
    ar = Archive(archive)
    counts = ar.sql("SELECT (SELECT count(DISTINCT symbol) FROM level3) AS l3_pairs, "
                    "(SELECT count(*) FROM level3) AS l3_rows, "
                    "(SELECT count(*) FROM book) AS book_rows, "
                    "(SELECT count(*) FROM trades) AS trades, "
                    "(SELECT count(DISTINCT product_id) FROM futures_book) AS futures, "
                    "(SELECT count(*) FROM epochs) AS epochs, "
                    "(SELECT count(*) FROM gaps) AS gaps").collect()
    _print_frame(counts)
    gaps = ar.sql("SELECT cause, count(*) AS gaps, count(*) FILTER (WHERE end_ns IS NOT NULL) "
                  "AS closed, string_agg(DISTINCT healed_by, ', ') AS healed_by FROM gaps "
                  "GROUP BY cause ORDER BY gaps DESC").collect()
    click.echo("gaps recorded (every fault and every stop leaves one, with its cause):")
    _print_frame(gaps)

    _section("audit (recorder audit, per writer root)")
    html, audit_ok = _audit(roots, work)
    ok = ok and audit_ok

    _section("verify (recorder verify: every book message re-checked from the archive alone)")
    try:
        ok = _verify(roots) and ok
    except Exception as exc:  # noqa: BLE001
        click.echo(f"verify failed: {type(exc).__name__}: {exc}")
        ok = False

    _section("L3 book of the busiest pair, rebuilt from the archive")
    found = _busiest_book(ar)
    if found is None or found[1] is None:
        click.echo("no level3 data was recorded")
        ok = False
    else:
        sym, b = found
        print_ladder(b, show_root=True)
        ok = ok and bool(b.valid)

    _section("SQL (recorder.Archive(DIR).sql / recorder query --archive DIR)")
    sym = found[0] if found else "BTC/USD"
    click.echo(_SQL.replace("?", f"'{sym}'"))
    _print_frame(ar.sql(_SQL, [sym]).collect())
    ar.close()

    _section("where things are")
    click.echo(f"archive:      {archive}   ({', '.join(r.name for r in roots)})")
    for p in html:
        click.echo(f"HTML report:  {p}")
    click.echo(f"logs, truth:  {work}")
    click.echo("next:")
    click.echo(f"  recorder query --archive {archive} "
               "\"SELECT symbol, count(*) FROM trades GROUP BY ALL ORDER BY 2 DESC\"")
    if found is not None and found[1] is not None:
        click.echo(f"  recorder book '{found[0]}' --archive {archive} --channel "
                   f"{found[1].channel} --clock receive --at {found[1].at_ns}")
    click.echo(f"  recorder audit --archive {roots[0]} --html report.html")
    return ok


# ------------------------------------------------------------------ command


@click.command("demo")
@click.option("--seconds", type=click.FloatRange(5, 600), default=45.0, show_default=True,
              help="How long to capture (longer if the faults have not healed by then).")
@click.option("--archive", "archive", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="Archive directory to create (must be empty; default: a new "
                                 "temporary directory, kept).")
def demo_command(seconds: float, archive: Path | None) -> None:
    """Offline tour: local Kraken simulator with faults -> capture -> audit, verified book,
    SQL. Needs no network and no keys; takes about SECONDS + 30 s."""
    if archive is None:
        archive = Path(tempfile.mkdtemp(prefix="recorder-demo-"))
    elif archive.exists() and any(archive.iterdir()):
        click.echo(f"Error: {archive} is not empty; give a new or empty directory", err=True)
        sys.exit(2)
    archive = archive.absolute()
    work = archive / "demo"
    work.mkdir(parents=True, exist_ok=True)
    click.secho(f"recorder demo: {seconds:.0f} s of capture into {archive}", bold=True)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    procs = _Procs()
    try:
        _section("capture")
        _capture(archive, work, seconds, stop, procs)
        for s, h in old.items():
            signal.signal(s, h)
        ok = _report(archive, work)
    except DemoError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("\naborted", err=True)
        sys.exit(130)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        procs.close()
    if not ok:
        click.echo("\nsome sections failed (see above)", err=True)
        sys.exit(1)
