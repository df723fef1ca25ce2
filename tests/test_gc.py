"""Garbage collection and delete preview: exact, online, safe, observable.

The helpers at the top (push through the core, check the store) are shared with test_usage.py
and test_gc_stress.py.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import HANG_GUARD, wait_until

from registry_core.datadir import DataDir
from registry_core.errors import Denied, GCInProgressError
from registry_core.gc import GarbageCollector, GCEvent, RunRecord
from registry_core.identity import CONSOLE
from registry_core.manifests import OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST
from registry_core.preview import preview_delete
from registry_core.reference import digest_bytes, parse_digest
from registry_core.registry import Registry
from registry_core.usage import usage_report

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Pushed:
    repository: str
    digest: str
    size: int
    media_type: str
    blobs: dict[str, int] = field(default_factory=dict)
    """config + layers: digest -> size."""


def push_blob(reg: Registry, repo: str, data: bytes) -> tuple[str, int]:
    info = reg.put_blob(repo, data, who=CONSOLE)
    return str(info.digest), info.size


def descriptor(media_type: str, digest: str, size: int, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def push_image(
    reg: Registry,
    repo: str,
    tag: str | None,
    layers: list[bytes],
    *,
    config: bytes | None = None,
    subject: Pushed | None = None,
    artifact_type: str | None = None,
) -> Pushed:
    cfg = config if config is not None else json.dumps(
        {"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()}
    ).encode()
    blobs: dict[str, int] = {}
    cdig, csize = push_blob(reg, repo, cfg)
    blobs[cdig] = csize
    layer_descs = []
    for data in layers:
        d, s = push_blob(reg, repo, data)
        blobs[d] = s
        layer_descs.append(descriptor(OCI_LAYER_GZIP, d, s))
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, cdig, csize),
        "layers": layer_descs,
    }
    if artifact_type:
        doc["artifactType"] = artifact_type
    if subject is not None:
        doc["subject"] = descriptor(subject.media_type, subject.digest, subject.size)
    body = json.dumps(doc).encode()
    res = reg.put_manifest(repo, tag or str(digest_bytes(body)), body, OCI_MANIFEST, who=CONSOLE)
    return Pushed(repo, str(res.digest), len(body), OCI_MANIFEST, blobs)


def push_index(
    reg: Registry, repo: str, tag: str | None, children: list[tuple[Pushed, str]]
) -> Pushed:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            descriptor(c.media_type, c.digest, c.size,
                       platform={"os": "linux", "architecture": arch})
            for c, arch in children
        ],
    }
    body = json.dumps(doc).encode()
    res = reg.put_manifest(repo, tag or str(digest_bytes(body)), body, OCI_INDEX, who=CONSOLE)
    return Pushed(repo, str(res.digest), len(body), OCI_INDEX)


def rand(n: int = 1000) -> bytes:
    return os.urandom(n)


def used(reg: Registry) -> int:
    return int(reg.db.conn.execute("SELECT COALESCE(SUM(size), 0) FROM blobs").fetchone()[0])


def manifest_exists(reg: Registry, p: Pushed) -> bool:
    row = reg.db.conn.execute(
        "SELECT 1 FROM manifests m JOIN repositories r ON r.id = m.repository_id "
        "WHERE r.name = ? AND m.digest = ?",
        (p.repository, p.digest),
    ).fetchone()
    return row is not None


def blob_exists(reg: Registry, digest: str) -> bool:
    row = reg.db.conn.execute("SELECT 1 FROM blobs WHERE digest = ?", (digest,)).fetchone()
    return row is not None and reg.files.exists(parse_digest(digest))


def assert_pulls(reg: Registry, p: Pushed) -> None:
    """The manifest and every blob it names read back with matching digests."""
    stored = reg.get_manifest(p.repository, p.digest)
    body = stored.body()
    assert "sha256:" + hashlib.sha256(body).hexdigest() == p.digest
    doc = json.loads(body)
    for desc in [doc.get("config"), *doc.get("layers", [])]:
        if desc is None:
            continue
        info = reg.stat_blob(p.repository, desc["digest"])
        data = reg.blob_store.read_bytes(info.digest)
        assert "sha256:" + hashlib.sha256(data).hexdigest() == desc["digest"]
        assert len(data) == desc["size"]
    for child in doc.get("manifests", []):
        child_p = Pushed(p.repository, child["digest"], child["size"], child["mediaType"])
        assert_pulls(reg, child_p)


def assert_consistent(reg: Registry) -> None:
    """Every blob row has its file; every manifest's blobs and body exist; children exist."""
    conn = reg.db.conn
    for (digest,) in conn.execute("SELECT digest FROM blobs"):
        assert reg.files.exists(parse_digest(digest)), f"blob row without file: {digest}"
    missing = conn.execute(
        "SELECT mb.digest FROM manifest_blobs mb WHERE NOT EXISTS "
        "(SELECT 1 FROM blobs b WHERE b.digest = mb.digest) "
        "UNION SELECT m.digest FROM manifests m WHERE NOT EXISTS "
        "(SELECT 1 FROM blobs b WHERE b.digest = m.digest)"
    ).fetchall()
    assert not missing, f"referenced blobs missing: {missing}"
    stranded = conn.execute(
        "SELECT mc.child_digest FROM manifest_children mc JOIN manifests p ON p.id = mc.parent_id "
        "WHERE NOT EXISTS (SELECT 1 FROM manifests c WHERE c.repository_id = p.repository_id "
        "AND c.digest = mc.child_digest)"
    ).fetchall()
    assert not stranded, f"index children missing: {stranded}"


