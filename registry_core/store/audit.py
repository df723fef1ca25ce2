"""The audit log: who did what, from where, with what result.

Rows are inserted inside the write transaction of the change they record (`Store.exclusive()`),
read newest first with keyset paging (`before_id`), and pruned in small batches by age and
by count (each batch its own short transaction, so that pruning never holds up a push).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from registry_core.store.base import Queries


@dataclass(frozen=True)
class NewAuditRow:
    """A row to insert (its id is the database's)."""

    at: float
    principal: str
    principal_kind: str
    address: str | None
    action: str
    repository: str | None
    reference: str | None
    result: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEntry(NewAuditRow):
    """One row of `audit_log`."""

    id: int = field(default=0, kw_only=True)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AuditFilter:
    """What a query keeps; None: any. `since`/`until` are epoch seconds (until excluded);
    `text` keeps rows whose principal, action or repository contains it (case-insensitive,
    for a filter typed as you go)."""

    since: float | None = None
    until: float | None = None
    principal: str | None = None
    action: str | None = None
    repository: str | None = None
    text: str | None = None


_COLUMNS = ("id, at, principal, principal_kind, address, action, repository, reference, "
            "result, detail")
_INSERT = ("INSERT INTO audit_log(at, principal, principal_kind, address, action, repository, "
           "reference, result, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _entry(row: Any) -> AuditEntry:
    row_id, *values = row
    values[-1] = json.loads(values[-1] or "{}")
    return AuditEntry(*values, id=row_id)


def _values(row: NewAuditRow) -> tuple[Any, ...]:
    return (row.at, row.principal, row.principal_kind, row.address, row.action,
            row.repository, row.reference, row.result,
            json.dumps(row.detail, sort_keys=True, default=str))


def _where(chosen: AuditFilter, before_id: int | None = None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, op, value in (
        ("at", ">=", chosen.since), ("at", "<", chosen.until),
        ("principal", "=", chosen.principal), ("action", "=", chosen.action),
        ("repository", "=", chosen.repository), ("id", "<", before_id),
    ):
        if value is not None:
            clauses.append(f"{column} {op} ?")
            params.append(value)
    if chosen.text:
        like = "%" + re.sub(r"([\\%_])", r"\\\1", chosen.text) + "%"
        clauses.append("(principal LIKE ? ESCAPE '\\' OR action LIKE ? ESCAPE '\\' "
                       "OR repository LIKE ? ESCAPE '\\')")
        params += [like, like, like]
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


class AuditRows(Queries):
    def insert(self, row: NewAuditRow) -> int:
        """One row; inside the change's own write transaction."""
        cur = self._conn.execute(_INSERT, _values(row))
        return int(cur.lastrowid or 0)

    def insert_many(self, rows: Sequence[NewAuditRow]) -> None:
        self._conn.executemany(_INSERT, [_values(r) for r in rows])

    def page(self, chosen: AuditFilter, before_id: int | None, limit: int) -> list[AuditEntry]:
        """Newest first: the rows `chosen` keeps with an id below `before_id` (None: from
        the newest), at most `limit`."""
        where, params = _where(chosen, before_id)
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM audit_log{where} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [_entry(r) for r in rows]

    def count(self, chosen: AuditFilter | None = None) -> int:
        where, params = _where(chosen or AuditFilter())
        return int(self._conn.execute(
            f"SELECT COUNT(*) FROM audit_log{where}", params).fetchone()[0])

    def prune_older_than(self, at: float, batch: int) -> int:
        """Delete at most `batch` of the oldest rows written before `at`: how many went."""
        return int(self._conn.execute(
            "DELETE FROM audit_log WHERE id IN "
            "(SELECT id FROM audit_log WHERE at < ? ORDER BY at LIMIT ?)",
            (at, batch),
        ).rowcount)

    def first_id_to_keep(self, keep: int) -> int | None:
        """The id of the `keep`-th newest row (None: fewer rows than that)."""
        row = self._conn.execute(
            "SELECT id FROM audit_log ORDER BY id DESC LIMIT 1 OFFSET ?", (max(keep - 1, 0),)
        ).fetchone()
        return None if row is None else int(row[0])

    def prune_below(self, first_kept: int, batch: int) -> int:
        """Delete at most `batch` of the oldest rows with an id below `first_kept`."""
        return int(self._conn.execute(
            "DELETE FROM audit_log WHERE id IN "
            "(SELECT id FROM audit_log WHERE id < ? ORDER BY id LIMIT ?)",
            (first_kept, batch),
        ).rowcount)
