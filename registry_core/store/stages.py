"""Staged images: the `repo:tag` items of named stages, their progress, and the pins they hold.

An item goes pending -> downloading -> verifying -> staged, or failed with a reason. A staged
item pins its (repository, digest) until the stage is released or the item expires; a pinned
manifest is a root of the GC's mark (graph.py), so it, its children, layers and config stay.
Expiry is not written anywhere: a staged item read after its `expires_at` reads as `expired`
(SHOWN_STATUSES), so it is right the moment it expires, as the pins are; it stays listed until
the stage is released. Writes belong inside `Store.exclusive()`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from registry_core.store.base import Queries
from registry_core.store.metadata import now

STATUSES = ("pending", "downloading", "verifying", "staged", "failed")
"""What `set_status` writes."""
SHOWN_STATUSES = (*STATUSES, "expired")
"""What a read says: 'expired' is a staged item past its `expires_at`, not yet released."""

ACTIVE_PIN = (
    "s.status = 'staged' AND s.released_at IS NULL "
    "AND (s.expires_at IS NULL OR s.expires_at > :now)"
)
"""A stage item `s` that pins its digest at time `:now`; the GC's roots use it too."""


@dataclass(frozen=True)
class StageItem:
    """One `repo:tag` of a stage, as kept in the `stage_items` table."""

    id: int
    stage: str
    repository: str
    tag: str
    digest: str | None
    status: str
    reason: str
    created_at: float
    updated_at: float
    expires_at: float | None
    released_at: float | None

    def pins(self, at: float) -> bool:
        """Whether this item pins its digest at time `at`."""
        return (
            self.status == "staged" and self.digest is not None and self.released_at is None
            and (self.expires_at is None or self.expires_at > at)
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_COLUMNS = (
    "id, stage, repository, tag, digest, "
    "CASE WHEN status = 'staged' AND released_at IS NULL AND expires_at IS NOT NULL "
    "AND expires_at <= :now THEN 'expired' ELSE status END, "
    "reason, created_at, updated_at, expires_at, released_at"
)
"""The item as read at `:now`: its status derived (SHOWN_STATUSES)."""


def _item(row: Any) -> StageItem:
    return StageItem(*row)


class Stages(Queries):
    def add(
        self, stage: str, repository: str, tag: str, expires_at: float | None = None
    ) -> StageItem:
        """A pending item; an item of the stage for that `repo:tag` that is not released yet
        is kept (with its status and digest) and takes the new expiry."""
        t = now()
        row = self._conn.execute(
            "INSERT INTO stage_items(stage, repository, tag, status, created_at, updated_at, "
            "expires_at) VALUES (:stage, :repository, :tag, 'pending', :now, :now, :expires) "
            "ON CONFLICT(stage, repository, tag) WHERE released_at IS NULL "
            "DO UPDATE SET expires_at = excluded.expires_at, updated_at = excluded.updated_at "
            f"RETURNING {_COLUMNS}",
            {"stage": stage, "repository": repository, "tag": tag, "now": t,
             "expires": expires_at},
        ).fetchone()
        return _item(row)

    def items(self, stage: str | None = None, *, released: bool = False,
              at: float | None = None) -> list[StageItem]:
        """The items of one stage (or of every stage) as read at `at` (default: now), oldest
        first; `released`: with the released ones too."""
        where: list[str] = []
        params: dict[str, Any] = {"now": now() if at is None else at}
        if stage is not None:
            where.append("stage = :stage")
            params["stage"] = stage
        if not released:
            where.append("released_at IS NULL")
        sql = f"SELECT {_COLUMNS} FROM stage_items"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._conn.execute(sql + " ORDER BY stage, id", params).fetchall()
        return [_item(r) for r in rows]

    def get(self, item_id: int, at: float | None = None) -> StageItem | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM stage_items WHERE id = :id",
            {"id": item_id, "now": now() if at is None else at},
        ).fetchone()
        return None if row is None else _item(row)

    def set_status(
        self, item_id: int, status: str, digest: str | None = None, reason: str = ""
    ) -> None:
        """Move an item on; `digest` None keeps the one known, `reason` replaces the last."""
        if status not in STATUSES:
            raise ValueError(f"a stage status must be one of {', '.join(STATUSES)}, "
                             f"not {status!r}")
        self._conn.execute(
            "UPDATE stage_items SET status = ?, digest = COALESCE(?, digest), reason = ?, "
            "updated_at = ? WHERE id = ?",
            (status, digest, reason, now(), item_id),
        )

    def release(self, stage: str) -> int:
        """Release every item of the stage (its pins go): how many were released."""
        t = now()
        cur = self._conn.execute(
            "UPDATE stage_items SET released_at = ?, updated_at = ? "
            "WHERE stage = ? AND released_at IS NULL",
            (t, t, stage),
        )
        return int(cur.rowcount)

    def pinned(self, at: float | None = None) -> set[tuple[str, str]]:
        """(repository, digest) of the staged items neither released nor expired at `at`
        (default: now)."""
        rows = self._conn.execute(
            f"SELECT DISTINCT s.repository, s.digest FROM stage_items s "
            f"WHERE s.digest IS NOT NULL AND {ACTIVE_PIN}",
            {"now": now() if at is None else at},
        )
        return {(str(r[0]), str(r[1])) for r in rows}

    pinned_digests = pinned

    def pinned_by(self, repository: str, digest: str, at: float | None = None) -> list[str]:
        """The stages that pin this manifest itself at `at` (default: now), by name."""
        rows = self._conn.execute(
            f"SELECT DISTINCT s.stage FROM stage_items s WHERE s.repository = :repository "
            f"AND s.digest = :digest AND {ACTIVE_PIN} ORDER BY s.stage",
            {"repository": repository, "digest": digest, "now": now() if at is None else at},
        )
        return [str(r[0]) for r in rows]

    def pins_in(self, repository: str, at: float | None = None) -> list[StageItem]:
        """The items that pin in `repository` at `at` (default: now), by stage: what a delete
        or an untag there must leave alone (registry_core/pins.py)."""
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM stage_items s WHERE s.repository = :repository "
            f"AND s.digest IS NOT NULL AND {ACTIVE_PIN} ORDER BY s.stage, s.id",
            {"repository": repository, "now": now() if at is None else at},
        ).fetchall()
        return [_item(r) for r in rows]
