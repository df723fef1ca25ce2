"""The Images screen's untag and delete of what a stage pins: refused before any dialog with
the core's message in an error toast, and the tag and manifest stay."""

from __future__ import annotations

from console_helpers import Image, make_app, open_tags, wait_for
from test_sync_store import stage

from console.app import EdgeConsoleApp
from console.widgets.confirm import ConfirmationModal
from registry_core import browse
from registry_core.registry import Registry

SIZE = (100, 30)


def errors(app: EdgeConsoleApp) -> list[str]:
    return [n.message for n in app._notifications if n.severity == "error"]


async def test_untag_of_a_pinned_tag_is_refused_in_a_toast(
    seeded: tuple[Registry, dict[str, Image]]
) -> None:
    registry, images = seeded
    stage(registry.store, "window-7", "library/alpine", "3.20", images["alpine:3.20"].digest)
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await open_tags(pilot, 3, "library/alpine", 1)
        await pilot.press("u")
        await wait_for(pilot, lambda: errors(app), what="the refusal's toast")
        assert not isinstance(app.screen, ConfirmationModal)
        (toast,) = errors(app)
        assert "library/alpine:3.20 is pinned by the stage window-7" in toast
        assert "edge-console stage --release --stage window-7" in toast
    assert [row.tag for row in browse.tags(registry, "library/alpine")] == ["3.20"]


async def test_delete_of_a_pinned_manifest_is_refused_in_a_toast(
    seeded: tuple[Registry, dict[str, Image]]
) -> None:
    registry, images = seeded
    alpine = images["alpine:3.20"].digest
    stage(registry.store, "window-7", "library/alpine", "3.20", alpine)
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await open_tags(pilot, 3, "library/alpine", 1)
        await pilot.press("d")
        await wait_for(pilot, lambda: errors(app), what="the refusal's toast")
        assert not isinstance(app.screen, ConfirmationModal)
        (toast,) = errors(app)
        assert f"library/alpine@{alpine} is pinned by the stage window-7" in toast
    assert str(registry.get_manifest("library/alpine", "3.20").digest) == alpine
