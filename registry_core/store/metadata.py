"""The SQLite metadata store: schema, connections and transactions.

One database per data dir, in WAL mode, shared by every process that opens the dir (a
`serve`, the console, a `gc` from cron). Transactions are the only coordination between
them: a write that must see a consistent state takes `BEGIN IMMEDIATE`, the database's
single write lock, so that for example a manifest commit and a GC sweep can never interleave.

Each thread gets its own connection (sqlite3 connections must not be shared across threads
while in use). The schema and its upgrades live in `migrations.py`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from registry_core.store.full import refused_when_full
from registry_core.store.migrations import upgrade

BUSY_TIMEOUT_SECONDS = 30.0
"""How long a statement waits for another connection's lock before the store gives up
(StoreBusy)."""


class Metadata:
    """Connections to one registry.db; one connection per thread, opened lazily."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._by_thread: dict[int, tuple[threading.Thread, sqlite3.Connection]] = {}
        self._lock = threading.Lock()
        upgrade(path)  # SchemaTooNew for a newer release's data dir, which stays untouched

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection, for reads (autocommit: each statement sees the latest)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None,
            check_same_thread=False,
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: an acknowledged (201/202) write survives power loss, not only a crash.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000):d}")
        # The GC mark and the usage report work in temp tables over every manifest and blob.
        conn.execute("PRAGMA temp_store=MEMORY")
        with self._lock:
            self._close_orphans()
            self._by_thread[threading.get_ident()] = (threading.current_thread(), conn)
        return conn

    def _close_orphans(self) -> None:
        """Close the connections of threads that have ended (short-lived workers each open
        one); called with the lock held."""
        for ident, (thread, conn) in list(self._by_thread.items()):
            if not thread.is_alive():
                conn.close()
                del self._by_thread[ident]

    def open_connections(self) -> int:
        with self._lock:
            return len(self._by_thread)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the database's write lock from its first statement.

        A full volume (SQLITE_FULL, or ENOSPC from file work inside) raises StorageFull,
        with the transaction rolled back and the connection usable."""
        conn = self.conn
        with refused_when_full("writing to the database"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL)
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every statement inside sees one snapshot."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def data_version(self) -> int:
        """Changes whenever another connection commits: a cheap 'did anything change?'."""
        row = self.conn.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            for _thread, conn in self._by_thread.values():
                conn.close()
            self._by_thread.clear()
        self._local = threading.local()


def now() -> float:
    return time.time()
