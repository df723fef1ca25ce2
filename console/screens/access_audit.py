"""The audit log on the Access screen: a virtual table paged from the store, newest first.

Only pages are ever read (keyset paging on the row id: `before_id` of the last row shown),
the next one when the cursor nears the end of what is loaded, so the table answers at once
with any number of rows. The filter (`/`) is the store's: rows whose principal, action or
repository contain the text, read again page by page. When rows arrive (the console's poller
saw a commit), the first page is read again and only the newer rows are put on top.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar, Literal

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Input, Static

from console.context import ConsoleContext
from console.widgets.format import short_digest
from console.widgets.snippet_modal import SnippetModal
from console.widgets.virtual_table import Column, Row, VirtualTable
from registry_core.access.audit import AuditEntry, AuditFilter
from registry_core.errors import EdgeError

PAGE = 200
"""Rows read at a time."""
MORE_MARGIN = 50
"""Read the next page when the cursor comes this close to the last loaded row."""
Mode = Literal["replace", "newer", "older"]

# A row: (id, at, principal, address, action, repository, reference, result, entry)


class AuditTable(VirtualTable, inherit_bindings=False):
    """The virtual table with the keys that make sense over a paged log (no sort: it is
    always newest first; enter opens an entry)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor_up", "Up", show=False, id="audit.up"),
        Binding("down,j", "cursor_down", "Down", show=False, id="audit.down"),
        Binding("left", "scroll_left", "Left", show=False, id="audit.left"),
        Binding("right", "scroll_right", "Right", show=False, id="audit.right"),
        Binding("pageup", "page_up", "Page up", show=False, id="audit.page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="audit.page_down"),
        Binding("home", "first", "First", show=False, id="audit.first"),
        Binding("end", "last", "Last", show=False, id="audit.last"),
        Binding("enter", "select", "Entry", id="audit.select",
                tooltip="the highlighted audit entry in full (time, address, detail)"),
    ]


def audit_row(entry: AuditEntry) -> Row:
    count = entry.detail.get("count")
    result = f"{entry.result} x{count}" if count else entry.result
    return (entry.id, entry.at, entry.principal, entry.address, entry.action,
            entry.repository, entry.reference, result, entry)


def stamp(at: float | None) -> str:
    """`11-30 01:33` in UTC (the year and seconds are in the entry's detail: enter)."""
    if at is None:
        return "-"
    return f"{dt.datetime.fromtimestamp(at, dt.UTC):%m-%d %H:%M}"


def reference_text(value: object) -> str:
    text = "" if value is None else str(value)
    return short_digest(text, 5) if ":" in text else text


COLUMNS = [
    Column("time", "Time (UTC)", 1, width=11, format=stamp, searchable=False),
    Column("principal", "Principal", 2, min_width=7),
    Column("address", "Address", 3, width=13, format=lambda v: v or "-"),
    Column("action", "Action", 4, width=13),
    Column("repository", "Repository", 5, min_width=7, format=lambda v: v or "-"),
    Column("reference", "Reference", 6, width=12, format=reference_text),
    Column("result", "Result", 7, width=6),
]


def entry_text(entry: AuditEntry) -> str:
    """An entry in full, for its modal."""
    at = dt.datetime.fromtimestamp(entry.at, dt.UTC)
    lines = [
        f"Time        {at:%Y-%m-%d %H:%M:%S.%f}"[:-3] + " UTC",
        f"Principal   {entry.principal} ({entry.principal_kind})",
        f"Address     {entry.address or '- (at the appliance)'}",
        f"Action      {entry.action}",
        f"Repository  {entry.repository or '-'}",
        f"Reference   {entry.reference or '-'}",
        f"Result      {entry.result}",
    ]
    for key, value in sorted(entry.detail.items()):
        lines.append(f"{key:<11} {value}")
    return "\n".join(lines)


class AuditPage(Message):
    """Rows read from the store for one read request."""

    def __init__(self, number: int, generation: int, mode: Mode, entries: list[AuditEntry],
                 count: int | None, error: str = "") -> None:
        super().__init__()
        self.number = number
        self.generation = generation
        self.mode = mode
        self.entries = entries
        self.count = count
        self.error = error


