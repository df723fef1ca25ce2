"""The mark, shared by the GC, the delete preview and the usage report, so the three can
never disagree about what is garbage; and the same rule applied to one manifest (the sweep's
re-check under the write lock). The rule itself is in graph.py.

Live manifests are the closure of the roots (tagged, pinned by a stage, ...) over the edges.
Live blobs are the configs and layers of live manifests plus the bodies of live manifests;
every other blob, last touched before the cutoff, is garbage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from registry_core.store.base import Queries
from registry_core.store.graph import ROOT, YOUNG, edges
from registry_core.store.metadata import now

Verdict = Literal["delete", "keep", "blocked"]


@dataclass(frozen=True)
class MarkResult:
    """Totals of one mark; the detailed sets stay with the connection until the next mark
    on it (read them with the other methods, in the same snapshot)."""

    manifests_total: int
    manifests_dead: int
    manifests_kept_grace: int
    blobs_total: int
    blobs_garbage: int
    bytes_garbage: int
    blobs_kept_grace: int
    bytes_kept_grace: int

    @property
    def bytes_collectable(self) -> int:
        return self.bytes_garbage - self.bytes_kept_grace


@dataclass(frozen=True)
class DeadManifest:
    id: int
    repository_id: int
    repository: str
    digest: str


@dataclass(frozen=True)
class Untagged:
    """What only untagged manifests hold (not reachable from any tag)."""

    manifests: int
    bytes: int
    by_repository: dict[int, tuple[int, int]]
    """repository id -> (untagged manifests, bytes only they hold)."""


_TEMP = ("gc_roots", "gc_edges", "gc_live", "gc_ref", "gc_dead", "gc_garbage")


class Reachability(Queries):
    """Temp tables (valid until the next mark on the same connection):

    * `gc_live(id, grace)`: live manifests; grace=1 when only the grace period keeps them.
    * `gc_ref(digest, grace)`: digests referenced by live manifests (grace=1: only by those
      the grace period keeps).
    * `gc_dead(id)`: manifests to delete (not live).
    * `gc_garbage(digest, size, grace)`: blobs a GC with no grace period would free now;
      grace=1 for those the grace period still protects (so a run keeps them).
    """

    def mark(
        self, *, delete_untagged: bool, cutoff: float | None, exclude_manifest: int | None = None
    ) -> MarkResult:
        """Compute the live set. Call inside `Store.snapshot()` or `Store.exclusive()`.

        `cutoff`: manifests created and blobs touched at or after it are kept (None: no
        grace). `exclude_manifest`: a manifest id treated as already deleted, with its tags
        (the delete preview)."""
        conn = self._conn
        args = {
            "x": -1 if exclude_manifest is None else exclude_manifest,
            "keep_untagged": int(not delete_untagged),
            "cutoff": cutoff,
            "now": now(),
        }
        self._create_temp_tables()
        conn.execute(
            "INSERT INTO gc_edges(src, dst) "
            + edges("p.id != :x AND c.id != :x", "r.id != :x AND s.id != :x"),
            args,
        )
        conn.execute("CREATE INDEX temp.gc_edges_src ON gc_edges(src)")
        conn.execute(
            f"INSERT INTO gc_roots(id, grace) SELECT m.id, 0 FROM manifests m "
            f"WHERE m.id != :x AND {ROOT}",
            args,
        )
        self._closure(grace=0)
        if cutoff is not None:
            conn.execute("DELETE FROM gc_roots")
            conn.execute(
                f"INSERT INTO gc_roots(id, grace) SELECT m.id, 1 FROM manifests m "
                f"WHERE {YOUNG} AND m.id != :x AND m.id NOT IN (SELECT id FROM gc_live)",
                args,
            )
            self._closure(grace=1)
        self._derive(cutoff)
        row = conn.execute(
            "SELECT (SELECT COUNT(*) FROM manifests), (SELECT COUNT(*) FROM gc_dead), "
            "(SELECT COUNT(*) FROM gc_live WHERE grace = 1), (SELECT COUNT(*) FROM blobs), "
            "(SELECT COUNT(*) FROM gc_garbage), (SELECT COALESCE(SUM(size), 0) FROM gc_garbage), "
            "(SELECT COUNT(*) FROM gc_garbage WHERE grace = 1), "
            "(SELECT COALESCE(SUM(size), 0) FROM gc_garbage WHERE grace = 1)"
        ).fetchone()
        return MarkResult(*(int(v) for v in row))

    def _create_temp_tables(self) -> None:
        conn = self._conn
        for table in _TEMP:
            conn.execute(f"DROP TABLE IF EXISTS temp.{table}")
        conn.execute("CREATE TEMP TABLE gc_roots(id INTEGER PRIMARY KEY, grace INTEGER NOT NULL)")
        conn.execute("CREATE TEMP TABLE gc_edges(src INTEGER NOT NULL, dst INTEGER NOT NULL)")
        conn.execute("CREATE TEMP TABLE gc_live(id INTEGER PRIMARY KEY, grace INTEGER NOT NULL)")
        conn.execute(
            "CREATE TEMP TABLE gc_ref(digest TEXT PRIMARY KEY, grace INTEGER NOT NULL) "
            "WITHOUT ROWID"
        )
        conn.execute("CREATE TEMP TABLE gc_dead(id INTEGER PRIMARY KEY)")
        conn.execute(
            "CREATE TEMP TABLE gc_garbage(digest TEXT PRIMARY KEY, size INTEGER NOT NULL, "
            "grace INTEGER NOT NULL) WITHOUT ROWID"
        )

    def _closure(self, grace: int) -> None:
        """Add everything reachable from gc_roots to gc_live (live nodes stop the walk)."""
        self._conn.execute(
            "INSERT OR IGNORE INTO gc_live(id, grace) "
            "WITH RECURSIVE reach(id) AS ("
            " SELECT id FROM gc_roots "
            " UNION SELECT e.dst FROM gc_edges e JOIN reach ON e.src = reach.id "
            " WHERE e.dst NOT IN (SELECT id FROM gc_live)"
            ") SELECT id, ? FROM reach",
            (grace,),
        )

    def _derive(self, cutoff: float | None) -> None:
        conn = self._conn
        conn.execute(
            "INSERT INTO gc_dead(id) SELECT id FROM manifests "
            "WHERE id NOT IN (SELECT id FROM gc_live)"
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

    # ---- reading the last mark -----------------------------------------------------------

    def dead_manifests(self) -> list[DeadManifest]:
        rows = self._conn.execute(
            "SELECT m.id, m.repository_id, r.name, m.digest FROM gc_dead d "
            "JOIN manifests m ON m.id = d.id JOIN repositories r ON r.id = m.repository_id "
            "ORDER BY m.id"
        ).fetchall()
        return [DeadManifest(int(r[0]), int(r[1]), str(r[2]), str(r[3])) for r in rows]

    def dead_ids(self) -> set[int]:
        return {int(r[0]) for r in self._conn.execute("SELECT id FROM gc_dead")}

    def garbage(self, collectable_only: bool = False) -> dict[str, int]:
        """digest -> size of the garbage blobs, by digest; `collectable_only`: without those
        the grace period protects."""
        where = " WHERE grace = 0" if collectable_only else ""
        rows = self._conn.execute(
            f"SELECT digest, size FROM gc_garbage{where} ORDER BY digest"
        ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def garbage_touched_since(self, since: float) -> set[str]:
        rows = self._conn.execute(
            "SELECT g.digest FROM gc_garbage g JOIN blobs b ON b.digest = g.digest "
            "WHERE b.touched_at >= ?",
            (since,),
        )
        return {str(r[0]) for r in rows}

    def untagged(self) -> Untagged:
        """A mark with tags as the only roots; what it finds dead is what only untagged
        manifests hold. Replaces the previous mark's tables."""
        self.mark(delete_untagged=True, cutoff=None)
        conn = self._conn
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
            " UNION SELECT m.repository_id, m.digest FROM gc_dead d "
            " JOIN manifests m ON m.id = d.id"
            ") x JOIN blobs b ON b.digest = x.digest "
            "WHERE x.digest NOT IN (SELECT digest FROM gc_ref) GROUP BY x.repository_id"
        ):
            n, _ = per_repo.get(int(repo_id), (0, 0))
            per_repo[int(repo_id)] = (n, int(size))
        return Untagged(count, total, per_repo)

    # ---- the same rule for one manifest or blob, under the write lock --------------------

    def verdict(self, manifest_id: int, *, delete_untagged: bool, cutoff: float) -> Verdict:
        """'keep' (a root, or already gone), 'blocked' (a holder that may go first still
        exists: an index listing it, or its subject) or 'delete'."""
        row = self._conn.execute(
            f"SELECT {ROOT} OR {YOUNG}, EXISTS ("
            + edges("c.id = :id", "r.id = :id")
            + ") FROM manifests m WHERE m.id = :id",
            {"id": manifest_id, "keep_untagged": int(not delete_untagged), "cutoff": cutoff,
             "now": now()},
        ).fetchone()
        if row is None or row[0]:
            return "keep"
        return "blocked" if row[1] else "delete"

    def collectable_blob(self, digest: str, cutoff: float) -> int | None:
        """The blob's size if no manifest references it (as config, layer or body) and it
        was last touched before the cutoff; else None."""
        row = self._conn.execute(
            "SELECT size FROM blobs b WHERE digest = ?1 AND touched_at < ?2 "
            "AND NOT EXISTS (SELECT 1 FROM manifest_blobs WHERE digest = ?1) "
            "AND NOT EXISTS (SELECT 1 FROM manifests WHERE digest = ?1)",
            (digest, cutoff),
        ).fetchone()
        return None if row is None else int(row[0])
