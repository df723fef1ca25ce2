"""Import / export on the Images screen, through its dialogs: a real OCI layout (made by
tests/imagebuilder.py) picked in the directory tree, previewed, imported with progress and
listed with its digests; bad sources refused with the store unchanged; a cancelled import and
a quit during one store nothing; an export read back with the same digests; overwrite refused
without the checkbox.

To cancel while an import is surely running, the import is held after its first progress
report (a slow USB stick, in effect) by a stand-in with TransferJobs' exact signature that
runs the real core import; it lets go when the dialog's stop check says stop.
"""

from __future__ import annotations

import tarfile
import threading
import time
from pathlib import Path
from typing import Any, TypeVar

from console_helpers import Image, make_app, open_tags, wait_for
from imagebuilder import ImageSpec, base_layer, write_oci_image, write_oci_index
from textual.pilot import Pilot
from textual.widgets import Checkbox, DirectoryTree, Input, ProgressBar, RadioButton, Static

from console.app import EdgeConsoleApp
from console.screens.images import ImagesView
from console.screens.images_transfer import TransferJobs
from console.widgets.format import size
from console.widgets.transfer_export import ExportModal
from console.widgets.transfer_import import ImportModal
from console.widgets.virtual_table import VirtualTable
from registry_core import browse, transfer
from registry_core.identity import CONSOLE
from registry_core.reference import parse_digest
from registry_core.registry import Registry

ModalT = TypeVar("ModalT", ImportModal, ExportModal)
HOLD_LIMIT = 60.0
"""Hang guard of the held import: let go after this long whatever happens."""


class HeldJobs(TransferJobs):
    """The real jobs; the import waits after its first copying report until told to stop."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(registry)
        self.holding = threading.Event()
        self.ended = threading.Event()
        self.error: BaseException | None = None

    def run_import(self, path: Path, tag: str | None, on_progress: transfer.ProgressCallback,
                   should_stop: transfer.StopCheck) -> transfer.ImportResult:
        def held(progress: transfer.Progress) -> None:
            on_progress(progress)
            if progress.phase == "copying" and not self.holding.is_set():
                self.holding.set()
                deadline = time.monotonic() + HOLD_LIMIT
                while not should_stop() and time.monotonic() < deadline:
                    time.sleep(0.01)

        try:
            return super().run_import(path, tag, held, should_stop)
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self.ended.set()


def usb_stick(where: Path) -> tuple[Path, dict[str, str]]:
    """`usb/layout`: an OCI layout with an image `v1` and a two-platform index `multi` sharing
    a base layer; tag -> digest."""
    layout = where / "usb" / "layout"
    single = write_oci_image(layout, ImageSpec(tag="v1"))
    index = write_oci_index(layout, tag="multi")
    return layout, {"v1": str(single.digest), "multi": str(index.digest)}


async def show_images(pilot: Pilot[Any], repositories: int) -> ImagesView:
    await pilot.press("3")
    view = pilot.app.query_one(ImagesView)
    table = pilot.app.query_one("#images-table", VirtualTable)
    await wait_for(pilot, lambda: table.total_count == repositories, what="repositories")
    return view


async def open_dialog(pilot: Pilot[Any], folder: Path, key: str, kind: type[ModalT]) -> ModalT:
    """Press `key` on the Images screen with the dialogs starting in `folder`."""
    view = pilot.app.query_one(ImagesView)
    view.transfer_folder = folder
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, kind), what="dialog")
    modal = pilot.app.screen
    assert isinstance(modal, kind)
    return modal


async def open_import_dialog(pilot: Pilot[Any], folder: Path) -> ImportModal:
    return await open_dialog(pilot, folder, "I", ImportModal)


async def enter_path(pilot: Pilot[Any], modal: ImportModal | ExportModal, path: Path) -> None:
    """Type the path in the dialog's field and press enter."""
    field = modal.query_one("#transfer-path", Input)
    field.focus()
    field.value = str(path)
    await pilot.press("enter")


