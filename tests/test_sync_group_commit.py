"""Group commit of a sync pass: images that become ready while another one commits go in the
next transaction together; a bad image in a batch fails alone."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from imagebuilder import BuiltImage, ImageSpec, write_oci_image
from kubebed import eventually
from test_ingest import parts

from registry_core.errors import EdgeError
from registry_core.identity import SYNC
from registry_core.ingest import IngestImage, IngestResult
from registry_core.registry import Registry
from registry_core.sync.group_commit import GroupCommit


def image_of(built: BuiltImage, name: str, tag: str, *, drop_a_blob: bool = False
             ) -> IngestImage:
    blobs, manifests = parts(built)
    return IngestImage(name, blobs[1:] if drop_a_blob else blobs, manifests,
                       {tag: built.digest})


def commit_while_the_database_is_held(registry: Registry, images: list[IngestImage]
                                      ) -> tuple[GroupCommit, list[Future[IngestResult]]]:
    """The first image's transaction waits for a write lock held here; the others queue
    behind it; then the lock goes."""
    commits = GroupCommit(registry.ingest, SYNC)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with registry.store.exclusive():
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(60)
    with ThreadPoolExecutor(len(images)) as pool:
        first = pool.submit(commits.commit, images[0])
        eventually(lambda: (commits.leading and commits.waiting == 0) or None,
                   what="the first to lead")
        rest = [pool.submit(commits.commit, image) for image in images[1:]]
        eventually(lambda: commits.waiting == len(rest) or None, what="the others to queue")
        release.set()
        holder.join()
        futures = [first, *rest]
        for future in futures:
            future.exception(60)
    return commits, futures


def test_images_ready_together_are_committed_in_one_transaction(
    registry: Registry, tmp_path: Path
) -> None:
    built = [write_oci_image(tmp_path / f"i{n}", ImageSpec(tag=f"v{n}")) for n in range(6)]
    images = [image_of(b, f"site/app{n}", "v1") for n, b in enumerate(built)]

    commits, futures = commit_while_the_database_is_held(registry, images)

    assert commits.transactions == 2  # the first alone, then the five that queued
    for n, (future, image) in enumerate(zip(futures, built, strict=True)):
        assert future.result().manifests[-1] == image.digest
        assert registry.get_manifest(f"site/app{n}", "v1").digest == image.digest


def test_a_bad_image_in_a_batch_fails_alone(registry: Registry, tmp_path: Path) -> None:
    built = [write_oci_image(tmp_path / f"i{n}", ImageSpec(tag=f"v{n}")) for n in range(4)]
    images = [image_of(b, "site/app", f"v{n}", drop_a_blob=n == 2)
              for n, b in enumerate(built)]

    _, futures = commit_while_the_database_is_held(registry, images)

    assert isinstance(futures[2].exception(), EdgeError)
    for n in (0, 1, 3):
        assert futures[n].result().manifests[-1] == built[n].digest
        assert registry.get_manifest("site/app", f"v{n}").digest == built[n].digest
    assert "v2" not in registry.tags("site/app").items
