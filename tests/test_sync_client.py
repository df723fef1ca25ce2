"""The parent registry client (registry_core/sync/client.py) against real parents: the reference
registry (CNCF distribution 2.8, Debian's docker-registry) with htpasswd and with token auth,
and a second registry of ours (`edge-console serve`'s server) where distribution 2.8 lacks an
API (tags paging, referrers). The wire breaks for real through the cutting proxy. A stand-in
answers only what no real registry here produces on demand (429 and 503 with Retry-After).
"""

from __future__ import annotations

import email.utils
import json
import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cutting_proxy import CuttingProxy
from imagebuilder import (
    BuiltImage,
    ImageSpec,
    write_docker_dir,
    write_oci_index,
    write_oci_layout,
    write_random_image,
)
from kubebed import eventually
from parents import FileServer, Parent, start_reference
from support import LiveServer, free_port, remote, run_skopeo, skopeo_auth

from registry_core.manifests import (
    DOCKER_MANIFEST,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
)
from registry_core.reference import digest_bytes
from registry_core.sync.client import ParentClient
from registry_core.sync.errors import (
    ParentAuthFailed,
    ParentDenied,
    ParentNotFound,
    ParentProtocolError,
    ParentUnreachable,
)

pytestmark = [pytest.mark.socket, pytest.mark.skopeo]

BIG = 4 * 1024 * 1024
SBOM = "application/vnd.example.sbom.v1+json"
EMPTY = b"{}"


def client_for(parent: Parent, via: CuttingProxy | None = None, **kwargs: Any) -> ParentClient:
    """A client of `parent` (through `via` when given), quick to retry."""
    kwargs.setdefault("backoff", 0.01)
    return ParentClient(via.address if via else parent.address, parent.username,
                        parent.password, ca_file=parent.ca_file, **kwargs)


def file_digest(path: Path) -> str:
    return str(digest_bytes(path.read_bytes()))


@pytest.fixture(scope="module")
def images(reference_parent: Parent, tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, BuiltImage]:
    """On the reference parent: an OCI image, a Docker image, a two-platform index and an
    image with a 4 MiB random layer, each in its own repository."""
    src = tmp_path_factory.mktemp("images")
    built = {
        "oci": write_oci_layout(src / "oci", (ImageSpec(tag="v1"),))[0],
        "docker": write_docker_dir(src / "docker", ImageSpec(tag="d1")),
        "multi": write_oci_index(src / "multi", tag="m1"),
        "big": write_random_image(src / "big", BIG, tag="b1"),
    }
    for name, image in built.items():
        reference_parent.push(image.reference, f"kinds/{name}:1")
    return built


def big_layer(images: dict[str, BuiltImage]) -> tuple[str, int]:
    layer = max(images["big"].manifests[0].layers, key=lambda b: b.size)
    return str(layer.digest), layer.size


# ---- listing -------------------------------------------------------------------------------


def test_ping_and_catalog_paged_by_the_link_header(
    reference_parent: Parent, images: dict[str, BuiltImage]
) -> None:
    for i in range(5):
        reference_parent.push(images["oci"].reference, f"paged/r{i}:1")
    with reference_parent.client() as raw:
        everything = raw.get("/v2/_catalog", params={"n": 1000}).json()["repositories"]
        first = raw.get("/v2/_catalog", params={"n": 2})
    # The premise: distribution pages its catalog with n and a relative Link.
    assert first.headers["link"].startswith("</v2/_catalog?last=")
    assert len(everything) >= 9
    with client_for(reference_parent, page_size=2) as client:
        client.ping()
        assert client.catalog() == everything


