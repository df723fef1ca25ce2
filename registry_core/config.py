"""The registry's settings, kept in `config.toml` in the data dir."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from registry_core.errors import ConfigError
from registry_core.reference import MAX_NAME_LENGTH, NAME_RE
from registry_core.sync.schedule import check_cron, parse_window

DEFAULT_PORT = 31001


@dataclass
class GCConfig:
    schedule: str = "0 2 * * *"
    grace_period_seconds: int = 3600
    delete_untagged: bool = False
    upload_max_age_seconds: int = 86400


@dataclass
class StorageConfig:
    quota_bytes: int = 0
    """0 means no quota: capacity is the volume's."""
    reserve_percent: float = 5.0
    reserve_max_bytes: int = 1 << 30
    """The low-space reserve is the smaller of reserve_percent of capacity and this."""


@dataclass
class LimitsConfig:
    """Bounds on what one client can hold on to (slow and abusive clients)."""

    header_read_timeout_seconds: float = 10.0
    """A connection whose request head is not complete within this is closed (also idle
    keep-alive connections)."""
    body_idle_timeout_seconds: float = 60.0
    """A request body that sends no byte for this long is cut off with 408; an upload keeps
    the bytes acknowledged before."""
    max_concurrent_uploads: int = 64
    """Upload requests carrying a body at once; beyond, 429 TOOMANYREQUESTS."""
    read_buffer_bytes: int = 1 << 20
    """The server's read buffer per connection (8192 at least). A request head that does not
    fit is answered 431 with no body by the server; it is also the largest body part the app
    receives at once (fewer, larger parts: faster uploads)."""


DEFAULT_SKIP_NAMESPACES = ["kube-system", "kube-public", "kube-node-lease"]


@dataclass
class KubernetesConfig:
    """The cluster whose workloads pull from this registry (registry_core/kube/)."""

    kubeconfig: str = ""
    """Path of the kubeconfig; empty: $KUBECONFIG, else ~/.kube/config, else in-cluster."""
    context: str = ""
    """The kubeconfig context to use; empty: its current context."""
    secret_name: str = "ase-ecr-credentials"
    skip_namespaces: list[str] = field(default_factory=lambda: list(DEFAULT_SKIP_NAMESPACES))
    """Namespaces that get no pull secret."""
    keep_secrets: bool = True
    """While the registry is served, give new namespaces the pull secret and re-apply it
    after a password rotation."""


@dataclass
class AuditConfig:
    """Bounds of the audit log (registry_core/access/audit.py): the older rows and the rows
    beyond the newest `max_entries` are pruned (0: no bound of that kind)."""

    max_age_days: float = 90.0
    max_entries: int = 1_000_000


SYNC_MODES = ("ReadOnly", "ReadWrite")
MAX_PARALLEL_TRANSFERS = 16


@dataclass
class SyncConfig:
    """The connected registry (registry_core/sync/); the connection string itself is kept
    apart, 0600, in `sync/connection`."""

    mode: str = "ReadOnly"
    """ReadOnly: pull from the parent only. ReadWrite: local pushes go up at the next sync."""
    repositories: list[str] = field(default_factory=list)
    """Names or glob patterns (`app/*`, `*`); empty: nothing is synced."""
    tag_filters: list[str] = field(default_factory=list)
    """Regexes a tag must match whole; a tag syncs when it matches any; empty: every tag."""
    schedule: str = "* * * * *"
    """5-field cron, local time; `* * * * *`: continuously."""
    window: str = "PT24H"
    """ISO-8601 duration of the window each schedule time opens."""
    parallel_transfers: int = 4
    enabled: bool = False
    """Set by `sync configure`; false: no scheduled sync."""


@dataclass
class Config:
    device_name: str = "edge"
    dns_domain: str = "local"
    node_ip: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    listen: str = ""
    """HOST:PORT the server binds; empty means 0.0.0.0:<port>."""
    tls: bool = True
    username: str = "ase-ecr-user"
    gc: GCConfig = field(default_factory=GCConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)

    @property
    def endpoint_host(self) -> str:
        return f"ecr.{self.device_name}.{self.dns_domain}"

    @property
    def endpoint(self) -> str:
        return f"{self.endpoint_host}:{self.port}"

    @property
    def listen_address(self) -> str:
        return self.listen or f"0.0.0.0:{self.port}"


def load_config(path: Path, *, checked: bool = True) -> Config:
    """Read config.toml; a missing file gives the defaults, a bad one a ConfigError.
    `checked=False` takes values of the right type out of range too (`enable`, which may be
    given the value that repairs one, checks the result with check_config)."""
    if not path.exists():
        return Config()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read (a damaged file?)") from None
    config = _from_dict(raw, path)
    if checked:
        check_config(config, path)
    return config


def check_config(config: Config, path: Path) -> None:
    """ConfigError, naming `path`, for the first setting out of its range."""
    try:
        check_settings(config)
        check_sync(config.sync)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def save_config(config: Config, path: Path) -> None:
    """Write config.toml atomically (temp file + rename)."""
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(_to_toml(dataclasses.asdict(config)), encoding="utf-8")
    os.replace(tmp, path)


def _from_dict(raw: dict[str, object], path: Path) -> Config:
    config = Config()
    sections = {
        "gc": config.gc, "storage": config.storage, "limits": config.limits,
        "kubernetes": config.kubernetes, "sync": config.sync, "audit": config.audit,
    }
    for key, value in raw.items():
        if key in sections and isinstance(value, dict):
            for sub_key, sub_value in value.items():
                _set(sections[key], sub_key, sub_value, f"{key}.{sub_key}", path)
        else:
            _set(config, key, value, key, path)
    return config


