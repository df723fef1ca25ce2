"""Exporting images: to an OCI image layout (a directory, or a .tar of one) or a docker-archive.

References are `repo:tag`, `repo@digest` or a whole repository (every tag). Manifests are
written as stored, so every digest is preserved; an index comes with its children, an image
with its referrers. In index.json an image is named by its tag (`skopeo inspect oci:PATH:tag`
finds it; `repo:tag` when two repositories share the tag) and by `io.containerd.image.name`
(`repo:tag`), which an import here reads back.

A docker-archive is written as `docker save` has since Docker 25: blobs under `blobs/sha256/`,
`manifest.json` (Config, RepoTags, Layers) and the same OCI `index.json`, so it loads in
docker and reads in skopeo, and imports here with its digests. It holds one platform per
image: of an index, the child for this machine's platform.

Nothing appears at the destination until the export is complete: it is written beside it,
then renamed into place. An existing non-empty destination is refused unless `force`; the
volume's free space is checked first.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry_core import browse
from registry_core.atomic_file import fsync_dir
from registry_core.errors import ManifestUnknown, NameUnknown
from registry_core.manifests import OCI_INDEX, Manifest, parse_manifest
from registry_core.reference import Digest, parse_digest
from registry_core.registry import Registry
from registry_core.transfer.errors import (
    DestinationExists,
    NotEnoughRoom,
    TransferCancelled,
    TransferError,
)
from registry_core.transfer.layout import blob_member
from registry_core.transfer.model import Progress, ProgressCallback, StopCheck
from registry_core.transfer.naming import IMAGE_NAME, REF_NAME, ImageName, parse_reference
from registry_core.transfer.writers import DirWriter, TarWriter, Writer

OCI = "oci"
DOCKER_ARCHIVE = "docker-archive"
FORMATS = (OCI, DOCKER_ARCHIVE)
TAR_OVERHEAD = 1024
"""Header and padding per tar member, at most (for the free-space check)."""
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
         "s390x": "s390x"}


@dataclass
class ExportImage:
    repository: str
    tag: str | None
    digest: Digest
    media_type: str
    manifests: dict[Digest, tuple[bytes, str]] = field(default_factory=dict)
    """Every manifest written: digest -> (body as stored, media type)."""
    blobs: dict[Digest, int] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}" if self.tag else \
            f"{self.repository}@{self.digest}"


@dataclass(frozen=True)
class ExportResult:
    destination: str
    format: str
    images: tuple[dict[str, str], ...]
    blobs: int
    bytes: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"destination": self.destination, "format": self.format,
                "images": list(self.images), "blobs": self.blobs, "bytes": self.bytes,
                "seconds": round(self.seconds, 3)}


def resolve(registry: Registry, refs: Sequence[str]) -> list[ExportImage]:
    """The images `refs` name (a repository: each of its tags), each with what goes with it."""
    images: list[ExportImage] = []
    for text in refs:
        name = parse_reference(text)
        for ref in _expand(registry, name):
            images.append(_gather_named(registry, ref))
    return images


def _expand(registry: Registry, name: ImageName) -> list[ImageName]:
    if name.tag is not None or name.digest is not None:
        return [name]
    rows = browse.tags(registry, name.repository)
    if not rows:
        raise TransferError(f"repository {name.repository} has no tagged image")
    return [ImageName(name.repository, row.tag) for row in rows]


def _gather_named(registry: Registry, name: ImageName) -> ExportImage:
    """`_gather`, an image that is not here named in the error."""
    try:
        return _gather(registry, name)
    except (ManifestUnknown, NameUnknown) as exc:
        raise TransferError(f"cannot export {name}: no such image here ({exc})") from None


def _gather(registry: Registry, name: ImageName) -> ExportImage:
    stored = registry.get_manifest(name.repository, str(name.digest or name.tag))
    image = ExportImage(name.repository, name.tag, stored.digest, stored.media_type)
    _add(registry, image, stored.digest)
    for referrer in registry.referrers(name.repository, stored.digest):
        _add(registry, image, parse_digest(referrer.digest))
    return image


def _add(registry: Registry, image: ExportImage, digest: Digest) -> Manifest:
    stored = registry.get_manifest(image.repository, str(digest))
    body = stored.body()
    parsed = parse_manifest(body, stored.media_type)
    image.manifests[digest] = (body, stored.media_type)
    for blob in parsed.blob_descriptors():
        image.blobs[blob.digest] = blob.size
    for child in parsed.child_descriptors():
        if child.digest not in image.manifests:
            _add(registry, image, child.digest)
    return parsed


@dataclass(frozen=True)
class ExportPlan:
    """What an export writes (a console can show it before asking where)."""

    format: str
    images: tuple[ExportImage, ...]
    blobs: dict[Digest, int]
    manifests: dict[Digest, tuple[bytes, str]]

    @property
    def bytes(self) -> int:
        return sum(self.blobs.values()) + sum(len(b) for b, _ in self.manifests.values())

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "blobs": len(self.blobs), "bytes": self.bytes,
                "images": [{"reference": i.reference, "digest": str(i.digest)}
                           for i in self.images]}


def plan_export(registry: Registry, refs: Sequence[str], *, format: str = OCI) -> ExportPlan:
    """The images `refs` name, with every manifest and blob an export of them writes."""
    if format not in FORMATS:
        raise TransferError(f"unknown export format {format!r} (oci or docker-archive)")
    images = resolve(registry, refs)
    if format == DOCKER_ARCHIVE:
        images = [_one_platform(registry, image) for image in images]
    return ExportPlan(format, tuple(images),
                      {d: s for image in images for d, s in image.blobs.items()},
                      {d: m for image in images for d, m in image.manifests.items()})


def export_images(
    registry: Registry, refs: Sequence[str], destination: Path, *, format: str = OCI,
    force: bool = False, on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> ExportResult:
    """Write the images `refs` name to `destination` (see the module's doc)."""
    started = time.monotonic()
    as_tar = _as_tar(destination, format)
    plan = plan_export(registry, refs, format=format)
    _check_destination(destination, force, registry.datadir.root)
    files = len(plan.blobs) + len(plan.manifests) + 4
    check_free_space(destination, plan.bytes + TAR_OVERHEAD * files)
    destination.parent.mkdir(parents=True, exist_ok=True)
    run = _Export(registry, len(plan.images), plan.bytes, on_progress, should_stop)
    with _beside(destination) as temporary:
        writer: Writer = TarWriter(temporary) if as_tar else DirWriter(temporary)
        try:
            run.write(writer, plan)
            writer.close()
        except BaseException:
            if isinstance(writer, TarWriter):
                writer.abandon()
            raise
    return ExportResult(str(destination), format,
                        tuple({"reference": i.reference, "digest": str(i.digest)}
                              for i in plan.images),
                        len(plan.blobs), plan.bytes, time.monotonic() - started)


def _as_tar(destination: Path, format: str) -> bool:
    name = destination.name.lower()
    if name.endswith((".gz", ".tgz", ".zst", ".xz", ".bz2")):
        raise TransferError(f"{destination}: compressed exports are not written (layers are "
                            "compressed already); name it .tar")
    return format == DOCKER_ARCHIVE or name.endswith(".tar")


def _check_destination(destination: Path, force: bool, datadir: Path) -> None:
    refuse_inside_datadir(destination, datadir, "export to")
    if force or not destination.exists():
        return
    if destination.is_dir() and not any(destination.iterdir()):
        return
    raise DestinationExists(f"{destination} exists and is not empty (--force overwrites it)")


def refuse_inside_datadir(path: Path, datadir: Path, doing: str) -> None:
    """TransferError when `path` is the data dir, holds it, or is inside it (symlinks
    followed): an export there, forced, would replace the registry."""
    where, root = path.resolve(), datadir.resolve()
    if where == root or root in where.parents or where in root.parents:
        raise TransferError(f"cannot {doing} {path}: it is, holds or is inside the "
                            f"registry's data dir {root}")


def check_free_space(destination: Path, needed: int) -> None:
    """NotEnoughRoom when the destination's volume has less than `needed` bytes free."""
    where = destination.parent.resolve()
    while not where.exists():
        where = where.parent
    st = os.statvfs(where)
    free = st.f_bavail * st.f_frsize
    if needed > free:
        raise NotEnoughRoom(f"not enough space at {where}: the export needs {needed} bytes, "
                            f"{free} are free")


@contextlib.contextmanager
def _beside(destination: Path) -> Iterator[Path]:
    """A temporary path next to `destination`, renamed over it when the block succeeds."""
    temporary = destination.parent / f".{destination.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        yield temporary
        old = destination.parent / f".{destination.name}.old-{uuid.uuid4().hex[:8]}"
        if destination.exists() or destination.is_symlink():
            destination.rename(old)
        temporary.rename(destination)
        fsync_dir(destination.parent)
        _remove(old)
    finally:
        _remove(temporary)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _one_platform(registry: Registry, image: ExportImage) -> ExportImage:
    """A docker-archive holds image manifests only: an index gives way to the child for
    this machine's platform."""
    body, media_type = image.manifests[image.digest]
    parsed = parse_manifest(body, media_type)
    if not parsed.is_index:
        return image
    wanted = f"linux/{_ARCH.get(platform.machine(), platform.machine())}"
    for child in parsed.child_descriptors():
        if child.platform is not None and str(child.platform).startswith(wanted):
            one = _gather(registry, ImageName(image.repository, None, child.digest))
            one.tag = image.tag
            return one
    raise TransferError(f"{image.reference} has no {wanted} image for a docker-archive "
                        "(export it with --format oci, or name a child by digest)")


class _Export:
    def __init__(self, registry: Registry, images: int, total: int,
                 on_progress: ProgressCallback | None, should_stop: StopCheck | None) -> None:
        self.registry = registry
        self.images = images
        self.total = total
        self.done = 0
        self.on_progress = on_progress
        self.should_stop = should_stop or (lambda: False)
        self.item = ""

    def _count(self, n: int) -> None:
        if self.should_stop():
            raise TransferCancelled("export cancelled: nothing was written")
        self.done += n
        if self.on_progress is not None:
            self.on_progress(Progress("writing", self.done, self.total, 0, self.images,
                                      self.item))

    def write(self, writer: Writer, plan: ExportPlan) -> None:
        writer.add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        for digest, size in plan.blobs.items():
            self.item = str(digest)
            self._count(0)
            writer.add_blob(blob_member(digest), self.registry.blob_store, digest, size,
                            self._count)
        for digest, (body, _) in plan.manifests.items():
            writer.add_bytes(blob_member(digest), body)
            self._count(len(body))
        images = list(plan.images)
        writer.add_bytes("index.json", index_json(images))
        if plan.format == DOCKER_ARCHIVE:
            writer.add_bytes("manifest.json", docker_manifest_json(images))
        if self.on_progress is not None:
            self.on_progress(Progress("done", self.done, self.total, self.images,
                                      self.images))


def index_json(images: list[ExportImage]) -> bytes:
    tags = [i.tag for i in images if i.tag]
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    for image in images:
        body, media_type = image.manifests[image.digest]
        annotations = {IMAGE_NAME: image.reference}
        if image.tag:
            shared = tags.count(image.tag) > 1
            annotations[REF_NAME] = image.reference if shared else image.tag
        entries[(image.reference, str(image.digest))] = {
            "mediaType": media_type, "digest": str(image.digest), "size": len(body),
            "annotations": annotations,
        }
    for image in images:
        for digest, (body, media_type) in image.manifests.items():
            if _is_referrer(body, media_type) and ("", str(digest)) not in entries:
                entries[("", str(digest))] = {"mediaType": media_type, "digest": str(digest),
                                              "size": len(body)}
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(entries.values())}
    return json.dumps(doc, indent=2).encode()


def _is_referrer(body: bytes, media_type: str) -> bool:
    return parse_manifest(body, media_type).subject is not None


def docker_manifest_json(images: list[ExportImage]) -> bytes:
    by_digest: dict[Digest, dict[str, Any]] = {}
    for image in images:
        body, media_type = image.manifests[image.digest]
        parsed = parse_manifest(body, media_type)
        if parsed.config is None:
            raise TransferError(f"{image.reference} is not an image with a config")
        entry = by_digest.setdefault(image.digest, {
            "Config": blob_member(parsed.config.digest), "RepoTags": [],
            "Layers": [blob_member(layer.digest) for layer in parsed.layers],
        })
        if image.tag:
            entry["RepoTags"].append(image.reference)
    return json.dumps(list(by_digest.values())).encode()
