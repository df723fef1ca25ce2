"""Two requests writing to one upload session at once, over the real TLS server: while one
PATCH streams its body, a second PATCH (or the closing PUT) on the same session is refused,
and the first one's bytes arrive whole and in order."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest
from support import LiveServer

from registry_core.reference import digest_bytes

pytestmark = pytest.mark.socket

MiB = 1 << 20
HANG_GUARD = 60.0
FIRST = bytes(range(256)) * (6 * MiB // 256)
"""Streamed (over the in-memory limit), sent as a first part, a pause, then the rest."""
HELD_AFTER = 2 * MiB


def held_body(release: threading.Event) -> Iterator[bytes]:
    yield FIRST[:HELD_AFTER]
    assert release.wait(HANG_GUARD), "the test never released the body"
    yield FIRST[HELD_AFTER:]


def second_writer(client: httpx.Client, location: str, kind: str) -> httpx.Response:
    """Another request writing to the session from its first byte."""
    body = b"interloper"
    if kind == "patch-in-memory":
        headers = {"Content-Range": f"0-{len(body) - 1}"}
        return client.patch(location, content=body, headers=headers)
    if kind == "patch-streamed":
        return client.patch(location, content=iter([body]))  # chunked, no Content-Range
    return client.put(location, params={"digest": str(digest_bytes(body))}, content=body)


@pytest.mark.parametrize("kind", ["patch-in-memory", "patch-streamed", "put-with-last-chunk"])
def test_a_second_writer_is_refused_while_a_patch_streams(
    live_server: LiveServer, kind: str
) -> None:
    release = threading.Event()
    with live_server.client(timeout=HANG_GUARD) as client, ThreadPoolExecutor(1) as pool:
        location = client.post("/v2/race/app/blobs/uploads/").headers["location"]
        upload_file = live_server.service.datadir.uploads / location.rsplit("/", 1)[1]
        first = pool.submit(
            client.patch,
            location,
            content=held_body(release),
            headers={"Content-Range": f"0-{len(FIRST) - 1}"},
        )
        try:
            # Bytes on disk: the first PATCH holds the session and streams into it.
            wait_until(lambda: upload_file.stat().st_size >= MiB, first)
            refused = second_writer(client, location, kind)
        finally:
            release.set()
        accepted = first.result(HANG_GUARD)

        assert refused.status_code == 400, refused.text
        assert refused.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
        assert accepted.status_code == 202, accepted.text
        assert accepted.headers["range"] == f"0-{len(FIRST) - 1}"
        digest = digest_bytes(FIRST)
        done = client.put(location, params={"digest": str(digest)})
        assert done.status_code == 201, done.text
        assert client.get(f"/v2/race/app/blobs/{digest}").content == FIRST


def wait_until(condition: Callable[[], bool], first: Future[httpx.Response]) -> None:
    """Poll until `condition()` holds; fail if the first request ended first (hang guard)."""
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        assert not first.done(), f"the first PATCH ended early: {first.result()}"
        assert time.monotonic() < deadline, "the first PATCH never started writing"
        time.sleep(0.01)


HOLDER = """
import sys
from pathlib import Path
from registry_core.datadir import DataDir
from registry_core.registry import Registry

registry = Registry(DataDir(Path(sys.argv[1])))
writer = registry.claim_writer(sys.argv[2], sys.argv[3], None)
writer.write(b"from the other process")
print("held", flush=True)
sys.stdin.readline()
registry.save_progress(sys.argv[2], sys.argv[3], writer)
registry.release_writer(sys.argv[3])
print("released", flush=True)
"""


def test_a_writer_in_another_process_holds_the_session(live_server: LiveServer) -> None:
    """The claim is on the upload file, so a second process (the CLI, a second server on the
    same data dir) and this server never write one session at once."""
    with live_server.client(timeout=HANG_GUARD) as client:
        location = client.post("/v2/race/other/blobs/uploads/").headers["location"]
        upload_id = location.rsplit("/", 1)[1]
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(live_server.service.datadir.root),
             "race/other", upload_id],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdin is not None
            assert holder.stdout.readline().strip() == "held"
            refused = second_writer(client, location, "patch-in-memory")
            holder.stdin.write("go\n")
            holder.stdin.flush()
            assert holder.stdout.readline().strip() == "released"
        finally:
            holder.kill() if holder.poll() is None else None
            holder.wait(HANG_GUARD)
        assert refused.status_code == 400, refused.text
        assert refused.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
        # The other process's bytes were acknowledged; this server continues after them.
        rest = b" and this one"
        whole = b"from the other process" + rest
        done = client.put(location, params={"digest": str(digest_bytes(whole))}, content=rest,
                          headers={"Content-Range": f"22-{21 + len(rest)}"})
        assert done.status_code == 201, done.text
        assert client.get(f"/v2/race/other/blobs/{digest_bytes(whole)}").content == whole
