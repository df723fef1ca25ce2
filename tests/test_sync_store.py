"""The store of the connected registry: sync runs (recorded like GC runs, one at a time across
processes through the shared run claim), stage items and their pins, and pins as roots of the
GC's mark (a staged image survives a GC at zero grace whole; released or expired, it goes)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_gc import (
    Pushed,
    assert_consistent,
    assert_pulls,
    blob_exists,
    manifest_exists,
    push_image,
    push_index,
    rand,
)

from registry_core.errors import StoreError
from registry_core.gc import GarbageCollector
from registry_core.gc_lock import RunClaim
from registry_core.identity import CONSOLE
from registry_core.preview import preview_delete
from registry_core.registry import Registry
from registry_core.store import Store
from registry_core.store.metadata import now
from registry_core.store.stages import StageItem
from registry_core.store.sync_runs import SyncRunRecord
from registry_core.usage import usage_report

REPO_ROOT = Path(__file__).resolve().parent.parent
HANG_GUARD = 30.0
"""Seconds a poll waits before the test fails (never reached when things work)."""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "registry.db")
    yield s
    s.close()


def poll(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class SyncBusy(Exception):
    """The claim's answer when another sync run is live (the engine has its own error)."""


def claim_sync(claim: RunClaim[SyncRunRecord], trigger: str, owner: str) -> SyncRunRecord:
    runs = claim.store.sync_runs
    return claim.claim(
        lambda t: runs.create(trigger, owner, at=t),
        lambda other: SyncBusy(f"sync run {other.id} by {other.owner} is running"),
    )


# ---- sync runs --------------------------------------------------------------------------------


def test_a_sync_run_is_recorded_like_a_gc_run(store: Store) -> None:
    runs = store.sync_runs
    with store.exclusive():
        run = runs.create("schedule", "edge:42")
    assert run.running and run.finished_at is None and run.errors == []
    assert runs.running() == run == runs.get(run.id)

    run.repositories, run.manifests_copied, run.blobs_copied = 2, 3, 7
    run.bytes_copied, run.manifests_pushed = 12345, 1
    run.errors.append("edge/app:1.0: parent answered 503")
    run.conflicts.append({"repository": "edge/app", "tag": "latest",
                          "local": "sha256:" + "a" * 64, "parent": "sha256:" + "b" * 64})
    run.details = {"repositories": {"edge/app": {"manifests": 3}}}
    with store.exclusive():
        runs.save(run)
    saved = runs.get(run.id)
    assert saved == run and saved is not None and saved.running
    assert runs.last_success() is None

    run.status = "succeeded"
    with store.exclusive():
        runs.save(run)
    assert run.finished_at is not None
    assert runs.get(run.id) == run
    assert runs.running() is None
    assert runs.last_success() == run.finished_at
    data = run.to_json()
    assert data["status"] == "succeeded" and data["conflicts"] == run.conflicts
    assert data["duration_seconds"] >= 0 and "details" not in run.to_json(include_details=False)


def test_only_a_succeeded_run_moves_the_last_success_and_never_back(store: Store) -> None:
    runs = store.sync_runs
    ends: list[float] = []
    for status in ("succeeded", "stopped", "failed", "cancelled"):
        with store.exclusive():
            run = runs.create("manual", "edge:1")
            run.status = status
            runs.save(run)
        assert run.finished_at is not None
        ends.append(run.finished_at)
    assert runs.last_success() == ends[0]
    with store.exclusive():  # a late report of an old success does not move it back
        run = runs.create("stage", "edge:1")
        run.status, run.finished_at = "succeeded", ends[0] - 100
        runs.save(run)
    assert runs.last_success() == ends[0]
    assert [r.status for r in runs.recent(3)] == ["succeeded", "cancelled", "failed"]
    assert len(runs.recent(10)) == 5


def test_sync_state_push_mark(store: Store) -> None:
    runs = store.sync_runs
    assert runs.push_mark() is None
    with store.exclusive():
        runs.set_push_mark(17)
    assert runs.push_mark() == 17
    with store.exclusive():
        runs.set_push_mark(1700000000.25)
    assert runs.push_mark() == 1700000000.25


