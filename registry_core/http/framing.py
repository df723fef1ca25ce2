"""The request head's framing and the path as sent, checked before routing and auth."""

from __future__ import annotations

import re
from urllib.parse import unquote

from starlette.types import Scope

from registry_core.errors import HeadersTooLarge, NameInvalid, Unauthorized, Unsupported
from registry_core.reference import validate_name, validate_upload_id

MAX_PATH_CHARS = 8192
MAX_HEADER_BYTES = 64 << 10
# RFC 9110 section 7.2: uri-host [":" port]; reg-name characters, or an IPv6 literal.
_HOST = re.compile(rb"(?:[A-Za-z0-9._~%!$&'()*+,;=-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{0,5})?")


def check_head(scope: Scope) -> None:
    """The request head's framing, before authentication looks at it.

    Headers are capped here, below the server's read buffer, so that the 431 carries an OCI
    body (a head past the buffer gets the server's own 431, without one). HTTP/1.1 requires
    exactly one Host header (RFC 9112 section 3.2); an https URL always has an authority, so
    it may not be empty (granian stands an empty one in for a missing one).
    """
    size, hosts, authorizations, codings = 0, [], 0, []
    for key, value in scope["headers"]:  # one pass: this runs on every request
        size += len(key) + len(value) + 4
        if key == b"host":
            hosts.append(value)
        elif key == b"authorization":
            authorizations += 1
        elif key == b"transfer-encoding":
            codings.append(value.strip().lower())
    if size > MAX_HEADER_BYTES:
        raise HeadersTooLarge(detail={"size": size, "limit": MAX_HEADER_BYTES})
    if scope.get("http_version") != "1.1":
        return
    if len(hosts) != 1 or _HOST.fullmatch(hosts[0]) is None:
        shown = [v.decode("latin-1")[:100] for v in hosts]
        raise Unsupported(
            "an HTTP/1.1 request needs exactly one Host header holding a host[:port]",
            detail={"host": shown},
        )
    if authorizations > 1:
        raise Unauthorized("send one Authorization header, not several")
    if codings and codings != [b"chunked"]:
        # RFC 9112 section 6.1: chunked once and last; the server has decoded it once only.
        raise Unsupported(
            "Transfer-Encoding must be exactly 'chunked'",
            detail={"transfer_encoding": [c.decode("latin-1")[:100] for c in codings]},
        )


def raw_path(scope: Scope) -> str:
    """The request path as sent, percent-escapes kept (ASGI's `path` is already decoded, so
    `%2F` would turn into a separator there)."""
    raw = scope.get("raw_path")
    if not raw:
        return str(scope["path"])
    return bytes(raw).split(b"?", 1)[0].decode("latin-1")


def path_param(key: str, raw: str) -> str:
    """One path parameter, percent-decoded; a name may not hide a '/' in an escape."""
    if key == "name" and "%2f" in raw.lower():
        raise NameInvalid(
            f"invalid repository name {raw[:300]!r}: '/' may not be percent-encoded",
            detail={"name": raw[:300]},
        )
    try:
        value = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        value = raw  # not UTF-8 once decoded: the grammar check rejects the escapes as sent
    if key == "name":
        return validate_name(value)
    if key == "upload_id":
        return validate_upload_id(value)
    return value
