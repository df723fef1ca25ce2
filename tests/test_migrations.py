"""Schema migrations: a data dir written by the release before migrations (the committed
fixture, see fixtures/make_datadir_v1.py), by the schema 2 release (make_datadir_v2.py), by
the schema 3 release (make_datadir_v3.py: sync runs, stages, tag bases) or by the schema 4
release (make_datadir_v4.py: tokens, scope maps, token passwords, the audit log) opens,
upgrades and keeps every image and record (a token made before still logs in); a newer
release's data dir is refused untouched; a failing step changes nothing; concurrent openers
migrate once."""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import sqlite3
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import basic_auth_header
from test_cli_basics import assert_one_line_error, cli
from test_gc import push_image, rand

from registry_core.access.audit import AuditEntry, AuditFilter
from registry_core.access.credentials import Authenticator
from registry_core.access.scopes import ScopeMap
from registry_core.access.tokens import TokenAdmin, TokenInfo
from registry_core.config import AuditConfig
from registry_core.datadir import DataDir
from registry_core.errors import ConfigError, SchemaTooNew
from registry_core.gc import GarbageCollector
from registry_core.identity import CONSOLE, CONTENT_DELETE, CONTENT_READ, CONTENT_WRITE
from registry_core.reference import parse_digest
from registry_core.registry import Registry
from registry_core.store.migrations import LATEST, STEPS, Step, migrate, script, upgrade
from registry_core.usage import usage_history

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OLD_VERSIONS = (1, 2, 3, 4)
"""The schema versions of the committed fixture data dirs."""


def expected_of(version: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (FIXTURES / f"datadir-v{version}.expected.json").read_text()
    )
    return data


EXPECTED = expected_of(1)


def unpack(version: int, into: Path) -> DataDir:
    with tarfile.open(FIXTURES / f"datadir-v{version}.tar.gz") as tar:
        tar.extractall(into, filter="data")
    return DataDir(into / "data")


@dataclass(frozen=True)
class Old:
    """A committed fixture data dir, unpacked and not yet opened, and what it holds."""

    version: int
    datadir: DataDir
    expected: dict[str, Any]


@pytest.fixture
def v1(tmp_path: Path) -> DataDir:
    """The committed v1 data dir, unpacked and not yet opened."""
    return unpack(1, tmp_path)


@pytest.fixture(params=OLD_VERSIONS, ids=[f"v{v}" for v in OLD_VERSIONS])
def old(request: pytest.FixtureRequest, tmp_path: Path) -> Old:
    version: int = request.param
    return Old(version, unpack(version, tmp_path), expected_of(version))


@pytest.fixture
def upgraded(old: Old) -> Iterator[Registry]:
    reg = Registry(old.datadir)
    yield reg
    reg.close()


def versions(path: Path) -> tuple[int, str | None]:
    """(user_version, meta.schema_version) read with a plain connection."""
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(conn.execute("PRAGMA user_version").fetchone()[0]), row and row[0]


def dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [f"user_version {conn.execute('PRAGMA user_version').fetchone()[0]}",
                *conn.iterdump()]
    finally:
        conn.close()


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def schema_of(path: Path) -> list[tuple[str, ...]]:
    with sqlite3.connect(path) as conn:
        return sorted(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))


# ---- the fixture itself -----------------------------------------------------------------------


def test_fixture_is_a_pre_migration_data_dir(v1: DataDir, tmp_path: Path) -> None:
    assert versions(v1.database) == (0, "1")
    # Step 1 must be exactly the schema the old release wrote.
    fresh = tmp_path / "step1.db"
    assert upgrade(fresh, STEPS[:1]) == 1
    assert schema_of(fresh) == schema_of(v1.database)
    assert (FIXTURES / "datadir-v1.tar.gz").stat().st_size < 64 * 1024


@pytest.mark.parametrize("version", OLD_VERSIONS[1:], ids=[f"v{v}" for v in OLD_VERSIONS[1:]])
def test_fixture_is_a_data_dir_of_its_schema(version: int, tmp_path: Path) -> None:
    old = unpack(version, tmp_path / f"v{version}")
    assert versions(old.database) == (version, str(version))
    fresh = tmp_path / f"step{version}.db"
    assert upgrade(fresh, STEPS[:version]) == version
    assert schema_of(fresh) == schema_of(old.database)
    assert (FIXTURES / f"datadir-v{version}.tar.gz").stat().st_size < 64 * 1024


