"""``recorder run`` says why nothing is recorded, through the real CLI (bounded in time).

Against a closed port and against ``recorder sim`` on loopback: ``/health`` and
``recorder status`` name the venue's connect error and the next retry, a level3 API key the
venue refuses, a connection that cannot connect, quarantined pairs and a nearly full disk; the
start-up block says what the run records; and a worker that fails the same way at every start
stops the recorder with a non-zero exit and the error instead of restarting forever.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from recorder.capture.supervisor import EXIT_CRASH_LOOP

pytestmark = pytest.mark.integration

PY = sys.executable
KEY = "HEALTHKEY"
SECRET = base64.b64encode(b"health-test-secret-material-0123456789abcdef" * 2).decode()
WRONG_SECRET = base64.b64encode(b"not-the-secret-the-venue-knows-0123456789ab" * 2).decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A sim with 3 pairs, API keys and one corrupted book checksum 4 s in."""
    proc = subprocess.Popen([PY, "-m", "recorder", "sim", "--port", "0", "--pairs", "3",
                             "--seed", "3", "--api-key", KEY, "--api-secret", SECRET,
                             "--faults", "checksum:channel=book,at=4,count=1"],
                            stdout=subprocess.PIPE, stderr=open(tmp_path / "sim.err", "wb"))
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline())
    finally:
        _stop(proc, signal.SIGINT, 10)


class Run:
    """``recorder run`` as a subprocess, its stderr in a file, its metrics port known."""

    def __init__(self, tmp: Path, args: list[str], env: dict[str, str]) -> None:
        self.port = _free_port()
        self.err = tmp / "recorder.err"
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("RECORDER_", "KRAKEN_API_"))}
        self.proc = subprocess.Popen(
            [PY, "-m", "recorder", "run", "--metrics-port", str(self.port), *args],
            env={**base, "RECORDER_CONNECTION__CONNECT_TIMEOUT_S": "1", **env},
            stdout=subprocess.DEVNULL, stderr=open(self.err, "wb"))

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=3) as r:
                return json.loads(r.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    def wait_health(self, pred: Callable[[list[str]], bool], what: str,
                    timeout: float = 45.0) -> list[str]:
        deadline = time.monotonic() + timeout
        problems: list[str] = []
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()[-3000:]
            report = self.health()
            if report is not None:
                problems = report["problems"]
                if pred(problems):
                    return problems
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}; problems: {problems}\n"
                             f"log tail: {self.log()[-3000:]}")

    def status_cli(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PY, "-m", "recorder", "status", "--url",
                               f"http://127.0.0.1:{self.port}"], capture_output=True, text=True,
                              timeout=30, env={**os.environ, "COLUMNS": "400"})

    def log(self) -> str:
        return self.err.read_text(errors="replace")


def _has(problems: list[str], *needles: str) -> bool:
    return any(all(n in p for n in needles) for p in problems)


def _unwrapped(text: str) -> str:
    """``recorder status`` output with rich's line wrapping undone."""
    return re.sub(r"\s*\n\s*", " ", text)


def test_offline_health_and_status_name_the_connect_error_and_the_next_retry(
        tmp_path: Path) -> None:
    dead = _free_port()  # nothing listens there
    url = f"ws://127.0.0.1:{dead}/v2"
    run = Run(tmp_path, ["--workers", "2", "--archive-root", str(tmp_path / "a"),
                         "--spot-ws", url], {})
    try:
        problems = run.wait_health(lambda ps: _has(ps, "venue unreachable", url,
                                                   "next retry at"), "the venue problem")
        venue = next(p for p in problems if p.startswith("venue unreachable"))
        assert re.search(r"Connect call failed|ConnectionRefused", venue), venue
        assert re.search(r"next retry at \d\d:\d\d:\d\dZ \(in \d+s\) \(attempt \d+\)", venue), venue
        assert not any("no status" in p for p in problems), problems
        out = run.status_cli()
        assert out.returncode == 1, out.stderr
        text = _unwrapped(out.stdout)
        assert "UNHEALTHY" in text and f"cannot read the pair list from {url}" in text
        assert "next retry at" in text and "waiting for the pair list" in text
        assert _stop(run.proc) == 0
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    assert "Traceback" not in run.log()


