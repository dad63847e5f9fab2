"""Capture configuration: TOML file < environment < command-line flags.

Only :func:`load_config` touches the outside world (the TOML file, the environment, the
secrets file); :class:`CaptureConfig` is a frozen value. Bad input raises :class:`ConfigError`
with a message fit for an operator (no traceback is shown by ``recorder run``).

API credentials are never read from the TOML file: only from the environment variables
``KRAKEN_API_KEY`` / ``KRAKEN_API_SECRET`` or from a credentials file (``[secrets] file`` or
``--secrets-file``) that must not be readable by group or others. The secret is kept in a
:class:`Secret`, whose ``repr``/``str`` never show it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from recorder.errors import RecorderError

__all__ = [
    "ConfigError",
    "Secret",
    "Credentials",
    "VenueConfig",
    "ChannelConfig",
    "ConnectionConfig",
    "HealingConfig",
    "RestConfig",
    "ScheduleConfig",
    "ObservabilityConfig",
    "FixConfig",
    "CaptureConfig",
    "load_config",
    "load_credentials",
    "parse_shard",
    "select_symbols",
    "ENV_PREFIX",
]

ENV_PREFIX: Final = "RECORDER_"
L3_DEPTHS: Final = frozenset({10, 100, 1000})
BOOK_DEPTHS: Final = frozenset({10, 25, 100, 500, 1000})
OHLC_INTERVALS: Final = frozenset({1, 5, 15, 30, 60, 240, 1440, 10080, 21600})


class ConfigError(RecorderError, ValueError):
    """The configuration is invalid; the message says which setting and why."""


class Secret:
    """A secret string that never shows itself in ``repr``, ``str``, logs or exceptions."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret text (use only to sign)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))

    def __reduce__(self) -> tuple[Any, ...]:  # picklable to worker processes
        return (Secret, (self._value,))


@dataclass(frozen=True, slots=True)
class Credentials:
    """Spot API key and secret (base64), used for level3 tokens and private REST Level3."""

    api_key: str
    api_secret: Secret


@dataclass(frozen=True, slots=True)
class VenueConfig:
    """Where to connect. Defaults are production Kraken; tests point these at ``recorder sim``."""

    spot_ws: str = "wss://ws.kraken.com/v2"
    l3_ws: str = "wss://ws-l3.kraken.com/v2"
    futures_ws: str = "wss://futures.kraken.com/ws/v1"
    spot_rest: str = "https://api.kraken.com"
    futures_rest: str = "https://futures.kraken.com"


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """Which channels and parameters to capture, and for which pairs."""

    level3: bool = True
    level3_depth: int = 10
    book: bool = True
    book_depth: int = 1000
    trade: bool = True
    ohlc: bool = True
    ohlc_interval: int = 1
    #: fnmatch patterns over v2 symbols (``BTC/*``); empty = every online pair.
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    #: Futures product ids (``PF_XBTUSD``); ``["*"]`` = every product the venue lists.
    futures_products: tuple[str, ...] = ()
    futures_feeds: tuple[str, ...] = ("book", "trade")
    #: Level3 subscription budget tier: ``standard`` (200/s) or ``pro`` (500/s).
    l3_tier: str = "standard"


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """Connection behaviour and sharding."""

    ping_interval_s: float = 20.0
    silence_s: float = 5.0
    connect_timeout_s: float = 10.0
    ack_timeout_s: float = 10.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    #: Kraken (Cloudflare) bans an IP after about 150 connects in 10 minutes; stay below.
    connects_per_window: int = 120
    connect_window_s: float = 600.0
    #: Client requests per second per connection (subscribe/unsubscribe/ping).
    requests_per_s: float = 10.0
    l3_symbols_per_connection: int = 200
    #: Estimated messages/s one book/trade/ohlc connection should carry at most.
    max_msgs_per_connection: float = 2000.0
    max_symbols_per_connection: int = 200
    #: Worker processes; 0 = one per CPU core.
    workers: int = 0
    #: ``K/N``: this host records shard K of N (1-based), rendezvous-hashed by symbol.
    shard: str = "1/1"


