"""The virtual table: filter, sort, cursor, painting only what is visible."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.pilot import Pilot

from console.widgets.virtual_table import SYNC_SCAN_ROWS, Column, VirtualTable, fit

COLUMNS = [
    Column("name", "Name", 0, min_width=10),
    Column("size", "Size", 1, width=6, align="right", searchable=False),
    Column("note", "Note", 2, width=8, format=lambda v: v or "-"),
]


class TableApp(App[None]):
    def __init__(self, rows: list[tuple[object, ...]]) -> None:
        super().__init__()
        self.rows = rows
        self.selected: list[tuple[object, ...]] = []

    def on_virtual_table_selected(self, message: VirtualTable.Selected) -> None:
        self.selected.append(message.row)

    def compose(self) -> ComposeResult:
        yield VirtualTable(COLUMNS, id="t")

    def on_mount(self) -> None:
        table = self.query_one(VirtualTable)
        table.set_rows(self.rows)
        table.focus()


def rows(n: int) -> list[tuple[object, ...]]:
    return [(f"item-{i:05d}", i % 7, None if i % 2 else "Even") for i in range(n)]


def test_fit() -> None:
    assert fit("abc", 5) == "abc  "
    assert fit("abc", 5, "right") == "  abc"
    assert fit("abcdef", 4) == "abc…"
    assert fit("abc", 0) == ""


async def test_filter_sort_cursor_and_selection() -> None:
    app = TableApp(rows(1000))
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(VirtualTable)
        assert table.row_count == 1000
        assert table.filter("ITEM-0009") == 10  # case-insensitive: 00090..00099
        assert table.filter("item-00099") == 1  # narrowing the previous result
        assert table.filter("even") == 500  # searches formatted-independent raw text
        assert table.filter("7") > 0
        assert table.filter("") == 1000
        assert table.filter("none") == 0  # None is empty, not "None"
        table.filter("")
        table.sort_by("size", reverse=True)
        assert table.view_rows()[0][1] == 6
        assert table.sort_column == "size"
        table.filter("item-0000")
        assert [r[1] for r in table.view_rows()] == sorted((i % 7 for i in range(10)),
                                                           reverse=True)
        table.filter("")
        table.sort_by(None)
        await pilot.press("down", "down", "end")
        assert table.cursor == 999
        await pilot.press("home", "pagedown")
        assert table.cursor > 1
        table.action_first()
        await pilot.press("enter")
        await pilot.pause()
        assert app.selected and app.selected[0][0] == "item-00000"


async def test_only_visible_lines_are_formatted() -> None:
    app = TableApp(rows(200_000))
    calls: list[int] = []
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(VirtualTable)
        original = table.format_row

        def counting(row: tuple[object, ...]) -> str:
            calls.append(1)
            return original(row)

        table.format_row = counting  # type: ignore[method-assign]
        table.refresh()
        await pilot.pause()
        assert 0 < len(calls) < 50
        lines = [table.render_line(y).text for y in range(3)]
        assert lines[0].startswith("Name")
        assert "item-00000" in lines[1]


async def test_keep_cursor_on_reload_and_empty_text() -> None:
    app = TableApp(rows(10))
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(VirtualTable)
        table.move_cursor(5)
        fresh = [r for r in rows(12) if r[0] != "item-00002"]
        table.set_rows(fresh, keep=lambda r: r[0])
        assert table.cursor_row is not None and table.cursor_row[0] == "item-00005"
        table.filter("no such thing")
        await pilot.pause()
        assert "No match" in table.render_line(1).text


async def wait_scan(pilot: Pilot[None], table: VirtualTable) -> None:
    """The scan workers hand each chunk to the UI loop before they end: once they all have
    ended and the loop is idle, the view is complete."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    assert not table.filtering, "the filter scan did not finish"


async def test_big_filter_answers_at_once_and_completes_in_the_background() -> None:
    n = SYNC_SCAN_ROWS * 3 + 123
    data = [(f"row-{i:07d}", i % 5, "x" if i % 3 else "hit") for i in range(n)]
    app = TableApp(data)
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(VirtualTable)
        expected = [r for r in data if "hit" in (r[2] or "")]

        first = table.filter("hit")
        assert table.filtering and 0 < first < len(expected)  # the first slice, painted now
        await wait_scan(pilot, table)
        assert table.view_rows() == expected

        # Narrowing a complete view, then a fresh needle that overtakes a running scan.
        table.filter("hit")
        table.filter("row-00")
        table.filter("row-0000")
        await wait_scan(pilot, table)
        assert table.view_rows() == [r for r in data if r[0].startswith("row-0000")]
        table.filter("x")
        table.filter("row-01")  # not a narrowing of "x": the scan of "x" is abandoned
        await wait_scan(pilot, table)
        assert table.view_rows() == [r for r in data if "row-01" in r[0]]

        # A sort in the middle of a scan restarts it on the new order.
        table.filter("")
        table.filter("hit")
        table.sort_by("name", reverse=True)
        await wait_scan(pilot, table)
        assert table.view_rows() == expected[::-1]
        table.filter("")
        assert table.row_count == n and not table.filtering
