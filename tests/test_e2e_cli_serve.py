"""`edge-console serve` as a user runs it: enable, info, cert export, serve, then skopeo;
stopped gracefully, and killed with SIGKILL in the middle of uploads and pushes.

Everything goes through subprocesses and real sockets: the CLI in `python -m console`, the
server in its own process, skopeo trusting only the exported CA with the credentials `info`
printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from imagebuilder import ImageSpec, write_docker_dir, write_oci_layout
from support import (
    HANG_GUARD,
    Endpoint,
    blob_files,
    expected_blobs,
    free_port,
    oci_layout_digest,
    remote,
    run_skopeo,
    skopeo_auth,
    wait_until,
)

from registry_core.manifests import DOCKER_MANIFEST, OCI_CONFIG, OCI_MANIFEST
from registry_core.reference import digest_bytes

pytestmark = [pytest.mark.socket, pytest.mark.skopeo]


ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
ACCESS_LINE = re.compile(
    r'edge_registry\.access \S+ "(?P<method>[A-Z]+) (?P<path>\S+)" (?P<status>\d{3}) '
)


def cli_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("EDGE_CONSOLE_DATA", None)
    return env


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m console --data-dir DATA ARGS...`, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "console", "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=ROOT,
        timeout=60,
    )


def cli_ok(data: Path, *args: str) -> str:
    result = cli(data, *args)
    assert result.returncode == 0, f"edge-console {' '.join(args)}: {result.stderr}"
    return result.stdout


@dataclass
class Served(Endpoint):
    """A running `edge-console serve` subprocess and what a client needs to reach it."""

    proc: subprocess.Popen[str]
    data: Path
    stdout: Path
    stderr: Path

    @property
    def state_file(self) -> Path:
        return self.data / "server.json"

    def access_lines(self) -> list[re.Match[str]]:
        lines = self.stderr.read_text(encoding="utf-8").splitlines()
        return [m for m in map(ACCESS_LINE.search, lines) if m is not None]

    def stop(self, signum: int) -> int:
        """Send `signum`; returns the exit code. STOP_TIMEOUT is a hang guard: a server that
        waited for its idle keep-alive connections would never exit."""
        self.proc.send_signal(signum)
        return self.proc.wait(STOP_TIMEOUT)


def enable_and_export(tmp_path: Path) -> tuple[Path, int, dict[str, Any], Path]:
    data = tmp_path / "data"
    port = free_port()
    out = cli_ok(data, "enable", "--node-ip", "127.0.0.1", "--port", str(port))
    assert out.rstrip().endswith("Operation completed successfully.")
    info = json.loads(cli_ok(data, "info", "--json"))
    assert info["ip_address"] == "127.0.0.1"
    cert_dir = tmp_path / "client-certs"
    cert_dir.mkdir()
    exported = json.loads(cli_ok(data, "cert", "export", str(cert_dir / "ca.crt"), "--json"))
    assert Path(exported["path"]) == cert_dir / "ca.crt"
    assert [p.name for p in cert_dir.iterdir()] == ["ca.crt"]
    return data, port, info, cert_dir


def start_serve(
    tmp_path: Path,
    data: Path | None = None,
    port: int = 0,
    cert_dir: Path | None = None,
    prefix: tuple[str, ...] = (),
) -> Served:
    """Enable a data dir, export its CA and serve it; or serve an enabled `data` again.
    `prefix` runs the server under another command (strace, say)."""
    if data is None or cert_dir is None:
        data, port, info, cert_dir = enable_and_export(tmp_path)
    else:
        info = json.loads(cli_ok(data, "info", "--json"))
    run = len(list(tmp_path.glob("serve*.out")))
    stdout, stderr = tmp_path / f"serve{run}.out", tmp_path / f"serve{run}.err"
    with open(stdout, "w") as out, open(stderr, "w") as err:
        proc = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "console",
                "--data-dir",
                str(data),
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=err,
            text=True,
            env=cli_env(),
            cwd=ROOT,
        )
    served = Served(
        "127.0.0.1", port, info["username"], info["password"], cert_dir, proc, data, stdout, stderr
    )
    try:
        wait_ready(served)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return served


def wait_ready(served: Served) -> None:
    """Poll /v2/ over TLS, trusting only the exported CA, until it answers 200."""
    deadline = time.monotonic() + READY_TIMEOUT
    last: object = None
    with served.client() as client:
        while time.monotonic() < deadline:
            if served.proc.poll() is not None:
                pytest.fail(
                    f"serve exited with {served.proc.returncode}: {served.stderr.read_text()}"
                )
            try:
                response = client.get("/v2/", timeout=2)
            except httpx.TransportError as exc:
                last = exc
            else:
                assert response.status_code == 200, response.text
                return
            time.sleep(0.1)
    pytest.fail(f"serve did not answer within {READY_TIMEOUT}s: {last!r}")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = start_serve(tmp_path)
    yield server
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()


# ---- the tests --------------------------------------------------------------------------------


def test_serve_push_pull_delete_and_sigterm(served: Served, skopeo: str, tmp_path: Path) -> None:
    # The state file names this process while it serves.
    state = json.loads(served.state_file.read_text())
    assert state["pid"] == served.proc.pid
    assert state["listen"] == served.address

    v1, v2 = write_oci_layout(tmp_path / "src-oci", (ImageSpec(tag="v1"), ImageSpec(tag="v2")))
    docker = write_docker_dir(tmp_path / "src-docker", ImageSpec(tag="docker"))

    for image, ref in ((v1, "edge/app:v1"), (v2, "edge/app:v2"), (docker, "edge/docker:1")):
        run_skopeo(
            skopeo, "copy", *skopeo_auth(served, "dest-"), image.reference, remote(served, ref)
        )

    out = tmp_path / "pulled"
    out.mkdir()
    run_skopeo(
        skopeo,
        "copy",
        *skopeo_auth(served, "src-"),
        remote(served, "edge/app:v1"),
        f"oci:{out / 'v1'}:v1",
    )
    assert oci_layout_digest(out / "v1", "v1") == v1.digest
    assert blob_files(out / "v1" / "blobs" / "sha256") == expected_blobs(v1)

    tags = json.loads(
        run_skopeo(skopeo, "list-tags", *skopeo_auth(served), remote(served, "edge/app"))
    )
    assert tags == {"Repository": f"{served.address}/edge/app", "Tags": ["v1", "v2"]}

    info = json.loads(
        run_skopeo(skopeo, "inspect", *skopeo_auth(served), remote(served, "edge/docker:1"))
    )
    assert info["Digest"] == str(docker.digest)
    assert info["Layers"] == [str(d) for d in docker.layer_digests]
    raw = run_skopeo(
        skopeo, "inspect", "--raw", *skopeo_auth(served), remote(served, "edge/app:v2")
    )
    assert raw.encode() == v2.body

    with served.client() as client:
        head = client.head("/v2/edge/docker/manifests/1", headers={"Accept": DOCKER_MANIFEST})
        assert head.status_code == 200
        assert head.headers["docker-content-digest"] == str(docker.digest)
        assert head.headers["content-type"] == DOCKER_MANIFEST
        assert head.headers["content-length"] == str(docker.size)

        deleted = client.delete(f"/v2/edge/app/manifests/{v1.digest}")
        assert deleted.status_code == 202

    failed = subprocess.run(
        [
            skopeo,
            "--insecure-policy",
            "copy",
            *skopeo_auth(served, "src-"),
            remote(served, "edge/app:v1"),
            f"oci:{out / 'gone'}:v1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode != 0
    assert "manifest unknown" in failed.stderr.lower()
    tags = json.loads(
        run_skopeo(skopeo, "list-tags", *skopeo_auth(served), remote(served, "edge/app"))
    )
    assert tags["Tags"] == ["v2"]

    # The others still come back with identical digests.
    run_skopeo(
        skopeo,
        "copy",
        "--preserve-digests",
        *skopeo_auth(served, "src-"),
        remote(served, "edge/app:v2"),
        f"oci:{out / 'v2'}:v2",
    )
    assert oci_layout_digest(out / "v2", "v2") == v2.digest
    assert blob_files(out / "v2" / "blobs" / "sha256") == expected_blobs(v2)
    run_skopeo(
        skopeo,
        "copy",
        "--preserve-digests",
        *skopeo_auth(served, "src-"),
        remote(served, "edge/docker:1"),
        f"dir:{out / 'docker'}",
    )
    assert digest_bytes((out / "docker" / "manifest.json").read_bytes()) == docker.digest
    assert blob_files(out / "docker") == {str(d) for d in docker.blob_digests}

    # One access line per request on stderr: each of these distinct paths appears once.
    probes = [f"/v2/edge/probe{i}/tags/list" for i in range(5)]
    with served.client() as client:
        for path in probes:
            assert client.get(path).status_code == 404
    # The line is written just after the response is sent.
    wait_until(lambda: {m["path"] for m in served.access_lines()} >= set(probes),
               "an access line for each probe")
    time.sleep(0.2)  # a duplicate line would come right after the first
    lines = served.access_lines()
    for path in probes:
        hits = [m for m in lines if m["path"] == path]
        assert len(hits) == 1, path
        assert hits[0]["method"] == "GET"
        assert hits[0]["status"] == "404"
    assert any(m["method"] == "DELETE" and m["status"] == "202" for m in lines)
    assert any(m["method"] == "PUT" and m["path"] == "/v2/edge/app/manifests/v2" for m in lines)

    code = served.stop(signal.SIGTERM)
    assert code == 0, served.stderr.read_text()
    assert "Registry stopped." in served.stdout.read_text()
    assert not served.state_file.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{served.url}/v2/", verify=served.ssl_context(), timeout=2)


def test_serve_stops_on_sigint(served: Served) -> None:
    assert served.state_file.exists()
    with served.client() as client:
        assert client.get("/v2/").status_code == 200
        # A keep-alive connection stays open while the server shuts down.
        code = served.stop(signal.SIGINT)
    assert code == 0, served.stderr.read_text()
    assert "Registry stopped." in served.stdout.read_text()
    assert "Traceback" not in served.stderr.read_text()
    assert not served.state_file.exists()


def test_sigterm_lets_an_upload_in_flight_finish(served: Served, tmp_path: Path) -> None:
    """Graceful: a PATCH still streaming when SIGTERM arrives completes and is kept."""
    chunk, count = os.urandom(256 * 1024), 16
    data = chunk * count
    sent_first = threading.Event()

    def body() -> Iterator[bytes]:
        for i in range(count):
            yield chunk
            if i == 0:
                sent_first.set()
            time.sleep(0.2)

    with served.client() as client:
        started = client.post("/v2/edge/inflight/blobs/uploads/")
        assert started.status_code == 202
        location = started.headers["location"]
        result: dict[str, Any] = {}

        def upload() -> None:
            try:
                result["response"] = client.patch(
                    location,
                    content=body(),
                    headers={"Content-Type": "application/octet-stream"},
                    timeout=30,
                )
            except BaseException as exc:
                result["error"] = exc

        thread = threading.Thread(target=upload)
        thread.start()
        assert sent_first.wait(10)
        served.proc.send_signal(signal.SIGTERM)
        # The server stops accepting connections while the upload is still streaming.
        refused_mid_upload = False
        while thread.is_alive() and not refused_mid_upload:
            try:
                socket.create_connection(("127.0.0.1", served.port), timeout=0.5).close()
            except OSError:
                refused_mid_upload = thread.is_alive()
            time.sleep(0.05)
        thread.join(30)
        code = served.proc.wait(STOP_TIMEOUT)
    assert refused_mid_upload, "the upload ended before the server began to stop"
    assert "error" not in result, result.get("error")
    response = result["response"]
    assert response.status_code == 202, response.text
    assert response.headers["range"] == f"0-{len(data) - 1}"
    assert code == 0, served.stderr.read_text()
    assert not served.state_file.exists()

    # Serve the same data dir again: the upload is there, whole, and can be finished.
    again = start_serve(tmp_path, served.data, served.port, served.cert_dir)
    try:
        with again.client() as client:
            status = client.get(location)
            assert status.status_code == 204
            assert status.headers["range"] == f"0-{len(data) - 1}"
            digest = digest_bytes(data)
            done = client.put(location, params={"digest": str(digest)})
            assert done.status_code == 201, done.text
            assert client.get(f"/v2/edge/inflight/blobs/{digest}").content == data
        assert again.stop(signal.SIGTERM) == 0
    finally:
        if again.proc.poll() is None:
            again.proc.kill()
            again.proc.wait()


# ---- a crash at any instant ------------------------------------------------------------------


def slow_body(size: int, started: threading.Event, stop: threading.Event) -> Iterator[bytes]:
    """A chunk body that goes on until `stop` (or the hang guard): it must outlive the server,
    however long the pushes beside it take on a loaded machine."""
    for i in range(int(HANG_GUARD / 0.05)):
        if stop.is_set():
            return
        yield os.urandom(size)
        if i == 0:
            started.set()
        time.sleep(0.05)


def oci_manifest(config: bytes, layers: list[bytes]) -> bytes:
    """An OCI image manifest body naming these config and layer blobs."""

    def descriptor(media_type: str, data: bytes) -> dict[str, object]:
        return {"mediaType": media_type, "digest": str(digest_bytes(data)), "size": len(data)}

    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", d) for d in layers],
    }
    return json.dumps(doc).encode()


def push_image(client: httpx.Client, repo: str, tag: str) -> tuple[str, bytes]:
    """Monolithic blob uploads and a manifest PUT; returns the manifest digest and body."""
    layer, config = os.urandom(200_000), json.dumps({"architecture": "amd64"}).encode()
    for blob in (layer, config):
        r = client.post(
            f"/v2/{repo}/blobs/uploads/",
            params={"digest": str(digest_bytes(blob))},
            content=blob,
        )
        assert r.status_code == 201, r.text
    body = oci_manifest(config, [layer])
    r = client.put(
        f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 201, r.text
    return r.headers["docker-content-digest"], body


def pusher(
    served: Served, acked: list[tuple[str, str, str, bytes]], stop: threading.Event, n: int
) -> None:
    """Push images until the server dies; record each one the server acknowledged."""
    with served.client() as client:
        for i in range(10_000):
            if stop.is_set():
                return
            try:
                digest, body = push_image(client, "crash/app", f"p{n}-t{i}")
            except (httpx.HTTPError, AssertionError):
                return
            acked.append(("crash/app", f"p{n}-t{i}", digest, body))


def assert_store_consistent(data: Path) -> None:
    """Every blob file's name is the digest of its content and every stored row has its file."""
    for path in (data / "blobs" / "sha256").rglob("*"):
        if path.is_file():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, path
    with sqlite3.connect(data / "registry.db") as conn:
        for (digest,) in conn.execute("SELECT digest FROM blobs"):
            algorithm, hex_ = digest.split(":")
            assert (data / "blobs" / algorithm / hex_[:2] / hex_).is_file(), digest


