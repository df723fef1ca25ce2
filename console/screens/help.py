"""`?`: the keys of every screen."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

GLOBAL_KEYS = """\
1-5      switch screen: 1 Device, 2 Certificates, 3 Images, 4 Storage, 5 Garbage collection
tab      move between the fields of a screen (shift+tab: back)
ctrl+p   command palette: every action by name
/        filter the list on this screen
enter    open / drill down        esc   back / close
ctrl+t   light or dark theme      ?     this help        q   quit
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close", id="help.close"),
    ]

    def __init__(self, screen_title: str, screen_help: str) -> None:
        super().__init__()
        self.screen_title = screen_title
        self.screen_help = screen_help

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"):
            yield Static("Keys", classes="help-heading")
            with VerticalScroll():
                yield Static(GLOBAL_KEYS, markup=False)
                if self.screen_help:
                    yield Static(self.screen_title, classes="help-heading", markup=False)
                    yield Static(self.screen_help, markup=False)
            yield Static("esc to close", classes="help-hint")

    def action_close(self) -> None:
        self.dismiss(None)