def test_tags_paged_and_absent(live_server: LiveServer, skopeo: str, tmp_path: Path,
                               reference_parent: Parent, images: dict[str, BuiltImage]) -> None:
    # Distribution 2.8 ignores n on tags/list (everything, unsorted, no Link); ours pages.
    layout = tmp_path / "tags"
    tags = [f"t{i}" for i in range(5)]
    write_oci_layout(layout, tuple(ImageSpec(tag=t) for t in tags))
    for tag in tags:
        run_skopeo(skopeo, "copy", *skopeo_auth(live_server, "dest-"), f"oci:{layout}:{tag}",
                   remote(live_server, f"paged/app:{tag}"))
    with live_server.client() as raw:
        first = raw.get("/v2/paged/app/tags/list", params={"n": 2})
    assert first.headers["link"] and first.json()["tags"] == tags[:2]
    ours = ParentClient(live_server.address, live_server.username, live_server.password,
                        ca_file=live_server.ca_cert, page_size=2)
    with ours:
        assert ours.tags("paged/app") == tags
        assert ours.tags("no/such") == []
    for i in range(3):
        reference_parent.push(images["oci"].reference, f"kinds/oci:x{i}")
    with client_for(reference_parent, page_size=2) as client:
        assert sorted(client.tags("kinds/oci")) == ["1", "x0", "x1", "x2"]
        assert client.tags("no/such") == []


# ---- manifests -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "media_type"),
    [("oci", OCI_MANIFEST), ("docker", DOCKER_MANIFEST), ("multi", OCI_INDEX)],
)
def test_manifests_by_tag_and_digest(reference_parent: Parent, images: dict[str, BuiltImage],
                                     kind: str, media_type: str) -> None:
    image = images[kind]
    with client_for(reference_parent) as client:
        head = client.head_manifest(f"kinds/{kind}", "1")
        assert head is not None
        assert (head.digest, head.media_type, head.size) == (
            str(image.digest), media_type, len(image.body))
        got = client.get_manifest(f"kinds/{kind}", "1")
        assert (got.digest, got.media_type, got.body) == (str(image.digest), media_type,
                                                         image.body)
        assert client.get_manifest(f"kinds/{kind}", str(image.digest)).body == image.body
        for child in image.manifests if image.is_index else ():
            fetched = client.get_manifest(f"kinds/{kind}", str(child.digest))
            assert (fetched.digest, fetched.body) == (str(child.digest), child.body)
        assert client.head_manifest(f"kinds/{kind}", "nope") is None
        with pytest.raises(ParentNotFound, match="MANIFEST_UNKNOWN"):
            client.get_manifest(f"kinds/{kind}", "nope")


# ---- blobs -----------------------------------------------------------------------------------


def test_fetch_blob_streams_and_checks(reference_parent: Parent, images: dict[str, BuiltImage],
                                       tmp_path: Path) -> None:
    digest, size = big_layer(images)
    seen: list[int] = []
    target = tmp_path / "blob"
    with client_for(reference_parent) as client:
        received = client.fetch_blob("kinds/big", digest, target, size, seen.append)
    assert received == size == sum(seen) == target.stat().st_size > BIG
    assert file_digest(target) == digest


def test_a_cut_transfer_resumes_from_the_bytes_on_disk(
    reference_parent: Parent, images: dict[str, BuiltImage], tmp_path: Path
) -> None:
    digest, size = big_layer(images)
    cut = 1024 * 1024
    target = tmp_path / "blob"
    with CuttingProxy((reference_parent.host, reference_parent.port), cut_after=cut) as proxy:
        # No retries: the first cut ends the call, and the bytes it got stay on disk.
        with client_for(reference_parent, proxy, retries=0) as client, \
                pytest.raises(ParentUnreachable, match="gave up after 1 try"):
            client.fetch_blob("kinds/big", digest, target, size)
        have = target.stat().st_size
        assert 0 < have < cut
        proxy.cut_after = None
        seen: list[int] = []
        with client_for(reference_parent, proxy) as client:
            received = client.fetch_blob("kinds/big", digest, target, size, seen.append)
        # Only the rest came: a Range request answered 206 from `have` on.
        assert received == sum(seen) == size - have
        assert file_digest(target) == digest
        # Overall about size + the cut's headers and handshakes, never twice the blob.
        assert size <= proxy.bytes_from_upstream < size + cut // 8


