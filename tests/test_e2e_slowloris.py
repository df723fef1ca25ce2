"""Slow and abusive clients against the real TLS server: slowloris connections are cut off and
do not stop a `skopeo copy`; an upload body that stops arriving is cut at its last
acknowledged byte; concurrent upload bodies are capped with 429 TOOMANYREQUESTS.

Timeouts are set short in config.toml; every wait below is a hang guard, not a timing check.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from imagebuilder import ImageSpec, write_oci_image
from support import (
    LiveServer,
    basic_auth_header,
    oci_layout_digest,
    remote,
    run_skopeo,
    skopeo_auth,
    start_live_server,
)

from registry_core.config import load_config, save_config
from registry_core.datadir import DataDir
from registry_core.reference import digest_bytes

pytestmark = [pytest.mark.socket, pytest.mark.skopeo]

HEAD_TIMEOUT = 2.0
BODY_IDLE_TIMEOUT = 2.0
HANG_GUARD = 120.0
ZERO_DIGEST = "sha256:" + "0" * 64


def limited_server(datadir: DataDir, cert_dir: Path, **limits: float | int) -> LiveServer:
    config = load_config(datadir.config)
    for key, value in limits.items():
        setattr(config.limits, key, value)
    save_config(config, datadir.config)
    return start_live_server(datadir, cert_dir)


@pytest.fixture
def server(datadir: DataDir, tmp_path: Path) -> Iterator[LiveServer]:
    live = limited_server(
        datadir,
        tmp_path / "certs.d",
        header_read_timeout_seconds=HEAD_TIMEOUT,
        body_idle_timeout_seconds=BODY_IDLE_TIMEOUT,
        max_concurrent_uploads=64,
    )
    yield live
    live.service.close()


# ---- raw connections ---------------------------------------------------------------------------


def tls_connect(server: LiveServer) -> ssl.SSLSocket:
    sock = socket.create_connection((server.host, server.port), timeout=30)
    return server.ssl_context().wrap_socket(sock, server_hostname=server.host)


def request_head(server: LiveServer, method: str, path: str, **headers: str | int) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {server.address}",
        f"Authorization: {basic_auth_header(server.username, server.password)}",
        *(f"{key.replace('_', '-')}: {value}" for key, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_to_close(sock: ssl.SSLSocket) -> bytes:
    """Everything the server sends until it closes the connection (hang guard: 30 s)."""
    sock.settimeout(30)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def oci_error(response: bytes) -> tuple[int, str, dict[str, str]]:
    """(status, first error code, headers) of a raw HTTP/1.1 response with an OCI body."""
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), json.loads(body)["errors"][0]["code"], headers


# ---- the slowloris driver ------------------------------------------------------------------


@dataclass
class SlowConn:
    kind: str
    """"head" trickles a request head; "body" sends a head and 10 body bytes, then stalls;
    "tcp" never starts its TLS handshake."""
    sock: socket.socket
    received: bytes = b""


class Slowloris:
    """Keeps `mix[kind]` slow connections of each kind open (one reopened for each the server
    cuts) until `finish`, which waits for the server to cut the last of them."""

    def __init__(self, server: LiveServer, mix: dict[str, int], tick: float = 0.5) -> None:
        self.server = server
        self.mix = mix
        self.tick = tick
        self.open: list[SlowConn] = []
        self.ended: list[SlowConn] = []
        self.reopen = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slowloris", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        for kind, count in self.mix.items():
            self.open.extend(self._connect(kind) for _ in range(count))
        self._thread.start()

    def finish(self) -> list[SlowConn]:
        self.reopen = False
        deadline = time.monotonic() + HANG_GUARD
        while self.open and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        self._stop.set()
        self._thread.join()
        for conn in self.open:
            conn.sock.close()
        return self.ended

    def _connect(self, kind: str) -> SlowConn:
        if kind == "tcp":
            sock: socket.socket = socket.create_connection((self.server.host, self.server.port))
        else:
            sock = tls_connect(self.server)
        if kind == "head":
            sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: " + self.server.address.encode())
        elif kind == "body":
            path = f"/v2/slow/loris/blobs/uploads/?digest={ZERO_DIGEST}"
            sock.sendall(request_head(self.server, "POST", path, Content_Length=4096) + b"x" * 10)
        sock.settimeout(0)
        return SlowConn(kind, sock)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.tick):
                for conn in list(self.open):
                    if self._poll(conn):
                        self.open.remove(conn)
                        self.ended.append(conn)
                        conn.sock.close()
                        if self.reopen:
                            self.open.append(self._connect(conn.kind))
        except BaseException as exc:  # shown by the test
            self.error = exc

    def _poll(self, conn: SlowConn) -> bool:
        """True once the server has closed the connection."""
        try:
            if conn.kind == "head":
                conn.sock.send(b"a")
            while chunk := conn.sock.recv(65536):
                conn.received += chunk
            return True
        except (ssl.SSLWantReadError, BlockingIOError):
            return False
        except OSError:  # reset, broken pipe: cut off too
            return True


def test_slowloris_does_not_stop_a_skopeo_copy(
    skopeo: str, server: LiveServer, tmp_path: Path
) -> None:
    image = write_oci_image(tmp_path / "src", ImageSpec(tag="v1"))
    loris = Slowloris(server, {"head": 100, "body": 50, "tcp": 50})
    loris.start()
    assert len(loris.open) == 200

    run_skopeo(
        skopeo,
        "copy",
        *skopeo_auth(server, "dest-"),
        image.reference,
        remote(server, "slow/app:v1"),
        timeout=HANG_GUARD,
    )
    out = tmp_path / "out"
    run_skopeo(
        skopeo,
        "copy",
        *skopeo_auth(server, "src-"),
        remote(server, "slow/app:v1"),
        f"oci:{out}:v1",
        timeout=HANG_GUARD,
    )
    assert oci_layout_digest(out, "v1") == image.digest
    assert loris.error is None and len(loris.open) + len(loris.ended) >= 200

    ended = loris.finish()
    assert loris.error is None
    assert loris.open == [], f"{len(loris.open)} slow connections were never cut off"
    assert len(ended) >= 200
    for conn in ended:
        if conn.kind == "body":
            status, code, _ = oci_error(conn.received)
            assert (status, code) == (408, "SIZE_INVALID")
        else:  # the server closes a connection that never completed its head: no answer
            assert conn.received == b"", conn.received[:200]
    with server.client() as client:
        assert client.get("/v2/").status_code == 200


# ---- an upload body that stops arriving --------------------------------------------------------


@pytest.mark.parametrize("declared", [1 << 20, 12 << 20], ids=["in-memory", "streamed"])
def test_idle_upload_is_cut_and_resumes_at_acknowledged_offset(
    server: LiveServer, declared: int
) -> None:
    first = b"A" * 1000
    rest = bytes(range(256)) * (declared // 256)
    with server.client() as client:
        location = client.post("/v2/slow/idle/blobs/uploads/").headers["location"]
        acked = client.patch(location, content=first, headers={"Content-Range": "0-999"})
        assert acked.status_code == 202

        # A chunk that starts right and then stops after a quarter of its bytes.
        sock = tls_connect(server)
        sock.sendall(
            request_head(
                server,
                "PATCH",
                location,
                Content_Type="application/octet-stream",
                Content_Length=declared,
                Content_Range=f"1000-{1000 + declared - 1}",
            )
            + rest[: declared // 4]
        )
        status, code, _ = oci_error(read_to_close(sock))
        sock.close()
        assert (status, code) == (408, "SIZE_INVALID")

        state = client.get(location)
        assert state.status_code == 204
        assert state.headers["range"] == "0-999"
        resumed = client.patch(
            location,
            content=rest,
            headers={"Content-Range": f"1000-{1000 + len(rest) - 1}"},
        )
        assert resumed.status_code == 202, resumed.text
        digest = digest_bytes(first + rest)
        done = client.put(location, params={"digest": str(digest)})
        assert done.status_code == 201, done.text
        assert client.get(f"/v2/slow/idle/blobs/{digest}").content == first + rest


# ---- the cap on concurrent uploads ---------------------------------------------------------


def test_uploads_beyond_the_cap_get_429(datadir: DataDir, tmp_path: Path) -> None:
    cap = 3
    server = limited_server(datadir, tmp_path / "certs.d", max_concurrent_uploads=cap)
    slots = server.service.app.upload_slots
    try:
        with server.client() as client:
            locations = [
                client.post("/v2/slow/cap/blobs/uploads/").headers["location"]
                for _ in range(cap + 1)
            ]
            slow = []
            for location in locations[:cap]:
                sock = tls_connect(server)
                sock.sendall(request_head(server, "PATCH", location, Content_Length=100) + b"a")
                slow.append(sock)
            wait_for(lambda: slots.in_use == cap)

            refused = client.patch(locations[cap], content=b"b" * 10)
            assert refused.status_code == 429
            assert refused.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
            assert int(refused.headers["retry-after"]) > 0
            # Requests without a body are not held back.
            assert client.get(locations[cap]).headers["range"] == "0-0"

            slow.pop().close()  # one slow upload goes away: its slot is free again
            wait_for(lambda: slots.in_use < cap)
            accepted = client.patch(locations[cap], content=b"b" * 10)
            assert accepted.status_code == 202, accepted.text
            assert accepted.headers["range"] == "0-9"
            for sock in slow:
                sock.close()
            wait_for(lambda: slots.in_use == 0)
    finally:
        server.service.close()


def wait_for(condition: Callable[[], bool]) -> None:
    """Poll `condition()` until true (hang guard: 30 s)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "condition not reached within the hang guard"
        time.sleep(0.02)


# ---- oversized request heads -----------------------------------------------------------------


def test_oversized_header_fields_get_431(server: LiveServer) -> None:
    with server.client() as client:
        # Under the server's read buffer, the app's own cap answers with an OCI body.
        big = client.get("/v2/", headers={"X-Big": "x" * (70 << 10)})
        assert big.status_code == 431
        assert big.json()["errors"][0]["code"]
        assert client.get("/v2/", headers={"X-Fits": "x" * (60 << 10)}).status_code == 200

    # Beyond the server's read buffer (1 MiB), or past 100 fields, hyper answers before the
    # app sees the request: 431 without a body, and the connection is closed.
    for extra in ({"X-Huge": "x" * (2 << 20)}, {f"X-F{i}": "v" for i in range(150)}):
        sock = tls_connect(server)
        with contextlib.suppress(OSError):  # the server may close before reading it all
            sock.sendall(request_head(server, "GET", "/v2/", **extra))
        answer = read_to_close(sock)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
        assert b"\r\ncontent-length: 0\r\n" in answer.lower()
