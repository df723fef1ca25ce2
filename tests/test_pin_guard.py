"""Staged images are pinned against deletes in the core, so every face refuses alike: the core
operations (delete by digest, untag), the HTTP API over TLS (403 DENIED) and the command line
(one line, non-zero). The console's toast is in tests/console/test_images_pin_guard.py."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import httpx
import pytest
from support import LiveServer
from test_cli_basics import assert_one_line_error, cli
from test_gc import Pushed, assert_pulls, push_image, rand
from test_sync_store import stage

from registry_core import browse
from registry_core.access.audit import AuditFilter
from registry_core.datadir import DataDir
from registry_core.errors import Denied, ManifestUnknown, Pinned
from registry_core.identity import CONSOLE
from registry_core.registry import Registry
from registry_core.store.stages import StageItem


def stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def tags(registry: Registry, repository: str) -> set[str]:
    return {row.tag for row in browse.tags(registry, repository)}


@pytest.fixture
def web(registry: Registry) -> Pushed:
    """web:v1 and web:latest on one manifest; web:v1 staged by 'window-7' below."""
    image = push_image(registry, "web", "v1", [rand(), rand()])
    registry.put_manifest("web", "latest", registry.get_manifest("web", "v1").body(),
                          image.media_type, who=CONSOLE)
    return image


@pytest.fixture
def pin(registry: Registry, web: Pushed) -> StageItem:
    return stage(registry.store, "window-7", "web", "v1", web.digest,
                 expires_at=time.time() + 86400)


# ---- the core -----------------------------------------------------------------------------


def test_untagging_a_pinned_tag_is_refused_with_the_stage_and_how_to_release(
    registry: Registry, web: Pushed, pin: StageItem
) -> None:
    with pytest.raises(Pinned) as refused:
        registry.untag("web", "v1", who=CONSOLE)
    assert isinstance(refused.value, Denied) and refused.value.status == 403
    assert str(refused.value) == (
        f"web:v1 is pinned by the stage window-7 (staged {stamp(pin.updated_at)}, "
        f"expires {stamp(pin.expires_at or 0)}): release the stage first "
        "(edge-console stage --release --stage window-7)"
    )
    assert tags(registry, "web") == {"v1", "latest"}
    registry.untag("web", "latest", who=CONSOLE)  # a tag no stage names goes
    assert tags(registry, "web") == {"v1"}


def test_deleting_a_pinned_manifest_is_refused(
    registry: Registry, web: Pushed, pin: StageItem
) -> None:
    with pytest.raises(Pinned) as refused:
        registry.delete_manifest("web", web.digest, who=CONSOLE)
    message = str(refused.value)
    assert message.startswith(f"web@{web.digest} is pinned by the stage window-7 (web:v1, "
                              f"staged {stamp(pin.updated_at)}, expires ")
    assert "\n" not in message
    assert refused.value.detail["pinned_by"][0]["stage"] == "window-7"
    assert tags(registry, "web") == {"v1", "latest"}
    assert_pulls(registry, web)
    registry.audit.flush()
    [row] = registry.audit.query(AuditFilter(action="manifest.delete"), limit=10)
    assert (row.principal, row.result, row.reference) == (CONSOLE.name, "failed", web.digest)
    assert row.detail["reason"] == message  # the refused attempt is on record


def test_a_manifest_carrying_a_pinned_tag_is_not_deleted(
    registry: Registry, web: Pushed, pin: StageItem
) -> None:
    """The staged tag moved to another manifest (a push): deleting that one would take the
    tag the stage names."""
    newer = push_image(registry, "web", "v1", [rand()])
    with pytest.raises(Pinned, match=f"web@{newer.digest} carries the tag web:v1, pinned by "
                                     "the stage window-7"):
        registry.delete_manifest("web", newer.digest, who=CONSOLE)
    assert_pulls(registry, newer)
    registry.untag("web", "latest", who=CONSOLE)
    assert_pulls(registry, web)  # untagged now, still pinned: GC keeps it, deletes refuse
    with pytest.raises(Pinned):
        registry.delete_manifest("web", web.digest, who=CONSOLE)


def test_every_stage_that_pins_is_named(registry: Registry, web: Pushed, pin: StageItem) -> None:
    stage(registry.store, "night shift", "web", "v1", web.digest)
    with pytest.raises(Pinned) as refused:
        registry.untag("web", "v1", who=CONSOLE)
    message = str(refused.value)
    assert message.startswith("web:v1 is pinned by the stage night shift (staged ")
    assert "no expiry); also pinned by window-7: release the stages first " in message
    assert message.endswith("(edge-console stage --release --stage 'night shift'; "
                            "edge-console stage --release --stage window-7)")


def test_released_expired_and_unfinished_items_do_not_pin(
    registry: Registry, web: Pushed, pin: StageItem
) -> None:
    stage(registry.store, "lapsed", "web", "latest", web.digest, expires_at=time.time() - 1)
    stage(registry.store, "busy", "web", "latest", web.digest, status="verifying")
    stage(registry.store, "other", "mirror/web", "v1", web.digest)  # another repository
    with registry.store.exclusive():
        registry.store.stages.release("window-7")
    registry.untag("web", "v1", who=CONSOLE)
    deleted = registry.delete_manifest("web", web.digest, who=CONSOLE)
    assert deleted.tags == ("latest",)


def test_an_unknown_tag_stays_unknown_though_a_stage_names_it(
    registry: Registry, web: Pushed
) -> None:
    stage(registry.store, "window-7", "web", "gone", web.digest)
    with pytest.raises(ManifestUnknown):
        registry.untag("web", "gone", who=CONSOLE)


# ---- HTTP, over TLS -----------------------------------------------------------------------


def test_http_delete_of_a_pinned_manifest_is_denied_until_released(
    live_server: LiveServer,
) -> None:
    registry = live_server.service.registry
    image = push_image(registry, "web", "v1", [rand()])
    stage(registry.store, "window-7", "web", "v1", image.digest)
    auth = (live_server.username, live_server.password)
    with httpx.Client(base_url=live_server.url, verify=live_server.ssl_context(), auth=auth,
                      timeout=30) as client:
        for reference in (image.digest, "v1"):
            reply = client.delete(f"/v2/web/manifests/{reference}")
            assert reply.status_code == 403, reply.text
            (error,) = reply.json()["errors"]
            assert error["code"] == "DENIED"
            assert "pinned by the stage window-7" in error["message"]
            assert "edge-console stage --release --stage window-7" in error["message"]
            pulled = client.get("/v2/web/manifests/v1",
                                headers={"Accept": image.media_type})
            assert pulled.status_code == 200
            assert pulled.headers["docker-content-digest"] == image.digest
        with registry.store.exclusive():
            registry.store.stages.release("window-7")
        assert client.delete(f"/v2/web/manifests/{image.digest}").status_code == 202
        assert client.get(f"/v2/web/manifests/{image.digest}").status_code == 404


# ---- the command line ---------------------------------------------------------------------


def test_cli_untag_of_a_pinned_tag_fails_in_one_line_unless_forced(
    datadir: DataDir, registry: Registry, web: Pushed, pin: StageItem
) -> None:
    for extra in ([], ["--dry-run"], ["--json"]):
        result = cli(datadir.root, "delete", "--untag", "web:v1", *extra)
        assert_one_line_error(result, "web:v1 is pinned by the stage window-7",
                              "edge-console stage --release --stage window-7")
    assert tags(registry, "web") == {"v1", "latest"}

    forced = cli(datadir.root, "delete", "--untag", "web:v1", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "PINNED (deleted anyway: --force): web:v1 is pinned by the stage window-7" in (
        forced.stdout)
    assert tags(registry, "web") == {"latest"}
    registry.audit.flush()
    [row] = registry.audit.query(AuditFilter(action="tag.delete"), limit=10)
    assert "web:v1 is pinned by the stage window-7" in row.detail["pin_overridden"]


def test_cli_delete_of_a_pinned_manifest_fails_in_one_line_unless_forced(
    datadir: DataDir, registry: Registry, web: Pushed, pin: StageItem
) -> None:
    for reference in (f"web@{web.digest}", "web:latest"):
        result = cli(datadir.root, "delete", reference)
        assert_one_line_error(result, f"web@{web.digest} is pinned by the stage window-7")
    assert tags(registry, "web") == {"v1", "latest"}
    assert_pulls(registry, web)

    forced = cli(datadir.root, "delete", "web:latest", "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    shown = json.loads(forced.stdout)
    assert shown["deleted"] is True
    assert f"web@{web.digest} is pinned by the stage window-7" in shown["pin_overridden"]
    assert tags(registry, "web") == set()
    registry.audit.flush()
    [row] = registry.audit.query(AuditFilter(action="manifest.delete"), limit=10)
    assert row.detail["pin_overridden"] == shown["pin_overridden"]
