"""Sync runs from a real parent: a second edge registry served over TLS (the reference
registry as parent is in tests/test_sync_reference.py). Tags copied byte for byte with their
digests, an index with its children, nothing copied twice, a blob already here not
downloaded, a run stopped at the window's end, one run at a time."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cutting_proxy import CuttingProxy
from imagebuilder import ImageSpec, make_layer, write_oci_image, write_oci_index
from support import LiveServer, free_port, put_on_parent
from test_sync_client import push_referrer

from registry_core import browse
from registry_core.datadir import DataDir
from registry_core.enablement import enable
from registry_core.errors import BlobUnknown, SyncInProgressError
from registry_core.events import Event, SyncFinished, SyncProgress, SyncStarted
from registry_core.gc import GarbageCollector
from registry_core.identity import CONSOLE
from registry_core.registry import Registry
from registry_core.sync.client import ParentClient
from registry_core.sync.connection import parse_connection_string
from registry_core.sync.engine import Scope
from registry_core.sync.progress import from_details
from registry_core.sync.reconcile import decide
from registry_core.sync.runner import SyncRunner
from registry_core.sync.settings import configure
from registry_core.sync.status import read_status

pytestmark = pytest.mark.socket


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Registry]:
    """The connected registry: a data dir of its own."""
    datadir = DataDir(tmp_path / "site")
    enable(datadir, device_name="site", dns_domain="test", node_ip="127.0.0.1",
           port=free_port())
    registry = Registry(datadir)
    yield registry
    registry.close()


def runner(site: Registry, server: LiveServer, *repositories: str,
           read_write: bool = False, tags: tuple[str, ...] = (), parallel: int = 3,
           clock: Callable[[], float] = time.time) -> SyncRunner:
    def connect() -> ParentClient:
        return ParentClient(f"127.0.0.1:{server.port}", server.username, server.password,
                            ca_file=server.cert_dir / "ca.crt")

    return SyncRunner(site, connect, Scope(tuple(repositories), tags), parallel=parallel,
                      read_write=read_write, clock=clock)


def test_a_run_copies_every_tag_with_its_digests_and_a_second_copies_nothing(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    parent = live_server.service.registry
    multi = write_oci_index(tmp_path / "multi")
    plain = write_oci_image(tmp_path / "plain", ImageSpec(tag="v1"))
    put_on_parent(parent, "shop/web", multi, "v2")
    put_on_parent(parent, "shop/web", plain, "v1")
    put_on_parent(parent, "shop/db", plain, "stable")
    put_on_parent(parent, "other/skip", plain, "v1")
    seen: list[Event] = []
    site.events.subscribe(seen.append)

    sync = runner(site, live_server, "shop/*")
    first = sync.run()

    assert first.status == "succeeded", first.errors
    assert first.repositories == 2
    assert first.details["tags_changed"] == 3
    for repository, tag, image in (("shop/web", "v2", multi), ("shop/web", "v1", plain),
                                   ("shop/db", "stable", plain)):
        stored = site.get_manifest(repository, tag)
        assert stored.digest == image.digest and stored.read() == image.body
        for child in image.manifests:
            assert site.get_manifest(repository, str(child.digest)).read() == child.body
    assert site.catalog().items == ["shop/db", "shop/web"]
    # The plain image's blobs came once, though two repositories have it.
    distinct = {b.digest for i in (multi, plain) for m in i.manifests
                for b in (m.config, *m.layers)}
    assert first.blobs_copied == len(distinct)
    assert [type(e) for e in seen if isinstance(e, SyncStarted | SyncFinished)] == [
        SyncStarted, SyncFinished]

    second = sync.run()
    assert second.status == "succeeded"
    assert (second.details["tags_changed"], second.blobs_copied, second.bytes_copied) == (
        0, 0, 0)
    runs = site.store.sync_runs.recent(5)
    assert [r.id for r in runs][:2] == [second.id, first.id]
    assert site.store.sync_runs.last_success() == second.finished_at
    sync.close()


def test_a_moved_tag_follows_the_parent(live_server: LiveServer, site: Registry,
                                        tmp_path: Path) -> None:
    parent = live_server.service.registry
    one = write_oci_image(tmp_path / "one", ImageSpec(tag="a"))
    two = write_oci_image(tmp_path / "two", ImageSpec(tag="b"))
    put_on_parent(parent, "app", one, "stable")
    sync = runner(site, live_server, "app")
    assert sync.run().status == "succeeded"
    put_on_parent(parent, "app", two, "stable")
    moved = sync.run()
    assert moved.details["tags_changed"] == 1
    assert site.get_manifest("app", "stable").digest == two.digest
    assert site.get_manifest("app", str(one.digest)).digest == one.digest  # still by digest
    sync.close()


def test_a_run_past_its_window_stops_and_copies_nothing(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    put_on_parent(live_server.service.registry, "app", write_oci_image(tmp_path / "i"), "v1")
    sync = runner(site, live_server, "app")
    record = sync.run(until=0.0)  # the window closed long ago
    assert record.status == "stopped"
    assert site.catalog().items == []
    assert sync.run().status == "succeeded"
    sync.close()


def test_one_run_at_a_time(live_server: LiveServer, site: Registry, tmp_path: Path) -> None:
    put_on_parent(live_server.service.registry, "app", write_oci_image(tmp_path / "i"), "v1")
    entered, release = threading.Event(), threading.Event()

    def slow_connect() -> ParentClient:
        entered.set()
        assert release.wait(60), "the test never released the first run"
        return ParentClient(f"127.0.0.1:{live_server.port}", live_server.username,
                            live_server.password, ca_file=live_server.cert_dir / "ca.crt")

    first = SyncRunner(site, slow_connect, Scope(("app",)))
    second = runner(site, live_server, "app")
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(first.run()))
    thread.start()
    try:
        assert entered.wait(60)
        with pytest.raises(SyncInProgressError, match="a sync is under way"):
            second.run()
    finally:
        release.set()
        thread.join(60)
    assert getattr(outcome[0], "status", None) == "succeeded"
    first.close()
    second.close()


def test_a_blob_cut_mid_transfer_resumes_in_the_next_run(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    """The uplink drops 1 MiB into a 4 MiB layer: the run fails with the bytes kept in
    sync/partial; the next run asks only for the rest (a Range request) and commits."""
    big = write_oci_image(tmp_path / "big", ImageSpec(tag="big", layers=(
        make_layer(os.urandom(4 << 20)),)))  # random: gzip keeps it 4 MiB
    put_on_parent(live_server.service.registry, "app", big, "v1")
    layer = big.manifests[0].layers[0]
    with CuttingProxy(("127.0.0.1", live_server.port), cut_after=1 << 20) as proxy:
        def connect() -> ParentClient:
            return ParentClient(f"{proxy.address}", live_server.username, live_server.password,
                                ca_file=live_server.cert_dir / "ca.crt", retries=0)

        sync = SyncRunner(site, connect, Scope(("app",)))
        cut = sync.run()
        assert cut.status == "failed" and cut.errors
        partial = site.datadir.root / "sync" / "partial" / str(layer.digest).replace(":", "-")
        kept = partial.stat().st_size
        assert 0 < kept < layer.size
        proxy.cut_after = None
        resumed = sync.run()
        sync.close()
    assert resumed.status == "succeeded", resumed.errors
    assert resumed.bytes_copied == layer.size - kept  # only the rest came
    assert site.get_manifest("app", "v1").digest == big.digest
    assert site.stat_blob("app", layer.digest).size == layer.size
    assert not partial.exists()


def test_read_write_pushes_up_and_the_parent_wins_a_conflict(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    parent = live_server.service.registry
    images = {n: write_oci_image(tmp_path / n, ImageSpec(tag=n)) for n in
              ("one", "two", "three", "four", "five")}
    put_on_parent(parent, "shop/app", images["one"], "v1")
    sync = runner(site, live_server, "shop/*", read_write=True)
    assert sync.run().status == "succeeded"

    # Pushed here: a new tag, and a repository the parent does not have yet.
    put_on_parent(site, "shop/app", images["two"], "v2")
    put_on_parent(site, "shop/new", images["two"], "v1")
    up = sync.run()
    assert up.status == "succeeded", up.errors
    assert up.manifests_pushed == 2 and up.conflicts == []
    assert parent.get_manifest("shop/app", "v2").digest == images["two"].digest
    assert parent.get_manifest("shop/new", "v1").digest == images["two"].digest

    # v1 moved on both sides; v2 only here.
    put_on_parent(parent, "shop/app", images["three"], "v1")
    put_on_parent(site, "shop/app", images["four"], "v1")
    put_on_parent(site, "shop/app", images["five"], "v2")
    both = sync.run()
    assert both.status == "succeeded", both.errors
    assert both.conflicts == [{
        "repository": "shop/app", "tag": "v1", "local": str(images["four"].digest),
        "parent": str(images["three"].digest), "kept": "parent",
    }]
    assert site.get_manifest("shop/app", "v1").digest == images["three"].digest
    kept = site.get_manifest("shop/app", str(images["four"].digest))  # still by digest
    assert kept.read() == images["four"].body
    assert parent.get_manifest("shop/app", "v2").digest == images["five"].digest

    calm = sync.run()  # everything agrees now
    assert (calm.manifests_pushed, calm.details["tags_changed"], calm.conflicts) == (0, 0, [])
    sync.close()


def test_the_local_side_of_a_conflict_outlives_a_gc_that_collects_untagged(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    """The parent wins a conflict; the local manifest, untagged by it, stays reachable by
    digest even through a GC that collects untagged manifests, and says why. Deleted by digest,
    its keep goes with it, and the next such GC collects what only it held."""
    ours = write_oci_image(tmp_path / "ours", ImageSpec(tag="ours"))
    theirs = write_oci_image(tmp_path / "theirs", ImageSpec(tag="theirs"))
    put_on_parent(live_server.service.registry, "shop/app", theirs, "v1")
    put_on_parent(site, "shop/app", ours, "v1")  # never agreed: a conflict
    sync = runner(site, live_server, "shop/*", read_write=True)
    assert [c["local"] for c in sync.run().conflicts] == [str(ours.digest)]
    sync.close()

    GarbageCollector(site).run(grace_period=0, delete_untagged=True)
    detail = browse.manifest_detail(site, "shop/app", str(ours.digest))
    assert detail.tags == ()
    assert detail.kept_because == (
        f"lost shop/app:v1 to the parent's {theirs.digest} in a sync conflict; "
        "delete it by digest when no longer needed")
    config = ours.manifests[0].config.digest
    assert site.stat_blob("shop/app", config).size > 0

    site.delete_manifest("shop/app", str(ours.digest), who=CONSOLE)
    assert site.store.kept.reason("shop/app", str(ours.digest)) is None
    GarbageCollector(site).run(grace_period=0, delete_untagged=True)
    with pytest.raises(BlobUnknown):
        site.stat_blob("shop/app", config)


def test_a_conflict_whose_pull_fails_keeps_nothing(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    """The uplink drops while the parent's side of a conflict comes down: the tag stays on the
    local manifest, so the sync keeps nothing from the GC on its account."""
    ours = write_oci_image(tmp_path / "ours", ImageSpec(tag="ours"))
    theirs = write_oci_image(tmp_path / "theirs", ImageSpec(tag="theirs", layers=(
        make_layer(os.urandom(2 << 20)),)))
    put_on_parent(live_server.service.registry, "shop/app", theirs, "v1")
    put_on_parent(site, "shop/app", ours, "v1")
    with CuttingProxy(("127.0.0.1", live_server.port), cut_after=1 << 20) as proxy:
        def connect() -> ParentClient:
            return ParentClient(proxy.address, live_server.username, live_server.password,
                                ca_file=live_server.cert_dir / "ca.crt", retries=0)

        sync = SyncRunner(site, connect, Scope(("shop/*",)), read_write=True)
        cut = sync.run()
        sync.close()
    assert cut.status == "failed" and cut.conflicts == []
    assert site.get_manifest("shop/app", "v1").digest == ours.digest
    assert site.store.kept.reason("shop/app", str(ours.digest)) is None


@pytest.mark.parametrize(
    ("local", "parent", "base", "way"),
    [
        (None, None, None, "none"),
        ("a", "a", None, "same"),
        ("a", None, None, "push"),
        ("a", None, "a", "drop"),
        ("b", None, "a", "push"),
        ("a", None, "", "push"),
        (None, "b", None, "pull"),
        ("a", "b", "a", "pull"),
        ("b", "a", "a", "push"),
        ("b", "c", "a", "conflict"),
        ("b", "c", None, "conflict"),
    ],
)
def test_which_way_a_tag_goes(local: str | None, parent: str | None, base: str | None,
                              way: str) -> None:
    assert decide(local, parent, base) == way


# ---- the state when the parent cannot be reached ----------------------------------------------


def configure_parent(site: Registry, endpoint: str, repositories: list[str]) -> None:
    """The connection string and scope `sync status` reads (the runs' parent is the test's)."""
    configure(site.datadir, connection=parse_connection_string(
        f"ConnectedRegistryName=edgesite1;SyncTokenName=synctoken;SyncTokenPassword=secret-pass;"
        f"ParentGatewayEndpoint={endpoint};ParentEndpointProtocol=https"),
        repositories=repositories)


@pytest.mark.parametrize("how", ["named", "glob", "stage"])
def test_a_parent_that_never_answers_reads_offline(site: Registry, how: str) -> None:
    """Connection refused on every request: with named repositories each one's listing
    fails on its own, yet the run as a whole never reached the parent."""
    port = free_port()  # nothing listens there
    configure_parent(site, f"127.0.0.1:{port}", ["app/*"] if how == "glob" else ["app", "db"])

    def connect() -> ParentClient:
        return ParentClient(f"127.0.0.1:{port}", "t", "p", retries=0)

    scope = Scope(("app/*",) if how == "glob" else ("app", "db"))
    sync = SyncRunner(site, connect, scope)
    record = sync.run("stage", only=[("app", "v1"), ("db", "v1")]) if how == "stage" \
        else sync.run()
    sync.close()
    assert record.status == "failed" and record.errors
    assert record.details["parent_reachable"] is False
    assert read_status(site.datadir, site.store).state == "Offline"


def test_a_parent_that_answers_with_some_tags_missing_stays_online(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    put_on_parent(live_server.service.registry, "app", write_oci_image(tmp_path / "i"), "v1")
    configure_parent(site, live_server.address, ["app"])
    seen: list[SyncProgress] = []
    site.events.subscribe(seen.append, SyncProgress)
    sync = runner(site, live_server, "app")
    record = sync.run("stage", only=[("app", "v1"), ("app", "gone")])
    sync.close()
    assert record.status == "failed" and len(record.errors) == 1
    assert record.details["parent_reachable"] is True
    assert read_status(site.datadir, site.store).state == "Online"
    [app] = seen[-1].repositories  # the repository says which tag failed, and why
    assert (app.state, app.tags_total, app.tags_checked, app.tags_changed) == (
        "failed", 2, 2, 1)
    assert app.error == record.errors[0] and "app:gone" in app.error


# ---- per-repository progress -----------------------------------------------------------------


def test_progress_events_carry_each_repository_of_a_real_run(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    parent = live_server.service.registry
    put_on_parent(parent, "shop/web", write_oci_index(tmp_path / "multi"), "v2")
    put_on_parent(parent, "shop/web", write_oci_image(tmp_path / "a", ImageSpec(tag="a")), "v1")
    put_on_parent(parent, "shop/db", write_oci_image(tmp_path / "b", ImageSpec(tag="b")), "v1")
    seen: list[SyncProgress] = []
    site.events.subscribe(seen.append, SyncProgress)
    sync = runner(site, live_server, "shop/*")

    record = sync.run()
    sync.close()

    assert record.status == "succeeded", record.errors
    assert {e.run_id for e in seen} == {record.id}
    assert {e.repository for e in seen} >= {"shop/db", "shop/web"}
    last = {r.repository: r for r in seen[-1].repositories}
    assert [r.repository for r in seen[-1].repositories] == ["shop/db", "shop/web"]
    assert {n: (r.state, r.tags_total, r.tags_checked, r.tags_changed, r.error)
            for n, r in last.items()} == {"shop/db": ("done", 1, 1, 1, ""),
                                          "shop/web": ("done", 2, 2, 2, "")}
    for name in ("manifests_copied", "blobs_copied", "bytes_copied"):
        assert sum(getattr(r, name) for r in last.values()) == getattr(record, name), name
    assert all(r.blobs_copied and r.bytes_copied and r.manifests_copied
               for r in last.values())
    # Each repository was seen syncing, and shop/web waiting while shop/db was.
    states = [(r.repository, r.state) for e in seen for r in e.repositories]
    assert ("shop/db", "syncing") in states and ("shop/web", "syncing") in states
    assert ("shop/web", "waiting") in states
    # The record keeps them, as saved on each heartbeat: another process shows them from it.
    with site.store.snapshot():
        saved = site.store.sync_runs.get(record.id)
    assert saved is not None and from_details(saved.details) == seen[-1].repositories


# ---- referrers pushed after the image --------------------------------------------------------


def test_a_referrer_pushed_after_its_image_arrives_in_the_next_run(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    """The parent (an edge registry) has the referrers API: an unchanged tag's referrers,
    and its index children's, are asked for, and the new ones copied."""
    parent = live_server.service.registry
    multi = write_oci_index(tmp_path / "multi")
    plain = write_oci_image(tmp_path / "plain", ImageSpec(tag="v1"))
    put_on_parent(parent, "app", multi, "multi")
    put_on_parent(parent, "app", plain, "v1")
    first_child, second_child = (
        dataclasses.replace(multi, media_type=c.media_type, digest=c.digest, size=c.size,
                            body=c.body) for c in multi.manifests[:2])
    client = ParentClient(live_server.address, live_server.username, live_server.password,
                          ca_file=live_server.cert_dir / "ca.crt")
    on_child = push_referrer(client, "app", first_child, tmp_path)
    sync = runner(site, live_server, "app")

    first = sync.run()
    assert first.status == "succeeded", first.errors
    assert first.details["referrers_api"] is True
    assert site.get_manifest("app", on_child["digest"])  # an index child's, with the index

    later = [push_referrer(client, "app", subject, tmp_path)["digest"]
             for subject in (plain, second_child)]
    client.close()
    second = sync.run()
    sync.close()
    assert second.status == "succeeded", second.errors
    assert (second.details["tags_changed"], second.manifests_copied) == (0, 2)
    for digest in later:
        assert str(site.get_manifest("app", digest).digest) == digest
    assert site.store.sync_runs.recent(1)[0].details["referrers_api"] is True


