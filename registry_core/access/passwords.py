"""Passwords: generated at random, kept only as scrypt hashes, checked in constant time.

The admin's (users.json) and the client tokens' (the store) use the same format:
`scrypt$n$r$p$salt_b64$hash_b64`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import string

PASSWORD_LENGTH = 20
PASSWORD_ALPHABET = string.ascii_letters + string.digits
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024


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
