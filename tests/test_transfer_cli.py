"""`edge-console import` and `edge-console export`, run as real subprocesses."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from store_snapshot import take_snapshot
from test_cli_basics import assert_one_line_error, cli, cli_json
from transfer_support import Made, skopeo_digest, skopeo_docker_archive, skopeo_layout

from console.commands.transfer import Bar
from registry_core.datadir import DataDir
from registry_core.registry import Registry
from registry_core.transfer import Progress


@pytest.fixture
def made(skopeo: str, tmp_path: Path) -> Made:
    return skopeo_layout(skopeo, tmp_path / "src")


def test_import_dry_run_then_import_then_export(
    made: Made, datadir: DataDir, registry: Registry, skopeo: str, tmp_path: Path,
) -> None:
    before = take_snapshot(datadir)
    plan = cli_json(datadir.root, "import", str(made.layout), "--repository", "apps/web",
                    "--dry-run")
    assert {(i["repository"], tuple(i["tags"])) for i in plan["images"]} == {
        ("apps/web", ("v1",)), ("apps/web", ("multi",))}
    assert plan["new_blobs"] == plan["blobs"] > 0
    assert before.diff(take_snapshot(datadir)) == []
    text = cli(datadir.root, "import", str(made.layout), "--repository", "apps/web",
               "--dry-run")
    assert "Nothing was stored" in text.stdout and "apps/web:multi" in text.stdout
    done = cli_json(datadir.root, "import", str(made.layout), "--repository", "apps/web")
    assert done["blobs_copied"] == plan["new_blobs"]
    assert registry.get_manifest("apps/web", "multi").digest == made.index.digest
    out = tmp_path / "out.tar"
    exported = cli_json(datadir.root, "export", "apps/web:v1", "apps/web:multi", str(out))
    assert exported["format"] == "oci" and len(exported["images"]) == 2
    assert skopeo_digest(skopeo, f"oci-archive:{out}:multi") == made.index.digest
    refused = cli(datadir.root, "export", "apps/web:v1", str(out))
    assert_one_line_error(refused, str(out), "--force")
    forced = cli(datadir.root, "export", "apps/web:v1", str(out), "--force")
    assert forced.returncode == 0 and "Exported 1 image(s)" in forced.stdout


def test_import_errors_are_one_line(
    made: Made, datadir: DataDir, registry: Registry, skopeo: str, tmp_path: Path,
) -> None:
    archive = skopeo_docker_archive(skopeo, made, tmp_path / "web.tar")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    assert_one_line_error(cli(datadir.root, "import", str(archive)), str(archive),
                          "truncated")
    assert_one_line_error(cli(datadir.root, "import", str(tmp_path / "nothing")),
                          "does not exist")
    assert_one_line_error(cli(datadir.root, "export", "nosuch:tag", str(tmp_path / "x")))
    assert registry.catalog().items == []


class Terminal(io.StringIO):
    """What the bar draws on: a stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_the_progress_bar_shows_on_a_terminal_only() -> None:
    terminal, plain = Terminal(), io.StringIO()
    for stream in (terminal, plain):
        bar = Bar(stream)
        bar(Progress("committing", 3 << 20, 4 << 20, 1, 2, "app:v1"))
        bar.clear()
    assert "[######################--------] 3.0 MiB/4.0 MiB  images 1/2" in terminal.getvalue()
    assert plain.getvalue() == ""
