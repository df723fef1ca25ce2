"""Build real container images on disk for skopeo-based tests and benchmarks.

No network and no docker daemon: layers are deterministic gzip-compressed tars made with
`tarfile` and `gzip` (mtime 0), configs are valid image configs, and the results are written as
an OCI image layout (`oci:<dir>:<tag>`) or a skopeo directory (`dir:<dir>`). Every builder
returns a `BuiltImage` naming the digests it wrote, so a test can compare them after a round trip
through the registry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from registry_core.manifests import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
)
from registry_core.reference import Digest, digest_bytes

REF_NAME = "org.opencontainers.image.ref.name"
DIR_VERSION = "Directory Transport Version: 1.1\n"
CHUNK = 1 << 20
BASE_FILES: dict[str, bytes] = {
    "etc/os-release": b'NAME="Edge Test Base"\nID=edgetest\nVERSION_ID=1\n',
    "etc/hostname": b"edge\n",
    "bin/hello": b"#!/bin/sh\necho hello from the edge\n",
}
LayerContent = Mapping[str, bytes] | bytes | str


# ---- layers ---------------------------------------------------------------------------------


class Layer(NamedTuple):
    """A gzip-compressed tar layer: unpacks as `(data, diff_id)`."""

    data: bytes
    diff_id: Digest

    @property
    def digest(self) -> Digest:
        return digest_bytes(self.data)

    @property
    def size(self) -> int:
        return len(self.data)


def _tar_info(name: str, size: int, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory or name.startswith("bin/") else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _parent_dirs(names: Sequence[str]) -> list[str]:
    dirs = {"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 1)}
    return sorted(dirs)


def make_tar(files: Mapping[str, bytes]) -> bytes:
    """A deterministic tar of `files` (sorted, parent directories included, mtime 0)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in _parent_dirs(list(files)):
            tar.addfile(_tar_info(directory, 0, directory=True))
        for name in sorted(files):
            tar.addfile(_tar_info(name, len(files[name])), io.BytesIO(files[name]))
    return buf.getvalue()


def _files_for(content: LayerContent) -> Mapping[str, bytes]:
    if isinstance(content, Mapping):
        return content
    seed = content.encode() if isinstance(content, str) else content
    body = hashlib.sha256(seed).hexdigest().encode() * 64
    return {f"data/{hashlib.sha256(seed).hexdigest()[:16]}.txt": seed + b"\n" + body}


def make_layer(content: LayerContent) -> Layer:
    """A real tar+gzip layer from a file map, or from a seed (bytes/str) giving one file."""
    tar = make_tar(_files_for(content))
    return Layer(gzip.compress(tar, mtime=0), digest_bytes(tar))


def base_layer() -> Layer:
    """The base layer every built image starts with, so formats and platforms share it."""
    return make_layer(BASE_FILES)


# ---- descriptions of what was built ---------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    media_type: str
    digest: Digest
    size: int

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
            **extra,
        }


@dataclass(frozen=True)
class BuiltManifest:
    """One image manifest with its config and layers, as written."""

    media_type: str
    digest: Digest
    size: int
    body: bytes
    config: Blob
    layers: tuple[Blob, ...]
    platform: str | None = None

    @property
    def layer_digests(self) -> tuple[Digest, ...]:
        return tuple(b.digest for b in self.layers)

    @property
    def total_size(self) -> int:
        return self.config.size + sum(b.size for b in self.layers)


@dataclass(frozen=True)
class BuiltImage:
    """What a builder wrote: the top manifest (or index) and every image manifest under it."""

    path: Path
    reference: str
    tag: str | None
    media_type: str
    digest: Digest
    size: int
    body: bytes
    manifests: tuple[BuiltManifest, ...]

    @property
    def is_index(self) -> bool:
        return self.media_type == OCI_INDEX

    @property
    def layer_digests(self) -> tuple[Digest, ...]:
        """Distinct layer digests in order of first appearance."""
        return tuple(dict.fromkeys(d for m in self.manifests for d in m.layer_digests))

    @property
    def blob_digests(self) -> frozenset[Digest]:
        return frozenset(b.digest for m in self.manifests for b in (m.config, *m.layers))

    @property
    def total_size(self) -> int:
        """Bytes of distinct config and layer blobs (shared layers counted once)."""
        sizes = {b.digest: b.size for m in self.manifests for b in (m.config, *m.layers)}
        return sum(sizes.values())


