"""ReadWrite pushes up to real parents (a second edge registry over TLS, and the reference
registry): layers the parent already has in another repository are mounted, not uploaded;
a big blob whose upload is cut mid-way goes on from what the parent acknowledged. The
cutting proxy sits between the site and the parent and counts the bytes that go up."""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cutting_proxy import CuttingProxy
from imagebuilder import BuiltImage, ImageSpec, make_layer, write_oci_image
from parents import Parent
from support import Endpoint, LiveServer, free_port, put_on_parent, start_live_server
from test_sync_engine import runner as engine_runner
from test_sync_engine import site
from test_sync_store import stage

from console.commands.sync import run_summary
from console.screens.sync import pushed_note
from registry_core.access.audit import AuditFilter
from registry_core.config import load_config, save_config
from registry_core.datadir import DataDir
from registry_core.enablement import enable
from registry_core.events import BlobCommitted, Event
from registry_core.identity import CONSOLE, SYNC
from registry_core.reference import parse_digest
from registry_core.registry import Registry
from registry_core.sync.client import UPLOAD_CHUNK, ParentClient
from registry_core.sync.engine import Scope
from registry_core.sync.runner import SyncRunner

pytestmark = pytest.mark.socket

__all__ = ["site"]  # the site registry fixture of test_sync_engine, used here too

MIB = 1 << 20


@pytest.fixture
def proxied() -> Iterator[Callable[[Endpoint], CuttingProxy]]:
    """A cutting proxy in front of a parent, closed after the test."""
    proxies: list[CuttingProxy] = []

    def start(parent: Endpoint) -> CuttingProxy:
        proxies.append(CuttingProxy((parent.host, parent.port)))
        return proxies[-1]

    yield start
    for proxy in proxies:
        proxy.close()


def read_write(site: Registry, parent: Endpoint, proxy: CuttingProxy,
               pattern: str) -> SyncRunner:
    """A ReadWrite runner for `pattern` that reaches `parent` through `proxy`."""

    def connect() -> ParentClient:
        return ParentClient(proxy.address, parent.username, parent.password,
                            ca_file=parent.ca_cert)

    return SyncRunner(site, connect, Scope((pattern,)), parallel=3, read_write=True)


def sharing(tmp_path: Path, name: str, layers: tuple[int, ...]) -> tuple[BuiltImage, BuiltImage]:
    """Two images with the same config and random (incompressible) layers, and different
    manifests (an annotation)."""
    shared = tuple(make_layer(os.urandom(size)) for size in layers)
    one, two = (write_oci_image(tmp_path / f"{name}-{n}", ImageSpec(
        tag=name, layers=shared, annotations={"copy": n})) for n in "ab")
    assert blob_digests(one) == blob_digests(two) and one.digest != two.digest
    return one, two


def blob_digests(image: BuiltImage) -> set[str]:
    return {str(b.digest) for m in image.manifests for b in (m.config, *m.layers)}


def parent_blob_digest(parent: Endpoint, repository: str, digest: str) -> str:
    with parent.client(timeout=60) as http:
        answer = http.get(f"/v2/{repository}/blobs/{digest}", follow_redirects=True)
    assert answer.status_code == 200, answer.text
    return f"sha256:{hashlib.sha256(answer.content).hexdigest()}"


def parent_log(parent: Parent) -> str:
    assert parent.process is not None
    return parent.process.log.read_text(encoding="utf-8", errors="replace")


def requests_logged(parent: Parent, method: str, path: str, status: int | None = None) -> int:
    """Requests the reference registry logged as completed ("response completed") for
    `method` on a URI that starts with `path`, answered `status` (None: any)."""
    count = 0
    for line in parent_log(parent).splitlines():
        if "response completed" not in line:
            continue
        fields = dict(re.findall(r'http\.(request\.method|request\.uri|response\.status)='
                                 r'"?([^" ]*)"?', line))
        count += (fields.get("request.method") == method
                  and fields.get("request.uri", "").startswith(path)
                  and status in (None, int(fields.get("response.status", 0))))
    return count


# ---- mounts ---------------------------------------------------------------------------------


