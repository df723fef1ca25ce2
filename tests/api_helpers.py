"""Helpers shared by the tests/test_api_*.py files: pushing blobs and manifests over the API.

Everything goes through an httpx client on the ASGI app (the `api` fixture), the way a
registry client would, so the helpers themselves exercise the push endpoints.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from registry_core.access.credentials import Authenticator
from registry_core.datadir import DataDir
from registry_core.http.app import RegistryApp
from registry_core.manifests import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
)
from registry_core.registry import Registry

BASE_URL = "http://registry.test"

# Every code the distribution spec defines, plus the two this registry adds:
# PAGINATION_NUMBER_INVALID (as the reference registry) and NOT_FOUND (unknown routes).
SPEC_ERROR_CODES = frozenset(
    {
        "BLOB_UNKNOWN",
        "BLOB_UPLOAD_INVALID",
        "BLOB_UPLOAD_UNKNOWN",
        "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN",
        "MANIFEST_INVALID",
        "MANIFEST_UNKNOWN",
        "NAME_INVALID",
        "NAME_UNKNOWN",
        "SIZE_INVALID",
        "UNAUTHORIZED",
        "DENIED",
        "UNSUPPORTED",
        "TOOMANYREQUESTS",
    }
)
KNOWN_ERROR_CODES = SPEC_ERROR_CODES | {"PAGINATION_NUMBER_INVALID", "NOT_FOUND"}

IMAGE_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX)


# ---- digests ------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return sha512(data) if algorithm == "sha512" else sha256(data)


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


# ---- clients ------------------------------------------------------------------------------


def make_app(registry: Registry, datadir: DataDir) -> RegistryApp:
    return RegistryApp(registry, Authenticator(datadir))


def make_client(app: RegistryApp, auth: tuple[str, str] | None = None) -> httpx.AsyncClient:
    """A client on `app`; without `auth` it sends no Authorization header."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL, auth=auth)


@dataclass
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes
    scope: dict[str, Any]
    """The request's ASGI scope as the app left it."""


