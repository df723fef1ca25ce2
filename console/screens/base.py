"""What every pane of the console shares: access to the app, commands, refresh hooks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from textual.containers import Vertical
from textual.widget import Widget

if TYPE_CHECKING:
    from console.app import EdgeConsoleApp


@dataclass(frozen=True)
class Command:
    """One entry of the command palette."""

    title: str
    help: str
    callback: Callable[[], object]


class View(Vertical):
    """A pane of the tab bar: Device, Certificates, Images, Storage, Garbage collection."""

    tab_title = ""
    help_text = ""

    @property
    def edge(self) -> EdgeConsoleApp:
        from console.app import EdgeConsoleApp

        return cast(EdgeConsoleApp, self.app)

    def main_widget(self) -> Widget | None:
        """The widget that gets the focus when the pane is shown."""
        return None

    def focus_main(self) -> None:
        widget = self.main_widget()
        if widget is not None:
            widget.focus()

    def commands(self) -> list[Command]:
        return []

    def start_filter(self) -> bool:
        """`/` pressed on this pane; returns False when the pane has nothing to filter."""
        return False

    def data_changed(self) -> None:
        """The registry's content changed (a push, a delete, a GC): reload what is shown."""

    def shown(self) -> None:
        """The pane became the visible one."""
