"""The bad-input corpus (tests/corpus.py) against the real server over TLS.

Each case goes out byte for byte on its own TLS connection (no client library in between to
normalise the path, fold headers or fix the framing). Every answer must be a non-5xx; every
error an OCI JSON error with a known code, with no body on HEAD. Afterwards the blob files
and database rows are exactly as before the corpus, and every seeded image pulls with the
same digests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from api_helpers import (
    KNOWN_ERROR_CODES,
    Pushed,
    patch_chunk,
    push_image,
    push_multiarch,
    start_session,
)
from corpus import FAMILIES, Case, Seed, build_corpus
from store_snapshot import take_snapshot
from support import LiveServer, basic_auth_header

from registry_core.manifests import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX

pytestmark = pytest.mark.socket

REPLY_TIMEOUT = 10.0
WAITING_TIMEOUT = 1.5
"""How long a case whose body is shorter than declared waits for an answer."""
HEAD_BODY_WAIT = 0.2
WORKERS = 8
SESSION_BYTES = b"0123456789"
SAFE_METHODS = {b"GET", b"HEAD", b"OPTIONS", b"TRACE"}


# ---- a raw HTTP/1.1 client over TLS --------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


class NoReply(Exception):
    """The server closed the connection (or kept waiting) without a status line."""


def request_bytes(case: Case, host: bytes, authorization: bytes) -> bytes:
    lines = [case.method + b" " + case.path + b" " + case.version]
    if case.host:
        lines.append(b"Host: " + host)
    if case.auth:
        lines.append(b"Authorization: " + authorization)
    lines += [name + b": " + value for name, value in case.headers]
    framing = {name.lower() for name, _ in case.headers} & {b"content-length", b"transfer-encoding"}
    if case.length and not framing and (case.body or case.method in (b"PUT", b"POST", b"PATCH")):
        lines.append(b"Content-Length: %d" % len(case.body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + case.body


def _read_until(sock: ssl.SSLSocket, buf: bytearray, marker: bytes) -> int:
    while (at := buf.find(marker)) < 0:
        data = sock.recv(1 << 16)
        if not data:
            raise NoReply("connection closed before the end of the response head")
        buf += data
    return at


def _read_exactly(sock: ssl.SSLSocket, buf: bytearray, n: int) -> bytes:
    while len(buf) < n:
        data = sock.recv(1 << 16)
        if not data:
            raise NoReply(f"connection closed after {len(buf)} of {n} body bytes")
        buf += data
    out = bytes(buf[:n])
    del buf[:n]
    return out


def _read_chunked(sock: ssl.SSLSocket, buf: bytearray) -> bytes:
    body = bytearray()
    while True:
        at = _read_until(sock, buf, b"\r\n")
        size = int(bytes(buf[:at]).split(b";")[0], 16)
        del buf[: at + 2]
        if size == 0:
            _read_until(sock, buf, b"\r\n")
            return bytes(body)
        body += _read_exactly(sock, buf, size + 2)[:-2]


def _leftover(sock: ssl.SSLSocket, buf: bytearray) -> bytes:
    """Bytes that arrive right after a HEAD answer's head: a body that should not be there."""
    sock.settimeout(HEAD_BODY_WAIT)
    try:
        while data := sock.recv(1 << 16):
            buf += data
    except (TimeoutError, ssl.SSLError, OSError):
        pass
    return bytes(buf)


def read_reply(sock: ssl.SSLSocket, head: bool) -> Reply:
    buf = bytearray()
    while True:
        at = _read_until(sock, buf, b"\r\n\r\n")
        lines = bytes(buf[:at]).decode("latin-1").split("\r\n")
        del buf[: at + 4]
        status = int(lines[0].split(" ")[1])
        if status >= 200:
            break
    fields = [line.split(":", 1) for line in lines[1:] if ":" in line]
    headers = [(k.strip().lower(), v.strip()) for k, v in fields]
    reply = Reply(status, headers, b"")
    if head:
        reply.body = _leftover(sock, buf)
    elif status in (204, 304):
        pass
    elif "chunked" in (reply.header("transfer-encoding") or "").lower():
        reply.body = _read_chunked(sock, buf)
    elif (length := reply.header("content-length")) is not None:
        reply.body = _read_exactly(sock, buf, int(length))
    else:
        reply.body = _leftover(sock, buf)
    return reply


def send(server: LiveServer, context: ssl.SSLContext, case: Case) -> Reply:
    data = request_bytes(
        case,
        server.address.encode(),
        basic_auth_header(server.username, server.password).encode(),
    )
    timeout = WAITING_TIMEOUT if case.no_reply_ok else REPLY_TIMEOUT
    raw = socket.create_connection((server.host, server.port), timeout=timeout)
    with context.wrap_socket(raw, server_hostname=server.host) as sock:
        # The server may answer early and close; its answer may still be readable.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
            sock.sendall(data)
        try:
            return read_reply(sock, case.method == b"HEAD")
        except (TimeoutError, ConnectionResetError, ssl.SSLError) as exc:
            raise NoReply(f"{type(exc).__name__}: {exc}") from exc


