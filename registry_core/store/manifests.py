"""Manifests, the blobs they reference and the children of indexes."""

from __future__ import annotations

import json
from dataclasses import dataclass

from registry_core.store.base import Queries
from registry_core.store.catalog import TagRow
from registry_core.store.graph import INDEX_EDGES
from registry_core.store.metadata import now


@dataclass(frozen=True, slots=True)
class ManifestHead:
    """What a GET of a manifest needs: its digest, media type and body size."""

    digest: str
    media_type: str
    size: int


@dataclass(frozen=True)
class ManifestRow:
    id: int
    repository_id: int
    digest: str
    media_type: str
    size: int
    content_size: int
    subject: str | None
    artifact_type: str | None
    annotations: dict[str, str] | None
    platforms: str | None
    image_created: str | None
    created_at: float


@dataclass(frozen=True)
class ManifestKey:
    id: int
    digest: str


@dataclass(frozen=True)
class ReferencedBlob:
    digest: str
    kind: str
    """'config' or 'layer'."""
    size: int


@dataclass(frozen=True)
class ChildRef:
    digest: str
    platform: str | None


@dataclass(frozen=True)
class NewManifest:
    repository_id: int
    digest: str
    media_type: str
    artifact_type: str | None
    size: int
    subject: str | None
    annotations: dict[str, str] | None
    platforms: str | None
    image_created: str | None
    blobs: tuple[ReferencedBlob, ...]
    children: tuple[ChildRef, ...]


@dataclass(frozen=True)
class ChildManifest:
    """An index child that is stored in the index's repository."""

    id: int
    digest: str
    media_type: str
    platform: str | None
    artifact_type: str | None


_ROW = (
    "SELECT m.id, m.repository_id, m.digest, m.media_type, m.size, m.content_size, m.subject, "
    "m.artifact_type, m.annotations, m.platforms, m.image_created, m.created_at FROM manifests m "
)


def _row(r: tuple[object, ...]) -> ManifestRow:
    values = list(r)
    values[8] = json.loads(str(values[8])) if values[8] else None
    return ManifestRow(*values)  # type: ignore[arg-type]


