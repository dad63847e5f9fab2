"""Structured logging for capture: plain text or one JSON object per line, secrets redacted.

:class:`RedactingFilter` replaces any registered secret (API secret, level3 tokens) found in
a record's message or arguments with ``***`` before any handler formats it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from recorder.capture.config import ObservabilityConfig

__all__ = ["setup_logging", "RedactingFilter", "JsonFormatter"]


class RedactingFilter(logging.Filter):
    """Replaces each string in ``secrets`` with ``***`` in the rendered message."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.secrets = [s for s in (secrets or []) if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            msg = record.getMessage()
            for s in self.secrets:
                msg = msg.replace(s, "***")
            record.msg, record.args = msg, None
            if record.exc_info and record.exc_info[1] is not None:
                text = logging.Formatter().formatException(record.exc_info)
                for s in self.secrets:
                    text = text.replace(s, "***")
                record.exc_text, record.exc_info = text, None
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, worker: int | None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage(),
        }
        if self.worker is not None:
            out["worker"] = self.worker
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


def setup_logging(cfg: ObservabilityConfig, *, worker: int | None = None,
                  secrets: list[str] | None = None) -> None:
    """Configure the root logger of this process (stderr)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    if cfg.log_json:
        handler.setFormatter(JsonFormatter(worker))
    else:
        tag = f"w{worker}" if worker is not None else "main"
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [{tag}] %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root.addHandler(handler)
    root.setLevel(cfg.log_level.upper())
    for noisy in ("websockets", "aiohttp.access", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
