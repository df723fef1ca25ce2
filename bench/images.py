"""Hand-built OCI image layouts for the benchmarks (no dependency on tests/).

* `build_big_image`: one image whose single layer is an *uncompressed* tar
  (`application/vnd.oci.image.layer.v1.tar`) holding incompressible random data, so neither
  skopeo nor the registry spends time on compression. A per-build nonce member makes every
  build's digest distinct, so each repetition is a real upload (no cross-repo mount or
  "blob already exists" short cut).
* `build_small_images`: N distinct small images (a few KiB each) in one layout, tagged via
  `org.opencontainers.image.ref.name` annotations.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
CHUNK = 4 << 20


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def as_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class BuiltImage:
    layout: Path
    tag: str
    manifest: Descriptor
    total_bytes: int  # manifest + config + layers: what a push/pull transfers


def init_layout(layout: Path) -> Path:
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return blobs


def write_blob(layout: Path, data: bytes, media_type: str) -> Descriptor:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return Descriptor(media_type, f"sha256:{digest}", len(data))


def write_index(layout: Path, manifests: list[tuple[Descriptor, str]]) -> None:
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{**d.as_json(), "annotations": {REF_NAME: tag}} for d, tag in manifests],
    }
    (layout / "index.json").write_text(json.dumps(index, indent=1))


def image_config(diff_id: str, label: str) -> bytes:
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"bench": label}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "bench/images.py"}],
    }
    return json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()


def manifest_bytes(config: Descriptor, layers: list[Descriptor]) -> bytes:
    m = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": config.as_json(),
        "layers": [d.as_json() for d in layers],
    }
    return json.dumps(m, separators=(",", ":")).encode()


def ensure_random_file(path: Path, size: int) -> Path:
    """A file of `size` random bytes, reused when it already has the right size."""
    if path.exists() and path.stat().st_size == size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        left = size
        while left > 0:
            n = min(CHUNK, left)
            f.write(os.urandom(n))
            left -= n
    tmp.replace(path)
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def build_big_image(layout: Path, payload: Path, tag: str = "big") -> BuiltImage:
    """One-layer image: uncompressed tar of a 16-byte nonce + `payload` (random bytes)."""
    blobs = init_layout(layout)
    size = payload.stat().st_size
    nonce = os.urandom(16).hex().encode()
    h = hashlib.sha256()
    tmp = blobs / "layer.tmp"
    layer_size = 0
    with tmp.open("wb") as out:

        def emit(b: bytes) -> None:
            nonlocal layer_size
            h.update(b)
            out.write(b)
            layer_size += len(b)

        emit(_tar_header("nonce", len(nonce)))
        emit(nonce + b"\0" * (-len(nonce) % 512))
        emit(_tar_header("payload.bin", size))
        with payload.open("rb") as src:
            while chunk := src.read(CHUNK):
                emit(chunk)
        emit(b"\0" * (-size % 512))
        emit(b"\0" * 1024)  # end-of-archive marker
    layer_digest = f"sha256:{h.hexdigest()}"
    tmp.replace(blobs / layer_digest.removeprefix("sha256:"))
    layer = Descriptor(MT_LAYER_TAR, layer_digest, layer_size)
    # Uncompressed layer: diff_id == layer digest.
    config = write_blob(layout, image_config(layer_digest, nonce.decode()), MT_CONFIG)
    manifest = write_blob(layout, manifest_bytes(config, [layer]), MT_MANIFEST)
    write_index(layout, [(manifest, tag)])
    return BuiltImage(layout, tag, manifest, manifest.size + config.size + layer.size)


def _small_layer(i: int, nonce: str, size: int) -> tuple[bytes, str]:
    """(gzip blob, diff_id) of a tar with one file of `size` bytes, distinct per (i, nonce)."""
    body = (f"image {i} {nonce}\n".encode() + os.urandom(size))[:size]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(f"data/file-{i:04d}.bin")
        info.size = len(body)
        info.mode = 0o644
        info.mtime = 0
        tar.addfile(info, io.BytesIO(body))
    raw = buf.getvalue()
    diff_id = f"sha256:{hashlib.sha256(raw).hexdigest()}"
    return gzip.compress(raw, compresslevel=1, mtime=0), diff_id


def build_small_images(
    layout: Path, count: int, nonce: str, file_size: int = 4096
) -> list[BuiltImage]:
    """`count` distinct small images in one layout, tags img-000 ... (ref.name annotations)."""
    init_layout(layout)
    built: list[BuiltImage] = []
    for i in range(count):
        tag = f"img-{i:03d}"
        blob, diff_id = _small_layer(i, nonce, file_size)
        layer = write_blob(layout, blob, MT_LAYER_GZIP)
        config = write_blob(layout, image_config(diff_id, f"{nonce}-{i}"), MT_CONFIG)
        manifest = write_blob(layout, manifest_bytes(config, [layer]), MT_MANIFEST)
        built.append(BuiltImage(layout, tag, manifest, manifest.size + config.size + layer.size))
    write_index(layout, [(b.manifest, b.tag) for b in built])
    return built
