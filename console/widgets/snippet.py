"""A copyable snippet: a title, the text always visible, and enter / c to copy it."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Static


class Snippet(Static, can_focus=True):
    """Focus it (tab) and press enter or c: the text goes to the clipboard."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter,c", "copy", "Copy", id="snippet.copy", tooltip="copy the focused snippet"),
    ]
    IN_PALETTE: ClassVar[bool] = False
    """The palette cannot tell which snippet is meant: it has a command per snippet instead."""

    class CopyRequested(Message):
        def __init__(self, snippet: Snippet) -> None:
            super().__init__()
            self.snippet = snippet

    def __init__(
        self, title: str, text: str, *, what: str | None = None, id: str | None = None
    ) -> None:
        super().__init__(text, markup=False, id=id, classes="snippet")
        self.title = title
        self.text = text
        self.what = what or title
        self.border_title = title
        self.border_subtitle = "enter: copy"

    def set_text(self, title: str, text: str, what: str | None = None) -> None:
        self.title = title
        self.text = text
        self.what = what or title
        self.border_title = title
        self.update(text)

    def action_copy(self) -> None:
        self.post_message(self.CopyRequested(self))

    def on_click(self) -> None:
        self.focus()
