"""The images to stage, over the Sync screen: `repo:tag` one a line (or comma separated), the
stage's name and an optional expiry. Bad input is said in the dialog, which stays open."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, TextArea

from registry_core.durations import parse_duration
from registry_core.errors import EdgeError
from registry_core.sync.staging import parse_refs

STAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class StageRequest:
    """What the technician asked to stage (validated)."""

    pairs: list[tuple[str, str]]
    stage: str
    expires_in: float | None
    """Seconds from now until the pins go by themselves; None: until released."""


def read_request(refs: str, stage: str, expires: str) -> StageRequest:
    """The dialog's fields, checked; ValueError with a one-line message when one is wrong."""
    try:
        pairs = parse_refs(refs.replace(",", "\n").splitlines())
    except EdgeError as exc:
        raise ValueError(str(exc)) from None
    if not pairs:
        raise ValueError("name at least one image as REPOSITORY:TAG")
    name = stage.strip()
    if not STAGE_NAME.fullmatch(name):
        raise ValueError(f"stage name {name[:70]!r}: letters, digits, '.', '_' and '-' "
                         "(64 at most), starting with a letter or digit")
    expires_in = None
    if expires.strip():
        try:
            expires_in = parse_duration(expires, "stage expiry")
        except EdgeError as exc:
            raise ValueError(str(exc)) from None
    return StageRequest(list(dict.fromkeys(pairs)), name, expires_in)


class StageModal(ModalScreen[StageRequest | None]):
    """Dismisses with the request when Stage is pressed and the fields are right; None when
    cancelled (esc, or Cancel)."""

    AUTO_FOCUS = "#stage-refs"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="stage_modal.cancel"),
    ]

    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage

    def compose(self) -> ComposeResult:
        with Vertical(id="stage-dialog"):
            yield Static("Stage images: pull them from the parent now and pin them",
                         id="stage-title", markup=False)
            yield Static("REPOSITORY:TAG, one a line or separated by commas",
                         id="stage-hint", markup=False)
            yield TextArea(id="stage-refs", soft_wrap=True, show_line_numbers=False)
            with Horizontal(id="stage-fields"):
                yield Label("Stage", classes="stage-label")
                yield Input(self.stage, id="stage-name", compact=True)
                yield Label("Unpin after", classes="stage-label")
                yield Input(id="stage-expires", placeholder="P2D; empty: on release",
                            compact=True)
            error = Static("", id="stage-error", markup=False)
            error.display = False
            yield error
            with Horizontal(id="stage-buttons"):
                yield Button("Cancel", id="stage-cancel")
                yield Button("Stage", id="stage-ok", variant="success")

    @on(Button.Pressed, "#stage-cancel")
    def _cancel_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    @on(Button.Pressed, "#stage-ok")
    @on(Input.Submitted)
    def submit(self, event: Button.Pressed | Input.Submitted) -> None:
        event.stop()
        try:
            request = read_request(
                self.query_one("#stage-refs", TextArea).text,
                self.query_one("#stage-name", Input).value,
                self.query_one("#stage-expires", Input).value,
            )
        except ValueError as exc:
            error = self.query_one("#stage-error", Static)
            error.update(str(exc))
            error.display = True
            return
        self.dismiss(request)

    def action_cancel(self) -> None:
        self.dismiss(None)
