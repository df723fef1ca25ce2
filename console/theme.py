"""Rich styles from the app's theme: renderables built in Python follow the theme too."""

from __future__ import annotations

from typing import Any, Literal

from rich.style import Style
from textual.app import App
from textual.color import Color, ColorParseError

Role = Literal["primary", "secondary", "accent", "success", "warning", "error", "muted"]

TEXT_VARIABLES: dict[Role, str] = {
    "primary": "text-primary",
    "secondary": "text-secondary",
    "accent": "text-accent",
    "success": "text-success",
    "warning": "text-warning",
    "error": "text-error",
    "muted": "foreground-muted",
}
"""Variables for text: readable on the theme's background."""

FILL_VARIABLES: dict[Role, str] = {
    "primary": "primary",
    "secondary": "secondary",
    "accent": "accent",
    "success": "success",
    "warning": "warning",
    "error": "error",
    "muted": "foreground-muted",
}
"""Variables for blocks of colour (bars)."""


class Styles:
    """The theme's colours of one moment, by role."""

    def __init__(self, app: App[Any]) -> None:
        self.variables = dict(app.theme_variables)

    def _style(self, name: str, bold: bool) -> Style:
        try:
            colour = Color.parse(self.variables.get(name, "")).rich_color
        except ColorParseError:
            return Style(bold=bold)
        return Style(color=colour, bold=bold)

    def text(self, role: Role, *, bold: bool = False) -> Style:
        return self._style(TEXT_VARIABLES[role], bold)

    def fill(self, role: Role) -> Style:
        return self._style(FILL_VARIABLES[role], False)


def theme_style(app: App[Any], role: Role, *, bold: bool = False) -> Style:
    """The theme's text colour for `role` as a Rich style."""
    return Styles(app).text(role, bold=bold)
