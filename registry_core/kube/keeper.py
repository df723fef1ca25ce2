"""Keeping the pull secret right while the registry is served: a watch on namespaces gives
each new one the secret within seconds, and a password rotation re-applies them all.

The watch resumes from the last resourceVersion after a cut; when the server says that
version is gone (410), the namespaces are listed (and checked) again. An unreachable server
is retried with backoff, and the state is kept for the faces to show.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from registry_core.kube.cluster import Cluster
from registry_core.kube.errors import ClusterError, ClusterGone, ClusterUnreachable

log = logging.getLogger("edge_registry.kube")

WATCH_SECONDS = 5
"""One watch request's length: also how often a password rotation is noticed."""
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class KeeperState:
    watching: bool
    applied: int
    """Secrets created or repaired since the keeper started."""
    error: str
    since: float
    passes: int = 0
    """Full passes over every namespace (the first, and after a 410 or a rotation)."""
    resumes: int = 0
    """Watches resumed from the last resourceVersion after a cut."""
    expired: int = 0
    """Watches the server refused because it no longer had their version (410)."""


class SecretKeeper:
    """A thread that keeps every namespace's pull secret right."""

    def __init__(self, open_cluster: Callable[[], Cluster],
                 watch_seconds: int = WATCH_SECONDS) -> None:
        self._open = open_cluster
        self._watch_seconds = watch_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cluster: Cluster | None = None
        self._state = KeeperState(False, 0, "", time.time())

    @property
    def state(self) -> KeeperState:
        return self._state

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kube-secret-keeper",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        cluster = self._cluster
        if cluster is not None:
            cluster.close()  # ends a watch blocked in a read
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._cluster = self._open()
                self._keep(self._cluster)
                failures = 0
            except ClusterError as exc:
                if self._stop.is_set():
                    break
                self._note(watching=False, error=str(exc))
                log.warning("pull secrets: %s", exc)
                self._stop.wait(BACKOFF[min(failures, len(BACKOFF) - 1)])
                failures += 1
            finally:
                if self._cluster is not None:
                    self._cluster.close()
                    self._cluster = None

    def _keep(self, cluster: Cluster) -> None:
        """Apply everywhere, then follow the namespaces until stopped; returns on a 410 (the
        caller lists again), raises on anything else."""
        creds = cluster.credentials()
        version = self._apply_all(cluster)
        self._note(watching=True, error="")
        cuts = 0
        while not self._stop.is_set():
            try:
                for event in cluster.api.watch("/api/v1/namespaces", version,
                                               self._watch_seconds):
                    version = self._on_event(cluster, event) or version
                    if self._stop.is_set():
                        return
            except ClusterGone:
                self._note(expired=self._state.expired + 1)
                return
            except ClusterUnreachable as exc:  # a cut: resume from `version`, after a pause
                if self._stop.is_set():
                    return
                self._note(watching=False, error=str(exc))
                self._stop.wait(BACKOFF[min(cuts, len(BACKOFF) - 1)])
                cuts += 1
                self._note(resumes=self._state.resumes + 1)
                continue
            if cuts:
                cuts = 0
                self._note(watching=True, error="")
            fresh = cluster.credentials()
            if fresh != creds:  # a rotation: every secret is stale now
                creds = fresh
                log.info("pull secrets: credentials changed; applying everywhere")
                version = self._apply_all(cluster)

    def _apply_all(self, cluster: Cluster) -> str:
        listing = cluster.api.list("/api/v1/namespaces")
        self._note(passes=self._state.passes + 1)
        skip = set(cluster.settings.skip_namespaces)
        for ns in listing.items:
            name = str((ns.get("metadata") or {}).get("name", ""))
            if name in skip or (ns.get("status") or {}).get("phase") == "Terminating":
                continue
            self._apply_one(cluster, name)
        return listing.resource_version

    def _on_event(self, cluster: Cluster, event: dict[str, object]) -> str | None:
        obj = event.get("object")
        if not isinstance(obj, dict):
            return None
        meta = obj.get("metadata") or {}
        version = meta.get("resourceVersion")
        name = str(meta.get("name", ""))
        added = event.get("type") == "ADDED"
        active = (obj.get("status") or {}).get("phase") != "Terminating"
        if added and active and name not in cluster.settings.skip_namespaces:
            self._apply_one(cluster, name)
        return str(version) if version else None

    def _apply_one(self, cluster: Cluster, namespace: str) -> None:
        try:
            result = cluster.apply_secret(namespace)
        except ClusterError as exc:
            if exc.status in (403, 404):  # the namespace went, or is going: not our failure
                log.info("pull secret in %s: %s", namespace, exc)
                return
            raise
        if result.action in ("created", "repaired"):
            log.info("pull secret %s in %s", result.action, namespace)
            self._note(applied=self._state.applied + 1)

    def _note(self, **changes: object) -> None:
        self._state = replace(self._state, since=time.time(), **changes)  # type: ignore[arg-type]
