"""Layouts and archives made by skopeo for the offline-transfer tests (tests/test_transfer*.py).

The images are built with imagebuilder.py (an OCI image `v1` and a two-platform index `multi`
sharing a base layer), then copied by skopeo into the layout or archive under test, so that
what is imported is what a real tool wrote.
"""

from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagebuilder import (
    BuiltImage,
    ImageSpec,
    canonical_json,
    make_layer,
    write_oci_image,
    write_oci_index,
)
from support import run_skopeo

from registry_core.manifests import OCI_EMPTY, OCI_LAYER_GZIP, OCI_MANIFEST
from registry_core.reference import Digest, digest_bytes


@dataclass(frozen=True)
class Made:
    layout: Path
    """An OCI layout written by skopeo, holding `v1` and `multi` (with both children)."""
    single: BuiltImage
    index: BuiltImage


def skopeo_layout(skopeo: str, where: Path) -> Made:
    built = where / "built"
    single = write_oci_image(built, ImageSpec(tag="v1"))
    index = write_oci_index(built, tag="multi")
    layout = where / "layout"
    run_skopeo(skopeo, "copy", f"oci:{built}:v1", f"oci:{layout}:v1")
    run_skopeo(skopeo, "copy", "--all", f"oci:{built}:multi", f"oci:{layout}:multi")
    return Made(layout, single, index)


def skopeo_docker_archive(skopeo: str, made: Made, target: Path,
                          name: str = "app/web:v1") -> Path:
    """`skopeo copy oci:LAYOUT:v1 docker-archive:TARGET:NAME` (plain tar, plain layers)."""
    run_skopeo(skopeo, "copy", f"oci:{made.layout}:v1", f"docker-archive:{target}:{name}")
    return target


def gzipped(path: Path) -> Path:
    """`gzip -k`: skopeo writes docker-archives uncompressed, `docker save | gzip` does not."""
    target = path.with_name(path.name + ".gz")
    with open(path, "rb") as src, gzip.open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return target


def skopeo_digest(skopeo: str, reference: str) -> Digest:
    """The manifest digest skopeo reports for a reference (`skopeo inspect`)."""
    doc = json.loads(run_skopeo(skopeo, "inspect", reference))
    algorithm, _, hex_ = str(doc["Digest"]).partition(":")
    return Digest(algorithm, hex_)


def index_entries(layout: Path) -> list[dict[str, Any]]:
    entries = json.loads((layout / "index.json").read_bytes())["manifests"]
    assert isinstance(entries, list)
    return entries


def write_index_entries(layout: Path, entries: list[dict[str, Any]]) -> None:
    doc = json.loads((layout / "index.json").read_bytes())
    doc["manifests"] = entries
    (layout / "index.json").write_text(json.dumps(doc))


def blob_path(layout: Path, digest: Digest | str) -> Path:
    algorithm, _, hex_ = str(digest).partition(":")
    return layout / "blobs" / algorithm / hex_


def add_referrer(layout: Path, subject: BuiltImage) -> Digest:
    """A signature-like artifact whose subject is `subject`, listed in index.json without a
    name (as oras writes referrers into a layout); its digest."""
    empty = b"{}"
    layer = make_layer("a signature")
    for data in (empty, layer.data):
        blob_path(layout, digest_bytes(data)).write_bytes(data)
    body = canonical_json({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": OCI_EMPTY, "digest": str(digest_bytes(empty)), "size": 2},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": str(layer.digest),
                    "size": layer.size}],
        "subject": {"mediaType": subject.media_type, "digest": str(subject.digest),
                    "size": subject.size},
    })
    blob_path(layout, digest_bytes(body)).write_bytes(body)
    write_index_entries(layout, [*index_entries(layout), {
        "mediaType": OCI_MANIFEST, "digest": str(digest_bytes(body)), "size": len(body)}])
    return digest_bytes(body)
