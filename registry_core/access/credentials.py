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
import hmac
import json
import os
import secrets
import string
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from registry_core.certs import write_atomic
from registry_core.datadir import DataDir
from registry_core.errors import ConfigError, NotEnabledError
from registry_core.identity import Identity, admin

PASSWORD_LENGTH = 20
PASSWORD_ALPHABET = string.ascii_letters + string.digits
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
CACHE_SIZE = 1024
RELOAD_INTERVAL = 1.0
"""Seconds between two looks at users.json for changes."""
PASSWORD_WORKERS = 2
"""Threads for password checks: a storm of wrong passwords costs at most these cores."""


def generate_password(length: int = PASSWORD_LENGTH) -> str:
    """A random password of letters and digits, with at least one of each kind."""
    while True:
        password = "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))
        if (
            any(c.islower() for c in password)
            and any(c.isupper() for c in password)
            and any(c.isdigit() for c in password)
        ):
            return password


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt_b64$hash_b64` for the password, with a fresh random salt."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(
        ["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)]
    )


def verify_password(stored_hash: str, password: str) -> bool:
    """True if `password` matches `stored_hash`; a malformed hash never matches."""
    try:
        scheme, n, r, p, salt_b64, hash_b64 = stored_hash.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(hash_b64, validate=True)
        actual = _scrypt(password, salt, int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError, OverflowError, binascii.Error):
        return False
    return hmac.compare_digest(actual, expected)


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
    """Create credentials unless `username` already has them; True if created."""
    try:
        current_user, _ = read_credentials(datadir)
        users = _read_json(datadir.users)
    except (NotEnabledError, ConfigError):
        current_user, users = "", {}
    if current_user == username and username in users:
        return False
    create_credentials(datadir, username)
    return True


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
    """Checks `Authorization: Basic ...` headers against users.json; yields an Identity.

    scrypt costs tens of milliseconds on purpose, so a header that verified once is
    remembered (by a MAC of its exact value under a per-process key, so the cache never
    holds passwords). Only successes are cached; the cache empties when users.json changes.
    On the server, `authenticate` runs each password check in a small pool of its own: a
    storm of wrong passwords queues there and never stalls the event loop, and cached
    verdicts (every request of a client already logged in) are answered on the loop.
    """

    def __init__(self, datadir: DataDir, workers: int = PASSWORD_WORKERS) -> None:
        self._path = datadir.users
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._cache: dict[bytes, Identity] = {}
        self._users: dict[str, str] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._generation = 0
        self._next_check = 0.0
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="password-check")
        self.password_checks = 0
        """scrypt runs so far (cached verdicts run none)."""
        # A constant-cost stand-in so that unknown users take as long as wrong passwords.
        self._dummy_hash = hash_password(secrets.token_urlsafe(16))
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
        # Keyed BLAKE2b is a MAC in one pass: half the cost of HMAC-SHA256 on this hot path.
        key = hashlib.blake2b(
            authorization.encode("utf-8", "surrogatepass"), key=self._key, digest_size=32
        ).digest()
        return key, self._cache.get(key)

    def _verify(self, key: bytes, username: str, password: str) -> Identity | None:
        generation = self._generation
        stored = self._users.get(username)
        with self._lock:
            self.password_checks += 1
        ok = verify_password(stored or self._dummy_hash, password) and stored is not None
        if not ok:
            return None
        identity = admin(username)
        with self._lock:
            if generation == self._generation:  # users.json did not change meanwhile
                if len(self._cache) >= CACHE_SIZE:
                    del self._cache[next(iter(self._cache))]
                self._cache[key] = identity
        return identity

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


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int = 32) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=SCRYPT_MAXMEM,
        dklen=dklen,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _write_json(path: Path, data: dict[str, str]) -> None:
    write_atomic(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"), 0o600)


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} is missing") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data
