"""Client tokens through the ASGI app: every route and every action.

For each route, a token granted exactly the action the route needs gets its answer, and a
token granted any other action (one at a time, then all of them together) is refused
403 DENIED with a message naming the token, the action and the repository. The tokens are
real: made by TokenAdmin in the store, checked by the real Authenticator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from api_helpers import (
    canonical,
    config_bytes,
    image_doc,
    make_app,
    make_client,
    push_image,
    sha256,
    start_session,
)

from registry_core.access.scopes import ACTIONS, REGISTRY_WIDE, parse_scopes
from registry_core.access.tokens import TokenAdmin
from registry_core.datadir import DataDir
from registry_core.events import AccessDenied
from registry_core.http.app import RegistryApp
from registry_core.identity import CONSOLE
from registry_core.registry import Registry

REPO = "acl/app"
LAYER = b"a layer nobody has pushed yet"


@dataclass
class Site:
    """A registry holding `acl/app:v1`, an open upload session, and the admin's client."""

    registry: Registry
    app: RegistryApp
    admin: httpx.AsyncClient
    manifest: str
    blob: str
    session: str

    def token(self, name: str, *scopes: str) -> tuple[str, str]:
        issued = TokenAdmin(self.registry).create(name, parse_scopes(scopes), who=CONSOLE)
        return name, issued.password


@pytest.fixture
async def site(
    registry: Registry, datadir: DataDir, credentials: tuple[str, str]
) -> AsyncIterator[Site]:
    app = make_app(registry, datadir)
    async with make_client(app, credentials) as admin:
        pushed = await push_image(admin, REPO, "v1")
        session = await start_session(admin, REPO)
        yield Site(registry, app, admin, pushed.digest, pushed.blobs[0], session)
    app.authenticator.close()


Call = Callable[[httpx.AsyncClient, Site], Awaitable[httpx.Response]]


def new_manifest() -> bytes:
    """Another manifest over the blobs of acl/app:v1 (push_image's salted config and layer)."""
    salt = f"{REPO}:v1:amd64"
    doc = image_doc(config_bytes(salt=salt), [f"layer of {salt}".encode()],
                    annotations={"edition": "2"})
    return canonical(doc)


# (route, action it needs, the request, the status when allowed)
ROUTES: list[tuple[str, str, Call, int]] = [
    ("tags/list", "metadata/read", lambda c, s: c.get(f"/v2/{REPO}/tags/list"), 200),
    ("GET manifest", "content/read", lambda c, s: c.get(f"/v2/{REPO}/manifests/v1"), 200),
    ("HEAD manifest", "content/read", lambda c, s: c.head(f"/v2/{REPO}/manifests/v1"), 200),
    ("PUT manifest (tag)", "content/write", lambda c, s: c.put(
        f"/v2/{REPO}/manifests/v1", content=new_manifest(),
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}), 201),
    ("DELETE manifest", "content/delete",
     lambda c, s: c.delete(f"/v2/{REPO}/manifests/{s.manifest}"), 202),
    ("POST upload", "content/write", lambda c, s: c.post(f"/v2/{REPO}/blobs/uploads/"), 202),
    ("POST upload whole", "content/write", lambda c, s: c.post(
        f"/v2/{REPO}/blobs/uploads/", params={"digest": sha256(LAYER)}, content=LAYER), 201),
    ("GET upload", "content/write", lambda c, s: c.get(s.session), 204),
    ("PATCH upload", "content/write", lambda c, s: c.patch(
        s.session, content=LAYER, headers={"Content-Range": f"0-{len(LAYER) - 1}"}), 202),
    ("PUT upload", "content/write", lambda c, s: c.put(
        s.session, params={"digest": sha256(LAYER)}, content=LAYER), 201),
    ("DELETE upload", "content/write", lambda c, s: c.delete(s.session), 204),
    ("GET blob", "content/read", lambda c, s: c.get(f"/v2/{REPO}/blobs/{s.blob}"), 200),
    ("HEAD blob", "content/read", lambda c, s: c.head(f"/v2/{REPO}/blobs/{s.blob}"), 200),
    ("DELETE blob", "content/delete",
     lambda c, s: c.delete(f"/v2/{REPO}/blobs/{s.blob}"), 202),
    ("referrers", "metadata/read",
     lambda c, s: c.get(f"/v2/{REPO}/referrers/{s.manifest}"), 200),
]

