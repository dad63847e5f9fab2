"""The deployment files in ``ops/`` parse, agree with each other, and use only real metrics.

* every metric an alert rule or a dashboard panel queries exists in the capture service's
  metrics registry (:class:`recorder.capture.metrics.BoardCollector`), with the suffixes
  Prometheus adds per metric type; renaming a metric there fails this test;
* alert rules are structurally valid (and, when ``promtool`` is installed, pass
  ``promtool check rules`` and the unit tests in ``alerts.test.yml``); each has a runbook section;
* the example configs load with the capture config loader and match the systemd unit and the
  scrape config (archive path, drain time, metrics port);
* the systemd units parse, carry the hardening settings, and pass ``systemd-analyze verify``
  and an offline ``systemd-analyze security`` threshold when systemd is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from recorder.capture.config import load_config

yaml = pytest.importorskip("yaml", reason="pyyaml is in the test extra")

ROOT = Path(__file__).resolve().parents[1]
OPS = ROOT / "ops"
ALERTS = OPS / "prometheus" / "alerts.yml"
PROMETHEUS = OPS / "prometheus" / "prometheus.yml"
DASHBOARD = OPS / "grafana" / "kraken-recorder.json"
UNIT = OPS / "systemd" / "kraken-recorder.service"
SYNC_UNIT = OPS / "systemd" / "kraken-recorder-sync.service"
SYNC_TIMER = OPS / "systemd" / "kraken-recorder-sync.timer"
CONFIGS = sorted((OPS / "config").glob("*.toml"))

#: Metrics that do not come from the recorder, with where they come from.
EXTERNAL_METRICS = {
    "up": "Prometheus, per scrape target",
    "node_filesystem_avail_bytes": "node_exporter (archive volume free space)",
    "node_filesystem_size_bytes": "node_exporter (archive volume size)",
}

#: Series names Prometheus exposes for a family of each type.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "unknown": ("",),
}


# --------------------------------------------------------------------------- the registry


class _AnyStatus(dict):
    """A worker status in which every key the collector may read exists (0 by default)."""

    def __missing__(self, key: str) -> Any:
        return 0


def registry_series() -> set[str]:
    """Every series name the capture metrics registry exposes, from a fully reporting board."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from recorder.capture.metrics import BoardCollector, StatusBoard

    board = StatusBoard(2)
    now = time.time()
    for w in range(2):
        board.update(_AnyStatus(worker=w, pid=1, time=now, connections=[], quarantined=[]))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BoardCollector(board))
    text = generate_latest(registry).decode()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        for suffix in _SUFFIXES[family.type]:
            names.add(family.name + suffix)
        names.update(sample.name for sample in family.samples)
    return names


def test_registry_collection_sees_every_family() -> None:
    names = registry_series()
    # a few anchors, so a broken collection (e.g. no family at all) cannot pass silently
    assert {"recorder_messages_total", "recorder_shard_healthy",
            "recorder_lag_receive_to_disk_seconds"} <= names
    assert "recorder_messages" not in names  # a counter's bare family name is no series


