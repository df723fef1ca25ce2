"""Registry credentials: generated once, kept hashed for checking and in clear for `info`.

secrets.json holds {"username", "password"} so a technician can read the password back, as
the appliance's Get-HcsKubernetesContainerRegistryInfo does; users.json holds only scrypt
hashes and is what requests are checked against. Both are 0600.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from registry_core.access.passwords import generate_password as generate_password
from registry_core.access.passwords import hash_password as hash_password
from registry_core.access.passwords import verify_password as verify_password
from registry_core.access.token_check import UNKNOWN, WRONG_PASSWORD, TokenCheck, TokenVerdict
from registry_core.atomic_file import write_atomic
from registry_core.datadir import DataDir
from registry_core.errors import ConfigError, EdgeError, NotEnabledError
from registry_core.identity import Identity, admin
from registry_core.store import Store

log = logging.getLogger("edge_registry.auth")
CACHE_SIZE = 1024
RELOAD_INTERVAL = 1.0
"""Seconds between two looks at users.json for changes."""
PASSWORD_WORKERS = 2
"""Threads for password checks: a storm of wrong passwords costs at most these cores."""


def create_credentials(datadir: DataDir, username: str) -> str:
    """Generate a new password for `username`, store it (clear and hashed); return it.

    Each file is replaced atomically, secrets.json first: the clear password is on disk
    before users.json makes it the one that works, so a crash in between never leaves a
    working password nobody can read back (running it again finishes the change)."""
    if not username or ":" in username:
        raise ConfigError(f"invalid username {username!r}: it must be non-empty, without ':'")
    password = generate_password()
    hashed = hash_password(password)
    datadir.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_json(datadir.secrets, {"username": username, "password": password})
    _write_json(datadir.users, {username: hashed})
    return password


def rotate_credentials(datadir: DataDir, username: str) -> str:
    """Replace the password of enabled credentials with a new one; return it. A running
    server's Authenticator stops accepting the old one within RELOAD_INTERVAL."""
    read_credentials(datadir)  # NotEnabledError when there is nothing to rotate
    return create_credentials(datadir, username)


def ensure_credentials(datadir: DataDir, username: str) -> bool:
    """Create credentials unless `username` already has them; True if created.

    secrets.json is the record: users.json missing or damaged is re-derived from it
    (`restore_users`, the password stays). A damaged secrets.json, or a users.json without
    it, is refused (ConfigError), never replaced: a new password would lock out every client
    and pull secret that holds the current one."""
    current = _intact_secrets(datadir)
    if current is None:
        if datadir.users.exists():
            raise ConfigError(f"{datadir.secrets} is missing but {datadir.users} exists: "
                              f"{_RECOVER}")
        create_credentials(datadir, username)
        return True
    if current[0] != username:
        create_credentials(datadir, username)
        return True
    restore_users(datadir, username)
    return False


def restore_users(datadir: DataDir, username: str) -> bool:
    """Re-derive users.json from an intact secrets.json naming `username` when users.json is
    missing, damaged or lacks the user; True if it was rewritten. The password in
    secrets.json is the one `info` shows and clients hold, so this changes no access."""
    current = _intact_secrets(datadir)
    if current is None or current[0] != username or _users_hold(datadir, username):
        return False
    _write_json(datadir.users, {username: hash_password(current[1])})
    return True


_RECOVER = ("restore it from a backup; or, to set a new admin password deliberately, remove "
            "secrets.json and users.json and run `edge-console enable` (clients and pull "
            "secrets then need the new password)")


def _intact_secrets(datadir: DataDir) -> tuple[str, str] | None:
    """(username, password) from secrets.json; None when it is missing; ConfigError naming
    the file and the way out when it is damaged."""
    if not datadir.secrets.exists():
        return None
    try:
        return read_credentials(datadir)
    except ConfigError as exc:
        raise ConfigError(f"{exc}: {_RECOVER}") from exc


def _users_hold(datadir: DataDir, username: str) -> bool:
    try:
        users = _read_json(datadir.users)
    except ConfigError:
        return False
    return isinstance(users.get(username), str)


def read_credentials(datadir: DataDir) -> tuple[str, str]:
    """(username, password) in clear, from secrets.json."""
    if not datadir.secrets.exists():
        raise NotEnabledError(
            f"no registry credentials in {datadir.root}: run `edge-console enable` first"
        )
    data = _read_json(datadir.secrets)
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise ConfigError(f"{datadir.secrets}: expected a username and a password")
    return username, password


