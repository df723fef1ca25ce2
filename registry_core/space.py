"""Capacity of the volume that holds the data dir, the configured quota, and the reserve."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import humanize

from registry_core.config import StorageConfig
from registry_core.errors import InsufficientSpace


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


def capacity(root: Path, storage: StorageConfig, used_bytes: int) -> Capacity:
    """Capacity is the volume's, or the quota if smaller; free is what is left of it."""
    disk = shutil.disk_usage(root)
    total, free = disk.total, disk.free
    if storage.quota_bytes > 0 and storage.quota_bytes < total:
        total = storage.quota_bytes
        free = min(free, max(0, storage.quota_bytes - used_bytes))
    reserve = min(int(total * storage.reserve_percent / 100), storage.reserve_max_bytes)
    return Capacity(total, free, reserve, storage.quota_bytes)


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
