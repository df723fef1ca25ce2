"""Presentation helpers: sizes, times and digests as the console shows them."""

from __future__ import annotations

import datetime as dt

import humanize


def size(n: int | None) -> str:
    """Bytes in binary units: `1.5 GiB`."""
    if n is None:
        return "-"
    return str(humanize.naturalsize(n, binary=True, format="%.1f"))


def short_digest(digest: str | None, length: int = 12) -> str:
    """`sha256:0123456789ab` (the algorithm and the first `length` hex digits)."""
    if not digest:
        return "-"
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:length]}" if hexpart else digest[:length]


def ago(timestamp: float | None, now: float) -> str:
    """`3 minutes ago` from a Unix time and the clock's `now`."""
    if timestamp is None:
        return "-"
    return str(humanize.naturaltime(dt.timedelta(seconds=max(0.0, now - timestamp))))


def when(timestamp: float | None) -> str:
    """`2025-11-23 19:40` in UTC."""
    if timestamp is None:
        return "-"
    return f"{dt.datetime.fromtimestamp(timestamp, dt.UTC):%Y-%m-%d %H:%M}"


def expires_in(moment: dt.datetime, now: float) -> str:
    """`expires in 9 years` / `expired 2 days ago`."""
    delta = moment.timestamp() - now
    span = str(humanize.naturaldelta(dt.timedelta(seconds=abs(delta))))
    return f"expires in {span}" if delta >= 0 else f"expired {span} ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return str(humanize.precisedelta(dt.timedelta(seconds=seconds), minimum_unit="seconds",
                                     format="%0.0f"))


def image_created(value: str | None) -> str:
    """The image config's RFC 3339 `created`, shortened to `2025-11-23 19:40`."""
    if not value:
        return "-"
    text = value.replace("T", " ")
    return text[:16]


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"
