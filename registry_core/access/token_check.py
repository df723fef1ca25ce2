"""Checking a client token's password, for the Authenticator (credentials.py).

The store's token generation (bumped by every token change, in any process) says when a
cached verdict may be stale. Reading it is a query (about 10 µs on the test machine; SQLite's
`data_version` pragma costs 7 µs through the store and moves only when the connection starts
a read), so a request of a logged-in token does not read it: the generation is read again at
most every RECHECK_INTERVAL, and at once after a change made in this process (`note_change`,
called by the token operations after their commit). A change made by another process (the
CLI) is so honoured within RECHECK_INTERVAL; one made here, on the next request. A password's
expiry is checked on every request (credentials.py).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from registry_core.access.passwords import verify_password
from registry_core.access.scopes import AccessError, ScopeMap
from registry_core.errors import EdgeError
from registry_core.identity import Identity
from registry_core.store import Store

UNKNOWN = "no such user or token"
WRONG_PASSWORD = "wrong password"
DISABLED = "token disabled"
EXPIRED = "password expired"
NO_PASSWORD = "token has no password"

RECHECK_INTERVAL = 0.5
"""Seconds between two reads of the token generation while nothing changed in this process."""

_changes = 0
_changes_lock = threading.Lock()


def note_change() -> None:
    """A token changed in this process (after its commit): verdicts must be checked again."""
    global _changes
    with _changes_lock:
        _changes += 1


@dataclass(frozen=True, slots=True)
class TokenVerdict:
    """A token that proved itself: its identity, until when (the password's expiry, or
    infinity) and under which token generation."""

    identity: Identity
    expires_at: float
    generation: int


class TokenCheck:
    """Token passwords against the registry's store (its own: a second Store on the same
    database in one process is avoided, as migrations.py reads the file's header with a
    plain open(), and closing that drops the process's POSIX locks on it)."""

    def __init__(self, store: Store, dummy_hash: str) -> None:
        self._store = store
        self._dummy_hash = dummy_hash
        self._generation = 0
        self._seen_changes = -1
        self._next_read = 0.0

    def verify(self, name: str, password: str) -> TokenVerdict | str:
        """The verdict if `password` is a current password of the enabled token `name`, else
        why not (for the log and the audit, never the client). Blocking (scrypt): call it off
        the event loop."""
        store = self._store
        generation = store.tokens.generation()  # before the row: a later change is seen
        row = store.tokens.get(name)
        if row is None or not row.enabled or not row.passwords:
            verify_password(self._dummy_hash, password)  # as long as a wrong password
            return UNKNOWN if row is None else DISABLED if not row.enabled else NO_PASSWORD
        now = time.time()
        # Live passwords first; an expired one is tried only to say why the login failed.
        slots = sorted(row.passwords, key=lambda p: p.expires_at is not None
                       and p.expires_at <= now)
        for slot in slots:
            if verify_password(slot.hash, password):
                if slot.expires_at is not None and slot.expires_at <= now:
                    return EXPIRED
                identity = Identity(name, "token", grants=grants_of(row.scope_map, row.rules))
                return TokenVerdict(identity, slot.expires_at or float("inf"), generation)
        return WRONG_PASSWORD

    def current_generation(self) -> int:
        """The store's token generation as of at most RECHECK_INTERVAL ago, or as of now
        after a change in this process."""
        store = self._store
        now = time.monotonic()
        if now < self._next_read and _changes == self._seen_changes:
            return self._generation
        self._seen_changes = _changes  # before the read: a change after it is seen next time
        self._generation = store.tokens.generation()
        self._next_read = now + RECHECK_INTERVAL
        return self._generation


def grants_of(scope_map: str, rules: list[object]) -> ScopeMap:
    """A stored scope map as grants; one the store holds damaged grants nothing."""
    try:
        return ScopeMap.from_json(scope_map, rules)
    except (AccessError, EdgeError):
        return ScopeMap(scope_map, ())
