"""The GC screen: a run asks first, saying what it will delete; quitting cancels a run."""

from __future__ import annotations

import asyncio
import threading
import time

from console_helpers import Image, make_app, wait_for
from textual.widgets import Checkbox, Input

from console.screens.gc import GCView
from console.widgets.confirm import ConfirmationModal
from registry_core.events import GCEvent
from registry_core.identity import CONSOLE
from registry_core.registry import Registry

SIZE = (100, 30)
QUIT_BOUND_SECONDS = 10.0
"""Hang guard on quitting during a GC. The issue's figure is 2 s and quitting takes ~0.3 s
here; the bound is looser so that a loaded CI machine cannot fail a right product (the run
being cancelled part way, asserted below, is what shows the quit did not wait for it)."""
GARBAGE_BLOBS = 1024
"""Four sweep batches of 256."""
SLOW_EVENT_SECONDS = 0.4
"""A slow consumer of the GC's events: each sweep batch takes at least this long, so the
sweep lasts over a second on any machine and is still going when `q` arrives (the run looks
for a cancel between batches)."""


async def test_run_asks_first_and_says_what_goes(seeded: tuple[Registry, dict[str, Image]]) -> None:
    registry, images = seeded
    untagged = images["app:untagged"]
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        view = app.query_one(GCView)
        app.query_one("#gc-grace", Input).value = "0"
        app.query_one("#gc-untagged", Checkbox).value = True
        view.focus_main()

        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal),
                       what="confirmation")
        modal = app.screen
        assert isinstance(modal, ConfirmationModal)
        assert "Untagged manifests: deleted" in modal.body
        assert f"team/app@{untagged.digest[:19]}" in modal.body
        assert "1 manifests" in modal.body
        assert "Grace period: 0 s" in modal.body
        assert app.focused is not None and app.focused.id == "confirm-cancel"
        await pilot.press("enter")  # Cancel: nothing is deleted, no run is recorded
        await wait_for(pilot, lambda: view.busy == "idle", what="back to idle")
        assert app.collector.history(10) == []
        assert registry.get_manifest("team/app", untagged.digest)

        # Unticked: the confirmation says untagged manifests stay; confirm the run.
        app.query_one("#gc-untagged", Checkbox).value = False
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal))
        modal = app.screen
        assert isinstance(modal, ConfirmationModal)
        assert "Untagged manifests: kept" in modal.body and "0 manifests" in modal.body
        await pilot.press("tab", "enter")
        await wait_for(pilot, lambda: view.busy == "idle", what="the run")
        record = app.collector.history(1)[0]
        assert not record.dry_run and record.status == "succeeded"
        assert not record.delete_untagged and record.manifests_deleted == 0
        assert registry.get_manifest("team/app", untagged.digest)


async def test_quit_cancels_a_running_gc(seeded: tuple[Registry, dict[str, Image]]) -> None:
    registry, _ = seeded
    for number in range(GARBAGE_BLOBS):
        registry.put_blob("junk", f"garbage {number}".encode(), who=CONSOLE)
    sweeping = threading.Event()

    def slow_consumer(event: GCEvent) -> None:
        if event.phase == "sweep blobs" and 0 < event.done < event.total:
            sweeping.set()
            time.sleep(SLOW_EVENT_SECONDS)

    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        subscription = registry.events.subscribe(slow_consumer, GCEvent)
        await pilot.press("5")
        app.query_one("#gc-grace", Input).value = "0"
        app.query_one(GCView).focus_main()
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal))
        await pilot.press("tab", "enter")
        await wait_for(pilot, sweeping.is_set, what="the run to sweep")
        run = app.collector.current()
        assert run is not None and run.running and not run.dry_run

        async with asyncio.timeout(QUIT_BOUND_SECONDS):  # hang guard
            await pilot.press("q")
            while app.return_code is None:
                await asyncio.sleep(0.01)
        subscription.close()

    assert not any(worker.is_running for worker in app.workers)
    record = app.collector.get(run.id)
    assert record is not None and record.status == "cancelled"
    assert 0 < record.blobs_deleted < GARBAGE_BLOBS
    assert app.collector.current() is None
    assert not app.collector.lock.heartbeat_alive  # the app closed its collector
