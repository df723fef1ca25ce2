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
from support import LiveServer, free_port, put_on_parent, start_live_server

from registry_core.datadir import DataDir
from registry_core.enablement import enable
from registry_core.errors import SyncInProgressError
from registry_core.gc import GarbageCollector
from registry_core.identity import CONSOLE
from registry_core.registry import Registry
from registry_core.sync import staging
from registry_core.sync.connection import parse_connection_string
from registry_core.sync.engine import Parent
from registry_core.sync.runner import open_runner
from registry_core.sync.settings import configure

pytestmark = pytest.mark.socket
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def site(tmp_path: Path, live_server: LiveServer) -> Iterator[Registry]:
    """A connected registry whose parent is the live server."""
    datadir = DataDir(tmp_path / "site")
    enable(datadir, device_name="site", dns_domain="test", node_ip="127.0.0.1",
           port=free_port())
    connection = parse_connection_string(
        f"ConnectedRegistryName=edgesite1;SyncTokenName={live_server.username};"
        f"SyncTokenPassword={live_server.password};"
        f"ParentGatewayEndpoint={live_server.address};ParentEndpointProtocol=https")
    configure(datadir, connection=connection, parent_ca=live_server.cert_dir / "ca.crt",
              repositories=["shop/*"])
    registry = Registry(datadir)
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


def test_staged_images_are_pinned_through_a_gc_until_released(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    image = write_oci_image(tmp_path / "app", ImageSpec(tag="v1"))
    put_on_parent(live_server.service.registry, "shop/app", image, "v1")
    runner = open_runner(site)
    record, items = staging.stage(site, runner, [("shop/app", "v1"), ("shop/gone", "v9")],
                                  "window-7")
    runner.close()
    assert record.trigger == "stage"
    states = {(i.repository, i.tag): (i.status, i.digest) for i in items}
    assert states[("shop/app", "v1")] == ("staged", str(image.digest))
    assert states[("shop/gone", "v9")][0] == "failed"

    # Untagged here, then a GC at zero grace that deletes untagged manifests: kept, pinned.
    site.untag("shop/app", "v1", who=CONSOLE)
    collector = GarbageCollector(site)
    collector.run(grace_period=0, delete_untagged=True)
    assert site.get_manifest("shop/app", str(image.digest)).read() == image.body
    for blob in (image.manifests[0].config, *image.manifests[0].layers):
        assert site.stat_blob("shop/app", blob.digest).size == blob.size
    refused = cli(site.datadir, "delete", f"shop/app@{image.digest}")
    assert refused.returncode == 1 and "pinned by the stage window-7" in refused.stderr

    assert staging.release(site, "window-7") == 2
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
            staging.stage(site, second, [("shop/app", "v1")], "late")
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
