"""skopeo against the real TLS server (in-process `live_server`), end to end over sockets.

Images are built on disk by tests/imagebuilder.py (no network). Every round trip is checked
by digest: what goes in must come back out byte for byte.
"""

from __future__ import annotations

import itertools
import json
import os
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from imagebuilder import (
    BuiltImage,
    ImageSpec,
    base_layer,
    write_docker_dir,
    write_oci_index,
    write_oci_layout,
)
from support import (
    HANG_GUARD,
    LiveServer,
    blob_files,
    expected_blobs,
    oci_layout_digest,
    remote,
    run_skopeo,
    skopeo_auth,
)

from registry_core.manifests import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from registry_core.reference import digest_bytes
from registry_core.service import RegistryService

pytestmark = [pytest.mark.socket, pytest.mark.skopeo]


# ---- helpers --------------------------------------------------------------------------------


def skopeo_fails(skopeo: str, *args: str) -> str:
    """Run skopeo expecting failure; returns its stderr."""
    proc = subprocess.run(
        [skopeo, "--insecure-policy", *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0, f"skopeo {' '.join(args)} unexpectedly succeeded"
    return proc.stderr


def raw_manifest(skopeo: str, server: LiveServer, ref: str) -> bytes:
    return run_skopeo(
        skopeo, "inspect", "--raw", *skopeo_auth(server), remote(server, ref)
    ).encode()


def stored_blob_files(server: LiveServer) -> set[str]:
    root = server.service.datadir.blobs / "sha256"
    return {f"sha256:{p.name}" for p in root.glob("*/*") if p.is_file()}


# ---- images shared by the tests -------------------------------------------------------------


@pytest.fixture
def images(tmp_path: Path) -> dict[str, BuiltImage]:
    """Two OCI images in one layout, a Docker-format image and a two-platform OCI index."""
    v1, v2 = write_oci_layout(tmp_path / "src-oci", (ImageSpec(tag="v1"), ImageSpec(tag="v2")))
    docker = write_docker_dir(tmp_path / "src-docker", ImageSpec(tag="docker"))
    multi = write_oci_index(tmp_path / "src-index", tag="multi")
    # The premise of the shared-layer checks: every image starts with the same base blob.
    base = base_layer().digest
    for image in (v1, v2, docker):
        assert image.layer_digests[0] == base
    assert all(m.layer_digests[0] == base for m in multi.manifests)
    return {"v1": v1, "v2": v2, "docker": docker, "multi": multi}


# ---- push, share, inspect, delete, copy back ------------------------------------------------


def test_push_inspect_delete_and_copy_back(
    skopeo: str, live_server: LiveServer, images: dict[str, BuiltImage], tmp_path: Path
) -> None:
    server = live_server
    stats = server.service.app.stats
    v1, v2, docker, multi = images["v1"], images["v2"], images["docker"], images["multi"]
    base = base_layer()

    # OCI layout images: v1 and v2 share the base layer, so the second sends only its own.
    run_skopeo(
        skopeo, "copy", *skopeo_auth(server, "dest-"), v1.reference, remote(server, "e2e/app:v1")
    )
    assert stats.bytes_in == v1.total_size
    run_skopeo(
        skopeo, "copy", *skopeo_auth(server, "dest-"), v2.reference, remote(server, "e2e/app:v2")
    )
    assert stats.bytes_in == v1.total_size + v2.total_size - base.size

    # The Docker-format image goes to another repository: its base layer (same bytes, Docker
    # media type) is mounted from e2e/app, not uploaded again.
    before = stats.bytes_in
    run_skopeo(
        skopeo,
        "copy",
        *skopeo_auth(server, "dest-"),
        docker.reference,
        remote(server, "e2e/docker:1"),
    )
    assert stats.bytes_in - before == docker.total_size - base.size

    # The two-platform index with both children.
    before = stats.bytes_in
    run_skopeo(
        skopeo,
        "copy",
        "--all",
        *skopeo_auth(server, "dest-"),
        multi.reference,
        remote(server, "e2e/multi:1"),
    )
    assert stats.bytes_in - before == multi.total_size - base.size

    # What exists: one file per distinct blob (base layer stored once), linked everywhere.
    everything = set().union(*(expected_blobs(i) for i in images.values()))
    assert stored_blob_files(server) == everything
    with server.client() as client:
        for repo in ("e2e/app", "e2e/docker", "e2e/multi"):
            head = client.head(f"/v2/{repo}/blobs/{base.digest}")
            assert head.status_code == 200, repo
            assert head.headers["content-length"] == str(base.size)
        for child in multi.manifests:
            got = client.get(f"/v2/e2e/multi/manifests/{child.digest}")
            assert got.status_code == 200
            assert got.content == child.body
            assert got.headers["content-type"] == OCI_MANIFEST
        catalog = client.get("/v2/_catalog").json()
        assert catalog == {"repositories": ["e2e/app", "e2e/docker", "e2e/multi"]}

    # list-tags
    tags = json.loads(
        run_skopeo(skopeo, "list-tags", *skopeo_auth(server), remote(server, "e2e/app"))
    )
    assert tags["Tags"] == ["v1", "v2"]

    # inspect: the raw manifest is the source's byte for byte, for every kind.
    assert raw_manifest(skopeo, server, "e2e/app:v1") == v1.body
    assert raw_manifest(skopeo, server, "e2e/docker:1") == docker.body
    assert raw_manifest(skopeo, server, "e2e/multi:1") == multi.body
    assert digest_bytes(raw_manifest(skopeo, server, "e2e/multi:1")) == multi.digest
    info = json.loads(
        run_skopeo(skopeo, "inspect", *skopeo_auth(server), remote(server, "e2e/app:v2"))
    )
    assert info["Digest"] == str(v2.digest)
    assert info["Layers"] == [str(d) for d in v2.layer_digests]
    assert info["Labels"] == {"tag": "v2"}
    info = json.loads(
        run_skopeo(
            skopeo,
            "inspect",
            "--override-arch",
            "arm64",
            "--override-variant",
            "v8",
            *skopeo_auth(server),
            remote(server, "e2e/multi:1"),
        )
    )
    arm = next(m for m in multi.manifests if m.platform == "linux/arm64/v8")
    # skopeo reports the index's digest, and the platform's own config and layers.
    assert info["Digest"] == str(multi.digest)
    assert info["Architecture"] == "arm64"
    assert info["Layers"] == [str(d) for d in arm.layer_digests]

    # Delete v1 by digest: it can no longer be pulled and its tag is gone.
    run_skopeo(skopeo, "delete", *skopeo_auth(server), remote(server, f"e2e/app@{v1.digest}"))
    out = tmp_path / "out"
    out.mkdir()
    stderr = skopeo_fails(
        skopeo,
        "copy",
        *skopeo_auth(server, "src-"),
        remote(server, "e2e/app:v1"),
        f"oci:{out / 'app'}:v1",
    )
    assert "manifest unknown" in stderr.lower()
    stderr = skopeo_fails(
        skopeo,
        "copy",
        *skopeo_auth(server, "src-"),
        remote(server, f"e2e/app@{v1.digest}"),
        f"oci:{out / 'gone'}:v1",
    )
    assert "manifest unknown" in stderr.lower()
    tags = json.loads(
        run_skopeo(skopeo, "list-tags", *skopeo_auth(server), remote(server, "e2e/app"))
    )
    assert tags["Tags"] == ["v2"]

    # Everything else copies back out with identical digests.
    run_skopeo(
        skopeo,
        "copy",
        "--preserve-digests",
        *skopeo_auth(server, "src-"),
        remote(server, "e2e/app:v2"),
        f"oci:{out / 'app'}:v2",
    )
    assert oci_layout_digest(out / "app", "v2") == v2.digest
    assert blob_files(out / "app" / "blobs" / "sha256") == expected_blobs(v2)

    run_skopeo(
        skopeo,
        "copy",
        "--preserve-digests",
        *skopeo_auth(server, "src-"),
        remote(server, "e2e/docker:1"),
        f"dir:{out / 'docker'}",
    )
    assert (out / "docker" / "manifest.json").read_bytes() == docker.body
    pulled = blob_files(out / "docker") | {str(docker.digest)}
    assert pulled == expected_blobs(docker)

    run_skopeo(
        skopeo,
        "copy",
        "--all",
        "--preserve-digests",
        *skopeo_auth(server, "src-"),
        remote(server, "e2e/multi:1"),
        f"oci:{out / 'multi'}:multi",
    )
    assert oci_layout_digest(out / "multi", "multi") == multi.digest
    assert blob_files(out / "multi" / "blobs" / "sha256") == expected_blobs(multi)


def test_docker_manifest_negotiation(
    skopeo: str, live_server: LiveServer, images: dict[str, BuiltImage]
) -> None:
    """A Docker-format image answers a Docker Accept; an index falls back only when asked."""
    docker, multi = images["docker"], images["multi"]
    run_skopeo(
        skopeo,
        "copy",
        *skopeo_auth(live_server, "dest-"),
        docker.reference,
        remote(live_server, "n/d:1"),
    )
    run_skopeo(
        skopeo,
        "copy",
        "--all",
        *skopeo_auth(live_server, "dest-"),
        multi.reference,
        remote(live_server, "n/m:1"),
    )
    with live_server.client() as client:
        head = client.head("/v2/n/d/manifests/1", headers={"Accept": DOCKER_MANIFEST})
        assert head.status_code == 200
        assert head.headers["docker-content-digest"] == str(docker.digest)
        assert head.headers["content-type"] == DOCKER_MANIFEST
        # Several Accept headers (as skopeo and containerd send them) count together.
        got = client.get(
            "/v2/n/m/manifests/1",
            headers=[("Accept", OCI_MANIFEST), ("Accept", OCI_INDEX)],
        )
        assert got.status_code == 200
        assert got.headers["docker-content-digest"] == str(multi.digest)
        # A client that takes only image manifests gets the linux/amd64 child.
        got = client.get("/v2/n/m/manifests/1", headers={"Accept": OCI_MANIFEST})
        amd = next(m for m in multi.manifests if m.platform == "linux/amd64")
        assert got.headers["docker-content-digest"] == str(amd.digest)
        assert got.content == amd.body


# ---- a chunked upload that survives a server restart ----------------------------------------


def test_chunked_upload_survives_restart(live_server: LiveServer) -> None:
    port = live_server.port
    data = os.urandom(3 * 1024 * 1024 + 12345)
    digest = digest_bytes(data)
    cuts = [0, 1024 * 1024, 2 * 1024 * 1024, 3 * 1024 * 1024, len(data)]
    chunks = [data[a:b] for a, b in itertools.pairwise(cuts)]

    def patch(client: httpx.Client, location: str, offset: int, chunk: bytes) -> httpx.Response:
        return client.patch(
            location,
            content=chunk,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
            },
        )

    with live_server.client() as client:
        started = client.post("/v2/e2e/chunked/blobs/uploads/")
        assert started.status_code == 202
        location = started.headers["location"]
        offset = 0
        for chunk in chunks[:2]:
            resp = patch(client, location, offset, chunk)
            assert resp.status_code == 202, resp.text
            offset += len(chunk)
            assert resp.headers["range"] == f"0-{offset - 1}"

    # Stop the server (and close its registry), then serve the same data dir on the same port.
    old = live_server.service
    old.stop()
    assert not old.datadir.server_state.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{live_server.url}/v2/", verify=live_server.ssl_context(), timeout=2)
    old.close()
    new = RegistryService(old.datadir)
    live_server.service = new  # the fixture's teardown closes it
    new.start(f"127.0.0.1:{port}")

    with live_server.client() as client:
        status = client.get(location)
        assert status.status_code == 204
        assert status.headers["range"] == f"0-{offset - 1}"
        # A chunk that does not continue where the upload ends is refused.
        assert patch(client, location, 0, chunks[2]).status_code == 416
        resp = patch(client, location, offset, chunks[2])
        assert resp.status_code == 202, resp.text
        offset += len(chunks[2])
        done = client.put(
            location,
            params={"digest": str(digest)},
            content=chunks[3],
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunks[3]) - 1}",
            },
        )
        assert done.status_code == 201, done.text
        assert done.headers["docker-content-digest"] == str(digest)
        blob = client.get(f"/v2/e2e/chunked/blobs/{digest}")
        assert blob.status_code == 200
        assert blob.content == data
        assert client.get(location).status_code == 404


