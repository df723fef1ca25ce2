"""Offline export (registry_core.transfer): OCI layouts (directory and .tar) and docker-archives
read back by skopeo with the digests preserved; overwrite, free space and cancel."""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

import pytest
from imagebuilder import write_random_image
from support import blob_files, free_port, oci_layout_digest, run_skopeo
from test_e2e_diskfull import mount_tmpfs
from transfer_support import Made, add_referrer, index_entries, skopeo_digest, skopeo_layout

from registry_core import transfer
from registry_core.datadir import DataDir
from registry_core.enablement import enable
from registry_core.identity import CONSOLE
from registry_core.registry import Registry


@pytest.fixture
def made(skopeo: str, tmp_path: Path, registry: Registry) -> Made:
    """The skopeo-made layout, imported as `layout:v1` and `layout:multi`."""
    made = skopeo_layout(skopeo, tmp_path / "src")
    transfer.import_images(registry, made.layout, who=CONSOLE)
    return made


def test_an_oci_layout_export_reads_back_in_skopeo_with_identical_digests(
    made: Made, registry: Registry, skopeo: str, tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    result = transfer.export_images(registry, ["layout"], out)
    assert {i["reference"] for i in result.images} == {"layout:v1", "layout:multi"}
    assert skopeo_digest(skopeo, f"oci:{out}:v1") == made.single.digest
    assert skopeo_digest(skopeo, f"oci:{out}:multi") == made.index.digest
    raw = run_skopeo(skopeo, "inspect", "--raw", f"oci:{out}:multi").encode()
    assert raw == made.index.body  # the manifest bytes as stored
    back = tmp_path / "back"
    run_skopeo(skopeo, "copy", "--all", f"oci:{out}:multi", f"oci:{back}:multi")
    assert oci_layout_digest(back, "multi") == made.index.digest
    # Every blob of the source layout, each checked against its name, and nothing else.
    assert blob_files(out / "blobs" / "sha256") == blob_files(made.layout / "blobs" / "sha256")


def test_an_oci_tar_export_reads_back_in_skopeo(
    made: Made, registry: Registry, skopeo: str, tmp_path: Path,
) -> None:
    out = tmp_path / "one.tar"
    transfer.export_images(registry, ["layout:v1", f"layout@{made.index.digest}"], out)
    assert skopeo_digest(skopeo, f"oci-archive:{out}:v1") == made.single.digest
    fresh = other_registry(tmp_path)
    try:
        result = transfer.import_images(fresh, out, who=CONSOLE)
        assert {(i.repository, i.tags, i.digest) for i in result.images} == {
            ("layout", ("v1",), str(made.single.digest)),
            ("layout", (), str(made.index.digest)),  # exported by digest: untagged
        }
    finally:
        fresh.close()


def other_registry(tmp_path: Path) -> Registry:
    datadir = DataDir(tmp_path / "other")
    enable(datadir, device_name="other", dns_domain="test", node_ip="127.0.0.1",
           port=free_port())
    return Registry(datadir)


def test_a_docker_archive_export_reads_in_skopeo_and_imports_with_its_digests(
    made: Made, registry: Registry, skopeo: str, tmp_path: Path,
) -> None:
    out = tmp_path / "images.tar"
    transfer.export_images(registry, ["layout:v1", "layout:multi"], out,
                           format=transfer.DOCKER_ARCHIVE)
    pulled = tmp_path / "pulled"
    run_skopeo(skopeo, "copy", f"docker-archive:{out}:layout:v1", f"dir:{pulled}")
    manifest = json.loads((pulled / "manifest.json").read_bytes())
    assert manifest["config"]["digest"] == str(made.single.manifests[0].config.digest)
    assert len(manifest["layers"]) == len(made.single.manifests[0].layers)
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]
    native = next(m for m in made.index.manifests
                  if (m.platform or "").startswith(f"linux/{arch}"))
    config = json.loads(run_skopeo(skopeo, "inspect", "--config",
                                   f"docker-archive:{out}:layout:multi"))
    assert config["architecture"] == arch  # of the index, this machine's platform
    fresh = other_registry(tmp_path)
    try:
        result = transfer.import_images(fresh, out, who=CONSOLE)
        assert {(i.tags, i.digest) for i in result.images} == {
            (("v1",), str(made.single.digest)), (("multi",), str(native.digest))}
    finally:
        fresh.close()


