"""`edge-console serve` with its data dir on a 40 MiB tmpfs, pushed to until it refuses.

Two cases: the low-space guard on (a reserve of 20%: refused before the volume fills), and off
(reserve 0: the volume really fills, to the last page). Either way every refused push is a
clean OCI error (403 DENIED: the guard's "not enough space", or StorageFull's "no space left
on device"), never a 5xx; whatever was stored before is served byte for byte; the database
keeps answering; and after deleting images by digest and a `gc --grace-period 0`, the next
push succeeds. Mounting needs root: elsewhere the tests skip, in CI (root) they must run.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_e2e_cli_serve import Served, cli_ok, enable_and_export, start_serve

from registry_core.config import load_config, save_config
from registry_core.manifests import OCI_CONFIG, OCI_MANIFEST
from registry_core.reference import digest_bytes

pytestmark = [pytest.mark.socket]

VOLUME_MIB = 40
LAYER_BYTES = 3 << 20
STREAM_PIECE = 1 << 20
"""Streamed PATCH bodies stay within the server's 1 MiB write batch, so that a refusal comes
after the whole body was read and the client always gets to read the answer."""
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"


def mount_tmpfs(where: Path) -> None:
    where.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={VOLUME_MIB}m,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        reason = f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI runs as root and must run the disk-full tests")
        pytest.skip(f"{reason}: the disk-full tests need root")


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@dataclass
class Volume:
    served: Served
    refusals: list[tuple[str, int, str, str]] = field(default_factory=list)
    """(what was refused, status, OCI code, message), in order."""
    stored: dict[str, tuple[str, bytes, list[bytes]]] = field(default_factory=dict)
    """tag -> (manifest digest, manifest body, [config, layer])."""

    @property
    def data(self) -> Path:
        return self.served.data


@pytest.fixture(params=[20.0, 0.0], ids=["guard", "really-full"])
def volume(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Volume]:
    mount_tmpfs(tmp_path / "data")
    served: Served | None = None
    try:
        data, port, _info, cert_dir = enable_and_export(tmp_path)
        config = load_config(data / "config.toml")
        config.storage.reserve_percent = request.param
        config.storage.reserve_max_bytes = 1 << 30
        save_config(config, data / "config.toml")
        served = start_serve(tmp_path, data, port, cert_dir)
        yield Volume(served)
    finally:
        if served is not None and served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait()
        subprocess.run(["umount", str(tmp_path / "data")], check=False)


# ---- pushing ---------------------------------------------------------------------------------


class Refused(Exception):
    def __init__(self, what: str, response: httpx.Response) -> None:
        super().__init__(f"{what}: {response.status_code} {response.text[:200]}")
        self.what = what
        self.response = response


def expect(response: httpx.Response, status: int, what: str) -> httpx.Response:
    if response.status_code != status:
        raise Refused(what, response)
    return response


def pieces(data: bytes) -> Iterator[bytes]:
    for i in range(0, len(data), 64 << 10):
        yield data[i : i + (64 << 10)]


def upload(client: httpx.Client, repo: str, data: bytes, how: str) -> None:
    """One blob: `monolithic` (POST with the digest), `patch` (PATCH with Content-Range) or
    `stream` (PATCHes with a chunked body, no length)."""
    digest = str(digest_bytes(data))
    if how == "monolithic":
        r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
        expect(r, 201, f"monolithic POST of {len(data)} bytes")
        return
    location = expect(client.post(f"/v2/{repo}/blobs/uploads/"), 202, "POST").headers["location"]
    for offset in range(0, len(data), STREAM_PIECE):
        piece = data[offset : offset + STREAM_PIECE]
        if how == "stream":
            r = client.patch(location, content=pieces(piece))
        else:
            end = offset + len(piece) - 1
            r = client.patch(location, content=piece, headers={"Content-Range": f"{offset}-{end}"})
        expect(r, 202, f"{how} PATCH of {len(piece)} bytes")
    expect(client.put(location, params={"digest": digest}), 201, "closing PUT")


def manifest_for(config: bytes, layer: bytes) -> bytes:
    def descriptor(media_type: str, blob: bytes) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": str(digest_bytes(blob)), "size": len(blob)}

    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": [descriptor(LAYER_MEDIA_TYPE, layer)],
        }
    ).encode()


def push(vol: Volume, client: httpx.Client, tag: str, size: int, how: str) -> bool:
    """A whole image with a random layer; True if stored, else its refusal is recorded."""
    config = json.dumps({"architecture": "amd64", "tag": tag}).encode()
    layer = os.urandom(size)
    body = manifest_for(config, layer)
    try:
        upload(client, "full/app", layer, how)
        upload(client, "full/app", config, "monolithic")
        r = client.put(
            f"/v2/full/app/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST}
        )
        expect(r, 201, "manifest PUT")
    except Refused as refused:
        record_refusal(vol, f"{tag} ({how}): {refused.what}", refused.response)
        return False
    vol.stored[tag] = (r.headers["docker-content-digest"], body, [config, layer])
    return True


def record_refusal(vol: Volume, what: str, response: httpx.Response) -> None:
    """A refusal must be a clean OCI error: 403 DENIED with a JSON body that says why."""
    assert response.status_code == 403, f"{what}: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/json"), what
    error = response.json()["errors"][0]
    assert error["code"] == "DENIED", (what, error)
    assert "space" in error["message"], (what, error)
    vol.refusals.append((what, response.status_code, error["code"], error["message"]))


# ---- checks ----------------------------------------------------------------------------------


def assert_all_served(vol: Volume, client: httpx.Client) -> None:
    """Every image stored so far comes back byte for byte."""
    for tag, (digest, body, blobs) in vol.stored.items():
        r = client.get(f"/v2/full/app/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.content == body, (tag, r.status_code)
        assert r.headers["docker-content-digest"] == digest
        for blob in blobs:
            got = client.get(f"/v2/full/app/blobs/{digest_bytes(blob)}")
            assert got.status_code == 200 and got.content == blob, (tag, got.status_code)


def assert_no_traceback(vol: Volume) -> None:
    log = vol.served.stderr.read_text(encoding="utf-8")
    assert "Traceback" not in log, log[-4000:]
    assert not [m for m in vol.served.access_lines() if m["status"].startswith("5")]


def fill(vol: Volume, client: httpx.Client) -> None:
    """Push 3 MiB images, the three upload styles in turn, until three in a row are refused."""
    styles = ("monolithic", "stream", "patch")
    in_a_row = 0
    for i in range(3 * VOLUME_MIB):
        if push(vol, client, f"t{i}", LAYER_BYTES, styles[i % 3]):
            in_a_row = 0
        else:
            in_a_row += 1
            if in_a_row == 3:
                return
    pytest.fail("the volume never filled")


def fill_last_pages(vol: Volume, client: httpx.Client) -> str:
    """Streamed chunks of halving size into one upload until not a page is left; returns the
    upload's location. The guard cannot see these coming (no length)."""
    location = expect(client.post("/v2/full/filler/blobs/uploads/"), 202, "POST").headers[
        "location"
    ]
    offset, size = 0, 1 << 20
    while size >= 4096:
        r = client.patch(location, content=pieces(os.urandom(size)))
        if r.status_code == 202:
            offset += size
            continue
        record_refusal(vol, f"filler stream PATCH of {size} bytes at {offset}", r)
        assert client.get(location).headers["range"] == f"0-{max(offset - 1, 0)}"  # acked stays
        size //= 2
    return location


