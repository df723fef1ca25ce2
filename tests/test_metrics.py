"""`/metrics`: scraped through the ASGI app after pushes, pulls, refusals and a GC, parsed
with prometheus_client's own parser and checked against what was done; who may scrape; and
one scrape of the live server over TLS."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from api_helpers import make_app, make_client, push_blob, push_image, sha256
from prometheus_client.parser import text_string_to_metric_families
from support import LiveServer
from test_sync_store import stage

from registry_core.access.scopes import parse_scopes
from registry_core.access.tokens import TokenAdmin
from registry_core.config import load_config, save_config
from registry_core.datadir import DataDir
from registry_core.events import GCEvent, GCStarted
from registry_core.gc import GarbageCollector
from registry_core.http.metrics import route_of
from registry_core.http.observability import ObservedApp
from registry_core.identity import CONSOLE
from registry_core.registry import Registry
from registry_core.sync.connection import parse_connection_string, save_connection
from registry_core.usage import usage_report

HANG_GUARD = 60.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def scrape(api: httpx.AsyncClient) -> Samples:
    resp = await api.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return parse(resp.text)


def requests(samples: Samples, route: str, code: int) -> float:
    return samples.get(
        ("edge_registry_http_requests_total",
         frozenset({("route", route), ("code", str(code))})), 0.0)


async def test_a_push_and_a_pull_are_counted(api: httpx.AsyncClient, registry: Registry) -> None:
    pushed = await push_image(api, "team/app", "v1", layers=[b"L" * 3000])
    config_size, layer_size = [len((await api.get(f"/v2/team/app/blobs/{d}")).content)
                               for d in pushed.blobs]
    assert layer_size == 3000
    assert (await api.get("/v2/team/app/manifests/v1")).content == pushed.body
    assert (await api.head("/v2/team/app/manifests/v1")).status_code == 200
    assert (await api.get("/v2/team/app/manifests/nope")).status_code == 404
    assert (await api.get("/v2/team/app/tags/list")).status_code == 200
    assert (await api.get("/v2/")).status_code == 200
    assert (await api.get("/v2/", auth=None)).status_code == 401

    s = await scrape(api)
    assert requests(s, "uploads", 201) == 2  # config and layer, each a monolithic POST
    assert requests(s, "manifests", 201) == 1
    assert requests(s, "manifests", 200) == 2
    assert requests(s, "manifests", 404) == 1
    assert requests(s, "blobs", 200) == 2
    assert requests(s, "tags", 200) == 1
    assert requests(s, "base", 200) == 1 and requests(s, "base", 401) == 1
    for route, count in (("uploads", 2), ("manifests", 4), ("blobs", 2), ("base", 2)):
        histogram = "edge_registry_http_request_duration_seconds"
        assert value(s, f"{histogram}_count", route=route) == count
        assert value(s, f"{histogram}_bucket", route=route, le="+Inf") == count
        assert value(s, f"{histogram}_sum", route=route) > 0
    assert value(s, "edge_registry_http_request_body_bytes_total", route="uploads") == (
        config_size + layer_size)
    assert value(s, "edge_registry_http_request_body_bytes_total", route="manifests") == (
        pushed.size)
    assert value(s, "edge_registry_http_response_body_bytes_total", route="blobs") == (
        config_size + layer_size)
    assert value(s, "edge_registry_http_response_body_bytes_total", route="manifests") >= (
        pushed.size)  # the manifest, then a 404's error body

    # Storage as the usage report (the Storage screen) counts it.
    report = usage_report(registry)
    assert report.used_bytes == config_size + layer_size + pushed.size
    assert value(s, "edge_registry_storage_used_bytes") == report.used_bytes
    assert value(s, "edge_registry_storage_capacity_bytes") == report.capacity_bytes
    assert value(s, "edge_registry_storage_free_bytes") > 0
    assert value(s, "edge_registry_manifests") == 1 and value(s, "edge_registry_tags") == 1
    assert value(s, "edge_registry_storage_reclaimable_bytes") == 0
    assert value(s, "edge_registry_upload_sessions") == 0
    assert value(s, "edge_registry_upload_requests_in_progress") == 0
    assert value(s, "edge_registry_sync_state", state="NotConfigured") == 1
    assert value(s, "edge_registry_sync_state", state="Online") == 0

    # Scraping is not counted among the requests.
    again = await scrape(api)
    assert requests(again, "other", 200) == 0 and requests(again, "base", 200) == 1


async def test_reclaimable_bytes_and_gc_runs(api: httpx.AsyncClient, registry: Registry) -> None:
    """Deleted content counts as reclaimable (no grace period configured) until a GC run
    frees it; the run is counted with its duration."""
    registry.config.gc.grace_period_seconds = 0
    doomed = await push_image(api, "team/old", "v1", layers=[b"O" * 5000])
    await push_image(api, "team/new", "v1", layers=[b"N" * 700])
    assert (await api.delete(f"/v2/team/old/manifests/{doomed.digest}")).status_code == 202
    s = await scrape(api)
    freed = doomed.doc["config"]["size"] + 5000 + doomed.size  # config, layer, manifest
    assert usage_report(registry).reclaimable_bytes == freed
    assert value(s, "edge_registry_storage_reclaimable_bytes") == freed
    assert value(s, "edge_registry_gc_runs_total", status="succeeded") == 0
    assert ("edge_registry_gc_last_duration_seconds", frozenset()) not in s

    assert value(s, "edge_registry_gc_running") == 0

    started, release = threading.Event(), threading.Event()

    def hold(event: GCEvent) -> None:  # the run waits on its first event, its row written
        if isinstance(event, GCStarted):
            started.set()
            assert release.wait(HANG_GUARD)

    gc = GarbageCollector(registry)
    try:
        running = asyncio.ensure_future(asyncio.to_thread(gc.run, grace_period=0,
                                                          on_event=hold))
        assert await asyncio.to_thread(started.wait, HANG_GUARD)
        s = await scrape(api)
        release.set()
        run = await running
    finally:
        release.set()
        gc.close()
    assert value(s, "edge_registry_gc_running") == 1
    assert value(s, "edge_registry_gc_runs_total", status="succeeded") == 0
    assert run.bytes_freed == freed
    s = await scrape(api)
    assert value(s, "edge_registry_gc_running") == 0
    assert value(s, "edge_registry_gc_runs_total", status="succeeded") == 1
    assert run.finished_at is not None
    assert value(s, "edge_registry_gc_last_duration_seconds") == (
        run.finished_at - run.started_at)
    assert value(s, "edge_registry_gc_last_finished_timestamp_seconds") == run.finished_at
    assert value(s, "edge_registry_storage_used_bytes") == usage_report(registry).used_bytes


async def test_the_reclaimable_bytes_follow_a_delete(
    registry: Registry, datadir: DataDir, credentials: tuple[str, str]
) -> None:
    """The usage report behind them is made again in the background once stale (here at
    once: no minimum age); scrapes meanwhile serve the one before."""
    registry.config.gc.grace_period_seconds = 0
    app = ObservedApp(make_app(registry, datadir), report_min_age=0)
    async with make_client(app, credentials) as api:  # type: ignore[arg-type]
        doomed = await push_image(api, "team/old", "v1", layers=[b"O" * 2000])
        assert value(await scrape(api), "edge_registry_storage_reclaimable_bytes") == 0
        assert (await api.delete(f"/v2/team/old/manifests/{doomed.digest}")).status_code == 202
        freed = doomed.doc["config"]["size"] + 2000 + doomed.size
        deadline = time.monotonic() + HANG_GUARD
        while value(s := await scrape(api), "edge_registry_storage_reclaimable_bytes") != freed:
            assert time.monotonic() < deadline, s
            await asyncio.sleep(0.02)
    app.app.authenticator.close()


async def test_the_sync_state_once_configured(api: httpx.AsyncClient, datadir: DataDir
                                              ) -> None:
    """A connection string stored and no run yet: Offline, the one state set."""
    save_connection(datadir, parse_connection_string(
        "ConnectedRegistryName=edgesite1;SyncTokenName=sync;SyncTokenPassword=secret-pass;"
        "ParentGatewayEndpoint=127.0.0.1:9;ParentEndpointProtocol=https"))
    s = await scrape(api)
    states = {dict(labels)["state"]: v for (name, labels), v in s.items()
              if name == "edge_registry_sync_state"}
    assert states == {"Online": 0, "Offline": 1, "Syncing": 0, "Unhealthy": 0,
                      "NotConfigured": 0}


async def test_refused_pushes_by_reason(
    api: httpx.AsyncClient, registry: Registry, datadir: DataDir
) -> None:
    config = load_config(datadir.config)
    config.sync.enabled, config.sync.mode = True, "ReadOnly"
    config.sync.repositories = ["mirror/*"]
    save_config(config, datadir.config)
    assert (await api.post("/v2/mirror/app/blobs/uploads/")).status_code == 403
    assert (await api.post("/v2/mirror/app/blobs/uploads/")).status_code == 403
    assert (await api.put("/v2/mirror/app/manifests/v1", content=b"{}")).status_code == 403
    assert (await api.get("/v2/mirror/app/manifests/v1")).status_code == 404  # reads go on

    registry.config.storage.quota_bytes = 1  # the low-space guard refuses any upload
    refused = await api.post("/v2/local/app/blobs/uploads/",
                             params={"digest": sha256(b"x" * 10)}, content=b"x" * 10)
    assert refused.status_code == 403, refused.text
    registry.config.storage.quota_bytes = 0
    await push_blob(api, "local/app", b"fits")

    s = await scrape(api)
    assert value(s, "edge_registry_refused_pushes_total", reason="read_only") == 3
    assert value(s, "edge_registry_refused_pushes_total", reason="low_space") == 1
    assert value(s, "edge_registry_refused_pushes_total", reason="access") == 0
    assert requests(s, "uploads", 403) == 3 and requests(s, "manifests", 403) == 1


async def test_a_delete_refused_by_a_pin_is_counted(
    api: httpx.AsyncClient, registry: Registry
) -> None:
    """A delete or untag a stage's pin refuses (403 DENIED) counts as refused, reason
    pinned; an allowed delete and a delete of nothing do not."""
    pinned = await push_image(api, "team/web", "v1", layers=[b"P" * 300])
    free = await push_image(api, "team/web", "v2", layers=[b"F" * 300])
    stage(registry.store, "window-7", "team/web", "v1", pinned.digest)
    for reference in (pinned.digest, "v1"):
        refused = await api.delete(f"/v2/team/web/manifests/{reference}")
        assert refused.status_code == 403, refused.text
        assert refused.json()["errors"][0]["code"] == "DENIED"
    s = await scrape(api)
    assert value(s, "edge_registry_refused_pushes_total", reason="pinned") == 2
    assert value(s, "edge_registry_refused_pushes_total", reason="access") == 0

    assert (await api.delete(f"/v2/team/web/manifests/{free.digest}")).status_code == 202
    assert (await api.delete(f"/v2/team/web/manifests/{free.digest}")).status_code == 404
    s = await scrape(api)
    assert value(s, "edge_registry_refused_pushes_total", reason="pinned") == 2
    assert requests(s, "manifests", 403) == 2 and requests(s, "manifests", 202) == 1
    assert value(s, "edge_registry_upload_requests_in_progress") == 0


async def test_who_may_scrape(
    api: httpx.AsyncClient, registry: Registry, credentials: tuple[str, str]
) -> None:
    """The admin, or a token granted metrics/read (on `*`); a token without it is DENIED,
    wrong or missing credentials are 401."""
    anonymous = await api.get("/metrics", auth=None)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic ")
    assert anonymous.json()["errors"][0]["code"] == "UNAUTHORIZED"
    wrong = await api.get("/metrics", auth=(credentials[0], "not the password"))
    assert wrong.status_code == 401
    head = await api.head("/metrics")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) > 0
    assert (await api.post("/metrics")).status_code == 405

    reader = token(registry, "reader", "*:content/read,metadata/read")
    denied = await api.get("/metrics", auth=reader)
    assert denied.status_code == 403
    assert denied.json()["errors"][0]["code"] == "DENIED"
    assert (await api.head("/metrics", auth=reader)).status_code == 403
    assert (await api.post("/v2/app/web/blobs/uploads/", auth=reader)).status_code == 403
    scraper = token(registry, "scraper", "*:metrics/read")
    s = parse((await api.get("/metrics", auth=scraper)).text)
    assert value(s, "edge_registry_refused_pushes_total", reason="access") == 1
    assert requests(s, "uploads", 403) == 1


def token(registry: Registry, name: str, scope: str) -> tuple[str, str]:
    issued = TokenAdmin(registry).create(name, parse_scopes([scope]), who=CONSOLE)
    return name, issued.password


def test_the_live_server_is_scraped_over_tls(live_server: LiveServer, registry: Registry
                                             ) -> None:
    """Granian sends a whole blob itself (pathsend): its bytes still count, from the answer's
    Content-Length."""
    blob = registry.put_blob("live/app", b"B" * 4321, who=CONSOLE)
    with live_server.client() as client:
        assert client.get(f"/v2/live/app/blobs/{blob.digest}").content == b"B" * 4321
        health = client.get("/healthz", auth=None)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        resp = client.get("/metrics")
    assert resp.status_code == 200, resp.text
    s = parse(resp.text)
    assert requests(s, "blobs", 200) == 1
    assert value(s, "edge_registry_http_response_body_bytes_total", route="blobs") == 4321
    assert value(s, "edge_registry_storage_used_bytes") == 4321


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/v2/", "base"), ("/v2", "base"), ("/v2/_catalog", "catalog"),
        ("/v2/a/b/tags/list", "tags"), ("/v2/a/tags", "other"),
        ("/v2/a/manifests/v1", "manifests"), ("/v2/a/manifests/sha256:ab", "manifests"),
        ("/v2/a/blobs/sha256:ab", "blobs"), ("/v2/a/blobs/uploads", "uploads"),
        ("/v2/a/blobs/uploads/", "uploads"), ("/v2/a/blobs/uploads/0f-id", "uploads"),
        ("/v2/a/uploads/0f-id", "other"), ("/v2/a/referrers/sha256:ab", "referrers"),
        # Repository names may hold a route's word: the last components decide, as in the app.
        ("/v2/manifests/blobs/sha256:ab", "blobs"), ("/v2/blobs/x/manifests/v1", "manifests"),
        ("/v2/tags/list/manifests/v1", "manifests"), ("/v2/a/blobs/uploads/x/y", "other"),
        ("/metrics/x", "other"), ("/", "other"), ("/v2/a", "other"),
    ],
)
def test_route_labels(path: str, route: str) -> None:
    assert route_of(path) == route
    assert route_of(path) == route  # remembered