def test_a_link_that_keeps_dropping_gets_the_blob_in_pieces(
    reference_parent: Parent, images: dict[str, BuiltImage], tmp_path: Path
) -> None:
    digest, size = big_layer(images)
    piece = 512 * 1024
    target = tmp_path / "blob"
    seen: list[int] = []
    with CuttingProxy((reference_parent.host, reference_parent.port), cut_after=piece) as proxy:
        with client_for(reference_parent, proxy, retries=2) as client:
            received = client.fetch_blob("kinds/big", digest, target, size, seen.append)
        # Far more cuts than the retry budget: each try brought bytes, so each counted once.
        assert proxy.connections > size // piece > 2
        assert received == sum(seen) == size
        assert file_digest(target) == digest
        # Each cut loses at most a partial TLS record (16 KiB) and costs a handshake.
        assert proxy.bytes_from_upstream < size + proxy.connections * 24 * 1024


def test_a_corrupted_blob_is_refused_and_removed(
    reference_parent: Parent, images: dict[str, BuiltImage], tmp_path: Path
) -> None:
    reference_parent.push(images["oci"].reference, "corrupt/app:1")
    layer = images["oci"].manifests[0].layers[-1]
    stored = reference_parent.blob_file(str(layer.digest))
    good = stored.read_bytes()
    stored.write_bytes(bytes(b ^ 0xFF for b in good))  # same length, other bytes
    target = tmp_path / "blob"
    try:
        with client_for(reference_parent) as client, \
                pytest.raises(ParentProtocolError, match="arrived as sha256:") as caught:
            client.fetch_blob("corrupt/app", str(layer.digest), target, layer.size)
    finally:
        stored.write_bytes(good)
    assert "\n" not in str(caught.value)
    assert not target.exists()


def test_wrong_bytes_on_disk_are_fetched_again(
    reference_parent: Parent, images: dict[str, BuiltImage], tmp_path: Path
) -> None:
    digest, size = big_layer(images)
    target = tmp_path / "blob"
    target.write_bytes(b"\0" * 1000)  # not the blob's first bytes
    with client_for(reference_parent) as client:
        received = client.fetch_blob("kinds/big", digest, target, size)
    assert received == size - 1000 + size  # the resumed rest, then the whole from zero
    assert file_digest(target) == digest


def test_whole_file_on_disk_costs_nothing(
    reference_parent: Parent, images: dict[str, BuiltImage], tmp_path: Path
) -> None:
    digest, size = big_layer(images)
    target = tmp_path / "blob"
    with client_for(reference_parent) as client:
        client.fetch_blob("kinds/big", digest, target, size)
        assert client.fetch_blob("kinds/big", digest, target, size) == 0
        # Size unknown: the Range from the end gets a 416, and the file is checked as is.
        assert client.fetch_blob("kinds/big", digest, target) == 0
    assert file_digest(target) == digest


def test_redirected_blobs_keep_the_authorization_home(
    reference_parent: Parent, images: dict[str, BuiltImage], tmp_path: Path
) -> None:
    digest, size = big_layer(images)
    storage = FileServer(reference_parent.storage)
    try:
        with start_reference(tmp_path / "redirecting", redirect_to=storage.url,
                             storage=reference_parent.storage) as redirecting:
            target = tmp_path / "blob"
            target.write_bytes(reference_parent.blob_file(digest).read_bytes()[:1000])
            with client_for(redirecting) as client:
                received = client.fetch_blob("kinds/big", digest, target, size)
    finally:
        storage.close()
    # Python's file server ignores Range: its 200 made the client start over.
    assert received == size
    assert file_digest(target) == digest
    assert storage.authorizations == [None]


