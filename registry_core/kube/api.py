"""The one module that speaks to the Kubernetes API server.

The official client (`kubernetes`) loads the kubeconfig or the in-cluster configuration and
holds the connection, its TLS and its credentials (tokens, client certificates, exec
plugins); requests go through its `ApiClient` as raw JSON rather than its generated models:
the models cost milliseconds per pod to build, and the product reads a few fields of
thousands of objects (2,000 pods decode in well under a second this way).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import urllib3

from registry_core.kube.errors import (
    ClusterConflict,
    ClusterDenied,
    ClusterError,
    ClusterGone,
    ClusterUnreachable,
)
from registry_core.kube.settings import KubeSettings

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
PAGE_SIZE = 500
"""Objects per list request (`limit`); the rest follows with `continue`."""

Json = dict[str, Any]


@dataclass(frozen=True)
class Listing:
    items: list[Json]
    resource_version: str
    """The list's resourceVersion: where a watch of the same collection starts."""


class KubeApi:
    """A connection to one API server, as the kubeconfig's context describes it."""

    def __init__(self, client: Any, server: str, context: str) -> None:
        self.client = client
        self.server = server
        self.context = context

    @classmethod
    def connect(cls, settings: KubeSettings) -> KubeApi:
        """Load the configuration (no request is made yet); ClusterUnreachable when the
        kubeconfig is missing or unusable."""
        from kubernetes import client, config  # heavy: imported only when a cluster is used

        configuration = client.Configuration()
        try:
            if settings.kubeconfig is None:
                config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
                context = "in-cluster"
            else:
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=str(settings.kubeconfig),
                    context=settings.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
                context = settings.context or _current_context(settings)
        except (config.ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
            raise ClusterUnreachable(
                f"cluster not reachable: {settings.describe()}: {_one_line(exc)}"
            ) from exc
        configuration.retries = False  # our callers decide about retries
        return cls(client.ApiClient(configuration), configuration.host, context)

    def close(self) -> None:
        self.client.close()

    # ---- requests ------------------------------------------------------------------------

    def get(self, path: str, query: dict[str, str] | None = None) -> Json:
        return _json(self._send("GET", path, query))

    def create(self, path: str, body: Json) -> Json:
        return _json(self._send("POST", path, None, body))

    def replace(self, path: str, body: Json) -> Json:
        return _json(self._send("PUT", path, None, body))

    def delete(self, path: str, options: Json | None = None) -> Json:
        """`options`: a DeleteOptions body (preconditions, propagation)."""
        return _json(self._send("DELETE", path, None, options))

    def patch_status(self, path: str, body: Json) -> Json:
        """A strategic-merge patch (what `kubectl patch` sends by default)."""
        return _json(self._send(
            "PATCH", path, None, body, "application/strategic-merge-patch+json"
        ))

    def list(self, path: str, query: dict[str, str] | None = None,
             page_size: int = PAGE_SIZE) -> Listing:
        """Every object of a collection, `page_size` at a time (`limit`/`continue`)."""
        items: list[Json] = []
        params = dict(query or {}, limit=str(page_size))
        while True:
            page = self.get(path, params)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                return Listing(items, str(meta.get("resourceVersion", "")))
            params["continue"] = token

    def watch(self, path: str, resource_version: str, timeout_seconds: int) -> Iterator[Json]:
        """The watch events of a collection after `resource_version`, until the server ends
        the watch (about `timeout_seconds`). ClusterGone when the version is too old."""
        query = {
            "watch": "true", "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_seconds), "allowWatchBookmarks": "true",
        }
        response = self._send("GET", path, query, read_timeout=timeout_seconds + READ_TIMEOUT)
        try:
            for line in _lines(response):
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    raise _status_error(int(obj.get("code") or 0), obj)
                yield event
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterUnreachable(f"watch of {path} cut: {_one_line(exc)}") from exc
        finally:
            response.release_conn()

    def _send(
        self, method: str, path: str, query: dict[str, str] | None = None,
        body: Json | None = None, content_type: str = "application/json",
        read_timeout: float = READ_TIMEOUT,
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            request = self.client.param_serialize(
                method, path, query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.client.call_api(
                *request, _request_timeout=(CONNECT_TIMEOUT, read_timeout)
            ).response
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterUnreachable(
                f"cluster not reachable: {self.server}: {_one_line(exc)}"
            ) from exc
        except Exception as exc:
            from kubernetes.client.exceptions import ApiException  # loaded by connect()

            if not isinstance(exc, ApiException):  # status 0: TLS and the like
                raise
            raise ClusterUnreachable(
                f"cluster not reachable: {self.server}: {_one_line(exc)}"
            ) from exc
        if not 200 <= response.status <= 299:
            data = response.data
            response.release_conn()
            raise _status_error(response.status, _status_body(data))
        return response


def _json(response: Any) -> Json:
    try:
        data = response.data
    finally:
        response.release_conn()
    value = json.loads(data) if data else {}
    return value if isinstance(value, dict) else {}


def _lines(response: Any) -> Iterator[bytes]:
    pending = b""
    for chunk in response.stream(64 * 1024, decode_content=True):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line for line in complete if line.strip())
    if pending.strip():
        yield pending


def _status_body(data: bytes | None) -> Json:
    try:
        value = json.loads(data or b"{}")
    except ValueError:
        return {"message": (data or b"")[:200].decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {}


def _status_error(status: int, body: Json) -> ClusterError:
    """The server's Status object (kind: Status) as one of our errors."""
    message = str(body.get("message") or f"HTTP {status}")
    reason = str(body.get("reason") or "")
    kinds: dict[int, type[ClusterError]] = {
        401: ClusterDenied, 403: ClusterDenied, 409: ClusterConflict, 410: ClusterGone,
    }
    kind = kinds.get(status, ClusterError)
    if status == 401:
        message = f"cluster refused our credentials: {message}"
    return kind(message, status, reason)


def _current_context(settings: KubeSettings) -> str:
    from kubernetes import config

    try:
        _, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=str(settings.kubeconfig)
        )
    except (config.ConfigException, OSError, ValueError, TypeError, KeyError):
        return ""
    return str((active or {}).get("name", ""))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] if text else type(exc).__name__
