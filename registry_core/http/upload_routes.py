"""The upload routes: start (or mount, or push whole), status, append, finish, cancel.

A small body with a declared length is read whole and handed to the core in one call; any
other is streamed into the session's file by a writer the request claims for its duration.
"""

from __future__ import annotations

import asyncio
import re

from starlette.requests import Request
from starlette.responses import Response

from registry_core.errors import BlobUploadInvalid, RangeInvalid, SizeInvalid
from registry_core.http.common import Stats, in_thread, who
from registry_core.http.limits import UploadSlots, upload_slot
from registry_core.http.streaming import read_limited, receive_into
from registry_core.reference import Digest, parse_digest
from registry_core.registry import Registry
from registry_core.store.blobs import HashingWriter

SMALL_BODY_BYTES = 4 << 20
_RANGE = re.compile(r"(?:bytes[ =])?([0-9]+)-([0-9]+)")


class UploadRoutes:
    """Handlers of /v2/<name>/blobs/uploads/...; each holds an upload slot while its body
    arrives (`upload_slot`)."""

    def __init__(self, registry: Registry, stats: Stats, upload_slots: UploadSlots) -> None:
        self.registry = registry
        self.stats = stats
        self.upload_slots = upload_slots

    @upload_slot
    async def start_upload(self, request: Request, name: str) -> Response:
        params = request.query_params
        mount, source = params.get("mount"), params.get("from")
        if mount and source:
            info = await in_thread(
                self.registry.mount_blob, name, mount, source, who=who(request)
            )
            if info is not None:
                return _blob_created(name, info.digest)
        digest = params.get("digest")
        expected = _content_length(request)
        if digest is not None:
            final = parse_digest(digest)
            body = await _small_body(request, expected)
            if body is not None:  # a monolithic upload in one step, no session
                info = await in_thread(
                    self.registry.put_blob, name, body, final, who=who(request)
                )
                self.stats.bytes_in += len(body)
                return _blob_created(name, info.digest)
        upload = await in_thread(self.registry.start_upload, name, expected or 0)
        if digest is None:
            return _upload_accepted(name, upload.id, upload.size)
        return await self._write_and_finish(request, name, upload.id, None, final)

    async def upload_status(self, request: Request, name: str, upload_id: str) -> Response:
        upload = self.registry.upload_status(name, upload_id)
        return _upload_accepted(name, upload.id, upload.size, status=204)

    @upload_slot
    async def patch_upload(self, request: Request, name: str, upload_id: str) -> Response:
        start, expected = _content_range(request)
        body = await _small_body(request, expected)
        if body is not None:
            upload = await in_thread(self.registry.append_chunk, name, upload_id, start, body)
            self.stats.bytes_in += len(body)
            return _upload_accepted(name, upload.id, upload.size)
        # A body of unknown length (chunked) is refused too once the reserve is reached.
        # In a thread: a refusal is counted with a database write.
        await in_thread(self.registry.check_room, expected or 0)
        writer = await self._claim(name, upload_id, start)
        try:
            self.stats.bytes_in += await receive_into(request.stream(), writer, expected)
            upload = await in_thread(self.registry.save_progress, name, upload_id, writer)
        finally:
            self.registry.release_writer(upload_id)
        return _upload_accepted(name, upload.id, upload.size)

    @upload_slot
    async def finish_upload(self, request: Request, name: str, upload_id: str) -> Response:
        digest = request.query_params.get("digest")
        if not digest:
            raise BlobUploadInvalid("the digest query parameter is required to finish an upload")
        final = parse_digest(digest)
        start, _ = _content_range(request)
        return await self._write_and_finish(request, name, upload_id, start, final)

    async def _write_and_finish(
        self, request: Request, name: str, upload_id: str, start: int | None, final: Digest
    ) -> Response:
        expected = _content_length(request)
        body = await _small_body(request, expected)
        if body is not None:
            info = await in_thread(
                self.registry.finish_with_chunk, name, upload_id, start, body, final,
                who=who(request),
            )
            self.stats.bytes_in += len(body)
            return _blob_created(name, info.digest)
        if expected:
            await in_thread(self.registry.check_room, expected)
        writer = await self._claim(name, upload_id, start)
        try:
            self.stats.bytes_in += await receive_into(request.stream(), writer, expected)
            info = await in_thread(
                self.registry.finish_upload, name, upload_id, writer, final, who=who(request)
            )
        finally:
            self.registry.release_writer(upload_id)
        return _blob_created(name, info.digest)

    async def _claim(self, name: str, upload_id: str, start: int | None) -> HashingWriter:
        """Claim the session's writer in a thread. If this request is cancelled meanwhile,
        the claim the thread still makes is released, not leaked."""
        claim = asyncio.ensure_future(
            in_thread(self.registry.claim_writer, name, upload_id, start)
        )
        try:
            return await asyncio.shield(claim)
        except asyncio.CancelledError:
            claim.add_done_callback(lambda done: self._release_claimed(done, upload_id))
            raise

    def _release_claimed(self, done: asyncio.Future[HashingWriter], upload_id: str) -> None:
        if not done.cancelled() and done.exception() is None:
            self.registry.release_writer(upload_id)

    async def cancel_upload(self, request: Request, name: str, upload_id: str) -> Response:
        await in_thread(self.registry.cancel_upload, name, upload_id)
        return Response(status_code=204)


def _blob_created(name: str, digest: Digest) -> Response:
    return Response(
        status_code=201,
        headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": str(digest)},
    )


def _upload_accepted(name: str, upload_id: str, size: int, status: int = 202) -> Response:
    return Response(
        status_code=status,
        headers={
            "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
            "Range": f"0-{max(size - 1, 0)}",
            "Docker-Upload-UUID": upload_id,
            "Content-Length": "0",
        },
    )


async def _small_body(request: Request, length: int | None) -> bytes | None:
    """The whole body when its declared length is small (then the request is one call into
    the core, one thread hop); None for a big or undeclared one, which is streamed."""
    if length is None or length > SMALL_BODY_BYTES:
        return None
    body = await read_limited(request.stream(), length)
    if body is None or len(body) != length:
        raise SizeInvalid(f"the body does not match its declared length of {length} bytes")
    return body


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise SizeInvalid(f"invalid Content-Length {value!r}")
    return int(value)


def _content_range(request: Request) -> tuple[int | None, int | None]:
    """(first byte, length) from Content-Range, checked against Content-Length."""
    length = _content_length(request)
    value = request.headers.get("content-range")
    if value is None:
        return None, length
    match = _RANGE.fullmatch(value.strip())
    if match is None:
        raise BlobUploadInvalid(f"invalid Content-Range {value!r}")
    start, end = int(match[1]), int(match[2])
    if end < start:
        raise RangeInvalid(f"invalid Content-Range {value!r}")
    if length is not None and length != end - start + 1:
        raise SizeInvalid(f"Content-Range {value!r} does not match Content-Length {length}")
    return start, end - start + 1
