"""Staging against a real parent (a second edge registry over TLS): images pulled now and
pinned, a GC at zero grace in between leaves them whole, deletes refused until release, and
the readiness check through the command line (exit 0 exactly when every image is here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from imagebuilder import ImageSpec, write_oci_image
from support import LiveServer, connected_site, put_on_parent, start_live_server
from test_gc import push_image, rand

from registry_core.access.audit import AuditFilter
from registry_core.datadir import DataDir
from registry_core.errors import Pinned, SyncInProgressError
from registry_core.events import SyncProgress
from registry_core.gc import GarbageCollector
from registry_core.identity import CONSOLE, Identity, admin
from registry_core.registry import Registry
from registry_core.store.stages import StageItem
from registry_core.sync import staging
from registry_core.sync.engine import Parent
from registry_core.sync.runner import open_runner
from registry_core.sync.settings import configure

pytestmark = pytest.mark.socket
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def site(tmp_path: Path, live_server: LiveServer) -> Iterator[Registry]:
    """A connected registry whose parent is the live server."""
    registry = Registry(connected_site(tmp_path / "site", live_server))
    yield registry
    registry.close()


def cli(data: DataDir, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console", "--data-dir", str(data.root), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def test_images_wait_pending_until_a_transfer_slot_takes_them(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    """One transfer at a time: while the first image is pulled the second is still pending
    (seen at the first repository's end, which comes before the second begins)."""
    image = write_oci_image(tmp_path / "app", ImageSpec(tag="v1"))
    for repository in ("shop/web", "shop/db"):
        put_on_parent(live_server.service.registry, repository, image, "v1")
    seen: list[dict[str, str]] = []

    def look(event: SyncProgress) -> None:
        with site.store.snapshot():
            seen.append({i.repository: i.status for i in site.store.stages.items("window-7")})

    subscription = site.events.subscribe(look, SyncProgress)
    runner = open_runner(site)
    runner.parallel = 1
    try:
        _, items = staging.stage(site, runner, [("shop/web", "v1"), ("shop/db", "v1")],
                                 "window-7", who=CONSOLE)
    finally:
        runner.close()
        subscription.close()
    assert seen[0] == {"shop/web": "pending", "shop/db": "pending"}  # nothing begun yet
    assert {"shop/web": "staged", "shop/db": "pending"} in seen
    assert [i.status for i in items] == ["staged", "staged"]


def test_staged_images_are_pinned_through_a_gc_until_released(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    image = write_oci_image(tmp_path / "app", ImageSpec(tag="v1"))
    put_on_parent(live_server.service.registry, "shop/app", image, "v1")
    runner = open_runner(site)
    record, items = staging.stage(site, runner, [("shop/app", "v1"), ("shop/gone", "v9")],
                                  "window-7", who=CONSOLE)
    runner.close()
    assert record.trigger == "stage"
    states = {(i.repository, i.tag): (i.status, i.digest) for i in items}
    assert states[("shop/app", "v1")] == ("staged", str(image.digest))
    assert states[("shop/gone", "v9")][0] == "failed"

    # The staged tag cannot be removed; it moves on (as a sync moves it), leaving the staged
    # manifest untagged, then a GC at zero grace that deletes untagged manifests: kept, pinned.
    with pytest.raises(Pinned, match="shop/app:v1 is pinned by the stage window-7"):
        site.untag("shop/app", "v1", who=CONSOLE)
    push_image(site, "shop/app", "v1", [rand()])
    collector = GarbageCollector(site)
    collector.run(grace_period=0, delete_untagged=True)
    assert site.get_manifest("shop/app", str(image.digest)).read() == image.body
    for blob in (image.manifests[0].config, *image.manifests[0].layers):
        assert site.stat_blob("shop/app", blob.digest).size == blob.size
    refused = cli(site.datadir, "delete", f"shop/app@{image.digest}")
    assert refused.returncode == 1 and "pinned by the stage window-7" in refused.stderr

    assert staging.release(site, "window-7", who=CONSOLE) == 2
    collector.run(grace_period=0, delete_untagged=True)
    collector.close()
    with pytest.raises(Exception, match="unknown"):
        site.get_manifest("shop/app", str(image.digest))


def test_a_stage_refused_by_a_run_under_way_leaves_nothing_downloading(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    put_on_parent(live_server.service.registry, "shop/app",
                  write_oci_image(tmp_path / "app", ImageSpec(tag="v1")), "v1")
    entered, release = threading.Event(), threading.Event()
    first = open_runner(site)
    connect = first.connect

    def held() -> Parent:
        entered.set()
        assert release.wait(60), "the test never released the first run"
        return connect()

    first.connect = held
    thread = threading.Thread(target=first.run)
    thread.start()
    second = open_runner(site)
    try:
        assert entered.wait(60)
        with pytest.raises(SyncInProgressError):
            staging.stage(site, second, [("shop/app", "v1")], "late", who=CONSOLE)
    finally:
        release.set()
        thread.join(60)
        first.close()
        second.close()
    with site.store.snapshot():
        items = site.store.stages.items("late")
    assert [(i.status, "a sync is under way" in i.reason) for i in items] == [("failed", True)]


def test_the_readiness_check(live_server: LiveServer, site: Registry, tmp_path: Path) -> None:
    one = write_oci_image(tmp_path / "one", ImageSpec(tag="one"))
    two = write_oci_image(tmp_path / "two", ImageSpec(tag="two"))
    parent = live_server.service.registry
    put_on_parent(parent, "shop/web", one, "v1")
    put_on_parent(parent, "shop/db", one, "v1")
    data = site.datadir

    missing = cli(data, "stage", "--check", "shop/web:v1", "shop/db:v1", "--json")
    assert missing.returncode == 1
    assert [i["state"] for i in as_json(missing)["images"]] == ["missing", "missing"]

    staged = cli(data, "stage", "shop/web:v1", "shop/db:v1", "--json")
    assert staged.returncode == 0, staged.stderr
    assert {i["status"] for i in as_json(staged)["items"]} == {"staged"}
    ready = cli(data, "stage", "--check", "--json")  # the stage's own list
    assert ready.returncode == 0, ready.stderr
    assert as_json(ready)["ready"] is True

    put_on_parent(parent, "shop/db", two, "v1")  # the parent moved on
    outdated = cli(data, "stage", "--check", "shop/web:v1", "shop/db:v1", "--json")
    assert outdated.returncode == 1
    assert [i["state"] for i in as_json(outdated)["images"]] == ["ready", "outdated"]

    live_server.service.stop()  # the parent goes away: here, but unverified
    away = cli(data, "stage", "--check", "shop/web:v1", "--json")
    assert away.returncode == 0, away.stderr
    (image,) = as_json(away)["images"]
    assert image["state"] == "unverified" and "could not be asked" in image["message"]

    assert cli(data, "stage", "--release").returncode == 0
    bad = cli(data, "stage", "not a ref")
    assert bad.returncode == 1 and len(bad.stderr.splitlines()) == 1


def stage_with(site: Registry, pairs: list[tuple[str, str]], name: str, who: Identity,
               expires_at: float | None = None) -> list[StageItem]:
    runner = open_runner(site)
    try:
        return staging.stage(site, runner, pairs, name, expires_at, who=who)[1]
    finally:
        runner.close()


def audit_rows(site: Registry, action: str) -> list[tuple[str, str, str | None, str | None,
                                                         str, str]]:
    """(principal, kind, repository, tag, result, stage) of the action's rows, oldest first."""
    rows = reversed(site.audit.query(AuditFilter(action=action)))
    return [(r.principal, r.principal_kind, r.repository, r.reference, r.result,
             r.detail["stage"]) for r in rows]


def test_the_audit_log_names_who_staged_and_who_released(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    put_on_parent(live_server.service.registry, "shop/app",
                  write_oci_image(tmp_path / "app", ImageSpec(tag="v1")), "v1")
    technician = admin("technician-7")
    stage_with(site, [("shop/app", "v1"), ("shop/gone", "v9")], "window-7", technician)
    assert sorted(audit_rows(site, "stage.add")) == [  # in the order the images settled
        ("technician-7", "admin", "shop/app", "v1", "ok", "window-7"),
        ("technician-7", "admin", "shop/gone", "v9", "failed", "window-7"),
    ]
    assert audit_rows(site, "stage.release") == []
    assert staging.release(site, "window-7", who=CONSOLE) == 2
    assert sorted(audit_rows(site, "stage.release")) == [
        ("console", "system", "shop/app", "v1", "ok", "window-7"),
        ("console", "system", "shop/gone", "v9", "ok", "window-7"),
    ]
    assert staging.release(site, "window-7", who=CONSOLE) == 0  # nothing: no row
    assert len(audit_rows(site, "stage.release")) == 2


def test_an_expired_stage_reads_expired_and_the_check_says_so(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    """Expiry is read, not written: the same item is staged before its expiry and expired
    after, pinned before and not after; the check says here-but-unpinned, and once a GC has
    taken the image, missing with the reason."""
    image = write_oci_image(tmp_path / "app", ImageSpec(tag="v1"))
    put_on_parent(live_server.service.registry, "shop/app", image, "v1")
    expires_at = time.time() + 3600
    (item,) = stage_with(site, [("shop/app", "v1")], "window-7", CONSOLE, expires_at)
    assert item.status == "staged"
    before, after = expires_at - 1, expires_at + 1
    with site.store.snapshot():
        assert [i.status for i in site.store.stages.items(at=before)] == ["staged"]
        assert [i.status for i in site.store.stages.items(at=after)] == ["expired"]
        assert site.store.stages.pinned(at=after) == set()
    runner = open_runner(site)
    try:
        (ready,) = staging.check(site, [("shop/app", "v1")], runner, at=before)
        (lapsed,) = staging.check(site, [("shop/app", "v1")], runner, at=after)
    finally:
        runner.close()
    assert (ready.state, ready.stage_expired_at) == ("ready", None)
    assert (lapsed.state, lapsed.ok, lapsed.stage_expired_at) == ("expired", True, expires_at)
    assert lapsed.local_digest == lapsed.parent_digest == str(image.digest)
    assert "here with the parent's digest" in lapsed.message
    assert "stage expired" in lapsed.message and "no longer pinned" in lapsed.message

    # Another stage that still pins it: the image is pinned, not expired.
    stage_with(site, [("shop/app", "v1")], "window-8", CONSOLE)
    (pinned,) = staging.check(site, [("shop/app", "v1")], None, at=after)
    assert (pinned.state, pinned.stage_expired_at) == ("unverified", None)
    staging.release(site, "window-8", who=CONSOLE)

    # Past the expiry for real: the GC no longer keeps it, and the check says why it went.
    (again,) = stage_with(site, [("shop/app", "v1")], "window-7", CONSOLE, time.time() - 1)
    assert (again.id, again.status) == (item.id, "expired")  # the same item, renewed to then
    site.untag("shop/app", "v1", who=CONSOLE)
    collector = GarbageCollector(site)
    collector.run(grace_period=0, delete_untagged=True)
    collector.close()
    (gone,) = staging.check(site, [("shop/app", "v1")], None)
    assert (gone.state, gone.ok) == ("missing", False)
    assert "stage expired" in gone.message


def test_an_expired_stage_through_the_command_line(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    """--check says expired (here, exit 0, with a warning), --json too; staging it again
    renews it; the CLI's release is in the audit log as the console's."""
    image = write_oci_image(tmp_path / "app", ImageSpec(tag="v1"))
    put_on_parent(live_server.service.registry, "shop/app", image, "v1")
    expires_at = time.time() - 1
    stage_with(site, [("shop/app", "v1")], "window-7", CONSOLE, expires_at)
    data = site.datadir

    checked = cli(data, "stage", "--check", "--stage", "window-7", "--json")
    assert checked.returncode == 0, checked.stderr
    (item,) = as_json(checked)["images"]
    assert (item["state"], item["ok"], item["stage_expired_at"]) == ("expired", True, expires_at)
    said = cli(data, "stage", "--check", "--stage", "window-7")
    assert said.returncode == 0, said.stderr
    line, _, verdict = said.stdout.strip().splitlines()
    assert line.startswith("shop/app:v1  expired  here with the parent's digest; its stage "
                           "expired ")
    assert verdict == "ready, but 1 image is no longer pinned (its stage expired)"

    renewed = cli(data, "stage", "shop/app:v1", "--stage", "window-7", "--json")
    assert renewed.returncode == 0, renewed.stderr
    (again,) = as_json(renewed)["items"]
    assert (again["status"], again["expires_at"]) == ("staged", None)
    assert cli(data, "stage", "--release", "--stage", "window-7").returncode == 0
    assert audit_rows(site, "stage.release") == [
        ("console", "system", "shop/app", "v1", "ok", "window-7")]
    assert [r[0] for r in audit_rows(site, "stage.add")] == ["console", "console"]


def test_a_read_only_site_refuses_pushes_to_what_it_syncs(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    """The site's own server: a push to a synced repository is DENIED with the reason; to
    another repository it goes through; ReadWrite (configured while serving) lets it in."""
    served = start_live_server(site.datadir, tmp_path / "site-certs")
    try:
        with served.client() as client:
            refused = client.post("/v2/shop/app/blobs/uploads/")
            assert refused.status_code == 403
            (error,) = refused.json()["errors"]
            assert error["code"] == "DENIED" and "ReadOnly" in error["message"]
            assert client.post("/v2/local/app/blobs/uploads/").status_code == 202
            configure(site.datadir, mode="ReadWrite")
            assert client.post("/v2/shop/app/blobs/uploads/").status_code == 202
    finally:
        served.service.close()


def test_the_served_site_syncs_on_its_schedule(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    """`* * * * *`: continuously; the served site's scheduler copies without being asked."""
    image = write_oci_image(tmp_path / "app", ImageSpec(tag="v1"))
    put_on_parent(live_server.service.registry, "shop/app", image, "v1")
    served = start_live_server(site.datadir, tmp_path / "site-certs")
    try:
        deadline = time.monotonic() + 60  # a hang guard, not a measure
        while True:
            runs = site.store.sync_runs.recent(1)
            if runs and runs[0].status == "succeeded":
                break
            assert time.monotonic() < deadline, "the scheduler never synced"
            time.sleep(0.1)
        assert runs[0].trigger == "schedule"
        assert site.get_manifest("shop/app", "v1").digest == image.digest
    finally:
        served.service.close()
