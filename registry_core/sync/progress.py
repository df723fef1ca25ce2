"""Each repository of a running pass, so far: the figures `SyncProgress.repositories` carries.

The pass counts; `notify(urgent)` tells the runner that something changed: urgent when a
repository began or ended (always worth an event), not urgent for a tag copied or blob bytes
(the runner sends those a few times a second at most).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from registry_core.events import RepositoryProgress

COUNTS = ("tags_checked", "tags_changed", "manifests_copied", "blobs_copied", "bytes_copied")
"""The counters a repository shares with the pass's report (engine.PassReport)."""


@dataclass
class _Repository:
    state: str = "waiting"
    tags_total: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    error: str = ""


class RepositoryCounts:
    """Per-repository state and counters; safe to use from the pass's threads."""

    def __init__(self, notify: Callable[[bool], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._repositories: dict[str, _Repository] = {}
        self._notify = notify
        self.current = ""
        """The repository that began last ('' before the first)."""

    def waiting(self, names: Iterable[str]) -> None:
        with self._lock:
            for name in names:
                self._repositories.setdefault(name, _Repository())

    def begin(self, name: str, tags_total: int) -> None:
        with self._lock:
            repository = self._repositories.setdefault(name, _Repository())
            repository.state, repository.tags_total = "syncing", tags_total
            self.current = name
        self._tell(True)

    def end(self, name: str, error: str = "") -> None:
        """Done, or failed (this error, or the first a tag of it had)."""
        with self._lock:
            repository = self._repositories.setdefault(name, _Repository())
            repository.error = repository.error or error
            repository.state = "failed" if repository.error else "done"
        self._tell(True)

    def failed(self, name: str, error: str) -> None:
        """A tag of `name` failed: the first such error is the repository's."""
        with self._lock:
            repository = self._repositories.setdefault(name, _Repository())
            repository.error = repository.error or error

    def add(self, name: str, deltas: dict[str, int], tell: bool = True) -> None:
        with self._lock:
            counts = self._repositories.setdefault(name, _Repository()).counts
            for key, n in deltas.items():
                counts[key] += n
        if tell:
            self._tell(False)

    def snapshot(self) -> tuple[RepositoryProgress, ...]:
        with self._lock:
            return tuple(
                RepositoryProgress(repository=name, state=r.state, tags_total=r.tags_total,
                                   error=r.error, **r.counts)
                for name, r in self._repositories.items()
            )

    def _tell(self, urgent: bool) -> None:
        if self._notify is not None:
            self._notify(urgent)


def to_details(repositories: Iterable[RepositoryProgress]) -> list[dict[str, Any]]:
    """The repositories as a run record's details keep them (`repositories`): saved on each
    heartbeat, so that another process shows a run's repositories too."""
    return [dataclasses.asdict(r) for r in repositories]


def from_details(details: dict[str, Any]) -> tuple[RepositoryProgress, ...]:
    """The repositories a run record's details keep (none in records of earlier versions)."""
    known = {f.name for f in dataclasses.fields(RepositoryProgress)}
    return tuple(
        RepositoryProgress(**{k: v for k, v in item.items() if k in known})
        for item in details.get("repositories", ())
        if isinstance(item, dict) and "repository" in item and "state" in item
    )