def collect(
    reg: Registry,
    *,
    grace_period: float = 0,
    dry_run: bool = False,
    delete_untagged: bool | None = None,
) -> RunRecord:
    """One GC run, with no grace period unless asked."""
    return GarbageCollector(reg).run(
        grace_period=grace_period, dry_run=dry_run, delete_untagged=delete_untagged
    )


def cli(datadir: DataDir, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console", "--data-dir", str(datadir.root), *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT, check=False,
    )


# ---- the basics: exact, and what is kept still pulls -------------------------------------------


def test_gc_frees_exactly_what_the_preview_said(registry: Registry) -> None:
    base = rand(5000)
    a = push_image(registry, "app/a", "v1", [base, rand(3000)])
    b = push_image(registry, "app/b", "v1", [base, rand(2000)])
    c = push_image(registry, "app/a", "v2", [base, rand(1000)])
    assert collect(registry).bytes_freed == 0  # nothing is garbage yet

    preview = preview_delete(registry, "app/a", a.digest)
    assert preview.tags == ["v1"]
    assert preview.allowed
    # Only a's config, its own layer and its manifest body: the shared base layer stays.
    own = {d: s for d, s in a.blobs.items() if d != str(digest_bytes(base))}
    assert {f.digest for f in preview.blobs_freed} == set(own) | {a.digest}
    assert preview.bytes_freed == sum(own.values()) + a.size
    assert preview.gc_bytes_freed == preview.bytes_freed
    # Pushed just now: all of it is inside the default 1 h grace period.
    assert preview.grace_period_seconds == 3600
    assert preview.bytes_in_grace == preview.bytes_freed

    before = used(registry)
    registry.delete_manifest("app/a", a.digest, who=CONSOLE)
    record = collect(registry)
    assert record.status == "succeeded"
    assert record.bytes_freed == preview.bytes_freed
    assert record.manifests_deleted == 0  # a was deleted by the user, not by the GC
    assert record.blobs_deleted == len(preview.blobs_freed)
    assert used(registry) == before - preview.bytes_freed
    assert_pulls(registry, b)
    assert_pulls(registry, c)
    assert_consistent(registry)
    assert collect(registry).bytes_freed == 0


def test_usage_reclaimable_equals_bytes_freed(registry: Registry) -> None:
    images = [push_image(registry, f"r{i % 3}", f"t{i}", [rand(4000), rand(100)])
              for i in range(9)]
    for p in images[::2]:
        registry.delete_manifest(p.repository, p.digest, who=CONSOLE)
    report = usage_report(registry)
    assert report.reclaimable_bytes > 0
    dry = collect(registry, dry_run=True)
    assert dry.bytes_freed == report.reclaimable_bytes
    assert used(registry) == report.used_bytes  # a dry run deletes nothing
    record = collect(registry)
    assert record.bytes_freed == report.reclaimable_bytes
    assert record.blobs_deleted == dry.blobs_deleted
    after = usage_report(registry)
    assert after.used_bytes == report.used_bytes - record.bytes_freed
    assert after.reclaimable_bytes == 0
    for p in images[1::2]:
        assert_pulls(registry, p)
    assert_consistent(registry)