# ---- checking one answer -------------------------------------------------------------------


def parser_refusal(reply: Reply) -> bool:
    """An answer of the HTTP server itself (granian's parser), before any request reached the
    app: every app answer carries the API version header. Such an answer cannot have an OCI
    body; it must be a bare 400, 414 or 431 that closes the connection (the README's "How the
    API treats bad input" names it as the one exception)."""
    return (
        reply.header("docker-distribution-api-version") is None
        and reply.status in (400, 414, 431)
        and not reply.body
        and (reply.header("connection") or "").lower() == "close"
    )


def error_problems(case: Case, reply: Reply) -> list[str]:
    """What is wrong with an error answer's body (OCI JSON; none at all for HEAD)."""
    if parser_refusal(reply):
        return []
    if case.method == b"HEAD":
        return [f"HEAD answer has a body {reply.body[:60]!r}"] if reply.body else []
    content_type = reply.header("content-type") or ""
    if not content_type.startswith("application/json"):
        return [f"not an OCI error: {content_type or 'no content-type'} {reply.body[:80]!r}"]
    try:
        errors = json.loads(reply.body)["errors"]
        code = errors[0]["code"]
        assert isinstance(errors[0]["message"], str) and errors[0]["message"]
    except (ValueError, KeyError, IndexError, TypeError, AssertionError):
        return [f"not an OCI error body: {reply.body[:120]!r}"]
    if code not in KNOWN_ERROR_CODES:
        return [f"unknown code {code}"]
    if case.codes and code not in case.codes and reply.status in case.status:
        return [f"code {code}, expected {'/'.join(sorted(case.codes))}"]
    return []


def problems(case: Case, reply: Reply | NoReply) -> list[str]:
    if isinstance(reply, NoReply):
        return [] if case.no_reply_ok else [f"no answer ({reply})"]
    found = []
    if reply.status not in case.status:
        found.append(f"status {reply.status}, expected {'/'.join(map(str, sorted(case.status)))}")
    if reply.status >= 400:
        found += error_problems(case, reply)
    if reply.status == 401 and reply.header("www-authenticate") is None:
        found.append("401 without WWW-Authenticate")
    if reply.status == 405 and reply.header("allow") is None:
        found.append("405 without Allow")
    for name, value in case.expect_headers:
        if reply.status in (206, 416) and reply.header(name) != value:
            found.append(f"{name}: {reply.header(name)!r}, expected {value!r}")
    return found


def run_case(server: LiveServer, context: ssl.SSLContext, case: Case) -> tuple[Case, list[str]]:
    try:
        reply: Reply | NoReply = send(server, context, case)
    except NoReply as exc:
        reply = exc
    except OSError as exc:
        reply = NoReply(f"{type(exc).__name__}: {exc}")
    return case, problems(case, reply)


# ---- seeding and pulling -------------------------------------------------------------------


@dataclass
class Seeded:
    seed: Seed
    images: list[Pushed]
    """Every manifest stored, with its exact bytes (index children included)."""
    tags: dict[tuple[str, str], Pushed]


def async_client(server: LiveServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url, verify=server.ssl_context(), auth=(server.username, server.password)
    )


async def seed_store(server: LiveServer) -> Seeded:
    """Two repositories, an OCI and a Docker image, a multi-arch index, three upload sessions
    (one holding acknowledged bytes)."""
    async with async_client(server) as client:
        app = await push_image(client, "lib/app", "v1")
        docker = await push_image(client, "lib/app", "docker", media_type=DOCKER_MANIFEST)
        index, children = await push_multiarch(client, "other/repo", "latest")
        listed, _ = await push_multiarch(
            client, "other/repo", "list", index_type=DOCKER_MANIFEST_LIST
        )
        session = await start_session(client, "lib/app")
        reply = await patch_chunk(client, session, SESSION_BYTES, 0)
        assert reply.status_code == 202, reply.text
        other_session = await start_session(client, "other/repo")
        scratch = await start_session(client, "lib/app")
    layer = app.doc["layers"][0]
    seed = Seed(
        repo="lib/app", tag="v1", manifest=app.digest, manifest_body=app.body,
        config=app.doc["config"]["digest"], layer=layer["digest"], layer_size=layer["size"],
        other_repo="other/repo", other_tag="latest", other_manifest=index.digest,
        other_blob=children["amd64"].doc["layers"][0]["digest"],
        other_blob_size=children["amd64"].doc["layers"][0]["size"],
        session=session.rsplit("/", 1)[1], session_size=len(SESSION_BYTES),
        other_session=other_session.rsplit("/", 1)[1],
        scratch_session=scratch.rsplit("/", 1)[1],
        username=server.username, password=server.password,
    )  # fmt: skip
    tags = {("lib/app", "v1"): app, ("lib/app", "docker"): docker,
            ("other/repo", "latest"): index, ("other/repo", "list"): listed}  # fmt: skip
    return Seeded(seed, [app, docker, index, listed, *children.values()], tags)