def make_room(vol: Volume, client: httpx.Client, images: int) -> dict[str, Any]:
    """Delete the oldest images by digest, then a GC with no grace period (the CLI, its own
    process, while the server runs)."""
    for tag in sorted(vol.stored, key=lambda t: int(t[1:]))[:images]:
        digest = vol.stored.pop(tag)[0]
        r = client.delete(f"/v2/full/app/manifests/{digest}")
        assert r.status_code == 202, r.text
    run: dict[str, Any] = json.loads(cli_ok(vol.data, "gc", "--grace-period", "0", "--json"))
    assert run["status"] == "succeeded", run
    assert run["bytes_freed"] > 0, run
    return run


# ---- the tests -------------------------------------------------------------------------------


def test_refused_cleanly_nothing_lost_and_room_made_again(volume: Volume) -> None:
    vol = volume
    reserve = load_config(vol.data / "config.toml").storage.reserve_percent
    with vol.served.client(timeout=60) as client:
        fill(vol, client)
        pushed = len(vol.stored)
        assert pushed >= 5, vol.refusals
        if reserve:
            # The guard refused before the volume filled: nothing reached the disk's end.
            assert all("not enough space" in r[3] for r in vol.refusals), vol.refusals
            assert free_bytes(vol.data) >= (VOLUME_MIB << 20) * reserve / 100 - (4 << 20)
        else:
            location = fill_last_pages(vol, client)
            # A page at most: an acknowledged chunk needs a data page and a WAL page, so
            # the last free page may be one no chunk can use.
            assert free_bytes(vol.data) <= 4096
            # A manifest of stored blobs needs a file and database pages: refused, cleanly.
            _, body, _ = vol.stored["t0"]
            retagged = json.loads(body) | {"annotations": {"retagged": "yes"}}
            r = client.put(
                "/v2/full/app/manifests/retagged",
                content=json.dumps(retagged).encode(),
                headers={"Content-Type": OCI_MANIFEST},
            )
            record_refusal(vol, "manifest PUT of stored blobs", r)
            push(vol, client, "last", 4096, "stream")
            assert "last" not in vol.stored
            assert any("no space left on device" in r[3] for r in vol.refusals), vol.refusals
        assert_all_served(vol, client)
        tags = client.get("/v2/full/app/tags/list")
        assert tags.status_code == 200
        assert set(tags.json()["tags"]) == set(vol.stored)

        run = make_room(vol, client, images=3)
        assert push(vol, client, "after-gc", LAYER_BYTES, "stream"), vol.refusals[-1]
        assert_all_served(vol, client)
        if not reserve:
            # The abandoned filler upload resumes where its last acknowledged chunk ended.
            assert client.delete(location).status_code == 204
    assert_no_traceback(vol)
    print(
        f"\n[{'guard' if reserve else 'really full'}] {pushed} images of 3 MiB stored, "
        f"{len(vol.refusals)} refusals, gc freed {run['bytes_freed']} bytes:"
    )
    for what, status, code, message in vol.refusals:
        print(f"  {what}: {status} {code} {message}")
