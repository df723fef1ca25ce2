"""Horizontal bars drawn with block characters: capacity, and per-repository usage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style


@dataclass(frozen=True)
class Part:
    value: int
    style: Style
    char: str = "█"


@dataclass(frozen=True)
class Bar:
    """A bar `width` cells wide (0: the available width) split in proportion to its parts,
    out of `total` (the parts may sum to less: the rest is drawn as `rest_style`)."""

    parts: Sequence[Part]
    total: int
    width: int = 0
    rest_style: Style = field(default_factory=lambda: Style(dim=True))
    rest_char: str = "░"
    marker_at: int | None = None
    """A value at which to draw a `│` marker (the low-space reserve)."""
    marker_style: Style = field(default_factory=lambda: Style(bold=True))

    def cells(self, width: int) -> list[tuple[str, Style]]:
        total = max(self.total, 1)
        out: list[tuple[str, Style]] = []
        # Largest remainder: each part gets its fair share of cells; no visible part vanishes.
        exact = [part.value * width / total for part in self.parts]
        counts = [int(x) for x in exact]
        for index, part in enumerate(self.parts):
            if part.value > 0 and counts[index] == 0 and sum(counts) < width:
                counts[index] = 1
        for part, count in zip(self.parts, counts, strict=True):
            out.extend((part.char, part.style) for _ in range(count))
        out = out[:width]
        out.extend((self.rest_char, self.rest_style) for _ in range(width - len(out)))
        if self.marker_at is not None and 0 < self.marker_at < total:
            position = min(width - 1, round(self.marker_at * width / total))
            out[position] = ("│", self.marker_style)
        return out

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = self.width or options.max_width
        width = min(width, options.max_width)
        for char, style in self.cells(width):
            yield Segment(char, style)
        yield Segment.line()
