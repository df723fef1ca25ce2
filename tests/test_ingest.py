"""Whole images committed in one transaction (what sync and offline import build on): the
tag appears with everything under it or not at all, and a GC running alongside never takes
a piece of it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from imagebuilder import BuiltImage, write_oci_index

from registry_core.errors import BlobUnknown, ManifestBlobUnknown, ManifestUnknown
from registry_core.events import BlobCommitted, Event, ManifestPushed, TagMoved
from registry_core.gc import GarbageCollector
from registry_core.identity import SYNC
from registry_core.ingest import IngestBlob, IngestManifest
from registry_core.reference import Digest
from registry_core.registry import Registry


def blob_path(layout: Path, digest: Digest) -> Path:
    return layout / "blobs" / digest.algorithm / digest.hex


def parts(image: BuiltImage) -> tuple[list[IngestBlob], list[IngestManifest]]:
    """Every blob once (files of the layout), children before the index."""
    blobs: dict[Digest, IngestBlob] = {}
    for child in image.manifests:
        for blob in (child.config, *child.layers):
            blobs[blob.digest] = IngestBlob(blob.digest, blob.size,
                                            blob_path(image.path, blob.digest))
    manifests = [IngestManifest(c.body, c.media_type) for c in image.manifests]
    manifests.append(IngestManifest(image.body, image.media_type))
    return list(blobs.values()), manifests


def test_an_index_with_its_children_arrives_whole(registry: Registry, tmp_path: Path) -> None:
    image = write_oci_index(tmp_path / "layout")
    blobs, manifests = parts(image)
    seen: list[Event] = []
    registry.events.subscribe(seen.append)

    result = registry.ingest.commit("site/app", blobs, manifests, {"v1": image.digest},
                                    who=SYNC)

    assert result.manifests[-1] == image.digest and result.created == len(manifests)
    assert result.blobs_moved == len(blobs)
    assert registry.get_manifest("site/app", "v1").digest == image.digest
    for child in image.manifests:
        stored = registry.get_manifest("site/app", str(child.digest))
        assert stored.read() == child.body
        for blob in (child.config, *child.layers):
            assert registry.stat_blob("site/app", blob.digest).size == blob.size
    kinds = [type(e) for e in seen]
    assert kinds.count(BlobCommitted) == len(blobs)
    assert kinds.count(ManifestPushed) == len(manifests)
    assert kinds[-1] is TagMoved
    assert {e.identity for e in seen} == {"sync"}

    # The same again: nothing new, no file moved, the tag does not move.
    again = registry.ingest.commit(
        "site/app", [IngestBlob(b.digest, b.size) for b in blobs], manifests,
        {"v1": image.digest}, who=SYNC)
    assert (again.created, again.blobs_moved, again.moved_tags) == (0, 0, {})


def test_nothing_is_visible_when_a_piece_is_missing(registry: Registry, tmp_path: Path) -> None:
    image = write_oci_index(tmp_path / "layout")
    blobs, manifests = parts(image)
    with pytest.raises(ManifestBlobUnknown):
        registry.ingest.commit("site/app", blobs[:-1], manifests, {"v1": image.digest},
                               who=SYNC)
    for reference in ("v1", str(image.digest), *(str(c.digest) for c in image.manifests)):
        with pytest.raises(ManifestUnknown):
            registry.get_manifest("site/app", reference)
    assert registry.catalog().items == []


def test_a_blob_said_to_be_here_must_be(registry: Registry, tmp_path: Path) -> None:
    image = write_oci_index(tmp_path / "layout")
    blobs, manifests = parts(image)
    claimed = [IngestBlob(b.digest, b.size) for b in blobs]  # none of them is stored
    with pytest.raises(BlobUnknown):
        registry.ingest.commit("site/app", claimed, manifests, {"v1": image.digest}, who=SYNC)
    assert registry.catalog().items == []


def test_a_gc_alongside_never_takes_a_piece(registry: Registry, tmp_path: Path) -> None:
    """Sync and GC together: GC at zero grace, over and over, while images arrive."""
    images = [write_oci_index(tmp_path / f"layout{i}", tag=f"t{i}") for i in range(20)]
    stop = threading.Event()
    collector = GarbageCollector(registry)
    runs = 0

    def collect() -> None:
        nonlocal runs
        while not stop.is_set():
            collector.run(grace_period=0, delete_untagged=True)
            runs += 1

    gc_thread = threading.Thread(target=collect)
    gc_thread.start()
    try:
        for i, image in enumerate(images):
            blobs, manifests = parts(image)
            registry.ingest.commit(f"site/app{i % 2}", blobs, manifests,
                                   {f"v{i}": image.digest}, who=SYNC)
    finally:
        stop.set()
        gc_thread.join(60)
    collector.run(grace_period=0, delete_untagged=True)
    assert runs >= 1
    for i, image in enumerate(images):
        repository = f"site/app{i % 2}"
        assert registry.get_manifest(repository, f"v{i}").digest == image.digest
        for child in image.manifests:
            for blob in (child.config, *child.layers):
                assert registry.stat_blob(repository, blob.digest).size == blob.size
    collector.close()
