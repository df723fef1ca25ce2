"""The cluster side against a real kube-apiserver (tests/kubebed.py): pull secrets applied,
repaired and kept while `serve` runs, images in use, and the clean errors."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import kubernetes.client as k8s
import pytest
from kubebed import KubeBed, container_status, write_pod_status
from support import free_port

from registry_core.access.credentials import read_credentials
from registry_core.config import load_config, save_config
from registry_core.datadir import DataDir
from registry_core.identity import CONSOLE
from registry_core.kube import Cluster
from registry_core.kube.api import Json, KubeApi
from registry_core.kube.pull_secrets import MANAGED_LABEL, Credentials, apply_one, dockerconfigjson
from registry_core.manifests import OCI_CONFIG, OCI_MANIFEST
from registry_core.reference import digest_bytes
from registry_core.registry import Registry

pytestmark = pytest.mark.kube

ROOT = Path(__file__).resolve().parent.parent
SECRET = "ase-ecr-credentials"
HANG_GUARD = 60.0
T = TypeVar("T")


@pytest.fixture
def plain_data(datadir: DataDir) -> DataDir:
    """An enabled data dir with its store, as a registry that has served has it."""
    Registry(datadir).close()
    return datadir


@pytest.fixture
def cluster_data(plain_data: DataDir, kube_apiserver: KubeBed) -> DataDir:
    """... whose config.toml names the test bed's kubeconfig."""
    config = load_config(plain_data.config)
    config.kubernetes.kubeconfig = str(kube_apiserver.kubeconfig)
    save_config(config, plain_data.config)
    return plain_data


@pytest.fixture
def core(kube_client: k8s.ApiClient) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(kube_client)


def cli(data: DataDir, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "console", "--data-dir", str(data.root), *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )


def cli_json(data: DataDir, *args: str, code: int = 0) -> Any:
    result = cli(data, *args, "--json")
    assert result.returncode == code, result.stderr
    return json.loads(result.stdout)


def expected_creds(data: DataDir) -> Credentials:
    username, password = read_credentials(data)
    return Credentials(load_config(data.config).endpoint, username, password)


def make_secret(core: k8s.CoreV1Api, namespace: str, content: bytes,
                kind: str = "kubernetes.io/dockerconfigjson") -> None:
    body = k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name=SECRET, labels={"team": "shop"},
                                  annotations={"note": "made by hand"}),
        type=kind,
        data={".dockerconfigjson": base64.b64encode(content).decode()},
    )
    core.create_namespaced_secret(namespace, body)


def read_secret(core: k8s.CoreV1Api, namespace: str) -> Json:
    response = core.read_namespaced_secret(SECRET, namespace, _preload_content=False)
    secret: Json = json.loads(response.data)
    return secret


def new_namespace(core: k8s.CoreV1Api, name: str) -> str:
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    return name


def eventually(probe: Callable[[], T | None], what: str) -> T:
    """Poll until `probe` gives a value; the deadline only guards against a hang."""
    deadline = time.monotonic() + HANG_GUARD
    while True:
        value = probe()
        if value is not None:
            return value
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.1)


def test_apply_secrets_makes_every_namespace_ok(
    cluster_data: DataDir, core: k8s.CoreV1Api, kube_namespace: str
) -> None:
    creds = expected_creds(cluster_data)
    stale = new_namespace(core, f"{kube_namespace}-stale")
    wrong_type = new_namespace(core, f"{kube_namespace}-opaque")
    old = Credentials(creds.endpoint, creds.username, "an-old-password")
    make_secret(core, stale, dockerconfigjson(old))
    make_secret(core, wrong_type, dockerconfigjson(creds), kind="Opaque")

    before = {n["name"]: n["pull_secret"] for n in cli_json(cluster_data, "kube", "status")
              ["namespaces"]}
    assert (before[kube_namespace], before[stale], before[wrong_type]) == (
        "missing", "stale", "stale")
    assert before["kube-system"] == before["kube-public"] == "skipped"

    applied = cli_json(cluster_data, "kube", "apply-secrets")
    actions = {n["namespace"]: n["action"] for n in applied["namespaces"]}
    assert (actions[kube_namespace], actions[stale], actions[wrong_type]) == (
        "created", "repaired", "repaired")
    assert applied["failed"] == 0

    status = cli_json(cluster_data, "kube", "status")
    assert status["reachable"] is True
    states = {n["name"]: n["pull_secret"] for n in status["namespaces"]}
    assert set(states.values()) <= {"ok", "skipped"}
    assert {n for n, s in states.items() if s == "skipped"} >= {"kube-system", "kube-public"}
    for namespace in (kube_namespace, stale, wrong_type):
        secret = read_secret(core, namespace)
        assert secret["type"] == "kubernetes.io/dockerconfigjson"
        assert base64.b64decode(secret["data"][".dockerconfigjson"]) == dockerconfigjson(creds)
        assert secret["metadata"]["labels"][MANAGED_LABEL] == "edge-console"
    for namespace in (stale, wrong_type):  # what was there is kept
        meta = read_secret(core, namespace)["metadata"]
        assert meta["labels"]["team"] == "shop"
        assert meta["annotations"]["note"] == "made by hand"

    again = cli_json(cluster_data, "kube", "apply-secrets")
    assert {n["action"] for n in again["namespaces"]} <= {"unchanged", "skipped"}


