"""The Certificates screen's CA export in the terminal on a fresh account: the default folder
(~/Downloads) is made when missing, or the home folder is used; the toast says where the file
went; a file in the way is replaced only after a confirmation. (In a browser the export is a
download: tests/test_web.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from console_helpers import Image, make_app, wait_for
from textual.widgets import Input, Static

from console.app import EdgeConsoleApp
from console.screens.certificates import CertificatesView
from console.widgets.confirm import ConfirmationModal
from registry_core.registry import Registry

SIZE = (100, 30)


def text_of(app: EdgeConsoleApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A new account's home: no Downloads folder, no XDG user-dirs file."""
    home = tmp_path / "home" / "tech"
    home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("XDG_DOWNLOAD_DIR", raising=False)
    return home


async def export_with_default_path(app: EdgeConsoleApp) -> tuple[str, str]:
    """Press `e` on Certificates with the default path: (the toast, the result line)."""
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        view = app.query_one(CertificatesView)
        await wait_for(pilot, lambda: len(view.certificates) == 2, what="certificates")
        await pilot.press("e")
        await wait_for(pilot, lambda: app.query_one(CertificatesView).outcome is not None,
                       what="the export")
        assert "Not exported" not in text_of(app, "#export-result"), text_of(
            app, "#export-result")
        toasts = [n for n in app._notifications if n.title == "CA certificate exported"]
        assert len(toasts) == 1
        return toasts[0].message, text_of(app, "#export-result")


async def test_default_export_makes_the_missing_downloads_folder(
    seeded: tuple[Registry, dict[str, Image]], fresh_home: Path
) -> None:
    registry, _ = seeded
    app = make_app(registry, downloads_dir=None)
    downloads = fresh_home / "Downloads"
    target = downloads / "edge-registry-ca.crt"
    assert not downloads.exists()
    toast, result = await export_with_default_path(app)
    assert target.read_bytes() == registry.datadir.ca_cert.read_bytes()
    assert str(target) in toast and f"made {downloads}" in toast
    assert str(target) in result


async def test_default_export_falls_back_to_home(
    seeded: tuple[Registry, dict[str, Image]], fresh_home: Path
) -> None:
    """A Downloads that cannot be a folder (a file is in the way): the home folder."""
    registry, _ = seeded
    (fresh_home / "Downloads").write_text("not a folder")
    app = make_app(registry, downloads_dir=None)
    toast, _ = await export_with_default_path(app)
    target = fresh_home / "edge-registry-ca.crt"
    assert target.read_bytes() == registry.datadir.ca_cert.read_bytes()
    assert str(target) in toast and f"in {fresh_home}" in toast


async def test_a_file_in_the_way_is_replaced_only_when_the_technician_says_so(
    seeded: tuple[Registry, dict[str, Image]], tmp_path: Path
) -> None:
    """Exporting onto an existing file asks first (the core refuses without force): Cancel
    leaves the file as it was, Overwrite writes the CA certificate."""
    registry, _ = seeded
    target = tmp_path / "ca.crt"
    target.write_text("an older certificate")
    app = make_app(registry, downloads_dir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        view = app.query_one(CertificatesView)
        await wait_for(pilot, lambda: len(view.certificates) == 2, what="certificates")
        app.query_one("#export-path", Input).value = str(target)
        for answer in ("escape", "overwrite"):
            await pilot.press("e")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal),
                           what="the overwrite question")
            assert str(target) in str(app.screen.title_text)  # type: ignore[attr-defined]
            if answer == "escape":
                await pilot.press("escape")
                await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmationModal))
                assert target.read_text() == "an older certificate"
            else:
                await pilot.press("tab", "enter")
                await wait_for(pilot, lambda: target.read_bytes()
                               == registry.datadir.ca_cert.read_bytes(), what="the overwrite")
    toasts = [n for n in app._notifications if n.title == "CA certificate exported"]
    assert len(toasts) == 1
