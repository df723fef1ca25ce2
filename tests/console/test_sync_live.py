"""The Sync screen's live run, repository by repository (SyncProgress.repositories), and
ReadWrite conflicts said in the history and the end-of-run toast; against a real parent (a
second edge registry served over TLS in this process, as in test_sync_screen.py)."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest
from console_helpers import Image, make_app, push_image, settle, wait_for
from imagebuilder import ImageSpec, write_oci_image
from support import LiveServer, put_on_parent
from test_snapshots import show_sync
from test_snapshots import snapshot_app as snapshot_app  # the fixture: fixed data, no server
from test_sync_screen import GATE_SECONDS, SIZE, fixed_sync, open_sync, shown
from test_sync_screen import site as site  # the fixture: a connected registry of live_server
from textual.pilot import Pilot

from console.app import EdgeConsoleApp
from registry_core.events import (
    RepositoryProgress,
    Subscription,
    SyncFinished,
    SyncProgress,
    SyncStarted,
)
from registry_core.registry import Registry
from registry_core.sync.progress import to_details
from registry_core.sync.settings import configure

pytestmark = pytest.mark.socket


def repository_rows(view: Any) -> dict[str, tuple[str, ...]]:
    """The per-repository table: repository -> (state, tags, changed, manifests, blobs,
    copied, error), as shown."""
    table = view.repositories_table
    if not table.display:
        return {}
    rows = (table.get_row_at(i) for i in range(table.row_count))
    return {str(row[0]): tuple(str(cell) for cell in row[1:]) for row in rows}


async def test_progress_events_show_each_repository_and_keep_them_at_the_end(
    site: Registry,
) -> None:
    """The events as the runner's contract shapes them (emitted here, so that every state,
    a failed repository among them, shows at once)."""
    app = make_app(site)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_sync(pilot)
        assert repository_rows(view) == {}  # no run: no table
        site.events.emit(SyncStarted(identity="sync", run_id=9, trigger="schedule"))
        repositories = (
            RepositoryProgress(repository="shop/web", state="done", tags_total=12,
                               tags_checked=12, tags_changed=3, manifests_copied=4,
                               blobs_copied=7, bytes_copied=3 << 20),
            RepositoryProgress(repository="shop/db", state="failed", tags_total=2,
                               tags_checked=1, error="shop/db:15: parent unreachable"),
            RepositoryProgress(repository="shop/api", state="syncing", tags_total=40,
                               tags_checked=17, tags_changed=1, manifests_copied=1,
                               blobs_copied=2, bytes_copied=5 << 10),
            RepositoryProgress(repository="shop/cache", state="waiting"),
        )
        site.events.emit(SyncProgress(identity="sync", run_id=9, repository="shop/api",
                                      tags_checked=30, tags_changed=4, manifests_copied=5,
                                      blobs_copied=9, bytes_copied=(3 << 20) + (5 << 10),
                                      repositories=repositories))
        await wait_for(pilot, lambda: len(repository_rows(view)) == 4, what="the repositories")
        await settle(pilot)  # the reload the start asked for keeps what the events said
        rows = repository_rows(view)
        assert list(rows) == ["shop/web", "shop/db", "shop/api", "shop/cache"]  # as they began
        assert rows["shop/web"] == ("done", "12/12", "3", "4", "7", "3.0 MiB", "")
        assert rows["shop/db"] == ("failed", "1/2", "0", "0", "0", "0 Bytes",
                                   "shop/db:15: parent unreachable")
        assert rows["shop/api"] == ("syncing", "17/40", "1", "1", "2", "5.0 KiB", "")
        assert rows["shop/cache"] == ("waiting", "0", "0", "0", "0", "0 Bytes", "")
        assert "Run #9 running · shop/api" in shown(view, "#sync-live")

        later = (*repositories[:2],
                 dataclasses.replace(repositories[2], state="done", tags_checked=40),
                 dataclasses.replace(repositories[3], state="syncing", tags_total=5),
                 RepositoryProgress(repository="library/alpine", state="waiting"))
        site.events.emit(SyncProgress(identity="sync", run_id=9, repository="shop/cache",
                                      repositories=later))
        await wait_for(pilot, lambda: len(repository_rows(view)) == 5, what="the next event")
        rows = repository_rows(view)
        assert list(rows) == ["shop/web", "shop/db", "shop/api", "shop/cache", "library/alpine"]
        assert rows["shop/api"][:2] == ("done", "40/40")
        assert rows["shop/cache"][:2] == ("syncing", "0/5")

        site.events.emit(SyncFinished(identity="sync", run_id=9, status="failed",
                                      errors=("shop/db:15: parent unreachable",)))
        await wait_for(pilot, lambda: not view.live.running, what="the end")
        assert repository_rows(view) == rows  # what each repository came to stays
        site.events.emit(SyncStarted(identity="sync", run_id=10, trigger="schedule"))
        await wait_for(pilot, lambda: view.live.run_id == 10, what="the next run")
        assert repository_rows(view) == {}  # a new run starts with none


class HoldAtFirstEnd:
    """Holds the run in the first SyncProgress that says a repository ended while another is
    still to come, until the test lets it go: the screen is looked at mid-run."""

    def __init__(self, registry: Registry) -> None:
        self.held = threading.Event()
        self.release = threading.Event()
        self.subscription: Subscription[SyncProgress] = registry.events.subscribe(
            self._hold, SyncProgress)

    def _hold(self, event: SyncProgress) -> None:
        states = [r.state for r in event.repositories]
        if self.held.is_set() or "done" not in states or states.count("done") == len(states):
            return
        self.held.set()
        assert self.release.wait(GATE_SECONDS), "the test never released the run"

    def close(self) -> None:
        self.release.set()
        self.subscription.close()


@pytest.fixture
def three_repositories(live_server: LiveServer) -> list[Image]:
    parent = live_server.service.registry
    return [push_image(parent, f"shop/{name}", ["v1", "v2"],
                       [f"{name} layer ".encode() * 2000, f"{name} config ".encode() * 300])
            for name in ("web", "db", "cache")]


async def test_a_real_run_shows_each_repository_as_it_goes(
    site: Registry, three_repositories: list[Image]
) -> None:
    app = make_app(site)
    hold = None
    try:
        async with app.run_test(size=SIZE) as pilot:
            view = await open_sync(pilot)
            hold = HoldAtFirstEnd(site)  # after the screen's own subscription: it hears first
            await pilot.press("l")
            await wait_for(pilot, hold.held.is_set, what="a repository to end")
            await wait_for(pilot, lambda: "done" in [r[0] for r in repository_rows(
                view).values()], what="the ended repository shown")
            mid = repository_rows(view)
            assert view.live.running
            assert any(state != "done" for state, *_ in mid.values()), mid
            hold.release.set()

            await wait_for(pilot, lambda: not view.busy, what="the run to end")
            record = site.store.sync_runs.recent(1)[0]
            assert record.status == "succeeded", record.errors
            await wait_for(pilot, lambda: len(repository_rows(view)) == 3 and all(
                row[0] == "done" for row in repository_rows(view).values()),
                           what="every repository done")
            for image in three_repositories:
                _, tags, changed, manifests, blobs, _, error = repository_rows(
                    view)[image.repository]
                assert (tags, changed, error) == ("2/2", "2", "")
                assert (int(manifests), int(blobs)) == (1, len(image.blobs))
            await wait_for(pilot, lambda: str(view.history_table.get_row_at(0)[2]) ==
                           "succeeded", what="the history read again")
    finally:
        if hold is not None:
            hold.close()


@pytest.fixture
def conflicted(site: Registry, live_server: LiveServer, tmp_path: Path) -> tuple[str, str]:
    """shop/app:v1 on the parent and, another image, here, never synced: in ReadWrite, a
    conflict (the parent's kept). Returns (the local digest, the parent's)."""
    theirs = write_oci_image(tmp_path / "theirs", ImageSpec(tag="theirs"))
    ours = write_oci_image(tmp_path / "ours", ImageSpec(tag="ours"))
    configure(site.datadir, mode="ReadWrite")
    put_on_parent(live_server.service.registry, "shop/app", theirs, "v1")
    put_on_parent(site, "shop/app", ours, "v1")
    return str(ours.digest), str(theirs.digest)


async def test_a_read_write_conflict_shows_in_the_toast_history_and_live_line(
    site: Registry, conflicted: tuple[str, str]
) -> None:
    ours, theirs = conflicted
    app = make_app(site)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_sync(pilot)
        await pilot.press("l")
        await wait_for(pilot, lambda: not view.busy, what="the run to end")
        record = site.store.sync_runs.recent(1)[0]
        assert record.status == "succeeded" and len(record.conflicts) == 1, record.errors
        toast = [n for n in app._notifications if n.title == "Sync"][-1]
        assert toast.severity == "warning"
        assert "; 1 conflict with the parent (a tag changed on both sides)." in toast.message
        await wait_for(pilot, lambda: view.history_table.row_count == 1 and str(
            view.history_table.get_row_at(0)[2]) == "succeeded · 1 conflict",
                       what="the history read again")
        assert " · 1 conflict with the parent" in shown(view, "#sync-live")
    assert str(site.get_manifest("shop/app", "v1").digest) == theirs
    assert str(site.get_manifest("shop/app", ours).digest) == ours  # still here by digest



async def show_live_run(pilot: Pilot[Any]) -> None:
    """The fixed Sync screen with its run in progress told repository by repository, and a
    past ReadWrite run with a conflict."""
    view = await show_sync(pilot, fixed=True)
    picture, live = fixed_sync()
    mib = 1 << 20
    live = dataclasses.replace(live, repositories=(
        RepositoryProgress(repository="shop/web", state="done", tags_total=12,
                           tags_checked=12, tags_changed=2, manifests_copied=2,
                           blobs_copied=6, bytes_copied=40 * mib),
        RepositoryProgress(repository="shop/db", state="failed", tags_total=3, tags_checked=1,
                           error="shop/db:15: not found on the parent"),
        RepositoryProgress(repository="shop/api", state="syncing", tags_total=8,
                           tags_checked=5, tags_changed=1, blobs_copied=1,
                           bytes_copied=1 * mib),
        RepositoryProgress(repository="library/alpine", state="waiting"),
    ))
    conflicted = dataclasses.replace(picture.history[1], conflicts=[
        {"repository": "shop/web", "tag": "2.1", "local": "sha256:" + "ab" * 32,
         "parent": "sha256:" + "cd" * 32, "kept": "parent"}])
    history = [picture.history[0], conflicted, *picture.history[2:]]
    view.picture, view.live = dataclasses.replace(picture, history=history), live
    await settle(pilot)


def test_sync_live_repositories(snap_compare: Any, snapshot_app: EdgeConsoleApp) -> None:
    assert snap_compare(snapshot_app, terminal_size=(120, 40), run_before=show_live_run)


async def test_a_run_of_another_process_shows_its_repositories_from_its_row(
    site: Registry,
) -> None:
    """Another process's run has no events here: its row keeps the repositories (saved on
    each heartbeat, as the runner does), and the screen reads them from it."""
    store = site.store
    with store.exclusive():
        other = store.sync_runs.create("schedule", "other-host:4242")
        other.details["repositories"] = to_details((
            RepositoryProgress(repository="shop/web", state="done", tags_total=3,
                               tags_checked=3, tags_changed=1, manifests_copied=1,
                               blobs_copied=2, bytes_copied=2 << 20),
            RepositoryProgress(repository="shop/db", state="syncing", tags_total=4,
                               tags_checked=1),
        ))
        store.sync_runs.save(other)
    app = make_app(site)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_sync(pilot)
        await wait_for(pilot, lambda: len(repository_rows(view)) == 2, what="the repositories")
        assert view.live.elsewhere
        rows = repository_rows(view)
        assert rows["shop/web"] == ("done", "3/3", "1", "1", "2", "2.0 MiB", "")
        assert rows["shop/db"][:2] == ("syncing", "1/4")
