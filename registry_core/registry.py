"""The registry's domain operations, used by every face (HTTP API, CLI, console).

Methods are synchronous and may block on disk and on the database's write lock: the HTTP
face calls the slow ones from worker threads, the console from Textual workers.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
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
from registry_core.store.blobs import BlobFiles, HashingWriter, hash_file
from registry_core.store.metadata import Metadata, now

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
        self.db = Metadata(datadir.database)
        self.files = BlobFiles(datadir.blobs, datadir.uploads)
        self.ballast = space.Ballast(datadir.root / space.BALLAST_NAME)
        self._writers: dict[str, HashingWriter] = {}
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._used_cache: tuple[float, int] = (0.0, 0)
        self.on_change: Callable[[str], None] | None = None
        """Called with 'push' or 'delete' after a manifest commit (the service debounces it
        into usage samples); must be cheap and must not raise."""

    def close(self) -> None:
        self.db.close()

    # ---- catalog -------------------------------------------------------------------------

    def catalog(self, n: int | None = None, last: str | None = None) -> Page:
        """Repositories that hold at least one manifest, sorted."""
        rows = self.db.conn.execute(
            "SELECT name FROM repositories r WHERE name > ? AND EXISTS "
            "(SELECT 1 FROM manifests m WHERE m.repository_id = r.id) ORDER BY name LIMIT ?",
            (last or "", _limit(n)),
        ).fetchall()
        return _page([r[0] for r in rows], n)

    def tags(self, name: str, n: int | None = None, last: str | None = None) -> Page:
        repo_id = self._repo_id(name)
        rows = self.db.conn.execute(
            "SELECT name FROM tags WHERE repository_id = ? AND name > ? ORDER BY name LIMIT ?",
            (repo_id, last or "", _limit(n)),
        ).fetchall()
        return _page([r[0] for r in rows], n)

    # ---- blobs ---------------------------------------------------------------------------

    def stat_blob(self, name: str, digest: Digest | str) -> BlobInfo:
        """A blob visible in the repository, or BlobUnknown."""
        validate_name(name)
        digest = _digest(digest)
        row = self.db.conn.execute(
            "SELECT b.size FROM blobs b JOIN repository_blobs rb ON rb.digest = b.digest "
            "JOIN repositories r ON r.id = rb.repository_id WHERE r.name = ? AND b.digest = ?",
            (name, str(digest)),
        ).fetchone()
        path = self.files.path(digest)
        if row is None or not path.is_file():
            raise BlobUnknown(detail={"digest": str(digest)})
        return BlobInfo(digest, int(row[0]), path)

    def delete_blob(self, name: str, digest: Digest | str) -> None:
        """Unlink a blob from a repository; the GC reclaims it once nothing references it."""
        info = self.stat_blob(name, digest)
        self.ballast.release_if_low()
        with self.db.write() as conn:
            conn.execute(
                "DELETE FROM repository_blobs WHERE digest = ? AND repository_id = "
                "(SELECT id FROM repositories WHERE name = ?)",
                (str(info.digest), name),
            )

    def mount_blob(self, name: str, digest: Digest | str, source: str) -> BlobInfo | None:
        """Link a blob from another repository; None if the source does not have it."""
        validate_name(name)
        try:
            info = self.stat_blob(source, digest)
        except (BlobUnknown, NameInvalid):  # the client then uploads it (spec fallback)
            return None
        with self.db.write() as conn:
            repo_id = _ensure_repo(conn, name)
            _link(conn, repo_id, str(info.digest), touch=True)
        return info

    # ---- uploads -------------------------------------------------------------------------

    def start_upload(self, name: str, expected_size: int = 0) -> Upload:
        validate_name(name)
        self.check_room(expected_size)
        upload_id = str(uuid.uuid4())
        self.files.create_upload(upload_id)
        t = now()
        try:
            with self.db.write() as conn:
                conn.execute(
                    "INSERT INTO uploads(id, repository, size, created_at, updated_at) "
                    "VALUES (?, ?, 0, ?, ?)",
                    (upload_id, name, t, t),
                )
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
        live = {r[0] for r in self.db.conn.execute("SELECT id FROM uploads")}
        with self._lock:  # claims take this lock too; other threads only add or pop
            for upload_id in list(self._writers):
                if upload_id not in live and upload_id not in self._busy:
                    writer = self._writers.pop(upload_id, None)
                    if writer is not None:
                        writer.close()

    def upload_status(self, name: str, upload_id: str) -> Upload:
        validate_name(name)
        validate_upload_id(upload_id)
        row = self.db.conn.execute(
            "SELECT size FROM uploads WHERE id = ? AND repository = ?", (upload_id, name)
        ).fetchone()
        if row is None:
            raise BlobUploadUnknown(detail={"uuid": upload_id})
        return Upload(upload_id, name, int(row[0]))

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
            with self.db.write() as conn:
                cur = conn.execute(
                    "UPDATE uploads SET size = ?, updated_at = ? WHERE id = ? AND repository = ?",
                    (writer.offset, now(), upload_id, name),
                )
                if cur.rowcount == 0:
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
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM uploads WHERE id = ?", (upload_id,)).fetchone() is None:
                raise BlobUploadUnknown(detail={"uuid": upload_id})
            self._commit_blob(conn, name, writer.path, expected, size)
            conn.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))
        writer.path.unlink(missing_ok=True)  # still there if the blob already was
        self._writers.pop(upload_id, None)
        return BlobInfo(expected, size, self.files.path(expected))

    def _commit_blob(
        self, conn: sqlite3.Connection, name: str, source: Path, digest: Digest, size: int
    ) -> None:
        # Under the write lock, so that a GC sweep cannot remove the file between our
        # existence check and the row that protects it. A source left over because the
        # blob was already stored is removed by the caller after the commit: unlinking a
        # big file takes long, and the lock holds up every other push meanwhile.
        key = str(digest)
        row = conn.execute("SELECT size FROM blobs WHERE digest = ?", (key,)).fetchone()
        if row is None or not self.files.exists(digest):
            self.files.remove(digest)
            self.files.commit(source, digest)
        t = now()
        conn.execute(
            "INSERT INTO blobs(digest, size, created_at, touched_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(digest) DO UPDATE SET touched_at = excluded.touched_at",
            (key, size, t, t),
        )
        _link(conn, _ensure_repo(conn, name), key, touch=False)

    def put_blob(self, name: str, data: bytes, digest: Digest | str | None = None) -> BlobInfo:
        """Store bytes held in memory as a blob in one step (a monolithic upload: no session
        is recorded, since nothing is acknowledged before the blob itself)."""
        validate_name(name)
        expected = _digest(digest) if digest is not None else digest_bytes(data)
        _verify(expected, digest_bytes(data, expected.algorithm))
        self.check_room(len(data))
        tmp = self.files.write_temp(data)
        try:
            with self.db.write() as conn:
                self._commit_blob(conn, name, tmp, expected, len(data))
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
        with self.db.write() as conn:
            conn.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))
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
        row = self.db.conn.execute(
            "SELECT (SELECT COALESCE(SUM(size), 0) FROM blobs) + "
            "(SELECT COALESCE(SUM(size), 0) FROM uploads)"
        ).fetchone()
        value = int(row[0])
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
            with self.db.write() as conn:
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('low_space_refusals', '1') "
                    "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
                )
                conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('low_space_last_refusal', ?)",
                    (repr(now()),),
                )
        except (sqlite3.Error, InsufficientSpace):  # StorageFull: the volume is full
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
            row = self.db.conn.execute(
                "SELECT digest, media_type, size FROM manifests "
                "WHERE repository_id = ? AND digest = ?",
                (repo_id, str(ref)),
            ).fetchone()
        else:
            row = self.db.conn.execute(
                "SELECT m.digest, m.media_type, m.size FROM tags t "
                "JOIN manifests m ON m.id = t.manifest_id "
                "WHERE t.repository_id = ? AND t.name = ?",
                (repo_id, ref),
            ).fetchone()
        if row is None:
            raise ManifestUnknown(detail={"name": name, "reference": reference})
        digest = parse_digest(row[0])
        return StoredManifest(digest, row[1], int(row[2]), self.files.path(digest))

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
        with self.db.write() as conn:
            repo_id = _ensure_repo(conn, name)
            self._check_references(conn, repo_id, manifest)
            self._store_body(conn, body, digest)
            _link(conn, repo_id, str(digest), touch=False)
            manifest_id, created = self._insert_manifest(
                conn, repo_id, digest, len(body), manifest, image_created
            )
            if not isinstance(ref, Digest):
                conn.execute(
                    "INSERT INTO tags(repository_id, name, manifest_id, updated_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT(repository_id, name) DO UPDATE SET "
                    "manifest_id = excluded.manifest_id, updated_at = excluded.updated_at",
                    (repo_id, ref, manifest_id, now()),
                )
        subject = manifest.subject.digest if manifest.subject else None
        self._changed("push")
        return PutManifestResult(digest, created, subject)

    def _check_references(self, conn: sqlite3.Connection, repo_id: int, manifest: Manifest) -> None:
        for desc in manifest.blob_descriptors():
            # In this repository: a blob of another one is reached by a mount, never by
            # naming it (the repository's access would otherwise extend to any blob).
            row = conn.execute(
                "SELECT b.size FROM blobs b JOIN repository_blobs rb ON rb.digest = b.digest "
                "WHERE b.digest = ? AND rb.repository_id = ?",
                (str(desc.digest), repo_id),
            ).fetchone()
            if row is None or not self.files.exists(desc.digest):
                raise ManifestBlobUnknown(
                    f"blob {desc.digest} is not in this repository (upload or mount it first)",
                    detail={"digest": str(desc.digest)},
                )
            if int(row[0]) != desc.size:
                raise ManifestInvalid(
                    f"descriptor size {desc.size} of {desc.digest} does not match "
                    f"the stored blob ({row[0]} bytes)",
                    detail={"digest": str(desc.digest)},
                )
        for desc in manifest.child_descriptors():
            row = conn.execute(
                "SELECT size FROM manifests WHERE repository_id = ? AND digest = ?",
                (repo_id, str(desc.digest)),
            ).fetchone()
            if row is None:
                raise ManifestUnknown(
                    f"index child {desc.digest} is not in this repository",
                    detail={"digest": str(desc.digest)},
                )

    def _store_body(self, conn: sqlite3.Connection, body: bytes, digest: Digest) -> None:
        key = str(digest)
        exists = conn.execute("SELECT 1 FROM blobs WHERE digest = ?", (key,)).fetchone()
        if exists is None or not self.files.exists(digest):
            self.files.remove(digest)
            self.files.write_bytes(body, digest)
        t = now()
        conn.execute(
            "INSERT INTO blobs(digest, size, created_at, touched_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(digest) DO UPDATE SET touched_at = excluded.touched_at",
            (key, len(body), t, t),
        )

    def _insert_manifest(
        self,
        conn: sqlite3.Connection,
        repo_id: int,
        digest: Digest,
        size: int,
        manifest: Manifest,
        image_created: str | None,
    ) -> tuple[int, bool]:
        row = conn.execute(
            "SELECT id FROM manifests WHERE repository_id = ? AND digest = ?",
            (repo_id, str(digest)),
        ).fetchone()
        if row is not None:
            return int(row[0]), False
        blobs = manifest.blob_descriptors()
        annotations = dict(manifest.annotations) if manifest.annotations else None
        platforms = ", ".join(str(p) for p in manifest.platforms()) or None
        cur = conn.execute(
            "INSERT INTO manifests(repository_id, digest, media_type, artifact_type, size, "
            "content_size, subject, annotations, platforms, image_created, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                repo_id,
                str(digest),
                manifest.media_type,
                manifest.effective_artifact_type(),
                size,
                sum(d.size for d in blobs),
                str(manifest.subject.digest) if manifest.subject else None,
                json.dumps(annotations) if annotations else None,
                platforms,
                image_created,
                now(),
            ),
        )
        manifest_id = int(cur.lastrowid or 0)
        conn.executemany(
            "INSERT INTO manifest_blobs(manifest_id, digest, kind, size, position) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                (
                    manifest_id,
                    str(d.digest),
                    "config" if d is manifest.config else "layer",
                    d.size,
                    i,
                )
                for i, d in enumerate(blobs)
            ],
        )
        conn.executemany(
            "INSERT INTO manifest_children(parent_id, child_digest, platform, position) "
            "VALUES (?, ?, ?, ?)",
            [
                (manifest_id, str(d.digest), str(d.platform) if d.platform else None, i)
                for i, d in enumerate(manifest.child_descriptors())
            ],
        )
        for d in blobs:
            _link(conn, repo_id, str(d.digest), touch=True)
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
        with self.db.write() as conn:
            if not isinstance(ref, Digest):
                cur = conn.execute(
                    "DELETE FROM tags WHERE repository_id = ? AND name = ? "
                    "RETURNING (SELECT digest FROM manifests WHERE id = manifest_id)",
                    (repo_id, validate_tag(ref)),
                )
                row = cur.fetchone()
                if row is None:
                    raise ManifestUnknown(detail={"name": name, "reference": reference})
                deleted = DeletedManifest(name, parse_digest(row[0]), (ref,))
            else:
                deleted = self._delete_by_digest(conn, repo_id, name, ref)
        self._changed("delete")
        return deleted

    def _delete_by_digest(
        self, conn: sqlite3.Connection, repo_id: int, name: str, digest: Digest
    ) -> DeletedManifest:
        row = conn.execute(
            "SELECT id FROM manifests WHERE repository_id = ? AND digest = ?",
            (repo_id, str(digest)),
        ).fetchone()
        if row is None:
            raise ManifestUnknown(detail={"name": name, "digest": str(digest)})
        manifest_id = int(row[0])
        parent = conn.execute(
            "SELECT p.digest FROM manifest_children c JOIN manifests p ON p.id = c.parent_id "
            "WHERE p.repository_id = ? AND c.child_digest = ? LIMIT 1",
            (repo_id, str(digest)),
        ).fetchone()
        if parent is not None:
            raise Denied(
                f"{digest} is part of the index {parent[0]}; delete the index instead",
                detail={"index": parent[0]},
            )
        tags = tuple(
            r[0]
            for r in conn.execute(
                "DELETE FROM tags WHERE manifest_id = ? RETURNING name", (manifest_id,)
            ).fetchall()
        )
        conn.execute("DELETE FROM manifests WHERE id = ?", (manifest_id,))
        return DeletedManifest(name, digest, tuple(sorted(tags)))

    def untag(self, name: str, tag: str) -> DeletedManifest:
        return self.delete_manifest(name, validate_tag(tag))

    def referrers(
        self, name: str, digest: Digest | str, artifact_type: str | None = None
    ) -> list[Referrer]:
        """OCI 1.1 referrers of `digest` in the repository (the subject need not exist)."""
        validate_name(name)
        digest = _digest(digest)
        sql = (
            "SELECT m.media_type, m.digest, m.size, m.artifact_type, m.annotations "
            "FROM manifests m JOIN repositories r ON r.id = m.repository_id "
            "WHERE r.name = ? AND m.subject = ?"
        )
        params: list[str] = [name, str(digest)]
        if artifact_type:
            sql += " AND m.artifact_type = ?"
            params.append(artifact_type)
        rows = self.db.conn.execute(sql + " ORDER BY m.digest", params).fetchall()
        return [
            Referrer(r[0], r[1], int(r[2]), r[3], json.loads(r[4]) if r[4] else None) for r in rows
        ]

    def index_child_for(self, name: str, index: Digest, platform: str) -> StoredManifest | None:
        """The child of an index for a platform such as 'linux/amd64' (Accept fallback)."""
        row = self.db.conn.execute(
            "SELECT c.child_digest FROM manifest_children c JOIN manifests m ON m.id = c.parent_id "
            "JOIN repositories r ON r.id = m.repository_id "
            "WHERE r.name = ? AND m.digest = ? AND c.platform = ? ORDER BY c.position LIMIT 1",
            (name, str(index), platform),
        ).fetchone()
        return None if row is None else self.get_manifest(name, row[0])

    # ---- helpers -------------------------------------------------------------------------

    def _repo_id(self, name: str, missing: type[RegistryError] = NameUnknown) -> int:
        validate_name(name)
        row = self.db.conn.execute("SELECT id FROM repositories WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise missing(detail={"name": name})
        return int(row[0])


def _ensure_repo(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM repositories WHERE name = ?", (name,)).fetchone()
    if row is not None:
        return int(row[0])
    cur = conn.execute("INSERT INTO repositories(name, created_at) VALUES (?, ?)", (name, now()))
    return int(cur.lastrowid or 0)


def _link(conn: sqlite3.Connection, repo_id: int, digest: str, touch: bool) -> None:
    t = now()
    conn.execute(
        "INSERT OR IGNORE INTO repository_blobs(repository_id, digest, linked_at) VALUES (?, ?, ?)",
        (repo_id, digest, t),
    )
    if touch:
        conn.execute("UPDATE blobs SET touched_at = ? WHERE digest = ?", (t, digest))


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
