"""Group commit for a sync pass: the images whose blobs are all here are committed together.

Each image waits for the transaction of the one before it; those that became ready
meanwhile go in the next transaction together (one write lock, one journal sync). With many
small images the commits were the pass's bottleneck, one at a time under the lock.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

from registry_core.identity import Identity
from registry_core.ingest import Ingest, IngestImage, IngestResult

MAX_BATCH = 64
"""Images in one transaction at most: the write lock is not held for long by one pass."""


class GroupCommit:
    def __init__(self, ingest: Ingest, who: Identity) -> None:
        self.ingest = ingest
        self.who = who
        self._queue: list[tuple[IngestImage, Future[IngestResult]]] = []
        self._queue_lock = threading.Lock()
        self._leader = threading.Lock()
        self.transactions = 0

    @property
    def waiting(self) -> int:
        """Images queued for the next transaction."""
        with self._queue_lock:
            return len(self._queue)

    @property
    def leading(self) -> bool:
        """A transaction is under way (its leader holds the lock)."""
        return self._leader.locked()

    def commit(self, image: IngestImage) -> IngestResult:
        """Store `image` (with those queued alongside it); its result or its own error."""
        done: Future[IngestResult] = Future()
        with self._queue_lock:
            self._queue.append((image, done))
        while not done.done():
            with self._leader:
                with self._queue_lock:
                    batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                if batch:
                    self._commit(batch)
        return done.result()

    def _commit(self, batch: list[tuple[IngestImage, Future[IngestResult]]]) -> None:
        try:
            results = self.ingest.commit_many([image for image, _ in batch], who=self.who)
        except Exception as exc:  # handed to the waiting image's thread
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
            else:  # one bad image must not fail the others: each alone
                for item in batch:
                    self._commit([item])
            return
        except BaseException as exc:  # interrupted: nobody may wait for this batch forever
            for _, done in batch:
                done.set_exception(exc)
            raise
        self.transactions += 1
        for (_, done), result in zip(batch, results, strict=True):
            done.set_result(result)
