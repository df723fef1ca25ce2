"""Online garbage collection: mark and sweep with a grace period, safe while pushes go on.

The mark (`store.reachability`) is shared by the GC, the delete preview and the usage report,
so the three can never disagree about what is garbage; its rule (store/graph.py): live
manifests are the closure of the roots over index -> child and subject -> referrer edges, both
within a repository. Roots are tagged manifests and, unless `delete_untagged`, every untagged
manifest that is not a referrer (pods may pull by digest); with a grace period, manifests
created after the cutoff too. Live blobs are the configs, layers and bodies of live manifests.

The sweep (gc_sweep.py) runs in small batches, each inside `BEGIN IMMEDIATE` (the database's
single write lock, which blob and manifest commits also take): inside the transaction it
re-checks that a manifest or blob is still unreferenced and older than the cutoff and deletes
its rows, listing a blob's content in `pending_deletes`; the content goes after that commit,
re-checked under the write lock (a crash in between: the next open finishes the list). A push
that references a blob therefore either commits before the batch (and the re-check keeps the
blob) or after it (and sees the blob gone, so it uploads it again); it can never be
acknowledged against a blob that is then removed. One run at a time across processes: gc_lock.py.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict

from registry_core.errors import StorageFull, StoreBusy, StoreError
from registry_core.events import GCEvent, GCFinished, GCProgress, GCStarted
from registry_core.gc_lock import RunLock
from registry_core.gc_run import (
    DETAIL_LIMIT,
    PHASE_BLOBS,
    PHASE_DONE,
    PHASE_MANIFESTS,
    PHASE_MARK,
    PHASE_STARTING,
    PHASE_UPLOADS,
    GCCancelled,
    Run,
)
from registry_core.gc_sweep import Sweeper
from registry_core.identity import GC, Identity
from registry_core.registry import Registry
from registry_core.store.gc_runs import RunRecord
from registry_core.store.metadata import now
from registry_core.usage import record_sample

__all__ = [
    "DETAIL_LIMIT", "PHASE_BLOBS", "PHASE_DONE", "PHASE_MANIFESTS", "PHASE_MARK",
    "PHASE_STARTING", "PHASE_UPLOADS", "GCCancelled", "GCEvent", "GCFinished", "GCProgress",
    "GCStarted", "GarbageCollector", "RunRecord",
]

log = logging.getLogger("edge_registry.gc")

HEARTBEAT_INTERVAL = 2.0
"""How often a running GC refreshes `heartbeat_at` (and publishes its counters)."""
HEARTBEAT_STALE = 30.0
"""A 'running' row whose heartbeat is older than this belongs to a dead process."""
SWEEP_BATCH = 256
"""Blobs or manifests per write transaction: short, so pushes wait milliseconds at most."""

TRIGGERS = ("schedule", "manual", "cli")


class GarbageCollector:
    """Runs GC over one registry; one run at a time across every process on the data dir."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.store = registry.store
        self.events = registry.events
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._run: Run | None = None
        self._previews: set[Run] = set()
        self._previews_lock = threading.Lock()
        self.lock = RunLock(self.store, self.owner, HEARTBEAT_INTERVAL, HEARTBEAT_STALE)
        self.sweeper = Sweeper(self.store, registry.blobs, registry.config, SWEEP_BATCH)

    def run(
        self,
        trigger: str = "manual",
        dry_run: bool = False,
        delete_untagged: bool | None = None,
        grace_period: float | None = None,
        on_event: Callable[[GCEvent], None] | None = None,
        *,
        who: Identity = GC,
    ) -> RunRecord:
        """One complete run; blocks until it ends. GCInProgressError if another one runs.

        `who` started it (the console and CLI: CONSOLE; the schedule: GC): its events, its
        audit row and its record's details name it. Its events (GCStarted, GCProgress,
        GCFinished) go to the registry's stream; `on_event` is a subscription to this run's
        events only, for as long as the run lasts."""
        if trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}")
        du, grace = self._options(delete_untagged, grace_period)
        self.registry.ballast.release_if_low()  # a full volume: room for the WAL
        record = self.lock.acquire(trigger, dry_run, du, grace)
        watch = None if on_event is None else self.events.subscribe(
            _this_run(record.id, on_event), GCEvent
        )
        run = Run(record, self.events, who)
        self._run = run
        self.lock.hold(run)
        try:
            run.started()
            self.sweeper.sweep(run)
            record.status = "succeeded"
        except GCCancelled:
            record.status = "cancelled"
            run.log("run cancelled; the store is consistent")
        except Exception as exc:  # recorded in the run record (status 'failed')
            record.status = "failed"
            record.errors.append(f"{type(exc).__name__}: {exc}")
            log.exception("gc run %s failed", record.id)
        finally:
            self.registry.forget_used_bytes()
            record.finished_at = now()
            record.phase = PHASE_DONE
            self._run = None
            self.lock.release(run, lambda: self._audit(record, who))
            run.finished()
            if watch is not None:
                watch.close()
        if not record.dry_run and record.status != "failed":
            try:
                record_sample(self.registry, "gc")
            except (StoreError, StoreBusy, StorageFull):
                log.exception("could not record a usage sample after gc")
            self.registry.fill_ballast()
        try:
            self.registry.audit.prune()  # bounded by age even when little else is recorded
        except (StoreError, StoreBusy, StorageFull):
            log.exception("could not prune the audit log after gc")
        return record

    def _audit(self, record: RunRecord, who: Identity) -> None:
        """The run's audit row, written with its final record."""
        self.registry.audit.record(
            who, "gc.run", result="ok" if record.status == "succeeded" else "failed",
            reference=str(record.id),
            detail={"status": record.status, "trigger": record.trigger,
                    "dry_run": record.dry_run, "bytes_freed": record.bytes_freed,
                    "manifests_deleted": record.manifests_deleted,
                    "blobs_deleted": record.blobs_deleted, "errors": record.errors[:5]})

    def preview(
        self, delete_untagged: bool | None = None, grace_period: float | None = None
    ) -> RunRecord:
        """What a run with these options would delete now: a dry run that records no run
        (its id is 0), sends no events and does not wait for a run in progress.
        `cancel_local` stops it (GCCancelled)."""
        du, grace = self._options(delete_untagged, grace_period)
        t = now()
        record = RunRecord(
            id=0, trigger="manual", dry_run=True, delete_untagged=du,
            grace_period_seconds=grace, owner=self.owner, started_at=t, finished_at=None,
            heartbeat_at=t, status="running", phase=PHASE_STARTING,
        )
        run = Run(record, None, None)
        with self._previews_lock:
            self._previews.add(run)
        try:
            self.sweeper.sweep(run)
        finally:
            with self._previews_lock:
                self._previews.discard(run)
        record.status, record.phase, record.finished_at = "succeeded", PHASE_DONE, now()
        record.details = run.details()
        return record

    def _options(
        self, delete_untagged: bool | None, grace_period: float | None
    ) -> tuple[bool, float]:
        cfg = self.registry.config.gc
        du = cfg.delete_untagged if delete_untagged is None else delete_untagged
        grace = float(cfg.grace_period_seconds if grace_period is None else grace_period)
        if grace < 0:
            raise ValueError("grace period must not be negative")
        return du, grace

    def cancel(self, run_id: int | None = None) -> bool:
        """Ask the running run (here or in another process) to stop; True if one was asked."""
        run = self._run
        if run is not None and (run_id is None or run.record.id == run_id):
            run.cancel.set()
        with self.store.exclusive():
            count = self.store.gc_runs.request_cancel(run_id)
        return count > 0 or run is not None

    def cancel_local(self) -> None:
        """Stop this process's run and previews, if any (on shutdown); no database write."""
        with self._previews_lock:
            runs = [self._run, *self._previews]
        for run in runs:
            if run is not None:
                run.cancel.set()

    def close(self) -> None:
        """Cancel this process's run, if any, and stop the heartbeat thread."""
        self.cancel_local()
        self.lock.close()

    def current(self) -> RunRecord | None:
        """The run in progress, in this process or another one, or None."""
        run = self._run
        if run is not None:
            with run.lock:
                return RunRecord(**asdict(run.record))  # a deep copy: the run goes on
        return self.store.gc_runs.running(now() - HEARTBEAT_STALE)

    def history(self, limit: int = 50) -> list[RunRecord]:
        return self.store.gc_runs.history(limit)

    def get(self, run_id: int) -> RunRecord | None:
        return self.store.gc_runs.get(run_id)



def _this_run(run_id: int, callback: Callable[[GCEvent], None]) -> Callable[[GCEvent], None]:
    def deliver(event: GCEvent) -> None:
        if event.run_id == run_id:
            callback(event)

    return deliver
