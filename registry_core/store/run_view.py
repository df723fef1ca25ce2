"""What every recorded run (GC, sync) shows the same way: its duration, whether it still
runs, and its JSON form."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from registry_core.store.metadata import now


class RunView:
    """Mixed into the run-record dataclasses, which define these fields."""

    started_at: float
    finished_at: float | None
    status: str

    @property
    def duration_seconds(self) -> float:
        end = self.finished_at if self.finished_at is not None else now()
        return max(0.0, end - self.started_at)

    @property
    def running(self) -> bool:
        return self.status == "running"

    def to_json(self, include_details: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = asdict(self)  # type: ignore[call-overload]
        data["duration_seconds"] = round(self.duration_seconds, 3)
        if not include_details:
            data.pop("details")
        return data
