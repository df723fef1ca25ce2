"""`GET /metrics`: the registry's figures in the Prometheus text format.

Requests are counted on the server's loop in plain dicts and lists (`RequestCounts`, a dict
update and a bisect per request: about a µs) and turned into metric families only when
scraped, by a `prometheus_client` collector on a registry of this app's own (never the
global one: several apps in one process stay apart). Storage, GC and sync figures are read
per scrape in a worker thread (10 ms at 10,000 manifests and 50,000 blobs); the usage report's
reclaimable bytes (0.55 s there) are cached (registry_core/health.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from bisect import bisect_left
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from registry_core.errors import EdgeError, RegistryError, Unauthorized
from registry_core.health import REPORT_MIN_AGE_SECONDS, ReclaimableCache, Vitals, read_vitals
from registry_core.http.app import RegistryApp, error_response
from registry_core.http.common import in_thread
from registry_core.identity import METRICS_READ, authorize
from registry_core.sync.status import STATES

log = logging.getLogger("edge_registry.metrics")

ROUTES = ("base", "catalog", "tags", "manifests", "blobs", "uploads", "referrers", "other")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0, 300.0)
"""Request durations, seconds: a cached manifest GET takes well under a millisecond, a big
layer's upload minutes."""
REFUSALS = ("access", "read_only", "low_space", "pinned")
PREFIX = "edge_registry"
T = TypeVar("T")


_BY_PARENT = {"manifests": "manifests", "blobs": "blobs", "referrers": "referrers"}


_SEEN: dict[str, str] = {}
_SEEN_MAX = 4096


def route_of(path: str) -> str:
    """The route label of a request path: one of ROUTES, never the path itself (repository
    names are unbounded). Paths asked again (pulls of the same image) are remembered: a dict
    lookup is a fifth of the work below."""
    route = _SEEN.get(path)
    if route is None:
        if len(_SEEN) >= _SEEN_MAX:
            _SEEN.clear()
        route = _SEEN[path] = _route_of(path)
    return route


def _route_of(path: str) -> str:
    """Like the app's routing, the last components decide."""
    if path[:4] != "/v2/":
        return "base" if path == "/v2" else "other"
    end = path.rfind("/")
    if end == 3:
        return "base" if len(path) == 4 else "catalog" if path == "/v2/_catalog" else "other"
    start = path.rfind("/", 0, end)
    parent = path[start + 1:end]
    route = _BY_PARENT.get(parent)
    if route is not None:
        return "uploads" if route == "blobs" and path.endswith("/uploads") else route
    if parent == "uploads" and path.endswith("/blobs", 0, start):
        return "uploads"
    if parent == "tags" and path.endswith("/list"):
        return "tags"
    return "other"


def refusal_reason(body: bytes) -> str:
    """Why a write or delete was refused (403 DENIED), from the error's detail."""
    try:
        detail = json.loads(body)["errors"][0].get("detail") or {}
    except (ValueError, LookupError, TypeError, AttributeError):
        return "access"
    if not isinstance(detail, dict):
        return "access"
    if detail.get("mode") == "ReadOnly":
        return "read_only"
    if "free_bytes" in detail or "reason" in detail:  # InsufficientSpace, StorageFull
        return "low_space"
    if "pinned_by" in detail:  # errors.Pinned: a stage pins what a delete would remove
        return "pinned"
    return "access"


