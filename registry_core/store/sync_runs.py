"""Sync run records and the sync state.

Runs are kept like GC runs: one 'running' row at a time (the claim in gc_lock.py, with a
heartbeat; the schema's partial unique index refuses a second one), live counters, cancel
requests from other processes, and history. The sync state lives in `meta`: the end of the
last successful run, and the local change mark pushed up to the parent by the last ReadWrite
sync. Writes belong inside `Store.exclusive()`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from registry_core.store.base import Queries
from registry_core.store.metadata import now
from registry_core.store.run_view import RunView

TRIGGERS = ("manual", "schedule", "stage")
STATUSES = ("running", "succeeded", "failed", "cancelled", "stopped")
"""'stopped': the sync window closed; the next window resumes the work."""

COUNTERS = (
    "repositories",
    "manifests_copied",
    "blobs_copied",
    "bytes_copied",
    "manifests_pushed",
)
"""The counter columns of a run, in order."""

_LAST_SUCCESS = "sync_last_success"
_PUSH_MARK = "sync_push_mark"


@dataclass
class SyncRunRecord(RunView):
    """One sync run, as kept in the `sync_runs` table (the run in progress updates its own copy
    and saves it)."""

    id: int
    trigger: str
    owner: str
    started_at: float
    finished_at: float | None
    heartbeat_at: float
    status: str
    cancel_requested: bool = False
    repositories: int = 0
    manifests_copied: int = 0
    blobs_copied: int = 0
    bytes_copied: int = 0
    manifests_pushed: int = 0
    errors: list[str] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


_COLUMNS = (
    "id, trigger, owner, started_at, finished_at, heartbeat_at, status, cancel_requested, "
    + ", ".join(COUNTERS)
    + ", errors, conflicts, details"
)
_SET_COUNTERS = ", ".join(f"{k} = ?" for k in COUNTERS)


def _record(row: Any) -> SyncRunRecord:
    values = list(row)
    values[7] = bool(values[7])  # cancel_requested
    values[-3] = json.loads(values[-3] or "[]")
    values[-2] = json.loads(values[-2] or "[]")
    values[-1] = json.loads(values[-1] or "{}")
    return SyncRunRecord(*values)


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")


class SyncRuns(Queries):
    def create(self, trigger: str, owner: str, at: float | None = None) -> SyncRunRecord:
        """A new 'running' run. Claim it through gc_lock.RunClaim (one run at a time); a
        second running row is refused by the schema (StoreError)."""
        _check(trigger, TRIGGERS, "a sync trigger")
        t = now() if at is None else at
        cur = self._conn.execute(
            "INSERT INTO sync_runs(trigger, owner, started_at, heartbeat_at, status) "
            "VALUES (?, ?, ?, ?, 'running')",
            (trigger, owner, t, t),
        )
        return SyncRunRecord(
            id=int(cur.lastrowid or 0), trigger=trigger, owner=owner, started_at=t,
            finished_at=None, heartbeat_at=t, status="running",
        )

    def save(self, record: SyncRunRecord) -> None:
        """Write the run's status, counters, errors, conflicts and details. A running record
        refreshes the heartbeat too (and is written only while its row is still running: a
        run failed as abandoned stays failed); a finished one ends the run, and a succeeded
        one becomes the last successful sync."""
        _check(record.status, STATUSES, "a sync run status")
        values = [getattr(record, k) for k in COUNTERS]
        texts = (json.dumps(record.errors), json.dumps(record.conflicts),
                 json.dumps(record.details))
        if record.running:
            record.heartbeat_at = now()
            self._conn.execute(
                f"UPDATE sync_runs SET heartbeat_at = ?, {_SET_COUNTERS}, errors = ?, "
                "conflicts = ?, details = ? WHERE id = ? AND status = 'running'",
                (record.heartbeat_at, *values, *texts, record.id),
            )
            return
        if record.finished_at is None:
            record.finished_at = now()
        record.heartbeat_at = record.finished_at
        self._conn.execute(
            f"UPDATE sync_runs SET status = ?, finished_at = ?, heartbeat_at = ?, "
            f"{_SET_COUNTERS}, errors = ?, conflicts = ?, details = ? WHERE id = ?",
            (record.status, record.finished_at, record.finished_at, *values, *texts, record.id),
        )
        if record.status == "succeeded":
            self._set_meta_max(_LAST_SUCCESS, record.finished_at)

    def heartbeat(self, run_id: int, at: float | None = None) -> bool:
        """Refresh a running run's heartbeat; False when the run is no longer running (it
        ended, or another process failed it as abandoned)."""
        cur = self._conn.execute(
            "UPDATE sync_runs SET heartbeat_at = ? WHERE id = ? AND status = 'running'",
            (now() if at is None else at, run_id),
        )
        return cur.rowcount > 0

    def fail_abandoned(self, stale_before: float) -> int:
        """Runs whose process stopped sending heartbeats before `stale_before` failed."""
        cur = self._conn.execute(
            "UPDATE sync_runs SET status = 'failed', finished_at = heartbeat_at, "
            "errors = json_insert(errors, '$[#]', 'abandoned: its process stopped "
            "sending heartbeats') WHERE status = 'running' AND heartbeat_at < ?",
            (stale_before,),
        )
        return int(cur.rowcount)

    def running(self, heartbeat_since: float | None = None) -> SyncRunRecord | None:
        """The 'running' run (with a heartbeat since the given time, if one is given)."""
        sql = f"SELECT {_COLUMNS} FROM sync_runs WHERE status = 'running'"
        params: tuple[float, ...] = ()
        if heartbeat_since is not None:
            sql += " AND heartbeat_at >= ?"
            params = (heartbeat_since,)
        row = self._conn.execute(sql + " ORDER BY id DESC LIMIT 1", params).fetchone()
        return None if row is None else _record(row)

    def request_cancel(self, run_id: int | None = None) -> int:
        """Flag the running run (or that one): how many were flagged."""
        sql = "UPDATE sync_runs SET cancel_requested = 1 WHERE status = 'running'"
        params: tuple[int, ...] = ()
        if run_id is not None:
            sql += " AND id = ?"
            params = (run_id,)
        return int(self._conn.execute(sql, params).rowcount)

    def cancel_requested(self, run_id: int) -> bool:
        row = self._conn.execute(
            "SELECT cancel_requested FROM sync_runs WHERE id = ?", (run_id,)
        ).fetchone()
        return bool(row and row[0])

    def recent(self, limit: int = 50) -> list[SyncRunRecord]:
        """The newest runs first."""
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM sync_runs ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_record(r) for r in rows]

    def get(self, run_id: int) -> SyncRunRecord | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM sync_runs WHERE id = ?", (run_id,)
        ).fetchone()
        return None if row is None else _record(row)

    # ---- the sync state ---------------------------------------------------------------------

    def last_success(self) -> float | None:
        """When the last successful sync ended, or None if none has."""
        return self._meta_float(_LAST_SUCCESS)

    def push_mark(self) -> float | None:
        """The local change mark pushed up to the parent by the last ReadWrite sync, or None
        if nothing was ever pushed."""
        return self._meta_float(_PUSH_MARK)

    def set_push_mark(self, mark: float) -> None:
        self._conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (_PUSH_MARK, repr(float(mark))),
        )

    def _meta_float(self, key: str) -> float | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else float(row[0])

    def _set_meta_max(self, key: str, value: float) -> None:
        """The larger of the stored value and `value`: the last success never moves back."""
        self._conn.execute(
            "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET "
            "value = CASE WHEN CAST(value AS REAL) >= CAST(?2 AS REAL) THEN value "
            "ELSE excluded.value END",
            (key, repr(float(value))),
        )
