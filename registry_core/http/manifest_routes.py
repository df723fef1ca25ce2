"""The manifest routes (get, put, delete) and the referrers listing."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from registry_core.errors import ManifestInvalid, ManifestTooLarge
from registry_core.http.common import in_thread, who
from registry_core.http.manifest_cache import ManifestCache
from registry_core.http.streaming import read_limited
from registry_core.manifests import MAX_MANIFEST_BYTES, OCI_INDEX
from registry_core.reference import parse_digest
from registry_core.registry import Registry


class ManifestRoutes:
    """Handlers of /v2/<name>/manifests/<reference> and /v2/<name>/referrers/<digest>;
    small manifests are served from the app's cache."""

    def __init__(self, registry: Registry, cache: ManifestCache) -> None:
        self.registry = registry
        self.cache = cache

    async def get_manifest(self, request: Request, name: str, reference: str) -> Response:
        # Clients such as skopeo send one Accept header per media type: read them all.
        accept = ", ".join(request.headers.getlist("accept"))
        stored, body = self.cache.lookup(name, reference, accept)
        headers = {
            "Docker-Content-Digest": str(stored.digest),
            "Content-Type": stored.media_type,
            "Content-Length": str(stored.size),
            "ETag": f'"{stored.digest}"',
        }
        if request.method == "HEAD":
            return Response(headers=headers)
        if body is None:  # a big one (rare) is read off the loop
            body = await in_thread(stored.body)
        return Response(body, headers=headers, media_type=stored.media_type)

    async def put_manifest(self, request: Request, name: str, reference: str) -> Response:
        length = request.headers.get("content-length")
        if (
            length is not None
            and length.isascii()
            and length.isdigit()
            and int(length) > MAX_MANIFEST_BYTES
        ):
            raise ManifestTooLarge(detail={"size": int(length), "limit": MAX_MANIFEST_BYTES})
        content_types = request.headers.getlist("content-type")
        if len(content_types) > 1:
            raise ManifestInvalid("send one Content-Type header, not several")
        body = await read_limited(request.stream(), MAX_MANIFEST_BYTES)
        if body is None:
            raise ManifestTooLarge(detail={"limit": MAX_MANIFEST_BYTES})
        content_type = content_types[0] if content_types else None
        result = await in_thread(
            self.registry.put_manifest, name, reference, body, content_type, who=who(request)
        )
        headers = {
            "Location": f"/v2/{name}/manifests/{result.digest}",
            "Docker-Content-Digest": str(result.digest),
        }
        if result.subject is not None:
            headers["OCI-Subject"] = str(result.subject)
        return Response(status_code=201, headers=headers)

    async def delete_manifest(self, request: Request, name: str, reference: str) -> Response:
        await in_thread(self.registry.delete_manifest, name, reference, who=who(request))
        return Response(status_code=202)

    async def referrers(self, request: Request, name: str, digest: str) -> Response:
        artifact_type = request.query_params.get("artifactType") or None
        found = self.registry.referrers(name, parse_digest(digest), artifact_type)
        manifests = []
        for r in found:
            entry: dict[str, Any] = {"mediaType": r.media_type, "digest": r.digest, "size": r.size}
            if r.artifact_type:
                entry["artifactType"] = r.artifact_type
            if r.annotations:
                entry["annotations"] = r.annotations
            manifests.append(entry)
        headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
        body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        return Response(
            json.dumps(body, separators=(",", ":")), headers=headers, media_type=OCI_INDEX
        )
