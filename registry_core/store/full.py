"""A full volume, as the OS (ENOSPC, EDQUOT) and SQLite (SQLITE_FULL) report it, made one
clean refusal: `StorageFull`."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from registry_core.errors import StorageFull

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        # The primary code is the low byte of an extended one.
        return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in FULL_ERRNOS


@contextmanager
def refused_when_full(what: str) -> Iterator[None]:
    """Re-raise a full-volume error from the block as StorageFull; others pass unchanged."""
    try:
        yield
    except (OSError, sqlite3.Error) as exc:
        if not is_disk_full(exc):
            raise
        raise storage_full(what, exc) from exc


def storage_full(what: str, exc: BaseException) -> StorageFull:
    return StorageFull(
        f"no space left on device while {what}; delete unused images and run a "
        "garbage collection to make room",
        detail={"reason": getattr(exc, "strerror", None) or str(exc)},
    )
