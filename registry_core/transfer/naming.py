"""Image names in layouts and archives, and the repository:tag each image is stored under.

An OCI layout names an image with `org.opencontainers.image.ref.name` (skopeo writes the bare
tag, `v1`; others a whole reference) and, from containerd and Docker 25 on,
`io.containerd.image.name` (`docker.io/library/busybox:latest`). A docker-archive names them
in `RepoTags`. A registry host in front of a name is dropped (the image now lives here), and
so is Docker Hub's `library/`. A bare tag goes to the repository named by the caller, else
the one named after the file or directory (`/media/usb/web.tar` -> `web`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from registry_core.errors import RegistryError
from registry_core.reference import (
    TAG_RE,
    Digest,
    parse_digest,
    validate_name,
    validate_tag,
)
from registry_core.transfer.errors import NamingError

REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"
DOCKER_HUB = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".oci", ".gz")


@dataclass(frozen=True)
class ImageName:
    """A repository with a tag or a digest (or neither: a whole repository, for export)."""

    repository: str
    tag: str | None = None
    digest: Digest | None = None

    def __str__(self) -> str:
        if self.digest is not None:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag}" if self.tag else self.repository


def parse_name(text: str, *, drop_host: bool = True) -> ImageName:
    """`[host/]repo[:tag][@digest]`; NamingError when it is not a valid name here."""
    try:
        return _parsed(text, drop_host)
    except RegistryError as exc:
        raise NamingError(f"cannot store {text[:200]!r} here: {exc}") from None


def parse_reference(text: str) -> ImageName:
    """An image of this registry to export: `repo[:tag][@digest]`, or a whole `repo`."""
    try:
        return _parsed(text, drop_host=False)
    except RegistryError as exc:
        raise NamingError(f"cannot export {text[:200]!r}: not a valid image reference "
                          f"({exc})") from None


def _parsed(text: str, drop_host: bool) -> ImageName:
    rest, at, digest_text = text.strip().partition("@")
    first, slash, after = rest.partition("/")
    if drop_host and slash and ("." in first or ":" in first or first == "localhost"):
        rest = after.removeprefix("library/") if first in DOCKER_HUB else after
    repository, tag = rest, None
    if ":" in rest.rsplit("/", 1)[-1]:
        repository, _, tag = rest.rpartition(":")
    validate_name(repository)
    if tag is not None:
        validate_tag(tag)
    digest = parse_digest(digest_text) if at else None
    return ImageName(repository, tag, digest)


def is_bare_tag(text: str) -> bool:
    return TAG_RE.fullmatch(text) is not None


def name_from_annotations(annotations: dict[str, str], repository: str | None) -> ImageName | None:
    """The name an index.json entry gives its image; None when it gives none. A bare tag
    goes to `repository` (NamingError when there is none)."""
    full = annotations.get(IMAGE_NAME)
    ref = annotations.get(REF_NAME)
    if full:
        name = parse_name(full)
        if name.tag is None and name.digest is None and ref and is_bare_tag(ref):
            return ImageName(name.repository, ref)
        return name
    if not ref:
        return None
    if is_bare_tag(ref):
        if repository is None:
            raise NamingError(f"the image tagged {ref!r} has no repository name: give one "
                              "with --repository NAME (or --tag REPO:TAG)")
        return ImageName(repository, ref)
    return parse_name(ref)


def repository_from_path(path: Path) -> str | None:
    """A repository named after the layout or archive (`web.tar` -> `web`), if valid."""
    stem = path.resolve().name.lower()
    for suffix in _SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    stem = re.sub(r"[^a-z0-9._/-]+", "-", stem).strip("-._")
    try:
        return validate_name(stem)
    except RegistryError:
        return None


def parse_tag_option(text: str) -> ImageName:
    """`--tag REPO:TAG`."""
    name = parse_name(text, drop_host=False)
    if name.tag is None or name.digest is not None:
        raise NamingError(f"--tag wants REPO:TAG, not {text[:200]!r}")
    return name
