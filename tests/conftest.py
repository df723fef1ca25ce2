"""Shared fixtures: an enabled data dir, the registry, an ASGI client and a live TLS server.

Tools the machine lacks (skopeo) make their tests skip with a reason on a user's machine;
under CI (CI=true) a missing tool is an error, never a skip.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry_core.auth import read_credentials
from registry_core.datadir import DataDir
from registry_core.enablement import enable
from registry_core.http.app import RegistryApp
from registry_core.registry import Registry
from registry_core.service import RegistryService


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_tool(name: str) -> str:
    """Path of a command-line tool; skip without it, except in CI where it must exist."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI (.ci/run installs it)")
        pytest.skip(f"{name} is not installed (Debian package {name})")
    return path


@pytest.fixture
def datadir(tmp_path: Path) -> DataDir:
    """A freshly enabled data dir (certificates, credentials, config) on a free port."""
    d = DataDir(tmp_path / "data")
    enable(d, device_name="edge", dns_domain="test", node_ip="127.0.0.1", port=free_port())
    return d


@pytest.fixture
def registry(datadir: DataDir) -> Iterator[Registry]:
    reg = Registry(datadir)
    yield reg
    reg.close()


@pytest.fixture
def credentials(datadir: DataDir) -> tuple[str, str]:
    return read_credentials(datadir)


def basic_auth_header(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return f"Basic {token}"


@pytest.fixture
async def api(
    datadir: DataDir, registry: Registry, credentials: tuple[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the ASGI app (in-process, authenticated)."""
    from registry_core.auth import Authenticator

    app = RegistryApp(registry, Authenticator(datadir).check)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://registry.test", auth=credentials
    ) as client:
        yield client


@dataclass
class LiveServer:
    service: RegistryService
    host: str
    port: int
    username: str
    password: str
    ca_cert: Path
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

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            verify=self.ssl_context(),
            auth=(self.username, self.password),
            **kwargs,
        )


def start_live_server(datadir: DataDir, cert_dir: Path) -> LiveServer:
    service = RegistryService(datadir)
    port = service.config.port
    service.start(f"127.0.0.1:{port}")
    username, password = read_credentials(datadir)
    cert_dir.mkdir(exist_ok=True)
    shutil.copy(datadir.ca_cert, cert_dir / "ca.crt")
    return LiveServer(service, "127.0.0.1", port, username, password, datadir.ca_cert, cert_dir)


@pytest.fixture
def live_server(datadir: DataDir, tmp_path: Path) -> Iterator[LiveServer]:
    """The real server over TLS on 127.0.0.1, in this process (its own thread and loop)."""
    server = start_live_server(datadir, tmp_path / "certs.d")
    yield server
    server.service.close()


@pytest.fixture
def skopeo() -> str:
    return require_tool("skopeo")


def run_skopeo(skopeo: str, *args: str, timeout: float = 300) -> str:
    """Run skopeo; on failure the assertion shows its stderr."""
    proc = subprocess.run(
        [skopeo, "--insecure-policy", *args], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"skopeo {' '.join(args)} failed: {proc.stderr.strip()}"
    return proc.stdout
