"""``recorder run`` configurations aimed at a running ``recorder sim``.

``recorder demo`` and ``recorder soak`` (and anyone rehearsing a deployment) run the real
capture service against the local exchange. They share one profile: the sim's endpoints,
every channel, short silence/backoff timings so that healing shows within a short run, and
no maintenance jobs. Each caller overrides what is specific to it (depths, disk-guard
thresholds, ...). Values are rendered as TOML by :func:`render_toml`, which quotes every
string (paths and URLs may hold any character), so the file always loads with
:func:`recorder.capture.config.load_config`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["sim_settings", "render_toml"]

Settings = dict[str, Any]  # top-level keys and one level of [sections]


def sim_settings(urls: Mapping[str, str], *, archive: Path, host: str, metrics_port: int,
                 workers: int, futures: Sequence[str],
                 overrides: Mapping[str, Mapping[str, Any] | Any] | None = None) -> Settings:
    """The sim-backed capture profile; ``overrides`` replace top-level keys or section keys.

    ``urls`` is the sim's start-up JSON (``spot_ws``, ``l3_ws``, ``futures_ws``, ``rest``).
    """
    settings: Settings = {
        "archive_root": str(archive),
        "host": host,
        "drain_timeout_s": 20.0,
        "venue": {
            "spot_ws": urls["spot_ws"], "l3_ws": urls["l3_ws"], "futures_ws": urls["futures_ws"],
            "spot_rest": urls["rest"], "futures_rest": urls["rest"],
        },
        "channels": {"level3": True, "book": True, "trade": True, "ohlc": True,
                     "futures_products": list(futures)},
        "connection": {"workers": workers, "silence_s": 3.0, "ping_interval_s": 5.0,
                       "backoff_base_s": 0.3, "backoff_max_s": 2.0},
        "rest": {"public_per_s": 20.0, "public_burst": 20, "rate_limited_cooldown_s": 0.5},
        "schedule": {"roll_minutes": 0.25, "compaction_cron": "", "retention_cron": ""},
        "observability": {"metrics_port": metrics_port, "dead_after_s": 8.0},
    }
    for key, value in (overrides or {}).items():
        if isinstance(value, Mapping):
            settings.setdefault(key, {}).update(value)
        else:
            settings[key] = value
    return settings


def render_toml(settings: Settings, *, header: str = "") -> str:
    """TOML text of ``settings`` (top-level scalars first, then one table per section)."""
    lines = [f"# {line}" for line in header.splitlines()]
    tables = {k: v for k, v in settings.items() if isinstance(v, Mapping)}
    lines += [f"{k} = {_value(v)}" for k, v in settings.items() if k not in tables]
    for name, table in tables.items():
        lines += ["", f"[{name}]", *(f"{k} = {_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as TOML")
