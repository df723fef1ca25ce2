"""Pilot tests of each screen of the console, on a real data dir."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from console_helpers import Image, make_app, open_tags, push_image, wait_for
from cryptography import x509
from textual.binding import Binding
from textual.command import CommandList
from textual.widgets import Button, Input, Static

from console.app import EdgeConsoleApp
from console.keys import key_label
from console.screens.certificates import CertificatesView
from console.screens.cluster import ClusterView
from console.screens.device import DeviceView
from console.screens.gc import GCView
from console.screens.help import HelpScreen
from console.screens.images import ImagesView
from console.screens.storage import StorageView
from console.screens.sync import SyncView
from console.widgets.confirm import ConfirmationModal
from console.widgets.snippet import Snippet
from console.widgets.status import StatusHeader
from console.widgets.virtual_table import VirtualTable
from registry_core.certs import ca_certificate_info
from registry_core.datadir import DataDir
from registry_core.device import device_info, hosts_line
from registry_core.registry import Registry
from registry_core.service import RegistryService

SIZE = (100, 30)


def text_of(app: EdgeConsoleApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


async def test_device_screen_shows_endpoint_and_copies(
    seeded: tuple[Registry, dict[str, Image]], datadir: DataDir
) -> None:
    registry, _ = seeded
    info = device_info(datadir)
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(DeviceView)
        await wait_for(pilot, lambda: view.info is not None and app.focused is not None,
                       what="device info")
        facts = text_of(app, "#device-facts")
        # Rich grids render lazily; check the data behind them and the visible snippets.
        assert view.info is not None and view.info.endpoint == info.endpoint
        assert info.password not in facts
        await pilot.press("v")
        assert view.revealed
        await pilot.press("h")
        assert app.clipboard == hosts_line(info)
        assert any("Copied hosts line" in n.title for n in app._notifications)
        await pilot.press("i")
        assert app.clipboard == f"docker login {info.endpoint} -u {info.username} --password-stdin"
        await pilot.press("p")
        assert app.clipboard == info.password
        # Windows first: PowerShell; then Linux: sudo tee -a /etc/hosts.
        assert "Add-Content" in app.query_one("#snippet-hosts-add").text  # type: ignore[attr-defined]
        await pilot.press("o")
        assert view.client_os == "linux"
        assert "sudo tee -a /etc/hosts" in app.query_one("#snippet-hosts-add").text  # type: ignore[attr-defined]
        texts = [s.text for s in app.query(".setup-snippet")]  # type: ignore[attr-defined]
        assert any(f"/etc/docker/certs.d/{info.endpoint}/ca.crt" in t for t in texts)
        assert any(f"/etc/containers/certs.d/{info.endpoint}" in t for t in texts)
        assert any("hosts.toml" in t for t in texts)
        assert any("Cert:\\LocalMachine\\Root" in t for t in texts)
        # The focused snippet copies with enter.
        app.query_one("#snippet-hosts").focus()
        await pilot.press("enter")
        assert app.clipboard == hosts_line(info)


async def test_certificates_export_pem_der_and_errors(
    seeded: tuple[Registry, dict[str, Image]], datadir: DataDir, tmp_path: Path
) -> None:
    registry, _ = seeded
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    app = make_app(registry, downloads_dir=downloads)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        view = app.query_one(CertificatesView)
        await wait_for(pilot, lambda: len(view.certificates) == 2, what="certificates")
        assert [c.role for c in view.certificates] == ["CA", "Server"]
        path_input = app.query_one("#export-path", Input)
        assert path_input.value == str(downloads / "edge-registry-ca.crt")
        await pilot.press("e")
        target = downloads / "edge-registry-ca.crt"
        await wait_for(pilot, target.exists, what="PEM export")
        assert target.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        fingerprint = ca_certificate_info(datadir).sha256_fingerprint
        await wait_for(pilot, lambda: fingerprint in text_of(app, "#export-result"))
        # DER for Windows: the default path follows the format.
        await pilot.press("f")
        assert path_input.value == str(downloads / "edge-registry-ca.cer")
        await pilot.press("e")
        der = downloads / "edge-registry-ca.cer"
        await wait_for(pilot, der.exists, what="DER export")
        x509.load_der_x509_certificate(der.read_bytes())
        # A missing directory: a clear error, nothing written.
        missing = tmp_path / "nowhere" / "ca.cer"
        path_input.value = str(missing)
        await pilot.press("e")
        await wait_for(pilot, lambda: "Not exported" in text_of(app, "#export-result"))
        assert "does not exist" in text_of(app, "#export-result")
        assert not missing.parent.exists()
        assert any(n.severity == "error" for n in app._notifications)


async def test_images_drill_down_filter_sort_and_back(
    seeded: tuple[Registry, dict[str, Image]],
) -> None:
    registry, images = seeded
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        view = app.query_one(ImagesView)
        table = app.query_one("#images-table", VirtualTable)
        await wait_for(pilot, lambda: table.total_count == 3, what="repositories")
        assert [r[0] for r in table.view_rows()] == ["library/alpine", "nginx", "team/app"]
        assert table.has_focus
        # Filter, then drill into nginx.
        await pilot.press("slash", "n", "g", "i")
        assert table.row_count == 1
        await pilot.press("enter")  # keeps the filter, focuses the table
        assert table.has_focus
        await pilot.press("enter")
        await wait_for(pilot, lambda: view.table_level == "tags", what="tags")
        tags = sorted(str(r[1]) for r in table.view_rows())
        assert tags == ["1.17.5-alpine", "2.0", "latest"]
        # Sort by tag, reversed.
        table.sort_by("tag", reverse=True)
        assert [r[1] for r in table.view_rows()] == ["latest", "2.0", "1.17.5-alpine"]
        # Open the manifest of 2.0.
        table.move_cursor(1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: view.level == "detail", what="detail")
        assert view.detail is not None
        assert view.detail.digest == images["nginx:2.0"].digest
        assert set(view.detail.tags) == {"2.0", "latest"}
        assert len(view.detail.layers) == 2
        await pilot.press("escape")
        assert view.level == "tags"
        await pilot.press("escape")
        await wait_for(pilot, lambda: view.table_level == "repos", what="back to repos")
        # All tags of every repository (untagged manifests show under their repository).
        await pilot.press("a")
        await wait_for(pilot, lambda: view.table_level == "all", what="all tags")
        assert table.total_count == 5


async def test_untag_keeps_the_manifest(seeded: tuple[Registry, dict[str, Image]]) -> None:
    registry, images = seeded
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        _view, table = await open_tags(pilot, 3, "nginx", 3)
        await pilot.press("slash", *"latest", "enter")
        assert table.row_count == 1
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal))
        assert app.focused is not None and app.focused.id == "confirm-cancel"
        await pilot.press("tab", "enter")
        await wait_for(pilot, lambda: table.total_count == 2, what="reload after untag")
        assert registry.get_manifest("nginx", images["nginx:2.0"].digest).digest
        assert registry.get_manifest("nginx", "2.0")


async def test_delete_cancel_changes_nothing(seeded: tuple[Registry, dict[str, Image]]) -> None:
    registry, images = seeded
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await open_tags(pilot, 3, "library/alpine", 1)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal))
        modal = app.screen
        assert isinstance(modal, ConfirmationModal)
        assert images["alpine:3.20"].digest in modal.body
        assert "3.20" in modal.body
        await pilot.press("enter")  # Cancel has the focus
        assert not isinstance(app.screen, ConfirmationModal)
        assert registry.get_manifest("library/alpine", "3.20")


async def test_storage_screen(seeded: tuple[Registry, dict[str, Image]]) -> None:
    registry, _ = seeded
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        view = app.query_one(StorageView)
        await wait_for(pilot, lambda: view.report is not None, what="usage report")
        assert view.report is not None
        assert {r.name for r in view.report.repositories} == {
            "nginx", "library/alpine", "team/app"
        }
        assert view.report.untagged_manifests == 1
        await pilot.press("r")


async def test_gc_dry_run_and_history(seeded: tuple[Registry, dict[str, Image]]) -> None:
    registry, _ = seeded
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        view = app.query_one(GCView)
        assert app.focused is app.query_one("#gc-run", Button)
        await pilot.press("n")
        await wait_for(pilot, lambda: app.collector.history(1) != []
                       and not app.collector.history(1)[0].running, what="dry run")
        await wait_for(pilot, lambda: view.busy == "idle")
        record = app.collector.history(1)[0]
        assert record.dry_run and record.status == "succeeded"
        await wait_for(pilot, lambda: app.query_one("#gc-history").row_count == 1)  # type: ignore[attr-defined]
        assert "Run #" in text_of(app, "#gc-live")


async def test_busy_port_keeps_console_usable(
    seeded: tuple[Registry, dict[str, Image]], datadir: DataDir
) -> None:
    registry, _ = seeded
    registry.close()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    service = RegistryService(datadir)
    try:
        app = EdgeConsoleApp(service, listen=f"127.0.0.1:{port}", poll=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.server_status.mode == "down", what="server down")
            header = app.query_one(StatusHeader)
            assert "DOWN" in str(header.render())
            assert any(n.severity == "error" and str(port) in n.message
                       for n in app._notifications)
            await pilot.press("3")
            table = app.query_one("#images-table", VirtualTable)
            await wait_for(pilot, lambda: table.total_count == 3, what="browsing still works")
    finally:
        service.close()
        blocker.close()


async def test_attached_mode_says_so(seeded: tuple[Registry, dict[str, Image]]) -> None:
    registry, _ = seeded
    app = make_app(registry, attached={"pid": 4242, "listen": "0.0.0.0:31001", "tls": True})
    async with app.run_test(size=SIZE) as pilot:
        header = str(app.query_one(StatusHeader).render())
        assert "attached (pid 4242) 0.0.0.0:31001" in header
        await pilot.press("q")


async def test_palette_reaches_every_action(seeded: tuple[Registry, dict[str, Image]],
                                            datadir: DataDir) -> None:
    registry, _ = seeded
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(DeviceView)
        await wait_for(pilot, lambda: view.info is not None)
        titles = [c.title for c in app.all_commands()]
        for expected in ("Device: Copy the hosts line", "Device: Copy the docker login line",
                         "Certificates: Export the CA certificate to the path in the field "
                         "(edit it: tab)",
                         "Images: Untag: remove only the highlighted tag (the manifest stays)",
                         "Images: Sort by the next column", "Garbage collection: Dry run: count "
                         "what a run would delete and free, delete nothing",
                         "Reload this screen", "Go to Images", "Light or dark theme",
                         "Client OS: Linux"):
            assert expected in titles
        # Every described key of every pane is in the palette, once.
        assert len(titles) == len(set(titles))
        await pilot.press("ctrl+p")
        await pilot.press(*"copy the hosts line")
        await wait_for(pilot, lambda: "Copy the hosts line" in str(
            app.screen.query_one(CommandList).get_option_at_index(0).prompt
        ), what="the palette's first match")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.clipboard == hosts_line(device_info(datadir)),
                       what="palette copy")


async def test_help_theme_and_number_keys(seeded: tuple[Registry, dict[str, Image]]) -> None:
    registry, _ = seeded
    app = make_app(registry)
    async with app.run_test(size=(80, 24)) as pilot:
        for key, tab in (("2", "certificates"), ("3", "images"), ("4", "storage"),
                         ("5", "gc"), ("6", "cluster"), ("7", "sync"), ("8", "access"),
                         ("1", "device")):
            await pilot.press(key)
            assert app.active_tab() == tab
        await pilot.press("question_mark")
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        dark = app.current_theme.dark
        await pilot.press("ctrl+t")
        assert app.current_theme.dark != dark


def test_one_meaning_per_key() -> None:
    """A key does the same thing on every screen (enter activates the focused widget)."""
    meanings: dict[str, set[str]] = {}
    for owner in (EdgeConsoleApp, DeviceView, CertificatesView, ImagesView, StorageView, GCView,
                  ClusterView, SyncView, VirtualTable, Snippet):
        for binding in Binding.make_bindings(owner.BINDINGS):
            meanings.setdefault(binding.key, set()).add(binding.action)
    shared = {key: actions for key, actions in meanings.items() if len(actions) > 1}
    assert shared == {"enter": {"select", "copy"}}
    assert meanings["r"] == {"reload"} and meanings["v"] == {"reveal"}
    assert meanings["g"] == {"run"}
    assert meanings["x"] == {"cancel"}


async def test_help_lists_the_keys_of_the_screen_from_its_bindings(
    seeded: tuple[Registry, dict[str, Image]],
) -> None:
    registry, _ = seeded
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5", "question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        screen = app.screen
        assert isinstance(screen, HelpScreen)
        keys = {(line.keys, line.text) for section in screen.sections for line in section.keys}
        for owner in (EdgeConsoleApp, GCView):
            for binding in owner.BINDINGS:
                assert isinstance(binding, Binding)
                if binding.tooltip:
                    assert (key_label(binding), binding.tooltip) in keys
                    assert binding.tooltip not in GCView.help_notes
        assert ("1 2 3 4 5 6 7 8", "go to: Device, Certificates, Images, Storage, "
                "Garbage collection, Cluster, Sync, Access") in keys
        assert ("s", "sort by the next column") not in keys  # no table on this screen
        await pilot.press("escape", "3", "question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        screen = app.screen
        assert isinstance(screen, HelpScreen)
        assert ("s", "sort by the next column") in {
            (line.keys, line.text) for section in screen.sections for line in section.keys
        }


async def test_a_push_by_another_client_shows_up(seeded: tuple[Registry, dict[str, Image]]) -> None:
    registry, _ = seeded
    app = make_app(registry, poll=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        table = app.query_one("#images-table", VirtualTable)
        await wait_for(pilot, lambda: table.total_count == 3, what="repositories")
        await asyncio.to_thread(push_image, registry, "fresh/one", ["v1"], [b"fresh layer"])
        await wait_for(pilot, lambda: table.total_count == 4, what="the poller to see the push")
