"""Manifest parsing and validation (registry_core.manifests)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry_core import manifests as m
from registry_core.errors import ManifestInvalid, ManifestTooLarge, RegistryError
from registry_core.reference import Digest, digest_bytes

CONFIG_BYTES = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'


def desc(media_type: str, content: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "mediaType": media_type,
        "digest": str(digest_bytes(content)),
        "size": len(content),
        **extra,
    }


def oci_manifest(**extra: Any) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": m.OCI_MANIFEST,
        "config": desc(m.OCI_CONFIG, CONFIG_BYTES),
        "layers": [desc(m.OCI_LAYER_GZIP, b"layer-1"), desc(m.OCI_LAYER_GZIP, b"layer-2")],
        **extra,
    }


def docker_manifest(**extra: Any) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": m.DOCKER_MANIFEST,
        "config": desc(m.DOCKER_CONFIG, CONFIG_BYTES),
        "layers": [desc(m.DOCKER_LAYER, b"layer-1")],
        **extra,
    }


def platform(arch: str, variant: str | None = None) -> dict[str, Any]:
    plat: dict[str, Any] = {"os": "linux", "architecture": arch}
    if variant:
        plat["variant"] = variant
    return plat


def index(media_type: str = m.OCI_INDEX, child_type: str = m.OCI_MANIFEST) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            desc(child_type, b"amd64", platform=platform("amd64")),
            desc(child_type, b"arm64", platform=platform("arm64", "v8")),
        ],
    }


def parse(doc: Any, content_type: str | None = None) -> m.Manifest:
    return m.parse_manifest(json.dumps(doc).encode(), content_type)


def invalid(doc: Any, match: str, content_type: str | None = None) -> None:
    with pytest.raises(ManifestInvalid, match=match):
        parse(doc, content_type)


# ---- the four kinds -----------------------------------------------------------------------


def test_oci_image_manifest() -> None:
    man = parse(oci_manifest(annotations={"b": "2", "a": "1"}), m.OCI_MANIFEST)
    assert man.media_type == m.OCI_MANIFEST
    assert not man.is_index
    assert man.config is not None and man.config.media_type == m.OCI_CONFIG
    assert [d.digest for d in man.layers] == [digest_bytes(b"layer-1"), digest_bytes(b"layer-2")]
    assert man.blob_descriptors() == (man.config, *man.layers)
    assert man.blob_descriptors()[0] is man.config
    assert man.child_descriptors() == ()
    assert man.platforms() == ()
    assert man.total_size() == len(CONFIG_BYTES) + 14
    assert man.effective_artifact_type() == m.OCI_CONFIG
    assert dict(man.annotations) == {"a": "1", "b": "2"}
    assert man.subject is None
    hash(man)


def test_docker_manifest() -> None:
    man = parse(docker_manifest(), m.DOCKER_MANIFEST)
    assert man.media_type == m.DOCKER_MANIFEST
    assert man.layers[0].media_type == m.DOCKER_LAYER
    assert man.effective_artifact_type() is None
    assert man.total_size() == len(CONFIG_BYTES) + 7


def test_oci_index() -> None:
    man = parse(index(), m.OCI_INDEX)
    assert man.is_index
    assert man.config is None and man.layers == ()
    assert man.blob_descriptors() == ()
    assert len(man.child_descriptors()) == 2
    assert [str(p) for p in man.platforms()] == ["linux/amd64", "linux/arm64/v8"]
    assert all(d.is_manifest for d in man.child_descriptors())
    assert man.total_size() == 0


def test_docker_manifest_list() -> None:
    man = parse(index(m.DOCKER_MANIFEST_LIST, m.DOCKER_MANIFEST), m.DOCKER_MANIFEST_LIST)
    assert man.is_index and man.media_type == m.DOCKER_MANIFEST_LIST
    assert man.platforms()[1] == m.Platform("linux", "arm64", "v8")


def test_docker_manifest_list_children_must_be_manifests() -> None:
    invalid(index(m.DOCKER_MANIFEST_LIST, m.DOCKER_LAYER), r"manifests\[0\] has media type")


def test_oci_index_may_hold_any_media_type_and_classifies_it() -> None:
    doc = index()
    doc["manifests"].append(desc("application/vnd.example.sbom+json", b"sbom"))
    doc["manifests"].append(desc(m.OCI_INDEX, b"nested"))
    man = parse(doc)
    assert [d.is_manifest for d in man.manifests] == [True, True, False, True]
    # Manifests must exist in the repository; other entries are blobs it must hold.
    assert [d.media_type for d in man.child_descriptors()].count(m.OCI_INDEX) == 1
    assert len(man.child_descriptors()) == 3
    assert [d.media_type for d in man.blob_descriptors()] == ["application/vnd.example.sbom+json"]


def test_platform_fields() -> None:
    doc = index()
    doc["manifests"][0]["platform"] = {
        "os": "windows",
        "architecture": "amd64",
        "os.version": "10.0.17763.1234",
        "os.features": ["win32k"],
    }
    plat = parse(doc).platforms()[0]
    assert plat == m.Platform("windows", "amd64", None, "10.0.17763.1234")
    assert str(plat) == "windows/amd64"
    doc["manifests"][0]["platform"] = {"os": "linux"}
    invalid(doc, r"platform.architecture is required")
    doc["manifests"][0]["platform"] = {"os": "linux", "architecture": "x", "os.features": "x"}
    invalid(doc, r"os.features must be a list")


# ---- media type resolution ----------------------------------------------------------------


def test_content_type_parameters_are_ignored() -> None:
    assert parse(oci_manifest(), f"{m.OCI_MANIFEST}; charset=utf-8").media_type == m.OCI_MANIFEST


def test_media_type_from_content_type_when_field_absent() -> None:
    doc = docker_manifest()
    del doc["mediaType"]
    assert parse(doc, m.DOCKER_MANIFEST).media_type == m.DOCKER_MANIFEST


def test_media_type_field_and_content_type_must_agree() -> None:
    invalid(oci_manifest(), "does not match Content-Type", m.DOCKER_MANIFEST)
    invalid(oci_manifest(), "does not match Content-Type", m.OCI_INDEX)


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "garbage"])
def test_content_type_must_be_a_manifest_type(content_type: str) -> None:
    invalid(oci_manifest(), "is not a manifest media type", content_type)


def test_body_must_be_utf8() -> None:
    body = json.dumps(oci_manifest()).encode("utf-16")
    with pytest.raises(ManifestInvalid, match="not UTF-8"):
        m.parse_manifest(body, m.OCI_MANIFEST)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [(oci_manifest(), m.OCI_MANIFEST), (index(), m.OCI_INDEX)],
)
def test_media_type_inferred_from_shape(doc: dict[str, Any], expected: str) -> None:
    del doc["mediaType"]
    assert parse(doc).media_type == expected


def test_shape_that_cannot_be_inferred() -> None:
    invalid({"schemaVersion": 2, "layers": []}, "cannot tell the manifest type")


@pytest.mark.parametrize(
    "media_type",
    ["application/vnd.oci.artifact.manifest.v1+json", "text/html", m.OCI_LAYER_GZIP],
)
def test_unknown_media_types(media_type: str) -> None:
    doc = oci_manifest(mediaType=media_type)
    invalid(doc, "unsupported manifest media type")
    del doc["mediaType"]
    invalid(doc, "is not a manifest media type", media_type)


def test_schema1_is_not_supported() -> None:
    schema1 = {"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": [], "history": []}
    invalid(schema1, "schema 1 manifests are not supported")
    invalid(schema1, "schema 1", m.DOCKER_SCHEMA1_SIGNED)
    invalid(oci_manifest(schemaVersion=2, mediaType=m.DOCKER_SCHEMA1), "schema 1")


@pytest.mark.parametrize("version", [None, 3, "2", 2.0, True, [2]])
def test_schema_version_must_be_2(version: Any) -> None:
    doc = oci_manifest(schemaVersion=version)
    invalid(doc, "schemaVersion must be 2")


def test_content_confusion_is_rejected() -> None:
    invalid(oci_manifest(manifests=[]), "must not have a manifests field")
    invalid({**index(), "layers": []}, "must not have a layers field")
    invalid({**index(), "config": oci_manifest()["config"]}, "must not have a config field")


# ---- structure ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'"x"', "must be a JSON object"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"[" * 100_000, "not valid JSON"),
        (b'{"schemaVersion": 2, "schemaVersion": 2}', "repeats the key"),
        (b'{"schemaVersion": NaN}', "non-JSON number"),
    ],
)
def test_bodies_that_are_not_json_objects(body: bytes, match: str) -> None:
    with pytest.raises(ManifestInvalid, match=match):
        m.parse_manifest(body, m.OCI_MANIFEST)


def test_manifest_needs_config_and_layers() -> None:
    doc = oci_manifest()
    del doc["config"]
    invalid(doc, "needs a config")
    doc = oci_manifest()
    del doc["layers"]
    invalid(doc, "layers must be a list")
    invalid(oci_manifest(layers={}), "layers must be a list")


def test_index_needs_manifests_list() -> None:
    invalid({"schemaVersion": 2, "mediaType": m.OCI_INDEX}, "manifests must be a list")


def test_oci_artifact_with_empty_config_and_no_layers() -> None:
    empty = b"{}"
    doc = oci_manifest(
        artifactType="application/vnd.example.sbom.v1",
        config=desc(m.OCI_EMPTY, empty, data=base64.b64encode(empty).decode()),
        layers=[],
    )
    man = parse(doc)
    assert man.layers == ()
    assert man.effective_artifact_type() == "application/vnd.example.sbom.v1"
    assert man.config is not None and man.config.data == b"{}"
    assert man.blob_descriptors() == (man.config,)


def test_subject() -> None:
    target = digest_bytes(b"the image")
    doc = oci_manifest(subject={"mediaType": m.OCI_MANIFEST, "digest": str(target), "size": 9})
    man = parse(doc)
    assert man.subject is not None and man.subject.digest == target
    invalid(oci_manifest(subject={"mediaType": m.OCI_MANIFEST}), "subject.digest is required")
    index_doc = {**index(), "subject": doc["subject"]}
    assert parse(index_doc).subject == man.subject


def test_subject_and_artifact_type_ignored_for_docker_types() -> None:
    target = str(digest_bytes(b"x"))
    doc = docker_manifest(
        subject={"mediaType": m.OCI_MANIFEST, "digest": target, "size": 1}, artifactType="a/b"
    )
    man = parse(doc)
    assert man.subject is None and man.artifact_type is None


def test_custom_fields_are_kept_out_of_the_way() -> None:
    doc = oci_manifest(**{"x-vendor": {"nested": [1, 2]}, "zz": None})
    doc["layers"][0]["x-extra"] = True
    man = parse(doc)
    assert len(man.layers) == 2


def test_foreign_layers_are_not_blobs() -> None:
    foreign = desc(
        m.DOCKER_FOREIGN_LAYER,
        b"windows base",
        urls=["https://mcr.microsoft.com/v2/windows/blobs/sha256:abc"],
    )
    nondist_without_urls = desc(m.OCI_NONDIST_LAYER_GZIP, b"kept")
    doc = docker_manifest(layers=[foreign, desc(m.DOCKER_LAYER, b"mine")])
    man = parse(doc)
    assert man.layers[0].is_foreign and not man.layers[1].is_foreign
    assert man.layers[0].urls == ("https://mcr.microsoft.com/v2/windows/blobs/sha256:abc",)
    assert man.blob_descriptors() == (man.config, man.layers[1])
    assert man.total_size() == len(CONFIG_BYTES) + len(b"windows base") + 4
    man = parse(oci_manifest(layers=[nondist_without_urls]))
    assert not man.layers[0].is_foreign
    assert man.blob_descriptors() == (man.config, man.layers[0])


def test_all_layer_media_types_are_known() -> None:
    assert len(m.LAYER_MEDIA_TYPES) == 4
    assert len(m.NON_DISTRIBUTABLE_MEDIA_TYPES) == 4
    assert len(m.MANIFEST_MEDIA_TYPES) == 4
    assert {m.OCI_INDEX, m.DOCKER_MANIFEST_LIST} == m.INDEX_MEDIA_TYPES


# ---- descriptor validation ----------------------------------------------------------------


def layer_with(**fields: Any) -> dict[str, Any]:
    layer = desc(m.OCI_LAYER_GZIP, b"layer-1")
    layer.update(fields)
    return oci_manifest(layers=[layer])


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"mediaType": None}, r"layers\[0\].mediaType is required"),
        ({"mediaType": 5}, "must be a string"),
        ({"mediaType": "not a media type"}, "not a valid media type"),
        ({"digest": "sha256:abc"}, r"layers\[0\].digest: invalid digest"),
        ({"digest": "sha384:" + "a" * 96}, r"layers\[0\].digest: .*not supported"),
        ({"digest": 12}, "must be a string"),
        ({"size": -1}, "size must be an integer"),
        ({"size": True}, "size must be an integer"),
        ({"size": 7.0}, "size must be an integer"),
        ({"size": "7"}, "size must be an integer"),
        ({"size": 1 << 63}, "size must be an integer"),
        ({"urls": "https://x"}, "urls must be a list of strings"),
        ({"urls": [1]}, "urls must be a list of strings"),
        ({"annotations": {"a": 1}}, "annotations must map strings"),
        ({"annotations": []}, "annotations must map strings"),
        ({"artifactType": "nope"}, "not a valid media type"),
        ({"data": "!!!"}, "data is not valid base64"),
        ({"data": base64.b64encode(b"layer-").decode()}, "holds 6 bytes, size says 7"),
        ({"data": base64.b64encode(b"layer-X").decode()}, "does not match digest"),
    ],
)
def test_bad_descriptor_fields(fields: dict[str, Any], match: str) -> None:
    invalid(layer_with(**fields), match)


def test_descriptor_digest_error_has_detail() -> None:
    with pytest.raises(ManifestInvalid) as info:
        parse(layer_with(digest="sha256:XYZ"))
    assert info.value.detail == {"field": "layers[0].digest", "digest": "sha256:XYZ"}


def test_descriptor_with_valid_data_and_extras() -> None:
    man = parse(
        layer_with(
            data=base64.b64encode(b"layer-1").decode(),
            urls=["https://example.com/l1"],
            annotations={"org.opencontainers.image.title": "l1.tgz"},
            artifactType="application/vnd.example+type",
        )
    )
    layer = man.layers[0]
    assert layer.data == b"layer-1"
    assert layer.annotations == (("org.opencontainers.image.title", "l1.tgz"),)
    assert layer.artifact_type == "application/vnd.example+type"
    assert not layer.is_foreign
    hash(layer)


def test_sha512_descriptor() -> None:
    digest = digest_bytes(b"layer-1", "sha512")
    man = parse(layer_with(digest=str(digest)))
    assert man.layers[0].digest == Digest("sha512", digest.hex)


def test_max_manifest_bytes() -> None:
    assert m.MAX_MANIFEST_BYTES == 4 * 1024 * 1024 == 4_194_304
    doc = oci_manifest(annotations={"pad": ""})
    base = len(json.dumps(doc).encode())
    doc["annotations"]["pad"] = "x" * (m.MAX_MANIFEST_BYTES - base)
    body = json.dumps(doc).encode()
    assert len(body) == m.MAX_MANIFEST_BYTES
    assert m.parse_manifest(body, None).media_type == m.OCI_MANIFEST
    with pytest.raises(ManifestTooLarge):
        m.parse_manifest(body + b" ", None)


def test_body_is_not_mutated() -> None:
    body = bytearray(json.dumps(oci_manifest(), indent=3).encode())
    before = bytes(body)
    m.parse_manifest(bytes(body), None)
    assert body == before


# ---- properties ---------------------------------------------------------------------------

JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(
    [
        "schemaVersion",
        "mediaType",
        "config",
        "layers",
        "manifests",
        "subject",
        "artifactType",
        "annotations",
        "digest",
        "size",
        "urls",
        "data",
        "platform",
        "os",
        "architecture",
    ]
)
VALUES = st.one_of(
    JSON_VALUES,
    st.just(2),
    st.sampled_from(sorted(m.MANIFEST_MEDIA_TYPES | m.LAYER_MEDIA_TYPES)),
    st.just(str(digest_bytes(b"x"))),
    st.just("eA=="),
)
MANIFEST_LIKE = st.recursive(
    VALUES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=8),
    max_leaves=30,
)
CONTENT_TYPES = st.none() | st.sampled_from(sorted(m.MANIFEST_MEDIA_TYPES)) | st.text(max_size=30)


def parse_or_registry_error(body: bytes, content_type: str | None) -> None:
    try:
        man = m.parse_manifest(body, content_type)
    except RegistryError:
        return
    assert man.media_type in m.MANIFEST_MEDIA_TYPES
    hash(man)


@given(st.binary(max_size=2000), CONTENT_TYPES)
def test_arbitrary_bytes_raise_only_registry_errors(body: bytes, content_type: str | None) -> None:
    parse_or_registry_error(body, content_type)


@given(JSON_VALUES, CONTENT_TYPES)
def test_arbitrary_json_raises_only_registry_errors(doc: Any, content_type: str | None) -> None:
    parse_or_registry_error(json.dumps(doc).encode(), content_type)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, MANIFEST_LIKE, max_size=8), CONTENT_TYPES)
def test_manifest_shaped_json_raises_only_registry_errors(
    doc: dict[str, Any], content_type: str | None
) -> None:
    parse_or_registry_error(json.dumps(doc).encode(), content_type)


@given(
    st.lists(st.binary(max_size=30), max_size=5),
    st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
)
def test_generated_manifests_parse_back(layers: list[bytes], annotations: dict[str, str]) -> None:
    doc = oci_manifest(layers=[desc(m.OCI_LAYER, b) for b in layers], annotations=annotations)
    man = parse(doc)
    assert [d.digest for d in man.layers] == [digest_bytes(b) for b in layers]
    assert man.total_size() == len(CONFIG_BYTES) + sum(len(b) for b in layers)
    assert dict(man.annotations) == annotations
