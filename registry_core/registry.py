"""The registry's domain operations, used by every face (HTTP API, CLI, console).

`Registry` composes the parts (blobs.py, uploads.py, manifest_ops.py over the store) and
keeps the space accounting. Every operation that changes content is told who asks
(`who`, an Identity: the events and, later, the audit log name it). Methods are synchronous
and may block on disk and on the database's write lock: the HTTP face calls the slow ones
from worker threads, the console from Textual workers.
"""

from __future__ import annotations

import time

from registry_core import pins, space
from registry_core.access.audit import AuditLog
from registry_core.blobs import Blobs
from registry_core.config import Config, load_config
from registry_core.datadir import DataDir
from registry_core.errors import InsufficientSpace, StoreBusy, StoreError
from registry_core.events import EventBus
from registry_core.identity import Identity
from registry_core.ingest import Ingest
from registry_core.manifest_ops import ManifestOps, repository_id
from registry_core.reference import (
    Digest,
    as_digest,
    digest_bytes,
    parse_reference,
    validate_name,
    validate_tag,
    verify_digest,
)
from registry_core.results import (
    BlobInfo,
    DeletedManifest,
    Page,
    PutManifestResult,
    Referrer,
    StoredManifest,
    Upload,
)
from registry_core.store import Store
from registry_core.store.blobs import BlobFiles, BlobStore, HashingWriter
from registry_core.store.metadata import Metadata
from registry_core.uploads import UploadSessions

__all__ = [
    "BlobInfo",
    "DeletedManifest",
    "Page",
    "PutManifestResult",
    "Referrer",
    "Registry",
    "StoredManifest",
    "Upload",
]

USED_BYTES_TTL = 1.0


