"""`?`: the keys of the app and of the screen shown, generated from their bindings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from console.keys import KeyHelp

KEYS_WIDTH = 16


@dataclass(frozen=True)
class HelpSection:
    title: str
    keys: Sequence[KeyHelp]
    notes: str = ""


def key_table(keys: Sequence[KeyHelp]) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(width=KEYS_WIDTH, no_wrap=True)
    table.add_column()
    for line in keys:
        table.add_row(Text(line.keys), Text(line.text))
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close", id="help.close"),
    ]

    def __init__(self, sections: Sequence[HelpSection]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"):
            yield Static("Keys", classes="help-heading")
            with VerticalScroll():
                for index, section in enumerate(self.sections):
                    if index:
                        yield Static(section.title, classes="help-heading", markup=False)
                    yield Static(key_table(section.keys))
                    if section.notes:
                        yield Static(section.notes, classes="help-notes", markup=False)
            yield Static("esc to close", classes="help-hint")

    def action_close(self) -> None:
        self.dismiss(None)
