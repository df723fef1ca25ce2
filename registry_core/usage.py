"""Storage usage, exact and fast: answered from SQLite in one snapshot, never by walking the disk.

* capacity: the volume that holds the data dir, or the quota if smaller; free and the reserve
  of the low-space guard (and how often it has refused uploads);
* used: every stored content file (layers, configs, manifest bodies) counted once;
* per repository: total bytes its manifests hold, the exclusive part (held by no other
  repository) and the shared part;
* untagged: bytes only untagged manifests hold (not reachable from any tag);
* reclaimable: what a GC with no grace period would free now (the same `mark` as the GC), and
  how much of it the grace period still protects.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from registry_core.errors import StorageFull
from registry_core.gc import mark
from registry_core.registry import Registry
from registry_core.store.metadata import now

log = logging.getLogger("edge_registry.usage")

SAMPLE_DEBOUNCE_SECONDS = 5.0


@dataclass(frozen=True)
class RepositoryUsage:
    name: str
    total_bytes: int
    exclusive_bytes: int
    shared_bytes: int
    tags: int
    manifests: int
    untagged_manifests: int
    untagged_bytes: int
    """Bytes of this repository's untagged manifests that no tagged manifest holds."""


@dataclass(frozen=True)
class UsageReport:
    taken_at: float
    capacity_bytes: int
    used_bytes: int
    free_bytes: int
    reserve_bytes: int
    quota_bytes: int
    low_space: bool
    low_space_refusals: int
    last_refusal_at: float | None
    uploads_in_progress: int
    uploads_bytes: int
    blobs: int
    manifests: int
    tags: int
    untagged_manifests: int
    untagged_bytes: int
    reclaimable_bytes: int
    reclaimable_blobs: int
    reclaimable_in_grace_bytes: int
    grace_period_seconds: float
    delete_untagged: bool
    repositories: list[RepositoryUsage] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UsageSample:
    taken_at: float
    reason: str
    used_bytes: int
    capacity_bytes: int
    free_bytes: int
    reclaimable_bytes: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def usage_report(registry: Registry) -> UsageReport:
    """The full report; one read snapshot of the database, a few set operations."""
    cfg = registry.config.gc
    t = now()
    with registry.db.read() as conn:
        used, blob_count = conn.execute(
            "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM blobs"
        ).fetchone()
        uploads, uploads_bytes = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM uploads"
        ).fetchone()
        manifest_count = conn.execute("SELECT COUNT(*) FROM manifests").fetchone()[0]
        tag_count = conn.execute("SELECT COUNT(*) FROM tags").fetchone()[0]
        repos = repository_sizes(conn)
        untagged_total, untagged_by_repo, untagged_count = _untagged(conn)
        reclaim = mark(
            conn, delete_untagged=cfg.delete_untagged, cutoff=t - cfg.grace_period_seconds
        )
        refusals = _refusals(conn)
    cap = registry.capacity()
    repositories = [
        RepositoryUsage(
            name=name,
            total_bytes=total,
            exclusive_bytes=exclusive,
            shared_bytes=total - exclusive,
            tags=tags,
            manifests=manifests,
            untagged_manifests=untagged_by_repo.get(repo_id, (0, 0))[0],
            untagged_bytes=untagged_by_repo.get(repo_id, (0, 0))[1],
        )
        for repo_id, name, total, exclusive, tags, manifests in repos
        if manifests  # like the catalog: a repository with no manifests left is not listed
    ]
    return UsageReport(
        taken_at=t,
        capacity_bytes=cap.capacity_bytes,
        used_bytes=int(used),
        free_bytes=cap.free_bytes,
        reserve_bytes=cap.reserve_bytes,
        quota_bytes=cap.quota_bytes,
        low_space=cap.low,
        low_space_refusals=refusals[0],
        last_refusal_at=refusals[1],
        uploads_in_progress=int(uploads),
        uploads_bytes=int(uploads_bytes),
        blobs=int(blob_count),
        manifests=int(manifest_count),
        tags=int(tag_count),
        untagged_manifests=untagged_count,
        untagged_bytes=untagged_total,
        reclaimable_bytes=reclaim.bytes_garbage,
        reclaimable_blobs=reclaim.blobs_garbage,
        reclaimable_in_grace_bytes=reclaim.bytes_kept_grace,
        grace_period_seconds=float(cfg.grace_period_seconds),
        delete_untagged=cfg.delete_untagged,
        repositories=repositories,
    )


def repository_sizes(conn: sqlite3.Connection) -> list[tuple[int, str, int, int, int, int]]:
    """(id, name, total, exclusive, tags, manifests) per repository, by name.

    One row per (digest, repository) that a manifest there references (config, layers, the
    manifest body), keyed by digest first, so that counting the repositories of each digest
    is an ordered scan: a digest is exclusive where that count is 1."""
    conn.execute("DROP TABLE IF EXISTS temp.usage_repo_ref")
    conn.execute(
        "CREATE TEMP TABLE usage_repo_ref(digest TEXT NOT NULL, repository_id INTEGER NOT NULL, "
        "size INTEGER NOT NULL, PRIMARY KEY (digest, repository_id)) WITHOUT ROWID"
    )
    conn.execute(
        "INSERT OR IGNORE INTO usage_repo_ref(digest, repository_id, size) "
        "SELECT x.digest, x.repo, b.size FROM ("
        " SELECT mb.digest AS digest, m.repository_id AS repo FROM manifests m "
        " JOIN manifest_blobs mb ON mb.manifest_id = m.id "
        " UNION ALL SELECT digest, repository_id FROM manifests"
        ") x JOIN blobs b ON b.digest = x.digest"
    )
    rows = conn.execute(
        "SELECT r.id, r.name, COALESCE(s.total, 0), COALESCE(s.exclusive, 0), "
        " (SELECT COUNT(*) FROM tags t WHERE t.repository_id = r.id), "
        " (SELECT COUNT(*) FROM manifests m WHERE m.repository_id = r.id) "
        "FROM repositories r LEFT JOIN ("
        " SELECT repository_id AS repo, SUM(size) AS total, "
        "  SUM(CASE WHEN n = 1 THEN size ELSE 0 END) AS exclusive FROM ("
        "  SELECT repository_id, size, COUNT(*) OVER (PARTITION BY digest) AS n "
        "  FROM usage_repo_ref) GROUP BY repository_id"
        ") s ON s.repo = r.id ORDER BY r.name"
    ).fetchall()
    return [(int(a), str(b), int(c), int(d), int(e), int(f)) for a, b, c, d, e, f in rows]


