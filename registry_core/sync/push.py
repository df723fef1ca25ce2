"""ReadWrite: a tag moved here since the last sync goes up to the parent: its blobs first
(those the parent lacks: mounted from another of its repositories when one likely holds
them, else uploaded), then index children, then the tagged manifest."""

from __future__ import annotations

import contextlib
import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from registry_core.errors import BlobUnknown
from registry_core.manifests import parse_manifest
from registry_core.reference import parse_digest
from registry_core.registry import Registry
from registry_core.sync.errors import ParentError, ParentUnreachable

log = logging.getLogger("edge_registry.sync")

MOUNT_SOURCES = 3
"""Repositories a mount of one blob is tried from before it is uploaded: a refused mount
costs two requests (the upload the parent opened instead is cancelled)."""


class PushParent(Protocol):
    def blob_exists(self, repository: str, digest: str) -> bool: ...

    def push_blob(self, repository: str, digest: str, source: Path, size: int) -> None: ...

    def put_manifest(self, repository: str, reference: str, body: bytes,
                     media_type: str) -> str: ...


@runtime_checkable
class MountParent(PushParent, Protocol):
    """A parent that can mount a blob from another of its repositories (ParentClient)."""

    def mount_blob(self, repository: str, digest: str, source: str) -> bool: ...

    def holders(self, digest: str) -> list[str]: ...


@dataclass
class Pushed:
    """What went up for one tag: blobs the parent had already are in neither count."""

    manifests: int = 0
    blobs_uploaded: int = 0
    bytes_uploaded: int = 0
    blobs_mounted: int = 0


def push_up(registry: Registry, parent: PushParent, repository: str, tag: str,
            digest: str, transfers: AbstractContextManager[object] | None = None) -> Pushed:
    """Send `repository:tag` (= `digest` here) to the parent; each blob upload holds
    `transfers` (the pass's bound on transfers, shared with its downloads)."""
    manifests = _bottom_up(registry, repository, digest)
    blobs: dict[str, int] = {}
    for _, media_type, body in manifests:
        for blob in parse_manifest(body, media_type).blob_descriptors():
            blobs[str(blob.digest)] = blob.size
    pushed = Pushed(manifests=len(manifests))
    for blob_digest, size in blobs.items():
        if parent.blob_exists(repository, blob_digest):
            continue
        if _mounted(registry, parent, repository, blob_digest):
            pushed.blobs_mounted += 1
        else:
            with transfers or contextlib.nullcontext():
                parent.push_blob(repository, blob_digest, _local_file(registry, blob_digest),
                                 size)
            pushed.blobs_uploaded += 1
            pushed.bytes_uploaded += size
    for child_digest, media_type, body in manifests[:-1]:
        parent.put_manifest(repository, child_digest, body, media_type)
    _, media_type, body = manifests[-1]
    parent.put_manifest(repository, tag, body, media_type)
    return pushed


def mount_sources(registry: Registry, parent: MountParent, repository: str,
                  digest: str) -> list[str]:
    """Repositories of the parent that likely hold the blob, best first: those this run saw
    it in (pushed, mounted, found or fetched), then those synced here that hold it."""
    names = [*parent.holders(digest), *registry.store.sync_tags.repositories_holding(digest)]
    return [n for n in dict.fromkeys(names) if n != repository][:MOUNT_SOURCES]


def _mounted(registry: Registry, parent: PushParent, repository: str, digest: str) -> bool:
    """Whether the parent linked the blob into `repository` from one of its repositories."""
    if not isinstance(parent, MountParent):
        return False
    for source in mount_sources(registry, parent, repository, digest):
        try:
            if parent.mount_blob(repository, digest, source):
                log.info("sync: %s mounted into %s from %s", digest, repository, source)
                return True
        except ParentUnreachable:
            raise
        except ParentError as exc:  # not there, not allowed (404, 403...): the next, or upload
            log.info("sync: no mount of %s from %s: %s", digest, source, exc)
    return False


def _bottom_up(registry: Registry, repository: str,
               digest: str) -> list[tuple[str, str, bytes]]:
    """(digest, media type, body) of the manifest and its index children, children first."""
    stored = registry.get_manifest(repository, digest)
    body = stored.read()
    manifest = parse_manifest(body, stored.media_type)
    children = []
    for child in manifest.child_descriptors():
        children += _bottom_up(registry, repository, str(child.digest))
    return [*children, (str(stored.digest), stored.media_type, body)]


def _local_file(registry: Registry, digest: str) -> Path:
    path = registry.blob_store.local_path(parse_digest(digest))
    if path is None or not path.is_file():
        raise BlobUnknown(f"blob {digest} is not stored here", detail={"digest": digest})
    return path
