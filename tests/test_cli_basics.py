"""The command line, run as a real subprocess against a temporary data dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

ROOT = Path(__file__).resolve().parent.parent


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("EDGE_CONSOLE_DATA", None)
    return subprocess.run(
        [sys.executable, "-m", "console", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


def cli_json(data: Path, *args: str) -> dict[str, Any]:
    result = cli(data, *args, "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert isinstance(payload, dict)
    return payload


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edge-console: error: ")
    for word in words:
        assert word in lines[0]


@pytest.fixture(scope="module")
def enabled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("enabled") / "data"
    result = cli(data, "enable", "--device-name", "dbe", "--node-ip", "10.1.2.3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("Operation completed successfully.")
    return data


def test_enable_twice_is_idempotent(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = cli_json(data, "enable", "--device-name", "box", "--node-ip", "10.0.0.7")
    ca = (data / "certs" / "ca.crt").read_bytes()
    second = cli_json(data, "enable")
    assert first == second
    assert first["status"] == "enabled"
    assert first["endpoint"] == "ecr.box.local:31001"
    assert (data / "certs" / "ca.crt").read_bytes() == ca
    third = cli_json(data, "enable", "--port", "5443")
    assert third["password"] == first["password"]
    assert third["endpoint"] == "ecr.box.local:5443"


def test_info(enabled: Path) -> None:
    payload = cli_json(enabled, "info")
    assert set(payload) == {"endpoint", "ip_address", "username", "password", "ca_certificate"}
    assert payload["endpoint"] == "ecr.dbe.local:31001"
    assert payload["ip_address"] == "10.1.2.3"
    assert payload["username"] == "ase-ecr-user"
    assert len(payload["password"]) >= 15
    assert Path(payload["ca_certificate"]) == enabled / "certs" / "ca.crt"
    text = cli(enabled, "info").stdout
    header = text.splitlines()[0].split()
    assert header == ["Endpoint", "IPAddress", "Username", "Password"]
    assert payload["password"] in text and str(enabled / "certs" / "ca.crt") in text


def test_cert_export(enabled: Path, tmp_path: Path) -> None:
    payload = cli_json(enabled, "cert", "export", str(tmp_path), "--format", "der")
    path = Path(payload["path"])
    assert path == tmp_path / "edge-registry-ca.cer"
    assert payload["format"] == "der"
    cert = x509.load_der_x509_certificate(path.read_bytes())
    fingerprint = cert.fingerprint(hashes.SHA256()).hex().upper()
    assert payload["sha256_fingerprint"].replace(":", "") == fingerprint
    text = cli(enabled, "cert", "export", str(tmp_path / "ca.pem")).stdout
    assert str(tmp_path / "ca.pem") in text and payload["sha256_fingerprint"] in text
    assert (tmp_path / "ca.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")


def test_cert_export_to_missing_dir(enabled: Path, tmp_path: Path) -> None:
    result = cli(enabled, "cert", "export", str(tmp_path / "nope" / "ca.crt"))
    assert_one_line_error(result, "does not exist")
    assert list(tmp_path.iterdir()) == []


def test_cert_show(enabled: Path) -> None:
    payload = cli_json(enabled, "cert", "show")
    roles = [c["role"] for c in payload["certificates"]]
    assert roles == ["CA", "Server"]
    assert "DNS:ecr.dbe.local" in payload["certificates"][1]["sans"]
    assert "SHA-256" in cli(enabled, "cert", "show").stdout


@pytest.mark.parametrize(
    ("client_os", "file", "command"),
    [
        (
            "windows",
            r"C:\Windows\System32\Drivers\etc\hosts",
            r'Add-Content -Path "C:\Windows\System32\Drivers\etc\hosts" '
            '-Value "10.1.2.3  ecr.dbe.local"',
        ),
        ("linux", "/etc/hosts", "echo '10.1.2.3  ecr.dbe.local' | sudo tee -a /etc/hosts"),
        ("macos", "/etc/hosts", "echo '10.1.2.3  ecr.dbe.local' | sudo tee -a /etc/hosts"),
    ],
)
def test_hosts_entry(enabled: Path, client_os: str, file: str, command: str) -> None:
    payload = cli_json(enabled, "hosts-entry", "--os", client_os)
    assert payload == {
        "line": "10.1.2.3  ecr.dbe.local",
        "file": file,
        "command": command,
        "os": client_os,
    }
    text = cli(enabled, "hosts-entry", "--os", client_os).stdout
    assert text.splitlines()[0] == "10.1.2.3  ecr.dbe.local"
    assert file in text and command in text


def test_hosts_entry_defaults_to_this_os(enabled: Path) -> None:
    expected = {"win32": "windows", "darwin": "macos"}.get(sys.platform, "linux")
    assert cli_json(enabled, "hosts-entry")["os"] == expected


@pytest.mark.parametrize("command", [["info"], ["hosts-entry"], ["cert", "export", "."]])
def test_not_enabled_errors(tmp_path: Path, command: list[str]) -> None:
    assert_one_line_error(cli(tmp_path / "empty", *command), "edge-console enable")


def test_bad_node_ip(tmp_path: Path) -> None:
    result = cli(tmp_path / "data", "enable", "--node-ip", "10.0.0.999")
    assert_one_line_error(result, "invalid node IP", "10.0.0.999")


def test_bad_device_name(tmp_path: Path) -> None:
    result = cli(tmp_path / "data", "enable", "--device-name", "no_underscores")
    assert_one_line_error(result, "invalid device name")


@pytest.mark.parametrize(
    ("argv", "module"),
    [
        (["sync", "run"], "sync"),
        (["--data-dir", "gc", "info", "--json"], "info"),  # a dir named like a command
        (["--json", "hosts-entry", "--os", "linux"], "hosts_entry"),
        (["--help"], None),
        ([], None),
        (["nonsense"], None),
    ],
)
def test_only_the_named_command_is_loaded(argv: list[str], module: str | None) -> None:
    from console.cli import command_module

    assert command_module(argv) == module
