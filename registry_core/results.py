"""What the registry's operations return to the faces (HTTP API, CLI, console): values, no
paths (content is read through the registry's blob store)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from registry_core.reference import Digest


@dataclass(frozen=True)
class BlobInfo:
    digest: Digest
    size: int


@dataclass(frozen=True)
class Upload:
    id: str
    repository: str
    size: int


@dataclass(frozen=True)
class StoredManifest:
    digest: Digest
    media_type: str
    size: int
    read: Callable[[], bytes] = field(repr=False, compare=False)
    """Reads the body from the blob store."""

    def body(self) -> bytes:
        return self.read()


@dataclass(frozen=True)
class PutManifestResult:
    digest: Digest
    created: bool
    subject: Digest | None


@dataclass(frozen=True)
class DeletedManifest:
    repository: str
    digest: Digest
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Referrer:
    media_type: str
    digest: str
    size: int
    artifact_type: str | None
    annotations: dict[str, str] | None


@dataclass(frozen=True)
class Page:
    items: list[str]
    more: bool
    """True when items after the last one exist (the API then sends a Link header)."""
