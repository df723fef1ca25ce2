"""A GC run as the rest of the code sees it: its record, and the state of the run in progress
in this process (counters, cancel flag, its events on the registry's stream)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from registry_core.events import EventBus, GCFinished, GCProgress, GCStarted
from registry_core.identity import Identity
from registry_core.store.gc_runs import RunRecord

log = logging.getLogger("edge_registry.gc")

PHASE_STARTING = "starting"
PHASE_MARK = "mark"
PHASE_MANIFESTS = "sweep manifests"
PHASE_BLOBS = "sweep blobs"
PHASE_UPLOADS = "purge uploads"
PHASE_DONE = "done"

DETAIL_LIMIT = 1000
"""At most this many deleted items are listed in a run record's details."""


class GCCancelled(Exception):
    """Raised inside a run when a cancel was requested; the run ends 'cancelled'."""


class Run:
    """State of a run in this process; its events go to `events` and name `who`, who started
    it (None, None: a preview, silent and unrecorded)."""

    def __init__(self, record: RunRecord, events: EventBus | None, who: Identity | None) -> None:
        self.record = record
        self.events = events
        self.who = who
        self.identity = None if who is None else who.name
        self.cancel = threading.Event()
        self.lock = threading.Lock()
        self.deleted_manifests: list[dict[str, str]] = []
        self.deleted_blobs: list[dict[str, Any]] = []
        self.purged_uploads: list[str] = []

    def emit(self, phase: str, done: int, total: int, message: str = "") -> None:
        if self.events is not None:
            self.events.emit(GCProgress(
                identity=self.identity, run_id=self.record.id, phase=phase, done=done,
                total=total, bytes_freed=self.record.bytes_freed, message=message,
            ))

    def started(self) -> None:
        record = self.record
        if self.events is not None:
            self.events.emit(GCStarted(
                identity=self.identity,
                run_id=record.id, phase=record.phase, trigger=record.trigger,
                dry_run=record.dry_run, delete_untagged=record.delete_untagged,
                grace_period_seconds=record.grace_period_seconds,
            ))

    def finished(self) -> None:
        record = self.record
        if self.events is not None:
            self.events.emit(GCFinished(
                identity=self.identity,
                run_id=record.id, phase=record.phase, done=1, total=1,
                bytes_freed=record.bytes_freed, message=self.summary(), status=record.status,
                trigger=record.trigger, dry_run=record.dry_run,
                manifests_deleted=record.manifests_deleted, blobs_deleted=record.blobs_deleted,
                uploads_purged=record.uploads_purged,
            ))

    def details(self) -> dict[str, Any]:
        """What the record lists of the deleted items (at most DETAIL_LIMIT of each kind)."""
        principal = {} if self.who is None else {
            "principal": self.who.name, "principal_kind": self.who.kind}
        return {
            **principal,
            "manifests": self.deleted_manifests[:DETAIL_LIMIT],
            "blobs": self.deleted_blobs[:DETAIL_LIMIT],
            "uploads": self.purged_uploads[:DETAIL_LIMIT],
            "truncated": max(
                len(self.deleted_manifests), len(self.deleted_blobs), len(self.purged_uploads)
            ) > DETAIL_LIMIT,
        }

    def log(self, message: str) -> None:
        log.info("gc run %s: %s", self.record.id, message)
        self.emit(self.record.phase, 0, 0, message)

    def phase(self, phase: str, total: int) -> None:
        with self.lock:
            self.record.phase = phase
        self.emit(phase, 0, total)

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise GCCancelled()

    def count(self, **increments: int) -> None:
        """Add to the record's counters (read by the heartbeat thread meanwhile)."""
        with self.lock:
            for name, value in increments.items():
                setattr(self.record, name, getattr(self.record, name) + value)

    def summary(self) -> str:
        record = self.record
        verb = "would free" if record.dry_run else "freed"
        return (
            f"{record.status}: {record.manifests_deleted} manifests and {record.blobs_deleted} "
            f"blobs {'to delete' if record.dry_run else 'deleted'}, {verb} "
            f"{record.bytes_freed} bytes; kept by the grace period: "
            f"{record.manifests_kept_grace} manifests, {record.blobs_kept_grace} blobs; "
            f"{record.uploads_purged} abandoned uploads purged"
        )
