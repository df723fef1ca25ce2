"""Docker schema 2, Docker manifest list, OCI image manifest and OCI image index. Pure.

`parse_manifest` validates a pushed body and returns a read-only view of what it references.
It never re-serializes: the caller stores and serves the exact bytes it was given, because the
manifest digest is the digest of those bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from registry_core.errors import ManifestInvalid, ManifestTooLarge, RegistryError
from registry_core.reference import Digest, digest_bytes, parse_digest

MAX_MANIFEST_BYTES = 4 * 1024 * 1024

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_NONDIST_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_NONDIST_LAYER_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_NONDIST_LAYER_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

LAYER_MEDIA_TYPES: frozenset[str] = frozenset(
    {DOCKER_LAYER, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD}
)
NON_DISTRIBUTABLE_MEDIA_TYPES: frozenset[str] = frozenset(
    {DOCKER_FOREIGN_LAYER, OCI_NONDIST_LAYER, OCI_NONDIST_LAYER_GZIP, OCI_NONDIST_LAYER_ZSTD}
)
IMAGE_MANIFEST_MEDIA_TYPES: frozenset[str] = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
INDEX_MEDIA_TYPES: frozenset[str] = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
MANIFEST_MEDIA_TYPES: frozenset[str] = IMAGE_MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES
OCI_MEDIA_TYPES: frozenset[str] = frozenset({OCI_MANIFEST, OCI_INDEX})
SCHEMA1_MEDIA_TYPES: frozenset[str] = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})
# RFC 6838 section 4.2 restricted names, as the image-spec requires for mediaType.
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
MEDIA_TYPE_RE = re.compile(rf"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}")
MAX_INT64 = (1 << 63) - 1

Annotations = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Platform:
    """The platform of an index entry (`linux/arm64/v8`)."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None

    def __str__(self) -> str:
        parts = [self.os, self.architecture]
        if self.variant:
            parts.append(self.variant)
        return "/".join(parts)


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor; annotations are sorted (key, value) pairs so it stays hashable."""

    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    artifact_type: str | None = None
    platform: Platform | None = None
    annotations: Annotations = ()
    data: bytes | None = None

    @property
    def is_foreign(self) -> bool:
        """A non-distributable layer with URLs: the registry need not hold it."""
        return self.media_type in NON_DISTRIBUTABLE_MEDIA_TYPES and bool(self.urls)

    @property
    def is_manifest(self) -> bool:
        """The descriptor points at a manifest or index this module understands."""
        return self.media_type in MANIFEST_MEDIA_TYPES


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest or index. `manifests` is empty for image manifests and vice versa."""

    media_type: str
    is_index: bool
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None
    artifact_type: str | None
    annotations: Annotations

    def blob_descriptors(self) -> tuple[Descriptor, ...]:
        """Blobs the registry must hold: config and layers (foreign layers excluded), and
        the entries of an index that are not manifests."""
        blobs = (self.config,) if self.config is not None else ()
        others = tuple(d for d in self.manifests if not d.is_manifest and not d.is_foreign)
        return blobs + tuple(d for d in self.layers if not d.is_foreign) + others

    def child_descriptors(self) -> tuple[Descriptor, ...]:
        """The entries of an index that are manifests: they must exist in the repository."""
        return tuple(d for d in self.manifests if d.is_manifest)

    def platforms(self) -> tuple[Platform, ...]:
        """Platforms named by the entries of an index, in order; empty for image manifests."""
        return tuple(d.platform for d in self.manifests if d.platform is not None)

    def effective_artifact_type(self) -> str | None:
        """artifactType, else the config media type of an OCI image manifest (referrers spec)."""
        if self.artifact_type is not None:
            return self.artifact_type
        if self.media_type == OCI_MANIFEST and self.config is not None:
            return self.config.media_type
        return None

    def total_size(self) -> int:
        """Bytes of config and every layer the manifest describes (foreign layers included)."""
        config = self.config.size if self.config is not None else 0
        return config + sum(d.size for d in self.layers)


# ---- JSON decoding ------------------------------------------------------------------------


def _invalid(message: str, field: str | None = None) -> ManifestInvalid:
    return ManifestInvalid(message, detail={"field": field} if field else None)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _invalid(f"manifest repeats the key {key!r}", key)
        obj[key] = value
    return obj