# ---- upgrading it -----------------------------------------------------------------------------


def test_upgraded_schema_is_the_fresh_schema(old: Old, tmp_path: Path) -> None:
    Registry(old.datadir).close()
    fresh = tmp_path / "fresh.db"
    assert upgrade(fresh) == LATEST
    assert schema_of(old.datadir.database) == schema_of(fresh)


def test_an_older_release_refuses_the_upgraded_dir(old: Old) -> None:
    """Every older release (its steps) refuses the upgraded data dir untouched."""
    path = old.datadir.database
    Registry(old.datadir).close()
    before = sha256_file(path)
    for known in range(1, LATEST):
        with pytest.raises(SchemaTooNew) as err:
            upgrade(path, STEPS[:known])
        assert f"version {LATEST}" in str(err.value) and f"up to {known}" in str(err.value)
        assert sha256_file(path) == before


def test_sync_and_staging_work_on_an_upgraded_dir(old: Old, upgraded: Registry) -> None:
    store = upgraded.store
    digest = old.expected["tags"]["edge/app"]["0.9"]
    upgraded.untag("edge/app", "0.9", who=CONSOLE)  # before the pin: a staged tag stays
    with store.exclusive():
        run = store.sync_runs.create("manual", "host:1")
        item = store.stages.add("window", "edge/app", "0.9")
        store.stages.set_status(item.id, "staged", digest)
    assert store.sync_runs.running() == run
    synced = any(r["status"] == "succeeded" for r in old.expected.get("sync_runs", []))
    assert (store.sync_runs.last_success() is not None) == synced
    assert store.stages.pinned() == {("edge/app", digest)} | pins_of(old.expected)
    record = GarbageCollector(upgraded).run(grace_period=0.0, delete_untagged=True)
    assert record.status == "succeeded" and record.manifests_deleted == 0
    assert str(upgraded.get_manifest("edge/app", digest).digest) == digest


def pins_of(expected: dict[str, Any]) -> set[tuple[str, str]]:
    return {(i["repository"], i["digest"]) for i in expected.get("stage_items", [])
            if i["status"] == "staged" and not i["released"]}


def test_sync_runs_stages_and_tag_bases_are_kept(tmp_path: Path) -> None:
    v3 = unpack(3, tmp_path)
    expected = expected_of(3)
    reg = Registry(v3)
    try:
        store = reg.store
        runs = sorted(store.sync_runs.recent(), key=lambda r: r.id)
        assert [{"id": r.id, "trigger": r.trigger, "status": r.status,
                 "manifests_copied": r.manifests_copied, "blobs_copied": r.blobs_copied,
                 "bytes_copied": r.bytes_copied} for r in runs] == expected["sync_runs"]
        items = store.stages.items(released=True)
        assert sorted(((i.stage, i.repository, i.tag, i.digest, i.status,
                        i.released_at is not None) for i in items), key=str) == sorted(
            (tuple(i[k] for k in ("stage", "repository", "tag", "digest", "status",
                                  "released")) for i in expected["stage_items"]), key=str)
        assert store.stages.pinned() == pins_of(expected) != set()
        assert [[repo, tag, digest] for repo in ("mirror/web",)
                for tag, digest in sorted(store.sync_tags.bases(repo).items())] == (
            expected["sync_tags"])
        # the pin holds through a GC that collects untagged content (the staged tag moved on:
        # a stage's tag itself cannot be removed)
        for repo, digest in pins_of(expected):
            tag = next(t for t, d in expected["tags"][repo].items() if d == digest)
            push_image(reg, repo, tag, [rand()])
        GarbageCollector(reg).run(grace_period=0.0, delete_untagged=True)
        for repo, digest in pins_of(expected):
            assert str(reg.get_manifest(repo, digest).digest) == digest
    finally:
        reg.close()


def token_facts(token: TokenInfo) -> dict[str, Any]:
    """A token as make_datadir_v4.py records it."""
    return {"name": token.name, "scope_map": token.scope_map.name, "enabled": token.enabled,
            "created_at": token.created_at, "updated_at": token.updated_at,
            "passwords": [{"slot": p.slot, "created_at": p.created_at,
                           "expires_at": p.expires_at} for p in token.passwords]}