def test_bad_values_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="trigger"), store.exclusive():
        store.sync_runs.create("cron", "edge:1")
    with store.exclusive():
        run = store.sync_runs.create("manual", "edge:1")
    run.status = "done"
    with pytest.raises(ValueError, match="status"), store.exclusive():
        store.sync_runs.save(run)
    with pytest.raises(ValueError, match="status"), store.exclusive():
        item = store.stages.add("s", "r", "t")
        store.stages.set_status(item.id, "ready")


def test_the_schema_allows_one_running_sync_run(store: Store) -> None:
    with store.exclusive():
        store.sync_runs.create("manual", "edge:1")
    with pytest.raises(StoreError), store.exclusive():
        store.sync_runs.create("manual", "edge:2")
    assert len(store.sync_runs.recent(10)) == 1


def test_heartbeat_and_cancel_request(store: Store) -> None:
    runs = store.sync_runs
    with store.exclusive():
        run = runs.create("manual", "edge:1")
        assert runs.heartbeat(run.id, at=run.started_at + 5)
        assert runs.request_cancel() == 1
    current = runs.running()
    assert current is not None and current.heartbeat_at == run.started_at + 5
    assert runs.cancel_requested(run.id)
    assert runs.running(heartbeat_since=run.started_at + 6) is None
    run.status = "cancelled"
    with store.exclusive():
        runs.save(run)
        assert not runs.heartbeat(run.id)
        assert runs.request_cancel(run.id) == 0


def test_the_claim_publishes_and_finishes(store: Store) -> None:
    claim = RunClaim(store, store.sync_runs, 0.02, 5.0, "sync-heartbeat")
    try:
        run = claim_sync(claim, "manual", "edge:1")
        with pytest.raises(SyncBusy, match=f"sync run {run.id}"):
            claim_sync(claim, "manual", "edge:1")

        def publish() -> None:
            with store.exclusive():
                store.sync_runs.save(run)

        run.blobs_copied = 9
        claim.beat(publish)
        assert claim.heartbeat_alive

        def published() -> bool:
            saved = store.sync_runs.get(run.id)
            return saved is not None and saved.blobs_copied == 9
        poll(published, "the heartbeat to publish the counters")
        run.status = "succeeded"
        claim.finish(lambda: store.sync_runs.save(run))
        assert store.sync_runs.running() is None
        assert store.sync_runs.get(run.id) == run
        assert claim_sync(claim, "schedule", "edge:1").id == run.id + 1
    finally:
        claim.close()
    assert not claim.heartbeat_alive


HOLDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from registry_core.gc_lock import RunClaim
    from registry_core.store import Store

    store = Store(Path(sys.argv[1]))
    claim = RunClaim(store, store.sync_runs, 0.05, 60.0, "sync-heartbeat")
    run = claim.claim(lambda t: store.sync_runs.create("schedule", "holder:1", at=t),
                      lambda other: RuntimeError("busy"))

    def beat() -> None:
        with store.exclusive():
            store.sync_runs.heartbeat(run.id)

    claim.beat(beat)
    print(run.id, flush=True)
    sys.stdin.read()  # hold the claim until killed
