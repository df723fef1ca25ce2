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