def test_layers_the_edge_parent_has_elsewhere_are_mounted_not_uploaded(
    live_server: LiveServer, site: Registry, tmp_path: Path,
    proxied: Callable[[Endpoint], CuttingProxy],
) -> None:
    parent = live_server.service.registry
    base, app = sharing(tmp_path, "shared", (2 * MIB,))
    fresh, _ = sharing(tmp_path, "fresh", (2 * MIB,))
    put_on_parent(parent, "shop/base", base, "v1")
    proxy = proxied(live_server)
    sync = read_write(site, live_server, proxy, "shop/*")
    assert sync.run().status == "succeeded"  # shop/base synced here

    # Pushed here: an image on the layers of shop/base; and a new image in two repositories.
    put_on_parent(site, "shop/app", app, "v1")
    put_on_parent(site, "shop/one", fresh, "v1")
    put_on_parent(site, "shop/two", fresh, "v1")
    committed: list[BlobCommitted] = []

    def on_event(event: Event) -> None:
        if isinstance(event, BlobCommitted):
            committed.append(event)

    parent.events.subscribe(on_event)
    before = proxy.bytes_to_upstream
    up = sync.run()
    sent = proxy.bytes_to_upstream - before
    sync.close()

    assert up.status == "succeeded", up.errors
    assert up.manifests_pushed == 3
    assert (up.details["blobs_uploaded"], up.details["blobs_mounted"]) == (
        len(blob_digests(fresh)), len(blob_digests(app)) + len(blob_digests(fresh)))
    assert up.details["bytes_uploaded"] == sum(
        b.size for m in fresh.manifests for b in (m.config, *m.layers))
    assert parent.get_manifest("shop/app", "v1").digest == app.digest
    assert parent.get_manifest("shop/two", "v1").digest == fresh.digest
    how = {(e.repository, e.digest): e.mounted_from for e in committed}
    assert how == {
        **{("shop/app", d): "shop/base" for d in blob_digests(app)},
        **{("shop/one", d): None for d in blob_digests(fresh)},  # new to the parent: uploaded
        **{("shop/two", d): "shop/one" for d in blob_digests(fresh)},  # pushed in this pass
    }
    # Only the new image's layer went up, once.
    assert fresh.manifests[0].layers[0].size < sent < 2 * fresh.manifests[0].layers[0].size


def test_layers_the_reference_parent_has_elsewhere_are_mounted_not_uploaded(
    reference_parent: Parent, site: Registry, tmp_path: Path,
    proxied: Callable[[Endpoint], CuttingProxy],
) -> None:
    base, app = sharing(tmp_path, "shared", (2 * MIB,))
    reference_parent.push(base.reference, "mount/base:v1")
    proxy = proxied(reference_parent)
    sync = read_write(site, reference_parent, proxy, "mount/*")
    assert sync.run().status == "succeeded"
    assert site.get_manifest("mount/base", "v1").digest == base.digest

    put_on_parent(site, "mount/app", app, "v1")
    before = proxy.bytes_to_upstream
    up = sync.run()
    sent = proxy.bytes_to_upstream - before
    sync.close()

    assert up.status == "succeeded", up.errors
    assert up.manifests_pushed == 1
    assert (up.details["blobs_uploaded"], up.details["bytes_uploaded"]) == (0, 0)
    assert up.details["blobs_mounted"] == len(blob_digests(app))
    assert (f"Pushed up 1 manifests, 0 blobs uploaded (0 Bytes), "
            f"{len(blob_digests(app))} mounted.") in run_summary(up)
    toast = pushed_note(up)  # the Sync screen's end-of-run toast
    assert toast.startswith("; 1 manifests pushed up (0 blobs uploaded")
    assert toast.endswith(f"; {len(blob_digests(app))} mounted)")
    layer = app.manifests[0].layers[0]
    assert parent_blob_digest(reference_parent, "mount/app", str(layer.digest)) == str(
        layer.digest)
    assert sent < layer.size // 4  # the layer never went up
    uploads = "/v2/mount/app/blobs/uploads/"
    assert requests_logged(reference_parent, "POST", f"{uploads}?mount=", 201) == len(
        blob_digests(app))
    assert requests_logged(reference_parent, "PUT", uploads) == 0
    assert requests_logged(reference_parent, "PATCH", uploads) == 0


# ---- a cut upload -----------------------------------------------------------------------------


