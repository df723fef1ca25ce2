"""Content that arrives whole from elsewhere (a parent registry, an image layout on a USB
stick) committed in one transaction: blobs, then manifests bottom-up, then tags. A client
never sees a tag before everything under it is stored, and a GC never sees it half done.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from registry_core.blobs import Blobs
from registry_core.errors import BlobUnknown, ManifestInvalid
from registry_core.identity import Identity
from registry_core.manifest_ops import ManifestOps
from registry_core.manifests import MAX_MANIFEST_BYTES, Manifest, parse_manifest
from registry_core.reference import Digest, digest_bytes, validate_name, validate_tag
from registry_core.results import BlobInfo
from registry_core.store import Store


@dataclass(frozen=True)
class IngestBlob:
    """A blob for the repository: `path` a verified, fsynced file that the commit moves into
    the blob store, or None for a blob the registry already holds (it is linked)."""

    digest: Digest
    size: int
    path: Path | None = None


@dataclass(frozen=True)
class IngestManifest:
    body: bytes
    media_type: str | None = None
    """The Content-Type it came with (None: from its `mediaType`)."""


@dataclass(frozen=True)
class IngestImage:
    """What one `commit` stores: see Ingest.commit."""

    name: str
    blobs: Sequence[IngestBlob]
    manifests: Sequence[IngestManifest]
    tags: Mapping[str, Digest]


@dataclass(frozen=True)
class IngestResult:
    repository: str
    manifests: tuple[Digest, ...]
    """In the order given; each one's digest is that of its body."""
    created: int
    """Manifests new in the repository."""
    blobs_moved: int
    """Blob files moved into the store (the others were there already)."""
    moved_tags: dict[str, str] = field(default_factory=dict)
    """Tags that pointed at another manifest before: tag -> that manifest's digest."""


class Ingest:
    def __init__(self, store: Store, blobs: Blobs, manifests: ManifestOps) -> None:
        self.store = store
        self.blobs = blobs
        self.manifests = manifests

    def commit(
        self, name: str, blobs: Sequence[IngestBlob], manifests: Sequence[IngestManifest],
        tags: Mapping[str, Digest], *, who: Identity,
    ) -> IngestResult:
        """Blobs, then `manifests` in the order given (an index after its children, a
        referrer after its subject's blobs), then `tags`, in one write transaction."""
        return self.commit_many([IngestImage(name, blobs, manifests, tags)], who=who)[0]

    def commit_many(self, images: Sequence[IngestImage], *, who: Identity
                    ) -> list[IngestResult]:
        """Several images in one write transaction (one lock, one journal sync): all of
        them are stored, in the order given, or none."""
        parsed = [self._check(image) for image in images]
        done: list[tuple[set[Digest], dict[str, str | None], int]] = []
        with self.store.exclusive():
            for image, manifests in zip(images, parsed, strict=True):
                repo_id = self.store.catalog.ensure_repository(image.name)
                moved = sum(self._blob(image.name, repo_id, b) for b in image.blobs)
                created, previous = self._manifests(repo_id, manifests, image.tags)
                self._audit(image, manifests, created, previous, who)
                done.append((created, previous, moved))
        results = []
        for image, manifests, (created, previous, moved) in zip(images, parsed, done,
                                                               strict=True):
            self._tell(image.name, image.blobs, manifests, created, image.tags, previous, who)
            moved_tags = {t: p for t, p in previous.items()
                          if p is not None and p != str(image.tags[t])}
            results.append(IngestResult(image.name, tuple(d for d, _, _ in manifests),
                                        len(created), moved, moved_tags))
        return results

    def _check(self, image: IngestImage) -> list[tuple[Digest, Manifest, bytes]]:
        validate_name(image.name)
        parsed = [self._parse(m) for m in image.manifests]
        for tag, digest in image.tags.items():
            validate_tag(tag)
            if digest not in {d for d, _, _ in parsed}:
                raise ManifestInvalid(f"tag {tag} names {digest}, which is not being stored")
        return parsed

    def _parse(self, item: IngestManifest) -> tuple[Digest, Manifest, bytes]:
        if len(item.body) > MAX_MANIFEST_BYTES:
            raise ManifestInvalid(f"a manifest of {len(item.body)} bytes is too large")
        return digest_bytes(item.body), parse_manifest(item.body, item.media_type), item.body

    def _blob(self, name: str, repo_id: int, blob: IngestBlob) -> bool:
        key = str(blob.digest)
        if blob.path is not None:
            self.blobs.commit_file(name, blob.path, blob.digest, blob.size)
            return True
        if not self.store.blobs.exists(key) or not self.blobs.exists(blob.digest):
            raise BlobUnknown(f"blob {key} is no longer stored (collected meanwhile?)",
                              detail={"digest": key})
        self.store.blobs.link(repo_id, key, touch=True)
        return False

    def _manifests(
        self, repo_id: int, parsed: list[tuple[Digest, Manifest, bytes]],
        tags: Mapping[str, Digest],
    ) -> tuple[set[Digest], dict[str, str | None]]:
        created: set[Digest] = set()
        ids: dict[Digest, int] = {}
        for digest, manifest, body in parsed:
            image_created = self.manifests.image_created(manifest)
            ids[digest], new = self.manifests.store_manifest(
                repo_id, digest, body, manifest, image_created
            )
            if new:
                created.add(digest)
        previous = {
            tag: self.store.catalog.set_tag(repo_id, tag, ids[digest])
            for tag, digest in tags.items()
        }
        return created, previous

    def _audit(
        self, image: IngestImage, parsed: list[tuple[Digest, Manifest, bytes]],
        created: set[Digest], previous: dict[str, str | None], who: Identity,
    ) -> None:
        """The image's audit rows, inside its transaction."""
        tagged = {digest: tag for tag, digest in image.tags.items()}
        for digest, manifest, body in parsed:
            self.manifests.audit_pushed(image.name, digest, len(body), manifest,
                                        tagged.get(digest), digest in created, who)
        for tag, digest in image.tags.items():
            self.manifests.audit_tag_moved(image.name, tag, digest, previous[tag], who)

    def _tell(
        self, name: str, blobs: Sequence[IngestBlob],
        parsed: list[tuple[Digest, Manifest, bytes]], created: set[Digest],
        tags: Mapping[str, Digest], previous: dict[str, str | None], who: Identity,
    ) -> None:
        for blob in blobs:
            self.blobs.committed(name, BlobInfo(blob.digest, blob.size), who)
        tagged = {digest: tag for tag, digest in tags.items()}
        for digest, manifest, body in parsed:
            self.manifests.tell_pushed(name, digest, len(body), manifest, tagged.get(digest),
                                       digest in created, who)
        for tag, digest in tags.items():
            self.manifests.tell_tag_moved(name, tag, digest, previous[tag], who)
