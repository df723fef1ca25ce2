"""Versioned schema migrations, keyed on SQLite's `PRAGMA user_version`.

`STEPS[i]` takes the database from version i to i + 1. Each step runs in one transaction with
the new `user_version`, so a step is applied entirely or not at all, and concurrent openers
serialise on `BEGIN IMMEDIATE` and re-read the version inside it: only one of them migrates.
A database newer than the last step is refused before anything is written to it.

Steps run with foreign keys off (so rebuilding a table does not cascade into its children);
a step that rebuilds a table runs `PRAGMA foreign_key_check(<table>)` itself.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from registry_core.errors import SchemaTooNew

Apply = Callable[[sqlite3.Connection], None]


@dataclass(frozen=True)
class Step:
    """One migration: `apply` brings version `version - 1` to `version`."""

    version: int
    description: str
    apply: Apply


def script(sql: str) -> Apply:
    """A step body running `sql` statement by statement inside the step's transaction
    (`executescript` would commit the transaction first)."""

    def apply(conn: sqlite3.Connection) -> None:
        for statement in _statements(sql):
            conn.execute(statement)

    return apply


def _statements(sql: str) -> list[str]:
    """Split at each `;` that ends a statement (not one inside a literal or a trigger)."""
    statements, buf = [], ""
    *pieces, tail = sql.split(";")
    for piece in pieces:
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            statements.append(buf)
            buf = ""
    rest = buf + tail
    if any(ln.strip() and not ln.strip().startswith("--") for ln in rest.splitlines()):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {rest!r}")
    return statements


# Version 1: the schema every release before migrations wrote (with meta.schema_version = '1'
# and user_version 0). Its text must not change: a fresh database and an old one must agree.
V1_SCHEMA = """
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

# Version 2: blob files the GC has dropped the rows of, to unlink after that commit (a crash
# in between leaves them listed here, and the next open or GC finishes them).
V2_PENDING_DELETES = """
CREATE TABLE pending_deletes (
    digest TEXT PRIMARY KEY,
    queued_at REAL NOT NULL
) WITHOUT ROWID;
"""

# Version 3: the connected registry. Sync runs are recorded like GC runs (one 'running' row at
# a time, which the partial unique index enforces); staged images are pinned until released
# or expired. The sync state (last success, local change mark pushed up) is kept in `meta`.
V3_SYNC_AND_STAGING = """
CREATE TABLE sync_runs (
    id INTEGER PRIMARY KEY,
    trigger TEXT NOT NULL,            -- 'manual', 'schedule', 'stage'
    owner TEXT NOT NULL,              -- "<hostname>:<pid>" of the process running it
    started_at REAL NOT NULL,
    finished_at REAL,
    heartbeat_at REAL NOT NULL,
    status TEXT NOT NULL,             -- 'running', 'succeeded', 'failed', 'cancelled',
                                      -- 'stopped' (the sync window closed)
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    repositories INTEGER NOT NULL DEFAULT 0,
    manifests_copied INTEGER NOT NULL DEFAULT 0,
    blobs_copied INTEGER NOT NULL DEFAULT 0,
    bytes_copied INTEGER NOT NULL DEFAULT 0,
    manifests_pushed INTEGER NOT NULL DEFAULT 0,
    errors TEXT NOT NULL DEFAULT '[]',    -- JSON list of strings
    conflicts TEXT NOT NULL DEFAULT '[]', -- JSON list of objects (a tag moved on both sides)
    details TEXT NOT NULL DEFAULT '{}'    -- JSON object
);
CREATE UNIQUE INDEX sync_runs_one_running ON sync_runs(status) WHERE status = 'running';

CREATE TABLE stage_items (
    id INTEGER PRIMARY KEY,
    stage TEXT NOT NULL,
    repository TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT,                      -- NULL until the parent's digest is known
    status TEXT NOT NULL,             -- 'pending', 'downloading', 'verifying', 'staged', 'failed'
    reason TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    expires_at REAL,                  -- NULL: until released
    released_at REAL                  -- set by a release, or by expiry (to expires_at)
);
CREATE UNIQUE INDEX stage_items_current ON stage_items(stage, repository, tag)
    WHERE released_at IS NULL;
-- The GC's mark asks "is this manifest pinned?" for every manifest.
CREATE INDEX stage_items_pins ON stage_items(digest, repository)
    WHERE status = 'staged' AND released_at IS NULL;

-- Each synced tag's digest as both sides last agreed on it: in ReadWrite mode, what tells a
-- tag moved here (push it up) from one moved on the parent (pull it) or on both (conflict).
CREATE TABLE sync_tags (
    repository TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    synced_at REAL NOT NULL,
    PRIMARY KEY (repository, tag)
) WITHOUT ROWID;
"""

