"""The OCI Distribution API v2 as a plain ASGI app over a `Registry`.

Routing is by hand (one regex per route on the path after /v2/) because repository names
contain slashes. Every error leaves as the spec's JSON body with its code; anything
unexpected is logged with its traceback and answered 500 without one.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from registry_core.access.credentials import parse_basic
from registry_core.errors import (
    Denied,
    PaginationNumberInvalid,
    RegistryError,
    SizeInvalid,
    Unauthorized,
    Unsupported,
    UriTooLong,
)
from registry_core.events import AccessDenied, LoginFailed
from registry_core.http.blob_routes import BlobRoutes
from registry_core.http.common import Stats, in_thread, who
from registry_core.http.framing import MAX_PATH_CHARS, check_head, path_param, raw_path
from registry_core.http.limits import UploadSlots, body_idle_receive
from registry_core.http.manifest_cache import ManifestCache
from registry_core.http.manifest_routes import ManifestRoutes
from registry_core.http.upload_routes import UploadRoutes
from registry_core.identity import (
    CONTENT_DELETE,
    CONTENT_READ,
    CONTENT_WRITE,
    METADATA_READ,
    Action,
    Authenticates,
    Identity,
    authorize,
    may,
)
from registry_core.registry import Page, Registry
from registry_core.sync.policy import WritePolicy

log = logging.getLogger("edge_registry.http")
access_log = logging.getLogger("edge_registry.access")

API_HEADER = (b"docker-distribution-api-version", b"registry/2.0")
REALM = "Edge Registry"

CATALOG_BATCH = 1000
"""Repositories read at a time when the catalog is filtered for a token."""

Handler = Callable[..., Awaitable[Response]]
Route = tuple[Handler, Action | None, str]
"""The handler, the scope action it needs (None: any valid credentials), the operation's
name in the audit log."""


class RegistryApp:
    """ASGI callable serving /v2/ for one Registry, behind Basic auth.

    Each route names, per method, its handler and the action it performs; `authorize` checks
    that action on the request's repository right after routing. /v2/ itself and the catalog
    name none: any valid credentials get an answer, and the catalog lists only the
    repositories the identity may read the metadata of. The request's Identity, with the
    client's address, is in its scope (`scope["identity"]`) for the handlers. Wrong
    credentials (LoginFailed) and refusals (AccessDenied) go on the registry's event bus.
    """

    def __init__(
        self,
        registry: Registry,
        authenticator: Authenticates,
        access_logging: bool = False,
    ) -> None:
        self.registry = registry
        self.authenticator = authenticator
        authenticator.attach_store(registry.store)  # tokens: checked against this store
        self.access_logging = access_logging
        self.stats = Stats()
        self.manifests = ManifestCache(registry)
        self.upload_slots = UploadSlots(registry.config.limits.max_concurrent_uploads)
        self.body_idle_timeout = registry.config.limits.body_idle_timeout_seconds
        self.write_policy = WritePolicy(registry.datadir, registry.config)
        manifests = ManifestRoutes(registry, self.manifests)
        blobs = BlobRoutes(registry)
        uploads = UploadRoutes(registry, self.stats, self.upload_slots)
        # GET also serves HEAD. Cancelling an upload is part of writing, not a delete. A mount
        # also reads its source repository: the tokens issue checks that in start_upload.
        self.routes: list[tuple[re.Pattern[str], dict[str, Route]]] = [
            (re.compile(r""), {"GET": (self.base, None, "base")}),
            (re.compile(r"_catalog"), {"GET": (self.catalog, None, "catalog")}),
            (
                re.compile(r"(?P<name>.+)/tags/list"),
                {"GET": (self.tags, METADATA_READ, "tags.list")},
            ),
            (
                re.compile(r"(?P<name>.+)/manifests/(?P<reference>[^/]+)"),
                {
                    "GET": (manifests.get_manifest, CONTENT_READ, "manifest.pull"),
                    "PUT": (manifests.put_manifest, CONTENT_WRITE, "manifest.push"),
                    "DELETE": (manifests.delete_manifest, CONTENT_DELETE, "manifest.delete"),
                },
            ),
            (
                re.compile(r"(?P<name>.+)/blobs/uploads/?"),
                {"POST": (uploads.start_upload, CONTENT_WRITE, "blob.upload")},
            ),
            (
                re.compile(r"(?P<name>.+)/blobs/uploads/(?P<upload_id>[^/]+)"),
                {
                    "GET": (uploads.upload_status, CONTENT_WRITE, "blob.upload"),
                    "PATCH": (uploads.patch_upload, CONTENT_WRITE, "blob.upload"),
                    "PUT": (uploads.finish_upload, CONTENT_WRITE, "blob.upload"),
                    "DELETE": (uploads.cancel_upload, CONTENT_WRITE, "blob.upload"),
                },
            ),
            (
                re.compile(r"(?P<name>.+)/blobs/(?P<digest>[^/]+)"),
                {
                    "GET": (blobs.get_blob, CONTENT_READ, "blob.pull"),
                    "DELETE": (blobs.delete_blob, CONTENT_DELETE, "blob.delete"),
                },
            ),
            (
                re.compile(r"(?P<name>.+)/referrers/(?P<digest>[^/]+)"),
                {"GET": (manifests.referrers, METADATA_READ, "referrers.list")},
            ),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        receive = body_idle_receive(scope, receive, self.body_idle_timeout)
        request = Request(scope, receive)
        response = await self.respond(request)
        response.raw_headers.append(API_HEADER)  # no response sets it: append, no lookup
        await response(scope, receive, send)
        self.stats.requests += 1
        if response.status_code >= 400:
            self.stats.errors += 1
        if self.access_logging:
            access_log.info(
                '%s "%s %s" %d %.1fms',
                scope.get("client", ("-",))[0],
                request.method,
                scope.get("raw_path", b"").decode("latin-1") or request.url.path,
                response.status_code,
                (time.perf_counter() - started) * 1000,
            )

    async def respond(self, request: Request) -> Response:
        head = request.method == "HEAD"
        try:
            check_head(request.scope)
            authorization = request.headers.get("authorization")
            identity = await self.authenticator.authenticate(authorization)
            if identity is None:
                self._login_failed(request, authorization)
                raise Unauthorized()
            client = request.scope.get("client")
            if client:
                identity = identity.at(client[0])
            request.scope["identity"] = identity
            return await self.dispatch(request, identity)
        except RegistryError as exc:
            return error_response(exc, head)
        except ClientDisconnect:  # also what the server reports for malformed chunked framing
            cut = SizeInvalid("the request body was cut off or its chunked framing is malformed")
            return error_response(cut, head)
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.url.path)
            return error_response(RegistryError("internal error; see the server log"), head)

    async def dispatch(self, request: Request, identity: Identity) -> Response:
        head = request.method == "HEAD"
        path = raw_path(request.scope)
        if len(path) > MAX_PATH_CHARS:
            raise UriTooLong(detail={"length": len(path), "limit": MAX_PATH_CHARS})
        if path == "/v2":
            path = "/v2/"
        if not path.startswith("/v2/"):
            return error_response(RegistryError("not found"), head, 404)
        method = "GET" if head else request.method
        for pattern, handlers in self.routes:
            match = pattern.fullmatch(path, 4)
            if match is None:
                continue
            route = handlers.get(method)
            if route is None:
                return _method_not_allowed(request, handlers)
            handler, action, operation = route
            params = {key: path_param(key, value) for key, value in match.groupdict().items()}
            if action is not None:
                self._authorize(identity, params, action, operation)
            return await handler(request, **params)
        return error_response(RegistryError("not found"), head, 404)

    def _authorize(self, identity: Identity, params: dict[str, str], action: Action,
                   operation: str) -> None:
        name = params.get("name")
        try:
            authorize(identity, name, action)
            self._refuse_read_only(identity, name, action)
        except Denied as exc:
            self.registry.events.emit(AccessDenied(
                identity=identity.name, address=identity.address, action=action,
                repository=name, reference=params.get("reference") or params.get("digest"),
                reason=exc.message, operation=operation,
            ))
            raise

    def _login_failed(self, request: Request, authorization: str | None) -> None:
        if not authorization:  # a client's first try, to learn the challenge: no event
            return
        parsed = parse_basic(authorization)
        client = request.scope.get("client")
        self.registry.events.emit(LoginFailed(
            principal=parsed[0] if parsed else "", address=client[0] if client else None,
            reason=self.authenticator.refusal(authorization) if parsed
            else "malformed Authorization header",
        ))

    def _refuse_read_only(self, identity: Identity, name: str | None, action: Action) -> None:
        if action != CONTENT_WRITE or name is None or identity.kind == "system":
            return
        reason = self.write_policy.refusal(name)
        if reason is not None:
            raise Denied(reason, detail={"repository": name, "mode": "ReadOnly"})

    # ---- base, catalog, tags -------------------------------------------------------------

    async def base(self, request: Request) -> Response:
        if request.method == "HEAD":
            return Response(headers={"Content-Type": "application/json", "Content-Length": "2"})
        return JSONResponse({})

    async def catalog(self, request: Request) -> Response:
        n, last = _pagination(request)
        identity = who(request)
        if identity.kind == "token":
            page = await in_thread(readable_catalog, self.registry, identity, n, last)
        else:
            page = self.registry.catalog(n, last)
        return _paged({"repositories": page.items}, page, "/v2/_catalog", n)

    async def tags(self, request: Request, name: str) -> Response:
        n, last = _pagination(request)
        page = self.registry.tags(name, n, last)
        return _paged({"name": name, "tags": page.items}, page, f"/v2/{name}/tags/list", n)


def readable_catalog(
    registry: Registry, identity: Identity, n: int | None, last: str | None
) -> Page:
    """The catalog page of the repositories `identity` may read the metadata of."""
    items: list[str] = []
    cursor = last
    while n is None or len(items) <= n:
        page = registry.catalog(CATALOG_BATCH, cursor)
        items += [name for name in page.items if may(identity, name, METADATA_READ)]
        if not page.more:
            break
        cursor = page.items[-1]
    if n is not None and len(items) > n:
        return Page(items[:n], True)
    return Page(items, False)


def error_response(exc: RegistryError, head: bool, status: int | None = None) -> Response:
    status = status or exc.status
    headers = dict(exc.headers)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = f'Basic realm="{REALM}"'
    if status == 404 and exc.code == "UNKNOWN":
        body: dict[str, Any] = {"errors": [{"code": "NOT_FOUND", "message": "not found"}]}
    else:
        body = exc.to_json()
    if head:
        return Response(status_code=status, headers=headers)
    return JSONResponse(body, status_code=status, headers=headers)


def _method_not_allowed(request: Request, handlers: dict[str, Route]) -> Response:
    allowed = sorted({*handlers, "HEAD"} if "GET" in handlers else handlers)
    exc = Unsupported(f"method {request.method} is not allowed here", detail={"allowed": allowed})
    response = error_response(exc, request.method == "HEAD", status=405)
    response.headers["Allow"] = ", ".join(allowed)
    return response


def _pagination(request: Request) -> tuple[int | None, str | None]:
    n_text = request.query_params.get("n")
    last = request.query_params.get("last") or None
    if n_text is None or n_text == "":
        return None, last
    if not (n_text.isascii() and n_text.isdigit()):
        raise PaginationNumberInvalid(f"n must be a non-negative integer, not {n_text!r}")
    return int(n_text), last


def _paged(body: dict[str, Any], page: Page, path: str, n: int | None) -> Response:
    headers = {}
    if page.more and page.items and n is not None:
        headers["Link"] = f'<{path}?n={n}&last={quote(page.items[-1])}>; rel="next"'
    return JSONResponse(body, headers=headers)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
