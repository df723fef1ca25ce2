"""Manifest content negotiation by the Accept header, as the reference registry does it.

A client that accepts the stored media type (or sends no Accept, or */*) gets the manifest
as stored. A client that does not accept an index or manifest list gets the index's
linux/amd64 child if it accepts that child's type; otherwise MANIFEST_UNKNOWN says why.
"""

from __future__ import annotations

from registry_core.errors import ManifestUnknown
from registry_core.manifests import INDEX_MEDIA_TYPES
from registry_core.reference import is_digest_like
from registry_core.registry import Registry, StoredManifest

DEFAULT_PLATFORM = "linux/amd64"


def accepted_types(accept: str) -> set[str]:
    return {part.split(";", 1)[0].strip().lower() for part in accept.split(",") if part.strip()}


def choose_manifest(registry: Registry, name: str, reference: str, accept: str) -> StoredManifest:
    stored = registry.get_manifest(name, reference)
    types = accepted_types(accept)
    if not types or "*/*" in types or stored.media_type in types:
        return stored
    if stored.media_type in INDEX_MEDIA_TYPES and not is_digest_like(reference):
        child = registry.index_child_for(name, stored.digest, DEFAULT_PLATFORM)
        if child is not None and child.media_type in types:
            return child
    raise ManifestUnknown(
        f"the manifest is {stored.media_type}, which the Accept header does not include",
        detail={"mediaType": stored.media_type, "digest": str(stored.digest)},
    )

