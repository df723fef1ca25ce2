"""Storage usage: exact per-repository, untagged and reclaimable bytes, samples, low space."""

from __future__ import annotations

import time

import pytest
from support import wait_until
from test_gc import assert_pulls, push_image, rand, used

from registry_core.errors import InsufficientSpace
from registry_core.gc import GarbageCollector
from registry_core.identity import CONSOLE
from registry_core.registry import Registry
from registry_core.usage import UsageSampler, record_sample, usage_history, usage_report


def test_per_repository_exclusive_and_shared(registry: Registry) -> None:
    base = rand(10_000)
    a1 = push_image(registry, "a", "v1", [base, rand(1000)])
    a2 = push_image(registry, "a", "v2", [base, rand(2000)])
    b1 = push_image(registry, "b", "v1", [base, rand(3000)])
    report = usage_report(registry)
    by_name = {r.name: r for r in report.repositories}
    assert report.used_bytes == used(registry)
    assert report.used_bytes == (
        len(base) + sum(sum(p.blobs.values()) - len(base) + p.size for p in (a1, a2, b1))
    )
    a, b = by_name["a"], by_name["b"]
    assert a.total_bytes == len(base) + sum(
        sum(p.blobs.values()) - len(base) + p.size for p in (a1, a2))
    assert a.shared_bytes == b.shared_bytes == len(base)
    assert a.exclusive_bytes == a.total_bytes - len(base)
    assert b.exclusive_bytes == sum(b1.blobs.values()) - len(base) + b1.size
    assert (a.tags, b.tags, a.manifests) == (2, 1, 2)
    assert report.reclaimable_bytes == 0
    # Each byte counted once overall: exclusive parts plus the shared layer.
    assert a.exclusive_bytes + b.exclusive_bytes + len(base) == report.used_bytes


def test_untagged_and_reclaimable(registry: Registry) -> None:
    tagged = push_image(registry, "u", "v1", [rand(1000)])
    loose = push_image(registry, "u", None, [rand(4000)])
    report = usage_report(registry)
    assert report.untagged_manifests == 1
    assert report.untagged_bytes == sum(loose.blobs.values()) + loose.size
    repo = report.repositories[0]
    assert (repo.untagged_manifests, repo.untagged_bytes) == (1, report.untagged_bytes)
    assert report.reclaimable_bytes == 0  # untagged manifests are roots by default
    registry.config.gc.delete_untagged = True
    report = usage_report(registry)
    assert report.reclaimable_bytes == report.untagged_bytes
    assert report.reclaimable_in_grace_bytes == report.reclaimable_bytes  # all young
    registry.config.gc.grace_period_seconds = 0
    report = usage_report(registry)
    assert report.reclaimable_in_grace_bytes == 0
    record = GarbageCollector(registry).run(grace_period=0)
    assert record.bytes_freed == report.reclaimable_bytes
    assert usage_report(registry).used_bytes == report.used_bytes - record.bytes_freed
    assert_pulls(registry, tagged)


def test_samples_after_gc_and_debounced_pushes(registry: Registry) -> None:
    p = push_image(registry, "s", "v1", [rand(1000)])
    registry.delete_manifest("s", p.digest, who=CONSOLE)
    first = record_sample(registry, "start")
    assert first.reclaimable_bytes == sum(p.blobs.values()) + p.size
    GarbageCollector(registry).run(grace_period=0)
    history = usage_history(registry)
    assert [s.reason for s in history] == ["start", "gc"]
    assert history[-1].used_bytes == 0 and history[-1].reclaimable_bytes == 0

    sampler = UsageSampler(registry, delay=2.0)  # the burst below takes far less
    try:
        for i in range(5):
            push_image(registry, "s", f"burst{i}", [rand(100)])
        wait_until(lambda: len(usage_history(registry)) >= 3, "the burst's sample")
        history = usage_history(registry)
        assert [s.reason for s in history] == ["start", "gc", "push"]  # one sample per burst
        assert history[-1].used_bytes == used(registry)
    finally:
        sampler.close()


def test_low_space_refusals_are_visible(registry: Registry) -> None:
    push_image(registry, "q", "v1", [rand(1000)])
    report = usage_report(registry)
    assert not report.low_space and report.low_space_refusals == 0
    storage = registry.config.storage
    storage.quota_bytes = report.used_bytes + 2000
    storage.reserve_percent = 80.0
    storage.reserve_max_bytes = 1 << 30
    registry._used_cache = (0.0, 0)
    with pytest.raises(InsufficientSpace) as err:
        registry.start_upload("q", 5000)
    assert "free" in str(err.value) and "garbage collection" in str(err.value)
    report = usage_report(registry)
    assert report.capacity_bytes == storage.quota_bytes
    assert report.low_space
    assert report.free_bytes == 2000
    assert report.reserve_bytes == int(storage.quota_bytes * 0.8)
    assert report.low_space_refusals == 1
    assert report.last_refusal_at is not None and report.last_refusal_at <= time.time()
    assert report.used_bytes == used(registry)  # nothing stored was harmed


def test_usage_report_at_scale(registry: Registry) -> None:
    """2,000 manifests / 10,000 blobs straight into SQLite: the report counts them right (its
    speed at scale is measured by bench/bench_gc.py)."""
    import json as _json

    t = time.time()
    conn = registry.db.conn
    with registry.db.write() as w:
        for r in range(20):
            w.execute("INSERT INTO repositories(id, name, created_at) VALUES (?, ?, ?)",
                      (r + 1, f"repo{r}", t))
        for m in range(2000):
            digest = f"sha256:{m:064x}"
            w.execute("INSERT INTO blobs VALUES (?, 100, ?, ?)", (digest, t, t))
            w.execute(
                "INSERT INTO manifests(id, repository_id, digest, media_type, size, "
                "content_size, created_at) VALUES (?, ?, ?, 'x', 100, 0, ?)",
                (m + 1, m % 20 + 1, digest, t),
            )
            if m % 2 == 0:
                w.execute("INSERT INTO tags VALUES (?, ?, ?, ?)", (m % 20 + 1, f"t{m}", m + 1, t))
            for k in range(4):
                b = f"sha256:{(10**6 + m * 4 + k):064x}"
                w.execute("INSERT INTO blobs VALUES (?, 1000, ?, ?)", (b, t, t))
                w.execute("INSERT INTO manifest_blobs VALUES (?, ?, 'layer', 1000, ?)",
                          (m + 1, b, k))
    del conn, _json
    registry.config.gc.delete_untagged = True
    report = usage_report(registry)
    assert report.manifests == 2000 and report.blobs == 10_000
    assert report.reclaimable_bytes == 1000 * (100 + 4 * 1000)  # the untagged half
