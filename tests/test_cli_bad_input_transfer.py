"""Bad input to `export`, `import`, `stage` and `sync` (found by a sweep of the CLI): each
gets one readable line and exit 1, and nothing stored is harmed. Real subprocesses."""

from __future__ import annotations

from pathlib import Path

import pytest
from imagebuilder import ImageSpec, write_oci_image
from store_snapshot import take_snapshot
from test_cli_basics import assert_one_line_error, cli

from registry_core import transfer
from registry_core.datadir import DataDir
from registry_core.identity import CONSOLE
from registry_core.registry import Registry


@pytest.fixture
def stored(datadir: DataDir, registry: Registry, tmp_path: Path) -> DataDir:
    """The data dir, holding `app/web:v1`."""
    layout = tmp_path / "layout"
    write_oci_image(layout, ImageSpec(tag="v1"))
    transfer.import_images(registry, layout, who=CONSOLE, repository="app/web")
    return datadir


def test_export_never_overwrites_the_data_dir_even_forced(stored: DataDir,
                                                          tmp_path: Path) -> None:
    before = take_snapshot(stored)
    link = tmp_path / "link"
    link.symlink_to(stored.root)
    for dest in (stored.root, stored.blobs, stored.root.parent, link,
                 stored.root / "out.tar"):
        result = cli(stored.root, "export", "app/web:v1", str(dest), "--force")
        assert_one_line_error(result, str(dest), "data dir")
    assert before.diff(take_snapshot(stored)) == []
    assert (stored.root / "registry.db").exists()
    assert not (stored.root / "out.tar").exists()
    beside = tmp_path / "beside"
    assert cli(stored.root, "export", "app/web:v1", str(beside)).returncode == 0


def test_import_refuses_a_source_in_its_own_work_dir(stored: DataDir) -> None:
    layout = stored.root / "transfer" / "partial" / "mine"
    write_oci_image(layout, ImageSpec(tag="v2"))
    result = cli(stored.root, "import", str(layout), "--repository", "app/web")
    assert_one_line_error(result, str(layout), "work dir")
    assert (layout / "index.json").exists()
