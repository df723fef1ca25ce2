"""Staging: a deployment's images pulled from the parent ahead of a maintenance window,
checked, and pinned (GC and deletes leave them alone) until the stage is released or expires.

Each listed image goes pending -> downloading -> verifying -> staged, or failed with the
reason. The readiness check says, for each, whether it is here with the parent's digest (or
here, unverified, when the parent cannot be asked) and is 'ready' only when all are.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from registry_core.errors import EdgeError, NameInvalid
from registry_core.reference import validate_name, validate_tag
from registry_core.registry import Registry
from registry_core.store.stages import StageItem
from registry_core.store.sync_runs import SyncRunRecord
from registry_core.sync.engine import Parent
from registry_core.sync.runner import SyncRunner

DEFAULT_STAGE = "default"


@dataclass(frozen=True)
class Readiness:
    repository: str
    tag: str
    state: str
    """'ready' (here with the parent's digest), 'unverified' (here; the parent could not be
    asked), 'outdated' (here, but the parent has another digest), or 'missing'."""
    local_digest: str | None
    parent_digest: str | None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("ready", "unverified")

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
    name: str = DEFAULT_STAGE, expires_at: float | None = None,
) -> tuple[SyncRunRecord, list[StageItem]]:
    """Pull `pairs` from the parent now (one sync run, trigger 'stage') and pin them."""
    store = registry.store
    with store.exclusive():
        items = {(r, t): store.stages.add(name, r, t, expires_at) for r, t in pairs}
        for item in items.values():
            store.stages.set_status(item.id, "downloading")

    def done(repository: str, tag: str, digest: str | None, error: str) -> None:
        item = items[(repository, tag)]
        with store.exclusive():
            if digest is None:
                store.stages.set_status(item.id, "failed", reason=error)
                return
            store.stages.set_status(item.id, "verifying", digest=digest)
        _verify(registry, item, digest)

    try:
        record = runner.run("stage", only=pairs, on_tag=done)
    except EdgeError as exc:  # refused (another run under way): nothing is downloading
        _fail_unfinished(registry, list(items.values()), str(exc))
        raise
    # A run stopped early leaves some untouched.
    _fail_unfinished(registry, list(items.values()), f"sync run {record.id} {record.status}")
    with store.snapshot():
        return record, [i for i in store.stages.items(name) if (i.repository, i.tag) in items]


def _fail_unfinished(registry: Registry, items: list[StageItem], reason: str) -> None:
    store = registry.store
    with store.exclusive():
        for item in items:
            fresh = store.stages.get(item.id)
            if fresh is not None and fresh.status in ("pending", "downloading"):
                store.stages.set_status(item.id, "failed", reason=reason)


def _verify(registry: Registry, item: StageItem, digest: str) -> None:
    """Staged only if the local tag holds the parent's digest and every blob is here."""
    store = registry.store
    try:
        local = str(registry.get_manifest(item.repository, item.tag).digest)
    except EdgeError as exc:
        local, problem = "", str(exc)
    else:
        problem = "" if local == digest else f"here as {local}, the parent has {digest}"
    with store.exclusive():
        if problem:
            store.stages.set_status(item.id, "failed", digest=digest, reason=problem)
        else:
            store.stages.set_status(item.id, "staged", digest=digest)


def check(
    registry: Registry, pairs: list[tuple[str, str]], runner: SyncRunner | None,
) -> list[Readiness]:
    """Each image's readiness; `runner` None (or a parent that does not answer): only what is
    here is known, said as 'unverified'."""
    parent, why = _parent(runner)
    try:
        return [_readiness(registry, parent, why, r, t) for r, t in pairs]
    finally:
        if parent is not None:
            parent.close()


def _parent(runner: SyncRunner | None) -> tuple[Parent | None, str]:
    if runner is None:
        return None, "sync is not configured"
    try:
        parent = runner.connect()
    except EdgeError as exc:
        return None, str(exc)
    return parent, ""


def _readiness(registry: Registry, parent: Parent | None, why: str, repository: str,
               tag: str) -> Readiness:
    try:
        local: str | None = str(registry.get_manifest(repository, tag).digest)
    except EdgeError:
        local = None
    remote = None
    if parent is not None:
        try:
            head = parent.head_manifest(repository, tag)
            remote = None if head is None else head.digest
        except EdgeError as exc:
            parent, why = None, str(exc)
    if local is None:
        return Readiness(repository, tag, "missing", None, remote, "not here")
    if parent is None:
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


def release(registry: Registry, name: str = DEFAULT_STAGE) -> int:
    """Unpin the stage's images (a GC may then collect what nothing else keeps)."""
    with registry.store.exclusive():
        return registry.store.stages.release(name)


def expire(registry: Registry, now: float | None = None) -> int:
    with registry.store.exclusive():
        return registry.store.stages.expire(time.time() if now is None else now)