OPERATION = {  # what the audit log calls a refused request of each route
    "tags/list": "tags.list", "GET manifest": "manifest.pull", "HEAD manifest": "manifest.pull",
    "PUT manifest (tag)": "manifest.push", "DELETE manifest": "manifest.delete",
    "POST upload": "blob.upload", "POST upload whole": "blob.upload",
    "GET upload": "blob.upload", "PATCH upload": "blob.upload", "PUT upload": "blob.upload",
    "DELETE upload": "blob.upload", "GET blob": "blob.pull", "HEAD blob": "blob.pull",
    "DELETE blob": "blob.delete", "referrers": "referrers.list",
}


def grant(actions: list[str]) -> list[str]:
    """--scope values granting exactly `actions` (on REPO, or on '*' for registry-wide)."""
    on_repo = [a for a in actions if a not in REGISTRY_WIDE]
    wide = [a for a in actions if a in REGISTRY_WIDE]
    return ([f"{REPO}:{','.join(on_repo)}"] if on_repo else []) + (
        [f"*:{','.join(wide)}"] if wide else [])


@pytest.mark.parametrize(("label", "needed", "call", "allowed"), ROUTES,
                         ids=[r[0] for r in ROUTES])
async def test_each_route_needs_exactly_its_action(
    site: Site, label: str, needed: str, call: Call, allowed: int
) -> None:
    denials: list[AccessDenied] = []
    site.registry.events.subscribe(denials.append, AccessDenied)
    others = [a for a in ACTIONS if a != needed]
    refused_grants = [[a] for a in others] + [others]
    for number, actions in enumerate(refused_grants):
        name = f"refused-{number}"
        async with make_client(site.app, site.token(name, *grant(actions))) as c:
            reply = await call(c, site)
        assert reply.status_code == 403, (actions, reply.text)
        if reply.request.method != "HEAD":
            (error,) = reply.json()["errors"]
            assert error["code"] == "DENIED"
            assert name in error["message"] and needed in error["message"]
            assert REPO in error["message"]
    assert [(d.identity, d.action, d.repository) for d in denials] == [
        (f"refused-{n}", needed, REPO) for n in range(len(refused_grants))]
    assert all(d.address == "127.0.0.1" for d in denials)
    assert {d.operation for d in denials} == {OPERATION[label]}
    async with make_client(site.app, site.token("exact", *grant([needed]))) as c:
        reply = await call(c, site)
    assert reply.status_code == allowed, reply.text


async def test_a_pinned_manifest_is_refused_even_with_the_delete_action(site: Site) -> None:
    """Not an access rule: a token granted content/delete meets the stage's pin, a 403 DENIED
    that names the stage (and no access denial), until the stage is released."""
    denials: list[AccessDenied] = []
    site.registry.events.subscribe(denials.append, AccessDenied)
    store = site.registry.store
    with store.exclusive():
        item = store.stages.add("window-7", REPO, "v1")
        store.stages.set_status(item.id, "staged", site.manifest)
    async with make_client(site.app, site.token("deleter", *grant(["content/delete"]))) as c:
        reply = await c.delete(f"/v2/{REPO}/manifests/{site.manifest}")
        assert reply.status_code == 403, reply.text
        (error,) = reply.json()["errors"]
        assert error["code"] == "DENIED"
        assert error["message"].startswith(f"{REPO}@{site.manifest} is pinned by the stage "
                                           "window-7")
        assert denials == []
        with store.exclusive():
            store.stages.release("window-7")
        assert (await c.delete(f"/v2/{REPO}/manifests/{site.manifest}")).status_code == 202
