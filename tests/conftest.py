"""Shared fixtures: an enabled data dir, the registry, an ASGI client and a live TLS server.

Tools the machine lacks (skopeo) make their tests skip with a reason on a user's machine;
under CI (CI=true) a missing tool is an error, never a skip. Helpers live in support.py.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, settings
from support import LiveServer, free_port, require_tool, start_live_server

from registry_core.access.credentials import Authenticator, read_credentials
from registry_core.datadir import DataDir
from registry_core.enablement import enable
from registry_core.http.app import RegistryApp
from registry_core.http.observability import ObservedApp
from registry_core.registry import Registry

# No test touches a cluster of the developer's (a serving registry keeps pull secrets in
# the cluster its kubeconfig names): only the test bed's, given explicitly.
os.environ["KUBECONFIG"] = os.path.join(tempfile.gettempdir(), "edge-console-tests-no-cluster")

# The Kubernetes test bed's fixtures (kube_apiserver, kube_controllers, kube_client,
# kube_namespace): see kubebed.py. The sync's parent registries (reference_parent,
# token_parent): see parents.py.
pytest_plugins = ["kubebed", "parents"]

# Property tests check correctness, not speed (benchmarks do that): no per-example deadline,
# which a loaded CI machine would turn into flakes.
settings.register_profile("edge", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("edge")


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


@pytest.fixture
async def api(
    datadir: DataDir, registry: Registry, credentials: tuple[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the ASGI app as served (in-process, authenticated)."""
    app = ObservedApp(RegistryApp(registry, Authenticator(datadir)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://registry.test", auth=credentials
    ) as client:
        yield client


@pytest.fixture
def live_server(datadir: DataDir, tmp_path: Path) -> Iterator[LiveServer]:
    """The real server over TLS on 127.0.0.1, in this process (its own thread and loop)."""
    server = start_live_server(datadir, tmp_path / "certs.d")
    yield server
    server.service.close()


@pytest.fixture
def skopeo() -> str:
    return require_tool("skopeo")
