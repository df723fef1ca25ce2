"""The boundary of the store: sqlite3 errors become the core's errors here, and nowhere else.

* SQLITE_FULL (and ENOSPC from file work inside a write) -> StorageFull (see full.py);
* SQLITE_BUSY / SQLITE_LOCKED past the busy timeout -> StoreBusy (503 with Retry-After);
* any other sqlite3 error -> StoreError (an internal error).

Every public method of a query group (a `Queries` subclass) is wrapped on class creation,
so no group can forget it.
"""

from __future__ import annotations

import functools
import inspect
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from registry_core.errors import StoreBusy, StoreError
from registry_core.store.full import is_disk_full, refused_when_full, storage_full
from registry_core.store.metadata import Metadata

RETRY_AFTER_SECONDS = 1
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})

F = TypeVar("F", bound=Callable[..., Any])


def translate(exc: sqlite3.Error) -> Exception:
    """The core's error for a sqlite3 error."""
    if is_disk_full(exc):
        return storage_full("writing to the database", exc)
    if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _BUSY_CODES:
        return StoreBusy(
            detail={"reason": str(exc)}, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    return StoreError(f"metadata store error: {exc}")


@contextmanager
def translated(what: str = "writing to the database") -> Iterator[None]:
    """Translate sqlite3 errors raised by the block (full volume: StorageFull)."""
    try:
        with refused_when_full(what):
            yield
    except sqlite3.Error as exc:
        raise translate(exc) from exc


def _translating(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    return wrapper  # type: ignore[return-value]


class Queries:
    """A group of typed queries over one Metadata; statements run on the calling thread's
    connection, so inside `Store.exclusive()` or `Store.snapshot()` they join that
    transaction."""

    def __init__(self, db: Metadata) -> None:
        self._db = db

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, value in list(vars(cls).items()):
            if not name.startswith("_") and inspect.isfunction(value):
                setattr(cls, name, _translating(value))

    @property
    def _conn(self) -> sqlite3.Connection:
        return self._db.conn
