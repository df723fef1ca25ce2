"""Property tests: whatever the path, digest, reference, query or header, the API answers
a 4xx with the spec's JSON error (never a 5xx, never a stack trace); malformed digests and
references get exactly the 400 codes the spec grammar implies (oracle written independently
of registry_core.reference)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

import httpx
import pytest
from api_helpers import BASE_URL, Pushed, assert_error, push_image, sha256, start_session
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from store_snapshot import Snapshot, take_snapshot

from registry_core.datadir import DataDir
from registry_core.manifests import OCI_MANIFEST

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

VALID_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
ALGORITHM = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*")
ENCODED = re.compile(r"[a-zA-Z0-9=_-]+")
TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")


def digest_error(text: str) -> str | None:
    """The error code the spec's digest grammar implies for `text` (None: well formed)."""
    if VALID_DIGEST.fullmatch(text):
        return None
    algorithm, sep, encoded = text.partition(":")
    if sep and ALGORITHM.fullmatch(algorithm) and ENCODED.fullmatch(encoded):
        return "DIGEST_INVALID" if algorithm in ("sha256", "sha512") else "UNSUPPORTED"
    return "DIGEST_INVALID"


def reference_error(text: str) -> str | None:
    if ":" in text:
        return digest_error(text)
    return None if TAG.fullmatch(text) else "NAME_INVALID"


# No surrogates (not encodable); '/', '?', '#' are percent-encoded by `seg`.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
HEX = st.text("0123456789abcdef", min_size=60, max_size=130)
ALGORITHMS = st.sampled_from(
    ["sha256", "sha512", "md5", "sha1", "SHA256", "sha256+b64u", "a.b", "", "-x", "blake3"]
)
ENCODINGS = st.one_of(
    HEX,
    st.sampled_from(["a" * 64, "a" * 128, "A" * 64, "0" * 63, "0" * 65, "=_-", ""]),
    st.text("0123456789abcdefABCDEF=_-+.:%", max_size=70),
    TEXT,
)
DIGESTISH = st.builds(lambda a, e: f"{a}:{e}", ALGORITHMS, ENCODINGS)
TAGISH = st.one_of(
    st.from_regex(TAG, fullmatch=True),
    st.text("abcXYZ019._-:", min_size=1, max_size=20),
    st.sampled_from(["v1", "latest", "-x", ".x", "a" * 128, "a" * 129, "_"]),
)
REFERENCE = st.one_of(DIGESTISH, TAGISH, TEXT.filter(bool))
NAMES = st.one_of(
    st.sampled_from(["lib/app", "lib", "a/b/c", "Lib/App", "a..b", "a//b", "-a", "a" * 300]),
    st.from_regex(r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*){0,2}", fullmatch=True),
    TEXT.filter(bool),
)
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)
# digits and things that look like them (superscripts, Arabic-Indic digits, signs)
NUMERALS = st.text("0123456789\u00b2\u00b3\u00b9\u0660\u0661 +-", min_size=1, max_size=4)
LATIN1_NUMERALS = st.text("0123456789\u00b2\u00b3\u00b9 +-", min_size=1, max_size=4)
METHODS = st.sampled_from(["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS"])


def seg(text: str) -> str:
    """A path segment as a client would send it (':' left readable)."""
    return quote(text, safe=":@")


def path_name(name: str) -> str:
    return "/".join(seg(part) for part in name.split("/"))


@pytest.fixture
async def seeded(api: httpx.AsyncClient) -> Pushed:
    return await push_image(api, "lib/app", "v1")


def check_reply(resp: httpx.Response) -> None:
    assert resp.status_code < 500, (resp.request.method, resp.request.url, resp.text)
    if resp.status_code >= 400:
        assert_error(resp, resp.status_code)


@FUZZ
@given(reference=REFERENCE, method=st.sampled_from(["GET", "HEAD", "DELETE", "PUT"]))
async def test_manifest_references(
    api: httpx.AsyncClient, seeded: Pushed, reference: str, method: str
) -> None:
    content = b'{"schemaVersion":2}' if method == "PUT" else None
    resp = await api.request(method, f"/v2/lib/app/manifests/{seg(reference)}", content=content)
    check_reply(resp)
    expected = reference_error(reference)
    if "/" in reference or reference in (".", ".."):
        return  # a different route (or a normalized path): only "no 5xx" holds
    if expected == "NAME_INVALID" and method in ("GET", "HEAD"):
        assert resp.status_code == 404, (reference, resp.text)  # no such tag can exist
    elif expected is not None:
        assert resp.status_code == 400, (reference, resp.text)
        if method != "HEAD":
            assert resp.json()["errors"][0]["code"] == expected, reference
    elif method == "PUT":
        # A well-formed digest that is not the body's is refused before the body is parsed.
        assert_error(resp, 400, "DIGEST_INVALID" if ":" in reference else "MANIFEST_INVALID")
    elif reference not in ("v1", seeded.digest):
        assert resp.status_code == 404, reference


