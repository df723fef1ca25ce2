"""The Kubernetes test bed (kubebed.py) against a real kube-apiserver, through the official
client: what the upcoming Kubernetes features (pull secrets in every namespace, images in use
by pods) will rely on behaves as a cluster does."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from kubebed import KubeBed, container_status, eventually, write_pod_status
from kubernetes import client as k8s
from kubernetes import watch

pytestmark = pytest.mark.kube

REGISTRY = "edge.test:5000"
DIGEST = "sha256:" + "ab" * 32


def api_error(call: Callable[[], Any]) -> k8s.ApiException:
    with pytest.raises(k8s.ApiException) as info:
        call()
    return info.value


def reason(error: k8s.ApiException) -> Any:
    """The `reason` of the Status object the server answered with."""
    return json.loads(error.body or "{}").get("reason")


def wire(obj: Any) -> dict[str, Any]:
    """An object as the API's JSON (camelCase keys), for reading fields a model marks optional."""
    serialized: dict[str, Any] = obj.to_dict(serialize=True)
    return serialized


def dockerconfigjson(auths: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps({"auths": auths}).encode()).decode()


def pull_secret(name: str, encoded: str) -> k8s.V1Secret:
    return k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name=name),
        type="kubernetes.io/dockerconfigjson",
        data={".dockerconfigjson": encoded},
    )


def pod(name: str, image: str, labels: dict[str, str] | None = None) -> k8s.V1Pod:
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name, labels=labels),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="app", image=image)]),
    )


def test_the_bed_is_kubernetes_1_20(kube_client: k8s.ApiClient) -> None:
    version = k8s.VersionApi(kube_client).get_code()
    assert (version.major, version.minor, version.git_version) == ("1", "20", "v1.20.2")


def test_a_namespace_is_created_active(kube_client: k8s.ApiClient, kube_namespace: str) -> None:
    namespace = wire(k8s.CoreV1Api(kube_client).read_namespace(kube_namespace))
    assert namespace["status"]["phase"] == "Active"
    assert namespace["metadata"]["labels"]["edge-console.test"] == "true"


def test_a_pull_secret_reads_back(kube_client: k8s.ApiClient, kube_namespace: str) -> None:
    core = k8s.CoreV1Api(kube_client)
    auth = base64.b64encode(b"edge:s3cret").decode()
    encoded = dockerconfigjson({REGISTRY: {"auth": auth}})
    core.create_namespaced_secret(kube_namespace, pull_secret("edge-pull", encoded))

    secret = wire(core.read_namespaced_secret("edge-pull", kube_namespace))
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    stored = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert stored == {"auths": {REGISTRY: {"auth": auth}}}


def test_creating_a_secret_twice_is_a_conflict(
    kube_client: k8s.ApiClient, kube_namespace: str
) -> None:
    core = k8s.CoreV1Api(kube_client)
    body = pull_secret("edge-pull", dockerconfigjson({}))
    core.create_namespaced_secret(kube_namespace, body)
    error = api_error(lambda: core.create_namespaced_secret(kube_namespace, body))
    assert (error.status, reason(error)) == (409, "AlreadyExists")


@pytest.mark.parametrize(
    "data",
    [
        {".dockerconfigjson": base64.b64encode(b"{not json").decode()},
        {"config.json": dockerconfigjson({})},
    ],
    ids=["not-json", "key-missing"],
)
def test_a_malformed_pull_secret_is_invalid(
    kube_client: k8s.ApiClient, kube_namespace: str, data: dict[str, bytes | str]
) -> None:
    core = k8s.CoreV1Api(kube_client)
    body = k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name="broken"),
        type="kubernetes.io/dockerconfigjson",
        data=data,
    )
    error = api_error(lambda: core.create_namespaced_secret(kube_namespace, body))
    assert (error.status, reason(error)) == (422, "Invalid")


