"""Client tokens: create, list, change the scopes of, disable, enable, rotate a password,
delete.

A token has a name, a scope map, a status and one or two passwords (slots 1 and 2), each with
an optional expiry, so that a password can be replaced while the other keeps working. A
password is shown once, when made, and kept only as an scrypt hash. A token made with
`--scope` gets a scope map of its own, named after it. A map may be shared by several tokens
(data dirs of older releases have such): changing one token's scopes changes the map, so every
token bound to it gets the new scopes, and `ScopeChange.shared_with` names them.

Every change is one transaction, then an AccessChanged event on the registry's bus; a server
on the same data dir notices it through the store's token generation (token_check.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from registry_core.access.credentials import generate_password, hash_password, read_credentials
from registry_core.access.scopes import ACTIONS, AccessError, Rule, ScopeMap, make_rule
from registry_core.access.token_check import grants_of, note_change
from registry_core.datadir import DataDir
from registry_core.errors import EdgeError
from registry_core.events import AccessChanged, EventBus
from registry_core.identity import CONSOLE, GC, SYNC, Identity
from registry_core.store import Store
from registry_core.store.tokens import TokenRow

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RESERVED_NAMES = frozenset({CONSOLE.name, GC.name, SYNC.name})
"""The system identities' names: a token so named would pass for one in the audit log."""
SLOTS = (1, 2)
MAX_EXPIRY_DAYS = 36500
DAY = 86400.0


class HasTokens(Protocol):
    """What the operations need of a Registry."""

    datadir: DataDir
    store: Store
    events: EventBus


@dataclass(frozen=True)
class PasswordInfo:
    slot: int
    created_at: float
    expires_at: float | None

    def expired(self, at: float | None = None) -> bool:
        return self.expires_at is not None and (at or time.time()) >= self.expires_at

    def to_json(self) -> dict[str, Any]:
        return {"slot": self.slot, "created_at": self.created_at,
                "expires_at": self.expires_at, "expired": self.expired()}


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: never a password or its hash."""

    name: str
    scope_map: ScopeMap
    enabled: bool
    created_at: float
    updated_at: float
    passwords: tuple[PasswordInfo, ...]

    @property
    def scopes(self) -> list[str]:
        return [str(rule) for rule in self.scope_map.rules]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "scope_map": self.scope_map.name,
            "scopes": self.scope_map.rules_json(), "enabled": self.enabled,
            "created_at": self.created_at, "updated_at": self.updated_at,
            "passwords": [p.to_json() for p in self.passwords],
        }


@dataclass(frozen=True)
class IssuedPassword:
    """A token's new password: shown once, never stored in clear."""

    token: TokenInfo
    slot: int
    password: str

    def to_json(self) -> dict[str, Any]:
        return {**self.token.to_json(), "password": self.password, "slot": self.slot}


@dataclass(frozen=True)
class ScopeChange:
    """A token's scopes replaced: the token as it is now, the map's rules before, and the
    other tokens bound to the same map (they have the new scopes too)."""

    token: TokenInfo
    old: ScopeMap
    shared_with: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return self.old.rules != self.token.scope_map.rules

    @property
    def old_scopes(self) -> list[str]:
        return [str(rule) for rule in self.old.rules]

    def to_json(self) -> dict[str, Any]:
        return {**self.token.to_json(), "old_scopes": self.old.rules_json(),
                "shared_with": list(self.shared_with), "changed": self.changed}


