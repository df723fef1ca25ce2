"""The help screen and the command palette, generated from BINDINGS.

Each key is described once, in its Binding: `tooltip` says what it does (help and palette),
`description` is the footer's short label. Bindings of one `group` (the screen numbers) share
one help line: "<group description>: <description>, <description>…".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from textual.binding import Binding, BindingType

KEY_NAMES = {
    "question_mark": "?",
    "slash": "/",
    "escape": "esc",
    "delete": "del",
    "shift+tab": "shift+tab",
}


def key_label(binding: Binding) -> str:
    """`d / ctrl+d / del`: every key of a binding, as the technician types it."""
    if binding.key_display:
        return binding.key_display
    return " / ".join(KEY_NAMES.get(key.strip(), key.strip()) for key in binding.key.split(","))


@dataclass(frozen=True)
class KeyHelp:
    """One line of the help screen."""

    keys: str
    text: str


@dataclass(frozen=True)
class KeyAction:
    """One palette entry: what it does, its keys, and the action to run."""

    title: str
    keys: str
    action: str


def described(bindings: Iterable[BindingType]) -> list[Binding]:
    """The bindings that say what they do (a tooltip, or a place in a described group)."""
    return [
        b for b in bindings
        if isinstance(b, Binding) and (b.tooltip or (b.group is not None and b.description))
    ]


def help_lines(bindings: Iterable[BindingType]) -> list[KeyHelp]:
    lines: list[KeyHelp] = []
    grouped: dict[str, list[Binding]] = {}
    for binding in described(bindings):
        if binding.group is not None and not binding.tooltip:
            name = binding.group.description
            if name not in grouped:
                grouped[name] = []
                lines.append(KeyHelp("", name))  # placeholder, filled below
            grouped[name].append(binding)
        else:
            lines.append(KeyHelp(key_label(binding), binding.tooltip))
    for index, line in enumerate(lines):
        members = grouped.get(line.text) if not line.keys else None
        if members:
            keys = " ".join(key_label(b) for b in members)
            text = f"{line.text}: " + ", ".join(b.description for b in members)
            lines[index] = KeyHelp(keys, text)
    return lines


def palette_actions(bindings: Iterable[BindingType]) -> list[KeyAction]:
    actions: list[KeyAction] = []
    for binding in described(bindings):
        if binding.tooltip:
            text = binding.tooltip
        else:
            assert binding.group is not None
            text = f"{binding.group.description} {binding.description}"
        actions.append(KeyAction(text[:1].upper() + text[1:], key_label(binding), binding.action))
    return actions
