"""Credentials and the Basic-auth checker, over real files."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from registry_core.access import credentials as auth
from registry_core.access.credentials import (
    Authenticator,
    create_credentials,
    ensure_credentials,
    read_credentials,
    verify_password,
)
from registry_core.datadir import DataDir
from registry_core.errors import NotEnabledError
from registry_core.identity import Identity

USER = "ase-ecr-user"
ADMIN = Identity(USER, "admin")


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.fixture
def datadir(tmp_path: Path) -> DataDir:
    d = DataDir(tmp_path / "data")
    d.ensure()
    return d


def test_create_and_read(datadir: DataDir) -> None:
    password = create_credentials(datadir, USER)
    assert len(password) >= 15 and password.isalnum()
    assert read_credentials(datadir) == (USER, password)
    for path in (datadir.secrets, datadir.users):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(datadir.users.read_text())[USER]
    assert password not in stored and password not in datadir.users.read_text()
    assert stored.startswith("scrypt$16384$8$1$")
    assert verify_password(stored, password)
    assert not verify_password(stored, password + "x")


def test_passwords_differ() -> None:
    assert len({auth.generate_password() for _ in range(50)}) == 50


def test_ensure_is_idempotent(datadir: DataDir) -> None:
    assert ensure_credentials(datadir, USER)
    first = read_credentials(datadir)
    users = datadir.users.read_bytes()
    assert not ensure_credentials(datadir, USER)
    assert read_credentials(datadir) == first
    assert datadir.users.read_bytes() == users


def test_read_missing(datadir: DataDir) -> None:
    with pytest.raises(NotEnabledError, match="edge-console enable"):
        read_credentials(datadir)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "scrypt",
        "bcrypt$1$2$3$AAAA$AAAA",
        "scrypt$x$8$1$AAAA$AAAA",
        "scrypt$3$8$1$AAAA$AAAA",
        "scrypt$16384$8$1$!!$AAAA",
        "scrypt$" + "9" * 40 + "$8$1$AAAA$AAAA",
    ],
)
def test_malformed_hash_never_matches(stored: str) -> None:
    assert not verify_password(stored, "anything")


def test_check_good_bad_malformed(datadir: DataDir) -> None:
    password = create_credentials(datadir, USER)
    checker = Authenticator(datadir)
    assert checker.check(basic(USER, password)) == ADMIN
    assert checker.check("basic " + basic(USER, password)[6:]) == ADMIN
    assert checker.check(basic(USER, password + "x")) is None
    assert checker.check(basic("someone", password)) is None
    malformed = [
        None,
        "",
        "Basic",
        "Basic ",
        "Bearer abc",
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Basic " + base64.b64encode(f":{password}".encode()).decode(),
        "Basic \udcff",
        "Basic é",
    ]
    for header in malformed:
        assert checker.check(header) is None, header


def test_cache_invalidated_when_password_changes(
    datadir: DataDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "RELOAD_INTERVAL", 0.0)
    old = create_credentials(datadir, USER)
    checker = Authenticator(datadir)
    assert checker.check(basic(USER, old)) == ADMIN
    new = create_credentials(datadir, USER)
    assert checker.check(basic(USER, old)) is None
    assert checker.check(basic(USER, new)) == ADMIN


def test_users_file_looked_at_at_most_once_a_second(datadir: DataDir) -> None:
    old = create_credentials(datadir, USER)
    checker = Authenticator(datadir)
    assert checker.check(basic(USER, old)) == ADMIN
    create_credentials(datadir, USER)
    # within the interval the cached verdict may stand; after it, it must not
    time.sleep(auth.RELOAD_INTERVAL + 0.05)
    assert checker.check(basic(USER, old)) is None


def test_removed_users_file_denies(datadir: DataDir, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "RELOAD_INTERVAL", 0.0)
    password = create_credentials(datadir, USER)
    checker = Authenticator(datadir)
    assert checker.check(basic(USER, password)) == ADMIN
    os.remove(datadir.users)
    assert checker.check(basic(USER, password)) is None


def test_cached_checks_run_no_password_check(datadir: DataDir) -> None:
    """The cost of a cached check is measured in bench/bench_app.py; here, that it is one."""
    password = create_credentials(datadir, USER)
    checker = Authenticator(datadir)
    header = basic(USER, password)
    assert checker.check(header) == ADMIN
    assert checker.password_checks == 1
    for _ in range(1000):
        assert checker.check(header) == ADMIN
    assert checker.password_checks == 1
    assert checker.check(basic(USER, "wrong")) is None
    assert checker.check(basic(USER, "wrong")) is None  # failures are never cached
    assert checker.password_checks == 3


async def test_authenticate_gives_the_same_verdicts_as_check(datadir: DataDir) -> None:
    password = create_credentials(datadir, USER)
    checker = Authenticator(datadir)
    assert await checker.authenticate(basic(USER, password)) == ADMIN
    assert await checker.authenticate(basic(USER, password)) == ADMIN
    assert checker.password_checks == 1
    for header in (None, "", "Basic !!!", basic(USER, "wrong"), basic("someone", password)):
        assert await checker.authenticate(header) is None, header
    assert checker.password_checks == 3  # the two well-formed wrong ones


def test_cache_is_bounded(datadir: DataDir, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "CACHE_SIZE", 3)
    password = create_credentials(datadir, USER)
    checker = Authenticator(datadir)
    # equivalent spellings of the same credentials are distinct cache keys
    headers = [f"Basic{' ' * i}{basic(USER, password)[6:]}" for i in range(1, 6)]
    for header in headers:
        assert checker.check(header) == ADMIN
    assert len(checker._cache) == 3


def test_threads(datadir: DataDir) -> None:
    password = create_credentials(datadir, USER)
    checker = Authenticator(datadir)
    results: list[Identity | str | None] = []

    def work() -> None:
        for i in range(200):
            results.append(checker.check(basic(USER, password)))
            if i % 40 == 0:  # failures are not cached: each costs a full scrypt
                results.append(checker.check(basic(USER, "wrong")) or "denied")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(ADMIN) == 800 and results.count("denied") == 20


def password_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("password-check")}


async def test_close_stops_the_password_pool(datadir: DataDir) -> None:
    password = create_credentials(datadir, USER)
    checker = Authenticator(datadir)
    before = password_threads()
    assert await checker.authenticate(basic(USER, password)) == ADMIN
    started = password_threads() - before
    assert started and all(t.is_alive() for t in started)
    checker.close()
    assert not any(t.is_alive() for t in started)
    assert checker.check(basic(USER, password)) == ADMIN  # the cache and `check` still answer


async def test_close_cancels_queued_password_checks(datadir: DataDir) -> None:
    create_credentials(datadir, USER)
    checker = Authenticator(datadir, workers=1)
    storm = [asyncio.create_task(checker.authenticate(basic(USER, "wrong"))) for _ in range(10)]
    await asyncio.sleep(0)  # every task has queued its check
    checker.close()
    results = await asyncio.gather(*storm, return_exceptions=True)
    assert checker.password_checks < 10
    assert any(isinstance(r, asyncio.CancelledError) for r in results)
