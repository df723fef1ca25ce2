"""GET /v2/<name>/tags/list and GET /v2/_catalog: sorting, n/last pagination, Link headers."""

from __future__ import annotations

import re

import httpx
from api_helpers import assert_error, push_blob, push_image, push_manifest

from registry_core.manifests import OCI_MANIFEST

LINK = re.compile(r'^<(?P<url>/v2/[^>]+)>; rel="next"$')


async def walk(api: httpx.AsyncClient, url: str, key: str) -> list[list[str]]:
    """Follow rel="next" links from `url`; the pages of `key` in order."""
    pages = []
    for _ in range(100):
        resp = await api.get(url)
        assert resp.status_code == 200, resp.text
        pages.append(resp.json()[key])
        link = resp.headers.get("link")
        if link is None:
            return pages
        match = LINK.match(link)
        assert match is not None, link
        url = match["url"]
    raise AssertionError("pagination does not end")


# ---- tags ---------------------------------------------------------------------------------

TAGS = ["v1.0", "latest", "B", "a", "10", "9", "v1.0-rc1", "_x", "Z9", "z"]


async def push_tags(api: httpx.AsyncClient, name: str, tags: list[str]) -> None:
    image = await push_image(api, name, tags[0])
    for tag in tags[1:]:
        await push_manifest(api, name, tag, image.body, OCI_MANIFEST)


async def test_tags_list_sorted(api: httpx.AsyncClient) -> None:
    await push_tags(api, "lib/app", TAGS)
    resp = await api.get("/v2/lib/app/tags/list")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json() == {"name": "lib/app", "tags": sorted(TAGS)}
    assert "link" not in resp.headers


async def test_tags_list_pagination(api: httpx.AsyncClient) -> None:
    await push_tags(api, "lib/app", TAGS)
    expected = sorted(TAGS)
    for n in (1, 3, 4, 9):
        pages = await walk(api, f"/v2/lib/app/tags/list?n={n}", "tags")
        assert [t for page in pages for t in page] == expected, n
        assert all(len(page) == n for page in pages[:-1])
        assert 1 <= len(pages[-1]) <= n
    first = await api.get("/v2/lib/app/tags/list", params={"n": 3})
    assert first.json()["tags"] == expected[:3]
    assert first.headers["link"] == f'</v2/lib/app/tags/list?n=3&last={expected[2]}>; rel="next"'
    # exactly n left: the last page has no link
    resp = await api.get("/v2/lib/app/tags/list", params={"n": 2, "last": expected[-3]})
    assert resp.json()["tags"] == expected[-2:]
    assert "link" not in resp.headers
    for n in (len(TAGS), len(TAGS) + 1, 10**30):
        resp = await api.get("/v2/lib/app/tags/list", params={"n": n})
        assert resp.status_code == 200, resp.text
        assert resp.json()["tags"] == expected
        assert "link" not in resp.headers


async def test_tags_list_last(api: httpx.AsyncClient) -> None:
    await push_tags(api, "lib/app", TAGS)
    expected = sorted(TAGS)
    resp = await api.get("/v2/lib/app/tags/list", params={"last": "a"})
    assert resp.json()["tags"] == [t for t in expected if t > "a"]
    resp = await api.get("/v2/lib/app/tags/list", params={"last": "latf", "n": 2})
    assert resp.json()["tags"] == [t for t in expected if t > "latf"][:2]
    resp = await api.get("/v2/lib/app/tags/list", params={"last": "zzz"})
    assert resp.json()["tags"] == []
    resp = await api.get("/v2/lib/app/tags/list", params={"n": 0})
    assert resp.status_code == 200 and resp.json()["tags"] == []


async def test_invalid_n(api: httpx.AsyncClient) -> None:
    await push_image(api, "lib/app", "v1")
    for n in ("-1", "abc", "1.5", "1e3", " 2", "0x10", "\u00b2", "\u0661"):
        for path in ("/v2/lib/app/tags/list", "/v2/_catalog"):
            resp = await api.get(path, params={"n": n})
            assert_error(resp, 400, "PAGINATION_NUMBER_INVALID")
    # an empty n is no limit
    resp = await api.get("/v2/lib/app/tags/list?n=")
    assert resp.status_code == 200 and resp.json()["tags"] == ["v1"]


