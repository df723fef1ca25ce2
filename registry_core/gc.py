"""Online garbage collection: mark and sweep with a grace period, safe while pushes go on.

The mark (`store.reachability`) is shared by the GC, the delete preview and the usage report,
so the three can never disagree about what is garbage; its rule (store/graph.py): live
manifests are the closure of the roots over index -> child and subject -> referrer edges, both
within a repository. Roots are tagged manifests and, unless `delete_untagged`, every untagged
manifest that is not a referrer (pods may pull by digest); with a grace period, manifests
created after the cutoff too. Live blobs are the configs, layers and bodies of live manifests.

The sweep runs in small batches, each inside `BEGIN IMMEDIATE` (the database's single write
lock, which blob and manifest commits also take): inside the transaction it re-checks that a
manifest or blob is still unreferenced and older than the cutoff, deletes its rows and unlinks
its file before the commit. A push that references a blob therefore either commits before the
batch (and the re-check keeps the blob) or after it (and sees the blob gone, so it uploads it
again); it can never be acknowledged against a blob that is then removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from registry_core.errors import (
    GCInProgressError,
    RegistryError,
    StorageFull,
    StoreBusy,
    StoreError,
)
from registry_core.reference import parse_digest
from registry_core.registry import Registry
from registry_core.store.gc_runs import COUNTERS, StoredRun
from registry_core.store.metadata import now
from registry_core.store.reachability import DeadManifest
from registry_core.usage import record_sample

log = logging.getLogger("edge_registry.gc")

HEARTBEAT_INTERVAL = 2.0
"""How often a running GC refreshes `heartbeat_at` (and publishes its counters)."""
HEARTBEAT_STALE = 30.0
"""A 'running' row whose heartbeat is older than this belongs to a dead process."""
SWEEP_BATCH = 256
"""Blobs or manifests per write transaction: short, so pushes wait milliseconds at most."""
DETAIL_LIMIT = 1000
"""At most this many deleted items are listed in a run record's details."""

TRIGGERS = ("schedule", "manual", "cli")

PHASE_STARTING = "starting"
PHASE_MARK = "mark"
PHASE_MANIFESTS = "sweep manifests"
PHASE_BLOBS = "sweep blobs"
PHASE_UPLOADS = "purge uploads"
PHASE_DONE = "done"


# ---- run records and events ------------------------------------------------------------------


@dataclass
class RunRecord:
    """One GC run, as kept in the `gc_runs` table."""

    id: int
    trigger: str
    dry_run: bool
    delete_untagged: bool
    grace_period_seconds: float
    owner: str
    started_at: float
    finished_at: float | None
    heartbeat_at: float
    status: str
    phase: str
    cancel_requested: bool = False
    manifests_scanned: int = 0
    manifests_deleted: int = 0
    manifests_kept_grace: int = 0
    blobs_scanned: int = 0
    blobs_deleted: int = 0
    blobs_kept_grace: int = 0
    uploads_purged: int = 0
    bytes_freed: int = 0
    errors: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_seconds(self) -> float:
        end = self.finished_at if self.finished_at is not None else now()
        return max(0.0, end - self.started_at)

    @property
    def running(self) -> bool:
        return self.status == "running"

    def to_json(self, include_details: bool = True) -> dict[str, Any]:
        data = asdict(self)
        data["duration_seconds"] = round(self.duration_seconds, 3)
        if not include_details:
            data.pop("details")
        return data

    @classmethod
    def from_stored(cls, stored: StoredRun | None) -> RunRecord | None:
        return None if stored is None else cls(**asdict(stored))


@dataclass(frozen=True)
class GCEvent:
    """Live progress of a run: sent to `on_event` and to every subscriber."""

    run_id: int
    phase: str
    done: int
    total: int
    bytes_freed: int
    message: str = ""
    """A log line, when there is one to show."""
    status: str = "running"


class GCCancelled(Exception):
    """Raised inside a run when a cancel was requested; the run ends 'cancelled'."""


_COUNTERS = COUNTERS


