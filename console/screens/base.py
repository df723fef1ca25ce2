"""What every pane of the console shares: its context, keys, commands and refresh hooks."""

from __future__ import annotations

from typing import ClassVar, cast

from rich.style import Style
from textual.binding import BindingType
from textual.containers import Vertical
from textual.dom import DOMNode
from textual.widget import Widget

from console.context import Command, ConsoleContext
from console.keys import KeyAction, described, palette_actions
from console.theme import Role, theme_style


class View(Vertical):
    """A pane of the tab bar: Device, Certificates, Images, Storage, Garbage collection.

    Its state lives in reactives whose `watch_*` methods paint; `repaint` paints everything
    again (the theme changed)."""

    tab_id: ClassVar[str] = ""
    tab_title: ClassVar[str] = ""
    help_notes: ClassVar[str] = ""
    """Prose for the help screen beyond the keys (each key says what it does itself)."""
    can_filter: ClassVar[bool] = False

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.stale = False

    @property
    def edge(self) -> ConsoleContext:
        return cast(ConsoleContext, self.app)

    def on_mount(self) -> None:
        self.watch(self.app, "theme", self._theme_changed, init=False)

    def _theme_changed(self) -> None:
        self.repaint()

    def style(self, role: Role, *, bold: bool = False) -> Style:
        return theme_style(self.app, role, bold=bold)

    def main_widget(self) -> Widget | None:
        """The widget that gets the focus when the pane is shown."""
        return None

    def focus_main(self) -> None:
        widget = self.main_widget()
        if widget is not None:
            widget.focus()

    # ---- keys and commands -------------------------------------------------------------------

    def key_owners(self) -> list[DOMNode]:
        """The pane and one widget of each kind inside it that has described keys."""
        owners: list[DOMNode] = [self]
        seen: set[type[DOMNode]] = {type(self)}
        for node in self.walk_children(with_self=False):
            kind = type(node)
            if kind not in seen and described(kind.BINDINGS):
                seen.add(kind)
                owners.append(node)
        return owners

    def help_bindings(self) -> list[BindingType]:
        return [b for owner in self.key_owners() for b in type(owner).BINDINGS]

    def palette_actions(self) -> list[tuple[KeyAction, DOMNode]]:
        return [
            (action, owner)
            for owner in self.key_owners()
            if getattr(type(owner), "IN_PALETTE", True)
            for action in palette_actions(type(owner).BINDINGS)
        ]

    def commands(self) -> list[Command]:
        """Palette entries beyond the keys (none by default)."""
        return []

    # ---- refresh -----------------------------------------------------------------------------

    def start_filter(self) -> None:
        """`/` pressed on this pane (only when `can_filter`)."""

    def data_changed(self) -> None:
        """The registry's content changed (a push, a delete, a GC): reload what is shown now,
        or when the pane is next shown."""
        if self.edge.active_tab() != self.tab_id:
            self.stale = True
            return
        self.reload()

    def shown(self) -> None:
        """The pane became the visible one."""
        if self.stale:
            self.stale = False
            self.reload()

    def reload(self) -> None:
        """Load what the pane shows again."""

    def repaint(self) -> None:
        """Paint every renderable again from the current state."""