async def choose(pilot: Pilot[Any], modal: ImportModal, path: Path) -> None:
    """Choose `path` in the import dialog: the preview runs."""
    await enter_path(pilot, modal, path)
    await wait_for(pilot, lambda: modal.state == "picking" and modal.source == path,
                   what="the preview")


def repositories(registry: Registry) -> list[str]:
    return [r.name for r in browse.repositories(registry)]


def error_line(modal: ImportModal | ExportModal) -> str:
    line = modal.query_one("#transfer-error", Static)
    return str(line.content) if line.display else ""


def toasts(app: EdgeConsoleApp) -> list[tuple[str, str]]:
    return [(n.title, n.message) for n in app._notifications]


async def test_import_a_layout_picked_in_the_tree(registry: Registry, tmp_path: Path) -> None:
    layout, digests = usb_stick(tmp_path)
    base = base_layer()
    registry.put_blob("other", base.data, who=CONSOLE)  # one blob is here already
    app = make_app(registry)
    async with app.run_test(size=(100, 30)) as pilot:
        await show_images(pilot, 0)
        titles = [command.title for command in app.all_commands()]
        assert "Images: Import images from an OCI layout (a folder or .tar) or a " \
            "docker-archive, with a preview first" in titles
        assert any(t.startswith("Images: Export the highlighted repository") for t in titles)
        modal = await open_import_dialog(pilot, layout.parent)
        tree = modal.query_one("#transfer-tree", DirectoryTree)
        await wait_for(pilot, lambda: len(tree.root.children) == 1, what="the tree")
        await pilot.press("down", "enter")  # the layout folder, chosen in the tree
        await wait_for(pilot, lambda: modal.plan is not None, what="the preview")
        plan = modal.plan
        assert plan is not None and plan.source == str(layout)
        assert {(i.repository, i.tags) for i in plan.images} == {
            ("layout", ("v1",)), ("layout", ("multi",))}
        assert plan.blobs - plan.new_blobs == 1  # the base layer
        assert not modal.query_one("#transfer-tag-row").display  # two images: no "tag as"
        assert repositories(registry) == []  # a preview stores nothing
        bar = modal.query_one("#transfer-bar", ProgressBar)
        await pilot.click("#transfer-ok")
        await wait_for(pilot, lambda: app.screen is not modal, timeout=60, what="the import")
        assert modal.progress_count >= 2 and bar.total is not None
        assert bar.progress == bar.total
        assert ("Imported", "2 images imported, "
                f"{size(plan.new_bytes)}, 1 blob was already here.") in toasts(app)
        view = app.query_one(ImagesView)
        assert view.transfer_folder == layout.parent
        table = app.query_one("#images-table", VirtualTable)
        await wait_for(pilot, lambda: table.total_count == 1, what="the new repository")
        view.open_repository("layout")
        await wait_for(pilot, lambda: view.table_level == "tags" and table.total_count >= 2,
                       what="the tags")
        tagged = {str(row[1]): str(row[2]) for row in table.view_rows() if row[1]}
        assert tagged == digests


async def test_bad_sources_are_refused_in_one_line(registry: Registry, tmp_path: Path) -> None:
    layout, _ = usb_stick(tmp_path)
    truncated = tmp_path / "usb" / "truncated.tar"
    with tarfile.open(truncated, "w") as tar:
        for child in sorted(layout.iterdir()):
            tar.add(child, arcname=child.name)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    notes = tmp_path / "usb" / "notes.txt"
    notes.write_text("not an image\n")
    bad_json = tmp_path / "usb" / "bad-json"
    bad_json.mkdir()
    (bad_json / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (bad_json / "index.json").write_text('{"manifests": [')
    app = make_app(registry)
    async with app.run_test(size=(100, 30)) as pilot:
        await show_images(pilot, 0)
        modal = await open_import_dialog(pilot, tmp_path / "usb")
        for source, words in ((truncated, "truncated.tar"), (notes, "notes.txt"),
                              (bad_json, "index.json")):
            await choose(pilot, modal, source)
            line = error_line(modal)
            assert modal.plan is None and words in line and "\n" not in line, line
            assert modal.query_one("#transfer-ok").disabled
        await choose(pilot, modal, layout)  # a good one clears the line
        assert modal.plan is not None and error_line(modal) == ""
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is not modal, what="the dialog to close")
    assert repositories(registry) == []
    assert not (registry.datadir.root / "transfer" / "partial").exists() or not any(
        (registry.datadir.root / "transfer" / "partial").iterdir())