def big_image(tmp_path: Path) -> BuiltImage:
    """One layer of about 2.5 upload chunks, random (gzip keeps its size)."""
    return write_oci_image(tmp_path / "big", ImageSpec(
        tag="big", layers=(make_layer(os.urandom(UPLOAD_CHUNK * 5 // 2)),)))


def test_a_big_upload_cut_mid_way_goes_on_from_what_the_edge_parent_acknowledged(
    live_server: LiveServer, site: Registry, tmp_path: Path,
    proxied: Callable[[Endpoint], CuttingProxy],
) -> None:
    """The uplink drops 1.5 chunks into the layer: the parent acknowledged the first chunk,
    so only the rest goes up again (from zero it would be the cut bytes plus the layer)."""
    image = big_image(tmp_path)
    layer = image.manifests[0].layers[0]
    put_on_parent(site, "big/app", image, "v1")
    proxy = proxied(live_server)
    cut_at = UPLOAD_CHUNK * 3 // 2
    proxy.cut_upstream_after, proxy.upstream_cuts_left = cut_at, 1
    sync = read_write(site, live_server, proxy, "big/*")
    record = sync.run()
    sync.close()

    assert record.status == "succeeded", record.errors
    assert proxy.upstream_cuts == 1
    assert proxy.bytes_to_upstream < layer.size + cut_at - UPLOAD_CHUNK // 2
    parent = live_server.service.registry
    assert parent.get_manifest("big/app", "v1").digest == image.digest
    assert parent_blob_digest(live_server, "big/app", str(layer.digest)) == str(layer.digest)


def test_a_big_upload_cut_mid_chunk_ends_whole_on_the_reference_parent(
    reference_parent: Parent, site: Registry, tmp_path: Path,
    proxied: Callable[[Endpoint], CuttingProxy],
) -> None:
    """distribution 2.8 drops a session whose file grew past the offset it signed (a chunk
    cut mid-way leaves such a file): the session's status is a 404, and the client starts a
    new session; the blob arrives whole with its digest."""
    image = big_image(tmp_path)
    layer = image.manifests[0].layers[0]
    put_on_parent(site, "cut/app", image, "v1")
    proxy = proxied(reference_parent)
    proxy.cut_upstream_after, proxy.upstream_cuts_left = UPLOAD_CHUNK * 3 // 2, 1
    sync = read_write(site, reference_parent, proxy, "cut/*")
    record = sync.run()
    sync.close()

    assert record.status == "succeeded", record.errors
    assert proxy.upstream_cuts == 1
    assert requests_logged(reference_parent, "PATCH", "/v2/cut/app/blobs/uploads/") >= 3
    assert "upload resumed at wrong offest" in parent_log(reference_parent)
    with reference_parent.client() as http:
        head = http.head("/v2/cut/app/manifests/v1", headers={"Accept": image.media_type})
    assert head.headers.get("docker-content-digest") == str(image.digest)
    assert parent_blob_digest(reference_parent, "cut/app", str(layer.digest)) == str(
        layer.digest)


def test_a_cut_chunked_upload_with_token_auth(token_parent: Parent, tmp_path: Path,
                                              proxied: Callable[[Endpoint], CuttingProxy]
                                              ) -> None:
    """Every request of a chunked upload (POST, PATCH, the session's status, the closing
    PUT) carries the push token, after a cut too."""
    data = os.urandom(UPLOAD_CHUNK * 5 // 2)
    source = tmp_path / "blob"
    source.write_bytes(data)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    proxy = proxied(token_parent)
    proxy.cut_upstream_after, proxy.upstream_cuts_left = UPLOAD_CHUNK * 3 // 2, 1
    with ParentClient(proxy.address, token_parent.username, token_parent.password,
                      ca_file=token_parent.ca_file, backoff=0.01) as client:
        client.push_blob("tokchunks/app", digest, source, len(data))
        assert client.blob_exists("tokchunks/app", digest)
    assert proxy.upstream_cuts == 1
    assert requests_logged(token_parent, "PATCH", "/v2/tokchunks/app/blobs/uploads/", 202) >= 3


# ---- tags deleted on the parent -------------------------------------------------------------


def parent_tags(parent: Registry, repository: str) -> list[str]:
    return list(parent.tags(repository).items)


def test_a_tag_deleted_on_the_parent_is_untagged_here_not_pushed_back(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    parent = live_server.service.registry
    one, two = (write_oci_image(tmp_path / n, ImageSpec(tag=n)) for n in ("one", "two"))
    put_on_parent(parent, "shop/app", one, "v1")
    put_on_parent(parent, "shop/app", one, "v2")
    sync = engine_runner(site, live_server, "shop/*", read_write=True)
    assert sync.run().status == "succeeded"  # v1 and v2 agreed on

    # Both deleted on the parent; v2 moved here since, v1 did not.
    parent.untag("shop/app", "v1", who=CONSOLE)
    parent.untag("shop/app", "v2", who=CONSOLE)
    put_on_parent(site, "shop/app", two, "v2")
    after = sync.run()

    assert after.status == "succeeded", after.errors
    assert after.conflicts == [{"repository": "shop/app", "tag": "v1", "local": str(one.digest),
                                "parent": "", "kept": "parent"}]
    assert parent_tags(parent, "shop/app") == ["v2"]  # v1 stays deleted; v2 is the newer here
    assert parent.get_manifest("shop/app", "v2").digest == two.digest
    assert "v1" not in site.tags("shop/app").items
    assert site.get_manifest("shop/app", str(one.digest)).read() == one.body  # by digest
    untagged = site.audit.query(AuditFilter(action="tag.delete"))
    assert [(e.principal, e.reference) for e in untagged] == [(SYNC.name, "v1")]

    calm = sync.run()
    assert (calm.manifests_pushed, calm.conflicts) == (0, [])
    assert parent_tags(parent, "shop/app") == ["v2"]

    # Tagged here again afterwards, the same digest is new: it goes up.
    put_on_parent(site, "shop/app", one, "v1")
    again = sync.run()
    assert (again.manifests_pushed, again.conflicts) == (1, [])
    assert parent.get_manifest("shop/app", "v1").digest == one.digest
    sync.close()


def test_a_staged_tag_deleted_on_the_parent_stays_here_until_the_stage_is_released(
    live_server: LiveServer, site: Registry, tmp_path: Path
) -> None:
    parent = live_server.service.registry
    one = write_oci_image(tmp_path / "one", ImageSpec(tag="one"))
    put_on_parent(parent, "shop/app", one, "v1")
    sync = engine_runner(site, live_server, "shop/*", read_write=True)
    assert sync.run().status == "succeeded"
    stage(site.store, "window-7", "shop/app", "v1", str(one.digest))

    parent.untag("shop/app", "v1", who=CONSOLE)
    kept = sync.run()
    assert kept.status == "succeeded", kept.errors
    [conflict] = kept.conflicts
    assert (conflict["tag"], conflict["parent"], conflict["kept"]) == ("v1", "", "local")
    assert "pinned by the stage window-7" in conflict["reason"]
    assert site.get_manifest("shop/app", "v1").digest == one.digest
    assert parent_tags(parent, "shop/app") == []  # not pushed back either

    with site.store.exclusive():
        site.store.stages.release("window-7")
    released = sync.run()
    assert [c["kept"] for c in released.conflicts] == ["parent"]
    assert "v1" not in site.tags("shop/app").items
    sync.close()


# ---- a busy parent during an upload -----------------------------------------------------------


@pytest.fixture
def plain_parent(tmp_path: Path) -> Iterator[LiveServer]:
    """A second edge registry served without TLS: the cutting proxy can read the requests on
    the link to it (and answer one as a busy parent would)."""
    datadir = DataDir(tmp_path / "plain-parent")
    enable(datadir, device_name="parent", dns_domain="test", node_ip="127.0.0.1",
           port=free_port())
    save_config(dataclasses.replace(load_config(datadir.config), tls=False), datadir.config)
    server = start_live_server(datadir, tmp_path / "plain-certs")
    yield server
    server.service.close()


def after(requests: list[tuple[float, str, str]], method: str, nth: int) -> tuple[float, float]:
    """When the `nth` (0-based) `method` request arrived, and the request after it."""
    seen = [i for i, (_, m, _) in enumerate(requests) if m == method]
    index = seen[nth]
    return requests[index][0], requests[index + 1][0]


def test_retry_after_on_upload_chunks_is_honoured(plain_parent: LiveServer,
                                                  tmp_path: Path) -> None:
    chunk = 64 * 1024
    big, small = os.urandom(chunk * 3 + 100), os.urandom(1000)
    digests = {name: f"sha256:{hashlib.sha256(data).hexdigest()}"
               for name, data in (("big", big), ("small", small))}
    (tmp_path / "big").write_bytes(big)
    (tmp_path / "small").write_bytes(small)
    with CuttingProxy(("127.0.0.1", plain_parent.port), http=True) as proxy:
        proxy.answer_next("PATCH", 429, {"Retry-After": "2"})
        asked_at = time.monotonic()  # the HTTP date below is whole seconds: 5 s at least
        proxy.answer_next("PATCH", 503, {"Retry-After": email.utils.formatdate(
            time.time() + 6, usegmt=True)})
        with ParentClient(proxy.address, plain_parent.username, plain_parent.password,
                          protocol="http", backoff=0.01, upload_chunk=chunk) as client:
            client.push_blob("busy/app", digests["big"], tmp_path / "big", len(big))
            proxy.answer_next("PUT", 429, {"Retry-After": "1"})  # a small blob: one PUT
            client.push_blob("busy/app", digests["small"], tmp_path / "small", len(small))
        requests = list(proxy.requests)
    # Lower bounds only: the next request came no sooner than the parent asked.
    refused, next_one = after(requests, "PATCH", 0)
    assert next_one - refused >= 1.9
    _, next_one = after(requests, "PATCH", 1)
    assert next_one - asked_at >= 4.9
    put_refused = [i for i, (_, m, _) in enumerate(requests) if m == "PUT"][-2]
    assert requests[put_refused + 1][0] - requests[put_refused][0] >= 0.9
    parent = plain_parent.service.registry
    for name, data in (("big", big), ("small", small)):
        path = parent.blob_store.local_path(parse_digest(digests[name]))
        assert path is not None and path.read_bytes() == data


# ---- the bound on transfers -------------------------------------------------------------------

PARALLEL = 2
OVERLAP_WAIT = 0.3
"""How long each transfer waits for more to start beside it: a pass that let more than
PARALLEL run at once would show it within that time."""


class CountingParent(ParentClient):
    """The real client, counting the blob transfers (downloads and uploads) in flight at
    once; each lingers a moment at its start so that too many would overlap visibly."""

    def __init__(self, server: LiveServer) -> None:
        super().__init__(f"127.0.0.1:{server.port}", server.username, server.password,
                         ca_file=server.cert_dir / "ca.crt")
        self.changed = threading.Condition()
        self.in_flight = self.most = 0
        self.kinds: list[str] = []

    @contextlib.contextmanager
    def transfer(self, kind: str) -> Iterator[None]:
        with self.changed:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.kinds.append(kind)
            self.changed.notify_all()
            self.changed.wait_for(lambda: self.in_flight > PARALLEL, OVERLAP_WAIT)
        try:
            yield
        finally:
            with self.changed:
                self.in_flight -= 1

    def fetch_blob(self, repository: str, digest: str, target: Path, size: int | None = None,
                   progress: Callable[[int], None] | None = None) -> int:
        with self.transfer("down"):
            return super().fetch_blob(repository, digest, target, size, progress)

    def push_blob(self, repository: str, digest: str, source: Path, size: int) -> None:
        with self.transfer("up"):
            super().push_blob(repository, digest, source, size)


def test_downloads_and_uploads_share_one_bound(live_server: LiveServer, site: Registry,
                                               tmp_path: Path) -> None:
    """A ReadWrite pass that pulls and pushes at once keeps to `parallel` blob transfers in
    all, not `parallel` each way."""
    for n in range(1, 7):
        image = write_oci_image(tmp_path / f"t{n}", ImageSpec(
            tag=f"t{n}", layers=(make_layer(os.urandom(64 << 10)),)))
        put_on_parent(live_server.service.registry if n % 2 else site, "shop/app", image,
                      f"t{n}")
    parents: list[CountingParent] = []

    def connect() -> CountingParent:
        parents.append(CountingParent(live_server))
        return parents[-1]

    sync = SyncRunner(site, connect, Scope(("shop/*",)), parallel=PARALLEL, read_write=True)
    record = sync.run()
    sync.close()
    assert record.status == "succeeded", record.errors
    counted = [p for p in parents if p.kinds]
    assert len(counted) == 1
    assert sorted(set(counted[0].kinds)) == ["down", "up"]
    assert record.details["blobs_uploaded"] == 6 and record.blobs_copied == 6
    assert counted[0].most <= PARALLEL
