"""The console's one connection to the cluster, shared by its panes, and calls to it that a
closing app can walk away from.

Every call to the cluster blocks (a kubeconfig to load, an API server that may take its
connect and read timeouts to answer), so panes make them in thread workers. A worker waits
for such a call through `abandonable`: the call itself runs in a daemon thread, and the
worker gives up on it as soon as it is cancelled (the app quits), so that quitting never
waits for a cluster that does not answer.
"""

from __future__ import annotations

import contextvars
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import TypeVar

from textual.worker import NoActiveWorker, get_current_worker

from registry_core.kube import (
    Cluster,
    ClusterError,
    ClusterUnreachable,
    ImageUse,
    NoClusterConfigured,
)

T = TypeVar("T")

POLL_SECONDS = 0.05
"""How often a waiting worker looks whether it was cancelled."""

SHORT_KINDS = {
    "Pod": "pod",
    "Deployment": "deploy",
    "StatefulSet": "sts",
    "DaemonSet": "ds",
    "ReplicaSet": "rs",
    "Job": "job",
    "CronJob": "cj",
}
"""kubectl's short names."""


class Abandoned(Exception):
    """The worker was cancelled while its call to the cluster was still running."""


def abandonable(call: Callable[[], T]) -> T:
    """`call()` in a daemon thread; the current worker waits for it until it is cancelled
    (then Abandoned; the call ends by itself later, and nothing waits for it)."""
    try:
        worker = get_current_worker()
    except NoActiveWorker:
        return call()
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(call())
        except BaseException as exc:  # handed to the waiting worker
            future.set_exception(exc)

    context = contextvars.copy_context()  # the active app, for whatever the call looks up
    threading.Thread(target=context.run, args=(run,), name="cluster-call", daemon=True).start()
    while True:
        try:
            return future.result(timeout=POLL_SECONDS)
        except TimeoutError:
            if worker.is_cancelled:
                raise Abandoned() from None


def no_cluster(error: ClusterError) -> bool:
    """True when no cluster is configured at all (as opposed to one that does not answer)."""
    return isinstance(error, NoClusterConfigured)


class ClusterLink:
    """The cluster, opened on first use and kept; a failed open is tried again next time
    (the technician may have fixed the kubeconfig meanwhile)."""

    def __init__(self, open_cluster: Callable[[], Cluster]) -> None:
        self._open = open_cluster
        self._cluster: Cluster | None = None
        self._lock = threading.Lock()
        self._closed = False

    def get(self) -> Cluster:
        """Blocking (a worker's call); ClusterError when there is no cluster to talk to."""
        with self._lock:
            if self._cluster is None:
                if self._closed:
                    raise ClusterUnreachable("the console is closing")
                cluster = self._open()
                if self._closed:  # closed while we were opening: do not keep it
                    cluster.close()
                    raise ClusterUnreachable("the console is closing")
                self._cluster = cluster
            return self._cluster

    def close(self) -> None:
        """Close the connection; never waits for a call in progress (no lock taken)."""
        self._closed = True
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            cluster.close()


def short_kind(kind: str) -> str:
    return SHORT_KINDS.get(kind, kind.lower())


def users_label(uses: Iterable[ImageUse]) -> str:
    """What the Images screen's "In use" column says: `deploy/web`, `2 pods`, `2 pods +1`."""
    objects = sorted({(u.kind, u.namespace, u.name) for u in uses})
    if not objects:
        return ""
    if len(objects) == 1:
        kind, _namespace, name = objects[0]
        return f"{short_kind(kind)}/{name}"
    kinds = Counter(kind for kind, _, _ in objects)
    pods = kinds.pop("Pod", 0)
    others = sum(kinds.values())
    if not pods:
        return f"{others} workloads"
    label = f"{pods} pod" + ("s" if pods > 1 else "")
    return f"{label} +{others}" if others else label


def labels_by_manifest(
    uses: Iterable[ImageUse],
    children: dict[tuple[str, str], tuple[str, ...]],
    parents: dict[tuple[str, str], tuple[str, ...]],
) -> dict[tuple[str, str], str]:
    """(repository, digest) -> the "In use" label, for every manifest some workload uses:
    directly, as a child of an index it uses, or as the index of a child it uses (what
    `InUse.users_of` answers for one manifest, here for all at once)."""
    by_key: dict[tuple[str, str], list[ImageUse]] = {}
    for use in uses:
        if use.digest is None:
            continue
        key = (use.repository, use.digest)
        related = {use.digest, *children.get(key, ()), *parents.get(key, ())}
        for digest in related:
            by_key.setdefault((use.repository, digest), []).append(use)
    return {key: users_label(found) for key, found in by_key.items()}