def pull_problems(server: LiveServer, seeded: Seeded) -> list[str]:
    """Pull every seeded tag and manifest, and every blob they name, checking each digest."""
    found = []
    with server.client() as client:
        for (repo, tag), pushed in seeded.tags.items():
            reply = client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": pushed.media_type})
            if reply.status_code != 200 or reply.content != pushed.body:
                found.append(f"{repo}:{tag} answers {reply.status_code}, not the seeded bytes")
        for pushed in seeded.images:
            found += _pull_one(client, pushed)
    return found


def _pull_one(client: httpx.Client, pushed: Pushed) -> list[str]:
    found = []
    reply = client.get(
        f"/v2/{pushed.name}/manifests/{pushed.digest}", headers={"Accept": pushed.media_type}
    )
    if reply.content != pushed.body:
        found.append(f"{pushed.name}@{pushed.digest} answers {reply.status_code}")
    if pushed.media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST):
        return found
    for entry in [pushed.doc["config"], *pushed.doc["layers"]]:
        blob = client.get(f"/v2/{pushed.name}/blobs/{entry['digest']}")
        actual = "sha256:" + hashlib.sha256(blob.content).hexdigest()
        if blob.status_code != 200 or actual != entry["digest"]:
            found.append(f"{pushed.name} blob {entry['digest']}: {blob.status_code} {actual}")
    return found


# ---- the test ------------------------------------------------------------------------------


@pytest.fixture
def served(live_server: LiveServer) -> Iterator[LiveServer]:
    # A scheduled GC (02:00 by default) must not change the store in the middle of the run.
    live_server.service.scheduler.stop()
    yield live_server


def summarize(
    failures: list[tuple[Case, list[str]]], total: dict[str, int], shown: int = 12
) -> str:
    by_family: dict[str, list[tuple[Case, list[str]]]] = {}
    for case, found in failures:
        by_family.setdefault(case.family, []).append((case, found))
    served = [f"{c.label} -> {f[0]}" for c, f in failures if f[0].startswith("status 2")]
    lines = ["== served though it should be refused:", *served[:shown]] if served else []
    for family, items in by_family.items():
        lines.append(f"== {family}: {len(items)} of {total[family]} cases fail")
        for case, found in items[:shown]:
            lines.append(f"   {case.label}: {'; '.join(found)}  [{case.why[:90]}]")
        if len(items) > shown:
            lines.append(f"   ... and {len(items) - shown} more")
    return "\n".join(lines)


def test_corpus_is_large_and_covers_every_family() -> None:
    seed = Seed("lib/app", "v1", "sha256:" + "a" * 64, b'{"schemaVersion":2,"mediaType":"x"}',
                "sha256:" + "b" * 64, "sha256:" + "c" * 64, 10, "other/repo", "latest",
                "sha256:" + "d" * 64, "sha256:" + "e" * 64, 10,
                "0f0e0d0c-0b0a-4908-8706-050403020100", 10,
                "1f0e0d0c-0b0a-4908-8706-050403020100",
                "2f0e0d0c-0b0a-4908-8706-050403020100")  # fmt: skip
    cases = build_corpus(seed)
    assert len(cases) >= 600
    assert {c.family for c in cases} == set(FAMILIES)
    # Each case is distinct: a duplicate would be a family builder's mistake.
    keys = [(c.method, c.path, c.headers, c.body, c.host, c.auth, c.version) for c in cases]
    assert len(keys) == len(set(keys))


async def test_bad_input_corpus(served: LiveServer) -> None:
    seeded = await seed_store(served)
    datadir = served.service.datadir
    strict_sessions = {seeded.seed.session, seeded.seed.other_session}
    before = take_snapshot(datadir, strict_sessions)
    assert len(before.files) > 10 and before.tables["tags"]

    cases = build_corpus(seeded.seed)
    context = served.ssl_context()
    started = time.monotonic()
    # Safe methods first: a destructive case that wrongly succeeds must not turn the reads
    # after it into failures of their own.
    safe = [c for c in cases if c.method in SAFE_METHODS]
    unsafe = [c for c in cases if c.method not in SAFE_METHODS]
    with ThreadPoolExecutor(WORKERS) as pool:
        results = [
            r
            for batch in (safe, unsafe)
            for r in pool.map(lambda c: run_case(served, context, c), batch)
        ]
    elapsed = time.monotonic() - started
    failures = [(case, found) for case, found in results if found]
    total: dict[str, int] = {}
    for case in cases:
        total[case.family] = total.get(case.family, 0) + 1
    print(f"\ncorpus: {len(cases)} requests in {elapsed:.1f} s, {len(failures)} failing")

    changed = before.diff(take_snapshot(datadir, strict_sessions))
    lost = pull_problems(served, seeded)
    report = summarize(failures, total)
    if path := os.environ.get("EDGE_CORPUS_REPORT"):  # every failure, for whoever fixes them
        Path(path).write_text(summarize(failures, total, shown=len(cases)) + "\n")
    if changed:
        report += "\n== the store changed:\n   " + "\n   ".join(changed)
    if lost:
        report += "\n== seeded images no longer pull as pushed:\n   " + "\n   ".join(lost)
    assert not failures and not changed and not lost, report
