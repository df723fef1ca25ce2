"""SVG snapshots of every screen at 80x24 and 100x30, on fixed data.

Volatile values are fixed: the clock, the push dates, the certificates (their dates and
fingerprints change with every `enable`), the disk figures, the download directory; the
password stays masked and no server runs (so no port or request count shows).
Update with `pytest tests/console/test_snapshots.py --snapshot-update` after checking the diff.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_helpers import (
    fixed_certificates,
    fixed_history,
    fixed_usage,
    make_app,
    settle,
    wait_for,
)
from test_cluster_screen import fixed_picture, unreachable_picture
from test_sync_screen import fixed_sync, type_lines
from textual.pilot import Pilot
from textual.widgets import Checkbox

import console.screens.certificates as certificates_screen
import console.screens.storage as storage_screen
from console.app import EdgeConsoleApp
from console.screens.cluster import ClusterPicture, ClusterView
from console.screens.device import DeviceView
from console.screens.gc import GCView
from console.screens.images import ImagesView
from console.screens.sync import SyncView
from console.widgets.confirm import ConfirmationModal
from console.widgets.snippet_modal import SnippetModal
from console.widgets.stage_modal import StageModal
from console.widgets.virtual_table import VirtualTable
from registry_core.datadir import DataDir
from registry_core.registry import Registry

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((100, 30), id="100x30")]


@pytest.fixture
def snapshot_app(
    snapshot_datadir: DataDir, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EdgeConsoleApp]:
    monkeypatch.setattr(certificates_screen, "describe_certificates", fixed_certificates)
    monkeypatch.setattr(storage_screen, "usage_report", fixed_usage)
    monkeypatch.setattr(storage_screen, "usage_history", fixed_history)
    registry = Registry(snapshot_datadir)
    app = make_app(registry, downloads_dir=Path("/home/tech/Downloads"))
    yield app
    registry.close()


@pytest.mark.parametrize("size", SIZES)
def test_device(snap_compare: Any, snapshot_app: EdgeConsoleApp, size: tuple[int, int]) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        view = pilot.app.query_one(DeviceView)
        await wait_for(pilot, lambda: view.info is not None)
        await settle(pilot)

    assert snap_compare(snapshot_app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_certificates(
    snap_compare: Any, snapshot_app: EdgeConsoleApp, size: tuple[int, int]
) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await pilot.press("2")
        view = pilot.app.query_one(certificates_screen.CertificatesView)
        await wait_for(pilot, lambda: len(view.certificates) == 2)
        await settle(pilot)

    assert snap_compare(snapshot_app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_images_repositories(
    snap_compare: Any, snapshot_app: EdgeConsoleApp, size: tuple[int, int]
) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        table = pilot.app.query_one("#images-table", VirtualTable)
        await wait_for(pilot, lambda: table.total_count == 3)
        await settle(pilot)

    assert snap_compare(snapshot_app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_images_tags_filtered(
    snap_compare: Any, snapshot_app: EdgeConsoleApp, size: tuple[int, int]
) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        view = pilot.app.query_one(ImagesView)
        table = pilot.app.query_one("#images-table", VirtualTable)
        await wait_for(pilot, lambda: table.total_count == 3)
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: view.table_level == "tags" and table.total_count == 3)
        await pilot.press("slash", "2", "enter")  # the filter stays; no blinking cursor
        await settle(pilot)

    assert snap_compare(snapshot_app, terminal_size=size, run_before=ready)


def test_images_manifest_detail(snap_compare: Any, snapshot_app: EdgeConsoleApp) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        view = pilot.app.query_one(ImagesView)
        table = pilot.app.query_one("#images-table", VirtualTable)
        await wait_for(pilot, lambda: table.total_count == 3)
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: view.table_level == "tags" and table.total_count == 3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: view.level == "detail")
        await settle(pilot)

    assert snap_compare(snapshot_app, terminal_size=(100, 30), run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_delete_confirmation(
    snap_compare: Any, snapshot_app: EdgeConsoleApp, size: tuple[int, int]
) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        view = pilot.app.query_one(ImagesView)
        table = pilot.app.query_one("#images-table", VirtualTable)
        await wait_for(pilot, lambda: table.total_count == 3)
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: view.table_level == "tags" and table.total_count == 3)
        await pilot.press("d")
        await wait_for(pilot, lambda: type(pilot.app.screen).__name__ == "ConfirmationModal")
        await settle(pilot)

    assert snap_compare(snapshot_app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_storage(snap_compare: Any, snapshot_app: EdgeConsoleApp, size: tuple[int, int]) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await pilot.press("4")
        view = pilot.app.query_one(storage_screen.StorageView)
        await wait_for(pilot, lambda: view.report is not None)
        await settle(pilot)

    assert snap_compare(snapshot_app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_gc(snap_compare: Any, snapshot_app: EdgeConsoleApp, size: tuple[int, int]) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await pilot.press("5")
        await settle(pilot)

    assert snap_compare(snapshot_app, terminal_size=size, run_before=ready)


def test_gc_confirmation(snap_compare: Any, snapshot_app: EdgeConsoleApp) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await pilot.press("5")
        pilot.app.query_one("#gc-untagged", Checkbox).value = True
        pilot.app.query_one(GCView).focus_main()
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmationModal))
        await settle(pilot)

    assert snap_compare(snapshot_app, terminal_size=(100, 30), run_before=ready)


def test_help(snap_compare: Any, snapshot_app: EdgeConsoleApp) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        await pilot.press("question_mark")
        await settle(pilot)

    assert snap_compare(snapshot_app, terminal_size=(80, 24), run_before=ready)


def test_light_theme(snap_compare: Any, snapshot_app: EdgeConsoleApp) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        table = pilot.app.query_one("#images-table", VirtualTable)
        await wait_for(pilot, lambda: table.total_count == 3)
        await pilot.press("ctrl+t")
        await settle(pilot)

    assert snap_compare(snapshot_app, terminal_size=(100, 30), run_before=ready)


def test_images_in_use_column(snap_compare: Any, snapshot_app: EdgeConsoleApp) -> None:
    """With a cluster, the tags say who uses them (here a stand-in for its answer)."""

    async def ready(pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        view = pilot.app.query_one(ImagesView)
        table = pilot.app.query_one("#images-table", VirtualTable)
        await wait_for(pilot, lambda: table.total_count == 3)
        view.open_repository("nginx")
        await wait_for(pilot, lambda: view.table_level == "tags" and table.total_count == 3)
        await settle(pilot)  # the real ask found no cluster: no column
        digest = next(str(row[2]) for row in table.view_rows() if row[1] == "2.0")
        view.in_use = {("nginx", digest): "2 pods +1"}
        await settle(pilot)

    assert snap_compare(snapshot_app, terminal_size=(80, 24), run_before=ready)


async def show_cluster(pilot: Pilot[Any], picture: ClusterPicture | None = None) -> ClusterView:
    """The Cluster screen once its real read is done (no cluster in tests), then the stand-in
    `picture` (a real server's namespaces vary)."""
    await pilot.press("6")
    view = pilot.app.query_one(ClusterView)
    await wait_for(pilot, lambda: view.picture is not None)
    await settle(pilot)
    if picture is not None:
        view.picture = picture
        await settle(pilot)
    return view


def test_cluster_not_configured(snap_compare: Any, snapshot_app: EdgeConsoleApp) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await show_cluster(pilot)

    assert snap_compare(snapshot_app, terminal_size=(80, 24), run_before=ready)


def test_cluster_unreachable(snap_compare: Any, snapshot_app: EdgeConsoleApp) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await show_cluster(pilot, unreachable_picture())

    assert snap_compare(snapshot_app, terminal_size=(80, 24), run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_cluster(snap_compare: Any, snapshot_app: EdgeConsoleApp, size: tuple[int, int]) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await show_cluster(pilot, fixed_picture())

    assert snap_compare(snapshot_app, terminal_size=size, run_before=ready)


def test_cluster_apply_confirmation(snap_compare: Any, snapshot_app: EdgeConsoleApp) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await show_cluster(pilot, fixed_picture())
        await pilot.press("A")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmationModal))
        await settle(pilot)

    assert snap_compare(snapshot_app, terminal_size=(100, 30), run_before=ready)


