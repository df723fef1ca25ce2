"""The parent registry, over the OCI distribution API (httpx, synchronous, thread-safe).

A bad uplink is the normal case: every request is retried with exponential backoff and
jitter on connect errors, timeouts, cut connections, 429 and 5xx (honouring Retry-After), a
bounded number of times; a 401 is answered by authenticating once (tokens.py), never more; a
404 is never retried. A parent that goes silent (a blackholed uplink: the connection open, no
byte coming) is a timeout, retried the same way. Once a request has had no answer through all
its tries, the client's later requests fail at once with the same line: a run over a dead
uplink ends after one request's retries, not after each one's. A blob download streams to
disk with its digest checked as it is written, and a cut transfer resumes from the bytes on
disk with a Range request. A big blob goes up in chunks, and a cut upload goes on from the
offset the parent acknowledges.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import os
import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from registry_core.errors import EdgeError
from registry_core.manifests import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    OCI_MANIFEST,
)
from registry_core.reference import (
    Digest,
    digest_bytes,
    parse_digest,
    parse_reference,
    validate_name,
)
from registry_core.store.blobs import BlockWriter
from registry_core.sync.errors import (
    ParentAuthFailed,
    ParentDenied,
    ParentError,
    ParentNotFound,
    ParentProtocolError,
    ParentUnreachable,
)
from registry_core.sync.tokens import Authorizer, Scopes

T = TypeVar("T")

MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
ACCEPT_MANIFESTS = ", ".join(MANIFEST_TYPES)
PAGE_SIZE = 1000
"""Entries asked for per catalog or tags page (`n`); the rest follows the Link header."""
POOL_SIZE = 16
"""Connections kept to the parent: enough for the engine's parallel transfers."""
CHUNK = 256 * 1024
UPLOAD_CHUNK = 8 * 1024 * 1024
WRITE_BLOCK = 1 << 20
"""Received bytes are written and hashed in blocks of this size, the two in parallel."""
"""A blob larger than this goes up in chunks of this size (PATCH with Content-Range), each
acknowledged by the parent: a cut costs at most the chunk under way. A smaller one: one PUT."""
MAX_LISTING_BYTES = 64 * 1024 * 1024
"""A catalog, tags or referrers page larger than this is not a registry's answer."""
MAX_ERROR_BYTES = 64 * 1024
MAX_BACKOFF = 30.0
QUICK_CONNECT = 3.0
QUICK_TIMEOUT = 15.0
"""A quick client's connect timeout and its read (and write) timeout, in seconds: a question
that must be answered now (a readiness check), one try each."""
MAX_RETRY_AFTER = 300.0
"""A Retry-After longer than this gives up at once: the sync tries again at its next run."""
GIVE_UP_UNREACHABLE = frozenset({429, 502, 503, 504})
"""Statuses that, when they persist, mean the parent is not there for us (not a bug)."""
CATALOG_SCOPE: Scopes = ("registry:catalog:*",)
USER_AGENT = "edge-console-sync"


def _transient(status: int) -> bool:
    return status == 429 or (status >= 500 and status not in (501, 505))


@dataclass(frozen=True)
class ManifestHead:
    digest: str
    media_type: str
    size: int


@dataclass(frozen=True)
class FetchedManifest:
    digest: str
    media_type: str
    body: bytes


@dataclass(frozen=True)
class Descriptor:
    """A referrer, as the referrers API (or the tag schema's index) lists it."""

    media_type: str
    digest: str
    size: int
    artifact_type: str | None
    annotations: dict[str, str]


@dataclass(frozen=True)
class _Answer:
    """A response whose body has been read (bounded)."""

    status: int
    headers: httpx.Headers
    body: bytes
    url: httpx.URL


Content = bytes | Callable[[], Iterator[bytes]] | None
"""A request body: bytes, or a factory of a fresh stream for each try."""


@dataclass(frozen=True)
class _Call:
    method: str
    url: httpx.URL | str
    scopes: Scopes
    headers: dict[str, str] = field(default_factory=dict)
    content: Content = None
    redirects: bool = False
    retry: bool = True
    """False: sent once; a 429 or 5xx answer goes back to the caller as it is (an upload
    chunk: the upload decides where to go on from, after the Retry-After)."""


