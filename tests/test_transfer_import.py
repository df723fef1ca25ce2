"""Offline import (registry_core.transfer): OCI layouts and docker-archives written by skopeo,
imported with their digests and pulled back over TLS; bad sources refused with nothing stored."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from imagebuilder import ImageSpec, write_oci_image, write_random_image
from store_snapshot import take_snapshot
from support import (
    LiveServer,
    free_port,
    oci_layout_digest,
    remote,
    run_skopeo,
    skopeo_auth,
)
from test_e2e_diskfull import mount_tmpfs
from transfer_support import (
    Made,
    add_referrer,
    blob_path,
    gzipped,
    index_entries,
    skopeo_digest,
    skopeo_docker_archive,
    skopeo_layout,
    write_index_entries,
)

from registry_core import transfer
from registry_core.datadir import DataDir
from registry_core.enablement import enable
from registry_core.errors import InsufficientSpace
from registry_core.identity import CONSOLE
from registry_core.reference import Digest, digest_bytes
from registry_core.registry import Registry

pytestmark = [pytest.mark.socket]


@pytest.fixture
def made(skopeo: str, tmp_path: Path) -> Made:
    return skopeo_layout(skopeo, tmp_path / "src")


def imported(registry: Registry, path: Path, tag: str | None = None) -> transfer.ImportResult:
    return transfer.import_images(registry, path, who=CONSOLE, tag=tag)


def partial_left(datadir: DataDir) -> list[Path]:
    root = datadir.root / "transfer" / "partial"
    return list(root.rglob("*")) if root.exists() else []


def test_skopeo_layout_imports_with_its_digests_and_pulls_back(
    made: Made, registry: Registry, live_server: LiveServer, skopeo: str, tmp_path: Path,
) -> None:
    plan = transfer.preview(registry, made.layout)
    assert plan.format == "oci-layout"
    assert {(i.repository, i.tags) for i in plan.images} == {("layout", ("v1",)),
                                                              ("layout", ("multi",))}
    assert plan.new_blobs == plan.blobs
    result = imported(registry, made.layout)
    assert {i.digest for i in result.images} == {
        str(oci_layout_digest(made.layout, "v1")), str(oci_layout_digest(made.layout, "multi"))}
    assert registry.get_manifest("layout", "v1").digest == made.single.digest
    assert registry.get_manifest("layout", "multi").digest == made.index.digest
    for child in made.index.manifests:  # the index came with both platforms
        assert registry.get_manifest("layout", str(child.digest)).body() == child.body
    pulled = tmp_path / "pulled"
    run_skopeo(skopeo, "copy", "--all", *skopeo_auth(live_server, "src-"),
               remote(live_server, "layout:multi"), f"oci:{pulled}:multi")
    assert oci_layout_digest(pulled, "multi") == made.index.digest
    assert not partial_left(registry.datadir)


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_skopeo_docker_archive_imports_and_pulls_back(
    made: Made, registry: Registry, live_server: LiveServer, skopeo: str, tmp_path: Path,
    compressed: bool,
) -> None:
    archive = skopeo_docker_archive(skopeo, made, tmp_path / "web.tar")
    source = gzipped(archive) if compressed else archive
    result = imported(registry, source)
    (image,) = result.images
    assert (image.repository, image.tags) == ("app/web", ("v1",))  # docker.io/ dropped
    # No registry manifest travels in a docker-archive: ours is the one containers/image
    # generates for it, so skopeo reports the same digest for the archive.
    assert image.digest == str(skopeo_digest(skopeo, f"docker-archive:{archive}"))
    pulled = tmp_path / "pulled"
    run_skopeo(skopeo, "copy", *skopeo_auth(live_server, "src-"),
               remote(live_server, "app/web:v1"), f"dir:{pulled}")
    manifest = json.loads((pulled / "manifest.json").read_bytes())
    assert digest_bytes((pulled / "manifest.json").read_bytes()) == Digest(
        *image.digest.split(":"))
    config = json.loads((pulled / manifest["config"]["digest"].split(":")[1]).read_bytes())
    layers = [d["digest"] for d in manifest["layers"]]
    assert layers == config["rootfs"]["diff_ids"]  # plain layers: digest = diff_id
    original = made.single.manifests[0].config
    assert manifest["config"]["digest"] == str(original.digest)  # the config is unchanged


def test_skopeo_copy_of_the_same_archive_keeps_the_config_and_diff_ids(
    made: Made, registry: Registry, live_server: LiveServer, skopeo: str, tmp_path: Path,
) -> None:
    """What `skopeo copy docker-archive: docker://` stores differs from our import only in
    the layers: skopeo gzips plain layers on the way (Go's gzip, bytes no other compressor
    reproduces), so its layer and manifest digests are its own; config and diff_ids agree."""
    archive = skopeo_docker_archive(skopeo, made, tmp_path / "web.tar")
    (ours,) = imported(registry, archive).images
    run_skopeo(skopeo, "copy", *skopeo_auth(live_server, "dest-"), f"docker-archive:{archive}",
               remote(live_server, "viaskopeo/web:v1"))
    theirs = json.loads(registry.get_manifest("viaskopeo/web", "v1").body())
    mine = json.loads(registry.get_manifest("app/web", "v1").body())
    assert theirs["config"]["digest"] == mine["config"]["digest"]
    config = json.loads(registry.blob_store.read_bytes(Digest(
        *mine["config"]["digest"].split(":"))))
    assert [d["digest"] for d in mine["layers"]] == config["rootfs"]["diff_ids"]
    assert ours.digest == str(skopeo_digest(skopeo, f"docker-archive:{archive}"))


def test_a_gzipped_tar_of_a_layout_and_old_docker_save_paths_import(
    made: Made, registry: Registry, skopeo: str, tmp_path: Path,
) -> None:
    """`tar czf` of a layout directory (members named ./index.json ...) or of the directory
    itself (layout/index.json ...), and a docker-archive
    whose manifest.json names layers as `docker save` did before Docker 25 (`<id>/layer.tar`,
    here skopeo's symlinks to the layer files)."""
    packed = tmp_path / "layout.tar.gz"
    subprocess.run(["tar", "czf", str(packed), "-C", str(made.layout), "."], check=True)
    result = imported(registry, packed)
    assert {(i.repository, i.tags, i.digest) for i in result.images} == {
        ("layout", ("v1",), str(made.single.digest)),
        ("layout", ("multi",), str(made.index.digest))}
    folder = tmp_path / "folder.tar"  # a tar of the folder itself: members layout/...
    subprocess.run(["tar", "cf", str(folder), "-C", str(made.layout.parent), "layout"],
                   check=True)
    again = imported(registry, folder)
    assert {i.digest for i in again.images} == {i.digest for i in result.images}
    archive = skopeo_docker_archive(skopeo, made, tmp_path / "web.tar")
    with tarfile.open(archive) as tar:
        links = {m.linkname.removeprefix("../"): m.name for m in tar.getmembers() if m.issym()}
        entries = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    entries[0]["Layers"] = [links[layer] for layer in entries[0]["Layers"]]
    assert all(layer.endswith("/layer.tar") for layer in entries[0]["Layers"])
    old_style = replace_member(archive, "manifest.json", json.dumps(entries).encode(),
                               tmp_path / "old.tar")
    (image,) = imported(registry, old_style, tag="old/style:1").images
    assert image.digest == str(skopeo_digest(skopeo, f"docker-archive:{archive}"))


def cut_inside_largest_member(archive: Path) -> str:
    with tarfile.open(archive) as tar:
        member = max(tar.getmembers(), key=lambda m: m.size)
    with open(archive, "r+b") as file:
        file.truncate(member.offset_data + member.size // 2)
    return member.name


def test_truncated_tarballs_are_refused_with_nothing_stored(
    made: Made, registry: Registry, skopeo: str, tmp_path: Path,
) -> None:
    registry.put_blob("seed", b"something stored before", who=CONSOLE)
    before = take_snapshot(registry.datadir)
    oci_tar = tmp_path / "cut.tar"
    run_skopeo(skopeo, "copy", f"oci:{made.layout}:v1", f"oci-archive:{oci_tar}:v1")
    member = cut_inside_largest_member(oci_tar)
    with pytest.raises(transfer.SourceInvalid, match="truncated") as cut:
        imported(registry, oci_tar)
    assert str(oci_tar) in str(cut.value) and member in str(cut.value)
    archive = gzipped(skopeo_docker_archive(skopeo, made, tmp_path / "web.tar"))
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(transfer.SourceInvalid, match="truncated") as cut_gz:
        imported(registry, archive)
    assert str(archive) in str(cut_gz.value)
    assert before.diff(take_snapshot(registry.datadir)) == []
    assert not partial_left(registry.datadir)


def test_a_blob_with_the_wrong_digest_is_refused_with_nothing_stored(
    made: Made, registry: Registry,
) -> None:
    layer = made.single.manifests[0].layers[-1]
    bad = blob_path(made.layout, layer.digest)
    bad.write_bytes(bytes(b ^ 0xFF for b in bad.read_bytes()))  # same size, other bytes
    before = take_snapshot(registry.datadir)
    with pytest.raises(transfer.SourceInvalid, match="does not match its digest") as wrong:
        imported(registry, made.layout)
    assert f"blobs/sha256/{layer.digest.hex}" in str(wrong.value)
    assert before.diff(take_snapshot(registry.datadir)) == []
    assert not partial_left(registry.datadir)


def replace_member(archive: Path, name: str, body: bytes, target: Path) -> Path:
    """A copy of a tar with one member's content replaced."""
    with tarfile.open(archive) as src, tarfile.open(target, "w") as dst:
        for member in src.getmembers():
            if member.name == name:
                member.size = len(body)
                dst.addfile(member, io.BytesIO(body))
            else:
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    return target


@pytest.mark.parametrize("damage", ["manifest", "missing", "index-json", "manifest-json"])
def test_damaged_sources_are_refused_naming_the_file(
    made: Made, registry: Registry, skopeo: str, tmp_path: Path, damage: str,
) -> None:
    manifest = made.single.manifests[0]
    if damage == "manifest":
        named = blob_path(made.layout, manifest.digest)
        named.write_bytes(named.read_bytes().replace(b"schemaVersion", b"schemaversion"))
        words = [f"blobs/sha256/{manifest.digest.hex}", "does not match its digest"]
    elif damage == "missing":
        blob_path(made.layout, manifest.layers[0].digest).unlink()
        words = [str(manifest.layers[0].digest), "missing"]
    elif damage == "index-json":
        (made.layout / "index.json").write_text('{"manifests": [')
        words = ["index.json", "not valid JSON"]
    else:
        archive = skopeo_docker_archive(skopeo, made, tmp_path / "web.tar")
        broken = replace_member(archive, "manifest.json", b"[{not json", tmp_path / "bad.tar")
        made = Made(broken, made.single, made.index)
        words = [str(broken), "manifest.json", "not valid JSON"]
    before = take_snapshot(registry.datadir)
    with pytest.raises(transfer.SourceInvalid) as refused:
        transfer.preview(registry, made.layout)
    for word in words:
        assert word in str(refused.value)
    with pytest.raises(transfer.SourceInvalid):
        imported(registry, made.layout)
    assert before.diff(take_snapshot(registry.datadir)) == []


def test_blobs_already_here_are_not_copied_again(
    made: Made, registry: Registry, skopeo: str, tmp_path: Path,
) -> None:
    streamed: list[int] = []

    def bytes_streamed(progress: transfer.Progress) -> None:
        streamed.append(progress.bytes_done)

    first = transfer.import_images(registry, made.layout, who=CONSOLE, repository="a",
                                   on_progress=bytes_streamed)
    sizes = {b.digest: b.size for m in (*made.single.manifests, *made.index.manifests)
             for b in (m.config, *m.layers)}
    assert first.blobs_copied == len(sizes) and max(streamed) == sum(sizes.values())
    streamed.clear()
    again = transfer.import_images(registry, made.layout, who=CONSOLE, repository="b",
                                   on_progress=bytes_streamed)
    assert (again.blobs_copied, again.bytes_copied, max(streamed)) == (0, 0, 0)
    assert all(i.moved_tags == {} for i in again.images)
    assert registry.get_manifest("b", "multi").digest == made.index.digest
    # A second image sharing the base layer: only its own blobs are read from the source.
    v2 = write_oci_image(tmp_path / "built2", ImageSpec(tag="v2"))
    layout2 = tmp_path / "layout2"
    run_skopeo(skopeo, "copy", f"oci:{v2.path}:v2", f"oci:{layout2}:v2")
    streamed.clear()
    third = transfer.import_images(registry, layout2, who=CONSOLE, on_progress=bytes_streamed)
    own = {b.digest: b.size for b in (v2.manifests[0].config, *v2.manifests[0].layers)
           if b.digest not in sizes}
    assert third.blobs_copied == len(own) == 2 and max(streamed) == sum(own.values())


def test_an_import_larger_than_the_data_volume_is_refused_first(tmp_path: Path) -> None:
    """The data dir on a real small volume (a 40 MiB tmpfs: root only, like the disk-full
    tests), a 41 MiB image: refused by the low-space check before a byte is copied."""
    big = write_random_image(tmp_path / "big", 41 << 20, tag="big")
    volume = tmp_path / "small"
    mount_tmpfs(volume)
    try:
        datadir = DataDir(volume / "data")
        enable(datadir, device_name="edge", dns_domain="test", node_ip="127.0.0.1",
               port=free_port())
        small = Registry(datadir)
        try:
            before = take_snapshot(datadir)
            with pytest.raises(InsufficientSpace, match="not enough space"):
                imported(small, big.path)
            changed = before.diff(take_snapshot(datadir))
            # Only the refusal is counted (the usage report shows it), nothing stored.
            assert changed and all("'low_space_" in line for line in changed), changed
            assert not partial_left(datadir)
        finally:
            small.close()
    finally:
        subprocess.run(["umount", str(volume)], check=False)


def test_a_cancelled_import_stores_nothing(made: Made, registry: Registry) -> None:
    before = take_snapshot(registry.datadir)
    asked: list[transfer.Progress] = []
    with pytest.raises(transfer.TransferCancelled, match="nothing was stored"):
        transfer.import_images(registry, made.layout, who=CONSOLE, on_progress=asked.append,
                               should_stop=lambda: len(asked) > 1)
    assert before.diff(take_snapshot(registry.datadir)) == []
    assert not partial_left(registry.datadir)


def test_tag_names_an_unnamed_image_or_renames_a_single_one(
    made: Made, registry: Registry, skopeo: str, tmp_path: Path,
) -> None:
    archive = skopeo_docker_archive(skopeo, made, tmp_path / "web.tar")
    (image,) = imported(registry, archive, tag="other/name:t1").images
    assert (image.repository, image.tags) == ("other/name", ("t1",))
    assert registry.catalog().items == ["other/name"]
    single = tmp_path / "single"  # the OCI image v1 alone: another digest than the archive's
    run_skopeo(skopeo, "copy", f"oci:{made.layout}:v1", f"oci:{single}:v1")
    (planned,) = transfer.preview(registry, single, tag="other/name:t1").images
    assert planned.moves == {"t1": image.digest}  # the preview says the tag would move
    (moved,) = imported(registry, single, tag="other/name:t1").images
    assert moved.moved_tags == {"t1": image.digest}
    with pytest.raises(transfer.NamingError, match="--tag names one image"):
        transfer.preview(registry, made.layout, tag="x:y")
    entries = index_entries(made.layout)
    for entry in entries:
        if entry["digest"] == str(made.single.digest):
            entry.pop("annotations")
    write_index_entries(made.layout, entries)
    with pytest.raises(transfer.NamingError, match="--tag"):
        transfer.preview(registry, made.layout)
    result = imported(registry, made.layout, tag="named/later:1")
    assert {(i.repository, i.tags) for i in result.images} == {
        ("named/later", ("1",)), ("layout", ("multi",))}
    assert registry.get_manifest("named/later", "1").digest == made.single.digest


def test_a_referrer_in_the_layout_comes_with_its_subject(made: Made, registry: Registry) -> None:
    referrer = add_referrer(made.layout, made.single)
    result = imported(registry, made.layout)
    assert len(result.images) == 2  # the referrer is no image of its own
    referrers = registry.referrers("layout", made.single.digest)
    assert [r.digest for r in referrers] == [str(referrer)]
