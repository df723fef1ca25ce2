"""What deleting a manifest by digest would do, before doing it.

The preview runs the GC's own `mark` twice against the current state, with no grace period:
once as things are, once with the manifest (and its tags) treated as deleted. What becomes
garbage in between is what the delete frees, shared layers counted once and only what nothing
else references. When nothing else changes, a real delete followed by
`gc --grace-period 0` frees exactly `gc_bytes_freed` (`bytes_freed` plus garbage that was
already there).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from registry_core.errors import ManifestUnknown
from registry_core.kube.in_use import ImageUse, InUse
from registry_core.reference import Digest, parse_digest
from registry_core.registry import Registry
from registry_core.store import Store
from registry_core.store.metadata import now


@dataclass(frozen=True)
class AffectedManifest:
    digest: str
    media_type: str
    fate: str
    """'deleted' (a GC collects it) or 'kept'."""
    reason: str
    platform: str | None = None
    artifact_type: str | None = None


@dataclass(frozen=True)
class FreedBlob:
    digest: str
    size: int


@dataclass(frozen=True)
class DeletePreview:
    repository: str
    digest: str
    media_type: str
    size: int
    tags: list[str]
    """Tags that go with the manifest."""
    blocked_by: list[str]
    """Indexes in this repository that list the manifest: the delete is refused while any does."""
    children: list[AffectedManifest]
    """Index children: which become garbage, which are kept and why."""
    referrers: list[AffectedManifest]
    """OCI 1.1 referrers whose subject this is: left dangling, so a GC collects them."""
    delete_untagged: bool
    bytes_freed: int
    """Bytes a GC with no grace period frees because of this delete (shared layers once)."""
    blobs_freed: list[FreedBlob] = field(default_factory=list)
    gc_bytes_freed: int = 0
    """Everything such a GC would free after this delete, garbage already there included."""
    bytes_in_grace: int = 0
    """Of bytes_freed, what the configured grace period still protects: a GC run now keeps
    it, one after the grace period frees it."""
    grace_period_seconds: float = 0.0
    pinned_by: list[str] = field(default_factory=list)
    """Stages that pin the manifest (sync/staging.py): a GC keeps it until they are released,
    and a delete is refused without --force."""
    in_use_by: list[ImageUse] = field(default_factory=list)
    """Pods and workload templates in the cluster that use the manifest (directly, through
    an index that lists it, or, for an index, through a child): deleting breaks them."""

    @property
    def allowed(self) -> bool:
        return not self.blocked_by

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["allowed"] = self.allowed
        return data


def preview_delete(
    registry: Registry, name: str, digest: Digest | str, delete_untagged: bool | None = None,
    in_use: InUse | None = None,
) -> DeletePreview:
    """Tags, children, dangling referrers and exact bytes freed by deleting `name@digest`,
    and, given the cluster's images in use, who in the cluster uses it."""
    key = str(digest if isinstance(digest, Digest) else parse_digest(digest))
    du = registry.config.gc.delete_untagged if delete_untagged is None else delete_untagged
    store, reach = registry.store, registry.store.reachability
    grace = float(registry.config.gc.grace_period_seconds)
    with store.snapshot():
        row = store.manifests.get(name, key)
        if row is None:
            raise ManifestUnknown(detail={"name": name, "digest": key})
        manifest_id, repo_id, media_type, size = row.id, row.repository_id, row.media_type, row.size
        tags = store.catalog.tags_of(manifest_id)
        pinned_by = store.stages.pinned_by(name, key)
        blocked_by = [m.digest for m in store.manifests.listing_indexes(manifest_id)]
        reach.mark(delete_untagged=du, cutoff=None)
        before = reach.garbage()
        reach.mark(delete_untagged=du, cutoff=None, exclude_manifest=manifest_id)
        after = reach.garbage()
        dead = reach.dead_ids()
        recent = reach.garbage_touched_since(now() - grace)
        children = [
            _affected(store, c.id, c.digest, c.media_type, c.platform, c.artifact_type, dead, du,
                      manifest_id)
            for c in store.manifests.children(repo_id, manifest_id)
        ]
        referrers = [
            _affected(store, r.id, r.digest, r.media_type, None, r.artifact_type, dead, du,
                      manifest_id)
            for r in store.manifests.referrers(repo_id, key)
        ]
    # A blocked delete (the manifest is an index child) frees nothing: it will be refused.
    freed = sorted(
        (FreedBlob(d, s) for d, s in after.items() if d not in before and not blocked_by),
        key=lambda b: (-b.size, b.digest),
    )
    return DeletePreview(
        repository=name,
        digest=key,
        media_type=media_type,
        size=size,
        tags=tags,
        blocked_by=blocked_by,
        children=children,
        referrers=referrers,
        delete_untagged=du,
        bytes_freed=sum(b.size for b in freed),
        blobs_freed=freed,
        gc_bytes_freed=sum(after.values()),
        bytes_in_grace=sum(b.size for b in freed if b.digest in recent),
        grace_period_seconds=grace,
        pinned_by=pinned_by,
        in_use_by=[] if in_use is None else in_use.users_of(name, key),
    )


def _affected(
    store: Store,
    manifest_id: int,
    digest: str,
    media_type: str,
    platform: str | None,
    artifact_type: str | None,
    dead: set[int],
    delete_untagged: bool,
    deleted_id: int,
) -> AffectedManifest:
    if manifest_id in dead:
        return AffectedManifest(
            digest, media_type, "deleted", "nothing else references it", platform, artifact_type
        )
    tags = store.catalog.tags_of(manifest_id, limit=3)
    if tags:
        reason = "tagged " + ", ".join(tags)
    else:
        parents = store.manifests.listing_indexes(manifest_id, exclude=deleted_id)
        if parents:
            reason = f"still listed by the index {parents[0].digest}"
        elif not delete_untagged:
            reason = "untagged manifests are kept (pods may pull by digest); delete_untagged is off"
        else:
            reason = "still referenced"
    return AffectedManifest(digest, media_type, "kept", reason, platform, artifact_type)
