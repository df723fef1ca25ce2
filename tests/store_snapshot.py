"""A comparable picture of a data dir's stored content: blob files and database rows.

The hostile-input tests take one before and one after their requests, and the two must be
equal. What is left out, and why, is in IGNORED_TABLES and `take_snapshot`'s `uploads`;
everything else, every file under blobs/ and every row of every other table of
registry.db, is compared exactly (timestamps included: a refused request touches nothing).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from registry_core.datadir import DataDir

IGNORED_TABLES = {
    # Written by the UsageSampler on a timer a few seconds after any push or delete: the
    # sample of the seeding pushes may land in the middle of a run.
    "usage_samples": "time-keyed statistics, written on a timer after the seeding pushes",
    # History of GC runs, not stored content. The tests stop the GC schedule; ignored so that
    # a GC started by another process on the same data dir cannot make a check flaky.
    "gc_runs": "history of GC runs, not stored content",
    # Bad input is meant to add rows here (failed logins, refusals); a content change it
    # records would show in the content tables too.
    "audit_log": "the record of refused requests, which bad input adds",
}


@dataclass(frozen=True)
class Snapshot:
    files: dict[str, str]
    """sha256 of every file under blobs/, by path relative to the data dir."""
    tables: dict[str, list[tuple[Any, ...]]]
    """Every row of every compared table, sorted."""

    def diff(self, after: Snapshot, limit: int = 20) -> list[str]:
        """What changed from self to `after`, one line each (empty: identical)."""
        lines = []
        for path in sorted(self.files.keys() | after.files.keys()):
            if self.files.get(path) != after.files.get(path):
                lines.append(f"file {path}: {self.files.get(path)} -> {after.files.get(path)}")
        for table in sorted(self.tables.keys() | after.tables.keys()):
            before_rows = set(self.tables.get(table, []))
            after_rows = set(after.tables.get(table, []))
            lines += [f"{table}: lost {row}" for row in sorted(before_rows - after_rows, key=repr)]
            lines += [f"{table}: new {row}" for row in sorted(after_rows - before_rows, key=repr)]
        if len(lines) > limit:
            lines = [*lines[:limit], f"... and {len(lines) - limit} more"]
        return lines


def take_snapshot(datadir: DataDir, uploads: Collection[str] | None = None) -> Snapshot:
    """Hash blobs/ and read the compared tables of registry.db (read-only connection).

    `uploads`: the upload sessions (ids) whose rows are compared; None compares all. A
    session's row holds its acknowledged size, so a refused chunk must leave it as it was,
    but sessions a run may legitimately open (a mount that falls back to an upload answers
    202, as the spec allows) or finish are not stored content. The files under uploads/ are
    not hashed: bytes past the acknowledged size are scratch that the next chunk truncates.
    """
    files = {
        str(path.relative_to(datadir.root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(datadir.blobs.rglob("*"))
        if path.is_file()
    }
    conn = sqlite3.connect(f"file:{datadir.database}?mode=ro", uri=True)
    try:
        names = [
            str(row[0])
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        tables = {}
        for name in names:
            if name in IGNORED_TABLES:
                continue
            rows = conn.execute(f'SELECT * FROM "{name}"').fetchall()
            if name == "uploads" and uploads is not None:
                rows = [r for r in rows if r[0] in uploads]
            tables[name] = sorted(rows, key=repr)
    finally:
        conn.close()
    return Snapshot(files, tables)
