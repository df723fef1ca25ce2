"""The OCI Distribution API v2 as a plain ASGI app over a `Registry`.

Routing is by hand (one regex per route on the path after /v2/) because repository names
contain slashes. Every error leaves as the spec's JSON body with its code; anything
unexpected is logged with its traceback and answered 500 without one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from registry_core.errors import (
    BlobUploadInvalid,
    HeadersTooLarge,
    ManifestInvalid,
    ManifestTooLarge,
    NameInvalid,
    PaginationNumberInvalid,
    RangeInvalid,
    RangeNotSatisfiable,
    RegistryError,
    SizeInvalid,
    Unauthorized,
    Unsupported,
    UriTooLong,
)
from registry_core.http.blob_response import BlobResponse
from registry_core.http.limits import UploadSlots, body_idle_receive, upload_slot
from registry_core.http.manifest_cache import ManifestCache
from registry_core.http.ranges import Unsatisfiable, parse_range
from registry_core.http.streaming import read_limited, receive_into
from registry_core.identity import (
    CONTENT_DELETE,
    CONTENT_READ,
    CONTENT_WRITE,
    METADATA_READ,
    Action,
    Authenticates,
    Identity,
    authorize,
)
from registry_core.manifests import MAX_MANIFEST_BYTES, OCI_INDEX
from registry_core.reference import Digest, parse_digest, validate_name, validate_upload_id
from registry_core.registry import Page, Registry

log = logging.getLogger("edge_registry.http")
access_log = logging.getLogger("edge_registry.access")

API_HEADER = (b"docker-distribution-api-version", b"registry/2.0")
REALM = "Edge Registry"
SMALL_BODY_BYTES = 4 << 20
MAX_PATH_CHARS = 8192
MAX_HEADER_BYTES = 64 << 10
# RFC 9110 section 7.2: uri-host [":" port]; reg-name characters, or an IPv6 literal.
_HOST = re.compile(rb"(?:[A-Za-z0-9._~%!$&'()*+,;=-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{0,5})?")

Handler = Callable[..., Awaitable[Response]]
Route = tuple[Handler, Action]


@dataclass
class Stats:
    """Counters the console shows; updated on the server's loop only."""

    requests: int = 0
    errors: int = 0
    bytes_in: int = 0
    started_at: float = field(default_factory=time.time)


