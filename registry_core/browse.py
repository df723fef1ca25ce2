"""Read-only views of what is stored, for the console's Images screens.

Each listing is one SQL query returning plain tuples-in-dataclasses, fast enough for
10,000 repositories and 100,000 tags (measured in bench/).
"""

from __future__ import annotations

from dataclasses import dataclass

from registry_core.errors import ManifestUnknown
from registry_core.manifests import parse_manifest
from registry_core.reference import Digest, validate_name
from registry_core.registry import Registry
from registry_core.store.catalog import TagRow as TagRow


@dataclass(frozen=True)
class RepositorySummary:
    name: str
    tag_count: int
    manifest_count: int
    size_bytes: int
    """Logical size: config + layers of every manifest, each blob once, plus bodies."""
    last_push: float | None


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
    kept_because: str | None = None
    """Why the sync keeps it from the GC (it lost its tag in a conflict), or None."""


@dataclass(frozen=True)
class ManifestGraph:
    """Tags and index children of the whole registry, read at once: what resolving many
    image references (the cluster's images in use) needs without a query each."""

    tags: dict[tuple[str, str], str]
    """(repository, tag) -> manifest digest."""
    children: dict[tuple[str, str], tuple[str, ...]]
    """(repository, index digest) -> its children's digests."""
    parents: dict[tuple[str, str], tuple[str, ...]]
    """(repository, child digest) -> the indexes that list it."""


def manifest_graph(registry: Registry) -> ManifestGraph:
    store = registry.store
    with store.snapshot():
        targets = store.catalog.tag_targets()
        edges = store.manifests.index_edges()
    children: dict[tuple[str, str], list[str]] = {}
    parents: dict[tuple[str, str], list[str]] = {}
    for repository, index, child in edges:
        children.setdefault((repository, index), []).append(child)
        parents.setdefault((repository, child), []).append(index)
    return ManifestGraph(
        {(repository, tag): digest for repository, tag, digest in targets},
        {key: tuple(value) for key, value in children.items()},
        {key: tuple(value) for key, value in parents.items()},
    )


def repositories(registry: Registry) -> list[RepositorySummary]:
    """Every repository with at least one manifest, sorted by name; sizes as the usage
    report counts them (the Images and Storage screens must agree)."""
    store = registry.store
    with store.snapshot():
        sizes = store.accounting.repository_sizes()
        pushed = store.manifests.last_push_by_repository()
    return [
        RepositorySummary(r.name, r.tags, r.manifests, r.total_bytes, pushed.get(r.id))
        for r in sizes
        if r.manifests
    ]


def tags(registry: Registry, name: str | None = None) -> list[TagRow]:
    """Tags of one repository, or of all of them (name None), sorted by repository and tag."""
    if name is not None:
        validate_name(name)
    return registry.store.catalog.tag_rows(name)


def untagged(registry: Registry, name: str) -> list[TagRow]:
    """Manifests of a repository that no tag points at (shown with an empty tag)."""
    validate_name(name)
    return registry.store.manifests.untagged_rows(name)


def manifest_detail(registry: Registry, name: str, digest: Digest | str) -> ManifestDetail:
    stored = registry.get_manifest(name, str(digest))
    row = registry.store.manifests.get(name, str(stored.digest))
    if row is None:
        raise ManifestUnknown(detail={"name": name, "digest": str(digest)})
    manifest = parse_manifest(stored.body(), stored.media_type)
    tag_names = tuple(registry.store.catalog.tags_of(row.id))
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
        content_bytes=row.content_size,
        tags=tag_names,
        config=LayerRow(str(config.digest), config.media_type, config.size) if config else None,
        layers=tuple(LayerRow(str(d.digest), d.media_type, d.size) for d in manifest.layers),
        children=children,
        referrers=referrers,
        subject=row.subject,
        artifact_type=row.artifact_type,
        image_created=row.image_created,
        annotations=row.annotations or {},
        kept_because=registry.store.kept.reason(name, str(stored.digest)),
    )


def _child_row(registry: Registry, name: str, digest: Digest, platform: object) -> ChildRow:
    row = registry.store.manifests.get(name, str(digest))
    media_type, size = (row.media_type, row.size + row.content_size) if row else ("(missing)", 0)
    return ChildRow(str(digest), media_type, str(platform) if platform else None, size)
