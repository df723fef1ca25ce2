"""The Images screen marks what a stage pins (a Staged column); an expired stage marks
nothing and lets a delete be asked. (Refusing a pinned delete: test_images_pin_guard.py.)"""

from __future__ import annotations

import time

from console_helpers import Image, make_app, open_tags, wait_for

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
