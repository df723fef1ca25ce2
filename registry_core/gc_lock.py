"""Cross-process run claims: one 'running' row at a time in a run table (`gc_runs`,
`sync_runs`), kept alive by a heartbeat thread; a row whose heartbeat is stale belongs to a
dead process and is failed, and the claim is taken over.

`RunClaim` is the claim and heartbeat for any run table; `RunLock` is the GC's use of it
(counters, phase and cancel requests published on each beat). The heartbeat thread is one
per claim (and so one database connection), started with the first run and stopped by
`close()`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from registry_core.errors import GCInProgressError, StorageFull, StoreBusy, StoreError
from registry_core.gc_run import PHASE_STARTING, Run
from registry_core.store import Store
from registry_core.store.gc_runs import COUNTERS, RunRecord
from registry_core.store.metadata import now

log = logging.getLogger("edge_registry.gc")

FINISH_ATTEMPTS = 5
CLOSE_WAIT = 10.0

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class RunTable(Protocol[R_co]):
    """The claim's queries of a run table (store.gc_runs, store.sync_runs)."""

    def fail_abandoned(self, stale_before: float) -> object: ...

    def running(self, heartbeat_since: float | None = None) -> R_co | None: ...


class RunClaim(Generic[R]):
    """One run at a time in `table` across every process on the data dir, with a heartbeat.

    `claim` fails the runs whose heartbeat is older than `stale` seconds and starts a new
    one unless a live one exists; `beat` publishes the run every `interval` seconds from a
    thread (the publisher refreshes the row's heartbeat); `finish` writes the final record."""

    def __init__(
        self, store: Store, table: RunTable[R], interval: float, stale: float, name: str,
        logger: logging.Logger = log,
    ) -> None:
        self.store = store
        self.table = table
        self.interval = interval
        self.stale = stale
        self.name = name
        self.log = logger
        self._publish: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._stop = threading.Event()

    def claim(self, start: Callable[[float], R], busy: Callable[[R], Exception]) -> R:
        """`start(t)` inserts the new 'running' row (t: its start time) and returns its
        record; `busy(other)` is the error raised when another live run holds the claim."""
        with self.store.exclusive():
            t = now()  # inside the lock: runs' [started, finished] never overlap
            self.table.fail_abandoned(t - self.stale)
            other = self.table.running()
            if other is not None:
                raise busy(other)
            return start(t)

    def beat(self, publish: Callable[[], None]) -> None:
        """Call `publish` on the heartbeat thread every interval from now on."""
        self._publish = publish
        with self._thread_lock:
            if self._stop.is_set():
                return
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._beat, name=self.name, daemon=True)
                self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            publish = self._publish
            if publish is None:
                continue
            try:
                publish()
            except (StoreError, StoreBusy, StorageFull):
                self.log.exception("%s failed", self.name)

    def finish(self, write: Callable[[], None]) -> None:
        """Stop publishing and run `write` (the final record) in a write transaction, retried:
        a failed write would leave the run 'running' until its heartbeat went stale."""
        self._publish = None
        for attempt in range(FINISH_ATTEMPTS):
            try:
                with self.store.exclusive():
                    write()
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


class RunLock:
    """Acquire, keep alive and release the one GC run of a data dir."""

    def __init__(self, store: Store, owner: str, interval: float, stale: float) -> None:
        self.store = store
        self.owner = owner
        self.claim = RunClaim(store, store.gc_runs, interval, stale, "gc-heartbeat")
        self.run: Run | None = None
        """The run this process holds, published by the heartbeat."""

    def acquire(self, trigger: str, dry_run: bool, du: bool, grace: float) -> RunRecord:
        """A new 'running' row; GCInProgressError if another live one exists."""

        def start(t: float) -> RunRecord:
            run_id = self.store.gc_runs.start(
                trigger, dry_run, du, grace, self.owner, t, PHASE_STARTING
            )
            return RunRecord(
                id=run_id, trigger=trigger, dry_run=dry_run, delete_untagged=du,
                grace_period_seconds=grace, owner=self.owner, started_at=t, finished_at=None,
                heartbeat_at=t, status="running", phase=PHASE_STARTING,
            )

        return self.claim.claim(start, _gc_in_progress)

    def hold(self, run: Run) -> None:
        """Publish `run` from now on (heartbeat, counters, cancels from other processes)."""
        self.run = run
        self.claim.beat(lambda: self.publish(run))

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

    def release(self, run: Run, also: Callable[[], None] | None = None) -> None:
        """Write the run's final record (retried: a failed write would leave it 'running'),
        and what `also` writes in the same transaction (the run's audit row)."""
        self.run = None
        record = run.record
        record.details = run.details()
        values = [getattr(record, k) for k in COUNTERS]

        def write() -> None:
            runs = self.store.gc_runs
            record.cancel_requested = runs.cancel_requested(record.id) or run.cancel.is_set()
            runs.finish(
                record.id, record.status, record.phase, record.finished_at or now(),
                record.errors, record.details, values,
            )
            if also is not None:
                also()

        self.claim.finish(write)

    def close(self) -> None:
        """Stop the heartbeat thread."""
        self.claim.close()

    @property
    def heartbeat_alive(self) -> bool:
        return self.claim.heartbeat_alive


def _gc_in_progress(other: RunRecord) -> GCInProgressError:
    return GCInProgressError(
        f"a garbage collection is in progress (run {other.id}, {other.trigger}, started "
        f"{time.ctime(other.started_at)} by {other.owner})"
    )