class Registry:
    """One data directory's registry: blobs on disk, metadata in SQLite."""

    def __init__(self, datadir: DataDir, config: Config | None = None) -> None:
        datadir.ensure()
        self.datadir = datadir
        self.config = config or load_config(datadir.config)
        self.store = Store(datadir.database)
        self.files = BlobFiles(datadir.blobs, datadir.uploads)
        self.ballast = space.Ballast(datadir.root / space.BALLAST_NAME)
        self.events = EventBus()
        """What happens to this registry, in this process (events.py)."""
        self.audit = AuditLog(self.store, self.events, self.config.audit,
                              admin_name=self.config.username)
        """Who changed what (access/audit.py)."""
        self.blobs = Blobs(self.store, self.files, self.ballast, self.events, self.audit)
        self.uploads = UploadSessions(self.store, self.blobs, self.ballast, self.check_room)
        self.manifests = ManifestOps(self.store, self.blobs, self.events, self.audit)
        self.ingest = Ingest(self.store, self.blobs, self.manifests)
        """Whole images from elsewhere (sync, offline import) in one transaction."""
        self.blobs.finish_pending_on_open()
        self._used_cache: tuple[float, int] = (0.0, 0)

    @property
    def blob_store(self) -> BlobStore:
        """Where content lives: the faces read blobs through it (a local path, when it has
        one, lets the HTTP server send the file itself)."""
        return self.blobs.content

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
        self.audit.close()
        self.store.close()

    # ---- catalog -------------------------------------------------------------------------

    def catalog(self, n: int | None = None, last: str | None = None) -> Page:
        """Repositories that hold at least one manifest, sorted."""
        return _page(self.store.catalog.repositories_page(last or "", _limit(n)), n)

    def tags(self, name: str, n: int | None = None, last: str | None = None) -> Page:
        repo_id = repository_id(self.store, name)
        return _page(self.store.catalog.tag_names(repo_id, last or "", _limit(n)), n)

    # ---- blobs ---------------------------------------------------------------------------

    def stat_blob(self, name: str, digest: Digest | str) -> BlobInfo:
        """A blob visible in the repository, or BlobUnknown."""
        return self.blobs.stat(name, digest)

    def has_blob(self, digest: Digest | str) -> bool:
        """Whether the registry stores the blob at all (in any repository)."""
        digest = as_digest(digest)
        return self.store.blobs.exists(str(digest)) and self.blob_store.exists(digest)

    def delete_blob(self, name: str, digest: Digest | str, *, who: Identity) -> None:
        """Unlink a blob from a repository; the GC reclaims it once nothing references it."""
        self.blobs.delete(name, digest, who=who)

    def mount_blob(
        self, name: str, digest: Digest | str, source: str, *, who: Identity
    ) -> BlobInfo | None:
        """Link a blob from another repository; None if the source does not have it or `who`
        may not read the source (the client then uploads it)."""
        return self.blobs.mount(name, digest, source, who=who)

    def put_blob(
        self, name: str, data: bytes, digest: Digest | str | None = None, *, who: Identity
    ) -> BlobInfo:
        """Store bytes held in memory as a blob in one step (a monolithic upload: no session
        is recorded, since nothing is acknowledged before the blob itself)."""
        validate_name(name)
        expected = as_digest(digest) if digest is not None else digest_bytes(data)
        verify_digest(expected, digest_bytes(data, expected.algorithm))
        self.check_room(len(data))
        return self.blobs.put(name, data, expected, who=who)

    # ---- uploads (uploads.py) --------------------------------------------------------------

    def start_upload(self, name: str, expected_size: int = 0) -> Upload:
        return self.uploads.start(name, expected_size)

    def upload_status(self, name: str, upload_id: str) -> Upload:
        return self.uploads.status(name, upload_id)

    def claim_writer(self, name: str, upload_id: str, start: int | None) -> HashingWriter:
        """Take the upload's writer for one request; `release_writer` must follow."""
        return self.uploads.claim_writer(name, upload_id, start)

    def release_writer(self, upload_id: str) -> None:
        self.uploads.release_writer(upload_id)

    def save_progress(self, name: str, upload_id: str, writer: HashingWriter) -> Upload:
        """Acknowledge the bytes written so far: fsync, then record the new size."""
        return self.uploads.save_progress(name, upload_id, writer)

    def finish_upload(
        self, name: str, upload_id: str, writer: HashingWriter, expected: Digest | str, *,
        who: Identity,
    ) -> BlobInfo:
        """Verify the digest, move the file into the blob store and end the session."""
        return self.uploads.finish(name, upload_id, writer, expected, who=who)

    def append_chunk(self, name: str, upload_id: str, start: int | None, data: bytes) -> Upload:
        """One PATCH whose body is in memory: check room, write, acknowledge."""
        return self.uploads.append_chunk(name, upload_id, start, data)

    def finish_with_chunk(
        self, name: str, upload_id: str, start: int | None, data: bytes, digest: Digest | str,
        *, who: Identity,
    ) -> BlobInfo:
        """The closing PUT of an upload, with its last chunk (possibly empty) in memory."""
        return self.uploads.finish_with_chunk(name, upload_id, start, data, digest, who=who)

    def cancel_upload(self, name: str, upload_id: str) -> None:
        self.uploads.cancel(name, upload_id)

    # ---- manifests (manifest_ops.py) -------------------------------------------------------

    def get_manifest(self, name: str, reference: str) -> StoredManifest:
        return self.manifests.get(name, reference)

    def put_manifest(
        self, name: str, reference: str, body: bytes, content_type: str | None, *,
        who: Identity,
    ) -> PutManifestResult:
        return self.manifests.put(name, reference, body, content_type, who=who)

    def delete_manifest(self, name: str, reference: str, *, who: Identity,
                        override_pins: bool = False) -> DeletedManifest:
        """By digest: the manifest and every tag on it go. By tag: only that tag goes."""
        return self.manifests.delete(name, reference, who=who, override_pins=override_pins)

    def untag(self, name: str, tag: str, *, who: Identity,
              override_pins: bool = False) -> DeletedManifest:
        return self.manifests.delete(name, validate_tag(tag), who=who,
                                     override_pins=override_pins)

    def refuse_if_pinned(self, name: str, reference: str) -> None:
        """Raise Pinned when `delete_manifest` (a digest) or `untag` (a tag) would refuse
        `reference` for a stage's pin: for a face that asks before it shows a preview."""
        pins.check(self.store, validate_name(name), parse_reference(reference))

    def referrers(
        self, name: str, digest: Digest | str, artifact_type: str | None = None
    ) -> list[Referrer]:
        return self.manifests.referrers(name, digest, artifact_type)

    def index_child_for(self, name: str, index: Digest, platform: str) -> StoredManifest | None:
        return self.manifests.index_child_for(name, index, platform)

    # ---- space ---------------------------------------------------------------------------

    def used_bytes(self, max_age: float = USED_BYTES_TTL) -> int:
        """Bytes of stored content plus uploads in progress (cached for max_age seconds)."""
        taken, value = self._used_cache
        if time.monotonic() - taken < max_age:
            return value
        value = self.store.accounting.stored_bytes(with_uploads=True)
        self._used_cache = (time.monotonic(), value)
        return value

    def forget_used_bytes(self) -> None:
        """Drop the cached `used_bytes` (after a GC freed space)."""
        self._used_cache = (0.0, 0)

    def capacity(self) -> space.Capacity:
        return space.capacity(self.blob_store.volume(), self.config.storage, self.used_bytes())

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


def _limit(n: int | None) -> int:
    # One extra row tells whether another page follows. Capped to fit SQLite's INTEGER.
    return -1 if n is None else min(n, 1 << 62) + 1


def _page(items: list[str], n: int | None) -> Page:
    if n is not None and len(items) > n:
        return Page(items[:n], True)
    return Page(items, False)