""")


def test_one_sync_run_at_a_time_across_processes(store: Store, tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store.metadata.path)], cwd=REPO_ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None
        ready, _, _ = select.select([holder.stdout], [], [], HANG_GUARD)
        assert ready, "the holder process did not claim"
        held = int(holder.stdout.readline())
        first = store.sync_runs.get(held)
        assert first is not None and first.owner == "holder:1"

        def beating() -> bool:
            current = store.sync_runs.running()
            return current is not None and current.heartbeat_at > first.heartbeat_at
        poll(beating, "the holder's heartbeat")
        claim = RunClaim(store, store.sync_runs, 0.05, 3.0, "sync-heartbeat")
        with pytest.raises(SyncBusy, match="holder:1"):
            claim_sync(claim, "manual", "here:1")
        # The holder dies without a word: its heartbeat stops, and the claim is taken over.
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(HANG_GUARD)
        taken: list[SyncRunRecord] = []

        def take_over() -> bool:
            try:
                taken.append(claim_sync(claim, "manual", "here:1"))
            except SyncBusy:
                return False
            return True
        poll(take_over, "the stale claim to be taken over")
        dead = store.sync_runs.get(held)
        assert dead is not None and dead.status == "failed"
        assert dead.finished_at == dead.heartbeat_at
        assert any("abandoned" in e for e in dead.errors)
        assert store.sync_runs.running() == taken[0]
        claim.close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(HANG_GUARD)


def test_a_sync_claim_and_a_gc_run_do_not_exclude_each_other(registry: Registry) -> None:
    store = registry.store
    claim = RunClaim(store, store.sync_runs, 0.05, 5.0, "sync-heartbeat")
    try:
        claim_sync(claim, "manual", "edge:1")
        assert GarbageCollector(registry).run(grace_period=0).status == "succeeded"
    finally:
        claim.close()


# ---- stage items ------------------------------------------------------------------------------


def stage(store: Store, name: str, repository: str, tag: str, digest: str | None,
          status: str = "staged", expires_at: float | None = None) -> StageItem:
    with store.exclusive():
        item = store.stages.add(name, repository, tag, expires_at)
        store.stages.set_status(item.id, status, digest)
    got = store.stages.get(item.id)
    assert got is not None
    return got


def test_stage_items_move_on_and_pin_only_when_staged(store: Store) -> None:
    d1, d2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    with store.exclusive():
        item = store.stages.add("window", "edge/app", "1.0")
    assert (item.status, item.digest, item.reason, item.expires_at) == ("pending", None, "", None)
    for status in ("downloading", "verifying"):
        with store.exclusive():
            store.stages.set_status(item.id, status, d1)
        assert store.stages.pinned() == set()
    with store.exclusive():
        store.stages.set_status(item.id, "staged")  # the digest known stays
    staged = store.stages.get(item.id)
    assert staged is not None and staged.digest == d1 and staged.pins(now())
    assert store.stages.pinned() == store.stages.pinned_digests() == {("edge/app", d1)}
    assert store.stages.pinned_by("edge/app", d1) == ["window"]

    failed = stage(store, "window", "edge/db", "2.0", d2, "failed")
    with store.exclusive():
        store.stages.set_status(failed.id, "failed", reason="not found on the parent")
    again = store.stages.get(failed.id)
    assert again is not None and again.reason == "not found on the parent"
    assert store.stages.pinned() == {("edge/app", d1)}
    assert [i.tag for i in store.stages.items("window")] == ["1.0", "2.0"]
    assert store.stages.items("other") == []
    assert staged.to_json()["status"] == "staged"


def test_adding_again_keeps_the_item_and_takes_the_new_expiry(store: Store) -> None:
    d = "sha256:" + "3" * 64
    first = stage(store, "window", "edge/app", "1.0", d)
    with store.exclusive():
        again = store.stages.add("window", "edge/app", "1.0", expires_at=now() + 3600)
    assert (again.id, again.status, again.digest) == (first.id, "staged", d)
    assert again.expires_at is not None
    with store.exclusive():
        other = store.stages.add("other", "edge/app", "1.0")
    assert other.id != first.id and len(store.stages.items()) == 2


def test_release_and_expiry_end_pins(store: Store) -> None:
    d1, d2, d3 = ("sha256:" + c * 64 for c in "456")
    stage(store, "window", "edge/app", "1.0", d1)
    stage(store, "window", "edge/app", "2.0", d2)
    lapsed = stage(store, "soon", "edge/db", "1.0", d3, expires_at=now() - 1)
    assert store.stages.pinned() == {("edge/app", d1), ("edge/app", d2)}  # expired: no pin
    assert store.stages.pinned(at=now() - 10) == {
        ("edge/app", d1), ("edge/app", d2), ("edge/db", d3)}
    # Expiry is read, not written: listed as expired until released, staged before.
    expired = store.stages.get(lapsed.id)
    assert expired is not None and expired.status == "expired" and not expired.pins(now())
    assert expired.released_at is None
    earlier = store.stages.get(lapsed.id, at=now() - 10)
    assert earlier is not None and earlier.status == "staged" and earlier.pins(now() - 10)
    assert [i.status for i in store.stages.items()] == ["expired", "staged", "staged"]
    with store.exclusive():
        assert store.stages.release("soon") == 1
        assert store.stages.release("window") == 2
        assert store.stages.release("window") == 0
    assert store.stages.pinned() == set() and store.stages.items() == []
    assert len(store.stages.items(released=True)) == 3
    with store.exclusive():  # a released stage can be staged again: a new item
        fresh = store.stages.add("window", "edge/app", "1.0")
    assert fresh.status == "pending" and len(store.stages.items(released=True)) == 4


# ---- pins are roots of the GC ----------------------------------------------------------------


def gc(registry: Registry) -> None:
    record = GarbageCollector(registry).run(grace_period=0, delete_untagged=True)
    assert record.status == "succeeded", record.errors


def assert_whole(registry: Registry, image: Pushed) -> None:
    assert manifest_exists(registry, image)
    assert all(blob_exists(registry, d) for d in image.blobs)
    assert_pulls(registry, image)


def test_a_pinned_untagged_image_survives_gc_whole(registry: Registry) -> None:
    store = registry.store
    pinned = push_image(registry, "edge/app", "1.0", [rand(), rand()])
    loose = push_image(registry, "edge/app", "0.9", [rand()])
    registry.untag("edge/app", "1.0", who=CONSOLE)  # before the pin: a staged tag stays
    registry.untag("edge/app", "0.9", who=CONSOLE)
    item = stage(store, "window", "edge/app", "1.0", pinned.digest)
    gc(registry)
    assert_whole(registry, pinned)
    assert not manifest_exists(registry, loose)  # the same GC collects what is not pinned
    assert not any(blob_exists(registry, d) for d in loose.blobs)
    assert_consistent(registry)

    with store.exclusive():
        store.stages.release(item.stage)
    gc(registry)
    assert not manifest_exists(registry, pinned)
    assert not any(blob_exists(registry, d) for d in pinned.blobs)
    assert_consistent(registry)


def test_a_pinned_index_keeps_its_children(registry: Registry) -> None:
    store = registry.store
    shared = rand(3000)
    amd = push_image(registry, "tools/busy", None, [shared, rand()])
    arm = push_image(registry, "tools/busy", None, [shared, rand()])
    index = push_index(registry, "tools/busy", "stable", [(amd, "amd64"), (arm, "arm64")])
    registry.untag("tools/busy", "stable", who=CONSOLE)  # before the pin: a staged tag stays
    stage(store, "window", "tools/busy", "stable", index.digest)
    gc(registry)
    assert_whole(registry, index)
    for child in (amd, arm):
        assert_whole(registry, child)
    assert_consistent(registry)


def test_a_pin_is_per_repository_and_only_while_staged(registry: Registry) -> None:
    store = registry.store
    image = push_image(registry, "edge/app", "1.0", [rand()])
    stage(store, "window", "edge/other", "1.0", image.digest)  # another repository
    stage(store, "window", "edge/app", "2.0", image.digest, status="verifying")
    stage(store, "late", "edge/app", "1.0", image.digest, expires_at=now() - 1)
    registry.untag("edge/app", "1.0", who=CONSOLE)
    gc(registry)
    assert not manifest_exists(registry, image)
    assert_consistent(registry)


def test_the_delete_preview_usage_and_gc_agree_on_pins(registry: Registry) -> None:
    """The three share the mark: a pinned untagged image is live for each of them."""
    store = registry.store
    base = rand(4000)
    pinned = push_image(registry, "edge/app", None, [base, rand(1000)])
    loose = push_image(registry, "edge/app", None, [base, rand(2000)])
    stage(store, "window", "edge/app", "pinned", pinned.digest)
    loose_own = loose.size + sum(s for d, s in loose.blobs.items() if d not in pinned.blobs)

    report = usage_report(registry)
    assert (report.untagged_manifests, report.untagged_bytes) == (1, loose_own)
    dry = GarbageCollector(registry).run(grace_period=0, delete_untagged=True, dry_run=True)
    assert dry.bytes_freed == loose_own
    preview = preview_delete(registry, "edge/app", pinned.digest, delete_untagged=True)
    assert preview.bytes_freed == pinned.size + sum(pinned.blobs.values())  # base too
    assert preview.gc_bytes_freed == dry.bytes_freed + preview.bytes_freed
    gc(registry)
    assert_whole(registry, pinned)
    assert not manifest_exists(registry, loose)