def test_parallel_transfers_share_one_client(
    reference_parent: Parent, images: dict[str, BuiltImage], tmp_path: Path
) -> None:
    blobs = {str(b.digest): b.size for m in images["multi"].manifests
             for b in (m.config, *m.layers)}
    blobs[big_layer(images)[0]] = big_layer(images)[1]
    failures: list[BaseException] = []
    with client_for(reference_parent) as client:

        def fetch(digest: str, size: int) -> None:
            repo = "kinds/big" if size > BIG else "kinds/multi"
            try:
                client.fetch_blob(repo, digest, tmp_path / digest, size)
            except BaseException as exc:  # reported below
                failures.append(exc)

        threads = [threading.Thread(target=fetch, args=item) for item in blobs.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert failures == []
    assert all(file_digest(tmp_path / d) == d for d in blobs)


# ---- push side -------------------------------------------------------------------------------


def test_push_blob_and_manifest_then_read_back_and_mount(
    reference_parent: Parent, tmp_path: Path
) -> None:
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer = b"pushed layer " * 5000
    files = {}
    for name, data in (("config", config), ("layer", layer)):
        files[name] = tmp_path / name
        files[name].write_bytes(data)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": str(digest_bytes(config)), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": str(digest_bytes(layer)), "size": len(layer)}],
    }).encode()
    with client_for(reference_parent) as client:
        for name, data in (("config", config), ("layer", layer)):
            digest = str(digest_bytes(data))
            assert not client.blob_exists("pushed/app", digest)
            client.push_blob("pushed/app", digest, files[name], len(data))
            assert client.blob_exists("pushed/app", digest)
        digest = client.put_manifest("pushed/app", "v1", manifest, OCI_MANIFEST)
        assert digest == str(digest_bytes(manifest))
        got = client.get_manifest("pushed/app", "v1")
        assert (got.digest, got.media_type, got.body) == (digest, OCI_MANIFEST, manifest)
        # Across repositories: mounted, not uploaded; an unknown blob is not (and the upload
        # session the parent opened instead is cancelled).
        layer_digest = str(digest_bytes(layer))
        assert client.mount_blob("other/app", layer_digest, "pushed/app")
        assert client.blob_exists("other/app", layer_digest)
        assert not client.mount_blob("other/app", str(digest_bytes(b"nowhere")), "pushed/app")
        client.fetch_blob("other/app", layer_digest, tmp_path / "back", len(layer))
    assert (tmp_path / "back").read_bytes() == layer


# ---- referrers -------------------------------------------------------------------------------


def referrer_of(subject: BuiltImage) -> tuple[bytes, dict[str, Any]]:
    """An SBOM-like artifact manifest whose subject is `subject`, and its descriptor."""
    empty = {"mediaType": OCI_EMPTY, "digest": str(digest_bytes(EMPTY)), "size": len(EMPTY)}
    body = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SBOM,
        "config": empty,
        "layers": [empty],
        "subject": {"mediaType": subject.media_type, "digest": str(subject.digest),
                    "size": subject.size},
        "annotations": {"org.example.kind": "sbom"},
    }).encode()
    descriptor = {"mediaType": OCI_MANIFEST, "digest": str(digest_bytes(body)),
                  "size": len(body), "artifactType": SBOM,
                  "annotations": {"org.example.kind": "sbom"}}
    return body, descriptor


def push_referrer(client: ParentClient, repo: str, subject: BuiltImage,
                  tmp_path: Path) -> dict[str, Any]:
    body, descriptor = referrer_of(subject)
    (tmp_path / "empty").write_bytes(EMPTY)
    client.push_blob(repo, str(digest_bytes(EMPTY)), tmp_path / "empty", len(EMPTY))
    client.put_manifest(repo, descriptor["digest"], body, OCI_MANIFEST)
    return descriptor


def as_dict(found: Any) -> dict[str, Any]:
    return {"mediaType": found.media_type, "digest": found.digest, "size": found.size,
            "artifactType": found.artifact_type, "annotations": found.annotations}


def test_referrers_from_the_tag_schema_on_distribution(
    reference_parent: Parent, images: dict[str, BuiltImage], tmp_path: Path
) -> None:
    subject = images["oci"]
    with client_for(reference_parent) as client:
        assert client.referrers("kinds/oci", str(subject.digest)) == []  # 404 API, no tag
        descriptor = push_referrer(client, "kinds/oci", subject, tmp_path)
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                            "manifests": [descriptor]}).encode()
        client.put_manifest("kinds/oci", f"sha256-{subject.digest.hex}", index, OCI_INDEX)
        found = client.referrers("kinds/oci", str(subject.digest))
    assert [as_dict(d) for d in found] == [descriptor]


