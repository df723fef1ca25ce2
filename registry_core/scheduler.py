"""Nightly garbage collection while the registry is served (cron in `[gc] schedule`)."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from croniter import croniter

from registry_core.errors import ConfigError, GCInProgressError
from registry_core.events import GCEvent, GCFinished, GCStarted, Subscription
from registry_core.gc import GarbageCollector
from registry_core.identity import GC
from registry_core.registry import Registry

log = logging.getLogger("edge_registry.scheduler")


class GCScheduler:
    """A thread that starts a GC run (trigger 'schedule') at each time the cron names.

    An empty schedule disables it. A run already in progress elsewhere (a `gc` from the CLI)
    makes the scheduled run skip, not wait.
    """

    poll_seconds = 30.0
    """Longest sleep between checks of the clock (a clock change is noticed this fast)."""

    def __init__(self, registry: Registry, collector: GarbageCollector) -> None:
        self.registry = registry
        self.collector = collector
        self.schedule = registry.config.gc.schedule.strip()
        if self.schedule and not croniter.is_valid(self.schedule):
            raise ConfigError(f"gc.schedule {self.schedule!r} is not a valid cron expression")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next: datetime | None = None
        self._running: int | None = None
        self.last_finished: GCFinished | None = None
        """The last run that ended in this process, whatever started it."""
        self._subscription: Subscription[GCEvent] | None = None

    def start(self) -> None:
        if not self.schedule or self._thread is not None:
            return
        self._stop.clear()
        self._next = self._compute_next()
        self._subscription = self.registry.events.subscribe(self._on_gc, GCStarted, GCFinished)
        self._thread = threading.Thread(target=self._loop, name="gc-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        self.collector.cancel_local()
        thread.join(timeout=30)
        self._next = None
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    def _on_gc(self, event: GCEvent) -> None:
        """Follows the runs of this process (from the event stream): a scheduled run that
        falls during one is skipped at once; the outcome of each run is logged."""
        if isinstance(event, GCStarted):
            self._running = event.run_id
        elif isinstance(event, GCFinished):
            self._running = None
            self.last_finished = event
            log.info("gc run %s (%s) %s: %d bytes freed", event.run_id, event.trigger,
                     event.status, event.bytes_freed)

    def next_run(self) -> datetime | None:
        """When the next scheduled run starts (local time), or None when not scheduled."""
        return self._next

    def _compute_next(self, base: datetime | None = None) -> datetime:
        start = base or datetime.now().astimezone()
        nxt: datetime = croniter(self.schedule, start).get_next(datetime)
        return nxt

    def _loop(self) -> None:
        while not self._stop.is_set():
            nxt = self._next or self._compute_next()
            delay = (nxt - datetime.now().astimezone()).total_seconds()
            if delay > 0:
                self._stop.wait(min(delay, self.poll_seconds))
                continue
            self._next = self._compute_next(max(nxt, datetime.now().astimezone()))
            if self._running is not None:
                log.info("scheduled gc skipped: run %s of this process is in progress",
                         self._running)
                continue
            try:
                self.collector.run(trigger="schedule", who=GC)
            except GCInProgressError as exc:
                log.info("scheduled gc skipped: %s", exc)
            except Exception:
                log.exception("scheduled gc failed")
