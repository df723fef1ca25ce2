"""Manifest operations of a repository: get, ingest (checks, body, rows, tag), delete,
referrers."""

from __future__ import annotations

import json

from registry_core import pins
from registry_core.access.audit import FAILED, AuditLog
from registry_core.blobs import Blobs
from registry_core.errors import (
    Denied,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestTooLarge,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    Pinned,
    RegistryError,
)
from registry_core.events import EventBus, ManifestDeleted, ManifestPushed, TagMoved
from registry_core.identity import Identity
from registry_core.manifests import MAX_MANIFEST_BYTES, Manifest, parse_manifest
from registry_core.reference import (
    Digest,
    as_digest,
    digest_bytes,
    parse_digest,
    parse_reference,
    validate_name,
    validate_tag,
)
from registry_core.results import DeletedManifest, PutManifestResult, Referrer, StoredManifest
from registry_core.store import Store
from registry_core.store.manifests import ChildRef, NewManifest, ReferencedBlob

CONFIG_CREATED_MAX = 1 << 20
"""Configs up to this size are read for the image's `created` time."""


def repository_id(store: Store, name: str, missing: type[RegistryError] = NameUnknown) -> int:
    """The repository's id; `missing` raised when it has none."""
    validate_name(name)
    repo_id = store.catalog.repository_id(name)
    if repo_id is None:
        raise missing(detail={"name": name})
    return repo_id