class _Run:
    """State of the run in progress in this process."""

    def __init__(self, record: RunRecord, on_event: Callable[[GCEvent], None] | None) -> None:
        self.record = record
        self.on_event = on_event
        self.cancel = threading.Event()
        self.lock = threading.Lock()
        self.deleted_manifests: list[dict[str, str]] = []
        self.deleted_blobs: list[dict[str, Any]] = []
        self.purged_uploads: list[str] = []


# ---- the collector ---------------------------------------------------------------------------


class GarbageCollector:
    """Runs GC over one registry; one run at a time across every process on the data dir."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.store = registry.store
        self._subscribers: list[Callable[[GCEvent], None]] = []
        self._sub_lock = threading.Lock()
        self._run: _Run | None = None
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._heartbeat_thread: threading.Thread | None = None
        self.after_run: list[Callable[[RunRecord], None]] = []
        """Called after each finished run that deleted something (usage samples)."""

    # ---- public API --------------------------------------------------------------------------

    def run(
        self,
        trigger: str = "manual",
        dry_run: bool = False,
        delete_untagged: bool | None = None,
        grace_period: float | None = None,
        on_event: Callable[[GCEvent], None] | None = None,
    ) -> RunRecord:
        """One complete run; blocks until it ends. GCInProgressError if another one runs."""
        if trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}")
        cfg = self.registry.config.gc
        du = cfg.delete_untagged if delete_untagged is None else delete_untagged
        grace = float(cfg.grace_period_seconds if grace_period is None else grace_period)
        if grace < 0:
            raise ValueError("grace period must not be negative")
        self.registry.ballast.release_if_low()  # a full volume: room for the WAL
        record = self._acquire(trigger, dry_run, du, grace)
        run = _Run(record, on_event)
        self._run = run
        self._ensure_heartbeat()
        try:
            self._execute(run)
            record.status = "succeeded"
        except GCCancelled:
            record.status = "cancelled"
            self._log(run, "run cancelled; the store is consistent")
        except Exception as exc:  # recorded in the run record (status 'failed')
            record.status = "failed"
            record.errors.append(f"{type(exc).__name__}: {exc}")
            log.exception("gc run %s failed", record.id)
        finally:
            record.finished_at = now()
            record.phase = PHASE_DONE
            self._run = None
            self._finish(run)
            self._emit(run, PHASE_DONE, 1, 1, self._summary(record), status=record.status)
        if not record.dry_run and record.status != "failed":
            try:
                record_sample(self.registry, "gc")
            except (StoreError, StoreBusy, StorageFull):
                log.exception("could not record a usage sample after gc")
            self.registry.fill_ballast()
            for hook in list(self.after_run):
                try:
                    hook(record)
                except Exception:
                    log.exception("after-run hook failed")
        return record

    def cancel(self, run_id: int | None = None) -> bool:
        """Ask the running run (here or in another process) to stop; True if one was asked."""
        run = self._run
        if run is not None and (run_id is None or run.record.id == run_id):
            run.cancel.set()
        with self.store.exclusive():
            count = self.store.gc_runs.request_cancel(run_id)
        return count > 0 or run is not None

    def cancel_local(self) -> None:
        """Stop this process's run, if any (on shutdown); no database write."""
        run = self._run
        if run is not None:
            run.cancel.set()

    def current(self) -> RunRecord | None:
        """The run in progress, in this process or another one, or None."""
        run = self._run
        if run is not None:
            with run.lock:
                return RunRecord(**{**asdict(run.record)})
        return RunRecord.from_stored(self.store.gc_runs.running(now() - HEARTBEAT_STALE))

    def history(self, limit: int = 50) -> list[RunRecord]:
        return [RunRecord(**asdict(r)) for r in self.store.gc_runs.history(limit)]

    def get(self, run_id: int) -> RunRecord | None:
        return RunRecord.from_stored(self.store.gc_runs.get(run_id))

    def subscribe(self, callback: Callable[[GCEvent], None]) -> Callable[[], None]:
        """Receive every event of runs in this process; returns the unsubscribe function."""
        with self._sub_lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._sub_lock, contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    # ---- lock, heartbeat, record ---------------------------------------------------------------

    def _acquire(self, trigger: str, dry_run: bool, du: bool, grace: float) -> RunRecord:
        runs = self.store.gc_runs
        with self.store.exclusive():
            t = now()  # inside the lock: runs' [started, finished] never overlap
            runs.fail_abandoned(t - HEARTBEAT_STALE)
            other = runs.running()
            if other is not None:
                raise GCInProgressError(
                    f"a garbage collection is in progress (run {other.id}, "
                    f"{other.trigger}, started {time.ctime(other.started_at)} "
                    f"by {other.owner})"
                )
            run_id = runs.start(trigger, dry_run, du, grace, self.owner, t, PHASE_STARTING)
        return RunRecord(
            id=run_id, trigger=trigger, dry_run=dry_run, delete_untagged=du,
            grace_period_seconds=grace, owner=self.owner, started_at=t, finished_at=None,
            heartbeat_at=t, status="running", phase=PHASE_STARTING,
        )

    def _ensure_heartbeat(self) -> None:
        # One long-lived thread (and so one database connection) per collector.
        with self._sub_lock:
            if self._heartbeat_thread is None or not self._heartbeat_thread.is_alive():
                self._heartbeat_thread = threading.Thread(
                    target=self._heartbeat, name="gc-heartbeat", daemon=True
                )
                self._heartbeat_thread.start()

    def _heartbeat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_INTERVAL)
            run = self._run
            if run is None:
                continue
            try:
                self._publish(run)
            except (StoreError, StoreBusy, StorageFull):
                log.exception("gc heartbeat failed")

    def _publish(self, run: _Run) -> None:
        """Refresh heartbeat and counters; pick up a cancel requested by another process."""
        with run.lock:
            values = [getattr(run.record, k) for k in _COUNTERS]
            phase = run.record.phase
        with self.store.exclusive():
            self.store.gc_runs.heartbeat(run.record.id, now(), phase, values)
            cancel = self.store.gc_runs.cancel_requested(run.record.id)
        if cancel:
            run.cancel.set()

    def _finish(self, run: _Run) -> None:
        record = run.record
        record.details = {
            "manifests": run.deleted_manifests[:DETAIL_LIMIT],
            "blobs": run.deleted_blobs[:DETAIL_LIMIT],
            "uploads": run.purged_uploads[:DETAIL_LIMIT],
            "truncated": max(
                len(run.deleted_manifests), len(run.deleted_blobs), len(run.purged_uploads)
            ) > DETAIL_LIMIT,
        }
        values = [getattr(record, k) for k in _COUNTERS]
        for attempt in range(5):
            try:
                with self.store.exclusive():
                    record.cancel_requested = (
                        self.store.gc_runs.cancel_requested(record.id) or run.cancel.is_set()
                    )
                    self.store.gc_runs.finish(
                        record.id, record.status, record.phase, record.finished_at or now(),
                        record.errors, record.details, values,
                    )
                return
            except (StoreError, StoreBusy, StorageFull):
                if attempt == 4:
                    raise
                time.sleep(0.5)

    # ---- events --------------------------------------------------------------------------------

    def _emit(
        self, run: _Run, phase: str, done: int, total: int, message: str = "",
        status: str = "running",
    ) -> None:
        event = GCEvent(run.record.id, phase, done, total, run.record.bytes_freed, message, status)
        targets: list[Callable[[GCEvent], None]] = []
        if run.on_event is not None:
            targets.append(run.on_event)
        with self._sub_lock:
            targets.extend(self._subscribers)
        for callback in targets:
            try:
                callback(event)
            except Exception:
                log.exception("gc event callback failed")

    def _log(self, run: _Run, message: str) -> None:
        log.info("gc run %s: %s", run.record.id, message)
        self._emit(run, run.record.phase, 0, 0, message)

    def _phase(self, run: _Run, phase: str, total: int) -> None:
        with run.lock:
            run.record.phase = phase
        self._emit(run, phase, 0, total)

    def _check_cancel(self, run: _Run) -> None:
        if run.cancel.is_set():
            raise GCCancelled()

    @staticmethod
    def _summary(record: RunRecord) -> str:
        verb = "would free" if record.dry_run else "freed"
        return (
            f"{record.status}: {record.manifests_deleted} manifests and {record.blobs_deleted} "
            f"blobs {'to delete' if record.dry_run else 'deleted'}, {verb} "
            f"{record.bytes_freed} bytes; kept by the grace period: "
            f"{record.manifests_kept_grace} manifests, {record.blobs_kept_grace} blobs; "
            f"{record.uploads_purged} abandoned uploads purged"
        )

    # ---- the run itself ------------------------------------------------------------------------

    def _execute(self, run: _Run) -> None:
        record = run.record
        cutoff = record.started_at - record.grace_period_seconds
        reach = self.store.reachability
        self._log(
            run,
            f"run {record.id} ({record.trigger}{', dry run' if record.dry_run else ''}): "
            f"grace period {record.grace_period_seconds:g} s, delete untagged "
            f"{'on' if record.delete_untagged else 'off'}",
        )
        # Mark in one read snapshot; the sweep re-checks everything under the write lock.
        self._phase(run, PHASE_MARK, 1)
        with self.store.snapshot():
            result = reach.mark(delete_untagged=record.delete_untagged, cutoff=cutoff)
            dead = reach.dead_manifests()
            garbage = list(reach.garbage(collectable_only=True).items())
        with run.lock:
            record.manifests_scanned = result.manifests_total
            record.blobs_scanned = result.blobs_total
            record.manifests_kept_grace = result.manifests_kept_grace
            record.blobs_kept_grace = result.blobs_kept_grace
        self._emit(run, PHASE_MARK, 1, 1)
        self._log(
            run,
            f"marked {result.manifests_total} manifests and {result.blobs_total} blobs: "
            f"{len(dead)} manifests and {len(garbage)} blobs ({result.bytes_collectable} bytes) "
            "are garbage",
        )
        self._check_cancel(run)
        self._sweep_manifests(run, dead, cutoff)
        self._sweep_blobs(run, garbage, cutoff)
        self._purge_orphan_blobs(run, cutoff)
        self._purge_uploads(run)

    def _sweep_manifests(self, run: _Run, dead: list[DeadManifest], cutoff: float) -> None:
        record = run.record
        self._phase(run, PHASE_MANIFESTS, len(dead))
        if record.dry_run:
            with run.lock:
                record.manifests_deleted = len(dead)
            run.deleted_manifests = [{"repository": m.repository, "digest": m.digest} for m in dead]
            self._emit(run, PHASE_MANIFESTS, len(dead), len(dead))
            return
        pending = dead
        done = 0
        # Parents before children, subjects before referrers: a manifest still held by an
        # existing index or subject waits for the next pass (or stays, if that one is kept).
        while pending:
            deferred: list[DeadManifest] = []
            progressed = False
            for batch in _chunks(pending, SWEEP_BATCH):
                self._check_cancel(run)
                with self.store.exclusive():
                    for item in batch:
                        verdict = self.store.reachability.verdict(
                            item.id, delete_untagged=record.delete_untagged, cutoff=cutoff
                        )
                        if verdict == "blocked":
                            deferred.append(item)
                            continue
                        done += 1
                        if verdict == "delete":
                            self.store.manifests.delete(item.id)
                            progressed = True
                            run.deleted_manifests.append(
                                {"repository": item.repository, "digest": item.digest}
                            )
                            with run.lock:
                                record.manifests_deleted += 1
                self._emit(run, PHASE_MANIFESTS, done, len(dead))
            if not progressed:
                break
            pending = deferred
        if record.manifests_deleted:
            self._log(run, f"deleted {record.manifests_deleted} manifests")

    def _sweep_blobs(self, run: _Run, garbage: list[tuple[str, int]], cutoff: float) -> None:
        record = run.record
        self._phase(run, PHASE_BLOBS, len(garbage))
        if record.dry_run:
            with run.lock:
                record.blobs_deleted = len(garbage)
                record.bytes_freed = sum(size for _, size in garbage)
            run.deleted_blobs = [{"digest": d, "size": s} for d, s in garbage]
            self._emit(run, PHASE_BLOBS, len(garbage), len(garbage))
            return
        files = self.registry.files
        done = 0
        for batch in _chunks(garbage, SWEEP_BATCH):
            self._check_cancel(run)
            with self.store.exclusive():
                for digest, _size in batch:
                    done += 1
                    size = self.store.reachability.collectable_blob(digest, cutoff)
                    if size is None:
                        continue  # referenced or touched since the mark: keep it
                    try:
                        files.remove(parse_digest(digest))
                    except OSError as exc:
                        record.errors.append(f"could not remove {digest}: {exc}")
                        continue
                    self.store.blobs.delete(digest)
                    run.deleted_blobs.append({"digest": digest, "size": size})
                    with run.lock:
                        record.blobs_deleted += 1
                        record.bytes_freed += size
            self._emit(run, PHASE_BLOBS, done, len(garbage))
        self.registry._used_cache = (0.0, 0)
        if record.blobs_deleted:
            self._log(
                run, f"deleted {record.blobs_deleted} blobs, {record.bytes_freed} bytes freed"
            )

    def _purge_orphan_blobs(self, run: _Run, cutoff: float) -> None:
        """Blob files with no row, older than the cutoff: left by a power cut or a full volume
        between the rename that put them in place and the commit that would have recorded
        them. Re-checked under the write lock, which that rename and commit also hold."""
        record = run.record
        files = self.registry.files
        known = self.store.blobs.digests()
        orphans: list[tuple[str, Any, int]] = []
        for path in files.blobs_root.glob("*/*/*"):
            try:
                digest = str(parse_digest(f"{path.parent.parent.name}:{path.name}"))
                st = path.stat()
            except (RegistryError, OSError):
                continue  # not a blob file of ours: leave it alone
            if digest not in known and st.st_mtime < cutoff:
                orphans.append((digest, path, st.st_size))
        for batch in _chunks(orphans, SWEEP_BATCH):
            self._check_cancel(run)
            with self.store.exclusive():
                for digest, path, size in batch:
                    if self.store.blobs.exists(digest):
                        continue
                    if not record.dry_run:
                        with contextlib.suppress(FileNotFoundError):
                            path.unlink()
                    run.deleted_blobs.append({"digest": digest, "size": size, "orphan": True})
                    with run.lock:
                        record.blobs_deleted += 1
                        record.bytes_freed += size
        if orphans:
            self._log(run, f"{len(orphans)} blob files without a record (orphans) removed")

    def _purge_uploads(self, run: _Run) -> None:
        record = run.record
        max_age = self.registry.config.gc.upload_max_age_seconds
        limit = record.started_at - max_age
        uploads = self.store.uploads
        stale = uploads.stale(limit)
        self._phase(run, PHASE_UPLOADS, len(stale))
        if record.dry_run:
            with run.lock:
                record.uploads_purged = len(stale)
            run.purged_uploads = stale
            return
        files = self.registry.files
        for batch in _chunks(stale, SWEEP_BATCH):
            self._check_cancel(run)
            with self.store.exclusive():
                for upload_id in batch:
                    if uploads.delete_if_stale(upload_id, limit):
                        files.remove_upload(upload_id)
                        run.purged_uploads.append(upload_id)
                        with run.lock:
                            record.uploads_purged += 1
        # Files in uploads/ with no session row (a crash between file and row) and old.
        known = uploads.ids()
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(files.uploads_root):
                with contextlib.suppress(OSError):
                    if entry.name in known or entry.stat().st_mtime >= limit:
                        continue
                    with self.store.exclusive():
                        if not uploads.exists(entry.name):
                            os.unlink(entry.path)
                            with run.lock:
                                record.uploads_purged += 1
        if record.uploads_purged:
            self._log(run, f"purged {record.uploads_purged} abandoned uploads")


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
