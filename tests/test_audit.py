"""The audit log: content changes recorded in the transaction of the change (through the ASGI
app, by the console, by sync's ingest), GC runs, refused logins coalesced off the request's
thread, access changes, pruning by age and count, and the `[audit]` settings."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from api_helpers import make_app, make_client, push_blob, push_image
from imagebuilder import ImageSpec, write_oci_image, write_oci_index
from support import LiveServer, free_port, put_on_parent
from test_cli_basics import assert_one_line_error, cli, cli_json

from registry_core.access.audit import EventRows, parse_duration
from registry_core.access.scopes import parse_scopes
from registry_core.access.tokens import TokenAdmin
from registry_core.config import load_config
from registry_core.datadir import DataDir
from registry_core.enablement import enable, rotate_password
from registry_core.errors import BlobUnknown, ConfigError, StoreError
from registry_core.events import (
    AccessChanged,
    AccessDenied,
    GCEvent,
    GCFinished,
    LoginFailed,
)
from registry_core.gc import GarbageCollector
from registry_core.identity import CONSOLE, SYNC
from registry_core.ingest import IngestBlob, IngestImage, IngestManifest
from registry_core.reference import digest_bytes, parse_digest
from registry_core.registry import Registry
from registry_core.store.audit import AuditEntry, AuditFilter, NewAuditRow
from registry_core.sync.client import ParentClient
from registry_core.sync.connection import ConnectionString
from registry_core.sync.engine import Scope
from registry_core.sync.runner import SyncRunner
from registry_core.sync.settings import configure

HANG_GUARD = 60.0


def entries(registry: Registry, **chosen: str) -> list[AuditEntry]:
    return registry.audit.query(AuditFilter(**chosen), limit=1000)  # type: ignore[arg-type]


def only(registry: Registry, action: str) -> AuditEntry:
    [entry] = entries(registry, action=action)
    return entry


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# ---- content changes ----------------------------------------------------------------------


async def test_a_push_through_the_api_is_recorded(
    api: httpx.AsyncClient, registry: Registry, credentials: tuple[str, str]
) -> None:
    pushed = await push_image(api, "team/app", "1.0")
    entry = only(registry, "manifest.push")
    assert (entry.principal, entry.principal_kind) == (credentials[0], "admin")
    assert (entry.repository, entry.reference, entry.result) == ("team/app", pushed.digest, "ok")
    assert entry.detail == {"tag": "1.0", "media_type": pushed.media_type,
                            "size": pushed.size, "created": True}


async def test_a_tag_moved_and_removed_is_recorded(
    api: httpx.AsyncClient, registry: Registry
) -> None:
    first = await push_image(api, "team/app", "live", salt="one")
    second = await push_image(api, "team/app", "live", salt="two")
    moved = only(registry, "tag.move")
    assert (moved.repository, moved.reference) == ("team/app", "live")
    assert moved.detail == {"digest": second.digest, "previous": first.digest}
    registry.untag("team/app", "live", who=CONSOLE)
    removed = only(registry, "tag.delete")
    assert (removed.principal, removed.principal_kind) == ("console", "system")
    assert (removed.reference, removed.detail) == ("live", {"digest": second.digest})


async def test_a_delete_by_the_console_is_recorded(
    api: httpx.AsyncClient, registry: Registry
) -> None:
    pushed = await push_image(api, "team/app", "1.0")
    registry.delete_manifest("team/app", pushed.digest, who=CONSOLE)
    entry = only(registry, "manifest.delete")
    assert (entry.principal, entry.principal_kind, entry.address) == ("console", "system", None)
    assert (entry.repository, entry.reference, entry.result) == ("team/app", pushed.digest, "ok")
    assert entry.detail == {"tags": ["1.0"]}
    newest = entries(registry)[0]
    assert newest.id == entry.id  # newest first


async def test_a_blob_delete_through_the_api_is_recorded(
    api: httpx.AsyncClient, registry: Registry, credentials: tuple[str, str]
) -> None:
    digest = await push_blob(api, "team/app", b"a lone blob")
    resp = await api.delete(f"/v2/team/app/blobs/{digest}")
    assert resp.status_code == 202, resp.text
    entry = only(registry, "blob.delete")
    assert (entry.principal, entry.repository, entry.reference) == (
        credentials[0], "team/app", digest)
    assert entry.detail == {"size": len(b"a lone blob")}


def test_a_gc_run_is_recorded(registry: Registry) -> None:
    registry.put_blob("team/app", b"garbage nobody references", who=CONSOLE)
    record = GarbageCollector(registry).run(trigger="cli", grace_period=0.0, who=CONSOLE)
    assert record.bytes_freed > 0
    entry = only(registry, "gc.run")
    assert (entry.principal, entry.principal_kind, entry.result) == ("console", "system", "ok")
    assert entry.reference == str(record.id)
    assert entry.detail["bytes_freed"] == record.bytes_freed
    assert (entry.detail["trigger"], entry.detail["status"]) == ("cli", "succeeded")
    assert entry.detail["blobs_deleted"] == record.blobs_deleted


def gc_principals(registry: Registry, run_id: int) -> tuple[str, str, str]:
    """Who the run's audit row, its stored record and its CLI JSON name: (audit row principal,
    record's details principal, kind)."""
    [entry] = entries(registry, action="gc.run")
    assert entry.reference == str(run_id)
    stored = registry.store.gc_runs.get(run_id)
    assert stored is not None
    assert stored.details["principal_kind"] == entry.principal_kind
    return entry.principal, stored.details["principal"], entry.principal_kind


