"""The bad-input corpus: malformed and hostile HTTP requests, as data, built from families.

Every case is one request sent byte for byte (`path` is the raw request target: its
percent-encodings, dot segments and control bytes reach the server as written), with the
answers it may get. tests/test_bad_input_corpus.py sends them to the real TLS server
seeded by `Seed`, checks each answer, and checks that nothing stored has changed.

Expectations follow the distribution spec (v1.1) and RFC 9110/9112. Where the right answer
is debatable the case accepts each defensible status and says why in `why`. Destructive
verbs aim at the seeded repositories, digests and upload sessions on purpose: a malformed
parameter must never reach what it almost names.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from registry_core.manifests import (
    DOCKER_MANIFEST,
    MAX_MANIFEST_BYTES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
)

Headers = tuple[tuple[bytes, bytes], ...]

ANY_4XX: frozenset[int] = frozenset(range(400, 500))


@dataclass(frozen=True)
class Case:
    family: str
    method: bytes
    path: bytes
    """The request target exactly as sent."""
    headers: Headers = ()
    body: bytes = b""
    status: frozenset[int] = ANY_4XX
    """Acceptable statuses."""
    codes: frozenset[str] = frozenset()
    """Acceptable codes of the first OCI error of a 4xx answer (empty: any known code)."""
    host: bool = True
    """Send `Host: <server>` (before `headers`)."""
    auth: bool = True
    """Send the valid `Authorization` (before `headers`)."""
    length: bool = True
    """Send `Content-Length: len(body)` for a body, or for an empty PUT/POST/PATCH."""
    version: bytes = b"HTTP/1.1"
    no_reply_ok: bool = False
    """The server may keep waiting (a body shorter than declared) or close without answer."""
    why: str = ""
    """Why the expectation is what it is, where it is debatable."""
    expect_headers: tuple[tuple[str, str], ...] = ()
    """Response headers that must be present with exactly this value (lower-case names)."""

    @property
    def label(self) -> str:
        shown = self.path if len(self.path) <= 120 else self.path[:100] + b"..."
        return f"{self.method.decode('latin-1')} {shown.decode('latin-1')!r}"


@dataclass(frozen=True)
class Seed:
    """What the test stored before the corpus: the targets of the destructive cases."""

    repo: str
    tag: str
    manifest: str
    manifest_body: bytes
    config: str
    layer: str
    layer_size: int
    other_repo: str
    other_tag: str
    other_manifest: str
    other_blob: str
    """A blob stored in other_repo only."""
    other_blob_size: int
    session: str
    """An upload session in `repo` with `session_size` bytes acknowledged (compared exactly)."""
    session_size: int
    other_session: str
    """An upload session in other_repo (compared exactly)."""
    scratch_session: str
    """An upload session in `repo` that bad finishing PUTs may consume."""
    username: str = "admin"
    password: str = "x"

    @property
    def manifest_doc(self) -> dict[str, object]:
        doc = json.loads(self.manifest_body)
        assert isinstance(doc, dict)
        return doc


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def b(text: str) -> bytes:
    return text.encode("latin-1")


def codes(*names: str) -> frozenset[str]:
    return frozenset(names)


def statuses(*values: int) -> frozenset[int]:
    return frozenset(values)


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def ct(media_type: str) -> Headers:
    return ((b"Content-Type", b(media_type)),)


# ---- names ---------------------------------------------------------------------------------

# (name as it appears in the path, what is wrong with it)
HOSTILE_NAMES: list[tuple[bytes, str]] = [
    (b"lib%00app", "NUL"),
    (b"lib/app%00", "trailing NUL"),
    (b"lib%0Aapp", "LF"),
    (b"lib/app%0A", "trailing LF"),
    (b"lib/app%0D", "trailing CR"),
    (b"lib/app%0D%0A", "trailing CRLF"),
    (b"%0Alib/app", "leading LF"),
    (b"lib/app%09", "trailing TAB"),
    (b"lib/app%7F", "DEL"),
    (b"lib%20app", "space"),
    (b"lib%2Fapp", "%2F inside a name"),
    (b"lib%2fapp", "%2f inside a name"),
    (b"lib/app%2F", "trailing %2F"),
    (b"lib%5Capp", "backslash"),
    (b"lib/../lib/app", "dot-dot segment that would normalise to the seeded name"),
    (b"lib/%2E%2E/lib/app", "encoded dot-dot segment"),
    (b"lib/./app", "dot segment"),
    (b"lib/app/..", "trailing dot-dot"),
    (b"..", "dot-dot alone"),
    (b"a" * 256, "256 characters, over the 255 limit"),
    (b"a/" * 128 + b"a", "257 characters of one-letter components"),
    (b"l%C3%AFb/app", "non-ASCII (i with diaeresis)"),
    (b"lib/%D0%B0pp", "Cyrillic a look-alike"),
    (b"lib/%EF%BD%81pp", "fullwidth a look-alike"),
    (b"lib/app%E2%80%8B", "zero-width space"),
    (b"lib/%E2%84%AApp", "Kelvin sign (lowercases to k)"),
    (b"Lib/App", "uppercase"),
    (b"LIB/APP", "all uppercase"),
    (b"lib//app", "empty component"),
    (b"lib/app/", "trailing empty component"),
    (b"/lib/app", "leading empty component"),
    (b"-lib/app", "leading separator"),
    (b"lib/app-", "trailing separator"),
    (b"lib___app", "three underscores"),
]


def _name_routes(seed: Seed, name: bytes) -> list[tuple[bytes, bytes, Headers, bytes]]:
    """(method, path, headers, body) of every route, with `name` in place of the seeded repo."""
    v2 = b"/v2/" + name
    body = seed.manifest_body
    chunk = b"12345"
    end = seed.session_size + len(chunk) - 1
    content_range = ((b"Content-Range", b(f"{seed.session_size}-{end}")),)
    return [
        (b"GET", v2 + b"/tags/list", (), b""),
        (b"GET", v2 + b"/manifests/" + b(seed.tag), (), b""),
        (b"HEAD", v2 + b"/manifests/" + b(seed.manifest), (), b""),
        (b"PUT", v2 + b"/manifests/" + b(seed.tag), ct(OCI_MANIFEST), body),
        (b"DELETE", v2 + b"/manifests/" + b(seed.tag), (), b""),
        (b"DELETE", v2 + b"/manifests/" + b(seed.manifest), (), b""),
        (b"GET", v2 + b"/blobs/" + b(seed.layer), (), b""),
        (b"DELETE", v2 + b"/blobs/" + b(seed.layer), (), b""),
        (b"POST", v2 + b"/blobs/uploads/", (), b""),
        (b"PATCH", v2 + b"/blobs/uploads/" + b(seed.session), content_range, chunk),
        (b"DELETE", v2 + b"/blobs/uploads/" + b(seed.session), (), b""),
        (b"GET", v2 + b"/referrers/" + b(seed.manifest), (), b""),
    ]


def names(seed: Seed) -> list[Case]:
    """Every route with a malformed repository name: 400 NAME_INVALID, nothing touched."""
    cases = []
    for name, what in HOSTILE_NAMES:
        for method, path, headers, body in _name_routes(seed, name):
            status, allowed = statuses(400), codes("NAME_INVALID")
            why = f"name: {what}"
            if name == b"/lib/app":
                why += "; the empty first component may also route nowhere (404 NOT_FOUND)"
                status, allowed = statuses(400, 404), codes("NAME_INVALID", "NOT_FOUND")
            cases.append(Case("names", method, path, headers, body, status, allowed, why=why))
    cases += _name_extras(seed)
    return cases


def _name_extras(seed: Seed) -> list[Case]:
    tag = b(seed.tag)
    raw_utf8 = b"/v2/l\xc3\xafb/app/manifests/" + tag
    return [
        Case(
            "names",
            b"GET",
            b"/v2//manifests/" + tag,
            status=statuses(400, 404),
            codes=codes("NAME_INVALID", "NOT_FOUND"),
            why="empty name: no route or invalid",
        ),
        Case(
            "names",
            b"DELETE",
            b"/v2//manifests/" + tag,
            status=statuses(400, 404),
            codes=codes("NAME_INVALID", "NOT_FOUND"),
            why="empty name: no route or invalid",
        ),
        Case(
            "names",
            b"DELETE",
            raw_utf8,
            status=statuses(400),
            why="raw non-ASCII bytes in the request target (RFC 9112 3.2: not a valid "
            "origin-form); 400 from the HTTP layer or NAME_INVALID",
        ),
        Case(
            "names",
            b"GET",
            b"/v2/%6Cib/app/manifests/" + tag,
            status=statuses(200, 400),
            codes=codes("NAME_INVALID"),
            why="%6C is 'l': RFC 3986 6.2.2.2 makes encoded unreserved characters "
            "equivalent (200), refusing every escape in a name is also defensible",
        ),
    ]


# ---- references and digests ----------------------------------------------------------------


def digest_variants(digest: str) -> list[tuple[bytes, frozenset[str], str]]:
    """Malformed variants of a valid sha256 digest: (path text, expected codes, what)."""
    hexpart = digest.removeprefix("sha256:")
    bad = codes("DIGEST_INVALID")
    unsupported = codes("UNSUPPORTED", "DIGEST_INVALID")
    d = b(digest)
    return [
        (d + b"%0A", bad, "trailing LF"),
        (d + b"%0D", bad, "trailing CR"),
        (d + b"%0D%0A", bad, "trailing CRLF"),
        (d + b"%00", bad, "trailing NUL"),
        (d + b"%20", bad, "trailing space"),
        (b"%20" + d, bad, "leading space"),
        (d + b"%09", bad, "trailing TAB"),
        (d + b"%2F", bad, "trailing %2F"),
        (b"sha256:" + b(hexpart.upper()), bad, "uppercase hex"),
        (d[:-1], bad, "63 hex"),
        (d + b"0", bad, "65 hex"),
        (b"sha256:", bad, "empty encoded part"),
        (b"sha256::" + b(hexpart), bad, "double colon"),
        (b"SHA256:" + b(hexpart), bad, "uppercase algorithm"),
        (b"sha512:" + b(hexpart), bad, "sha512 with 64 hex"),
        (b"sha256:" + b(hexpart[:-1]) + b"g", bad, "non-hex character"),
        (b"sha256:" + b(hexpart[:-1]) + b"%D9%A3", bad, "Arabic-Indic digit"),
        (b"sha256:" + b(hexpart[:-1]) + b"%EF%BD%81", bad, "fullwidth a"),
        (b"md5:" + b(hexpart[:32]), unsupported, "md5"),
        (b"sha384:" + b(hexpart) + b(hexpart[:32]), unsupported, "sha384"),
        (b"sha256+b64u:" + b(hexpart), unsupported, "unknown algorithm with a valid form"),
    ]


def _manifest_tag_variants(tag: str) -> list[tuple[bytes, str]]:
    t = b(tag)
    return [
        (t + b"%0A", "trailing LF"),
        (t + b"%00", "trailing NUL"),
        (t + b"%0D", "trailing CR"),
        (t + b"%20", "trailing space"),
        (b"%20" + t, "leading space"),
        (t + b"%09", "trailing TAB"),
        (b"-" + t, "leading dash"),
        (b"." + t, "leading dot"),
        (t[:1] + b"%E2%80%8B" + t[1:], "zero-width space"),
        (b"%EF%BD%96" + t[1:], "fullwidth look-alike"),
        (b"a" * 129, "129 characters"),
    ]


def references(seed: Seed) -> list[Case]:
    """Malformed manifest references and blob digests on the seeded repository."""
    repo = b"/v2/" + b(seed.repo)
    body = seed.manifest_body
    cases = []
    for variant, allowed, what in digest_variants(seed.manifest):
        why = f"manifest digest: {what}"
        m = repo + b"/manifests/" + variant
        for method in (b"GET", b"HEAD", b"DELETE"):
            cases.append(
                Case("references", method, m, status=statuses(400), codes=allowed, why=why)
            )
        cases.append(
            Case("references", b"PUT", m, ct(OCI_MANIFEST), body, statuses(400), allowed, why=why)
        )
        cases.append(
            Case(
                "references",
                b"GET",
                repo + b"/referrers/" + variant,
                status=statuses(400),
                codes=allowed,
                why=why,
            )
        )
    for variant, allowed, what in digest_variants(seed.layer):
        for method in (b"GET", b"HEAD", b"DELETE"):
            cases.append(
                Case(
                    "references",
                    method,
                    repo + b"/blobs/" + variant,
                    status=statuses(400),
                    codes=allowed,
                    why=f"blob digest: {what}",
                )
            )
    cases += _tag_cases(seed, repo, body)
    cases += _unknown_references(repo)
    return cases


def _tag_cases(seed: Seed, repo: bytes, body: bytes) -> list[Case]:
    cases = []
    why_get = (
        "not a tag: 404 MANIFEST_UNKNOWN as the v1.1 conformance suite wants for "
        ".INVALID (a reference that cannot exist); 400 NAME_INVALID also defensible"
    )
    for variant, what in _manifest_tag_variants(seed.tag):
        m = repo + b"/manifests/" + variant
        for method in (b"GET", b"HEAD", b"DELETE"):
            cases.append(
                Case(
                    "references",
                    method,
                    m,
                    status=statuses(400, 404),
                    codes=codes("MANIFEST_UNKNOWN", "NAME_INVALID"),
                    why=f"tag {what}; {why_get}",
                )
            )
        cases.append(
            Case(
                "references",
                b"PUT",
                m,
                ct(OCI_MANIFEST),
                body,
                statuses(400),
                codes("NAME_INVALID", "MANIFEST_INVALID"),
                why=f"tag {what}",
            )
        )
    conformance = "distribution-spec v1.1 conformance: 404 MANIFEST_UNKNOWN for .INVALID"
    for method in (b"GET", b"HEAD"):
        cases.append(
            Case(
                "references",
                method,
                repo + b"/manifests/.INVALID",
                status=statuses(404),
                codes=codes("MANIFEST_UNKNOWN"),
                why=conformance,
            )
        )
    cases.append(
        Case(
            "references",
            b"PUT",
            repo + b"/manifests/.INVALID",
            ct(OCI_MANIFEST),
            body,
            statuses(400),
            codes("NAME_INVALID", "MANIFEST_INVALID"),
            why="issue 7: a PUT of an impossible tag stays 400",
        )
    )
    return cases


def _unknown_references(repo: bytes) -> list[Case]:
    zero = b"sha256:" + b"0" * 64
    return [
        Case(
            "references",
            b"GET",
            repo + b"/blobs/" + zero,
            status=statuses(404),
            codes=codes("BLOB_UNKNOWN"),
        ),
        Case(
            "references",
            b"DELETE",
            repo + b"/blobs/" + zero,
            status=statuses(404),
            codes=codes("BLOB_UNKNOWN"),
        ),
        Case(
            "references",
            b"DELETE",
            repo + b"/manifests/" + zero,
            status=statuses(404),
            codes=codes("MANIFEST_UNKNOWN"),
        ),
        Case(
            "references",
            b"GET",
            repo + b"/blobs/v1",
            status=statuses(400),
            codes=codes("DIGEST_INVALID"),
            why="a tag where a digest must be",
        ),
        Case(
            "references",
            b"DELETE",
            repo + b"/blobs/v1",
            status=statuses(400),
            codes=codes("DIGEST_INVALID"),
            why="a tag where a digest must be",
        ),
    ]


# ---- headers -------------------------------------------------------------------------------


def _targets(seed: Seed) -> list[tuple[bytes, bytes, Headers, bytes]]:
    """A few requests that would change the store if served: the targets of framing cases."""
    repo = b"/v2/" + b(seed.repo)
    return [
        (b"GET", b"/v2/", (), b""),
        (b"DELETE", repo + b"/manifests/" + b(seed.tag), (), b""),
        (b"DELETE", repo + b"/manifests/" + b(seed.manifest), (), b""),
        (b"DELETE", repo + b"/blobs/" + b(seed.layer), (), b""),
        (b"PUT", repo + b"/manifests/" + b(seed.tag), ct(OCI_MANIFEST), seed.manifest_body),
    ]


def headers(seed: Seed) -> list[Case]:
    cases = _host_cases(seed) + _length_cases(seed) + _range_cases(seed)
    cases += _accept_cases(seed) + _malformed_header_cases(seed)
    return cases


def _host_cases(seed: Seed) -> list[Case]:
    rfc = "RFC 9112 3.2: 400 for a missing Host, more than one Host, or an invalid Host"
    cases = []
    for method, path, hdrs, body in _targets(seed):
        variants: list[tuple[bool, Headers]] = [
            (False, ()),
            (True, ((b"Host", b"127.0.0.1"),)),
            (True, ((b"Host", b"evil.example"),)),
            (False, ((b"Host", b"a b"),)),
            (False, ((b"Host", b"x\x01y"),)),
        ]
        for host, extra in variants:
            cases.append(
                Case("headers", method, path, extra + hdrs, body, statuses(400), host=host, why=rfc)
            )
    return cases


def _length_cases(seed: Seed) -> list[Case]:
    repo = b"/v2/" + b(seed.repo)
    session = repo + b"/blobs/uploads/" + b(seed.session)
    put = repo + b"/manifests/" + b(seed.tag)
    body = seed.manifest_body
    rfc = "RFC 9112 6.3: an invalid Content-Length is an unrecoverable framing error: 400"
    cases = []
    for value in (b"abc", b"-1", b"1,2", b"+5", b"0x5", b"5 5", b"", b"9" * 30, b"\xd9\xa3"):
        for method, path, hdrs, data in (
            (b"PUT", put, ct(OCI_MANIFEST), body),
            (b"PATCH", session, (), b"12345"),
            (b"POST", repo + b"/blobs/uploads/?digest=" + b(sha256(b"12345")), (), b"12345"),
        ):
            cases.append(
                Case(
                    "headers",
                    method,
                    path,
                    ((b"Content-Length", value), *hdrs),
                    data,
                    statuses(400),
                    length=False,
                    why=rfc,
                )
            )
    two = ((b"Content-Length", b"5"), (b"Content-Length", b"6"))
    cases.append(
        Case(
            "headers",
            b"PATCH",
            session,
            two,
            b"12345",
            statuses(400),
            length=False,
            why="RFC 9112 6.3: differing Content-Length values: 400",
        )
    )
    short = ((b"Content-Length", b(str(len(body) - 1))), *ct(OCI_MANIFEST))
    cases.append(
        Case(
            "headers",
            b"PUT",
            put,
            short,
            body,
            statuses(400),
            codes("MANIFEST_INVALID"),
            length=False,
            why="Content-Length one short: the manifest is cut, invalid JSON",
        )
    )
    post = repo + b"/blobs/uploads/?digest=" + b(sha256(b"123456"))
    cases.append(
        Case(
            "headers",
            b"POST",
            post,
            ((b"Content-Length", b"5"),),
            b"123456",
            statuses(400),
            codes("DIGEST_INVALID", "SIZE_INVALID"),
            length=False,
            why="Content-Length one short: the blob is cut, its digest differs",
        )
    )
    for method, path, hdrs, data in (
        (b"PUT", put, ct(OCI_MANIFEST), body[:-10]),
        (b"PATCH", session, (), b"12345"),
        (b"POST", post, (), b"12345"),
    ):
        long = ((b"Content-Length", b(str(len(data) + 10))), *hdrs)
        cases.append(
            Case(
                "headers",
                method,
                path,
                long,
                data,
                statuses(400, 408),
                length=False,
                no_reply_ok=True,
                why="body shorter than declared: the server waits (or times out "
                "with 408/400); nothing may be stored either way",
            )
        )
    smuggle = ((b"Content-Length", b"4"), (b"Transfer-Encoding", b"chunked"), *ct(OCI_MANIFEST))
    cases.append(
        Case(
            "headers",
            b"PUT",
            put,
            smuggle,
            b"4\r\n{}{}\r\n0\r\n\r\n",
            statuses(400),
            length=False,
            why="RFC 9112 6.3: Content-Length with Transfer-Encoding may be refused "
            "(400); if not, chunked wins and the body {}{} is invalid JSON",
        )
    )
    return cases


def _range_cases(seed: Seed) -> list[Case]:
    blob = b"/v2/" + b(seed.repo) + b"/blobs/" + b(seed.layer)
    size = seed.layer_size
    unsat = (("content-range", f"bytes */{size}"),)
    ignore = "RFC 9110 14.2: an invalid Range is ignored, the whole blob is sent (200)"
    table: list[tuple[bytes, frozenset[int], str, tuple[tuple[str, str], ...]]] = [
        (b"bytes=abc", statuses(200), ignore, ()),
        (b"bytes=", statuses(200), ignore, ()),
        (b"bytes=-", statuses(200), ignore, ()),
        (b"bytes=1-2-3", statuses(200), ignore, ()),
        (
            b"bytes = 0-1",
            statuses(200, 206),
            ignore + "; a lenient parser that allows spaces around '=' is harmless (206)",
            (),
        ),
        (b"bytes=0-\xd9\xa3", statuses(200), ignore + " (a non-ASCII digit)", ()),
        (b"items=0-1", statuses(200), "RFC 9110 14.2: an unknown range unit is ignored", ()),
        (
            b"bytes=500-0",
            statuses(200, 416),
            "RFC 9110 14.2: last < first is an invalid range-spec: ignore (200) or refuse (416)",
            (),
        ),
        (b(f"bytes={size}-"), statuses(416), "RFC 9110 15.5.17: first-pos past the end", unsat),
        (b"bytes=" + b"9" * 30 + b"-", statuses(416), "first-pos far past the end", unsat),
        (b"bytes=-0", statuses(416), "RFC 9110 14.1.3: a zero suffix is unsatisfiable", unsat),
        (
            b"bytes=0-1,3-4",
            statuses(200, 416, 206),
            "issue 7: multi-range answers the whole blob or 416 (or multipart 206)",
            (),
        ),
        (
            b"bytes=-" + b"9" * 30,
            statuses(206, 200),
            "RFC 9110 14.1.3: a suffix longer than the blob is the whole blob",
            (),
        ),
    ]
    cases = []
    for value, status, why, expect in table:
        for method in (b"GET", b"HEAD"):
            cases.append(
                Case(
                    "headers",
                    method,
                    blob,
                    ((b"Range", value),),
                    status=status,
                    why=why,
                    expect_headers=expect if method == b"GET" else (),
                )
            )
    two = ((b"Range", b"bytes=0-0"), (b"Range", b"bytes=1-1"))
    cases.append(
        Case(
            "headers",
            b"GET",
            blob,
            two,
            status=statuses(200, 206, 416),
            why="two Range fields make an invalid ranges-specifier: ignore or 416; "
            "serving the first (206) is harmless on a read",
        )
    )
    return cases


def _accept_cases(seed: Seed) -> list[Case]:
    path = b"/v2/" + b(seed.repo) + b"/manifests/" + b(seed.tag)
    values = [
        b"garbage",
        b"",
        b"*/*;q=abc",
        b(OCI_MANIFEST) + b";q=-1",
        b"a" * 8000,
        b"\xff\xfe",
        b"application/json, */*;q=\x7f",
    ]
    ok = statuses(200, 400, 404, 406)
    cases = [
        Case(
            "headers",
            b"GET",
            path,
            ((b"Accept", v),),
            status=ok,
            why="content negotiation on a bad Accept: the manifest, or a clean "
            "400/404/406 (obs-text is allowed in a field value, RFC 9110 5.5)",
        )
        for v in values
    ]
    many = tuple((b"Accept", b"x/y%d" % i) for i in range(50))
    cases.append(Case("headers", b"GET", path, many, status=ok, why="50 Accept fields"))
    return cases


def _malformed_header_cases(seed: Seed) -> list[Case]:
    rfc = "RFC 9112 5: an invalid field line is a 400"
    bad: list[tuple[bytes, bytes]] = [
        (b"Bad Header", b"x"),
        (b"X-Nul", b"a\x00b"),
        (b"X-Cr", b"a\rb"),
        (b"", b"empty name"),
    ]
    cases = []
    for method, path, hdrs, body in _targets(seed):
        for name, value in bad:
            cases.append(
                Case("headers", method, path, ((name, value), *hdrs), body, statuses(400), why=rfc)
            )
        fold = ((b"X-Fold", b"a\r\n b"), *hdrs)
        cases.append(
            Case(
                "headers",
                method,
                path,
                fold,
                body,
                statuses(400),
                why="RFC 9112 5.2: obs-fold in a request: 400 (or unfolded, but the "
                "request is then a target that must still be refused)",
            )
        )
    return cases


# ---- uploads and chunking ------------------------------------------------------------------


def uploads(seed: Seed) -> list[Case]:
    cases = _chunk_order_cases(seed) + _cross_repo_cases(seed) + _upload_id_cases(seed)
    cases += _finish_cases(seed) + _monolithic_cases(seed) + _chunked_framing_cases(seed)
    return cases


def _chunk_order_cases(seed: Seed) -> list[Case]:
    path = b"/v2/" + b(seed.repo) + b"/blobs/uploads/" + b(seed.session)
    n = seed.session_size
    spec = "distribution-spec: a chunk out of order is 416 Requested Range Not Satisfiable"
    cases = []
    for start in (0, 1, n - 1, n + 1, n + 10, 2**40):
        rng = b(f"{start}-{start + 4}")
        cases.append(
            Case(
                "uploads",
                b"PATCH",
                path,
                ((b"Content-Range", rng),),
                b"12345",
                statuses(416),
                codes("BLOB_UPLOAD_INVALID"),
                why=spec,
            )
        )
    bad_ranges = [
        b"abc",
        b(f"{n}-"),
        b(f"-{n}"),
        b(f"{n + 4}-{n}"),
        b"*/10",
        b(f"{n}-{n + 4}, {n + 5}-{n + 9}"),
        b"\xd9\xa3-\xd9\xa4",
        b(f"{n}-" + "9" * 30),
        b(f"bytes {n}-{n + 9}/20"),
        b(f"{n}-{n + 9}"),
    ]
    for value in bad_ranges:
        cases.append(
            Case(
                "uploads",
                b"PATCH",
                path,
                ((b"Content-Range", value),),
                b"12345",
                statuses(400, 416),
                codes("BLOB_UPLOAD_INVALID", "SIZE_INVALID"),
                why="a malformed Content-Range or one that disagrees with the body",
            )
        )
    return cases


def _cross_repo_cases(seed: Seed) -> list[Case]:
    mine = b"/v2/" + b(seed.other_repo) + b"/blobs/uploads/" + b(seed.session)
    theirs = b"/v2/" + b(seed.repo) + b"/blobs/uploads/" + b(seed.other_session)
    digest = b(sha256(b"x" * (seed.session_size + 5)))
    cases = []
    for path in (mine, theirs):
        for method, hdrs, body, suffix in _session_verbs(seed.session_size, digest):
            cases.append(
                Case(
                    "uploads",
                    method,
                    path + suffix,
                    hdrs,
                    body,
                    statuses(404),
                    codes("BLOB_UPLOAD_UNKNOWN"),
                    why="an upload id of another repository is unknown here",
                )
            )
    return cases


def _session_verbs(size: int, digest: bytes) -> list[tuple[bytes, Headers, bytes, bytes]]:
    rng = ((b"Content-Range", b(f"{size}-{size + 4}")),)
    return [
        (b"GET", (), b"", b""),
        (b"PATCH", rng, b"12345", b""),
        (b"PUT", (), b"12345", b"?digest=" + digest),
        (b"DELETE", (), b"", b""),
    ]


def _upload_id_cases(seed: Seed) -> list[Case]:
    s = b(seed.session)
    repo = b"/v2/" + b(seed.repo) + b"/blobs/uploads/"
    first_letter = next(i for i, c in enumerate(seed.session) if c in "abcdef")
    ids = [
        b"3f2b8c1e-0d7a-4e55-9a51-6f0e2c9d4b17",
        s.upper(),
        s[:-1],
        s + b"0",
        s.replace(b"-", b""),
        s + b"%0A",
        s + b"%00",
        s + b"%2F",
        s + b"%20",
        b"%2E%2E",
        b"..",
        b"..%2F..%2Fregistry.db",
        b"..%2Fuploads%2F" + s,
        b"a" * 300,
        s[:first_letter] + b"%D0%B0" + s[first_letter + 1 :],
        s[:-1] + b"%D9%A3",
    ]
    digest = b(sha256(b"x" * (seed.session_size + 5)))
    cases = []
    for upload_id in ids:
        for method, hdrs, body, suffix in _session_verbs(seed.session_size, digest):
            cases.append(
                Case(
                    "uploads",
                    method,
                    repo + upload_id + suffix,
                    hdrs,
                    body,
                    statuses(400, 404),
                    codes("BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"),
                    why="an unknown or malformed upload id (a look-alike of a real "
                    "one): 404 BLOB_UPLOAD_UNKNOWN, or 400 for a malformed id",
                )
            )
    return cases


def _finish_cases(seed: Seed) -> list[Case]:
    """Bad closing PUTs, on the scratch session (a failed finish may end a session)."""
    path = b"/v2/" + b(seed.repo) + b"/blobs/uploads/" + b(seed.scratch_session)
    content = b"finish me"
    good = sha256(content)
    gone = statuses(400, 404)
    bad = codes("DIGEST_INVALID", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "UNSUPPORTED")
    queries = [
        b"",
        b"?digest=",
        b"?digest=" + b(sha256(b"other content")),
        b"?digest=" + b(good) + b"%0A",
        b"?digest=" + b(good.upper()),
        b"?digest=md5:" + b"0" * 32,
        b"?digest=" + b(good) + b"&digest=" + b(good[:-1]),
        b"?digest=" + b(good)[:-1],
    ]
    why = (
        "a PUT without a digest, or with a wrong or malformed one: 400 (the session may be "
        "gone afterwards: 404); the wrong content must not become a blob"
    )
    return [Case("uploads", b"PUT", path + q, (), content, gone, bad, why=why) for q in queries]


def _monolithic_cases(seed: Seed) -> list[Case]:
    repo = b"/v2/" + b(seed.repo) + b"/blobs/uploads/"
    content = b"monolithic"
    good = b(sha256(content))
    bad = codes("DIGEST_INVALID", "UNSUPPORTED")
    cases = [
        Case(
            "uploads",
            b"POST",
            repo + b"?digest=" + b(sha256(b"not this")),
            (),
            content,
            statuses(400),
            bad,
            why="digest of other content",
        ),
        Case(
            "uploads",
            b"POST",
            repo + b"?digest=" + good + b"%0A",
            (),
            content,
            statuses(400),
            bad,
            why="digest with a trailing LF",
        ),
        Case(
            "uploads",
            b"POST",
            repo + b"?digest=" + good.upper(),
            (),
            content,
            statuses(400),
            bad,
            why="uppercase digest",
        ),
        Case(
            "uploads",
            b"POST",
            repo + b"?digest=" + good[:-1],
            (),
            content,
            statuses(400),
            bad,
            why="short digest",
        ),
        Case(
            "uploads",
            b"POST",
            repo + b"?digest=sha384:" + b"0" * 96,
            (),
            content,
            statuses(400),
            bad,
            why="unsupported algorithm",
        ),
    ]
    fallback = (
        "distribution-spec: a mount the registry cannot do falls back to an upload "
        "session (202), or a 400 for a malformed parameter; never a mount"
    )
    for query in (
        b"?mount=" + b(seed.other_blob) + b"&from=" + b(seed.repo),
        b"?mount=" + b(seed.other_blob) + b"&from=" + b(seed.other_repo.upper()),
        b"?mount=" + b(seed.other_blob) + b"&from=" + b(seed.other_repo) + b"%00",
        b"?mount=" + b(seed.other_blob) + b"&from=" + b(seed.other_repo) + b"%0A",
        b"?mount=" + b(seed.other_blob) + b"%0A&from=" + b(seed.other_repo),
        b"?mount=" + b(seed.other_blob.upper()) + b"&from=" + b(seed.other_repo),
        b"?mount=" + b(seed.other_blob) + b"&from=..%2F" + b(seed.other_repo),
    ):
        cases.append(
            Case(
                "uploads",
                b"POST",
                repo + query,
                status=statuses(202, 400),
                codes=codes("DIGEST_INVALID", "NAME_INVALID"),
                why=fallback,
            )
        )
    return cases


def _chunked_framing_cases(seed: Seed) -> list[Case]:
    repo = b"/v2/" + b(seed.repo)
    session = repo + b"/blobs/uploads/" + b(seed.session)
    put = repo + b"/manifests/" + b(seed.tag)
    post = repo + b"/blobs/uploads/?digest=" + b(sha256(b"abc"))
    te = ((b"Transfer-Encoding", b"chunked"),)
    # Not here: a malformed trailer field. RFC 9110 6.5.1 lets a recipient discard trailers,
    # and the server does, so the body (valid) is stored: not a fault. Nor a NUL in a chunk
    # extension: RFC 9112 7.1.1 has recipients ignore extensions they do not know, the server
    # does so before the app sees the body, and the body itself is well framed.
    bodies = [
        (b"zz\r\nabc\r\n0\r\n\r\n", "chunk size not hex"),
        (b"3\r\nabcX0\r\n\r\n", "no CRLF after the chunk data"),
        (b"5\r\nabc\r\n0\r\n\r\n", "chunk shorter than its size"),
        (b"ffffffffffffffffffffffff\r\nabc\r\n0\r\n\r\n", "chunk size overflows"),
        (b"-3\r\nabc\r\n0\r\n\r\n", "negative chunk size"),
        (b"0x3\r\nabc\r\n0\r\n\r\n", "0x prefix"),
    ]
    why = "RFC 9112 7.1: malformed chunked framing is a 400; nothing stored, session unchanged"
    cases = []
    for body, what in bodies:
        for method, path, hdrs in (
            (b"PATCH", session, te),
            (b"PUT", put, te + ct(OCI_MANIFEST)),
            (b"POST", post, te),
        ):
            cases.append(
                Case(
                    "uploads",
                    method,
                    path,
                    hdrs,
                    body,
                    statuses(400),
                    length=False,
                    no_reply_ok=what == "chunk shorter than its size",
                    why=f"{why} ({what})",
                )
            )
    cases += _transfer_coding_cases(session)
    return cases


def _transfer_coding_cases(session: bytes) -> list[Case]:
    body = b"3\r\nabc\r\n0\r\n\r\n"
    unknown = (
        "RFC 9112 6.1: an unknown transfer coding SHOULD be 501; 400 is also a "
        "refusal. 501 is the one 5xx this corpus accepts, because the RFC asks for it"
    )
    return [
        Case(
            "uploads",
            b"PATCH",
            session,
            ((b"Transfer-Encoding", b"gzip"),),
            body,
            statuses(400, 501),
            length=False,
            why=unknown,
        ),
        Case(
            "uploads",
            b"PATCH",
            session,
            ((b"Transfer-Encoding", b"xchunked"),),
            body,
            statuses(400, 501),
            length=False,
            why=unknown,
        ),
        Case(
            "uploads",
            b"PATCH",
            session,
            ((b"Transfer-Encoding", b"chunked, gzip"),),
            body,
            statuses(400, 501),
            length=False,
            why="RFC 9112 6.3: chunked not last in a request: 400 (501 for the unknown gzip)",
        ),
        Case(
            "uploads",
            b"PATCH",
            session,
            ((b"Transfer-Encoding", b"chunked"),) * 2,
            body,
            statuses(400),
            length=False,
            why="chunked applied twice: the decoded body is not chunked framing",
        ),
    ]


# ---- manifests -----------------------------------------------------------------------------


def _image(seed: Seed, **changes: object) -> bytes:
    doc = seed.manifest_doc
    doc.update(changes)
    return json.dumps(doc, separators=(",", ":")).encode()


def _bad_bodies(seed: Seed) -> list[tuple[bytes, str, frozenset[int], frozenset[str], str]]:
    """(body, content type, statuses, codes, what)."""
    body = seed.manifest_body
    invalid = codes("MANIFEST_INVALID")
    s400 = statuses(400)
    missing = {"mediaType": OCI_CONFIG, "digest": sha256(b"missing"), "size": 7}
    foreign = {"mediaType": OCI_LAYER_GZIP, "digest": seed.other_blob, "size": seed.other_blob_size}
    bad_desc = {"mediaType": OCI_CONFIG, "digest": "sha256:xyz", "size": 1}
    schema1 = json.dumps(
        {
            "schemaVersion": 1,
            "name": seed.repo,
            "tag": seed.tag,
            "architecture": "amd64",
            "fsLayers": [],
            "history": [],
        }
    ).encode()
    too_big = b'{"schemaVersion":2,"pad":"' + b"a" * MAX_MANIFEST_BYTES + b'"}'
    m = OCI_MANIFEST
    return [
        (body.decode().encode("utf-16"), m, s400, invalid, "UTF-16 body with BOM"),
        (body.decode().encode("utf-16-le"), m, s400, invalid, "UTF-16 body without BOM"),
        (body.decode().encode("utf-32"), m, s400, invalid, "UTF-32 body"),
        (b"{", m, s400, invalid, "truncated JSON"),
        (b"", m, s400, invalid, "empty body"),
        (b"null", m, s400, invalid, "JSON null"),
        (b"[]", m, s400, invalid, "JSON array"),
        (b'"manifest"', m, s400, invalid, "JSON string"),
        (b"{}", m, s400, invalid, "empty object"),
        (b'{"schemaVersion":2}', m, s400, invalid, "no config, no layers"),
        (body + b"x", m, s400, invalid, "trailing garbage"),
        (b"\xff" * 16, m, s400, invalid, "not UTF-8"),
        (b"[" * 100_000, m, s400, invalid, "100000 nested arrays"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, m, s400, invalid, "50000 nested objects"),
        (_image(seed, schemaVersion=1e999), m, s400, invalid, "schemaVersion infinite"),
        (_image(seed, schemaVersion="2"), m, s400, invalid, "schemaVersion a string"),
        (_image(seed, layers={}), m, s400, invalid, "layers not a list"),
        (
            _image(seed, config=bad_desc),
            m,
            s400,
            codes("MANIFEST_INVALID", "DIGEST_INVALID"),
            "descriptor with a malformed digest",
        ),
        (
            _image(seed, config={**bad_desc, "digest": seed.config, "size": -1}),
            m,
            s400,
            invalid,
            "descriptor with a negative size",
        ),
        (
            _image(seed, config=missing),
            m,
            s400,
            codes("MANIFEST_BLOB_UNKNOWN"),
            "config blob missing",
        ),
        (
            _image(seed, layers=[foreign]),
            m,
            s400,
            codes("MANIFEST_BLOB_UNKNOWN"),
            "layer stored in another repository only",
        ),
        (
            _image(seed, mediaType=DOCKER_MANIFEST),
            m,
            s400,
            invalid,
            "body mediaType docker, Content-Type OCI",
        ),
        (body, DOCKER_MANIFEST, s400, invalid, "body mediaType OCI, Content-Type docker"),
        (body, OCI_INDEX, s400, invalid, "image body sent as an index"),
        (body, "text/plain", s400, invalid, "Content-Type text/plain"),
        (body, "garbage", s400, invalid, "Content-Type garbage"),
        (body, "application/json", s400, invalid, "Content-Type application/json"),
        (body, m + "\x0b", s400, invalid, "Content-Type with a control character"),
        (
            schema1,
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            s400,
            codes("MANIFEST_INVALID", "UNSUPPORTED"),
            "schema1 signed",
        ),
        (
            schema1,
            "application/vnd.docker.distribution.manifest.v1+json",
            s400,
            codes("MANIFEST_INVALID", "UNSUPPORTED"),
            "schema1",
        ),
        (
            too_big,
            m,
            statuses(413),
            codes("SIZE_INVALID", "MANIFEST_INVALID"),
            "over the 4 MiB limit",
        ),
    ]


def manifests(seed: Seed) -> list[Case]:
    """Bad manifest PUTs: to the seeded tag, to a fresh tag, and by the body's own digest."""
    repo = b"/v2/" + b(seed.repo) + b"/manifests/"
    cases = []
    for body, media_type, status, allowed, what in _bad_bodies(seed):
        for reference in (b(seed.tag), b"fresh", b(sha256(body))):
            cases.append(
                Case(
                    "manifests",
                    b"PUT",
                    repo + reference,
                    ct(media_type),
                    body,
                    status,
                    allowed,
                    why=what,
                )
            )
    body = seed.manifest_body
    other = _image(seed, annotations={"x": "y"})
    cases += [
        Case(
            "manifests",
            b"PUT",
            repo + b(seed.manifest),
            ct(OCI_MANIFEST),
            other,
            statuses(400),
            codes("DIGEST_INVALID"),
            why="a valid manifest PUT by the seeded digest it does not have",
        ),
        Case(
            "manifests",
            b"PUT",
            repo + b(seed.tag),
            ((b"Content-Type", b(OCI_MANIFEST)), (b"Content-Type", b(DOCKER_MANIFEST))),
            body,
            statuses(400),
            codes("MANIFEST_INVALID"),
            why="two Content-Type fields",
        ),
        Case(
            "manifests",
            b"PUT",
            repo + b(seed.tag),
            ((b"Transfer-Encoding", b"chunked"), *ct(OCI_MANIFEST)),
            _chunked(b'{"schemaVersion":2,"pad":"' + b"a" * MAX_MANIFEST_BYTES + b'"}'),
            statuses(413),
            codes("SIZE_INVALID", "MANIFEST_INVALID"),
            length=False,
            why="over 4 MiB with no Content-Length (chunked)",
        ),
    ]
    return cases