@dataclass(frozen=True)
class ImageSpec:
    """One image to build; with no layers: the base layer plus a small layer from the tag."""

    tag: str = "latest"
    layers: tuple[Layer, ...] = ()
    architecture: str = "amd64"
    os: str = "linux"
    variant: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    def layer_list(self) -> tuple[Layer, ...]:
        if self.layers:
            return self.layers
        return (base_layer(), make_layer(f"app {self.tag} {self.os}/{self.architecture}"))

    @property
    def platform(self) -> dict[str, str]:
        plat = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            plat["variant"] = self.variant
        return plat


def canonical_json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def image_config(spec: ImageSpec, diff_ids: Sequence[Digest]) -> bytes:
    """A valid image config (OCI and Docker accept the same fields)."""
    doc: dict[str, Any] = {
        "created": "1970-01-01T00:00:00Z",
        **spec.platform,
        "config": {"Cmd": ["/bin/hello"], "Env": ["PATH=/bin"], "Labels": {"tag": spec.tag}},
        "rootfs": {"type": "layers", "diff_ids": [str(d) for d in diff_ids]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "imagebuilder"}]
        * len(diff_ids),
    }
    return canonical_json(doc)


# ---- blob stores ------------------------------------------------------------------------------


class _BlobDir:
    """Where blobs go: `blobs/<alg>/<hex>` in an OCI layout, `<hex>` in a skopeo dir."""

    def __init__(self, root: Path, oci: bool) -> None:
        self.root = root
        self.oci = oci
        root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: Digest) -> Path:
        if self.oci:
            return self.root / "blobs" / digest.algorithm / digest.hex
        return self.root / digest.hex

    def put(self, data: bytes, media_type: str) -> Blob:
        digest = digest_bytes(data)
        target = self.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.write_bytes(data)
        return Blob(media_type, digest, len(data))


def _write_manifest(
    store: _BlobDir, spec: ImageSpec, oci: bool, extra: Sequence[tuple[Blob, Digest]] = ()
) -> BuiltManifest:
    """Write config, layers and manifest; `extra` are pre-written (blob, diff_id) layers."""
    layers = spec.layer_list()
    layer_type, config_type, manifest_type = (
        (OCI_LAYER_GZIP, OCI_CONFIG, OCI_MANIFEST)
        if oci
        else (DOCKER_LAYER, DOCKER_CONFIG, DOCKER_MANIFEST)
    )
    diff_ids = [layer.diff_id for layer in layers] + [diff_id for _, diff_id in extra]
    config = store.put(image_config(spec, diff_ids), config_type)
    blobs = tuple(store.put(layer.data, layer_type) for layer in layers)
    blobs += tuple(blob for blob, _ in extra)
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": config.descriptor(),
        "layers": [b.descriptor() for b in blobs],
    }
    if spec.annotations:
        doc["annotations"] = dict(spec.annotations)
    body = json.dumps(doc, indent=3).encode()
    blob = store.put(body, manifest_type)
    platform = "/".join(filter(None, (spec.os, spec.architecture, spec.variant)))
    return BuiltManifest(manifest_type, blob.digest, blob.size, body, config, blobs, platform)


# ---- OCI image layout -------------------------------------------------------------------------


def _update_index_json(root: Path, entries: Sequence[tuple[str, Blob]]) -> None:
    """Add `(tag, descriptor)` entries to index.json, replacing entries with the same tag."""
    index_path = root / "index.json"
    old: list[dict[str, Any]] = []
    if index_path.exists():
        old = json.loads(index_path.read_bytes()).get("manifests", [])
    tags = {tag for tag, _ in entries}
    kept = [d for d in old if d.get("annotations", {}).get(REF_NAME) not in tags]
    new = [blob.descriptor(annotations={REF_NAME: tag}) for tag, blob in entries]
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": kept + new}
    index_path.write_bytes(json.dumps(doc, indent=2).encode())
    (root / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')


def _built(
    path: Path, tag: str, top: BuiltManifest | Blob, body: bytes, children: Sequence[BuiltManifest]
) -> BuiltImage:
    return BuiltImage(
        path=path,
        reference=f"oci:{path}:{tag}",
        tag=tag,
        media_type=top.media_type,
        digest=top.digest,
        size=top.size,
        body=body,
        manifests=tuple(children),
    )


def write_oci_layout(
    path: Path, images: Sequence[ImageSpec] = (ImageSpec(),)
) -> tuple[BuiltImage, ...]:
    """Write (or add to) an OCI image layout holding one OCI image manifest per spec."""
    store = _BlobDir(path, oci=True)
    built = [_write_manifest(store, spec, oci=True) for spec in images]
    _update_index_json(
        path, [(spec.tag, _as_blob(b)) for spec, b in zip(images, built, strict=True)]
    )
    return tuple(_built(path, s.tag, b, b.body, (b,)) for s, b in zip(images, built, strict=True))


def write_oci_image(path: Path, spec: ImageSpec | None = None) -> BuiltImage:
    """One image in an OCI layout: `oci:<path>:<spec.tag>`."""
    return write_oci_layout(path, (spec or ImageSpec(),))[0]


def _as_blob(built: BuiltManifest) -> Blob:
    return Blob(built.media_type, built.digest, built.size)


DEFAULT_PLATFORMS: tuple[tuple[str, str | None], ...] = (("amd64", None), ("arm64", "v8"))


def write_oci_index(
    path: Path, tag: str = "multi", platforms: Sequence[tuple[str, str | None]] = DEFAULT_PLATFORMS
) -> BuiltImage:
    """A multi-platform OCI index (linux/amd64 + linux/arm64 by default) sharing the base layer."""
    store = _BlobDir(path, oci=True)
    specs = [ImageSpec(tag=f"{tag}-{arch}", architecture=arch, variant=v) for arch, v in platforms]
    children = [_write_manifest(store, spec, oci=True) for spec in specs]
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            _as_blob(c).descriptor(platform=s.platform)
            for s, c in zip(specs, children, strict=True)
        ],
    }
    body = json.dumps(doc, indent=2).encode()
    top = store.put(body, OCI_INDEX)
    _update_index_json(path, [(tag, top)])
    return _built(path, tag, top, body, children)