def test_a_gc_run_started_from_the_cli_is_recorded_as_the_console(
    registry: Registry, datadir: DataDir
) -> None:
    registry.put_blob("team/app", b"garbage the cli collects", who=CONSOLE)
    data = cli_json(datadir.root, "gc", "--grace-period", "0")
    assert data["status"] == "succeeded" and data["blobs_deleted"] == 1
    assert data["details"]["principal"] == "console"
    assert gc_principals(registry, data["id"]) == ("console", "console", "system")


def test_a_scheduled_gc_run_is_recorded_as_gc(registry: Registry) -> None:
    from datetime import datetime

    from registry_core.scheduler import GCScheduler

    registry.put_blob("team/app", b"garbage the schedule collects", who=CONSOLE)
    registry.config.gc.grace_period_seconds = 0
    seen: list[GCEvent] = []
    collector = GarbageCollector(registry)
    scheduler = GCScheduler(registry, collector)
    scheduler.poll_seconds = 0.05
    with registry.events.subscribe(seen.append, GCEvent):
        scheduler.start()
        try:
            scheduler._next = datetime.now().astimezone()  # due now, not at 02:00
            wait_for(lambda: any(isinstance(e, GCFinished) for e in seen), "the scheduled run")
        finally:
            scheduler.stop()
    [record] = collector.history()
    assert (record.trigger, record.status, record.blobs_deleted) == ("schedule", "succeeded", 1)
    assert gc_principals(registry, record.id) == ("gc", "gc", "system")
    assert {e.identity for e in seen} == {"gc"}


def test_sync_ingest_is_recorded_as_sync(registry: Registry, tmp_path: Path) -> None:
    image = write_oci_index(tmp_path / "layout")
    manifests = [IngestManifest(c.body, c.media_type) for c in image.manifests]
    manifests.append(IngestManifest(image.body, image.media_type))
    blobs = {b.digest: IngestBlob(b.digest, b.size,
                                  tmp_path / "layout" / "blobs" / "sha256" / b.digest.hex)
             for c in image.manifests for b in (c.config, *c.layers)}
    registry.ingest.commit("site/app", list(blobs.values()), manifests,
                           {"v1": image.digest}, who=SYNC)
    pushed = entries(registry, action="manifest.push")
    assert {e.reference for e in pushed} == {str(c.digest) for c in image.manifests} | {
        str(image.digest)}
    assert {(e.principal, e.principal_kind, e.repository) for e in pushed} == {
        ("sync", "system", "site/app")}
    assert [e.detail["tag"] for e in pushed if e.reference == str(image.digest)] == ["v1"]


# ---- in the same transaction as the change --------------------------------------------------


