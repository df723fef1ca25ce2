"""`/healthz` through the ASGI app: no credentials, 200 while the registry can work, 503 with
the reason when its database does not answer or its blob directory cannot be written, and
200 again once the fault is gone (nothing is remembered between probes)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from registry_core.registry import Registry


async def probe(api: httpx.AsyncClient) -> httpx.Response:
    return await api.get("/healthz", auth=None)


async def assert_healthy(api: httpx.AsyncClient) -> None:
    resp = await probe(api)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": "ok"}


async def unavailable_reason(api: httpx.AsyncClient) -> str:
    resp = await probe(api)
    assert resp.status_code == 503, resp.text
    body = resp.json()
    assert body["status"] == "unavailable"
    reason = body["reason"]
    assert isinstance(reason, str) and "\n" not in reason
    return reason


async def test_healthy_without_credentials_get_and_head(
    api: httpx.AsyncClient, registry: Registry
) -> None:
    await assert_healthy(api)
    head = await api.head("/healthz", auth=None)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["cache-control"] == "no-store"
    assert (await api.post("/healthz", auth=None)).status_code == 405
    # The writability check leaves nothing behind.
    assert sorted(os.listdir(registry.datadir.blobs)) == []
    assert sorted(os.listdir(registry.datadir.uploads)) == []


async def test_a_blob_dir_replaced_by_a_file_is_unavailable(
    api: httpx.AsyncClient, registry: Registry
) -> None:
    blobs = registry.datadir.blobs
    moved = blobs.with_name("blobs.away")
    blobs.rename(moved)
    blobs.write_bytes(b"not a directory")
    try:
        reason = await unavailable_reason(api)
        assert str(blobs) in reason and "not writable" in reason
        assert "Not a directory" in reason
    finally:
        blobs.unlink()
        moved.rename(blobs)
    await assert_healthy(api)


@contextmanager
def read_only_mount(where: Path) -> Iterator[None]:
    """A read-only tmpfs over `where` (root only: elsewhere the test skips, in CI it fails)."""
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        reason = f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI runs as root")
        pytest.skip(reason)
    try:
        yield
    finally:
        subprocess.run(["umount", str(where)], check=True)


async def test_a_read_only_volume_under_the_uploads_is_unavailable(
    api: httpx.AsyncClient, registry: Registry
) -> None:
    uploads = registry.datadir.uploads
    with read_only_mount(uploads):
        reason = await unavailable_reason(api)
        assert str(uploads) in reason and "Read-only file system" in reason
    await assert_healthy(api)


async def test_a_damaged_database_is_unavailable(
    api: httpx.AsyncClient, registry: Registry
) -> None:
    """Its pages on disk overwritten (the WAL checkpointed first, so that they are there):
    the registry's own connections may still answer from their cache, a new process could
    not open it."""
    await assert_healthy(api)
    registry.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path = registry.datadir.database
    with path.open("r+b") as f:
        header = f.read(100)
        f.seek(0)
        f.write(b"\xa5" * 100)
    try:
        reason = await unavailable_reason(api)
        assert reason.startswith("the database does not answer")
        assert "not a database" in reason
    finally:
        with path.open("r+b") as f:
            f.write(header)
    await assert_healthy(api)


async def test_a_removed_database_is_unavailable(
    api: httpx.AsyncClient, registry: Registry
) -> None:
    """The file unlinked while serving (the store's connections go on writing to the deleted
    file, lost at the next start): unavailable, and the probe does not create a new one."""
    path = registry.datadir.database
    moved = path.with_name("registry.db.away")
    path.rename(moved)
    try:
        reason = await unavailable_reason(api)
        assert reason.startswith("the database does not answer")
        assert "unable to open" in reason
        assert not path.exists()
    finally:
        moved.rename(path)
    await assert_healthy(api)