def test_a_listed_repository_without_the_referrers_tag_is_not_asked_for_it(
    reference_parent: Parent, images: dict[str, BuiltImage], tmp_path: Path
) -> None:
    subject = images["docker"]
    fallback = f"unknown tag=sha256-{subject.digest.hex}"

    def asked() -> int:
        text = reference_parent.process.log.read_text(errors="replace") \
            if reference_parent.process else ""
        return text.count(fallback)

    with client_for(reference_parent) as client:
        client.tags("kinds/docker")
        before = asked()
        assert client.referrers("kinds/docker", str(subject.digest)) == []
        assert asked() == before  # the listed tags said there is no such index
        descriptor = push_referrer(client, "kinds/docker", subject, tmp_path)
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                            "manifests": [descriptor]}).encode()
        client.put_manifest("kinds/docker", f"sha256-{subject.digest.hex}", index, OCI_INDEX)
        client.tags("kinds/docker")
        found = client.referrers("kinds/docker", str(subject.digest))
    assert [as_dict(d) for d in found] == [descriptor]


def test_referrers_from_the_api(live_server: LiveServer, skopeo: str, tmp_path: Path) -> None:
    subject = write_oci_layout(tmp_path / "subject", (ImageSpec(tag="s1"),))[0]
    run_skopeo(skopeo, "copy", *skopeo_auth(live_server, "dest-"), subject.reference,
               remote(live_server, "refs/app:s1"))
    ours = ParentClient(live_server.address, live_server.username, live_server.password,
                        ca_file=live_server.ca_cert)
    with ours:
        assert ours.referrers("refs/app", str(subject.digest)) == []
        descriptor = push_referrer(ours, "refs/app", subject, tmp_path)
        found = ours.referrers("refs/app", str(subject.digest))
    assert [as_dict(d) for d in found] == [descriptor]


# ---- authentication --------------------------------------------------------------------------


def auth_failures(parent: Parent) -> int:
    """401s the registry has logged for our client so far."""
    text = parent.process.log.read_text(errors="replace") if parent.process else ""
    return sum("error authorizing context" in line and "edge-console-sync" in line
               for line in text.splitlines())


def test_wrong_password_is_one_clear_line_after_one_try(reference_parent: Parent) -> None:
    before = auth_failures(reference_parent)
    client = ParentClient(reference_parent.address, reference_parent.username, "wrong",
                          ca_file=reference_parent.ca_file)
    with client, pytest.raises(ParentAuthFailed) as caught:
        client.ping()
    assert str(caught.value) == (
        f"parent {reference_parent.address} refused the sync credentials (401 unauthorized)")
    # Without credentials (learning the scheme), then once with them: never again.
    assert auth_failures(reference_parent) - before == 2


def test_closed_port_is_unreachable() -> None:
    client = ParentClient(f"127.0.0.1:{free_port()}", "u", "p", retries=2, backoff=0.01)
    with client, pytest.raises(ParentUnreachable, match="gave up after 3 tries") as caught:
        client.ping()
    assert "ConnectError" in str(caught.value) and "\n" not in str(caught.value)


def test_a_quick_client_tries_once(reference_parent: Parent) -> None:
    """The readiness check's client: a parent that is down costs one try, not the sync's
    retries (5, with backoff: 8 to 15 s)."""
    with CuttingProxy((reference_parent.host, reference_parent.port)) as link:
        link.down.set()
        quick = ParentClient.quick(link.address, reference_parent.username,
                                   reference_parent.password, ca_file=reference_parent.ca_file)
        with quick, pytest.raises(ParentUnreachable, match="gave up after 1 try"):
            quick.head_manifest("quick/app", "v1")
        assert link.refused == 1
        link.down.clear()
        with ParentClient.quick(link.address, reference_parent.username,
                                reference_parent.password,
                                ca_file=reference_parent.ca_file) as quick:
            quick.ping()  # up again: the same client answers