def _reject_constant(name: str) -> Any:
    raise _invalid(f"manifest contains the non-JSON number {name}")


def _load_json(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(f"manifest is not UTF-8 JSON: invalid byte at offset {exc.start}") from None
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise _invalid(f"manifest is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise _invalid("manifest must be a JSON object")
    return doc


# ---- field helpers ------------------------------------------------------------------------


def _opt_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(f"{where}.{key} must be a string", f"{where}.{key}")
    return value


def _req_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = _opt_str(obj, key, where)
    if value is None:
        raise _invalid(f"{where}.{key} is required", f"{where}.{key}")
    return value


def _media_type(value: str, where: str) -> str:
    if MEDIA_TYPE_RE.fullmatch(value.split(";", 1)[0].strip()) is None:
        raise _invalid(f"{where} {value[:100]!r} is not a valid media type", where)
    return value


def _opt_media_type(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = _opt_str(obj, key, where)
    return None if value is None else _media_type(value, f"{where}.{key}")


def _str_list(obj: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid(f"{where}.{key} must be a list of strings", f"{where}.{key}")
    return tuple(value)


def _annotations(obj: Mapping[str, Any], where: str) -> Annotations:
    value = obj.get("annotations")
    if value is None:
        return ()
    ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if not ok:
        raise _invalid(f"{where}.annotations must map strings to strings", f"{where}.annotations")
    return tuple(sorted(value.items()))


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a JSON object", where)
    return value


# ---- descriptors --------------------------------------------------------------------------


def _digest(obj: Mapping[str, Any], where: str) -> Digest:
    text = _req_str(obj, "digest", where)
    try:
        return parse_digest(text)
    except RegistryError as exc:
        raise ManifestInvalid(
            f"{where}.digest: {exc.message}",
            detail={"field": f"{where}.digest", "digest": text[:200]},
        ) from None


def _size(obj: Mapping[str, Any], where: str) -> int:
    value = obj.get("size")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT64:
        raise _invalid(f"{where}.size must be an integer between 0 and 2^63-1", f"{where}.size")
    return value


def _data(obj: Mapping[str, Any], where: str, digest: Digest, size: int) -> bytes | None:
    text = _opt_str(obj, "data", where)
    if text is None:
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"{where}.data is not valid base64", f"{where}.data") from None
    if len(data) != size:
        raise _invalid(f"{where}.data holds {len(data)} bytes, size says {size}", f"{where}.data")
    if digest_bytes(data, digest.algorithm) != digest:
        raise _invalid(f"{where}.data does not match digest {digest}", f"{where}.data")
    return data


def _platform(obj: Mapping[str, Any], where: str) -> Platform | None:
    value = obj.get("platform")
    if value is None:
        return None
    where = f"{where}.platform"
    plat = _object(value, where)
    _str_list(plat, "os.features", where)
    _str_list(plat, "features", where)
    return Platform(
        os=_req_str(plat, "os", where),
        architecture=_req_str(plat, "architecture", where),
        variant=_opt_str(plat, "variant", where),
        os_version=_opt_str(plat, "os.version", where),
    )


def parse_descriptor(value: Any, where: str) -> Descriptor:
    """Validate one descriptor; `where` names it in error messages (e.g. `layers[2]`)."""
    obj = _object(value, where)
    digest = _digest(obj, where)
    size = _size(obj, where)
    return Descriptor(
        media_type=_media_type(_req_str(obj, "mediaType", where), f"{where}.mediaType"),
        digest=digest,
        size=size,
        urls=_str_list(obj, "urls", where),
        artifact_type=_opt_media_type(obj, "artifactType", where),
        platform=_platform(obj, where),
        annotations=_annotations(obj, where),
        data=_data(obj, where, digest, size),
    )


def _descriptor_list(doc: Mapping[str, Any], key: str) -> tuple[Descriptor, ...]:
    value = doc.get(key)
    if not isinstance(value, list):
        raise _invalid(f"{key} must be a list of descriptors", key)
    return tuple(parse_descriptor(item, f"{key}[{i}]") for i, item in enumerate(value))


# ---- media type -------------------------------------------------------------------------


def _normalize_content_type(content_type: str | None) -> str:
    if content_type is None:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def _check_schema_version(doc: Mapping[str, Any], content_type: str) -> None:
    version = doc.get("schemaVersion")
    is_int = isinstance(version, int) and not isinstance(version, bool)
    field = doc.get("mediaType")
    declared = {content_type, field if isinstance(field, str) else ""}
    if (is_int and version == 1) or declared & SCHEMA1_MEDIA_TYPES:
        raise _invalid("schema 1 manifests are not supported", "schemaVersion")
    if not is_int or version != 2:
        raise _invalid("schemaVersion must be 2", "schemaVersion")


def _infer_media_type(doc: Mapping[str, Any]) -> str:
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc and "layers" in doc:
        return OCI_MANIFEST
    raise _invalid("cannot tell the manifest type: no mediaType, Content-Type or known shape")


def _effective_media_type(doc: Mapping[str, Any], content_type: str | None) -> str:
    """The manifest's media type. A Content-Type, when sent, must name a manifest type this
    registry stores and agree with the body's mediaType; without one the body decides."""
    header = _normalize_content_type(content_type)
    _check_schema_version(doc, header)
    if header and header not in MANIFEST_MEDIA_TYPES:
        raise _invalid(
            f"Content-Type {header[:100]!r} is not a manifest media type; send one of "
            + ", ".join(sorted(MANIFEST_MEDIA_TYPES)),
            "Content-Type",
        )
    field = _opt_str(doc, "mediaType", "manifest")
    if field is not None and header and field != header:
        raise _invalid(
            f"mediaType {field[:100]!r} does not match Content-Type {header[:100]!r}", "mediaType"
        )
    media_type = field or header or _infer_media_type(doc)
    if media_type not in MANIFEST_MEDIA_TYPES:
        raise _invalid(f"unsupported manifest media type {media_type[:100]!r}", "mediaType")
    return media_type


# ---- manifests ----------------------------------------------------------------------------


def _opt_descriptor(doc: Mapping[str, Any], key: str) -> Descriptor | None:
    value = doc.get(key)
    return None if value is None else parse_descriptor(value, key)


def _parse_image(doc: Mapping[str, Any], media_type: str) -> Manifest:
    if "manifests" in doc:
        raise _invalid("an image manifest must not have a manifests field", "manifests")
    if "config" not in doc:
        raise _invalid("an image manifest needs a config descriptor", "config")
    oci = media_type in OCI_MEDIA_TYPES
    return Manifest(
        media_type=media_type,
        is_index=False,
        config=parse_descriptor(doc["config"], "config"),
        layers=_descriptor_list(doc, "layers"),
        manifests=(),
        subject=_opt_descriptor(doc, "subject") if oci else None,
        artifact_type=_opt_media_type(doc, "artifactType", "manifest") if oci else None,
        annotations=_annotations(doc, "manifest"),
    )


def _parse_index(doc: Mapping[str, Any], media_type: str) -> Manifest:
    for key in ("config", "layers"):
        if key in doc:
            raise _invalid(f"an index must not have a {key} field", key)
    children = _descriptor_list(doc, "manifests")
    if media_type == DOCKER_MANIFEST_LIST:
        for i, child in enumerate(children):
            if not child.is_manifest:
                raise _invalid(
                    f"manifests[{i}] has media type {child.media_type!r}, not a manifest type",
                    f"manifests[{i}].mediaType",
                )
    oci = media_type in OCI_MEDIA_TYPES
    return Manifest(
        media_type=media_type,
        is_index=True,
        config=None,
        layers=(),
        manifests=children,
        subject=_opt_descriptor(doc, "subject") if oci else None,
        artifact_type=_opt_media_type(doc, "artifactType", "manifest") if oci else None,
        annotations=_annotations(doc, "manifest"),
    )


def parse_manifest(body: bytes, content_type: str | None) -> Manifest:
    """Validate a manifest body; raises ManifestInvalid (or ManifestTooLarge) on any problem."""
    if len(body) > MAX_MANIFEST_BYTES:
        raise ManifestTooLarge(f"manifest is {len(body)} bytes, the limit is {MAX_MANIFEST_BYTES}")
    doc = _load_json(body)
    media_type = _effective_media_type(doc, content_type)
    if media_type in INDEX_MEDIA_TYPES:
        return _parse_index(doc, media_type)
    return _parse_image(doc, media_type)
