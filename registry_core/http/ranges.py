"""The `Range` request header of a blob GET or HEAD, read as RFC 9110 section 14 says. Pure.

- A header that is not a well-formed `bytes=` ranges-specifier is ignored: the whole blob,
  200 (section 14.2: a server MAY ignore Range, and MUST for an unknown unit).
- One satisfiable range is answered 206 with `Content-Range: bytes first-last/size`.
- None satisfiable (every first byte at or past the end, or only `-0` suffixes): 416 with
  `Content-Range: bytes */size`.
- Several ranges: the whole blob, 200, when any of them is satisfiable (no multipart
  answers: registry clients never ask for them, and a single 200 is always correct).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"(\d*)-(\d*)")
_WS = " \t"


@dataclass(frozen=True)
class ByteRange:
    """Bytes first..last inclusive of a blob of `size` bytes."""

    first: int
    last: int
    size: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self) -> str:
        return f"bytes {self.first}-{self.last}/{self.size}"


class Unsatisfiable(Exception):
    """No requested range overlaps the blob: answer 416 with `Content-Range: bytes */size`."""

    def __init__(self, size: int) -> None:
        super().__init__(f"no requested range is satisfiable for a {size}-byte blob")
        self.size = size


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single range to answer 206 with, or None for a 200 with the whole blob.

    Raises Unsatisfiable when the header is valid but no range in it can be served.
    """
    if header is None:
        return None
    specs = _specs(header)
    if specs is None:
        return None
    chosen = [r for r in (_resolve(first, last, size) for first, last in specs) if r is not None]
    if not chosen:
        raise Unsatisfiable(size)
    return chosen[0] if len(specs) == 1 else None


def _specs(header: str) -> list[tuple[str, str]] | None:
    """The (first, last) text pairs of a well-formed `bytes=` header, else None."""
    unit, sep, ranges = header.strip(_WS).partition("=")
    if not sep or unit.strip(_WS).lower() != "bytes" or not unit.isascii():
        return None
    specs: list[tuple[str, str]] = []
    for part in ranges.split(","):
        part = part.strip(_WS)
        if not part:
            continue  # RFC 9110 list syntax allows empty elements
        match = _SPEC.fullmatch(part) if part.isascii() else None
        if match is None:
            return None
        first, last = match[1], match[2]
        if not first and not last:
            return None
        if first and last and int(last) < int(first):
            return None  # section 14.1.1: such a range-spec is invalid
        specs.append((first, last))
    return specs or None


def _resolve(first: str, last: str, size: int) -> ByteRange | None:
    if not first:  # suffix: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            return None
        return ByteRange(max(size - suffix, 0), size - 1, size)
    start = int(first)
    if start >= size:
        return None
    end = size - 1 if not last else min(int(last), size - 1)
    return ByteRange(start, end, size)
