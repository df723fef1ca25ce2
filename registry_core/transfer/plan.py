"""What a layout or archive would bring in: its images named, and which blobs are here already.

`read_images` reads a source into named images (--tag and --repository applied); `plan`
adds what the registry holds. Nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from registry_core.errors import EdgeError, RegistryError
from registry_core.reference import Digest, validate_name
from registry_core.registry import Registry
from registry_core.transfer.docker_archive import is_docker_archive, read_docker_archive
from registry_core.transfer.errors import NamingError, SourceInvalid
from registry_core.transfer.layout import LayoutReader, is_layout
from registry_core.transfer.model import SourceBlob, SourceImage
from registry_core.transfer.naming import parse_tag_option, repository_from_path
from registry_core.transfer.source import Source

OCI_LAYOUT = "oci-layout"
DOCKER_ARCHIVE = "docker-archive"


@dataclass(frozen=True)
class PlannedImage:
    repository: str
    tags: tuple[str, ...]
    digest: str
    media_type: str
    platforms: tuple[str, ...]
    manifests: int
    blobs: int
    size: int
    """Bytes of its distinct blobs and manifests."""
    new_blobs: int
    """Blobs the registry does not hold yet."""
    new_bytes: int
    moves: dict[str, str] = field(default_factory=dict)
    """Tags here that point at another manifest now: tag -> that digest (they would move)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository, "tags": list(self.tags), "digest": self.digest,
            "media_type": self.media_type, "platforms": list(self.platforms),
            "manifests": self.manifests, "blobs": self.blobs, "size_bytes": self.size,
            "new_blobs": self.new_blobs, "new_bytes": self.new_bytes, "moves": self.moves,
        }


@dataclass(frozen=True)
class ImportPlan:
    source: str
    format: str
    """oci-layout or docker-archive."""
    images: tuple[PlannedImage, ...]
    blobs: int
    """Distinct blobs over all images."""
    bytes: int
    new_blobs: int
    """Of those, the ones to copy (the others are here already)."""
    new_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "format": self.format,
            "images": [i.to_json() for i in self.images], "blobs": self.blobs,
            "bytes": self.bytes, "new_blobs": self.new_blobs, "new_bytes": self.new_bytes,
        }


def read_images(source: Source, tag: str | None = None,
                repository: str | None = None) -> tuple[str, list[SourceImage]]:
    """(format, images), every image named; NamingError when one cannot be."""
    if repository is not None:
        _check_repository_option(repository)
    default = repository or repository_from_path(source.path)
    if is_layout(source):
        kind, images = OCI_LAYOUT, LayoutReader(source, default).read()
    elif is_docker_archive(source):
        kind, images = DOCKER_ARCHIVE, read_docker_archive(source)
    else:
        raise SourceInvalid(f"{source.path} is neither an OCI image layout (oci-layout, "
                            "index.json) nor a docker-archive (manifest.json)")
    if not images:
        raise SourceInvalid(f"{source.path} holds no image")
    if tag is not None:
        images = _renamed(images, tag)
    unnamed = [i for i in images if not i.repository]
    if unnamed:
        raise NamingError(f"{len(unnamed)} image(s) in {source.path} have no name "
                          f"({unnamed[0].digest}): name it with --tag REPO:TAG")
    return kind, images


def _check_repository_option(repository: str) -> None:
    """--repository, checked before anything is read (a dry run would show a bad one)."""
    if not repository:
        raise NamingError("--repository is empty: name a repository, or leave it out")
    try:
        validate_name(repository)
    except RegistryError as exc:
        raise NamingError(f"--repository: {exc}") from None


def _renamed(images: list[SourceImage], tag: str) -> list[SourceImage]:
    """--tag names the only image, or the only one without a name."""
    name = parse_tag_option(tag)
    if len({i.digest for i in images}) == 1:
        target, rest = images[0], []
    else:
        unnamed = [i for i in images if not i.repository]
        if len(unnamed) != 1:
            raise NamingError(f"--tag names one image; this source holds {len(images)} "
                              f"({len(unnamed)} without a name)")
        target, rest = unnamed[0], [i for i in images if i is not unnamed[0]]
    target.repository, target.tags = name.repository, [str(name.tag)]
    return [target, *rest]


def distinct_blobs(images: list[SourceImage]) -> dict[Digest, SourceBlob]:
    return {d: b for image in images for d, b in image.blobs.items()}


def make_plan(registry: Registry, source: Source, kind: str,
              images: list[SourceImage]) -> tuple[ImportPlan, set[Digest]]:
    """The plan, and the digests of the blobs the registry holds already."""
    blobs = distinct_blobs(images)
    present = {d for d in blobs if registry.has_blob(d)}
    planned = tuple(
        PlannedImage(
            image.repository, tuple(image.tags), str(image.digest), image.media_type,
            image.platforms, len(image.manifests), len(image.blobs), image.size,
            sum(1 for d in image.blobs if d not in present),
            sum(b.size for d, b in image.blobs.items() if d not in present),
            _moves(registry, image),
        )
        for image in images
    )
    new = [b for d, b in blobs.items() if d not in present]
    plan = ImportPlan(str(source.path), kind, planned, len(blobs),
                      sum(b.size for b in blobs.values()), len(new), sum(b.size for b in new))
    return plan, present


def _moves(registry: Registry, image: SourceImage) -> dict[str, str]:
    moves = {}
    for tag in image.tags:
        try:
            current = str(registry.get_manifest(image.repository, tag).digest)
        except EdgeError:
            continue  # no such tag (or repository) yet
        if current != str(image.digest):
            moves[tag] = current
    return moves
