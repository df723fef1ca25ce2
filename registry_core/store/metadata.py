"""The SQLite metadata store: schema, connections and transactions.

One database per data dir, in WAL mode, shared by every process that opens the dir (a
`serve`, the console, a `gc` from cron). Transactions are the only coordination between
them: a write that must see a consistent state takes `BEGIN IMMEDIATE`, the database's
single write lock, so that for example a manifest commit and a GC sweep can never interleave.

Each thread gets its own connection (sqlite3 connections must not be shared across threads
while in use).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from registry_core.store.full import refused_when_full

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS repositories (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);

-- Every stored content file, layers, configs and manifest bodies alike, once each.
CREATE TABLE IF NOT EXISTS blobs (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    created_at REAL NOT NULL,
    touched_at REAL NOT NULL          -- last upload, mount or reference; the grace clock
) WITHOUT ROWID;

-- A blob is visible in a repository once uploaded, mounted or referenced there.
CREATE TABLE IF NOT EXISTS repository_blobs (
    repository_id INTEGER NOT NULL REFERENCES repositories(id),
    digest TEXT NOT NULL,
    linked_at REAL NOT NULL,
    PRIMARY KEY (repository_id, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS repository_blobs_digest ON repository_blobs(digest);

CREATE TABLE IF NOT EXISTS manifests (
    id INTEGER PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES repositories(id),
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    artifact_type TEXT,
    size INTEGER NOT NULL,            -- bytes of the manifest body
    content_size INTEGER NOT NULL,    -- config + layers as declared (0 for an index)
    subject TEXT,                     -- OCI 1.1 subject digest, if any
    annotations TEXT,                 -- JSON object or NULL
    platforms TEXT,                   -- "linux/amd64, linux/arm64" for an index
    image_created TEXT,               -- the image config's `created`, if any
    created_at REAL NOT NULL,
    UNIQUE (repository_id, digest)
);
CREATE INDEX IF NOT EXISTS manifests_digest ON manifests(digest);
CREATE INDEX IF NOT EXISTS manifests_subject ON manifests(repository_id, subject)
    WHERE subject IS NOT NULL;

-- The blobs (config and layers) each manifest references.
CREATE TABLE IF NOT EXISTS manifest_blobs (
    manifest_id INTEGER NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    kind TEXT NOT NULL,               -- 'config' or 'layer'
    size INTEGER NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (manifest_id, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS manifest_blobs_digest ON manifest_blobs(digest);

-- The child manifests an index references.
CREATE TABLE IF NOT EXISTS manifest_children (
    parent_id INTEGER NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
    child_digest TEXT NOT NULL,
    platform TEXT,
    position INTEGER NOT NULL,
    PRIMARY KEY (parent_id, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS manifest_children_child ON manifest_children(child_digest);

CREATE TABLE IF NOT EXISTS tags (
    repository_id INTEGER NOT NULL REFERENCES repositories(id),
    name TEXT NOT NULL,
    manifest_id INTEGER NOT NULL REFERENCES manifests(id),
    updated_at REAL NOT NULL,
    PRIMARY KEY (repository_id, name)
);
CREATE INDEX IF NOT EXISTS tags_manifest ON tags(manifest_id);

CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    repository TEXT NOT NULL,
    size INTEGER NOT NULL,            -- bytes received and acknowledged so far
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS gc_runs (
    id INTEGER PRIMARY KEY,
    trigger TEXT NOT NULL,            -- 'schedule', 'manual', 'cli'
    dry_run INTEGER NOT NULL,
    delete_untagged INTEGER NOT NULL,
    grace_period_seconds REAL NOT NULL,
    owner TEXT NOT NULL,              -- "<hostname>:<pid>" of the process running it
    started_at REAL NOT NULL,
    finished_at REAL,
    heartbeat_at REAL NOT NULL,
    status TEXT NOT NULL,             -- 'running', 'succeeded', 'failed', 'cancelled'
    phase TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    manifests_scanned INTEGER NOT NULL DEFAULT 0,
    manifests_deleted INTEGER NOT NULL DEFAULT 0,
    manifests_kept_grace INTEGER NOT NULL DEFAULT 0,
    blobs_scanned INTEGER NOT NULL DEFAULT 0,
    blobs_deleted INTEGER NOT NULL DEFAULT 0,
    blobs_kept_grace INTEGER NOT NULL DEFAULT 0,
    uploads_purged INTEGER NOT NULL DEFAULT 0,
    bytes_freed INTEGER NOT NULL DEFAULT 0,
    errors TEXT NOT NULL DEFAULT '[]',    -- JSON list of strings
    details TEXT NOT NULL DEFAULT '{}'    -- JSON: what was (or would be) deleted
);

CREATE TABLE IF NOT EXISTS usage_samples (
    taken_at REAL PRIMARY KEY,
    reason TEXT NOT NULL,             -- 'push', 'delete', 'gc', 'start'
    used_bytes INTEGER NOT NULL,
    capacity_bytes INTEGER NOT NULL,
    free_bytes INTEGER NOT NULL,
    reclaimable_bytes INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""


class Metadata:
    """Connections to one registry.db; one connection per thread, opened lazily."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._by_thread: dict[int, tuple[threading.Thread, sqlite3.Connection]] = {}
        self._lock = threading.Lock()
        # executescript manages its own transaction; the schema is all-or-nothing.
        self.conn.executescript(
            "BEGIN IMMEDIATE;\n" + SCHEMA + "\nINSERT OR IGNORE INTO meta(key, value) "
            f"VALUES ('schema_version', '{SCHEMA_VERSION}');\nCOMMIT;"
        )

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
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: an acknowledged (201/202) write survives power loss, not only a crash.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
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
