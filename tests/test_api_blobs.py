"""Blobs and blob uploads: HEAD/GET (ranges), DELETE, monolithic and chunked uploads,
digest verification, cancel, cross-repository mount, restart, sha512, the low-space guard."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from api_helpers import (
    assert_error,
    make_app,
    make_client,
    patch_chunk,
    push_blob,
    push_image,
    sha256,
    sha512,
    start_session,
)

from registry_core.config import load_config, save_config
from registry_core.datadir import DataDir
from registry_core.registry import Registry

DATA = bytes(range(256)) * 4 + b"tail"  # 1028 bytes, every byte value


def upload_id(location: str) -> str:
    return location.rsplit("/", 1)[1]


# ---- HEAD / GET / DELETE ------------------------------------------------------------------


async def test_head_and_get_blob(api: httpx.AsyncClient) -> None:
    digest = await push_blob(api, "lib/app", DATA)
    head = await api.head(f"/v2/lib/app/blobs/{digest}")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(DATA))
    assert head.headers["docker-content-digest"] == digest
    get = await api.get(f"/v2/lib/app/blobs/{digest}")
    assert get.status_code == 200
    assert get.content == DATA
    assert get.headers["docker-content-digest"] == digest
    assert get.headers["content-length"] == str(len(DATA))
    assert get.headers["content-type"] == "application/octet-stream"


async def test_range_get(api: httpx.AsyncClient) -> None:
    digest = await push_blob(api, "lib/app", DATA)
    url = f"/v2/lib/app/blobs/{digest}"
    total = len(DATA)
    for header, start, end in [
        ("bytes=0-0", 0, 0),
        ("bytes=5-14", 5, 14),
        ("bytes=1000-", 1000, total - 1),
        ("bytes=-10", total - 10, total - 1),
        ("bytes=0-99999", 0, total - 1),
    ]:
        resp = await api.get(url, headers={"Range": header})
        assert resp.status_code == 206, header
        assert resp.headers["content-range"] == f"bytes {start}-{end}/{total}", header
        assert resp.content == DATA[start : end + 1], header
        assert resp.headers["content-length"] == str(end - start + 1)
    for header in (f"bytes={total}-", f"bytes={total}-{total + 5}", "bytes=-0", "bytes=5000-,-0"):
        resp = await api.get(url, headers={"Range": header})
        assert_error(resp, 416, "SIZE_INVALID")
        assert resp.headers["content-range"] == f"bytes */{total}", header
        head = await api.head(url, headers={"Range": header})
        assert (head.status_code, head.content) == (416, b"")


async def test_range_ignored_when_malformed_or_multiple(api: httpx.AsyncClient) -> None:
    """RFC 9110 section 14.2: an invalid Range is ignored, and so (by choice) are several."""
    digest = await push_blob(api, "lib/app", DATA)
    url = f"/v2/lib/app/blobs/{digest}"
    for header in (
        "bytes=500-0",
        "bytes=abc",
        "items=0-5",
        "bytes=--5",
        "bytes 0-5",
        "bytes=",
        "bytes=\u00b2-5",
        "bytes=0-1,5-6",
        "bytes=0-1,-3",
    ):
        resp = await api.get(url, headers={"Range": header.encode("latin-1")})
        assert resp.status_code == 200, header
        assert resp.content == DATA, header
        assert "content-range" not in resp.headers


async def test_range_head_mirrors_get(api: httpx.AsyncClient) -> None:
    digest = await push_blob(api, "lib/app", DATA)
    head = await api.head(f"/v2/lib/app/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert head.status_code == 206
    assert head.content == b""
    assert head.headers["content-range"] == f"bytes 10-19/{len(DATA)}"
    assert head.headers["content-length"] == "10"


async def test_blob_unknown(api: httpx.AsyncClient) -> None:
    digest = await push_blob(api, "one", DATA)
    missing = sha256(b"never pushed")
    assert_error(await api.get(f"/v2/one/blobs/{missing}"), 404, "BLOB_UNKNOWN")
    assert_error(await api.head(f"/v2/one/blobs/{missing}"), 404)
    # a blob is only visible in the repositories it was pushed or mounted to
    assert_error(await api.get(f"/v2/two/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(await api.head(f"/v2/two/blobs/{digest}"), 404)


async def test_blob_bad_digest_and_name(api: httpx.AsyncClient) -> None:
    assert_error(await api.get("/v2/one/blobs/sha256:abc"), 400, "DIGEST_INVALID")
    assert_error(await api.get("/v2/one/blobs/notadigest"), 400, "DIGEST_INVALID")
    assert_error(await api.get(f"/v2/one/blobs/{sha256(b'x').upper()}"), 400, "DIGEST_INVALID")
    assert_error(
        await api.get("/v2/one/blobs/md5:d41d8cd98f00b204e9800998ecf8427e"), 400, "UNSUPPORTED"
    )
    assert_error(await api.get(f"/v2/One/blobs/{sha256(b'x')}"), 400, "NAME_INVALID")
    assert_error(await api.delete("/v2/one/blobs/sha256:abc"), 400, "DIGEST_INVALID")


async def test_delete_blob(api: httpx.AsyncClient) -> None:
    digest = await push_blob(api, "lib/app", DATA)
    other = await push_blob(api, "lib/other", DATA)
    assert other == digest
    resp = await api.delete(f"/v2/lib/app/blobs/{digest}")
    assert resp.status_code == 202
    assert_error(await api.get(f"/v2/lib/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(await api.head(f"/v2/lib/app/blobs/{digest}"), 404)
    assert_error(await api.delete(f"/v2/lib/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    # only unlinked from that repository
    assert (await api.get(f"/v2/lib/other/blobs/{digest}")).content == DATA


# ---- monolithic uploads -------------------------------------------------------------------


async def test_monolithic_upload_location(api: httpx.AsyncClient) -> None:
    digest = sha256(DATA)
    resp = await api.post(
        "/v2/lib/app/blobs/uploads/",
        params={"digest": digest},
        content=DATA,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert resp.status_code == 201
    assert resp.headers["location"] == f"/v2/lib/app/blobs/{digest}"
    assert resp.headers["docker-content-digest"] == digest
    assert (await api.get(resp.headers["location"])).content == DATA


async def test_monolithic_upload_digest_mismatch(api: httpx.AsyncClient) -> None:
    wrong = sha256(b"something else")
    resp = await api.post("/v2/lib/app/blobs/uploads/", params={"digest": wrong}, content=DATA)
    err = assert_error(resp, 400, "DIGEST_INVALID")
    assert err["detail"]["actual"] == sha256(DATA)
    assert_error(await api.head(f"/v2/lib/app/blobs/{wrong}"), 404)
    assert_error(await api.head(f"/v2/lib/app/blobs/{sha256(DATA)}"), 404)


async def test_monolithic_upload_bad_digest_param(api: httpx.AsyncClient) -> None:
    for digest, code in [
        ("sha256:1234", "DIGEST_INVALID"),
        ("nonsense", "DIGEST_INVALID"),
        ("md5:d41d8cd98f00b204e9800998ecf8427e", "UNSUPPORTED"),
    ]:
        resp = await api.post("/v2/lib/app/blobs/uploads/", params={"digest": digest}, content=DATA)
        assert_error(resp, 400, code)


async def test_upload_to_invalid_name(api: httpx.AsyncClient) -> None:
    for name in ["UPPER", "a..b", "-lead", "trail-", "a//b"]:
        resp = await api.post(f"/v2/{name}/blobs/uploads/", params={"digest": sha256(DATA)})
        assert_error(resp, 400, "NAME_INVALID")


# ---- sessions -----------------------------------------------------------------------------


async def test_chunked_upload_session(api: httpx.AsyncClient) -> None:
    resp = await api.post("/v2/lib/app/blobs/uploads/")
    assert resp.status_code == 202
    location = resp.headers["location"]
    assert resp.headers["docker-upload-uuid"] == upload_id(location)
    assert resp.headers["range"] == "0-0"

    chunks = [DATA[:100], DATA[100:700], DATA[700:]]
    offset = 0
    for chunk in chunks:
        resp = await patch_chunk(api, location, chunk, offset)
        assert resp.status_code == 202, resp.text
        offset += len(chunk)
        assert resp.headers["range"] == f"0-{offset - 1}"
        assert resp.headers["location"] == location
        status = await api.get(location)
        assert status.status_code == 204
        assert status.headers["range"] == f"0-{offset - 1}"
        assert status.headers["docker-upload-uuid"] == upload_id(location)

    digest = sha256(DATA)
    resp = await api.put(location, params={"digest": digest})
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"] == f"/v2/lib/app/blobs/{digest}"
    assert resp.headers["docker-content-digest"] == digest
    assert (await api.get(f"/v2/lib/app/blobs/{digest}")).content == DATA
    # the session is over
    assert_error(await api.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(await patch_chunk(api, location, b"more", len(DATA)), 404, "BLOB_UPLOAD_UNKNOWN")


async def test_streamed_patch_without_content_range(api: httpx.AsyncClient) -> None:
    location = await start_session(api, "lib/app")

    async def body():  # chunked transfer encoding, no Content-Length
        for i in range(0, len(DATA), 300):
            yield DATA[i : i + 300]

    resp = await api.patch(location, content=body())
    assert resp.status_code == 202, resp.text
    assert resp.headers["range"] == f"0-{len(DATA) - 1}"
    resp = await api.put(location, params={"digest": sha256(DATA)})
    assert resp.status_code == 201


async def test_streamed_final_put_and_monolithic_post(api: httpx.AsyncClient) -> None:
    async def body():  # chunked transfer encoding, no Content-Length
        for i in range(0, len(DATA), 300):
            yield DATA[i : i + 300]

    location = await start_session(api, "lib/app")
    resp = await api.put(location, params={"digest": sha256(DATA)}, content=body())
    assert resp.status_code == 201, resp.text
    assert (await api.get(f"/v2/lib/app/blobs/{sha256(DATA)}")).content == DATA
    other = DATA[::-1]
    resp = await api.post(
        "/v2/lib/other/blobs/uploads/", params={"digest": sha256(other)}, content=body()
    )
    assert_error(resp, 400, "DIGEST_INVALID")  # the streamed body was DATA, not its reverse
    resp = await api.post(
        "/v2/lib/other/blobs/uploads/", params={"digest": sha256(DATA)}, content=body()
    )
    assert resp.status_code == 201, resp.text


async def test_put_with_final_chunk(api: httpx.AsyncClient) -> None:
    location = await start_session(api, "lib/app")
    assert (await patch_chunk(api, location, DATA[:500], 0)).status_code == 202
    resp = await api.put(
        location,
        params={"digest": sha256(DATA)},
        content=DATA[500:],
        headers={"Content-Range": f"500-{len(DATA) - 1}"},
    )
    assert resp.status_code == 201, resp.text
    assert (await api.get(f"/v2/lib/app/blobs/{sha256(DATA)}")).content == DATA


async def test_out_of_order_chunk_416(api: httpx.AsyncClient) -> None:
    location = await start_session(api, "lib/app")
    assert (await patch_chunk(api, location, DATA[:100], 0)).status_code == 202
    for start in (0, 50, 101, 5000):
        resp = await patch_chunk(api, location, DATA[start : start + 10] or b"x", start)
        err = assert_error(resp, 416, "BLOB_UPLOAD_INVALID")
        assert err["detail"] == {"size": 100}
    # a final chunk on PUT is checked the same way
    resp = await api.put(
        location,
        params={"digest": sha256(DATA)},
        content=DATA[90:],
        headers={"Content-Range": f"90-{len(DATA) - 1}"},
    )
    assert_error(resp, 416, "BLOB_UPLOAD_INVALID")
    # nothing of the refused chunks was kept
    status = await api.get(location)
    assert status.headers["range"] == "0-99"
    assert (await patch_chunk(api, location, DATA[100:], 100)).status_code == 202
    assert (await api.put(location, params={"digest": sha256(DATA)})).status_code == 201


async def test_bad_content_range_and_length(api: httpx.AsyncClient) -> None:
    location = await start_session(api, "lib/app")
    resp = await api.patch(location, content=b"0123456789", headers={"Content-Range": "0-4"})
    assert_error(resp, 400, "SIZE_INVALID")
    resp = await api.patch(location, content=b"0123456789", headers={"Content-Range": "zero-9"})
    assert_error(resp, 400, "BLOB_UPLOAD_INVALID")
    resp = await api.patch(location, content=b"0123456789", headers={"Content-Range": "9-0"})
    assert_error(resp, 416, "BLOB_UPLOAD_INVALID")
    for length in ("ten", "\u00b2", "-1", "1 0"):
        bad = {"Content-Length": length.encode("latin-1")}
        assert_error(await api.patch(location, content=b"x", headers=bad), 400, "SIZE_INVALID")
        resp = await api.post("/v2/lib/app/blobs/uploads/", content=b"x", headers=bad)
        assert_error(resp, 400, "SIZE_INVALID")
        resp = await api.put("/v2/lib/app/manifests/v1", content=b"{}", headers=bad)
        assert_error(resp, 400)
    assert (await api.get(location)).headers["range"] == "0-0"
    assert (await patch_chunk(api, location, b"0123456789", 0)).status_code == 202
    assert (await api.get(location)).headers["range"] == "0-9"


async def test_put_without_digest(api: httpx.AsyncClient) -> None:
    location = await start_session(api, "lib/app")
    await patch_chunk(api, location, DATA, 0)
    assert_error(await api.put(location), 400, "BLOB_UPLOAD_INVALID")
    assert_error(await api.put(location, params={"digest": ""}), 400, "BLOB_UPLOAD_INVALID")
    assert (await api.get(location)).headers["range"] == f"0-{len(DATA) - 1}"


async def test_digest_mismatch_keeps_the_upload(api: httpx.AsyncClient) -> None:
    location = await start_session(api, "lib/app")
    await patch_chunk(api, location, DATA, 0)
    wrong = sha256(DATA + b"!")
    err = assert_error(await api.put(location, params={"digest": wrong}), 400, "DIGEST_INVALID")
    assert err["detail"] == {"expected": wrong, "actual": sha256(DATA)}
    assert_error(await api.head(f"/v2/lib/app/blobs/{wrong}"), 404)
    for bad, code in [("sha256:zz", "DIGEST_INVALID"), ("sha1:" + "a" * 40, "UNSUPPORTED")]:
        assert_error(await api.put(location, params={"digest": bad}), 400, code)
    # the session is intact and can still be finished
    assert (await api.get(location)).headers["range"] == f"0-{len(DATA) - 1}"
    resp = await api.put(location, params={"digest": sha256(DATA)})
    assert resp.status_code == 201, resp.text
    assert (await api.get(f"/v2/lib/app/blobs/{sha256(DATA)}")).content == DATA


async def test_cancel_upload(api: httpx.AsyncClient) -> None:
    location = await start_session(api, "lib/app")
    await patch_chunk(api, location, DATA[:10], 0)
    resp = await api.delete(location)
    assert resp.status_code == 204
    assert_error(await api.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(await api.head(location), 404)
    assert_error(await patch_chunk(api, location, DATA[10:], 10), 404, "BLOB_UPLOAD_UNKNOWN")
    resp = await api.put(location, params={"digest": sha256(DATA[:10])})
    assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(await api.delete(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(await api.head(f"/v2/lib/app/blobs/{sha256(DATA[:10])}"), 404)


async def test_unknown_upload_and_wrong_repository(api: httpx.AsyncClient) -> None:
    location = await start_session(api, "lib/app")
    uid = upload_id(location)
    for method in ("GET", "PATCH", "DELETE"):
        resp = await api.request(method, "/v2/lib/app/blobs/uploads/no-such-upload")
        assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN")
        # a session belongs to the repository it was opened in
        resp = await api.request(method, f"/v2/lib/other/blobs/uploads/{uid}")
        assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN")
    resp = await api.put(f"/v2/lib/other/blobs/uploads/{uid}", params={"digest": sha256(b"")})
    assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN")
    assert (await api.get(location)).status_code == 204


# ---- mount --------------------------------------------------------------------------------


async def test_cross_repository_mount(api: httpx.AsyncClient) -> None:
    digest = await push_blob(api, "source/repo", DATA)
    assert_error(await api.head(f"/v2/target/repo/blobs/{digest}"), 404)
    resp = await api.post(
        "/v2/target/repo/blobs/uploads/", params={"mount": digest, "from": "source/repo"}
    )
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"] == f"/v2/target/repo/blobs/{digest}"
    assert resp.headers["docker-content-digest"] == digest
    assert (await api.get(f"/v2/target/repo/blobs/{digest}")).content == DATA
    # the mount is a real link: it survives deleting the blob from the source
    assert (await api.delete(f"/v2/source/repo/blobs/{digest}")).status_code == 202
    assert (await api.get(f"/v2/target/repo/blobs/{digest}")).content == DATA


async def test_mount_falls_back_to_a_session(api: httpx.AsyncClient) -> None:
    digest = await push_blob(api, "source/repo", DATA)
    missing = sha256(b"nowhere")
    for params in [
        {"mount": missing, "from": "source/repo"},  # source lacks the blob
        {"mount": digest, "from": "no/such/repo"},  # source repository unknown
        {"mount": digest, "from": "Not..A/Name"},  # source name invalid
        {"mount": digest},  # no source given
    ]:
        resp = await api.post("/v2/target/repo/blobs/uploads/", params=params)
        assert resp.status_code == 202, (params, resp.text)
        location = resp.headers["location"]
        assert location.startswith("/v2/target/repo/blobs/uploads/")
        assert (await api.get(location)).status_code == 204
    assert_error(await api.head(f"/v2/target/repo/blobs/{digest}"), 404)
    # the fallback session works like any other
    resp = await api.put(location, params={"digest": digest}, content=DATA)
    assert resp.status_code == 201
    assert (await api.get(f"/v2/target/repo/blobs/{digest}")).content == DATA


async def test_abandoned_uploads_hold_no_file_descriptors(
    api: httpx.AsyncClient, registry: Registry
) -> None:
    def open_upload_files() -> int:
        uploads = str(registry.datadir.uploads)
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir() if _target(fd).startswith(uploads))

    before = open_upload_files()
    for i in range(20):  # each client sends one chunk, then goes away
        location = await start_session(api, f"lib/abandoned{i}")
        assert (await patch_chunk(api, location, DATA, 0)).status_code == 202
    assert open_upload_files() == before


def _target(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:
        return ""


# ---- restart ------------------------------------------------------------------------------


async def test_upload_survives_restart(
    api: httpx.AsyncClient, registry: Registry, datadir: DataDir, credentials: tuple[str, str]
) -> None:
    location = await start_session(api, "lib/app")
    assert (await patch_chunk(api, location, DATA[:300], 0)).status_code == 202
    assert (await patch_chunk(api, location, DATA[300:600], 300)).status_code == 202
    registry.close()
    # as if a crash cut off a chunk that was never acknowledged
    with open(datadir.uploads / upload_id(location), "ab") as f:
        f.write(b"unacknowledged bytes" * 100)

    second = Registry(datadir)
    try:
        async with make_client(make_app(second, datadir), credentials) as api2:
            status = await api2.get(location)
            assert status.status_code == 204
            assert status.headers["range"] == "0-599"
            assert_error(await patch_chunk(api2, location, DATA[700:], 700), 416)
            resp = await patch_chunk(api2, location, DATA[600:], 600)
            assert resp.status_code == 202, resp.text
            resp = await api2.put(location, params={"digest": sha256(DATA)})
            assert resp.status_code == 201, resp.text
            assert (await api2.get(f"/v2/lib/app/blobs/{sha256(DATA)}")).content == DATA
    finally:
        second.close()


async def test_upload_survives_restart_finished_with_sha512(
    api: httpx.AsyncClient, registry: Registry, datadir: DataDir, credentials: tuple[str, str]
) -> None:
    location = await start_session(api, "lib/app")
    assert (await patch_chunk(api, location, DATA[:512], 0)).status_code == 202
    registry.close()
    second = Registry(datadir)
    try:
        async with make_client(make_app(second, datadir), credentials) as api2:
            resp = await api2.put(
                location,
                params={"digest": sha512(DATA)},
                content=DATA[512:],
                headers={"Content-Range": f"512-{len(DATA) - 1}"},
            )
            assert resp.status_code == 201, resp.text
            assert resp.headers["docker-content-digest"] == sha512(DATA)
            assert (await api2.get(f"/v2/lib/app/blobs/{sha512(DATA)}")).content == DATA
    finally:
        second.close()


# ---- sha512 and zero bytes ----------------------------------------------------------------


async def test_sha512_blobs(api: httpx.AsyncClient) -> None:
    digest = await push_blob(api, "lib/app", DATA, "sha512")
    assert digest.startswith("sha512:") and len(digest) == 7 + 128
    head = await api.head(f"/v2/lib/app/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["docker-content-digest"] == digest
    assert head.headers["content-length"] == str(len(DATA))
    assert (await api.get(f"/v2/lib/app/blobs/{digest}")).content == DATA
    # the sha256 name of the same bytes was never uploaded
    assert_error(await api.head(f"/v2/lib/app/blobs/{sha256(DATA)}"), 404)

    location = await start_session(api, "lib/app")
    await patch_chunk(api, location, b"chunked sha512", 0)
    wrong = sha512(b"chunked sha51")
    assert_error(await api.put(location, params={"digest": wrong}), 400, "DIGEST_INVALID")
    resp = await api.put(location, params={"digest": sha512(b"chunked sha512")})
    assert resp.status_code == 201, resp.text
    assert (await api.get(resp.headers["location"])).content == b"chunked sha512"
    truncated = "sha512:" + "a" * 64
    assert_error(await api.head(f"/v2/lib/app/blobs/{truncated}"), 400)
    assert_error(await api.get(f"/v2/lib/app/blobs/{truncated}"), 400, "DIGEST_INVALID")


async def test_zero_byte_blob(api: httpx.AsyncClient) -> None:
    digest = await push_blob(api, "lib/app", b"")
    assert digest == sha256(b"")
    head = await api.head(f"/v2/lib/app/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["content-length"] == "0"
    get = await api.get(f"/v2/lib/app/blobs/{digest}")
    assert get.status_code == 200 and get.content == b""
    # and through an empty session, in sha512
    location = await start_session(api, "lib/other")
    resp = await api.put(location, params={"digest": sha512(b"")})
    assert resp.status_code == 201, resp.text
    assert (await api.get(f"/v2/lib/other/blobs/{sha512(b'')}")).content == b""


# ---- low-space guard ----------------------------------------------------------------------


def set_quota(datadir: DataDir, quota: int) -> None:
    config = load_config(datadir.config)
    config.storage.quota_bytes = quota
    save_config(config, datadir.config)


async def test_low_space_refuses_new_uploads(
    api: httpx.AsyncClient, registry: Registry, datadir: DataDir, credentials: tuple[str, str]
) -> None:
    image = await push_image(api, "lib/app", "v1", layers=[DATA])
    blob = image.blobs[-1]
    open_session = await start_session(api, "lib/app")
    used = registry.used_bytes(max_age=0)
    registry.close()

    set_quota(datadir, used + 10)  # 10 bytes free, a reserve of 5% of the quota
    full = Registry(datadir)
    try:
        async with make_client(make_app(full, datadir), credentials) as api2:
            for resp in [
                await api2.post("/v2/lib/app/blobs/uploads/"),
                await api2.post(
                    "/v2/lib/new/blobs/uploads/", params={"digest": sha256(b"x")}, content=b"x"
                ),
                await patch_chunk(api2, open_session, b"more data", 0),
            ]:
                err = assert_error(resp, 403, "DENIED")
                assert "free" in err["message"]
            assert_error(await api2.head(f"/v2/lib/new/blobs/{sha256(b'x')}"), 404)
            # what is stored still reads fine
            assert (await api2.get(f"/v2/lib/app/blobs/{blob}")).content == DATA
            manifest = await api2.get("/v2/lib/app/manifests/v1")
            assert manifest.status_code == 200 and manifest.content == image.body
            assert (await api2.get("/v2/lib/app/tags/list")).json()["tags"] == ["v1"]
    finally:
        full.close()


async def test_low_space_refuses_streamed_chunks(
    api: httpx.AsyncClient, registry: Registry, datadir: DataDir, credentials: tuple[str, str]
) -> None:
    await push_blob(api, "lib/app", DATA)
    location = await start_session(api, "lib/app")
    used = registry.used_bytes(max_age=0)
    registry.close()
    set_quota(datadir, used + 10)
    full = Registry(datadir)
    try:
        async with make_client(make_app(full, datadir), credentials) as api2:

            async def body():  # no Content-Length: the size is unknown up front
                yield DATA

            assert_error(await api2.patch(location, content=body()), 403, "DENIED")
            assert (await api2.get(location)).headers["range"] == "0-0"
    finally:
        full.close()


async def test_low_space_allows_what_fits(
    api: httpx.AsyncClient, registry: Registry, datadir: DataDir, credentials: tuple[str, str]
) -> None:
    await push_blob(api, "lib/app", DATA)
    used = registry.used_bytes(max_age=0)
    registry.close()
    set_quota(datadir, used + 600)  # 600 free; reserve is 5% of the quota (< 100 bytes)
    tight = Registry(datadir)
    try:
        async with make_client(make_app(tight, datadir), credentials) as api2:
            location = await start_session(api2, "lib/app")
            err = assert_error(await patch_chunk(api2, location, DATA, 0), 403, "DENIED")
            assert "free" in err["message"]
            assert (await patch_chunk(api2, location, DATA[:100], 0)).status_code == 202
            resp = await api2.put(location, params={"digest": sha256(DATA[:100])})
            assert resp.status_code == 201
            big = await api2.post(
                "/v2/lib/app/blobs/uploads/", params={"digest": sha256(DATA)}, content=DATA
            )
            assert_error(big, 403, "DENIED")
    finally:
        tight.close()
