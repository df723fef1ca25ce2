"""Points of the storage usage trend."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from registry_core.store.base import Queries


@dataclass(frozen=True)
class UsageSample:
    taken_at: float
    reason: str
    used_bytes: int
    capacity_bytes: int
    free_bytes: int
    reclaimable_bytes: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class UsageSamples(Queries):
    def add(self, sample: UsageSample) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO usage_samples(taken_at, reason, used_bytes, capacity_bytes, "
            "free_bytes, reclaimable_bytes) VALUES (?, ?, ?, ?, ?, ?)",
            (sample.taken_at, sample.reason, sample.used_bytes, sample.capacity_bytes,
             sample.free_bytes, sample.reclaimable_bytes),
        )

    def recent(self, limit: int) -> list[UsageSample]:
        """The last `limit` samples, oldest first."""
        rows = self._conn.execute(
            "SELECT taken_at, reason, used_bytes, capacity_bytes, free_bytes, reclaimable_bytes "
            "FROM usage_samples ORDER BY taken_at DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            UsageSample(float(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]))
            for r in reversed(rows)
        ]
