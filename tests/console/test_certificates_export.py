"""The Certificates screen's CA export in the terminal on a fresh account: the default folder
(~/Downloads) is made when missing, or the home folder is used; the toast says where the file
went. (In a browser the export is a download: tests/test_web.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from console_helpers import Image, make_app, wait_for
from textual.widgets import Static

from console.app import EdgeConsoleApp
from console.screens.certificates import CertificatesView
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
