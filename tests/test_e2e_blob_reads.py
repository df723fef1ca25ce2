"""Blob reads over the real TLS server: the whole blob (sent by the server through `pathsend`,
or streamed when the blob store has no local file), ranges across the app's read chunks, HEAD,
and a long range streamed without holding it."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path
from typing import BinaryIO

import httpx
import pytest
from support import LiveServer

from registry_core.http.blob_response import CHUNK_BYTES
from registry_core.reference import Digest, digest_bytes
from registry_core.store.blobs import BlobFiles

pytestmark = pytest.mark.socket

MiB = 1 << 20
DATA = os.urandom(24 * MiB + 12_345)
"""Not a multiple of the read chunk, so the last chunk is a short one."""


def upload(client: httpx.Client, name: str, data: bytes) -> str:
    location = client.post(f"/v2/{name}/blobs/uploads/").headers["location"]
    digest = str(digest_bytes(data))
    done = client.put(location, params={"digest": digest}, content=data)
    assert done.status_code == 201, done.text
    return f"/v2/{name}/blobs/{digest}"


def test_whole_blob_ranges_and_head(live_server: LiveServer) -> None:
    size = len(DATA)
    with live_server.client(timeout=60) as client:
        url = upload(client, "reads/app", DATA)

        whole = client.get(url)
        assert whole.status_code == 200
        assert whole.headers["content-length"] == str(size)
        assert whole.content == DATA

        across = (CHUNK_BYTES - 7, 2 * CHUNK_BYTES + 9)  # spans three read chunks
        cases = {
            f"bytes={across[0]}-{across[1]}": across,
            "bytes=-5": (size - 5, size - 1),
            f"bytes={size - CHUNK_BYTES - 1}-": (size - CHUNK_BYTES - 1, size - 1),
            f"bytes=0-{size + 100}": (0, size - 1),  # the last position is clamped
        }
        for header, (first, last) in cases.items():
            part = client.get(url, headers={"Range": header})
            assert part.status_code == 206, header
            assert part.headers["content-range"] == f"bytes {first}-{last}/{size}", header
            assert part.headers["content-length"] == str(last - first + 1), header
            assert part.content == DATA[first : last + 1], header

        head = client.head(url)
        assert head.status_code == 200
        assert head.headers["content-length"] == str(size)
        assert head.content == b""
        head_part = client.head(url, headers={"Range": "bytes=10-19"})
        assert head_part.status_code == 206
        assert head_part.headers["content-length"] == "10"


def test_a_long_range_streams_in_chunks(live_server: LiveServer) -> None:
    """The server runs in this process: Python's allocations while a 24 MiB range is
    served stay at a few read chunks, never the range."""
    first, last = 1, len(DATA) - 2
    with live_server.client(timeout=60) as client:
        url = upload(client, "reads/long", DATA)
        digest = hashlib.sha256()
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            with client.stream("GET", url, headers={"Range": f"bytes={first}-{last}"}) as resp:
                assert resp.status_code == 206
                for piece in resp.iter_bytes():
                    digest.update(piece)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert digest.hexdigest() == hashlib.sha256(DATA[first : last + 1]).hexdigest()
    assert peak < 6 * CHUNK_BYTES, f"peak {peak} bytes while serving {last - first + 1}"


class WithoutLocalFiles(BlobFiles):
    """A blob store that cannot hand out a local file (as an object store could not): the
    filesystem store with `local_path` answering None, counting the readers it opens."""

    opened = 0

    def local_path(self, digest: Digest) -> Path | None:
        return None

    def open_range(self, digest: Digest, start: int = 0, length: int | None = None) -> BinaryIO:
        WithoutLocalFiles.opened += 1
        return super().open_range(digest, start, length)


def test_a_store_without_local_files_streams_the_whole_blob(live_server: LiveServer) -> None:
    registry = live_server.service.registry
    files = registry.files
    registry.blobs.content = WithoutLocalFiles(files.blobs_root, files.uploads_root)
    with live_server.client(timeout=60) as client:
        url = upload(client, "reads/streamed", DATA)
        before = WithoutLocalFiles.opened
        whole = client.get(url)
        assert whole.status_code == 200
        assert whole.headers["content-length"] == str(len(DATA))
        assert whole.content == DATA
        assert WithoutLocalFiles.opened == before + 1  # read through the store, no pathsend