class RouteCounts:
    """One route's counters."""

    __slots__ = ("buckets", "bytes_in", "bytes_out", "codes", "seconds")

    def __init__(self) -> None:
        self.codes: dict[int, int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.seconds = 0.0
        self.bytes_in = 0
        self.bytes_out = 0


class RequestCounts:
    """Counters of the requests served; updated and read on the server's loop only."""

    def __init__(self) -> None:
        self.routes = {route: RouteCounts() for route in ROUTES}
        self.refused: dict[str, int] = dict.fromkeys(REFUSALS, 0)
        self.uploads_active = 0

    def record(self, route: str, status: int, seconds: float, received: int, sent: int) -> None:
        r = self.routes[route]
        codes = r.codes
        codes[status] = codes.get(status, 0) + 1
        r.buckets[bisect_left(BUCKETS, seconds)] += 1
        r.seconds += seconds
        r.bytes_in += received
        r.bytes_out += sent

    def refuse(self, reason: str) -> None:
        self.refused[reason] += 1


class RegistryCollector(Collector):
    """Turns the counts and the last Vitals into metric families when scraped."""

    def __init__(self, counts: RequestCounts) -> None:
        self.counts = counts
        self.vitals: Vitals | None = None

    def collect(self) -> Iterator[Metric]:
        yield from self._requests()
        yield from self._uploads()
        if self.vitals is not None:
            yield from _storage(self.vitals)
            yield from _gc(self.vitals)
            yield from _sync(self.vitals)

    def _requests(self) -> Iterator[Metric]:
        routes = self.counts.routes
        requests = CounterMetricFamily(
            f"{PREFIX}_http_requests", "HTTP requests served, by route and status code",
            labels=["route", "code"])
        duration = HistogramMetricFamily(
            f"{PREFIX}_http_request_duration_seconds",
            "Time from the request's arrival to the end of its answer, by route",
            labels=["route"])
        bytes_in = CounterMetricFamily(f"{PREFIX}_http_request_body_bytes",
                                       "Request body bytes received", labels=["route"])
        bytes_out = CounterMetricFamily(f"{PREFIX}_http_response_body_bytes",
                                        "Response body bytes sent", labels=["route"])
        for route, r in routes.items():
            for status, n in sorted(r.codes.items()):
                requests.add_metric([route, str(status)], n)
            duration.add_metric([route], _cumulative(r.buckets), r.seconds)
            bytes_in.add_metric([route], r.bytes_in)
            bytes_out.add_metric([route], r.bytes_out)
        yield from (requests, duration, bytes_in, bytes_out)
        refused = CounterMetricFamily(
            f"{PREFIX}_refused_pushes", "Writes (PUT, POST, PATCH) and deletes answered 403 "
            "DENIED, by reason: access (credentials' scope), read_only (sync mode), low_space, "
            "pinned (a stage pins what the delete or untag would remove)",
            labels=["reason"])
        for reason, n in self.counts.refused.items():
            refused.add_metric([reason], n)
        yield refused

    def _uploads(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(f"{PREFIX}_upload_requests_in_progress",
                                "Upload requests (POST, PATCH, PUT) being served now",
                                value=self.counts.uploads_active)


def _cumulative(counts: list[int]) -> list[tuple[str, float]]:
    out, total = [], 0
    for bound, n in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
        total += n
        out.append((bound, float(total)))
    return out


def _gauge(name: str, doc: str, value: float) -> Metric:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def _storage(v: Vitals) -> Iterator[Metric]:
    yield _gauge("storage_capacity_bytes", "The volume's size, or the quota if smaller",
                 v.capacity_bytes)
    yield _gauge("storage_used_bytes", "Stored content (each blob once)", v.used_bytes)
    yield _gauge("storage_free_bytes", "Free bytes of the capacity", v.free_bytes)
    yield _gauge("storage_reserve_bytes", "Free bytes the low-space guard keeps", v.reserve_bytes)
    if v.reclaimable_bytes is not None and v.reclaimable_at is not None:
        yield _gauge("storage_reclaimable_bytes",
                     "What a GC with no grace period would free, as of the last usage report",
                     v.reclaimable_bytes)
        yield _gauge("storage_reclaimable_timestamp_seconds",
                     "When the reclaimable bytes were computed", v.reclaimable_at)
    yield _gauge("blobs", "Stored blobs", v.blobs)
    yield _gauge("manifests", "Stored manifests", v.manifests)
    yield _gauge("tags", "Tags", v.tags)
    yield _gauge("upload_sessions", "Upload sessions open (pushes in progress)",
                 v.upload_sessions)
    yield _gauge("upload_session_bytes", "Bytes acknowledged to open upload sessions",
                 v.upload_session_bytes)


def _gc(v: Vitals) -> Iterator[Metric]:
    runs = CounterMetricFamily(f"{PREFIX}_gc_runs", "Garbage collection runs ended, by status",
                               labels=["status"])
    for status in sorted({"succeeded", "failed", "cancelled", *v.gc_runs} - {"running"}):
        runs.add_metric([status], v.gc_runs.get(status, 0))
    yield runs
    yield _gauge("gc_running", "1 while a GC run is under way (in any process)",
                 v.gc_runs.get("running", 0))
    if v.gc_last_duration_seconds is not None and v.gc_last_finished_at is not None:
        yield _gauge("gc_last_duration_seconds", "Duration of the last finished GC run",
                     v.gc_last_duration_seconds)
        yield _gauge("gc_last_finished_timestamp_seconds", "When the last GC run finished",
                     v.gc_last_finished_at)


def _sync(v: Vitals) -> Iterator[Metric]:
    state = GaugeMetricFamily(f"{PREFIX}_sync_state",
                              "The connected registry's state (1 for the current one)",
                              labels=["state"])
    for name in STATES:
        state.add_metric([name], 1 if name == v.sync_state else 0)
    yield state


class MetricsEndpoint:
    """Answers /metrics for the admin, or a token granted metrics/read."""

    def __init__(self, app: RegistryApp, counts: RequestCounts,
                 report_min_age: float = REPORT_MIN_AGE_SECONDS) -> None:
        self.app = app
        self.collector = RegistryCollector(counts)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.reclaimable = ReclaimableCache(app.registry, report_min_age)
        self._usage_thread = ThreadPoolExecutor(1, thread_name_prefix="metrics-usage")
        """Where the usage report is made and its staleness asked (ReclaimableCache)."""
        self._refreshing: asyncio.Future[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        head = scope["method"] == "HEAD"
        try:
            await self._authorize(scope)
            response = await self._respond(head, scope["method"])
        except RegistryError as exc:
            response = error_response(exc, head)
        await response(scope, receive, send)

    async def _authorize(self, scope: Scope) -> None:
        header = next((v.decode("latin-1") for k, v in scope["headers"]
                       if k == b"authorization"), None)
        identity = await self.app.authenticator.authenticate(header)
        if identity is None:
            raise Unauthorized()
        authorize(identity, None, METRICS_READ)

    async def _respond(self, head: bool, method: str) -> Response:
        if method not in ("GET", "HEAD"):
            return Response(status_code=405, headers={"Allow": "GET, HEAD"})
        await self._read_vitals()
        body = generate_latest(self.registry)
        if head:
            return Response(headers={"Content-Type": CONTENT_TYPE_LATEST,
                                     "Content-Length": str(len(body))})
        return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _read_vitals(self) -> None:
        cache = self.reclaimable
        try:
            if cache.report is None and self._refreshing is None:
                await self._on_usage_thread(cache.refresh)  # the first scrape waits for it
            elif self._refreshing is None and await self._on_usage_thread(cache.stale):
                self._refreshing = asyncio.ensure_future(self._refresh())
            self.collector.vitals = await in_thread(read_vitals, self.app.registry,
                                                    cache.report)
        except EdgeError as exc:  # the request counts are still worth serving
            log.warning("metrics without the storage figures: %s", exc)
            self.collector.vitals = None

    async def _on_usage_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._usage_thread, fn)

    async def _refresh(self) -> None:
        """Made while later scrapes serve the report before it."""
        try:
            await self._on_usage_thread(self.reclaimable.refresh)
        except EdgeError as exc:
            log.warning("could not refresh the usage report: %s", exc)
        finally:
            self._refreshing = None
