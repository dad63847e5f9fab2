"""``make run`` (issue #8): the exact command the Makefile runs, with the default configuration.

The command is taken from ``make -n run`` and run as is from a fresh working directory (where
``make run`` would create ``archive/``). Only two environment overrides keep the test off the
internet and off a real recorder's port: the spot WebSocket URL (a loopback port nothing
listens on, or the local sim) and the metrics port. Everything else is the built-in default:
no keys, every worker, default archive location.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from recorder.capture.config import load_config

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _make_run_argv() -> list[str]:
    """The recipe line of ``make run`` (dry run), as argv with the executable made absolute."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-n", "run"], cwd=REPO, capture_output=True, text=True,
                         timeout=30, check=True)
    lines = [ln for ln in out.stdout.splitlines() if re.search(r"\brecorder run\b", ln)]
    assert len(lines) == 1, out.stdout
    argv = shlex.split(lines[0])
    assert argv[1:] == ["run"], f"make run must use the default configuration: {lines[0]}"
    exe = Path(argv[0])
    return [str(exe if exe.is_absolute() else REPO / exe), *argv[1:]]


def _env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RECORDER_", "KRAKEN_API_"))}
    env.update(overrides)
    return env


def test_make_run_is_production_capture_with_defaults() -> None:
    argv = _make_run_argv()
    assert Path(argv[0]).name == "recorder"
    cfg = load_config(None, env={})
    assert cfg.archive_root == Path("archive")  # relative: <checkout>/archive (gitignored)
    assert cfg.venue.spot_ws == "wss://ws.kraken.com/v2" and cfg.credentials is None
    assert cfg.channels.level3 and cfg.channels.book and cfg.channels.trade
    assert "/archive/" in (REPO / ".gitignore").read_text().splitlines()


def test_make_run_offline_keeps_retrying_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    argv = _make_run_argv()
    dead = _free_port()  # nothing listens: as offline as a missing route, without the internet
    err = tmp_path / "err.log"
    with open(err, "wb") as fh:
        proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=fh,
                                env=_env(RECORDER_VENUE__SPOT_WS=f"ws://127.0.0.1:{dead}/v2",
                                         RECORDER_CONNECTION__CONNECT_TIMEOUT_S="1",
                                         RECORDER_OBSERVABILITY__METRICS_PORT=str(_free_port())))
        try:
            time.sleep(7)
            assert proc.poll() is None, err.read_text()[-2000:]
            proc.send_signal(signal.SIGINT)  # what Ctrl-C on `make run` delivers
            code = proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = err.read_text()
    assert code == 0, text[-2000:]
    retries = re.findall(r"cannot reach Kraken at (\S+) .*retrying in (\d+)s", text)
    assert len(retries) >= 2, text
    assert retries[0][0] == f"ws://127.0.0.1:{dead}/v2"
    # no keys by default: said at startup, before (and so without) any connection
    notice = text.find("level3 needs API keys (KRAKEN_API_KEY/KRAKEN_API_SECRET")
    assert notice >= 0 and "level3 disabled" in text, text[-2000:]
    assert notice < text.find("cannot reach Kraken"), text[-2000:]
    assert "Traceback" not in text and "ERROR" not in text
    assert (tmp_path / "archive").is_dir()  # the default archive location, relative to cwd


def test_make_run_without_keys_records_public_channels_and_says_why_not_level3(
        tmp_path: Path) -> None:
    argv = _make_run_argv()
    sim = subprocess.Popen([sys.executable, "-m", "recorder", "sim", "--port", "0", "--pairs",
                            "4"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert sim.stdout is not None
        urls = json.loads(sim.stdout.readline())
        port = _free_port()
        err = tmp_path / "err.log"
        with open(err, "wb") as fh:
            proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=fh,
                                    env=_env(RECORDER_VENUE__SPOT_WS=urls["spot_ws"],
                                             RECORDER_VENUE__L3_WS=urls["l3_ws"],
                                             RECORDER_VENUE__SPOT_REST=urls["rest"],
                                             RECORDER_OBSERVABILITY__METRICS_PORT=str(port)))
            try:
                deadline = time.monotonic() + 40
                channels: set[str] = set()
                while time.monotonic() < deadline and not {"book", "trade"} <= channels:
                    time.sleep(1)
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status",
                                                    timeout=2) as r:
                            st = json.loads(r.read())
                    except (OSError, ValueError):
                        continue
                    channels = {c["channel"] for w in st.get("workers", {}).values()
                                for c in w["connections"]}
                assert {"book", "trade"} <= channels and "level3" not in channels, channels
                proc.send_signal(signal.SIGINT)
                assert proc.wait(30) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
    finally:
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
    text = err.read_text()
    assert "level3 needs API keys (KRAKEN_API_KEY/KRAKEN_API_SECRET" in text
    assert "level3 disabled" in text and "Traceback" not in text
