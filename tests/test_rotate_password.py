"""`edge-console enable --rotate-password`: a new admin password, taken up by a running
server without a restart, and the old one refused (its cached verdict included)."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from support import HANG_GUARD, LiveServer, basic_auth_header
from test_cli_basics import cli, cli_json

from registry_core.access.credentials import (
    RELOAD_INTERVAL,
    Authenticator,
    read_credentials,
    verify_password,
)
from registry_core.datadir import DataDir
from registry_core.enablement import rotate_password

DEADLINE = 30 * RELOAD_INTERVAL
"""Generous: the server must take the new password up within RELOAD_INTERVAL, but a loaded
machine may be slow to answer."""


def wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.02)


def status(server: LiveServer, username: str, password: str) -> int:
    with httpx.Client(base_url=server.url, verify=server.ssl_context(),
                      timeout=HANG_GUARD) as client:
        return client.get("/v2/", auth=(username, password)).status_code


def test_rotation_reaches_a_live_server(live_server: LiveServer, datadir: DataDir) -> None:
    user, old = live_server.username, live_server.password
    assert status(live_server, user, old) == 200
    assert status(live_server, user, old) == 200  # now a cached verdict

    payload = cli_json(datadir.root, "enable", "--rotate-password")
    new = payload["password"]
    assert new != old and len(new) == len(old)
    assert payload["password_rotated"] is True and payload["pull_secrets"] == "stale"
    assert read_credentials(datadir) == (user, new)

    wait_for(lambda: status(live_server, user, old) == 401, "the old password refused")
    assert status(live_server, user, new) == 200
    for _ in range(3):  # refused for good, not only until a cached verdict comes back
        assert status(live_server, user, old) == 401
        assert status(live_server, user, new) == 200

    info = cli_json(datadir.root, "info")
    assert info["password"] == new and info["username"] == user
    assert new in cli(datadir.root, "info").stdout


def test_rotation_text_names_the_stale_pull_secrets(datadir: DataDir) -> None:
    old = read_credentials(datadir)[1]
    result = cli(datadir.root, "enable", "--rotate-password")
    assert result.returncode == 0, result.stderr
    new = read_credentials(datadir)[1]
    assert new != old
    assert new in result.stdout and old not in result.stdout
    assert "Rotated the password of user ase-ecr-user" in result.stdout
    assert "stale until applied" in result.stdout
    assert "edge-console kube apply-secrets" in result.stdout
    assert result.stdout.rstrip().endswith("Operation completed successfully.")


def test_rotation_changes_only_the_password(datadir: DataDir) -> None:
    kept = [datadir.config, datadir.ca_cert, datadir.server_cert]
    before = {p: p.read_bytes() for p in kept}
    first = cli_json(datadir.root, "enable", "--rotate-password")
    second = cli_json(datadir.root, "enable", "--rotate-password")
    assert first["password"] != second["password"]
    assert {p: p.read_bytes() for p in kept} == before
    for path in (datadir.secrets, datadir.users):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # users.json holds the hash of exactly the password secrets.json shows
    users = json.loads(datadir.users.read_bytes())
    assert verify_password(users["ase-ecr-user"], second["password"])
    assert not verify_password(users["ase-ecr-user"], first["password"])
    # plain `enable` stays idempotent and keeps the rotated password
    again = cli_json(datadir.root, "enable")
    assert again == {k: v for k, v in second.items()
                     if k not in ("password_rotated", "pull_secrets")}
    assert {p: p.read_bytes() for p in kept} == before


def test_authenticator_drops_the_cached_verdict(datadir: DataDir) -> None:
    authenticator = Authenticator(datadir)
    try:
        user, old = read_credentials(datadir)
        header = basic_auth_header(user, old)
        assert authenticator.check(header) is not None
        checks = authenticator.password_checks
        assert authenticator.check(header) is not None
        assert authenticator.password_checks == checks  # answered from the cache

        new = rotate_password(datadir)
        wait_for(lambda: authenticator.check(header) is None, "the cached verdict dropped")
        assert authenticator.check(header) is None
        assert authenticator.check(basic_auth_header(user, new)) is not None
    finally:
        authenticator.close()


def test_rotate_on_a_new_data_dir_enables_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    payload = cli_json(data, "enable", "--rotate-password", "--node-ip", "10.0.0.9")
    assert payload["status"] == "enabled" and payload["password_rotated"] is True
    assert cli_json(data, "info")["password"] == payload["password"]
