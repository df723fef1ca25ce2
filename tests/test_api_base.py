"""The API's base endpoint, authentication, routing and the shape of every error reply."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from api_helpers import (
    assert_error,
    make_app,
    make_client,
    push_blob,
    push_image,
    raw_request,
    sha256,
)

from registry_core.datadir import DataDir
from registry_core.registry import Registry


@pytest.fixture
async def anon(datadir: DataDir, registry: Registry) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the same app as `api` but sending no credentials."""
    async with make_client(make_app(registry, datadir)) as client:
        yield client


def basic(value: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(value.encode()).decode()}


# ---- GET /v2/ -----------------------------------------------------------------------------


async def test_base_authenticated(api: httpx.AsyncClient) -> None:
    for path in ("/v2/", "/v2"):
        resp = await api.get(path)
        assert resp.status_code == 200, path
        assert resp.json() == {}
        assert resp.headers["docker-distribution-api-version"] == "registry/2.0"
    resp = await api.head("/v2/")
    assert resp.status_code == 200
    assert resp.headers["docker-distribution-api-version"] == "registry/2.0"


async def test_base_unauthenticated_challenges(anon: httpx.AsyncClient) -> None:
    resp = await anon.get("/v2/")
    assert_error(resp, 401, "UNAUTHORIZED")
    challenge = resp.headers["www-authenticate"]
    assert challenge.startswith("Basic realm=")
    assert challenge.split("=", 1)[1].startswith('"') and challenge.endswith('"')


async def test_credentials_are_checked(
    anon: httpx.AsyncClient, credentials: tuple[str, str]
) -> None:
    user, password = credentials
    for bad in (
        f"{user}:{password}x",
        f"{user}:",
        f"nobody:{password}",
        f"{user.upper()}:{password}",
    ):
        resp = await anon.get("/v2/", headers=basic(bad))
        assert_error(resp, 401, "UNAUTHORIZED")
        assert resp.headers["www-authenticate"].startswith("Basic realm="), bad
    resp = await anon.get("/v2/", headers=basic(f"{user}:{password}"))
    assert resp.status_code == 200
    # a refused attempt is not remembered as a success, nor a success as a refusal
    assert_error(await anon.get("/v2/", headers=basic(f"{user}:{password}x")), 401)


MALFORMED_AUTH = [
    "Basic",
    "Basic ",
    "Basic !!!not-base64!!!",
    "Basic " + base64.b64encode(b"no-colon-here").decode(),
    "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
    "Bearer abc.def.ghi",
    "Digest username=x",
    "garbage",
]


async def test_malformed_authorization(anon: httpx.AsyncClient) -> None:
    for header in MALFORMED_AUTH:
        resp = await anon.get("/v2/", headers={"Authorization": header})
        assert_error(resp, 401, "UNAUTHORIZED")
        assert resp.headers["www-authenticate"].startswith("Basic realm="), header