class _Wire:
    """One httpx.Client to the parent with the authorizer and the retry policy."""

    def __init__(self, endpoint: str, username: str, password: str, *, ca_file: Path | None,
                 protocol: str, retries: int, backoff: float, timeout: float,
                 connect_timeout: float) -> None:
        self.endpoint = endpoint
        self.retries = max(retries, 0)
        self.backoff = backoff
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self.lost: ParentUnreachable | None = None
        """Why a request had no answer through all its tries: later ones are not sent."""
        self._closed = threading.Event()
        self.http = httpx.Client(
            base_url=f"{protocol}://{endpoint}",
            verify=_tls_context(endpoint, ca_file),
            timeout=self.timeout,
            limits=httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE),
            headers={"User-Agent": USER_AGENT},
        )
        self.auth = Authorizer(endpoint, username, password, https=protocol == "https",
                               send=self._send_token_request)

    def close(self) -> None:
        """Stop: a backoff wait in another thread, or its next request, ends with
        ParentUnreachable; a transfer in progress is cut."""
        self._closed.set()
        self.http.close()

    def url(self, location: str) -> httpx.URL:
        """A Location or Link target, relative or absolute, as a URL."""
        return self.http.base_url.join(location)

    def call(self, call: _Call, cap: int = MAX_LISTING_BYTES) -> _Answer:
        """The answer to `call`, body read (at most `cap` bytes)."""

        def read(response: httpx.Response) -> _Answer:
            with contextlib.closing(response):
                body = self._read(response, cap)
            return _Answer(response.status_code, response.headers, body, response.url)

        return self._exchange(call, read)

    def open(self, call: _Call) -> httpx.Response:
        """The answer to `call` with its body still to stream: the caller closes it."""
        return self._exchange(call, lambda response: response)

    def pause(self, failures: int, retry_after: float | None, give_up: ParentError) -> None:
        """Wait before try number `failures + 1`, or raise `give_up` when the budget is spent."""
        if failures > self.retries or (retry_after or 0.0) > MAX_RETRY_AFTER:
            raise give_up
        delay = min(MAX_BACKOFF, self.backoff * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)
        if self._closed.wait(max(delay, retry_after or 0.0)):
            raise ParentUnreachable(f"parent {self.endpoint}: the sync client was closed")

    def unreachable(self, why: str, tries: int, status: int = 0) -> ParentUnreachable:
        plural = "try" if tries == 1 else "tries"
        return ParentUnreachable(
            f"parent {self.endpoint} unreachable: {why} (gave up after {tries} {plural})", status
        )

    def no_answer(self, exc: httpx.TransportError, failures: int, retry: bool = True) -> None:
        """Try number `failures` of a request had no answer (cut, refused, timed out): wait
        before the next, or give up; a request that was retried gives up on the parent too
        (`lost`)."""
        give_up = self.unreachable(self.describe(exc), failures)
        if not retry:
            raise give_up  # sent once: the caller decides what next
        if failures > self.retries:
            self.lost = give_up
        self.pause(failures, None, give_up)

    def describe(self, exc: httpx.TransportError) -> str:
        """What went wrong, in a few words; a timeout says how long the parent was silent."""
        if isinstance(exc, httpx.ConnectTimeout):
            what = "TLS handshake" if "handshake" in str(exc) else "connection"
            return f"{what} timed out: no answer in {self.timeout.connect:g} s"
        if isinstance(exc, httpx.ReadTimeout):
            return f"read timed out: nothing came for {self.timeout.read:g} s"
        if isinstance(exc, httpx.WriteTimeout):
            return f"write timed out: nothing went out for {self.timeout.write:g} s"
        if isinstance(exc, httpx.PoolTimeout):
            return f"timed out waiting {self.timeout.pool:g} s for a free connection"
        return _describe(exc)

    def _exchange(self, call: _Call, read: Callable[[httpx.Response], T]) -> T:
        failures, reauthenticated = 0, False
        retry_with: str | None = None
        while True:
            sent = retry_with or self.auth.header(call.scopes)
            retry_with = None
            try:
                response = self._send(self._build(call, sent), call.redirects)
            except httpx.TransportError as exc:
                failures += 1
                self._after_transport_error(exc, failures, call.retry)
                continue
            status = response.status_code
            if status == 401:
                # One new try after credentials were refused, never more; a 401 to a request
                # sent without any only tells the scheme.
                self._drain(response)
                if reauthenticated:
                    raise self.auth.refusal(response, sent)
                retry_with = self.auth.challenged(response, call.scopes, sent)
                reauthenticated = sent is not None
                continue
            if _transient(status) and call.retry:
                failures += 1
                wait = _retry_after(response.headers)
                give_up = self._status_give_up(response, failures, wait)
                self.pause(failures, wait, give_up)
                continue
            try:
                return read(response)
            except httpx.TransportError as exc:  # the body was cut: ask again
                failures += 1
                self._after_transport_error(exc, failures, call.retry)

    def _send(self, request: httpx.Request, redirects: bool = False) -> httpx.Response:
        if self.lost is not None:
            raise ParentUnreachable(str(self.lost))
        if not self._closed.is_set():
            try:
                return self.http.send(request, stream=True, follow_redirects=redirects)
            except RuntimeError:  # httpx's answer when close() came from another thread
                if not self._closed.is_set():
                    raise
        raise ParentUnreachable(f"parent {self.endpoint}: the sync client was closed")

    def _build(self, call: _Call, sent: str | None) -> httpx.Request:
        headers = dict(call.headers)
        if sent is not None:
            headers["Authorization"] = sent
        content = call.content() if callable(call.content) else call.content
        return self.http.build_request(call.method, call.url, headers=headers, content=content)

    def _after_transport_error(self, exc: httpx.TransportError, failures: int,
                               retry: bool) -> None:
        if _untrusted(exc):
            raise ParentUnreachable(
                f"parent {self.endpoint}: TLS certificate not trusted ({_describe(exc)}); give "
                "the parent's CA certificate"
            ) from exc
        self.no_answer(exc, failures, retry)

    def _status_give_up(self, response: httpx.Response, tries: int,
                        retry_after: float | None) -> ParentError:
        body = self._drain(response)
        status = response.status_code
        why = _status_text(status, body)
        if retry_after is not None and retry_after > MAX_RETRY_AFTER:
            why += f", retry after {retry_after:.0f} s"
        if status in GIVE_UP_UNREACHABLE:
            return self.unreachable(f"answered {why}", tries, status)
        return ParentProtocolError(
            f"parent {self.endpoint}: answered {why} (gave up after {tries} tries)", status
        )

    def _drain(self, response: httpx.Response) -> bytes:
        """Read an error answer's (bounded) body and close it; a cut one reads as empty."""
        try:
            with contextlib.closing(response):
                return self._read(response, MAX_ERROR_BYTES, strict=False)
        except httpx.TransportError:
            return b""

    def _read(self, response: httpx.Response, cap: int, strict: bool = True) -> bytes:
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > cap:
                if not strict:
                    break
                raise ParentProtocolError(
                    f"parent {self.endpoint}: answer to {response.request.url.path} exceeds "
                    f"{cap} bytes"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _send_token_request(self, url: httpx.URL, authorization: str) -> tuple[int, bytes]:
        """GET the token realm (any host) with the sync credentials, with the retries."""
        call = _Call("GET", url, (), {"Authorization": authorization})
        failures = 0
        while True:
            try:
                response = self._send(self._build(call, None))
                with contextlib.closing(response):
                    body = self._read(response, MAX_ERROR_BYTES, strict=False)
            except httpx.TransportError as exc:
                failures += 1
                self._after_transport_error(exc, failures, True)
                continue
            if not _transient(response.status_code):
                return response.status_code, body
            failures += 1
            self.pause(failures, _retry_after(response.headers),
                       self.unreachable(f"token service answered {response.status_code}",
                                        failures, response.status_code))


class ParentClient:
    """The parent registry of a connected registry: what the sync reads and pushes."""

    def __init__(self, endpoint: str, username: str, password: str, *,
                 ca_file: Path | None = None, protocol: str = "https", retries: int = 5,
                 backoff: float = 0.5, timeout: float = 30.0, connect_timeout: float | None = None,
                 page_size: int = PAGE_SIZE, upload_chunk: int = UPLOAD_CHUNK) -> None:
        if protocol not in ("https", "http"):
            raise ParentError(f"parent protocol must be https or http, not {protocol!r}")
        self.endpoint = endpoint
        self.page_size = page_size
        self._referrers_api: bool | None = None
        """Whether the parent has the referrers API (None: not asked yet)."""
        self._listed: dict[str, frozenset[str]] = {}
        """Tags of each repository as last listed: a referrers tag not among them is not
        asked for (one request less per image from a parent without the referrers API)."""
        self._wire = _Wire(endpoint, username, password, ca_file=ca_file, protocol=protocol,
                           retries=retries, backoff=backoff, timeout=timeout,
                           connect_timeout=timeout if connect_timeout is None else connect_timeout)
        self.upload_chunk = max(upload_chunk, 1)
        self._holders: dict[str, list[str]] = {}
        """Blob digest -> repositories of the parent seen holding it, the latest last."""
        self._holders_lock = threading.Lock()

    @classmethod
    def quick(cls, endpoint: str, username: str, password: str, *,
              ca_file: Path | None = None, protocol: str = "https") -> ParentClient:
        """A client for a question that must be answered now (stage --check): one try per
        request, QUICK_CONNECT seconds to connect and QUICK_TIMEOUT to answer; a parent that
        is down says so in seconds, not after the sync's retries."""
        return cls(endpoint, username, password, ca_file=ca_file, protocol=protocol,
                   retries=0, timeout=QUICK_TIMEOUT, connect_timeout=QUICK_CONNECT)

    def close(self) -> None:
        """Close the connections; a backoff wait in another thread ends with
        ParentUnreachable (how a cancelled run stops at once)."""
        self._wire.close()

    def __enter__(self) -> ParentClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    @property
    def referrers_api(self) -> bool | None:
        """Whether the parent has the referrers API (None: not learned yet)."""
        return self._referrers_api

    @referrers_api.setter
    def referrers_api(self, known: bool | None) -> None:
        """What an earlier run learned (saves asking a parent that lacks the API again)."""
        self._referrers_api = known

    def ping(self) -> None:
        """GET /v2/ with the credentials; raises the ParentError that says what is wrong."""
        answer = self._wire.call(_Call("GET", "/v2/", ()))
        self._expect(answer, (200,), "API version check")

    def catalog(self) -> list[str]:
        """Every repository of the parent (that the credentials may list)."""
        pages = self._pages("/v2/_catalog", CATALOG_SCOPE, "catalog", paged=True)
        if pages is None:
            raise ParentNotFound(f"parent {self.endpoint}: has no catalog (404)", 404)
        return _strings(pages, "repositories", self._wire.endpoint)

    def tags(self, repository: str) -> list[str]:
        """Every tag of `repository`; [] for a repository with none or none at all."""
        name = validate_name(repository)
        pages = self._pages(f"/v2/{name}/tags/list", _pull(name), f"tags of {name}", paged=True)
        tags = _strings(pages or [], "tags", self._wire.endpoint)
        self._listed[name] = frozenset(tags)
        return tags

    def head_manifest(self, repository: str, reference: str) -> ManifestHead | None:
        """Digest, media type and size of a manifest; None when the parent has none."""
        name, _ = validate_name(repository), parse_reference(reference)
        answer = self._wire.call(_Call("HEAD", f"/v2/{name}/manifests/{reference}", _pull(name),
                                       {"Accept": ACCEPT_MANIFESTS}))
        if answer.status == 404:
            return None
        self._expect(answer, (200,), f"manifest {name}:{reference}")
        header = answer.headers.get("docker-content-digest")
        if header is None:  # not every registry sends it on HEAD: ask for the body
            got = self.get_manifest(name, reference)
            return ManifestHead(got.digest, got.media_type, len(got.body))
        digest = self._digest(header, "Docker-Content-Digest")
        if ":" in reference and digest != self._digest(reference, "the reference"):
            raise ParentProtocolError(
                f"parent {self.endpoint}: manifest {name}@{reference} is named {digest}"
            )
        return ManifestHead(str(digest), _media_type(answer.headers, b""),
                            int(answer.headers.get("content-length", "0")))

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        """The manifest's bytes, checked against the digest the reference or the parent
        names (ParentProtocolError when they differ); ParentNotFound when absent."""
        name, _ = validate_name(repository), parse_reference(reference)
        answer = self._wire.call(_Call("GET", f"/v2/{name}/manifests/{reference}", _pull(name),
                                       {"Accept": ACCEPT_MANIFESTS}), cap=MAX_MANIFEST_BYTES)
        self._expect(answer, (200,), f"manifest {name}:{reference}")
        claimed = reference if ":" in reference else answer.headers.get("docker-content-digest")
        expected = self._digest(claimed, "the digest") if claimed else None
        actual = digest_bytes(answer.body, expected.algorithm if expected else "sha256")
        if expected is not None and actual != expected:
            raise ParentProtocolError(
                f"parent {self.endpoint}: manifest {name}:{reference} is {actual}, "
                f"not {expected}"
            )
        return FetchedManifest(str(actual), _media_type(answer.headers, answer.body),
                               answer.body)

    def fetch_blob(self, repository: str, digest: str, target: Path, size: int | None = None,
                   progress: Callable[[int], None] | None = None) -> int:
        """Stream a blob to `target`, checked against `digest` and fsynced; bytes already in
        `target` (an attempt that was cut) are resumed from with a Range request. `progress`
        is called with each chunk's length. Returns the bytes received over the network by
        this call. On a digest mismatch `target` is removed (ParentProtocolError)."""
        name = validate_name(repository)
        fetch = _BlobFetch(self._wire, f"/v2/{name}/blobs/{digest}", _pull(name),
                           self._digest(digest, "the blob digest"), target, size, progress)
        received = fetch.run()
        self._seen(digest, name)
        return received

    def referrers(self, repository: str, digest: str) -> list[Descriptor]:
        """The manifests whose subject is `digest`: the referrers API (OCI 1.1), or the
        referrers tag schema's index (`<alg>-<hex>`) where the parent has no such API."""
        name = validate_name(repository)
        subject = self._digest(digest, "the subject digest")
        pages = None
        if self._referrers_api is not False:
            pages = self._pages(f"/v2/{name}/referrers/{subject}", _pull(name),
                                f"referrers of {subject}", paged=False,
                                headers={"Accept": OCI_INDEX})
            # A registry with the API answers 200 even for an unknown subject (OCI 1.1):
            # a 404 means it has none, and it is not asked again.
            self._referrers_api = pages is not None
        if pages is None:
            pages = self._fallback_index(name, subject)
        return [d for page in pages for d in _descriptors(page, self.endpoint)]

    def blob_exists(self, repository: str, digest: str) -> bool:
        """Whether the parent has the blob in `repository` (asked with push rights: it is
        how a push learns what to skip)."""
        name = validate_name(repository)
        answer = self._wire.call(_Call("HEAD", f"/v2/{name}/blobs/{digest}", _push(name)))
        if answer.status == 404:
            return False
        self._expect(answer, (200,), f"blob {digest} in {name}")
        self._seen(digest, name)
        return True

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Mount a blob from `source` into `repository` on the parent: True when done, False
        when the parent will not (the upload it opened instead is cancelled)."""
        name, origin = validate_name(repository), validate_name(source)
        scopes = (*_push(name), *_pull(origin))
        url = httpx.URL(f"/v2/{name}/blobs/uploads/", params={"mount": digest, "from": origin})
        answer = self._wire.call(_Call("POST", url, scopes, content=b""))
        self._expect(answer, (201, 202), f"mount of {digest} into {name}")
        if answer.status == 201:
            self._seen(digest, name)
            return True
        if location := answer.headers.get("location"):
            with contextlib.suppress(ParentError):
                self._wire.call(_Call("DELETE", self._wire.url(location), scopes))
        return False

    def push_blob(self, repository: str, digest: str, source: Path, size: int) -> None:
        """Upload a blob: one PUT when it is small, else in chunks resumed after a cut from
        what the parent acknowledges (see _BlobUpload)."""
        name = validate_name(repository)
        _BlobUpload(self._wire, name, self._digest(digest, "the blob digest"), source, size,
                    self.upload_chunk).run()
        self._seen(digest, name)

    def holders(self, digest: str) -> list[str]:
        """Repositories of the parent where this client has seen the blob (found, fetched,
        mounted or pushed), the latest first: where a mount of it is likely to work."""
        with self._holders_lock:
            return self._holders.get(digest, [])[::-1]

    def put_manifest(self, repository: str, reference: str, body: bytes,
                     media_type: str) -> str:
        """PUT a manifest by tag or digest; returns its digest as the parent names it."""
        name, parsed = validate_name(repository), parse_reference(reference)
        algorithm = parsed.algorithm if isinstance(parsed, Digest) else "sha256"
        computed = digest_bytes(body, algorithm)
        answer = self._wire.call(_Call("PUT", f"/v2/{name}/manifests/{reference}", _push(name),
                                       {"Content-Type": media_type}, content=body))
        self._expect(answer, (200, 201, 202), f"manifest {name}:{reference}")
        header = answer.headers.get("docker-content-digest")
        named = self._digest(header, "Docker-Content-Digest") if header else computed
        if named.algorithm == computed.algorithm and named != computed:
            raise ParentProtocolError(
                f"parent {self.endpoint}: stored manifest {name}:{reference} as {named}, but "
                f"its content is {computed}"
            )
        return str(named)

    # ---- helpers ------------------------------------------------------------------------

    def _pages(self, path: str, scopes: Scopes, what: str, *, paged: bool,
               headers: dict[str, str] | None = None) -> list[dict[str, Any]] | None:
        """Every page of a JSON listing, following `Link: <...>; rel="next"`; None when the
        first page is a 404."""
        url: httpx.URL | None = httpx.URL(path, params={"n": self.page_size} if paged else None)
        pages: list[dict[str, Any]] = []
        seen: set[str] = set()
        while url is not None and str(url) not in seen:
            seen.add(str(url))
            answer = self._wire.call(_Call("GET", url, scopes, headers or {}))
            if answer.status == 404 and not pages:
                return None
            self._expect(answer, (200,), what)
            pages.append(_json_object(answer.body, what, self.endpoint))
            url = _next_link(answer)
        return pages

    def _fallback_index(self, name: str, subject: Digest) -> list[dict[str, Any]]:
        tag = f"{subject.algorithm[:32]}-{subject.hex[:64]}"
        if name in self._listed and tag not in self._listed[name]:
            return []
        try:
            index = self.get_manifest(name, tag)
        except ParentNotFound:
            return []
        return [_json_object(index.body, f"referrers index {name}:{tag}", self.endpoint)]

    def _expect(self, answer: _Answer, ok: tuple[int, ...], what: str) -> None:
        if answer.status not in ok:
            raise status_error(self.endpoint, answer.status, answer.body, what)

    def _seen(self, digest: str, name: str) -> None:
        with self._holders_lock:
            names = self._holders.setdefault(digest, [])
            if name in names:
                names.remove(name)
            names.append(name)

    def _digest(self, text: str, what: str) -> Digest:
        try:
            return parse_digest(text)
        except EdgeError as exc:
            raise ParentProtocolError(f"parent {self.endpoint}: {what}: {exc}") from exc


class _BlobFetch:
    """One blob into `target`: resumed from the bytes on disk, hashed as written."""

    writer: BlockWriter

    def __init__(self, wire: _Wire, url: str, scopes: Scopes, digest: Digest, target: Path,
                 size: int | None, progress: Callable[[int], None] | None) -> None:
        self.wire, self.url, self.scopes, self.digest = wire, url, scopes, digest
        self.target, self.size, self.progress = target, size, progress
        self.hasher = digest.hasher()
        self.have = 0
        """Bytes of the blob here: in `target`, then in `pending`."""
        self.received = 0
        self.from_disk = False
        """Bytes in `target` come from an earlier call, not checked by this one."""
        self.pending: list[bytes] = []
        """Received, not yet written: written and hashed together once a block is full."""
        self.pending_bytes = 0

    def run(self) -> int:
        self.from_disk = self._load()
        with self.target.open("ab", buffering=0) as file:
            self.writer = BlockWriter(file)
            try:
                return self._until_verified()
            finally:
                # Leaving on another error: a block still in flight lands before the file
                # closes (kept for a Range later); the first error is the one reported.
                with contextlib.suppress(OSError):
                    self.writer.wait()

    def _until_verified(self) -> int:
        failures = 0
        while True:
            before = self.received
            try:
                if not self._attempt():
                    continue
            except httpx.TransportError as exc:
                # A try that brought bytes does not count against the budget: a link
                # that drops often but moves on gets the blob in the end.
                failures = 1 if self.received > before else failures + 1
                self.wire.no_answer(exc, failures)
                continue
            if self._verified():
                return self.received
            if not self.from_disk:
                self.target.unlink(missing_ok=True)
                raise self._mismatch()
            self._truncate()  # the earlier bytes were the fault, perhaps: once from zero

    def _load(self) -> bool:
        """Hash the bytes a cut attempt left in `target`; True when there are some."""
        if not self.target.exists():
            return False
        with self.target.open("rb") as old:
            while block := old.read(CHUNK * 4):
                self.hasher.update(block)
                self.have += len(block)
        if self.size is not None and self.have > self.size:
            self.target.unlink()
            self.hasher, self.have = self.digest.hasher(), 0
        return self.have > 0

    def _attempt(self) -> bool:
        """One GET from `have` on; False when the parent asks to start over at once."""
        if self.size is not None and self.have == self.size:
            return True
        headers = {"Accept-Encoding": "identity"}
        if self.have:
            headers["Range"] = f"bytes={self.have}-"
        response = self.wire.open(_Call("GET", self.url, self.scopes, headers, redirects=True))
        with contextlib.closing(response):
            if response.status_code == 416 and self.have:
                # Nothing after `have`: the file may be whole already (distribution 2.8
                # answers this 416 with the blob's Content-Length and a short body: unread).
                if self._verified():
                    return True
                self._truncate()
                return False
            if response.status_code not in (200, 206):
                body = response.read()[:MAX_ERROR_BYTES]
                raise status_error(self.wire.endpoint, response.status_code, body,
                                   f"blob {self.digest}")
            if response.status_code == 200 and self.have:
                self._truncate()  # the parent ignored the Range: the whole blob comes
            elif response.status_code == 206:
                self._check_range(response.headers.get("content-range", ""))
            try:
                for chunk in response.iter_raw():  # as it comes: a cut loses no bytes read
                    self._write(chunk)
            finally:
                self._store()  # what arrived before a cut is good: kept for the Range
        return True

    def _check_range(self, header: str) -> None:
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", header.strip())
        total = match.group(3) if match else "*"
        if (match is None or int(match.group(1)) != self.have
                or (self.size is not None and total != "*" and int(total) != self.size)):
            raise ParentProtocolError(
                f"parent {self.wire.endpoint}: blob {self.digest}: asked for bytes "
                f"{self.have}- and got Content-Range {header!r}"
            )

    def _write(self, chunk: bytes) -> None:
        if self.size is not None and self.have + len(chunk) > self.size:
            self.target.unlink(missing_ok=True)
            raise ParentProtocolError(
                f"parent {self.wire.endpoint}: blob {self.digest} is longer than its "
                f"{self.size} bytes"
            )
        self.pending.append(chunk)
        self.pending_bytes += len(chunk)
        self.have += len(chunk)
        self.received += len(chunk)
        if self.pending_bytes >= WRITE_BLOCK:
            self._store()
        if self.progress is not None:
            self.progress(len(chunk))

    def _store(self) -> None:
        """Write and hash what is pending, at once (see store.blobs.write_hashed)."""
        if self.pending:
            block = b"".join(self.pending)
            self.pending, self.pending_bytes = [], 0
            self.writer.write(self.hasher, block, self.have - len(block))

    def _truncate(self) -> None:
        self.pending, self.pending_bytes = [], 0
        self.writer.wait()
        self.writer.file.truncate(0)
        self.hasher, self.have, self.from_disk = self.digest.hasher(), 0, False

    def _verified(self) -> bool:
        self._store()
        self.writer.wait()
        os.fsync(self.writer.file.fileno())
        return self.hasher.hexdigest() == self.digest.hex

    def _mismatch(self) -> ParentProtocolError:
        actual = Digest(self.digest.algorithm, self.hasher.hexdigest())
        return ParentProtocolError(
            f"parent {self.wire.endpoint}: blob {self.digest} arrived as {actual} "
            f"({self.have} bytes); removed"
        )


class _Interrupted(Exception):
    """An upload request that may be tried again: cut, 429 or 5xx, or a session that is
    busy, out of step or gone. `retry_after`: the parent's Retry-After, in seconds."""

    def __init__(self, give_up: ParentError, retry_after: float | None = None) -> None:
        super().__init__(str(give_up))
        self.give_up = give_up
        self.retry_after = retry_after


class _BlobUpload:
    """One blob up to the parent. Up to `chunk` bytes: POST, then one PUT with the content
    (a new session for each try). Larger: PATCHes of `chunk` bytes with Content-Range, then
    an empty PUT with the digest. After a cut, the session's status (GET: `Range: 0-<last>`)
    says where to go on from; a session that is gone (distribution 2.8 drops one whose file
    grew past the offset it signed, which a cut mid-chunk does) is started again from zero,
    unless the parent has the blob already (the closing PUT went through)."""

    def __init__(self, wire: _Wire, name: str, digest: Digest, source: Path, size: int,
                 chunk: int) -> None:
        self.wire, self.name, self.digest = wire, name, str(digest)
        self.source, self.size, self.chunk = source, size, chunk
        self.scopes = _push(name)
        self.location = httpx.URL()
        self.offset = 0
        """Bytes the parent has acknowledged in the current session."""
        self.refused_at: int | None = None
        """The offset of the last chunk refused as out of step (416)."""

    def run(self) -> None:
        if self.size <= self.chunk:
            self._whole()
            return
        self._start()
        failures, furthest = 0, 0
        while True:
            try:
                if self.offset < self.size:
                    self._patch()
                    continue
                self._finish()
                return
            except _Interrupted as interrupted:
                # A try that took the upload further than ever does not count against the
                # budget: a link that drops often but moves on gets the blob up in the end.
                failures = 1 if self.offset > furthest else failures + 1
                furthest = max(furthest, self.offset)
                self.wire.pause(failures, interrupted.retry_after, interrupted.give_up)
                if not self._resume():
                    return

    def _whole(self) -> None:
        failures = 0
        while True:
            self._start()
            put = self._call("PUT", self.location.copy_merge_params({"digest": self.digest}),
                             _file_chunks(self.source), self.size)
            try:
                answer = self._send(put)
            except _Interrupted as interrupted:
                failures += 1
                self.wire.pause(failures, interrupted.retry_after, interrupted.give_up)
                continue
            self._expect(answer, (201,))
            return

    def _start(self) -> None:
        answer = self.wire.call(_Call("POST", f"/v2/{self.name}/blobs/uploads/", self.scopes,
                                      content=b""))
        self._expect(answer, (202,))
        location = answer.headers.get("location")
        if not location:
            raise ParentProtocolError(
                f"parent {self.wire.endpoint}: upload to {self.name} started without a Location"
            )
        self.location, self.offset = self.wire.url(location), 0

    def _patch(self) -> None:
        end = min(self.offset + self.chunk, self.size)
        call = self._call("PATCH", self.location, _file_chunks(self.source, self.offset, end),
                          end - self.offset, {"Content-Range": f"{self.offset}-{end - 1}"})
        answer = self._send(call)
        if answer.status != 202:
            if answer.status == 416:
                self.refused_at = self.offset
            self._refused(answer, "chunk")
        # 202 takes the chunk: its Range is not read (ECR's lags behind), and the parent
        # checks the digest of the whole at the end.
        self._follow(answer)
        self.offset = end

    def _finish(self) -> None:
        put = self._call("PUT", self.location.copy_merge_params({"digest": self.digest}),
                         b"", 0)
        answer = self._send(put)
        if answer.status != 201:
            self._refused(answer, "closing PUT")

    def _resume(self) -> bool:
        """Where to go on from: the session's acknowledged offset, or zero in a new session;
        False when the parent has the blob already."""
        answer = self.wire.call(_Call("GET", self.location, self.scopes))
        if answer.status in (200, 204):
            acknowledged = _acknowledged(answer.headers.get("range"))
            if (acknowledged is not None and 1 < acknowledged <= self.size
                    and acknowledged != self.refused_at):
                self._follow(answer)
                self.offset = acknowledged
                return True
            # "0-0" is 0 or 1 byte, and an offset the parent has just refused (416) is a
            # stale answer: a new session loses little and leaves no doubt.
            with contextlib.suppress(ParentError):
                self.wire.call(_Call("DELETE", self.location, self.scopes))
        elif answer.status not in (400, 404):
            raise self._error(answer)
        elif self._parent_has_blob():
            return False
        self._start()
        return True

    def _parent_has_blob(self) -> bool:
        answer = self.wire.call(_Call("HEAD", f"/v2/{self.name}/blobs/{self.digest}",
                                      self.scopes))
        return answer.status == 200

    def _refused(self, answer: _Answer, what: str) -> None:
        """A chunk or the closing PUT not taken: out of step (416), busy or gone (400,
        404) is an interruption; a digest that does not match, or anything else, is not."""
        if answer.status in (400, 404, 416) and _oci_code(answer.body) != "DIGEST_INVALID":
            raise _Interrupted(status_error(self.wire.endpoint, answer.status, answer.body,
                                            f"upload of {self.digest} to {self.name}: {what}"))
        raise self._error(answer)

    def _follow(self, answer: _Answer) -> None:
        if location := answer.headers.get("location"):
            self.location = self.wire.url(location)

    def _call(self, method: str, url: httpx.URL, content: Content, length: int,
              headers: dict[str, str] | None = None) -> _Call:
        return _Call(method, url, self.scopes,
                     {"Content-Type": "application/octet-stream",
                      "Content-Length": str(length), **(headers or {})},
                     content=content, retry=False)

    def _send(self, call: _Call) -> _Answer:
        """The answer to a PATCH or PUT (sent once); _Interrupted when cut, or answered 429
        or 5xx (with the parent's Retry-After, which the pause before the next try honours
        as every other request's does)."""
        try:
            answer = self.wire.call(call)
        except ParentError as exc:
            if isinstance(exc, ParentUnreachable) or _transient(exc.status):
                raise _Interrupted(exc) from exc
            raise
        if _transient(answer.status):
            wait = _retry_after(answer.headers)
            later = f" (retry after {wait:.0f} s)" if wait and wait > MAX_RETRY_AFTER else ""
            raise _Interrupted(self._error(answer, later), wait)
        return answer

    def _expect(self, answer: _Answer, ok: tuple[int, ...]) -> None:
        if answer.status not in ok:
            raise self._error(answer)

    def _error(self, answer: _Answer, note: str = "") -> ParentError:
        return status_error(self.wire.endpoint, answer.status, answer.body,
                            f"upload of {self.digest} to {self.name}", note)


# ---- module helpers ---------------------------------------------------------------------


def status_error(endpoint: str, status: int, body: bytes, what: str,
                 note: str = "") -> ParentError:
    """The ParentError for an unexpected answer, with the parent's OCI error code."""
    code = _oci_code(body)
    message = f"parent {endpoint}: {what}: answered {_status_text(status, body)}{note}"
    if status == 401:
        return ParentAuthFailed(message, status, code)
    if status == 403:
        return ParentDenied(message, status, code)
    if status == 404:
        return ParentNotFound(message, status, code)
    if status in GIVE_UP_UNREACHABLE:
        return ParentUnreachable(message, status, code)
    return ParentProtocolError(message, status, code)


def _pull(name: str) -> Scopes:
    return (f"repository:{name}:pull",)


def _push(name: str) -> Scopes:
    return (f"repository:{name}:pull,push",)


def _tls_context(endpoint: str, ca_file: Path | None) -> ssl.SSLContext:
    """The system store plus the parent's CA: blobs may be redirected to storage with a
    public certificate even when the parent's own is private."""
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ParentError(
                f"parent {endpoint}: cannot use the CA certificate {ca_file}: {exc}"
            ) from exc
    return context


def _untrusted(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _describe(exc: httpx.TransportError) -> str:
    text = " ".join(str(exc).split()) or "no detail"
    return f"{type(exc).__name__}: {text}"


def _retry_after(headers: httpx.Headers) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None when absent or bad."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _oci_code(body: bytes) -> str:
    try:
        errors = json.loads(body)["errors"]
        return str(errors[0]["code"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


def _status_text(status: int, body: bytes) -> str:
    """'404 MANIFEST_UNKNOWN: manifest unknown', from an OCI error body when there is one."""
    try:
        first = json.loads(body)["errors"][0]
        detail = f" {first['code']}: {first.get('message', '')}".rstrip(": ")
    except (ValueError, KeyError, IndexError, TypeError):
        detail = f" {httpx.codes.get_reason_phrase(status)}".rstrip()
    return " ".join(f"{status}{detail}".split())[:300]


def _media_type(headers: httpx.Headers, body: bytes) -> str:
    """The Content-Type, or the body's mediaType when the parent sent none useful."""
    content_type: str = headers.get("content-type", "").split(";")[0].strip()
    if content_type in MANIFEST_TYPES or not body:
        return content_type
    with contextlib.suppress(ValueError, AttributeError):
        named = json.loads(body).get("mediaType")
        if isinstance(named, str):
            return named
    return content_type


def _json_object(body: bytes, what: str, endpoint: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise ParentProtocolError(f"parent {endpoint}: {what}: not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise ParentProtocolError(f"parent {endpoint}: {what}: not a JSON object")
    return doc


def _strings(pages: list[dict[str, Any]], key: str, endpoint: str) -> list[str]:
    found: list[str] = []
    for page in pages:
        items = page.get(key) or []  # distribution answers "tags": null for none left
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ParentProtocolError(f"parent {endpoint}: {key} is not a list of strings")
        found.extend(items)
    return list(dict.fromkeys(found))


def _descriptors(index: dict[str, Any], endpoint: str) -> list[Descriptor]:
    found = []
    for entry in index.get("manifests") or []:
        try:
            annotations = entry.get("annotations") or {}
            descriptor = Descriptor(entry["mediaType"], entry["digest"], entry["size"],
                                    entry.get("artifactType"), dict(annotations))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ParentProtocolError(
                f"parent {endpoint}: a referrer descriptor is malformed ({exc!r})"
            ) from exc
        if not (isinstance(descriptor.digest, str) and isinstance(descriptor.size, int)):
            raise ParentProtocolError(f"parent {endpoint}: a referrer descriptor is malformed")
        found.append(descriptor)
    return found


_LINK = re.compile(r"<([^>]*)>([^<]*)")


def _next_link(answer: _Answer) -> httpx.URL | None:
    """The `rel="next"` target of the Link header (RFC 8288), resolved against the page."""
    for value in answer.headers.get_list("link"):
        for target, params in _LINK.findall(value):
            if re.search(r';\s*rel="?next"?', params):
                return answer.url.join(target) if target else None
    return None


def _file_chunks(path: Path, start: int = 0,
                 end: int | None = None) -> Callable[[], Iterator[bytes]]:
    """A fresh stream of the file's bytes from `start` to `end` (None: its end) each call."""

    def chunks() -> Iterator[bytes]:
        with path.open("rb") as source:
            source.seek(start)
            left = -1 if end is None else end - start
            while left and (block := source.read(CHUNK if left < 0 else min(CHUNK, left))):
                left -= len(block) if left > 0 else 0
                yield block

    return chunks


_RANGE = re.compile(r"(?:bytes=)?0-(\d+)")


def _acknowledged(header: str | None) -> int | None:
    """The bytes an upload's `Range: 0-<last>` acknowledges (None: absent or not that)."""
    match = _RANGE.fullmatch((header or "").strip())
    return None if match is None else int(match.group(1)) + 1
