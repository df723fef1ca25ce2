"""The cluster side: the pull secret in every namespace, and the images the cluster uses.

The official `kubernetes` client is used here only (`api.py`), and imported only when a
cluster is opened, so that the rest of the product starts without it.

Public surface: `Cluster` (open, status, apply_secrets, in_use), `SecretKeeper` (the
serving process's watch), `pod_snippet`, the errors, and the result types.
"""

from registry_core.kube.cluster import Cluster, ClusterStatus, unreachable_status
from registry_core.kube.errors import (
    ClusterConflict,
    ClusterDenied,
    ClusterError,
    ClusterUnreachable,
    NoClusterConfigured,
)
from registry_core.kube.in_use import ImageUse, InUse
from registry_core.kube.keeper import KeeperState, SecretKeeper
from registry_core.kube.pull_secrets import Applied, SecretState
from registry_core.kube.snippet import pod_snippet

__all__ = [
    "Applied",
    "Cluster",
    "ClusterConflict",
    "ClusterDenied",
    "ClusterError",
    "ClusterStatus",
    "ClusterUnreachable",
    "ImageUse",
    "InUse",
    "KeeperState",
    "NoClusterConfigured",
    "SecretKeeper",
    "SecretState",
    "pod_snippet",
    "unreachable_status",
]
