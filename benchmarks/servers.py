"""Server processes of the benchmarks: ``recorder sim`` / ``recorder replay`` started as
subprocesses (each prints one JSON line of endpoint URLs when it listens), their CPU time,
and stopping them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["cpu_seconds", "start_server", "stop_processes"]


def start_server(cmd: list[str], *, keep_stderr: bool = False
                 ) -> tuple[subprocess.Popen[str], dict[str, Any] | None]:
    """Start a server command and read its line of URLs: the process, and the URLs (None
    when it exited before listening; with ``keep_stderr`` its stderr can then be read from
    the process, otherwise it is discarded)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE if keep_stderr else subprocess.DEVNULL,
                            text=True)
    line = proc.stdout.readline() if proc.stdout is not None else ""
    return proc, (json.loads(line) if line else None)


def stop_processes(*procs: subprocess.Popen[str] | None) -> None:
    """Terminate each process still running (``None`` entries skipped); kill it if it has not
    exited 10 s later."""
    for proc in procs:
        if proc is None or proc.poll() is not None:
            continue
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of a process (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0
