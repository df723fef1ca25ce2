"""Read-only views of what is stored, for the console's Images screens.

Each listing is one SQL query returning plain tuples-in-dataclasses, fast enough for
10,000 repositories and 100,000 tags (measured in bench/).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from registry_core.errors import ManifestUnknown
from registry_core.manifests import parse_manifest
from registry_core.reference import Digest, validate_name
from registry_core.registry import Registry
from registry_core.usage import repository_sizes


@dataclass(frozen=True)
class RepositorySummary:
    name: str
    tag_count: int
    manifest_count: int
    size_bytes: int
    """Logical size: config + layers of every manifest, each blob once, plus bodies."""
    last_push: float | None


@dataclass(frozen=True)
class TagRow:
    repository: str
    tag: str
    digest: str
    media_type: str
    size_bytes: int
    image_created: str | None
    pushed_at: float
    platforms: str | None


@dataclass(frozen=True)
class LayerRow:
    digest: str
    media_type: str
    size_bytes: int


@dataclass(frozen=True)
class ChildRow:
    digest: str
    media_type: str
    platform: str | None
    size_bytes: int


@dataclass(frozen=True)
class ReferrerRow:
    digest: str
    artifact_type: str | None
    size_bytes: int


@dataclass(frozen=True)
class ManifestDetail:
    repository: str
    digest: str
    media_type: str
    size_bytes: int
    content_bytes: int
    tags: tuple[str, ...]
    config: LayerRow | None
    layers: tuple[LayerRow, ...]
    children: tuple[ChildRow, ...]
    referrers: tuple[ReferrerRow, ...]
    subject: str | None
    artifact_type: str | None
    image_created: str | None
    annotations: dict[str, str]


def repositories(registry: Registry) -> list[RepositorySummary]:
    """Every repository with at least one manifest, sorted by name; sizes as the usage
    report counts them (the Images and Storage screens must agree)."""
    with registry.db.read() as conn:
        sizes = repository_sizes(conn)
        pushed = dict(
            conn.execute("SELECT repository_id, MAX(created_at) FROM manifests GROUP BY 1")
        )
    return [
        RepositorySummary(name, tags, manifests, total, pushed.get(repo_id))
        for repo_id, name, total, _exclusive, tags, manifests in sizes
        if manifests
    ]


def tags(registry: Registry, name: str | None = None) -> list[TagRow]:
    """Tags of one repository, or of all of them (name None), sorted by repository and tag."""
    sql = """
        SELECT r.name, t.name, m.digest, m.media_type,
               m.size + m.content_size, m.image_created, t.updated_at, m.platforms
        FROM tags t JOIN manifests m ON m.id = t.manifest_id
        JOIN repositories r ON r.id = t.repository_id
    """
    if name is None:
        rows = registry.db.conn.execute(sql + " ORDER BY r.name, t.name").fetchall()
    else:
        validate_name(name)
        rows = registry.db.conn.execute(
            sql + " WHERE r.name = ? ORDER BY t.name", (name,)
        ).fetchall()
    return [TagRow(*r) for r in rows]


def untagged(registry: Registry, name: str) -> list[TagRow]:
    """Manifests of a repository that no tag points at (shown with an empty tag)."""
    validate_name(name)
    rows = registry.db.conn.execute(
        """
        SELECT r.name, '', m.digest, m.media_type, m.size + m.content_size,
               m.image_created, m.created_at, m.platforms
        FROM manifests m JOIN repositories r ON r.id = m.repository_id
        WHERE r.name = ? AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.manifest_id = m.id)
        ORDER BY m.created_at DESC
        """,
        (name,),
    )
    return [TagRow(*r) for r in rows]


def manifest_detail(registry: Registry, name: str, digest: Digest | str) -> ManifestDetail:
    stored = registry.get_manifest(name, str(digest))
    conn = registry.db.conn
    row = conn.execute(
        "SELECT m.id, m.content_size, m.subject, m.artifact_type, m.image_created, "
        "m.annotations FROM manifests m JOIN repositories r ON r.id = m.repository_id "
        "WHERE r.name = ? AND m.digest = ?",
        (name, str(stored.digest)),
    ).fetchone()
    if row is None:
        raise ManifestUnknown(detail={"name": name, "digest": str(digest)})
    manifest = parse_manifest(stored.body(), stored.media_type)
    tag_names = tuple(
        r[0]
        for r in conn.execute(
            "SELECT name FROM tags WHERE manifest_id = ? ORDER BY name", (row[0],)
        )
    )
    children = tuple(
        _child_row(registry, name, d.digest, d.platform) for d in manifest.child_descriptors()
    )
    referrers = tuple(
        ReferrerRow(r.digest, r.artifact_type, r.size)
        for r in registry.referrers(name, stored.digest)
    )
    config = manifest.config
    return ManifestDetail(
        repository=name,
        digest=str(stored.digest),
        media_type=stored.media_type,
        size_bytes=stored.size,
        content_bytes=int(row[1]),
        tags=tag_names,
        config=LayerRow(str(config.digest), config.media_type, config.size) if config else None,
        layers=tuple(LayerRow(str(d.digest), d.media_type, d.size) for d in manifest.layers),
        children=children,
        referrers=referrers,
        subject=row[2],
        artifact_type=row[3],
        image_created=row[4],
        annotations=json.loads(row[5]) if row[5] else {},
    )


def _child_row(registry: Registry, name: str, digest: Digest, platform: object) -> ChildRow:
    row = registry.db.conn.execute(
        "SELECT m.media_type, m.size + m.content_size FROM manifests m "
        "JOIN repositories r ON r.id = m.repository_id WHERE r.name = ? AND m.digest = ?",
        (name, str(digest)),
    ).fetchone()
    media_type, size = (row[0], int(row[1])) if row else ("(missing)", 0)
    return ChildRow(str(digest), media_type, str(platform) if platform else None, size)
