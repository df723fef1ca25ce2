"""Bad input to `export`, `import`, `stage` and `sync` (found by a sweep of the CLI): each
gets one readable line and exit 1, and nothing stored is harmed. Real subprocesses."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from imagebuilder import ImageSpec, write_oci_image, write_oci_index
from store_snapshot import take_snapshot
from test_cli_basics import ROOT, assert_one_line_error, cli

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


def cli_stdin(data: Path, stdin: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    """`cli` with `stdin` piped in."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("EDGE_CONSOLE_DATA", None)
    done = subprocess.run([sys.executable, "-m", "console", *args, "--data-dir", str(data)],
                          input=stdin, capture_output=True, env=env, cwd=ROOT, timeout=60)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(),
                                       done.stderr.decode())


def test_stage_release_takes_a_whole_known_stage_and_nothing_else(
    stored: DataDir, registry: Registry, tmp_path: Path,
) -> None:
    with registry.store.exclusive():
        registry.store.stages.add("default", "app/web", "v1")
        registry.store.stages.add("default", "app/db", "v2")
    listing = tmp_path / "list.txt"
    listing.write_text("app/web:v1\n")
    assert_one_line_error(cli(stored.root, "stage", "--release", "app/web:v1"),
                          "--release", "whole stage")
    assert_one_line_error(cli(stored.root, "stage", "--release", "--file", str(listing)),
                          "--release", "whole stage")
    for mode in ("--check", "--release"):
        assert_one_line_error(cli(stored.root, "stage", mode, "--expires", "P1D"),
                              "--expires", mode)
    assert_one_line_error(cli(stored.root, "stage", "--release", "--stage", "nope"),
                          "no stage named 'nope'")
    assert_one_line_error(cli(stored.root, "stage", "--check", "--stage", "nope"),
                          "stage nope lists no images", "nothing to check")
    for mode in ("--release", "--check"):
        assert_one_line_error(cli(stored.root, "stage", mode, "--stage", ""),
                              "--stage is empty")
    with registry.store.snapshot():
        assert len(registry.store.stages.items("default")) == 2  # nothing released
    released = cli(stored.root, "stage", "--release")
    assert released.returncode == 0 and "Released 2 images" in released.stdout
    again = cli(stored.root, "stage", "--release")
    assert again.returncode == 0 and "released already" in again.stdout


def test_a_stage_list_that_is_not_utf8_is_named_in_one_line(stored: DataDir,
                                                            tmp_path: Path) -> None:
    binary = tmp_path / "list.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    wide = tmp_path / "list16.txt"
    wide.write_bytes("app/web:v1\n".encode("utf-16"))
    before = take_snapshot(stored)
    assert_one_line_error(cli(stored.root, "stage", "--file", str(binary)),
                          str(binary), "not UTF-8")
    assert_one_line_error(cli(stored.root, "stage", "--check", "--file", str(wide)),
                          str(wide), "not UTF-8")
    assert_one_line_error(cli_stdin(stored.root, b"\xff\xfe\x00a", "stage", "--file", "-"),
                          "standard input", "not UTF-8")
    assert before.diff(take_snapshot(stored)) == []


PASTED = ("ConnectedRegistryName=edge01;SyncTokenName=sync-token;"
          "SyncTokenPassword=NotShown42pw;ParentGatewayEndpoint=parent.example:8443;"
          "ParentEndpointProtocol=https")


def test_a_connection_string_pasted_as_an_argument_is_never_echoed(datadir: DataDir) -> None:
    for option in ("--connection-string-file", "--parent-ca", "--repository",
                   "--tag-filter", "--schedule", "--window"):
        result = cli(datadir.root, "sync", "configure", option, PASTED)
        assert_one_line_error(result, option, "looks like the connection string itself",
                              "standard input")
        assert "NotShown42pw" not in result.stderr
    wrong_mode = cli(datadir.root, "sync", "configure", "--mode", PASTED)
    assert wrong_mode.returncode == 2 and "ReadOnly" in wrong_mode.stderr
    assert "NotShown42pw" not in wrong_mode.stderr
    assert_one_line_error(cli(datadir.root, "sync", "configure", "--connection-string-file",
                              ""), "--connection-string-file is empty")
    assert not (datadir.root / "sync" / "connection").exists()


def test_sync_status_of_no_data_dir_says_so_like_every_command(tmp_path: Path) -> None:
    missing = tmp_path / "nothing"
    assert_one_line_error(cli(missing, "sync", "status"), str(missing), "not enabled")
    assert not missing.exists()
    a_file = tmp_path / "a-file"
    a_file.write_text("not a data dir\n")
    assert_one_line_error(cli(a_file, "sync", "status"), str(a_file),
                          "a file, not a data directory")


def layout_with_blobs_at_the_end(tmp_path: Path) -> tuple[Path, Path]:
    """An OCI layout (app:v1) and a tar of it written with index.json and oci-layout last."""
    layout = tmp_path / "app"
    write_oci_image(layout, ImageSpec(tag="v1"))
    archive = tmp_path / "app.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted((layout / "blobs").rglob("*")):
            tar.add(path, str(path.relative_to(layout)), recursive=False)
        tar.add(layout / "oci-layout", "oci-layout")
        tar.add(layout / "index.json", "index.json")
    return layout, archive


