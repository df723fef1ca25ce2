"""Import / export on the Images screen: the back end the dialogs call (the same core
operations as `edge-console import` and `export`), what goes for the highlighted row, and the
toasts at the end."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from textual.app import App

from console.context import ConsoleContext
from console.widgets.format import size
from console.widgets.transfer_export import ExportModal
from console.widgets.transfer_import import ImportModal
from console.widgets.transfer_progress import TransferOutcome
from registry_core import transfer
from registry_core.identity import CONSOLE
from registry_core.registry import Registry

ResultT = TypeVar("ResultT")


class TransferHost(Protocol):
    """What the dialogs need of the Images screen."""

    transfer_folder: Path | None
    """The folder the last import or export was picked in (the next one starts there)."""

    @property
    def app(self) -> App[Any]: ...

    @property
    def edge(self) -> ConsoleContext: ...

    def transfer_backend(self) -> TransferJobs: ...

    def export_refs(self) -> list[str]:
        """What the highlighted row names: a repository (every tag), a tag, or a digest."""
        ...


class TransferJobs:
    """What the dialogs' workers run (blocking: in workers only)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def preview(self, path: Path, tag: str | None) -> transfer.ImportPlan:
        return transfer.preview(self.registry, path, tag=tag)

    def run_import(self, path: Path, tag: str | None, on_progress: transfer.ProgressCallback,
                   should_stop: transfer.StopCheck) -> transfer.ImportResult:
        return transfer.import_images(self.registry, path, who=CONSOLE, tag=tag,
                                      on_progress=on_progress, should_stop=should_stop)

    def measure(self, refs: Sequence[str]) -> tuple[int, int]:
        """(images, bytes) the export of `refs` writes."""
        images = transfer.resolve(self.registry, refs)
        blobs = {d: s for image in images for d, s in image.blobs.items()}
        manifests = {d: len(m[0]) for image in images for d, m in image.manifests.items()}
        return len(images), sum(blobs.values()) + sum(manifests.values())

    def run_export(self, refs: Sequence[str], destination: Path, format: str, force: bool,
                   on_progress: transfer.ProgressCallback,
                   should_stop: transfer.StopCheck) -> transfer.ExportResult:
        return transfer.export_images(self.registry, refs, destination, format=format,
                                      force=force, on_progress=on_progress,
                                      should_stop=should_stop)


def export_name(refs: Sequence[str]) -> str:
    """A file name for the export: `nginx-2.0`, `team-app-sha256-0123456789ab`."""
    text = refs[0].replace("@sha256:", "@sha256-")[:80] if refs else "images"
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return name[: name.find("sha256-") + 19] if "sha256-" in name else name


def start_folder(view: TransferHost) -> Path:
    """The folder last used, while it exists (a USB stick comes and goes), else home."""
    folder = view.transfer_folder
    return folder if folder is not None and folder.is_dir() else Path.home()


def when_done(view: TransferHost, verb: str, summary: Callable[[ResultT], str],
              changed: bool) -> Callable[[TransferOutcome[ResultT] | None], None]:
    """What runs when a dialog closes: the folder kept, a toast (`Imported`, `Export
    cancelled`), the screens told when content changed."""

    def done(outcome: TransferOutcome[ResultT] | None) -> None:
        if outcome is None:
            return
        view.transfer_folder = outcome.folder
        if outcome.cancelled:
            view.edge.notify(outcome.message, title=f"{verb} cancelled", severity="warning")
        elif outcome.result is not None:
            view.edge.notify(summary(outcome.result), title=f"{verb}ed", timeout=8,
                             markup=False)
            if changed:
                view.edge.content_changed()

    return done


def open_import(view: TransferHost) -> None:
    view.app.push_screen(ImportModal(view.transfer_backend(), start_folder(view)),
                         when_done(view, "Import", import_summary, changed=True))


def open_export(view: TransferHost) -> None:
    refs = view.export_refs()
    if not refs:
        view.edge.notify("Highlight a repository or a tag to export.", severity="warning")
        return
    view.app.push_screen(
        ExportModal(view.transfer_backend(), refs, start_folder(view), export_name(refs)),
        when_done(view, "Export", export_summary, changed=False),
    )


def import_summary(result: transfer.ImportResult) -> str:
    """`3 images imported, 412.0 MiB, 2 blobs were already here`."""
    count = len(result.images)
    here = result.plan.blobs - result.plan.new_blobs
    images = f"{count} image{'s' if count != 1 else ''}"
    blobs = f"{here} blob{'s were' if here != 1 else ' was'} already here"
    return f"{images} imported, {size(result.bytes_copied)}, {blobs}."


def export_summary(result: transfer.ExportResult) -> str:
    count = len(result.images)
    kind = "docker-archive" if result.format == transfer.DOCKER_ARCHIVE else "OCI layout"
    return (f"{count} image{'s' if count != 1 else ''} ({size(result.bytes)}) written to "
            f"{result.destination} ({kind}).")
