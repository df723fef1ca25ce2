"""What a request to the parent carries in Authorization: Basic, or a Bearer token per the
distribution token specification (a 401 with `WWW-Authenticate: Bearer realm, service, scope`;
GET realm?service=&scope= with the sync credentials; the token cached until it expires).

Nothing is sent before the parent has said what it wants: the first request goes without
credentials and its 401 names the scheme. After that, Basic goes with every request, and a
Bearer token is fetched for a new scope before the request that needs it (the realm is known),
which saves a 401 round trip per repository. The password goes only where the parent asked
for it: to the parent itself under Basic, to the token realm under Bearer.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from registry_core.sync.errors import (
    ParentAuthFailed,
    ParentDenied,
    ParentError,
    ParentProtocolError,
)

Scopes = tuple[str, ...]
"""Token scopes such as `repository:app:pull` (empty for the API version check)."""

DEFAULT_EXPIRES_IN = 60
"""The spec's lifetime of a token whose answer names none."""
EXPIRY_MARGIN = 10.0
"""A token this close to its end is fetched again rather than risked on a long transfer."""

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_ITEM = re.compile(rf'\s*,?\s*(?:({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|{_TOKEN})|({_TOKEN}))')


@dataclass(frozen=True)
class Challenge:
    """One challenge of a WWW-Authenticate header: the scheme (lowercase) and its params."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def scopes(self) -> Scopes:
        return tuple(self.params.get("scope", "").split())


def parse_challenges(values: Sequence[str]) -> list[Challenge]:
    """Every challenge in WWW-Authenticate header values (RFC 9110 section 11.6.1)."""
    found: list[Challenge] = []
    for value in values:
        pos = 0
        while (match := _ITEM.match(value, pos)) is not None and match.end() > pos:
            pos = match.end()
            key, raw, scheme = match.groups()
            if scheme is not None:
                found.append(Challenge(scheme.lower()))
            elif found:
                unquoted = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
                found[-1].params[key.lower()] = unquoted
    return found


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@dataclass
class _Token:
    value: str
    good_until: float
    """time.monotonic() after which it is fetched again."""


Send = Callable[[httpx.URL, str], tuple[int, bytes]]
"""GETs a URL with an Authorization header, with the client's retries: (status, body)."""


class Authorizer:
    """Authorization headers for the parent, learnt from its challenges; thread-safe."""

    def __init__(self, parent: str, username: str, password: str, *, https: bool,
                 send: Send) -> None:
        self.parent = parent
        self._basic = basic_header(username, password)
        self._https = https
        self._send = send
        self._lock = threading.Lock()
        self._scheme: str | None = None
        self._bearer: Challenge | None = None
        self._tokens: dict[Scopes, _Token] = {}

    def header(self, scopes: Scopes) -> str | None:
        """What to send for a request needing `scopes`; None before the parent has asked."""
        with self._lock:
            if self._scheme == "basic":
                return self._basic
            if self._bearer is None:
                return None
            token = self._tokens.get(scopes)
            if token is None or token.good_until <= time.monotonic():
                token = self._tokens[scopes] = self._fetch(self._bearer, scopes)
            return f"Bearer {token.value}"

    def challenged(self, response: httpx.Response, scopes: Scopes, sent: str | None) -> str:
        """After a 401: learn the scheme, forget the token that failed, and fetch a new one
        covering what the challenge asks for too. Returns what the retry sends (a token
        fetched now is used once even if its lifetime is already over); raises when trying
        again cannot help."""
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        with self._lock:
            if bearer is not None and "realm" in bearer.params:
                self._check_realm(bearer.params["realm"])
                self._scheme, self._bearer = "bearer", bearer
                self._tokens.pop(scopes, None)
                wanted = tuple(dict.fromkeys((*scopes, *bearer.scopes)))
                token = self._tokens[scopes] = self._fetch(bearer, wanted)
                return f"Bearer {token.value}"
            if any(c.scheme == "basic" for c in challenges) and sent != self._basic:
                self._scheme = "basic"
                return self._basic
            raise self.refusal(response, sent)

    def refusal(self, response: httpx.Response, sent: str | None) -> ParentError:
        """The error for a 401 that stands after authenticating again."""
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        if bearer is not None and bearer.params.get("error") == "insufficient_scope":
            wanted = " ".join(bearer.scopes) or "do this"
            return ParentDenied(f"parent {self.parent}: the sync token may not {wanted}", 401)
        if sent is None:
            return ParentProtocolError(
                f"parent {self.parent}: answered 401 without a Basic or Bearer challenge", 401
            )
        if sent.startswith("Bearer "):
            why = bearer.params.get("error", "unauthorized") if bearer else "unauthorized"
            return ParentAuthFailed(
                f"parent {self.parent} refused the token its token service issued ({why})", 401
            )
        return ParentAuthFailed(
            f"parent {self.parent} refused the sync credentials (401 unauthorized)", 401
        )

    def _check_realm(self, realm: str) -> None:
        url = httpx.URL(realm)
        if url.scheme not in ("https", "http") or (self._https and url.scheme != "https"):
            raise ParentProtocolError(
                f"parent {self.parent}: token realm {realm!r} is not HTTPS; the sync "
                "credentials are not sent there"
            )

    def _fetch(self, bearer: Challenge, scopes: Scopes) -> _Token:
        params: dict[str, str | list[str]] = {"scope": list(scopes)}
        if "service" in bearer.params:
            params["service"] = bearer.params["service"]
        url = httpx.URL(bearer.params["realm"]).copy_merge_params(params)
        status, body = self._send(url, self._basic)
        if status == 401:
            raise ParentAuthFailed(
                f"parent {self.parent}: the token service refused the sync credentials "
                "(401 unauthorized)",
                401,
            )
        if status == 403:
            raise ParentDenied(
                f"parent {self.parent}: the token service denied {' '.join(scopes)}", 403
            )
        if status != 200:
            raise ParentProtocolError(
                f"parent {self.parent}: the token service answered {status}", status
            )
        started = time.monotonic()
        return self._token(body, started)

    def _token(self, body: bytes, started: float) -> _Token:
        try:
            doc = json.loads(body)
            value = doc.get("token") or doc.get("access_token")
            lifetime = float(doc.get("expires_in") or DEFAULT_EXPIRES_IN)
        except (ValueError, TypeError, AttributeError) as exc:
            raise ParentProtocolError(
                f"parent {self.parent}: the token service's answer is not a token: {exc}"
            ) from exc
        if not isinstance(value, str) or not value:
            raise ParentProtocolError(f"parent {self.parent}: the token service sent no token")
        left = _time_left(lifetime, doc.get("issued_at"))
        return _Token(value, started + left - min(EXPIRY_MARGIN, lifetime / 4))


def _time_left(lifetime: float, issued_at: object) -> float:
    """Seconds the token still has: its lifetime, less the time since `issued_at` when the
    answer names one. An `issued_at` in the future, or older than the lifetime, says the
    clocks disagree (an appliance's clock is often wrong): then the lifetime counts from now,
    rather than fetching a token for every request."""
    if not isinstance(issued_at, str):
        return lifetime
    try:
        issued = dt.datetime.fromisoformat(issued_at)
    except ValueError:
        return lifetime
    if issued.tzinfo is None:
        issued = issued.replace(tzinfo=dt.UTC)
    age = (dt.datetime.now(dt.UTC) - issued).total_seconds()
    return lifetime - age if 0 <= age < lifetime else lifetime
