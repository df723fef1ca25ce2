"""The cluster side's pure parts: the secret's content (against kubectl's own), its state,
image references, containers of pods and workloads, resolution, the snippet, the settings."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import require_tool

from registry_core.browse import ManifestGraph
from registry_core.config import Config, KubernetesConfig
from registry_core.kube.images import Endpoint, ImageRef, parse_image, pod_images, workload_images
from registry_core.kube.in_use import InUse, resolve
from registry_core.kube.pull_secrets import (
    MANAGED_LABEL,
    Credentials,
    assess,
    dockerconfigjson,
    secret_object,
)
from registry_core.kube.settings import resolve as resolve_settings
from registry_core.kube.snippet import pod_snippet

CREDS = Credentials("ecr.edge.test:31001", "ase-ecr-user", "Pa55<&>word")
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
ENDPOINT = Endpoint(frozenset({"ecr.edge.test", "192.0.2.10"}), 31001)


def kubectl_secret(creds: Credentials) -> dict[str, object]:
    require_tool("kubectl")  # Debian: kubernetes-client
    out = subprocess.run(
        ["kubectl", "create", "secret", "docker-registry", "ase-ecr-credentials",
         f"--docker-server={creds.endpoint}", f"--docker-username={creds.username}",
         f"--docker-password={creds.password}", "--dry-run=client", "-o", "json"],
        check=True, capture_output=True, text=True,
    ).stdout
    secret: dict[str, object] = json.loads(out)
    return secret


@pytest.mark.parametrize("password", ["Pa55<&>word", "plain0Password", "ü ñ \u2028 \"q\\"])
def test_the_content_is_exactly_kubectls(password: str) -> None:
    creds = Credentials(CREDS.endpoint, CREDS.username, password)
    theirs = kubectl_secret(creds)
    ours = secret_object("default", "ase-ecr-credentials", creds)
    assert ours["data"] == theirs["data"]
    assert ours["type"] == theirs["type"] == "kubernetes.io/dockerconfigjson"
    assert ours["metadata"]["labels"] == {MANAGED_LABEL: "edge-console"}


def secret(data: bytes | None = None, kind: str = "kubernetes.io/dockerconfigjson",
           labels: dict[str, str] | None = None) -> dict[str, object]:
    body = dockerconfigjson(CREDS) if data is None else data
    return {"type": kind, "metadata": {"labels": labels or {}},
            "data": {".dockerconfigjson": base64.b64encode(body).decode()}}


def auths(entry: dict[str, str], endpoint: str = CREDS.endpoint) -> bytes:
    return json.dumps({"auths": {endpoint: entry}}).encode()


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("given_secret", "state", "reason"),
    [
        (None, "missing", ""),
        (secret(), "ok", ""),
        (secret(auths({"auth": basic(CREDS.username, CREDS.password)})), "ok", ""),
        (secret(auths({"username": CREDS.username, "password": CREDS.password})), "ok", ""),
        (secret(kind="Opaque"), "stale", "type is 'Opaque'"),
        (secret(b"not json"), "stale", "not valid JSON"),
        (secret(auths({"auth": basic("u", "p")}, "other:5000")), "stale", "no entry for"),
        (secret(auths({"auth": basic(CREDS.username, "old")})), "stale", "not the current"),
        (secret(auths({"username": CREDS.username, "password": "old"})), "stale",
         "not the current"),
        (secret(b'{"auths": []}'), "stale", "no entry for"),
        ({"type": "kubernetes.io/dockerconfigjson", "data": {}}, "stale", "no .dockerconfigjson"),
    ],
)
def test_assess(given_secret: dict[str, object] | None, state: str, reason: str) -> None:
    found = assess("ns", given_secret, CREDS)
    assert (found.namespace, found.state) == ("ns", state)
    assert reason in found.reason and bool(found.reason) == bool(reason)


def test_a_repaired_secret_keeps_its_labels_and_annotations() -> None:
    old = {"metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"},
                        "resourceVersion": "42"}}
    fresh = secret_object("ns", "ase-ecr-credentials", CREDS, keep=old)
    assert fresh["metadata"] == {
        "name": "ase-ecr-credentials", "namespace": "ns",
        "labels": {"team": "a", MANAGED_LABEL: "edge-console"},
        "annotations": {"note": "x"}, "resourceVersion": "42",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ecr.edge.test:31001/app/web:v1", ImageRef("ecr.edge.test", 31001, "app/web", "v1", None)),
        (f"ecr.edge.test:31001/app@{D1}", ImageRef("ecr.edge.test", 31001, "app", None, D1)),
        (f"ECR.Edge.Test:31001/app:v2@{D1}", ImageRef("ecr.edge.test", 31001, "app", "v2", D1)),
        (f"docker-pullable://192.0.2.10:31001/app@{D1}",
         ImageRef("192.0.2.10", 31001, "app", None, D1)),
        ("localhost/app", ImageRef("localhost", None, "app", None, None)),
        ("[::1]:31001/app:v1", ImageRef("::1", 31001, "app", "v1", None)),
        ("nginx:1.25", None),
        ("library/nginx", None),
        ("ecr.edge.test:31001/", None),
        ("ecr.edge.test:99999/app", None),
        ("ecr.edge.test:31001/app:", None),
        ("ecr.edge.test:31001/app@sha256", None),
        (f"sha256:{'4' * 64}", None),
    ],
)
def test_parse_image(text: str, expected: ImageRef | None) -> None:
    assert parse_image(text) == expected


@given(st.text(max_size=80))
def test_parse_image_never_raises(text: str) -> None:
    ref = parse_image(text)
    assert ref is None or (ref.host and ref.repository)


def test_the_endpoint_matches_host_or_node_ip_with_the_port() -> None:
    assert ENDPOINT.matches(ImageRef("ecr.edge.test", 31001, "a", None, None))
    assert ENDPOINT.matches(ImageRef("192.0.2.10", 31001, "a", None, None))
    assert not ENDPOINT.matches(ImageRef("ecr.edge.test", 5000, "a", None, None))
    assert not ENDPOINT.matches(ImageRef("ecr.edge.test", None, "a", None, None))
    assert not ENDPOINT.matches(ImageRef("other.test", 31001, "a", None, None))


POD = {
    "metadata": {"namespace": "shop", "name": "web-1"},
    "spec": {
        "initContainers": [{"name": "init", "image": "ecr.edge.test:31001/tools:v1"}],
        "containers": [
            {"name": "web", "image": "ecr.edge.test:31001/app:v1"},
            {"name": "proxy", "image": "nginx:1.25"},
        ],
        "ephemeralContainers": [{"name": "debug", "image": f"192.0.2.10:31001/dbg@{D3}"}],
    },
    "status": {
        "phase": "Running",
        "initContainerStatuses": [
            {"name": "init", "imageID": f"ecr.edge.test:31001/tools@{D2}",
             "state": {"terminated": {"reason": "Completed"}}},
        ],
        "containerStatuses": [
            {"name": "web", "imageID": f"docker-pullable://ecr.edge.test:31001/app@{D1}",
             "state": {"running": {"startedAt": "2026-11-29T00:00:00Z"}}},
            {"name": "proxy", "imageID": "", "state": {"waiting": {"reason": "ErrImagePull"}}},
        ],
    },
}


def test_pod_images_cover_every_kind_of_container() -> None:
    found = [(c.container, c.image_id, c.state) for c in pod_images(POD)]
    assert found == [
        ("init", f"ecr.edge.test:31001/tools@{D2}", "Terminated (Completed)"),
        ("web", f"docker-pullable://ecr.edge.test:31001/app@{D1}", "Running"),
        ("proxy", None, "Waiting (ErrImagePull)"),
        ("debug", None, "Running"),
    ]


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"])
def test_workload_templates(kind: str) -> None:
    obj = {"metadata": {"namespace": "n", "name": "w"},
           "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x.test/a"}]}}}}
    assert [(c.kind, c.name, c.image, c.state) for c in workload_images(kind, obj)] == [
        (kind, "w", "x.test/a", "template")
    ]


def test_cronjob_template() -> None:
    obj = {"metadata": {"namespace": "n", "name": "nightly"},
           "spec": {"jobTemplate": {"spec": {"template": {"spec": {
               "containers": [{"name": "c", "image": "x.test/batch:v1"}]}}}}}}
    assert [c.image for c in workload_images("CronJob", obj)] == ["x.test/batch:v1"]


GRAPH = ManifestGraph(
    tags={("app", "v1"): D2, ("app", "latest"): D3},
    children={("app", D2): (D1,)},
    parents={("app", D1): (D2,)},
)


def test_resolution_prefers_what_the_kubelet_pulled() -> None:
    web, proxy = [c for c in pod_images(POD) if c.container in ("web", "proxy")]
    use = resolve(web, ENDPOINT, GRAPH)
    assert use is not None and (use.repository, use.digest, use.resolved_by) == ("app", D1,
                                                                                  "imageID")
    assert resolve(proxy, ENDPOINT, GRAPH) is None  # another registry's image


def test_resolution_by_digest_tag_and_latest() -> None:
    deployment = {"metadata": {"namespace": "n", "name": "d"}, "spec": {"template": {"spec": {
        "containers": [
            {"name": "pinned", "image": f"ecr.edge.test:31001/app@{D3}"},
            {"name": "tagged", "image": "ecr.edge.test:31001/app:v1"},
            {"name": "bare", "image": "ecr.edge.test:31001/app"},
            {"name": "gone", "image": "ecr.edge.test:31001/app:v9"},
        ]}}}}
    uses = [resolve(c, ENDPOINT, GRAPH) for c in workload_images("Deployment", deployment)]
    assert [(u.tag, u.digest, u.resolved_by) for u in uses if u] == [
        (None, D3, "digest"), ("v1", D2, "tag"), ("latest", D3, "tag"), ("v9", None, "")
    ]


def test_an_index_counts_for_its_children_and_a_child_for_its_index() -> None:
    deployment = {"metadata": {"namespace": "n", "name": "d"}, "spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "ecr.edge.test:31001/app:v1"}]}}}}
    uses = tuple(u for c in workload_images("Deployment", deployment)
                 if (u := resolve(c, ENDPOINT, GRAPH)))
    in_use = InUse(uses, GRAPH, 1, 0.0)
    assert in_use.users_of("app", D2) == list(uses)  # the index itself
    assert in_use.users_of("app", D1) == list(uses)  # its child
    assert in_use.users_of("app", D3) == []
    assert in_use.users_of("other", D2) == []
    assert in_use.digests() == {("app", D2), ("app", D1)}
    assert in_use.users_of_tag("app", "v1") == list(uses)
    assert in_use.users_of_tag("app", "v2") == []


def test_pod_snippet() -> None:
    config = Config(device_name="edge", dns_domain="test", port=31001)
    yaml = pod_snippet(config, "team/web-app", "v1", "shop")
    assert "image: ecr.edge.test:31001/team/web-app:v1" in yaml
    assert "namespace: shop" in yaml and "name: web-app" in yaml
    assert "imagePullSecrets:\n    - name: ase-ecr-credentials" in yaml
    pinned = pod_snippet(config, "app", D1)
    assert f"image: ecr.edge.test:31001/app@{D1}" in pinned


def test_the_kubeconfig_is_found_in_the_documented_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text("{}")
    env_file = tmp_path / "env-config"
    env_file.write_text("{}")
    config = KubernetesConfig()
    flag = tmp_path / "flag"

    def found(config: KubernetesConfig, given: Path | None = None,
              env: dict[str, str] | None = None) -> tuple[Path | None, str] | None:
        settings = resolve_settings(config, given, None, env or {}, home)
        return None if settings is None else (settings.kubeconfig, settings.source)

    assert found(config, flag) == (flag, "--kubeconfig")
    configured = KubernetesConfig(kubeconfig=str(tmp_path / "cfg"), context="edge")
    assert found(configured, env={"KUBECONFIG": str(env_file)}) == (tmp_path / "cfg",
                                                                     "config.toml")
    assert resolve_settings(configured, None, None, {}, home).context == "edge"  # type: ignore[union-attr]
    assert found(config, env={"KUBECONFIG": f"{env_file}:/other"}) == (env_file, "KUBECONFIG")
    assert found(config) == (home / ".kube" / "config", "~/.kube/config")
    (home / ".kube" / "config").unlink()
    assert found(config) is None  # no in-cluster token on this machine either


def test_a_kubeconfig_that_cannot_be_looked_at_is_kept_for_the_error(tmp_path: Path) -> None:
    """`is_file()` raising (EACCES for an unreadable home as another user; ENAMETOOLONG here,
    as root) keeps the path: connecting then fails naming it, as for a damaged kubeconfig."""
    home = tmp_path / ("h" * 300)
    config = KubernetesConfig()
    settings = resolve_settings(config, None, None, {}, home)
    assert settings is not None
    assert (settings.kubeconfig, settings.source) == (home / ".kube" / "config", "~/.kube/config")
    listed = tmp_path / ("k" * 300) / "config"
    settings = resolve_settings(config, None, None, {"KUBECONFIG": str(listed)}, home)
    assert settings is not None and (settings.kubeconfig, settings.source) == (listed, "KUBECONFIG")