def test_cluster_pod_snippet(snap_compare: Any, snapshot_app: EdgeConsoleApp) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await show_cluster(pilot, fixed_picture())
        await pilot.press("tab", "down", "down", "enter")  # the images table, the pod of nginx
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, SnippetModal))
        await settle(pilot)

    assert snap_compare(snapshot_app, terminal_size=(100, 30), run_before=ready)


async def show_sync(pilot: Pilot[Any], fixed: bool) -> SyncView:
    """The Sync screen once its real read is done (not configured here), then, if `fixed`,
    the stand-in state of a configured site with a run in progress."""
    await pilot.press("7")
    view = pilot.app.query_one(SyncView)
    await wait_for(pilot, lambda: view.picture is not None)
    await settle(pilot)
    if fixed:
        view.picture, view.live = fixed_sync()
        await settle(pilot)
    return view


def test_sync_not_configured(snap_compare: Any, snapshot_app: EdgeConsoleApp) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await show_sync(pilot, fixed=False)

    assert snap_compare(snapshot_app, terminal_size=(80, 24), run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_sync(snap_compare: Any, snapshot_app: EdgeConsoleApp, size: tuple[int, int]) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await show_sync(pilot, fixed=True)

    assert snap_compare(snapshot_app, terminal_size=size, run_before=ready)


def test_sync_stage_dialog(snap_compare: Any, snapshot_app: EdgeConsoleApp) -> None:
    """The stage dialog over the fixed Sync screen (opened directly: the fixed run in
    progress makes + refuse), a list typed in and one line refused."""

    async def ready(pilot: Pilot[Any]) -> None:
        await show_sync(pilot, fixed=True)
        modal = StageModal("release-7")
        await pilot.app.push_screen(modal)
        await type_lines(pilot, modal, "shop/web:2.1, shop/api:2.1\nshop/db")
        await pilot.click("#stage-ok")  # the focus leaves the text: no blinking cursor
        await settle(pilot)

    assert snap_compare(snapshot_app, terminal_size=(80, 24), run_before=ready)