@FUZZ
@given(digest=st.one_of(DIGESTISH, TEXT.filter(bool)), method=st.sampled_from(["GET", "HEAD"]))
async def test_blob_and_referrer_digests(
    api: httpx.AsyncClient, seeded: Pushed, digest: str, method: str
) -> None:
    if "/" in digest or digest in (".", ".."):
        return
    expected = digest_error(digest)
    for path in (f"/v2/lib/app/blobs/{seg(digest)}", f"/v2/lib/app/referrers/{seg(digest)}"):
        resp = await api.request(method, path)
        check_reply(resp)
        if expected is not None:
            assert resp.status_code == 400, (path, resp.text)
            if method != "HEAD":
                assert resp.json()["errors"][0]["code"] == expected, digest
        elif "/blobs/" in path:
            assert resp.status_code in (200, 404), digest
        else:
            assert resp.status_code == 200, digest


@FUZZ
@given(name=NAMES, reference=st.one_of(TAGISH, DIGESTISH), accept=HEADER_TEXT)
async def test_names_and_accept(
    api: httpx.AsyncClient, seeded: Pushed, name: str, reference: str, accept: str
) -> None:
    headers = {"Accept": accept.encode("latin-1")}
    for path in (
        f"/v2/{path_name(name)}/manifests/{seg(reference)}",
        f"/v2/{path_name(name)}/tags/list",
        f"/v2/{path_name(name)}/blobs/{seg(reference)}",
    ):
        check_reply(await api.get(path, headers=headers))
        check_reply(await api.head(path, headers=headers))


@FUZZ
@given(n=st.one_of(TEXT, NUMERALS, st.integers(-(10**30), 10**30).map(str)), last=TEXT)
async def test_pagination_params(api: httpx.AsyncClient, seeded: Pushed, n: str, last: str) -> None:
    for path in ("/v2/_catalog", "/v2/lib/app/tags/list"):
        resp = await api.get(path, params={"n": n, "last": last})
        check_reply(resp)
        if n and not (n.isascii() and n.isdigit()):
            assert_error(resp, 400, "PAGINATION_NUMBER_INVALID")
        elif resp.status_code == 200:
            items = next(iter(v for k, v in resp.json().items() if k != "name"))
            assert items == sorted(items)
            assert all(item > last for item in items) if last else True


@FUZZ
@given(
    digest=st.one_of(DIGESTISH, st.just(sha256(b"fuzz"))),
    mount=st.one_of(st.none(), DIGESTISH),
    source=st.one_of(st.none(), NAMES),
    body=st.binary(max_size=64),
)
async def test_upload_start_params(
    api: httpx.AsyncClient,
    seeded: Pushed,
    digest: str,
    mount: str | None,
    source: str | None,
    body: bytes,
) -> None:
    params = {"digest": digest}
    if mount is not None:
        params["mount"] = mount
    if source is not None:
        params["from"] = source
    resp = await api.post("/v2/lib/app/blobs/uploads/", params=params, content=body)
    check_reply(resp)
    if mount is None and source is None and digest_error(digest) is not None:
        assert_error(resp, 400, digest_error(digest))


@FUZZ
@given(
    method=st.sampled_from(["GET", "PATCH", "PUT", "DELETE", "HEAD"]),
    real=st.booleans(),
    upload=TEXT.filter(bool),
    content_range=st.one_of(
        st.none(),
        HEADER_TEXT,
        st.from_regex(r"(bytes[ =])?[0-9]{1,25}-[0-9]{1,25}", fullmatch=True),
    ),
    content_length=st.one_of(st.none(), HEADER_TEXT, LATIN1_NUMERALS),
    digest=st.one_of(st.none(), DIGESTISH),
    body=st.binary(max_size=32),
)
async def test_upload_session_requests(
    api: httpx.AsyncClient,
    seeded: Pushed,
    method: str,
    real: bool,
    upload: str,
    content_range: str | None,
    content_length: str | None,
    digest: str | None,
    body: bytes,
) -> None:
    location = (
        await start_session(api, "lib/app") if real else f"/v2/lib/app/blobs/uploads/{seg(upload)}"
    )
    headers: dict[str, bytes] = {}
    if content_range is not None:
        headers["Content-Range"] = content_range.encode("latin-1")
    if content_length is not None:
        headers["Content-Length"] = content_length.encode("latin-1")
    params = {"digest": digest} if digest is not None else {}
    resp = await api.request(method, location, params=params, content=body, headers=headers)
    check_reply(resp)


@FUZZ
@given(method=METHODS, path=st.lists(st.one_of(TEXT, REFERENCE), max_size=6), query=TEXT)
async def test_any_path(
    api: httpx.AsyncClient, seeded: Pushed, method: str, path: list[str], query: str
) -> None:
    url = "/v2/" + "/".join(seg(p) for p in path)
    resp = await api.request(method, url, params={"q": query, "n": query, "digest": query})
    check_reply(resp)
    # whatever happened, the seeded image is intact
    if method == "DELETE" and "manifests" in path:
        return
    assert (await api.get("/v2/lib/app/manifests/v1")).content == seeded.body


# ---- hostile variants of every route's parameters (issue 7) --------------------------------

