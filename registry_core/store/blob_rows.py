"""Blob rows (one per stored content file) and their links to repositories."""

from __future__ import annotations

from registry_core.store.base import Queries
from registry_core.store.metadata import now


class BlobRows(Queries):
    def size(self, digest: str) -> int | None:
        row = self._conn.execute("SELECT size FROM blobs WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else int(row[0])

    def exists(self, digest: str) -> bool:
        return self.size(digest) is not None

    def digests(self) -> set[str]:
        return {str(r[0]) for r in self._conn.execute("SELECT digest FROM blobs")}

    def size_in_repository(self, repository: str, digest: str) -> int | None:
        """The blob's size if it is visible in the repository (by name)."""
        row = self._conn.execute(
            "SELECT b.size FROM blobs b JOIN repository_blobs rb ON rb.digest = b.digest "
            "JOIN repositories r ON r.id = rb.repository_id WHERE r.name = ? AND b.digest = ?",
            (repository, digest),
        ).fetchone()
        return None if row is None else int(row[0])

    def size_linked(self, repo_id: int, digest: str) -> int | None:
        """The blob's size if it is visible in the repository (by id)."""
        row = self._conn.execute(
            "SELECT b.size FROM blobs b JOIN repository_blobs rb ON rb.digest = b.digest "
            "WHERE b.digest = ? AND rb.repository_id = ?",
            (digest, repo_id),
        ).fetchone()
        return None if row is None else int(row[0])

    def record(self, digest: str, size: int) -> None:
        """A stored blob: a new row, or the grace clock of the existing one restarted."""
        t = now()
        self._conn.execute(
            "INSERT INTO blobs(digest, size, created_at, touched_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(digest) DO UPDATE SET touched_at = excluded.touched_at",
            (digest, size, t, t),
        )

    def link(self, repo_id: int, digest: str, touch: bool) -> None:
        """Make the blob visible in the repository; `touch` restarts its grace clock."""
        t = now()
        self._conn.execute(
            "INSERT OR IGNORE INTO repository_blobs(repository_id, digest, linked_at) "
            "VALUES (?, ?, ?)",
            (repo_id, digest, t),
        )
        if touch:
            self._conn.execute("UPDATE blobs SET touched_at = ? WHERE digest = ?", (t, digest))

    def unlink(self, repository: str, digest: str) -> None:
        self._conn.execute(
            "DELETE FROM repository_blobs WHERE digest = ? AND repository_id = "
            "(SELECT id FROM repositories WHERE name = ?)",
            (digest, repository),
        )

    def delete(self, digest: str) -> None:
        """The blob row and every link to it."""
        self._conn.execute("DELETE FROM repository_blobs WHERE digest = ?", (digest,))
        self._conn.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