def test_one_namespace_only(cluster_data: DataDir, core: k8s.CoreV1Api,
                            kube_namespace: str) -> None:
    other = new_namespace(core, f"{kube_namespace}-other")
    applied = cli_json(cluster_data, "kube", "apply-secrets", "--namespace", kube_namespace)
    assert [(n["namespace"], n["action"]) for n in applied["namespaces"]] == [
        (kube_namespace, "created")]
    states = {n["name"]: n["pull_secret"] for n in cli_json(cluster_data, "kube", "status")
              ["namespaces"]}
    assert (states[kube_namespace], states[other]) == ("ok", "missing")


class RacingApi(KubeApi):
    """The real API, with someone else changing the secret between our read and our
    write, once: the server then answers our replace with a real 409."""

    def __init__(self, api: KubeApi, core: k8s.CoreV1Api) -> None:
        super().__init__(api.client, api.server, api.context)
        self.core = core
        self.raced = 0

    def replace(self, path: str, body: Json) -> Json:
        if not self.raced:
            self.raced += 1
            meta = body["metadata"]
            self.core.patch_namespaced_secret(
                meta["name"], meta["namespace"], {"metadata": {"labels": {"racer": "was-here"}}}
            )
        return super().replace(path, body)


def test_a_conflict_is_retried_on_the_fresh_object(
    cluster_data: DataDir, core: k8s.CoreV1Api, kube_namespace: str
) -> None:
    creds = expected_creds(cluster_data)
    make_secret(core, kube_namespace, dockerconfigjson(
        Credentials(creds.endpoint, creds.username, "old")))
    registry = Registry(cluster_data)
    cluster = Cluster.open(registry)
    try:
        racing = RacingApi(cluster.api, core)
        result = apply_one(racing, kube_namespace, SECRET, creds)
    finally:
        cluster.close()
        registry.close()
    assert racing.raced == 1
    assert result.action == "repaired"
    secret = read_secret(core, kube_namespace)
    assert secret["metadata"]["labels"]["racer"] == "was-here"  # their change is kept
    assert base64.b64decode(secret["data"][".dockerconfigjson"]) == dockerconfigjson(creds)


