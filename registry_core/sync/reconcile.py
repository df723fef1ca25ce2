"""ReadWrite sync: which way a tag goes, from its digest here, on the parent, and where both
sides last agreed (the base). The parent wins a tag moved on both sides; the local manifest
stays reachable by digest, and the run names the conflict.

A tag gone from the parent that was agreed on and has not moved here since was deleted there
(`drop`): the parent wins again. It is untagged here (the manifest stays by digest), the run
names it in its conflicts with `parent` "" and `kept` "parent", and the base becomes ABSENT
(both sides agree the tag is not there), so that the same digest tagged here again later is
new and goes up. A tag gone from the parent that moved here since it was agreed goes up: the
local change is the newer one. A tag a stage pins here stays while the stage holds it (the
conflict says `kept` "local" and why); the base is left as it was, so the first run after the
stage's release follows the deletion.

The local manifest of a conflict is kept from the GC (store/kept.py) before its tag moves, so
that it stays reachable by digest even where untagged manifests are collected.
"""

from __future__ import annotations

from typing import Literal

from registry_core.errors import Pinned
from registry_core.identity import SYNC
from registry_core.registry import Registry
from registry_core.sync.client import ManifestHead

Way = Literal["same", "pull", "push", "conflict", "drop", "none"]
ABSENT = ""
"""The base of a tag both sides agree is not there (deleted on the parent, then here)."""


def decide(local: str | None, parent: str | None, base: str | None) -> Way:
    if local == parent:
        return "none" if local is None else "same"
    if parent is None:
        if local == base:
            return "drop"  # agreed, unchanged here since, deleted there
        return "push"  # new here, or moved here since the parent deleted it
    if local is None or local == base:
        return "pull"  # new on the parent, or moved only there
    if parent == base:
        return "push"  # moved only here
    return "conflict"  # moved on both sides (or never agreed): the parent wins


def conflict(repository: str, tag: str, local: str | None,
             parent: ManifestHead | None) -> dict[str, str]:
    """The run's entry for a tag moved on both sides: the parent's digest took it."""
    return {"repository": repository, "tag": tag, "local": local or "",
            "parent": parent.digest if parent else "", "kept": "parent"}


def drop(registry: Registry, repository: str, tag: str) -> dict[str, str]:
    """Follow the parent's deletion of `repository:tag`: untag it here (as the sync), record
    the agreement that it is absent; the run's conflict entry for it."""
    try:
        deleted = registry.untag(repository, tag, who=SYNC)
    except Pinned as exc:
        local = str(registry.get_manifest(repository, tag).digest)
        return {"repository": repository, "tag": tag, "local": local, "parent": "",
                "kept": "local", "reason": str(exc)}
    with registry.store.exclusive():
        registry.store.sync_tags.agree(repository, tag, ABSENT)
    return {"repository": repository, "tag": tag, "local": str(deleted.digest),
            "parent": "", "kept": "parent"}


def keep_loser(registry: Registry, repository: str, tag: str, local: str | None,
               parent: str | None) -> bool:
    """Keep the local manifest of a conflict over `repository:tag` from the GC, before the
    parent's digest takes the tag; whether this call kept it (False: kept already)."""
    if local is None or parent is None:
        return False
    reason = (f"lost {repository}:{tag} to the parent's {parent} in a sync conflict; "
              f"delete it by digest when no longer needed")
    with registry.store.exclusive():
        return registry.store.kept.keep(repository, local, reason)


def release_loser(registry: Registry, repository: str, local: str | None) -> None:
    """Undo keep_loser when the tag did not move after all."""
    if local is not None:
        with registry.store.exclusive():
            registry.store.kept.release(repository, local)