# ---- tag filters -----------------------------------------------------------------------------


def test_a_tag_filter_limits_a_real_run(live_server: LiveServer, site: Registry,
                                        tmp_path: Path) -> None:
    image = write_oci_image(tmp_path / "i")
    for tag in ("v1.0", "v1.1", "v10", "latest", "xv1.2"):
        put_on_parent(live_server.service.registry, "app", image, tag)
    sync = runner(site, live_server, "app", tags=(r"v1\..*", "latest"))
    record = sync.run()
    sync.close()
    assert record.status == "succeeded", record.errors
    assert record.details["tags_checked"] == 3
    assert [t.tag for t in browse.tags(site, "app")] == ["latest", "v1.0", "v1.1"]


# ---- a window that closes part-way -----------------------------------------------------------


def test_a_window_closing_mid_run_stops_at_a_blob_boundary_and_the_next_run_resumes(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    """The window closes (the runner's clock, which the test moves, passes `until`) once the
    first layer of the second image is down: the first image is committed, the second is
    not, and its downloaded layer waits in sync/partial; the next run commits it without
    fetching that layer again."""
    parent = live_server.service.registry
    small = write_oci_image(tmp_path / "small", ImageSpec(tag="a"))
    big = write_oci_image(tmp_path / "big", ImageSpec(tag="b", layers=(
        make_layer(os.urandom(2 << 20)), make_layer(os.urandom(2 << 20)))))
    put_on_parent(parent, "app", small, "a")
    put_on_parent(parent, "app", big, "b")
    first_layer, second_layer = big.manifests[0].layers
    partial = site.datadir.root / "sync" / "partial" / str(first_layer.digest).replace(":", "-")

    def clock() -> float:
        """Real time, an hour on once the first layer is whole in sync/partial."""
        try:
            whole = partial.stat().st_size == first_layer.size
        except FileNotFoundError:
            whole = False
        return time.time() + (3600.0 if whole else 0.0)

    sync = runner(site, live_server, "app", parallel=1, clock=clock)
    stopped = sync.run(until=time.time() + 1800.0)
    assert stopped.status == "stopped", stopped.errors
    assert [t.tag for t in browse.tags(site, "app")] == ["a"]
    assert partial.stat().st_size == first_layer.size
    assert not site.has_blob(str(second_layer.digest))
    assert stopped.bytes_copied == small.total_size + big.manifests[0].config.size \
        + first_layer.size

    resumed = sync.run()
    sync.close()
    assert resumed.status == "succeeded", resumed.errors
    assert site.get_manifest("app", "b").digest == big.digest
    assert resumed.bytes_copied == second_layer.size  # the first layer came once
    assert not partial.exists()
