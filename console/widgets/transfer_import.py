"""The import dialog: pick a layout or archive, see what it holds, import it with progress.

Choosing a source previews it in a worker (its images with their tags or the name they will
get, sizes, blobs already here); a bad source is said in one line and nothing is stored.
Import runs in a worker with live progress; esc (or x) stops it at the next blob or chunk,
and an import stopped before its commits stores nothing (registry_core.transfer). Quitting
the app stops it the same way: the stop check also reads the worker's cancellation.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Protocol

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Button, Input, Label, Static

from console.widgets.format import short_digest, size
from console.widgets.transfer_picker import PathPicker
from console.widgets.transfer_progress import (
    State,
    TransferModal,
    TransferProgress,
)
from registry_core.errors import EdgeError
from registry_core.transfer import (
    ImportPlan,
    ImportResult,
    NamingError,
    ProgressCallback,
    StopCheck,
)


class ImportBackend(Protocol):
    def preview(self, path: Path, tag: str | None) -> ImportPlan: ...

    def run_import(self, path: Path, tag: str | None, on_progress: ProgressCallback,
                   should_stop: StopCheck) -> ImportResult: ...


class Previewed(Message):
    def __init__(self, source: Path, tag: str | None, plan: ImportPlan | None,
                 error: str = "", unnamed: bool = False) -> None:
        super().__init__()
        self.source = source
        self.tag = tag
        self.plan = plan
        self.error = error
        self.unnamed = unnamed


def plan_table(plan: ImportPlan) -> RenderableType:
    """Each image with its name, size and how many of its blobs are here already."""
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold", expand=True)
    table.add_column("Image", overflow="fold", ratio=1)
    table.add_column("Size", justify="right", no_wrap=True)
    table.add_column("Blobs here", justify="right", no_wrap=True)
    table.add_column("To copy", justify="right", no_wrap=True)
    for image in plan.images:
        tags = ",".join(image.tags)
        name = f"{image.repository}:{tags}" if tags else \
            f"{image.repository}@{short_digest(image.digest)}"
        if image.platforms:
            name += f" ({len(image.platforms)} platforms)"
        table.add_row(name, size(image.size), f"{image.blobs - image.new_blobs} of {image.blobs}",
                      size(image.new_bytes))
    here = plan.blobs - plan.new_blobs
    summary = Text(
        f"{plan.format}: {len(plan.images)} image(s), {size(plan.bytes)}; {here} of "
        f"{plan.blobs} blobs already here, {plan.new_blobs} to copy ({size(plan.new_bytes)})."
    )
    return Group(table, summary)


class ImportModal(TransferModal[ImportResult]):
    """Dismisses with the outcome once an import ended (done or cancelled); None when closed
    before importing."""

    AUTO_FOCUS = "#transfer-tree"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,x", "cancel", "Cancel", id="transfer_import.cancel",
                tooltip="close, or stop the import at the next blob (nothing stored)"),
    ]
    WORKING = "importing"
    STOPPING = "Stopping at the next blob…"

    plan: reactive[ImportPlan | None] = reactive(None, init=False)

    def __init__(self, backend: ImportBackend, start: Path) -> None:
        super().__init__()
        self.backend = backend
        self.start = start
        self.source: Path | None = None
        self.tag: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="transfer-dialog"):
            yield Static("Import images: an OCI layout (a folder or .tar) or a docker-archive",
                         id="transfer-title", markup=False)
            yield PathPicker(self.start, id="transfer-picker")
            yield Static("Choose a folder or a file (enter).", id="transfer-preview")
            with Horizontal(id="transfer-tag-row"):
                yield Label("Tag as", classes="transfer-label")
                yield Input(id="transfer-tag", compact=True,
                            placeholder="REPO:TAG (optional: names the image)")
            yield Static("", id="transfer-error", markup=False)
            yield TransferProgress(id="transfer-progress")
            with Horizontal(id="transfer-buttons"):
                yield Static("enter choose · esc close", classes="transfer-hint")
                yield Button("Cancel", id="transfer-cancel", compact=True)
                yield Button("Import", id="transfer-ok", variant="success", compact=True,
                             disabled=True)

    def on_mount(self) -> None:
        self.query_one("#transfer-tag-row").display = False
        self.query_one("#transfer-error").display = False
        self.query_one(TransferProgress).display = False

    @property
    def folder(self) -> Path:
        """Where the next dialog starts: the folder the source was picked in."""
        return self.source.parent if self.source is not None else self.start

    # ---- preview -----------------------------------------------------------------------------

    @on(PathPicker.Chosen)
    def _chosen(self, event: PathPicker.Chosen) -> None:
        if self.state in ("importing", "cancelling"):
            return
        self.source = event.path
        self.request_preview()

    @on(Input.Submitted, "#transfer-tag")
    def _tag_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.source is not None and self.state not in ("importing", "cancelling"):
            self.request_preview()

    def request_preview(self) -> None:
        assert self.source is not None
        self.tag = self.query_one("#transfer-tag", Input).value.strip() or None
        self.plan = None
        self.error = ""
        self.state = "previewing"
        self.preview(self.source, self.tag)

    @work(thread=True, exclusive=True, group="transfer-preview", exit_on_error=False)
    def preview(self, source: Path, tag: str | None) -> None:
        try:
            plan = self.backend.preview(source, tag)
        except NamingError as exc:
            self.post_message(Previewed(source, tag, None, str(exc), unnamed=True))
        except (EdgeError, OSError) as exc:
            self.post_message(Previewed(source, tag, None, str(exc)))
        else:
            self.post_message(Previewed(source, tag, plan))

    @on(Previewed)
    def _previewed(self, message: Previewed) -> None:
        if message.source != self.source or message.tag != self.tag or self.state != "previewing":
            return  # an older choice
        self.state = "picking"
        self.plan = message.plan
        self.error = message.error
        single = message.plan is not None and len({i.digest for i in message.plan.images}) == 1
        self.query_one("#transfer-tag-row").display = message.unnamed or single or bool(self.tag)

    def watch_plan(self, plan: ImportPlan | None) -> None:
        preview = self.query_one("#transfer-preview", Static)
        if plan is not None:
            preview.update(plan_table(plan))
        elif self.state == "previewing":
            preview.update(Text(f"Reading {self.source}…"))
        else:
            preview.update(Text(f"{self.source}: nothing to import." if self.source else ""))
        self.query_one("#transfer-ok", Button).disabled = plan is None

    def watch_state(self, state: State) -> None:
        working = state in ("importing", "cancelling")
        self.query_one(PathPicker).disabled = working
        self.query_one("#transfer-tag", Input).disabled = working
        self.query_one("#transfer-ok", Button).disabled = working or self.plan is None
        if state == "previewing":
            self.query_one("#transfer-preview", Static).update(Text(f"Reading {self.source}…"))

    # ---- import ------------------------------------------------------------------------------

    @on(Button.Pressed, "#transfer-ok")
    def _import_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_start()

    def action_start(self) -> None:
        if self.plan is None or self.source is None or self.state != "picking":
            return
        self.begin(f"Importing from {self.source}…")
        self.run_import(self.source, self.tag)

    @work(thread=True, exclusive=True, group="transfer-import", exit_on_error=False)
    def run_import(self, source: Path, tag: str | None) -> None:
        self.transfer(lambda on_progress, should_stop: self.backend.run_import(
            source, tag, on_progress, should_stop))
