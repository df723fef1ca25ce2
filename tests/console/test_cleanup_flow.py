"""The whole cleanup flow, as a technician does it, against the real in-process server.

Open Images, find a tag, delete its manifest by digest, confirm, run a GC, see the bytes come
back on Storage, and check over HTTPS that the manifest is gone.
"""

from __future__ import annotations

import asyncio
import ssl

import httpx
from console_helpers import Image, seed, wait_for
from textual.widgets import Input

from console.app import EdgeConsoleApp
from console.screens.gc import GCView
from console.screens.images import ImagesView
from console.screens.storage import StorageView
from console.widgets.confirm import ConfirmationModal
from console.widgets.virtual_table import VirtualTable
from registry_core.access.credentials import read_credentials
from registry_core.datadir import DataDir
from registry_core.service import RegistryService

ACCEPT = "application/vnd.oci.image.manifest.v1+json"


def head_manifest(datadir: DataDir, address: str, name: str, reference: str) -> int:
    username, password = read_credentials(datadir)
    with httpx.Client(
        base_url=f"https://{address}",
        verify=ssl.create_default_context(cafile=str(datadir.ca_cert)),
        auth=(username, password),
    ) as client:
        response = client.head(f"/v2/{name}/manifests/{reference}", headers={"Accept": ACCEPT})
        return response.status_code


async def test_find_delete_collect_and_see_space_come_back(datadir: DataDir) -> None:
    service = RegistryService(datadir)
    images: dict[str, Image] = seed(service.registry)
    target = images["nginx:2.0"]
    address = f"127.0.0.1:{service.config.port}"
    app = EdgeConsoleApp(service, listen=address)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: app.server_status.mode == "serving", what="server")
            assert await asyncio.to_thread(
                head_manifest, datadir, address, "nginx", target.digest
            ) == 200

            # Storage before.
            await pilot.press("4")
            storage = app.query_one(StorageView)
            await wait_for(pilot, lambda: storage.report is not None, what="usage")
            assert storage.report is not None
            used_before = storage.report.used_bytes

            # Images: find the tag 2.0 of nginx.
            await pilot.press("3")
            images_view = app.query_one(ImagesView)
            table = app.query_one("#images-table", VirtualTable)
            await wait_for(pilot, lambda: table.total_count == 3, what="repositories")
            await pilot.press("slash", *"nginx", "enter", "enter")
            await wait_for(pilot, lambda: images_view.table_level == "tags", what="tags")
            await pilot.press("slash", *"2.0", "enter")
            assert table.row_count == 1 and table.cursor_row is not None
            assert table.cursor_row[2] == target.digest

            # Delete by digest: the modal names the digest, both tags and the bytes freed.
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal),
                           what="confirmation")
            modal = app.screen
            assert isinstance(modal, ConfirmationModal)
            assert target.digest in modal.body
            assert "2.0" in modal.body and "latest" in modal.body
            assert "will then free" in modal.body
            assert app.focused is not None and app.focused.id == "confirm-cancel"
            await pilot.press("tab", "enter")  # to Delete, press it
            await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmationModal))
            await wait_for(
                pilot,
                lambda: all(row[2] != target.digest for row in table.view_rows())
                and images_view.table_level == "tags",
                what="the list refreshed without the manifest",
            )
            assert any(n.title == "Deleted" for n in app._notifications)

            # Gone over HTTP already: the manifest and both its tags.
            assert await asyncio.to_thread(
                head_manifest, datadir, address, "nginx", target.digest
            ) == 404
            assert await asyncio.to_thread(head_manifest, datadir, address, "nginx", "latest") \
                == 404

            # Run a GC from the GC screen and watch it finish.
            await pilot.press("5")
            gc_view = app.query_one(GCView)
            app.query_one("#gc-grace", Input).value = "0"
            await wait_for(pilot, lambda: app.focused is not None
                           and app.focused.id == "gc-run", what="GC screen focus")
            await pilot.press("g")  # a dry run first, then the confirmation
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal),
                           what="GC confirmation")
            assert app.focused is not None and app.focused.id == "confirm-cancel"
            await pilot.press("tab", "enter")
            await wait_for(pilot, lambda: gc_view.busy == "idle", what="GC run", timeout=30)
            record = app.collector.history(1)[0]
            assert record.status == "succeeded" and not record.dry_run
            unique = {d: s for d, s in target.blobs.items()
                      if all(d not in other.blobs for k, other in images.items()
                             if k != "nginx:2.0")}
            assert record.bytes_freed >= sum(unique.values())
            assert "Run #" in str(app.query_one("#gc-live").render())

            # Storage: the bytes came back.
            await pilot.press("4")
            await wait_for(
                pilot,
                lambda: storage.report is not None
                and storage.report.used_bytes <= used_before - record.bytes_freed,
                what="storage shows the freed bytes",
            )
            assert await asyncio.to_thread(
                head_manifest, datadir, address, "nginx", target.digest
            ) == 404
            # The other images are untouched.
            assert await asyncio.to_thread(
                head_manifest, datadir, address, "nginx", "1.17.5-alpine"
            ) == 200
    finally:
        service.close()