# --------------------------------------------------------------------------- PromQL names

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
             "or", "unless", "offset", "inf", "nan", "atan2"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (Grafana ``$vars`` allowed).

    Removes string literals, label matchers ``{...}``, range/subquery brackets ``[...]``
    and grouping label lists (``by (...)``, ``on (...)``...); what remains of the identifiers
    that are not functions (followed by ``(``), keywords or numbers are metric names.
    """
    s = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    s = re.sub(r"'(?:\\.|[^'\\])*'", "''", s)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\$\{?\w+\}?", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", s):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _KEYWORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


@pytest.mark.parametrize("expr,names", [
    ('sum by (instance, shard) (rate(recorder_messages_total{job="kraken-recorder"}[5m])) == 0',
     {"recorder_messages_total"}),
    ('a_total / on (instance) group_left (x) clamp_min(b{c="d(e)"}, 1) > 0.001 or up',
     {"a_total", "b", "up"}),
    ('predict_linear(node_filesystem_avail_bytes{mountpoint="/srv"}[6h], 24 * 3600) < 0',
     {"node_filesystem_avail_bytes"}),
    ('increase(x_total{instance=~"$instance"}[$__rate_interval]) * 60 unless y offset 5m',
     {"x_total", "y"}),
    ('count(recorder_shard_healthy{shard=~"$shard"} == 0) or vector(0)',
     {"recorder_shard_healthy"}),
])
def test_promql_metric_names(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def _check_metrics(where: dict[str, set[str]]) -> None:
    known = registry_series()
    bad = {w: sorted(n for n in names if n not in known and n not in EXTERNAL_METRICS)
           for w, names in where.items()}
    bad = {w: n for w, n in bad.items() if n}
    assert not bad, f"metrics not in recorder/capture/metrics.py: {bad}"


# --------------------------------------------------------------------------- alerts


def _alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_alert_rules_structure() -> None:
    doc = yaml.safe_load(ALERTS.read_text())
    assert set(doc) == {"groups"}
    groups = [g["name"] for g in doc["groups"]]
    assert len(groups) == len(set(groups))
    seen = set()
    for group in doc["groups"]:
        assert set(group) <= {"name", "rules", "interval", "limit"}
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations",
                                 "keep_firing_for"}, rule
            name = rule["alert"]
            assert re.fullmatch(r"KrakenRecorder[A-Z][A-Za-z0-9]+", name), name
            assert name not in seen, f"duplicate alert {name}"
            seen.add(name)
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert rule["expr"].count("(") == rule["expr"].count(")"), name
            assert rule["expr"].count("{") == rule["expr"].count("}"), name
            if "for" in rule:
                assert re.fullmatch(r"(\d+[smhdwy])+", rule["for"]), name
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
            ann = rule["annotations"]
            assert {"summary", "description", "runbook_url"} <= set(ann), name
            assert ann["runbook_url"] == f"ops/RUNBOOK.md#{name.lower()}", name


def test_alerts_cover_what_operations_need() -> None:
    rules = {r["alert"]: r["expr"] for r in _alert_rules()}
    used = {n: promql_metric_names(e) for n, e in rules.items()}

    def alerting_on(metric: str) -> list[str]:
        return [n for n, names in used.items() if metric in names]

    for metric in ("recorder_dead_subscriptions", "recorder_lag_exchange_to_receive_seconds",
                   "recorder_lag_receive_to_disk_seconds", "node_filesystem_avail_bytes",
                   "recorder_checksum_failures_total", "recorder_quarantined_pairs",
                   "recorder_worker_restarts_total", "recorder_messages_total", "up"):
        assert alerting_on(metric), f"no alert uses {metric}"


def test_alert_metrics_exist_in_registry() -> None:
    _check_metrics({r["alert"]: promql_metric_names(r["expr"]) for r in _alert_rules()})


def test_every_alert_has_a_runbook_section() -> None:
    runbook = (OPS / "RUNBOOK.md").read_text()
    headings = {m.group(1).strip() for m in re.finditer(r"^#{2,4}\s+(.+)$", runbook, re.MULTILINE)}
    missing = [r["alert"] for r in _alert_rules() if r["alert"] not in headings]
    assert not missing, f"alerts without a `### <AlertName>` section in ops/RUNBOOK.md: {missing}"


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool not installed (Debian package `prometheus`); the YAML structure "
                    "and metric names are still checked by the other tests")
    return tool


def test_promtool_check_rules_and_unit_tests() -> None:
    tool = _promtool()
    for args in (["check", "rules", str(ALERTS)],
                 ["test", "rules", str(OPS / "prometheus" / "alerts.test.yml")]):
        r = subprocess.run([tool, *args], check=False, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_check_config() -> None:
    tool = _promtool()
    r = subprocess.run([tool, "check", "config", str(PROMETHEUS)], check=False, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_alert_unit_tests_cover_real_alerts() -> None:
    doc = yaml.safe_load((OPS / "prometheus" / "alerts.test.yml").read_text())
    names = {r["alert"] for r in _alert_rules()}
    tested = {c["alertname"] for t in doc["tests"] for c in t["alert_rule_test"]}
    assert tested <= names and len(tested) >= 8
    for t in doc["tests"]:
        used = {promql_metric_names(s["series"]).pop() for s in t["input_series"]}
        _check_metrics({"alerts.test.yml": used})


# --------------------------------------------------------------------------- scrape config


def test_prometheus_scrapes_the_recorder_endpoint() -> None:
    from recorder.capture.metrics import StatusBoard, make_app

    doc = yaml.safe_load(PROMETHEUS.read_text())
    assert doc["rule_files"] == ["alerts.yml"]
    assert all((PROMETHEUS.parent / f).is_file() for f in doc["rule_files"])
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert set(jobs) == {"kraken-recorder", "node"}
    rec = jobs["kraken-recorder"]
    routes = {r.resource.canonical for r in make_app(StatusBoard(1)).router.routes()
              if r.method == "GET"}
    assert rec.get("metrics_path", "/metrics") in routes
    targets = [t for sc in rec["static_configs"] for t in sc["targets"]]
    full = load_config(OPS / "config" / "full-venue.toml", env={})
    assert targets == [f"{full.observability.metrics_host}:{full.observability.metrics_port}"]
    assert full.observability.metrics_host == "127.0.0.1"  # the endpoint stays on loopback
    # alerts select on these job names
    for rule in _alert_rules():
        for job in re.findall(r'job="([^"]+)"', rule["expr"]):
            assert job in jobs, (rule["alert"], job)


# --------------------------------------------------------------------------- dashboard


def _dashboard_targets(dash: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            out.append((panel["title"], t["expr"]))
    return out


def test_dashboard_parses_and_is_consistent() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "instance", "shard"} <= variables
    cells: set[tuple[int, int]] = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not (mine & cells), f"panel {p['title']!r} overlaps another"
        cells |= mine
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
            assert p["targets"], p["title"]
    for title, expr in _dashboard_targets(dash):
        for var in re.findall(r"\$\{?(\w+)", expr):
            assert var in variables or var.startswith("__"), (title, var)


def test_dashboard_metrics_exist_in_registry() -> None:
    dash = json.loads(DASHBOARD.read_text())
    where: dict[str, set[str]] = defaultdict(set)
    for title, expr in _dashboard_targets(dash):
        where[title] |= promql_metric_names(expr)
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            where[f"variable {v['name']}"] |= promql_metric_names(
                re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", v["definition"]))
    _check_metrics(where)
    used = set().union(*where.values())
    # msgs/s, bytes/s, lag, queues, checksum failures, resyncs, quarantines, budget, health
    assert {"recorder_messages_total", "recorder_received_bytes_total",
            "recorder_lag_exchange_to_receive_seconds", "recorder_lag_receive_to_disk_seconds",
            "recorder_queue_depth", "recorder_checksum_failures_total", "recorder_resyncs_total",
            "recorder_quarantined_pairs", "recorder_subscription_budget_use",
            "recorder_shard_healthy"} <= used


# --------------------------------------------------------------------------- capture configs


def test_example_configs_load_with_the_capture_loader() -> None:
    assert {p.name for p in CONFIGS} >= {"full-venue.toml", "research-small.toml"}
    for path in CONFIGS:
        cfg = load_config(path, env={})
        assert cfg.credentials is None  # no secrets in example files
        assert cfg.observability.metrics_host == "127.0.0.1", path.name
        assert cfg.schedule.disk_resume_free_bytes > cfg.schedule.disk_min_free_bytes
    # with the overrides recorder.env.example documents
    env = _env_example(OPS / "systemd" / "recorder.env.example", uncomment=True)
    env = {k: v for k, v in env.items() if k.startswith("RECORDER_") and k != "RECORDER_SECRETS_FILE"}
    assert env
    cfg = load_config(OPS / "config" / "full-venue.toml", env=env)
    assert cfg.connection.shard == "1/3"


def test_example_configs_use_documented_settings() -> None:
    import tomllib

    example = tomllib.loads((OPS / "recorder.example.toml").read_text())
    for path in CONFIGS:
        data = tomllib.loads(path.read_text())
        for key, value in data.items():
            if isinstance(value, dict):
                assert key in example, (path.name, key)
                for name in value:
                    assert name in example[key], (path.name, f"{key}.{name}")
            else:
                assert key in example, (path.name, key)


# --------------------------------------------------------------------------- systemd


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit as {section: [(key, value), ...]} (keys may repeat, as systemd allows);
    comments, blank lines and backslash continuations handled."""
    sections: dict[str, list[tuple[str, str]]] = defaultdict(list)
    current = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            continue
        assert current is not None, f"{path.name}: setting outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a key=value line: {line}"
        sections[current].append((key.strip(), value.strip()))
    return dict(sections)


def _values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def _one(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    vals = _values(unit, section, key)
    assert len(vals) == 1, f"[{section}] {key}: {vals}"
    return vals[0]


def _seconds(text: str) -> float:
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(min|ms|s|h)?", text):
        total += float(num) * {"ms": 0.001, "s": 1, "min": 60, "h": 3600, "": 1}[unit]
    return total


HARDENING = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
    "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes", "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
    "SystemCallArchitectures": "native",
}


def test_capture_unit_is_hardened_and_matches_the_service() -> None:
    unit = parse_unit(UNIT)
    assert set(unit) == {"Unit", "Service", "Install"}
    svc = "Service"
    for key, want in HARDENING.items():
        assert _one(unit, svc, key) == want, key
    assert "@system-service" in _values(unit, svc, "SystemCallFilter")
    families = set(_one(unit, svc, "RestrictAddressFamilies").split())
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= families and "AF_PACKET" not in families
    # a dedicated, unprivileged user
    assert _one(unit, svc, "User") not in ("root", "0", "")
    assert _one(unit, svc, "Group")
    # restart policy with limits; config errors (exit 2) are not retried
    assert _one(unit, svc, "Restart") == "on-failure"
    assert _one(unit, svc, "RestartPreventExitStatus") == "2"
    assert int(_one(unit, "Unit", "StartLimitBurst")) >= 1
    assert _seconds(_one(unit, "Unit", "StartLimitIntervalSec")) >= 60
    assert _seconds(_one(unit, svc, "RestartSec")) >= 1
    # resource limits
    assert _one(unit, svc, "MemoryMax").endswith("G")
    assert int(_one(unit, svc, "LimitNOFILE")) >= 4096
    # secrets only via the environment file
    assert _one(unit, svc, "EnvironmentFile").startswith("/etc/")
    assert not [v for v in _values(unit, svc, "Environment") if "KRAKEN_API" in v]
    # what it runs, with the config the unit and this repository agree on
    exec_start = _one(unit, svc, "ExecStart").split()
    assert exec_start[0].endswith("/recorder") and exec_start[1] == "run"
    assert exec_start[exec_start.index("--config") + 1] == "/etc/kraken-recorder/recorder.toml"
    cfg = load_config(OPS / "config" / "full-venue.toml", env={})
    rw = _one(unit, svc, "ReadWritePaths").split()
    assert any(Path(cfg.archive_root).is_relative_to(p) for p in rw), (cfg.archive_root, rw)
    assert _one(unit, "Unit", "RequiresMountsFor") in rw
    # stop: the supervisor alone gets SIGTERM and drains its workers within TimeoutStopSec
    assert _one(unit, svc, "KillMode") == "mixed"
    assert _seconds(_one(unit, svc, "TimeoutStopSec")) >= cfg.drain_timeout_s + 10


def test_capture_unit_type_matches_sd_notify_support() -> None:
    """Type=notify/WatchdogSec only if the service sends sd_notify (it does not, today)."""
    unit = parse_unit(UNIT)
    notifies = any(re.search(r"sd_notify|NOTIFY_SOCKET|WATCHDOG_USEC", p.read_text())
                   for p in (ROOT / "recorder").rglob("*.py"))
    if notifies:
        assert _one(unit, "Service", "Type") == "notify"
    else:
        assert _one(unit, "Service", "Type") == "exec"
        assert not _values(unit, "Service", "WatchdogSec")


def test_sync_units() -> None:
    svc = parse_unit(SYNC_UNIT)
    timer = parse_unit(SYNC_TIMER)
    assert _one(svc, "Service", "Type") == "oneshot"
    for key, want in HARDENING.items():
        assert _one(svc, "Service", key) == want, key
    assert not _values(svc, "Service", "ReadWritePaths")  # the sync only reads the archive
    cmd = _one(svc, "Service", "ExecStart").split()
    assert cmd[1] == "sync" and "--to" in cmd and "--archive" in cmd
    cfg = load_config(OPS / "config" / "full-venue.toml", env={})
    assert cmd[cmd.index("--archive") + 1] == str(cfg.archive_root)
    # the sync command accepts every flag the unit passes
    from recorder.sync import sync_command

    flags = {o for p in sync_command.params for o in p.opts + p.secondary_opts}
    assert {c for c in cmd if c.startswith("--")} <= flags
    assert _values(timer, "Timer", "OnCalendar") and _one(timer, "Install", "WantedBy")
    env = _env_example(OPS / "systemd" / "sync.env.example")
    assert "RECORDER_SYNC_TO" in env and "${RECORDER_SYNC_TO}" in cmd


def _env_example(path: Path, uncomment: bool = False) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if uncomment and re.match(r"#[A-Z_]+=", line):
            line = line[1:]
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), line
        out[key] = value
    return out


