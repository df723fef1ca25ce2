"""Online garbage collection: mark and sweep with a grace period, safe while pushes go on.

The mark is one SQL computation (`mark`) shared by the GC, the delete preview and the usage
report, so the three can never disagree about what is garbage.

Live manifests are the closure of the roots over two kinds of edge, both within a repository:

* index -> child manifest (`manifest_children`), and
* subject -> referrer (OCI 1.1 `subject`): a referrer lives exactly as long as its subject.

Roots are tagged manifests and, unless `delete_untagged`, every untagged manifest that is not
a referrer (pods may pull by digest). With a grace period, manifests created after the cutoff
are roots too. Live blobs are the configs and layers of live manifests plus the bodies of live
manifests; every other blob, last touched before the cutoff, is garbage.

The sweep runs in small batches, each inside `BEGIN IMMEDIATE` (the database's single write
lock, which blob and manifest commits also take): inside the transaction it re-checks that a
manifest or blob is still unreferenced and older than the cutoff, deletes its rows and unlinks
its file before the commit. A push that references a blob therefore either commits before the
batch (and the re-check keeps the blob) or after it (and sees the blob gone, so it uploads it
again); it can never be acknowledged against a blob that is then removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from registry_core.errors import GCInProgressError, RegistryError, StorageFull
from registry_core.reference import parse_digest
from registry_core.registry import Registry
from registry_core.store.metadata import now

log = logging.getLogger("edge_registry.gc")

HEARTBEAT_INTERVAL = 2.0
"""How often a running GC refreshes `heartbeat_at` (and publishes its counters)."""
HEARTBEAT_STALE = 30.0
"""A 'running' row whose heartbeat is older than this belongs to a dead process."""
SWEEP_BATCH = 256
"""Blobs or manifests per write transaction: short, so pushes wait milliseconds at most."""
DETAIL_LIMIT = 1000
"""At most this many deleted items are listed in a run record's details."""

TRIGGERS = ("schedule", "manual", "cli")

PHASE_STARTING = "starting"
PHASE_MARK = "mark"
PHASE_MANIFESTS = "sweep manifests"
PHASE_BLOBS = "sweep blobs"
PHASE_UPLOADS = "purge uploads"
PHASE_DONE = "done"


# ---- the mark, shared by gc, preview and usage -----------------------------------------------


@dataclass(frozen=True)
class MarkResult:
    """Totals of one mark; the detailed sets stay in the connection's temp tables.

    Temp tables (valid until the next `mark` on the same connection):

    * `gc_live(id, grace)`: live manifests; grace=1 when only the grace period keeps them.
    * `gc_ref(digest, grace)`: digests referenced by live manifests (grace=1: only by those
      the grace period keeps).
    * `gc_dead(id)`: manifests to delete (not live).
    * `gc_garbage(digest, size, grace)`: blobs a GC with no grace period would free now;
      grace=1 for those the grace period still protects (so a run keeps them).
    """

    manifests_total: int
    manifests_dead: int
    manifests_kept_grace: int
    blobs_total: int
    blobs_garbage: int
    bytes_garbage: int
    blobs_kept_grace: int
    bytes_kept_grace: int

    @property
    def blobs_collectable(self) -> int:
        return self.blobs_garbage - self.blobs_kept_grace

    @property
    def bytes_collectable(self) -> int:
        return self.bytes_garbage - self.bytes_kept_grace


