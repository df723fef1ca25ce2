"""The image builder writes layouts skopeo reads with the digests we computed.

These tests need the `skopeo` binary (CI installs it); no network, registry or daemon.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from imagebuilder import (
    DIR_VERSION,
    REF_NAME,
    BuiltImage,
    ImageSpec,
    base_layer,
    make_layer,
    write_docker_dir,
    write_oci_image,
    write_oci_index,
    write_oci_layout,
    write_random_image,
    write_random_layer,
)

from registry_core.manifests import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    parse_manifest,
)
from registry_core.reference import Digest, digest_bytes


class Skopeo:
    """Runs the skopeo binary and returns its stdout as bytes (digests need exact bytes)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, *args: str) -> bytes:
        done = subprocess.run(
            [self.path, "--insecure-policy", *args], capture_output=True, timeout=300, check=False
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        return done.stdout

    def inspect(self, reference: str, *extra: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self("inspect", *extra, reference))
        return result

    def raw(self, reference: str) -> bytes:
        return self("inspect", "--raw", reference)


@pytest.fixture
def sk(skopeo: str) -> Skopeo:
    """skopeo from conftest's `skopeo` fixture: skipped without it locally, an error in CI."""
    return Skopeo(skopeo)


def blob_bytes(image: BuiltImage, digest: Digest) -> bytes:
    if image.reference.startswith("dir:"):
        return (image.path / digest.hex).read_bytes()
    return (image.path / "blobs" / digest.algorithm / digest.hex).read_bytes()


# ---- pure checks (no skopeo) ------------------------------------------------------------------


def test_layers_are_deterministic_real_tar_gzip() -> None:
    files = {"a/b/c.txt": b"hello", "z.bin": bytes(range(256))}
    data, diff_id = make_layer(files)
    assert make_layer(files) == (data, diff_id)
    tar = gzip.decompress(data)
    assert digest_bytes(tar) == diff_id
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        names = archive.getnames()
        member = archive.extractfile("a/b/c.txt")
        assert member is not None and member.read() == b"hello"
        assert all(m.mtime == 0 for m in archive.getmembers())
    assert names == ["a", "a/b", "a/b/c.txt", "z.bin"]


def test_seeded_layers_differ_by_seed() -> None:
    assert make_layer("one").digest != make_layer("two").digest
    assert make_layer(b"one") == make_layer("one")


def test_config_lists_diff_ids_and_our_parser_accepts_the_manifest(tmp_path: Path) -> None:
    image = write_oci_image(tmp_path / "oci")
    (built,) = image.manifests
    config = json.loads(blob_bytes(image, built.config.digest))
    layers = [gzip.decompress(blob_bytes(image, d)) for d in built.layer_digests]
    diff_ids = [str(digest_bytes(tar)) for tar in layers]
    assert config["rootfs"] == {"type": "layers", "diff_ids": diff_ids}
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    manifest = parse_manifest(image.body, OCI_MANIFEST)
    assert manifest.config is not None and manifest.config.digest == built.config.digest
    assert tuple(d.digest for d in manifest.layers) == image.layer_digests
    assert manifest.total_size() == image.total_size


def test_index_json_tags_and_merging(tmp_path: Path) -> None:
    first = write_oci_layout(tmp_path, (ImageSpec(tag="a"), ImageSpec(tag="b")))
    again = write_oci_image(tmp_path, ImageSpec(tag="a", architecture="arm64"))
    index = json.loads((tmp_path / "index.json").read_bytes())
    tags = {d["annotations"][REF_NAME]: d["digest"] for d in index["manifests"]}
    assert tags == {"a": str(again.digest), "b": str(first[1].digest)}
    assert json.loads((tmp_path / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}


def test_index_children_share_the_base_layer(tmp_path: Path) -> None:
    image = write_oci_index(tmp_path)
    assert image.is_index and len(image.manifests) == 2
    base = base_layer().digest
    assert all(m.layer_digests[0] == base for m in image.manifests)
    assert len(image.layer_digests) == 3
    parsed = parse_manifest(image.body, OCI_INDEX)
    assert [str(p) for p in parsed.platforms()] == ["linux/amd64", "linux/arm64/v8"]
    assert [d.digest for d in parsed.child_descriptors()] == [m.digest for m in image.manifests]


def test_docker_dir_layout(tmp_path: Path) -> None:
    image = write_docker_dir(tmp_path / "dir")
    assert (tmp_path / "dir" / "version").read_text() == DIR_VERSION
    assert (tmp_path / "dir" / "manifest.json").read_bytes() == image.body
    assert image.layer_digests[0] == base_layer().digest
    manifest = parse_manifest(image.body, DOCKER_MANIFEST)
    assert manifest.media_type == DOCKER_MANIFEST


def test_random_layer_streams_valid_content(tmp_path: Path) -> None:
    size = 3 * 1024 * 1024 + 7
    blob, diff_id = write_random_layer(tmp_path / "layer", size)
    data = (tmp_path / "layer").read_bytes()
    assert blob.size == len(data) and blob.size > size
    assert digest_bytes(data) == blob.digest
    tar = gzip.decompress(data)
    assert digest_bytes(tar) == diff_id
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        (member,) = archive.getmembers()
        assert member.size == size


# ---- skopeo -----------------------------------------------------------------------------------


@pytest.mark.skopeo
def test_skopeo_reads_the_oci_image_with_our_digests(sk: Skopeo, tmp_path: Path) -> None:
    image = write_oci_image(tmp_path / "oci", ImageSpec(tag="v1"))
    body = sk.raw(image.reference)
    assert body == image.body and digest_bytes(body) == image.digest
    info = sk.inspect(image.reference)
    assert info["Digest"] == str(image.digest)
    assert info["Layers"] == [str(d) for d in image.layer_digests]
    assert (info["Os"], info["Architecture"]) == ("linux", "amd64")


@pytest.mark.skopeo
def test_skopeo_reads_the_index_and_each_platform(sk: Skopeo, tmp_path: Path) -> None:
    image = write_oci_index(tmp_path / "oci")
    assert sk.raw(image.reference) == image.body
    for built, arch in zip(image.manifests, ("amd64", "arm64"), strict=True):
        info = sk.inspect(image.reference, "--override-os", "linux", "--override-arch", arch)
        assert info["Architecture"] == arch
        assert info["Layers"] == [str(d) for d in built.layer_digests]


@pytest.mark.skopeo
def test_skopeo_reads_the_docker_dir(sk: Skopeo, tmp_path: Path) -> None:
    image = write_docker_dir(tmp_path / "dir")
    body = sk.raw(image.reference)
    assert digest_bytes(body) == image.digest
    info = sk.inspect(image.reference)
    assert info["Layers"] == [str(d) for d in image.layer_digests]
    oci = write_oci_image(tmp_path / "oci")
    assert info["Layers"][0] == str(oci.layer_digests[0])


@pytest.mark.skopeo
def test_skopeo_copy_preserves_the_image_digest(sk: Skopeo, tmp_path: Path) -> None:
    image = write_oci_image(tmp_path / "src", ImageSpec(tag="v1"))
    sk("copy", "--preserve-digests", image.reference, f"oci:{tmp_path / 'dst'}:v1")
    body = sk.raw(f"oci:{tmp_path / 'dst'}:v1")
    assert digest_bytes(body) == image.digest


@pytest.mark.skopeo
def test_skopeo_copy_all_preserves_the_index_digest(sk: Skopeo, tmp_path: Path) -> None:
    image = write_oci_index(tmp_path / "src")
    dest = f"oci:{tmp_path / 'dst'}:multi"
    sk("copy", "--all", "--preserve-digests", image.reference, dest)
    assert digest_bytes(sk.raw(dest)) == image.digest
    blobs = tmp_path / "dst" / "blobs" / "sha256"
    assert {d.hex for d in image.blob_digests} <= {p.name for p in blobs.iterdir()}


@pytest.mark.skopeo
def test_skopeo_converts_the_docker_dir_keeping_layers(sk: Skopeo, tmp_path: Path) -> None:
    image = write_docker_dir(tmp_path / "dir")
    dest = f"oci:{tmp_path / 'oci'}:converted"
    sk("copy", image.reference, dest)
    converted = parse_manifest(sk.raw(dest), None)
    assert converted.media_type == OCI_MANIFEST
    assert tuple(d.digest for d in converted.layers) == image.layer_digests
    sk("copy", "--preserve-digests", image.reference, f"dir:{tmp_path / 'dir2'}")
    assert digest_bytes(sk.raw(f"dir:{tmp_path / 'dir2'}")) == image.digest


@pytest.mark.skopeo
def test_skopeo_copies_the_random_image(sk: Skopeo, tmp_path: Path) -> None:
    image = write_random_image(tmp_path / "src", 2 * 1024 * 1024)
    dest = f"oci:{tmp_path / 'dst'}:random"
    sk("copy", "--preserve-digests", image.reference, dest)
    assert digest_bytes(sk.raw(dest)) == image.digest
    big = image.manifests[0].layers[-1]
    copied = tmp_path / "dst" / "blobs" / "sha256" / big.digest.hex
    assert hashlib.sha256(copied.read_bytes()).hexdigest() == big.digest.hex
