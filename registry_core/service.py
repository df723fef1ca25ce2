"""The registry as a running service: core, auth, HTTP app, server and schedule, composed once.

`edge-console serve` and the console both start the registry through `RegistryService`, so
the two ways of serving cannot drift apart.
"""

from __future__ import annotations

import logging
from pathlib import Path

from registry_core.access.credentials import Authenticator
from registry_core.config import Config
from registry_core.datadir import DataDir
from registry_core.errors import NotEnabledError
from registry_core.gc import GarbageCollector
from registry_core.http.app import RegistryApp
from registry_core.http.observability import ObservedApp
from registry_core.kube import Cluster, SecretKeeper
from registry_core.kube.settings import KubeSettings, resolve
from registry_core.registry import Registry
from registry_core.scheduler import GCScheduler
from registry_core.server import (
    ListenAddress,
    RegistryServer,
    clear_server_state,
    write_server_state,
)
from registry_core.sync.scheduler import SyncScheduler
from registry_core.usage import UsageSampler

log = logging.getLogger("edge_registry.service")


class RegistryService:
    """Owns one Registry and, once started, the server that serves it."""

    def __init__(
        self, datadir: DataDir, access_logging: bool = False,
        kube: KubeSettings | None = None,
    ) -> None:
        """`kube`: the cluster whose pull secrets to keep while serving (default: as
        config.toml, KUBECONFIG or ~/.kube/config say; none: no keeper)."""
        if not datadir.is_enabled():
            raise NotEnabledError(
                f"the registry in {datadir.root} is not enabled; run `edge-console enable`"
            )
        self.datadir = datadir
        self.registry = Registry(datadir)
        self.app = RegistryApp(self.registry, Authenticator(datadir), access_logging)
        self.asgi = ObservedApp(self.app)
        """What the server runs: the app, with /healthz, /metrics and the request counts."""
        self.server: RegistryServer | None = None
        self.collector = GarbageCollector(self.registry)
        self.scheduler = GCScheduler(self.registry, self.collector)
        self.usage_sampler = UsageSampler(self.registry)
        self.sync_scheduler = SyncScheduler(self.registry)
        self.kube = kube or resolve(self.config.kubernetes)
        self.secret_keeper: SecretKeeper | None = None

    @property
    def config(self) -> Config:
        return self.registry.config

    def start(self, listen: str | None = None) -> ListenAddress:
        """Serve over TLS on `listen` (default: the configured address); returns the address."""
        address = ListenAddress.parse(listen or self.config.listen_address)
        cert: Path | None = self.datadir.server_cert if self.config.tls else None
        key: Path | None = self.datadir.server_key if self.config.tls else None
        self.server = RegistryServer(self.asgi, address, cert, key)
        self.server.start()
        write_server_state(self.datadir, address, self.config.tls)
        self.registry.fill_ballast()
        self.scheduler.start()
        self.sync_scheduler.start()
        self._keep_secrets()
        log.info(
            "serving %s on %s (TLS %s)",
            self.datadir.root,
            address,
            "on" if self.config.tls else "off",
        )
        return address

    def _keep_secrets(self) -> None:
        settings = self.kube
        if settings is None or not settings.keep_secrets or self.secret_keeper is not None:
            return
        self.secret_keeper = SecretKeeper(lambda: Cluster(self.registry, settings))
        self.secret_keeper.start()
        log.info("keeping pull secrets in %s", settings.describe())

    def stop(self) -> None:
        if self.secret_keeper is not None:
            self.secret_keeper.stop()
            self.secret_keeper = None
        self.scheduler.stop()
        self.sync_scheduler.stop()
        if self.server is not None:
            self.server.stop()
            self.server = None
            clear_server_state(self.datadir)

    def close(self) -> None:
        self.stop()
        self.app.authenticator.close()  # after the server: no check is sent to a closed pool
        self.collector.close()
        self.usage_sampler.close()
        self.registry.close()
