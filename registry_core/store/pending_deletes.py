"""Blob contents whose rows the GC has deleted and that are still to be removed from the blob
store: written in the transaction that drops the rows, cleared once the content is gone, so
that a crash in between leaves a list to finish rather than files nobody accounts for."""

from __future__ import annotations

from registry_core.store.base import Queries
from registry_core.store.metadata import now


class PendingDeletes(Queries):
    def add(self, digest: str) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO pending_deletes(digest, queued_at) VALUES (?, ?)",
            (digest, now()),
        )

    def digests(self) -> list[str]:
        rows = self._conn.execute("SELECT digest FROM pending_deletes ORDER BY queued_at")
        return [str(r[0]) for r in rows]

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM pending_deletes").fetchone()[0])

    def remove(self, digest: str) -> None:
        self._conn.execute("DELETE FROM pending_deletes WHERE digest = ?", (digest,))
