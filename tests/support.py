"""Helpers shared by the test modules (import as `from support import ...`).

Kept out of conftest.py: with a conftest.py in tests/console too, `from conftest import`
would be ambiguous.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from imagebuilder import REF_NAME, BuiltImage

from registry_core.access.credentials import read_credentials
from registry_core.datadir import DataDir
from registry_core.enablement import enable
from registry_core.identity import CONSOLE
from registry_core.ingest import IngestBlob, IngestManifest
from registry_core.reference import Digest, digest_bytes
from registry_core.registry import Registry
from registry_core.service import RegistryService
from registry_core.sync.connection import parse_connection_string
from registry_core.sync.settings import configure

HANG_GUARD = 60.0
"""Longest a test waits for something that should happen (a hang guard, not a timing)."""

_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, never one handed out before in this session (the kernel
    can give the same free port twice in a row, before either is bound)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def require_tool(name: str) -> str:
    """Path of a command-line tool; skip without it, except in CI where it must exist."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI (.ci/run installs it)")
        pytest.skip(f"{name} is not installed (Debian package {name})")
    return path


def basic_auth_header(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return f"Basic {token}"


@dataclass
class Endpoint:
    """What a client needs to reach a running registry over TLS."""

    host: str
    port: int
    username: str
    password: str
    cert_dir: Path
    """A directory holding only ca.crt, as skopeo's --*-cert-dir wants."""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.address}"

    @property
    def creds(self) -> str:
        return f"{self.username}:{self.password}"

    @property
    def ca_cert(self) -> Path:
        return self.cert_dir / "ca.crt"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def client(self, **kwargs: Any) -> httpx.Client:
        """A client of the registry; it waits up to HANG_GUARD for an answer (httpx's 5 s
        default fails tests on a loaded machine, not products)."""
        kwargs.setdefault("timeout", HANG_GUARD)
        return httpx.Client(
            base_url=self.url,
            verify=self.ssl_context(),
            auth=(self.username, self.password),
            **kwargs,
        )


@dataclass
class LiveServer(Endpoint):
    """The registry served in this process (its own thread and event loop)."""

    service: RegistryService


def start_live_server(datadir: DataDir, cert_dir: Path) -> LiveServer:
    service = RegistryService(datadir)
    port = service.config.port
    service.start(f"127.0.0.1:{port}")
    username, password = read_credentials(datadir)
    cert_dir.mkdir(exist_ok=True)
    shutil.copy(datadir.ca_cert, cert_dir / "ca.crt")
    return LiveServer("127.0.0.1", port, username, password, cert_dir, service)


def run_skopeo(skopeo: str, *args: str, timeout: float = 300) -> str:
    """Run skopeo; on failure the assertion shows its stderr."""
    proc = subprocess.run(
        [skopeo, "--insecure-policy", *args], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"skopeo {' '.join(args)} failed: {proc.stderr.strip()}"
    return proc.stdout


# ---- skopeo against an Endpoint ---------------------------------------------------------------


def remote(server: Endpoint, ref: str) -> str:
    return f"docker://{server.address}/{ref}"


def skopeo_auth(server: Endpoint, prefix: str = "") -> list[str]:
    """Credentials and CA for skopeo; prefix "src-" or "dest-" for `copy`."""
    return [f"--{prefix}creds", server.creds, f"--{prefix}cert-dir", str(server.cert_dir)]


def blob_files(directory: Path) -> set[str]:
    """Digests of the blob files in a directory, each checked against its content."""
    names = set()
    for path in directory.iterdir():
        if len(path.name) == 64:
            assert digest_bytes(path.read_bytes()).hex == path.name, path
            names.add(f"sha256:{path.name}")
    return names


def oci_layout_digest(layout: Path, tag: str) -> Digest:
    """The digest index.json names for `tag`, after checking the blobs match their names."""
    index = json.loads((layout / "index.json").read_bytes())
    found = [d for d in index["manifests"] if d.get("annotations", {}).get(REF_NAME) == tag]
    assert len(found) == 1, index
    blob_files(layout / "blobs" / "sha256")
    return Digest("sha256", found[0]["digest"].removeprefix("sha256:"))


def expected_blobs(image: BuiltImage) -> set[str]:
    """The manifest(s) plus every config and layer of a built image."""
    digests = {str(image.digest)} | {str(m.digest) for m in image.manifests}
    return digests | {str(d) for d in image.blob_digests}


def put_on_parent(parent: Registry, repository: str, image: BuiltImage, tag: str) -> None:
    """An image built on disk stored in `parent` (a registry a sync test copies from)."""
    blobs = {}
    for child in image.manifests:
        for blob in (child.config, *child.layers):
            path = image.path / "blobs" / blob.digest.algorithm / blob.digest.hex
            blobs[blob.digest] = IngestBlob(blob.digest, blob.size, path)
    manifests = [IngestManifest(c.body, c.media_type) for c in image.manifests]
    if image.media_type.endswith("index.v1+json"):
        manifests.append(IngestManifest(image.body, image.media_type))
    parent.ingest.commit(repository, list(blobs.values()), manifests, {tag: image.digest},
                         who=CONSOLE)


def connected_site(root: Path, parent: LiveServer, endpoint: str | None = None,
                   **settings: Any) -> DataDir:
    """An enabled data dir configured as a connected registry of `parent` (reached at
    `endpoint`, e.g. a proxy's, when given), for `shop/*` unless `settings` say otherwise."""
    datadir = DataDir(root)
    enable(datadir, device_name="site", dns_domain="test", node_ip="127.0.0.1",
           port=free_port())
    connection = parse_connection_string(
        f"ConnectedRegistryName=edgesite1;SyncTokenName={parent.username};"
        f"SyncTokenPassword={parent.password};"
        f"ParentGatewayEndpoint={endpoint or parent.address};ParentEndpointProtocol=https")
    configure(datadir, connection=connection, parent_ca=parent.cert_dir / "ca.crt",
              **{"repositories": ["shop/*"], **settings})
    return datadir


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds; fail after the hang guard."""
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def running(pid: int) -> bool:
    """The process is alive and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
