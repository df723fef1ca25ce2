"""Upload sessions: the bytes acknowledged so far of each upload in progress."""

from __future__ import annotations

from registry_core.store.base import Queries
from registry_core.store.metadata import now


class Uploads(Queries):
    def create(self, upload_id: str, repository: str) -> None:
        t = now()
        self._conn.execute(
            "INSERT INTO uploads(id, repository, size, created_at, updated_at) "
            "VALUES (?, ?, 0, ?, ?)",
            (upload_id, repository, t, t),
        )

    def size(self, upload_id: str, repository: str) -> int | None:
        """Bytes acknowledged, or None if the repository has no such upload."""
        row = self._conn.execute(
            "SELECT size FROM uploads WHERE id = ? AND repository = ?", (upload_id, repository)
        ).fetchone()
        return None if row is None else int(row[0])

    def set_size(self, upload_id: str, repository: str, size: int) -> bool:
        """Acknowledge `size` bytes; False if the upload is gone."""
        cur = self._conn.execute(
            "UPDATE uploads SET size = ?, updated_at = ? WHERE id = ? AND repository = ?",
            (size, now(), upload_id, repository),
        )
        return cur.rowcount > 0

    def exists(self, upload_id: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM uploads WHERE id = ?", (upload_id,)).fetchone()
        return row is not None

    def ids(self) -> set[str]:
        return {str(r[0]) for r in self._conn.execute("SELECT id FROM uploads")}

    def delete(self, upload_id: str) -> None:
        self._conn.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))

    def stale(self, before: float) -> list[str]:
        """Uploads with no progress since `before`."""
        rows = self._conn.execute("SELECT id FROM uploads WHERE updated_at < ?", (before,))
        return [str(r[0]) for r in rows]

    def delete_if_stale(self, upload_id: str, before: float) -> bool:
        cur = self._conn.execute(
            "DELETE FROM uploads WHERE id = ? AND updated_at < ?", (upload_id, before)
        )
        return cur.rowcount > 0
