"""A `docker save` / `docker-archive` tarball (`manifest.json`: Config, RepoTags, Layers) read
into images.

A docker-archive holds no registry manifest, so one is made: the Docker v2 schema 2 manifest
that containers/image (skopeo, podman) generates for the same archive, byte for byte. The
config's digest is that of the config file; a layer stored as a plain tar (what `docker
save` and skopeo write) keeps its bytes, so its digest is its diff_id from the config (checked
when the import hashes it); a compressed layer keeps its bytes too, its digest hashed here.
For an archive of plain-tar layers (all that `docker save`, skopeo and podman write), the
manifest's digest is therefore the one `skopeo inspect docker-archive:FILE` reports; with
compressed layers it differs (containers/image lists their uncompressed digests), the image
(config digest) the same.
(`skopeo copy docker-archive:FILE docker://...` differs: it gzips plain layers on the way with
Go's compressor, whose bytes no other gzip reproduces; the config and diff_ids are equal.)
"""

from __future__ import annotations

import json
from typing import Any

from registry_core.errors import RegistryError
from registry_core.manifests import DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST
from registry_core.reference import Digest, digest_bytes, parse_digest
from registry_core.transfer.errors import SourceInvalid
from registry_core.transfer.layout import load_json
from registry_core.transfer.model import SourceBlob, SourceImage, SourceManifest
from registry_core.transfer.naming import parse_name
from registry_core.transfer.source import GZIP_MAGIC, ZSTD_MAGIC, Source, clean_name

MAX_CONFIG = 32 << 20


def is_docker_archive(source: Source) -> bool:
    return source.size("manifest.json") is not None


def read_docker_archive(source: Source) -> list[SourceImage]:
    entries = load_json(source, "manifest.json", 16 << 20)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SourceInvalid(f"{source.path}: manifest.json is not a list of images")
    images: list[SourceImage] = []
    for position, entry in enumerate(entries):
        images += _images(source, entry, position)
    return images


def _images(source: Source, entry: dict[str, Any], position: int) -> list[SourceImage]:
    where = f"{source.path}: manifest.json entry {position}"
    config_name, layers = entry.get("Config"), entry.get("Layers")
    if not isinstance(config_name, str) or not isinstance(layers, list) \
            or not all(isinstance(x, str) for x in layers):
        raise SourceInvalid(f"{where}: needs Config and a list of Layers")
    config = source.read_small(clean_name(config_name), MAX_CONFIG)
    diff_ids = _diff_ids(source, config_name, config, len(layers))
    blobs = [_layer(source, clean_name(layer), diff_id)
             for layer, diff_id in zip(layers, diff_ids, strict=True)]
    config_blob = SourceBlob(digest_bytes(config), len(config), clean_name(config_name))
    body = manifest_body(config_blob, blobs)
    manifest = SourceManifest(digest_bytes(body), body, DOCKER_MANIFEST)
    repo_tags = entry.get("RepoTags") or []
    if not isinstance(repo_tags, list):
        raise SourceInvalid(f"{where}: RepoTags is not a list")
    by_repository: dict[str, list[str]] = {}
    for text in repo_tags:
        name = parse_name(str(text))
        by_repository.setdefault(name.repository, []).extend([name.tag] if name.tag else [])
    return [
        SourceImage(repository, tags, manifest.digest, DOCKER_MANIFEST, [manifest],
                    {b.digest: b for b in [config_blob, *blobs]})
        for repository, tags in (by_repository or {"": []}).items()
    ]


def _diff_ids(source: Source, name: str, config: bytes, count: int) -> list[Digest]:
    try:
        doc = json.loads(config)
        diff_ids = [parse_digest(d) for d in doc["rootfs"]["diff_ids"]]
    except (ValueError, KeyError, TypeError, RegistryError) as exc:
        raise SourceInvalid(f"{source.path}: {name} is not an image config with "
                            f"rootfs.diff_ids ({exc})") from None
    if len(diff_ids) != count:
        raise SourceInvalid(f"{source.path}: {name} has {len(diff_ids)} diff_ids for "
                            f"{count} layers")
    return diff_ids


def _layer(source: Source, member: str, diff_id: Digest) -> SourceBlob:
    size = source.size(member)
    if size is None:
        raise SourceInvalid(f"{source.path}: layer {member} {source.absent(member)}")
    head = source.head(member, 4)
    if head.startswith(ZSTD_MAGIC):
        raise SourceInvalid(f"{source.path}: layer {member} is zstd-compressed, which a "
                            "docker-archive import does not support")
    if not head.startswith(GZIP_MAGIC):
        return SourceBlob(diff_id, size, member)
    hasher = diff_id.hasher()
    for _, chunks in source.stream([member]):
        for chunk in chunks:
            hasher.update(chunk)
    return SourceBlob(Digest(diff_id.algorithm, hasher.hexdigest()), size, member)


def manifest_body(config: SourceBlob, layers: list[SourceBlob]) -> bytes:
    """The manifest containers/image generates for a docker-archive image: compact JSON,
    fields in its struct order, every layer typed tar.gzip whatever its compression."""
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": config.size,
                   "digest": str(config.digest)},
        "layers": [{"mediaType": DOCKER_LAYER, "size": b.size, "digest": str(b.digest)}
                   for b in layers],
    }
    return json.dumps(doc, separators=(",", ":")).encode()
