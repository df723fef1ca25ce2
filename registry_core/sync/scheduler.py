"""Sync on the schedule while the registry is served: at each time the cron names, a pass
runs if a window is open, until that window closes (it stops at a blob boundary then and
the next window resumes it). `* * * * *` syncs continuously: a pass each minute.

The settings are read again before each pass, so `sync configure` applies without a restart.
A run already under way (a `sync run` from the CLI) makes the scheduled one skip.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from registry_core.errors import EdgeError, SyncInProgressError
from registry_core.registry import Registry
from registry_core.sync.runner import SyncRunner, open_runner
from registry_core.sync.settings import SyncNotConfigured, load_settings

log = logging.getLogger("edge_registry.sync")

POLL_SECONDS = 30.0
"""Longest sleep between looks at the clock and the settings."""


class SyncScheduler:
    def __init__(self, registry: Registry, poll_seconds: float = POLL_SECONDS) -> None:
        self.registry = registry
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._runner: SyncRunner | None = None
        self.next_run: float | None = None
        """When the next scheduled pass may start (None: not configured)."""

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
            now = time.time()
            if self.next_run is None or now >= self.next_run:
                self._maybe_run(now)
            wait = self.poll_seconds if self.next_run is None else self.next_run - time.time()
            self._stop.wait(max(0.0, min(wait, self.poll_seconds)))

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
            return
        self._run(None if end == math.inf else end)

    def _run(self, until: float | None) -> None:
        try:
            self._runner = open_runner(self.registry)
            record = self._runner.run("schedule", until)
            log.info("scheduled sync run %s %s: %d manifests, %d blobs", record.id,
                     record.status, record.manifests_copied, record.blobs_copied)
        except SyncInProgressError as exc:
            log.info("scheduled sync skipped: %s", exc)
        except EdgeError as exc:
            log.warning("scheduled sync: %s", exc)
        finally:
            runner, self._runner = self._runner, None
            if runner is not None:
                runner.close()