def test_a_rolled_back_change_leaves_no_row(registry: Registry, tmp_path: Path) -> None:
    """Two images in one transaction; the second names a blob that is not stored, so the
    whole transaction rolls back after the first image's rows were inserted."""
    image = write_oci_index(tmp_path / "layout")
    manifests = [IngestManifest(c.body, c.media_type) for c in image.manifests]
    blobs = [IngestBlob(b.digest, b.size, tmp_path / "layout" / "blobs" / "sha256" / b.digest.hex)
             for c in image.manifests for b in (c.config, *c.layers)]
    blobs = list({b.digest: b for b in blobs}.values())
    missing = parse_digest("sha256:" + "0" * 64)
    with pytest.raises(BlobUnknown):
        registry.ingest.commit_many([
            IngestImage("site/app", blobs, manifests, {}),
            IngestImage("site/other", [IngestBlob(missing, 1)], [], {}),
        ], who=SYNC)
    assert entries(registry) == []
    assert registry.catalog().items == []


def test_a_change_whose_row_cannot_be_written_is_not_made(
    registry: Registry, datadir: DataDir
) -> None:
    """The row and the change commit together: a refused row refuses the delete."""
    registry.put_blob("team/app", b"kept", who=CONSOLE)
    digest = str(digest_bytes(b"kept"))
    with sqlite3.connect(datadir.database) as conn:
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON audit_log "
                     "BEGIN SELECT RAISE(ABORT, 'audit refused'); END")
    with pytest.raises(StoreError):
        registry.delete_blob("team/app", digest, who=CONSOLE)
    assert registry.stat_blob("team/app", digest).size == len(b"kept")


# ---- events: refused logins and access changes -----------------------------------------------


def login_failed(address: str = "10.0.0.5", principal: str = "ci") -> LoginFailed:
    return LoginFailed(principal=principal, address=address, reason="wrong password")


