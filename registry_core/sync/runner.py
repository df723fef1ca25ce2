"""A sync run: one pass (engine.py) under the data dir's one-run-at-a-time claim, recorded in
`sync_runs` like GC runs, with progress on the event stream and a cancel that works across
processes (another process asks through the run's row; the heartbeat picks it up)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from registry_core.errors import EdgeError, SyncInProgressError
from registry_core.events import SyncFinished, SyncProgress, SyncStarted
from registry_core.gc_lock import RunClaim
from registry_core.identity import SYNC
from registry_core.registry import Registry
from registry_core.store.full import is_disk_full
from registry_core.store.sync_runs import SyncRunRecord
from registry_core.sync.client import ParentClient
from registry_core.sync.engine import Parent, PassReport, Scope, SyncPass
from registry_core.sync.errors import ParentError, ParentUnreachable
from registry_core.sync.progress import to_details
from registry_core.sync.settings import SyncSettings, load_settings

log = logging.getLogger("edge_registry.sync")

HEARTBEAT_INTERVAL = 2.0
HEARTBEAT_STALE = 30.0
"""A running row whose heartbeat is older than this belongs to a dead process."""
PROGRESS_INTERVAL = 0.25
"""Least time between two SyncProgress events for tags and bytes (a repository that begins or
ends is always told)."""


class SyncRunner:
    """Runs sync passes for one registry; one at a time across processes."""

    def __init__(
        self, registry: Registry, connect: Callable[[], Parent], scope: Scope, *,
        parallel: int = 4, clock: Callable[[], float] = time.time, read_write: bool = False,
    ) -> None:
        self.read_write = read_write
        self.registry = registry
        self.store = registry.store
        self.connect = connect
        self.scope = scope
        self.parallel = parallel
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.claim = RunClaim(self.store, self.store.sync_runs, HEARTBEAT_INTERVAL,
                              HEARTBEAT_STALE, "sync-heartbeat")
        self.cancel = threading.Event()
        self._progress_lock = threading.Lock()
        self._progress_at = 0.0

    def run(
        self, trigger: str = "manual", until: float | None = None,
        only: list[tuple[str, str]] | None = None,
        on_tag: Callable[[str, str, str | None, str], None] | None = None,
        on_begin: Callable[[str, str], None] | None = None,
    ) -> SyncRunRecord:
        """One pass; blocks until it ends. `until`: the window's end (the pass stops at a blob
        boundary then, status 'stopped'). `only`: just these (repository, tag), whatever the
        scope, each reported to `on_begin` as it starts and to `on_tag` as it ends
        (staging). SyncInProgressError if another run is
        under way."""
        self.cancel.clear()
        record = self.claim.claim(
            lambda t: self.store.sync_runs.create(trigger, self.owner, at=t), _in_progress
        )
        self._emit(SyncStarted, record, None, trigger=trigger)
        sync_pass: SyncPass | None = None
        parent: Parent | None = None
        try:
            parent = self.connect()
            parent.referrers_api = self._referrers_api()
            sync_pass = SyncPass(
                self.registry, parent, self.scope, parallel=self.parallel,
                should_stop=lambda: self._should_stop(until), read_write=self.read_write,
                progress=lambda urgent: self._progress(record, sync_pass, urgent),
            )
            self.claim.beat(lambda: self._publish(record, sync_pass))
            if only is None:
                report = sync_pass.run()
            else:
                report = sync_pass.run_tags(only, on_tag or (lambda *_: None), on_begin)
            self._fill(record, report)
        except (EdgeError, OSError) as exc:
            self._failed(record, sync_pass, exc)
        finally:
            if sync_pass is not None:
                record.details["repositories"] = to_details(sync_pass.repositories.snapshot())
            if parent is not None:
                if parent.referrers_api is not None:
                    record.details["referrers_api"] = parent.referrers_api
                parent.close()
            record.finished_at = self.clock()
            if record.status == "running":
                record.status = "failed"
            self.claim.finish(lambda: self._save(record, trigger))
            self._emit(SyncFinished, record, None, status=record.status,
                       errors=tuple(record.errors))
        return record

    def close(self) -> None:
        self.claim.close()

    def _save(self, record: SyncRunRecord, trigger: str) -> None:
        """The final record and its audit row, in one transaction."""
        self.store.sync_runs.save(record)
        self.registry.audit.record(
            SYNC, "sync.run", reference=str(record.id),
            result="ok" if record.status in ("succeeded", "stopped") else "failed",
            detail={"status": record.status, "trigger": trigger,
                    "manifests_copied": record.manifests_copied,
                    "blobs_copied": record.blobs_copied, "bytes_copied": record.bytes_copied,
                    "manifests_pushed": record.manifests_pushed, "errors": record.errors[:5]})

    def _failed(self, record: SyncRunRecord, sync_pass: SyncPass | None,
                exc: EdgeError | OSError) -> None:
        """The run ended early: why, in one line, and whether the parent was reached."""
        record.status = "failed"
        record.errors.append(str(exc) if isinstance(exc, EdgeError) else disk_error(exc))
        answered = isinstance(exc, ParentError) and not isinstance(exc, ParentUnreachable)
        if sync_pass is not None:
            self._fill_counts(record, sync_pass.report)
            answered = answered or sync_pass.report.parent_answered
        record.details["parent_reachable"] = answered
        if isinstance(exc, OSError):
            log.error("sync run %s: %s", record.id, record.errors[-1])

    def _referrers_api(self) -> bool | None:
        """What the last run learned of the parent's referrers API (None: nothing)."""
        with self.store.snapshot():
            runs = self.store.sync_runs.recent(10)
        for run in runs:
            known = run.details.get("referrers_api")
            if isinstance(known, bool):
                return known
        return None

    def _should_stop(self, until: float | None) -> bool:
        return self.cancel.is_set() or (until is not None and self.clock() >= until)

    def _publish(self, record: SyncRunRecord, sync_pass: SyncPass) -> None:
        """Heartbeat with the counters so far; a cancel asked by another process."""
        self._fill_counts(record, sync_pass.report)
        record.details["repositories"] = to_details(sync_pass.repositories.snapshot())
        with self.store.exclusive():
            self.store.sync_runs.save(record)
            cancel = self.store.sync_runs.cancel_requested(record.id)
        if cancel:
            self.cancel.set()
        self._emit_progress(record, sync_pass)

    def _progress(self, record: SyncRunRecord, sync_pass: SyncPass | None,
                  urgent: bool) -> None:
        """The pass's figures changed: an event now if urgent, else a few a second at most;
        nothing at all when no one listens."""
        if sync_pass is None or not self.registry.events.subscribers:
            return
        now = time.monotonic()
        with self._progress_lock:
            if not urgent and now - self._progress_at < PROGRESS_INTERVAL:
                return
            self._progress_at = now
        self._emit_progress(record, sync_pass)

    def _emit_progress(self, record: SyncRunRecord, sync_pass: SyncPass) -> None:
        self._emit(SyncProgress, record, sync_pass.report,
                   repository=sync_pass.repositories.current,
                   repositories=sync_pass.repositories.snapshot())

    def _fill(self, record: SyncRunRecord, report: PassReport) -> None:
        self._fill_counts(record, report)
        # Errors on some tags with the parent answering stay Online; no answer at all is
        # Offline (status.py).
        record.details["parent_reachable"] = report.parent_reachable
        record.errors.extend(report.errors)
        if report.stopped:
            record.status = "cancelled" if self.cancel.is_set() else "stopped"
        else:
            record.status = "failed" if report.errors else "succeeded"

    @staticmethod
    def _fill_counts(record: SyncRunRecord, report: PassReport) -> None:
        record.repositories = report.repositories
        record.manifests_copied = report.manifests_copied
        record.blobs_copied = report.blobs_copied
        record.bytes_copied = report.bytes_copied
        record.manifests_pushed = report.manifests_pushed
        record.conflicts = list(report.conflicts)
        record.details.update(tags_checked=report.tags_checked,
                              tags_changed=report.tags_changed,
                              blobs_uploaded=report.blobs_uploaded,
                              bytes_uploaded=report.bytes_uploaded,
                              blobs_mounted=report.blobs_mounted)

    def _emit(self, kind: type, record: SyncRunRecord, report: PassReport | None,
              **extra: object) -> None:
        counts = {} if report is None else {
            "tags_checked": report.tags_checked, "tags_changed": report.tags_changed,
            "manifests_copied": report.manifests_copied, "blobs_copied": report.blobs_copied,
            "bytes_copied": report.bytes_copied,
        }
        self.registry.events.emit(kind(identity="sync", run_id=record.id, **counts, **extra))


def open_runner(registry: Registry, settings: SyncSettings | None = None) -> SyncRunner:
    """The runner for the data dir's configured connection (SyncNotConfigured if none)."""
    chosen = settings or load_settings(registry.datadir, registry.config)
    connection = chosen.connection

    def connect() -> ParentClient:
        return ParentClient(connection.parent_endpoint, connection.token_name,
                            connection.token_password, ca_file=chosen.parent_ca,
                            protocol=connection.protocol)

    return SyncRunner(registry, connect, chosen.scope, parallel=chosen.parallel_transfers,
                      read_write=chosen.read_write)


def disk_error(exc: OSError) -> str:
    """One line for a disk error: what the OS said, and where."""
    where = f": {exc.filename}" if exc.filename else ""
    line = f"disk: {exc.strerror or exc}{where}"
    if is_disk_full(exc):
        line += "; delete unused images and run a garbage collection to make room"
    return line


def _in_progress(other: SyncRunRecord) -> SyncInProgressError:
    return SyncInProgressError(
        f"a sync is under way (run {other.id}, {other.trigger}, started "
        f"{time.ctime(other.started_at)} by {other.owner})"
    )