def test_grace_period_keeps_young_blobs_and_manifests(registry: Registry) -> None:
    p = push_image(registry, "g", None, [rand()])  # untagged
    registry.config.gc.delete_untagged = True
    orphan, _ = push_blob(registry, "g", rand(700))
    record = collect(registry, grace_period=3600)
    assert record.bytes_freed == 0
    assert record.manifests_kept_grace == 1
    assert record.blobs_kept_grace == len(p.blobs) + 2  # config, layer, body, orphan
    report = usage_report(registry)
    assert report.reclaimable_in_grace_bytes == report.reclaimable_bytes > 0
    record = collect(registry, grace_period=0)
    assert record.manifests_deleted == 1
    assert not blob_exists(registry, orphan)
    assert not manifest_exists(registry, p)


def test_untagged_are_roots_by_default_and_collected_with_delete_untagged(
    registry: Registry,
) -> None:
    tagged = push_image(registry, "u", "v1", [rand()])
    untagged = push_image(registry, "u", None, [rand()])
    assert collect(registry).manifests_deleted == 0
    assert manifest_exists(registry, untagged)
    dry = collect(registry, delete_untagged=True, dry_run=True)
    assert dry.manifests_deleted == 1
    assert manifest_exists(registry, untagged)
    record = collect(registry, delete_untagged=True)
    assert record.manifests_deleted == 1
    assert record.bytes_freed == dry.bytes_freed == sum(untagged.blobs.values()) + untagged.size
    assert not manifest_exists(registry, untagged)
    assert_pulls(registry, tagged)
    # untag: the manifest stays (pull by digest) until delete_untagged collects it
    registry.untag("u", "v1", who=CONSOLE)
    assert collect(registry).manifests_deleted == 0
    assert_pulls(registry, tagged)


def test_abandoned_uploads_are_purged(registry: Registry) -> None:
    old = registry.start_upload("up")
    fresh = registry.start_upload("up")
    with registry.db.write() as conn:
        conn.execute("UPDATE uploads SET updated_at = updated_at - 2 * 86400 WHERE id = ?",
                     (old.id,))
    stray = registry.files.uploads_root / "stray-file"
    stray.write_bytes(b"x")
    os.utime(stray, (time.time() - 3 * 86400,) * 2)
    assert collect(registry, dry_run=True).uploads_purged == 1
    record = collect(registry)
    assert record.uploads_purged == 2
    assert not registry.files.upload_path(old.id).exists()
    assert not stray.exists()
    assert registry.upload_status("up", fresh.id).size == 0


def test_orphan_blob_files_are_removed_once_older_than_the_grace(registry: Registry) -> None:
    """A blob file with no row (a power cut or a full disk between rename and commit) goes;
    a young one waits for the grace period; a file that is no blob of ours stays."""
    kept, _ = push_blob(registry, "o", rand(300))
    contents = [rand(200), rand(201)]
    old, young = (digest_bytes(data) for data in contents)
    for data, digest in zip(contents, (old, young), strict=True):
        registry.blob_store.write_bytes(data, digest)
    root = registry.files.blobs_root / "sha256"
    old_file = root / old.hex[:2] / old.hex
    os.utime(old_file, (time.time() - 7200,) * 2)
    foreign = root / old.hex[:2] / "notes.txt"
    foreign.write_bytes(b"not a blob")
    os.utime(foreign, (time.time() - 7200,) * 2)
    record = collect(registry, grace_period=3600)
    assert not old_file.exists()
    assert (root / young.hex[:2] / young.hex).exists()
    assert foreign.exists()
    assert blob_exists(registry, kept)
    assert record.blobs_deleted == 1 and record.bytes_freed == 200


# ---- multi-arch (distribution issue 3178) and referrers ----------------------------------------