@dataclass(frozen=True, slots=True)
class HealingConfig:
    """Resnapshot budget, quarantine and backfill."""

    resnapshots_per_minute: float = 60.0
    resnapshot_burst: int = 20
    max_failures: int = 5
    failure_window_s: float = 300.0
    quarantine_base_s: float = 60.0
    quarantine_max_s: float = 3600.0
    backfill_lookback_s: float = 120.0
    rest_snapshot_on_gap: bool = True
    #: Symbols healed first (v2 symbols); the rest by channel priority.
    priority_symbols: tuple[str, ...] = ("BTC/USD", "ETH/USD")


@dataclass(frozen=True, slots=True)
class RestConfig:
    """A model of Kraken's REST limits (see kraken-protocol.md §7.1)."""

    public_per_s: float = 1.0
    public_burst: int = 10
    private_max: float = 15.0
    private_decay_per_s: float = 0.33
    timeout_s: float = 10.0
    rate_limited_cooldown_s: float = 5.0
    #: Largest REST answer body read (bytes); a larger one is cut off unread past the cap and
    #: the call fails with RestFailure('... body exceeds N bytes') (never held whole).
    max_body_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    """Periodic jobs (APScheduler) of each worker, on its own archive root."""

    #: Commit (seal rolling Parquet files + manifest with the journal position) this often.
    roll_minutes: float = 5.0
    #: ... or as soon as this many MiB of rows are buffered.
    roll_max_mb: float = 128.0
    #: Book checkpoint interval of the pipeline (besides one at every epoch start).
    checkpoint_minutes: float = 5.0
    compaction_cron: str = "15 * * * *"
    retention_cron: str = "30 3 * * *"
    #: Parquet retention by age (days) and size (GiB); 0 = unlimited.
    retention_days: float = 0.0
    parquet_retention_gib: float = 0.0
    #: Journal retention by age (days) and size (GiB); 0 = unlimited. Only segments already
    #: derived into committed Parquet are ever deleted.
    journal_retention_days: float = 0.0
    journal_retention_gib: float = 0.0
    instrument_refresh_minutes: float = 60.0
    #: Daily audit of the worker's archive root (yesterday, UTC) into ``<root>/audits/``
    #: as JSON + HTML (``recorder.audit.run_daily_audit``); empty string disables it.
    audit_cron: str = "20 0 * * *"
    disk_check_s: float = 10.0
    disk_min_free_bytes: int = 2 * 1024**3
    disk_resume_free_bytes: int = 4 * 1024**3


@dataclass(frozen=True, slots=True)
class ObservabilityConfig:
    """Logs, metrics and health."""

    log_json: bool = False
    log_level: str = "INFO"
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    #: A subscription without data for this long (while its connection is up) is dead.
    dead_after_s: float = 60.0
    status_interval_s: float = 1.0


#: MarketDepth (264) values Kraken accepts on a FIX MarketDataRequest (0 = full book).
FIX_DEPTHS: Final = (0, 1, 10, 25, 100, 500, 1000)
FIX_CHANNELS: Final = ("L2", "L3")