def mark(
    conn: sqlite3.Connection,
    *,
    delete_untagged: bool,
    cutoff: float | None,
    exclude_manifest: int | None = None,
) -> MarkResult:
    """Compute the live set. Call inside `db.read()` (one snapshot) or `db.write()`.

    `cutoff`: manifests created and blobs touched at or after it are kept (None: no grace).
    `exclude_manifest`: a manifest id treated as already deleted, with its tags (the delete
    preview).
    """
    x = exclude_manifest if exclude_manifest is not None else -1
    for table in ("gc_roots", "gc_edges", "gc_live", "gc_ref", "gc_dead", "gc_garbage"):
        conn.execute(f"DROP TABLE IF EXISTS temp.{table}")
    conn.execute("CREATE TEMP TABLE gc_roots(id INTEGER PRIMARY KEY, grace INTEGER NOT NULL)")
    conn.execute("CREATE TEMP TABLE gc_edges(src INTEGER NOT NULL, dst INTEGER NOT NULL)")
    conn.execute("CREATE TEMP TABLE gc_live(id INTEGER PRIMARY KEY, grace INTEGER NOT NULL)")
    conn.execute(
        "CREATE TEMP TABLE gc_ref(digest TEXT PRIMARY KEY, grace INTEGER NOT NULL) WITHOUT ROWID"
    )
    conn.execute("CREATE TEMP TABLE gc_dead(id INTEGER PRIMARY KEY)")
    conn.execute(
        "CREATE TEMP TABLE gc_garbage(digest TEXT PRIMARY KEY, size INTEGER NOT NULL, "
        "grace INTEGER NOT NULL) WITHOUT ROWID"
    )
    # Edges: index -> child, subject -> referrer; both inside one repository.
    conn.execute(
        "INSERT INTO gc_edges(src, dst) "
        "SELECT mc.parent_id, c.id FROM manifest_children mc "
        "JOIN manifests p ON p.id = mc.parent_id "
        "JOIN manifests c ON c.repository_id = p.repository_id AND c.digest = mc.child_digest "
        "WHERE mc.parent_id != ?1 AND c.id != ?1 "
        "UNION ALL "
        "SELECT s.id, r.id FROM manifests r "
        "JOIN manifests s ON s.repository_id = r.repository_id AND s.digest = r.subject "
        "WHERE r.subject IS NOT NULL AND r.id != ?1 AND s.id != ?1",
        (x,),
    )
    conn.execute("CREATE INDEX temp.gc_edges_src ON gc_edges(src)")
    # Roots without grace: tagged manifests, and untagged non-referrers unless delete_untagged.
    conn.execute(
        "INSERT OR IGNORE INTO gc_roots(id, grace) SELECT manifest_id, 0 FROM tags "
        "WHERE manifest_id != ?",
        (x,),
    )
    if not delete_untagged:
        conn.execute(
            "INSERT OR IGNORE INTO gc_roots(id, grace) SELECT id, 0 FROM manifests "
            "WHERE subject IS NULL AND id != ?",
            (x,),
        )
    _closure(conn, grace=0)
    if cutoff is not None:
        # Manifests younger than the grace period are roots too (they and what they hold).
        conn.execute("DELETE FROM gc_roots")
        conn.execute(
            "INSERT INTO gc_roots(id, grace) SELECT id, 1 FROM manifests "
            "WHERE created_at >= ? AND id != ? AND id NOT IN (SELECT id FROM gc_live)",
            (cutoff, x),
        )
        _closure(conn, grace=1)
    conn.execute(
        "INSERT INTO gc_dead(id) SELECT id FROM manifests WHERE id NOT IN (SELECT id FROM gc_live)"
    )
    conn.execute(
        "INSERT INTO gc_ref(digest, grace) SELECT digest, MIN(grace) FROM ("
        " SELECT mb.digest AS digest, l.grace AS grace FROM gc_live l "
        " JOIN manifest_blobs mb ON mb.manifest_id = l.id "
        " UNION ALL SELECT m.digest, l.grace FROM gc_live l JOIN manifests m ON m.id = l.id"
        ") GROUP BY digest"
    )
    # Garbage with no grace: not referenced by a manifest that lives without grace.
    # grace=1: the grace period still protects it (young blob, or held by a young manifest).
    conn.execute(
        "INSERT INTO gc_garbage(digest, size, grace) "
        "SELECT b.digest, b.size, "
        " CASE WHEN r.grace = 1 OR (?1 IS NOT NULL AND b.touched_at >= ?1) THEN 1 ELSE 0 END "
        "FROM blobs b LEFT JOIN gc_ref r ON r.digest = b.digest "
        "WHERE r.digest IS NULL OR r.grace = 1",
        (cutoff,),
    )
    row = conn.execute(
        "SELECT (SELECT COUNT(*) FROM manifests), (SELECT COUNT(*) FROM gc_dead), "
        "(SELECT COUNT(*) FROM gc_live WHERE grace = 1), (SELECT COUNT(*) FROM blobs), "
        "(SELECT COUNT(*) FROM gc_garbage), (SELECT COALESCE(SUM(size), 0) FROM gc_garbage), "
        "(SELECT COUNT(*) FROM gc_garbage WHERE grace = 1), "
        "(SELECT COALESCE(SUM(size), 0) FROM gc_garbage WHERE grace = 1)"
    ).fetchone()
    return MarkResult(*(int(v) for v in row))


