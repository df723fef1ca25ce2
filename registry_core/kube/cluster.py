"""The cluster as the faces see it: one connection, this registry's credentials and endpoint,
and the operations the CLI, the console and the service call."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from registry_core.access.credentials import read_credentials
from registry_core.browse import manifest_graph
from registry_core.kube import pull_secrets
from registry_core.kube.api import KubeApi
from registry_core.kube.errors import ClusterError, NoClusterConfigured
from registry_core.kube.images import Endpoint
from registry_core.kube.in_use import InUse, InUseCache, collect
from registry_core.kube.pull_secrets import Applied, Credentials, SecretState
from registry_core.kube.settings import KubeSettings, resolve
from registry_core.registry import Registry

NO_CLUSTER = (
    "no cluster configured: give --kubeconfig, set [kubernetes] kubeconfig in config.toml, "
    "set KUBECONFIG, or create ~/.kube/config"
)


@dataclass(frozen=True)
class ClusterStatus:
    reachable: bool
    server: str
    context: str
    source: str
    error: str
    namespaces: tuple[SecretState, ...]
    in_use: InUse | None

    def to_json(self) -> dict[str, Any]:
        return {
            "reachable": self.reachable,
            "server": self.server,
            "context": self.context,
            "source": self.source,
            "error": self.error,
            "namespaces": [
                {"name": s.namespace, "pull_secret": s.state, "reason": s.reason,
                 "managed": s.managed}
                for s in self.namespaces
            ],
            "in_use": [] if self.in_use is None else [u.to_json() for u in self.in_use.uses],
        }


class Cluster:
    """This registry's view of one cluster."""

    def __init__(self, registry: Registry, settings: KubeSettings) -> None:
        self.registry = registry
        self.settings = settings
        self.api = KubeApi.connect(settings)
        self.cache = InUseCache(self._collect)

    @classmethod
    def open(cls, registry: Registry, kubeconfig: Path | None = None,
             context: str | None = None) -> Cluster:
        """Connect as configured; ClusterUnreachable when there is no cluster to talk to."""
        settings = resolve(registry.config.kubernetes, kubeconfig, context)
        if settings is None:
            raise NoClusterConfigured(NO_CLUSTER)
        return cls(registry, settings)

    def close(self) -> None:
        self.api.close()

    @property
    def secret_name(self) -> str:
        return self.settings.secret_name

    def credentials(self) -> Credentials:
        """What the pull secret must hold now (read each time: a rotation changes it)."""
        username, password = read_credentials(self.registry.datadir)
        return Credentials(self.registry.config.endpoint, username, password)

    def endpoint(self) -> Endpoint:
        config = self.registry.config
        return Endpoint(frozenset({config.endpoint_host, config.node_ip.lower()}), config.port)

    def secret_states(self) -> list[SecretState]:
        return pull_secrets.states(self.api, self.secret_name, self.credentials(),
                                   self.settings.skip_namespaces)

    def apply_secrets(self, namespace: str | None = None) -> list[Applied]:
        return pull_secrets.apply(self.api, self.secret_name, self.credentials(),
                                  self.settings.skip_namespaces, namespace)

    def apply_secret(self, namespace: str) -> Applied:
        return pull_secrets.apply_one(self.api, namespace, self.secret_name, self.credentials())

    def in_use(self, fresh: bool = False) -> InUse:
        return self.cache.get(fresh)

    def _collect(self) -> InUse:
        return collect(self.api, self.endpoint(), manifest_graph(self.registry))

    def status(self, with_in_use: bool = True) -> ClusterStatus:
        """The whole picture; an unreachable or refusing server is a state, not an error."""
        try:
            states = tuple(self.secret_states())
            in_use = self.in_use() if with_in_use else None
        except ClusterError as exc:
            return self._status(False, str(exc), (), None)
        return self._status(True, "", states, in_use)

    def _status(self, reachable: bool, error: str, states: tuple[SecretState, ...],
                in_use: InUse | None) -> ClusterStatus:
        return ClusterStatus(reachable, self.api.server, self.api.context,
                             self.settings.source, error, states, in_use)


def in_use_if_configured(registry: Registry) -> InUse | None:
    """The cluster's images in use, or None when no cluster is configured at all; a cluster
    configured but not answering raises ClusterError (a caller must not take it for 'none')."""
    settings = resolve(registry.config.kubernetes)
    if settings is None:
        return None
    cluster = Cluster(registry, settings)
    try:
        return cluster.in_use()
    finally:
        cluster.close()


def unreachable_status(error: ClusterError, source: str = "") -> ClusterStatus:
    """The status to show when not even a connection could be set up."""
    return ClusterStatus(False, "", "", source, str(error), (), None)


def applied_json(results: list[Applied]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
