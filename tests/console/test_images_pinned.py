"""The Images screen marks what a stage pins (a Staged column); an expired stage marks
nothing and lets a delete be asked; a manifest the sync keeps after a conflict says why in its
detail. (Refusing a pinned delete: test_images_pin_guard.py.)"""

from __future__ import annotations

import io
import time

from console_helpers import Image, make_app, open_tags, wait_for
from rich.console import Console

from console.widgets.confirm import ConfirmationModal
from registry_core.registry import Registry

SIZE = (100, 30)


async def test_the_staged_column_marks_the_pinned_tag(
    seeded: tuple[Registry, dict[str, Image]]
) -> None:
    registry, images = seeded
    alpine = images["alpine:3.20"]
    with registry.store.exclusive():
        item = registry.store.stages.add("window-7", "library/alpine", "3.20")
        registry.store.stages.set_status(item.id, "staged", digest=alpine.digest)
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        _view, table = await open_tags(pilot, 3, "library/alpine", 1)
        assert [c.label for c in table.columns][:3] == ["Tag", "Digest", "Staged"]
        assert " yes " in table.format_row(table.view_rows()[0])


async def test_no_staged_column_without_pins(seeded: tuple[Registry, dict[str, Image]]) -> None:
    registry, _ = seeded
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        _view, table = await open_tags(pilot, 3, "library/alpine", 1)
        assert "Staged" not in [c.label for c in table.columns]


async def test_an_expired_stage_marks_nothing_pinned(
    seeded: tuple[Registry, dict[str, Image]]
) -> None:
    registry, images = seeded
    with registry.store.exclusive():
        item = registry.store.stages.add("window-7", "library/alpine", "3.20",
                                         expires_at=time.time() - 1)
        registry.store.stages.set_status(item.id, "staged", digest=images["alpine:3.20"].digest)
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        _view, table = await open_tags(pilot, 3, "library/alpine", 1)
        assert "Staged" not in [c.label for c in table.columns]
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal))
        await pilot.press("enter")  # Cancel has the focus


async def test_the_detail_says_why_the_sync_keeps_a_manifest(
    seeded: tuple[Registry, dict[str, Image]]
) -> None:
    registry, images = seeded
    reason = "lost library/alpine:3.20 to the parent's sha256:0000 in a sync conflict"
    with registry.store.exclusive():
        assert registry.store.kept.keep("library/alpine", images["alpine:3.20"].digest, reason)
    app = make_app(registry)
    async with app.run_test(size=(160, 40)) as pilot:
        view, _table = await open_tags(pilot, 3, "library/alpine", 1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: view.level == "detail", what="detail")
        assert view.detail is not None and view.detail.kept_because == reason
        shown = Console(width=200, record=True, file=io.StringIO())
        shown.print(view.render_detail(view.detail))
        assert f"Kept       {reason}" in shown.export_text()
