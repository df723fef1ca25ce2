"""Small counters kept in the `meta` table."""

from __future__ import annotations

from registry_core.store.base import Queries
from registry_core.store.metadata import now


class Meta(Queries):
    def count_low_space_refusal(self) -> None:
        self._conn.execute(
            "INSERT INTO meta(key, value) VALUES ('low_space_refusals', '1') "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )
        self._conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('low_space_last_refusal', ?)",
            (repr(now()),),
        )

    def low_space_refusals(self) -> tuple[int, float | None]:
        """How many uploads the low-space guard refused, and when it last did."""
        rows = {
            str(r[0]): str(r[1])
            for r in self._conn.execute(
                "SELECT key, value FROM meta WHERE key IN "
                "('low_space_refusals', 'low_space_last_refusal')"
            )
        }
        last = rows.get("low_space_last_refusal")
        return int(rows.get("low_space_refusals", 0)), float(last) if last else None