def test_health_names_refused_keys_down_connections_and_quarantined_pairs(
        tmp_path: Path, sim: dict[str, str]) -> None:
    dead = _free_port()
    run = Run(tmp_path, ["--workers", "1", "--archive-root", str(tmp_path / "a"),
                         "--spot-ws", sim["spot_ws"], "--l3-ws", sim["l3_ws"],
                         "--spot-rest", sim["rest"], "--futures-rest", sim["rest"],
                         "--futures", "PF_XBTUSD", "--futures-ws", f"ws://127.0.0.1:{dead}/ws/v1"],
              {"KRAKEN_API_KEY": KEY, "KRAKEN_API_SECRET": WRONG_SECRET,
               "RECORDER_HEALING__MAX_FAILURES": "1", "RECORDER_CHANNELS__BOOK_DEPTH": "10",
               "RECORDER_CONNECTION__BACKOFF_MAX_S": "5"})
    try:
        problems = run.wait_health(
            lambda ps: _has(ps, "level3", "auth refused", "EAPI:Invalid signature", "next retry")
            and _has(ps, "futures-book-0", f"127.0.0.1:{dead}", "next retry")
            and _has(ps, "quarantined", "book:", "until"), "the three reasons")
        auth = next(p for p in problems if "auth refused" in p)
        assert "KRAKEN_API_KEY/KRAKEN_API_SECRET" in auth and sim["l3_ws"] in auth, auth
        down = next(p for p in problems if "futures-book-0" in p and "not connected" in p)
        assert re.search(r"Connect call failed|ConnectionRefused", down), down
        out = run.status_cli()
        assert out.returncode == 1
        text = _unwrapped(out.stdout)
        assert "auth refused" in text and "quarantined" in text and "not connected" in text
        assert _stop(run.proc) == 0
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    log = run.log()
    assert "Traceback" not in log and SECRET not in log and WRONG_SECRET not in log
    block = log[log.index("shard 1/1: 3 of 3 online pairs, 1 futures products, 1 worker"):]
    block = "\n".join(block.splitlines()[:9])
    for needle in (f"spot {sim['spot_ws']}", f"level3 {sim['l3_ws']}", "level3 depth 10 (3 pairs",
                   "book depth 10 (3 pairs", "book, trade on 1 product: PF_XBTUSD",
                   f"{tmp_path / 'a'}/", "msgs/s", "/day on disk", "CPU cores", "estimates"):
        assert needle in block, (needle, block)


def test_health_says_capture_is_paused_on_a_nearly_full_disk(
        tmp_path: Path, sim: dict[str, str]) -> None:
    run = Run(tmp_path, ["--workers", "1", "--archive-root", str(tmp_path / "a"),
                         "--spot-ws", sim["spot_ws"], "--spot-rest", sim["rest"]],
              {"RECORDER_SCHEDULE__DISK_MIN_FREE_BYTES": str(10**18),
               "RECORDER_SCHEDULE__DISK_RESUME_FREE_BYTES": str(10**18),
               "RECORDER_SCHEDULE__DISK_CHECK_S": "0.5"})
    try:
        problems = run.wait_health(lambda ps: _has(ps, "paused, nothing recorded"), "the pause")
        paused = next(p for p in problems if "paused" in p)
        assert "disk nearly full" in paused and str(tmp_path / "a") in paused, paused
        assert "resumes at 1,000,000,000,000,000,000 bytes free" in paused, paused
        assert not any("not connected" in p for p in problems), problems
        text = _unwrapped(run.status_cli().stdout)
        assert "disk nearly full" in text and "paused" in text
        assert _stop(run.proc) == 0
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    assert "Traceback" not in run.log()


def test_a_worker_failing_at_every_start_stops_the_recorder_with_its_error(
        tmp_path: Path, sim: dict[str, str]) -> None:
    archive = tmp_path / "a"
    archive.mkdir()
    (archive / "cl-w0").write_text("a file where worker 0's archive root must go\n")
    run = Run(tmp_path, ["--workers", "1", "--archive-root", str(archive),
                         "--spot-ws", sim["spot_ws"], "--spot-rest", sim["rest"]],
              {"RECORDER_HOST": "cl", "RECORDER_CRASH_LOOP_FAILURES": "3"})
    try:
        problems = run.wait_health(lambda ps: _has(ps, "worker 0: exited with code 1",
                                                   "FileExistsError", "restart"),
                                   "the worker's exit in /health")
        assert _has(problems, str(archive / "cl-w0")), problems
        code = run.proc.wait(60)
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    log = run.log()
    assert code == EXIT_CRASH_LOOP, log[-3000:]
    assert len(re.findall(r"worker 0 started \(pid", log)) == 3, log[-3000:]
    last = log.strip().splitlines()[-1]
    assert ("recorder stopped (exit status 4): worker 0 failed 3 times in a row, each time "
            "with: FileExistsError") in last, last
    assert f"FileExistsError: [Errno 17] File exists: '{archive / 'cl-w0'}'" in last, last
    assert "Traceback" not in log
