"""What a sync covers: repository names or glob patterns, and tag regexes. The one place that
says whether a repository or a tag is in scope (the engine and the settings both ask it)."""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from dataclasses import dataclass

from registry_core.config import check_tag_filter


@dataclass(frozen=True)
class Scope:
    """Repository names or glob patterns (`*` also matches '/': `app/*` is every repository
    under app/), and tag regexes, each matching a whole tag (none: every tag)."""

    repositories: tuple[str, ...]
    tag_filters: tuple[str, ...] = ()
    _tag_patterns: tuple[re.Pattern[str], ...] = dataclasses.field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        patterns = tuple(check_tag_filter(t) for t in self.tag_filters)
        object.__setattr__(self, "_tag_patterns", patterns)

    def wants_tag(self, tag: str) -> bool:
        return not self._tag_patterns or any(p.fullmatch(tag) for p in self._tag_patterns)

    def wants_repository(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.repositories)

    @property
    def names(self) -> list[str]:
        """The repositories named outright (no pattern)."""
        return [p for p in self.repositories if not is_pattern(p)]

    @property
    def needs_catalog(self) -> bool:
        return any(is_pattern(p) for p in self.repositories)


def is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[")