def test_an_untrusted_certificate_is_not_retried(reference_parent: Parent) -> None:
    client = ParentClient(reference_parent.address, "u", "p", retries=5, backoff=60)
    with client, pytest.raises(ParentUnreachable, match="TLS certificate not trusted"):
        client.ping()  # backoff 60 s: a retry would hang the test past its deadline


def test_token_auth_end_to_end_with_caching(token_parent: Parent, tmp_path: Path) -> None:
    image = write_oci_layout(tmp_path / "src", (ImageSpec(tag="v1"),))[0]
    token_parent.push(image.reference, "tok/app:v1")
    issuer = token_parent.issuer
    assert issuer is not None
    before = len(issuer.granted())
    layer = image.manifests[0].layers[-1]
    with client_for(token_parent) as client:
        client.ping()
        assert "tok/app" in client.catalog()
        for _ in range(2):
            assert client.tags("tok/app") == ["v1"]
            assert client.get_manifest("tok/app", "v1").body == image.body
            client.fetch_blob("tok/app", str(layer.digest), tmp_path / "blob", layer.size)
            (tmp_path / "blob").unlink()
    asked = [r.scopes for r in issuer.granted()[before:]]
    # One token per scope, fetched before the request once the realm was known.
    assert asked == [[], ["registry:catalog:*"], ["repository:tok/app:pull"]]


@pytest.mark.parametrize(
    ("age", "fetches"),
    [
        # issued_at 295 s ago with expires_in 300: too close to its end to be used again.
        (295, 2),
        # issued_at older than the lifetime: the clocks disagree; counted from receipt.
        (360, 1),
    ],
)
def test_token_lifetime_counts_from_issued_at(token_parent: Parent, tmp_path: Path,
                                              age: float, fetches: int) -> None:
    issuer = token_parent.issuer
    assert issuer is not None and issuer.expires_in == 300
    image = write_oci_layout(tmp_path / "src", (ImageSpec(tag="v1"),))[0]
    token_parent.push(image.reference, f"stale{age}/app:v1")
    before = len(issuer.granted())
    issuer.issued_age = age
    try:
        with client_for(token_parent) as client:
            client.tags(f"stale{age}/app")
            client.tags(f"stale{age}/app")
    finally:
        issuer.issued_age = 0
    assert [r.scopes for r in issuer.granted()[before:]] == (
        [[f"repository:stale{age}/app:pull"]] * fetches)


def test_a_refused_token_is_fetched_again_once(token_parent: Parent, tmp_path: Path) -> None:
    issuer = token_parent.issuer
    assert issuer is not None
    image = write_oci_layout(tmp_path / "src", (ImageSpec(tag="v1"),))[0]
    token_parent.push(image.reference, "refused/app:v1")
    try:
        with client_for(token_parent) as client:
            assert client.tags("refused/app") == ["v1"]
            before = len(issuer.granted())
            issuer.refuse_next = 1  # the registry refuses the next token (an expired JWT)
            assert client.get_manifest("refused/app", "v1").body == image.body
            assert len(issuer.granted()) == before  # the cached token is still good
            # A new scope: its token (the refused one), a 401, and one more token.
            assert client.head_manifest("other/app", "v1") is None
            assert len(issuer.granted()) - before == 2
            issuer.refuse_next = 2  # refused twice in a row: no third try
            with client_for(token_parent) as fresh, \
                    pytest.raises(ParentAuthFailed, match="refused the token"):
                fresh.tags("refused/app")
    finally:
        issuer.refuse_next = 0


def test_token_service_refuses_a_wrong_password(token_parent: Parent) -> None:
    client = ParentClient(token_parent.address, token_parent.username, "wrong",
                          ca_file=token_parent.ca_file, backoff=0.01)
    with client, pytest.raises(ParentAuthFailed, match="token service refused"):
        client.ping()