class AuditPanel(Vertical):
    """The log's title and count, the filter box and the table."""

    needle: reactive[str] = reactive("", init=False)
    """The filter text (empty: every row)."""
    count: reactive[int | None] = reactive(None, init=False)
    """Rows the filter keeps in the whole log (None: not read yet)."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.pages_read = 0
        """Pages read from the store so far (tests check that only pages are read)."""
        self._reads = 0
        self._replace = 0
        """The number of the newest full read; an older one's answer is dropped."""
        self._generation = 0
        """Moves with every full read; a page asked for before it is dropped."""
        self._more = False
        """The last older page was full: there may be more below."""
        self._reading_older = False

    @property
    def edge(self) -> ConsoleContext:
        return self.app  # type: ignore[return-value]

    @property
    def table(self) -> AuditTable:
        return self.query_one("#audit-table", AuditTable)

    def compose(self) -> ComposeResult:
        with Horizontal(id="audit-top"):
            yield Static("Audit log", id="audit-title", classes="section")
            yield Static("", id="audit-count")
        yield Input(id="audit-filter", compact=True,
                    placeholder="filter: principal, action or repository contains…")
        yield AuditTable(COLUMNS, id="audit-table", empty_text="No audit entries.")

    def on_mount(self) -> None:
        self.query_one("#audit-filter", Input).display = False
        self.load()

    # ---- reading -----------------------------------------------------------------------------

    def load(self) -> None:
        """Read the first page again (the filter changed, or `r`)."""
        self._generation += 1
        self._more = False
        self._reading_older = False
        self._request("replace", None)

    def newer(self) -> None:
        """New rows may have arrived: put them on top (the cursor stays on its row)."""
        self._request("newer", None)

    def older(self) -> None:
        rows = self.table.rows
        if not self._more or self._reading_older or not rows:
            return
        self._reading_older = True
        self._request("older", int(rows[-1][0]))

    def _request(self, mode: Mode, before_id: int | None) -> None:
        self._reads += 1
        if mode == "replace":
            self._replace = self._reads
        chosen = AuditFilter(text=self.needle or None)
        self.read(self._reads, self._generation, mode, chosen, before_id)

    @work(thread=True, group="audit-read", exit_on_error=False)
    def read(self, number: int, generation: int, mode: Mode, chosen: AuditFilter,
             before_id: int | None) -> None:
        audit = self.edge.registry.audit
        count = None
        try:
            entries = audit.query(chosen, before_id=before_id, limit=PAGE)
            if mode != "older":
                count = audit.count(chosen)
        except (EdgeError, OSError) as exc:
            self.post_message(AuditPage(number, generation, mode, [], None, str(exc)))
            return
        self.post_message(AuditPage(number, generation, mode, entries, count))

    @on(AuditPage)
    def _page(self, message: AuditPage) -> None:
        message.stop()
        self.pages_read += 1
        if message.mode == "older":
            self._reading_older = False
        if message.error:
            self.edge.error(f"Could not read the audit log: {message.error}")
            return
        if message.mode != "replace" and message.generation != self._generation:
            return  # asked for rows of a table read again since
        if message.mode == "replace":
            if message.number != self._replace:
                return  # overtaken by a newer full read (a filter keystroke)
            self._more = len(message.entries) == PAGE
            self.table.set_rows([audit_row(e) for e in message.entries])
        elif message.mode == "newer":
            self._put_newer(message.entries)
        else:
            self._put_older(message.entries)
        if message.count is not None:
            self.count = message.count

    def _put_newer(self, entries: list[AuditEntry]) -> None:
        rows = self.table.rows
        top = int(rows[0][0]) if rows else 0
        fresh = [audit_row(e) for e in entries if e.id > top]
        if not fresh:
            return
        if len(fresh) == len(entries) and len(entries) == PAGE:
            # More arrived than a page: what was loaded is no longer contiguous.
            self._generation += 1
            self._more = True
            self.table.set_rows(fresh)
            return
        self.table.set_rows(fresh + rows, keep=lambda row: row[0])

    def _put_older(self, entries: list[AuditEntry]) -> None:
        rows = self.table.rows
        bottom = int(rows[-1][0]) if rows else 0
        older = [audit_row(e) for e in entries if e.id < bottom]
        self._more = len(entries) == PAGE
        if older:
            self.table.set_rows(rows + older, keep=lambda row: row[0])

    def watch_count(self) -> None:
        self.show_count()

    def show_count(self) -> None:
        count, loaded = self.count, self.table.total_count
        if count is None:
            text = ""
        else:
            kept = "matching" if self.needle else "entries"
            text = f"{count:,} {kept}" + (f", {loaded:,} loaded" if loaded < count else "")
        self.query_one("#audit-count", Static).update(text)

    @on(VirtualTable.Highlighted, "#audit-table")
    def _highlighted(self, event: VirtualTable.Highlighted) -> None:
        event.stop()
        table = self.table
        if table.cursor >= table.total_count - MORE_MARGIN:
            self.older()
        self.show_count()

    @on(VirtualTable.Selected, "#audit-table")
    def _selected(self, event: VirtualTable.Selected) -> None:
        event.stop()
        entry = event.row[-1]
        assert isinstance(entry, AuditEntry)

        def copied(copy: bool | None) -> None:
            if copy:
                self.edge.copy_text("audit entry", entry_text(entry))

        self.app.push_screen(SnippetModal(f"Audit entry #{entry.id}", entry_text(entry)),
                             copied)

    # ---- filter ------------------------------------------------------------------------------

    def start_filter(self) -> None:
        box = self.query_one("#audit-filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#audit-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.needle = event.value.strip()

    def watch_needle(self) -> None:
        self.load()

    @on(Input.Submitted, "#audit-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.table.focus()

    def on_key(self, event: events.Key) -> None:
        box = self.query_one("#audit-filter", Input)
        if box.has_focus and event.key in ("escape", "down", "up"):
            event.stop()
            event.prevent_default()
            if event.key == "escape":
                self.clear_filter()
            self.table.focus()

    def clear_filter(self) -> None:
        box = self.query_one("#audit-filter", Input)
        with box.prevent(Input.Changed):
            box.value = ""
        box.display = False
        self.needle = ""
        if box.has_focus:
            self.table.focus()
