"""Request bodies streamed into upload files with hashing and disk writes off the loop.

Batches of about 1 MiB are handed to a worker thread while the next batch is received, so
receiving from the socket, hashing and writing overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from registry_core.errors import SizeInvalid
from registry_core.store.blobs import HashingWriter

BATCH_BYTES = 1 << 20


async def receive_into(
    chunks: AsyncIterator[bytes],
    writer: HashingWriter,
    expected: int | None = None,
) -> int:
    """Append the whole body to `writer`; returns the bytes written."""
    loop = asyncio.get_running_loop()
    pending: asyncio.Future[None] | None = None
    buf = bytearray()
    total = 0
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            buf += chunk
            total += len(chunk)
            if expected is not None and total > expected:
                break
            if len(buf) >= BATCH_BYTES:
                if pending is not None:
                    await pending
                pending = loop.run_in_executor(None, writer.write, buf)
                buf = bytearray()
    except BaseException:
        # A body cut off (idle timeout, disconnect): the writer is released by the caller
        # and may be claimed by the next request, so no write of ours may still be running.
        if pending is not None and not pending.done():
            await asyncio.wait([pending])
        raise
    if pending is not None:
        await pending
    if buf:
        await loop.run_in_executor(None, writer.write, buf)
    if expected is not None and total != expected:
        raise SizeInvalid(
            f"received {total} bytes but Content-Length or Content-Range said {expected}"
        )
    return total


async def read_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes | None:
    """The whole body, or None once it grows past `limit` bytes."""
    buf = bytearray()
    async for chunk in chunks:
        buf += chunk
        if len(buf) > limit:
            return None
    return bytes(buf)