def _chunked(data: bytes, size: int = 1 << 16) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(data[i : i + size]), data[i : i + size])
        for i in range(0, len(data), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


# ---- pagination ----------------------------------------------------------------------------


def pagination(seed: Seed) -> list[Case]:
    invalid = (
        "distribution-spec: n is an integer; anything else is 400 "
        "PAGINATION_NUMBER_INVALID (as the reference registry)"
    )
    bad_n = [
        b"-1",
        b"%D9%A3",
        b"%C2%B2",
        b"%EF%BC%93",
        b"1e3",
        b"0x10",
        b"1.5",
        b"%2B1",
        b"%201",
        b"1%00",
        b"1%0A",
        b"abc",
        b"%FF",
    ]
    either = [
        (b"n=" + b"9" * 30, "a huge n: all of it (200), or refused"),
        (b"n=1&n=2", "n twice: either one, or refused"),
        (b"last=%FF%FE", "last is not UTF-8"),
        (b"last=%00", "last is NUL"),
        (b"last=" + b"a" * 10_000, "last of 10000 characters"),
        (b"n=1&last=lib%2Fapp", "last with an encoded slash"),
        (b"n=0", "n=0: an empty page"),
        (b"n=&last=", "empty values"),
        (b"n", "n without ="),
    ]
    cases = []
    for path in (b"/v2/_catalog", b"/v2/" + b(seed.repo) + b"/tags/list"):
        for n in bad_n:
            cases.append(
                Case(
                    "pagination",
                    b"GET",
                    path + b"?n=" + n,
                    status=statuses(400),
                    codes=codes("PAGINATION_NUMBER_INVALID"),
                    why=invalid,
                )
            )
        for query, what in either:
            cases.append(
                Case(
                    "pagination",
                    b"GET",
                    path + b"?" + query,
                    status=statuses(200, 400, 414),
                    codes=codes("PAGINATION_NUMBER_INVALID"),
                    why=what,
                )
            )
        cases.append(
            Case(
                "pagination",
                b"GET",
                path + b"?n=\xd9\xa3",
                status=statuses(400),
                why="raw non-ASCII bytes in the query: not a valid request target",
            )
        )
    return cases


# ---- auth ----------------------------------------------------------------------------------


def _auth_routes(seed: Seed) -> list[tuple[bytes, bytes, Headers, bytes]]:
    repo = b"/v2/" + b(seed.repo)
    session = repo + b"/blobs/uploads/" + b(seed.session)
    n = seed.session_size
    content = b"12345"
    return [
        (b"GET", b"/v2/", (), b""),
        (b"GET", b"/v2/_catalog", (), b""),
        (b"GET", repo + b"/tags/list", (), b""),
        (b"GET", repo + b"/manifests/" + b(seed.tag), (), b""),
        (b"HEAD", repo + b"/manifests/" + b(seed.tag), (), b""),
        (b"PUT", repo + b"/manifests/fresh", ct(OCI_MANIFEST), seed.manifest_body),
        (b"DELETE", repo + b"/manifests/" + b(seed.tag), (), b""),
        (b"DELETE", repo + b"/manifests/" + b(seed.manifest), (), b""),
        (b"GET", repo + b"/blobs/" + b(seed.layer), (), b""),
        (b"HEAD", repo + b"/blobs/" + b(seed.layer), (), b""),
        (b"DELETE", repo + b"/blobs/" + b(seed.layer), (), b""),
        (b"POST", repo + b"/blobs/uploads/", (), b""),
        (b"POST", repo + b"/blobs/uploads/?digest=" + b(sha256(content)), (), content),
        (b"PATCH", session, ((b"Content-Range", b(f"{n}-{n + 4}")),), content),
        (b"PUT", session + b"?digest=" + b(sha256(b"x" * (n + 5))), (), content),
        (b"DELETE", session, (), b""),
        (b"GET", session, (), b""),
        (b"GET", repo + b"/referrers/" + b(seed.manifest), (), b""),
    ]


def auth(seed: Seed) -> list[Case]:
    user, password = seed.username, seed.password
    variants: list[tuple[Headers, str]] = [
        ((), "no Authorization"),
        (((b"Authorization", basic(user, password + "x")),), "wrong password"),
        (((b"Authorization", basic(user + "x", password)),), "wrong user"),
        (((b"Authorization", basic(user, password + "\n")),), "password with a newline"),
        (((b"Authorization", b"Basic"),), "scheme only"),
        (((b"Authorization", b"Basic !!!!"),), "not base64"),
        (((b"Authorization", b"Basic " + base64.b64encode(b"nocolon")),), "no colon"),
        (((b"Authorization", b"Basic \xff\xfe"),), "non-ASCII bytes"),
        (((b"Authorization", b"Bearer abc.def.ghi"),), "a Bearer token"),
        (((b"Authorization", basic(user, password) + b"x"),), "garbage after the token"),
    ]
    cases = []
    unauthorized = "RFC 9110 11.6.1 / distribution-spec: 401 UNAUTHORIZED with WWW-Authenticate"
    for method, path, hdrs, body in _auth_routes(seed):
        for extra, what in variants:
            cases.append(
                Case(
                    "auth",
                    method,
                    path,
                    extra + hdrs,
                    body,
                    statuses(401),
                    codes("UNAUTHORIZED"),
                    auth=False,
                    why=f"{what}; {unauthorized}",
                )
            )
        both = (
            (b"Authorization", basic(user, password)),
            (b"Authorization", basic(user, password + "x")),
        )
        cases.append(
            Case(
                "auth",
                method,
                path,
                both + hdrs,
                body,
                statuses(400, 401),
                codes("UNAUTHORIZED"),
                auth=False,
                why="two Authorization fields (one valid): refused, 400 or 401",
            )
        )
    return cases


# ---- methods -------------------------------------------------------------------------------


def _method_routes(seed: Seed) -> list[tuple[bytes, set[bytes]]]:
    repo = b"/v2/" + b(seed.repo)
    return [
        (b"/v2/", {b"GET", b"HEAD"}),
        (b"/v2/_catalog", {b"GET", b"HEAD"}),
        (repo + b"/tags/list", {b"GET", b"HEAD"}),
        (repo + b"/manifests/" + b(seed.tag), {b"GET", b"HEAD", b"PUT", b"DELETE"}),
        (repo + b"/blobs/" + b(seed.layer), {b"GET", b"HEAD", b"DELETE"}),
        (repo + b"/blobs/uploads/", {b"POST"}),
        (
            repo + b"/blobs/uploads/" + b(seed.session),
            {b"GET", b"HEAD", b"PATCH", b"PUT", b"DELETE"},
        ),
        (repo + b"/referrers/" + b(seed.manifest), {b"GET", b"HEAD"}),
    ]


KNOWN_METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS", b"TRACE"]
UNKNOWN_METHODS = [b"PROPFIND", b"FOO", b"get", b"Delete", b"BREW", b"M-SEARCH"]


def methods(seed: Seed) -> list[Case]:
    """Every method a route does not serve, on every route: 405 with Allow (RFC 9110 15.5.6)."""
    cases = []
    allow_why = "RFC 9110 15.5.6: 405 carries Allow; an OCI error body"
    for path, allowed in _method_routes(seed):
        for method in KNOWN_METHODS:
            if method in allowed:
                continue
            status = statuses(405)
            why = allow_why
            if method == b"OPTIONS":
                status = statuses(200, 204, 405)
                why = "RFC 9110 9.3.7: OPTIONS may describe the resource (200/204) or be a 405"
            cases.append(
                Case("methods", method, path, status=status, codes=codes("UNSUPPORTED"), why=why)
            )
        for method in UNKNOWN_METHODS:
            cases.append(
                Case(
                    "methods",
                    method,
                    path,
                    status=statuses(405, 501),
                    codes=codes("UNSUPPORTED"),
                    why="RFC 9110 9.1: an unrecognised method SHOULD be 501, 405 is "
                    "also accepted (methods are case-sensitive: 'get' is not GET)",
                )
            )
        cases.append(
            Case(
                "methods",
                b"CONNECT",
                path,
                status=statuses(400, 405, 501),
                why="CONNECT needs an authority-form target (RFC 9112 3.2.3): 400",
            )
        )
    for method in (b"GE(T", b"GET\x00", b"DEL ETE", b""):
        cases.append(
            Case(
                "methods",
                method,
                b"/v2/",
                status=statuses(400),
                why="not a method token (RFC 9112 3): 400",
            )
        )
    for version in (b"HTTP/1.2", b"HTTP/2.0", b"HTTX/1.1", b"http/1.1", b"HTTP/1.1x"):
        cases.append(
            Case(
                "methods",
                b"DELETE",
                b"/v2/" + b(seed.repo) + b"/manifests/" + b(seed.tag),
                version=version,
                status=statuses(400, 505),
                why="a bad HTTP version: 400, or 505 (RFC 9110 15.6.6) accepted as "
                "the one other 5xx the RFC asks for",
            )
        )
    return cases


# ---- oversized inputs ----------------------------------------------------------------------


def oversized(seed: Seed) -> list[Case]:
    repo = b"/v2/" + b(seed.repo)
    tag_url = repo + b"/manifests/" + b(seed.tag)
    long_ok = statuses(400, 404, 414)
    why = (
        "RFC 9112 3: a target longer than any the server parses is 414; the longest valid "
        "path here is under 1 KiB, so 400/404 from the grammar are fine too"
    )
    big = b"x" * (70 << 10)
    many = tuple((b"X-H%d" % i, b"v") for i in range(2000))
    hdr_why = "RFC 6585 5: 431 for header fields too large or too many"
    return [
        Case("oversized", b"GET", repo + b"/manifests/" + b"a" * 9000, status=long_ok, why=why),
        Case("oversized", b"DELETE", repo + b"/manifests/" + b"a" * 9000, status=long_ok, why=why),
        Case(
            "oversized", b"GET", b"/v2/" + b"a/" * 4500 + b"manifests/v1", status=long_ok, why=why
        ),
        Case(
            "oversized",
            b"DELETE",
            b"/v2/" + b"a/" * 4500 + b"manifests/v1",
            status=long_ok,
            why=why,
        ),
        Case("oversized", b"GET", b"/v2/" + b"a" * (70 << 10), status=long_ok, why=why),
        Case(
            "oversized",
            b"DELETE",
            tag_url + b"?x=" + b"a" * (70 << 10),
            status=statuses(400, 414, 202),
            why="a 70 KiB query on an otherwise valid DELETE "
            "of the seeded tag: 414 wanted; 202 would delete, which the snapshot catches",
        ),
        Case(
            "oversized",
            b"GET",
            b"/v2/_catalog?last=" + b"a" * (70 << 10),
            status=statuses(400, 414),
            why=why,
        ),
        Case("oversized", b"GET", b"/v2/", ((b"X-Big", big),), status=statuses(431), why=hdr_why),
        Case(
            "oversized", b"DELETE", tag_url, ((b"X-Big", big),), status=statuses(431), why=hdr_why
        ),
        Case(
            "oversized",
            b"GET",
            b"/v2/",
            ((b"X-" + b"n" * (70 << 10), b"v"),),
            status=statuses(431),
            why=hdr_why,
        ),
        Case("oversized", b"GET", b"/v2/", many, status=statuses(431), why=hdr_why),
        Case("oversized", b"DELETE", tag_url, many, status=statuses(431), why=hdr_why),
        Case(
            "oversized",
            b"GET",
            b"/v2/",
            ((b"Cookie", b"c" * 4000),) * 20,
            status=statuses(431),
            why=hdr_why + " (20 x 4000 bytes)",
        ),
    ]


# ---- the corpus ----------------------------------------------------------------------------

FAMILIES = {
    "names": names,
    "references": references,
    "headers": headers,
    "uploads": uploads,
    "manifests": manifests,
    "pagination": pagination,
    "auth": auth,
    "methods": methods,
    "oversized": oversized,
}


def build_corpus(seed: Seed, families: Iterable[str] | None = None) -> list[Case]:
    """Every case of the chosen families (default: all), in family order."""
    chosen: Sequence[str] = list(families) if families is not None else list(FAMILIES)
    return [c for name in chosen for c in FAMILIES[name](seed)]