async def test_a_single_unnamed_image_is_named_in_the_tag_field(
    registry: Registry, tmp_path: Path
) -> None:
    layout = tmp_path / "usb" / "unnamed"
    built = write_oci_image(layout, ImageSpec(tag="v1"))
    index = (layout / "index.json")
    index.write_text(index.read_text().replace('"org.opencontainers.image.ref.name"',
                                               '"x-not-a-name"'))
    app = make_app(registry)
    async with app.run_test(size=(100, 30)) as pilot:
        await show_images(pilot, 0)
        modal = await open_import_dialog(pilot, layout.parent)
        await choose(pilot, modal, layout)
        assert modal.plan is None and "no name" in error_line(modal)
        assert modal.query_one("#transfer-tag-row").display
        modal.query_one("#transfer-tag", Input).focus()
        await pilot.press(*"shop/web:1.0", "enter")
        await wait_for(pilot, lambda: modal.plan is not None, what="the named preview")
        await pilot.click("#transfer-ok")
        await wait_for(pilot, lambda: app.screen is not modal, timeout=60, what="the import")
    assert [(t.tag, t.digest) for t in browse.tags(registry, "shop/web")] == [
        ("1.0", str(built.digest))]


async def start_held_import(pilot: Pilot[Any], registry: Registry,
                            layout: Path) -> tuple[HeldJobs, ImportModal]:
    """Import `layout` from the dialog with the jobs holding it after its first progress."""
    view = await show_images(pilot, 0)
    jobs = view.transfer_jobs = HeldJobs(registry)
    modal = await open_import_dialog(pilot, layout.parent)
    await choose(pilot, modal, layout)
    await pilot.click("#transfer-ok")
    return jobs, modal


async def test_cancel_during_an_import_stores_nothing(registry: Registry, tmp_path: Path) -> None:
    layout, digests = usb_stick(tmp_path)
    app = make_app(registry)
    async with app.run_test(size=(100, 30)) as pilot:
        jobs, modal = await start_held_import(pilot, registry, layout)
        await wait_for(pilot, lambda: jobs.holding.is_set() and modal.progress_count >= 1,
                       what="the first progress report")
        await pilot.press("escape")  # the focus is on Cancel: esc stops the import
        await wait_for(pilot, lambda: app.screen is not modal, timeout=60, what="the stop")
        assert isinstance(jobs.error, transfer.TransferCancelled)
        assert ("Import cancelled", "import cancelled: nothing was stored") in toasts(app)
    assert repositories(registry) == []
    assert not any(registry.has_blob(d) for d in map(parse_digest, digests.values()))
    assert not any((registry.datadir.root / "transfer" / "partial").iterdir())


async def test_quitting_during_an_import_stops_it(registry: Registry, tmp_path: Path) -> None:
    layout, _ = usb_stick(tmp_path)
    app = make_app(registry)
    async with app.run_test(size=(100, 30)) as pilot:
        jobs, _ = await start_held_import(pilot, registry, layout)
        await wait_for(pilot, lambda: jobs.holding.is_set(), what="the import to be held")
        await pilot.press("q")
    assert jobs.ended.wait(HOLD_LIMIT / 2), "the import went on after the app quit"
    assert isinstance(jobs.error, transfer.TransferCancelled)
    assert repositories(registry) == []


async def export_dialog(pilot: Pilot[Any], folder: Path) -> ExportModal:
    return await open_dialog(pilot, folder, "e", ExportModal)