def test_a_damaged_layout_is_named_in_one_line_and_nothing_is_stored(
    stored: DataDir, tmp_path: Path,
) -> None:
    layout, _ = layout_with_blobs_at_the_end(tmp_path)
    before = take_snapshot(stored)
    index = layout / "index.json"
    good = index.read_text()
    entry = json.loads(good)["manifests"][0]

    def with_size(size: object) -> None:
        index.write_text(json.dumps({**json.loads(good),
                                     "manifests": [{**entry, "size": size}]}))

    for size in ("big", -1, True, 1.5):
        with_size(size)
        assert_one_line_error(cli(stored.root, "import", str(layout)), "index.json entry 0",
                              entry["digest"], "not a byte count")
    with_size(entry["size"] + 1)
    assert_one_line_error(cli(stored.root, "import", str(layout)), "index.json entry 0",
                          "damaged layout")
    index.write_text("[" * 100_000 + "]" * 100_000)
    assert_one_line_error(cli(stored.root, "import", str(layout)), "index.json",
                          "damaged")
    index.write_text(good)
    layer = json.loads((layout / "blobs" / "sha256" / entry["digest"].split(":")[1])
                       .read_text())["layers"][0]["digest"].split(":")[1]
    blob = layout / "blobs" / "sha256" / layer
    secret = tmp_path / "elsewhere"
    blob.rename(secret)
    blob.symlink_to(secret)
    assert_one_line_error(cli(stored.root, "import", str(layout)), layer,
                          "symbolic link leading out of the layout")
    blob.unlink()
    blob.mkdir()
    assert_one_line_error(cli(stored.root, "import", str(layout)), layer,
                          "a directory, not a file")
    assert before.diff(take_snapshot(stored)) == []


def test_a_pipe_is_refused_before_it_is_opened(stored: DataDir, tmp_path: Path) -> None:
    fifo = tmp_path / "web.tar"
    os.mkfifo(fifo)
    for extra in ((), ("--dry-run",)):
        assert_one_line_error(cli(stored.root, "import", str(fifo), *extra), str(fifo),
                              "named pipe")


def test_a_plain_tar_cut_between_or_inside_headers_is_named_truncated(
    stored: DataDir, tmp_path: Path,
) -> None:
    _, archive = layout_with_blobs_at_the_end(tmp_path)
    with tarfile.open(archive) as tar:
        last = tar.getmember("oci-layout")
    whole = archive.read_bytes()
    before = take_snapshot(stored)
    for cut in (last.offset, last.offset + 100):  # at a header, inside one
        archive.write_bytes(whole[:cut])
        assert_one_line_error(cli(stored.root, "import", str(archive)), str(archive),
                              "truncated archive")
    archive.write_bytes(whole[:last.offset] + b"\x01" * 1024)
    assert_one_line_error(cli(stored.root, "import", str(archive)), str(archive),
                          "damaged archive")
    assert before.diff(take_snapshot(stored)) == []
    archive.write_bytes(whole)
    assert cli(stored.root, "import", str(archive), "--dry-run").returncode == 0


def test_export_names_the_reference_it_cannot_export(stored: DataDir, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for ref in ("Bad Name:tag", "app/web:BAD TAG"):
        result = cli(stored.root, "export", ref, str(out))
        assert_one_line_error(result, f"cannot export {ref!r}", "not a valid image reference")
        assert "store" not in result.stderr
    for ref in ("nope:v1", "app/web:v9", f"app/web@sha256:{'0' * 64}"):
        assert_one_line_error(cli(stored.root, "export", ref, str(out)),
                              f"cannot export {ref}", "no such image here")
    assert not out.exists()


def test_an_index_whose_child_size_is_wrong_is_a_damaged_layout(
    stored: DataDir, tmp_path: Path,
) -> None:
    layout = tmp_path / "multi"
    built = write_oci_index(layout)
    doc = json.loads(built.body)
    child = doc["manifests"][0]
    child["size"] += 1
    body = json.dumps(doc).encode()
    digest = hashlib.sha256(body).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(body)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"] = [{**index["manifests"][0], "digest": f"sha256:{digest}",
                           "size": len(body)}]
    (layout / "index.json").write_text(json.dumps(index))
    before = take_snapshot(stored)
    assert_one_line_error(cli(stored.root, "import", str(layout), "--repository", "app/m"),
                          child["digest"], "damaged layout")
    assert before.diff(take_snapshot(stored)) == []


def test_a_bad_repository_option_is_refused_even_in_a_dry_run(stored: DataDir,
                                                               tmp_path: Path) -> None:
    layout, _ = layout_with_blobs_at_the_end(tmp_path)
    before = take_snapshot(stored)
    for extra in ((), ("--dry-run",)):
        assert_one_line_error(cli(stored.root, "import", str(layout), "--repository", "",
                                  *extra), "--repository is empty")
        assert_one_line_error(cli(stored.root, "import", str(layout), "--repository",
                                  "Bad Name", *extra), "--repository", "'Bad Name'")
    assert before.diff(take_snapshot(stored)) == []


def test_an_empty_path_is_not_taken_for_the_current_directory(stored: DataDir) -> None:
    before = take_snapshot(stored)
    for args in (("export", "app/web:v1", ""), ("import", "")):
        result = cli(stored.root, *args)
        assert result.returncode == 2 and result.stdout == ""
        assert "PATH: is empty" in result.stderr.splitlines()[-1]  # argparse's error line
    assert before.diff(take_snapshot(stored)) == []
