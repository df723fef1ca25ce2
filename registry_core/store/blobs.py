"""Content-addressed blob files and the upload files they are made from.

`BlobStore` is the port the core stores content through (an object store could implement
it); `BlobFiles` is the filesystem implementation, which also keeps the upload files that
sessions stage on local disk.

Layout: `blobs/<algorithm>/<first two hex>/<hex>` for committed content and
`uploads/<id>` for upload sessions in progress. A blob file only ever appears by an atomic
rename of a complete, verified, fsynced file, so a crash leaves no half-written blob
visible; at worst an orphaned upload file that the GC purges. Every directory entry that
must outlive a power cut (a new upload file, a new directory, a rename) is followed by an
fsync of its directory; docs/durability.md tells the order. A full volume raises
StorageFull and leaves no partial file behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import hashlib
import os
import shutil
import uuid
from collections.abc import Container, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from registry_core.atomic_file import fsync_dir
from registry_core.errors import RegistryError
from registry_core.reference import Digest, parse_digest, verify_digest
from registry_core.store.full import refused_when_full

READ_CHUNK = 1 << 20
PARALLEL_HASH_MIN = 256 << 10

# Hashing a batch runs on this pool while the writer thread copies it to the file: both
# release the GIL, so a batch costs max(hash, write) instead of their sum.
_hash_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="blob-hash")
# BlockWriter's writes run here, one behind the thread that receives the blocks.
_write_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="blob-write")


@dataclass(frozen=True)
class Volume:
    """Total and free bytes where a blob store keeps content."""

    total_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class BlobEntry:
    """A stored blob as a listing sees it (for the GC's orphan scan)."""

    digest: Digest
    size: int
    modified_at: float


class BlobStore(Protocol):
    """Where content lives, by digest; no metadata, no locking (the caller holds the DB
    lock where it matters). Content only appears complete and verified."""

    def put_stream(self, chunks: Iterable[bytes], digest: Digest) -> int:
        """Store a stream whose digest must be `digest` (DigestInvalid otherwise, nothing
        stored); returns its size."""
        ...

    def put_file(self, source: Path, digest: Digest) -> bool:
        """Adopt a verified, fsynced local file (an upload); False if already stored."""
        ...

    def write_bytes(self, data: bytes, digest: Digest) -> bool:
        """Store small content held in memory (a manifest body); False if already stored."""
        ...

    def open_range(self, digest: Digest, start: int = 0, length: int | None = None) -> BinaryIO:
        """A reader positioned at `start`; the caller reads at most `length` bytes.
        OSError when the blob is gone."""
        ...

    def read_bytes(self, digest: Digest) -> bytes: ...

    def stat(self, digest: Digest) -> int | None:
        """The stored size, or None when absent."""
        ...

    def exists(self, digest: Digest) -> bool: ...

    def delete(self, digest: Digest) -> None:
        """Remove the content; absent content is not an error."""
        ...

    def list_unknown(self, known: Container[str]) -> Iterator[BlobEntry]:
        """Stored blobs whose digest text is not in `known` (the orphan scan's question:
        nearly every blob is known, so only the others cost a stat); foreign files are
        skipped."""
        ...

    def local_path(self, digest: Digest) -> Path | None:
        """A file the server may send itself (pathsend), or None if the store has none."""
        ...

    def volume(self) -> Volume:
        """Total and free bytes where content lives (the capacity the quota bounds)."""
        ...


class BlobFiles:
    """The filesystem BlobStore, plus the upload files of sessions in progress."""

    def __init__(self, blobs_root: Path, uploads_root: Path) -> None:
        self.blobs_root = blobs_root
        self.uploads_root = uploads_root

    def path(self, digest: Digest) -> Path:
        return Path(self._file(digest))

    def _file(self, digest: Digest) -> str:
        # A plain string: the GC sweeps tens of thousands, and pathlib joins cost ~40 us each.
        return os.path.join(self.blobs_root, digest.algorithm, digest.hex[:2], digest.hex)

    def upload_path(self, upload_id: str) -> Path:
        return self.uploads_root / upload_id

    def exists(self, digest: Digest) -> bool:
        return os.path.isfile(self._file(digest))

    def stat(self, digest: Digest) -> int | None:
        try:
            st = os.stat(self._file(digest))
        except FileNotFoundError:
            return None
        return st.st_size

    def local_path(self, digest: Digest) -> Path | None:
        return self.path(digest)

    def volume(self) -> Volume:
        disk = shutil.disk_usage(self.blobs_root)
        return Volume(disk.total, disk.free)

    def open_range(self, digest: Digest, start: int = 0, length: int | None = None) -> BinaryIO:
        file = open(self.path(digest), "rb")  # noqa: SIM115 - closed by the caller
        file.seek(start)
        return file

    def delete(self, digest: Digest) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._file(digest))

    def list_unknown(self, known: Container[str]) -> Iterator[BlobEntry]:
        for algorithm in _names(str(self.blobs_root)):
            top = os.path.join(self.blobs_root, algorithm)
            for prefix in _names(top):
                folder = os.path.join(top, prefix)
                for name in _names(folder):
                    text = f"{algorithm}:{name}"
                    if text in known:
                        continue
                    try:
                        digest = parse_digest(text)
                        st = os.stat(os.path.join(folder, name))
                    except (RegistryError, OSError):
                        continue  # not a blob file of ours: leave it alone
                    yield BlobEntry(digest, st.st_size, st.st_mtime)

    def put_stream(self, chunks: Iterable[bytes], digest: Digest) -> int:
        tmp = self._temp_path()
        hasher = hashlib.new(digest.algorithm)
        size = 0
        try:
            with refused_when_full("writing a blob"), open(tmp, "xb") as f:
                for chunk in chunks:
                    hasher.update(chunk)
                    f.write(chunk)
                    size += len(chunk)
                f.flush()
                os.fsync(f.fileno())
            verify_digest(digest, Digest(digest.algorithm, hasher.hexdigest()))
            self.commit(tmp, digest)
        finally:
            tmp.unlink(missing_ok=True)
        return size

    def put_file(self, source: Path, digest: Digest) -> bool:
        return self.commit(source, digest)

    def create_upload(self, upload_id: str) -> None:
        path = self.upload_path(upload_id)
        try:
            with refused_when_full("creating an upload"):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                fsync_dir(self.uploads_root)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    def lock_upload(self, upload_id: str) -> int | None:
        """Claim the upload's file for one writer, across processes: an open descriptor
        holding an exclusive flock, to pass to `unlock_upload`; None while another holds it
        (in this process or another). FileNotFoundError when the file is gone."""
        fd = os.open(self.upload_path(upload_id), os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def unlock_upload(fd: int) -> None:
        os.close(fd)  # closing the descriptor drops its flock

    def truncate_upload(self, upload_id: str, size: int) -> None:
        """Drop bytes past the last acknowledged offset (a chunk cut off by a crash)."""
        with open(self.upload_path(upload_id), "r+b") as f:
            f.truncate(size)

    def remove_upload(self, upload_id: str) -> None:
        self.upload_path(upload_id).unlink(missing_ok=True)

    def commit(self, source: Path, digest: Digest) -> bool:
        """Move a verified, fsynced file into place. False if the blob was already there."""
        target = self.path(digest)
        if target.is_file():
            source.unlink(missing_ok=True)
            return False
        with refused_when_full("storing a blob"):
            _make_dirs(target.parent)
            os.replace(source, target)
            fsync_dir(target.parent)
        return True

    def write_bytes(self, data: bytes, digest: Digest) -> bool:
        """Store small content (a manifest body) in place. False if already there."""
        if self.exists(digest):
            return False
        self.put_stream((data,), digest)
        return True

    def write_temp(self, data: bytes) -> Path:
        """A durable temporary file holding `data`, ready for `commit`."""
        tmp = self._temp_path()
        try:
            with refused_when_full("writing a blob"), open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _temp_path(self) -> Path:
        return self.uploads_root / f".tmp-{uuid.uuid4().hex}"

    def remove(self, digest: Digest) -> None:
        self.delete(digest)

    def read_bytes(self, digest: Digest) -> bytes:
        return self.path(digest).read_bytes()


@dataclass
class HashingWriter:
    """Appends to an upload file while hashing; `write` is meant to run off the event loop.

    The hash state lives in memory only; after a restart `resume` rebuilds it from the file.
    A write that fails (a full volume) rewinds the file and the hash to where this request
    began, the last acknowledged offset, so that nothing of it is left taking space.
    """

    path: Path
    offset: int
    algorithm: str = "sha256"
    _hasher: Any = field(default=None, repr=False)
    _file: Any = field(default=None, repr=False)
    _mark: tuple[int, Any] | None = field(default=None, repr=False)

    @classmethod
    def resume(cls, path: Path, offset: int, algorithm: str = "sha256") -> HashingWriter:
        writer = cls(path=path, offset=offset, algorithm=algorithm)
        writer._hasher = hash_file(path, algorithm, limit=offset)
        return writer

    def open(self) -> None:
        if self._file is None:
            self._file = open(self.path, "r+b")  # noqa: SIM115 - closed by close()
            self._file.seek(self.offset)
            # Opened at the acknowledged offset: each request starts here (see close()).
            self._mark = (self.offset, self._hasher.copy())

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.open()
        try:
            with refused_when_full("receiving an upload"):
                self._write(data)
        except BaseException:
            self.rewind()
            raise

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        write_hashed(self._file, self._hasher, data, self.offset)
        self.offset += len(data)

    def rewind(self) -> None:
        """Back to where this request began: the file truncated, the hash restored, the file
        closed."""
        if self._file is not None:
            with contextlib.suppress(OSError):  # flushing what the disk refused fails again
                self._file.close()
            self._file = None
        if self._mark is not None:
            self.offset, hasher = self._mark
            self._hasher = hasher.copy()
            with contextlib.suppress(OSError):
                os.truncate(self.path, self.offset)

    def flush(self, durable: bool = False) -> None:
        if self._file is not None:
            try:
                with refused_when_full("receiving an upload"):
                    self._file.flush()
                    if durable:
                        os.fsync(self._file.fileno())
            except BaseException:
                self.rewind()
                raise

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def digest(self) -> Digest:
        return Digest(self.algorithm, self._hasher.hexdigest())


def hash_file(path: Path, algorithm: str, limit: int | None = None) -> Any:
    hasher = hashlib.new(algorithm)
    remaining = limit
    with open(path, "rb") as f:
        while remaining is None or remaining > 0:
            want = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
            chunk = f.read(want)
            if not chunk:
                break
            hasher.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return hasher


def _load_sync_file_range() -> object | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


def write_hashed(file: BinaryIO, hasher: Any, data: bytes | bytearray | memoryview,
                 offset: int) -> None:
    """Write `data` (at `offset` of an unbuffered or flushed-after file) while `hasher` takes
    it on another thread, then start its writeback: a batch costs max(hash, write) instead of
    their sum, and the final fsync finds little left to write. `data` must not change until
    this returns."""
    if len(data) < PARALLEL_HASH_MIN:
        hasher.update(data)
        file.write(data)
        return
    hashed = _hash_pool.submit(hasher.update, data)
    try:
        file.write(data)
        file.flush()
        start_writeback(file.fileno(), offset, len(data))
    finally:
        hashed.result()


class BlockWriter:
    """Writes and hashes a stream's blocks one behind its reader: while block N goes to disk
    (`write_hashed`, in a pool thread), block N+1 is received, so a block costs
    max(receive, hash, write) instead of receive + max(hash, write). Blocks go down in
    order; `wait()` returns once all are down, and raises what a write raised."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self._last: Future[None] | None = None

    def write(self, hasher: Any, data: bytes, offset: int) -> None:
        """Queue `data` (for `offset` of the file) behind the block in flight."""
        self.wait()
        if len(data) < PARALLEL_HASH_MIN:
            write_hashed(self.file, hasher, data, offset)  # a thread hop would cost more
        else:
            self._last = _write_pool.submit(write_hashed, self.file, hasher, data, offset)

    def wait(self) -> None:
        last, self._last = self._last, None
        if last is not None:
            last.result()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask Linux to start writing a range to disk now, without waiting for it.

    The fsync that acknowledges the upload then finds little left to write, instead of
    the whole blob.
    """
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)  # type: ignore[operator]


def _make_dirs(path: Path) -> None:
    """`mkdir -p`, fsyncing the parent of each directory made, so that a blob renamed into
    a new `blobs/sha256/ab/` is still reachable after a power cut."""
    missing: list[Path] = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            continue
        fsync_dir(directory.parent)


def _names(folder: str) -> list[str]:
    """The entry names of a directory; none when it is missing."""
    try:
        with os.scandir(folder) as entries:
            return [entry.name for entry in entries]
    except (FileNotFoundError, NotADirectoryError):
        return []
