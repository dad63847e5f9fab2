"""Every command block of the README runs as written (issue #14 §5).

The ```sh blocks of README.md are read and each command in them is run, unchanged, in a
directory where ``make demo`` has left its archive (``demo-archive/``, recorded here by the
same ``recorder demo`` command the Makefile runs, only shorter), with the virtual
environment's ``bin/`` first on PATH as after ``. .venv/bin/activate``. How a command is run
depends only on what it is:

- ``make TARGET``: the target exists and its recipe is what the README says it does (``make -n``);
  running ``make test`` inside the test suite would recurse, ``make run`` would dial Kraken;
- ``recorder sim ...``, ``recorder replay ...`` (servers that run until stopped): each starts
  and prints its JSON line of URLs, then is stopped (``sim --record`` runs finish by themselves);
- ``recorder run`` (dials Kraken): it runs as written with the venue's URLs pointed at a
  ``recorder sim`` (environment overrides, the way any client is pointed at the sim), must be
  recording within a minute (``/status`` lists its connections), and stops cleanly on Ctrl-C;
- everything else runs to completion and must exit 0 without a traceback.

The ```python blocks are run too, as written, in the same directory.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
VENV_BIN = Path(sys.executable).parent


def _blocks(language: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def _commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(line.split(" #")[0].strip() if " #" in line else line.strip())
    return out


def readme_commands() -> list[str]:
    return [cmd for block in _blocks("sh") for cmd in _commands(block)]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RECORDER_", "KRAKEN_API_", "KRAKEN_ARCHIVE"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV_BIN.parent)
    return env


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory holding what ``make demo`` leaves: ``demo-archive/``."""
    if shutil.which("recorder", path=str(VENV_BIN)) is None:
        pytest.skip("the recorder command is not installed in this environment")
    work = tmp_path_factory.mktemp("readme")
    recipe = subprocess.run(["make", "-n", "demo"], cwd=REPO, capture_output=True, text=True,
                            timeout=60, check=True).stdout
    line = next(ln for ln in recipe.splitlines() if re.search(r"\brecorder demo\b", ln))
    argv = shlex.split(line)
    argv = [Path(argv[0]).name, *argv[1:], "--seconds", "20"]
    proc = subprocess.run(argv, cwd=work, env=_env(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (work / "demo-archive").is_dir()
    (work / "ops").symlink_to(REPO / "ops")  # README commands name ops/... as in the checkout
    return work


def test_readme_has_commands() -> None:
    commands = readme_commands()
    assert "make run" in commands and "make test" in commands and "make demo" in commands
    assert any(c.startswith("recorder query") for c in commands)
    assert any(c.startswith("recorder book") for c in commands)


def _check_make(command: str) -> None:
    target = shlex.split(command)[1]
    proc = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, f"{command}: {proc.stderr}"


def _run_server(command: str, cwd: Path) -> None:
    """A command that serves until stopped: it must print its JSON line of URLs."""
    argv = shlex.split(command)
    proc = subprocess.Popen(argv, cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("{") and "ws://" in first, (command, first, proc.poll())
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_recorder(command: str, cwd: Path) -> None:
    """``recorder run ...`` as written, against a local sim instead of Kraken."""
    sim = subprocess.Popen([sys.executable, "-m", "recorder", "sim", "--port", "0", "--pairs",
                            "6"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert sim.stdout is not None
        urls = json.loads(sim.stdout.readline())
        port = _free_port()
        env = _env()
        env.update(RECORDER_VENUE__SPOT_WS=urls["spot_ws"], RECORDER_VENUE__L3_WS=urls["l3_ws"],
                   RECORDER_VENUE__SPOT_REST=urls["rest"],
                   RECORDER_VENUE__FUTURES_WS=urls["futures_ws"],
                   RECORDER_VENUE__FUTURES_REST=urls["rest"],
                   RECORDER_OBSERVABILITY__METRICS_PORT=str(port))
        err = cwd / "run.log"
        with open(err, "wb") as fh:
            proc = subprocess.Popen(shlex.split(command), cwd=cwd, env=env,
                                    stdout=subprocess.DEVNULL, stderr=fh)
            try:
                deadline = time.monotonic() + 90
                recording = False
                while time.monotonic() < deadline and not recording and proc.poll() is None:
                    time.sleep(1)
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status",
                                                    timeout=2) as r:
                            status = json.loads(r.read())
                    except (OSError, ValueError):
                        continue
                    recording = any(w.get("connections") for w in
                                    status.get("workers", {}).values())
                assert recording, err.read_text()[-3000:]
                proc.send_signal(signal.SIGINT)
                assert proc.wait(60) == 0, err.read_text()[-3000:]
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        assert "Traceback" not in err.read_text()
    finally:
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(15)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs_as_written(command: str, demo_dir: Path) -> None:
    words = shlex.split(command)
    if words[0] == "make":
        _check_make(command)
        return
    if words[:2] in (["recorder", "sim"], ["recorder", "replay"]) and "--record" not in words:
        _run_server(command, demo_dir)
        return
    if words[:2] == ["recorder", "run"]:
        _run_recorder(command, demo_dir)
        return
    proc = subprocess.run(words if words[0] != "python" else command, shell=words[0] == "python",
                          cwd=demo_dir, env=_env(), capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{command}\n{output[-4000:]}"
    assert "Traceback" not in output, f"{command}\n{output[-4000:]}"


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_readme_python_block_runs(index: int, demo_dir: Path) -> None:
    code = _blocks("python")[index]
    proc = subprocess.run([sys.executable, "-c", code], cwd=demo_dir, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