def test_sigkill_loses_nothing_acknowledged(served: Served, tmp_path: Path) -> None:
    acked: list[tuple[str, str, str, bytes]] = []
    stop = threading.Event()
    with served.client() as client:
        # An upload with two acknowledged chunks, and one still streaming at the kill.
        start = client.post("/v2/crash/big/blobs/uploads/")
        location = start.headers["location"]
        first, second = os.urandom(1 << 20), os.urandom(1 << 20)
        for offset, chunk in ((0, first), (len(first), second)):
            r = client.patch(
                location,
                content=chunk,
                headers={"Content-Range": f"{offset}-{offset + len(chunk) - 1}"},
            )
            assert r.status_code == 202, r.text
        streaming = threading.Event()
        result: dict[str, Any] = {}

        def stream() -> None:
            try:
                result["r"] = client.patch(
                    location, content=slow_body(256 << 10, streaming, stop), timeout=60
                )
            except httpx.HTTPError as exc:
                result["error"] = exc

        threads = [threading.Thread(target=stream)]
        threads += [
            threading.Thread(target=pusher, args=(served, acked, stop, n)) for n in range(3)
        ]
        for t in threads:
            t.start()
        assert streaming.wait(10)
        wait_until(lambda: len(acked) >= 10, "ten acknowledged pushes")
        served.proc.send_signal(signal.SIGKILL)
        served.proc.wait(10)
        stop.set()
        for t in threads:
            t.join(30)
    assert "r" not in result, "the streaming chunk cannot have been acknowledged"

    assert_store_consistent(served.data)
    again = start_serve(tmp_path, served.data, served.port, served.cert_dir)
    try:
        with again.client() as client:
            for repo, tag, digest, body in acked:
                r = client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
                assert r.status_code == 200 and r.content == body, (tag, r.status_code)
                assert r.headers["docker-content-digest"] == digest
                for layer in json.loads(body)["layers"]:
                    blob = client.get(f"/v2/{repo}/blobs/{layer['digest']}")
                    assert str(digest_bytes(blob.content)) == layer["digest"]
            # The upload resumes at its last acknowledged byte: the streamed tail is gone.
            status = client.get(location)
            assert status.status_code == 204
            assert status.headers["range"] == f"0-{len(first) + len(second) - 1}"
            digest = digest_bytes(first + second)
            done = client.put(location, params={"digest": str(digest)})
            assert done.status_code == 201, done.text
            assert client.get(f"/v2/crash/big/blobs/{digest}").content == first + second
        assert again.stop(signal.SIGTERM) == 0
    finally:
        if again.proc.poll() is None:
            again.proc.kill()
            again.proc.wait()
    assert_store_consistent(served.data)