def test_a_storm_of_failed_logins_becomes_a_few_counted_rows(registry: Registry) -> None:
    storm = 5000

    def emit_some() -> None:
        for _ in range(storm // 5):
            registry.events.emit(login_failed())

    threads = [threading.Thread(target=emit_some) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_GUARD)
    registry.events.emit(login_failed(address="10.0.0.9", principal="admin"))
    registry.audit.flush()
    rows = entries(registry, action="login")
    storm_rows = [r for r in rows if r.address == "10.0.0.5"]
    assert 1 <= len(storm_rows) <= 10
    assert sum(r.detail.get("count", 1) for r in storm_rows) == storm
    assert {(r.principal, r.principal_kind, r.result, r.detail["reason"]) for r in rows} == {
        ("ci", "unknown", "failed", "wrong password"),
        ("admin", "unknown", "failed", "wrong password")}


def test_failed_logins_never_wait_for_the_database(registry: Registry, datadir: DataDir) -> None:
    """While another connection holds the write lock, emitting still returns at once; the
    rows are written once the lock is free."""
    holder = sqlite3.connect(datadir.database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    done = threading.Event()

    def storm() -> None:
        for i in range(500):
            registry.events.emit(login_failed(principal=f"user{i % 7}"))
        done.set()

    try:
        threading.Thread(target=storm).start()
        assert done.wait(HANG_GUARD)
        assert holder.in_transaction  # the lock was held the whole time
    finally:
        holder.execute("COMMIT")
        holder.close()
    registry.audit.flush()
    rows = entries(registry, action="login")
    assert len(rows) == 7 and sum(r.detail.get("count", 1) for r in rows) == 500


def test_the_queue_is_bounded(registry: Registry) -> None:
    rows = EventRows(registry.store, interval=3600.0, limit=10)
    try:
        for i in range(25):
            rows.add((f"user{i}", "unknown", "10.0.0.5", "login", None, None, "failed", "x"),
                     time.time())
        rows.flush()
    finally:
        rows.close()
    logged = entries(registry, action="login")
    assert len(logged) == 10
    overflow = only(registry, "audit.overflow")
    assert overflow.detail == {"count": 15}


def test_a_refused_action_names_the_token(registry: Registry) -> None:
    registry.events.emit(AccessDenied(identity="ci-reader", address="10.0.0.7",
                                      action="content/write", repository="app/web",
                                      reference="latest", reason="not in its scope map"))
    registry.audit.flush()
    entry = only(registry, "content/write")
    assert (entry.principal, entry.principal_kind, entry.address, entry.result) == (
        "ci-reader", "token", "10.0.0.7", "denied")
    assert (entry.repository, entry.reference) == ("app/web", "latest")


def test_an_access_change_is_written_before_emit_returns(registry: Registry) -> None:
    registry.events.emit(AccessChanged(identity="console", action="token.create",
                                       target="ci-reader", detail={"scope_map": "ci"}))
    entry = only(registry, "token.create")  # no flush: written in the emitting thread
    assert (entry.principal, entry.principal_kind, entry.reference) == (
        "console", "system", "ci-reader")
    assert entry.detail == {"scope_map": "ci"}


def test_queued_rows_are_written_when_the_registry_closes(datadir: DataDir) -> None:
    first = Registry(datadir)
    first.events.emit(login_failed())
    first.close()
    second = Registry(datadir)
    try:
        assert [e.action for e in entries(second)] == ["login"]
    finally:
        second.close()


# ---- bounds -----------------------------------------------------------------------------------


def insert_rows(registry: Registry, count: int, at: float) -> None:
    row = NewAuditRow(at, "console", "system", None, "manifest.push", "r", None, "ok", {})
    with registry.store.exclusive():
        registry.store.audit.insert_many([row] * count)


def test_prune_by_age(registry: Registry) -> None:
    registry.config.audit.max_age_days = 7
    now = time.time()
    insert_rows(registry, 1200, now - 8 * 86400)
    insert_rows(registry, 3, now - 6 * 86400)
    assert registry.audit.prune() == 1200
    assert registry.audit.count() == 3


def test_prune_by_count_keeps_the_newest(registry: Registry) -> None:
    registry.config.audit.max_entries = 10
    insert_rows(registry, 1234, time.time())
    newest = [e.id for e in registry.audit.query(limit=10)]
    assert registry.audit.prune() == 1224
    assert [e.id for e in registry.audit.query(limit=100)] == newest


def test_recording_prunes_now_and_then(registry: Registry) -> None:
    from registry_core.access.audit import PRUNE_EVERY

    registry.config.audit.max_entries = 50
    with registry.store.exclusive():
        for _ in range(PRUNE_EVERY):
            registry.audit.record(CONSOLE, "config.change")
    wait_for(lambda: registry.audit.count() == 50, "the background prune")


def test_gc_prunes_the_log(registry: Registry) -> None:
    registry.config.audit.max_age_days = 1
    insert_rows(registry, 5, time.time() - 2 * 86400)
    GarbageCollector(registry).run(trigger="cli", grace_period=0.0)
    assert [e.action for e in entries(registry)] == ["gc.run"]


def test_audit_settings_in_config_toml(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    assert (load_config(path).audit.max_age_days, load_config(path).audit.max_entries) == (
        90, 1_000_000)
    path.write_text("[audit]\nmax_age_days = 7\nmax_entries = 5000\n")
    assert (load_config(path).audit.max_age_days, load_config(path).audit.max_entries) == (
        7, 5000)
    path.write_text('[audit]\nmax_entries = "many"\n')
    with pytest.raises(ConfigError, match=r"audit\.max_entries"):
        load_config(path)


# ---- querying ---------------------------------------------------------------------------------


def test_query_filters_and_pages(registry: Registry) -> None:
    now = time.time()
    rows = [NewAuditRow(now - 3600 * i, p, "token", None, a, r, None, "ok", {})
            for i, (p, a, r) in enumerate([("ci", "manifest.push", "app/web"),
                                            ("ci", "manifest.delete", "app/web"),
                                            ("ops", "manifest.push", "app/db"),
                                            ("ci", "manifest.push", "app/db")])]
    with registry.store.exclusive():
        registry.store.audit.insert_many(list(reversed(rows)))  # oldest first
    assert len(entries(registry, principal="ci")) == 3
    assert [e.repository for e in entries(registry, action="manifest.push")] == [
        "app/web", "app/db", "app/db"]
    assert [e.principal for e in entries(registry, repository="app/db")] == ["ops", "ci"]
    recent = registry.audit.query(AuditFilter(since=now - 2.5 * 3600))
    assert [e.action for e in recent] == ["manifest.push", "manifest.delete", "manifest.push"]
    first = registry.audit.query(limit=2)
    rest = registry.audit.query(before_id=first[-1].id, limit=2)
    assert [e.id for e in first + rest] == [e.id for e in registry.audit.query()]
    assert registry.audit.count(AuditFilter(principal="ci")) == 3


@pytest.mark.parametrize(("text", "seconds"), [
    ("30m", 1800), ("1h", 3600), ("7d", 7 * 86400), ("2w", 14 * 86400), ("PT3H", 10800),
    ("p1dt12h", 1.5 * 86400), (" 45s ", 45)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "says"), [
    ("", "not a duration"), ("h", "not a duration"), ("0h", "not a duration"),
    ("-1h", "not a duration"), ("3 hours", "not a duration"), ("1y", "not a duration"),
    ("P1M", "years and months have no fixed length"), ("PT", "not an ISO-8601 duration"),
])
def test_bad_durations(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=f"^audit --since '{text}'.* {says}"):
        parse_duration(text)


# ---- configuration changes ----------------------------------------------------------------------


def test_config_changes_are_recorded(registry: Registry, datadir: DataDir) -> None:
    enable(datadir, device_name="renamed")
    rotate_password(datadir)
    connection = ConnectionString("site7", "site7-sync", "Zm9v+secret==Q", "parent.test",
                                  "https")
    configure(datadir, connection=connection, repositories=["app/*"])
    rows = {e.action: e for e in entries(registry)}
    assert rows["config.enable"].detail == {"device_name": ["edge", "renamed"]}
    assert rows["config.rotate_password"].detail == {"username": registry.config.username}
    assert rows["config.sync"].detail["repositories"] == ["app/*"]
    assert "Zm9v" not in str(rows["config.sync"].detail)
    assert {(e.principal, e.principal_kind) for e in rows.values()} == {("console", "system")}
    enable(datadir, device_name="renamed")  # nothing changed: nothing recorded
    assert registry.audit.count(AuditFilter(action="config.enable")) == 1


def test_enable_before_any_database_records_nothing(tmp_path: Path) -> None:
    datadir = DataDir(tmp_path / "data")
    enable(datadir, device_name="first", dns_domain="test", node_ip="127.0.0.1")
    assert not datadir.database.exists()  # nowhere to record it, and none made for it


# ---- the command line -----------------------------------------------------------------------


def test_cli_filters_and_json(registry: Registry, datadir: DataDir) -> None:
    now = time.time()
    rows = [NewAuditRow(now - 7200, "ci", "token", "10.0.0.5", "manifest.push", "app/web",
                        "sha256:" + "a" * 64, "ok", {"tag": "1.0"}),
            NewAuditRow(now - 60, "ci", "token", "10.0.0.5", "content/delete", "app/web",
                        "latest", "denied", {"reason": "not in scope"}),
            NewAuditRow(now - 30, "console", "system", None, "manifest.delete", "app/db",
                        "sha256:" + "b" * 64, "ok", {})]
    with registry.store.exclusive():
        registry.store.audit.insert_many(rows)
    every = cli_json(datadir.root, "audit")
    assert [e["action"] for e in every["entries"]] == [
        "manifest.delete", "content/delete", "manifest.push"]
    assert every["entries"][2]["detail"] == {"tag": "1.0"}
    recent = cli_json(datadir.root, "audit", "--since", "1h", "--principal", "ci")
    assert [(e["principal"], e["action"], e["result"]) for e in recent["entries"]] == [
        ("ci", "content/delete", "denied")]
    by_repo = cli_json(datadir.root, "audit", "--repository", "app/db", "--since", "PT3H")
    assert [e["principal"] for e in by_repo["entries"]] == ["console"]
    assert cli_json(datadir.root, "audit", "--action", "manifest.push")["count"] == 1
    assert cli_json(datadir.root, "audit", "--limit", "1")["count"] == 1
    table = cli(datadir.root, "audit", "--action", "manifest.push")
    assert table.returncode == 0, table.stderr
    header, line = table.stdout.splitlines()
    assert header.split() == ["time", "principal", "address", "action", "repository",
                              "reference", "result"]
    assert line.split()[2:] == ["ci", "10.0.0.5", "manifest.push", "app/web",
                                "sha256:aaaaaaaaaaaa", "ok"]


def test_cli_refuses_a_bad_duration_in_one_line(registry: Registry, datadir: DataDir) -> None:
    assert_one_line_error(cli(datadir.root, "audit", "--since", "yesterday"),
                          "'yesterday' is not a duration")


# ---- through the HTTP face, with real tokens ---------------------------------------------------


async def test_a_refused_push_shows_the_token_in_the_cli(
    registry: Registry, datadir: DataDir, credentials: tuple[str, str]
) -> None:
    """The issue's acceptance: a token scoped to app/* with content/read,metadata/read is
    refused a push; `edge-console audit --json` names the token."""
    issued = TokenAdmin(registry).create(
        "ci-reader", parse_scopes(["app/*:content/read,metadata/read"]), who=CONSOLE)
    app = make_app(registry, datadir)
    try:
        async with make_client(app, ("ci-reader", issued.password)) as reader:
            resp = await reader.post("/v2/app/web/blobs/uploads/")
            assert resp.status_code == 403, resp.text
    finally:
        app.authenticator.close()
    registry.audit.flush()
    found = cli_json(datadir.root, "audit", "--principal", "ci-reader")["entries"]
    assert [(e["action"], e["repository"], e["result"], e["principal_kind"])
            for e in found] == [("blob.upload", "app/web", "denied", "token")]
    assert "content/write" in found[0]["detail"]["reason"]
    assert found[0]["address"] == "127.0.0.1"
    created = cli_json(datadir.root, "audit", "--action", "token.create")["entries"]
    assert [(e["principal"], e["reference"]) for e in created] == [("console", "ci-reader")]


async def test_wrong_passwords_through_the_app_are_counted(
    registry: Registry, datadir: DataDir, credentials: tuple[str, str]
) -> None:
    app = make_app(registry, datadir)
    registry.audit.flush()
    # Identical rows gather until the flush below, however slow a loaded machine makes the
    # 40 requests (with the 1 s interval, the row count would depend on the machine's speed).
    registry.audit.queued.interval = 3600.0
    try:
        async with make_client(app, (credentials[0], "not the password")) as wrong:
            statuses = [(await wrong.get("/v2/")).status_code for _ in range(40)]
    finally:
        app.authenticator.close()
    assert set(statuses) == {401}
    registry.audit.flush()
    rows = entries(registry, action="login")
    assert {(r.principal, r.address, r.result) for r in rows} == {
        (credentials[0], "127.0.0.1", "failed")}
    assert sum(r.detail.get("count", 1) for r in rows) == 40
    assert len(rows) == 1


@pytest.mark.socket
def test_a_sync_run_is_recorded(live_server: LiveServer, tmp_path: Path) -> None:
    parent = live_server.service.registry
    put_on_parent(parent, "shop/web", write_oci_image(tmp_path / "img", ImageSpec(tag="v1")),
                  "v1")
    site_dir = DataDir(tmp_path / "site")
    enable(site_dir, device_name="site", dns_domain="test", node_ip="127.0.0.1",
           port=free_port())
    site = Registry(site_dir)

    def connect() -> ParentClient:
        return ParentClient(f"127.0.0.1:{live_server.port}", live_server.username,
                            live_server.password, ca_file=live_server.cert_dir / "ca.crt")

    runner = SyncRunner(site, connect, Scope(("shop/*",)), parallel=2)
    try:
        record = runner.run("manual")
        assert record.status == "succeeded"
        run = only(site, "sync.run")
        assert (run.principal, run.result, run.reference) == ("sync", "ok", str(record.id))
        assert run.detail["manifests_copied"] == record.manifests_copied == 1
        pushed = only(site, "manifest.push")
        assert (pushed.principal, pushed.repository, pushed.detail["tag"]) == (
            "sync", "shop/web", "v1")
    finally:
        runner.close()
        site.close()
