"""An OCI image layout (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`) read into images.

Every entry of index.json is an image, named by its annotations (naming.py); entries that
point at the same manifest under one repository are one image with several tags. An index
comes with its children (nested indexes too), and a manifest whose `subject` is in the
layout is a referrer: it goes with its subject's image, untagged. Manifests are read whole
and checked against their digest; blobs are only located here (their size checked), and
hashed when an import streams them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from registry_core.errors import RegistryError
from registry_core.manifests import MAX_MANIFEST_BYTES, Manifest, parse_manifest
from registry_core.reference import Digest, digest_bytes, parse_digest
from registry_core.transfer.errors import SourceInvalid
from registry_core.transfer.model import SourceBlob, SourceImage, SourceManifest
from registry_core.transfer.naming import ImageName, name_from_annotations
from registry_core.transfer.source import Source

MAX_INDEX_JSON = 64 << 20


def blob_member(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex}"


def is_layout(source: Source) -> bool:
    return source.size("oci-layout") is not None and source.size("index.json") is not None


def load_json(source: Source, name: str, limit: int) -> object:
    try:
        return json.loads(source.read_small(name, limit))
    except (ValueError, UnicodeDecodeError) as exc:
        raise SourceInvalid(f"{source.path}: {name} is not valid JSON ({exc})") from None
    except RecursionError:
        raise SourceInvalid(f"{source.path}: {name} is damaged (nested too deep to be "
                            "JSON a tool wrote)") from None


@dataclass
class _Entry:
    name: ImageName | None
    manifest: SourceManifest
    parsed: Manifest


@dataclass
class LayoutReader:
    source: Source
    repository: str | None
    """Where images named by a bare tag go."""
    _manifests: dict[Digest, tuple[SourceManifest, Manifest]] = field(default_factory=dict)

    def read(self) -> list[SourceImage]:
        version = load_json(self.source, "oci-layout", 4096)
        if not isinstance(version, dict) or "imageLayoutVersion" not in version:
            raise SourceInvalid(f"{self.source.path}: oci-layout has no imageLayoutVersion")
        entries = [self._entry(d, i) for i, d in enumerate(self._index_entries())]
        referrers = [e for e in entries if e.parsed.subject is not None]
        images: dict[tuple[str, Digest], SourceImage] = {}
        listed = {c for e in entries for c in self._descendants(e.manifest.digest)}
        for entry in entries:
            if entry.parsed.subject is not None and entry.name is None:
                continue  # a referrer: it goes with its subject
            if entry.name is None and entry.manifest.digest in listed:
                continue  # a child of an index that is imported anyway
            key = (entry.name.repository if entry.name else "", entry.manifest.digest)
            image = images.get(key) or self._image(entry, referrers)
            images[key] = image
            if entry.name is not None and entry.name.tag and entry.name.tag not in image.tags:
                image.tags.append(entry.name.tag)
        return list(images.values())

    def _index_entries(self) -> list[dict[str, object]]:
        index = load_json(self.source, "index.json", MAX_INDEX_JSON)
        entries = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise SourceInvalid(f"{self.source.path}: index.json has no list of manifests")
        return entries

    def _entry(self, doc: dict[str, object], position: int) -> _Entry:
        try:
            digest = parse_digest(str(doc.get("digest")))
        except RegistryError as exc:
            raise SourceInvalid(f"{self.source.path}: index.json entry {position}: {exc}") \
                from None
        annotations = doc.get("annotations")
        texts = {str(k): str(v) for k, v in annotations.items()} \
            if isinstance(annotations, dict) else {}
        media_type = doc.get("mediaType")
        size = doc.get("size")
        where = f"{self.source.path}: index.json entry {position} ({digest})"
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise SourceInvalid(f"{where}: size {str(size)[:40]!r} is not a byte count")
        manifest, parsed = self.manifest(digest, media_type if isinstance(media_type, str)
                                         else None)
        if len(manifest.body) != size:
            raise SourceInvalid(f"{where} says {size} bytes, {blob_member(digest)} has "
                                f"{len(manifest.body)}: a damaged layout")
        return _Entry(name_from_annotations(texts, self.repository), manifest, parsed)

    def manifest(self, digest: Digest, media_type: str | None) -> tuple[SourceManifest, Manifest]:
        """A manifest of the layout, read once and checked against its digest."""
        known = self._manifests.get(digest)
        if known is not None:
            return known
        member = blob_member(digest)
        body = self.source.read_small(member, MAX_MANIFEST_BYTES)
        if digest_bytes(body, digest.algorithm) != digest:
            raise SourceInvalid(f"{self.source.path}: {member} does not match its digest "
                                f"(it hashes to {digest_bytes(body, digest.algorithm)})")
        try:
            parsed = parse_manifest(body, media_type)
        except RegistryError as exc:
            raise SourceInvalid(f"{self.source.path}: {member}: {exc}") from None
        self._manifests[digest] = (SourceManifest(digest, body, parsed.media_type), parsed)
        return self._manifests[digest]

    def _descendants(self, digest: Digest) -> list[Digest]:
        _, parsed = self._manifests[digest]
        found: list[Digest] = []
        for child in parsed.child_descriptors():
            body = self.manifest(child.digest, child.media_type)[0].body
            if len(body) != child.size:
                raise SourceInvalid(f"{self.source.path}: index {digest} says {child.digest} "
                                    f"has {child.size} bytes, {blob_member(child.digest)} "
                                    f"has {len(body)}: a damaged layout")
            found += [*self._descendants(child.digest), child.digest]
        return found

    def _image(self, entry: _Entry, referrers: list[_Entry]) -> SourceImage:
        top = entry.manifest.digest
        order = [*self._descendants(top), top]
        members = set(order)
        order += [r.manifest.digest for r in referrers
                  if r.parsed.subject is not None and r.parsed.subject.digest in members
                  and r.manifest.digest not in members]
        manifests = [self._manifests[d][0] for d in dict.fromkeys(order)]
        image = SourceImage(
            repository=entry.name.repository if entry.name else "",
            tags=[], digest=top, media_type=entry.manifest.media_type, manifests=manifests,
            platforms=tuple(str(p) for p in entry.parsed.platforms()),
        )
        for manifest in manifests:
            for blob in self._manifests[manifest.digest][1].blob_descriptors():
                image.blobs[blob.digest] = self._blob(blob.digest, blob.size, manifest.digest)
        return image

    def _blob(self, digest: Digest, size: int, listed_by: Digest) -> SourceBlob:
        member = blob_member(digest)
        found = self.source.size(member)
        if found is None:
            raise SourceInvalid(f"{self.source.path}: blob {digest} (listed by manifest "
                                f"{listed_by}): {member} {self.source.absent(member)}")
        if found != size:
            raise SourceInvalid(f"{self.source.path}: {member} has {found} bytes, its "
                                f"manifest says {size}")
        return SourceBlob(digest, size, member)
