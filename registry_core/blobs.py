"""Blob operations of a repository: stat, mount, delete, storing verified content, and
finishing the GC's pending deletes."""

from __future__ import annotations

import logging
from pathlib import Path

from registry_core.access.audit import AuditLog
from registry_core.errors import BlobUnknown, NameInvalid, StorageFull, StoreBusy, StoreError
from registry_core.events import BlobCommitted, EventBus
from registry_core.identity import CONTENT_READ, Identity, may
from registry_core.reference import Digest, as_digest, parse_digest, validate_name
from registry_core.results import BlobInfo
from registry_core.space import Ballast
from registry_core.store import Store
from registry_core.store.blobs import BlobFiles, BlobStore

log = logging.getLogger("edge_registry.blobs")

PENDING_BATCH = 256
"""Pending deletes finished per write transaction."""


class Blobs:
    """The blobs of every repository: rows in the store, content in `content`; `files` is
    the local staging area that uploads and in-memory content pass through."""

    def __init__(
        self, store: Store, files: BlobFiles, ballast: Ballast, events: EventBus,
        audit: AuditLog,
    ) -> None:
        self.store = store
        self.events = events
        self.audit = audit
        self.files = files
        self.content: BlobStore = files
        self.ballast = ballast

    def stat(self, name: str, digest: Digest | str) -> BlobInfo:
        """A blob visible in the repository, or BlobUnknown."""
        validate_name(name)
        digest = as_digest(digest)
        size = self.store.blobs.size_in_repository(name, str(digest))
        if size is None or not self.content.exists(digest):
            raise BlobUnknown(detail={"digest": str(digest)})
        return BlobInfo(digest, size)

    def delete(self, name: str, digest: Digest | str, *, who: Identity) -> None:
        """Unlink a blob from a repository; the GC reclaims it once nothing references it."""
        info = self.stat(name, digest)
        self.ballast.release_if_low()
        with self.store.exclusive():
            self.store.blobs.unlink(name, str(info.digest))
            self.audit.record(who, "blob.delete", repository=name, reference=str(info.digest),
                              detail={"size": info.size})

    def mount(
        self, name: str, digest: Digest | str, source: str, *, who: Identity
    ) -> BlobInfo | None:
        """Link a blob from another repository; None if the source does not have it or
        `who` may not read it (the client then uploads the blob: the spec's fallback)."""
        validate_name(name)
        if not may(who, source, CONTENT_READ):
            return None
        try:
            info = self.stat(source, digest)
        except (BlobUnknown, NameInvalid):  # the client then uploads it (spec fallback)
            return None
        with self.store.exclusive():
            repo_id = self.store.catalog.ensure_repository(name)
            self.store.blobs.link(repo_id, str(info.digest), touch=True)
        self.committed(name, info, who, mounted_from=source)
        return info

    def put(self, name: str, data: bytes, expected: Digest, *, who: Identity) -> BlobInfo:
        """Store bytes held in memory as a blob in one step (the caller verified the digest
        and checked room)."""
        tmp = self.files.write_temp(data)
        try:
            with self.store.exclusive():
                self.commit_file(name, tmp, expected, len(data))
        finally:
            tmp.unlink(missing_ok=True)
        info = BlobInfo(expected, len(data))
        self.committed(name, info, who)
        return info

    def committed(
        self, name: str, info: BlobInfo, who: Identity, mounted_from: str | None = None
    ) -> None:
        """Tell the event stream (after the commit)."""
        self.events.emit(BlobCommitted(identity=who.name, repository=name,
                                       digest=str(info.digest), size=info.size,
                                       mounted_from=mounted_from))

    def commit_file(self, name: str, source: Path, digest: Digest, size: int) -> None:
        """Record a verified file as the blob `digest` of the repository; inside exclusive().

        Under the write lock, so that a GC sweep cannot remove the file between our
        existence check and the row that protects it. A source left over because the
        blob was already stored is removed by the caller after the commit: unlinking a
        big file takes long, and the lock holds up every other push meanwhile."""
        key = str(digest)
        stored = self.store.blobs.exists(key) and self.content.exists(digest)
        # A source already gone was moved in by an attempt that was rolled back (a batch
        # with a bad image in it): its verified content is there and is kept.
        moved_before = not source.exists() and self.content.stat(digest) == size
        if not stored and not moved_before:
            self.content.delete(digest)
            self.content.put_file(source, digest)
        self.store.blobs.record(key, size)
        self.store.blobs.link(self.store.catalog.ensure_repository(name), key, touch=False)

    def store_small(self, data: bytes, digest: Digest) -> None:
        """Store content held in memory (a manifest body) and its row; inside exclusive()."""
        key = str(digest)
        if not self.store.blobs.exists(key) or not self.content.exists(digest):
            self.content.delete(digest)
            self.content.write_bytes(data, digest)
        self.store.blobs.record(key, len(data))

    def linked_size(self, repo_id: int, digest: Digest) -> int | None:
        """The size of a blob the repository holds, None if it holds none (or it is lost)."""
        size = self.store.blobs.size_linked(repo_id, str(digest))
        return size if size is not None and self.content.exists(digest) else None

    def read_small(self, digest: Digest) -> bytes:
        return self.content.read_bytes(digest)

    def exists(self, digest: Digest) -> bool:
        return self.content.exists(digest)

    def finish_pending_deletes(self, digests: list[str] | None = None) -> list[str]:
        """Remove the content of blobs the GC dropped (all pending ones, or `digests`);
        returns the errors. Under the write lock, re-checked: a blob pushed again since its
        row went has a row again, and its content stays."""
        pending = self.store.pending_deletes.digests() if digests is None else digests
        errors: list[str] = []
        for i in range(0, len(pending), PENDING_BATCH):
            with self.store.exclusive():
                for digest in pending[i : i + PENDING_BATCH]:
                    if not self.store.blobs.exists(digest):
                        try:
                            self.content.delete(parse_digest(digest))
                        except OSError as exc:
                            errors.append(f"could not remove {digest}: {exc}")
                            continue
                    self.store.pending_deletes.remove(digest)
        return errors

    def finish_pending_on_open(self) -> None:
        """What a GC killed between its commit and its deletes left (never fails an open)."""
        try:
            if self.store.pending_deletes.count():
                for error in self.finish_pending_deletes():
                    log.warning("%s", error)
        except (StoreBusy, StoreError, StorageFull):
            log.warning("pending blob deletes left for the next GC", exc_info=True)
