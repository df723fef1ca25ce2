"""What can go wrong talking to the cluster, as one readable line each."""

from __future__ import annotations

from registry_core.errors import EdgeError


class ClusterError(EdgeError):
    """The API server answered with an error (`status` its HTTP status, `reason` the
    Status object's reason, such as Conflict or NotFound)."""

    def __init__(self, message: str, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class ClusterUnreachable(ClusterError):
    """No answer: no kubeconfig, a bad one, or the server cannot be reached."""


class NoClusterConfigured(ClusterUnreachable):
    """No kubeconfig anywhere and no in-cluster service account: there is no cluster."""


class ClusterDenied(ClusterError):
    """The server refused our credentials (401) or the action (403)."""


class ClusterConflict(ClusterError):
    """409: the object changed (or appeared) since we read it."""


class ClusterGone(ClusterError):
    """410: a watch's resourceVersion is too old; list again."""
