"""Staging: a deployment's images pulled from the parent ahead of a maintenance window,
checked, and pinned (GC and deletes leave them alone) until the stage is released or expires.

Each listed image goes pending -> downloading -> verifying -> staged, or failed with the
reason; a staged image read after its stage's expiry reads 'expired' (the store derives it:
no job has to run for it, and the pin ends at that moment too). It stays listed until the
stage is released. The readiness check says, for each, whether it is here with the parent's
digest (or here, unverified, when the parent cannot be asked, or here but no longer pinned
because its stage expired) and is 'ready' only when all are here.

Staging and releasing are recorded in the audit log (`stage.add` per image, with its outcome,
in the transaction that settles it; `stage.release` per image released) under `who`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from registry_core.errors import EdgeError, NameInvalid
from registry_core.identity import Identity
from registry_core.reference import validate_name, validate_tag
from registry_core.registry import Registry
from registry_core.store.stages import StageItem
from registry_core.store.sync_runs import SyncRunRecord
from registry_core.sync.client import ParentClient
from registry_core.sync.errors import ParentUnreachable
from registry_core.sync.runner import SyncRunner
from registry_core.sync.settings import load_settings

DEFAULT_STAGE = "default"


class UnknownStage(EdgeError):
    """No stage of that name was ever made (a release of it would release nothing)."""


@dataclass(frozen=True)
class Readiness:
    repository: str
    tag: str
    state: str
    """'ready' (here with the parent's digest), 'unverified' (here; the parent could not be
    asked), 'expired' (here, as ready or unverified would say, but its stage expired: no
    longer pinned, a GC or a delete may take it), 'outdated' (here, but the parent has
    another digest), or 'missing'."""
    local_digest: str | None
    parent_digest: str | None
    message: str = ""
    stage_expired_at: float | None = None
    """When the pin of its stage ended, if every stage that listed it has expired."""

    @property
    def ok(self) -> bool:
        """Here (the check's exit status): an expired stage is a warning, not a miss."""
        return self.state in ("ready", "unverified", "expired")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def parse_refs(refs: list[str]) -> list[tuple[str, str]]:
    """`repo:tag` lines (blank lines and `#` comments skipped); one-line errors."""
    pairs = []
    for raw in refs:
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        name, colon, tag = text.rpartition(":")
        if not colon or "/" in tag:
            raise NameInvalid(f"{text[:200]!r}: a stage lists images as REPOSITORY:TAG")
        pairs.append((validate_name(name), validate_tag(tag)))
    return pairs


def stage(
    registry: Registry, runner: SyncRunner, pairs: list[tuple[str, str]],
    name: str = DEFAULT_STAGE, expires_at: float | None = None, *, who: Identity,
) -> tuple[SyncRunRecord, list[StageItem]]:
    """Pull `pairs` from the parent now (one sync run, trigger 'stage') and pin them; each
    image's outcome is recorded in the audit log under `who`."""
    store = registry.store
    with store.exclusive():  # pending (again) until a transfer slot takes it
        items = {(r, t): store.stages.add(name, r, t, expires_at) for r, t in pairs}
        for item in items.values():
            store.stages.set_status(item.id, "pending")

    def begun(repository: str, tag: str) -> None:
        with store.exclusive():
            store.stages.set_status(items[(repository, tag)].id, "downloading")

    def done(repository: str, tag: str, digest: str | None, error: str) -> None:
        item = items[(repository, tag)]
        if digest is None:
            _settle(registry, item, who, "failed", reason=error)
            return
        with store.exclusive():
            store.stages.set_status(item.id, "verifying", digest=digest)
        _verify(registry, item, digest, who)

    try:
        record = runner.run("stage", only=pairs, on_tag=done, on_begin=begun)
    except EdgeError as exc:  # refused (another run under way): nothing is downloading
        _fail_unfinished(registry, list(items.values()), str(exc), who)
        raise
    # A run stopped early leaves some untouched.
    _fail_unfinished(registry, list(items.values()), f"sync run {record.id} {record.status}",
                     who)
    with store.snapshot():
        return record, [i for i in store.stages.items(name) if (i.repository, i.tag) in items]


def _fail_unfinished(registry: Registry, items: list[StageItem], reason: str,
                     who: Identity) -> None:
    store = registry.store
    with store.exclusive():
        for item in items:
            fresh = store.stages.get(item.id)
            if fresh is not None and fresh.status in ("pending", "downloading"):
                _outcome(registry, item, who, "failed", reason=reason)


def _verify(registry: Registry, item: StageItem, digest: str, who: Identity) -> None:
    """Staged only if the local tag holds the parent's digest and every blob is here."""
    try:
        local = str(registry.get_manifest(item.repository, item.tag).digest)
    except EdgeError as exc:
        local, problem = "", str(exc)
    else:
        problem = "" if local == digest else f"here as {local}, the parent has {digest}"
    _settle(registry, item, who, "failed" if problem else "staged", digest, problem)


def _settle(registry: Registry, item: StageItem, who: Identity, status: str,
            digest: str | None = None, reason: str = "") -> None:
    """The item's outcome and its audit row, in one transaction."""
    with registry.store.exclusive():
        _outcome(registry, item, who, status, digest, reason)


def _outcome(registry: Registry, item: StageItem, who: Identity, status: str,
             digest: str | None = None, reason: str = "") -> None:
    """Inside the caller's write transaction: the item's outcome and its audit row."""
    registry.store.stages.set_status(item.id, status, digest=digest, reason=reason)
    registry.audit.record(
        who, "stage.add", repository=item.repository, reference=item.tag,
        result="ok" if status == "staged" else "failed",
        detail={"stage": item.stage, "status": status, "digest": digest or item.digest,
                "expires_at": item.expires_at, "reason": reason})


def check(
    registry: Registry, pairs: list[tuple[str, str]], runner: SyncRunner | None,
    at: float | None = None,
) -> list[Readiness]:
    """Each image's readiness at `at` (default: now); `runner` None (or a parent that does
    not answer): only what is here is known, said as 'unverified'."""
    lapsed = expired_stages(registry, time.time() if at is None else at)
    asker = _Asker(registry, runner)
    try:
        return [_expiry(_readiness(registry, asker, r, t), lapsed.get((r, t)))
                for r, t in pairs]
    finally:
        asker.close()


def expired_stages(registry: Registry, at: float) -> dict[tuple[str, str], float]:
    """(repository, tag) -> when its stage expired, for the images listed by a stage that
    is not released and pinned by none: every stage that lists it has expired at `at`."""
    with registry.store.snapshot():
        items = registry.store.stages.items(at=at)
    live = {(i.repository, i.tag) for i in items if i.pins(at)}
    lapsed: dict[tuple[str, str], float] = {}
    for item in items:
        key = (item.repository, item.tag)
        if item.status == "expired" and key not in live and item.expires_at is not None:
            lapsed[key] = max(item.expires_at, lapsed.get(key, item.expires_at))
    return lapsed


def _expiry(result: Readiness, expired_at: float | None) -> Readiness:
    """The result said again for an image whose stage expired at `expired_at`."""
    if expired_at is None:
        return result
    stamp = datetime.fromtimestamp(expired_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    state, message = result.state, result.message
    if result.ok:
        here = "here with the parent's digest" if state == "ready" else message
        state, message = "expired", (
            f"{here}; its stage expired {stamp}: no longer pinned, a GC or a delete may "
            "take it (stage it again to pin it)")
    else:
        message = f"{message}; its stage expired {stamp}, nothing pinned it since"
    return Readiness(result.repository, result.tag, state, result.local_digest,
                     result.parent_digest, message, expired_at)


class _Asker:
    """The parent's digests for the check, through a quick client (ParentClient.quick: one
    try, short timeouts): a parent that is down answers nothing in seconds, during a
    maintenance window, and once it is found unreachable the other images do not ask again."""

    def __init__(self, registry: Registry, runner: SyncRunner | None) -> None:
        self.parent: ParentClient | None = None
        self.why = "sync is not configured"
        if runner is None:
            return
        try:
            settings = load_settings(registry.datadir, registry.config)
            connection = settings.connection
            self.parent = ParentClient.quick(
                connection.parent_endpoint, connection.token_name, connection.token_password,
                ca_file=settings.parent_ca, protocol=connection.protocol)
        except EdgeError as exc:
            self.why = str(exc)

    def digest(self, repository: str, tag: str) -> tuple[bool, str | None, str]:
        """(asked, the parent's digest or None, why it could not be asked)."""
        if self.parent is None:
            return False, None, self.why
        try:
            head = self.parent.head_manifest(repository, tag)
        except ParentUnreachable as exc:
            self.close()
            self.why = str(exc)
            return False, None, self.why
        except EdgeError as exc:
            return False, None, str(exc)
        return True, None if head is None else head.digest, ""

    def close(self) -> None:
        parent, self.parent = self.parent, None
        if parent is not None:
            parent.close()


def _readiness(registry: Registry, asker: _Asker, repository: str, tag: str) -> Readiness:
    try:
        local: str | None = str(registry.get_manifest(repository, tag).digest)
    except EdgeError:
        local = None
    asked, remote, why = asker.digest(repository, tag)
    if local is None:
        return Readiness(repository, tag, "missing", None, remote, "not here")
    if not asked:
        return Readiness(repository, tag, "unverified", local, None,
                         f"here; the parent could not be asked: {why}")
    if remote is None:
        return Readiness(repository, tag, "unverified", local, None,
                         "here; the parent has no such tag")
    if remote != local:
        return Readiness(repository, tag, "outdated", local, remote,
                         "the parent has another digest")
    return Readiness(repository, tag, "ready", local, remote)


def pinned_manifests(registry: Registry) -> set[tuple[str, str]]:
    """(repository, digest) of every manifest a stage pins now."""
    with registry.store.snapshot():
        return registry.store.stages.pinned()


def release(registry: Registry, name: str = DEFAULT_STAGE, *, who: Identity) -> int:
    """Unpin the stage's images and take them off the list (a GC may then collect what
    nothing else keeps), each recorded in the audit log under `who`: how many (0 when it
    was released already). UnknownStage when no stage of that name was ever made."""
    store = registry.store
    with store.exclusive():
        if not store.stages.items(name, released=True):
            raise UnknownStage(f"no stage named {name!r}: nothing to release")
        items = store.stages.items(name)
        for item in items:
            registry.audit.record(
                who, "stage.release", repository=item.repository, reference=item.tag,
                detail={"stage": name, "status": item.status, "digest": item.digest})
        return store.stages.release(name)
