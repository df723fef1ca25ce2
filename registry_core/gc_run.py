"""A GC run as the rest of the code sees it: its record, its live events, and the state of
the run in progress in this process (counters, cancel flag, event delivery)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from registry_core.store.gc_runs import StoredRun
from registry_core.store.metadata import now

log = logging.getLogger("edge_registry.gc")

PHASE_STARTING = "starting"
PHASE_MARK = "mark"
PHASE_MANIFESTS = "sweep manifests"
PHASE_BLOBS = "sweep blobs"
PHASE_UPLOADS = "purge uploads"
PHASE_DONE = "done"

DETAIL_LIMIT = 1000
"""At most this many deleted items are listed in a run record's details."""


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


EventSink = Callable[[GCEvent], None]


class Run:
    """State of the run in progress in this process; `listeners` gives the subscribers."""

    def __init__(
        self,
        record: RunRecord,
        on_event: EventSink | None,
        listeners: Callable[[], list[EventSink]] = list,
    ) -> None:
        self.record = record
        self.on_event = on_event
        self.listeners = listeners
        self.cancel = threading.Event()
        self.lock = threading.Lock()
        self.deleted_manifests: list[dict[str, str]] = []
        self.deleted_blobs: list[dict[str, Any]] = []
        self.purged_uploads: list[str] = []

    def emit(
        self, phase: str, done: int, total: int, message: str = "", status: str = "running"
    ) -> None:
        event = GCEvent(self.record.id, phase, done, total, self.record.bytes_freed, message,
                        status)
        targets = [] if self.on_event is None else [self.on_event]
        for callback in targets + self.listeners():
            try:
                callback(event)
            except Exception:
                log.exception("gc event callback failed")

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
