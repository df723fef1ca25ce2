"""Server-side login sessions of the web face, and the rate limit on failed logins.

A session is a random token in an HttpOnly, Secure, SameSite=Strict cookie; the server keeps
only its hash, who logged in, from where and when. It ends after IDLE seconds without use or
LIFETIME seconds after the login, whichever comes first.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

IDLE = 30 * 60.0
LIFETIME = 12 * 3600.0
MAX_FAILURES = 5
"""Failed logins from one address within FAILURE_WINDOW before it must wait."""
FAILURE_WINDOW = 60.0
MAX_TRACKED = 4096
"""Addresses (and sessions) remembered at most; the oldest go first."""


@dataclass
class WebSession:
    key: str
    """The hash of the cookie's token (the token itself is not kept)."""
    principal: str
    address: str | None
    created: float
    last_seen: float


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Sessions:
    """The logged-in browsers: create on login, look up per request, end on logout/expiry."""

    def __init__(self, idle: float = IDLE, lifetime: float = LIFETIME,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle = idle
        self.lifetime = lifetime
        self.clock = clock
        self._by_key: dict[str, WebSession] = {}

    def create(self, principal: str, address: str | None) -> tuple[str, WebSession]:
        """A new session: (the cookie's token, the session)."""
        self.sweep()
        if len(self._by_key) >= MAX_TRACKED:
            del self._by_key[next(iter(self._by_key))]
        token = secrets.token_urlsafe(32)
        now = self.clock()
        session = WebSession(_hash(token), principal, address, now, now)
        self._by_key[session.key] = session
        return token, session

    def get(self, token: str | None) -> WebSession | None:
        """The live session of a cookie's token (its idle time starts again), or None."""
        if not token:
            return None
        session = self._by_key.get(_hash(token))
        if session is None:
            return None
        if not self.alive(session):
            self._by_key.pop(session.key, None)
            return None
        session.last_seen = self.clock()
        return session

    def alive(self, session: WebSession) -> bool:
        now = self.clock()
        return (session.key in self._by_key and now - session.last_seen < self.idle
                and now - session.created < self.lifetime)

    def touch(self, session: WebSession) -> None:
        session.last_seen = self.clock()

    def end(self, token: str | None) -> None:
        if token:
            self._by_key.pop(_hash(token), None)

    def sweep(self) -> None:
        for session in [s for s in self._by_key.values() if not self.alive(s)]:
            self._by_key.pop(session.key, None)

    def __len__(self) -> int:
        return len(self._by_key)


@dataclass
class _Failures:
    times: list[float] = field(default_factory=list)


class LoginThrottle:
    """Failed logins per client address: after MAX_FAILURES within FAILURE_WINDOW, that
    address waits until the oldest of them leaves the window."""

    def __init__(self, max_failures: int = MAX_FAILURES, window: float = FAILURE_WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self._failures: dict[str, _Failures] = {}

    def wait_for(self, address: str | None) -> float:
        """Seconds `address` must wait before it may try again (0: it may now)."""
        record = self._failures.get(address or "")
        if record is None:
            return 0.0
        now = self.clock()
        record.times = [t for t in record.times if now - t < self.window]
        if len(record.times) < self.max_failures:
            return 0.0
        return max(0.0, record.times[0] + self.window - now)

    def failed(self, address: str | None) -> None:
        key = address or ""
        record = self._failures.pop(key, None) or _Failures()
        record.times.append(self.clock())
        record.times = record.times[-self.max_failures:]
        self._failures[key] = record  # re-inserted: the dict stays oldest-first
        if len(self._failures) > MAX_TRACKED:
            del self._failures[next(iter(self._failures))]

    def succeeded(self, address: str | None) -> None:
        self._failures.pop(address or "", None)
