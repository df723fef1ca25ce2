"""A GC run started on the GC screen is the console's: its audit row, its record and its
events name the console, not the garbage collector."""

from __future__ import annotations

from console_helpers import Image, make_app, wait_for
from textual.widgets import Input

from console.screens.gc import GCView
from console.widgets.confirm import ConfirmationModal
from registry_core.access.audit import AuditFilter
from registry_core.events import GCEvent
from registry_core.identity import CONSOLE
from registry_core.registry import Registry

SIZE = (100, 30)


async def test_a_run_from_the_screen_is_recorded_as_the_console(
    seeded: tuple[Registry, dict[str, Image]],
) -> None:
    registry, _ = seeded
    registry.put_blob("junk", b"garbage the screen collects", who=CONSOLE)
    seen: list[GCEvent] = []
    app = make_app(registry)
    with registry.events.subscribe(seen.append, GCEvent):
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("5")
            view = app.query_one(GCView)
            app.query_one("#gc-grace", Input).value = "0"
            view.focus_main()
            await pilot.press("g")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal),
                           what="confirmation")
            await pilot.press("tab", "enter")
            await wait_for(pilot, lambda: bool(app.collector.history(1))
                           and view.busy == "idle", what="the run")

    [record] = app.collector.history(1)
    assert (record.trigger, record.status) == ("manual", "succeeded")
    assert record.blobs_deleted >= 1
    assert (record.details["principal"], record.details["principal_kind"]) == (
        "console", "system")
    [entry] = registry.audit.query(AuditFilter(action="gc.run"))
    assert (entry.reference, entry.principal, entry.principal_kind) == (
        str(record.id), "console", "system")
    assert seen and {e.identity for e in seen} == {"console"}
