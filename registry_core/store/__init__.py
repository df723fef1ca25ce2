"""The metadata store: every query of the core, behind typed methods grouped by what they own.

`Store` owns the database connections (one per thread, see metadata.py) and exposes the
groups. Statements run on the calling thread's connection, so a group method called inside
`exclusive()` (the database's single write lock) or `snapshot()` (one read snapshot) is part
of that transaction. sqlite3 errors never leave this package (base.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from registry_core.store.accounting import Accounting
from registry_core.store.audit import AuditRows
from registry_core.store.base import translate, translated
from registry_core.store.blob_rows import BlobRows
from registry_core.store.catalog import Catalog
from registry_core.store.gc_runs import GCRuns
from registry_core.store.kept import KeptManifests
from registry_core.store.manifests import Manifests
from registry_core.store.meta import Meta
from registry_core.store.metadata import Metadata
from registry_core.store.pending_deletes import PendingDeletes
from registry_core.store.reachability import Reachability
from registry_core.store.stages import Stages
from registry_core.store.sync_runs import SyncRuns
from registry_core.store.sync_tags import SyncTags
from registry_core.store.tokens import Tokens
from registry_core.store.uploads import Uploads
from registry_core.store.usage_samples import UsageSamples


class Store:
    """One registry.db: the query groups, the write section and the change counter."""

    def __init__(self, path: Path) -> None:
        with translated("opening the database"):
            self.metadata = Metadata(path)
        """The connections; for the store's own tests, not for the core."""
        db = self.metadata
        self.catalog = Catalog(db)
        self.manifests = Manifests(db)
        self.blobs = BlobRows(db)
        self.uploads = Uploads(db)
        self.gc_runs = GCRuns(db)
        self.usage_samples = UsageSamples(db)
        self.meta = Meta(db)
        self.accounting = Accounting(db)
        self.reachability = Reachability(db)
        self.pending_deletes = PendingDeletes(db)
        self.sync_runs = SyncRuns(db)
        self.stages = Stages(db)
        self.sync_tags = SyncTags(db)
        self.kept = KeptManifests(db)
        self.tokens = Tokens(db)
        self.audit = AuditRows(db)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """A write transaction holding the database's write lock from its start, so that
        writers in every process are serialised (a manifest commit and a GC sweep batch can
        never interleave). A full volume inside raises StorageFull, rolled back."""
        with translated(), self.metadata.write():
            yield

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction: every query inside sees one state of the database."""
        with translated("reading the database"), self.metadata.read():
            yield

    def change_counter(self) -> int:
        """A number that changes whenever another connection (thread or process) commits: a
        cheap 'did anything change?'."""
        try:
            return self.metadata.data_version()
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def close(self) -> None:
        self.metadata.close()
