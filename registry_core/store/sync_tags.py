"""The digest each synced tag had when both sides last agreed (ReadWrite sync's base)."""

from __future__ import annotations

from registry_core.store.base import Queries
from registry_core.store.metadata import now


class SyncTags(Queries):
    def bases(self, repository: str) -> dict[str, str]:
        """Tag -> the digest both sides last had."""
        rows = self._conn.execute(
            "SELECT tag, digest FROM sync_tags WHERE repository = ?", (repository,)
        ).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    def agree(self, repository: str, tag: str, digest: str) -> None:
        """Both sides have `digest` under `tag` now; inside exclusive()."""
        self._conn.execute(
            "INSERT INTO sync_tags (repository, tag, digest, synced_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (repository, tag) DO UPDATE SET digest = excluded.digest, "
            "synced_at = excluded.synced_at",
            (repository, tag, digest, now()),
        )

    def repositories_holding(self, digest: str) -> list[str]:
        """Repositories synced with the parent (a tag agreed on) where blob `digest` is
        visible here, the most recently synced first: where the parent likely has it too."""
        rows = self._conn.execute(
            "SELECT r.name FROM repository_blobs rb JOIN repositories r ON r.id = "
            "rb.repository_id JOIN sync_tags s ON s.repository = r.name WHERE rb.digest = ? "
            "GROUP BY r.name ORDER BY MAX(s.synced_at) DESC",
            (digest,),
        ).fetchall()
        return [str(r[0]) for r in rows]
