"""Where an export's files go: a directory, or a tar written as it goes. Blobs are copied
from the blob store in the kernel (copy_file_range) when both ends are local files, else in
chunks; never a whole blob in memory."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol, cast

from registry_core.reference import Digest
from registry_core.store.blobs import BlobStore
from registry_core.store.full import refused_when_full
from registry_core.transfer.errors import TransferError

CHUNK = 8 << 20
BlockCounter = Callable[[int], None]
"""Told the bytes of each chunk written (progress; may raise TransferCancelled)."""


class Writer(Protocol):
    def add_bytes(self, name: str, data: bytes) -> None: ...

    def add_blob(self, name: str, store: BlobStore, digest: Digest, size: int,
                 counter: BlockCounter) -> None: ...

    def close(self) -> None:
        """Finish (a tar's end blocks) and make it durable."""
        ...


class DirWriter:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(mode=0o755)
        self._made: set[Path] = set()

    def _open(self, name: str) -> BinaryIO:
        path = self.root / name
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
        return open(path, "xb", buffering=0)

    def add_bytes(self, name: str, data: bytes) -> None:
        with refused_when_full("writing the export"), self._open(name) as file:
            file.write(data)

    def add_blob(self, name: str, store: BlobStore, digest: Digest, size: int,
                 counter: BlockCounter) -> None:
        with refused_when_full("writing the export"), self._open(name) as file:
            copy_blob(store, digest, size, file, counter)

    def close(self) -> None:
        """Every file made durable at once (a USB stick may be pulled right after): one
        syncfs of the volume instead of an fsync a file."""
        sync_volume(self.root)


class TarWriter:
    """A tar stream: each member's header, its bytes, padding; two zero blocks at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: BinaryIO = open(path, "xb", buffering=0)  # noqa: SIM115 - closed by close()
        self.mtime = int(time.time())

    def _header(self, name: str, size: int) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, self.mtime
        self.file.write(info.tobuf(format=tarfile.PAX_FORMAT))

    def _pad(self, size: int) -> None:
        self.file.write(b"\0" * (-size % tarfile.BLOCKSIZE))

    def add_bytes(self, name: str, data: bytes) -> None:
        with refused_when_full("writing the export"):
            self._header(name, len(data))
            self.file.write(data)
            self._pad(len(data))

    def add_blob(self, name: str, store: BlobStore, digest: Digest, size: int,
                 counter: BlockCounter) -> None:
        with refused_when_full("writing the export"):
            self._header(name, size)
            copy_blob(store, digest, size, self.file, counter)
            self._pad(size)

    def close(self) -> None:
        with refused_when_full("writing the export"):
            self.file.write(b"\0" * (2 * tarfile.BLOCKSIZE))
            os.fsync(self.file.fileno())
        self.file.close()

    def abandon(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()


def sync_volume(path: Path) -> None:
    """syncfs(2) on the volume holding `path` (os.sync where there is none)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _syncfs is None or _syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return cast(Callable[[int], int], fn)


_syncfs = _load_syncfs()


def copy_blob(store: BlobStore, digest: Digest, size: int, out: BinaryIO,
              counter: BlockCounter) -> None:
    """The blob's bytes appended to `out` (unbuffered); TransferError when the stored blob
    is not `size` bytes."""
    local = store.local_path(digest)
    with open(local, "rb", buffering=0) if local is not None \
            else store.open_range(digest) as src:
        copied = _in_kernel(src, out, size, counter) if local is not None else 0
        while copied < size:
            chunk = src.read(min(CHUNK, size - copied))
            if not chunk:
                break
            out.write(chunk)
            copied += len(chunk)
            counter(len(chunk))
    if copied != size:
        raise TransferError(f"blob {digest} is {copied} bytes in the store, not {size}")


def _in_kernel(src: BinaryIO, out: BinaryIO, size: int, counter: BlockCounter) -> int:
    """copy_file_range while the kernel can; the bytes copied (the rest goes by read)."""
    copied = 0
    while copied < size:
        try:
            n = os.copy_file_range(src.fileno(), out.fileno(), min(CHUNK, size - copied))
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                return copied  # positions moved with what was copied
            raise
        if n == 0:
            return copied
        copied += n
        counter(n)
    return copied
