"""Capacity of the volume that holds the data dir, the configured quota, the reserve, and
the ballast that keeps deleting possible on a full volume."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import humanize

from registry_core.config import StorageConfig
from registry_core.errors import InsufficientSpace
from registry_core.store.blobs import Volume


@dataclass(frozen=True)
class Capacity:
    capacity_bytes: int
    free_bytes: int
    reserve_bytes: int
    quota_bytes: int
    """0 when no quota is configured."""

    @property
    def low(self) -> bool:
        return self.free_bytes < self.reserve_bytes


def capacity(volume: Volume, storage: StorageConfig, used_bytes: int) -> Capacity:
    """Capacity is the volume's, or the quota if smaller; free is what is left of it."""
    total, free = volume.total_bytes, volume.free_bytes
    if storage.quota_bytes > 0 and storage.quota_bytes < total:
        total = storage.quota_bytes
        free = min(free, max(0, storage.quota_bytes - used_bytes))
    reserve = min(int(total * storage.reserve_percent / 100), storage.reserve_max_bytes)
    return Capacity(total, free, reserve, storage.quota_bytes)


BALLAST_NAME = "space.ballast"
BALLAST_MIN = 256 << 10
BALLAST_MAX = 8 << 20


class Ballast:
    """Room held back in a file for the writes that free space.

    SQLite cannot delete a row without appending a few pages to its WAL, so on a volume
    filled to the last byte a delete or a GC would fail with SQLITE_FULL. Before such an
    operation, a volume with less free space than the ballast gets the ballast back; a GC
    that leaves room makes it again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def size(self) -> int:
        total = shutil.disk_usage(self.path.parent).total
        return max(BALLAST_MIN, min(BALLAST_MAX, total // 50))

    def fill(self, keep_free: int) -> bool:
        """Make the file if missing and the volume keeps `keep_free` bytes (and the ballast's
        size) free after it; True if the ballast is in place."""
        if self.path.exists():
            return True
        size = self.size()
        if shutil.disk_usage(self.path.parent).free - size < max(keep_free, size):
            return False
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            return False
        return True

    def release_if_low(self) -> bool:
        """Delete the ballast when less than its size is free; True if it was deleted."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return False
        if shutil.disk_usage(self.path.parent).free >= size:
            return False
        self.path.unlink(missing_ok=True)
        return True


def check_room(cap: Capacity, incoming_bytes: int) -> None:
    """Refuse an upload that would leave less free space than the reserve."""
    if cap.free_bytes - incoming_bytes >= cap.reserve_bytes:
        return
    raise InsufficientSpace(
        f"not enough space: {humanize.naturalsize(cap.free_bytes, binary=True)} free, "
        f"{humanize.naturalsize(cap.reserve_bytes, binary=True)} reserved; "
        "delete unused images and run a garbage collection to make room",
        detail={
            "free_bytes": cap.free_bytes,
            "reserve_bytes": cap.reserve_bytes,
            "incoming_bytes": incoming_bytes,
        },
    )
