"""The sync scheduler against a real parent (a second edge registry over TLS) behind the
cutting proxy: a scheduled pass that fails because the uplink is down at the window's start
is tried again in the same window, `sync status` names that try as the next run, and once a
try succeeds the cron's next start takes over again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import pytest
from cutting_proxy import CuttingProxy
from imagebuilder import ImageSpec, write_oci_image
from support import LiveServer, connected_site, put_on_parent

from registry_core.registry import Registry
from registry_core.store.sync_runs import SyncRunRecord
from registry_core.sync.client import ParentClient
from registry_core.sync.engine import Scope
from registry_core.sync.runner import SyncRunner
from registry_core.sync.scheduler import SyncScheduler, retry_delay
from registry_core.sync.settings import load_settings
from registry_core.sync.status import read_status

pytestmark = pytest.mark.socket

T = TypeVar("T")
HANG_GUARD = 120.0
RETRY_FIRST = 3.0


def eventually(find: Callable[[], T | None], what: str) -> T:
    """The first non-None answer of `find`, polled; fails after the hang guard."""
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        found = find()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"still waiting for {what} after {HANG_GUARD:.0f} s")


@pytest.fixture
def link(live_server: LiveServer) -> Iterator[CuttingProxy]:
    """The uplink to the parent, down to begin with."""
    with CuttingProxy(("127.0.0.1", live_server.port)) as proxy:
        proxy.down.set()
        yield proxy


@pytest.fixture
def nightly_site(tmp_path: Path, live_server: LiveServer, link: CuttingProxy) -> Iterator[Registry]:
    """A connected registry whose daily window (PT3H) opened this minute, reaching the parent
    through `link`."""
    opened = datetime.now().astimezone()
    registry = Registry(connected_site(
        tmp_path / "site", live_server, link.address,
        schedule=f"{opened.minute} {opened.hour} * * *", window="PT3H"))
    yield registry
    registry.close()


def scheduled_runs(site: Registry) -> list[SyncRunRecord]:
    """Finished scheduled runs, oldest first."""
    with site.store.snapshot():
        runs = site.store.sync_runs.recent(50)
    return [r for r in reversed(runs) if r.trigger == "schedule" and r.status != "running"]


def test_a_pass_failed_at_the_window_start_is_tried_again_in_the_window(
    live_server: LiveServer, nightly_site: Registry, link: CuttingProxy, tmp_path: Path
) -> None:
    site = nightly_site
    image = write_oci_image(tmp_path / "app", ImageSpec(tag="v1"))
    put_on_parent(live_server.service.registry, "shop/app", image, "v1")
    schedule = load_settings(site.datadir).schedule
    scheduler = SyncScheduler(site, poll_seconds=0.2, retry_first=RETRY_FIRST)
    scheduler.start()
    try:
        first = eventually(lambda: next(iter(scheduled_runs(site)), None), "a scheduled run")
        assert first.status == "failed", first.errors
        # The scheduler adds the next try to the record the runner saved.
        failed = eventually(lambda: next(
            (r for r in scheduled_runs(site)[:1] if "retry_at" in r.details), None),
            "the failed run's next try")
        retry_at = failed.details["retry_at"]
        assert failed.finished_at is not None
        assert RETRY_FIRST <= retry_at - failed.finished_at < schedule.window_seconds
        # The next try, not tomorrow's window, is what `sync status` shows.
        shown = read_status(site.datadir, site.store, now=failed.finished_at)
        assert shown.next_run == retry_at < schedule.next_start(failed.finished_at)

        link.down.clear()  # the uplink is back
        succeeded = eventually(
            lambda: next((r for r in scheduled_runs(site) if r.status == "succeeded"), None),
            "a scheduled run that succeeds")
    finally:
        scheduler.stop()
    assert succeeded.started_at >= retry_at
    assert site.get_manifest("shop/app", "v1").digest == image.digest
    # After the success, the cron again: the window's next opening, tomorrow.
    assert succeeded.finished_at is not None
    tomorrow = schedule.next_start(succeeded.finished_at)
    assert tomorrow - succeeded.finished_at > schedule.window_seconds
    assert scheduler.next_run == tomorrow
    assert read_status(site.datadir, site.store, now=succeeded.finished_at).next_run == tomorrow


def test_the_backoff_doubles_from_30_seconds_to_10_minutes() -> None:
    assert [retry_delay(n) for n in range(1, 8)] == [30, 60, 120, 240, 480, 600, 600]


def test_a_run_under_way_at_the_window_start_delays_the_scheduled_pass_not_skips_it(
    live_server: LiveServer, nightly_site: Registry, link: CuttingProxy, tmp_path: Path
) -> None:
    """A stage (or a `sync run`) holds the sync when the window opens: the scheduled pass
    looks again each poll and runs once the other ends, in the same window, not tomorrow."""
    site = nightly_site
    image = write_oci_image(tmp_path / "app", ImageSpec(tag="v1"))
    put_on_parent(live_server.service.registry, "shop/app", image, "v1")
    link.down.clear()
    entered, release = threading.Event(), threading.Event()

    def held_connect() -> ParentClient:
        entered.set()
        assert release.wait(HANG_GUARD), "the test never released the other run"
        return ParentClient(f"127.0.0.1:{live_server.port}", live_server.username,
                            live_server.password, ca_file=live_server.cert_dir / "ca.crt")

    other = SyncRunner(site, held_connect, Scope(("shop/*",)))
    holder = threading.Thread(target=other.run)
    holder.start()
    scheduler = SyncScheduler(site, poll_seconds=0.2)
    try:
        assert entered.wait(HANG_GUARD)
        scheduler.start()
        tomorrow = load_settings(site.datadir).schedule.next_start(time.time())
        eventually(lambda: scheduler.next_run if (scheduler.next_run or tomorrow) < tomorrow
                   else None, "the scheduled pass to wait for the run under way")
        assert scheduled_runs(site) == []
        release.set()
        holder.join(HANG_GUARD)
        done = eventually(lambda: next(iter(scheduled_runs(site)), None), "the scheduled pass")
    finally:
        release.set()
        scheduler.stop()
        other.close()
    assert done.status == "succeeded", done.errors
