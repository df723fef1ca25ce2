"""Bad input to the setup commands (enable, cert export, token names, --data-dir): one
readable line, and nothing stored harmed."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_basics import ROOT, assert_one_line_error, cli, cli_json

from registry_core.access.audit import record_config_change
from registry_core.access.credentials import read_credentials, verify_password
from registry_core.datadir import DataDir


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    result = cli(data, "enable", "--device-name", "dbe", "--node-ip", "10.1.2.3")
    assert result.returncode == 0, result.stderr
    return data


def snapshot(data: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data)): p.read_bytes() for p in sorted(data.rglob("*"))
            if p.is_file()}


# --- cert export ---------------------------------------------------------------------------

@pytest.mark.parametrize("inside", ["registry.db", "certs/ca.key", "certs/ca.crt", "", "certs"])
def test_cert_export_refuses_the_data_dirs_own_files(data: Path, inside: str) -> None:
    cli_json(data, "images")  # make registry.db
    before = snapshot(data)
    result = cli(data, "cert", "export", str(data / inside), "--force")
    assert_one_line_error(result, "inside the data dir")
    assert snapshot(data) == before


def test_cert_export_refuses_a_symlink_into_the_data_dir(data: Path, tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(data / "certs")
    before = snapshot(data)
    assert_one_line_error(cli(data, "cert", "export", str(tmp_path / "link"), "--force"),
                          "inside the data dir")
    assert_one_line_error(cli(data, "cert", "export", str(tmp_path / "link" / "ca.key")),
                          "inside the data dir")
    assert snapshot(data) == before


def test_cert_export_refuses_what_is_not_a_regular_file(data: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    elsewhere = tmp_path / "precious"
    elsewhere.write_text("keep me")
    link = tmp_path / "link.pem"
    link.symlink_to(elsewhere)
    for target in (fifo, link, Path("/dev/null")):
        assert_one_line_error(cli(data, "cert", "export", str(target), "--force"),
                              str(target), "not a regular file")
    assert fifo.is_fifo() and link.is_symlink()
    assert elsewhere.read_text() == "keep me"


def test_cert_export_overwrites_a_file_only_with_force(data: Path, tmp_path: Path) -> None:
    target = tmp_path / "ca.pem"
    target.write_text("older")
    assert_one_line_error(cli(data, "cert", "export", str(target)), "exists", "--force")
    assert target.read_text() == "older"
    result = cli(data, "cert", "export", str(target), "--force")
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == DataDir(data).ca_cert.read_bytes()


def cli_in(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`cli`, run in `cwd` (for what the current directory would receive)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("EDGE_CONSOLE_DATA", None)
    return subprocess.run([sys.executable, "-m", "console", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=60)


def test_cert_export_refuses_an_empty_path(data: Path, tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    assert_one_line_error(cli_in(cwd, "cert", "export", "", "--data-dir", str(data)),
                          "no export path")
    assert list(cwd.iterdir()) == []


# --- enable and damaged credentials ---------------------------------------------------------

@pytest.mark.parametrize("damage", ["garbage", "{}", '["x"]', '{"someone": "else"}'])
def test_enable_restores_damaged_users_from_secrets(data: Path, damage: str) -> None:
    datadir = DataDir(data)
    username, password = read_credentials(datadir)
    secrets_before = datadir.secrets.read_bytes()
    datadir.users.write_text(damage)
    result = cli(data, "enable")
    assert result.returncode == 0, result.stderr
    assert "Restored" in result.stdout and "Created credentials" not in result.stdout
    assert datadir.secrets.read_bytes() == secrets_before
    users = json.loads(datadir.users.read_text())
    assert list(users) == [username]
    assert verify_password(users[username], password)


DEEP = "[" * 100_000 + "]" * 100_000
"""Nested deeper than Python's recursion limit."""


@pytest.mark.parametrize("damage", ["garbage", "{}", '["x"]', "deep"])
def test_enable_refuses_a_damaged_secrets_file(data: Path, damage: str) -> None:
    DataDir(data).secrets.write_text(DEEP if damage == "deep" else damage)
    before = snapshot(data)
    assert_one_line_error(cli(data, "enable"), "secrets.json", "restore it from a backup")
    assert_one_line_error(cli(data, "enable", "--rotate-password"), "secrets.json")
    assert snapshot(data) == before


def test_deeply_nested_secrets_is_one_line_in_info(data: Path) -> None:
    DataDir(data).secrets.write_text(DEEP)
    assert_one_line_error(cli(data, "info"), "secrets.json", "not readable JSON")


def test_enable_refuses_users_without_secrets(data: Path) -> None:
    DataDir(data).secrets.unlink()
    before = snapshot(data)
    assert_one_line_error(cli(data, "enable"), "secrets.json is missing", "users.json")
    assert snapshot(data) == before


# --- enable is all or nothing ----------------------------------------------------------------

def test_enable_failing_on_the_ca_key_keeps_the_config(data: Path) -> None:
    datadir = DataDir(data)
    datadir.ca_key.write_text("not a key")
    before = snapshot(data)
    assert_one_line_error(cli(data, "enable", "--device-name", "renamed"),
                          "ca.key", "not a readable private key")
    assert snapshot(data) == before
    assert 'device_name = "dbe"' in datadir.config.read_text()


@pytest.mark.parametrize("missing", ["ca.crt", "ca.key"])
def test_enable_refuses_half_a_ca(data: Path, missing: str) -> None:
    (data / "certs" / missing).unlink()
    before = snapshot(data)
    assert_one_line_error(cli(data, "enable", "--device-name", "renamed"),
                          f"{missing} is missing", "restore it from a backup")
    assert snapshot(data) == before


# --- the audit, the data dir, token names --------------------------------------------------

def test_a_failed_audit_write_is_one_warning(data: Path) -> None:
    DataDir(data).database.write_bytes(b"this is not a database " * 100)
    old = read_credentials(DataDir(data))[1]
    result = cli(data, "enable", "--rotate-password")
    assert result.returncode == 0, result.stderr
    assert read_credentials(DataDir(data))[1] != old  # the rotation stands
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "could not record config.rotate_password in the audit log" in lines[0]


def test_record_config_change_logs_one_line_without_a_traceback(
        data: Path, caplog: pytest.LogCaptureFixture) -> None:
    DataDir(data).database.write_bytes(b"this is not a database " * 100)
    with caplog.at_level(logging.WARNING, logger="edge_registry.audit"):
        assert not record_config_change(DataDir(data), "config.test", {})
    [record] = caplog.records
    assert record.exc_info is None
    assert record.getMessage().startswith("could not record config.test in the audit log: ")
    assert "not a database" in record.getMessage()


def test_enable_on_a_file_says_so(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("mine")
    assert_one_line_error(cli(file, "enable"), "is a file, not a data directory")
    assert file.read_text() == "mine"


@pytest.mark.parametrize("argv", [["--data-dir", ""], ["--data-dir="]])
def test_an_empty_data_dir_is_refused(tmp_path: Path, argv: list[str]) -> None:
    assert_one_line_error(cli_in(tmp_path, "enable", *argv), "--data-dir is empty")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["console", "sync", "gc", "GC", "ase-ecr-user"])
def test_token_names_of_system_identities_are_reserved(data: Path, name: str) -> None:
    result = cli(data, "token", "create", name, "--scope", "*:content/read")
    assert_one_line_error(result, repr(name))
    assert cli_json(data, "token", "list")["tokens"] == []
