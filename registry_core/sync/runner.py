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
from registry_core.store.sync_runs import SyncRunRecord
from registry_core.sync.client import ParentClient
from registry_core.sync.engine import Parent, PassReport, Scope, SyncPass
from registry_core.sync.settings import SyncSettings, load_settings

log = logging.getLogger("edge_registry.sync")

HEARTBEAT_INTERVAL = 2.0
HEARTBEAT_STALE = 30.0
"""A running row whose heartbeat is older than this belongs to a dead process."""


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

    def run(
        self, trigger: str = "manual", until: float | None = None,
        only: list[tuple[str, str]] | None = None,
        on_tag: Callable[[str, str, str | None, str], None] | None = None,
    ) -> SyncRunRecord:
        """One pass; blocks until it ends. `until`: the window's end (the pass stops at a blob
        boundary then, status 'stopped'). `only`: just these (repository, tag), whatever the
        scope, each reported to `on_tag` (staging). SyncInProgressError if another run is
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
            sync_pass = SyncPass(
                self.registry, parent, self.scope, parallel=self.parallel,
                should_stop=lambda: self._should_stop(until), read_write=self.read_write,
            )
            self.claim.beat(lambda: self._publish(record, sync_pass))
            if only is None:
                report = sync_pass.run()
            else:
                report = sync_pass.run_tags(only, on_tag or (lambda *_: None))
            record.details["parent_reachable"] = True  # it answered; some tags may have failed
            self._fill(record, report)
        except EdgeError as exc:
            record.status = "failed"
            record.errors.append(str(exc))
            if sync_pass is not None:
                self._fill_counts(record, sync_pass.report)
        finally:
            if parent is not None:
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

    def _should_stop(self, until: float | None) -> bool:
        return self.cancel.is_set() or (until is not None and self.clock() >= until)

    def _publish(self, record: SyncRunRecord, sync_pass: SyncPass) -> None:
        """Heartbeat with the counters so far; a cancel asked by another process."""
        self._fill_counts(record, sync_pass.report)
        with self.store.exclusive():
            self.store.sync_runs.save(record)
            cancel = self.store.sync_runs.cancel_requested(record.id)
        if cancel:
            self.cancel.set()
        self._emit(SyncProgress, record, sync_pass.report)

    def _fill(self, record: SyncRunRecord, report: PassReport) -> None:
        self._fill_counts(record, report)
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

    scope = Scope(chosen.repositories, chosen.tag_filters)
    return SyncRunner(registry, connect, scope, parallel=chosen.parallel_transfers,
                      read_write=chosen.read_write)


def _in_progress(other: SyncRunRecord) -> SyncInProgressError:
    return SyncInProgressError(
        f"a sync is under way (run {other.id}, {other.trigger}, started "
        f"{time.ctime(other.started_at)} by {other.owner})"
    )