def test_kube_status_on_an_unreachable_server_is_a_clean_error(
    plain_data: DataDir, kube_apiserver: KubeBed, tmp_path: Path
) -> None:
    datadir = plain_data
    config = json.loads(kube_apiserver.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    closed = tmp_path / "closed-port.kubeconfig"
    closed.write_text(json.dumps(config))

    result = cli(datadir, "kube", "status", "--kubeconfig", str(closed))
    assert result.returncode == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("edge-console: error: cluster not reachable: ")
    as_json = cli_json(datadir, "kube", "status", "--kubeconfig", str(closed), code=1)
    assert as_json["reachable"] is False and "not reachable" in as_json["error"]

    missing = cli(datadir, "kube", "apply-secrets", "--kubeconfig", str(tmp_path / "nope"))
    assert missing.returncode == 1 and len(missing.stderr.splitlines()) == 1
    assert "nope" in missing.stderr
    none = cli(datadir, "kube", "status")  # conftest: KUBECONFIG names no file
    assert none.returncode == 1
    assert none.stderr.startswith("edge-console: error: no cluster configured")


def test_a_wrong_token_is_a_clean_error(plain_data: DataDir, kube_apiserver: KubeBed,
                                        tmp_path: Path) -> None:
    datadir = plain_data
    config = json.loads(kube_apiserver.kubeconfig.read_text())
    config["users"][0]["user"]["token"] = "not-a-token"
    wrong = tmp_path / "wrong-token.kubeconfig"
    wrong.write_text(json.dumps(config))
    result = cli(datadir, "kube", "status", "--kubeconfig", str(wrong))
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "cluster refused our credentials" in line


@pytest.fixture
def serving(cluster_data: DataDir, kube_apiserver: KubeBed,
            tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    port = load_config(cluster_data.config).port
    proc = subprocess.Popen(
        [sys.executable, "-m", "console", "--data-dir", str(cluster_data.root), "serve",
         "--quiet", "--listen", f"127.0.0.1:{port}",
         "--kubeconfig", str(kube_apiserver.kubeconfig)],
        stdout=log, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(HANG_GUARD)
        log.close()


def ok_secret(core: k8s.CoreV1Api, namespace: str, creds: Credentials) -> Json | None:
    try:
        secret = read_secret(core, namespace)
    except k8s.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    content = base64.b64decode(secret["data"][".dockerconfigjson"])
    return secret if content == dockerconfigjson(creds) else None


def test_serve_keeps_the_secrets(
    cluster_data: DataDir, core: k8s.CoreV1Api, kube_namespace: str,
    serving: subprocess.Popen[str],
) -> None:
    """While `serve` runs: a new namespace gets the secret (a watch), and a password
    rotation re-applies every secret."""
    creds = expected_creds(cluster_data)
    eventually(lambda: ok_secret(core, kube_namespace, creds), "the existing namespace's secret")

    started = time.monotonic()
    created = new_namespace(core, f"{kube_namespace}-new")
    eventually(lambda: ok_secret(core, created, creds), "the new namespace's secret")
    print(f"\nsecret in a new namespace after {time.monotonic() - started:.2f} s")

    rotated = cli_json(cluster_data, "enable", "--rotate-password")
    fresh = Credentials(creds.endpoint, creds.username, rotated["password"])
    assert fresh != creds
    for namespace in (kube_namespace, created):
        eventually(lambda ns=namespace: ok_secret(core, ns, fresh), f"{namespace} re-applied")
    assert serving.poll() is None


def push_image(registry: Registry, repository: str, tag: str) -> str:
    """A one-layer OCI image through the core; returns its manifest digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
    layer = f"layer of {repository}:{tag}".encode()
    registry.put_blob(repository, config, who=CONSOLE)
    registry.put_blob(repository, layer, who=CONSOLE)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": str(digest_bytes(config)),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": str(digest_bytes(layer)), "size": len(layer)}],
    }).encode()
    return str(registry.put_manifest(repository, tag, manifest, OCI_MANIFEST,
                                     who=CONSOLE).digest)


def deployment(namespace: str, name: str, image: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "main", "image": image}],
                                       "imagePullSecrets": [{"name": SECRET}]}}},
    }


def test_images_in_use_by_pods_and_workloads(
    cluster_data: DataDir, kube_client: k8s.ApiClient, core: k8s.CoreV1Api,
    kube_namespace: str,
) -> None:
    registry = Registry(cluster_data)
    config = registry.config
    web = push_image(registry, "shop/web", "v1")
    batch = push_image(registry, "shop/batch", "v3")
    unused = push_image(registry, "shop/old", "v0")
    host = config.endpoint

    k8s.AppsV1Api(kube_client).create_namespaced_deployment(
        kube_namespace, deployment(kube_namespace, "web", f"{host}/shop/web:v1"))
    k8s.BatchV1Api(kube_client).create_namespaced_job(kube_namespace, {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "batch"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "run", "image": f"{config.node_ip}:{config.port}/shop/batch@{batch}"}]}}},
    })
    core.create_namespaced_pod(kube_namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-abc"},
        "spec": {"containers": [{"name": "main", "image": f"{host}/shop/web:v1"},
                                {"name": "side", "image": "docker.io/library/busybox:1"}]},
    })
    write_pod_status(kube_client, kube_namespace, "web-abc", [
        container_status("main", f"{host}/shop/web:v1", f"{host}/shop/web@{web}"),
        container_status("side", "docker.io/library/busybox:1", "docker.io/library/busybox@"
                         + "sha256:" + "0" * 64),
    ])
    core.create_namespaced_pod(kube_namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "docker-node"},
        "spec": {"containers": [{"name": "main", "image": f"{host}/shop/batch:v3"}]},
    })
    write_pod_status(kube_client, kube_namespace, "docker-node", [  # dockershim's form
        container_status("main", f"{host}/shop/batch:v3",
                         f"docker-pullable://{host}/shop/batch@{batch}"),
    ])
    cluster = Cluster.open(registry)
    try:
        # Kubernetes 1.20 serves CronJobs as batch/v1beta1 only (the client has no API class
        # for it any more): created raw.
        cluster.api.create(f"/apis/batch/v1beta1/namespaces/{kube_namespace}/cronjobs", {
            "apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {"name": "nightly"},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "run", "image": f"{host}/shop/web:v1"}]}}}}},
        })
        in_use = cluster.in_use(fresh=True)
    finally:
        cluster.close()
        registry.close()
    mine = sorted((u.kind, u.name, u.container, u.repository, u.digest, u.resolved_by)
                  for u in in_use.uses if u.namespace == kube_namespace)
    assert mine == sorted([
        ("Deployment", "web", "main", "shop/web", web, "tag"),
        ("Pod", "web-abc", "main", "shop/web", web, "imageID"),
        ("Pod", "docker-node", "main", "shop/batch", batch, "imageID"),
        ("Job", "batch", "run", "shop/batch", batch, "digest"),
        ("CronJob", "nightly", "run", "shop/web", web, "tag"),
    ])
    assert {u.name for u in in_use.users_of("shop/web", web)} >= {"web", "web-abc"}
    assert in_use.users_of("shop/old", unused) == []


def test_a_delete_of_an_image_in_use_is_refused_with_its_users_named(
    cluster_data: DataDir, kube_client: k8s.ApiClient, kube_namespace: str,
) -> None:
    registry = Registry(cluster_data)
    try:
        web = push_image(registry, "site/web", "v1")
        batch = push_image(registry, "site/batch", "v3")
        push_image(registry, "site/old", "v0")
        endpoint = registry.config.endpoint
    finally:
        registry.close()
    k8s.AppsV1Api(kube_client).create_namespaced_deployment(
        kube_namespace, deployment(kube_namespace, "web", f"{endpoint}/site/web:v1"))
    k8s.AppsV1Api(kube_client).create_namespaced_deployment(
        kube_namespace, deployment(kube_namespace, "batch", f"{endpoint}/site/batch@{batch}"))

    refused = cli(cluster_data, "delete", "site/web:v1")
    assert refused.returncode == 1 and refused.stdout == ""
    (line,) = refused.stderr.splitlines()
    assert f"deployment {kube_namespace}/web" in line and "--force" in line
    listed = cli_json(cluster_data, "images", "site/web")
    (tag,) = listed["tags"]
    assert [(u["kind"], u["name"]) for u in tag["in_use"]] == [("Deployment", "web")]
    # By digest only: removing the tag breaks nothing, deleting the manifest would.
    untagged = cli_json(cluster_data, "delete", "--untag", "site/batch:v3")
    assert untagged["deleted"] is True and untagged["in_use_by"] == []
    assert cli(cluster_data, "delete", f"site/batch@{batch}").returncode == 1
    assert cli_json(cluster_data, "delete", "site/old:v0")["deleted"] is True

    forced = cli_json(cluster_data, "delete", "site/web:v1", "--force")
    assert forced["deleted"] is True and forced["digest"] == web
    assert [u["name"] for u in forced["in_use_by"]] == ["web"]


def test_a_delete_is_refused_when_the_cluster_cannot_be_asked(
    plain_data: DataDir, tmp_path: Path
) -> None:
    registry = Registry(plain_data)
    try:
        push_image(registry, "site/app", "v1")
    finally:
        registry.close()
    config = load_config(plain_data.config)
    config.kubernetes.kubeconfig = str(tmp_path / "missing.kubeconfig")
    save_config(config, plain_data.config)
    refused = cli(plain_data, "delete", "site/app:v1")
    assert refused.returncode == 1
    assert "cannot check whether the cluster uses site/app@" in refused.stderr
    assert cli_json(plain_data, "delete", "site/app:v1", "--force")["deleted"] is True


def test_a_server_we_cannot_trust_is_a_clean_error(
    plain_data: DataDir, kube_apiserver: KubeBed, tmp_path: Path
) -> None:
    """The kubeconfig's CA is not the one that signed the server: TLS refuses, cleanly."""
    config = json.loads(kube_apiserver.kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    cluster.pop("certificate-authority", None)
    cluster.pop("certificate-authority-data", None)
    cluster["certificate-authority-data"] = base64.b64encode(
        plain_data.ca_cert.read_bytes()).decode()  # the registry's CA: the wrong one
    untrusted = tmp_path / "wrong-ca.kubeconfig"
    untrusted.write_text(json.dumps(config))
    result = cli(plain_data, "kube", "status", "--kubeconfig", str(untrusted))
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("edge-console: error: cluster not reachable: ")
    assert "CERTIFICATE_VERIFY_FAILED" in line


def test_pod_snippet_and_status_text(cluster_data: DataDir, kube_namespace: str) -> None:
    endpoint = load_config(cluster_data.config).endpoint
    registry = Registry(cluster_data)
    try:
        push_image(registry, "team/web", "v2")
    finally:
        registry.close()
    snippet = cli(cluster_data, "kube", "pod-snippet", "team/web:v2", "--namespace", "shop")
    assert snippet.returncode == 0, snippet.stderr
    assert f"image: {endpoint}/team/web:v2" in snippet.stdout
    assert "namespace: shop" in snippet.stdout and f"- name: {SECRET}" in snippet.stdout
    bad = cli(cluster_data, "kube", "pod-snippet", "Team/Web")
    assert bad.returncode == 1 and len(bad.stderr.splitlines()) == 1

    status = cli(cluster_data, "kube", "status")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].startswith("API server  https://127.0.0.1:")
    assert any(line.split()[:2] == [kube_namespace, "missing"] for line in lines)
    assert any(line.split()[:2] == ["kube-system", "skipped"] for line in lines)