async def test_tags_of_unknown_or_invalid_repository(api: httpx.AsyncClient) -> None:
    await push_image(api, "lib/app", "v1")
    assert_error(await api.get("/v2/lib/nope/tags/list"), 404, "NAME_UNKNOWN")
    assert_error(await api.get("/v2/lib/ap/tags/list"), 404, "NAME_UNKNOWN")
    assert_error(await api.head("/v2/lib/nope/tags/list"), 404)
    assert_error(await api.get("/v2/Lib/App/tags/list"), 400, "NAME_INVALID")
    assert_error(await api.get("/v2/lib/app-/tags/list"), 400, "NAME_INVALID")


async def test_tags_after_deletes(api: httpx.AsyncClient) -> None:
    image = await push_image(api, "lib/app", "v1")
    await push_manifest(api, "lib/app", "v2", image.body, OCI_MANIFEST)
    assert (await api.delete("/v2/lib/app/manifests/v1")).status_code == 202
    assert (await api.get("/v2/lib/app/tags/list")).json()["tags"] == ["v2"]
    assert (await api.delete(f"/v2/lib/app/manifests/{image.digest}")).status_code == 202
    resp = await api.get("/v2/lib/app/tags/list")
    if resp.status_code == 200:
        assert resp.json()["tags"] in ([], None)
    else:
        assert_error(resp, 404, "NAME_UNKNOWN")


# ---- catalog ------------------------------------------------------------------------------

REPOS = ["b/x", "a", "a/b", "a-b", "c", "a.b", "a_b", "z/y/x", "0"]


async def test_catalog_sorted_and_paginated(api: httpx.AsyncClient) -> None:
    resp = await api.get("/v2/_catalog")
    assert resp.status_code == 200 and resp.json() == {"repositories": []}
    for repo in REPOS:
        await push_image(api, repo, "v1")
    await push_blob(api, "blobs/only", b"a blob without a manifest")
    expected = sorted(REPOS)
    resp = await api.get("/v2/_catalog")
    assert resp.json() == {"repositories": expected}
    assert "link" not in resp.headers
    for n in (1, 2, 4, 8):
        pages = await walk(api, f"/v2/_catalog?n={n}", "repositories")
        assert [r for page in pages for r in page] == expected, n
        assert all(len(page) == n for page in pages[:-1])
    first = await api.get("/v2/_catalog", params={"n": 2})
    assert first.json()["repositories"] == expected[:2]
    assert first.headers["link"] == f'</v2/_catalog?n=2&last={expected[1]}>; rel="next"'
    resp = await api.get("/v2/_catalog", params={"last": "a/b", "n": 3})
    assert resp.json()["repositories"] == [r for r in expected if r > "a/b"][:3]


async def test_catalog_forgets_repositories_without_manifests(api: httpx.AsyncClient) -> None:
    keep = await push_image(api, "keep", "v1")
    gone = await push_image(api, "gone", "v1")
    untagged = await push_image(api, "untagged", "v1")
    assert (await api.get("/v2/_catalog")).json()["repositories"] == ["gone", "keep", "untagged"]
    assert (await api.delete(f"/v2/gone/manifests/{gone.digest}")).status_code == 202
    assert (await api.delete("/v2/untagged/manifests/v1")).status_code == 202
    # an untagged manifest is still content of its repository
    assert (await api.get("/v2/_catalog")).json()["repositories"] == ["keep", "untagged"]
    assert (await api.delete(f"/v2/untagged/manifests/{untagged.digest}")).status_code == 202
    resp = await api.get("/v2/_catalog")
    assert resp.json()["repositories"] == ["keep"]
    resp = await api.get("/v2/_catalog", params={"n": 1})
    assert resp.json()["repositories"] == ["keep"] and "link" not in resp.headers
    assert (await api.get(f"/v2/keep/manifests/{keep.digest}")).status_code == 200