def test_env_templates_hold_no_secrets() -> None:
    env = _env_example(OPS / "systemd" / "recorder.env.example")
    assert set(env) == {"KRAKEN_API_KEY", "KRAKEN_API_SECRET"}
    assert all(v == "" for v in env.values())
    text = (OPS / "systemd" / "recorder.env.example").read_text()
    assert "0600" in text  # the permission note
    sync = _env_example(OPS / "systemd" / "sync.env.example")
    assert sync["AWS_ACCESS_KEY_ID"] == "" and sync["AWS_SECRET_ACCESS_KEY"] == ""


def _systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed; the units are still parsed and checked above")
    return tool


def _units_for_analysis(tmp_path: Path) -> list[Path]:
    """Copies of the units whose ExecStart binary exists here (verify checks it)."""
    out = []
    for src in (UNIT, SYNC_UNIT, SYNC_TIMER):
        dst = tmp_path / src.name
        dst.write_text(src.read_text().replace("/opt/kraken-recorder/venv/bin/recorder",
                                               shutil.which("true") or "/bin/true"))
        out.append(dst)
    return out


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = _systemd_analyze()
    units = _units_for_analysis(tmp_path)
    r = subprocess.run([tool, "verify", "--man=no", *map(str, units)], check=False, capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    complaints = [line for line in (r.stdout + r.stderr).splitlines()
                  if any(u.name in line for u in units)]
    assert r.returncode == 0 and not complaints, r.stdout + r.stderr


def test_systemd_analyze_security_exposure(tmp_path: Path) -> None:
    tool = _systemd_analyze()
    for unit in _units_for_analysis(tmp_path)[:2]:
        r = subprocess.run([tool, "security", "--offline=true", "--threshold=20", "--no-pager",
                            str(unit)], check=False, capture_output=True, text=True, timeout=120,
                           cwd=tmp_path)
        if "Unknown option" in r.stderr or "unrecognized option" in r.stderr:
            pytest.skip("this systemd-analyze has no offline security analysis (systemd < 250)")
        assert r.returncode == 0, f"{unit.name}: exposure above 2.0\n{r.stdout[-600:]}"
