"""The ASGI app the server runs: RegistryApp, with /healthz and /metrics beside /v2/ and every
other request counted on its way through (route, status, duration, bytes in and out)."""

from __future__ import annotations

import time

from starlette.types import Message, Receive, Scope, Send

from registry_core.health import REPORT_MIN_AGE_SECONDS
from registry_core.http.app import RegistryApp
from registry_core.http.health import HealthEndpoint
from registry_core.http.metrics import MetricsEndpoint, RequestCounts, refusal_reason, route_of
from registry_core.registry import Registry

HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_REFUSABLE_METHODS = _BODY_METHODS | {"DELETE"}
"""Requests whose 403 is counted by reason (refused pushes and deletes)."""


class ObservedApp:
    """Wraps a RegistryApp; /healthz and /metrics are not counted among the requests."""

    def __init__(self, app: RegistryApp, report_min_age: float = REPORT_MIN_AGE_SECONDS) -> None:
        """`report_min_age`: how often at most the usage report behind the reclaimable bytes
        is made again (registry_core/health.py)."""
        self.app = app
        self.counts = RequestCounts()
        self.health = HealthEndpoint(app.registry)
        self.metrics = MetricsEndpoint(app, self.counts, report_min_age)

    @property
    def registry(self) -> Registry:
        return self.app.registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == HEALTH_PATH:
            await self.health(scope, receive, send)
        elif path == METRICS_PATH:
            await self.metrics(scope, receive, send)
        else:
            await self._counted(scope, receive, send, route_of(path))

    async def _counted(self, scope: Scope, receive: Receive, send: Send, route: str) -> None:
        if scope["method"] in _REFUSABLE_METHODS:
            await self._counted_write(scope, receive, send, route)
            return
        start: Message | None = None
        sent = 0

        async def counted_send(message: Message) -> None:
            nonlocal start, sent
            kind = message["type"]
            if kind == "http.response.body":
                sent += len(message.get("body", b""))
            elif kind == "http.response.start":
                start = message
            elif kind == "http.response.pathsend":
                sent += _content_length(start)
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, counted_send)
        finally:
            self.counts.record(route, 500 if start is None else start["status"],
                               time.perf_counter() - started, 0, sent)

    async def _counted_write(self, scope: Scope, receive: Receive, send: Send, route: str
                             ) -> None:
        """A write or delete: its body's bytes counted too, and a 403 kept to say why."""
        status = 0
        sent = 0
        received = 0
        refused = b""

        async def counted_send(message: Message) -> None:
            nonlocal status, sent, refused
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                sent += len(body)
                if status == 403:
                    refused += body
            await send(message)

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        uploading = route == "uploads" and scope["method"] in _BODY_METHODS
        self.counts.uploads_active += uploading
        started = time.perf_counter()
        try:
            await self.app(scope, counted_receive, counted_send)
        finally:
            self.counts.uploads_active -= uploading
            self.counts.record(route, status or 500, time.perf_counter() - started,
                               received, sent)
            if status == 403:
                self.counts.refuse(refusal_reason(refused))


def _content_length(start: Message | None) -> int:
    for key, value in () if start is None else start.get("headers", ()):
        if key.lower() == b"content-length":
            return int(value)
    return 0
