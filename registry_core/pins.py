"""The guard that keeps staged images whole: a manifest a stage pins is not deleted, and a tag
a stage pins is not removed, whichever face asks, until the stage is released or expires.

A staged item pins its (repository, digest) and names its `repo:tag` (store/stages.py). A
delete by digest is refused when a stage pins the manifest or one of the tags that would go
with it; an untag when a stage pins that tag (`stage --check` would then say missing). GC keeps
pinned content on its own (the pins are roots of its mark); this module is about deletes.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Collection
from datetime import UTC, datetime

from registry_core.errors import Pinned
from registry_core.reference import Digest
from registry_core.store import Store
from registry_core.store.stages import StageItem

Guard = Callable[[Callable[[], None]], dict[str, str]]
"""Runs a refusal check (refuse_delete or refuse_untag): `enforced` lets its Pinned go up,
`overridden` swallows it and returns it for the audit row."""


def enforced(refuse: Callable[[], None]) -> dict[str, str]:
    refuse()
    return {}


def overridden(refuse: Callable[[], None]) -> dict[str, str]:
    try:
        refuse()
    except Pinned as exc:
        return {"pin_overridden": str(exc)}
    return {}


def check(store: Store, name: str, reference: Digest | str) -> None:
    """Pinned when deleting `reference` (a digest, with its tags) or removing it (a tag) would
    be refused: for a face that asks before it shows what would go. Unknown names pass."""
    with store.snapshot():
        if isinstance(reference, Digest):
            repo_id = store.catalog.repository_id(name)
            found = None if repo_id is None else store.manifests.id_of(repo_id, str(reference))
            tags = [] if found is None else store.catalog.tags_of(found)
            refuse_delete(store, name, str(reference), tags)
        else:
            refuse_untag(store, name, reference)


def refuse_delete(store: Store, name: str, digest: str, tags: Collection[str]) -> None:
    """Pinned when a stage pins `name@digest` or names one of `tags` (the manifest's tags,
    which would go with it)."""
    items = _pins(store, name, lambda i: i.digest == digest or i.tag in tags)
    if items:
        first = items[0]
        if first.digest == digest:
            what = f"{name}@{digest} is pinned by the stage {first.stage} ({name}:{first.tag}, "
        else:
            what = (f"{name}@{digest} carries the tag {name}:{first.tag}, pinned by the stage "
                    f"{first.stage} (")
        raise _refusal(what, items, {"name": name, "digest": digest})


def refuse_untag(store: Store, name: str, tag: str) -> None:
    """Pinned when a stage pins `name:tag`."""
    items = _pins(store, name, lambda i: i.tag == tag)
    if items:
        what = f"{name}:{tag} is pinned by the stage {items[0].stage} ("
        raise _refusal(what, items, {"name": name, "tag": tag})


def _pins(store: Store, name: str, matches: Callable[[StageItem], bool]) -> list[StageItem]:
    return [i for i in store.stages.pins_in(name) if matches(i)]


def _refusal(what: str, items: list[StageItem], detail: dict[str, object]) -> Pinned:
    first = items[0]
    stages = list(dict.fromkeys(i.stage for i in items))
    expires = ("no expiry" if first.expires_at is None
               else f"expires {_stamp(first.expires_at)}")
    also = f"; also pinned by {', '.join(stages[1:])}" if len(stages) > 1 else ""
    release = "; ".join(f"edge-console stage --release --stage {shlex.quote(s)}"
                        for s in stages)
    them = "the stages" if len(stages) > 1 else "the stage"
    message = (f"{what}staged {_stamp(first.updated_at)}, {expires}){also}: release {them} "
               f"first ({release})")
    pins = [{"stage": i.stage, "tag": i.tag, "digest": i.digest, "staged_at": i.updated_at,
             "expires_at": i.expires_at} for i in items]
    return Pinned(message, detail={**detail, "pinned_by": pins})


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")