@dataclass(frozen=True, slots=True)
class FixConfig:
    """The FIX 4.4 market-data source (``[fix]``; issue #17, docs/fix.md).

    Off unless ``symbols`` is set. One TLS session per channel: ``L2`` on ``l2_port`` (book
    and, with ``trades``, trades), ``L3`` on ``l3_port`` (order by order). Kraken
    authenticates a market-data session by SenderCompID alone (and the source IP)."""

    host: str = "colo-london.vip-fix.kraken.com"
    l2_port: int = 4000
    l3_port: int = 4005
    sender_comp_id: str = ""
    target_comp_id: str = "KRAKEN-MD"
    #: Kraken symbols as FIX writes them (``BTC/USD``); empty = the FIX source is off.
    symbols: tuple[str, ...] = ()
    #: ``L2`` and/or ``L3``.
    channels: tuple[str, ...] = ("L2",)
    #: MarketDepth (264): 0 (full book), 1, 10, 25, 100, 500 or 1000.
    depth: int = 10
    #: Ask for trades (MDEntryType 2) on the L2 session (Kraken refuses them on L3).
    trades: bool = True
    #: Verify the server certificate and host name (Kraken: required in production).
    tls_verify: bool = True
    #: A PEM file of certificates to trust instead of the system's (the sim's self-signed
    #: certificate); empty = the system trust store.
    ca_file: str = ""
    #: HeartBtInt (108) in seconds (Kraken recommends 60).
    heartbeat_s: int = 60
    connect_timeout_s: float = 10.0
    #: Reconnect backoff: exponential from ``backoff_base_s`` up to ``backoff_max_s``.
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0

    @property
    def enabled(self) -> bool:
        return bool(self.symbols)


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    """Everything ``recorder run`` needs."""

    venue: VenueConfig = field(default_factory=VenueConfig)
    channels: ChannelConfig = field(default_factory=ChannelConfig)
    connection: ConnectionConfig = field(default_factory=ConnectionConfig)
    healing: HealingConfig = field(default_factory=HealingConfig)
    rest: RestConfig = field(default_factory=RestConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)
    fix: FixConfig = field(default_factory=FixConfig)
    archive_root: Path = Path("archive")
    fsync_interval_s: float = 1.0
    host: str = ""
    #: Seconds a SIGTERM drain may take before workers are killed.
    drain_timeout_s: float = 20.0
    #: A worker that fails this many times in a row with the same error, each failure within
    #: ``crash_loop_window_s`` of the first, is not restarted again: the supervisor stops
    #: every worker and exits non-zero with the error (0 = restart forever).
    crash_loop_failures: int = 5
    crash_loop_window_s: float = 600.0
    credentials: Credentials | None = field(default=None, repr=False)
    secrets_file: Path | None = None

    @property
    def shard_index(self) -> tuple[int, int]:
        return parse_shard(self.connection.shard)

    def describe(self) -> str:
        """A one-line, secret-free summary (for the ProcessStart marker)."""
        ch = self.channels
        parts = [f"l3={ch.level3_depth}" if ch.level3 else "", f"book={ch.book_depth}" if ch.book else "",
                 "trade" if ch.trade else "", f"ohlc={ch.ohlc_interval}" if ch.ohlc else "",
                 f"futures={len(ch.futures_products)}" if ch.futures_products else "",
                 (f"fix={'+'.join(self.fix.channels)}:{len(self.fix.symbols)}"
                  if self.fix.enabled else ""),
                 f"shard={self.connection.shard}", f"keys={'yes' if self.credentials else 'no'}"]
        return " ".join(p for p in parts if p)


_SECTIONS: Final[dict[str, type]] = {
    "venue": VenueConfig,
    "channels": ChannelConfig,
    "connection": ConnectionConfig,
    "healing": HealingConfig,
    "rest": RestConfig,
    "schedule": ScheduleConfig,
    "observability": ObservabilityConfig,
    "fix": FixConfig,
}
_TOP_LEVEL: Final = {"archive_root", "fsync_interval_s", "host", "drain_timeout_s",
                     "crash_loop_failures", "crash_loop_window_s"}
