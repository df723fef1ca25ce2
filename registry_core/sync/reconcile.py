"""ReadWrite sync: which way a tag goes, from its digest here, on the parent, and where both
sides last agreed (the base). The parent wins a tag moved on both sides; the local manifest
stays reachable by digest, and the run names the conflict."""

from __future__ import annotations

from typing import Literal

Way = Literal["same", "pull", "push", "conflict", "none"]


def decide(local: str | None, parent: str | None, base: str | None) -> Way:
    if local == parent:
        return "none" if local is None else "same"
    if parent is None:
        return "push"  # new here (or gone there: it goes up again; the parent may delete it)
    if local is None or local == base:
        return "pull"  # new on the parent, or moved only there
    if parent == base:
        return "push"  # moved only here
    return "conflict"  # moved on both sides (or never agreed): the parent wins
