"""The pull secret in every namespace: its expected content, each namespace's state, and
applying it (create the missing, repair the stale) without overwriting anyone blindly."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from registry_core.kube.api import Json, KubeApi
from registry_core.kube.errors import ClusterConflict, ClusterError

SECRET_TYPE = "kubernetes.io/dockerconfigjson"
DATA_KEY = ".dockerconfigjson"
MANAGED_LABEL = "app.kubernetes.io/managed-by"
MANAGED_VALUE = "edge-console"
CONFLICT_RETRIES = 5

State = Literal["ok", "missing", "stale", "skipped"]
Action = Literal["created", "repaired", "unchanged", "skipped", "failed"]


@dataclass(frozen=True)
class Credentials:
    """What the secret must hold: the registry's endpoint and the admin's credentials."""

    endpoint: str
    username: str
    password: str


@dataclass(frozen=True)
class SecretState:
    namespace: str
    state: State
    reason: str = ""
    """Why it is stale or skipped."""
    managed: bool = False
    """Whether the secret carries our managed-by label."""


@dataclass(frozen=True)
class Applied:
    namespace: str
    action: Action
    message: str = ""


def dockerconfigjson(creds: Credentials) -> bytes:
    """The `.dockerconfigjson` that `kubectl create secret docker-registry` writes: compact,
    keys in Go's struct order, `<`, `>` and `&` escaped as Go's encoder does."""
    auth = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    entry = {"username": creds.username, "password": creds.password, "auth": auth}
    text = json.dumps({"auths": {creds.endpoint: entry}}, separators=(",", ":"),
                      ensure_ascii=False)
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text.encode()


def secret_object(namespace: str, name: str, creds: Credentials,
                  keep: Json | None = None) -> Json:
    """The Secret to send: our content, with `keep`'s (the existing secret's) labels and
    annotations kept and the managed-by label added."""
    meta = (keep or {}).get("metadata") or {}
    labels = dict(meta.get("labels") or {}, **{MANAGED_LABEL: MANAGED_VALUE})
    metadata: Json = {"name": name, "namespace": namespace, "labels": labels}
    if meta.get("annotations"):
        metadata["annotations"] = dict(meta["annotations"])
    if meta.get("resourceVersion"):
        metadata["resourceVersion"] = meta["resourceVersion"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": SECRET_TYPE,
        "data": {DATA_KEY: base64.b64encode(dockerconfigjson(creds)).decode()},
    }


def assess(namespace: str, secret: Json | None, creds: Credentials) -> SecretState:
    """ok, missing, or stale with the reason; `secret` None when the namespace has none."""
    if secret is None:
        return SecretState(namespace, "missing")
    labels = (secret.get("metadata") or {}).get("labels") or {}
    managed = labels.get(MANAGED_LABEL) == MANAGED_VALUE
    problem = _problem(secret, creds)
    if problem:
        return SecretState(namespace, "stale", problem, managed)
    return SecretState(namespace, "ok", "", managed)


def _problem(secret: Json, creds: Credentials) -> str:
    if secret.get("type") != SECRET_TYPE:
        return f"type is {secret.get('type')!r}, not {SECRET_TYPE}"
    raw = (secret.get("data") or {}).get(DATA_KEY)
    if not raw:
        return f"no {DATA_KEY} in its data"
    try:
        auths = json.loads(base64.b64decode(raw, validate=True)).get("auths")
    except (ValueError, AttributeError, binascii.Error):
        return f"{DATA_KEY} is not valid JSON"
    entry = auths.get(creds.endpoint) if isinstance(auths, dict) else None
    if not isinstance(entry, dict):
        return f"no entry for {creds.endpoint}"
    if _credentials_of(entry) != (creds.username, creds.password):
        return f"credentials for {creds.endpoint} are not the current ones"
    return ""


def _credentials_of(entry: dict[str, Any]) -> tuple[str, str] | None:
    """The username and password an auths entry gives (its `auth` wins, as in docker)."""
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, _, password = base64.b64decode(auth, validate=True).decode().partition(":")
        except (ValueError, binascii.Error):
            return None
        return user, password
    named, given = entry.get("username"), entry.get("password")
    if isinstance(named, str) and isinstance(given, str):
        return named, given
    return None


# ---- against the cluster -------------------------------------------------------------------


def namespaces(api: KubeApi) -> list[Json]:
    return sorted(api.list("/api/v1/namespaces").items, key=_name)


def states(api: KubeApi, name: str, creds: Credentials,
           skip: Iterable[str]) -> list[SecretState]:
    """Every namespace's pull-secret state, sorted by namespace."""
    skipped = set(skip)
    by_namespace = {
        (s.get("metadata") or {}).get("namespace"): s
        for s in api.list("/api/v1/secrets", {"fieldSelector": f"metadata.name={name}"}).items
    }
    result = []
    for ns in namespaces(api):
        reason = _skip_reason(ns, skipped)
        if reason:
            result.append(SecretState(_name(ns), "skipped", reason))
        else:
            result.append(assess(_name(ns), by_namespace.get(_name(ns)), creds))
    return result


