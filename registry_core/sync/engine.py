"""One sync pass from the parent: which tags changed, and each changed image copied whole.

For every repository in scope: list the parent's tags (filtered), `HEAD` each one and compare
its digest with the local tag; for a changed tag, fetch the manifest (an index with every
child), its referrers (and its children's), then every blob not stored here yet (from any
repository), streamed to `<data dir>/sync/partial/` with the digest checked and resumed there
after a cut; then one transaction (`registry.ingest`) makes it all visible with the tag. An
unchanged tag costs its `HEAD`, plus one referrers request per manifest where the parent has
the referrers API (a referrer pushed since arrives; with the tag fallback it is a tag anyway).
Between blobs the pass asks `should_stop` (the window closed, a cancel): it then stops at that
blob boundary, and the partial files stay for the next run.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from registry_core import browse
from registry_core.errors import EdgeError, StorageFull
from registry_core.identity import SYNC
from registry_core.ingest import IngestBlob, IngestImage, IngestManifest
from registry_core.manifests import Manifest, parse_manifest
from registry_core.reference import parse_digest
from registry_core.registry import Registry
from registry_core.store.full import refused_when_full
from registry_core.sync.client import Descriptor, FetchedManifest, ManifestHead
from registry_core.sync.errors import ParentError, ParentNotFound, ParentUnreachable
from registry_core.sync.group_commit import GroupCommit
from registry_core.sync.progress import RepositoryCounts
from registry_core.sync.push import Pushed, push_up
from registry_core.sync.reconcile import conflict, decide, drop, keep_loser, release_loser
from registry_core.sync.scope import Scope, is_pattern

__all__ = ["Parent", "PassReport", "Scope", "SyncPass", "SyncStopped", "TagGone",
           "local_tags"]

log = logging.getLogger("edge_registry.sync")
T = TypeVar("T")


class SyncStopped(Exception):
    """The pass stopped at a blob boundary (window closed, or cancelled)."""


class TagGone(EdgeError):
    """The parent has no such tag (any more)."""


class Parent(Protocol):
    """What a pass asks of the parent registry (sync/client.py's ParentClient)."""

    referrers_api: bool | None
    """Whether the parent has the referrers API (None: not learned yet)."""

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
    parent_answered: bool = False
    """The parent answered at least once (a listing, a manifest, even an error status):
    False with errors means it was never reached (Offline, not failed tags)."""
    parent_lost: bool = False
    """A request had no answer at all through its retries (the client gives up on the parent
    then: every later request fails the same way): the uplink went, Offline too."""

    def add_pushed(self, pushed: Pushed) -> None:
        self.manifests_pushed += pushed.manifests
        self.blobs_uploaded += pushed.blobs_uploaded
        self.bytes_uploaded += pushed.bytes_uploaded
        self.blobs_mounted += pushed.blobs_mounted

    @property
    def parent_reachable(self) -> bool:
        return (self.parent_answered and not self.parent_lost) or not self.errors


@dataclass
class _Image:
    """One changed tag's content, gathered before the commit."""

    repository: str
    tag: str
    manifests: list[FetchedManifest] = field(default_factory=list)
    """Bottom-up: children, then the tagged manifest, then the referrers."""
    blobs: dict[str, int] = field(default_factory=dict)
    """digest -> size, every blob the manifests reference."""


class SyncPass:
    """One pass over the scope; reusable state: none (make one per run). `progress(urgent)`
    is told when the per-repository figures (`repositories`) changed."""

    def __init__(
        self, registry: Registry, parent: Parent, scope: Scope, *,
        parallel: int = 4, should_stop: Callable[[], bool] = lambda: False,
        progress: Callable[[bool], None] | None = None, read_write: bool = False,
    ) -> None:
        self.registry = registry
        self.read_write = read_write
        self.parent = parent
        self.scope = scope
        self.parallel = max(1, parallel)
        self.should_stop = should_stop
        self.partial = registry.datadir.root / "sync" / "partial"
        self.report = PassReport()
        self.repositories = RepositoryCounts(progress)
        self._lock = threading.Lock()
        self.transfers = threading.BoundedSemaphore(self.parallel)
        """Held by each blob download and upload: `parallel` transfers at most, both ways."""
        self._commits = GroupCommit(registry.ingest, SYNC)
        self._blobs = _Blobs(self)
        self._manifests = _Manifests(registry, parent)

    def run(self) -> PassReport:
        self.partial.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._pools():
            try:
                names = self.in_scope()
                self.repositories.waiting(names)
                for repository in names:
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
            self._tag_pool, self._blobs.pool = tags, blobs
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

    def in_scope(self) -> list[str]:
        names = self.scope.names
        if self.scope.needs_catalog:
            patterns = [p for p in self.scope.repositories if is_pattern(p)]
            found = self.parent.catalog()
            self.report.parent_answered = True
            if self.read_write:  # a repository pushed here first goes up too
                found += self.registry.catalog().items
            names += [r for r in found if any(fnmatch.fnmatchcase(r, p) for p in patterns)]
        return sorted(set(names))

    def _repository(self, repository: str) -> None:
        try:
            tags = [t for t in self.parent.tags(repository) if self.scope.wants_tag(t)]
        except EdgeError as exc:
            self._answered(exc)
            self.report.errors.append(f"{repository}: {exc}")
            self.repositories.end(repository, str(exc))
            return
        self.report.parent_answered = True
        self._tags(repository, tags)
        self.repositories.end(repository)  # not when stopped: it resumes next run

    def _tags(self, repository: str, tags: list[str]) -> None:
        if not self.read_write:
            self.repositories.begin(repository, len(tags))
            self._each(sorted(tags), lambda tag: self._tag(repository, tag))
            return
        local = {t: d for t, d in local_tags(self.registry, repository).items()
                 if self.scope.wants_tag(t)}
        bases = self.registry.store.sync_tags.bases(repository)
        both = sorted(set(tags) | set(local))
        self.repositories.begin(repository, len(both))
        self._each(both, lambda tag: self._reconcile(
            repository, tag, local.get(tag), bases.get(tag), tag in tags))

    def _reconcile(self, repository: str, tag: str, local: str | None, base: str | None,
                   on_parent: bool) -> None:
        try:
            head = self.parent.head_manifest(repository, tag) if on_parent else None
            way = decide(local, None if head is None else head.digest, base)
            if way in ("pull", "conflict"):
                kept = way == "conflict" and keep_loser(self.registry, repository, tag, local,
                                                        head.digest if head else None)
                digest, _ = self._tag(repository, tag, gone_is_error=True)
                if digest is None:
                    if kept:  # the tag stayed here: nothing was lost
                        release_loser(self.registry, repository, local)
                    return  # the error is in the report; no agreement to record
                if way == "conflict":
                    with self._lock:
                        self.report.conflicts.append(conflict(repository, tag, local, head))
            elif way == "push" and local is not None:
                pushed = push_up(self.registry, self.parent, repository, tag, local,
                                 self.transfers)
                with self._lock:
                    self.report.add_pushed(pushed)
            elif way == "drop":  # deleted on the parent, unchanged here: untagged, agreed absent
                dropped = drop(self.registry, repository, tag)
                with self._lock:
                    self.report.conflicts.append(dropped)
                return
            agreed = self._local_digest(repository, tag)
            if agreed is not None and way != "none":
                with self.registry.store.exclusive():
                    self.registry.store.sync_tags.agree(repository, tag, agreed)
        except EdgeError as exc:
            self._answered(exc)
            self._failed(repository, f"{repository}:{tag}: {exc}")

    def run_tags(self, pairs: list[tuple[str, str]],
                 on_tag: Callable[[str, str, str | None, str], None],
                 on_begin: Callable[[str, str], None] | None = None) -> PassReport:
        """Copy these `repository:tag` now, whatever the scope (staging); `on_begin(repository,
        tag)` as each starts (the others wait for a transfer slot), `on_tag(repository, tag,
        digest, error)` after each: the parent's digest, or None and why not."""
        self.partial.mkdir(parents=True, exist_ok=True, mode=0o700)
        left = Counter(r for r, _ in pairs)
        self.report.repositories = len(left)
        for repository, total in left.items():
            self.repositories.begin(repository, total)

        def one(pair: tuple[str, str]) -> None:
            try:
                if on_begin is not None:
                    on_begin(*pair)
                digest, error = self._tag(*pair, gone_is_error=True)
                on_tag(pair[0], pair[1], digest, error)
            finally:
                with self._lock:
                    left[pair[0]] -= 1
                    last = left[pair[0]] == 0
                if last:
                    self.repositories.end(pair[0])

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
        self.count(repository, tags_checked=1)
        try:
            return self.copy(repository, tag), ""
        except TagGone as exc:  # the tag went between the list and now
            if not gone_is_error:
                return None, ""
            error = str(exc)
        except EdgeError as exc:
            self._answered(exc)
            error = str(exc)
            log.warning("sync %s:%s: %s", repository, tag, exc)
        self._failed(repository, f"{repository}:{tag}: {error}")
        return None, error

    def _answered(self, exc: EdgeError) -> None:
        """An error status from the parent is an answer; no answer at all is not, and
        loses the parent for the rest of the run."""
        if isinstance(exc, ParentUnreachable) and exc.status == 0:
            self.report.parent_lost = True
        elif isinstance(exc, ParentError):
            self.report.parent_answered = True

    def _failed(self, repository: str, error: str) -> None:
        with self._lock:
            self.report.errors.append(error)
        self.repositories.failed(repository, error)

    def count(self, repository: str, tell: bool = False, **deltas: int) -> None:
        """Add to the pass's counters and to the repository's."""
        with self._lock:
            for name, n in deltas.items():
                setattr(self.report, name, getattr(self.report, name) + n)
        self.repositories.add(repository, deltas, tell)

    def copy(self, repository: str, tag: str) -> str:
        """Make the local tag what the parent's is (if it differs); the parent's digest."""
        top: FetchedManifest | None = None
        local = self._local_digest(repository, tag)
        if local is None:  # new here: no HEAD, the GET says
            try:
                top = self.parent.get_manifest(repository, tag)
            except ParentNotFound:
                self.report.parent_answered = True
                raise TagGone(f"{repository}:{tag} is not on the parent") from None
            digest = top.digest
        else:
            head = self.parent.head_manifest(repository, tag)
            self.report.parent_answered = True
            if head is None:
                raise TagGone(f"{repository}:{tag} is not on the parent")
            if local == head.digest:
                since = self._manifests.new_referrers(repository, tag, local)
                if since is not None:
                    self._commit(since, {})
                return head.digest
            digest = head.digest
        self.report.parent_answered = True  # whatever fails next (the disk, say)
        self.count(repository, tags_changed=1)
        image = self._manifests.gather(repository, tag, digest, top)
        self._commit(image, {tag: digest})
        return digest

    def _commit(self, image: _Image, tags: dict[str, str]) -> None:
        blobs = self._blobs.download(image)
        self._stop_if_asked()
        result = self._commits.commit(IngestImage(
            image.repository, blobs,
            [IngestManifest(m.body, m.media_type) for m in image.manifests],
            {t: parse_digest(d) for t, d in tags.items()},
        ))
        self.count(image.repository, tell=True, manifests_copied=result.created)
        for blob in blobs:
            if blob.path is not None:
                blob.path.unlink(missing_ok=True)  # left only if the blob was already there

    def _local_digest(self, repository: str, reference: str) -> str | None:
        return local_digest(self.registry, repository, reference)

    def _stop_if_asked(self) -> None:
        if self.should_stop():
            raise SyncStopped()


class _Manifests:
    """The manifests of an image from the parent: an index with its children, then the
    referrers of each, bottom-up as one commit wants them."""

    def __init__(self, registry: Registry, parent: Parent) -> None:
        self.registry = registry
        self.parent = parent

    def gather(self, repository: str, tag: str, digest: str,
               fetched: FetchedManifest | None) -> _Image:
        image = _Image(repository, tag)
        top = self._add(image, fetched or self.parent.get_manifest(repository, digest))
        children = [str(child.digest) for child in top.child_descriptors()]
        for child in children:
            self._manifest(image, child)
        image.manifests.append(image.manifests.pop(0))  # the tagged one after its children
        for subject in (digest, *children):
            for referrer in self.parent.referrers(repository, subject):
                self._manifest(image, referrer.digest)
        return image

    def new_referrers(self, repository: str, tag: str, digest: str) -> _Image | None:
        """Referrers of an unchanged image (and of its children) pushed to the parent since;
        asked only of a parent with the referrers API (with the tag fallback, a new
        referrer is a new tag: its own sync brings it). None when there are none."""
        if self.parent.referrers_api is not True:
            return None
        stored = self.registry.get_manifest(repository, digest)
        top = parse_manifest(stored.read(), stored.media_type)
        image = _Image(repository, tag)
        for subject in (digest, *(str(c.digest) for c in top.child_descriptors())):
            for referrer in self.parent.referrers(repository, subject):
                if local_digest(self.registry, repository, referrer.digest) is None:
                    self._manifest(image, referrer.digest)
        return image if image.manifests else None

    def _manifest(self, image: _Image, digest: str) -> Manifest:
        return self._add(image, self.parent.get_manifest(image.repository, digest))

    @staticmethod
    def _add(image: _Image, fetched: FetchedManifest) -> Manifest:
        manifest = parse_manifest(fetched.body, fetched.media_type)
        image.manifests.append(fetched)
        for blob in manifest.blob_descriptors():
            image.blobs[str(blob.digest)] = blob.size
        return manifest


class _Blobs:
    """The blobs of a pass's images: each downloaded once, whichever images need it, at most
    `parallel` at a time (the pass's blob pool), with the room for it checked first."""

    pool: ThreadPoolExecutor

    def __init__(self, sync: SyncPass) -> None:
        self.sync = sync
        self.registry = sync.registry
        self._lock = threading.Lock()
        self._fetching: dict[str, Future[IngestBlob]] = {}
        """Blobs being downloaded, for the images that share them."""

    def download(self, image: _Image) -> list[IngestBlob]:
        missing = {d: s for d, s in image.blobs.items() if not self.registry.has_blob(d)}
        present = [IngestBlob(parse_digest(d), s) for d, s in image.blobs.items()
                   if d not in missing]
        with self._lock:
            futures = [self._fetch(image.repository, d, s) for d, s in missing.items()]
        return present + [f.result() for f in futures]

    def _fetch(self, repository: str, digest: str, size: int) -> Future[IngestBlob]:
        """One download per blob; called with the lock held."""
        fetching = self._fetching.get(digest)
        if fetching is None or (fetching.done() and fetching.exception() is not None):
            fetching = self.pool.submit(self._blob, repository, digest, size)
            self._fetching[digest] = fetching
        return fetching

    def _blob(self, repository: str, digest: str, size: int) -> IngestBlob:
        self.sync._stop_if_asked()
        target = self.sync.partial / digest.replace(":", "-")
        have = target.stat().st_size if target.exists() else 0
        self.registry.check_room(max(0, size - have))  # InsufficientSpace: this tag fails

        def arrived(count: int) -> None:
            self.sync.count(repository, tell=True, bytes_copied=count)

        try:
            with self.sync.transfers, refused_when_full(f"downloading blob {digest}"):
                self.sync.parent.fetch_blob(repository, digest, target, size, arrived)
        except StorageFull:
            target.unlink(missing_ok=True)  # no room to finish it: the bytes go back
            raise
        self.sync.count(repository, blobs_copied=1)
        return IngestBlob(parse_digest(digest), size, target)


def local_digest(registry: Registry, repository: str, reference: str) -> str | None:
    try:
        return str(registry.get_manifest(repository, reference).digest)
    except EdgeError:
        return None


def local_tags(registry: Registry, repository: str) -> dict[str, str]:
    """Tag -> digest of a local repository ({} when it has none)."""
    try:
        return {row.tag: row.digest for row in browse.tags(registry, repository)}
    except EdgeError:
        return {}
