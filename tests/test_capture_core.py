"""Pure capture core: config, limits/backoff, shard planning, healing decisions, subscriptions."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from recorder.capture.config import (
    ConfigError,
    HealingConfig,
    Secret,
    load_config,
    parse_shard,
    select_symbols,
)
from recorder.capture.healing import Healer
from recorder.capture.limits import (
    Backoff,
    CallCounter,
    ConnectLimiter,
    Cooldown,
    TokenBucket,
    l3_cost,
)
from recorder.capture.shards import (
    channel_owner,
    channel_owners,
    host_symbols,
    pack_connections,
    plan,
    rendezvous_owner,
    worker_for,
)
from recorder.capture.subscriptions import SubscriptionTable
from recorder.capture.supervisor import level3_notice

EXAMPLE = Path(__file__).resolve().parents[1] / "ops" / "recorder.example.toml"
SYMS = [f"S{i:03d}/USD" for i in range(683)]


# ---------------------------------------------------------------- config

def test_defaults_are_production_kraken() -> None:
    cfg = load_config(None, env={})
    assert cfg.venue.spot_ws == "wss://ws.kraken.com/v2"
    assert cfg.venue.l3_ws == "wss://ws-l3.kraken.com/v2"
    assert cfg.venue.futures_ws == "wss://futures.kraken.com/ws/v1"
    assert cfg.venue.spot_rest == "https://api.kraken.com"
    assert cfg.credentials is None
    assert cfg.observability.metrics_host == "127.0.0.1"


def test_example_config_loads_and_layers(tmp_path: Path) -> None:
    cfg = load_config(EXAMPLE, env={"RECORDER_CONNECTION__SHARD": "2/3"},
                      overrides={"channels": {"book_depth": 100, "include": None}})
    assert cfg.connection.shard == "2/3" and cfg.shard_index == (2, 3)
    assert cfg.channels.book_depth == 100


@pytest.mark.parametrize("text, message", [
    ("[channels]\nbook_depth = 7\n", "book_depth"),
    ("[channels]\nlevel3_depth = 25\n", "level3_depth"),
    ("[connection]\nshard = \"3/2\"\n", "shard"),
    ("[nope]\nx = 1\n", "nope"),
    ("[venue]\nspot_ws = \"http://x\"\n", "spot_ws"),
    ("[venue]\napi_secret = \"abc\"\n", "never read from the TOML"),
    ("[connection]\nsilence_s = \"soon\"\n", "silence_s"),
    ("this is = = not toml", "invalid TOML"),
])
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(p, env={})


def test_credentials_from_env_and_private_file(tmp_path: Path) -> None:
    cfg = load_config(None, env={"KRAKEN_API_KEY": "K", "KRAKEN_API_SECRET": "c2VjcmV0"})
    assert cfg.credentials is not None and cfg.credentials.api_secret.reveal() == "c2VjcmV0"
    assert "c2VjcmV0" not in repr(cfg) and "c2VjcmV0" not in str(cfg.credentials)
    f = tmp_path / "keys.toml"
    f.write_text('api_key = "K2"\napi_secret = "TOPSECRET"\n')
    os.chmod(f, 0o644)
    with pytest.raises(ConfigError, match="chmod 600") as err:
        load_config(None, env={}, secrets_file=f)
    assert "TOPSECRET" not in str(err.value)
    os.chmod(f, 0o600)
    cfg = load_config(None, env={}, secrets_file=f)
    assert cfg.credentials is not None and cfg.credentials.api_key == "K2"
    assert "TOPSECRET" not in repr(cfg)
    with pytest.raises(ConfigError, match="both"):
        load_config(None, env={"KRAKEN_API_KEY": "K"})


def test_secret_never_shows() -> None:
    s = Secret("hunter2")
    assert "hunter2" not in repr(s) + str(s) + f"{s}" + repr([s])


def test_shard_and_patterns() -> None:
    assert parse_shard("1/1") == (1, 1)
    for bad in ("0/2", "x", "2/1", "1/"):
        with pytest.raises(ConfigError):
            parse_shard(bad)
    syms = ["BTC/USD", "ETH/USD", "BTC/EUR", "DOGE/USD"]
    assert select_symbols(syms, ("BTC/*",), ()) == ["BTC/USD", "BTC/EUR"]
    assert select_symbols(syms, (), ("*/EUR", "DOGE/*")) == ["BTC/USD", "ETH/USD"]


# ---------------------------------------------------------------- limits

def test_backoff_grows_with_jitter_and_cap() -> None:
    b = Backoff(1.0, 30.0, random.Random(1))
    delays = [b.next_delay() for _ in range(10)]
    for n, d in enumerate(delays, 1):
        ceiling = min(30.0, 2 ** (n - 1))
        assert ceiling / 2 <= d <= ceiling
    b.reset()
    assert b.next_delay() <= 1.0


def test_connect_limiter_keeps_kraken_window() -> None:
    lim = ConnectLimiter(150, 600.0)
    t = 0.0
    for _ in range(150):
        assert lim.wait(t) == 0
        lim.record(t)
        t += 0.1
    assert lim.wait(t) == pytest.approx(600.0 - t)
    assert lim.wait(600.01) == 0


def test_l3_budget_paces_subscribes() -> None:
    assert [l3_cost(d) for d in (10, 100, 1000)] == [5, 25, 100]
    bucket = TokenBucket(200.0, 200.0, 0.0)
    # 200 symbols at depth 10 = 1000 units: 5 s at the standard tier
    t, spent = 0.0, 0
    while spent < 200:
        w = bucket.wait(5 * 40, t)
        t += w
        assert bucket.take(5 * 40, t)
        spent += 40
    assert t == pytest.approx(4.0)
    bucket.drain(t)
    assert bucket.wait(5, t) == pytest.approx(5 / 200)
    with pytest.raises(ValueError):
        l3_cost(25)


def test_private_counter_and_cooldown() -> None:
    c = CallCounter(15.0, 0.33)
    for _ in range(15):
        assert c.wait(1, 0.0) == 0
        c.add(1, 0.0)
    assert c.wait(1, 0.0) == pytest.approx(1 / 0.33)
    cd = Cooldown(5.0)
    assert cd.hit(0.0) == 5.0 and cd.hit(1.0) == 11.0
    assert cd.hit(2.0, retry_at=100.0) == 100.0
    cd.ok()
    assert cd.strikes == 0


# ---------------------------------------------------------------- shards

def test_rendezvous_is_stable_and_moves_few() -> None:
    before = {s: rendezvous_owner(s, 3) for s in SYMS}
    after = {s: rendezvous_owner(s, 4) for s in SYMS}
    moved = [s for s in SYMS if before[s] != after[s]]
    assert all(after[s] == 3 for s in moved)  # only onto the new host
    assert 0.15 < len(moved) / len(SYMS) < 0.35
    parts = [host_symbols(SYMS, k, 3) for k in (1, 2, 3)]
    assert sorted(sum(parts, [])) == sorted(SYMS)
    assert all(150 < len(p) < 310 for p in parts)
    assert worker_for("BTC/USD", 2) == worker_for("BTC/USD", 2)


def test_runtime_listings_go_to_a_worker_holding_each_channel() -> None:
    plans = plan(SYMS[:10], workers=2, level3_depth=10, book_depth=10, trade=True,
                 ohlc_interval=1, futures_products=["PF_XBTUSD"], futures_feeds=["book"])
    owners = channel_owners(plans)
    assert set(owners) == {"level3", "book", "trade", "ohlc"}  # futures feeds never listed here
    for channel, workers in owners.items():
        held = {wp.index for wp in plans for c in wp.connections if c.channel == channel
                and c.stream != "futures"}
        assert set(workers) == held
        # every new symbol lands on a worker that holds the channel, spread over all of them
        landed = {channel_owner(s, workers) for s in SYMS}
        assert landed == set(workers)
    # stable: the same symbol and owners give the same worker
    assert channel_owner("NEW/USD", (0, 1)) == channel_owner("NEW/USD", (0, 1))


def test_packing_by_rate_not_count() -> None:
    rates = {"HOT/USD": 900.0, **{f"C{i}/USD": 1.0 for i in range(300)}}
    bins = pack_connections(rates, rates, max_rate=1000.0, max_symbols=200)
    hot = next(b for b in bins if "HOT/USD" in b)
    assert len(hot) <= 101
    assert all(len(b) <= 200 for b in bins)
    assert sorted(sum(bins, [])) == sorted(rates)


def test_plan_full_universe() -> None:
    plans = plan(SYMS, workers=2, level3_depth=10, book_depth=1000, trade=True, ohlc_interval=1,
                 futures_products=["PF_XBTUSD", "PF_ETHUSD"], futures_feeds=["book", "trade"])
    conns = [c for p in plans for c in p.connections]
    l3 = [c for c in conns if c.channel == "level3"]
    assert all(len(c.symbols) <= 200 for c in l3)
    assert sorted(s for c in l3 for s in c.symbols) == sorted(SYMS)
    for ch in ("book", "trade", "ohlc"):
        assert sorted(s for c in conns if c.channel == ch and c.stream == "spot" for s in c.symbols) == sorted(SYMS)
    loads = [p.est_rate for p in plans]
    assert max(loads) - min(loads) <= max(c.est_rate for c in conns)
    assert plan(SYMS, workers=2, level3_depth=10, book_depth=1000, trade=True, ohlc_interval=1) == \
        plan(list(reversed(SYMS)), workers=2, level3_depth=10, book_depth=1000, trade=True, ohlc_interval=1)


# ---------------------------------------------------------------- healing

def test_healer_resnapshot_budget_priority_and_quarantine() -> None:
    cfg = HealingConfig(resnapshots_per_minute=60, resnapshot_burst=2, max_failures=3,
                        failure_window_s=100, quarantine_base_s=10, quarantine_max_s=40,
                        priority_symbols=("BTC/USD",), rest_snapshot_on_gap=True)
    h = Healer(cfg, 0.0)
    assert h.desync("spot", "book", "ZZZ/USD", 10, "checksum_mismatch", 0.0).outcome == "queued"
    assert h.desync("spot", "book", "ZZZ/USD", 10, "checksum_mismatch", 0.0).outcome == "duplicate"
    h.desync("l3", "level3", "BTC/USD", 10, "checksum_mismatch", 0.0)
    h.desync("spot", "book", "AAA/USD", 10, "checksum_mismatch", 0.0)
    due = h.due(0.0)
    kinds = [(a.kind, a.symbol) for a in due]
    assert kinds[0] == ("resnapshot", "BTC/USD")  # priority symbol first
    assert sum(k == "resnapshot" for k, _ in kinds) == 2  # burst of 2
    assert sum(k == "rest_snapshot" for k, _ in kinds) == 3
    for a in due:
        h.done(a)
    later = h.due(1.5)
    assert [a.kind for a in later] == ["resnapshot"]
    # repeated failures -> quarantine with doubling backoff, then release
    for t in (2.0, 3.0):
        h.done(later[0])
        h.desync("spot", "book", "ZZZ/USD", 10, "checksum_mismatch", t)
    d = h.desync("spot", "book", "ZZZ/USD", 10, "checksum_mismatch", 4.0)
    assert d.outcome in ("quarantined", "duplicate")
    assert h.is_quarantined(("spot", "book", "ZZZ/USD"), 5.0) or d.outcome == "duplicate"


def test_healer_quarantine_then_release() -> None:
    cfg = HealingConfig(max_failures=2, failure_window_s=100, quarantine_base_s=10,
                        quarantine_max_s=15, rest_snapshot_on_gap=False)
    h = Healer(cfg, 0.0)
    key = ("spot", "book", "X/USD")
    assert h.desync(*key, 10, "m", 0.0).outcome == "queued"
    for a in h.due(0.0):
        h.done(a)
    d = h.desync(*key, 10, "m", 1.0)
    assert d.outcome == "quarantined" and d.until == 11.0
    assert h.desync(*key, 10, "m", 2.0).outcome == "ignored"
    assert [a.kind for a in h.due(11.5)] == ["release"]
    h.desync(*key, 10, "m", 12.0)
    for a in h.due(13.0):
        h.done(a)
    d = h.desync(*key, 10, "m", 13.0)
    assert d.outcome == "quarantined" and d.until == 13.0 + 15.0  # doubled, capped


def test_healer_trade_gaps_and_forget() -> None:
    h = Healer(HealingConfig(), 0.0)
    assert h.trade_gap("BTC/USD", 10, 15, 1)
    assert not h.trade_gap("BTC/USD", 10, 15, 2)
    a = h.due(0.0)
    assert a[0].kind == "backfill_trades" and (a[0].expected, a[0].got) == (10, 15)
    h.trade_gap("ETH/USD", 1, 2, 0)
    h.forget("ETH/USD")
    assert h.pending() == 0


# ---------------------------------------------------------------- subscriptions

def test_subscription_table_health() -> None:
    t = SubscriptionTable("book", ["A", "B", "C"])
    for s in "ABC":
        t.sent(s, 0.0)
    t.acked("A", 1.0)
    t.rejected("B", "Exceeded msg rate", 1.0)
    assert t.timed_out(20.0, 10.0) == ["C"]
    for k in range(100):  # a busy book: 100 messages in its first 2 s
        t.data("A", 1.0 + k / 100)
    assert t.dead(5.0, 10.0, True) == []
    assert t.dead(30.0, 10.0, True) == ["A", "B", "C"]
    # a quiet book (its snapshot, then nothing for a while) is not dead after dead_after_s ...
    q = SubscriptionTable("book", ["Q"])
    q.sent("Q", 0.0)
    q.acked("Q", 0.0)
    q.data("Q", 0.5)
    assert q.dead(60.0, 10.0, True) == []
    for k in range(1, 20):  # ... and one that updates every ~30 s is not either
        q.data("Q", 30.0 * k)
    assert q.dead(600.0, 10.0, True) == []
    # but a silence out of proportion to its history is: 20 messages by 570 s, then silent
    # (dead once the silence exceeds 10x the mean gap since the ack: 10 * now / 20)
    assert q.dead(870.0, 10.0, True) == []
    assert q.dead(1200.0, 10.0, True) == ["Q"]
    t.quarantine("A", 30.0)
    assert "A" not in t.dead(100.0, 10.0, False)
    t.reset(40.0)
    assert t.counts() == {"quarantined": 1, "idle": 2}
    quiet = SubscriptionTable("trade", ["T"])
    quiet.sent("T", 0.0)
    quiet.acked("T", 0.0)
    assert quiet.dead(1000.0, 10.0, True) == []


def test_level3_notice_is_decided_from_the_config_alone() -> None:
    """Said at startup, before any connection (tests/test_make_run.py checks the offline run)."""
    no_keys = load_config(None, env={})
    assert no_keys.channels.level3 and no_keys.credentials is None
    msg = level3_notice(no_keys)
    assert msg and "level3 needs API keys (KRAKEN_API_KEY/KRAKEN_API_SECRET" in msg
    assert "level3 disabled" in msg
    keys = load_config(None, env={"KRAKEN_API_KEY": "k", "KRAKEN_API_SECRET": "c2VjcmV0"})
    assert keys.credentials is not None and level3_notice(keys) is None
    off = load_config(None, env={"RECORDER_CHANNELS__LEVEL3": "false"})
    assert not off.channels.level3 and level3_notice(off) is None


# ---------------------------------------------------------------- writer layout, disk guard, jobs

def test_writer_id_is_host_and_worker_and_path_safe(tmp_path: Path) -> None:
    from recorder.capture.writer import writer_id, writer_roots

    assert writer_id("db-7.example", 3) == "db-7.example-w3"
    assert writer_id("../etc/passwd", 0) == "_etc_passwd-w0"  # no separators, no leading dots
    assert writer_id("", 1) == "host-w1"
    for name in ("a-w0", "a-w1"):
        (tmp_path / name / "_manifest").mkdir(parents=True)
        (tmp_path / name / "_manifest" / "current.json").write_text("{}")
    (tmp_path / "not-a-root").mkdir()
    assert [p.name for p in writer_roots(tmp_path)] == ["a-w0", "a-w1"]


def test_disk_guard_hysteresis() -> None:
    from recorder.capture.writer import DiskGuard

    g = DiskGuard(min_free=100, resume_free=200)
    assert [g.check(f) for f in (500, 99, 50, 150, 199, 200, 150, 99)] == [
        "keep", "pause", "keep", "keep", "keep", "resume", "keep", "pause"]


def test_retention_policy_from_schedule() -> None:
    from recorder.archive.maintenance import RetentionPolicy
    from recorder.capture.config import ScheduleConfig
    from recorder.capture.scheduler import maintenance_functions, retention_policy

    compact, apply, policy_type = maintenance_functions()
    assert compact is not None and apply is not None and policy_type is RetentionPolicy
    assert retention_policy(ScheduleConfig(), RetentionPolicy) is None  # nothing set: job off
    p = retention_policy(ScheduleConfig(retention_days=30, journal_retention_gib=2.5),
                         RetentionPolicy)
    assert p == RetentionPolicy(parquet_max_age_days=30, journal_max_bytes=int(2.5 * 1024**3))


def test_schedule_validation() -> None:
    with pytest.raises(ConfigError, match="roll_minutes"):
        load_config(None, env={"RECORDER_SCHEDULE__ROLL_MINUTES": "0"})


def test_lag_sample_uses_the_message_time_of_ohlc_frames() -> None:
    """The exchange->receive lag metric reads the latest exchange timestamp of a frame; an
    ``ohlc`` bar's deprecated ``timestamp`` is the bar's end (in the future) and must not make
    the lag read 0."""
    from recorder.capture.status_part import ExchangeLag
    from recorder.frames import Frame
    from recorder.protocol.timestamps import rfc3339_to_ns

    recv = rfc3339_to_ns("2023-10-04T16:26:31.024394914Z")
    ohlc = (b'{"channel":"ohlc","type":"update","timestamp":"2023-10-04T16:26:30.524394914Z",'
            b'"data":[{"symbol":"MATIC/USD","open":0.5624,"interval_begin":'
            b'"2023-10-04T16:25:00.000000000Z","interval":5,'
            b'"timestamp":"2023-10-04T16:30:00.000000Z"}]}')
    trade = (b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","trade_id":1,'
             b'"timestamp":"2023-10-04T16:26:29.024394Z"},{"symbol":"BTC/USD","trade_id":2,'
             b'"timestamp":"2023-10-04T16:26:30.824394Z"}]}')
    w = ExchangeLag(seconds=-1.0)
    for payload, lag in ((ohlc, 0.5), (trade, 0.2)):
        frame = Frame(recv_ns=recv, conn_id=1, stream="spot", direction="in", payload=payload)
        w.sample(frame)
        assert abs(w.seconds - lag) < 1e-6, (payload[:30], w.seconds)
