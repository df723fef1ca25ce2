"""The connected registry's state, as `sync status` and the Sync screen show it.

The state comes from the run history: `Syncing` while a run is alive, `Online` when the last
finished run reached the parent (succeeded, or stopped by the window), `Offline` when it
failed or no run ever finished, `Unhealthy` after several failed runs in a row,
`NotConfigured` without a connection string.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from registry_core.config import Config, SyncConfig, load_config
from registry_core.datadir import DataDir
from registry_core.store import Store
from registry_core.store.sync_runs import SyncRunRecord
from registry_core.sync.connection import load_connection, stored_parent_ca
from registry_core.sync.runner import HEARTBEAT_STALE
from registry_core.sync.schedule import SyncSchedule
from registry_core.sync.settings import SyncSettings

STATES = ("Online", "Offline", "Syncing", "Unhealthy", "NotConfigured")
UNHEALTHY_AFTER = 3
"""Failed runs in a row (the newest ones, the parent answering) that make the state
Unhealthy."""
FINISHED = ("succeeded", "failed", "stopped")
"""Run outcomes that say something about the parent ('cancelled' says nothing)."""


def derive_state(configured: bool, running: bool, recent: Sequence[SyncRunRecord]) -> str:
    """One of STATES, from the newest runs first. A failed run counts as the parent being
    unreachable unless its details say `parent_reachable: true` (errors on some tags): the
    newest one unreachable is Offline however many came before (the uplink is the thing to
    look at); Unhealthy is the parent answering and runs failing all the same."""
    if not configured:
        return "NotConfigured"
    if running:
        return "Syncing"
    finished = [r for r in recent if r.status in FINISHED]
    if not finished:
        return "Offline"
    newest = finished[0]
    if newest.status == "failed" and newest.details.get("parent_reachable") is not True:
        return "Offline"
    failures = 0
    for run in finished:
        if run.status != "failed":
            break
        failures += 1
    return "Unhealthy" if failures >= UNHEALTHY_AFTER else "Online"


@dataclass(frozen=True)
class SyncStatus:
    state: str
    sync: SyncConfig
    settings: SyncSettings | None
    """None when no connection string is configured."""
    last_sync: float | None
    next_run: float | None
    window_end: float | None
    """Inside a window: when it closes (math.inf: continuously); None outside."""
    running: SyncRunRecord | None
    last_run: SyncRunRecord | None
    """The newest finished run (running ones aside)."""

    @property
    def configured(self) -> bool:
        return self.settings is not None

    def to_json(self) -> dict[str, Any]:
        base = self.settings.to_json() if self.settings else _unconfigured_json(self.sync)
        return {
            **base,
            "configured": self.configured,
            "state": self.state,
            "last_sync": iso_time(self.last_sync),
            "next_run": iso_time(self.next_run),
            "in_window": self.window_end is not None,
            "window_end": iso_time(self.window_end),
            "running": self.running.to_json(False) if self.running else None,
            "last_run": self.last_run.to_json(False) if self.last_run else None,
        }


def _unconfigured_json(sync: SyncConfig) -> dict[str, Any]:
    return {
        "connected_registry": None, "token_name": None, "parent_endpoint": None,
        "protocol": None, "mode": sync.mode, "repositories": list(sync.repositories),
        "tag_filters": list(sync.tag_filters), "schedule": sync.schedule,
        "continuous": None, "window": sync.window, "window_seconds": None,
        "parallel_transfers": sync.parallel_transfers, "enabled": sync.enabled,
        "parent_ca": None,
    }


def iso_time(at: float | None) -> str | None:
    """UTC, to the second, `Z` for the zone; None (and infinity) stay null."""
    if at is None or at == float("inf"):
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def read_status(datadir: DataDir, store: Store | None = None, *,
                config: Config | None = None, now: float | None = None) -> SyncStatus:
    """The status of this data dir. Without `store`, registry.db is opened for the runs
    (when it exists: a data dir never enabled has none) and closed again."""
    config = config if config is not None else load_config(datadir.config)
    connection = load_connection(datadir)
    settings = (SyncSettings.build(connection, config.sync, stored_parent_ca(datadir))
                if connection is not None else None)
    at = time.time() if now is None else now
    if store is not None:
        return _status(config.sync, settings, store, at)
    if not datadir.database.exists():
        return _status(config.sync, settings, None, at)
    own = Store(datadir.database)
    try:
        return _status(config.sync, settings, own, at)
    finally:
        own.close()


def _status(sync: SyncConfig, settings: SyncSettings | None, store: Store | None,
            now: float) -> SyncStatus:
    recent: Sequence[SyncRunRecord] = ()
    running = None
    last_sync = None
    if store is not None:
        with store.snapshot():
            recent = store.sync_runs.recent(UNHEALTHY_AFTER + 10)
            running = store.sync_runs.running(now - HEARTBEAT_STALE)
            last_sync = store.sync_runs.last_success()
    scheduled = settings is not None and settings.enabled
    last_run = next((r for r in recent if r.status != "running"), None)
    return SyncStatus(
        state=derive_state(settings is not None, running is not None, recent),
        sync=sync, settings=settings, last_sync=last_sync,
        next_run=next_attempt(settings.schedule, last_run, now)
        if settings and scheduled else None,
        window_end=settings.schedule.window_end(now) if settings and scheduled else None,
        running=running,
        last_run=last_run,
    )


def next_attempt(schedule: SyncSchedule, last_run: SyncRunRecord | None, now: float) -> float:
    """When the scheduler starts its next pass: the next try of a failed scheduled pass
    (scheduler.py keeps it in the run's `retry_at`) while it is ahead, else the cron's."""
    retry = last_run.details.get("retry_at") if last_run is not None else None
    if isinstance(retry, int | float) and retry > now:
        return float(retry)
    return schedule.next_start(now)