# Inserted into a valid parameter, as sent on the wire: control characters, encoded slashes,
# dot-dots, non-ASCII digits and letters that look like ASCII ones. A literal `..` segment is
# normalised away by httpx's URL parser, so a whole-segment dot-dot is sent encoded (the live
# corpus, tests/corpus.py, sends literal ones over a raw socket).
HOSTILE = ["%00", "%0A", "%0D", "%0D%0A", "%09", "%7F", "%20", "%2F", "%2f", "%5C", "..",
           "%2E%2E", "%D9%A3", "%C2%B2", "%EF%BC%91", "%D0%B0", "%EF%BD%81", "%E2%80%8B",
           "%E2%84%AA", "%C4%B1", "a" * 300]  # fmt: skip
PARAM_CODES = {
    "name": {"NAME_INVALID"},
    "tag": {"MANIFEST_UNKNOWN", "NAME_INVALID", "MANIFEST_INVALID"},
    # A well-formed digest of an algorithm we do not support is UNSUPPORTED (md5:..., or an
    # inserted run of letters that makes the algorithm "aaa...sha256").
    "manifest": {"DIGEST_INVALID", "UNSUPPORTED"},
    "blob": {"DIGEST_INVALID", "UNSUPPORTED"},
    "upload": {"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"},
}
ROUTES = [
    ("GET", "/v2/{name}/tags/list"),
    ("GET", "/v2/{name}/manifests/{tag}"),
    ("HEAD", "/v2/{name}/manifests/{manifest}"),
    ("PUT", "/v2/{name}/manifests/{tag}"),
    ("PUT", "/v2/{name}/manifests/{manifest}"),
    ("DELETE", "/v2/{name}/manifests/{tag}"),
    ("DELETE", "/v2/{name}/manifests/{manifest}"),
    ("GET", "/v2/{name}/blobs/{blob}"),
    ("HEAD", "/v2/{name}/blobs/{blob}"),
    ("DELETE", "/v2/{name}/blobs/{blob}"),
    ("POST", "/v2/{name}/blobs/uploads/"),
    ("GET", "/v2/{name}/blobs/uploads/{upload}"),
    ("PATCH", "/v2/{name}/blobs/uploads/{upload}"),
    ("PUT", "/v2/{name}/blobs/uploads/{upload}"),
    ("DELETE", "/v2/{name}/blobs/uploads/{upload}"),
    ("GET", "/v2/{name}/referrers/{manifest}"),
]
CHUNK = b"hostile chunk"


@dataclass
class Target:
    """The seeded store: valid values of every route parameter, and its snapshot."""

    image: Pushed
    params: dict[str, str]
    before: Snapshot


@pytest.fixture
async def target(api: httpx.AsyncClient, datadir: DataDir) -> Target:
    image = await push_image(api, "lib/app", "v1")
    upload = (await start_session(api, "lib/app")).rsplit("/", 1)[1]
    params = {
        "name": "lib/app",
        "tag": "v1",
        "manifest": image.digest,
        "blob": image.doc["layers"][0]["digest"],
        "upload": upload,
    }
    return Target(image, params, take_snapshot(datadir))


def still_a_valid(param: str, decoded: str) -> bool:
    """True when a mutation happens to leave a valid value (`v..1` is a valid tag)."""
    return param == "tag" and TAG.fullmatch(decoded) is not None


@settings(FUZZ, max_examples=250)
@given(route=st.sampled_from(ROUTES), data=st.data())
async def test_hostile_route_parameters(
    api: httpx.AsyncClient,
    datadir: DataDir,
    target: Target,
    route: tuple[str, str],
    data: st.DataObject,
) -> None:
    method, template = route
    names = re.findall(r"{(\w+)}", template)
    param = data.draw(st.sampled_from(names), label="param")
    valid = target.params[param]
    insert = data.draw(st.sampled_from(HOSTILE), label="insert")
    at = data.draw(st.integers(0, len(valid)), label="at")
    hostile = valid[:at] + insert + valid[at:]
    assume(not still_a_valid(param, unquote(hostile)))
    raw_path = template.format(**{**target.params, param: hostile})
    url = httpx.URL(BASE_URL + raw_path)
    assume(url.raw_path == raw_path.encode())  # sent as written, not normalised

    headers = {"Content-Type": OCI_MANIFEST} if "manifests" in template else {}
    body = target.image.body if "manifests" in template else CHUNK
    params = {"digest": sha256(CHUNK)} if method == "PUT" and "uploads" in template else {}
    if method == "PATCH":
        headers["Content-Range"] = f"0-{len(CHUNK) - 1}"
    content = body if method in ("PUT", "PATCH", "POST") else None
    resp = await api.request(method, url, params=params, headers=headers, content=content)

    assert 400 <= resp.status_code < 500, (method, raw_path, resp.status_code, resp.text[:300])
    error = assert_error(resp, resp.status_code)
    if method != "HEAD":
        assert error["code"] in PARAM_CODES[param], (method, raw_path, error)
    assert target.before.diff(take_snapshot(datadir)) == [], (method, raw_path)