def audit_rows(reg: Registry, chosen: AuditFilter | None = None) -> list[AuditEntry]:
    """Every row `chosen` keeps, newest first, read a page of 7 at a time."""
    rows: list[AuditEntry] = []
    while page := reg.audit.query(chosen, before_id=rows[-1].id if rows else None, limit=7):
        rows += page
    return rows


def test_tokens_scope_maps_and_audit_log_are_kept(tmp_path: Path) -> None:
    v4 = unpack(4, tmp_path)
    expected = expected_of(4)
    reg = Registry(v4)
    try:
        tokens = TokenAdmin(reg).list()
        assert [token_facts(t) for t in tokens] == expected["tokens"]
        assert [(t.name, t.enabled, t.scope_map.name, [p.slot for p in t.passwords])
                for t in tokens] == [("ci", True, "ci", [1, 2]), ("ci-spare", False, "ci", [1]),
                                     ("reader", True, "reader", [1])]
        maps = {t.scope_map.name: {"description": t.scope_map.description,
                                   "rules": t.scope_map.rules_json()} for t in tokens}
        assert maps == expected["scope_maps"] and len(maps) == 2
        [expiring] = [p for t in tokens for p in t.passwords if p.expires_at is not None]
        assert not expiring.expired()
        old_rows = expected["audit_log"]
        rows = [r for r in audit_rows(reg) if r.id <= old_rows[-1]["id"]]
        assert [r.to_json() for r in reversed(rows)] == old_rows
        assert [r.id for r in rows] == sorted((r["id"] for r in old_rows), reverse=True)
        assert {(r["principal"], r["action"], r["result"]) for r in old_rows} >= {
            ("console", "token.create", "ok"), ("ci", "manifest.push", "ok"),
            ("ci", "manifest.delete", "ok"), ("ci", "login", "failed")}
        by_ci = audit_rows(reg, AuditFilter(principal="ci"))
        assert [r.to_json() for r in reversed(by_ci)] == [
            r for r in old_rows if r["principal"] == "ci"] != []
        assert reg.config.audit == AuditConfig(**expected["audit_config"])
    finally:
        reg.close()


@contextlib.contextmanager
def opened_v4(tmp_path: Path) -> Iterator[tuple[Registry, Authenticator, dict[str, Any]]]:
    """The v4 fixture opened (so upgraded), an authenticator on its store, and the tokens'
    passwords by name and slot."""
    v4 = unpack(4, tmp_path)
    reg = Registry(v4)
    auth = Authenticator(v4)
    auth.attach_store(reg.store)
    try:
        yield reg, auth, expected_of(4)["token_passwords"]
    finally:
        auth.close()
        reg.close()


def test_a_token_made_before_the_upgrade_still_logs_in(tmp_path: Path) -> None:
    with opened_v4(tmp_path) as (reg, auth, passwords):
        def login(name: str, password: str) -> ScopeMap | str:
            """The token's grants, or why it was refused."""
            header = basic_auth_header(name, password)
            who = auth.check(header)
            if who is None:
                return auth.refusal(header)
            assert (who.name, who.kind) == (name, "token") and isinstance(who.grants, ScopeMap)
            return who.grants

        for password in passwords["ci"].values():  # both passwords of the rotation
            grants = login("ci", password)
            assert isinstance(grants, ScopeMap) and grants.name == "ci"
            assert grants.allows("edge/ci", CONTENT_DELETE)
            assert not grants.allows("tools/busy", CONTENT_READ)
        reader = login("reader", passwords["reader"]["1"])
        assert isinstance(reader, ScopeMap) and reader.allows("tools/busy", CONTENT_READ)
        assert not reader.allows("tools/busy", CONTENT_WRITE)
        assert login("ci", "not-" + passwords["ci"]["1"]) == "wrong password"
        spare = passwords["ci-spare"]["1"]
        assert login("ci-spare", spare) == "token disabled"
        last_old = audit_rows(reg)[0].id
        TokenAdmin(reg).enable("ci-spare", who=CONSOLE)
        shared = login("ci-spare", spare)  # its hash kept; the map it shares with ci
        assert isinstance(shared, ScopeMap) and shared.name == "ci"
        assert shared.allows("edge/ci", CONTENT_WRITE)
        newest = audit_rows(reg)[0]  # a new row goes after the old ones
        assert (newest.action, newest.reference) == ("token.enable", "ci-spare")
        assert newest.id > last_old