def test_deleting_an_index_never_strands_a_shared_child(registry: Registry) -> None:
    amd = push_image(registry, "multi", None, [rand()])
    arm = push_image(registry, "multi", None, [rand()])
    s390 = push_image(registry, "multi", "s390x-only", [rand()])
    idx1 = push_index(registry, "multi", "v1", [(amd, "amd64"), (arm, "arm64"), (s390, "s390x")])
    idx2 = push_index(registry, "multi", "v2", [(amd, "amd64")])

    # A child of an index cannot be deleted on its own.
    with pytest.raises(Denied):
        registry.delete_manifest("multi", amd.digest, who=CONSOLE)
    blocked = preview_delete(registry, "multi", amd.digest)
    assert blocked.blocked_by == sorted([idx1.digest, idx2.digest])
    assert not blocked.allowed and blocked.bytes_freed == 0 and blocked.blobs_freed == []

    preview = preview_delete(registry, "multi", idx1.digest, delete_untagged=True)
    fates = {c.digest: (c.fate, c.reason) for c in preview.children}
    assert fates[amd.digest][0] == "kept" and idx2.digest in fates[amd.digest][1]
    assert fates[arm.digest] == ("deleted", "nothing else references it")
    assert fates[s390.digest][0] == "kept" and "tagged" in fates[s390.digest][1]
    assert preview.bytes_freed == idx1.size + arm.size + sum(arm.blobs.values())

    default = preview_delete(registry, "multi", idx1.digest)
    assert {c.digest: c.fate for c in default.children} == {
        amd.digest: "kept", arm.digest: "kept", s390.digest: "kept"}
    assert default.bytes_freed == idx1.size

    registry.delete_manifest("multi", idx1.digest, who=CONSOLE)
    assert collect(registry).bytes_freed == default.bytes_freed  # arm kept: untagged root
    assert manifest_exists(registry, arm)
    record = collect(registry, delete_untagged=True)
    assert record.manifests_deleted == 1
    assert record.bytes_freed == preview.bytes_freed - idx1.size
    assert not manifest_exists(registry, arm)
    for p in (amd, s390, idx2):
        assert_pulls(registry, p)
    assert_consistent(registry)


def test_nested_untagged_index_children_follow_their_parent(registry: Registry) -> None:
    leaf = push_image(registry, "nest", None, [rand()])
    inner = push_index(registry, "nest", None, [(leaf, "amd64")])
    outer = push_index(registry, "nest", "v1", [(inner, "amd64")])
    assert collect(registry, delete_untagged=True).manifests_deleted == 0
    registry.delete_manifest("nest", outer.digest, who=CONSOLE)
    record = collect(registry, delete_untagged=True)
    assert record.manifests_deleted == 2  # inner first, then leaf (parents before children)
    assert not manifest_exists(registry, inner) and not manifest_exists(registry, leaf)
    assert_consistent(registry)
    assert used(registry) == 0


def test_referrers_live_with_their_subject(registry: Registry) -> None:
    image = push_image(registry, "sig", "v1", [rand()])
    sig = push_image(registry, "sig", None, [rand(300)], subject=image,
                     artifact_type="application/vnd.example.signature")
    sbom = push_image(registry, "sig", None, [rand(300)], subject=sig,
                      artifact_type="application/vnd.example.sbom")
    kept = push_image(registry, "sig", "keep-me", [rand(300)], subject=image,
                      artifact_type="application/vnd.example.tagged")
    # a referrer whose subject was never pushed is dangling from the start
    ghost = Pushed("sig", "sha256:" + "0" * 64, 10, image.media_type)
    dangling = push_image(registry, "sig", None, [rand(200)], subject=ghost)

    assert collect(registry, grace_period=3600).manifests_kept_grace == 1  # dangling, young
    record = collect(registry)
    assert record.manifests_deleted == 1 and not manifest_exists(registry, dangling)
    assert manifest_exists(registry, sig) and manifest_exists(registry, sbom)

    preview = preview_delete(registry, "sig", image.digest)
    fates = {r.digest: r.fate for r in preview.referrers}
    assert fates == {sig.digest: "deleted", kept.digest: "kept"}
    expected = {image.digest, sig.digest, sbom.digest, *image.blobs, *sig.blobs, *sbom.blobs}
    assert {b.digest for b in preview.blobs_freed} == expected

    registry.delete_manifest("sig", image.digest, who=CONSOLE)
    record = collect(registry)
    assert record.manifests_deleted == 2  # sig, then the sbom that refers to it
    assert record.bytes_freed == preview.bytes_freed
    assert_pulls(registry, kept)
    assert_consistent(registry)


# ---- online safety -----------------------------------------------------------------------------


