"""A pod manifest that pulls an image from this registry with the pull secret."""

from __future__ import annotations

import json
import re

from registry_core.config import Config
from registry_core.reference import parse_reference, validate_name

_DNS_LABEL = re.compile(r"[^a-z0-9-]+")


def pod_snippet(config: Config, repository: str, reference: str, namespace: str = "default",
                secret_name: str | None = None) -> str:
    """YAML for a Pod running `repository:reference` (a tag or a digest) from this
    registry's endpoint, with `imagePullSecrets` naming the pull secret."""
    validate_name(repository)
    parse_reference(reference)
    separator = "@" if ":" in reference else ":"
    image = f"{config.endpoint}/{repository}{separator}{reference}"
    name = _DNS_LABEL.sub("-", repository.rsplit("/", 1)[-1].lower()).strip("-")[:50] or "app"
    secret = secret_name or config.kubernetes.secret_name
    return "\n".join([
        "apiVersion: v1",
        "kind: Pod",
        "metadata:",
        f"  name: {name}",
        f"  namespace: {_quote(namespace)}",
        "spec:",
        "  containers:",
        f"    - name: {name}",
        f"      image: {_quote(image)}",
        "  imagePullSecrets:",
        f"    - name: {_quote(secret)}",
        "",
    ])


def _quote(text: str) -> str:
    """A YAML scalar: plain when safe, else a JSON string (valid YAML)."""
    return text if re.fullmatch(r"[A-Za-z0-9._/:@-]+", text) else json.dumps(text)
