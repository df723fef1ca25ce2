"""The work of one GC run: mark in one read snapshot, then sweep manifests, blobs, orphan
blob files and abandoned uploads in short write transactions that re-check each verdict
(see gc.py for why that is safe while pushes go on).

A blob's row goes in one transaction, which also lists its content in `pending_deletes`;
the content is removed after that commit (blobs.py, re-checked under the write lock). A
crash in between leaves the list, finished by the next open or run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from registry_core.blobs import Blobs
from registry_core.config import Config
from registry_core.gc_run import (
    PHASE_BLOBS,
    PHASE_MANIFESTS,
    PHASE_MARK,
    PHASE_UPLOADS,
    Run,
)
from registry_core.store import Store
from registry_core.store.blobs import BlobFiles
from registry_core.store.reachability import DeadManifest


class Sweeper:
    """Mark and sweep over one store and its blob files."""

    def __init__(self, store: Store, blobs: Blobs, config: Config, batch: int) -> None:
        self.store = store
        self.blobs = blobs
        self.files: BlobFiles = blobs.files
        self.config = config
        self.batch = batch

    def sweep(self, run: Run) -> None:
        record = run.record
        cutoff = record.started_at - record.grace_period_seconds
        reach = self.store.reachability
        run.log(
            f"run {record.id} ({record.trigger}{', dry run' if record.dry_run else ''}): "
            f"grace period {record.grace_period_seconds:g} s, delete untagged "
            f"{'on' if record.delete_untagged else 'off'}",
        )
        # Mark in one read snapshot; the sweep re-checks everything under the write lock.
        run.phase(PHASE_MARK, 1)
        with self.store.snapshot():
            result = reach.mark(delete_untagged=record.delete_untagged, cutoff=cutoff)
            dead = reach.dead_manifests()
            garbage = list(reach.garbage(collectable_only=True).items())
        with run.lock:
            record.manifests_scanned = result.manifests_total
            record.blobs_scanned = result.blobs_total
            record.manifests_kept_grace = result.manifests_kept_grace
            record.blobs_kept_grace = result.blobs_kept_grace
        run.emit(PHASE_MARK, 1, 1)
        run.log(
            f"marked {result.manifests_total} manifests and {result.blobs_total} blobs: "
            f"{len(dead)} manifests and {len(garbage)} blobs ({result.bytes_collectable} bytes) "
            "are garbage",
        )
        run.check_cancel()
        if not record.dry_run:
            record.errors.extend(self.blobs.finish_pending_deletes())  # a crashed run's
        self.sweep_manifests(run, dead, cutoff)
        self.sweep_blobs(run, garbage, cutoff)
        self.purge_orphan_blobs(run, cutoff)
        self.purge_uploads(run)

    def _chunks(self, items: list[Any]) -> Iterator[list[Any]]:
        for i in range(0, len(items), self.batch):
            yield items[i : i + self.batch]

    def sweep_manifests(self, run: Run, dead: list[DeadManifest], cutoff: float) -> None:
        record = run.record
        run.phase(PHASE_MANIFESTS, len(dead))
        if record.dry_run:
            run.count(manifests_deleted=len(dead))
            run.deleted_manifests = [{"repository": m.repository, "digest": m.digest} for m in dead]
            run.emit(PHASE_MANIFESTS, len(dead), len(dead))
            return
        pending = dead
        done = 0
        # Parents before children, subjects before referrers: a manifest still held by an
        # existing index or subject waits for the next pass (or stays, if that one is kept).
        while pending:
            deferred: list[DeadManifest] = []
            progressed = False
            for batch in self._chunks(pending):
                run.check_cancel()
                with self.store.exclusive():
                    for item in batch:
                        verdict = self.store.reachability.verdict(
                            item.id, delete_untagged=record.delete_untagged, cutoff=cutoff
                        )
                        if verdict == "blocked":
                            deferred.append(item)
                            continue
                        done += 1
                        if verdict == "delete":
                            self.store.manifests.delete(item.id)
                            progressed = True
                            run.deleted_manifests.append(
                                {"repository": item.repository, "digest": item.digest}
                            )
                            run.count(manifests_deleted=1)
                run.emit(PHASE_MANIFESTS, done, len(dead))
            if not progressed:
                break
            pending = deferred
        if record.manifests_deleted:
            run.log(f"deleted {record.manifests_deleted} manifests")

    def sweep_blobs(self, run: Run, garbage: list[tuple[str, int]], cutoff: float) -> None:
        record = run.record
        run.phase(PHASE_BLOBS, len(garbage))
        if record.dry_run:
            run.count(blobs_deleted=len(garbage), bytes_freed=sum(s for _, s in garbage))
            run.deleted_blobs = [{"digest": d, "size": s} for d, s in garbage]
            run.emit(PHASE_BLOBS, len(garbage), len(garbage))
            return
        done = 0
        for batch in self._chunks(garbage):
            run.check_cancel()
            dropped: list[str] = []
            with self.store.exclusive():
                for digest, _size in batch:
                    done += 1
                    size = self.store.reachability.collectable_blob(digest, cutoff)
                    if size is None:
                        continue  # referenced or touched since the mark: keep it
                    self.store.blobs.delete(digest)
                    self.store.pending_deletes.add(digest)
                    dropped.append(digest)
                    run.deleted_blobs.append({"digest": digest, "size": size})
                    run.count(blobs_deleted=1, bytes_freed=size)
            # Reported once committed, before the content goes: a crash from here on leaves
            # the batch in pending_deletes.
            run.emit(PHASE_BLOBS, done, len(garbage))
            record.errors.extend(self.blobs.finish_pending_deletes(dropped))
        if record.blobs_deleted:
            run.log(f"deleted {record.blobs_deleted} blobs, {record.bytes_freed} bytes freed")

    def purge_orphan_blobs(self, run: Run, cutoff: float) -> None:
        """Blob files with no row, older than the cutoff: left by a power cut or a full volume
        between the rename that put them in place and the commit that would have recorded
        them. Re-checked under the write lock, which that rename and commit also hold."""
        record = run.record
        known = self.store.blobs.digests()
        orphans = [
            entry
            for entry in self.blobs.content.list_unknown(known)
            if entry.modified_at < cutoff
        ]
        for batch in self._chunks(orphans):
            run.check_cancel()
            with self.store.exclusive():
                for entry in batch:
                    digest = str(entry.digest)
                    if self.store.blobs.exists(digest):
                        continue
                    if not record.dry_run:
                        self.blobs.content.delete(entry.digest)
                    run.deleted_blobs.append({"digest": digest, "size": entry.size,
                                              "orphan": True})
                    run.count(blobs_deleted=1, bytes_freed=entry.size)
        if orphans:
            run.log(f"{len(orphans)} blob files without a record (orphans) removed")

    def purge_uploads(self, run: Run) -> None:
        record = run.record
        max_age = self.config.gc.upload_max_age_seconds
        if not max_age > 0:  # a bound of 0 or less would purge the uploads in progress
            run.phase(PHASE_UPLOADS, 0)
            run.log(f"uploads not purged: gc.upload_max_age_seconds is {max_age}, "
                    "not a positive number of seconds")
            return
        limit = record.started_at - max_age
        uploads = self.store.uploads
        stale = uploads.stale(limit)
        run.phase(PHASE_UPLOADS, len(stale))
        if record.dry_run:
            run.count(uploads_purged=len(stale))
            run.purged_uploads = stale
            return
        for batch in self._chunks(stale):
            run.check_cancel()
            with self.store.exclusive():
                for upload_id in batch:
                    if uploads.delete_if_stale(upload_id, limit):
                        self.files.remove_upload(upload_id)
                        run.purged_uploads.append(upload_id)
                        run.count(uploads_purged=1)
        self._purge_stray_upload_files(run, limit)
        if record.uploads_purged:
            run.log(f"purged {record.uploads_purged} abandoned uploads")

    def _purge_stray_upload_files(self, run: Run, limit: float) -> None:
        """Files in uploads/ with no session row (a crash between file and row) and old."""
        uploads = self.store.uploads
        known = uploads.ids()
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.files.uploads_root):
                with contextlib.suppress(OSError):
                    if entry.name in known or entry.stat().st_mtime >= limit:
                        continue
                    with self.store.exclusive():
                        if not uploads.exists(entry.name):
                            os.unlink(entry.path)
                            run.count(uploads_purged=1)
