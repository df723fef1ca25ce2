"""Upload sessions: the state machine of a chunked upload (start, append, finish, cancel).

A session's acknowledged size is in the store and its bytes in an upload file; the hash
state of each session is kept in memory between requests and rebuilt from the file when
missing (after a restart, or when another process wrote last) or out of step. One request at
a time writes to a session: a second one, in this process or another, is refused while the
first holds the claim (an flock on the upload file).

The session id is the capability, as in the distribution spec: the HTTP face authorizes
`content/write` on the repository for every upload request, and the identity reaches the
core where a change becomes visible (`finish`, with its BlobCommitted event).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable

from registry_core.blobs import Blobs
from registry_core.errors import BlobUploadInvalid, BlobUploadUnknown, RangeInvalid, StorageFull
from registry_core.identity import Identity
from registry_core.reference import (
    Digest,
    as_digest,
    validate_name,
    validate_upload_id,
    verify_digest,
)
from registry_core.results import BlobInfo, Upload
from registry_core.space import Ballast
from registry_core.store import Store
from registry_core.store.blobs import BlobFiles, HashingWriter, hash_file

STALE_WRITERS_KEEP = 256
"""Past this many in-memory hash states, those of sessions ended elsewhere are dropped."""


class UploadSessions:
    """Every upload session of one registry, and the in-memory writers of this process."""

    def __init__(
        self,
        store: Store,
        blobs: Blobs,
        ballast: Ballast,
        check_room: Callable[[int], None],
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.files: BlobFiles = blobs.files
        self.ballast = ballast
        self.check_room = check_room
        self._writers: dict[str, HashingWriter] = {}
        self._claims: dict[str, int] = {}
        """Upload id -> the descriptor holding its flock, while a request writes."""
        self._lock = threading.Lock()

    def start(self, name: str, expected_size: int = 0) -> Upload:
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

    def _forget_stale_writers(self, keep: int = STALE_WRITERS_KEEP) -> None:
        """Drop the hash states of uploads that ended elsewhere (purged by a GC, say)."""
        if len(self._writers) < keep:
            return
        live = self.store.uploads.ids()
        with self._lock:  # claims take this lock too; other threads only add or pop
            for upload_id in list(self._writers):
                if upload_id not in live and upload_id not in self._claims:
                    writer = self._writers.pop(upload_id, None)
                    if writer is not None:
                        writer.close()

    def status(self, name: str, upload_id: str) -> Upload:
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
        _check_start(start, self.status(name, upload_id))  # 404 or 416 before the claim
        self._claim(upload_id)
        try:
            upload = self.status(name, upload_id)  # what the last writer acknowledged
            _check_start(start, upload)
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

    def _claim(self, upload_id: str) -> None:
        with self._lock:
            if upload_id in self._claims:
                raise BlobUploadInvalid("another request is writing to this upload")
            try:
                fd = self.files.lock_upload(upload_id)
            except FileNotFoundError:
                raise BlobUploadUnknown(
                    "upload data is missing", detail={"uuid": upload_id}
                ) from None
            if fd is None:
                raise BlobUploadInvalid("another process is writing to this upload")
            self._claims[upload_id] = fd

    def release_writer(self, upload_id: str) -> None:
        with self._lock:
            fd = self._claims.pop(upload_id, None)
        if fd is not None:
            self.files.unlock_upload(fd)

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

    def finish(
        self, name: str, upload_id: str, writer: HashingWriter, expected: Digest | str, *,
        who: Identity,
    ) -> BlobInfo:
        """Verify the digest, move the file into the blob store and end the session."""
        expected = as_digest(expected)
        writer.flush(durable=True)
        writer.close()
        actual = writer.digest()
        if actual.algorithm != expected.algorithm:
            actual = Digest(
                expected.algorithm, hash_file(writer.path, expected.algorithm).hexdigest()
            )
        if actual != expected:
            self.save_progress(name, upload_id, writer)
            verify_digest(expected, actual)
        size = writer.offset
        with self.store.exclusive():
            if not self.store.uploads.exists(upload_id):
                raise BlobUploadUnknown(detail={"uuid": upload_id})
            self.blobs.commit_file(name, writer.path, expected, size)
            self.store.uploads.delete(upload_id)
        writer.path.unlink(missing_ok=True)  # still there if the blob already was
        self._writers.pop(upload_id, None)
        info = BlobInfo(expected, size)
        self.blobs.committed(name, info, who)
        return info

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
        self, name: str, upload_id: str, start: int | None, data: bytes, digest: Digest | str,
        *, who: Identity,
    ) -> BlobInfo:
        """The closing PUT of an upload, with its last chunk (possibly empty) in memory."""
        if data:
            self.check_room(len(data))
        writer = self.claim_writer(name, upload_id, start)
        try:
            if data:
                writer.write(data)
            return self.finish(name, upload_id, writer, digest, who=who)
        finally:
            self.release_writer(upload_id)

    def cancel(self, name: str, upload_id: str) -> None:
        self.status(name, upload_id)
        self.ballast.release_if_low()
        with self.store.exclusive():
            self.store.uploads.delete(upload_id)
        writer = self._writers.pop(upload_id, None)
        if writer is not None:
            writer.close()
        self.files.remove_upload(upload_id)


def _check_start(start: int | None, upload: Upload) -> None:
    if start is not None and start != upload.size:
        raise RangeInvalid(
            f"chunk starts at {start} but the upload has {upload.size} bytes",
            detail={"size": upload.size},
        )
