"""A new client token, over the Access screen: its name, its scopes and an optional expiry.

Bad input is said in the dialog, which stays open and creates nothing. The token is made by
the dialog itself (in a worker: hashing the password is slow on purpose), so that a refusal
of the core (a name already taken) is said there too; it dismisses with the new password.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from registry_core.access.scopes import ACTIONS, Rule, parse_scopes
from registry_core.access.tokens import MAX_EXPIRY_DAYS, NAME_RE, IssuedPassword
from registry_core.errors import EdgeError

SCOPES_HINT = (
    "Scopes: PATTERN:ACTION[,ACTION], several separated by spaces. PATTERN is a repository, "
    f"NAME/* or *; actions: {', '.join(ACTIONS)}."
)


@dataclass(frozen=True)
class TokenRequest:
    """The dialog's fields, checked."""

    name: str
    rules: tuple[Rule, ...]
    expires_days: float | None


def read_request(name: str, scopes: str, expires: str) -> TokenRequest:
    """The fields as a request; ValueError with a one-line message when one is wrong."""
    name = name.strip()
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"name {name[:70]!r}: 1-64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    try:
        rules = parse_scopes([s for s in re.split(r"[\s;]+", scopes) if s])
    except EdgeError as exc:
        raise ValueError(str(exc)) from None
    days: float | None = None
    if expires.strip():
        try:
            days = float(expires)
        except ValueError:
            days = -1.0
        if not 0 < days <= MAX_EXPIRY_DAYS:
            raise ValueError(f"expiry {expires.strip()[:20]!r}: a number of days above 0, at "
                             f"most {MAX_EXPIRY_DAYS} (empty: never)")
    return TokenRequest(name, rules, days)


class Created(Message):
    def __init__(self, issued: IssuedPassword | None, error: str = "") -> None:
        super().__init__()
        self.issued = issued
        self.error = error


class TokenDialog(ModalScreen[IssuedPassword | None]):
    """Dismisses with the new token's password once it is made; None when cancelled."""

    AUTO_FOCUS = "#token-name"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="token_dialog.cancel"),
    ]

    def __init__(self, create: Callable[[TokenRequest], IssuedPassword]) -> None:
        super().__init__()
        self.create = create
        self.creating = False
        """A creation runs: the dialog stays until it answers (its password is shown once)."""

    def compose(self) -> ComposeResult:
        with Vertical(id="token-dialog"):
            yield Static("New client token", id="token-title", markup=False)
            with Horizontal(classes="token-field"):
                yield Label("Name", classes="token-label")
                yield Input(id="token-name", placeholder="ci-runner", compact=True)
            with Horizontal(classes="token-field"):
                yield Label("Scopes", classes="token-label")
                yield Input(id="token-scopes", compact=True,
                            placeholder="app/*:content/read,metadata/read")
            with Horizontal(classes="token-field"):
                yield Label("Expires", classes="token-label")
                yield Input(id="token-expires", compact=True,
                            placeholder="days until password 1 stops working; empty: never")
            yield Static(SCOPES_HINT, id="token-hint", markup=False)
            error = Static("", id="token-error", markup=False)
            error.display = False
            yield error
            with Horizontal(id="token-buttons"):
                yield Button("Cancel", id="token-cancel")
                yield Button("Create", id="token-ok", variant="success")

    @on(Button.Pressed, "#token-cancel")
    def _cancel_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_cancel()

    @on(Button.Pressed, "#token-ok")
    @on(Input.Submitted)
    def submit(self, event: Button.Pressed | Input.Submitted) -> None:
        event.stop()
        if self.creating:
            return
        try:
            request = read_request(
                self.query_one("#token-name", Input).value,
                self.query_one("#token-scopes", Input).value,
                self.query_one("#token-expires", Input).value,
            )
        except ValueError as exc:
            self.say(str(exc))
            return
        self.creating = True
        ok = self.query_one("#token-ok", Button)
        ok.disabled = True
        ok.label = "Creating…"
        self.run_create(request)

    @work(thread=True, exclusive=True, group="token-create", exit_on_error=False)
    def run_create(self, request: TokenRequest) -> None:
        try:
            issued = self.create(request)
        except (EdgeError, OSError) as exc:
            self.post_message(Created(None, str(exc)))
            return
        self.post_message(Created(issued))

    @on(Created)
    def _created(self, message: Created) -> None:
        if message.issued is not None:
            self.dismiss(message.issued)
            return
        self.creating = False
        ok = self.query_one("#token-ok", Button)
        ok.disabled = False
        ok.label = "Create"
        self.say(f"Not created: {message.error}")

    def say(self, text: str) -> None:
        error = self.query_one("#token-error", Static)
        error.update(text)
        error.display = True

    def action_cancel(self) -> None:
        if not self.creating:
            self.dismiss(None)
