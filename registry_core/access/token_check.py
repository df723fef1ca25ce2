"""Checking a client token's password, for the Authenticator (credentials.py).

The store's token generation (bumped by every token change, in any process) says when a
verdict may be stale. Reading it costs a query, so it is read only when SQLite's
`data_version` (a pragma answered from shared memory) says another connection committed
something: a request of a logged-in token costs one pragma, and a push elsewhere one query
more, never a password check.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from registry_core.access.passwords import verify_password
from registry_core.access.scopes import AccessError, ScopeMap
from registry_core.errors import EdgeError
from registry_core.identity import Identity
from registry_core.store import Store


@dataclass(frozen=True, slots=True)
class TokenVerdict:
    """A token that proved itself: its identity, until when (the password's expiry, or
    infinity) and under which token generation."""

    identity: Identity
    expires_at: float
    generation: int


class TokenCheck:
    """Token passwords against one registry.db, opened on first use (a data dir that was
    never served has no tokens)."""

    def __init__(self, database: Path, dummy_hash: str) -> None:
        self._path = database
        self._dummy_hash = dummy_hash
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._local = threading.local()

    def verify(self, name: str, password: str) -> TokenVerdict | None:
        """The verdict if `password` is a current password of the enabled token `name`.
        Blocking (scrypt): call it off the event loop."""
        store = self._open()
        if store is None:
            verify_password(self._dummy_hash, password)
            return None
        generation = store.tokens.generation()  # before the row: a later change is seen
        row = store.tokens.get(name)
        now = time.time()
        live = [
            p for p in (row.passwords if row is not None and row.enabled else ())
            if p.expires_at is None or p.expires_at > now
        ]
        if row is None or not live:
            verify_password(self._dummy_hash, password)  # as long as a wrong password
            return None
        for slot in live:
            if verify_password(slot.hash, password):
                identity = Identity(name, "token", grants=grants_of(row.scope_map, row.rules))
                return TokenVerdict(identity, slot.expires_at or float("inf"), generation)
        return None

    def current_generation(self) -> int:
        """The store's token generation, read again only when another connection has
        committed since the last call (on the calling thread's connection)."""
        store = self._store
        if store is None:
            return 0
        local = self._local  # data_version counts per connection, one per thread
        version = store.change_counter()
        if version != getattr(local, "version", None):
            local.generation = store.tokens.generation()
            local.version = version
        generation: int = local.generation
        return generation

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()

    def _open(self) -> Store | None:
        with self._lock:
            if self._store is None and self._path.exists():
                self._store = Store(self._path)
            return self._store


def grants_of(scope_map: str, rules: list[object]) -> ScopeMap:
    """A stored scope map as grants; one the store holds damaged grants nothing."""
    try:
        return ScopeMap.from_json(scope_map, rules)
    except (AccessError, EdgeError):
        return ScopeMap(scope_map, ())
