"""Which cluster to talk to: the kubeconfig and context, in the documented order."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from registry_core.config import DEFAULT_SKIP_NAMESPACES, KubernetesConfig

IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


@dataclass(frozen=True)
class KubeSettings:
    kubeconfig: Path | None
    """None: the in-cluster configuration (a service account's token and CA)."""
    context: str | None
    source: str
    """Where the kubeconfig came from: '--kubeconfig', 'config.toml', 'KUBECONFIG',
    '~/.kube/config' or 'in-cluster'."""
    secret_name: str = "ase-ecr-credentials"
    skip_namespaces: tuple[str, ...] = field(default_factory=lambda: tuple(DEFAULT_SKIP_NAMESPACES))
    keep_secrets: bool = True

    def describe(self) -> str:
        where = "in-cluster configuration" if self.kubeconfig is None else str(self.kubeconfig)
        context = f", context {self.context}" if self.context else ""
        return f"{where} (from {self.source}{context})"


def resolve(
    config: KubernetesConfig,
    kubeconfig: Path | None = None,
    context: str | None = None,
    environ: dict[str, str] | None = None,
    home: Path | None = None,
) -> KubeSettings | None:
    """`--kubeconfig`, else config.toml's, else $KUBECONFIG (its first file), else
    ~/.kube/config, else in-cluster when a service-account token is mounted; None when there
    is no cluster to talk to at all. A kubeconfig named explicitly (the flag, config.toml) is
    kept even if missing, so that the error names it; one found by default must exist."""
    env = os.environ if environ is None else environ
    path, source = _kubeconfig(config, kubeconfig, env, home or Path.home())
    if path is None and not _is_file(IN_CLUSTER_TOKEN):
        return None
    return KubeSettings(
        kubeconfig=path,
        context=context or config.context or None,
        source=source,
        secret_name=config.secret_name,
        skip_namespaces=tuple(config.skip_namespaces),
        keep_secrets=config.keep_secrets,
    )


def _kubeconfig(
    config: KubernetesConfig, given: Path | None, env: os._Environ[str] | dict[str, str],
    home: Path,
) -> tuple[Path | None, str]:
    if given is not None:
        return given.expanduser(), "--kubeconfig"
    if config.kubeconfig:
        return Path(config.kubeconfig).expanduser(), "config.toml"
    listed = [p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        first = Path(listed[0]).expanduser()
        return (first, "KUBECONFIG") if _may_be_file(first) else (None, "in-cluster")
    default = home / ".kube" / "config"
    if _may_be_file(default):
        return default, "~/.kube/config"
    return None, "in-cluster"


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _may_be_file(path: Path) -> bool:
    """A file, or a path that cannot be looked at (an unreadable home): kept, so that
    connecting fails with an error that names it, as for a damaged kubeconfig."""
    try:
        return path.is_file()
    except OSError:
        return True
