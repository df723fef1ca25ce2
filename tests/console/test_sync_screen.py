"""The Sync screen against a real parent (a second edge registry served over TLS in this
process): sync now shows the run live, then in the history, and the state Online; a cancel
stops it; quitting cancels it without waiting; an unconfigured data dir says how to
configure it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from console_helpers import FIXED_NOW, Image, make_app, push_image, settle, wait_for
from support import LiveServer, free_port
from test_cluster_screen import messages
from textual.pilot import Pilot
from textual.widgets import Input, Static, TextArea

from console.app import EdgeConsoleApp
from console.screens.sync import SyncLive, SyncPicture, SyncView
from console.widgets.confirm import ConfirmationModal
from console.widgets.stage_modal import StageModal
from registry_core.access.audit import AuditFilter
from registry_core.config import SyncConfig
from registry_core.datadir import DataDir
from registry_core.enablement import enable
from registry_core.events import Subscription, SyncFinished, SyncProgress, SyncStarted
from registry_core.identity import CONSOLE
from registry_core.registry import Registry
from registry_core.store.stages import StageItem
from registry_core.store.sync_runs import SyncRunRecord
from registry_core.sync import staging
from registry_core.sync.connection import parse_connection_string
from registry_core.sync.runner import open_runner
from registry_core.sync.settings import SyncSettings, configure
from registry_core.sync.status import SyncStatus

pytestmark = pytest.mark.socket

SIZE = (100, 30)
GATE_SECONDS = 60.0
"""Hang guard: how long a held run waits for the test to let it go."""
QUIT_BOUND_SECONDS = 10.0
"""Hang guard on quitting while a run is held (for GATE_SECONDS): well under it, so a quit
that waited for the run would fail; quitting takes ~0.1 s here."""
FIXED_CONNECTION = (
    "ConnectedRegistryName=store-0042;SyncTokenName=sync-token;SyncTokenPassword=s3cret;"
    "ParentGatewayEndpoint=registry.example.com:443;ParentEndpointProtocol=https"
)


@pytest.fixture
def site(tmp_path: Path, live_server: LiveServer) -> Iterator[Registry]:
    """A connected registry whose parent is `live_server`, in scope: shop/*."""
    datadir = DataDir(tmp_path / "site")
    enable(datadir, device_name="site", dns_domain="test", node_ip="127.0.0.1",
           port=free_port())
    text = (f"ConnectedRegistryName=site-01;SyncTokenName={live_server.username};"
            f"SyncTokenPassword={live_server.password};"
            f"ParentGatewayEndpoint=127.0.0.1:{live_server.port};ParentEndpointProtocol=https")
    configure(datadir, connection=parse_connection_string(text),
              parent_ca=live_server.cert_dir / "ca.crt", repositories=["shop/*"])
    registry = Registry(datadir)
    yield registry
    registry.close()


@pytest.fixture
def on_parent(live_server: LiveServer) -> Image:
    return push_image(live_server.service.registry, "shop/web", ["v1"],
                      [b"web layer " * 3000, b"web config files " * 500])


class Gate:
    """Holds a run in its SyncStarted event (after the run is claimed, before the parent is
    asked anything) until the test lets it go."""

    def __init__(self) -> None:
        self.held = threading.Event()
        self.release = threading.Event()
        self.subscription: Subscription[SyncStarted] | None = None

    def subscribe(self, registry: Registry) -> None:
        self.subscription = registry.events.subscribe(self._hold, SyncStarted)

    def _hold(self, event: SyncStarted) -> None:
        self.held.set()
        assert self.release.wait(GATE_SECONDS), "the test never released the run"

    def close(self) -> None:
        self.release.set()
        if self.subscription is not None:
            self.subscription.close()

    async def start_held_run(self, pilot: Pilot[Any], site: Registry) -> SyncView:
        """Show the Sync screen, press `l`, and return once the run is held here."""
        self.subscribe(site)  # after the screen's own subscription: it hears first
        await pilot.press("7")
        view = pilot.app.query_one(SyncView)
        await wait_for(pilot, lambda: view.picture is not None, what="the first read")
        await pilot.press("l")
        await wait_for(pilot, self.held.is_set, what="the run to start")
        return view


async def quit_at_once(pilot: Pilot[Any], app: EdgeConsoleApp) -> None:
    """Press q while a run is held: the app must be gone within QUIT_BOUND_SECONDS."""
    async with asyncio.timeout(QUIT_BOUND_SECONDS):  # the run is still held
        await pilot.press("q")
        while app.return_code is None:
            await asyncio.sleep(0.01)


async def abandoned_ends(ended: Callable[[], bool], what: str) -> None:
    """Poll until the run the app left behind has ended by itself (its gate let go)."""
    deadline = time.monotonic() + GATE_SECONDS  # hang guard: the run ends by itself
    while not ended():
        assert time.monotonic() < deadline, f"the abandoned {what} never ended"
        await asyncio.sleep(0.05)


def shown(app_view: SyncView, widget_id: str) -> str:
    return str(app_view.query_one(widget_id, Static).content)


async def test_sync_now_shows_the_run_then_its_history_and_online(
    site: Registry, on_parent: Image
) -> None:
    app = make_app(site)
    gate = Gate()
    try:
        async with app.run_test(size=SIZE) as pilot:
            gate.subscribe(site)  # after the screen's own subscription: it hears first
            await pilot.press("7")
            view = app.query_one(SyncView)
            await wait_for(pilot, lambda: view.picture is not None, what="the first read")
            picture = view.picture
            assert picture is not None and picture.status is not None
            assert picture.status.state == "Offline"  # no run has reached the parent yet
            connection = shown(view, "#sync-connection")
            assert "https://127.0.0.1:" in connection and "as site-01" in connection
            assert "ReadOnly" in connection and "shop/*" in connection
            assert "Last sync  never" in connection

            await pilot.press("l")
            await wait_for(pilot, gate.held.is_set, what="the run to start")
            await wait_for(pilot, lambda: view.live.running, what="the live run")
            assert "running" in shown(view, "#sync-live")
            await wait_for(pilot, lambda: _state(view) == "Syncing", what="Syncing")
            assert not app.query_one("#sync-cancel").disabled

            gate.release.set()
            await wait_for(pilot, lambda: not view.busy, what="the run to end")
            await wait_for(pilot, lambda: _state(view) == "Online", what="Online")
            await wait_for(pilot, lambda: view.history_table.row_count == 1 and str(
                view.history_table.get_row_at(0)[2]) == "succeeded", what="the history")
            record = site.store.sync_runs.recent(1)[0]
            assert record.status == "succeeded", record.errors
            assert view.live.status == "succeeded"
            assert view.live.blobs_copied == len(on_parent.blobs) == record.blobs_copied
            assert "succeeded" in shown(view, "#sync-live")
            assert view.history_table.row_count == 1
            assert view.history_table.get_row_at(0)[0] == str(record.id)
            assert "Last sync  never" not in shown(view, "#sync-connection")
            assert str(site.get_manifest("shop/web", "v1").digest) == on_parent.digest
    finally:
        gate.close()


async def test_cancel_stops_the_run(site: Registry, on_parent: Image) -> None:
    app = make_app(site)
    gate = Gate()
    try:
        async with app.run_test(size=SIZE) as pilot:
            view = await gate.start_held_run(pilot, site)
            await pilot.press("x")
            gate.release.set()
            await wait_for(pilot, lambda: not view.busy, what="the run to end")
            assert view.live.status == "cancelled"
            assert site.store.sync_runs.recent(1)[0].status == "cancelled"
            await wait_for(pilot, lambda: view.history_table.row_count == 1 and str(
                view.history_table.get_row_at(0)[2]) == "cancelled", what="the history")
    finally:
        gate.close()
    assert site.catalog().items == []  # nothing was copied


async def test_quit_cancels_a_run_without_waiting(site: Registry, on_parent: Image) -> None:
    app = make_app(site)
    gate = Gate()
    try:
        async with app.run_test(size=SIZE) as pilot:
            await gate.start_held_run(pilot, site)
            await quit_at_once(pilot, app)
        assert not gate.release.is_set()
    finally:
        gate.close()
    await abandoned_ends(lambda: site.store.sync_runs.running() is None, "run")
    assert site.store.sync_runs.recent(1)[0].status == "cancelled"


async def test_a_run_of_another_process_shows_and_cancels_through_its_row(
    site: Registry,
) -> None:
    store = site.store
    with store.exclusive():  # the row another process's run keeps (heartbeat: now)
        other = store.sync_runs.create("schedule", "other-host:4242")
    app = make_app(site)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        view = app.query_one(SyncView)
        await wait_for(pilot, lambda: view.live.running, what="the other run")
        assert view.live.run_id == other.id and view.live.elsewhere
        assert "in another process" in shown(view, "#sync-live")
        assert _state(view) == "Syncing"
        await pilot.press("x")
        await wait_for(pilot, lambda: store.sync_runs.cancel_requested(other.id),
                       what="the cancel request")


async def test_progress_events_show_the_repository_and_counts(site: Registry) -> None:
    """A run's progress as the runner emits it (on its heartbeat, every two seconds: a
    small test run ends before the first, so the events are emitted here)."""
    app = make_app(site)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        view = app.query_one(SyncView)
        await wait_for(pilot, lambda: view.picture is not None)
        site.events.emit(SyncStarted(identity="sync", run_id=9, trigger="schedule"))
        site.events.emit(SyncProgress(identity="sync", run_id=9, repository="shop/web",
                                      tags_checked=12, tags_changed=3, manifests_copied=4,
                                      blobs_copied=7, bytes_copied=3 << 20))
        await wait_for(pilot, lambda: view.live.blobs_copied == 7, what="the progress")
        await settle(pilot)  # the reload the start asked for keeps what the events said
        text = shown(view, "#sync-live")
        assert "Run #9 running · shop/web" in text and "in another process" not in text
        assert "tags 12 checked, 3 changed · manifests 4 · blobs 7 · 3.0 MiB" in text
        assert not app.query_one("#sync-cancel").disabled
        site.events.emit(SyncFinished(identity="sync", run_id=9, status="failed",
                                      errors=("parent unreachable", "again")))
        await wait_for(pilot, lambda: not view.live.running, what="the end")
        assert "failed" in shown(view, "#sync-live")
        assert "parent unreachable (and 1 more)" in shown(view, "#sync-live")


async def test_not_configured_says_how(seeded: tuple[Registry, dict[str, Image]]) -> None:
    registry, _ = seeded
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        view = app.query_one(SyncView)
        await wait_for(pilot, lambda: view.picture is not None)
        assert _state(view) == "NotConfigured"
        assert "edge-console sync configure" in shown(view, "#sync-connection")
        await pilot.press("l")
        await pilot.pause()
        assert not view.busy
        assert registry.store.sync_runs.recent(5) == []
        await pilot.press("x")  # nothing to cancel: said, nothing breaks
        await pilot.pause()
        assert not view.busy
        await pilot.press("plus")  # no dialog to fill in vain: how to configure, first
        await pilot.pause()
        assert not isinstance(app.screen, StageModal)
        assert "edge-console sync configure" in messages(app)[-1]
        await pilot.press("C", "R")  # nothing staged: said
        await pilot.pause()
        assert "nothing to check" in messages(app)[-2]
        assert "no stage to release" in messages(app)[-1]
        assert not isinstance(app.screen, ConfirmationModal)


# ---- staging ---------------------------------------------------------------------------------


async def open_sync(pilot: Pilot[Any]) -> SyncView:
    await pilot.press("7")
    view = pilot.app.query_one(SyncView)
    await wait_for(pilot, lambda: view.picture is not None, what="the first read")
    return view


async def type_lines(pilot: Pilot[Any], modal: StageModal, text: str) -> None:
    """Type `text` into the dialog's list, a key at a time (enter between lines)."""
    area = modal.query_one("#stage-refs", TextArea)
    await wait_for(pilot, lambda: area.has_focus, what="the list to have the focus")
    for number, line in enumerate(text.split("\n")):
        if number:
            await pilot.press("enter")
        await pilot.press(*line)
    assert area.text == text


async def open_stage_modal(pilot: Pilot[Any], refs: str, stage: str = "") -> StageModal:
    """Press + on the Sync screen and fill the dialog (typed, as the technician would)."""
    await pilot.press("plus")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, StageModal), what="the dialog")
    modal = pilot.app.screen
    assert isinstance(modal, StageModal)
    await type_lines(pilot, modal, refs)
    if stage:
        modal.query_one("#stage-name", Input).value = stage
    return modal


@asynccontextmanager
async def gated_sync(site: Registry) -> AsyncIterator[tuple[EdgeConsoleApp, Pilot[Any], SyncView,
                                                             Gate]]:
    """The app on the Sync screen, its next run held by a gate (let go at the end)."""
    app = make_app(site)
    gate = Gate()
    try:
        async with app.run_test(size=SIZE) as pilot:
            view = await open_sync(pilot)
            gate.subscribe(site)
            yield app, pilot, view, gate
    finally:
        gate.close()


async def stage_held(pilot: Pilot[Any], gate: Gate, refs: str, stage: str = "") -> StageModal:
    """Stage `refs` from the dialog; returns once the stage's run is held at the gate."""
    modal = await open_stage_modal(pilot, refs, stage=stage)
    await pilot.click("#stage-ok")
    await wait_for(pilot, gate.held.is_set, what="the stage's run to start")
    return modal


def stage_now(site: Registry, refs: list[tuple[str, str]],
              expires_at: float | None = None) -> None:
    """Stage `refs` as release-7 through the core, before the app starts."""
    runner = open_runner(site)
    try:
        staging.stage(site, runner, refs, "release-7", expires_at, who=CONSOLE)
    finally:
        runner.close()


def stage_rows(view: SyncView) -> dict[str, tuple[str, str, str]]:
    """Image -> (stage, status, check), as the staging table shows them."""
    table = view.stages_table
    rows = (table.get_row_at(i) for i in range(table.row_count))
    return {str(r[1]): (str(r[0]), str(r[2]), str(r[3])) for r in rows}


async def test_stage_images_from_the_dialog_shows_each_image_move_to_staged(
    site: Registry, on_parent: Image
) -> None:
    async with gated_sync(site) as (app, pilot, view, gate):
        assert "No staged images" in shown(view, "#sync-stage-note")
        modal = await stage_held(pilot, gate, "shop/web:v1,\n shop/gone:1", stage="release-7")
        assert not isinstance(app.screen, StageModal) and modal.is_attached is False
        await wait_for(pilot, lambda: stage_rows(view) == {
            "shop/web:v1": ("release-7", "pending", "-"),
            "shop/gone:1": ("release-7", "pending", "-"),
        }, what="both images pending (the run is held before any transfer)")
        assert not app.query_one("#sync-cancel").disabled
        with site.store.exclusive():  # what the core writes as an image moves on
            web = site.store.stages.items("release-7")[0]
            site.store.stages.set_status(web.id, "verifying")
        await wait_for(pilot, lambda: stage_rows(view)["shop/web:v1"][1] == "verifying",
                       what="the table to follow the store while the stage runs")
        gate.release.set()
        await wait_for(pilot, lambda: not view.busy, what="the stage to end")
        await wait_for(pilot, lambda: {k: v[1] for k, v in stage_rows(view).items()} == {
            "shop/web:v1": "staged", "shop/gone:1": "failed"}, what="the outcome")
        assert "1 of 2 staged" in messages(app)[-1]
        assert "shop/gone:1" in messages(app)[-1]
    items = {i.repository: i for i in site.store.stages.items("release-7")}
    assert items["shop/web"].status == "staged" and items["shop/gone"].status == "failed"
    assert items["shop/web"].digest == on_parent.digest
    assert staging.pinned_manifests(site) == {("shop/web", on_parent.digest)}
    assert str(site.get_manifest("shop/web", "v1").digest) == on_parent.digest
    assert site.store.sync_runs.recent(1)[0].trigger == "stage"


async def test_quit_while_staging_does_not_wait(site: Registry, on_parent: Image) -> None:
    app = make_app(site)
    gate = Gate()
    try:
        async with app.run_test(size=SIZE) as pilot:
            await open_sync(pilot)
            gate.subscribe(site)
            await stage_held(pilot, gate, "shop/web:v1")
            await quit_at_once(pilot, app)
        assert not gate.release.is_set()
    finally:
        gate.close()
    await abandoned_ends(
        lambda: site.store.stages.items()[0].status not in ("pending", "downloading"), "stage")
    item = site.store.stages.items()[0]
    assert item.status == "failed" and item.reason.endswith("cancelled")


async def test_no_stage_while_a_run_is_under_way(site: Registry) -> None:
    """Staging claims the one run a data dir may have: with another process's run shown,
    + says so and opens no dialog."""
    with site.store.exclusive():
        site.store.sync_runs.create("schedule", "other-host:4242")
    app = make_app(site)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_sync(pilot)
        await wait_for(pilot, lambda: view.live.running, what="the other run")
        await pilot.press("plus")
        await pilot.pause()
        assert not isinstance(app.screen, StageModal)
        assert messages(app)[-1] == "A sync is already running."
    assert site.store.stages.items(released=True) == []


@pytest.mark.parametrize(("refs", "stage", "expires", "said"), [
    ("shop/web", "", "", "REPOSITORY:TAG"),
    ("Shop/Web:v1", "", "", "Shop/Web"),
    ("", "", "", "at least one image"),
    ("shop/web:v1", "my stage", "", "stage name"),
    ("shop/web:v1", "", "2 days", "expiry"),
])
async def test_bad_input_in_the_dialog_is_refused_and_nothing_is_staged(
    site: Registry, on_parent: Image, refs: str, stage: str, expires: str, said: str
) -> None:
    app = make_app(site)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_sync(pilot)
        modal = await open_stage_modal(pilot, refs, stage=stage)
        modal.query_one("#stage-expires", Input).value = expires
        await pilot.click("#stage-ok")
        await pilot.pause()
        assert app.screen is modal  # still open, saying what is wrong
        error = modal.query_one("#stage-error", Static)
        assert error.display and said in str(error.content)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, StageModal))
        await settle(pilot)
        assert not view.busy
    assert site.store.stages.items(released=True) == []
    assert site.store.sync_runs.recent(5) == []


async def test_check_readiness_shows_ready_and_missing(site: Registry, on_parent: Image) -> None:
    stage_now(site, [("shop/web", "v1"), ("shop/gone", "1")])
    app = make_app(site)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_sync(pilot)
        await wait_for(pilot, lambda: len(stage_rows(view)) == 2, what="the staged list")
        assert {k: v[2] for k, v in stage_rows(view).items()} == {
            "shop/web:v1": "-", "shop/gone:1": "-"}
        await pilot.press("C")
        await wait_for(pilot, lambda: not view.checking and bool(view.readiness),
                       what="the check")
        assert {k: v[2] for k, v in stage_rows(view).items()} == {
            "shop/web:v1": "ready", "shop/gone:1": "missing"}
        assert "1 of 2 ready; missing: shop/gone:1" in messages(app)[-1]


async def test_check_readiness_with_the_parent_gone_says_unverified(
    site: Registry, on_parent: Image, live_server: LiveServer
) -> None:
    stage_now(site, [("shop/web", "v1")])
    live_server.service.stop()  # the uplink is down: only what is here is known
    app = make_app(site)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_sync(pilot)
        await wait_for(pilot, lambda: len(stage_rows(view)) == 1, what="the staged list")
        await pilot.press("C")
        await wait_for(pilot, lambda: not view.checking and bool(view.readiness),
                       what="the check", timeout=60)
        assert stage_rows(view)["shop/web:v1"][2] == "unverified"
        assert "the parent could not be asked" in str(view.stages_table.get_row_at(0)[6])
        toast = list(app._notifications)[-1]
        assert toast.severity == "warning"
        assert "1 of 1 ready; 1 here but not confirmed by the parent" in toast.message


async def test_cancel_while_staging_fails_the_images_not_yet_staged(
    site: Registry, on_parent: Image
) -> None:
    async with gated_sync(site) as (app, pilot, view, gate):
        await stage_held(pilot, gate, "shop/web:v1")
        await pilot.press("x")
        gate.release.set()
        await wait_for(pilot, lambda: not view.busy, what="the stage to end")
        await wait_for(pilot, lambda: stage_rows(view)["shop/web:v1"][1] == "failed",
                       what="the image failed")
        assert any("0 of 1 staged" in m for m in messages(app)), messages(app)
    item = site.store.stages.items()[0]
    assert item.status == "failed" and item.reason.endswith("cancelled")
    assert staging.pinned_manifests(site) == set()


async def test_release_asks_first_and_cancel_keeps_the_pins(
    site: Registry, on_parent: Image
) -> None:
    stage_now(site, [("shop/web", "v1")])
    pinned = {("shop/web", on_parent.digest)}
    assert staging.pinned_manifests(site) == pinned
    app = make_app(site)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_sync(pilot)
        await wait_for(pilot, lambda: len(stage_rows(view)) == 1, what="the staged list")
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal))
        title = str(app.screen.query_one("#confirm-title", Static).content)
        body = str(app.screen.query_one("#confirm-body", Static).content)
        assert title == "Release the stage release-7? Pins lost: 1 image."
        assert "shop/web:v1" in body and "1 image of the stage release-7" in body
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmationModal))
        await settle(pilot)
        assert staging.pinned_manifests(site) == pinned
        assert len(stage_rows(view)) == 1

        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal))
        await pilot.click("#confirm-ok")
        await wait_for(pilot, lambda: not view.stages_table.display, what="the empty list")
        assert "Released the stage release-7" in messages(app)[-1]
    assert staging.pinned_manifests(site) == set()
    assert site.store.stages.items() == []
    assert str(site.get_manifest("shop/web", "v1").digest) == on_parent.digest  # still here


async def test_an_expired_stage_shows_expired_checks_as_unpinned_and_releases(
    site: Registry, on_parent: Image
) -> None:
    stage_now(site, [("shop/web", "v1")], expires_at=time.time() - 1)
    app = make_app(site)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_sync(pilot)
        await wait_for(pilot, lambda: len(stage_rows(view)) == 1, what="the staged list")
        assert stage_rows(view)["shop/web:v1"] == ("release-7", "expired", "-")
        await pilot.press("C")
        await wait_for(pilot, lambda: not view.checking and bool(view.readiness),
                       what="the check")
        assert stage_rows(view)["shop/web:v1"][2] == "expired"
        assert "no longer pinned" in str(view.stages_table.get_row_at(0)[6])
        toast = list(app._notifications)[-1]
        assert toast.severity == "warning"
        assert toast.message == ("1 of 1 ready; stage expired, no longer pinned: shop/web:v1")

        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal))
        title = str(app.screen.query_one("#confirm-title", Static).content)
        body = str(app.screen.query_one("#confirm-body", Static).content)
        assert title == "Release the stage release-7? Pins lost: 0 images."
        assert "shop/web:v1  expired" in body
        await pilot.click("#confirm-ok")
        await wait_for(pilot, lambda: not view.stages_table.display, what="the empty list")
    (row,) = site.audit.query(AuditFilter(action="stage.release"))
    assert (row.principal, row.repository, row.reference) == ("console", "shop/web", "v1")
    assert row.detail["status"] == "expired"
    added = site.audit.query(AuditFilter(action="stage.add"))
    assert [(r.principal, r.result) for r in added] == [("console", "ok")]


async def test_a_stage_shows_expired_the_moment_it_expires(
    site: Registry, on_parent: Image
) -> None:
    """The screen reads the list again at the expiry, with nothing else changing."""
    expires_at = time.time() + 3
    stage_now(site, [("shop/web", "v1")], expires_at=expires_at)
    app = make_app(site)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_sync(pilot)
        await wait_for(pilot, lambda: len(stage_rows(view)) == 1, what="the staged list")
        await wait_for(pilot, lambda: stage_rows(view)["shop/web:v1"][1] == "expired",
                       what="the expiry to show", timeout=60)
    assert time.time() >= expires_at
    assert staging.pinned_manifests(site) == set()


def _state(view: SyncView) -> str | None:
    picture = view.picture
    return picture.status.state if picture is not None and picture.status is not None else None


# ---- fixed state for snapshots ---------------------------------------------------------------


def _run(run_id: int, status: str, started: float, seconds: float | None, tags: int,
         manifests: int, blobs: int, copied: int, errors: list[str] | None = None,
         trigger: str = "schedule") -> SyncRunRecord:
    return SyncRunRecord(
        id=run_id, trigger=trigger, owner="site:1", started_at=started,
        finished_at=None if seconds is None else started + seconds, heartbeat_at=started,
        status=status, manifests_copied=manifests, blobs_copied=blobs, bytes_copied=copied,
        errors=errors or [], details={"tags_checked": 40, "tags_changed": tags},
    )


def fixed_sync() -> tuple[SyncPicture, SyncLive]:
    """A configured site (a stand-in: a real parent's address and times vary): a run in
    progress, four past runs of every outcome, staged images in every state."""
    sync = SyncConfig(mode="ReadOnly", repositories=["shop/*", "library/alpine"],
                      schedule="0 2 * * *", window="PT3H", enabled=True)
    settings = SyncSettings.build(parse_connection_string(FIXED_CONNECTION), sync, None)
    mib = 1 << 20
    running = _run(5, "running", FIXED_NOW - 95, None, 3, 2, 7, 41 * mib, trigger="manual")
    history = [
        running,
        _run(4, "succeeded", FIXED_NOW - 3600, 42.5, 2, 3, 9, 88 * mib),
        _run(3, "failed", FIXED_NOW - 7200, 30.1, 0, 0, 0, 0,
             ["parent unreachable: registry.example.com:443: connection timed out"]),
        _run(2, "stopped", FIXED_NOW - 86400, 10800.0, 12, 14, 60, 900 * mib),
        _run(1, "cancelled", FIXED_NOW - 90000, 3.2, 0, 0, 1, 2 * mib, trigger="manual"),
    ]
    status = SyncStatus(
        state="Syncing", sync=sync, settings=settings, last_sync=FIXED_NOW - 3600 + 42.5,
        next_run=FIXED_NOW + 2 * 3600, window_end=None, running=running, last_run=history[1],
    )
    expires = FIXED_NOW + 2 * 86400
    stages = [
        StageItem(1, "release-7", "shop/web", "2.1", "sha256:" + "ab" * 32, "staged", "",
                  FIXED_NOW, FIXED_NOW, expires, None),
        StageItem(2, "release-7", "shop/api", "2.1", "sha256:" + "cd" * 32, "downloading", "",
                  FIXED_NOW, FIXED_NOW, expires, None),
        StageItem(3, "release-7", "shop/db", "15", None, "pending", "", FIXED_NOW, FIXED_NOW,
                  expires, None),
        StageItem(4, "release-7", "shop/cache", "7", None, "failed",
                  "not found on the parent", FIXED_NOW, FIXED_NOW, None, None),
    ]
    live = SyncLive(5, "running", "shop/web", 23, 3, 2, 7, 41 * mib)
    return SyncPicture(status, history, stages), live