# ---- skopeo dir: transport ---------------------------------------------------------------------


def write_docker_dir(path: Path, spec: ImageSpec | None = None) -> BuiltImage:
    """A Docker schema 2 image in skopeo's `dir:` layout, sharing the OCI images' base layer."""
    spec = spec or ImageSpec(tag="docker")
    store = _BlobDir(path, oci=False)
    built = _write_manifest(store, spec, oci=False)
    (path / "manifest.json").write_bytes(built.body)
    (path / "version").write_text(DIR_VERSION)
    return BuiltImage(
        path=path,
        reference=f"dir:{path}",
        tag=None,
        media_type=built.media_type,
        digest=built.digest,
        size=built.size,
        body=built.body,
        manifests=(built,),
    )


# ---- big random layers for benchmarks ---------------------------------------------------------


class _Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class _HashingSink:
    """A write-only file object that hashes what passes through to `target`."""

    def __init__(self, target: _Writable) -> None:
        self.target = target
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self.target.write(data)

    def flush(self) -> None:
        self.target.flush()


def _write_random_tar(out: _HashingSink, size: int) -> None:
    info = _tar_info("random.bin", size)
    out.write(info.tobuf(format=tarfile.PAX_FORMAT))
    remaining = size
    while remaining:
        chunk = os.urandom(min(CHUNK, remaining))
        out.write(chunk)
        remaining -= len(chunk)
    out.write(b"\0" * (-size % tarfile.BLOCKSIZE))
    out.write(b"\0" * (2 * tarfile.BLOCKSIZE))


def write_random_layer(target: Path, size: int, compresslevel: int = 0) -> tuple[Blob, Digest]:
    """Stream a tar+gzip layer holding `size` random bytes to `target`; returns (blob, diff_id).

    Random data does not compress, so gzip level 0 (stored blocks, still valid gzip) keeps it
    fast; nothing is held in memory beyond one chunk.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as raw:
        compressed = _HashingSink(raw)
        with gzip.GzipFile(
            filename="", fileobj=compressed, mode="wb", mtime=0, compresslevel=compresslevel
        ) as gz:
            tar = _HashingSink(gz)
            _write_random_tar(tar, size)
    digest = Digest("sha256", compressed.hasher.hexdigest())
    return Blob(OCI_LAYER_GZIP, digest, compressed.size), Digest("sha256", tar.hasher.hexdigest())


def write_random_image(path: Path, size: int, tag: str = "random") -> BuiltImage:
    """An OCI layout whose image has the base layer plus one random layer of `size` bytes."""
    tmp = path / "blobs" / "sha256" / f".random-{os.getpid()}.tmp"
    blob, diff_id = write_random_layer(tmp, size)
    final = path / "blobs" / "sha256" / blob.digest.hex
    tmp.replace(final)
    spec = ImageSpec(tag=tag, layers=(base_layer(),))
    built = _write_manifest(_BlobDir(path, oci=True), spec, oci=True, extra=[(blob, diff_id)])
    _update_index_json(path, [(tag, _as_blob(built))])
    return _built(path, tag, built, built.body, (built,))
