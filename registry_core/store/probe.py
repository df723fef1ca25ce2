"""Does the database answer? One trivial read on a connection of its own, as a new process
would see the file: the store's long-lived connections keep working on a registry.db that was
removed, and answer from their page cache when its pages were damaged on disk.

The file is opened through SQLite only, never with a plain open(): closing a descriptor drops
every POSIX lock the process holds on the file, and SQLite, which knows the process's other
connections to the same file, keeps such a descriptor until their locks are released."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from registry_core.store.base import translate


def probe_database(path: Path, timeout: float) -> None:
    """Read one row of `meta` read-only (never creating the file), waiting at most
    `timeout` seconds for a lock; StoreError or StoreBusy when the database does not answer."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout)
    except sqlite3.Error as exc:
        raise translate(exc) from exc
    try:
        conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise translate(exc) from exc
    finally:
        conn.close()