async def test_every_endpoint_requires_auth(
    anon: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    digest = await push_blob(api, "secret/repo", b"private bytes")
    for method, path in [
        ("GET", "/v2/_catalog"),
        ("GET", "/v2/secret/repo/tags/list"),
        ("GET", "/v2/secret/repo/manifests/latest"),
        ("PUT", "/v2/secret/repo/manifests/latest"),
        ("DELETE", "/v2/secret/repo/manifests/latest"),
        ("GET", f"/v2/secret/repo/blobs/{digest}"),
        ("DELETE", f"/v2/secret/repo/blobs/{digest}"),
        ("POST", "/v2/secret/repo/blobs/uploads/"),
        ("GET", f"/v2/secret/repo/referrers/{digest}"),
        ("GET", "/v2/does/not/exist/anything"),
    ]:
        resp = await anon.request(method, path)
        assert_error(resp, 401, "UNAUTHORIZED")
    head = await anon.head(f"/v2/secret/repo/blobs/{digest}")
    assert_error(head, 401)
    assert "www-authenticate" in head.headers
    # nothing leaked or changed
    assert (await api.get(f"/v2/secret/repo/blobs/{digest}")).content == b"private bytes"


# ---- routing ------------------------------------------------------------------------------


UNKNOWN_ROUTES = [
    "/",
    "/v1/",
    "/v2x",
    "/v3/_catalog",
    "/v2/foo",
    "/v2/foo/bar",
    "/v2/foo/unknown/latest",
    "/v2/foo/manifests",
    "/v2/foo/manifests/a/b",
    "/v2/foo/tags",
    "/v2/foo/tags/list/extra",
]


async def test_unknown_routes_404(api: httpx.AsyncClient) -> None:
    for path in UNKNOWN_ROUTES:
        resp = await api.get(path)
        err = assert_error(resp, 404)
        assert err["code"] == "NOT_FOUND", path
        assert_error(await api.head(path), 404)


WRONG_METHODS = [
    ("POST", "/v2/"),
    ("DELETE", "/v2/_catalog"),
    ("POST", "/v2/foo/tags/list"),
    ("POST", "/v2/foo/manifests/latest"),
    ("PATCH", "/v2/foo/manifests/latest"),
    ("GET", "/v2/foo/blobs/uploads/"),
    ("PUT", "/v2/foo/blobs/uploads/"),
    ("POST", "/v2/foo/blobs/uploads/some-id"),
    ("PUT", f"/v2/foo/blobs/{sha256(b'x')}"),
    ("PATCH", f"/v2/foo/blobs/{sha256(b'x')}"),
    ("DELETE", f"/v2/foo/referrers/{sha256(b'x')}"),
]


async def test_wrong_method_is_json_error(api: httpx.AsyncClient) -> None:
    for method, path in WRONG_METHODS:
        resp = await api.request(method, path)
        assert resp.status_code == 405, (method, path)
        err = assert_error(resp, 405, "UNSUPPORTED")
        assert method in err["message"]
        allowed = {m.strip() for m in resp.headers["allow"].split(",")}
        assert method not in allowed and allowed == set(err["detail"]["allowed"])


async def test_head_errors_have_no_body(
    api: httpx.AsyncClient, registry: Registry, datadir: DataDir, credentials: tuple[str, str]
) -> None:
    # Through the raw ASGI interface: httpx itself would drop a HEAD reply's body.
    app = make_app(registry, datadir)
    auth = basic(":".join(credentials))
    digest = await push_blob(api, "foo", b"present")
    ok = await raw_request(app, "HEAD", f"/v2/foo/blobs/{digest}", auth)
    assert ok.status == 200 and ok.body == b""
    assert ok.headers["content-length"] == str(len(b"present"))
    for path, status in [
        (f"/v2/foo/blobs/{sha256(b'missing')}", 404),
        ("/v2/foo/manifests/missing", 404),
        ("/v2/foo/blobs/sha256:short", 400),
        ("/v2/Foo/manifests/latest", 400),
        ("/v2/foo/manifests/sha1:abc", 400),
        ("/v2/foo/tags/list/nowhere", 404),
        ("/v2/foo/referrers/sha256:short", 400),
    ]:
        head = await raw_request(app, "HEAD", path, auth)
        assert head.status == status, path
        assert head.body == b"", path
        get = await raw_request(app, "GET", path, auth)
        assert get.status == status and get.body.startswith(b'{"errors":['), path
    unauth = await raw_request(app, "HEAD", f"/v2/foo/blobs/{digest}")
    assert unauth.status == 401 and unauth.body == b""
    assert unauth.headers["www-authenticate"].startswith("Basic realm=")


async def test_error_bodies_never_hold_a_traceback(api: httpx.AsyncClient) -> None:
    # A broad sweep of bad requests: every one a 4xx JSON error of a known code.
    bad = [
        ("GET", "/v2/UPPER/tags/list"),
        ("GET", "/v2/a..b/tags/list"),
        ("GET", "/v2/foo/manifests/-bad-tag"),
        ("GET", "/v2/foo/manifests/sha256:XYZ"),
        ("GET", "/v2/foo/blobs/md5:d41d8cd98f00b204e9800998ecf8427e"),
        ("PUT", "/v2/foo/manifests/latest"),
        ("PUT", "/v2/foo/blobs/uploads/nope?digest=" + sha256(b"")),
        ("PATCH", "/v2/foo/blobs/uploads/nope"),
        ("DELETE", "/v2/foo/blobs/uploads/nope"),
        ("GET", "/v2/_catalog?n=x"),
    ]
    for method, path in bad:
        resp = await api.request(method, path)
        assert 400 <= resp.status_code < 500, (method, path, resp.text)
        assert_error(resp, resp.status_code)


@pytest.mark.parametrize(
    "hosts", [[], [("Host", "")], [("Host", "a"), ("Host", "b")]], ids=["none", "empty", "two"]
)
async def test_http11_needs_exactly_one_host(
    datadir: DataDir, registry: Registry, credentials: tuple[str, str], hosts: list[tuple[str, str]]
) -> None:
    """RFC 9112 section 3.2: 400, before authentication and before any route runs."""
    async with make_client(make_app(registry, datadir), credentials) as client:
        pushed = await push_image(client, "lib/app", "v1")
    auth = ("Authorization", basic(":".join(credentials))["Authorization"])
    path = f"/v2/lib/app/manifests/{pushed.digest}"
    reply = await raw_request(make_app(registry, datadir), "DELETE", path, [*hosts, auth])
    assert reply.status == 400
    error = json.loads(reply.body)["errors"][0]
    assert error["code"] == "UNSUPPORTED"
    assert "Host header" in error["message"]
    assert str(registry.get_manifest("lib/app", pushed.digest).digest) == pushed.digest


async def test_oversized_heads_get_an_oci_body(
    datadir: DataDir, registry: Registry, credentials: tuple[str, str]
) -> None:
    app = make_app(registry, datadir)
    reply = await raw_request(app, "GET", "/v2/", {"X-Pad": "a" * (64 << 10)})
    assert reply.status == 431
    assert json.loads(reply.body)["errors"][0]["code"] == "UNSUPPORTED"
    auth = basic(":".join(credentials))
    reply = await raw_request(app, "GET", "/v2/" + "a/" * 5000 + "tags/list", auth)
    assert reply.status == 414
    assert json.loads(reply.body)["errors"][0]["code"] == "NAME_INVALID"