class TokenAdmin:
    """The token operations over one registry (`HasTokens`: a Registry)."""

    def __init__(self, registry: HasTokens) -> None:
        self.datadir = registry.datadir
        self.store = registry.store
        self.events = registry.events

    def list(self) -> list[TokenInfo]:
        return [token_info(row) for row in self.store.tokens.all()]

    def get(self, name: str) -> TokenInfo:
        row = self.store.tokens.get(name)
        if row is None:
            raise AccessError(f"no token named {name!r}")
        return token_info(row)

    def create(
        self, name: str, rules: Sequence[Rule], *, expires_days: float | None = None,
        who: Identity,
    ) -> IssuedPassword:
        """A new enabled token with its own scope map and password 1 (returned, once)."""
        self._check_new_name(name)
        scope_map = ScopeMap(name, checked_rules(name, rules))
        password = generate_password()
        hashed = hash_password(password)  # slow: before taking the write lock
        expires_at = expiry(expires_days)
        with self.store.exclusive():
            if self.store.tokens.get(name) is not None:
                raise AccessError(f"a token named {name!r} already exists")
            if self.store.tokens.scope_map_exists(name):
                raise AccessError(f"a scope map named {name!r} already exists")
            self.store.tokens.create(name, name, scope_map.rules_json(), "")
            self.store.tokens.set_password(name, 1, hashed, expires_at)
        self._changed("token.create", name, who, scopes=[str(r) for r in rules],
                      expires_at=expires_at)
        return IssuedPassword(self.get(name), 1, password)

    def rotate(
        self, name: str, slot: int = 1, *, expires_days: float | None = None, who: Identity
    ) -> IssuedPassword:
        """A new password in `slot`; the other slot's password keeps working."""
        if slot not in SLOTS:
            raise AccessError(f"password slot {slot}: expected 1 or 2")
        password = generate_password()
        hashed = hash_password(password)
        expires_at = expiry(expires_days)
        with self.store.exclusive():
            if self.store.tokens.get(name) is None:
                raise AccessError(f"no token named {name!r}")
            self.store.tokens.set_password(name, slot, hashed, expires_at)
        self._changed("token.rotate", name, who, slot=slot, expires_at=expires_at)
        return IssuedPassword(self.get(name), slot, password)

    def set_scopes(self, name: str, rules: Sequence[Rule], *, who: Identity) -> ScopeChange:
        """Replace the rules of the token's scope map, checked as at creation; its passwords,
        status and expiry stay. Every token bound to the map gets them. A server in this
        process enforces them from its next request, one in another within
        token_check.RECHECK_INTERVAL. The same rules again change nothing."""
        checked = checked_rules(name, rules)
        with self.store.exclusive():
            row = self.store.tokens.get(name)
            if row is None:
                raise AccessError(f"no token named {name!r}")
            old = grants_of(row.scope_map, row.rules)  # a damaged map can be repaired here
            new = ScopeMap(row.scope_map, checked)
            shared = tuple(n for n in self.store.tokens.bound_to(row.scope_map) if n != name)
            if new.rules == old.rules:
                return ScopeChange(token_info(row), old, shared)
            self.store.tokens.set_rules(row.scope_map, new.rules_json())
        self._changed("token.scope", name, who, scope_map=row.scope_map,
                      old_scopes=[str(r) for r in old.rules],
                      scopes=[str(r) for r in new.rules], shared_with=list(shared))
        return ScopeChange(self.get(name), old, shared)

    def disable(self, name: str, *, who: Identity) -> TokenInfo:
        return self._set_enabled(name, False, who)

    def enable(self, name: str, *, who: Identity) -> TokenInfo:
        return self._set_enabled(name, True, who)

    def delete(self, name: str, *, who: Identity) -> TokenInfo:
        """Delete the token, its passwords and its own scope map; returns what went."""
        with self.store.exclusive():
            row = self.store.tokens.get(name)
            if row is None or not self.store.tokens.delete(name):
                raise AccessError(f"no token named {name!r}")
        info = token_info(row)
        self._changed("token.delete", name, who, scopes=info.scopes)
        return info

    def _set_enabled(self, name: str, enabled: bool, who: Identity) -> TokenInfo:
        with self.store.exclusive():
            if not self.store.tokens.set_enabled(name, enabled):
                raise AccessError(f"no token named {name!r}")
        self._changed("token.enable" if enabled else "token.disable", name, who)
        return self.get(name)

    def _check_new_name(self, name: str) -> None:
        if NAME_RE.fullmatch(name) is None:
            raise AccessError(
                f"token name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        if name.casefold() in RESERVED_NAMES:
            raise AccessError(f"token name {name!r} is reserved for the appliance's own "
                              "identity in the audit log: choose another")
        try:
            admin_name, _ = read_credentials(self.datadir)
        except EdgeError:
            return
        if name == admin_name:
            raise AccessError(f"token name {name!r} is the admin's user name")

    def _changed(self, action: str, target: str, who: Identity, **detail: Any) -> None:
        note_change()
        self.events.emit(AccessChanged(identity=who.name, action=action, target=target,
                                       detail=detail))


def token_info(row: TokenRow) -> TokenInfo:
    return TokenInfo(
        name=row.name, scope_map=ScopeMap.from_json(row.scope_map, row.rules, row.description),
        enabled=row.enabled, created_at=row.created_at, updated_at=row.updated_at,
        passwords=tuple(PasswordInfo(p.slot, p.created_at, p.expires_at) for p in row.passwords),
    )


def checked_rules(token: str, rules: Sequence[Rule]) -> tuple[Rule, ...]:
    """The rules of `token`'s scope map, each checked as `--scope` is; at least one."""
    if not rules:
        raise AccessError(f"token {token!r}: give at least one scope")
    return tuple(make_rule(rule.pattern, [a for a in ACTIONS if a in rule.actions])
                 for rule in rules)


def expiry(days: float | None) -> float | None:
    """When a password made now with this lifetime expires (None: never)."""
    if days is None:
        return None
    if not days > 0 or days > MAX_EXPIRY_DAYS:
        raise AccessError(f"expiry {days} days: give a number of days above 0, at most "
                          f"{MAX_EXPIRY_DAYS}")
    return time.time() + days * DAY
