"""The shared sim-backed capture profile renders TOML that the real config loader accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.capture.config import load_config
from recorder.capture.sim_config import render_toml, sim_settings

URLS = {"spot_ws": "ws://127.0.0.1:1/v2", "l3_ws": "ws://127.0.0.1:1/l3/v2",
        "futures_ws": "ws://127.0.0.1:1/ws/v1", "rest": "http://127.0.0.1:1"}


def test_profile_round_trips_through_load_config(tmp_path: Path) -> None:
    archive = tmp_path / 'odd "dir" \\ with ünïcode'
    settings = sim_settings(URLS, archive=archive, host="h", metrics_port=9999, workers=2,
                            futures=("PF_XBTUSD",),
                            overrides={"drain_timeout_s": 30.0, "channels": {"book_depth": 10}})
    path = tmp_path / "recorder.toml"
    path.write_text(render_toml(settings, header="generated\nfor a test"), encoding="utf-8")
    cfg = load_config(path, env={})
    assert Path(cfg.archive_root) == archive and cfg.drain_timeout_s == 30.0
    assert cfg.venue.spot_ws == URLS["spot_ws"] and cfg.channels.book_depth == 10
    assert cfg.channels.level3 is True and list(cfg.channels.futures_products) == ["PF_XBTUSD"]
    assert cfg.connection.workers == 2 and cfg.observability.metrics_port == 9999


def test_unrenderable_values_are_refused() -> None:
    with pytest.raises(TypeError):
        render_toml({"x": object()})
