"""Which of this registry's images the cluster uses: pods (with the digest the kubelet
resolved) and workload templates, resolved to manifest digests in this registry."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from registry_core.browse import ManifestGraph
from registry_core.kube.api import Json, KubeApi
from registry_core.kube.errors import ClusterDenied, ClusterError
from registry_core.kube.images import (
    ContainerImage,
    Endpoint,
    ImageRef,
    parse_image,
    pod_images,
    workload_images,
)

CACHE_SECONDS = 10.0
"""How long a listing of the cluster is reused (a big cluster takes a while to list)."""

WORKLOAD_PATHS = (
    ("Deployment", ("/apis/apps/v1/deployments",)),
    ("StatefulSet", ("/apis/apps/v1/statefulsets",)),
    ("DaemonSet", ("/apis/apps/v1/daemonsets",)),
    ("ReplicaSet", ("/apis/apps/v1/replicasets",)),
    ("Job", ("/apis/batch/v1/jobs",)),
    # batch/v1 from Kubernetes 1.21; older servers serve CronJobs as batch/v1beta1 only.
    ("CronJob", ("/apis/batch/v1/cronjobs", "/apis/batch/v1beta1/cronjobs")),
)


@dataclass(frozen=True)
class ImageUse:
    """A container that names one of this registry's images."""

    kind: str
    namespace: str
    name: str
    container: str
    image: str
    repository: str
    tag: str | None
    """The tag the container names ('latest' when it names neither tag nor digest); None
    when it pins a digest."""
    digest: str | None
    """The manifest digest it resolves to here; None when the tag is not in the registry."""
    resolved_by: str
    """'imageID' (what the kubelet pulled), 'digest' (pinned in the spec), 'tag' (looked
    up in this registry) or '' (not resolved)."""
    state: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        where = f"{self.kind.lower()} {self.namespace}/{self.name}"
        return f"{where} (container {self.container}, {self.state})"


@dataclass(frozen=True)
class InUse:
    uses: tuple[ImageUse, ...]
    graph: ManifestGraph
    objects: int
    """Pods and workloads looked at."""
    taken_at: float
    problems: tuple[str, ...] = ()
    """Kinds that could not be listed (forbidden, say): the picture may miss their users."""

    def users_of(self, repository: str, digest: str) -> list[ImageUse]:
        """Who uses the manifest: directly, through an index that lists it, or (for an
        index) through any of its children."""
        related = {digest}
        related.update(self.graph.children.get((repository, digest), ()))
        related.update(self.graph.parents.get((repository, digest), ()))
        return [u for u in self.uses if u.repository == repository and u.digest in related]

    def users_of_tag(self, repository: str, tag: str) -> list[ImageUse]:
        """Who names `repository:tag` (what removing the tag breaks: pulls by that name)."""
        return [u for u in self.uses if u.repository == repository and u.tag == tag]

    def digests(self) -> set[tuple[str, str]]:
        """(repository, digest) of every manifest in use, index children included."""
        found = set()
        for use in self.uses:
            if use.digest is not None:
                found.add((use.repository, use.digest))
                for child in self.graph.children.get((use.repository, use.digest), ()):
                    found.add((use.repository, child))
        return found


def collect(api: KubeApi, endpoint: Endpoint, graph: ManifestGraph) -> InUse:
    """List pods and workloads (paged) and resolve the images that name this registry."""
    containers: list[ContainerImage] = []
    problems: list[str] = []
    objects = 0
    pods = api.list("/api/v1/pods").items
    objects += len(pods)
    for pod in pods:
        containers.extend(pod_images(pod))
    for kind, paths in WORKLOAD_PATHS:
        try:
            items = _list_first(api, paths)
        except ClusterDenied as exc:
            problems.append(f"{kind}: {exc}")
            continue
        objects += len(items)
        for obj in items:
            if not _superseded(kind, obj):
                containers.extend(workload_images(kind, obj))
    uses = tuple(u for u in (resolve(c, endpoint, graph) for c in containers) if u is not None)
    return InUse(uses, graph, objects, time.time(), tuple(problems))


def resolve(container: ContainerImage, endpoint: Endpoint,
            graph: ManifestGraph) -> ImageUse | None:
    """The container as a use of this registry's image, or None if it names another."""
    ref = parse_image(container.image)
    if ref is None or not endpoint.matches(ref):
        return None
    digest, how = _digest(ref, container.image_id, graph)
    tag = None if ref.digest else (ref.tag or "latest")
    return ImageUse(container.kind, container.namespace, container.name, container.container,
                    container.image, ref.repository, tag, digest, how, container.state)


def _digest(ref: ImageRef, image_id: str | None,
            graph: ManifestGraph) -> tuple[str | None, str]:
    pulled = parse_image(image_id) if image_id else None
    if pulled is not None and pulled.digest and pulled.repository == ref.repository:
        return pulled.digest, "imageID"
    if ref.digest:
        return ref.digest, "digest"
    found = graph.tags.get((ref.repository, ref.tag or "latest"))
    return (found, "tag") if found is not None else (None, "")


def _list_first(api: KubeApi, paths: Iterable[str]) -> list[Json]:
    """The items of the first path the server serves (404: try the next version)."""
    for path in paths:
        try:
            return api.list(path).items
        except ClusterError as exc:
            if exc.status != 404:
                raise
    return []


def _superseded(kind: str, obj: Json) -> bool:
    """A Deployment's old ReplicaSet scaled to zero: its template is history, not use."""
    if kind != "ReplicaSet":
        return False
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    owned = any(o.get("kind") == "Deployment" for o in owners)
    return owned and not (obj.get("spec") or {}).get("replicas")


class InUseCache:
    """The last `collect`, reused for CACHE_SECONDS; thread-safe, one listing at a time."""

    def __init__(self, load: Callable[[], InUse], seconds: float = CACHE_SECONDS) -> None:
        self._load = load
        self._seconds = seconds
        self._value: InUse | None = None
        self._taken = 0.0
        self._lock = threading.Lock()

    def get(self, fresh: bool = False) -> InUse:
        with self._lock:
            if fresh or self._value is None or time.monotonic() - self._taken > self._seconds:
                self._value = self._load()
                self._taken = time.monotonic()
            return self._value

    def forget(self) -> None:
        with self._lock:
            self._value = None
