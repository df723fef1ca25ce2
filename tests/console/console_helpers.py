"""Console test helpers: images pushed through the core API, fixed data for screenshots,
apps built on a registry, and waiting for workers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support import HANG_GUARD
from textual.pilot import Pilot
from textual.worker import WorkerCancelled

from console.app import EdgeConsoleApp
from console.screens.images import ImagesView
from console.widgets.virtual_table import VirtualTable
from registry_core.certs import CertificateInfo
from registry_core.datadir import DataDir
from registry_core.identity import CONSOLE
from registry_core.registry import Registry
from registry_core.usage import RepositoryUsage, UsageReport, UsageSample

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

FIXED_NOW = 1_767_225_600.0
"""2026-01-01 00:00 UTC: the clock of snapshot apps."""
FIXED_PUSH = FIXED_NOW - 3 * 3600
"""Every pushed row is dated three hours before FIXED_NOW in snapshot data."""


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    repository: str
    tags: list[str]
    digest: str
    blobs: dict[str, int] = field(default_factory=dict)

    @property
    def content_bytes(self) -> int:
        return sum(self.blobs.values())


def push_blob(registry: Registry, repository: str, data: bytes) -> str:
    return str(registry.put_blob(repository, data, who=CONSOLE).digest)


def push_image(
    registry: Registry,
    repository: str,
    tags: list[str],
    layers: list[bytes],
    architecture: str = "amd64",
) -> Image:
    """An OCI image (config + layers) pushed through the core API, tagged with `tags`."""
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "created": "2025-06-01T12:00:00Z",
            "rootfs": {"type": "layers", "diff_ids": [digest_of(x) for x in layers]},
        },
        sort_keys=True,
    ).encode()
    blobs = {push_blob(registry, repository, config): len(config)}
    layer_descriptors = []
    for layer in layers:
        digest = push_blob(registry, repository, layer)
        blobs[digest] = len(layer)
        layer_descriptors.append({"mediaType": OCI_LAYER, "digest": digest, "size": len(layer)})
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config),
                       "size": len(config)},
            "layers": layer_descriptors,
        },
        sort_keys=True,
    ).encode()
    digest = digest_of(manifest)
    registry.put_manifest(repository, digest, manifest, OCI_MANIFEST, who=CONSOLE)
    for tag in tags:
        registry.put_manifest(repository, tag, manifest, OCI_MANIFEST, who=CONSOLE)
    return Image(repository, tags, digest, blobs)


def seed(registry: Registry) -> dict[str, Image]:
    """A small, fixed set of images: shared base layer, several tags, an untagged one."""
    base = b"base layer " * 4000
    images = {
        "nginx:2.0": push_image(registry, "nginx", ["2.0", "latest"],
                                [base, b"nginx 2.0 files " * 20000]),
        "nginx:1.17": push_image(registry, "nginx", ["1.17.5-alpine"],
                                 [base, b"nginx 1.17 files " * 9000]),
        "alpine:3.20": push_image(registry, "library/alpine", ["3.20"],
                                  [b"alpine rootfs " * 30000]),
        "app:untagged": push_image(registry, "team/app", [], [base, b"app build " * 5000]),
        "app:v1": push_image(registry, "team/app", ["v1"], [base, b"app v1 " * 7000]),
    }
    return images


def backdate(registry: Registry, when: float) -> None:
    """Date every row as pushed at `when` (deterministic screenshots; past the grace period)."""
    with registry.db.write() as conn:
        conn.execute("UPDATE tags SET updated_at = ?", (when,))
        conn.execute("UPDATE manifests SET created_at = ?", (when,))
        conn.execute("UPDATE blobs SET created_at = ?, touched_at = ?", (when, when))
        conn.execute("UPDATE repository_blobs SET linked_at = ?", (when,))


def fixed_certificates(datadir: DataDir) -> list[CertificateInfo]:
    start = dt.datetime(2025, 12, 1, 9, 0, tzinfo=dt.UTC)
    return [
        CertificateInfo(
            "CA", Path("/data/certs/ca.crt"), "O=Edge Console,CN=Edge Registry CA edge",
            "O=Edge Console,CN=Edge Registry CA edge", [], start,
            start + dt.timedelta(days=3650), ":".join(["AB", "CD", "EF", "01"] * 8), "1A2B",
        ),
        CertificateInfo(
            "Server", Path("/data/certs/server.crt"), "CN=ecr.edge.test",
            "O=Edge Console,CN=Edge Registry CA edge",
            ["DNS:ecr.edge.test", "DNS:localhost", "IP:10.0.0.5", "IP:127.0.0.1", "IP:::1"],
            start, start + dt.timedelta(days=825), ":".join(["12", "34", "56", "78"] * 8),
            "3C4D",
        ),
    ]


def fixed_usage(registry: Registry) -> UsageReport:
    gib = 1 << 30
    return UsageReport(
        taken_at=FIXED_NOW, capacity_bytes=64 * gib, used_bytes=21 * gib,
        free_bytes=30 * gib, reserve_bytes=gib, quota_bytes=0, low_space=False,
        low_space_refusals=0, last_refusal_at=None, uploads_in_progress=0, uploads_bytes=0,
        blobs=412, manifests=57, tags=88, untagged_manifests=3, untagged_bytes=2 * gib,
        reclaimable_bytes=5 * gib, reclaimable_blobs=40, reclaimable_in_grace_bytes=gib // 4,
        grace_period_seconds=3600.0, delete_untagged=False,
        repositories=[
            RepositoryUsage("nginx", 9 * gib, 6 * gib, 3 * gib, 12, 14, 1, gib),
            RepositoryUsage("library/alpine", 3 * gib, gib, 2 * gib, 40, 40, 0, 0),
            RepositoryUsage("team/app", 7 * gib, 5 * gib, 2 * gib, 36, 3, 2, gib),
        ],
    )


def fixed_history(registry: Registry, limit: int = 500) -> list[UsageSample]:
    gib = 1 << 30
    used = [10, 11, 13, 16, 18, 21, 25, 24, 19, 20, 22, 21]
    return [
        UsageSample(FIXED_NOW - (len(used) - i) * 3600, "push", u * gib, 64 * gib,
                    (64 - u - 13) * gib, gib)
        for i, u in enumerate(used)
    ]


async def wait_for(pilot: Pilot[Any], condition: Callable[[], object], timeout: float = HANG_GUARD,
                   what: str = "condition") -> None:
    """Let the app run until `condition()` is true (workers post their messages)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def open_tags(pilot: Pilot[Any], repositories: int, repository: str,
                    tags: int) -> tuple[ImagesView, VirtualTable]:
    """Go to the Images screen (`repositories` listed) and open `repository` (`tags` rows)."""
    app = pilot.app
    await pilot.press("3")
    view = app.query_one(ImagesView)
    table = app.query_one("#images-table", VirtualTable)
    await wait_for(pilot, lambda: table.total_count == repositories, what="repositories")
    view.open_repository(repository)
    await wait_for(pilot, lambda: view.table_level == "tags" and table.total_count == tags,
                   what=f"the tags of {repository}")
    return view, table


async def settle(pilot: Pilot[Any]) -> None:
    """Let every worker finish and every message it posted be handled (and the work those
    handlers start, in turn): the screen is then final. Not for apps that poll."""
    for _ in range(20):
        # An exclusive worker replaced by a newer one is cancelled: the newer one is waited
        # for on the next round.
        with contextlib.suppress(WorkerCancelled):
            await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if not any(worker.is_running for worker in pilot.app.workers):
            break
    await pilot.wait_for_scheduled_animations()


def make_app(registry: Registry, **kwargs: object) -> EdgeConsoleApp:
    """A console on `registry` with no server (as when attached), fixed clock and downloads."""
    options: dict[str, object] = {"clock": lambda: FIXED_NOW, "poll": False}
    options.update(kwargs)
    return EdgeConsoleApp(registry=registry, **options)  # type: ignore[arg-type]
