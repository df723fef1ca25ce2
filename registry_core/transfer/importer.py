"""Importing a layout or archive: blobs streamed in with their hashes checked, then each image
committed whole.

Every blob the registry lacks is copied once (whichever images share it) into
`<data dir>/transfer/partial/<run>/`, hashed as it streams and fsynced; blobs already here
are not read at all. Only when every blob is in and checked do the commits begin
(`registry.ingest.commit_many`, MAX_BATCH images a transaction): a bad file, a wrong digest
or a cancel before then stores nothing. The partial files go whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry_core.identity import Identity
from registry_core.ingest import IngestBlob, IngestImage, IngestManifest
from registry_core.reference import Digest
from registry_core.registry import Registry
from registry_core.store.blobs import write_hashed
from registry_core.store.full import refused_when_full
from registry_core.transfer.errors import SourceInvalid, TransferCancelled
from registry_core.transfer.model import (
    Progress,
    ProgressCallback,
    SourceBlob,
    SourceImage,
    StopCheck,
)
from registry_core.transfer.plan import ImportPlan, distinct_blobs, make_plan, read_images
from registry_core.transfer.source import Source, open_source

MAX_BATCH = 64
"""Images per commit transaction at most (the write lock is not held long)."""
STALE_PARTIAL = 24 * 3600.0
"""A run directory untouched this long was left by a killed import: removed."""


@dataclass(frozen=True)
class ImportedImage:
    repository: str
    tags: tuple[str, ...]
    digest: str
    created: int
    """Manifests new in the repository."""
    moved_tags: dict[str, str]
    """Tags that pointed at another manifest before: tag -> that digest."""

    def to_json(self) -> dict[str, Any]:
        return {"repository": self.repository, "tags": list(self.tags),
                "digest": self.digest, "manifests_created": self.created,
                "moved_tags": self.moved_tags}


@dataclass(frozen=True)
class ImportResult:
    plan: ImportPlan
    images: tuple[ImportedImage, ...]
    blobs_copied: int
    bytes_copied: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"source": self.plan.source, "format": self.plan.format,
                "images": [i.to_json() for i in self.images],
                "blobs_copied": self.blobs_copied, "bytes_copied": self.bytes_copied,
                "blobs_present": self.plan.blobs - self.plan.new_blobs,
                "seconds": round(self.seconds, 3)}


def preview(registry: Registry, path: Path, *, tag: str | None = None,
            repository: str | None = None) -> ImportPlan:
    """What `import_images` would store, and which blobs are here already; writes nothing."""
    with _opened(path) as source:
        kind, images = read_images(source, tag, repository)
        return make_plan(registry, source, kind, images)[0]


def import_images(
    registry: Registry, path: Path, *, who: Identity, tag: str | None = None,
    repository: str | None = None, on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> ImportResult:
    """Store every image of the layout or archive at `path` (see the module's doc)."""
    started = time.monotonic()
    if on_progress is not None:  # listing a big gzip archive takes a while: say so
        on_progress(Progress("reading", 0, 0, 0, 0, str(path)))
    _refuse_work_dir(registry, path)
    with _opened(path) as source:
        kind, images = read_images(source, tag, repository)
        plan, present = make_plan(registry, source, kind, images)
        registry.check_room(plan.new_bytes)
        run = _Run(registry, source, plan, on_progress, should_stop)
        with run.directory():
            missing = {d: b for d, b in distinct_blobs(images).items() if d not in present}
            copied = run.copy(missing)
            done = run.commit(images, copied, who)
    return ImportResult(plan, tuple(done), len(copied), sum(b.size for b in missing.values()),
                        time.monotonic() - started)


def _refuse_work_dir(registry: Registry, path: Path) -> None:
    """An import's work dir is swept of old runs: a source there could vanish mid-read."""
    work = (registry.datadir.root / "transfer").resolve()
    where = path.resolve()
    if where == work or work in where.parents:
        raise SourceInvalid(f"{path} is inside the registry's import work dir {work}: "
                            "move it out first")


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[Source]:
    source = open_source(path)
    try:
        yield source
    finally:
        source.close()


class _Run:
    def __init__(self, registry: Registry, source: Source, plan: ImportPlan,
                 on_progress: ProgressCallback | None, should_stop: StopCheck | None) -> None:
        self.registry = registry
        self.source = source
        self.plan = plan
        self.on_progress = on_progress
        self.should_stop = should_stop or (lambda: False)
        self.root = registry.datadir.root / "transfer" / "partial"
        self.partial = self.root / uuid.uuid4().hex
        self.bytes_done = 0

    @contextlib.contextmanager
    def directory(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        _remove_stale(self.root)
        self.partial.mkdir(mode=0o700)
        try:
            yield
        finally:
            shutil.rmtree(self.partial, ignore_errors=True)

    def _tell(self, phase: str, images_done: int, item: str) -> None:
        if self.on_progress is not None:
            self.on_progress(Progress(phase, self.bytes_done, self.plan.new_bytes, images_done,
                                      len(self.plan.images), item))

    def _stop_if_asked(self, stored: int = 0) -> None:
        if self.should_stop():
            raise TransferCancelled("import cancelled: nothing was stored" if not stored else
                                    f"import cancelled after {stored} of "
                                    f"{len(self.plan.images)} images")

    def copy(self, blobs: dict[Digest, SourceBlob]) -> dict[Digest, Path]:
        """Each blob into the run's directory, hashed on the way; their paths."""
        by_member = {b.member: b for b in blobs.values()}
        paths: dict[Digest, Path] = {}
        for member, chunks in self.source.stream(list(by_member)):
            self._stop_if_asked()
            blob = by_member[member]
            paths[blob.digest] = self._copy_one(blob, chunks)
        return paths

    def _copy_one(self, blob: SourceBlob, chunks: Iterator[bytes]) -> Path:
        target = self.partial / f"{blob.digest.algorithm}-{blob.digest.hex}"
        hasher = blob.digest.hasher()
        size = 0
        self._tell("copying", 0, str(blob.digest))
        with refused_when_full("importing a blob"), open(target, "xb", buffering=0) as file:
            for chunk in chunks:
                self._stop_if_asked()
                write_hashed(file, hasher, chunk, size)
                size += len(chunk)
                self.bytes_done += len(chunk)
                self._tell("copying", 0, str(blob.digest))
            os.fsync(file.fileno())
        actual = Digest(blob.digest.algorithm, hasher.hexdigest())
        if size != blob.size or actual != blob.digest:
            raise SourceInvalid(f"{self.source.path}: {blob.member} does not match its digest "
                                f"{blob.digest} ({size} bytes hashing to {actual})")
        return target

    def commit(self, images: list[SourceImage], copied: dict[Digest, Path],
               who: Identity) -> list[ImportedImage]:
        done: list[ImportedImage] = []
        for start in range(0, len(images), MAX_BATCH):
            if start:
                self._stop_if_asked(len(done))
            batch = images[start : start + MAX_BATCH]
            self._tell("committing", len(done), batch[0].name)
            results = self.registry.ingest.commit_many(
                [_ingest_image(i, copied) for i in batch], who=who)
            done += [ImportedImage(i.repository, tuple(i.tags), str(i.digest), r.created,
                                   r.moved_tags)
                     for i, r in zip(batch, results, strict=True)]
        self._tell("done", len(done), "")
        return done


def _ingest_image(image: SourceImage, copied: dict[Digest, Path]) -> IngestImage:
    return IngestImage(
        image.repository,
        [IngestBlob(d, b.size, copied.get(d)) for d, b in image.blobs.items()],
        [IngestManifest(m.body, m.media_type) for m in image.manifests],
        {tag: image.digest for tag in image.tags},
    )


def _remove_stale(root: Path) -> None:
    cutoff = time.time() - STALE_PARTIAL
    for entry in root.iterdir():
        with contextlib.suppress(OSError):
            if entry.is_dir() and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
