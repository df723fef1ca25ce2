"""OCI 1.1 referrers: GET /v2/<name>/referrers/<digest>, artifactType filtering, OCI-Subject."""

from __future__ import annotations

from typing import Any

import httpx
from api_helpers import (
    Pushed,
    assert_error,
    canonical,
    descriptor,
    push_blob,
    push_image,
    put_manifest,
    sha256,
    sha512,
)

from registry_core.manifests import DOCKER_MANIFEST, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST

SBOM = "application/vnd.example.sbom.v1+json"
SIG = "application/vnd.example.signature.v1+json"
SIG_CONFIG = "application/vnd.example.signature.config.v1+json"
EMPTY = b"{}"


async def push_artifact(
    api: httpx.AsyncClient,
    name: str,
    subject: dict[str, Any],
    payload: bytes,
    *,
    artifact_type: str | None = SBOM,
    config_type: str = OCI_EMPTY,
    annotations: dict[str, str] | None = None,
    tag: str | None = None,
) -> tuple[Pushed, httpx.Response]:
    """An OCI artifact manifest with a subject; returns it and the PUT response."""
    config = EMPTY if config_type == OCI_EMPTY else b'{"k":"v"}'
    await push_blob(api, name, config)
    await push_blob(api, name, payload)
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config_type, config),
        "layers": [descriptor("application/octet-stream", payload)],
        "subject": subject,
    }
    if artifact_type:
        doc["artifactType"] = artifact_type
    if annotations:
        doc["annotations"] = annotations
    body = canonical(doc)
    digest = sha256(body)
    resp = await put_manifest(api, name, tag or digest, body, OCI_MANIFEST)
    assert resp.status_code == 201, resp.text
    return Pushed(name, digest, body, OCI_MANIFEST, doc), resp


async def referrers(
    api: httpx.AsyncClient, name: str, digest: str, **params: str
) -> tuple[list[dict[str, Any]], httpx.Response]:
    resp = await api.get(f"/v2/{name}/referrers/{digest}", params=params)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].split(";")[0] == OCI_INDEX
    body = resp.json()
    assert body["schemaVersion"] == 2 and body["mediaType"] == OCI_INDEX
    return body["manifests"], resp


async def test_no_referrers_is_an_empty_index(api: httpx.AsyncClient) -> None:
    image = await push_image(api, "lib/app", "v1")
    for name, digest in [
        ("lib/app", image.digest),
        ("lib/app", sha256(b"no manifest at all")),
        ("no/such/repo", image.digest),
        ("lib/app", sha512(b"sha512 subject")),
    ]:
        manifests, resp = await referrers(api, name, digest)
        assert manifests == []
        assert "oci-filters-applied" not in resp.headers