class ManifestOps:
    """The manifests of every repository; pushes, deletes and tag moves go to the audit log
    inside their transactions and to `events` after their commits."""

    def __init__(self, store: Store, blobs: Blobs, events: EventBus, audit: AuditLog) -> None:
        self.store = store
        self.blobs = blobs
        self.events = events
        self.audit = audit

    def get(self, name: str, reference: str) -> StoredManifest:
        """The manifest a tag or digest names; a tag that cannot exist is simply unknown
        (404, as the distribution-spec conformance suite expects), a malformed digest not."""
        validate_name(name)
        try:
            ref = parse_reference(reference)
        except NameInvalid:
            raise ManifestUnknown(detail={"name": name, "reference": reference[:200]}) from None
        repo_id = repository_id(self.store, name, missing=ManifestUnknown)
        if isinstance(ref, Digest):
            head = self.store.manifests.head(repo_id, str(ref))
        else:
            head = self.store.manifests.head_by_tag(repo_id, ref)
        if head is None:
            raise ManifestUnknown(detail={"name": name, "reference": reference})
        digest = parse_digest(head.digest)
        content = self.blobs.content
        return StoredManifest(
            digest, head.media_type, head.size, lambda: content.read_bytes(digest)
        )

    def put(
        self, name: str, reference: str, body: bytes, content_type: str | None, *,
        who: Identity,
    ) -> PutManifestResult:
        validate_name(name)
        if len(body) > MAX_MANIFEST_BYTES:
            raise ManifestTooLarge(detail={"size": len(body), "limit": MAX_MANIFEST_BYTES})
        ref = parse_reference(reference)
        digest = digest_bytes(body, ref.algorithm if isinstance(ref, Digest) else "sha256")
        if isinstance(ref, Digest) and ref != digest:
            raise DigestInvalid(
                f"manifest digest is {digest}, not {ref}",
                detail={"expected": str(ref), "actual": str(digest)},
            )
        manifest = parse_manifest(body, content_type)
        image_created = self.image_created(manifest)
        store = self.store
        with store.exclusive():
            repo_id = store.catalog.ensure_repository(name)
            manifest_id, created = self.store_manifest(
                repo_id, digest, body, manifest, image_created
            )
            tag = None if isinstance(ref, Digest) else ref
            previous = None if tag is None else store.catalog.set_tag(repo_id, tag, manifest_id)
            self.audit_pushed(name, digest, len(body), manifest, tag, created, who)
            if tag is not None:
                self.audit_tag_moved(name, tag, digest, previous, who)
        self.tell_pushed(name, digest, len(body), manifest, tag, created, who)
        if tag is not None:
            self.tell_tag_moved(name, tag, digest, previous, who)
        subject = manifest.subject.digest if manifest.subject else None
        return PutManifestResult(digest, created, subject)

    def store_manifest(
        self, repo_id: int, digest: Digest, body: bytes, manifest: Manifest,
        image_created: str | None,
    ) -> tuple[int, bool]:
        """Check what it references, store its body and rows; inside exclusive(). Returns
        (manifest id, whether it is new in the repository)."""
        self._check_references(repo_id, manifest)
        self.blobs.store_small(body, digest)
        self.store.blobs.link(repo_id, str(digest), touch=False)
        return self._insert(repo_id, digest, len(body), manifest, image_created)

    def audit_pushed(self, name: str, digest: Digest, size: int, manifest: Manifest,
                     tag: str | None, created: bool, who: Identity) -> None:
        """The push's row; inside its transaction."""
        self.audit.record(who, "manifest.push", repository=name, reference=str(digest),
                          detail={"tag": tag, "media_type": manifest.media_type, "size": size,
                                  "created": created})

    def audit_tag_moved(self, name: str, tag: str, digest: Digest, previous: str | None,
                        who: Identity) -> None:
        """A row when the tag pointed at another manifest before; inside the transaction."""
        if previous is not None and previous != str(digest):
            self.audit.record(who, "tag.move", repository=name, reference=tag,
                              detail={"digest": str(digest), "previous": previous})

    def tell_pushed(self, name: str, digest: Digest, size: int, manifest: Manifest,
                    tag: str | None, created: bool, who: Identity) -> None:
        subject = manifest.subject.digest if manifest.subject else None
        self.events.emit(ManifestPushed(
            identity=who.name, repository=name, digest=str(digest),
            media_type=manifest.media_type, size=size, tag=tag, created=created,
            subject=None if subject is None else str(subject),
        ))

    def tell_tag_moved(self, name: str, tag: str, digest: Digest, previous: str | None,
                       who: Identity) -> None:
        if previous != str(digest):
            self.events.emit(TagMoved(identity=who.name, repository=name, tag=tag,
                                      digest=str(digest), previous=previous))

    def _check_references(self, repo_id: int, manifest: Manifest) -> None:
        for desc in manifest.blob_descriptors():
            # In this repository: a blob of another one is reached by a mount, never by
            # naming it (the repository's access would otherwise extend to any blob).
            size = self.blobs.linked_size(repo_id, desc.digest)
            if size is None:
                raise ManifestBlobUnknown(
                    f"blob {desc.digest} is not in this repository (upload or mount it first)",
                    detail={"digest": str(desc.digest)},
                )
            if size != desc.size:
                raise ManifestInvalid(
                    f"descriptor size {desc.size} of {desc.digest} does not match "
                    f"the stored blob ({size} bytes)",
                    detail={"digest": str(desc.digest)},
                )
        for desc in manifest.child_descriptors():
            if self.store.manifests.id_of(repo_id, str(desc.digest)) is None:
                raise ManifestUnknown(
                    f"index child {desc.digest} is not in this repository",
                    detail={"digest": str(desc.digest)},
                )

    def _insert(
        self, repo_id: int, digest: Digest, size: int, manifest: Manifest,
        image_created: str | None,
    ) -> tuple[int, bool]:
        manifests = self.store.manifests
        existing = manifests.id_of(repo_id, str(digest))
        if existing is not None:
            return existing, False
        blobs = manifest.blob_descriptors()
        manifest_id = manifests.insert(
            NewManifest(
                repository_id=repo_id,
                digest=str(digest),
                media_type=manifest.media_type,
                artifact_type=manifest.effective_artifact_type(),
                size=size,
                subject=str(manifest.subject.digest) if manifest.subject else None,
                annotations=dict(manifest.annotations) if manifest.annotations else None,
                platforms=", ".join(str(p) for p in manifest.platforms()) or None,
                image_created=image_created,
                blobs=tuple(
                    ReferencedBlob(
                        str(d.digest), "config" if d is manifest.config else "layer", d.size
                    )
                    for d in blobs
                ),
                children=tuple(
                    ChildRef(str(d.digest), str(d.platform) if d.platform else None)
                    for d in manifest.child_descriptors()
                ),
            )
        )
        for d in blobs:
            self.store.blobs.link(repo_id, str(d.digest), touch=True)
        return manifest_id, True

    def image_created(self, manifest: Manifest) -> str | None:
        """The `created` time of an image's config, for the console's tag list."""
        config = manifest.config
        if config is None or config.size > CONFIG_CREATED_MAX or not self.blobs.exists(
            config.digest
        ):
            return None
        try:
            data = json.loads(self.blobs.read_small(config.digest))
        except (OSError, ValueError):
            return None
        created = data.get("created") if isinstance(data, dict) else None
        return created if isinstance(created, str) else None

    def delete(self, name: str, reference: str, *, who: Identity,
               override_pins: bool = False) -> DeletedManifest:
        """By digest: the manifest and every tag on it go. By tag: only that tag goes. A
        stage's pin refuses it (errors.Pinned) unless `override_pins` (the CLI's --force);
        an overridden pin is named in the audit row."""
        validate_name(name)
        ref = parse_reference(reference)
        repo_id = repository_id(self.store, name, missing=ManifestUnknown)
        self.blobs.ballast.release_if_low()
        guard = pins.overridden if override_pins else pins.enforced
        action = "manifest.delete" if isinstance(ref, Digest) else "tag.delete"
        try:
            with self.store.exclusive():
                if not isinstance(ref, Digest):
                    untagged = self.store.catalog.delete_tag(repo_id, validate_tag(ref))
                    if untagged is None:
                        raise ManifestUnknown(detail={"name": name, "reference": reference})
                    pin = guard(lambda: pins.refuse_untag(self.store, name, ref))  # rolls back
                    deleted = DeletedManifest(name, parse_digest(untagged), (ref,))
                    self.audit.record(who, action, repository=name, reference=ref,
                                      detail={"digest": untagged, **pin})
                else:
                    deleted, pin = self._delete_by_digest(repo_id, name, ref, guard)
                    self.audit.record(who, action, repository=name, reference=str(ref),
                                      detail={"tags": list(deleted.tags), **pin})
        except Pinned as exc:  # refused: the attempt is on record all the same
            self.audit.record_now(who, action, repository=name, reference=str(ref),
                                  result=FAILED, detail={"reason": str(exc)})
            raise
        if isinstance(ref, Digest):
            self.events.emit(ManifestDeleted(identity=who.name, repository=name,
                                             digest=str(ref), tags=deleted.tags))
        else:
            self.events.emit(TagMoved(identity=who.name, repository=name, tag=ref, digest=None,
                                      previous=str(deleted.digest)))
        return deleted

    def _delete_by_digest(self, repo_id: int, name: str, digest: Digest,
                          guard: pins.Guard) -> tuple[DeletedManifest, dict[str, str]]:
        store = self.store
        manifest_id = store.manifests.id_of(repo_id, str(digest))
        if manifest_id is None:
            raise ManifestUnknown(detail={"name": name, "digest": str(digest)})
        parents = store.manifests.listing_indexes(manifest_id)
        if parents:
            raise Denied(
                f"{digest} is part of the index {parents[0].digest}; delete the index instead",
                detail={"index": parents[0].digest},
            )
        tags_of = store.catalog.tags_of(manifest_id)
        pin = guard(lambda: pins.refuse_delete(store, name, str(digest), tags_of))
        tags = store.catalog.delete_tags_of(manifest_id)
        store.manifests.delete(manifest_id)
        return DeletedManifest(name, digest, tuple(tags)), pin

    def referrers(
        self, name: str, digest: Digest | str, artifact_type: str | None = None
    ) -> list[Referrer]:
        """OCI 1.1 referrers of `digest` in the repository (the subject need not exist)."""
        validate_name(name)
        digest = as_digest(digest)
        repo_id = self.store.catalog.repository_id(name)
        if repo_id is None:
            return []
        rows = self.store.manifests.referrers(repo_id, str(digest), artifact_type)
        return [
            Referrer(m.media_type, m.digest, m.size, m.artifact_type, m.annotations) for m in rows
        ]

    def index_child_for(self, name: str, index: Digest, platform: str) -> StoredManifest | None:
        """The child of an index for a platform such as 'linux/amd64' (Accept fallback)."""
        child = self.store.manifests.child_for_platform(name, str(index), platform)
        return None if child is None else self.get(name, child)