def check_settings(config: Config) -> None:
    """The ranges types alone do not say (sync's own are check_sync's); ConfigError names the
    setting, the value and what is allowed."""
    _check_address(config)
    gc, storage, limits, audit = config.gc, config.storage, config.limits, config.audit
    _check_number("gc.grace_period_seconds", gc.grace_period_seconds, 0)
    _check_number("gc.upload_max_age_seconds", gc.upload_max_age_seconds, 1)
    _check_number("storage.quota_bytes", storage.quota_bytes, 0)
    _check_number("storage.reserve_percent", storage.reserve_percent, 0, 100)
    _check_number("storage.reserve_max_bytes", storage.reserve_max_bytes, 0)
    _check_number("limits.header_read_timeout_seconds", limits.header_read_timeout_seconds, 0,
                  above=True)
    _check_number("limits.body_idle_timeout_seconds", limits.body_idle_timeout_seconds, 0,
                  above=True)
    _check_number("limits.max_concurrent_uploads", limits.max_concurrent_uploads, 1)
    _check_number("limits.read_buffer_bytes", limits.read_buffer_bytes, 1)
    _check_number("audit.max_age_days", audit.max_age_days, 0)
    _check_number("audit.max_entries", audit.max_entries, 0)
    _check_gc_schedule(gc.schedule)


def _check_address(config: Config) -> None:
    _check_number("port", config.port, 1, 65535)
    try:
        ipaddress.ip_address(config.node_ip)
    except ValueError:
        raise ConfigError(f"node_ip must be an IPv4 or IPv6 address, not {config.node_ip[:100]!r}"
                          ) from None
    if not config.username or ":" in config.username:
        raise ConfigError(f"username must be non-empty and without ':', "
                          f"not {config.username[:100]!r}")


def _check_number(label: str, value: float, low: float, high: float = math.inf, *,
                  above: bool = False) -> None:
    fits = value > low if above else value >= low
    if math.isfinite(value) and fits and value <= high:
        return
    if above:
        allowed = f"greater than {low:g}"
    elif high == math.inf:
        allowed = f"{low:g} or more"
    else:
        allowed = f"from {low:g} to {high:g}"
    if isinstance(value, float):
        allowed = f"a finite number {'of ' if high == math.inf and not above else ''}{allowed}"
    raise ConfigError(f"{label} must be {allowed}, not {value!r}")


def _check_gc_schedule(schedule: str) -> None:
    """Empty (no nightly GC) or a 5-field cron that fires. The default needs no check (and
    no croniter import at start-up)."""
    if not schedule.strip() or schedule == GCConfig.schedule:
        return
    try:
        check_cron(schedule)
    except ConfigError:
        raise ConfigError(f"gc.schedule must be empty or a 5-field cron expression that fires "
                          f"(minute hour day month weekday), not {schedule[:100]!r}") from None


def check_sync(sync: SyncConfig) -> None:
    """The checks types alone do not make; ConfigError names the setting and the value."""
    if sync.mode not in SYNC_MODES:
        raise ConfigError(f"sync.mode must be ReadOnly or ReadWrite, not {sync.mode!r}")
    for pattern in sync.repositories:
        check_repository_pattern(pattern)
    for expression in sync.tag_filters:
        check_tag_filter(expression)
    check_cron(sync.schedule)
    parse_window(sync.window)
    if not 1 <= sync.parallel_transfers <= MAX_PARALLEL_TRANSFERS:
        raise ConfigError(f"sync.parallel_transfers must be 1-{MAX_PARALLEL_TRANSFERS}, "
                          f"not {sync.parallel_transfers}")


def check_repository_pattern(pattern: str) -> str:
    """A repository name, or a glob over names: `*` and `?` where name characters go."""
    # each wildcard stands for a letter: what is left must be a valid name
    stand_in = pattern.replace("*", "a").replace("?", "a")
    if len(pattern) > MAX_NAME_LENGTH or NAME_RE.fullmatch(stand_in) is None:
        raise ConfigError(
            f"sync.repositories: {pattern[:100]!r} is not a repository name or a pattern "
            "(lowercase [a-z0-9] components joined by '.', '_', '__' or '-', separated by "
            "'/', with '*' and '?' as wildcards)")
    return pattern


def check_tag_filter(expression: str) -> re.Pattern[str]:
    if not expression:
        raise ConfigError("sync.tag_filters: an empty regex")
    try:
        return re.compile(expression)
    except (re.error, OverflowError, RecursionError) as exc:
        raise ConfigError(f"sync.tag_filters: {expression[:100]!r} is not a regex: {exc}") \
            from None


def _set(target: object, key: str, value: object, label: str, path: Path) -> None:
    names = {f.name: f for f in dataclasses.fields(target)}  # type: ignore[arg-type]
    if key not in names:
        raise ConfigError(f"{path}: unknown setting {label!r}")
    current = getattr(target, key)
    if isinstance(current, list):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{path}: {label} must be a list of strings, got {value!r}")
        setattr(target, key, list(value))
        return
    if isinstance(current, bool) != isinstance(value, bool) or not isinstance(
        value, type(current) if not isinstance(current, float) else (int, float)
    ):
        raise ConfigError(f"{path}: {label} must be {type(current).__name__}, got {value!r}")
    setattr(target, key, value)


def _to_toml(data: dict[str, object]) -> str:
    lines: list[str] = []
    tables: list[tuple[str, dict[str, object]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines.append(f"\n[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
