"""One sync pass from the parent: which tags changed, and each changed image copied whole.

For every repository in scope: list the parent's tags (filtered), `HEAD` each one and compare
its digest with the local tag; for a changed tag, fetch the manifest (an index with every
child), its referrers, then every blob not stored here yet (from any repository), streamed
to `<data dir>/sync/partial/` with the digest checked and resumed there after a cut; then one
transaction (`registry.ingest`) makes it all visible with the tag. Between blobs the pass
asks `should_stop` (the window closed, a cancel): it then stops at that blob boundary, and
the partial files stay for the next run.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from registry_core import browse
from registry_core.errors import EdgeError
from registry_core.identity import SYNC
from registry_core.ingest import IngestBlob, IngestImage, IngestManifest
from registry_core.manifests import Manifest, parse_manifest
from registry_core.reference import parse_digest
from registry_core.registry import Registry
from registry_core.sync.client import Descriptor, FetchedManifest, ManifestHead
from registry_core.sync.errors import ParentNotFound
from registry_core.sync.group_commit import GroupCommit
from registry_core.sync.push import Pushed, push_up
from registry_core.sync.reconcile import decide

log = logging.getLogger("edge_registry.sync")
T = TypeVar("T")


class SyncStopped(Exception):
    """The pass stopped at a blob boundary (window closed, or cancelled)."""


class TagGone(EdgeError):
    """The parent has no such tag (any more)."""


class Parent(Protocol):
    """What a pass asks of the parent registry (sync/client.py's ParentClient)."""

    def catalog(self) -> list[str]: ...

    def tags(self, repository: str) -> list[str]: ...

    def head_manifest(self, repository: str, reference: str) -> ManifestHead | None: ...

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest: ...

    def fetch_blob(self, repository: str, digest: str, target: Path, size: int | None = None,
                   progress: Callable[[int], None] | None = None) -> int: ...

    def referrers(self, repository: str, digest: str) -> list[Descriptor]: ...

    def blob_exists(self, repository: str, digest: str) -> bool: ...

    def push_blob(self, repository: str, digest: str, source: Path, size: int) -> None: ...

    def put_manifest(self, repository: str, reference: str, body: bytes,
                     media_type: str) -> str: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Scope:
    """What to sync: repository names or glob patterns, and tag regexes (none: every tag)."""

    repositories: tuple[str, ...]
    tag_filters: tuple[str, ...] = ()

    def wants_tag(self, tag: str) -> bool:
        return not self.tag_filters or any(re.fullmatch(f, tag) for f in self.tag_filters)

    @property
    def needs_catalog(self) -> bool:
        return any(_is_pattern(p) for p in self.repositories)


@dataclass
class PassReport:
    repositories: int = 0
    tags_checked: int = 0
    tags_changed: int = 0
    manifests_copied: int = 0
    blobs_copied: int = 0
    bytes_copied: int = 0
    manifests_pushed: int = 0
    blobs_uploaded: int = 0
    bytes_uploaded: int = 0
    blobs_mounted: int = 0
    errors: list[str] = field(default_factory=list)
    conflicts: list[dict[str, str]] = field(default_factory=list)
    stopped: bool = False

    def add_pushed(self, pushed: Pushed) -> None:
        self.manifests_pushed += pushed.manifests
        self.blobs_uploaded += pushed.blobs_uploaded
        self.bytes_uploaded += pushed.bytes_uploaded
        self.blobs_mounted += pushed.blobs_mounted


@dataclass
class _Image:
    """One changed tag's content, gathered before the commit."""

    repository: str
    tag: str
    manifests: list[FetchedManifest] = field(default_factory=list)
    """Bottom-up: children, then the tagged manifest, then its referrers."""
    blobs: dict[str, int] = field(default_factory=dict)
    """digest -> size, every blob the manifests reference."""


class SyncPass:
    """One pass over the scope; reusable state: none (make one per run)."""

    def __init__(
        self, registry: Registry, parent: Parent, scope: Scope, *,
        parallel: int = 4, should_stop: Callable[[], bool] = lambda: False,
        progress: Callable[[str, int], None] | None = None, read_write: bool = False,
    ) -> None:
        self.registry = registry
        self.read_write = read_write
        self.parent = parent
        self.scope = scope
        self.parallel = max(1, parallel)
        self.should_stop = should_stop
        self.progress = progress
        self.partial = registry.datadir.root / "sync" / "partial"
        self.report = PassReport()
        self._lock = threading.Lock()
        self._commits = GroupCommit(registry.ingest, SYNC)
        self._fetching: dict[str, Future[IngestBlob]] = {}
        """Blobs being downloaded, for the images that share them."""

    def run(self) -> PassReport:
        self.partial.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._pools():
            try:
                for repository in self.repositories():
                    self.report.repositories += 1
                    self._repository(repository)
            except SyncStopped:
                self.report.stopped = True
        return self.report

    @contextlib.contextmanager
    def _pools(self) -> Iterator[None]:
        """Tags in parallel (latency: many small images), and blobs in parallel under one
        bound shared by all of them (`parallel` transfers at most)."""
        with ThreadPoolExecutor(self.parallel, thread_name_prefix="sync-tag") as tags, \
                ThreadPoolExecutor(self.parallel, thread_name_prefix="sync-blob") as blobs:
            self._tag_pool, self._blob_pool = tags, blobs
            yield

    def _each(self, items: list[T], work: Callable[[T], object]) -> None:
        """`work` over `items`, `parallel` at a time; SyncStopped once all have ended."""
        futures = [self._tag_pool.submit(work, item) for item in items]
        stopped = False
        for future in futures:
            try:
                future.result()
            except SyncStopped:
                stopped = True
        if stopped:
            raise SyncStopped()

    def repositories(self) -> list[str]:
        names = [p for p in self.scope.repositories if not _is_pattern(p)]
        if self.scope.needs_catalog:
            patterns = [p for p in self.scope.repositories if _is_pattern(p)]
            found = self.parent.catalog()
            if self.read_write:  # a repository pushed here first goes up too
                found += self.registry.catalog().items
            names += [r for r in found if any(fnmatch.fnmatchcase(r, p) for p in patterns)]
        return sorted(set(names))

    def _repository(self, repository: str) -> None:
        try:
            tags = [t for t in self.parent.tags(repository) if self.scope.wants_tag(t)]
        except EdgeError as exc:
            self.report.errors.append(f"{repository}: {exc}")
            return
        if not self.read_write:
            self._each(sorted(tags), lambda tag: self._tag(repository, tag))
            return
        local = {t: d for t, d in local_tags(self.registry, repository).items()
                 if self.scope.wants_tag(t)}
        bases = self.registry.store.sync_tags.bases(repository)
        self._each(sorted(set(tags) | set(local)), lambda tag: self._reconcile(
            repository, tag, local.get(tag), bases.get(tag), tag in tags))

    def _reconcile(self, repository: str, tag: str, local: str | None, base: str | None,
                   on_parent: bool) -> None:
        try:
            head = self.parent.head_manifest(repository, tag) if on_parent else None
            way = decide(local, None if head is None else head.digest, base)
            if way in ("pull", "conflict"):
                digest, _ = self._tag(repository, tag, gone_is_error=True)
                if digest is None:
                    return  # the error is in the report; no agreement to record
                if way == "conflict":
                    self._conflict(repository, tag, local, head)
            elif way == "push" and local is not None:
                pushed = push_up(self.registry, self.parent, repository, tag, local)
                with self._lock:
                    self.report.add_pushed(pushed)
            agreed = self._local_digest(repository, tag)
            if agreed is not None and way != "none":
                with self.registry.store.exclusive():
                    self.registry.store.sync_tags.agree(repository, tag, agreed)
        except EdgeError as exc:
            with self._lock:
                self.report.errors.append(f"{repository}:{tag}: {exc}")

    def _conflict(self, repository: str, tag: str, local: str | None,
                  head: ManifestHead | None) -> None:
        with self._lock:
            self.report.conflicts.append({
                "repository": repository, "tag": tag, "local": local or "",
                "parent": head.digest if head else "", "kept": "parent",
            })

    def run_tags(self, pairs: list[tuple[str, str]],
                 on_tag: Callable[[str, str, str | None, str], None]) -> PassReport:
        """Copy these `repository:tag` now, whatever the scope (staging); `on_tag(repository,
        tag, digest, error)` after each: the parent's digest, or None and why not."""
        self.partial.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.report.repositories = len({r for r, _ in pairs})

        def one(pair: tuple[str, str]) -> None:
            digest, error = self._tag(*pair, gone_is_error=True)
            on_tag(pair[0], pair[1], digest, error)

        with self._pools():
            try:
                self._each(pairs, one)
            except SyncStopped:
                self.report.stopped = True
        return self.report

    def _tag(self, repository: str, tag: str,
             gone_is_error: bool = False) -> tuple[str | None, str]:
        """Copy one tag; (the parent's digest, '') or (None, what went wrong)."""
        self._stop_if_asked()
        with self._lock:
            self.report.tags_checked += 1
        try:
            return self.copy(repository, tag), ""
        except TagGone as exc:  # the tag went between the list and now
            if not gone_is_error:
                return None, ""
            error = str(exc)
        except EdgeError as exc:
            error = str(exc)
            log.warning("sync %s:%s: %s", repository, tag, exc)
        with self._lock:
            self.report.errors.append(f"{repository}:{tag}: {error}")
        return None, error

    def copy(self, repository: str, tag: str) -> str:
        """Make the local tag what the parent's is (if it differs); the parent's digest."""
        top: FetchedManifest | None = None
        local = self._local_digest(repository, tag)
        if local is None:  # new here: no HEAD, the GET says
            try:
                top = self.parent.get_manifest(repository, tag)
            except ParentNotFound:
                raise TagGone(f"{repository}:{tag} is not on the parent") from None
            digest = top.digest
        else:
            head = self.parent.head_manifest(repository, tag)
            if head is None:
                raise TagGone(f"{repository}:{tag} is not on the parent")
            if local == head.digest:
                return head.digest
            digest = head.digest
        with self._lock:
            self.report.tags_changed += 1
        image = self._gather(repository, tag, digest, top)
        blobs = self._download(image)
        self._stop_if_asked()
        result = self._commits.commit(IngestImage(
            repository, blobs,
            [IngestManifest(m.body, m.media_type) for m in image.manifests],
            {tag: parse_digest(digest)},
        ))
        with self._lock:
            self.report.manifests_copied += result.created
        for blob in blobs:
            if blob.path is not None:
                blob.path.unlink(missing_ok=True)  # left only if the blob was already there
        return digest

    def _local_digest(self, repository: str, tag: str) -> str | None:
        try:
            return str(self.registry.get_manifest(repository, tag).digest)
        except EdgeError:
            return None

    # ---- gathering the manifests ---------------------------------------------------------------

    def _gather(self, repository: str, tag: str, digest: str,
                fetched: FetchedManifest | None) -> _Image:
        image = _Image(repository, tag)
        top = self._add(image, fetched or self.parent.get_manifest(repository, digest))
        for child in top.child_descriptors():
            self._manifest(image, str(child.digest))
        image.manifests.append(image.manifests.pop(0))  # the tagged one after its children
        for referrer in self.parent.referrers(repository, digest):
            self._manifest(image, referrer.digest)
        return image

    def _manifest(self, image: _Image, digest: str) -> Manifest:
        return self._add(image, self.parent.get_manifest(image.repository, digest))

    @staticmethod
    def _add(image: _Image, fetched: FetchedManifest) -> Manifest:
        manifest = parse_manifest(fetched.body, fetched.media_type)
        image.manifests.append(fetched)
        for blob in manifest.blob_descriptors():
            image.blobs[str(blob.digest)] = blob.size
        return manifest

    # ---- blobs ---------------------------------------------------------------------------------

    def _download(self, image: _Image) -> list[IngestBlob]:
        missing = {d: s for d, s in image.blobs.items() if not self.registry.has_blob(d)}
        present = [IngestBlob(parse_digest(d), s) for d, s in image.blobs.items()
                   if d not in missing]
        with self._lock:
            futures = [self._fetch(image.repository, d, s) for d, s in missing.items()]
        return present + [f.result() for f in futures]

    def _fetch(self, repository: str, digest: str, size: int) -> Future[IngestBlob]:
        """One download per blob, whichever images need it; called with the lock held."""
        fetching = self._fetching.get(digest)
        if fetching is None or (fetching.done() and fetching.exception() is not None):
            fetching = self._blob_pool.submit(self._blob, repository, digest, size)
            self._fetching[digest] = fetching
        return fetching

    def _blob(self, repository: str, digest: str, size: int) -> IngestBlob:
        self._stop_if_asked()
        target = self.partial / digest.replace(":", "-")
        self.parent.fetch_blob(repository, digest, target, size, self._on_bytes)
        with self._lock:
            self.report.blobs_copied += 1
        return IngestBlob(parse_digest(digest), size, target)

    def _on_bytes(self, count: int) -> None:
        with self._lock:
            self.report.bytes_copied += count
        if self.progress is not None:
            self.progress("bytes", count)

    def _stop_if_asked(self) -> None:
        if self.should_stop():
            raise SyncStopped()


def local_tags(registry: Registry, repository: str) -> dict[str, str]:
    """Tag -> digest of a local repository ({} when it has none)."""
    try:
        return {row.tag: row.digest for row in browse.tags(registry, repository)}
    except EdgeError:
        return {}


def _is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[")
