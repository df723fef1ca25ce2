"""Repository-name, tag and digest grammar of the OCI distribution spec (v1.1). Pure.

Grammar (distribution-spec "Pulling manifests" and image-spec "Digests"):

    name      [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*
    tag       [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
    digest    algorithm ":" encoded
    algorithm algorithm-component (algorithm-separator algorithm-component)*
              algorithm-component [a-z0-9]+ ; algorithm-separator [+._-]
    encoded   [a-zA-Z0-9=_-]+
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from registry_core.errors import BlobUploadUnknown, DigestInvalid, NameInvalid, Unsupported

if TYPE_CHECKING:
    from hashlib import _Hash

MAX_NAME_LENGTH = 255
MAX_TAG_LENGTH = 128
SUPPORTED_ALGORITHMS: tuple[str, ...] = ("sha256", "sha512")
HEX_LENGTHS: dict[str, int] = {"sha256": 64, "sha512": 128}

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
ALGORITHM_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*")
ENCODED_RE = re.compile(r"[a-zA-Z0-9=_-]+")
LOWER_HEX_RE = re.compile(r"[a-f0-9]+")
# Upload ids are ours (uuid4, lowercase): anything else cannot name an upload.
UPLOAD_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _name_problem(name: str) -> str | None:
    """The first thing wrong with a repository name, or None when it is valid."""
    if not name:
        return "repository name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"repository name is {len(name)} characters long, the limit is {MAX_NAME_LENGTH}"
    if "\x00" in name:
        return "repository name contains a NUL character"
    if name.startswith("/"):
        return "repository name starts with '/'"
    if ".." in name:
        return "repository name contains '..'"
    if "//" in name or name.endswith("/"):
        return "repository name has an empty path component"
    if NAME_RE.fullmatch(name) is None:
        return (
            "repository name must be lowercase path components of [a-z0-9] joined by "
            "'.', '_', '__' or '-' and separated by '/'"
        )
    return None


def validate_name(name: str) -> str:
    """Return `name` when it is a valid repository name; raise NameInvalid naming the problem."""
    problem = _name_problem(name)
    if problem is not None:
        shown = name[:300]
        raise NameInvalid(f"invalid repository name {shown!r}: {problem}", detail={"name": shown})
    return name


def validate_tag(tag: str) -> str:
    """Return `tag` when it matches the tag grammar; raise NameInvalid otherwise."""
    if len(tag) > MAX_TAG_LENGTH or TAG_RE.fullmatch(tag) is None:
        raise NameInvalid(
            f"invalid tag {tag[:200]!r}: must match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}",
            detail={"tag": tag[:200]},
        )
    return tag


def validate_upload_id(upload_id: str) -> str:
    """Return `upload_id` when it can name an upload session; BlobUploadUnknown otherwise."""
    if UPLOAD_ID_RE.fullmatch(upload_id) is None:
        raise BlobUploadUnknown(detail={"uuid": upload_id[:100]})
    return upload_id


@dataclass(frozen=True)
class Digest:
    """A content digest such as `sha256:<64 lowercase hex>`."""

    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def hasher(self) -> _Hash:
        """A fresh hashlib object for this digest's algorithm."""
        return new_hasher(self.algorithm)


def new_hasher(algorithm: str) -> _Hash:
    """A fresh hashlib object for a supported algorithm; Unsupported otherwise."""
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise Unsupported(f"digest algorithm {algorithm!r} is not supported")
    return hashlib.new(algorithm)


def _malformed(text: str, why: str) -> DigestInvalid:
    return DigestInvalid(f"invalid digest {text[:200]!r}: {why}", detail={"digest": text[:200]})


def parse_digest(text: str) -> Digest:
    """Parse `algorithm:encoded`; DigestInvalid when malformed, Unsupported for other algorithms."""
    algorithm, sep, encoded = text.partition(":")
    if not sep:
        raise _malformed(text, "missing ':' between algorithm and encoded part")
    if ALGORITHM_RE.fullmatch(algorithm) is None:
        raise _malformed(text, "malformed algorithm")
    if ENCODED_RE.fullmatch(encoded) is None:
        raise _malformed(text, "malformed encoded part")
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise Unsupported(
            f"digest algorithm {algorithm!r} is not supported (use sha256 or sha512)",
            detail={"digest": text[:200]},
        )
    expected = HEX_LENGTHS[algorithm]
    if len(encoded) != expected or LOWER_HEX_RE.fullmatch(encoded) is None:
        raise _malformed(text, f"{algorithm} needs {expected} lowercase hex characters")
    return Digest(algorithm, encoded)


def as_digest(value: Digest | str) -> Digest:
    """A Digest as is, a string parsed."""
    return value if isinstance(value, Digest) else parse_digest(value)


def verify_digest(expected: Digest, actual: Digest) -> None:
    """DigestInvalid unless the content's digest is the one the client named."""
    if actual != expected:
        raise DigestInvalid(
            f"digest {expected} does not match the uploaded content ({actual})",
            detail={"expected": str(expected), "actual": str(actual)},
        )


def digest_bytes(data: bytes, algorithm: str = "sha256") -> Digest:
    """The digest of `data` under a supported algorithm."""
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return Digest(algorithm, hasher.hexdigest())


def is_digest_like(reference: str) -> bool:
    """True when a manifest reference is meant as a digest rather than a tag."""
    return ":" in reference


def parse_reference(reference: str) -> Digest | str:
    """A manifest reference: a Digest when it contains ':', else a validated tag."""
    if is_digest_like(reference):
        return parse_digest(reference)
    return validate_tag(reference)