_FORBIDDEN_KEYS: Final = ("api_secret", "secret", "api_key", "password", "private_key")


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``1 <= K <= N``; :class:`ConfigError` otherwise."""
    k, sep, n = str(text).partition("/")
    if not sep or not k.strip().isdigit() or not n.strip().isdigit():
        raise ConfigError(f"shard must look like K/N (e.g. 1/2), got {text!r}")
    ki, ni = int(k), int(n)
    if not 1 <= ki <= ni:
        raise ConfigError(f"shard {text!r}: need 1 <= K <= N")
    return ki, ni


def _coerce(section: str, name: str, value: Any, target: Any) -> Any:
    where = f"{section}.{name}" if section else name
    kind = type(target)
    if isinstance(target, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if isinstance(target, (int, float)):
        try:
            out = kind(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            out = None
        if out is None or (kind is int and isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if out < 0:
            raise ConfigError(f"{where}: must be >= 0, got {value!r}")
        return out
    if isinstance(target, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(value)
    if isinstance(target, Path) or name in ("archive_root",):
        if not isinstance(value, (str, Path)) or not str(value):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value).expanduser()
    if isinstance(target, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return value
    return value


def _apply(obj: Any, section: str, values: Mapping[str, Any]) -> Any:
    known = {f.name: f for f in dataclasses.fields(obj)}
    changes = {}
    for name, value in values.items():
        if name not in known:
            raise ConfigError(f"unknown setting {section + '.' if section else ''}{name}"
                              f" (known: {', '.join(sorted(known))})")
        changes[name] = _coerce(section, name, value, getattr(obj, name))
    return dataclasses.replace(obj, **changes)


def _validate(cfg: CaptureConfig) -> None:
    ch, conn = cfg.channels, cfg.connection
    if ch.level3_depth not in L3_DEPTHS:
        raise ConfigError(f"channels.level3_depth must be one of {sorted(L3_DEPTHS)}, got {ch.level3_depth}")
    if ch.book_depth not in BOOK_DEPTHS:
        raise ConfigError(f"channels.book_depth must be one of {sorted(BOOK_DEPTHS)}, got {ch.book_depth}")
    if ch.ohlc_interval not in OHLC_INTERVALS:
        raise ConfigError(f"channels.ohlc_interval must be one of {sorted(OHLC_INTERVALS)}, got {ch.ohlc_interval}")
    if cfg.rest.max_body_bytes < 1:
        raise ConfigError(f"rest.max_body_bytes must be >= 1, got {cfg.rest.max_body_bytes}")
    if ch.l3_tier not in ("standard", "pro"):
        raise ConfigError(f"channels.l3_tier must be 'standard' or 'pro', got {ch.l3_tier!r}")
    bad = set(ch.futures_feeds) - {"book", "trade", "ticker", "ticker_lite"}
    if bad:
        raise ConfigError(f"channels.futures_feeds: unknown feed(s) {sorted(bad)}")
    if not 1 <= conn.l3_symbols_per_connection <= 200:
        raise ConfigError("connection.l3_symbols_per_connection must be in 1..200 (Kraken's limit)")
    if conn.silence_s <= 0 or conn.ping_interval_s <= 0:
        raise ConfigError("connection.silence_s and ping_interval_s must be > 0")
    if conn.connects_per_window < 1 or conn.connects_per_window > 150:
        raise ConfigError("connection.connects_per_window must be in 1..150 (Kraken bans above ~150/10 min)")
    if conn.max_symbols_per_connection < 1:
        raise ConfigError("connection.max_symbols_per_connection must be >= 1")
    parse_shard(conn.shard)
    for url_name in ("spot_ws", "l3_ws", "futures_ws"):
        url = getattr(cfg.venue, url_name)
        if not url.startswith(("ws://", "wss://")):
            raise ConfigError(f"venue.{url_name} must be a ws:// or wss:// URL, got {url!r}")
    for url_name in ("spot_rest", "futures_rest"):
        url = getattr(cfg.venue, url_name)
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"venue.{url_name} must be an http(s):// URL, got {url!r}")
    if cfg.schedule.roll_minutes <= 0 or cfg.schedule.roll_max_mb <= 0:
        raise ConfigError("schedule.roll_minutes and schedule.roll_max_mb must be > 0")
    if cfg.schedule.checkpoint_minutes <= 0:
        raise ConfigError("schedule.checkpoint_minutes must be > 0")
    if cfg.schedule.disk_resume_free_bytes < cfg.schedule.disk_min_free_bytes:
        raise ConfigError("schedule.disk_resume_free_bytes must be >= disk_min_free_bytes")
    if cfg.crash_loop_failures and cfg.crash_loop_window_s <= 0:
        raise ConfigError("crash_loop_window_s must be > 0")
    if cfg.observability.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"observability.log_level: unknown level {cfg.observability.log_level!r}")
    _validate_fix(cfg.fix)


def _fix_text(where: str, value: str) -> None:
    """A value that goes into a FIX header field: printable ASCII, no ``=``/SOH/space."""
    if not value or not value.isascii() or not value.isprintable() or any(
            c in value for c in "= |"):
        raise ConfigError(f"fix.{where} must be non-empty printable ASCII without spaces, "
                          f"'=' or '|', got {value!r}")


def _validate_fix(fix: FixConfig) -> None:
    """Checks of ``[fix]`` (only when the source is on, i.e. ``symbols`` is set)."""
    from recorder.protocol.symbols import symbol_problem

    if not fix.enabled:
        return
    if not fix.sender_comp_id:
        raise ConfigError("fix.sender_comp_id is required when fix.symbols is set (Kraken "
                          "authenticates a market-data session by SenderCompID)")
    _fix_text("sender_comp_id", fix.sender_comp_id)
    _fix_text("target_comp_id", fix.target_comp_id)
    if not fix.host or any(c.isspace() for c in fix.host) or "/" in fix.host:
        raise ConfigError(f"fix.host must be a host name or address, got {fix.host!r}")
    for name in ("l2_port", "l3_port"):
        port = getattr(fix, name)
        if not 1 <= port <= 65535:
            raise ConfigError(f"fix.{name} must be in 1..65535, got {port}")
    bad = [c for c in fix.channels if c not in FIX_CHANNELS]
    if bad or not fix.channels:
        raise ConfigError(f"fix.channels must list L2 and/or L3, got {list(fix.channels)}")
    if len(set(fix.channels)) != len(fix.channels):
        raise ConfigError(f"fix.channels lists a channel twice: {list(fix.channels)}")
    if fix.depth not in FIX_DEPTHS:
        raise ConfigError(f"fix.depth must be one of {list(FIX_DEPTHS)}, got {fix.depth}")
    for sym in fix.symbols:
        problem = symbol_problem(sym, "spot")
        if problem is not None:
            raise ConfigError(f"fix.symbols: {sym!r} is not a Kraken symbol: {problem}")
    if len(set(fix.symbols)) != len(fix.symbols):
        raise ConfigError("fix.symbols lists a symbol twice")
    if not 1 <= fix.heartbeat_s <= 3600:
        raise ConfigError(f"fix.heartbeat_s must be in 1..3600, got {fix.heartbeat_s}")
    if fix.connect_timeout_s <= 0:
        raise ConfigError("fix.connect_timeout_s must be > 0")
    if fix.backoff_base_s <= 0 or fix.backoff_max_s < fix.backoff_base_s:
        raise ConfigError("fix.backoff_base_s must be > 0 and fix.backoff_max_s >= it, got "
                          f"{fix.backoff_base_s} and {fix.backoff_max_s}")
    if fix.ca_file:
        if not fix.tls_verify:
            raise ConfigError("fix.ca_file is set but fix.tls_verify is false: either trust "
                              "the file (verify) or skip verification, not both")
        if not Path(fix.ca_file).expanduser().is_file():
            raise ConfigError(f"fix.ca_file: no such file: {fix.ca_file}")


def _reject_secrets(data: Mapping[str, Any], where: str = "") -> None:
    for key, value in data.items():
        if isinstance(value, Mapping):
            _reject_secrets(value, f"{where}{key}.")
        elif any(word in key.lower() for word in _FORBIDDEN_KEYS) and key != "file":
            raise ConfigError(
                f"{where}{key}: credentials are never read from the TOML file; use the "
                "KRAKEN_API_KEY/KRAKEN_API_SECRET environment variables or [secrets] file")


def _file_layer(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any], Path | None]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    secrets = data.pop("secrets", {})
    _reject_secrets(data)
    if not isinstance(secrets, dict) or set(secrets) - {"file"}:
        raise ConfigError("[secrets] accepts only `file` (a credentials file path)")
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in data.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}] must be a table")
            sections[key] = value
        elif key in _TOP_LEVEL:
            top[key] = value
        else:
            raise ConfigError(f"unknown setting {key!r} in {path}")
    secrets_file = Path(secrets["file"]).expanduser() if "file" in secrets else None
    if secrets_file is not None and not secrets_file.is_absolute():
        secrets_file = (path.parent / secrets_file).resolve()
    return sections, top, secrets_file


def _env_layer(env: Mapping[str, str]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """``RECORDER_<SECTION>__<NAME>`` or ``RECORDER_<TOPLEVEL>``; unknown names are errors."""
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "SECRETS_FILE":
            continue
        name = key[len(ENV_PREFIX):].lower()
        section, sep, field_name = name.partition("__")
        if sep:
            if section not in _SECTIONS:
                raise ConfigError(f"{key}: unknown section {section!r}")
            sections.setdefault(section, {})[field_name] = value
        elif name in _TOP_LEVEL:
            top[name] = value
    return sections, top


def load_credentials(env: Mapping[str, str], secrets_file: Path | None) -> Credentials | None:
    """Credentials from ``KRAKEN_API_KEY``/``KRAKEN_API_SECRET`` or a private file.

    The file holds ``api_key = "..."`` and ``api_secret = "..."`` (TOML) and must not be
    readable or writable by group or others (mode ``0600`` or stricter).
    """
    key, secret = env.get("KRAKEN_API_KEY"), env.get("KRAKEN_API_SECRET")
    if (key is None) != (secret is None):
        raise ConfigError("set both KRAKEN_API_KEY and KRAKEN_API_SECRET, or neither")
    if key is not None and secret is not None:
        if not key or not secret:
            raise ConfigError("KRAKEN_API_KEY/KRAKEN_API_SECRET must not be empty")
        return Credentials(key, Secret(secret))
    if secrets_file is None:
        return None
    try:
        info = secrets_file.stat()
    except OSError as exc:
        raise ConfigError(f"credentials file {secrets_file}: {exc.strerror or exc}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"credentials file {secrets_file} is accessible by group/others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {secrets_file}")
    try:
        data = tomllib.loads(secrets_file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        # never echo the parser's message: it may quote the secret
        raise ConfigError(f"credentials file {secrets_file}: not readable TOML "
                          "(expected api_key = \"...\" and api_secret = \"...\")") from None
    key, secret = data.get("api_key"), data.get("api_secret")
    if not isinstance(key, str) or not isinstance(secret, str) or not key or not secret:
        raise ConfigError(f"credentials file {secrets_file}: needs non-empty api_key and api_secret")
    return Credentials(key, Secret(secret))


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    top_overrides: Mapping[str, Any] | None = None,
    secrets_file: Path | None = None,
) -> CaptureConfig:
    """Build the configuration: defaults, then ``path`` (TOML), then ``env``, then flags.

    ``overrides`` maps a section to settings (``{"connection": {"shard": "1/2"}}``),
    ``top_overrides`` top-level settings; ``None`` values are ignored.
    """
    env = os.environ if env is None else env
    cfg = CaptureConfig()
    layers: list[tuple[dict[str, Any], dict[str, Any]]] = []
    file_secrets: Path | None = None
    if path is not None:
        sections, top, file_secrets = _file_layer(Path(path))
        layers.append((sections, top))
    layers.append(_env_layer(env))
    layers.append((
        {k: {n: v for n, v in d.items() if v is not None} for k, d in (overrides or {}).items()},
        {k: v for k, v in (top_overrides or {}).items() if v is not None},
    ))
    for sections, top in layers:
        for name, values in sections.items():
            if name not in _SECTIONS:
                raise ConfigError(f"unknown section [{name}]")
            cfg = dataclasses.replace(cfg, **{name: _apply(getattr(cfg, name), name, values)})
        if top:
            cfg = _apply(cfg, "", top)
    env_secrets = env.get(ENV_PREFIX + "SECRETS_FILE")
    chosen = secrets_file or (Path(env_secrets) if env_secrets else None) or file_secrets
    creds = load_credentials(env, chosen)
    cfg = dataclasses.replace(cfg, credentials=creds, secrets_file=chosen)
    _validate(cfg)
    return cfg


def select_symbols(symbols: list[str], include: tuple[str, ...], exclude: tuple[str, ...]) -> list[str]:
    """Symbols matching any ``include`` pattern (all when empty) and no ``exclude`` pattern."""
    out = []
    for s in symbols:
        if include and not any(fnmatch.fnmatchcase(s, p) for p in include):
            continue
        if any(fnmatch.fnmatchcase(s, p) for p in exclude):
            continue
        out.append(s)
    return out
