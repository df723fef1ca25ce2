"""What monitoring asks of a registry: can it work (`problem`), and its figures (`read_vitals`):
storage, GC runs and the sync's state, as /healthz and /metrics serve them.

Blocking (file system and database): the HTTP face calls these in a worker thread.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from registry_core.errors import EdgeError
from registry_core.registry import Registry
from registry_core.store.probe import probe_database
from registry_core.sync.status import read_status
from registry_core.usage import UsageReport, usage_report

PROBE_TIMEOUT_SECONDS = 2.0
"""How long the database probe waits for another connection's lock."""
REPORT_MIN_AGE_SECONDS = 60.0
"""The usage report (0.4-0.6 s at 10,000 manifests, docs/benchmarks.md) is made again at most
this often, and only when something was committed since ..."""
REPORT_MAX_AGE_SECONDS = 600.0
"""... or when it is this old (the grace period frees content without any commit)."""


def problem(registry: Registry) -> str | None:
    """Why the registry cannot work now (one line), or None: the database answers a read on a
    connection of its own, and a file can be created (and removed) in the blob and upload
    directories (no data written: a full volume is the metrics' business, not a fault)."""
    try:
        probe_database(registry.datadir.database, PROBE_TIMEOUT_SECONDS)
    except EdgeError as exc:
        return f"the database does not answer: {exc}"
    for directory in (registry.datadir.blobs, registry.datadir.uploads):
        reason = _not_writable(directory)
        if reason is not None:
            return f"{directory} is not writable: {reason}"
    return None


def _not_writable(directory: Path) -> str | None:
    path = os.path.join(directory, f".healthz-{os.getpid()}-{threading.get_ident()}")
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))
        os.unlink(path)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


@dataclass(frozen=True)
class Vitals:
    """One reading of the registry's figures."""

    capacity_bytes: int
    used_bytes: int
    free_bytes: int
    reserve_bytes: int
    blobs: int
    manifests: int
    tags: int
    upload_sessions: int
    upload_session_bytes: int
    reclaimable_bytes: int | None
    """From the last usage report (None until the first is made)."""
    reclaimable_at: float | None
    gc_runs: dict[str, int] = field(default_factory=dict)
    """Runs per status (running, succeeded, failed, cancelled)."""
    gc_last_duration_seconds: float | None = None
    gc_last_finished_at: float | None = None
    sync_state: str = "NotConfigured"


class ReclaimableCache:
    """The usage report's reclaimable bytes, made again only when stale (see the ages above).

    Call `stale` and `refresh` on one thread, and one that commits nothing: the change counter
    is that thread's connection's, which moves with the commits of every other connection but
    not with its own (SQLite's data_version)."""

    def __init__(self, registry: Registry, min_age: float = REPORT_MIN_AGE_SECONDS) -> None:
        self.registry = registry
        self.min_age = min_age
        self.report: UsageReport | None = None
        self._made_at = 0.0
        self._counter: int | None = None

    def stale(self) -> bool:
        if self.report is None:
            return True
        age = time.monotonic() - self._made_at
        if age >= REPORT_MAX_AGE_SECONDS:
            return True
        return age >= self.min_age and self.registry.change_counter() != self._counter

    def refresh(self) -> None:
        counter = self.registry.change_counter()
        self.report = usage_report(self.registry)
        self._made_at, self._counter = time.monotonic(), counter


def read_vitals(registry: Registry, reclaimable: UsageReport | None) -> Vitals:
    """Storage counts and GC runs read now (cheap: counts and sums, no reachability), the
    sync's state, and the reclaimable bytes of `reclaimable` (a cached usage report)."""
    store = registry.store
    with store.snapshot():
        totals = store.accounting.totals()
        gc_runs = store.gc_runs.count_by_status()
        recent = store.gc_runs.history(2)  # at most one runs at a time
    last = next((r for r in recent if r.finished_at is not None), None)
    cap = registry.capacity()
    sync = read_status(registry.datadir, store, config=registry.config)
    return Vitals(
        capacity_bytes=cap.capacity_bytes,
        used_bytes=totals.blob_bytes,
        free_bytes=cap.free_bytes,
        reserve_bytes=cap.reserve_bytes,
        blobs=totals.blobs,
        manifests=totals.manifests,
        tags=totals.tags,
        upload_sessions=totals.uploads,
        upload_session_bytes=totals.upload_bytes,
        reclaimable_bytes=None if reclaimable is None else reclaimable.reclaimable_bytes,
        reclaimable_at=None if reclaimable is None else reclaimable.taken_at,
        gc_runs=gc_runs,
        gc_last_duration_seconds=(
            None if last is None or last.finished_at is None
            else last.finished_at - last.started_at
        ),
        gc_last_finished_at=None if last is None else last.finished_at,
        sync_state=sync.state,
    )
