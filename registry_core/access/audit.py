"""The audit log: who changed what, from where, with what result (`registry.audit`).

Two ways in:

* Content changes (manifest pushes and deletes, tag moves, blob deletes, GC and sync runs)
  are recorded with `AuditLog.record` INSIDE the write transaction of the change: an
  acknowledged change always has its row, a rolled-back one never, and a push pays one row
  insert, no extra transaction or fsync.
* What the HTTP face refuses (LoginFailed, AccessDenied) arrives as events, possibly in
  storms (a client retrying a wrong password in a loop). Those are queued, coalesced
  (identical rows within a flush interval become one row with a `count`) and written by one
  background thread in one transaction per interval, so a storm costs a dict update per
  request and a handful of rows; the queue is bounded (beyond MAX_PENDING distinct rows, the
  rest is counted in one 'audit.overflow' row). AccessChanged (token and scope-map changes,
  rare and deliberate) is written at once, in the thread that made the change.

The log is bounded by age and count (`[audit]` in config.toml): pruned in small batches, each
its own short transaction, after every PRUNE_EVERY rows this process records and at the end
of every GC run; never inside a push's transaction.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from registry_core import durations
from registry_core.config import AuditConfig
from registry_core.datadir import DataDir
from registry_core.errors import ConfigError, StorageFull, StoreBusy, StoreError
from registry_core.events import AccessChanged, AccessDenied, EventBus, LoginFailed, Subscription
from registry_core.identity import CONSOLE, GC, SYNC, Identity
from registry_core.store import Store
from registry_core.store.audit import AuditEntry, AuditFilter, NewAuditRow

__all__ = ["DENIED", "FAILED", "OK", "AuditEntry", "AuditFilter", "AuditLog"]

log = logging.getLogger("edge_registry.audit")

OK, DENIED, FAILED = "ok", "denied", "failed"
SYSTEM_NAMES = frozenset({CONSOLE.name, GC.name, SYNC.name})

FLUSH_INTERVAL = 1.0
"""Queued event rows are written at most this long after they arrive."""
MAX_PENDING = 1024
"""Distinct event rows held between two writes (identical ones are counted, not held)."""
PRUNE_EVERY = 1000
"""Rows recorded by this process between two prunes."""
PRUNE_BATCH = 500
"""Rows deleted per pruning transaction."""
MAX_PAGE = 10_000
DAY = 86400.0
_SHORT_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY}


def parse_duration(text: str) -> float:
    """Seconds in `30m`, `1h`, `7d`, `2w` or an ISO-8601 duration (`PT3H`, `P1DT12H`), as
    `audit --since` takes them; ConfigError in one line naming `audit --since` otherwise."""
    value = text.strip().lower()
    match = _SHORT_DURATION.fullmatch(value)
    if match is not None and float(match.group(1)) > 0:
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if value.startswith("p"):
        return durations.parse_duration(text, "audit --since")
    raise ConfigError(f"audit --since {text.strip()[:60]!r} is not a duration such as 30m, "
                      "1h, 7d, 2w or PT3H")

Key = tuple[str, str, str | None, str, str | None, str | None, str, str]
"""principal, kind, address, action, repository, reference, result, reason."""


@dataclass
class _Pending:
    first_at: float
    last_at: float
    count: int = 1


class EventRows:
    """Queued, coalesced rows from events, written by one background thread."""

    def __init__(self, store: Store, interval: float = FLUSH_INTERVAL,
                 limit: int = MAX_PENDING) -> None:
        self.store = store
        self.interval = interval
        self.limit = limit
        self._cond = threading.Condition()
        self._pending: dict[Key, _Pending] = {}
        self._overflow = 0
        self._flushing = False
        self._written = 0  # generations written, for flush()
        self._wanted = 0
        self._prune: Callable[[], None] | None = None
        self._stop = False
        self._thread: threading.Thread | None = None

    def add(self, key: Key, at: float) -> None:
        """Queue a row (cheap: this runs in the request's thread)."""
        with self._cond:
            pending = self._pending.get(key)
            if pending is not None:
                pending.count += 1
                pending.last_at = max(pending.last_at, at)
            elif len(self._pending) < self.limit:
                self._pending[key] = _Pending(at, at)
            else:
                self._overflow += 1
            self._wake()

    def request_prune(self, prune: Callable[[], None]) -> None:
        with self._cond:
            self._prune = prune
            self._wake()

    def flush(self, timeout: float = 30.0) -> None:
        """Write what is queued now and wait until it is written."""
        with self._cond:
            if self._thread is None:
                return
            self._wanted += 1
            goal = self._wanted
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._written >= goal or self._stop, timeout)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(self.interval + 30.0)

    def _wake(self) -> None:
        if self._thread is None and not self._stop:
            self._thread = threading.Thread(target=self._loop, name="audit-writer",
                                            daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(self._has_work)
                # Let identical rows gather for one interval (a flush or close cuts it short).
                self._cond.wait_for(lambda: self._stop or self._wanted > self._written,
                                    self.interval if self._pending else 0)
                rows, prune = self._take()
                goal, stop = self._wanted, self._stop
            try:
                self._write(rows)
                if prune is not None:
                    prune()
            except Exception:  # the writer must outlive any one bad batch
                log.exception("audit writer: a batch failed")
            with self._cond:
                self._written = goal
                self._cond.notify_all()
            if stop:
                return

    def _has_work(self) -> bool:
        return bool(self._stop or self._pending or self._overflow or self._prune
                    or self._wanted > self._written)

    def _take(self) -> tuple[list[NewAuditRow], Callable[[], None] | None]:
        rows = [_event_row(key, p) for key, p in self._pending.items()]
        if self._overflow:
            rows.append(NewAuditRow(time.time(), "audit", "system", None, "audit.overflow",
                                    None, None, FAILED, {"count": self._overflow}))
        self._pending, self._overflow = {}, 0
        prune, self._prune = self._prune, None
        return rows, prune

    def _write(self, rows: list[NewAuditRow]) -> None:
        if not rows:
            return
        try:
            with self.store.exclusive():
                self.store.audit.insert_many(rows)
        except (StoreError, StoreBusy, StorageFull):
            log.warning("%d audit rows could not be written", len(rows), exc_info=True)


def _event_row(key: Key, pending: _Pending) -> NewAuditRow:
    principal, kind, address, action, repository, reference, result, reason = key
    detail: dict[str, Any] = {"reason": reason} if reason else {}
    if pending.count > 1:
        detail.update(count=pending.count, last_at=pending.last_at)
    return NewAuditRow(pending.first_at, principal, kind, address, action, repository,
                       reference, result, detail)


class AuditLog:
    """The registry's audit log: `record` inside a change's transaction, `query` to read."""

    def __init__(self, store: Store, events: EventBus, config: AuditConfig,
                 admin_name: str = "") -> None:
        self.store = store
        self.config = config
        self.admin_name = admin_name
        self.queued = EventRows(store)
        self._recorded = 0
        self._subscription: Subscription[Any] = events.subscribe(
            self._on_event, LoginFailed, AccessDenied, AccessChanged)

    def record(self, who: Identity, action: str, *, repository: str | None = None,
               reference: str | None = None, result: str = OK,
               detail: dict[str, Any] | None = None) -> None:
        """One row, written by the caller's open write transaction (`store.exclusive()`)."""
        self.store.audit.insert(NewAuditRow(
            time.time(), who.name, who.kind, who.address, action, repository, reference,
            result, detail or {}))
        self._recorded += 1
        if self._recorded % PRUNE_EVERY == 0:
            self.queued.request_prune(self._prune_quietly)

    def record_now(self, who: Identity, action: str, **row: Any) -> None:
        """One row in a transaction of its own (a change made outside the database)."""
        with self.store.exclusive():
            self.record(who, action, **row)

    def query(self, chosen: AuditFilter | None = None, *, before_id: int | None = None,
              limit: int = 100) -> list[AuditEntry]:
        """Newest first, the rows `chosen` keeps older than `before_id` (keyset paging:
        pass the last id of a page to get the next)."""
        limit = max(1, min(limit, MAX_PAGE))
        return self.store.audit.page(chosen or AuditFilter(), before_id, limit)

    def count(self, chosen: AuditFilter | None = None) -> int:
        return self.store.audit.count(chosen)

    def prune(self, at: float | None = None) -> int:
        """Drop rows older than max_age_days and beyond the newest max_entries, in short
        batches; how many went."""
        removed = 0
        if self.config.max_age_days > 0:
            cutoff = (time.time() if at is None else at) - self.config.max_age_days * DAY
            removed += self._in_batches(lambda: self.store.audit.prune_older_than(
                cutoff, PRUNE_BATCH))
        if self.config.max_entries > 0:
            first_kept = self.store.audit.first_id_to_keep(self.config.max_entries)
            if first_kept is not None:
                removed += self._in_batches(lambda: self.store.audit.prune_below(
                    first_kept, PRUNE_BATCH))
        return removed

    def _prune_quietly(self) -> None:
        try:
            self.prune()
        except (StoreError, StoreBusy, StorageFull):
            log.warning("could not prune the audit log", exc_info=True)

    def _in_batches(self, delete: Callable[[], int]) -> int:
        total = 0
        while True:
            with self.store.exclusive():
                n = delete()
            total += n
            if n < PRUNE_BATCH:
                return total

    def flush(self, timeout: float = 30.0) -> None:
        """Write the queued event rows now (tests; a clean shutdown does it too)."""
        self.queued.flush(timeout)

    def close(self) -> None:
        self._subscription.close()
        self.queued.close()

    def kind_of(self, name: str | None) -> str:
        """The principal kind of a name an event carries."""
        if name in SYSTEM_NAMES:
            return "system"
        if name and name == self.admin_name:
            return "admin"
        return "token" if name else "unknown"

    def _on_event(self, event: LoginFailed | AccessDenied | AccessChanged) -> None:
        if isinstance(event, AccessChanged):
            self._on_access_changed(event)
            return
        if isinstance(event, LoginFailed):
            key: Key = (event.principal, "unknown", event.address, "login", None, None,
                        FAILED, event.reason)
        else:  # named as the operation it tried; the reason names the action it lacked
            key = (event.identity or "", self.kind_of(event.identity), event.address,
                   event.operation or event.action, event.repository, event.reference,
                   DENIED, event.reason)
        self.queued.add(key, event.when)

    def _on_access_changed(self, event: AccessChanged) -> None:
        row = NewAuditRow(event.when, event.identity or "", self.kind_of(event.identity), None,
                          event.action, None, event.target, OK, dict(event.detail))
        with self.store.exclusive():
            self.store.audit.insert(row)


def record_config_change(datadir: DataDir, action: str, detail: dict[str, Any], *,
                         who: Identity = CONSOLE) -> bool:
    """Record a change of the data dir's settings (made in files, not in the database) in
    its own transaction. False when the data dir has no database yet (the first `enable`:
    nothing to record it in) or it could not be written (logged; the change stands)."""
    if not datadir.database.exists():
        return False
    row = NewAuditRow(time.time(), who.name, who.kind, who.address, action, None, None, OK,
                      detail)
    try:
        store = Store(datadir.database)
        try:
            with store.exclusive():
                store.audit.insert(row)
        finally:
            store.close()
    except (StoreError, StoreBusy, StorageFull) as exc:
        # One line: the change stands and the caller's output must stay readable.
        log.warning("could not record %s in the audit log: %s", action, exc)
        return False
    return True
