"""GC run records: the cross-process run lock (one 'running' row with a fresh heartbeat),
live counters, cancel requests and history."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from registry_core.store.base import Queries
from registry_core.store.run_view import RunView

COUNTERS = (
    "manifests_scanned",
    "manifests_deleted",
    "manifests_kept_grace",
    "blobs_scanned",
    "blobs_deleted",
    "blobs_kept_grace",
    "uploads_purged",
    "bytes_freed",
)
"""The counter columns of a run, in order."""


@dataclass
class RunRecord(RunView):
    """One GC run, as kept in the `gc_runs` table (the run in progress updates its own copy)."""

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


_COLUMNS = (
    "id, trigger, dry_run, delete_untagged, grace_period_seconds, owner, started_at, "
    "finished_at, heartbeat_at, status, phase, cancel_requested, "
    + ", ".join(COUNTERS)
    + ", errors, details"
)
_SET_COUNTERS = ", ".join(f"{k} = ?" for k in COUNTERS)


def _run(row: Any) -> RunRecord:
    values = list(row)
    for i in (2, 3, 11):  # dry_run, delete_untagged, cancel_requested
        values[i] = bool(values[i])
    values[-2] = json.loads(values[-2] or "[]")
    values[-1] = json.loads(values[-1] or "{}")
    return RunRecord(*values)


class GCRuns(Queries):
    def fail_abandoned(self, stale_before: float) -> None:
        """Runs whose process stopped sending heartbeats before `stale_before` failed."""
        self._conn.execute(
            "UPDATE gc_runs SET status = 'failed', finished_at = heartbeat_at, "
            "errors = json_insert(errors, '$[#]', 'abandoned: its process stopped "
            "sending heartbeats') WHERE status = 'running' AND heartbeat_at < ?",
            (stale_before,),
        )

    def running(self, heartbeat_since: float | None = None) -> RunRecord | None:
        """The newest 'running' run (with a heartbeat since the given time, if one is)."""
        sql = f"SELECT {_COLUMNS} FROM gc_runs WHERE status = 'running'"
        params: tuple[float, ...] = ()
        if heartbeat_since is not None:
            sql += " AND heartbeat_at >= ?"
            params = (heartbeat_since,)
        row = self._conn.execute(sql + " ORDER BY id DESC LIMIT 1", params).fetchone()
        return None if row is None else _run(row)

    def start(
        self, trigger: str, dry_run: bool, delete_untagged: bool, grace: float, owner: str,
        at: float, phase: str,
    ) -> int:
        cur = self._conn.execute(
            "INSERT INTO gc_runs(trigger, dry_run, delete_untagged, grace_period_seconds, "
            "owner, started_at, heartbeat_at, status, phase) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?)",
            (trigger, int(dry_run), int(delete_untagged), grace, owner, at, at, phase),
        )
        return int(cur.lastrowid or 0)

    def heartbeat(self, run_id: int, at: float, phase: str, counters: list[int]) -> None:
        """Refresh a running run's heartbeat, phase and counters (in COUNTERS order)."""
        self._conn.execute(
            f"UPDATE gc_runs SET heartbeat_at = ?, phase = ?, {_SET_COUNTERS} "
            "WHERE id = ? AND status = 'running'",
            (at, phase, *counters, run_id),
        )

    def cancel_requested(self, run_id: int) -> bool:
        row = self._conn.execute(
            "SELECT cancel_requested FROM gc_runs WHERE id = ?", (run_id,)
        ).fetchone()
        return bool(row and row[0])

    def request_cancel(self, run_id: int | None = None) -> int:
        """Flag the running run (or that one): how many were flagged."""
        sql = "UPDATE gc_runs SET cancel_requested = 1 WHERE status = 'running'"
        params: tuple[int, ...] = ()
        if run_id is not None:
            sql += " AND id = ?"
            params = (run_id,)
        return int(self._conn.execute(sql, params).rowcount)

    def finish(
        self, run_id: int, status: str, phase: str, finished_at: float, errors: list[str],
        details: dict[str, Any], counters: list[int],
    ) -> None:
        self._conn.execute(
            f"UPDATE gc_runs SET status = ?, phase = ?, finished_at = ?, heartbeat_at = ?, "
            f"errors = ?, details = ?, {_SET_COUNTERS} WHERE id = ?",
            (status, phase, finished_at, finished_at, json.dumps(errors), json.dumps(details),
             *counters, run_id),
        )

    def history(self, limit: int) -> list[RunRecord]:
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM gc_runs ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_run(r) for r in rows]

    def count_by_status(self) -> dict[str, int]:
        """How many runs ended (or run) in each status, for monitoring."""
        rows = self._conn.execute("SELECT status, COUNT(*) FROM gc_runs GROUP BY status")
        return {str(r[0]): int(r[1]) for r in rows}

    def get(self, run_id: int) -> RunRecord | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM gc_runs WHERE id = ?", (run_id,)
        ).fetchone()
        return None if row is None else _run(row)
