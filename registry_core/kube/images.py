"""Image references as pods and workload templates write them, and which of them name this
registry. Pure functions over the API's JSON: no requests here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from registry_core.kube.api import Json

_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_RUNTIME_PREFIXES = ("docker-pullable://", "docker://")

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob")
CONTAINER_FIELDS = ("initContainers", "containers", "ephemeralContainers")
STATUS_FIELDS = {
    "initContainers": "initContainerStatuses",
    "containers": "containerStatuses",
    "ephemeralContainers": "ephemeralContainerStatuses",
}


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference: `host[:port]/repository[:tag][@digest]`."""

    host: str
    port: int | None
    repository: str
    tag: str | None
    digest: str | None


@dataclass(frozen=True)
class Endpoint:
    """How clients in the cluster may name this registry: its host name or the node's IP
    address (or any other name given), with its port."""

    hosts: frozenset[str]
    port: int

    def matches(self, ref: ImageRef) -> bool:
        port = ref.port if ref.port is not None else 443
        return ref.host in self.hosts and port == self.port


@dataclass(frozen=True)
class ContainerImage:
    """One container of a pod or workload template and the image it names."""

    kind: str
    namespace: str
    name: str
    """The pod's or workload's name."""
    container: str
    image: str
    """As written in the spec."""
    image_id: str | None = None
    """For a pod: what the kubelet resolved (`status.*containerStatuses[].imageID`)."""
    state: str = ""
    """For a pod: Running, Waiting (reason), Terminated (reason) or Pending; for a
    workload: 'template'."""


def parse_image(text: str) -> ImageRef | None:
    """A reference with an explicit registry host, or None (docker.io images, malformed)."""
    text = text.strip()
    for prefix in _RUNTIME_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix):]
    name, _, digest = text.partition("@")
    if digest and not _DIGEST.fullmatch(digest):
        return None
    first, slash, rest = name.partition("/")
    if not slash or not rest or not ("." in first or ":" in first or first == "localhost"):
        return None
    host, port = _host_port(first)
    if host is None:
        return None
    repository, tag = rest, None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        repository, _, tag = rest.rpartition(":")
    if not repository or tag == "":
        return None
    return ImageRef(host, port, repository, tag, digest or None)


def _host_port(text: str) -> tuple[str | None, int | None]:
    if text.startswith("["):  # [IPv6]:port
        host, _, after = text[1:].partition("]")
        port_text = after[1:] if after.startswith(":") else ""
    else:
        host, _, port_text = text.partition(":")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return None, None
        return host.lower(), int(port_text)
    return host.lower(), None


# ---- containers of pods and workloads -------------------------------------------------------


def pod_images(pod: Json) -> Iterator[ContainerImage]:
    meta, spec, status = _meta(pod), pod.get("spec") or {}, pod.get("status") or {}
    for field in CONTAINER_FIELDS:
        statuses = {s.get("name"): s for s in status.get(STATUS_FIELDS[field]) or []}
        for container in spec.get(field) or []:
            seen = statuses.get(container.get("name")) or {}
            yield ContainerImage(
                "Pod", meta[0], meta[1], str(container.get("name", "")),
                str(container.get("image", "")), seen.get("imageID") or None,
                _state(seen, status),
            )


def workload_images(kind: str, obj: Json) -> Iterator[ContainerImage]:
    namespace, name = _meta(obj)
    spec = _pod_template_spec(kind, obj)
    for field in CONTAINER_FIELDS:
        for container in spec.get(field) or []:
            yield ContainerImage(kind, namespace, name, str(container.get("name", "")),
                                 str(container.get("image", "")), None, "template")


def _pod_template_spec(kind: str, obj: Json) -> Json:
    spec = obj.get("spec") or {}
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return ((spec.get("template") or {}).get("spec")) or {}


def _state(seen: Json, pod_status: Json) -> str:
    state = seen.get("state") or {}
    for name in ("running", "waiting", "terminated"):
        if name in state:
            reason = (state[name] or {}).get("reason")
            label = name.capitalize()
            return f"{label} ({reason})" if reason and name != "running" else label
    return str(pod_status.get("phase") or "Pending")


def _meta(obj: Json) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))