class Authenticator:
    """Checks `Authorization: Basic ...` headers against users.json (the admin) and the
    store's client tokens (token_check.py); yields an Identity.

    scrypt costs tens of milliseconds on purpose, so a header that verified once is
    remembered (by a MAC of its exact value under a per-process key, so the cache never
    holds passwords). Only successes are cached; the admin's verdicts go when users.json
    changes, a token's when any token changes (the store's token generation: within
    token_check.RECHECK_INTERVAL for a change by another process, at once for one made in
    this process) or its password expires (checked on every request).
    On the server, `authenticate` runs each password check in a small pool of its own: a
    storm of wrong passwords queues there and never stalls the event loop, and cached
    verdicts (every request of a client already logged in) are answered on the loop.
    """

    def __init__(self, datadir: DataDir, workers: int = PASSWORD_WORKERS) -> None:
        self._path = datadir.users
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._cache: dict[bytes, Identity] = {}
        self._token_cache: dict[bytes, TokenVerdict] = {}
        self._refusals: dict[bytes, str] = {}
        """Why recent headers failed (by cache key), for `refusal`."""
        self._users: dict[str, str] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._generation = 0
        self._next_check = 0.0
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="password-check")
        self.password_checks = 0
        """scrypt runs so far (cached verdicts run none)."""
        # A constant-cost stand-in so that unknown users take as long as wrong passwords.
        self._dummy_hash = hash_password(secrets.token_urlsafe(16))
        self._tokens: TokenCheck | None = None
        self._reload_if_changed()

    def check(self, authorization: str | None) -> Identity | None:
        """The identity if the header carries valid credentials, else None. Never raises.
        Blocking: a password check runs on the calling thread."""
        key, found = self._lookup(authorization)
        if found is not None or key is None:
            return found
        parsed = parse_basic(authorization or "")
        return None if parsed is None else self._verify(key, *parsed)

    async def authenticate(self, authorization: str | None) -> Identity | None:
        """As `check`, but a password check runs in this authenticator's pool."""
        key, found = self._lookup(authorization)
        if found is not None or key is None:
            return found
        parsed = parse_basic(authorization or "")
        if parsed is None:
            return None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._verify, key, *parsed)

    def refusal(self, authorization: str) -> str:
        """Why `authorization` just failed (`wrong password`, `token disabled`, `password
        expired`...): for the log and the audit, never for the client."""
        key = self._key_of(authorization)
        with self._lock:
            return self._refusals.pop(key, "wrong credentials")

    def attach_store(self, store: Store) -> None:
        """Check client tokens against `store` (the served registry's); until then, only
        the admin's credentials work."""
        self._tokens = TokenCheck(store, self._dummy_hash)

    def close(self) -> None:
        """Stop the password-check pool once the server no longer calls `authenticate`:
        checks still queued are cancelled, the one running finishes, its threads are gone on
        return. `check` (on the caller's thread) keeps working."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _lookup(self, authorization: str | None) -> tuple[bytes | None, Identity | None]:
        """(cache key, cached identity); no key when there is nothing to check."""
        if not authorization:
            return None, None
        if time.monotonic() >= self._next_check:
            self._reload_if_changed()
        key = self._key_of(authorization)
        found = self._cache.get(key)
        if found is None and self._token_cache:
            found = self._cached_token(key)
        return key, found

    def _key_of(self, authorization: str) -> bytes:
        # Keyed BLAKE2b is a MAC in one pass: half the cost of HMAC-SHA256 on this hot path.
        return hashlib.blake2b(
            authorization.encode("utf-8", "surrogatepass"), key=self._key, digest_size=32
        ).digest()

    def _cached_token(self, key: bytes) -> Identity | None:
        verdict = self._token_cache.get(key)
        if verdict is None or self._tokens is None:
            return None
        try:
            generation = self._tokens.current_generation()
        except EdgeError:
            log.warning("token check: the store did not answer", exc_info=True)
            generation = 1 << 62  # fail closed: no cached verdict of a token holds
        # A verdict newer than the generation last read is current (it was read with it).
        if verdict.generation < generation or time.time() >= verdict.expires_at:
            self._token_cache.pop(key, None)
            return None
        return verdict.identity

    def _verify(self, key: bytes, username: str, password: str) -> Identity | None:
        generation = self._generation
        stored = self._users.get(username)
        with self._lock:
            self.password_checks += 1
        if stored is None:
            return self._verify_token(key, username, password)
        if not verify_password(stored, password):
            return self._refused(key, WRONG_PASSWORD)
        identity = admin(username)
        with self._lock:
            if generation == self._generation:  # users.json did not change meanwhile
                if len(self._cache) >= CACHE_SIZE:
                    del self._cache[next(iter(self._cache))]
                self._cache[key] = identity
        return identity

    def _verify_token(self, key: bytes, name: str, password: str) -> Identity | None:
        if self._tokens is None:
            verify_password(self._dummy_hash, password)  # as long as a wrong password
            return self._refused(key, UNKNOWN)
        try:
            verdict = self._tokens.verify(name, password)
        except EdgeError:
            log.warning("token check: the store did not answer", exc_info=True)
            return self._refused(key, "the store did not answer")
        if isinstance(verdict, str):
            return self._refused(key, verdict)
        with self._lock:
            if len(self._token_cache) >= CACHE_SIZE:
                del self._token_cache[next(iter(self._token_cache))]
            self._token_cache[key] = verdict
        return verdict.identity

    def _refused(self, key: bytes, reason: str) -> Identity | None:
        """None, remembering why (`refusal`)."""
        with self._lock:
            if len(self._refusals) >= CACHE_SIZE:
                del self._refusals[next(iter(self._refusals))]
            self._refusals[key] = reason
        return None

    def _reload_if_changed(self) -> None:
        with self._lock:
            try:
                st = os.stat(self._path)
                stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
            except OSError:
                stamp = None
            if stamp != self._stamp or not self._generation:
                self._stamp = stamp
                self._users = self._load_users() if stamp else {}
                self._cache = {}
                self._generation += 1
            # only now, so that no thread skips the check while users are still loading
            self._next_check = time.monotonic() + RELOAD_INTERVAL

    def _load_users(self) -> dict[str, str]:
        try:
            raw = _read_json(self._path)
        except ConfigError:
            return {}
        return {k: v for k, v in raw.items() if isinstance(v, str)}


def parse_basic(authorization: str) -> tuple[str, str] | None:
    """(username, password) from a `Basic <base64>` header value, or None if malformed."""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, binascii.Error):
        return None
    username, colon, password = decoded.partition(":")
    if not colon or not username:
        return None
    return username, password


def _write_json(path: Path, data: dict[str, str]) -> None:
    write_atomic(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"), 0o600)


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} is missing") from exc
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or UTF-8
        raise ConfigError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data