def test_blob_referenced_during_the_sweep_is_kept(registry: Registry) -> None:
    layer = rand(4000)
    doomed = push_image(registry, "race", "v1", [layer])
    registry.delete_manifest("race", doomed.digest, who=CONSOLE)
    rescued: list[Pushed] = []

    def on_event(event: GCEvent) -> None:
        # The mark said the layer is garbage; a push that references it commits right before
        # the blob sweep's first transaction.
        if event.phase == "sweep blobs" and event.done == 0 and not rescued:
            rescued.append(push_image(registry, "race", "v2", [layer]))

    record = GarbageCollector(registry).run(grace_period=0, on_event=on_event)
    assert record.status == "succeeded"
    assert rescued
    assert blob_exists(registry, str(digest_bytes(layer)))
    assert_pulls(registry, rescued[0])
    assert_consistent(registry)


def test_cancel_mid_run_leaves_a_consistent_store(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import registry_core.gc as gcmod

    monkeypatch.setattr(gcmod, "SWEEP_BATCH", 10)
    keep = push_image(registry, "c", "keep", [rand(100)])
    for i in range(60):
        p = push_image(registry, "c", f"t{i}", [rand(100)])
        registry.delete_manifest("c", p.digest, who=CONSOLE)
    collector = GarbageCollector(registry)
    events: list[GCEvent] = []

    def on_event(event: GCEvent) -> None:
        events.append(event)
        if event.phase == "sweep blobs" and event.done >= 30:
            collector.cancel()

    record = collector.run(grace_period=0, on_event=on_event)
    assert record.status == "cancelled"
    assert record.cancel_requested
    assert 0 < record.blobs_deleted < 180
    assert events[-1].status == "cancelled"
    assert_consistent(registry)
    assert_pulls(registry, keep)
    assert collector.history(1)[0].status == "cancelled"
    rest = collector.run(grace_period=0)
    assert rest.status == "succeeded"
    assert rest.blobs_deleted + record.blobs_deleted == 180
    assert_consistent(registry)


def test_cancel_from_another_process_handle(
    registry: Registry, datadir: DataDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    import registry_core.gc as gcmod

    monkeypatch.setattr(gcmod, "HEARTBEAT_INTERVAL", 0.05)
    push_image(registry, "x", "v1", [rand()])
    started, asked = threading.Event(), threading.Event()
    collector = GarbageCollector(registry)

    def on_event(event: GCEvent) -> None:
        if event.phase == "mark" and event.done == 1:
            started.set()
            assert asked.wait(HANG_GUARD)
            run = collector.lock.run
            wait_until(lambda: run is not None and run.cancel.is_set(),
                       "a heartbeat to pick up the other handle's cancel")

    other = Registry(datadir)
    try:
        result: list[object] = []
        t = threading.Thread(target=lambda: result.append(
            collector.run(grace_period=0, on_event=on_event)))
        t.start()
        assert started.wait(10)
        current = GarbageCollector(other).current()
        assert current is not None and current.status == "running"
        assert GarbageCollector(other).cancel()
        asked.set()
        t.join(20)
        assert result and result[0].status == "cancelled"  # type: ignore[attr-defined]
    finally:
        other.close()


def test_one_run_at_a_time_and_stale_runs_are_failed(
    registry: Registry, datadir: DataDir
) -> None:
    push_image(registry, "x", "v1", [rand()])
    gate = threading.Event()
    entered = threading.Event()

    def on_event(event: GCEvent) -> None:
        if event.phase == "mark" and event.done == 1:
            entered.set()
            gate.wait(30)

    collector = GarbageCollector(registry)
    t = threading.Thread(target=lambda: collector.run(grace_period=0, on_event=on_event))
    t.start()
    try:
        assert entered.wait(10)
        with pytest.raises(GCInProgressError):
            GarbageCollector(registry).run()
        # Another process is refused too, with a one-line error and a non-zero exit.
        proc = cli(datadir, "gc")
        assert proc.returncode != 0
        assert "in progress" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    finally:
        gate.set()
        t.join(20)
    # A 'running' row whose process died (no heartbeat) does not block forever.
    with registry.db.write() as conn:
        conn.execute(
            "INSERT INTO gc_runs(trigger, dry_run, delete_untagged, grace_period_seconds, owner, "
            "started_at, heartbeat_at, status, phase) "
            "VALUES ('cli', 0, 0, 0, 'dead:1', ?, ?, 'running', 'mark')",
            (time.time() - 600, time.time() - 600),
        )
    record = collector.run(grace_period=0)
    assert record.status == "succeeded"
    stale = collector.history(2)[1]
    assert stale.status == "failed" and "abandoned" in stale.errors[0]


def _race_worker(root: str, barrier: object, out: object) -> None:
    reg = Registry(DataDir(Path(root)))
    try:
        barrier.wait()  # type: ignore[attr-defined]
        try:
            rec = GarbageCollector(reg).run(trigger="cli", grace_period=0)
            out.put(("ran", rec.id, rec.started_at, rec.finished_at))  # type: ignore[attr-defined]
        except GCInProgressError:
            out.put(("refused", 0, 0.0, 0.0))  # type: ignore[attr-defined]
    finally:
        reg.close()


def test_two_processes_asking_at_once(registry: Registry, datadir: DataDir) -> None:
    import multiprocessing as mp

    for i in range(30):
        p = push_image(registry, "two", f"t{i}", [rand(200)])
        if i % 2:
            registry.delete_manifest("two", p.digest, who=CONSOLE)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(4)
    out = ctx.Queue()
    procs = [ctx.Process(target=_race_worker, args=(str(datadir.root), barrier, out))
             for _ in range(4)]
    for pr in procs:
        pr.start()
    results = [out.get(timeout=60) for _ in procs]
    for pr in procs:
        pr.join(30)
    ran = sorted((r for r in results if r[0] == "ran"), key=lambda r: r[2])
    assert ran, results
    for a, b in itertools.pairwise(ran):
        assert a[3] <= b[2], f"runs overlapped: {a} {b}"  # never two at once
    assert_consistent(registry)
    assert sum(r.blobs_deleted for r in GarbageCollector(registry).history()) == 45


# ---- observability -----------------------------------------------------------------------------


def test_events_history_and_subscribers(registry: Registry) -> None:
    p = push_image(registry, "ev", "v1", [rand()])
    registry.delete_manifest("ev", p.digest, who=CONSOLE)
    collector = GarbageCollector(registry)
    seen: list[GCEvent] = []
    subscription = registry.events.subscribe(seen.append, GCEvent)
    record = collector.run(trigger="manual", grace_period=0)
    subscription.close()
    phases = [e.phase for e in seen]
    for phase in ("mark", "sweep manifests", "sweep blobs", "purge uploads", "done"):
        assert phase in phases
    assert seen[-1].status == "succeeded"
    assert seen[-1].bytes_freed == record.bytes_freed > 0
    assert any(e.message for e in seen)
    collector.run(grace_period=0)
    assert len(seen) == len(phases)  # unsubscribed
    history = collector.history()
    assert [r.id for r in history] == [record.id + 1, record.id]
    data = history[1].to_json()
    for key in ("id", "status", "dry_run", "manifests_deleted", "blobs_deleted", "bytes_freed",
                "duration_seconds", "trigger", "phase", "errors", "started_at", "finished_at"):
        assert key in data
    assert data["trigger"] == "manual" and data["status"] == "succeeded"
    assert {b["digest"] for b in data["details"]["blobs"]} == {p.digest, *p.blobs}
    assert collector.current() is None


def heartbeat_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "gc-heartbeat" and t.is_alive()}


def test_heartbeat_thread_stops_when_its_collector_closes(registry: Registry) -> None:
    before = heartbeat_threads()
    collector = GarbageCollector(registry)
    assert collector.run(grace_period=0).status == "succeeded"
    started = heartbeat_threads() - before
    assert len(started) == 1  # one long-lived thread per collector, alive between runs
    collector.close()
    assert not any(t.is_alive() for t in started)
    assert heartbeat_threads() <= before


KILLED_AFTER_BLOB_COMMIT = """
import os, signal, sys
from pathlib import Path
from registry_core.datadir import DataDir
from registry_core.gc import GarbageCollector
from registry_core.registry import Registry

def on_event(event):
    # The blob sweep reports a batch once its rows are committed, before the content goes.
    if event.phase == "sweep blobs" and event.done > 0:
        os.kill(os.getpid(), signal.SIGKILL)

GarbageCollector(Registry(DataDir(Path(sys.argv[1])))).run(grace_period=0, on_event=on_event)
"""


def test_gc_killed_between_its_commit_and_the_deletes_is_finished_by_the_next_open(
    registry: Registry, datadir: DataDir
) -> None:
    keep = push_image(registry, "k", "v1", [rand()])
    gone = push_image(registry, "k", "old", [rand(), rand()])
    layer = rand()
    back = push_image(registry, "k", "back", [layer])
    for p in (gone, back):
        registry.delete_manifest("k", p.digest, who=CONSOLE)
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_BLOB_COMMIT, str(datadir.root)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    dropped = {gone.digest, *gone.blobs, back.digest, *back.blobs}
    assert set(registry.store.pending_deletes.digests()) == dropped
    for digest in dropped:  # killed in between: rows gone, content still there
        assert not registry.store.blobs.exists(digest)
        assert registry.blob_store.exists(parse_digest(digest))
    again, _ = push_blob(registry, "k", layer)  # pushed again before anyone finishes
    reopened = Registry(datadir)
    try:
        assert reopened.store.pending_deletes.count() == 0
        for digest in dropped - {again}:
            assert not reopened.blob_store.exists(parse_digest(digest))
        assert reopened.blob_store.read_bytes(parse_digest(again)) == layer
        assert blob_exists(reopened, again)
        assert_pulls(reopened, keep)
        assert_consistent(reopened)
    finally:
        reopened.close()


def test_scheduler_runs_gc_on_its_cron(registry: Registry) -> None:
    from datetime import datetime, timedelta

    from croniter import croniter

    from registry_core.scheduler import GCScheduler

    collector = GarbageCollector(registry)
    sched = GCScheduler(registry, collector)
    assert sched.next_run() is None
    sched.poll_seconds = 0.1
    sched.start()
    try:
        nxt = sched.next_run()
        assert nxt is not None
        expected = croniter("0 2 * * *", datetime.now().astimezone()).get_next(datetime)
        assert nxt == expected
        sched._next = datetime.now().astimezone() + timedelta(seconds=0.3)
        deadline = time.time() + 20
        while time.time() < deadline and not collector.history():
            time.sleep(0.1)
        runs = collector.history()
        assert runs and runs[0].trigger == "schedule"
    finally:
        sched.stop()
    assert sched.next_run() is None


# ---- the command line --------------------------------------------------------------------------


def test_cli_gc_json_history_and_dry_run(registry: Registry, datadir: DataDir) -> None:
    keep = push_image(registry, "cli", "keep", [rand()])
    p = push_image(registry, "cli", "v1", [rand(2000)])
    registry.delete_manifest("cli", p.digest, who=CONSOLE)
    expected = sum(p.blobs.values()) + p.size

    dry = cli(datadir, "gc", "--dry-run", "--grace-period", "0", "--json")
    assert dry.returncode == 0, dry.stderr
    data = json.loads(dry.stdout)
    assert data["dry_run"] is True and data["bytes_freed"] == expected

    proc = cli(datadir, "gc", "--grace-period", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    for key in ("id", "status", "dry_run", "manifests_deleted", "blobs_deleted", "bytes_freed",
                "duration_seconds"):
        assert key in data
    assert data["status"] == "succeeded" and data["bytes_freed"] == expected
    assert data["blobs_deleted"] == len(p.blobs) + 1

    text = cli(datadir, "gc", "--grace-period", "0")
    assert text.returncode == 0
    assert "freed 0 Bytes" in text.stdout or "freed 0 B" in text.stdout

    hist = cli(datadir, "gc", "--history", "--json")
    assert [r["id"] for r in json.loads(hist.stdout)["runs"]] == [3, 2, 1]
    plain = cli(datadir, "gc", "--history")
    assert "succeeded" in plain.stdout and "dry run" in plain.stdout

    usage = cli(datadir, "usage", "--json")
    assert usage.returncode == 0, usage.stderr
    report = json.loads(usage.stdout)
    for key in ("capacity_bytes", "used_bytes", "free_bytes", "reclaimable_bytes"):
        assert isinstance(report[key], int)
    assert report["repositories"][0]["name"] == "cli"
    for key in ("name", "total_bytes", "exclusive_bytes", "shared_bytes", "tags"):
        assert key in report["repositories"][0]
    assert report["used_bytes"] == sum(keep.blobs.values()) + keep.size
    assert cli(datadir, "usage").returncode == 0
    bad = cli(datadir, "gc", "--grace-period", "-1")
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1