def _closure(conn: sqlite3.Connection, grace: int) -> None:
    """Add everything reachable from gc_roots to gc_live (already-live nodes stop the walk)."""
    conn.execute(
        "INSERT OR IGNORE INTO gc_live(id, grace) "
        "WITH RECURSIVE reach(id) AS ("
        " SELECT id FROM gc_roots "
        " UNION SELECT e.dst FROM gc_edges e JOIN reach ON e.src = reach.id "
        " WHERE e.dst NOT IN (SELECT id FROM gc_live)"
        ") SELECT id, ? FROM reach",
        (grace,),
    )


# ---- run records and events ------------------------------------------------------------------


@dataclass
class RunRecord:
    """One GC run, as kept in the `gc_runs` table."""

    id: int
    trigger: str
    dry_run: bool
    delete_untagged: bool
    grace_period_seconds: float
    owner: str
    started_at: float
    finished_at: float | None
    heartbeat_at: float
    status: str
    phase: str
    cancel_requested: bool = False
    manifests_scanned: int = 0
    manifests_deleted: int = 0
    manifests_kept_grace: int = 0
    blobs_scanned: int = 0
    blobs_deleted: int = 0
    blobs_kept_grace: int = 0
    uploads_purged: int = 0
    bytes_freed: int = 0
    errors: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_seconds(self) -> float:
        end = self.finished_at if self.finished_at is not None else now()
        return max(0.0, end - self.started_at)

    @property
    def running(self) -> bool:
        return self.status == "running"

    def to_json(self, include_details: bool = True) -> dict[str, Any]:
        data = asdict(self)
        data["duration_seconds"] = round(self.duration_seconds, 3)
        if not include_details:
            data.pop("details")
        return data

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunRecord:
        keys = row.keys()
        values: dict[str, Any] = {k: row[k] for k in keys}
        values["dry_run"] = bool(values["dry_run"])
        values["delete_untagged"] = bool(values["delete_untagged"])
        values["cancel_requested"] = bool(values["cancel_requested"])
        values["errors"] = json.loads(values["errors"] or "[]")
        values["details"] = json.loads(values["details"] or "{}")
        return cls(**values)


@dataclass(frozen=True)
class GCEvent:
    """Live progress of a run: sent to `on_event` and to every subscriber."""

    run_id: int
    phase: str
    done: int
    total: int
    bytes_freed: int
    message: str = ""
    """A log line, when there is one to show."""
    status: str = "running"


class GCCancelled(Exception):
    """Raised inside a run when a cancel was requested; the run ends 'cancelled'."""


_COUNTERS = (
    "manifests_scanned",
    "manifests_deleted",
    "manifests_kept_grace",
    "blobs_scanned",
    "blobs_deleted",
    "blobs_kept_grace",
    "uploads_purged",
    "bytes_freed",
)


class _Run:
    """State of the run in progress in this process."""

    def __init__(self, record: RunRecord, on_event: Callable[[GCEvent], None] | None) -> None:
        self.record = record
        self.on_event = on_event
        self.cancel = threading.Event()
        self.lock = threading.Lock()
        self.deleted_manifests: list[dict[str, str]] = []
        self.deleted_blobs: list[dict[str, Any]] = []
        self.purged_uploads: list[str] = []


# ---- the collector ---------------------------------------------------------------------------


