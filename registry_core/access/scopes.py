"""Scope maps: what a client token may do, as a list of `repository-pattern: actions`.

A pattern is a repository name (`app/web`), a name followed by `/*` (every repository under
it, matched on whole path segments: `app/*` covers `app/web` and `app/x/y`, not `app` nor
`apple/x`), or `*` (every repository, and the registry as a whole). The actions are the
seeds' (`content/read`, `content/write`, `content/delete`, `metadata/read`, `metadata/write`)
plus `metrics/read`, which is registry-wide and so only granted on `*`. The rules of a map add
up: an action is allowed on a repository when any rule matching it grants the action.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from registry_core.errors import EdgeError, NameInvalid
from registry_core.identity import (
    CONTENT_DELETE,
    CONTENT_READ,
    CONTENT_WRITE,
    METADATA_READ,
    METADATA_WRITE,
    METRICS_READ,
    Action,
)
from registry_core.reference import validate_name

ACTIONS: tuple[Action, ...] = (
    CONTENT_READ, CONTENT_WRITE, CONTENT_DELETE, METADATA_READ, METADATA_WRITE, METRICS_READ,
)
REGISTRY_WIDE: frozenset[Action] = frozenset({METRICS_READ})
"""Actions on the registry as a whole, not on a repository: granted only by `*`."""
EVERY_REPOSITORY = "*"


class AccessError(EdgeError):
    """A token or scope-map operation refused: a bad name, scope or expiry, an unknown or
    existing token. The message names the bad part."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One line of a scope map: the actions granted on the repositories `pattern` covers."""

    pattern: str
    actions: frozenset[Action]

    def covers(self, repository: str | None) -> bool:
        """Whether the pattern takes in `repository` (None: the registry as a whole)."""
        if self.pattern == EVERY_REPOSITORY:
            return True
        if repository is None:
            return False
        if self.pattern.endswith("/*"):
            return repository.startswith(self.pattern[:-1])
        return repository == self.pattern

    def __str__(self) -> str:
        return f"{self.pattern}:{','.join(a for a in ACTIONS if a in self.actions)}"

    def to_json(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "actions": [a for a in ACTIONS if a in self.actions]}


@dataclass(frozen=True, slots=True)
class ScopeMap:
    """A named list of rules; what a token's Identity carries as its grants."""

    name: str
    rules: tuple[Rule, ...]
    description: str = ""
    _everywhere: frozenset[Action] = field(init=False, compare=False, repr=False)
    _exact: dict[str, frozenset[Action]] = field(init=False, compare=False, repr=False)
    _prefixes: dict[Action, tuple[str, ...]] = field(init=False, compare=False, repr=False)
    """Per action, the `NAME/` prefixes granting it (one str.startswith over a tuple)."""

    def __post_init__(self) -> None:
        everywhere: set[Action] = set()
        exact: dict[str, frozenset[Action]] = {}
        prefixes: dict[Action, tuple[str, ...]] = {}
        for rule in self.rules:
            if rule.pattern == EVERY_REPOSITORY:
                everywhere |= rule.actions
            elif rule.pattern.endswith("/*"):
                for action in rule.actions:
                    prefixes[action] = (*prefixes.get(action, ()), rule.pattern[:-1])
            else:
                exact[rule.pattern] = exact.get(rule.pattern, frozenset()) | rule.actions
        object.__setattr__(self, "_everywhere", frozenset(everywhere))
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_prefixes", prefixes)

    def __hash__(self) -> int:
        return hash((self.name, self.rules))

    def allows(self, repository: str | None, action: Action) -> bool:
        """Whether a rule grants `action` on `repository` (None: the registry as a whole,
        which only `*` covers)."""
        if action in self._everywhere:
            return True
        if repository is None:
            return False
        if action in self._exact.get(repository, ()):
            return True
        prefixes = self._prefixes.get(action)
        return prefixes is not None and repository.startswith(prefixes)

    def rules_json(self) -> list[dict[str, Any]]:
        return [rule.to_json() for rule in self.rules]

    @classmethod
    def from_json(cls, name: str, rules: Iterable[Any], description: str = "") -> ScopeMap:
        """A map as the store keeps it (`[{"pattern", "actions"}]`), checked again."""
        parsed = []
        for entry in rules:
            if not isinstance(entry, dict):
                raise AccessError(f"scope map {name!r}: a rule is not an object: {entry!r}")
            parsed.append(make_rule(str(entry.get("pattern")), list(entry.get("actions", []))))
        return cls(name, tuple(parsed), description)


def parse_scope(text: str) -> Rule:
    """`PATTERN:ACTION[,ACTION...]` (as `--scope` takes it) as a rule."""
    pattern, colon, actions = text.strip().rpartition(":")
    if not colon or not pattern:
        raise AccessError(
            f"scope {text!r}: expected PATTERN:ACTION[,ACTION...], e.g. app/*:content/read"
        )
    return make_rule(pattern.strip(), [a.strip() for a in actions.split(",")])


def parse_scopes(texts: Sequence[str]) -> tuple[Rule, ...]:
    """Every `--scope` given; at least one."""
    if not texts:
        raise AccessError("a token needs at least one --scope PATTERN:ACTION[,ACTION...]")
    return tuple(parse_scope(text) for text in texts)


def make_rule(pattern: str, actions: Sequence[str]) -> Rule:
    check_pattern(pattern)
    if not actions or any(not a for a in actions):
        raise AccessError(f"scope {pattern!r}: an action is empty; known: {', '.join(ACTIONS)}")
    for action in actions:
        if action not in ACTIONS:
            raise AccessError(
                f"scope {pattern!r}: unknown action {action!r}; known: {', '.join(ACTIONS)}"
            )
        if action in REGISTRY_WIDE and pattern != EVERY_REPOSITORY:
            raise AccessError(
                f"scope {pattern!r}: {action} is registry-wide; grant it on '*'"
            )
    return Rule(pattern, frozenset(cast("list[Action]", actions)))


def check_pattern(pattern: str) -> None:
    """A repository name, a name followed by `/*`, or `*`; AccessError otherwise."""
    if pattern == EVERY_REPOSITORY:
        return
    name = pattern[:-2] if pattern.endswith("/*") else pattern
    try:
        validate_name(name)
    except NameInvalid as exc:
        raise AccessError(
            f"scope pattern {pattern!r}: not a repository name, NAME/* or * ({exc.message})"
        ) from exc
