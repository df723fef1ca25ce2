"""Sync on the schedule while the registry is served: at each time the cron names, a pass
runs if a window is open, until that window closes (it stops at a blob boundary then and
the next window resumes it). `* * * * *` syncs continuously: a pass each minute.

The settings are read again before each pass, so `sync configure` applies without a restart.
A run already under way (a `sync run` from the CLI, a stage) makes the scheduled pass wait: it
is tried again each poll while its window is open, so that a stage at the window's start does
not cost the night's sync.

A pass that fails (the uplink dropped at the window's start) is tried again in the same window
after a backoff (30 s, doubling to 10 min); the cron's next start takes over after a success,
or once the next try would fall past the window's end. The next try is kept in the failed
run's details (`retry_at`), where `sync status` reads it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Literal

from registry_core.errors import EdgeError, SyncInProgressError
from registry_core.registry import Registry
from registry_core.store.sync_runs import SyncRunRecord
from registry_core.sync.runner import SyncRunner, open_runner
from registry_core.sync.settings import SyncNotConfigured, SyncSettings, load_settings

log = logging.getLogger("edge_registry.sync")

Outcome = Literal["succeeded", "failed", "busy"]
"""How a scheduled pass went; "succeeded" includes a pass the window's end stopped."""

POLL_SECONDS = 30.0
"""Longest sleep between looks at the clock and the settings."""
RETRY_FIRST = 30.0
RETRY_LONGEST = 600.0
"""Backoff between tries of a failed pass inside one window."""


def retry_delay(failures: int, first: float = RETRY_FIRST,
                longest: float = RETRY_LONGEST) -> float:
    """The wait after the `failures`-th failed pass in a row: `first`, doubling, capped."""
    return float(min(longest, first * 2.0 ** max(failures - 1, 0)))


class SyncScheduler:
    def __init__(self, registry: Registry, poll_seconds: float = POLL_SECONDS, *,
                 clock: Callable[[], float] = time.time, retry_first: float = RETRY_FIRST,
                 retry_longest: float = RETRY_LONGEST) -> None:
        self.registry = registry
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.retry_first, self.retry_longest = retry_first, retry_longest
        self._failures = 0
        """Failed passes in a row in the current window."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._runner: SyncRunner | None = None
        self.next_run: float | None = None
        """When the next pass may start: the cron's next start, or the next try of a failed
        pass (None: not configured)."""

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sync-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask a running pass to stop at its next blob boundary; wait a little, not for a
        big blob to finish (the thread is a daemon)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        runner = self._runner
        if runner is not None:
            runner.cancel.set()
        thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = self.clock()
            if self.next_run is None or now >= self.next_run:
                self._guarded(now)
            wait = self.poll_seconds if self.next_run is None else self.next_run - self.clock()
            self._stop.wait(max(0.0, min(wait, self.poll_seconds)))

    def _guarded(self, now: float) -> None:
        """One bad pass (an error the runner did not expect) never stops the schedule: it is
        logged, and tried again after the backoff of a failed pass."""
        try:
            self._maybe_run(now)
        except Exception:
            log.exception("scheduled sync failed unexpectedly")
            self._failures += 1
            self.next_run = self.clock() + retry_delay(self._failures, self.retry_first,
                                                       self.retry_longest)

    def _maybe_run(self, now: float) -> None:
        try:
            settings = load_settings(self.registry.datadir)
        except SyncNotConfigured:
            self.next_run = None
            return
        except EdgeError as exc:
            log.warning("scheduled sync: %s", exc)
            self.next_run = None
            return
        schedule = settings.schedule
        self.next_run = schedule.next_start(now)
        end = schedule.window_end(now)
        if not settings.enabled or end is None:
            self._failures = 0
            return
        outcome, record = self._run(settings, None if end == math.inf else end)
        if outcome == "busy":
            self._try_again_at(self.clock() + self.poll_seconds, end)
            return
        if outcome == "succeeded":
            self._failures = 0
            return
        self._failures += 1
        retry_at = self.clock() + retry_delay(self._failures, self.retry_first,
                                              self.retry_longest)
        if retry_at >= end:  # the window is over by then: the cron's next start
            self._failures = 0
            return
        self.next_run = retry_at
        log.info("scheduled sync failed; next try at %s", time.ctime(retry_at))
        if record is not None:
            record.details["retry_at"] = retry_at
            with self.registry.store.exclusive():
                self.registry.store.sync_runs.save(record)

    def _try_again_at(self, at: float, end: float) -> None:
        """The next look at `at`, if the window is still open then (else the cron's next)."""
        if at < end:
            self.next_run = min(at, self.next_run or math.inf)

    def _run(self, settings: SyncSettings,
             until: float | None) -> tuple[Outcome, SyncRunRecord | None]:
        """One pass with the settings just read (not the registry's config as it was when
        it opened: a `sync configure` since applies): how it went, and its record."""
        try:
            self._runner = open_runner(self.registry, settings)
            record = self._runner.run("schedule", until)
            log.info("scheduled sync run %s %s: %d manifests, %d blobs", record.id,
                     record.status, record.manifests_copied, record.blobs_copied)
            return ("failed" if record.status == "failed" else "succeeded"), record
        except SyncInProgressError as exc:
            log.info("scheduled sync waits: %s", exc)
            return "busy", None
        except EdgeError as exc:
            log.warning("scheduled sync: %s", exc)
            return "failed", None
        finally:
            runner, self._runner = self._runner, None
            if runner is not None:
                runner.close()
