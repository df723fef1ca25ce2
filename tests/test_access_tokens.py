"""Client tokens in the core and through the ASGI app: scope parsing, the token operations,
the catalog a token sees, mounts, /v2/, expiry, rotation, disable/enable/delete and a scope
change of a token whose verdict is cached, and the events (AccessChanged, LoginFailed)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from api_helpers import make_app, make_client, push_blob, push_image
from support import basic_auth_header
from test_migrations import opened_v4

from registry_core.access.audit import AuditFilter
from registry_core.access.credentials import Authenticator
from registry_core.access.scopes import AccessError, Rule, ScopeMap, parse_scope, parse_scopes
from registry_core.access.tokens import TokenAdmin
from registry_core.datadir import DataDir
from registry_core.events import AccessChanged, LoginFailed
from registry_core.http.app import RegistryApp
from registry_core.identity import (
    CONSOLE,
    CONTENT_READ,
    CONTENT_WRITE,
    METADATA_READ,
    METRICS_READ,
    Identity,
    may,
)
from registry_core.registry import Registry

HANG_GUARD = 60.0


# ---- scope maps ---------------------------------------------------------------------------


def test_patterns_match_whole_path_segments() -> None:
    scopes = ScopeMap("m", parse_scopes(["app/*:content/read", "lib/base:metadata/read"]))
    assert scopes.allows("app/web", CONTENT_READ)
    assert scopes.allows("app/x/y", CONTENT_READ)
    assert not scopes.allows("app", CONTENT_READ)
    assert not scopes.allows("apple/web", CONTENT_READ)
    assert not scopes.allows("app/web", CONTENT_WRITE)
    assert scopes.allows("lib/base", METADATA_READ)
    assert not scopes.allows("lib/base2", METADATA_READ)
    assert not scopes.allows("lib/base/x", METADATA_READ)
    assert not scopes.allows(None, METRICS_READ)


def test_star_covers_every_repository_and_the_registry() -> None:
    scopes = ScopeMap("m", parse_scopes(["*:metadata/read,metrics/read"]))
    assert scopes.allows("any/thing", METADATA_READ)
    assert scopes.allows(None, METRICS_READ)
    assert not scopes.allows("any/thing", CONTENT_READ)


def test_rules_add_up() -> None:
    scopes = ScopeMap("m", parse_scopes(["app/*:content/read", "app/web:content/write"]))
    token = Identity("t", "token", grants=scopes)
    assert may(token, "app/web", CONTENT_READ) and may(token, "app/web", CONTENT_WRITE)
    assert not may(token, "app/api", CONTENT_WRITE)
    assert not may(Identity("t", "token"), "app/web", CONTENT_READ)  # no grants: nothing


@pytest.mark.parametrize(("text", "says"), [
    ("app", "expected PATTERN:ACTION"),
    (":content/read", "expected PATTERN:ACTION"),
    ("app:content/reed", "unknown action 'content/reed'"),
    ("app:content/read,", "an action is empty"),
    ("app/*:metrics/read", "metrics/read is registry-wide"),
    ("App//x:content/read", "scope pattern 'App//x'"),
    ("app/**:content/read", "scope pattern 'app/**'"),
])
def test_bad_scopes_are_named(text: str, says: str) -> None:
    with pytest.raises(AccessError, match=re.escape(says)) as caught:
        parse_scope(text)
    assert "\n" not in str(caught.value)


def test_a_scope_round_trips() -> None:
    rule = parse_scope(" app/* : metadata/read , content/read ")
    assert str(rule) == "app/*:content/read,metadata/read"
    assert parse_scope(str(rule)) == rule
    with pytest.raises(AccessError, match="at least one"):
        parse_scopes([])


def test_an_identity_at_an_address_keeps_every_other_field() -> None:
    token = Identity("t", "token", None, ScopeMap("m", parse_scopes(["app/*:content/read"])))
    assert {f.name for f in dataclasses.fields(Identity)} == {"name", "kind", "address",
                                                              "grants"}
    assert token.at("10.0.0.7") == dataclasses.replace(token, address="10.0.0.7")
    assert token.at("10.0.0.7").grants is token.grants


# ---- the operations -----------------------------------------------------------------------


def test_operations_check_names_and_emit_access_changed(
    registry: Registry, credentials: tuple[str, str]
) -> None:
    changes: list[AccessChanged] = []
    registry.events.subscribe(changes.append, AccessChanged)
    tokens = TokenAdmin(registry)
    rules = parse_scopes(["app/*:content/read"])
    issued = tokens.create("ci", rules, expires_days=1, who=CONSOLE)
    assert issued.slot == 1 and len(issued.password) >= 20
    listed = str(tokens.list()[0].to_json())
    assert issued.password not in listed and "scrypt" not in listed
    for bad, says in (("bad name", "token name"), ("ci", "already exists"),
                      (credentials[0], "admin's user name"), ("", "token name")):
        with pytest.raises(AccessError, match=says):
            tokens.create(bad, rules, who=CONSOLE)
    for operation in (tokens.disable, tokens.enable, tokens.delete):
        with pytest.raises(AccessError, match="no token named 'nobody'"):
            operation("nobody", who=CONSOLE)
    with pytest.raises(AccessError, match="slot 3"):
        tokens.rotate("ci", 3, who=CONSOLE)
    tokens.rotate("ci", 2, who=CONSOLE)
    tokens.disable("ci", who=CONSOLE)
    tokens.enable("ci", who=CONSOLE)
    gone = tokens.delete("ci", who=CONSOLE)
    assert gone.scopes == ["app/*:content/read"] and len(gone.passwords) == 2
    assert tokens.list() == []
    tokens.create("ci", rules, who=CONSOLE)  # its scope map went with it: the name is free
    assert [(c.action, c.target, c.identity) for c in changes] == [
        ("token.create", "ci", "console"), ("token.rotate", "ci", "console"),
        ("token.disable", "ci", "console"), ("token.enable", "ci", "console"),
        ("token.delete", "ci", "console"), ("token.create", "ci", "console"),
    ]


def test_set_scopes_replaces_the_rules_and_keeps_passwords_status_and_expiry(
    registry: Registry,
) -> None:
    changes: list[AccessChanged] = []
    registry.events.subscribe(changes.append, AccessChanged)
    tokens = TokenAdmin(registry)
    tokens.create("ci", parse_scopes(["app/*:content/read"]), expires_days=30, who=CONSOLE)
    tokens.rotate("ci", 2, expires_days=5, who=CONSOLE)
    tokens.disable("ci", who=CONSOLE)
    before = tokens.get("ci")
    change = tokens.set_scopes("ci", parse_scopes(["app/*:content/read", "lib/base:content/read,"
                                                   "metadata/read"]), who=CONSOLE)
    assert change.changed and change.shared_with == ()
    assert change.old_scopes == ["app/*:content/read"]
    after = tokens.get("ci")
    assert after.scopes == ["app/*:content/read", "lib/base:content/read,metadata/read"]
    assert after.scope_map.name == "ci" and change.token == after
    assert (after.passwords, after.enabled, after.created_at) == (
        before.passwords, before.enabled, before.created_at)
    assert change.to_json()["old_scopes"] == [{"pattern": "app/*", "actions": ["content/read"]}]
    assert [(c.action, c.target, c.identity, c.detail) for c in changes[-1:]] == [
        ("token.scope", "ci", "console", {
            "scope_map": "ci", "old_scopes": ["app/*:content/read"],
            "scopes": ["app/*:content/read", "lib/base:content/read,metadata/read"],
            "shared_with": []})]
    [entry] = registry.audit.query(AuditFilter(action="token.scope"), limit=5)
    assert (entry.principal, entry.reference, entry.result) == ("console", "ci", "ok")
    assert entry.detail["old_scopes"] == ["app/*:content/read"]
    assert entry.detail["scopes"] == after.scopes
    # The same rules again: nothing written, nothing on record.
    again = tokens.set_scopes("ci", parse_scopes(after.scopes), who=CONSOLE)
    assert not again.changed and len(changes) == 4


@pytest.mark.parametrize(("name", "rules", "says"), [
    ("ci", (), "token 'ci': give at least one scope"),
    ("ci", (Rule("App//x", frozenset({CONTENT_READ})),), "scope pattern 'App//x'"),
    ("ci", (Rule("app/*", frozenset({METRICS_READ})),), "metrics/read is registry-wide"),
    ("ci", (Rule("app/*", frozenset()),), "an action is empty"),
    ("nobody", parse_scopes(["*:content/read"]), "no token named 'nobody'"),
])
def test_bad_scopes_change_nothing(registry: Registry, name: str, rules: tuple[Rule, ...],
                                   says: str) -> None:
    """Checked as at creation (the rules of a caller that skipped parse_scope too)."""
    changes: list[AccessChanged] = []
    tokens = TokenAdmin(registry)
    tokens.create("ci", parse_scopes(["app/*:content/read"]), who=CONSOLE)
    registry.events.subscribe(changes.append, AccessChanged)
    generation = registry.store.tokens.generation()
    before = tokens.get("ci")
    with pytest.raises(AccessError, match=re.escape(says)) as caught:
        tokens.set_scopes(name, rules, who=CONSOLE)
    assert "\n" not in str(caught.value)
    assert tokens.get("ci") == before and changes == []
    assert registry.store.tokens.generation() == generation


def test_a_shared_scope_map_changes_for_every_token_on_it(tmp_path: Path) -> None:
    """The v4 fixture's `ci` and `ci-spare` share the map `ci`: changing one token's scopes
    changes the map, so both have them (and say so); their passwords keep working."""
    with opened_v4(tmp_path) as (reg, auth, passwords):
        tokens = TokenAdmin(reg)
        tokens.enable("ci-spare", who=CONSOLE)
        change = tokens.set_scopes("ci-spare", parse_scopes(["edge/ci:content/read"]),
                                   who=CONSOLE)
        assert change.shared_with == ("ci",) and change.to_json()["shared_with"] == ["ci"]
        assert change.old_scopes == [
            "edge/*:content/read,content/write,content/delete,metadata/read"]
        assert {t.name: t.scopes for t in tokens.list()} == {
            "ci": ["edge/ci:content/read"], "ci-spare": ["edge/ci:content/read"],
            "reader": ["tools/*:content/read,metadata/read"]}
        for name, password in (("ci", passwords["ci"]["1"]), ("ci", passwords["ci"]["2"]),
                               ("ci-spare", passwords["ci-spare"]["1"])):
            who = auth.check(basic_auth_header(name, password))
            assert who is not None and who.grants is not None
            assert who.grants.allows("edge/ci", CONTENT_READ)
            assert not who.grants.allows("edge/ci", CONTENT_WRITE)
        [entry] = reg.audit.query(AuditFilter(action="token.scope"), limit=5)
        assert entry.detail["shared_with"] == ["ci"]


# ---- through the app ----------------------------------------------------------------------


@pytest.fixture
async def app(registry: Registry, datadir: DataDir) -> AsyncIterator[RegistryApp]:
    app = make_app(registry, datadir)
    yield app
    app.authenticator.close()


def token(registry: Registry, name: str, *scopes: str, days: float | None = None
          ) -> tuple[str, str]:
    issued = TokenAdmin(registry).create(name, parse_scopes(scopes), expires_days=days,
                                         who=CONSOLE)
    return name, issued.password


async def status(app: RegistryApp, auth: tuple[str, str], path: str = "/v2/app/web/tags/list"
                 ) -> int:
    async with make_client(app, auth) as client:
        return (await client.get(path)).status_code


async def until_status(app: RegistryApp, auth: tuple[str, str], wanted: int) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while (got := await status(app, auth)) != wanted:
        assert time.monotonic() < deadline, f"still {got}, waiting for {wanted}"
        await asyncio.sleep(0.05)


async def test_the_catalog_lists_only_what_the_token_may_read(
    registry: Registry, app: RegistryApp, credentials: tuple[str, str]
) -> None:
    async with make_client(app, credentials) as admin:
        for name in ("app/web", "app/api", "apple/pie", "other/x", "app/deep/er"):
            await push_image(admin, name, "v1")
    reader = token(registry, "reader", "app/*:metadata/read", "other/x:content/read")
    async with make_client(app, reader) as client:
        listed = (await client.get("/v2/_catalog")).json()
        assert listed == {"repositories": ["app/api", "app/deep/er", "app/web"]}
        first = await client.get("/v2/_catalog", params={"n": 2})
        assert first.json()["repositories"] == ["app/api", "app/deep/er"]
        assert "last=app/deep/er" in first.headers["link"]
        rest = await client.get("/v2/_catalog", params={"n": 2, "last": "app/deep/er"})
        assert rest.json()["repositories"] == ["app/web"] and "link" not in rest.headers
    pull_only = token(registry, "pull-only", "*:content/read")
    async with make_client(app, pull_only) as client:
        assert (await client.get("/v2/_catalog")).json() == {"repositories": []}


async def test_v2_answers_any_valid_token_and_401_for_wrong_credentials(
    registry: Registry, app: RegistryApp
) -> None:
    failures: list[LoginFailed] = []
    registry.events.subscribe(failures.append, LoginFailed)
    name, password = token(registry, "scraper", "*:metrics/read")
    assert await status(app, (name, password), "/v2/") == 200
    assert await status(app, (name, password + "x"), "/v2/") == 401
    assert await status(app, ("nobody", password), "/v2/") == 401
    async with make_client(app) as anonymous:  # a client's first try: no event
        assert (await anonymous.get("/v2/")).status_code == 401
    TokenAdmin(registry).disable("scraper", who=CONSOLE)
    assert await status(app, (name, password), "/v2/") == 401
    async with make_client(app) as client:
        malformed = await client.get("/v2/", headers={"Authorization": "Basic !!"})
    assert malformed.status_code == 401
    assert [(f.principal, f.address, f.reason) for f in failures] == [
        ("scraper", "127.0.0.1", "wrong password"),
        ("nobody", "127.0.0.1", "no such user or token"),
        ("scraper", "127.0.0.1", "token disabled"),
        ("", "127.0.0.1", "malformed Authorization header"),
    ]


async def test_a_mount_needs_read_on_its_source(
    registry: Registry, app: RegistryApp, credentials: tuple[str, str]
) -> None:
    async with make_client(app, credentials) as admin:
        digest = await push_blob(admin, "lib/base", b"a shared layer")
    mount = {"mount": digest, "from": "lib/base"}
    both = token(registry, "both", "app/web:content/write", "lib/base:content/read")
    write_only = token(registry, "write-only", "app/web:content/write")
    async with make_client(app, write_only) as client:
        fallback = await client.post("/v2/app/web/blobs/uploads/", params=mount)
    assert fallback.status_code == 202  # an upload session: nothing was linked
    async with make_client(app, both) as client:
        assert (await client.head(f"/v2/app/web/blobs/{digest}")).status_code == 403
        mounted = await client.post("/v2/app/web/blobs/uploads/", params=mount)
    assert mounted.status_code == 201, mounted.text
    assert registry.stat_blob("app/web", digest).size == len(b"a shared layer")


async def test_an_expired_password_is_refused_though_its_verdict_was_cached(
    registry: Registry, app: RegistryApp
) -> None:
    failures: list[LoginFailed] = []
    registry.events.subscribe(failures.append, LoginFailed)
    short = token(registry, "short", "app/*:metadata/read", days=3 / 86400)
    assert await status(app, short) in (200, 404)  # allowed (app/web holds nothing yet)
    await until_status(app, short, 401)
    assert await status(app, short) == 401
    assert {f.reason for f in failures} == {"password expired"}


async def test_rotation_keeps_the_other_password_working(
    registry: Registry, app: RegistryApp
) -> None:
    tokens = TokenAdmin(registry)
    first = token(registry, "ci", "app/*:metadata/read")
    second = ("ci", tokens.rotate("ci", 2, who=CONSOLE).password)
    assert await status(app, first) == 404 and await status(app, second) == 404
    renewed = ("ci", tokens.rotate("ci", 1, who=CONSOLE).password)
    assert await status(app, first) == 401  # its cached verdict went with the change
    assert await status(app, second) == 404
    assert await status(app, renewed) == 404


async def test_disable_enable_and_delete_reach_a_cached_verdict(
    registry: Registry, app: RegistryApp
) -> None:
    tokens = TokenAdmin(registry)
    ci = token(registry, "ci", "app/*:metadata/read")
    other = token(registry, "other", "app/*:metadata/read")
    assert await status(app, ci) == 404 and await status(app, other) == 404
    tokens.disable("ci", who=CONSOLE)
    assert await status(app, ci) == 401
    assert await status(app, other) == 404
    tokens.enable("ci", who=CONSOLE)
    assert await status(app, ci) == 404
    tokens.delete("ci", who=CONSOLE)
    assert await status(app, ci) == 401
    assert await status(app, other) == 404


async def test_a_scope_change_reaches_a_cached_verdict(
    registry: Registry, app: RegistryApp
) -> None:
    ci = token(registry, "ci", "app/*:metadata/read")
    other = token(registry, "other", "app/*:metadata/read")
    authenticator = app.authenticator
    assert isinstance(authenticator, Authenticator)
    assert await status(app, ci) == 404  # allowed: app/web holds nothing yet
    assert await status(app, ci, "/v2/lib/base/tags/list") == 403
    assert await status(app, other) == 404
    checks = authenticator.password_checks
    assert await status(app, ci) == 404
    assert authenticator.password_checks == checks  # the header's verdict is cached
    TokenAdmin(registry).set_scopes("ci", parse_scopes(["lib/base:metadata/read"]),
                                    who=CONSOLE)
    assert await status(app, ci) == 403  # the next request: app/* is no longer granted
    assert await status(app, ci, "/v2/lib/base/tags/list") == 404
    assert await status(app, other) == 404  # a map of its own: unchanged


async def test_a_push_elsewhere_does_not_drop_cached_verdicts(
    registry: Registry, app: RegistryApp, credentials: tuple[str, str]
) -> None:
    ci = token(registry, "ci", "app/*:metadata/read")
    authenticator = app.authenticator
    assert isinstance(authenticator, Authenticator)
    async with make_client(app, credentials) as admin:
        await push_image(admin, "app/web", "v1")
        assert await status(app, ci) == 200
        checks = authenticator.password_checks
        await push_image(admin, "app/api", "v1")  # commits while the token's verdict is held
    assert await status(app, ci) == 200
    assert await status(app, ci, "/v2/app/api/tags/list") == 200
    assert authenticator.password_checks == checks
