"""Everything a sync run needs, from one data dir: the connection string, `[sync]`, the
schedule and window, and the parent's CA. `configure` is what `sync configure` does."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry_core.access.audit import record_config_change
from registry_core.config import (
    Config,
    SyncConfig,
    check_sync,
    load_config,
    save_config,
)
from registry_core.datadir import DataDir
from registry_core.errors import NotEnabledError, SyncConfigError
from registry_core.sync.connection import (
    ConnectionString,
    load_connection,
    save_connection,
    save_parent_ca,
    stored_parent_ca,
)
from registry_core.sync.schedule import SyncSchedule
from registry_core.sync.scope import Scope


class SyncNotConfigured(SyncConfigError):
    """No connection string has been configured in this data dir."""


@dataclass(frozen=True)
class SyncSettings:
    """A frozen view of the connected registry's settings (no password in repr)."""

    connection: ConnectionString
    mode: str
    repositories: tuple[str, ...]
    tag_filters: tuple[str, ...]
    schedule: SyncSchedule
    window: str
    parallel_transfers: int
    enabled: bool
    parent_ca: Path | None
    scope: Scope = dataclasses.field(init=False, repr=False, compare=False)
    """What the sync covers (sync/scope.py: the one implementation the engine uses too)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "scope", Scope(self.repositories, self.tag_filters))

    @classmethod
    def build(cls, connection: ConnectionString, sync: SyncConfig,
              parent_ca: Path | None) -> SyncSettings:
        check_sync(sync)
        return cls(
            connection=connection, mode=sync.mode, repositories=tuple(sync.repositories),
            tag_filters=tuple(sync.tag_filters),
            schedule=SyncSchedule.parse(sync.schedule, sync.window), window=sync.window,
            parallel_transfers=sync.parallel_transfers, enabled=sync.enabled,
            parent_ca=parent_ca,
        )

    @property
    def read_write(self) -> bool:
        return self.mode == "ReadWrite"

    def repository_in_scope(self, name: str) -> bool:
        return self.scope.wants_repository(name)

    def tag_in_scope(self, tag: str) -> bool:
        return self.scope.wants_tag(tag)

    def to_json(self) -> dict[str, Any]:
        """The settings as `sync configure` and `sync status` print them (no password)."""
        return {
            **self.connection.to_json(),
            "mode": self.mode,
            "repositories": list(self.repositories),
            "tag_filters": list(self.tag_filters),
            "schedule": self.schedule.cron,
            "continuous": self.schedule.continuous,
            "window": self.window,
            "window_seconds": self.schedule.window_seconds,
            "parallel_transfers": self.parallel_transfers,
            "enabled": self.enabled,
            "parent_ca": str(self.parent_ca) if self.parent_ca else None,
        }


def load_settings(datadir: DataDir, config: Config | None = None) -> SyncSettings:
    """The settings of this data dir; SyncNotConfigured when no connection string is kept."""
    connection = load_connection(datadir)
    if connection is None:
        raise SyncNotConfigured(
            f"no connected registry is configured in {datadir.root}: run "
            "`edge-console sync configure --connection-string-file F` first")
    config = config if config is not None else load_config(datadir.config)
    return SyncSettings.build(connection, config.sync, stored_parent_ca(datadir))


def configure(
    datadir: DataDir, *, connection: ConnectionString | None = None,
    parent_ca: Path | None = None, mode: str | None = None,
    repositories: list[str] | None = None, tag_filters: list[str] | None = None,
    schedule: str | None = None, window: str | None = None,
) -> SyncSettings:
    """Change what is given (None: keep), check all of it, then write: the connection string
    (0600), the parent's CA, and `[sync]` in config.toml (enabled). The first time needs a
    connection string. Nothing is written when anything is wrong."""
    if not datadir.is_enabled():
        raise NotEnabledError(
            f"the registry is not enabled in {datadir.root}: run `edge-console enable` first")
    connection = connection or load_connection(datadir)
    if connection is None:
        raise SyncNotConfigured(
            "no connection string is configured yet: give --connection-string-file F (or - "
            "for standard input)")
    config = load_config(datadir.config)
    sync = _changed(config.sync, mode, repositories, tag_filters, schedule, window)
    settings = SyncSettings.build(connection, sync, stored_parent_ca(datadir))
    if parent_ca is not None:
        settings = dataclasses.replace(settings, parent_ca=save_parent_ca(datadir, parent_ca))
    save_connection(datadir, connection)
    save_config(dataclasses.replace(config, sync=sync), datadir.config)
    record_config_change(datadir, "config.sync", settings.to_json())
    return settings


def _changed(sync: SyncConfig, mode: str | None, repositories: list[str] | None,
             tag_filters: list[str] | None, schedule: str | None,
             window: str | None) -> SyncConfig:
    return dataclasses.replace(
        sync,
        mode=sync.mode if mode is None else mode,
        repositories=sync.repositories if repositories is None else list(repositories),
        tag_filters=sync.tag_filters if tag_filters is None else list(tag_filters),
        schedule=sync.schedule if schedule is None else " ".join(schedule.split()),
        window=sync.window if window is None else window.strip().upper(),
        enabled=True,
    )