def test_push_with_a_token_and_a_pull_only_grant(token_parent: Parent, tmp_path: Path) -> None:
    issuer = token_parent.issuer
    assert issuer is not None
    data = b"a blob pushed with a token"
    source = tmp_path / "blob"
    source.write_bytes(data)
    digest = str(digest_bytes(data))
    with client_for(token_parent) as client:
        client.push_blob("tokpush/app", digest, source, len(data))
        assert client.blob_exists("tokpush/app", digest)
    issuer.actions = {"pull"}
    try:
        with client_for(token_parent) as client, pytest.raises(ParentDenied, match="may not"):
            client.push_blob("tokpush/other", digest, source, len(data))
    finally:
        issuer.actions = None


# ---- retries ---------------------------------------------------------------------------------


class ScriptedRegistry:
    """A stand-in for what the reference registry never answers on demand: 429 and 503 with
    Retry-After, shaped as distribution answers errors. Each request takes the next scripted
    answer; with none left, 200 and `{}` (the API version check's answer)."""

    def __init__(self, answers: list[tuple[int, dict[str, str]]]) -> None:
        self.answers = answers
        self.arrivals: list[float] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.arrivals.append(time.monotonic())
                status, headers = owner.answers.pop(0) if owner.answers else (200, {})
                code = {429: "TOOMANYREQUESTS", 503: "UNAVAILABLE"}.get(status, "UNKNOWN")
                doc: dict[str, Any] = {"errors": [{"code": code, "message": "slow down"}]}
                body = json.dumps({} if status == 200 else doc).encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json",
                                   "Docker-Distribution-Api-Version": "registry/2.0",
                                   "Content-Length": str(len(body)), **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def client(self, **kwargs: Any) -> ParentClient:
        kwargs.setdefault("backoff", 0.01)
        return ParentClient(f"127.0.0.1:{self.port}", "u", "p", protocol="http", **kwargs)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def scripted() -> Iterator[list[ScriptedRegistry]]:
    made: list[ScriptedRegistry] = []
    yield made
    for server in made:
        server.close()


def test_retry_after_is_honoured(scripted: list[ScriptedRegistry]) -> None:
    # An HTTP date, whole seconds: 2 s ahead now is at least 1 s ahead at the first answer.
    in_two = email.utils.formatdate(math.ceil(time.time()) + 2, usegmt=True)
    server = ScriptedRegistry([(503, {"Retry-After": in_two}), (429, {"Retry-After": "1"})])
    scripted.append(server)
    with server.client() as client:
        client.ping()
    first, second, third = server.arrivals
    # Lower bounds only: the client waited at least what the parent asked.
    assert second - first >= 0.9
    assert third - second >= 0.95


def test_retries_are_bounded(scripted: list[ScriptedRegistry]) -> None:
    busy = ScriptedRegistry([(503, {})] * 10)
    broken = ScriptedRegistry([(500, {})] * 10)
    later = ScriptedRegistry([(429, {"Retry-After": "3600"})])
    scripted.extend((busy, broken, later))
    with busy.client(retries=2) as client, \
            pytest.raises(ParentUnreachable, match=r"503 UNAVAILABLE.*after 3 tries"):
        client.ping()
    assert len(busy.arrivals) == 3
    with broken.client(retries=1) as client, pytest.raises(ParentProtocolError, match="500"):
        client.ping()
    assert len(broken.arrivals) == 2
    with later.client() as client, \
            pytest.raises(ParentUnreachable, match=r"429 TOOMANYREQUESTS.*retry after 3600 s"):
        client.ping()  # an hour is past what a run waits for: give up now
    assert len(later.arrivals) == 1


def test_close_ends_a_wait_in_another_thread(scripted: list[ScriptedRegistry]) -> None:
    busy = ScriptedRegistry([(503, {"Retry-After": "120"})] * 3)
    scripted.append(busy)
    client = busy.client()
    outcome: list[BaseException] = []

    def ping() -> None:
        try:
            client.ping()
        except BaseException as exc:  # reported below
            outcome.append(exc)

    thread = threading.Thread(target=ping)
    thread.start()
    eventually(lambda: busy.arrivals, what="the first request", timeout=30)
    client.close()  # how the engine cancels a run: the 120 s wait ends now
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ParentUnreachable)
    assert "closed" in str(outcome[0])
