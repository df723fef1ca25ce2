"""A token's new password, shown once, over the Access screen: copy it before closing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

NOT_AGAIN = ("It will not be shown again: copy it now (c) and store it. The data dir keeps "
             "only its hash.")


@dataclass(frozen=True)
class ShownPassword:
    """What the modal shows: whose password, which slot, the password, and how to log in."""

    title: str
    username: str
    slot: int
    password: str
    expires: str
    """`never`, or when it stops working."""
    login: str
    """The docker login line for this token (the password typed or piped in)."""


class PasswordModal(ModalScreen[bool]):
    """Dismisses with True when the password was copied at least once (c or the Copy
    button, which leave it open), False when closed without."""

    AUTO_FOCUS = "#password-copy"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="password_modal.close"),
        Binding("c", "copy", "Copy", id="password_modal.copy"),
        Binding("left", "app.focus_previous", "Previous", show=False),
        Binding("right", "app.focus_next", "Next", show=False),
    ]

    def __init__(self, shown: ShownPassword) -> None:
        super().__init__()
        self.shown = shown
        self.copied = False

    def compose(self) -> ComposeResult:
        shown = self.shown
        facts = Table.grid(padding=(0, 2))
        facts.add_column(style="bold", no_wrap=True)
        facts.add_column()
        facts.add_row("Username", shown.username)
        facts.add_row(f"Password {shown.slot}", shown.password)
        facts.add_row("Expires", shown.expires)
        facts.add_row("Log in", shown.login)
        with Vertical(id="password-dialog"):
            yield Static(shown.title, id="password-title", markup=False)
            yield Static(facts, id="password-facts")
            yield Static(NOT_AGAIN, id="password-warning", markup=False)
            with Horizontal(id="password-buttons"):
                yield Button("Copy password", id="password-copy", variant="primary")
                yield Button("Close", id="password-close")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "password-copy":
            self.action_copy()
        else:
            self.action_close()

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.shown.password)
        self.copied = True
        self.query_one("#password-copy", Button).label = "Copied"
        self.app.notify(f"Password {self.shown.slot} of {self.shown.username} is on the "
                        "clipboard.", title="Copied password", timeout=4, markup=False)

    def action_close(self) -> None:
        self.dismiss(self.copied)
