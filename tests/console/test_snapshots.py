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
    FIXED_NOW,
    FIXED_PUSH,
    fixed_certificates,
    fixed_history,
    fixed_usage,
    make_app,
    settle,
    wait_for,
)
from imagebuilder import ImageSpec, write_oci_image, write_oci_index
from test_cluster_screen import fixed_picture, unreachable_picture
from test_sync_screen import fixed_sync, type_lines
from textual.pilot import Pilot
from textual.widgets import Button, Checkbox, DirectoryTree

import console.screens.certificates as certificates_screen
import console.screens.storage as storage_screen
from console.app import EdgeConsoleApp
from console.screens.access import AccessView
from console.screens.access_audit import AuditTable
from console.screens.cluster import ClusterPicture, ClusterView
from console.screens.device import DeviceView
from console.screens.gc import GCView
from console.screens.images import ImagesView
from console.screens.sync import SyncView
from console.widgets.confirm import ConfirmationModal
from console.widgets.password_modal import PasswordModal, ShownPassword
from console.widgets.snippet_modal import SnippetModal
from console.widgets.stage_modal import StageModal
from console.widgets.transfer_import import ImportModal
from console.widgets.virtual_table import VirtualTable
from registry_core.access.scopes import parse_scopes
from registry_core.access.tokens import TokenAdmin
from registry_core.datadir import DataDir
from registry_core.identity import CONSOLE, Identity
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
        await pilot.hover("#stage-cancel", offset=(-4, 0))  # the mouse off the buttons
        button = modal.query_one("#stage-ok", Button)
        # A pressed button looks pressed for a moment (Textual's -active effect): wait it out.
        await wait_for(pilot, lambda: not button.has_class("-active"), what="the press effect")
        await settle(pilot)

    assert snap_compare(snapshot_app, terminal_size=(80, 24), run_before=ready)


# ---- Access -------------------------------------------------------------------------------

DAY = 86400.0


def fixed_access(registry: Registry) -> None:
    """Three tokens (one disabled, one with an expired password 2) and audit rows, every
    time fixed: the rows of the seeded pushes and token changes are re-dated a minute apart."""
    tokens = TokenAdmin(registry)
    tokens.create("ci-runner", parse_scopes(["app/*:content/read,content/write,metadata/read"]),
                  who=CONSOLE)
    tokens.create("kubelet", parse_scopes(["*:content/read"]), who=CONSOLE)
    tokens.rotate("kubelet", 2, who=CONSOLE)
    tokens.create("metrics", parse_scopes(["*:metrics/read"]), who=CONSOLE)
    tokens.disable("metrics", who=CONSOLE)
    with registry.store.exclusive():
        registry.audit.record(Identity("ci-runner", "token", address="10.0.0.9"),
                              "content/write", repository="shop/web", reference="2.1",
                              result="denied", detail={"reason": "not granted"})
    with registry.db.write() as conn:
        conn.execute("UPDATE tokens SET created_at = ?, updated_at = ?",
                     (FIXED_PUSH, FIXED_PUSH))
        conn.execute("UPDATE token_passwords SET created_at = ?, expires_at = NULL",
                     (FIXED_PUSH,))
        conn.execute("UPDATE token_passwords SET expires_at = ? WHERE token = 'ci-runner'",
                     (FIXED_NOW + 90 * DAY,))
        conn.execute("UPDATE token_passwords SET expires_at = ? WHERE token = 'kubelet' "
                     "AND slot = 2", (FIXED_NOW - DAY,))
        conn.execute("UPDATE audit_log SET at = ? + id * 60", (FIXED_PUSH,))


async def show_access(pilot: Pilot[Any]) -> None:
    await pilot.press("8")
    view = pilot.app.query_one(AccessView)
    table = pilot.app.query_one(AuditTable)
    await wait_for(pilot, lambda: view.picture is not None and table.total_count > 0)
    await settle(pilot)


@pytest.mark.parametrize("size", SIZES)
def test_access(snap_compare: Any, snapshot_app: EdgeConsoleApp, size: tuple[int, int]) -> None:
    fixed_access(snapshot_app.registry)
    assert snap_compare(snapshot_app, terminal_size=size, run_before=show_access)


def test_access_password_shown_once(snap_compare: Any, snapshot_app: EdgeConsoleApp) -> None:
    """The modal a new password is shown in, with a fake password (no real secret here)."""
    fixed_access(snapshot_app.registry)

    async def ready(pilot: Pilot[Any]) -> None:
        await show_access(pilot)
        await pilot.app.push_screen(PasswordModal(ShownPassword(
            title="New password 2 of ci-runner", username="ci-runner", slot=2,
            password="FAKE-password-for-the-snapshot", expires="2026-03-31",
            login="docker login ecr.edge.test:31001 -u ci-runner --password-stdin",
        )))
        await settle(pilot)

    assert snap_compare(snapshot_app, terminal_size=(80, 24), run_before=ready)


# ---- Images: import --------------------------------------------------------------------------


def test_images_import_preview(
    snap_compare: Any, snapshot_app: EdgeConsoleApp, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The import dialog over the Images screen: a small fixed layout (imagebuilder's images
    are byte for byte the same each run) picked in the tree under a home folder shown as ~,
    and its preview: the two images, their sizes, none of their blobs here."""
    home = tmp_path / "home"
    usb = home / "usb"
    write_oci_image(usb / "layout", ImageSpec(tag="v1"))
    write_oci_index(usb / "layout", tag="multi")
    (usb / "notes.txt").write_text("not an image\n")
    monkeypatch.setenv("HOME", str(home))

    async def ready(pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        view = pilot.app.query_one(ImagesView)
        await wait_for(pilot, lambda: view.table.total_count == 3)
        view.transfer_folder = usb
        await pilot.press("I")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ImportModal))
        modal = pilot.app.screen
        assert isinstance(modal, ImportModal)
        tree = modal.query_one("#transfer-tree", DirectoryTree)
        await wait_for(pilot, lambda: len(tree.root.children) == 2)
        await pilot.press("down", "enter")  # opens the layout folder and previews it
        layout = tree.root.children[0]
        await wait_for(pilot, lambda: modal.plan is not None and len(layout.children) == 3)
        await wait_for(pilot, lambda: not any(  # but the tree's loader, which lives with it
            w.is_running and w.group != "_loader" for w in pilot.app.workers))
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()

    assert snap_compare(snapshot_app, terminal_size=(80, 24), run_before=ready)
