"""Storage usage, exact and fast: answered from SQLite in one snapshot, never by walking the disk.

* capacity: the volume that holds the data dir, or the quota if smaller; free and the reserve
  of the low-space guard (and how often it has refused uploads);
* used: every stored content file (layers, configs, manifest bodies) counted once;
* per repository: total bytes its manifests hold, the exclusive part (held by no other
  repository) and the shared part;
* untagged: bytes only untagged manifests hold (not reachable from any tag);
* reclaimable: what a GC with no grace period would free now (the same `mark` as the GC), and
  how much of it the grace period still protects.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from registry_core.errors import StorageFull, StoreBusy, StoreError
from registry_core.events import Event, ManifestDeleted, ManifestPushed, TagMoved, UsageSampled
from registry_core.registry import Registry
from registry_core.store.metadata import now
from registry_core.store.usage_samples import UsageSample as UsageSample

log = logging.getLogger("edge_registry.usage")

SAMPLE_DEBOUNCE_SECONDS = 5.0


@dataclass(frozen=True)
class RepositoryUsage:
    name: str
    total_bytes: int
    exclusive_bytes: int
    shared_bytes: int
    tags: int
    manifests: int
    untagged_manifests: int
    untagged_bytes: int
    """Bytes of this repository's untagged manifests that no tagged manifest holds."""


@dataclass(frozen=True)
class UsageReport:
    taken_at: float
    capacity_bytes: int
    used_bytes: int
    free_bytes: int
    reserve_bytes: int
    quota_bytes: int
    low_space: bool
    low_space_refusals: int
    last_refusal_at: float | None
    uploads_in_progress: int
    uploads_bytes: int
    blobs: int
    manifests: int
    tags: int
    untagged_manifests: int
    untagged_bytes: int
    reclaimable_bytes: int
    reclaimable_blobs: int
    reclaimable_in_grace_bytes: int
    grace_period_seconds: float
    delete_untagged: bool
    repositories: list[RepositoryUsage] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def usage_report(registry: Registry) -> UsageReport:
    """The full report; one read snapshot of the database, a few set operations."""
    cfg = registry.config.gc
    t = now()
    store = registry.store
    with store.snapshot():
        totals = store.accounting.totals()
        repos = store.accounting.repository_sizes()
        untagged = store.reachability.untagged()
        reclaim = store.reachability.mark(
            delete_untagged=cfg.delete_untagged, cutoff=t - cfg.grace_period_seconds
        )
        refusals = store.meta.low_space_refusals()
    cap = registry.capacity()
    repositories = [
        RepositoryUsage(
            name=r.name,
            total_bytes=r.total_bytes,
            exclusive_bytes=r.exclusive_bytes,
            shared_bytes=r.total_bytes - r.exclusive_bytes,
            tags=r.tags,
            manifests=r.manifests,
            untagged_manifests=untagged.by_repository.get(r.id, (0, 0))[0],
            untagged_bytes=untagged.by_repository.get(r.id, (0, 0))[1],
        )
        for r in repos
        if r.manifests  # like the catalog: a repository with no manifests left is not listed
    ]
    return UsageReport(
        taken_at=t,
        capacity_bytes=cap.capacity_bytes,
        used_bytes=totals.blob_bytes,
        free_bytes=cap.free_bytes,
        reserve_bytes=cap.reserve_bytes,
        quota_bytes=cap.quota_bytes,
        low_space=cap.low,
        low_space_refusals=refusals[0],
        last_refusal_at=refusals[1],
        uploads_in_progress=totals.uploads,
        uploads_bytes=totals.upload_bytes,
        blobs=totals.blobs,
        manifests=totals.manifests,
        tags=totals.tags,
        untagged_manifests=untagged.manifests,
        untagged_bytes=untagged.bytes,
        reclaimable_bytes=reclaim.bytes_garbage,
        reclaimable_blobs=reclaim.blobs_garbage,
        reclaimable_in_grace_bytes=reclaim.bytes_kept_grace,
        grace_period_seconds=float(cfg.grace_period_seconds),
        delete_untagged=cfg.delete_untagged,
        repositories=repositories,
    )


# ---- samples -----------------------------------------------------------------------------------


def record_sample(registry: Registry, reason: str) -> UsageSample:
    """Store one point of the usage trend (after a push burst, a delete, a GC run)."""
    cfg = registry.config.gc
    t = now()
    store = registry.store
    with store.snapshot():
        used = store.accounting.stored_bytes(with_uploads=False)
        reclaim = store.reachability.mark(
            delete_untagged=cfg.delete_untagged, cutoff=t - cfg.grace_period_seconds
        )
    cap = registry.capacity()
    sample = UsageSample(t, reason, used, cap.capacity_bytes, cap.free_bytes,
                         reclaim.bytes_garbage)
    with store.exclusive():
        store.usage_samples.add(sample)
    registry.events.emit(UsageSampled(
        reason=reason, used_bytes=used, capacity_bytes=cap.capacity_bytes,
        free_bytes=cap.free_bytes, reclaimable_bytes=reclaim.bytes_garbage,
    ))
    return sample


def usage_history(registry: Registry, limit: int = 500) -> list[UsageSample]:
    """The last `limit` samples, oldest first (ready to draw)."""
    return registry.store.usage_samples.recent(limit)


class UsageSampler:
    """Debounced samples of pushes and deletes: the events within `delay` seconds of the first
    make one sample, taken on a timer thread, off the request path (until `close()`)."""

    def __init__(self, registry: Registry, delay: float = SAMPLE_DEBOUNCE_SECONDS) -> None:
        self.registry = registry
        self.delay = delay
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._reasons: set[str] = set()
        self._closed = False
        self._subscription = registry.events.subscribe(
            self._on_event, ManifestPushed, ManifestDeleted, TagMoved
        )

    def _on_event(self, event: Event) -> None:
        if isinstance(event, ManifestPushed):
            self.notify("push")
        elif isinstance(event, ManifestDeleted) or (
            isinstance(event, TagMoved) and event.digest is None
        ):
            self.notify("delete")  # a manifest, or a tag, went (a tag moved by a push: no)

    def notify(self, reason: str) -> None:
        with self._lock:
            if self._closed:
                return
            self._reasons.add(reason)
            if self._timer is None:
                self._timer = threading.Timer(self.delay, self._fire)
                self._timer.daemon = True
                self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            reasons, self._reasons = self._reasons, set()
            self._timer = None
        reason = "delete" if "delete" in reasons else (sorted(reasons) or ["push"])[0]
        try:
            record_sample(self.registry, reason)
        except (StoreError, StoreBusy, StorageFull):
            log.exception("could not record a usage sample")

    def close(self) -> None:
        self._subscription.close()
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
