"""Sums and counts over the stored content, for space checks, the usage report and the
console's repository list."""

from __future__ import annotations

from dataclasses import dataclass

from registry_core.store.base import Queries


@dataclass(frozen=True)
class Totals:
    blobs: int
    blob_bytes: int
    """Every stored content file counted once."""
    uploads: int
    upload_bytes: int
    """Bytes acknowledged by uploads in progress."""
    manifests: int
    tags: int


@dataclass(frozen=True)
class RepositorySize:
    id: int
    name: str
    total_bytes: int
    exclusive_bytes: int
    """Of total_bytes, what no other repository references."""
    tags: int
    manifests: int


class Accounting(Queries):
    def stored_bytes(self, with_uploads: bool) -> int:
        """Bytes of stored content, plus those of uploads in progress if asked."""
        sql = "SELECT (SELECT COALESCE(SUM(size), 0) FROM blobs)"
        if with_uploads:
            sql += " + (SELECT COALESCE(SUM(size), 0) FROM uploads)"
        return int(self._conn.execute(sql).fetchone()[0])

    def totals(self) -> Totals:
        row = self._conn.execute(
            "SELECT (SELECT COUNT(*) FROM blobs), (SELECT COALESCE(SUM(size), 0) FROM blobs), "
            "(SELECT COUNT(*) FROM uploads), (SELECT COALESCE(SUM(size), 0) FROM uploads), "
            "(SELECT COUNT(*) FROM manifests), (SELECT COUNT(*) FROM tags)"
        ).fetchone()
        return Totals(*(int(v) for v in row))

    def repository_sizes(self) -> list[RepositorySize]:
        """Per repository, by name (all of them, with or without manifests).

        One row per (digest, repository) that a manifest there references (config, layers,
        the manifest body), keyed by digest first, so that counting the repositories of each
        digest is an ordered scan: a digest is exclusive where that count is 1."""
        conn = self._conn
        conn.execute("DROP TABLE IF EXISTS temp.usage_repo_ref")
        conn.execute(
            "CREATE TEMP TABLE usage_repo_ref(digest TEXT NOT NULL, "
            "repository_id INTEGER NOT NULL, size INTEGER NOT NULL, "
            "PRIMARY KEY (digest, repository_id)) WITHOUT ROWID"
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
        return [
            RepositorySize(int(a), str(b), int(c), int(d), int(e), int(f))
            for a, b, c, d, e, f in rows
        ]
