"""The GC's cross-process run lock: one 'running' row in `gc_runs`, kept alive by a
heartbeat thread; a row whose heartbeat is stale belongs to a dead process and is failed.

The heartbeat thread is one per lock (and so one database connection), started with the
first run and stopped by `close()`.
"""

from __future__ import annotations

import logging
import threading
import time

from registry_core.errors import GCInProgressError, StorageFull, StoreBusy, StoreError
from registry_core.gc_run import PHASE_STARTING, Run
from registry_core.store import Store
from registry_core.store.gc_runs import COUNTERS, RunRecord
from registry_core.store.metadata import now

log = logging.getLogger("edge_registry.gc")

FINISH_ATTEMPTS = 5
CLOSE_WAIT = 10.0


class RunLock:
    """Acquire, keep alive and release the one GC run of a data dir."""

    def __init__(self, store: Store, owner: str, interval: float, stale: float) -> None:
        self.store = store
        self.owner = owner
        self.interval = interval
        self.stale = stale
        self.run: Run | None = None
        """The run this process holds, published by the heartbeat."""
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._stop = threading.Event()

    def acquire(self, trigger: str, dry_run: bool, du: bool, grace: float) -> RunRecord:
        """A new 'running' row; GCInProgressError if another live one exists."""
        runs = self.store.gc_runs
        with self.store.exclusive():
            t = now()  # inside the lock: runs' [started, finished] never overlap
            runs.fail_abandoned(t - self.stale)
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

    def hold(self, run: Run) -> None:
        """Publish `run` from now on (heartbeat, counters, cancels from other processes)."""
        self.run = run
        with self._thread_lock:
            if self._stop.is_set():
                return
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._beat, name="gc-heartbeat", daemon=True
                )
                self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            run = self.run
            if run is None:
                continue
            try:
                self.publish(run)
            except (StoreError, StoreBusy, StorageFull):
                log.exception("gc heartbeat failed")

    def publish(self, run: Run) -> None:
        """Refresh heartbeat and counters; pick up a cancel requested by another process."""
        with run.lock:
            values = [getattr(run.record, k) for k in COUNTERS]
            phase = run.record.phase
        with self.store.exclusive():
            self.store.gc_runs.heartbeat(run.record.id, now(), phase, values)
            cancel = self.store.gc_runs.cancel_requested(run.record.id)
        if cancel:
            run.cancel.set()

    def release(self, run: Run) -> None:
        """Write the run's final record (retried: a failed write would leave it 'running')."""
        self.run = None
        record = run.record
        record.details = run.details()
        values = [getattr(record, k) for k in COUNTERS]
        for attempt in range(FINISH_ATTEMPTS):
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
                if attempt == FINISH_ATTEMPTS - 1:
                    raise
                time.sleep(0.5)

    def close(self) -> None:
        """Stop the heartbeat thread (and wait for it, within bounds: a heartbeat stuck on a
        locked database must not hold up a shutdown)."""
        self._stop.set()
        with self._thread_lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.interval + CLOSE_WAIT)

    @property
    def heartbeat_alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()