class GarbageCollector:
    """Runs GC over one registry; one run at a time across every process on the data dir."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._subscribers: list[Callable[[GCEvent], None]] = []
        self._sub_lock = threading.Lock()
        self._run: _Run | None = None
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._heartbeat_thread: threading.Thread | None = None
        self.after_run: list[Callable[[RunRecord], None]] = []
        """Called after each finished run that deleted something (usage samples)."""

    # ---- public API --------------------------------------------------------------------------

    def run(
        self,
        trigger: str = "manual",
        dry_run: bool = False,
        delete_untagged: bool | None = None,
        grace_period: float | None = None,
        on_event: Callable[[GCEvent], None] | None = None,
    ) -> RunRecord:
        """One complete run; blocks until it ends. GCInProgressError if another one runs."""
        if trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}")
        cfg = self.registry.config.gc
        du = cfg.delete_untagged if delete_untagged is None else delete_untagged
        grace = float(cfg.grace_period_seconds if grace_period is None else grace_period)
        if grace < 0:
            raise ValueError("grace period must not be negative")
        self.registry.ballast.release_if_low()  # a full volume: room for the WAL
        record = self._acquire(trigger, dry_run, du, grace)
        run = _Run(record, on_event)
        self._run = run
        self._ensure_heartbeat()
        try:
            self._execute(run)
            record.status = "succeeded"
        except GCCancelled:
            record.status = "cancelled"
            self._log(run, "run cancelled; the store is consistent")
        except Exception as exc:  # recorded in the run record (status 'failed')
            record.status = "failed"
            record.errors.append(f"{type(exc).__name__}: {exc}")
            log.exception("gc run %s failed", record.id)
        finally:
            record.finished_at = now()
            record.phase = PHASE_DONE
            self._run = None
            self._finish(run)
            self._emit(run, PHASE_DONE, 1, 1, self._summary(record), status=record.status)
        if not record.dry_run and record.status != "failed":
            from registry_core.usage import record_sample

            try:
                record_sample(self.registry, "gc")
            except (sqlite3.Error, StorageFull):
                log.exception("could not record a usage sample after gc")
            self.registry.fill_ballast()
            for hook in list(self.after_run):
                try:
                    hook(record)
                except Exception:
                    log.exception("after-run hook failed")
        return record

    def cancel(self, run_id: int | None = None) -> bool:
        """Ask the running run (here or in another process) to stop; True if one was asked."""
        run = self._run
        if run is not None and (run_id is None or run.record.id == run_id):
            run.cancel.set()
        sql = "UPDATE gc_runs SET cancel_requested = 1 WHERE status = 'running'"
        params: tuple[Any, ...] = ()
        if run_id is not None:
            sql += " AND id = ?"
            params = (run_id,)
        with self.registry.db.write() as conn:
            count = conn.execute(sql, params).rowcount
        return count > 0 or run is not None

    def cancel_local(self) -> None:
        """Stop this process's run, if any (on shutdown); no database write."""
        run = self._run
        if run is not None:
            run.cancel.set()

    def current(self) -> RunRecord | None:
        """The run in progress, in this process or another one, or None."""
        run = self._run
        if run is not None:
            with run.lock:
                return RunRecord(**{**asdict(run.record)})
        row = self.registry.db.conn.execute(
            "SELECT * FROM gc_runs WHERE status = 'running' AND heartbeat_at >= ? "
            "ORDER BY id DESC LIMIT 1",
            (now() - HEARTBEAT_STALE,),
        ).fetchone()
        return None if row is None else RunRecord.from_row(row)

    def history(self, limit: int = 50) -> list[RunRecord]:
        rows = self.registry.db.conn.execute(
            "SELECT * FROM gc_runs ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [RunRecord.from_row(r) for r in rows]

    def get(self, run_id: int) -> RunRecord | None:
        row = self.registry.db.conn.execute(
            "SELECT * FROM gc_runs WHERE id = ?", (run_id,)
        ).fetchone()
        return None if row is None else RunRecord.from_row(row)

    def subscribe(self, callback: Callable[[GCEvent], None]) -> Callable[[], None]:
        """Receive every event of runs in this process; returns the unsubscribe function."""
        with self._sub_lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._sub_lock, contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    # ---- lock, heartbeat, record ---------------------------------------------------------------

    def _acquire(self, trigger: str, dry_run: bool, du: bool, grace: float) -> RunRecord:
        with self.registry.db.write() as conn:
            t = now()  # inside the lock: runs' [started, finished] never overlap
            conn.execute(
                "UPDATE gc_runs SET status = 'failed', finished_at = heartbeat_at, "
                "errors = json_insert(errors, '$[#]', 'abandoned: its process stopped "
                "sending heartbeats') WHERE status = 'running' AND heartbeat_at < ?",
                (t - HEARTBEAT_STALE,),
            )
            other = conn.execute(
                "SELECT id, owner, trigger, started_at FROM gc_runs WHERE status = 'running' "
                "ORDER BY id DESC LIMIT 1"
            ).fetchone()
            if other is not None:
                raise GCInProgressError(
                    f"a garbage collection is in progress (run {other['id']}, "
                    f"{other['trigger']}, started {time.ctime(other['started_at'])} "
                    f"by {other['owner']})"
                )
            cur = conn.execute(
                "INSERT INTO gc_runs(trigger, dry_run, delete_untagged, grace_period_seconds, "
                "owner, started_at, heartbeat_at, status, phase) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?)",
                (trigger, int(dry_run), int(du), grace, self.owner, t, t, PHASE_STARTING),
            )
            run_id = int(cur.lastrowid or 0)
        return RunRecord(
            id=run_id, trigger=trigger, dry_run=dry_run, delete_untagged=du,
            grace_period_seconds=grace, owner=self.owner, started_at=t, finished_at=None,
            heartbeat_at=t, status="running", phase=PHASE_STARTING,
        )

    def _ensure_heartbeat(self) -> None:
        # One long-lived thread (and so one database connection) per collector.
        with self._sub_lock:
            if self._heartbeat_thread is None or not self._heartbeat_thread.is_alive():
                self._heartbeat_thread = threading.Thread(
                    target=self._heartbeat, name="gc-heartbeat", daemon=True
                )
                self._heartbeat_thread.start()

    def _heartbeat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_INTERVAL)
            run = self._run
            if run is None:
                continue
            try:
                self._publish(run)
            except (sqlite3.Error, StorageFull):
                log.exception("gc heartbeat failed")

    def _publish(self, run: _Run) -> None:
        """Refresh heartbeat and counters; pick up a cancel requested by another process."""
        with run.lock:
            values = [getattr(run.record, k) for k in _COUNTERS]
            phase = run.record.phase
        with self.registry.db.write() as conn:
            conn.execute(
                f"UPDATE gc_runs SET heartbeat_at = ?, phase = ?, "
                f"{', '.join(f'{k} = ?' for k in _COUNTERS)} WHERE id = ? AND status = 'running'",
                (now(), phase, *values, run.record.id),
            )
            row = conn.execute(
                "SELECT cancel_requested FROM gc_runs WHERE id = ?", (run.record.id,)
            ).fetchone()
        if row is not None and row[0]:
            run.cancel.set()

    def _finish(self, run: _Run) -> None:
        record = run.record
        record.details = {
            "manifests": run.deleted_manifests[:DETAIL_LIMIT],
            "blobs": run.deleted_blobs[:DETAIL_LIMIT],
            "uploads": run.purged_uploads[:DETAIL_LIMIT],
            "truncated": max(
                len(run.deleted_manifests), len(run.deleted_blobs), len(run.purged_uploads)
            ) > DETAIL_LIMIT,
        }
        values = [getattr(record, k) for k in _COUNTERS]
        for attempt in range(5):
            try:
                with self.registry.db.write() as conn:
                    row = conn.execute(
                        "SELECT cancel_requested FROM gc_runs WHERE id = ?", (record.id,)
                    ).fetchone()
                    record.cancel_requested = bool(row and row[0]) or run.cancel.is_set()
                    conn.execute(
                        f"UPDATE gc_runs SET status = ?, phase = ?, finished_at = ?, "
                        f"heartbeat_at = ?, errors = ?, details = ?, "
                        f"{', '.join(f'{k} = ?' for k in _COUNTERS)} WHERE id = ?",
                        (
                            record.status, record.phase, record.finished_at, record.finished_at,
                            json.dumps(record.errors), json.dumps(record.details), *values,
                            record.id,
                        ),
                    )
                return
            except (sqlite3.OperationalError, StorageFull):
                if attempt == 4:
                    raise
                time.sleep(0.5)

    # ---- events --------------------------------------------------------------------------------

    def _emit(
        self, run: _Run, phase: str, done: int, total: int, message: str = "",
        status: str = "running",
    ) -> None:
        event = GCEvent(run.record.id, phase, done, total, run.record.bytes_freed, message, status)
        targets: list[Callable[[GCEvent], None]] = []
        if run.on_event is not None:
            targets.append(run.on_event)
        with self._sub_lock:
            targets.extend(self._subscribers)
        for callback in targets:
            try:
                callback(event)
            except Exception:
                log.exception("gc event callback failed")

    def _log(self, run: _Run, message: str) -> None:
        log.info("gc run %s: %s", run.record.id, message)
        self._emit(run, run.record.phase, 0, 0, message)

    def _phase(self, run: _Run, phase: str, total: int) -> None:
        with run.lock:
            run.record.phase = phase
        self._emit(run, phase, 0, total)

    def _check_cancel(self, run: _Run) -> None:
        if run.cancel.is_set():
            raise GCCancelled()

    @staticmethod
    def _summary(record: RunRecord) -> str:
        verb = "would free" if record.dry_run else "freed"
        return (
            f"{record.status}: {record.manifests_deleted} manifests and {record.blobs_deleted} "
            f"blobs {'to delete' if record.dry_run else 'deleted'}, {verb} "
            f"{record.bytes_freed} bytes; kept by the grace period: "
            f"{record.manifests_kept_grace} manifests, {record.blobs_kept_grace} blobs; "
            f"{record.uploads_purged} abandoned uploads purged"
        )

    # ---- the run itself ------------------------------------------------------------------------

    def _execute(self, run: _Run) -> None:
        record = run.record
        cutoff = record.started_at - record.grace_period_seconds
        db = self.registry.db
        self._log(
            run,
            f"run {record.id} ({record.trigger}{', dry run' if record.dry_run else ''}): "
            f"grace period {record.grace_period_seconds:g} s, delete untagged "
            f"{'on' if record.delete_untagged else 'off'}",
        )
        # Mark in one read snapshot; the sweep re-checks everything under the write lock.
        self._phase(run, PHASE_MARK, 1)
        with db.read() as conn:
            result = mark(conn, delete_untagged=record.delete_untagged, cutoff=cutoff)
            dead = [
                (int(r[0]), int(r[1]), r[2], r[3])
                for r in conn.execute(
                    "SELECT m.id, m.repository_id, r.name, m.digest FROM gc_dead d "
                    "JOIN manifests m ON m.id = d.id JOIN repositories r ON r.id = m.repository_id "
                    "ORDER BY m.id"
                )
            ]
            garbage = [
                (str(r[0]), int(r[1]))
                for r in conn.execute(
                    "SELECT digest, size FROM gc_garbage WHERE grace = 0 ORDER BY digest"
                )
            ]
        with run.lock:
            record.manifests_scanned = result.manifests_total
            record.blobs_scanned = result.blobs_total
            record.manifests_kept_grace = result.manifests_kept_grace
            record.blobs_kept_grace = result.blobs_kept_grace
        self._emit(run, PHASE_MARK, 1, 1)
        self._log(
            run,
            f"marked {result.manifests_total} manifests and {result.blobs_total} blobs: "
            f"{len(dead)} manifests and {len(garbage)} blobs ({result.bytes_collectable} bytes) "
            "are garbage",
        )
        self._check_cancel(run)
        self._sweep_manifests(run, dead, cutoff)
        self._sweep_blobs(run, garbage, cutoff)
        self._purge_orphan_blobs(run, cutoff)
        self._purge_uploads(run)

    def _sweep_manifests(
        self, run: _Run, dead: list[tuple[int, int, str, str]], cutoff: float
    ) -> None:
        record = run.record
        self._phase(run, PHASE_MANIFESTS, len(dead))
        if record.dry_run:
            with run.lock:
                record.manifests_deleted = len(dead)
            run.deleted_manifests = [{"repository": n, "digest": d} for _, _, n, d in dead]
            self._emit(run, PHASE_MANIFESTS, len(dead), len(dead))
            return
        pending = dead
        done = 0
        # Parents before children, subjects before referrers: a manifest still held by an
        # existing index or subject waits for the next pass (or stays, if that one is kept).
        while pending:
            deferred: list[tuple[int, int, str, str]] = []
            progressed = False
            for batch in _chunks(pending, SWEEP_BATCH):
                self._check_cancel(run)
                with self.registry.db.write() as conn:
                    for item in batch:
                        verdict = _manifest_deletable(conn, item[0], record.delete_untagged,
                                                      cutoff)
                        if verdict == "blocked":
                            deferred.append(item)
                            continue
                        done += 1
                        if verdict == "delete":
                            conn.execute("DELETE FROM manifests WHERE id = ?", (item[0],))
                            progressed = True
                            run.deleted_manifests.append(
                                {"repository": item[2], "digest": item[3]}
                            )
                            with run.lock:
                                record.manifests_deleted += 1
                self._emit(run, PHASE_MANIFESTS, done, len(dead))
            if not progressed:
                break
            pending = deferred
        if record.manifests_deleted:
            self._log(run, f"deleted {record.manifests_deleted} manifests")

    def _sweep_blobs(self, run: _Run, garbage: list[tuple[str, int]], cutoff: float) -> None:
        record = run.record
        self._phase(run, PHASE_BLOBS, len(garbage))
        if record.dry_run:
            with run.lock:
                record.blobs_deleted = len(garbage)
                record.bytes_freed = sum(size for _, size in garbage)
            run.deleted_blobs = [{"digest": d, "size": s} for d, s in garbage]
            self._emit(run, PHASE_BLOBS, len(garbage), len(garbage))
            return
        files = self.registry.files
        done = 0
        for batch in _chunks(garbage, SWEEP_BATCH):
            self._check_cancel(run)
            with self.registry.db.write() as conn:
                for digest, _size in batch:
                    done += 1
                    row = conn.execute(
                        "SELECT size FROM blobs b WHERE digest = ?1 AND touched_at < ?2 "
                        "AND NOT EXISTS (SELECT 1 FROM manifest_blobs WHERE digest = ?1) "
                        "AND NOT EXISTS (SELECT 1 FROM manifests WHERE digest = ?1)",
                        (digest, cutoff),
                    ).fetchone()
                    if row is None:
                        continue  # referenced or touched since the mark: keep it
                    try:
                        files.remove(parse_digest(digest))
                    except OSError as exc:
                        record.errors.append(f"could not remove {digest}: {exc}")
                        continue
                    conn.execute("DELETE FROM repository_blobs WHERE digest = ?", (digest,))
                    conn.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
                    run.deleted_blobs.append({"digest": digest, "size": int(row[0])})
                    with run.lock:
                        record.blobs_deleted += 1
                        record.bytes_freed += int(row[0])
            self._emit(run, PHASE_BLOBS, done, len(garbage))
        self.registry._used_cache = (0.0, 0)
        if record.blobs_deleted:
            self._log(
                run, f"deleted {record.blobs_deleted} blobs, {record.bytes_freed} bytes freed"
            )

    def _purge_orphan_blobs(self, run: _Run, cutoff: float) -> None:
        """Blob files with no row, older than the cutoff: left by a power cut or a full volume
        between the rename that put them in place and the commit that would have recorded
        them. Re-checked under the write lock, which that rename and commit also hold."""
        record = run.record
        db, files = self.registry.db, self.registry.files
        known = {str(r[0]) for r in db.conn.execute("SELECT digest FROM blobs")}
        orphans: list[tuple[str, Any, int]] = []
        for path in files.blobs_root.glob("*/*/*"):
            try:
                digest = str(parse_digest(f"{path.parent.parent.name}:{path.name}"))
                st = path.stat()
            except (RegistryError, OSError):
                continue  # not a blob file of ours: leave it alone
            if digest not in known and st.st_mtime < cutoff:
                orphans.append((digest, path, st.st_size))
        for batch in _chunks(orphans, SWEEP_BATCH):
            self._check_cancel(run)
            with db.write() as conn:
                for digest, path, size in batch:
                    if conn.execute("SELECT 1 FROM blobs WHERE digest = ?", (digest,)).fetchone():
                        continue
                    if not record.dry_run:
                        with contextlib.suppress(FileNotFoundError):
                            path.unlink()
                    run.deleted_blobs.append({"digest": digest, "size": size, "orphan": True})
                    with run.lock:
                        record.blobs_deleted += 1
                        record.bytes_freed += size
        if orphans:
            self._log(run, f"{len(orphans)} blob files without a record (orphans) removed")

    def _purge_uploads(self, run: _Run) -> None:
        record = run.record
        max_age = self.registry.config.gc.upload_max_age_seconds
        limit = record.started_at - max_age
        db = self.registry.db
        stale = [
            str(r[0])
            for r in db.conn.execute("SELECT id FROM uploads WHERE updated_at < ?", (limit,))
        ]
        self._phase(run, PHASE_UPLOADS, len(stale))
        if record.dry_run:
            with run.lock:
                record.uploads_purged = len(stale)
            run.purged_uploads = stale
            return
        files = self.registry.files
        for batch in _chunks(stale, SWEEP_BATCH):
            self._check_cancel(run)
            with db.write() as conn:
                for upload_id in batch:
                    cur = conn.execute(
                        "DELETE FROM uploads WHERE id = ? AND updated_at < ?", (upload_id, limit)
                    )
                    if cur.rowcount:
                        files.remove_upload(upload_id)
                        run.purged_uploads.append(upload_id)
                        with run.lock:
                            record.uploads_purged += 1
        # Files in uploads/ with no session row (a crash between file and row) and old.
        known = {str(r[0]) for r in db.conn.execute("SELECT id FROM uploads")}
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(files.uploads_root):
                with contextlib.suppress(OSError):
                    if entry.name in known or entry.stat().st_mtime >= limit:
                        continue
                    with db.write() as conn:
                        live = conn.execute(
                            "SELECT 1 FROM uploads WHERE id = ?", (entry.name,)
                        ).fetchone()
                        if live is None:
                            os.unlink(entry.path)
                            with run.lock:
                                record.uploads_purged += 1
        if record.uploads_purged:
            self._log(run, f"purged {record.uploads_purged} abandoned uploads")


def _manifest_deletable(
    conn: sqlite3.Connection, manifest_id: int, delete_untagged: bool, cutoff: float
) -> str:
    """'delete', 'keep' or 'blocked' (a parent or subject that may go first still exists)."""
    row = conn.execute(
        "SELECT repository_id, digest, subject, created_at FROM manifests WHERE id = ?",
        (manifest_id,),
    ).fetchone()
    if row is None:
        return "keep"  # already gone
    repo_id, digest, subject, created_at = row
    if created_at >= cutoff:
        return "keep"
    if conn.execute("SELECT 1 FROM tags WHERE manifest_id = ?", (manifest_id,)).fetchone():
        return "keep"
    parent = conn.execute(
        "SELECT p.id FROM manifest_children mc JOIN manifests p ON p.id = mc.parent_id "
        "WHERE mc.child_digest = ? AND p.repository_id = ? LIMIT 1",
        (digest, repo_id),
    ).fetchone()
    if parent is not None:
        return "blocked"
    if subject is not None:
        held = conn.execute(
            "SELECT 1 FROM manifests WHERE repository_id = ? AND digest = ?", (repo_id, subject)
        ).fetchone()
        return "blocked" if held is not None else "delete"
    return "delete" if delete_untagged else "keep"


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