def test_old_data_dir_upgrades_in_place(old: Old) -> None:
    d = old.datadir
    digests = old.expected["blobs"]
    stored = {x: (d.blobs / "sha256" / x[7:9] / x[7:]).read_bytes() for x in digests}
    reg = Registry(d)
    reg.close()
    assert versions(d.database) == (LATEST, str(LATEST))
    after = {x: (d.blobs / "sha256" / x[7:9] / x[7:]).read_bytes() for x in digests}
    assert after == stored


def test_every_image_is_kept(old: Old, upgraded: Registry) -> None:
    expected = old.expected
    assert upgraded.catalog().items == sorted(expected["tags"])
    for repo, tags in expected["tags"].items():
        assert upgraded.tags(repo).items == sorted(tags)
        for tag, digest in tags.items():
            by_tag = upgraded.get_manifest(repo, tag)
            by_digest = upgraded.get_manifest(repo, digest)
            assert str(by_tag.digest) == digest
            assert by_tag.body() == by_digest.body()
            assert hashlib.sha256(by_tag.body()).hexdigest() == digest[7:]
        for digest, media_type in expected["manifests"][repo].items():
            manifest = upgraded.get_manifest(repo, digest)
            assert manifest.media_type == media_type
            assert "sha256:" + hashlib.sha256(manifest.body()).hexdigest() == digest
    for digest in expected["blobs"]:
        path = upgraded.files.path(parse_digest(digest))
        assert "sha256:" + sha256_file(path) == digest


def test_references_history_and_samples_are_kept(old: Old, upgraded: Registry) -> None:
    expected = old.expected
    v1_0 = expected["tags"]["edge/app"]["1.0"]
    [sbom] = upgraded.referrers("edge/app", v1_0)
    assert sbom.artifact_type == "application/vnd.example.sbom+json"
    stable = upgraded.get_manifest("tools/busy", expected["tags"]["tools/busy"]["stable"])
    for child in json.loads(stable.body())["manifests"]:
        assert upgraded.get_manifest("tools/busy", child["digest"]).size == child["size"]
    runs = GarbageCollector(upgraded).history()
    assert [{"id": r.id, "status": r.status, "manifests_deleted": r.manifests_deleted,
             "blobs_deleted": r.blobs_deleted, "bytes_freed": r.bytes_freed}
            for r in runs] == expected["gc_runs"]
    assert len(usage_history(upgraded)) == expected["usage_samples"]


def test_upgraded_store_is_consistent_for_gc(upgraded: Registry) -> None:
    """A dry run with no grace period finds nothing to collect: every reference survived."""
    record = GarbageCollector(upgraded).run(trigger="cli", dry_run=True, grace_period=0.0)
    assert record.status == "succeeded"
    assert (record.manifests_deleted, record.blobs_deleted) == (0, 0)


def test_opening_twice_is_idempotent(old: Old) -> None:
    path = old.datadir.database
    Registry(old.datadir).close()
    first = dump(path)
    Registry(old.datadir).close()
    assert upgrade(path) == LATEST
    assert dump(path) == first


