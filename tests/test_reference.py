"""Repository-name, tag and digest grammar (registry_core.reference)."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.errors import DigestInvalid, NameInvalid, Unsupported
from registry_core.reference import (
    SUPPORTED_ALGORITHMS,
    Digest,
    digest_bytes,
    is_digest_like,
    parse_digest,
    parse_reference,
    validate_name,
    validate_tag,
)

# The grammars as written in the distribution spec, compiled here independently of the module.
SPEC_NAME = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
SPEC_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")

ALNUM = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
SEPARATOR = st.sampled_from([".", "_", "__", "-", "--", "---"])


@st.composite
def path_components(draw: st.DrawFn) -> str:
    parts = [draw(ALNUM)]
    for _ in range(draw(st.integers(0, 3))):
        parts += [draw(SEPARATOR), draw(ALNUM)]
    return "".join(parts)


NAMES = st.lists(path_components(), min_size=1, max_size=6).map("/".join)


@given(NAMES)
def test_names_from_the_grammar_validate(name: str) -> None:
    if len(name) <= 255:
        assert validate_name(name) == name
    else:
        with pytest.raises(NameInvalid, match="255"):
            validate_name(name)


@given(st.text(max_size=300))
def test_strings_outside_the_grammar_are_rejected(text: str) -> None:
    valid = SPEC_NAME.fullmatch(text) is not None and len(text) <= 255
    if valid:
        assert validate_name(text) == text
    else:
        with pytest.raises(NameInvalid):
            validate_name(text)


@given(NAMES, st.sampled_from(["A", " ", "..", "/", "\x00", ":", "@", "é", "\n", "./"]))
def test_one_bad_character_anywhere_is_rejected(name: str, bad: str) -> None:
    for i in (0, len(name) // 2, len(name)):
        candidate = name[:i] + bad + name[i:]
        if SPEC_NAME.fullmatch(candidate) is None:
            with pytest.raises(NameInvalid):
                validate_name(candidate)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        ("/library/alpine", "starts with '/'"),
        ("library/../etc", "'..'"),
        ("a..b", "'..'"),
        ("lib\x00rary", "NUL"),
        ("library//alpine", "empty path component"),
        ("library/", "empty path component"),
        ("Library/alpine", "lowercase"),
        ("a" * 256, "256 characters"),
        ("-alpine", "lowercase"),
        ("alpine_", "lowercase"),
        ("a___b", "lowercase"),
    ],
)
def test_invalid_names_say_why(name: str, problem: str) -> None:
    with pytest.raises(NameInvalid) as info:
        validate_name(name)
    assert problem in str(info.value)
    assert info.value.code == "NAME_INVALID"


@pytest.mark.parametrize(
    "name", ["a", "library/alpine", "a.b_c__d-e---f", "x/y/z/0", "a" * 255, "my-org/tools/kubectl"]
)
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@given(st.from_regex(SPEC_TAG, fullmatch=True))
def test_tags_from_the_grammar_validate(tag: str) -> None:
    if tag.isascii():
        assert validate_tag(tag) == tag


@given(st.text(max_size=140))
def test_tags_outside_the_grammar_are_rejected(tag: str) -> None:
    if SPEC_TAG.fullmatch(tag) is not None and tag.isascii():
        assert validate_tag(tag) == tag
    else:
        with pytest.raises(NameInvalid, match="invalid tag"):
            validate_tag(tag)


@pytest.mark.parametrize("tag", ["", ".hidden", "-x", "a" * 129, "v1\n", "a:b", "a/b", "ü"])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(NameInvalid, match="invalid tag"):
        validate_tag(tag)


@pytest.mark.parametrize("tag", ["latest", "_x", "1.2.3-rc.1_b", "A" * 128])
def test_valid_tags(tag: str) -> None:
    assert validate_tag(tag) == tag


@given(st.binary(max_size=512), st.sampled_from(SUPPORTED_ALGORITHMS))
def test_digests_round_trip(data: bytes, algorithm: str) -> None:
    digest = digest_bytes(data, algorithm)
    assert digest.hex == hashlib.new(algorithm, data).hexdigest()
    assert parse_digest(str(digest)) == digest
    assert str(digest) == f"{algorithm}:{digest.hex}"
    hasher = digest.hasher()
    hasher.update(data)
    assert hasher.hexdigest() == digest.hex


@given(st.text("0123456789abcdef", min_size=64, max_size=64))
def test_any_sha256_hex_parses(hex_: str) -> None:
    assert parse_digest(f"sha256:{hex_}") == Digest("sha256", hex_)


def test_hasher_is_fresh_each_time() -> None:
    digest = digest_bytes(b"x")
    first = digest.hasher()
    first.update(b"abc")
    assert digest.hasher().hexdigest() == hashlib.sha256().hexdigest()


@pytest.mark.parametrize(
    "text",
    [
        "sha256",
        "sha256:",
        ":" + "a" * 64,
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:" + "g" * 64,
        "sha512:" + "a" * 64,
        "SHA256:" + "a" * 64,
        "sha256:" + "a" * 64 + "\n",
        "sha256: " + "a" * 64,
        "sha256:" + "a" * 32 + ":" + "a" * 31,
        "sha+:" + "a" * 64,
        "sha256:a+b",
    ],
)
def test_malformed_digests(text: str) -> None:
    with pytest.raises(DigestInvalid) as info:
        parse_digest(text)
    assert info.value.code == "DIGEST_INVALID"


@pytest.mark.parametrize(
    "text", ["sha384:" + "a" * 96, "blake3:" + "a" * 64, "multihash+base58:QmRZxt2b1FVZPNqd8hsi"]
)
def test_well_formed_other_algorithms_are_unsupported(text: str) -> None:
    with pytest.raises(Unsupported):
        parse_digest(text)


@given(st.text(max_size=200))
def test_parse_digest_raises_only_registry_errors(text: str) -> None:
    try:
        digest = parse_digest(text)
    except (DigestInvalid, Unsupported):
        return
    assert str(digest) == text


def test_unsupported_algorithm_for_hashing() -> None:
    with pytest.raises(Unsupported):
        digest_bytes(b"", "md5")


def test_sha512() -> None:
    digest = digest_bytes(b"abc", "sha512")
    assert len(digest.hex) == 128
    assert parse_digest(str(digest)) == digest


def test_parse_reference() -> None:
    digest = digest_bytes(b"manifest")
    assert parse_reference(str(digest)) == digest
    assert parse_reference("v1.0") == "v1.0"
    assert is_digest_like(str(digest))
    assert not is_digest_like("latest")
    with pytest.raises(NameInvalid):
        parse_reference("-bad")
    with pytest.raises(DigestInvalid):
        parse_reference("sha256:short")
