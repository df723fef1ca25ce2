"""The export dialog: where to (a path field over a tree of folders), which format, overwrite
or not; then the export with live progress, esc (or x) stopping it (nothing is left at the
destination: the core writes beside it and renames at the end)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Protocol

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Checkbox, RadioButton, RadioSet, Static

from console.widgets.format import size
from console.widgets.transfer_picker import PathPicker
from console.widgets.transfer_progress import (
    State,
    TransferModal,
    TransferProgress,
)
from registry_core.errors import EdgeError
from registry_core.transfer import (
    DOCKER_ARCHIVE,
    OCI,
    ExportResult,
    ProgressCallback,
    StopCheck,
)

FORMATS: dict[str, tuple[str, str, str]] = {
    "fmt-oci": (OCI, "", "OCI layout folder"),
    "fmt-oci-tar": (OCI, ".tar", "OCI layout .tar"),
    "fmt-docker": (DOCKER_ARCHIVE, ".tar", "docker-archive .tar"),
}
"""Radio id -> (the core's format, the file's extension, the label)."""


class ExportBackend(Protocol):
    def measure(self, refs: Sequence[str]) -> tuple[int, int]: ...

    def run_export(self, refs: Sequence[str], destination: Path, format: str, force: bool,
                   on_progress: ProgressCallback, should_stop: StopCheck) -> ExportResult: ...


class Measured(Message):
    def __init__(self, text: str, error: str = "") -> None:
        super().__init__()
        self.text = text
        self.error = error


def with_extension(path: Path, extension: str) -> Path:
    """`path` named for the format: `.tar` added or taken off."""
    name = path.name[:-4] if path.name.lower().endswith(".tar") else path.name
    return path.with_name(name + extension) if name else path


class ExportModal(TransferModal[ExportResult]):
    """Dismisses with the outcome once an export ended (done or cancelled); None when closed
    before exporting."""

    AUTO_FOCUS = "#transfer-path"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,x", "cancel", "Cancel", id="transfer_export.cancel",
                tooltip="close, or stop the export (nothing is left at the destination)"),
    ]
    WORKING = "exporting"
    STOPPING = "Stopping…"

    def __init__(self, backend: ExportBackend, refs: Sequence[str], start: Path,
                 name: str) -> None:
        super().__init__()
        self.backend = backend
        self.refs = list(refs)
        self.start = start
        self.name_ = name
        self.destination: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="transfer-dialog"):
            yield Static(f"Export {', '.join(self.refs)}", id="transfer-title", markup=False)
            yield Static("Counting what goes…", id="transfer-preview", markup=False)
            yield PathPicker(self.start, folders_only=True, file_name=self.name_,
                             id="transfer-picker")
            with RadioSet(id="transfer-format"):
                for radio_id, (_, _, label) in FORMATS.items():
                    yield RadioButton(label, value=radio_id == "fmt-oci", id=radio_id)
            yield Checkbox("Overwrite what is at the path", id="transfer-force", compact=True)
            yield Static("", id="transfer-error", markup=False)
            yield TransferProgress(id="transfer-progress")
            with Horizontal(id="transfer-buttons"):
                yield Static("enter export · esc close", classes="transfer-hint")
                yield Button("Cancel", id="transfer-cancel", compact=True)
                yield Button("Export", id="transfer-ok", variant="success", compact=True)

    def on_mount(self) -> None:
        self.query_one("#transfer-error").display = False
        self.query_one(TransferProgress).display = False
        self.measure()

    @property
    def picker(self) -> PathPicker:
        return self.query_one(PathPicker)

    @property
    def format_id(self) -> str:
        pressed = self.query_one("#transfer-format", RadioSet).pressed_button
        return pressed.id if pressed is not None and pressed.id in FORMATS else "fmt-oci"

    @property
    def folder(self) -> Path:
        return (self.destination or self.picker.path).parent

    @work(thread=True, exclusive=True, group="transfer-measure", exit_on_error=False)
    def measure(self) -> None:
        try:
            images, total = self.backend.measure(self.refs)
        except (EdgeError, OSError) as exc:
            self.post_message(Measured("", str(exc)))
            return
        self.post_message(Measured(f"{images} image{'s' if images != 1 else ''}, "
                                   f"{size(total)} to write."))

    @on(Measured)
    def _measured(self, message: Measured) -> None:
        self.query_one("#transfer-preview", Static).update(message.text)
        if message.error:
            self.error = message.error

    @on(RadioSet.Changed, "#transfer-format")
    def _format_changed(self, event: RadioSet.Changed) -> None:
        extension = FORMATS[self.format_id][1]
        self.picker.set_file_name(with_extension(self.picker.path, extension).name)

    def watch_state(self, state: State) -> None:
        working = state != "picking"
        for selector in ("#transfer-picker", "#transfer-format", "#transfer-force",
                         "#transfer-ok"):
            self.query_one(selector).disabled = working

    # ---- export ------------------------------------------------------------------------------

    @on(PathPicker.Chosen)
    @on(Button.Pressed, "#transfer-ok")
    def _export_pressed(self, event: PathPicker.Chosen | Button.Pressed) -> None:
        event.stop()
        self.action_start()

    def action_start(self) -> None:
        if self.state != "picking":
            return
        path = self.picker.path
        if not path.name:
            self.error = "Give the path to write (a folder and a name)."
            return
        self.destination = path
        self.begin(f"Exporting to {path}…")
        force = self.query_one("#transfer-force", Checkbox).value
        self.run_export(path, FORMATS[self.format_id][0], force)

    @work(thread=True, exclusive=True, group="transfer-export", exit_on_error=False)
    def run_export(self, destination: Path, format: str, force: bool) -> None:
        self.transfer(lambda on_progress, should_stop: self.backend.run_export(
            self.refs, destination, format, force, on_progress, should_stop))