def test_an_image_exports_with_its_referrers(skopeo: str, registry: Registry,
                                              tmp_path: Path) -> None:
    made = skopeo_layout(skopeo, tmp_path / "src")
    referrer = add_referrer(made.layout, made.single)
    transfer.import_images(registry, made.layout, who=CONSOLE)
    out = tmp_path / "out"
    transfer.export_images(registry, ["layout:v1"], out)
    listed = [e for e in index_entries(out) if e["digest"] == str(referrer)]
    assert listed and "annotations" not in listed[0]  # listed, unnamed
    assert skopeo_digest(skopeo, f"oci:{out}:v1") == made.single.digest
    fresh = other_registry(tmp_path)
    try:
        transfer.import_images(fresh, out, who=CONSOLE)
        assert [r.digest for r in fresh.referrers("layout", made.single.digest)] == [
            str(referrer)]
    finally:
        fresh.close()


@pytest.mark.parametrize("name", ["dir", "file.tar"])
def test_an_existing_destination_is_kept_unless_forced(
    made: Made, registry: Registry, tmp_path: Path, name: str,
) -> None:
    out = tmp_path / name
    transfer.export_images(registry, ["layout:v1"], out)
    index = out / "index.json" if out.is_dir() else out
    before = index.read_bytes()
    with pytest.raises(transfer.DestinationExists, match="--force"):
        transfer.export_images(registry, ["layout:multi"], out)
    assert index.read_bytes() == before
    transfer.export_images(registry, ["layout:multi"], out, force=True)
    assert index.read_bytes() != before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_new_folder_is_made_and_a_compressed_name_refused(
    made: Made, registry: Registry, skopeo: str, tmp_path: Path,
) -> None:
    plan = transfer.plan_export(registry, ["layout"])
    assert len(plan.images) == 2 and plan.bytes > 0
    out = tmp_path / "usb" / "new" / "images.tar"
    result = transfer.export_images(registry, ["layout"], out)
    assert result.bytes == plan.bytes
    assert skopeo_digest(skopeo, f"oci-archive:{out}:multi") == made.index.digest
    with pytest.raises(transfer.TransferError, match=r"name it \.tar"):
        transfer.export_images(registry, ["layout"], tmp_path / "images.tar.gz")
    assert not (tmp_path / "images.tar.gz").exists()


def test_an_empty_directory_is_a_fine_destination(
    made: Made, registry: Registry, skopeo: str, tmp_path: Path,
) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    transfer.export_images(registry, ["layout:v1"], out)
    assert skopeo_digest(skopeo, f"oci:{out}:v1") == made.single.digest


def test_a_cancelled_export_leaves_nothing(made: Made, registry: Registry,
                                           tmp_path: Path) -> None:
    seen: list[transfer.Progress] = []
    exports = tmp_path / "exports"
    exports.mkdir()
    with pytest.raises(transfer.TransferCancelled):
        transfer.export_images(registry, ["layout"], exports / "out.tar",
                               on_progress=seen.append, should_stop=lambda: len(seen) > 2)
    assert list(exports.iterdir()) == []


def test_an_export_larger_than_the_free_space_is_refused_first(
    registry: Registry, tmp_path: Path,
) -> None:
    """A real small volume (a tmpfs: root only, like the disk-full tests)."""
    big = write_random_image(tmp_path / "big", 41 << 20, tag="big")
    transfer.import_images(registry, big.path, who=CONSOLE)
    volume = tmp_path / "small"  # mount_tmpfs's 40 MiB volume
    mount_tmpfs(volume)
    try:
        with pytest.raises(transfer.NotEnoughRoom) as refused:
            transfer.export_images(registry, ["big:big"], volume / "out")
        assert str(volume) in str(refused.value) and "needs" in str(refused.value)
        assert list(volume.iterdir()) == []  # refused before writing anything
    finally:
        subprocess.run(["umount", str(volume)], check=False)
