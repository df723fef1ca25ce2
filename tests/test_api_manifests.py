"""Manifests: the four kinds by tag and by digest, content negotiation, validation of
references, the size limit, exact bytes, sha512 references and deletion."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from api_helpers import (
    assert_error,
    config_bytes,
    descriptor,
    image_doc,
    platform,
    push_blob,
    push_image,
    push_index,
    push_manifest,
    push_multiarch,
    put_manifest,
    sha256,
    sha512,
)

from registry_core.datadir import DataDir
from registry_core.identity import CONSOLE
from registry_core.manifests import (
    DOCKER_FOREIGN_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    OCI_NONDIST_LAYER_GZIP,
)
from registry_core.registry import Registry


async def tags_of(api: httpx.AsyncClient, name: str) -> list[str]:
    resp = await api.get(f"/v2/{name}/tags/list")
    assert resp.status_code == 200, resp.text
    return list(resp.json()["tags"])


async def check_served(
    api: httpx.AsyncClient, name: str, reference: str, digest: str, body: bytes, media_type: str
) -> None:
    """HEAD and GET of `reference` serve exactly `body` under every permissive Accept."""
    for accept in (None, media_type, "*/*", f"application/json, {media_type};q=0.5"):
        headers = {"Accept": accept} if accept else {}
        get = await api.get(f"/v2/{name}/manifests/{reference}", headers=headers)
        assert get.status_code == 200, (accept, get.text)
        assert get.content == body, accept
        assert get.headers["docker-content-digest"] == digest
        assert get.headers["content-type"] == media_type
        assert get.headers["content-length"] == str(len(body))
        head = await api.head(f"/v2/{name}/manifests/{reference}", headers=headers)
        assert head.status_code == 200, accept
        assert head.content == b""
        assert head.headers["docker-content-digest"] == digest
        assert head.headers["content-type"] == media_type
        assert head.headers["content-length"] == str(len(body))


# ---- the four kinds -----------------------------------------------------------------------


@pytest.mark.parametrize("media_type", [DOCKER_MANIFEST, OCI_MANIFEST])
async def test_image_manifest_by_tag_and_digest(api: httpx.AsyncClient, media_type: str) -> None:
    image = await push_image(api, "lib/app", "v1", media_type=media_type)
    assert sha256(image.body) == image.digest
    await check_served(api, "lib/app", "v1", image.digest, image.body, media_type)
    await check_served(api, "lib/app", image.digest, image.digest, image.body, media_type)
    assert await tags_of(api, "lib/app") == ["v1"]


@pytest.mark.parametrize(
    ("index_type", "child_type"),
    [(DOCKER_MANIFEST_LIST, DOCKER_MANIFEST), (OCI_INDEX, OCI_MANIFEST)],
)
async def test_index_by_tag_and_digest(
    api: httpx.AsyncClient, index_type: str, child_type: str
) -> None:
    index, children = await push_multiarch(api, "lib/multi", "v1", index_type=index_type)
    await check_served(api, "lib/multi", "v1", index.digest, index.body, index_type)
    await check_served(api, "lib/multi", index.digest, index.digest, index.body, index_type)
    for child in children.values():
        await check_served(api, "lib/multi", child.digest, child.digest, child.body, child_type)
    assert await tags_of(api, "lib/multi") == ["v1"]


async def test_push_by_digest_creates_no_tag(api: httpx.AsyncClient) -> None:
    image = await push_image(api, "lib/app", None)
    assert await tags_of(api, "lib/app") == []
    await check_served(api, "lib/app", image.digest, image.digest, image.body, OCI_MANIFEST)


async def test_same_manifest_many_tags_and_retag(api: httpx.AsyncClient) -> None:
    one = await push_image(api, "lib/app", "v1", salt="one")
    for tag in ("latest", "stable"):
        again = await push_manifest(api, "lib/app", tag, one.body, OCI_MANIFEST)
        assert again.digest == one.digest
    two = await push_image(api, "lib/app", "latest", salt="two")
    assert two.digest != one.digest
    got = await api.get("/v2/lib/app/manifests/latest")
    assert got.headers["docker-content-digest"] == two.digest
    assert got.content == two.body
    stable = await api.get("/v2/lib/app/manifests/stable")
    assert stable.headers["docker-content-digest"] == one.digest
    assert await tags_of(api, "lib/app") == ["latest", "stable", "v1"]


async def test_repeated_gets_see_every_change_at_once(
    api: httpx.AsyncClient, datadir: DataDir
) -> None:
    """GETs are served from memory while nothing changes; any commit, by this server or by
    another process on the same data dir, is seen by the very next GET."""
    one = await push_image(api, "lib/cached", "latest", salt="one")
    for _ in range(3):
        got = await api.get("/v2/lib/cached/manifests/latest")
        assert got.headers["docker-content-digest"] == one.digest
    two = await push_image(api, "lib/cached", "latest", salt="two")  # the tag moves
    got = await api.get("/v2/lib/cached/manifests/latest")
    assert got.headers["docker-content-digest"] == two.digest and got.content == two.body

    other = Registry(datadir)  # as another process would: its own connection
    try:
        other.delete_manifest("lib/cached", two.digest, who=CONSOLE)
    finally:
        other.close()
    assert_error(await api.get("/v2/lib/cached/manifests/latest"), 404, "MANIFEST_UNKNOWN")
    assert (await api.head(f"/v2/lib/cached/manifests/{two.digest}")).status_code == 404


async def test_content_type_may_be_absent(api: httpx.AsyncClient) -> None:
    config = config_bytes(salt="generic")
    layer = b"generic layer"
    await push_blob(api, "lib/app", config)
    await push_blob(api, "lib/app", layer)
    doc = image_doc(config, [layer], OCI_MANIFEST)
    for i, content_type in enumerate(["", None]):
        resp = await put_manifest(api, "lib/app", f"t{i}", json.dumps(doc).encode(), content_type)
        assert resp.status_code == 201, (content_type, resp.text)
        got = await api.get(f"/v2/lib/app/manifests/t{i}")
        assert got.headers["content-type"] == OCI_MANIFEST
    # no mediaType field: the shape and the header decide
    del doc["mediaType"]
    resp = await put_manifest(api, "lib/app", "bare", json.dumps(doc).encode(), OCI_MANIFEST)
    assert resp.status_code == 201, resp.text
    assert (await api.head("/v2/lib/app/manifests/bare")).headers["content-type"] == OCI_MANIFEST


async def test_content_type_must_be_a_manifest_type(api: httpx.AsyncClient) -> None:
    config = config_bytes(salt="ctype")
    await push_blob(api, "lib/app", config)
    body = json.dumps(image_doc(config, [], OCI_MANIFEST)).encode()
    for content_type in ("text/plain", "application/json", "application/octet-stream", "zzz"):
        resp = await put_manifest(api, "lib/app", "bad", body, content_type)
        error = assert_error(resp, 400, "MANIFEST_INVALID")
        assert "is not a manifest media type" in error["message"]
    utf16 = body.decode().encode("utf-16")
    resp = await put_manifest(api, "lib/app", "bad", utf16, OCI_MANIFEST)
    assert "not UTF-8" in assert_error(resp, 400, "MANIFEST_INVALID")["message"]
    assert_error(await api.get("/v2/lib/app/manifests/bad"), 404, "MANIFEST_UNKNOWN")


# ---- content negotiation ------------------------------------------------------------------


async def test_docker_list_by_tag_falls_back_to_amd64_child(api: httpx.AsyncClient) -> None:
    index, children = await push_multiarch(api, "lib/multi", index_type=DOCKER_MANIFEST_LIST)
    amd64 = children["amd64"]
    headers = {"Accept": DOCKER_MANIFEST}
    for method in ("GET", "HEAD"):
        resp = await api.request(method, "/v2/lib/multi/manifests/latest", headers=headers)
        assert resp.status_code == 200
        assert resp.headers["docker-content-digest"] == amd64.digest
        assert resp.headers["content-type"] == DOCKER_MANIFEST
        assert resp.headers["content-length"] == str(amd64.size)
        assert resp.content == (amd64.body if method == "GET" else b"")
    # by digest the client asked for that exact content: no substitution
    resp = await api.get(f"/v2/lib/multi/manifests/{index.digest}", headers=headers)
    err = assert_error(resp, 404, "MANIFEST_UNKNOWN")
    assert err["detail"]["mediaType"] == DOCKER_MANIFEST_LIST
    resp = await api.head(f"/v2/lib/multi/manifests/{index.digest}", headers=headers)
    assert_error(resp, 404)
    # a client that accepts neither the list nor the child's type
    resp = await api.get("/v2/lib/multi/manifests/latest", headers={"Accept": OCI_MANIFEST})
    assert_error(resp, 404, "MANIFEST_UNKNOWN")


async def test_oci_index_by_tag_falls_back_to_amd64_child(api: httpx.AsyncClient) -> None:
    _, children = await push_multiarch(api, "lib/multi", "v2", architectures=("amd64", "arm64"))
    resp = await api.get(
        "/v2/lib/multi/manifests/v2", headers={"Accept": f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"}
    )
    assert resp.status_code == 200
    assert resp.headers["docker-content-digest"] == children["amd64"].digest
    assert resp.content == children["amd64"].body


async def test_index_without_amd64_child_is_not_substituted(api: httpx.AsyncClient) -> None:
    await push_multiarch(
        api, "lib/arm", index_type=DOCKER_MANIFEST_LIST, architectures=("arm64", "s390x")
    )
    resp = await api.get("/v2/lib/arm/manifests/latest", headers={"Accept": DOCKER_MANIFEST})
    assert_error(resp, 404, "MANIFEST_UNKNOWN")


async def test_image_not_in_accept_is_manifest_unknown(api: httpx.AsyncClient) -> None:
    image = await push_image(api, "lib/app", "v1", media_type=DOCKER_MANIFEST)
    for ref in ("v1", image.digest):
        resp = await api.get(f"/v2/lib/app/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        err = assert_error(resp, 404, "MANIFEST_UNKNOWN")
        assert err["detail"]["digest"] == image.digest
        resp = await api.head(f"/v2/lib/app/manifests/{ref}", headers={"Accept": OCI_INDEX})
        assert_error(resp, 404)
    # media types compare case-insensitively and ignore parameters
    resp = await api.get(
        "/v2/lib/app/manifests/v1", headers={"Accept": DOCKER_MANIFEST.upper() + "; q=0.1"}
    )
    assert resp.status_code == 200 and resp.content == image.body


# ---- unknown and invalid references -------------------------------------------------------


async def test_manifest_unknown(api: httpx.AsyncClient) -> None:
    image = await push_image(api, "lib/app", "v1")
    missing = sha256(b"no such manifest")
    for name, ref in [
        ("lib/app", "v2"),
        ("lib/app", missing),
        ("lib/app", sha512(b"x")),
        ("lib/other", "v1"),
        ("lib/other", image.digest),
    ]:
        resp = await api.get(f"/v2/{name}/manifests/{ref}")
        err = assert_error(resp, 404)
        assert err["code"] in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN"), (name, ref)
        assert_error(await api.head(f"/v2/{name}/manifests/{ref}"), 404)
        resp = await api.delete(f"/v2/{name}/manifests/{ref}")
        assert_error(resp, 404)
    # a config blob is not a manifest
    resp = await api.get(f"/v2/lib/app/manifests/{image.blobs[0]}")
    assert_error(resp, 404, "MANIFEST_UNKNOWN")


async def test_invalid_references(api: httpx.AsyncClient) -> None:
    await push_image(api, "lib/app", "v1")
    cases = [
        ("lib/app", "-tag", "NAME_INVALID"),
        ("lib/app", "." + "a", "NAME_INVALID"),
        ("lib/app", "a" * 129, "NAME_INVALID"),
        ("lib/app", "sha256:abc", "DIGEST_INVALID"),
        ("lib/app", "sha256:" + "A" * 64, "DIGEST_INVALID"),
        ("lib/app", "sha512:" + "a" * 64, "DIGEST_INVALID"),
        ("lib/app", ":", "DIGEST_INVALID"),
        ("lib/app", "md5:d41d8cd98f00b204e9800998ecf8427e", "UNSUPPORTED"),
        ("lib/app", "blake3:" + "a" * 64, "UNSUPPORTED"),
        ("Lib/App", "v1", "NAME_INVALID"),
        ("lib//app", "v1", "NAME_INVALID"),
        ("lib/app_", "v1", "NAME_INVALID"),
        ("nope/app", "sha256:abc", "DIGEST_INVALID"),  # unknown repository: still a 400
    ]
    for name, ref, code in cases:
        path = f"/v2/{name}/manifests/{ref}"
        if code == "NAME_INVALID" and name == "lib/app":
            # a tag that cannot exist is unknown to a read (distribution-spec conformance)
            assert_error(await api.get(path), 404, "MANIFEST_UNKNOWN")
            assert_error(await api.head(path), 404)
        else:
            assert_error(await api.get(path), 400, code)
            assert_error(await api.head(path), 400)
        assert_error(await api.delete(path), 400, code)
        resp = await put_manifest(api, name, ref, b"{}", OCI_MANIFEST)
        assert_error(resp, 400, code)
    assert await tags_of(api, "lib/app") == ["v1"]


async def test_invalid_manifest_bodies(api: httpx.AsyncClient) -> None:
    config = config_bytes(salt="invalid")
    await push_blob(api, "lib/app", config)
    good = image_doc(config, [], OCI_MANIFEST)
    bodies: list[tuple[bytes, str | None]] = [
        (b"", OCI_MANIFEST),
        (b"not json", OCI_MANIFEST),
        (b"[1, 2]", OCI_MANIFEST),
        (json.dumps({**good, "schemaVersion": 1}).encode(), OCI_MANIFEST),
        (json.dumps({**good, "schemaVersion": "2"}).encode(), OCI_MANIFEST),
        (json.dumps(good).encode(), DOCKER_MANIFEST),  # mediaType disagrees with Content-Type
        (json.dumps({**good, "mediaType": "text/html"}).encode(), None),
        (json.dumps({**good, "layers": "nope"}).encode(), OCI_MANIFEST),
        (json.dumps({**good, "config": {**good["config"], "size": -1}}).encode(), OCI_MANIFEST),
        (json.dumps({**good, "config": {**good["config"], "digest": "x"}}).encode(), OCI_MANIFEST),
        (b'{"schemaVersion": 2, "schemaVersion": 2}', OCI_MANIFEST),
        (json.dumps({"schemaVersion": 2}).encode(), None),
    ]
    for body, content_type in bodies:
        resp = await put_manifest(api, "lib/app", "bad", body, content_type)
        assert_error(resp, 400, "MANIFEST_INVALID")
    assert_error(await api.get("/v2/lib/app/manifests/bad"), 404, "MANIFEST_UNKNOWN")
    # the same document, valid, is accepted: the cases above fail for their stated reason
    assert (await put_manifest(api, "lib/app", "bad", good)).status_code == 201


async def test_descriptor_size_must_match_blob(api: httpx.AsyncClient) -> None:
    config = config_bytes(salt="size")
    await push_blob(api, "lib/app", config)
    doc = image_doc(config, [])
    doc["config"]["size"] += 1
    resp = await put_manifest(api, "lib/app", "v1", doc)
    assert_error(resp, 400, "MANIFEST_INVALID")


# ---- references to blobs and children -----------------------------------------------------


@pytest.mark.parametrize("media_type", [DOCKER_MANIFEST, OCI_MANIFEST])
async def test_missing_config_or_layer(api: httpx.AsyncClient, media_type: str) -> None:
    config = config_bytes(salt="missing")
    layer = b"a layer that is pushed"
    absent = b"a layer that never is"
    await push_blob(api, "lib/app", layer)
    doc = image_doc(config, [layer], media_type)
    err = assert_error(await put_manifest(api, "lib/app", "v1", doc), 400, "MANIFEST_BLOB_UNKNOWN")
    assert err["detail"]["digest"] == sha256(config)
    await push_blob(api, "lib/app", config)
    doc = image_doc(config, [layer, absent], media_type)
    err = assert_error(await put_manifest(api, "lib/app", "v1", doc), 400, "MANIFEST_BLOB_UNKNOWN")
    assert err["detail"]["digest"] == sha256(absent)
    assert_error(await api.get("/v2/lib/app/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    await push_blob(api, "lib/app", absent)
    assert (await put_manifest(api, "lib/app", "v1", doc)).status_code == 201


@pytest.mark.parametrize("index_type", [DOCKER_MANIFEST_LIST, OCI_INDEX])
async def test_index_children_must_exist(api: httpx.AsyncClient, index_type: str) -> None:
    child_type = DOCKER_MANIFEST if index_type == DOCKER_MANIFEST_LIST else OCI_MANIFEST
    present = await push_image(api, "lib/multi", None, media_type=child_type, salt="present")
    elsewhere = await push_image(api, "lib/other", None, media_type=child_type, salt="else")
    missing = descriptor(child_type, b'{"not":"pushed"}', platform=platform("arm64"))
    entries = [present.descriptor(platform=platform("amd64")), missing]
    doc = {"schemaVersion": 2, "mediaType": index_type, "manifests": entries}
    err = assert_error(await put_manifest(api, "lib/multi", "v1", doc), 404, "MANIFEST_UNKNOWN")
    assert err["detail"]["digest"] == missing["digest"]
    # a child pushed to another repository does not count
    entries[1] = elsewhere.descriptor(platform=platform("arm64"))
    err = assert_error(await put_manifest(api, "lib/multi", "v1", doc), 404, "MANIFEST_UNKNOWN")
    assert err["detail"]["digest"] == elsewhere.digest
    assert_error(await api.get("/v2/lib/multi/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    entries.pop()
    assert (await put_manifest(api, "lib/multi", "v1", doc)).status_code == 201


async def test_foreign_layers_need_not_be_present(api: httpx.AsyncClient) -> None:
    urls = ["https://example.com/layer.tar.gz"]
    for media_type, foreign_type in [
        (OCI_MANIFEST, OCI_NONDIST_LAYER_GZIP),
        (DOCKER_MANIFEST, DOCKER_FOREIGN_LAYER),
    ]:
        config = config_bytes(salt=media_type)
        await push_blob(api, "lib/win", config)
        doc = image_doc(config, [], media_type)
        doc["layers"] = [descriptor(foreign_type, b"windows base layer", urls=urls)]
        resp = await put_manifest(api, "lib/win", "v1", doc)
        assert resp.status_code == 201, resp.text
        assert (await api.get("/v2/lib/win/manifests/v1")).content == json.dumps(
            doc, separators=(",", ":")
        ).encode()
        # without urls a non-distributable layer is an ordinary missing blob
        doc["layers"] = [descriptor(foreign_type, b"windows base layer")]
        resp = await put_manifest(api, "lib/win", "v2", doc)
        assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")
        # and urls do not excuse an ordinary layer
        doc["layers"] = [descriptor(OCI_LAYER_GZIP, b"ordinary layer", urls=urls)]
        resp = await put_manifest(api, "lib/win", "v3", doc)
        assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")


# ---- exact bytes, size limit, digests -----------------------------------------------------


async def test_bytes_stored_exactly_as_sent(api: httpx.AsyncClient) -> None:
    config = config_bytes(salt="exact")
    layer = b"tiny"
    await push_blob(api, "lib/app", config)
    await push_blob(api, "lib/app", layer)
    data_b64 = base64.b64encode(layer).decode()
    # keys out of the usual order, odd whitespace, custom fields, escapes and non-ASCII
    template = (
        '\n\t{ "layers" : [ {"size":4, "mediaType":"LAYER_TYPE",\n'
        '    "digest": "LAYER_DIGEST", "data": "DATA",\r\n "x-custom": {"nested": [1, 2.50, null]}'
        " } ],\n"
        '  "config":{"digest":"CONFIG_DIGEST","size":CONFIG_SIZE,'
        '"mediaType":"application/vnd.oci.image.config.v1+json"},'
        '"mediaType": "MANIFEST_TYPE",   "schemaVersion" :2,\n'
        '  "annotations": {"note": "caf\\u00e9 \u2603", "z": "\\"quoted\\""},'
        '  "vendor.extension": true  }  \n\n'
    )
    body = template
    for key, value in {
        "LAYER_TYPE": OCI_LAYER_GZIP,
        "LAYER_DIGEST": sha256(layer),
        "DATA": data_b64,
        "CONFIG_DIGEST": sha256(config),
        "CONFIG_SIZE": str(len(config)),
        "MANIFEST_TYPE": OCI_MANIFEST,
    }.items():
        body = body.replace(key, value)
    raw = body.encode("utf-8")
    assert raw != json.dumps(json.loads(raw), separators=(",", ":")).encode()
    pushed = await push_manifest(api, "lib/app", "exact", raw, OCI_MANIFEST)
    assert pushed.digest == sha256(raw)
    for ref in ("exact", pushed.digest):
        got = await api.get(f"/v2/lib/app/manifests/{ref}")
        assert got.content == raw
        assert got.headers["content-length"] == str(len(raw))


async def test_manifest_size_limit(api: httpx.AsyncClient) -> None:
    config = config_bytes(salt="big")
    await push_blob(api, "lib/app", config)
    doc = image_doc(config, [], annotations={"pad": ""})
    base = len(json.dumps(doc, separators=(",", ":")))
    doc["annotations"]["pad"] = "x" * (MAX_MANIFEST_BYTES - base)
    exact = json.dumps(doc, separators=(",", ":")).encode()
    assert len(exact) == MAX_MANIFEST_BYTES
    over = exact[:-1] + b" }"
    assert len(over) == MAX_MANIFEST_BYTES + 1

    err = assert_error(await put_manifest(api, "lib/app", "over", over), 413, "SIZE_INVALID")
    assert err["detail"]["limit"] == MAX_MANIFEST_BYTES

    async def streamed():  # no Content-Length: refused once the body passes the limit
        for i in range(0, len(over), 1 << 20):
            yield over[i : i + (1 << 20)]

    resp = await api.put(
        "/v2/lib/app/manifests/over", content=streamed(), headers={"Content-Type": OCI_MANIFEST}
    )
    assert_error(resp, 413, "SIZE_INVALID")
    assert_error(await api.get("/v2/lib/app/manifests/over"), 404, "MANIFEST_UNKNOWN")

    pushed = await push_manifest(api, "lib/app", "limit", exact, OCI_MANIFEST)
    assert (await api.get(f"/v2/lib/app/manifests/{pushed.digest}")).content == exact


async def test_put_by_wrong_digest(api: httpx.AsyncClient) -> None:
    config = config_bytes(salt="wrong")
    await push_blob(api, "lib/app", config)
    body = json.dumps(image_doc(config, [])).encode()
    for wrong in (sha256(body + b" "), sha512(body + b" ")):
        err = assert_error(await put_manifest(api, "lib/app", wrong, body), 400, "DIGEST_INVALID")
        assert err["detail"]["expected"] == wrong
        assert_error(await api.get(f"/v2/lib/app/manifests/{wrong}"), 404, "MANIFEST_UNKNOWN")
    assert_error(await api.get(f"/v2/lib/app/manifests/{sha256(body)}"), 404, "MANIFEST_UNKNOWN")


async def test_sha512_manifest_reference(api: httpx.AsyncClient) -> None:
    image = await push_image(api, "lib/app", None, algorithm="sha512")
    assert image.digest == sha512(image.body)
    await check_served(api, "lib/app", image.digest, image.digest, image.body, OCI_MANIFEST)
    # stored under its sha512 name only
    assert_error(await api.get(f"/v2/lib/app/manifests/{sha256(image.body)}"), 404)
    # an index may refer to it by that digest
    index = await push_index(api, "lib/app", "multi", [(image, platform("amd64"))])
    resp = await api.get("/v2/lib/app/manifests/multi", headers={"Accept": OCI_MANIFEST})
    assert resp.headers["docker-content-digest"] == image.digest
    assert resp.content == image.body
    assert (await api.delete(f"/v2/lib/app/manifests/{index.digest}")).status_code == 202
    assert (await api.delete(f"/v2/lib/app/manifests/{image.digest}")).status_code == 202
    assert_error(await api.get(f"/v2/lib/app/manifests/{image.digest}"), 404)


async def test_sha512_blobs_in_a_manifest(api: httpx.AsyncClient) -> None:
    config = config_bytes(salt="sha512 blobs")
    layer = b"sha512 layer"
    await push_blob(api, "lib/app", config, "sha512")
    await push_blob(api, "lib/app", layer, "sha512")
    doc = image_doc(config, [layer])
    doc["config"]["digest"] = sha512(config)
    doc["layers"][0]["digest"] = sha512(layer)
    pushed = await push_manifest(api, "lib/app", "v1", doc)
    assert (await api.get("/v2/lib/app/manifests/v1")).content == pushed.body
    # the sha256 names of the same bytes are not in the registry
    doc["layers"][0]["digest"] = sha256(layer)
    resp = await put_manifest(api, "lib/app", "v2", doc)
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")


# ---- delete -------------------------------------------------------------------------------


async def test_delete_by_digest_removes_every_tag(api: httpx.AsyncClient) -> None:
    image = await push_image(api, "lib/app", "v1", salt="shared")
    for tag in ("latest", "stable"):
        await push_manifest(api, "lib/app", tag, image.body, OCI_MANIFEST)
    other = await push_image(api, "lib/app", "other", salt="other")
    resp = await api.delete(f"/v2/lib/app/manifests/{image.digest}")
    assert resp.status_code == 202
    for ref in ("v1", "latest", "stable", image.digest):
        assert_error(await api.get(f"/v2/lib/app/manifests/{ref}"), 404, "MANIFEST_UNKNOWN")
    assert await tags_of(api, "lib/app") == ["other"]
    assert (await api.get("/v2/lib/app/manifests/other")).content == other.body
    resp = await api.delete(f"/v2/lib/app/manifests/{image.digest}")
    assert_error(resp, 404, "MANIFEST_UNKNOWN")
    # pushing it again brings it back
    again = await push_manifest(api, "lib/app", "v1", image.body, OCI_MANIFEST)
    assert again.digest == image.digest


async def test_delete_by_tag_removes_only_that_tag(api: httpx.AsyncClient) -> None:
    image = await push_image(api, "lib/app", "v1")
    await push_manifest(api, "lib/app", "v2", image.body, OCI_MANIFEST)
    assert (await api.delete("/v2/lib/app/manifests/v1")).status_code == 202
    assert_error(await api.get("/v2/lib/app/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    assert (await api.get("/v2/lib/app/manifests/v2")).content == image.body
    assert (await api.get(f"/v2/lib/app/manifests/{image.digest}")).content == image.body
    assert await tags_of(api, "lib/app") == ["v2"]
    assert_error(await api.delete("/v2/lib/app/manifests/v1"), 404, "MANIFEST_UNKNOWN")


async def test_deleting_an_index_child_is_denied(api: httpx.AsyncClient) -> None:
    index, children = await push_multiarch(api, "lib/multi", "v1")
    child = children["arm64"]
    err = assert_error(await api.delete(f"/v2/lib/multi/manifests/{child.digest}"), 403, "DENIED")
    assert err["detail"]["index"] == index.digest
    assert (await api.get(f"/v2/lib/multi/manifests/{child.digest}")).content == child.body
    assert (await api.delete(f"/v2/lib/multi/manifests/{index.digest}")).status_code == 202
    assert_error(await api.get("/v2/lib/multi/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    # once the index is gone its children may go
    assert (await api.delete(f"/v2/lib/multi/manifests/{child.digest}")).status_code == 202
    assert_error(await api.get(f"/v2/lib/multi/manifests/{child.digest}"), 404)
    amd64 = children["amd64"]
    assert (await api.get(f"/v2/lib/multi/manifests/{amd64.digest}")).content == amd64.body