class RegistryApp:
    """ASGI callable serving /v2/ for one Registry, behind Basic auth.

    Each route names, per method, its handler and the action it performs; `authorize` checks
    that action on the request's repository (None for the catalog and /v2/ itself) right
    after routing. The request's Identity is in its scope (`identity_of`) for the handlers.
    """

    def __init__(
        self,
        registry: Registry,
        authenticator: Authenticates,
        access_logging: bool = False,
    ) -> None:
        self.registry = registry
        self.authenticator = authenticator
        self.access_logging = access_logging
        self.stats = Stats()
        self.manifests = ManifestCache(registry)
        self.upload_slots = UploadSlots(registry.config.limits.max_concurrent_uploads)
        self.body_idle_timeout = registry.config.limits.body_idle_timeout_seconds
        # GET also serves HEAD. Cancelling an upload is part of writing, not a delete. A mount
        # also reads its source repository: the tokens issue checks that in start_upload.
        self.routes: list[tuple[re.Pattern[str], dict[str, Route]]] = [
            (re.compile(r""), {"GET": (self.base, METADATA_READ)}),
            (re.compile(r"_catalog"), {"GET": (self.catalog, METADATA_READ)}),
            (re.compile(r"(?P<name>.+)/tags/list"), {"GET": (self.tags, METADATA_READ)}),
            (
                re.compile(r"(?P<name>.+)/manifests/(?P<reference>[^/]+)"),
                {
                    "GET": (self.get_manifest, CONTENT_READ),
                    "PUT": (self.put_manifest, CONTENT_WRITE),
                    "DELETE": (self.delete_manifest, CONTENT_DELETE),
                },
            ),
            (
                re.compile(r"(?P<name>.+)/blobs/uploads/?"),
                {"POST": (self.start_upload, CONTENT_WRITE)},
            ),
            (
                re.compile(r"(?P<name>.+)/blobs/uploads/(?P<upload_id>[^/]+)"),
                {
                    "GET": (self.upload_status, CONTENT_WRITE),
                    "PATCH": (self.patch_upload, CONTENT_WRITE),
                    "PUT": (self.finish_upload, CONTENT_WRITE),
                    "DELETE": (self.cancel_upload, CONTENT_WRITE),
                },
            ),
            (
                re.compile(r"(?P<name>.+)/blobs/(?P<digest>[^/]+)"),
                {
                    "GET": (self.get_blob, CONTENT_READ),
                    "DELETE": (self.delete_blob, CONTENT_DELETE),
                },
            ),
            (
                re.compile(r"(?P<name>.+)/referrers/(?P<digest>[^/]+)"),
                {"GET": (self.referrers, METADATA_READ)},
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
            _check_head(request.scope)
            identity = await self.authenticator.authenticate(request.headers.get("authorization"))
            if identity is None:
                raise Unauthorized()
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
        path = _raw_path(request.scope)
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
            handler, action = route
            params = {key: _path_param(key, value) for key, value in match.groupdict().items()}
            authorize(identity, params.get("name"), action)
            return await handler(request, **params)
        return error_response(RegistryError("not found"), head, 404)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking core operation in a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    # ---- base, catalog, tags -------------------------------------------------------------

    async def base(self, request: Request) -> Response:
        if request.method == "HEAD":
            return Response(headers={"Content-Type": "application/json", "Content-Length": "2"})
        return JSONResponse({})

    async def catalog(self, request: Request) -> Response:
        n, last = _pagination(request)
        page = self.registry.catalog(n, last)
        return _paged({"repositories": page.items}, page, "/v2/_catalog", n)

    async def tags(self, request: Request, name: str) -> Response:
        n, last = _pagination(request)
        page = self.registry.tags(name, n, last)
        return _paged({"name": name, "tags": page.items}, page, f"/v2/{name}/tags/list", n)

    # ---- manifests -----------------------------------------------------------------------

    async def get_manifest(self, request: Request, name: str, reference: str) -> Response:
        # Clients such as skopeo send one Accept header per media type: read them all.
        accept = ", ".join(request.headers.getlist("accept"))
        stored, body = self.manifests.lookup(name, reference, accept)
        headers = {
            "Docker-Content-Digest": str(stored.digest),
            "Content-Type": stored.media_type,
            "Content-Length": str(stored.size),
            "ETag": f'"{stored.digest}"',
        }
        if request.method == "HEAD":
            return Response(headers=headers)
        if body is None:  # a big one (rare) is read off the loop
            body = await self.run(stored.body)
        return Response(body, headers=headers, media_type=stored.media_type)

    async def put_manifest(self, request: Request, name: str, reference: str) -> Response:
        length = request.headers.get("content-length")
        if (
            length is not None
            and length.isascii()
            and length.isdigit()
            and int(length) > MAX_MANIFEST_BYTES
        ):
            raise ManifestTooLarge(detail={"size": int(length), "limit": MAX_MANIFEST_BYTES})
        content_types = request.headers.getlist("content-type")
        if len(content_types) > 1:
            raise ManifestInvalid("send one Content-Type header, not several")
        body = await read_limited(request.stream(), MAX_MANIFEST_BYTES)
        if body is None:
            raise ManifestTooLarge(detail={"limit": MAX_MANIFEST_BYTES})
        content_type = content_types[0] if content_types else None
        result = await self.run(self.registry.put_manifest, name, reference, body, content_type)
        headers = {
            "Location": f"/v2/{name}/manifests/{result.digest}",
            "Docker-Content-Digest": str(result.digest),
        }
        if result.subject is not None:
            headers["OCI-Subject"] = str(result.subject)
        return Response(status_code=201, headers=headers)

    async def delete_manifest(self, request: Request, name: str, reference: str) -> Response:
        await self.run(self.registry.delete_manifest, name, reference)
        return Response(status_code=202)

    async def referrers(self, request: Request, name: str, digest: str) -> Response:
        artifact_type = request.query_params.get("artifactType") or None
        found = self.registry.referrers(name, parse_digest(digest), artifact_type)
        manifests = []
        for r in found:
            entry: dict[str, Any] = {"mediaType": r.media_type, "digest": r.digest, "size": r.size}
            if r.artifact_type:
                entry["artifactType"] = r.artifact_type
            if r.annotations:
                entry["annotations"] = r.annotations
            manifests.append(entry)
        headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
        body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        return Response(
            json.dumps(body, separators=(",", ":")), headers=headers, media_type=OCI_INDEX
        )

    # ---- blobs ---------------------------------------------------------------------------

    async def get_blob(self, request: Request, name: str, digest: str) -> Response:
        info = self.registry.stat_blob(name, digest)
        headers = {"Docker-Content-Digest": str(info.digest), "ETag": f'"{info.digest}"'}
        try:
            byte_range = parse_range(request.headers.get("range"), info.size)
        except Unsatisfiable as exc:
            raise RangeNotSatisfiable(
                f"requested range not satisfiable: the blob has {exc.size} bytes",
                detail={"size": exc.size},
                headers={"Content-Range": f"bytes */{exc.size}"},
            ) from None
        return BlobResponse(
            self.registry.blob_store, info.digest, info.size, headers, byte_range,
            request.method == "HEAD",
        )

    async def delete_blob(self, request: Request, name: str, digest: str) -> Response:
        await self.run(self.registry.delete_blob, name, digest)
        return Response(status_code=202)

    # ---- uploads -------------------------------------------------------------------------

    @upload_slot
    async def start_upload(self, request: Request, name: str) -> Response:
        params = request.query_params
        mount, source = params.get("mount"), params.get("from")
        if mount and source:
            info = await self.run(self.registry.mount_blob, name, mount, source)
            if info is not None:
                return _blob_created(name, info.digest)
        digest = params.get("digest")
        expected = _content_length(request)
        if digest is not None:
            final = parse_digest(digest)
            body = await _small_body(request, expected)
            if body is not None:  # a monolithic upload in one step, no session
                info = await self.run(self.registry.put_blob, name, body, final)
                self.stats.bytes_in += len(body)
                return _blob_created(name, info.digest)
        upload = await self.run(self.registry.start_upload, name, expected or 0)
        if digest is None:
            return _upload_accepted(name, upload.id, upload.size)
        return await self._write_and_finish(request, name, upload.id, None, final)

    async def upload_status(self, request: Request, name: str, upload_id: str) -> Response:
        upload = self.registry.upload_status(name, upload_id)
        return _upload_accepted(name, upload.id, upload.size, status=204)

    @upload_slot
    async def patch_upload(self, request: Request, name: str, upload_id: str) -> Response:
        start, expected = _content_range(request)
        body = await _small_body(request, expected)
        if body is not None:
            upload = await self.run(self.registry.append_chunk, name, upload_id, start, body)
            self.stats.bytes_in += len(body)
            return _upload_accepted(name, upload.id, upload.size)
        # A body of unknown length (chunked) is refused too once the reserve is reached.
        # In a thread: a refusal is counted with a database write.
        await self.run(self.registry.check_room, expected or 0)
        writer = await self.run(self.registry.claim_writer, name, upload_id, start)
        try:
            self.stats.bytes_in += await receive_into(request.stream(), writer, expected)
            upload = await self.run(self.registry.save_progress, name, upload_id, writer)
        finally:
            self.registry.release_writer(upload_id)
        return _upload_accepted(name, upload.id, upload.size)

    @upload_slot
    async def finish_upload(self, request: Request, name: str, upload_id: str) -> Response:
        digest = request.query_params.get("digest")
        if not digest:
            raise BlobUploadInvalid("the digest query parameter is required to finish an upload")
        final = parse_digest(digest)
        start, _ = _content_range(request)
        return await self._write_and_finish(request, name, upload_id, start, final)

    async def _write_and_finish(
        self, request: Request, name: str, upload_id: str, start: int | None, final: Digest
    ) -> Response:
        expected = _content_length(request)
        body = await _small_body(request, expected)
        if body is not None:
            info = await self.run(
                self.registry.finish_with_chunk, name, upload_id, start, body, final
            )
            self.stats.bytes_in += len(body)
            return _blob_created(name, info.digest)
        if expected:
            await self.run(self.registry.check_room, expected)
        writer = await self.run(self.registry.claim_writer, name, upload_id, start)
        try:
            self.stats.bytes_in += await receive_into(request.stream(), writer, expected)
            info = await self.run(self.registry.finish_upload, name, upload_id, writer, final)
        finally:
            self.registry.release_writer(upload_id)
        return _blob_created(name, info.digest)

    async def cancel_upload(self, request: Request, name: str, upload_id: str) -> Response:
        await self.run(self.registry.cancel_upload, name, upload_id)
        return Response(status_code=204)


def _check_head(scope: Scope) -> None:
    """The request head's framing, before authentication looks at it.

    Headers are capped here, below the server's read buffer, so that the 431 carries an OCI
    body (a head past the buffer gets the server's own 431, without one). HTTP/1.1 requires
    exactly one Host header (RFC 9112 section 3.2); an https URL always has an authority, so
    it may not be empty (granian stands an empty one in for a missing one).
    """
    headers = scope["headers"]
    size = sum(len(key) + len(value) + 4 for key, value in headers)
    if size > MAX_HEADER_BYTES:
        raise HeadersTooLarge(detail={"size": size, "limit": MAX_HEADER_BYTES})
    if scope.get("http_version") != "1.1":
        return
    values = [value for key, value in headers if key == b"host"]
    if len(values) != 1 or _HOST.fullmatch(values[0]) is None:
        shown = [v.decode("latin-1")[:100] for v in values]
        raise Unsupported(
            "an HTTP/1.1 request needs exactly one Host header holding a host[:port]",
            detail={"host": shown},
        )
    if sum(1 for key, _ in headers if key == b"authorization") > 1:
        raise Unauthorized("send one Authorization header, not several")
    codings = [v.strip().lower() for key, v in headers if key == b"transfer-encoding"]
    if codings and codings != [b"chunked"]:
        # RFC 9112 section 6.1: chunked once and last; the server has decoded it once only.
        raise Unsupported(
            "Transfer-Encoding must be exactly 'chunked'",
            detail={"transfer_encoding": [c.decode("latin-1")[:100] for c in codings]},
        )


def _raw_path(scope: Scope) -> str:
    """The request path as sent, percent-escapes kept (ASGI's `path` is already decoded, so
    `%2F` would turn into a separator there)."""
    raw = scope.get("raw_path")
    if not raw:
        return str(scope["path"])
    return bytes(raw).split(b"?", 1)[0].decode("latin-1")


def _path_param(key: str, raw: str) -> str:
    """One path parameter, percent-decoded; a name may not hide a '/' in an escape."""
    if key == "name" and "%2f" in raw.lower():
        raise NameInvalid(
            f"invalid repository name {raw[:300]!r}: '/' may not be percent-encoded",
            detail={"name": raw[:300]},
        )
    try:
        value = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        value = raw  # not UTF-8 once decoded: the grammar check rejects the escapes as sent
    if key == "name":
        return validate_name(value)
    if key == "upload_id":
        return validate_upload_id(value)
    return value


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


def identity_of(request: Request) -> Identity:
    """Who sent the request (set once authenticated), to hand to the core's operations."""
    identity: Identity = request.scope["identity"]
    return identity


def _method_not_allowed(request: Request, handlers: dict[str, Route]) -> Response:
    allowed = sorted({*handlers, "HEAD"} if "GET" in handlers else handlers)
    exc = Unsupported(f"method {request.method} is not allowed here", detail={"allowed": allowed})
    response = error_response(exc, request.method == "HEAD", status=405)
    response.headers["Allow"] = ", ".join(allowed)
    return response


def _blob_created(name: str, digest: Digest) -> Response:
    return Response(
        status_code=201,
        headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": str(digest)},
    )


def _upload_accepted(name: str, upload_id: str, size: int, status: int = 202) -> Response:
    return Response(
        status_code=status,
        headers={
            "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
            "Range": f"0-{max(size - 1, 0)}",
            "Docker-Upload-UUID": upload_id,
            "Content-Length": "0",
        },
    )


async def _small_body(request: Request, length: int | None) -> bytes | None:
    """The whole body when its declared length is small (then the request is one call into
    the core, one thread hop); None for a big or undeclared one, which is streamed."""
    if length is None or length > SMALL_BODY_BYTES:
        return None
    body = await read_limited(request.stream(), length)
    if body is None or len(body) != length:
        raise SizeInvalid(f"the body does not match its declared length of {length} bytes")
    return body


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise SizeInvalid(f"invalid Content-Length {value!r}")
    return int(value)


_RANGE = re.compile(r"(?:bytes[ =])?([0-9]+)-([0-9]+)")


def _content_range(request: Request) -> tuple[int | None, int | None]:
    """(first byte, length) from Content-Range, checked against Content-Length."""
    length = _content_length(request)
    value = request.headers.get("content-range")
    if value is None:
        return None, length
    match = _RANGE.fullmatch(value.strip())
    if match is None:
        raise BlobUploadInvalid(f"invalid Content-Range {value!r}")
    start, end = int(match[1]), int(match[2])
    if end < start:
        raise RangeInvalid(f"invalid Content-Range {value!r}")
    if length is not None and length != end - start + 1:
        raise SizeInvalid(f"Content-Range {value!r} does not match Content-Length {length}")
    return start, end - start + 1


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