def test_cli_usage_upgrades_a_v1_data_dir(v1: DataDir) -> None:
    result = cli(v1.root, "usage", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["tags"] == sum(len(t) for t in EXPECTED["tags"].values())
    assert report["manifests"] == sum(len(m) for m in EXPECTED["manifests"].values())
    assert versions(v1.database) == (LATEST, str(LATEST))


def test_fresh_data_dir_gets_the_latest_version(datadir: DataDir) -> None:
    Registry(datadir).close()
    assert versions(datadir.database) == (LATEST, str(LATEST))


# ---- a newer release's data dir ---------------------------------------------------------------


def make_newer(path: Path) -> str:
    """Mark the database as written by a release one version ahead; returns its hash."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()
    return sha256_file(path)


def test_newer_data_dir_is_refused_untouched(v1: DataDir) -> None:
    before = make_newer(v1.database)
    with pytest.raises(SchemaTooNew) as err:
        Registry(v1)
    assert isinstance(err.value, ConfigError)
    message = str(err.value)
    assert "\n" not in message
    assert f"version {LATEST + 1}" in message and f"up to {LATEST}" in message
    assert sha256_file(v1.database) == before
    assert sorted(p.name for p in v1.root.glob("registry.db*")) == ["registry.db"]


def test_newer_data_dir_is_refused_inside_the_transaction_too(v1: DataDir) -> None:
    """The file-header check is a shortcut; the check under the lock is the one that holds."""
    make_newer(v1.database)
    conn = sqlite3.connect(v1.database, isolation_level=None)
    try:
        before = conn.execute("SELECT COUNT(*) FROM manifests").fetchone()
        with pytest.raises(SchemaTooNew):
            migrate(conn)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST + 1
        assert conn.execute("SELECT COUNT(*) FROM manifests").fetchone() == before
    finally:
        conn.close()


def test_cli_refuses_a_newer_data_dir_in_one_line(v1: DataDir) -> None:
    before = make_newer(v1.database)
    config = v1.config.read_bytes()
    for command in ("usage", "gc", "enable"):
        result = cli(v1.root, command)
        assert_one_line_error(result, "newer release", f"version {LATEST + 1}", f"up to {LATEST}")
    assert sha256_file(v1.database) == before
    assert v1.config.read_bytes() == config


# ---- steps: all or nothing, and once --------------------------------------------------------


def half_done_then_raise(conn: sqlite3.Connection) -> None:
    script("CREATE TABLE half_done (id TEXT PRIMARY KEY);\n"
           "ALTER TABLE repositories ADD COLUMN note TEXT;\n"
           "UPDATE meta SET value = 'broken';\n")(conn)
    raise RuntimeError("step failed partway")


FAILING_STEPS = {
    "raises": half_done_then_raise,
    "bad_sql": script("CREATE TABLE half_done (id TEXT PRIMARY KEY);\n"
                      "ALTER TABLE repositories ADD COLUMN note TEXT;\n"
                      "INSERT INTO no_such_table VALUES (1);\n"),
}


@pytest.mark.parametrize("kind", sorted(FAILING_STEPS))
def test_a_failing_step_changes_nothing(upgraded: Registry, kind: str) -> None:
    path = upgraded.datadir.database
    before = dump(path)
    steps = (*STEPS, Step(LATEST + 1, "fails", FAILING_STEPS[kind]))
    # failing at its end, the step's earlier statements applied (not at its first)
    with pytest.raises((RuntimeError, sqlite3.OperationalError),
                       match=r"step failed partway|no such table: no_such_table"):
        upgrade(path, steps)
    assert dump(path) == before
    assert versions(path) == (LATEST, str(LATEST))


def test_a_later_step_applies_and_then_this_release_refuses(v1: DataDir) -> None:
    steps = (*STEPS, Step(LATEST + 1, "a later release's table", script(
        "CREATE TABLE later_step (id TEXT PRIMARY KEY);\n"
        "INSERT INTO later_step SELECT 'repo;' || name FROM repositories;\n")))
    assert upgrade(v1.database, steps) == LATEST + 1
    assert versions(v1.database) == (LATEST + 1, str(LATEST + 1))
    with sqlite3.connect(v1.database) as conn:
        count = conn.execute("SELECT COUNT(*) FROM later_step").fetchone()[0]
        assert count == len(EXPECTED["tags"])
    with pytest.raises(SchemaTooNew):
        upgrade(v1.database)


def log_migration(conn: sqlite3.Connection) -> None:
    """A step with a visible trace; it holds the write lock a moment so that the other
    process reaches BEGIN IMMEDIATE while this one migrates."""
    conn.execute("CREATE TABLE migration_log (pid INTEGER NOT NULL)")
    conn.execute("INSERT INTO migration_log VALUES (?)", (os.getpid(),))
    time.sleep(0.3)


RACE_STEPS = (*STEPS, Step(LATEST + 1, "log", log_migration))


def _race(path: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    results.put(upgrade(Path(path), RACE_STEPS))


def test_two_processes_opening_a_fresh_dir_migrate_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    path = tmp_path / "registry.db"
    procs = [ctx.Process(target=_race, args=(str(path), barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted(results.get(timeout=5) for _ in procs) == [LATEST + 1] * 2
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM migration_log").fetchone()[0] == 1
