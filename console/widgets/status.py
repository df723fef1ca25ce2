"""The header: product, endpoint, whether the server is up, and disk use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from console.theme import Role, Styles
from console.widgets.format import size

ServerMode = Literal["starting", "serving", "attached", "down", "stopped"]
MARKS: dict[ServerMode, str] = {
    "serving": "●", "attached": "◆", "starting": "…", "down": "✗", "stopped": "○",
}
ROLES: dict[ServerMode, Role] = {
    "serving": "success",
    "attached": "accent",
    "starting": "warning",
    "down": "error",
    "stopped": "warning",
}


@dataclass(frozen=True)
class ServerStatus:
    mode: ServerMode
    address: str = ""
    detail: str = ""
    """For `down`: the one-line reason; for `attached`: whose server (pid)."""
    requests: int | None = None

    def describe(self) -> str:
        if self.mode == "serving":
            return f"serving on {self.address}"
        if self.mode == "attached":
            return f"attached to {self.detail} on {self.address}"
        if self.mode == "starting":
            return f"starting on {self.address}…"
        if self.mode == "down":
            return f"DOWN: {self.detail}"
        return "not serving"

    def short(self) -> str:
        """For the header: the same, in fewer cells."""
        if self.mode == "serving":
            return f"serving {self.address}"
        if self.mode == "attached":
            return f"attached ({self.detail}) {self.address}"
        if self.mode == "starting":
            return "starting…"
        if self.mode == "down":
            return f"DOWN: {self.detail}"
        return "not serving"


@dataclass(frozen=True)
class DiskStatus:
    capacity_bytes: int
    free_bytes: int
    reserve_bytes: int

    @property
    def used_percent(self) -> int:
        if not self.capacity_bytes:
            return 0
        return round(100 * (self.capacity_bytes - self.free_bytes) / self.capacity_bytes)

    @property
    def low(self) -> bool:
        return self.free_bytes < self.reserve_bytes


class StatusHeader(Widget):
    """One line at the top of every screen."""

    DEFAULT_CSS = """
    StatusHeader { dock: top; height: 1; }
    """

    endpoint: reactive[str] = reactive("")
    server: reactive[ServerStatus] = reactive(ServerStatus("stopped"))
    disk: reactive[DiskStatus | None] = reactive(None)

    def on_mount(self) -> None:
        self.watch(self.app, "theme", self._theme_changed, init=False)

    def _theme_changed(self) -> None:
        self.refresh()

    def render(self) -> Text:
        styles = Styles(self.app)
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(" Edge Console ", style="bold reverse")
        text.append(f" {self.endpoint} ")
        mode = self.server.mode
        text.append("│ ", style="dim")
        text.append(f"{MARKS[mode]} {self.server.short()} ",
                    style=styles.text(ROLES[mode], bold=mode == "down"))
        if self.disk is not None:
            text.append("│ ", style="dim")
            disk = self.disk
            style = styles.text("error", bold=True) if disk.low else ""
            text.append(f"disk {disk.used_percent}%, {size(disk.free_bytes)} free", style=style)
        return text