# ---- refusals: wrong password, untrusted CA -------------------------------------------------


def test_wrong_password_is_an_auth_error(
    skopeo: str, live_server: LiveServer, images: dict[str, BuiltImage]
) -> None:
    v1 = images["v1"]
    wrong = ["--dest-creds", f"{live_server.username}:not-the-password"]
    stderr = skopeo_fails(
        skopeo,
        "copy",
        *wrong,
        "--dest-cert-dir",
        str(live_server.cert_dir),
        v1.reference,
        remote(live_server, "e2e/auth:v1"),
    )
    assert "unauthorized" in stderr.lower() or "authentication required" in stderr.lower()
    stderr = skopeo_fails(
        skopeo,
        "list-tags",
        "--creds",
        f"{live_server.username}:not-the-password",
        "--cert-dir",
        str(live_server.cert_dir),
        remote(live_server, "e2e/auth"),
    )
    assert "unauthorized" in stderr.lower() or "authentication required" in stderr.lower()
    # Nothing was stored; the right password works.
    assert live_server.service.registry.catalog().items == []
    run_skopeo(
        skopeo,
        "copy",
        *skopeo_auth(live_server, "dest-"),
        v1.reference,
        remote(live_server, "e2e/auth:v1"),
    )
    assert live_server.service.registry.catalog().items == ["e2e/auth"]


def test_client_without_the_ca_fails_tls_verification(
    skopeo: str, live_server: LiveServer, tmp_path: Path
) -> None:
    empty = tmp_path / "no-certs"
    empty.mkdir()
    stderr = skopeo_fails(
        skopeo,
        "list-tags",
        "--creds",
        live_server.creds,
        "--cert-dir",
        str(empty),
        remote(live_server, "e2e/app"),
    )
    assert "x509" in stderr or "certificate" in stderr.lower()
    with pytest.raises(httpx.ConnectError) as caught:
        httpx.get(f"{live_server.url}/v2/", auth=(live_server.username, live_server.password))
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    # Trusting the CA alone is enough (the server certificate names 127.0.0.1).
    context = ssl.create_default_context(cafile=str(live_server.cert_dir / "ca.crt"))
    ok = httpx.get(
        f"{live_server.url}/v2/", verify=context, auth=(live_server.username, live_server.password),
        timeout=HANG_GUARD
    )
    assert ok.status_code == 200
