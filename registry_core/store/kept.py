"""Manifests kept by the sync: a local manifest that lost its tag to the parent in a ReadWrite
conflict. The GC's mark counts them as roots (graph.py), so they stay reachable by digest even
where untagged manifests are collected; deleting one by digest drops its row (cascade)."""

from __future__ import annotations

from registry_core.store.base import Queries
from registry_core.store.metadata import now

_MANIFEST = (
    "SELECT m.id FROM manifests m JOIN repositories r ON r.id = m.repository_id "
    "WHERE r.name = :repository AND m.digest = :digest"
)


class KeptManifests(Queries):
    def keep(self, repository: str, digest: str, reason: str) -> bool:
        """Keep `repository@digest` with `reason`, inside exclusive(); False when it was kept
        already (the first reason stays) or is not here."""
        cur = self._conn.execute(
            f"INSERT OR IGNORE INTO kept_manifests (manifest_id, reason, kept_at) "
            f"SELECT id, :reason, :now FROM ({_MANIFEST})",
            {"repository": repository, "digest": digest, "reason": reason, "now": now()},
        )
        return cur.rowcount > 0

    def release(self, repository: str, digest: str) -> None:
        """Keep it no longer (GC may take it when untagged); inside exclusive()."""
        self._conn.execute(
            f"DELETE FROM kept_manifests WHERE manifest_id IN ({_MANIFEST})",
            {"repository": repository, "digest": digest},
        )

    def reason(self, repository: str, digest: str) -> str | None:
        """Why it is kept, or None."""
        row = self._conn.execute(
            f"SELECT reason FROM kept_manifests WHERE manifest_id IN ({_MANIFEST})",
            {"repository": repository, "digest": digest},
        ).fetchone()
        return None if row is None else str(row[0])
