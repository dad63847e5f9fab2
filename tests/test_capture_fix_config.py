"""``[fix]`` in the capture TOML: defaults, a good section, and a clear error for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.capture.config import ConfigError, FixConfig, load_config


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "recorder.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_fix_is_off_by_default() -> None:
    cfg = load_config(None, env={})
    assert cfg.fix == FixConfig()
    assert not cfg.fix.enabled
    assert cfg.fix.target_comp_id == "KRAKEN-MD" and cfg.fix.tls_verify


def test_a_good_fix_section(tmp_path: Path) -> None:
    ca = tmp_path / "sim-cert.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    cfg = load_config(write(tmp_path, f"""
[fix]
host = "127.0.0.1"
l2_port = 14000
l3_port = 14005
sender_comp_id = "RECORDER1"
symbols = ["BTC/USD", "ETH/USD"]
channels = ["L2", "L3"]
depth = 25
ca_file = "{ca}"
heartbeat_s = 30
backoff_base_s = 0.5
backoff_max_s = 5
"""), env={})
    fix = cfg.fix
    assert fix.enabled
    assert (fix.host, fix.l2_port, fix.l3_port) == ("127.0.0.1", 14000, 14005)
    assert fix.symbols == ("BTC/USD", "ETH/USD") and fix.channels == ("L2", "L3")
    assert fix.depth == 25 and fix.heartbeat_s == 30 and fix.ca_file == str(ca)
    assert fix.target_comp_id == "KRAKEN-MD" and fix.tls_verify
    assert "fix=L2+L3:2" in cfg.describe()


def test_environment_sets_fix(tmp_path: Path) -> None:
    cfg = load_config(None, env={"RECORDER_FIX__SENDER_COMP_ID": "ME",
                                 "RECORDER_FIX__SYMBOLS": "BTC/USD,ETH/USD",
                                 "RECORDER_FIX__DEPTH": "100"})
    assert cfg.fix.enabled and cfg.fix.symbols == ("BTC/USD", "ETH/USD") and cfg.fix.depth == 100


BASE = 'sender_comp_id = "ME"\nsymbols = ["BTC/USD"]\n'


@pytest.mark.parametrize(("body", "message"), [
    ('symbols = ["BTC/USD"]\n', "fix.sender_comp_id is required"),
    ('sender_comp_id = "ME ME"\nsymbols = ["BTC/USD"]\n', "fix.sender_comp_id"),
    ('sender_comp_id = "A=B"\nsymbols = ["BTC/USD"]\n', "fix.sender_comp_id"),
    (BASE + 'target_comp_id = ""\n', "fix.target_comp_id"),
    (BASE + 'channels = ["L4"]\n', "fix.channels must list L2 and/or L3"),
    (BASE + 'channels = []\n', "fix.channels must list L2 and/or L3"),
    (BASE + 'channels = ["L2", "L2"]\n', "twice"),
    (BASE + 'depth = 20\n', "fix.depth must be one of"),
    ('sender_comp_id = "ME"\nsymbols = ["BTC/USD", "../etc"]\n', "fix.symbols"),
    ('sender_comp_id = "ME"\nsymbols = ["BTC/USD", "BTC/USD"]\n', "twice"),
    (BASE + 'l2_port = 70000\n', "fix.l2_port must be in 1..65535"),
    (BASE + 'l3_port = 0\n', "fix.l3_port must be in 1..65535"),
    (BASE + 'heartbeat_s = 0\n', "fix.heartbeat_s must be in 1..3600"),
    (BASE + 'backoff_base_s = 10\nbackoff_max_s = 1\n', "fix.backoff_max_s"),
    (BASE + 'ca_file = "/nonexistent/ca.pem"\n', "fix.ca_file: no such file"),
    (BASE + 'ca_file = "/etc/hostname"\ntls_verify = false\n', "tls_verify is false"),
    (BASE + 'host = "a b"\n', "fix.host"),
    (BASE + 'depth = "deep"\n', "fix.depth: expected a number"),
    (BASE + 'tls_verify = "maybe"\n', "fix.tls_verify: expected true/false"),
    (BASE + 'password = "x"\n', "credentials are never read from the TOML file"),
    (BASE + 'colour = "red"\n', "unknown setting fix.colour"),
])
def test_bad_fix_settings_are_clear_errors(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_config(write(tmp_path, "[fix]\n" + body), env={})


def test_fix_settings_unchecked_while_off(tmp_path: Path) -> None:
    """Without symbols the source is off: its other settings are not in force yet."""
    cfg = load_config(write(tmp_path, "[fix]\ndepth = 25\n"), env={})
    assert not cfg.fix.enabled