def apply(api: KubeApi, name: str, creds: Credentials, skip: Iterable[str],
          only: str | None = None) -> list[Applied]:
    """Create the missing secrets and repair the stale ones, in every namespace (or `only`);
    a failure in one namespace is reported and the others go on."""
    skipped = set(skip)
    targets = namespaces(api) if only is None else [api.get(f"/api/v1/namespaces/{only}")]
    results = []
    for ns in targets:
        reason = _skip_reason(ns, skipped)
        if reason:
            results.append(Applied(_name(ns), "skipped", reason))
            continue
        try:
            results.append(apply_one(api, _name(ns), name, creds))
        except ClusterError as exc:
            results.append(Applied(_name(ns), "failed", str(exc)))
    return results


def apply_one(api: KubeApi, namespace: str, name: str, creds: Credentials) -> Applied:
    """Make one namespace's secret right. A conflict (someone changed or created it since we
    read it) is retried on the fresh object, a few times, never overwritten blindly."""
    path = f"/api/v1/namespaces/{namespace}/secrets"
    for _ in range(CONFLICT_RETRIES):
        current = _read(api, f"{path}/{name}")
        state = assess(namespace, current, creds)
        try:
            if current is None:
                api.create(path, secret_object(namespace, name, creds))
                return Applied(namespace, "created")
            if state.state == "ok":
                return Applied(namespace, "unchanged")
            _repair(api, f"{path}/{name}", path, namespace, name, creds, current)
            return Applied(namespace, "repaired", state.reason)
        except ClusterConflict:
            continue
    raise ClusterConflict(
        f"{namespace}/{name} kept changing under us ({CONFLICT_RETRIES} tries)", 409, "Conflict"
    )


def _repair(api: KubeApi, item: str, collection: str, namespace: str, name: str,
            creds: Credentials, current: Json) -> None:
    fresh = secret_object(namespace, name, creds, keep=current)
    if current.get("type") == SECRET_TYPE:
        api.replace(item, fresh)
        return
    # A secret's type cannot change: delete exactly the version we read, then create.
    version = (current.get("metadata") or {}).get("resourceVersion")
    api.delete(item, {"kind": "DeleteOptions", "apiVersion": "v1",
                      "preconditions": {"resourceVersion": version}})
    del fresh["metadata"]["resourceVersion"]
    api.create(collection, fresh)


def _read(api: KubeApi, path: str) -> Json | None:
    try:
        return api.get(path)
    except ClusterError as exc:
        if exc.status == 404:
            return None
        raise


def _skip_reason(ns: Json, skipped: set[str]) -> str:
    if _name(ns) in skipped:
        return "on the skip list"
    if (ns.get("status") or {}).get("phase") == "Terminating":
        return "being deleted"
    return ""


def _name(obj: Json) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))