def _untagged(conn: sqlite3.Connection) -> tuple[int, dict[int, tuple[int, int]], int]:
    """Bytes only untagged manifests hold: in total, and (manifests, bytes) per repository."""
    # Roots = tags only: gc_live is then everything reachable from a tag.
    mark(conn, delete_untagged=True, cutoff=None)
    count = int(conn.execute("SELECT COUNT(*) FROM gc_dead").fetchone()[0])
    total = int(
        conn.execute(
            "SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.digest NOT IN "
            "(SELECT digest FROM gc_ref) AND b.digest IN ("
            " SELECT mb.digest FROM gc_dead d JOIN manifest_blobs mb ON mb.manifest_id = d.id "
            " UNION SELECT m.digest FROM gc_dead d JOIN manifests m ON m.id = d.id)"
        ).fetchone()[0]
    )
    per_repo: dict[int, tuple[int, int]] = {}
    for repo_id, n in conn.execute(
        "SELECT m.repository_id, COUNT(*) FROM gc_dead d JOIN manifests m ON m.id = d.id "
        "GROUP BY m.repository_id"
    ):
        per_repo[int(repo_id)] = (int(n), 0)
    for repo_id, size in conn.execute(
        "SELECT x.repository_id, SUM(b.size) FROM ("
        " SELECT m.repository_id AS repository_id, mb.digest AS digest FROM gc_dead d "
        " JOIN manifests m ON m.id = d.id JOIN manifest_blobs mb ON mb.manifest_id = d.id "
        " UNION SELECT m.repository_id, m.digest FROM gc_dead d JOIN manifests m ON m.id = d.id"
        ") x JOIN blobs b ON b.digest = x.digest "
        "WHERE x.digest NOT IN (SELECT digest FROM gc_ref) GROUP BY x.repository_id"
    ):
        n, _ = per_repo.get(int(repo_id), (0, 0))
        per_repo[int(repo_id)] = (n, int(size))
    return total, per_repo, count


def _refusals(conn: sqlite3.Connection) -> tuple[int, float | None]:
    rows = dict(
        conn.execute(
            "SELECT key, value FROM meta WHERE key IN "
            "('low_space_refusals', 'low_space_last_refusal')"
        ).fetchall()
    )
    last = rows.get("low_space_last_refusal")
    return int(rows.get("low_space_refusals", 0)), float(last) if last else None


# ---- samples -----------------------------------------------------------------------------------


def record_sample(registry: Registry, reason: str) -> UsageSample:
    """Store one point of the usage trend (after a push burst, a delete, a GC run)."""
    cfg = registry.config.gc
    t = now()
    with registry.db.read() as conn:
        used = int(conn.execute("SELECT COALESCE(SUM(size), 0) FROM blobs").fetchone()[0])
        reclaim = mark(
            conn, delete_untagged=cfg.delete_untagged, cutoff=t - cfg.grace_period_seconds
        )
    cap = registry.capacity()
    sample = UsageSample(t, reason, used, cap.capacity_bytes, cap.free_bytes,
                         reclaim.bytes_garbage)
    with registry.db.write() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO usage_samples(taken_at, reason, used_bytes, capacity_bytes, "
            "free_bytes, reclaimable_bytes) VALUES (?, ?, ?, ?, ?, ?)",
            (sample.taken_at, sample.reason, sample.used_bytes, sample.capacity_bytes,
             sample.free_bytes, sample.reclaimable_bytes),
        )
    return sample


def usage_history(registry: Registry, limit: int = 500) -> list[UsageSample]:
    """The last `limit` samples, oldest first (ready to draw)."""
    rows = registry.db.conn.execute(
        "SELECT taken_at, reason, used_bytes, capacity_bytes, free_bytes, reclaimable_bytes "
        "FROM usage_samples ORDER BY taken_at DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        UsageSample(float(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]))
        for r in reversed(rows)
    ]


class UsageSampler:
    """Debounced samples: many notifications within `delay` seconds make one sample.

    Set as `Registry.on_change` by the service; the sample is taken on a timer thread, off the
    request path.
    """

    def __init__(self, registry: Registry, delay: float = SAMPLE_DEBOUNCE_SECONDS) -> None:
        self.registry = registry
        self.delay = delay
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._reasons: set[str] = set()
        self._closed = False

    def notify(self, reason: str) -> None:
        with self._lock:
            if self._closed:
                return
            self._reasons.add(reason)
            if self._timer is None:
                self._timer = threading.Timer(self.delay, self._fire)
                self._timer.daemon = True
                self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            reasons, self._reasons = self._reasons, set()
            self._timer = None
        reason = "delete" if "delete" in reasons else (sorted(reasons) or ["push"])[0]
        try:
            record_sample(self.registry, reason)
        except (sqlite3.Error, StorageFull):
            log.exception("could not record a usage sample")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
