"""A virtual table on Textual's line API: fast at a million rows.

Only the visible lines are ever formatted. Rows are kept as the caller's tuples; the sorted
order and the filtered view are lists of row indices; the lowercase search text of each row
is built in a thread after the first paint (or on the first filter keystroke, if sooner).
A filter that extends the previous one narrows the previous view instead of scanning again.
On big tables a filter scans the first SYNC_SCAN_ROWS rows at once, paints, and finishes
the scan in a thread, in chunks: a keystroke answers in milliseconds at any size, and a
newer keystroke abandons the older scan.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from typing import Any, ClassVar, Literal

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

Row = tuple[Any, ...]
Formatter = Callable[[Any], str]

SYNC_SCAN_ROWS = 131_072
"""Rows a filter scans before the first paint; the rest is scanned by a worker."""
SCAN_CHUNK_ROWS = 16_384


@dataclass(frozen=True)
class Column:
    """One column: `index` into the row tuple, a fixed `width` (0: takes the spare width)."""

    key: str
    label: str
    index: int
    width: int = 0
    align: Literal["left", "right"] = "left"
    format: Formatter | None = None
    min_width: int = 8
    searchable: bool = True


def fit(text: str, width: int, align: Literal["left", "right"] = "left") -> str:
    """`text` cut or padded to exactly `width` cells (ASCII text: names, tags, digests)."""
    if width <= 0:
        return ""
    if len(text) > width:
        return text[: width - 1] + "…" if width > 1 else text[:width]
    return text.rjust(width) if align == "right" else text.ljust(width)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _sort_key(value: Any) -> tuple[bool, Any]:
    return (value is None, value if value is not None else 0)


class VirtualTable(ScrollView, can_focus=True):
    """Columns, a cursor, sort and filter over any number of rows."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor_up", "Up", show=False, id="table.up"),
        Binding("down,j", "cursor_down", "Down", show=False, id="table.down"),
        Binding("pageup", "page_up", "Page up", show=False, id="table.page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="table.page_down"),
        Binding("home", "first", "First", show=False, id="table.first"),
        Binding("end", "last", "Last", show=False, id="table.last"),
        Binding("enter", "select", "Open", id="table.select",
                tooltip="open: repository → its tags → the manifest (layers, platforms, "
                "referrers)"),
        Binding("s", "cycle_sort", "Sort", id="table.sort", tooltip="sort by the next column"),
        Binding("S", "reverse_sort", "Reverse", show=False, id="table.reverse",
                tooltip="reverse the sort"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "virtual-table--header",
        "virtual-table--cursor",
        "virtual-table--cursor-blurred",
        "virtual-table--row",
        "virtual-table--empty",
    }

    DEFAULT_CSS = """
    VirtualTable { height: 1fr; }
    """

    cursor: reactive[int] = reactive(0, always_update=True, layout=False, repaint=False)

    class Highlighted(Message):
        """The cursor moved to `row` (None when the view is empty)."""

        def __init__(self, table: VirtualTable, row: Row | None) -> None:
            super().__init__()
            self.table = table
            self.row = row

        @property
        def control(self) -> VirtualTable:
            return self.table

    class Selected(Message):
        """Enter (or a double click) on `row`."""

        def __init__(self, table: VirtualTable, row: Row) -> None:
            super().__init__()
            self.table = table
            self.row = row

        @property
        def control(self) -> VirtualTable:
            return self.table

    def __init__(
        self,
        columns: Sequence[Column] = (),
        *,
        empty_text: str = "Nothing here.",
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.empty_text = empty_text
        self._columns: list[Column] = list(columns)
        self._rows: list[Row] = []
        self._order: Sequence[int] = range(0)
        self._view: Sequence[int] = range(0)
        self._search: list[str] | None = None
        self._search_ordered: list[str] | None = None
        self._needle = ""
        self._sort_column: str | None = None
        self._sort_reverse = False
        self._widths: list[int] = []
        self._generation = 0
        self._scan_generation = 0
        self._scan_complete = True

    # ---- data ------------------------------------------------------------------------------

    @property
    def columns(self) -> list[Column]:
        return self._columns

    @property
    def rows(self) -> list[Row]:
        return self._rows

    @property
    def row_count(self) -> int:
        """Rows in the (filtered) view."""
        return len(self._view)

    @property
    def total_count(self) -> int:
        return len(self._rows)

    @property
    def filtering(self) -> bool:
        """True while a filter scan is still finding rows (row_count may still grow)."""
        return not self._scan_complete

    @property
    def filter_text(self) -> str:
        return self._needle

    @property
    def sort_column(self) -> str | None:
        return self._sort_column

    @property
    def sort_reverse(self) -> bool:
        return self._sort_reverse

    @property
    def cursor_row(self) -> Row | None:
        if 0 <= self.cursor < len(self._view):
            return self._rows[self._view[self.cursor]]
        return None

    def view_rows(self) -> list[Row]:
        """The rows in view order (filtered and sorted); for tests and small exports."""
        return [self._rows[i] for i in self._view]

    def set_columns(self, columns: Sequence[Column]) -> None:
        self._columns = list(columns)
        if self._sort_column not in {c.key for c in self._columns}:
            self._sort_column, self._sort_reverse = None, False
        self._search = self._search_ordered = None
        self._layout_columns()
        self.refresh()

    def set_rows(
        self, rows: list[Row], *, keep: Callable[[Row], Any] | None = None
    ) -> None:
        """Replace the rows; sort and filter are kept, and so is the cursor's row when `keep`
        maps rows to a stable key (a digest, a name)."""
        kept_key = None
        current = self.cursor_row
        if keep is not None and current is not None:
            kept_key = keep(current)
        self._generation += 1
        self._rows = rows
        self._search = None
        self._search_ordered = None
        self._order = self._sorted_order()
        if self._needle:
            self._build_search()
            self._start_scan(self._needle, self._order, None)
        else:
            self._stop_scan()
            self._view = self._order
        cursor = 0
        if kept_key is not None and keep is not None:
            same = self.cursor < len(self._view) and keep(rows[self._view[self.cursor]])
            if same == kept_key:
                cursor = self.cursor
            else:
                for position, index in enumerate(self._view):
                    if keep(rows[index]) == kept_key:
                        cursor = position
                        break
        self._after_view_change(cursor)
        if self._search is None and len(rows) > 5000:
            generation = self._generation
            self.call_after_refresh(self._start_index_build, generation)

    def _start_index_build(self, generation: int) -> None:
        if generation == self._generation and self._search is None:
            self.run_worker(
                lambda: self._build_search(generation),
                thread=True,
                exclusive=True,
                group="virtual-table-index",
                exit_on_error=False,
            )

    def _build_search(self, generation: int | None = None) -> None:
        """The lowercase search text of each row, and the same in sorted order."""
        rows = self._rows
        indices = [c.index for c in self._columns if c.searchable]
        if len(indices) == 1:
            only = indices[0]
            search = [_text(row[only]).lower() for row in rows]
        else:
            getter = operator.itemgetter(*indices)
            search = ["\t".join(map(_text, getter(row))).lower() for row in rows]
        if generation is not None and generation != self._generation:
            return
        ordered = search if self._order_is_identity() else [search[i] for i in self._order]
        if generation is not None and generation != self._generation:
            return
        self._search, self._search_ordered = search, ordered

    def _order_is_identity(self) -> bool:
        return self._sort_column is None

    def _sorted_order(self) -> Sequence[int]:
        n = len(self._rows)
        if self._sort_column is None:
            return range(n)
        column = self._column(self._sort_column)
        rows = self._rows
        index = column.index
        return sorted(
            range(n), key=lambda i: _sort_key(rows[i][index]), reverse=self._sort_reverse
        )

    def _column(self, key: str) -> Column:
        for column in self._columns:
            if column.key == key:
                return column
        raise KeyError(key)

    # ---- filter and sort -------------------------------------------------------------------

    def filter(self, text: str) -> int:
        """Show the rows whose text contains `text` (case-insensitive); returns the count."""
        needle = text.strip().lower()
        if needle == self._needle:
            return len(self._view)
        previous, previous_view = self._needle, self._view
        narrowing = bool(previous) and previous in needle and self._scan_complete
        self._needle = needle
        if not needle:
            self._stop_scan()
            self._view = self._order
        else:
            if self._search is None:
                self._build_search()
            if narrowing:
                self._start_scan(needle, previous_view, self._search)
            else:
                self._start_scan(needle, self._order, None)
        self._after_view_change(0)
        return len(self._view)

    def _stop_scan(self) -> None:
        self._scan_generation += 1
        self._scan_complete = True

    def _start_scan(
        self, needle: str, indices: Sequence[int], by_index: list[str] | None
    ) -> None:
        """Filter `indices` (the sorted order, or a previous view to narrow): the first
        SYNC_SCAN_ROWS now, the rest in a worker that appends to the view as it goes.

        `by_index` None: the texts are `_search_ordered`, aligned with `indices`; otherwise
        the text of index i is by_index[i]."""
        self._stop_scan()
        texts = self._search_ordered if by_index is None else by_index
        assert texts is not None
        aligned = by_index is None
        self._view = _scan_slice(needle, indices, texts, aligned, 0, SYNC_SCAN_ROWS)
        if len(indices) <= SYNC_SCAN_ROWS:
            return
        self._scan_complete = False
        generation = self._scan_generation
        self.run_worker(
            lambda: self._scan_rest(generation, needle, indices, texts, aligned),
            thread=True,
            group="virtual-table-filter",
            exit_on_error=False,
        )

    def _scan_rest(
        self,
        generation: int,
        needle: str,
        indices: Sequence[int],
        texts: list[str],
        aligned: bool,
    ) -> None:
        for start in range(SYNC_SCAN_ROWS, len(indices), SCAN_CHUNK_ROWS):
            if generation != self._scan_generation:
                return
            part = _scan_slice(needle, indices, texts, aligned, start, start + SCAN_CHUNK_ROWS)
            done = start + SCAN_CHUNK_ROWS >= len(indices)
            self.app.call_from_thread(self._extend_view, generation, part, done)

    def _extend_view(self, generation: int, part: list[int], done: bool) -> None:
        if generation != self._scan_generation:
            return
        view = self._view
        assert isinstance(view, list)
        view.extend(part)
        if done:
            self._scan_complete = True
        self.virtual_size = Size(self._content_width(), len(view) + 1)
        if part or done:
            self.refresh()
            self.post_message(self.Highlighted(self, self.cursor_row))

    def sort_by(self, key: str | None, reverse: bool = False) -> None:
        """Sort by the column `key` (None: the rows' own order)."""
        current = self.cursor_row
        self._sort_column, self._sort_reverse = key, reverse
        self._order = self._sorted_order()
        if self._search is not None:
            search = self._search
            self._search_ordered = (
                search if self._order_is_identity() else [search[i] for i in self._order]
            )
        needle, self._needle = self._needle, ""
        self._stop_scan()
        self._view = self._order
        if needle:
            self.filter(needle)
        cursor = 0
        if current is not None:
            for position, index in enumerate(self._view):
                if self._rows[index] is current:
                    cursor = position
                    break
        self._after_view_change(cursor)

    def action_cycle_sort(self) -> None:
        keys: list[str | None] = [None, *(c.key for c in self._columns)]
        position = keys.index(self._sort_column) if self._sort_column in keys else 0
        self.sort_by(keys[(position + 1) % len(keys)], self._sort_reverse)

    def action_reverse_sort(self) -> None:
        self.sort_by(self._sort_column or self._columns[0].key, not self._sort_reverse)

    # ---- layout and painting ---------------------------------------------------------------

    def _after_view_change(self, cursor: int) -> None:
        self._layout_columns()
        self.virtual_size = Size(self._content_width(), len(self._view) + 1)
        self.cursor = max(0, min(cursor, len(self._view) - 1))
        self._scroll_cursor_into_view()
        self.refresh()
        self.post_message(self.Highlighted(self, self.cursor_row))

    def _content_width(self) -> int:
        return sum(self._widths) + max(0, len(self._widths) - 1)

    def _layout_columns(self) -> None:
        available = self.scrollable_content_region.width or self.size.width or 80
        fixed = sum(c.width for c in self._columns if c.width) + max(0, len(self._columns) - 1)
        flex = [c for c in self._columns if not c.width]
        spare = max(0, available - fixed)
        widths: list[int] = []
        for column in self._columns:
            if column.width:
                widths.append(column.width)
            else:
                share = spare // len(flex) if flex else 0
                widths.append(max(column.min_width, share))
        self._widths = widths

    def on_resize(self, event: events.Resize) -> None:
        self._layout_columns()
        self.virtual_size = Size(self._content_width(), len(self._view) + 1)
        self._scroll_cursor_into_view()

    def _header_text(self) -> str:
        parts: list[str] = []
        for column, width in zip(self._columns, self._widths, strict=False):
            label = column.label
            if column.key == self._sort_column:
                label = f"{label} {'▼' if self._sort_reverse else '▲'}"
            parts.append(fit(label, width, column.align))
        return " ".join(parts)

    def format_row(self, row: Row) -> str:
        parts: list[str] = []
        for column, width in zip(self._columns, self._widths, strict=False):
            value = row[column.index]
            text = column.format(value) if column.format else ("" if value is None else str(value))
            parts.append(fit(text, width, column.align))
        return " ".join(parts)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        scroll_x, scroll_y = self.scroll_offset
        if y == 0:
            style = self.get_component_rich_style("virtual-table--header")
            return self._strip(self._header_text(), style, scroll_x, width)
        position = scroll_y + y - 1
        if not self._view:
            if y == 1:
                style = self.get_component_rich_style("virtual-table--empty")
                text = self.empty_text if not self._needle else f"No match for {self._needle!r}."
                return self._strip(" " + text, style, 0, width)
            return Strip.blank(width, self.rich_style)
        if position >= len(self._view):
            return Strip.blank(width, self.rich_style)
        text = self.format_row(self._rows[self._view[position]])
        if position == self.cursor:
            name = "virtual-table--cursor" if self.has_focus else "virtual-table--cursor-blurred"
            style = self.get_component_rich_style(name)
        else:
            style = self.get_component_rich_style("virtual-table--row")
        return self._strip(text, style, scroll_x, width)

    def _strip(self, text: str, style: Style, scroll_x: int, width: int) -> Strip:
        visible = text[scroll_x : scroll_x + width]
        if len(visible) < width:
            visible = visible.ljust(width)
        return Strip([Segment(visible, style)], width)

    # ---- cursor ----------------------------------------------------------------------------

    def watch_cursor(self, old: int, new: int) -> None:
        self._refresh_position(old)
        self._refresh_position(new)

    def _refresh_position(self, position: int) -> None:
        self.refresh_line(position + 1)

    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _scroll_cursor_into_view(self) -> None:
        height = self._page()
        top = round(self.scroll_offset.y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False, immediate=True)

    def move_cursor(self, position: int) -> None:
        if not self._view:
            return
        position = max(0, min(position, len(self._view) - 1))
        if position != self.cursor:
            self.cursor = position
            self._scroll_cursor_into_view()
            self.post_message(self.Highlighted(self, self.cursor_row))

    def action_cursor_up(self) -> None:
        self.move_cursor(self.cursor - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self.cursor + 1)

    def action_page_up(self) -> None:
        self.move_cursor(self.cursor - self._page())

    def action_page_down(self) -> None:
        self.move_cursor(self.cursor + self._page())

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(len(self._view) - 1)

    def action_select(self) -> None:
        row = self.cursor_row
        if row is not None:
            self.post_message(self.Selected(self, row))

    def on_click(self, event: events.Click) -> None:
        if event.y == 0 or not self._view:
            return
        position = round(self.scroll_offset.y) + event.y - 1
        if 0 <= position < len(self._view):
            self.move_cursor(position)
            if event.chain >= 2:
                self.action_select()

    def on_focus(self) -> None:
        self._refresh_position(self.cursor)

    def on_blur(self) -> None:
        self._refresh_position(self.cursor)


def _scan_slice(
    needle: str,
    indices: Sequence[int],
    texts: list[str],
    aligned: bool,
    start: int,
    stop: int,
) -> list[int]:
    """The indices in indices[start:stop] whose text contains `needle` (C-speed loop)."""
    chunk = indices[start:stop]
    chunk_texts = texts[start:stop] if aligned else map(texts.__getitem__, chunk)
    return list(compress(chunk, map(operator.contains, chunk_texts, repeat(needle))))