# Version 4: access and accountability. Client tokens, each bound to a scope map (shared maps
# are possible), with one or two passwords (rotation without downtime) kept only as slow
# hashes; and the audit log, bounded by age and count by the writer.
V4_ACCESS_AND_AUDIT = """
CREATE TABLE scope_maps (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    rules TEXT NOT NULL,              -- JSON list of {"pattern": "app/*", "actions": [...]}
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE tokens (
    name TEXT PRIMARY KEY,
    scope_map TEXT NOT NULL REFERENCES scope_maps(name),
    enabled INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX tokens_scope_map ON tokens(scope_map);

CREATE TABLE token_passwords (
    token TEXT NOT NULL REFERENCES tokens(name) ON DELETE CASCADE,
    slot INTEGER NOT NULL CHECK (slot IN (1, 2)),
    hash TEXT NOT NULL,               -- scrypt, as the admin's in users.json
    created_at REAL NOT NULL,
    expires_at REAL,                  -- NULL: never
    PRIMARY KEY (token, slot)
) WITHOUT ROWID;

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    principal TEXT NOT NULL,          -- the admin's user name, a token's name, 'console',
                                      -- 'gc', 'sync', or what a failed login claimed
    principal_kind TEXT NOT NULL,     -- 'admin', 'token', 'system', 'unknown'
    address TEXT,                     -- the client's address, NULL at the appliance
    action TEXT NOT NULL,             -- e.g. 'login', 'manifest.push', 'manifest.delete',
                                      -- 'tag.move', 'blob.delete', 'gc.run', 'token.create'
    repository TEXT,
    reference TEXT,                   -- a digest or a tag
    result TEXT NOT NULL,             -- 'ok', 'denied', 'failed'
    detail TEXT NOT NULL DEFAULT '{}' -- JSON object
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_principal ON audit_log(principal, at);
CREATE INDEX audit_log_action ON audit_log(action, at);
CREATE INDEX audit_log_repository ON audit_log(repository, at);
"""

# Version 5: manifests kept by the sync. A local manifest that loses its tag to the parent in
# a ReadWrite conflict stays reachable by digest: the GC keeps it even where untagged manifests
# are collected, until somebody deletes it by digest (its row goes with it).
V5_KEPT_MANIFESTS = """
CREATE TABLE kept_manifests (
    manifest_id INTEGER PRIMARY KEY REFERENCES manifests(id) ON DELETE CASCADE,
    reason TEXT NOT NULL,             -- one line for the technician: what it lost, to what
    kept_at REAL NOT NULL
);
"""

STEPS: tuple[Step, ...] = (
    Step(1, "the original schema", script(V1_SCHEMA)),
    Step(2, "pending blob deletes of the GC", script(V2_PENDING_DELETES)),
    Step(3, "sync runs and staged images", script(V3_SYNC_AND_STAGING)),
    Step(4, "client tokens, scope maps and the audit log", script(V4_ACCESS_AND_AUDIT)),
    Step(5, "manifests kept by the sync after a conflict", script(V5_KEPT_MANIFESTS)),
)
LATEST = STEPS[-1].version


def upgrade(path: Path, steps: Sequence[Step] = STEPS) -> int:
    """Create or upgrade the database at `path` to the last of `steps`; returns that version.

    SchemaTooNew if the database is newer, leaving the file as it was."""
    latest = _latest(steps)
    if path.exists():
        _refuse_if_too_new(path, _header_version(path), latest)
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        return migrate(conn, steps)
    finally:
        conn.close()


def refuse_newer(path: Path) -> None:
    """SchemaTooNew when the database at `path` was written by a newer release; touches
    nothing (for operations such as `enable` that write the data dir but not the database)."""
    if path.exists():
        _refuse_if_too_new(path, _header_version(path), LATEST)


def migrate(conn: sqlite3.Connection, steps: Sequence[Step] = STEPS) -> int:
    """Apply the missing `steps` on `conn` (autocommit mode), one transaction each."""
    latest = _latest(steps)
    with _transaction(conn, "BEGIN"):  # the common case: up to date, no write lock taken
        stored = user_version(conn)
        _refuse_if_too_new(_db_path(conn), stored or _legacy_version(conn), latest)
    while stored != latest:
        with _transaction(conn, "BEGIN IMMEDIATE"):
            # Re-read under the write lock: another process may have migrated meanwhile.
            stored = user_version(conn)
            version = stored or _legacy_version(conn)
            _refuse_if_too_new(_db_path(conn), version, latest)
            if stored == latest:
                break
            if version == stored:
                step = steps[version]
                step.apply(conn)
                version = step.version
            # else: written before migrations existed; adopt its version, touching no data
            conn.execute(f"PRAGMA user_version = {version:d}")
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(version),),
            )
            stored = version
    return latest


@contextmanager
def _transaction(conn: sqlite3.Connection, begin: str) -> Iterator[None]:
    conn.execute(begin)
    try:
        yield
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL, say)
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _legacy_version(conn: sqlite3.Connection) -> int:
    """meta.schema_version of a database written before user_version was used, or 0."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row is not None and str(row[0]).isdigit() else 0


def _header_version(path: Path) -> int:
    """user_version as the main file's header holds it, read by SQLite with immutable=1: no
    lock, no -wal or -shm left behind. Not with a plain open(): closing any descriptor of a
    file drops every POSIX lock the process holds on it, so another process could find no
    reader and reset the WAL under this process's open connections (SQLite keeps its own
    descriptor open while another of its connections holds a lock)."""
    uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError:  # not a database (as a header without the magic)
        return 0


def _refuse_if_too_new(path: Path, version: int, latest: int) -> None:
    if version > latest:
        raise SchemaTooNew(
            f"the data dir {path.parent} was written by a newer release (database schema "
            f"version {version}; this release knows versions up to {latest}): "
            "use that release or a newer one"
        )


def _db_path(conn: sqlite3.Connection) -> Path:
    row = conn.execute("PRAGMA database_list").fetchone()
    return Path(row[2])


def _latest(steps: Sequence[Step]) -> int:
    if [s.version for s in steps] != list(range(1, len(steps) + 1)):
        raise ValueError("migration steps must be numbered 1, 2, 3... in order")
    return len(steps)