def list_namespaces_as(bed: KubeBed, token: str | None) -> k8s.ApiException:
    configuration = k8s.Configuration(host=bed.server)
    configuration.ssl_ca_cert = str(bed.ca_file)
    if token is not None:
        configuration.api_key = {"BearerToken": token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
    with k8s.ApiClient(configuration) as api:
        return api_error(lambda: k8s.CoreV1Api(api).list_namespace())


def test_requests_without_the_token_are_refused(kube_apiserver: KubeBed) -> None:
    assert list_namespaces_as(kube_apiserver, None).status == 403  # anonymous: RBAC says no
    assert list_namespaces_as(kube_apiserver, "not-the-token").status == 401


def test_a_pod_takes_the_status_a_kubelet_writes(
    kube_client: k8s.ApiClient, kube_namespace: str
) -> None:
    core = k8s.CoreV1Api(kube_client)
    image = f"{REGISTRY}/edge/app:1.0"
    core.create_namespaced_pod(kube_namespace, pod("app", image))
    assert wire(core.read_namespaced_pod("app", kube_namespace))["status"]["phase"] == "Pending"

    image_id = f"{REGISTRY}/edge/app@{DIGEST}"
    write_pod_status(core, kube_namespace, "app", [container_status("app", image, image_id)])

    status = wire(core.read_namespaced_pod("app", kube_namespace))["status"]
    assert status["phase"] == "Running"
    [container] = status["containerStatuses"]
    assert (container["image"], container["imageID"], container["ready"]) == (image, image_id, True)
    assert container["state"]["running"]["startedAt"]


def deployment(name: str, image: str) -> k8s.V1Deployment:
    labels = {"app": name}
    return k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name=name),
        spec=k8s.V1DeploymentSpec(
            replicas=1,
            selector=k8s.V1LabelSelector(match_labels=labels),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=labels),
                spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="app", image=image)]),
            ),
        ),
    )


def owned_by(items: list[Any], kind: str, name: str) -> list[Any]:
    return [
        item
        for item in items
        if any(o.kind == kind and o.name == name for o in item.metadata.owner_references or [])
    ]


@pytest.mark.usefixtures("kube_controllers")
def test_a_deployment_gets_a_replicaset_and_a_pod(
    kube_client: k8s.ApiClient, kube_namespace: str
) -> None:
    apps, core = k8s.AppsV1Api(kube_client), k8s.CoreV1Api(kube_client)
    image = f"{REGISTRY}/edge/web:2.0"
    apps.create_namespaced_deployment(kube_namespace, deployment("web", image))

    [replicaset] = eventually(
        lambda: owned_by(
            apps.list_namespaced_replica_set(kube_namespace).items, "Deployment", "web"
        ),
        what="the deployment's ReplicaSet",
    )
    [created] = eventually(
        lambda: owned_by(
            core.list_namespaced_pod(kube_namespace).items, "ReplicaSet", replicaset.metadata.name
        ),
        what="the ReplicaSet's pod",
    )
    assert wire(created)["spec"]["containers"][0]["image"] == image
    assert wire(created)["status"]["phase"] == "Pending"  # no scheduler, no kubelet


@pytest.mark.usefixtures("kube_controllers")
def test_a_deleted_namespace_goes_away(kube_client: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(kube_client)
    name = "edge-test-doomed"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    core.create_namespaced_secret(name, pull_secret("edge-pull", dockerconfigjson({})))
    core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except k8s.ApiException as exc:
            return bool(exc.status == 404)
        return False

    eventually(gone, what=f"namespace {name} to be deleted")


def test_a_list_comes_in_pages(kube_client: k8s.ApiClient, kube_namespace: str) -> None:
    core = k8s.CoreV1Api(kube_client)
    names = {f"config-{i}" for i in range(5)}
    for name in names:
        body = k8s.V1ConfigMap(
            metadata=k8s.V1ObjectMeta(name=name, labels={"paged": "yes"}), data={"n": name}
        )
        core.create_namespaced_config_map(kube_namespace, body)

    pages: list[list[str]] = []
    token: str | None = None
    while token != "":
        page = core.list_namespaced_config_map(
            kube_namespace, label_selector="paged=yes", limit=2, _continue=token
        )
        listed = wire(page)
        pages.append([item["metadata"]["name"] for item in listed["items"]])
        token = listed["metadata"].get("continue") or ""
    assert [len(p) for p in pages] == [2, 2, 1]
    assert {name for p in pages for name in p} == names


def test_a_namespace_watch_sees_it_added(kube_client: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(kube_client)
    since = wire(core.list_namespace())["metadata"]["resourceVersion"]
    name = "edge-test-watched"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    try:
        events = watch.Watch().stream(  # type: ignore[no-untyped-call]
            core.list_namespace,
            resource_version=since,
            field_selector=f"metadata.name={name}",
            timeout_seconds=30,
        )
        event = next(iter(events))
    finally:
        core.delete_namespace(name)
    assert event["type"] == "ADDED"
    metadata = wire(event["object"])["metadata"]
    assert metadata["name"] == name
    assert metadata["resourceVersion"] not in ("", None, since)
