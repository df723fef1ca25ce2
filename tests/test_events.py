"""The registry's event stream: one typed event per push, tag move, delete, blob commit, GC
step and usage sample, in order; subscribers that fail or leave never affect the operation."""

from __future__ import annotations

import json
import logging
import threading

import pytest
from support import LiveServer

from registry_core.events import (
    BlobCommitted,
    Event,
    GCEvent,
    GCFinished,
    GCProgress,
    GCStarted,
    ManifestDeleted,
    ManifestPushed,
    TagMoved,
    UsageSampled,
)
from registry_core.gc import GarbageCollector
from registry_core.identity import CONSOLE
from registry_core.manifests import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST
from registry_core.reference import digest_bytes
from registry_core.registry import Registry
from registry_core.scheduler import GCScheduler


def manifest_for(registry: Registry, repo: str, salt: str) -> tuple[bytes, list[str]]:
    """Config and layer stored in `repo` (the layer through an upload session)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "salt": salt}).encode()
    layer = f"layer {salt}".encode()
    registry.put_blob(repo, config, who=CONSOLE)
    upload = registry.start_upload(repo)
    registry.append_chunk(repo, upload.id, 0, layer[:3])
    registry.finish_with_chunk(repo, upload.id, 3, layer[3:], digest_bytes(layer), who=CONSOLE)
    body = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": str(digest_bytes(config)),
                   "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": str(digest_bytes(layer)),
                    "size": len(layer)}],
    }).encode()
    return body, [str(digest_bytes(config)), str(digest_bytes(layer))]


def without_progress(events: list[Event]) -> list[type[Event]]:
    kinds = [type(e) for e in events]
    return [k for i, k in enumerate(kinds) if k is not GCProgress or kinds[i - 1] is not k]


def test_each_kind_in_order(registry: Registry) -> None:
    seen: list[Event] = []
    subscription = registry.events.subscribe(seen.append)
    first, first_blobs = manifest_for(registry, "app", "one")
    first_digest = str(registry.put_manifest("app", "v1", first, OCI_MANIFEST, who=CONSOLE).digest)
    second, _ = manifest_for(registry, "app", "two")
    moved = registry.put_manifest("app", "v1", second, OCI_MANIFEST, who=CONSOLE)
    second_digest = str(moved.digest)
    registry.put_manifest("app", "v1", second, OCI_MANIFEST, who=CONSOLE)  # the same again: no move
    registry.mount_blob("other", first_blobs[1], "app", who=CONSOLE)
    registry.untag("app", "v1", who=CONSOLE)
    registry.delete_manifest("app", first_digest, who=CONSOLE)
    record = GarbageCollector(registry).run(grace_period=0)
    subscription.close()

    assert without_progress(seen) == [
        BlobCommitted, BlobCommitted, ManifestPushed, TagMoved,
        BlobCommitted, BlobCommitted, ManifestPushed, TagMoved,
        ManifestPushed, BlobCommitted, TagMoved, ManifestDeleted,
        GCStarted, GCProgress, GCFinished, UsageSampled,
    ]
    commits = [e for e in seen if isinstance(e, BlobCommitted)]
    assert [(c.repository, c.digest, c.mounted_from) for c in commits[:2]] == [
        ("app", first_blobs[0], None), ("app", first_blobs[1], None)
    ]
    assert (commits[-1].repository, commits[-1].mounted_from) == ("other", "app")
    pushes = [e for e in seen if isinstance(e, ManifestPushed)]
    assert [(p.digest, p.tag, p.created) for p in pushes] == [
        (first_digest, "v1", True), (second_digest, "v1", True), (second_digest, "v1", False)
    ]
    moves = [(e.digest, e.previous) for e in seen if isinstance(e, TagMoved)]
    assert moves == [(first_digest, None), (second_digest, first_digest), (None, second_digest)]
    deleted = next(e for e in seen if isinstance(e, ManifestDeleted))
    assert (deleted.repository, deleted.digest, deleted.tags) == ("app", first_digest, ())
    gc_events = [e for e in seen if isinstance(e, GCEvent)]
    assert {e.run_id for e in gc_events} == {record.id}
    finished = gc_events[-1]
    assert isinstance(finished, GCFinished) and finished.status == "succeeded"
    assert finished.bytes_freed == record.bytes_freed > 0
    assert finished.blobs_deleted == record.blobs_deleted
    sample = seen[-1]
    assert isinstance(sample, UsageSampled) and sample.reason == "gc"
    assert {e.identity for e in seen if not isinstance(e, (GCEvent, UsageSampled))} == {"console"}
    assert {e.identity for e in gc_events} == {"gc"}
    assert sample.identity is None  # no one's doing


def test_a_failing_subscriber_never_fails_a_push_and_delivery_crosses_threads(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    registry = live_server.service.registry
    received: list[tuple[Event, str]] = []

    def broken(event: Event) -> None:
        raise RuntimeError("a consumer's bug")

    def record(event: Event) -> None:
        received.append((event, threading.current_thread().name))

    failing = registry.events.subscribe(broken)
    recording = registry.events.subscribe(record, ManifestPushed, BlobCommitted)
    config = b'{"architecture": "amd64", "os": "linux"}'
    body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": str(digest_bytes(config)),
                   "size": len(config)},
        "layers": [],
    }).encode()
    with caplog.at_level(logging.ERROR, "edge_registry.events"), live_server.client() as client:
        resp = client.post("/v2/web/blobs/uploads/", params={"digest": str(digest_bytes(config))},
                           content=config)
        assert resp.status_code == 201, resp.text
        resp = client.put("/v2/web/manifests/v1", content=body,
                          headers={"Content-Type": OCI_MANIFEST})
        assert resp.status_code == 201, resp.text
        assert client.get("/v2/web/manifests/v1",
                          headers={"Accept": OCI_MANIFEST}).content == body
    failing.close()
    recording.close()
    assert [type(e) for e, _ in received] == [BlobCommitted, ManifestPushed]
    assert {e.identity for e, _ in received} == {live_server.username}  # who pushed
    assert all(thread != threading.current_thread().name for _, thread in received)
    failures = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], RuntimeError)]
    assert len(failures) == 3  # the blob, the push and the new tag: each logged


def test_unsubscribe(registry: Registry) -> None:
    kept: list[Event] = []
    left: list[Event] = []
    standing = registry.events.subscribers  # the registry's own (the audit log)
    registry.events.subscribe(kept.append, BlobCommitted)
    subscription = registry.events.subscribe(left.append)
    registry.put_blob("r", b"one", who=CONSOLE)
    subscription.close()
    subscription.close()  # harmless
    with registry.events.subscribe(left.append):
        registry.put_blob("r", b"two", who=CONSOLE)
    registry.put_blob("r", b"three", who=CONSOLE)
    assert len(kept) == 3
    assert [e.digest for e in left if isinstance(e, BlobCommitted)] == [
        str(digest_bytes(b"one")), str(digest_bytes(b"two"))
    ]
    assert registry.events.subscribers == standing + 1


def test_subscribers_come_and_go_while_another_thread_emits(registry: Registry) -> None:
    stop = threading.Event()
    pushed: list[str] = []

    def pusher() -> None:
        number = 0
        while not stop.is_set():
            blob = registry.put_blob("busy", f"blob {number}".encode(), who=CONSOLE)
            pushed.append(str(blob.digest))
            number += 1

    thread = threading.Thread(target=pusher)
    thread.start()
    try:
        windows = []
        for _ in range(20):
            seen: list[Event] = []
            with registry.events.subscribe(seen.append, BlobCommitted):
                while len(seen) < 3:
                    threading.Event().wait(0.001)
            windows.append([e.digest for e in seen if isinstance(e, BlobCommitted)])
    finally:
        stop.set()
        thread.join(30)
    for window in windows:  # each subscriber saw a contiguous run of the pushes, in order
        start = pushed.index(window[0])
        assert pushed[start : start + len(window)] == window


def test_the_scheduler_follows_runs_from_the_stream(registry: Registry) -> None:
    registry.config.gc.schedule = "0 3 * * *"
    standing = registry.events.subscribers  # the registry's own (the audit log)
    collector = GarbageCollector(registry)
    scheduler = GCScheduler(registry, collector)
    scheduler.start()
    try:
        record = collector.run(trigger="manual", grace_period=0)
        finished = scheduler.last_finished
        assert finished is not None
        assert (finished.run_id, finished.trigger, finished.status) == (
            record.id, "manual", "succeeded"
        )
    finally:
        scheduler.stop()
        collector.close()
    collector.run(grace_period=0)
    assert scheduler.last_finished is finished  # stopped: no longer listening
    assert registry.events.subscribers == standing


def test_preview_records_no_run_and_counts_like_a_dry_run(registry: Registry) -> None:
    body, _ = manifest_for(registry, "p", "old")
    digest = str(registry.put_manifest("p", "v1", body, OCI_MANIFEST, who=CONSOLE).digest)
    registry.untag("p", "v1", who=CONSOLE)
    collector = GarbageCollector(registry)
    seen: list[Event] = []
    with registry.events.subscribe(seen.append, GCEvent):
        preview = collector.preview(delete_untagged=True, grace_period=0)
    assert seen == [] and collector.history() == []
    assert (preview.id, preview.status, preview.dry_run) == (0, "succeeded", True)
    assert preview.details["manifests"] == [{"repository": "p", "digest": digest}]
    dry = collector.run(dry_run=True, delete_untagged=True, grace_period=0)
    counters = ("manifests_deleted", "blobs_deleted", "bytes_freed", "uploads_purged")
    assert [getattr(preview, c) for c in counters] == [getattr(dry, c) for c in counters]
    assert preview.manifests_deleted == 1 and preview.blobs_deleted == 3
    assert registry.get_manifest("p", digest)
    collector.close()
