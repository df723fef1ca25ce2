"""argparse types shared by the commands: a bad value is a one-line usage error (exit 2)."""

from __future__ import annotations

import argparse
import math
import re

MAX_COUNT = 1_000_000_000
"""Beyond any list a command prints, and within SQLite's integers."""

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def positive_int(text: str) -> int:
    """A count of at least 1 (`--limit`, `--top`): 0 or a negative number is refused, not
    taken for 'unlimited'."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to {MAX_COUNT}, not {text[:40]!r}")
    return value


def seconds(text: str) -> float:
    """A finite duration in seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds, 0 or more, not {text[:40]!r}")
    return value


def namespace_name(text: str) -> str:
    """A Kubernetes namespace name: a DNS-1123 label."""
    if len(text) > 63 or DNS_LABEL.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(
            f"{text[:70]!r} is not a namespace name (1-63 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit)")
    return text
