"""Disk trouble during a sync: a blob that does not fit fails its tag with the reason before
a byte is written (the disk is not filled), a disk error ends the run with a one-line reason,
and the scheduler goes on after such a run."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from imagebuilder import ImageSpec, make_layer, write_oci_image, write_random_image
from support import LiveServer, free_port, put_on_parent
from test_e2e_diskfull import VOLUME_MIB, free_bytes, mount_tmpfs

from registry_core import browse
from registry_core.datadir import DataDir
from registry_core.enablement import enable
from registry_core.registry import Registry
from registry_core.store.sync_runs import SyncRunRecord
from registry_core.sync.client import ParentClient
from registry_core.sync.connection import parse_connection_string
from registry_core.sync.engine import Scope
from registry_core.sync.runner import SyncRunner
from registry_core.sync.scheduler import SyncScheduler
from registry_core.sync.settings import configure

pytestmark = pytest.mark.socket


def make_site(root: Path) -> Registry:
    datadir = DataDir(root)
    enable(datadir, device_name="site", dns_domain="test", node_ip="127.0.0.1",
           port=free_port())
    return Registry(datadir)


@pytest.fixture
def small_site(tmp_path: Path) -> Iterator[Registry]:
    """A connected registry on a 40 MiB tmpfs (test_e2e_diskfull's)."""
    mount_tmpfs(tmp_path / "volume")
    try:
        registry = make_site(tmp_path / "volume" / "site")
        yield registry
        registry.close()
    finally:
        subprocess.run(["umount", str(tmp_path / "volume")], check=False)


def runner(site: Registry, server: LiveServer, repository: str,
           parallel: int = 2) -> SyncRunner:
    def connect() -> ParentClient:
        return ParentClient(server.address, server.username, server.password,
                            ca_file=server.cert_dir / "ca.crt")

    return SyncRunner(site, connect, Scope((repository,)), parallel=parallel)


def test_a_blob_that_does_not_fit_fails_its_tag_before_filling_the_disk(
    live_server: LiveServer, small_site: Registry, tmp_path: Path
) -> None:
    parent = live_server.service.registry
    put_on_parent(parent, "app", write_random_image(tmp_path / "big", (VOLUME_MIB + 8) << 20),
                  "big")
    put_on_parent(parent, "app", write_oci_image(tmp_path / "small-image", ImageSpec(tag="s")),
                  "small")
    root = small_site.datadir.root
    before = free_bytes(root)
    sync = runner(small_site, live_server, "app")
    record = sync.run()

    assert record.status == "failed"
    assert len(record.errors) == 1 and record.errors[0].startswith("app:big: not enough space")
    assert [t.tag for t in browse.tags(small_site, "app")] == ["small"]
    assert free_bytes(root) > before - (4 << 20)  # the big layer never began to arrive
    # Every tag of a run failing for want of room is not the parent being unreachable.
    alone = sync.run("stage", only=[("app", "big")])
    sync.close()
    assert alone.status == "failed" and alone.details["parent_reachable"] is True


@pytest.fixture
def scheduled(tmp_path: Path, live_server: LiveServer) -> Iterator[Registry]:
    """A connected registry syncing continuously from the live server."""
    registry = make_site(tmp_path / "site")
    configure(registry.datadir, connection=parse_connection_string(
        f"ConnectedRegistryName=edgesite1;SyncTokenName={live_server.username};"
        f"SyncTokenPassword={live_server.password};"
        f"ParentGatewayEndpoint={live_server.address};ParentEndpointProtocol=https"),
        parent_ca=live_server.cert_dir / "ca.crt", repositories=["app"],
        schedule="* * * * *")
    yield registry
    registry.close()


def wait_for_run(registry: Registry, status: str) -> SyncRunRecord:
    deadline = time.monotonic() + 60  # a hang guard, not a timing
    while time.monotonic() < deadline:
        for run in registry.store.sync_runs.recent(10):
            if run.status == status:
                return run
        time.sleep(0.05)
    raise AssertionError(f"no {status} run within the hang guard")


def test_a_disk_error_is_recorded_and_the_scheduler_goes_on(
    live_server: LiveServer, scheduled: Registry, tmp_path: Path
) -> None:
    """The partial-downloads folder cannot be made (a file is in its place): the run fails
    saying so in one line, and the scheduler tries again; once the file is gone, it syncs."""
    put_on_parent(live_server.service.registry, "app", write_oci_image(tmp_path / "i"), "v1")
    partial = scheduled.datadir.root / "sync" / "partial"
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(b"in the way")
    scheduler = SyncScheduler(scheduled, poll_seconds=0.05, retry_first=0.05,
                              retry_longest=0.05)
    scheduler.start()
    try:
        failed = wait_for_run(scheduled, "failed")
        assert failed.errors == [f"disk: File exists: {partial}"]
        partial.unlink()
        done = wait_for_run(scheduled, "succeeded")
        assert done.id > failed.id
    finally:
        scheduler.stop()
    assert scheduled.get_manifest("app", "v1")


def test_blobs_that_fit_alone_but_not_together_fail_one_tag_and_give_the_room_back(
    live_server: LiveServer, small_site: Registry, tmp_path: Path
) -> None:
    """Two layers, each 60% of the free space, downloaded at once (with the config: three
    transfers, parallel=3): each passes
    the room check, together they fill the volume. The one that runs out fails its tag with
    the reason in one line and its bytes are removed; the other waits in sync/partial."""
    root = small_site.datadir.root
    size = int(free_bytes(root) * 0.6)
    image = write_oci_image(tmp_path / "wide", ImageSpec(tag="w", layers=(
        make_layer(os.urandom(size)), make_layer(os.urandom(size)))))
    put_on_parent(live_server.service.registry, "app", image, "wide")
    sync = runner(small_site, live_server, "app", parallel=3)
    record = sync.run()
    sync.close()

    assert record.status == "failed" and len(record.errors) == 1
    assert record.errors[0].startswith((
        "app:wide: no space left on device while downloading blob sha256:",
        "app:wide: not enough space"))  # if one layer was down before the other was checked
    assert "\n" not in record.errors[0]
    assert free_bytes(root) > size // 2  # one layer's bytes at most are kept
