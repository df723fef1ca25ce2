"""Repositories and tags."""

from __future__ import annotations

from dataclasses import dataclass

from registry_core.store.base import Queries
from registry_core.store.metadata import now


@dataclass(frozen=True)
class TagRow:
    """A tag (or, with an empty tag, an untagged manifest) as the console lists it."""

    repository: str
    tag: str
    digest: str
    media_type: str
    size_bytes: int
    image_created: str | None
    pushed_at: float
    platforms: str | None


_TAG_ROWS = """
    SELECT r.name, t.name, m.digest, m.media_type,
           m.size + m.content_size, m.image_created, t.updated_at, m.platforms
    FROM tags t JOIN manifests m ON m.id = t.manifest_id
    JOIN repositories r ON r.id = t.repository_id
"""


class Catalog(Queries):
    def repository_id(self, name: str) -> int | None:
        row = self._conn.execute("SELECT id FROM repositories WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def ensure_repository(self, name: str) -> int:
        repo_id = self.repository_id(name)
        if repo_id is not None:
            return repo_id
        cur = self._conn.execute(
            "INSERT INTO repositories(name, created_at) VALUES (?, ?)", (name, now())
        )
        return int(cur.lastrowid or 0)

    def repositories_page(self, after: str, limit: int) -> list[str]:
        """Names after `after` of repositories holding a manifest, sorted (limit -1: all)."""
        rows = self._conn.execute(
            "SELECT name FROM repositories r WHERE name > ? AND EXISTS "
            "(SELECT 1 FROM manifests m WHERE m.repository_id = r.id) ORDER BY name LIMIT ?",
            (after, limit),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def tag_names(self, repo_id: int, after: str, limit: int) -> list[str]:
        rows = self._conn.execute(
            "SELECT name FROM tags WHERE repository_id = ? AND name > ? ORDER BY name LIMIT ?",
            (repo_id, after, limit),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def set_tag(self, repo_id: int, tag: str, manifest_id: int) -> str | None:
        """Point a tag at a manifest; the digest it pointed at before, None if it is new."""
        row = self._conn.execute(
            "SELECT m.digest FROM tags t JOIN manifests m ON m.id = t.manifest_id "
            "WHERE t.repository_id = ? AND t.name = ?",
            (repo_id, tag),
        ).fetchone()
        self._conn.execute(
            "INSERT INTO tags(repository_id, name, manifest_id, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT(repository_id, name) DO UPDATE SET "
            "manifest_id = excluded.manifest_id, updated_at = excluded.updated_at",
            (repo_id, tag, manifest_id, now()),
        )
        return None if row is None else str(row[0])

    def delete_tag(self, repo_id: int, tag: str) -> str | None:
        """Remove a tag; the digest it pointed at, or None if there was no such tag."""
        row = self._conn.execute(
            "DELETE FROM tags WHERE repository_id = ? AND name = ? "
            "RETURNING (SELECT digest FROM manifests WHERE id = manifest_id)",
            (repo_id, tag),
        ).fetchone()
        return None if row is None else str(row[0])

    def delete_tags_of(self, manifest_id: int) -> list[str]:
        """Remove every tag on a manifest; their names, sorted."""
        rows = self._conn.execute(
            "DELETE FROM tags WHERE manifest_id = ? RETURNING name", (manifest_id,)
        ).fetchall()
        return sorted(str(r[0]) for r in rows)

    def tags_of(self, manifest_id: int, limit: int = -1) -> list[str]:
        rows = self._conn.execute(
            "SELECT name FROM tags WHERE manifest_id = ? ORDER BY name LIMIT ?",
            (manifest_id, limit),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def tag_targets(self) -> list[tuple[str, str, str]]:
        """(repository, tag, digest) of every tag: the light form of tag_rows."""
        rows = self._conn.execute(
            "SELECT r.name, t.name, m.digest FROM tags t "
            "JOIN manifests m ON m.id = t.manifest_id "
            "JOIN repositories r ON r.id = m.repository_id"
        ).fetchall()
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def tag_rows(self, name: str | None = None) -> list[TagRow]:
        """Tags of one repository, or of all (None), sorted by repository and tag."""
        if name is None:
            rows = self._conn.execute(_TAG_ROWS + " ORDER BY r.name, t.name").fetchall()
        else:
            rows = self._conn.execute(
                _TAG_ROWS + " WHERE r.name = ? ORDER BY t.name", (name,)
            ).fetchall()
        return [TagRow(*r) for r in rows]
