"""The scopes of a client token, over the Access screen: one `PATTERN:ACTION[,ACTION]` a line,
prefilled with what the token has now.

Bad input is said in the dialog, which stays open and changes nothing. The change is made by
the dialog itself (in a worker), so that a refusal of the core (the token deleted meanwhile)
is said there too; it dismisses with the change. The frame is styled as the new-token dialog's
(its ids, in edge_console.tcss); only the editor's height is set here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Static, TextArea

from registry_core.access.scopes import ACTIONS, Rule, parse_scope
from registry_core.access.tokens import ScopeChange, TokenInfo
from registry_core.errors import EdgeError

SCOPES_HINT = (
    "One PATTERN:ACTION[,ACTION] a line; they replace all the token has. PATTERN is a "
    f"repository, NAME/* or *; actions: {', '.join(ACTIONS)}. Its passwords keep working; "
    "its clients may do only what these grant from their next request. ctrl+s saves."
)


def read_scopes(text: str) -> tuple[Rule, ...]:
    """The non-blank lines as rules; ValueError with a one-line message naming the bad line."""
    rules = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rules.append(parse_scope(line))
        except EdgeError as exc:
            raise ValueError(f"line {number}: {exc}") from None
    if not rules:
        raise ValueError("give at least one scope, PATTERN:ACTION[,ACTION...]")
    return tuple(rules)


def shared_note(token: TokenInfo, shared_with: tuple[str, ...]) -> str:
    """What else changes: '' when the token's scope map is its own."""
    if not shared_with:
        return ""
    return (f"Scope map {token.scope_map.name} is shared: token(s) {', '.join(shared_with)} "
            "get these scopes too.")


class Saved(Message):
    def __init__(self, change: ScopeChange | None, error: str = "") -> None:
        super().__init__()
        self.change = change
        self.error = error


class ScopeDialog(ModalScreen[ScopeChange | None]):
    """Dismisses with the change once it is made; None when cancelled."""

    AUTO_FOCUS = "#scope-rules"
    DEFAULT_CSS = """
    #scope-rules {
        height: 8;
        margin: 1 0;
    }
    #scope-shared {
        color: $text-warning;
        margin-top: 1;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="scope_dialog.cancel"),
        Binding("ctrl+s", "save", "Save", id="scope_dialog.save"),
    ]

    def __init__(self, token: TokenInfo, shared_with: tuple[str, ...],
                 apply: Callable[[tuple[Rule, ...]], ScopeChange]) -> None:
        super().__init__()
        self.token = token
        self.shared_with = shared_with
        self.apply = apply
        self.saving = False

    def compose(self) -> ComposeResult:
        with Vertical(id="token-dialog"):
            yield Static(f"Scopes of {self.token.name}", id="token-title", markup=False)
            yield Static(SCOPES_HINT, id="token-hint", markup=False)
            note = shared_note(self.token, self.shared_with)
            if note:
                yield Static(note, id="scope-shared", markup=False)
            yield TextArea("\n".join(self.token.scopes), id="scope-rules", soft_wrap=True,
                           show_line_numbers=False)
            error = Static("", id="token-error", markup=False)
            error.display = False
            yield error
            with Horizontal(id="token-buttons"):
                yield Button("Cancel", id="scope-cancel")
                yield Button("Save", id="scope-ok", variant="success")

    @on(Button.Pressed, "#scope-cancel")
    def _cancel_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_cancel()

    @on(Button.Pressed, "#scope-ok")
    def _save_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_save()

    def action_save(self) -> None:
        if self.saving:
            return
        try:
            rules = read_scopes(self.query_one("#scope-rules", TextArea).text)
        except ValueError as exc:
            self.say(str(exc))
            return
        self.saving = True
        self.query_one("#scope-ok", Button).disabled = True
        self.run_apply(rules)

    @work(thread=True, exclusive=True, group="scope-save", exit_on_error=False)
    def run_apply(self, rules: tuple[Rule, ...]) -> None:
        try:
            change = self.apply(rules)
        except (EdgeError, OSError) as exc:
            self.post_message(Saved(None, str(exc)))
            return
        self.post_message(Saved(change))

    @on(Saved)
    def _saved(self, message: Saved) -> None:
        if message.change is not None:
            self.dismiss(message.change)
            return
        self.saving = False
        self.query_one("#scope-ok", Button).disabled = False
        self.say(f"Not changed: {message.error}")

    def say(self, text: str) -> None:
        error = self.query_one("#token-error", Static)
        error.update(text)
        error.display = True

    def action_cancel(self) -> None:
        if not self.saving:
            self.dismiss(None)