class Manifests(Queries):
    def head(self, repo_id: int, digest: str) -> ManifestHead | None:
        row = self._conn.execute(
            "SELECT digest, media_type, size FROM manifests WHERE repository_id = ? AND digest = ?",
            (repo_id, digest),
        ).fetchone()
        return None if row is None else ManifestHead(row[0], row[1], int(row[2]))

    def head_by_tag(self, repo_id: int, tag: str) -> ManifestHead | None:
        row = self._conn.execute(
            "SELECT m.digest, m.media_type, m.size FROM tags t "
            "JOIN manifests m ON m.id = t.manifest_id WHERE t.repository_id = ? AND t.name = ?",
            (repo_id, tag),
        ).fetchone()
        return None if row is None else ManifestHead(row[0], row[1], int(row[2]))

    def id_of(self, repo_id: int, digest: str) -> int | None:
        row = self._conn.execute(
            "SELECT id FROM manifests WHERE repository_id = ? AND digest = ?", (repo_id, digest)
        ).fetchone()
        return None if row is None else int(row[0])

    def get(self, repository: str, digest: str) -> ManifestRow | None:
        row = self._conn.execute(
            _ROW + "JOIN repositories r ON r.id = m.repository_id "
            "WHERE r.name = ? AND m.digest = ?",
            (repository, digest),
        ).fetchone()
        return None if row is None else _row(tuple(row))

    def insert(self, new: NewManifest) -> int:
        """Record a manifest with its blob references and children; its id."""
        cur = self._conn.execute(
            "INSERT INTO manifests(repository_id, digest, media_type, artifact_type, size, "
            "content_size, subject, annotations, platforms, image_created, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                new.repository_id, new.digest, new.media_type, new.artifact_type, new.size,
                sum(b.size for b in new.blobs), new.subject,
                json.dumps(new.annotations) if new.annotations else None,
                new.platforms, new.image_created, now(),
            ),
        )
        manifest_id = int(cur.lastrowid or 0)
        self._conn.executemany(
            "INSERT INTO manifest_blobs(manifest_id, digest, kind, size, position) "
            "VALUES (?, ?, ?, ?, ?)",
            [(manifest_id, b.digest, b.kind, b.size, i) for i, b in enumerate(new.blobs)],
        )
        self._conn.executemany(
            "INSERT INTO manifest_children(parent_id, child_digest, platform, position) "
            "VALUES (?, ?, ?, ?)",
            [(manifest_id, c.digest, c.platform, i) for i, c in enumerate(new.children)],
        )
        return manifest_id

    def delete(self, manifest_id: int) -> None:
        """The manifest row; its blob references and children rows go with it (cascade)."""
        self._conn.execute("DELETE FROM manifests WHERE id = ?", (manifest_id,))

    def listing_indexes(self, manifest_id: int, exclude: int | None = None) -> list[ManifestKey]:
        """The indexes of the manifest's repository that list it as a child, by digest."""
        rows = self._conn.execute(
            "SELECT DISTINCT m.id, m.digest FROM ("
            + INDEX_EDGES.format(where="c.id = :id AND p.id != :exclude")
            + ") e JOIN manifests m ON m.id = e.src ORDER BY m.digest",
            {"id": manifest_id, "exclude": -1 if exclude is None else exclude},
        ).fetchall()
        return [ManifestKey(int(r[0]), str(r[1])) for r in rows]

    def referrers(
        self, repo_id: int, subject: str, artifact_type: str | None = None
    ) -> list[ManifestRow]:
        """Manifests of the repository whose OCI 1.1 subject is `subject`, by digest."""
        sql = _ROW + "WHERE m.repository_id = ? AND m.subject = ?"
        params: list[object] = [repo_id, subject]
        if artifact_type:
            sql += " AND m.artifact_type = ?"
            params.append(artifact_type)
        rows = self._conn.execute(sql + " ORDER BY m.digest", params).fetchall()
        return [_row(tuple(r)) for r in rows]

    def children(self, repo_id: int, parent_id: int) -> list[ChildManifest]:
        """The index's children stored in its repository, in the index's order."""
        rows = self._conn.execute(
            "SELECT c.id, c.digest, c.media_type, mc.platform, c.artifact_type "
            "FROM manifest_children mc JOIN manifests c "
            "ON c.repository_id = ? AND c.digest = mc.child_digest "
            "WHERE mc.parent_id = ? ORDER BY mc.position",
            (repo_id, parent_id),
        ).fetchall()
        return [ChildManifest(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    def index_edges(self) -> list[tuple[str, str, str]]:
        """(repository, index digest, child digest) of every index child."""
        rows = self._conn.execute(
            "SELECT r.name, m.digest, c.child_digest FROM manifest_children c "
            "JOIN manifests m ON m.id = c.parent_id "
            "JOIN repositories r ON r.id = m.repository_id"
        ).fetchall()
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def child_for_platform(self, repository: str, index: str, platform: str) -> str | None:
        """The digest of the first child of an index for a platform such as 'linux/amd64'."""
        row = self._conn.execute(
            "SELECT c.child_digest FROM manifest_children c JOIN manifests m ON m.id = c.parent_id "
            "JOIN repositories r ON r.id = m.repository_id "
            "WHERE r.name = ? AND m.digest = ? AND c.platform = ? ORDER BY c.position LIMIT 1",
            (repository, index, platform),
        ).fetchone()
        return None if row is None else str(row[0])

    def untagged_rows(self, repository: str) -> list[TagRow]:
        """Manifests of a repository that no tag points at (an empty tag), newest first."""
        rows = self._conn.execute(
            """
            SELECT r.name, '', m.digest, m.media_type, m.size + m.content_size,
                   m.image_created, m.created_at, m.platforms
            FROM manifests m JOIN repositories r ON r.id = m.repository_id
            WHERE r.name = ? AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.manifest_id = m.id)
            ORDER BY m.created_at DESC
            """,
            (repository,),
        ).fetchall()
        return [TagRow(*r) for r in rows]

    def last_push_by_repository(self) -> dict[int, float]:
        rows = self._conn.execute(
            "SELECT repository_id, MAX(created_at) FROM manifests GROUP BY 1"
        ).fetchall()
        return {int(r[0]): float(r[1]) for r in rows}
