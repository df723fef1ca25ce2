"""What a layout or archive holds, as read (nothing stored yet), and how work is reported."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from registry_core.reference import Digest


@dataclass(frozen=True)
class SourceBlob:
    """A config or layer: where its bytes are in the source, and what they must hash to."""

    digest: Digest
    size: int
    member: str


@dataclass(frozen=True)
class SourceManifest:
    """A manifest or index, its body as read (its digest checked)."""

    digest: Digest
    body: bytes
    media_type: str


@dataclass
class SourceImage:
    """One image to store: a manifest or an index with its children and referrers."""

    repository: str
    tags: list[str]
    digest: Digest
    media_type: str
    manifests: list[SourceManifest]
    """Bottom-up: an index's children, then the top manifest, then its referrers."""
    blobs: dict[Digest, SourceBlob] = field(default_factory=dict)
    platforms: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """Bytes of its distinct blobs and manifest bodies."""
        return sum(b.size for b in self.blobs.values()) + sum(len(m.body) for m in self.manifests)

    @property
    def name(self) -> str:
        return f"{self.repository}:{self.tags[0]}" if self.tags else \
            f"{self.repository}@{self.digest}"


@dataclass(frozen=True)
class Progress:
    """Where an import or export is: `phase` is reading, copying, committing or writing."""

    phase: str
    bytes_done: int
    bytes_total: int
    images_done: int
    images_total: int
    item: str = ""
    """The blob or image being worked on."""


ProgressCallback = Callable[[Progress], None]
StopCheck = Callable[[], bool]
"""Asked between blobs and between chunks: True stops the work (TransferCancelled)."""
