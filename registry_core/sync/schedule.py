"""When the sync may run: a 5-field cron schedule and a window (an ISO-8601 duration).

A window opens at each time the cron names and lasts the duration; windows that overlap or
touch make one. `* * * * *` means continuously: always inside a window. The cron is read in
the appliance's local time, like `[gc] schedule`. Pure functions over epoch seconds; this
module imports nothing of the registry but its errors and durations (config.py checks `[sync]`
with it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, tzinfo

from registry_core.durations import format_duration, parse_duration
from registry_core.errors import ConfigError, SyncConfigError

CONTINUOUS = "* * * * *"
MAX_MERGED = 1440
"""Windows chained back to back beyond this many (a day of minutes) count as continuous."""


def parse_window(text: str) -> float:
    """Seconds in the sync window `text`, an ISO-8601 duration (`durations.parse_duration`);
    SyncConfigError naming the "sync window" otherwise."""
    try:
        return parse_duration(text, "sync window")
    except ConfigError as exc:
        raise SyncConfigError(str(exc)) from None


def format_window(seconds: float) -> str:
    """The canonical ISO-8601 form of a window (P1DT2H30M)."""
    return format_duration(seconds)


def check_cron(text: str) -> str:
    """A 5-field cron expression (minute hour day-of-month month day-of-week) that fires;
    returned with its blanks normalised."""
    fields = text.split()
    shown = text.strip()[:100]
    if len(fields) != 5:
        raise SyncConfigError(
            f"sync schedule {shown!r} must have 5 fields (minute hour day month weekday), "
            f"not {len(fields)}")
    cron = " ".join(fields)
    if cron == CONTINUOUS:
        return cron
    from croniter import croniter  # ~30 ms to import: only for a schedule that is not `* * * * *`
    from croniter.croniter import CroniterBadDateError

    if not croniter.is_valid(cron):
        raise SyncConfigError(f"sync schedule {shown!r} is not a valid cron expression")
    try:
        croniter(cron, 0.0).get_next(float)
    except CroniterBadDateError:
        raise SyncConfigError(f"sync schedule {shown!r} never fires") from None
    return cron


@dataclass(frozen=True)
class SyncSchedule:
    """The cron and the window. `tz`: the zone the cron is read in (None: local time)."""

    cron: str
    window_seconds: float
    tz: tzinfo | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cron", check_cron(self.cron))
        if not self.window_seconds > 0:
            raise SyncConfigError("sync window must be longer than zero")

    @classmethod
    def parse(cls, cron: str, window: str, tz: tzinfo | None = None) -> SyncSchedule:
        return cls(cron, parse_window(window), tz)

    @property
    def continuous(self) -> bool:
        return self.cron == CONTINUOUS

    def next_start(self, after: float) -> float:
        """The first time the cron names strictly after `after`."""
        return self._fire_after(after)

    def window_end(self, now: float) -> float | None:
        """When the window that contains `now` closes (math.inf: never), or None when `now`
        is outside every window. The end itself is outside."""
        if self.continuous:
            return math.inf
        start = self._fire_at_or_before(now)
        if start is None or now >= start + self.window_seconds:
            return None
        end = start + self.window_seconds
        for _ in range(MAX_MERGED):
            nxt = self._fire_after(start)
            if nxt > end:
                return end
            start, end = nxt, nxt + self.window_seconds
        return math.inf

    def is_open(self, now: float) -> bool:
        return self.window_end(now) is not None

    def _datetime(self, at: float) -> datetime:
        if self.tz is None:
            return datetime.fromtimestamp(at).astimezone()
        return datetime.fromtimestamp(at, self.tz)

    def _fire_after(self, at: float) -> float:
        from croniter import croniter

        nxt: float = croniter(self.cron, self._datetime(at)).get_next(float)
        return nxt

    def _fire_at_or_before(self, at: float) -> float | None:
        from croniter import croniter
        from croniter.croniter import CroniterBadDateError

        minute = math.floor(at / 60) * 60  # cron fires on whole minutes
        if croniter.match(self.cron, self._datetime(minute)):
            return float(minute)
        try:
            prev: float = croniter(self.cron, self._datetime(minute)).get_prev(float)
        except CroniterBadDateError:
            return None
        return prev
