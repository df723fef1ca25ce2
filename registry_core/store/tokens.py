"""Client tokens, their passwords (hashes only) and the scope maps they are bound to.

Every change bumps `meta.tokens_generation` in the same transaction, so that a server
checking credentials (in this process or another) can tell cheaply that its cached verdicts
may be stale.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from registry_core.store.base import Queries
from registry_core.store.metadata import now


@dataclass(frozen=True)
class PasswordRow:
    slot: int
    hash: str
    created_at: float
    expires_at: float | None


@dataclass(frozen=True)
class TokenRow:
    name: str
    scope_map: str
    rules: list[Any]
    """The scope map's rules as stored: `[{"pattern", "actions"}]`."""
    description: str
    enabled: bool
    created_at: float
    updated_at: float
    passwords: tuple[PasswordRow, ...]


_TOKEN_SELECT = (
    "SELECT t.name, t.scope_map, m.rules, m.description, t.enabled, t.created_at, "
    "t.updated_at FROM tokens t JOIN scope_maps m ON m.name = t.scope_map"
)


class Tokens(Queries):
    def generation(self) -> int:
        """A number every token or scope-map change increases."""
        rows = self._conn.execute(
            "SELECT value FROM meta WHERE key = 'tokens_generation'"
        ).fetchall()
        return int(rows[0][0]) if rows else 0

    def get(self, name: str) -> TokenRow | None:
        row = self._conn.execute(f"{_TOKEN_SELECT} WHERE t.name = ?", (name,)).fetchone()
        return None if row is None else self._token(row)

    def all(self) -> list[TokenRow]:
        rows = self._conn.execute(f"{_TOKEN_SELECT} ORDER BY t.name").fetchall()
        return [self._token(row) for row in rows]

    def create(
        self, name: str, scope_map: str, rules: list[dict[str, Any]], description: str
    ) -> None:
        """A token bound to a new scope map of its own (call inside `exclusive()`)."""
        at = now()
        self._conn.execute(
            "INSERT INTO scope_maps(name, description, rules, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (scope_map, description, json.dumps(rules), at, at),
        )
        self._conn.execute(
            "INSERT INTO tokens(name, scope_map, enabled, created_at, updated_at) "
            "VALUES (?, ?, 1, ?, ?)",
            (name, scope_map, at, at),
        )
        self._bump()

    def scope_map_exists(self, name: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM scope_maps WHERE name = ?", (name,)).fetchone()
        return row is not None

    def set_rules(self, scope_map: str, rules: list[dict[str, Any]]) -> None:
        """Replace a scope map's rules: every token bound to it has them at once (call inside
        `exclusive()`)."""
        at = now()
        self._conn.execute("UPDATE scope_maps SET rules = ?, updated_at = ? WHERE name = ?",
                           (json.dumps(rules), at, scope_map))
        self._conn.execute("UPDATE tokens SET updated_at = ? WHERE scope_map = ?",
                           (at, scope_map))
        self._bump()

    def bound_to(self, scope_map: str) -> list[str]:
        """The names of the tokens bound to `scope_map`, in order."""
        rows = self._conn.execute(
            "SELECT name FROM tokens WHERE scope_map = ? ORDER BY name", (scope_map,))
        return [row[0] for row in rows]

    def set_password(self, name: str, slot: int, hashed: str, expires_at: float | None) -> None:
        at = now()
        self._conn.execute(
            "INSERT OR REPLACE INTO token_passwords(token, slot, hash, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (name, slot, hashed, at, expires_at),
        )
        self._touch(name, at)

    def set_enabled(self, name: str, enabled: bool) -> bool:
        """False if there is no such token."""
        cursor = self._conn.execute(
            "UPDATE tokens SET enabled = ?, updated_at = ? WHERE name = ?",
            (int(enabled), now(), name),
        )
        self._bump()
        return cursor.rowcount > 0

    def delete(self, name: str) -> bool:
        """Delete the token (its passwords go with it) and its scope map when no other token
        uses it; False if there is no such token."""
        row = self._conn.execute("SELECT scope_map FROM tokens WHERE name = ?", (name,))
        found = row.fetchone()
        if found is None:
            return False
        self._conn.execute("DELETE FROM tokens WHERE name = ?", (name,))
        self._conn.execute(
            "DELETE FROM scope_maps WHERE name = ? AND NOT EXISTS "
            "(SELECT 1 FROM tokens WHERE scope_map = ?)",
            (found[0], found[0]),
        )
        self._bump()
        return True

    def _touch(self, name: str, at: float) -> None:
        self._conn.execute("UPDATE tokens SET updated_at = ? WHERE name = ?", (at, name))
        self._bump()

    def _bump(self) -> None:
        self._conn.execute(
            "INSERT INTO meta(key, value) VALUES ('tokens_generation', '1') "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )

    def _token(self, row: sqlite3.Row) -> TokenRow:
        passwords = self._conn.execute(
            "SELECT slot, hash, created_at, expires_at FROM token_passwords WHERE token = ? "
            "ORDER BY slot",
            (row[0],),
        ).fetchall()
        return TokenRow(
            name=row[0], scope_map=row[1], rules=list(json.loads(row[2])), description=row[3],
            enabled=bool(row[4]), created_at=row[5], updated_at=row[6],
            passwords=tuple(PasswordRow(p[0], p[1], p[2], p[3]) for p in passwords),
        )