async def test_referrers_listed_with_oci_subject(api: httpx.AsyncClient) -> None:
    image = await push_image(api, "lib/app", "v1")
    subject = image.descriptor()
    sbom, resp = await push_artifact(
        api, "lib/app", subject, b"sbom data", annotations={"org.example.kind": "spdx"}
    )
    assert resp.headers["oci-subject"] == image.digest
    assert resp.headers["docker-content-digest"] == sbom.digest
    # no artifactType: the config media type stands for it
    sig, resp = await push_artifact(
        api, "lib/app", subject, b"signature", artifact_type=None, config_type=SIG_CONFIG
    )
    assert resp.headers["oci-subject"] == image.digest
    # an index can refer too
    index_doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": SIG,
        "manifests": [],
        "subject": subject,
    }
    index_body = canonical(index_doc)
    resp = await put_manifest(api, "lib/app", sha256(index_body), index_body, OCI_INDEX)
    assert resp.status_code == 201, resp.text
    assert resp.headers["oci-subject"] == image.digest
    # a manifest without subject is no referrer and gets no OCI-Subject
    plain = await api.put(
        "/v2/lib/app/manifests/plain", content=image.body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert plain.status_code == 201 and "oci-subject" not in plain.headers

    manifests, resp = await referrers(api, "lib/app", image.digest)
    assert "oci-filters-applied" not in resp.headers
    expected = [
        {
            "mediaType": OCI_MANIFEST,
            "digest": sbom.digest,
            "size": len(sbom.body),
            "artifactType": SBOM,
            "annotations": {"org.example.kind": "spdx"},
        },
        {
            "mediaType": OCI_MANIFEST,
            "digest": sig.digest,
            "size": len(sig.body),
            "artifactType": SIG_CONFIG,
        },
        {
            "mediaType": OCI_INDEX,
            "digest": sha256(index_body),
            "size": len(index_body),
            "artifactType": SIG,
        },
    ]
    key = lambda d: d["digest"]  # noqa: E731
    assert sorted(manifests, key=key) == sorted(expected, key=key)

    # filtering by artifactType
    only, resp = await referrers(api, "lib/app", image.digest, artifactType=SBOM)
    assert resp.headers["oci-filters-applied"] == "artifactType"
    assert [m["digest"] for m in only] == [sbom.digest]
    only, resp = await referrers(api, "lib/app", image.digest, artifactType=SIG)
    assert [m["digest"] for m in only] == [sha256(index_body)]
    none, resp = await referrers(api, "lib/app", image.digest, artifactType="application/x-none")
    assert none == [] and resp.headers["oci-filters-applied"] == "artifactType"

    # referrers are per repository
    assert (await referrers(api, "lib/other", image.digest))[0] == []
    # and a deleted referrer is no longer listed
    assert (await api.delete(f"/v2/lib/app/manifests/{sbom.digest}")).status_code == 202
    manifests, _ = await referrers(api, "lib/app", image.digest)
    assert sbom.digest not in [m["digest"] for m in manifests] and len(manifests) == 2


async def test_referrers_pushed_before_their_subject(api: httpx.AsyncClient) -> None:
    later = b'{"schemaVersion":2,"note":"not pushed yet"}'
    subject = {"mediaType": OCI_MANIFEST, "digest": sha256(later), "size": len(later)}
    sbom, resp = await push_artifact(api, "lib/app", subject, b"early sbom", tag="sbom")
    assert resp.headers["oci-subject"] == sha256(later)
    manifests, _ = await referrers(api, "lib/app", sha256(later))
    assert [m["digest"] for m in manifests] == [sbom.digest]
    # the subject arriving changes nothing
    image = await push_image(api, "lib/app", "v1")
    manifests, _ = await referrers(api, "lib/app", sha256(later))
    assert [m["digest"] for m in manifests] == [sbom.digest]
    assert (await referrers(api, "lib/app", image.digest))[0] == []


async def test_sha512_subject(api: httpx.AsyncClient) -> None:
    target = b"some sha512-addressed manifest"
    subject = {"mediaType": OCI_MANIFEST, "digest": sha512(target), "size": len(target)}
    sbom, resp = await push_artifact(api, "lib/app", subject, b"sbom512")
    assert resp.headers["oci-subject"] == sha512(target)
    manifests, _ = await referrers(api, "lib/app", sha512(target))
    assert [m["digest"] for m in manifests] == [sbom.digest]
    assert (await referrers(api, "lib/app", sha256(target)))[0] == []


async def test_docker_manifest_subject_is_ignored(api: httpx.AsyncClient) -> None:
    image = await push_image(api, "lib/app", "v1")
    docker = await push_image(
        api, "lib/app", "d", media_type=DOCKER_MANIFEST, subject=image.descriptor()
    )
    resp = await api.head("/v2/lib/app/manifests/d")
    assert resp.headers["docker-content-digest"] == docker.digest
    assert (await referrers(api, "lib/app", image.digest))[0] == []


async def test_referrers_bad_requests(api: httpx.AsyncClient) -> None:
    assert_error(await api.get("/v2/lib/app/referrers/sha256:abc"), 400, "DIGEST_INVALID")
    assert_error(await api.get("/v2/lib/app/referrers/latest"), 400, "DIGEST_INVALID")
    md5 = "md5:d41d8cd98f00b204e9800998ecf8427e"
    assert_error(await api.get(f"/v2/lib/app/referrers/{md5}"), 400, "UNSUPPORTED")
    assert_error(await api.get(f"/v2/Lib/referrers/{sha256(b'')}"), 400, "NAME_INVALID")
    assert_error(await api.head("/v2/lib/app/referrers/sha256:abc"), 400)
    # a subject descriptor with a bad digest makes the manifest invalid
    image = await push_image(api, "lib/app", "v1")
    bad_subject = {"mediaType": OCI_MANIFEST, "digest": "sha256:nope", "size": 1}
    doc = {**image.doc, "subject": bad_subject}
    assert_error(await put_manifest(api, "lib/app", "bad", doc), 400, "MANIFEST_INVALID")