async def raw_request(
    app: RegistryApp,
    method: str,
    path: str,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
) -> RawReply:
    """One request straight through the ASGI interface, with every body message kept.

    httpx drops the body of a HEAD reply, so this is how to see what the app really sends.
    Headers given as a list of pairs are sent exactly so (no Host added).
    """
    sent: list[dict[str, Any]] = []
    if isinstance(headers, list):  # sent exactly as given
        pairs = headers
    else:  # with the Host header every HTTP/1.1 client sends
        pairs = [("host", "registry.test"), *(headers or {}).items()]
    raw_headers = [(k.lower().encode(), v.encode("latin-1")) for k, v in pairs]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 1234),
        "server": ("registry.test", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    decoded = {k.decode().lower(): v.decode("latin-1") for k, v in start["headers"]}
    return RawReply(start["status"], decoded, body, scope)


# ---- errors -------------------------------------------------------------------------------


def assert_error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is the spec's JSON error body with `status` and `code`; the first error.

    A reply to HEAD must have no body at all; then only the status is checked.
    """
    assert resp.status_code == status, f"{resp.status_code} {resp.text[:500]}"
    assert resp.headers.get("docker-distribution-api-version") == "registry/2.0"
    if resp.request.method == "HEAD":
        assert resp.content == b""
        return {}
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    assert "Traceback" not in resp.text
    body = resp.json()
    assert isinstance(body, dict) and set(body) == {"errors"}, body
    errors = body["errors"]
    assert isinstance(errors, list) and errors, body
    for entry in errors:
        assert isinstance(entry["code"], str) and entry["code"] in KNOWN_ERROR_CODES, entry
        assert isinstance(entry["message"], str) and entry["message"], entry
        assert set(entry) <= {"code", "message", "detail"}, entry
    if code is not None:
        assert errors[0]["code"] == code, errors
    return dict(errors[0])


# ---- blobs --------------------------------------------------------------------------------


async def push_blob(
    api: httpx.AsyncClient, name: str, data: bytes, algorithm: str = "sha256"
) -> str:
    """Monolithic upload (POST ?digest=); returns the digest."""
    digest = digest_of(data, algorithm)
    resp = await api.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data)
    assert resp.status_code == 201, resp.text
    assert resp.headers["docker-content-digest"] == digest
    return digest


async def start_session(api: httpx.AsyncClient, name: str) -> str:
    """POST without a digest: a new upload session; returns its Location."""
    resp = await api.post(f"/v2/{name}/blobs/uploads/")
    assert resp.status_code == 202, resp.text
    location = resp.headers["location"]
    assert location.startswith(f"/v2/{name}/blobs/uploads/")
    return location


async def patch_chunk(
    api: httpx.AsyncClient, location: str, chunk: bytes, start: int
) -> httpx.Response:
    return await api.patch(
        location,
        content=chunk,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + len(chunk) - 1}",
        },
    )


# ---- manifests ----------------------------------------------------------------------------


@dataclass
class Pushed:
    """A manifest pushed by a helper: its digest, exact bytes and media type."""

    name: str
    digest: str
    body: bytes
    media_type: str
    doc: dict[str, Any]
    blobs: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.body)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


def platform(architecture: str, os: str = "linux", **extra: Any) -> dict[str, Any]:
    return {"architecture": architecture, "os": os, **extra}


async def put_manifest(
    api: httpx.AsyncClient,
    name: str,
    reference: str,
    body: bytes | dict[str, Any],
    media_type: str | None = None,
) -> httpx.Response:
    content = canonical(body) if isinstance(body, dict) else body
    if media_type is None and isinstance(body, dict):
        media_type = body.get("mediaType")
    headers = {"Content-Type": media_type} if media_type else {}
    return await api.put(f"/v2/{name}/manifests/{reference}", content=content, headers=headers)


async def push_manifest(
    api: httpx.AsyncClient,
    name: str,
    reference: str | None,
    doc: dict[str, Any] | bytes,
    media_type: str | None = None,
    algorithm: str = "sha256",
) -> Pushed:
    """PUT a manifest by `reference` (None: by its own digest); asserts 201."""
    body = canonical(doc) if isinstance(doc, dict) else doc
    parsed = doc if isinstance(doc, dict) else json.loads(doc)
    media_type = media_type or parsed.get("mediaType")
    digest = digest_of(body, algorithm)
    resp = await put_manifest(api, name, reference or digest, body, media_type)
    assert resp.status_code == 201, resp.text
    assert resp.headers["docker-content-digest"] == digest
    assert resp.headers["location"] == f"/v2/{name}/manifests/{digest}"
    assert media_type is not None
    return Pushed(name, digest, body, media_type, parsed)


def config_bytes(architecture: str = "amd64", salt: str = "") -> bytes:
    doc = {
        "architecture": architecture,
        "os": "linux",
        "created": "2024-01-02T03:04:05Z",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Labels": {"salt": salt}},
    }
    return canonical(doc)


def image_doc(
    config: bytes,
    layers: Sequence[bytes],
    media_type: str = OCI_MANIFEST,
    **extra: Any,
) -> dict[str, Any]:
    docker = media_type == DOCKER_MANIFEST
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, config),
        "layers": [descriptor(DOCKER_LAYER if docker else OCI_LAYER_GZIP, x) for x in layers],
    }
    doc.update(extra)
    return doc


async def push_image(
    api: httpx.AsyncClient,
    name: str,
    tag: str | None = "latest",
    *,
    media_type: str = OCI_MANIFEST,
    architecture: str = "amd64",
    layers: Sequence[bytes] | None = None,
    salt: str = "",
    push_blobs: bool = True,
    algorithm: str = "sha256",
    **extra: Any,
) -> Pushed:
    """Push config and layers, then an image manifest by tag (None: by digest).

    `salt` makes the config (and default layer) unique, so distinct calls give distinct
    digests; `extra` adds top-level fields (subject, artifactType, annotations, ...).
    """
    salt = salt or f"{name}:{tag}:{architecture}"
    config = config_bytes(architecture, salt)
    layers = list(layers) if layers is not None else [f"layer of {salt}".encode()]
    blobs = []
    if push_blobs:
        for data in [config, *layers]:
            blobs.append(await push_blob(api, name, data))
    doc = image_doc(config, layers, media_type, **extra)
    pushed = await push_manifest(api, name, tag, doc, media_type, algorithm)
    pushed.blobs = blobs
    return pushed


async def push_index(
    api: httpx.AsyncClient,
    name: str,
    tag: str | None,
    children: Sequence[tuple[Pushed, dict[str, Any] | None]],
    *,
    media_type: str = OCI_INDEX,
    **extra: Any,
) -> Pushed:
    """An index or manifest list of already pushed children, with their platforms."""
    entries = []
    for child, plat in children:
        entry = child.descriptor()
        if plat is not None:
            entry["platform"] = plat
        entries.append(entry)
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type, "manifests": entries}
    doc.update(extra)
    return await push_manifest(api, name, tag, doc, media_type)


async def push_multiarch(
    api: httpx.AsyncClient,
    name: str,
    tag: str = "latest",
    *,
    index_type: str = OCI_INDEX,
    architectures: Sequence[str] = ("arm64", "amd64"),
) -> tuple[Pushed, dict[str, Pushed]]:
    """Children (untagged, one per architecture) and an index over them, tagged."""
    child_type = DOCKER_MANIFEST if index_type == DOCKER_MANIFEST_LIST else OCI_MANIFEST
    children = {}
    for arch in architectures:
        children[arch] = await push_image(
            api, name, None, media_type=child_type, architecture=arch, salt=f"{tag}-{arch}"
        )
    index = await push_index(
        api,
        name,
        tag,
        [(children[a], platform(a)) for a in architectures],
        media_type=index_type,
    )
    return index, children
