"""The blob routes: read (whole, a range, or HEAD) and delete."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from registry_core.errors import RangeNotSatisfiable
from registry_core.http.blob_response import BlobResponse
from registry_core.http.common import in_thread, who
from registry_core.http.ranges import Unsatisfiable, parse_range
from registry_core.registry import Registry


class BlobRoutes:
    """Handlers of /v2/<name>/blobs/<digest>; content is served from the blob store."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def get_blob(self, request: Request, name: str, digest: str) -> Response:
        info = self.registry.stat_blob(name, digest)
        headers = {"Docker-Content-Digest": str(info.digest), "ETag": f'"{info.digest}"'}
        try:
            byte_range = parse_range(request.headers.get("range"), info.size)
        except Unsatisfiable as exc:
            raise RangeNotSatisfiable(
                f"requested range not satisfiable: the blob has {exc.size} bytes",
                detail={"size": exc.size},
                headers={"Content-Range": f"bytes */{exc.size}"},
            ) from None
        return BlobResponse(
            self.registry.blob_store,
            info.digest,
            info.size,
            headers,
            byte_range,
            request.method == "HEAD",
        )

    async def delete_blob(self, request: Request, name: str, digest: str) -> Response:
        await in_thread(self.registry.delete_blob, name, digest, who=who(request))
        return Response(status_code=202)
