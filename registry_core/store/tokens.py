"""Client tokens, their passwords (hashes only) and the scope maps they are bound to."""

from __future__ import annotations

from registry_core.store.base import Queries


class Tokens(Queries):
    pass
