"""Identity and authorization on every route: the action each route performs, checked right
after routing, and the identity handed on in the request's scope."""

from __future__ import annotations

import base64
import json

import pytest
from api_helpers import assert_error, make_app, make_client, raw_request

from registry_core.datadir import DataDir
from registry_core.errors import BlobUnknown, Denied
from registry_core.http.app import RegistryApp
from registry_core.identity import CONSOLE, GC, Identity, authorize
from registry_core.registry import Registry
from registry_core.store import Store

UPLOAD = "/v2/acl/app/blobs/uploads/0b8e1f3a-6a0c-4c55-9a43-6f1d2c3b4a59"
DIGEST = "sha256:" + "0" * 64

# (method, path, repository, action): an oracle written from the scope maps' meaning. /v2/
# answers any valid credentials; the catalog lists what the identity may read (no action).
EXPECTED = [
    ("GET", "/v2/", None, None),
    ("HEAD", "/v2/", None, None),
    ("GET", "/v2/_catalog", None, None),
    ("GET", "/v2/acl/app/tags/list", "acl/app", "metadata/read"),
    ("GET", "/v2/acl/app/manifests/v1", "acl/app", "content/read"),
    ("HEAD", "/v2/acl/app/manifests/v1", "acl/app", "content/read"),
    ("PUT", "/v2/acl/app/manifests/v1", "acl/app", "content/write"),
    ("DELETE", "/v2/acl/app/manifests/v1", "acl/app", "content/delete"),
    ("POST", "/v2/acl/app/blobs/uploads/", "acl/app", "content/write"),
    ("GET", UPLOAD, "acl/app", "content/write"),
    ("PATCH", UPLOAD, "acl/app", "content/write"),
    ("PUT", UPLOAD, "acl/app", "content/write"),
    ("DELETE", UPLOAD, "acl/app", "content/write"),
    ("GET", f"/v2/acl/app/blobs/{DIGEST}", "acl/app", "content/read"),
    ("HEAD", f"/v2/acl/app/blobs/{DIGEST}", "acl/app", "content/read"),
    ("DELETE", f"/v2/acl/app/blobs/{DIGEST}", "acl/app", "content/delete"),
    ("GET", f"/v2/acl/app/referrers/{DIGEST}", "acl/app", "metadata/read"),
]


class TokenWithoutScopes:
    """Authenticates every request as a token that no scope map grants anything yet."""

    async def authenticate(self, authorization: str | None) -> Identity | None:
        return Identity("ci-token", "token")

    def attach_store(self, store: Store) -> None:
        pass

    def refusal(self, authorization: str) -> str:
        return "never refused"

    def close(self) -> None:
        pass


def test_the_table_covers_every_route(registry: Registry, datadir: DataDir) -> None:
    app = make_app(registry, datadir)
    covered = set()
    for method, path, _, _ in EXPECTED:
        index = next(i for i, (p, _) in enumerate(app.routes) if p.fullmatch(path, 4))
        covered.add((index, "GET" if method == "HEAD" else method))
    every = {(i, method) for i, (_, handlers) in enumerate(app.routes) for method in handlers}
    assert covered == every


@pytest.mark.parametrize(("method", "path", "repository", "action"), EXPECTED)
async def test_every_route_is_authorized_for_its_action(
    registry: Registry, method: str, path: str, repository: str | None, action: str | None
) -> None:
    app = RegistryApp(registry, TokenWithoutScopes())
    reply = await raw_request(app, method, path, {"Content-Length": "0"})
    if action is None:
        assert reply.status == 200
        if path.endswith("_catalog"):
            assert json.loads(reply.body) == {"repositories": []}
        return
    assert reply.status == 403
    if method != "HEAD":
        (error,) = json.loads(reply.body)["errors"]
        assert error["code"] == "DENIED"
        assert error["detail"] == {"action": action, "repository": repository}


@pytest.mark.parametrize(("method", "path", "repository", "action"), EXPECTED)
async def test_the_admin_may_do_everything(
    registry: Registry,
    datadir: DataDir,
    credentials: tuple[str, str],
    method: str,
    path: str,
    repository: str | None,
    action: str | None,
) -> None:
    async with make_client(make_app(registry, datadir), credentials) as client:
        resp = await client.request(method, path, content=b"")
    assert resp.status_code != 403, resp.text
    assert resp.status_code < 500, resp.text


async def test_the_identity_is_in_the_request_scope(
    registry: Registry, datadir: DataDir, credentials: tuple[str, str]
) -> None:
    token = base64.b64encode(":".join(credentials).encode()).decode()
    app = make_app(registry, datadir)
    reply = await raw_request(app, "GET", "/v2/_catalog", {"Authorization": f"Basic {token}"})
    assert reply.status == 200
    assert reply.scope["identity"] == Identity(credentials[0], "admin", "127.0.0.1")
    refused = await raw_request(app, "GET", "/v2/_catalog", {"Authorization": "Basic eDp5"})
    assert refused.status == 401
    assert "identity" not in refused.scope


def test_authorize() -> None:
    for _, _, repository, action in EXPECTED:
        if action is None:
            continue
        authorize(Identity("admin", "admin"), repository, action)  # type: ignore[arg-type]
        with pytest.raises(Denied):
            authorize(Identity("t", "token"), repository, action)  # type: ignore[arg-type]


async def test_unknown_routes_and_methods_are_unchanged_for_a_token(registry: Registry) -> None:
    """Routing errors come before authorization: a 404 or 405 says nothing about access."""
    async with make_client(RegistryApp(registry, TokenWithoutScopes())) as client:
        assert_error(await client.get("/v2/acl/app/nothing-here"), 404)
        assert_error(await client.post("/v2/_catalog"), 405, "UNSUPPORTED")


def test_system_identities_may_do_everything() -> None:
    for who in (CONSOLE, GC):
        for _, _, repository, action in EXPECTED:
            authorize(who, repository, action)  # type: ignore[arg-type]


def test_a_mount_needs_read_access_to_its_source(registry: Registry) -> None:
    """A mount from a repository the identity may not read falls back to an upload (the
    spec's answer when a mount cannot be done), so it never reveals or links the blob."""
    stored = registry.put_blob("secret/app", b"layer", who=CONSOLE)
    outsider = Identity("ci-token", "token")
    assert registry.mount_blob("acl/app", stored.digest, "secret/app", who=outsider) is None
    with pytest.raises(BlobUnknown):
        registry.stat_blob("acl/app", stored.digest)
    mounted = registry.mount_blob("acl/app", stored.digest, "secret/app", who=CONSOLE)
    assert mounted == stored
    assert registry.stat_blob("acl/app", stored.digest) == stored
