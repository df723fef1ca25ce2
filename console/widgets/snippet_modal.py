"""A text to read and copy, over the screen: the pod snippet of an image in use."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class SnippetModal(ModalScreen[bool]):
    """Dismisses with True when the technician copies the text (c, or the Copy button),
    False when closed (esc, or Close)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="snippet_modal.close"),
        Binding("c", "copy", "Copy", id="snippet_modal.copy"),
        Binding("left", "app.focus_previous", "Previous", show=False),
        Binding("right", "app.focus_next", "Next", show=False),
    ]

    def __init__(self, title: str, text: str, *, hint: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.text = text
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(id="snippet-dialog"):
            yield Static(self.title_text, id="snippet-title", markup=False)
            with VerticalScroll(id="snippet-body-scroll"):
                yield Static(self.text, id="snippet-body", markup=False)
            if self.hint:
                yield Static(self.hint, id="snippet-hint", markup=False)
            with Horizontal(id="snippet-buttons"):
                yield Button("Copy", id="snippet-copy", variant="primary")
                yield Button("Close", id="snippet-close")

    def on_mount(self) -> None:
        self.query_one("#snippet-copy", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "snippet-copy")

    def action_copy(self) -> None:
        self.dismiss(True)

    def action_close(self) -> None:
        self.dismiss(False)
