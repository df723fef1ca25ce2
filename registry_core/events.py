"""One typed stream of what happens in the registry: pushes, deletes, tag moves, blob
commits, GC runs and usage samples, for every consumer in the process (the console, the usage
sampler, the scheduler, and later a controller or a sync engine).

Events are in-process only and sent after the commit they describe. Delivery is synchronous,
in the thread that emits (an HTTP worker, a GC thread, the UI): a subscriber must be cheap and
hand work to its own thread or loop; one that raises is logged and never fails the operation.
Another process learns of changes through `Registry.change_counter()`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

log = logging.getLogger("edge_registry.events")


@dataclass(frozen=True, kw_only=True)
class Event:
    """What every event carries: when it happened and who did it (an Identity's name; None
    for what no one did, such as a usage sample)."""

    when: float = field(default_factory=time.time)
    identity: str | None = None


@dataclass(frozen=True, kw_only=True)
class ManifestPushed(Event):
    repository: str
    digest: str
    media_type: str
    size: int
    tag: str | None
    created: bool
    """False when the manifest was already stored (only a tag may have changed)."""
    subject: str | None = None


@dataclass(frozen=True, kw_only=True)
class ManifestDeleted(Event):
    repository: str
    digest: str
    tags: tuple[str, ...]
    """The tags that went with it."""


@dataclass(frozen=True, kw_only=True)
class TagMoved(Event):
    """A tag was created (`previous` None), moved, or removed (`digest` None)."""

    repository: str
    tag: str
    digest: str | None
    previous: str | None


@dataclass(frozen=True, kw_only=True)
class BlobCommitted(Event):
    """A blob became part of a repository: uploaded, or mounted from `mounted_from`."""

    repository: str
    digest: str
    size: int
    mounted_from: str | None = None


@dataclass(frozen=True, kw_only=True)
class GCEvent(Event):
    """Common to the events of a GC run in this process."""

    run_id: int
    phase: str
    done: int = 0
    total: int = 0
    bytes_freed: int = 0
    message: str = ""
    """A log line, when there is one to show."""
    status: str = "running"


@dataclass(frozen=True, kw_only=True)
class GCStarted(GCEvent):
    trigger: str
    dry_run: bool
    delete_untagged: bool
    grace_period_seconds: float


@dataclass(frozen=True, kw_only=True)
class GCProgress(GCEvent):
    """A phase began (`done` 0), a batch was committed, or a log line."""


@dataclass(frozen=True, kw_only=True)
class GCFinished(GCEvent):
    """The run ended; `status` is succeeded, cancelled or failed, `message` its summary."""

    trigger: str
    dry_run: bool
    manifests_deleted: int
    blobs_deleted: int
    uploads_purged: int


@dataclass(frozen=True, kw_only=True)
class LoginFailed(Event):
    """Credentials that did not prove anyone (`identity` None)."""

    principal: str
    """The user or token name the credentials claimed ('' when there was none)."""
    address: str | None
    reason: str


@dataclass(frozen=True, kw_only=True)
class AccessDenied(Event):
    """An authenticated identity refused an action (403 DENIED)."""

    address: str | None
    action: str
    """The scope action it lacked (content/write, ...)."""
    repository: str | None
    reference: str | None = None
    reason: str = ""
    operation: str = ""
    """What it tried, named as the audit log names done operations (manifest.push,
    blob.upload, ...); '' when not known."""


@dataclass(frozen=True, kw_only=True)
class AccessChanged(Event):
    """A client token or scope map created, changed or deleted (`action` e.g.
    'token.create', 'token.disable', 'token.rotate', 'token.scope', 'scope_map.delete')."""

    action: str
    target: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class UsageSampled(Event):
    reason: str
    used_bytes: int
    capacity_bytes: int
    free_bytes: int
    reclaimable_bytes: int


@dataclass(frozen=True, kw_only=True)
class SyncEvent(Event):
    """Common to the events of a sync run in this process."""

    run_id: int
    repository: str = ""
    """The repository being synced ('' between repositories)."""
    tags_checked: int = 0
    tags_changed: int = 0
    manifests_copied: int = 0
    blobs_copied: int = 0
    bytes_copied: int = 0
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class SyncStarted(SyncEvent):
    trigger: str


@dataclass(frozen=True, kw_only=True)
class RepositoryProgress:
    """One repository of a running sync, so far."""

    repository: str
    state: str
    """'waiting' (not listed yet), 'syncing', 'done' or 'failed'."""
    tags_total: int = 0
    """Tags in scope on the parent (0 until listed)."""
    tags_checked: int = 0
    tags_changed: int = 0
    manifests_copied: int = 0
    blobs_copied: int = 0
    bytes_copied: int = 0
    error: str = ""


@dataclass(frozen=True, kw_only=True)
class SyncProgress(SyncEvent):
    """A repository began or ended, a tag was copied, or blob bytes arrived (at most a few a
    second). `repositories`: each repository of the run so far, in the order they began."""

    repositories: tuple[RepositoryProgress, ...] = ()


@dataclass(frozen=True, kw_only=True)
class SyncFinished(SyncEvent):
    """The run ended; `status` succeeded, failed, cancelled or stopped (window closed)."""

    status: str
    errors: tuple[str, ...] = ()


E = TypeVar("E", bound=Event)


class Subscription(Generic[E]):
    """One subscriber; `close()` (or leaving a `with` block) unsubscribes. An emit already
    under way in another thread may still deliver one event after it."""

    def __init__(
        self, bus: EventBus, kinds: tuple[type[E], ...], callback: Callable[[E], None]
    ) -> None:
        self.bus = bus
        self.kinds = kinds
        self.callback = callback

    def deliver(self, event: Event) -> None:
        if isinstance(event, self.kinds):
            self.callback(event)

    def close(self) -> None:
        self.bus.remove(self)

    def __enter__(self) -> Subscription[E]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """The registry's stream: one per Registry, safe to use from any thread.

    Subscribing copies the list (rare); emitting reads it without a lock (often), so an event
    costs one tuple walk when nobody listens.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: tuple[Subscription[Any], ...] = ()

    def subscribe(self, callback: Callable[[E], None], *kinds: type[E]) -> Subscription[E]:
        """Deliver the events of `kinds` (every event when none is named) to `callback`."""
        chosen = kinds or cast("tuple[type[E], ...]", (Event,))
        subscription = Subscription(self, chosen, callback)
        with self._lock:
            self._subscriptions = (*self._subscriptions, subscription)
        return subscription

    def remove(self, subscription: Subscription[E]) -> None:
        with self._lock:
            self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)

    def emit(self, event: Event) -> None:
        for subscription in self._subscriptions:
            try:
                subscription.deliver(event)
            except Exception:  # a consumer's bug must never fail a push, a delete or a GC
                log.exception("event subscriber failed on %s", type(event).__name__)

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)
