"""A sync over an uplink that goes silent. A blackhole (a radio link gone, a NAT entry timed
out) closes nothing: the connections stay open and no byte comes. The run must end all the
same: failed, with one line that names the parent and says it timed out, its record written,
the local tags untouched and a blob's bytes kept; the next run, the uplink back, completes (the
blob resumed from those bytes). The silence is the cutting proxy's (`flowing`, `stall_after`);
the client's connect and read timeout is ParentClient's `timeout` (30 s by default): SILENCE
for the runs over the silent link, with one retry, so that giving up costs seconds, not
minutes; the runs over a healthy link keep the defaults."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cutting_proxy import CuttingProxy
from imagebuilder import BuiltImage, ImageSpec, make_layer, write_oci_image
from parents import Parent
from support import Endpoint, LiveServer, put_on_parent, wait_until
from test_sync_engine import site

from registry_core.registry import Registry
from registry_core.store.sync_runs import SyncRunRecord
from registry_core.sync.client import ParentClient
from registry_core.sync.engine import Scope
from registry_core.sync.runner import SyncRunner
from registry_core.sync.status import derive_state

pytestmark = pytest.mark.socket

__all__ = ["site"]  # the site registry fixture of test_sync_engine, used here too

SILENCE = 1.0
"""The client's connect and read timeout here: how long a try waits on a silent parent."""


def client(parent: Endpoint, link: CuttingProxy, retries: int = 1) -> ParentClient:
    """A client of `parent` through `link`, quick to give up on silence."""
    return ParentClient(link.address, parent.username, parent.password,
                        ca_file=parent.cert_dir / "ca.crt", retries=retries, backoff=0.01,
                        timeout=SILENCE)


def patient(parent: Endpoint, link: CuttingProxy) -> Callable[[], ParentClient]:
    """The connect of a run over a healthy link: the client's own timeouts and retries."""
    return lambda: ParentClient(link.address, parent.username, parent.password,
                                ca_file=parent.cert_dir / "ca.crt")


def run(site: Registry, connect: Callable[[], ParentClient], *repositories: str
        ) -> SyncRunRecord:
    """One run of `repositories`, in a thread: a run that hangs fails the test at the hang
    guard instead of hanging it."""
    sync = SyncRunner(site, connect, Scope(repositories))
    ended: list[SyncRunRecord] = []
    thread = threading.Thread(target=lambda: ended.append(sync.run()), daemon=True)
    thread.start()
    try:
        wait_until(lambda: not thread.is_alive(), "the sync run to end")
    finally:
        sync.close()
    assert ended, "the run raised instead of ending with a record"
    return ended[0]


def assert_timed_out(site: Registry, record: SyncRunRecord, link: CuttingProxy,
                     lines: int = 1) -> None:
    """Failed, with `lines` lines each naming the parent (as the site reaches it) and how
    long it was silent, and all of it on record."""
    assert record.status == "failed"
    assert len(record.errors) == lines, record.errors
    for error in record.errors:
        assert f"parent {link.address} unreachable: " in error, error
        assert "timed out" in error and f" {SILENCE:g} s " in error, error
        assert "\n" not in error
    with site.store.snapshot():
        saved = site.store.sync_runs.get(record.id)
    assert saved is not None
    assert (saved.status, saved.errors) == ("failed", record.errors)
    assert saved.details["parent_reachable"] is record.details["parent_reachable"]
    assert saved.finished_at is not None


@pytest.mark.skopeo
@pytest.mark.parametrize("after_hello", [False, True],
                         ids=["silent-from-the-first-byte", "silent-after-a-first-answer"])
