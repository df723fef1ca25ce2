"""The answer to a blob GET or HEAD: the whole blob, or one byte range of it.

A whole blob goes out through the server's `pathsend` extension when the server has one and
the blob store has a local file for it (granian then sends the file from its own threads,
never through Python); otherwise, and for a range, the store's reader is read in chunks off
the event loop, so memory stays at one chunk whatever the blob's size.
"""

from __future__ import annotations

import asyncio
from typing import BinaryIO

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from registry_core.http.ranges import ByteRange
from registry_core.reference import Digest
from registry_core.store.blobs import BlobStore

CHUNK_BYTES = 1 << 20


class BlobResponse(Response):
    def __init__(
        self,
        store: BlobStore,
        digest: Digest,
        size: int,
        headers: dict[str, str],
        byte_range: ByteRange | None = None,
        head: bool = False,
    ) -> None:
        self.store = store
        self.digest = digest
        self.byte_range = byte_range
        self.head = head
        self.background = None
        self.status_code = 200 if byte_range is None else 206
        headers = {
            **headers,
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size if byte_range is None else byte_range.length),
            "Accept-Ranges": "bytes",
        }
        if byte_range is not None:
            headers["Content-Range"] = byte_range.content_range()
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        if self.head:
            await send({**start, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": b""})
            return
        if self.byte_range is None and "http.response.pathsend" in scope.get("extensions", {}):
            path = self.store.local_path(self.digest)
            if path is not None:
                await send({**start, "headers": self.raw_headers})
                await send({"type": "http.response.pathsend", "path": str(path)})
                return
        first, length = (
            (0, -1)
            if self.byte_range is None
            else (
                self.byte_range.first,
                self.byte_range.length,
            )
        )
        loop = asyncio.get_running_loop()
        # Opened before the status line: a blob swept away since its stat fails here cleanly.
        file = await loop.run_in_executor(
            None, self.store.open_range, self.digest, first, None if length < 0 else length
        )
        try:
            await send({**start, "headers": self.raw_headers})
            await _send_file(send, loop, file, length)
        finally:
            await loop.run_in_executor(None, file.close)


async def _send_file(
    send: Send, loop: asyncio.AbstractEventLoop, file: BinaryIO, length: int
) -> None:
    """Send `length` bytes from the file's position (-1: to its end)."""
    remaining = length
    while True:
        want = CHUNK_BYTES if remaining < 0 else min(CHUNK_BYTES, remaining)
        chunk = await loop.run_in_executor(None, file.read, want) if want else b""
        if remaining >= 0:
            remaining -= len(chunk)
        more = bool(chunk) and remaining != 0
        await send({"type": "http.response.body", "body": chunk, "more_body": more})
        if not more:
            return
