"""ISO-8601 durations: parse and format.

PT3H, PT30M, P1D, P1DT2H30M, PT1H30M15S; weeks alone (P2W) too, and a decimal fraction on
the seconds only. Years and months are refused: their length varies. The sync window, a
stage's expiry and the audit log's --since are read here; each caller names what the text
is, so a bad one is reported in the caller's words.
"""

from __future__ import annotations

import re

from registry_core.errors import ConfigError

_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+)W|(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?)?)"
)
_YEAR_OR_MONTH = re.compile(r"P[^T]*[YM]")
"""Y, or M before the T (months, not minutes)."""
_UNITS = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}


def parse_duration(text: str, what: str) -> float:
    """Seconds in the ISO-8601 duration `text`; a negative, zero, year or month or malformed
    one is a ConfigError in one line that starts with `what` ("stage expiry 'P1X' is not
    ...")."""
    shown = text.strip()[:60]
    value = shown.upper()
    if value.startswith("-"):
        raise ConfigError(f"{what} {shown!r} is negative")
    match = _DURATION.fullmatch(value)
    if match is None or value in ("P", "PT") or value.endswith("T"):
        raise ConfigError(_problem(what, shown, value))
    seconds = sum(float(amount.replace(",", ".")) * _UNITS[unit]
                  for unit, amount in match.groupdict().items() if amount is not None)
    if seconds <= 0:
        raise ConfigError(f"{what} {shown!r} must be longer than zero")
    return seconds


def _problem(what: str, shown: str, value: str) -> str:
    if _YEAR_OR_MONTH.match(value):
        return (f"{what} {shown!r}: years and months have no fixed length; "
                "use days (P30D) or hours")
    hint = " (a time range is not a duration)" if ":" in value else ""
    return (f"{what} {shown!r} is not an ISO-8601 duration such as PT3H, PT30M, P1D "
            f"or P1DT2H30M{hint}")


def format_duration(seconds: float) -> str:
    """The canonical ISO-8601 form of a duration (P1DT2H30M): days, hours, minutes, seconds."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    frac = seconds - whole
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M")) if n)
    if secs or frac:
        time += f"{secs + frac:g}S"
    if not days and not time:
        return "PT0S"
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")