def test_a_parent_that_never_answers_ends_the_run_with_a_timeout(
    reference_parent: Parent, site: Registry, tmp_path: Path, after_hello: bool
) -> None:
    """The reference registry behind a link that accepts connections and then says nothing:
    from the first byte (the TLS handshake is never answered), or once the parent has
    answered a first request (the next one goes up on the open connection and its answer
    never comes down: tried once, so that the line says so)."""
    parent, repository = reference_parent, f"silent/{'hello' if after_hello else 'first'}"
    old = write_oci_image(tmp_path / "old", ImageSpec(tag="old"))
    new = write_oci_image(tmp_path / "new", ImageSpec(tag="new"))
    parent.push(f"oci:{old.path}:old", f"{repository}:v1")
    with CuttingProxy((parent.host, parent.port)) as link:
        def connect_then_silence() -> ParentClient:
            opened = client(parent, link, retries=0 if after_hello else 1)
            if after_hello:
                opened.ping()  # a connection open, the credentials taken
            link.flowing.clear()
            return opened

        assert run(site, patient(parent, link), repository).status == "succeeded"
        parent.push(f"oci:{new.path}:new", f"{repository}:v1")

        silent = run(site, connect_then_silence, repository)
        assert_timed_out(site, silent, link)
        assert silent.details["parent_reachable"] is False  # Offline: the uplink to look at
        if after_hello:
            assert "read timed out: nothing came for" in silent.errors[0]
        assert site.get_manifest(repository, "v1").digest == old.digest

        link.resume()
        healed = run(site, patient(parent, link), repository)
    assert healed.status == "succeeded", healed.errors
    assert site.get_manifest(repository, "v1").digest == new.digest


def new_blobs(image: BuiltImage, since: BuiltImage) -> int:
    """Bytes of the blobs of `image` that `since` does not have."""
    had = {b.digest for m in since.manifests for b in (m.config, *m.layers)}
    return sum(b.size for m in image.manifests for b in (m.config, *m.layers)
               if b.digest not in had)


def test_a_parent_silent_mid_blob_ends_the_run_and_the_next_resumes_the_blob(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    """A second edge registry as the parent; the link goes silent 1 MiB into a 4 MiB layer,
    the connection left open. The run ends failed with the bytes that came kept in
    sync/partial; the uplink back, the next run asks only for the rest."""
    small = write_oci_image(tmp_path / "small", ImageSpec(tag="small"))
    big = write_oci_image(tmp_path / "big", ImageSpec(tag="big", layers=(
        make_layer(os.urandom(4 << 20)),)))  # random: gzip keeps it 4 MiB
    layer = big.manifests[0].layers[0]
    partial = site.datadir.root / "sync" / "partial" / str(layer.digest).replace(":", "-")
    put_on_parent(live_server.service.registry, "shop/app", small, "v1")
    with CuttingProxy(("127.0.0.1", live_server.port)) as link:
        def connect() -> ParentClient:
            return client(live_server, link)

        assert run(site, patient(live_server, link), "shop/app").status == "succeeded"
        put_on_parent(live_server.service.registry, "shop/app", big, "v1")
        link.stall_after = link.bytes_from_upstream + (1 << 20)

        stalled = run(site, connect, "shop/app")
        assert_timed_out(site, stalled, link)
        assert not link.flowing.is_set()  # it was the silence, not something else
        assert stalled.details["parent_reachable"] is False  # it answered, then went silent
        assert derive_state(True, False, [stalled]) == "Offline"
        kept = partial.stat().st_size
        assert 0 < kept < layer.size
        assert site.get_manifest("shop/app", "v1").digest == small.digest

        link.resume()
        resumed = run(site, patient(live_server, link), "shop/app")
    assert resumed.status == "succeeded", resumed.errors
    # Every byte that came before the silence was kept: none came twice.
    assert stalled.bytes_copied + resumed.bytes_copied == new_blobs(big, small)
    assert site.get_manifest("shop/app", "v1").digest == big.digest
    assert site.stat_blob("shop/app", layer.digest).size == layer.size
    assert not partial.exists()


def test_a_silent_parent_is_given_up_on_once_not_once_per_request(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    """Three named repositories, each listed on its own, over a link silent from the first
    byte: the first listing waits through its tries (one connection each); the others fail
    at once with the same line, or a run over a dead uplink would last as many retry budgets
    (6 tries of 30 s by default) as it has requests."""
    repositories = ("shop/a", "shop/b", "shop/c")
    image = write_oci_image(tmp_path / "i", ImageSpec(tag="v1"))
    for repository in repositories:
        put_on_parent(live_server.service.registry, repository, image, "v1")
    with CuttingProxy(("127.0.0.1", live_server.port)) as link:
        def connect() -> ParentClient:
            return client(live_server, link)

        link.flowing.clear()
        record = run(site, connect, *repositories)
        assert_timed_out(site, record, link, lines=3)
        assert link.connections == 2  # the first listing's two tries; nothing after
    assert sorted(e.split(":", 1)[0] for e in record.errors) == list(repositories)
    assert len({e.split(": ", 1)[1] for e in record.errors}) == 1
