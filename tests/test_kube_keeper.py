"""The serving process's secret keeper on a bad link: a watch cut mid-stream resumes from its
last resourceVersion; one away for so long that the server forgot that version (410) lists
the namespaces again. The link is a real TCP proxy in front of the real kube-apiserver."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import kubernetes.client as k8s
import pytest
from cutting_proxy import CuttingProxy
from kubebed import KubeBed, Process, http_ok, start_bed, stop_all
from kubebed import eventually as bed_eventually

from registry_core.access.credentials import read_credentials
from registry_core.config import load_config
from registry_core.datadir import DataDir
from registry_core.kube import Cluster, SecretKeeper
from registry_core.kube.pull_secrets import Credentials, dockerconfigjson
from registry_core.kube.settings import KubeSettings
from registry_core.registry import Registry

pytestmark = pytest.mark.kube

HANG_GUARD = 60.0
T = TypeVar("T")


def eventually(probe: Callable[[], T | None], what: str) -> T:
    deadline = time.monotonic() + HANG_GUARD
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


@pytest.fixture
def proxy(kube_apiserver: KubeBed) -> Iterator[CuttingProxy]:
    server = urlsplit(kube_apiserver.server)
    with CuttingProxy((server.hostname or "127.0.0.1", server.port or 443)) as proxy:
        yield proxy


@pytest.fixture
def keeper(datadir: DataDir, kube_apiserver: KubeBed, proxy: CuttingProxy,
           tmp_path: Path) -> Iterator[SecretKeeper]:
    config = json.loads(kube_apiserver.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://{proxy.address}"
    through_proxy = tmp_path / "through-proxy.kubeconfig"
    through_proxy.write_text(json.dumps(config))
    settings = KubeSettings(through_proxy, kube_apiserver.context, "test")
    registry = Registry(datadir)
    keeper = SecretKeeper(lambda: Cluster(registry, settings), watch_seconds=60)
    keeper.start()
    try:
        yield keeper
    finally:
        keeper.stop()
        registry.close()


def has_our_secret(core: k8s.CoreV1Api, namespace: str, datadir: DataDir) -> bool:
    username, password = read_credentials(datadir)
    creds = Credentials(load_config(datadir.config).endpoint, username, password)
    try:
        secret = core.read_namespaced_secret("ase-ecr-credentials", namespace)
    except k8s.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    import base64

    return base64.b64decode(secret.data[".dockerconfigjson"]) == dockerconfigjson(creds)


def new_namespace(core: k8s.CoreV1Api, name: str) -> str:
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    return name


def test_a_cut_watch_resumes_from_its_resource_version(
    keeper: SecretKeeper, proxy: CuttingProxy, datadir: DataDir, kube_client: k8s.ApiClient,
    kube_namespace: str,
) -> None:
    core = k8s.CoreV1Api(kube_client)
    eventually(lambda: keeper.state.watching, "the keeper watching")
    eventually(lambda: has_our_secret(core, kube_namespace, datadir), "the first pass")
    passes = keeper.state.passes

    assert proxy.cut() >= 1  # the watch's connection, mid-stream
    created = new_namespace(core, f"{kube_namespace}-during-cut")
    eventually(lambda: has_our_secret(core, created, datadir), "the namespace made in the cut")
    assert keeper.state.resumes >= 1
    assert keeper.state.passes == passes  # resumed, not listed again


@pytest.fixture
def private_bed(tmp_path: Path) -> Iterator[tuple[KubeBed, list[Process]]]:
    """A bed of this test's own: its kube-apiserver gets restarted."""
    workdir = tmp_path / "bed"
    workdir.mkdir()
    bed, processes = start_bed(workdir)
    try:
        yield bed, processes
    finally:
        stop_all(processes)


def restart_apiserver(bed: KubeBed, processes: list[Process]) -> None:
    """A restart empties the server's watch cache: older resourceVersions are 410 Gone."""
    old = processes[-1]
    old.stop()
    processes[-1] = Process.start(old.name, old.popen.args, old.log.with_suffix(".restart.log"))
    context = bed.ssl_context()
    bed_eventually(lambda: http_ok(f"{bed.server}/readyz", verify=context, token=bed.token),
                   what="kube-apiserver /readyz after a restart", timeout=HANG_GUARD,
                   watch=processes)


def test_a_version_the_server_forgot_lists_again(
    private_bed: tuple[KubeBed, list[Process]], datadir: DataDir, tmp_path: Path
) -> None:
    bed, processes = private_bed
    server = urlsplit(bed.server)
    with CuttingProxy((server.hostname or "127.0.0.1", server.port or 443)) as link:
        config = json.loads(bed.kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = f"https://{link.address}"
        kubeconfig = tmp_path / "through-proxy.kubeconfig"
        kubeconfig.write_text(json.dumps(config))
        registry = Registry(datadir)
        keeper = SecretKeeper(lambda: Cluster(registry, KubeSettings(kubeconfig, bed.context,
                                                                      "test")))
        client = bed.api_client()
        try:
            keeper.start()
            eventually(lambda: keeper.state.watching, "the keeper watching")
            passes = keeper.state.passes

            link.down.set()
            link.cut()
            core = k8s.CoreV1Api(client)
            created = new_namespace(core, "made-while-away")
            restart_apiserver(bed, processes)
            link.down.clear()

            eventually(lambda: has_our_secret(core, created, datadir), "the namespace's secret")
            assert keeper.state.expired == 1
            assert keeper.state.passes == passes + 1  # 410 Gone: listed again, then watched
        finally:
            keeper.stop()
            client.close()  # type: ignore[no-untyped-call]
            registry.close()
