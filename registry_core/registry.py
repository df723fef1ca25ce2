"""The registry's domain operations, used by every face (HTTP API, CLI, console).

Methods are synchronous and may block on disk and on the database's write lock: the HTTP
face calls the slow ones from worker threads, the console from Textual workers.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from registry_core import space
from registry_core.config import Config, load_config
from registry_core.datadir import DataDir
from registry_core.errors import (
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    Denied,
    DigestInvalid,
    InsufficientSpace,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestTooLarge,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    RangeInvalid,
    RegistryError,
    StorageFull,
    StoreBusy,
    StoreError,
)
from registry_core.manifests import MAX_MANIFEST_BYTES, Manifest, parse_manifest
from registry_core.reference import (
    Digest,
    digest_bytes,
    parse_digest,
    parse_reference,
    validate_name,
    validate_tag,
    validate_upload_id,
)
from registry_core.store import Store
from registry_core.store.blobs import BlobFiles, HashingWriter, hash_file
from registry_core.store.manifests import ChildRef, NewManifest, ReferencedBlob
from registry_core.store.metadata import Metadata

USED_BYTES_TTL = 1.0


@dataclass(frozen=True)
class BlobInfo:
    digest: Digest
    size: int
    path: Path


@dataclass(frozen=True)
class Upload:
    id: str
    repository: str
    size: int


@dataclass(frozen=True)
class StoredManifest:
    digest: Digest
    media_type: str
    size: int
    path: Path

    def body(self) -> bytes:
        return self.path.read_bytes()


@dataclass(frozen=True)
class PutManifestResult:
    digest: Digest
    created: bool
    subject: Digest | None


@dataclass(frozen=True)
class DeletedManifest:
    repository: str
    digest: Digest
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Referrer:
    media_type: str
    digest: str
    size: int
    artifact_type: str | None
    annotations: dict[str, str] | None


@dataclass(frozen=True)
class Page:
    items: list[str]
    more: bool
    """True when items after the last one exist (the API then sends a Link header)."""


class Registry:
    """One data directory's registry: blobs on disk, metadata in SQLite."""

    def __init__(self, datadir: DataDir, config: Config | None = None) -> None:
        datadir.ensure()
        self.datadir = datadir
        self.config = config or load_config(datadir.config)
        self.store = Store(datadir.database)
        self.files = BlobFiles(datadir.blobs, datadir.uploads)
        self.ballast = space.Ballast(datadir.root / space.BALLAST_NAME)
        self._writers: dict[str, HashingWriter] = {}
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._used_cache: tuple[float, int] = (0.0, 0)
        self.on_change: Callable[[str], None] | None = None
        """Called with 'push' or 'delete' after a manifest commit (the service debounces it
        into usage samples); must be cheap and must not raise."""

    @property
    def db(self) -> Metadata:
        """The raw connections, for tests that arrange or inspect rows directly; the core
        goes through `store`."""
        return self.store.metadata

    def change_counter(self) -> int:
        """Changes whenever anything is committed, in this process or another: a cheap 'did
        anything change?' for caches and pollers."""
        return self.store.change_counter()

    def close(self) -> None:
        self.store.close()

    # ---- catalog -------------------------------------------------------------------------

    def catalog(self, n: int | None = None, last: str | None = None) -> Page:
        """Repositories that hold at least one manifest, sorted."""
        return _page(self.store.catalog.repositories_page(last or "", _limit(n)), n)

    def tags(self, name: str, n: int | None = None, last: str | None = None) -> Page:
        repo_id = self._repo_id(name)
        return _page(self.store.catalog.tag_names(repo_id, last or "", _limit(n)), n)

    # ---- blobs ---------------------------------------------------------------------------

    def stat_blob(self, name: str, digest: Digest | str) -> BlobInfo:
        """A blob visible in the repository, or BlobUnknown."""
        validate_name(name)
        digest = _digest(digest)
        size = self.store.blobs.size_in_repository(name, str(digest))
        path = self.files.path(digest)
        if size is None or not path.is_file():
            raise BlobUnknown(detail={"digest": str(digest)})
        return BlobInfo(digest, size, path)

    def delete_blob(self, name: str, digest: Digest | str) -> None:
        """Unlink a blob from a repository; the GC reclaims it once nothing references it."""
        info = self.stat_blob(name, digest)
        self.ballast.release_if_low()
        with self.store.exclusive():
            self.store.blobs.unlink(name, str(info.digest))

    def mount_blob(self, name: str, digest: Digest | str, source: str) -> BlobInfo | None:
        """Link a blob from another repository; None if the source does not have it."""
        validate_name(name)
        try:
            info = self.stat_blob(source, digest)
        except (BlobUnknown, NameInvalid):  # the client then uploads it (spec fallback)
            return None
        with self.store.exclusive():
            repo_id = self.store.catalog.ensure_repository(name)
            self.store.blobs.link(repo_id, str(info.digest), touch=True)
        return info

    # ---- uploads -------------------------------------------------------------------------

    def start_upload(self, name: str, expected_size: int = 0) -> Upload:
        validate_name(name)
        self.check_room(expected_size)
        upload_id = str(uuid.uuid4())
        self.files.create_upload(upload_id)
        try:
            with self.store.exclusive():
                self.store.uploads.create(upload_id, name)
        except BaseException:
            self.files.remove_upload(upload_id)
            raise
        self._forget_stale_writers()
        self._writers[upload_id] = HashingWriter(
            self.files.upload_path(upload_id), 0, "sha256", hashlib.sha256()
        )
        return Upload(upload_id, name, 0)

    def _forget_stale_writers(self, keep: int = 256) -> None:
        """Drop the hash states of uploads that ended elsewhere (purged by a GC, say)."""
        if len(self._writers) < keep:
            return
        live = self.store.uploads.ids()
        with self._lock:  # claims take this lock too; other threads only add or pop
            for upload_id in list(self._writers):
                if upload_id not in live and upload_id not in self._busy:
                    writer = self._writers.pop(upload_id, None)
                    if writer is not None:
                        writer.close()

    def upload_status(self, name: str, upload_id: str) -> Upload:
        validate_name(name)
        validate_upload_id(upload_id)
        size = self.store.uploads.size(upload_id, name)
        if size is None:
            raise BlobUploadUnknown(detail={"uuid": upload_id})
        return Upload(upload_id, name, size)

    def claim_writer(self, name: str, upload_id: str, start: int | None) -> HashingWriter:
        """Take the upload's writer for one request; `release_writer` must follow.

        `start` is the first byte offset the client says it sends (Content-Range); a chunk
        that does not begin where the upload ends is refused with 416.
        """
        upload = self.upload_status(name, upload_id)
        if start is not None and start != upload.size:
            raise RangeInvalid(
                f"chunk starts at {start} but the upload has {upload.size} bytes",
                detail={"size": upload.size},
            )
        with self._lock:
            if upload_id in self._busy:
                raise BlobUploadInvalid("another request is writing to this upload")
            self._busy.add(upload_id)
        try:
            return self._writer_at(upload)
        except BaseException:
            self.release_writer(upload_id)
            raise

    def _writer_at(self, upload: Upload) -> HashingWriter:
        writer = self._writers.get(upload.id)
        if writer is not None and writer.offset == upload.size:
            return writer
        # After a restart (or a failed request) the hash state is rebuilt from the file,
        # dropping any bytes past the last acknowledged offset.
        if writer is not None:
            writer.close()
        path = self.files.upload_path(upload.id)
        if not path.is_file():
            raise BlobUploadUnknown("upload data is missing", detail={"uuid": upload.id})
        if path.stat().st_size != upload.size:
            self.files.truncate_upload(upload.id, upload.size)
        writer = HashingWriter.resume(path, upload.size)
        self._writers[upload.id] = writer
        return writer

    def release_writer(self, upload_id: str) -> None:
        with self._lock:
            self._busy.discard(upload_id)

    def save_progress(self, name: str, upload_id: str, writer: HashingWriter) -> Upload:
        """Acknowledge the bytes written so far: fsync, then record the new size.

        The file is closed until the next chunk (the hash state stays in memory), so that an
        upload the client abandons holds no file descriptor."""
        writer.flush(durable=True)
        writer.close()
        try:
            with self.store.exclusive():
                if not self.store.uploads.set_size(upload_id, name, writer.offset):
                    raise BlobUploadUnknown(detail={"uuid": upload_id})
        except StorageFull:
            writer.rewind()  # the chunk is not acknowledged: give its space back
            raise
        return Upload(upload_id, name, writer.offset)

    def finish_upload(
        self, name: str, upload_id: str, writer: HashingWriter, expected: Digest | str
    ) -> BlobInfo:
        """Verify the digest, move the file into the blob store and end the session."""
        expected = _digest(expected)
        writer.flush(durable=True)
        writer.close()
        actual = writer.digest()
        if actual.algorithm != expected.algorithm:
            actual = Digest(
                expected.algorithm, hash_file(writer.path, expected.algorithm).hexdigest()
            )
        if actual != expected:
            self.save_progress(name, upload_id, writer)
            _verify(expected, actual)
        size = writer.offset
        with self.store.exclusive():
            if not self.store.uploads.exists(upload_id):
                raise BlobUploadUnknown(detail={"uuid": upload_id})
            self._commit_blob(name, writer.path, expected, size)
            self.store.uploads.delete(upload_id)
        writer.path.unlink(missing_ok=True)  # still there if the blob already was
        self._writers.pop(upload_id, None)
        return BlobInfo(expected, size, self.files.path(expected))

    def _commit_blob(self, name: str, source: Path, digest: Digest, size: int) -> None:
        # Under the write lock, so that a GC sweep cannot remove the file between our
        # existence check and the row that protects it. A source left over because the
        # blob was already stored is removed by the caller after the commit: unlinking a
        # big file takes long, and the lock holds up every other push meanwhile.
        key = str(digest)
        if not self.store.blobs.exists(key) or not self.files.exists(digest):
            self.files.remove(digest)
            self.files.commit(source, digest)
        self.store.blobs.record(key, size)
        self.store.blobs.link(self.store.catalog.ensure_repository(name), key, touch=False)

    def put_blob(self, name: str, data: bytes, digest: Digest | str | None = None) -> BlobInfo:
        """Store bytes held in memory as a blob in one step (a monolithic upload: no session
        is recorded, since nothing is acknowledged before the blob itself)."""
        validate_name(name)
        expected = _digest(digest) if digest is not None else digest_bytes(data)
        _verify(expected, digest_bytes(data, expected.algorithm))
        self.check_room(len(data))
        tmp = self.files.write_temp(data)
        try:
            with self.store.exclusive():
                self._commit_blob(name, tmp, expected, len(data))
        finally:
            tmp.unlink(missing_ok=True)
        return BlobInfo(expected, len(data), self.files.path(expected))

    def append_chunk(self, name: str, upload_id: str, start: int | None, data: bytes) -> Upload:
        """One PATCH whose body is in memory: check room, write, acknowledge."""
        self.check_room(len(data))
        writer = self.claim_writer(name, upload_id, start)
        try:
            writer.write(data)
            return self.save_progress(name, upload_id, writer)
        finally:
            self.release_writer(upload_id)

    def finish_with_chunk(
        self, name: str, upload_id: str, start: int | None, data: bytes, digest: Digest | str
    ) -> BlobInfo:
        """The closing PUT of an upload, with its last chunk (possibly empty) in memory."""
        if data:
            self.check_room(len(data))
        writer = self.claim_writer(name, upload_id, start)
        try:
            if data:
                writer.write(data)
            return self.finish_upload(name, upload_id, writer, digest)
        finally:
            self.release_writer(upload_id)

    def cancel_upload(self, name: str, upload_id: str) -> None:
        self.upload_status(name, upload_id)
        self.ballast.release_if_low()
        with self.store.exclusive():
            self.store.uploads.delete(upload_id)
        writer = self._writers.pop(upload_id, None)
        if writer is not None:
            writer.close()
        self.files.remove_upload(upload_id)

    # ---- space ---------------------------------------------------------------------------

    def used_bytes(self, max_age: float = USED_BYTES_TTL) -> int:
        """Bytes of stored content plus uploads in progress (cached for max_age seconds)."""
        taken, value = self._used_cache
        if time.monotonic() - taken < max_age:
            return value
        value = self.store.accounting.stored_bytes(with_uploads=True)
        self._used_cache = (time.monotonic(), value)
        return value

    def capacity(self) -> space.Capacity:
        return space.capacity(self.datadir.root, self.config.storage, self.used_bytes())

    def fill_ballast(self) -> bool:
        """Hold back room for deleting on a full volume (space.Ballast), if there is room."""
        return self.ballast.fill(self.capacity().reserve_bytes)

    def check_room(self, incoming_bytes: int) -> None:
        """DENIED when the upload would eat into the low-space reserve."""
        try:
            space.check_room(self.capacity(), incoming_bytes)
        except InsufficientSpace:
            self._count_refusal()
            raise

    def _count_refusal(self) -> None:
        """Count low-space refusals (shown in the usage report); never fails the request."""
        try:
            with self.store.exclusive():
                self.store.meta.count_low_space_refusal()
        except (StoreError, StoreBusy, InsufficientSpace):  # StorageFull: the volume is full
            pass

    def _changed(self, reason: str) -> None:
        hook = self.on_change
        if hook is not None:
            try:
                hook(reason)
            except Exception:  # a usage sample must never fail a push or a delete
                return

    # ---- manifests -----------------------------------------------------------------------

    def get_manifest(self, name: str, reference: str) -> StoredManifest:
        """The manifest a tag or digest names; a tag that cannot exist is simply unknown
        (404, as the distribution-spec conformance suite expects), a malformed digest not."""
        validate_name(name)
        try:
            ref = parse_reference(reference)
        except NameInvalid:
            raise ManifestUnknown(detail={"name": name, "reference": reference[:200]}) from None
        repo_id = self._repo_id(name, missing=ManifestUnknown)
        if isinstance(ref, Digest):
            head = self.store.manifests.head(repo_id, str(ref))
        else:
            head = self.store.manifests.head_by_tag(repo_id, ref)
        if head is None:
            raise ManifestUnknown(detail={"name": name, "reference": reference})
        digest = parse_digest(head.digest)
        return StoredManifest(digest, head.media_type, head.size, self.files.path(digest))

    def put_manifest(
        self, name: str, reference: str, body: bytes, content_type: str | None
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
        image_created = self._image_created(manifest)
        store = self.store
        with store.exclusive():
            repo_id = store.catalog.ensure_repository(name)
            self._check_references(repo_id, manifest)
            self._store_body(body, digest)
            store.blobs.link(repo_id, str(digest), touch=False)
            manifest_id, created = self._insert_manifest(
                repo_id, digest, len(body), manifest, image_created
            )
            if not isinstance(ref, Digest):
                store.catalog.set_tag(repo_id, ref, manifest_id)
        subject = manifest.subject.digest if manifest.subject else None
        self._changed("push")
        return PutManifestResult(digest, created, subject)

    def _check_references(self, repo_id: int, manifest: Manifest) -> None:
        for desc in manifest.blob_descriptors():
            # In this repository: a blob of another one is reached by a mount, never by
            # naming it (the repository's access would otherwise extend to any blob).
            size = self.store.blobs.size_linked(repo_id, str(desc.digest))
            if size is None or not self.files.exists(desc.digest):
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

    def _store_body(self, body: bytes, digest: Digest) -> None:
        key = str(digest)
        if not self.store.blobs.exists(key) or not self.files.exists(digest):
            self.files.remove(digest)
            self.files.write_bytes(body, digest)
        self.store.blobs.record(key, len(body))

    def _insert_manifest(
        self,
        repo_id: int,
        digest: Digest,
        size: int,
        manifest: Manifest,
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

    def _image_created(self, manifest: Manifest) -> str | None:
        """The `created` time of an image's config, for the console's tag list."""
        config = manifest.config
        if config is None or config.size > 1 << 20 or not self.files.exists(config.digest):
            return None
        try:
            data = json.loads(self.files.read_bytes(config.digest))
        except (OSError, ValueError):
            return None
        created = data.get("created") if isinstance(data, dict) else None
        return created if isinstance(created, str) else None

    def delete_manifest(self, name: str, reference: str) -> DeletedManifest:
        """By digest: the manifest and every tag on it go. By tag: only that tag goes."""
        validate_name(name)
        ref = parse_reference(reference)
        repo_id = self._repo_id(name, missing=ManifestUnknown)
        self.ballast.release_if_low()
        with self.store.exclusive():
            if not isinstance(ref, Digest):
                untagged = self.store.catalog.delete_tag(repo_id, validate_tag(ref))
                if untagged is None:
                    raise ManifestUnknown(detail={"name": name, "reference": reference})
                deleted = DeletedManifest(name, parse_digest(untagged), (ref,))
            else:
                deleted = self._delete_by_digest(repo_id, name, ref)
        self._changed("delete")
        return deleted

    def _delete_by_digest(self, repo_id: int, name: str, digest: Digest) -> DeletedManifest:
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
        tags = store.catalog.delete_tags_of(manifest_id)
        store.manifests.delete(manifest_id)
        return DeletedManifest(name, digest, tuple(tags))

    def untag(self, name: str, tag: str) -> DeletedManifest:
        return self.delete_manifest(name, validate_tag(tag))

    def referrers(
        self, name: str, digest: Digest | str, artifact_type: str | None = None
    ) -> list[Referrer]:
        """OCI 1.1 referrers of `digest` in the repository (the subject need not exist)."""
        validate_name(name)
        digest = _digest(digest)
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
        return None if child is None else self.get_manifest(name, child)

    # ---- helpers -------------------------------------------------------------------------

    def _repo_id(self, name: str, missing: type[RegistryError] = NameUnknown) -> int:
        validate_name(name)
        repo_id = self.store.catalog.repository_id(name)
        if repo_id is None:
            raise missing(detail={"name": name})
        return repo_id


def _verify(expected: Digest, actual: Digest) -> None:
    if actual != expected:
        raise DigestInvalid(
            f"digest {expected} does not match the uploaded content ({actual})",
            detail={"expected": str(expected), "actual": str(actual)},
        )


def _digest(value: Digest | str) -> Digest:
    return value if isinstance(value, Digest) else parse_digest(value)


def _limit(n: int | None) -> int:
    # One extra row tells whether another page follows. Capped to fit SQLite's INTEGER.
    return -1 if n is None else min(n, 1 << 62) + 1


def _page(items: list[str], n: int | None) -> Page:
    if n is not None and len(items) > n:
        return Page(items[:n], True)
    return Page(items, False)