async def export_to(pilot: Pilot[Any], modal: ExportModal, path: Path) -> None:
    await enter_path(pilot, modal, path)
    await wait_for(pilot, lambda: pilot.app.screen is not modal
                   or (modal.state == "picking" and bool(error_line(modal))),
                   timeout=60, what="the export")


async def test_export_reads_back_with_the_same_digests(
    seeded: tuple[Registry, dict[str, Image]], tmp_path: Path
) -> None:
    registry, images = seeded
    out = tmp_path / "out"
    out.mkdir()
    app = make_app(registry)
    async with app.run_test(size=(100, 30)) as pilot:
        view, table = await open_tags(pilot, 3, "nginx", 3)
        row = table.cursor_row
        assert row is not None
        tag = str(row[1])
        modal = await export_dialog(pilot, out)
        assert modal.refs == [f"nginx:{tag}"]
        field = modal.query_one("#transfer-path", Input)
        assert field.value == str(out / f"nginx-{tag}")
        await wait_for(pilot, lambda: "to write" in str(
            modal.query_one("#transfer-preview", Static).content), what="the size")
        await export_to(pilot, modal, out / "nginx")
        assert app.screen is not modal, error_line(modal)
        assert any(title == "Exported" and str(out / "nginx") in message
                   for title, message in toasts(app))
        assert view.transfer_folder == out
    plan = transfer.preview(registry, out / "nginx")
    assert [(i.tags, i.digest) for i in plan.images] == [((tag,), str(row[2]))]
    assert plan.new_blobs == 0  # every blob is the registry's own
    assert str(row[2]) in {i.digest for i in images.values()}


async def test_overwrite_is_refused_without_the_checkbox(
    seeded: tuple[Registry, dict[str, Image]], tmp_path: Path
) -> None:
    registry, images = seeded
    taken = tmp_path / "out" / "alpine.tar"
    taken.parent.mkdir()
    taken.write_bytes(b"someone else's file\n")
    app = make_app(registry)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_tags(pilot, 3, "library/alpine", 1)
        modal = await export_dialog(pilot, taken.parent)
        await pilot.click("#fmt-docker")
        assert modal.query_one("#fmt-docker", RadioButton).value
        assert modal.query_one("#transfer-path", Input).value.endswith(".tar")
        await export_to(pilot, modal, taken)
        assert app.screen is modal and "exists and is not empty" in error_line(modal)
        assert taken.read_bytes() == b"someone else's file\n"
        modal.query_one("#transfer-force", Checkbox).value = True
        await export_to(pilot, modal, taken)
        assert app.screen is not modal, error_line(modal)
    with tarfile.open(taken) as tar:
        assert "manifest.json" in tar.getnames()  # a docker-archive (with an OCI index.json)
    plan = transfer.preview(registry, taken)
    assert [i.digest for i in plan.images] == [images["alpine:3.20"].digest]


async def test_import_a_tar_chosen_as_a_file_in_the_tree(
    registry: Registry, tmp_path: Path
) -> None:
    layout, digests = usb_stick(tmp_path)
    stick = tmp_path / "stick"
    stick.mkdir()
    archive = stick / "release.tar"
    with tarfile.open(archive, "w") as tar:
        for child in sorted(layout.iterdir()):
            tar.add(child, arcname=child.name)
    app = make_app(registry)
    async with app.run_test(size=(100, 30)) as pilot:
        await show_images(pilot, 0)
        modal = await open_import_dialog(pilot, stick)
        tree = modal.query_one("#transfer-tree", DirectoryTree)
        await wait_for(pilot, lambda: len(tree.root.children) == 1, what="the tree")
        await pilot.press("down", "enter")  # the file
        await wait_for(pilot, lambda: modal.plan is not None, what="the preview")
        assert modal.source == archive
        assert {i.repository for i in modal.plan.images} == {"release"}  # named after the file
        await pilot.click("#transfer-ok")
        await wait_for(pilot, lambda: app.screen is not modal, timeout=60, what="the import")
    assert {t.tag: t.digest for t in browse.tags(registry, "release")} == digests
